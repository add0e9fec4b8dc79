/* libFuzzer target for the client's response parser (net/http_parser.h): responses
 * are fed in two pieces split at a data-derived point, then EOF; the body delivered
 * must not depend on the split. The first byte picks whether the request was HEAD. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "net/http_parser.h"

struct sink {
    int heads;
    int status;
    struct buf body;
};

static bool on_head(void *ctx, int status, const struct http_headers *h)
{
    struct sink *s = ctx;
    s->heads++;
    s->status = status;
    for (size_t i = 0; i < h->n; i++)
        if (strlen(h->items[i].name) != h->items[i].name_len ||
            strlen(h->items[i].value) != h->items[i].value_len)
            abort();
    (void)http_headers_get(h, "content-length");
    return true;
}

static bool on_body(void *ctx, const char *data, size_t len)
{
    struct sink *s = ctx;
    buf_append(&s->body, data, len);
    return true;
}

static const struct http_resp_parser_callbacks cb = {on_head, on_body};

static enum http_parse_status run(const uint8_t *data, size_t size, size_t split, bool head,
                                  struct sink *s)
{
    struct http_resp_parser p;
    http_resp_parser_init(&p, 512, &cb, s);
    http_resp_parser_reset(&p, head);
    enum http_parse_status st = HTTP_PARSE_MORE;
    size_t off = 0;
    size_t ends[2] = {split, size};
    for (int k = 0; k < 2 && st == HTTP_PARSE_MORE; k++) {
        while (off < ends[k] && st == HTTP_PARSE_MORE) {
            size_t used = http_resp_parser_feed(&p, (const char *)data + off, ends[k] - off, &st);
            if (used > ends[k] - off)
                abort();
            off += used;
        }
    }
    if (st == HTTP_PARSE_MORE)
        st = http_resp_parser_finish(&p);
    if (st == HTTP_PARSE_DONE && s->heads != 1)
        abort();
    if (s->heads > 1)
        abort();
    (void)http_resp_parser_keep_alive(&p);
    http_resp_parser_free(&p);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool head = data[0] & 1;
    data++;
    size--;
    struct sink a = {0, 0, BUF_INIT}, b = {0, 0, BUF_INIT};
    enum http_parse_status sa = run(data, size, size, head, &a);
    size_t split = size ? (size_t)data[size - 1] * 257u % (size + 1) : 0;
    enum http_parse_status sb = run(data, size, split, head, &b);
    if (sa != sb || a.heads != b.heads || a.status != b.status || a.body.len != b.body.len ||
        (a.body.len && memcmp(a.body.data, b.body.data, a.body.len) != 0))
        abort();
    buf_free(&a.body);
    buf_free(&b.body);
    return 0;
}

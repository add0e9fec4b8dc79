/* libFuzzer target for the server's request parser (net/http_parser.h): the input is
 * fed whole and again split at a point derived from the data, with small limits so the
 * 413/431 paths are reachable. Both runs must agree on how many requests they saw and
 * whether the stream failed, and every request handed out must be well-formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "net/http_parser.h"

struct outcome {
    int requests;
    int error_status;
    size_t body_total;
};

static void check_request(const struct http_request *req)
{
    /* Touch everything a handler would: ASan flags any bad pointer or length. */
    if (!req->method || !req->path || !req->query || !req->body)
        abort();
    if (strlen(req->path) > 4096 || req->body[req->body_len] != '\0')
        abort();
    for (size_t i = 0; i < req->headers.n; i++) {
        const struct http_header *h = &req->headers.items[i];
        if (strlen(h->name) != h->name_len || strlen(h->value) != h->value_len)
            abort();
        if (h->name_len == 0)
            abort();
    }
    (void)http_headers_get(&req->headers, "content-type");
}

/* Feeds the pieces in order, carrying unconsumed (pipelined) bytes over. */
static struct outcome run(const uint8_t *data, size_t size, size_t split)
{
    struct outcome o = {0, 0, 0};
    struct http_req_parser p;
    http_req_parser_init(&p, 512, 1024);
    struct arena a;
    arena_init(&a, 0);
    const uint8_t *pieces[2] = {data, data + split};
    size_t lens[2] = {split, size - split};
    uint8_t *carry = NULL;
    size_t carry_len = 0;
    for (int k = 0; k < 2 && !o.error_status; k++) {
        uint8_t *buf = malloc(carry_len + lens[k] + 1);
        if (carry_len)
            memcpy(buf, carry, carry_len);
        if (lens[k])
            memcpy(buf + carry_len, pieces[k], lens[k]);
        size_t len = carry_len + lens[k];
        free(carry);
        carry = NULL;
        carry_len = 0;
        size_t off = 0;
        while (off < len) {
            enum http_parse_status st;
            size_t used = http_req_parser_feed(&p, (const char *)buf + off, len - off, &st);
            if (used > len - off)
                abort();
            off += used;
            if (st == HTTP_PARSE_ERROR) {
                if (p.err_status != 400 && p.err_status != 413 && p.err_status != 431)
                    abort();
                o.error_status = p.err_status;
                break;
            }
            if (st == HTTP_PARSE_MORE)
                break;
            struct http_request req;
            http_req_parser_build(&p, &a, &req);
            check_request(&req);
            o.requests++;
            o.body_total += req.body_len;
            bool keep = http_req_parser_keep_alive(&p);
            http_req_parser_next(&p);
            arena_reset(&a);
            if (!keep) {
                off = len; /* the server stops reading here */
                o.error_status = -1;
                break;
            }
        }
        if (off < len && !o.error_status) {
            carry_len = len - off;
            carry = malloc(carry_len);
            memcpy(carry, buf + off, carry_len);
        }
        free(buf);
    }
    free(carry);
    arena_free(&a);
    http_req_parser_free(&p);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole = run(data, size, size);
    size_t split = size ? (size_t)data[0] * 131u % (size + 1) : 0;
    struct outcome parts = run(data, size, split);
    /* The split run stops at the same place. Header-limit errors may come one request
     * later or earlier only if counting differed, which would be a bug. */
    if (whole.requests != parts.requests || whole.error_status != parts.error_status ||
        whole.body_total != parts.body_total)
        abort();
    return 0;
}

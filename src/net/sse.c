/* Server-sent events: framing for servers and an incremental parser for clients.
 * Parser invariant: p->line holds the bytes of an unfinished line (never a '\n');
 * p->data holds the data lines of the event being assembled, joined by '\n', and
 * have_data says whether at least one data field was seen since the last dispatch.
 * Complete lines found inside one feed are parsed in place without copying. */
#include "net/sse.h"

#include <string.h>

void sse_append_data(struct buf *out, const char *payload, size_t len)
{
    buf_reserve(out, len + 8);
    memcpy(out->data + out->len, "data: ", 6);
    if (len)
        memcpy(out->data + out->len + 6, payload, len);
    out->data[out->len + 6 + len] = '\n';
    out->data[out->len + 7 + len] = '\n';
    out->len += len + 8;
    out->data[out->len] = '\0';
}

void sse_parser_init(struct sse_parser *p)
{
    p->line = (struct buf)BUF_INIT;
    p->data = (struct buf)BUF_INIT;
    p->have_data = false;
}

void sse_parser_free(struct sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
    p->have_data = false;
}

/* Handles one complete line (without its '\n'); returns 1 if an event was dispatched. */
static size_t handle_line(struct sse_parser *p, const char *line, size_t n, sse_event_fn fn,
                          void *ctx)
{
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (n == 0) {
        if (!p->have_data)
            return 0;
        p->have_data = false;
        /* Reset before the callback so the parser is consistent whatever it does. */
        size_t len = p->data.len;
        p->data.len = 0;
        if (fn)
            fn(p->data.data ? p->data.data : "", len, ctx);
        if (p->data.data)
            p->data.data[0] = '\0';
        return 1;
    }
    if (line[0] == ':')
        return 0; /* comment */
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    if (name_len != 4 || memcmp(line, "data", 4) != 0)
        return 0; /* event, id, retry and unknown fields are not needed by our clients */
    const char *val = colon ? colon + 1 : line + n;
    size_t val_len = (size_t)(line + n - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (p->have_data)
        buf_append_char(&p->data, '\n');
    buf_append(&p->data, val, val_len);
    p->have_data = true;
    return 0;
}

size_t sse_parser_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_fn fn,
                       void *ctx)
{
    size_t events = 0;
    while (len > 0) {
        const char *nl = memchr(bytes, '\n', len);
        if (!nl) {
            buf_append(&p->line, bytes, len);
            break;
        }
        size_t n = (size_t)(nl - bytes);
        if (p->line.len) {
            buf_append(&p->line, bytes, n);
            events += handle_line(p, p->line.data, p->line.len, fn, ctx);
            buf_reset(&p->line);
        } else {
            events += handle_line(p, bytes, n, fn, ctx);
        }
        bytes += n + 1;
        len -= n + 1;
    }
    return events;
}

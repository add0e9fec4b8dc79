/* The watch event stream: newline-delimited JSON objects {"type": T, "object": O}, as
 * the API server writes them into a chunked 200 response. A line may arrive in any
 * number of pieces, and one piece may hold many lines; the parser keeps the unfinished
 * tail. The line buffer is owned by the parser and bounded by max_line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "k8s/k8s.h"

#define DEFAULT_MAX_LINE (64u << 20)

void k8s_watch_parser_reset(struct k8s_watch_parser *p)
{
    p->len = 0;
}

void k8s_watch_parser_free(struct k8s_watch_parser *p)
{
    free(p->line);
    p->line = NULL;
    p->len = p->cap = 0;
}

static bool one_line(const char *s, size_t n, k8s_event_fn fn, void *ctx, char *err,
                     size_t errlen)
{
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == n)
        return true; /* blank line: keep-alive */
    json_error_t je;
    json_t *ev = json_loadb(s + i, n - i, 0, &je);
    if (!ev) {
        snprintf(err, errlen, "watch event is not JSON: %s (column %d)", je.text, je.column);
        return false;
    }
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    if (!json_is_object(ev) || !type || !json_is_object(obj)) {
        snprintf(err, errlen, "watch event without a string \"type\" and an object \"object\"");
        json_decref(ev);
        return false;
    }
    fn(type, obj, ctx);
    json_decref(ev);
    return true;
}

bool k8s_watch_parser_feed(struct k8s_watch_parser *p, const char *data, size_t len,
                           k8s_event_fn fn, void *ctx, char *err, size_t errlen)
{
    size_t max = p->max_line ? p->max_line : DEFAULT_MAX_LINE;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (p->len == 0 && nl) {
            /* the common case: a whole line inside this piece, no copy */
            if (take > max) {
                snprintf(err, errlen, "watch event longer than %zu bytes", max);
                return false;
            }
            if (!one_line(data, take, fn, ctx, err, errlen))
                return false;
        } else {
            if (p->len + take > max) {
                snprintf(err, errlen, "watch event longer than %zu bytes", max);
                return false;
            }
            if (p->len + take + 1 > p->cap) {
                size_t cap = p->cap ? p->cap : 4096;
                while (cap < p->len + take + 1)
                    cap *= 2;
                p->line = xrealloc(p->line, cap);
                p->cap = cap;
            }
            memcpy(p->line + p->len, data, take);
            p->len += take;
            if (nl) {
                size_t l = p->len;
                p->len = 0;
                if (!one_line(p->line, l, fn, ctx, err, errlen))
                    return false;
            }
        }
        if (!nl)
            break;
        data = nl + 1;
        len -= take + 1;
    }
    return true;
}

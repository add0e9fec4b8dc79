/* Request and response parsers on llhttp, without sockets (see http_parser.h).
 *
 * Invariants: llhttp is paused (HPE_PAUSED from on_message_complete) at the end of
 * every message, so one feed never runs past a message boundary and the caller learns
 * the exact offset where pipelined bytes begin. The head buffer holds NUL-terminated
 * pieces addressed by offsets (the buffer may move while it grows); pointers are made
 * only once the head is complete. Limits are enforced while bytes arrive, never after
 * buffering them: header bytes are counted from the buffer position inside data
 * callbacks, body bytes against Content-Length up front and per piece for chunked. */
#include "net/http_parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"

/* Past this, a connection's body buffer is released between requests instead of kept
 * for reuse, so one huge upload does not pin memory for the connection's life. */
#define BODY_KEEP_MAX (1u << 20)

enum { HS_NONE = 0, HS_NAME = 1, HS_VALUE = 2 };

/* Header assembly shared by both parsers: a name starts a span; the span's value runs
 * from the end of the name's NUL until the value completes. */
struct head_state {
    struct buf *head;
    struct http_hdr_span **spans;
    size_t *n, *cap;
    int *hstate;
};

static void head_field(struct head_state hs, const char *at, size_t len)
{
    if (*hs.hstate != HS_NAME) {
        if (*hs.hstate == HS_VALUE) {
            /* Previous value never saw its complete callback (empty value). */
            struct http_hdr_span *prev = &(*hs.spans)[*hs.n - 1];
            hs.head->data[prev->value_off + prev->value_len] = '\0';
            buf_append_char(hs.head, '\0');
        }
        if (*hs.n == *hs.cap) {
            *hs.cap = *hs.cap ? *hs.cap * 2 : 16;
            *hs.spans = xrealloc(*hs.spans, *hs.cap * sizeof **hs.spans);
        }
        struct http_hdr_span *s = &(*hs.spans)[(*hs.n)++];
        s->name_off = (uint32_t)hs.head->len;
        s->name_len = 0;
        s->value_off = 0;
        s->value_len = 0;
        *hs.hstate = HS_NAME;
    }
    buf_append(hs.head, at, len);
    (*hs.spans)[*hs.n - 1].name_len += (uint32_t)len;
}

/* Returns false for an empty header name (llhttp lets ": value" through). */
static bool head_field_complete(struct head_state hs)
{
    if (*hs.hstate != HS_NAME)
        return false;
    struct http_hdr_span *s = &(*hs.spans)[*hs.n - 1];
    if (s->name_len == 0)
        return false;
    buf_append_char(hs.head, '\0');
    s->value_off = (uint32_t)hs.head->len;
    s->value_len = 0;
    *hs.hstate = HS_VALUE;
    return true;
}

static void head_value(struct head_state hs, const char *at, size_t len)
{
    if (*hs.hstate != HS_VALUE)
        return;
    buf_append(hs.head, at, len);
    (*hs.spans)[*hs.n - 1].value_len += (uint32_t)len;
}

static void head_value_complete(struct head_state hs)
{
    if (*hs.hstate != HS_VALUE)
        return;
    struct http_hdr_span *s = &(*hs.spans)[*hs.n - 1];
    /* llhttp skips leading whitespace but keeps trailing; values are compared and
     * forwarded, so strip it here once. */
    while (s->value_len > 0) {
        char c = hs.head->data[s->value_off + s->value_len - 1];
        if (c != ' ' && c != '\t')
            break;
        s->value_len--;
    }
    hs.head->len = s->value_off + s->value_len;
    buf_append_char(hs.head, '\0');
    *hs.hstate = HS_NONE;
}

static void head_done(struct head_state hs)
{
    if (*hs.hstate == HS_VALUE)
        head_value_complete(hs);
    else if (*hs.hstate == HS_NAME) /* cannot happen with llhttp; keep spans sane */
        (*hs.n)--;
    *hs.hstate = HS_NONE;
}

static bool span_name_is(const struct buf *head, const struct http_hdr_span *s, const char *name)
{
    size_t n = strlen(name);
    return s->name_len == n && strncasecmp(head->data + s->name_off, name, n) == 0;
}

/* ---------------------------------------------------------------------------------
 * Requests
 * --------------------------------------------------------------------------------- */

static struct http_req_parser *req_of(llhttp_t *ll)
{
    return ll->data;
}

static struct head_state req_hs(struct http_req_parser *p)
{
    return (struct head_state){&p->head, &p->spans, &p->n_spans, &p->cap_spans, &p->hstate};
}

static int req_fail(struct http_req_parser *p, int status, const char *msg)
{
    p->err_status = status;
    p->err_msg = msg;
    return HPE_USER;
}

/* Head bytes so far, counting up to `end` inside the current buffer. */
static int req_check_head(struct http_req_parser *p, const char *end)
{
    if (p->head_bytes + (size_t)(end - p->feed_start) > p->max_header_bytes)
        return req_fail(p, 431, "request header fields too large");
    return 0;
}

static int req_on_message_begin(llhttp_t *ll)
{
    struct http_req_parser *p = req_of(ll);
    p->in_message = true;
    p->headers_done = false;
    p->complete = false;
    p->expect_continue = false;
    buf_reset(&p->head);
    p->n_spans = 0;
    p->url_len = 0;
    p->hstate = HS_NONE;
    if (p->body.cap > BODY_KEEP_MAX)
        buf_free(&p->body);
    buf_reset(&p->body);
    return 0;
}

static int req_on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct http_req_parser *p = req_of(ll);
    int rc = req_check_head(p, at + len);
    if (rc)
        return rc;
    buf_append(&p->head, at, len);
    p->url_len += len;
    return 0;
}

static int req_on_url_complete(llhttp_t *ll)
{
    buf_append_char(&req_of(ll)->head, '\0');
    return 0;
}

static int req_on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http_req_parser *p = req_of(ll);
    if (p->headers_done)
        return 0; /* trailers are not forwarded or exposed */
    int rc = req_check_head(p, at + len);
    if (rc)
        return rc;
    head_field(req_hs(p), at, len);
    return 0;
}

static int req_on_header_field_complete(llhttp_t *ll)
{
    struct http_req_parser *p = req_of(ll);
    if (p->headers_done)
        return 0;
    if (!head_field_complete(req_hs(p))) {
        req_fail(p, 400, "empty header name");
        return -1;
    }
    return 0;
}

static int req_on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http_req_parser *p = req_of(ll);
    if (p->headers_done)
        return 0;
    int rc = req_check_head(p, at + len);
    if (rc)
        return rc;
    head_value(req_hs(p), at, len);
    return 0;
}

static int req_on_header_value_complete(llhttp_t *ll)
{
    if (req_of(ll)->headers_done)
        return 0;
    head_value_complete(req_hs(req_of(ll)));
    return 0;
}

/* Pauses so the feed loop sees the exact end of the head: limits are then checked
 * against the true head size whatever the read boundaries were. */
static int req_on_headers_complete(llhttp_t *ll)
{
    struct http_req_parser *p = req_of(ll);
    head_done(req_hs(p));
    p->headers_done = true;
    p->hc_pause = true;
    return HPE_PAUSED;
}

/* The head is complete and ends at `end`: apply the limits. Returns 0 or an error. */
static int req_after_head(struct http_req_parser *p, const char *end)
{
    llhttp_t *ll = &p->ll;
    if (p->head_bytes + (size_t)(end - p->feed_start) > p->max_header_bytes)
        return req_fail(p, 431, "request header fields too large");
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->max_body_bytes)
        return req_fail(p, 413, "request body too large");
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0)
        buf_reserve(&p->body, (size_t)ll->content_length);
    for (size_t i = 0; i < p->n_spans; i++) {
        const struct http_hdr_span *s = &p->spans[i];
        if (span_name_is(&p->head, s, "expect") && s->value_len == 12 &&
            strncasecmp(p->head.data + s->value_off, "100-continue", 12) == 0)
            p->expect_continue = true;
    }
    return 0;
}

static int req_on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http_req_parser *p = req_of(ll);
    if (p->body.len + len > p->max_body_bytes)
        return req_fail(p, 413, "request body too large");
    buf_append(&p->body, at, len);
    return 0;
}

static int req_on_message_complete(llhttp_t *ll)
{
    struct http_req_parser *p = req_of(ll);
    p->complete = true;
    p->expect_continue = false;
    return HPE_PAUSED;
}

static const llhttp_settings_t req_settings = {
    .on_message_begin = req_on_message_begin,
    .on_url = req_on_url,
    .on_url_complete = req_on_url_complete,
    .on_header_field = req_on_header_field,
    .on_header_field_complete = req_on_header_field_complete,
    .on_header_value = req_on_header_value,
    .on_header_value_complete = req_on_header_value_complete,
    .on_headers_complete = req_on_headers_complete,
    .on_body = req_on_body,
    .on_message_complete = req_on_message_complete,
};

void http_req_parser_init(struct http_req_parser *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof *p);
    llhttp_init(&p->ll, HTTP_REQUEST, &req_settings);
    p->ll.data = p;
    p->max_header_bytes = max_header_bytes;
    p->max_body_bytes = max_body_bytes;
}

void http_req_parser_free(struct http_req_parser *p)
{
    buf_free(&p->head);
    buf_free(&p->body);
    free(p->spans);
    p->spans = NULL;
    p->n_spans = p->cap_spans = 0;
}

size_t http_req_parser_feed(struct http_req_parser *p, const char *data, size_t len,
                            enum http_parse_status *st)
{
    if (p->dead || p->complete) {
        /* Misuse (feeding past an error or before _next) is reported, not parsed. */
        if (!p->err_status) {
            p->err_status = 400;
            p->err_msg = p->complete ? "request not consumed" : "connection unusable";
        }
        *st = HTTP_PARSE_ERROR;
        return 0;
    }
    p->feed_start = data;
    size_t off = 0;
    llhttp_errno_t e;
    for (;;) {
        e = llhttp_execute(&p->ll, data + off, len - off);
        if (e == HPE_OK) {
            if (!p->headers_done) {
                p->head_bytes += len;
                if (p->head_bytes > p->max_header_bytes) {
                    req_fail(p, 431, "request header fields too large");
                    p->dead = true;
                    *st = HTTP_PARSE_ERROR;
                    return len;
                }
            }
            *st = HTTP_PARSE_MORE;
            return len;
        }
        const char *pos = llhttp_get_error_pos(&p->ll);
        if (e == HPE_PAUSED && p->hc_pause) {
            p->hc_pause = false;
            if (req_after_head(p, pos) != 0)
                break;
            llhttp_resume(&p->ll);
            off = (size_t)(pos - data);
            continue;
        }
        if (e == HPE_PAUSED && p->complete) {
            *st = HTTP_PARSE_DONE;
            return (size_t)(pos - data);
        }
        break;
    }
    p->dead = true;
    const char *epos = llhttp_get_error_pos(&p->ll);
    if (!p->err_status && !p->headers_done && epos && epos >= data && epos <= data + len &&
        p->head_bytes + (size_t)(epos - data) > p->max_header_bytes) {
        /* The head was over the limit before it went bad: report what came first, so
         * the answer does not depend on how the bytes were split into reads. */
        req_fail(p, 431, "request header fields too large");
    }
    if (!p->err_status) {
        p->err_status = 400;
        p->err_msg = e == HPE_PAUSED_UPGRADE ? "protocol upgrade is not supported"
                                             : llhttp_get_error_reason(&p->ll);
        if (!p->err_msg)
            p->err_msg = llhttp_errno_name(e);
    }
    *st = HTTP_PARSE_ERROR;
    return epos && epos >= data && epos <= data + len ? (size_t)(epos - data) : len;
}

void http_req_parser_build(struct http_req_parser *p, struct arena *a, struct http_request *req)
{
    req->method = llhttp_method_name((llhttp_method_t)p->ll.method);
    char *url = p->head.data ? p->head.data : (char *)"";
    if (p->url_len == 0)
        url = (char *)"/";
    char *q = p->url_len ? memchr(url, '?', p->url_len) : NULL;
    if (q) {
        *q = '\0';
        req->query = q + 1;
    } else {
        req->query = "";
    }
    req->path = url;
    req->headers.n = p->n_spans;
    req->headers.cap = p->n_spans;
    req->headers.items = NULL;
    if (p->n_spans) {
        struct http_header *items = arena_alloc(a, p->n_spans * sizeof *items);
        for (size_t i = 0; i < p->n_spans; i++) {
            const struct http_hdr_span *s = &p->spans[i];
            items[i] = (struct http_header){p->head.data + s->name_off, p->head.data + s->value_off,
                                            s->name_len, s->value_len};
        }
        req->headers.items = items;
    }
    req->body = p->body.data ? p->body.data : "";
    req->body_len = p->body.len;
}

bool http_req_parser_keep_alive(const struct http_req_parser *p)
{
    return !p->dead && !p->ll.upgrade && llhttp_should_keep_alive(&p->ll);
}

bool http_req_parser_http10(const struct http_req_parser *p)
{
    return p->ll.http_major == 1 && p->ll.http_minor == 0;
}

bool http_req_parser_is_head(const struct http_req_parser *p)
{
    return p->ll.method == HTTP_HEAD;
}

void http_req_parser_next(struct http_req_parser *p)
{
    if (!p->complete)
        return;
    if (p->ll.upgrade) {
        p->dead = true; /* we never switch protocols; the connection ends here */
    } else {
        llhttp_resume(&p->ll);
    }
    p->complete = false;
    p->in_message = false;
    p->headers_done = false;
    p->head_bytes = 0;
}

/* ---------------------------------------------------------------------------------
 * Responses
 * --------------------------------------------------------------------------------- */

static struct http_resp_parser *resp_of(llhttp_t *ll)
{
    return ll->data;
}

static struct head_state resp_hs(struct http_resp_parser *p)
{
    return (struct head_state){&p->head, &p->spans, &p->n_spans, &p->cap_spans, &p->hstate};
}

static int resp_check_head(struct http_resp_parser *p, const char *end)
{
    if (p->head_bytes + (size_t)(end - p->feed_start) > p->max_header_bytes) {
        p->err_msg = "response head too large";
        return HPE_USER;
    }
    return 0;
}

static int resp_on_message_begin(llhttp_t *ll)
{
    struct http_resp_parser *p = resp_of(ll);
    buf_reset(&p->head);
    p->n_spans = 0;
    p->hstate = HS_NONE;
    return 0;
}

static int resp_on_status(llhttp_t *ll, const char *at, size_t len)
{
    return resp_check_head(resp_of(ll), at + len);
}

static int resp_on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http_resp_parser *p = resp_of(ll);
    if (p->got_head)
        return 0; /* trailers */
    int rc = resp_check_head(p, at + len);
    if (rc)
        return rc;
    head_field(resp_hs(p), at, len);
    return 0;
}

static int resp_on_header_field_complete(llhttp_t *ll)
{
    struct http_resp_parser *p = resp_of(ll);
    if (p->got_head)
        return 0;
    if (!head_field_complete(resp_hs(p))) {
        p->err_msg = "empty header name";
        return -1;
    }
    return 0;
}

static int resp_on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http_resp_parser *p = resp_of(ll);
    if (p->got_head)
        return 0;
    int rc = resp_check_head(p, at + len);
    if (rc)
        return rc;
    head_value(resp_hs(p), at, len);
    return 0;
}

static int resp_on_header_value_complete(llhttp_t *ll)
{
    if (resp_of(ll)->got_head)
        return 0;
    head_value_complete(resp_hs(resp_of(ll)));
    return 0;
}

static int resp_on_headers_complete(llhttp_t *ll)
{
    struct http_resp_parser *p = resp_of(ll);
    head_done(resp_hs(p));
    int status = ll->status_code;
    if (status == 101) {
        p->err_msg = "unexpected protocol switch";
        return -1;
    }
    if (status < 200)
        return 0; /* interim response: skipped, its message_complete rebases counting */
    p->status = status;
    if (p->no_body)
        ll->flags |= F_SKIPBODY; /* what returning 1 would do; we need the pause instead */
    p->hc_pause = true;
    return HPE_PAUSED;
}

/* The final head is complete and ends at `end`: check its size, hand it out. */
static bool resp_after_head(struct http_resp_parser *p, const char *end)
{
    if (p->head_bytes + (size_t)(end - p->feed_start) > p->max_header_bytes) {
        p->err_msg = "response head too large";
        return false;
    }
    p->got_head = true;
    if (p->cb && p->cb->on_head) {
        if (p->n_spans > p->cap_items) {
            p->cap_items = p->n_spans;
            p->items = xrealloc(p->items, p->cap_items * sizeof *p->items);
        }
        for (size_t i = 0; i < p->n_spans; i++) {
            const struct http_hdr_span *s = &p->spans[i];
            p->items[i] = (struct http_header){
                p->head.data + s->name_off, p->head.data + s->value_off, s->name_len, s->value_len};
        }
        struct http_headers h = {p->items, p->n_spans, p->cap_items};
        if (!p->cb->on_head(p->ctx, p->status, &h)) {
            p->stopped = true;
            return false;
        }
    }
    return true;
}

static int resp_on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http_resp_parser *p = resp_of(ll);
    if (!p->got_head) {
        /* llhttp frames a body on an interim (1xx) response that declares one; such a
         * peer is broken, and its bytes must never reach the caller as our body. */
        p->err_msg = "body on an interim response";
        return HPE_USER;
    }
    if (p->cb && p->cb->on_body && !p->cb->on_body(p->ctx, at, len)) {
        p->stopped = true;
        return HPE_USER;
    }
    return 0;
}

static int resp_on_message_complete(llhttp_t *ll)
{
    struct http_resp_parser *p = resp_of(ll);
    if (!p->got_head)
        p->interim_done = true; /* the feed loop restarts head counting here */
    else
        p->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_message_begin = resp_on_message_begin,
    .on_status = resp_on_status,
    .on_header_field = resp_on_header_field,
    .on_header_field_complete = resp_on_header_field_complete,
    .on_header_value = resp_on_header_value,
    .on_header_value_complete = resp_on_header_value_complete,
    .on_headers_complete = resp_on_headers_complete,
    .on_body = resp_on_body,
    .on_message_complete = resp_on_message_complete,
};

void http_resp_parser_init(struct http_resp_parser *p, size_t max_header_bytes,
                           const struct http_resp_parser_callbacks *cb, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->max_header_bytes = max_header_bytes;
    p->cb = cb;
    p->ctx = ctx;
    http_resp_parser_reset(p, false);
}

void http_resp_parser_free(struct http_resp_parser *p)
{
    buf_free(&p->head);
    free(p->spans);
    free(p->items);
    p->spans = NULL;
    p->items = NULL;
    p->n_spans = p->cap_spans = p->cap_items = 0;
}

void http_resp_parser_reset(struct http_resp_parser *p, bool no_body)
{
    llhttp_init(&p->ll, HTTP_RESPONSE, &resp_settings);
    p->ll.data = p;
    buf_reset(&p->head);
    p->n_spans = 0;
    p->hstate = HS_NONE;
    p->head_bytes = 0;
    p->status = 0;
    p->no_body = no_body;
    p->got_head = false;
    p->hc_pause = false;
    p->interim_done = false;
    p->complete = false;
    p->stopped = false;
    p->err_msg = NULL;
}

size_t http_resp_parser_feed(struct http_resp_parser *p, const char *data, size_t len,
                             enum http_parse_status *st)
{
    if (p->complete || p->stopped || p->err_msg) {
        if (!p->err_msg)
            p->err_msg = p->complete ? "data after the response" : "parser stopped";
        *st = HTTP_PARSE_ERROR;
        return 0;
    }
    p->feed_start = data;
    size_t off = 0;
    for (;;) {
        llhttp_errno_t e = llhttp_execute(&p->ll, data + off, len - off);
        if (e == HPE_OK) {
            if (!p->got_head) {
                p->head_bytes += (size_t)(data + len - p->feed_start);
                if (p->head_bytes > p->max_header_bytes) {
                    p->err_msg = "response head too large";
                    *st = HTTP_PARSE_ERROR;
                    return len;
                }
            }
            *st = HTTP_PARSE_MORE;
            return len;
        }
        const char *pos = llhttp_get_error_pos(&p->ll);
        size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        if (e == HPE_PAUSED && p->hc_pause) {
            p->hc_pause = false;
            if (!resp_after_head(p, pos)) {
                *st = p->stopped ? HTTP_PARSE_STOP : HTTP_PARSE_ERROR;
                return used;
            }
            llhttp_resume(&p->ll);
            off = used;
            continue;
        }
        if (e == HPE_PAUSED && p->interim_done) {
            p->interim_done = false;
            /* An interim (1xx) head counts whole, its final CRLF included, as the bytes
             * of a head that is still arriving do: the limit must not depend on where
             * the reads split the stream. */
            if (p->head_bytes + (size_t)(pos - p->feed_start) > p->max_header_bytes) {
                p->err_msg = "response head too large";
                *st = HTTP_PARSE_ERROR;
                return used;
            }
            p->head_bytes = 0;
            p->feed_start = pos;
            llhttp_resume(&p->ll);
            off = used;
            continue;
        }
        if (e == HPE_PAUSED && p->complete) {
            *st = HTTP_PARSE_DONE;
            return used;
        }
        if (p->stopped) {
            *st = HTTP_PARSE_STOP;
            return used;
        }
        if (!p->err_msg) {
            p->err_msg = llhttp_get_error_reason(&p->ll);
            if (!p->err_msg)
                p->err_msg = llhttp_errno_name(e);
        }
        *st = HTTP_PARSE_ERROR;
        return used;
    }
}

enum http_parse_status http_resp_parser_finish(struct http_resp_parser *p)
{
    if (p->complete)
        return HTTP_PARSE_DONE;
    if (p->stopped)
        return HTTP_PARSE_STOP;
    if (p->err_msg)
        return HTTP_PARSE_ERROR;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if ((e == HPE_OK || e == HPE_PAUSED) && p->complete)
        return HTTP_PARSE_DONE;
    if (p->stopped)
        return HTTP_PARSE_STOP;
    p->err_msg = p->got_head ? "connection closed mid-body" : "connection closed before response";
    return HTTP_PARSE_ERROR;
}

bool http_resp_parser_keep_alive(const struct http_resp_parser *p)
{
    return p->complete && llhttp_should_keep_alive(&p->ll);
}

/* Internal to src/net: the HTTP/1.1 message parsers behind the server and the client,
 * kept free of sockets so fuzz targets and unit tests can drive them with raw bytes.
 *
 * Both wrap llhttp and store the head (request target, header names and values) in one
 * growable buffer that is reused from message to message, so steady-state parsing
 * allocates nothing. */
#ifndef TANDEM_NET_HTTP_PARSER_H
#define TANDEM_NET_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "base/arena.h"
#include "base/buf.h"
#include "net/http.h"
#include "net/http_server.h"

enum http_parse_status {
    HTTP_PARSE_MORE,  /* everything consumed, message not complete yet */
    HTTP_PARSE_DONE,  /* a whole message ends at the returned offset */
    HTTP_PARSE_ERROR, /* malformed or over a limit: see err_status / err_msg */
    HTTP_PARSE_STOP,  /* (response parser) a callback asked to stop */
};

struct http_hdr_span {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
};

/* --- requests (server side) ----------------------------------------------------- */

struct http_req_parser {
    llhttp_t ll;
    size_t max_header_bytes;
    size_t max_body_bytes;
    struct buf head; /* target, then each name and value; every piece NUL-terminated */
    struct buf body;
    struct http_hdr_span *spans;
    size_t n_spans, cap_spans;
    size_t url_len;
    int hstate;             /* 0 between headers, 1 in a name, 2 in a value */
    size_t head_bytes;      /* head bytes consumed by earlier feeds of this message */
    const char *feed_start; /* start of the buffer being fed (limit accounting) */
    bool in_message;        /* at least one byte of the current request seen */
    bool headers_done;
    bool hc_pause;        /* llhttp paused at the end of the head (limits are checked there) */
    bool complete;        /* whole request parsed; call http_req_parser_next before feeding */
    bool dead;            /* an error or an upgrade: no further message on this stream */
    bool expect_continue; /* "Expect: 100-continue" and the body is acceptable */
    int err_status;       /* 400, 413 or 431 once HTTP_PARSE_ERROR was returned */
    const char *err_msg;
};

void http_req_parser_init(struct http_req_parser *p, size_t max_header_bytes,
                          size_t max_body_bytes);
void http_req_parser_free(struct http_req_parser *p);
/* Parses up to one request from data. Returns the bytes consumed; *st tells what
 * happened. After HTTP_PARSE_DONE the bytes past the returned offset belong to the
 * next request (pipelining): build the request, then call http_req_parser_next. */
size_t http_req_parser_feed(struct http_req_parser *p, const char *data, size_t len,
                            enum http_parse_status *st);
/* Fills req (method, path, query, headers, body) after HTTP_PARSE_DONE. Strings point
 * into the parser's buffers and stay valid until http_req_parser_next; the header
 * array comes from the arena. peer and arena fields are left for the caller. */
void http_req_parser_build(struct http_req_parser *p, struct arena *a, struct http_request *req);
/* Whether the connection may carry another request after this one (HTTP/1.1 default,
 * HTTP/1.0 with keep-alive, no "Connection: close", no upgrade). */
bool http_req_parser_keep_alive(const struct http_req_parser *p);
bool http_req_parser_http10(const struct http_req_parser *p);
bool http_req_parser_is_head(const struct http_req_parser *p);
/* Gets ready for the next request on the same stream. */
void http_req_parser_next(struct http_req_parser *p);

/* --- responses (client side) ---------------------------------------------------- */

/* Return false from a callback to stop parsing (the feed returns HTTP_PARSE_STOP). */
struct http_resp_parser_callbacks {
    bool (*on_head)(void *ctx, int status, const struct http_headers *h);
    bool (*on_body)(void *ctx, const char *data, size_t len);
};

struct http_resp_parser {
    llhttp_t ll;
    size_t max_header_bytes;
    struct buf head;
    struct http_hdr_span *spans;
    size_t n_spans, cap_spans;
    struct http_header *items; /* built for on_head; reused */
    size_t cap_items;
    int hstate;
    size_t head_bytes;
    const char *feed_start;
    const struct http_resp_parser_callbacks *cb;
    void *ctx;
    int status;
    bool no_body; /* response to HEAD */
    bool got_head;
    bool hc_pause;     /* paused at the end of the final head */
    bool interim_done; /* paused after a 1xx response */
    bool complete;
    bool stopped;
    const char *err_msg; /* set with HTTP_PARSE_ERROR */
};

void http_resp_parser_init(struct http_resp_parser *p, size_t max_header_bytes,
                           const struct http_resp_parser_callbacks *cb, void *ctx);
void http_resp_parser_free(struct http_resp_parser *p);
/* Starts a new response; no_body for responses to HEAD requests. Keeps buffers. */
void http_resp_parser_reset(struct http_resp_parser *p, bool no_body);
/* Parses up to one final response (1xx interim responses are skipped). */
size_t http_resp_parser_feed(struct http_resp_parser *p, const char *data, size_t len,
                             enum http_parse_status *st);
/* The peer closed: completes a close-delimited body (DONE) or reports truncation. */
enum http_parse_status http_resp_parser_finish(struct http_resp_parser *p);
/* After DONE: may the connection carry another request? */
bool http_resp_parser_keep_alive(const struct http_resp_parser *p);

#endif

/* HTTP/1.1 client on libuv + llhttp, built for proxying.
 *
 * A client belongs to one loop and keeps a keep-alive pool per upstream (host:port):
 * a finished response returns its connection to the pool, so steady traffic reuses
 * connections instead of opening new ones. Responses are delivered as they arrive
 * (head, then body pieces with chunked framing already removed), with back-pressure:
 * http_call_pause stops reading from the upstream socket until http_call_resume.
 *
 * Lifetime of a call: created by http_call_start, owned by the client. Exactly one of
 * on_done fires (success or error) unless the caller cancels first; after on_done or
 * http_call_cancel returns, the call pointer is invalid. Hosts are numeric IPv4/IPv6
 * addresses or "localhost" (no DNS on hot paths; name resolution is the caller's job). */
#ifndef TANDEM_NET_HTTP_CLIENT_H
#define TANDEM_NET_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "net/http.h"

struct http_client;
struct http_call;

struct http_client_config {
    size_t max_idle_per_upstream;   /* default 64 */
    uint64_t idle_timeout_ms;       /* pooled connection kept this long; default 60000 */
    uint64_t connect_timeout_ms;    /* default 5000 */
    size_t max_header_bytes;        /* response head limit; default 64 KiB */
};

enum http_call_error {
    HTTP_CALL_OK = 0,
    HTTP_CALL_ECONNECT,   /* could not connect (refused, unreachable, connect timeout):
                             nothing was sent, safe to retry elsewhere */
    HTTP_CALL_ETIMEOUT,   /* no (complete) response within the call's timeout */
    HTTP_CALL_ERESET,     /* connection closed or reset mid-response */
    HTTP_CALL_EPROTO,     /* malformed response */
    HTTP_CALL_ETOOBIG,    /* buffered response over max_body_bytes */
    HTTP_CALL_EIDLE,      /* no byte from the upstream for read_timeout_ms */
};
const char *http_call_error_str(enum http_call_error e);

struct http_call_callbacks {
    /* Status and headers (borrowed, valid only during the callback). Optional. */
    void (*on_head)(struct http_call *c, int status, const struct http_headers *h, void *ctx);
    /* A piece of body (borrowed, valid during the callback). Optional. */
    void (*on_body)(struct http_call *c, const char *data, size_t len, void *ctx);
    /* The end: err is HTTP_CALL_OK after the last body byte. status is 0 if no head came.
     * http_call_sent_any(c) is valid here and tells whether a retry is safe. */
    void (*on_done)(struct http_call *c, enum http_call_error err, int status, void *ctx);
};

struct http_call_request {
    const char *method;             /* "GET", "POST" */
    const char *host;               /* "127.0.0.1" */
    int port;
    const char *path;               /* with query */
    const struct http_header *headers; /* extra headers; Host, Content-Length added */
    size_t n_headers;
    const char *body;               /* copied at start; may be NULL */
    size_t body_len;
    uint64_t timeout_ms;            /* whole call, 0 = none */
    uint64_t first_byte_timeout_ms; /* until the response head, 0 = none */
    uint64_t read_timeout_ms;       /* longest silence from the upstream (from the start,
                                       then between reads) before EIDLE, 0 = none; time
                                       paused by http_call_pause does not count */
};

struct http_client *http_client_new(uv_loop_t *loop, const struct http_client_config *cfg);
/* Cancels every call (their on_done does not fire) and closes every connection; frees
 * itself once handles are closed. */
void http_client_free(struct http_client *c);

/* Starts a request. Never fails synchronously: errors arrive through on_done (on a later
 * loop iteration, never from inside http_call_start). */
struct http_call *http_call_start(struct http_client *client, const struct http_call_request *req,
                                  const struct http_call_callbacks *cb, void *ctx);
/* Abandons the call: the connection is closed (so the upstream sees the disconnect and
 * stops work) and no callback fires afterwards. Safe to call from inside callbacks. */
void http_call_cancel(struct http_call *c);
void http_call_pause(struct http_call *c);
void http_call_resume(struct http_call *c);
/* Whether any request byte was written (false = safe to retry on another upstream). */
bool http_call_sent_any(const struct http_call *c);

/* Convenience: buffer a whole response. on_done gets the body (borrowed) and status. */
typedef void (*http_fetch_done_fn)(enum http_call_error err, int status, const char *body,
                                   size_t len, void *ctx);
struct http_call *http_fetch(struct http_client *client, const struct http_call_request *req,
                             size_t max_body_bytes, http_fetch_done_fn done, void *ctx);

/* Idle pooled connections (all upstreams), for tests and metrics. */
size_t http_client_idle_connections(const struct http_client *c);

#endif

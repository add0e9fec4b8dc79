/* HTTP/1.1 server on libuv + llhttp.
 *
 * One server per loop; several loops may each run a server on the same port with
 * reuseport. Connections are keep-alive; a connection parses one request at a time
 * (reading pauses while a response is in progress, which also bounds pipelining).
 * Limits: header bytes, body bytes (413), header/body read timeout (408), idle
 * keep-alive timeout (silent close). Bad requests get 400 and a close.
 *
 * Lifetime of an exchange (one request + its response): the server owns it. The
 * handler is called once the whole request body has arrived. The exchange stays valid
 * until the handler finishes the response (http_respond or http_stream_end), or, if the
 * client goes away first, until the on_abort callback returns. A handler that answers
 * asynchronously MUST set on_abort (to cancel its timers/upstreams). */
#ifndef TANDEM_NET_HTTP_SERVER_H
#define TANDEM_NET_HTTP_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/arena.h"
#include "net/http.h"

struct http_server;
struct http_exchange;

struct http_request {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* path without query, NUL-terminated */
    const char *query;        /* after '?', or "" */
    struct http_headers headers;
    const char *body;         /* NUL-terminated for convenience; body_len excludes NUL */
    size_t body_len;
    const char *peer;         /* "ip:port" of the client */
    struct arena *arena;      /* request-scoped; freed when the exchange ends */
};

/* A bound on open connections, shared by every server of a process (one per worker
 * loop). Past max, a new connection is answered 503 with an OpenAI error body naming
 * the flag (max_flag) and closed. The caller owns it and keeps it alive while any
 * server using it runs. */
struct http_conn_limit {
    size_t max;                 /* 0 = no bound */
    const char *max_flag;       /* e.g. "--max-connections", for the error message */
    _Atomic size_t open;        /* connections accepted and not yet closed */
    _Atomic uint64_t refused;   /* connections refused, since start */
    _Atomic uint64_t last_log_ms; /* rate limit of the refusal log line */
};

typedef void (*http_handler_fn)(struct http_exchange *ex, void *ctx);
typedef void (*http_abort_fn)(struct http_exchange *ex, void *ctx);
typedef void (*http_drain_fn)(struct http_exchange *ex, void *ctx);

struct http_server_config {
    const char *host;            /* default "0.0.0.0" */
    int port;                    /* 0 picks a free port (see http_server_port) */
    bool reuseport;
    size_t max_header_bytes;     /* default 64 KiB -> 431 */
    size_t max_body_bytes;       /* default 32 MiB -> 413 */
    uint64_t read_timeout_ms;    /* header+body of one request; default 30000 -> 408 */
    uint64_t idle_timeout_ms;    /* keep-alive idle; default 75000 */
    size_t write_high_water;     /* bytes queued before http_stream_write says "full";
                                    default 256 KiB */
    http_handler_fn handler;
    void *handler_ctx;
    const char *server_name;     /* optional log component name */
    struct http_conn_limit *conn_limit; /* optional, borrowed */
};

/* Binds and listens. Returns 0 or a negative errno (e.g. -EADDRINUSE); *out is set on 0. */
int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
                      struct http_server **out);
int http_server_port(const struct http_server *s); /* the bound port */
/* Stops listening and closes every connection (in-flight exchanges get on_abort).
 * The server frees itself once every handle has closed; cb (may be NULL) runs then. */
void http_server_stop(struct http_server *s, void (*cb)(void *ctx), void *ctx);
/* Number of open connections (for metrics and tests). */
size_t http_server_connections(const struct http_server *s);

/* --- exchange: reading the request ------------------------------------------- */
const struct http_request *http_exchange_request(struct http_exchange *ex);
struct arena *http_exchange_arena(struct http_exchange *ex);
void http_exchange_on_abort(struct http_exchange *ex, http_abort_fn fn, void *ctx);

/* --- exchange: writing the response ------------------------------------------ */
/* Adds a response header (copied). Must come before http_respond / http_stream_begin. */
void http_add_header(struct http_exchange *ex, const char *name, const char *value);
/* Whole response with Content-Length. body is copied. Ends the exchange. */
void http_respond(struct http_exchange *ex, int status, const char *content_type,
                  const char *body, size_t len);
/* Starts a streamed response with Transfer-Encoding: chunked (or, if the client spoke
 * HTTP/1.0, close-delimited). For SSE pass "text/event-stream"; Cache-Control: no-cache
 * is added for it. */
void http_stream_begin(struct http_exchange *ex, int status, const char *content_type);
/* Queues data (copied) as one chunk. Returns true while the queue is under the high
 * water mark; false means "stop producing until the drain callback fires". Data is
 * never dropped while the client is connected. */
bool http_stream_write(struct http_exchange *ex, const void *data, size_t len);
/* Called once when the write queue drops back under half the high water mark after
 * http_stream_write returned false. */
void http_exchange_on_drain(struct http_exchange *ex, http_drain_fn fn, void *ctx);
size_t http_stream_queued(const struct http_exchange *ex); /* bytes not yet written */
/* Sends the final chunk. Ends the exchange. */
void http_stream_end(struct http_exchange *ex);
/* Drops the connection without finishing the response (fault injection, or an upstream
 * that failed mid-stream). Ends the exchange; on_abort is not called. */
void http_exchange_close(struct http_exchange *ex);

#endif

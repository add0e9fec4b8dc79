/* HTTP/1.1 server: listener, connections, exchanges, write coalescing.
 *
 * Connection states: IDLE (keep-alive, waiting for a request's first byte; idle timer),
 * READING (a request started; read timer, 408 when it fires), HANDLING (a complete
 * request is with the handler; parsing is paused and further bytes are only buffered,
 * up to INBUF_PAUSE, after which reading stops), WAIT_WRITE (response done but too much
 * output still queued to start the next pipelined request), CLOSING (no more requests:
 * flush, shutdown, then discard input until EOF or the linger timer, so an error
 * response is not destroyed by a reset caused by unread request bytes).
 * Reading continues while HANDLING so a client that goes away is noticed at once
 * (on_abort), not only at the next write.
 *
 * Write coalescing: every response byte is appended to the connection's `out` buffer;
 * nothing is written from inside http_respond/http_stream_write. The connection joins
 * the server's flush list, and a uv_prepare handle (which runs just before the loop
 * would block in poll) writes each listed connection's buffer with one uv_try_write,
 * handing only an unwritten tail to uv_write. So all events a producer emits during one
 * loop iteration (a timer tick streaming many SSE chunks) leave in one syscall. If
 * flushing itself produces output (a drain callback writing more), an idle handle keeps
 * the next poll from blocking until the list is empty.
 * Queued bytes = out.len + libuv's write_queue_size; http_stream_write reports "full"
 * at write_high_water and on_drain fires once the queue falls under half of it.
 *
 * Lifetime: a connection is freed only in the close callback of its last handle. Its
 * exchange is embedded (reused from request to request, as are the parser buffers,
 * the response-header buffer and the arena, which is reset rather than freed), so a
 * keep-alive request allocates nothing in steady state. Any call into user code
 * (handler, on_abort, on_drain) may end the exchange or close the connection; callers
 * re-check `closing` and the state afterwards. */
#include "net/http_server.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/json.h"
#include "base/log.h"
#include "net/conn.h"
#include "net/fmt.h"
#include "net/http_parser.h"

#define READ_BUF_SIZE (64u * 1024)
#define INBUF_PAUSE (256u * 1024) /* buffered pipelined bytes before reading stops */
#define LINGER_MS 2000u
#define TRIM_MIN_PEAK 512u /* connections: smaller spikes are not worth a malloc_trim */
#define OUT_KEEP_MAX (1u << 20) /* larger output buffers are released when empty */

enum conn_state { C_IDLE, C_READING, C_HANDLING, C_WAIT_WRITE, C_CLOSING };
enum ex_phase { EX_NONE, EX_ACTIVE, EX_STREAMING, EX_ABORTING };
enum timer_kind { T_NONE, T_IDLE, T_READ, T_LINGER };

struct http_exchange {
    struct conn *conn;
    struct http_request req;
    struct arena arena;
    struct buf hdrs; /* extra response headers, already "Name: value\r\n" */
    http_abort_fn on_abort;
    void *abort_ctx;
    http_drain_fn on_drain;
    void *drain_ctx;
    enum ex_phase phase;
    bool keep_alive;
    bool http10;
    bool head;    /* HEAD request: no body bytes go out */
    bool chunked; /* streaming with chunked framing (else close-delimited) */
    bool drain_wanted;
};

struct conn {
    struct http_server *srv;
    struct conn *prev, *next;       /* server's connection list */
    struct conn *fl_prev, *fl_next; /* server's flush list */
    bool in_flush_list;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    int open_handles;
    enum conn_state state;
    enum timer_kind timer_kind;
    struct http_req_parser parser;
    struct buf inbuf; /* unparsed bytes from in_off on */
    size_t in_off;
    struct buf out; /* coalesced output not yet handed to the kernel */
    struct http_exchange ex;
    char peer[64];
    unsigned long requests;
    bool reading;
    bool closing;    /* uv_close issued */
    bool shut;       /* shutdown issued (CLOSING) */
    bool want_parse; /* deferred parse of inbuf (from the flush pass) */
    bool in_process; /* inside conn_process: finishing an exchange must not recurse */
    bool continue_sent;
    bool limited; /* counted in srv->cfg.conn_limit->open */
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_prepare_t prepare;
    uv_idle_t idle;
    int open_handles;
    struct http_server_config cfg;
    char *host;
    char *comp;
    struct conn *conns;
    size_t n_open; /* connections not yet closing */
    size_t n_live; /* connections not yet freed */
    size_t peak_live; /* most connections since memory was last given back */
    bool in_spike;    /* a spike of TRIM_MIN_PEAK+ connections is draining */
    struct conn *flush_head;
    size_t flush_len;
    bool stopping;
    void (*stop_cb)(void *ctx);
    void *stop_ctx;
    char rbuf[READ_BUF_SIZE];
};

static void conn_close(struct conn *c);
static void conn_abort(struct conn *c);
static void conn_error(struct conn *c, int status, const char *msg);
static void conn_process_inbuf(struct conn *c);
static void conn_after_output(struct conn *c);
static void conn_arm(struct conn *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void server_maybe_free(struct http_server *s);
static void on_prepare(uv_prepare_t *h);

/* --- flush list ---------------------------------------------------------------- */

static void flush_list_add(struct conn *c)
{
    struct http_server *s = c->srv;
    if (c->in_flush_list || c->closing)
        return;
    c->in_flush_list = true;
    c->fl_prev = NULL;
    c->fl_next = s->flush_head;
    if (s->flush_head)
        s->flush_head->fl_prev = c;
    s->flush_head = c;
    s->flush_len++;
    if (!s->stopping && !uv_is_active((uv_handle_t *)&s->prepare))
        uv_prepare_start(&s->prepare, on_prepare);
}

static void flush_list_remove(struct conn *c)
{
    if (!c->in_flush_list)
        return;
    struct http_server *s = c->srv;
    if (c->fl_prev)
        c->fl_prev->fl_next = c->fl_next;
    else
        s->flush_head = c->fl_next;
    if (c->fl_next)
        c->fl_next->fl_prev = c->fl_prev;
    c->fl_prev = c->fl_next = NULL;
    c->in_flush_list = false;
    s->flush_len--;
}

/* --- output -------------------------------------------------------------------- */

static size_t conn_queued(const struct conn *c)
{
    return c->out.len + c->tcp.write_queue_size;
}

static void on_tail_written(void *ctx, int status)
{
    struct conn *c = ctx;
    if (c->closing)
        return;
    if (status < 0) {
        LOG_D(c->srv->comp, "%s: write failed: %s", c->peer, uv_strerror(status));
        conn_abort(c);
        return;
    }
    conn_after_output(c);
}

/* Hands `out` to the kernel: one try_write, and a uv_write for whatever it left (out's
 * storage goes with it). */
static void conn_flush(struct conn *c)
{
    if (c->closing || c->out.len == 0)
        return;
    size_t len = c->out.len;
    ssize_t n = net_conn_write(&c->tcp, c->out.data, len, &c->out, on_tail_written, c);
    if (n < 0) {
        LOG_D(c->srv->comp, "%s: write failed: %s", c->peer, uv_strerror((int)n));
        conn_abort(c);
        return;
    }
    if ((size_t)n == len) {
        c->out.len = 0;
        if (c->out.cap > OUT_KEEP_MAX)
            buf_free(&c->out);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_arm(c);
}

/* Called whenever queued output shrank: drives drain callbacks, deferred pipelined
 * requests and the end of a closing connection. */
static void conn_after_output(struct conn *c)
{
    if (c->closing)
        return;
    struct http_exchange *ex = &c->ex;
    size_t hw = c->srv->cfg.write_high_water;
    if (ex->phase == EX_STREAMING && ex->drain_wanted && conn_queued(c) < hw / 2) {
        ex->drain_wanted = false;
        if (ex->on_drain)
            ex->on_drain(ex, ex->drain_ctx);
        if (c->closing)
            return;
    }
    if (c->state == C_WAIT_WRITE && conn_queued(c) <= hw / 2) {
        c->state = C_IDLE;
        c->want_parse = true;
        flush_list_add(c);
    }
    if (c->state == C_CLOSING && !c->shut && conn_queued(c) == 0) {
        c->shut = true;
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            conn_close(c);
    }
}

/* --- timers -------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->closing)
        return;
    enum timer_kind kind = c->timer_kind;
    c->timer_kind = T_NONE;
    switch (kind) {
    case T_IDLE:
        if (conn_queued(c) > 0) {
            /* Still sending the last response to a slow reader: not idle. */
            conn_arm(c);
            return;
        }
        LOG_D(c->srv->comp, "%s: idle timeout", c->peer);
        conn_close(c);
        break;
    case T_READ:
        LOG_D(c->srv->comp, "%s: request read timeout", c->peer);
        conn_error(c, 408, "request timed out");
        break;
    case T_LINGER:
    case T_NONE:
        conn_close(c);
        break;
    }
}

static void timer_set(struct conn *c, enum timer_kind kind, uint64_t ms)
{
    if (c->timer_kind == kind)
        return; /* already running: deadlines are per phase, not per read */
    c->timer_kind = kind;
    if (kind == T_NONE)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void read_on(struct conn *c)
{
    if (!c->closing)
        net_conn_read_on(&c->tcp, &c->reading, on_alloc, on_read);
}

static void read_off(struct conn *c)
{
    net_conn_read_off(&c->tcp, &c->reading);
}

/* Sets the timer and reading for the current state. */
static void conn_arm(struct conn *c)
{
    if (c->closing)
        return;
    const struct http_server_config *cfg = &c->srv->cfg;
    switch (c->state) {
    case C_IDLE:
        timer_set(c, T_IDLE, c->requests == 0 ? cfg->read_timeout_ms : cfg->idle_timeout_ms);
        read_on(c);
        break;
    case C_READING:
        timer_set(c, T_READ, cfg->read_timeout_ms);
        read_on(c);
        break;
    case C_HANDLING:
    case C_WAIT_WRITE:
        timer_set(c, T_NONE, 0);
        if (c->inbuf.len - c->in_off < INBUF_PAUSE)
            read_on(c);
        else
            read_off(c);
        break;
    case C_CLOSING:
        if (c->shut) {
            timer_set(c, T_LINGER, LINGER_MS);
            read_on(c);
        } else {
            timer_set(c, T_NONE, 0);
        }
        break;
    }
}

/* --- closing ------------------------------------------------------------------- */

static void conn_free(struct conn *c)
{
    struct http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    http_req_parser_free(&c->parser);
    buf_free(&c->inbuf);
    buf_free(&c->out);
    buf_free(&c->ex.hdrs);
    arena_free(&c->ex.arena);
    free(c);
    s->n_live--;
    /* After a spike of connections (10,000 idle keep-alives, say) has gone, glibc keeps
     * their freed buffers mapped; hand them back so RSS follows the load down. */
    if (s->peak_live >= TRIM_MIN_PEAK)
        s->in_spike = true;
    if (s->in_spike && (s->n_live < s->peak_live / 4 || s->n_live == 0)) {
        s->peak_live = s->n_live;
        s->in_spike = s->n_live > 0; /* trim once more when the last one goes */
        malloc_trim(0);
    }
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles == 0)
        conn_free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->srv->n_open--;
    if (c->limited)
        atomic_fetch_sub(&c->srv->cfg.conn_limit->open, 1);
    flush_list_remove(c);
    c->reading = false;
    net_conn_close(&c->tcp, &c->timer, on_conn_handle_closed);
}

/* The client went away (or the server stops): tell the handler, then close. */
static void conn_abort(struct conn *c)
{
    if (c->closing)
        return;
    struct http_exchange *ex = &c->ex;
    if (ex->phase == EX_ACTIVE || ex->phase == EX_STREAMING) {
        ex->phase = EX_ABORTING;
        if (ex->on_abort)
            ex->on_abort(ex, ex->abort_ctx);
        ex->phase = EX_NONE;
    }
    conn_close(c);
}

/* Answers a request the parser (or the read timer) rejected, then closes. */
static void conn_error(struct conn *c, int status, const char *msg)
{
    if (c->closing || c->state == C_CLOSING)
        return;
    LOG_D(c->srv->comp, "%s: %d %s", c->peer, status, msg);
    struct buf body = BUF_INIT;
    FMT_LIT(&body, "{\"error\":{\"message\":\"");
    json_escape(&body, msg, strlen(msg));
    FMT_LIT(&body, "\",\"type\":\"");
    buf_append_str(&body, http_error_type(status));
    FMT_LIT(&body, "\",\"param\":null,\"code\":");
    fmt_uint(&body, (uint64_t)status);
    FMT_LIT(&body, "}}");
    struct buf *o = &c->out;
    FMT_LIT(o, "HTTP/1.1 ");
    fmt_uint(o, (uint64_t)status);
    buf_append_char(o, ' ');
    buf_append_str(o, http_status_text(status));
    FMT_LIT(o, "\r\nContent-Type: application/json\r\nContent-Length: ");
    fmt_uint(o, body.len);
    FMT_LIT(o, "\r\nConnection: close\r\n\r\n");
    buf_append(o, body.data, body.len);
    buf_free(&body);
    c->state = C_CLOSING;
    c->inbuf.len = c->in_off = 0;
    conn_arm(c);
    flush_list_add(c);
}

/* --- exchanges ----------------------------------------------------------------- */

/* The response is fully queued: recycle the exchange and move to the next request. */
static void ex_finish(struct http_exchange *ex)
{
    struct conn *c = ex->conn;
    bool keep = ex->keep_alive;
    ex->phase = EX_NONE;
    ex->on_abort = NULL;
    ex->on_drain = NULL;
    ex->drain_wanted = false;
    ex->hdrs.len = 0;
    arena_reset(&ex->arena);
    memset(&ex->req, 0, sizeof ex->req);
    http_req_parser_next(&c->parser);
    c->continue_sent = false;
    flush_list_add(c);
    if (c->closing)
        return;
    if (!keep || c->srv->stopping) {
        c->state = C_CLOSING;
        c->inbuf.len = c->in_off = 0;
        conn_arm(c);
        return;
    }
    if (conn_queued(c) > c->srv->cfg.write_high_water) {
        c->state = C_WAIT_WRITE;
        conn_arm(c);
        return;
    }
    c->state = C_IDLE;
    if (!c->in_process) {
        if (c->inbuf.len > c->in_off)
            c->want_parse = true; /* parsed from the flush pass, never recursively */
        conn_arm(c);
    }
}

static void dispatch(struct conn *c)
{
    struct http_exchange *ex = &c->ex;
    struct http_request *req = &ex->req;
    http_req_parser_build(&c->parser, &ex->arena, req);
    req->peer = c->peer;
    req->arena = &ex->arena;
    ex->phase = EX_ACTIVE;
    ex->keep_alive = http_req_parser_keep_alive(&c->parser);
    ex->http10 = http_req_parser_http10(&c->parser);
    ex->head = http_req_parser_is_head(&c->parser);
    ex->chunked = false;
    ex->drain_wanted = false;
    c->state = C_HANDLING;
    c->requests++;
    conn_arm(c);
    struct http_server *s = c->srv;
    if (s->cfg.handler)
        s->cfg.handler(ex, s->cfg.handler_ctx);
    else
        http_respond(ex, 404, NULL, NULL, 0);
}

/* Parses requests from data until one is being handled or data runs out. Returns the
 * bytes consumed; the caller keeps the rest. */
static size_t conn_process(struct conn *c, const char *data, size_t len)
{
    size_t used = 0;
    c->in_process = true;
    while (!c->closing && used < len && (c->state == C_IDLE || c->state == C_READING)) {
        enum http_parse_status st;
        size_t n = http_req_parser_feed(&c->parser, data + used, len - used, &st);
        used += n;
        if (st == HTTP_PARSE_MORE) {
            if (c->parser.in_message && c->state == C_IDLE)
                c->state = C_READING;
            if (c->parser.expect_continue && !c->continue_sent) {
                c->continue_sent = true;
                FMT_LIT(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                flush_list_add(c);
            }
            break;
        }
        if (st == HTTP_PARSE_ERROR) {
            c->in_process = false;
            conn_error(c, c->parser.err_status, c->parser.err_msg);
            return len;
        }
        dispatch(c);
    }
    c->in_process = false;
    if (!c->closing && c->state == C_CLOSING)
        used = len; /* nothing more will be parsed */
    conn_arm(c);
    return used;
}

static void conn_process_inbuf(struct conn *c)
{
    if (c->closing || c->inbuf.len <= c->in_off)
        return;
    size_t n = conn_process(c, c->inbuf.data + c->in_off, c->inbuf.len - c->in_off);
    if (c->closing)
        return;
    c->in_off += n;
    if (c->in_off >= c->inbuf.len) {
        c->inbuf.len = 0;
        c->in_off = 0;
    } else if (c->in_off > 0) {
        buf_consume(&c->inbuf, c->in_off);
        c->in_off = 0;
    }
}

/* --- reading ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;
    /* One buffer per server: libuv hands it back in read_cb before the next alloc, and
     * everything not parsed at once is copied out. */
    *b = uv_buf_init(c->srv->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = stream->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            LOG_D(c->srv->comp, "%s: read error: %s", c->peer, uv_strerror((int)nread));
        if (c->state == C_CLOSING && nread == UV_EOF && !c->shut) {
            read_off(c); /* peer done sending; finish flushing, then close */
            return;
        }
        if (c->state == C_WAIT_WRITE || (c->state == C_IDLE && conn_queued(c) > 0)) {
            /* Half-close after a complete request: finish the response, then close. */
            c->state = C_CLOSING;
            read_off(c);
            conn_arm(c);
            conn_after_output(c);
            return;
        }
        conn_abort(c);
        return;
    }
    size_t n = (size_t)nread;
    switch (c->state) {
    case C_CLOSING:
        return; /* lingering: discard */
    case C_HANDLING:
    case C_WAIT_WRITE:
        buf_append(&c->inbuf, b->base, n);
        conn_arm(c);
        return;
    case C_IDLE:
    case C_READING:
        break;
    }
    if (c->inbuf.len > c->in_off) {
        buf_append(&c->inbuf, b->base, n);
        conn_process_inbuf(c);
        return;
    }
    size_t used = conn_process(c, b->base, n);
    if (!c->closing && used < n) {
        c->inbuf.len = c->in_off = 0;
        buf_append(&c->inbuf, b->base + used, n - used);
        conn_arm(c);
    }
}

/* --- the flush pass ------------------------------------------------------------ */

static void on_idle(uv_idle_t *h)
{
    struct http_server *s = h->data;
    if (!s->flush_head)
        uv_idle_stop(h);
}

static void on_prepare(uv_prepare_t *h)
{
    struct http_server *s = h->data;
    /* Pop until empty, within a budget: a connection re-added by a callback (a drain
     * handler writing more) is served again, but an endless producer cannot keep the
     * loop here; leftovers wait for the next pass, and the idle handle makes that pass
     * come without blocking in poll. */
    size_t budget = s->flush_len * 2 + 8;
    while (s->flush_head && budget-- > 0) {
        struct conn *c = s->flush_head;
        flush_list_remove(c);
        if (c->want_parse) {
            c->want_parse = false;
            if (c->state == C_IDLE || c->state == C_READING) {
                conn_process_inbuf(c);
                conn_arm(c);
            }
        }
        if (c->closing)
            continue;
        conn_flush(c);
        conn_after_output(c);
    }
    if (s->flush_head) {
        if (!uv_is_active((uv_handle_t *)&s->idle))
            uv_idle_start(&s->idle, on_idle);
    } else {
        uv_prepare_stop(h);
    }
}

/* --- accept -------------------------------------------------------------------- */

static void format_peer(struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    strcpy(c->peer, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    }
}

/* Over the connection bound: a clear 503 and a close, logged at most every 10 s. */
static void refuse_connection(struct conn *c, struct http_conn_limit *lim)
{
    uint64_t n = atomic_fetch_add(&lim->refused, 1) + 1;
    uint64_t now = uv_now(c->srv->loop), last = atomic_load(&lim->last_log_ms);
    if ((last == 0 || now - last >= 10000) &&
        atomic_compare_exchange_strong(&lim->last_log_ms, &last, now ? now : 1))
        LOG_W(c->srv->comp,
              "refusing connections: %zu open, the bound is %zu (%s); %llu refused so far",
              (size_t)atomic_load(&lim->open) - 1, lim->max,
              lim->max_flag ? lim->max_flag : "max connections", (unsigned long long)n);
    char msg[160];
    snprintf(msg, sizeof msg, "too many connections: this server holds at most %zu (%s)",
             lim->max, lim->max_flag ? lim->max_flag : "max connections");
    conn_error(c, 503, msg);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct http_server *s = server->data;
    if (status < 0) {
        LOG_W(s->comp, "accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->stopping)
        return;
    struct conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_open++;
    s->n_live++;
    c->ex.conn = c;
    arena_init(&c->ex.arena, 0);
    http_req_parser_init(&c->parser, s->cfg.max_header_bytes, s->cfg.max_body_bytes);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    c->state = C_IDLE;
    if (s->n_live > s->peak_live)
        s->peak_live = s->n_live;
    struct http_conn_limit *lim = s->cfg.conn_limit;
    if (lim && lim->max) {
        c->limited = true;
        if (atomic_fetch_add(&lim->open, 1) + 1 > lim->max) {
            refuse_connection(c, lim);
            return;
        }
    }
    conn_arm(c);
}

/* --- server -------------------------------------------------------------------- */

/* A peer that vanishes turns our next write into SIGPIPE, whose default action kills
 * the process; every role wants EPIPE instead. Only a default disposition is changed,
 * so an application's own handler stays. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static void server_maybe_free(struct http_server *s)
{
    if (!s->stopping || s->open_handles > 0 || s->n_live > 0)
        return;
    void (*cb)(void *) = s->stop_cb;
    void *ctx = s->stop_ctx;
    free(s->host);
    free(s->comp);
    free(s);
    if (cb)
        cb(ctx);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    s->open_handles--;
    server_maybe_free(s);
}

static int resolve_host(const char *host, int port, struct sockaddr_storage *ss)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    char tmp[128];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof tmp) {
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        host = tmp;
    }
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return UV_EINVAL;
}

/* libuv 1.44 has no UV_TCP_REUSEPORT: build the socket ourselves and adopt it. */
static int bind_reuseport(uv_tcp_t *t, const struct sockaddr *sa)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 || bind(fd, sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = uv_tcp_open(t, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg,
                      struct http_server **out)
{
    ignore_sigpipe();
    struct http_server *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    s->host = xstrdup(cfg->host ? cfg->host : "0.0.0.0");
    s->comp = xstrdup(cfg->server_name ? cfg->server_name : "http");
    s->cfg.host = s->host;
    s->cfg.server_name = s->comp;
    if (!s->cfg.max_header_bytes)
        s->cfg.max_header_bytes = 64u * 1024;
    if (!s->cfg.max_body_bytes)
        s->cfg.max_body_bytes = 32u * 1024 * 1024;
    if (!s->cfg.read_timeout_ms)
        s->cfg.read_timeout_ms = 30000;
    if (!s->cfg.idle_timeout_ms)
        s->cfg.idle_timeout_ms = 75000;
    if (!s->cfg.write_high_water)
        s->cfg.write_high_water = 256u * 1024;

    struct sockaddr_storage ss;
    int rc = resolve_host(s->host, cfg->port, &ss);
    if (rc != 0) {
        free(s->host);
        free(s->comp);
        free(s);
        return rc;
    }
    uv_tcp_init(loop, &s->listener);
    uv_prepare_init(loop, &s->prepare);
    uv_idle_init(loop, &s->idle);
    s->listener.data = s;
    s->prepare.data = s;
    s->idle.data = s;
    s->open_handles = 3;
    /* Neither flush handle may keep the loop alive: connections do that. */
    uv_unref((uv_handle_t *)&s->prepare);
    uv_unref((uv_handle_t *)&s->idle);

    if (cfg->reuseport)
        rc = bind_reuseport(&s->listener, (struct sockaddr *)&ss);
    else
        rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        s->stopping = true;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->prepare, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->idle, on_server_handle_closed);
        return rc;
    }
    LOG_D(s->comp, "listening on %s:%d", s->host, http_server_port(s));
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void http_server_stop(struct http_server *s, void (*cb)(void *ctx), void *ctx)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_ctx = ctx;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->prepare, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_server_handle_closed);
    /* conn_abort may run handler code that closes other connections; restart from
     * the head each time, skipping those already closing. */
    for (;;) {
        struct conn *c = s->conns;
        while (c && c->closing)
            c = c->next;
        if (!c)
            break;
        conn_abort(c);
    }
    server_maybe_free(s);
}

size_t http_server_connections(const struct http_server *s)
{
    return s->n_open;
}

/* --- exchange API -------------------------------------------------------------- */

const struct http_request *http_exchange_request(struct http_exchange *ex)
{
    return &ex->req;
}

struct arena *http_exchange_arena(struct http_exchange *ex)
{
    return &ex->arena;
}

void http_exchange_on_abort(struct http_exchange *ex, http_abort_fn fn, void *ctx)
{
    ex->on_abort = fn;
    ex->abort_ctx = ctx;
}

void http_exchange_on_drain(struct http_exchange *ex, http_drain_fn fn, void *ctx)
{
    ex->on_drain = fn;
    ex->drain_ctx = ctx;
}

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static bool contains_token_close(const char *v)
{
    for (; *v; v++)
        if (strncasecmp(v, "close", 5) == 0)
            return true;
    return false;
}

void http_add_header(struct http_exchange *ex, const char *name, const char *value)
{
    if (ex->phase != EX_ACTIVE || has_crlf(name) || has_crlf(value) || !*name)
        return;
    if (strcasecmp(name, "connection") == 0) {
        /* We write the Connection header ourselves; honour a handler asking to close. */
        if (contains_token_close(value))
            ex->keep_alive = false;
        return;
    }
    if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0)
        return; /* framing is ours */
    buf_append_str(&ex->hdrs, name);
    FMT_LIT(&ex->hdrs, ": ");
    buf_append_str(&ex->hdrs, value);
    FMT_LIT(&ex->hdrs, "\r\n");
}

static void write_status_line(struct buf *o, int status)
{
    FMT_LIT(o, "HTTP/1.1 ");
    fmt_uint(o, (uint64_t)status);
    buf_append_char(o, ' ');
    buf_append_str(o, http_status_text(status));
    FMT_LIT(o, "\r\n");
}

static void write_head_tail(struct http_exchange *ex, struct buf *o)
{
    buf_append(o, ex->hdrs.data, ex->hdrs.len);
    if (!ex->keep_alive || ex->conn->srv->stopping)
        FMT_LIT(o, "Connection: close\r\n\r\n");
    else if (ex->http10)
        FMT_LIT(o, "Connection: keep-alive\r\n\r\n");
    else
        FMT_LIT(o, "\r\n");
}

void http_respond(struct http_exchange *ex, int status, const char *content_type, const char *body,
                  size_t len)
{
    if (ex->phase != EX_ACTIVE)
        return;
    struct conn *c = ex->conn;
    struct buf *o = &c->out;
    bool no_body = status < 200 || status == 204 || status == 304;
    buf_reserve(o, 128 + ex->hdrs.len + (ex->head || no_body ? 0 : len));
    write_status_line(o, status);
    if (content_type) {
        FMT_LIT(o, "Content-Type: ");
        buf_append_str(o, content_type);
        FMT_LIT(o, "\r\n");
    }
    if (!no_body) {
        FMT_LIT(o, "Content-Length: ");
        fmt_uint(o, len);
        FMT_LIT(o, "\r\n");
    }
    write_head_tail(ex, o);
    if (!ex->head && !no_body && len)
        buf_append(o, body, len);
    ex_finish(ex);
}

void http_stream_begin(struct http_exchange *ex, int status, const char *content_type)
{
    if (ex->phase != EX_ACTIVE)
        return;
    struct conn *c = ex->conn;
    struct buf *o = &c->out;
    write_status_line(o, status);
    if (content_type) {
        FMT_LIT(o, "Content-Type: ");
        buf_append_str(o, content_type);
        FMT_LIT(o, "\r\n");
        if (strncasecmp(content_type, "text/event-stream", 17) == 0)
            FMT_LIT(o, "Cache-Control: no-cache\r\n");
    }
    if (ex->http10) {
        ex->keep_alive = false; /* the end of the body is the end of the connection */
        ex->chunked = false;
    } else {
        ex->chunked = true;
        if (!ex->head)
            FMT_LIT(o, "Transfer-Encoding: chunked\r\n");
    }
    write_head_tail(ex, o);
    ex->phase = EX_STREAMING;
    flush_list_add(c);
}

bool http_stream_write(struct http_exchange *ex, const void *data, size_t len)
{
    if (ex->phase != EX_STREAMING)
        return false;
    struct conn *c = ex->conn;
    if (len > 0 && !ex->head) {
        struct buf *o = &c->out;
        if (ex->chunked) {
            buf_reserve(o, len + 20);
            char *p = o->data + o->len;
            size_t n = fmt_hex_to(p, len);
            p[n] = '\r';
            p[n + 1] = '\n';
            memcpy(p + n + 2, data, len);
            p[n + 2 + len] = '\r';
            p[n + 3 + len] = '\n';
            o->len += n + 4 + len;
            o->data[o->len] = '\0';
        } else {
            buf_append(o, data, len);
        }
        flush_list_add(c);
    }
    if (conn_queued(c) >= c->srv->cfg.write_high_water) {
        ex->drain_wanted = true;
        return false;
    }
    return true;
}

size_t http_stream_queued(const struct http_exchange *ex)
{
    return conn_queued(ex->conn);
}

void http_stream_end(struct http_exchange *ex)
{
    if (ex->phase != EX_STREAMING)
        return;
    if (ex->chunked && !ex->head)
        FMT_LIT(&ex->conn->out, "0\r\n\r\n");
    ex_finish(ex);
}

void http_exchange_close(struct http_exchange *ex)
{
    if (ex->phase != EX_ACTIVE && ex->phase != EX_STREAMING)
        return;
    struct conn *c = ex->conn;
    ex->phase = EX_NONE;
    ex->on_abort = NULL;
    ex->on_drain = NULL;
    /* Best effort: what the handler already wrote goes out, the rest is dropped. */
    if (c->out.len && c->tcp.write_queue_size == 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    c->out.len = 0;
    conn_close(c);
}

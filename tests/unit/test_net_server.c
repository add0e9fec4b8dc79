/* Server and client end to end in one process on 127.0.0.1 (port 0): keep-alive reuse,
 * bodies, chunked streaming, limits (413, 400, 408), pipelining, HTTP/1.0 streaming,
 * cancellation (server on_abort), back-pressure both ways (stream_write false while the
 * client is paused, on_drain after resume), timeouts, connect refused, and the
 * dead-pooled-connection retry. Every wait is bounded by a guard timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/sse.h"

#define GUARD_MS 5000

struct t;

/* A raw TCP client: writes bytes, records everything until EOF. */
struct raw {
    struct t *t;
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct buf in;
    bool connected;
    bool eof;
    bool closed;
    int read_err;
    const char *send_on_connect;
    size_t send_len;
};

struct t {
    uv_loop_t loop;
    uv_timer_t guard;
    bool timed_out;
    struct http_server *srv;
    struct http_client *cl;
    int port;
    bool srv_stopped;

    /* handler-side observations */
    int handled;
    char peers[8][64];
    int aborts;
    int drains;
    bool last_write_ok;
    size_t pumped;
    bool resumed;
    int drains_after_resume;
    struct http_exchange *ex; /* the streaming exchange */
    uv_timer_t ex_timer;
    bool ex_timer_open;
    int stream_left;

    /* client-side observations */
    int done;
    enum http_call_error err;
    int status;
    bool sent_any;
    struct buf body;
    int bodies;
    int heads;
    char ctype[64];
    char te[64];
    char xmethod[16];
    struct http_call *call;
    bool cancel_on_body;
    bool pause_on_body;
    uv_timer_t aux;
    bool aux_open;
    int aux_stage;
    int aux_drains;
};

/* --- loop helpers ------------------------------------------------------------------ */

static void on_guard(uv_timer_t *h)
{
    struct t *t = h->data;
    t->timed_out = true;
}

/* Runs the loop until *flag becomes true (bounded). */
static void run_until(struct t *t, const bool *flag)
{
    t->timed_out = false;
    uv_timer_start(&t->guard, on_guard, GUARD_MS, 0);
    while (!*flag && !t->timed_out)
        uv_run(&t->loop, UV_RUN_ONCE);
    uv_timer_stop(&t->guard);
    assert_false(t->timed_out);
}

static bool counter_reached(const int *c, int n)
{
    return *c >= n;
}

static void run_until_count(struct t *t, const int *c, int n)
{
    t->timed_out = false;
    uv_timer_start(&t->guard, on_guard, GUARD_MS, 0);
    while (!counter_reached(c, n) && !t->timed_out)
        uv_run(&t->loop, UV_RUN_ONCE);
    uv_timer_stop(&t->guard);
    assert_false(t->timed_out);
}

/* Runs the loop for ms milliseconds. */
static void run_for(struct t *t, uint64_t ms)
{
    t->timed_out = false;
    uv_timer_start(&t->guard, on_guard, ms, 0);
    while (!t->timed_out)
        uv_run(&t->loop, UV_RUN_ONCE);
    t->timed_out = false;
}

/* --- server handler ---------------------------------------------------------------- */

static void stream_tick(uv_timer_t *h);

static void on_abort(struct http_exchange *ex, void *ctx)
{
    struct t *t = ctx;
    t->aborts++;
    t->ex = NULL;
    if (t->ex_timer_open)
        uv_timer_stop(&t->ex_timer);
}

static void pump(struct http_exchange *ex, struct t *t)
{
    static char chunk[16384];
    memset(chunk, 'p', sizeof chunk);
    /* After the client resumed and a drain arrived, finish the stream. */
    if (t->resumed && t->drains_after_resume > 0) {
        http_stream_end(ex);
        t->ex = NULL;
        return;
    }
    for (int i = 0; i < 10000; i++) {
        t->last_write_ok = http_stream_write(ex, chunk, sizeof chunk);
        t->pumped += sizeof chunk;
        if (!t->last_write_ok)
            return;
    }
    fail_msg("stream_write never reported a full queue");
}

static void on_drain(struct http_exchange *ex, void *ctx)
{
    struct t *t = ctx;
    t->drains++;
    assert_true(http_stream_queued(ex) < 64 * 1024 / 2);
    if (t->resumed)
        t->drains_after_resume++;
    pump(ex, t);
}

static void on_delay(uv_timer_t *h)
{
    struct t *t = h->data;
    if (t->ex) {
        http_respond(t->ex, 200, "text/plain", "late", 4);
        t->ex = NULL;
    }
}

static void handler(struct http_exchange *ex, void *ctx)
{
    struct t *t = ctx;
    const struct http_request *req = http_exchange_request(ex);
    if (t->handled < 8)
        snprintf(t->peers[t->handled], sizeof t->peers[0], "%s", req->peer);
    t->handled++;
    assert_non_null(http_exchange_arena(ex));
    if (strcmp(req->path, "/hello") == 0) {
        http_add_header(ex, "X-Test", "yes");
        http_respond(ex, 200, "text/plain", "hello", 5);
    } else if (strcmp(req->path, "/big") == 0) {
        char body[1000];
        memset(body, 'b', sizeof body);
        http_respond(ex, 200, "text/plain", body, sizeof body);
    } else if (strcmp(req->path, "/echo") == 0) {
        const char *ct = http_headers_get(&req->headers, "content-type");
        http_add_header(ex, "X-Method", req->method);
        char *q = arena_sprintf(http_exchange_arena(ex), "q=%s", req->query);
        http_add_header(ex, "X-Query", q);
        http_respond(ex, 200, ct ? ct : "application/octet-stream", req->body, req->body_len);
    } else if (strcmp(req->path, "/stream") == 0 || strcmp(req->path, "/forever") == 0) {
        http_exchange_on_abort(ex, on_abort, t);
        http_stream_begin(ex, 200, "text/event-stream");
        /* Coalescing: nothing is written from inside the call; the head waits for the
         * flush pass together with whatever else this iteration produces. */
        assert_true(http_stream_queued(ex) > 0);
        t->ex = ex;
        t->stream_left = strcmp(req->path, "/stream") == 0 ? 20 : -1;
        uv_timer_start(&t->ex_timer, stream_tick, 2, 2);
    } else if (strcmp(req->path, "/pump") == 0) {
        http_exchange_on_abort(ex, on_abort, t);
        http_exchange_on_drain(ex, on_drain, t);
        http_stream_begin(ex, 200, "application/octet-stream");
        t->ex = ex;
        pump(ex, t);
    } else if (strcmp(req->path, "/delay") == 0) {
        http_exchange_on_abort(ex, on_abort, t);
        t->ex = ex;
        uv_timer_start(&t->ex_timer, on_delay, 300, 0);
    } else if (strcmp(req->path, "/drop") == 0) {
        http_stream_begin(ex, 200, "text/plain");
        http_stream_write(ex, "partial", 7);
        http_exchange_close(ex);
    } else if (strcmp(req->path, "/close") == 0) {
        http_add_header(ex, "Connection", "close");
        http_respond(ex, 200, "text/plain", "bye", 3);
    } else {
        http_respond(ex, 404, "application/json", "{}", 2);
    }
}

static void stream_tick(uv_timer_t *h)
{
    struct t *t = h->data;
    if (!t->ex) {
        uv_timer_stop(h);
        return;
    }
    if (t->stream_left == 0) {
        struct buf b = BUF_INIT;
        sse_append_data(&b, "[DONE]", 6);
        http_stream_write(t->ex, b.data, b.len);
        buf_free(&b);
        http_stream_end(t->ex);
        t->ex = NULL;
        uv_timer_stop(h);
        return;
    }
    if (t->stream_left > 0)
        t->stream_left--;
    char payload[64];
    int n = snprintf(payload, sizeof payload, "{\"n\":%d}", t->stream_left);
    struct buf b = BUF_INIT;
    sse_append_data(&b, payload, (size_t)n);
    http_stream_write(t->ex, b.data, b.len);
    http_stream_write(t->ex, "", 0); /* must not end the chunked stream */
    buf_free(&b);
}

/* --- fixture ------------------------------------------------------------------------ */

static void start_server(struct t *t, struct http_server_config *cfg)
{
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->handler = handler;
    cfg->handler_ctx = t;
    cfg->server_name = "test";
    assert_int_equal(http_server_start(&t->loop, cfg, &t->srv), 0);
    t->port = http_server_port(t->srv);
    assert_true(t->port > 0);
}

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof *t);
    uv_loop_init(&t->loop);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
    uv_timer_init(&t->loop, &t->ex_timer);
    t->ex_timer.data = t;
    t->ex_timer_open = true;
    uv_timer_init(&t->loop, &t->aux);
    t->aux.data = t;
    t->aux_open = true;
    struct http_server_config cfg = {
        .max_body_bytes = 1 << 20,
        .write_high_water = 64 * 1024,
        .read_timeout_ms = 2000,
    };
    start_server(t, &cfg);
    struct http_client_config ccfg = {.max_idle_per_upstream = 4};
    t->cl = http_client_new(&t->loop, &ccfg);
    *state = t;
    return 0;
}

static void on_stopped(void *ctx)
{
    struct t *t = ctx;
    t->srv_stopped = true;
}

static void on_flag(void *ctx)
{
    *(bool *)ctx = true;
}

static int teardown(void **state)
{
    struct t *t = *state;
    if (t->cl)
        http_client_free(t->cl);
    if (t->srv)
        http_server_stop(t->srv, on_stopped, t);
    uv_close((uv_handle_t *)&t->guard, NULL);
    uv_close((uv_handle_t *)&t->ex_timer, NULL);
    uv_close((uv_handle_t *)&t->aux, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    if (t->srv)
        assert_true(t->srv_stopped);
    /* Every handle the server and client made is closed and freed. */
    assert_int_equal(uv_loop_close(&t->loop), 0);
    buf_free(&t->body);
    free(t);
    return 0;
}

/* --- client callbacks ---------------------------------------------------------------- */

static void c_head(struct http_call *c, int status, const struct http_headers *h, void *ctx)
{
    struct t *t = ctx;
    t->heads++;
    t->status = status;
    const char *ct = http_headers_get(h, "content-type");
    snprintf(t->ctype, sizeof t->ctype, "%s", ct ? ct : "");
    const char *te = http_headers_get(h, "transfer-encoding");
    snprintf(t->te, sizeof t->te, "%s", te ? te : "");
    const char *xm = http_headers_get(h, "x-method");
    snprintf(t->xmethod, sizeof t->xmethod, "%s", xm ? xm : "");
}

static void c_body(struct http_call *c, const char *data, size_t len, void *ctx)
{
    struct t *t = ctx;
    t->bodies++;
    buf_append(&t->body, data, len);
    if (t->cancel_on_body) {
        t->cancel_on_body = false;
        http_call_cancel(c);
        t->call = NULL;
        return;
    }
    if (t->pause_on_body) {
        t->pause_on_body = false;
        http_call_pause(c);
    }
}

static void c_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    struct t *t = ctx;
    t->done++;
    t->err = err;
    t->status = status;
    t->sent_any = http_call_sent_any(c);
    t->call = NULL;
}

static const struct http_call_callbacks ccb = {c_head, c_body, c_done};

static struct http_call *start(struct t *t, const char *method, const char *path, const char *body,
                               size_t len)
{
    struct http_header hdrs[] = {{"Content-Type", "application/json", 0, 0}};
    struct http_call_request req = {
        .method = method,
        .host = "127.0.0.1",
        .port = t->port,
        .path = path,
        .headers = hdrs,
        .n_headers = 1,
        .body = body,
        .body_len = len,
        .timeout_ms = 4000,
    };
    int done_before = t->done;
    t->call = http_call_start(t->cl, &req, &ccb, t);
    assert_non_null(t->call);
    assert_int_equal(t->done, done_before); /* never completes inside start */
    return t->call;
}

/* --- raw client ---------------------------------------------------------------------- */

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof buf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct raw *r = s->data;
    if (n > 0)
        buf_append(&r->in, b->base, (size_t)n);
    else if (n < 0) {
        r->eof = true;
        if (n != UV_EOF)
            r->read_err = (int)n;
        uv_read_stop(s);
    }
}

static void raw_write_done(uv_write_t *w, int status)
{
    free(w);
}

static void raw_send(struct raw *r, const char *data, size_t len)
{
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    assert_int_equal(uv_write(w, (uv_stream_t *)&r->tcp, &b, 1, raw_write_done), 0);
}

static void raw_connected(uv_connect_t *c, int status)
{
    struct raw *r = c->data;
    assert_int_equal(status, 0);
    r->connected = true;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    if (r->send_on_connect)
        raw_send(r, r->send_on_connect, r->send_len);
}

static void raw_open(struct t *t, struct raw *r, const char *send, size_t len)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    r->send_on_connect = send;
    r->send_len = len;
    uv_tcp_init(&t->loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", t->port, &a);
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&a, raw_connected), 0);
}

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

static void raw_close(struct t *t, struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    run_until(t, &r->closed);
    buf_free(&r->in);
}

/* --- tests ---------------------------------------------------------------------------- */

static bool done_flag(struct t *t, int n)
{
    return t->done >= n;
}

static void test_get_keepalive_reuse(void **state)
{
    struct t *t = *state;
    start(t, "GET", "/hello", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_OK);
    assert_int_equal(t->status, 200);
    assert_string_equal(t->body.data, "hello");
    assert_string_equal(t->ctype, "text/plain");
    assert_true(t->sent_any);
    /* The connection went back to the pool. */
    assert_int_equal(http_client_idle_connections(t->cl), 1);
    assert_int_equal(http_server_connections(t->srv), 1);

    buf_reset(&t->body);
    start(t, "GET", "/hello", NULL, 0);
    assert_int_equal(http_client_idle_connections(t->cl), 0); /* taken from the pool */
    run_until_count(t, &t->done, 2);
    assert_int_equal(t->status, 200);
    assert_string_equal(t->body.data, "hello");
    assert_int_equal(http_client_idle_connections(t->cl), 1);
    assert_int_equal(http_server_connections(t->srv), 1);
    /* Same client port: the same TCP connection served both. */
    assert_int_equal(t->handled, 2);
    assert_string_equal(t->peers[0], t->peers[1]);
    assert_true(done_flag(t, 2));
}

static void test_post_echo(void **state)
{
    struct t *t = *state;
    size_t len = 300 * 1000; /* several reads and writes */
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    start(t, "POST", "/echo?x=1", body, len);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_OK);
    assert_int_equal(t->status, 200);
    assert_int_equal(t->body.len, len);
    assert_memory_equal(t->body.data, body, len);
    assert_string_equal(t->ctype, "application/json");
    assert_string_equal(t->xmethod, "POST");
    free(body);
}

static void test_stream_chunked_piecewise(void **state)
{
    struct t *t = *state;
    start(t, "GET", "/stream", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_OK);
    assert_int_equal(t->status, 200);
    assert_string_equal(t->ctype, "text/event-stream");
    assert_string_equal(t->te, "chunked");
    assert_true(t->bodies > 1); /* delivered as it arrived, not buffered */
    struct sse_parser p;
    sse_parser_init(&p);
    size_t events = sse_parser_feed(&p, t->body.data, t->body.len, NULL, NULL);
    sse_parser_free(&p);
    assert_int_equal(events, 21);
    assert_non_null(strstr(t->body.data, "data: {\"n\":0}\n\ndata: [DONE]\n\n"));
    /* Chunk framing is gone. */
    assert_null(strstr(t->body.data, "\r\n"));
    assert_int_equal(http_client_idle_connections(t->cl), 1);
}

static void test_413_body_too_big(void **state)
{
    struct t *t = *state;
    /* Content-Length over the limit: refused before the body is read. */
    struct raw r;
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\nabc";
    raw_open(t, &r, req, strlen(req));
    run_until(t, &r.eof);
    assert_true(strncmp(r.in.data, "HTTP/1.1 413 ", 13) == 0);
    assert_non_null(strstr(r.in.data, "Connection: close"));
    assert_non_null(strstr(r.in.data, "\"code\":413"));
    assert_int_equal(t->handled, 0);
    raw_close(t, &r);

    /* Chunked: counted as it arrives. */
    struct buf big = BUF_INIT;
    buf_append_str(&big, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[65536];
    memset(chunk, 'z', sizeof chunk);
    for (int i = 0; i < 20; i++) {
        buf_printf(&big, "%x\r\n", (unsigned)sizeof chunk);
        buf_append(&big, chunk, sizeof chunk);
        buf_append_str(&big, "\r\n");
    }
    raw_open(t, &r, big.data, big.len);
    run_until(t, &r.eof);
    assert_true(strncmp(r.in.data, "HTTP/1.1 413 ", 13) == 0);
    assert_int_equal(t->handled, 0);
    raw_close(t, &r);
    buf_free(&big);
}

static void test_400_garbage(void **state)
{
    struct t *t = *state;
    struct raw r;
    const char *req = "THIS IS NOT HTTP\r\n\r\n";
    raw_open(t, &r, req, strlen(req));
    run_until(t, &r.eof);
    assert_true(strncmp(r.in.data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    const char *body = strstr(r.in.data, "\r\n\r\n");
    assert_non_null(body);
    assert_non_null(strstr(body, "{\"error\":{\"message\":\""));
    assert_non_null(strstr(body, "\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}"));
    assert_int_equal(t->handled, 0);
    raw_close(t, &r);
    /* The server is still fine. */
    start(t, "GET", "/hello", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->status, 200);
}

static void test_408_slow_client(void **state)
{
    struct t *t = *state;
    http_server_stop(t->srv, NULL, NULL);
    t->srv = NULL;
    struct http_server_config cfg = {.read_timeout_ms = 150, .idle_timeout_ms = 150};
    start_server(t, &cfg);
    struct raw r;
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n"; /* headers never finish */
    raw_open(t, &r, req, strlen(req));
    uint64_t t0 = uv_now(&t->loop);
    run_until(t, &r.eof);
    assert_true(uv_now(&t->loop) - t0 >= 100);
    assert_true(strncmp(r.in.data, "HTTP/1.1 408 ", 13) == 0);
    /* the same error class as every other 408 body (http_error_type) */
    assert_non_null(strstr(r.in.data, "\"type\":\"RequestTimeoutError\""));
    assert_int_equal(t->handled, 0);
    raw_close(t, &r);

    /* A connection that never sends anything is closed silently. */
    raw_open(t, &r, NULL, 0);
    run_until(t, &r.eof);
    assert_int_equal(r.in.len, 0);
    raw_close(t, &r);

    /* Idle keep-alive after a request: silent close too. */
    const char *get = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_open(t, &r, get, strlen(get));
    run_until(t, &r.eof);
    assert_true(strncmp(r.in.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_null(strstr(r.in.data, "408"));
    raw_close(t, &r);
    run_for(t, 20);
    assert_int_equal(http_server_connections(t->srv), 0);
}

static void test_pipelined(void **state)
{
    struct t *t = *state;
    struct raw r;
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /echo?p=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
                      "GET /close HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"; /* after close: ignored */
    raw_open(t, &r, req, strlen(req));
    run_until(t, &r.eof);
    assert_int_equal(t->handled, 3);
    const char *a = strstr(r.in.data, "\r\n\r\nhello");
    const char *b = strstr(r.in.data, "X-Query: q=p=2\r\n");
    const char *c = strstr(r.in.data, "\r\n\r\nbye");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_non_null(strstr(r.in.data, "\r\n\r\nabcd"));
    assert_non_null(strstr(r.in.data, "Connection: close\r\n"));
    raw_close(t, &r);
}

static void test_http10_stream(void **state)
{
    struct t *t = *state;
    struct raw r;
    const char *req = "GET /stream HTTP/1.0\r\n\r\n";
    raw_open(t, &r, req, strlen(req));
    run_until(t, &r.eof);
    assert_true(strncmp(r.in.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_null(strstr(r.in.data, "Transfer-Encoding"));
    assert_non_null(strstr(r.in.data, "Connection: close\r\n"));
    assert_non_null(strstr(r.in.data, "Cache-Control: no-cache\r\n"));
    /* Raw events, no chunk sizes, ended by the close. */
    assert_non_null(strstr(r.in.data, "\r\n\r\ndata: {\"n\":19}\n\ndata: {\"n\":18}\n\n"));
    size_t len = r.in.len;
    assert_true(len > 14);
    assert_string_equal(r.in.data + len - 14, "data: [DONE]\n\n");
    raw_close(t, &r);
}

static void test_expect_continue(void **state)
{
    struct t *t = *state;
    struct raw r;
    const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 5\r\nConnection: close\r\n\r\n";
    raw_open(t, &r, head, strlen(head));
    t->timed_out = false;
    uv_timer_start(&t->guard, on_guard, GUARD_MS, 0);
    while (r.in.len < 25 && !t->timed_out)
        uv_run(&t->loop, UV_RUN_ONCE);
    assert_false(t->timed_out);
    assert_string_equal(r.in.data, "HTTP/1.1 100 Continue\r\n\r\n");
    raw_send(&r, "hello", 5);
    run_until(t, &r.eof);
    assert_non_null(strstr(r.in.data, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(r.in.data, "\r\n\r\nhello"));
    raw_close(t, &r);
}

static void test_cancel_triggers_abort(void **state)
{
    struct t *t = *state;
    t->cancel_on_body = true;
    start(t, "GET", "/forever", NULL, 0);
    run_until_count(t, &t->aborts, 1);
    assert_int_equal(t->bodies, 1);
    assert_int_equal(t->done, 0); /* no callback after cancel */
    run_for(t, 30);
    assert_int_equal(t->done, 0);
    assert_int_equal(http_client_idle_connections(t->cl), 0);
    assert_int_equal(http_server_connections(t->srv), 0);
}

static void test_drop_mid_stream(void **state)
{
    struct t *t = *state;
    start(t, "GET", "/drop", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_ERESET);
    assert_int_equal(t->status, 200);
    assert_string_equal(t->body.data, "partial");
    assert_true(t->sent_any);
}

static void on_aux(uv_timer_t *h)
{
    struct t *t = h->data;
    if (t->aux_stage == 0 || t->drains != t->aux_drains) {
        /* The client is paused since its first body byte; the server is still filling
         * the socket buffers (drains keep coming). Look again later. */
        t->aux_stage = 1;
        t->aux_drains = t->drains;
        uv_timer_start(h, on_aux, 150, 0);
        return;
    }
    /* Stalled: no drain for a whole period while the client reads nothing. */
    assert_false(t->last_write_ok);
    assert_non_null(t->ex);
    /* Full: above the drain threshold, so no drain can fire until the client reads. */
    assert_true(http_stream_queued(t->ex) >= 64 * 1024 / 2);
    t->aux_stage = 2;
    t->resumed = true;
    http_call_resume(t->call);
}

static void test_backpressure(void **state)
{
    struct t *t = *state;
    t->pause_on_body = true;
    start(t, "GET", "/pump", NULL, 0);
    /* Let the server fill the kernel buffers while the client reads nothing. */
    uv_timer_start(&t->aux, on_aux, 150, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->aux_stage, 2);
    assert_int_equal(t->err, HTTP_CALL_OK);
    assert_true(t->drains_after_resume >= 1);
    assert_true(t->pumped > 64 * 1024);
    assert_int_equal(t->body.len, t->pumped); /* nothing dropped */
}

static void test_connect_refused(void **state)
{
    struct t *t = *state;
    /* A bound but not listening socket refuses connections. */
    uv_tcp_t s;
    uv_tcp_init(&t->loop, &s);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&s, (struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&s, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int saved = t->port;
    t->port = port;
    start(t, "GET", "/hello", NULL, 0);
    t->port = saved;
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_ECONNECT);
    assert_false(t->sent_any);
    assert_int_equal(t->status, 0);
    assert_int_equal(t->heads, 0);
    uv_close((uv_handle_t *)&s, NULL);

    /* Not a numeric address: also ECONNECT, also asynchronous. */
    struct http_call_request req = {
        .method = "GET", .host = "no.such.host", .port = 80, .path = "/"};
    t->call = http_call_start(t->cl, &req, &ccb, t);
    assert_int_equal(t->done, 1);
    run_until_count(t, &t->done, 2);
    assert_int_equal(t->err, HTTP_CALL_ECONNECT);
    assert_false(t->sent_any);
    assert_string_equal(http_call_error_str(HTTP_CALL_ECONNECT), "connect failed");
}

static void test_first_byte_timeout(void **state)
{
    struct t *t = *state;
    struct http_call_request req = {.method = "GET",
                                    .host = "localhost",
                                    .port = t->port,
                                    .path = "/delay",
                                    .first_byte_timeout_ms = 80};
    t->call = http_call_start(t->cl, &req, &ccb, t);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_ETIMEOUT);
    assert_true(t->sent_any);
    /* The client closed the connection, so the server's handler hears about it. */
    run_until_count(t, &t->aborts, 1);

    /* Total timeout in the middle of a stream. */
    struct http_call_request req2 = {.method = "GET",
                                     .host = "127.0.0.1",
                                     .port = t->port,
                                     .path = "/forever",
                                     .timeout_ms = 80};
    t->call = http_call_start(t->cl, &req2, &ccb, t);
    run_until_count(t, &t->done, 2);
    assert_int_equal(t->err, HTTP_CALL_ETIMEOUT);
    assert_int_equal(t->status, 200);
    assert_true(t->bodies > 0);
    run_until_count(t, &t->aborts, 2);
}

struct fetch_res {
    int n;
    enum http_call_error err;
    int status;
    char body[64];
    size_t len;
};

static void fetch_done(enum http_call_error err, int status, const char *body, size_t len,
                       void *ctx)
{
    struct fetch_res *r = ctx;
    r->n++;
    r->err = err;
    r->status = status;
    r->len = len;
    snprintf(r->body, sizeof r->body, "%.*s", (int)len, body);
}

static void test_fetch(void **state)
{
    struct t *t = *state;
    struct fetch_res r = {0};
    struct http_call_request req = {
        .method = "GET", .host = "127.0.0.1", .port = t->port, .path = "/hello"};
    http_fetch(t->cl, &req, 1024, fetch_done, &r);
    run_until_count(t, &r.n, 1);
    assert_int_equal(r.err, HTTP_CALL_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");

    req.path = "/big";
    http_fetch(t->cl, &req, 100, fetch_done, &r);
    run_until_count(t, &r.n, 2);
    assert_int_equal(r.err, HTTP_CALL_ETOOBIG);
    assert_int_equal(r.status, 200);

    req.path = "/nope";
    http_fetch(t->cl, &req, 100, fetch_done, &r);
    run_until_count(t, &r.n, 3);
    assert_int_equal(r.err, HTTP_CALL_OK);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{}");

    /* HEAD: headers only, the connection stays usable. */
    req.method = "HEAD";
    req.path = "/hello";
    http_fetch(t->cl, &req, 100, fetch_done, &r);
    run_until_count(t, &r.n, 4);
    assert_int_equal(r.err, HTTP_CALL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_int_equal(http_client_idle_connections(t->cl), 1);
}

static void test_server_stop_aborts(void **state)
{
    struct t *t = *state;
    start(t, "GET", "/delay", NULL, 0);
    run_until_count(t, &t->handled, 1);
    http_server_stop(t->srv, on_stopped, t);
    t->srv = NULL;
    assert_int_equal(t->aborts, 1); /* in-flight exchange told at once */
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->err, HTTP_CALL_ERESET);
    run_until(t, &t->srv_stopped);
}

/* A bare upstream that answers a connection's first request and then, on the next one,
 * closes without answering: the client must retry on a fresh connection. */
struct flaky {
    struct t *t;
    uv_tcp_t listener;
    bool closed;
    int conns;
    int requests;
};

struct flaky_conn {
    struct flaky *f;
    uv_tcp_t tcp;
    int index;
    int seen;
};

static void flaky_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void flaky_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct flaky_conn *fc = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, flaky_conn_closed);
        return;
    }
    for (ssize_t i = 0; i + 3 < n; i++)
        if (memcmp(b->base + i, "\r\n\r\n", 4) == 0)
            fc->seen++;
    if (n > 0 && fc->seen > 0) {
        fc->f->requests++;
        if (fc->index == 1 && fc->seen >= 2) {
            uv_close((uv_handle_t *)s, flaky_conn_closed);
            return;
        }
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        uv_write_t *w = malloc(sizeof *w);
        uv_buf_t wb = uv_buf_init((char *)resp, sizeof resp - 1);
        uv_write(w, s, &wb, 1, raw_write_done);
    }
}

static void flaky_listener_closed(uv_handle_t *h)
{
    struct flaky *f = h->data;
    f->closed = true;
}

static void flaky_accept(uv_stream_t *l, int status)
{
    struct flaky *f = l->data;
    struct flaky_conn *fc = calloc(1, sizeof *fc);
    fc->f = f;
    fc->index = ++f->conns;
    uv_tcp_init(l->loop, &fc->tcp);
    fc->tcp.data = fc;
    uv_accept(l, (uv_stream_t *)&fc->tcp);
    uv_read_start((uv_stream_t *)&fc->tcp, raw_alloc, flaky_read);
}

static void test_dead_pooled_connection_retry(void **state)
{
    struct t *t = *state;
    struct flaky f = {.t = t};
    uv_tcp_init(&t->loop, &f.listener);
    f.listener.data = &f;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f.listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f.listener, 16, flaky_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&f.listener, (struct sockaddr *)&ss, &len);
    int saved = t->port;
    t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);

    start(t, "GET", "/", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(t->status, 200);
    assert_int_equal(http_client_idle_connections(t->cl), 1);
    buf_reset(&t->body);
    start(t, "GET", "/", NULL, 0); /* reuses conn 1, which dies: retried on conn 2 */
    run_until_count(t, &t->done, 2);
    assert_int_equal(t->err, HTTP_CALL_OK);
    assert_int_equal(t->status, 200);
    assert_string_equal(t->body.data, "ok");
    assert_int_equal(f.conns, 2);
    assert_int_equal(f.requests, 3);
    t->port = saved;
    uv_close((uv_handle_t *)&f.listener, flaky_listener_closed);
    run_until(t, &f.closed);
    http_client_free(t->cl); /* closes conn 2; its close runs in teardown's loop */
    t->cl = NULL;
    run_for(t, 20);
}

static void test_client_notices_idle_close(void **state)
{
    struct t *t = *state;
    http_server_stop(t->srv, NULL, NULL);
    t->srv = NULL;
    struct http_server_config cfg = {.idle_timeout_ms = 50};
    start_server(t, &cfg);
    start(t, "GET", "/hello", NULL, 0);
    run_until_count(t, &t->done, 1);
    assert_int_equal(http_client_idle_connections(t->cl), 1);
    run_for(t, 200); /* server closes the idle connection; the pool notices */
    assert_int_equal(http_server_connections(t->srv), 0);
    assert_int_equal(http_client_idle_connections(t->cl), 0);
    start(t, "GET", "/hello", NULL, 0);
    run_until_count(t, &t->done, 2);
    assert_int_equal(t->err, HTTP_CALL_OK);
}

static void test_pipelined_async(void **state)
{
    struct t *t = *state;
    /* The first answer comes from a timer: the second request waits in the buffer and
     * is parsed only after it, from the flush pass, and answered in order. */
    struct raw r;
    const char *req = "GET /delay HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /close HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_open(t, &r, req, strlen(req));
    run_until_count(t, &t->handled, 1);
    run_for(t, 50);
    assert_int_equal(t->handled, 1); /* one request at a time */
    run_until(t, &r.eof);
    assert_int_equal(t->handled, 2);
    const char *a = strstr(r.in.data, "\r\n\r\nlate");
    const char *b = strstr(r.in.data, "\r\n\r\nbye");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    raw_close(t, &r);
}

static void test_reuseport(void **state)
{
    struct t *t = *state;
    struct http_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .handler = handler, .handler_ctx = t, .reuseport = true};
    struct http_server *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(http_server_start(&t->loop, &cfg, &a), 0);
    cfg.port = http_server_port(a);
    assert_int_equal(http_server_start(&t->loop, &cfg, &b), 0); /* same port, shared */
    assert_int_equal(http_server_port(b), cfg.port);
    cfg.reuseport = false;
    assert_int_equal(http_server_start(&t->loop, &cfg, &c), UV_EADDRINUSE);
    assert_null(c);
    cfg.host = "not-an-ip";
    assert_true(http_server_start(&t->loop, &cfg, &c) < 0);
    bool stopped_a = false, stopped_b = false;
    http_server_stop(a, on_flag, &stopped_a);
    http_server_stop(b, on_flag, &stopped_b);
    run_until(t, &stopped_a);
    run_until(t, &stopped_b);
}

/* Returns a port whose accept queue is full (nothing accepts), so a new connect's SYN
 * is dropped and it neither succeeds nor fails. fds[] receives the sockets to close. */
static int full_listener(int *fds, int *n)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    fds[0] = l;
    *n = 1;
    /* Connect one at a time until one stays pending: the queue is then full. */
    for (int i = 0; i < 16; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        fds[(*n)++] = c;
        connect(c, (struct sockaddr *)&a, sizeof a);
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0)
            return ntohs(a.sin_port);
    }
    return -1; /* this kernel answers instead of dropping: nothing to test with */
}

static void test_connect_timeout(void **state)
{
    struct t *t = *state;
    int fds[20];
    int nfds = 0;
    int port = full_listener(fds, &nfds);
    if (port < 0) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        skip();
    }
    http_client_free(t->cl);
    struct http_client_config ccfg = {.connect_timeout_ms = 150};
    t->cl = http_client_new(&t->loop, &ccfg);
    struct http_call_request req = {
        .method = "GET", .host = "127.0.0.1", .port = port, .path = "/", .timeout_ms = 3000};
    uint64_t t0 = uv_now(&t->loop);
    t->call = http_call_start(t->cl, &req, &ccb, t);
    run_until_count(t, &t->done, 1);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    assert_int_equal(t->err, HTTP_CALL_ECONNECT); /* not ETIMEOUT: the connect timed out */
    assert_false(t->sent_any);
    assert_true(uv_now(&t->loop) - t0 >= 140);
    assert_true(uv_now(&t->loop) - t0 < 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chunked_piecewise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_body_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_408_slow_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_triggers_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_stop_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_pooled_connection_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_notices_idle_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuseport, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

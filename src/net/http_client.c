/* HTTP/1.1 client with per-upstream keep-alive pools.
 *
 * Objects: the client owns upstreams (one per host:port, with a LIFO list of idle
 * connections so the warmest is reused and surplus ones age out), connections (a TCP
 * handle and a timer; freed only from their handles' close callbacks) and calls.
 * A call is bound to at most one connection at a time; a connection serves at most one
 * call. The connection's timer carries whichever deadline is nearest: connect timeout
 * while connecting, the call's first-byte and total deadlines while active, the idle
 * timeout while pooled.
 *
 * Callback safety: user callbacks may cancel the call, start other calls or free the
 * client. A call is never freed while `busy` (we are inside a dispatch that touches
 * it); cancel only marks it and closes the connection, and the dispatcher recycles it
 * on the way out. Errors found inside http_call_start are parked on a pending list
 * that an idle handle delivers on the next loop iteration.
 *
 * Reuse: a connection goes back to the pool only after a complete response that allows
 * keep-alive, with the request fully written and no stray bytes after the response.
 * Pooled connections keep reading, so an upstream closing them is noticed while idle;
 * the race where it closes just as we reuse it (write error or EOF before any response
 * byte) is covered by one transparent retry on a fresh connection. Calls are recycled
 * through a free list with their request buffers, so steady traffic does not malloc. */
#include "net/http_client.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/conn.h"
#include "net/fmt.h"
#include "net/http_parser.h"

#define READ_BUF_SIZE (64u * 1024)
#define UPSTREAM_BUCKETS 64u
#define CALL_FREELIST_MAX 256u
#define REQ_KEEP_MAX (256u * 1024) /* larger request buffers are not kept for reuse */

enum cc_state { CC_CONNECTING, CC_ACTIVE, CC_IDLE };

struct upstream {
    struct upstream *next; /* hash chain */
    char *host;
    int port;
    struct sockaddr_storage addr;
    bool addr_ok;
    struct cconn *idle; /* most recently pooled first */
    size_t n_idle;
};

struct cconn {
    struct http_client *cl;
    struct upstream *up;
    struct cconn *prev, *next;           /* client's connection list */
    struct cconn *idle_prev, *idle_next; /* upstream's idle list */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    int open_handles;
    int writes; /* uv_write requests in flight */
    enum cc_state state;
    bool closing;
    bool reading;
    bool reused; /* served an earlier call */
    uint64_t connect_deadline;
    struct http_resp_parser parser;
    struct http_call *call;
};

struct http_call {
    struct http_client *cl;
    struct http_call *prev, *next; /* client's list of live calls */
    struct http_call *pend_next;   /* pending-error list */
    struct cconn *conn;
    struct upstream *up;
    struct http_call_callbacks cb;
    void *ctx;
    struct buf req; /* the serialised request, kept for a retry */
    uint64_t deadline_total;
    uint64_t deadline_first;
    uint64_t read_timeout_ms;
    uint64_t last_read; /* loop time of the start or the last byte read */
    int status;
    int busy;
    enum http_call_error pending_err;
    bool pending;
    bool in_start;
    bool sent_any;
    bool got_byte;
    bool got_head;
    bool done;
    bool cancelled;
    bool paused;
    bool retried;
    bool is_head;
    /* http_fetch */
    http_fetch_done_fn fetch_done;
    void *fetch_ctx;
    size_t fetch_max;
    struct buf fetch_body;
};

struct http_client {
    uv_loop_t *loop;
    struct http_client_config cfg;
    uv_idle_t idle;
    bool idle_open;
    struct upstream *buckets[UPSTREAM_BUCKETS];
    struct cconn *conns;
    size_t n_conns; /* not yet freed */
    size_t n_idle;  /* pooled, all upstreams */
    struct http_call *calls;
    struct http_call *pending;
    struct http_call *free_calls;
    size_t n_free_calls;
    bool freeing;
    char rbuf[READ_BUF_SIZE];
};

static void cconn_close(struct cconn *k);
static void cconn_arm(struct cconn *k);
static void call_bind(struct http_call *c, struct cconn *k);
static void call_fail(struct http_call *c, enum http_call_error err);
static void call_connect_fresh(struct http_call *c);
static void client_maybe_free(struct http_client *cl);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);

const char *http_call_error_str(enum http_call_error e)
{
    switch (e) {
    case HTTP_CALL_OK:
        return "ok";
    case HTTP_CALL_ECONNECT:
        return "connect failed";
    case HTTP_CALL_ETIMEOUT:
        return "timed out";
    case HTTP_CALL_ERESET:
        return "connection reset";
    case HTTP_CALL_EPROTO:
        return "malformed response";
    case HTTP_CALL_ETOOBIG:
        return "response too large";
    case HTTP_CALL_EIDLE:
        return "read timeout";
    }
    return "unknown error";
}

/* --- calls: allocation and completion ------------------------------------------ */

static struct http_call *call_alloc(struct http_client *cl)
{
    struct http_call *c = cl->free_calls;
    struct buf req = BUF_INIT, body = BUF_INIT;
    if (c) {
        cl->free_calls = c->next;
        cl->n_free_calls--;
        req = c->req;
        body = c->fetch_body;
    } else {
        c = xmalloc(sizeof *c);
    }
    memset(c, 0, sizeof *c);
    c->req = req;
    c->req.len = 0;
    c->fetch_body = body;
    c->fetch_body.len = 0;
    c->cl = cl;
    c->next = cl->calls;
    if (cl->calls)
        cl->calls->prev = c;
    cl->calls = c;
    return c;
}

static void call_unlink(struct http_call *c)
{
    struct http_client *cl = c->cl;
    if (c->prev)
        c->prev->next = c->next;
    else if (cl->calls == c)
        cl->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void pending_remove(struct http_call *c)
{
    if (!c->pending)
        return;
    struct http_call **pp = &c->cl->pending;
    while (*pp && *pp != c)
        pp = &(*pp)->pend_next;
    if (*pp)
        *pp = c->pend_next;
    c->pending = false;
    c->pend_next = NULL;
}

/* Recycles a finished or cancelled call once no dispatch is using it. */
static void call_release(struct http_call *c)
{
    if (c->busy > 0 || !(c->done || c->cancelled))
        return;
    struct http_client *cl = c->cl;
    call_unlink(c);
    if (cl->freeing || cl->n_free_calls >= CALL_FREELIST_MAX) {
        buf_free(&c->req);
        buf_free(&c->fetch_body);
        free(c);
        return;
    }
    if (c->req.cap > REQ_KEEP_MAX)
        buf_free(&c->req);
    if (c->fetch_body.cap > REQ_KEEP_MAX)
        buf_free(&c->fetch_body);
    c->next = cl->free_calls;
    cl->free_calls = c;
    cl->n_free_calls++;
}

static void call_detach(struct http_call *c)
{
    if (c->conn) {
        c->conn->call = NULL;
        c->conn = NULL;
    }
}

static void on_pending(uv_idle_t *h)
{
    struct http_client *cl = h->data;
    struct http_call *list = cl->pending;
    cl->pending = NULL;
    uv_idle_stop(h);
    while (list) {
        struct http_call *c = list;
        list = c->pend_next;
        c->pend_next = NULL;
        c->pending = false;
        if (c->cancelled || c->done)
            continue;
        c->in_start = false;
        call_fail(c, c->pending_err);
    }
}

/* Delivers on_done (or parks the error when we are inside http_call_start). */
static void call_finish(struct http_call *c, enum http_call_error err)
{
    if (c->done || c->cancelled)
        return;
    call_detach(c);
    if (c->in_start) {
        if (!c->pending) {
            c->pending = true;
            c->pending_err = err;
            c->pend_next = c->cl->pending;
            c->cl->pending = c;
            uv_idle_start(&c->cl->idle, on_pending);
        }
        return;
    }
    c->done = true;
    c->busy++;
    if (c->cb.on_done)
        c->cb.on_done(c, err, c->status, c->ctx);
    c->busy--;
    call_release(c);
}

/* Fails the call, closing its connection (it is in an unknown state). */
static void call_fail(struct http_call *c, enum http_call_error err)
{
    struct cconn *k = c->conn;
    call_detach(c);
    if (k)
        cconn_close(k);
    call_finish(c, err);
}

/* The pooled connection we reused was dead: try once more on a new one. */
static bool call_maybe_retry(struct http_call *c)
{
    struct cconn *k = c->conn;
    if (!k || !k->reused || c->retried || c->got_byte || c->cancelled || c->done)
        return false;
    LOG_D("http-client", "%s:%d: pooled connection was closed, retrying", c->up->host, c->up->port);
    c->retried = true;
    c->sent_any = false;
    call_detach(c);
    cconn_close(k);
    call_connect_fresh(c);
    return true;
}

/* --- connections ---------------------------------------------------------------- */

static void idle_remove(struct cconn *k)
{
    if (k->state != CC_IDLE)
        return;
    struct upstream *up = k->up;
    if (k->idle_prev)
        k->idle_prev->idle_next = k->idle_next;
    else
        up->idle = k->idle_next;
    if (k->idle_next)
        k->idle_next->idle_prev = k->idle_prev;
    k->idle_prev = k->idle_next = NULL;
    up->n_idle--;
    k->cl->n_idle--;
    k->state = CC_ACTIVE;
}

static void cconn_free(struct cconn *k)
{
    struct http_client *cl = k->cl;
    if (k->prev)
        k->prev->next = k->next;
    else
        cl->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    http_resp_parser_free(&k->parser);
    free(k);
    cl->n_conns--;
    client_maybe_free(cl);
}

static void on_cconn_closed(uv_handle_t *h)
{
    struct cconn *k = h->data;
    if (--k->open_handles == 0)
        cconn_free(k);
}

static void cconn_close(struct cconn *k)
{
    if (k->closing)
        return;
    idle_remove(k);
    if (k->call) {
        k->call->conn = NULL;
        k->call = NULL;
    }
    k->closing = true;
    k->reading = false;
    net_conn_close(&k->tcp, &k->timer, on_cconn_closed);
}

static void read_on(struct cconn *k)
{
    if (!k->closing)
        net_conn_read_on(&k->tcp, &k->reading, on_alloc, on_read);
}

static void read_off(struct cconn *k)
{
    net_conn_read_off(&k->tcp, &k->reading);
}

/* When silence from the upstream ends the call (0 = never): not while paused. */
static uint64_t read_deadline(const struct http_call *c)
{
    return c->read_timeout_ms && !c->paused ? c->last_read + c->read_timeout_ms : 0;
}

static void on_timer(uv_timer_t *t)
{
    struct cconn *k = t->data;
    if (k->closing)
        return;
    if (k->state == CC_IDLE) {
        cconn_close(k);
        return;
    }
    struct http_call *c = k->call;
    if (!c) {
        cconn_close(k);
        return;
    }
    uint64_t now = uv_now(k->cl->loop);
    if (k->state == CC_CONNECTING && k->connect_deadline && now >= k->connect_deadline) {
        LOG_D("http-client", "%s:%d: connect timeout", k->up->host, k->up->port);
        call_fail(c, HTTP_CALL_ECONNECT);
        return;
    }
    if ((c->deadline_total && now >= c->deadline_total) ||
        (!c->got_head && c->deadline_first && now >= c->deadline_first)) {
        c->busy++;
        call_fail(c, HTTP_CALL_ETIMEOUT);
        c->busy--;
        call_release(c);
        return;
    }
    uint64_t rd = read_deadline(c);
    if (rd && now >= rd) {
        c->busy++;
        call_fail(c, HTTP_CALL_EIDLE);
        c->busy--;
        call_release(c);
        return;
    }
    cconn_arm(k); /* fired early (or a read moved the silence deadline): wait for the rest */
}

static void cconn_arm(struct cconn *k)
{
    if (k->closing)
        return;
    uint64_t now = uv_now(k->cl->loop);
    uint64_t deadline = 0;
    if (k->state == CC_IDLE) {
        deadline = now + k->cl->cfg.idle_timeout_ms;
    } else {
        if (k->state == CC_CONNECTING)
            deadline = k->connect_deadline;
        struct http_call *c = k->call;
        if (c) {
            if (c->deadline_total && (!deadline || c->deadline_total < deadline))
                deadline = c->deadline_total;
            if (!c->got_head && c->deadline_first && (!deadline || c->deadline_first < deadline))
                deadline = c->deadline_first;
            uint64_t rd = read_deadline(c);
            if (rd && (!deadline || rd < deadline))
                deadline = rd;
        }
    }
    if (!deadline) {
        uv_timer_stop(&k->timer);
        return;
    }
    uv_timer_start(&k->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

/* A response finished cleanly: pool the connection if possible, then report. */
static void call_complete(struct http_call *c, bool reusable)
{
    struct cconn *k = c->conn;
    struct http_client *cl = c->cl;
    call_detach(c);
    if (k) {
        struct upstream *up = k->up;
        if (reusable && !cl->freeing && !k->closing && k->writes == 0 &&
            up->n_idle < cl->cfg.max_idle_per_upstream) {
            k->state = CC_IDLE;
            k->reused = true;
            k->idle_prev = NULL;
            k->idle_next = up->idle;
            if (up->idle)
                up->idle->idle_prev = k;
            up->idle = k;
            up->n_idle++;
            cl->n_idle++;
            read_on(k); /* to notice the upstream closing it */
            cconn_arm(k);
        } else {
            cconn_close(k);
        }
    }
    call_finish(c, HTTP_CALL_OK);
}

/* --- parser callbacks ------------------------------------------------------------ */

static bool p_on_head(void *ctx, int status, const struct http_headers *h)
{
    struct cconn *k = ctx;
    struct http_call *c = k->call;
    if (!c)
        return false;
    c->got_head = true;
    c->status = status;
    cconn_arm(k); /* the first-byte deadline no longer applies */
    if (c->cb.on_head)
        c->cb.on_head(c, status, h, c->ctx);
    return !c->cancelled && !c->done && c->conn == k;
}

static bool p_on_body(void *ctx, const char *data, size_t len)
{
    struct cconn *k = ctx;
    struct http_call *c = k->call;
    if (!c)
        return false;
    if (c->cb.on_body)
        c->cb.on_body(c, data, len, c->ctx);
    return !c->cancelled && !c->done && c->conn == k;
}

static const struct http_resp_parser_callbacks parser_cb = {p_on_head, p_on_body};

/* --- reading ---------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct cconn *k = h->data;
    *b = uv_buf_init(k->cl->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct cconn *k = s->data;
    if (k->closing || nread == 0)
        return;
    if (k->state == CC_IDLE || !k->call) {
        /* Idle: EOF means the upstream closed it; data would be a protocol error. */
        cconn_close(k);
        return;
    }
    struct http_call *c = k->call;
    c->busy++;
    if (nread < 0) {
        if (!call_maybe_retry(c)) {
            enum http_parse_status st = HTTP_PARSE_ERROR;
            if (nread == UV_EOF)
                st = http_resp_parser_finish(&k->parser);
            if (st == HTTP_PARSE_DONE)
                call_complete(c, false);
            else
                call_fail(c, HTTP_CALL_ERESET);
        }
    } else {
        c->got_byte = true;
        c->last_read = uv_now(k->cl->loop); /* the timer re-arms lazily when it fires */
        enum http_parse_status st;
        size_t used = http_resp_parser_feed(&k->parser, b->base, (size_t)nread, &st);
        if (c->cancelled || c->done || c->conn != k) {
            /* a callback cancelled or finished the call; its connection is handled */
        } else if (st == HTTP_PARSE_DONE) {
            call_complete(c, used == (size_t)nread && http_resp_parser_keep_alive(&k->parser));
        } else if (st == HTTP_PARSE_ERROR) {
            LOG_D("http-client", "%s:%d: bad response: %s", k->up->host, k->up->port,
                  k->parser.err_msg ? k->parser.err_msg : "?");
            call_fail(c, HTTP_CALL_EPROTO);
        }
    }
    c->busy--;
    call_release(c);
}

/* --- writing ---------------------------------------------------------------------- */

static void on_tail_written(void *ctx, int status)
{
    struct cconn *k = ctx;
    k->writes--;
    if (k->closing || status >= 0)
        return;
    struct http_call *c = k->call;
    if (!c) {
        cconn_close(k);
        return;
    }
    c->busy++;
    if (!call_maybe_retry(c))
        call_fail(c, HTTP_CALL_ERESET);
    c->busy--;
    call_release(c);
}

static void call_write(struct http_call *c)
{
    struct cconn *k = c->conn;
    /* A tail goes through libuv in its own copy: the call may be cancelled (and
     * recycled) before the write completes. */
    ssize_t n = net_conn_write(&k->tcp, c->req.data, c->req.len, NULL, on_tail_written, k);
    if (n < 0) {
        if (!call_maybe_retry(c))
            call_fail(c, HTTP_CALL_ERESET);
        return;
    }
    if (n > 0 || (size_t)n < c->req.len)
        c->sent_any = true;
    if ((size_t)n < c->req.len)
        k->writes++;
}

/* --- binding calls to connections ------------------------------------------------ */

static void call_bind(struct http_call *c, struct cconn *k)
{
    c->conn = k;
    k->call = c;
    k->state = CC_ACTIVE;
    http_resp_parser_reset(&k->parser, c->is_head);
    cconn_arm(k);
    if (c->paused)
        read_off(k);
    else
        read_on(k);
    call_write(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct cconn *k = req->data;
    if (k->closing)
        return;
    struct http_call *c = k->call;
    if (!c) {
        cconn_close(k);
        return;
    }
    c->busy++;
    if (status < 0) {
        LOG_D("http-client", "%s:%d: connect failed: %s", k->up->host, k->up->port,
              uv_strerror(status));
        call_fail(c, HTTP_CALL_ECONNECT);
    } else {
        uv_tcp_nodelay(&k->tcp, 1);
        call_bind(c, k);
    }
    c->busy--;
    call_release(c);
}

static void call_connect_fresh(struct http_call *c)
{
    struct http_client *cl = c->cl;
    struct cconn *k = xcalloc(1, sizeof *k);
    k->cl = cl;
    k->up = c->up;
    uv_tcp_init(cl->loop, &k->tcp);
    uv_timer_init(cl->loop, &k->timer);
    k->tcp.data = k;
    k->timer.data = k;
    k->open_handles = 2;
    k->next = cl->conns;
    if (cl->conns)
        cl->conns->prev = k;
    cl->conns = k;
    cl->n_conns++;
    http_resp_parser_init(&k->parser, cl->cfg.max_header_bytes, &parser_cb, k);
    k->state = CC_CONNECTING;
    k->call = c;
    c->conn = k;
    if (cl->cfg.connect_timeout_ms)
        k->connect_deadline = uv_now(cl->loop) + cl->cfg.connect_timeout_ms;
    k->connect_req.data = k;
    int rc = uv_tcp_connect(&k->connect_req, &k->tcp, (struct sockaddr *)&c->up->addr, on_connect);
    if (rc < 0) {
        LOG_D("http-client", "%s:%d: connect failed: %s", c->up->host, c->up->port,
              uv_strerror(rc));
        call_fail(c, HTTP_CALL_ECONNECT);
        return;
    }
    cconn_arm(k);
}

/* --- upstreams -------------------------------------------------------------------- */

static unsigned upstream_hash(const char *host, int port)
{
    unsigned h = 2166136261u ^ (unsigned)port;
    for (const char *p = host; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % UPSTREAM_BUCKETS;
}

static struct upstream *upstream_get(struct http_client *cl, const char *host, int port)
{
    unsigned h = upstream_hash(host, port);
    for (struct upstream *u = cl->buckets[h]; u; u = u->next)
        if (u->port == port && strcmp(u->host, host) == 0)
            return u;
    struct upstream *u = xcalloc(1, sizeof *u);
    u->host = xstrdup(host);
    u->port = port;
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    char tmp[64];
    size_t n = strlen(ip);
    if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']' && n - 2 < sizeof tmp) {
        memcpy(tmp, ip + 1, n - 2);
        tmp[n - 2] = '\0';
        ip = tmp;
    }
    if (port > 0 && port < 65536) {
        u->addr_ok = uv_ip4_addr(ip, port, (struct sockaddr_in *)&u->addr) == 0 ||
                     uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&u->addr) == 0;
    }
    u->next = cl->buckets[h];
    cl->buckets[h] = u;
    return u;
}

/* --- public API -------------------------------------------------------------------- */

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

struct http_client *http_client_new(uv_loop_t *loop, const struct http_client_config *cfg)
{
    ignore_sigpipe();
    struct http_client *cl = xcalloc(1, sizeof *cl);
    cl->loop = loop;
    if (cfg)
        cl->cfg = *cfg;
    if (!cfg || !cfg->max_idle_per_upstream)
        cl->cfg.max_idle_per_upstream = 64;
    if (!cl->cfg.idle_timeout_ms)
        cl->cfg.idle_timeout_ms = 60000;
    if (!cl->cfg.connect_timeout_ms)
        cl->cfg.connect_timeout_ms = 5000;
    if (!cl->cfg.max_header_bytes)
        cl->cfg.max_header_bytes = 64u * 1024;
    uv_idle_init(loop, &cl->idle);
    cl->idle.data = cl;
    cl->idle_open = true;
    return cl;
}

static void client_maybe_free(struct http_client *cl)
{
    if (!cl->freeing || cl->idle_open || cl->n_conns > 0)
        return;
    for (unsigned i = 0; i < UPSTREAM_BUCKETS; i++) {
        struct upstream *u = cl->buckets[i];
        while (u) {
            struct upstream *next = u->next;
            free(u->host);
            free(u);
            u = next;
        }
    }
    while (cl->free_calls) {
        struct http_call *c = cl->free_calls;
        cl->free_calls = c->next;
        buf_free(&c->req);
        buf_free(&c->fetch_body);
        free(c);
    }
    free(cl);
}

static void on_client_idle_closed(uv_handle_t *h)
{
    struct http_client *cl = h->data;
    cl->idle_open = false;
    client_maybe_free(cl);
}

void http_client_free(struct http_client *cl)
{
    if (cl->freeing)
        return;
    cl->freeing = true;
    /* Cancel every live call: no callback fires; busy ones are released by their
     * dispatcher as the stack unwinds. */
    struct http_call *c = cl->calls;
    while (c) {
        struct http_call *next = c->next;
        http_call_cancel(c);
        c = next;
    }
    for (struct cconn *k = cl->conns; k; k = k->next)
        cconn_close(k);
    uv_close((uv_handle_t *)&cl->idle, on_client_idle_closed);
}

static bool header_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static void serialize(struct http_call *c, const struct http_call_request *r)
{
    struct buf *o = &c->req;
    const char *method = r->method ? r->method : "GET";
    const char *path = r->path && *r->path ? r->path : "/";
    buf_reserve(o, 256 + r->body_len);
    buf_append_str(o, method);
    buf_append_char(o, ' ');
    buf_append_str(o, path);
    FMT_LIT(o, " HTTP/1.1\r\n");
    bool user_host = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *h = &r->headers[i];
        size_t nl = h->name_len ? h->name_len : strlen(h->name);
        size_t vl = h->value_len ? h->value_len : strlen(h->value);
        struct http_header hh = {h->name, h->value, nl, vl};
        /* Framing headers are ours: a forwarded one would contradict the body we send. */
        if (header_is(&hh, "content-length") || header_is(&hh, "transfer-encoding"))
            continue;
        if (memchr(h->name, '\r', nl) || memchr(h->name, '\n', nl) || memchr(h->value, '\r', vl) ||
            memchr(h->value, '\n', vl))
            continue;
        if (header_is(&hh, "host"))
            user_host = true;
        buf_append(o, h->name, nl);
        FMT_LIT(o, ": ");
        buf_append(o, h->value, vl);
        FMT_LIT(o, "\r\n");
    }
    if (!user_host) {
        FMT_LIT(o, "Host: ");
        bool v6 = strchr(r->host, ':') && r->host[0] != '[';
        if (v6)
            buf_append_char(o, '[');
        buf_append_str(o, r->host);
        if (v6)
            buf_append_char(o, ']');
        buf_append_char(o, ':');
        fmt_uint(o, (uint64_t)(r->port > 0 ? r->port : 0));
        FMT_LIT(o, "\r\n");
    }
    bool wants_len = r->body_len > 0 || strcasecmp(method, "POST") == 0 ||
                     strcasecmp(method, "PUT") == 0 || strcasecmp(method, "PATCH") == 0;
    if (wants_len) {
        FMT_LIT(o, "Content-Length: ");
        fmt_uint(o, r->body_len);
        FMT_LIT(o, "\r\n");
    }
    FMT_LIT(o, "\r\n");
    if (r->body_len)
        buf_append(o, r->body, r->body_len);
    c->is_head = strcasecmp(method, "HEAD") == 0;
}

struct http_call *http_call_start(struct http_client *cl, const struct http_call_request *req,
                                  const struct http_call_callbacks *cb, void *ctx)
{
    struct http_call *c = call_alloc(cl);
    if (cb)
        c->cb = *cb;
    c->ctx = ctx;
    c->in_start = true;
    serialize(c, req);
    uint64_t now = uv_now(cl->loop);
    if (req->timeout_ms)
        c->deadline_total = now + req->timeout_ms;
    if (req->first_byte_timeout_ms)
        c->deadline_first = now + req->first_byte_timeout_ms;
    c->read_timeout_ms = req->read_timeout_ms;
    c->last_read = now;
    c->up = upstream_get(cl, req->host ? req->host : "", req->port);
    if (cl->freeing || !c->up->addr_ok) {
        if (!cl->freeing)
            LOG_D("http-client", "%s:%d: not a numeric address", c->up->host, c->up->port);
        call_finish(c, HTTP_CALL_ECONNECT);
    } else if (c->up->idle) {
        struct cconn *k = c->up->idle;
        idle_remove(k);
        call_bind(c, k);
    } else {
        call_connect_fresh(c);
    }
    c->in_start = false;
    return c;
}

void http_call_cancel(struct http_call *c)
{
    if (c->done || c->cancelled)
        return;
    c->cancelled = true;
    pending_remove(c);
    struct cconn *k = c->conn;
    call_detach(c);
    if (k)
        cconn_close(k); /* the upstream sees the disconnect and stops working */
    call_release(c);
}

void http_call_pause(struct http_call *c)
{
    if (c->paused)
        return;
    c->paused = true;
    if (c->conn && c->conn->state == CC_ACTIVE)
        read_off(c->conn);
}

void http_call_resume(struct http_call *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    c->last_read = uv_now(c->cl->loop); /* time spent paused is not upstream silence */
    if (c->conn && c->conn->state == CC_ACTIVE) {
        read_on(c->conn);
        cconn_arm(c->conn);
    }
}

bool http_call_sent_any(const struct http_call *c)
{
    return c->sent_any;
}

size_t http_client_idle_connections(const struct http_client *c)
{
    return c->n_idle;
}

/* --- http_fetch -------------------------------------------------------------------- */

static void fetch_on_body(struct http_call *c, const char *data, size_t len, void *ctx)
{
    if (c->fetch_body.len + len > c->fetch_max) {
        call_fail(c, HTTP_CALL_ETOOBIG);
        return;
    }
    buf_append(&c->fetch_body, data, len);
}

static void fetch_on_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    if (c->fetch_done)
        c->fetch_done(err, status, c->fetch_body.data ? c->fetch_body.data : "", c->fetch_body.len,
                      c->fetch_ctx);
}

struct http_call *http_fetch(struct http_client *client, const struct http_call_request *req,
                             size_t max_body_bytes, http_fetch_done_fn done, void *ctx)
{
    static const struct http_call_callbacks fetch_cb = {NULL, fetch_on_body, fetch_on_done};
    struct http_call *c = http_call_start(client, req, &fetch_cb, NULL);
    /* Safe after start: nothing is delivered before the next loop iteration. */
    c->fetch_done = done;
    c->fetch_ctx = ctx;
    c->fetch_max = max_body_bytes ? max_body_bytes : (size_t)-1;
    return c;
}

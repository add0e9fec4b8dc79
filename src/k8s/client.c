/* Kubernetes API requests on libcurl's multi interface, driven by a libuv loop
 * (curl_multi_socket_action + uv_poll per socket + one uv_timer).
 *
 * Objects: the client owns a CURLM, a timer, an idle "reaper" and one poll context per
 * socket curl asks us to watch; each request owns its easy handle and buffers. The
 * multi handle shares connections (HTTP/2 multiplexing when the server offers it), so a
 * router's two watches and its requests use one TLS connection.
 *
 * Callback safety: libcurl forbids removing an easy handle from inside its own
 * callbacks, and user callbacks may cancel any request or free the client. So a cancel
 * only marks the request (its write callback then aborts the transfer) and puts it on
 * the reap list; the reaper (a uv_idle, outside curl) removes and frees it. Completed
 * requests are removed from the multi handle before their done callback runs.
 *
 * Credentials: the bearer token is read from token_file when set, re-read at most every
 * 60 s if the file changed, and at once after a 401 (bound tokens rotate). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "k8s/k8s.h"

#define LOG_C "k8s"
#define REQUEST_TIMEOUT_MS 30000L
#define CONNECT_TIMEOUT_MS 5000L
#define TOKEN_RECHECK_NS (60ull * 1000000000ull)
#define MAX_BODY (256u << 20)

struct k8s_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_idle_t reaper;
    int open_handles; /* timer, reaper, poll contexts: the client is freed at 0 */
    struct k8s_config cfg;
    char *user_agent;
    char *token;          /* current bearer token (from cfg.token or the file) */
    struct timespec token_mtime;
    uint64_t token_checked_ns;
    struct k8s_req *reqs; /* live requests */
    struct k8s_req *reap; /* cancelled, to remove outside curl callbacks */
    bool freeing;
    int in_callback; /* inside a curl write/header callback: no curl_multi_add_handle */
    struct k8s_req *deferred; /* started inside a callback: added by the reaper */
    k8s_observe_fn observe;
    void *observe_ctx;
};

struct k8s_req {
    struct k8s_client *cl;
    struct k8s_req *prev, *next; /* cl->reqs */
    struct k8s_req *reap_next;
    CURL *easy;
    struct curl_slist *headers;
    char *method, *path, *content_type;
    char *body;
    size_t body_len;
    struct buf resp;
    double retry_after_s;
    k8s_done_fn done;
    k8s_data_fn on_data;
    void *ctx;
    long timeout_ms;
    bool streaming;
    bool cancelled;
    bool reaping;
    bool retried_401;
    bool late; /* never reached curl: a timer reports the failure (struct late_fail) */
    bool deferred; /* on cl->deferred, waiting for the reaper to add it */
    char errbuf[CURL_ERROR_SIZE];
};

/* One socket curl watches. */
struct sock_ctx {
    struct k8s_client *cl;
    uv_poll_t poll;
    curl_socket_t fd;
    int events; /* what curl asked to watch */
};

static void check_done(struct k8s_client *cl);
static size_t on_write_inner(struct k8s_req *r, char *data, size_t len);
static size_t on_header_inner(struct k8s_req *r, char *data, size_t len);
static void client_maybe_free(struct k8s_client *cl);
static bool req_submit(struct k8s_req *r);

const struct k8s_config *k8s_client_config(const struct k8s_client *c)
{
    return &c->cfg;
}

void k8s_client_observe(struct k8s_client *c, k8s_observe_fn fn, void *ctx)
{
    c->observe = fn;
    c->observe_ctx = ctx;
}

uv_loop_t *k8s_client_loop(const struct k8s_client *c)
{
    return c->loop;
}

/* --- credentials ------------------------------------------------------------------- */

static void token_refresh(struct k8s_client *cl, bool force)
{
    if (!cl->cfg.token_file)
        return;
    uint64_t now = clock_monotonic_ns();
    if (!force && cl->token && now - cl->token_checked_ns < TOKEN_RECHECK_NS)
        return;
    cl->token_checked_ns = now;
    struct stat st;
    if (stat(cl->cfg.token_file, &st) != 0) {
        LOG_W(LOG_C, "token file %s: %s (keeping the last token)", cl->cfg.token_file,
              strerror(errno));
        return;
    }
    if (!force && cl->token && st.st_mtim.tv_sec == cl->token_mtime.tv_sec &&
        st.st_mtim.tv_nsec == cl->token_mtime.tv_nsec)
        return;
    struct buf b = BUF_INIT;
    if (buf_read_file(&b, cl->cfg.token_file) == 0 && b.len) {
        size_t n = b.len;
        while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' '))
            n--;
        free(cl->token);
        cl->token = xstrndup(b.data, n);
        cl->token_mtime = st.st_mtim;
    }
    buf_free(&b);
}

/* --- requests ---------------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    struct k8s_req *r = ud;
    size_t len = size * n;
    r->cl->in_callback++;
    size_t rc = on_write_inner(r, data, len);
    r->cl->in_callback--;
    return rc;
}

static size_t on_write_inner(struct k8s_req *r, char *data, size_t len)
{
    if (r->cancelled)
        return 0; /* aborts the transfer */
    if (r->streaming && r->on_data) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200) { /* an error's Status body is buffered like any response */
            r->on_data(data, len, r->ctx);
            return r->cancelled ? 0 : len;
        }
    }
    if (r->resp.len + len > MAX_BODY)
        return 0;
    buf_append(&r->resp, data, len);
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct k8s_req *r = ud;
    size_t len = size * n;
    r->cl->in_callback++;
    size_t rc = on_header_inner(r, data, len);
    r->cl->in_callback--;
    return rc;
}

static size_t on_header_inner(struct k8s_req *r, char *data, size_t len)
{
    if (r->streaming && r->on_data && (len == 2 || len == 1) && (data[0] == '\r' || data[0] == '\n')) {
        long code = 0; /* end of a head: a 200 stream is open (data NULL, len 0) */
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200 && !r->cancelled)
            r->on_data(NULL, 0, r->ctx);
        return r->cancelled ? 0 : len;
    }
    if (len > 12 && !strncasecmp(data, "retry-after:", 12)) {
        char tmp[32];
        size_t l = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, data + 12, l);
        tmp[l] = '\0';
        r->retry_after_s = atof(tmp);
    }
    return len;
}

static void req_unlink(struct k8s_req *r)
{
    struct k8s_client *cl = r->cl;
    if (r->prev)
        r->prev->next = r->next;
    else if (cl->reqs == r)
        cl->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(struct k8s_req *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->cl->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->path);
    free(r->content_type);
    free(r->body);
    buf_free(&r->resp);
    free(r);
}

static bool req_add(struct k8s_req *r);

static void on_reap(uv_idle_t *h)
{
    struct k8s_client *cl = h->data;
    while (cl->reap) {
        struct k8s_req *r = cl->reap;
        cl->reap = r->reap_next;
        req_free(r);
    }
    while (cl->deferred) { /* requests started inside a curl callback */
        struct k8s_req *r = cl->deferred;
        cl->deferred = r->reap_next;
        r->deferred = false;
        req_add(r);
    }
    uv_idle_stop(h);
    client_maybe_free(cl);
}

void k8s_request_cancel(struct k8s_req *r)
{
    if (!r || r->cancelled)
        return; /* also: inside its own done callback (req_finish frees it) */
    r->cancelled = true;
    if (r->late)
        return; /* its timer frees it */
    if (r->deferred) { /* not in curl yet: take it off the deferred list */
        struct k8s_req **pp = &r->cl->deferred;
        while (*pp && *pp != r)
            pp = &(*pp)->reap_next;
        if (*pp)
            *pp = r->reap_next;
        r->deferred = false;
    }
    req_unlink(r);
    r->reaping = true;
    r->reap_next = r->cl->reap;
    r->cl->reap = r;
    uv_idle_start(&r->cl->reaper, on_reap);
}

/* Fills in code/reason/message from a Status body, or from the status alone. */
static void fill_status(struct k8s_response *out, json_t **status_obj)
{
    *status_obj = NULL;
    out->code = out->status;
    out->reason = "";
    out->message = "";
    if (out->status >= 200 && out->status < 300)
        return;
    json_t *j = out->len ? json_loadb(out->body, out->len, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(j, "kind"));
    if (j && kind && !strcmp(kind, "Status")) {
        *status_obj = j;
        json_int_t code = json_integer_value(json_object_get(j, "code"));
        if (code)
            out->code = (int)code;
        const char *reason = json_string_value(json_object_get(j, "reason"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        out->reason = reason ? reason : "";
        out->message = msg ? msg : "";
        return;
    }
    json_decref(j);
    switch (out->status) {
    case 401: out->reason = "Unauthorized"; break;
    case 403: out->reason = "Forbidden"; break;
    case 404: out->reason = "NotFound"; break;
    case 409: out->reason = "Conflict"; break;
    case 410: out->reason = "Gone"; break;
    case 429: out->reason = "TooManyRequests"; break;
    default: break;
    }
    out->message = out->len && out->len < 300 ? out->body : "";
}

static void req_finish(struct k8s_req *r, CURLcode rc)
{
    struct k8s_client *cl = r->cl;
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(cl->multi, r->easy);
    /* A rotated token: read it again and retry once. */
    if (rc == CURLE_OK && status == 401 && cl->cfg.token_file && !r->retried_401 &&
        !r->cancelled) {
        r->retried_401 = true;
        token_refresh(cl, true);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        curl_slist_free_all(r->headers);
        r->headers = NULL;
        buf_reset(&r->resp);
        if (req_submit(r))
            return;
    }
    req_unlink(r);
    struct k8s_response out = {0};
    if (!r->resp.data)
        buf_append(&r->resp, "", 0);
    out.body = r->resp.data ? r->resp.data : "";
    out.len = r->resp.len;
    out.retry_after_s = r->retry_after_s;
    json_t *st = NULL;
    if (rc != CURLE_OK && !(r->streaming && rc == CURLE_OPERATION_TIMEDOUT && status == 200)) {
        out.status = 0;
        out.code = 0;
        out.reason = rc == CURLE_OPERATION_TIMEDOUT ? "Timeout" : "TransportError";
        out.message = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    } else {
        out.status = (int)status;
        if (r->streaming && status == 200)
            out.len = 0;
        fill_status(&out, &st);
    }
    if (cl->observe && !r->cancelled)
        cl->observe(r->method, out.status, cl->observe_ctx);
    bool call = !r->cancelled && r->done;
    r->cancelled = true; /* a cancel from inside done is then a no-op: we free it here */
    if (call)
        r->done(&out, r->ctx);
    json_decref(st);
    req_free(r);
}

static void check_done(struct k8s_client *cl)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cl->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct k8s_req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = m->data.result;
        if (!r)
            continue;
        if (r->reaping) {
            /* cancelled: the reaper frees it; stop curl from reporting it again */
            curl_multi_remove_handle(cl->multi, r->easy);
            continue;
        }
        req_finish(r, rc);
        if (cl->freeing)
            return;
    }
}

/* --- libuv glue -------------------------------------------------------------------- */

static void socket_action(struct k8s_client *cl, curl_socket_t fd, int flags)
{
    int running;
    curl_multi_socket_action(cl->multi, fd, flags, &running);
    check_done(cl);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = h->data;
    int flags = 0;
    if (status < 0) {
        /* libuv stopped the watcher on the error: keep watching until curl says stop */
        flags = CURL_CSELECT_ERR;
        uv_poll_start(&s->poll, s->events, on_poll);
    }
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(s->cl, s->fd, flags);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = h->data;
    struct k8s_client *cl = s->cl;
    free(s);
    cl->open_handles--;
    client_maybe_free(cl);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct k8s_client *cl = userp;
    struct sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(cl->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->cl = cl;
        s->fd = fd;
        if (uv_poll_init_socket(cl->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        cl->open_handles++;
        curl_multi_assign(cl->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    s->events = ev;
    if (uv_poll_start(&s->poll, ev, on_poll) != 0)
        LOG_W(LOG_C, "cannot watch socket %d", (int)fd);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct k8s_client *cl = t->data;
    socket_action(cl, CURL_SOCKET_TIMEOUT, 0);
}

static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct k8s_client *cl = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&cl->timer);
    else
        uv_timer_start(&cl->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* --- client ------------------------------------------------------------------------ */

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct k8s_client *k8s_client_new(uv_loop_t *loop, const struct k8s_config *cfg,
                                  const char *user_agent)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, global_init);
    struct k8s_client *cl = xcalloc(1, sizeof *cl);
    cl->loop = loop;
    cl->cfg.server = dup_or_null(cfg->server);
    cl->cfg.ca_pem = dup_or_null(cfg->ca_pem);
    cl->cfg.token = dup_or_null(cfg->token);
    cl->cfg.token_file = dup_or_null(cfg->token_file);
    cl->cfg.client_cert_pem = dup_or_null(cfg->client_cert_pem);
    cl->cfg.client_key_pem = dup_or_null(cfg->client_key_pem);
    cl->cfg.insecure = cfg->insecure;
    cl->cfg.namespace = dup_or_null(cfg->namespace ? cfg->namespace : "default");
    cl->cfg.source = dup_or_null(cfg->source);
    cl->user_agent = xstrdup(user_agent ? user_agent : "tandem");
    cl->token = dup_or_null(cfg->token);
    token_refresh(cl, true);
    cl->multi = curl_multi_init();
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    uv_idle_init(loop, &cl->reaper);
    cl->reaper.data = cl;
    cl->open_handles = 2;
    return cl;
}

static void on_client_handle_closed(uv_handle_t *h)
{
    struct k8s_client *cl = h->data;
    cl->open_handles--;
    client_maybe_free(cl);
}

static void client_maybe_free(struct k8s_client *cl)
{
    if (!cl->freeing || cl->open_handles > 0)
        return;
    k8s_config_free(&cl->cfg);
    free(cl->user_agent);
    free(cl->token);
    free(cl);
}

void k8s_client_free(struct k8s_client *cl)
{
    if (!cl || cl->freeing)
        return;
    cl->freeing = true;
    for (struct k8s_req *r = cl->reqs, *next; r; r = next) {
        next = r->next;
        r->cancelled = true;
        if (r->late)
            continue; /* its timer (an open handle) frees it */
        req_unlink(r);
        req_free(r);
    }
    while (cl->reap) {
        struct k8s_req *r = cl->reap;
        cl->reap = r->reap_next;
        req_free(r);
    }
    /* Removing the handles made curl drop its sockets (POLL_REMOVE closes our polls);
     * cleanup closes its cached connections. */
    curl_multi_cleanup(cl->multi);
    cl->multi = NULL;
    uv_close((uv_handle_t *)&cl->timer, on_client_handle_closed);
    uv_close((uv_handle_t *)&cl->reaper, on_client_handle_closed);
}

void k8s_query_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; s && *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (cap)
        out[o < cap ? o : cap - 1] = '\0';
}

/* Builds the easy handle and adds it to the multi handle. false when curl refused. */
static bool req_submit(struct k8s_req *r)
{
    struct k8s_client *cl = r->cl;
    token_refresh(cl, false);
    CURL *e = curl_easy_init();
    if (!e)
        return false;
    r->easy = e;
    char *url = xasprintf("%s%s", cl->cfg.server, r->path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, cl->user_agent);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (getenv("TANDEM_K8S_CURL_VERBOSE"))
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (cl->cfg.ca_pem) {
        struct curl_blob ca = {cl->cfg.ca_pem, strlen(cl->cfg.ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (cl->cfg.client_cert_pem && cl->cfg.client_key_pem) {
        struct curl_blob cert = {cl->cfg.client_cert_pem, strlen(cl->cfg.client_cert_pem),
                                 CURL_BLOB_COPY};
        struct curl_blob key = {cl->cfg.client_key_pem, strlen(cl->cfg.client_key_pem),
                                CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (cl->cfg.insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    r->headers = curl_slist_append(r->headers, "Accept: application/json");
    if (cl->token) {
        char *h = xasprintf("Authorization: Bearer %s", cl->token);
        r->headers = curl_slist_append(r->headers, h);
        free(h);
    }
    if (r->content_type) {
        char *h = xasprintf("Content-Type: %s", r->content_type);
        r->headers = curl_slist_append(r->headers, h);
        free(h);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    }
    if (cl->in_callback) {
        /* libcurl refuses new handles from inside its callbacks: add it on the next turn */
        r->deferred = true;
        r->reap_next = cl->deferred;
        cl->deferred = r;
        uv_idle_start(&cl->reaper, on_reap);
        return true;
    }
    return req_add(r);
}

static bool req_add(struct k8s_req *r)
{
    if (curl_multi_add_handle(r->cl->multi, r->easy) != CURLM_OK) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        if (!r->late) { /* from the reaper: report it through the late-failure path */
            req_unlink(r);
            if (!r->cancelled && r->done) {
                struct k8s_response out = {.reason = "TransportError",
                                           .message = "cannot start the request", .body = ""};
                r->cancelled = true;
                r->done(&out, r->ctx);
            }
            req_free(r);
        }
        return false;
    }
    return true;
}

/* A request that failed before it started still calls back, later, from the reaper
 * path: deliver through a zero-delay timer owned by the request. */
struct late_fail {
    uv_timer_t t;
    struct k8s_req *r;
};

static void on_late_closed(uv_handle_t *h)
{
    struct late_fail *lf = h->data;
    struct k8s_client *cl = lf->r->cl;
    req_free(lf->r);
    free(lf);
    cl->open_handles--;
    client_maybe_free(cl);
}

static void on_late_fail(uv_timer_t *t)
{
    struct late_fail *lf = t->data;
    struct k8s_req *r = lf->r;
    req_unlink(r);
    if (!r->cancelled && r->done) {
        struct k8s_response out = {.reason = "TransportError",
                                   .message = "cannot start the request (libcurl refused it)",
                                   .body = ""};
        r->cancelled = true;
        r->done(&out, r->ctx);
    }
    uv_close((uv_handle_t *)t, on_late_closed);
}

static struct k8s_req *req_new(struct k8s_client *cl, const char *method, const char *path,
                               const char *content_type, const char *body, size_t len,
                               long timeout_ms, k8s_done_fn done, void *ctx)
{
    struct k8s_req *r = xcalloc(1, sizeof *r);
    r->cl = cl;
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->content_type = dup_or_null(content_type);
    if (body) {
        r->body = xmalloc(len + 1);
        memcpy(r->body, body, len);
        r->body[len] = '\0';
        r->body_len = len;
    }
    r->timeout_ms = timeout_ms;
    r->done = done;
    r->ctx = ctx;
    r->next = cl->reqs;
    if (cl->reqs)
        cl->reqs->prev = r;
    cl->reqs = r;
    return r;
}

static struct k8s_req *req_start(struct k8s_req *r)
{
    if (!req_submit(r)) {
        struct late_fail *lf = xcalloc(1, sizeof *lf);
        lf->r = r;
        r->late = true;
        r->cl->open_handles++;
        uv_timer_init(r->cl->loop, &lf->t);
        lf->t.data = lf;
        uv_timer_start(&lf->t, on_late_fail, 0, 0);
    }
    return r;
}

struct k8s_req *k8s_request(struct k8s_client *cl, const char *method, const char *path,
                            const char *content_type, const char *body, size_t len,
                            k8s_done_fn done, void *ctx)
{
    return req_start(req_new(cl, method, path, content_type, body, len, REQUEST_TIMEOUT_MS,
                             done, ctx));
}

struct k8s_req *k8s_stream(struct k8s_client *cl, const char *path, double timeout_s,
                           k8s_data_fn on_data, k8s_done_fn done, void *ctx)
{
    struct k8s_req *r = req_new(cl, "GET", path, NULL, NULL, 0,
                                timeout_s > 0 ? (long)(timeout_s * 1e3) : 0L, done, ctx);
    r->streaming = true;
    r->on_data = on_data;
    return req_start(r);
}

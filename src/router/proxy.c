/* One proxied request: parse the body once (only what scheduling needs), run the
 * scheduler, forward the request unchanged to the picked endpoint, stream the answer
 * back as it arrives, and retry on another endpoint if the connection failed before any
 * byte was sent.
 *
 * Lifetime: a proxy_req lives from the handler until the response ends or the client
 * goes away. At any time at most one upstream call is in flight; cancelling it means no
 * callback of it fires again, so the request can be freed right there. Back-pressure:
 * when the client's queue is full the upstream read pauses, and resumes on drain. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/jscan.h"
#include "base/log.h"
#include "openai/openai.h"
#include "pd/epd.h"
#include "router/router_internal.h"

#define LOG_C (p->r->cfg.sidecar ? "sidecar" : "router")

struct proxy_req {
    struct router_worker *w;
    struct router *r;
    struct http_exchange *ex;
    struct http_call *call;
    struct sched_request sreq;
    struct sched_result res;
    struct sched_endpoint *ep; /* current upstream (reference held by res) */
    size_t pick;               /* index into res.picks */
    long long retries;
    const char *request_id;
    const char *model_label;
    struct http_header *hdrs; /* forwarded headers (arena) */
    size_t n_hdrs;
    uint64_t t_start;
    int status;
    bool streaming;     /* response head sent to the client */
    bool counted;       /* inflight accounting added to ep */
    /* router-mode P/D: the prefill pod, ref'd and counted in flight during the prefill leg */
    struct sched_endpoint *pf_counted;
    int64_t est_tokens; /* prompt tokens, estimated, for in-flight accounting */
    /* The body sent upstream: the client's, or the decode leg's after a prefill. */
    const char *body;
    size_t body_len;
    /* P/D (router mode or sidecar) */
    struct pd_prefill *pf;   /* prefill leg in flight */
    char *decode_body;       /* owned */
    const char *prefill_name; /* for logs */
    const char *pd_label;    /* sidecar metrics: disaggregated, decode_only, fallback, none */
    const char *path_label;  /* sidecar metrics: a static string (the exchange may be gone) */
    int pd_attempt;
    bool stream_req; /* the body says "stream": true */
    bool admitted;   /* counted in r->in_flight (--max-concurrent-requests) */
    const char *route; /* vllm_router_* metrics' route label (static) */
    /* E/P/D (sidecar): the encode stage in flight, and the prefill leg to run after it */
    struct epd_encode *enc;
    const char *pf_host; /* arena; NULL: no prefill leg (E/PD) */
    int pf_port;
};

void router_error(struct http_exchange *ex, int status, const char *param, const char *fmt, ...)
{
    struct openai_error e;
    va_list ap;
    va_start(ap, fmt);
    openai_error_vset(&e, status, param, fmt, ap);
    va_end(ap);
    struct buf b = BUF_INIT;
    openai_error_body(&b, &e);
    http_respond(ex, status, "application/json", b.data, b.len);
    buf_free(&b);
}

static const char *vr_error_type(int code)
{
    switch (code) {
    case 400:
        return "bad_request";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 413:
        return "payload_too_large";
    case 429:
        return "too_many_requests";
    case 499:
        return "client_disconnected";
    case 502:
        return "upstream_error";
    case 503:
        return "no_available_workers";
    case 504:
        return "timeout";
    default:
        return code >= 500 ? "server_error" : "client_error";
    }
}

static void vr_inc(struct metrics_family *f, const char *label)
{
    if (f && label)
        metrics_counter_inc(metrics_series_get(f, &label));
}

/* vllm-router's request metrics, at the end of a request. */
static void vr_count(struct proxy_req *p, int code)
{
    struct router_vr_metrics *m = &p->r->m.vr;
    if (!m->requests || !p->route)
        return;
    double secs = (double)(clock_monotonic_ns() - p->t_start) / 1e9;
    vr_inc(m->requests, p->route);
    metrics_histogram_observe(metrics_series_get(m->duration, &p->route), secs);
    if (code >= 400) {
        const char *l[] = {p->route, vr_error_type(code)};
        metrics_counter_inc(metrics_series_get(m->errors, l));
    }
    if (p->prefill_name) {
        vr_inc(m->pd_requests, p->route);
        metrics_histogram_observe(metrics_series_get(m->pd_duration, &p->route), secs);
        if (code >= 500)
            vr_inc(m->pd_errors, code == 504 ? "timeout" : "decode_failed");
    }
}

/* The worker's circuit breaker and, for a P/D decode leg, its error count. */
static void decode_outcome(struct proxy_req *p, bool ok)
{
    const char *name = sched_endpoint_name(p->ep);
    router_breaker_record(p->r, name, ok);
    if (!ok && p->prefill_name)
        vr_inc(p->r->m.vr.pd_decode_errors, name);
}

static void count_request(struct proxy_req *p, int code)
{
    vr_count(p, code);
    char c[8];
    snprintf(c, sizeof c, "%d", code);
    const char *labels[] = {p->model_label, c};
    metrics_counter_inc(metrics_series_get(p->r->m.requests, labels));
    metrics_histogram_observe(p->r->m.duration, (double)(clock_monotonic_ns() - p->t_start) / 1e9);
}

static void uncount(struct proxy_req *p)
{
    if (p->counted) {
        sched_endpoint_inflight_add(p->ep, -1, -p->est_tokens);
        p->counted = false;
    }
}

static void uncount_prefill(struct proxy_req *p)
{
    if (p->pf_counted) {
        sched_endpoint_inflight_add(p->pf_counted, -1, -p->est_tokens);
        sched_endpoint_unref(p->pf_counted);
        p->pf_counted = NULL;
    }
}

static void proxy_free(struct proxy_req *p)
{
    uncount(p);
    uncount_prefill(p);
    if (p->admitted)
        atomic_fetch_sub(&p->r->in_flight, 1);
    if (p->pf)
        pd_prefill_cancel(p->pf);
    epd_encode_cancel(p->enc);
    if (p->r->cfg.sidecar) {
        const char *labels[] = {p->path_label ? p->path_label : "other",
                                p->pd_label ? p->pd_label : "none"};
        metrics_counter_inc(metrics_series_get(p->r->m.sc_requests, labels));
    }
    sched_result_release(&p->res);
    free(p->decode_body);
    free(p);
}

static void upstream_error(struct proxy_req *p, const char *kind)
{
    const char *labels[] = {sched_endpoint_name(p->ep), kind};
    metrics_counter_inc(metrics_series_get(p->r->m.upstream_errors, labels));
}

/* --- upstream callbacks -------------------------------------------------------------- */

static void on_drain(struct http_exchange *ex, void *ctx)
{
    struct proxy_req *p = ctx;
    if (p->call)
        http_call_resume(p->call);
}

/* Response headers pass through except hop-by-hop and framing ones (our server frames
 * the response itself) and Date/Server (ours). */
static bool skip_response_header(const struct http_header *h)
{
    static const char *const skip[] = {"content-length", "content-type", "date", "server", NULL};
    if (http_header_is_hop_by_hop(h->name, h->name_len))
        return true;
    for (const char *const *k = skip; *k; k++) {
        if (strlen(*k) == h->name_len && !strncasecmp(*k, h->name, h->name_len))
            return true;
    }
    return false;
}

static bool retry_elsewhere(struct proxy_req *p);

static void on_head(struct http_call *c, int status, const struct http_headers *h, void *ctx)
{
    struct proxy_req *p = ctx;
    if (status == 503 && !p->r->cfg.sidecar && p->retries < p->r->cfg.max_retries) {
        /* The pod cannot take it (a sidecar whose engine is down, an engine still
         * loading): nothing reached the client, so another pod may (nginx's
         * proxy_next_upstream http_503). */
        LOG_W(LOG_C, "request %s: %s answered 503: marked down, retrying elsewhere",
              p->request_id, sched_endpoint_name(p->ep));
        upstream_error(p, "503");
        decode_outcome(p, false);
        http_call_cancel(c);
        p->call = NULL;
        sched_endpoint_set_health(p->ep, false);
        uncount(p);
        retry_elsewhere(p);
        return;
    }
    p->status = status;
    decode_outcome(p, status < 500);
    double ttft = (double)(clock_monotonic_ns() - p->t_start) / 1e9;
    metrics_histogram_observe(p->r->m.ttft, ttft);
    if (p->r->cfg.sidecar && p->prefill_name) /* disaggregated or fallen back */
        metrics_histogram_observe(p->r->m.sc_true_ttft, ttft);
    const char *ctype = http_headers_get(h, "content-type");
    for (size_t i = 0; i < h->n; i++) {
        if (!skip_response_header(&h->items[i]))
            http_add_header(p->ex, h->items[i].name, h->items[i].value);
    }
    if (!http_headers_get(h, "x-request-id"))
        http_add_header(p->ex, "x-request-id", p->request_id);
    if (!p->r->cfg.sidecar && sched_has_response_headers(p->r->sched)) {
        /* destination-endpoint-served-verifier: no Envoy, so no envoy.lb metadata; it
         * reports that, as llm-d's would ("fail: missing envoy lb metadata") */
        struct sched_lb_meta lb = {.has_lb = false, .served = NULL};
        struct sched_resp_header rh[SCHED_MAX_RESP_HEADERS];
        size_t n = sched_response_headers(p->r->sched, &lb, rh, SCHED_MAX_RESP_HEADERS);
        for (size_t i = 0; i < n; i++)
            http_add_header(p->ex, rh[i].name, rh[i].value);
    }
    if (!p->r->cfg.sidecar) {
        char token[512]; /* base64 of a name of up to 253 characters */
        sched_session_token(p->ep, token, sizeof token);
        http_add_header(p->ex, "x-session-token", token);
    }
    http_stream_begin(p->ex, status, ctype ? ctype : "application/json");
    p->streaming = true;
    http_exchange_on_drain(p->ex, on_drain, p);
}

static void on_body(struct http_call *c, const char *data, size_t len, void *ctx)
{
    struct proxy_req *p = ctx;
    if (!http_stream_write(p->ex, data, len))
        http_call_pause(c); /* the client is slower than the engine: stop reading it */
}

static void start_upstream(struct proxy_req *p);

/* The next pick (or a fresh decision) for a request whose endpoint failed before any
 * byte reached the client. Returns false after answering 503 (the request is freed). */
static bool retry_elsewhere(struct proxy_req *p)
{
    p->retries++;
    metrics_counter_inc(p->r->m.retries);
    vr_inc(p->r->m.vr.retries, p->route);
    if (p->pick + 1 < p->res.n_picks) {
        p->pick++;
        p->ep = p->res.picks[p->pick];
    } else {
        sched_result_release(&p->res);
        sched_schedule(p->r->sched, &p->sreq, false, &p->res, NULL);
        if (p->res.status || p->res.n_picks == 0) {
            router_error(p->ex, 503, NULL, "no endpoint available after retry: %s",
                         p->res.reason[0] ? p->res.reason : "all failed");
            count_request(p, 503);
            proxy_free(p);
            return true;
        }
        p->pick = 0;
        p->ep = p->res.picks[0];
    }
    vr_inc(p->r->m.vr.processed, sched_endpoint_name(p->ep));
    if (p->decode_body) {
        LOG_I(LOG_C, "request %s: pd pair prefill=%s decode=%s attempt=%d", p->request_id,
              p->prefill_name ? p->prefill_name : "?", sched_endpoint_name(p->ep),
              ++p->pd_attempt);
        router_vr_log_pd_attempt(p->r, p->pd_attempt - 1,
                                 p->prefill_name ? p->prefill_name : "?",
                                 sched_endpoint_name(p->ep));
    }
    start_upstream(p);
    return true;
}

static void on_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    struct proxy_req *p = ctx;
    p->call = NULL;
    if (err == HTTP_CALL_OK) {
        http_stream_end(p->ex);
        count_request(p, p->status);
        proxy_free(p);
        return;
    }
    upstream_error(p, http_call_error_str(err));
    decode_outcome(p, false);
    if (p->streaming) {
        /* Mid-stream failure: the client's response cannot be completed honestly. */
        LOG_W(LOG_C, "request %s: %s failed mid-response (%s)", p->request_id,
              sched_endpoint_name(p->ep), http_call_error_str(err));
        http_exchange_close(p->ex);
        count_request(p, 502);
        proxy_free(p);
        return;
    }
    /* Safe to try elsewhere: nothing was sent, or the pod died (reset) before answering
     * anything, so the client has seen nothing either. */
    bool retryable = (err == HTTP_CALL_ECONNECT && !http_call_sent_any(c)) ||
                     (err == HTTP_CALL_ERESET && status == 0);
    if (retryable) {
        /* Nothing reached the engine: safe to try elsewhere. Mark the endpoint down now
         * (the scraper brings it back) so the next decision avoids it. */
        sched_endpoint_set_health(p->ep, false);
        uncount(p);
        if (p->retries < p->r->cfg.max_retries) {
            LOG_W(LOG_C, "request %s: %s unreachable, retrying (attempt %lld)", p->request_id,
                  sched_endpoint_name(p->ep), p->retries + 2);
            if (retry_elsewhere(p))
                return;
        }
        LOG_W(LOG_C, "request %s: %s is not reachable (%s): 503", p->request_id,
              sched_endpoint_name(p->ep), http_call_error_str(err));
        router_error(p->ex, 503, NULL,
                     "decode endpoint not ready: %s is not reachable (%s)%s",
                     p->r->cfg.sidecar ? sched_endpoint_addr(p->ep) : sched_endpoint_name(p->ep),
                     http_call_error_str(err),
                     p->r->cfg.max_retries ? " and retries are used up" : "");
        count_request(p, 503);
        proxy_free(p);
        return;
    }
    if (err == HTTP_CALL_EIDLE) {
        /* A streaming request whose engine sends nothing (not even the head vLLM sends at
         * once) is a stalled engine: suspect at once, and the work moves elsewhere. A
         * non-streaming answer may legitimately take that long (vLLM sends nothing until
         * it is done): 504, with no retry (that would run the generation again) and the
         * endpoint left alone. */
        bool stalled = p->stream_req;
        uncount(p);
        if (stalled)
            sched_endpoint_set_health(p->ep, false);
        bool retry = stalled && p->retries < p->r->cfg.max_retries;
        LOG_W(LOG_C, "request %s: no byte from %s for %g s (--upstream-read-timeout)%s",
              p->request_id, sched_endpoint_name(p->ep), p->r->cfg.upstream_read_timeout_s,
              !stalled ? ": 504 (a non-streaming answer can take this long: raise the flag)"
              : retry  ? ": marked down, retrying elsewhere"
                       : ": marked down");
        if (retry && retry_elsewhere(p))
            return;
        router_error(p->ex, 504, NULL,
                     "upstream %s sent nothing for %g s (--upstream-read-timeout)",
                     p->r->cfg.sidecar ? "engine" : sched_endpoint_name(p->ep),
                     p->r->cfg.upstream_read_timeout_s);
        count_request(p, 504);
        proxy_free(p);
        return;
    }
    int code = err == HTTP_CALL_ETIMEOUT ? 504 : 502;
    router_error(p->ex, code, NULL, "upstream %s: %s", sched_endpoint_name(p->ep),
                 http_call_error_str(err));
    count_request(p, code);
    proxy_free(p);
}

static const struct http_call_callbacks upstream_cb = {on_head, on_body, on_done};

/* The headers for one leg to e: the forwarded ones plus, for a DP worker (URL@rank), the
 * rank vLLM routes on, and --api-key when the client sent no Authorization. */
static const struct http_header *leg_headers(struct proxy_req *p, struct sched_endpoint *e,
                                             size_t *n)
{
    const struct http_request *q = http_exchange_request(p->ex);
    int rank = router_endpoint_dp_rank(e);
    bool key = p->r->cfg.api_key && !http_headers_get(&q->headers, "authorization");
    bool dp = p->res.dp_primary_port > 0 && e != p->res.prefill;
    *n = p->n_hdrs;
    if (rank < 0 && !key && !dp)
        return p->hdrs;
    struct arena *a = http_exchange_arena(p->ex);
    struct http_header *h = arena_alloc(a, (p->n_hdrs + 3) * sizeof *h);
    memcpy(h, p->hdrs, p->n_hdrs * sizeof *h);
    if (dp) /* data-parallel-profile-handler: the rank, for the primary port's sidecar */
        h[(*n)++] = (struct http_header){"x-data-parallel-host-port",
                                         arena_strdup(a, sched_endpoint_addr(e)), 0, 0};
    if (rank >= 0)
        h[(*n)++] = (struct http_header){"X-data-parallel-rank", arena_sprintf(a, "%d", rank),
                                         0, 0};
    if (key)
        h[(*n)++] = (struct http_header){"Authorization",
                                         arena_sprintf(a, "Bearer %s", p->r->cfg.api_key), 0, 0};
    return h;
}

static void start_upstream(struct proxy_req *p)
{
    const struct http_request *q = http_exchange_request(p->ex);
    size_t n_hdrs;
    const struct http_header *hdrs = leg_headers(p, p->ep, &n_hdrs);
    if (p->prefill_name)
        vr_inc(p->r->m.vr.pd_decode, sched_endpoint_name(p->ep));
    char *path = (char *)q->path;
    if (q->query && *q->query)
        path = arena_sprintf(http_exchange_arena(p->ex), "%s?%s", q->path, q->query);
    struct http_call_request req = {
        .method = q->method,
        .host = sched_endpoint_host(p->ep),
        .port = p->res.dp_primary_port > 0 ? p->res.dp_primary_port : sched_endpoint_port(p->ep),
        .path = path,
        .headers = (struct http_header *)hdrs,
        .n_headers = n_hdrs,
        .body = p->body,
        .body_len = p->body_len,
        .timeout_ms = (uint64_t)(p->r->cfg.upstream_timeout_s * 1e3),
        .read_timeout_ms = (uint64_t)(p->r->cfg.upstream_read_timeout_s * 1e3),
    };
    if (!p->counted) { /* a P/D request is counted from its prefill leg on */
        sched_endpoint_inflight_add(p->ep, 1, p->est_tokens);
        p->counted = true;
    }
    LOG_D(LOG_C, "request %s -> %s (%s)", p->request_id, sched_endpoint_name(p->ep),
          sched_endpoint_addr(p->ep));
    p->call = http_call_start(p->w->client, &req, &upstream_cb, p);
}

static void on_client_abort(struct http_exchange *ex, void *ctx)
{
    struct proxy_req *p = ctx;
    /* Stop the engine's work at once: closing the upstream connection is what vLLM (and
     * tandem sim) take as the client going away. */
    if (p->call) {
        http_call_cancel(p->call);
        p->call = NULL;
    }
    if (p->enc) {
        epd_encode_cancel(p->enc); /* the encoders see the disconnect */
        p->enc = NULL;
        LOG_I(LOG_C, "request %s: client went away during the encode stage: cancelled",
              p->request_id);
    }
    if (p->pf) {
        pd_prefill_cancel(p->pf); /* the prefill engine sees the disconnect and aborts */
        p->pf = NULL;
        LOG_I(LOG_C, "request %s: client went away during the prefill leg: cancelled",
              p->request_id);
    }
    LOG_D(LOG_C, "request %s: client went away", p->request_id);
    count_request(p, 499);
    proxy_free(p);
}

/* --- request parsing ----------------------------------------------------------------- */

/* The forwarded headers: the client's, minus hop-by-hop ones and those the client
 * library sets itself (Host, Content-Length), plus x-request-id and x-forwarded-for. */
static void build_headers(struct proxy_req *p, const struct http_request *q, struct arena *a)
{
    size_t cap = q->headers.n + 4;
    p->hdrs = arena_alloc(a, cap * sizeof *p->hdrs);
    p->n_hdrs = 0;
    const char *xff = NULL;
    for (size_t i = 0; i < q->headers.n; i++) {
        const struct http_header *h = &q->headers.items[i];
        if (http_header_is_hop_by_hop(h->name, h->name_len) ||
            (h->name_len == 4 && !strncasecmp(h->name, "host", 4)) ||
            (h->name_len == 14 && !strncasecmp(h->name, "content-length", 14)))
            continue;
        if (h->name_len == 15 && !strncasecmp(h->name, "x-forwarded-for", 15)) {
            xff = h->value;
            continue;
        }
        /* The P/D header is for this hop only (sidecar), or ours to set (router). */
        if (h->name_len == 21 && !strncasecmp(h->name, "x-prefiller-host-port", 21))
            continue;
        if (h->name_len == 21 && !strncasecmp(h->name, "x-encoder-hosts-ports", 21))
            continue; /* the same for E/P/D's encoders */
        /* With DP ranks the rank is ours to set, per leg. */
        if (p->r->cfg.dp_size > 1 && h->name_len == 20 &&
            !strncasecmp(h->name, "x-data-parallel-rank", 20))
            continue;
        p->hdrs[p->n_hdrs++] = *h;
    }
    if (!http_headers_get(&q->headers, "x-request-id"))
        p->hdrs[p->n_hdrs++] = (struct http_header){"x-request-id", p->request_id, 0, 0};
    char ip[64];
    snprintf(ip, sizeof ip, "%s", q->peer);
    char *colon = strrchr(ip, ':');
    if (colon)
        *colon = '\0';
    const char *ff = xff ? arena_sprintf(a, "%s, %s", xff, ip) : arena_strdup(a, ip);
    p->hdrs[p->n_hdrs++] = (struct http_header){"x-forwarded-for", ff, 0, 0};
    if (p->res.prefill && !p->r->cfg.pd_router && !p->r->cfg.sidecar) {
        /* Sidecar P/D mode: the decode pod's sidecar runs the prefill leg here. */
        const char *hp = arena_strdup(a, sched_endpoint_addr(p->res.prefill));
        p->hdrs[p->n_hdrs++] = (struct http_header){"x-prefiller-host-port", hp, 0, 0};
    }
    if (p->res.n_encode && !p->r->cfg.pd_router && !p->r->cfg.sidecar) {
        /* E/P/D: the decode pod's sidecar sends the multimodal items to these encoders. */
        char enc[1024];
        router_encoders_header(&p->res, enc, sizeof enc);
        p->hdrs[p->n_hdrs++] =
            (struct http_header){"x-encoder-hosts-ports", arena_strdup(a, enc), 0, 0};
    }
}

void router_encoders_header(const struct sched_result *res, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < res->n_encode; i++) {
        const char *host = sched_endpoint_host(res->encode[i]);
        bool v6 = strchr(host, ':') && host[0] != '[';
        int w = snprintf(out + len, cap - len, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "", host,
                         v6 ? "]" : "", sched_endpoint_port(res->encode[i]));
        if (w < 0 || (size_t)w >= cap - len) {
            out[len] = '\0';
            return;
        }
        len += (size_t)w;
    }
}

int router_parse_body(struct sched_request *s, struct arena *a, const char *method,
                      const char *body, size_t body_len, struct router_parsed *out, char *msg,
                      size_t cap)
{
    memset(out, 0, sizeof *out);
    out->model_label = "";
    if (body_len == 0 || strcmp(method, "POST") != 0)
        return 0;
    enum { F_MODEL, F_PROMPT, F_MESSAGES, F_USER, F_SESSION, F_STREAM, N_FIELDS };
    struct jscan_field f[N_FIELDS] = {
        [F_MODEL] = {.key = "model"},        [F_PROMPT] = {.key = "prompt"},
        [F_MESSAGES] = {.key = "messages"},  [F_USER] = {.key = "user"},
        [F_SESSION] = {.key = "session_id"}, [F_STREAM] = {.key = "stream"},
    };
    struct errinfo je;
    if (jscan_object(body, body_len, f, N_FIELDS, &je) != JSCAN_OK) {
        snprintf(msg, cap, "%s", je.msg);
        return 400;
    }
    if (f[F_MODEL].v.type != JSCAN_ABSENT && f[F_MODEL].v.type != JSCAN_NULL) {
        if (f[F_MODEL].v.type != JSCAN_STRING) {
            snprintf(msg, cap, "'model' must be a string, got %s",
                     jscan_type_name(f[F_MODEL].v.type));
            out->param = "model";
            return 400;
        }
        s->model = jscan_str_dup(&f[F_MODEL].v, a, NULL);
        out->model_label = s->model;
    }
    out->stream = f[F_STREAM].v.type == JSCAN_TRUE;
    s->user = jscan_str_dup(&f[F_USER].v, a, NULL);
    s->session_id = jscan_str_dup(&f[F_SESSION].v, a, NULL);
    struct jscan_val first;
    if (f[F_PROMPT].v.type == JSCAN_STRING) {
        /* In place when unescaped: a 220 KB prompt is never copied. */
        jscan_str_view(&f[F_PROMPT].v, a, &s->prompt, &s->prompt_len);
    } else if (jscan_array_first(&f[F_PROMPT].v, &first) && first.type == JSCAN_STRING) {
        jscan_str_view(&first, a, &s->prompt, &s->prompt_len);
    } else if (f[F_MESSAGES].v.type == JSCAN_ARRAY) {
        /* Chat: only the messages get a DOM, to render them as the engine does. */
        json_t *messages = json_parse(f[F_MESSAGES].v.p, f[F_MESSAGES].v.len, &je);
        struct buf b = BUF_INIT;
        struct openai_error e;
        s->mm_items = (uint32_t)openai_count_mm_parts(messages, false);
        if (messages && openai_render_chat(messages, &b, &e)) {
            s->prompt = arena_strndup(a, b.data, b.len);
            s->prompt_len = b.len;
        }
        buf_free(&b);
        json_decref(messages);
    }
    /* Exact counts cost ~1 ms per 220 KB prompt: plugins that need them (the P/D
     * decider) count lazily; in-flight accounting uses ~4 characters per token. */
    out->est_tokens = (int64_t)(s->prompt_len / 4);
    return 0;
}

void router_parse_raw(size_t body_len, struct router_parsed *out)
{
    memset(out, 0, sizeof *out);
    out->model_label = "";
    out->est_tokens = (int64_t)(body_len / 4);
}

/* Fills sreq from the client's body. Returns false after answering 400. */
static bool parse_body(struct proxy_req *p, const struct http_request *q, struct arena *a)
{
    p->sreq.request_id = p->request_id;
    p->sreq.headers = &q->headers;
    struct router_parsed parsed;
    char msg[512];
    int st = 0;
    if (sched_passthrough_parser(p->r->sched))
        router_parse_raw(q->body_len, &parsed);
    else
        st = router_parse_body(&p->sreq, a, q->method, q->body, q->body_len, &parsed, msg,
                               sizeof msg);
    p->model_label = parsed.model_label;
    p->stream_req = parsed.stream;
    p->est_tokens = parsed.est_tokens;
    if (st) {
        router_error(p->ex, st, parsed.param, "%s", msg);
        return false;
    }
    return true;
}

void router_debug_schedule(struct router *r, struct http_exchange *ex)
{
    const struct http_request *q = http_exchange_request(ex);
    struct proxy_req p = {.r = r, .ex = ex};
    const char *rid = http_headers_get(&q->headers, "x-request-id");
    p.request_id = rid ? rid : "debug";
    if (!parse_body(&p, q, http_exchange_arena(ex)))
        return;
    struct buf trace = BUF_INIT;
    sched_schedule(r->sched, &p.sreq, true, &p.res, &trace);
    http_respond(ex, 200, "application/json", trace.data ? trace.data : "{}",
                 trace.data ? trace.len : 2);
    buf_free(&trace);
    sched_result_release(&p.res);
}

/* --- P/D: the prefill leg, then the decode leg through start_upstream ------------------ */

static void count_fallback(struct proxy_req *p, const char *reason)
{
    const char *labels[] = {reason};
    metrics_counter_inc(metrics_series_get(p->r->cfg.sidecar ? p->r->m.sc_fallbacks
                                                             : p->r->m.pd_fallbacks,
                                           labels));
}

static void on_prefill_done(const struct pd_prefill_result *res, void *ctx)
{
    struct proxy_req *p = ctx;
    p->pf = NULL;
    uncount_prefill(p);
    if (p->r->cfg.sidecar)
        metrics_histogram_observe(p->r->m.sc_prefill_duration, res->seconds);
    switch (res->outcome) {
    case PD_OK:
        router_breaker_record(p->r, p->prefill_name, true);
        LOG_D(LOG_C, "request %s: prefill on %s done in %.1f ms", p->request_id,
              p->prefill_name, res->seconds * 1e3);
        free(p->decode_body); /* E/P/D's encoded body: the leg copied it */
        p->decode_body = xmalloc(res->body_len + 1);
        memcpy(p->decode_body, res->body, res->body_len);
        p->body = p->decode_body;
        p->body_len = res->body_len;
        p->pd_label = "disaggregated";
        break;
    case PD_CLIENT_ERROR:
        /* The request itself is bad: the client gets the prefill's answer as is. */
        if (!p->r->cfg.sidecar)
            router_breaker_record(p->r, p->prefill_name, true);
        LOG_I(LOG_C, "request %s: prefill %s answered %d: returned to the client",
              p->request_id, p->prefill_name, res->status);
        p->pd_label = "prefill_error";
        http_add_header(p->ex, "x-request-id", p->request_id);
        if (res->body_len)
            http_respond(p->ex, res->status, "application/json", res->body, res->body_len);
        else
            router_error(p->ex, res->status, NULL, "prefill %s answered %d with no body",
                         p->prefill_name, res->status);
        count_request(p, res->status);
        proxy_free(p);
        return;
    case PD_FALLBACK:
        if (!p->r->cfg.sidecar) {
            router_breaker_record(p->r, p->prefill_name, false);
            vr_inc(p->r->m.vr.pd_prefill_errors, p->prefill_name);
            vr_inc(p->r->m.vr.pd_errors, "prefill_failed");
        }
        LOG_W(LOG_C, "request %s: prefill %s failed (%s: %s): fallback to decode-only on %s",
              p->request_id, p->prefill_name, res->reason, res->detail,
              p->r->cfg.sidecar ? "the local engine" : sched_endpoint_name(p->ep));
        count_fallback(p, res->reason);
        p->pd_label = "fallback";
        break;
    }
    start_upstream(p);
}

static void start_prefill(struct proxy_req *p, const char *host, int port)
{
    const struct http_request *q = http_exchange_request(p->ex);
    const char *path = q->path;
    if (q->query && *q->query)
        path = arena_sprintf(http_exchange_arena(p->ex), "%s?%s", q->path, q->query);
    if (!p->counted) {
        /* The decode pod has this request from now on (admission bound, load scoring; in a
         * sidecar, what tandem up's drain waits on before stopping the pod). */
        sched_endpoint_inflight_add(p->ep, 1, p->est_tokens);
        p->counted = true;
    }
    const struct http_header *hdrs = p->hdrs;
    size_t n_hdrs = p->n_hdrs;
    if (!p->r->cfg.sidecar && p->res.prefill) {
        hdrs = leg_headers(p, p->res.prefill, &n_hdrs);
        vr_inc(p->r->m.vr.pd_prefill, p->prefill_name);
        /* the prefill pod has the request during its leg (load scoring of prefill picks,
         * tandem_router_role_inflight{role="prefill"}); on_prefill_done or proxy_free
         * uncounts it */
        p->pf_counted = p->res.prefill;
        sched_endpoint_ref(p->pf_counted);
        sched_endpoint_inflight_add(p->pf_counted, 1, p->est_tokens);
    }
    p->pf = pd_prefill_start(p->w->client, p->r->cfg.connector, host, port, path,
                             (struct http_header *)hdrs, n_hdrs, p->body, p->body_len,
                             (uint64_t)(p->r->cfg.prefill_timeout_s * 1e3), on_prefill_done, p);
}

static bool pd_path(const struct http_request *q)
{
    const struct openai_route_info *rt = openai_route_find(q->method, q->path);
    return rt && rt->generation;
}

/* Is host:port on --allowed-prefillers? Entries are host:port or a host alone (any port),
 * IPv6 in brackets; they are parsed like the header, so the comparison is of parts. */
static bool prefiller_allowed(const struct router_config *cfg, const char *host, int port)
{
    const char *s = cfg->allowed_prefillers;
    while (s && *s) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t l = strcspn(s, ",");
        char entry[300];
        if (l && l < sizeof entry) {
            memcpy(entry, s, l);
            entry[l] = '\0';
            while (l && entry[l - 1] == ' ')
                entry[--l] = '\0';
            char eh[256];
            int ep = 0;
            if (pd_parse_prefiller(entry, false, eh, sizeof eh, &ep)) {
                if (ep == port && !strcasecmp(eh, host))
                    return true;
            } else {
                /* A host alone: "10.0.0.1", "p.svc", "[fd00::1]" or "fd00::1". */
                const char *h = entry;
                size_t hl = strlen(h);
                if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
                    h++;
                    hl -= 2;
                }
                if (hl && hl == strlen(host) && !strncasecmp(h, host, hl))
                    return true;
            }
        }
        s += strcspn(s, ",");
    }
    return false;
}

bool router_prefillers_configured(const struct router *r)
{
    return (r->cfg.allowed_prefillers && *r->cfg.allowed_prefillers) || r->cfg.pool_name;
}

/* A proxied request's state: the client's body, and its x-request-id (made up when the
 * client sent none). */
static struct proxy_req *proxy_req_new(struct router_worker *w, struct http_exchange *ex)
{
    const struct http_request *q = http_exchange_request(ex);
    struct proxy_req *p = xcalloc(1, sizeof *p);
    p->w = w;
    p->r = w->r;
    p->ex = ex;
    p->t_start = clock_monotonic_ns();
    p->body = q->body;
    p->body_len = q->body_len;
    p->model_label = "";
    p->route = router_vr_route(q->path);
    const char *rid = http_headers_get(&q->headers, "x-request-id");
    if (!rid || !*rid) {
        char uuid[37];
        hash_uuid4(uuid);
        rid = arena_strdup(http_exchange_arena(ex), uuid);
    }
    p->request_id = rid;
    return p;
}

/* The DP rank x-data-parallel-host-port names (llm-d's map POD_IP:port+i -> rank i): its
 * port minus --port, in [0, --data-parallel-size); with POD_IP set the host must be it. */
static int sidecar_dp_rank(const struct router_config *cfg, const char *hp)
{
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp)
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end)
        return -1;
    long rank = port - cfg->port;
    if (rank < 0 || rank >= cfg->sidecar_dp_size)
        return -1;
    const char *pod_ip = getenv("POD_IP");
    if (pod_ip && *pod_ip) {
        const char *h = hp;
        size_t n = (size_t)(colon - hp);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']')
            h++, n -= 2;
        if (strlen(pod_ip) != n || strncmp(pod_ip, h, n) != 0)
            return -1;
    }
    return (int)rank;
}

/* --- E/P/D: the encode stage before the prefill/decode legs (sidecar) ------------------- */

static void route_legs(struct proxy_req *p);

static void on_encode_done(const struct epd_encode_result *res, void *ctx)
{
    struct proxy_req *p = ctx;
    p->enc = NULL;
    if (p->r->cfg.sidecar) {
        metrics_histogram_observe(p->r->m.sc_encode_duration, res->seconds);
        const char *ok = "ok", *bad = "error";
        metrics_counter_add(metrics_series_get(p->r->m.sc_encoder_items, res->ok ? &ok : &bad),
                            (double)res->items);
    }
    if (!res->ok) {
        /* llm-d's sidecar answers 502 when any encoder fails: no partial encoding. */
        LOG_W(LOG_C, "request %s: encoder processing failed: %s", p->request_id, res->error);
        router_error(p->ex, 502, NULL, "%s", res->error);
        p->pd_label = "encode_error";
        count_request(p, 502);
        proxy_free(p);
        return;
    }
    LOG_D(LOG_C, "request %s: %zu multimodal item%s encoded in %.1f ms", p->request_id, res->items,
          res->items == 1 ? "" : "s", res->seconds * 1e3);
    p->decode_body = xmalloc(res->body_len + 1);
    memcpy(p->decode_body, res->body, res->body_len);
    p->body = p->decode_body;
    p->body_len = res->body_len;
    if (!p->r->cfg.sidecar) {
        route_legs(p); /* --pd-mode router: the prefill leg (if any), then decode */
        return;
    }
    if (p->pf_host) {
        start_prefill(p, p->pf_host, p->pf_port);
        return;
    }
    p->pd_label = "encoded";
    start_upstream(p);
}

/* Starts the encode stage over encs. True when the request is taken care of (the stage
 * continues it, or a bad body was answered 400 and p freed); false when there is nothing
 * multimodal to encode. */
static bool start_encode_stage(struct proxy_req *p, const struct epd_encoder *encs, size_t n)
{
    char err[256];
    int st = epd_encode_start(p->w->client, encs, n, p->body, p->body_len, p->request_id,
                              (uint64_t)(p->r->cfg.prefill_timeout_s * 1e3), on_encode_done, p,
                              &p->enc, err, sizeof err);
    if (st == 1)
        return false; /* nothing multimodal in it */
    if (st < 0) {
        router_error(p->ex, 400, NULL, "%s", err);
        p->pd_label = "encode_error";
        count_request(p, 400);
        proxy_free(p);
        return true;
    }
    if (!p->counted) { /* the decode pod has this request from now on */
        sched_endpoint_inflight_add(p->ep, 1, p->est_tokens);
        p->counted = true;
    }
    p->pd_label = "cancelled"; /* until the stage ends: a client gone by then */
    return true;
}

/* x-encoder-hosts-ports: runs the encode stage when --ec-connector is set and some
 * encoder is allowed. True when the request is taken care of (the stage started and
 * continues it, or a bad body was answered 400 and p freed); false when it goes on
 * without encoding. */
static bool sidecar_encode(struct proxy_req *p, const char *header)
{
    struct router *r = p->r;
    if (!r->cfg.ec_connector || !*r->cfg.ec_connector) {
        bool expected = false;
        if (atomic_compare_exchange_strong(&r->ec_unconfigured_logged, &expected, true))
            LOG_W(LOG_C,
                  "request %s: x-encoder-hosts-ports ignored: no --ec-connector "
                  "(give --ec-connector ec-example for E/P/D; logged once)",
                  p->request_id);
        return false;
    }
    struct arena *a = http_exchange_arena(p->ex);
    struct epd_encoder encs[SCHED_MAX_PICKS];
    size_t n = 0, listed = 0;
    for (const char *s = header; *s && n < SCHED_MAX_PICKS;) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t l = strcspn(s, ",");
        if (!l)
            break;
        char entry[300], host[256];
        int port = 0;
        snprintf(entry, sizeof entry, "%.*s", (int)(l < 299 ? l : 299), s);
        s += l;
        listed++;
        if (!pd_parse_prefiller(entry, false, host, sizeof host, &port)) {
            LOG_W(LOG_C, "request %s: encoder '%s' is not host:port: skipped", p->request_id,
                  entry);
            continue;
        }
        if (r->cfg.ssrf && !prefiller_allowed(&r->cfg, host, port) &&
            !router_discovery_allows(r->discovery, host, port)) {
            LOG_W(LOG_C,
                  "request %s: encoder %s:%d not allowed (SSRF protection: not on "
                  "--allowed-prefillers or the InferencePool): removed from the list",
                  p->request_id, host, port);
            continue;
        }
        encs[n++] = (struct epd_encoder){arena_strdup(a, host), port};
    }
    if (!n) {
        LOG_W(LOG_C, "request %s: none of the %zu encoders is usable: %s without encode",
              p->request_id, listed, p->pf_host ? "P/D" : "decode");
        return false;
    }
    return start_encode_stage(p, encs, n);
}

/* tandem sidecar: /health here; P/D when the router says so; the rest to the engine.
 * rank >= 0: a DP rank's own listener (the header is not looked at there, as in llm-d). */
static void sidecar_handle_rank(struct router_worker *w, struct http_exchange *ex, int rank_port)
{
    struct router *r = w->r;
    const struct http_request *q = http_exchange_request(ex);
    if (!strcmp(q->method, "GET") && !strcmp(q->path, "/health")) {
        http_respond(ex, 200, "application/json", "{\"status\":\"ok\"}", 15);
        return;
    }
    if (!strcmp(q->method, "GET") && !strcmp(q->path, "/sidecar/metrics")) {
        struct buf b = BUF_INIT;
        metrics_render(r->m.reg, &b);
        http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
        return;
    }
    struct arena *a = http_exchange_arena(ex);
    struct proxy_req *p = proxy_req_new(w, ex);
    const struct openai_route_info *rt = openai_route_find(NULL, q->path);
    p->path_label = rt ? rt->path : !strcmp(q->path, "/metrics") ? "/metrics" : NULL;
    const char *engine = "engine";
    char rank_name[32];
    const char *dphp =
        rank_port >= 0 ? NULL : http_headers_get(&q->headers, "x-data-parallel-host-port");
    if (rank_port > 0) {
        snprintf(rank_name, sizeof rank_name, "engine-dp%d", rank_port);
        engine = rank_name;
    } else if (dphp && *dphp) {
        /* llm-d's sidecar: the rank listening at that host:port, i.e. the engine at
         * --vllm-port + (PORT - --port); anything else is a 400 */
        int rank = sidecar_dp_rank(&r->cfg, dphp);
        if (rank < 0) {
            router_error(ex, 400, NULL,
                         "x-data-parallel-host-port: no data parallel rank of this pod at '%s' "
                         "(ports %d..%lld)",
                         dphp, r->cfg.port, r->cfg.port + r->cfg.sidecar_dp_size - 1);
            p->pd_label = "none";
            count_request(p, 400);
            proxy_free(p);
            return;
        }
        if (rank > 0) {
            snprintf(rank_name, sizeof rank_name, "engine-dp%d", rank);
            engine = rank_name;
        }
    }
    p->ep = sched_ds_find(r->ds, engine);
    if (!p->ep) {
        router_error(ex, 503, NULL, "decode endpoint not ready: no engine configured");
        count_request(p, 503);
        proxy_free(p);
        return;
    }
    p->res.picks[0] = p->ep; /* released with res */
    p->res.n_picks = 1;
    build_headers(p, q, a);
    http_exchange_on_abort(ex, on_client_abort, p);
    const char *hp = http_headers_get(&q->headers, "x-prefiller-host-port");
    const char *eh = http_headers_get(&q->headers, "x-encoder-hosts-ports");
    bool encode = eh && *eh && pd_path(q);
    if (!hp || !*hp || !pd_path(q)) {
        p->pd_label = pd_path(q) ? "decode_only" : "none";
        if (!encode || !sidecar_encode(p, eh))
            start_upstream(p);
        return;
    }
    char host[256];
    int port;
    if (!pd_parse_prefiller(hp, r->cfg.prefiller_sampling, host, sizeof host, &port)) {
        router_error(ex, 400, NULL, "x-prefiller-host-port: '%s' is not host:port", hp);
        p->pd_label = "bad_prefiller";
        count_request(p, 400);
        proxy_free(p);
        return;
    }
    if (r->cfg.ssrf && !router_prefillers_configured(r)) {
        /* Protection on, nothing allowed: refuse, and say once how to configure it. */
        bool expected = false;
        if (atomic_compare_exchange_strong(&r->ssrf_unconfigured_logged, &expected, true))
            LOG_W(LOG_C, "request %s: prefiller %s:%d refused: SSRF protection is on and no "
                         "prefiller is allowed. Give --allowed-prefillers HOST[:PORT],... or "
                         "--inference-pool-name NAME (the pool's pods), or opt out with "
                         "--enable-ssrf-protection=false (logged once)",
                  p->request_id, host, port);
        router_error(ex, 403, NULL,
                     "prefiller %s:%d is not allowed: SSRF protection is on and no prefillers "
                     "are configured (--allowed-prefillers or --inference-pool-name)",
                     host, port);
        p->pd_label = "refused";
        count_request(p, 403);
        proxy_free(p);
        return;
    }
    if (r->cfg.ssrf && !prefiller_allowed(&r->cfg, host, port) &&
        !router_discovery_allows(r->discovery, host, port)) {
        const char *where = r->cfg.pool_name && r->cfg.allowed_prefillers
                                ? "--allowed-prefillers nor a Ready pod of the InferencePool"
                            : r->cfg.pool_name ? "a Ready pod of the InferencePool"
                                               : "--allowed-prefillers";
        LOG_W(LOG_C, "request %s: prefiller %s:%d refused (not %s)", p->request_id, host, port,
              where);
        router_error(ex, 403, NULL,
                     "prefiller %s:%d is not allowed (SSRF protection: not %s)", host, port,
                     where);
        p->pd_label = "refused";
        count_request(p, 403);
        proxy_free(p);
        return;
    }
    p->prefill_name = arena_sprintf(a, "%s:%d", host, port);
    p->pd_label = "cancelled"; /* until the prefill leg ends: a client gone by then */
    LOG_D(LOG_C, "request %s: prefill on %s, decode here", p->request_id, p->prefill_name);
    p->pf_host = arena_strdup(a, host);
    p->pf_port = port;
    if (!encode || !sidecar_encode(p, eh))
        start_prefill(p, host, port);
}

/* Why a pool-fed router has no endpoint at all, or NULL when it has some (or no pool). */
static const char *no_endpoints_reason(struct router *r)
{
    if (!r->discovery)
        return NULL;
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    sched_ds_release_list(eps, n);
    if (n)
        return NULL;
    switch (atomic_load(&r->pool_state)) {
    case ROUTER_POOL_DELETED:
        return "was deleted";
    case ROUTER_POOL_MISSING:
        return "does not exist";
    case ROUTER_POOL_UNKNOWN:
        return "has not been read from the API server yet";
    default:
        return "has no Ready pod matching its selector";
    }
}

int router_decide(struct router *r, struct sched_request *sreq, struct sched_result *res,
                  size_t *pick, char *msg, size_t cap)
{
    struct buf trace = BUF_INIT;
    bool want_trace = log_enabled(LOG_DEBUG);
    const char *objective =
        sreq->headers ? http_headers_get(sreq->headers, "x-gateway-inference-objective") : NULL;
    for (size_t i = 0; objective && i < r->cfg.n_objectives; i++)
        if (strcmp(r->cfg.objectives[i].name, objective) == 0)
            sreq->priority = r->cfg.objectives[i].priority;
    sched_schedule(r->sched, sreq, false, res, want_trace ? &trace : NULL);
    metrics_histogram_observe(r->m.sched_duration, (double)res->elapsed_ns / 1e9);
    r->m.prefix_blocks += res->prefix_blocks;
    r->m.prefix_hits += res->prefix_hit_blocks;
    for (size_t i = 0; i < res->n_plugin_times; i++) {
        const char *name = res->plugin_times[i].name;
        metrics_histogram_observe(metrics_series_get(r->m.plugin_duration, &name),
                                  (double)res->plugin_times[i].ns / 1e9);
    }
    if (want_trace && trace.len)
        log_msg(LOG_DEBUG, "scheduler", "%s", trace.data);
    buf_free(&trace);
    const char *decision = res->prefill ? "disaggregate" : "decode-only";
    metrics_counter_inc(metrics_series_get(r->m.pd_decisions, &decision));
    if (res->n_picks > 0 && !res->status) {
        const char *role = sched_endpoint_role(res->picks[0]) == SCHED_ROLE_BOTH ? "both"
                                                                                 : "decode";
        metrics_counter_inc(metrics_series_get(r->m.role_requests, &role));
        if (res->prefill) {
            const char *pr = "prefill";
            metrics_counter_inc(metrics_series_get(r->m.role_requests, &pr));
        }
        if (res->n_encode) {
            const char *en = "encode";
            metrics_counter_add(metrics_series_get(r->m.role_requests, &en), (double)res->n_encode);
        }
        if (res->disagg_decision) {
            const char *dl[] = {sreq->model && *sreq->model ? sreq->model : "unknown",
                                res->disagg_decision};
            metrics_counter_inc(metrics_series_get(r->m.disagg_decisions, dl));
        }
    }
    if (res->pd == SCHED_PD_NO_PREFILL) {
        /* Disaggregation was wanted but no prefill pod is healthy: never silently. */
        LOG_W(r->cfg.sidecar ? "sidecar" : "router",
              "request %s: no healthy prefill endpoint: fallback to decode-only",
              sreq->request_id);
        const char *reason = "no_prefill_endpoint";
        metrics_counter_inc(metrics_series_get(r->m.pd_fallbacks, &reason));
    }
    *pick = 0;
    if (res->status || res->n_picks == 0) {
        int code = res->status ? res->status : 503;
        const char *pool_why = no_endpoints_reason(r);
        if (pool_why)
            snprintf(msg, cap, "no endpoints: InferencePool %s %s",
                     router_discovery_pool(r->discovery), pool_why);
        else
            snprintf(msg, cap, "%s", res->reason[0] ? res->reason : "no endpoint available");
        return code;
    }
    /* The in-flight bound: the best pick under it (fallbacks count), else 429. */
    if (r->cfg.max_inflight > 0) {
        for (size_t i = 0; i < res->n_picks; i++) {
            struct sched_endpoint_metrics m;
            sched_endpoint_snapshot(res->picks[i], &m);
            if (m.inflight_requests < r->cfg.max_inflight) {
                *pick = i;
                return 0;
            }
        }
        snprintf(msg, cap,
                 "endpoint %s already has %lld requests in flight "
                 "(--max-inflight-per-endpoint); retry later",
                 sched_endpoint_name(res->picks[0]), r->cfg.max_inflight);
        return 429;
    }
    return 0;
}

/* Scheduling and the first upstream leg, once the request is parsed (and tokenized). */
static void proxy_route(struct proxy_req *p)
{
    struct router *r = p->r;
    struct http_exchange *ex = p->ex;
    const struct http_request *q = http_exchange_request(ex);
    struct arena *a = http_exchange_arena(ex);
    char msg[512];
    int code = router_decide(r, &p->sreq, &p->res, &p->pick, msg, sizeof msg);
    if (code) {
        p->ep = p->res.n_picks ? p->res.picks[0] : NULL; /* for the metrics below */
        router_error(ex, code, NULL, "%s", msg);
        count_request(p, code);
        proxy_free(p);
        return;
    }
    p->ep = p->res.picks[p->pick];
    build_headers(p, q, a);
    http_exchange_on_abort(ex, on_client_abort, p);
    vr_inc(r->m.vr.processed, sched_endpoint_name(p->ep));
    if (p->res.n_encode && r->cfg.pd_router && pd_path(q)) {
        /* Router-managed E/P/D: the encode stage here too, over the encode profile's picks
         * (the router's own endpoints: no allowlist needed). */
        struct epd_encoder encs[SCHED_MAX_PICKS];
        for (size_t i = 0; i < p->res.n_encode; i++)
            encs[i] = (struct epd_encoder){arena_strdup(a, sched_endpoint_host(p->res.encode[i])),
                                           sched_endpoint_port(p->res.encode[i])};
        LOG_I(LOG_C, "request %s: encode stage on %zu encoder%s, first %s", p->request_id,
              p->res.n_encode, p->res.n_encode == 1 ? "" : "s",
              sched_endpoint_name(p->res.encode[0]));
        if (start_encode_stage(p, encs, p->res.n_encode))
            return;
    }
    route_legs(p);
}

/* Router-managed P/D's prefill leg when the decision has one, else straight upstream. */
static void route_legs(struct proxy_req *p)
{
    struct router *r = p->r;
    const struct http_request *q = http_exchange_request(p->ex);
    struct arena *a = http_exchange_arena(p->ex);
    if (p->res.prefill && r->cfg.pd_router && pd_path(q)) {
        /* Router-managed P/D: the prefill leg here, then the decode leg to p->ep. */
        /* A copy: a retry may release res (and the endpoint) while we still log it. */
        p->prefill_name = arena_strdup(a, sched_endpoint_name(p->res.prefill));
        p->pd_attempt = 1;
        LOG_I(LOG_C, "request %s: pd pair prefill=%s decode=%s attempt=1", p->request_id,
              p->prefill_name, sched_endpoint_name(p->ep));
        router_vr_log_pd_attempt(r, 0, p->prefill_name, sched_endpoint_name(p->ep));
        vr_inc(r->m.vr.processed, p->prefill_name);
        start_prefill(p, sched_endpoint_host(p->res.prefill),
                      sched_endpoint_port(p->res.prefill));
        return;
    }
    start_upstream(p);
}

/* token-producer: the engine's /tokenize answered (or failed: then the estimate stands). */
static void on_tokenized(enum http_call_error err, int status, const char *body, size_t len,
                         void *ctx)
{
    struct proxy_req *p = ctx;
    p->call = NULL;
    json_t *j = err == HTTP_CALL_OK && status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *toks = json_object_get(j, "tokens");
    if (json_is_array(toks)) {
        size_t n = json_array_size(toks);
        uint32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
        size_t k = 0;
        json_t *t;
        size_t i;
        json_array_foreach(toks, i, t)
        {
            json_int_t v = json_integer_value(t);
            ids[k++] = v >= 0 && v <= (json_int_t)UINT32_MAX ? (uint32_t)v : 0;
        }
        sched_tokens_put(p->r->sched, &p->sreq, ids, k);
        free(ids);
        const char *res = "tokenized";
        metrics_counter_inc(metrics_series_get(p->r->m.token_producer, &res));
    } else {
        const char *res = "failed";
        metrics_counter_inc(metrics_series_get(p->r->m.token_producer, &res));
        LOG_D(LOG_C, "request %s: token-producer: /tokenize failed (%s, HTTP %d): estimating",
              p->request_id, http_call_error_str(err), status);
    }
    json_decref(j);
    proxy_route(p);
}

/* POST {"model", "prompt"} (or the chat's "messages") to the engine's /tokenize. */
static void start_tokenize(struct proxy_req *p, const struct sched_tokenize *tk)
{
    const struct http_request *q = http_exchange_request(p->ex);
    struct arena *a = http_exchange_arena(p->ex);
    json_t *req = json_object();
    json_object_set_new(req, "model", json_string(tk->model));
    bool mm = false;
    json_t *client = strstr(q->path, "/chat/") ? json_loadb(q->body, q->body_len, 0, NULL) : NULL;
    json_t *msgs = json_object_get(client, "messages");
    if (json_is_array(msgs)) {
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m) mm = mm || json_is_array(json_object_get(m, "content"));
        json_object_set(req, "messages", msgs);
        json_object_set_new(req, "add_generation_prompt", json_true());
    } else {
        json_object_set_new(req, "prompt", json_stringn(p->sreq.prompt, p->sreq.prompt_len));
    }
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_decref(client);
    static const struct http_header ct[] = {{"Content-Type", "application/json", 12, 16}};
    struct http_call_request hr = {
        .method = "POST",
        .host = tk->host,
        .port = tk->port,
        .path = arena_sprintf(a, "%s/tokenize", tk->path_prefix),
        .headers = ct,
        .n_headers = 1,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = mm ? tk->mm_timeout_ms : tk->timeout_ms,
    };
    p->call = http_fetch(p->w->client, &hr, 64u << 20, on_tokenized, p);
    free(body);
}

void sidecar_rank_handle(struct http_exchange *ex, void *ctx)
{
    struct sidecar_rank *k = ctx;
    sidecar_handle_rank(k->w, ex, k->rank);
}

void router_handle(struct http_exchange *ex, void *ctx)
{
    struct router_worker *w = ctx;
    struct router *r = w->r;
    if (r->cfg.sidecar) {
        sidecar_handle_rank(w, ex, -1);
        return;
    }
    if (router_admin(r, ex, w))
        return;
    const struct http_request *q = http_exchange_request(ex);
    if (!strcmp(q->path, "/debug/schedule") && !strcmp(q->method, "POST") &&
        r->cfg.debug_endpoints) {
        router_debug_schedule(r, ex);
        return;
    }
    if (!strncmp(q->path, "/debug/", 7)) {
        router_error(ex, 404, NULL,
                     "%s is served on the metrics port%s, or here with --enable-debug-endpoints",
                     q->path, r->cfg.metrics_port ? "" : " (--metrics-port)");
        return;
    }
    /* /tokenize, /detokenize and /tokenizer_info (vLLM's, outside /v1) go to any engine of
     * the model. */
    if (strncmp(q->path, "/v1/", 4) != 0 && strcmp(q->path, "/tokenize") != 0 &&
        strcmp(q->path, "/detokenize") != 0 && strcmp(q->path, "/tokenizer_info") != 0) {
        router_error(ex, 404, NULL, "no route for %s %s", q->method, q->path);
        return;
    }
    struct arena *a = http_exchange_arena(ex);
    struct proxy_req *p = proxy_req_new(w, ex);
    if (r->cfg.max_concurrent > 0) {
        if (atomic_fetch_add(&r->in_flight, 1) >= r->cfg.max_concurrent) {
            atomic_fetch_sub(&r->in_flight, 1);
            router_error(ex, 429, NULL,
                         "too many concurrent requests: %lld in flight "
                         "(--max-concurrent-requests); retry later",
                         r->cfg.max_concurrent);
            count_request(p, 429);
            proxy_free(p);
            return;
        }
        p->admitted = true;
    }
    if (!parse_body(p, q, a)) {
        count_request(p, 400);
        proxy_free(p);
        return;
    }
    struct sched_tokenize tk;
    int tok = sched_tokenize_needed(r->sched, &p->sreq, &tk);
    if (tok == SCHED_TOK_NEEDED) {
        http_exchange_on_abort(ex, on_client_abort, p);
        start_tokenize(p, &tk);
        return;
    }
    if (tok == SCHED_TOK_CACHED) {
        const char *res = "cached";
        metrics_counter_inc(metrics_series_get(r->m.token_producer, &res));
    }
    proxy_route(p);
}

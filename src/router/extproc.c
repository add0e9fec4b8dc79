/* The router's side of Envoy ext_proc (`--grpc-port`): the gateway asks which pod should
 * serve a request and forwards it itself. src/extproc speaks the protocol; this file
 * makes the decision with exactly the HTTP proxy's code (router_parse_body +
 * router_decide: same scheduler, config, plugins, decision log and metrics) and keeps
 * the in-flight accounting for the picked endpoint until the gateway's stream ends.
 *
 * Threads: decide/release run on ext_proc's worker threads; the datastore, scheduler and
 * metrics they use are thread-safe. A token owns one reference to its endpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/arena.h"
#include "base/log.h"
#include "extproc/extproc.h"
#include "router/router_internal.h"

#define LOG_C "extproc"

struct xp_token {
    struct sched_endpoint *ep; /* ref'd */
    int64_t est_tokens;
    bool report;       /* the config has response reporters: keep the response body */
    struct buf resp;   /* the response body so far (reporters only) */
    bool resp_too_big; /* past XP_RESP_MAX: no usage, no report */
};

#define XP_RESP_MAX (8u << 20)

static const char *header(const struct extproc_request *req, const char *key)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcmp(req->headers[i].key, key))
            return req->headers[i].value;
    return NULL;
}

static void xp_decide(void *ctx, const struct extproc_request *req, struct extproc_decision *out)
{
    struct router *r = ctx;
    memset(out, 0, sizeof *out);
    struct arena a;
    arena_init(&a, 0);
    /* the gateway's headers as the scheduler's plugins read them (session headers ...) */
    struct http_headers hh = {0};
    hh.items = arena_alloc(&a, (req->n_headers ? req->n_headers : 1) * sizeof *hh.items);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct extproc_header *h = &req->headers[i];
        if (h->key[0] == ':')
            continue;
        hh.items[hh.n++] = (struct http_header){h->key, h->value, strlen(h->key),
                                                strlen(h->value)};
    }
    hh.cap = hh.n;
    const char *method = header(req, ":method");
    struct sched_request s = {
        .request_id = req->request_id,
        .headers = &hh,
        .has_subset = req->has_subset,
        .subset = req->subset,
        .n_subset = req->n_subset,
    };
    struct router_parsed parsed;
    char msg[512];
    int st = 0;
    if (sched_passthrough_parser(r->sched))
        router_parse_raw(req->body_len, &parsed);
    else
        st = router_parse_body(&s, &a, method ? method : "POST", req->body, req->body_len,
                               &parsed, msg, sizeof msg);
    struct sched_result res;
    memset(&res, 0, sizeof res);
    size_t pick = 0;
    if (!st)
        st = router_decide(r, &s, &res, &pick, msg, sizeof msg);
    const char *model = parsed.model_label && *parsed.model_label ? parsed.model_label : "";
    const char *labels[] = {model, model};
    metrics_counter_inc(metrics_series_get(r->m.gaie_requests, labels));
    if (st) {
        out->status = st;
        if (st == 503 && req->has_subset)
            snprintf(out->message, sizeof out->message,
                     "no ready endpoint in the gateway's subset hint (%zu endpoint%s): %.400s",
                     req->n_subset, req->n_subset == 1 ? "" : "s", msg);
        else
            snprintf(out->message, sizeof out->message, "%s", msg);
        snprintf(out->reason, sizeof out->reason, "%s",
                 st == 400 ? "bad_request" : st == 429 ? "shed" : "no_ready_endpoint");
        const char *code = st == 400 ? "400" : st == 429 ? "429" : "503";
        const char *el[] = {model, code};
        metrics_counter_inc(metrics_series_get(r->m.gaie_errors, el));
        sched_result_release(&res);
        arena_free(&a);
        return;
    }
    /* the pick first, then the other picks as fallbacks */
    size_t len = 0;
    struct sched_endpoint *order[SCHED_MAX_PICKS];
    size_t n = 0;
    order[n++] = res.picks[pick];
    for (size_t i = 0; i < res.n_picks; i++)
        if (i != pick)
            order[n++] = res.picks[i];
    for (size_t i = 0; i < n; i++) {
        const char *addr = sched_endpoint_addr(order[i]);
        char dp_addr[300];
        if (res.dp_primary_port > 0) { /* the rank's pod at its primary port */
            snprintf(dp_addr, sizeof dp_addr, "%s:%d", sched_endpoint_host(order[i]),
                     res.dp_primary_port);
            addr = dp_addr;
        }
        int w = snprintf(out->endpoint + len, sizeof out->endpoint - len, "%s%s", i ? "," : "",
                         addr);
        if (w < 0 || (size_t)w >= sizeof out->endpoint - len) {
            out->endpoint[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
    if (res.dp_primary_port > 0)
        snprintf(out->dp_rank, sizeof out->dp_rank, "%s", sched_endpoint_addr(res.picks[pick]));
    if (res.prefill && !r->cfg.pd_router) /* the decode pod's sidecar runs the prefill leg */
        snprintf(out->prefiller, sizeof out->prefiller, "%s",
                 sched_endpoint_addr(res.prefill));
    if (!r->cfg.pd_router) /* E/P/D: the decode pod's sidecar runs the encode stage */
        router_encoders_header(&res, out->encoders, sizeof out->encoders);
    struct xp_token *t = xcalloc(1, sizeof *t);
    t->report = sched_has_reporters(r->sched);
    t->ep = res.picks[pick];
    sched_endpoint_ref(t->ep);
    t->est_tokens = parsed.est_tokens;
    sched_endpoint_inflight_add(t->ep, 1, t->est_tokens);
    out->token = t;
    LOG_D(LOG_C, "request %s -> %s%s%s", req->request_id, out->endpoint,
          out->prefiller[0] ? " prefill " : "", out->prefiller);
    sched_result_release(&res);
    arena_free(&a);
}

/* The usage object of a finished response: a JSON body's "usage", or the last SSE event
 * that carries a non-null one (stream_options.include_usage). New reference or NULL. */
static json_t *response_usage(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i < len && body[i] == '{') {
        json_t *j = json_loadb(body + i, len - i, 0, NULL);
        json_t *u = json_incref(json_object_get(j, "usage"));
        json_decref(j);
        if (u && !json_is_object(u)) {
            json_decref(u);
            u = NULL;
        }
        return u;
    }
    json_t *found = NULL;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(body + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - body) : len;
        if (e - p > 5 && !memcmp(body + p, "data:", 5)) {
            size_t s = p + 5;
            while (s < e && body[s] == ' ')
                s++;
            json_t *j = s < e && body[s] == '{' ? json_loadb(body + s, e - s, 0, NULL) : NULL;
            json_t *u = json_object_get(j, "usage");
            if (json_is_object(u)) {
                json_decref(found);
                found = json_incref(u);
            }
            json_decref(j);
        }
        p = e + 1;
    }
    return found;
}

/* Response phase: keeps the body when the config reports on it; at the end, runs the
 * reporters over its usage and hands their attributes to the stream. */
static void xp_on_response(void *ctx, void *token, int status, const char *chunk, size_t len,
                           bool eos, struct extproc_attrs *md)
{
    struct router *r = ctx;
    struct xp_token *t = token;
    if (!t || !t->report)
        return;
    if (len && !t->resp_too_big) {
        if (t->resp.len + len > XP_RESP_MAX) {
            t->resp_too_big = true;
            buf_free(&t->resp);
        } else {
            buf_append(&t->resp, chunk, len);
        }
    }
    if (!eos || !md || t->resp_too_big || status < 200 || status > 299)
        return;
    json_t *usage = response_usage(t->resp.data ? t->resp.data : "", t->resp.len);
    struct sched_attribute at[SCHED_MAX_ATTRIBUTES];
    size_t n = sched_report_response(r->sched, usage, at, SCHED_MAX_ATTRIBUTES);
    json_decref(usage);
    for (size_t i = 0; i < n && md->n < EXTPROC_MAX_ATTRS; i++) {
        snprintf(md->a[md->n].ns, sizeof md->a[md->n].ns, "%s", at[i].ns);
        snprintf(md->a[md->n].name, sizeof md->a[md->n].name, "%s", at[i].name);
        md->a[md->n++].value = at[i].value;
    }
    buf_free(&t->resp);
}

/* Response headers: the config's response-header plugins (destination-endpoint-served-
 * verifier) over Envoy's envoy.lb metadata; their headers go onto the response. */
static void xp_on_response_headers(void *ctx, void *token, const struct extproc_lb_meta *lb,
                                   struct extproc_resp_headers *out)
{
    struct router *r = ctx;
    (void)token;
    if (!sched_has_response_headers(r->sched))
        return;
    struct sched_lb_meta m = {.has_lb = lb->has_lb, .served = lb->served};
    struct sched_resp_header h[SCHED_MAX_RESP_HEADERS];
    size_t n = sched_response_headers(r->sched, &m, h, SCHED_MAX_RESP_HEADERS);
    for (size_t i = 0; i < n && out->n < EXTPROC_MAX_RESP_HEADERS; i++) {
        snprintf(out->h[out->n].key, sizeof out->h[out->n].key, "%s", h[i].name);
        snprintf(out->h[out->n].value, sizeof out->h[out->n].value, "%s", h[i].value);
        out->n++;
    }
}

static void xp_release(void *ctx, void *token, bool cancelled)
{
    struct xp_token *t = token;
    sched_endpoint_inflight_add(t->ep, -1, -t->est_tokens);
    sched_endpoint_unref(t->ep);
    buf_free(&t->resp);
    free(t);
}

bool router_extproc_start(struct router *r, char *err, size_t errlen)
{
    const struct router_config *c = &r->cfg;
    struct extproc_config xc = {
        .host = c->host,
        .port = c->grpc_port,
        .health_port = c->grpc_health_port,
        .tls = c->secure_serving,
        .cert_dir = c->cert_path,
        .workers = (int)(r->n_workers ? r->n_workers : 1),
        .mode = c->extproc_mode,
        .max_body_bytes = (size_t)c->max_body_bytes,
    };
    struct extproc_hooks hooks = {
        .decide = xp_decide,
        .release = xp_release,
        .on_response = xp_on_response,
        .on_response_headers = xp_on_response_headers,
        .ctx = r};
    if (!extproc_server_start(&xc, &hooks, &r->extproc, err, errlen))
        return false;
    LOG_I(LOG_C, "ext_proc on %s:%d (%s), gRPC health on %d", c->host,
          extproc_port(r->extproc), c->secure_serving ? "TLS, self-signed unless --cert-path"
                                                      : "plaintext",
          extproc_health_port(r->extproc));
    if (sched_has_token_producer(r->sched))
        LOG_W(LOG_C, "not applied by tandem: token-producer on ext_proc decisions (the gRPC "
                     "decision does not wait for /tokenize; prompts tokenized on the HTTP "
                     "path are used)");
    return true;
}

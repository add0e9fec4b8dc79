/* The router's own routes: /health, /ready, /metrics, /debug/endpoints and the union of
 * /v1/models over healthy endpoints. (/debug/schedule lives in proxy.c: it shares the
 * request parsing.) Router metrics are registered here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "openai/openai.h"
#include "router/router_internal.h"

static const char *role_str(enum sched_role r)
{
    switch (r) {
    case SCHED_ROLE_DECODE:
        return "decode";
    case SCHED_ROLE_PREFILL:
        return "prefill";
    case SCHED_ROLE_BOTH:
        return "both";
    default:
        return "";
    }
}

/* Endpoint gauges are refreshed from the datastore at scrape time. */
static void collect(void *ctx)
{
    struct router *r = ctx;
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    for (size_t i = 0; i < n; i++) {
        struct sched_endpoint_metrics m;
        sched_endpoint_snapshot(eps[i], &m);
        const char *name = sched_endpoint_name(eps[i]);
        metrics_gauge_set(metrics_series_get(r->m.ep_queue, &name), m.waiting);
        metrics_gauge_set(metrics_series_get(r->m.ep_running, &name), m.running);
        metrics_gauge_set(metrics_series_get(r->m.ep_kv, &name), m.kv_usage);
        metrics_gauge_set(metrics_series_get(r->m.ep_inflight, &name), (double)m.inflight_requests);
    }
    double by_role[4] = {0}, q_role[4] = {0}, run_role[4] = {0}, inf_role[4] = {0};
    double healthy = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned ro = sched_endpoint_role(eps[i]) & 3;
        by_role[ro]++;
        struct sched_endpoint_metrics em;
        sched_endpoint_snapshot(eps[i], &em);
        healthy += em.healthy;
        q_role[ro] += em.waiting;
        run_role[ro] += em.running;
        inf_role[ro] += (double)em.inflight_requests;
    }
    const char *pool = r->discovery ? router_discovery_pool(r->discovery) : "";
    if (r->m.gaie_ready_pods)
        metrics_gauge_set(metrics_series_get(r->m.gaie_ready_pods, &pool), healthy);
    sched_ds_release_list(eps, n);
    static const enum sched_role roles[] = {SCHED_ROLE_DECODE, SCHED_ROLE_PREFILL,
                                            SCHED_ROLE_BOTH};
    for (size_t i = 0; i < 3; i++) {
        const char *name = role_str(roles[i]);
        metrics_gauge_set(metrics_series_get(r->m.endpoints_by_role, &name),
                          by_role[roles[i] & 3]);
        metrics_gauge_set(metrics_series_get(r->m.role_queue, &name), q_role[roles[i] & 3]);
        metrics_gauge_set(metrics_series_get(r->m.role_running, &name), run_role[roles[i] & 3]);
        metrics_gauge_set(metrics_series_get(r->m.role_inflight, &name), inf_role[roles[i] & 3]);
    }
    metrics_gauge_set(r->m.prefix_size, (double)sched_prefix_index_size(r->sched));
    uint64_t blocks = r->m.prefix_blocks, hits = r->m.prefix_hits;
    metrics_gauge_set(r->m.prefix_hit_ratio, blocks ? (double)hits / (double)blocks : 0);
    router_vr_metrics_collect(r);
    struct sched_kv_index_stats kv;
    if (r->m.kv_index && sched_kv_index_stats(r->sched, &kv)) {
        pthread_mutex_lock(&r->m.kv_mu);
        metrics_counter_add(r->m.kv_admissions, (double)(kv.admissions - r->m.kv_last.admissions));
        metrics_counter_add(r->m.kv_evictions, (double)(kv.evictions - r->m.kv_last.evictions));
        metrics_counter_add(r->m.kv_lookups,
                            (double)(kv.lookup_requests - r->m.kv_last.lookup_requests));
        metrics_counter_add(r->m.kv_hits, (double)(kv.lookup_hits - r->m.kv_last.lookup_hits));
        r->m.kv_last = kv;
        pthread_mutex_unlock(&r->m.kv_mu);
        metrics_gauge_set(r->m.kv_blocks, (double)kv.blocks);
    }
}

void router_metrics_init(struct router *r)
{
    struct router_metrics *m = &r->m;
    struct metrics_registry *reg = metrics_registry_new();
    m->reg = reg;
    const char *mc[] = {"model", "code"};
    m->requests = metrics_family_new(reg, METRICS_COUNTER, "tandem_router_requests_total",
                                     "Requests answered, by model and HTTP status.", mc, 2,
                                     NULL, 0);
    m->duration = metrics_series0(metrics_family_new(
        reg, METRICS_HISTOGRAM, "tandem_router_request_duration_seconds",
        "Whole request duration as the router saw it.", NULL, 0,
        metrics_buckets_request_latency, metrics_buckets_request_latency_n));
    m->ttft = metrics_series0(metrics_family_new(
        reg, METRICS_HISTOGRAM, "tandem_router_ttft_seconds",
        "Time to the first upstream response byte.", NULL, 0, metrics_buckets_ttft,
        metrics_buckets_ttft_n));
    static const double us_buckets[] = {1e-6,  2e-6, 5e-6,  10e-6, 20e-6, 50e-6,
                                        100e-6, 200e-6, 500e-6, 1e-3, 5e-3};
    m->sched_duration = metrics_series0(metrics_family_new(
        reg, METRICS_HISTOGRAM, "tandem_router_scheduler_duration_seconds",
        "Time to make one scheduling decision.", NULL, 0, us_buckets,
        sizeof us_buckets / sizeof us_buckets[0]));
    const char *ek[] = {"endpoint", "kind"};
    m->upstream_errors = metrics_family_new(reg, METRICS_COUNTER,
                                            "tandem_router_upstream_errors_total",
                                            "Upstream failures by endpoint and kind.", ek, 2,
                                            NULL, 0);
    m->retries = metrics_series0(metrics_family_new(reg, METRICS_COUNTER,
                                                    "tandem_router_retries_total",
                                                    "Requests retried on another endpoint.",
                                                    NULL, 0, NULL, 0));
    const char *d[] = {"decision"};
    m->pd_decisions = metrics_family_new(reg, METRICS_COUNTER,
                                         "tandem_router_pd_decisions_total",
                                         "P/D decisions: disaggregate or decode-only.", d, 1,
                                         NULL, 0);
    const char *dd[] = {"model_name", "decision_type"};
    m->disagg_decisions = metrics_family_new(
        reg, METRICS_COUNTER, "llm_d_inference_scheduler_disagg_decision_total",
        "disagg-profile-handler decisions (llm-d's): decode-only, prefill-decode, "
        "encode-decode, encode-prefill-decode.",
        dd, 2, NULL, 0);
    const char *tr[] = {"result"};
    m->token_producer = metrics_family_new(
        reg, METRICS_COUNTER, "tandem_router_token_producer_total",
        "token-producer lookups: cached (the cache had the prompt), tokenized (the engine's "
        "/tokenize answered), failed (it did not: the estimate was used).",
        tr, 1, NULL, 0);
    const char *e[] = {"endpoint"};
    m->ep_queue = metrics_family_new(reg, METRICS_GAUGE, "tandem_router_endpoint_queue",
                                     "Waiting requests scraped from the endpoint.", e, 1, NULL, 0);
    m->ep_running = metrics_family_new(reg, METRICS_GAUGE, "tandem_router_endpoint_running",
                                       "Running requests scraped from the endpoint.", e, 1, NULL,
                                       0);
    m->ep_kv = metrics_family_new(reg, METRICS_GAUGE, "tandem_router_endpoint_kv_usage",
                                  "KV cache usage scraped from the endpoint (0-1).", e, 1, NULL,
                                  0);
    m->ep_inflight = metrics_family_new(reg, METRICS_GAUGE, "tandem_router_endpoint_inflight",
                                        "Requests the router has in flight to the endpoint.", e,
                                        1, NULL, 0);
    const char *pl[] = {"plugin"};
    m->plugin_duration = metrics_family_new(reg, METRICS_HISTOGRAM,
                                            "tandem_router_plugin_duration_seconds",
                                            "Time in each scheduling plugin (sampled: 1 in 16 "
                                            "decisions).",
                                            pl, 1, us_buckets,
                                            sizeof us_buckets / sizeof us_buckets[0]);
    m->prefix_hit_ratio = metrics_series0(metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_prefix_index_hit_ratio",
        "Prompt blocks the picked endpoint already held, over all prompt blocks scheduled.",
        NULL, 0, NULL, 0));
    m->prefix_size = metrics_series0(metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_prefix_index_size",
        "Blocks held in the approximate prefix index.", NULL, 0, NULL, 0));
    const char *rs[] = {"reason"};
    m->pd_fallbacks = metrics_family_new(
        reg, METRICS_COUNTER, "tandem_router_pd_fallbacks_total",
        "Disaggregated requests decoded in place after the prefill leg failed, by reason.", rs,
        1, NULL, 0);
    const char *rl[] = {"role"};
    m->endpoints_by_role = metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_endpoints",
        "Endpoints in the datastore by role (decode, prefill, both).", rl, 1, NULL, 0);
    m->role_requests = metrics_family_new(
        reg, METRICS_COUNTER, "tandem_router_role_requests_total",
        "Requests scheduled to a pod of each role: decode (every request's decode pod) and "
        "prefill (prefill legs); decode minus prefill is the requests that skipped prefill; "
        "encode: E/P/D encoders picked (one per encoder a request uses).",
        rl, 1, NULL, 0);
    m->role_queue = metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_role_queue",
        "Waiting requests scraped from the role's pods, summed (vllm:num_requests_waiting).",
        rl, 1, NULL, 0);
    m->role_running = metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_role_running",
        "Running requests scraped from the role's pods, summed (vllm:num_requests_running).",
        rl, 1, NULL, 0);
    m->role_inflight = metrics_family_new(
        reg, METRICS_GAUGE, "tandem_router_role_inflight",
        "Requests the router has in flight to the role's pods.", rl, 1, NULL, 0);
    m->discovery_restarts = metrics_series0(metrics_family_new(
        reg, METRICS_COUNTER, "tandem_router_discovery_watch_restarts_total",
        "Kubernetes watches started again (after a timeout, an error or a relist).", NULL, 0,
        NULL, 0));
    const char *kd[] = {"kind"};
    m->discovery_errors = metrics_family_new(
        reg, METRICS_COUNTER, "tandem_router_discovery_errors_total",
        "Failed Kubernetes lists and watches, by the Status reason (Forbidden, NotFound, "
        "Expired, TransportError, ...).",
        kd, 1, NULL, 0);
    const char *mt[] = {"model_name", "target_model_name"};
    m->gaie_requests = metrics_family_new(
        reg, METRICS_COUNTER, "inference_objective_request_total",
        "Requests scheduled through ext_proc, by model (GAIE's EPP metric name).", mt, 2, NULL,
        0);
    const char *me[] = {"model_name", "error_code"};
    m->gaie_errors = metrics_family_new(
        reg, METRICS_COUNTER, "inference_objective_request_error_total",
        "ext_proc requests refused, by model and HTTP code (GAIE's EPP metric name).", me, 2,
        NULL, 0);
    const char *pn[] = {"name"};
    m->gaie_ready_pods = metrics_family_new(
        reg, METRICS_GAUGE, "inference_pool_ready_pods",
        "Healthy endpoints of the pool (GAIE's EPP metric name).", pn, 1, NULL, 0);
    struct sched_kv_index_stats kv;
    if (sched_kv_index_stats(r->sched, &kv)) {
        m->kv_index = true;
        pthread_mutex_init(&m->kv_mu, NULL);
        m->kv_admissions = metrics_series0(metrics_family_new(
            reg, METRICS_COUNTER, "kvcache_index_admissions_total",
            "KV-block admissions (precise-prefix-cache-scorer, from BlockStored events).", NULL,
            0, NULL, 0));
        m->kv_evictions = metrics_series0(metrics_family_new(
            reg, METRICS_COUNTER, "kvcache_index_evictions_total",
            "KV-block evictions (BlockRemoved, AllBlocksCleared).", NULL, 0, NULL, 0));
        m->kv_lookups = metrics_series0(metrics_family_new(
            reg, METRICS_COUNTER, "kvcache_index_lookup_requests_total",
            "Index lookups made while scoring.", NULL, 0, NULL, 0));
        m->kv_hits = metrics_series0(metrics_family_new(
            reg, METRICS_COUNTER, "kvcache_index_lookup_hits_total",
            "Request blocks found in the index during lookups.", NULL, 0, NULL, 0));
        m->kv_blocks = metrics_series0(metrics_family_new(
            reg, METRICS_GAUGE, "tandem_router_kv_index_blocks",
            "Blocks in the precise-prefix-cache-scorer's index.", NULL, 0, NULL, 0));
    }
    if (r->cfg.vr_mode && !r->cfg.sidecar)
        router_vr_metrics_init(r);
    metrics_registry_on_collect(reg, collect, r);
    if (!r->cfg.sidecar)
        return;
    /* tandem sidecar: its own families are what /metrics shows; the router ones the proxy
     * code updates stay in a registry nobody renders. */
    m->hidden_reg = reg;
    m->reg = metrics_registry_new();
    const char *pp[] = {"path", "pd"};
    m->sc_requests = metrics_family_new(
        m->reg, METRICS_COUNTER, "tandem_sidecar_requests_total",
        "Requests by path and P/D handling (disaggregated, decode_only, fallback, "
        "prefill_error, refused, bad_prefiller, cancelled, none, encoded, encode_error).",
        pp, 2, NULL, 0);
    m->sc_fallbacks = metrics_family_new(
        m->reg, METRICS_COUNTER, "tandem_sidecar_pd_fallbacks_total",
        "Requests decoded in place after the prefill leg failed, by reason.", rs, 1, NULL, 0);
    m->sc_prefill_duration = metrics_series0(metrics_family_new(
        m->reg, METRICS_HISTOGRAM, "tandem_sidecar_prefill_duration_seconds",
        "Duration of the prefill leg.", NULL, 0, metrics_buckets_request_latency,
        metrics_buckets_request_latency_n));
    m->sc_true_ttft = metrics_series0(metrics_family_new(
        m->reg, METRICS_HISTOGRAM, "tandem_sidecar_true_ttft_seconds",
        "Time from the request's arrival to the decode engine's first response byte, "
        "prefill leg included.",
        NULL, 0, metrics_buckets_ttft, metrics_buckets_ttft_n));
    const char *res_l[] = {"result"};
    m->sc_encoder_items = metrics_family_new(
        m->reg, METRICS_COUNTER, "tandem_sidecar_encoder_items_total",
        "E/P/D: multimodal items sent to encoders (x-encoder-hosts-ports), by result "
        "(ok, error).",
        res_l, 1, NULL, 0);
    m->sc_encode_duration = metrics_series0(
        metrics_family_new(m->reg, METRICS_HISTOGRAM, "tandem_sidecar_encode_duration_seconds",
                           "E/P/D: duration of the encode stage (all items, concurrently).", NULL,
                           0, metrics_buckets_request_latency, metrics_buckets_request_latency_n));
}

static void endpoints_json(struct router *r, struct buf *b)
{
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    uint64_t now = clock_monotonic_ns();
    buf_append_str(b, "{\"endpoints\":[");
    for (size_t i = 0; i < n; i++) {
        struct sched_endpoint_metrics m;
        sched_endpoint_snapshot(eps[i], &m);
        const char *name = sched_endpoint_name(eps[i]), *addr = sched_endpoint_addr(eps[i]);
        const char *role = role_str(sched_endpoint_role(eps[i]));
        if (i)
            buf_append_char(b, ',');
        buf_append_str(b, "{\"name\":");
        json_quote(b, name, strlen(name));
        buf_append_str(b, ",\"address\":");
        json_quote(b, addr, strlen(addr));
        buf_append_str(b, ",\"role\":");
        json_quote(b, role, strlen(role));
        const char *source = sched_endpoint_source(eps[i]);
        buf_append_str(b, ",\"source\":");
        json_quote(b, source, strlen(source));
        buf_printf(b,
                   ",\"healthy\":%s,\"metrics\":%s,\"stale\":%s,\"waiting\":%g,\"running\":%g,"
                   "\"kv_usage\":%g,\"block_size\":%u,\"num_blocks\":%u,\"inflight_requests\":%lld,"
                   "\"inflight_tokens\":%lld,\"scraped_ms_ago\":%.1f}",
                   m.healthy ? "true" : "false", m.have ? "true" : "false",
                   m.stale ? "true" : "false", m.waiting, m.running, m.kv_usage, m.block_size,
                   m.num_blocks, (long long)m.inflight_requests, (long long)m.inflight_tokens,
                   m.have ? (double)(now - m.scraped_at_ns) / 1e6 : -1.0);
    }
    buf_append_str(b, "]}");
    sched_ds_release_list(eps, n);
}

/* --- /v1/models: fan out to healthy endpoints, merge by id ------------------------- */

struct models_req {
    struct http_exchange *ex;
    json_t *data;  /* merged list */
    json_t *seen;  /* id -> true */
    size_t pending; /* fetches not answered yet; the last one frees this */
    bool aborted;
};

static void models_finish(struct models_req *m)
{
    if (!m->aborted) {
        json_t *out = json_pack("{s:s, s:O}", "object", "list", "data", m->data);
        struct buf b = BUF_INIT;
        json_dump_to(&b, out);
        http_respond(m->ex, 200, "application/json", b.data, b.len);
        buf_free(&b);
        json_decref(out);
    }
    json_decref(m->data);
    json_decref(m->seen);
    free(m);
}

static void models_done(enum http_call_error err, int status, const char *body, size_t len,
                        void *ctx)
{
    struct models_req *m = ctx;
    if (err == HTTP_CALL_OK && status == 200) {
        json_t *j = json_loadb(body, len, 0, NULL);
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(j, "data"), i, item)
        {
            const char *id = json_string_value(json_object_get(item, "id"));
            if (id && !json_object_get(m->seen, id)) {
                json_object_set_new(m->seen, id, json_true());
                json_array_append(m->data, item);
            }
        }
        json_decref(j);
    }
    if (--m->pending == 0)
        models_finish(m);
}

static void models_abort(struct http_exchange *ex, void *ctx)
{
    struct models_req *m = ctx;
    m->aborted = true; /* answers still arriving are merged and dropped */
}

static void handle_models(struct router *r, struct http_exchange *ex, struct router_worker *w)
{
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    struct models_req *m = xcalloc(1, sizeof *m);
    m->ex = ex;
    m->data = json_array();
    m->seen = json_object();
    for (size_t i = 0; i < n; i++) {
        struct sched_endpoint_metrics st;
        sched_endpoint_snapshot(eps[i], &st);
        if (!st.healthy)
            continue;
        struct http_call_request req = {
            .method = "GET",
            .host = sched_endpoint_host(eps[i]),
            .port = sched_endpoint_port(eps[i]),
            .path = OPENAI_PATH_MODELS,
            .timeout_ms = 2000,
        };
        m->pending++;
        http_fetch(w->client, &req, 4 << 20, models_done, m);
    }
    sched_ds_release_list(eps, n);
    if (m->pending == 0) {
        models_finish(m);
        return;
    }
    http_exchange_on_abort(ex, models_abort, m);
}

bool router_admin(struct router *r, struct http_exchange *ex, struct router_worker *w)
{
    const struct http_request *q = http_exchange_request(ex);
    bool get = !strcmp(q->method, "GET");
    if (get && !strcmp(q->path, "/health")) {
        http_respond(ex, 200, "application/json", "{\"status\":\"ok\"}", 15);
    } else if (get && !strcmp(q->path, "/ready")) {
        if (r->ready)
            http_respond(ex, 200, "application/json", "{\"status\":\"ready\"}", 18);
        else
            router_error(ex, 503, NULL, "not ready: no healthy endpoint yet");
    } else if (get && !strcmp(q->path, "/metrics")) {
        struct buf b = BUF_INIT;
        metrics_render(r->m.reg, &b);
        http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
    } else if (get && !strcmp(q->path, "/debug/endpoints") && (!w || r->cfg.debug_endpoints)) {
        struct buf b = BUF_INIT;
        endpoints_json(r, &b);
        http_respond(ex, 200, "application/json", b.data, b.len);
        buf_free(&b);
    } else if (get && !strcmp(q->path, OPENAI_PATH_MODELS) && w) {
        handle_models(r, ex, w);
    } else {
        return false;
    }
    return true;
}

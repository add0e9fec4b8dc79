/* vllm-router compatibility: its command line (flag names, defaults and meanings, the
 * optional bootstrap port after --prefill URL, multi-valued --worker-urls and selectors),
 * its workers named by URL (URL@rank with --intra-node-data-parallel-size), the P/D
 * scheduler config its policies stand for, its "PD retry attempt" log line and its
 * vllm_router_* metric families.
 *
 * Everything here runs once at start-up except the metric helpers and the log line, which
 * any worker thread calls. Strings in the config point into argv, except the endpoint
 * specs (heap, freed by router_config_free) and the generated scheduler config
 * (owned_config_text). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "net/url.h"
#include <netdb.h>
#include "router/router_internal.h"

/* Values before checking: -1 = not given (the default depends on the mode). */
struct router_vr {
    bool pd, vllm_pd, disable_retries, disable_cb;
    long long dp_size, prometheus_port, request_timeout, max_concurrent, max_payload;
    long long retry_max, cb_fail, cb_succ, cb_timeout;
    const char *prometheus_host, *prefill_policy, *decode_policy;
    double cache_threshold, balance_abs, balance_rel; /* cache_aware's */
};

/* --- flags ---------------------------------------------------------------------------- */

static bool add_url(struct router_config *cfg, const char *url, enum sched_role role, int port,
                    char *err, size_t errlen)
{
    if (cfg->n_urls == ROUTER_MAX_ENDPOINT_FLAGS) {
        snprintf(err, errlen, "at most %d worker URLs", ROUTER_MAX_ENDPOINT_FLAGS);
        return false;
    }
    cfg->urls[cfg->n_urls++] = (struct router_url){.url = url, .role = role, .bootstrap_port = port};
    return true;
}

static bool worker_urls_fn(const char *v, void *target, char *err, size_t errlen)
{
    return add_url(target, v, SCHED_ROLE_NONE, 0, err, errlen);
}

static bool add_selector(const char *v, const char **list, size_t *n, char *err, size_t errlen)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v) {
        snprintf(err, errlen, "'%s' is not key=value", v);
        return false;
    }
    if (*n == 16) {
        snprintf(err, errlen, "at most 16 labels");
        return false;
    }
    list[(*n)++] = v;
    return true;
}

static bool selector_fn(const char *v, void *target, char *err, size_t errlen)
{
    struct router_config *cfg = target;
    return add_selector(v, cfg->selector, &cfg->n_selector, err, errlen);
}

static bool prefill_selector_fn(const char *v, void *target, char *err, size_t errlen)
{
    struct router_config *cfg = target;
    return add_selector(v, cfg->prefill_selector, &cfg->n_prefill_selector, err, errlen);
}

static bool decode_selector_fn(const char *v, void *target, char *err, size_t errlen)
{
    struct router_config *cfg = target;
    return add_selector(v, cfg->decode_selector, &cfg->n_decode_selector, err, errlen);
}

#define IGN(name) {name, NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL}
#define IGN_BOOL(name) {name, NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL}
#define IGN_MULTI(name) {name, NULL, FLAG_IGNORE_MULTI, NULL, NULL, NULL, NULL}

size_t router_vr_flags(struct router_config *cfg, struct router_vr **vvp, struct flag *out)
{
    struct router_vr *vv = xcalloc(1, sizeof *vv);
    *vvp = vv;
    vv->dp_size = 1;
    vv->prometheus_port = vv->request_timeout = vv->max_concurrent = vv->max_payload = -1;
    vv->retry_max = vv->cb_fail = vv->cb_succ = vv->cb_timeout = -1;
    vv->cache_threshold = 0.3; /* vllm-router's defaults */
    vv->balance_abs = 64;
    vv->balance_rel = 1.5;
    cfg->sd_port = 80;
    const struct flag rows[] = {
        {"--pd-disaggregation", NULL, FLAG_BOOL, &vv->pd, NULL,
         "vllm-router: prefill/decode disaggregation run by the router (--prefill, --decode)",
         NULL},
        {"--vllm-pd-disaggregation", NULL, FLAG_BOOL, &vv->vllm_pd, NULL,
         "vllm-router: the same (vLLM's NIXL two-stage P/D)", NULL},
        {"--worker-urls", NULL, FLAG_FUNC_MULTI, cfg, "URL...",
         "vllm-router: workers (no P/D role), several after one flag", worker_urls_fn},
        {"--prefill-policy", NULL, FLAG_STRING, &vv->prefill_policy, "NAME",
         "vllm-router: policy for prefill workers (default: --policy)", NULL},
        {"--decode-policy", NULL, FLAG_STRING, &vv->decode_policy, "NAME",
         "vllm-router: policy for decode workers (default: --policy)", NULL},
        {"--intra-node-data-parallel-size", NULL, FLAG_INT, &vv->dp_size, "N",
         "vllm-router: DP ranks per worker URL; each becomes URL@rank, its requests carry "
         "X-data-parallel-rank (1)",
         NULL},
        {"--prometheus-port", NULL, FLAG_INT, &vv->prometheus_port, "N",
         "vllm-router: metrics port (29000 in vllm-router mode)", NULL},
        {"--prometheus-host", NULL, FLAG_STRING, &vv->prometheus_host, "ADDR",
         "vllm-router: metrics address (default: --host)", NULL},
        {"--request-timeout-secs", NULL, FLAG_INT, &vv->request_timeout, "S",
         "vllm-router: whole upstream request timeout (1800)", NULL},
        {"--max-concurrent-requests", NULL, FLAG_INT, &vv->max_concurrent, "N",
         "vllm-router: requests in flight; past it, 429 (32768)", NULL},
        {"--max-payload-size", NULL, FLAG_INT, &vv->max_payload, "BYTES",
         "vllm-router: largest request body (default: --max-body-bytes)", NULL},
        {"--retry-max-retries", NULL, FLAG_INT, &vv->retry_max, "N",
         "vllm-router: attempts per request, the first included (5)", NULL},
        {"--disable-retries", NULL, FLAG_BOOL, &vv->disable_retries, NULL,
         "vllm-router: one attempt only", NULL},
        {"--cb-failure-threshold", NULL, FLAG_INT, &vv->cb_fail, "N",
         "vllm-router: consecutive failures that open a worker's circuit breaker (10)", NULL},
        {"--cb-success-threshold", NULL, FLAG_INT, &vv->cb_succ, "N",
         "vllm-router: half-open successes that close it (3)", NULL},
        {"--cb-timeout-duration-secs", NULL, FLAG_INT, &vv->cb_timeout, "S",
         "vllm-router: open time before half-open (60)", NULL},
        {"--disable-circuit-breaker", NULL, FLAG_BOOL, &vv->disable_cb, NULL,
         "vllm-router: no circuit breaker", NULL},
        {"--api-key", NULL, FLAG_STRING, &cfg->api_key, "KEY",
         "vllm-router: sent to workers as Authorization: Bearer KEY (when the client sent "
         "none)",
         NULL},
        {"--service-discovery", NULL, FLAG_BOOL, &cfg->service_discovery, NULL,
         "vllm-router: workers are the Ready pods matching the selectors (Kubernetes)", NULL},
        {"--selector", NULL, FLAG_FUNC_MULTI, cfg, "K=V...", "vllm-router: worker pod labels",
         selector_fn},
        {"--prefill-selector", NULL, FLAG_FUNC_MULTI, cfg, "K=V...",
         "vllm-router: prefill pod labels (P/D)", prefill_selector_fn},
        {"--decode-selector", NULL, FLAG_FUNC_MULTI, cfg, "K=V...",
         "vllm-router: decode pod labels (P/D)", decode_selector_fn},
        {"--service-discovery-namespace", NULL, FLAG_STRING, &cfg->sd_namespace, "NS",
         "vllm-router: namespace of the pods (default: the kubeconfig's)", NULL},
        {"--service-discovery-port", NULL, FLAG_INT, &cfg->sd_port, "N",
         "vllm-router: port of discovered pods (80)", NULL},
        /* Accepted, no effect here (one log line each). */
        IGN("--worker-startup-timeout-secs"),
        IGN("--worker-startup-check-interval"),
        {"--cache-threshold", NULL, FLAG_DOUBLE, &vv->cache_threshold, "F",
         "vllm-router: cache_aware: prefix match ratio that routes by cache (0.3)", NULL},
        {"--balance-abs-threshold", NULL, FLAG_DOUBLE, &vv->balance_abs, "N",
         "vllm-router: cache_aware: load gap that switches to least loaded (64)", NULL},
        {"--balance-rel-threshold", NULL, FLAG_DOUBLE, &vv->balance_rel, "F",
         "vllm-router: cache_aware: load ratio that switches to least loaded (1.5)", NULL},
        IGN("--eviction-interval"),
        IGN("--max-tree-size"),
        IGN_MULTI("--api-key-validation-urls"),
        IGN("--backend"),
        IGN("--runtime"),
        IGN("--log-dir"),
        IGN_BOOL("--enable-trace"),
        IGN("--otlp-traces-endpoint"),
        IGN("--otel-sampling-ratio"),
        IGN_MULTI("--otel-excluded-paths"),
        IGN_MULTI("--request-id-headers"),
        IGN_MULTI("--cors-allowed-origins"),
        IGN("--retry-initial-backoff-ms"),
        IGN("--retry-max-backoff-ms"),
        IGN("--retry-backoff-multiplier"),
        IGN("--retry-jitter-factor"),
        IGN("--cb-window-duration-secs"),
        IGN("--health-failure-threshold"),
        IGN("--health-success-threshold"),
        IGN("--health-check-timeout-secs"),
        IGN("--health-check-interval-secs"),
        IGN("--health-check-endpoint"),
        IGN_BOOL("--enable-igw"),
        IGN("--history-backend"),
        IGN_BOOL("--profile"),
        IGN("--kv-connector"),
        IGN("--vllm-discovery-address"),
        IGN("--model-path"),
        IGN("--tokenizer-path"),
    };
    _Static_assert(sizeof rows / sizeof rows[0] <= ROUTER_VR_FLAGS, "ROUTER_VR_FLAGS");
    memcpy(out, rows, sizeof rows);
    return sizeof rows / sizeof rows[0];
}

bool router_vr_wanted(const struct flag *rows, size_t n, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        size_t len = strcspn(argv[i], "=");
        for (size_t k = 0; k < n; k++)
            if (strlen(rows[k].name) == len && !strncmp(rows[k].name, argv[i], len))
                return true;
    }
    return false;
}

bool router_vr_split_prefill(struct router_config *cfg, int argc, char **argv, char ***rest,
                             int *n_rest, char *err, size_t errlen)
{
    char **out = xcalloc((size_t)argc + 1, sizeof *out);
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--prefill") != 0) {
            out[n++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "--prefill requires a URL immediately after");
            free(out);
            return false;
        }
        const char *url = argv[++i];
        if (url[0] == '-') {
            snprintf(err, errlen, "--prefill: invalid url %s", url);
            free(out);
            return false;
        }
        /* The optional bootstrap port: a port number, or "none". */
        int port = 0;
        if (i + 1 < argc && argv[i + 1][0] != '-') {
            const char *p = argv[i + 1];
            char *end;
            long v = strtol(p, &end, 10);
            if (!strcasecmp(p, "none")) {
                i++;
            } else if (*p && !*end && v >= 0 && v <= 65535) {
                port = (int)v;
                i++;
            }
        }
        if (!add_url(cfg, url, SCHED_ROLE_PREFILL, port, err, errlen)) {
            free(out);
            return false;
        }
    }
    *rest = out;
    *n_rest = n;
    return true;
}

/* --- after parsing ---------------------------------------------------------------------- */

/* "http://host:port[/]" -> host and port (vllm-router's worker URL; https is refused: the
 * upstream client speaks plain HTTP). */
static bool split_url(const char *url, char *host, size_t hcap, int *port, char *err,
                      size_t errlen)
{
    if (!strncmp(url, "https://", 8)) {
        snprintf(err, errlen, "'%s': https is not supported; use http://", url);
        return false;
    }
    const char *hp = !strncmp(url, "http://", 7) ? url + 7 : url;
    size_t l = strcspn(hp, "/");
    char buf[300];
    if (l == 0 || l >= sizeof buf) {
        snprintf(err, errlen, "'%s' is not a URL like http://host:port", url);
        return false;
    }
    memcpy(buf, hp, l);
    buf[l] = '\0';
    struct url u;
    const char *why;
    if (!url_parse(buf, 80, &u, &why)) {
        snprintf(err, errlen, "'%s': %s", url, why);
        return false;
    }
    snprintf(host, hcap, "%s", u.host);
    *port = u.port > 0 ? u.port : 80;
    return true;
}

static const char *role_label(enum sched_role r)
{
    return r == SCHED_ROLE_PREFILL ? "prefill" : r == SCHED_ROLE_DECODE ? "decode" : NULL;
}

/* One endpoint per URL and DP rank, named as vllm-router names its workers. */
static bool materialize_urls(struct router_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_urls; i++) {
        struct router_url *u = &cfg->urls[i];
        char host[256];
        int port;
        if (!split_url(u->url, host, sizeof host, &port, err, errlen))
            return false;
        struct sockaddr_storage ss;
        snprintf(u->host, sizeof u->host, "%s", host);
        u->port = port;
        u->needs_dns = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
                       uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0;
        size_t ul = strlen(u->url);
        while (ul > 0 && u->url[ul - 1] == '/')
            ul--;
        for (long long rank = 0; rank < cfg->dp_size; rank++) {
            if (cfg->n_endpoints == ROUTER_MAX_ENDPOINT_FLAGS) {
                snprintf(err, errlen, "at most %d workers (URLs x DP ranks)",
                         ROUTER_MAX_ENDPOINT_FLAGS);
                return false;
            }
            struct sched_endpoint_spec *e = &cfg->endpoints[cfg->n_endpoints];
            memset(e, 0, sizeof *e);
            e->name = cfg->dp_size > 1 ? xasprintf("%.*s@%lld", (int)ul, u->url, rank)
                                       : xstrndup(u->url, ul);
            e->host = xstrdup(host);
            e->port = port;
            e->role = u->role;
            if (role_label(u->role)) {
                e->labels[e->n_labels].key = xstrdup("llm-d.ai/role");
                e->labels[e->n_labels++].value = xstrdup(role_label(u->role));
            }
            if (cfg->dp_size > 1) {
                e->labels[e->n_labels].key = xstrdup(ROUTER_DP_RANK_LABEL);
                e->labels[e->n_labels++].value = xasprintf("%lld", rank);
            }
            cfg->n_endpoints++;
        }
    }
    return true;
}

static const char *picker_type(const char *policy)
{
    static const char *const map[][2] = {
        {"random", "random-picker"},
        {"round_robin", "round-robin-picker"},
        {"cache_aware", "cache-aware-picker"},
        {"power_of_two", "power-of-two-picker"},
        {"consistent_hash", "consistent-hash-picker"},
        {"rendezvous_hash", "rendezvous-hash-picker"},
    };
    for (size_t i = 0; policy && i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i][0], policy))
            return map[i][1];
    return NULL;
}

/* One policy as a picker plugin named `name` (cache_aware with its thresholds). */
static void picker_yaml(struct buf *b, const char *name, const char *policy,
                        const struct router_vr *vv)
{
    buf_printf(b, "- name: %s\n  type: %s\n", name, picker_type(policy));
    if (!strcmp(policy, "cache_aware"))
        buf_printf(b,
                   "  parameters: {cacheThreshold: %.17g, balanceAbsThreshold: %.17g, "
                   "balanceRelThreshold: %.17g}\n",
                   vv->cache_threshold, vv->balance_abs, vv->balance_rel);
}

/* The scheduler config vllm-router's policies stand for. Regular: one profile, the
 * policy's picker. P/D: every generation request has a prefill and a decode leg, each
 * pool picked by its own policy. */
static char *policy_config(bool pd, const char *policy, const struct router_vr *vv)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n");
    if (!pd) {
        picker_yaml(&b, "policy", policy, vv);
        buf_append_str(&b, "schedulingProfiles:\n- name: default\n"
                           "  plugins: [{pluginRef: policy}]\n");
        return buf_steal(&b, NULL);
    }
    buf_append_str(&b, "- type: prefill-filter\n- type: decode-filter\n");
    picker_yaml(&b, "prefill-policy", vv->prefill_policy ? vv->prefill_policy : policy, vv);
    picker_yaml(&b, "decode-policy", vv->decode_policy ? vv->decode_policy : policy, vv);
    buf_append_str(&b,
                   "- type: pd-profile-handler\n"
                   "  parameters: {threshold: 0}\n"
                   "schedulingProfiles:\n"
                   "- name: prefill\n"
                   "  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefill-policy}]\n"
                   "- name: decode\n"
                   "  plugins: [{pluginRef: decode-filter}, {pluginRef: decode-policy}]\n");
    return buf_steal(&b, NULL);
}

static bool check_policy(const char *flag, const char *v)
{
    if (!v || picker_type(v))
        return true;
    fprintf(stderr,
            "tandem router: %s: '%s' is not one of random, round_robin, cache_aware, "
            "power_of_two, consistent_hash, rendezvous_hash\n",
            flag, v);
    return false;
}

bool router_vr_apply(struct router_config *cfg, struct router_vr *vv, const struct flags_result *res,
                     int argc, char **argv)
{
    bool ok = false;
    char err[512];
    cfg->vllm_pd = vv->vllm_pd;
    if (vv->pd && vv->vllm_pd) {
        fprintf(stderr, "tandem router: Cannot enable both --pd-disaggregation and "
                        "--vllm-pd-disaggregation\n");
        goto out;
    }
    if (vv->dp_size < 1 || vv->dp_size > 64) {
        fprintf(stderr, "tandem router: --intra-node-data-parallel-size must be in [1, 64]\n");
        goto out;
    }
    cfg->dp_size = vv->dp_size;
    if (!materialize_urls(cfg, err, sizeof err)) {
        fprintf(stderr, "tandem router: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < res->n_ignored; i++)
        LOG_I("router", "ignoring vllm-router flag %s (no effect in tandem)", res->ignored[i]);
    if (!cfg->vr_mode) {
        ok = true;
        goto out;
    }
    /* tandem's own presets (llm-d, pd) stay usable next to vllm-router's flags. */
    bool tandem_preset =
        cfg->policy && !picker_type(cfg->policy) && sched_policy_config(cfg->policy);
    if ((!tandem_preset && !check_policy("--policy", cfg->policy)) ||
        !check_policy("--prefill-policy", vv->prefill_policy) ||
        !check_policy("--decode-policy", vv->decode_policy))
        goto out;
    if (vv->prometheus_port > 65535 || vv->request_timeout == 0 || vv->max_concurrent == 0 ||
        (vv->max_payload >= 0 && vv->max_payload < 1024) || vv->retry_max == 0 ||
        vv->cb_fail == 0 || vv->cb_succ == 0 || vv->cb_timeout == 0 || cfg->sd_port < 1 ||
        cfg->sd_port > 65535) {
        fprintf(stderr, "tandem router: --prometheus-port must be a port; --request-timeout-secs, "
                        "--max-concurrent-requests, --retry-max-retries, --cb-* must be > 0; "
                        "--max-payload-size >= 1024; --service-discovery-port a port\n");
        goto out;
    }
    bool pd = vv->pd || vv->vllm_pd;
    for (size_t i = 0; i < cfg->n_urls; i++)
        pd |= cfg->urls[i].role == SCHED_ROLE_PREFILL;
    if (pd)
        cfg->pd_router = true;
    /* vllm-router's defaults where tandem's differ. */
    if (!flags_peek(argc, argv, "--metrics-port"))
        cfg->metrics_port = vv->prometheus_port >= 0 ? (int)vv->prometheus_port : 29000;
    cfg->metrics_host = vv->prometheus_host;
    cfg->upstream_timeout_s = vv->request_timeout > 0 ? (double)vv->request_timeout : 1800;
    cfg->max_concurrent = vv->max_concurrent > 0 ? vv->max_concurrent : 32768;
    if (vv->max_payload > 0)
        cfg->max_body_bytes = vv->max_payload;
    long long attempts = vv->retry_max > 0 ? vv->retry_max : 5;
    if (!flags_peek(argc, argv, "--max-retries"))
        cfg->max_retries = vv->disable_retries ? 0 : attempts - 1;
    cfg->cb = (struct router_cb_config){
        .disabled = vv->disable_cb,
        .failure_threshold = (uint32_t)(vv->cb_fail > 0 ? vv->cb_fail : 10),
        .success_threshold = (uint32_t)(vv->cb_succ > 0 ? vv->cb_succ : 3),
        .timeout_ns = (uint64_t)(vv->cb_timeout > 0 ? vv->cb_timeout : 60) * 1000000000ull,
    };
    if (cfg->service_discovery &&
        !(cfg->n_selector || cfg->n_prefill_selector || cfg->n_decode_selector)) {
        fprintf(stderr, "tandem router: --service-discovery needs --selector (or "
                        "--prefill-selector/--decode-selector with P/D)\n");
        goto out;
    }
    if (!cfg->service_discovery && cfg->n_endpoints == 0 && !cfg->endpoints_file &&
        !cfg->pool_name) {
        fprintf(stderr, pd ? "tandem router: PD disaggregation mode requires --prefill and "
                             "--decode URLs, or --service-discovery with "
                             "--prefill-selector/--decode-selector\n"
                           : "tandem router: Regular mode requires --worker-urls when not "
                             "using service discovery\n");
        goto out;
    }
    if (!(vv->cache_threshold >= 0 && vv->cache_threshold <= 1) || !(vv->balance_abs >= 0) ||
        !(vv->balance_rel >= 1)) {
        fprintf(stderr, "tandem router: --cache-threshold must be in [0, 1], "
                        "--balance-abs-threshold >= 0, --balance-rel-threshold >= 1\n");
        goto out;
    }
    if (!cfg->config_file && !cfg->config_text && !tandem_preset) {
        cfg->vr_policy = cfg->policy ? cfg->policy : "cache_aware";
        cfg->owned_config_text = policy_config(pd, cfg->vr_policy, vv);
        cfg->config_text = cfg->owned_config_text;
        cfg->policy = NULL;
    }
    ok = true;
out:
    free(vv);
    return ok;
}

/* --- host names ------------------------------------------------------------------------- */

/* One lookup per URL whose host is a name; the timer starts the ones not resolved yet. */
struct router_resolver {
    struct router *r;
    uv_timer_t timer;
    struct lookup {
        struct router_resolver *rs;
        size_t url;     /* index into cfg.urls */
        bool busy, done, warned;
        uv_getaddrinfo_t req;
    } *lookups;
    size_t n;
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *lk = req->data;
    struct router *r = lk->rs->r;
    const struct router_url *u = &r->cfg.urls[lk->url];
    lk->busy = false;
    /* IPv4 first when there is one: engines usually listen on 0.0.0.0. */
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = res; a && status == 0; a = a->ai_next)
        if (!pick || (a->ai_family == AF_INET && pick->ai_family != AF_INET))
            pick = a;
    char ip[64] = "";
    if (pick)
        uv_ip_name(pick->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    if (r->stopping)
        return;
    if (!ip[0]) {
        if (!lk->warned)
            LOG_W("router", "worker %s: cannot resolve %s (%s): unhealthy until it resolves "
                            "(retrying every second)",
                  u->url, u->host, status ? uv_strerror(status) : "no address");
        lk->warned = true;
        return;
    }
    lk->done = true;
    /* The same workers, now at the address (same names: their state stays). */
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(sched_endpoint_host(eps[i]), u->host) != 0 ||
            sched_endpoint_port(eps[i]) != u->port)
            continue;
        struct sched_endpoint_spec e = {
            .name = sched_endpoint_name(eps[i]),
            .host = ip,
            .port = u->port,
            .role = sched_endpoint_role(eps[i]),
            .source = NULL,
        };
        const char *keys[] = {"llm-d.ai/role", ROUTER_DP_RANK_LABEL};
        for (size_t k = 0; k < 2; k++) {
            const char *v = sched_endpoint_label(eps[i], keys[k]);
            if (v) {
                e.labels[e.n_labels].key = (char *)keys[k];
                e.labels[e.n_labels++].value = (char *)v;
            }
        }
        sched_ds_upsert(r->ds, &e);
        LOG_I("router", "worker %s: %s is %s", e.name, u->host, ip);
    }
    sched_ds_release_list(eps, n);
}

static void on_resolve_tick(uv_timer_t *t)
{
    struct router_resolver *rs = t->data;
    struct router *r = rs->r;
    bool pending = false;
    for (size_t i = 0; i < rs->n; i++) {
        struct lookup *lk = &rs->lookups[i];
        if (lk->done)
            continue;
        pending = true;
        if (lk->busy)
            continue;
        char port[8];
        snprintf(port, sizeof port, "%d", r->cfg.urls[lk->url].port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        lk->req.data = lk;
        if (uv_getaddrinfo(t->loop, &lk->req, on_resolved, r->cfg.urls[lk->url].host, port,
                           &hints) == 0)
            lk->busy = true;
    }
    if (!pending)
        uv_timer_stop(t);
}

void router_vr_resolve_start(struct router *r, uv_loop_t *loop)
{
    size_t n = 0;
    for (size_t i = 0; i < r->cfg.n_urls; i++)
        n += r->cfg.urls[i].needs_dns;
    if (!n)
        return;
    struct router_resolver *rs = xcalloc(1, sizeof *rs);
    rs->r = r;
    rs->lookups = xcalloc(n, sizeof *rs->lookups);
    for (size_t i = 0; i < r->cfg.n_urls; i++)
        if (r->cfg.urls[i].needs_dns)
            rs->lookups[rs->n++] = (struct lookup){.rs = rs, .url = i};
    uv_timer_init(loop, &rs->timer);
    rs->timer.data = rs;
    uv_timer_start(&rs->timer, on_resolve_tick, 0, 1000);
    r->resolver = rs;
}

void router_vr_resolve_stop(struct router *r)
{
    if (!r->resolver)
        return;
    uv_timer_stop(&r->resolver->timer);
    uv_close((uv_handle_t *)&r->resolver->timer, NULL);
    for (size_t i = 0; i < r->resolver->n; i++)
        if (r->resolver->lookups[i].busy)
            uv_cancel((uv_req_t *)&r->resolver->lookups[i].req); /* its callback still runs */
}

void router_vr_resolve_free(struct router *r)
{
    if (!r->resolver)
        return;
    free(r->resolver->lookups);
    free(r->resolver);
    r->resolver = NULL;
}

/* --- requests ----------------------------------------------------------------------------- */

int router_endpoint_dp_rank(const struct sched_endpoint *e)
{
    const char *v = sched_endpoint_label(e, ROUTER_DP_RANK_LABEL);
    return v ? atoi(v) : -1;
}

void router_vr_log_pd_attempt(struct router *r, int attempt, const char *prefill,
                              const char *decode)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    if (r->cfg.vllm_pd)
        LOG_D("router", "vLLM PD retry attempt %d prefill=%s decode=%s", attempt, prefill,
              decode);
    else
        LOG_D("router", "PD retry attempt %d using prefill=%s decode=%s", attempt, prefill,
              decode);
}

const char *router_vr_route(const char *path)
{
    static const char *const known[] = {"/v1/completions", "/v1/chat/completions",
                                        "/v1/embeddings",  "/v1/responses",
                                        "/tokenize",       "/detokenize",
                                        "/v1/models",      "/generate"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(path, known[i]))
            return known[i];
    return "other";
}

/* --- metrics ------------------------------------------------------------------------------ */

static const double vr_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                    0.5,   1.0,   2.5,  5.0,   10.0, 15.0, 30.0,
                                    45.0,  60.0,  90.0, 120.0, 180.0, 240.0};

void router_vr_metrics_init(struct router *r)
{
    struct router_vr_metrics *m = &r->m.vr;
    struct metrics_registry *reg = r->m.reg;
    const char *route[] = {"route"}, *worker[] = {"worker"}, *et[] = {"error_type"};
    const char *re[] = {"route", "error_type"};
    const size_t nb = sizeof vr_buckets / sizeof *vr_buckets;
    m->requests = metrics_family_new(reg, METRICS_COUNTER, "vllm_router_requests_total",
                                     "Total number of requests by route and method", route, 1,
                                     NULL, 0);
    m->duration = metrics_family_new(reg, METRICS_HISTOGRAM,
                                     "vllm_router_request_duration_seconds",
                                     "Request duration in seconds by route", route, 1,
                                     vr_buckets, nb);
    m->errors = metrics_family_new(reg, METRICS_COUNTER, "vllm_router_request_errors_total",
                                   "Total number of request errors by route and error type", re,
                                   2, NULL, 0);
    m->retries = metrics_family_new(reg, METRICS_COUNTER, "vllm_router_retries_total",
                                    "Total number of request retries by route", route, 1, NULL,
                                    0);
    m->active_workers = metrics_series0(metrics_family_new(
        reg, METRICS_GAUGE, "vllm_router_active_workers", "Number of currently active workers",
        NULL, 0, NULL, 0));
    m->worker_health = metrics_family_new(reg, METRICS_GAUGE, "vllm_router_worker_health",
                                          "Worker health status (1=healthy, 0=unhealthy)",
                                          worker, 1, NULL, 0);
    m->worker_load = metrics_family_new(reg, METRICS_GAUGE, "vllm_router_worker_load",
                                        "Current load on each worker", worker, 1, NULL, 0);
    m->processed = metrics_family_new(reg, METRICS_COUNTER,
                                      "vllm_router_processed_requests_total",
                                      "Total requests processed by each worker", worker, 1, NULL,
                                      0);
    m->pd_requests = metrics_family_new(reg, METRICS_COUNTER, "vllm_router_pd_requests_total",
                                        "Total PD requests by route", route, 1, NULL, 0);
    m->pd_prefill = metrics_family_new(reg, METRICS_COUNTER,
                                       "vllm_router_pd_prefill_requests_total",
                                       "Total prefill requests per worker", worker, 1, NULL, 0);
    m->pd_decode = metrics_family_new(reg, METRICS_COUNTER,
                                      "vllm_router_pd_decode_requests_total",
                                      "Total decode requests per worker", worker, 1, NULL, 0);
    m->pd_duration = metrics_family_new(reg, METRICS_HISTOGRAM,
                                        "vllm_router_pd_request_duration_seconds",
                                        "PD request duration by route", route, 1, vr_buckets, nb);
    m->pd_errors = metrics_family_new(reg, METRICS_COUNTER, "vllm_router_pd_errors_total",
                                      "Total PD errors by error type", et, 1, NULL, 0);
    m->pd_prefill_errors = metrics_family_new(reg, METRICS_COUNTER,
                                              "vllm_router_pd_prefill_errors_total",
                                              "Total prefill server errors", worker, 1, NULL, 0);
    m->pd_decode_errors = metrics_family_new(reg, METRICS_COUNTER,
                                             "vllm_router_pd_decode_errors_total",
                                             "Total decode server errors", worker, 1, NULL, 0);
    m->cb_state = metrics_family_new(reg, METRICS_GAUGE, "vllm_router_cb_state",
                                     "Circuit breaker state per worker (0=closed, 1=open, "
                                     "2=half_open)",
                                     worker, 1, NULL, 0);
}

static void set_cb(void *ctx, const char *name, enum router_cb_state s)
{
    struct router *r = ctx;
    metrics_gauge_set(metrics_series_get(r->m.vr.cb_state, &name), (double)s);
}

void router_vr_metrics_collect(struct router *r)
{
    struct router_vr_metrics *m = &r->m.vr;
    if (!m->requests)
        return;
    router_breakers_tick(r); /* the page shows half-open as soon as it is due */
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    double active = 0;
    for (size_t i = 0; i < n; i++) {
        struct sched_endpoint_metrics em;
        sched_endpoint_snapshot(eps[i], &em);
        const char *name = sched_endpoint_name(eps[i]);
        bool up = em.healthy && !sched_endpoint_blocked(eps[i]);
        active += up;
        metrics_gauge_set(metrics_series_get(m->worker_health, &name), em.healthy ? 1 : 0);
        metrics_gauge_set(metrics_series_get(m->worker_load, &name),
                          (double)em.inflight_requests);
        /* Every worker has a breaker series, closed until told otherwise. */
        metrics_series_get(m->cb_state, &name);
    }
    sched_ds_release_list(eps, n);
    metrics_gauge_set(m->active_workers, active);
    router_breakers_each(r, set_cb, r);
}

/* The router's command line and its endpoint sources (--endpoint flags and an endpoints
 * file). Strings taken out of flag values are heap copies freed by router_config_free;
 * everything else points into argv. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/flags.h"
#include "base/log.h"
#include "base/yaml.h"
#include "net/url.h"
#include "router/router_internal.h"

static bool parse_role(const char *v, enum sched_role *out)
{
    if (!strcmp(v, "decode"))
        *out = SCHED_ROLE_DECODE;
    else if (!strcmp(v, "prefill"))
        *out = SCHED_ROLE_PREFILL;
    else if (!strcmp(v, "both"))
        *out = SCHED_ROLE_BOTH;
    else
        return false;
    return true;
}

static const char *role_name(enum sched_role r)
{
    return r == SCHED_ROLE_DECODE ? "decode" : r == SCHED_ROLE_PREFILL ? "prefill" : "both";
}

static bool add_label(struct sched_endpoint_spec *e, const char *k, size_t klen, const char *v,
                      size_t vlen, char *err, size_t errlen)
{
    if (e->n_labels == SCHED_MAX_LABELS) {
        snprintf(err, errlen, "at most %d labels per endpoint", SCHED_MAX_LABELS);
        return false;
    }
    e->labels[e->n_labels].key = xstrndup(k, klen);
    e->labels[e->n_labels].value = xstrndup(v, vlen);
    e->n_labels++;
    return true;
}

static bool set_address(struct sched_endpoint_spec *e, const char *addr, char *err, size_t errlen)
{
    struct url u;
    const char *why;
    if (!url_parse(addr, 0, &u, &why) || u.port <= 0) {
        snprintf(err, errlen, "address '%s': %s", addr, u.port <= 0 ? "needs host:port" : why);
        return false;
    }
    e->host = xstrdup(u.host);
    e->port = u.port;
    return true;
}

/* "name=decode-0,addr=127.0.0.1:8101,role=decode,label.k=v" */
static bool parse_endpoint_flag(const char *v, void *target, char *err, size_t errlen)
{
    struct router_config *cfg = target;
    if (cfg->n_endpoints == ROUTER_MAX_ENDPOINT_FLAGS) {
        snprintf(err, errlen, "at most %d endpoints on the command line",
                 ROUTER_MAX_ENDPOINT_FLAGS);
        return false;
    }
    struct sched_endpoint_spec *e = &cfg->endpoints[cfg->n_endpoints];
    memset(e, 0, sizeof *e);
    char *copy = xstrdup(v);
    bool ok = true;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv && ok;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(err, errlen, "'%s' is not key=value (name=, addr=, role=, label.K=)", kv);
            ok = false;
            break;
        }
        *eq = '\0';
        const char *val = eq + 1;
        if (!strcmp(kv, "name")) {
            free((char *)e->name);
            e->name = xstrdup(val);
        } else if (!strcmp(kv, "addr") || !strcmp(kv, "address")) {
            ok = set_address(e, val, err, errlen);
        } else if (!strcmp(kv, "role")) {
            if (!parse_role(val, &e->role)) {
                snprintf(err, errlen, "role '%s' is not decode, prefill or both", val);
                ok = false;
            } else {
                ok = add_label(e, "llm-d.ai/role", 13, val, strlen(val), err, errlen);
            }
        } else if (!strncmp(kv, "label.", 6) && kv[6]) {
            ok = add_label(e, kv + 6, strlen(kv + 6), val, strlen(val), err, errlen);
        } else {
            snprintf(err, errlen, "unknown key '%s' (name, addr, role, label.K)", kv);
            ok = false;
        }
    }
    free(copy);
    if (ok && !e->host) {
        snprintf(err, errlen, "'%s' has no addr=host:port", v);
        ok = false;
    }
    if (ok && !e->name)
        e->name = xasprintf("%s:%d", e->host, e->port);
    if (!ok) {
        free((char *)e->name);
        free((char *)e->host);
        for (size_t i = 0; i < e->n_labels; i++) {
            free(e->labels[i].key);
            free(e->labels[i].value);
        }
        memset(e, 0, sizeof *e);
        return false;
    }
    cfg->n_endpoints++;
    return true;
}

/* --prefill=URL / --decode URL (vllm-router's): workers named by their URL, made into
 * endpoints after parsing (vrouter.c), when the DP size is known. "--prefill URL [PORT]"
 * with a space is taken out of argv before (router_vr_split_prefill). */
static bool add_role_url(struct router_config *cfg, const char *url, enum sched_role role,
                         char *err, size_t errlen)
{
    if (cfg->n_urls == ROUTER_MAX_ENDPOINT_FLAGS) {
        snprintf(err, errlen, "at most %d worker URLs", ROUTER_MAX_ENDPOINT_FLAGS);
        return false;
    }
    cfg->urls[cfg->n_urls++] = (struct router_url){.url = url, .role = role};
    return true;
}

static bool parse_prefill_flag(const char *v, void *target, char *err, size_t errlen)
{
    return add_role_url(target, v, SCHED_ROLE_PREFILL, err, errlen);
}

static bool parse_decode_flag(const char *v, void *target, char *err, size_t errlen)
{
    return add_role_url(target, v, SCHED_ROLE_DECODE, err, errlen);
}

static bool parse_objective_flag(const char *v, void *target, char *err, size_t errlen)
{
    struct router_config *cfg = target;
    const char *eq = strrchr(v, '=');
    char *end = NULL;
    long prio = eq ? strtol(eq + 1, &end, 10) : 0;
    if (!eq || eq == v || !end || end == eq + 1 || *end || prio < -1000000 || prio > 1000000) {
        snprintf(err, errlen, "--inference-objective: want NAME=PRIORITY (an integer), got '%s'",
                 v);
        return false;
    }
    if (cfg->n_objectives >= sizeof cfg->objectives / sizeof *cfg->objectives) {
        snprintf(err, errlen, "--inference-objective: at most 32");
        return false;
    }
    cfg->objectives[cfg->n_objectives].name = xstrndup(v, (size_t)(eq - v));
    cfg->objectives[cfg->n_objectives++].priority = (int)prio;
    return true;
}

static void free_spec(struct sched_endpoint_spec *e)
{
    free((char *)e->name);
    free((char *)e->host);
    for (size_t i = 0; i < e->n_labels; i++) {
        free(e->labels[i].key);
        free(e->labels[i].value);
    }
    memset(e, 0, sizeof *e);
}

void router_config_free(struct router_config *cfg)
{
    for (size_t i = 0; i < cfg->n_endpoints; i++)
        free_spec(&cfg->endpoints[i]);
    cfg->n_endpoints = 0;
    for (size_t i = 0; i < cfg->n_objectives; i++)
        free(cfg->objectives[i].name);
    cfg->n_objectives = 0;
    free(cfg->owned_config_text);
    cfg->owned_config_text = NULL;
}

void router_common_flags(struct router_config *cfg, struct router_common *cv,
                         struct flag *out)
{
    cfg->host = "0.0.0.0";
    cfg->max_body_bytes = 32ll << 20;
    cfg->prefill_timeout_s = 120;
    cfg->upstream_read_timeout_s = 60;
    cfg->max_connections = ROUTER_DEFAULT_MAX_CONNECTIONS;
    cv->port = 8000;
    cv->v = 2;
    const struct flag rows[ROUTER_COMMON_FLAGS] = {
        {"--host", NULL, FLAG_STRING, &cfg->host, "ADDR", "listen address (0.0.0.0)", NULL},
        {"--port", NULL, FLAG_INT, &cv->port, "N", "OpenAI API port (8000)", NULL},
        {"--max-body-bytes", NULL, FLAG_INT, &cfg->max_body_bytes, "N",
         "largest request body (32 MiB, 413 past it)", NULL},
        {"--upstream-timeout", NULL, FLAG_DOUBLE, &cfg->upstream_timeout_s, "S",
         "whole upstream request, 0 = none (0)", NULL},
        {"--upstream-read-timeout", NULL, FLAG_DOUBLE, &cfg->upstream_read_timeout_s, "S",
         "longest silence from an engine: 504, or for a stream that has not started a "
         "retry elsewhere with the engine marked down (60; 0 = none)",
         NULL},
        {"--max-connections", NULL, FLAG_INT, &cfg->max_connections, "N",
         "client connections held at once; past it, 503 and close ("
         ROUTER_DEFAULT_MAX_CONNECTIONS_STR "; 0 = no bound)",
         NULL},
        {"--connector", NULL, FLAG_STRING, &cfg->connector_name, "NAME",
         "KV connector protocol for P/D (nixlv2)", NULL},
        {"--prefill-timeout", NULL, FLAG_DOUBLE, &cfg->prefill_timeout_s, "S",
         "P/D prefill leg timeout; past it, decode in place (120)", NULL},
        {"--kubeconfig", "-kubeconfig", FLAG_STRING, &cfg->kubeconfig, "FILE",
         "kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)", NULL},
        {"--k8s-watch-timeout", NULL, FLAG_DOUBLE, &cfg->k8s_watch_timeout_s, "S",
         "watch timeoutSeconds (default random 300-600)", NULL},
        {"--v", "-v", FLAG_INT, &cv->v, "N",
         "verbosity like llm-d: 2 info, 4 every scheduling decision as JSON (2)", NULL},
        {"--log-level", NULL, FLAG_STRING, &cv->log_level, "LEVEL",
         "error, warn, info, debug (overrides --v)", NULL},
        {"--log-json", NULL, FLAG_BOOL, &cv->log_json, NULL, "log JSON lines", NULL},
    };
    memcpy(out, rows, sizeof rows);
}

bool router_common_apply(const char *who, struct router_config *cfg,
                         const struct router_common *cv)
{
    if (cv->port < 0 || cv->port > 65535) {
        fprintf(stderr, "tandem %s: --port must be in [0, 65535]\n", who);
        return false;
    }
    if (cfg->max_body_bytes < 1024 || cfg->upstream_timeout_s < 0 ||
        !(cfg->upstream_read_timeout_s >= 0) || cfg->max_connections < 0 ||
        cfg->k8s_watch_timeout_s < 0) {
        fprintf(stderr, "tandem %s: --max-body-bytes >= 1024; --upstream-timeout, "
                        "--upstream-read-timeout, --max-connections, --k8s-watch-timeout "
                        ">= 0\n",
                who);
        return false;
    }
    if (!(cfg->prefill_timeout_s > 0)) {
        fprintf(stderr, "tandem %s: --prefill-timeout must be > 0\n", who);
        return false;
    }
    cfg->connector = pd_connector_find(cfg->connector_name);
    if (!cfg->connector) {
        fprintf(stderr, "tandem %s: --connector: '%s' is not a known connector (nixlv2)\n", who,
                cfg->connector_name);
        return false;
    }
    if (cfg->pool_name && !router_pool_group_ok(cfg->pool_group)) {
        fprintf(stderr, "tandem %s: the pool group '%s' is not inference.networking.k8s.io or "
                        "inference.networking.x-k8s.io\n",
                who, cfg->pool_group);
        return false;
    }
    if ((cfg->pool_namespace || cfg->pool_group) && !cfg->pool_name) {
        fprintf(stderr, "tandem %s: a pool namespace or group needs the pool's name\n", who);
        return false;
    }
    cfg->port = (int)cv->port;
    cfg->verbosity = (int)cv->v;
    return router_config_logging(who, cv->v, cv->log_level, cv->log_json);
}

int router_config_parse(struct router_config *cfg, int argc, char **argv)
{
    return router_config_parse_as(cfg, argc, argv, false);
}

int router_config_parse_as(struct router_config *cfg, int argc, char **argv, bool as_vllm_router)
{
    memset(cfg, 0, sizeof *cfg);
    struct router_common cv = {0};
    long long metrics_port = 9090;
    double refresh_ms = 50, stale_ms = 2000;
    const char *pd_mode = NULL, *xp_mode = NULL;
    long long grpc_port = 0, grpc_health_port = 9003;
    bool help_plugins = false;
    cfg->secure_serving = true;
    cfg->workers = 0;
    cfg->max_retries = 2;
    cfg->connect_timeout_s = 5;
    cfg->read_timeout_s = 30;
    cfg->idle_timeout_s = 75;

    const struct flag own[] = {
        {"--metrics-port", NULL, FLAG_INT, &metrics_port, "N",
         "Prometheus /metrics and /debug/* port (9090; 0 = main port only)", NULL},
        {"--endpoint", NULL, FLAG_FUNC, cfg, "SPEC",
         "name=NAME,addr=HOST:PORT[,role=decode|prefill|both][,label.K=V] (repeatable)",
         parse_endpoint_flag},
        {"--endpoints-file", NULL, FLAG_STRING, &cfg->endpoints_file, "FILE",
         "YAML list of endpoints, re-read when it changes", NULL},
        {"--config-file", NULL, FLAG_STRING, &cfg->config_file, "FILE",
         "llm-d EndpointPickerConfig (YAML)", NULL},
        {"--config-text", NULL, FLAG_STRING, &cfg->config_text, "YAML", "the same, inline", NULL},
        {"--policy", NULL, FLAG_STRING, &cfg->policy, "NAME",
         "preset: llm-d, pd, round_robin, random, consistent_hash, power_of_two, cache_aware",
         NULL},
        {"--refresh-metrics-interval", NULL, FLAG_DOUBLE, &refresh_ms, "MS",
         "engine metrics scrape interval (50)", NULL},
        {"--metrics-staleness-threshold", NULL, FLAG_DOUBLE, &stale_ms, "MS",
         "scraped metrics older than this are stale (2000)", NULL},
        {"--raw-scraped-load", NULL, FLAG_BOOL, &cfg->raw_scraped_load, NULL,
         "queue/KV scorers rank by scraped values only, as llm-d (default: plus what was sent "
         "since the scrape)",
         NULL},
        {"--max-retries", NULL, FLAG_INT, &cfg->max_retries, "N",
         "retries on another endpoint before the first byte (2)", NULL},
        {"--max-inflight-per-endpoint", NULL, FLAG_INT, &cfg->max_inflight, "N",
         "requests in flight per endpoint before 429 (0 = no bound)", NULL},
        {"--workers", NULL, FLAG_INT, &cfg->workers, "N",
         "worker threads (default: number of cores)", NULL},
        {"--upstream-connect-timeout", NULL, FLAG_DOUBLE, &cfg->connect_timeout_s, "S",
         "connect timeout to an endpoint (5)", NULL},
        {"--enable-debug-endpoints", NULL, FLAG_BOOL, &cfg->debug_endpoints, NULL,
         "also serve /debug/endpoints and /debug/schedule on the API port (they are always on "
         "the metrics port)",
         NULL},
        {"--read-timeout", NULL, FLAG_DOUBLE, &cfg->read_timeout_s, "S",
         "time to receive a client request (30)", NULL},
        {"--idle-timeout", NULL, FLAG_DOUBLE, &cfg->idle_timeout_s, "S",
         "keep-alive idle timeout (75)", NULL},
        {"--pd-mode", NULL, FLAG_STRING, &pd_mode, "MODE",
         "sidecar (add x-prefiller-host-port for the decode pod's sidecar; default) or router (run "
         "both legs here)",
         NULL},
        {"--prefill", NULL, FLAG_FUNC, cfg, "URL",
         "a prefill endpoint (repeatable; implies --pd-mode router)", parse_prefill_flag},
        {"--decode", NULL, FLAG_FUNC, cfg, "URL", "a decode endpoint (repeatable)",
         parse_decode_flag},
        {"--pool-name", "-poolName", FLAG_STRING, &cfg->pool_name, "NAME",
         "InferencePool whose Ready pods are the endpoints (Kubernetes; GAIE's EPP flag)", NULL},
        {"--pool-namespace", "-poolNamespace", FLAG_STRING, &cfg->pool_namespace, "NS",
         "its namespace (default: the kubeconfig's, or the pod's in a cluster)", NULL},
        {"--pool-group", "-poolGroup", FLAG_STRING, &cfg->pool_group, "GROUP",
         "inference.networking.k8s.io (v1, default) or inference.networking.x-k8s.io "
         "(v1alpha2)",
         NULL},
        {"--grpc-port", "-grpcPort", FLAG_INT, &grpc_port, "N",
         "Envoy ext_proc server port, the endpoint picker of a GAIE gateway (GAIE: 9002; "
         "0 = off, the default)",
         NULL},
        {"--grpc-health-port", "-grpcHealthPort", FLAG_INT, &grpc_health_port, "N",
         "grpc.health.v1 port (9003)", NULL},
        {"--secure-serving", "-secureServing", FLAG_BOOL, &cfg->secure_serving, NULL,
         "ext_proc over TLS, self-signed unless --cert-path (default true)", NULL},
        {"--cert-path", "-certPath", FLAG_STRING, &cfg->cert_path, "DIR",
         "tls.crt and tls.key for ext_proc", NULL},
        {"--inference-objective", NULL, FLAG_FUNC, cfg, "NAME=PRIORITY",
         "priority of requests whose x-gateway-inference-objective header is NAME (an "
         "InferenceObjective's spec.priority; < 0 = sheddable by the config's admitters and "
         "saturation detector; repeatable; others 0)",
         parse_objective_flag},
        {"--help-plugins", NULL, FLAG_BOOL, &help_plugins, NULL,
         "list every EndpointPickerConfig plugin type with its kind and parameters, and exit",
         NULL},
        {"--extproc-body-mode", NULL, FLAG_STRING, &xp_mode, "MODE",
         "body mode when the gateway sends no protocol_config: full-duplex (default) or "
         "buffered",
         NULL},
    };
    const size_t n_own = sizeof own / sizeof own[0];
    struct flag flags[ROUTER_COMMON_FLAGS + sizeof own / sizeof own[0] + ROUTER_VR_FLAGS];
    router_common_flags(cfg, &cv, flags);
    memcpy(flags + ROUTER_COMMON_FLAGS, own, sizeof own);
    struct router_vr *vv;
    struct flag *vr_rows = flags + ROUTER_COMMON_FLAGS + n_own;
    size_t n_vr = router_vr_flags(cfg, &vv, vr_rows);
    const size_t n_flags = ROUTER_COMMON_FLAGS + n_own + n_vr;
    cfg->vr_mode = as_vllm_router || router_vr_wanted(vr_rows, n_vr, argc, argv);
    cfg->dp_size = 1;
    if (as_vllm_router)
        cv.port = 30000; /* vllm-router's */
    struct flags_result res;
    char err[512];
    char **args;
    int n_args;
    if (!router_vr_split_prefill(cfg, argc, argv, &args, &n_args, err, sizeof err)) {
        fprintf(stderr, "tandem router: %s\n", err);
        free(vv);
        return -1;
    }
    bool parsed = flags_parse(flags, n_flags, n_args, args, &res, err, sizeof err);
    free(args);
    if (!parsed) {
        fprintf(stderr, "tandem router: %s\n", err);
        free(vv);
        return -1;
    }
    if (res.help) {
        free(vv);
        flags_print_help(stdout, as_vllm_router ? "vllm-router [flags] (tandem router)"
                                                : "tandem router [flags]",
                         "OpenAI-compatible gateway and endpoint picker with llm-d's scheduling\n"
                         "semantics: filters, scorers (prefix cache, queue, KV usage, ...),\n"
                         "pickers and profile handlers from an llm-d EndpointPickerConfig.",
                         flags, n_flags);
        return 1;
    }
    if (help_plugins) {
        free(vv);
        sched_help_plugins(stdout);
        return 1;
    }
    if (res.n_positional) {
        fprintf(stderr, "tandem router: unexpected argument '%s'\n", res.positional[0]);
        free(vv);
        return -1;
    }
    if (!router_common_apply("router", cfg, &cv)) {
        free(vv);
        return -1;
    }
    if (metrics_port < 0 || metrics_port > 65535) {
        fprintf(stderr, "tandem router: --metrics-port must be in [0, 65535]\n");
        free(vv);
        return -1;
    }
    cfg->metrics_port = (int)metrics_port;
    if (!!cfg->config_file + !!cfg->config_text + !!cfg->policy > 1) {
        fprintf(stderr, "tandem router: give one of --config-file, --config-text, --policy\n");
        free(vv);
        return -1;
    }
    bool explicit_pd_mode = pd_mode != NULL;
    if (!router_vr_apply(cfg, vv, &res, argc, argv))
        return -1;
    for (size_t i = 0; i < cfg->n_urls; i++) {
        cfg->n_prefill_flags += cfg->urls[i].role == SCHED_ROLE_PREFILL;
        cfg->n_decode_flags += cfg->urls[i].role == SCHED_ROLE_DECODE;
    }
    if (!(refresh_ms > 0) || !(stale_ms > 0) || cfg->max_retries < 0 || cfg->workers < 0 ||
        cfg->max_inflight < 0 || cfg->workers > 64 || !(cfg->connect_timeout_s > 0) ||
        !(cfg->read_timeout_s > 0) || !(cfg->idle_timeout_s > 0)) {
        fprintf(stderr, "tandem router: intervals and timeouts must be > 0, --max-retries >= 0, "
                        "--workers in [0, 64], --max-inflight-per-endpoint >= 0\n");
        return -1;
    }
    if (cfg->n_endpoints == 0 && !cfg->endpoints_file && !cfg->pool_name &&
        !cfg->service_discovery) {
        fprintf(stderr, "tandem router: no endpoints: give --pool-name, --endpoint or "
                        "--endpoints-file\n");
        return -1;
    }
    if (pd_mode && strcmp(pd_mode, "sidecar") && strcmp(pd_mode, "router")) {
        fprintf(stderr, "tandem router: --pd-mode: '%s' is not sidecar or router\n", pd_mode);
        return -1;
    }
    if (explicit_pd_mode)
        cfg->pd_router = !strcmp(pd_mode, "router");
    else if (cfg->n_prefill_flags > 0)
        cfg->pd_router = true;
    if (grpc_port < 0 || grpc_port > 65535 || grpc_health_port < -1 ||
        grpc_health_port > 65535) {
        fprintf(stderr, "tandem router: --grpc-port/--grpc-health-port must be ports\n");
        return -1;
    }
    if (xp_mode && strcmp(xp_mode, "full-duplex") && strcmp(xp_mode, "buffered")) {
        fprintf(stderr, "tandem router: --extproc-body-mode: '%s' is not full-duplex or "
                        "buffered\n", xp_mode);
        return -1;
    }
    cfg->grpc_port = (int)grpc_port;
    cfg->grpc_health_port = (int)grpc_health_port;
    cfg->extproc_mode = !xp_mode ? 0 : !strcmp(xp_mode, "buffered") ? 2 : 1;
    cfg->refresh_metrics_s = refresh_ms / 1e3;
    cfg->staleness_s = stale_ms / 1e3;
    return 0;
}

bool router_pool_group_ok(const char *group)
{
    return !group || !*group || !strcmp(group, "inference.networking.k8s.io") ||
           !strcmp(group, "inference.networking.x-k8s.io");
}

bool router_config_logging(const char *who, long long v, const char *log_level, bool log_json)
{
    enum log_level lvl = v >= 4 ? LOG_DEBUG : v >= 2 ? LOG_INFO : v == 1 ? LOG_WARN : LOG_ERROR;
    if (log_level && !log_parse_level(log_level, &lvl)) {
        fprintf(stderr, "tandem %s: --log-level: '%s' is not error, warn, info or debug\n", who,
                log_level);
        return false;
    }
    log_set_level(lvl);
    log_set_json(log_json);
    return true;
}

/* --- endpoints file ----------------------------------------------------------------- */

static bool spec_from_json(const json_t *item, size_t idx, const char *path,
                           struct sched_endpoint_spec *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    char why[256] = "";
    const json_t *name = json_object_get(item, "name");
    const json_t *addr = json_object_get(item, "address");
    const json_t *host = json_object_get(item, "host");
    const json_t *port = json_object_get(item, "port");
    const json_t *role = json_object_get(item, "role");
    const json_t *labels = json_object_get(item, "labels");
    if (!json_is_object(item)) {
        snprintf(why, sizeof why, "must be a mapping");
    } else if (!json_is_string(name)) {
        snprintf(why, sizeof why, "name: required string");
    } else if (addr && !json_is_string(addr)) {
        snprintf(why, sizeof why, "address: must be a string host:port");
    } else if (!addr && (!json_is_string(host) || !json_is_integer(port))) {
        snprintf(why, sizeof why, "address (host:port) or host + port required");
    } else if (role && (!json_is_string(role) || !parse_role(json_string_value(role), &e->role))) {
        snprintf(why, sizeof why, "role: must be decode, prefill or both");
    } else if (labels && !json_is_object(labels)) {
        snprintf(why, sizeof why, "labels: must be a mapping");
    }
    if (!why[0]) {
        e->name = xstrdup(json_string_value(name));
        char buf[300];
        if (addr)
            snprintf(buf, sizeof buf, "%s", json_string_value(addr));
        else
            snprintf(buf, sizeof buf, "%s:%lld", json_string_value(host),
                     (long long)json_integer_value(port));
        char aerr[256];
        if (!set_address(e, buf, aerr, sizeof aerr))
            snprintf(why, sizeof why, "%s", aerr);
    }
    if (!why[0] && role)
        add_label(e, "llm-d.ai/role", 13, role_name(e->role), strlen(role_name(e->role)), why,
                  sizeof why);
    if (!why[0] && labels) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)labels, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(why, sizeof why, "labels.%s: must be a string", k);
                break;
            }
            if (!add_label(e, k, strlen(k), json_string_value(v), json_string_length(v), why,
                           sizeof why))
                break;
        }
    }
    if (why[0]) {
        snprintf(err, errlen, "%s: endpoint %zu: %s", path, idx, why);
        free_spec(e);
        return false;
    }
    return true;
}

bool router_load_endpoints_file(struct router *r, const char *path, char *err, size_t errlen)
{
    struct errinfo ye;
    json_t *doc = yaml_load_file(path, &ye);
    if (!doc) {
        snprintf(err, errlen, "%s", ye.msg);
        return false;
    }
    if (json_is_object(doc) && json_is_array(json_object_get(doc, "endpoints"))) {
        json_t *list = json_incref(json_object_get(doc, "endpoints"));
        json_decref(doc);
        doc = list;
    }
    if (!json_is_array(doc)) {
        snprintf(err, errlen, "%s: expected a list of endpoints (or endpoints: [...])", path);
        json_decref(doc);
        return false;
    }
    size_t n = json_array_size(doc);
    struct sched_endpoint_spec *specs = xcalloc(n ? n : 1, sizeof *specs);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = spec_from_json(json_array_get(doc, i), i, path, &specs[i], err, errlen);
    if (ok) {
        /* Replace: remove endpoints that came from this file and are gone, upsert the
         * rest. Endpoints from --endpoint flags are kept. */
        char *source = xasprintf("file:%s", path);
        struct sched_endpoint **cur;
        size_t nc = sched_ds_list(r->ds, &cur);
        for (size_t i = 0; i < nc; i++) {
            const char *name = sched_endpoint_name(cur[i]);
            bool keep = strcmp(sched_endpoint_source(cur[i]), source) != 0;
            for (size_t j = 0; j < n && !keep; j++)
                keep = !strcmp(specs[j].name, name);
            if (!keep) {
                LOG_I("router", "endpoint %s removed (%s)", name, path);
                sched_ds_remove(r->ds, name);
            }
        }
        sched_ds_release_list(cur, nc);
        for (size_t i = 0; i < n; i++) {
            specs[i].source = source;
            sched_ds_upsert(r->ds, &specs[i]);
        }
        free(source);
        LOG_I("router", "loaded %zu endpoints from %s", n, path);
    }
    for (size_t i = 0; i < n; i++)
        free_spec(&specs[i]);
    free(specs);
    json_decref(doc);
    return ok;
}

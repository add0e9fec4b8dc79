/* Internal state of the router role, shared by its files:
 *   config.c   command line, endpoints from flags and files
 *   main.c     process: worker threads (one libuv loop + reuseport listener each), the
 *              control loop (scraper, metrics port, endpoints file watch), shutdown
 *   proxy.c    one client request: parse once, schedule, forward, stream back, retry
 *   admin.c    /health, /ready, /metrics, /debug/endpoints, /debug/schedule, /v1/models
 *   scrape.c   engine metrics scraper (vLLM names) and health
 *
 * Sharing: the datastore, the scheduler and the metrics registry are shared by every
 * thread (they are thread-safe); everything else belongs to one loop. */
#ifndef TANDEM_ROUTER_ROUTER_INTERNAL_H
#define TANDEM_ROUTER_ROUTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "base/flags.h"
#include "base/metrics.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "pd/pd.h"
#include "sched/sched.h"

#define ROUTER_MAX_ENDPOINT_FLAGS 256
/* The label a DP worker (URL@rank) carries: its rank, sent as X-data-parallel-rank. */
#define ROUTER_DP_RANK_LABEL "vllm-router/dp-rank"
#define ROUTER_DEFAULT_MAX_CONNECTIONS 8192
#define ROUTER_DEFAULT_MAX_CONNECTIONS_STR "8192"

/* A worker given by URL (--worker-urls, --prefill, --decode: vllm-router's flags). */
struct router_url {
    const char *url;      /* as given (points into argv) */
    enum sched_role role; /* NONE for --worker-urls */
    int bootstrap_port;   /* --prefill URL PORT, 0 = none */
    /* Its host is a name (a Kubernetes Service): resolved on the control loop. */
    char host[256];
    int port;
    bool needs_dns;
};

/* vllm-router's circuit breaker thresholds (--cb-*). */
struct router_cb_config {
    bool disabled;
    uint32_t failure_threshold; /* consecutive failures that open it (10) */
    uint32_t success_threshold; /* consecutive half-open successes that close it (3) */
    uint64_t timeout_ns;        /* open -> half-open after this (60 s) */
};

enum router_cb_state { ROUTER_CB_CLOSED = 0, ROUTER_CB_OPEN = 1, ROUTER_CB_HALF_OPEN = 2 };

/* One worker's breaker (breaker.c). */
struct router_cb {
    enum router_cb_state state;
    uint32_t failures, successes; /* consecutive */
    uint64_t changed_ns;          /* monotonic time of the last state change */
};

struct router_config {
    const char *host;
    int port;
    int metrics_port; /* 0 = serve /metrics on the main port only */
    long long workers;
    struct sched_endpoint_spec endpoints[ROUTER_MAX_ENDPOINT_FLAGS];
    size_t n_endpoints;
    const char *endpoints_file;
    const char *config_file;
    const char *config_text;
    const char *policy;
    /* --inference-objective NAME=PRIORITY: the priority of requests whose
     * x-gateway-inference-objective header names NAME (InferenceObjective's spec.priority;
     * < 0 = sheddable). Unlisted or absent: 0. */
    struct router_objective {
        char *name;
        int priority;
    } objectives[32];
    size_t n_objectives;
    double refresh_metrics_s;
    double staleness_s;
    bool raw_scraped_load; /* scorers rank by the scraped values only (no dispatch estimate) */
    long long max_body_bytes;
    long long max_retries;
    long long max_inflight; /* per endpoint, 0 = unbounded: past it, 429 */
    double connect_timeout_s;
    double read_timeout_s;
    double idle_timeout_s;
    double upstream_timeout_s; /* whole upstream call, 0 = none */
    double upstream_read_timeout_s; /* longest silence from upstream (60), 0 = none */
    long long max_connections;      /* client connections, whole process (0 = none) */
    bool debug_endpoints;           /* the debug routes also on the API port */
    double prefill_timeout_s;  /* the P/D prefill leg (120): past it, decode in place */
    int verbosity;             /* --v: 4 logs every decision */
    /* P/D */
    bool pd_router;                      /* --pd-mode router: run both legs here */
    const char *connector_name;          /* --connector (nixlv2) */
    const struct pd_connector *connector;
    int n_prefill_flags, n_decode_flags; /* --prefill / --decode given */
    /* tandem sidecar (the same process shape, one engine behind it) */
    bool sidecar;
    bool ssrf;                  /* --enable-ssrf-protection (default on) */
    const char *allowed_prefillers; /* --allowed-prefillers host[:port],... */
    const char *ec_connector;       /* sidecar --ec-connector: "" or ec-example (E/P/D) */
    bool prefiller_sampling;    /* --enable-prefiller-sampling */
    long long sidecar_dp_size;  /* --data-parallel-size: engines "engine", "engine-dp1", ... */
    char *storage;             /* owns strings parsed out of --endpoint values */
    /* Kubernetes: endpoints (router) or allowed prefillers (sidecar) from an InferencePool */
    const char *pool_name;      /* --pool-name / --inference-pool-name */
    const char *pool_namespace; /* default: the kubeconfig's or in-cluster namespace */
    const char *pool_group;     /* inference.networking.k8s.io (v1) or .x-k8s.io (v1alpha2) */
    const char *kubeconfig;     /* --kubeconfig; else $KUBECONFIG, in-cluster, ~/.kube/config */
    double k8s_watch_timeout_s; /* watch timeoutSeconds (0: random 300-600; tests set it) */
    /* Envoy ext_proc (the router as a GAIE gateway's endpoint picker) */
    int grpc_port;              /* --grpc-port, 0 = off */
    int grpc_health_port;       /* --grpc-health-port (9003 with --grpc-port) */
    bool secure_serving;        /* --secure-serving (true: TLS, self-signed by default) */
    const char *cert_path;      /* --cert-path DIR with tls.crt and tls.key */
    int extproc_mode;           /* enum extproc_body_mode: --extproc-body-mode */
    /* vllm-router compatibility (vrouter.c) */
    bool vr_mode;               /* a vllm-router-only flag, or invoked as vllm-router */
    bool vllm_pd;               /* --vllm-pd-disaggregation (its log line's wording) */
    struct router_url urls[ROUTER_MAX_ENDPOINT_FLAGS];
    size_t n_urls;
    long long dp_size;          /* --intra-node-data-parallel-size: ranks per URL */
    const char *metrics_host;   /* --prometheus-host (default: --host) */
    long long max_concurrent;   /* --max-concurrent-requests (0 = none): past it, 429 */
    const char *api_key;        /* --api-key: Authorization: Bearer to workers */
    struct router_cb_config cb;
    char *owned_config_text;    /* the config --policy stands for (freed with the config) */
    const char *vr_policy;      /* that --policy, for the start-up line */
    /* --service-discovery: pods by label selector (K=V strings point into argv) */
    bool service_discovery;
    const char *selector[16], *prefill_selector[16], *decode_selector[16];
    size_t n_selector, n_prefill_selector, n_decode_selector;
    const char *sd_namespace;
    long long sd_port;
};

enum router_pool_state {
    ROUTER_POOL_UNKNOWN = 0, /* not read from the API server yet */
    ROUTER_POOL_OK,
    ROUTER_POOL_MISSING, /* listed: it does not exist */
    ROUTER_POOL_DELETED,
};

/* vllm-router's own metric families (vrouter.c), on the same registry. */
struct router_vr_metrics {
    struct metrics_family *requests, *duration, *errors, *retries; /* {route}... */
    struct metrics_series *active_workers;
    struct metrics_family *worker_health, *worker_load, *processed; /* {worker} */
    struct metrics_family *pd_requests, *pd_duration;               /* {route} */
    struct metrics_family *pd_prefill, *pd_decode;                  /* {worker} */
    struct metrics_family *pd_errors;                               /* {error_type} */
    struct metrics_family *pd_prefill_errors, *pd_decode_errors;    /* {worker} */
    struct metrics_family *cb_state;                                /* {worker} */
};

/* Counters and histograms (all thread-safe series). */
struct router_metrics {
    struct metrics_registry *reg;
    struct metrics_family *requests;        /* {model,code} */
    struct metrics_series *duration, *ttft, *sched_duration;
    struct metrics_family *upstream_errors; /* {endpoint,kind} */
    struct metrics_series *retries;
    struct metrics_family *pd_decisions;    /* {decision} */
    struct metrics_family *disagg_decisions; /* llm-d's {model_name,decision_type} */
    struct metrics_family *token_producer;  /* {result}: cached, tokenized, failed */
    struct metrics_family *ep_queue, *ep_running, *ep_kv, *ep_inflight; /* {endpoint} */
    struct metrics_series *prefix_size;
    struct metrics_family *plugin_duration; /* {plugin} */
    struct metrics_series *prefix_hit_ratio;
    struct metrics_family *pd_fallbacks; /* {reason} */
    /* precise-prefix-cache-scorer with enableMetrics (llm-d's kvcache_index_*): counters
     * follow the scheduler's totals at each collect (kv_mu guards the last totals) */
    bool kv_index;
    pthread_mutex_t kv_mu;
    struct sched_kv_index_stats kv_last;
    struct metrics_series *kv_admissions, *kv_evictions, *kv_lookups, *kv_hits, *kv_blocks;
    /* tandem sidecar's own (the router families above then live in hidden_reg) */
    struct metrics_registry *hidden_reg;
    struct metrics_family *sc_requests;  /* {path,pd} */
    struct metrics_family *sc_fallbacks; /* {reason} */
    struct metrics_series *sc_prefill_duration, *sc_true_ttft;
    struct metrics_family *sc_encoder_items;     /* {result}: E/P/D items sent to encoders */
    struct metrics_series *sc_encode_duration;   /* the whole encode stage */
    _Atomic uint64_t prefix_blocks, prefix_hits; /* of picked endpoints, since start */
    /* discovery */
    struct metrics_family *endpoints_by_role;  /* {role} */
    /* per role, for autoscalers (docs/modelservice.md): */
    struct metrics_family *role_requests;      /* {role}: scheduled to a pod of the role */
    struct metrics_family *role_queue, *role_running, *role_inflight; /* {role} */
    struct metrics_series *discovery_restarts; /* watch restarts and relists */
    struct metrics_family *discovery_errors;   /* {kind} */
    /* GAIE's EPP names, for dashboards built on them */
    struct metrics_family *gaie_requests;  /* inference_objective_request_total{model_name,target_model_name} */
    struct metrics_family *gaie_errors;    /* inference_objective_request_error_total{model_name,error_code} */
    struct metrics_family *gaie_ready_pods; /* inference_pool_ready_pods{name} */
    struct router_vr_metrics vr;
};

/* Every worker's circuit breaker, by endpoint name (any thread). */
struct router_breakers {
    pthread_mutex_t lock;
    struct router_breaker_entry {
        char *name;
        struct router_cb cb;
    } *items;
    size_t n, cap;
};

/* scrape.c's state (control loop only). */
struct router_scraper {
    struct scrape **busy; /* scrapes in flight, one per endpoint at most: freed on stop */
    size_t n_busy, cap_busy;
    uint64_t warned[1024]; /* name hashes of endpoints already warned about */
    size_t n_warned;
    uint64_t file_checked_ns; /* --endpoints-file: last stat */
    struct timespec file_mtime;
};

struct router {
    struct router_config cfg;
    struct sched_datastore *ds;
    struct sched *sched;
    struct router_metrics m;
    uv_loop_t control; /* scraper, metrics port, signals */
    struct http_server *metrics_server;
    struct router_worker *workers;
    size_t n_workers;
    uv_timer_t scrape_timer;
    struct router_scraper scraper;
    struct http_client *scrape_client;
    _Atomic int ready; /* config loaded and at least one healthy endpoint */
    struct http_conn_limit conn_limit; /* --max-connections, shared by the workers */
    struct router_discovery *discovery; /* --pool-name: on the control loop */
    struct router_sd *sd;               /* --service-discovery: on the control loop */
    struct extproc_server *extproc;     /* --grpc-port */
    _Atomic int pool_state;             /* enum router_pool_state */
    _Atomic bool ssrf_unconfigured_logged;
    _Atomic bool ec_unconfigured_logged; /* sidecar: encoder header without --ec-connector */
    struct router_breakers breakers;
    struct router_resolver *resolver; /* URL workers' host names, on the control loop */
    _Atomic long long in_flight; /* proxied requests, for --max-concurrent-requests */
    bool stopping;
};

/* One worker thread: its own loop, listener (reuseport) and upstream pools. */
struct router_worker {
    struct router *r;
    size_t index;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    struct http_server *server;
    struct http_client *client;
    /* tandem sidecar --data-parallel-size N: rank i's own listener on --port + i (i >= 1),
     * as llm-d's sidecar has them; ranks[i - 1] is its handler context */
    struct sidecar_rank {
        struct router_worker *w;
        int rank;
        struct http_server *server;
    } ranks[63];
    size_t n_ranks;
};

/* config.c */
/* The flags the router and the sidecar share, as table rows written once; values that
 * need checking after parsing land in struct router_common. */
#define ROUTER_COMMON_FLAGS 13
struct router_common {
    long long port, v;
    const char *log_level;
    bool log_json;
};
/* Sets the shared defaults in cfg and writes the shared rows into out (which has room
 * for ROUTER_COMMON_FLAGS rows). */
void router_common_flags(struct router_config *cfg, struct router_common *cv,
                         struct flag *out);
/* Checks the shared values (naming `who` in errors) and applies them (port, logging,
 * connector). */
bool router_common_apply(const char *who, struct router_config *cfg,
                         const struct router_common *cv);
int router_config_parse(struct router_config *cfg, int argc, char **argv);
/* The same; as_vllm_router: invoked as `vllm-router` (its defaults: port 30000, policy
 * cache_aware, metrics on 29000). */
int router_config_parse_as(struct router_config *cfg, int argc, char **argv, bool as_vllm_router);
/* --v / --log-level / --log-json, the same for both roles; false after printing why. */
bool router_config_logging(const char *who, long long v, const char *log_level, bool log_json);
/* NULL, "", or one of the two InferencePool groups. */
bool router_pool_group_ok(const char *group);
/* sidecar.c: `tandem sidecar` flags into the same config (one "engine" endpoint). */
int sidecar_config_parse(struct router_config *cfg, int argc, char **argv);

/* main.c: runs a parsed configuration (router or sidecar) until a signal. */
int router_run(struct router *r);
void router_config_free(struct router_config *cfg);
/* Loads an endpoints file (YAML list of {name, address|host+port, role, labels}) into the
 * datastore, replacing what came from it before. Returns false with a message. */
bool router_load_endpoints_file(struct router *r, const char *path, char *err, size_t errlen);

/* What the body says beyond the scheduler's fields. */
struct router_parsed {
    const char *model_label; /* the model, "" when absent (metrics) */
    const char *param;       /* the field a 400 is about, or NULL */
    int64_t est_tokens;      /* prompt tokens, estimated (~4 characters each) */
    bool stream;             /* "stream": true */
};

/* proxy.c */
/* Reads an OpenAI request body into s (strings in a or pointing into body). 0, or 400
 * with msg. Shared by the HTTP proxy and ext_proc. */
int router_parse_body(struct sched_request *s, struct arena *a, const char *method,
                      const char *body, size_t body_len, struct router_parsed *out, char *msg,
                      size_t cap);
/* The config's parser is passthrough-parser: nothing is read from the body (no model,
 * prompt or stream flag); in-flight tokens are its size / 4, as llm-d estimates them. */
void router_parse_raw(size_t body_len, struct router_parsed *out);
/* The decision (scheduler, its metrics and decision log, P/D fallback accounting, the
 * in-flight bound): 0 with res filled and *pick the index to use, or an HTTP status
 * (503, 429) with msg. res must be released by the caller either way. */
int router_decide(struct router *r, struct sched_request *sreq, struct sched_result *res,
                  size_t *pick, char *msg, size_t cap);
void router_handle(struct http_exchange *ex, void *ctx); /* ctx = struct router_worker */
void sidecar_rank_handle(struct http_exchange *ex, void *ctx); /* ctx = struct sidecar_rank */
/* E/P/D: res's encode picks as x-encoder-hosts-ports ("ip:port,ip:port"; IPv6 hosts
 * bracketed) into out; "" when the encode stage did not run. */
void router_encoders_header(const struct sched_result *res, char *out, size_t cap);
/* Whether the sidecar has any allowed prefiller (flag or pool). */
bool router_prefillers_configured(const struct router *r);
/* POST /debug/schedule: a dry run of the decision for the body, as JSON. */
void router_debug_schedule(struct router *r, struct http_exchange *ex);

/* admin.c */
/* Returns true if the request was an admin route and has been answered. w is NULL on
 * the metrics port, which also serves the debug routes; the API port serves them only with
 * --enable-debug-endpoints. */
bool router_admin(struct router *r, struct http_exchange *ex, struct router_worker *w);
void router_metrics_init(struct router *r);
void router_error(struct http_exchange *ex, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* discovery.c: endpoints (router) or the prefiller allowlist (sidecar) from an
 * InferencePool, on the control loop. */
struct router_discovery;
struct router_discovery *router_discovery_start(struct router *r, uv_loop_t *loop, char *err,
                                                size_t errlen);
void router_discovery_stop(struct router_discovery *d); /* the loop must run afterwards */
void router_discovery_free(struct router_discovery *d); /* after the loop has run dry */
/* Sidecar: is host:port a Ready pod of the pool on one of its target ports? Any thread. */
bool router_discovery_allows(struct router_discovery *d, const char *host, int port);
const char *router_discovery_pool(const struct router_discovery *d); /* "NS/NAME" */

/* sdiscovery.c: vllm-router's --service-discovery (pods by label selector), on the
 * control loop. Same life cycle as router_discovery. */
struct router_sd;
struct router_sd *router_sd_start(struct router *r, uv_loop_t *loop, char *err, size_t errlen);
void router_sd_stop(struct router_sd *d);
void router_sd_free(struct router_sd *d);

/* extproc.c: the ext_proc server with the router's decision (--grpc-port). */
bool router_extproc_start(struct router *r, char *err, size_t errlen);

/* vrouter.c: vllm-router's command line, worker URLs, metrics and log lines. */
struct router_vr;
/* The vllm-router flag rows (written into out, which has room for ROUTER_VR_FLAGS) and
 * their value holder; returns the number of rows. */
#define ROUTER_VR_FLAGS 72
size_t router_vr_flags(struct router_config *cfg, struct router_vr **vv, struct flag *out);
/* Whether argv uses one of the rows (the vllm-router-only flags). */
bool router_vr_wanted(const struct flag *rows, size_t n, int argc, char **argv);
/* Takes "--prefill URL [PORT|none]" out of argv as vllm-router does (a port or "none"
 * after the URL belongs to it); returns the rest (a new array: free it; strings are
 * argv's) in *rest, or false with err. */
bool router_vr_split_prefill(struct router_config *cfg, int argc, char **argv, char ***rest,
                             int *n_rest, char *err, size_t errlen);
/* After parsing: defaults, checks, URL workers (DP ranks), the P/D policy config, the
 * ignored-flag log lines. Frees vv. false after printing why. */
bool router_vr_apply(struct router_config *cfg, struct router_vr *vv,
                     const struct flags_result *res, int argc, char **argv);
/* Host names of URL workers (http://svc.ns.svc.cluster.local:8000): resolved on the
 * control loop, retried every second until they resolve; until then the worker is
 * unhealthy. No-op when every URL has a numeric host. stop before the loop's last run,
 * free after it. */
void router_vr_resolve_start(struct router *r, uv_loop_t *loop);
void router_vr_resolve_stop(struct router *r);
void router_vr_resolve_free(struct router *r);
/* "PD retry attempt N using prefill=... decode=..." (debug). */
void router_vr_log_pd_attempt(struct router *r, int attempt, const char *prefill,
                              const char *decode);
void router_vr_metrics_init(struct router *r);
void router_vr_metrics_collect(struct router *r);
/* The request's route label (the OpenAI path, "other" for the rest). */
const char *router_vr_route(const char *path);
/* The DP rank of an endpoint (its URL@rank), or -1. */
int router_endpoint_dp_rank(const struct sched_endpoint *e);

/* breaker.c: the per-worker circuit breaker, vllm-router's semantics: closed until
 * failure_threshold consecutive failures, then open (not picked) for timeout; then
 * half-open (picked again) until success_threshold consecutive successes close it, or one
 * failure opens it again. */
bool router_cb_allow(struct router_cb *cb, const struct router_cb_config *c, uint64_t now);
/* Records an outcome; returns true when the state changed. */
bool router_cb_record(struct router_cb *cb, const struct router_cb_config *c, bool success,
                      uint64_t now);
const char *router_cb_state_name(enum router_cb_state s);
/* The router's table: records an outcome of the named worker and blocks/unblocks it in the
 * datastore as the breaker opens/closes. Any thread. */
void router_breaker_record(struct router *r, const char *name, bool success);
/* Control loop, on each scrape tick: open breakers whose timeout passed go half-open. */
void router_breakers_tick(struct router *r);
/* The state of each known worker (for metrics): calls fn under the lock. */
void router_breakers_each(struct router *r, void (*fn)(void *ctx, const char *name,
                                                        enum router_cb_state s),
                          void *ctx);
void router_breakers_free(struct router *r);

/* scrape.c */
void router_scrape_start(struct router *r);
void router_scrape_stop(struct router *r);

#endif

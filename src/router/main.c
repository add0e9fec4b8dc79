/* The router process. Worker threads each run one libuv loop with their own listener on
 * the API port (SO_REUSEPORT spreads connections across them) and their own upstream
 * keep-alive pools. The main thread runs the control loop: signals, the metrics scraper,
 * the endpoints-file watch and the metrics port. The datastore, scheduler and metrics
 * registry are shared (thread-safe). Shutdown: a signal on the control loop asks every
 * worker (uv_async) to stop its server and client; each loop then runs dry. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/loop.h"
#include "router/router.h"
#include "extproc/extproc.h"
#include "router/router_internal.h"

#define LOG_C "router"

static void on_worker_stop(uv_async_t *a)
{
    struct router_worker *w = a->data;
    http_server_stop(w->server, NULL, NULL);
    for (size_t i = 0; i < w->n_ranks; i++)
        http_server_stop(w->ranks[i].server, NULL, NULL);
    http_client_free(w->client);
    uv_close((uv_handle_t *)a, NULL);
}

static void worker_run(void *arg)
{
    struct router_worker *w = arg;
    loop_run_and_close(&w->loop);
}

static int worker_start(struct router *r, struct router_worker *w, int port)
{
    uv_loop_init(&w->loop);
    struct http_server_config hc = {
        .host = r->cfg.host,
        .port = port,
        .reuseport = r->n_workers > 1,
        .max_body_bytes = (size_t)r->cfg.max_body_bytes,
        .read_timeout_ms = (uint64_t)(r->cfg.read_timeout_s * 1e3),
        .idle_timeout_ms = (uint64_t)(r->cfg.idle_timeout_s * 1e3),
        .handler = router_handle,
        .handler_ctx = w,
        .server_name = r->cfg.sidecar ? "sidecar" : "router",
        .conn_limit = &r->conn_limit,
    };
    int err = http_server_start(&w->loop, &hc, &w->server);
    /* tandem sidecar: DP ranks 1..N-1 listen on --port + rank (llm-d's sidecar) */
    for (long long i = 1; !err && r->cfg.sidecar && i < r->cfg.sidecar_dp_size; i++) {
        struct sidecar_rank *k = &w->ranks[w->n_ranks];
        *k = (struct sidecar_rank){w, (int)i, NULL};
        struct http_server_config rc = hc;
        rc.port = port + (int)i;
        rc.handler = sidecar_rank_handle;
        rc.handler_ctx = k;
        err = http_server_start(&w->loop, &rc, &k->server);
        if (err)
            fprintf(stderr, "tandem sidecar: cannot listen on %s:%d for DP rank %lld: %s\n",
                    r->cfg.host, rc.port, i, uv_strerror(err));
        else
            w->n_ranks++;
    }
    if (err) {
        if (w->server) /* a rank's listener failed: the others go too */
            http_server_stop(w->server, NULL, NULL);
        for (size_t i = 0; i < w->n_ranks; i++)
            http_server_stop(w->ranks[i].server, NULL, NULL);
        w->n_ranks = 0;
        uv_run(&w->loop, UV_RUN_DEFAULT); /* the failed server frees itself in close callbacks */
        uv_loop_close(&w->loop);
        return err;
    }
    struct http_client_config cc = {
        .connect_timeout_ms = (uint64_t)(r->cfg.connect_timeout_s * 1e3),
        .max_idle_per_upstream = 256,
    };
    w->client = http_client_new(&w->loop, &cc);
    uv_async_init(&w->loop, &w->stop, on_worker_stop);
    w->stop.data = w;
    return 0;
}

static void metrics_handler(struct http_exchange *ex, void *ctx)
{
    struct router *r = ctx;
    const struct http_request *q = http_exchange_request(ex);
    if (router_admin(r, ex, NULL))
        return;
    if (!r->cfg.sidecar && !strcmp(q->method, "POST") && !strcmp(q->path, "/debug/schedule")) {
        router_debug_schedule(r, ex);
        return;
    }
    router_error(ex, 404, NULL, "the metrics port serves /metrics, /health, /ready, "
                                "/debug/endpoints and POST /debug/schedule");
}

/* Every connection is a file descriptor (two for a proxied request): make the soft limit
 * fit --max-connections where the hard limit allows, else say what will fail first. */
static void fit_fd_limit(struct router *r, const char *role)
{
    if (r->cfg.max_connections <= 0)
        return;
    rlim_t want = (rlim_t)r->cfg.max_connections * 2 + 256;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rlim_t target = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && target >= want)
        return;
    LOG_W(role, "open files limit is %llu, below what --max-connections %lld needs (%llu): "
                "connections past it fail to be accepted; raise ulimit -n",
          (unsigned long long)target, r->cfg.max_connections, (unsigned long long)want);
}

static void on_shutdown(void *ctx)
{
    struct router *r = ctx;
    if (r->stopping)
        return;
    r->stopping = true;
    LOG_I(LOG_C, "shutting down");
    for (size_t i = 0; i < r->n_workers; i++)
        uv_async_send(&r->workers[i].stop);
    router_scrape_stop(r);
    sched_stop(r->sched);
    router_discovery_stop(r->discovery);
    router_sd_stop(r->sd);
    router_vr_resolve_stop(r);
    if (r->extproc) {
        extproc_server_stop(r->extproc); /* joins its threads; streams are released */
        r->extproc = NULL;
    }
    if (r->metrics_server)
        http_server_stop(r->metrics_server, NULL, NULL);
    loop_shutdown_watch_close(&r->control);
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct buf b = BUF_INIT;
    int e = buf_read_file(&b, path);
    if (e) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, len);
}

static bool build_scheduler(struct router *r)
{
    struct errinfo err = {.msg = {0}};
    const char *text = NULL, *name = NULL;
    size_t len = 0;
    char *owned = NULL;
    if (r->cfg.config_file) {
        char why[512];
        owned = read_file(r->cfg.config_file, &len, why, sizeof why);
        if (!owned) {
            fprintf(stderr, "tandem router: --config-file: %s\n", why);
            return false;
        }
        text = owned;
        name = r->cfg.config_file;
    } else if (r->cfg.config_text) {
        text = r->cfg.config_text;
        len = strlen(text);
        name = "<config-text>";
    } else if (r->cfg.policy) {
        text = sched_policy_config(r->cfg.policy);
        if (!text) {
            fprintf(stderr, "tandem router: --policy: unknown policy '%s' (llm-d, round_robin, "
                            "random, consistent_hash, power_of_two, cache_aware)\n",
                    r->cfg.policy);
            return false;
        }
        len = strlen(text);
        name = r->cfg.policy;
    }
    r->sched = sched_new(r->ds, text, len, name ? name : "<default>", &err);
    free(owned);
    if (!r->sched) {
        fprintf(stderr, "tandem router: %s\n", err.msg);
        return false;
    }
    return true;
}

static void router_free(struct router *r)
{
    if (r->sched)
        sched_free(r->sched);
    sched_ds_free(r->ds);
    if (r->m.reg)
        metrics_registry_free(r->m.reg);
    if (r->m.kv_index)
        pthread_mutex_destroy(&r->m.kv_mu);
    if (r->m.hidden_reg)
        metrics_registry_free(r->m.hidden_reg);
    router_config_free(&r->cfg);
    router_breakers_free(r);
    pthread_mutex_destroy(&r->breakers.lock);
    free(r->workers);
    free(r);
}

static int run_router(int argc, char **argv, bool as_vllm_router)
{
    struct router *r = xcalloc(1, sizeof *r);
    int rc = router_config_parse_as(&r->cfg, argc, argv, as_vllm_router);
    if (rc != 0) {
        router_config_free(&r->cfg);
        free(r);
        return rc > 0 ? 0 : 2;
    }
    return router_run(r);
}

/* Runs the control loop until shutdown, joins the workers and frees everything;
 * returns rc. */
static int run_to_end(struct router *r, int rc)
{
    loop_run_and_close(&r->control);
    for (size_t i = 0; i < r->n_workers; i++) {
        uv_thread_join(&r->workers[i].thread);
        uv_loop_close(&r->workers[i].loop);
    }
    uv_loop_close(&r->control);
    router_discovery_free(r->discovery);
    router_sd_free(r->sd);
    router_vr_resolve_free(r);
    router_free(r);
    return rc;
}

int router_main(int argc, char **argv)
{
    return run_router(argc, argv, false);
}

int vllm_router_main(int argc, char **argv)
{
    return run_router(argc, argv, true);
}

int sidecar_main(int argc, char **argv)
{
    struct router *r = xcalloc(1, sizeof *r);
    int rc = sidecar_config_parse(&r->cfg, argc, argv);
    if (rc != 0) {
        router_config_free(&r->cfg);
        free(r);
        return rc > 0 ? 0 : 2;
    }
    return router_run(r);
}

int router_run(struct router *r)
{
    const char *role = r->cfg.sidecar ? "sidecar" : "router";
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&r->breakers.lock, NULL);
    r->ds = sched_ds_new();
    for (size_t i = 0; i < r->cfg.n_endpoints; i++)
        sched_ds_upsert(r->ds, &r->cfg.endpoints[i]);
    char err[512];
    if (r->cfg.endpoints_file &&
        !router_load_endpoints_file(r, r->cfg.endpoints_file, err, sizeof err)) {
        fprintf(stderr, "tandem %s: --endpoints-file: %s\n", role, err);
        router_free(r);
        return 2;
    }
    /* Endpoints with the prefill role (flags or file) and no scheduler config: llm-d's
     * P/D profiles. */
    if (!r->cfg.config_file && !r->cfg.config_text && !r->cfg.policy) {
        struct sched_endpoint **eps;
        size_t n = sched_ds_list(r->ds, &eps);
        for (size_t i = 0; i < n; i++)
            if (sched_endpoint_role(eps[i]) == SCHED_ROLE_PREFILL)
                r->cfg.policy = "pd";
        sched_ds_release_list(eps, n);
    }
    if (!build_scheduler(r)) {
        router_free(r);
        return 2;
    }
    router_metrics_init(r);
    r->conn_limit.max = (size_t)r->cfg.max_connections;
    r->conn_limit.max_flag = "--max-connections";
    fit_fd_limit(r, role);

    uv_loop_init(&r->control);
    if (r->cfg.pool_name) { /* fails only before it made any handle */
        char why[600];
        r->discovery = router_discovery_start(r, &r->control, why, sizeof why);
        if (!r->discovery) {
            fprintf(stderr, "tandem %s: %s: %s\n", role,
                    r->cfg.sidecar ? "--inference-pool-name" : "--pool-name", why);
            uv_loop_close(&r->control);
            router_free(r);
            return 2;
        }
    }

    if (r->cfg.service_discovery) {
        char why[600];
        r->sd = router_sd_start(r, &r->control, why, sizeof why);
        if (!r->sd) {
            fprintf(stderr, "tandem %s: --service-discovery: %s\n", role, why);
            router_discovery_stop(r->discovery);
            loop_run_and_close(&r->control);
            uv_loop_close(&r->control);
            router_discovery_free(r->discovery);
            router_free(r);
            return 2;
        }
    }

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    r->n_workers = r->cfg.workers > 0 ? (size_t)r->cfg.workers : (size_t)(cores > 0 ? cores : 1);
    r->workers = xcalloc(r->n_workers, sizeof *r->workers);
    if (r->cfg.grpc_port > 0 && !r->cfg.sidecar) { /* before any worker: a clean exit */
        char why[600];
        if (!router_extproc_start(r, why, sizeof why)) {
            fprintf(stderr, "tandem %s: --grpc-port: %s\n", role, why);
            router_discovery_stop(r->discovery);
            router_sd_stop(r->sd);
            loop_run_and_close(&r->control);
            uv_loop_close(&r->control);
            router_discovery_free(r->discovery);
            router_sd_free(r->sd);
            router_free(r);
            return 1;
        }
    }
    int port = r->cfg.port;
    for (size_t i = 0; i < r->n_workers; i++) {
        struct router_worker *w = &r->workers[i];
        w->r = r;
        w->index = i;
        int e = worker_start(r, w, port);
        if (e) {
            fprintf(stderr, "tandem %s: cannot listen on %s:%d: %s\n", role, r->cfg.host, port,
                    uv_strerror(e));
            for (size_t j = 0; j < i; j++) {
                on_worker_stop(&r->workers[j].stop);
                loop_run_and_close(&r->workers[j].loop);
                uv_loop_close(&r->workers[j].loop);
            }
            router_discovery_stop(r->discovery);
            router_sd_stop(r->sd);
            loop_run_and_close(&r->control);
            uv_loop_close(&r->control);
            router_discovery_free(r->discovery);
            router_sd_free(r->sd);
            router_free(r);
            return 1;
        }
        if (i == 0)
            port = http_server_port(w->server); /* port 0: the others share the one given */
    }

    if (r->cfg.metrics_port > 0) {
        struct http_server_config mc = {
            .host = r->cfg.metrics_host ? r->cfg.metrics_host : r->cfg.host,
            .port = r->cfg.metrics_port,
            .handler = metrics_handler,
            .handler_ctx = r,
            .server_name = "metrics",
        };
        int e = http_server_start(&r->control, &mc, &r->metrics_server);
        if (e) {
            fprintf(stderr, "tandem %s: cannot listen on metrics port %d: %s\n", role,
                    r->cfg.metrics_port, uv_strerror(e));
            r->metrics_server = NULL;
        }
    }
    router_scrape_start(r);
    router_vr_resolve_start(r, &r->control);
    loop_on_shutdown(&r->control, on_shutdown, r);
    for (size_t i = 0; i < r->n_workers; i++)
        uv_thread_create(&r->workers[i].thread, worker_run, &r->workers[i]);
    /* the scheduler's own sockets (KV events); a failure shuts down what started */
    struct errinfo se = {.msg = {0}};
    bool sched_started = sched_start(r->sched, &r->control, &se) == 0;
    if (!sched_started) {
        fprintf(stderr, "tandem %s: %s\n", role, se.msg);
        on_shutdown(r);
        return run_to_end(r, 1);
    }

    size_t n_eps;
    struct sched_endpoint **eps;
    n_eps = sched_ds_list(r->ds, &eps);
    sched_ds_release_list(eps, n_eps);
    if (r->cfg.sidecar)
        LOG_I(LOG_C, "tandem sidecar on %s:%d (metrics :%d) in front of the engine at %s, "
                     "connector %s, SSRF protection %s",
              r->cfg.host, port, r->cfg.metrics_port,
              r->cfg.n_endpoints ? r->cfg.endpoints[0].name : "?", r->cfg.connector->name,
              r->cfg.ssrf ? "on" : "off");
    if (r->cfg.sidecar && r->cfg.ssrf && !router_prefillers_configured(r))
        LOG_W(LOG_C, "SSRF protection is on and no prefiller is allowed: every P/D request "
                     "(x-prefiller-host-port) will get 403. Allow the prefill pods with "
                     "--allowed-prefillers HOST[:PORT],... or --inference-pool-name NAME, or "
                     "opt out with --enable-ssrf-protection=false");
    if (!r->cfg.sidecar)
        LOG_I(LOG_C, "tandem router on %s:%d (metrics :%d), %zu workers, %zu endpoints, "
                     "scheduler: %s, P/D mode: %s",
              r->cfg.host, port, r->cfg.metrics_port, r->n_workers, n_eps,
              r->cfg.config_file ? r->cfg.config_file
              : r->cfg.vr_policy ? r->cfg.vr_policy
              : r->cfg.policy    ? r->cfg.policy
              : r->cfg.config_text ? "<config-text>"
                                   : "default (queue 2, kv-cache 2, prefix-cache 3)",
              r->cfg.pd_router ? "router (both legs here)" : "sidecar (x-prefiller-host-port)");
    printf("tandem %s ready on %s:%d\n", role, r->cfg.host, port);
    fflush(stdout);

    return run_to_end(r, 0);
}

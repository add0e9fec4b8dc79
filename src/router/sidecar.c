/* `tandem sidecar`: llm-d's routing sidecar for a decode pod. It is the router's process
 * shape (workers, proxy, keep-alive pools, metrics port) with one endpoint, the local
 * engine, and no scheduling: requests carrying x-prefiller-host-port run the P/D
 * protocol (prefill leg to that host, decode leg here); everything else is proxied to
 * the engine unchanged. The request handling itself is in proxy.c (sidecar_handle_rank). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/flags.h"
#include "base/log.h"
#include "router/router_internal.h"

int sidecar_config_parse(struct router_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->sidecar = true;
    struct router_common cv = {0};
    long long vllm_port = 8001, metrics_port = 0;
    const char *vllm_host = "127.0.0.1";
    cfg->workers = 1;
    cfg->sidecar_dp_size = 1;
    cfg->max_retries = 0;
    cfg->connect_timeout_s = 5;
    cfg->read_timeout_s = 30;
    cfg->idle_timeout_s = 75;
    cfg->ssrf = true;
    const struct flag own[] = {
        {"--vllm-port", "--model-server-port", FLAG_INT, &vllm_port, "N", "the local engine's port (8001)", NULL},
        {"--vllm-host", NULL, FLAG_STRING, &vllm_host, "ADDR", "the local engine's address (127.0.0.1)", NULL},
        {"--metrics-port", NULL, FLAG_INT, &metrics_port, "N", "port for the sidecar's own /metrics (0 = none; always at GET /sidecar/metrics)", NULL},
        {"--enable-ssrf-protection", NULL, FLAG_BOOL, &cfg->ssrf, NULL,
         "only allowed prefillers may be called; with none configured every P/D request gets "
         "403 (default true; =false opts out)",
         NULL},
        {"--allowed-prefillers", NULL, FLAG_STRING, &cfg->allowed_prefillers, "LIST",
         "prefillers this sidecar may call: host or host:port, comma-separated", NULL},
        {"--inference-pool-name", NULL, FLAG_STRING, &cfg->pool_name, "NAME",
         "allowed prefillers are this InferencePool's Ready pods on its target ports "
         "(Kubernetes; llm-d's sidecar flag)",
         NULL},
        {"--inference-pool-namespace", NULL, FLAG_STRING, &cfg->pool_namespace, "NS",
         "its namespace (default: the kubeconfig's, or the pod's in a cluster)", NULL},
        {"--inference-pool-group", NULL, FLAG_STRING, &cfg->pool_group, "GROUP",
         "inference.networking.k8s.io (v1, default) or inference.networking.x-k8s.io", NULL},
        {"--ec-connector", NULL, FLAG_STRING, &cfg->ec_connector, "NAME",
         "E/P/D: the encoder connector (ec-example); with it, x-encoder-hosts-ports sends a "
         "chat request's multimodal items to those encoders first (default: none, the "
         "header is ignored)",
         NULL},
        {"--enable-prefiller-sampling", NULL, FLAG_BOOL, &cfg->prefiller_sampling, NULL, "pick a random prefiller when the header lists several", NULL},
        {"--workers", NULL, FLAG_INT, &cfg->workers, "N", "worker threads (1)", NULL},
        {"--data-parallel-size", NULL, FLAG_INT, &cfg->sidecar_dp_size, "N",
         "engine ranks on --vllm-port + 0..N-1, each also served on --port + rank; on --port, "
         "x-data-parallel-host-port HOST:PORT picks the rank at PORT - --port (llm-d's "
         "sidecar; default 1)",
         NULL},
        /* llm-d's sidecar flags that do not apply here. */
        {"--cert-path", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--secure-proxy", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--decoder-use-tls", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--prefiller-use-tls", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
    };
    const size_t n_own = sizeof own / sizeof own[0], n_flags = ROUTER_COMMON_FLAGS + n_own;
    struct flag flags[ROUTER_COMMON_FLAGS + sizeof own / sizeof own[0]];
    router_common_flags(cfg, &cv, flags);
    memcpy(flags + ROUTER_COMMON_FLAGS, own, sizeof own);
    struct flags_result res;
    char err[512];
    if (!flags_parse(flags, n_flags, argc, argv, &res, err, sizeof err)) {
        fprintf(stderr, "tandem sidecar: %s\n", err);
        return -1;
    }
    if (res.help) {
        flags_print_help(stdout, "tandem sidecar [flags]",
                         "P/D sidecar for a decode pod (llm-d's routing sidecar). A request with\n"
                         "x-prefiller-host-port runs the prefill leg there (nixlv2: 1 token,\n"
                         "kv_transfer_params) and the decode leg on the local engine; every other\n"
                         "request is proxied to the engine unchanged. GET /health is answered here.",
                         flags, n_flags);
        return 1;
    }
    if (res.n_positional) {
        fprintf(stderr, "tandem sidecar: unexpected argument '%s'\n", res.positional[0]);
        return -1;
    }
    if (!router_common_apply("sidecar", cfg, &cv))
        return -1;
    if (cfg->ec_connector && *cfg->ec_connector && strcmp(cfg->ec_connector, "ec-example")) {
        fprintf(stderr, "tandem sidecar: --ec-connector must be one of: ec-example\n");
        return -1;
    }
    if (vllm_port <= 0 || vllm_port > 65535 || metrics_port < 0 || metrics_port > 65535) {
        fprintf(stderr, "tandem sidecar: --vllm-port, --metrics-port must be ports\n");
        return -1;
    }
    if (cfg->workers < 1 || cfg->workers > 64) {
        fprintf(stderr, "tandem sidecar: --workers in [1, 64]\n");
        return -1;
    }
    if (cfg->sidecar_dp_size < 1 || cfg->sidecar_dp_size > 64 ||
        vllm_port + cfg->sidecar_dp_size - 1 > 65535 ||
        (cfg->sidecar_dp_size > 1 &&
         (cfg->port <= 0 || cfg->port + cfg->sidecar_dp_size - 1 > 65535))) {
        fprintf(stderr, "tandem sidecar: --data-parallel-size in [1, 64], with --vllm-port + "
                        "N - 1 and --port + N - 1 ports (--port 0 cannot have rank ports)\n");
        return -1;
    }
    /* rank i's engine: --vllm-port + i (llm-d's sidecar: decoder port + rank) */
    for (long long i = 0; i < cfg->sidecar_dp_size; i++) {
        struct sched_endpoint_spec *e = &cfg->endpoints[i];
        e->name = i ? xasprintf("engine-dp%lld", i) : xstrdup("engine");
        e->host = xstrdup(vllm_host);
        e->port = (int)(vllm_port + i);
    }
    cfg->n_endpoints = (size_t)cfg->sidecar_dp_size;
    cfg->policy = "round_robin";
    cfg->metrics_port = (int)metrics_port;
    cfg->refresh_metrics_s = 1.0; /* health only: nothing is scheduled */
    cfg->staleness_s = 5.0;
    return 0;
}

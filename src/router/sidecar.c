/* `tandem sidecar`: llm-d's routing sidecar for a decode pod. It is the router's process
 * shape (workers, proxy, keep-alive pools, metrics port) with one endpoint, the local
 * engine, and no scheduling: requests carrying x-prefiller-host-port run the P/D
 * protocol (prefill leg to that host, decode leg here); everything else is proxied to
 * the engine unchanged. The request handling itself is in proxy.c (sidecar_handle). */
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
    cfg->host = "0.0.0.0";
    long long port = 8000, vllm_port = 8001, metrics_port = 0, v = 2;
    const char *log_level = NULL, *vllm_host = "127.0.0.1";
    bool log_json = false;
    cfg->workers = 1;
    cfg->max_body_bytes = 32ll << 20;
    cfg->max_retries = 0;
    cfg->connect_timeout_s = 5;
    cfg->read_timeout_s = 30;
    cfg->idle_timeout_s = 75;
    cfg->prefill_timeout_s = 120;
    cfg->upstream_read_timeout_s = 60;
    cfg->max_connections = ROUTER_DEFAULT_MAX_CONNECTIONS;
    cfg->ssrf = true;
    const struct flag flags[] = {
        {"--host", NULL, FLAG_STRING, &cfg->host, "ADDR", "listen address (0.0.0.0)", NULL},
        {"--port", NULL, FLAG_INT, &port, "N", "listen port (8000)", NULL},
        {"--vllm-port", "--model-server-port", FLAG_INT, &vllm_port, "N", "the local engine's port (8001)", NULL},
        {"--vllm-host", NULL, FLAG_STRING, &vllm_host, "ADDR", "the local engine's address (127.0.0.1)", NULL},
        {"--metrics-port", NULL, FLAG_INT, &metrics_port, "N", "port for the sidecar's own /metrics (0 = none; always at GET /sidecar/metrics)", NULL},
        {"--connector", NULL, FLAG_STRING, &cfg->connector_name, "NAME", "KV connector protocol (nixlv2)", NULL},
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
        {"--kubeconfig", NULL, FLAG_STRING, &cfg->kubeconfig, "FILE",
         "kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)", NULL},
        {"--k8s-watch-timeout", NULL, FLAG_DOUBLE, &cfg->k8s_watch_timeout_s, "S",
         "watch timeoutSeconds (default random 300-600)", NULL},
        {"--enable-prefiller-sampling", NULL, FLAG_BOOL, &cfg->prefiller_sampling, NULL, "pick a random prefiller when the header lists several", NULL},
        {"--workers", NULL, FLAG_INT, &cfg->workers, "N", "worker threads (1)", NULL},
        {"--max-body-bytes", NULL, FLAG_INT, &cfg->max_body_bytes, "N", "largest request body (32 MiB)", NULL},
        {"--prefill-timeout", NULL, FLAG_DOUBLE, &cfg->prefill_timeout_s, "S", "prefill leg timeout; past it, decode in place (120)", NULL},
        {"--upstream-timeout", NULL, FLAG_DOUBLE, &cfg->upstream_timeout_s, "S", "whole upstream request, 0 = none (0)", NULL},
        {"--upstream-read-timeout", NULL, FLAG_DOUBLE, &cfg->upstream_read_timeout_s, "S",
         "longest silence from the engine before 504 (60; 0 = none)", NULL},
        {"--max-connections", NULL, FLAG_INT, &cfg->max_connections, "N",
         "client connections held at once; past it, 503 and close ("
         ROUTER_DEFAULT_MAX_CONNECTIONS_STR "; 0 = no bound)", NULL},
        {"--v", "-v", FLAG_INT, &v, "N", "verbosity: 2 info, 4 debug (2)", NULL},
        {"--log-level", NULL, FLAG_STRING, &log_level, "LEVEL", "error, warn, info, debug", NULL},
        {"--log-json", NULL, FLAG_BOOL, &log_json, NULL, "log JSON lines", NULL},
        /* llm-d's sidecar flags that do not apply here. */
        {"--cert-path", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--secure-proxy", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--decoder-use-tls", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--prefiller-use-tls", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
    };
    const size_t n_flags = sizeof flags / sizeof flags[0];
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
    if (port < 0 || port > 65535 || vllm_port <= 0 || vllm_port > 65535 || metrics_port < 0 ||
        metrics_port > 65535) {
        fprintf(stderr, "tandem sidecar: --port, --vllm-port, --metrics-port must be ports\n");
        return -1;
    }
    if (cfg->workers < 1 || cfg->workers > 64 || cfg->max_body_bytes < 1024 ||
        cfg->upstream_timeout_s < 0 || !(cfg->upstream_read_timeout_s >= 0) ||
        cfg->max_connections < 0) {
        fprintf(stderr, "tandem sidecar: --workers in [1, 64], --max-body-bytes >= 1024, "
                        "--upstream-timeout >= 0, --upstream-read-timeout >= 0, "
                        "--max-connections >= 0\n");
        return -1;
    }
    if (!(cfg->prefill_timeout_s > 0)) {
        fprintf(stderr, "tandem sidecar: --prefill-timeout must be > 0\n");
        return -1;
    }
    if ((cfg->pool_namespace || cfg->pool_group) && !cfg->pool_name) {
        fprintf(stderr, "tandem sidecar: --inference-pool-namespace/-group need "
                        "--inference-pool-name\n");
        return -1;
    }
    if (cfg->pool_name && !router_pool_group_ok(cfg->pool_group)) {
        fprintf(stderr, "tandem sidecar: --inference-pool-group: '%s' is not "
                        "inference.networking.k8s.io or inference.networking.x-k8s.io\n",
                cfg->pool_group);
        return -1;
    }
    cfg->connector = pd_connector_find(cfg->connector_name);
    if (!cfg->connector) {
        fprintf(stderr, "tandem sidecar: --connector: '%s' is not a known connector (nixlv2)\n",
                cfg->connector_name);
        return -1;
    }
    struct sched_endpoint_spec *e = &cfg->endpoints[0];
    e->name = xstrdup("engine");
    e->host = xstrdup(vllm_host);
    e->port = (int)vllm_port;
    cfg->n_endpoints = 1;
    cfg->policy = "round_robin";
    cfg->port = (int)port;
    cfg->metrics_port = (int)metrics_port;
    cfg->refresh_metrics_s = 1.0; /* health only: nothing is scheduled */
    cfg->staleness_s = 5.0;
    cfg->verbosity = (int)v;
    return router_config_logging("sidecar", v, log_level, log_json) ? 0 : -1;
}

/* The router's and the sidecar's command lines (router/config.c, router/sidecar.c):
 * endpoint specs, defaults of the safety flags, GAIE's flag spellings, vllm-router's
 * command line, and refusals; and the circuit breaker's state machine (router/breaker.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "router/router_internal.h"

static int parse(struct router_config *cfg, bool sidecar, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    int rc = sidecar ? sidecar_config_parse(cfg, argc, argv) : router_config_parse(cfg, argc, argv);
    return rc;
}

static void test_endpoint_specs_and_defaults(void **state)
{
    struct router_config cfg;
    const char *args[] = {"--endpoint", "name=d0,addr=10.0.0.1:8000,role=decode,label.zone=a",
                          "--endpoint", "addr=[fd00::1]:9000", "--prefill", "http://10.0.0.9:8001",
                          NULL};
    assert_int_equal(parse(&cfg, false, args), 0);
    assert_int_equal(cfg.n_endpoints, 3);
    assert_string_equal(cfg.endpoints[0].name, "d0");
    assert_string_equal(cfg.endpoints[0].host, "10.0.0.1");
    assert_int_equal(cfg.endpoints[0].port, 8000);
    assert_int_equal(cfg.endpoints[0].role, SCHED_ROLE_DECODE);
    assert_int_equal(cfg.endpoints[0].n_labels, 2); /* llm-d.ai/role + zone */
    assert_string_equal(cfg.endpoints[1].host, "fd00::1");
    assert_string_equal(cfg.endpoints[1].name, "fd00::1:9000");
    assert_string_equal(cfg.endpoints[2].name, "http://10.0.0.9:8001"); /* vllm-router's */
    assert_int_equal(cfg.endpoints[2].role, SCHED_ROLE_PREFILL);
    assert_true(cfg.pd_router); /* --prefill implies router-managed P/D */
    /* safety defaults (hardening) */
    assert_true(cfg.upstream_read_timeout_s == 60);
    assert_int_equal(cfg.max_connections, ROUTER_DEFAULT_MAX_CONNECTIONS);
    assert_false(cfg.debug_endpoints);
    assert_int_equal(cfg.grpc_port, 0);
    assert_true(cfg.secure_serving);
    router_config_free(&cfg);
}

static void test_gaie_flag_spellings(void **state)
{
    struct router_config cfg;
    const char *args[] = {"-poolName", "p", "-poolNamespace", "ns", "--pool-group",
                          "inference.networking.x-k8s.io", "-grpcPort", "9002",
                          "-grpcHealthPort", "9003", "--secure-serving=false", NULL};
    assert_int_equal(parse(&cfg, false, args), 0);
    assert_string_equal(cfg.pool_name, "p");
    assert_string_equal(cfg.pool_namespace, "ns");
    assert_int_equal(cfg.grpc_port, 9002);
    assert_int_equal(cfg.grpc_health_port, 9003);
    assert_false(cfg.secure_serving);
    router_config_free(&cfg);
}

static void test_refusals(void **state)
{
    struct router_config cfg;
    const char *none[] = {NULL}; /* no endpoints at all */
    assert_int_equal(parse(&cfg, false, none), -1);
    router_config_free(&cfg);
    const char *bad_group[] = {"--pool-name", "p", "--pool-group", "example.com", NULL};
    assert_int_equal(parse(&cfg, false, bad_group), -1);
    router_config_free(&cfg);
    const char *ns_only[] = {"--endpoint", "addr=1.2.3.4:5", "--pool-namespace", "x", NULL};
    assert_int_equal(parse(&cfg, false, ns_only), -1);
    router_config_free(&cfg);
    const char *bad_spec[] = {"--endpoint", "name=x", NULL};
    assert_int_equal(parse(&cfg, false, bad_spec), -1);
    router_config_free(&cfg);
    const char *neg[] = {"--endpoint", "addr=1.2.3.4:5", "--upstream-read-timeout", "-1", NULL};
    assert_int_equal(parse(&cfg, false, neg), -1);
    router_config_free(&cfg);
    const char *mode[] = {"--endpoint", "addr=1.2.3.4:5", "--extproc-body-mode", "x", NULL};
    assert_int_equal(parse(&cfg, false, mode), -1);
    router_config_free(&cfg);
}

static void test_sidecar_ssrf_default_on(void **state)
{
    struct router_config cfg;
    const char *plain[] = {"--port", "8000", NULL};
    assert_int_equal(parse(&cfg, true, plain), 0);
    assert_true(cfg.ssrf);
    assert_null(cfg.allowed_prefillers);
    assert_null(cfg.pool_name);
    router_config_free(&cfg);
    const char *off[] = {"--enable-ssrf-protection=false", NULL};
    assert_int_equal(parse(&cfg, true, off), 0);
    assert_false(cfg.ssrf);
    router_config_free(&cfg);
    const char *pool[] = {"--inference-pool-name", "p", "--inference-pool-namespace", "n", NULL};
    assert_int_equal(parse(&cfg, true, pool), 0);
    assert_string_equal(cfg.pool_name, "p");
    router_config_free(&cfg);
}

static int parse_as(struct router_config *cfg, bool vllm_router, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    return router_config_parse_as(cfg, argc, argv, vllm_router);
}

static void test_vllm_router_seed_command_line(void **state)
{
    /* Seed 003's command line, as vllm-router takes it. */
    struct router_config cfg;
    const char *args[] = {"--pd-disaggregation", "--prefill", "http://p.svc:8000", "--decode",
                          "http://d.svc:8200", "--intra-node-data-parallel-size", "8",
                          "--policy", "consistent_hash", NULL};
    assert_int_equal(parse(&cfg, false, args), 0);
    assert_true(cfg.vr_mode);
    assert_true(cfg.pd_router);
    assert_int_equal(cfg.n_endpoints, 16);
    assert_string_equal(cfg.endpoints[0].name, "http://p.svc:8000@0");
    assert_string_equal(cfg.endpoints[7].name, "http://p.svc:8000@7");
    assert_string_equal(cfg.endpoints[8].name, "http://d.svc:8200@0");
    assert_string_equal(cfg.endpoints[8].host, "d.svc");
    assert_true(cfg.urls[1].needs_dns); /* a Service name: resolved at run time */
    assert_string_equal(cfg.urls[1].host, "d.svc");
    assert_int_equal(cfg.urls[1].port, 8200);
    assert_int_equal(cfg.endpoints[8].port, 8200);
    assert_int_equal(cfg.endpoints[0].role, SCHED_ROLE_PREFILL);
    assert_int_equal(cfg.endpoints[15].role, SCHED_ROLE_DECODE);
    assert_int_equal(cfg.metrics_port, 29000); /* vllm-router's prometheus port */
    assert_int_equal(cfg.max_retries, 4);       /* 5 attempts */
    assert_int_equal(cfg.max_concurrent, 32768);
    assert_true(cfg.upstream_timeout_s == 1800);
    assert_false(cfg.cb.disabled);
    assert_int_equal(cfg.cb.failure_threshold, 10);
    assert_int_equal(cfg.cb.success_threshold, 3);
    /* Both pools picked by consistent hashing, every request disaggregated. */
    assert_null(cfg.policy);
    assert_non_null(cfg.config_text);
    assert_non_null(strstr(cfg.config_text, "type: consistent-hash-picker"));
    assert_non_null(strstr(cfg.config_text, "threshold: 0"));
    router_config_free(&cfg);
}

static void test_vllm_router_flag_forms(void **state)
{
    struct router_config cfg;
    /* --prefill URL [PORT|none]; --worker-urls takes several; ignored flags are accepted. */
    const char *pd[] = {"--prefill", "http://a:1", "9000", "--prefill", "http://b:2", "none",
                        "--prefill", "http://c:3", "--decode", "http://d:4",
                        "--prefill-policy", "round_robin", "--decode-policy", "rendezvous_hash",
                        "--cb-failure-threshold", "2", "--disable-retries",
                        "--prometheus-port", "29100", "--cors-allowed-origins", "x", "y",
                        "--enable-trace", "--eviction-interval", "60", NULL};
    assert_int_equal(parse(&cfg, false, pd), 0);
    assert_int_equal(cfg.n_urls, 4);
    assert_int_equal(cfg.urls[0].bootstrap_port, 9000);
    assert_int_equal(cfg.urls[1].bootstrap_port, 0);
    assert_string_equal(cfg.endpoints[2].name, "http://c:3");
    assert_non_null(strstr(cfg.config_text, "type: round-robin-picker"));
    assert_non_null(strstr(cfg.config_text, "type: rendezvous-hash-picker"));
    assert_int_equal(cfg.cb.failure_threshold, 2);
    assert_int_equal(cfg.max_retries, 0);
    assert_int_equal(cfg.metrics_port, 29100);
    router_config_free(&cfg);

    const char *workers[] = {"--worker-urls", "http://w0:8000", "http://w1:8000/",
                             "--policy", "power_of_two", NULL};
    assert_int_equal(parse(&cfg, false, workers), 0);
    assert_int_equal(cfg.n_endpoints, 2);
    assert_string_equal(cfg.endpoints[1].name, "http://w1:8000");
    router_config_free(&cfg);
    const char *numeric[] = {"--worker-urls", "http://10.0.0.1:8000", "http://[fd00::2]:8000",
                             NULL};
    assert_int_equal(parse(&cfg, false, numeric), 0);
    assert_false(cfg.urls[0].needs_dns);
    assert_false(cfg.urls[1].needs_dns);
    assert_string_equal(cfg.endpoints[1].host, "fd00::2");
    router_config_free(&cfg);
    assert_int_equal(parse(&cfg, false, workers), 0);
    assert_false(cfg.pd_router);
    assert_string_equal(cfg.vr_policy, "power_of_two");
    assert_non_null(strstr(cfg.config_text, "type: power-of-two-picker"));
    router_config_free(&cfg);

    /* Invoked as vllm-router: its port and its default policy. */
    const char *plain[] = {"--worker-urls", "http://w0:8000", NULL};
    assert_int_equal(parse_as(&cfg, true, plain), 0);
    assert_int_equal(cfg.port, 30000);
    assert_string_equal(cfg.vr_policy, "cache_aware");
    assert_non_null(strstr(cfg.config_text, "type: cache-aware-picker"));
    assert_non_null(strstr(cfg.config_text, "cacheThreshold: 0.29999999999999999"));
    router_config_free(&cfg);

    /* cache_aware takes vllm-router's thresholds. */
    const char *ca[] = {"--pd-disaggregation", "--prefill", "http://a:1", "--decode",
                        "http://b:2", "--cache-threshold", "0.5", "--balance-abs-threshold",
                        "32", "--decode-policy", "random", NULL};
    assert_int_equal(parse(&cfg, false, ca), 0);
    assert_non_null(strstr(cfg.config_text,
                           "name: prefill-policy\n  type: cache-aware-picker\n"
                           "  parameters: {cacheThreshold: 0.5, balanceAbsThreshold: 32, "
                           "balanceRelThreshold: 1.5}"));
    assert_non_null(strstr(cfg.config_text, "name: decode-policy\n  type: random-picker\n"));
    router_config_free(&cfg);
    const char *bad_ca[] = {"--worker-urls", "http://a:1", "--cache-threshold", "2", NULL};
    assert_int_equal(parse(&cfg, false, bad_ca), -1);
    router_config_free(&cfg);

    /* tandem's presets still work beside vllm-router's flags. */
    const char *preset[] = {"--worker-urls", "http://a:1", "--policy", "llm-d", NULL};
    assert_int_equal(parse(&cfg, false, preset), 0);
    assert_string_equal(cfg.policy, "llm-d");
    assert_null(cfg.config_text);
    router_config_free(&cfg);

    /* Plain tandem router flags keep tandem's defaults. */
    const char *tandem[] = {"--decode", "http://d:4", NULL};
    assert_int_equal(parse(&cfg, false, tandem), 0);
    assert_false(cfg.vr_mode);
    assert_int_equal(cfg.metrics_port, 9090);
    assert_int_equal(cfg.port, 8000);
    router_config_free(&cfg);
}

static void test_vllm_router_refusals(void **state)
{
    struct router_config cfg;
    const char *unknown[] = {"--worker-urls", "http://w:1", "--no-such-flag", NULL};
    assert_int_equal(parse(&cfg, false, unknown), -1);
    router_config_free(&cfg);
    const char *policy[] = {"--worker-urls", "http://w:1", "--policy", "bogus", NULL};
    assert_int_equal(parse(&cfg, false, policy), -1);
    router_config_free(&cfg);
    const char *both[] = {"--pd-disaggregation", "--vllm-pd-disaggregation", "--prefill",
                          "http://a:1", "--decode", "http://b:2", NULL};
    assert_int_equal(parse(&cfg, false, both), -1);
    router_config_free(&cfg);
    const char *none[] = {"--pd-disaggregation", NULL};
    assert_int_equal(parse(&cfg, false, none), -1);
    router_config_free(&cfg);
    const char *noworkers[] = {"--policy", "random", "--disable-retries", NULL};
    assert_int_equal(parse(&cfg, false, noworkers), -1);
    router_config_free(&cfg);
    const char *dp[] = {"--worker-urls", "http://w:1", "--intra-node-data-parallel-size", "0",
                        NULL};
    assert_int_equal(parse(&cfg, false, dp), -1);
    router_config_free(&cfg);
    const char *flag_url[] = {"--prefill", "--decode", "http://b:2", NULL};
    assert_int_equal(parse(&cfg, false, flag_url), -1);
    router_config_free(&cfg);
}

static void test_circuit_breaker(void **state)
{
    const uint64_t s = 1000000000ull;
    struct router_cb_config c = {.failure_threshold = 3, .success_threshold = 2,
                                 .timeout_ns = 10 * s};
    struct router_cb cb = {0};
    /* Closed: a success resets the failure streak. */
    assert_false(router_cb_record(&cb, &c, false, 1 * s));
    assert_false(router_cb_record(&cb, &c, false, 1 * s));
    assert_false(router_cb_record(&cb, &c, true, 1 * s));
    assert_false(router_cb_record(&cb, &c, false, 2 * s));
    assert_false(router_cb_record(&cb, &c, false, 2 * s));
    assert_int_equal(cb.state, ROUTER_CB_CLOSED);
    assert_true(router_cb_allow(&cb, &c, 2 * s));
    /* The threshold-th consecutive failure opens it: not allowed until the timeout. */
    assert_true(router_cb_record(&cb, &c, false, 3 * s));
    assert_int_equal(cb.state, ROUTER_CB_OPEN);
    assert_false(router_cb_allow(&cb, &c, 3 * s));
    assert_false(router_cb_allow(&cb, &c, 12 * s));
    /* Timeout: half-open, allowed; one failure opens it again (timeout starts over). */
    assert_true(router_cb_allow(&cb, &c, 13 * s));
    assert_int_equal(cb.state, ROUTER_CB_HALF_OPEN);
    assert_true(router_cb_record(&cb, &c, false, 14 * s));
    assert_int_equal(cb.state, ROUTER_CB_OPEN);
    assert_false(router_cb_allow(&cb, &c, 20 * s));
    assert_true(router_cb_allow(&cb, &c, 24 * s));
    /* Half-open: success_threshold successes close it. */
    assert_false(router_cb_record(&cb, &c, true, 25 * s));
    assert_int_equal(cb.state, ROUTER_CB_HALF_OPEN);
    assert_true(router_cb_record(&cb, &c, true, 25 * s));
    assert_int_equal(cb.state, ROUTER_CB_CLOSED);
    assert_string_equal(router_cb_state_name(ROUTER_CB_HALF_OPEN), "half_open");
    /* Disabled: never opens. */
    c.disabled = true;
    struct router_cb off = {0};
    for (int i = 0; i < 10; i++)
        assert_false(router_cb_record(&off, &c, false, 1 * s));
    assert_true(router_cb_allow(&off, &c, 1 * s));
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_specs_and_defaults),
        cmocka_unit_test(test_gaie_flag_spellings),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sidecar_ssrf_default_on),
        cmocka_unit_test(test_vllm_router_seed_command_line),
        cmocka_unit_test(test_vllm_router_flag_forms),
        cmocka_unit_test(test_vllm_router_refusals),
        cmocka_unit_test(test_circuit_breaker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

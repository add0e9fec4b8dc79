/* The router's and the sidecar's command lines (router/config.c, router/sidecar.c):
 * endpoint specs, defaults of the safety flags, GAIE's flag spellings, and refusals. */
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
    assert_string_equal(cfg.endpoints[2].name, "prefill-0");
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

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_specs_and_defaults),
        cmocka_unit_test(test_gaie_flag_spellings),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sidecar_ssrf_default_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

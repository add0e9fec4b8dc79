/* GAIE's conformance-test plugins: header-based-testing-filter (every header shape llm-d's
 * filter handles: absent, blank, IP, IP:port, bracketed IPv6, order, de-duplication by IP,
 * same IP on two ports, junk items) and destination-endpoint-served-verifier (the three
 * outcomes of its metadata lookup). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

static void add_ep(struct sched_datastore *ds, const char *name, const char *host, int port)
{
    struct sched_endpoint_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.host = host;
    spec.port = port;
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);
}

static struct sched_datastore *the_ds(void)
{
    struct sched_datastore *ds = sched_ds_new();
    add_ep(ds, "a", "10.0.0.1", 8000);
    add_ep(ds, "b", "10.0.0.2", 8000);
    add_ep(ds, "c", "10.0.0.3", 3000);
    add_ep(ds, "v6a", "fd00::1", 3000);
    add_ep(ds, "v6b", "[fd00::2]", 8000);
    add_ep(ds, "p1", "10.0.0.5", 8000);
    add_ep(ds, "p2", "10.0.0.5", 8001);
    return ds;
}

/* The filter's survivors for a header value (NULL: no header), as "n1,n2,...". */
static void survivors(struct sched *s, const char *hv, char *out, size_t cap)
{
    struct sched_request req = tu_req("hello", "m");
    struct tu_headers th;
    if (hv) {
        tu_headers_set(&th, "test-epp-endpoint-selection", hv);
        req.headers = &th.h;
    }
    struct sched_result res;
    json_t *t = tu_trace(s, &req, true, &res);
    json_t *f = json_array_get(
        json_object_get(json_array_get(json_object_get(t, "profiles"), 0), "filters"), 0);
    assert_string_equal(json_string_value(json_object_get(f, "name")),
                        "header-based-testing-filter");
    json_t *sv = json_object_get(f, "survivors");
    out[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < json_array_size(sv); i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "",
                                json_string_value(json_array_get(sv, i)));
    /* no survivor: the request is refused, as llm-d's scheduler does */
    assert_int_equal(res.status, json_array_size(sv) ? 0 : 503);
    sched_result_release(&res);
    json_decref(t);
}

static void expect(struct sched *s, const char *hv, const char *want)
{
    char got[256];
    survivors(s, hv, got, sizeof got);
    if (strcmp(got, want))
        fail_msg("header %s%s%s: survivors '%s', want '%s'", hv ? "'" : "", hv ? hv : "(none)",
                 hv ? "'" : "", got, want);
}

static void test_header_filter(void **state)
{
    (void)state;
    struct sched_datastore *ds = the_ds();
    struct sched *s = tu_one(ds, "header-based-testing-filter", NULL);
    /* no header, an empty one, a blank one, only separators: nothing */
    expect(s, NULL, "");
    expect(s, "", "");
    expect(s, "   ", "");
    expect(s, " , ,, ", "");
    /* IP only, IP:port exact, a wrong port, an unknown IP */
    expect(s, "10.0.0.2", "b");
    expect(s, " 10.0.0.2:8000 ", "b");
    expect(s, "10.0.0.2:8001", "");
    expect(s, "10.0.0.9", "");
    /* header order, not the candidates' */
    expect(s, "10.0.0.3,10.0.0.1", "c,a");
    expect(s, "10.0.0.9, 10.0.0.3:3000 ,10.0.0.2:1", "c");
    /* each IP once: the first item naming it wins */
    expect(s, "10.0.0.1,10.0.0.1:8000,10.0.0.1", "a");
    /* bracketed IPv6 with a port, bare IPv6, bracketed IPv6 without a port; an endpoint
     * host written with brackets compares without them */
    expect(s, "[fd00::1]:3000,fd00::2", "v6a,v6b");
    expect(s, "[fd00::2]", "v6b");
    expect(s, "[fd00::2]:8000", "v6b");
    expect(s, "[fd00::1]:8000", "");
    /* one IP on two ports: IP:port picks that one; the bare IP the last candidate with it;
     * both ports listed keep only the first (de-duplication is by IP) */
    expect(s, "10.0.0.5:8001", "p2");
    expect(s, "10.0.0.5:8000", "p1");
    expect(s, "10.0.0.5", "p2");
    expect(s, "10.0.0.5:8000,10.0.0.5:8001", "p1");
    /* junk items are skipped, not fatal: too many colons, a name, an empty host with a
     * port; a trailing colon is no port (IP only); an unclosed bracket without a colon is
     * a bare IP once brackets are trimmed (llm-d's normalizeIP) */
    expect(s, "10.0.0.1:80:90,host-a,:8000,10.0.0.3:", "c");
    expect(s, "[10.0.0.2", "b");
    expect(s, "[10.0.0.2:8000", "");
    expect(s, "[10.0.0.2]x:8000,10.0.0.1]:8000", "");
    /* a port that is the same number written differently does not match (string compare) */
    expect(s, "10.0.0.1:08000", "");
    sched_free(s);
    sched_ds_free(ds);
}

static void test_header_filter_params_and_proxy_header_case(void **state)
{
    (void)state;
    struct sched_datastore *ds = the_ds();
    /* llm-d's factory ignores any parameters */
    struct sched *s = tu_one(ds, "header-based-testing-filter", "{anything: 1}");
    struct sched_request req = tu_req("hello", "m");
    struct tu_headers th;
    /* an HTTP client may send the header in any case */
    tu_headers_set(&th, "Test-EPP-Endpoint-Selection", "10.0.0.3");
    req.headers = &th.h;
    struct sched_result res;
    sched_schedule(s, &req, true, &res, NULL);
    assert_int_equal(res.status, 0);
    assert_string_equal(tu_pick(&res), "c");
    sched_result_release(&res);
    assert_false(sched_has_response_headers(s));
    sched_free(s);
    sched_ds_free(ds);
}

static void test_served_verifier(void **state)
{
    (void)state;
    struct sched_datastore *ds = the_ds();
    static const char cfg[] =
        "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
        "- type: destination-endpoint-served-verifier\n  name: verify\n"
        "- type: max-score-picker\n"
        "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: max-score-picker\n";
    struct errinfo err = {.msg = {0}};
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "<test>", &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_true(sched_has_response_headers(s));
    assert_false(sched_has_reporters(s)); /* no usage reporting: bodies are not kept */
    struct sched_resp_header h[SCHED_MAX_RESP_HEADERS];
    struct sched_lb_meta lb = {.has_lb = true, .served = "10.0.0.1:8080"};
    assert_int_equal(sched_response_headers(s, &lb, h, SCHED_MAX_RESP_HEADERS), 1);
    assert_string_equal(h[0].name, "x-conformance-test-served-endpoint");
    assert_string_equal(h[0].value, "10.0.0.1:8080");
    lb = (struct sched_lb_meta){.has_lb = true, .served = NULL};
    assert_int_equal(sched_response_headers(s, &lb, h, SCHED_MAX_RESP_HEADERS), 1);
    assert_string_equal(h[0].value, "fail: missing destination endpoint served metadata");
    lb = (struct sched_lb_meta){.has_lb = false, .served = NULL};
    assert_int_equal(sched_response_headers(s, &lb, h, SCHED_MAX_RESP_HEADERS), 1);
    assert_string_equal(h[0].value, "fail: missing envoy lb metadata");
    assert_int_equal(sched_response_headers(s, NULL, h, SCHED_MAX_RESP_HEADERS), 1);
    assert_string_equal(h[0].value, "fail: missing envoy lb metadata");
    assert_int_equal(sched_response_headers(s, &lb, h, 0), 0);
    sched_free(s);
    /* a config without it sets no header */
    s = tu_one(ds, "max-score-picker", NULL);
    assert_false(sched_has_response_headers(s));
    assert_int_equal(sched_response_headers(s, &lb, h, SCHED_MAX_RESP_HEADERS), 0);
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_filter),
        cmocka_unit_test(test_header_filter_params_and_proxy_header_case),
        cmocka_unit_test(test_served_verifier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The loader rules and plugin types that the EndpointPickerConfigs in llm-d's docs and
 * plugin READMEs need (the *-md-block files in tests/data/epp-configs/llm-d-inference-scheduler):
 * a document without schedulingProfiles gets llm-d's default profile, `data` is the old
 * name of `dataLayer`, and each plugin added for them shows its effect here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

static struct sched *load_ok(struct sched_datastore *ds, const char *cfg)
{
    struct errinfo err;
    memset(&err, 0, sizeof err);
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "a.yaml", &err);
    if (!s)
        fail_msg("%s", err.msg);
    return s;
}

static void expect_error(const char *cfg, const char *want)
{
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    memset(&err, 0, sizeof err);
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "c.yaml", &err);
    bool ok = s != NULL;
    sched_free(s);
    sched_ds_free(ds);
    if (ok)
        fail_msg("loaded, expected %s", want);
    if (!strstr(err.msg, want))
        fail_msg("expected '%s', got '%s'", want, err.msg);
}

/* The pod picked for prompt p (a real, non-dry schedule). */
static const char *pick(struct sched *s, const char *p)
{
    static char name[64];
    struct sched_request req = tu_req(p, "m");
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    snprintf(name, sizeof name, "%s", tu_pick(&r));
    sched_result_release(&r);
    return name;
}

/* --- no schedulingProfiles: llm-d's default profile ---------------------------------------- */

static void test_default_profile(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, "gpu.type", "a100");
    tu_add(ds, "b", SCHED_ROLE_BOTH, "gpu.type", "h100");
    tu_add(ds, "c", SCHED_ROLE_BOTH, NULL, NULL);
    /* the filter alone, as by-label's README shows it: every request goes to the a100 pod */
    struct sched *s = load_ok(ds, "plugins:\n  - type: by-label\n    parameters:\n"
                                  "      label: gpu.type\n      validValues: [a100]\n"
                                  "      allowsNoLabel: false\n");
    assert_int_equal(s->n_profiles, 1);
    assert_string_equal(s->profiles[0].name, "default");
    for (int i = 0; i < 20; i++) {
        char p[16];
        snprintf(p, sizeof p, "p%d", i);
        assert_string_equal(pick(s, p), "a");
    }
    sched_free(s);
    /* scorers join with weight 1, the picker given is the profile's; an empty list too */
    tu_metrics(ds, "a", 9, 0, 0);
    tu_metrics(ds, "b", 0, 0, 0);
    tu_metrics(ds, "c", 5, 0, 0);
    s = load_ok(ds, "plugins:\n- type: queue-scorer\n- type: max-score-picker\n"
                    "schedulingProfiles: []\n");
    assert_int_equal(s->profiles[0].n_scorers, 1);
    assert_true(s->profiles[0].scorers[0].weight == 1);
    assert_string_equal(s->profiles[0].picker->name, "max-score-picker");
    assert_string_equal(pick(s, "x"), "b");
    sched_free(s);
    sched_ds_free(ds);

    expect_error("plugins:\n- type: random-picker\n- type: max-score-picker\n",
                 "c.yaml:1: schedulingProfiles: none given, and the default profile would get "
                 "two pickers ('random-picker', 'max-score-picker')");
    /* a handler that names profiles the document lacks is refused at load */
    expect_error("plugins:\n- type: disagg-profile-handler\n",
                 "plugins[0].parameters.profiles.decode: profile 'decode' is not in "
                 "schedulingProfiles");
}

/* --- `data`, dataLayer's name before April 2026 --------------------------------------------- */

#define DL_HEAD                                                                                    \
    "plugins:\n- type: metrics-data-source\n  parameters: {path: /m2}\n"                           \
    "- type: core-metrics-extractor\n- type: queue-scorer\n"

static void test_data_alias(void **state)
{
    (void)state;
    /* loaded like dataLayer: its references are checked, not ignored */
    expect_error(DL_HEAD "data:\n  sources:\n  - pluginRef: queue-scorer\n",
                 "c.yaml:8: dataLayer.sources[0].pluginRef: 'queue-scorer' is a scorer");
    expect_error(DL_HEAD "data:\n  sources:\n  - pluginRef: metrics-data-source\n"
                         "    extractors:\n    - pluginRef: nope\n",
                 "extractors[0].pluginRef: no plugin named 'nope' in plugins");
    expect_error(DL_HEAD "data: {sources: []}\ndataLayer: {sources: []}\n",
                 "data: give dataLayer or its old name data, not both");
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = load_ok(ds, DL_HEAD "data:\n  sources:\n  - pluginRef: metrics-data-source\n"
                                          "    extractors:\n"
                                          "    - pluginRef: core-metrics-extractor\n");
    assert_string_equal(sched_metrics_path(s), "/m2");
    sched_free(s);
    sched_ds_free(ds);
}

/* --- context-length-aware ------------------------------------------------------------------- */

static struct sched_datastore *ctx_ds(void)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "short", SCHED_ROLE_BOTH, "llm-d.ai/context-length-range", "0-2048");
    tu_add(ds, "long", SCHED_ROLE_BOTH, "llm-d.ai/context-length-range", "2048 - 8192");
    tu_add(ds, "any", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "bad", SCHED_ROLE_BOTH, "llm-d.ai/context-length-range", "8192-2048");
    return ds;
}

static void test_context_length_aware(void **state)
{
    (void)state;
    struct sched_datastore *ds = ctx_ds();
    struct sched *s = tu_one(ds, "context-length-aware", NULL);
    /* 4000 characters, no token count: llm-d's estimate, 1000 tokens */
    char *prompt = malloc(4001);
    memset(prompt, 'x', 4000);
    prompt[4000] = 0;
    struct sched_request req = tu_req(prompt, "m");
    req.prompt_tokens = 0;
    struct sched_result r;
    json_t *t = tu_trace(s, &req, true, &r);
    /* in range: 0.3 + (0.7 / (1 + width/10000) + 0.3 x headroom/width) x 0.7 */
    double in = 0.3 + (0.7 / (1 + 2048 / 10000.0) + 0.3 * (2048 - 1000) / 2048.0) * 0.7;
    assert_true(fabs(tu_score(t, 0, 0, "short") - in) < 1e-5);
    /* out of range by 1048 tokens: 0.3 / (1 + 1048/1000) */
    assert_true(fabs(tu_score(t, 0, 0, "long") - 0.3 / 2.048) < 1e-5);
    assert_true(tu_score(t, 0, 0, "any") == 0.5);
    assert_true(tu_score(t, 0, 0, "bad") == 0);
    assert_string_equal(tu_pick(&r), "short");
    json_decref(t);
    sched_result_release(&r);
    /* the engine's count wins over the estimate: 5000 tokens belong on the long pod */
    req.prompt_tokens = 5000;
    sched_schedule(s, &req, true, &r, NULL);
    assert_string_equal(tu_pick(&r), "long");
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);

    /* enableFiltering: out-of-range and badly labelled pods are dropped, unlabelled kept */
    ds = ctx_ds();
    s = tu_one(ds, "context-length-aware", "{enableFiltering: true}");
    req.prompt_tokens = 0;
    t = tu_trace(s, &req, true, &r);
    json_t *surv = json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(t, "profiles"), 0), "filters"), 0),
        "survivors");
    assert_int_equal(json_array_size(surv), 2);
    assert_string_equal(json_string_value(json_array_get(surv, 0)), "short");
    assert_string_equal(json_string_value(json_array_get(surv, 1)), "any");
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    /* a custom label; the README's configs load (one with a token-producer) */
    s = tu_one(ds, "context-length-aware", "{label: tier, enableFiltering: true}");
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.n_picks, 1); /* no pod has "tier": all pass */
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
    free(prompt);

    expect_error("plugins:\n- type: context-length-aware\n  parameters: {label: ''}\n",
                 "plugins[0].parameters.label: must be specified");
    expect_error("plugins:\n- type: context-length-aware\n  parameters: {enableFiltering: 1}\n",
                 "plugins[0].parameters.enableFiltering");
    expect_error("plugins:\n- type: context-length-aware\n  parameters: {labels: x}\n",
                 "plugins[0].parameters.labels");
}

/* --- prefix-cache-affinity-filter, approx-prefix-cache-producer ----------------------------- */

static json_t *survivors(json_t *trace)
{
    return json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(trace, "profiles"), 0), "filters"), 0),
        "survivors");
}

#define AFF_CFG(prefix_type, params)                                                               \
    "plugins:\n- type: prefix-cache-affinity-filter\n  parameters: " params "\n"                   \
    "- type: " prefix_type "\n  parameters: {blockSizeTokens: 4, autoTune: false}\n"               \
    "- type: random-picker\n"

static void affinity_case(const char *cfg, size_t want_after_learning)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "c", SCHED_ROLE_BOTH, NULL, NULL);
    struct sched *s = load_ok(ds, cfg);
    static const char p[] = "You are a helpful assistant. Answer briefly: what is 2+2?";
    struct sched_request req = tu_req(p, "m");
    /* nothing learned yet: no pod is sticky, all are kept */
    struct sched_result r;
    json_t *t = tu_trace(s, &req, true, &r);
    assert_int_equal(json_array_size(survivors(t)), 3);
    json_decref(t);
    sched_result_release(&r);
    char first[8];
    snprintf(first, sizeof first, "%s", pick(s, p));
    /* the pod that served the prompt holds all of it now: only it passes */
    t = tu_trace(s, &req, true, &r);
    json_t *sv = survivors(t);
    assert_int_equal(json_array_size(sv), want_after_learning);
    if (want_after_learning == 1) {
        assert_string_equal(json_string_value(json_array_get(sv, 0)), first);
        for (int i = 0; i < 20; i++) /* the random picker has one choice left */
            assert_string_equal(pick(s, p), first);
    }
    json_decref(t);
    sched_result_release(&r);
    /* a prompt sharing nothing with it: nobody is sticky, all kept */
    struct sched_request other =
        tu_req("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "m");
    t = tu_trace(s, &other, true, &r);
    assert_int_equal(json_array_size(survivors(t)), 3);
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_prefix_cache_affinity_filter(void **state)
{
    (void)state;
    affinity_case(AFF_CFG("prefix-cache-scorer", "{explorationProbability: 0}"), 1);
    /* the producer feeds the filter the same way, scoring nothing itself */
    affinity_case(AFF_CFG("approx-prefix-cache-producer", "{explorationProbability: 0}"), 1);
    /* exploration 1: the gate is always skipped */
    affinity_case(AFF_CFG("prefix-cache-scorer", "{explorationProbability: 1}"), 3);
    /* a threshold above the share cached: a 16-token prompt is 4 blocks; all 4 cached
     * passes 1.0 */
    affinity_case(
        AFF_CFG("prefix-cache-scorer", "{explorationProbability: 0, affinityThreshold: 1.0}"), 1);

    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = load_ok(ds, AFF_CFG("approx-prefix-cache-producer", "{}"));
    assert_int_equal(s->profiles[0].n_scorers, 0);
    assert_int_equal(s->profiles[0].n_filters, 1);
    sched_free(s);
    sched_ds_free(ds);

    expect_error(AFF_CFG("prefix-cache-scorer", "{affinityThreshold: 1.5}"),
                 "plugins[0].parameters.affinityThreshold: must be <= 1.0, got 1.5");
    expect_error(AFF_CFG("prefix-cache-scorer", "{explorationProbability: -0.1}"),
                 "plugins[0].parameters.explorationProbability: must be in [0, 1], got -0.1");
    expect_error(AFF_CFG("prefix-cache-scorer", "{maxTTFTPenaltyMs: -1}"),
                 "plugins[0].parameters.maxTTFTPenaltyMs: must be >= 0, got -1");
    expect_error(AFF_CFG("prefix-cache-scorer", "{threshold: 1}"),
                 "plugins[0].parameters.threshold");
}

/* --- plugins that cannot act here: exactly one WARN line at load each ------------------------ */

static int log_pipe[2];

static char *capture_load(const char *cfg, bool *loaded)
{
    static char out[8192];
    assert_int_equal(pipe(log_pipe), 0);
    fcntl(log_pipe[0], F_SETFL, O_NONBLOCK);
    log_set_fd(log_pipe[1]);
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    memset(&err, 0, sizeof err);
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "w.yaml", &err);
    *loaded = s != NULL;
    if (!s)
        fprintf(stderr, "%s\n", err.msg);
    sched_free(s);
    sched_ds_free(ds);
    log_set_fd(2);
    ssize_t n = read(log_pipe[0], out, sizeof out - 1);
    out[n > 0 ? n : 0] = 0;
    close(log_pipe[0]);
    close(log_pipe[1]);
    return out;
}

static size_t count(const char *hay, const char *needle)
{
    size_t k = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        k++;
    return k;
}

static void one_warning(const char *cfg, const char *type, const char *why)
{
    bool loaded;
    char *log = capture_load(cfg, &loaded);
    assert_true(loaded);
    char tag[96];
    snprintf(tag, sizeof tag, "WARN  sched: %s", type);
    if (count(log, tag) != 1 || count(log, "\n") != 1 || !strstr(log, why))
        fail_msg("%s: want one WARN line with '%s', got:\n%s", type, why, log);
}

static void test_inert_plugins_warn_once(void **state)
{
    (void)state;
    one_warning("plugins:\n- type: disagg-headers-handler\n"
                "  parameters: {prefillProfile: my-prefill}\n",
                "disagg-headers-handler", "tandem itself sets x-prefiller-host-port");
    one_warning("plugins:\n- {name: g, type: vllmgrpc-parser}\n- type: max-score-picker\n"
                "parser: {pluginRef: g}\n",
                "vllmgrpc-parser", "OpenAI JSON bodies only");
    one_warning("plugins:\n- type: static-usage-limit-policy\n  parameters: {threshold: 0.8}\n",
                "static-usage-limit-policy", "no flow-control layer");
    one_warning("plugins:\n- type: latency-slo-admitter\n", "latency-slo-admitter",
                "needs latency predictions");
    one_warning("plugins:\n- type: slo-headroom-tier-filter\n", "slo-headroom-tier-filter",
                "predicted latency headroom");
    one_warning("plugins:\n- type: models-data-source\n  parameters: {scheme: https}\n"
                "- type: queue-scorer\n"
                "dataLayer: {sources: [{pluginRef: models-data-source}]}\n",
                "models-data-source", "not polled");
    one_warning("plugins:\n- type: models-data-extractor\n", "models-data-extractor",
                "no scheduling plugin reads");
    one_warning("plugins:\n- type: k8s-notification-source\n"
                "  parameters: {group: '', version: v1, kind: Pod}\n",
                "k8s-notification-source", "v1/Pod changes");
    one_warning("plugins:\n- type: prefix-cache-affinity-filter\n", "prefix-cache-affinity-filter",
                "no prefix data");

    /* and they change nothing: the admitter admits a sheddable request, the tier filter
     * keeps every pod */
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    for (int i = 0; i < 2; i++) { /* fresh metrics, under the default saturation limits */
        struct sched_endpoint *e = sched_ds_find(ds, i ? "b" : "a");
        struct sched_endpoint_metrics m;
        memset(&m, 0, sizeof m);
        m.have = m.healthy = true;
        m.kv_usage = 0.5;
        m.scraped_at_ns = clock_monotonic_ns();
        sched_endpoint_set_scraped(e, &m);
        sched_endpoint_unref(e);
    }
    struct sched *s = load_ok(ds, "plugins:\n- type: latency-slo-admitter\n"
                                  "- type: slo-headroom-tier-filter\n");
    struct sched_request req = tu_req("x", "m");
    req.priority = -1;
    struct sched_result r;
    json_t *t = tu_trace(s, &req, true, &r);
    if (r.status)
        fail_msg("%d %s", r.status, r.reason);
    assert_int_equal(json_array_size(survivors(t)), 2);
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);

    expect_error("plugins:\n- type: static-usage-limit-policy\n  parameters: {threshold: 0}\n",
                 "plugins[0].parameters.threshold: must be in (0.0, 1.0], got 0");
    expect_error(
        "plugins:\n- type: slo-headroom-tier-filter\n  parameters: {epsilonExploreNeg: 2}\n",
        "plugins[0].parameters.epsilonExploreNeg: must be in [0, 1], got 2");
    expect_error("plugins:\n- type: models-data-source\n  parameters: {scheme: ftp}\n",
                 "plugins[0].parameters.scheme: must be http or https, got 'ftp'");
    expect_error("plugins:\n- type: models-data-source\n  parameters: {path: v1/models}\n",
                 "plugins[0].parameters.path: must be an absolute URL path");
    expect_error("plugins:\n- type: k8s-notification-source\n",
                 "plugins[0].parameters: k8s-notification-source requires parameters");
    expect_error("plugins:\n- type: k8s-notification-source\n  parameters: {version: v1}\n",
                 "plugins[0].parameters.kind: version and kind are required");
    expect_error("plugins:\n- type: vllmgrpc-parser\n  parameters: {x: 1}\n",
                 "plugins[0].parameters.x");
    expect_error("plugins:\n- type: disagg-headers-handler\n  parameters: {prefillProfile: 1}\n",
                 "plugins[0].parameters.prefillProfile");
    expect_error("plugins:\n- type: static-usage-limit-policy\n- type: max-score-picker\n"
                 "parser: {pluginRef: static-usage-limit-policy}\n",
                 "parser.pluginRef: 'static-usage-limit-policy' is a flow-control policy, not a "
                 "parser");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_profile),
        cmocka_unit_test(test_data_alias),
        cmocka_unit_test(test_context_length_aware),
        cmocka_unit_test(test_prefix_cache_affinity_filter),
        cmocka_unit_test(test_inert_plugins_warn_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

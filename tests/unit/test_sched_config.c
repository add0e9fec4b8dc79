/* Unit tests for the EndpointPickerConfig loader: router.md's example loads unchanged
 * (and behaves as a P/D config), JSON works too, every --policy preset loads, and each
 * refusal names the file, line and field exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sched/sched_internal.h"
#include "test_sched_util.h"

/* router.md's example, byte for byte. */
static const char router_example[] =
    "apiVersion: llm-d.ai/v1alpha1      # inference.networking.x-k8s.io/v1alpha1 also accepted\n"
    "kind: EndpointPickerConfig\n"
    "plugins:\n"
    "- type: prefill-filter\n"
    "- type: decode-filter\n"
    "- type: prefix-cache-scorer\n"
    "  parameters: {blockSize: 64}\n"
    "- type: queue-scorer\n"
    "- type: pd-profile-handler\n"
    "  parameters: {threshold: 100}\n"
    "schedulingProfiles:\n"
    "- name: prefill\n"
    "  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer, weight: 2}, "
    "{pluginRef: queue-scorer}]\n"
    "- name: decode\n"
    "  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer, weight: 2}, "
    "{pluginRef: queue-scorer}]\n";

static void test_router_example_loads(void **state)
{
    struct sched_datastore *ds = tu_pd_ds();
    struct errinfo err;
    struct sched *s = sched_new(ds, router_example, strlen(router_example), "epp.yaml", &err);
    if (!s)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(s);
    assert_int_equal(s->n_profiles, 2);
    assert_string_equal(s->handler->t->type, "pd-profile-handler");
    char longp[300];
    memset(longp, 'q', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    struct sched_request req = tu_req(longp, "m");
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(r.prefill);
    assert_string_equal(sched_endpoint_name(r.prefill), "prefill-0");
    assert_int_equal(sched_endpoint_role(r.picks[0]), SCHED_ROLE_DECODE);
    sched_result_release(&r);
    sched_free(s);

    /* The other accepted apiVersion, and JSON text. */
    const char *json = "{\"apiVersion\":\"inference.networking.x-k8s.io/v1alpha1\","
                       "\"kind\":\"EndpointPickerConfig\",\"plugins\":[{\"type\":\"queue-scorer\","
                       "\"name\":\"q\"},{\"type\":\"random-picker\",\"parameters\":"
                       "{\"maxNumOfEndpoints\":2}}],\"schedulingProfiles\":[{\"name\":\"x\","
                       "\"plugins\":[{\"pluginRef\":\"q\",\"weight\":1.5},"
                       "{\"pluginRef\":\"random-picker\"}]}]}";
    s = sched_new(ds, json, strlen(json), "epp.json", &err);
    if (!s)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(s);
    assert_true(s->profiles[0].scorers[0].weight == 1.5);
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.n_picks, 2);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_presets_and_default(void **state)
{
    struct sched_datastore *ds = tu_pd_ds();
    const char *names[] = {"round_robin", "random", "consistent_hash", "power_of_two",
                           "cache_aware", "llm-d"};
    const char *pickers[] = {"round-robin-picker", "random-picker", "consistent-hash-picker",
                             "power-of-two-picker", "cache-aware-picker", "max-score-picker"};
    for (size_t i = 0; i < 6; i++) {
        const char *text = sched_policy_config(names[i]);
        assert_non_null(text);
        struct errinfo err;
        struct sched *s = sched_new(ds, text, strlen(text), names[i], &err);
        if (!s)
            fprintf(stderr, "%s: %s\n", names[i], err.msg);
        assert_non_null(s);
        assert_string_equal(s->profiles[0].picker->t->type, pickers[i]);
        struct sched_request req = tu_req("hello", "m");
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        assert_int_equal(r.status, 0);
        sched_result_release(&r);
        sched_free(s);
    }
    assert_null(sched_policy_config("nope"));
    assert_null(sched_policy_config(NULL));

    /* NULL text: queue 2, kv 2, prefix 3, max-score, single profile, no filter. */
    struct sched *s = sched_new(ds, NULL, 0, NULL, NULL);
    assert_non_null(s);
    assert_int_equal(s->n_profiles, 1);
    assert_int_equal(s->profiles[0].n_filters, 0);
    assert_int_equal(s->profiles[0].n_scorers, 3);
    assert_string_equal(s->profiles[0].scorers[0].p->t->type, "queue-scorer");
    assert_true(s->profiles[0].scorers[0].weight == 2);
    assert_string_equal(s->profiles[0].scorers[1].p->t->type, "kv-cache-utilization-scorer");
    assert_true(s->profiles[0].scorers[1].weight == 2);
    assert_string_equal(s->profiles[0].scorers[2].p->t->type, "prefix-cache-scorer");
    assert_true(s->profiles[0].scorers[2].weight == 3);
    assert_string_equal(s->profiles[0].picker->t->type, "max-score-picker");
    assert_string_equal(s->handler->t->type, "single-profile-handler");
    sched_free(s);
    sched_ds_free(ds);
}

/* Loads text and expects exactly msg. */
static void expect_error(const char *text, const char *msg)
{
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    memset(&err, 0, sizeof err);
    struct sched *s = sched_new(ds, text, strlen(text), "cfg.yaml", &err);
    if (s || strcmp(err.msg, msg) != 0)
        fprintf(stderr, "want: %s\ngot:  %s\n", msg, s ? "(loaded)" : err.msg);
    assert_null(s);
    assert_string_equal(err.msg, msg);
    sched_ds_free(ds);
}

#define HEAD "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
#define PROFILE(refs) "schedulingProfiles:\n- name: default\n  plugins: " refs "\n"

static void test_error_unknown_type(void **state)
{
    expect_error(HEAD "- type: queue-scorer\n- type: no-such-scorer\n"
                      PROFILE("[{pluginRef: queue-scorer}]"),
                 "cfg.yaml:5: plugins[1].type: unknown plugin type 'no-such-scorer'");
    expect_error(HEAD "- name: q\n" PROFILE("[{pluginRef: q}]"),
                 "cfg.yaml:4: plugins[0].type: required");
}

static void test_error_parameters(void **state)
{
    expect_error(HEAD "- type: prefix-cache-scorer\n  parameters:\n    blockSize: 64\n"
                      "    bogus: 1\n" PROFILE("[{pluginRef: prefix-cache-scorer}]"),
                 "cfg.yaml:7: plugins[0].parameters.bogus: unknown parameter");
    expect_error(HEAD "- type: queue-scorer\n- type: prefix-cache-scorer\n  parameters:\n"
                      "    blockSize: big\n" PROFILE("[{pluginRef: queue-scorer}]"),
                 "cfg.yaml:7: plugins[1].parameters.blockSize: must be an integer, got string");
    expect_error(HEAD "- type: by-label\n  parameters: {label: zone, allowsNoLabel: 3}\n"
                      PROFILE("[{pluginRef: by-label}]"),
                 "cfg.yaml:5: plugins[0].parameters.allowsNoLabel: must be a boolean, got integer");
    expect_error(HEAD "- type: max-score-picker\n  parameters: {maxNumOfEndpoints: 0}\n"
                      PROFILE("[{pluginRef: max-score-picker}]"),
                 "cfg.yaml:5: plugins[0].parameters.maxNumOfEndpoints: must be between 1 and 8");
    expect_error(HEAD "- type: label-selector-filter\n  parameters:\n    matchExpressions:\n"
                      "    - {key: zone, operator: Near, values: [a]}\n"
                      PROFILE("[{pluginRef: label-selector-filter}]"),
                 "cfg.yaml:7: plugins[0].parameters.matchExpressions[0].operator: must be In, "
                 "NotIn, Exists or DoesNotExist");
    expect_error(HEAD "- type: queue-scorer\n  parameters: 5\n" PROFILE("[{pluginRef: queue-scorer}]"),
                 "cfg.yaml:5: plugins[0].parameters: must be a mapping");
}

static void test_error_refs_and_weights(void **state)
{
    expect_error(HEAD "- type: queue-scorer\n"
                      "schedulingProfiles:\n- name: default\n  plugins:\n"
                      "  - pluginRef: queue-scorer\n  - pluginRef: nope\n",
                 "cfg.yaml:9: schedulingProfiles[0].plugins[1].pluginRef: no plugin named 'nope' "
                 "in plugins");
    expect_error(HEAD "- type: queue-scorer\n"
                      "schedulingProfiles:\n- name: default\n  plugins:\n"
                      "  - pluginRef: queue-scorer\n    weight: -1\n",
                 "cfg.yaml:9: schedulingProfiles[0].plugins[0].weight: must be a non-negative "
                 "number, got -1");
    expect_error(HEAD "- type: queue-scorer\n"
                      "schedulingProfiles:\n- name: default\n  plugins:\n"
                      "  - pluginRef: queue-scorer\n    weight: heavy\n",
                 "cfg.yaml:9: schedulingProfiles[0].plugins[0].weight: must be a number");
    expect_error(HEAD "- type: queue-scorer\n- type: random-picker\n- type: max-score-picker\n"
                      PROFILE("[{pluginRef: random-picker}, {pluginRef: max-score-picker}]"),
                 "cfg.yaml:9: schedulingProfiles[0].plugins[1].pluginRef: profile already has "
                 "picker 'random-picker'");
    expect_error(HEAD "- type: always-disagg-pd-decider\n"
                      PROFILE("[{pluginRef: always-disagg-pd-decider}]"),
                 "cfg.yaml:7: schedulingProfiles[0].plugins[0].pluginRef: "
                 "'always-disagg-pd-decider' is a P/D decider, not a filter, scorer or picker");
}

static void test_error_duplicates(void **state)
{
    expect_error(HEAD "- type: queue-scorer\n  name: q\n- type: kv-cache-utilization-scorer\n"
                      "  name: q\n" PROFILE("[{pluginRef: q}]"),
                 "cfg.yaml:7: plugins[1].name: duplicate plugin name 'q'");
    expect_error(HEAD "- type: queue-scorer\n- type: queue-scorer\n" PROFILE("[{pluginRef: q}]"),
                 "cfg.yaml:5: plugins[1].name: duplicate plugin name 'queue-scorer'");
    expect_error(HEAD "- type: queue-scorer\n- type: pd-profile-handler\n"
                      "schedulingProfiles:\n- name: decode\n  plugins: []\n"
                      "- name: decode\n  plugins: []\n",
                 "cfg.yaml:9: schedulingProfiles[1].name: duplicate profile name 'decode'");
    expect_error(HEAD "- type: single-profile-handler\n- type: pd-profile-handler\n"
                      PROFILE("[]"),
                 "cfg.yaml:5: plugins[1]: only one profile handler allowed "
                 "('single-profile-handler' is already one)");
}

static void test_error_missing_profiles(void **state)
{
    expect_error(HEAD "- type: decode-filter\n- type: pd-profile-handler\n"
                      "schedulingProfiles:\n- name: decode\n  plugins: [{pluginRef: decode-filter}]\n",
                 "cfg.yaml:5: plugins[1].parameters.prefillProfile: profile 'prefill' is not in "
                 "schedulingProfiles");
    expect_error(HEAD "- type: decode-filter\n- type: pd-profile-handler\n"
                      "  parameters: {decodeProfile: dec}\n"
                      "schedulingProfiles:\n- name: decode\n  plugins: [{pluginRef: decode-filter}]\n"
                      "- name: prefill\n  plugins: []\n",
                 "cfg.yaml:6: plugins[1].parameters.decodeProfile: profile 'dec' is not in "
                 "schedulingProfiles");
    expect_error(HEAD "- type: disagg-profile-handler\n  parameters: {deciders: {prefill: nope}}\n"
                      "schedulingProfiles:\n- name: decode\n  plugins: []\n"
                      "- name: prefill\n  plugins: []\n",
                 "cfg.yaml:5: plugins[0].parameters.deciders.prefill: 'nope' is not a P/D decider "
                 "plugin");
    expect_error(HEAD "- type: disagg-profile-handler\n  parameters: {profiles: 3}\n" PROFILE("[]"),
                 "cfg.yaml:5: plugins[0].parameters.profiles: must be a mapping, got integer");
    expect_error(HEAD "- type: disagg-profile-handler\n  parameters: {profiles: {decod: x}}\n"
                      PROFILE("[]"),
                 "cfg.yaml:5: plugins[0].parameters.profiles.decod: unknown parameter");
    expect_error(HEAD "- type: queue-scorer\n"
                      "schedulingProfiles:\n- name: a\n  plugins: []\n- name: b\n  plugins: []\n",
                 "cfg.yaml:6: schedulingProfiles: single-profile-handler needs exactly one "
                 "profile, got 2");
}

static void test_error_document(void **state)
{
    expect_error("apiVersion: v1\nkind: EndpointPickerConfig\nplugins: []\n"
                 "schedulingProfiles: []\n",
                 "cfg.yaml:1: apiVersion: must be llm-d.ai/v1alpha1 or "
                 "inference.networking.x-k8s.io/v1alpha1");
    expect_error("apiVersion: llm-d.ai/v1alpha1\nkind: Pod\nplugins: []\n",
                 "cfg.yaml:2: kind: must be EndpointPickerConfig");
    expect_error(HEAD "- type: queue-scorer\nschedulingProfile:\n- name: default\n",
                 "cfg.yaml:6: schedulingProfile: unknown field");
    /* A value without a recorded position (an empty list) falls back to its entry. */
    expect_error(HEAD "- type: by-label\n  parameters:\n    label: zone\n"
                      "    allowsNoLabel: true\n    validValues: {}\n"
                      PROFILE("[{pluginRef: by-label}]"),
                 "cfg.yaml:4: plugins[0].parameters.validValues: must be a list of strings");
    /* no schedulingProfiles is llm-d's default profile (test_sched_docs_plugins); a
     * mapping there is an error */
    expect_error(HEAD "- type: queue-scorer\nschedulingProfiles: {a: 1}\n",
                 "cfg.yaml:5: schedulingProfiles: must be a non-empty list");
    expect_error(HEAD "- type: queue-scorer\n  paramters: {x: 1}\n" PROFILE("[{pluginRef: queue-scorer}]"),
                 "cfg.yaml:5: plugins[0].paramters: unknown field");
    /* Invalid YAML: the parser's own message, which names the file. */
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    const char *bad = "plugins: [\n";
    assert_null(sched_new(ds, bad, strlen(bad), "cfg.yaml", &err));
    assert_int_equal(strncmp(err.msg, "cfg.yaml:", 9), 0);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_example_loads),
        cmocka_unit_test(test_presets_and_default),
        cmocka_unit_test(test_error_unknown_type),
        cmocka_unit_test(test_error_parameters),
        cmocka_unit_test(test_error_refs_and_weights),
        cmocka_unit_test(test_error_duplicates),
        cmocka_unit_test(test_error_missing_profiles),
        cmocka_unit_test(test_error_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

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

#include "base/err.h"
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

#define DL_HEAD "plugins:\n- type: metrics-data-source\n  parameters: {path: /m2}\n"            \
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_profile),
        cmocka_unit_test(test_data_alias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

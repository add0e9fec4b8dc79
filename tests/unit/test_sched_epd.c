/* E/P/D scheduling as llm-d does it: the role filters' label values (encode-filter and the
 * extended decode/prefill lists), always-disagg-multimodal-decider, and
 * disagg-profile-handler with deciders.encode, driven by llm-d's own sample configs
 * (tests/data/epp-configs/, loaded unchanged). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

#define DIR_ "tests/data/epp-configs/llm-d-inference-scheduler/"

static char *slurp(const char *file, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/" DIR_ "%s", TANDEM_SOURCE_DIR, file);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot read", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    *len = got;
    return b;
}

static struct sched *load_file(struct sched_datastore *ds, const char *file)
{
    size_t len;
    char *text = slurp(file, &len);
    struct errinfo err = {.msg = {0}};
    struct sched *s = sched_new(ds, text, len, file, &err);
    free(text);
    if (!s)
        fail_msg("%s: %s", file, err.msg);
    return s;
}

static struct sched *load_text(struct sched_datastore *ds, const char *cfg, struct errinfo *err)
{
    return sched_new(ds, cfg, strlen(cfg), "a.yaml", err);
}

/* Endpoints labelled the way llm-d's E/P/D deployments label them. */
static struct sched_datastore *epd_ds(bool with_prefill)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "encode-0", SCHED_ROLE_NONE, "llm-d.ai/role", "encode");
    if (with_prefill)
        tu_add(ds, "prefill-0", SCHED_ROLE_NONE, "llm-d.ai/role", "prefill");
    tu_add(ds, "decode-0", SCHED_ROLE_NONE, "llm-d.ai/role", "decode");
    return ds;
}

static bool accepts(struct sched_datastore *ds, const char *name, const char *filter)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    bool ok = sched_role_accepts(e, filter);
    sched_endpoint_unref(e);
    return ok;
}

/* llm-d's roles.go: which label values each role filter keeps. */
static void test_role_filters(void **state)
{
    (void)state;
    static const struct {
        const char *value; /* NULL: no label */
        bool decode, prefill, encode;
    } rows[] = {
        {"decode", true, false, false},
        {"prefill", false, true, false},
        {"encode", false, false, true},
        {"both", true, true, false},
        {"prefill-decode", true, true, false},
        {"encode-prefill", false, true, true},
        {"encode-prefill-decode", true, true, true},
        {"something-else", false, false, false},
        {NULL, true, false, false},
    };
    struct sched_datastore *ds = sched_ds_new();
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char name[32];
        snprintf(name, sizeof name, "ep-%zu", i);
        tu_add(ds, name, SCHED_ROLE_NONE, rows[i].value ? "llm-d.ai/role" : NULL, rows[i].value);
        const char *v = rows[i].value ? rows[i].value : "(none)";
        if (accepts(ds, name, "decode-filter") != rows[i].decode)
            fail_msg("decode-filter on role %s", v);
        if (accepts(ds, name, "prefill-filter") != rows[i].prefill)
            fail_msg("prefill-filter on role %s", v);
        if (accepts(ds, name, "encode-filter") != rows[i].encode)
            fail_msg("encode-filter on role %s", v);
    }
    /* A role given by the endpoint spec (--prefill/--decode, endpoints file) still counts. */
    tu_add(ds, "flag-prefill", SCHED_ROLE_PREFILL, NULL, NULL);
    assert_true(accepts(ds, "flag-prefill", "prefill-filter"));
    assert_false(accepts(ds, "flag-prefill", "decode-filter"));
    sched_ds_free(ds);

    /* Through a profile: encode-filter alone keeps only the encoders. */
    ds = sched_ds_new();
    tu_add(ds, "d", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "e", SCHED_ROLE_NONE, "llm-d.ai/role", "encode");
    tu_add(ds, "epd", SCHED_ROLE_NONE, "llm-d.ai/role", "encode-prefill-decode");
    struct errinfo err = {.msg = {0}};
    struct sched *s = load_text(ds,
                                "plugins:\n- type: encode-filter\n- type: max-score-picker\n"
                                "  parameters: {maxNumOfEndpoints: 8}\n"
                                "schedulingProfiles:\n- name: e\n  plugins: "
                                "[{pluginRef: encode-filter}, {pluginRef: max-score-picker}]\n",
                                &err);
    assert_non_null(s);
    struct sched_request req = tu_req("hello", "m");
    struct sched_result r = {0};
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.n_picks, 2);
    for (size_t i = 0; i < r.n_picks; i++)
        assert_true(!strcmp(sched_endpoint_name(r.picks[i]), "e") ||
                    !strcmp(sched_endpoint_name(r.picks[i]), "epd"));
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

static const char LONG_PROMPT[] =
    "Describe the picture in detail, with every object, colour and person you can see in it, "
    "then say where it was probably taken and why you think so.";

/* llm-d's sim-e-p-d sample: multimodal -> encode + prefill + decode; text -> P/D only. */
static void test_e_p_d_config(void **state)
{
    (void)state;
    struct sched_datastore *ds = epd_ds(true);
    struct sched *s = load_file(ds, "deploy-config-sim-e-p-d-epp-config.yaml");
    struct sched_request req = tu_req(LONG_PROMPT, "m");
    req.mm_items = 1;
    struct sched_result r = {0};
    struct buf trace = BUF_INIT;
    sched_schedule(s, &req, false, &r, &trace);
    assert_int_equal(r.status, 0);
    assert_string_equal(sched_endpoint_name(r.picks[0]), "decode-0");
    assert_int_equal(r.n_encode, 1);
    assert_string_equal(sched_endpoint_name(r.encode[0]), "encode-0");
    assert_non_null(strstr(r.encode_reason, "multimodal content: encode"));
    assert_non_null(r.prefill);
    assert_string_equal(sched_endpoint_name(r.prefill), "prefill-0");
    assert_int_equal(r.pd, SCHED_PD_DISAGGREGATE);
    assert_string_equal(r.disagg_decision, "encode-prefill-decode");
    assert_non_null(strstr(trace.data, "\"encode\":[\"encode-0\"]"));
    buf_free(&trace);
    sched_result_release(&r);
    assert_int_equal(r.n_encode, 0);

    /* Text only: the encode profile does not run; P/D still does. */
    req.mm_items = 0;
    memset(&r, 0, sizeof r);
    sched_schedule(s, &req, false, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n_encode, 0);
    assert_non_null(strstr(r.encode_reason, "no multimodal content"));
    assert_non_null(r.prefill);
    assert_string_equal(r.disagg_decision, "prefill-decode");
    assert_string_equal(sched_endpoint_name(r.picks[0]), "decode-0");
    sched_result_release(&r);

    /* No encoder healthy: the request still goes (encoded in place), never fails. */
    struct sched_endpoint *e = sched_ds_find(ds, "encode-0");
    sched_endpoint_set_health(e, false);
    sched_endpoint_unref(e);
    req.mm_items = 2;
    memset(&r, 0, sizeof r);
    sched_schedule(s, &req, false, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n_encode, 0);
    assert_non_null(strstr(r.encode_reason, "no encode endpoint"));
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* llm-d's sim-e-pd sample: no prefill profile at all; multimodal -> encode + decode. */
static void test_e_pd_config(void **state)
{
    (void)state;
    struct sched_datastore *ds = epd_ds(false);
    struct sched *s = load_file(ds, "deploy-config-sim-e-pd-epp-config.yaml");
    struct sched_request req = tu_req(LONG_PROMPT, "m");
    req.mm_items = 1;
    struct sched_result r = {0};
    sched_schedule(s, &req, false, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(sched_endpoint_name(r.picks[0]), "decode-0");
    assert_int_equal(r.n_encode, 1);
    assert_string_equal(sched_endpoint_name(r.encode[0]), "encode-0");
    assert_null(r.prefill);
    assert_string_equal(r.disagg_decision, "encode-decode");
    sched_result_release(&r);
    req.mm_items = 0;
    memset(&r, 0, sizeof r);
    sched_schedule(s, &req, false, &r, NULL);
    assert_int_equal(r.n_encode, 0);
    assert_null(r.prefill);
    assert_string_equal(r.disagg_decision, "decode-only");
    assert_string_equal(sched_endpoint_name(r.picks[0]), "decode-0");
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

#define HEAD                                                                                       \
    "plugins:\n- type: encode-filter\n- type: prefill-filter\n- type: decode-filter\n"             \
    "- type: always-disagg-multimodal-decider\n- type: always-disagg-pd-decider\n"
#define PROFILES                                                                                   \
    "schedulingProfiles:\n- name: enc\n  plugins: [{pluginRef: encode-filter}]\n"                  \
    "- name: pre\n  plugins: [{pluginRef: prefill-filter}]\n"                                      \
    "- name: dec\n  plugins: [{pluginRef: decode-filter}]\n"

/* Profile names, llm-d's deprecated flat parameters, and the errors. */
static void test_handler_parameters(void **state)
{
    (void)state;
    struct sched_datastore *ds = epd_ds(true);
    struct errinfo err = {.msg = {0}};
    const char *nested = HEAD "- type: disagg-profile-handler\n  parameters:\n"
                              "    profiles: {decode: dec, prefill: pre, encode: enc}\n"
                              "    deciders: {prefill: always-disagg-pd-decider, "
                              "encode: always-disagg-multimodal-decider}\n" PROFILES;
    const char *flat =
        HEAD "- type: disagg-profile-handler\n  parameters:\n"
             "    decodeProfile: dec\n    prefillProfile: pre\n"
             "    encodeProfile: enc\n"
             "    deciderPluginName: always-disagg-pd-decider\n"
             "    encodeDeciderPluginName: always-disagg-multimodal-decider\n" PROFILES;
    const char *cfgs[] = {nested, flat};
    for (size_t i = 0; i < 2; i++) {
        struct sched *s = load_text(ds, cfgs[i], &err);
        if (!s)
            fail_msg("%s", err.msg);
        struct sched_request req = tu_req("x", "m");
        req.mm_items = 1;
        struct sched_result r = {0};
        sched_schedule(s, &req, true, &r, NULL);
        assert_int_equal(r.n_encode, 1);
        assert_non_null(r.prefill);
        assert_string_equal(sched_endpoint_name(r.picks[0]), "decode-0");
        sched_result_release(&r);
        sched_free(s);
    }
    /* Mixing the two forms is refused, as llm-d refuses it. */
    assert_null(load_text(ds,
                          HEAD "- type: disagg-profile-handler\n  parameters:\n"
                               "    profiles: {decode: dec}\n    encodeProfile: enc\n" PROFILES,
                          &err));
    assert_non_null(strstr(err.msg, "cannot mix deprecated flat parameters"));
    /* deciders.encode must name a decider. */
    assert_null(load_text(ds,
                          HEAD "- type: disagg-profile-handler\n  parameters:\n"
                               "    profiles: {decode: dec, encode: enc}\n"
                               "    deciders: {encode: encode-filter}\n" PROFILES,
                          &err));
    if (!strstr(err.msg, "deciders.encode: 'encode-filter' is not an encode decider"))
        fail_msg("%s", err.msg);
    /* No deciders: neither stage runs (llm-d: disaggregation disabled). */
    struct sched *s =
        load_text(ds,
                  HEAD "- type: disagg-profile-handler\n  parameters:\n"
                       "    profiles: {decode: dec, prefill: pre, encode: enc}\n" PROFILES,
                  &err);
    assert_non_null(s);
    struct sched_request req = tu_req(LONG_PROMPT, "m");
    req.mm_items = 3;
    struct sched_result r = {0};
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.n_encode, 0);
    assert_null(r.prefill);
    assert_int_equal(r.pd, SCHED_PD_DECODE_ONLY);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_filters),
        cmocka_unit_test(test_e_p_d_config),
        cmocka_unit_test(test_e_pd_config),
        cmocka_unit_test(test_handler_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

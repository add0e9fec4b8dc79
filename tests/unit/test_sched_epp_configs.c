/* Every EndpointPickerConfig copied from llm-d's repositories (tests/data/epp-configs/,
 * each file naming its source and commit on its first line) loaded unchanged. The table
 * below says, per file, whether it loads today or which missing piece stops it: the test
 * fails when a loading config breaks AND when a blocked one starts loading (then move it
 * to the loading side), so the table is always the exact list of what is left to build.
 * A file in the directory but not in the table fails the test too. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/err.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

#define DIR_ "tests/data/epp-configs/llm-d-inference-scheduler/"

static const struct {
    const char *file;
    const char *blocked_by; /* NULL: loads; else a substring of the load error */
} configs[] = {
    {"config-charts-epplib-templates-_config-default.yaml", NULL},
    /* the chart README's example of a user's own plugin: custom-scorer is made up */
    {"config-charts-inferencepool-README-md-block6.yaml",
     "plugins[0].type: unknown plugin type 'custom-scorer'"},
    /* the same made-up custom-scorer, as the chart's commented values example */
    {"config-charts-inferencepool-values-yaml-pluginsCustomConfig.yaml",
     "plugins[0].type: unknown plugin type 'custom-scorer'"},
    {"deploy-config-dp-epp-config.yaml", NULL},
    {"deploy-config-epp-config.yaml", NULL},
    {"deploy-config-epp-estimate-prefix-cache-config.yaml", NULL},
    {"deploy-config-epp-precise-prefix-cache-config.yaml", NULL},
    {"deploy-config-pd-epp-config.yaml", NULL},
    {"deploy-config-probabilistic-admitter-epp-config.yaml", NULL},
    {"deploy-config-sim-e-p-d-epp-config.yaml", NULL},
    {"deploy-config-sim-e-pd-epp-config.yaml", NULL},
    {"deploy-config-sim-epp-config.yaml", NULL},
    {"deploy-config-sim-epp-kvcache-config.yaml", NULL},
    {"deploy-config-sim-epp-no-hit-lru.yaml", NULL},
    {"deploy-config-sim-epp-tokenizer-vllm-http-config.yaml", NULL},
    {"deploy-config-sim-pd-epp-config.yaml", NULL},
    {"docs-architecture-md-block3.yaml", NULL},
    {"docs-disaggregation-md-block4.yaml", NULL},
    /* E/P/D: needs the encode stage (always-disagg-multimodal-decider, encode-filter) */
    {"docs-disaggregation-md-block5.yaml", NULL},
    {"pkg-epp-framework-plugins-datalayer-source-models-README-md-block2.yaml", NULL},
    /* my-pod-extractor: a user-provided plugin the README makes up */
    {"pkg-epp-framework-plugins-datalayer-source-notifications-README-md-block0.yaml",
     "plugins[1].type: unknown plugin type 'my-pod-extractor'"},
    /* endpoint-notification-source; after it, the made-up my-endpoint-extractor */
    {"pkg-epp-framework-plugins-datalayer-source-notifications-README-md-block1.yaml",
     "plugins[1].type: unknown plugin type 'my-endpoint-extractor'"},
    {"pkg-epp-framework-plugins-flowcontrol-usagelimits-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-requestcontrol-admitter-latencyslo-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-requestcontrol-admitter-probabilisticadmitter-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-requestcontrol-dataproducer-approximateprefix-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-requestcontrol-requestattributereporter-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-requesthandling-parsers-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-filter-bylabel-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-filter-bylabel-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-filter-prefixcacheaffinity-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-filter-sloheadroomtier-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-dataparallel-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-dataparallel-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-dataparallel-README-md-block2.yaml", NULL},
    /* handler-only fragments: llm-d loads them but then fails every request (no 'decode'
     * profile); tandem refuses them at load instead (docs/decisions.md) */
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block0.yaml",
     "plugins[0].parameters.profiles.decode: profile 'decode' is not in schedulingProfiles"},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block1.yaml",
     "plugins[0].parameters.profiles.decode: profile 'decode' is not in schedulingProfiles"},
    /* deciders.encode: needs the E/P/D encode stage */
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block2.yaml",
     "plugins[0].parameters.profiles.decode: profile 'decode' is not in schedulingProfiles"},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block3.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block4.yaml", NULL},
    /* the same: a decider and the handler, no decode profile */
    {"pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block5.yaml",
     "plugins[1].parameters.profiles.decode: profile 'decode' is not in schedulingProfiles"},
    {"pkg-epp-framework-plugins-scheduling-scorer-activerequest-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-contextlengthaware-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-contextlengthaware-README-md-block2.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-contextlengthaware-README-md-block3.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-kvcacheutilization-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-loadaware-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-loraaffinity-README-md-block0.yaml", NULL},
    /* a weight on the plugin entry: llm-d's strict decoding refuses it too */
    {"pkg-epp-framework-plugins-scheduling-scorer-nohitlru-README-md-block0.yaml",
     "plugins[0].weight: unknown field"},
    {"pkg-epp-framework-plugins-scheduling-scorer-preciseprefixcache-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-preciseprefixcache-README-md-block1.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-preciseprefixcache-README-md-block3.yaml", NULL},
    /* needs endpoint-notification-source */
    {"pkg-epp-framework-plugins-scheduling-scorer-preciseprefixcache-README-md-block4.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-preciseprefixcache-README-md-block5.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-queuedepth-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-runningrequests-README-md-block0.yaml", NULL},
    {"pkg-epp-framework-plugins-scheduling-scorer-tokenload-README-md-block0.yaml", NULL},
    {"test-integration-epp-testdata-datalayer-config.yaml",
     "unknown plugin type 'mock-metrics-source'"},
    {"test-integration-epp-testdata-default-config.yaml", NULL},
    {"test-integration-epp-testdata-request-attribute-reporter-config.yaml", NULL},
    /* the Go loader's own fixture with made-up test-* plugin types: never loads anywhere */
    {"test-testdata-configloader_1_test.yaml", "unknown plugin type 'test-one'"},
    {"test-testdata-inferencepool-e2e-default-plugins.yaml", NULL},
    {"test-testdata-inferencepool-leader-election-e2e-default-plugins.yaml", NULL},
};
#define N_CONFIGS (sizeof configs / sizeof *configs)

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
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

static void test_every_config(void **state)
{
    (void)state;
    size_t loaded = 0;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/" DIR_ "%s", TANDEM_SOURCE_DIR, configs[i].file);
        size_t len = 0;
        char *text = slurp(path, &len);
        if (!text)
            fail_msg("%s: cannot read", path);
        struct sched_datastore *ds = sched_ds_new();
        struct errinfo err;
        memset(&err, 0, sizeof err);
        struct sched *s = sched_new(ds, text, len, configs[i].file, &err);
        bool ok = s != NULL;
        sched_free(s);
        sched_ds_free(ds);
        free(text);
        if (!configs[i].blocked_by) {
            if (!ok)
                fail_msg("%s should load, got: %s", configs[i].file, err.msg);
            loaded++;
        } else {
            if (ok)
                fail_msg("%s loads now: move it to the loading side of the table",
                         configs[i].file);
            if (!strstr(err.msg, configs[i].blocked_by))
                fail_msg("%s: expected '%s', got: %s", configs[i].file, configs[i].blocked_by,
                         err.msg);
        }
    }
    printf("[ epp-configs ] %zu of %zu llm-d configs load\n", loaded, N_CONFIGS);
}

/* Every file in the directory is in the table (a newly copied config cannot be skipped). */
static void test_table_complete(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/" DIR_, TANDEM_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    size_t files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        files++;
        bool found = false;
        for (size_t i = 0; i < N_CONFIGS; i++)
            found = found || strcmp(configs[i].file, de->d_name) == 0;
        if (!found)
            fail_msg("%s is not in the table", de->d_name);
    }
    closedir(d);
    assert_int_equal(files, N_CONFIGS);
}

static struct sched *load_ok(struct sched_datastore *ds, const char *cfg)
{
    struct errinfo err;
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "a.yaml", &err);
    if (!s)
        fail_msg("%s", err.msg);
    return s;
}

/* --- prefix-cache-scorer's current parameters ---------------------------------------------- */

static void set_block_size(struct sched_datastore *ds, const char *name, uint32_t bs)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = m.healthy = true;
    m.block_size = bs;
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

/* Routes prompt A for real (the pick learns its blocks), then returns the prefix score of
 * that pod for prompt B, which shares A's first 16 characters only. */
static double shared16_score(const char *params, uint32_t scraped_block_size)
{
    static const char a[] = "0123456789abcdef0123456789ABCDEF";
    static const char b[] = "0123456789abcdefzzzzzzzzzzzzzzzz";
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    if (scraped_block_size) {
        set_block_size(ds, "a", scraped_block_size);
        set_block_size(ds, "b", scraped_block_size);
    }
    struct sched *s = tu_one(ds, "prefix-cache-scorer", params);
    struct sched_request ra = tu_req(a, "m"), rb = tu_req(b, "m");
    struct sched_result r;
    sched_schedule(s, &ra, false, &r, NULL);
    char pod[8];
    snprintf(pod, sizeof pod, "%s", tu_pick(&r));
    sched_result_release(&r);
    json_t *t = tu_trace(s, &rb, true, &r);
    double score = tu_score(t, 0, 0, pod);
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
    return score;
}

static void test_prefix_block_size_tokens(void **state)
{
    (void)state;
    /* 4 tokens = 16 characters: B matches A's first block of two */
    assert_true(fabs(shared16_score("{blockSizeTokens: 4, autoTune: false}", 0) - 0.5) < 1e-9);
    /* 8 tokens = 32 characters: B's only block differs */
    assert_true(shared16_score("{blockSizeTokens: 8, autoTune: false}", 0) == 0.0);
    /* autoTune (llm-d's default): the engines' cache_config_info block_size (4) wins */
    assert_true(fabs(shared16_score("{blockSizeTokens: 8}", 4) - 0.5) < 1e-9);
    assert_true(shared16_score("{blockSizeTokens: 8, autoTune: false}", 4) == 0.0);
    /* maxPrefixTokensToMatch 4 = one 4-token block matched at most: B matches it fully */
    assert_true(fabs(shared16_score("{blockSizeTokens: 4, autoTune: false, "
                                    "maxPrefixTokensToMatch: 4}", 0) - 1.0) < 1e-9);
    /* the legacy character blockSize still fixes the block (no auto-tuning) */
    assert_true(fabs(shared16_score("{blockSize: 16}", 8) - 0.5) < 1e-9);
}

/* --- the top-level sections ---------------------------------------------------------------- */

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

#define HEAD_ "plugins:\n- type: queue-scorer\n- type: openai-parser\n"                       \
              "- type: metrics-data-source\n  parameters: {path: /custom-metrics}\n"            \
              "- type: core-metrics-extractor\n"                                               \
              "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n"

static void test_sections(void **state)
{
    (void)state;
    const char ok[] = HEAD_ "parser:\n  pluginRef: openai-parser\n"
                            "dataLayer:\n  sources:\n  - pluginRef: metrics-data-source\n"
                            "    extractors:\n    - pluginRef: core-metrics-extractor\n"
                            "featureGates: [dataLayer, enableLegacyMetrics, flowControl]\n"
                            "flowControl: {maxRequests: 10}\n";
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    struct sched *s = sched_new(ds, ok, strlen(ok), "c.yaml", &err);
    if (!s)
        fail_msg("%s", err.msg);
    /* the router scrapes the metrics-data-source's path */
    assert_string_equal(sched_metrics_path(s), "/custom-metrics");
    sched_free(s);
    assert_string_equal(sched_metrics_path(NULL), "/metrics");
    sched_ds_free(ds);

    expect_error(HEAD_ "parser:\n  pluginRef: queue-scorer\n",
                 "c.yaml:12: parser.pluginRef: 'queue-scorer' is a scorer, not a parser");
    expect_error(HEAD_ "parser:\n  pluginRef: nope\n",
                 "c.yaml:12: parser.pluginRef: no plugin named 'nope' in plugins");
    expect_error(HEAD_ "dataLayer:\n  sources:\n  - pluginRef: metrics-data-source\n"
                       "    extractors:\n    - pluginRef: openai-parser\n",
                 "c.yaml:15: dataLayer.sources[0].extractors[0].pluginRef: 'openai-parser' is a "
                 "parser, not a data layer extractor");
    expect_error(HEAD_ "dataLayer:\n  sources:\n  - pluginRef: queue-scorer\n",
                 "c.yaml:13: dataLayer.sources[0].pluginRef: 'queue-scorer' is a scorer");
    expect_error(HEAD_ "dataLayer:\n  sink: 1\n", "c.yaml:12: dataLayer.sink: unknown field");
    expect_error(HEAD_ "featureGates: [dataLayer, warpDrive]\n",
                 "c.yaml:11: featureGates[1]: unknown feature gate 'warpDrive'");
    /* the old saturationDetector fields are gone from llm-d's schema */
    expect_error(HEAD_ "saturationDetector:\n  metricsStalenessThreshold: 150ms\n",
                 "c.yaml:12: saturationDetector.metricsStalenessThreshold: unknown field");
    expect_error(HEAD_ "saturationDetector:\n  pluginRef: queue-scorer\n",
                 "saturationDetector.pluginRef: 'queue-scorer' is not a saturation detector");
    /* request-control plugins in a profile are no-ops there (llm-d's reading); a profile
     * handler is still refused */
    ds = sched_ds_new();
    const char inprof[] = "plugins:\n- type: openai-parser\nschedulingProfiles:\n- name: d\n"
                          "  plugins:\n  - pluginRef: openai-parser\n";
    s = sched_new(ds, inprof, strlen(inprof), "c.yaml", &err);
    assert_non_null(s);
    assert_int_equal(s->profiles[0].n_filters + s->profiles[0].n_scorers, 0);
    assert_null(s->profiles[0].picker);
    sched_free(s);
    sched_ds_free(ds);
    expect_error("plugins:\n- type: pd-profile-handler\nschedulingProfiles:\n- name: d\n"
                 "  plugins:\n  - pluginRef: pd-profile-handler\n",
                 "'pd-profile-handler' is a profile handler, not a filter, scorer or picker");
    expect_error("plugins:\n- type: metrics-data-source\n  parameters: {scheme: https}\n"
                 "schedulingProfiles:\n- name: d\n  plugins: []\n",
                 "plugins[0].parameters.scheme: tandem scrapes engines over http only");
    expect_error("plugins:\n- type: core-metrics-extractor\n  parameters: {defaultEngine: sglang}\n"
                 "schedulingProfiles:\n- name: d\n  plugins: []\n",
                 "plugins[0].parameters.defaultEngine: tandem reads vLLM's metric names only");
    expect_error("plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSizeTokens: 0}\n"
                 "schedulingProfiles:\n- name: d\n  plugins: []\n",
                 "plugins[0].parameters.blockSizeTokens: must be between 1 and 262144");
}

/* --- data-parallel-profile-handler ----------------------------------------------------------- */

static void add_rank(struct sched_datastore *ds, const char *name, int port, double waiting)
{
    struct sched_endpoint_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.host = "10.0.0.7";
    spec.port = port;
    spec.role = SCHED_ROLE_BOTH;
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    struct sched_endpoint *e = sched_ds_find(ds, name);
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);
    tu_metrics(ds, name, waiting, 0, 0);
}

static void test_data_parallel(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    add_rank(ds, "pod-rank0", 8200, 5); /* busier */
    add_rank(ds, "pod-rank1", 8201, 0);
    const char cfg[] = "plugins:\n- type: queue-scorer\n- type: data-parallel-profile-handler\n"
                       "  parameters: {primaryPort: 8000}\n"
                       "schedulingProfiles:\n- name: default\n  plugins:\n"
                       "  - pluginRef: queue-scorer\n";
    struct errinfo err;
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "dp.yaml", &err);
    if (!s)
        fail_msg("%s", err.msg);
    struct sched_request req = tu_req("hello", "m");
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.status, 0);
    /* the least busy rank is picked and the request goes to the pod's primary port */
    assert_string_equal(tu_pick(&r), "pod-rank1");
    assert_int_equal(sched_endpoint_port(r.picks[0]), 8201);
    assert_int_equal(r.dp_primary_port, 8000);
    sched_result_release(&r);
    sched_free(s);

    /* pd-profile-handler's primaryPort does the same for the decode pick */
    s = load_ok(ds, "plugins:\n- type: queue-scorer\n- type: pd-profile-handler\n"
                    "  parameters: {primaryPort: 8000, threshold: 1000000}\n"
                    "schedulingProfiles:\n- name: decode\n  plugins: [{pluginRef: queue-scorer}]\n"
                    "- name: prefill\n  plugins: [{pluginRef: queue-scorer}]\n");
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.dp_primary_port, 8000);
    sched_result_release(&r);
    sched_free(s);
    /* without the handler there is no rewrite */
    s = tu_one(ds, "queue-scorer", NULL);
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.dp_primary_port, 0);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);

    expect_error("plugins:\n- type: queue-scorer\n- type: data-parallel-profile-handler\n"
                 "schedulingProfiles:\n- name: a\n  plugins: [{pluginRef: queue-scorer}]\n"
                 "- name: b\n  plugins: [{pluginRef: queue-scorer}]\n",
                 "data-parallel-profile-handler needs exactly one profile, got 2");
    expect_error("plugins:\n- type: data-parallel-profile-handler\n"
                 "  parameters: {primaryPort: 70000}\n"
                 "schedulingProfiles:\n- name: a\n  plugins: []\n",
                 "c.yaml:3: plugins[0].parameters.primaryPort: must be between 1 and 65535");
}

/* --- admission: probabilistic-admitter, utilization-detector ------------------------------- */

/* Fresh metrics (scraped now) on a, b. */
static void fresh(struct sched_datastore *ds, const char *name, double waiting, double kv,
                  uint64_t age_ns)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = m.healthy = true;
    m.waiting = waiting;
    m.kv_usage = kv;
    m.scraped_at_ns = clock_monotonic_ns() - age_ns;
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

static struct sched_datastore *two_fresh(double waiting, double kv, uint64_t age_ns)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    fresh(ds, "a", waiting, kv, age_ns);
    fresh(ds, "b", waiting, kv, age_ns);
    return ds;
}

static int rejections(struct sched *s, int priority, int n, char *reason, size_t cap)
{
    struct sched_request req = tu_req("hello", "m");
    req.priority = priority;
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct sched_result r;
        sched_schedule(s, &req, true, &r, NULL);
        if (r.status == 429) {
            k++;
            if (reason)
                snprintf(reason, cap, "%s", r.reason);
        } else {
            assert_int_equal(r.status, 0);
        }
        sched_result_release(&r);
    }
    return k;
}

#define ADMIT_CFG(params)                                                                     \
    "plugins:\n- type: probabilistic-admitter\n  parameters: " params "\n"                   \
    "- type: random-picker\n"                                                                 \
    "- type: utilization-detector\n"                                                          \
    "  parameters: {queueDepthThreshold: 999999999, kvCacheUtilThreshold: 1.0}\n"            \
    "saturationDetector:\n  pluginRef: utilization-detector\n"                               \
    "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: random-picker\n"


static void test_probabilistic_admitter(void **state)
{
    (void)state;
    char why[256] = "";
    /* idle pods: saturation 0, nothing shed */
    struct sched_datastore *ds = two_fresh(0, 0, 0);
    struct sched *s = load_ok(ds, ADMIT_CFG("{}"));
    assert_int_equal(rejections(s, -1, 200, NULL, 0), 0);
    sched_free(s);
    sched_ds_free(ds);

    /* queues at queueDepthThreshold: saturation 1, prob min(1^5 * 300, 1) = 1 */
    ds = two_fresh(5, 0, 0);
    s = load_ok(ds, ADMIT_CFG("{}"));
    assert_int_equal(rejections(s, -1, 50, why, sizeof why), 50);
    assert_string_equal(why, "probabilistic-admitter: rejected, saturation=1.000 prob=1.00");
    /* only sheddable requests (priority < 0) are ever refused */
    assert_int_equal(rejections(s, 0, 50, NULL, 0), 0);
    assert_int_equal(rejections(s, 3, 50, NULL, 0), 0);
    sched_free(s);
    sched_ds_free(ds);

    /* KV at half the threshold, power 1, k 1: refused about half the time */
    ds = two_fresh(0, 0.4, 0);
    s = load_ok(ds, ADMIT_CFG("{power: 1, k: 1}"));
    int k = rejections(s, -1, 1000, why, sizeof why);
    assert_true(k > 400 && k < 600);
    assert_string_equal(why, "probabilistic-admitter: rejected, saturation=0.500 prob=0.50");
    sched_free(s);
    sched_ds_free(ds);

    expect_error(ADMIT_CFG("{queueDepthThreshold: 0}"),
                 "c.yaml:3: plugins[0].parameters.queueDepthThreshold: must be > 0, got 0");
    expect_error(ADMIT_CFG("{k: -1}"), "plugins[0].parameters.k: must be > 0, got -1");
    expect_error(ADMIT_CFG("{alpha: 1}"), "plugins[0].parameters.alpha");
}

#define UD_CFG(params)                                                                        \
    "plugins:\n- type: queue-scorer\n- type: utilization-detector\n  parameters: " params "\n" \
    "saturationDetector: {pluginRef: utilization-detector}\n"                                \
    "schedulingProfiles:\n- name: default\n  plugins: [{pluginRef: queue-scorer}]\n"

static void test_utilization_detector(void **state)
{
    (void)state;
    char why[256] = "";
    /* queues over queueDepthThreshold: saturated, sheddable requests dropped */
    struct sched_datastore *ds = two_fresh(10, 0, 0);
    struct sched *s = load_ok(ds, UD_CFG("{queueDepthThreshold: 5}"));
    assert_int_equal(rejections(s, -1, 20, why, sizeof why), 20);
    assert_string_equal(why, "system saturated, sheddable request dropped");
    assert_int_equal(rejections(s, 0, 20, NULL, 0), 0);
    sched_free(s);
    /* under it: admitted */
    fresh(ds, "a", 2, 0, 0);
    fresh(ds, "b", 2, 0, 0);
    s = load_ok(ds, UD_CFG("{queueDepthThreshold: 5}"));
    assert_int_equal(rejections(s, -1, 20, NULL, 0), 0);
    sched_free(s);
    /* metrics older than metricsStalenessThreshold count as saturated */
    fresh(ds, "a", 0, 0, 500000000ull);
    fresh(ds, "b", 0, 0, 500000000ull);
    s = load_ok(ds, UD_CFG("{metricsStalenessThreshold: 150ms}"));
    assert_int_equal(rejections(s, -1, 5, NULL, 0), 5);
    sched_free(s);
    s = load_ok(ds, UD_CFG("{metricsStalenessThreshold: 1m}"));
    assert_int_equal(rejections(s, -1, 5, NULL, 0), 0);
    sched_free(s);
    /* no saturationDetector section: llm-d's default utilization-detector applies */
    fresh(ds, "a", 9, 0.9, 0);
    fresh(ds, "b", 9, 0.9, 0);
    s = tu_one(ds, "queue-scorer", NULL);
    assert_int_equal(rejections(s, -1, 5, NULL, 0), 5);
    assert_int_equal(rejections(s, 0, 5, NULL, 0), 0);
    sched_free(s);
    sched_ds_free(ds);

    /* as a filter in a profile: only pods under the limits x (1 + headroom) */
    ds = two_fresh(0, 0, 0);
    fresh(ds, "a", 7, 0, 0);
    s = load_ok(ds, "plugins:\n- type: utilization-detector\n"
                    "  parameters: {queueDepthThreshold: 5, headroom: 0.2}\n"
                    "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: utilization-detector}]\n");
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 20; i++) {
        struct sched_result r;
        sched_schedule(s, &req, true, &r, NULL);
        assert_string_equal(tu_pick(&r), "b");
        sched_result_release(&r);
    }
    sched_free(s);
    sched_ds_free(ds);

    expect_error(UD_CFG("{metricsStalenessThreshold: soon}"),
                 "plugins[1].parameters.metricsStalenessThreshold: must be a positive duration");
    expect_error(UD_CFG("{kvCacheUtilThreshold: 1.5}"),
                 "plugins[1].parameters.kvCacheUtilThreshold: must be in (0.0, 1.0], got 1.5");
    expect_error("plugins:\n- type: queue-scorer\n- type: probabilistic-admitter\n"
                 "saturationDetector: {pluginRef: probabilistic-admitter}\n"
                 "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer}]\n",
                 "c.yaml:4: saturationDetector.pluginRef: 'probabilistic-admitter' is not a "
                 "saturation detector");
}

/* --- request-attribute-reporter and its CEL subset ------------------------------------------ */

static double cel(const char *src, const char *usage_json, int *kind)
{
    char err[200];
    struct sched_cel *e = sched_cel_compile(src, err, sizeof err);
    if (!e)
        fail_msg("'%s' did not compile: %s", src, err);
    json_t *u = json_loads(usage_json, 0, NULL);
    assert_non_null(u);
    double v = -12345;
    *kind = sched_cel_eval(e, u, &v);
    json_decref(u);
    sched_cel_free(e);
    return v;
}

static void test_cel_subset(void **state)
{
    (void)state;
    const char *u = "{\"prompt_tokens\": 10, \"completion_tokens\": 7, \"total_tokens\": 17,"
                    " \"prompt_tokens_details\": {\"cached_tokens\": 4}, \"note\": \"x\"}";
    int k;
    assert_true(cel("usage.completion_tokens\n", u, &k) == 7 && k == SCHED_CEL_NUM);
    assert_true(cel("usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens + "
                    "2 * usage.completion_tokens", u, &k) == 20);
    assert_true(cel("(usage.total_tokens + 1) / 2", u, &k) == 9);
    assert_true(cel("int(usage.total_tokens / 2)", u, &k) == 8);
    assert_true(cel("usage.total_tokens % 5", u, &k) == 2);
    assert_true(cel("-usage.completion_tokens", u, &k) == -7);
    assert_true(cel("has(usage.completion_tokens)", u, &k) == 1 && k == SCHED_CEL_BOOL);
    assert_true(cel("has(usage.reasoning_tokens)", u, &k) == 0 && k == SCHED_CEL_BOOL);
    assert_true(cel("has(usage.prompt_tokens_details.cached_tokens) && "
                    "usage.prompt_tokens_details.cached_tokens > 3", u, &k) == 1);
    assert_true(cel("usage.completion_tokens >= 8 || usage.note == 'x'", u, &k) == 1);
    assert_true(cel("!(usage.prompt_tokens != 10)", u, &k) == 1);
    assert_true(cel("usage.completion_tokens > 5 ? 100 : 1", u, &k) == 100);
    assert_true(cel("usage.completion_tokens > 50 ? 100 : 1.5", u, &k) == 1.5);
    /* runtime errors: no such key, bad operand types, division by zero */
    cel("usage.reasoning_tokens + 1", u, &k);
    assert_int_equal(k, SCHED_CEL_ERROR);
    cel("usage.note + 1", u, &k);
    assert_int_equal(k, SCHED_CEL_ERROR);
    cel("usage.total_tokens / 0", u, &k);
    assert_int_equal(k, SCHED_CEL_ERROR);
    /* CEL absorbs an error on the other side of a decided && / || */
    assert_true(cel("has(usage.reasoning_tokens) && usage.reasoning_tokens > 1", u, &k) == 0 &&
                k == SCHED_CEL_BOOL);
    cel("usage.note", u, &k);
    assert_int_equal(k, SCHED_CEL_OTHER);

    static const char *const bad[] = {"", "usage.", "request.size", "usage.a +", "(usage.a",
                                      "has(1)", "size(usage)", "usage.a = 1", "'open",
                                      "usage.a ? 1", "1 2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[200] = "";
        struct sched_cel *e = sched_cel_compile(bad[i], err, sizeof err);
        if (e)
            fail_msg("'%s' compiled", bad[i]);
        assert_true(err[0] != 0);
    }
    char deep[300];
    memset(deep, '(', 200);
    strcpy(deep + 200, "1");
    char err[200];
    assert_null(sched_cel_compile(deep, err, sizeof err));
    assert_non_null(strstr(err, "nested too deeply"));
}

static void test_request_attribute_reporter(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/" DIR_ "%s", TANDEM_SOURCE_DIR,
             "test-integration-epp-testdata-request-attribute-reporter-config.yaml");
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err;
    struct sched *s = sched_new(ds, text, len, "r.yaml", &err);
    free(text);
    if (!s)
        fail_msg("%s", err.msg);
    assert_true(sched_has_reporters(s));
    struct sched_attribute at[SCHED_MAX_ATTRIBUTES];
    json_t *u = json_pack("{s:i, s:i}", "prompt_tokens", 12, "completion_tokens", 30);
    assert_int_equal(sched_report_response(s, u, at, SCHED_MAX_ATTRIBUTES), 1);
    assert_string_equal(at[0].ns, "envoy.lb");
    assert_string_equal(at[0].name, "x-gateway-inference-request-cost");
    assert_true(at[0].value == 30);
    json_decref(u);
    /* condition false (no completion_tokens): nothing; a zero value: nothing */
    u = json_pack("{s:i}", "prompt_tokens", 12);
    assert_int_equal(sched_report_response(s, u, at, SCHED_MAX_ATTRIBUTES), 0);
    json_decref(u);
    u = json_pack("{s:i}", "completion_tokens", 0);
    assert_int_equal(sched_report_response(s, u, at, SCHED_MAX_ATTRIBUTES), 0);
    json_decref(u);
    assert_int_equal(sched_report_response(s, NULL, at, SCHED_MAX_ATTRIBUTES), 0);
    sched_free(s);
    /* a config without reporters has none */
    s = tu_one(ds, "queue-scorer", NULL);
    assert_false(sched_has_reporters(s));
    sched_free(s);
    sched_ds_free(ds);

#define REP(attr)                                                                             \
    "plugins:\n- type: request-attribute-reporter\n  parameters:\n    attributes:\n" attr      \
    "schedulingProfiles:\n- name: d\n  plugins: []\n"
    expect_error(REP("    - {key: {name: c}, expression: 'usage.x +'}\n"),
                 "c.yaml:5: plugins[0].parameters.attributes[0].expression: failed to compile: "
                 "column 10: unexpected end of expression");
    expect_error(REP("    - {key: {name: c}, expression: 'usage.x', condition: 'foo'}\n"),
                 "plugins[0].parameters.attributes[0].condition: failed to compile: column 1: "
                 "unknown name");
    expect_error(REP("    - {key: {name: ''}, expression: 'usage.x'}\n"),
                 "plugins[0].parameters.attributes[0].key.name: cannot be empty");
    expect_error(REP("    - {key: {name: a}, expression: 'usage.x'}\n"
                     "    - {key: {name: b}, expression: 'usage.y'}\n"),
                 "plugins[0].parameters.attributes: must contain exactly one entry");
    expect_error(REP("    - {key: {name: a}, expr: 'usage.x'}\n"),
                 "plugins[0].parameters.attributes[0]: unknown field 'expr'");
}

/* --- token-producer ---------------------------------------------------------------------------- */

#define TP_CFG(params)                                                                        \
    "plugins:\n- type: token-producer\n  parameters: " params "\n"                           \
    "- type: prefill-filter\n- type: decode-filter\n- type: prefix-cache-scorer\n"          \
    "- type: prefix-based-pd-decider\n  parameters: {nonCachedTokens: 16}\n"                \
    "- type: disagg-profile-handler\n  parameters: {deciders: {prefill: prefix-based-pd-decider}}\n" \
    "schedulingProfiles:\n- name: prefill\n  plugins: [{pluginRef: prefill-filter}]\n"     \
    "- name: decode\n  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}]\n"

static void test_token_producer(void **state)
{
    (void)state;
    struct sched_datastore *ds = tu_pd_ds();
    struct sched *s = load_ok(ds, TP_CFG("{modelName: m, vllm: {http: 'http://10.1.2.3:8123/base/'}}"));
    struct sched_request req = tu_req("hi there", "m");
    struct sched_tokenize tk;
    assert_int_equal(sched_tokenize_needed(s, &req, &tk), SCHED_TOK_NEEDED);
    assert_string_equal(tk.host, "10.1.2.3");
    assert_int_equal(tk.port, 8123);
    assert_string_equal(tk.path_prefix, "/base");
    assert_string_equal(tk.model, "m");
    assert_int_equal(tk.timeout_ms, 5000);
    assert_int_equal(tk.mm_timeout_ms, 30000);
    /* before the engine's count: the short prompt's estimate is under nonCachedTokens */
    req.prompt_tokens = 0;
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.pd, SCHED_PD_DECODE_ONLY);
    sched_result_release(&r);
    /* the engine says 40 tokens (a long chat template, say): now it disaggregates */
    uint32_t ids[40];
    for (uint32_t i = 0; i < 40; i++)
        ids[i] = 100 + i;
    sched_tokens_put(s, &req, ids, 40);
    assert_int_equal(sched_tokenize_needed(s, &req, &tk), SCHED_TOK_CACHED);
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.pd, SCHED_PD_DISAGGREGATE);
    sched_result_release(&r);
    /* another prompt is not cached */
    struct sched_request other = tu_req("hi there!", "m");
    assert_int_equal(sched_tokenize_needed(s, &other, &tk), SCHED_TOK_NEEDED);
    uint64_t hits, misses;
    sched_tokens_stats(s, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 2);
    sched_free(s);
    /* without a token-producer nothing is tokenized */
    s = tu_one(ds, "queue-scorer", NULL);
    assert_int_equal(sched_tokenize_needed(s, &req, &tk), SCHED_TOK_NONE);
    sched_free(s);
    sched_ds_free(ds);

    expect_error(TP_CFG("{vllm: {http: 'http://x:1'}}"),
                 "c.yaml:3: plugins[0].parameters.modelName: must be specified");
    /* udsTokenizerConfig loads (one WARN line: tokenized through vllm.http instead) */
    struct sched_datastore *ds2 = sched_ds_new();
    sched_free(load_ok(ds2, TP_CFG("{modelName: m, udsTokenizerConfig: {socketFile: /tmp/s}}")));
    sched_ds_free(ds2);
    expect_error(TP_CFG("{modelName: m, udsTokenizerConfig: /tmp/s}"),
                 "plugins[0].parameters.udsTokenizerConfig: must be a mapping");
    expect_error(TP_CFG("{modelName: m, vllm: {http: 'https://x:1'}}"),
                 "plugins[0].parameters.vllm.http: 'https://x:1': https is not supported");
    expect_error(TP_CFG("{modelName: m, vllm: {timeout: soon}}"),
                 "plugins[0].parameters.vllm.timeout: must be a duration such as 5s");
    expect_error(TP_CFG("{modelName: m, vllm: {grpc: x}}"), "plugins[0].parameters.vllm.grpc");
}

static void test_help_plugins(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sched_help_plugins(f);
    fclose(f);
    for (size_t i = 0; sched_plugin_types[i]; i++)
        if (!strstr(text, sched_plugin_types[i]->type))
            fail_msg("%s missing from --help-plugins", sched_plugin_types[i]->type);
    assert_non_null(strstr(text, "prefix-cache-scorer"));
    assert_non_null(strstr(text, "blockSizeTokens, autoTune"));
    assert_non_null(strstr(text, "data-source"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_config),
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_prefix_block_size_tokens),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_data_parallel),
        cmocka_unit_test(test_probabilistic_admitter),
        cmocka_unit_test(test_utilization_detector),
        cmocka_unit_test(test_cel_subset),
        cmocka_unit_test(test_request_attribute_reporter),
        cmocka_unit_test(test_token_producer),
        cmocka_unit_test(test_help_plugins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

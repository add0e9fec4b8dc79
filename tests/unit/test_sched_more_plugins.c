/* The rest of llm-d's production plugin types (runner.go, plugins/register.go): the
 * deprecated aliases (by-label-selector, prefill-header-handler, tokenizer), the
 * concurrency-detector on the router's in-flight counters, inflight-load-producer,
 * passthrough-parser, vertexai-parser, the latency plugins without predictions (latency-scorer's
 * composite fallback, predicted-latency-producer) and the flow-control policies. Each shows its
 * effect, or that it warns exactly once and changes nothing. */
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

/* --- log capture: what a load writes --------------------------------------------------------- */

static char *capture_load(const char *cfg, bool *loaded)
{
    static char out[8192];
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    log_set_fd(fds[1]);
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
    ssize_t n = read(fds[0], out, sizeof out - 1);
    out[n > 0 ? n : 0] = 0;
    close(fds[0]);
    close(fds[1]);
    return out;
}

static size_t count(const char *hay, const char *needle)
{
    size_t k = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        k++;
    return k;
}

/* Loading cfg writes exactly one log line, at level, from `type`, containing why. */
static void one_line(const char *cfg, const char *level, const char *type, const char *why)
{
    bool loaded;
    char *log = capture_load(cfg, &loaded);
    assert_true(loaded);
    char tag[128];
    snprintf(tag, sizeof tag, "%s sched: %s", level, type);
    if (count(log, tag) != 1 || count(log, "\n") != 1 || !strstr(log, why))
        fail_msg("%s: want one %s line with '%s', got:\n%s", type, level, why, log);
}

static void one_warning(const char *cfg, const char *type, const char *why)
{
    one_line(cfg, "WARN ", type, why);
}

/* The pod picked for a request (dry run). */
static const char *pick_req(struct sched *s, const struct sched_request *req, int *status)
{
    static char name[64];
    struct sched_result r;
    sched_schedule(s, req, true, &r, NULL);
    snprintf(name, sizeof name, "%s", tu_pick(&r));
    if (status)
        *status = r.status;
    sched_result_release(&r);
    return name;
}

static void fresh(struct sched_datastore *ds, const char *name, double waiting, double kv)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = m.healthy = true;
    m.waiting = waiting;
    m.kv_usage = kv;
    m.scraped_at_ns = clock_monotonic_ns();
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

static void inflight(struct sched_datastore *ds, const char *name, int64_t requests, int64_t tokens)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    sched_endpoint_inflight_add(e, requests, tokens);
    sched_endpoint_unref(e);
}

/* --- deprecated aliases ---------------------------------------------------------------------- */

static void test_aliases(void **state)
{
    (void)state;
    /* by-label-selector: label-selector-filter's filter under its old name */
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, "gpu", "a100");
    tu_add(ds, "b", SCHED_ROLE_BOTH, "gpu", "h100");
    struct sched *s = tu_one(ds, "by-label-selector", "{matchLabels: {gpu: h100}}");
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 10; i++)
        assert_string_equal(pick_req(s, &req, NULL), "b");
    sched_free(s);
    s = tu_one(ds, "by-label-selector",
               "{matchExpressions: [{key: gpu, operator: NotIn, values: [h100]}]}");
    for (int i = 0; i < 10; i++)
        assert_string_equal(pick_req(s, &req, NULL), "a");
    sched_free(s);
    sched_ds_free(ds);
    one_warning("plugins:\n- type: by-label-selector\n  parameters: {matchLabels: {a: b}}\n",
                "by-label-selector", "use 'label-selector-filter'");
    expect_error("plugins:\n- type: by-label-selector\n  parameters:\n"
                 "    matchExpressions: [{key: k, operator: Near}]\n",
                 "c.yaml:4: plugins[0].parameters.matchExpressions[0].operator: must be In, NotIn");

    /* prefill-header-handler: disagg-headers-handler's older name, nothing to add here */
    one_warning("plugins:\n- type: prefill-header-handler\n"
                "  parameters: {prefillProfile: pf}\n",
                "prefill-header-handler", "tandem itself sets x-prefiller-host-port");
    expect_error("plugins:\n- type: prefill-header-handler\n  parameters: {prefillProfile: 1}\n",
                 "c.yaml:3: plugins[0].parameters.prefillProfile");

    /* tokenizer: token-producer under its old name: the router tokenizes through vllm.http */
    ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    s = load_ok(ds, "plugins:\n- type: tokenizer\n  parameters:\n    modelName: m1\n"
                    "    vllm: {http: 'http://tok:8123', timeout: 2s}\n"
                    "- type: queue-scorer\n");
    assert_true(sched_has_token_producer(s));
    struct sched_tokenize t;
    assert_int_equal(sched_tokenize_needed(s, &req, &t), SCHED_TOK_NEEDED);
    assert_string_equal(t.host, "tok");
    assert_int_equal(t.port, 8123);
    assert_string_equal(t.model, "m1");
    assert_int_equal(t.timeout_ms, 2000);
    uint32_t ids[3] = {1, 2, 3};
    sched_tokens_put(s, &req, ids, 3);
    assert_int_equal(sched_tokens_count(s, &req), 3);
    assert_int_equal(sched_tokenize_needed(s, &req, &t), SCHED_TOK_CACHED);
    sched_free(s);
    sched_ds_free(ds);
    one_warning("plugins:\n- type: tokenizer\n  parameters: {modelName: m}\n", "tokenizer",
                "use 'token-producer'");
    expect_error("plugins:\n- type: tokenizer\n", "plugins[0].parameters.modelName: must be "
                                                  "specified");
    expect_error("plugins:\n- type: tokenizer\n  parameters: {modelName: m, vllm: {http: 1}}\n",
                 "plugins[0].parameters.vllm.http");
}

/* --- concurrency-detector, inflight-load-producer -------------------------------------------- */

#define CD_CFG(params)                                                                             \
    "plugins:\n- type: queue-scorer\n- type: concurrency-detector\n  parameters: " params "\n"     \
    "saturationDetector: {pluginRef: concurrency-detector}\n"                                      \
    "schedulingProfiles:\n- name: default\n  plugins: [{pluginRef: queue-scorer}]\n"

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
        }
        sched_result_release(&r);
    }
    return k;
}

static void test_concurrency_detector(void **state)
{
    (void)state;
    char why[256] = "";
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    /* no metrics at all: the detector reads the router's in-flight counters, not them */
    struct sched *s = load_ok(ds, CD_CFG("{maxConcurrency: 4}"));
    assert_int_equal(rejections(s, -1, 10, NULL, 0), 0);
    /* 7 in flight of 2 x 4: saturation 0.875, admitted */
    inflight(ds, "a", 4, 0);
    inflight(ds, "b", 3, 0);
    assert_int_equal(rejections(s, -1, 10, NULL, 0), 0);
    /* 8 of 8: saturated; sheddable requests dropped, others not */
    inflight(ds, "b", 1, 0);
    assert_int_equal(rejections(s, -1, 10, why, sizeof why), 10);
    assert_string_equal(why, "system saturated, sheddable request dropped");
    assert_int_equal(rejections(s, 0, 10, NULL, 0), 0);
    sched_free(s);
    /* the default maxConcurrency (100) is far away */
    s = load_ok(ds, CD_CFG("{}"));
    assert_int_equal(rejections(s, -1, 10, NULL, 0), 0);
    sched_free(s);
    /* tokens mode: in-flight prompt tokens + llm-d's output estimate (1.5 x): a holds
     * 4 + 4 requests' worth, 400 prompt tokens -> 1000 tokens; capacity 2 x 500 */
    inflight(ds, "a", 0, 400);
    s = load_ok(ds, CD_CFG("{concurrencyMode: tokens, maxTokenConcurrency: 500}"));
    assert_int_equal(rejections(s, -1, 5, NULL, 0), 5);
    sched_free(s);
    s = load_ok(ds, CD_CFG("{concurrencyMode: tokens, maxTokenConcurrency: 501}"));
    assert_int_equal(rejections(s, -1, 5, NULL, 0), 0);
    sched_free(s);

    /* as a filter: only endpoints under maxConcurrency x (1 + headroom) */
    inflight(ds, "a", 2, 0); /* a: 6 in flight, b: 4 */
    s = load_ok(ds, "plugins:\n- type: concurrency-detector\n"
                    "  parameters: {maxConcurrency: 5}\n"
                    "schedulingProfiles:\n- name: d\n"
                    "  plugins: [{pluginRef: concurrency-detector}]\n");
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 10; i++)
        assert_string_equal(pick_req(s, &req, NULL), "b");
    sched_free(s);
    /* none under the limit: nothing is kept (no keep-all fallback, as in llm-d) */
    s = load_ok(ds, "plugins:\n- type: concurrency-detector\n"
                    "  parameters: {maxConcurrency: 4}\n"
                    "schedulingProfiles:\n- name: d\n"
                    "  plugins: [{pluginRef: concurrency-detector}]\n");
    int st = 0;
    assert_string_equal(pick_req(s, &req, &st), "");
    assert_int_equal(st, 503);
    sched_free(s);
    s = load_ok(ds, "plugins:\n- type: concurrency-detector\n"
                    "  parameters: {maxConcurrency: 4, headroom: 0.5}\n"
                    "schedulingProfiles:\n- name: d\n"
                    "  plugins: [{pluginRef: concurrency-detector}]\n");
    for (int i = 0; i < 10; i++) /* limit 6: a (6) is out */
        assert_string_equal(pick_req(s, &req, NULL), "b");
    sched_free(s);
    sched_ds_free(ds);

    one_line("plugins:\n- type: inflight-load-producer\n- type: concurrency-detector\n"
             "- type: queue-scorer\n",
             "INFO ", "inflight-load-producer", "feed concurrency-detector");
    one_warning("plugins:\n- type: concurrency-detector\n  parameters: {headroom: 20}\n",
                "concurrency-detector", "unusually high headroom 20");
    expect_error(CD_CFG("{maxConcurrency: 0}"),
                 "c.yaml:4: plugins[1].parameters.maxConcurrency: must be strictly positive, "
                 "got 0");
    expect_error(CD_CFG("{maxTokenConcurrency: -5}"),
                 "plugins[1].parameters.maxTokenConcurrency: must be strictly positive");
    expect_error(CD_CFG("{headroom: -0.1}"),
                 "plugins[1].parameters.headroom: must be a non-negative value");
    expect_error(CD_CFG("{concurrencyMode: bytes}"),
                 "plugins[1].parameters.concurrencyMode: unsupported concurrencyMode: \"bytes\"");
    expect_error(CD_CFG("{maxConcurrency: lots}"),
                 "plugins[1].parameters.maxConcurrency: must be an integer");
    expect_error(CD_CFG("{queueDepthThreshold: 5}"), "plugins[1].parameters.queueDepthThreshold");
}

/* --- latency-scorer (composite fallback), predicted-latency-producer ------------------------- */

#define LS_CFG(params, extra)                                                                      \
    "plugins:\n- type: latency-scorer\n  parameters: " params "\n" extra                           \
    "- type: max-score-picker\n"                                                                   \
    "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: latency-scorer}, "                    \
    "{pluginRef: max-score-picker}]\n"

static void test_latency_scorer(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    fresh(ds, "a", 0, 0.9);
    fresh(ds, "b", 4, 0.1);
    struct sched_request req = tu_req("x", "m");
    struct sched_result r;
    /* defaults 1/1/1, no prefix plugin: a = (0.1 + 1 + 0) / 3, b = (0.9 + 0 + 0) / 3 */
    struct sched *s = load_ok(ds, LS_CFG("{}", ""));
    json_t *t = tu_trace(s, &req, true, &r);
    assert_true(fabs(tu_score(t, 0, 0, "a") - 0.37) < 1e-9);
    assert_true(fabs(tu_score(t, 0, 0, "b") - 0.30) < 1e-9);
    assert_string_equal(tu_pick(&r), "a");
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    /* KV alone: b */
    s = load_ok(ds, LS_CFG("{compositeQueueWeight: 0, compositePrefixWeight: 0}", ""));
    t = tu_trace(s, &req, true, &r);
    assert_true(fabs(tu_score(t, 0, 0, "b") - 0.9) < 1e-9);
    assert_string_equal(tu_pick(&r), "b");
    json_decref(t);
    sched_result_release(&r);
    sched_free(s);
    /* all weights 0: KV alone, as llm-d falls back */
    s = load_ok(ds, LS_CFG("{compositeKVWeight: 0, compositeQueueWeight: 0, "
                           "compositePrefixWeight: 0}",
                           ""));
    assert_string_equal(pick_req(s, &req, NULL), "b");
    sched_free(s);

    /* prefix share from the config's approximate prefix plugin: after a serves the prompt
     * it holds all of it, and prefix alone prefers it */
    fresh(ds, "a", 0, 0.5);
    fresh(ds, "b", 0, 0.5);
    s = load_ok(ds, LS_CFG("{compositeKVWeight: 0, compositeQueueWeight: 0}",
                           "- type: approx-prefix-cache-producer\n"
                           "  parameters: {blockSizeTokens: 4, autoTune: false}\n"));
    static const char p[] = "You are a helpful assistant. Answer briefly: what is 2+2?";
    struct sched_request preq = tu_req(p, "m");
    t = tu_trace(s, &preq, true, &r);
    assert_true(tu_score(t, 0, 0, "a") == 0 && tu_score(t, 0, 0, "b") == 0);
    json_decref(t);
    sched_result_release(&r);
    sched_schedule(s, &preq, false, &r, NULL); /* learns: the pick now holds the prompt */
    char first[8];
    snprintf(first, sizeof first, "%s", tu_pick(&r));
    sched_result_release(&r);
    t = tu_trace(s, &preq, true, &r);
    assert_true(tu_score(t, 0, 0, first) == 1.0);
    assert_true(tu_score(t, 0, 0, strcmp(first, "a") ? "a" : "b") == 0);
    json_decref(t);
    sched_result_release(&r);
    for (int i = 0; i < 10; i++)
        assert_string_equal(pick_req(s, &preq, NULL), first);
    sched_free(s);
    sched_ds_free(ds);

    one_warning(LS_CFG("{}", ""), "latency-scorer", "composite fallback");
    one_warning("plugins:\n- type: predicted-latency-producer\n"
                "  parameters: {samplingMean: 500, contextTTL: 300000000000, "
                "streamingMode: true, endpointRoleLabel: llm-d.ai/role}\n",
                "predicted-latency-producer", "latency-predictor sidecar");
    expect_error(LS_CFG("{headroomSelectionStrategy: fastest}", ""),
                 "c.yaml:3: plugins[0].parameters.headroomSelectionStrategy: must be least or "
                 "most, got 'fastest'");
    expect_error(LS_CFG("{compositeKVWeight: heavy}", ""),
                 "plugins[0].parameters.compositeKVWeight");
    expect_error(LS_CFG("{alpha: 1}", ""), "plugins[0].parameters.alpha");
    expect_error("plugins:\n- type: predicted-latency-producer\n  parameters: {samplingMean: 0}\n",
                 "c.yaml:3: plugins[0].parameters.samplingMean: must be > 0, got 0");
    expect_error("plugins:\n- type: predicted-latency-producer\n"
                 "  parameters: {sloBufferFactor: -1}\n",
                 "plugins[0].parameters.sloBufferFactor: must be > 0, got -1");
    expect_error("plugins:\n- type: predicted-latency-producer\n"
                 "  parameters: {maxDecodeTokenSamplesForPrediction: -1}\n",
                 "plugins[0].parameters.maxDecodeTokenSamplesForPrediction: must be >= 0");
    expect_error("plugins:\n- type: predicted-latency-producer\n"
                 "  parameters: {streamingMode: yes please}\n",
                 "plugins[0].parameters.streamingMode");
}

/* --- passthrough-parser ----------------------------------------------------------------------- */

static void test_passthrough_parser(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    /* the config's parser: the router reads no body (tests/integration/test_passthrough_parser.py)
     */
    struct sched *s = load_ok(ds, "plugins:\n- type: passthrough-parser\n- type: queue-scorer\n"
                                  "parser: {pluginRef: passthrough-parser}\n");
    assert_true(sched_passthrough_parser(s));
    /* no prompt, no model: still routed, on load */
    struct sched_request req = tu_req(NULL, NULL);
    int st = -1;
    assert_string_equal(pick_req(s, &req, &st), "a");
    assert_int_equal(st, 0);
    sched_free(s);
    /* declared but not the parser (llm-d's default openai-parser stays): bodies are parsed */
    s = load_ok(ds, "plugins:\n- type: passthrough-parser\n- type: queue-scorer\n");
    assert_false(sched_passthrough_parser(s));
    sched_free(s);
    s = load_ok(ds, "plugins:\n- type: openai-parser\n- type: queue-scorer\n"
                    "parser: {pluginRef: openai-parser}\n");
    assert_false(sched_passthrough_parser(s));
    sched_free(s);
    sched_ds_free(ds);
    one_warning("plugins:\n- type: passthrough-parser\n  parameters: {x: 1}\n",
                "passthrough-parser", "parameters are ignored");
    bool loaded;
    char *log = capture_load("plugins:\n- type: passthrough-parser\n", &loaded);
    assert_true(loaded);
    assert_string_equal(log, "");
}

/* --- vertexai-parser, flow-control policies: one WARN each, nothing changed ------------------- */

static void test_inert_plugins(void **state)
{
    (void)state;
    one_warning("plugins:\n- {name: v, type: vertexai-parser}\n- type: max-score-picker\n"
                "parser: {pluginRef: v}\n",
                "vertexai-parser", "Vertex AI's gRPC");
    static const char *const flow[] = {
        "global-strict-fairness-policy", "round-robin-fairness-policy",
        "fcfs-ordering-policy",          "edf-ordering-policy",
        "slo-deadline-ordering-policy",  "priority-then-time-eviction-order-policy",
        "sheddable-eviction-filter"};
    char cfg[256];
    for (size_t i = 0; i < sizeof flow / sizeof *flow; i++) {
        snprintf(cfg, sizeof cfg, "plugins:\n- type: %s\n", flow[i]);
        one_warning(cfg, flow[i], "tandem has no flow-control layer");
        /* llm-d's factories read no parameters: any given are ignored there, and here */
        snprintf(cfg, sizeof cfg, "plugins:\n- type: %s\n  parameters: {x: 1}\n", flow[i]);
        one_warning(cfg, flow[i], "its parameters are ignored");
    }
    /* a flow policy is not a parser */
    expect_error("plugins:\n- type: fcfs-ordering-policy\n- type: max-score-picker\n"
                 "parser: {pluginRef: fcfs-ordering-policy}\n",
                 "parser.pluginRef: 'fcfs-ordering-policy' is a flow-control policy, not a parser");

    /* and together they change nothing: the same picks as without them */
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    fresh(ds, "a", 3, 0.1);
    fresh(ds, "b", 0, 0.1);
    struct sched *s =
        load_ok(ds, "plugins:\n- type: queue-scorer\n- type: max-score-picker\n"
                    "- type: global-strict-fairness-policy\n- type: fcfs-ordering-policy\n"
                    "- type: sheddable-eviction-filter\n- type: vertexai-parser\n"
                    "- type: inflight-load-producer\n- type: predicted-latency-producer\n"
                    "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer}, "
                    "{pluginRef: max-score-picker}, {pluginRef: fcfs-ordering-policy}]\n");
    struct sched_request req = tu_req("x", "m");
    req.priority = -1;
    for (int i = 0; i < 10; i++) {
        int st = -1;
        assert_string_equal(pick_req(s, &req, &st), "b");
        assert_int_equal(st, 0);
    }
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aliases),        cmocka_unit_test(test_concurrency_detector),
        cmocka_unit_test(test_latency_scorer), cmocka_unit_test(test_passthrough_parser),
        cmocka_unit_test(test_inert_plugins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

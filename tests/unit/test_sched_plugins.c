/* Unit tests for the scheduler's plugins: each scorer's formula on crafted metrics,
 * filters by role and labels, pickers (ties, round robin order, consistent hashing,
 * power of two, cache aware), the P/D handlers and deciders, and the trace JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "sched/sched_internal.h"
#include "test_sched_util.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static struct sched_datastore *three(void)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "c", SCHED_ROLE_DECODE, NULL, NULL);
    return ds;
}

static json_t *dry(struct sched *s, const char *prompt)
{
    struct sched_request req = tu_req(prompt, "m");
    struct sched_result r;
    json_t *j = tu_trace(s, &req, true, &r);
    assert_int_equal(r.status, 0);
    sched_result_release(&r);
    return j;
}

static void test_queue_and_running_scorers(void **state)
{
    struct sched_datastore *ds = three();
    tu_metrics(ds, "a", 0, 10, 0);
    tu_metrics(ds, "b", 5, 5, 0);
    tu_metrics(ds, "c", 10, 0, 0);
    struct sched *s = tu_one(ds, "queue-scorer", NULL);
    json_t *j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 1.0);
    NEAR(tu_score(j, 0, 0, "b"), 0.5);
    NEAR(tu_score(j, 0, 0, "c"), 0.0);
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "running-requests-size-scorer", NULL);
    j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 0.0);
    NEAR(tu_score(j, 0, 0, "c"), 1.0);
    json_decref(j);
    /* All equal -> 1 for everyone. */
    tu_metrics(ds, "a", 3, 3, 0);
    tu_metrics(ds, "b", 3, 3, 0);
    tu_metrics(ds, "c", 3, 3, 0);
    j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 1.0);
    NEAR(tu_score(j, 0, 0, "b"), 1.0);
    json_decref(j);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_kv_and_load_aware(void **state)
{
    struct sched_datastore *ds = three();
    tu_metrics(ds, "a", 0, 0, 0.25);
    tu_metrics(ds, "b", 5, 0, 0.9);
    tu_metrics(ds, "c", 20, 0, 1.0);
    struct sched *s = tu_one(ds, "kv-cache-utilization-scorer", NULL);
    json_t *j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 0.75);
    NEAR(tu_score(j, 0, 0, "b"), 0.1);
    NEAR(tu_score(j, 0, 0, "c"), 0.0);
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "load-aware-scorer", "{threshold: 10}");
    j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 0.5);
    NEAR(tu_score(j, 0, 0, "b"), 0.25);
    NEAR(tu_score(j, 0, 0, "c"), 0.0);
    json_decref(j);
    sched_free(s);
    sched_ds_free(ds);
}

static void inflight(struct sched_datastore *ds, const char *name, int64_t req, int64_t tok)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    sched_endpoint_inflight_add(e, req, tok);
    sched_endpoint_unref(e);
}

/* Scraped metrics as the router's scraper stores them: base = the endpoint's sent totals
 * now (the scrape was just requested), or UINT64_MAX for --raw-scraped-load. */
static void scraped(struct sched_datastore *ds, const char *name, double waiting, double kv,
                    bool raw)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = m.healthy = true;
    m.waiting = waiting;
    m.kv_usage = kv;
    m.block_size = 10;
    m.num_blocks = 100; /* 1,000 tokens of KV cache */
    sched_endpoint_sent(e, &m.sent_base_requests, &m.sent_base_tokens);
    if (raw)
        m.sent_base_requests = UINT64_MAX;
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

/* Between two scrapes the queue and KV scorers count what was sent since the last one:
 * without it the next picks would all go to "a" again. */
static void test_sent_since_scrape(void **state)
{
    struct sched_datastore *ds = three();
    for (int raw = 0; raw < 2; raw++) {
        scraped(ds, "a", 2, 0.5, raw);
        scraped(ds, "b", 2, 0.5, raw);
        scraped(ds, "c", 4, 0.5, raw);
        inflight(ds, "a", 1, 100); /* one request of 100 prompt tokens sent to a */
        struct sched *q = tu_one(ds, "queue-scorer", NULL);
        struct sched *kv = tu_one(ds, "kv-cache-utilization-scorer", NULL);
        struct sched *la = tu_one(ds, "load-aware-scorer", "{threshold: 10}");
        json_t *jq = dry(q, "x"), *jk = dry(kv, "x"), *jl = dry(la, "x");
        if (raw) { /* the scraped values as they are */
            NEAR(tu_score(jq, 0, 0, "a"), 1.0);
            NEAR(tu_score(jk, 0, 0, "a"), 0.5);
            NEAR(tu_score(jl, 0, 0, "a"), 0.4);
        } else { /* a: 3 waiting, 0.5 + 100 / 1000 KV */
            NEAR(tu_score(jq, 0, 0, "a"), 0.5);
            NEAR(tu_score(jq, 0, 0, "b"), 1.0);
            NEAR(tu_score(jk, 0, 0, "a"), 0.4);
            NEAR(tu_score(jk, 0, 0, "b"), 0.5);
            NEAR(tu_score(jl, 0, 0, "a"), 0.35);
        }
        json_decref(jq);
        json_decref(jk);
        json_decref(jl);
        struct sched_endpoint *e = sched_ds_find(ds, "a");
        struct sched_endpoint_metrics m;
        sched_endpoint_snapshot(e, &m);
        NEAR(m.pending_requests, raw ? 0.0 : 1.0);
        NEAR(m.pending_tokens, raw ? 0.0 : 100.0);
        NEAR(m.waiting, 2.0); /* the scraped value itself is untouched */
        /* the next scrape shows it: sent before that scrape, it no longer counts */
        scraped(ds, "a", 2, 0.5, raw);
        sched_endpoint_snapshot(e, &m);
        NEAR(m.pending_requests, 0.0);
        NEAR(m.pending_tokens, 0.0);
        /* in flight from before the scrape does not count either; finished does not */
        inflight(ds, "a", 1, 100);
        sched_endpoint_snapshot(e, &m);
        NEAR(m.pending_requests, raw ? 0.0 : 1.0);
        inflight(ds, "a", -2, -200);
        sched_endpoint_snapshot(e, &m);
        NEAR(m.pending_requests, 0.0);
        NEAR(m.pending_tokens, 0.0);
        sched_endpoint_unref(e);
        jq = dry(q, "x");
        NEAR(tu_score(jq, 0, 0, "a"), 1.0);
        json_decref(jq);
        /* the KV estimate is capped at full */
        inflight(ds, "b", 1, 5000);
        jk = dry(kv, "x");
        NEAR(tu_score(jk, 0, 0, "b"), raw ? 0.5 : 0.0);
        json_decref(jk);
        inflight(ds, "b", -1, -5000);
        sched_free(q);
        sched_free(kv);
        sched_free(la);
    }
    sched_ds_free(ds);
}

static void test_active_and_token_load(void **state)
{
    struct sched_datastore *ds = three();
    inflight(ds, "a", 0, 0);
    inflight(ds, "b", 2, 200); /* 200 prompt tokens + llm-d's 1.5 x output estimate: 500 */
    inflight(ds, "c", 4, 2000);
    struct sched *s = tu_one(ds, "active-request-scorer", "{idleThreshold: 1, maxBusyScore: 0.8}");
    json_t *j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 1.0);
    NEAR(tu_score(j, 0, 0, "b"), 0.4);
    NEAR(tu_score(j, 0, 0, "c"), 0.0);
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "token-load-scorer", "{queueThresholdTokens: 1000}");
    j = dry(s, "x");
    NEAR(tu_score(j, 0, 0, "a"), 1.0);
    NEAR(tu_score(j, 0, 0, "b"), 0.5);
    NEAR(tu_score(j, 0, 0, "c"), 0.0);
    json_decref(j);
    sched_free(s);
    sched_ds_free(ds);
}

static void lora(struct sched_datastore *ds, const char *name, const char *running,
                 const char *waiting, uint32_t max)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    struct sched_endpoint_metrics m = {.have = true, .healthy = true, .max_lora = max};
    snprintf(m.running_loras, sizeof m.running_loras, "%s", running);
    snprintf(m.waiting_loras, sizeof m.waiting_loras, "%s", waiting);
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

static void test_lora_affinity(void **state)
{
    struct sched_datastore *ds = three();
    tu_add(ds, "d", SCHED_ROLE_DECODE, NULL, NULL);
    lora(ds, "a", "x,sql-lora", "", 2);
    lora(ds, "b", "x", "", 2);         /* free slot */
    lora(ds, "c", "x", "sql-lora", 1); /* waiting */
    lora(ds, "d", "x", "y", 1);        /* nothing */
    struct sched *s = tu_one(ds, "lora-affinity-scorer", NULL);
    struct sched_request req = tu_req("x", "m");
    req.target_lora = "sql-lora";
    struct sched_result r;
    json_t *j = tu_trace(s, &req, true, &r);
    NEAR(tu_score(j, 0, 0, "a"), 1.0);
    NEAR(tu_score(j, 0, 0, "b"), 0.8);
    NEAR(tu_score(j, 0, 0, "c"), 0.6);
    NEAR(tu_score(j, 0, 0, "d"), 0.0);
    assert_string_equal(tu_pick(&r), "a");
    sched_result_release(&r);
    json_decref(j);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_no_hit_lru_spreads_cold_requests(void **state)
{
    struct sched_datastore *ds = three();
    struct sched *s = tu_one(ds, "no-hit-lru-scorer", NULL);
    struct sched_request req = tu_req("cold", "m");
    bool seen[3] = {false, false, false};
    char first[8] = "";
    for (int i = 0; i < 3; i++) {
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        const char *p = tu_pick(&r);
        assert_false(seen[p[0] - 'a']); /* never a pod that already took a cold request */
        seen[p[0] - 'a'] = true;
        if (i == 0)
            snprintf(first, sizeof first, "%s", p);
        sched_result_release(&r);
    }
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    assert_string_equal(tu_pick(&r), first); /* least recently used */
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* --- filters --------------------------------------------------------------------------------- */

static json_t *survivors(json_t *trace, size_t p, size_t f)
{
    return json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(trace, "profiles"), p), "filters"), f),
        "survivors");
}

static bool has_name(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), name) == 0) return true;
    return false;
}

static void test_role_filters(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "dec", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "pre", SCHED_ROLE_PREFILL, NULL, NULL);
    tu_add(ds, "both", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "none", SCHED_ROLE_NONE, NULL, NULL);
    tu_add(ds, "lbl", SCHED_ROLE_NONE, "llm-d.ai/role", "prefill");
    struct sched *s = tu_one(ds, "decode-filter", NULL);
    json_t *j = dry(s, "x");
    json_t *sv = survivors(j, 0, 0);
    assert_int_equal(json_array_size(sv), 3);
    assert_true(has_name(sv, "dec") && has_name(sv, "both") && has_name(sv, "none"));
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "prefill-filter", NULL);
    j = dry(s, "x");
    sv = survivors(j, 0, 0);
    assert_int_equal(json_array_size(sv), 3);
    assert_true(has_name(sv, "pre") && has_name(sv, "both") && has_name(sv, "lbl"));
    json_decref(j);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_label_filters(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, "zone", "a");
    tu_add(ds, "b", SCHED_ROLE_DECODE, "zone", "b");
    tu_add(ds, "c", SCHED_ROLE_DECODE, "gpu", "h100");
    struct sched *s = tu_one(ds, "by-label", "{label: zone, validValues: [a]}");
    json_t *j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 1);
    assert_true(has_name(survivors(j, 0, 0), "a"));
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "by-label", "{label: zone, validValues: [b], allowsNoLabel: true}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 2);
    assert_true(has_name(survivors(j, 0, 0), "b") && has_name(survivors(j, 0, 0), "c"));
    json_decref(j);
    sched_free(s);

    s = tu_one(ds, "label-selector-filter", "{matchLabels: {zone: b}}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 1);
    assert_true(has_name(survivors(j, 0, 0), "b"));
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "label-selector-filter",
               "{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 2);
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "label-selector-filter",
               "{matchExpressions: [{key: zone, operator: NotIn, values: [a]}]}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 2); /* b, and c (no label) */
    assert_false(has_name(survivors(j, 0, 0), "a"));
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "label-selector-filter", "{matchExpressions: [{key: gpu, operator: Exists}]}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 1);
    assert_true(has_name(survivors(j, 0, 0), "c"));
    json_decref(j);
    sched_free(s);
    s = tu_one(ds, "label-selector-filter",
               "{matchExpressions: [{key: gpu, operator: DoesNotExist}]}");
    j = dry(s, "x");
    assert_int_equal(json_array_size(survivors(j, 0, 0)), 2);
    assert_false(has_name(survivors(j, 0, 0), "c"));
    json_decref(j);
    sched_free(s);

    /* Nothing survives: 503 naming the filter. */
    s = tu_one(ds, "by-label", "{label: zone, validValues: [z]}");
    struct sched_request req = tu_req("x", "m");
    struct sched_result r;
    j = tu_trace(s, &req, true, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.n_picks, 0);
    assert_non_null(strstr(r.reason, "by-label"));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 503);
    json_decref(j);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* --- pickers --------------------------------------------------------------------------------- */

static void test_max_score_ties_random_among_max(void **state)
{
    struct sched_datastore *ds = three();
    tu_metrics(ds, "a", 0, 0, 0);
    tu_metrics(ds, "b", 0, 0, 0);
    tu_metrics(ds, "c", 5, 0, 0);
    struct sched *s = tu_one(ds, "queue-scorer", NULL);
    int count[3] = {0, 0, 0};
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 400; i++) {
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        count[tu_pick(&r)[0] - 'a']++;
        sched_result_release(&r);
    }
    assert_int_equal(count[2], 0);
    assert_true(count[0] > 100 && count[1] > 100);
    sched_free(s);

    /* maxNumOfEndpoints: best first, then fallbacks in score order. */
    const char *cfg = "plugins:\n- type: queue-scorer\n- type: max-score-picker\n"
                      "  parameters: {maxNumOfEndpoints: 3}\n"
                      "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer},"
                      " {pluginRef: max-score-picker}]\n";
    tu_metrics(ds, "a", 1, 0, 0);
    struct errinfo err;
    s = sched_new(ds, cfg, strlen(cfg), "<t>", &err);
    assert_non_null(s);
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.n_picks, 3);
    assert_string_equal(sched_endpoint_name(r.picks[0]), "b");
    assert_string_equal(sched_endpoint_name(r.picks[1]), "a");
    assert_string_equal(sched_endpoint_name(r.picks[2]), "c");
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_random_and_weighted_random(void **state)
{
    struct sched_datastore *ds = three();
    struct sched *s = tu_one(ds, "random-picker", NULL);
    int count[3] = {0, 0, 0};
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 300; i++) {
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        count[tu_pick(&r)[0] - 'a']++;
        sched_result_release(&r);
    }
    assert_true(count[0] > 50 && count[1] > 50 && count[2] > 50);
    sched_free(s);

    /* Weighted: kv scores 0.9 / 0.1 / 0 -> a chosen about 90% of the time, c never. */
    tu_metrics(ds, "a", 0, 0, 0.1);
    tu_metrics(ds, "b", 0, 0, 0.9);
    tu_metrics(ds, "c", 0, 0, 1.0);
    const char *cfg =
        "plugins:\n- type: kv-cache-utilization-scorer\n- type: weighted-random-picker\n"
        "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: kv-cache-utilization-scorer},"
        " {pluginRef: weighted-random-picker}]\n";
    struct errinfo err;
    s = sched_new(ds, cfg, strlen(cfg), "<t>", &err);
    assert_non_null(s);
    memset(count, 0, sizeof count);
    for (int i = 0; i < 1000; i++) {
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        count[tu_pick(&r)[0] - 'a']++;
        sched_result_release(&r);
    }
    assert_int_equal(count[2], 0);
    assert_true(count[0] > 820 && count[0] < 960);
    assert_true(count[1] > 40);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_round_robin_order(void **state)
{
    struct sched_datastore *ds = three();
    struct sched *s = tu_one(ds, "round-robin-picker", NULL);
    struct sched_request req = tu_req("x", "m");
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    char first = tu_pick(&r)[0];
    sched_result_release(&r);
    for (int i = 1; i < 9; i++) {
        /* A dry run shows the next pod without consuming it. */
        sched_schedule(s, &req, true, &r, NULL);
        char peek = tu_pick(&r)[0];
        sched_result_release(&r);
        sched_schedule(s, &req, false, &r, NULL);
        assert_int_equal(tu_pick(&r)[0], 'a' + (first - 'a' + i) % 3);
        assert_int_equal(peek, tu_pick(&r)[0]);
        sched_result_release(&r);
    }
    sched_free(s);
    sched_ds_free(ds);
}

static const char *chash_pick(struct sched *s, const char *key, char *out, size_t cap)
{
    struct tu_headers h;
    tu_headers_set(&h, "x-session-id", key);
    struct sched_request req = tu_req("same prompt", "m");
    req.headers = &h.h;
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    snprintf(out, cap, "%s", tu_pick(&r));
    sched_result_release(&r);
    return out;
}

static void test_rendezvous_hash(void **state)
{
    /* Highest random weight: the same key -> the same pod in any process and any order;
     * removing a pod moves only its keys; a blocked (circuit open) pod is skipped. */
    const char *names[] = {"decode-0", "decode-1", "decode-2", "decode-3"};
    struct sched_datastore *ds1 = sched_ds_new(), *ds2 = sched_ds_new();
    for (int i = 0; i < 4; i++) {
        tu_add(ds1, names[i], SCHED_ROLE_DECODE, NULL, NULL);
        tu_add(ds2, names[3 - i], SCHED_ROLE_DECODE, NULL, NULL);
    }
    struct sched *s1 = tu_one(ds1, "rendezvous-hash-picker", NULL);
    struct sched *s2 = tu_one(ds2, "rendezvous-hash-picker", NULL);
    enum { N = 4000 };
    char(*before)[32] = calloc(N, 32);
    int per_pod[4] = {0};
    for (int i = 0; i < N; i++) {
        char key[32], other[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, before[i], 32);
        chash_pick(s2, key, other, sizeof other);
        assert_string_equal(before[i], other);
        per_pod[before[i][7] - '0']++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(per_pod[i] > N / 6);
    assert_true(sched_ds_remove(ds1, "decode-3"));
    for (int i = 0; i < N; i++) {
        char key[32], now[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, now, sizeof now);
        if (strcmp(before[i], "decode-3") != 0)
            assert_string_equal(now, before[i]);
    }
    struct sched_endpoint *e = sched_ds_find(ds1, "decode-0");
    sched_endpoint_set_blocked(e, true);
    for (int i = 0; i < 500; i++) {
        char key[32], now[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, now, sizeof now);
        assert_string_not_equal(now, "decode-0");
        if (strcmp(before[i], "decode-0") != 0 && strcmp(before[i], "decode-3") != 0)
            assert_string_equal(now, before[i]);
    }
    sched_endpoint_set_blocked(e, false);
    sched_endpoint_unref(e);
    free(before);
    sched_free(s1);
    sched_free(s2);
    sched_ds_free(ds1);
    sched_ds_free(ds2);
}

static void test_consistent_hash(void **state)
{
    const char *names[] = {"decode-0", "decode-1", "decode-2", "decode-3"};
    struct sched_datastore *ds1 = sched_ds_new(), *ds2 = sched_ds_new();
    for (int i = 0; i < 4; i++) {
        tu_add(ds1, names[i], SCHED_ROLE_DECODE, NULL, NULL);
        tu_add(ds2, names[3 - i], SCHED_ROLE_DECODE, NULL, NULL); /* other order */
    }
    struct sched *s1 = tu_one(ds1, "consistent-hash-picker", NULL);
    struct sched *s2 = tu_one(ds2, "consistent-hash-picker", NULL);
    enum { N = 10000 };
    char(*before)[32] = calloc(N, 32);
    int per_pod[4] = {0};
    for (int i = 0; i < N; i++) {
        char key[32], other[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, before[i], 32);
        chash_pick(s2, key, other, sizeof other);
        assert_string_equal(before[i], other);
        per_pod[before[i][7] - '0']++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(per_pod[i] > N / 8); /* balanced enough with 160 virtual nodes */

    /* A 5th pod takes about 1/5 of the keys; the others stay where they were. */
    tu_add(ds1, "decode-4", SCHED_ROLE_DECODE, NULL, NULL);
    int moved = 0;
    for (int i = 0; i < N; i++) {
        char key[32], now[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, now, sizeof now);
        if (strcmp(now, before[i]) != 0) {
            moved++;
            assert_string_equal(now, "decode-4");
        }
    }
    assert_true(moved > N / 10 && moved < N * 3 / 10);

    /* Unhealthy owner -> next on the ring; keys of healthy owners do not move. */
    assert_true(sched_ds_remove(ds1, "decode-4"));
    struct sched_endpoint *e = sched_ds_find(ds1, "decode-1");
    sched_endpoint_set_health(e, false);
    for (int i = 0; i < 2000; i++) {
        char key[32], now[32];
        snprintf(key, sizeof key, "session-%d", i);
        chash_pick(s1, key, now, sizeof now);
        assert_string_not_equal(now, "decode-1");
        if (strcmp(before[i], "decode-1") != 0)
            assert_string_equal(now, before[i]);
    }
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);

    /* Key from the body's "user" when no header is present. */
    struct sched_request req = tu_req("prompt one", "m");
    req.user = "alice";
    struct sched_result r;
    sched_schedule(s1, &req, true, &r, NULL);
    char want[32];
    snprintf(want, sizeof want, "%s", tu_pick(&r));
    sched_result_release(&r);
    req = tu_req("a totally different prompt", "m");
    req.user = "alice";
    for (int i = 0; i < 20; i++) {
        sched_schedule(s2, &req, true, &r, NULL);
        assert_string_equal(tu_pick(&r), want);
        sched_result_release(&r);
    }
    free(before);
    sched_free(s1);
    sched_free(s2);
    sched_ds_free(ds1);
    sched_ds_free(ds2);
}

static void test_power_of_two(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "idle", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "busy", SCHED_ROLE_DECODE, NULL, NULL);
    tu_metrics(ds, "busy", 10, 0, 0);
    tu_metrics(ds, "idle", 0, 0, 0);
    struct sched *s = tu_one(ds, "power-of-two-picker", NULL);
    struct sched_request req = tu_req("x", "m");
    for (int i = 0; i < 50; i++) {
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        assert_string_equal(tu_pick(&r), "idle");
        sched_result_release(&r);
    }
    sched_free(s);
    sched_ds_free(ds);
}

static void test_cache_aware(void **state)
{
    struct sched_datastore *ds = three();
    struct sched *s = tu_one(ds, "cache-aware-picker", NULL);
    const char *p1 = "You are a helpful assistant. Answer the following question about Kubernetes "
                     "networking in detail, please: what is a Service?";
    const char *p2 = "You are a helpful assistant. Answer the following question about Kubernetes "
                     "networking in detail, please: what is an Ingress?";
    tu_metrics(ds, "a", 2, 0, 0);
    tu_metrics(ds, "b", 0, 0, 0);
    tu_metrics(ds, "c", 3, 0, 0);
    struct sched_request req = tu_req(p1, "m");
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    assert_string_equal(tu_pick(&r), "b"); /* no match anywhere: least loaded */
    sched_result_release(&r);
    tu_metrics(ds, "b", 4, 0, 0); /* now b is the busiest, but holds the prefix */
    req = tu_req(p2, "m");
    sched_schedule(s, &req, false, &r, NULL);
    assert_string_equal(tu_pick(&r), "b");
    sched_result_release(&r);
    /* A different model does not share the tree. */
    req = tu_req(p2, "other-model");
    sched_schedule(s, &req, true, &r, NULL);
    assert_string_equal(tu_pick(&r), "a");
    sched_result_release(&r);
    /* Imbalance (max-min > 64 and max > 1.5*min): shortest queue wins. */
    tu_metrics(ds, "b", 100, 0, 0);
    req = tu_req(p2, "m");
    sched_schedule(s, &req, true, &r, NULL);
    assert_string_equal(tu_pick(&r), "a");
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* --- P/D ------------------------------------------------------------------------------------ */

static const char pd_cfg[] =
    "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
    "- type: prefill-filter\n- type: decode-filter\n"
    "- type: prefix-cache-scorer\n  parameters: {blockSize: 16}\n"
    "- type: queue-scorer\n"
    "- type: pd-profile-handler\n  parameters: {threshold: 100, hashBlockSize: 16}\n"
    "schedulingProfiles:\n"
    "- name: prefill\n  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]\n"
    "- name: decode\n  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer, "
    "weight: 2}, {pluginRef: queue-scorer}]\n";

static void test_pd_profile_handler(void **state)
{
    struct sched_datastore *ds = tu_pd_ds();
    struct errinfo err;
    struct sched *s = sched_new(ds, pd_cfg, strlen(pd_cfg), "<t>", &err);
    assert_non_null(s);
    /* Short prompt (< threshold chars): decode only. */
    struct sched_request req = tu_req("short prompt", "m");
    struct sched_result r;
    json_t *j = tu_trace(s, &req, false, &r);
    assert_int_equal(r.status, 0);
    assert_null(r.prefill);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "pd"), "decision")),
                        "decode-only");
    assert_int_equal(json_array_size(json_object_get(j, "profiles")), 1);
    json_decref(j);
    sched_result_release(&r);

    /* Long uncached prompt: prefill runs and picks the prefill pod. */
    char longp[600];
    for (size_t i = 0; i < sizeof longp - 1; i++)
        longp[i] = (char)('a' + (i * 7) % 26);
    longp[sizeof longp - 1] = 0;
    req = tu_req(longp, "m");
    j = tu_trace(s, &req, false, &r);
    assert_non_null(r.prefill);
    assert_string_equal(sched_endpoint_name(r.prefill), "prefill-0");
    char decode[32];
    snprintf(decode, sizeof decode, "%s", tu_pick(&r));
    assert_int_equal(strncmp(decode, "decode-", 7), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "pd"), "decision")),
                        "disaggregate");
    assert_string_equal(json_string_value(json_object_get(j, "prefill")), "prefill-0");
    assert_int_equal(json_array_size(json_object_get(j, "profiles")), 2);
    json_decref(j);
    sched_result_release(&r);

    /* Same prompt again: cached on that decode pod -> decode only, same pod. */
    j = tu_trace(s, &req, false, &r);
    assert_null(r.prefill);
    assert_string_equal(tu_pick(&r), decode);
    json_decref(j);
    sched_result_release(&r);

    /* No prefill pod alive: decode alone serves. */
    struct sched_endpoint *p = sched_ds_find(ds, "prefill-0");
    sched_endpoint_set_health(p, false);
    req = tu_req("a completely different long prompt that nobody has sent before, long enough "
                 "to be over the one hundred character threshold for sure",
                 "m");
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.status, 0);
    assert_null(r.prefill);
    assert_non_null(strstr(r.pd_reason, "no prefill"));
    sched_result_release(&r);
    sched_endpoint_unref(p);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_disagg_handler_and_deciders(void **state)
{
    struct sched_datastore *ds = tu_pd_ds();
    const char *cfg =
        "plugins:\n- type: prefill-filter\n- type: decode-filter\n"
        "- type: prefix-cache-scorer\n  parameters: {blockSize: 16}\n"
        "- type: prefix-based-pd-decider\n  name: dec\n  parameters: {nonCachedTokens: 20}\n"
        "- type: disagg-profile-handler\n  parameters: {deciders: {prefill: dec}}\n"
        "schedulingProfiles:\n"
        "- name: prefill\n  plugins: [{pluginRef: prefill-filter}]\n"
        "- name: decode\n  plugins: [{pluginRef: decode-filter}, {pluginRef: "
        "prefix-cache-scorer}]\n";
    struct errinfo err;
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "<t>", &err);
    if (!s)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(s);
    struct sched_request req = tu_req("tiny", "m");
    req.prompt_tokens = 1;
    struct sched_result r;
    sched_schedule(s, &req, false, &r, NULL);
    assert_null(r.prefill); /* 1 token < 20 non-cached tokens */
    sched_result_release(&r);
    char longp[801];
    for (size_t i = 0; i < 800; i++)
        longp[i] = (char)('a' + (i * 11) % 26);
    longp[800] = 0;
    req = tu_req(longp, "m");
    req.prompt_tokens = 200;
    sched_schedule(s, &req, false, &r, NULL);
    assert_non_null(r.prefill);
    assert_non_null(strstr(r.pd_reason, "disaggregate"));
    sched_result_release(&r);
    sched_schedule(s, &req, false, &r, NULL);
    assert_null(r.prefill); /* now fully cached on the decode pod */
    assert_non_null(strstr(r.pd_reason, "cached"));
    sched_result_release(&r);
    sched_free(s);

    /* always-disagg */
    cfg = "plugins:\n- type: prefill-filter\n- type: decode-filter\n"
          "- type: always-disagg-pd-decider\n"
          "- type: disagg-profile-handler\n"
          "  parameters: {deciders: {prefill: always-disagg-pd-decider}}\n"
          "schedulingProfiles:\n"
          "- name: prefill\n  plugins: [{pluginRef: prefill-filter}]\n"
          "- name: decode\n  plugins: [{pluginRef: decode-filter}]\n";
    s = sched_new(ds, cfg, strlen(cfg), "<t>", &err);
    assert_non_null(s);
    req = tu_req("tiny", "m");
    sched_schedule(s, &req, true, &r, NULL);
    assert_non_null(r.prefill);
    assert_int_equal(sched_endpoint_role(r.prefill), SCHED_ROLE_PREFILL);
    assert_int_equal(sched_endpoint_role(r.picks[0]), SCHED_ROLE_DECODE);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* --- the trace ------------------------------------------------------------------------------ */

static void test_trace_fields(void **state)
{
    struct sched_datastore *ds = three();
    tu_metrics(ds, "a", 1, 0, 0.5);
    tu_metrics(ds, "b", 0, 0, 0.2);
    tu_metrics(ds, "c", 4, 0, 0.9);
    struct sched *s = sched_new(ds, NULL, 0, NULL, NULL);
    assert_non_null(s);
    struct sched_request req = tu_req("hello \"world\"\n", "meta-llama/Llama-3.2-3B-Instruct");
    struct sched_result r;
    json_t *j = tu_trace(s, &req, true, &r);
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(j, "model")),
                        "meta-llama/Llama-3.2-3B-Instruct");
    json_t *p = json_array_get(json_object_get(j, "profiles"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "name")), "default");
    assert_int_equal(json_array_size(json_object_get(p, "candidates")), 3);
    assert_true(json_is_array(json_object_get(p, "filters")));
    json_t *sc = json_object_get(p, "scorers");
    assert_int_equal(json_array_size(sc), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sc, 0), "name")),
                        "queue-scorer");
    NEAR(json_number_value(json_object_get(json_array_get(sc, 0), "weight")), 2);
    NEAR(json_number_value(json_object_get(json_array_get(sc, 2), "weight")), 3);
    /* b: queue 1.0*2 + kv 0.8*2 + prefix 0*3 = 3.6 */
    NEAR(json_number_value(json_object_get(json_object_get(p, "totals"), "b")), 3.6);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "picked"), 0)), "b");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "picked"), 0)), "b");
    assert_true(json_is_null(json_object_get(j, "prefill")));
    json_t *pd = json_object_get(j, "pd");
    assert_non_null(json_object_get(pd, "decision"));
    assert_non_null(json_object_get(pd, "reason"));
    assert_true(json_is_number(json_object_get(j, "elapsed_us")));
    assert_string_equal(tu_pick(&r), "b");
    assert_true(r.elapsed_ns > 0);
    json_decref(j);
    sched_result_release(&r);
    /* Text that needs escaping stays valid JSON; a NULL model is null. */
    req.request_id = "id \"quoted\" \\ \n";
    req.model = NULL;
    j = tu_trace(s, &req, true, &r);
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), req.request_id);
    assert_true(json_is_null(json_object_get(j, "model")));
    json_decref(j);
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_and_running_scorers),
        cmocka_unit_test(test_kv_and_load_aware),
        cmocka_unit_test(test_active_and_token_load),
        cmocka_unit_test(test_sent_since_scrape),
        cmocka_unit_test(test_lora_affinity),
        cmocka_unit_test(test_no_hit_lru_spreads_cold_requests),
        cmocka_unit_test(test_role_filters),
        cmocka_unit_test(test_label_filters),
        cmocka_unit_test(test_max_score_ties_random_among_max),
        cmocka_unit_test(test_random_and_weighted_random),
        cmocka_unit_test(test_round_robin_order),
        cmocka_unit_test(test_consistent_hash),
        cmocka_unit_test(test_rendezvous_hash),
        cmocka_unit_test(test_power_of_two),
        cmocka_unit_test(test_cache_aware),
        cmocka_unit_test(test_pd_profile_handler),
        cmocka_unit_test(test_disagg_handler_and_deciders),
        cmocka_unit_test(test_trace_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

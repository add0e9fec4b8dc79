/* Unit tests for bench/stats and bench/report against hand-computed cases: numpy's linear
 * percentiles, population std, vLLM's TPOT (1-token requests excluded) and pooled ITL,
 * throughput and goodput under SLOs, failures by status, cache hit ratio, stage filtering,
 * peak concurrency, the result JSON's key names, --goodput parsing, the HTML page and
 * `bench compare`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "bench/bench.h"

#define EPS 1e-6

static struct bench_record rec_ok(double t_sched, double t_send, double ttft, double e2el,
                                  uint32_t in, uint32_t out, const double *itl, size_t n_itl,
                                  const char *pod)
{
    struct bench_record r;
    memset(&r, 0, sizeof r);
    r.ok = true;
    r.status = 200;
    r.t_sched = t_sched;
    r.t_send = t_send;
    r.ttft = ttft;
    r.e2el = e2el;
    r.input_tokens = in;
    r.output_tokens = out;
    if (n_itl) {
        r.itl = xmalloc(n_itl * sizeof *r.itl);
        memcpy(r.itl, itl, n_itl * sizeof *itl);
        r.n_itl = n_itl;
    }
    snprintf(r.pod, sizeof r.pod, "%s", pod ? pod : "");
    return r;
}

static struct bench_record rec_fail(int status, double t_sched, double t_send, double e2el)
{
    struct bench_record r;
    memset(&r, 0, sizeof r);
    r.ok = false;
    r.status = status;
    r.t_sched = t_sched;
    r.t_send = t_send;
    r.ttft = -1;
    r.e2el = e2el;
    r.input_tokens = 7;
    snprintf(r.error, sizeof r.error, "%s", status ? "HTTP 503" : "connection refused");
    return r;
}

/* The hand-computed scenario (see each test for the arithmetic):
 *   A ok  send 0.0 ttft .1 e2el .5  in 100 out 5 itl .1 x4  pod-b cached 50
 *   B ok  send 0.2 ttft .2 e2el 1.0 in 200 out 3 itl .4 x2  pod-a cached 0 (sched 0.1)
 *   C ok  send 0.5 ttft .3 e2el .3  in 50  out 1 no itl     pod-a no cache info
 *   D 503 send 0.6 e2el .1;  E none send 1.0 e2el 1.0;  F 503 send 0.7 e2el .05 */
enum { N_SCEN = 6 };

static void scenario(struct bench_record *r)
{
    const double a_itl[] = {0.1, 0.1, 0.1, 0.1}, b_itl[] = {0.4, 0.4};
    r[0] = rec_ok(0.0, 0.0, 0.1, 0.5, 100, 5, a_itl, 4, "pod-b");
    r[0].has_cached = true;
    r[0].cached_tokens = 50;
    r[1] = rec_ok(0.1, 0.2, 0.2, 1.0, 200, 3, b_itl, 2, "pod-a");
    r[1].has_cached = true;
    r[1].cached_tokens = 0;
    r[2] = rec_ok(0.5, 0.5, 0.3, 0.3, 50, 1, NULL, 0, "pod-a");
    r[3] = rec_fail(503, 0.6, 0.6, 0.1);
    r[4] = rec_fail(0, 1.0, 1.0, 1.0);
    r[5] = rec_fail(503, 0.7, 0.7, 0.05);
}

static void free_recs(struct bench_record *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bench_record_free(&r[i]);
}

static void test_percentiles(void **state)
{
    (void)state;
    struct bench_record r[4];
    for (int i = 0; i < 4; i++)
        r[i] = rec_ok(0, 0, (i + 1) / 1000.0, 0.01, 1, 1, NULL, 0, NULL);
    const double pcts[] = {50, 90, 99, 0, 100};
    struct bench_stats s;
    bench_stats_compute(r, 4, -1, NULL, pcts, 5, &s);
    assert_int_equal(s.ttft.n, 4);
    assert_float_equal(s.ttft.mean, 2.5, EPS);
    assert_float_equal(s.ttft.median, 2.5, EPS);
    assert_float_equal(s.ttft.std, sqrt(1.25), EPS); /* ddof=0: (2.25+.25+.25+2.25)/4 */
    assert_float_equal(s.ttft.pct[0], 2.5, EPS);
    assert_float_equal(s.ttft.pct[1], 3.7, EPS);  /* rank 2.7: 3 + .7 */
    assert_float_equal(s.ttft.pct[2], 3.97, EPS); /* rank 2.97 */
    assert_float_equal(s.ttft.pct[3], 1.0, EPS);
    assert_float_equal(s.ttft.pct[4], 4.0, EPS);
    assert_float_equal(s.ttft.min, 1.0, EPS);
    assert_float_equal(s.ttft.max, 4.0, EPS);
    /* Every request has 1 output token: no TPOT at all, reported as zeros. */
    assert_int_equal(s.tpot.n, 0);
    assert_float_equal(s.tpot.mean, 0, 0);
    assert_float_equal(s.tpot.pct[1], 0, 0);
    bench_stats_free(&s);

    /* Odd count: the middle element; one element: everything is it. */
    bench_stats_compute(r, 3, -1, NULL, pcts, 2, &s);
    assert_float_equal(s.ttft.median, 2.0, EPS);
    assert_float_equal(s.ttft.pct[1], 2.8, EPS); /* rank 1.8 */
    bench_stats_free(&s);
    bench_stats_compute(r, 1, -1, NULL, pcts, 2, &s);
    assert_float_equal(s.ttft.pct[1], 1.0, EPS);
    assert_float_equal(s.ttft.std, 0, EPS);
    bench_stats_free(&s);

    /* No percentiles given: vllm's default, 99. */
    bench_stats_compute(r, 4, -1, NULL, NULL, 0, &s);
    assert_int_equal(s.n_pcts, 1);
    assert_float_equal(s.pcts[0], 99, 0);
    bench_stats_free(&s);
    free_recs(r, 4);
}

static void test_scenario(void **state)
{
    (void)state;
    struct bench_record r[N_SCEN];
    scenario(r);
    const double pcts[] = {50, 99};
    struct bench_stats s;
    bench_stats_compute(r, N_SCEN, -1, NULL, pcts, 2, &s);

    assert_int_equal(s.completed, 3);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.n_failed_status, 2);
    assert_int_equal(s.failed_by_status[0][0], 0);
    assert_int_equal(s.failed_by_status[0][1], 1);
    assert_int_equal(s.failed_by_status[1][0], 503);
    assert_int_equal(s.failed_by_status[1][1], 2);
    /* First send 0.0, last end E at 1.0 + 1.0 (failed requests bound the duration). */
    assert_float_equal(s.duration, 2.0, EPS);
    assert_int_equal(s.total_input_tokens, 350); /* completed only */
    assert_int_equal(s.total_output_tokens, 9);
    assert_float_equal(s.request_throughput, 1.5, EPS);
    assert_float_equal(s.output_throughput, 4.5, EPS);
    assert_float_equal(s.total_token_throughput, 179.5, EPS);
    assert_true(s.request_goodput < 0); /* no SLO */

    /* TTFT 100, 200, 300 ms. */
    assert_int_equal(s.ttft.n, 3);
    assert_float_equal(s.ttft.mean, 200, EPS);
    assert_float_equal(s.ttft.median, 200, EPS);
    assert_float_equal(s.ttft.std, sqrt(20000.0 / 3.0), EPS);
    assert_float_equal(s.ttft.pct[1], 298, EPS); /* rank 1.98 */
    /* TPOT: A (.5-.1)/4 = 100 ms, B (1-.2)/2 = 400 ms, C (1 token) excluded. */
    assert_int_equal(s.tpot.n, 2);
    assert_float_equal(s.tpot.mean, 250, EPS);
    assert_float_equal(s.tpot.median, 250, EPS);
    assert_float_equal(s.tpot.std, 150, EPS);
    assert_float_equal(s.tpot.pct[1], 397, EPS);
    /* ITL pooled: 100 x4, 400 x2. */
    assert_int_equal(s.itl.n, 6);
    assert_float_equal(s.itl.mean, 200, EPS);
    assert_float_equal(s.itl.median, 100, EPS);
    assert_float_equal(s.itl.std, sqrt(20000.0), EPS);
    assert_float_equal(s.itl.pct[0], 100, EPS);
    assert_float_equal(s.itl.pct[1], 400, EPS);
    /* E2EL 500, 1000, 300. */
    assert_int_equal(s.e2el.n, 3);
    assert_float_equal(s.e2el.mean, 600, EPS);
    assert_float_equal(s.e2el.median, 500, EPS);
    /* Cache: (50 + 0) / (100 + 200); C has no cache info. */
    assert_float_equal(s.cache_hit_ratio, 50.0 / 300.0, EPS);
    assert_int_equal(s.total_cached_tokens, 50);
    /* Schedule delay: B 100 ms, the rest 0 -> mean 16.67, p99 rank 4.95 -> 95. */
    assert_float_equal(s.schedule_delay_mean_ms, 100.0 / 6.0, EPS);
    assert_float_equal(s.schedule_delay_p99_ms, 95, EPS);
    /* In flight at 0.6-0.7: B, C, D (A ended at .5 as C started; D ends as F starts). */
    assert_float_equal(s.max_concurrent, 3, 0);
    /* Pods of completed requests, sorted by name. */
    assert_int_equal(s.n_pods, 2);
    assert_string_equal(s.pods[0].pod, "pod-a");
    assert_int_equal(s.pods[0].requests, 2);
    assert_string_equal(s.pods[1].pod, "pod-b");
    assert_int_equal(s.pods[1].requests, 1);
    bench_stats_free(&s);
    assert_null(s.pods);
    free_recs(r, N_SCEN);
}

static void test_goodput(void **state)
{
    (void)state;
    struct bench_record r[N_SCEN];
    scenario(r);
    struct bench_stats s;
    /* A meets all three; B misses tpot (400 > 150); C misses ttft (300 > 250). */
    struct bench_slo slo = {250, 150, 600};
    bench_stats_compute(r, N_SCEN, -1, &slo, NULL, 0, &s);
    assert_int_equal(s.good, 1);
    assert_float_equal(s.request_goodput, 0.5, EPS);
    bench_stats_free(&s);
    /* tpot only: C's single token counts as TPOT 0 and passes: A, C. */
    struct bench_slo tp = {0, 150, 0};
    bench_stats_compute(r, N_SCEN, -1, &tp, NULL, 0, &s);
    assert_int_equal(s.good, 2);
    assert_float_equal(s.request_goodput, 1.0, EPS);
    bench_stats_free(&s);
    /* Bounds are inclusive: e2el <= 500 keeps A (500) and C (300). */
    struct bench_slo e = {0, 0, 500};
    bench_stats_compute(r, N_SCEN, -1, &e, NULL, 0, &s);
    assert_int_equal(s.good, 2);
    bench_stats_free(&s);
    free_recs(r, N_SCEN);
}

static void test_stage_and_empty(void **state)
{
    (void)state;
    struct bench_record r[4];
    r[0] = rec_ok(0, 0, 0.1, 0.2, 10, 2, NULL, 0, NULL);
    r[1] = rec_ok(5, 5, 0.3, 0.5, 20, 3, NULL, 0, "p");
    r[2] = rec_fail(500, 6, 6, 0.5);
    r[3] = rec_ok(1, 1, 0.2, 0.4, 10, 2, NULL, 0, NULL);
    r[1].stage = r[2].stage = 1;
    struct bench_stats s;
    bench_stats_compute(r, 4, 1, NULL, NULL, 0, &s);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.failed, 1);
    assert_float_equal(s.duration, 1.5, EPS); /* 5.0 .. 6.5 */
    assert_float_equal(s.ttft.mean, 300, EPS);
    assert_int_equal(s.total_input_tokens, 20);
    assert_float_equal(s.cache_hit_ratio, -1, 0);
    assert_int_equal(s.n_pods, 1);
    bench_stats_free(&s);
    bench_stats_compute(r, 4, 0, NULL, NULL, 0, &s);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.failed, 0);
    assert_float_equal(s.duration, 1.4, EPS); /* 0 .. 1.4 */
    assert_int_equal(s.n_pods, 0);
    bench_stats_free(&s);
    bench_stats_compute(r, 4, -1, NULL, NULL, 0, &s);
    assert_int_equal(s.completed, 3);
    bench_stats_free(&s);

    /* Nothing at all: zeros everywhere, no division by zero. */
    bench_stats_compute(NULL, 0, -1, NULL, NULL, 0, &s);
    assert_int_equal(s.completed, 0);
    assert_float_equal(s.duration, 0, 0);
    assert_float_equal(s.request_throughput, 0, 0);
    assert_float_equal(s.ttft.mean, 0, 0);
    assert_float_equal(s.max_concurrent, 0, 0);
    assert_float_equal(s.cache_hit_ratio, -1, 0);
    bench_stats_free(&s);
    free_recs(r, 4);
}

static void test_slo_parse(void **state)
{
    (void)state;
    struct bench_slo s = {1, 1, 1};
    char err[160];
    assert_true(bench_slo_parse("ttft:500 tpot:50 e2el:2000", &s, err, sizeof err));
    assert_float_equal(s.ttft_ms, 500, 0);
    assert_float_equal(s.tpot_ms, 50, 0);
    assert_float_equal(s.e2el_ms, 2000, 0);
    assert_true(bench_slo_parse("  tpot:12.5 ", &s, err, sizeof err));
    assert_float_equal(s.ttft_ms, 0, 0);
    assert_float_equal(s.tpot_ms, 12.5, 0);
    assert_true(bench_slo_parse("", &s, err, sizeof err));
    assert_float_equal(s.tpot_ms, 0, 0);

    assert_false(bench_slo_parse("ttft:500 foo:1", &s, err, sizeof err));
    assert_string_equal(err, "--goodput: unknown metric 'foo' (use ttft, tpot, e2el)");
    assert_false(bench_slo_parse("ttft:x", &s, err, sizeof err));
    assert_string_equal(err, "--goodput: 'ttft:x' needs a positive number of ms");
    assert_false(bench_slo_parse("e2el:-5", &s, err, sizeof err));
    assert_string_equal(err, "--goodput: 'e2el:-5' needs a positive number of ms");
    assert_false(bench_slo_parse("tpot:0", &s, err, sizeof err));
    assert_false(bench_slo_parse("tpot:", &s, err, sizeof err));
    assert_false(bench_slo_parse("tpot:5ms", &s, err, sizeof err));
    assert_false(bench_slo_parse("ttft", &s, err, sizeof err));
    assert_non_null(strstr(err, "'ttft'"));
}

static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    rewind(f);
    char *s = xmalloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    return s;
}

/* True when text has the vLLM-style line "%-40s %-10s" for key and value. */
static bool has_line(const char *text, const char *key, const char *val)
{
    char want[128];
    snprintf(want, sizeof want, "%-40s %s", key, val);
    return strstr(text, want) != NULL;
}

static void test_print(void **state)
{
    (void)state;
    struct bench_record r[N_SCEN];
    scenario(r);
    const double pcts[] = {90, 99.9};
    struct bench_slo slo = {250, 150, 600};
    struct bench_stats s;
    bench_stats_compute(r, N_SCEN, -1, &slo, pcts, 2, &s);
    FILE *f = tmpfile();
    assert_non_null(f);
    bench_stats_print(f, &s, NULL);
    char *t = slurp(f);
    assert_non_null(strstr(t, "============ Serving Benchmark Result ============\n"));
    assert_true(has_line(t, "Successful requests:", "3"));
    assert_true(has_line(t, "Failed requests:", "3"));
    assert_non_null(strstr(t, "none: 1, 503: 2"));
    assert_true(has_line(t, "Benchmark duration (s):", "2.00"));
    assert_true(has_line(t, "Request goodput (req/s):", "0.50"));
    assert_non_null(strstr(t, "---------------Time to First Token----------------\n"));
    assert_non_null(strstr(t, "-----Time per Output Token (excl. 1st token)------\n"));
    assert_non_null(strstr(t, "---------------Inter-token Latency----------------\n"));
    assert_non_null(strstr(t, "----------------End-to-end Latency----------------\n"));
    assert_true(has_line(t, "Mean TPOT (ms):", "250.00"));
    assert_non_null(strstr(t, "P90 TTFT (ms):"));
    assert_non_null(strstr(t, "P99.9 ITL (ms):"));
    assert_non_null(strstr(t, "Prefix cache hit ratio:"));
    assert_non_null(strstr(t, "Schedule delay mean/p99 (ms):"));
    assert_non_null(strstr(t, "  pod-a:"));
    assert_non_null(strstr(t, "\n==================================================\n"));
    free(t);
    fclose(f);

    /* A title replaces the text; no SLO, no goodput line. */
    bench_stats_free(&s);
    bench_stats_compute(r, N_SCEN, -1, NULL, pcts, 2, &s);
    f = tmpfile();
    bench_stats_print(f, &s, " Stage 1 "); /* spaces trimmed */
    t = slurp(f);
    assert_true(strncmp(t, "==================== Stage 1 =====================\n", 51) == 0);
    assert_null(strstr(t, "goodput"));
    free(t);
    fclose(f);
    bench_stats_free(&s);
    free_recs(r, N_SCEN);
}

static const struct bench_meta meta_default = {
    .date = "20250101-120000",
    .label = "tandem",
    .model = "m1",
    .base_url = "http://127.0.0.1:8000",
    .endpoint = "/v1/completions",
    .dataset_name = "random",
    .num_prompts = 6,
    .request_rate = INFINITY,
    .burstiness = 1.0,
    .max_concurrency = 0,
    .percentile_metrics = "ttft,tpot,itl,e2el",
};

static void test_json(void **state)
{
    (void)state;
    struct bench_record r[N_SCEN];
    scenario(r);
    const double pcts[] = {99, 99.9};
    struct bench_stats s;
    bench_stats_compute(r, N_SCEN, -1, NULL, pcts, 2, &s);
    json_t *j = bench_result_json(&meta_default, &s, r, N_SCEN, false);
    assert_string_equal(json_string_value(json_object_get(j, "endpoint_type")), "openai");
    assert_string_equal(json_string_value(json_object_get(j, "model_id")), "m1");
    assert_string_equal(json_string_value(json_object_get(j, "tokenizer_id")), "m1");
    assert_string_equal(json_string_value(json_object_get(j, "request_rate")), "inf");
    assert_true(json_is_null(json_object_get(j, "max_concurrency")));
    assert_true(json_is_null(json_object_get(j, "request_goodput")));
    assert_int_equal(json_integer_value(json_object_get(j, "completed")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "failed")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "total_input_tokens")), 350);
    assert_int_equal(json_integer_value(json_object_get(j, "num_prompts")), 6);
    assert_float_equal(json_real_value(json_object_get(j, "duration")), 2.0, EPS);
    assert_float_equal(json_real_value(json_object_get(j, "median_tpot_ms")), 250, EPS);
    assert_float_equal(json_real_value(json_object_get(j, "std_itl_ms")), sqrt(20000.0), EPS);
    assert_float_equal(json_real_value(json_object_get(j, "p99_itl_ms")), 400, EPS);
    assert_true(json_is_real(json_object_get(j, "p99_ttft_ms")));
    assert_true(json_is_real(json_object_get(j, "p99.9_itl_ms")));
    assert_true(json_is_real(json_object_get(j, "mean_e2el_ms")));
    assert_null(json_object_get(j, "p99.0_ttft_ms"));
    assert_float_equal(json_real_value(json_object_get(j, "max_concurrent_requests")), 3, 0);
    assert_float_equal(json_real_value(json_object_get(j, "cache_hit_ratio")), 50.0 / 300, EPS);
    json_t *pp = json_object_get(j, "per_pod");
    assert_int_equal(json_integer_value(json_object_get(pp, "pod-a")), 2);
    assert_int_equal(json_integer_value(json_object_get(pp, "pod-b")), 1);
    json_t *fs = json_object_get(j, "failed_by_status");
    assert_int_equal(json_integer_value(json_object_get(fs, "503")), 2);
    assert_int_equal(json_integer_value(json_object_get(fs, "none")), 1);
    assert_float_equal(json_real_value(json_object_get(j, "p99_schedule_delay_ms")), 95, EPS);
    assert_non_null(json_object_get(j, "mean_schedule_delay_ms"));
    assert_null(json_object_get(j, "ttfts"));
    json_decref(j);

    /* Selected metrics only, a finite rate, a concurrency cap, goodput set, detailed. */
    struct bench_meta m = meta_default;
    m.percentile_metrics = "ttft,itl";
    m.request_rate = 2.5;
    m.max_concurrency = 16;
    struct bench_slo slo = {250, 150, 600};
    bench_stats_free(&s);
    bench_stats_compute(r, N_SCEN, -1, &slo, pcts, 2, &s);
    j = bench_result_json(&m, &s, r, N_SCEN, true);
    assert_float_equal(json_real_value(json_object_get(j, "request_rate")), 2.5, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "max_concurrency")), 16);
    assert_float_equal(json_real_value(json_object_get(j, "request_goodput")), 0.5, EPS);
    assert_non_null(json_object_get(j, "mean_ttft_ms"));
    assert_non_null(json_object_get(j, "p99.9_itl_ms"));
    assert_null(json_object_get(j, "mean_tpot_ms"));
    assert_null(json_object_get(j, "median_e2el_ms"));
    const char *arrays[] = {"input_lens", "output_lens", "ttfts", "itls",
                            "e2els",      "errors",      "pods",  "start_times"};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(json_array_size(json_object_get(j, arrays[i])), N_SCEN);
    assert_int_equal(json_array_size(json_array_get(json_object_get(j, "itls"), 0)), 4);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "errors"), 0)), "");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "errors"), 3)),
                        "HTTP 503");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "output_lens"), 3)), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "pods"), 1)), "pod-a");
    assert_float_equal(json_real_value(json_array_get(json_object_get(j, "start_times"), 1)), 0.2,
                       0);
    json_decref(j);
    bench_stats_free(&s);
    free_recs(r, N_SCEN);
}

static void test_html(void **state)
{
    (void)state;
    struct bench_record r[N_SCEN];
    scenario(r);
    snprintf(r[1].pod, sizeof r[1].pod, "<b>");
    /* A second run with many records, to exercise downsampling. */
    size_t nbig = 5000;
    struct bench_record *big = xcalloc(nbig, sizeof *big);
    for (size_t i = 0; i < nbig; i++) {
        double gap[] = {0.01, 0.02};
        big[i] = rec_ok(i * 0.001, i * 0.001, 0.05 + (double)(i % 100) / 1000.0, 0.2, 10, 3, gap, 2,
                        i % 2 ? "pod-a" : "pod-c");
    }
    struct bench_stats s1, s2;
    bench_stats_compute(r, N_SCEN, -1, NULL, NULL, 0, &s1);
    bench_stats_compute(big, nbig, -1, NULL, NULL, 0, &s2);
    struct bench_run_view runs[] = {{"base & \"x\"", &s1, r, N_SCEN, NULL}, {NULL, &s2, big, nbig, NULL}};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_true(bench_report_html(f, "report <1>", runs, 2));
    fclose(f);
    assert_non_null(strstr(buf, "<!DOCTYPE html>"));
    assert_non_null(strstr(buf, "<svg"));
    assert_null(strstr(buf, "<script"));
    assert_null(strstr(buf, "http://"));
    assert_null(strstr(buf, "https://"));
    assert_null(strstr(buf, "<b>"));
    assert_non_null(strstr(buf, "&lt;b&gt;"));
    assert_non_null(strstr(buf, "report &lt;1&gt;"));
    assert_non_null(strstr(buf, "base &amp; &quot;x&quot;"));
    assert_non_null(strstr(buf, "run 2"));
    assert_non_null(strstr(buf, "CDF of TTFT"));
    assert_non_null(strstr(buf, "CDF of ITL"));
    assert_non_null(strstr(buf, "CDF of E2EL"));
    assert_non_null(strstr(buf, "TTFT over time"));
    assert_non_null(strstr(buf, "Requests per pod"));
    /* Downsampled: at most 2000 circles per run, and the page stays small. */
    size_t circles = 0;
    for (const char *p = buf; (p = strstr(p, "<circle")); p++)
        circles++;
    assert_true(circles <= 2000 + N_SCEN);
    assert_true(circles >= 1000);
    assert_true(len < 400 * 1024);
    free(buf);

    /* No runs with pods, no data: still a valid page. */
    struct bench_stats empty;
    bench_stats_compute(NULL, 0, -1, NULL, NULL, 0, &empty);
    struct bench_run_view one[] = {{"empty", &empty, NULL, 0, NULL}};
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_true(bench_report_html(f, NULL, one, 1));
    fclose(f);
    assert_non_null(strstr(buf, "no data"));
    assert_non_null(strstr(buf, "</html>"));
    free(buf);
    bench_stats_free(&empty);

    bench_stats_free(&s1);
    bench_stats_free(&s2);
    free_recs(r, N_SCEN);
    free_recs(big, nbig);
    free(big);
}

/* Runs bench_compare_main with stdout captured into *text. */
static int run_compare(int argc, char **argv, char **text)
{
    fflush(stdout);
    char path[] = "/tmp/tandem-cmp-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = bench_compare_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    *text = xmalloc((size_t)n + 1);
    ssize_t got = read(fd, *text, (size_t)n);
    (*text)[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void test_compare(void **state)
{
    (void)state;
    char dir[] = "/tmp/tandem-cmp-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[256], b[256], bad[256], missing[256];
    snprintf(a, sizeof a, "%s/a.json", dir);
    snprintf(b, sizeof b, "%s/b.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    snprintf(missing, sizeof missing, "%s/missing.json", dir);

    struct bench_record r[N_SCEN];
    scenario(r);
    struct bench_stats s;
    bench_stats_compute(r, N_SCEN, -1, NULL, NULL, 0, &s);
    struct bench_meta m = meta_default;
    m.label = "base";
    json_t *j = bench_result_json(&m, &s, r, N_SCEN, false);
    assert_int_equal(json_dump_file(j, a, JSON_INDENT(2)), 0);
    json_decref(j);
    bench_stats_free(&s);
    /* Run b: everything twice as slow -> duration 2.00x, throughput 0.50x. */
    for (size_t i = 0; i < N_SCEN; i++) {
        r[i].t_sched *= 2;
        r[i].t_send *= 2;
        r[i].e2el *= 2;
        if (r[i].ttft > 0)
            r[i].ttft *= 2;
        for (size_t k = 0; k < r[i].n_itl; k++)
            r[i].itl[k] *= 2;
    }
    bench_stats_compute(r, N_SCEN, -1, NULL, NULL, 0, &s);
    m.label = "slow";
    j = bench_result_json(&m, &s, r, N_SCEN, false);
    assert_int_equal(json_dump_file(j, b, 0), 0);
    json_decref(j);
    bench_stats_free(&s);
    free_recs(r, N_SCEN);
    FILE *f = fopen(bad, "w");
    fputs("{\"completed\": 3}", f);
    fclose(f);

    char *out = NULL;
    char *args[] = {a, b};
    assert_int_equal(run_compare(2, args, &out), 0);
    assert_non_null(strstr(out, "base"));
    assert_non_null(strstr(out, "slow"));
    assert_non_null(strstr(out, "request_throughput"));
    assert_non_null(strstr(out, "p99_ttft_ms"));
    assert_non_null(strstr(out, "median_itl_ms"));
    assert_non_null(strstr(out, "cache_hit_ratio"));
    assert_non_null(strstr(out, "0.50x"));
    assert_non_null(strstr(out, "2.00x"));
    assert_null(strstr(out, "request_goodput")); /* null in both */
    free(out);

    char *one[] = {a};
    assert_int_equal(run_compare(1, one, &out), 0);
    free(out);
    char *help[] = {"--help"};
    assert_int_equal(run_compare(1, help, &out), 0);
    assert_non_null(strstr(out, "usage"));
    free(out);
    assert_int_equal(run_compare(0, NULL, &out), 2);
    free(out);
    char *miss[] = {a, missing};
    assert_int_equal(run_compare(2, miss, &out), 2);
    free(out);
    char *nodur[] = {bad};
    assert_int_equal(run_compare(1, nodur, &out), 2);
    free(out);

    unlink(a);
    unlink(b);
    unlink(bad);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles), cmocka_unit_test(test_scenario),
        cmocka_unit_test(test_goodput),     cmocka_unit_test(test_stage_and_empty),
        cmocka_unit_test(test_slo_parse),   cmocka_unit_test(test_print),
        cmocka_unit_test(test_json),        cmocka_unit_test(test_html),
        cmocka_unit_test(test_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

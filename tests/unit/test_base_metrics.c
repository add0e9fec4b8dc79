/* Unit tests for base/metrics: exact exposition text, number formatting, escaping,
 * histogram buckets, vLLM bucket sets, concurrency and collect hooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/metrics.h"

static char *render(struct metrics_registry *r)
{
    static struct buf out;
    buf_free(&out);
    metrics_render(r, &out);
    return out.data ? out.data : "";
}

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct metrics_family *c =
        metrics_family_new(r, METRICS_COUNTER, "vllm:prompt_tokens_total",
                           "Number of prefill tokens processed.", NULL, 0, NULL, 0);
    struct metrics_family *g =
        metrics_family_new(r, METRICS_GAUGE, "vllm:kv_cache_usage_perc",
                           "KV-cache usage. 1 means 100 percent usage.", NULL, 0, NULL, 0);
    /* Label-less families show up as 0 before the first update. */
    assert_string_equal(render(r), "# HELP vllm:prompt_tokens_total Number of prefill tokens "
                                   "processed.\n"
                                   "# TYPE vllm:prompt_tokens_total counter\n"
                                   "vllm:prompt_tokens_total 0\n"
                                   "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 "
                                   "percent usage.\n"
                                   "# TYPE vllm:kv_cache_usage_perc gauge\n"
                                   "vllm:kv_cache_usage_perc 0\n");
    metrics_counter_add(metrics_series0(c), 3);
    metrics_counter_inc(metrics_series0(c));
    metrics_counter_add(metrics_series0(c), 1);
    metrics_counter_add(metrics_series0(c), -7); /* ignored: counters never go down */
    metrics_gauge_set(metrics_series0(g), 0.25);
    metrics_gauge_add(metrics_series0(g), -0.125);
    assert_true(metrics_series_value(metrics_series0(c)) == 5.0);
    assert_true(metrics_series_value(metrics_series0(g)) == 0.125);
    assert_non_null(strstr(render(r), "\nvllm:prompt_tokens_total 5\n"));
    assert_non_null(strstr(render(r), "\nvllm:kv_cache_usage_perc 0.125\n"));
    metrics_registry_free(r);
}

static void test_labels_and_escaping(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    const char *names[] = {"model_name", "finished_reason"};
    struct metrics_family *f =
        metrics_family_new(r, METRICS_COUNTER, "vllm:request_success_total",
                           "Count of\\successfully\nprocessed \"requests\".", names, 2, NULL, 0);
    /* No series yet: HELP and TYPE only. */
    assert_string_equal(render(r), "# HELP vllm:request_success_total Count "
                                   "of\\\\successfully\\nprocessed \"requests\".\n"
                                   "# TYPE vllm:request_success_total counter\n");
    const char *v1[] = {"m", "stop"};
    const char *v2[] = {"a\\b\"c\nd", "length"};
    struct metrics_series *s1 = metrics_series_get(f, v1);
    struct metrics_series *s2 = metrics_series_get(f, v2);
    assert_ptr_not_equal(s1, s2);
    const char *v1again[] = {"m", "stop"};
    assert_ptr_equal(metrics_series_get(f, v1again), s1);
    metrics_counter_add(s1, 2);
    metrics_counter_add(s2, 1.5);
    assert_string_equal(render(r), "# HELP vllm:request_success_total Count "
                                   "of\\\\successfully\\nprocessed \"requests\".\n"
                                   "# TYPE vllm:request_success_total counter\n"
                                   "vllm:request_success_total{model_name=\"m\","
                                   "finished_reason=\"stop\"} 2\n"
                                   "vllm:request_success_total{model_name=\"a\\\\b\\\"c\\nd\","
                                   "finished_reason=\"length\"} 1.5\n");
    /* Same name and shape returns the same family; no HELP gives no HELP line. */
    assert_ptr_equal(metrics_family_new(r, METRICS_COUNTER, "vllm:request_success_total", "x",
                                        names, 2, NULL, 0),
                     f);
    metrics_family_new(r, METRICS_GAUGE, "nohelp", NULL, NULL, 0, NULL, 0);
    assert_non_null(strstr(render(r), "\n# TYPE nohelp gauge\nnohelp 0\n"));
    assert_null(strstr(render(r), "# HELP nohelp"));
    metrics_registry_free(r);
}

static void test_number_formatting(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct metrics_family *g = metrics_family_new(r, METRICS_GAUGE, "g", NULL, NULL, 0, NULL, 0);
    struct metrics_series *s = metrics_series0(g);
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {5, "g 5\n"},
        {-3, "g -3\n"},
        {0.1, "g 0.1\n"},
        {1.0 / 3.0, "g 0.3333333333333333\n"},
        {123456789012.0, "g 123456789012\n"},
        {1e20, "g 1e+20\n"},
        {2.5e-7, "g 2.5e-07\n"},
        {-0.0, "g 0\n"},
        {INFINITY, "g +Inf\n"},
        {-INFINITY, "g -Inf\n"},
        {NAN, "g NaN\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        metrics_gauge_set(s, cases[i].v);
        const char *text = render(r);
        const char *line = strstr(text, "\ng ");
        assert_non_null(line);
        assert_string_equal(line + 1, cases[i].text);
    }
    metrics_registry_free(r);
}

static void test_histogram_text(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    const char *names[] = {"model_name"};
    const double bounds[] = {0.1, 1, 2.5};
    struct metrics_family *h =
        metrics_family_new(r, METRICS_HISTOGRAM, "lat_seconds", "Latency.", names, 1, bounds, 3);
    const char *vals[] = {"m"};
    struct metrics_series *s = metrics_series_get(h, vals);
    metrics_histogram_observe(s, 0.05);
    metrics_histogram_observe(s, 0.1); /* le is inclusive */
    metrics_histogram_observe(s, 0.5);
    metrics_histogram_observe(s, 3);
    metrics_histogram_observe(s, 100);
    assert_int_equal(metrics_histogram_count(s), 5);
    assert_true(fabs(metrics_series_value(s) - 103.65) < 1e-9);
    assert_string_equal(render(r), "# HELP lat_seconds Latency.\n"
                                   "# TYPE lat_seconds histogram\n"
                                   "lat_seconds_bucket{model_name=\"m\",le=\"0.1\"} 2\n"
                                   "lat_seconds_bucket{model_name=\"m\",le=\"1\"} 3\n"
                                   "lat_seconds_bucket{model_name=\"m\",le=\"2.5\"} 3\n"
                                   "lat_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 5\n"
                                   "lat_seconds_sum{model_name=\"m\"} 103.65\n"
                                   "lat_seconds_count{model_name=\"m\"} 5\n");

    /* Without labels, and with an explicit trailing +Inf that must not double up. */
    const double with_inf[] = {1, INFINITY};
    struct metrics_family *h0 =
        metrics_family_new(r, METRICS_HISTOGRAM, "h0", NULL, NULL, 0, with_inf, 2);
    metrics_histogram_observe(metrics_series0(h0), 1);
    metrics_histogram_observe(metrics_series0(h0), 2);
    assert_non_null(strstr(render(r), "# TYPE h0 histogram\n"
                                      "h0_bucket{le=\"1\"} 1\n"
                                      "h0_bucket{le=\"+Inf\"} 2\n"
                                      "h0_sum 3\n"
                                      "h0_count 2\n"));
    metrics_registry_free(r);
}

static void test_vllm_buckets(void **state)
{
    (void)state;
    static const double ttft[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                  0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                  20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
    static const double itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                 0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
    static const double lat[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                 5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
    assert_int_equal(metrics_buckets_ttft_n, 22);
    assert_memory_equal(metrics_buckets_ttft, ttft, sizeof ttft);
    assert_int_equal(metrics_buckets_itl_n, 19);
    assert_memory_equal(metrics_buckets_itl, itl, sizeof itl);
    assert_int_equal(metrics_buckets_request_latency_n, 21);
    assert_memory_equal(metrics_buckets_request_latency, lat, sizeof lat);

    double out[32];
    const double want100[] = {1, 2, 5, 10, 20, 50, 100};
    assert_int_equal(metrics_buckets_1_2_5(100, out, 32), 7);
    assert_memory_equal(out, want100, sizeof want100);
    /* vLLM uses max_model_len: 4096 -> ... 1000, 2000 (5000 is past it). */
    assert_int_equal(metrics_buckets_1_2_5(4096, out, 32), 11);
    assert_true(out[10] == 2000);
    assert_int_equal(metrics_buckets_1_2_5(0.5, out, 32), 0);
    assert_int_equal(metrics_buckets_1_2_5(1e9, out, 4), 4); /* cap respected */
    assert_true(out[3] == 10);
}

struct hammer {
    struct metrics_family *counter, *hist, *labelled;
    int iterations;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    struct metrics_series *c = metrics_series0(h->counter);
    struct metrics_series *hs = metrics_series0(h->hist);
    for (int i = 0; i < h->iterations; i++) {
        metrics_counter_inc(c);
        metrics_histogram_observe(hs, (i % 4) * 0.5); /* 0, 0.5, 1, 1.5 */
        /* Series creation races too: every thread asks for the same 8 series. */
        char label[8];
        snprintf(label, sizeof label, "v%d", i % 8);
        const char *vals[] = {label};
        metrics_counter_add(metrics_series_get(h->labelled, vals), 0.5);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    const double bounds[] = {0.5, 1};
    const char *names[] = {"k"};
    struct hammer h = {
        .counter = metrics_family_new(r, METRICS_COUNTER, "hits_total", NULL, NULL, 0, NULL, 0),
        .hist = metrics_family_new(r, METRICS_HISTOGRAM, "obs", NULL, NULL, 0, bounds, 2),
        .labelled = metrics_family_new(r, METRICS_COUNTER, "by_k_total", NULL, names, 1, NULL, 0),
        .iterations = 40000,
    };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_thread, &h), 0);
    /* Scrape while they run: render must not crash or tear the lists. */
    for (int i = 0; i < 20; i++)
        (void)render(r);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);

    assert_true(metrics_series_value(metrics_series0(h.counter)) == 160000.0);
    struct metrics_series *hs = metrics_series0(h.hist);
    assert_int_equal(metrics_histogram_count(hs), 160000);
    /* Each thread observes 10000 each of 0, 0.5, 1, 1.5: sum = 4 * 10000 * 3. */
    assert_true(metrics_series_value(hs) == 120000.0);
    const char *text = render(r);
    assert_non_null(strstr(text, "obs_bucket{le=\"0.5\"} 80000\n"
                                 "obs_bucket{le=\"1\"} 120000\n"
                                 "obs_bucket{le=\"+Inf\"} 160000\n"));
    for (int k = 0; k < 8; k++) {
        char line[64];
        snprintf(line, sizeof line, "by_k_total{k=\"v%d\"} 10000\n", k);
        assert_non_null(strstr(text, line));
    }
    /* Exactly 8 series were created despite the races. */
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, "by_k_total{")); p++)
        n++;
    assert_int_equal(n, 8);
    metrics_registry_free(r);
}

struct collect_ctx {
    struct metrics_family *queue;
    int calls;
};

static void on_collect(void *arg)
{
    struct collect_ctx *ctx = arg;
    ctx->calls++;
    metrics_gauge_set(metrics_series0(ctx->queue), 10 + ctx->calls);
}

static void test_on_collect(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct collect_ctx ctx = {
        .queue = metrics_family_new(r, METRICS_GAUGE, "vllm:num_requests_waiting", NULL, NULL, 0,
                                    NULL, 0),
    };
    metrics_registry_on_collect(r, on_collect, &ctx);
    assert_non_null(strstr(render(r), "vllm:num_requests_waiting 11\n"));
    assert_non_null(strstr(render(r), "vllm:num_requests_waiting 12\n"));
    assert_int_equal(ctx.calls, 2);
    metrics_registry_free(r);
}

static void test_creation_order(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    const char *names[] = {"x"};
    struct metrics_family *b = metrics_family_new(r, METRICS_GAUGE, "b", NULL, names, 1, NULL, 0);
    metrics_family_new(r, METRICS_GAUGE, "a", NULL, NULL, 0, NULL, 0);
    const char *z[] = {"z"}, *y[] = {"y"};
    metrics_gauge_set(metrics_series_get(b, z), 1);
    metrics_gauge_set(metrics_series_get(b, y), 2);
    assert_string_equal(render(r), "# TYPE b gauge\nb{x=\"z\"} 1\nb{x=\"y\"} 2\n"
                                   "# TYPE a gauge\na 0\n");
    metrics_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_text),
        cmocka_unit_test(test_labels_and_escaping),
        cmocka_unit_test(test_number_formatting),
        cmocka_unit_test(test_histogram_text),
        cmocka_unit_test(test_vllm_buckets),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_on_collect),
        cmocka_unit_test(test_creation_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

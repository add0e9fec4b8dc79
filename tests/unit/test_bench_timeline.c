/* bench/timeline.c: sampled metrics pages become columns per series (absent = NaN),
 * survive the result JSON, integrate to value x seconds, and stay bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

static const char *const NAMES[] = {"tandem_up_running_replicas", "q"};

static void add(struct bench_timeline *tl, double t, const char *page)
{
    bench_timeline_add(tl, t, page, strlen(page), NAMES, 2);
}

static void test_columns_json_integral(void **state)
{
    (void)state;
    struct bench_timeline tl = {0};
    add(&tl, 0, "# TYPE tandem_up_running_replicas gauge\n"
                "tandem_up_running_replicas{role=\"prefill\"} 1\n"
                "tandem_up_running_replicas{role=\"decode\"} 1\nother 7\n");
    add(&tl, 2, "tandem_up_running_replicas{role=\"prefill\"} 3\n"
                "tandem_up_running_replicas{role=\"decode\"} 1\nq 5\nq 6\n");
    add(&tl, 5, "tandem_up_running_replicas{role=\"prefill\"} 2\n");
    assert_int_equal(tl.n_t, 3);
    assert_int_equal(tl.n_series, 3); /* prefill, decode, q; "other" not asked for */
    assert_string_equal(tl.names[0], "tandem_up_running_replicas{role=\"prefill\"}");
    assert_string_equal(tl.names[2], "q");
    assert_true(isnan(tl.v[2][0]));
    assert_true(tl.v[2][1] == 11); /* same labels twice: summed */
    assert_true(isnan(tl.v[1][2])); /* decode absent from the last page */
    /* 1 x 2 s + 3 x 3 s (the last value has no duration yet) */
    assert_true(bench_timeline_integral(&tl, tl.names[0]) == 11);
    assert_true(isnan(bench_timeline_integral(&tl, "nope")));

    json_t *j = bench_timeline_json(&tl);
    assert_int_equal(json_array_size(json_object_get(j, "t")), 3);
    assert_true(json_is_null(json_array_get(
        json_object_get(json_object_get(j, "series"), "q"), 0)));
    struct bench_timeline back;
    assert_true(bench_timeline_from_json(j, &back));
    assert_int_equal(back.n_t, 3);
    assert_int_equal(back.n_series, 3);
    assert_true(bench_timeline_integral(&back, tl.names[0]) == 11);
    assert_true(isnan(back.v[1][2]));
    json_decref(j);
    bench_timeline_free(&back);
    bench_timeline_free(&tl);

    json_t *one = json_integer(1);
    assert_false(bench_timeline_from_json(one, &back));
    json_decref(one);
    bench_timeline_free(&back);
}

static void test_bounded(void **state)
{
    (void)state;
    struct bench_timeline tl = {0};
    char page[64 * 40];
    size_t off = 0;
    for (int i = 0; i < BENCH_TIMELINE_MAX_SERIES + 10; i++)
        off += (size_t)snprintf(page + off, sizeof page - off, "q{i=\"%d\"} 1\n", i);
    for (int k = 0; k < BENCH_TIMELINE_MAX_SAMPLES + 5; k++)
        add(&tl, k, k < 2 ? page : "q{i=\"0\"} 2\n");
    assert_int_equal(tl.n_series, BENCH_TIMELINE_MAX_SERIES);
    assert_int_equal(tl.n_t, BENCH_TIMELINE_MAX_SAMPLES);
    /* a malformed page keeps what came before its bad line */
    bench_timeline_free(&tl);
    add(&tl, 0, "q 1\nbad line here\nq 2\n");
    assert_int_equal(tl.n_t, 1);
    assert_true(tl.v[0][0] == 1);
    bench_timeline_free(&tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_json_integral),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

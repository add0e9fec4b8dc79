/* The HPA v2 algorithm (ms/hpa.c) against hand-computed cases: the replica formula and
 * its tolerance, several metrics, stabilization windows in both directions, rate
 * policies (Pods, Percent, Max/Min/Disabled) with their periods, min/max. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "ms/hpa.h"

static int decide1(struct ms_hpa *h, double t, int cur, double value, double target,
                   struct ms_hpa_why *why)
{
    struct ms_hpa_metric m = {"m", value, target};
    return ms_hpa_decide(h, t, cur, &m, 1, why);
}

static void test_formula_and_tolerance(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10);
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_why why;
    /* 2 pods at 100 against a target of 50: ratio 2 -> ceil(2 x 2) = 4. */
    assert_int_equal(decide1(&h, 0, 2, 100, 50, &why), 4);
    assert_int_equal(why.proposed, 4);
    assert_null(why.limit);
    /* Within 10 %: no change either way. */
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 4, 54.9, 50, NULL), 4);
    assert_int_equal(decide1(&h, 1, 4, 45.1, 50, NULL), 4);
    /* 3 pods at 70 against 50: ceil(3 x 1.4) = ceil(4.2) = 5. */
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 3, 70, 50, NULL), 5);
}

static void test_several_metrics(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10);
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_metric m[] = {{"waiting", 1, 2}, {"kv", 0.8, 0.5}, {"bad", 5, 0}};
    struct ms_hpa_why why;
    /* waiting proposes ceil(2 x 0.5) = 1, kv ceil(2 x 1.6) = 4; the larger wins; a metric
     * without a target is skipped. */
    assert_int_equal(ms_hpa_decide(&h, 0, 2, m, 3, &why), 4);
    assert_string_equal(why.metric, "kv");
    assert_true(why.ratio > 1.59 && why.ratio < 1.61);
}

static void test_bounds(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 2, 10);
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_why why;
    assert_int_equal(decide1(&h, 0, 12, 1, 1, &why), 10);
    assert_string_equal(why.limit, "max");
    assert_int_equal(decide1(&h, 1, 1, 1, 1, &why), 2);
    assert_string_equal(why.limit, "min");
    /* No metric at all: only the bounds apply. */
    assert_int_equal(ms_hpa_decide(&h, 2, 5, NULL, 0, NULL), 5);
}

static void test_scale_up_rate(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10);
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_why why;
    /* 1 pod, ratio 100: the default policies allow max(ceil(1 x 2), 1 + 4) = 5. */
    assert_int_equal(decide1(&h, 0, 1, 1000, 10, &why), 5);
    assert_string_equal(why.limit, "scale-up rate");
    /* 5 s later, 4 were added in the 15 s period: start = 1, limit still 5. */
    assert_int_equal(decide1(&h, 5, 5, 1000, 10, &why), 5);
    /* After the period: start = 5, limit max(10, 9) = 10; maxReplicas 10 binds. */
    assert_int_equal(decide1(&h, 16, 5, 1000, 10, &why), 10);
    assert_string_equal(why.limit, "max");

    /* selectPolicy Min: the smaller of 100 % (2 -> 4) and 4 pods (2 -> 6). */
    s.up.select = MS_HPA_SELECT_MIN;
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 2, 1000, 10, NULL), 4);
    /* Disabled: never up. */
    s.up.select = MS_HPA_SELECT_DISABLED;
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 2, 1000, 10, NULL), 2);
}

static void test_scale_down_window(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10); /* 300 s down window */
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_why why;
    assert_int_equal(decide1(&h, 0, 4, 50, 50, NULL), 4);
    /* Load drops: the proposal is 1, but the window still holds the 4 from t = 0. */
    assert_int_equal(decide1(&h, 10, 4, 12.5, 50, &why), 4);
    assert_int_equal(why.proposed, 1);
    assert_int_equal(why.stabilized, 4);
    assert_int_equal(decide1(&h, 299, 4, 12.5, 50, NULL), 4);
    /* At 301 the t = 0 recommendation has left the window: down to 1 at once (100 %). */
    assert_int_equal(decide1(&h, 301, 4, 12.5, 50, &why), 1);
    assert_null(why.limit);
}

static void test_scale_up_window(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10);
    s.up.window_s = 60;
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 2, 10, 10, NULL), 2);
    /* A burst: the proposal is 6, the window's lowest recommendation is 2. */
    assert_int_equal(decide1(&h, 10, 2, 30, 10, NULL), 2);
    /* Sustained past the window: 6 (allowed by max(ceil(2 x 2), 2 + 4) = 6). */
    assert_int_equal(decide1(&h, 61, 2, 30, 10, NULL), 6);
}

static void test_scale_down_pods_policy(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 10);
    s.down.window_s = 0;
    s.down.policies[0] = (struct ms_hpa_policy){MS_HPA_PODS, 1, 60};
    s.down.n_policies = 1;
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    struct ms_hpa_why why;
    assert_int_equal(decide1(&h, 0, 5, 1, 5, &why), 4);
    assert_string_equal(why.limit, "scale-down rate");
    /* One removed in the last 60 s: start 5, limit 4, so no further step. */
    assert_int_equal(decide1(&h, 30, 4, 1, 5, NULL), 4);
    assert_int_equal(decide1(&h, 61, 4, 1, 5, NULL), 3);
    /* Pods 1 next to Percent 50 per 60 s, from 10 replicas. */
    ms_hpa_spec_default(&s, 1, 20);
    s.down.window_s = 0;
    s.down.policies[0] = (struct ms_hpa_policy){MS_HPA_PODS, 1, 60};
    s.down.policies[1] = (struct ms_hpa_policy){MS_HPA_PERCENT, 50, 60};
    s.down.n_policies = 2;
    ms_hpa_init(&h, &s);
    /* limits: 10 - 1 = 9, 10 x 0.5 = 5; Max = the bigger change = 5. */
    assert_int_equal(decide1(&h, 0, 10, 1, 10, NULL), 5);
    s.down.select = MS_HPA_SELECT_MIN;
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 10, 1, 10, NULL), 9);
    s.down.select = MS_HPA_SELECT_DISABLED;
    ms_hpa_init(&h, &s);
    assert_int_equal(decide1(&h, 0, 10, 1, 10, NULL), 10);
}

static void test_history_bounded(void **state)
{
    (void)state;
    struct ms_hpa_spec s;
    ms_hpa_spec_default(&s, 1, 1000);
    s.down.window_s = 1e9; /* nothing ever expires */
    struct ms_hpa h;
    ms_hpa_init(&h, &s);
    for (int i = 0; i < 3 * MS_HPA_HISTORY; i++)
        decide1(&h, i, 5, 5, 5, NULL);
    assert_true(h.n_recs <= MS_HPA_HISTORY);
    assert_true(h.n_scales <= MS_HPA_HISTORY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formula_and_tolerance), cmocka_unit_test(test_several_metrics),
        cmocka_unit_test(test_bounds),                cmocka_unit_test(test_scale_up_rate),
        cmocka_unit_test(test_scale_down_window),     cmocka_unit_test(test_scale_up_window),
        cmocka_unit_test(test_scale_down_pods_policy), cmocka_unit_test(test_history_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

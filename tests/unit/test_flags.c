/* Unit tests for base/flags: forms, errors naming the flag, help, ignored flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/flags.h"

static bool parse_even(const char *v, void *target, char *err, size_t len)
{
    int x = v[0] - '0';
    if (x % 2) {
        snprintf(err, len, "'%s' is odd", v);
        return false;
    }
    *(int *)target = x;
    return true;
}

struct t {
    long long port;
    double scale;
    const char *name;
    bool flag;
    int even;
};

#define FLAGS(t)                                                                           \
    const struct flag flags[] = {                                                          \
        {"--port", "-p", FLAG_INT, &t.port, "N", "port", NULL},                            \
        {"--scale", NULL, FLAG_DOUBLE, &t.scale, "F", "scale", NULL},                      \
        {"--name", NULL, FLAG_STRING, &t.name, "S", "name", NULL},                         \
        {"--flag", NULL, FLAG_BOOL, &t.flag, NULL, "flag", NULL},                          \
        {"--even", NULL, FLAG_FUNC, &t.even, "N", "even digit", parse_even},               \
        {"--enforce-eager", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},                    \
        {"--tensor-parallel-size", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},       \
    }

static void test_forms(void **state)
{
    struct t t = {0};
    FLAGS(t);
    char *argv[] = {"--port", "80", "--scale=0.5", "model", "--name", "x", "--flag", "-p=81",
                    "--even", "4", "--enforce-eager", "--tensor-parallel-size", "2"};
    struct flags_result res;
    char err[256];
    assert_true(flags_parse(flags, 7, 13, argv, &res, err, sizeof err));
    assert_int_equal(t.port, 81);
    assert_true(t.scale == 0.5);
    assert_string_equal(t.name, "x");
    assert_true(t.flag);
    assert_int_equal(t.even, 4);
    assert_int_equal(res.n_positional, 1);
    assert_string_equal(res.positional[0], "model");
    assert_int_equal(res.n_ignored, 2);
    assert_false(res.help);
    char *argv2[] = {"--no-flag", "--flag=false", "-h"};
    t.flag = true;
    assert_true(flags_parse(flags, 7, 3, argv2, &res, err, sizeof err));
    assert_false(t.flag);
    assert_true(res.help);
}

static void test_errors(void **state)
{
    struct t t = {0};
    FLAGS(t);
    struct flags_result res;
    char err[256];
    char *a1[] = {"--port", "abc"};
    assert_false(flags_parse(flags, 7, 2, a1, &res, err, sizeof err));
    assert_string_equal(err, "--port: 'abc' is not an integer");
    char *a2[] = {"--prot", "1"};
    assert_false(flags_parse(flags, 7, 2, a2, &res, err, sizeof err));
    assert_non_null(strstr(err, "unknown flag '--prot'"));
    char *a3[] = {"--scale"};
    assert_false(flags_parse(flags, 7, 1, a3, &res, err, sizeof err));
    assert_string_equal(err, "--scale needs a value");
    char *a4[] = {"--even", "3"};
    assert_false(flags_parse(flags, 7, 2, a4, &res, err, sizeof err));
    assert_string_equal(err, "--even: '3' is odd");
    char *a5[] = {"--flag=maybe"};
    assert_false(flags_parse(flags, 7, 1, a5, &res, err, sizeof err));
    char *a6[] = {"--no-port"};
    assert_false(flags_parse(flags, 7, 1, a6, &res, err, sizeof err));
}

static void test_peek_and_help(void **state)
{
    char *argv[] = {"--x", "1", "--profile", "fast", "--y=2"};
    assert_string_equal(flags_peek(5, argv, "--profile"), "fast");
    assert_string_equal(flags_peek(5, argv, "--y"), "2");
    assert_null(flags_peek(5, argv, "--z"));
    struct t t = {0};
    FLAGS(t);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    flags_print_help(f, "tool [flags]", "does things", flags, 7);
    fclose(f);
    assert_non_null(strstr(out, "-p, --port N"));
    assert_null(strstr(out, "enforce-eager")); /* ignored flags are hidden */
    assert_non_null(strstr(out, "--help"));
    free(out);
}

static bool collect(const char *v, void *target, char *err, size_t len)
{
    const char **list = target;
    if (!strcmp(v, "bad")) {
        snprintf(err, len, "'%s' is bad", v);
        return false;
    }
    while (*list)
        list++;
    *list = v;
    return true;
}

static void test_multi_values(void **state)
{
    /* clap's num_args = 0..: every argument up to the next flag is a value. */
    const char *got[8] = {0};
    const struct flag flags[] = {
        {"--urls", NULL, FLAG_FUNC_MULTI, got, "URL...", "urls", collect},
        {"--origins", NULL, FLAG_IGNORE_MULTI, NULL, NULL, NULL, NULL},
        {"--flag", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
    };
    char *argv[] = {"--urls", "a", "b", "--origins", "x", "y", "--flag", "--urls=c", "--urls",
                    "-", "--origins"};
    struct flags_result res;
    char err[256];
    assert_true(flags_parse(flags, 3, 11, argv, &res, err, sizeof err));
    assert_string_equal(got[0], "a");
    assert_string_equal(got[1], "b");
    assert_string_equal(got[2], "c");
    assert_string_equal(got[3], "-"); /* "-" alone is a value, as for the other forms */
    assert_null(got[4]);
    assert_int_equal(res.n_positional, 0);
    assert_int_equal(res.n_ignored, 3);
    char *bad[] = {"--urls", "ok", "bad"};
    assert_false(flags_parse(flags, 3, 3, bad, &res, err, sizeof err));
    assert_string_equal(err, "--urls: 'bad' is bad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_multi_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_peek_and_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

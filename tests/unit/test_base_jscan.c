/* Unit tests for base/jscan: fields found where they lie in the text, last key wins,
 * escaped strings decoded, every grammar error refused with its position, and agreement
 * with jansson on a table of valid and invalid documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "base/jscan.h"

enum { F_MODEL, F_PROMPT, F_USER, F_MSGS, N_F };

static enum jscan_status scan(const char *text, struct jscan_field *f, struct errinfo *err)
{
    f[F_MODEL].key = "model";
    f[F_PROMPT].key = "prompt";
    f[F_USER].key = "user";
    f[F_MSGS].key = "messages";
    return jscan_object(text, strlen(text), f, N_F, err);
}

static void test_fields(void **state)
{
    (void)state;
    struct jscan_field f[N_F];
    struct errinfo err;
    const char *t = " {\"max_tokens\": 5, \"model\" : \"m1\", \"nested\": {\"model\": \"no\"},"
                    "\"prompt\": [\"first\", \"second\"], \"user\": null,"
                    "\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}] } ";
    assert_int_equal(scan(t, f, &err), JSCAN_OK);
    assert_int_equal(f[F_MODEL].v.type, JSCAN_STRING);
    assert_int_equal(f[F_MODEL].v.len, 2);
    assert_memory_equal(f[F_MODEL].v.p, "m1", 2);
    assert_false(f[F_MODEL].v.escaped);
    assert_int_equal(f[F_PROMPT].v.type, JSCAN_ARRAY);
    assert_int_equal(f[F_PROMPT].v.len, strlen("[\"first\", \"second\"]"));
    assert_memory_equal(f[F_PROMPT].v.p, "[\"first\", \"second\"]", f[F_PROMPT].v.len);
    struct jscan_val first;
    assert_true(jscan_array_first(&f[F_PROMPT].v, &first));
    assert_int_equal(first.type, JSCAN_STRING);
    assert_int_equal(first.len, 5);
    assert_memory_equal(first.p, "first", 5);
    assert_int_equal(f[F_USER].v.type, JSCAN_NULL);
    assert_int_equal(f[F_MSGS].v.type, JSCAN_ARRAY);
    assert_memory_equal(f[F_MSGS].v.p, "[{\"role\":\"user\",\"content\":\"hi\"}]",
                        f[F_MSGS].v.len);

    /* Absent fields, last occurrence wins, an empty array has no first element. */
    assert_int_equal(scan("{\"model\":\"a\",\"model\":7,\"prompt\":[]}", f, &err), JSCAN_OK);
    assert_int_equal(f[F_MODEL].v.type, JSCAN_NUMBER);
    assert_memory_equal(f[F_MODEL].v.p, "7", 1);
    assert_int_equal(f[F_USER].v.type, JSCAN_ABSENT);
    assert_false(jscan_array_first(&f[F_PROMPT].v, &first));
    assert_false(jscan_array_first(&f[F_MODEL].v, &first));
}

static void test_escapes(void **state)
{
    (void)state;
    struct jscan_field f[N_F];
    struct errinfo err;
    const char *t = "{\"mod\\u0065l\":\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\u20ac\\ud83d\\ude00\"}";
    assert_int_equal(scan(t, f, &err), JSCAN_OK);
    assert_int_equal(f[F_MODEL].v.type, JSCAN_STRING);
    assert_true(f[F_MODEL].v.escaped);
    struct arena a;
    arena_init(&a, 256);
    size_t n;
    char *s = jscan_str_dup(&f[F_MODEL].v, &a, &n);
    const char *want = "a\"b\\c/d\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    assert_int_equal(n, strlen(want));
    assert_string_equal(s, want);
    const char *view;
    jscan_str_view(&f[F_MODEL].v, &a, &view, &n);
    assert_memory_equal(view, want, n);
    /* Raw UTF-8 passes through unchanged, in place. */
    assert_int_equal(scan("{\"model\":\"caf\xc3\xa9\"}", f, &err), JSCAN_OK);
    jscan_str_view(&f[F_MODEL].v, &a, &view, &n);
    assert_ptr_not_equal(view, NULL);
    assert_int_equal(n, 5);
    assert_false(f[F_MODEL].v.escaped);
    arena_free(&a);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"", "line 1 column 1: unexpected end of input"},
        {"{\"a\":1,}", "line 1 column 8: expected a string key"},
        {"{\"a\" 1}", "line 1 column 6: expected ':'"},
        {"{\"a\":1 \"b\":2}", "line 1 column 8: expected ',' or '}'"},
        {"[1 2]", "line 1 column 4: expected ',' or ']'"},
        {"{\"a\":tru}", "line 1 column 6: invalid token"},
        {"{\"a\":01}", "line 1 column 7: expected ',' or '}'"},
        {"{\"a\":-}", "line 1 column 6: invalid number"},
        {"{\"a\":1.}", "line 1 column 6: invalid number"},
        {"{\"a\":1e}", "line 1 column 6: invalid number"},
        {"{\n\"a\":\"x\ny\"}", "line 2 column 7: control character in string"},
        {"{\"a\":\"\\x\"}", "line 1 column 7: invalid escape"},
        {"{\"a\":\"\\u12G4\"}", "line 1 column 7: invalid \\u escape"},
        {"{\"a\":\"\\ud800\"}", "line 1 column 7: invalid Unicode escape (lone high surrogate)"},
        {"{\"a\":\"\\udc00\"}", "line 1 column 7: invalid Unicode escape (lone low surrogate)"},
        {"{\"a\":\"\xc0\xaf\"}", "line 1 column 7: invalid UTF-8 in string"},
        {"{\"a\":\"\xed\xa0\x80\"}", "line 1 column 7: invalid UTF-8 in string"},
        {"{\"a\":\"abc", "line 1 column 6: unterminated string"},
        {"{} {}", "line 1 column 4: end of input expected"},
        {"{\"a\":[1,2}", "line 1 column 10: expected ',' or ']'"},
    };
    struct jscan_field f[N_F];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct errinfo err = {.msg = {0}};
        assert_int_equal(scan(cases[i].text, f, &err), JSCAN_INVALID);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu %s: got '%s', want '%s'", i, cases[i].text, err.msg,
                     cases[i].msg);
        assert_int_equal(f[F_MODEL].v.type, JSCAN_ABSENT);
    }
    struct errinfo err;
    assert_int_equal(scan("[1,2]", f, &err), JSCAN_NOT_OBJECT);
    assert_string_equal(err.msg, "request body must be a JSON object, got array");
    assert_int_equal(scan("\"s\"", f, &err), JSCAN_NOT_OBJECT);
}

/* {"a": followed by levels-1 nested arrays: levels of nesting in all. */
static size_t nest(char *out, int levels)
{
    size_t n = 0;
    memcpy(out, "{\"a\":", 5);
    n = 5;
    for (int i = 1; i < levels; i++)
        out[n++] = '[';
    for (int i = 1; i < levels; i++)
        out[n++] = ']';
    out[n++] = '}';
    out[n] = 0;
    return n;
}

static void test_depth(void **state)
{
    (void)state;
    static char deep[5000];
    struct jscan_field f[N_F];
    struct errinfo err;
    nest(deep, 2048);
    assert_int_equal(scan(deep, f, &err), JSCAN_OK);
    assert_int_equal(f[F_MODEL].v.type, JSCAN_ABSENT);
    nest(deep, 2049);
    assert_int_equal(scan(deep, f, &err), JSCAN_INVALID);
    assert_non_null(strstr(err.msg, "maximum nesting depth"));
}

/* Agreement with jansson (what the router used before) on accept/reject. */
static void test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{}", " { } ", "{\"a\":[]}", "{\"a\":[{}, [], \"\", 0, -0.5e+3, true, false, null]}",
        "{\"a\":\"\\u0000\"}", "{\"a\":1E5}", "{\"a\":1.5e-7}", "{\"\xf0\x9f\x98\x80\":1}",
        "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xe0\x80\xaf\"}", "{\"a\":+1}", "{\"a\":.5}",
        "{\"a\":1}x", "{\"a\":NaN}", "{'a':1}", "{\"a\":\"\t\"}", "{\"a\":\"\x7f\"}",
        "{\"a\":\"\\ud83d\\u0041\"}", "{\"a\":\"\\uD83D\\uDE00\"}", "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        json_error_t je;
        json_t *j = json_loads(docs[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        struct jscan_field f[N_F];
        struct errinfo err;
        bool ok = scan(docs[i], f, &err) == JSCAN_OK;
        if (ok != (j != NULL))
            fail_msg("doc %zu '%s': jscan %s, jansson %s", i, docs[i], ok ? "ok" : err.msg,
                     j ? "ok" : je.text);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),   cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_depth),
        cmocka_unit_test(test_agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for base/json: parse errors, typed getters and their messages, and the
 * escaper (its output must always re-parse as the same string). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "base/json.h"

static json_t *doc;

static int setup(void **state)
{
    (void)state;
    const char *text = "{\"model\":\"m\",\"max_tokens\":128,\"temperature\":0.5,\"stream\":true,"
                       "\"n\":2.0,\"frac\":2.5,\"huge\":1e300,\"nul\":null,\"obj\":{\"a\":1},"
                       "\"arr\":[1,2],\"neg\":-3}";
    struct errinfo err;
    doc = json_parse(text, strlen(text), &err);
    return doc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(doc);
    return 0;
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct errinfo err = {.msg = {0}};
    const char *bad = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    assert_null(json_parse(bad, strlen(bad), &err));
    assert_non_null(strstr(err.msg, "invalid JSON at line 3 column "));
    assert_true(strlen(err.msg) > strlen("invalid JSON at line 3 column 1: "));
    /* Scalars at top level are allowed; duplicate keys: last wins. */
    json_t *v = json_parse("42", 2, &err);
    assert_non_null(v);
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
    v = json_parse("{\"a\":1,\"a\":2}", 13, &err);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 2);
    json_decref(v);
}

static void test_getters_ok(void **state)
{
    (void)state;
    struct errinfo err = {.msg = {0}};
    const char *s = NULL;
    long long i = 0;
    double d = 0;
    bool b = false;
    json_t *o = NULL;
    assert_int_equal(json_get_str(doc, "model", &s, &err), 1);
    assert_string_equal(s, "m");
    assert_int_equal(json_get_int(doc, "max_tokens", &i, &err), 1);
    assert_int_equal(i, 128);
    assert_int_equal(json_get_int(doc, "neg", &i, &err), 1);
    assert_int_equal(i, -3);
    assert_int_equal(json_get_int(doc, "n", &i, &err), 1); /* 2.0 counts as an integer */
    assert_int_equal(i, 2);
    assert_int_equal(json_get_num(doc, "temperature", &d, &err), 1);
    assert_true(d == 0.5);
    assert_int_equal(json_get_num(doc, "max_tokens", &d, &err), 1); /* ints are numbers */
    assert_true(d == 128.0);
    assert_int_equal(json_get_bool(doc, "stream", &b, &err), 1);
    assert_true(b);
    assert_int_equal(json_get_obj(doc, "obj", &o, &err), 1);
    assert_ptr_equal(o, json_object_get(doc, "obj"));
    assert_int_equal(json_get_arr(doc, "arr", &o, &err), 1);
    assert_int_equal(json_array_size(o), 2);
}

static void test_getters_absent(void **state)
{
    (void)state;
    struct errinfo err = {.msg = {0}};
    long long i = 77;
    const char *s = "untouched";
    /* Absent and null both give 0 and leave out alone. */
    assert_int_equal(json_get_int(doc, "missing", &i, &err), 0);
    assert_int_equal(json_get_int(doc, "nul", &i, &err), 0);
    assert_int_equal(i, 77);
    assert_int_equal(json_get_str(doc, "nul", &s, &err), 0);
    assert_string_equal(s, "untouched");
    /* A non-object container has no fields. */
    json_t *arr = json_object_get(doc, "arr");
    assert_int_equal(json_get_int(arr, "x", &i, &err), 0);
    assert_int_equal(json_get_int(NULL, "x", &i, &err), 0);
    assert_string_equal(err.msg, ""); /* err only written on failure */
}

static void test_getters_wrong_type(void **state)
{
    (void)state;
    struct errinfo err = {.msg = {0}};
    const char *s = NULL;
    long long i = 5;
    double d = 0;
    bool b = false;
    json_t *o = NULL;
    assert_int_equal(json_get_int(doc, "model", &i, &err), -1);
    assert_string_equal(err.msg, "'model' must be an integer, got string");
    assert_int_equal(i, 5);
    assert_int_equal(json_get_int(doc, "frac", &i, &err), -1);
    assert_string_equal(err.msg, "'frac' must be an integer, got number");
    /* Far outside long long: an error, not undefined behaviour. */
    assert_int_equal(json_get_int(doc, "huge", &i, &err), -1);
    assert_string_equal(err.msg, "'huge' must be an integer, got number");
    assert_int_equal(i, 5);
    assert_int_equal(json_get_str(doc, "max_tokens", &s, &err), -1);
    assert_string_equal(err.msg, "'max_tokens' must be a string, got integer");
    assert_int_equal(json_get_bool(doc, "model", &b, &err), -1);
    assert_string_equal(err.msg, "'model' must be a boolean, got string");
    assert_int_equal(json_get_num(doc, "stream", &d, &err), -1);
    assert_string_equal(err.msg, "'stream' must be a number, got boolean");
    assert_int_equal(json_get_obj(doc, "arr", &o, &err), -1);
    assert_string_equal(err.msg, "'arr' must be an object, got array");
    assert_int_equal(json_get_arr(doc, "obj", &o, &err), -1);
    assert_string_equal(err.msg, "'obj' must be an array, got object");
}

/* Escapes s, checks the result is valid JSON, and returns what it decodes to. */
static json_t *roundtrip(const char *s, size_t n, struct buf *out)
{
    buf_reset(out);
    json_quote(out, s, n);
    json_error_t je;
    json_t *v = json_loadb(out->data, out->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        fail_msg("escaped text is not JSON (%s): %s", je.text, out->data);
    assert_true(json_is_string(v));
    return v;
}

static void test_escape(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    json_escape(&out, "plain text", 10);
    assert_string_equal(out.data, "plain text");
    buf_reset(&out);
    json_escape(&out, "q\"b\\n\nr\rt\tb\bf\f\x01\x1f", 16);
    assert_string_equal(out.data, "q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\\u0001\\u001f");

    /* Every control character and the two specials survive a round trip. */
    char all[40];
    size_t n = 0;
    for (int c = 0; c < 0x20; c++)
        all[n++] = (char)c;
    all[n++] = '"';
    all[n++] = '\\';
    all[n++] = '/';
    all[n++] = 0x7f;
    json_t *v = roundtrip(all, n, &out);
    assert_int_equal(json_string_length(v), n);
    assert_memory_equal(json_string_value(v), all, n);
    json_decref(v);

    /* Valid multi-byte UTF-8 passes through unchanged. */
    const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    buf_reset(&out);
    json_escape(&out, utf8, strlen(utf8));
    assert_string_equal(out.data, utf8);

    /* Invalid UTF-8 becomes U+FFFD, one per bad byte, and the output stays valid. */
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } bad[] = {
        {"a\xff"
         "b",
         3,
         "a\xef\xbf\xbd"
         "b"},
        {"\xc3", 1, "\xef\xbf\xbd"},                                 /* truncated */
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\x80x", 2, "\xef\xbf\xbdx"},                        /* lone continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = roundtrip(bad[i].in, bad[i].n, &out);
        assert_string_equal(json_string_value(v), bad[i].want);
        json_decref(v);
    }
    buf_free(&out);
}

static void test_dump(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    json_t *v = json_pack("{s:i,s:[s,b],s:n,s:f}", "z", 1, "a", "x", 1, "m", "r", 1.5);
    json_dump_to(&out, v);
    /* Compact, insertion order. */
    assert_string_equal(out.data, "{\"z\":1,\"a\":[\"x\",true],\"m\":null,\"r\":1.5}");
    json_decref(v);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_getters_ok),
        cmocka_unit_test(test_getters_absent), cmocka_unit_test(test_getters_wrong_type),
        cmocka_unit_test(test_escape),         cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests_name("json", tests, setup, teardown);
}

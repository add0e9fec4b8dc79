/* Unit tests for base/yaml_emit: exact layout of the block style, quoting of every kind
 * of risky string, and the round trip yaml_parse(yaml_emit(v)) == v on many values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/yaml.h"
#include "base/yaml_emit.h"

static void roundtrip(json_t *v)
{
    struct buf b = BUF_INIT;
    yaml_emit(&b, v, 0);
    struct errinfo err;
    json_t *back = yaml_parse(b.data, b.len, "<emitted>", &err);
    if (!back || !json_equal(back, v)) {
        char *want = json_dumps(v, JSON_ENCODE_ANY);
        fprintf(stderr, "round trip failed for %s:\n%s\n%s\n", want, b.data,
                back ? "(different value)" : err.msg);
        free(want);
    }
    assert_non_null(back);
    assert_true(json_equal(back, v));
    json_decref(back);
    buf_free(&b);
}

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fprintf(stderr, "bad test JSON %s: %s\n", text, e.text);
    assert_non_null(v);
    return v;
}

static void expect_yaml(const char *json, const char *want)
{
    json_t *v = J(json);
    struct buf b = BUF_INIT;
    yaml_emit(&b, v, 0);
    assert_string_equal(b.data, want);
    buf_free(&b);
    roundtrip(v);
    json_decref(v);
}

static void test_layout(void **state)
{
    (void)state;
    expect_yaml("{\"a\":1,\"b\":\"x\",\"c\":{\"d\":true,\"e\":null}}",
                "a: 1\nb: x\nc:\n  d: true\n  e: null\n");
    expect_yaml("{\"containers\":[{\"name\":\"vllm\",\"args\":[\"--port\",\"8000\"]},{}]}",
                "containers:\n  - name: vllm\n    args:\n      - --port\n      - \"8000\"\n  - {}\n");
    expect_yaml("[[1,2],[],{}]", "- - 1\n  - 2\n- []\n- {}\n");
    expect_yaml("{}", "{}\n");
    expect_yaml("[]", "[]\n");
    expect_yaml("0.5", "0.5\n");
    expect_yaml("1.0", "1.0\n");
    expect_yaml("-7", "-7\n");
    expect_yaml("\"plain text\"", "plain text\n");
    expect_yaml("{\"z\":1,\"a\":2}", "z: 1\na: 2\n"); /* insertion order */
    /* Base indentation applies to every line. */
    json_t *v = J("{\"a\":{\"b\":[1]}}");
    struct buf b = BUF_INIT;
    yaml_emit(&b, v, 4);
    assert_string_equal(b.data, "    a:\n      b:\n        - 1\n");
    buf_reset(&b);
    yaml_emit_doc(&b, v);
    yaml_emit_doc(&b, v);
    assert_string_equal(b.data, "---\na:\n  b:\n    - 1\n---\na:\n  b:\n    - 1\n");
    struct errinfo err;
    json_t *all = yaml_parse_all(b.data, b.len, "<docs>", &err);
    assert_non_null(all);
    assert_int_equal(json_array_size(all), 2);
    assert_true(json_equal(json_array_get(all, 1), v));
    json_decref(all);
    buf_free(&b);
    json_decref(v);
}

static void test_quoting(void **state)
{
    (void)state;
    static const char *const quoted[] = {
        "",     "true", "False", "yes",  "NO",   "on",    "Off", "null", "~",    "123",
        "9002", "0x1f", "0o17",  "017",  ".5",   "1e3",   "-1",  "+1",   ".inf", "inf",
        "NaN",  "- a",  "a: b",  " x",   "x ",   "#c",    "a #b", "a:",  "@x",   "`x",
        "!t",   "&a",   "*a",    "|",    ">",    "'q'",   "\"q\"", "%x", "{a}",  "[a]",
        ",",    "?",    "line\nbreak", "tab\there", "<<", "y", "=", "2001-12-14", "1:20",
        NULL};
    for (const char *const *s = quoted; *s; s++) {
        struct buf b = BUF_INIT;
        yaml_emit_string(&b, *s, strlen(*s));
        if (b.data[0] != '"')
            fprintf(stderr, "not quoted: [%s] -> [%s]\n", *s, b.data);
        assert_int_equal(b.data[0], '"');
        buf_free(&b);
    }
    static const char *const plain[] = {"llm-d.ai/role", "vllm", "a-b", "x:y", "a#b",
                                        "hello world", "caf\xc3\xa9", "/model-cache", "v1",
                                        "inference.networking.x-k8s.io/v1alpha2", NULL};
    for (const char *const *s = plain; *s; s++) {
        struct buf b = BUF_INIT;
        yaml_emit_string(&b, *s, strlen(*s));
        assert_string_equal(b.data, *s);
        buf_free(&b);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const char *const strings[] = {
        "true", "123", "- a", "a: b", "", " x", "#c", "llm-d.ai/role", "9002",
        "\xe2\x82\xac uro \xf0\x9f\x98\x80", "multi\nline\n", "quote\"back\\slash",
        "ctl\x01\x1f\x7f", "\xc2\x85nel", "\xe2\x80\xa8ls", "\xef\xbb\xbf" "bom", "'single'",
        "--port=8000", "{{ .X }}", "a: b # c", "  lead", "trail\t", "0", "-", "---", "...",
        "<<", "NULL", "0.5", "1_000", "12:30:00", "y", "n", "=", "key:", "http://x:80/a",
        NULL};
    json_t *obj = json_object();
    json_t *arr = json_array();
    for (const char *const *s = strings; *s; s++) {
        json_t *str = json_string(*s);
        assert_non_null(str);
        roundtrip(str);
        json_object_set(obj, *s, str); /* the same text as a key */
        json_array_append(arr, str);
        json_decref(str);
    }
    json_t *nul = json_stringn("a\0b", 3);
    roundtrip(nul);
    json_object_set_new(obj, "nul", nul);
    roundtrip(obj);
    roundtrip(arr);
    json_t *doc = json_pack("{s:o,s:o,s:[{s:i,s:f,s:b,s:n,s:{},s:[]}],s:f,s:f,s:f,s:I}", "o",
                            obj, "a", arr, "list", "i", 1, "f", 0.1, "b", 0, "n", "eo", "ea", "r1",
                            1e300, "r2", -2.5e-7, "r3", 100.0, "big", (json_int_t)INT64_MIN);
    assert_non_null(doc);
    roundtrip(doc);
    /* A key past YAML's 1024-character limit on implicit keys. */
    char longkey[1500];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    json_t *lk = json_pack("{s:i,s:{s:s}}", longkey, 1, "x", longkey, "v");
    roundtrip(lk);
    json_decref(lk);
    /* Deep nesting of arrays in arrays and objects in arrays. */
    roundtrip(doc);
    json_t *deep = J("[[[{\"a\":[[{\"b\":[]}]]}]],{\"c\":[[1,[2,[3]]]]}]");
    roundtrip(deep);
    json_decref(deep);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

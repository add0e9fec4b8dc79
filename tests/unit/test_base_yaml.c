/* Unit tests for base/yaml: scalar typing, nesting, multi-document streams, aliases and
 * merge keys, and positioned errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/yaml.h"

static json_t *parse(const char *text)
{
    struct yaml_err err = {{0}, 0, 0};
    json_t *v = yaml_parse(text, strlen(text), "<test>", &err);
    if (!v)
        fail_msg("unexpected error: %s", err.msg);
    return v;
}

/* Compact JSON of v, for comparing whole documents at once. */
static char *dump(const json_t *v)
{
    static struct buf out;
    buf_free(&out);
    json_dump_to(&out, v);
    return out.data;
}

static void assert_yaml(const char *yaml, const char *want_json)
{
    json_t *v = parse(yaml);
    assert_string_equal(dump(v), want_json);
    json_decref(v);
}

static void assert_yaml_error(const char *yaml, int line, int column, const char *want_msg)
{
    struct yaml_err err = {{0}, 0, 0};
    json_t *v = yaml_parse(yaml, strlen(yaml), "cfg.yaml", &err);
    if (v)
        fail_msg("expected an error, got %s", dump(v));
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, column);
    assert_string_equal(err.msg, want_msg);
}

static void test_scalar_types(void **state)
{
    (void)state;
    json_t *v = parse("i: 42\n"
                      "neg: -7\n"
                      "hex: 0x1f\n"
                      "oct: 0o17\n"
                      "f: 2.5\n"
                      "exp: 1e3\n"
                      "t: true\n"
                      "F: False\n"
                      "n1: null\n"
                      "n2: ~\n"
                      "n3:\n"
                      "s: hello world\n"
                      "yes: yes\n"
                      "q1: '42'\n"
                      "q2: \"true\"\n"
                      "q3: \"\"\n"
                      "tagged: !!str 5\n"
                      "nonspecific: ! 6\n"
                      "forced: !!float 3\n"
                      "inf: .inf\n"
                      "big: 99999999999999999999\n"
                      "version: 1.2.3\n");
    assert_true(json_is_integer(json_object_get(v, "i")));
    assert_int_equal(json_integer_value(json_object_get(v, "i")), 42);
    assert_int_equal(json_integer_value(json_object_get(v, "neg")), -7);
    assert_int_equal(json_integer_value(json_object_get(v, "hex")), 31);
    assert_int_equal(json_integer_value(json_object_get(v, "oct")), 15);
    assert_true(json_is_real(json_object_get(v, "f")));
    assert_true(json_real_value(json_object_get(v, "f")) == 2.5);
    assert_true(json_is_real(json_object_get(v, "exp")));
    assert_true(json_real_value(json_object_get(v, "exp")) == 1000.0);
    assert_true(json_is_true(json_object_get(v, "t")));
    assert_true(json_is_false(json_object_get(v, "F")));
    assert_true(json_is_null(json_object_get(v, "n1")));
    assert_true(json_is_null(json_object_get(v, "n2")));
    assert_true(json_is_null(json_object_get(v, "n3")));
    assert_string_equal(json_string_value(json_object_get(v, "s")), "hello world");
    /* YAML 1.2: yes is a string, not a boolean. */
    assert_string_equal(json_string_value(json_object_get(v, "yes")), "yes");
    assert_string_equal(json_string_value(json_object_get(v, "q1")), "42");
    assert_string_equal(json_string_value(json_object_get(v, "q2")), "true");
    assert_string_equal(json_string_value(json_object_get(v, "q3")), "");
    assert_string_equal(json_string_value(json_object_get(v, "tagged")), "5");
    assert_string_equal(json_string_value(json_object_get(v, "nonspecific")), "6");
    assert_true(json_is_real(json_object_get(v, "forced")));
    assert_true(json_real_value(json_object_get(v, "forced")) == 3.0);
    assert_string_equal(json_string_value(json_object_get(v, "inf")), ".inf");
    assert_true(json_is_real(json_object_get(v, "big")));
    assert_string_equal(json_string_value(json_object_get(v, "version")), "1.2.3");
    json_decref(v);

    /* Top-level scalars and integer limits. */
    assert_yaml("-9223372036854775808", "-9223372036854775808");
    assert_yaml("9223372036854775807", "9223372036854775807");
    assert_yaml("'x'", "\"x\"");
    assert_yaml("\"tab\\there\\u00e9\"", "\"tab\\there\u00e9\"");
}

static void test_nested(void **state)
{
    (void)state;
    assert_yaml("apiVersion: llm-d.ai/v1alpha1\n"
                "kind: ModelService\n"
                "spec:\n"
                "  decode:\n"
                "    replicas: 2\n"
                "    containers:\n"
                "      - name: vllm\n"
                "        args: [\"--port\", 8200, --enforce-eager]\n"
                "        env: []\n"
                "  routing: {proxy: {enabled: true}, ports: [8000, 8200]}\n"
                "text: |\n"
                "  line one\n"
                "  line two\n",
                "{\"apiVersion\":\"llm-d.ai/v1alpha1\",\"kind\":\"ModelService\","
                "\"spec\":{\"decode\":{\"replicas\":2,\"containers\":[{\"name\":\"vllm\","
                "\"args\":[\"--port\",8200,\"--enforce-eager\"],\"env\":[]}]},"
                "\"routing\":{\"proxy\":{\"enabled\":true},\"ports\":[8000,8200]}},"
                "\"text\":\"line one\\nline two\\n\"}");
    /* JSON is YAML. */
    assert_yaml("{\"a\": [1, 2.5, \"x\", null, false], \"b\": {}}",
                "{\"a\":[1,2.5,\"x\",null,false],\"b\":{}}");
    /* Non-string keys are kept as their text. */
    assert_yaml("1: one\ntrue: yes\n", "{\"1\":\"one\",\"true\":\"yes\"}");
}

static void test_empty(void **state)
{
    (void)state;
    json_t *v = parse("");
    assert_true(json_is_null(v));
    json_decref(v);
    v = parse("# just a comment\n");
    assert_true(json_is_null(v));
    json_decref(v);
}

static void test_multi_doc(void **state)
{
    (void)state;
    const char *text = "---\nkind: Service\n---\nkind: Deployment\nspec: {replicas: 3}\n"
                       "...\n---\n- 1\n- 2\n";
    struct yaml_err err = {{0}, 0, 0};
    json_t *all = yaml_parse_all(text, strlen(text), "<test>", &err);
    assert_non_null(all);
    assert_string_equal(dump(all), "[{\"kind\":\"Service\"},{\"kind\":\"Deployment\","
                                   "\"spec\":{\"replicas\":3}},[1,2]]");
    json_decref(all);
    /* yaml_parse takes the first document only. */
    assert_yaml(text, "{\"kind\":\"Service\"}");

    /* An empty document (a trailing "---") is kept as null, as PyYAML does. */
    all = yaml_parse_all("a: 1\n---\n", 9, "<test>", &err);
    assert_non_null(all);
    assert_string_equal(dump(all), "[{\"a\":1},null]");
    json_decref(all);

    all = yaml_parse_all("", 0, "<test>", &err);
    assert_non_null(all);
    assert_int_equal(json_array_size(all), 0);
    json_decref(all);

    /* An error in a later document fails the whole stream, with its position. */
    const char *bad = "a: 1\n---\nb: [1, 2\n";
    all = yaml_parse_all(bad, strlen(bad), "multi.yaml", &err);
    assert_null(all);
    assert_true(err.line >= 3);
    assert_non_null(strstr(err.msg, "multi.yaml:"));
}

static void test_aliases_and_merge(void **state)
{
    (void)state;
    assert_yaml("base: &b {image: vllm, port: 8000}\n"
                "copy: *b\n"
                "over:\n"
                "  <<: *b\n"
                "  port: 8200\n"
                "multi:\n"
                "  <<: [{x: 1}, {x: 2, y: 2}]\n",
                "{\"base\":{\"image\":\"vllm\",\"port\":8000},"
                "\"copy\":{\"image\":\"vllm\",\"port\":8000},"
                "\"over\":{\"image\":\"vllm\",\"port\":8200},"
                "\"multi\":{\"x\":1,\"y\":2}}");
    /* An explicit key before the merge still wins over it. */
    assert_yaml("b: &b {p: 1, q: 1}\nm: {p: 2, <<: *b}\n",
                "{\"b\":{\"p\":1,\"q\":1},\"m\":{\"p\":2,\"q\":1}}");
    /* A quoted "<<" is an ordinary key. */
    assert_yaml("\"<<\": 1\n", "{\"<<\":1}");
}

static void test_alias_bomb_and_recursion(void **state)
{
    (void)state;
    struct buf text = BUF_INIT;
    buf_append_str(&text, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 9; i++) {
        buf_printf(&text, "a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++)
            buf_printf(&text, "%s*a%d", k ? ", " : "", i - 1);
        buf_append_str(&text, "]\n");
    }
    struct yaml_err err = {{0}, 0, 0};
    json_t *v = yaml_parse(text.data, text.len, "bomb.yaml", &err);
    assert_null(v);
    assert_non_null(strstr(err.msg, "too many nodes"));
    buf_free(&text);

    const char *rec = "a: &x [1, *x]\n";
    v = yaml_parse(rec, strlen(rec), "rec.yaml", &err);
    assert_null(v);
    assert_non_null(strstr(err.msg, "recursive"));
}

static void test_error_positions(void **state)
{
    (void)state;
    /* Syntax errors carry libfyaml's position, 1-based, after the document's name. */
    struct yaml_err err = {{0}, 0, 0};
    const char *bad = "model: m\nport: 8000\n  extra: oops\n";
    assert_null(yaml_parse(bad, strlen(bad), "cfg.yaml", &err));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 7);
    assert_string_equal(err.msg, "cfg.yaml:2:7: invalid multiline plain key");

    assert_yaml_error("a: 1\nb: [1, 2\nc: 3\n", 4, 1,
                      "cfg.yaml:4:1: flow sequence without a closing bracket");
    assert_yaml_error("a: b: c\n", 1, 5,
                      "cfg.yaml:1:5: invalid nested block mapping on the same line");
    assert_yaml_error("a: \"bad \\q escape\"\n", 1, 9,
                      "cfg.yaml:1:9: invalid escape 'q' in double-quoted string");
    assert_yaml_error("a: 1\nb: 2\na: 3\n", 3, 1, "cfg.yaml:3:1: duplicate key");
    /* Errors found while converting point at the offending node (a collection at its
     * first scalar, an alias at its name). */
    assert_yaml_error("ok: 1\nport: !!int eighty\n", 2, 13,
                      "cfg.yaml:2:13: 'eighty' is not an integer");
    assert_yaml_error("a: 1\nb: *missing\n", 2, 5, "cfg.yaml:2:5: unknown alias '*missing'");
    assert_yaml_error("? [a, b]\n: c\n", 1, 4, "cfg.yaml:1:4: mapping keys must be scalars");
    assert_yaml_error("ok: 1\nbad: caf\xe9\n", 2, 9, "cfg.yaml:2:9: invalid UTF-8 byte 0xe9");
    assert_yaml_error("m: {a: 1}\nx:\n  <<: [*nope]\n", 3, 9,
                      "cfg.yaml:3:9: unknown alias '*nope'");
    assert_yaml_error("x:\n  <<: 5\n", 2, 7,
                      "cfg.yaml:2:7: merge key '<<' needs a mapping or a list of mappings");
    assert_yaml_error("x:\n  <<:\n", 2, 3,
                      "cfg.yaml:2:3: merge key '<<' needs a mapping or a list of mappings");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tandem-yaml-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "router:\n  port: 8000\n  bad: [\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct yaml_err err = {{0}, 0, 0};
    assert_null(yaml_load_file(path, &err));
    /* The file name leads the message. */
    assert_memory_equal(err.msg, path, strlen(path));
    assert_true(err.line > 0);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("router:\n  port: 8000\n", f);
    fclose(f);
    json_t *v = yaml_load_file(path, &err);
    assert_non_null(v);
    assert_string_equal(dump(v), "{\"router\":{\"port\":8000}}");
    json_decref(v);
    unlink(path);

    assert_null(yaml_load_file("/nonexistent/x.yaml", &err));
    assert_string_equal(err.msg, "/nonexistent/x.yaml: cannot open: No such file or directory");
    assert_int_equal(err.line, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_types),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_multi_doc),
        cmocka_unit_test(test_aliases_and_merge),
        cmocka_unit_test(test_alias_bomb_and_recursion),
        cmocka_unit_test(test_error_positions),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

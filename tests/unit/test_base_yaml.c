/* Unit tests for base/yaml: scalar typing, nesting, multi-document streams, aliases and
 * merge keys, positioned errors, and source positions of values. */
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
    struct errinfo err = {{0}, 0, 0};
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
    struct errinfo err = {{0}, 0, 0};
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
    struct errinfo err = {{0}, 0, 0};
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
    struct errinfo err = {{0}, 0, 0};
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
    struct errinfo err = {{0}, 0, 0};
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
    assert_yaml_error("{[a, b]: c}\n", 1, 3, "cfg.yaml:1:3: mapping keys must be scalars");
    /* The pre-scan: what libfyaml mishandles and configs never need. */
    assert_yaml_error("? [a, b]\n: c\n", 1, 1,
                      "cfg.yaml:1:1: explicit mapping keys ('? ') are not supported in tandem's "
                      "YAML");
    assert_yaml_error("a: 1\nb:\t2\n", 2, 3, "cfg.yaml:2:3: tab character: YAML here needs spaces");
    assert_yaml_error("a: 1\nb: x\x01y\n", 2, 5,
                      "cfg.yaml:2:5: control character 0x01 is not allowed in YAML");
    assert_yaml_error("a: 'open\nb: 2\n", 1, 4, "cfg.yaml:1:4: quoted scalar is never closed");
    /* ...while tabs inside quotes or comments, and '?' inside words, stay fine. */
    const char *fine = "a: \"x\ty\" # tab\there\nb: what?\nc: 'it''s'\n";
    json_t *ok = yaml_parse(fine, strlen(fine), "c", &err);
    assert_non_null(ok);
    assert_string_equal(json_string_value(json_object_get(ok, "b")), "what?");
    assert_string_equal(json_string_value(json_object_get(ok, "c")), "it's");
    json_decref(ok);
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
    struct errinfo err = {{0}, 0, 0};
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

/* Parses with positions and checks that node (a path of keys and indexes, "" for the
 * root) starts at line:column. Paths: "spec.containers.0.name". */
static json_t *walk_path(json_t *v, const char *path)
{
    char part[64];
    while (*path) {
        size_t n = strcspn(path, ".");
        assert_true(n < sizeof part);
        memcpy(part, path, n);
        part[n] = '\0';
        path += n + (path[n] == '.');
        if (json_is_array(v))
            v = json_array_get(v, (size_t)atoi(part));
        else
            v = json_object_get(v, part);
        if (!v)
            fail_msg("no value at '%s'", part);
    }
    return v;
}

static void assert_pos(const struct yaml_positions *pos, json_t *root, const char *path, int line,
                       int column)
{
    int l = -1, c = -1;
    json_t *v = walk_path(root, path);
    if (!yaml_position(pos, v, &l, &c))
        fail_msg("no position for '%s'", path);
    if (l != line || c != column)
        fail_msg("'%s': got %d:%d, want %d:%d", path, l, c, line, column);
}

static void assert_no_pos(const struct yaml_positions *pos, json_t *root, const char *path)
{
    int l = -1, c = -1;
    assert_false(yaml_position(pos, walk_path(root, path), &l, &c));
    assert_int_equal(l, -1); /* untouched */
}

static void test_positions(void **state)
{
    (void)state;
    const char *text = "# a config\n"                   /* 1 */
                       "router:\n"                      /* 2 */
                       "  port: 8000\n"                 /* 3 */
                       "  name: \"front\"\n"            /* 4 */
                       "  pools:\n"                     /* 5 */
                       "    - name: a\n"                /* 6 */
                       "    - weight: 2.5\n"            /* 7 */
                       "      tags: [x, 'y', {k: v}]\n" /* 8 */
                       "      empty: {}\n"              /* 9 */
                       "      on: true\n"               /* 10 */
                       "      off:\n"                   /* 11 */
                       "  note: |\n"                    /* 12 */
                       "    text\n"                     /* 13 */
                       "  nested:\n"                    /* 14 */
                       "  - - deep\n"                   /* 15 */
                       "    - é\n"                      /* 16 */
                       "  flow: [\n"                    /* 17 */
                       "     1, 2]\n";                  /* 18 */
    struct errinfo err = {{0}, 0, 0};
    struct yaml_positions *pos = NULL;
    json_t *v = yaml_parse_pos(text, strlen(text), "cfg.yaml", &pos, &err);
    if (!v)
        fail_msg("%s", err.msg);
    assert_non_null(pos);
    /* The same value yaml_parse gives. */
    json_t *plain = yaml_parse(text, strlen(text), "cfg.yaml", &err);
    assert_true(json_equal(v, plain));
    json_decref(plain);

    assert_pos(pos, v, "", 2, 1); /* a block mapping starts at its first key */
    assert_pos(pos, v, "router", 3, 3);
    assert_pos(pos, v, "router.port", 3, 9);
    assert_pos(pos, v, "router.name", 4, 9);  /* at the quote */
    assert_pos(pos, v, "router.pools", 6, 5); /* a block sequence at its first '-' */
    assert_pos(pos, v, "router.pools.0", 6, 7);
    assert_pos(pos, v, "router.pools.0.name", 6, 13);
    assert_pos(pos, v, "router.pools.1", 7, 7);
    assert_pos(pos, v, "router.pools.1.weight", 7, 15);
    assert_pos(pos, v, "router.pools.1.tags", 8, 13); /* a flow sequence at its '[' */
    assert_pos(pos, v, "router.pools.1.tags.0", 8, 14);
    assert_pos(pos, v, "router.pools.1.tags.1", 8, 17);
    assert_pos(pos, v, "router.pools.1.tags.2", 8, 22); /* a flow mapping at its '{' */
    assert_pos(pos, v, "router.pools.1.tags.2.k", 8, 26);
    assert_pos(pos, v, "router.note", 12, 9); /* a block scalar at its '|' */
    assert_pos(pos, v, "router.nested", 15, 3);
    assert_pos(pos, v, "router.nested.0", 15, 5);
    assert_pos(pos, v, "router.nested.0.0", 15, 7);
    assert_pos(pos, v, "router.nested.0.1", 16, 7);
    assert_pos(pos, v, "router.flow", 17, 9); /* the '[' is a line above its first item */
    assert_pos(pos, v, "router.flow.1", 18, 9);
    /* An empty collection has nothing to start from; true/null are shared singletons. */
    assert_no_pos(pos, v, "router.pools.1.empty");
    assert_no_pos(pos, v, "router.pools.1.on");
    assert_no_pos(pos, v, "router.pools.1.off");
    /* Values from elsewhere, and NULL, are unknown. */
    json_t *other = json_integer(8000);
    assert_false(yaml_position(pos, other, NULL, NULL));
    json_decref(other);
    assert_false(yaml_position(pos, NULL, NULL, NULL));
    assert_false(yaml_position(NULL, v, NULL, NULL));
    /* The table may go first or last. */
    yaml_positions_free(pos);
    json_decref(v);
}

static void test_positions_aliases(void **state)
{
    (void)state;
    /* An alias's value starts at its '*'; what a merge copies keeps its definition's
     * position. */
    const char *good = "base: &b\n"
                       "  image: vllm\n"
                       "  port: 8000\n"
                       "copy: *b\n"
                       "over:\n"
                       "  <<: *b\n"
                       "  ext: 'seven'\n"
                       "list: [*b]\n";
    struct errinfo err = {{0}, 0, 0};
    struct yaml_positions *pos = NULL;
    json_t *v = yaml_parse_pos(good, strlen(good), "cfg.yaml", &pos, &err);
    if (!v)
        fail_msg("%s", err.msg);
    assert_pos(pos, v, "base", 2, 3);
    assert_pos(pos, v, "copy", 4, 7);
    assert_pos(pos, v, "copy.image", 2, 10);
    assert_pos(pos, v, "over", 6, 3);
    assert_pos(pos, v, "over.image", 2, 10);
    assert_pos(pos, v, "over.ext", 7, 8);
    assert_pos(pos, v, "list", 8, 7);
    assert_pos(pos, v, "list.0", 8, 8);
    json_decref(v); /* the value may go first */
    yaml_positions_free(pos);

    /* A value on line 7 column 5 is reported as such. */
    const char *seven = "a:\n  b:\n    c:\n      d: 1\n\nlist:\n    - 42\n";
    v = yaml_parse_pos(seven, strlen(seven), "cfg.yaml", &pos, &err);
    assert_non_null(v);
    assert_pos(pos, v, "list.0", 7, 7);
    assert_pos(pos, v, "list", 7, 5);
    assert_pos(pos, v, "a.b.c.d", 4, 10);
    yaml_positions_free(pos);
    json_decref(v);

    /* Errors: no table, and err as from yaml_parse. */
    pos = (struct yaml_positions *)&err; /* overwritten with NULL */
    assert_null(yaml_parse_pos("a: [1\n", 6, "cfg.yaml", &pos, &err));
    assert_null(pos);
    assert_true(err.line > 0);
    /* Scalars and empty documents at the top. */
    v = yaml_parse_pos("  \"x\"\n", 6, "cfg.yaml", &pos, &err);
    assert_pos(pos, v, "", 1, 3);
    yaml_positions_free(pos);
    json_decref(v);
    v = yaml_parse_pos("", 0, "cfg.yaml", &pos, &err);
    assert_true(json_is_null(v));
    assert_non_null(pos);
    assert_false(yaml_position(pos, v, NULL, NULL));
    yaml_positions_free(pos);
    yaml_positions_free(NULL);
    /* NULL pos: the same as yaml_parse. */
    v = yaml_parse_pos("a: 1\n", 5, "cfg.yaml", NULL, &err);
    assert_non_null(v);
    json_decref(v);
}

static void test_positions_many(void **state)
{
    (void)state;
    /* Enough values to grow the table several times; every one is found. */
    struct buf text = BUF_INIT;
    for (int i = 0; i < 3000; i++)
        buf_printf(&text, "k%d: [%d, \"s%d\"]\n", i, i, i);
    struct errinfo err = {{0}, 0, 0};
    struct yaml_positions *pos = NULL;
    json_t *v = yaml_parse_pos(text.data, text.len, "big.yaml", &pos, &err);
    assert_non_null(v);
    char key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        json_t *arr = json_object_get(v, key);
        int line, column;
        assert_true(yaml_position(pos, arr, &line, &column));
        assert_int_equal(line, i + 1);
        assert_int_equal(column, (int)strlen(key) + 3);
        assert_true(yaml_position(pos, json_array_get(arr, 1), &line, &column));
        assert_int_equal(line, i + 1);
    }
    yaml_positions_free(pos);
    json_decref(v);
    buf_free(&text);
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
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_positions_aliases),
        cmocka_unit_test(test_positions_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for ms/tmpl: every construct and function of the Go text/template subset,
 * trimming, scoping, toYaml output that parses back, and errors at the right place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/yaml.h"
#include "ms/tmpl.h"

static const char *DATA =
    "{\"ModelServiceName\":\"facebook-opt\",\"ModelName\":\"Facebook/OPT-125m\","
    "\"Empty\":\"\",\"Zero\":0,\"Half\":0.5,\"Big\":1000000.0,\"N\":3,\"T\":true,\"F\":false,"
    "\"Nil\":null,\"List\":[\"a\",\"b\",\"c\"],\"None\":[],\"Obj\":{\"z\":1,\"a\":2,\"m\":3},"
    "\"Nested\":{\"Inner\":{\"Name\":\"deep\"}},\"Ports\":{\"app_port\":8000,\"grpc\":9002},"
    "\"Labels\":{\"llm-d.ai/role\":\"decode\",\"llm-d.ai/inferenceServing\":\"true\"},"
    "\"Items\":[{\"name\":\"x\",\"port\":1},{\"name\":\"y\",\"port\":2}]}";

static json_t *data(void)
{
    json_error_t e;
    json_t *v = json_loads(DATA, 0, &e);
    assert_non_null(v);
    return v;
}

/* Renders; returns the output (static) or NULL with err. */
static const char *run(const char *tpl, struct errinfo *err)
{
    static char out[8192];
    json_t *d = data();
    struct buf b = BUF_INIT;
    bool ok = tmpl_render(tpl, strlen(tpl), "t", d, NULL, 0, &b, err);
    json_decref(d);
    if (!ok) {
        buf_free(&b);
        return NULL;
    }
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    buf_free(&b);
    return out;
}

static void ok(const char *tpl, const char *want)
{
    struct errinfo err = {.line = 0};
    const char *got = run(tpl, &err);
    if (!got || strcmp(got, want) != 0)
        fprintf(stderr, "template %s\n want [%s]\n got  [%s]\n", tpl, want, got ? got : err.msg);
    assert_non_null(got);
    assert_string_equal(got, want);
}

static void bad(const char *tpl, const char *msg, int line, int col)
{
    struct errinfo err = {.line = 0};
    const char *got = run(tpl, &err);
    if (got || !strstr(err.msg, msg) || err.line != line || err.column != col)
        fprintf(stderr, "template %s\n want error %d:%d %s\n got %s\n", tpl, line, col, msg,
                got ? got : err.msg);
    assert_null(got);
    assert_non_null(strstr(err.msg, msg));
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, col);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t:%d:%d: ", line, col);
    assert_memory_equal(err.msg, prefix, strlen(prefix));
}

static void test_values(void **state)
{
    (void)state;
    ok("plain text", "plain text");
    ok("", "");
    ok("{{ .ModelServiceName }}-decode", "facebook-opt-decode");
    ok("{{.Nested.Inner.Name}}", "deep");
    ok("{{ .N }} {{ .Half }} {{ .Big }} {{ .T }} {{ .F }} [{{ .Nil }}]", "3 0.5 1e+06 true false []");
    ok("{{ .List }} {{ .Obj }}", "[\"a\",\"b\",\"c\"] {\"z\":1,\"a\":2,\"m\":3}");
    ok("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 1_000 }} {{ 1.5 }} {{ 1e3 }} {{ 'a' }} {{ 017 }}",
       "42 -7 31 1000 1.5 1000 97 15");
    ok("{{ \"a\\tb\\n\\\"q\\\"\\u00e9\\x41\\101\" }}", "a\tb\n\"q\"\xc3\xa9" "AA");
    ok("{{ `raw \\n {{ }}` }}", "raw \\n {{ }}");
    ok("{{ true }} {{ false }} [{{ default \"\" nil }}]", "true false []");
    ok("{{ . | len }}", "17");
    ok("{{ . | len }}", "17");
    ok("{{ 0.000001 }} {{ 123456.0 }} {{ 1234567.0 }} {{ 0.0001 }}", "1e-06 123456 1.234567e+06 0.0001");
}

static void test_trim_comments(void **state)
{
    (void)state;
    ok("a  \n  {{- .N -}}  \n  b", "a3b");
    ok("a {{- .N }} b", "a3 b");
    ok("a {{ .N -}} \n\n b", "a 3b");
    ok("x\n{{- /* a comment */ -}}\ny", "xy");
    ok("x {{/* c\nspanning */}} y", "x  y");
    ok("{{-3}}", "-3"); /* no space: a negative number, not a trim marker */
    ok("line1\n{{- if .T }}\n  yes\n{{- end }}\nline2", "line1\n  yes\nline2");
}

static void test_control(void **state)
{
    (void)state;
    ok("{{ if .T }}y{{ end }}", "y");
    ok("{{ if .F }}y{{ else }}n{{ end }}", "n");
    ok("{{ if .F }}1{{ else if .Zero }}2{{ else if .N }}3{{ else }}4{{ end }}", "3");
    ok("{{ if .Empty }}1{{ else if .None }}2{{ else }}4{{ end }}", "4");
    ok("{{ if .Nil }}1{{ else }}{{ if .Obj }}2{{ end }}{{ end }}", "2");
    ok("{{ with .Nested.Inner }}{{ .Name }}{{ end }}", "deep");
    ok("{{ with .Empty }}x{{ else }}empty{{ end }}", "empty");
    ok("{{ with .Empty }}x{{ else with .Nested }}{{ .Inner.Name }}{{ end }}", "deep");
    ok("{{ range .List }}[{{ . }}]{{ end }}", "[a][b][c]");
    ok("{{ range $i, $v := .List }}{{ $i }}={{ $v }},{{ end }}", "0=a,1=b,2=c,");
    ok("{{ range $v := .List }}{{ $v }}{{ end }}", "abc");
    ok("{{ range $k, $v := .Obj }}{{ $k }}:{{ $v }} {{ end }}", "a:2 m:3 z:1 ");
    ok("{{ range .None }}x{{ else }}none{{ end }}", "none");
    ok("{{ range .Nil }}x{{ else }}nil{{ end }}", "nil");
    ok("{{ range .Items }}{{ .name }}:{{ .port }} ({{ $.ModelServiceName }}) {{ end }}",
       "x:1 (facebook-opt) y:2 (facebook-opt) ");
    ok("{{ range .List }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ if eq . \"c\" }}{{ break }}"
       "{{ end }}{{ . }}{{ end }}",
       "a");
    ok("{{ range $i, $it := .Items }}{{ range $.List }}{{ $i }}{{ . }}{{ end }};{{ end }}",
       "0a0b0c;1a1b1c;");
    ok("{{ with $x := .Nested }}{{ $x.Inner.Name }}{{ end }}", "deep");
    ok("{{ if $n := .N }}{{ $n }}{{ end }}", "3");
}

static void test_variables_pipelines(void **state)
{
    (void)state;
    ok("{{ $x := .N }}{{ $x }}{{ $x = 5 }}{{ $x }}", "35");
    ok("{{ $x := 1 }}{{ if .T }}{{ $x = 2 }}{{ $y := 9 }}{{ $y }}{{ end }}{{ $x }}", "92");
    ok("{{ $n := .Nested }}{{ $n.Inner.Name }}", "deep");
    ok("{{ .ModelName | lower | replace \"/\" \"-\" | trunc 10 }}", "facebook-o");
    ok("{{ (index .List 1) | upper }}", "B");
    ok("{{ printf \"%s-%d\" (lower .ModelName) (len .List) }}", "facebook/opt-125m-3");
    ok("{{ (index .Items 1).name }}", "y");
    ok("{{ len (printf \"%s%s\" \"ab\" \"cd\") }}", "4");
}

static void test_functions(void **state)
{
    (void)state;
    ok("{{ \"app_port\" | getPort }} {{ getPort \"grpc\" }}", "8000 9002");
    ok("{{ .ModelName | quote }} {{ .N | quote }} {{ quote \"a\\\"b\\n\" }}",
       "\"Facebook/OPT-125m\" \"3\" \"a\\\"b\\n\"");
    ok("{{ .ModelName | squote }} {{ squote 1 2 }}", "'Facebook/OPT-125m' '1' '2'");
    ok("{{ .Empty | default \"dflt\" }} {{ .N | default 7 }} {{ default \"d\" }} "
       "{{ .None | default \"e\" }} {{ .Zero | default 9 }}",
       "dflt 3 d e 9");
    ok("{{ lower \"AbC\" }} {{ upper \"AbC\" }}", "abc ABC");
    ok("{{ trunc 3 \"abcdef\" }} {{ trunc -2 \"abcdef\" }} {{ trunc 10 \"abc\" }} {{ trunc -10 \"abc\" }}",
       "abc ef abc abc");
    ok("{{ replace \"/\" \"-\" \"a/b/c\" }} {{ replace \"\" \"x\" \"ab\" }}", "a-b-c xaxbx");
    ok("{{ trimSuffix \"-decode\" \"m-decode\" }} {{ trimSuffix \"x\" \"abc\" }}", "m abc");
    ok("{{ indent 2 \"a\\nb\" }}|{{ nindent 4 \"x\" }}", "  a\n  b|\n    x");
    ok("{{ eq 1 1 }} {{ eq \"a\" \"b\" \"a\" }} {{ eq .N 3 }} {{ eq 1 1.0 }} {{ ne 1 2 }} {{ eq .Nil nil }}",
       "true true true true true true");
    ok("{{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1.5 2 }}", "true true true false");
    ok("{{ and 1 0 2 }} {{ and 1 2 }} {{ or 0 \"\" \"x\" }} {{ or 0 \"\" }} {{ not .F }}",
       "0 2 x  true");
    ok("{{ and .F .NoSuchField }} {{ or .T .NoSuchField }}", "false true"); /* lazy */
    ok("{{ len .List }} {{ len .Obj }} {{ len \"abc\" }}", "3 3 3");
    ok("{{ index .List 0 }} {{ index .Obj \"m\" }} {{ index .Nested \"Inner\" \"Name\" }} "
       "[{{ index .Obj \"missing\" }}]",
       "a 3 deep []");
    ok("{{ printf \"%v|%q|%d|%t|%%|%s\" .List \"x\" 5 true 1.5 }}", "[\"a\",\"b\",\"c\"]|\"x\"|5|true|%|1.5");
    ok("{{ printf \"%d %s\" \"s\" }}", "%!d(string=s) %!s(MISSING)");
    ok("{{ printf \"a\" 1 }}", "a%!(EXTRA int=1)");
}

static bool myfn(json_t *const *args, size_t n, json_t **out, char *err, size_t errlen, void *ctx)
{
    if (n != 1 || !json_is_string(args[0])) {
        snprintf(err, errlen, "want one string");
        return false;
    }
    *out = json_sprintf("%s%s", (const char *)ctx, json_string_value(args[0]));
    return true;
}

static void test_caller_funcs(void **state)
{
    (void)state;
    static char ctx[] = ">";
    const struct tmpl_func funcs[] = {{"mine", myfn, ctx}, {"getPort", myfn, ctx}};
    json_t *d = data();
    struct errinfo err;
    const char *src = "{{ mine .ModelServiceName }} {{ \"p\" | getPort }}";
    struct tmpl *t = tmpl_parse(src, strlen(src), "t", funcs, 2, &err);
    assert_non_null(t);
    struct buf b = BUF_INIT;
    assert_true(tmpl_exec(t, d, NULL, &b, &err));
    assert_string_equal(b.data, ">facebook-opt >p");
    /* A failing call names the function and place; out is rolled back. */
    tmpl_free(t);
    src = "{{ mine 1 }}";
    t = tmpl_parse(src, strlen(src), "t", funcs, 2, &err);
    assert_non_null(t);
    assert_false(tmpl_exec(t, d, NULL, &b, &err));
    assert_string_equal(err.msg, "t:1:4: error calling mine: want one string");
    assert_string_equal(b.data, ">facebook-opt >p");
    tmpl_free(t);
    buf_free(&b);
    json_decref(d);
}

static void test_toyaml(void **state)
{
    (void)state;
    const char *src = "apiVersion: apps/v1\n"
                      "kind: Deployment\n"
                      "metadata:\n"
                      "  name: {{ .ModelServiceName }}-decode\n"
                      "  labels:\n"
                      "    {{- .Labels | toYaml | nindent 4 }}\n"
                      "spec:\n"
                      "  template:\n"
                      "    spec:\n"
                      "      containers:\n"
                      "        - name: vllm\n"
                      "          args:\n"
                      "            {{- range .List }}\n"
                      "            - {{ . | quote }}\n"
                      "            {{- end }}\n"
                      "          ports:\n"
                      "            - containerPort: {{ \"app_port\" | getPort }}\n"
                      "          items: {{- toYaml .Items | nindent 12 }}\n"
                      "          n: {{ toYaml .N }}\n";
    struct errinfo err = {.line = 0};
    const char *out = run(src, &err);
    if (!out)
        fprintf(stderr, "%s\n", err.msg);
    assert_non_null(out);
    struct errinfo ye;
    json_t *v = yaml_parse(out, strlen(out), "<out>", &ye);
    if (!v)
        fprintf(stderr, "%s\n%s\n", out, ye.msg);
    assert_non_null(v);
    json_t *d = data();
    assert_true(json_equal(json_object_get(json_object_get(v, "metadata"), "labels"),
                           json_object_get(d, "Labels")));
    json_t *c = json_array_get(
        json_object_get(json_object_get(json_object_get(json_object_get(v, "spec"), "template"),
                                        "spec"),
                        "containers"),
        0);
    assert_true(json_equal(json_object_get(c, "args"), json_object_get(d, "List")));
    assert_true(json_equal(json_object_get(c, "items"), json_object_get(d, "Items")));
    assert_int_equal(json_integer_value(json_object_get(c, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(c, "ports"), 0), "containerPort")),
                     8000);
    json_decref(d);
    json_decref(v);
    ok("{{ toYaml \"true\" }}|{{ toYaml .Nil }}|{{ toYaml .None }}", "\"true\"|null|[]");
}

static void test_errors(void **state)
{
    (void)state;
    bad("a\n  {{ .Foo }}", "unknown variable .Foo", 2, 6);
    bad("{{ .Nested.Missing.X }}", "unknown variable .Nested.Missing", 1, 11);
    bad("{{ $n := .Nested }}\n{{ $n.Nope }}", "unknown variable $n.Nope", 2, 6);
    bad("{{ .ModelName.X }}", "can't evaluate field X in type string", 1, 14);
    bad("x\n{{ bar 1 }}", "function \"bar\" not defined", 2, 4);
    bad("{{ .N | nope }}", "function \"nope\" not defined", 1, 9);
    bad("ab\n cd {{ .N ", "unclosed action", 2, 5);
    bad("{{ .N }}{{ end }}", "unexpected {{end}}", 1, 9);
    bad("x{{ else }}", "unexpected {{else}}", 1, 2);
    bad("{{ if .T }}a{{ else }}b{{ else }}c{{ end }}", "expected {{end}} for {{if}}, found {{else}}",
        1, 24);
    bad("line\n  {{ if .T }}\n{{ range .List }}{{ end }}", "unclosed {{if}}: missing {{end}}", 2,
        3);
    bad("{{ range .List }}", "unclosed {{range}}: missing {{end}}", 1, 1);
    bad("{{ trunc 3 }}", "wrong number of args for trunc: want 2, got 1", 1, 4);
    bad("{{ \"a\" | replace \"x\" }}", "wrong number of args for replace: want 3, got 2", 1, 10);
    bad("{{ not 1 2 }}", "wrong number of args for not: want 1, got 2", 1, 4);
    bad("{{ trunc \"3\" .ModelName }}", "error calling trunc: argument 1: expected int, got string",
        1, 4);
    bad("{{ lower 1 }}", "error calling lower: argument 1: expected string", 1, 4);
    bad("{{ \"nope\" | getPort }}", "error calling getPort: port \"nope\" not defined", 1, 13);
    bad("{{ $x }}", "undefined variable \"$x\"", 1, 4);
    bad("{{ if .T }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \"$y\"", 1, 37);
    bad("{{ \"abc }}", "unterminated quoted string", 1, 4);
    bad("{{ \"\\q\" }}", "invalid escape", 1, 5);
    bad("{{ 12ab }}", "bad number syntax", 1, 4);
    bad("{{ .N | .T }}", "non executable command in pipeline stage 2", 1, 9);
    bad("{{ .N 1 }}", "can't give argument to non-function .N", 1, 4);
    bad("{{ }}", "missing value for command", 1, 4);
    bad("{{ (len .List }}", "unclosed left paren", 1, 15);
    bad("{{ break }}", "{{break}} outside {{range}}", 1, 1);
    bad("{{ define \"x\" }}", "{{define}} is not supported", 1, 4);
    bad("{{ range .N }}{{ end }}", "range can't iterate over int", 1, 10);
    bad("{{ index .List 5 }}", "index out of range: 5", 1, 4);
    bad("{{ eq .List 1 }}", "non-comparable type", 1, 4);
    bad("{{/* open ", "unclosed comment", 1, 1);
    bad("\xc3\xa9\xc3\xa9{{ .Nope }}", "unknown variable .Nope", 1, 6); /* columns in characters */
    bad("{{ nil | len }}", "nil is not a command", 1, 4);
    bad("{{ @ }}", "unexpected character '@' in action", 1, 4);
}

static void test_limits(void **state)
{
    (void)state;
    json_t *d = data();
    struct errinfo err;
    const char *src = "{{ range .List }}{{ range $.List }}{{ range $.List }}xxxxxxxxxx{{ end }}"
                      "{{ end }}{{ end }}";
    struct tmpl *t = tmpl_parse(src, strlen(src), "t", NULL, 0, &err);
    assert_non_null(t);
    struct buf b = BUF_INIT;
    struct tmpl_limits lim = {.max_bytes = 100};
    assert_false(tmpl_exec(t, d, &lim, &b, &err));
    assert_non_null(strstr(err.msg, "output exceeds the limit of 100 bytes"));
    assert_int_equal(b.len, 0);
    lim = (struct tmpl_limits){.max_steps = 20};
    assert_false(tmpl_exec(t, d, &lim, &b, &err));
    assert_non_null(strstr(err.msg, "step limit"));
    assert_true(tmpl_exec(t, d, NULL, &b, &err));
    assert_int_equal(b.len, 270);
    tmpl_free(t);
    /* A replace that would blow up is refused before it is built. */
    src = "{{ $s := \"aaaaaaaaaaaaaaaa\" }}{{ $s = replace \"a\" $s $s }}{{ $s = replace \"a\" $s $s }}"
          "{{ $s = replace \"a\" $s $s }}{{ $s = replace \"a\" $s $s }}{{ len $s }}";
    t = tmpl_parse(src, strlen(src), "t", NULL, 0, &err);
    assert_non_null(t);
    lim = (struct tmpl_limits){.max_bytes = 1 << 20};
    assert_false(tmpl_exec(t, d, &lim, &b, &err));
    assert_non_null(strstr(err.msg, "error calling replace: result of"));
    tmpl_free(t);
    /* Nesting is bounded at parse time. */
    struct buf deep = BUF_INIT;
    for (int i = 0; i < 150; i++)
        buf_append_str(&deep, "{{ if .T }}");
    assert_null(tmpl_parse(deep.data, deep.len, "t", NULL, 0, &err));
    assert_non_null(strstr(err.msg, "nested too deeply"));
    buf_reset(&deep);
    buf_append_str(&deep, "{{ ");
    for (int i = 0; i < 150; i++)
        buf_append_str(&deep, "(");
    assert_null(tmpl_parse(deep.data, deep.len, "t", NULL, 0, &err));
    buf_free(&deep);
    buf_free(&b);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),       cmocka_unit_test(test_trim_comments),
        cmocka_unit_test(test_control),      cmocka_unit_test(test_variables_pipelines),
        cmocka_unit_test(test_functions),    cmocka_unit_test(test_caller_funcs),
        cmocka_unit_test(test_toyaml),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

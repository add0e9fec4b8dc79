/* Unit tests for base/prom: a realistic vLLM exposition, label escapes, number forms,
 * line endings, every error, and a round trip through our own registry's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/metrics.h"
#include "base/prom.h"

/* Every sample flattened to one line: name{l="v",...} value, label values re-escaped so
 * a test can compare the whole parse as text. */
struct collect {
    struct buf text;
    long n;
};

static void on_sample(const struct prom_sample *s, void *ctx)
{
    struct collect *c = ctx;
    c->n++;
    buf_append(&c->text, s->name, s->name_len);
    if (s->n_labels) {
        buf_append_char(&c->text, '{');
        for (size_t i = 0; i < s->n_labels; i++) {
            const struct prom_label *l = &s->labels[i];
            if (i)
                buf_append_char(&c->text, ',');
            buf_append(&c->text, l->name, l->name_len);
            buf_append_str(&c->text, "=\"");
            for (size_t k = 0; k < l->value_len; k++) {
                char ch = l->value[k];
                if (ch == '\n')
                    buf_append_str(&c->text, "\\n");
                else if (ch == '"' || ch == '\\')
                    buf_printf(&c->text, "\\%c", ch);
                else
                    buf_append_char(&c->text, ch);
            }
            buf_append_char(&c->text, '"');
        }
        buf_append_char(&c->text, '}');
    }
    buf_printf(&c->text, " %.17g\n", s->value);
}

/* Parses text (with an exact length: no NUL is read) and returns the flattened samples. */
static char *parse_ok(const char *text, long want_n)
{
    static struct collect c;
    buf_free(&c.text);
    c.n = 0;
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1); /* no terminator: ASan catches any over-read */
    memcpy(copy, text, len);
    char err[128] = "";
    long n = prom_parse(copy, len, on_sample, &c, err, sizeof err);
    free(copy);
    if (n < 0)
        fail_msg("unexpected error: %s", err);
    assert_int_equal(n, want_n);
    assert_int_equal(c.n, want_n);
    return c.text.data ? c.text.data : "";
}

static void assert_parse_error(const char *text, const char *want_err)
{
    struct collect c = {BUF_INIT, 0};
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    char err[128] = "";
    long n = prom_parse(copy, len, on_sample, &c, err, sizeof err);
    free(copy);
    buf_free(&c.text);
    if (n != -1)
        fail_msg("expected '%s', parsed %ld samples from <%s>", want_err, n, text);
    assert_string_equal(err, want_err);
}

static const char vllm_text[] =
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
    "3.0\n"
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
    "12.0\n"
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
    "0.4234375\n"
    "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
    "# TYPE vllm:prompt_tokens_total counter\n"
    "vllm:prompt_tokens_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
    "1.234567e+06\n"
    "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
    "# TYPE vllm:time_to_first_token_seconds histogram\n"
    "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\","
    "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.0\n"
    "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.5\","
    "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 17.0\n"
    "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\","
    "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 20.0\n"
    "vllm:time_to_first_token_seconds_count{engine=\"0\","
    "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 20.0\n"
    "vllm:time_to_first_token_seconds_sum{engine=\"0\","
    "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 6.125\n"
    "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
    "# TYPE vllm:cache_config_info gauge\n"
    "vllm:cache_config_info{block_size=\"16\",cache_dtype=\"auto\",enable_prefix_caching="
    "\"True\",gpu_memory_utilization=\"0.9\",num_gpu_blocks=\"27053\",swap_space=\"4\"} 1.0\n"
    "# HELP python_gc_objects_collected_total Objects collected during gc\n"
    "# TYPE python_gc_objects_collected_total counter\n"
    "python_gc_objects_collected_total{generation=\"0\"} 12345.0\n"
    "process_start_time_seconds 1.73e+09\n";

static double got_waiting, got_usage, got_block_size;
static int seen_info;

static void on_vllm(const struct prom_sample *s, void *ctx)
{
    (void)ctx;
    size_t len;
    if (prom_name_is(s, "vllm:num_requests_waiting")) {
        const char *m = prom_label(s, "model_name", &len);
        assert_non_null(m);
        assert_int_equal(len, strlen("meta-llama/Llama-3.1-8B-Instruct"));
        assert_memory_equal(m, "meta-llama/Llama-3.1-8B-Instruct", len);
        got_waiting = s->value;
    } else if (prom_name_is(s, "vllm:kv_cache_usage_perc")) {
        got_usage = s->value;
    } else if (prom_name_is(s, "vllm:cache_config_info")) {
        seen_info++;
        assert_int_equal(s->n_labels, 6);
        const char *b = prom_label(s, "block_size", &len);
        assert_non_null(b);
        assert_int_equal(len, 2);
        got_block_size = (b[0] - '0') * 10 + (b[1] - '0');
        assert_null(prom_label(s, "nope", &len));
        assert_int_equal(len, 0);
        assert_true(s->value == 1.0);
    }
    /* Prefixes are not matches. */
    assert_false(prom_name_is(s, "vllm:num_requests"));
    assert_false(prom_name_is(s, "vllm:num_requests_waiting_more"));
}

static void test_vllm_exposition(void **state)
{
    (void)state;
    char err[128];
    size_t len = sizeof vllm_text - 1;
    char *copy = malloc(len);
    memcpy(copy, vllm_text, len);
    long n = prom_parse(copy, len, on_vllm, NULL, err, sizeof err);
    free(copy);
    assert_int_equal(n, 12);
    assert_true(got_waiting == 12.0);
    assert_true(got_usage == 0.4234375);
    assert_true(got_block_size == 16.0);
    assert_int_equal(seen_info, 1);

    const char *flat = parse_ok(vllm_text, 12);
    assert_non_null(strstr(flat, "vllm:prompt_tokens_total{engine=\"0\",model_name=\"meta-llama/"
                                 "Llama-3.1-8B-Instruct\"} 1234567\n"));
    assert_non_null(strstr(flat, "vllm:time_to_first_token_seconds_bucket{engine=\"0\","
                                 "le=\"+Inf\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
                                 "20\n"));
    assert_non_null(strstr(flat, "process_start_time_seconds 1730000000\n"));
}

static void test_syntax_variants(void **state)
{
    (void)state;
    /* Blank lines, comments anywhere, \r\n, blanks around tokens, trailing comma, empty
     * label set, timestamps, and a final line with no newline. */
    assert_string_equal(parse_ok("\n"
                                 "   \n"
                                 "# a comment\r\n"
                                 "  #indented comment\n"
                                 "a 1\r\n"
                                 "b{} 2\n"
                                 "c { x = \"1\" , y=\"2\", } 3 1700000000000\n"
                                 "d{x=\"1\",}\t4\t-5\r\n"
                                 "e:f:g_h 5",
                                 5),
                        "a 1\nb 2\nc{x=\"1\",y=\"2\"} 3\nd{x=\"1\"} 4\ne:f:g_h 5\n");
    /* Numbers: special values in the forms Go accepts, scientific notation. */
    assert_string_equal(parse_ok("a +Inf\nb -Inf\nc inf\nd 1e3\ne -2.5E-3\nf .5\ng +7\n", 7),
                        "a inf\nb -inf\nc inf\nd 1000\ne -0.0025000000000000001\nf 0.5\ng 7\n");
    static struct collect c;
    char err[64];
    assert_int_equal(prom_parse("x NaN", 5, on_sample, &c, err, sizeof err), 1);
    assert_non_null(strstr(c.text.data, "nan"));
    buf_free(&c.text);
    /* Empty input, only comments, a NULL callback (count only), NULL err. */
    assert_int_equal(prom_parse("", 0, on_sample, &c, err, sizeof err), 0);
    assert_int_equal(prom_parse(NULL, 0, on_sample, &c, err, sizeof err), 0);
    assert_int_equal(prom_parse("# only\n# comments", 17, on_sample, &c, err, sizeof err), 0);
    assert_int_equal(prom_parse("a 1\nb 2\n", 8, NULL, NULL, NULL, 0), 2);
    assert_int_equal(prom_parse("a 1\nb\n", 6, NULL, NULL, NULL, 0), -1);
    /* The length is respected: bytes after it are not part of the input. */
    assert_int_equal(prom_parse("a 1\nb 2\n", 4, NULL, NULL, err, sizeof err), 1);
    assert_int_equal(prom_parse("a 12", 3, on_sample, &c, err, sizeof err), 1);
    assert_string_equal(c.text.data, "a 1\n");
    buf_free(&c.text);
}

static void test_escapes(void **state)
{
    (void)state;
    assert_string_equal(parse_ok("m{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\",nl=\"a\\nb\","
                                 "plain=\"x}y,z=\\\"\"} 1\n",
                                 1),
                        "m{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\",nl=\"a\\nb\","
                        "plain=\"x}y,z=\\\"\"} 1\n");
    /* Unescaped values really are unescaped. */
    static const char text[] = "m{a=\"x\\\\y\\\"z\\n\"} 1";
    struct collect c = {BUF_INIT, 0};
    assert_int_equal(prom_parse(text, sizeof text - 1, on_sample, &c, NULL, 0), 1);
    buf_free(&c.text);

    /* Escaped values fill the scratch area; a sample past it is refused... */
    struct buf big = BUF_INIT;
    buf_append_str(&big, "m{a=\"");
    for (int i = 0; i < 5000; i++)
        buf_append_str(&big, "\\n");
    buf_append_str(&big, "\"} 1\n");
    char err[64];
    assert_int_equal(prom_parse(big.data, big.len, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "line 1: label value too long");
    /* ...but long values without escapes point into the input and have no limit. */
    buf_reset(&big);
    buf_append_str(&big, "m{a=\"");
    for (int i = 0; i < 5000; i++)
        buf_append_str(&big, "xy");
    buf_append_str(&big, "\"} 1\n");
    assert_int_equal(prom_parse(big.data, big.len, NULL, NULL, err, sizeof err), 1);
    buf_free(&big);
}

static void test_label_limit(void **state)
{
    (void)state;
    struct buf t = BUF_INIT;
    buf_append_str(&t, "m{");
    for (int i = 0; i < PROM_MAX_LABELS; i++)
        buf_printf(&t, "l%d=\"%d\",", i, i);
    buf_append_str(&t, "} 1\n");
    char err[64];
    assert_int_equal(prom_parse(t.data, t.len, NULL, NULL, err, sizeof err), 1);
    buf_reset(&t);
    buf_append_str(&t, "ok 1\nm{");
    for (int i = 0; i <= PROM_MAX_LABELS; i++)
        buf_printf(&t, "l%d=\"%d\",", i, i);
    buf_append_str(&t, "} 1\n");
    assert_int_equal(prom_parse(t.data, t.len, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "line 2: too many labels");
    buf_free(&t);
}

static void test_errors(void **state)
{
    (void)state;
    assert_parse_error("a 1\n\n9bad 1\n", "line 3: invalid metric name");
    assert_parse_error("{a=\"1\"} 1", "line 1: invalid metric name");
    assert_parse_error("a-b 1", "line 1: invalid value");
    assert_parse_error("a", "line 1: missing value");
    assert_parse_error("a{x=\"1\"}", "line 1: missing value");
    assert_parse_error("a{x=\"1\"}\r\n", "line 1: missing value");
    assert_parse_error("a one", "line 1: invalid value");
    assert_parse_error("a 1.2.3", "line 1: invalid value");
    assert_parse_error("a 0x10", "line 1: invalid value");
    assert_parse_error("a nan(1)", "line 1: invalid value");
    assert_parse_error("a e", "line 1: invalid value");
    assert_parse_error("a 1 12x", "line 1: invalid timestamp");
    assert_parse_error("a 1 -", "line 1: invalid timestamp");
    assert_parse_error("a 1 123 4", "line 1: unexpected text after timestamp");
    assert_parse_error("a{", "line 1: unterminated label set");
    assert_parse_error("a{x=\"1\"", "line 1: unterminated label set");
    assert_parse_error("a{x=\"1\" 1", "line 1: expected ',' or '}' after label value");
    assert_parse_error("a{x=\"1\n\"} 1", "line 1: unterminated label value");
    assert_parse_error("a{x=\"1\\", "line 1: unterminated label value");
    assert_parse_error("a{x=\"\\t\"} 1", "line 1: invalid escape in label value");
    assert_parse_error("a{x} 1", "line 1: expected '=' after label name");
    assert_parse_error("a{x=1} 1", "line 1: expected '\"' to start label value");
    assert_parse_error("a{x:y=\"1\"} 1", "line 1: expected '=' after label name");
    assert_parse_error("a{1x=\"1\"} 1", "line 1: invalid label name");
    assert_parse_error("a{,} 1", "line 1: invalid label name");
    assert_parse_error("a{x=\"1\",,} 1", "line 1: invalid label name");
    /* Samples before the bad line were delivered; the error names the line. */
    struct collect c = {BUF_INIT, 0};
    char err[64];
    assert_int_equal(prom_parse("a 1\r\nb 2\r\nc ?\r\nd 4\r\n", 20, on_sample, &c, err, sizeof err),
                     -1);
    assert_int_equal(c.n, 2);
    assert_string_equal(err, "line 3: invalid value");
    buf_free(&c.text);
    /* A small error buffer truncates, never overflows. */
    char tiny[8];
    assert_int_equal(prom_parse("bad", 3, NULL, NULL, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "line 1:");
}

/* Our registry's output parses back to the values that were set. */
struct expect {
    const char *name;
    const char *label; /* NULL: none checked */
    const char *label_value;
    double value;
    int seen;
};

static struct expect expects[] = {
    {"tandem:requests_total", "model", "m1", 42, 0},
    {"tandem:requests_total", "model", "we\"ird\\na\nme", 7, 0},
    {"tandem:queue_depth", NULL, NULL, -3.25, 0},
    {"tandem:tiny", NULL, NULL, 1.0000000000000002e-300, 0},
    {"tandem:latency_seconds_bucket", "le", "0.1", 1, 0},
    {"tandem:latency_seconds_bucket", "le", "1", 2, 0},
    {"tandem:latency_seconds_bucket", "le", "+Inf", 3, 0},
    {"tandem:latency_seconds_sum", NULL, NULL, 0.05 + 0.5 + 7, 0},
    {"tandem:latency_seconds_count", NULL, NULL, 3, 0},
};

static void on_registry(const struct prom_sample *s, void *ctx)
{
    int *total = ctx;
    (*total)++;
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++) {
        struct expect *e = &expects[i];
        if (!prom_name_is(s, e->name))
            continue;
        if (e->label) {
            size_t len;
            const char *v = prom_label(s, e->label, &len);
            if (!v || len != strlen(e->label_value) || memcmp(v, e->label_value, len) != 0)
                continue;
        }
        assert_true(s->value == e->value);
        e->seen++;
    }
}

static void test_registry_round_trip(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    const char *model[] = {"model"};
    struct metrics_family *req =
        metrics_family_new(r, METRICS_COUNTER, "tandem:requests_total",
                           "Requests.\nWith \\ odd help", model, 1, NULL, 0);
    const char *m1[] = {"m1"}, *m2[] = {"we\"ird\\na\nme"};
    metrics_counter_add(metrics_series_get(req, m1), 42);
    metrics_counter_add(metrics_series_get(req, m2), 7);
    struct metrics_family *q =
        metrics_family_new(r, METRICS_GAUGE, "tandem:queue_depth", "Depth.", NULL, 0, NULL, 0);
    metrics_gauge_set(metrics_series0(q), -3.25);
    struct metrics_family *tiny =
        metrics_family_new(r, METRICS_GAUGE, "tandem:tiny", NULL, NULL, 0, NULL, 0);
    metrics_gauge_set(metrics_series0(tiny), 1.0000000000000002e-300);
    const double buckets[] = {0.1, 1};
    struct metrics_family *h = metrics_family_new(r, METRICS_HISTOGRAM, "tandem:latency_seconds",
                                                  "Latency.", NULL, 0, buckets, 2);
    struct metrics_series *hs = metrics_series0(h);
    metrics_histogram_observe(hs, 0.05);
    metrics_histogram_observe(hs, 0.5);
    metrics_histogram_observe(hs, 7);

    struct buf out = BUF_INIT;
    metrics_render(r, &out);
    int total = 0;
    char err[128];
    long n = prom_parse(out.data, out.len, on_registry, &total, err, sizeof err);
    if (n < 0)
        fail_msg("%s in:\n%s", err, out.data);
    assert_int_equal(n, 9);
    assert_int_equal(total, 9);
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
        if (expects[i].seen != 1)
            fail_msg("%s %s: seen %d times", expects[i].name,
                     expects[i].label_value ? expects[i].label_value : "", expects[i].seen);
    buf_free(&out);
    metrics_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_exposition), cmocka_unit_test(test_syntax_variants),
        cmocka_unit_test(test_escapes),         cmocka_unit_test(test_label_limit),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_registry_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/bench/dataset.c: exact token lengths, length ranges, shared-prefix
 * and prefix_repetition structure, concatenation safety, ShareGPT parsing and filters,
 * determinism, validation messages, speed of llm-d's full shared-prefix workload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/bench.h"
#include "tokenize/tokenize.h"

static struct bench_dataset_opts opts_for(const char *name)
{
    struct bench_dataset_opts o;
    bench_dataset_opts_defaults(&o);
    o.name = name;
    return o;
}

static void load_ok(const struct bench_dataset_opts *o, struct bench_dataset *d)
{
    char err[512] = "";
    if (!bench_dataset_load(o, d, err, sizeof err))
        fail_msg("load %s failed: %s", o->name, err);
}

/* Loads, expects failure, and checks the message contains want. */
static void expect_err(const struct bench_dataset_opts *o, const char *want)
{
    struct bench_dataset d = {(struct bench_prompt *)1, 7};
    char err[512] = "";
    assert_false(bench_dataset_load(o, &d, err, sizeof err));
    assert_null(d.prompts);
    assert_int_equal(d.n, 0);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

/* Byte offset where token tok starts (== len when tok == token count). */
static size_t tok_offset(const char *text, size_t len, size_t tok)
{
    struct tok_result r = {0};
    tok_encode(text, len, TOK_DEFAULT_VOCAB, &r);
    size_t off = tok < r.n ? r.pieces[tok].offset : len;
    tok_result_free(&r);
    return off;
}

static void check_prompt_basics(const struct bench_prompt *p)
{
    assert_non_null(p->text);
    assert_int_equal(strlen(p->text), p->text_len);
    assert_int_equal(tok_count(p->text, p->text_len), p->input_tokens);
}

static void test_defaults(void **state)
{
    (void)state;
    struct bench_dataset_opts o;
    bench_dataset_opts_defaults(&o);
    assert_string_equal(o.name, "random");
    assert_int_equal(o.random_input_len, 1024);
    assert_int_equal(o.random_output_len, 128);
    assert_int_equal(o.random_prefix_len, 0);
    assert_true(o.random_range_ratio == 0.0);
    assert_int_equal(o.gsp_num_groups, 150);
    assert_int_equal(o.gsp_prompts_per_group, 5);
    assert_int_equal(o.gsp_system_prompt_len, 6000);
    assert_int_equal(o.gsp_question_len, 1200);
    assert_int_equal(o.gsp_output_len, 1000);
    assert_int_equal(o.prefix_repetition_prefix_len, 256);
    assert_int_equal(o.prefix_repetition_suffix_len, 256);
    assert_int_equal(o.prefix_repetition_num_prefixes, 10);
    assert_int_equal(o.prefix_repetition_output_len, 128);
    assert_int_equal(o.sharegpt_output_len, 0);
}

static void test_random_exact(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("random");
    o.num_prompts = 50;
    o.random_input_len = 100;
    o.random_output_len = 20;
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 50);
    for (size_t i = 0; i < d.n; i++) {
        check_prompt_basics(&d.prompts[i]);
        assert_int_equal(d.prompts[i].input_tokens, 100);
        assert_int_equal(d.prompts[i].output_tokens, 20);
        assert_int_equal(d.prompts[i].group, 0);
    }
    /* Prompts differ from one another. */
    assert_true(strcmp(d.prompts[0].text, d.prompts[1].text) != 0);
    bench_dataset_free(&d);
    assert_null(d.prompts);
    assert_int_equal(d.n, 0);

    /* Every small length is exact too (the last-word overshoot path). */
    for (long long len = 1; len <= 40; len++) {
        o.num_prompts = 5;
        o.random_input_len = len;
        o.random_output_len = 1;
        load_ok(&o, &d);
        for (size_t i = 0; i < d.n; i++) {
            check_prompt_basics(&d.prompts[i]);
            assert_int_equal(d.prompts[i].input_tokens, len);
        }
        bench_dataset_free(&d);
    }
}

static void test_random_range(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("random");
    o.num_prompts = 200;
    o.random_input_len = 100;
    o.random_output_len = 20;
    o.random_range_ratio = 0.5;
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 200);
    uint32_t in_min = UINT32_MAX, in_max = 0, out_min = UINT32_MAX, out_max = 0;
    for (size_t i = 0; i < d.n; i++) {
        const struct bench_prompt *p = &d.prompts[i];
        check_prompt_basics(p);
        assert_in_range(p->input_tokens, 50, 150);
        assert_in_range(p->output_tokens, 10, 30);
        in_min = p->input_tokens < in_min ? p->input_tokens : in_min;
        in_max = p->input_tokens > in_max ? p->input_tokens : in_max;
        out_min = p->output_tokens < out_min ? p->output_tokens : out_min;
        out_max = p->output_tokens > out_max ? p->output_tokens : out_max;
    }
    /* Spread over the range, not all equal. */
    assert_true(in_max - in_min > 50);
    assert_true(out_max - out_min > 10);
    bench_dataset_free(&d);

    /* Output lengths never reach 0 (vLLM clamps the low end to 1). */
    o.random_output_len = 1;
    o.random_range_ratio = 0.9;
    load_ok(&o, &d);
    for (size_t i = 0; i < d.n; i++)
        assert_in_range(d.prompts[i].output_tokens, 1, 2);
    bench_dataset_free(&d);
}

static void test_random_prefix(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("random");
    o.num_prompts = 20;
    o.random_input_len = 64;
    o.random_output_len = 8;
    o.random_prefix_len = 32;
    struct bench_dataset d;
    load_ok(&o, &d);
    const struct bench_prompt *p0 = &d.prompts[0];
    size_t pre = tok_offset(p0->text, p0->text_len, 32);
    assert_true(pre > 0);
    /* The prefix alone is exactly 32 tokens and splits cleanly from the rest. */
    assert_int_equal(tok_count(p0->text, pre), 32);
    assert_int_equal(tok_count(p0->text + pre, p0->text_len - pre), 64);
    for (size_t i = 0; i < d.n; i++) {
        check_prompt_basics(&d.prompts[i]);
        assert_int_equal(d.prompts[i].input_tokens, 96); /* prefix on top of the input */
        assert_memory_equal(d.prompts[i].text, p0->text, pre);
    }
    /* After the prefix, prompts differ. */
    assert_true(strcmp(d.prompts[0].text + pre, d.prompts[1].text + pre) != 0);
    bench_dataset_free(&d);
}

static void test_shared_prefix_structure(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("shared-prefix");
    o.num_prompts = 0; /* all */
    o.gsp_num_groups = 4;
    o.gsp_prompts_per_group = 3;
    o.gsp_system_prompt_len = 50;
    o.gsp_question_len = 20;
    o.gsp_output_len = 7;
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 12);
    size_t per_group[4] = {0};
    const struct bench_prompt *first[4] = {0};
    bool sorted = true;
    for (size_t i = 0; i < d.n; i++) {
        const struct bench_prompt *p = &d.prompts[i];
        check_prompt_basics(p);
        assert_int_equal(p->input_tokens, 70);
        assert_int_equal(p->output_tokens, 7);
        assert_in_range(p->group, 0, 3);
        per_group[p->group]++;
        if (i && p->group < d.prompts[i - 1].group)
            sorted = false;
        /* Concatenation is safe: system + question tokens add up. */
        size_t sys = tok_offset(p->text, p->text_len, 50);
        assert_int_equal(tok_count(p->text, sys) + tok_count(p->text + sys, p->text_len - sys),
                         tok_count(p->text, p->text_len));
        assert_int_equal(tok_count(p->text, sys), 50);
        if (!first[p->group]) {
            first[p->group] = p;
        } else {
            /* Same group: identical system prompt; different question. */
            const struct bench_prompt *f = first[p->group];
            size_t fsys = tok_offset(f->text, f->text_len, 50);
            assert_int_equal(sys, fsys);
            assert_memory_equal(p->text, f->text, sys);
            assert_true(strcmp(p->text + sys, f->text + sys) != 0);
        }
    }
    for (size_t g = 0; g < 4; g++)
        assert_int_equal(per_group[g], 3);
    assert_false(sorted); /* shuffled: groups interleave */
    /* Different groups: different system prompts. */
    for (size_t a = 0; a < 4; a++)
        for (size_t b = a + 1; b < 4; b++) {
            size_t la = tok_offset(first[a]->text, first[a]->text_len, 50);
            size_t lb = tok_offset(first[b]->text, first[b]->text_len, 50);
            assert_true(la != lb || memcmp(first[a]->text, first[b]->text, la) != 0);
        }

    /* num_prompts caps: the first N of the same shuffled list. */
    struct bench_dataset c;
    o.num_prompts = 5;
    load_ok(&o, &c);
    assert_int_equal(c.n, 5);
    for (size_t i = 0; i < c.n; i++) {
        assert_string_equal(c.prompts[i].text, d.prompts[i].text);
        assert_int_equal(c.prompts[i].group, d.prompts[i].group);
    }
    bench_dataset_free(&c);
    /* More than the workload holds: all of it. */
    o.num_prompts = 100;
    load_ok(&o, &c);
    assert_int_equal(c.n, 12);
    bench_dataset_free(&c);
    bench_dataset_free(&d);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_shared_prefix_llmd_full(void **state)
{
    (void)state;
    /* llm-d's scheduling workload: the defaults, 750 prompts of 7,200 tokens. */
    struct bench_dataset_opts o = opts_for("shared-prefix");
    o.num_prompts = 0;
    struct bench_dataset d;
    double t0 = now_s();
    load_ok(&o, &d);
    double dt = now_s() - t0;
    print_message("shared-prefix 150x5 (6000+1200 tokens): %.3f s\n", dt);
    assert_int_equal(d.n, 750);
    size_t groups[150] = {0};
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.prompts[i].input_tokens, 7200);
        assert_int_equal(d.prompts[i].output_tokens, 1000);
        groups[d.prompts[i].group]++;
    }
    for (size_t g = 0; g < 150; g++)
        assert_int_equal(groups[g], 5);
    /* Generous: sanitizers and -O0 slow this a lot; -O2 is far faster. */
    assert_true(dt < 10.0);
    bench_dataset_free(&d);
}

static void test_prefix_repetition(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("prefix_repetition");
    o.num_prompts = 10;
    o.prefix_repetition_prefix_len = 40;
    o.prefix_repetition_suffix_len = 10;
    o.prefix_repetition_num_prefixes = 4;
    o.prefix_repetition_output_len = 9;
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 10);
    size_t count[4] = {0};
    const struct bench_prompt *first[4] = {0};
    for (size_t i = 0; i < d.n; i++) {
        const struct bench_prompt *p = &d.prompts[i];
        check_prompt_basics(p);
        assert_int_equal(p->input_tokens, 50);
        assert_int_equal(p->output_tokens, 9);
        assert_in_range(p->group, 0, 3);
        count[p->group]++;
        size_t pre = tok_offset(p->text, p->text_len, 40);
        assert_int_equal(tok_count(p->text, pre), 40);
        if (!first[p->group])
            first[p->group] = p;
        else
            assert_memory_equal(p->text, first[p->group]->text, pre);
    }
    /* Spread evenly: 10 over 4 prefixes is 3, 3, 2, 2. */
    assert_int_equal(count[0], 3);
    assert_int_equal(count[1], 3);
    assert_int_equal(count[2], 2);
    assert_int_equal(count[3], 2);
    for (size_t a = 0; a < 4; a++)
        for (size_t b = a + 1; b < 4; b++) {
            size_t la = tok_offset(first[a]->text, first[a]->text_len, 40);
            size_t lb = tok_offset(first[b]->text, first[b]->text_len, 40);
            assert_true(la != lb || memcmp(first[a]->text, first[b]->text, la) != 0);
        }
    bench_dataset_free(&d);

    /* vLLM's defaults load too. */
    o = opts_for("prefix_repetition");
    o.num_prompts = 20;
    load_ok(&o, &d);
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.prompts[i].input_tokens, 512);
        assert_int_equal(d.prompts[i].output_tokens, 128);
    }
    bench_dataset_free(&d);
}

/* ---- sharegpt ----------------------------------------------------------------------- */

static char tmp_path[64];

static void write_tmp(const char *content)
{
    strcpy(tmp_path, "/tmp/test_bench_dataset_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
}

/* Loads content as a sharegpt file and expects an error containing "<path>: " + want. */
static void expect_sharegpt_err(const char *content, const char *want)
{
    write_tmp(content);
    struct bench_dataset_opts o = opts_for("sharegpt");
    o.path = tmp_path;
    char full[512];
    snprintf(full, sizeof full, "%s: %s", tmp_path, want);
    expect_err(&o, full);
    unlink(tmp_path);
}

static void test_sharegpt_parse(void **state)
{
    (void)state;
    /* Words of <= 3 letters plus a space are one token each. */
    const char *json =
        "[\n"
        /* 0: valid, from/value */
        " {\"id\":\"a\",\"conversations\":[{\"from\":\"human\",\"value\":\"how are you doing "
        "today\"},{\"from\":\"gpt\",\"value\":\"I am fine and you are too\"},"
        "{\"from\":\"human\",\"value\":\"ok\"}]},\n"
        /* 1: valid, role/content */
        " {\"conversations\":[{\"role\":\"user\",\"content\":\"tell me a joke now "
        "please\"},{\"role\":\"assistant\",\"content\":\"no I will not do it\"}]},\n"
        /* 2: prompt too short (< 4 tokens) */
        " {\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"},{\"from\":\"gpt\","
        "\"value\":\"hello to you my friend\"}]},\n"
        /* 3: one turn only */
        " {\"conversations\":[{\"from\":\"human\",\"value\":\"is it me you are for\"}]},\n"
        /* 4: reply too short (< 4 tokens) */
        " {\"conversations\":[{\"from\":\"human\",\"value\":\"say a word for me now\"},"
        "{\"from\":\"gpt\",\"value\":\"ok\"}]},\n"
        /* 5: starts with the assistant: the first human turn is used */
        " {\"conversations\":[{\"from\":\"gpt\",\"value\":\"hi what do you want\"},"
        "{\"from\":\"human\",\"value\":\"the sum of two and two\"},{\"from\":\"gpt\","
        "\"value\":\"it is four of course\"}]},\n"
        /* 6: human followed by human: skipped */
        " {\"conversations\":[{\"from\":\"human\",\"value\":\"one two six ten\"},"
        "{\"from\":\"human\",\"value\":\"one two six ten\"}]},\n"
        /* 7: empty conversations */
        " {\"conversations\":[]}\n"
        "]\n";
    write_tmp(json);
    struct bench_dataset_opts o = opts_for("sharegpt");
    o.path = tmp_path;
    o.num_prompts = 0; /* all */
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 3);
    bool seen[3] = {false};
    for (size_t i = 0; i < d.n; i++) {
        const struct bench_prompt *p = &d.prompts[i];
        check_prompt_basics(p);
        const char *reply = NULL;
        size_t k = 0;
        if (!strcmp(p->text, "how are you doing today"))
            k = 0, reply = "I am fine and you are too";
        else if (!strcmp(p->text, "tell me a joke now please"))
            k = 1, reply = "no I will not do it";
        else if (!strcmp(p->text, "the sum of two and two"))
            k = 2, reply = "it is four of course";
        else
            fail_msg("unexpected prompt \"%s\"", p->text);
        assert_false(seen[k]);
        seen[k] = true;
        assert_int_equal(p->output_tokens, tok_count(reply, strlen(reply)));
        assert_int_equal(p->group, 0);
    }
    bench_dataset_free(&d);

    /* A fixed output length skips the reply-length filter: entry 4 comes in. */
    o.sharegpt_output_len = 50;
    load_ok(&o, &d);
    assert_int_equal(d.n, 4);
    for (size_t i = 0; i < d.n; i++)
        assert_int_equal(d.prompts[i].output_tokens, 50);
    bench_dataset_free(&d);

    /* num_prompts caps; the seed picks which. */
    o.sharegpt_output_len = 0;
    o.num_prompts = 2;
    load_ok(&o, &d);
    assert_int_equal(d.n, 2);
    struct bench_dataset d2;
    load_ok(&o, &d2);
    for (size_t i = 0; i < d.n; i++)
        assert_string_equal(d.prompts[i].text, d2.prompts[i].text);
    bench_dataset_free(&d2);
    bench_dataset_free(&d);
    unlink(tmp_path);
}

static void test_sharegpt_length_filters(void **state)
{
    (void)state;
    /* A prompt over 1024 tokens, and one whose prompt + reply exceeds 2048. */
    size_t cap = 64 * 1024;
    char *json = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(json + n, cap - n,
                          "[{\"conversations\":[{\"from\":\"human\",\"value\":\"");
    for (int i = 0; i < 1100; i++) /* 1100 tokens */
        n += (size_t)snprintf(json + n, cap - n, "%s", i ? " the" : "the");
    n += (size_t)snprintf(json + n, cap - n,
                          "\"},{\"from\":\"gpt\",\"value\":\"fine fine fine fine\"}]},"
                          "{\"conversations\":[{\"from\":\"human\",\"value\":\"");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(json + n, cap - n, "%s", i ? " the" : "the");
    n += (size_t)snprintf(json + n, cap - n, "\"},{\"from\":\"gpt\",\"value\":\"");
    for (int i = 0; i < 1100; i++)
        n += (size_t)snprintf(json + n, cap - n, "%s", i ? " the" : "the");
    n += (size_t)snprintf(json + n, cap - n,
                          "\"}]},{\"conversations\":[{\"from\":\"human\",\"value\":\"a b c d "
                          "e\"},{\"from\":\"gpt\",\"value\":\"f g h i j\"}]}]");
    assert_true(n < cap);
    write_tmp(json);
    free(json);
    struct bench_dataset_opts o = opts_for("sharegpt");
    o.path = tmp_path;
    struct bench_dataset d;
    load_ok(&o, &d);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.prompts[0].text, "a b c d e");
    assert_int_equal(d.prompts[0].input_tokens, 5);
    assert_int_equal(d.prompts[0].output_tokens, 5);
    bench_dataset_free(&d);
    unlink(tmp_path);
}

static void test_sharegpt_errors(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("sharegpt");
    expect_err(&o, "--dataset-path is required for sharegpt");
    o.path = "/nonexistent/data.json";
    expect_err(&o, "cannot open /nonexistent/data.json: No such file or directory");

    expect_sharegpt_err("[{\"conversations\":[]}, {\"conversations\":\"x\"}]",
                        "entry 1: 'conversations' must be an array");
    expect_sharegpt_err("[{\"id\":1}]", "entry 0: missing 'conversations'");
    expect_sharegpt_err("[1]", "entry 0 must be an object");
    expect_sharegpt_err("{\"conversations\":[]}", "top level must be a JSON array");
    expect_sharegpt_err("[{\"conversations\":[}]", "invalid JSON at line 1 column");
    expect_sharegpt_err("[\n{\"conversations\":[]},\n{,}]", "invalid JSON at line 3");
    expect_sharegpt_err("[{\"conversations\":[{\"from\":\"human\",\"value\":3}]}]",
                        "entry 0: turn 0: 'value' must be a string, got integer");
    expect_sharegpt_err("[{\"conversations\":[{\"from\":\"human\",\"value\":\"a\"},\"x\"]}]",
                        "entry 0: turn 1 must be an object");
    expect_sharegpt_err("[{\"conversations\":[{\"value\":\"a\"}]}]",
                        "entry 0: turn 0: missing 'from'");
    expect_sharegpt_err("[{\"conversations\":[{\"from\":\"human\"}]}]",
                        "entry 0: turn 0: missing 'value'");
    expect_sharegpt_err("[]", "no usable prompts");
    expect_sharegpt_err("[{\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"},"
                        "{\"from\":\"gpt\",\"value\":\"hello to you my friend\"}]}]",
                        "no usable prompts");
}

/* ---- determinism and validation ----------------------------------------------------- */

static bool same(const struct bench_dataset *a, const struct bench_dataset *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct bench_prompt *x = &a->prompts[i], *y = &b->prompts[i];
        if (x->text_len != y->text_len || memcmp(x->text, y->text, x->text_len) != 0 ||
            x->input_tokens != y->input_tokens || x->output_tokens != y->output_tokens ||
            x->group != y->group)
            return false;
    }
    return true;
}

static void test_determinism(void **state)
{
    (void)state;
    const char *names[] = {"random", "shared-prefix", "prefix_repetition"};
    for (size_t k = 0; k < 3; k++) {
        struct bench_dataset_opts o = opts_for(names[k]);
        o.num_prompts = 12;
        o.random_input_len = 64;
        o.random_range_ratio = 0.3;
        o.random_prefix_len = 8;
        o.gsp_num_groups = 3;
        o.gsp_prompts_per_group = 4;
        o.gsp_system_prompt_len = 30;
        o.gsp_question_len = 10;
        o.prefix_repetition_prefix_len = 20;
        o.prefix_repetition_suffix_len = 10;
        o.prefix_repetition_num_prefixes = 3;
        o.seed = 42;
        struct bench_dataset a, b, c;
        load_ok(&o, &a);
        load_ok(&o, &b);
        assert_true(same(&a, &b));
        o.seed = 43;
        load_ok(&o, &c);
        assert_false(same(&a, &c));
        /* Even the first prompt's text changes with the seed. */
        assert_true(strcmp(a.prompts[0].text, c.prompts[0].text) != 0);
        bench_dataset_free(&a);
        bench_dataset_free(&b);
        bench_dataset_free(&c);
    }
}

static void test_sharegpt_seed_shuffle(void **state)
{
    (void)state;
    /* 20 usable entries: different seeds order them differently. */
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json, "[");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"conversations\":[{\"from\":\"human\",\"value\":\"question "
                              "number %d is here\"},{\"from\":\"gpt\",\"value\":\"the answer "
                              "is not known\"}]}",
                              i ? "," : "", i);
    snprintf(json + n, sizeof json - n, "]");
    write_tmp(json);
    struct bench_dataset_opts o = opts_for("sharegpt");
    o.path = tmp_path;
    o.num_prompts = 0;
    struct bench_dataset a, b, c;
    o.seed = 1;
    load_ok(&o, &a);
    load_ok(&o, &b);
    o.seed = 2;
    load_ok(&o, &c);
    assert_int_equal(a.n, 20);
    assert_true(same(&a, &b));
    assert_false(same(&a, &c));
    bench_dataset_free(&a);
    bench_dataset_free(&b);
    bench_dataset_free(&c);
    unlink(tmp_path);
}

static void test_validation(void **state)
{
    (void)state;
    struct bench_dataset_opts o = opts_for("bogus");
    expect_err(&o, "unknown --dataset-name 'bogus'");
    expect_err(&o, "random, shared-prefix, sharegpt, prefix_repetition");

    o = opts_for("random");
    o.random_input_len = 0;
    expect_err(&o, "--random-input-len must be > 0");
    o = opts_for("random");
    o.random_output_len = -3;
    expect_err(&o, "--random-output-len must be > 0");
    o = opts_for("random");
    o.random_prefix_len = -1;
    expect_err(&o, "--random-prefix-len must be >= 0");
    o = opts_for("random");
    o.num_prompts = 0;
    expect_err(&o, "--num-prompts must be > 0");
    o = opts_for("random");
    o.random_range_ratio = 1.0;
    expect_err(&o, "--random-range-ratio must be in [0, 1)");
    o.random_range_ratio = -0.1;
    expect_err(&o, "--random-range-ratio must be in [0, 1)");

    o = opts_for("shared-prefix");
    o.gsp_num_groups = 0;
    expect_err(&o, "--gsp-num-groups must be > 0");
    o = opts_for("shared-prefix");
    o.gsp_prompts_per_group = -1;
    expect_err(&o, "--gsp-prompts-per-group must be > 0");
    o = opts_for("shared-prefix");
    o.gsp_system_prompt_len = 0;
    expect_err(&o, "--gsp-system-prompt-len must be > 0");
    o = opts_for("shared-prefix");
    o.gsp_question_len = 0;
    expect_err(&o, "--gsp-question-len must be > 0");
    o = opts_for("shared-prefix");
    o.gsp_output_len = 0;
    expect_err(&o, "--gsp-output-len must be > 0");
    o = opts_for("shared-prefix");
    o.num_prompts = -5;
    expect_err(&o, "--num-prompts must be >= 0");

    o = opts_for("prefix_repetition");
    o.prefix_repetition_num_prefixes = 0;
    expect_err(&o, "--prefix-repetition-num-prefixes must be > 0");
    o = opts_for("prefix_repetition");
    o.prefix_repetition_prefix_len = 0;
    expect_err(&o, "--prefix-repetition-prefix-len must be > 0");
    o = opts_for("prefix_repetition");
    o.prefix_repetition_suffix_len = -1;
    expect_err(&o, "--prefix-repetition-suffix-len must be > 0");
    o = opts_for("prefix_repetition");
    o.prefix_repetition_output_len = 0;
    expect_err(&o, "--prefix-repetition-output-len must be > 0");

    o = opts_for("sharegpt");
    o.path = "x.json";
    o.sharegpt_output_len = -1;
    expect_err(&o, "--sharegpt-output-len must be >= 0");

    o = opts_for("random");
    o.random_input_len = 2000000000LL;
    expect_err(&o, "--random-input-len must be <=");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_random_exact),
        cmocka_unit_test(test_random_range),
        cmocka_unit_test(test_random_prefix),
        cmocka_unit_test(test_shared_prefix_structure),
        cmocka_unit_test(test_shared_prefix_llmd_full),
        cmocka_unit_test(test_prefix_repetition),
        cmocka_unit_test(test_sharegpt_parse),
        cmocka_unit_test(test_sharegpt_length_filters),
        cmocka_unit_test(test_sharegpt_errors),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_sharegpt_seed_shuffle),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/openai: request parsing, chat rendering, error bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "openai/openai.h"

static bool parse(enum openai_api api, const char *body, struct arena *a,
                  struct openai_request *r, struct openai_error *e)
{
    return openai_request_parse(api, body, strlen(body), a, r, e);
}

static void test_completion_fields(void **state)
{
    struct arena a;
    arena_init(&a, 0);
    struct openai_request r;
    struct openai_error e;
    assert_true(parse(OPENAI_COMPLETIONS,
                      "{\"model\":\"m\",\"prompt\":\"hi there\",\"max_tokens\":7,\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true},\"stop\":\"\\n\",\"seed\":3,"
                      "\"ignore_eos\":true,\"user\":\"u1\",\"logprobs\":2,\"echo\":true}",
                      &a, &r, &e));
    assert_string_equal(r.model, "m");
    assert_int_equal(r.n_prompts, 1);
    assert_memory_equal(r.prompts[0].text, "hi there", 8);
    assert_int_equal(r.max_tokens, 7);
    assert_true(r.stream && r.include_usage && r.ignore_eos && r.echo && r.has_seed);
    assert_int_equal(r.seed, 3);
    assert_int_equal(r.logprobs, 2);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    assert_string_equal(r.user, "u1");
    assert_null(r.kv_transfer_params);
    openai_request_free(&r);
    arena_free(&a);
}

static void test_prompt_forms(void **state)
{
    struct arena a;
    arena_init(&a, 0);
    struct openai_request r;
    struct openai_error e;
    assert_true(parse(OPENAI_COMPLETIONS, "{\"prompt\":[1,2,3]}", &a, &r, &e));
    assert_int_equal(r.n_prompts, 1);
    assert_int_equal(r.prompts[0].n_ids, 3);
    assert_int_equal(r.prompts[0].ids[2], 3);
    assert_null(r.prompts[0].text);
    assert_int_equal(r.max_tokens, -1);
    openai_request_free(&r);
    assert_true(parse(OPENAI_COMPLETIONS, "{\"prompt\":[\"a\",[5,6]]}", &a, &r, &e));
    assert_int_equal(r.n_prompts, 2);
    assert_int_equal(r.prompts[1].n_ids, 2);
    openai_request_free(&r);
    assert_false(parse(OPENAI_COMPLETIONS, "{\"prompt\":[]}", &a, &r, &e));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, "prompt");
    assert_false(parse(OPENAI_COMPLETIONS, "{\"prompt\":[1,-1]}", &a, &r, &e));
    assert_non_null(strstr(e.message, "non-negative"));
    arena_free(&a);
}

static void test_chat_render_and_limits(void **state)
{
    struct arena a;
    arena_init(&a, 0);
    struct openai_request r;
    struct openai_error e;
    assert_true(parse(OPENAI_CHAT,
                      "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
                      "\"content\":[{\"type\":\"text\",\"text\":\"U\"},{\"type\":\"image_url\"}]}],"
                      "\"max_completion_tokens\":9,\"max_tokens\":3,\"logprobs\":true,"
                      "\"top_logprobs\":4}",
                      &a, &r, &e));
    const char *want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                       "<|im_start|>assistant\n";
    assert_int_equal(r.prompts[0].text_len, strlen(want));
    assert_memory_equal(r.prompts[0].text, want, strlen(want));
    assert_int_equal(r.max_tokens, 9); /* max_completion_tokens wins */
    assert_true(r.chat_logprobs);
    assert_int_equal(r.top_logprobs, 4);
    assert_string_equal(r.last_message, "U");
    openai_request_free(&r);
    arena_free(&a);
}

static void test_n_echo_logprob_fields(void **state)
{
    struct arena a;
    arena_init(&a, 0);
    struct openai_request r;
    struct openai_error e;
    /* Defaults: one choice, vLLM's sampling defaults, nothing scored. */
    assert_true(parse(OPENAI_COMPLETIONS, "{\"prompt\":\"x\"}", &a, &r, &e));
    assert_int_equal(r.n, 1);
    assert_true(r.temperature == 1.0 && r.top_p == 1.0);
    assert_int_equal(r.prompt_logprobs, -1);
    assert_false(r.echo_only || r.include_stop_str_in_output);
    openai_request_free(&r);
    /* lm-eval's loglikelihood request: echo without generation, scored with logprobs. */
    assert_true(parse(OPENAI_COMPLETIONS,
                      "{\"prompt\":\"a b\",\"echo\":true,\"max_tokens\":0,\"logprobs\":1,"
                      "\"temperature\":0.0}",
                      &a, &r, &e));
    assert_true(r.echo_only);
    assert_int_equal(r.max_tokens, 0);
    assert_int_equal(r.logprobs, 1);
    assert_int_equal(r.prompt_logprobs, 1); /* vLLM scores the echoed prompt too */
    assert_true(r.temperature == 0.0);
    openai_request_free(&r);
    assert_true(parse(OPENAI_COMPLETIONS,
                      "{\"prompt\":\"x\",\"n\":4,\"best_of\":5,\"prompt_logprobs\":0,"
                      "\"include_stop_str_in_output\":true,\"top_p\":0.5,\"suffix\":null}",
                      &a, &r, &e));
    assert_int_equal(r.n, 4);
    assert_int_equal(r.best_of, 5);
    assert_int_equal(r.prompt_logprobs, 0);
    assert_true(r.include_stop_str_in_output);
    assert_true(r.top_p == 0.5);
    openai_request_free(&r);
    /* n and best_of equal: streamable. */
    assert_true(parse(OPENAI_CHAT,
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"n\":3,"
                      "\"best_of\":3,\"stream\":true,\"logprobs\":true,\"top_logprobs\":20}",
                      &a, &r, &e));
    assert_int_equal(r.n, 3);
    assert_int_equal(r.top_logprobs, 20);
    openai_request_free(&r);
    arena_free(&a);
}

static void test_errors_name_fields(void **state)
{
    struct arena a;
    arena_init(&a, 0);
    struct openai_request r;
    struct openai_error e;
    static const struct {
        enum openai_api api;
        const char *body, *param, *needle;
    } cases[] = {
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":\"a\"}", "max_tokens",
         "'max_tokens' must be an integer, got string"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"n\":0}", "n", "n must be at least 1, got 0."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"n\":1000}", "n", "at most 128"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"stream\":1}", "stream", "boolean"},
        {OPENAI_COMPLETIONS, "{\"model\":5,\"prompt\":\"x\"}", "model", "'model' must be a string"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[\"a\",2]}", "stop", "'stop[1]'"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"kv_transfer_params\":[]}",
         "kv_transfer_params", "an object"},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages",
         "'messages[0].content'"},
        {OPENAI_CHAT, "{\"messages\":{}}", "messages", "non-empty list"},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"logprobs\":true,\"top_logprobs\":50}",
         "top_logprobs", "Requested sample logprobs of 50, which is greater than max allowed: 20"},
        /* vLLM's messages, word for word. */
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_logprobs\":2}", "top_logprobs",
         "when using `top_logprobs`, `logprobs` must be set to true."},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"logprobs\":true,\"top_logprobs\":-3}",
         "top_logprobs", "`top_logprobs` must be a positive value or -1."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":21}", "logprobs",
         "Requested sample logprobs of 21, which is greater than max allowed: 20"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":-1}", "logprobs",
         "Requested sample logprobs of 50257, which is greater than max allowed: 20"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":-2}", "logprobs",
         "`logprobs` must be a positive value or -1."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "suffix",
         "suffix is not currently supported"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"top_p\":0}", "top_p",
         "top_p must be in (0, 1], got 0.0."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"top_p\":1.5}", "top_p",
         "top_p must be in (0, 1], got 1.5."},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":-0.5}", "temperature",
         "temperature must be non-negative, got -0.5."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"n\":3,\"best_of\":2}", "best_of",
         "best_of must be greater than or equal to n, got n=3 and best_of=2."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"best_of\":3,\"stream\":true}", "best_of",
         "best_of must equal n to use output_kind=DELTA"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"prompt_logprobs\":1,\"stream\":true}",
         "prompt_logprobs", "`prompt_logprobs` are not available when `stream=True`."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"prompt_logprobs\":-2}", "prompt_logprobs",
         "`prompt_logprobs` must be a positive value or -1."},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"prompt_logprobs\":25}", "prompt_logprobs",
         "Requested prompt logprobs of 25, which is greater than max allowed: 20"},
        {OPENAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens",
         "max_tokens must be at least 1, got 0."},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0,\"echo\":true}",
         "max_tokens", "must be at least 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_false(parse(cases[i].api, cases[i].body, &a, &r, &e));
        assert_int_equal(e.status, 400);
        assert_string_equal(e.param, cases[i].param);
        if (!strstr(e.message, cases[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, e.message, cases[i].needle);
    }
    assert_false(parse(OPENAI_COMPLETIONS, "{\"prompt\":", &a, &r, &e));
    assert_non_null(strstr(e.message, "invalid JSON at line 1"));
    arena_free(&a);
}

static void test_error_body(void **state)
{
    struct openai_error e;
    openai_error_set(&e, 404, "model", "The model `%s` does not exist.", "x\"y");
    struct buf b = BUF_INIT;
    openai_error_body(&b, &e);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"The model `x\\\"y` does not exist.\","
                                "\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}");
    buf_free(&b);
    enum openai_api api;
    assert_true(openai_api_from_path("/v1/chat/completions", &api));
    assert_int_equal(api, OPENAI_CHAT);
    assert_false(openai_api_from_path("/v1/models", &api));
}

static void test_route_table(void **state)
{
    const struct openai_route_info *r = openai_route_find("POST", "/v1/chat/completions");
    assert_non_null(r);
    assert_int_equal(r->route, OPENAI_ROUTE_CHAT);
    assert_true(r->generation);
    r = openai_route_find("POST", "/v1/responses?x=1"); /* a query does not matter */
    assert_non_null(r);
    assert_int_equal(r->route, OPENAI_ROUTE_RESPONSES);
    assert_null(openai_route_find("GET", "/v1/completions")); /* the method does */
    r = openai_route_find(NULL, "/v1/models");
    assert_non_null(r);
    assert_false(r->generation);
    assert_null(openai_route_find("POST", "/v1/completionsx"));
    enum openai_api api;
    assert_true(openai_api_from_path("/v1/completions", &api));
    assert_int_equal(api, OPENAI_COMPLETIONS);
    assert_false(openai_api_from_path("/v1/models", &api));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_completion_fields),   cmocka_unit_test(test_prompt_forms),
        cmocka_unit_test(test_chat_render_and_limits), cmocka_unit_test(test_errors_name_fields),
        cmocka_unit_test(test_n_echo_logprob_fields), cmocka_unit_test(test_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

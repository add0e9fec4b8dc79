/* Unit tests for src/sim/tools: the structured-output and tool fields of a request
 * (vLLM's validation and messages), and the answer each shape gives (which tool, what
 * JSON), without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "sim/tools.h"

struct parsed {
    json_t *root;
    struct sim_shape sh;
    struct openai_error err;
    bool ok;
};

static struct parsed parse(const char *body, enum openai_api api, bool auto_ok)
{
    struct parsed p = {0};
    p.root = json_loads(body, 0, NULL);
    if (!p.root)
        fail_msg("test body does not parse: %s", body);
    p.ok = sim_shape_parse(p.root, api, auto_ok, &p.sh, &p.err);
    return p;
}

static void expect_400(const char *body, bool auto_ok, const char *param, const char *msg)
{
    struct parsed p = parse(body, OPENAI_CHAT, auto_ok);
    if (p.ok)
        fail_msg("expected a 400 for %s", body);
    assert_int_equal(p.err.status, 400);
    assert_string_equal(p.err.param, param);
    if (!strstr(p.err.message, msg))
        fail_msg("%s: message '%s' lacks '%s'", body, p.err.message, msg);
    json_decref(p.root);
}

#define TOOLS                                                                                      \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"     \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":"           \
    "[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"noop\"}}]"
#define MSG(text) "\"messages\":[{\"role\":\"user\",\"content\":\"" text "\"}]"

static void test_vllm_messages(void **state)
{
    (void)state;
    expect_400("{" MSG("hi") "," TOOLS "}", false, "tool_choice",
               "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser "
               "to be set");
    expect_400("{" MSG("hi") ",\"tool_choice\":\"required\"}", true, "tool_choice",
               "When using `tool_choice`, `tools` must be set.");
    expect_400("{" MSG("hi") "," TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":"
                             "{\"name\":\"nope\"}}}",
               true, "tool_choice",
               "The tool specified in `tool_choice` does not match any of the specified "
               "`tools`");
    expect_400("{" MSG("hi") "," TOOLS ",\"tool_choice\":7}", true, "tool_choice",
               "Invalid value for `tool_choice`: 7!");
    expect_400("{" MSG("hi") ",\"tools\":[]}", true, "tools", "must not be an empty array");
    expect_400("{" MSG("hi") ",\"guided_json\":\"{x\"}", true, "guided_json",
               "Invalid JSON grammar specification.");
    expect_400("{" MSG("hi") ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                             "{\"name\":\"x\",\"schema\":{\"not\":{}}}}}",
               true, "response_format", "not supported");
    expect_400("{" MSG("hi") ",\"guided_regex\":\"a+\"}", true, "guided_regex",
               "not supported by the simulator");
    expect_400("{" MSG("hi") ",\"guided_json\":{},\"structured_outputs\":{\"json\":{}}}", true,
               "structured_outputs.json", "one kind");
}

static void test_shapes(void **state)
{
    (void)state;
    struct parsed p =
        parse("{" MSG("hi") "," TOOLS ",\"tool_choice\":\"none\"}", OPENAI_CHAT, false);
    assert_true(p.ok);
    assert_int_equal(p.sh.tool_choice, SIM_TOOL_NONE);
    assert_int_equal(p.sh.text, SIM_TEXT_PLAIN);
    json_decref(p.root);
    /* tools are a chat field: completions ignore them */
    p = parse("{\"prompt\":\"x\"," TOOLS "}", OPENAI_COMPLETIONS, false);
    assert_true(p.ok);
    assert_int_equal(p.sh.tool_choice, SIM_TOOL_NONE);
    json_decref(p.root);
    p = parse("{" MSG("hi") ",\"response_format\":{\"type\":\"json_object\"}}", OPENAI_CHAT, false);
    assert_true(p.ok && p.sh.text == SIM_TEXT_JSON && p.sh.schema == NULL);
    json_decref(p.root);
    p = parse("{" MSG("hi") "," TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":"
                            "{\"name\":\"noop\"}}}",
              OPENAI_CHAT, false);
    assert_true(p.ok && p.sh.tool_choice == SIM_TOOL_NAMED && p.sh.named == 1);
    json_decref(p.root);
}

static void test_answers(void **state)
{
    (void)state;
    /* A mentioned tool is called, whatever the seed; its arguments conform. */
    struct parsed p = parse("{" MSG("is get_weather up") "," TOOLS "}", OPENAI_CHAT, true);
    assert_true(p.ok && p.sh.tool_choice == SIM_TOOL_AUTO);
    for (uint64_t seed = 0; seed < 50; seed++) {
        struct buf out = BUF_INIT;
        long tool;
        assert_true(sim_shape_answer(&p.sh, p.root, seed, &out, &tool));
        assert_int_equal(tool, 0);
        json_t *args = json_loadb(out.data, out.len, 0, NULL);
        assert_true(json_is_string(json_object_get(args, "city")));
        json_decref(args);
        buf_free(&out);
    }
    json_decref(p.root);
    /* No mention: some seeds call, some answer in text; the same seed, the same way. */
    p = parse("{" MSG("hello") "," TOOLS "}", OPENAI_CHAT, true);
    int calls = 0;
    for (uint64_t seed = 0; seed < 64; seed++) {
        long t1 = sim_shape_pick_tool(&p.sh, p.root, seed * 0x9e3779b97f4a7c15ull);
        long t2 = sim_shape_pick_tool(&p.sh, p.root, seed * 0x9e3779b97f4a7c15ull);
        assert_int_equal(t1, t2);
        calls += t1 >= 0;
    }
    assert_true(calls > 8 && calls < 56);
    json_decref(p.root);
    /* After a tool result, auto answers in text; required still calls. */
    const char *history = "\"messages\":[{\"role\":\"user\",\"content\":\"get_weather\"},"
                          "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
                          "{\"role\":\"tool\",\"content\":\"sunny\"}]";
    char body[1024];
    snprintf(body, sizeof body, "{%s,%s}", history, TOOLS);
    p = parse(body, OPENAI_CHAT, true);
    for (uint64_t seed = 0; seed < 16; seed++)
        assert_int_equal(sim_shape_pick_tool(&p.sh, p.root, seed), -1);
    json_decref(p.root);
    snprintf(body, sizeof body, "{%s,%s,\"tool_choice\":\"required\"}", history, TOOLS);
    p = parse(body, OPENAI_CHAT, false);
    for (uint64_t seed = 0; seed < 16; seed++)
        assert_int_equal(sim_shape_pick_tool(&p.sh, p.root, seed), 0); /* mentioned */
    json_decref(p.root);
    /* guided_choice picks one of the strings */
    p = parse("{\"prompt\":\"x\",\"guided_choice\":[\"yes\",\"no\"]}", OPENAI_COMPLETIONS, false);
    struct buf out = BUF_INIT;
    long tool;
    assert_true(sim_shape_answer(&p.sh, p.root, 3, &out, &tool));
    assert_true((out.len == 3 && !memcmp(out.data, "yes", 3)) ||
                (out.len == 2 && !memcmp(out.data, "no", 2)));
    buf_free(&out);
    json_decref(p.root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_messages),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/pd: the nixlv2 bodies of both legs (pd.md's fields exactly) and
 * the x-prefiller-host-port parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "base/json.h"
#include "pd/pd.h"

static json_t *load(const struct buf *b)
{
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_prefill_body(void **state)
{
    (void)state;
    const struct pd_connector *c = pd_connector_find("nixlv2");
    assert_non_null(c);
    assert_ptr_equal(pd_connector_find(NULL), c); /* the default */
    assert_null(pd_connector_find("mooncake"));
    const char *body = "{\"model\":\"m\",\"prompt\":\"hello\",\"max_tokens\":50,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"temperature\":0.5}";
    struct buf b = BUF_INIT;
    char err[128];
    assert_true(c->prefill_body("/v1/completions", body, strlen(body), &b, err, sizeof err));
    json_t *j = load(&b);
    json_t *kv = json_object_get(j, "kv_transfer_params");
    assert_true(json_is_true(json_object_get(kv, "do_remote_decode")));
    assert_true(json_is_false(json_object_get(kv, "do_remote_prefill")));
    static const char *const nulls[] = {"remote_engine_id", "remote_block_ids", "remote_host",
                                        "remote_port"};
    for (size_t i = 0; i < 4; i++)
        assert_true(json_is_null(json_object_get(kv, nulls[i])));
    assert_true(json_is_false(json_object_get(j, "stream")));
    assert_null(json_object_get(j, "stream_options"));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "max_completion_tokens")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "hello");
    assert_true(json_real_value(json_object_get(j, "temperature")) == 0.5);
    json_decref(j);
    buf_free(&b);
    /* /v1/responses caps max_output_tokens instead. */
    assert_true(c->prefill_body("/v1/responses", "{\"input\":\"x\"}", 13, &b, err, sizeof err));
    j = load(&b);
    assert_int_equal(json_integer_value(json_object_get(j, "max_output_tokens")), 1);
    assert_null(json_object_get(j, "max_tokens"));
    json_decref(j);
    buf_free(&b);
    assert_false(c->prefill_body("/v1/completions", "[1]", 3, &b, err, sizeof err));
    assert_non_null(strstr(err, "JSON object"));
    buf_free(&b);
}

static void test_decode_body(void **state)
{
    (void)state;
    const struct pd_connector *c = pd_connector_find("nixlv2");
    const char *body = "{\"model\":\"m\",\"prompt\":\"hello\",\"max_tokens\":50,\"stream\":true}";
    const char *resp = "{\"id\":\"cmpl-1\",\"choices\":[],\"kv_transfer_params\":{"
                       "\"do_remote_prefill\":true,\"do_remote_decode\":false,"
                       "\"remote_engine_id\":\"e1\",\"remote_block_ids\":[1,2],"
                       "\"remote_request_id\":\"r1\",\"remote_host\":\"10.0.0.1\","
                       "\"remote_port\":8000,\"tp_size\":1}}";
    struct buf b = BUF_INIT;
    const char *why = NULL;
    assert_true(c->decode_body(body, strlen(body), resp, strlen(resp), &b, &why));
    json_t *j = load(&b);
    /* The client's own fields, untouched; the prefill's params, unchanged. */
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 50);
    assert_true(json_is_true(json_object_get(j, "stream")));
    json_t *kv = json_object_get(j, "kv_transfer_params");
    assert_true(json_is_true(json_object_get(kv, "do_remote_prefill")));
    assert_string_equal(json_string_value(json_object_get(kv, "remote_host")), "10.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(kv, "remote_port")), 8000);
    assert_int_equal(json_array_size(json_object_get(kv, "remote_block_ids")), 2);
    json_decref(j);
    buf_free(&b);
    /* No params (vLLM: the prefill did not stop on its cap): a reason, no body. */
    const char *none = "{\"id\":\"cmpl-1\",\"kv_transfer_params\":null}";
    assert_false(c->decode_body(body, strlen(body), none, strlen(none), &b, &why));
    assert_non_null(strstr(why, "no kv_transfer_params"));
    assert_false(c->decode_body(body, strlen(body), "<html>", 6, &b, &why));
    assert_non_null(strstr(why, "not JSON"));
    buf_free(&b);
}

static void test_parse_prefiller(void **state)
{
    (void)state;
    char host[64];
    int port = 0;
    assert_true(pd_parse_prefiller("10.0.0.1:8000", false, host, sizeof host, &port));
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 8000);
    assert_true(pd_parse_prefiller("http://p.svc:9000, 10.0.0.2:1", false, host, sizeof host,
                                   &port));
    assert_string_equal(host, "p.svc");
    assert_int_equal(port, 9000);
    assert_true(pd_parse_prefiller("[::1]:8200", false, host, sizeof host, &port));
    assert_string_equal(host, "::1");
    assert_true(pd_parse_prefiller("HTTP://Up.svc:1", false, host, sizeof host, &port));
    assert_string_equal(host, "Up.svc");
    /* Sampling picks among the list. */
    bool seen[2] = {false, false};
    for (int i = 0; i < 200; i++) {
        assert_true(pd_parse_prefiller("a:1,b:2", true, host, sizeof host, &port));
        seen[port - 1] = true;
    }
    assert_true(seen[0] && seen[1]);
    static const char *const bad[] = {"", ",", "host", "host:", ":80", "h:0", "h:70000",
                                      "h:8x", "127.0.0.1:80:9999", "fd00::1:22", "a]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(pd_parse_prefiller(bad[i], false, host, sizeof host, &port));
    assert_false(pd_parse_prefiller(NULL, false, host, sizeof host, &port));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_body),
        cmocka_unit_test(test_decode_body),
        cmocka_unit_test(test_parse_prefiller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The watch event stream: events split at every byte boundary, many per piece, blank
 * keep-alive lines, CRLF, ERROR events carrying a Status, and the failures (not JSON,
 * no type, a line over the bound) that must stop the stream with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "base/buf.h"
#include "k8s/k8s.h"

struct seen {
    struct buf log; /* "TYPE name;" per event */
};

static void on_event(const char *type, json_t *obj, void *ctx)
{
    struct seen *s = ctx;
    const char *name = k8s_obj_name(obj);
    if (!strcmp(type, "ERROR"))
        buf_printf(&s->log, "ERROR %lld %s;",
                   (long long)json_integer_value(json_object_get(obj, "code")),
                   json_string_value(json_object_get(obj, "reason")));
    else
        buf_printf(&s->log, "%s %s;", type, name ? name : "-");
}

static const char *STREAM =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p1\",\"resourceVersion\":\"5\"}}}\n"
    "\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"p1\"}}}\r\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"p\\u00e9\"}}}\n"
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}}\n";

static const char *EXPECT = "ADDED p1;MODIFIED p1;BOOKMARK -;DELETED p\xc3\xa9;ERROR 410 Expired;";

static void test_whole_and_split_everywhere(void **state)
{
    size_t n = strlen(STREAM);
    char err[256];
    for (size_t cut = 0; cut <= n; cut++) {
        struct k8s_watch_parser p = {0};
        struct seen s = {BUF_INIT};
        assert_true(k8s_watch_parser_feed(&p, STREAM, cut, on_event, &s, err, sizeof err));
        assert_true(k8s_watch_parser_feed(&p, STREAM + cut, n - cut, on_event, &s, err, sizeof err));
        assert_string_equal(s.log.data, EXPECT);
        buf_free(&s.log);
        k8s_watch_parser_free(&p);
    }
    /* one byte at a time */
    struct k8s_watch_parser p = {0};
    struct seen s = {BUF_INIT};
    for (size_t i = 0; i < n; i++)
        assert_true(k8s_watch_parser_feed(&p, STREAM + i, 1, on_event, &s, err, sizeof err));
    assert_string_equal(s.log.data, EXPECT);
    buf_free(&s.log);
    k8s_watch_parser_free(&p);
}

static void expect_fail(const char *text, const char *needle, size_t max_line)
{
    struct k8s_watch_parser p = {.max_line = max_line};
    struct seen s = {BUF_INIT};
    char err[256] = "";
    assert_false(k8s_watch_parser_feed(&p, text, strlen(text), on_event, &s, err, sizeof err));
    if (!strstr(err, needle))
        fail_msg("'%s' lacks '%s'", err, needle);
    buf_free(&s.log);
    k8s_watch_parser_free(&p);
}

static void test_bad_streams(void **state)
{
    expect_fail("{\"type\":\"ADDED\",\"object\":{}\n", "not JSON", 0);
    expect_fail("{\"object\":{}}\n", "\"type\"", 0);
    expect_fail("{\"type\":\"ADDED\",\"object\":[]}\n", "\"object\"", 0);
    expect_fail("[1,2]\n", "\"type\"", 0);
    expect_fail("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"long\"}}}\n",
                "longer than 16 bytes", 16);
    /* the bound also holds across pieces, before any newline arrives */
    struct k8s_watch_parser p = {.max_line = 8};
    struct seen s = {BUF_INIT};
    char err[256];
    assert_true(k8s_watch_parser_feed(&p, "{\"type\"", 7, on_event, &s, err, sizeof err));
    assert_false(k8s_watch_parser_feed(&p, ":\"ADDED\"", 8, on_event, &s, err, sizeof err));
    buf_free(&s.log);
    k8s_watch_parser_free(&p);
}

static void test_reset_drops_partial(void **state)
{
    struct k8s_watch_parser p = {0};
    struct seen s = {BUF_INIT};
    char err[256];
    assert_true(k8s_watch_parser_feed(&p, "{\"type\":\"ADD", 12, on_event, &s, err, sizeof err));
    k8s_watch_parser_reset(&p); /* a new watch: the old tail is gone */
    const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n";
    assert_true(k8s_watch_parser_feed(&p, ev, strlen(ev), on_event, &s, err, sizeof err));
    assert_string_equal(s.log.data, "ADDED x;");
    buf_free(&s.log);
    k8s_watch_parser_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_and_split_everywhere),
        cmocka_unit_test(test_bad_streams),
        cmocka_unit_test(test_reset_drops_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

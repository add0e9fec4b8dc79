/* SSE framing and the incremental parser, fed in every possible split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "net/sse.h"

struct events {
    char *items[16];
    size_t n;
};

static void collect(const char *data, size_t len, void *ctx)
{
    struct events *e = ctx;
    assert_true(e->n < 16);
    e->items[e->n] = malloc(len + 1);
    memcpy(e->items[e->n], data, len);
    e->items[e->n][len] = '\0';
    assert_int_equal(strlen(e->items[e->n]), len);
    e->n++;
}

static void events_free(struct events *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->items[i]);
    e->n = 0;
}

static void test_append(void **state)
{
    struct buf b = BUF_INIT;
    sse_append_data(&b, "{\"a\":1}", 7);
    sse_append_data(&b, "[DONE]", 6);
    assert_string_equal(b.data, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    assert_int_equal(b.len, strlen(b.data));
    buf_reset(&b);
    sse_append_data(&b, "", 0);
    assert_string_equal(b.data, "data: \n\n");
    buf_free(&b);
}

static const char stream[] = ": keep-alive comment\r\n"
                             "data: {\"x\":1}\r\n"
                             "\r\n"
                             "event: ping\n"
                             "id: 7\n"
                             "data:first\n"
                             "data: second\n"
                             "\n"
                             "retry: 10\n"
                             "\n" /* no data: nothing dispatched */
                             "data\n"
                             "\n"
                             "data: [DONE]\n"
                             "\n"
                             "data: unterminated";

static void check_events(struct events *e)
{
    assert_int_equal(e->n, 4);
    assert_string_equal(e->items[0], "{\"x\":1}");
    assert_string_equal(e->items[1], "first\nsecond");
    assert_string_equal(e->items[2], "");
    assert_string_equal(e->items[3], "[DONE]");
}

static void test_parse_whole(void **state)
{
    struct sse_parser p;
    struct events e = {0};
    sse_parser_init(&p);
    size_t n = sse_parser_feed(&p, stream, strlen(stream), collect, &e);
    assert_int_equal(n, 4);
    check_events(&e);
    events_free(&e);
    /* The unterminated event completes when its blank line arrives. */
    n = sse_parser_feed(&p, "\n\n", 2, collect, &e);
    assert_int_equal(n, 1);
    assert_string_equal(e.items[0], "unterminated");
    events_free(&e);
    sse_parser_free(&p);
}

static void test_parse_every_split(void **state)
{
    size_t len = strlen(stream);
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            struct sse_parser p;
            struct events e = {0};
            sse_parser_init(&p);
            size_t n = sse_parser_feed(&p, stream, i, collect, &e);
            n += sse_parser_feed(&p, stream + i, j - i, collect, &e);
            n += sse_parser_feed(&p, stream + j, len - j, collect, &e);
            assert_int_equal(n, 4);
            check_events(&e);
            events_free(&e);
            sse_parser_free(&p);
        }
    }
}

static void test_byte_at_a_time(void **state)
{
    struct sse_parser p;
    struct events e = {0};
    sse_parser_init(&p);
    size_t n = 0;
    for (size_t i = 0; i < strlen(stream); i++)
        n += sse_parser_feed(&p, stream + i, 1, collect, &e);
    assert_int_equal(n, 4);
    check_events(&e);
    events_free(&e);
    sse_parser_free(&p);
}

static void test_roundtrip(void **state)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < 10; i++) {
        char payload[32];
        int k = snprintf(payload, sizeof payload, "{\"i\":%d}", i);
        sse_append_data(&b, payload, (size_t)k);
    }
    struct sse_parser p;
    struct events e = {0};
    sse_parser_init(&p);
    assert_int_equal(sse_parser_feed(&p, b.data, 50, NULL, NULL), 3); /* NULL fn counts */
    assert_int_equal(sse_parser_feed(&p, b.data + 50, b.len - 50, collect, &e), 7);
    assert_string_equal(e.items[6], "{\"i\":9}");
    events_free(&e);
    sse_parser_free(&p);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_parse_whole),
        cmocka_unit_test(test_parse_every_split),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

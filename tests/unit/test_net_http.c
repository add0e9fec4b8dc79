/* Shared HTTP helpers and the socket-free request/response parsers (net/http_parser.h):
 * header lookup, limits (413/431), malformed input (400), pipelining offsets,
 * chunked bodies, and feeding in arbitrary splits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "net/http.h"
#include "net/http_parser.h"

static void test_headers_get(void **state)
{
    struct http_header items[] = {
        {"Content-Type", "application/json", 12, 16},
        {"X-Request-Id", "abc", 12, 3},
        {"x-request-id", "second", 12, 6},
    };
    struct http_headers h = {items, 3, 3};
    assert_string_equal(http_headers_get(&h, "content-type"), "application/json");
    assert_string_equal(http_headers_get(&h, "X-REQUEST-ID"), "abc");
    assert_null(http_headers_get(&h, "x-request"));
    assert_null(http_headers_get(&h, "content-type-x"));
    struct http_headers empty = {NULL, 0, 0};
    assert_null(http_headers_get(&empty, "a"));
}

static void test_status_text(void **state)
{
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(413), "Payload Too Large");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(503), "Service Unavailable");
    assert_string_equal(http_status_text(299), "Success");
    assert_string_equal(http_status_text(599), "Server Error");
}

static void test_hop_by_hop(void **state)
{
    const char *hop[] = {"Connection", "keep-alive", "Proxy-Authorization", "proxy-connection",
                         "TE",         "Trailer",    "Transfer-Encoding",   "upgrade"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        assert_true(http_header_is_hop_by_hop(hop[i], strlen(hop[i])));
    const char *end[] = {"Content-Type", "x-request-id", "Content-Length", "Host", "T",
                         "Trailers-x",   "Connectionx"};
    for (size_t i = 0; i < sizeof end / sizeof end[0]; i++)
        assert_false(http_header_is_hop_by_hop(end[i], strlen(end[i])));
    /* Length-bounded: a prefix of a longer buffer counts. */
    assert_true(http_header_is_hop_by_hop("TEXT", 2));
}

/* --- request parser ---------------------------------------------------------------- */

struct parsed {
    char method[16];
    char path[256];
    char query[256];
    char body[4096];
    size_t body_len;
    char ctype[64];
    size_t n_headers;
    bool keep_alive;
};

/* Feeds `in` in pieces of `step` bytes (0 = whole); returns the number of requests and
 * the status of the last feed. */
static int parse_all(const char *in, size_t len, size_t step, size_t max_hdr, size_t max_body,
                     struct parsed *out, int max_out, enum http_parse_status *last, int *err_status)
{
    struct http_req_parser p;
    http_req_parser_init(&p, max_hdr, max_body);
    struct arena a;
    arena_init(&a, 0);
    int n = 0;
    size_t off = 0;
    struct buf pending = BUF_INIT; /* bytes given but not consumed (pipelining) */
    *last = HTTP_PARSE_MORE;
    while (off < len || pending.len) {
        size_t take = step ? step : len;
        if (take > len - off)
            take = len - off;
        buf_append(&pending, in + off, take);
        off += take;
        for (;;) {
            enum http_parse_status st;
            size_t used = http_req_parser_feed(&p, pending.data, pending.len, &st);
            assert_true(used <= pending.len);
            *last = st;
            if (st == HTTP_PARSE_ERROR) {
                *err_status = p.err_status;
                assert_non_null(p.err_msg);
                goto out;
            }
            buf_consume(&pending, used);
            if (st == HTTP_PARSE_MORE)
                break;
            struct http_request req;
            http_req_parser_build(&p, &a, &req);
            assert_true(n < max_out);
            struct parsed *r = &out[n++];
            snprintf(r->method, sizeof r->method, "%s", req.method);
            snprintf(r->path, sizeof r->path, "%s", req.path);
            snprintf(r->query, sizeof r->query, "%s", req.query);
            assert_true(req.body_len < sizeof r->body);
            memcpy(r->body, req.body, req.body_len);
            assert_int_equal(req.body[req.body_len], '\0');
            r->body_len = req.body_len;
            const char *ct = http_headers_get(&req.headers, "content-type");
            snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
            r->n_headers = req.headers.n;
            r->keep_alive = http_req_parser_keep_alive(&p);
            http_req_parser_next(&p);
            arena_reset(&a);
            if (!r->keep_alive)
                goto out;
            if (pending.len == 0)
                break;
        }
        if (off >= len)
            break;
    }
out:
    buf_free(&pending);
    arena_free(&a);
    http_req_parser_free(&p);
    return n;
}

static const char pipelined[] =
    "GET /v1/models?verbose=1&x=2 HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Pad:  v  \r\n\r\n"
    "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    "Content-Length: 10\r\n\r\n{\"a\":\"bc\"}"
    "POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nTrailer: x\r\n\r\n"
    "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n"
    "GET /ignored HTTP/1.1\r\n\r\n";

static void check_pipelined(struct parsed *r, int n)
{
    assert_int_equal(n, 4);
    assert_string_equal(r[0].method, "GET");
    assert_string_equal(r[0].path, "/v1/models");
    assert_string_equal(r[0].query, "verbose=1&x=2");
    assert_int_equal(r[0].n_headers, 3);
    assert_int_equal(r[0].body_len, 0);
    assert_true(r[0].keep_alive);
    assert_string_equal(r[1].method, "POST");
    assert_string_equal(r[1].path, "/v1/completions");
    assert_string_equal(r[1].query, "");
    assert_string_equal(r[1].ctype, "application/json");
    assert_int_equal(r[1].body_len, 10);
    assert_memory_equal(r[1].body, "{\"a\":\"bc\"}", 10);
    assert_int_equal(r[2].n_headers, 1); /* the trailer is not a header */
    assert_int_equal(r[2].body_len, 7);
    assert_memory_equal(r[2].body, "abcdefg", 7);
    assert_string_equal(r[3].path, "/last");
    assert_false(r[3].keep_alive);
}

static void test_req_pipelined_whole(void **state)
{
    struct parsed r[8];
    enum http_parse_status st;
    int err = 0;
    int n = parse_all(pipelined, strlen(pipelined), 0, 8192, 1024, r, 8, &st, &err);
    check_pipelined(r, n);
}

static void test_req_pipelined_splits(void **state)
{
    for (size_t step = 1; step < 40; step++) {
        struct parsed r[8];
        enum http_parse_status st;
        int err = 0;
        int n = parse_all(pipelined, strlen(pipelined), step, 8192, 1024, r, 8, &st, &err);
        check_pipelined(r, n);
    }
}

static void test_req_header_values(void **state)
{
    struct http_req_parser p;
    http_req_parser_init(&p, 8192, 1024);
    const char *in = "GET / HTTP/1.1\r\nX-Empty:\r\nX-Pad:  v  \r\nX-Tab:\tw\t\r\n\r\n";
    enum http_parse_status st;
    size_t used = http_req_parser_feed(&p, in, strlen(in), &st);
    assert_int_equal(st, HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(in));
    struct arena a;
    arena_init(&a, 0);
    struct http_request req;
    http_req_parser_build(&p, &a, &req);
    assert_string_equal(http_headers_get(&req.headers, "x-empty"), "");
    assert_string_equal(http_headers_get(&req.headers, "x-pad"), "v");
    assert_string_equal(http_headers_get(&req.headers, "x-tab"), "w");
    assert_int_equal(req.headers.items[1].value_len, 1);
    assert_int_equal(req.headers.items[0].name_len, 7);
    assert_false(http_req_parser_http10(&p));
    assert_false(http_req_parser_is_head(&p));
    arena_free(&a);
    http_req_parser_free(&p);
}

static void test_req_http10(void **state)
{
    struct http_req_parser p;
    http_req_parser_init(&p, 8192, 1024);
    enum http_parse_status st;
    const char *a = "HEAD /x HTTP/1.0\r\n\r\n";
    http_req_parser_feed(&p, a, strlen(a), &st);
    assert_int_equal(st, HTTP_PARSE_DONE);
    assert_true(http_req_parser_http10(&p));
    assert_true(http_req_parser_is_head(&p));
    assert_false(http_req_parser_keep_alive(&p));
    http_req_parser_free(&p);

    http_req_parser_init(&p, 8192, 1024);
    const char *b = "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    http_req_parser_feed(&p, b, strlen(b), &st);
    assert_int_equal(st, HTTP_PARSE_DONE);
    assert_true(http_req_parser_keep_alive(&p));
    http_req_parser_free(&p);
}

static void test_req_expect_continue(void **state)
{
    struct http_req_parser p;
    http_req_parser_init(&p, 8192, 1024);
    enum http_parse_status st;
    const char *a = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    http_req_parser_feed(&p, a, strlen(a), &st);
    assert_int_equal(st, HTTP_PARSE_MORE);
    assert_true(p.expect_continue);
    http_req_parser_feed(&p, "abc", 3, &st);
    assert_int_equal(st, HTTP_PARSE_DONE);
    assert_false(p.expect_continue);
    http_req_parser_free(&p);
}

static void expect_error(const char *in, size_t step, size_t max_hdr, size_t max_body, int status)
{
    struct parsed r[4];
    enum http_parse_status st;
    int err = 0;
    int n = parse_all(in, strlen(in), step, max_hdr, max_body, r, 4, &st, &err);
    assert_int_equal(n, 0);
    assert_int_equal(st, HTTP_PARSE_ERROR);
    assert_int_equal(err, status);
}

static void test_req_limits(void **state)
{
    /* Content-Length over the limit is refused before any body byte. */
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 0, 8192, 1024, 413);
    /* Chunked bodies are counted as they arrive. */
    char big[4096];
    strcpy(big, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        strcat(big, "100\r\n");
        size_t at = strlen(big);
        memset(big + at, 'x', 256);
        strcpy(big + at + 256, "\r\n");
    }
    for (size_t step = 0; step < 3; step++)
        expect_error(big, step * 97, 8192, 1024, 413);

    /* Header bytes: one huge header, or many small ones, in any split. */
    char hdr[3000];
    strcpy(hdr, "GET / HTTP/1.1\r\nX-Big: ");
    size_t l = strlen(hdr);
    memset(hdr + l, 'a', 2000);
    strcpy(hdr + l + 2000, "\r\n\r\n");
    for (size_t step = 0; step < 4; step++)
        expect_error(hdr, step * 500, 1024, 1024, 431);
    char url[3000];
    strcpy(url, "GET /");
    memset(url + 5, 'u', 2000);
    strcpy(url + 2005, " HTTP/1.1\r\n\r\n");
    expect_error(url, 0, 1024, 1024, 431);
    expect_error(url, 7, 1024, 1024, 431);
    /* Exactly at the limit is fine. */
    struct parsed r[2];
    enum http_parse_status st;
    int err = 0;
    const char *ok = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    assert_int_equal(parse_all(ok, strlen(ok), 0, strlen(ok), 0, r, 2, &st, &err), 1);
}

static void test_req_malformed(void **state)
{
    expect_error("GARBAGE\r\n\r\n", 0, 8192, 1024, 400);
    expect_error("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 0, 8192, 1024, 400);
    expect_error("GET / HTTP/9.9\r\n\r\n", 0, 8192, 1024, 400);
    expect_error("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, 8192,
                 1024, 400);
    expect_error("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
                 8192, 1024, 400);
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 8192, 1024, 400);
    expect_error("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 3, 8192, 1024, 400);
    expect_error("GET / HTTP/1.1\r\n: no-name\r\n\r\n", 0, 8192, 1024, 400);
}

static void test_req_upgrade_ends_stream(void **state)
{
    struct http_req_parser p;
    http_req_parser_init(&p, 8192, 1024);
    const char *in =
        "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    enum http_parse_status st;
    size_t used = http_req_parser_feed(&p, in, strlen(in), &st);
    assert_int_equal(st, HTTP_PARSE_DONE);
    assert_false(http_req_parser_keep_alive(&p));
    http_req_parser_next(&p);
    used = http_req_parser_feed(&p, in + used, strlen(in) - used, &st);
    assert_int_equal(st, HTTP_PARSE_ERROR);
    http_req_parser_free(&p);
}

/* --- response parser ---------------------------------------------------------------- */

struct resp_sink {
    int status;
    int heads;
    char ctype[64];
    struct buf body;
    bool stop_in_body;
};

static bool sink_head(void *ctx, int status, const struct http_headers *h)
{
    struct resp_sink *s = ctx;
    s->status = status;
    s->heads++;
    const char *ct = http_headers_get(h, "content-type");
    snprintf(s->ctype, sizeof s->ctype, "%s", ct ? ct : "");
    return true;
}

static bool sink_body(void *ctx, const char *data, size_t len)
{
    struct resp_sink *s = ctx;
    buf_append(&s->body, data, len);
    return !s->stop_in_body;
}

static const struct http_resp_parser_callbacks sink_cb = {sink_head, sink_body};

static enum http_parse_status resp_feed_all(struct http_resp_parser *p, const char *in, size_t len,
                                            size_t step, size_t *used_total)
{
    size_t off = 0;
    enum http_parse_status st = HTTP_PARSE_MORE;
    while (off < len) {
        size_t take = step && step < len - off ? step : len - off;
        size_t used = http_resp_parser_feed(p, in + off, take, &st);
        off += used;
        if (st != HTTP_PARSE_MORE)
            break;
    }
    *used_total = off;
    return st;
}

static void test_resp_chunked_splits(void **state)
{
    const char *in = "HTTP/1.1 100 Continue\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"
                     "f\r\ndata: {\"a\":1}\n\n\r\n"
                     "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\nEXTRA";
    size_t len = strlen(in);
    for (size_t step = 0; step < 30; step++) {
        struct resp_sink s = {0};
        struct http_resp_parser p;
        http_resp_parser_init(&p, 4096, &sink_cb, &s);
        size_t used;
        enum http_parse_status st = resp_feed_all(&p, in, len, step, &used);
        assert_int_equal(st, HTTP_PARSE_DONE);
        assert_int_equal(used, len - 5); /* stops exactly before EXTRA */
        assert_int_equal(s.heads, 1);    /* the 100 was skipped */
        assert_int_equal(s.status, 200);
        assert_string_equal(s.ctype, "text/event-stream");
        assert_string_equal(s.body.data, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_true(http_resp_parser_keep_alive(&p));
        buf_free(&s.body);
        http_resp_parser_free(&p);
    }
}

static void test_resp_close_delimited(void **state)
{
    struct resp_sink s = {0};
    struct http_resp_parser p;
    http_resp_parser_init(&p, 4096, &sink_cb, &s);
    const char *in = "HTTP/1.0 200 OK\r\n\r\nhello";
    size_t used;
    assert_int_equal(resp_feed_all(&p, in, strlen(in), 0, &used), HTTP_PARSE_MORE);
    assert_int_equal(http_resp_parser_finish(&p), HTTP_PARSE_DONE);
    assert_string_equal(s.body.data, "hello");
    assert_false(http_resp_parser_keep_alive(&p));
    buf_free(&s.body);

    /* Truncated Content-Length body is an error at EOF. */
    s = (struct resp_sink){0};
    http_resp_parser_reset(&p, false);
    const char *in2 = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_int_equal(resp_feed_all(&p, in2, strlen(in2), 0, &used), HTTP_PARSE_MORE);
    assert_int_equal(http_resp_parser_finish(&p), HTTP_PARSE_ERROR);
    assert_non_null(p.err_msg);
    buf_free(&s.body);

    /* HEAD: Content-Length present but no body follows. */
    s = (struct resp_sink){0};
    http_resp_parser_reset(&p, true);
    const char *in3 = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_int_equal(resp_feed_all(&p, in3, strlen(in3), 0, &used), HTTP_PARSE_DONE);
    assert_int_equal(s.body.len, 0);
    buf_free(&s.body);
    http_resp_parser_free(&p);
}

static void test_resp_errors_and_stop(void **state)
{
    struct resp_sink s = {0};
    struct http_resp_parser p;
    http_resp_parser_init(&p, 64, &sink_cb, &s);
    size_t used;
    const char *big =
        "HTTP/1.1 200 OK\r\nX-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_int_equal(resp_feed_all(&p, big, strlen(big), 10, &used), HTTP_PARSE_ERROR);
    assert_int_equal(s.heads, 0);

    http_resp_parser_reset(&p, false);
    assert_int_equal(resp_feed_all(&p, "HTTP/1.1 abc\r\n\r\n", 16, 0, &used), HTTP_PARSE_ERROR);

    http_resp_parser_reset(&p, false);
    s.stop_in_body = true;
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef";
    assert_int_equal(resp_feed_all(&p, in, strlen(in), 0, &used), HTTP_PARSE_STOP);
    assert_string_equal(s.body.data, "abcdef");
    buf_free(&s.body);
    http_resp_parser_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_get),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_req_pipelined_whole),
        cmocka_unit_test(test_req_pipelined_splits),
        cmocka_unit_test(test_req_header_values),
        cmocka_unit_test(test_req_http10),
        cmocka_unit_test(test_req_expect_continue),
        cmocka_unit_test(test_req_limits),
        cmocka_unit_test(test_req_malformed),
        cmocka_unit_test(test_req_upgrade_ends_stream),
        cmocka_unit_test(test_resp_chunked_splits),
        cmocka_unit_test(test_resp_close_delimited),
        cmocka_unit_test(test_resp_errors_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for base/log: level parsing and filtering, the text and JSON line formats
 * (captured through a pipe with log_set_fd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/log.h"

static int pipe_fds[2];

static int setup(void **state)
{
    (void)state;
    if (pipe(pipe_fds) != 0)
        return -1;
    /* Non-blocking read end: "nothing was logged" reads as empty, not as a hang. */
    fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    log_set_fd(pipe_fds[1]);
    log_set_level(LOG_INFO);
    log_set_json(false);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_fd(2);
    log_set_json(false);
    log_set_level(LOG_INFO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return 0;
}

/* Everything written to the pipe so far. */
static const char *drain(void)
{
    static char text[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof text - 1 && (n = read(pipe_fds[0], text + len, sizeof text - 1 - len)) > 0)
        len += (size_t)n;
    text[len] = '\0';
    return text;
}

static void test_parse_level(void **state)
{
    (void)state;
    enum log_level l = LOG_ERROR;
    assert_true(log_parse_level("debug", &l));
    assert_int_equal(l, LOG_DEBUG);
    assert_true(log_parse_level("WARN", &l));
    assert_int_equal(l, LOG_WARN);
    assert_true(log_parse_level("warning", &l));
    assert_int_equal(l, LOG_WARN);
    assert_true(log_parse_level("Error", &l));
    assert_int_equal(l, LOG_ERROR);
    assert_true(log_parse_level("trace", &l));
    assert_int_equal(l, LOG_TRACE);
    assert_true(log_parse_level("0", &l));
    assert_int_equal(l, LOG_ERROR);
    assert_true(log_parse_level("3", &l));
    assert_int_equal(l, LOG_DEBUG);
    assert_true(log_parse_level("9", &l)); /* more verbose than trace clamps */
    assert_int_equal(l, LOG_TRACE);
    l = LOG_INFO;
    assert_false(log_parse_level("verbose", &l));
    assert_false(log_parse_level("", &l));
    assert_false(log_parse_level("-1", &l));
    assert_false(log_parse_level("2x", &l));
    assert_int_equal(l, LOG_INFO); /* untouched on failure */
}

static void test_text_format(void **state)
{
    (void)state;
    log_msg(LOG_WARN, "sim", "queue %d deep", 7);
    const char *line = drain();
    /* 2026-11-22T10:00:00.123Z WARN  sim: queue 7 deep */
    assert_int_equal(strlen(line), 24 + 1 + 5 + 1 + strlen("sim: queue 7 deep") + 1);
    assert_int_equal(line[4], '-');
    assert_int_equal(line[10], 'T');
    assert_int_equal(line[19], '.');
    assert_int_equal(line[23], 'Z');
    assert_string_equal(line + 24, " WARN  sim: queue 7 deep\n");
}

static void test_level_filter(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    assert_true(log_enabled(LOG_INFO));
    assert_false(log_enabled(LOG_DEBUG));
    LOG_D("x", "hidden");
    log_msg(LOG_TRACE, "x", "hidden too");
    assert_string_equal(drain(), "");
    LOG_I("x", "shown");
    assert_non_null(strstr(drain(), "INFO  x: shown\n"));
    log_set_level(LOG_ERROR);
    LOG_W("x", "filtered");
    assert_string_equal(drain(), "");
    LOG_E("x", "kept");
    assert_non_null(strstr(drain(), "ERROR x: kept\n"));
    log_set_level(LOG_DEBUG);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    LOG_D("x", "now visible");
    assert_non_null(strstr(drain(), "DEBUG x: now visible\n"));
}

static void test_json_format(void **state)
{
    (void)state;
    log_set_json(true);
    log_msg(LOG_ERROR, "rou\"ter", "bad \"%s\"\n\ttab \x01 \xff end", "q");
    const char *line = drain();
    size_t len = strlen(line);
    assert_true(len > 2);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1)); /* exactly one line */
    json_error_t je;
    json_t *v = json_loadb(line, len, 0, &je);
    if (!v)
        fail_msg("log line is not JSON (%s): %s", je.text, line);
    assert_string_equal(json_string_value(json_object_get(v, "level")), "ERROR");
    assert_string_equal(json_string_value(json_object_get(v, "component")), "rou\"ter");
    assert_string_equal(json_string_value(json_object_get(v, "msg")),
                        "bad \"q\"\n\ttab \x01 \xef\xbf\xbd end");
    const char *ts = json_string_value(json_object_get(v, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    /* Field order is part of the format. */
    assert_memory_equal(line, "{\"ts\":\"", 7);
    json_decref(v);
}

static void test_long_message_truncated(void **state)
{
    (void)state;
    log_set_json(true);
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_msg(LOG_INFO, "c", "%s", big);
    const char *line = drain();
    json_t *v = json_loads(line, 0, NULL);
    assert_non_null(v);
    size_t n = strlen(json_string_value(json_object_get(v, "msg")));
    assert_true(n > 1000 && n < 5000);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test_setup_teardown(test_text_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_truncated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

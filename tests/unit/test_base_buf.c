/* Unit tests for base/buf: growth, NUL termination, printf, consume, steal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"

static void test_append_and_terminate(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    assert_null(b.data);
    buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    buf_append_str(&b, "def");
    buf_append_char(&b, '!');
    assert_string_equal(b.data, "abcdef!");
    assert_int_equal(b.len, 7);
    buf_append(&b, NULL, 0); /* empty append is fine */
    assert_int_equal(b.len, 7);
    /* Embedded NULs are kept and counted. */
    buf_append(&b, "x\0y", 3);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data + 7, "x\0y", 4);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_growth(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    for (int i = 0; i < 10000; i++)
        buf_append_char(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[10000], '\0');
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], 'a' + i % 26);
    size_t cap = b.cap;
    buf_reserve(&b, 10);
    assert_int_equal(b.cap, cap); /* already enough room: no realloc */
    buf_reserve(&b, cap);
    assert_true(b.cap >= b.len + cap + 1);
    buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    /* Longer than the first reservation: takes the second vsnprintf path. */
    char big[3000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, 4 + 2 + 2999);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(strlen(b.data), b.len);
    buf_free(&b);
}

static void test_consume_reset(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_append_str(&b, "hello world");
    buf_consume(&b, 6);
    assert_string_equal(b.data, "world");
    assert_int_equal(b.len, 5);
    buf_consume(&b, 0);
    assert_string_equal(b.data, "world");
    buf_consume(&b, 5);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_append_str(&b, "again");
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, cap); /* storage kept */
    buf_free(&b);
}

static void test_steal(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_append_str(&b, "owned");
    size_t len = 0;
    char *s = buf_steal(&b, &len);
    assert_string_equal(s, "owned");
    assert_int_equal(len, 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
    /* Stealing an empty buffer still gives a valid empty string. */
    s = buf_steal(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
    /* And the buffer is reusable afterwards. */
    buf_append_str(&b, "x");
    assert_string_equal(b.data, "x");
    buf_free(&b);
}

/* A reservation whose size arithmetic would wrap must abort, not under-allocate. */
static void test_huge_reserve_aborts(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct buf b = BUF_INIT;
        buf_append_str(&b, "abc");
        buf_reserve(&b, SIZE_MAX - 1);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_terminate),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_consume_reset),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_huge_reserve_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* loop glue: the shutdown callback fires once on SIGTERM/SIGINT, its watcher closes
 * cleanly, and loop_run_and_close leaves no handle open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <unistd.h>

#include <uv.h>

#include "net/loop.h"

struct sd {
    int calls;
    uv_timer_t keepalive;
};

static void on_shutdown(void *ctx)
{
    struct sd *s = ctx;
    s->calls++;
    uv_timer_stop(&s->keepalive);
}

static int rounds;

static void send_signal(uv_timer_t *t)
{
    int *sig = t->data;
    if (++rounds > 3) {
        uv_timer_stop(t); /* the callback never came: end the run, the assert fails */
        return;
    }
    kill(getpid(), *sig);
}

static void noop_timer(uv_timer_t *t)
{
}

static void noop_idle(uv_idle_t *h)
{
}

static void check_signal(int signum)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    rounds = 0;
    struct sd s = {0};
    loop_on_shutdown(&loop, on_shutdown, &s);
    /* The watcher is unref'd: without another handle the loop would not wait. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    uv_timer_init(&loop, &s.keepalive);
    s.keepalive.data = &signum;
    /* Sends the signal, then keeps the loop alive (bounded: it repeats, and a broken
     * watcher fails the count below after the third round) until the callback stops it. */
    uv_timer_start(&s.keepalive, send_signal, 10, 500);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 1);
    loop_shutdown_watch_close(&loop);
    uv_close((uv_handle_t *)&s.keepalive, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_sigterm(void **state)
{
    check_signal(SIGTERM);
}

static void test_sigint(void **state)
{
    check_signal(SIGINT);
}

static void count_handles(uv_handle_t *h, void *arg)
{
    (*(int *)arg)++;
}

static void test_run_and_close(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* Leftovers an owner forgot: an unref'd repeating timer, an active idle handle that
     * is unref'd, and a shutdown watcher. */
    static uv_timer_t timer;
    static uv_idle_t idle;
    uv_timer_init(&loop, &timer);
    uv_timer_start(&timer, noop_timer, 100000, 100000);
    uv_unref((uv_handle_t *)&timer);
    uv_idle_init(&loop, &idle);
    uv_idle_start(&idle, noop_idle);
    uv_unref((uv_handle_t *)&idle);
    struct sd s = {0};
    loop_on_shutdown(&loop, on_shutdown, &s);
    loop_run_and_close(&loop);
    int n = 0;
    uv_walk(&loop, count_handles, &n);
    assert_int_equal(n, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(s.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm),
        cmocka_unit_test(test_sigint),
        cmocka_unit_test(test_run_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

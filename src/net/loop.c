/* libuv glue shared by every role: signal-driven shutdown and a run-to-completion
 * helper. The shutdown watcher is found again by walking the loop for signal handles
 * whose callback is ours, so no global registry (and no use of loop->data, which
 * belongs to the application) is needed. */
#include "net/loop.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"

struct shutdown_watch {
    uv_signal_t sig_int;
    uv_signal_t sig_term;
    void (*cb)(void *ctx);
    void *ctx;
    int fired;
    int open;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct shutdown_watch *w = h->data;
    if (w->fired++) {
        /* Second signal: the user wants out now, even if shutdown is stuck. */
        LOG_W("loop", "second signal %d, exiting immediately", signum);
        _exit(128 + signum);
    }
    LOG_I("loop", "signal %d, shutting down", signum);
    if (w->cb)
        w->cb(w->ctx);
}

void loop_on_shutdown(uv_loop_t *loop, void (*cb)(void *ctx), void *ctx)
{
    struct shutdown_watch *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->ctx = ctx;
    uv_signal_init(loop, &w->sig_int);
    uv_signal_init(loop, &w->sig_term);
    w->sig_int.data = w;
    w->sig_term.data = w;
    w->open = 2;
    uv_signal_start(&w->sig_int, on_signal, SIGINT);
    uv_signal_start(&w->sig_term, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&w->sig_int);
    uv_unref((uv_handle_t *)&w->sig_term);
}

static void on_watch_closed(uv_handle_t *h)
{
    struct shutdown_watch *w = h->data;
    if (--w->open == 0)
        free(w);
}

static void close_ours(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type != UV_SIGNAL || uv_is_closing(h))
        return;
    if (((uv_signal_t *)h)->signal_cb != on_signal)
        return;
    uv_close(h, on_watch_closed);
}

void loop_shutdown_watch_close(uv_loop_t *loop)
{
    uv_walk(loop, close_ours, NULL);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_SIGNAL && ((uv_signal_t *)h)->signal_cb == on_signal)
        uv_close(h, on_watch_closed);
    else
        uv_close(h, NULL);
}

static void count_open(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        (*(int *)arg)++;
}

void loop_run_and_close(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    /* Whatever is still open was leaked by its owner or is an unref'd watcher; closing
     * it lets libuv release its resources. Close callbacks may open or close more
     * handles, hence the bounded repeat. */
    for (int i = 0; i < 8; i++) {
        int open = 0;
        uv_walk(loop, count_open, &open);
        if (open == 0 && !uv_loop_alive(loop))
            break;
        uv_walk(loop, close_any, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
}

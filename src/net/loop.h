/* libuv glue: signal-driven shutdown and small helpers every role shares. */
#ifndef TANDEM_NET_LOOP_H
#define TANDEM_NET_LOOP_H

#include <uv.h>

/* Calls cb once on SIGINT or SIGTERM (a second signal exits at once). The signal
 * handles are unref'd so they never keep the loop alive by themselves. */
void loop_on_shutdown(uv_loop_t *loop, void (*cb)(void *ctx), void *ctx);
/* Stops watching signals (closes the handles). */
void loop_shutdown_watch_close(uv_loop_t *loop);
/* Runs the loop to completion, then closes any handle still open and runs it again so
 * everything is freed (clean ASan exit). */
void loop_run_and_close(uv_loop_t *loop);

#endif

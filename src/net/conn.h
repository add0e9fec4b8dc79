/* What the HTTP server and the HTTP client share about a connection's life on libuv:
 * writing (the kernel first, libuv only for the tail), reading on and off, and closing
 * the socket together with its timer.
 *
 * Ownership: net_conn_write borrows data for the call; a tail it hands to libuv lives in
 * storage the write owns (a stolen buffer or a copy) until done fires. */
#ifndef TANDEM_NET_CONN_H
#define TANDEM_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

#include "base/buf.h"

/* A queued tail finished: status 0 or a negative libuv error. Never called for bytes
 * the kernel took at once. */
typedef void (*net_write_done_fn)(void *ctx, int status);

/* Writes len bytes of data to tcp. With earlier writes still queued, everything is
 * queued behind them (order kept); otherwise uv_try_write goes first. Returns how many
 * bytes the kernel took at once (len: all, done will not fire), or a negative libuv
 * error (nothing queued, done will not fire). A tail is queued with uv_write in storage
 * taken from steal when given (data must then be steal->data; steal is left empty),
 * else in a copy; done(ctx, status) fires when it is written or failed. */
ssize_t net_conn_write(uv_tcp_t *tcp, const char *data, size_t len, struct buf *steal,
                       net_write_done_fn done, void *ctx);

/* Starts reading (true when reading now); read_off stops. Both are no-ops when already
 * in that state (*reading tracks it). */
bool net_conn_read_on(uv_tcp_t *tcp, bool *reading, uv_alloc_cb alloc, uv_read_cb read);
void net_conn_read_off(uv_tcp_t *tcp, bool *reading);

/* Closes the socket and its timer; cb runs once per handle (twice in all), so the owner
 * frees itself on the second. */
void net_conn_close(uv_tcp_t *tcp, uv_timer_t *timer, uv_close_cb cb);

#endif

/* net/conn.h: the write path (try_write, then uv_write for the tail with storage the
 * write request owns), read on/off and the paired close, shared by http_server.c and
 * http_client.c so the two cannot drift apart on ordering or ownership. */
#include "net/conn.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

struct net_wreq {
    uv_write_t req;
    char *storage;
    net_write_done_fn done;
    void *ctx;
};

static void on_written(uv_write_t *req, int status)
{
    struct net_wreq *w = (struct net_wreq *)req;
    net_write_done_fn done = w->done;
    void *ctx = w->ctx;
    free(w->storage);
    free(w);
    done(ctx, status);
}

ssize_t net_conn_write(uv_tcp_t *tcp, const char *data, size_t len, struct buf *steal,
                       net_write_done_fn done, void *ctx)
{
    size_t off = 0;
    if (tcp->write_queue_size == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN)
            return n;
        off = n > 0 ? (size_t)n : 0;
        if (off == len)
            return (ssize_t)len;
    }
    struct net_wreq *w = xmalloc(sizeof *w);
    w->done = done;
    w->ctx = ctx;
    const char *tail;
    if (steal) {
        size_t sl;
        w->storage = buf_steal(steal, &sl);
        tail = w->storage + off;
    } else {
        w->storage = xmalloc(len - off);
        memcpy(w->storage, data + off, len - off);
        tail = w->storage;
    }
    uv_buf_t b = uv_buf_init((char *)tail, (unsigned)(len - off));
    int rc = uv_write(&w->req, (uv_stream_t *)tcp, &b, 1, on_written);
    if (rc < 0) {
        free(w->storage);
        free(w);
        return rc;
    }
    return (ssize_t)off;
}

bool net_conn_read_on(uv_tcp_t *tcp, bool *reading, uv_alloc_cb alloc, uv_read_cb read)
{
    if (!*reading && uv_read_start((uv_stream_t *)tcp, alloc, read) == 0)
        *reading = true;
    return *reading;
}

void net_conn_read_off(uv_tcp_t *tcp, bool *reading)
{
    if (*reading) {
        uv_read_stop((uv_stream_t *)tcp);
        *reading = false;
    }
}

void net_conn_close(uv_tcp_t *tcp, uv_timer_t *timer, uv_close_cb cb)
{
    uv_timer_stop(timer);
    uv_close((uv_handle_t *)tcp, cb);
    uv_close((uv_handle_t *)timer, cb);
}

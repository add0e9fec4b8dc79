/* Per-worker circuit breakers with vllm-router's semantics (--cb-failure-threshold,
 * --cb-success-threshold, --cb-timeout-duration-secs, --disable-circuit-breaker):
 *
 *   closed     every outcome counts; failure_threshold consecutive failures -> open
 *   open       the worker is not picked; after timeout -> half-open
 *   half-open  the worker is picked again; success_threshold consecutive successes ->
 *              closed, one failure -> open (the timeout starts over)
 *
 * A failure is a connection error, a timeout or a 5xx answer; anything else is a success.
 * The table maps endpoint names to breakers under one mutex (outcomes come from every
 * worker thread; the open -> half-open move happens on the control loop's scrape tick).
 * Opening a breaker blocks the endpoint in the datastore, so the scheduler skips it, and
 * half-open unblocks it. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "router/router_internal.h"

const char *router_cb_state_name(enum router_cb_state s)
{
    return s == ROUTER_CB_OPEN ? "open" : s == ROUTER_CB_HALF_OPEN ? "half_open" : "closed";
}

static void set_state(struct router_cb *cb, enum router_cb_state s, uint64_t now)
{
    cb->state = s;
    cb->changed_ns = now;
    cb->failures = 0;
    cb->successes = 0;
}

bool router_cb_allow(struct router_cb *cb, const struct router_cb_config *c, uint64_t now)
{
    if (c->disabled)
        return true;
    if (cb->state == ROUTER_CB_OPEN && now - cb->changed_ns >= c->timeout_ns)
        set_state(cb, ROUTER_CB_HALF_OPEN, now);
    return cb->state != ROUTER_CB_OPEN;
}

bool router_cb_record(struct router_cb *cb, const struct router_cb_config *c, bool success,
                      uint64_t now)
{
    if (c->disabled)
        return false;
    enum router_cb_state before = cb->state;
    if (success) {
        cb->failures = 0;
        cb->successes++;
        if (cb->state == ROUTER_CB_HALF_OPEN && cb->successes >= c->success_threshold)
            set_state(cb, ROUTER_CB_CLOSED, now);
    } else {
        cb->successes = 0;
        cb->failures++;
        if ((cb->state == ROUTER_CB_CLOSED && cb->failures >= c->failure_threshold) ||
            cb->state == ROUTER_CB_HALF_OPEN)
            set_state(cb, ROUTER_CB_OPEN, now);
    }
    return cb->state != before;
}

/* Under the lock. */
static struct router_cb *find(struct router_breakers *b, const char *name, bool create)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->items[i].name, name))
            return &b->items[i].cb;
    if (!create)
        return NULL;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->items = xrealloc(b->items, b->cap * sizeof *b->items);
    }
    b->items[b->n].name = xstrdup(name);
    memset(&b->items[b->n].cb, 0, sizeof b->items[b->n].cb);
    return &b->items[b->n++].cb;
}

static void apply_block(struct router *r, const char *name, enum router_cb_state s)
{
    struct sched_endpoint *e = sched_ds_find(r->ds, name);
    if (!e)
        return;
    sched_endpoint_set_blocked(e, s == ROUTER_CB_OPEN);
    sched_endpoint_unref(e);
}

void router_breaker_record(struct router *r, const char *name, bool success)
{
    if (r->cfg.cb.disabled || !r->cfg.vr_mode || !name)
        return;
    struct router_breakers *b = &r->breakers;
    pthread_mutex_lock(&b->lock);
    struct router_cb *cb = find(b, name, true);
    enum router_cb_state before = cb->state;
    bool changed = router_cb_record(cb, &r->cfg.cb, success, clock_monotonic_ns());
    enum router_cb_state now = cb->state;
    pthread_mutex_unlock(&b->lock);
    if (changed) {
        LOG_W("router", "circuit breaker of %s: %s -> %s", name, router_cb_state_name(before),
              router_cb_state_name(now));
        apply_block(r, name, now);
    }
}

void router_breakers_tick(struct router *r)
{
    if (r->cfg.cb.disabled || !r->cfg.vr_mode)
        return;
    struct router_breakers *b = &r->breakers;
    uint64_t now = clock_monotonic_ns();
    char *moved[64];
    size_t n_moved = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n && n_moved < 64; i++) {
        struct router_cb *cb = &b->items[i].cb;
        if (cb->state == ROUTER_CB_OPEN && router_cb_allow(cb, &r->cfg.cb, now))
            moved[n_moved++] = xstrdup(b->items[i].name);
    }
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < n_moved; i++) {
        LOG_I("router", "circuit breaker of %s: open -> half_open (timeout passed)", moved[i]);
        apply_block(r, moved[i], ROUTER_CB_HALF_OPEN);
        free(moved[i]);
    }
}

void router_breakers_each(struct router *r,
                          void (*fn)(void *ctx, const char *name, enum router_cb_state s),
                          void *ctx)
{
    struct router_breakers *b = &r->breakers;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n; i++)
        fn(ctx, b->items[i].name, b->items[i].cb.state);
    pthread_mutex_unlock(&b->lock);
}

void router_breakers_free(struct router *r)
{
    struct router_breakers *b = &r->breakers;
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].name);
    free(b->items);
    memset(b, 0, sizeof *b);
}

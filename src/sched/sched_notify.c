/* The data layer's notification sources (llm-d's pkg/epp/.../datalayer/source/notifications):
 *  - endpoint-notification-source: endpoint lifecycle events (add/update, delete) from the
 *    router's datastore, whatever fills it (--worker-urls, --endpoints-file, the
 *    InferencePool watch), delivered to the extractors wired under it in
 *    dataLayer.sources (today: precise-prefix-cache-scorer, which opens and closes per-pod
 *    KV event subscribers on them).
 *  (k8s-notification-source, the other one, lives in sched_compat.c: tandem has no
 *  extractor that takes Kubernetes object events, so wiring one under it is a load error
 *  (sched_config.c) and it watches nothing.)
 *
 * How events are made: the datastore keeps a generation counter bumped by every upsert and
 * removal. A timer on the router's control loop (every 50 ms, first run on the loop's
 * next turn, after every plugin's start) compares it with the last one seen; on a change
 * it lists the endpoints and diffs them against its own view (name -> addr): a new name or
 * a changed address is an add/update, a name gone is a delete. Events are therefore
 * delivered on the control loop thread, in datastore order, at most 50 ms late; an endpoint
 * that comes and goes within one period is never seen (nothing was there to subscribe to).
 *
 * Ownership: the source owns its view (names and addresses) and its timer; the wired
 * extractors are borrowed plugins of the same scheduler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

#define EN_PERIOD_MS 50

struct en_view {
    char *name, *host, *addr;
    int port;
};

struct ep_notify {
    struct sched *s; /* set when wired; s->ds is set once the scheduler is built */
    struct sched_plugin **ext;
    size_t n_ext;
    struct en_view *view;
    size_t n_view;
    uint64_t gen;
    bool synced;
    uv_timer_t timer;
    bool started;
};

static int en_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    *state = xcalloc(1, sizeof(struct ep_notify));
    return 0;
}

static void view_clear(struct ep_notify *n)
{
    for (size_t i = 0; i < n->n_view; i++) {
        free(n->view[i].name);
        free(n->view[i].host);
        free(n->view[i].addr);
    }
    free(n->view);
    n->view = NULL;
    n->n_view = 0;
}

static void en_destroy(void *state)
{
    struct ep_notify *n = state;
    view_clear(n);
    free(n->ext);
    free(n);
}

void sched_notify_wire(struct sched_plugin *src, struct sched *s, struct sched_plugin *ext)
{
    struct ep_notify *n = src->st;
    n->s = s;
    for (size_t i = 0; i < n->n_ext; i++)
        if (n->ext[i] == ext)
            return;
    n->ext = xrealloc(n->ext, (n->n_ext + 1) * sizeof *n->ext);
    n->ext[n->n_ext++] = ext;
}

bool sched_notify_wired(const struct sched *s, const struct sched_plugin *ext)
{
    for (size_t i = 0; s && i < s->n_plugins; i++) {
        if (s->plugins[i]->t != &sched_endpoint_notification_source)
            continue;
        const struct ep_notify *n = s->plugins[i]->st;
        for (size_t k = 0; k < n->n_ext; k++)
            if (n->ext[k] == ext)
                return true;
    }
    return false;
}

static void dispatch(struct ep_notify *n, enum sched_endpoint_event_type type,
                     const struct en_view *v)
{
    struct sched_endpoint_event ev = {
        .type = type, .name = v->name, .host = v->host, .addr = v->addr, .port = v->port};
    for (size_t i = 0; i < n->n_ext; i++)
        n->ext[i]->t->extract_endpoint(n->ext[i], &ev);
}

size_t sched_notify_sync(struct sched_plugin *src)
{
    struct ep_notify *n = src->st;
    if (!n->s || !n->s->ds)
        return 0;
    uint64_t gen = sched_ds_generation(n->s->ds);
    if (n->synced && gen == n->gen)
        return 0;
    n->gen = gen;
    n->synced = true;
    struct sched_endpoint **eps = NULL;
    size_t m = sched_ds_list(n->s->ds, &eps);
    bool *kept = xcalloc(n->n_view ? n->n_view : 1, sizeof *kept);
    struct en_view *next = xcalloc(m ? m : 1, sizeof *next);
    size_t events = 0;
    for (size_t i = 0; i < m; i++) {
        struct en_view v = {(char *)sched_endpoint_name(eps[i]),
                            (char *)sched_endpoint_host(eps[i]),
                            (char *)sched_endpoint_addr(eps[i]), sched_endpoint_port(eps[i])};
        size_t k;
        for (k = 0; k < n->n_view; k++)
            if (!kept[k] && strcmp(n->view[k].name, v.name) == 0)
                break;
        bool same = k < n->n_view && strcmp(n->view[k].addr, v.addr) == 0;
        if (k < n->n_view)
            kept[k] = true;
        if (!same) {
            dispatch(n, SCHED_EP_ADD_OR_UPDATE, &v);
            events++;
        }
        next[i] = (struct en_view){xstrdup(v.name), xstrdup(v.host), xstrdup(v.addr), v.port};
    }
    for (size_t k = 0; k < n->n_view; k++)
        if (!kept[k]) {
            dispatch(n, SCHED_EP_DELETE, &n->view[k]);
            events++;
        }
    sched_ds_release_list(eps, m);
    free(kept);
    view_clear(n);
    n->view = next;
    n->n_view = m;
    return events;
}

static void on_tick(uv_timer_t *t)
{
    sched_notify_sync(t->data);
}

static int en_start(struct sched_plugin *self, uv_loop_t *loop, struct sched_perr *err)
{
    struct ep_notify *n = self->st;
    (void)err;
    if (n->started)
        return 0;
    uv_timer_init(loop, &n->timer);
    n->timer.data = self;
    /* first run on the loop's next turn: every plugin (extractors included) has started */
    uv_timer_start(&n->timer, on_tick, 0, EN_PERIOD_MS);
    n->started = true;
    if (!n->n_ext)
        LOG_I("sched",
              "endpoint-notification-source '%s': no extractors wired; it delivers "
              "nothing",
              self->name);
    return 0;
}

static void en_stop(struct sched_plugin *self)
{
    struct ep_notify *n = self->st;
    if (!n->started)
        return;
    n->started = false;
    uv_close((uv_handle_t *)&n->timer, NULL);
}

const struct sched_plugin_type sched_endpoint_notification_source = {
    .type = "endpoint-notification-source",
    .kind = SCHED_PK_SOURCE,
    .create = en_create,
    .destroy = en_destroy,
    .start = en_start,
    .stop = en_stop,
};

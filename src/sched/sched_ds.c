/* The endpoint datastore: a list of refcounted endpoints under an rwlock.
 *
 * Invariants: an endpoint's identity fields (name, address, role, labels) never change
 * after creation, so readers use them without locks for as long as they hold a
 * reference. An upsert of an existing name builds a new endpoint that keeps the old
 * one's id (the prefix index keeps its entries) and SHARES its mutable state (scraped
 * metrics, health, in-flight counts), and swaps it into the list; holders of the old
 * object keep a valid one until they unref it, and their scrapes and in-flight updates
 * land in the same state. Metrics are copied under the state's mutex; the router's
 * in-flight counters are atomics. Removal marks the endpoint removed, then runs the remove hooks
 * (the schedulers' prefix index purges). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "sched/sched_internal.h"

static atomic_uint next_id = 1;

struct sched_datastore *sched_ds_new(void)
{
    struct sched_datastore *ds = xcalloc(1, sizeof *ds);
    pthread_rwlock_init(&ds->lock, NULL);
    pthread_mutex_init(&ds->hooks_mu, NULL);
    atomic_init(&ds->generation, 1);
    return ds;
}

void sched_ds_free(struct sched_datastore *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        sched_endpoint_unref(ds->eps[i]);
    free(ds->eps);
    pthread_rwlock_destroy(&ds->lock);
    pthread_mutex_destroy(&ds->hooks_mu);
    free(ds);
}

enum sched_role sched_role_from_text(const char *v)
{
    if (!v)
        return SCHED_ROLE_NONE;
    if (strcmp(v, "decode") == 0)
        return SCHED_ROLE_DECODE;
    if (strcmp(v, "prefill") == 0)
        return SCHED_ROLE_PREFILL;
    /* llm-d's combined roles that serve both legs */
    if (strcmp(v, "both") == 0 || strcmp(v, "prefill-decode") == 0 ||
        strcmp(v, "encode-prefill-decode") == 0)
        return SCHED_ROLE_BOTH;
    /* encode-prefill: a prefill pod that also encodes */
    if (strcmp(v, "encode-prefill") == 0)
        return SCHED_ROLE_PREFILL;
    return SCHED_ROLE_NONE; /* encode, or unknown: role filters read the label itself */
}

static struct sched_endpoint *endpoint_new(const struct sched_endpoint_spec *spec)
{
    struct sched_endpoint *e = xcalloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    atomic_init(&e->removed, false);
    e->name = xstrdup(spec->name);
    e->host = xstrdup(spec->host);
    e->port = spec->port;
    e->addr = xasprintf("%s:%d", spec->host, spec->port);
    e->source = xstrdup(spec->source ? spec->source : "flag");
    e->name_hash = hash_str(spec->name, 0);
    e->role = spec->role;
    e->n_labels = spec->n_labels;
    for (size_t i = 0; i < spec->n_labels; i++) {
        e->labels[i].key = xstrdup(spec->labels[i].key);
        e->labels[i].value = xstrdup(spec->labels[i].value ? spec->labels[i].value : "");
    }
    /* The llm-d role label is authoritative when the spec names no role. */
    if (e->role == SCHED_ROLE_NONE)
        e->role = sched_role_from_text(sched_endpoint_label(e, "llm-d.ai/role"));
    return e;
}

static void endpoint_free(struct sched_endpoint *e)
{
    free(e->name);
    free(e->host);
    free(e->addr);
    free(e->source);
    for (size_t i = 0; i < e->n_labels; i++) {
        free(e->labels[i].key);
        free(e->labels[i].value);
    }
    if (atomic_fetch_sub_explicit(&e->st->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&e->st->mu);
        free(e->st);
    }
    free(e);
}

void sched_endpoint_ref(struct sched_endpoint *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void sched_endpoint_unref(struct sched_endpoint *e)
{
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        endpoint_free(e);
}

int sched_ds_upsert(struct sched_datastore *ds, const struct sched_endpoint_spec *spec)
{
    if (!spec || !spec->name || !spec->name[0] || !spec->host || !spec->host[0] ||
        spec->port <= 0 || spec->port > 65535 || spec->n_labels > SCHED_MAX_LABELS)
        return -EINVAL;
    for (size_t i = 0; i < spec->n_labels; i++)
        if (!spec->labels[i].key)
            return -EINVAL;
    struct sched_endpoint *e = endpoint_new(spec);
    struct sched_endpoint *old = NULL;
    pthread_rwlock_wrlock(&ds->lock);
    size_t i;
    for (i = 0; i < ds->n; i++)
        if (strcmp(ds->eps[i]->name, spec->name) == 0)
            break;
    if (i < ds->n) {
        old = ds->eps[i];
        e->id = old->id;
        e->st = old->st;
        atomic_fetch_add(&e->st->refs, 1);
        ds->eps[i] = e;
    } else {
        e->id = atomic_fetch_add(&next_id, 1);
        e->st = xcalloc(1, sizeof *e->st);
        atomic_init(&e->st->refs, 1);
        pthread_mutex_init(&e->st->mu, NULL);
        if (ds->n == ds->cap) {
            ds->cap = ds->cap ? ds->cap * 2 : 8;
            ds->eps = xrealloc(ds->eps, ds->cap * sizeof *ds->eps);
        }
        ds->eps[ds->n++] = e;
    }
    atomic_fetch_add(&ds->generation, 1);
    pthread_rwlock_unlock(&ds->lock);
    sched_endpoint_unref(old);
    return 0;
}

bool sched_ds_remove(struct sched_datastore *ds, const char *name)
{
    struct sched_endpoint *e = NULL;
    pthread_rwlock_wrlock(&ds->lock);
    for (size_t i = 0; i < ds->n; i++) {
        if (strcmp(ds->eps[i]->name, name) == 0) {
            e = ds->eps[i];
            memmove(&ds->eps[i], &ds->eps[i + 1], (ds->n - i - 1) * sizeof *ds->eps);
            ds->n--;
            break;
        }
    }
    if (e)
        atomic_fetch_add(&ds->generation, 1);
    pthread_rwlock_unlock(&ds->lock);
    if (!e)
        return false;
    /* Marked before the purge so a racing post-pick insert sees it (prefix_index_insert). */
    atomic_store(&e->removed, true);
    pthread_mutex_lock(&ds->hooks_mu);
    for (size_t i = 0; i < ds->n_hooks; i++)
        ds->hooks[i].fn(ds->hooks[i].arg, e->id);
    pthread_mutex_unlock(&ds->hooks_mu);
    sched_endpoint_unref(e);
    return true;
}

size_t sched_ds_list_into(struct sched_datastore *ds, struct sched_endpoint **out, size_t cap)
{
    pthread_rwlock_rdlock(&ds->lock);
    size_t n = ds->n;
    if (n <= cap) {
        for (size_t i = 0; i < n; i++) {
            out[i] = ds->eps[i];
            sched_endpoint_ref(out[i]);
        }
    }
    pthread_rwlock_unlock(&ds->lock);
    return n;
}

size_t sched_ds_list(struct sched_datastore *ds, struct sched_endpoint ***out)
{
    for (;;) {
        pthread_rwlock_rdlock(&ds->lock);
        size_t n = ds->n;
        pthread_rwlock_unlock(&ds->lock);
        struct sched_endpoint **arr = xmalloc((n ? n : 1) * sizeof *arr);
        size_t got = sched_ds_list_into(ds, arr, n);
        if (got <= n) {
            *out = arr;
            return got;
        }
        free(arr); /* grew in between: try again */
    }
}

void sched_ds_release_list(struct sched_endpoint **eps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sched_endpoint_unref(eps[i]);
    free(eps);
}

struct sched_endpoint *sched_ds_find(struct sched_datastore *ds, const char *name)
{
    struct sched_endpoint *e = NULL;
    pthread_rwlock_rdlock(&ds->lock);
    for (size_t i = 0; i < ds->n; i++) {
        if (strcmp(ds->eps[i]->name, name) == 0) {
            e = ds->eps[i];
            sched_endpoint_ref(e);
            break;
        }
    }
    pthread_rwlock_unlock(&ds->lock);
    return e;
}

uint64_t sched_ds_generation(struct sched_datastore *ds)
{
    return atomic_load(&ds->generation);
}

void sched_ds_add_hook(struct sched_datastore *ds, sched_ds_remove_hook fn, void *arg)
{
    pthread_mutex_lock(&ds->hooks_mu);
    if (ds->n_hooks < SCHED_DS_MAX_HOOKS)
        ds->hooks[ds->n_hooks++] = (struct sched_ds_hook){fn, arg};
    pthread_mutex_unlock(&ds->hooks_mu);
}

void sched_ds_del_hook(struct sched_datastore *ds, sched_ds_remove_hook fn, void *arg)
{
    pthread_mutex_lock(&ds->hooks_mu);
    for (size_t i = 0; i < ds->n_hooks; i++) {
        if (ds->hooks[i].fn == fn && ds->hooks[i].arg == arg) {
            ds->hooks[i] = ds->hooks[--ds->n_hooks];
            break;
        }
    }
    pthread_mutex_unlock(&ds->hooks_mu);
}

const char *sched_endpoint_name(const struct sched_endpoint *e)
{
    return e->name;
}

const char *sched_endpoint_host(const struct sched_endpoint *e)
{
    return e->host;
}

int sched_endpoint_port(const struct sched_endpoint *e)
{
    return e->port;
}

const char *sched_endpoint_addr(const struct sched_endpoint *e)
{
    return e->addr;
}

enum sched_role sched_endpoint_role(const struct sched_endpoint *e)
{
    return e->role;
}

const char *sched_endpoint_label(const struct sched_endpoint *e, const char *key)
{
    for (size_t i = 0; i < e->n_labels; i++)
        if (strcmp(e->labels[i].key, key) == 0)
            return e->labels[i].value;
    return NULL;
}

/* min(total - base, in flight), never below 0 (the total only grows, so it is never below
 * a base read from it; guarded all the same) */
static double since_base(const _Atomic uint64_t *total, uint64_t base, int64_t inflight)
{
    uint64_t t = atomic_load_explicit(total, memory_order_relaxed);
    double sent = t > base ? (double)(t - base) : 0, in = inflight > 0 ? (double)inflight : 0;
    return sent < in ? sent : in;
}

void sched_endpoint_snapshot(const struct sched_endpoint *e, struct sched_endpoint_metrics *out)
{
    struct sched_endpoint_state *st = e->st;
    pthread_mutex_lock(&st->mu);
    *out = st->m;
    pthread_mutex_unlock(&st->mu);
    out->inflight_requests = atomic_load_explicit(&st->inflight_requests, memory_order_relaxed);
    out->inflight_tokens = atomic_load_explicit(&st->inflight_tokens, memory_order_relaxed);
    out->pending_requests = out->pending_tokens = 0;
    if (out->have && out->sent_base_requests != UINT64_MAX) {
        /* sent since the scrape and not finished: at most what is in flight now */
        out->pending_requests =
            since_base(&st->sent_requests, out->sent_base_requests, out->inflight_requests);
        out->pending_tokens =
            since_base(&st->sent_tokens, out->sent_base_tokens, out->inflight_tokens);
    }
}

void sched_endpoint_sent(const struct sched_endpoint *e, uint64_t *requests, uint64_t *tokens)
{
    *requests = atomic_load_explicit(&e->st->sent_requests, memory_order_relaxed);
    *tokens = atomic_load_explicit(&e->st->sent_tokens, memory_order_relaxed);
}

void sched_endpoint_set_scraped(struct sched_endpoint *e, const struct sched_endpoint_metrics *m)
{
    struct sched_endpoint_state *st = e->st;
    pthread_mutex_lock(&st->mu);
    st->m = *m;
    st->m.running_loras[sizeof st->m.running_loras - 1] = 0;
    st->m.waiting_loras[sizeof st->m.waiting_loras - 1] = 0;
    pthread_mutex_unlock(&st->mu);
}

void sched_endpoint_set_health(struct sched_endpoint *e, bool healthy)
{
    pthread_mutex_lock(&e->st->mu);
    e->st->m.healthy = healthy;
    pthread_mutex_unlock(&e->st->mu);
}

void sched_endpoint_set_blocked(struct sched_endpoint *e, bool blocked)
{
    atomic_store(&e->st->blocked, blocked);
}

bool sched_endpoint_blocked(const struct sched_endpoint *e)
{
    return atomic_load(&e->st->blocked);
}

void sched_endpoint_inflight_add(struct sched_endpoint *e, int64_t requests, int64_t tokens)
{
    atomic_fetch_add_explicit(&e->st->inflight_requests, requests, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->st->inflight_tokens, tokens, memory_order_relaxed);
    if (requests > 0) {
        atomic_fetch_add_explicit(&e->st->sent_requests, (uint64_t)requests, memory_order_relaxed);
        if (tokens > 0)
            atomic_fetch_add_explicit(&e->st->sent_tokens, (uint64_t)tokens, memory_order_relaxed);
    }
}

const char *sched_endpoint_source(const struct sched_endpoint *e)
{
    return e->source;
}

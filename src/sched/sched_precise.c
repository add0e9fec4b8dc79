/* precise-prefix-cache-scorer (llm-d): scores endpoints by the KV blocks their engines
 * really hold, as reported by the engines' KV events (vLLM's --kv-events-config), not by
 * the router's own guess of past routing.
 *
 * It owns three things:
 *  - an index block hash -> set of pods (kvindex.h: one 8-byte entry per (block, pod),
 *    Robin Hood table 0.6-0.9 full, growing by 1.5x), holding up to
 *    indexerConfig.kvBlockIndexConfig.inMemoryConfig.size distinct blocks (beyond that,
 *    new blocks are dropped and counted; a block already held takes more pods). A pod is
 *    a slot (at most 64) named by the pod part of the event topic "kv@<pod>@<model>"
 *    ("10.0.0.5" or "10.0.0.5:8000").
 *  - a ZMQ SUB socket BOUND at kvEventsConfig.zmqEndpoint (engines' PUB sockets connect
 *    to it), subscribed to topicFilter. It is opened by sched_start on the router's control
 *    loop and drained there (uv_poll on ZMQ_FD, edge-triggered, so every wake-up drains
 *    with ZMQ_DONTWAIT until EAGAIN, at most PP_DRAIN_MAX batches; a 100 ms timer drains
 *    too, for a missed edge or what the cap left).
 *  - the score: the request's block keys (tok_block_hashes over its token ids with the
 *    configured blockSize and seed tok_hash_seed(model, hashSeed): the tandem sim's keys;
 *    with tokenProcessorConfig.hashAlgo "sha256_cbor", vLLM's keys, tok_vllm_block_keys),
 *    then per candidate the longest run of leading blocks its pod holds, divided by the
 *    request's block count (llm-d's absolute normalization).
 *
 *  - per-pod SUB sockets (kvEventsConfig.discoverPods + podDiscoveryConfig.socketPort):
 *    CONNECTED to tcp://<endpoint host>:<socketPort>, one per endpoint, keyed by its
 *    datastore name. With an endpoint-notification-source wired to this scorer
 *    (dataLayer.sources[].extractors) they follow its add/update/delete events: a delete
 *    closes the socket and drops that pod's blocks from the index. Without one, llm-d's
 *    legacy path: endpoints seen while scoring get a subscriber (workers queue them, the
 *    control loop opens them through a uv_async), never torn down. Events arriving on a
 *    per-pod socket belong to that endpoint ("host:port"), whatever their topic says.
 *  - speculative entries (speculativeIndexing): after a pick, the request's block keys for
 *    the picked endpoint (and the P/D prefill endpoint) go into a second table of the same
 *    shape, with a FIFO of expiry times (speculativeTTL, default 2 s); scoring reads both
 *    tables; a real BlockStored for (block, pod) confirms the entry (it moves to the real
 *    table), expiry removes what is left. Expiry runs on the 100 ms timer and before each
 *    speculative insert, so an entry lives TTL to TTL + 100 ms.
 *
 * Threads: the control loop is the only writer of events and subscribers; router workers
 * score and add speculative entries concurrently. The index, the speculative table and
 * the pod table are under one rwlock; the legacy path's queue under its own mutex. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <zmq.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "sched/kvevents.h"
#include "sched/kvindex.h"
#include "sched/sched_internal.h"
#include "tokenize/tokenize.h"

#define PP_MAX_PODS KVIX_MAX_PODS
#define PP_POD_ID_MAX 128
#define PP_DEFAULT_MAX_KEYS 100000000ull /* llm-d's inMemoryConfig.size default */

struct pp_index {
    struct kvix t; /* (block, pod) entries */
    char pods[PP_MAX_PODS][PP_POD_ID_MAX];
    size_t n_pods;
    uint64_t pods_refused;
};

struct precise {
    pthread_rwlock_t lock; /* guards ix */
    struct pp_index ix;
    uint32_t block_size;
    uint64_t hash_seed;
    bool vllm_keys;     /* tokenProcessorConfig.hashAlgo: "sha256_cbor" */
    char seed_text[64]; /* hashSeed as given: vLLM's PYTHONHASHSEED text for sha256_cbor */
    size_t max_blocks;  /* maxPrefixBlocksToMatch (0: SCHED_MAX_PREFIX_BLOCKS) */
    char *endpoint;
    char *topic_filter;
    /* ZMQ and loop side: control loop thread only */
    void *zctx, *sock;
    uv_poll_t poll;
    uv_timer_t timer;
    bool started;
    uint64_t batches, events, bad, sock_errors;
    /* indexerConfig.kvBlockIndexConfig.enableMetrics: llm-d's kvcache_index_* counters */
    bool metrics;
    _Atomic uint64_t admissions, evictions, lookups, lookup_hits;
    /* discoverPods: per-pod subscribers (control loop only) */
    bool discover;
    int socket_port;
    bool wired; /* an endpoint-notification-source drives them (set at load) */
    struct pp_sub **subs;
    size_t n_subs;
    uv_loop_t *loop;
    uv_async_t async;
    /* legacy path: endpoints seen while scoring, queued for the control loop */
    pthread_mutex_t pend_mu;
    struct pp_pend {
        char name[128], host[64], addr[80];
    } * pend;
    size_t n_pend, cap_pend;
    char (*seen)[128];
    size_t n_seen;
    /* speculativeIndexing (under lock) */
    bool spec_on;
    uint64_t spec_ttl_ns;
    struct pp_index spec;
    struct pp_spec {
        uint64_t expire_ns;
        uint64_t pods;
        size_t n;
        uint64_t *keys;
    } * specq;
    size_t spec_head, spec_n, spec_cap;
    _Atomic uint64_t spec_added, spec_expired;
    atomic_bool legacy_ready; /* the async handle exists: workers may queue */
};

struct pp_sub {
    struct precise *st;
    char name[128];
    char pod[PP_POD_ID_MAX]; /* "host:port": the pod its events belong to */
    char url[160];
    void *sock;
    uv_poll_t poll;
};

/* --- index --------------------------------------------------------------------------------- */

static void pp_index_init(struct pp_index *ix, size_t max_keys)
{
    memset(ix, 0, sizeof *ix);
    kvix_init(&ix->t, max_keys);
}

static void pp_index_free(struct pp_index *ix)
{
    kvix_free(&ix->t);
}

/* Returns whether the pod was not holding the block yet. */
static bool pp_add(struct pp_index *ix, uint64_t hash, int pod)
{
    return kvix_add(&ix->t, hash, pod);
}

/* Returns whether the pod was holding the block. */
static bool pp_remove(struct pp_index *ix, uint64_t hash, int pod)
{
    return kvix_remove(&ix->t, hash, pod);
}

/* Returns how many blocks the pod held. */
static uint64_t pp_clear_pod(struct pp_index *ix, int pod)
{
    return kvix_clear_pod(&ix->t, pod);
}

/* The pod slot named id (len bytes), created when create is set; -1 if none / full. */
static int pp_pod(struct pp_index *ix, const char *id, size_t len, bool create)
{
    if (len == 0 || len >= PP_POD_ID_MAX)
        return -1;
    for (size_t i = 0; i < ix->n_pods; i++)
        if (strlen(ix->pods[i]) == len && !memcmp(ix->pods[i], id, len))
            return (int)i;
    if (!create)
        return -1;
    for (size_t i = 0; i < ix->n_pods; i++)
        if (!ix->pods[i][0]) { /* freed by a subscriber's teardown */
            memcpy(ix->pods[i], id, len);
            ix->pods[i][len] = 0;
            return (int)i;
        }
    if (ix->n_pods == PP_MAX_PODS) {
        if (!ix->pods_refused++)
            LOG_W("sched",
                  "precise-prefix-cache-scorer: more than %d pods publish KV events; "
                  "events from the others are ignored",
                  PP_MAX_PODS);
        return -1;
    }
    memcpy(ix->pods[ix->n_pods], id, len);
    ix->pods[ix->n_pods][len] = 0;
    return (int)ix->n_pods++;
}

/* --- ingestion ------------------------------------------------------------------------------- */

/* The pod of topic "kv@<pod>@<model>" (a topic without '@' is the pod itself). */
static void topic_pod(const char *t, size_t n, const char **pod, size_t *len)
{
    const char *a = memchr(t, '@', n);
    if (!a) {
        *pod = t;
        *len = n;
        return;
    }
    const char *p = a + 1;
    const char *b = memchr(p, '@', (size_t)(t + n - p));
    *pod = p;
    *len = (size_t)((b ? b : t + n) - p);
}

/* Applies one batch to the pod named pod[0..plen). */
static int apply_pod(struct precise *st, const char *pod, size_t plen, const uint8_t *payload,
                     size_t n, char *err, size_t errlen)
{
    struct kvev_batch b;
    if (kvev_decode(payload, n, &b, err, errlen) < 0) {
        st->bad++;
        return -EINVAL;
    }
    pthread_rwlock_wrlock(&st->lock);
    int slot = pp_pod(&st->ix, pod, plen, true);
    uint64_t added = 0, removed = 0;
    for (size_t i = 0; slot >= 0 && i < b.n_events; i++) {
        const struct kvev_event *e = &b.events[i];
        switch (e->type) {
        case KVEV_BLOCK_STORED:
            for (uint32_t j = 0; j < e->n_hashes; j++) {
                added += pp_add(&st->ix, e->hashes[j], slot);
                if (st->spec.t.n) /* confirmed: the real entry replaces the speculative one */
                    pp_remove(&st->spec, e->hashes[j], slot);
            }
            break;
        case KVEV_BLOCK_REMOVED:
            for (uint32_t j = 0; j < e->n_hashes; j++)
                removed += pp_remove(&st->ix, e->hashes[j], slot);
            break;
        case KVEV_ALL_BLOCKS_CLEARED:
            removed += pp_clear_pod(&st->ix, slot);
            pp_clear_pod(&st->spec, slot);
            break;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    st->admissions += added;
    st->evictions += removed;
    st->batches++;
    st->events += b.n_events;
    kvev_batch_free(&b);
    return 0;
}

int sched_precise_apply(void *state, const char *topic, size_t topic_len, const uint8_t *payload,
                        size_t n, char *err, size_t errlen)
{
    const char *pod;
    size_t plen;
    topic_pod(topic, topic_len, &pod, &plen);
    return apply_pod(state, pod, plen, payload, n, err, errlen);
}

void sched_precise_index_size(void *state, size_t *entries, size_t *table_bytes)
{
    struct precise *st = state;
    pthread_rwlock_rdlock(&st->lock);
    *entries = st->ix.t.n;
    *table_bytes = kvix_bytes(&st->ix.t);
    pthread_rwlock_unlock(&st->lock);
}

size_t sched_precise_blocks(void *state)
{
    struct precise *st = state;
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->ix.t.n_blocks;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* --- ZMQ on the control loop ------------------------------------------------------------------ */

/* At most this many batches per wake-up, so a flood cannot hold the control loop (the
 * scraper, discovery); the 100 ms timer picks up the rest. */
#define PP_DRAIN_MAX 4096

/* Drains sock; pod names the pod of a per-pod socket (NULL: the topic's pod). */
static void drain_sock(struct precise *st, void *sock, const char *pod)
{
    for (int k = 0; k < PP_DRAIN_MAX; k++) {
        zmq_msg_t f[3];
        size_t nf = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                if (errno != EAGAIN)
                    st->sock_errors++;
                for (size_t i = 0; i < nf; i++)
                    zmq_msg_close(&f[i]);
                return; /* a multipart message arrives whole, so EAGAIN is at a boundary */
            }
            more = zmq_msg_more(&m);
            if (nf < 3) { /* moved, not copied: a small message's data lives in the struct */
                zmq_msg_init(&f[nf]);
                zmq_msg_move(&f[nf++], &m);
            }
            zmq_msg_close(&m);
        }
        if (nf == 3) {
            char err[160];
            int rc = pod ? apply_pod(st, pod, strlen(pod), zmq_msg_data(&f[2]), zmq_msg_size(&f[2]),
                                     err, sizeof err)
                         : sched_precise_apply(st, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]),
                                               zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), err,
                                               sizeof err);
            if (rc < 0 && st->bad == 1)
                LOG_W("sched",
                      "precise-prefix-cache-scorer: bad KV event batch (%s); later "
                      "ones are counted only",
                      err);
        } else {
            st->bad++;
        }
        for (size_t i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}

static void drain(struct precise *st)
{
    if (st->sock)
        drain_sock(st, st->sock, NULL);
    for (size_t i = 0; i < st->n_subs; i++)
        drain_sock(st, st->subs[i]->sock, st->subs[i]->pod);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct precise *st = h->data;
    if (st->sock)
        drain_sock(st, st->sock, NULL);
}

static void spec_expire_locked(struct precise *st, uint64_t now);

static void on_timer(uv_timer_t *t)
{
    struct precise *st = t->data;
    drain(st);
    if (st->spec_on) {
        pthread_rwlock_wrlock(&st->lock);
        spec_expire_locked(st, clock_monotonic_ns());
        pthread_rwlock_unlock(&st->lock);
    }
}

/* --- per-pod subscribers (control loop) ------------------------------------------------------ */

static void on_sub_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct pp_sub *sub = h->data;
    drain_sock(sub->st, sub->sock, sub->pod);
}

static void sub_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Closes sub (freed in its close callback); drop: forget the pod's blocks too. */
static void sub_close(struct precise *st, size_t i, bool drop)
{
    struct pp_sub *sub = st->subs[i];
    st->subs[i] = st->subs[--st->n_subs];
    drain_sock(st, sub->sock, sub->pod);             /* what it already received is still true */
    uv_close((uv_handle_t *)&sub->poll, sub_closed); /* stops watching the fd now */
    zmq_close(sub->sock);
    sub->sock = NULL;
    uint64_t held = 0;
    if (drop) {
        pthread_rwlock_wrlock(&st->lock);
        int slot = pp_pod(&st->ix, sub->pod, strlen(sub->pod), false);
        if (slot >= 0) {
            held = pp_clear_pod(&st->ix, slot);
            pp_clear_pod(&st->spec, slot);
            for (size_t k = st->spec_head; k < st->spec_n; k++)
                st->specq[k].pods &= ~(1ull << slot);
            st->ix.pods[slot][0] = 0; /* the slot is free for another pod */
        }
        pthread_rwlock_unlock(&st->lock);
        st->evictions += held;
    }
    LOG_I("sched",
          "precise-prefix-cache-scorer: KV events subscriber for endpoint '%s' (%s) "
          "closed, %" PRIu64 " blocks dropped",
          sub->name, sub->url, held);
}

static void sub_close_name(struct precise *st, const char *name)
{
    for (size_t i = 0; i < st->n_subs; i++)
        if (!strcmp(st->subs[i]->name, name)) {
            sub_close(st, i, true);
            return;
        }
}

/* llm-d's EnsureSubscriber: a subscriber for endpoint name at tcp://host:socketPort; the
 * same URL again is a no-op, a new one replaces it. */
static void sub_ensure(struct precise *st, const char *name, const char *host, const char *addr)
{
    char url[160];
    snprintf(url, sizeof url, strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", host,
             st->socket_port);
    for (size_t i = 0; i < st->n_subs; i++) {
        if (strcmp(st->subs[i]->name, name) != 0)
            continue;
        if (!strcmp(st->subs[i]->url, url) && !strcmp(st->subs[i]->pod, addr))
            return;
        sub_close(st, i, true);
        break;
    }
    if (!st->zctx || strlen(name) >= sizeof st->subs[0]->name || strlen(addr) >= PP_POD_ID_MAX)
        return;
    void *sock = zmq_socket(st->zctx, ZMQ_SUB);
    int zero = 0, fd = -1;
    size_t fdl = sizeof fd;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    if (strchr(host, ':')) {
        int one = 1;
        zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one);
    }
    zmq_setsockopt(sock, ZMQ_SUBSCRIBE, st->topic_filter, strlen(st->topic_filter));
    if (zmq_connect(sock, url) != 0 || zmq_getsockopt(sock, ZMQ_FD, &fd, &fdl) != 0) {
        LOG_W("sched",
              "precise-prefix-cache-scorer: cannot connect a KV events subscriber for "
              "endpoint '%s' to %s: %s",
              name, url, zmq_strerror(errno));
        zmq_close(sock);
        return;
    }
    struct pp_sub *sub = xcalloc(1, sizeof *sub);
    sub->st = st;
    snprintf(sub->name, sizeof sub->name, "%s", name);
    snprintf(sub->pod, sizeof sub->pod, "%s", addr);
    snprintf(sub->url, sizeof sub->url, "%s", url);
    sub->sock = sock;
    uv_poll_init(st->loop, &sub->poll, fd);
    sub->poll.data = sub;
    uv_poll_start(&sub->poll, UV_READABLE, on_sub_poll);
    st->subs = xrealloc(st->subs, (st->n_subs + 1) * sizeof *st->subs);
    st->subs[st->n_subs++] = sub;
    LOG_I("sched",
          "precise-prefix-cache-scorer: KV events subscriber for endpoint '%s' "
          "connected to %s",
          name, url);
}

static void pp_extract_endpoint(struct sched_plugin *self, const struct sched_endpoint_event *ev)
{
    struct precise *st = self->st;
    if (!st->discover || !st->started)
        return; /* llm-d: a no-op without discoverPods */
    if (ev->type == SCHED_EP_DELETE)
        sub_close_name(st, ev->name);
    else
        sub_ensure(st, ev->name, ev->host, ev->addr);
}

/* Legacy path: the endpoints workers saw while scoring, opened here. */
static void on_async(uv_async_t *a)
{
    struct precise *st = a->data;
    pthread_mutex_lock(&st->pend_mu);
    struct pp_pend *p = st->pend;
    size_t n = st->n_pend;
    st->pend = NULL;
    st->n_pend = st->cap_pend = 0;
    pthread_mutex_unlock(&st->pend_mu);
    for (size_t i = 0; i < n; i++)
        sub_ensure(st, p[i].name, p[i].host, p[i].addr);
    free(p);
}

/* Worker side of the legacy path: queue the endpoints not seen yet. */
static void legacy_note(struct precise *st, struct sched_endpoint *const *eps, const uint16_t *in,
                        size_t n)
{
    bool wake = false;
    pthread_mutex_lock(&st->pend_mu);
    for (size_t i = 0; i < n; i++) {
        const struct sched_endpoint *e = eps[in[i]];
        const char *name = sched_endpoint_name(e);
        size_t k;
        for (k = 0; k < st->n_seen; k++)
            if (!strcmp(st->seen[k], name))
                break;
        if (k < st->n_seen || strlen(name) >= 128 || strlen(sched_endpoint_addr(e)) >= 80)
            continue;
        st->seen = xrealloc(st->seen, (st->n_seen + 1) * sizeof *st->seen);
        snprintf(st->seen[st->n_seen++], 128, "%s", name);
        if (st->n_pend == st->cap_pend) {
            st->cap_pend = st->cap_pend ? st->cap_pend * 2 : 8;
            st->pend = xrealloc(st->pend, st->cap_pend * sizeof *st->pend);
        }
        struct pp_pend *p = &st->pend[st->n_pend++];
        snprintf(p->name, sizeof p->name, "%s", name);
        snprintf(p->host, sizeof p->host, "%s", sched_endpoint_host(e));
        snprintf(p->addr, sizeof p->addr, "%s", sched_endpoint_addr(e));
        wake = true;
    }
    /* under the mutex: pp_stop clears legacy_ready under it before closing the handle */
    if (wake && atomic_load(&st->legacy_ready))
        uv_async_send(&st->async);
    pthread_mutex_unlock(&st->pend_mu);
}

size_t sched_precise_subscribers(void *state, char names[][128], size_t cap)
{
    struct precise *st = state;
    for (size_t i = 0; i < st->n_subs && i < cap; i++)
        snprintf(names[i], 128, "%s", st->subs[i]->name);
    return st->n_subs;
}

static int pp_start(struct sched_plugin *self, uv_loop_t *loop, struct sched_perr *err)
{
    struct precise *st = self->st;
    if (st->started)
        return 0;
    st->zctx = zmq_ctx_new();
    st->loop = loop;
    if (st->endpoint[0]) {
        /* llm-d's "local-subscriber": the global socket engines connect to */
        st->sock = zmq_socket(st->zctx, ZMQ_SUB);
        int zero = 0;
        zmq_setsockopt(st->sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(st->sock, ZMQ_SUBSCRIBE, st->topic_filter, strlen(st->topic_filter));
        int fd = -1;
        size_t fdl = sizeof fd;
        if (zmq_bind(st->sock, st->endpoint) != 0 ||
            zmq_getsockopt(st->sock, ZMQ_FD, &fd, &fdl) != 0) {
            sched_perr_set(err, "kvEventsConfig.zmqEndpoint", "cannot bind '%s': %s", st->endpoint,
                           zmq_strerror(errno));
            zmq_close(st->sock);
            zmq_ctx_term(st->zctx);
            st->sock = st->zctx = NULL;
            return -1;
        }
        uv_poll_init(loop, &st->poll, fd);
        st->poll.data = st;
        uv_poll_start(&st->poll, UV_READABLE, on_poll);
    }
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    uv_timer_start(&st->timer, on_timer, 100, 100);
    if (st->discover && !st->wired) {
        uv_async_init(loop, &st->async, on_async);
        st->async.data = st;
        atomic_store(&st->legacy_ready, true);
    }
    st->started = true;
    LOG_I("sched",
          "precise-prefix-cache-scorer: KV events SUB %s%s (topic filter '%s'), %s, "
          "block size %u, hash seed %" PRIu64,
          st->endpoint[0] ? "bound at " : "", st->endpoint[0] ? st->endpoint : "not bound",
          st->topic_filter,
          !st->discover ? "no per-pod subscribers"
          : st->wired   ? "per-pod subscribers from endpoint-notification-source"
                        : "per-pod subscribers for endpoints seen while scoring (legacy)",
          st->block_size, st->hash_seed);
    return 0;
}

static void pp_stop(struct sched_plugin *self)
{
    struct precise *st = self->st;
    if (!st->started)
        return;
    st->started = false;
    /* the global socket stays open until destroy: its poll handle watches the fd until closed */
    if (st->sock)
        uv_close((uv_handle_t *)&st->poll, NULL);
    uv_close((uv_handle_t *)&st->timer, NULL);
    pthread_mutex_lock(&st->pend_mu);
    bool legacy = atomic_exchange(&st->legacy_ready, false);
    pthread_mutex_unlock(&st->pend_mu);
    if (legacy)
        uv_close((uv_handle_t *)&st->async, NULL);
    while (st->n_subs)
        sub_close(st, st->n_subs - 1, false);
}

/* --- plugin --------------------------------------------------------------------------------- */

static void pp_destroy(void *state)
{
    struct precise *st = state;
    if (!st)
        return;
    if (st->sock)
        zmq_close(st->sock);
    if (st->zctx)
        zmq_ctx_term(st->zctx);
    pp_index_free(&st->ix);
    pp_index_free(&st->spec);
    for (size_t k = st->spec_head; k < st->spec_n; k++)
        free(st->specq[k].keys);
    free(st->specq);
    free(st->subs);
    free(st->pend);
    free(st->seen);
    pthread_mutex_destroy(&st->pend_mu);
    pthread_rwlock_destroy(&st->lock);
    free(st->endpoint);
    free(st->topic_filter);
    free(st);
}

/* Sub-object key check that names the path ("indexerConfig.kvBlockIndexConfig.size"). */
static bool sub_obj(const json_t *parent, const char *key, const char *path,
                    const char *const *keys, const json_t **out, struct sched_perr *err)
{
    const json_t *v = parent ? json_object_get(parent, key) : NULL;
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v)) {
        sched_perr_set(err, path, "must be a mapping");
        return false;
    }
    struct sched_perr sub = {{0}, {0}};
    if (keys && !sched_param_check_keys(v, keys, &sub)) {
        snprintf(err->field, sizeof err->field, "%.40s.%.50s", path, sub.field);
        snprintf(err->why, sizeof err->why, "%s", sub.why);
        return false;
    }
    *out = v;
    return true;
}

static int sub_err(struct sched_perr *err, const char *path, const struct sched_perr *sub)
{
    snprintf(err->field, sizeof err->field, "%.40s.%.50s", path, sub->field);
    snprintf(err->why, sizeof err->why, "%s", sub->why);
    return -1;
}

static int token_processor(const json_t *tp, const char *path, struct precise *st,
                           struct sched_perr *err)
{
    struct sched_perr sub = {{0}, {0}};
    long long bs = 0;
    int r = sched_param_int(tp, "blockSize", &bs, &sub);
    if (r < 0)
        return sub_err(err, path, &sub);
    if (r > 0) {
        if (bs < 1 || bs > 4096) {
            sched_perr_set(err, "tokenProcessorConfig.blockSize", "must be in [1, 4096], got %lld",
                           bs);
            return -1;
        }
        st->block_size = (uint32_t)bs;
    }
    const json_t *hs = json_object_get(tp, "hashSeed");
    if (hs && json_is_string(hs) && json_string_value(hs)[0]) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(json_string_value(hs), &end, 10);
        if (errno || *end || json_string_value(hs)[0] == '-') {
            sched_perr_set(err, "tokenProcessorConfig.hashSeed",
                           "must be a decimal integer (vLLM's PYTHONHASHSEED), got '%s'",
                           json_string_value(hs));
            return -1;
        }
        st->hash_seed = v;
        snprintf(st->seed_text, sizeof st->seed_text, "%s", json_string_value(hs));
    } else if (hs && json_is_integer(hs) && json_integer_value(hs) >= 0) {
        st->hash_seed = (uint64_t)json_integer_value(hs);
        snprintf(st->seed_text, sizeof st->seed_text, "%llu", (unsigned long long)st->hash_seed);
    } else if (hs && !json_is_null(hs) && !json_is_string(hs)) {
        sched_perr_set(err, "tokenProcessorConfig.hashSeed", "must be a string");
        return -1;
    }
    const json_t *ha = json_object_get(tp, "hashAlgo");
    if (ha && !json_is_null(ha)) {
        const char *a = json_is_string(ha) ? json_string_value(ha) : NULL;
        if (a && !strcmp(a, "sha256_cbor")) {
            st->vllm_keys = true;
        } else if (!a || strcmp(a, "tandem") != 0) {
            sched_perr_set(err, "tokenProcessorConfig.hashAlgo",
                           "must be 'tandem' or 'sha256_cbor', got %s%s%s", a ? "'" : "",
                           a ? a : "a non-string", a ? "'" : "");
            return -1;
        }
    }
    return 0;
}

/* engineType: vLLM's event format is the one tandem decodes. */
static int engine_type(const json_t *obj, const char *path, struct sched_perr *err)
{
    const json_t *v = json_object_get(obj, "engineType");
    if (!v || json_is_null(v) ||
        (json_is_string(v) && (!json_string_value(v)[0] || !strcmp(json_string_value(v), "vllm"))))
        return 0;
    sched_perr_set(err, path, "tandem decodes vLLM's KV events only (engineType: vllm)");
    return -1;
}

static int pp_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"tokenProcessorConfig", "indexerConfig",  "kvEventsConfig",
                                       "speculativeIndexing",  "speculativeTTL", NULL};
    static const char *const tp_keys[] = {"blockSize", "hashSeed", "hashAlgo", NULL};
    /* llm-d-kv-cache's kvevents.Config, across its current versions */
    static const char *const ev_keys[] = {"zmqEndpoint",   "topicFilter",        "concurrency",
                                          "maxQueueDepth", "engineType",         "tracing",
                                          "discoverPods",  "podDiscoveryConfig", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    struct precise *st = xcalloc(1, sizeof *st);
    pthread_rwlock_init(&st->lock, NULL);
    pthread_mutex_init(&st->pend_mu, NULL);
    st->block_size = 16;
    st->spec_ttl_ns = 2000000000ull; /* llm-d's defaultSpeculativeTTL */
    size_t max_keys = PP_DEFAULT_MAX_KEYS;
    const char *endpoint = "tcp://*:5557", *filter = "kv@";
    char not_applied[1024] = "";
#define NOTE(s)                                                                                    \
    snprintf(not_applied + strlen(not_applied), sizeof not_applied - strlen(not_applied), "%s%s",  \
             not_applied[0] ? ", " : "", s)
    const json_t *tp, *ix, *kv, *ev;
    struct sched_perr sub = {{0}, {0}};
    if (!sub_obj(params, "tokenProcessorConfig", "tokenProcessorConfig", tp_keys, &tp, err) ||
        (tp && token_processor(tp, "tokenProcessorConfig", st, err) < 0))
        goto fail;
    if (!sub_obj(params, "indexerConfig", "indexerConfig", NULL, &ix, err))
        goto fail;
    if (ix) {
        const json_t *itp;
        /* older llm-d configs nest tokenProcessorConfig in indexerConfig */
        if (!sub_obj(ix, "tokenProcessorConfig", "indexerConfig.tokenProcessorConfig", tp_keys,
                     &itp, err) ||
            (itp && token_processor(itp, "indexerConfig.tokenProcessorConfig", st, err) < 0))
            goto fail;
        if (!sub_obj(ix, "kvBlockIndexConfig", "indexerConfig.kvBlockIndexConfig", NULL, &kv, err))
            goto fail;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)ix, k, v)
        {
            if (strcmp(k, "tokenProcessorConfig") && strcmp(k, "kvBlockIndexConfig"))
                NOTE(k);
        }
        if (kv) {
            long long m = 0;
            int r = sched_param_int(kv, "maxPrefixBlocksToMatch", &m, &sub);
            if (r < 0) {
                sub_err(err, "indexerConfig.kvBlockIndexConfig", &sub);
                goto fail;
            }
            if (r > 0 && m > 0)
                st->max_blocks = (size_t)m;
            const json_t *mem = json_object_get(kv, "inMemoryConfig");
            long long size = 0;
            if (mem && json_is_object(mem) && sched_param_int(mem, "size", &size, &sub) > 0 &&
                size > 0)
                max_keys = (size_t)size;
            if (sched_param_bool(kv, "enableMetrics", &st->metrics, &sub) < 0) {
                sub_err(err, "indexerConfig.kvBlockIndexConfig", &sub);
                goto fail;
            }
            json_object_foreach((json_t *)kv, k, v)
            {
                if (strcmp(k, "maxPrefixBlocksToMatch") && strcmp(k, "inMemoryConfig") &&
                    strcmp(k, "enableMetrics"))
                    NOTE(k);
            }
            if (mem && json_object_get(mem, "podCacheSize"))
                NOTE("inMemoryConfig.podCacheSize (up to 64 pods per block)");
        }
    }
    if (!sub_obj(params, "kvEventsConfig", "kvEventsConfig", ev_keys, &ev, err))
        goto fail;
    if (ev) {
        if (sched_param_str(ev, "zmqEndpoint", &endpoint, &sub) < 0 ||
            sched_param_str(ev, "topicFilter", &filter, &sub) < 0) {
            sub_err(err, "kvEventsConfig", &sub);
            goto fail;
        }
        long long conc = 0;
        int r = sched_param_int(ev, "concurrency", &conc, &sub);
        if (r < 0) {
            sub_err(err, "kvEventsConfig", &sub);
            goto fail;
        }
        if (r > 0 && conc < 1) {
            sched_perr_set(err, "kvEventsConfig.concurrency", "must be at least 1, got %lld", conc);
            goto fail;
        }
        long long depth = 0;
        r = sched_param_int(ev, "maxQueueDepth", &depth, &sub);
        if (r < 0) {
            sub_err(err, "kvEventsConfig", &sub);
            goto fail;
        }
        if (r > 0 && depth < 0) {
            sched_perr_set(err, "kvEventsConfig.maxQueueDepth", "must not be negative, got %lld",
                           depth);
            goto fail;
        }
        if (r > 0 && depth > 0)
            NOTE("kvEventsConfig.maxQueueDepth (no queue: the control loop drains the sockets "
                 "directly, ZMQ's high-water mark bounds what waits)");
        if (json_is_true(json_object_get(ev, "tracing")))
            NOTE("kvEventsConfig.tracing (tandem has no tracing)");
        if (engine_type(ev, "kvEventsConfig.engineType", err) < 0)
            goto fail;
        if (conc > 1)
            NOTE("kvEventsConfig.concurrency (events are applied by one thread, the router's "
                 "control loop, in arrival order per pod)");
        if (sched_param_bool(ev, "discoverPods", &st->discover, &sub) < 0) {
            sub_err(err, "kvEventsConfig", &sub);
            goto fail;
        }
        static const char *const pd_keys[] = {
            "socketPort",       "podLabelSelector", "podNamespace", "replaySocketPort",
            "dataParallelSize", "rankPodMapping",   "engineType",   NULL};
        const json_t *pd;
        if (!sub_obj(ev, "podDiscoveryConfig", "kvEventsConfig.podDiscoveryConfig", pd_keys, &pd,
                     err))
            goto fail;
        if (pd) {
            long long port = 0;
            r = sched_param_int(pd, "socketPort", &port, &sub);
            if (r < 0) {
                sub_err(err, "kvEventsConfig.podDiscoveryConfig", &sub);
                goto fail;
            }
            if (r > 0 && (port < 1 || port > 65535)) {
                sched_perr_set(err, "kvEventsConfig.podDiscoveryConfig.socketPort",
                               "must be a port in [1, 65535], got %lld", port);
                goto fail;
            }
            st->socket_port = r > 0 ? (int)port : 5557; /* llm-d-kv-cache's default */
            if (json_object_get(pd, "podLabelSelector") || json_object_get(pd, "podNamespace"))
                NOTE("podDiscoveryConfig.podLabelSelector/podNamespace (pods are the "
                     "router's endpoints: its InferencePool, endpoints file or --endpoint)");
            if (json_object_get(pd, "replaySocketPort"))
                NOTE("podDiscoveryConfig.replaySocketPort (no replay: a restarted router "
                     "rebuilds its index from new events)");
            if (json_object_get(pd, "rankPodMapping"))
                NOTE("podDiscoveryConfig.rankPodMapping (one subscriber per endpoint; give "
                     "each DP rank its own endpoint)");
            if (engine_type(pd, "kvEventsConfig.podDiscoveryConfig.engineType", err) < 0)
                goto fail;
        }
        if (st->discover && !pd) {
            /* llm-d: discoverPods without podDiscoveryConfig subscribes to nothing */
            NOTE("kvEventsConfig.discoverPods without podDiscoveryConfig (no per-pod "
                 "subscribers, as in llm-d)");
            st->discover = false;
        }
    }
    const json_t *spec = params ? json_object_get(params, "speculativeIndexing") : NULL;
    if (spec && !json_is_null(spec)) {
        if (!json_is_boolean(spec)) {
            sched_perr_set(err, "speculativeIndexing", "must be true or false");
            goto fail;
        }
        st->spec_on = json_is_true(spec);
    }
    const json_t *ttl = params ? json_object_get(params, "speculativeTTL") : NULL;
    if (ttl && !json_is_null(ttl)) {
        if (!json_is_string(ttl)) {
            sched_perr_set(err, "speculativeTTL", "must be a duration string such as \"2s\"");
            goto fail;
        }
        if (json_string_value(ttl)[0] &&
            !sched_parse_duration(json_string_value(ttl), &st->spec_ttl_ns)) {
            sched_perr_set(err, "speculativeTTL",
                           "invalid duration '%s' (Go syntax: \"500ms\", \"2s\")",
                           json_string_value(ttl));
            goto fail;
        }
    }
    st->endpoint = xstrdup(endpoint);
    st->topic_filter = xstrdup(filter);
    pp_index_init(&st->ix, max_keys);
    pp_index_init(&st->spec, max_keys);
    if (not_applied[0])
        LOG_I("sched", "precise-prefix-cache-scorer: not applied by tandem: %s", not_applied);
#undef NOTE
    *state = st;
    return 0;
fail:
    pp_destroy(st);
    return -1;
}

/* The request's token ids: the engine's (token-producer) when cached, else tandem's
 * tokenizer (what the sim uses). Caller frees. */
static uint32_t *request_ids(struct sched_cycle *c, size_t max_tokens, size_t *n)
{
    uint32_t *ids = NULL;
    *n = sched_tokens_ids(c->s, c->req, &ids);
    if (ids)
        return ids;
    /* a token covers at most 4 bytes, so 4 x (max_tokens + 1) bytes give every token the
     * blocks need; only the last one may be cut, and it is past them */
    size_t len = c->req->prompt_len;
    if (len / 4 > max_tokens + 1)
        len = 4 * (max_tokens + 1);
    struct tok_result t = {0};
    tok_encode(c->req->prompt, len, TOK_DEFAULT_VOCAB, &t);
    ids = xmalloc((t.n ? t.n : 1) * sizeof *ids);
    for (size_t i = 0; i < t.n; i++)
        ids[i] = t.pieces[i].id;
    *n = t.n;
    tok_result_free(&t);
    return ids;
}

void sched_precise_score_hashes(void *state, const uint64_t *hashes, size_t nb,
                                const char *const *addrs, const char *const *hosts, size_t n,
                                double *out)
{
    struct precise *st = state;
    uint64_t *cmask = xmalloc((n ? n : 1) * sizeof *cmask);
    size_t *run = xmalloc((n ? n : 1) * sizeof *run);
    pthread_rwlock_rdlock(&st->lock);
    uint64_t live = 0;
    for (size_t i = 0; i < n; i++) {
        cmask[i] = 0;
        run[i] = 0;
        /* a pod named "host:port" is that endpoint; a pod named by IP alone is every
         * endpoint on that host (llm-d's topics carry the pod IP) */
        int s = pp_pod(&st->ix, addrs[i], strlen(addrs[i]), false);
        if (s >= 0)
            cmask[i] = 1ull << s;
        s = pp_pod(&st->ix, hosts[i], strlen(hosts[i]), false);
        if (s >= 0)
            cmask[i] |= 1ull << s;
        live |= cmask[i];
    }
    uint64_t hits = 0;
    for (size_t b = 0; b < nb && live; b++) {
        uint64_t have = kvix_pods(&st->ix.t, hashes[b]);
        hits += have != 0;
        if (st->spec.t.n)
            have |= kvix_pods(&st->spec.t, hashes[b]);
        live = 0;
        for (size_t i = 0; i < n; i++)
            if (run[i] == b && (cmask[i] & have)) {
                run[i]++;
                live |= cmask[i];
            }
    }
    pthread_rwlock_unlock(&st->lock);
    if (st->metrics) {
        st->lookups++;
        st->lookup_hits += hits;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = nb ? (double)run[i] / (double)nb : 0;
    free(cmask);
    free(run);
}

/* The request's block keys into a malloc'd array (*out, caller frees); returns how many. */
static size_t request_keys(struct precise *st, struct sched_cycle *c, uint64_t **out)
{
    size_t cap = st->max_blocks && st->max_blocks < SCHED_MAX_PREFIX_BLOCKS
                     ? st->max_blocks
                     : SCHED_MAX_PREFIX_BLOCKS;
    size_t n_ids;
    uint32_t *ids = request_ids(c, cap * st->block_size, &n_ids);
    uint64_t *hashes = xmalloc(cap * sizeof *hashes);
    size_t nb = st->vllm_keys
                    ? tok_vllm_block_keys(ids, n_ids, st->block_size, st->seed_text, hashes, cap)
                    : tok_block_hashes(ids, n_ids, st->block_size,
                                       tok_hash_seed(c->req->model, st->hash_seed), hashes, cap);
    free(ids);
    *out = hashes;
    return nb;
}

static void pp_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                     double *out)
{
    struct precise *st = self->st;
    for (size_t i = 0; i < n; i++)
        out[i] = 0;
    /* llm-d's backwards-compatible path: subscribe to the endpoints scoring sees */
    if (st->discover && !st->wired && atomic_load(&st->legacy_ready))
        legacy_note(st, c->eps, in, n);
    if (!c->req->prompt || !c->req->model || !n)
        return;
    uint64_t *hashes;
    size_t nb = request_keys(st, c, &hashes);
    const char **addrs = xmalloc(n * sizeof *addrs), **hosts = xmalloc(n * sizeof *hosts);
    for (size_t i = 0; i < n; i++) {
        addrs[i] = sched_endpoint_addr(c->eps[in[i]]);
        hosts[i] = sched_endpoint_host(c->eps[in[i]]);
    }
    sched_precise_score_hashes(st, hashes, nb, addrs, hosts, n, out);
    free(addrs);
    free(hosts);
    free(hashes);
}

/* --- speculative indexing ------------------------------------------------------------------ */

/* Under the write lock: drops the speculative entries whose time is up. */
static void spec_expire_locked(struct precise *st, uint64_t now)
{
    while (st->spec_head < st->spec_n && st->specq[st->spec_head].expire_ns <= now) {
        struct pp_spec *e = &st->specq[st->spec_head++];
        for (int pod = 0; pod < PP_MAX_PODS; pod++)
            if (e->pods >> pod & 1)
                for (size_t k = 0; k < e->n; k++)
                    pp_remove(&st->spec, e->keys[k], pod);
        free(e->keys);
        st->spec_expired++;
    }
    if (st->spec_head == st->spec_n)
        st->spec_head = st->spec_n = 0;
    else if (st->spec_head > 64 && st->spec_head * 2 > st->spec_n) {
        memmove(st->specq, st->specq + st->spec_head,
                (st->spec_n - st->spec_head) * sizeof *st->specq);
        st->spec_n -= st->spec_head;
        st->spec_head = 0;
    }
}

size_t sched_precise_expire(void *state, uint64_t now_ns)
{
    struct precise *st = state;
    pthread_rwlock_wrlock(&st->lock);
    uint64_t before = st->spec_expired;
    spec_expire_locked(st, now_ns);
    size_t n = (size_t)(st->spec_expired - before);
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* Adds keys for the endpoints named by addrs[0..n) ("host:port") as speculative entries
 * expiring at now + TTL (the test hook and post_pick share it). */
void sched_precise_speculate(void *state, const uint64_t *keys, size_t nk, const char *const *addrs,
                             size_t n, uint64_t now_ns)
{
    struct precise *st = state;
    if (!nk || !n)
        return;
    pthread_rwlock_wrlock(&st->lock);
    spec_expire_locked(st, now_ns);
    uint64_t pods = 0;
    for (size_t i = 0; i < n; i++) {
        int slot = pp_pod(&st->ix, addrs[i], strlen(addrs[i]), true);
        if (slot < 0)
            continue;
        pods |= 1ull << slot;
        for (size_t k = 0; k < nk; k++)
            pp_add(&st->spec, keys[k], slot);
    }
    if (pods) {
        if (st->spec_n == st->spec_cap) {
            st->spec_cap = st->spec_cap ? st->spec_cap * 2 : 64;
            st->specq = xrealloc(st->specq, st->spec_cap * sizeof *st->specq);
        }
        uint64_t *copy = xmalloc(nk * sizeof *copy);
        memcpy(copy, keys, nk * sizeof *copy);
        st->specq[st->spec_n++] = (struct pp_spec){now_ns + st->spec_ttl_ns, pods, nk, copy};
        st->spec_added++;
    }
    pthread_rwlock_unlock(&st->lock);
}

/* llm-d's PreRequest: the picked endpoint (and the prefill one in P/D) speculatively
 * holds the request's blocks until the engine's own events say so, or the TTL ends. */
static void pp_post_pick(struct sched_plugin *self, struct sched_cycle *c,
                         const struct sched_result *res)
{
    struct precise *st = self->st;
    if (!st->spec_on || !res->n_picks || !c->req->prompt || !c->req->model)
        return;
    uint64_t *keys;
    size_t nk = request_keys(st, c, &keys);
    const char *addrs[2];
    size_t n = 0;
    addrs[n++] = sched_endpoint_addr(res->picks[0]);
    if (res->prefill)
        addrs[n++] = sched_endpoint_addr(res->prefill);
    sched_precise_speculate(st, keys, nk, addrs, n, clock_monotonic_ns());
    free(keys);
}

static int pp_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct precise *st = self->st;
    (void)err;
    st->wired = sched_notify_wired(s, self);
    return 0;
}

const struct sched_plugin_type sched_precise_prefix_cache_scorer = {
    .type = "precise-prefix-cache-scorer",
    .kind = SCHED_PK_SCORER,
    .create = pp_create,
    .destroy = pp_destroy,
    .score = pp_score,
    .post_pick = pp_post_pick,
    .bind = pp_bind,
    .start = pp_start,
    .stop = pp_stop,
    .extract_endpoint = pp_extract_endpoint,
};

bool sched_kv_index_stats(const struct sched *s, struct sched_kv_index_stats *out)
{
    memset(out, 0, sizeof *out);
    bool any = false;
    for (size_t i = 0; s && i < s->n_plugins; i++) {
        if (s->plugins[i]->t != &sched_precise_prefix_cache_scorer)
            continue;
        struct precise *st = s->plugins[i]->st;
        if (!st->metrics)
            continue;
        any = true;
        out->admissions += st->admissions;
        out->evictions += st->evictions;
        out->lookup_requests += st->lookups;
        out->lookup_hits += st->lookup_hits;
        out->blocks += sched_precise_blocks(st);
    }
    return any;
}

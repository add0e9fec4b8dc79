/* precise-prefix-cache-scorer (llm-d): scores endpoints by the KV blocks their engines
 * really hold, as reported by the engines' KV events (vLLM's --kv-events-config), not by
 * the router's own guess of past routing.
 *
 * It owns three things:
 *  - an index block hash -> set of pods: an open-addressing table (linear probing,
 *    backward-shift deletion) of {hash, 64-bit pod mask}, 16 bytes per block, growing by
 *    doubling up to indexerConfig.kvBlockIndexConfig.inMemoryConfig.size keys (beyond
 *    that, new blocks are dropped and counted). A pod is a slot (at most 64) named by the
 *    pod part of the event topic "kv@<pod>@<model>" ("10.0.0.5" or "10.0.0.5:8000").
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
 * Threads: the control loop is the only writer (events); router workers score
 * concurrently. The index and the pod table are under one rwlock. */
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
#include "base/log.h"
#include "sched/kvevents.h"
#include "sched/sched_internal.h"
#include "tokenize/tokenize.h"

#define PP_MAX_PODS 64
#define PP_POD_ID_MAX 128
#define PP_DEFAULT_MAX_KEYS 100000000ull /* llm-d's inMemoryConfig.size default */
#define PP_MIN_CAP 1024u

struct pp_slot {
    uint64_t key; /* 0 = empty (a real hash of 0 is stored as 1) */
    uint64_t pods;
};

struct pp_index {
    struct pp_slot *tab;
    size_t cap; /* power of two */
    size_t n;
    size_t max_keys;
    uint64_t dropped; /* inserts refused at max_keys */
    char pods[PP_MAX_PODS][PP_POD_ID_MAX];
    size_t n_pods;
    uint64_t pods_refused;
};

struct precise {
    pthread_rwlock_t lock; /* guards ix */
    struct pp_index ix;
    uint32_t block_size;
    uint64_t hash_seed;
    bool vllm_keys;      /* tokenProcessorConfig.hashAlgo: "sha256_cbor" */
    char seed_text[64];  /* hashSeed as given: vLLM's PYTHONHASHSEED text for sha256_cbor */
    size_t max_blocks; /* maxPrefixBlocksToMatch (0: SCHED_MAX_PREFIX_BLOCKS) */
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
};

/* --- index --------------------------------------------------------------------------------- */

static inline uint64_t pp_key(uint64_t h)
{
    return h ? h : 1;
}

static inline size_t pp_home(const struct pp_index *ix, uint64_t key)
{
    /* hashes are already uniform (xxh64 / sha256); mix anyway for hand-made ones */
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & (ix->cap - 1);
}

static void pp_index_init(struct pp_index *ix, size_t max_keys)
{
    memset(ix, 0, sizeof *ix);
    ix->max_keys = max_keys;
}

static void pp_index_free(struct pp_index *ix)
{
    free(ix->tab);
    ix->tab = NULL;
    ix->cap = ix->n = 0;
}

static struct pp_slot *pp_find(const struct pp_index *ix, uint64_t key)
{
    if (!ix->cap)
        return NULL;
    for (size_t i = pp_home(ix, key);; i = (i + 1) & (ix->cap - 1)) {
        if (ix->tab[i].key == key)
            return &ix->tab[i];
        if (!ix->tab[i].key)
            return NULL;
    }
}

static void pp_put_raw(struct pp_index *ix, uint64_t key, uint64_t pods)
{
    size_t i = pp_home(ix, key);
    while (ix->tab[i].key && ix->tab[i].key != key)
        i = (i + 1) & (ix->cap - 1);
    if (!ix->tab[i].key) {
        ix->tab[i].key = key;
        ix->n++;
    }
    ix->tab[i].pods |= pods;
}

static void pp_rehash(struct pp_index *ix, size_t cap, int drop_pod)
{
    struct pp_slot *old = ix->tab;
    size_t old_cap = ix->cap;
    ix->tab = xcalloc(cap, sizeof *ix->tab);
    ix->cap = cap;
    ix->n = 0;
    for (size_t i = 0; i < old_cap; i++) {
        uint64_t pods = old[i].pods;
        if (drop_pod >= 0)
            pods &= ~(1ull << drop_pod);
        if (old[i].key && pods)
            pp_put_raw(ix, old[i].key, pods);
    }
    free(old);
}

/* Returns whether the pod was not holding the block yet. */
static bool pp_add(struct pp_index *ix, uint64_t hash, int pod)
{
    uint64_t key = pp_key(hash);
    struct pp_slot *s = pp_find(ix, key);
    if (s) {
        bool fresh = !(s->pods & (1ull << pod));
        s->pods |= 1ull << pod;
        return fresh;
    }
    if (ix->n >= ix->max_keys) {
        ix->dropped++;
        return false;
    }
    if (!ix->cap)
        pp_rehash(ix, PP_MIN_CAP, -1);
    else if ((ix->n + 1) * 4 > ix->cap * 3)
        pp_rehash(ix, ix->cap * 2, -1);
    pp_put_raw(ix, key, 1ull << pod);
    return true;
}

/* Returns whether the pod was holding the block. */
static bool pp_remove(struct pp_index *ix, uint64_t hash, int pod)
{
    struct pp_slot *s = pp_find(ix, pp_key(hash));
    if (!s || !(s->pods & (1ull << pod)))
        return false;
    s->pods &= ~(1ull << pod);
    if (s->pods)
        return true;
    /* backward-shift deletion keeps every probe chain unbroken without tombstones */
    size_t mask = ix->cap - 1, i = (size_t)(s - ix->tab);
    for (size_t j = (i + 1) & mask; ix->tab[j].key; j = (j + 1) & mask) {
        size_t k = pp_home(ix, ix->tab[j].key);
        if (((j - k) & mask) >= ((j - i) & mask)) {
            ix->tab[i] = ix->tab[j];
            i = j;
        }
    }
    ix->tab[i] = (struct pp_slot){0, 0};
    ix->n--;
    return true;
}

/* Returns how many blocks the pod held. */
static uint64_t pp_clear_pod(struct pp_index *ix, int pod)
{
    uint64_t held = 0;
    for (size_t i = 0; i < ix->cap; i++)
        held += (ix->tab[i].pods >> pod) & 1;
    if (held)
        pp_rehash(ix, ix->cap, pod);
    return held;
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
    if (ix->n_pods == PP_MAX_PODS) {
        if (!ix->pods_refused++)
            LOG_W("sched", "precise-prefix-cache-scorer: more than %d pods publish KV events; "
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

int sched_precise_apply(void *state, const char *topic, size_t topic_len, const uint8_t *payload,
                        size_t n, char *err, size_t errlen)
{
    struct precise *st = state;
    struct kvev_batch b;
    if (kvev_decode(payload, n, &b, err, errlen) < 0) {
        st->bad++;
        return -EINVAL;
    }
    const char *pod;
    size_t plen;
    topic_pod(topic, topic_len, &pod, &plen);
    pthread_rwlock_wrlock(&st->lock);
    int slot = pp_pod(&st->ix, pod, plen, true);
    uint64_t added = 0, removed = 0;
    for (size_t i = 0; slot >= 0 && i < b.n_events; i++) {
        const struct kvev_event *e = &b.events[i];
        switch (e->type) {
        case KVEV_BLOCK_STORED:
            for (uint32_t j = 0; j < e->n_hashes; j++)
                added += pp_add(&st->ix, e->hashes[j], slot);
            break;
        case KVEV_BLOCK_REMOVED:
            for (uint32_t j = 0; j < e->n_hashes; j++)
                removed += pp_remove(&st->ix, e->hashes[j], slot);
            break;
        case KVEV_ALL_BLOCKS_CLEARED: removed += pp_clear_pod(&st->ix, slot); break;
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

size_t sched_precise_blocks(void *state)
{
    struct precise *st = state;
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->ix.n;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* --- ZMQ on the control loop ------------------------------------------------------------------ */

/* At most this many batches per wake-up, so a flood cannot hold the control loop (the
 * scraper, discovery); the 100 ms timer picks up the rest. */
#define PP_DRAIN_MAX 4096

static void drain(struct precise *st)
{
    for (int k = 0; k < PP_DRAIN_MAX; k++) {
        zmq_msg_t f[3];
        size_t nf = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, st->sock, ZMQ_DONTWAIT) < 0) {
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
            if (sched_precise_apply(st, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]),
                                    zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), err,
                                    sizeof err) < 0 &&
                st->bad == 1)
                LOG_W("sched", "precise-prefix-cache-scorer: bad KV event batch (%s); later "
                               "ones are counted only",
                      err);
        } else {
            st->bad++;
        }
        for (size_t i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

static void on_timer(uv_timer_t *t)
{
    drain(t->data);
}

static int pp_start(struct sched_plugin *self, uv_loop_t *loop, struct sched_perr *err)
{
    struct precise *st = self->st;
    if (st->started)
        return 0;
    st->zctx = zmq_ctx_new();
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
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    uv_timer_start(&st->timer, on_timer, 100, 100);
    st->started = true;
    LOG_I("sched", "precise-prefix-cache-scorer: KV events SUB bound at %s (topic filter '%s'), "
                   "block size %u, hash seed %" PRIu64,
          st->endpoint, st->topic_filter, st->block_size, st->hash_seed);
    return 0;
}

static void pp_stop(struct sched_plugin *self)
{
    struct precise *st = self->st;
    if (!st->started)
        return;
    /* the socket stays open until destroy: the poll handle watches its fd until closed */
    uv_close((uv_handle_t *)&st->poll, NULL);
    uv_close((uv_handle_t *)&st->timer, NULL);
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

static int pp_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"tokenProcessorConfig", "indexerConfig", "kvEventsConfig",
                                       "speculativeIndexing", "speculativeTTL", NULL};
    static const char *const tp_keys[] = {"blockSize", "hashSeed", "hashAlgo", NULL};
    static const char *const ev_keys[] = {"zmqEndpoint",  "topicFilter", "concurrency",
                                          "discoverPods", "podDiscoveryConfig", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    struct precise *st = xcalloc(1, sizeof *st);
    pthread_rwlock_init(&st->lock, NULL);
    st->block_size = 16;
    size_t max_keys = PP_DEFAULT_MAX_KEYS;
    const char *endpoint = "tcp://*:5557", *filter = "kv@";
    char not_applied[256] = "";
#define NOTE(s)                                                                                \
    snprintf(not_applied + strlen(not_applied), sizeof not_applied - strlen(not_applied),      \
             "%s%s", not_applied[0] ? ", " : "", s)
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
        if (json_object_get(ev, "concurrency"))
            NOTE("concurrency");
        if (json_is_true(json_object_get(ev, "discoverPods")))
            NOTE("discoverPods (engines must connect to zmqEndpoint)");
    }
    if (params && json_is_true(json_object_get(params, "speculativeIndexing")))
        NOTE("speculativeIndexing");
    if (!endpoint[0]) {
        sched_perr_set(err, "kvEventsConfig.zmqEndpoint", "must not be empty");
        goto fail;
    }
    st->endpoint = xstrdup(endpoint);
    st->topic_filter = xstrdup(filter);
    pp_index_init(&st->ix, max_keys);
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
        if (s < 0)
            s = pp_pod(&st->ix, hosts[i], strlen(hosts[i]), false);
        if (s >= 0)
            cmask[i] = 1ull << s;
        live |= cmask[i];
    }
    uint64_t hits = 0;
    for (size_t b = 0; b < nb && live; b++) {
        const struct pp_slot *sl = pp_find(&st->ix, pp_key(hashes[b]));
        uint64_t have = sl ? sl->pods : 0;
        hits += sl != NULL;
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

static void pp_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                     double *out)
{
    struct precise *st = self->st;
    for (size_t i = 0; i < n; i++)
        out[i] = 0;
    if (!c->req->prompt || !c->req->model || !n)
        return;
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
    const char **addrs = xmalloc(n * sizeof *addrs), **hosts = xmalloc(n * sizeof *hosts);
    for (size_t i = 0; i < n; i++) {
        addrs[i] = sched_endpoint_addr(c->eps[in[i]]);
        hosts[i] = sched_endpoint_host(c->eps[in[i]]);
    }
    sched_precise_score_hashes(st, hashes, nb, addrs, hosts, n, out);
    free(addrs);
    free(hosts);
    free(hashes);
    free(ids);
}

const struct sched_plugin_type sched_precise_prefix_cache_scorer = {
    .type = "precise-prefix-cache-scorer",
    .kind = SCHED_PK_SCORER,
    .create = pp_create,
    .destroy = pp_destroy,
    .score = pp_score,
    .start = pp_start,
    .stop = pp_stop,
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

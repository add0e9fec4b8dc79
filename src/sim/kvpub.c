/* The sim's KV event publisher (sim/kvpub.h): one ZMQ PUB socket per engine, a list of
 * pending events filled by the engine's KV sink during a step, and a sequence counter.
 *
 * Invariants: pending events own their arrays until the flush that sends (or drops)
 * them; consecutive evictions merge into one BlockRemoved, as the engine reports them
 * one block at a time. Only the libuv loop thread touches a publisher; ZMQ's own I/O
 * thread (one per process, shared by every rank's socket) does the network writes.
 * With --prefix-caching-hash-algo sha256_cbor it also owns the engine key -> vLLM digest
 * map of the blocks it announced, so BlockStored/BlockRemoved carry vLLM's keys. */
#include "sim/kvpub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "sched/kvevents.h"
#include "tokenize/tokenize.h"

static void *g_ctx; /* shared by every publisher of the process */
static unsigned g_refs;

struct sim_kvpub {
    void *sock;
    char *endpoint;
    char *topic;
    uint32_t dp_rank;
    uint64_t seq;
    struct kvev_event *ev;
    size_t n_ev, cap_ev;
    struct buf out;
    uint64_t sent, dropped;
    /* --prefix-caching-hash-algo sha256_cbor: the engine's key of every stored block ->
     * its vLLM digest (open addressing, linear probing, backward-shift deletion), so
     * events carry vLLM's keys while the engine keeps its own. */
    bool vllm_keys;
    uint8_t none_hash[32];
    struct vk_slot {
        uint64_t key;
        uint8_t d[32];
        bool used;
    } * vk;
    size_t vk_cap, vk_n;
};

static size_t vk_find(const struct sim_kvpub *p, uint64_t key)
{
    size_t m = p->vk_cap - 1, i = (size_t)(key * 0x9E3779B97F4A7C15ull) & m;
    while (p->vk[i].used && p->vk[i].key != key)
        i = (i + 1) & m;
    return i;
}

static void vk_put(struct sim_kvpub *p, uint64_t key, const uint8_t d[32])
{
    if ((p->vk_n + 1) * 2 > p->vk_cap) {
        struct vk_slot *old = p->vk;
        size_t oc = p->vk_cap;
        p->vk_cap = oc ? oc * 2 : 1024;
        p->vk = xcalloc(p->vk_cap, sizeof *p->vk);
        for (size_t i = 0; i < oc; i++)
            if (old[i].used)
                p->vk[vk_find(p, old[i].key)] = old[i];
        free(old);
    }
    size_t i = vk_find(p, key);
    if (!p->vk[i].used)
        p->vk_n++;
    p->vk[i].used = true;
    p->vk[i].key = key;
    memcpy(p->vk[i].d, d, 32);
}

/* The published key of an engine key (removing it when del); the engine key itself when
 * unknown (never expected: a removed or parent block was stored first). */
static uint64_t vk_key(struct sim_kvpub *p, uint64_t key, bool del, uint8_t d[32])
{
    size_t i = p->vk_cap ? vk_find(p, key) : 0;
    if (!p->vk_cap || !p->vk[i].used) {
        memcpy(d, p->none_hash, 32);
        return key;
    }
    memcpy(d, p->vk[i].d, 32);
    uint64_t out = tok_vllm_key64(d);
    if (del) {
        size_t m = p->vk_cap - 1, j = i;
        p->vk[i].used = false;
        p->vk_n--;
        for (;;) {
            j = (j + 1) & m;
            if (!p->vk[j].used)
                break;
            size_t h = (size_t)(p->vk[j].key * 0x9E3779B97F4A7C15ull) & m;
            /* move j back into the hole i unless its home lies cyclically in (i, j] */
            if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
                p->vk[i] = p->vk[j];
                p->vk[j].used = false;
                i = j;
            }
        }
    }
    return out;
}

static struct kvev_event *push(struct sim_kvpub *p)
{
    if (p->n_ev == p->cap_ev) {
        p->cap_ev = p->cap_ev ? p->cap_ev * 2 : 16;
        p->ev = xrealloc(p->ev, p->cap_ev * sizeof *p->ev);
    }
    struct kvev_event *e = &p->ev[p->n_ev++];
    memset(e, 0, sizeof *e);
    return e;
}

static void on_stored(void *ctx, const uint64_t *hashes, uint32_t n, bool has_parent,
                      uint64_t parent, const uint32_t *tokens, uint32_t n_tokens)
{
    struct sim_kvpub *p = ctx;
    struct kvev_event *e = push(p);
    e->type = KVEV_BLOCK_STORED;
    e->n_hashes = n;
    e->hashes = xmalloc((n ? n : 1) * sizeof *e->hashes);
    memcpy(e->hashes, hashes, n * sizeof *e->hashes);
    e->has_parent = has_parent;
    e->parent = parent;
    if (p->vllm_keys && n) {
        uint8_t d[32];
        memcpy(d, p->none_hash, 32);
        if (has_parent)
            e->parent = vk_key(p, parent, false, d);
        uint32_t bs = n_tokens / n;
        for (uint32_t i = 0; i < n; i++) {
            tok_vllm_block_hash(d, tokens + (size_t)i * bs, bs, d);
            vk_put(p, hashes[i], d);
            e->hashes[i] = tok_vllm_key64(d);
        }
    }
    e->n_tokens = n_tokens;
    e->token_ids = xmalloc((n_tokens ? n_tokens : 1) * sizeof *e->token_ids);
    memcpy(e->token_ids, tokens, n_tokens * sizeof *e->token_ids);
    e->block_size = n ? n_tokens / n : 0;
    e->medium = "GPU";
}

static void on_removed(void *ctx, uint64_t hash)
{
    struct sim_kvpub *p = ctx;
    struct kvev_event *e = p->n_ev ? &p->ev[p->n_ev - 1] : NULL;
    if (!e || e->type != KVEV_BLOCK_REMOVED) {
        e = push(p);
        e->type = KVEV_BLOCK_REMOVED;
        e->medium = "GPU";
    }
    /* Grow by doubling: n_tokens doubles as the capacity of a removal's hash array. */
    if (e->n_hashes == e->n_tokens) {
        e->n_tokens = e->n_tokens ? e->n_tokens * 2 : 8;
        e->hashes = xrealloc(e->hashes, e->n_tokens * sizeof *e->hashes);
    }
    if (p->vllm_keys) {
        uint8_t d[32];
        hash = vk_key(p, hash, true, d);
    }
    e->hashes[e->n_hashes++] = hash;
}

char *sim_kvpub_offset_endpoint(const char *endpoint, uint32_t rank)
{
    if (!endpoint || !*endpoint)
        return NULL;
    if (rank == 0)
        return xstrdup(endpoint);
    if (strstr(endpoint, "inproc"))
        return xasprintf("%s_dp%u", endpoint, rank);
    if (strstr(endpoint, "tcp")) {
        const char *colon = strrchr(endpoint, ':');
        if (!colon)
            return xstrdup(endpoint);
        char *end = NULL;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || port < 0 || port + (long)rank > 65535)
            return NULL;
        return xasprintf("%.*s:%ld", (int)(colon - endpoint), endpoint, port + (long)rank);
    }
    return NULL;
}

static bool binds(const char *ep)
{
    return strchr(ep, '*') || strstr(ep, "::") || strncmp(ep, "ipc://", 6) == 0 ||
           strncmp(ep, "inproc://", 9) == 0;
}

struct sim_kvpub *sim_kvpub_new(const struct sim_kvpub_config *cfg, struct sim_engine *e,
                                char *err, size_t errlen)
{
    char *ep = sim_kvpub_offset_endpoint(cfg->endpoint, cfg->dp_rank);
    if (!ep) {
        snprintf(err, errlen, "kv events endpoint '%s': expected tcp://HOST:PORT, ipc:// or inproc://",
                 cfg->endpoint ? cfg->endpoint : "");
        return NULL;
    }
    if (!g_ctx)
        g_ctx = zmq_ctx_new();
    g_refs++;
    void *sock = zmq_socket(g_ctx, ZMQ_PUB);
    int hwm = cfg->hwm > 0 ? cfg->hwm : 100000;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (strchr(ep, '[')) { /* an IPv6 literal ("tcp://[::]:5557", "[::ffff:10.0.0.5]") */
        int one = 1;
        zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one);
    }
    int rc = binds(ep) ? zmq_bind(sock, ep) : zmq_connect(sock, ep);
    if (rc != 0) {
        snprintf(err, errlen, "kv events endpoint '%s': %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(sock);
        free(ep);
        if (--g_refs == 0) {
            zmq_ctx_term(g_ctx);
            g_ctx = NULL;
        }
        return NULL;
    }
    struct sim_kvpub *p = xcalloc(1, sizeof *p);
    p->sock = sock;
    p->endpoint = ep;
    p->topic = xstrdup(cfg->topic ? cfg->topic : "");
    p->dp_rank = cfg->dp_rank;
    if (cfg->hash_algo && !strcmp(cfg->hash_algo, "sha256_cbor")) {
        p->vllm_keys = true;
        /* vLLM's init_none_hash: from PYTHONHASHSEED, else random (keys nobody can match) */
        if (cfg->hash_seed)
            tok_vllm_none_hash(cfg->hash_seed, p->none_hash);
        else if (getentropy(p->none_hash, sizeof p->none_hash) != 0)
            tok_vllm_none_hash("", p->none_hash);
    }
    struct sim_engine_kv_sink sink = {.stored = on_stored, .removed = on_removed};
    sim_engine_set_kv_sink(e, &sink, p);
    return p;
}

static void clear_pending(struct sim_kvpub *p)
{
    for (size_t i = 0; i < p->n_ev; i++) {
        free(p->ev[i].hashes);
        if (p->ev[i].type == KVEV_BLOCK_STORED)
            free(p->ev[i].token_ids);
    }
    p->n_ev = 0;
}

void sim_kvpub_flush(struct sim_kvpub *p, double ts)
{
    if (!p || !p->n_ev)
        return;
    /* removals used n_tokens as their capacity: zero it before encoding */
    for (size_t i = 0; i < p->n_ev; i++)
        if (p->ev[i].type == KVEV_BLOCK_REMOVED)
            p->ev[i].n_tokens = 0;
    struct kvev_batch b = {.ts = ts, .has_dp_rank = true, .dp_rank = p->dp_rank,
                           .n_events = p->n_ev, .events = p->ev};
    buf_reset(&p->out);
    kvev_encode(&b, &p->out);
    uint8_t seq[KVEV_SEQ_BYTES];
    kvev_put_seq(p->seq, seq);
    size_t tl = strlen(p->topic);
    bool ok = zmq_send(p->sock, p->topic, tl, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int)tl &&
              zmq_send(p->sock, seq, sizeof seq, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int)sizeof seq &&
              zmq_send(p->sock, p->out.data, p->out.len, ZMQ_DONTWAIT) == (int)p->out.len;
    if (ok) {
        p->seq++;
        p->sent += p->n_ev;
    } else {
        p->dropped += p->n_ev;
    }
    clear_pending(p);
}

uint64_t sim_kvpub_events_sent(const struct sim_kvpub *p)
{
    return p ? p->sent : 0;
}

uint64_t sim_kvpub_events_dropped(const struct sim_kvpub *p)
{
    return p ? p->dropped : 0;
}

const char *sim_kvpub_endpoint(const struct sim_kvpub *p)
{
    return p->endpoint;
}

void sim_kvpub_free(struct sim_kvpub *p)
{
    if (!p)
        return;
    clear_pending(p);
    free(p->ev);
    zmq_close(p->sock);
    buf_free(&p->out);
    free(p->endpoint);
    free(p->topic);
    free(p->vk);
    free(p);
    if (--g_refs == 0) {
        zmq_ctx_term(g_ctx);
        g_ctx = NULL;
    }
}

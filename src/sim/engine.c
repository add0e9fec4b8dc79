/* The sim's engine model: KV blocks, prefix cache, FCFS admission, chunked-prefill
 * steps and preemption, as a pure state machine (no clock, no I/O).
 *
 * Owns: the block pool (refcount, hash, LRU links per block), the hash -> block map
 * (open addressing, backward-shift deletion), the LRU of evictable cached blocks, the
 * stack of free never-hashed blocks, the id -> sequence map and the three sequence
 * lists (waiting FCFS, waiting for remote KV, running in admission order).
 *
 * Invariants:
 *  - every block is in exactly one of: held (ref > 0), the free stack (ref 0, no hash),
 *    the LRU (ref 0, hash); so used + free + cached == total always.
 *  - a block carries a hash iff the hash map maps that hash to it. When a hash is
 *    already mapped (another sequence computed the same block first) the newer block
 *    stays unhashed and returns to the free stack when released.
 *  - a sequence is in at most one list; RUNNING and WAITING_KV sequences hold blocks,
 *    WAITING ones hold none, PINNED ones hold theirs until unpin.
 *  - token positions: `computed` tokens have KV. While computed < prefill_end the
 *    sequence prefills; after that it decodes with computed == n_prompt + generated - 1
 *    (or == n_prompt + generated right after a remote load of the whole prompt, when
 *    the next step only samples).
 *  - callbacks fire only from step_end, and only for sequences still in the id map:
 *    events carry ids, so an abort (even from inside a callback) silences the rest.
 *    step_end fires from buffers it detached first, so a callback may start the next
 *    step (a driver "kick") or add, abort, load and unpin freely.
 *
 * Sequences do not keep their token ids: all ids are known at add time, so the chained
 * block hashes of every block the sequence can ever fill are computed once there.
 *
 * Modelling choices where vLLM leaves room:
 *  - a prefix-cache hit covers at most (tokens - 1) / block_size blocks: the last
 *    position is always computed, since sampling needs its logits (vLLM does the same).
 *  - a step that had to preempt admits nobody (vLLM v1: no readmission thrash).
 *  - a sequence waiting for remote KV holds a max_num_seqs slot and its blocks, is
 *    counted as waiting, and is never a preemption victim.
 *  - max_num_seqs is clamped to max_num_batched_tokens so every decode fits a step.
 *  - a sequence that alone outgrows the whole cache ends early with LENGTH instead of
 *    preempting itself forever (only possible when max_model_len exceeds the cache). */
#include "sim/engine.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "tokenize/tokenize.h"

#define NIL UINT32_MAX

/* ---- u64 -> u64 open-addressing map (value 0 = empty slot) ---------------------------- */

struct u64map {
    uint64_t *key;
    uint64_t *val;
    uint32_t bits;
    size_t n;
};

static inline size_t map_home(const struct u64map *m, uint64_t k)
{
    /* Fibonacci hashing: seq ids are sequential, block hashes are already random; one
     * multiply spreads both. */
    return (size_t)((k * 0x9e3779b97f4a7c15ull) >> (64 - m->bits));
}

static void map_init(struct u64map *m, uint32_t bits)
{
    m->bits = bits;
    m->n = 0;
    m->key = xcalloc((size_t)1 << bits, sizeof *m->key);
    m->val = xcalloc((size_t)1 << bits, sizeof *m->val);
}

static void map_free(struct u64map *m)
{
    free(m->key);
    free(m->val);
}

static uint64_t map_get(const struct u64map *m, uint64_t k)
{
    size_t mask = ((size_t)1 << m->bits) - 1;
    for (size_t i = map_home(m, k);; i = (i + 1) & mask) {
        if (!m->val[i])
            return 0;
        if (m->key[i] == k)
            return m->val[i];
    }
}

static void map_put_raw(struct u64map *m, uint64_t k, uint64_t v)
{
    size_t mask = ((size_t)1 << m->bits) - 1;
    size_t i = map_home(m, k);
    while (m->val[i])
        i = (i + 1) & mask;
    m->key[i] = k;
    m->val[i] = v;
    m->n++;
}

/* k must be absent; v != 0. */
static void map_put(struct u64map *m, uint64_t k, uint64_t v)
{
    if ((m->n + 1) * 2 > ((size_t)1 << m->bits)) {
        struct u64map old = *m;
        map_init(m, old.bits + 1);
        for (size_t i = 0; i < ((size_t)1 << old.bits); i++)
            if (old.val[i])
                map_put_raw(m, old.key[i], old.val[i]);
        map_free(&old);
    }
    map_put_raw(m, k, v);
}

static void map_del(struct u64map *m, uint64_t k)
{
    size_t mask = ((size_t)1 << m->bits) - 1;
    size_t i = map_home(m, k);
    while (m->val[i] && m->key[i] != k)
        i = (i + 1) & mask;
    if (!m->val[i])
        return;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!m->val[j])
            break;
        size_t h = map_home(m, m->key[j]);
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->key[i] = m->key[j];
            m->val[i] = m->val[j];
            i = j;
        }
    }
    m->val[i] = 0;
    m->n--;
}

/* ---- types --------------------------------------------------------------------------- */

struct blk {
    uint64_t hash;
    uint32_t ref;
    uint32_t prev, next; /* LRU links while in_lru */
    bool hashed;
    bool in_lru;
};

enum seq_state { SEQ_WAITING, SEQ_WAITING_KV, SEQ_RUNNING, SEQ_PINNED, SEQ_FINISHED };

struct seq {
    uint64_t id;
    void *user;
    struct seq *prev, *next; /* links in the list its state names */
    enum seq_state state;
    enum sim_finish finish;
    bool pin_on_finish;
    bool admitted_once;
    uint32_t n_prompt, n_output;
    uint32_t remote_tokens;
    uint32_t kv_target;   /* computed after a successful remote load */
    uint32_t computed;    /* tokens whose KV sits in blocks */
    uint32_t generated;   /* output tokens produced */
    uint32_t prefill_end; /* computed must reach this before the next token is sampled */
    uint32_t n_hashed;    /* leading blocks already registered in (or taken from) the cache */
    int32_t batch_slot;   /* index in the in-flight batch, or -1 */
    uint32_t n_blocks, cap_blocks;
    uint32_t *blocks;
    uint32_t n_hashes;
    uint64_t *hashes; /* chained hash of every block this sequence can ever fill */
    uint32_t *tokens; /* n_hashes * block_size token ids, only while a KV sink is set */
};

struct seq_list {
    struct seq *head, *tail;
    uint32_t n;
};

struct batch_ent {
    struct seq *s; /* NULL once aborted mid-step */
    uint32_t chunk;
    bool decode;
};

enum ev_kind { EV_ADMIT, EV_KV_LOAD, EV_PREEMPT, EV_TOKENS, EV_FINISH, EV_KINDS };

struct ev {
    uint64_t id;
    uint32_t kind;
    uint32_t a, b;
};

/* A growable array of events or of finished ids, reused across steps. */
struct evbuf {
    struct ev *ev;
    size_t n, cap;
};

struct idbuf {
    uint64_t *id;
    size_t n, cap;
};

struct sim_engine {
    struct sim_engine_config cfg;
    struct sim_engine_ops ops;

    struct blk *blk;
    uint32_t *free_stack;
    uint32_t free_n;
    uint32_t lru_head, lru_tail, lru_n;
    struct u64map hmap; /* block hash -> block index + 1 */

    struct u64map smap; /* seq id -> struct seq * */
    struct seq_list waiting, kv, running;
    uint32_t pinned_n;
    uint64_t next_id;

    struct batch_ent *batch;
    size_t batch_n, batch_cap;
    struct evbuf evs;       /* callbacks owed by the current step */
    struct idbuf fin;       /* ids that became FINISHED during the current step */
    struct evbuf evs_spare; /* storage kept for the next step_end to detach into */
    struct idbuf fin_spare;
    uint32_t *scratch;
    size_t scratch_cap;

    struct sim_engine_kv_sink kv_sink; /* KV events; zeroed when none */
    void *kv_ctx;

    bool in_flight;
    struct sim_engine_stats st; /* counters only; gauges are computed on demand */
};

/* ---- lists --------------------------------------------------------------------------- */

static void list_push_back(struct seq_list *l, struct seq *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->n++;
}

static void list_push_front(struct seq_list *l, struct seq *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    else
        l->tail = s;
    l->head = s;
    l->n++;
}

static void list_remove(struct seq_list *l, struct seq *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
    l->n--;
}

/* ---- blocks -------------------------------------------------------------------------- */

static void lru_remove(struct sim_engine *e, uint32_t b)
{
    struct blk *k = &e->blk[b];
    if (k->prev != NIL)
        e->blk[k->prev].next = k->next;
    else
        e->lru_head = k->next;
    if (k->next != NIL)
        e->blk[k->next].prev = k->prev;
    else
        e->lru_tail = k->prev;
    k->in_lru = false;
    e->lru_n--;
}

static void lru_push_tail(struct sim_engine *e, uint32_t b)
{
    struct blk *k = &e->blk[b];
    k->next = NIL;
    k->prev = e->lru_tail;
    if (e->lru_tail != NIL)
        e->blk[e->lru_tail].next = b;
    else
        e->lru_head = b;
    e->lru_tail = b;
    k->in_lru = true;
    e->lru_n++;
}

static inline uint32_t blocks_for(const struct sim_engine *e, uint64_t tokens)
{
    return (uint32_t)((tokens + e->cfg.block_size - 1) / e->cfg.block_size);
}

/* Takes a block for new KV: a never-hashed one if any, else evicts the least recently
 * freed cached block. The caller has checked that one is available. */
static uint32_t block_alloc(struct sim_engine *e)
{
    uint32_t b;
    if (e->free_n) {
        b = e->free_stack[--e->free_n];
    } else {
        assert(e->lru_head != NIL);
        b = e->lru_head;
        lru_remove(e, b);
        if (e->kv_sink.removed)
            e->kv_sink.removed(e->kv_ctx, e->blk[b].hash);
        map_del(&e->hmap, e->blk[b].hash);
        e->blk[b].hashed = false;
        e->st.evictions++;
    }
    e->blk[b].ref = 1;
    return b;
}

static void block_release(struct sim_engine *e, uint32_t b)
{
    struct blk *k = &e->blk[b];
    assert(k->ref > 0);
    if (--k->ref)
        return;
    if (k->hashed)
        lru_push_tail(e, b);
    else
        e->free_stack[e->free_n++] = b;
}

/* Releases a sequence's blocks last first, so a sequence's tail blocks are evicted
 * before its head (the head is the part other requests share), as vLLM does. */
static void seq_release_blocks(struct sim_engine *e, struct seq *s)
{
    for (uint32_t i = s->n_blocks; i-- > 0;)
        block_release(e, s->blocks[i]);
    s->n_blocks = 0;
    s->n_hashed = 0;
    s->computed = 0;
}

/* Tells the KV sink about blocks [a, b) of s, just registered. */
static void seq_emit_stored(struct sim_engine *e, const struct seq *s, uint32_t a, uint32_t b)
{
    uint32_t bs = e->cfg.block_size;
    e->kv_sink.stored(e->kv_ctx, s->hashes + a, b - a, a > 0, a > 0 ? s->hashes[a - 1] : 0,
                      s->tokens + (size_t)a * bs, (b - a) * bs);
}

/* Registers the hashes of blocks that just became full of computed tokens. */
static void seq_register_blocks(struct sim_engine *e, struct seq *s)
{
    uint32_t full = s->computed / e->cfg.block_size;
    if (full > s->n_hashes)
        full = s->n_hashes;
    bool emit = e->kv_sink.stored && s->tokens;
    uint32_t run = UINT32_MAX; /* first block of the run of newly stored blocks */
    for (uint32_t i = s->n_hashed; i < full; i++) {
        struct blk *k = &e->blk[s->blocks[i]];
        uint64_t h = s->hashes[i];
        /* The first writer keeps the mapping. */
        bool stored = !k->hashed && !map_get(&e->hmap, h);
        if (stored) {
            k->hash = h;
            k->hashed = true;
            map_put(&e->hmap, h, (uint64_t)s->blocks[i] + 1);
            if (run == UINT32_MAX)
                run = i;
        } else if (run != UINT32_MAX) {
            if (emit)
                seq_emit_stored(e, s, run, i);
            run = UINT32_MAX;
        }
    }
    if (run != UINT32_MAX && emit)
        seq_emit_stored(e, s, run, full);
    if (full > s->n_hashed)
        s->n_hashed = full;
}

/* Leading cached blocks of s for a prefill up to `target` tokens. At least one token
 * is always left to compute (the sampler needs the last position), as in vLLM. */
static uint32_t seq_cache_hits(const struct sim_engine *e, const struct seq *s, uint32_t target,
                               uint32_t *in_lru)
{
    uint32_t max = (target - 1) / e->cfg.block_size;
    if (max > s->n_hashes)
        max = s->n_hashes;
    uint32_t hits = 0, lru = 0;
    for (; hits < max; hits++) {
        uint64_t v = map_get(&e->hmap, s->hashes[hits]);
        if (!v)
            break;
        if (e->blk[v - 1].in_lru)
            lru++;
    }
    *in_lru = lru;
    return hits;
}

/* ---- events and batch ---------------------------------------------------------------- */

static void ev_push(struct sim_engine *e, uint32_t kind, uint64_t id, uint32_t a, uint32_t b)
{
    struct evbuf *v = &e->evs;
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->ev = xrealloc(v->ev, v->cap * sizeof *v->ev);
    }
    v->ev[v->n++] = (struct ev){.id = id, .kind = kind, .a = a, .b = b};
}

static void batch_push(struct sim_engine *e, struct seq *s, uint32_t chunk, bool decode)
{
    if (e->batch_n == e->batch_cap) {
        e->batch_cap = e->batch_cap ? e->batch_cap * 2 : 64;
        e->batch = xrealloc(e->batch, e->batch_cap * sizeof *e->batch);
    }
    s->batch_slot = (int32_t)e->batch_n;
    e->batch[e->batch_n++] = (struct batch_ent){.s = s, .chunk = chunk, .decode = decode};
}

static void fin_push(struct sim_engine *e, uint64_t id)
{
    struct idbuf *f = &e->fin;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->id = xrealloc(f->id, f->cap * sizeof *f->id);
    }
    f->id[f->n++] = id;
}

/* ---- sequences ----------------------------------------------------------------------- */

static void seq_destroy(struct seq *s)
{
    free(s->blocks);
    free(s->hashes);
    free(s->tokens);
    free(s);
}

/* A sequence that is done (out of its list, blocks still held): pin or release. Its
 * struct lives on (FINISHED) until the step's callbacks have fired. */
static void seq_finish(struct sim_engine *e, struct seq *s, enum sim_finish reason)
{
    ev_push(e, EV_FINISH, s->id, (uint32_t)reason, 0);
    if (s->pin_on_finish) {
        s->state = SEQ_PINNED;
        e->pinned_n++;
    } else {
        seq_release_blocks(e, s);
        s->state = SEQ_FINISHED;
        fin_push(e, s->id);
    }
}

static void seq_preempt(struct sim_engine *e, struct seq *s)
{
    list_remove(&e->running, s);
    seq_release_blocks(e, s);
    s->state = SEQ_WAITING;
    /* The front: it was admitted before everything still waiting. */
    list_push_front(&e->waiting, s);
    e->st.preemptions++;
    ev_push(e, EV_PREEMPT, s->id, 0, 0);
}

/* ---- public API ---------------------------------------------------------------------- */

struct sim_engine *sim_engine_new(const struct sim_engine_config *cfg,
                                  const struct sim_engine_ops *ops)
{
    struct sim_engine *e = xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    if (!e->cfg.block_size)
        e->cfg.block_size = 16;
    if (!e->cfg.max_num_seqs)
        e->cfg.max_num_seqs = 256;
    if (!e->cfg.max_num_batched_tokens)
        e->cfg.max_num_batched_tokens = 8192;
    /* vLLM refuses max_num_seqs > max_num_batched_tokens: a full batch of decodes would
     * not fit in one step and the tail would starve. Clamp instead of refusing. */
    if (e->cfg.max_num_seqs > e->cfg.max_num_batched_tokens)
        e->cfg.max_num_seqs = e->cfg.max_num_batched_tokens;
    if (!(e->cfg.time_scale > 0))
        e->cfg.time_scale = 1.0;
    if (ops)
        e->ops = *ops;

    uint32_t n = e->cfg.num_gpu_blocks;
    e->blk = xcalloc(n ? n : 1, sizeof *e->blk);
    e->free_stack = xcalloc(n ? n : 1, sizeof *e->free_stack);
    /* Lowest ids on top of the stack: block ids read naturally in tests and logs. */
    for (uint32_t i = 0; i < n; i++)
        e->free_stack[i] = n - 1 - i;
    e->free_n = n;
    e->lru_head = e->lru_tail = NIL;
    uint32_t bits = 4;
    while (((size_t)1 << bits) < (size_t)n * 2)
        bits++;
    map_init(&e->hmap, bits);
    map_init(&e->smap, 6);
    e->next_id = 1;
    e->st.blocks_total = n;
    return e;
}

void sim_engine_free(struct sim_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < ((size_t)1 << e->smap.bits); i++)
        if (e->smap.val[i])
            seq_destroy((struct seq *)(uintptr_t)e->smap.val[i]);
    map_free(&e->smap);
    map_free(&e->hmap);
    free(e->blk);
    free(e->free_stack);
    free(e->batch);
    free(e->evs.ev);
    free(e->evs_spare.ev);
    free(e->fin.id);
    free(e->fin_spare.id);
    free(e->scratch);
    free(e);
}

void sim_engine_set_kv_sink(struct sim_engine *e, const struct sim_engine_kv_sink *sink,
                            void *ctx)
{
    if (sink)
        e->kv_sink = *sink;
    else
        memset(&e->kv_sink, 0, sizeof e->kv_sink);
    e->kv_ctx = ctx;
}

const struct sim_engine_config *sim_engine_config(const struct sim_engine *e)
{
    return &e->cfg;
}

static struct seq *seq_find(const struct sim_engine *e, uint64_t id)
{
    return id ? (struct seq *)(uintptr_t)map_get(&e->smap, id) : NULL;
}

uint64_t sim_engine_add(struct sim_engine *e, const struct sim_seq_spec *spec, uint64_t now)
{
    (void)now;
    uint32_t bs = e->cfg.block_size;
    if (spec->n_prompt == 0 || spec->n_output == 0 ||
        blocks_for(e, spec->n_prompt) > e->cfg.num_gpu_blocks)
        return 0;

    struct seq *s = xcalloc(1, sizeof *s);
    s->id = e->next_id++;
    s->user = spec->user;
    s->state = SEQ_WAITING;
    s->finish = spec->finish;
    s->pin_on_finish = spec->pin_on_finish;
    s->n_prompt = spec->n_prompt;
    s->n_output = spec->n_output;
    s->remote_tokens = spec->remote_tokens;
    s->batch_slot = -1;

    /* The last output token is sampled, never fed back: at most P + n_output - 1 tokens
     * ever get KV. */
    uint64_t max_tokens = (uint64_t)spec->n_prompt + spec->n_output - 1;
    s->cap_blocks = blocks_for(e, max_tokens);
    s->blocks = xmalloc((size_t)s->cap_blocks * sizeof *s->blocks);
    s->n_hashes = (uint32_t)(max_tokens / bs);
    s->hashes = xmalloc((size_t)(s->n_hashes ? s->n_hashes : 1) * sizeof *s->hashes);

    size_t need = (size_t)s->n_hashes * bs;
    if (e->scratch_cap < need) {
        free(e->scratch);
        e->scratch = xmalloc(need * sizeof *e->scratch);
        e->scratch_cap = need;
    }
    size_t np = spec->n_prompt < need ? spec->n_prompt : need;
    if (np) /* scratch is NULL until the first full block */
        memcpy(e->scratch, spec->prompt_ids, np * sizeof *e->scratch);
    if (need > np)
        memcpy(e->scratch + np, spec->output_ids, (need - np) * sizeof *e->scratch);
    tok_block_hashes(e->scratch, need, bs, e->cfg.hash_seed, s->hashes, s->n_hashes);
    if (e->kv_sink.stored && need) {
        s->tokens = xmalloc(need * sizeof *s->tokens);
        memcpy(s->tokens, e->scratch, need * sizeof *s->tokens);
    }

    map_put(&e->smap, s->id, (uint64_t)(uintptr_t)s);
    list_push_back(&e->waiting, s);
    return s->id;
}

void sim_engine_abort(struct sim_engine *e, uint64_t id)
{
    struct seq *s = seq_find(e, id);
    if (!s)
        return;
    switch (s->state) {
    case SEQ_WAITING:
        list_remove(&e->waiting, s);
        break;
    case SEQ_WAITING_KV:
        list_remove(&e->kv, s);
        seq_release_blocks(e, s);
        break;
    case SEQ_RUNNING:
        list_remove(&e->running, s);
        seq_release_blocks(e, s);
        /* Its share of the in-flight step is discarded. */
        if (s->batch_slot >= 0)
            e->batch[s->batch_slot].s = NULL;
        break;
    case SEQ_PINNED:
        e->pinned_n--;
        seq_release_blocks(e, s);
        break;
    case SEQ_FINISHED:
        break; /* blocks already released; only callbacks were pending */
    }
    map_del(&e->smap, id);
    seq_destroy(s);
}

void sim_engine_kv_loaded(struct sim_engine *e, uint64_t id, bool ok)
{
    struct seq *s = seq_find(e, id);
    if (!s || s->state != SEQ_WAITING_KV)
        return;
    list_remove(&e->kv, s);
    if (ok) {
        s->computed = s->kv_target;
        seq_register_blocks(e, s);
    }
    /* Joins the running set now (it already holds a slot and its blocks); loaded tokens
     * need no compute, the rest is prefilled locally from the next step on. */
    s->state = SEQ_RUNNING;
    list_push_back(&e->running, s);
}

void sim_engine_unpin(struct sim_engine *e, uint64_t id)
{
    struct seq *s = seq_find(e, id);
    if (!s || s->state != SEQ_PINNED)
        return;
    e->pinned_n--;
    seq_release_blocks(e, s);
    map_del(&e->smap, id);
    seq_destroy(s);
}

size_t sim_engine_seq_blocks(const struct sim_engine *e, uint64_t id, uint32_t *out, size_t cap)
{
    const struct seq *s = seq_find(e, id);
    if (!s)
        return 0;
    size_t n = s->n_blocks < cap ? s->n_blocks : cap;
    if (n)
        memcpy(out, s->blocks, n * sizeof *out);
    return s->n_blocks;
}

/* Whether the waiting head can be admitted now (or must be dropped as impossible). */
static bool head_admissible(const struct sim_engine *e)
{
    const struct seq *s = e->waiting.head;
    if (!s || e->running.n + e->kv.n >= e->cfg.max_num_seqs)
        return false;
    uint32_t target = s->n_prompt + s->generated;
    uint32_t need = blocks_for(e, target);
    if (need > e->cfg.num_gpu_blocks)
        return true; /* force-finished at the next step */
    uint32_t in_lru;
    uint32_t hits = seq_cache_hits(e, s, target, &in_lru);
    return need - hits <= e->free_n + e->lru_n - in_lru;
}

bool sim_engine_has_work(const struct sim_engine *e)
{
    return e->running.n > 0 || head_admissible(e);
}

static void admit_waiting(struct sim_engine *e, uint32_t *budget, uint64_t *prefill_tokens)
{
    uint32_t bs = e->cfg.block_size;
    while (*budget > 0 && e->waiting.head && e->running.n + e->kv.n < e->cfg.max_num_seqs) {
        struct seq *s = e->waiting.head;
        /* A preempted sequence recomputes its prompt and all it generated. */
        uint32_t target = s->n_prompt + s->generated;
        uint32_t need = blocks_for(e, target);
        if (need > e->cfg.num_gpu_blocks) {
            /* Only a preempted sequence that outgrew the whole cache gets here (add
             * rejects prompts that do not fit): it can never run again, so it ends
             * as if it hit the model's length limit. */
            list_remove(&e->waiting, s);
            seq_finish(e, s, SIM_FINISH_LENGTH);
            continue;
        }
        uint32_t in_lru;
        uint32_t hits = seq_cache_hits(e, s, target, &in_lru);
        if (need - hits > e->free_n + e->lru_n - in_lru)
            break; /* FCFS: no skipping past the head */

        list_remove(&e->waiting, s);
        for (uint32_t i = 0; i < hits; i++) {
            uint32_t b = (uint32_t)(map_get(&e->hmap, s->hashes[i]) - 1);
            if (e->blk[b].in_lru)
                lru_remove(e, b);
            e->blk[b].ref++;
            s->blocks[i] = b;
        }
        for (uint32_t i = hits; i < need; i++)
            s->blocks[i] = block_alloc(e);
        s->n_blocks = need;
        s->n_hashed = hits;
        s->computed = hits * bs;
        s->prefill_end = target;

        bool first = !s->admitted_once;
        if (first) {
            s->admitted_once = true;
            e->st.prefix_queries_tokens += s->n_prompt;
            e->st.prefix_hits_tokens += s->computed;
            e->st.prompt_tokens += s->n_prompt;
            ev_push(e, EV_ADMIT, s->id, s->computed, 0);
            if (s->remote_tokens > 0) {
                uint32_t load_to = s->remote_tokens < s->n_prompt ? s->remote_tokens : s->n_prompt;
                if (load_to > s->computed) {
                    s->kv_target = load_to;
                    s->state = SEQ_WAITING_KV;
                    list_push_back(&e->kv, s);
                    ev_push(e, EV_KV_LOAD, s->id, load_to - s->computed, 0);
                    continue;
                }
                /* Everything to load is cached here already: proceed as loaded. */
            }
        }
        s->state = SEQ_RUNNING;
        list_push_back(&e->running, s);
        uint32_t chunk = s->prefill_end - s->computed;
        if (chunk > *budget)
            chunk = *budget;
        batch_push(e, s, chunk, false);
        *budget -= chunk;
        *prefill_tokens += chunk;
    }
}

uint64_t sim_engine_step_begin(struct sim_engine *e, uint64_t now)
{
    (void)now;
    assert(!e->in_flight);
    assert(e->batch_n == 0 && e->evs.n == 0 && e->fin.n == 0);
    uint32_t bs = e->cfg.block_size;
    uint32_t budget = e->cfg.max_num_batched_tokens;
    uint64_t prefill_tokens = 0, n_decode = 0, ctx_tokens = 0;
    bool preempted = false;

    /* 1. Decodes first: every running sequence past its prefill gets one token. */
    for (struct seq *s = e->running.head; s;) {
        struct seq *next = s->next;
        if (s->computed < s->prefill_end) {
            s = next;
            continue;
        }
        if (budget == 0)
            break;
        uint32_t tokens = s->n_prompt + s->generated;
        if (s->computed < tokens && s->computed + 1 > s->n_blocks * bs) {
            if (s->n_blocks + 1 > e->cfg.num_gpu_blocks) {
                /* Outgrew the whole cache: preempting others could never make room. */
                list_remove(&e->running, s);
                seq_finish(e, s, SIM_FINISH_LENGTH);
                s = next;
                continue;
            }
            bool self = false;
            while (e->free_n + e->lru_n == 0) {
                struct seq *victim = e->running.tail;
                seq_preempt(e, victim);
                preempted = true;
                if (victim == s) {
                    self = true;
                    break;
                }
            }
            if (self)
                break; /* it was the tail: nothing after it */
            s->blocks[s->n_blocks++] = block_alloc(e);
            next = s->next; /* victims came off the tail */
        }
        batch_push(e, s, 1, true);
        budget--;
        n_decode++;
        ctx_tokens += tokens;
        s = next;
    }

    /* 2. Prefill chunks of admitted sequences, in admission order. */
    for (struct seq *s = e->running.head; s && budget > 0; s = s->next) {
        if (s->computed >= s->prefill_end)
            continue;
        uint32_t chunk = s->prefill_end - s->computed;
        if (chunk > budget)
            chunk = budget;
        batch_push(e, s, chunk, false);
        budget -= chunk;
        prefill_tokens += chunk;
    }

    /* 3. New admissions, unless this step had to preempt (vLLM: readmitting right away
     * would just thrash). */
    if (!preempted)
        admit_waiting(e, &budget, &prefill_tokens);

    if (e->batch_n == 0 && e->evs.n == 0)
        return 0;

    e->in_flight = true;
    e->st.steps++;
    const struct sim_engine_config *c = &e->cfg;
    double sec = c->step_base_s + (double)n_decode * c->decode_per_seq_s +
                 (double)ctx_tokens * c->decode_per_ctx_token_s;
    if (c->prefill_tokens_per_s > 0)
        sec += (double)prefill_tokens / c->prefill_tokens_per_s;
    double ns = sec * c->time_scale * 1e9;
    uint64_t dur = ns > 0 ? (uint64_t)(ns + 0.5) : 0;
    return dur ? dur : 1;
}

static void fire_events(struct sim_engine *e, const struct evbuf *v, uint64_t now)
{
    const struct sim_engine_ops *o = &e->ops;
    for (uint32_t kind = 0; kind < EV_KINDS; kind++) {
        for (size_t i = 0; i < v->n; i++) {
            const struct ev *x = &v->ev[i];
            if (x->kind != kind)
                continue;
            struct seq *s = seq_find(e, x->id);
            if (!s)
                continue; /* aborted (maybe by an earlier callback) */
            switch (kind) {
            case EV_ADMIT:
                if (o->on_admit)
                    o->on_admit(s->user, x->a, now);
                break;
            case EV_KV_LOAD:
                if (o->on_kv_load)
                    o->on_kv_load(s->user, x->id, x->a, now);
                break;
            case EV_PREEMPT:
                if (o->on_preempt)
                    o->on_preempt(s->user, now);
                break;
            case EV_TOKENS:
                if (o->on_tokens)
                    o->on_tokens(s->user, x->a, x->b, now);
                break;
            case EV_FINISH:
                if (o->on_finish)
                    o->on_finish(s->user, (enum sim_finish)x->a, now);
                break;
            }
        }
    }
}

/* Keeps the larger of two spare buffers (a nested step_end may have returned one). */
static void evbuf_keep(struct evbuf *spare, struct evbuf b)
{
    if (spare->cap >= b.cap) {
        free(b.ev);
        return;
    }
    free(spare->ev);
    *spare = b;
    spare->n = 0;
}

static void idbuf_keep(struct idbuf *spare, struct idbuf b)
{
    if (spare->cap >= b.cap) {
        free(b.id);
        return;
    }
    free(spare->id);
    *spare = b;
    spare->n = 0;
}

void sim_engine_step_end(struct sim_engine *e, uint64_t now)
{
    assert(e->in_flight);
    e->in_flight = false;

    for (size_t i = 0; i < e->batch_n; i++) {
        struct batch_ent *b = &e->batch[i];
        struct seq *s = b->s;
        if (!s)
            continue;
        s->batch_slot = -1;
        if (!b->decode) {
            s->computed += b->chunk;
            seq_register_blocks(e, s);
            if (s->computed < s->prefill_end)
                continue;
            /* The last prefill chunk samples the first (or, after a preemption, the
             * next) output token in the same step. */
        } else if (s->computed < s->n_prompt + s->generated) {
            s->computed++;
            seq_register_blocks(e, s);
        }
        s->generated++;
        e->st.generation_tokens++;
        ev_push(e, EV_TOKENS, s->id, s->generated - 1, 1);
        if (s->generated >= s->n_output) {
            list_remove(&e->running, s);
            seq_finish(e, s, s->finish);
        }
    }
    e->batch_n = 0;

    /* Detach this step's events and finished ids: callbacks may begin the next step,
     * which fills fresh buffers. */
    struct evbuf evs = e->evs;
    struct idbuf fin = e->fin;
    e->evs = e->evs_spare;
    e->fin = e->fin_spare;
    e->evs_spare = (struct evbuf){0};
    e->fin_spare = (struct idbuf){0};

    fire_events(e, &evs, now);

    /* Finished sequences stayed findable while their callbacks fired. */
    for (size_t i = 0; i < fin.n; i++) {
        struct seq *s = seq_find(e, fin.id[i]);
        if (s && s->state == SEQ_FINISHED) {
            map_del(&e->smap, s->id);
            seq_destroy(s);
        }
    }
    evbuf_keep(&e->evs_spare, evs);
    idbuf_keep(&e->fin_spare, fin);
}

bool sim_engine_step_in_flight(const struct sim_engine *e)
{
    return e->in_flight;
}

void sim_engine_stats(const struct sim_engine *e, struct sim_engine_stats *out)
{
    *out = e->st;
    out->running = e->running.n;
    out->waiting = e->waiting.n + e->kv.n;
    out->blocks_total = e->cfg.num_gpu_blocks;
    out->blocks_used = e->cfg.num_gpu_blocks - e->free_n - e->lru_n;
    out->blocks_cached_free = e->lru_n;
    out->pinned_seqs = e->pinned_n;
    out->kv_usage =
        e->cfg.num_gpu_blocks ? (double)out->blocks_used / (double)e->cfg.num_gpu_blocks : 0.0;
}

uint32_t sim_engine_cached_prefix(const struct sim_engine *e, const uint32_t *ids, uint32_t n)
{
    uint32_t bs = e->cfg.block_size;
    uint64_t h = e->cfg.hash_seed;
    uint32_t hits = 0;
    for (uint32_t i = 0; i + bs <= n; i += bs) {
        h = tok_block_hash(h, ids + i, bs);
        if (!map_get(&e->hmap, h))
            break;
        hits += bs;
    }
    return hits;
}

/* Unit tests for the sim's engine model, driven by a virtual clock (a number this file
 * advances). The engine's source is included so the invariant checker can walk its
 * internals (block pool, LRU, hash map, lists). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim/engine.c"

#include "base/hash.h"

/* ---- harness ------------------------------------------------------------------------- */

struct h;

struct rec {
    struct h *h;
    uint64_t id;
    uint32_t n_output;
    int admits;
    uint32_t cached;
    uint64_t admit_order;
    int kv_loads;
    uint64_t kv_id;
    uint32_t kv_tokens;
    int preempts;
    uint32_t n_tokens;
    uint64_t first_token_at, last_token_at;
    bool finished;
    enum sim_finish reason;
    uint64_t finish_at;
    bool dead; /* aborted: no callback may reach it any more */
    /* Actions taken from inside callbacks. */
    bool abort_self_on_token;
    uint64_t abort_other_on_token;
    struct rec *abort_other_rec;
    bool load_in_callback;
};

struct h {
    struct sim_engine *e;
    struct sim_engine_config cfg;
    uint64_t now;
    uint64_t admit_counter;
    bool allow_truncate; /* a sequence may end early with LENGTH (outgrew the cache) */
    /* A driver like the server's: callbacks "kick" (begin the next step if none is in
     * flight), and the loop ends steps when their time comes. */
    bool kick_in_cb;
    bool drv_in_flight;
    uint64_t drv_end;
    int kicks_in_cb;
};

static void kick(struct h *h);

static void cb_admit(void *user, uint32_t cached, uint64_t now)
{
    struct rec *r = user;
    assert_false(r->dead);
    assert_false(r->finished);
    assert_int_equal(r->admits, 0); /* first admission only */
    r->admits++;
    r->cached = cached;
    r->admit_order = ++r->h->admit_counter;
    assert_int_equal(now, r->h->now);
}

static void cb_kv_load(void *user, uint64_t id, uint32_t tokens, uint64_t now)
{
    struct rec *r = user;
    assert_false(r->dead);
    assert_int_equal(id, r->id);
    r->kv_loads++;
    r->kv_id = id;
    r->kv_tokens = tokens;
    if (r->load_in_callback)
        sim_engine_kv_loaded(r->h->e, id, true);
}

static void cb_preempt(void *user, uint64_t now)
{
    struct rec *r = user;
    assert_false(r->dead);
    assert_false(r->finished);
    r->preempts++;
}

static void cb_tokens(void *user, uint32_t first, uint32_t n, uint64_t now)
{
    struct rec *r = user;
    assert_false(r->dead);
    assert_false(r->finished);
    assert_int_equal(r->admits, 1);
    /* Indices continue exactly where they left off: no gap, no duplicate. */
    assert_int_equal(first, r->n_tokens);
    assert_int_equal(n, 1);
    if (r->n_tokens == 0)
        r->first_token_at = now;
    r->last_token_at = now;
    r->n_tokens += n;
    assert_true(r->n_tokens <= r->n_output);
    if (r->abort_other_on_token) {
        sim_engine_abort(r->h->e, r->abort_other_on_token);
        r->abort_other_rec->dead = true;
        r->abort_other_on_token = 0;
    }
    if (r->abort_self_on_token) {
        r->dead = true;
        sim_engine_abort(r->h->e, r->id);
    }
    if (r->h->kick_in_cb && !r->h->drv_in_flight) {
        kick(r->h);
        r->h->kicks_in_cb += r->h->drv_in_flight;
    }
}

static void cb_finish(void *user, enum sim_finish reason, uint64_t now)
{
    struct rec *r = user;
    assert_false(r->dead);
    assert_false(r->finished);
    if (r->n_tokens != r->n_output) {
        assert_true(r->h->allow_truncate);
        assert_int_equal(reason, SIM_FINISH_LENGTH);
    }
    r->finished = true;
    r->reason = reason;
    r->finish_at = now;
    if (r->h->kick_in_cb && !r->h->drv_in_flight) {
        kick(r->h);
        r->h->kicks_in_cb += r->h->drv_in_flight;
    }
}

static const struct sim_engine_ops ops = {
    .on_admit = cb_admit,
    .on_kv_load = cb_kv_load,
    .on_tokens = cb_tokens,
    .on_preempt = cb_preempt,
    .on_finish = cb_finish,
};

static struct sim_engine_config base_cfg(void)
{
    return (struct sim_engine_config){
        .block_size = 16,
        .num_gpu_blocks = 1000,
        .max_num_seqs = 256,
        .max_num_batched_tokens = 8192,
        .max_model_len = 32768,
        .step_base_s = 0.01,
        .prefill_tokens_per_s = 1000,
        .decode_per_seq_s = 0.001,
        .decode_per_ctx_token_s = 0.00001,
        .time_scale = 1.0,
        .hash_seed = 12345,
    };
}

static void h_init(struct h *h, const struct sim_engine_config *cfg)
{
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    h->e = sim_engine_new(cfg, &ops);
    h->now = 1000000;
}

/* Deterministic token ids: `seed` picks the sequence, so equal seeds share prefixes. */
static void fill_ids(uint32_t *ids, uint32_t n, uint64_t seed)
{
    uint64_t st = seed * 7919 + 1;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = (uint32_t)hash_rand_below(&st, 50257);
}

static uint64_t add_ex(struct h *h, struct rec *r, const uint32_t *prompt, uint32_t np,
                       uint32_t nout, uint64_t out_seed, bool pin, uint32_t remote)
{
    uint32_t *out = xmalloc((nout ? nout : 1) * sizeof *out);
    fill_ids(out, nout, out_seed);
    memset(r, 0, sizeof *r);
    r->h = h;
    r->n_output = nout;
    struct sim_seq_spec sp = {
        .prompt_ids = prompt,
        .n_prompt = np,
        .output_ids = out,
        .n_output = nout,
        .finish = SIM_FINISH_STOP,
        .pin_on_finish = pin,
        .remote_tokens = remote,
        .user = r,
    };
    r->id = sim_engine_add(h->e, &sp, h->now);
    free(out);
    return r->id;
}

static uint64_t add(struct h *h, struct rec *r, const uint32_t *prompt, uint32_t np, uint32_t nout)
{
    return add_ex(h, r, prompt, np, nout, 99, false, 0);
}

/* The step-time formula, written out independently of the engine's code. */
static uint64_t formula(const struct h *h, uint64_t prefill, uint64_t ndec, uint64_t ctx)
{
    const struct sim_engine_config *c = &h->cfg;
    double s = c->step_base_s + (double)prefill / c->prefill_tokens_per_s +
               (double)ndec * c->decode_per_seq_s + (double)ctx * c->decode_per_ctx_token_s;
    return (uint64_t)(s * c->time_scale * 1e9 + 0.5);
}

/* Walks every internal structure and checks the invariants the engine documents. */
static void check_invariants(const struct sim_engine *e)
{
    uint32_t n = e->cfg.num_gpu_blocks;
    uint32_t *refs = xcalloc(n ? n : 1, sizeof *refs);
    uint32_t running = 0, waiting = 0, kv = 0, pinned = 0;
    size_t nseq = 0;
    for (size_t i = 0; i < ((size_t)1 << e->smap.bits); i++) {
        if (!e->smap.val[i])
            continue;
        const struct seq *s = (const struct seq *)(uintptr_t)e->smap.val[i];
        nseq++;
        assert_int_equal(s->id, e->smap.key[i]);
        assert_true(s->n_blocks <= s->cap_blocks);
        for (uint32_t k = 0; k < s->n_blocks; k++)
            refs[s->blocks[k]]++;
        switch (s->state) {
        case SEQ_RUNNING:
            running++;
            assert_true(s->computed <= s->n_blocks * e->cfg.block_size);
            assert_true(s->computed <= s->prefill_end ||
                        s->computed + 1 == s->n_prompt + s->generated);
            assert_true(s->n_blocks >= blocks_for(e, s->prefill_end) || s->n_blocks >= 1);
            break;
        case SEQ_WAITING:
            waiting++;
            assert_int_equal(s->n_blocks, 0);
            assert_int_equal(s->batch_slot, -1);
            break;
        case SEQ_WAITING_KV:
            kv++;
            assert_int_equal(s->n_blocks, blocks_for(e, s->n_prompt));
            break;
        case SEQ_PINNED:
            pinned++;
            break;
        case SEQ_FINISHED:
            fail_msg("finished sequence outlived its step");
        }
        assert_true(s->generated < s->n_output || s->state == SEQ_PINNED);
    }
    assert_int_equal(nseq, e->smap.n);
    assert_int_equal(running, e->running.n);
    assert_int_equal(waiting, e->waiting.n);
    assert_int_equal(kv, e->kv.n);
    assert_int_equal(pinned, e->pinned_n);
    assert_true(e->running.n + e->kv.n <= e->cfg.max_num_seqs);
    /* List membership matches states, and lists are well linked. */
    const struct seq_list *lists[3] = {&e->waiting, &e->kv, &e->running};
    const enum seq_state st[3] = {SEQ_WAITING, SEQ_WAITING_KV, SEQ_RUNNING};
    for (int l = 0; l < 3; l++) {
        uint32_t c = 0;
        const struct seq *prev = NULL;
        for (const struct seq *s = lists[l]->head; s; s = s->next) {
            assert_int_equal(s->state, st[l]);
            assert_ptr_equal(s->prev, prev);
            prev = s;
            c++;
        }
        assert_ptr_equal(lists[l]->tail, prev);
        assert_int_equal(c, lists[l]->n);
    }
    /* Blocks: ref counts match holders; free ones are in exactly one of stack/LRU. */
    uint8_t *where = xcalloc(n ? n : 1, 1);
    for (uint32_t i = 0; i < e->free_n; i++) {
        uint32_t b = e->free_stack[i];
        assert_int_equal(where[b], 0);
        where[b] = 1;
        assert_false(e->blk[b].hashed);
    }
    uint32_t lru = 0, prevb = NIL;
    for (uint32_t b = e->lru_head; b != NIL; b = e->blk[b].next) {
        assert_int_equal(where[b], 0);
        where[b] = 2;
        assert_true(e->blk[b].in_lru);
        assert_true(e->blk[b].hashed);
        assert_int_equal(e->blk[b].prev, prevb);
        prevb = b;
        lru++;
    }
    assert_int_equal(prevb, e->lru_tail);
    assert_int_equal(lru, e->lru_n);
    size_t hashed = 0;
    for (uint32_t b = 0; b < n; b++) {
        const struct blk *k = &e->blk[b];
        assert_int_equal(k->ref, refs[b]);
        if (k->ref)
            assert_int_equal(where[b], 0);
        else
            assert_true(where[b] != 0);
        assert_int_equal(k->in_lru, where[b] == 2);
        if (k->hashed) {
            hashed++;
            assert_int_equal(map_get(&e->hmap, k->hash), (uint64_t)b + 1);
        }
    }
    assert_int_equal(hashed, e->hmap.n);
    struct sim_engine_stats s;
    sim_engine_stats(e, &s);
    assert_int_equal(s.blocks_used + e->free_n + s.blocks_cached_free, s.blocks_total);
    free(where);
    free(refs);
}

/* One step on the virtual clock; returns its duration (0: nothing ran). */
static uint64_t step(struct h *h)
{
    uint64_t d = sim_engine_step_begin(h->e, h->now);
    if (d) {
        assert_true(sim_engine_step_in_flight(h->e));
        h->now += d;
        sim_engine_step_end(h->e, h->now);
    }
    assert_false(sim_engine_step_in_flight(h->e));
    check_invariants(h->e);
    return d;
}

static int run_idle(struct h *h)
{
    int steps = 0;
    while (sim_engine_has_work(h->e)) {
        assert_true(step(h) > 0);
        assert_true(++steps < 100000);
    }
    assert_int_equal(sim_engine_step_begin(h->e, h->now), 0);
    return steps;
}

static void h_free(struct h *h)
{
    check_invariants(h->e);
    sim_engine_free(h->e);
}

static void stats(struct h *h, struct sim_engine_stats *s)
{
    sim_engine_stats(h->e, s);
}

static void kick(struct h *h)
{
    if (h->drv_in_flight)
        return;
    uint64_t d = sim_engine_step_begin(h->e, h->now);
    if (!d)
        return;
    h->drv_in_flight = true;
    h->drv_end = h->now + d;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_single_request_timing(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[100];
    fill_ids(p, 100, 1);
    struct rec r;
    uint64_t t0 = h.now;
    assert_true(add(&h, &r, p, 100, 4) > 0);
    assert_true(sim_engine_has_work(h.e));

    /* Prefill of 100 tokens in one step: 10 ms + 100/1000 s. */
    uint64_t d = step(&h);
    assert_int_equal(d, 110000000);
    assert_int_equal(d, formula(&h, 100, 0, 0));
    assert_int_equal(r.admits, 1);
    assert_int_equal(r.cached, 0);
    assert_int_equal(r.n_tokens, 1);
    assert_int_equal(r.first_token_at - t0, 110000000);

    /* Decodes: 10 ms + 1 ms + ctx * 10 us, ctx = prompt + generated so far. */
    d = step(&h);
    assert_int_equal(d, 12010000);
    assert_int_equal(d, formula(&h, 0, 1, 101));
    assert_int_equal(r.n_tokens, 2);
    assert_int_equal(step(&h), formula(&h, 0, 1, 102));
    assert_false(r.finished);
    assert_int_equal(step(&h), formula(&h, 0, 1, 103));
    assert_true(r.finished);
    assert_int_equal(r.reason, SIM_FINISH_STOP);
    assert_int_equal(r.finish_at, r.last_token_at);
    assert_false(sim_engine_has_work(h.e));
    assert_int_equal(sim_engine_step_begin(h.e, h.now), 0);

    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.steps, 4);
    assert_int_equal(s.prompt_tokens, 100);
    assert_int_equal(s.generation_tokens, 4);
    assert_int_equal(s.prefix_queries_tokens, 100);
    assert_int_equal(s.prefix_hits_tokens, 0);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 0);
    assert_int_equal(s.blocks_used, 0);
    /* 103 tokens got KV: 6 full blocks hashed and cached, the partial 7th freed. */
    assert_int_equal(s.blocks_cached_free, 6);
    assert_true(s.kv_usage == 0.0);
    h_free(&h);
}

static void test_time_scale(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.time_scale = 0.01;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[100];
    fill_ids(p, 100, 1);
    struct rec r;
    add(&h, &r, p, 100, 2);
    assert_int_equal(step(&h), 1100000);
    assert_int_equal(step(&h), formula(&h, 0, 1, 101));
    assert_true(r.finished);
    /* A step with no modeled cost still takes >= 1 ns. */
    cfg = base_cfg();
    cfg.step_base_s = 0;
    cfg.prefill_tokens_per_s = 1e18;
    cfg.decode_per_seq_s = 0;
    cfg.decode_per_ctx_token_s = 0;
    h_free(&h);
    h_init(&h, &cfg);
    add(&h, &r, p, 100, 1);
    assert_int_equal(step(&h), 1);
    assert_true(r.finished);
    h_free(&h);
}

static void test_chunked_prefill(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.max_num_batched_tokens = 64;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[200];
    fill_ids(p, 200, 2);
    struct rec r;
    uint64_t t0 = h.now;
    add(&h, &r, p, 200, 3);
    /* ceil(200/64) = 4 steps: 64, 64, 64, 8; the first token ends the 4th. */
    assert_int_equal(step(&h), formula(&h, 64, 0, 0));
    assert_int_equal(r.n_tokens, 0);
    assert_int_equal(r.admits, 1);
    assert_int_equal(step(&h), formula(&h, 64, 0, 0));
    assert_int_equal(step(&h), formula(&h, 64, 0, 0));
    assert_int_equal(r.n_tokens, 0);
    assert_int_equal(step(&h), formula(&h, 8, 0, 0));
    assert_int_equal(r.n_tokens, 1);
    assert_int_equal(r.first_token_at - t0, 3 * formula(&h, 64, 0, 0) + formula(&h, 8, 0, 0));

    /* A second request arriving now shares the budget with the decode: 1 + 63. */
    uint32_t q[100];
    fill_ids(q, 100, 3);
    struct rec r2;
    add(&h, &r2, q, 100, 1);
    assert_int_equal(step(&h), formula(&h, 63, 1, 201));
    assert_int_equal(r.n_tokens, 2);
    assert_int_equal(r2.n_tokens, 0);
    assert_int_equal(step(&h), formula(&h, 37, 1, 202));
    assert_true(r.finished);
    assert_true(r2.finished);
    h_free(&h);
}

static void test_prefix_cache_hit(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[100];
    fill_ids(p, 100, 4);
    struct rec a, b;
    add(&h, &a, p, 100, 1);
    uint64_t d1 = step(&h);
    assert_true(a.finished);
    assert_int_equal(sim_engine_cached_prefix(h.e, p, 100), 96);
    assert_int_equal(sim_engine_cached_prefix(h.e, p, 40), 32);

    add(&h, &b, p, 100, 1);
    uint64_t d2 = step(&h);
    assert_true(b.finished);
    assert_int_equal(b.cached, 96); /* the 6 full blocks */
    assert_int_equal(d2, formula(&h, 4, 0, 0));
    assert_true(d2 < d1);

    /* A prompt that is exactly 4 full blocks, all cached: the last block is recomputed
     * (the sampler needs one position), so 48 cached. */
    uint32_t q[64];
    fill_ids(q, 64, 5);
    struct rec c, d;
    add(&h, &c, q, 64, 1);
    step(&h);
    add(&h, &d, q, 64, 1);
    assert_int_equal(step(&h), formula(&h, 16, 0, 0));
    assert_int_equal(d.cached, 48);
    /* A shared prefix with a different tail hits only the common full blocks. */
    uint32_t r3[100];
    memcpy(r3, p, sizeof r3);
    r3[50] ^= 1;
    struct rec e3;
    add(&h, &e3, r3, 100, 1);
    step(&h);
    assert_int_equal(e3.cached, 48);

    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.prefix_queries_tokens, 100 + 100 + 64 + 64 + 100);
    assert_int_equal(s.prefix_hits_tokens, 96 + 48 + 48);
    assert_int_equal(s.prompt_tokens, 428);
    h_free(&h);
}

static void test_generated_blocks_cached(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    struct h h;
    h_init(&h, &cfg);
    uint32_t full[130];
    fill_ids(full, 100, 6);
    fill_ids(full + 100, 30, 77); /* the output the first request will generate */
    struct rec a, b;
    add_ex(&h, &a, full, 100, 30, 77, false, 0);
    run_idle(&h);
    assert_true(a.finished);
    /* 129 tokens got KV: 8 full blocks, 2 of them made of generated tokens. */
    assert_int_equal(sim_engine_cached_prefix(h.e, full, 130), 128);
    add(&h, &b, full, 130, 1);
    step(&h);
    assert_int_equal(b.cached, 128);
    h_free(&h);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.block_size = 4;
    cfg.num_gpu_blocks = 8;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[6][8];
    struct rec r[6];
    /* Four 2-block prompts fill the cache, freed in order A, B, C, D. */
    for (int i = 0; i < 4; i++) {
        fill_ids(p[i], 8, 100 + (uint64_t)i);
        add(&h, &r[i], p[i], 8, 1);
        step(&h);
        assert_true(r[i].finished);
    }
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.blocks_cached_free, 8);
    assert_int_equal(s.evictions, 0);
    /* E needs 2 blocks: A's, the oldest freed, go. */
    fill_ids(p[4], 8, 104);
    add(&h, &r[4], p[4], 8, 1);
    step(&h);
    stats(&h, &s);
    assert_int_equal(s.evictions, 2);
    assert_int_equal(sim_engine_cached_prefix(h.e, p[0], 8), 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(sim_engine_cached_prefix(h.e, p[i], 8), 8);
    /* F needs 1 block: B's tail block goes before B's head. */
    fill_ids(p[5], 4, 105);
    add(&h, &r[5], p[5], 4, 1);
    step(&h);
    stats(&h, &s);
    assert_int_equal(s.evictions, 3);
    assert_int_equal(sim_engine_cached_prefix(h.e, p[1], 8), 4);
    assert_int_equal(sim_engine_cached_prefix(h.e, p[2], 8), 8);
    /* A reused block moves out of the LRU: hitting C refreshes it, so D is next. */
    struct rec c2;
    add(&h, &c2, p[2], 8, 1);
    step(&h);
    assert_int_equal(c2.cached, 4);
    /* C's 2nd block was not a hit (cap) and C needed one more block: B's head went. */
    assert_int_equal(sim_engine_cached_prefix(h.e, p[1], 8), 0);
    assert_int_equal(sim_engine_cached_prefix(h.e, p[2], 8), 8);
    stats(&h, &s);
    assert_int_equal(s.evictions, 4);
    assert_int_equal(s.blocks_used + s.blocks_cached_free + h.e->free_n, 8);
    h_free(&h);
}

static void test_max_num_seqs(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.max_num_seqs = 2;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[5][40];
    struct rec r[5];
    for (int i = 0; i < 5; i++) {
        fill_ids(p[i], 40, 200 + (uint64_t)i);
        add(&h, &r[i], p[i], 40, 5);
    }
    step(&h);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.running, 2);
    assert_int_equal(s.waiting, 3);
    assert_int_equal(r[0].admits + r[1].admits, 2);
    assert_int_equal(r[2].admits, 0);
    while (sim_engine_has_work(h.e)) {
        step(&h);
        stats(&h, &s);
        assert_true(s.running <= 2);
    }
    for (int i = 0; i < 5; i++) {
        assert_true(r[i].finished);
        assert_int_equal(r[i].admit_order, (uint64_t)i + 1);
    }
    /* max_num_seqs above the token budget is clamped (a full decode batch must fit). */
    sim_engine_free(h.e);
    cfg = base_cfg();
    cfg.max_num_seqs = 500;
    cfg.max_num_batched_tokens = 100;
    h_init(&h, &cfg);
    assert_int_equal(sim_engine_config(h.e)->max_num_seqs, 100);
    h_free(&h);
}

static void test_fcfs_head_of_line(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.num_gpu_blocks = 10;
    struct h h;
    h_init(&h, &cfg);
    uint32_t a[100], b[100], c[16];
    fill_ids(a, 100, 300);
    fill_ids(b, 100, 301);
    fill_ids(c, 16, 302);
    struct rec ra, rb, rc;
    add(&h, &ra, a, 100, 40); /* 7 blocks, grows to 9 */
    add(&h, &rb, b, 100, 1);  /* 7 blocks: does not fit while A runs */
    add(&h, &rc, c, 16, 1);   /* 1 block would fit, but B is ahead */
    step(&h);
    assert_int_equal(ra.admits, 1);
    for (int i = 0; i < 10; i++)
        step(&h);
    assert_int_equal(rb.admits, 0);
    assert_int_equal(rc.admits, 0);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.waiting, 2);
    run_idle(&h);
    assert_true(ra.finished && rb.finished && rc.finished);
    assert_true(rb.admit_order < rc.admit_order);
    assert_true(rb.first_token_at > ra.finish_at - 1);
    stats(&h, &s);
    assert_int_equal(s.preemptions, 0);
    h_free(&h);
}

static void test_preemption(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.block_size = 4;
    cfg.num_gpu_blocks = 6;
    struct h h;
    h_init(&h, &cfg);
    uint32_t a[8], b[8];
    fill_ids(a, 8, 400);
    fill_ids(b, 8, 401);
    struct rec ra, rb;
    /* Each needs 4 blocks at the end (8 + 8 - 1 tokens), 8 > 6: B, admitted last, is
     * preempted when A's decode crosses into its 4th block. */
    add_ex(&h, &ra, a, 8, 8, 1, false, 0);
    add_ex(&h, &rb, b, 8, 8, 2, false, 0);
    int steps = 0;
    while (sim_engine_has_work(h.e)) {
        step(&h);
        assert_true(++steps < 100);
        if (rb.preempts == 1 && !ra.finished) {
            struct sim_engine_stats s;
            stats(&h, &s);
            assert_int_equal(s.running, 1);
            assert_int_equal(s.waiting, 1);
        }
    }
    assert_true(ra.finished && rb.finished);
    assert_int_equal(ra.preempts, 0);
    assert_int_equal(rb.preempts, 1);
    assert_int_equal(rb.admits, 1);   /* on_admit not repeated */
    assert_int_equal(rb.n_tokens, 8); /* indices checked contiguous in cb_tokens */
    assert_true(rb.finish_at > ra.finish_at);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.preemptions, 1);
    assert_int_equal(s.generation_tokens, 16);
    assert_int_equal(s.prompt_tokens, 16); /* counted once despite the recompute */
    assert_int_equal(s.prefix_queries_tokens, 16);
    assert_int_equal(s.blocks_used, 0);
    h_free(&h);
}

static void test_preempt_self_and_outgrow(void **state)
{
    (void)state;
    /* A sequence alone that outgrows the whole cache ends with LENGTH instead of
     * preempting itself forever. */
    struct sim_engine_config cfg = base_cfg();
    cfg.block_size = 4;
    cfg.num_gpu_blocks = 3;
    struct h h;
    h_init(&h, &cfg);
    uint32_t a[8];
    fill_ids(a, 8, 500);
    struct rec r;
    h.allow_truncate = true;
    add(&h, &r, a, 8, 20);
    run_idle(&h);
    assert_true(r.finished);
    assert_int_equal(r.reason, SIM_FINISH_LENGTH);
    assert_int_equal(r.n_tokens, 5); /* 12 tokens of KV fill 3 blocks */
    assert_int_equal(r.preempts, 0);
    h_free(&h);
}

static void test_pin_on_finish(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[64];
    fill_ids(p, 64, 600);
    struct rec r, r2;
    uint64_t id = add_ex(&h, &r, p, 64, 1, 1, true, 0);
    step(&h);
    assert_true(r.finished);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.pinned_seqs, 1);
    assert_int_equal(s.blocks_used, 4);
    assert_false(sim_engine_has_work(h.e));
    uint32_t blocks[8];
    assert_int_equal(sim_engine_seq_blocks(h.e, id, blocks, 8), 4);
    assert_int_equal(sim_engine_seq_blocks(h.e, id, blocks, 2), 4);
    /* Pinned blocks are shared by a later request with the same prefix. */
    add(&h, &r2, p, 64, 1);
    step(&h);
    assert_int_equal(r2.cached, 48);
    stats(&h, &s);
    assert_int_equal(s.blocks_used, 4);
    sim_engine_unpin(h.e, id);
    stats(&h, &s);
    assert_int_equal(s.pinned_seqs, 0);
    assert_int_equal(s.blocks_used, 0);
    assert_int_equal(s.blocks_cached_free, 4);
    assert_int_equal(sim_engine_seq_blocks(h.e, id, blocks, 8), 0);
    sim_engine_unpin(h.e, id); /* unknown now: no-op */
    sim_engine_unpin(h.e, 12345);
    h_free(&h);
}

static void test_remote_kv(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    struct h h;
    h_init(&h, &cfg);

    /* ok: no prefill compute; the first token comes from a decode-like step. */
    uint32_t p[64];
    fill_ids(p, 64, 700);
    struct rec r;
    uint64_t id = add_ex(&h, &r, p, 64, 3, 1, false, 64);
    assert_int_equal(step(&h), formula(&h, 0, 0, 0));
    assert_int_equal(r.admits, 1);
    assert_int_equal(r.kv_loads, 1);
    assert_int_equal(r.kv_id, id);
    assert_int_equal(r.kv_tokens, 64);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.blocks_used, 4);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 1);
    assert_false(sim_engine_has_work(h.e));
    assert_int_equal(sim_engine_step_begin(h.e, h.now), 0);
    sim_engine_kv_loaded(h.e, id, true);
    sim_engine_kv_loaded(h.e, id, true); /* not waiting any more: no-op */
    assert_true(sim_engine_has_work(h.e));
    assert_int_equal(step(&h), formula(&h, 0, 1, 64));
    assert_int_equal(r.n_tokens, 1);
    assert_int_equal(sim_engine_cached_prefix(h.e, p, 64), 64); /* loaded blocks hashed */
    assert_int_equal(step(&h), formula(&h, 0, 1, 65));
    assert_int_equal(step(&h), formula(&h, 0, 1, 66));
    assert_true(r.finished);

    /* !ok: the tokens are prefilled locally. */
    uint32_t q[64];
    fill_ids(q, 64, 701);
    struct rec r2;
    id = add_ex(&h, &r2, q, 64, 1, 1, false, 64);
    step(&h);
    assert_int_equal(r2.kv_tokens, 64);
    sim_engine_kv_loaded(h.e, id, false);
    assert_int_equal(step(&h), formula(&h, 64, 0, 0));
    assert_true(r2.finished);

    /* All of the remote range cached locally: no load at all. */
    struct rec r3;
    add_ex(&h, &r3, q, 64, 1, 1, false, 32);
    assert_int_equal(step(&h), formula(&h, 16, 0, 0));
    assert_int_equal(r3.kv_loads, 0);
    assert_int_equal(r3.cached, 48);
    assert_true(r3.finished);

    /* Partly cached: only the rest is loaded; the tail past remote_tokens is prefilled. */
    uint32_t t[80];
    memcpy(t, q, 32 * sizeof *t);
    fill_ids(t + 32, 48, 702);
    struct rec r4;
    id = add_ex(&h, &r4, t, 80, 1, 1, false, 64);
    step(&h);
    assert_int_equal(r4.cached, 32);
    assert_int_equal(r4.kv_tokens, 32);
    sim_engine_kv_loaded(h.e, id, true);
    assert_int_equal(step(&h), formula(&h, 16, 0, 0));
    assert_true(r4.finished);

    /* kv_loaded from inside on_kv_load is fine. */
    uint32_t u[32];
    fill_ids(u, 32, 703);
    struct rec r5;
    add_ex(&h, &r5, u, 32, 2, 1, false, 32);
    r5.load_in_callback = true;
    step(&h);
    assert_int_equal(r5.kv_loads, 1);
    run_idle(&h);
    assert_true(r5.finished);

    sim_engine_kv_loaded(h.e, 999999, true); /* unknown: no-op */
    stats(&h, &s);
    assert_int_equal(s.blocks_used, 0);
    h_free(&h);
}

static void test_abort_everywhere(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.max_num_batched_tokens = 32;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[8][100];
    for (int i = 0; i < 8; i++)
        fill_ids(p[i], 100, 800 + (uint64_t)i);
    struct rec r[8];

    /* Waiting. */
    uint64_t id = add(&h, &r[0], p[0], 100, 5);
    sim_engine_abort(h.e, id);
    r[0].dead = true;
    assert_false(sim_engine_has_work(h.e));
    assert_int_equal(sim_engine_step_begin(h.e, h.now), 0);

    /* Mid-prefill, in flight: its share of the step is discarded, no callbacks. */
    id = add(&h, &r[1], p[1], 100, 5);
    uint64_t d = sim_engine_step_begin(h.e, h.now);
    assert_true(d > 0);
    sim_engine_abort(h.e, id);
    r[1].dead = true;
    check_invariants(h.e);
    h.now += d;
    sim_engine_step_end(h.e, h.now);
    check_invariants(h.e);
    assert_int_equal(r[1].admits, 0);

    /* Decoding, in flight. */
    id = add(&h, &r[2], p[2], 20, 5);
    step(&h);
    step(&h);
    assert_int_equal(r[2].n_tokens, 2);
    d = sim_engine_step_begin(h.e, h.now);
    sim_engine_abort(h.e, id);
    r[2].dead = true;
    h.now += d;
    sim_engine_step_end(h.e, h.now);
    check_invariants(h.e);

    /* Running between steps. */
    id = add(&h, &r[3], p[3], 100, 5);
    step(&h);
    sim_engine_abort(h.e, id);
    r[3].dead = true;
    check_invariants(h.e);

    /* Waiting for remote KV. */
    id = add_ex(&h, &r[4], p[4], 100, 5, 1, false, 100);
    step(&h);
    assert_int_equal(r[4].kv_loads, 1);
    sim_engine_abort(h.e, id);
    r[4].dead = true;
    sim_engine_kv_loaded(h.e, id, true); /* gone: no-op */
    check_invariants(h.e);

    /* Pinned. */
    id = add_ex(&h, &r[5], p[5], 20, 1, 1, true, 0);
    step(&h);
    assert_true(r[5].finished);
    sim_engine_abort(h.e, id);
    check_invariants(h.e);

    /* From inside callbacks: one sequence aborts itself on its first token, another
     * aborts a third whose tokens of the same step are then never delivered. */
    struct rec x, y, z;
    add(&h, &x, p[6], 10, 5);
    add(&h, &y, p[0], 10, 5);
    uint64_t zid = add(&h, &z, p[7], 10, 5);
    x.abort_self_on_token = true;
    step(&h);
    assert_int_equal(x.n_tokens, 1);
    assert_false(x.finished);
    y.abort_other_on_token = zid;
    y.abort_other_rec = &z;
    step(&h);
    assert_true(z.dead);
    assert_int_equal(z.n_tokens, 1);
    run_idle(&h);
    assert_true(y.finished);

    sim_engine_abort(h.e, 0);
    sim_engine_abort(h.e, 424242);
    sim_engine_abort(h.e, id); /* twice */
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.running + s.waiting + s.pinned_seqs, 0);
    assert_int_equal(s.blocks_used, 0);
    assert_int_equal(h.e->smap.n, 0);
    h_free(&h);
}

static void test_add_impossible(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.num_gpu_blocks = 4;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[65];
    fill_ids(p, 65, 900);
    struct rec r;
    assert_int_equal(add(&h, &r, p, 65, 1), 0);
    assert_int_equal(add(&h, &r, p, 0, 1), 0);
    assert_int_equal(add(&h, &r, p, 10, 0), 0);
    assert_false(sim_engine_has_work(h.e));
    assert_true(add(&h, &r, p, 64, 1) > 0);
    run_idle(&h);
    assert_true(r.finished);
    h_free(&h);
}

static void test_stats_quiescent(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.num_gpu_blocks = 64;
    struct h h;
    h_init(&h, &cfg);
    uint32_t p[4][200];
    struct rec r[4];
    for (int i = 0; i < 4; i++) {
        fill_ids(p[i], 200, 1000 + (uint64_t)i % 2);
        add(&h, &r[i], p[i], 200, 10);
    }
    step(&h);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_true(s.kv_usage > 0 && s.kv_usage <= 1);
    assert_int_equal(s.blocks_used + s.blocks_cached_free + h.e->free_n, 64);
    run_idle(&h);
    stats(&h, &s);
    assert_int_equal(s.blocks_used, 0);
    assert_int_equal(s.blocks_cached_free + h.e->free_n, s.blocks_total);
    assert_int_equal(s.generation_tokens, 40);
    assert_int_equal(s.prompt_tokens, 800);
    assert_true(s.prefix_hits_tokens <= s.prefix_queries_tokens);
    h_free(&h);
}

/* Callbacks that begin the next step, add new work and abort others, as a real driver
 * and API layer do. */
static void test_reentrant_driver(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.num_gpu_blocks = 40;
    cfg.block_size = 8;
    struct h h;
    h_init(&h, &cfg);
    h.kick_in_cb = true;
    enum { N = 60 };
    struct rec r[N];
    uint32_t p[100];
    for (int i = 0; i < N; i++) {
        fill_ids(p, 100, (uint64_t)i % 3);
        add(&h, &r[i], p, 20 + (uint32_t)i, 3 + (uint32_t)i % 7);
    }
    r[5].abort_other_on_token = r[6].id;
    r[5].abort_other_rec = &r[6];
    kick(&h);
    int steps = 0;
    while (h.drv_in_flight) {
        h.drv_in_flight = false; /* like server.c: cleared before step_end */
        h.now = h.drv_end;
        sim_engine_step_end(h.e, h.now);
        kick(&h);
        check_invariants(h.e);
        assert_true(++steps < 10000);
    }
    assert_true(h.kicks_in_cb > 0);
    for (int i = 0; i < N; i++)
        assert_true(r[i].finished || r[i].dead);
    assert_true(r[6].dead);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.blocks_used, 0);
    assert_int_equal(h.e->smap.n, 0);
    h_free(&h);
}

/* Thousands of random operations; invariants after each, leaks caught by ASan. */
static void test_stress(void **state)
{
    (void)state;
    uint64_t rng = 0xC0FFEE;
    for (int round = 0; round < 6; round++) {
        struct sim_engine_config cfg = base_cfg();
        cfg.block_size = 1u + (uint32_t)hash_rand_below(&rng, 8);
        cfg.num_gpu_blocks = 16 + (uint32_t)hash_rand_below(&rng, 200);
        cfg.max_num_seqs = 1 + (uint32_t)hash_rand_below(&rng, 40);
        cfg.max_num_batched_tokens = 16 + (uint32_t)hash_rand_below(&rng, 200);
        struct h h;
        h_init(&h, &cfg);
        h.allow_truncate = true;
        enum { MAXR = 3000 };
        struct rec *recs = xcalloc(MAXR, sizeof *recs);
        uint64_t *ids = xcalloc(MAXR, sizeof *ids);
        bool *pinned = xcalloc(MAXR, sizeof *pinned);
        bool *remote = xcalloc(MAXR, sizeof *remote);
        int nr = 0;
        uint32_t prompt[600];
        for (int op = 0; op < 6000; op++) {
            uint64_t k = hash_rand_below(&rng, 100);
            if (k < 30 && nr < MAXR) {
                /* Prompts share prefixes: a few families, random lengths. */
                uint32_t np = 1 + (uint32_t)hash_rand_below(&rng, 300);
                fill_ids(prompt, np, hash_rand_below(&rng, 6));
                if (hash_rand_below(&rng, 3) == 0)
                    prompt[hash_rand_below(&rng, np)] ^= 7;
                uint32_t nout = 1 + (uint32_t)hash_rand_below(&rng, 40);
                bool pin = hash_rand_below(&rng, 8) == 0;
                uint32_t rem =
                    hash_rand_below(&rng, 6) == 0 ? (uint32_t)hash_rand_below(&rng, np + 1) : 0;
                int i = nr++;
                ids[i] = add_ex(&h, &recs[i], prompt, np, nout, hash_rand_below(&rng, 4), pin, rem);
                pinned[i] = pin;
                remote[i] = rem > 0;
                if (!ids[i])
                    recs[i].dead = true;
            } else if (k < 40 && nr > 0) {
                int i = (int)hash_rand_below(&rng, (uint64_t)nr);
                sim_engine_abort(h.e, ids[i]);
                recs[i].dead = true;
            } else if (k < 50 && nr > 0) {
                int i = (int)hash_rand_below(&rng, (uint64_t)nr);
                if (recs[i].kv_loads && !recs[i].dead)
                    sim_engine_kv_loaded(h.e, ids[i], hash_rand_below(&rng, 2));
            } else if (k < 55 && nr > 0) {
                int i = (int)hash_rand_below(&rng, (uint64_t)nr);
                if (recs[i].finished)
                    sim_engine_unpin(h.e, ids[i]);
            } else if (k < 60) {
                /* Abort during an in-flight step. */
                uint64_t d = sim_engine_step_begin(h.e, h.now);
                if (d && nr > 0) {
                    int i = (int)hash_rand_below(&rng, (uint64_t)nr);
                    sim_engine_abort(h.e, ids[i]);
                    recs[i].dead = true;
                    check_invariants(h.e);
                }
                if (d) {
                    h.now += d;
                    sim_engine_step_end(h.e, h.now);
                }
            } else {
                step(&h);
            }
            check_invariants(h.e);
        }
        /* Drain: load pending remote KV and unpin finished sequences as they come,
         * until nothing can run. */
        for (int iter = 0;; iter++) {
            assert_true(iter < 100000);
            for (int i = 0; i < nr; i++) {
                if (recs[i].dead)
                    continue;
                if (recs[i].kv_loads)
                    sim_engine_kv_loaded(h.e, ids[i], true);
                if (recs[i].finished && pinned[i])
                    sim_engine_unpin(h.e, ids[i]);
            }
            if (!sim_engine_has_work(h.e))
                break;
            assert_true(step(&h) > 0);
        }
        for (int i = 0; i < nr; i++)
            assert_true(recs[i].dead || recs[i].finished);
        struct sim_engine_stats s;
        stats(&h, &s);
        int loads = 0, truncated = 0, finished = 0;
        for (int i = 0; i < nr; i++) {
            loads += recs[i].kv_loads;
            finished += recs[i].finished;
            truncated += recs[i].finished && recs[i].n_tokens < recs[i].n_output;
        }
        print_message("round %d: %d seqs, %d finished (%d cut short), %d kv loads, "
                      "%llu preemptions, %llu evictions, hits %llu/%llu tokens\n",
                      round, nr, finished, truncated, loads, (unsigned long long)s.preemptions,
                      (unsigned long long)s.evictions, (unsigned long long)s.prefix_hits_tokens,
                      (unsigned long long)s.prefix_queries_tokens);
        assert_int_equal(s.blocks_used, 0);
        assert_int_equal(s.running + s.waiting + s.pinned_seqs, 0);
        assert_int_equal(h.e->smap.n, 0);
        assert_true(s.prefix_hits_tokens <= s.prefix_queries_tokens);
        check_invariants(h.e);
        h_free(&h);
        free(recs);
        free(ids);
        free(pinned);
        free(remote);
    }
}

/* Many concurrent decodes: the step loop stays cheap and allocation-free. */
static void test_many_seqs(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.num_gpu_blocks = 100000;
    cfg.max_num_seqs = 4096;
    struct h h;
    h_init(&h, &cfg);
    enum { N = 4000 };
    struct rec *r = xcalloc(N, sizeof *r);
    uint32_t p[64];
    for (int i = 0; i < N; i++) {
        fill_ids(p, 64, (uint64_t)i % 50);
        add(&h, &r[i], p, 64, 50);
    }
    int steps = 0;
    while (sim_engine_has_work(h.e)) {
        uint64_t d = sim_engine_step_begin(h.e, h.now);
        h.now += d;
        sim_engine_step_end(h.e, h.now);
        steps++;
    }
    check_invariants(h.e);
    for (int i = 0; i < N; i++)
        assert_true(r[i].finished);
    struct sim_engine_stats s;
    stats(&h, &s);
    assert_int_equal(s.generation_tokens, (uint64_t)N * 50);
    print_message("%d steps for %d seqs\n", steps, N);
    free(r);
    h_free(&h);
}


/* ---- KV event sink ------------------------------------------------------------------- */

struct kvrec {
    int n_stored_events;
    uint64_t stored[64];
    uint32_t n_stored;
    bool first_has_parent;
    uint64_t last_parent;
    uint32_t tokens[256];
    uint32_t n_tokens;
    uint64_t removed[64];
    uint32_t n_removed;
};

static void kv_stored(void *ctx, const uint64_t *hashes, uint32_t n, bool has_parent,
                      uint64_t parent, const uint32_t *tokens, uint32_t n_tokens)
{
    struct kvrec *k = ctx;
    if (k->n_stored_events++ == 0)
        k->first_has_parent = has_parent;
    k->last_parent = parent;
    assert_true(k->n_stored + n <= 64 && k->n_tokens + n_tokens <= 256);
    memcpy(k->stored + k->n_stored, hashes, n * sizeof *hashes);
    k->n_stored += n;
    memcpy(k->tokens + k->n_tokens, tokens, n_tokens * sizeof *tokens);
    k->n_tokens += n_tokens;
}

static void kv_removed(void *ctx, uint64_t hash)
{
    struct kvrec *k = ctx;
    assert_true(k->n_removed < 64);
    k->removed[k->n_removed++] = hash;
}

static bool has_hash(const uint64_t *a, uint32_t n, uint64_t h)
{
    for (uint32_t i = 0; i < n; i++)
        if (a[i] == h)
            return true;
    return false;
}

static void test_kv_sink_stored_and_removed(void **state)
{
    (void)state;
    struct sim_engine_config cfg = base_cfg();
    cfg.block_size = 4;
    cfg.num_gpu_blocks = 8;
    struct h h;
    h_init(&h, &cfg);
    struct kvrec k;
    memset(&k, 0, sizeof k);
    struct sim_engine_kv_sink sink = {.stored = kv_stored, .removed = kv_removed};
    sim_engine_set_kv_sink(h.e, &sink, &k);

    /* A 2-block prompt: one event with both blocks, no parent, the prompt's tokens, and
     * the hashes the prefix cache uses. */
    uint32_t p[5][8];
    struct rec r[5];
    fill_ids(p[0], 8, 300);
    add(&h, &r[0], p[0], 8, 1);
    step(&h);
    assert_int_equal(k.n_stored_events, 1);
    assert_int_equal(k.n_stored, 2);
    assert_false(k.first_has_parent);
    assert_int_equal(k.n_tokens, 8);
    assert_memory_equal(k.tokens, p[0], sizeof p[0]);
    uint64_t want[2];
    tok_block_hashes(p[0], 8, 4, cfg.hash_seed, want, 2);
    assert_memory_equal(k.stored, want, sizeof want);

    /* The same prompt again: its blocks are cached already, nothing new is announced. */
    add(&h, &r[1], p[0], 8, 1);
    step(&h);
    assert_int_equal(k.n_stored_events, 1);
    assert_int_equal(k.n_removed, 0);

    /* Three more 2-block prompts take the 6 blocks never hashed; nothing is evicted. */
    for (int i = 2; i < 5; i++) {
        fill_ids(p[i], 8, 300 + (uint64_t)i);
        add(&h, &r[i], p[i], 8, 1);
        step(&h);
    }
    assert_int_equal(k.n_stored, 8);
    assert_int_equal(k.n_removed, 0);

    /* A prompt that extends a cached one stores only its new block, parented on the
     * cached block before it. */
    uint32_t q[12];
    memcpy(q, p[4], sizeof p[4]);
    fill_ids(q + 8, 4, 999);
    struct rec rq;
    int before = k.n_stored_events;
    add(&h, &rq, q, 12, 1);
    step(&h);
    assert_int_equal(k.n_stored_events, before + 1);
    uint64_t qh[3];
    tok_block_hashes(q, 12, 4, cfg.hash_seed, qh, 3);
    assert_true(k.stored[k.n_stored - 1] == qh[2]);
    assert_true(k.last_parent == qh[1]);
    /* Its new block came from the LRU: the evicted cached block is announced, and it is
     * one of A's (the least recently used). */
    struct sim_engine_stats st;
    stats(&h, &st);
    assert_int_equal(k.n_removed, st.evictions);
    assert_int_equal(k.n_removed, 1);
    assert_true(has_hash(k.removed, k.n_removed, want[0]) ||
                has_hash(k.removed, k.n_removed, want[1]));
    h_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_request_timing),
        cmocka_unit_test(test_time_scale),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_prefix_cache_hit),
        cmocka_unit_test(test_generated_blocks_cached),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_kv_sink_stored_and_removed),
        cmocka_unit_test(test_max_num_seqs),
        cmocka_unit_test(test_fcfs_head_of_line),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_preempt_self_and_outgrow),
        cmocka_unit_test(test_pin_on_finish),
        cmocka_unit_test(test_remote_kv),
        cmocka_unit_test(test_abort_everywhere),
        cmocka_unit_test(test_add_impossible),
        cmocka_unit_test(test_stats_quiescent),
        cmocka_unit_test(test_reentrant_driver),
        cmocka_unit_test(test_stress),
        cmocka_unit_test(test_many_seqs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

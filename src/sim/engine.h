/* The sim's engine model: a pure state machine in the shape of vLLM v1's scheduler.
 *
 * It owns the KV cache (blocks, prefix cache with chained hashes and an LRU of
 * evictable blocks), the FCFS waiting queue, the running set, chunked-prefill steps and
 * preemption. It never reads a clock and does no I/O: every call carries the current
 * time, and the driver (real: a libuv timer; virtual: a loop advancing a number) asks
 * how long the next step takes and reports when it has elapsed:
 *
 *     dur = sim_engine_step_begin(e, now);   // 0: nothing to do, wait for work
 *     ... dur nanoseconds later ...
 *     sim_engine_step_end(e, now + dur);     // tokens, finishes, preemptions fire here
 *
 * While a step is in flight, sim_engine_add/abort may be called; new work joins the next
 * step. Callbacks fire only from inside sim_engine_step_end (and from sim_engine_abort
 * never: abort is silent). A sequence's callbacks never fire after it finished or was
 * aborted.
 *
 * Block accounting: a sequence is admitted only when its whole prompt fits (cached
 * blocks are shared, the rest allocated at admission); decoding adds a block each time
 * its length crosses a block boundary. Every full block of computed tokens gets a
 * chained hash h_i = xxh64(token ids of block i, seed=h_{i-1}),
 * h_{-1} = tok_hash_seed(model, hash_seed). Blocks of generated tokens are hashed too.
 * Freed blocks keep their hash and join an LRU of evictable blocks; a cached block is
 * reused by a later sequence whose leading blocks have the same hashes, and evicted
 * only when an allocation needs room. */
#ifndef TANDEM_SIM_ENGINE_H
#define TANDEM_SIM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sim_engine;

/* Durations are in (scaled) nanoseconds: each modeled duration is multiplied by
 * time_scale before it is returned. */
struct sim_engine_config {
    uint32_t block_size;             /* tokens per block (16) */
    uint32_t num_gpu_blocks;         /* total KV blocks */
    uint32_t max_num_seqs;           /* running sequences cap (256) */
    uint32_t max_num_batched_tokens; /* per-step token budget (8192) */
    uint32_t max_model_len;          /* prompt + output cap, enforced by the API layer */
    double step_base_s;              /* fixed cost of a step */
    double prefill_tokens_per_s;     /* prefill compute rate */
    double decode_per_seq_s;         /* cost per decoding sequence in a step */
    double decode_per_ctx_token_s;   /* cost per context token of decoding sequences */
    double time_scale;               /* multiplies every duration (1.0 = real) */
    uint64_t hash_seed;              /* chain seed (already mixed with the model name) */
};

enum sim_finish {
    SIM_FINISH_LENGTH, /* produced all output tokens it was given, ending on a length cap */
    SIM_FINISH_STOP,   /* produced all output tokens, ending on a stop condition */
};

/* What a sequence is. The engine copies the arrays; the caller may free them after
 * sim_engine_add returns. */
struct sim_seq_spec {
    const uint32_t *prompt_ids;
    uint32_t n_prompt;
    /* The output the sequence will produce, decided by the API layer up front (random
     * words or echo, truncated at stop strings). At least 1 token. */
    const uint32_t *output_ids;
    uint32_t n_output;
    enum sim_finish finish; /* reported after the last output token */
    /* P/D, prefill side (do_remote_decode): after finishing, keep the blocks pinned
     * (not freed, not evictable) until sim_engine_unpin. */
    bool pin_on_finish;
    /* P/D, decode side (do_remote_prefill): once admitted, this many leading prompt
     * tokens are to be loaded from a remote engine instead of computed. The sequence
     * waits (holding its blocks) until sim_engine_kv_loaded. Tokens already in the local
     * prefix cache are not loaded. 0 = normal local prefill. */
    uint32_t remote_tokens;
    void *user; /* passed back to every callback */
};

struct sim_engine_ops {
    /* Admitted into the running set (first time; not after a preemption). cached_tokens
     * = prompt tokens found in the prefix cache (counted in full blocks). */
    void (*on_admit)(void *user, uint32_t cached_tokens, uint64_t now);
    /* Remote KV needed: the engine allocated blocks for `tokens` prompt tokens and waits
     * for sim_engine_kv_loaded(id). */
    void (*on_kv_load)(void *user, uint64_t id, uint32_t tokens, uint64_t now);
    /* Output tokens [first, first+n) were produced by the step that just ended. */
    void (*on_tokens)(void *user, uint32_t first, uint32_t n, uint64_t now);
    /* Preempted back to the waiting queue (its progress will be recomputed). */
    void (*on_preempt)(void *user, uint64_t now);
    /* Finished after its last token (same step_end as that on_tokens). */
    void (*on_finish)(void *user, enum sim_finish reason, uint64_t now);
};

struct sim_engine_stats {
    uint32_t running;             /* sequences in the running set */
    uint32_t waiting;             /* waiting queue (incl. preempted and remote-KV waits) */
    uint32_t blocks_total;
    uint32_t blocks_used;         /* held by running or pinned sequences */
    uint32_t blocks_cached_free;  /* evictable blocks that still carry a hash */
    uint32_t pinned_seqs;
    double kv_usage;              /* blocks_used / blocks_total, 0..1 */
    uint64_t prefix_queries_tokens; /* prompt tokens looked up in the prefix cache */
    uint64_t prefix_hits_tokens;    /* of those, found cached */
    uint64_t preemptions;
    uint64_t prompt_tokens;       /* prompt tokens of admitted sequences (counted once) */
    uint64_t generation_tokens;   /* output tokens produced */
    uint64_t steps;
    uint64_t evictions;           /* cached blocks evicted to make room */
};

struct sim_engine *sim_engine_new(const struct sim_engine_config *cfg,
                                  const struct sim_engine_ops *ops);
void sim_engine_free(struct sim_engine *e);
const struct sim_engine_config *sim_engine_config(const struct sim_engine *e);

/* Queues a sequence (FCFS). Returns its id (> 0), or 0 if it can never run: its prompt
 * alone needs more blocks than the cache has (the API layer turns that into a 400). */
uint64_t sim_engine_add(struct sim_engine *e, const struct sim_seq_spec *spec, uint64_t now);
/* Removes a sequence wherever it is (waiting, running, waiting for KV, pinned); its
 * blocks are freed into the cache. No callback fires. Unknown ids are ignored. */
void sim_engine_abort(struct sim_engine *e, uint64_t id);
/* Ends a remote KV load: ok -> the loaded tokens count as computed (and are hashed into
 * the prefix cache); !ok -> the sequence prefills them locally instead. */
void sim_engine_kv_loaded(struct sim_engine *e, uint64_t id, bool ok);
/* Releases a pinned finished sequence's blocks into the cache (they stay cached). */
void sim_engine_unpin(struct sim_engine *e, uint64_t id);
/* Block ids held by a sequence (pinned or live); returns the count, writes up to cap. */
size_t sim_engine_seq_blocks(const struct sim_engine *e, uint64_t id, uint32_t *out, size_t cap);

/* Plans the next step at `now`: admits waiting sequences, builds the batch. Returns the
 * step's duration in ns (> 0), or 0 when there is nothing to run. Must not be called
 * while a step is in flight. */
uint64_t sim_engine_step_begin(struct sim_engine *e, uint64_t now);
/* Completes the in-flight step at `now`, firing callbacks. */
void sim_engine_step_end(struct sim_engine *e, uint64_t now);
bool sim_engine_step_in_flight(const struct sim_engine *e);
/* True when a step would do work: a sequence is running, or the head of the waiting
 * queue can be admitted now. Sequences waiting for remote KV, pinned ones and a head
 * that does not fit yet do not count. */
bool sim_engine_has_work(const struct sim_engine *e);

void sim_engine_stats(const struct sim_engine *e, struct sim_engine_stats *out);

/* KV events (optional): told when full blocks enter the prefix cache and when cached
 * blocks are evicted, from inside sim_engine_step_begin/step_end/kv_loaded, in the
 * order it happens. `stored` gets a run of consecutive blocks of one sequence that were
 * newly registered (blocks another sequence registered first are not repeated), with
 * the hash of the block before the run (has_parent false for a sequence's first block)
 * and the run's tokens (n * block_size). Arrays are borrowed for the call. Set it
 * before the first sim_engine_add (sequences keep their tokens only when a sink is
 * set); the sink struct is copied. */
struct sim_engine_kv_sink {
    void (*stored)(void *ctx, const uint64_t *hashes, uint32_t n, bool has_parent,
                   uint64_t parent, const uint32_t *tokens, uint32_t n_tokens);
    void (*removed)(void *ctx, uint64_t hash);
};
void sim_engine_set_kv_sink(struct sim_engine *e, const struct sim_engine_kv_sink *sink,
                            void *ctx);

/* Prefix-cache lookup without side effects: how many leading tokens of these ids are
 * cached right now (full blocks). */
uint32_t sim_engine_cached_prefix(const struct sim_engine *e, const uint32_t *ids, uint32_t n);

#endif

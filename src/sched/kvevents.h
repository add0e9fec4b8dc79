/* KV events: vLLM's KVEventBatch wire format (what `vllm serve --kv-events-config`
 * publishes and llm-d's kv-cache indexer consumes), decoded and encoded.
 *
 * A ZMQ PUB message is three frames: [topic, sequence number as 8 bytes big-endian,
 * payload]. The payload is msgpack, msgspec's array_like encoding:
 *
 *   batch   = [ts: float64, events: [event...], data_parallel_rank: int]   (rank optional)
 *   event   = ["BlockStored", block_hashes: [hash...], parent_block_hash: hash|nil,
 *              token_ids: [uint...], block_size: uint, lora_id: int|nil,
 *              medium: str|nil, lora_name: str|nil, ...]      (fields after lora_id optional)
 *           | ["BlockRemoved", block_hashes: [hash...], medium: str|nil, ...]
 *           | ["AllBlocksCleared"]
 *   hash    = uint64 (older vLLM, tandem sim) | bin (newer vLLM; the last 8 bytes are read
 *             big-endian, as llm-d's indexer does)
 *
 * The decoder also takes the map form (msgspec without array_like: {"ts":..,"events":..}
 * and events tagged by a "type" key), ignores unknown trailing fields and unknown event
 * tags (counted, not fatal), and rejects anything else with a message. It never trusts a
 * declared length beyond the bytes actually present. */
#ifndef TANDEM_SCHED_KVEVENTS_H
#define TANDEM_SCHED_KVEVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define KVEV_SEQ_BYTES 8

enum kvev_type {
    KVEV_BLOCK_STORED,
    KVEV_BLOCK_REMOVED,
    KVEV_ALL_BLOCKS_CLEARED,
};

/* One event. Arrays and strings belong to the batch that holds the event. */
struct kvev_event {
    enum kvev_type type;
    uint32_t n_hashes;
    uint64_t *hashes;
    bool has_parent;
    uint64_t parent;
    uint32_t n_tokens;   /* BlockStored only */
    uint32_t *token_ids; /* BlockStored only */
    uint32_t block_size; /* BlockStored only */
    bool has_lora_id;
    int64_t lora_id;
    const char *medium; /* NULL = nil/absent (GPU) */
};

struct kvev_batch {
    double ts;
    bool has_dp_rank;
    int64_t dp_rank;
    size_t n_events;
    struct kvev_event *events;
    size_t n_unknown; /* events with a tag this decoder does not know (skipped) */
    /* private: one allocation owns every array and string above */
    void *mem;
};

/* Decodes one payload (the third frame). On success fills *out (caller frees with
 * kvev_batch_free) and returns 0. On failure returns -EINVAL, leaves *out empty, and
 * writes a one-line reason into err (NUL-terminated, truncated to errlen). Borrows p. */
int kvev_decode(const uint8_t *p, size_t n, struct kvev_batch *out, char *err, size_t errlen);
void kvev_batch_free(struct kvev_batch *b);

/* Encodes a batch the way vLLM's msgspec encoder does (array_like, smallest integer
 * forms, float64 ts; BlockStored as 7 fields through medium, BlockRemoved as 3). The
 * payload is appended to *out. has_dp_rank false omits the third batch field. */
void kvev_encode(const struct kvev_batch *b, struct buf *out);

/* Reads the sequence frame: exactly 8 bytes, big-endian. */
bool kvev_parse_seq(const uint8_t *p, size_t n, uint64_t *seq);
void kvev_put_seq(uint64_t seq, uint8_t out[KVEV_SEQ_BYTES]);

const char *kvev_type_name(enum kvev_type t);

#endif

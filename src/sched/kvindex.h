/* KV block index: which pods hold a KV block, for the precise-prefix-cache-scorer
 * (sched_precise.c), in 8 bytes per (block, pod) pair.
 *
 * One 64-bit entry per (block, pod): the top 58 bits of the mixed block hash, then the
 * pod slot (0..63) in the low 6 bits; the value 0 marks an empty slot. The entries live
 * in an open-addressing table with Robin Hood linear probing: every entry sits at or
 * after its home slot with no empty slot in between, and a run of slots is ordered by
 * home, then by entry value, so the entries of one block (one per pod holding it) are
 * adjacent. A lookup stops at the first entry whose home lies past the block's; a
 * removal shifts the rest of the run back one slot (no tombstones). The capacity is not
 * a power of two: home = (uint128)entry * cap >> 64. The table grows by 1.5x when an
 * insert would take it past 0.9 full, so it is 0.6-0.9 full (8.9-13.3 bytes per entry)
 * once past its first 1,024 slots, and shrinks when clearing a pod leaves it under 0.3.
 *
 * Two block hashes that agree on their 58 mixed bits are one block to the index: a
 * false positive that costs at most a wrong preference in scoring.
 *
 * Not thread-safe: the caller locks. */
#ifndef TANDEM_SCHED_KVINDEX_H
#define TANDEM_SCHED_KVINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVIX_MAX_PODS 64

struct kvix {
    uint64_t *tab;     /* cap slots, owned */
    size_t cap;        /* 0 until the first insert */
    size_t n;          /* entries: (block, pod) pairs */
    size_t n_blocks;   /* distinct blocks */
    size_t max_blocks; /* an insert of a new block beyond this many is refused */
    uint64_t dropped;  /* inserts refused at max_blocks */
};

/* An empty index that holds at most max_blocks distinct blocks (any number of pods each). */
void kvix_init(struct kvix *ix, size_t max_blocks);
/* Frees the table; ix is empty (and usable) afterwards. */
void kvix_free(struct kvix *ix);
/* Records that pod (0..63) holds block hash. Returns whether that is new (false when the
 * pod already held it, or the block is new and the index is at max_blocks: dropped). */
bool kvix_add(struct kvix *ix, uint64_t hash, int pod);
/* Forgets that pod holds block hash. Returns whether it did. */
bool kvix_remove(struct kvix *ix, uint64_t hash, int pod);
/* The pods holding block hash, as a bit mask (bit i: pod slot i). */
uint64_t kvix_pods(const struct kvix *ix, uint64_t hash);
/* Forgets every block of pod. Returns how many it held. */
uint64_t kvix_clear_pod(struct kvix *ix, int pod);
/* Bytes the table takes. */
size_t kvix_bytes(const struct kvix *ix);
/* For tests: whether every invariant holds (order, no gaps, counts). */
bool kvix_check(const struct kvix *ix);

#endif

/* The approximate prefix index (llm-d's prefix-cache-scorer): which pods were sent
 * which prompt blocks, as chained block hashes.
 *
 * llm-d keeps hash -> set of pods plus a per-pod LRU. Because the score only counts
 * the LEADING blocks a pod holds, the same question is answered by a per-pod hash set:
 * "does pod P hold block i?" stops at P's first miss. So the index is one set per pod,
 * which makes the per-pod capacity bound, eviction and the purge of a removed pod local
 * to one pod.
 *
 * Per pod: an open-addressed table of 32-bit words (linear probing, backward-shift
 * deletion, no tombstones), each a 31-bit fingerprint of the block hash shifted left by
 * one with a CLOCK reference bit in bit 0 (0 = empty slot; fingerprints are never 0),
 * and a ring of the same fingerprints in insertion order with a clock hand. Eviction is
 * CLOCK (second chance) over the ring: the entry under the hand goes unless its
 * reference bit is set, in which case the bit is cleared and the hand moves on; the new
 * entry takes the victim's ring position. New entries start unreferenced and re-inserting
 * a held block sets its bit, so untouched blocks leave in insertion order (FIFO) and a
 * block inserted again since the hand last passed survives a lap more. Inserting a chain
 * deepest block first keeps llm-d's order: a chain loses its deepest blocks first and
 * its leading blocks last. The bit is set on insert only, never on lookup.
 *
 * Locking: a directory rwlock (read for lookups and inserts, write to add or drop a
 * pod) and one rwlock per pod (read for lookups, write for inserts, which is where
 * reference bits are set and cleared). Lookups never write shared memory besides lock
 * words, so many scheduler threads proceed in parallel; an insert blocks only lookups
 * of that one pod.
 *
 * Capacity is per pod: the index's default, or what the caller passes with the insert
 * (prefix-cache-scorer's autoTune: the engine's num_gpu_blocks); a later insert with
 * another capacity replaces it, evicting down to a lower one at once.
 *
 * Memory: per pod at most capacity ring entries of 4 bytes plus a table of at most
 * 5/4 * capacity + 8 4-byte slots (load <= 0.8); both grow on demand. That is ~9 bytes
 * per block: full, with llm-d's default 31,250 blocks per pod, ~275 KiB per pod
 * (100 pods: ~27 MiB; the former 12-byte LRU nodes + 4/3 table took ~540 KiB per pod).
 * Fingerprints make the index approximate in one more way: a block a pod never saw
 * matches with probability ~(probes per lookup)/2^31, about 6e-6 at load 0.8, far below
 * what the approximate index already gets wrong. */
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

struct px_pod {
    uint32_t id;
    pthread_rwlock_t lock;
    uint32_t *ring; /* fingerprints in CLOCK order; ring[hand] is the next candidate */
    uint32_t n, cap_ring, hand;
    uint32_t capacity; /* this pod's bound: the engine's num_gpu_blocks, or the default */
    uint32_t *slots;   /* fp << 1 | referenced, 0 = empty */
    size_t n_slots;    /* any size: slots are picked by multiply-shift, not a mask */
};

struct prefix_index {
    pthread_rwlock_t dir;
    struct px_pod **pods;
    size_t n_pods, cap_pods;
    uint32_t capacity;
    atomic_size_t size; /* sum of the pods' n, for /metrics */
};

size_t sched_prefix_hashes(const char *model, const char *text, size_t len, size_t block_size,
                           uint64_t *out, size_t max)
{
    if (block_size == 0)
        return 0;
    uint64_t h = XXH64(model ? model : "", model ? strlen(model) : 0, 0);
    size_t n = len / block_size;
    if (n > max)
        n = max;
    /* h_i = xxh64(block_i || le64(h_{i-1})), as llm-d chains them. Small blocks are
     * copied next to the parent hash so each block is one one-shot hash call. */
    unsigned char tmp[1024 + 8];
    XXH64_state_t st;
    for (size_t i = 0; i < n; i++) {
        const char *blk = text + i * block_size;
        unsigned char le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)(h >> (8 * b));
        if (block_size <= 1024) {
            memcpy(tmp, blk, block_size);
            memcpy(tmp + block_size, le, 8);
            h = XXH64(tmp, block_size + 8, 0);
        } else {
            XXH64_reset(&st, 0);
            XXH64_update(&st, blk, block_size);
            XXH64_update(&st, le, 8);
            h = XXH64_digest(&st);
        }
        out[i] = h;
    }
    return n;
}

struct prefix_index *prefix_index_new(size_t capacity_per_pod)
{
    struct prefix_index *ix = xcalloc(1, sizeof *ix);
    pthread_rwlock_init(&ix->dir, NULL);
    if (capacity_per_pod < 1)
        capacity_per_pod = 1;
    if (capacity_per_pod > (1u << 28))
        capacity_per_pod = 1u << 28;
    ix->capacity = (uint32_t)capacity_per_pod;
    return ix;
}

static void pod_free(struct px_pod *p)
{
    pthread_rwlock_destroy(&p->lock);
    free(p->ring);
    free(p->slots);
    free(p);
}

void prefix_index_free(struct prefix_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n_pods; i++)
        pod_free(ix->pods[i]);
    free(ix->pods);
    pthread_rwlock_destroy(&ix->dir);
    free(ix);
}

static struct px_pod *dir_find(struct prefix_index *ix, uint32_t id)
{
    for (size_t i = 0; i < ix->n_pods; i++)
        if (ix->pods[i]->id == id)
            return ix->pods[i];
    return NULL;
}

#define PX_REF 1u

/* A 31-bit fingerprint of the block hash, never 0. */
static inline uint32_t fp_of(uint64_t h)
{
    uint32_t fp = (uint32_t)(h ^ (h >> 32)) >> 1; /* both halves count, whatever made h */
    return fp ? fp : 1;
}

static inline size_t slot_of(uint32_t fp, size_t n_slots)
{
    /* Fibonacci-mix the fingerprint, then scale it to the table (multiply-shift). */
    uint32_t x = fp * 0x9e3779b1u;
    return (size_t)(((uint64_t)x * n_slots) >> 32);
}

static inline size_t next_slot(size_t s, size_t n_slots)
{
    return s + 1 == n_slots ? 0 : s + 1;
}

/* The slot holding fp, or the empty slot where it would go. The table always has an
 * empty slot (n <= capacity < n_slots once full), so the probe ends. */
static size_t pod_find_slot(const struct px_pod *p, uint32_t fp)
{
    for (size_t s = slot_of(fp, p->n_slots);; s = next_slot(s, p->n_slots)) {
        uint32_t v = p->slots[s];
        if (v == 0 || (v >> 1) == fp)
            return s;
    }
}

static bool pod_has(const struct px_pod *p, uint64_t h)
{
    return p->slots && p->slots[pod_find_slot(p, fp_of(h))] != 0;
}

/* Backward-shift deletion keeps probe chains intact without tombstones; a moved entry
 * carries its reference bit along. */
static void pod_slot_delete(struct px_pod *p, size_t s)
{
    size_t i = s;
    for (size_t j = next_slot(i, p->n_slots); p->slots[j] != 0; j = next_slot(j, p->n_slots)) {
        size_t home = slot_of(p->slots[j] >> 1, p->n_slots);
        /* j's entry may move to i if its home is not cyclically in (i, j]. */
        bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            p->slots[i] = p->slots[j];
            i = j;
        }
    }
    p->slots[i] = 0;
}

static void pod_rehash(struct px_pod *p, size_t n_slots)
{
    uint32_t *old = p->slots;
    size_t n_old = p->n_slots;
    p->slots = xcalloc(n_slots, sizeof *p->slots);
    p->n_slots = n_slots;
    for (size_t k = 0; k < n_old; k++)
        if (old[k] != 0)
            p->slots[pod_find_slot(p, old[k] >> 1)] = old[k];
    free(old);
}

/* CLOCK: frees the table slot of the first unreferenced entry from the hand on,
 * clearing the bits it passes, and returns its ring position. */
static uint32_t pod_evict(struct px_pod *p)
{
    for (;;) {
        uint32_t k = p->hand;
        p->hand = k + 1 == p->n ? 0 : k + 1;
        size_t s = pod_find_slot(p, p->ring[k]);
        if (p->slots[s] & PX_REF) {
            p->slots[s] &= ~PX_REF; /* second chance */
            continue;
        }
        pod_slot_delete(p, s);
        return k;
    }
}

/* Returns how many new entries were added (0 or 1). */
static int pod_insert(struct px_pod *p, uint64_t h)
{
    uint32_t capacity = p->capacity;
    uint32_t fp = fp_of(h);
    if (p->slots) {
        size_t s = pod_find_slot(p, fp);
        if (p->slots[s] != 0) {
            p->slots[s] |= PX_REF;
            return 0;
        }
    }
    uint32_t k;
    int added = 1;
    if (p->n >= capacity) {
        k = pod_evict(p);
        added = 0;
    } else {
        if (p->n == p->cap_ring) {
            uint32_t nc = p->cap_ring ? p->cap_ring * 2 : 64;
            if (nc > capacity - capacity / 4)
                nc = capacity;
            p->ring = xrealloc(p->ring, (size_t)nc * sizeof *p->ring);
            p->cap_ring = nc;
        }
        k = p->n++;
        /* Keep the load at most 4/5; the table never outgrows 5/4 of the capacity
         * (+ 8, so a full pod still leaves empty slots to end probes). */
        if (!p->slots || (size_t)p->n * 5 > p->n_slots * 4) {
            size_t ns = (size_t)p->n * 2;
            size_t max = (size_t)capacity + capacity / 4 + 8;
            if (ns < 128)
                ns = 128;
            if (ns > max - max / 4) /* no step just short of full: that would leave */
                ns = max;           /* a hole of nearly the final size in the heap */
            if (!p->slots || ns > p->n_slots)
                pod_rehash(p, ns);
        }
    }
    p->ring[k] = fp;
    p->slots[pod_find_slot(p, fp)] = fp << 1;
    return added;
}

size_t prefix_index_match(struct prefix_index *ix, uint32_t id, const uint64_t *hashes, size_t n)
{
    uint16_t out = 0;
    prefix_index_match_many(ix, &id, 1, hashes, n, &out);
    return out;
}

void prefix_index_match_many(struct prefix_index *ix, const uint32_t *ids, size_t n_ids,
                             const uint64_t *hashes, size_t n, uint16_t *out)
{
    pthread_rwlock_rdlock(&ix->dir);
    for (size_t i = 0; i < n_ids; i++) {
        out[i] = 0;
        struct px_pod *p = n ? dir_find(ix, ids[i]) : NULL;
        if (!p)
            continue;
        pthread_rwlock_rdlock(&p->lock);
        size_t k = 0;
        while (k < n && pod_has(p, hashes[k]))
            k++;
        pthread_rwlock_unlock(&p->lock);
        out[i] = (uint16_t)k;
    }
    pthread_rwlock_unlock(&ix->dir);
}

/* A new bound for p: a lower one evicts (CLOCK) down to it, moving the ring's last
 * entry into each freed position. Returns how many entries went. */
static size_t pod_set_capacity(struct px_pod *p, uint32_t capacity)
{
    size_t gone = 0;
    p->capacity = capacity;
    while (p->n > capacity) {
        uint32_t k = pod_evict(p);
        p->ring[k] = p->ring[p->n - 1];
        p->n--;
        if (p->hand >= p->n)
            p->hand = 0;
        gone++;
    }
    return gone;
}

void prefix_index_insert(struct prefix_index *ix, const struct sched_endpoint *e,
                         const uint64_t *hashes, size_t n)
{
    prefix_index_insert_cap(ix, e, hashes, n, 0);
}

void prefix_index_insert_cap(struct prefix_index *ix, const struct sched_endpoint *e,
                             const uint64_t *hashes, size_t n, size_t capacity)
{
    if (n == 0)
        return;
    if (capacity == 0)
        capacity = ix->capacity;
    if (capacity > (1u << 28))
        capacity = 1u << 28;
    pthread_rwlock_rdlock(&ix->dir);
    struct px_pod *p = dir_find(ix, e->id);
    if (!p) {
        pthread_rwlock_unlock(&ix->dir);
        pthread_rwlock_wrlock(&ix->dir);
        p = dir_find(ix, e->id);
        /* Checked under the directory lock: the purge takes it in write mode after the
         * flag is set, so either we see the flag or the purge runs after us. */
        if (!p && !atomic_load(&e->removed)) {
            p = xcalloc(1, sizeof *p);
            p->id = e->id;
            p->capacity = (uint32_t)capacity;
            pthread_rwlock_init(&p->lock, NULL);
            if (ix->n_pods == ix->cap_pods) {
                ix->cap_pods = ix->cap_pods ? ix->cap_pods * 2 : 8;
                ix->pods = xrealloc(ix->pods, ix->cap_pods * sizeof *ix->pods);
            }
            ix->pods[ix->n_pods++] = p;
        }
        pthread_rwlock_unlock(&ix->dir);
        pthread_rwlock_rdlock(&ix->dir);
        p = dir_find(ix, e->id);
    }
    if (p && !atomic_load(&e->removed)) {
        size_t added = 0;
        pthread_rwlock_wrlock(&p->lock);
        if (p->capacity != capacity)
            atomic_fetch_sub(&ix->size, pod_set_capacity(p, (uint32_t)capacity));
        /* Deepest first, so the leading blocks end most recent and are evicted last. */
        for (size_t i = n; i-- > 0;)
            added += (size_t)pod_insert(p, hashes[i]);
        pthread_rwlock_unlock(&p->lock);
        atomic_fetch_add(&ix->size, added);
    }
    pthread_rwlock_unlock(&ix->dir);
}

void prefix_index_purge(struct prefix_index *ix, uint32_t id)
{
    pthread_rwlock_wrlock(&ix->dir);
    for (size_t i = 0; i < ix->n_pods; i++) {
        struct px_pod *p = ix->pods[i];
        if (p->id == id) {
            atomic_fetch_sub(&ix->size, p->n);
            ix->pods[i] = ix->pods[--ix->n_pods];
            pod_free(p);
            break;
        }
    }
    pthread_rwlock_unlock(&ix->dir);
}

size_t prefix_index_size(struct prefix_index *ix)
{
    return atomic_load(&ix->size);
}

size_t prefix_index_pod_size(struct prefix_index *ix, uint32_t id)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&ix->dir);
    struct px_pod *p = dir_find(ix, id);
    if (p) {
        pthread_rwlock_rdlock(&p->lock);
        n = p->n;
        pthread_rwlock_unlock(&p->lock);
    }
    pthread_rwlock_unlock(&ix->dir);
    return n;
}

size_t prefix_index_pod_capacity(struct prefix_index *ix, uint32_t id)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&ix->dir);
    struct px_pod *p = dir_find(ix, id);
    if (p) {
        pthread_rwlock_rdlock(&p->lock);
        n = p->capacity;
        pthread_rwlock_unlock(&p->lock);
    }
    pthread_rwlock_unlock(&ix->dir);
    return n;
}

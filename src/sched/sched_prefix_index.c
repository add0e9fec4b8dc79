/* The approximate prefix index (llm-d's prefix-cache-scorer): which pods were sent
 * which prompt blocks, as chained block hashes.
 *
 * llm-d keeps hash -> set of pods plus a per-pod LRU. Because the score only counts
 * the LEADING blocks a pod holds, the same question is answered by a per-pod hash set:
 * "does pod P hold block i?" stops at P's first miss. So the index is one table per pod
 * (open addressing on the block hash, nodes chained in LRU order), which makes the
 * per-pod capacity bound, eviction and the purge of a removed pod local to one pod.
 *
 * Locking: a directory rwlock (read for lookups and inserts, write to add or drop a
 * pod) and one rwlock per pod (read for lookups, write for inserts). Lookups never
 * write shared memory besides lock words, so many scheduler threads proceed in
 * parallel; an insert blocks only lookups of that one pod.
 *
 * Memory: per pod at most capacity nodes of 12 bytes (a 32-bit fingerprint of the block
 * hash, both halves folded, and the LRU links) plus a slot table of at most 4/3 * capacity 4-byte slots;
 * tables grow on demand. Full, with llm-d's default 31,250 blocks per pod, that is
 * ~540 KiB per pod (100 pods: ~53 MiB). Fingerprints make the index approximate in one
 * more way: a block a pod never saw matches with probability ~n/2^32 per probe (7e-6
 * at 31,250 entries), far below what the approximate index already gets wrong. */
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

#define NIL UINT32_MAX

struct px_node {
    uint32_t fp;         /* high 32 bits of the block hash */
    uint32_t prev, next; /* LRU: head is most recent */
};

struct px_pod {
    uint32_t id;
    pthread_rwlock_t lock;
    struct px_node *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t head, tail;
    uint32_t *slots; /* node index + 1, 0 = empty */
    size_t n_slots;  /* any size: slots are picked by multiply-shift, not a mask */
};

struct prefix_index {
    pthread_rwlock_t dir;
    struct px_pod **pods;
    size_t n_pods, cap_pods;
    uint32_t capacity;
    atomic_size_t size; /* sum of n_nodes, for /metrics */
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
    free(p->nodes);
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

static inline uint32_t fp_of(uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32)); /* both halves count, whatever made the hash */
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

static bool pod_has(const struct px_pod *p, uint64_t h)
{
    if (!p->slots)
        return false;
    uint32_t fp = fp_of(h);
    for (size_t s = slot_of(fp, p->n_slots);; s = next_slot(s, p->n_slots)) {
        uint32_t v = p->slots[s];
        if (v == 0)
            return false;
        if (p->nodes[v - 1].fp == fp)
            return true;
    }
}

static size_t pod_find_slot(const struct px_pod *p, uint32_t fp)
{
    for (size_t s = slot_of(fp, p->n_slots);; s = next_slot(s, p->n_slots)) {
        uint32_t v = p->slots[s];
        if (v == 0 || p->nodes[v - 1].fp == fp)
            return s;
    }
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void pod_slot_delete(struct px_pod *p, size_t s)
{
    size_t i = s;
    for (size_t j = next_slot(i, p->n_slots); p->slots[j] != 0; j = next_slot(j, p->n_slots)) {
        size_t home = slot_of(p->nodes[p->slots[j] - 1].fp, p->n_slots);
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
    free(p->slots);
    p->slots = xcalloc(n_slots, sizeof *p->slots);
    p->n_slots = n_slots;
    for (uint32_t k = 0; k < p->n_nodes; k++) {
        size_t s = pod_find_slot(p, p->nodes[k].fp);
        p->slots[s] = k + 1;
    }
}

static void lru_unlink(struct px_pod *p, uint32_t k)
{
    struct px_node *n = &p->nodes[k];
    if (n->prev != NIL)
        p->nodes[n->prev].next = n->next;
    else
        p->head = n->next;
    if (n->next != NIL)
        p->nodes[n->next].prev = n->prev;
    else
        p->tail = n->prev;
}

static void lru_push_head(struct px_pod *p, uint32_t k)
{
    struct px_node *n = &p->nodes[k];
    n->prev = NIL;
    n->next = p->head;
    if (p->head != NIL)
        p->nodes[p->head].prev = k;
    p->head = k;
    if (p->tail == NIL)
        p->tail = k;
}

/* Returns how many new entries were added (0 or 1). */
static int pod_insert(struct px_pod *p, uint32_t capacity, uint64_t h)
{
    uint32_t fp = fp_of(h);
    if (p->slots) {
        size_t s = pod_find_slot(p, fp);
        if (p->slots[s] != 0) {
            uint32_t k = p->slots[s] - 1;
            lru_unlink(p, k);
            lru_push_head(p, k);
            return 0;
        }
    }
    uint32_t k;
    int added = 1;
    if (p->n_nodes >= capacity) {
        k = p->tail;
        lru_unlink(p, k);
        pod_slot_delete(p, pod_find_slot(p, p->nodes[k].fp));
        added = 0;
    } else {
        if (p->n_nodes == p->cap_nodes) {
            uint32_t nc = p->cap_nodes ? p->cap_nodes * 2 : 64;
            if (nc > capacity)
                nc = capacity;
            p->nodes = xrealloc(p->nodes, (size_t)nc * sizeof *p->nodes);
            p->cap_nodes = nc;
        }
        k = p->n_nodes++;
        /* Keep the load under 3/4; the table never outgrows 4/3 of the capacity. */
        if (!p->slots || (size_t)p->n_nodes * 4 > p->n_slots * 3) {
            size_t ns = (size_t)p->n_nodes * 2;
            size_t max = (size_t)capacity * 4 / 3 + 8;
            if (ns < 128)
                ns = 128;
            if (ns > max)
                ns = max;
            if (!p->slots || ns > p->n_slots) {
                p->n_nodes--; /* node k is not in the table yet: keep rehash away from it */
                pod_rehash(p, ns);
                p->n_nodes++;
            }
        }
    }
    p->nodes[k].fp = fp;
    lru_push_head(p, k);
    p->slots[pod_find_slot(p, fp)] = k + 1;
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

void prefix_index_insert(struct prefix_index *ix, const struct sched_endpoint *e,
                         const uint64_t *hashes, size_t n)
{
    if (n == 0)
        return;
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
            p->head = p->tail = NIL;
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
        /* Deepest first, so the leading blocks end most recent and are evicted last. */
        for (size_t i = n; i-- > 0;)
            added += (size_t)pod_insert(p, ix->capacity, hashes[i]);
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
            atomic_fetch_sub(&ix->size, p->n_nodes);
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
        n = p->n_nodes;
        pthread_rwlock_unlock(&p->lock);
    }
    pthread_rwlock_unlock(&ix->dir);
    return n;
}

/* The precise scorer's KV block index (kvindex.h): owns the Robin Hood table of 8-byte
 * (block, pod) entries, its growth (1.5x past 0.9 full), its shrinking (after a pod is
 * cleared, under 0.3 full), the distinct-block count and the max_blocks bound. The pod
 * slot numbers are the caller's; the index only keeps them in the low 6 bits.
 *
 * Positions: home(e) = top bits of e's hash part scaled to cap; dist(i) = how far slot
 * i's entry sits past its home (circular). The Robin Hood invariant kept by every
 * operation: for two adjacent occupied slots i-1, i, either dist(i) <= dist(i-1) (i's
 * home is later) or dist(i) == dist(i-1) + 1 and tab[i-1] < tab[i] (same home, value
 * order); and dist(i) == 0 after an empty slot. So a run is sorted by (home, value), the
 * entries of one block are adjacent, and a search may stop at the first entry homed
 * later than its key. */
#include "sched/kvindex.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

#define KVIX_MIN_CAP 1024u
#define KVIX_POD_BITS 63ull

static inline uint64_t kvix_fp(uint64_t hash)
{
    /* murmur3's 64-bit finalizer: a bijection, so hand-made hashes (1, 2, 3) spread too */
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    hash &= ~KVIX_POD_BITS;
    return hash ? hash : KVIX_POD_BITS + 1; /* keeps every entry non-zero */
}

static inline size_t home_of(size_t cap, uint64_t e)
{
    return (size_t)(((unsigned __int128)(e & ~KVIX_POD_BITS) * cap) >> 64);
}

static inline size_t dist_at(size_t cap, size_t i, uint64_t e)
{
    size_t h = home_of(cap, e);
    return i >= h ? i - h : i + cap - h;
}

static inline size_t next_of(size_t cap, size_t i)
{
    return i + 1 == cap ? 0 : i + 1;
}

static inline size_t prev_of(size_t cap, size_t i)
{
    return i ? i - 1 : cap - 1;
}

static inline bool same_block(uint64_t x, uint64_t fp)
{
    return x && (x & ~KVIX_POD_BITS) == fp;
}

/* The slot holding e (*found) or where e belongs: the first slot of e's run that is empty,
 * holds e, or holds an entry that goes after e. Since home is monotone in the value, a
 * run is sorted by value except where it wraps past the end of the table, so most
 * entries are passed by comparing values; home is computed only to tell a wrapped
 * entry (one whose home is past its slot) from one that really comes after e. */
static size_t probe(const uint64_t *tab, size_t cap, uint64_t e, bool *found)
{
    size_t h = home_of(cap, e), i = h;
    bool wrapped = false; /* i < h: the probe went past the end */
    *found = false;
    for (;;) {
        uint64_t x = tab[i];
        if (!x)
            return i;
        if (x == e) {
            *found = true;
            return i;
        }
        if (!wrapped) {
            /* x < e: homed at or before h, so before e. x > e: after e unless x wrapped */
            if (x > e && home_of(cap, x) <= i)
                return i;
        } else if (home_of(cap, x) <= i || x > e) {
            return i; /* homed after the wrap (later than e), or a later wrapped entry */
        }
        if (++i == cap) {
            i = 0;
            wrapped = true;
        }
    }
}

/* Puts e at slot i, moving the run from i up to its first empty slot one slot on. */
static void put_at(uint64_t *tab, size_t cap, size_t i, uint64_t e)
{
    for (uint64_t carry = e; carry; i = next_of(cap, i)) {
        uint64_t t = tab[i];
        tab[i] = carry;
        carry = t;
    }
}

/* An empty slot of a table that has one (every table: it is never full). */
static size_t empty_slot(const uint64_t *tab, size_t cap)
{
    size_t s = 0;
    while (tab[s])
        s++;
    return s;
}

static void rehash(struct kvix *ix, size_t cap)
{
    uint64_t *old = ix->tab;
    size_t old_cap = ix->cap;
    ix->tab = xcalloc(cap, sizeof *ix->tab);
    ix->cap = cap;
    if (!old)
        return;
    /* from an empty slot on, the old entries come in (home, value) order, so each one
     * lands at the end of its new run: no shifting */
    size_t s = empty_slot(old, old_cap);
    for (size_t o = 1; o < old_cap; o++) {
        size_t p = s + o < old_cap ? s + o : s + o - old_cap;
        if (old[p]) {
            bool found;
            put_at(ix->tab, cap, probe(ix->tab, cap, old[p], &found), old[p]);
        }
    }
    free(old);
}

void kvix_init(struct kvix *ix, size_t max_blocks)
{
    memset(ix, 0, sizeof *ix);
    ix->max_blocks = max_blocks;
}

void kvix_free(struct kvix *ix)
{
    free(ix->tab);
    ix->tab = NULL;
    ix->cap = ix->n = ix->n_blocks = 0;
}

bool kvix_add(struct kvix *ix, uint64_t hash, int pod)
{
    uint64_t fp = kvix_fp(hash), e = fp | ((uint64_t)pod & KVIX_POD_BITS);
    bool found;
    if (!ix->cap)
        rehash(ix, KVIX_MIN_CAP);
    size_t i = probe(ix->tab, ix->cap, e, &found);
    if (found)
        return false;
    /* the block's other entries, if any, are next to where e goes */
    bool known = same_block(ix->tab[i], fp) || same_block(ix->tab[prev_of(ix->cap, i)], fp);
    if (!known && ix->n_blocks >= ix->max_blocks) {
        ix->dropped++;
        return false;
    }
    if ((ix->n + 1) * 10 > ix->cap * 9) {
        rehash(ix, ix->cap + ix->cap / 2);
        i = probe(ix->tab, ix->cap, e, &found);
    }
    put_at(ix->tab, ix->cap, i, e);
    ix->n++;
    ix->n_blocks += !known;
    return true;
}

bool kvix_remove(struct kvix *ix, uint64_t hash, int pod)
{
    if (!ix->n)
        return false;
    uint64_t fp = kvix_fp(hash), e = fp | ((uint64_t)pod & KVIX_POD_BITS);
    bool found;
    size_t cap = ix->cap, i = probe(ix->tab, cap, e, &found);
    if (!found)
        return false;
    size_t j = next_of(cap, i);
    bool others = same_block(ix->tab[j], fp) || same_block(ix->tab[prev_of(cap, i)], fp);
    /* backward shift: the run after i moves back one slot, up to an empty slot or an
     * entry already at its home */
    while (ix->tab[j] && home_of(cap, ix->tab[j]) != j) {
        ix->tab[i] = ix->tab[j];
        i = j;
        j = next_of(cap, j);
    }
    ix->tab[i] = 0;
    ix->n--;
    ix->n_blocks -= !others;
    return true;
}

uint64_t kvix_pods(const struct kvix *ix, uint64_t hash)
{
    if (!ix->n)
        return 0;
    /* the block's entries are adjacent, from where its pod-0 entry belongs */
    uint64_t fp = kvix_fp(hash), pods = 0;
    bool found;
    size_t cap = ix->cap;
    for (size_t i = probe(ix->tab, cap, fp, &found); same_block(ix->tab[i], fp);
         i = next_of(cap, i))
        pods |= 1ull << (ix->tab[i] & KVIX_POD_BITS);
    return pods;
}

uint64_t kvix_clear_pod(struct kvix *ix, int pod)
{
    if (!ix->n)
        return 0;
    uint64_t *tab = ix->tab, removed = 0;
    size_t cap = ix->cap;
    /* One pass from an empty slot s (offsets from s): drop pod's entries and move each
     * survivor back to the first free slot at or after its home. Every entry's home lies
     * in (s, its slot], and order is kept, so the invariant holds after the pass. */
    size_t s = empty_slot(tab, cap), w = 1;
    for (size_t o = 1; o < cap; o++) {
        size_t p = s + o < cap ? s + o : s + o - cap;
        uint64_t x = tab[p];
        if (!x)
            continue;
        if ((x & KVIX_POD_BITS) == (uint64_t)pod) {
            tab[p] = 0;
            removed++;
            continue;
        }
        size_t h = home_of(cap, x), hm = h > s ? h - s : h + cap - s;
        size_t to = hm > w ? hm : w;
        if (to != o) {
            tab[s + to < cap ? s + to : s + to - cap] = x;
            tab[p] = 0;
        }
        w = to + 1;
    }
    if (!removed)
        return 0;
    ix->n -= removed;
    ix->n_blocks = 0;
    for (size_t i = 0; i < cap; i++)
        ix->n_blocks += tab[i] && !same_block(tab[prev_of(cap, i)], tab[i] & ~KVIX_POD_BITS);
    if (cap > KVIX_MIN_CAP && ix->n * 10 < cap * 3) {
        size_t to = ix->n + ix->n * 2 / 3 + 1; /* 0.6 full */
        rehash(ix, to > KVIX_MIN_CAP ? to : KVIX_MIN_CAP);
    }
    return removed;
}

size_t kvix_bytes(const struct kvix *ix)
{
    return ix->cap * sizeof *ix->tab;
}

bool kvix_check(const struct kvix *ix)
{
    size_t n = 0, blocks = 0, cap = ix->cap;
    for (size_t i = 0; i < cap; i++) {
        uint64_t x = ix->tab[i];
        if (!x)
            continue;
        n++;
        uint64_t y = ix->tab[prev_of(cap, i)];
        size_t d = dist_at(cap, i, x);
        if (!y) {
            if (d)
                return false;
        } else {
            size_t dy = dist_at(cap, prev_of(cap, i), y);
            if (d > dy + 1 || (d == dy + 1 && y >= x))
                return false;
        }
        blocks += !same_block(y, x & ~KVIX_POD_BITS);
    }
    return n == ix->n && blocks == ix->n_blocks && n < cap + (cap == 0);
}

/* Unit tests for the precise scorer's KV block index (src/sched/kvindex.c): many pods on
 * one block, removal by backward shift keeping the rest findable, growth by 1.5x within
 * 16 bytes per entry, clearing a pod (and shrinking), the distinct-block bound, and
 * 200,000 random operations checked against a plain reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sched/kvindex.h"

static uint64_t rnd_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void test_many_pods(void **unused)
{
    (void)unused;
    struct kvix ix;
    kvix_init(&ix, 1000);
    for (int pod = 0; pod < KVIX_MAX_PODS; pod++) {
        assert_true(kvix_add(&ix, 42, pod));
        assert_false(kvix_add(&ix, 42, pod)); /* already held */
    }
    assert_true(kvix_add(&ix, 0, 3)); /* hash 0 is a block like any other */
    assert_true(kvix_add(&ix, 43, 7));
    assert_int_equal(ix.n, KVIX_MAX_PODS + 2);
    assert_int_equal(ix.n_blocks, 3);
    assert_true(kvix_pods(&ix, 42) == ~0ull);
    assert_true(kvix_pods(&ix, 0) == 1ull << 3);
    assert_true(kvix_pods(&ix, 43) == 1ull << 7);
    assert_true(kvix_pods(&ix, 44) == 0);
    assert_true(kvix_check(&ix));
    /* removing pods one by one keeps the block until its last pod goes */
    for (int pod = 0; pod < KVIX_MAX_PODS; pod += 2)
        assert_true(kvix_remove(&ix, 42, pod));
    assert_false(kvix_remove(&ix, 42, 0));
    assert_true(kvix_pods(&ix, 42) == 0xaaaaaaaaaaaaaaaaull);
    assert_int_equal(ix.n_blocks, 3);
    for (int pod = 1; pod < KVIX_MAX_PODS; pod += 2)
        assert_true(kvix_remove(&ix, 42, pod));
    assert_int_equal(ix.n_blocks, 2);
    assert_true(kvix_pods(&ix, 42) == 0);
    assert_true(kvix_pods(&ix, 43) == 1ull << 7);
    assert_true(kvix_check(&ix));
    kvix_free(&ix);
}

/* Dense tables with long runs: removals shift entries back; every other entry stays
 * findable, with its own pod. */
static void test_backward_shift(void **unused)
{
    (void)unused;
    struct kvix ix;
    kvix_init(&ix, SIZE_MAX);
    const uint64_t n = 20000;
    for (uint64_t h = 0; h < n; h++)
        assert_true(kvix_add(&ix, h, (int)(h % 5)));
    assert_true(kvix_check(&ix));
    assert_true(ix.n * 10 > ix.cap * 5); /* runs are long */
    for (uint64_t h = 0; h < n; h += 2)
        assert_true(kvix_remove(&ix, h, (int)(h % 5)));
    assert_true(kvix_check(&ix));
    for (uint64_t h = 0; h < n; h++)
        assert_true(kvix_pods(&ix, h) == (h % 2 ? 1ull << (h % 5) : 0));
    assert_int_equal(ix.n, n / 2);
    assert_int_equal(ix.n_blocks, n / 2);
    kvix_free(&ix);
}

/* Growth by 1.5x: past the first half of the minimum table, never over 16 bytes per
 * entry, never over 0.9 full. */
static void test_growth(void **unused)
{
    (void)unused;
    struct kvix ix;
    kvix_init(&ix, SIZE_MAX);
    size_t grows = 0, cap = 0;
    for (uint64_t h = 1; h <= 200000; h++) {
        kvix_add(&ix, h * 0x9e3779b97f4a7c15ull, (int)(h & 63));
        if (ix.cap != cap) {
            if (cap) {
                assert_int_equal(ix.cap, cap + cap / 2);
                grows++;
            }
            cap = ix.cap;
        }
        assert_true(ix.n * 10 <= ix.cap * 9);
        if (ix.n >= 512)
            assert_true(kvix_bytes(&ix) <= 16 * ix.n);
    }
    assert_true(grows >= 10);
    assert_true(kvix_check(&ix));
    for (uint64_t h = 1; h <= 200000; h++)
        assert_true(kvix_pods(&ix, h * 0x9e3779b97f4a7c15ull) == 1ull << (h & 63));
    kvix_free(&ix);
}

static void test_clear_pod(void **unused)
{
    (void)unused;
    struct kvix ix;
    kvix_init(&ix, SIZE_MAX);
    for (uint64_t h = 0; h < 2000; h++)
        for (int pod = 0; pod < 8; pod++)
            kvix_add(&ix, h, pod);
    for (uint64_t h = 2000; h < 3000; h++)
        kvix_add(&ix, h, 5); /* blocks only pod 5 holds */
    size_t big = ix.cap;
    assert_int_equal(kvix_clear_pod(&ix, 5), 3000);
    assert_int_equal(kvix_clear_pod(&ix, 5), 0);
    assert_true(kvix_check(&ix));
    assert_int_equal(ix.n_blocks, 2000);
    for (uint64_t h = 0; h < 3000; h++)
        assert_true(kvix_pods(&ix, h) == (h < 2000 ? 0xdfull : 0));
    for (int pod = 0; pod < 7; pod++)
        if (pod != 5)
            assert_int_equal(kvix_clear_pod(&ix, pod), 2000);
    assert_true(kvix_check(&ix));
    assert_int_equal(ix.n, 2000);
    assert_true(ix.cap < big); /* shrunk: 2,000 entries in at most 0.9 of its slots */
    assert_true(kvix_bytes(&ix) <= 16 * ix.n);
    assert_true(kvix_pods(&ix, 1999) == 1ull << 7);
    assert_int_equal(kvix_clear_pod(&ix, 7), 2000);
    assert_int_equal(ix.n_blocks, 0);
    assert_int_equal(ix.cap, 1024);
    assert_true(kvix_add(&ix, 1, 1));
    assert_true(kvix_check(&ix));
    kvix_free(&ix);
}

/* The bound counts distinct blocks: a new block past it is dropped, a block already held
 * still takes more pods, and removing a block makes room. */
static void test_bound(void **unused)
{
    (void)unused;
    struct kvix ix;
    kvix_init(&ix, 100);
    for (uint64_t h = 0; h < 100; h++)
        assert_true(kvix_add(&ix, h, 0));
    assert_false(kvix_add(&ix, 100, 0));
    assert_false(kvix_add(&ix, 101, 1));
    assert_int_equal(ix.dropped, 2);
    assert_true(kvix_add(&ix, 50, 9));
    assert_int_equal(ix.n, 101);
    assert_int_equal(ix.n_blocks, 100);
    assert_true(kvix_remove(&ix, 50, 0)); /* pod 9 still holds it: still 100 blocks */
    assert_false(kvix_add(&ix, 100, 0));
    assert_true(kvix_remove(&ix, 7, 0));
    assert_true(kvix_add(&ix, 100, 0));
    assert_true(kvix_pods(&ix, 100) == 1);
    assert_true(kvix_check(&ix));
    kvix_free(&ix);
}

/* 200,000 random adds, removes, lookups and (rarely) pod clears over 3,000 blocks and 64
 * pods, against a mask per block; the bound (2,500 blocks) is reached on the way. */
static void test_random_model(void **unused)
{
    (void)unused;
    enum { UNIVERSE = 3000, MAX_BLOCKS = 2500, OPS = 200000 };
    uint64_t *model = calloc(UNIVERSE, sizeof *model);
    uint64_t *hashes = calloc(UNIVERSE, sizeof *hashes);
    for (size_t i = 0; i < UNIVERSE; i++) /* small numbers, a few zero-ish, and wide ones */
        hashes[i] = i < 1000 ? i : rnd();
    size_t blocks = 0, entries = 0, dropped = 0, clears = 0, shrinks = 0;
    struct kvix ix;
    kvix_init(&ix, MAX_BLOCKS);
    for (size_t op = 0; op < OPS; op++) {
        uint64_t r = rnd();
        size_t b = (size_t)(r % UNIVERSE);
        int pod = (int)((r >> 20) % KVIX_MAX_PODS);
        /* pods 60..63 hold many blocks (long same-block groups), the rest fewer */
        if ((r >> 30) % 4 == 0)
            pod = 60 + (int)((r >> 34) % 4);
        uint64_t bit = 1ull << pod;
        unsigned kind = (unsigned)((r >> 40) % 1000);
        /* phases: mostly adds, then mostly removes, then mixed, so the table grows,
         * drains and grows again */
        unsigned add_share = op < OPS / 3 ? 800 : op < OPS / 2 ? 200 : 550;
        if (kind < 2) {
            size_t cap = ix.cap;
            uint64_t held = 0;
            for (size_t i = 0; i < UNIVERSE; i++) {
                held += (model[i] >> pod) & 1;
                if (model[i] & bit) {
                    model[i] &= ~bit;
                    blocks -= model[i] == 0;
                }
            }
            assert_int_equal(kvix_clear_pod(&ix, pod), held);
            entries -= held;
            clears++;
            shrinks += ix.cap < cap;
        } else if (kind < add_share) {
            bool fresh = !(model[b] & bit);
            bool refused = fresh && !model[b] && blocks >= MAX_BLOCKS;
            assert_int_equal(kvix_add(&ix, hashes[b], pod), fresh && !refused);
            if (refused) {
                dropped++;
            } else if (fresh) {
                blocks += model[b] == 0;
                model[b] |= bit;
                entries++;
            }
        } else {
            bool held = model[b] & bit;
            assert_int_equal(kvix_remove(&ix, hashes[b], pod), held);
            if (held) {
                model[b] &= ~bit;
                blocks -= model[b] == 0;
                entries--;
            }
        }
        size_t q = (size_t)((r >> 50) % UNIVERSE);
        assert_true(kvix_pods(&ix, hashes[b]) == model[b]);
        assert_true(kvix_pods(&ix, hashes[q]) == model[q]);
        assert_int_equal(ix.n, entries);
        assert_int_equal(ix.n_blocks, blocks);
        if (op % 10000 == 0)
            assert_true(kvix_check(&ix));
    }
    assert_true(kvix_check(&ix));
    for (size_t i = 0; i < UNIVERSE; i++)
        assert_true(kvix_pods(&ix, hashes[i]) == model[i]);
    assert_int_equal(ix.dropped, dropped);
    assert_true(dropped > 0);
    assert_true(clears > 100);
    (void)shrinks;
    kvix_free(&ix);
    free(model);
    free(hashes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_pods), cmocka_unit_test(test_backward_shift),
        cmocka_unit_test(test_growth),    cmocka_unit_test(test_clear_pod),
        cmocka_unit_test(test_bound),     cmocka_unit_test(test_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

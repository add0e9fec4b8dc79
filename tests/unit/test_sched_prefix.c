/* Unit tests for the approximate prefix index and the prefix-cache-scorer: the block
 * hash chain, leading-block matching, the per-pod capacity bound (and eviction
 * correctness under churn), CLOCK's second chance for re-inserted blocks, chains losing
 * their deepest blocks first, purge on endpoint removal, and seed 001's "second similar
 * prompt lands on the same pod". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <xxhash.h>

#include "base/hash.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

static const char prompt1[] =
    "I am working on learning to run benchmarks in my openshift cluster. I was wondering if you "
    "could provide me a list of best practices when collecting metrics on the k8s platform, and "
    "furthermore, any OCP specific optimizations that are applicable here. Finally please help "
    "me construct a plan to support testing metrics collection for testing and dev environments "
    "such as minikube or kind";
static const char prompt2[] =
    "I am working on learning to run benchmarks in my openshift cluster. I was wondering if you "
    "could provide me a list of best practices when collecting metrics on the k8s platform. "
    "Finally please help me build out a plan to extend this benchmarking to run against "
    "workloads on GKE and K8s that runs on CoreWeave to help us integrate into the ecosystems "
    "of our wonderful llm-d partners.";

static void test_hash_chain(void **state)
{
    char text[200];
    for (int i = 0; i < 200; i++)
        text[i] = (char)('A' + i % 50);
    uint64_t h[8];
    size_t n = sched_prefix_hashes("model-x", text, 200, 64, h, 8);
    assert_int_equal(n, 3); /* the trailing partial block is dropped */
    /* Independently: h_0 = xxh64(model), h_i = xxh64(block || le64(h_{i-1})). */
    uint64_t prev = XXH64("model-x", 7, 0);
    for (size_t i = 0; i < 3; i++) {
        unsigned char buf[72];
        memcpy(buf, text + i * 64, 64);
        for (int b = 0; b < 8; b++)
            buf[64 + b] = (unsigned char)(prev >> (8 * b));
        prev = XXH64(buf, 72, 0);
        assert_true(h[i] == prev);
    }
    /* maxPrefixBlocksToMatch caps the count; another model gives other hashes. */
    assert_int_equal(sched_prefix_hashes("model-x", text, 200, 64, h, 2), 2);
    uint64_t g[8];
    sched_prefix_hashes("model-y", text, 200, 64, g, 8);
    assert_true(g[0] != h[0]);
}

static void test_match_leading_blocks(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint *a = sched_ds_find(ds, "a");
    struct prefix_index *ix = prefix_index_new(100);
    uint64_t h[4] = {11, 22, 33, 44};
    prefix_index_insert(ix, a, h, 2);
    assert_int_equal(prefix_index_match(ix, a->id, h, 4), 2);
    uint64_t gap[3] = {11, 99, 33};
    assert_int_equal(prefix_index_match(ix, a->id, gap, 3), 1);
    uint64_t miss[2] = {99, 11};
    assert_int_equal(prefix_index_match(ix, a->id, miss, 2), 0);
    assert_int_equal(prefix_index_match(ix, a->id + 1000, h, 4), 0);
    prefix_index_insert(ix, a, h, 4); /* refresh + extend: only 2 new entries */
    assert_int_equal(prefix_index_size(ix), 4);
    prefix_index_free(ix);
    sched_endpoint_unref(a);
    sched_ds_free(ds);
}

static void test_lru_bound_and_churn(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint *a = sched_ds_find(ds, "a");
    enum { CAP = 500, TOTAL = 20000 };
    struct prefix_index *ix = prefix_index_new(CAP);
    uint64_t seed = 42;
    uint64_t *all = calloc(TOTAL, sizeof *all);
    for (size_t i = 0; i < TOTAL; i++) {
        all[i] = hash_rand_next(&seed);
        prefix_index_insert(ix, a, &all[i], 1);
        if (i % 997 == 0) /* refresh an old-ish one now and then */
            prefix_index_insert(ix, a, &all[i / 2], 1);
        assert_true(prefix_index_pod_size(ix, a->id) <= CAP);
    }
    assert_int_equal(prefix_index_pod_size(ix, a->id), CAP);
    assert_int_equal(prefix_index_size(ix), CAP);
    /* The most recent CAP - 30 inserts must all be present (at most ~21 refreshes are
     * interleaved), and the very first ones long gone. */
    for (size_t i = TOTAL - (CAP - 30); i < TOTAL; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &all[i], 1), 1);
    for (size_t i = 1; i < 200; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &all[i], 1), 0);
    free(all);
    prefix_index_free(ix);
    sched_endpoint_unref(a);
    sched_ds_free(ds);
}

/* CLOCK: untouched blocks leave oldest first; a block inserted again since the hand last
 * passed it survives the eviction of older and newer untouched ones. */
static void test_clock_second_chance(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint *a = sched_ds_find(ds, "a");
    enum { CAP = 100 };
    struct prefix_index *ix = prefix_index_new(CAP);
    uint64_t seed = 7;
    uint64_t old[CAP], fresh[80];
    for (size_t i = 0; i < CAP; i++) {
        old[i] = hash_rand_next(&seed);
        prefix_index_insert(ix, a, &old[i], 1);
    }
    for (size_t i = 0; i < 10; i++) /* touch the 10 oldest */
        prefix_index_insert(ix, a, &old[i], 1);
    assert_int_equal(prefix_index_pod_size(ix, a->id), CAP);
    for (size_t i = 0; i < 50; i++) {
        fresh[i] = hash_rand_next(&seed);
        prefix_index_insert(ix, a, &fresh[i], 1);
    }
    /* The 50 victims are the oldest untouched: old[10..60). */
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 1);
    for (size_t i = 10; i < 60; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 0);
    for (size_t i = 60; i < CAP; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 1);
    for (size_t i = 0; i < 50; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &fresh[i], 1), 1);
    /* 30 more: old[60..90) go; the touched ones had their chance and are next. */
    for (size_t i = 50; i < 80; i++) {
        fresh[i] = hash_rand_next(&seed);
        prefix_index_insert(ix, a, &fresh[i], 1);
    }
    for (size_t i = 60; i < 90; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 0);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 1);
    /* 11 more: old[90..100) go, then the hand wraps to old[0], whose bit it cleared on
     * its first pass. */
    for (size_t i = 0; i < 11; i++) {
        uint64_t more = hash_rand_next(&seed);
        prefix_index_insert(ix, a, &more, 1);
    }
    for (size_t i = 90; i < CAP; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 0);
    assert_int_equal(prefix_index_match(ix, a->id, &old[0], 1), 0);
    for (size_t i = 1; i < 10; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &old[i], 1), 1);
    for (size_t i = 0; i < 80; i++)
        assert_int_equal(prefix_index_match(ix, a->id, &fresh[i], 1), 1);
    assert_int_equal(prefix_index_pod_size(ix, a->id), CAP);
    assert_int_equal(prefix_index_size(ix), CAP);
    prefix_index_free(ix);
    sched_endpoint_unref(a);
    sched_ds_free(ds);
}

/* Many multi-block chains: the pod never holds more than its capacity, the recent chains
 * match in full, and an older chain loses its deepest blocks first. */
static void test_chains_bound(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint *a = sched_ds_find(ds, "a");
    struct sched_endpoint *b = sched_ds_find(ds, "b");
    enum { CAP = 1000, LEN = 64, CHAINS = 3000 };
    struct prefix_index *ix = prefix_index_new(CAP);
    uint64_t seed = 99;
    uint64_t *ch = calloc((size_t)CHAINS * LEN, sizeof *ch);
    for (size_t c = 0; c < CHAINS; c++) {
        uint64_t *h = ch + c * LEN;
        for (size_t i = 0; i < LEN; i++)
            h[i] = hash_rand_next(&seed);
        prefix_index_insert(ix, a, h, LEN);
        if (c % 3 == 0)
            prefix_index_insert(ix, b, h, LEN / 2);
        assert_true(prefix_index_pod_size(ix, a->id) <= CAP);
        assert_true(prefix_index_pod_size(ix, b->id) <= CAP);
        assert_int_equal(prefix_index_match(ix, a->id, h, LEN), LEN);
    }
    assert_int_equal(prefix_index_pod_size(ix, a->id), CAP);
    assert_int_equal(prefix_index_pod_size(ix, b->id), CAP);
    assert_int_equal(prefix_index_size(ix), 2 * CAP);
    /* The last 15 chains (960 blocks) are whole; the 16th from the end kept its leading
     * 40 blocks; older ones are gone. */
    for (size_t c = CHAINS - 15; c < CHAINS; c++)
        assert_int_equal(prefix_index_match(ix, a->id, ch + c * LEN, LEN), LEN);
    assert_int_equal(prefix_index_match(ix, a->id, ch + (CHAINS - 16) * LEN, LEN), CAP - 15 * LEN);
    for (size_t c = 0; c < CHAINS - 17; c += 7)
        assert_int_equal(prefix_index_match(ix, a->id, ch + c * LEN, LEN), 0);
    /* Pod b got half chains of every third one: the last 31 are whole. */
    for (size_t c = CHAINS - 93; c < CHAINS; c++)
        if (c % 3 == 0)
            assert_int_equal(prefix_index_match(ix, b->id, ch + c * LEN, LEN), LEN / 2);
    free(ch);
    prefix_index_free(ix);
    sched_endpoint_unref(a);
    sched_endpoint_unref(b);
    sched_ds_free(ds);
}

static void test_similar_prompt_same_pod(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "decode-0", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-1", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-2", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched *s = sched_new(ds, NULL, 0, NULL, NULL); /* default profile */
    assert_non_null(s);
    for (int round = 0; round < 5; round++) {
        struct sched_request req = tu_req(prompt1, "meta-llama/Llama-3.2-3B-Instruct");
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        assert_int_equal(r.status, 0);
        char first[32];
        snprintf(first, sizeof first, "%s", tu_pick(&r));
        sched_result_release(&r);
        req = tu_req(prompt2, "meta-llama/Llama-3.2-3B-Instruct");
        json_t *j = tu_trace(s, &req, true, &r);
        assert_string_equal(tu_pick(&r), first);
        /* prefix-cache-scorer is the third scorer of the default profile. */
        double own = tu_score(j, 0, 2, first);
        assert_true(own > 0.399 && own < 0.401); /* 2 of 5 full 64-char blocks */
        for (int k = 0; k < 3; k++) {
            char other[16];
            snprintf(other, sizeof other, "decode-%d", k);
            if (strcmp(other, first) != 0)
                assert_true(tu_score(j, 0, 2, other) <= own);
        }
        json_decref(j);
        sched_result_release(&r);
        /* Start the next round on a fresh index: remove and re-add the pods. */
        for (int k = 0; k < 3; k++) {
            char name[16];
            snprintf(name, sizeof name, "decode-%d", k);
            assert_true(sched_ds_remove(ds, name));
            tu_add(ds, name, SCHED_ROLE_DECODE, NULL, NULL);
        }
        assert_int_equal(sched_prefix_index_size(s), 0);
    }
    sched_free(s);
    sched_ds_free(ds);
}

static void test_purge_on_removal(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_DECODE, NULL, NULL);
    const char *cfg =
        "plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSize: 8, "
        "lruCapacityPerServer: 4}\n- type: round-robin-picker\n"
        "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: prefix-cache-scorer},"
        " {pluginRef: round-robin-picker}]\n";
    struct errinfo err;
    struct sched *s = sched_new(ds, cfg, strlen(cfg), "<t>", &err);
    assert_non_null(s);
    struct sched_request req = tu_req("0123456789abcdefghijklmnopqrstuvwxyz0123456789", "m");
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL); /* dry run: nothing inserted */
    sched_result_release(&r);
    assert_int_equal(sched_prefix_index_size(s), 0);
    sched_schedule(s, &req, false, &r, NULL);
    char first[8];
    snprintf(first, sizeof first, "%s", tu_pick(&r));
    sched_result_release(&r);
    assert_int_equal(sched_prefix_index_size(s), 4); /* 5 blocks, capacity 4 per pod */
    sched_schedule(s, &req, false, &r, NULL);        /* round robin: the other pod */
    assert_string_not_equal(tu_pick(&r), first);
    sched_result_release(&r);
    assert_int_equal(sched_prefix_index_size(s), 8);
    assert_true(sched_ds_remove(ds, first));
    assert_int_equal(sched_prefix_index_size(s), 4);
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_chain),          cmocka_unit_test(test_match_leading_blocks),
        cmocka_unit_test(test_lru_bound_and_churn), cmocka_unit_test(test_clock_second_chance),
        cmocka_unit_test(test_chains_bound),        cmocka_unit_test(test_similar_prompt_same_pod),
        cmocka_unit_test(test_purge_on_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

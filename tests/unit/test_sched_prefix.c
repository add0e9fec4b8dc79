/* Unit tests for the approximate prefix index and the prefix-cache-scorer: the block
 * hash chain, leading-block matching, the per-pod LRU bound (and eviction correctness
 * under churn), purge on endpoint removal, and seed 001's "second similar prompt lands
 * on the same pod". */
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
    const char *cfg = "plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSize: 8, "
                      "lruCapacityPerServer: 4}\n- type: round-robin-picker\n"
                      "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: prefix-cache-scorer},"
                      " {pluginRef: round-robin-picker}]\n";
    struct sched_err err;
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
        cmocka_unit_test(test_hash_chain),
        cmocka_unit_test(test_match_leading_blocks),
        cmocka_unit_test(test_lru_bound_and_churn),
        cmocka_unit_test(test_similar_prompt_same_pod),
        cmocka_unit_test(test_purge_on_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for prefix-cache-scorer's per-endpoint LRU capacity (llm-d's autoTune): the
 * approximate index's own per-pod capacity (set, raised, lowered with eviction), and the
 * scorer taking each endpoint's capacity from its engine's num_gpu_blocks
 * (vllm:cache_config_info) with autoTune, lruCapacityPerServer otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sched/sched_internal.h"
#include "test_sched_util.h"

static void set_cache_config(struct sched_datastore *ds, const char *name, uint32_t block_size,
                             uint32_t num_blocks)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = m.healthy = true;
    m.block_size = block_size;
    m.num_blocks = num_blocks;
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

static void test_index_pod_capacity(void **unused)
{
    (void)unused;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    struct sched_endpoint *a = sched_ds_find(ds, "a"), *b = sched_ds_find(ds, "b");
    struct prefix_index *ix = prefix_index_new(100);
    uint64_t h[200];
    for (size_t i = 0; i < 200; i++)
        h[i] = 0x9e3779b97f4a7c15ull * (i + 1);
    prefix_index_insert_cap(ix, a, h, 50, 10);
    prefix_index_insert_cap(ix, b, h, 50, 0); /* the index's default: 100 */
    assert_int_equal(prefix_index_pod_capacity(ix, a->id), 10);
    assert_int_equal(prefix_index_pod_size(ix, a->id), 10);
    assert_int_equal(prefix_index_pod_capacity(ix, b->id), 100);
    assert_int_equal(prefix_index_pod_size(ix, b->id), 50);
    /* the leading blocks, inserted last, are what a capped pod keeps */
    assert_int_equal(prefix_index_match(ix, a->id, h, 50), 10);
    /* raised: room for more */
    prefix_index_insert_cap(ix, a, h + 50, 100, 40);
    assert_int_equal(prefix_index_pod_size(ix, a->id), 40);
    assert_int_equal(prefix_index_match(ix, a->id, h + 50, 100), 40);
    /* lowered: evicted down to it at once */
    prefix_index_insert_cap(ix, a, h + 150, 3, 5);
    assert_int_equal(prefix_index_pod_capacity(ix, a->id), 5);
    assert_int_equal(prefix_index_pod_size(ix, a->id), 5);
    assert_int_equal(prefix_index_match(ix, a->id, h + 150, 3), 3);
    assert_int_equal(prefix_index_size(ix), 5 + 50);
    prefix_index_free(ix);
    sched_endpoint_unref(a);
    sched_endpoint_unref(b);
    sched_ds_free(ds);
}

/* Routes distinct 64-block prompts until both endpoints were picked; returns the index
 * capacities of "a" (engine reports 8 blocks) and "b" (reports none). */
static void capacities(const char *params, size_t *cap_a, size_t *cap_b, size_t *size_a)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_BOTH, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_BOTH, NULL, NULL);
    set_cache_config(ds, "a", 4, 8);
    set_cache_config(ds, "b", 4, 0);
    struct sched *s = tu_one(ds, "prefix-cache-scorer", params);
    struct prefix_index *ix =
        sched_prefix_plugin_index(sched_find_plugin(s, "prefix-cache-scorer"));
    struct sched_endpoint *a = sched_ds_find(ds, "a"), *b = sched_ds_find(ds, "b");
    char prompt[1025];
    for (int k = 0;
         k < 200 && !(prefix_index_pod_capacity(ix, a->id) && prefix_index_pod_capacity(ix, b->id));
         k++) {
        for (size_t i = 0; i < 1024; i++)
            prompt[i] = (char)('a' + (i * 7 + (size_t)k * 13 + i / 16) % 26);
        prompt[1024] = 0;
        char tag[32];
        int len = snprintf(tag, sizeof tag, "req %d ", k);
        memcpy(prompt, tag, (size_t)len); /* each prompt distinct from its first block */
        struct sched_request r = tu_req(prompt, "m");
        struct sched_result res;
        sched_schedule(s, &r, false, &res, NULL);
        sched_result_release(&res);
    }
    *cap_a = prefix_index_pod_capacity(ix, a->id);
    *cap_b = prefix_index_pod_capacity(ix, b->id);
    *size_a = prefix_index_pod_size(ix, a->id);
    assert_true(prefix_index_pod_size(ix, b->id) >= 64);
    sched_endpoint_unref(a);
    sched_endpoint_unref(b);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_scorer_capacity(void **unused)
{
    (void)unused;
    size_t ca, cb, sa;
    /* autoTune (default): a's engine reports num_gpu_blocks 8; b reports none */
    capacities("{lruCapacityPerServer: 1000}", &ca, &cb, &sa);
    assert_int_equal(ca, 8);
    assert_int_equal(sa, 8);
    assert_int_equal(cb, 1000);
    /* without autoTune every endpoint gets lruCapacityPerServer */
    capacities("{lruCapacityPerServer: 1000, autoTune: false, blockSizeTokens: 4}", &ca, &cb, &sa);
    assert_int_equal(ca, 1000);
    assert_true(sa >= 64);
    assert_int_equal(cb, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_pod_capacity),
        cmocka_unit_test(test_scorer_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

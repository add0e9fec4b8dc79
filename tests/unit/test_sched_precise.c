/* Unit tests for precise-prefix-cache-scorer (src/sched/sched_precise.c): KV event batches
 * built with the codec and fed through the decoder into the index (stores, removals,
 * AllBlocksCleared, the key bound), longest-prefix scoring per pod, pods named by IP or
 * IP:port, a full scheduling decision, the ZMQ socket on a libuv loop, and parameters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "base/clock.h"
#include "sched/kvevents.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"
#include "tokenize/tokenize.h"

static void *plugin_state(struct sched *s)
{
    struct sched_plugin *p = sched_find_plugin(s, "precise-prefix-cache-scorer");
    assert_non_null(p);
    return p->st;
}

/* One batch with one event of type t over hashes[0..n). */
static void encode(enum kvev_type t, const uint64_t *hashes, uint32_t n, struct buf *out)
{
    struct kvev_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.n_hashes = n;
    e.hashes = (uint64_t *)hashes;
    uint32_t toks[4] = {1, 2, 3, 4};
    if (t == KVEV_BLOCK_STORED) {
        e.token_ids = toks;
        e.n_tokens = 4;
        e.block_size = 4;
    }
    e.medium = "GPU";
    struct kvev_batch b;
    memset(&b, 0, sizeof b);
    b.ts = 1.0;
    b.n_events = 1;
    b.events = &e;
    b.has_dp_rank = true;
    buf_reset(out);
    kvev_encode(&b, out);
}

static void apply(void *st, const char *topic, enum kvev_type t, const uint64_t *h, uint32_t n)
{
    struct buf b = BUF_INIT;
    encode(t, h, n, &b);
    char err[128];
    int r = sched_precise_apply(st, topic, strlen(topic), (const uint8_t *)b.data, b.len, err,
                                sizeof err);
    if (r)
        fail_msg("apply: %s", err);
    buf_free(&b);
}

static const char *const addrs[] = {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"};
static const char *const hosts[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};

static void scores(void *st, const uint64_t *h, size_t nb, double out[3])
{
    sched_precise_score_hashes(st, h, nb, addrs, hosts, 3, out);
}

static void test_index_and_score(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer",
                             "{kvEventsConfig: {zmqEndpoint: 'tcp://127.0.0.1:*'}}");
    void *st = plugin_state(s);
    const uint64_t h[4] = {11, 22, 33, 44};
    double sc[3];
    scores(st, h, 4, sc);
    assert_true(sc[0] == 0 && sc[1] == 0 && sc[2] == 0);

    /* pod A named by IP:port, pod B by IP alone (llm-d's "kv@<pod-ip>@<model>") */
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_STORED, h, 4);
    const uint64_t hb[3] = {11, 22, 44}; /* B lacks block 3: its prefix run is 2 */
    apply(st, "kv@10.0.0.2@m", KVEV_BLOCK_STORED, hb, 3);
    assert_int_equal(sched_precise_blocks(st), 4);
    scores(st, h, 4, sc);
    assert_true(sc[0] == 1.0);
    assert_true(sc[1] == 0.5);
    assert_true(sc[2] == 0.0);
    /* a block the request does not start with counts for nothing */
    scores(st, h + 1, 3, sc);
    assert_true(sc[0] == 1.0);
    assert_true(sc[1] == 1.0 / 3);

    /* BlockRemoved: A loses block 2, so only block 1 leads */
    const uint64_t r2 = 22;
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_REMOVED, &r2, 1);
    scores(st, h, 4, sc);
    assert_true(sc[0] == 0.25);
    assert_true(sc[1] == 0.5);
    assert_int_equal(sched_precise_blocks(st), 4); /* B still holds 22 */
    apply(st, "kv@10.0.0.2@m", KVEV_BLOCK_REMOVED, &r2, 1);
    assert_int_equal(sched_precise_blocks(st), 3);
    /* removing what a pod does not hold changes nothing */
    apply(st, "kv@10.0.0.3@m", KVEV_BLOCK_REMOVED, h, 4);
    assert_int_equal(sched_precise_blocks(st), 3);

    /* AllBlocksCleared empties one pod only */
    apply(st, "kv@10.0.0.2@m", KVEV_ALL_BLOCKS_CLEARED, NULL, 0);
    scores(st, h, 4, sc);
    assert_true(sc[0] == 0.25);
    assert_true(sc[1] == 0.0);
    assert_int_equal(sched_precise_blocks(st), 3); /* A's 11, 33, 44 */

    /* garbage is refused with a reason, the index untouched */
    char err[128] = "";
    const uint8_t junk[] = {0x93, 0xc1, 0x00};
    assert_int_equal(sched_precise_apply(st, "kv@x@m", 6, junk, sizeof junk, err, sizeof err),
                     -EINVAL);
    assert_true(err[0] != 0);
    assert_int_equal(sched_precise_blocks(st), 3);
    sched_free(s);
    sched_ds_free(ds);
}

/* Many keys in and half out: every survivor is still found (probe chains stay whole). */
static void test_index_churn(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer", NULL);
    void *st = plugin_state(s);
    enum { N = 20000 };
    uint64_t *h = malloc(N * sizeof *h);
    for (size_t i = 0; i < N; i++)
        h[i] = (i * 0x9e3779b97f4a7c15ull) >> 7; /* clustered low bits: long probe chains */
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_STORED, h, N);
    assert_int_equal(sched_precise_blocks(st), N);
    for (size_t i = 0; i < N; i += 2)
        apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_REMOVED, &h[i], 1);
    assert_int_equal(sched_precise_blocks(st), N / 2);
    for (size_t i = 0; i < N; i++) {
        double sc[3];
        scores(st, &h[i], 1, sc);
        if (sc[0] != (i % 2 ? 1.0 : 0.0))
            fail_msg("key %zu: score %g", i, sc[0]);
    }
    free(h);
    sched_free(s);
    sched_ds_free(ds);
}

/* inMemoryConfig.size bounds the index: blocks beyond it are not indexed. */
static void test_index_bound(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer",
                             "{indexerConfig: {kvBlockIndexConfig: {inMemoryConfig: {size: 100, "
                             "podCacheSize: 10}}}}");
    void *st = plugin_state(s);
    uint64_t h[500];
    for (size_t i = 0; i < 500; i++)
        h[i] = i + 1;
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_STORED, h, 500);
    assert_int_equal(sched_precise_blocks(st), 100);
    sched_free(s);
    sched_ds_free(ds);
}

/* A whole decision: the request's blocks (tandem tokenizer, blockSize, seed from the model
 * and hashSeed) match what decode-1's engine reported, so decode-1 is picked and scored
 * by its run; with another hashSeed the keys differ and nothing matches. */
static void test_schedule(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "decode-0", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-1", SCHED_ROLE_DECODE, NULL, NULL);
    const char *prompt = "The quick brown fox jumps over the lazy dog again and again, "
                         "while the cat watches from the warm windowsill of the old house.";
    struct tok_result t = {0};
    tok_encode(prompt, strlen(prompt), TOK_DEFAULT_VOCAB, &t);
    uint32_t ids[256];
    assert_true(t.n >= 16 && t.n < 256);
    for (size_t i = 0; i < t.n; i++)
        ids[i] = t.pieces[i].id;
    uint64_t h[64];
    size_t nb = tok_block_hashes(ids, t.n, 4, tok_hash_seed("m", 7), h, 64);
    assert_true(nb >= 4);
    tok_result_free(&t);

    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer",
                             "{tokenProcessorConfig: {blockSize: 4, hashSeed: '7'}, "
                             "kvEventsConfig: {zmqEndpoint: 'tcp://127.0.0.1:*'}}");
    void *st = plugin_state(s);
    struct sched_endpoint *e1 = sched_ds_find(ds, "decode-1");
    char topic[128];
    snprintf(topic, sizeof topic, "kv@%s@m", sched_endpoint_addr(e1));
    sched_endpoint_unref(e1);
    apply(st, topic, KVEV_BLOCK_STORED, h, (uint32_t)(nb - 1)); /* all but the last block */

    struct sched_request req = tu_req(prompt, "m");
    struct sched_result res;
    for (int i = 0; i < 4; i++) {
        json_t *tr = tu_trace(s, &req, false, &res);
        assert_string_equal(tu_pick(&res), "decode-1");
        assert_true(tu_score(tr, 0, 0, "decode-1") == (double)(nb - 1) / (double)nb);
        assert_true(tu_score(tr, 0, 0, "decode-0") == 0);
        json_decref(tr);
        sched_result_release(&res);
    }
    /* another model: another chain seed, no match */
    struct sched_request other = tu_req(prompt, "other-model");
    json_t *tr = tu_trace(s, &other, true, &res);
    assert_true(tu_score(tr, 0, 0, "decode-1") == 0);
    json_decref(tr);
    sched_result_release(&res);
    sched_free(s);

    /* hashSeed must be what the engines use */
    s = tu_one(ds, "precise-prefix-cache-scorer",
               "{tokenProcessorConfig: {blockSize: 4, hashSeed: '8'}}");
    apply(plugin_state(s), topic, KVEV_BLOCK_STORED, h, (uint32_t)nb);
    tr = tu_trace(s, &req, true, &res);
    assert_true(tu_score(tr, 0, 0, "decode-1") == 0);
    json_decref(tr);
    sched_result_release(&res);
    sched_free(s);
    sched_ds_free(ds);
}

/* enableMetrics: llm-d's kvcache_index_* counters follow admissions, evictions, lookups. */
static void test_metrics(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    struct sched_kv_index_stats k;
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer", NULL);
    assert_false(sched_kv_index_stats(s, &k)); /* off by default, as in llm-d */
    sched_free(s);
    s = tu_one(ds, "precise-prefix-cache-scorer",
               "{indexerConfig: {kvBlockIndexConfig: {enableMetrics: true}}}");
    void *st = plugin_state(s);
    const uint64_t h[3] = {1, 2, 3};
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_STORED, h, 3);
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_STORED, h, 2); /* already held: no admission */
    apply(st, "kv@10.0.0.2:8000@m", KVEV_BLOCK_STORED, h, 2);
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_REMOVED, &h[2], 1);
    apply(st, "kv@10.0.0.1:8000@m", KVEV_BLOCK_REMOVED, &h[2], 1); /* not held: nothing */
    apply(st, "kv@10.0.0.2:8000@m", KVEV_ALL_BLOCKS_CLEARED, NULL, 0);
    double sc[3];
    scores(st, h, 3, sc); /* finds 1 and 2, then 3 is gone */
    assert_true(sched_kv_index_stats(s, &k));
    assert_int_equal(k.admissions, 5);
    assert_int_equal(k.evictions, 3);
    assert_int_equal(k.lookup_requests, 1);
    assert_int_equal(k.lookup_hits, 2);
    assert_int_equal(k.blocks, 2);
    sched_free(s);
    sched_ds_free(ds);
}

/* A long prompt with maxPrefixBlocksToMatch: only its head is tokenized, and the blocks
 * are the same as the whole prompt's. */
static void test_long_prompt_head(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "decode-0", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-1", SCHED_ROLE_DECODE, NULL, NULL);
    struct buf p = BUF_INIT;
    for (int i = 0; i < 3000; i++)
        buf_printf(&p, "%s", i % 3 ? " extraordinarily" : " Ünïcödélongword"); /* ~4 B/token */
    struct tok_result t = {0};
    tok_encode(p.data, p.len, TOK_DEFAULT_VOCAB, &t);
    uint32_t *ids = malloc(t.n * sizeof *ids);
    for (size_t i = 0; i < t.n; i++)
        ids[i] = t.pieces[i].id;
    uint64_t h[8];
    size_t nb = tok_block_hashes(ids, t.n, 5, tok_hash_seed("m", 0), h, 8);
    assert_int_equal(nb, 8);
    tok_result_free(&t);
    free(ids);
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer",
                             "{indexerConfig: {tokenProcessorConfig: {blockSize: 5}, "
                             "kvBlockIndexConfig: {maxPrefixBlocksToMatch: 8}}}");
    struct sched_endpoint *e1 = sched_ds_find(ds, "decode-1");
    char topic[128];
    snprintf(topic, sizeof topic, "kv@%s@m", sched_endpoint_addr(e1));
    sched_endpoint_unref(e1);
    apply(plugin_state(s), topic, KVEV_BLOCK_STORED, h, 7); /* 7 of the 8 it looks at */
    struct sched_request req = tu_req(p.data, "m");
    struct sched_result res;
    json_t *tr = tu_trace(s, &req, true, &res);
    assert_true(tu_score(tr, 0, 0, "decode-1") == 7.0 / 8);
    assert_string_equal(tu_pick(&res), "decode-1");
    json_decref(tr);
    sched_result_release(&res);
    sched_free(s);
    sched_ds_free(ds);
    buf_free(&p);
}

/* sched_start binds the SUB socket; a PUB that connects to it feeds the index through the
 * loop. */
static void test_zmq_loop(void **state)
{
    (void)state;
    int port = 0;
    { /* a free port: bind a ZMQ socket to a wildcard port, read it, close it */
        void *c = zmq_ctx_new(), *k = zmq_socket(c, ZMQ_SUB);
        assert_int_equal(zmq_bind(k, "tcp://127.0.0.1:*"), 0);
        char last[64];
        size_t ll = sizeof last;
        zmq_getsockopt(k, ZMQ_LAST_ENDPOINT, last, &ll);
        port = atoi(strrchr(last, ':') + 1);
        zmq_close(k);
        zmq_ctx_term(c);
    }
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{kvEventsConfig: {zmqEndpoint: 'tcp://127.0.0.1:%d'}}", port);
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = tu_one(ds, "precise-prefix-cache-scorer", cfg);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct errinfo err = {.msg = {0}};
    assert_int_equal(sched_start(s, &loop, &err), 0);
    /* a second scheduler on the same endpoint cannot bind: the error names the field */
    struct sched *s2 = tu_one(ds, "precise-prefix-cache-scorer", cfg);
    uv_loop_t loop2;
    uv_loop_init(&loop2);
    assert_int_equal(sched_start(s2, &loop2, &err), -1);
    assert_non_null(strstr(err.msg, "kvEventsConfig.zmqEndpoint"));
    sched_free(s2);
    uv_loop_close(&loop2);

    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    assert_int_equal(zmq_connect(pub, ep), 0);
    const uint64_t h[2] = {5, 6};
    struct buf b = BUF_INIT;
    encode(KVEV_BLOCK_STORED, h, 2, &b);
    uint64_t deadline = clock_monotonic_ns() + 5000000000ull;
    uint64_t seq = 0;
    while (sched_precise_blocks(plugin_state(s)) < 2) {
        if (clock_monotonic_ns() > deadline)
            fail_msg("no KV event reached the index in 5 s");
        /* PUB drops until the connection is up: resend until one arrives */
        uint8_t sb[KVEV_SEQ_BYTES];
        kvev_put_seq(seq++, sb);
        zmq_send(pub, "kv@10.0.0.1:8000@m", 18, ZMQ_SNDMORE);
        zmq_send(pub, sb, sizeof sb, ZMQ_SNDMORE);
        zmq_send(pub, b.data, b.len, 0);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    buf_free(&b);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    sched_stop(s);
    uv_run(&loop, UV_RUN_DEFAULT); /* runs the close callbacks; nothing else is left */
    assert_int_equal(uv_loop_close(&loop), 0);
    sched_free(s);
    sched_ds_free(ds);
}

static void expect_error(const char *params, const char *field)
{
    char text[1024];
    snprintf(text, sizeof text,
             "plugins:\n- type: precise-prefix-cache-scorer\n  parameters: %s\n"
             "schedulingProfiles:\n- name: default\n  plugins:\n"
             "  - pluginRef: precise-prefix-cache-scorer\n",
             params);
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err = {.msg = {0}};
    struct sched *s = sched_new(ds, text, strlen(text), "<t>", &err);
    if (s)
        fail_msg("'%s' loaded", params);
    if (!strstr(err.msg, field))
        fail_msg("'%s': expected '%s' in: %s", params, field, err.msg);
    sched_ds_free(ds);
}

static void test_params(void **state)
{
    (void)state;
    expect_error("{tokenProcessorConfig: {hashSeed: 'abc'}}", "hashSeed");
    expect_error("{tokenProcessorConfig: {blockSize: 0}}", "blockSize");
    expect_error("{tokenProcessorConfig: {hashAlgo: sha256}}", "tokenProcessorConfig.hashAlgo");
    expect_error("{tokenProcessorConfig: {hashAlgo: 3}}", "tokenProcessorConfig.hashAlgo");
    expect_error("{tokenProcessorConfig: {blockSize: 16, nope: 1}}", "tokenProcessorConfig.nope");
    expect_error("{kvEventsConfig: {zmqEndpoint: 5}}", "zmqEndpoint");
    expect_error("{kvEventsConfig: {concurrency: 0}}", "kvEventsConfig.concurrency");
    expect_error("{kvEventsConfig: {maxQueueDepth: -1}}", "kvEventsConfig.maxQueueDepth");
    expect_error("{kvEventsConfig: {engineType: sglang}}", "kvEventsConfig.engineType");
    expect_error("{kvEventsConfig: {podDiscoveryConfig: {engineType: sglang}}}",
                 "kvEventsConfig.podDiscoveryConfig.engineType");
    expect_error("{kvEventsConfig: {discoverPods: 'yes'}}", "discoverPods");
    expect_error("{kvEventsConfig: {podDiscoveryConfig: {socketPort: 0}}}",
                 "kvEventsConfig.podDiscoveryConfig.socketPort");
    expect_error("{kvEventsConfig: {podDiscoveryConfig: {nope: 1}}}",
                 "kvEventsConfig.podDiscoveryConfig.nope");
    expect_error("{speculativeIndexing: 1}", "speculativeIndexing");
    expect_error("{speculativeIndexing: true, speculativeTTL: 'soon'}", "speculativeTTL");
    expect_error("{speculativeTTL: 2}", "speculativeTTL");
    expect_error("{kvEventsConfig: {bogus: 1}}", "kvEventsConfig.bogus");
    expect_error("{blockSize: 16}", "blockSize");
    /* every field of llm-d-kv-cache's current kvEventsConfig loads */
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = tu_one(
        ds, "precise-prefix-cache-scorer",
        "{kvEventsConfig: {zmqEndpoint: '', topicFilter: 'kv@', concurrency: 8, "
        "maxQueueDepth: 1000, engineType: vllm, tracing: true, discoverPods: true, "
        "podDiscoveryConfig: {podLabelSelector: 'llm-d.ai/inferenceServing=true', "
        "podNamespace: ns, socketPort: 5556, replaySocketPort: 5558, dataParallelSize: 2, "
        "rankPodMapping: {groupLabelKey: g, rankLabelKey: r}, engineType: vllm}}, "
        "speculativeIndexing: true, speculativeTTL: 500ms}");
    sched_free(s);
    sched_ds_free(ds);
    expect_error("{indexerConfig: 3}", "indexerConfig");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_and_score), cmocka_unit_test(test_index_churn),
        cmocka_unit_test(test_index_bound),     cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_zmq_loop),        cmocka_unit_test(test_params),
        cmocka_unit_test(test_long_prompt_head), cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

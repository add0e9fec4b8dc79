/* endpoint-notification-source and the precise scorer as its endpoint extractor:
 * add/update/delete events from the datastore, per-pod KV event subscribers opened and torn
 * down on them (a torn-down pod's blocks leave the index), the wiring checks (type
 * mismatches are load errors with file:line), llm-d's legacy subscribe-while-scoring path,
 * and speculative indexing (add, expire, confirm). */
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

static int free_zmq_port(void)
{
    void *c = zmq_ctx_new(), *k = zmq_socket(c, ZMQ_SUB);
    assert_int_equal(zmq_bind(k, "tcp://127.0.0.1:*"), 0);
    char last[64];
    size_t ll = sizeof last;
    zmq_getsockopt(k, ZMQ_LAST_ENDPOINT, last, &ll);
    int port = atoi(strrchr(last, ':') + 1);
    zmq_close(k);
    zmq_ctx_term(c);
    return port;
}

static void add_ep(struct sched_datastore *ds, const char *name, const char *host, int port)
{
    struct sched_endpoint_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.host = host;
    spec.port = port;
    spec.role = SCHED_ROLE_DECODE;
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    struct sched_endpoint *e = sched_ds_find(ds, name);
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);
}

static const char *config(char *buf, size_t cap, int socket_port, bool wired, bool spec)
{
    snprintf(buf, cap,
             "apiVersion: llm-d.ai/v1alpha1\n"
             "kind: EndpointPickerConfig\n"
             "plugins:\n"
             "- type: endpoint-notification-source\n"
             "- type: precise-prefix-cache-scorer\n"
             "  parameters:\n"
             "    tokenProcessorConfig: {blockSize: 4}\n"
             "    kvEventsConfig:\n"
             "      zmqEndpoint: ''\n"
             "      concurrency: 4\n"
             "      discoverPods: true\n"
             "      podDiscoveryConfig: {socketPort: %d}\n"
             "    speculativeIndexing: %s\n"
             "    speculativeTTL: 300ms\n"
             "- type: max-score-picker\n"
             "%s"
             "schedulingProfiles:\n"
             "- name: default\n"
             "  plugins:\n"
             "  - pluginRef: precise-prefix-cache-scorer\n"
             "  - pluginRef: max-score-picker\n",
             socket_port, spec ? "true" : "false",
             wired ? "dataLayer:\n"
                     "  sources:\n"
                     "  - pluginRef: endpoint-notification-source\n"
                     "    extractors:\n"
                     "    - pluginRef: precise-prefix-cache-scorer\n"
                   : "");
    return buf;
}

static struct sched *load(struct sched_datastore *ds, const char *text)
{
    struct errinfo err = {.msg = {0}};
    struct sched *s = sched_new(ds, text, strlen(text), "<t>", &err);
    if (!s)
        fail_msg("load: %s", err.msg);
    return s;
}

static size_t subs(struct sched *s, char names[8][128])
{
    return sched_precise_subscribers(sched_find_plugin(s, "precise-prefix-cache-scorer")->st, names,
                                     8);
}

static bool has_sub(struct sched *s, const char *name)
{
    char names[8][128];
    size_t n = subs(s, names);
    for (size_t i = 0; i < n && i < 8; i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

static void send_stored(void *pub, const char *topic, const uint64_t *h, uint32_t n, uint64_t seq)
{
    struct kvev_event e;
    memset(&e, 0, sizeof e);
    e.type = KVEV_BLOCK_STORED;
    e.n_hashes = n;
    e.hashes = (uint64_t *)h;
    uint32_t toks[4] = {1, 2, 3, 4};
    e.token_ids = toks;
    e.n_tokens = 4;
    e.block_size = 4;
    e.medium = "GPU";
    struct kvev_batch b;
    memset(&b, 0, sizeof b);
    b.ts = 1.0;
    b.n_events = 1;
    b.events = &e;
    struct buf out = BUF_INIT;
    kvev_encode(&b, &out);
    uint8_t sb[KVEV_SEQ_BYTES];
    kvev_put_seq(seq, sb);
    zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(pub, sb, sizeof sb, ZMQ_SNDMORE);
    zmq_send(pub, out.data, out.len, 0);
    buf_free(&out);
}

static double score1(void *st, const uint64_t *h, size_t nb, const char *addr, const char *host)
{
    double out;
    sched_precise_score_hashes(st, h, nb, &addr, &host, 1, &out);
    return out;
}

/* Adds, updates and deletes reach the scorer; a pod's own socket feeds the index under its
 * address (whatever the topic says); a delete closes it and forgets its blocks. */
static void test_dispatch_and_subscribers(void **state)
{
    (void)state;
    int zport = free_zmq_port();
    struct sched_datastore *ds = sched_ds_new();
    add_ep(ds, "pod-a", "127.0.0.1", 8000);
    add_ep(ds, "pod-b", "127.0.0.2", 8000);
    char text[2048];
    struct sched *s = load(ds, config(text, sizeof text, zport, true, false));
    struct sched_plugin *src = sched_find_plugin(s, "endpoint-notification-source");
    void *st = sched_find_plugin(s, "precise-prefix-cache-scorer")->st;
    assert_true(sched_notify_wired(s, sched_find_plugin(s, "precise-prefix-cache-scorer")));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct errinfo err = {.msg = {0}};
    assert_int_equal(sched_start(s, &loop, &err), 0);
    assert_int_equal(sched_notify_sync(src), 2); /* two adds */
    assert_int_equal(sched_notify_sync(src), 0); /* nothing changed */
    assert_true(has_sub(s, "pod-a") && has_sub(s, "pod-b"));

    /* pod-a's engine: a PUB bound at its socketPort; the topic names someone else */
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", zport);
    assert_int_equal(zmq_bind(pub, ep), 0);
    const uint64_t h[3] = {11, 12, 13};
    uint64_t deadline = clock_monotonic_ns() + 5000000000ull, seq = 0;
    while (sched_precise_blocks(st) < 3) {
        if (clock_monotonic_ns() > deadline)
            fail_msg("no KV event reached the index through pod-a's subscriber in 5 s");
        send_stored(pub, "kv@10.9.9.9@m", h, 3, seq++);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    assert_true(score1(st, h, 3, "127.0.0.1:8000", "127.0.0.1") == 1.0);
    assert_true(score1(st, h, 3, "10.9.9.9:8000", "10.9.9.9") == 0);
    assert_true(score1(st, h, 3, "127.0.0.2:8000", "127.0.0.2") == 0);

    /* an upsert that moves pod-b is an update: its subscriber follows */
    add_ep(ds, "pod-b", "127.0.0.3", 8001);
    assert_int_equal(sched_notify_sync(src), 1);
    assert_true(has_sub(s, "pod-b"));
    /* pod-a leaves: one delete, its subscriber closes, its blocks leave the index */
    assert_true(sched_ds_remove(ds, "pod-a"));
    assert_int_equal(sched_notify_sync(src), 1);
    assert_false(has_sub(s, "pod-a"));
    assert_true(has_sub(s, "pod-b"));
    assert_int_equal(sched_precise_blocks(st), 0);
    assert_true(score1(st, h, 3, "127.0.0.1:8000", "127.0.0.1") == 0);

    zmq_close(pub);
    zmq_ctx_term(ctx);
    sched_stop(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sched_free(s);
    sched_ds_free(ds);
}

/* The source's timer delivers events by itself on the loop. */
static void test_timer_delivers(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    add_ep(ds, "pod-a", "127.0.0.1", 8000);
    char text[2048];
    struct sched *s = load(ds, config(text, sizeof text, free_zmq_port(), true, false));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct errinfo err = {.msg = {0}};
    assert_int_equal(sched_start(s, &loop, &err), 0);
    uint64_t deadline = clock_monotonic_ns() + 3000000000ull;
    while (!has_sub(s, "pod-a")) {
        if (clock_monotonic_ns() > deadline)
            fail_msg("the source's timer delivered no add in 3 s");
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_true(sched_ds_remove(ds, "pod-a"));
    deadline = clock_monotonic_ns() + 3000000000ull;
    while (has_sub(s, "pod-a")) {
        if (clock_monotonic_ns() > deadline)
            fail_msg("the source's timer delivered no delete in 3 s");
        uv_run(&loop, UV_RUN_ONCE);
    }
    sched_stop(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sched_free(s);
    sched_ds_free(ds);
}

/* Without the source wired: llm-d's legacy path subscribes to what scoring sees. */
static void test_legacy_path(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    add_ep(ds, "pod-a", "127.0.0.1", 8000);
    add_ep(ds, "pod-b", "127.0.0.2", 8000);
    char text[2048];
    struct sched *s = load(ds, config(text, sizeof text, free_zmq_port(), false, false));
    assert_false(sched_notify_wired(s, sched_find_plugin(s, "precise-prefix-cache-scorer")));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct errinfo err = {.msg = {0}};
    assert_int_equal(sched_start(s, &loop, &err), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    char names[8][128];
    assert_int_equal(subs(s, names), 0);
    struct sched_request req = tu_req("hello there general kenobi", "m");
    struct sched_result res;
    json_t *tr = tu_trace(s, &req, true, &res);
    json_decref(tr);
    sched_result_release(&res);
    uint64_t deadline = clock_monotonic_ns() + 3000000000ull;
    while (subs(s, names) < 2) {
        if (clock_monotonic_ns() > deadline)
            fail_msg("scoring queued no subscribers in 3 s");
        uv_run(&loop, UV_RUN_ONCE);
    }
    /* legacy: a removed endpoint keeps its subscriber (llm-d never tears these down) */
    assert_true(sched_ds_remove(ds, "pod-a"));
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(has_sub(s, "pod-a"));
    sched_stop(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sched_free(s);
    sched_ds_free(ds);
}

static void expect_load_error(const char *text, const char *what, const char *where)
{
    struct sched_datastore *ds = sched_ds_new();
    struct errinfo err = {.msg = {0}};
    struct sched *s = sched_new(ds, text, strlen(text), "<t>", &err);
    if (s)
        fail_msg("loaded, expected an error with '%s'", what);
    if (!strstr(err.msg, what) || !strstr(err.msg, where))
        fail_msg("expected '%s' and '%s' in: %s", what, where, err.msg);
    sched_ds_free(ds);
}

/* Wiring is checked like llm-d checks extractor input types. */
static void test_wiring_errors(void **state)
{
    (void)state;
    static const char head[] = "plugins:\n"
                               "- type: endpoint-notification-source\n"
                               "- type: metrics-data-source\n"
                               "- type: core-metrics-extractor\n"
                               "- type: precise-prefix-cache-scorer\n"
                               "- type: k8s-notification-source\n"
                               "  parameters: {version: v1, kind: Pod}\n"
                               "schedulingProfiles:\n"
                               "- name: default\n"
                               "  plugins:\n"
                               "  - pluginRef: precise-prefix-cache-scorer\n"
                               "dataLayer:\n"
                               "  sources:\n";
    char text[2048];
    /* a metrics extractor under the endpoint source: line 16 is its pluginRef */
    snprintf(text, sizeof text,
             "%s  - pluginRef: endpoint-notification-source\n"
             "    extractors:\n"
             "    - pluginRef: core-metrics-extractor\n",
             head);
    expect_load_error(text, "input type incompatible", "<t>:16");
    /* the scorer under the metrics source */
    snprintf(text, sizeof text,
             "%s  - pluginRef: metrics-data-source\n"
             "    extractors:\n"
             "    - pluginRef: precise-prefix-cache-scorer\n",
             head);
    expect_load_error(text, "not a data layer extractor", "<t>:16");
    /* the scorer under a Kubernetes object source */
    snprintf(text, sizeof text,
             "%s  - pluginRef: k8s-notification-source\n"
             "    extractors:\n"
             "    - pluginRef: precise-prefix-cache-scorer\n",
             head);
    expect_load_error(text, "Kubernetes object events", "<t>:16");
    /* the source is not an extractor */
    snprintf(text, sizeof text,
             "%s  - pluginRef: endpoint-notification-source\n"
             "    extractors:\n"
             "    - pluginRef: endpoint-notification-source\n",
             head);
    expect_load_error(text, "input type incompatible", "<t>:16");
    /* k8s-notification-source's parameters */
    expect_load_error("plugins:\n- type: k8s-notification-source\n  parameters: {group: apps}\n"
                      "- type: max-score-picker\n"
                      "schedulingProfiles:\n- name: d\n  plugins:\n"
                      "  - pluginRef: max-score-picker\n",
                      "version", "<t>:3");
    /* the good wiring loads */
    snprintf(text, sizeof text,
             "%s  - pluginRef: metrics-data-source\n"
             "    extractors:\n"
             "    - pluginRef: core-metrics-extractor\n"
             "  - pluginRef: endpoint-notification-source\n"
             "    extractors:\n"
             "    - pluginRef: precise-prefix-cache-scorer\n"
             "  - pluginRef: k8s-notification-source\n",
             head);
    struct sched_datastore *ds = sched_ds_new();
    struct sched *s = load(ds, text);
    sched_free(s);
    sched_ds_free(ds);
}

/* Speculative entries: scored at once, gone after the TTL, kept when an event confirms. */
static void test_speculative(void **state)
{
    (void)state;
    struct sched_datastore *ds = sched_ds_new();
    char text[2048];
    struct sched *s = load(ds, config(text, sizeof text, 5557, false, true));
    void *st = sched_find_plugin(s, "precise-prefix-cache-scorer")->st;
    const uint64_t h[4] = {21, 22, 23, 24};
    const char *a = "10.0.0.1:8000";
    uint64_t t0 = 1000000000000ull, ttl = 300000000ull;
    sched_precise_speculate(st, h, 4, &a, 1, t0);
    assert_true(score1(st, h, 4, a, "10.0.0.1") == 1.0);
    assert_int_equal(sched_precise_blocks(st), 0); /* not real blocks */
    assert_int_equal(sched_precise_expire(st, t0 + ttl - 1), 0);
    assert_true(score1(st, h, 4, a, "10.0.0.1") == 1.0);
    assert_int_equal(sched_precise_expire(st, t0 + ttl), 1);
    assert_true(score1(st, h, 4, a, "10.0.0.1") == 0);

    /* confirmed: the engine's BlockStored for the first two blocks outlives the TTL */
    sched_precise_speculate(st, h, 4, &a, 1, t0);
    struct kvev_event e;
    memset(&e, 0, sizeof e);
    e.type = KVEV_BLOCK_STORED;
    e.n_hashes = 2;
    e.hashes = (uint64_t *)h;
    e.medium = "GPU";
    struct kvev_batch b;
    memset(&b, 0, sizeof b);
    b.n_events = 1;
    b.events = &e;
    struct buf out = BUF_INIT;
    kvev_encode(&b, &out);
    char err[128];
    assert_int_equal(sched_precise_apply(st, "kv@10.0.0.1:8000@m", 18, (const uint8_t *)out.data,
                                         out.len, err, sizeof err),
                     0);
    buf_free(&out);
    assert_int_equal(sched_precise_expire(st, t0 + ttl), 1);
    assert_true(score1(st, h, 4, a, "10.0.0.1") == 0.5);

    /* through a real pick: the picked endpoint scores the same prompt at once */
    add_ep(ds, "pod-x", "10.0.0.5", 8000);
    add_ep(ds, "pod-y", "10.0.0.6", 8000);
    struct sched_request req =
        tu_req("one two three four five six seven eight nine ten eleven twelve", "m");
    struct sched_result res;
    json_t *tr = tu_trace(s, &req, true, &res);
    assert_true(tu_score(tr, 0, 0, "pod-x") == 0 && tu_score(tr, 0, 0, "pod-y") == 0);
    json_decref(tr);
    sched_result_release(&res);
    tr = tu_trace(s, &req, false, &res); /* a real decision: post_pick speculates */
    char picked[32];
    snprintf(picked, sizeof picked, "%s", tu_pick(&res));
    json_decref(tr);
    sched_result_release(&res);
    tr = tu_trace(s, &req, true, &res);
    assert_true(tu_score(tr, 0, 0, picked) == 1.0);
    assert_true(tu_score(tr, 0, 0, strcmp(picked, "pod-x") ? "pod-x" : "pod-y") == 0);
    json_decref(tr);
    sched_result_release(&res);
    /* and not after the TTL */
    sched_precise_expire(st, clock_monotonic_ns() + ttl);
    tr = tu_trace(s, &req, true, &res);
    assert_true(tu_score(tr, 0, 0, picked) == 0);
    json_decref(tr);
    sched_result_release(&res);
    sched_free(s);
    sched_ds_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_and_subscribers),
        cmocka_unit_test(test_timer_delivers),
        cmocka_unit_test(test_legacy_path),
        cmocka_unit_test(test_wiring_errors),
        cmocka_unit_test(test_speculative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

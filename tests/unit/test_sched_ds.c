/* Unit tests for the scheduler's datastore: upsert/replace/remove, references that
 * outlive removal, roles from labels, metrics snapshots and in-flight counts, session
 * tokens, healthy-only candidates, and a concurrency run (schedulers vs. a mutator). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>

#include "sched/sched_internal.h"
#include "test_sched_util.h"

static void test_upsert_find_remove(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "decode-0", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-1", SCHED_ROLE_DECODE, "zone", "a");
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(ds, &eps);
    assert_int_equal(n, 2);
    assert_string_equal(sched_endpoint_name(eps[0]), "decode-0");
    sched_ds_release_list(eps, n);

    struct sched_endpoint *e = sched_ds_find(ds, "decode-1");
    assert_non_null(e);
    assert_string_equal(sched_endpoint_host(e), "127.0.0.1");
    assert_string_equal(sched_endpoint_label(e, "zone"), "a");
    assert_null(sched_endpoint_label(e, "nope"));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", sched_endpoint_port(e));
    assert_string_equal(sched_endpoint_addr(e), addr);

    /* A held reference stays valid after removal. */
    assert_true(sched_ds_remove(ds, "decode-1"));
    assert_false(sched_ds_remove(ds, "decode-1"));
    assert_null(sched_ds_find(ds, "decode-1"));
    assert_string_equal(sched_endpoint_name(e), "decode-1");
    sched_endpoint_unref(e);
    n = sched_ds_list(ds, &eps);
    assert_int_equal(n, 1);
    sched_ds_release_list(eps, n);
    sched_ds_free(ds);
}

static void test_invalid_spec(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    struct sched_endpoint_spec spec = {.name = "x", .host = "h", .port = 0};
    assert_int_equal(sched_ds_upsert(ds, &spec), -EINVAL);
    spec.port = 70000;
    assert_int_equal(sched_ds_upsert(ds, &spec), -EINVAL);
    spec.port = 80;
    spec.name = "";
    assert_int_equal(sched_ds_upsert(ds, &spec), -EINVAL);
    spec.name = "x";
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    sched_ds_free(ds);
}

static void test_replace_keeps_state(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "p", SCHED_ROLE_NONE, "llm-d.ai/role", "prefill");
    tu_metrics(ds, "p", 3, 4, 0.5);
    struct sched_endpoint *old = sched_ds_find(ds, "p");
    assert_int_equal(sched_endpoint_role(old), SCHED_ROLE_PREFILL); /* from the label */
    sched_endpoint_inflight_add(old, 2, 100);
    uint32_t id = old->id;

    struct sched_endpoint_spec spec = {.name = "p", .host = "10.0.0.1", .port = 8000,
                                       .role = SCHED_ROLE_BOTH};
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    struct sched_endpoint *e = sched_ds_find(ds, "p");
    assert_ptr_not_equal(e, old);
    assert_int_equal(e->id, id);
    assert_string_equal(sched_endpoint_addr(e), "10.0.0.1:8000");
    assert_int_equal(sched_endpoint_role(e), SCHED_ROLE_BOTH);
    struct sched_endpoint_metrics m;
    sched_endpoint_snapshot(e, &m);
    assert_true(m.healthy);
    assert_true(m.waiting == 3 && m.running == 4 && m.kv_usage == 0.5);
    assert_int_equal(m.inflight_requests, 2);
    assert_int_equal(m.inflight_tokens, 100);
    sched_endpoint_inflight_add(e, -1, -40);
    sched_endpoint_snapshot(e, &m);
    assert_int_equal(m.inflight_requests, 1);
    assert_int_equal(m.inflight_tokens, 60);
    /* The old object is still readable by whoever holds it, and a request that started
     * on it finishes into the same counters; a scrape through it is seen too. */
    assert_string_equal(sched_endpoint_name(old), "p");
    sched_endpoint_inflight_add(old, -1, -60);
    sched_endpoint_snapshot(e, &m);
    assert_int_equal(m.inflight_requests, 0);
    assert_int_equal(m.inflight_tokens, 0);
    sched_endpoint_set_health(old, false);
    sched_endpoint_snapshot(e, &m);
    assert_false(m.healthy);
    sched_endpoint_unref(old);
    sched_endpoint_unref(e);
    sched_ds_free(ds);
}

static void test_unhealthy_excluded(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "a", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "b", SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint_spec spec = {.name = "never", .host = "h", .port = 1};
    assert_int_equal(sched_ds_upsert(ds, &spec), 0); /* never scraped/probed: not a candidate */
    struct sched_endpoint *b = sched_ds_find(ds, "b");
    sched_endpoint_set_health(b, false);
    struct sched *s = tu_one(ds, "random-picker", NULL);
    struct sched_request req = tu_req("hi", "m");
    for (int i = 0; i < 50; i++) {
        struct sched_result r;
        sched_schedule(s, &req, true, &r, NULL);
        assert_int_equal(r.status, 0);
        assert_string_equal(tu_pick(&r), "a");
        sched_result_release(&r);
    }
    struct sched_endpoint *a = sched_ds_find(ds, "a");
    sched_endpoint_set_health(a, false);
    struct sched_result r;
    sched_schedule(s, &req, true, &r, NULL);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.n_picks, 0);
    assert_non_null(strstr(r.reason, "no healthy endpoint"));
    sched_result_release(&r);
    sched_endpoint_set_health(b, true);
    sched_schedule(s, &req, true, &r, NULL);
    assert_string_equal(tu_pick(&r), "b");
    sched_result_release(&r);
    sched_endpoint_unref(a);
    sched_endpoint_unref(b);
    sched_free(s);
    sched_ds_free(ds);
}

static void test_session_token_round_trip(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    const char *names[] = {"decode-0", "d", "de", "meta-llama-llama-3-2-3b-instruct-decode-7c679bb8b4-md6hq"};
    for (size_t i = 0; i < 4; i++)
        tu_add(ds, names[i], SCHED_ROLE_DECODE, NULL, NULL);
    struct sched_endpoint *e = sched_ds_find(ds, "decode-0");
    char tok[128];
    sched_session_token(e, tok, sizeof tok);
    assert_string_equal(tok, "ZGVjb2RlLTA="); /* base64("decode-0") */
    sched_endpoint_unref(e);
    struct sched *s = tu_one(ds, "session-affinity-scorer", NULL);
    for (size_t i = 0; i < 4; i++) {
        e = sched_ds_find(ds, names[i]);
        sched_session_token(e, tok, sizeof tok);
        sched_endpoint_unref(e);
        struct tu_headers h;
        tu_headers_set(&h, "X-Session-Token", tok);
        struct sched_request req = tu_req("hello", "m");
        req.headers = &h.h;
        for (int k = 0; k < 10; k++) {
            struct sched_result r;
            sched_schedule(s, &req, false, &r, NULL);
            assert_string_equal(tu_pick(&r), names[i]);
            sched_result_release(&r);
        }
    }
    sched_free(s);
    sched_ds_free(ds);
}

/* More endpoints than the scheduler's stack scratch holds: the heap path. */
static void test_many_endpoints(void **state)
{
    struct sched_datastore *ds = sched_ds_new();
    for (int i = 0; i < 70; i++) {
        char name[16];
        snprintf(name, sizeof name, "ep-%d", i);
        tu_add(ds, name, SCHED_ROLE_DECODE, NULL, NULL);
        tu_metrics(ds, name, i == 47 ? 0 : 1 + i % 5, 0, 0.5);
    }
    struct sched *s = sched_new(ds, NULL, 0, NULL, NULL);
    struct sched_request req = tu_req("a prompt that is long enough to hash a block or two, "
                                      "because it goes on for more than sixty-four characters",
                                      "m");
    struct sched_result r;
    json_t *j = tu_trace(s, &req, false, &r);
    assert_string_equal(tu_pick(&r), "ep-47");
    json_t *p = json_array_get(json_object_get(j, "profiles"), 0);
    assert_int_equal(json_array_size(json_object_get(p, "candidates")), 70);
    assert_int_equal(json_object_size(json_object_get(p, "totals")), 70);
    json_decref(j);
    sched_result_release(&r);
    /* The same prompt now also prefers ep-47 through the prefix index. */
    tu_metrics(ds, "ep-47", 1, 0, 0.5);
    tu_metrics(ds, "ep-3", 1, 0, 0.5);
    sched_schedule(s, &req, true, &r, NULL);
    assert_string_equal(tu_pick(&r), "ep-47");
    sched_result_release(&r);
    sched_free(s);
    sched_ds_free(ds);
}

/* --- concurrency --------------------------------------------------------------------- */

struct conc {
    struct sched *s;
    struct sched_datastore *ds;
    atomic_bool stop;
    atomic_long decisions;
};

static void *conc_sched(void *arg)
{
    struct conc *c = arg;
    char prompt[512];
    for (int i = 0; !atomic_load(&c->stop); i++) {
        snprintf(prompt, sizeof prompt,
                 "%d shared system prompt shared system prompt shared system prompt shared "
                 "system prompt shared system prompt shared system prompt %d",
                 i % 7, i);
        struct sched_request req = tu_req(prompt, "m");
        struct sched_result r;
        struct buf t = BUF_INIT;
        sched_schedule(c->s, &req, false, &r, (i % 5) ? NULL : &t);
        if (r.status == 0) {
            sched_endpoint_inflight_add(r.picks[0], 1, 10);
            sched_endpoint_inflight_add(r.picks[0], -1, -10);
        }
        sched_result_release(&r);
        buf_free(&t);
        atomic_fetch_add(&c->decisions, 1);
    }
    return NULL;
}

static void *conc_mutate(void *arg)
{
    struct conc *c = arg;
    for (int i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof name, "ep-%d", i % 6);
        if (i % 3 == 2) {
            sched_ds_remove(c->ds, name);
        } else {
            struct sched_endpoint_spec spec = {.name = name, .host = "127.0.0.1",
                                               .port = 8000 + i % 6,
                                               .role = (i % 2) ? SCHED_ROLE_PREFILL
                                                               : SCHED_ROLE_DECODE};
            sched_ds_upsert(c->ds, &spec);
            struct sched_endpoint *e = sched_ds_find(c->ds, name);
            if (e) {
                struct sched_endpoint_metrics m = {.have = true, .healthy = true,
                                                   .waiting = i % 9, .kv_usage = 0.1 * (i % 10)};
                sched_endpoint_set_scraped(e, &m);
                sched_endpoint_unref(e);
            }
        }
        if (i % 300 == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void run_concurrency(const char *config)
{
    struct conc c = {0};
    c.ds = sched_ds_new();
    tu_add(c.ds, "stable-d", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(c.ds, "stable-p", SCHED_ROLE_PREFILL, NULL, NULL);
    struct errinfo err;
    c.s = sched_new(c.ds, config, config ? strlen(config) : 0, "<t>", &err);
    assert_non_null(c.s);
    pthread_t th[5];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, conc_sched, &c);
    pthread_create(&th[4], NULL, conc_mutate, &c);
    pthread_join(th[4], NULL);
    atomic_store(&c.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&c.decisions) > 0);
    sched_free(c.s);
    sched_ds_free(c.ds);
}

static void test_concurrency_default(void **state)
{
    run_concurrency(NULL);
}

static void test_concurrency_pd_and_policies(void **state)
{
    run_concurrency("plugins:\n- type: prefill-filter\n- type: decode-filter\n"
                    "- type: prefix-cache-scorer\n  parameters: {blockSize: 16}\n"
                    "- type: no-hit-lru-scorer\n- type: queue-scorer\n"
                    "- type: pd-profile-handler\n"
                    "schedulingProfiles:\n"
                    "- name: prefill\n  plugins: [{pluginRef: prefill-filter}, "
                    "{pluginRef: prefix-cache-scorer}, {pluginRef: no-hit-lru-scorer}]\n"
                    "- name: decode\n  plugins: [{pluginRef: decode-filter}, "
                    "{pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}]\n");
    run_concurrency(sched_policy_config("consistent_hash"));
    run_concurrency(sched_policy_config("cache_aware"));
    run_concurrency(sched_policy_config("round_robin"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsert_find_remove),
        cmocka_unit_test(test_invalid_spec),
        cmocka_unit_test(test_replace_keeps_state),
        cmocka_unit_test(test_unhealthy_excluded),
        cmocka_unit_test(test_session_token_round_trip),
        cmocka_unit_test(test_many_endpoints),
        cmocka_unit_test(test_concurrency_default),
        cmocka_unit_test(test_concurrency_pd_and_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

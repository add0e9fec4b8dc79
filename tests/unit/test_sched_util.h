/* Helpers shared by the scheduler's unit tests: endpoint setup, requests, headers,
 * one-profile configs, and reading the decision trace back with jansson. */
#ifndef TANDEM_TEST_SCHED_UTIL_H
#define TANDEM_TEST_SCHED_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "sched/sched.h"

/* Adds a healthy endpoint with the given role (and optional one label k=v). */
static inline void tu_add(struct sched_datastore *ds, const char *name, enum sched_role role,
                          const char *lk, const char *lv)
{
    static int port = 9000;
    struct sched_endpoint_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.host = "127.0.0.1";
    spec.port = ++port;
    spec.role = role;
    if (lk) {
        spec.labels[0].key = (char *)lk;
        spec.labels[0].value = (char *)lv;
        spec.n_labels = 1;
    }
    assert_int_equal(sched_ds_upsert(ds, &spec), 0);
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);
}

/* Sets scraped metrics (healthy) on an endpoint. */
/* Two decode endpoints and one prefill endpoint, all healthy. */
static inline struct sched_datastore *tu_pd_ds(void)
{
    struct sched_datastore *ds = sched_ds_new();
    tu_add(ds, "decode-0", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "decode-1", SCHED_ROLE_DECODE, NULL, NULL);
    tu_add(ds, "prefill-0", SCHED_ROLE_PREFILL, NULL, NULL);
    return ds;
}

static inline void tu_metrics(struct sched_datastore *ds, const char *name, double waiting,
                              double running, double kv)
{
    struct sched_endpoint *e = sched_ds_find(ds, name);
    assert_non_null(e);
    struct sched_endpoint_metrics m;
    memset(&m, 0, sizeof m);
    m.have = true;
    m.healthy = true;
    m.waiting = waiting;
    m.running = running;
    m.kv_usage = kv;
    sched_endpoint_set_scraped(e, &m);
    sched_endpoint_unref(e);
}

static inline struct sched_request tu_req(const char *prompt, const char *model)
{
    struct sched_request r;
    memset(&r, 0, sizeof r);
    r.request_id = "req-1";
    r.model = model;
    r.prompt = prompt;
    r.prompt_len = prompt ? strlen(prompt) : 0;
    r.prompt_tokens = (uint32_t)(r.prompt_len / 4);
    return r;
}

/* A header list backed by static storage (up to 4 headers). */
struct tu_headers {
    struct http_header items[4];
    struct http_headers h;
};

static inline void tu_headers_set(struct tu_headers *t, const char *name, const char *value)
{
    memset(t, 0, sizeof *t);
    t->items[0].name = name;
    t->items[0].name_len = strlen(name);
    t->items[0].value = value;
    t->items[0].value_len = strlen(value);
    t->h.items = t->items;
    t->h.n = 1;
    t->h.cap = 4;
}

/* One profile "default" with the given plugin (type, optional flow-style parameters). */
static inline struct sched *tu_one(struct sched_datastore *ds, const char *type,
                                   const char *params)
{
    char text[2048];
    snprintf(text, sizeof text,
             "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
             "- type: %s\n%s%s%s"
             "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: %s\n",
             type, params ? "  parameters: " : "", params ? params : "", params ? "\n" : "",
             type);
    struct errinfo err;
    struct sched *s = sched_new(ds, text, strlen(text), "<test>", &err);
    if (!s)
        fprintf(stderr, "config error: %s\n", err.msg);
    assert_non_null(s);
    return s;
}

/* Schedules with a trace and returns it parsed (caller json_decref). */
static inline json_t *tu_trace(struct sched *s, const struct sched_request *req, bool dry,
                               struct sched_result *res)
{
    struct buf t = BUF_INIT;
    sched_schedule(s, req, dry, res, &t);
    json_error_t je;
    json_t *j = json_loads(t.data, 0, &je);
    if (!j)
        fprintf(stderr, "trace is not JSON: %s\n%s\n", je.text, t.data);
    assert_non_null(j);
    buf_free(&t);
    return j;
}

/* profiles[p].scorers[k].scores[pod] from a trace. */
static inline double tu_score(json_t *trace, size_t p, size_t k, const char *pod)
{
    json_t *sc = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(trace, "profiles"), p),
                                       "scorers"),
                       k),
        "scores");
    json_t *v = json_object_get(sc, pod);
    assert_non_null(v);
    return json_number_value(v);
}

static inline const char *tu_pick(const struct sched_result *r)
{
    return r->n_picks ? sched_endpoint_name(r->picks[0]) : "";
}

#endif

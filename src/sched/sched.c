/* The scheduling pipeline: one sched_schedule call is one cycle. It takes a reference
 * on every healthy endpoint and a snapshot of its metrics, lets the profile handler run
 * profiles (filters in order, weighted scorers, a picker), runs the post-pick hooks
 * unless dry_run, and writes the decision trace.
 *
 * Unhealthy endpoints are excluded before any filter runs: an endpoint is a candidate
 * only while sched_endpoint_metrics.healthy is true, so one that has never been
 * scraped or probed successfully is not sent traffic (the router's readiness says the
 * same: ready = at least one healthy endpoint).
 *
 * Hot path: no heap allocation for up to SCHED_STACK_EPS endpoints (scratch lives on
 * the stack); prompt block hashes are computed once per cycle and shared by the prefix
 * scorer, the P/D handler and deciders, and the post-pick insert. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/json.h"
#include "sched/sched_internal.h"

#define SCHED_STACK_EPS 32

/* --- small helpers shared by plugins -------------------------------------------------- */

static _Thread_local uint64_t tl_rng;

uint64_t sched_rand(void)
{
    if (tl_rng == 0)
        tl_rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)&tl_rng ^ 0x9E3779B97F4A7C15ull;
    return hash_rand_next(&tl_rng);
}

double sched_rand_unit(void)
{
    return ((double)(sched_rand() >> 11) + 0.5) / 9007199254740992.0;
}

void sched_perr_set(struct sched_perr *err, const char *field, const char *fmt, ...)
{
    snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->why, sizeof err->why, fmt, ap);
    va_end(ap);
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

bool sched_param_check_keys(const json_t *params, const char *const *allowed, struct sched_perr *err)
{
    if (!params)
        return true;
    if (!json_is_object(params)) {
        sched_perr_set(err, "parameters", "must be a mapping, got %s", json_type_name(params));
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed && allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                ok = true;
        if (!ok) {
            sched_perr_set(err, key, "unknown parameter");
            return false;
        }
    }
    return true;
}

int sched_param_num(const json_t *params, const char *key, double *out, struct sched_perr *err)
{
    json_t *v = params ? json_object_get(params, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        sched_perr_set(err, key, "must be a number, got %s", json_type_name(v));
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

int sched_param_int(const json_t *params, const char *key, long long *out, struct sched_perr *err)
{
    json_t *v = params ? json_object_get(params, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 9e15) {
        *out = (long long)json_real_value(v);
        return 1;
    }
    if (!json_is_integer(v)) {
        sched_perr_set(err, key, "must be an integer, got %s", json_type_name(v));
        return -1;
    }
    *out = json_integer_value(v);
    return 1;
}

int sched_param_str(const json_t *params, const char *key, const char **out, struct sched_perr *err)
{
    json_t *v = params ? json_object_get(params, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        sched_perr_set(err, key, "must be a string, got %s", json_type_name(v));
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

int sched_param_bool(const json_t *params, const char *key, bool *out, struct sched_perr *err)
{
    json_t *v = params ? json_object_get(params, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        sched_perr_set(err, key, "must be a boolean, got %s", json_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

void sched_session_token(const struct sched_endpoint *e, char *out, size_t cap)
{
    b64_encode(e->name, strlen(e->name), out, cap);
}

size_t sched_b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t n = b64_decode(in, len, out, cap);
    if (n == (size_t)-1) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return n;
}

/* --- trace ------------------------------------------------------------------------------ */

static void trace_str(struct buf *t, const char *s)
{
    if (s)
        json_quote(t, s, strlen(s));
    else
        buf_append_str(t, "null");
}

static void trace_num(struct buf *t, double v)
{
    buf_printf(t, "%.6g", isfinite(v) ? v : 0.0);
}

static void trace_names(struct buf *t, struct sched_cycle *c, const uint16_t *idx, size_t n)
{
    buf_append_char(t, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append_char(t, ',');
        trace_str(t, c->eps[idx[i]]->name);
    }
    buf_append_char(t, ']');
}

static void trace_map(struct buf *t, struct sched_cycle *c, const uint16_t *idx, const double *v,
                      size_t n)
{
    buf_append_char(t, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append_char(t, ',');
        trace_str(t, c->eps[idx[i]]->name);
        buf_append_char(t, ':');
        trace_num(t, v[i]);
    }
    buf_append_char(t, '}');
}

/* --- one profile ------------------------------------------------------------------------ */

static inline double clamp01(double v)
{
    if (!(v > 0)) /* NaN too */
        return 0;
    return v > 1 ? 1 : v;
}

/* Records one plugin call's duration on a sampled decision. */
static void time_plugin(struct sched_cycle *c, const struct sched_plugin *pl, uint64_t t0)
{
    struct sched_result *r = c->timed;
    if (r && r->n_plugin_times < SCHED_MAX_PLUGIN_TIMES) {
        r->plugin_times[r->n_plugin_times].name = pl->name;
        r->plugin_times[r->n_plugin_times].ns = clock_monotonic_ns() - t0;
        r->n_plugin_times++;
    }
}

int sched_run_profile(struct sched_cycle *c, const struct sched_profile *p, uint16_t *picks,
                      size_t *n_picks, char *reason, size_t reason_cap)
{
    size_t n = c->n;
    uint16_t st_a[SCHED_STACK_EPS], st_b[SCHED_STACK_EPS];
    double st_s[SCHED_STACK_EPS], st_t[SCHED_STACK_EPS];
    uint16_t *a = st_a, *b = st_b;
    double *sc = st_s, *tot = st_t;
    void *heap = NULL;
    if (n > SCHED_STACK_EPS) {
        heap = xmalloc(n * (2 * sizeof(uint16_t) + 2 * sizeof(double)));
        sc = heap;
        tot = sc + n;
        a = (uint16_t *)(tot + n);
        b = a + n;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = (uint16_t)i;
    struct buf *t = c->trace;
    if (t) {
        if (!c->trace_first_profile)
            buf_append_char(t, ',');
        c->trace_first_profile = false;
        buf_append_str(t, "{\"name\":");
        trace_str(t, p->name);
        buf_append_str(t, ",\"candidates\":");
        trace_names(t, c, a, n);
        buf_append_str(t, ",\"filters\":[");
    }
    int status = 0;
    *n_picks = 0;
    if (n == 0) {
        snprintf(reason, reason_cap, "profile %s: no healthy endpoint", p->name);
        status = 503;
    }
    for (size_t f = 0; status == 0 && f < p->n_filters; f++) {
        struct sched_plugin *fp = p->filters[f];
        uint64_t pt = c->timed ? clock_monotonic_ns() : 0;
        size_t m = fp->t->filter(fp, c, a, n, b);
        if (c->timed)
            time_plugin(c, fp, pt);
        if (t) {
            if (f)
                buf_append_char(t, ',');
            buf_append_str(t, "{\"name\":");
            trace_str(t, fp->name);
            buf_append_str(t, ",\"survivors\":");
            trace_names(t, c, b, m);
            buf_append_char(t, '}');
        }
        uint16_t *tmp = a;
        a = b;
        b = tmp;
        n = m;
        if (n == 0) {
            snprintf(reason, reason_cap, "profile %s: no endpoint passed filter %s", p->name,
                     fp->name);
            status = 503;
        }
    }
    if (t)
        buf_append_str(t, "],\"scorers\":[");
    if (status == 0) {
        for (size_t i = 0; i < n; i++)
            tot[i] = 0;
        for (size_t k = 0; k < p->n_scorers; k++) {
            struct sched_plugin *sp = p->scorers[k].p;
            double w = p->scorers[k].weight;
            for (size_t i = 0; i < n; i++)
                sc[i] = 0;
            uint64_t pt = c->timed ? clock_monotonic_ns() : 0;
            sp->t->score(sp, c, a, n, sc);
            if (c->timed)
                time_plugin(c, sp, pt);
            for (size_t i = 0; i < n; i++) {
                sc[i] = clamp01(sc[i]);
                tot[i] += w * sc[i];
            }
            if (t) {
                if (k)
                    buf_append_char(t, ',');
                buf_append_str(t, "{\"name\":");
                trace_str(t, sp->name);
                buf_append_str(t, ",\"weight\":");
                trace_num(t, w);
                buf_append_str(t, ",\"scores\":");
                trace_map(t, c, a, sc, n);
                buf_append_char(t, '}');
            }
        }
        struct sched_plugin *pk = p->picker ? p->picker : c->s->default_picker;
        uint16_t pos[SCHED_MAX_PICKS];
        uint64_t pt = c->timed ? clock_monotonic_ns() : 0;
        size_t np = pk->t->pick(pk, c, a, tot, n, pos, SCHED_MAX_PICKS);
        if (c->timed)
            time_plugin(c, pk, pt);
        for (size_t i = 0; i < np; i++)
            picks[i] = a[pos[i]];
        *n_picks = np;
        if (np == 0) {
            snprintf(reason, reason_cap, "profile %s: picker %s chose no endpoint", p->name,
                     pk->name);
            status = 503;
        }
    }
    if (t) {
        buf_append_str(t, "],\"totals\":");
        if (status == 0)
            trace_map(t, c, a, tot, n);
        else
            buf_append_str(t, "{}");
        buf_append_str(t, ",\"picked\":");
        trace_names(t, c, picks, *n_picks);
        if (status) {
            buf_append_str(t, ",\"reason\":");
            trace_str(t, reason);
        }
        buf_append_char(t, '}');
    }
    free(heap);
    return status;
}

/* --- the cycle ---------------------------------------------------------------------------- */

void sched_result_release(struct sched_result *r)
{
    for (size_t i = 0; i < r->n_picks; i++)
        sched_endpoint_unref(r->picks[i]);
    r->n_picks = 0;
    sched_endpoint_unref(r->prefill);
    r->prefill = NULL;
    for (size_t i = 0; i < r->n_encode; i++)
        sched_endpoint_unref(r->encode[i]);
    r->n_encode = 0;
}

void sched_schedule(struct sched *s, const struct sched_request *req, bool dry_run,
                    struct sched_result *res, struct buf *trace)
{
    uint64_t t0 = clock_monotonic_ns();
    memset(res, 0, sizeof *res);

    struct sched_endpoint *st_all[SCHED_STACK_EPS];
    struct sched_endpoint_metrics st_m[SCHED_STACK_EPS];
    uint16_t st_matched[SCHED_STACK_EPS];
    uint64_t hashes[SCHED_MAX_PREFIX_BLOCKS];
    struct sched_endpoint **all = st_all;
    struct sched_endpoint_metrics *m = st_m;
    uint16_t *matched = st_matched;
    size_t total = sched_ds_list_into(s->ds, all, SCHED_STACK_EPS);
    while (total > SCHED_STACK_EPS && all == st_all) {
        size_t cap = total + 8;
        all = xmalloc(cap * sizeof *all);
        size_t got = sched_ds_list_into(s->ds, all, cap);
        if (got > cap) {
            free(all);
            all = st_all;
            total = got;
            continue;
        }
        total = got;
        m = xmalloc((total ? total : 1) * sizeof *m);
        matched = xmalloc((total ? total : 1) * sizeof *matched);
    }

    /* Keep healthy endpoints only (compacted in place; the rest are released now), and
     * only those in the gateway's subset when it gave one. */
    size_t n = 0;
    for (size_t i = 0; i < total; i++) {
        sched_endpoint_snapshot(all[i], &m[n]);
        bool in_subset = !req->has_subset;
        for (size_t k = 0; k < req->n_subset && !in_subset; k++)
            in_subset = !strcmp(req->subset[k], all[i]->addr);
        if (m[n].healthy && !sched_endpoint_blocked(all[i]) && in_subset && n < UINT16_MAX)
            all[n++] = all[i];
        else
            sched_endpoint_unref(all[i]);
    }

    /* token-producer: the engine's token count for this prompt when it is cached */
    struct sched_request req_tok;
    uint32_t ntok = req->prompt_tokens ? 0 : sched_tokens_count(s, req);
    if (ntok) {
        req_tok = *req;
        req_tok.prompt_tokens = ntok;
        req = &req_tok;
    }
    struct sched_cycle c = {
        .s = s,
        .req = req,
        .dry_run = dry_run,
        .eps = all,
        .m = m,
        .n = n,
        .trace = trace,
        .trace_first_profile = true,
        .px_hashes = hashes,
        .px_matched = matched,
        .decode_pick = -1,
    };
    static _Thread_local unsigned tl_decisions;
    if ((++tl_decisions & 15) == 0)
        c.timed = res; /* sample 1 in 16: per-plugin clock reads are not free */
    if (trace) {
        buf_append_str(trace, "{\"request_id\":");
        trace_str(trace, req->request_id);
        buf_append_str(trace, ",\"model\":");
        trace_str(trace, req->model);
        buf_append_str(trace, ",\"profiles\":[");
    }
    /* admission first: admitters in config order, then the saturation detector */
    for (size_t i = 0; i < s->n_plugins && !res->status; i++)
        if (s->plugins[i]->t->admit)
            res->status = s->plugins[i]->t->admit(s->plugins[i], &c, res->reason,
                                                  sizeof res->reason);
    if (!res->status && s->saturation)
        res->status = s->saturation->t->saturation_admit(s->saturation, &c, res->reason,
                                                         sizeof res->reason);
    if (!res->status)
        s->handler->t->handle(s->handler, &c, res);
    if (res->status == 0 && res->n_picks == 0) {
        res->status = 503;
        snprintf(res->reason, sizeof res->reason, "no endpoint picked");
    }
    if (res->status == 0 && c.px_matched_done && c.px_n) {
        for (size_t i = 0; i < c.n; i++) {
            if (c.eps[i] == res->picks[0]) {
                res->prefix_blocks = (uint32_t)c.px_n;
                res->prefix_hit_blocks = c.px_matched[i];
                break;
            }
        }
    }
    if (res->status == 0 && !dry_run) {
        for (size_t i = 0; i < s->n_plugins; i++) {
            struct sched_plugin *p = s->plugins[i];
            if (p->t->post_pick)
                p->t->post_pick(p, &c, res);
        }
    }
    if (!res->pd_reason)
        res->pd_reason = res->status ? "not scheduled" : "single profile";
    res->elapsed_ns = clock_monotonic_ns() - t0;
    if (trace) {
        buf_append_str(trace, "],\"pd\":{\"decision\":");
        trace_str(trace, res->prefill ? "disaggregate" : "decode-only");
        buf_append_str(trace, ",\"reason\":");
        trace_str(trace, res->pd_reason);
        buf_append_str(trace, "},\"picked\":[");
        for (size_t i = 0; i < res->n_picks; i++) {
            if (i)
                buf_append_char(trace, ',');
            trace_str(trace, res->picks[i]->name);
        }
        buf_append_str(trace, "],\"prefill\":");
        trace_str(trace, res->prefill ? res->prefill->name : NULL);
        if (res->n_encode || res->encode_reason) {
            buf_append_str(trace, ",\"encode\":[");
            for (size_t i = 0; i < res->n_encode; i++) {
                if (i)
                    buf_append_char(trace, ',');
                trace_str(trace, res->encode[i]->name);
            }
            buf_append_str(trace, "],\"encode_reason\":");
            trace_str(trace, res->encode_reason);
        }
        buf_printf(trace, ",\"status\":%d", res->status);
        if (res->status) {
            buf_append_str(trace, ",\"reason\":");
            trace_str(trace, res->reason);
        }
        buf_printf(trace, ",\"elapsed_us\":%.3f}", (double)res->elapsed_ns / 1000.0);
    }
    for (size_t i = 0; i < n; i++)
        sched_endpoint_unref(all[i]);
    if (all != st_all) {
        free(all);
        free(m);
        free(matched);
    }
}

/* --- lookups used by plugins' bind ------------------------------------------------------- */

struct sched_plugin *sched_find_plugin(struct sched *s, const char *name)
{
    for (size_t i = 0; i < s->n_plugins; i++)
        if (strcmp(s->plugins[i]->name, name) == 0)
            return s->plugins[i];
    return NULL;
}

struct sched_profile *sched_find_profile(struct sched *s, const char *name)
{
    for (size_t i = 0; i < s->n_profiles; i++)
        if (strcmp(s->profiles[i].name, name) == 0)
            return &s->profiles[i];
    return NULL;
}

size_t sched_prefix_index_size(const struct sched *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_plugins; i++)
        if (sched_plugin_is_prefix(s->plugins[i]))
            n += prefix_index_size(sched_prefix_plugin_index(s->plugins[i]));
    return n;
}

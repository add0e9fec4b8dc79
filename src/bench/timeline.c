/* Metrics over time for `tandem bench --timeline-url URL --timeline-metrics A,B`: every
 * interval the driver fetches a Prometheus page (an autoscaler's replica counts, a
 * router's queues) and this file keeps each series of the named metrics as a column of
 * values, one row per sample time (NaN where a series was absent). Stored in the result
 * JSON as "timeline" and drawn by the HTML report.
 *
 * Bounded: at most BENCH_TIMELINE_MAX_SERIES series and BENCH_TIMELINE_MAX_SAMPLES
 * samples (later ones are dropped), so a long run or a page with thousands of label sets
 * cannot grow without limit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/prom.h"
#include "bench/bench.h"

void bench_timeline_free(struct bench_timeline *tl)
{
    for (size_t i = 0; i < tl->n_series; i++) {
        free(tl->names[i]);
        free(tl->v[i]);
    }
    free(tl->names);
    free(tl->v);
    free(tl->t);
    memset(tl, 0, sizeof *tl);
}

/* Column of a series, created (NaN-filled up to the current row) on first sight. */
static double *column(struct bench_timeline *tl, const char *key)
{
    for (size_t i = 0; i < tl->n_series; i++)
        if (!strcmp(tl->names[i], key))
            return tl->v[i];
    if (tl->n_series == BENCH_TIMELINE_MAX_SERIES)
        return NULL;
    tl->names = xrealloc(tl->names, (tl->n_series + 1) * sizeof *tl->names);
    tl->v = xrealloc(tl->v, (tl->n_series + 1) * sizeof *tl->v);
    tl->names[tl->n_series] = xstrdup(key);
    double *col = xmalloc(BENCH_TIMELINE_MAX_SAMPLES * sizeof *col);
    for (size_t k = 0; k < BENCH_TIMELINE_MAX_SAMPLES; k++)
        col[k] = NAN;
    tl->v[tl->n_series++] = col;
    return col;
}

struct add_ctx {
    struct bench_timeline *tl;
    const char *const *names;
    size_t n_names;
    size_t row;
};

static void on_sample(const struct prom_sample *s, void *ctx)
{
    struct add_ctx *c = ctx;
    bool want = false;
    for (size_t i = 0; i < c->n_names && !want; i++)
        want = prom_name_is(s, c->names[i]);
    if (!want)
        return;
    struct buf key = BUF_INIT;
    buf_append(&key, s->name, s->name_len);
    for (size_t i = 0; i < s->n_labels; i++)
        buf_printf(&key, "%s%.*s=\"%.*s\"", i ? "," : "{", (int)s->labels[i].name_len,
                   s->labels[i].name, (int)s->labels[i].value_len, s->labels[i].value);
    if (s->n_labels)
        buf_append_char(&key, '}');
    buf_append_char(&key, '\0');
    double *col = column(c->tl, key.data);
    if (col)
        col[c->row] = isnan(col[c->row]) ? s->value : col[c->row] + s->value;
    buf_free(&key);
}

void bench_timeline_add(struct bench_timeline *tl, double t, const char *text, size_t len,
                        const char *const *names, size_t n_names)
{
    if (tl->n_t == BENCH_TIMELINE_MAX_SAMPLES)
        return;
    if (!tl->t)
        tl->t = xmalloc(BENCH_TIMELINE_MAX_SAMPLES * sizeof *tl->t);
    struct add_ctx c = {tl, names, n_names, tl->n_t};
    tl->t[tl->n_t] = t;
    char err[128];
    prom_parse(text, len, on_sample, &c, err, sizeof err); /* a bad line ends the page */
    tl->n_t++;
}

json_t *bench_timeline_json(const struct bench_timeline *tl)
{
    json_t *t = json_array(), *series = json_object();
    for (size_t k = 0; k < tl->n_t; k++)
        json_array_append_new(t, json_real(tl->t[k]));
    for (size_t i = 0; i < tl->n_series; i++) {
        json_t *col = json_array();
        for (size_t k = 0; k < tl->n_t; k++)
            json_array_append_new(col, isfinite(tl->v[i][k]) ? json_real(tl->v[i][k])
                                                             : json_null());
        json_object_set_new(series, tl->names[i], col);
    }
    return json_pack("{s:o,s:o}", "t", t, "series", series);
}

bool bench_timeline_from_json(const json_t *j, struct bench_timeline *out)
{
    memset(out, 0, sizeof *out);
    const json_t *t = json_object_get(j, "t"), *series = json_object_get(j, "series");
    if (!json_is_array(t) || !json_is_object(series))
        return false;
    size_t n = json_array_size(t);
    if (n > BENCH_TIMELINE_MAX_SAMPLES)
        n = BENCH_TIMELINE_MAX_SAMPLES;
    out->t = xmalloc((n ? n : 1) * sizeof *out->t);
    for (size_t k = 0; k < n; k++)
        out->t[k] = json_number_value(json_array_get(t, k));
    out->n_t = n;
    const char *key;
    const json_t *col;
    json_object_foreach((json_t *)series, key, col)
    {
        double *c = column(out, key);
        for (size_t k = 0; c && k < n; k++) {
            const json_t *v = json_array_get(col, k);
            c[k] = json_is_number(v) ? json_number_value(v) : NAN;
        }
    }
    return true;
}

double bench_timeline_integral(const struct bench_timeline *tl, const char *key)
{
    for (size_t i = 0; i < tl->n_series; i++) {
        if (strcmp(tl->names[i], key))
            continue;
        double sum = 0;
        for (size_t k = 1; k < tl->n_t; k++) {
            double v = tl->v[i][k - 1];
            if (isfinite(v))
                sum += v * (tl->t[k] - tl->t[k - 1]);
        }
        return sum;
    }
    return NAN;
}

/* bench statistics: per-request records -> the numbers `vllm bench serve` reports.
 *
 * Definitions follow vLLM's calculate_metrics exactly: TTFT, E2EL per successful request;
 * ITL pools every gap of every successful request; TPOT = (e2el - ttft) / (out - 1) over
 * successful requests with more than one output token (a <= 1 token request counts as
 * TPOT 0 for goodput, as in vLLM). mean/median/std (population, ddof=0) and percentiles
 * with numpy's default linear interpolation; an empty metric reports 0 everywhere.
 *
 * tandem's choices where vLLM has no record-level equivalent:
 *  - duration runs from the earliest t_send to the latest t_send + e2el among the records
 *    counted, failed ones included (a failed request still occupied the run); records
 *    with a negative or non-finite t_send are ignored for the bounds, and a negative or
 *    non-finite e2el counts as t_send.
 *  - an ok record with ttft < 0 (no content chunk) is left out of the TTFT distribution
 *    and counts as TTFT 0 for goodput (vLLM's default ttft is 0.0).
 *  - request_goodput is -1 (and good 0) when no SLO is set; the JSON writes null.
 *  - max_concurrent sweeps the exact intervals [t_send, t_send + e2el] of every counted
 *    record (failed included); an interval ending when another starts does not overlap.
 *  - schedule delay covers every counted record with a t_send.
 *  - failed_by_status keeps the first 8 distinct statuses seen (sorted by status);
 *    failures with a 9th status still count in failed.
 *  - in the result JSON a request_rate of inf is the string "inf" (what vLLM writes). */
#include "bench/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

void bench_record_free(struct bench_record *r)
{
    if (!r)
        return;
    free(r->itl);
    r->itl = NULL;
    r->n_itl = 0;
}

/* ---- --goodput ------------------------------------------------------------------------ */

bool bench_slo_parse(const char *text, struct bench_slo *out, char *err, size_t errlen)
{
    struct bench_slo slo = {0, 0, 0};
    const char *p = text ? text : "";
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '\n')
            p++;
        int wlen = (int)(p - w);
        const char *colon = memchr(w, ':', (size_t)wlen);
        if (!colon) {
            snprintf(err, errlen, "--goodput: '%.*s' is not KEY:VALUE (e.g. ttft:500)", wlen, w);
            return false;
        }
        size_t klen = (size_t)(colon - w);
        double *slot = NULL;
        if (klen == 4 && memcmp(w, "ttft", 4) == 0)
            slot = &slo.ttft_ms;
        else if (klen == 4 && memcmp(w, "tpot", 4) == 0)
            slot = &slo.tpot_ms;
        else if (klen == 4 && memcmp(w, "e2el", 4) == 0)
            slot = &slo.e2el_ms;
        if (!slot) {
            snprintf(err, errlen, "--goodput: unknown metric '%.*s' (use ttft, tpot, e2el)",
                     (int)klen, w);
            return false;
        }
        char num[64];
        size_t vlen = (size_t)(p - colon - 1);
        char *end = NULL;
        double v = 0;
        if (vlen > 0 && vlen < sizeof num) {
            memcpy(num, colon + 1, vlen);
            num[vlen] = '\0';
            v = strtod(num, &end);
        }
        if (vlen == 0 || vlen >= sizeof num || *end || !isfinite(v) || v <= 0) {
            snprintf(err, errlen, "--goodput: '%.*s' needs a positive number of ms", wlen, w);
            return false;
        }
        *slot = v;
    }
    *out = slo;
    return true;
}

/* ---- distributions -------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile(method="linear") on sorted data, with numpy's two-sided lerp. */
static double pct_sorted(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return v[0];
    if (p >= 100)
        return v[n - 1];
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double t = rank - (double)lo;
    double a = v[lo], b = v[hi], d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

/* Sorts vals in place and fills d. */
static void dist_compute(double *vals, size_t n, const double *pcts, size_t n_pcts,
                         struct bench_dist *d)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    if (n == 0)
        return;
    qsort(vals, n, sizeof *vals, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += vals[i];
    d->mean = sum / (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (vals[i] - d->mean) * (vals[i] - d->mean);
    d->std = sqrt(ss / (double)n);
    d->median = n % 2 ? vals[n / 2] : (vals[n / 2 - 1] + vals[n / 2]) / 2.0;
    d->min = vals[0];
    d->max = vals[n - 1];
    for (size_t i = 0; i < n_pcts && i < 8; i++)
        d->pct[i] = pct_sorted(vals, n, pcts[i]);
}

/* ---- compute -------------------------------------------------------------------------- */

struct conc_event {
    double t;
    int delta; /* +1 start, -1 end */
};

static int cmp_event(const void *a, const void *b)
{
    const struct conc_event *x = a, *y = b;
    if (x->t != y->t)
        return (x->t > y->t) - (x->t < y->t);
    return x->delta - y->delta; /* ends (-1) before starts (+1) at the same instant */
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool has_send(const struct bench_record *r)
{
    return isfinite(r->t_send) && r->t_send >= 0;
}

static double end_time(const struct bench_record *r)
{
    return isfinite(r->e2el) && r->e2el >= 0 ? r->t_send + r->e2el : r->t_send;
}

void bench_stats_compute(const struct bench_record *recs, size_t n, int stage,
                         const struct bench_slo *slo, const double *pcts, size_t n_pcts,
                         struct bench_stats *out)
{
    memset(out, 0, sizeof *out);
    out->cache_hit_ratio = -1;
    if (pcts && n_pcts > 0) {
        out->n_pcts = n_pcts < 8 ? n_pcts : 8;
        memcpy(out->pcts, pcts, out->n_pcts * sizeof *pcts);
    } else {
        out->pcts[0] = 99; /* vllm's --metric-percentiles default */
        out->n_pcts = 1;
    }
    bool slo_set = slo && (slo->ttft_ms > 0 || slo->tpot_ms > 0 || slo->e2el_ms > 0);

    size_t n_itl_total = 0;
    for (size_t i = 0; i < n; i++)
        if ((stage < 0 || recs[i].stage == (uint32_t)stage) && recs[i].ok)
            n_itl_total += recs[i].n_itl;
    size_t cap = n ? n : 1;
    double *ttft = xmalloc(cap * sizeof *ttft);
    double *tpot = xmalloc(cap * sizeof *tpot);
    double *e2el = xmalloc(cap * sizeof *e2el);
    double *sched = xmalloc(cap * sizeof *sched);
    double *itl = xmalloc((n_itl_total ? n_itl_total : 1) * sizeof *itl);
    struct conc_event *ev = xmalloc(2 * cap * sizeof *ev);
    const char **pods = xmalloc(cap * sizeof *pods);
    size_t nt = 0, np = 0, ne = 0, ns = 0, ni = 0, nev = 0, npod = 0;

    double t0 = INFINITY, t1 = -INFINITY;
    uint64_t cache_in = 0, cache_hit = 0;
    bool any_cached = false;

    for (size_t i = 0; i < n; i++) {
        const struct bench_record *r = &recs[i];
        if (stage >= 0 && r->stage != (uint32_t)stage)
            continue;
        if (has_send(r)) {
            double end = end_time(r);
            if (r->t_send < t0)
                t0 = r->t_send;
            if (end > t1)
                t1 = end;
            ev[nev++] = (struct conc_event){r->t_send, +1};
            ev[nev++] = (struct conc_event){end, -1};
            if (isfinite(r->t_sched))
                sched[ns++] = (r->t_send - r->t_sched) * 1000.0;
        }
        if (!r->ok) {
            out->failed++;
            size_t k = 0;
            while (k < out->n_failed_status && out->failed_by_status[k][0] != (size_t)r->status)
                k++;
            if (k == out->n_failed_status && k < 8) {
                out->failed_by_status[k][0] = (size_t)r->status;
                out->failed_by_status[k][1] = 0;
                out->n_failed_status++;
            }
            if (k < out->n_failed_status)
                out->failed_by_status[k][1]++;
            continue;
        }
        out->completed++;
        out->total_input_tokens += r->input_tokens;
        out->total_output_tokens += r->output_tokens;
        if (r->ttft >= 0)
            ttft[nt++] = r->ttft * 1000.0;
        double ttft_s = r->ttft >= 0 ? r->ttft : 0;
        double tpot_ms = 0;
        if (r->output_tokens > 1) {
            tpot_ms = (r->e2el - ttft_s) / (double)(r->output_tokens - 1) * 1000.0;
            tpot[np++] = tpot_ms;
        }
        e2el[ne++] = r->e2el * 1000.0;
        for (size_t j = 0; j < r->n_itl; j++)
            itl[ni++] = r->itl[j] * 1000.0;
        if (r->has_cached) {
            any_cached = true;
            cache_in += r->input_tokens;
            cache_hit += r->cached_tokens;
        }
        if (r->pod[0])
            pods[npod++] = r->pod;
        if (slo_set) {
            bool good = true;
            if (slo->ttft_ms > 0 && ttft_s * 1000.0 > slo->ttft_ms)
                good = false;
            if (slo->tpot_ms > 0 && tpot_ms > slo->tpot_ms)
                good = false;
            if (slo->e2el_ms > 0 && r->e2el * 1000.0 > slo->e2el_ms)
                good = false;
            if (good)
                out->good++;
        }
    }

    out->duration = t1 > t0 ? t1 - t0 : 0;
    double dur = out->duration;
    if (dur > 0) {
        out->request_throughput = (double)out->completed / dur;
        out->output_throughput = (double)out->total_output_tokens / dur;
        out->total_token_throughput =
            (double)(out->total_input_tokens + out->total_output_tokens) / dur;
        out->request_goodput = (double)out->good / dur;
    }
    if (!slo_set)
        out->request_goodput = -1;
    out->total_cached_tokens = cache_hit;
    if (any_cached)
        out->cache_hit_ratio = cache_in ? (double)cache_hit / (double)cache_in : 0;

    dist_compute(ttft, nt, out->pcts, out->n_pcts, &out->ttft);
    dist_compute(tpot, np, out->pcts, out->n_pcts, &out->tpot);
    dist_compute(itl, ni, out->pcts, out->n_pcts, &out->itl);
    dist_compute(e2el, ne, out->pcts, out->n_pcts, &out->e2el);

    if (ns) {
        struct bench_dist d;
        double p99 = 99;
        dist_compute(sched, ns, &p99, 1, &d);
        out->schedule_delay_mean_ms = d.mean;
        out->schedule_delay_p99_ms = d.pct[0];
    }

    qsort(ev, nev, sizeof *ev, cmp_event);
    long cur = 0, best = 0;
    for (size_t i = 0; i < nev; i++) {
        cur += ev[i].delta;
        if (cur > best)
            best = cur;
    }
    out->max_concurrent = (double)best;

    /* failed_by_status sorted by status (insertion sort; at most 8). */
    for (size_t i = 1; i < out->n_failed_status; i++)
        for (size_t j = i; j > 0 && out->failed_by_status[j - 1][0] > out->failed_by_status[j][0];
             j--) {
            size_t s0 = out->failed_by_status[j][0], c0 = out->failed_by_status[j][1];
            out->failed_by_status[j][0] = out->failed_by_status[j - 1][0];
            out->failed_by_status[j][1] = out->failed_by_status[j - 1][1];
            out->failed_by_status[j - 1][0] = s0;
            out->failed_by_status[j - 1][1] = c0;
        }

    /* Per-pod counts: sort the names, count runs. pod[] may lack its NUL at 64 bytes, so
     * copy through a bounded buffer first. */
    char(*names)[64] = xmalloc((npod ? npod : 1) * sizeof *names);
    for (size_t i = 0; i < npod; i++) {
        size_t l = strnlen(pods[i], 63);
        memcpy(names[i], pods[i], l);
        names[i][l] = '\0';
        pods[i] = names[i];
    }
    qsort(pods, npod, sizeof *pods, cmp_str_ptr);
    if (npod) {
        out->pods = xcalloc(npod, sizeof *out->pods);
        for (size_t i = 0; i < npod; i++) {
            if (out->n_pods == 0 || strcmp(out->pods[out->n_pods - 1].pod, pods[i]) != 0) {
                snprintf(out->pods[out->n_pods].pod, sizeof out->pods[0].pod, "%s", pods[i]);
                out->n_pods++;
            }
            out->pods[out->n_pods - 1].requests++;
        }
        out->pods = xrealloc(out->pods, out->n_pods * sizeof *out->pods);
    }

    free(names);
    free(pods);
    free(ev);
    free(itl);
    free(sched);
    free(e2el);
    free(tpot);
    free(ttft);
}

void bench_stats_free(struct bench_stats *s)
{
    if (!s)
        return;
    free(s->pods);
    s->pods = NULL;
    s->n_pods = 0;
}

/* ---- summary block -------------------------------------------------------------------- */

/* Python's "{s:{c}^{n}}": s centered in fill to width n, the odd fill on the right. */
static void print_centered(FILE *out, const char *s, char fill, int width)
{
    int len = (int)strlen(s);
    int pad = width > len ? width - len : 0;
    int left = pad / 2, right = pad - left;
    for (int i = 0; i < left; i++)
        fputc(fill, out);
    fputs(s, out);
    for (int i = 0; i < right; i++)
        fputc(fill, out);
    fputc('\n', out);
}

/* vLLM's p_word: "99" when whole, else the shortest repr ("99.9"). */
static void pct_word(char *dst, size_t len, double p)
{
    if (p == floor(p) && fabs(p) < 1e15) {
        snprintf(dst, len, "%lld", (long long)p);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(dst, len, "%.*g", prec, p);
        if (strtod(dst, NULL) == p)
            return;
    }
}

static void line_f(FILE *out, const char *k, double v)
{
    fprintf(out, "%-40s %-10.2f\n", k, v);
}

static void line_u(FILE *out, const char *k, unsigned long long v)
{
    fprintf(out, "%-40s %-10llu\n", k, v);
}

static void print_metric(FILE *out, const struct bench_stats *s, const struct bench_dist *d,
                         const char *name, const char *header)
{
    char k[96], w[32];
    print_centered(out, header, '-', 50);
    snprintf(k, sizeof k, "Mean %s (ms):", name);
    line_f(out, k, d->mean);
    snprintf(k, sizeof k, "Median %s (ms):", name);
    line_f(out, k, d->median);
    for (size_t i = 0; i < s->n_pcts && i < 8; i++) {
        pct_word(w, sizeof w, s->pcts[i]);
        snprintf(k, sizeof k, "P%s %s (ms):", w, name);
        line_f(out, k, d->pct[i]);
    }
}

void bench_stats_print(FILE *out, const struct bench_stats *s, const char *title)
{
    /* One space either side of the title, whatever spaces the caller gave. */
    const char *t = title && *title ? title : "Serving Benchmark Result";
    while (*t == ' ')
        t++;
    int tl = (int)strlen(t);
    while (tl > 0 && t[tl - 1] == ' ')
        tl--;
    char head[128];
    snprintf(head, sizeof head, " %.*s ", tl, t);
    print_centered(out, head, '=', 50);
    line_u(out, "Successful requests:", s->completed);
    line_u(out, "Failed requests:", s->failed);
    if (s->n_failed_status) {
        char by[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < s->n_failed_status && used < sizeof by; i++) {
            char st[24];
            if (s->failed_by_status[i][0])
                snprintf(st, sizeof st, "%zu", s->failed_by_status[i][0]);
            else
                snprintf(st, sizeof st, "none");
            int w = snprintf(by + used, sizeof by - used, "%s%s: %zu", i ? ", " : "", st,
                             s->failed_by_status[i][1]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        fprintf(out, "%-40s %s\n", "  by status:", by);
    }
    line_f(out, "Benchmark duration (s):", s->duration);
    line_u(out, "Total input tokens:", (unsigned long long)s->total_input_tokens);
    line_u(out, "Total generated tokens:", (unsigned long long)s->total_output_tokens);
    line_f(out, "Request throughput (req/s):", s->request_throughput);
    if (s->request_goodput >= 0)
        line_f(out, "Request goodput (req/s):", s->request_goodput);
    line_f(out, "Output token throughput (tok/s):", s->output_throughput);
    line_u(out, "Peak concurrent requests:", (unsigned long long)s->max_concurrent);
    line_f(out, "Total Token throughput (tok/s):", s->total_token_throughput);
    print_metric(out, s, &s->ttft, "TTFT", "Time to First Token");
    print_metric(out, s, &s->tpot, "TPOT", "Time per Output Token (excl. 1st token)");
    print_metric(out, s, &s->itl, "ITL", "Inter-token Latency");
    print_metric(out, s, &s->e2el, "E2EL", "End-to-end Latency");
    print_centered(out, "tandem", '-', 50);
    if (s->cache_hit_ratio >= 0)
        fprintf(out, "%-40s %-10.4f\n", "Prefix cache hit ratio:", s->cache_hit_ratio);
    char sd[64];
    snprintf(sd, sizeof sd, "%.2f / %.2f", s->schedule_delay_mean_ms, s->schedule_delay_p99_ms);
    fprintf(out, "%-40s %s\n", "Schedule delay mean/p99 (ms):", sd);
    if (s->n_pods) {
        fprintf(out, "Requests per pod:\n");
        for (size_t i = 0; i < s->n_pods; i++) {
            char k[80];
            snprintf(k, sizeof k, "  %s:", s->pods[i].pod);
            line_u(out, k, s->pods[i].requests);
        }
    }
    for (int i = 0; i < 50; i++)
        fputc('=', out);
    fputc('\n', out);
}

/* ---- result JSON ---------------------------------------------------------------------- */

/* json_real refuses non-finite values: write null for them. */
static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static void put_metric(json_t *o, const struct bench_stats *s, const char *name,
                       const struct bench_dist *d)
{
    char k[64], w[32];
    snprintf(k, sizeof k, "mean_%s_ms", name);
    json_object_set_new(o, k, jnum(d->mean));
    snprintf(k, sizeof k, "median_%s_ms", name);
    json_object_set_new(o, k, jnum(d->median));
    snprintf(k, sizeof k, "std_%s_ms", name);
    json_object_set_new(o, k, jnum(d->std));
    for (size_t i = 0; i < s->n_pcts && i < 8; i++) {
        pct_word(w, sizeof w, s->pcts[i]);
        snprintf(k, sizeof k, "p%s_%s_ms", w, name);
        json_object_set_new(o, k, jnum(d->pct[i]));
    }
}

static json_t *bounded_str(const char *s, size_t cap)
{
    size_t l = strnlen(s, cap - 1);
    json_t *v = json_stringn(s, l);
    return v ? v : json_string(""); /* invalid UTF-8 */
}

json_t *bench_result_json(const struct bench_meta *m, const struct bench_stats *s,
                          const struct bench_record *recs, size_t n, bool detailed)
{
    json_t *o = json_object();
    json_object_set_new(o, "date", jstr(m->date));
    json_object_set_new(o, "endpoint_type", json_string("openai"));
    json_object_set_new(o, "label", jstr(m->label ? m->label : "tandem"));
    json_object_set_new(o, "model_id", jstr(m->model));
    json_object_set_new(o, "tokenizer_id", jstr(m->model));
    if (m->base_url)
        json_object_set_new(o, "base_url", json_string(m->base_url));
    if (m->endpoint)
        json_object_set_new(o, "endpoint", json_string(m->endpoint));
    if (m->dataset_name)
        json_object_set_new(o, "dataset_name", json_string(m->dataset_name));
    json_object_set_new(o, "num_prompts", json_integer(m->num_prompts));
    json_object_set_new(o, "request_rate",
                        isinf(m->request_rate) ? json_string("inf") : jnum(m->request_rate));
    json_object_set_new(o, "burstiness", jnum(m->burstiness));
    json_object_set_new(o, "max_concurrency",
                        m->max_concurrency > 0 ? json_integer(m->max_concurrency) : json_null());

    json_object_set_new(o, "duration", jnum(s->duration));
    json_object_set_new(o, "completed", json_integer((json_int_t)s->completed));
    json_object_set_new(o, "failed", json_integer((json_int_t)s->failed));
    json_object_set_new(o, "total_input_tokens", json_integer((json_int_t)s->total_input_tokens));
    json_object_set_new(o, "total_output_tokens", json_integer((json_int_t)s->total_output_tokens));
    json_object_set_new(o, "request_throughput", jnum(s->request_throughput));
    json_object_set_new(o, "request_goodput",
                        s->request_goodput >= 0 ? jnum(s->request_goodput) : json_null());
    json_object_set_new(o, "output_throughput", jnum(s->output_throughput));
    json_object_set_new(o, "total_token_throughput", jnum(s->total_token_throughput));
    json_object_set_new(o, "max_concurrent_requests", jnum(s->max_concurrent));

    const char *pm = m->percentile_metrics ? m->percentile_metrics : "ttft,tpot,itl,e2el";
    static const char *const names[] = {"ttft", "tpot", "itl", "e2el"};
    const struct bench_dist *dists[] = {&s->ttft, &s->tpot, &s->itl, &s->e2el};
    for (size_t k = 0; k < 4; k++) {
        size_t nl = strlen(names[k]);
        bool want = false;
        for (const char *p = pm; *p;) {
            while (*p == ',' || *p == ' ')
                p++;
            const char *w = p;
            while (*p && *p != ',' && *p != ' ')
                p++;
            if ((size_t)(p - w) == nl && memcmp(w, names[k], nl) == 0)
                want = true;
        }
        if (want)
            put_metric(o, s, names[k], dists[k]);
    }

    json_object_set_new(o, "cache_hit_ratio",
                        s->cache_hit_ratio >= 0 ? jnum(s->cache_hit_ratio) : json_null());
    json_t *pp = json_object();
    for (size_t i = 0; i < s->n_pods; i++)
        json_object_set_new(pp, s->pods[i].pod, json_integer((json_int_t)s->pods[i].requests));
    json_object_set_new(o, "per_pod", pp);
    json_t *fs = json_object();
    for (size_t i = 0; i < s->n_failed_status; i++) {
        char k[24];
        if (s->failed_by_status[i][0])
            snprintf(k, sizeof k, "%zu", s->failed_by_status[i][0]);
        else
            snprintf(k, sizeof k, "none");
        json_object_set_new(fs, k, json_integer((json_int_t)s->failed_by_status[i][1]));
    }
    json_object_set_new(o, "failed_by_status", fs);
    json_object_set_new(o, "mean_schedule_delay_ms", jnum(s->schedule_delay_mean_ms));
    json_object_set_new(o, "p99_schedule_delay_ms", jnum(s->schedule_delay_p99_ms));

    if (detailed) {
        json_t *in = json_array(), *outl = json_array(), *tt = json_array(), *it = json_array(),
               *e2 = json_array(), *er = json_array(), *po = json_array(), *st = json_array();
        for (size_t i = 0; i < n; i++) {
            const struct bench_record *r = &recs[i];
            json_array_append_new(in, json_integer(r->input_tokens));
            json_array_append_new(outl, json_integer(r->ok ? r->output_tokens : 0));
            json_array_append_new(tt, jnum(r->ttft >= 0 ? r->ttft : 0.0));
            json_t *gaps = json_array();
            for (size_t j = 0; j < r->n_itl; j++)
                json_array_append_new(gaps, jnum(r->itl[j]));
            json_array_append_new(it, gaps);
            json_array_append_new(e2, jnum(r->e2el));
            json_array_append_new(er, bounded_str(r->ok ? "" : r->error, sizeof r->error));
            json_array_append_new(po, bounded_str(r->pod, sizeof r->pod));
            json_array_append_new(st, jnum(r->t_send));
        }
        json_object_set_new(o, "input_lens", in);
        json_object_set_new(o, "output_lens", outl);
        json_object_set_new(o, "ttfts", tt);
        json_object_set_new(o, "itls", it);
        json_object_set_new(o, "e2els", e2);
        json_object_set_new(o, "errors", er);
        json_object_set_new(o, "pods", po);
        json_object_set_new(o, "start_times", st);
    }
    return o;
}

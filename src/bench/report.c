/* bench reports: one self-contained HTML page per set of runs, and `bench compare`.
 *
 * The page is plain HTML with inline CSS and inline SVG: no scripts, no external URLs,
 * so it reads offline and can be mailed around. Every piece of text that came from a
 * user or a server (titles, run names, pod names) goes through html_esc. Charts stay
 * small: CDFs are downsampled to at most 200 points and scatters to 2000 per run.
 *
 * compare reads result JSON files (bench_result_json's, or vllm bench serve's own) and
 * prints the key metrics side by side with ratios against the first file. */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

#define CDF_POINTS 200
#define SCATTER_POINTS 2000

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static const char *color(size_t i)
{
    return palette[i % (sizeof palette / sizeof palette[0])];
}

static void html_esc(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* A run's name, never NULL. */
static const char *run_name(const struct bench_run_view *r, size_t i, char *tmp, size_t len)
{
    if (r->name && *r->name)
        return r->name;
    snprintf(tmp, len, "run %zu", i + 1);
    return tmp;
}

/* ---- axes ----------------------------------------------------------------------------- */

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about 5 ticks over span. */
static double nice_step(double span)
{
    if (!(span > 0) || !isfinite(span))
        return 1;
    double raw = span / 5.0;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return m * mag;
}

static void fmt_tick(char *dst, size_t len, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6)
        dec = 6;
    snprintf(dst, len, "%.*f", dec, v);
}

struct axis {
    double lo, hi, step;
};

static struct axis make_axis(double lo, double hi)
{
    struct axis a;
    if (!isfinite(lo) || !isfinite(hi) || hi <= lo) {
        if (!isfinite(lo))
            lo = 0;
        hi = lo + 1;
    }
    a.step = nice_step(hi - lo);
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
    if (a.hi <= a.lo)
        a.hi = a.lo + a.step;
    return a;
}

/* Plot geometry: the SVG is W x H, the plot area is [PL, W-PR] x [PT, H-PB]. */
enum { W = 760, H = 340, PL = 64, PR = 170, PT = 30, PB = 46 };

static double px(const struct axis *a, double v)
{
    return PL + (v - a->lo) / (a->hi - a->lo) * (W - PL - PR);
}

static double py(const struct axis *a, double v)
{
    return (H - PB) - (v - a->lo) / (a->hi - a->lo) * (H - PT - PB);
}

static void svg_open(FILE *out, const char *title)
{
    fprintf(out,
            "<svg width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\"><title>",
            W, H, W, H);
    html_esc(out, title);
    fprintf(out, "</title><text x=\"%d\" y=\"18\" class=\"t\">", PL);
    html_esc(out, title);
    fputs("</text>\n", out);
}

static void svg_axes(FILE *out, const struct axis *xa, const struct axis *ya, const char *xl,
                     const char *yl, bool x_ticks)
{
    char t[32];
    fprintf(out, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"pa\"/>\n", PL, PT,
            W - PL - PR, H - PT - PB);
    for (double v = ya->lo; v <= ya->hi + ya->step * 1e-6; v += ya->step) {
        double y = py(ya, v);
        fmt_tick(t, sizeof t, v, ya->step);
        fprintf(out,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"g\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"yt\">%s</text>\n",
                PL, y, W - PR, y, PL - 6, y + 4, t);
    }
    if (x_ticks)
        for (double v = xa->lo; v <= xa->hi + xa->step * 1e-6; v += xa->step) {
            double x = px(xa, v);
            fmt_tick(t, sizeof t, v, xa->step);
            fprintf(out,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"g\"/>"
                    "<text x=\"%.1f\" y=\"%d\" class=\"xt\">%s</text>\n",
                    x, PT, x, H - PB, x, H - PB + 16, t);
        }
    fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"xl\">", PL + (W - PL - PR) / 2, H - 8);
    html_esc(out, xl);
    fprintf(out, "</text><text x=\"14\" y=\"%d\" class=\"yl\" transform=\"rotate(-90 14 %d)\">",
            PT + (H - PT - PB) / 2, PT + (H - PT - PB) / 2);
    html_esc(out, yl);
    fputs("</text>\n", out);
}

static void svg_legend(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    char tmp[32];
    for (size_t i = 0; i < n_runs; i++) {
        int y = PT + 4 + (int)i * 18;
        fprintf(out,
                "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"%d\" class=\"lg\">",
                W - PR + 12, y, color(i), W - PR + 30, y + 10);
        html_esc(out, run_name(&runs[i], i, tmp, sizeof tmp));
        fputs("</text>\n", out);
    }
}

static void svg_nodata(FILE *out)
{
    fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"nd\">no data</text>\n", PL + (W - PL - PR) / 2,
            PT + (H - PT - PB) / 2);
}

/* ---- charts --------------------------------------------------------------------------- */

enum metric { M_TTFT, M_ITL, M_E2EL };

/* The sorted values (ms) of one metric over a run's successful requests. */
static double *metric_values(const struct bench_run_view *r, enum metric m, size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->recs[i].ok)
            n += m == M_ITL ? r->recs[i].n_itl : 1;
    double *v = xmalloc((n ? n : 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct bench_record *rec = &r->recs[i];
        if (!rec->ok)
            continue;
        if (m == M_ITL) {
            for (size_t j = 0; j < rec->n_itl; j++)
                if (isfinite(rec->itl[j]))
                    v[k++] = rec->itl[j] * 1000.0;
        } else {
            double x = m == M_TTFT ? rec->ttft : rec->e2el;
            if (isfinite(x) && x >= 0)
                v[k++] = x * 1000.0;
        }
    }
    *n_out = k;
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void chart_cdf(FILE *out, const char *title, enum metric m,
                      const struct bench_run_view *runs, size_t n_runs)
{
    double **vals = xcalloc(n_runs ? n_runs : 1, sizeof *vals);
    size_t *ns = xcalloc(n_runs ? n_runs : 1, sizeof *ns);
    double hi = -INFINITY;
    for (size_t r = 0; r < n_runs; r++) {
        vals[r] = metric_values(&runs[r], m, &ns[r]);
        qsort(vals[r], ns[r], sizeof(double), cmp_double);
        if (ns[r] && vals[r][ns[r] - 1] > hi)
            hi = vals[r][ns[r] - 1];
    }
    svg_open(out, title);
    struct axis xa = make_axis(0, isfinite(hi) && hi > 0 ? hi : 1);
    struct axis ya = {0, 1, 0.2};
    svg_axes(out, &xa, &ya, "latency (ms)", "fraction of requests", true);
    if (!isfinite(hi))
        svg_nodata(out);
    for (size_t r = 0; r < n_runs; r++) {
        size_t n = ns[r];
        if (!n)
            continue;
        size_t pts = n < CDF_POINTS ? n : CDF_POINTS;
        fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"",
                color(r));
        if (n == 1) {
            fprintf(out, "%.1f,%.1f ", px(&xa, vals[r][0]), py(&ya, 0));
        }
        for (size_t k = 0; k < pts; k++) {
            size_t i =
                pts == 1 ? 0 : (size_t)llround((double)k * (double)(n - 1) / (double)(pts - 1));
            fprintf(out, "%.1f,%.1f ", px(&xa, vals[r][i]), py(&ya, (double)(i + 1) / (double)n));
        }
        fputs("\"/>\n", out);
    }
    svg_legend(out, runs, n_runs);
    fputs("</svg>\n", out);
    for (size_t r = 0; r < n_runs; r++)
        free(vals[r]);
    free(vals);
    free(ns);
}

static void chart_ttft_time(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    double xhi = -INFINITY, xlo = INFINITY, yhi = -INFINITY;
    for (size_t r = 0; r < n_runs; r++)
        for (size_t i = 0; i < runs[r].n; i++) {
            const struct bench_record *rec = &runs[r].recs[i];
            if (!rec->ok || !(rec->ttft >= 0) || !isfinite(rec->ttft) || !isfinite(rec->t_send))
                continue;
            if (rec->t_send > xhi)
                xhi = rec->t_send;
            if (rec->t_send < xlo)
                xlo = rec->t_send;
            if (rec->ttft * 1000.0 > yhi)
                yhi = rec->ttft * 1000.0;
        }
    svg_open(out, "TTFT over time");
    bool any = isfinite(xhi);
    struct axis xa = make_axis(any && xlo < 0 ? xlo : 0, any && xhi > 0 ? xhi : 1);
    struct axis ya = make_axis(0, any && yhi > 0 ? yhi : 1);
    svg_axes(out, &xa, &ya, "request sent at (s)", "TTFT (ms)", true);
    if (!any)
        svg_nodata(out);
    for (size_t r = 0; r < n_runs; r++) {
        size_t n = runs[r].n;
        size_t stride = n > SCATTER_POINTS ? (n + SCATTER_POINTS - 1) / SCATTER_POINTS : 1;
        fprintf(out, "<g fill=\"%s\" fill-opacity=\"0.6\">", color(r));
        for (size_t i = 0; i < n; i += stride) {
            const struct bench_record *rec = &runs[r].recs[i];
            if (!rec->ok || !(rec->ttft >= 0) || !isfinite(rec->ttft) || !isfinite(rec->t_send))
                continue;
            fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\"/>", px(&xa, rec->t_send),
                    py(&ya, rec->ttft * 1000.0));
        }
        fputs("</g>\n", out);
    }
    svg_legend(out, runs, n_runs);
    fputs("</svg>\n", out);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void chart_pods(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    size_t total = 0;
    for (size_t r = 0; r < n_runs; r++)
        total += runs[r].stats ? runs[r].stats->n_pods : 0;
    if (!total) {
        fputs("<p class=\"note\">No per-pod data (no x-inference-pod response header).</p>\n", out);
        return;
    }
    /* The union of pod names, sorted. */
    const char **names = xmalloc(total * sizeof *names);
    size_t n = 0;
    size_t maxc = 0;
    for (size_t r = 0; r < n_runs; r++)
        for (size_t i = 0; runs[r].stats && i < runs[r].stats->n_pods; i++) {
            names[n++] = runs[r].stats->pods[i].pod;
            if (runs[r].stats->pods[i].requests > maxc)
                maxc = runs[r].stats->pods[i].requests;
        }
    qsort(names, n, sizeof *names, cmp_str_ptr);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];

    svg_open(out, "Requests per pod");
    struct axis xa = {0, 1, 1};
    struct axis ya = make_axis(0, maxc ? (double)maxc : 1);
    svg_axes(out, &xa, &ya, "pod", "requests", false);
    double gw = (double)(W - PL - PR) / (double)u;
    double bw = gw * 0.8 / (double)(n_runs ? n_runs : 1);
    for (size_t p = 0; p < u; p++) {
        double gx = PL + gw * (double)p + gw * 0.1;
        for (size_t r = 0; r < n_runs; r++) {
            const struct bench_stats *s = runs[r].stats;
            size_t c = 0;
            for (size_t i = 0; s && i < s->n_pods; i++)
                if (strcmp(s->pods[i].pod, names[p]) == 0)
                    c = s->pods[i].requests;
            double y = py(&ya, (double)c);
            fprintf(out,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"%s\"><title>",
                    gx + bw * (double)r, y, bw, (H - PB) - y, color(r));
            html_esc(out, names[p]);
            fprintf(out, ": %zu</title></rect>", c);
        }
        double lx = PL + gw * ((double)p + 0.5);
        if (u > 6) /* many pods: slant the names so they do not overlap */
            fprintf(out,
                    "<text x=\"%.1f\" y=\"%d\" class=\"yt\" transform=\"rotate(-30 %.1f %d)\">", lx,
                    H - PB + 12, lx, H - PB + 12);
        else
            fprintf(out, "<text x=\"%.1f\" y=\"%d\" class=\"xt\">", lx, H - PB + 16);
        html_esc(out, names[p]);
        fputs("</text>\n", out);
    }
    svg_legend(out, runs, n_runs);
    fputs("</svg>\n", out);
    free(names);
}


/* ---- over time: p90 latencies per window, sampled metrics ------------------------------ */

/* One line of a time chart: points in time order, NaN = a gap. */
struct tline {
    char label[160];
    size_t color;
    const double *x;
    double *y;
    size_t n;
    bool dashed;
};

static void chart_lines(FILE *out, const char *title, const char *yl, const struct tline *ls,
                        size_t n_lines)
{
    double xlo = INFINITY, xhi = -INFINITY, yhi = -INFINITY;
    for (size_t l = 0; l < n_lines; l++)
        for (size_t i = 0; i < ls[l].n; i++) {
            if (!isfinite(ls[l].y[i]) || !isfinite(ls[l].x[i]))
                continue;
            xlo = fmin(xlo, ls[l].x[i]);
            xhi = fmax(xhi, ls[l].x[i]);
            yhi = fmax(yhi, ls[l].y[i]);
        }
    svg_open(out, title);
    bool any = isfinite(xhi);
    struct axis xa = make_axis(any ? fmin(xlo, 0) : 0, any && xhi > 0 ? xhi : 1);
    struct axis ya = make_axis(0, any && yhi > 0 ? yhi : 1);
    svg_axes(out, &xa, &ya, "time since the start (s)", yl, true);
    if (!any)
        svg_nodata(out);
    for (size_t l = 0; l < n_lines; l++) {
        fprintf(out, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s d=\"",
                color(ls[l].color), ls[l].dashed ? " stroke-dasharray=\"5 3\"" : "");
        bool pen = false;
        for (size_t i = 0; i < ls[l].n; i++) {
            if (!isfinite(ls[l].y[i]) || !isfinite(ls[l].x[i])) {
                pen = false;
                continue;
            }
            fprintf(out, "%c%.1f %.1f", pen ? 'L' : 'M', px(&xa, ls[l].x[i]),
                    py(&ya, ls[l].y[i]));
            pen = true;
        }
        fputs("\"/>\n", out);
        int y = PT + 4 + (int)l * 16;
        if (l < 16) {
            fprintf(out,
                    "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                    "<text x=\"%d\" y=\"%d\" class=\"lg\">",
                    W - PR + 6, y + 4, color(ls[l].color), W - PR + 22, y + 8);
            html_esc(out, ls[l].label);
            fputs("</text>\n", out);
        }
    }
    fputs("</svg>\n", out);
}

static double p90_of(double *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)ceil(0.9 * (double)n) - 1];
}

/* p90 TTFT and p90 ITL of the requests sent in each window (40 windows over the run). */
static void chart_p90_time(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    enum { NW = 40 };
    double end = 0;
    for (size_t r = 0; r < n_runs; r++)
        for (size_t i = 0; i < runs[r].n; i++)
            if (isfinite(runs[r].recs[i].t_send))
                end = fmax(end, runs[r].recs[i].t_send);
    double w = end > 0 ? end / NW : 1;
    struct tline *ls = xcalloc(2 * n_runs + 1, sizeof *ls);
    double *xs = xcalloc(NW, sizeof *xs);
    for (size_t k = 0; k < NW; k++)
        xs[k] = (k + 0.5) * w;
    char tmp[32];
    for (size_t r = 0; r < n_runs; r++) {
        struct tline *tt = &ls[2 * r], *it = &ls[2 * r + 1];
        snprintf(tt->label, sizeof tt->label, "%s TTFT", run_name(&runs[r], r, tmp, sizeof tmp));
        snprintf(it->label, sizeof it->label, "%s ITL", run_name(&runs[r], r, tmp, sizeof tmp));
        tt->color = it->color = r;
        it->dashed = true;
        tt->x = it->x = xs;
        tt->n = it->n = NW;
        tt->y = xcalloc(NW, sizeof *tt->y);
        it->y = xcalloc(NW, sizeof *it->y);
        for (size_t k = 0; k < NW; k++) {
            double lo = k * w, hi = (k + 1) * w;
            size_t nt = 0, ni = 0, ci = 0;
            for (size_t i = 0; i < runs[r].n; i++) {
                const struct bench_record *rec = &runs[r].recs[i];
                if (rec->ok && rec->t_send >= lo && (rec->t_send < hi || k == NW - 1))
                    ci += rec->n_itl, nt++;
            }
            double *tv = xcalloc(nt + 1, sizeof *tv), *iv = xcalloc(ci + 1, sizeof *iv);
            nt = 0;
            for (size_t i = 0; i < runs[r].n; i++) {
                const struct bench_record *rec = &runs[r].recs[i];
                if (!rec->ok || rec->t_send < lo || (rec->t_send >= hi && k != NW - 1))
                    continue;
                if (rec->ttft >= 0 && isfinite(rec->ttft))
                    tv[nt++] = rec->ttft * 1000.0;
                for (size_t g = 0; g < rec->n_itl; g++)
                    iv[ni++] = rec->itl[g] * 1000.0;
            }
            tt->y[k] = p90_of(tv, nt);
            it->y[k] = p90_of(iv, ni);
            free(tv);
            free(iv);
        }
    }
    chart_lines(out, "p90 TTFT (solid) and p90 ITL (dashed) over time", "ms", ls, 2 * n_runs);
    for (size_t l = 0; l < 2 * n_runs; l++)
        free(ls[l].y);
    free(ls);
    free(xs);
}

/* One chart per sampled metric name: a line per series (and run). */
static void chart_timelines(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    char metrics[BENCH_TIMELINE_MAX_SERIES][128];
    size_t n_metrics = 0;
    for (size_t r = 0; r < n_runs; r++) {
        const struct bench_timeline *tl = runs[r].timeline;
        for (size_t i = 0; tl && i < tl->n_series; i++) {
            char m[128];
            snprintf(m, sizeof m, "%.*s", (int)strcspn(tl->names[i], "{"), tl->names[i]);
            bool seen = false;
            for (size_t k = 0; k < n_metrics && !seen; k++)
                seen = !strcmp(metrics[k], m);
            if (!seen && n_metrics < BENCH_TIMELINE_MAX_SERIES)
                snprintf(metrics[n_metrics++], sizeof metrics[0], "%s", m);
        }
    }
    char tmp[32];
    for (size_t k = 0; k < n_metrics; k++) {
        struct tline ls[BENCH_TIMELINE_MAX_SERIES];
        size_t n = 0;
        for (size_t r = 0; r < n_runs; r++) {
            const struct bench_timeline *tl = runs[r].timeline;
            for (size_t i = 0; tl && i < tl->n_series && n < BENCH_TIMELINE_MAX_SERIES; i++) {
                size_t ml = strcspn(tl->names[i], "{");
                if (ml != strlen(metrics[k]) || strncmp(tl->names[i], metrics[k], ml))
                    continue;
                struct tline *l = &ls[n++];
                memset(l, 0, sizeof *l);
                snprintf(l->label, sizeof l->label, "%s %s",
                         run_name(&runs[r], r, tmp, sizeof tmp), tl->names[i] + ml);
                l->color = n - 1;
                l->x = tl->t;
                l->y = tl->v[i];
                l->n = tl->n_t;
                l->dashed = r % 2 == 1;
            }
        }
        chart_lines(out, metrics[k], metrics[k], ls, n);
    }
}

/* ---- summary table -------------------------------------------------------------------- */

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

typedef void (*cell_fn)(FILE *out, const struct bench_stats *s, const void *arg);

static void row(FILE *out, const char *label, const struct bench_run_view *runs, size_t n_runs,
                cell_fn fn, const void *arg)
{
    fputs("<tr><th>", out);
    html_esc(out, label);
    fputs("</th>", out);
    for (size_t r = 0; r < n_runs; r++) {
        fputs("<td>", out);
        if (runs[r].stats)
            fn(out, runs[r].stats, arg);
        else
            fputs("-", out);
        fputs("</td>", out);
    }
    fputs("</tr>\n", out);
}

/* Field cells: arg is an offsetof into struct bench_stats. */
static void cell_size(FILE *out, const struct bench_stats *s, const void *arg)
{
    fprintf(out, "%zu", *(const size_t *)((const char *)s + (size_t)(uintptr_t)arg));
}

static void cell_u64(FILE *out, const struct bench_stats *s, const void *arg)
{
    fprintf(out, "%llu",
            (unsigned long long)*(const uint64_t *)((const char *)s + (size_t)(uintptr_t)arg));
}

static void cell_dbl(FILE *out, const struct bench_stats *s, const void *arg)
{
    fprintf(out, "%.2f", *(const double *)((const char *)s + (size_t)(uintptr_t)arg));
}

static void cell_goodput(FILE *out, const struct bench_stats *s, const void *arg)
{
    if (s->request_goodput >= 0)
        fprintf(out, "%.2f", s->request_goodput);
    else
        fputs("-", out);
}

static void cell_cache(FILE *out, const struct bench_stats *s, const void *arg)
{
    if (s->cache_hit_ratio >= 0)
        fprintf(out, "%.4f", s->cache_hit_ratio);
    else
        fputs("-", out);
}

/* Distribution cells: which = 0 mean, 1 median, 2 std, 3+ a percentile value. */
struct dist_cell {
    size_t off; /* offsetof the bench_dist */
    int which;
    double pct;
};

static void cell_dist(FILE *out, const struct bench_stats *s, const void *arg)
{
    const struct dist_cell *c = arg;
    const struct bench_dist *d = (const struct bench_dist *)((const char *)s + c->off);
    if (c->which == 0)
        fprintf(out, "%.2f", d->mean);
    else if (c->which == 1)
        fprintf(out, "%.2f", d->median);
    else {
        for (size_t i = 0; i < s->n_pcts && i < 8; i++)
            if (s->pcts[i] == c->pct) {
                fprintf(out, "%.2f", d->pct[i]);
                return;
            }
        fputs("-", out);
    }
}

#define OFF(f) ((const void *)(uintptr_t)offsetof(struct bench_stats, f))

static void summary_table(FILE *out, const struct bench_run_view *runs, size_t n_runs)
{
    char tmp[32];
    fputs("<table><tr><th>metric</th>", out);
    for (size_t r = 0; r < n_runs; r++) {
        fprintf(out, "<th class=\"run\"><span class=\"sw\" style=\"background:%s\"></span>",
                color(r));
        html_esc(out, run_name(&runs[r], r, tmp, sizeof tmp));
        fputs("</th>", out);
    }
    fputs("</tr>\n", out);
    row(out, "Successful requests", runs, n_runs, cell_size, OFF(completed));
    row(out, "Failed requests", runs, n_runs, cell_size, OFF(failed));
    row(out, "Benchmark duration (s)", runs, n_runs, cell_dbl, OFF(duration));
    row(out, "Total input tokens", runs, n_runs, cell_u64, OFF(total_input_tokens));
    row(out, "Total generated tokens", runs, n_runs, cell_u64, OFF(total_output_tokens));
    row(out, "Request throughput (req/s)", runs, n_runs, cell_dbl, OFF(request_throughput));
    bool any_goodput = false;
    for (size_t r = 0; r < n_runs; r++)
        if (runs[r].stats && runs[r].stats->request_goodput >= 0)
            any_goodput = true;
    if (any_goodput)
        row(out, "Request goodput (req/s)", runs, n_runs, cell_goodput, NULL);
    row(out, "Output token throughput (tok/s)", runs, n_runs, cell_dbl, OFF(output_throughput));
    row(out, "Total token throughput (tok/s)", runs, n_runs, cell_dbl, OFF(total_token_throughput));
    row(out, "Peak concurrent requests", runs, n_runs, cell_dbl, OFF(max_concurrent));

    /* Percentile rows follow the first run that has stats. */
    const struct bench_stats *ref = NULL;
    for (size_t r = 0; r < n_runs && !ref; r++)
        ref = runs[r].stats;
    static const char *const names[] = {"TTFT", "TPOT", "ITL", "E2EL"};
    const size_t offs[] = {offsetof(struct bench_stats, ttft), offsetof(struct bench_stats, tpot),
                           offsetof(struct bench_stats, itl), offsetof(struct bench_stats, e2el)};
    for (size_t k = 0; k < 4; k++) {
        char label[64], w[32];
        struct dist_cell c = {offs[k], 0, 0};
        snprintf(label, sizeof label, "Mean %s (ms)", names[k]);
        row(out, label, runs, n_runs, cell_dist, &c);
        c.which = 1;
        snprintf(label, sizeof label, "Median %s (ms)", names[k]);
        row(out, label, runs, n_runs, cell_dist, &c);
        for (size_t i = 0; ref && i < ref->n_pcts && i < 8; i++) {
            c.which = 3;
            c.pct = ref->pcts[i];
            pct_word(w, sizeof w, ref->pcts[i]);
            snprintf(label, sizeof label, "P%s %s (ms)", w, names[k]);
            row(out, label, runs, n_runs, cell_dist, &c);
        }
    }
    row(out, "Prefix cache hit ratio", runs, n_runs, cell_cache, NULL);
    row(out, "Schedule delay mean (ms)", runs, n_runs, cell_dbl, OFF(schedule_delay_mean_ms));
    row(out, "Schedule delay p99 (ms)", runs, n_runs, cell_dbl, OFF(schedule_delay_p99_ms));
    fputs("</table>\n", out);
}

static const char css[] =
    "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;"
    "margin:24px;color:#222;max-width:1000px}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
    "table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ddd;padding:4px 10px;text-align:right}"
    "th:first-child{text-align:left;font-weight:normal}tr:nth-child(even){background:#f7f7f7}"
    "th.run{font-weight:bold;text-align:center}"
    ".sw{display:inline-block;width:10px;height:10px;margin-right:6px}"
    "svg{display:block;margin:8px 0;font-size:11px}"
    ".pa{fill:none;stroke:#999}.g{stroke:#eee}"
    ".t{font-size:14px;font-weight:bold}"
    ".xt{text-anchor:middle}.yt{text-anchor:end}.xl{text-anchor:middle}.yl{text-anchor:middle}"
    ".nd{text-anchor:middle;fill:#999;font-size:14px}.lg{font-size:12px}"
    ".note{color:#666}";

bool bench_report_html(FILE *out, const char *title, const struct bench_run_view *runs,
                       size_t n_runs)
{
    if (!title || !*title)
        title = "tandem bench report";
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", out);
    html_esc(out, title);
    fprintf(out, "</title>\n<style>%s</style>\n</head><body>\n<h1>", css);
    html_esc(out, title);
    fputs("</h1>\n<h2>Summary</h2>\n", out);
    summary_table(out, runs, n_runs);
    fputs("<h2>Latency distributions</h2>\n", out);
    chart_cdf(out, "CDF of TTFT", M_TTFT, runs, n_runs);
    chart_cdf(out, "CDF of ITL", M_ITL, runs, n_runs);
    chart_cdf(out, "CDF of E2EL", M_E2EL, runs, n_runs);
    fputs("<h2>TTFT over time</h2>\n", out);
    chart_ttft_time(out, runs, n_runs);
    chart_p90_time(out, runs, n_runs);
    bool timelines = false;
    for (size_t r = 0; r < n_runs; r++)
        timelines = timelines || (runs[r].timeline && runs[r].timeline->n_series);
    if (timelines) {
        fputs("<h2>Metrics over time</h2>\n", out);
        chart_timelines(out, runs, n_runs);
    }
    fputs("<h2>Per-pod distribution</h2>\n", out);
    chart_pods(out, runs, n_runs);
    fputs("<p class=\"note\">Generated by tandem bench. Metrics follow vllm bench serve's "
          "definitions.</p>\n</body></html>\n",
          out);
    fflush(out);
    return !ferror(out);
}

/* ---- compare -------------------------------------------------------------------------- */

static void compare_usage(FILE *out)
{
    fputs("usage: tandem bench compare [--html REPORT.html] RESULT.json [RESULT.json ...]\n"
          "\n"
          "Prints benchmark results (written by tandem bench --save-result or by vllm bench\n"
          "serve --save-result) side by side: completed, failed, duration, throughput,\n"
          "mean/median/percentile TTFT, TPOT, ITL, E2EL, prefix cache hit ratio, with the\n"
          "ratio of each later run to the first (e.g. 0.52x).\n"
          "--html writes one report with every run's charts; runs saved with\n"
          "--save-detailed carry the per-request data the charts need.\n",
          out);
}

struct cmp_run {
    const char *path;
    json_t *j;
    char name[96];
};

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The metric as a double; false when absent or not a number. */
static bool get_num(const json_t *o, const char *key, double *v)
{
    const json_t *x = json_object_get(o, key);
    if (json_is_integer(x)) {
        *v = (double)json_integer_value(x);
        return true;
    }
    if (json_is_real(x)) {
        *v = json_real_value(x);
        return true;
    }
    return false;
}

static void fmt_val(char *dst, size_t len, const json_t *o, const char *key)
{
    const json_t *x = json_object_get(o, key);
    if (json_is_integer(x))
        snprintf(dst, len, "%lld", (long long)json_integer_value(x));
    else if (json_is_real(x))
        snprintf(dst, len, strcmp(key, "cache_hit_ratio") == 0 ? "%.4f" : "%.2f",
                 json_real_value(x));
    else
        snprintf(dst, len, "-");
}

/* True when key is a per-metric key compare shows: mean_X_ms, median_X_ms or pNN_X_ms. */
static bool metric_key(const char *key, const char *metric)
{
    size_t kl = strlen(key), ml = strlen(metric);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "_%s_ms", metric);
    size_t sl = strlen(suffix);
    (void)ml;
    if (kl <= sl || strcmp(key + kl - sl, suffix) != 0)
        return false;
    size_t pl = kl - sl;
    if (pl == 4 && strncmp(key, "mean", 4) == 0)
        return true;
    if (pl == 6 && strncmp(key, "median", 6) == 0)
        return true;
    if (key[0] != 'p' || pl < 2)
        return false;
    for (size_t i = 1; i < pl; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || key[i] == '.'))
            return false;
    return true;
}

/* Records rebuilt from a result's per-request arrays (--save-detailed). */
static size_t records_from_json(const json_t *j, struct bench_record **out)
{
    const json_t *tt = json_object_get(j, "ttfts"), *e2 = json_object_get(j, "e2els");
    const json_t *it = json_object_get(j, "itls"), *er = json_object_get(j, "errors");
    const json_t *po = json_object_get(j, "pods"), *st = json_object_get(j, "start_times");
    const json_t *in = json_object_get(j, "input_lens"), *ol = json_object_get(j, "output_lens");
    size_t n = json_array_size(tt);
    *out = NULL;
    if (!n || json_array_size(e2) != n || json_array_size(er) != n || json_array_size(st) != n)
        return 0;
    struct bench_record *r = xcalloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        const char *e = json_string_value(json_array_get(er, i));
        r[i].ok = !e || !*e;
        if (!r[i].ok)
            snprintf(r[i].error, sizeof r[i].error, "%s", e);
        r[i].status = r[i].ok ? 200 : 0;
        r[i].t_send = r[i].t_sched = json_number_value(json_array_get(st, i));
        r[i].ttft = json_number_value(json_array_get(tt, i));
        r[i].e2el = json_number_value(json_array_get(e2, i));
        r[i].input_tokens = (uint32_t)json_integer_value(json_array_get(in, i));
        r[i].output_tokens = (uint32_t)json_integer_value(json_array_get(ol, i));
        const char *pod = json_string_value(json_array_get(po, i));
        snprintf(r[i].pod, sizeof r[i].pod, "%s", pod ? pod : "");
        const json_t *gaps = json_array_get(it, i);
        r[i].n_itl = json_array_size(gaps);
        if (r[i].n_itl) {
            r[i].itl = xmalloc(r[i].n_itl * sizeof *r[i].itl);
            for (size_t k = 0; k < r[i].n_itl; k++)
                r[i].itl[k] = json_number_value(json_array_get(gaps, k));
        }
    }
    *out = r;
    return n;
}

/* compare --html: one report with every run that has per-request data. */
static bool compare_html(const char *path, const struct cmp_run *runs, int n_runs)
{
    struct bench_run_view *views = xcalloc((size_t)n_runs, sizeof *views);
    struct bench_stats *stats = xcalloc((size_t)n_runs, sizeof *stats);
    struct bench_record **recs = xcalloc((size_t)n_runs, sizeof *recs);
    struct bench_timeline *tls = xcalloc((size_t)n_runs, sizeof *tls);
    size_t n_views = 0;
    static const double pcts[] = {90, 99};
    struct bench_slo slo = {0};
    for (int i = 0; i < n_runs; i++) {
        size_t n = records_from_json(runs[i].j, &recs[i]);
        if (!n) {
            fprintf(stderr, "tandem bench compare: %s has no per-request data "
                            "(--save-detailed); left out of the report\n", runs[i].path);
            continue;
        }
        size_t v = n_views++;
        bench_stats_compute(recs[i], n, -1, &slo, pcts, 2, &stats[v]);
        views[v] = (struct bench_run_view){runs[i].name, &stats[v], recs[i], n, NULL};
        if (bench_timeline_from_json(json_object_get(runs[i].j, "timeline"), &tls[v]))
            views[v].timeline = &tls[v];
    }
    FILE *f = fopen(path, "w");
    bool ok = f && bench_report_html(f, "tandem bench compare", views, n_views);
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "tandem bench compare: cannot write %s: %s\n", path, strerror(errno));
    else
        printf("Report written to %s\n", path);
    for (size_t v = 0; v < n_views; v++) {
        bench_stats_free(&stats[v]);
        bench_timeline_free(&tls[v]);
    }
    free(tls);
    for (int i = 0; i < n_runs; i++) {
        for (size_t k = 0; recs[i] && k < json_array_size(json_object_get(runs[i].j, "ttfts"));
             k++)
            bench_record_free(&recs[i][k]);
        free(recs[i]);
    }
    free(recs);
    free(stats);
    free(views);
    return ok;
}

int bench_compare_main(int argc, char **argv)
{
    /* Tolerate being handed the subcommand word itself. */
    if (argc > 0 && strcmp(argv[0], "compare") == 0) {
        FILE *f = fopen("compare", "r");
        if (f)
            fclose(f);
        else {
            argc--;
            argv++;
        }
    }
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            compare_usage(stdout);
            return 0;
        }
    const char *html = NULL;
    if (argc >= 2 && strcmp(argv[0], "--html") == 0) {
        html = argv[1];
        argc -= 2;
        argv += 2;
    }
    if (argc < 1) {
        fputs("tandem bench compare: needs at least one result file\n", stderr);
        compare_usage(stderr);
        return 2;
    }
    struct cmp_run *runs = xcalloc((size_t)argc, sizeof *runs);
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        runs[i].path = argv[i];
        json_error_t je;
        runs[i].j = json_load_file(argv[i], 0, &je);
        if (!runs[i].j) {
            FILE *f = fopen(argv[i], "r");
            if (!f)
                fprintf(stderr, "tandem bench compare: cannot read %s: %s\n", argv[i],
                        strerror(errno));
            else {
                fclose(f);
                fprintf(stderr,
                        "tandem bench compare: cannot read %s: invalid JSON at line %d "
                        "column %d: %s\n",
                        argv[i], je.line, je.column, je.text);
            }
            rc = 2;
            goto done;
        }
        if (!json_is_object(runs[i].j) || !json_object_get(runs[i].j, "duration")) {
            fprintf(stderr,
                    "tandem bench compare: %s: not a tandem/vllm bench result (no 'duration')\n",
                    argv[i]);
            rc = 2;
            goto done;
        }
    }
    /* Column names: labels, unless missing or repeated, then file names. */
    bool use_labels = true;
    for (int i = 0; i < argc && use_labels; i++) {
        const char *l = json_string_value(json_object_get(runs[i].j, "label"));
        if (!l || !*l)
            use_labels = false;
        for (int k = 0; k < i && l && use_labels; k++)
            if (strcmp(l, json_string_value(json_object_get(runs[k].j, "label"))) == 0)
                use_labels = false;
    }
    for (int i = 0; i < argc; i++) {
        const char *l = use_labels ? json_string_value(json_object_get(runs[i].j, "label"))
                                   : base_name(runs[i].path);
        snprintf(runs[i].name, sizeof runs[i].name, "%s", l);
    }

    /* Rows: the fixed top metrics, then per-metric keys in the order the files have them
     * (the union, first file first). */
    const char *rows[128];
    size_t n_rows = 0;
    static const char *const top[] = {"completed",
                                      "failed",
                                      "duration",
                                      "request_throughput",
                                      "request_goodput",
                                      "output_throughput",
                                      "total_token_throughput"};
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++) {
        bool any = false;
        for (int i = 0; i < argc; i++)
            if (json_is_number(json_object_get(runs[i].j, top[k])))
                any = true;
        if (any)
            rows[n_rows++] = top[k];
    }
    static const char *const metrics[] = {"ttft", "tpot", "itl", "e2el"};
    for (size_t m = 0; m < 4; m++)
        for (int i = 0; i < argc; i++) {
            const char *key;
            json_t *v;
            json_object_foreach(runs[i].j, key, v)
            {
                if (!json_is_number(v) || !metric_key(key, metrics[m]) || n_rows >= 127)
                    continue;
                bool seen = false;
                for (size_t r = 0; r < n_rows && !seen; r++)
                    seen = strcmp(rows[r], key) == 0;
                if (!seen)
                    rows[n_rows++] = key;
            }
        }
    for (int i = 0; i < argc; i++)
        if (json_is_number(json_object_get(runs[i].j, "cache_hit_ratio"))) {
            rows[n_rows++] = "cache_hit_ratio";
            break;
        }

    /* Widths. */
    int kw = 24;
    for (size_t r = 0; r < n_rows; r++)
        if ((int)strlen(rows[r]) + 2 > kw)
            kw = (int)strlen(rows[r]) + 2;
    int *cw = xcalloc((size_t)argc, sizeof *cw);
    for (int i = 0; i < argc; i++) {
        cw[i] = (int)strlen(runs[i].name) + 2;
        if (cw[i] < 12)
            cw[i] = 12;
    }
    printf("%-*s", kw, "metric");
    for (int i = 0; i < argc; i++) {
        printf("%*s", cw[i], runs[i].name);
        if (i > 0)
            printf("%10s", "vs first");
    }
    printf("\n");
    for (size_t r = 0; r < n_rows; r++) {
        printf("%-*s", kw, rows[r]);
        double base = 0;
        bool have_base = get_num(runs[0].j, rows[r], &base);
        for (int i = 0; i < argc; i++) {
            char v[48];
            fmt_val(v, sizeof v, runs[i].j, rows[r]);
            printf("%*s", cw[i], v);
            if (i > 0) {
                double x;
                char ratio[32] = "-";
                if (have_base && base != 0 && get_num(runs[i].j, rows[r], &x))
                    snprintf(ratio, sizeof ratio, "%.2fx", x / base);
                printf("%10s", ratio);
            }
        }
        printf("\n");
    }
    fflush(stdout);
    free(cw);
    if (html && !compare_html(html, runs, argc))
        rc = 2;
done:
    for (int i = 0; i < argc; i++)
        json_decref(runs[i].j);
    free(runs);
    return rc;
}

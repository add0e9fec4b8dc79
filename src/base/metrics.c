/* Prometheus registry and text exposition (format 0.0.4).
 *
 * Families and series live in append-only singly linked lists. Appends happen under the
 * registry mutex and publish the new node with a release store; readers (series lookup,
 * render) walk the lists with acquire loads and never take the lock, so a scrape never
 * blocks a hot path and a hot path never blocks a scrape. Nothing is removed before
 * metrics_registry_free, which is why handed-out series pointers stay valid.
 *
 * Values are doubles stored as their bit pattern in an atomic uint64: set is a plain
 * store, add is a compare-exchange loop. A histogram keeps one non-cumulative count per
 * bucket plus one for +Inf; render accumulates them, and _count is that same total, so
 * +Inf and _count always agree within one scrape even while observations race in. */
#include "base/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

struct metrics_series {
    _Atomic(struct metrics_series *) next;
    struct metrics_family *family;
    char **label_values;         /* family->n_labels strings, owned */
    _Atomic uint64_t value_bits; /* counter/gauge value, histogram sum */
    _Atomic uint64_t counts[];   /* histogram only: n_buckets + 1 (last is +Inf) */
};

struct metrics_family {
    _Atomic(struct metrics_family *) next;
    struct metrics_registry *registry;
    enum metrics_type type;
    char *name;
    char *help; /* may be NULL: no HELP line */
    char **label_names;
    size_t n_labels;
    double *buckets;
    size_t n_buckets;
    _Atomic(struct metrics_series *) series_head;
    struct metrics_series *series_tail; /* under registry->lock */
};

struct collect_hook {
    metrics_collect_fn fn;
    void *ctx;
};

struct metrics_registry {
    pthread_mutex_t lock;
    _Atomic(struct metrics_family *) families_head;
    struct metrics_family *families_tail; /* under lock */
    struct collect_hook *hooks;           /* under lock */
    size_t n_hooks;
};

/* vLLM v1's bucket bounds (vllm/v1/metrics/loggers.py); scrapers and dashboards built
 * for vLLM compute quantiles over exactly these. */
const double metrics_buckets_ttft[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                       0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                       20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const size_t metrics_buckets_ttft_n = sizeof metrics_buckets_ttft / sizeof(double);

const double metrics_buckets_itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                      0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const size_t metrics_buckets_itl_n = sizeof metrics_buckets_itl / sizeof(double);

const double metrics_buckets_request_latency[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                                  5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                                  60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const size_t metrics_buckets_request_latency_n =
    sizeof metrics_buckets_request_latency / sizeof(double);

size_t metrics_buckets_1_2_5(double max, double *out, size_t cap)
{
    static const double mantissa[] = {1, 2, 5};
    size_t n = 0;
    /* Powers of ten are exact in a double up to 1e22, far past any token count. */
    for (double scale = 1; n < cap && !isinf(scale); scale *= 10) {
        for (size_t i = 0; i < 3; i++) {
            double v = mantissa[i] * scale;
            if (!(v <= max) || n == cap)
                return n;
            out[n++] = v;
        }
    }
    return n;
}

__attribute__((noreturn, format(printf, 1, 2))) static void misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tandem: metrics misuse: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static uint64_t bits_of(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double double_of(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, bits_of(double_of(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

struct metrics_registry *metrics_registry_new(void)
{
    struct metrics_registry *r = xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    atomic_init(&r->families_head, NULL);
    return r;
}

static void series_free(struct metrics_series *s, size_t n_labels)
{
    for (size_t i = 0; i < n_labels; i++)
        free(s->label_values[i]);
    free(s->label_values);
    free(s);
}

void metrics_registry_free(struct metrics_registry *r)
{
    if (!r)
        return;
    struct metrics_family *f = atomic_load(&r->families_head);
    while (f) {
        struct metrics_family *fnext = atomic_load(&f->next);
        struct metrics_series *s = atomic_load(&f->series_head);
        while (s) {
            struct metrics_series *snext = atomic_load(&s->next);
            series_free(s, f->n_labels);
            s = snext;
        }
        for (size_t i = 0; i < f->n_labels; i++)
            free(f->label_names[i]);
        free(f->label_names);
        free(f->buckets);
        free(f->name);
        free(f->help);
        free(f);
        f = fnext;
    }
    free(r->hooks);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static bool valid_name(const char *s, bool allow_colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (allow_colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static const char *type_text(enum metrics_type t)
{
    switch (t) {
    case METRICS_COUNTER:
        return "counter";
    case METRICS_GAUGE:
        return "gauge";
    case METRICS_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/* Called with r->lock held. */
static struct metrics_series *series_create(struct metrics_family *f,
                                            const char *const *label_values)
{
    size_t n_counts = f->type == METRICS_HISTOGRAM ? f->n_buckets + 1 : 0;
    struct metrics_series *s = xcalloc(1, sizeof *s + n_counts * sizeof(_Atomic uint64_t));
    atomic_init(&s->next, NULL);
    s->family = f;
    s->label_values = xcalloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
    for (size_t i = 0; i < f->n_labels; i++)
        s->label_values[i] = xstrdup(label_values[i]);
    atomic_init(&s->value_bits, bits_of(0.0));
    for (size_t i = 0; i < n_counts; i++)
        atomic_init(&s->counts[i], 0);
    /* Publish only once fully built: lock-free readers may see it right away. */
    if (f->series_tail)
        atomic_store_explicit(&f->series_tail->next, s, memory_order_release);
    else
        atomic_store_explicit(&f->series_head, s, memory_order_release);
    f->series_tail = s;
    return s;
}

static bool same_family_shape(const struct metrics_family *f, enum metrics_type type,
                              const char *const *label_names, size_t n_labels,
                              const double *buckets, size_t n_buckets)
{
    if (f->type != type || f->n_labels != n_labels)
        return false;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(f->label_names[i], label_names[i]) != 0)
            return false;
    if (type == METRICS_HISTOGRAM) {
        if (f->n_buckets != n_buckets)
            return false;
        for (size_t i = 0; i < n_buckets; i++)
            if (f->buckets[i] != buckets[i])
                return false;
    }
    return true;
}

struct metrics_family *metrics_family_new(struct metrics_registry *r, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *label_names, size_t n_labels,
                                          const double *buckets, size_t n_buckets)
{
    if (!valid_name(name, true))
        misuse("invalid metric name '%s'", name ? name : "(null)");
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(label_names[i], false) || strncmp(label_names[i], "__", 2) == 0)
            misuse("%s: invalid label name '%s'", name, label_names[i] ? label_names[i] : "");
        if (type == METRICS_HISTOGRAM && strcmp(label_names[i], "le") == 0)
            misuse("%s: 'le' is reserved for histogram buckets", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[i], label_names[j]) == 0)
                misuse("%s: label '%s' given twice", name, label_names[i]);
    }
    if (type == METRICS_HISTOGRAM) {
        /* +Inf is implicit; tolerate a caller that spells it out. */
        if (n_buckets > 0 && isinf(buckets[n_buckets - 1]) && buckets[n_buckets - 1] > 0)
            n_buckets--;
        for (size_t i = 0; i < n_buckets; i++)
            if (isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                misuse("%s: histogram buckets must be strictly increasing", name);
    } else {
        n_buckets = 0;
    }

    pthread_mutex_lock(&r->lock);
    for (struct metrics_family *f = atomic_load_explicit(&r->families_head, memory_order_relaxed);
         f; f = atomic_load_explicit(&f->next, memory_order_relaxed)) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (!same_family_shape(f, type, label_names, n_labels, buckets, n_buckets))
            misuse("metric '%s' registered twice with a different type, labels or buckets", name);
        pthread_mutex_unlock(&r->lock);
        return f;
    }

    struct metrics_family *f = xcalloc(1, sizeof *f);
    atomic_init(&f->next, NULL);
    atomic_init(&f->series_head, NULL);
    f->registry = r;
    f->type = type;
    f->name = xstrdup(name);
    f->help = help ? xstrdup(help) : NULL;
    f->n_labels = n_labels;
    f->label_names = xcalloc(n_labels ? n_labels : 1, sizeof(char *));
    for (size_t i = 0; i < n_labels; i++)
        f->label_names[i] = xstrdup(label_names[i]);
    f->n_buckets = n_buckets;
    f->buckets = xcalloc(n_buckets ? n_buckets : 1, sizeof(double));
    if (n_buckets)
        memcpy(f->buckets, buckets, n_buckets * sizeof(double));
    /* A family without labels has exactly one series; create it now so it is exposed
     * (as 0) from the first scrape, as Prometheus client libraries do. */
    if (n_labels == 0)
        series_create(f, NULL);
    if (r->families_tail)
        atomic_store_explicit(&r->families_tail->next, f, memory_order_release);
    else
        atomic_store_explicit(&r->families_head, f, memory_order_release);
    r->families_tail = f;
    pthread_mutex_unlock(&r->lock);
    return f;
}

static struct metrics_series *series_find(struct metrics_family *f, const char *const *label_values,
                                          memory_order order)
{
    for (struct metrics_series *s = atomic_load_explicit(&f->series_head, order); s;
         s = atomic_load_explicit(&s->next, order)) {
        size_t i = 0;
        while (i < f->n_labels && strcmp(s->label_values[i], label_values[i]) == 0)
            i++;
        if (i == f->n_labels)
            return s;
    }
    return NULL;
}

struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *label_values)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (!label_values || !label_values[i])
            misuse("%s: missing value for label '%s'", f->name, f->label_names[i]);
    struct metrics_series *s = series_find(f, label_values, memory_order_acquire);
    if (s)
        return s;
    pthread_mutex_lock(&f->registry->lock);
    /* Another thread may have created it between the lock-free scan and the lock. */
    s = series_find(f, label_values, memory_order_relaxed);
    if (!s)
        s = series_create(f, label_values);
    pthread_mutex_unlock(&f->registry->lock);
    return s;
}

struct metrics_series *metrics_series0(struct metrics_family *f)
{
    if (f->n_labels != 0)
        misuse("%s: metrics_series0 on a family with labels", f->name);
    return atomic_load_explicit(&f->series_head, memory_order_acquire);
}

static void check_type(const struct metrics_series *s, enum metrics_type want, const char *op)
{
    if (s->family->type != want)
        misuse("%s on %s '%s'", op, type_text(s->family->type), s->family->name);
}

void metrics_counter_add(struct metrics_series *s, double v)
{
    check_type(s, METRICS_COUNTER, "metrics_counter_add");
    /* A counter that goes down reads as a process restart to Prometheus' rate(); drop
     * such updates (and NaN) rather than corrupt every rate computed over it. */
    if (!(v >= 0))
        return;
    atomic_add_double(&s->value_bits, v);
}

void metrics_counter_inc(struct metrics_series *s)
{
    metrics_counter_add(s, 1.0);
}

void metrics_gauge_set(struct metrics_series *s, double v)
{
    check_type(s, METRICS_GAUGE, "metrics_gauge_set");
    atomic_store_explicit(&s->value_bits, bits_of(v), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_series *s, double v)
{
    check_type(s, METRICS_GAUGE, "metrics_gauge_add");
    atomic_add_double(&s->value_bits, v);
}

void metrics_histogram_observe(struct metrics_series *s, double v)
{
    check_type(s, METRICS_HISTOGRAM, "metrics_histogram_observe");
    const struct metrics_family *f = s->family;
    /* First bucket whose upper bound is >= v ("le" is inclusive); NaN lands in +Inf. */
    size_t lo = 0, hi = f->n_buckets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->buckets[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->value_bits, v);
}

double metrics_series_value(const struct metrics_series *s)
{
    return double_of(
        atomic_load_explicit(&((struct metrics_series *)s)->value_bits, memory_order_relaxed));
}

unsigned long long metrics_histogram_count(const struct metrics_series *s)
{
    if (s->family->type != METRICS_HISTOGRAM)
        return 0;
    struct metrics_series *m = (struct metrics_series *)s;
    unsigned long long total = 0;
    for (size_t i = 0; i <= s->family->n_buckets; i++)
        total += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
    return total;
}

void metrics_registry_on_collect(struct metrics_registry *r, metrics_collect_fn fn, void *ctx)
{
    pthread_mutex_lock(&r->lock);
    r->hooks = xrealloc(r->hooks, (r->n_hooks + 1) * sizeof *r->hooks);
    r->hooks[r->n_hooks++] = (struct collect_hook){fn, ctx};
    pthread_mutex_unlock(&r->lock);
}

/* Shortest text that reads back as the same double; integral values without a decimal
 * point, non-finite ones as Prometheus spells them. */
static void format_value(char out[40], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        strcpy(out, "0"); /* also -0: "-0" would only confuse readers */
        return;
    }
    if (fabs(v) < 1e15 && v == trunc(v)) {
        snprintf(out, 40, "%.0f", v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void append_escaped(struct buf *out, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\':
            buf_append(out, "\\\\", 2);
            break;
        case '\n':
            buf_append(out, "\\n", 2);
            break;
        case '"':
            if (quote)
                buf_append(out, "\\\"", 2);
            else
                buf_append_char(out, '"');
            break;
        default:
            buf_append_char(out, *p);
        }
    }
}

/* name{a="x",b="y"[,le="..."]} value\n */
static void append_sample(struct buf *out, const struct metrics_family *f, const char *suffix,
                          const struct metrics_series *s, const char *le, double value)
{
    buf_append_str(out, f->name);
    buf_append_str(out, suffix);
    if (f->n_labels || le) {
        buf_append_char(out, '{');
        for (size_t i = 0; i < f->n_labels; i++) {
            if (i)
                buf_append_char(out, ',');
            buf_append_str(out, f->label_names[i]);
            buf_append_str(out, "=\"");
            append_escaped(out, s->label_values[i], true);
            buf_append_char(out, '"');
        }
        if (le) {
            if (f->n_labels)
                buf_append_char(out, ',');
            buf_append_str(out, "le=\"");
            buf_append_str(out, le);
            buf_append_char(out, '"');
        }
        buf_append_char(out, '}');
    }
    char num[40];
    format_value(num, value);
    buf_append_char(out, ' ');
    buf_append_str(out, num);
    buf_append_char(out, '\n');
}

static void render_histogram(struct buf *out, const struct metrics_family *f,
                             struct metrics_series *s)
{
    char le[40];
    unsigned long long cumulative = 0;
    for (size_t i = 0; i < f->n_buckets; i++) {
        cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        format_value(le, f->buckets[i]);
        append_sample(out, f, "_bucket", s, le, (double)cumulative);
    }
    cumulative += atomic_load_explicit(&s->counts[f->n_buckets], memory_order_relaxed);
    append_sample(out, f, "_bucket", s, "+Inf", (double)cumulative);
    append_sample(out, f, "_sum", s, NULL, metrics_series_value(s));
    append_sample(out, f, "_count", s, NULL, (double)cumulative);
}

void metrics_render(struct metrics_registry *r, struct buf *out)
{
    /* Snapshot the hooks so they run without the lock: a hook may well create series. */
    pthread_mutex_lock(&r->lock);
    size_t n_hooks = r->n_hooks;
    struct collect_hook *hooks = NULL;
    if (n_hooks) {
        hooks = xmalloc(n_hooks * sizeof *hooks);
        memcpy(hooks, r->hooks, n_hooks * sizeof *hooks);
    }
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n_hooks; i++)
        hooks[i].fn(hooks[i].ctx);
    free(hooks);

    for (struct metrics_family *f = atomic_load_explicit(&r->families_head, memory_order_acquire);
         f; f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        if (f->help) {
            buf_append_str(out, "# HELP ");
            buf_append_str(out, f->name);
            buf_append_char(out, ' ');
            append_escaped(out, f->help, false);
            buf_append_char(out, '\n');
        }
        buf_printf(out, "# TYPE %s %s\n", f->name, type_text(f->type));
        for (struct metrics_series *s = atomic_load_explicit(&f->series_head, memory_order_acquire);
             s; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
            if (f->type == METRICS_HISTOGRAM)
                render_histogram(out, f, s);
            else
                append_sample(out, f, "", s, NULL, metrics_series_value(s));
        }
    }
}

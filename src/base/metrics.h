/* Prometheus metrics registry and text exposition (format 0.0.4).
 *
 * A family is one metric name with fixed label names; a series is one combination of
 * label values. Families and series are created once (under a mutex) and then updated
 * lock-free with atomics, so hot paths on several threads can share a registry.
 * Everything belongs to the registry and lives until metrics_registry_free. */
#ifndef TANDEM_BASE_METRICS_H
#define TANDEM_BASE_METRICS_H

#include <stddef.h>
#include <stdbool.h>

#include "base/buf.h"

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_registry;
struct metrics_family;
struct metrics_series;

struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *r);

/* Creates (or returns the existing, if name/type/labels match) family. label_names may
 * be NULL when n_labels is 0; strings are copied. For histograms, buckets are the
 * upper bounds in increasing order (copied; +Inf is implicit). Aborts on misuse
 * (same name with another type): that is a programming error. */
struct metrics_family *metrics_family_new(struct metrics_registry *r, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *label_names, size_t n_labels,
                                          const double *buckets, size_t n_buckets);

/* Series for these label values (n_labels strings, copied), created on first use.
 * The pointer stays valid for the registry's life: cache it on hot paths. */
struct metrics_series *metrics_series_get(struct metrics_family *f,
                                          const char *const *label_values);
/* Shorthand for families without labels. */
struct metrics_series *metrics_series0(struct metrics_family *f);

void metrics_counter_add(struct metrics_series *s, double v); /* v >= 0 */
void metrics_counter_inc(struct metrics_series *s);
void metrics_gauge_set(struct metrics_series *s, double v);
void metrics_gauge_add(struct metrics_series *s, double v); /* may be negative */
void metrics_histogram_observe(struct metrics_series *s, double v);
double metrics_series_value(const struct metrics_series *s); /* counter/gauge value;
                                                                histogram: sum */
unsigned long long metrics_histogram_count(const struct metrics_series *s);

/* Called at the start of every metrics_render, so values computed on demand (queue
 * lengths, cache usage) are fresh. Runs with no registry lock held. */
typedef void (*metrics_collect_fn)(void *ctx);
void metrics_registry_on_collect(struct metrics_registry *r, metrics_collect_fn fn, void *ctx);

/* Appends the whole registry in text format: "# HELP", "# TYPE", then series in creation
 * order; histograms as _bucket{le=...} (cumulative), _sum, _count. Label values are
 * escaped (\\, \", \n). Integral values print without a decimal point. */
void metrics_render(struct metrics_registry *r, struct buf *out);

/* Bucket sets matching vLLM's histograms. */
extern const double metrics_buckets_ttft[];  /* vllm:time_to_first_token_seconds */
extern const size_t metrics_buckets_ttft_n;
extern const double metrics_buckets_itl[];   /* vllm:inter_token_latency_seconds */
extern const size_t metrics_buckets_itl_n;
extern const double metrics_buckets_request_latency[]; /* e2e, queue, prefill, decode */
extern const size_t metrics_buckets_request_latency_n;
/* 1, 2, 5, 10, 20, 50, ... up to max (vLLM's build_1_2_5_buckets for token counts).
 * Writes at most cap values into out and returns how many. */
size_t metrics_buckets_1_2_5(double max, double *out, size_t cap);

#endif

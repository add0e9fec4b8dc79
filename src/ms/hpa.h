/* The HorizontalPodAutoscaler v2 algorithm, as kube-controller-manager runs it, for
 * `tandem up`'s per-role autoscaler (the cluster runs the real HPA or KEDA on the objects
 * ms generate writes; this is the same policy on one machine, so a CR behaves alike in
 * both places).
 *
 * Per decision: each metric proposes ceil(current x value / target) replicas (no change
 * while |value/target - 1| <= tolerance); the largest proposal wins; the stabilization
 * windows keep the lowest recommendation of the scale-up window and the highest of the
 * scale-down window; the rate policies (Pods or Percent per period, selectPolicy
 * Max | Min | Disabled) bound the step from the replicas at the start of each period;
 * minReplicas/maxReplicas clamp. Defaults are the HPA's: tolerance 0.1; scale-up window
 * 0 s, policies 100 % and 4 pods per 15 s, Max; scale-down window 300 s, 100 % per 15 s.
 *
 * Ownership: struct ms_hpa is plain data owned by the caller (no allocation); times are
 * seconds on any monotonic clock. */
#ifndef TANDEM_MS_HPA_H
#define TANDEM_MS_HPA_H

#include <stdbool.h>
#include <stddef.h>

#define MS_HPA_MAX_POLICIES 4
#define MS_HPA_HISTORY 256 /* recommendations and scale events remembered */

enum ms_hpa_policy_type { MS_HPA_PODS, MS_HPA_PERCENT };
enum ms_hpa_select { MS_HPA_SELECT_MAX, MS_HPA_SELECT_MIN, MS_HPA_SELECT_DISABLED };

struct ms_hpa_policy {
    enum ms_hpa_policy_type type;
    int value;
    double period_s;
};

struct ms_hpa_rules {
    double window_s; /* stabilizationWindowSeconds */
    enum ms_hpa_select select;
    struct ms_hpa_policy policies[MS_HPA_MAX_POLICIES];
    size_t n_policies;
};

struct ms_hpa_spec {
    int min_replicas, max_replicas;
    double tolerance;
    struct ms_hpa_rules up, down;
};

/* One metric reading. AVERAGE: value is the per-pod average (Pods metrics, External
 * with an AverageValue target given the total divided by current); VALUE: the whole
 * (External metric with a Value target). Both propose ceil(current x value / target). */
struct ms_hpa_metric {
    const char *name; /* for the decision's explanation */
    double value;
    double target;
};

struct ms_hpa_event {
    double t;
    int n; /* a recommendation, or replicas added (+) / removed (-) */
};

struct ms_hpa {
    struct ms_hpa_spec spec;
    struct ms_hpa_event recs[MS_HPA_HISTORY];
    size_t n_recs;
    struct ms_hpa_event scales[MS_HPA_HISTORY];
    size_t n_scales;
};

/* Why a decision came out as it did, for the log line and the metrics. */
struct ms_hpa_why {
    int proposed;      /* the largest metric proposal (before windows and rates) */
    const char *metric; /* the metric behind it, or NULL */
    double ratio;       /* its value / target */
    int stabilized;     /* after the stabilization windows */
    const char *limit;  /* NULL, or "max", "min", "scale-up rate", "scale-down rate" */
};

/* The HPA's defaults (see the file comment) with min/max. */
void ms_hpa_spec_default(struct ms_hpa_spec *s, int min_replicas, int max_replicas);
void ms_hpa_init(struct ms_hpa *h, const struct ms_hpa_spec *spec);

/* The replicas to run now, given current replicas and the metric readings (n may be 0:
 * then only min/max apply). Records the recommendation and, when the result differs
 * from current, the scale event (call once per decision, times non-decreasing). */
int ms_hpa_decide(struct ms_hpa *h, double now, int current, const struct ms_hpa_metric *m,
                  size_t n, struct ms_hpa_why *why);

#endif

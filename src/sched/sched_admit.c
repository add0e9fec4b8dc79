/* Admission: which requests are refused (429) before any endpoint is picked. Two llm-d
 * plugin types, both acting only on sheddable requests (priority < 0, the request's
 * InferenceObjective priority; sched_request.priority):
 *   probabilistic-admitter: refuses with probability min(saturation^power * k, 1), where
 *     saturation is the mean over candidates of max(waiting / queueDepthThreshold,
 *     kv_usage / kvCacheUtilThreshold) (an endpoint without metrics counts 1);
 *   utilization-detector: the saturationDetector: the same saturation, metrics older than
 *     metricsStalenessThreshold counting 1; at >= 1.0 a sheddable request is dropped
 *     (llm-d's admission without flow control). It is also a filter (in a profile it
 *     keeps endpoints under the thresholds x (1 + headroom), or all when none is).
 *
 * Ownership: each instance owns its parameter struct. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "sched/sched_internal.h"

/* --- probabilistic-admitter ------------------------------------------------------------ */

struct prob_admitter {
    double queue_thr, kv_thr, power, k;
};

static int pa_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"queueDepthThreshold", "kvCacheUtilThreshold", "power",
                                       "k", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long q = 5;
    double kv = 0.8, power = 5.0, k = 300.0;
    if (sched_param_int(params, "queueDepthThreshold", &q, err) < 0 ||
        sched_param_num(params, "kvCacheUtilThreshold", &kv, err) < 0 ||
        sched_param_num(params, "power", &power, err) < 0 ||
        sched_param_num(params, "k", &k, err) < 0)
        return -1;
    if (q <= 0) {
        sched_perr_set(err, "queueDepthThreshold", "must be > 0, got %lld", q);
        return -1;
    }
    if (!(kv > 0)) {
        sched_perr_set(err, "kvCacheUtilThreshold", "must be > 0, got %g", kv);
        return -1;
    }
    if (!(power > 0)) {
        sched_perr_set(err, "power", "must be > 0, got %g", power);
        return -1;
    }
    if (!(k > 0)) {
        sched_perr_set(err, "k", "must be > 0, got %g", k);
        return -1;
    }
    struct prob_admitter *st = xcalloc(1, sizeof *st);
    *st = (struct prob_admitter){(double)q, kv, power, k};
    *state = st;
    return 0;
}

/* Mean of max(waiting / q, kv / kv_thr) over the candidates; stale_ns > 0 makes metrics
 * older than that count as saturated, like missing ones. */
static double saturation(const struct sched_cycle *c, double q, double kv, uint64_t stale_ns)
{
    if (c->n == 0)
        return 1.0;
    uint64_t now = stale_ns ? clock_monotonic_ns() : 0;
    double total = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct sched_endpoint_metrics *m = &c->m[i];
        if (!m->have || (stale_ns && now - m->scraped_at_ns > stale_ns)) {
            total += 1.0;
            continue;
        }
        total += fmax(m->waiting / q, m->kv_usage / kv);
    }
    return total / (double)c->n;
}

static int pa_admit(struct sched_plugin *self, struct sched_cycle *c, char *reason, size_t cap)
{
    const struct prob_admitter *st = self->st;
    if (c->req->priority >= 0 || c->n == 0)
        return 0;
    double sat = saturation(c, st->queue_thr, st->kv_thr, 0);
    double prob = fmin(pow(sat, st->power) * st->k, 1.0);
    if (sched_rand_unit() >= prob)
        return 0;
    snprintf(reason, cap, "probabilistic-admitter: rejected, saturation=%.3f prob=%.2f", sat,
             prob);
    return 429;
}

const struct sched_plugin_type sched_probabilistic_admitter = {
    .type = "probabilistic-admitter",
    .kind = SCHED_PK_ADMITTER,
    .create = pa_create,
    .destroy = free,
    .admit = pa_admit,
};

/* --- utilization-detector ------------------------------------------------------------- */

struct util_detector {
    double queue_thr, kv_thr, headroom;
    uint64_t stale_ns;
};

/* A Go duration ("200ms", "1.5s", "1m30s"); false when malformed or not positive. */
bool sched_parse_duration(const char *s, uint64_t *ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"µs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9},
                 {"h", 3600e9}};
    double total = 0;
    if (!*s)
        return false;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(v >= 0))
            return false;
        s = end;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
            size_t l = strlen(units[i].unit);
            if (l > best_len && strncmp(s, units[i].unit, l) == 0)
                best = i, best_len = l;
        }
        if (!best_len)
            return false;
        total += v * units[best].ns;
        s += best_len;
    }
    if (!(total >= 1) || total > 1e18)
        return false;
    *ns = (uint64_t)total;
    return true;
}

static int ud_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"queueDepthThreshold", "kvCacheUtilThreshold",
                                       "metricsStalenessThreshold", "headroom", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long q = 5;
    double kv = 0.8, headroom = 0;
    const char *stale = "200ms";
    if (sched_param_int(params, "queueDepthThreshold", &q, err) < 0 ||
        sched_param_num(params, "kvCacheUtilThreshold", &kv, err) < 0 ||
        sched_param_str(params, "metricsStalenessThreshold", &stale, err) < 0 ||
        sched_param_num(params, "headroom", &headroom, err) < 0)
        return -1;
    if (q <= 0) {
        sched_perr_set(err, "queueDepthThreshold", "must be strictly positive, got %lld", q);
        return -1;
    }
    if (!(kv > 0) || kv > 1) {
        sched_perr_set(err, "kvCacheUtilThreshold", "must be in (0.0, 1.0], got %g", kv);
        return -1;
    }
    if (!(headroom >= 0)) {
        sched_perr_set(err, "headroom", "must be >= 0, got %g", headroom);
        return -1;
    }
    struct util_detector *st = xcalloc(1, sizeof *st);
    if (!sched_parse_duration(stale, &st->stale_ns)) {
        free(st);
        sched_perr_set(err, "metricsStalenessThreshold",
                       "must be a positive duration such as 200ms, got '%s'", stale);
        return -1;
    }
    st->queue_thr = (double)q;
    st->kv_thr = kv;
    st->headroom = headroom;
    *state = st;
    return 0;
}

static size_t ud_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                        size_t n, uint16_t *out)
{
    const struct util_detector *st = self->st;
    double ql = st->queue_thr * (1 + st->headroom), kl = st->kv_thr * (1 + st->headroom);
    uint64_t now = clock_monotonic_ns();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sched_endpoint_metrics *m = &c->m[in[i]];
        if (!m->have || now - m->scraped_at_ns > st->stale_ns)
            continue;
        if (m->waiting < ql && m->kv_usage < kl)
            out[k++] = in[i];
    }
    if (k == 0) { /* none under the limits: keep them all */
        memcpy(out, in, n * sizeof *in);
        return n;
    }
    return k;
}

static int ud_admit(struct sched_plugin *self, struct sched_cycle *c, char *reason, size_t cap)
{
    const struct util_detector *st = self->st;
    if (c->req->priority >= 0)
        return 0;
    if (saturation(c, st->queue_thr, st->kv_thr, st->stale_ns) < 1.0)
        return 0;
    snprintf(reason, cap, "system saturated, sheddable request dropped");
    return 429;
}

const struct sched_plugin_type sched_utilization_detector = {
    .type = "utilization-detector",
    .kind = SCHED_PK_FILTER,
    .create = ud_create,
    .destroy = free,
    .filter = ud_filter,
    .saturation_admit = ud_admit,
};

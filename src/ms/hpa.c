/* The HPA v2 decision (hpa.h): replica calculation per metric, stabilization windows,
 * rate policies, min/max. Mirrors kube-controller-manager's order of operations so a
 * hand-computed HPA example gives the same answer here. History is two bounded rings
 * of (time, n): entries older than the longest window or period are dropped first. */
#include "ms/hpa.h"

#include <limits.h>
#include <math.h>
#include <string.h>

void ms_hpa_spec_default(struct ms_hpa_spec *s, int min_replicas, int max_replicas)
{
    memset(s, 0, sizeof *s);
    s->min_replicas = min_replicas;
    s->max_replicas = max_replicas;
    s->tolerance = 0.1;
    s->up.window_s = 0;
    s->up.select = MS_HPA_SELECT_MAX;
    s->up.policies[0] = (struct ms_hpa_policy){MS_HPA_PERCENT, 100, 15};
    s->up.policies[1] = (struct ms_hpa_policy){MS_HPA_PODS, 4, 15};
    s->up.n_policies = 2;
    s->down.window_s = 300;
    s->down.select = MS_HPA_SELECT_MAX;
    s->down.policies[0] = (struct ms_hpa_policy){MS_HPA_PERCENT, 100, 15};
    s->down.n_policies = 1;
}

void ms_hpa_init(struct ms_hpa *h, const struct ms_hpa_spec *spec)
{
    memset(h, 0, sizeof *h);
    h->spec = *spec;
}

static double horizon(const struct ms_hpa_spec *s)
{
    double m = s->up.window_s > s->down.window_s ? s->up.window_s : s->down.window_s;
    for (size_t i = 0; i < s->up.n_policies; i++)
        m = s->up.policies[i].period_s > m ? s->up.policies[i].period_s : m;
    for (size_t i = 0; i < s->down.n_policies; i++)
        m = s->down.policies[i].period_s > m ? s->down.policies[i].period_s : m;
    return m;
}

static void push(struct ms_hpa_event *ring, size_t *n, double now, double keep, double t, int v)
{
    size_t w = 0;
    for (size_t i = 0; i < *n; i++)
        if (ring[i].t > now - keep)
            ring[w++] = ring[i];
    if (w == MS_HPA_HISTORY) {
        memmove(ring, ring + 1, (w - 1) * sizeof *ring);
        w--;
    }
    ring[w++] = (struct ms_hpa_event){t, v};
    *n = w;
}

/* Replicas added (up) or removed (down, as a positive number) within the period. */
static int changed_within(const struct ms_hpa *h, double now, double period, bool up)
{
    int sum = 0;
    for (size_t i = 0; i < h->n_scales; i++)
        if (h->scales[i].t > now - period && (up ? h->scales[i].n > 0 : h->scales[i].n < 0))
            sum += up ? h->scales[i].n : -h->scales[i].n;
    return sum;
}

static int up_limit(const struct ms_hpa *h, double now, int current)
{
    const struct ms_hpa_rules *r = &h->spec.up;
    if (r->select == MS_HPA_SELECT_DISABLED || r->n_policies == 0)
        return current;
    bool pick_min = r->select == MS_HPA_SELECT_MIN;
    long long result = pick_min ? LLONG_MAX : LLONG_MIN;
    for (size_t i = 0; i < r->n_policies; i++) {
        const struct ms_hpa_policy *p = &r->policies[i];
        long long start = current - changed_within(h, now, p->period_s, true);
        long long v = p->type == MS_HPA_PODS ? start + p->value
                                             : (long long)ceil((double)start * (1 + p->value / 100.0));
        result = pick_min ? (v < result ? v : result) : (v > result ? v : result);
    }
    return result > INT_MAX ? INT_MAX : (int)result;
}

static int down_limit(const struct ms_hpa *h, double now, int current)
{
    const struct ms_hpa_rules *r = &h->spec.down;
    if (r->select == MS_HPA_SELECT_DISABLED || r->n_policies == 0)
        return current;
    /* Max picks the policy allowing the biggest change: the lowest limit. */
    bool pick_min = r->select == MS_HPA_SELECT_MIN;
    long long result = pick_min ? LLONG_MIN : LLONG_MAX;
    for (size_t i = 0; i < r->n_policies; i++) {
        const struct ms_hpa_policy *p = &r->policies[i];
        long long start = current + changed_within(h, now, p->period_s, false);
        long long v = p->type == MS_HPA_PODS ? start - p->value
                                             : (long long)((double)start * (1 - p->value / 100.0));
        result = pick_min ? (v > result ? v : result) : (v < result ? v : result);
    }
    return result < 0 ? 0 : result > INT_MAX ? INT_MAX : (int)result;
}

int ms_hpa_decide(struct ms_hpa *h, double now, int current, const struct ms_hpa_metric *m,
                  size_t n, struct ms_hpa_why *why)
{
    struct ms_hpa_why local;
    if (!why)
        why = &local;
    memset(why, 0, sizeof *why);
    const struct ms_hpa_spec *s = &h->spec;
    int desired;
    /* Out of bounds first, like the HPA: no metric can hold a count outside min/max. */
    if (current > s->max_replicas) {
        desired = s->max_replicas;
        why->limit = "max";
        why->proposed = why->stabilized = desired;
    } else if (current < s->min_replicas) {
        desired = s->min_replicas;
        why->limit = "min";
        why->proposed = why->stabilized = desired;
    } else {
        int proposal = current;
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            if (!(m[i].target > 0) || !isfinite(m[i].value))
                continue;
            double ratio = m[i].value / m[i].target;
            int p = fabs(ratio - 1) <= s->tolerance ? current : (int)ceil(ratio * current - 1e-9);
            if (!any || p > proposal) {
                proposal = p;
                why->metric = m[i].name;
                why->ratio = ratio;
            }
            any = true;
        }
        why->proposed = proposal;
        /* Stabilization: the lowest recommendation of the scale-up window (a short
         * burst does not scale up when the window is long), the highest of the
         * scale-down window (no flapping down). The current proposal counts. */
        int up_rec = proposal, down_rec = proposal;
        for (size_t i = 0; i < h->n_recs; i++) {
            if (h->recs[i].t > now - s->up.window_s && h->recs[i].n < up_rec)
                up_rec = h->recs[i].n;
            if (h->recs[i].t > now - s->down.window_s && h->recs[i].n > down_rec)
                down_rec = h->recs[i].n;
        }
        push(h->recs, &h->n_recs, now, horizon(s), now, proposal);
        int rec = current;
        if (rec < up_rec)
            rec = up_rec;
        if (rec > down_rec)
            rec = down_rec;
        why->stabilized = rec;
        desired = rec;
        if (desired > current) {
            int lim = up_limit(h, now, current);
            if (lim < current)
                lim = current;
            if (desired > s->max_replicas) {
                desired = s->max_replicas;
                why->limit = "max";
            }
            if (desired > lim) {
                desired = lim;
                why->limit = "scale-up rate";
            }
        } else if (desired < current) {
            int lim = down_limit(h, now, current);
            if (lim > current)
                lim = current;
            if (desired < s->min_replicas) {
                desired = s->min_replicas;
                why->limit = "min";
            }
            if (desired < lim) {
                desired = lim;
                why->limit = "scale-down rate";
            }
        }
    }
    if (desired != current)
        push(h->scales, &h->n_scales, now, horizon(s), now, desired - current);
    return desired;
}

/* spec.<role>.autoscaling: parsing and validation (errors name file and field), the
 * HPA v2 / KEDA ScaledObject a cluster scales with, and the ms_hpa_spec `tandem up`
 * runs. One parse feeds all three, so the CR means the same thing everywhere.
 *
 * Metric naming (docs/modelservice.md): an HPA reads a per-pod metric as a Pods metric
 * under the vLLM name (prometheus-adapter's default naming), a counter's rate under
 * prometheus-adapter's "<name>_per_second" (the _total suffix dropped), and a role total
 * as an External metric selected by the pods' labels; KEDA queries Prometheus directly
 * with sum(...) over the role's pods, AverageValue for per-pod targets. */
#include "ms/autoscale.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

void ms_quantity(double v, char *out, size_t cap)
{
    double r = round(v);
    if (fabs(v - r) < 1e-9 && fabs(r) < 1e15)
        snprintf(out, cap, "%lld", (long long)r);
    else
        snprintf(out, cap, "%lldm", (long long)llround(v * 1000));
}

static bool metric_name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 200)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* "60s", "2m", "1h" or a number of seconds. */
static bool parse_duration(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return *out > 0;
    }
    if (!json_is_string(v))
        return false;
    char *end;
    double d = strtod(json_string_value(v), &end);
    double mul = !strcmp(end, "s") || !*end ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600 : 0;
    *out = d * mul;
    return mul > 0 && *out > 0 && *out <= 86400;
}

static bool int_in(const json_t *v, long long lo, long long hi, int *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = (int)json_integer_value(v);
    return true;
}

/* behavior.scaleUp / scaleDown, HPA v2's HPAScalingRules, into the algorithm's rules. */
static bool parse_rules(const char *at, const json_t *r, struct ms_hpa_rules *out, char *err,
                        size_t errlen)
{
    if (!r)
        return true;
    if (!json_is_object(r))
        return failf(err, errlen, "%s: must be a mapping", at);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)r, k, v)
    {
        if (strcmp(k, "stabilizationWindowSeconds") && strcmp(k, "selectPolicy") &&
            strcmp(k, "policies"))
            return failf(err, errlen, "%s.%s: unknown field (stabilizationWindowSeconds, "
                                      "selectPolicy, policies)",
                         at, k);
    }
    const json_t *w = json_object_get(r, "stabilizationWindowSeconds");
    int wi;
    if (w) {
        if (!int_in(w, 0, 3600, &wi))
            return failf(err, errlen, "%s.stabilizationWindowSeconds: an integer in [0, 3600]",
                         at);
        out->window_s = wi;
    }
    const json_t *sp = json_object_get(r, "selectPolicy");
    if (sp) {
        const char *s = json_string_value(sp);
        if (s && !strcmp(s, "Max"))
            out->select = MS_HPA_SELECT_MAX;
        else if (s && !strcmp(s, "Min"))
            out->select = MS_HPA_SELECT_MIN;
        else if (s && !strcmp(s, "Disabled"))
            out->select = MS_HPA_SELECT_DISABLED;
        else
            return failf(err, errlen, "%s.selectPolicy: Max, Min or Disabled", at);
    }
    const json_t *ps = json_object_get(r, "policies");
    if (ps) {
        if (!json_is_array(ps) || json_array_size(ps) > MS_HPA_MAX_POLICIES)
            return failf(err, errlen, "%s.policies: a list of at most %d", at,
                         MS_HPA_MAX_POLICIES);
        out->n_policies = 0;
        size_t i;
        json_t *p;
        json_array_foreach(ps, i, p)
        {
            const char *type = json_string_value(json_object_get(p, "type"));
            struct ms_hpa_policy *o = &out->policies[out->n_policies];
            int period;
            if (!type || (strcmp(type, "Pods") && strcmp(type, "Percent")))
                return failf(err, errlen, "%s.policies[%zu].type: Pods or Percent", at, i);
            o->type = !strcmp(type, "Pods") ? MS_HPA_PODS : MS_HPA_PERCENT;
            if (!int_in(json_object_get(p, "value"), 1, 1000000, &o->value))
                return failf(err, errlen, "%s.policies[%zu].value: an integer > 0", at, i);
            if (!int_in(json_object_get(p, "periodSeconds"), 1, 1800, &period))
                return failf(err, errlen, "%s.policies[%zu].periodSeconds: an integer in [1, "
                                          "1800]",
                             at, i);
            o->period_s = period;
            out->n_policies++;
        }
    }
    return true;
}

static bool parse_metric(const char *at, const json_t *m, struct ms_as_metric *o, char *err,
                         size_t errlen)
{
    if (!json_is_object(m))
        return failf(err, errlen, "%s: must be a mapping (metric, target)", at);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v)
    {
        if (strcmp(k, "metric") && strcmp(k, "target") && strcmp(k, "averaging") &&
            strcmp(k, "rate"))
            return failf(err, errlen, "%s.%s: unknown field (metric, target, averaging, rate)",
                         at, k);
    }
    o->metric = json_string_value(json_object_get(m, "metric"));
    if (!metric_name_ok(o->metric))
        return failf(err, errlen, "%s.metric: required, a Prometheus metric name such as "
                                  "vllm:num_requests_waiting",
                     at);
    const json_t *t = json_object_get(m, "target");
    if (!json_is_number(t) || !(json_number_value(t) > 0) || json_number_value(t) > 1e12)
        return failf(err, errlen, "%s.target: required, a number > 0", at);
    o->target = json_number_value(t);
    const json_t *avg = json_object_get(m, "averaging");
    const char *as = json_string_value(avg);
    if (avg && (!as || (strcmp(as, "average") && strcmp(as, "total"))))
        return failf(err, errlen, "%s.averaging: average (per pod, the default) or total", at);
    o->total = as && !strcmp(as, "total");
    size_t ml = strlen(o->metric);
    bool counter = ml > 6 && !strcmp(o->metric + ml - 6, "_total");
    const json_t *rate = json_object_get(m, "rate");
    o->rate_s = 0;
    if (rate && !parse_duration(rate, &o->rate_s))
        return failf(err, errlen, "%s.rate: a window such as 60s or 2m (at most 24h)", at);
    if (counter && !rate)
        o->rate_s = 60; /* a counter only means something as a rate */
    if (!counter && rate)
        return failf(err, errlen, "%s.rate: only counters (names ending in _total) have a "
                                  "rate",
                     at);
    return true;
}

bool ms_autoscaling_parse(const char *file, const char *role, const json_t *sec, bool decouple,
                          struct ms_autoscaling *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const json_t *a = json_object_get(sec, "autoscaling");
    if (!a || json_is_null(a))
        return true;
    char at[128];
    snprintf(at, sizeof at, "%s: spec.%s.autoscaling", file, role);
    if (!json_is_object(a))
        return failf(err, errlen, "%s: must be a mapping", at);
    if (!decouple)
        return failf(err, errlen, "%s: needs spec.decoupleScaling: true (otherwise every "
                                  "reconcile would reset the replicas the autoscaler set)",
                     at);
    static const char *const known[] = {"engine", "minReplicas", "maxReplicas", "metrics",
                                        "behavior", "prometheus"};
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok = ok || !strcmp(k, known[i]);
        if (!ok)
            return failf(err, errlen, "%s.%s: unknown field (engine, minReplicas, maxReplicas, "
                                      "metrics, behavior, prometheus)",
                         at, k);
    }
    out->on = true;
    const char *engine = json_string_value(json_object_get(a, "engine"));
    if (json_object_get(a, "engine") && (!engine || (strcmp(engine, "hpa") && strcmp(engine, "keda"))))
        return failf(err, errlen, "%s.engine: hpa (the default) or keda", at);
    out->engine = engine && !strcmp(engine, "keda") ? MS_AS_KEDA : MS_AS_HPA;
    int lo = out->engine == MS_AS_KEDA ? 0 : 1;
    const json_t *mn = json_object_get(a, "minReplicas");
    out->min_replicas = 1;
    if (mn && !int_in(mn, lo, 100000, &out->min_replicas))
        return failf(err, errlen, "%s.minReplicas: an integer >= %d", at, lo);
    if (!int_in(json_object_get(a, "maxReplicas"), 1, 100000, &out->max_replicas))
        return failf(err, errlen, "%s.maxReplicas: required, an integer >= 1", at);
    if (out->max_replicas < out->min_replicas)
        return failf(err, errlen, "%s.maxReplicas: %d is below minReplicas %d", at,
                     out->max_replicas, out->min_replicas);
    const json_t *ms = json_object_get(a, "metrics");
    if (!json_is_array(ms) || json_array_size(ms) == 0 ||
        json_array_size(ms) > MS_AS_MAX_METRICS)
        return failf(err, errlen, "%s.metrics: required, a list of 1-%d (metric, target)", at,
                     MS_AS_MAX_METRICS);
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m)
    {
        char mat[160];
        snprintf(mat, sizeof mat, "%s.metrics[%zu]", at, i);
        if (!parse_metric(mat, m, &out->metrics[i], err, errlen))
            return false;
        out->n_metrics++;
    }
    ms_hpa_spec_default(&out->policy, out->min_replicas, out->max_replicas);
    const json_t *b = json_object_get(a, "behavior");
    if (b) {
        char bat[160];
        if (!json_is_object(b))
            return failf(err, errlen, "%s.behavior: must be a mapping (scaleUp, scaleDown)", at);
        json_object_foreach((json_t *)b, k, v)
        {
            if (strcmp(k, "scaleUp") && strcmp(k, "scaleDown"))
                return failf(err, errlen, "%s.behavior.%s: unknown field (scaleUp, scaleDown)",
                             at, k);
        }
        snprintf(bat, sizeof bat, "%s.behavior.scaleUp", at);
        if (!parse_rules(bat, json_object_get(b, "scaleUp"), &out->policy.up, err, errlen))
            return false;
        snprintf(bat, sizeof bat, "%s.behavior.scaleDown", at);
        if (!parse_rules(bat, json_object_get(b, "scaleDown"), &out->policy.down, err, errlen))
            return false;
        out->behavior = b;
    }
    const json_t *prom = json_object_get(a, "prometheus");
    out->polling_s = 15; /* HPA's sync period and KEDA's default polling interval... */
    if (out->engine == MS_AS_KEDA)
        out->polling_s = 30; /* ...KEDA's is 30 */
    if (prom) {
        if (!json_is_object(prom))
            return failf(err, errlen, "%s.prometheus: must be a mapping (serverAddress)", at);
        out->server_address = json_string_value(json_object_get(prom, "serverAddress"));
        const json_t *pi = json_object_get(prom, "pollingInterval");
        if (pi && !parse_duration(pi, &out->polling_s))
            return failf(err, errlen, "%s.prometheus.pollingInterval: seconds > 0", at);
    }
    if (out->engine == MS_AS_KEDA && (!out->server_address || strncmp(out->server_address, "http", 4)))
        return failf(err, errlen, "%s.prometheus.serverAddress: required with engine keda "
                                  "(e.g. http://prometheus.monitoring:9090)",
                     at);
    return true;
}

/* ---- objects ------------------------------------------------------------------------------ */

/* vllm:request_success_total -> vllm:request_success_per_second (prometheus-adapter). */
static void adapter_name(const struct ms_as_metric *m, char *out, size_t cap)
{
    size_t l = strlen(m->metric);
    if (m->rate_s > 0 && l > 6)
        snprintf(out, cap, "%.*s_per_second", (int)(l - 6), m->metric);
    else
        snprintf(out, cap, "%s", m->metric);
}

/* The role's pods in Prometheus: kubernetes_sd's labelmap turns pod labels into
 * llm_d_ai_role / llm_d_ai_model. */
static void promql(const struct ms_as_metric *m, const char *role, const char *ns,
                   const char *model, char *out, size_t cap)
{
    char sel[400];
    snprintf(sel, sizeof sel, "{namespace=\"%s\",llm_d_ai_role=\"%s\",llm_d_ai_model=\"%s\"}",
             ns, role, model);
    if (m->rate_s > 0)
        snprintf(out, cap, "sum(rate(%s%s[%.0fs]))", m->metric, sel, m->rate_s);
    else
        snprintf(out, cap, "sum(%s%s)", m->metric, sel);
}

static json_t *hpa_metric(const struct ms_as_metric *m, const char *role, const char *model)
{
    char name[256], q[64];
    adapter_name(m, name, sizeof name);
    ms_quantity(m->target, q, sizeof q);
    if (!m->total)
        return json_pack("{s:s,s:{s:{s:s},s:{s:s,s:s}}}", "type", "Pods", "pods", "metric",
                         "name", name, "target", "type", "AverageValue", "averageValue", q);
    return json_pack("{s:s,s:{s:{s:s,s:{s:{s:s,s:s}}},s:{s:s,s:s}}}", "type", "External",
                     "external", "metric", "name", name, "selector", "matchLabels",
                     "llm_d_ai_role", role, "llm_d_ai_model", model, "target", "type", "Value",
                     "value", q);
}

json_t *ms_autoscaler_object(const struct ms_autoscaling *a, const char *role,
                             const char *deploy, const char *ns, const char *model)
{
    json_t *labels = json_pack("{s:s,s:s,s:s}", "llm-d.ai/inferenceServing", "true",
                               "llm-d.ai/model", model, "llm-d.ai/role", role);
    json_t *target = json_pack("{s:s,s:s,s:s}", "apiVersion", "apps/v1", "kind", "Deployment",
                               "name", deploy);
    json_t *o;
    if (a->engine == MS_AS_HPA) {
        json_t *metrics = json_array();
        for (size_t i = 0; i < a->n_metrics; i++)
            json_array_append_new(metrics, hpa_metric(&a->metrics[i], role, model));
        o = json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:{s:o,s:i,s:i,s:o}}", "apiVersion",
                      "autoscaling/v2", "kind", "HorizontalPodAutoscaler", "metadata", "name",
                      deploy, "namespace", ns, "labels", labels, "spec", "scaleTargetRef",
                      target, "minReplicas", a->min_replicas, "maxReplicas", a->max_replicas,
                      "metrics", metrics);
        if (a->behavior)
            json_object_set_new(json_object_get(o, "spec"), "behavior",
                                json_deep_copy(a->behavior));
        return o;
    }
    json_t *triggers = json_array();
    for (size_t i = 0; i < a->n_metrics; i++) {
        const struct ms_as_metric *m = &a->metrics[i];
        char q[900], th[64];
        promql(m, role, ns, model, q, sizeof q);
        ms_quantity(m->target, th, sizeof th);
        /* KEDA wants the threshold as a plain number string. */
        if (th[strlen(th) - 1] == 'm')
            snprintf(th, sizeof th, "%g", m->target);
        json_array_append_new(
            triggers, json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "type", "prometheus",
                                "metricType", m->total ? "Value" : "AverageValue", "metadata",
                                "serverAddress", a->server_address, "query", q, "threshold",
                                th));
    }
    o = json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:{s:o,s:i,s:i,s:i,s:o}}", "apiVersion",
                  "keda.sh/v1alpha1", "kind", "ScaledObject", "metadata", "name", deploy,
                  "namespace", ns, "labels", labels, "spec", "scaleTargetRef", target,
                  "minReplicaCount", a->min_replicas, "maxReplicaCount", a->max_replicas,
                  "pollingInterval", (int)a->polling_s, "triggers", triggers);
    if (a->behavior)
        json_object_set_new(json_object_get(o, "spec"), "advanced",
                            json_pack("{s:{s:O}}", "horizontalPodAutoscalerConfig", "behavior",
                                      a->behavior));
    return o;
}

/* request-attribute-reporter (llm-d): when a response finishes, evaluates a CEL
 * expression over its `usage` object and, if the optional condition holds and the value
 * (truncated to an integer, as llm-d does) is not 0, reports it as Envoy dynamic metadata
 * `{namespace: {name: value}}` (namespace envoy.lb by default). The router attaches the
 * attributes to its last ext_proc response-phase reply (sched_report_response).
 *
 * Ownership: an instance owns its compiled expressions and key strings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

struct reporter {
    char *ns, *name;
    struct sched_cel *expr, *cond;
};

static void rep_destroy(void *state)
{
    struct reporter *st = state;
    if (!st)
        return;
    free(st->ns);
    free(st->name);
    sched_cel_free(st->expr);
    sched_cel_free(st->cond);
    free(st);
}

static bool only_keys(const json_t *obj, const char *const *keys, const char *path,
                      struct sched_perr *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        bool ok = false;
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(keys[i], k) == 0;
        if (!ok) {
            sched_perr_set(err, path, "unknown field '%s'", k);
            return false;
        }
    }
    return true;
}

static int rep_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"attributes", NULL};
    static const char *const akeys[] = {"key", "expression", "condition", NULL};
    static const char *const kkeys[] = {"namespace", "name", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const json_t *attrs = params ? json_object_get(params, "attributes") : NULL;
    if (!json_is_array(attrs) || json_array_size(attrs) != 1) {
        sched_perr_set(err, "attributes", "must contain exactly one entry");
        return -1;
    }
    const json_t *a = json_array_get(attrs, 0);
    if (!json_is_object(a)) {
        sched_perr_set(err, "attributes[0]", "must be a mapping with key, expression, condition");
        return -1;
    }
    if (!only_keys(a, akeys, "attributes[0]", err))
        return -1;
    const json_t *key = json_object_get(a, "key");
    if (!json_is_object(key)) {
        sched_perr_set(err, "attributes[0].key", "required mapping with namespace and name");
        return -1;
    }
    if (!only_keys(key, kkeys, "attributes[0].key", err))
        return -1;
    const json_t *ns = json_object_get(key, "namespace"), *name = json_object_get(key, "name");
    if (ns && !json_is_null(ns) && !json_is_string(ns)) {
        sched_perr_set(err, "attributes[0].key.namespace", "must be a string");
        return -1;
    }
    if (!json_is_string(name) || !json_string_value(name)[0]) {
        sched_perr_set(err, "attributes[0].key.name", "cannot be empty");
        return -1;
    }
    const json_t *ex = json_object_get(a, "expression"), *co = json_object_get(a, "condition");
    if (!json_is_string(ex) || !json_string_value(ex)[0]) {
        sched_perr_set(err, "attributes[0].expression", "cannot be empty");
        return -1;
    }
    if (co && !json_is_null(co) && !json_is_string(co)) {
        sched_perr_set(err, "attributes[0].condition", "must be a string");
        return -1;
    }
    struct reporter *st = xcalloc(1, sizeof *st);
    char why[200];
    st->expr = sched_cel_compile(json_string_value(ex), why, sizeof why);
    if (!st->expr) {
        rep_destroy(st);
        sched_perr_set(err, "attributes[0].expression", "failed to compile: %s", why);
        return -1;
    }
    if (json_is_string(co) && json_string_value(co)[0]) {
        st->cond = sched_cel_compile(json_string_value(co), why, sizeof why);
        if (!st->cond) {
            rep_destroy(st);
            sched_perr_set(err, "attributes[0].condition", "failed to compile: %s", why);
            return -1;
        }
    }
    const char *nsv = json_is_string(ns) && json_string_value(ns)[0] ? json_string_value(ns)
                                                                     : "envoy.lb";
    st->ns = xstrdup(nsv);
    st->name = xstrdup(json_string_value(name));
    *state = st;
    return 0;
}

static bool rep_report(struct sched_plugin *self, const json_t *usage,
                       struct sched_attribute *out)
{
    const struct reporter *st = self->st;
    double v;
    if (st->cond && (sched_cel_eval(st->cond, usage, &v) != SCHED_CEL_BOOL || v == 0))
        return false;
    if (sched_cel_eval(st->expr, usage, &v) != SCHED_CEL_NUM || !(fabs(v) < 9.2e18))
        return false;
    v = trunc(v);
    if (v == 0)
        return false;
    *out = (struct sched_attribute){st->ns, st->name, v};
    return true;
}

const struct sched_plugin_type sched_request_attribute_reporter = {
    .type = "request-attribute-reporter",
    .kind = SCHED_PK_REPORTER,
    .create = rep_create,
    .destroy = rep_destroy,
    .report = rep_report,
};

size_t sched_report_response(const struct sched *s, const json_t *usage,
                             struct sched_attribute *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; s && usage && i < s->n_plugins && n < max; i++)
        if (s->plugins[i]->t->report && s->plugins[i]->t->report(s->plugins[i], usage, &out[n]))
            n++;
    return n;
}

bool sched_has_reporters(const struct sched *s)
{
    for (size_t i = 0; s && i < s->n_plugins; i++)
        if (s->plugins[i]->t->report)
            return true;
    return false;
}

/* Filters: keep the candidates a profile may use. Role filters read the endpoint's role
 * (from the spec, else its llm-d.ai/role label); label filters read its labels. All
 * endpoint fields read here are immutable, so filters take no locks. Parameters are
 * parsed once into plain arrays. by-label-selector is llm-d's deprecated name of
 * label-selector-filter (the same filter, one WARN at load). */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

static int no_params_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const none[] = {NULL};
    *state = NULL;
    return sched_param_check_keys(params, none, err) ? 0 : -1;
}

/* The endpoint's llm-d.ai/role value as llm-d's role filters read it: the label when it
 * is what set the role (extended values such as encode-prefill included), else the role
 * given by the spec (--prefill/--decode, endpoints file), else NULL (no label). */
static const char *role_text(const struct sched_endpoint *e)
{
    const char *label = sched_endpoint_label(e, "llm-d.ai/role");
    switch (e->role) {
    case SCHED_ROLE_DECODE:
        return label && sched_role_from_text(label) == SCHED_ROLE_DECODE ? label : "decode";
    case SCHED_ROLE_PREFILL:
        return label && sched_role_from_text(label) == SCHED_ROLE_PREFILL ? label : "prefill";
    case SCHED_ROLE_BOTH:
        return label && sched_role_from_text(label) == SCHED_ROLE_BOTH ? label : "both";
    default:
        return label;
    }
}

/* llm-d's bylabel role filters (roles.go): the values each accepts, and whether an
 * endpoint with no role at all passes (decode only). */
static const char *const decode_roles[] = {"decode", "prefill-decode", "both",
                                           "encode-prefill-decode", NULL};
static const char *const prefill_roles[] = {"prefill", "encode-prefill",        "prefill-decode",
                                            "both",    "encode-prefill-decode", NULL};
static const char *const encode_roles[] = {"encode", "encode-prefill", "encode-prefill-decode",
                                           NULL};

static const char *const *role_values(const char *filter_type)
{
    return !strcmp(filter_type, "decode-filter")    ? decode_roles
           : !strcmp(filter_type, "prefill-filter") ? prefill_roles
           : !strcmp(filter_type, "encode-filter")  ? encode_roles
                                                    : NULL;
}

static bool role_in(const struct sched_endpoint *e, const char *const *vals)
{
    const char *r = role_text(e);
    if (!r)
        return vals == decode_roles;
    for (size_t i = 0; vals[i]; i++)
        if (!strcmp(vals[i], r))
            return true;
    return false;
}

bool sched_role_accepts(const struct sched_endpoint *e, const char *filter_type)
{
    const char *const *vals = role_values(filter_type);
    return vals && role_in(e, vals);
}

static size_t role_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                          size_t n, uint16_t *out)
{
    const char *const *vals = role_values(self->t->type);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (role_in(c->eps[in[i]], vals))
            out[m++] = in[i];
    return m;
}

const struct sched_plugin_type sched_decode_filter = {
    .type = "decode-filter",
    .kind = SCHED_PK_FILTER,
    .create = no_params_create,
    .filter = role_filter,
};

const struct sched_plugin_type sched_prefill_filter = {
    .type = "prefill-filter",
    .kind = SCHED_PK_FILTER,
    .create = no_params_create,
    .filter = role_filter,
};

const struct sched_plugin_type sched_encode_filter = {
    .type = "encode-filter",
    .kind = SCHED_PK_FILTER,
    .create = no_params_create,
    .filter = role_filter,
};

/* --- string lists ------------------------------------------------------------------------ */

struct strlist {
    char **v;
    size_t n;
};

static void strlist_free(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static bool strlist_has(const struct strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

/* field names the array in errors, e.g. "validValues" or "matchExpressions[0].values". */
static int strlist_parse(const json_t *arr, const char *field, struct strlist *out,
                         struct sched_perr *err)
{
    if (!json_is_array(arr)) {
        sched_perr_set(err, field, "must be a list of strings");
        return -1;
    }
    out->n = 0;
    out->v = xcalloc(json_array_size(arr) + 1, sizeof *out->v);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v)) {
            char f[96];
            snprintf(f, sizeof f, "%s[%zu]", field, i);
            sched_perr_set(err, f, "must be a string");
            return -1;
        }
        out->v[out->n++] = xstrdup(json_string_value(v));
    }
    return 0;
}

/* --- by-label ---------------------------------------------------------------------------- */

struct by_label {
    char *label;
    struct strlist valid;
    bool allow_none;
};

static void by_label_destroy(void *state)
{
    struct by_label *st = state;
    if (!st)
        return;
    free(st->label);
    strlist_free(&st->valid);
    free(st);
}

static int by_label_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"label", "validValues", "allowsNoLabel", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *label = NULL;
    bool allow = false;
    if (sched_param_str(params, "label", &label, err) < 0 ||
        sched_param_bool(params, "allowsNoLabel", &allow, err) < 0)
        return -1;
    if (!label || !label[0]) {
        sched_perr_set(err, "label", "required");
        return -1;
    }
    struct by_label *st = xcalloc(1, sizeof *st);
    st->label = xstrdup(label);
    st->allow_none = allow;
    json_t *vv = params ? json_object_get(params, "validValues") : NULL;
    if (vv && strlist_parse(vv, "validValues", &st->valid, err) < 0) {
        by_label_destroy(st);
        return -1;
    }
    *state = st;
    return 0;
}

static size_t by_label_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                              size_t n, uint16_t *out)
{
    const struct by_label *st = self->st;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = sched_endpoint_label(c->eps[in[i]], st->label);
        if (v ? strlist_has(&st->valid, v) : st->allow_none)
            out[m++] = in[i];
    }
    return m;
}

const struct sched_plugin_type sched_by_label_filter = {
    .type = "by-label",
    .kind = SCHED_PK_FILTER,
    .create = by_label_create,
    .destroy = by_label_destroy,
    .filter = by_label_filter,
};

/* --- label-selector-filter (Kubernetes label selector semantics) ------------------------- */

enum sel_op { SEL_IN, SEL_NOT_IN, SEL_EXISTS, SEL_NOT_EXISTS };

struct sel_expr {
    char *key;
    enum sel_op op;
    struct strlist values;
};

struct label_selector {
    char **match_keys;
    char **match_values;
    size_t n_match;
    struct sel_expr *exprs;
    size_t n_exprs;
};

static void selector_destroy(void *state)
{
    struct label_selector *st = state;
    if (!st)
        return;
    for (size_t i = 0; i < st->n_match; i++) {
        free(st->match_keys[i]);
        free(st->match_values[i]);
    }
    free(st->match_keys);
    free(st->match_values);
    for (size_t i = 0; i < st->n_exprs; i++) {
        free(st->exprs[i].key);
        strlist_free(&st->exprs[i].values);
    }
    free(st->exprs);
    free(st);
}

static int selector_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"matchLabels", "matchExpressions", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    struct label_selector *st = xcalloc(1, sizeof *st);
    *state = NULL;
    json_t *ml = params ? json_object_get(params, "matchLabels") : NULL;
    json_t *me = params ? json_object_get(params, "matchExpressions") : NULL;
    if (ml && !json_is_null(ml)) {
        if (!json_is_object(ml)) {
            sched_perr_set(err, "matchLabels", "must be a mapping of label to value");
            goto fail;
        }
        size_t n = json_object_size(ml);
        st->match_keys = xcalloc(n + 1, sizeof(char *));
        st->match_values = xcalloc(n + 1, sizeof(char *));
        const char *k;
        json_t *v;
        json_object_foreach(ml, k, v)
        {
            if (!json_is_string(v)) {
                char f[96];
                snprintf(f, sizeof f, "matchLabels.%s", k);
                sched_perr_set(err, f, "must be a string");
                goto fail;
            }
            st->match_keys[st->n_match] = xstrdup(k);
            st->match_values[st->n_match++] = xstrdup(json_string_value(v));
        }
    }
    if (me && !json_is_null(me)) {
        if (!json_is_array(me)) {
            sched_perr_set(err, "matchExpressions", "must be a list");
            goto fail;
        }
        st->exprs = xcalloc(json_array_size(me) + 1, sizeof *st->exprs);
        size_t i;
        json_t *e;
        json_array_foreach(me, i, e)
        {
            char f[96];
            snprintf(f, sizeof f, "matchExpressions[%zu]", i);
            if (!json_is_object(e)) {
                sched_perr_set(err, f, "must be a mapping with key, operator, values");
                goto fail;
            }
            struct sel_expr *x = &st->exprs[st->n_exprs++];
            const char *key = json_string_value(json_object_get(e, "key"));
            const char *op = json_string_value(json_object_get(e, "operator"));
            if (!key || !key[0]) {
                snprintf(f, sizeof f, "matchExpressions[%zu].key", i);
                sched_perr_set(err, f, "required string");
                goto fail;
            }
            x->key = xstrdup(key);
            if (op && strcmp(op, "In") == 0)
                x->op = SEL_IN;
            else if (op && strcmp(op, "NotIn") == 0)
                x->op = SEL_NOT_IN;
            else if (op && strcmp(op, "Exists") == 0)
                x->op = SEL_EXISTS;
            else if (op && strcmp(op, "DoesNotExist") == 0)
                x->op = SEL_NOT_EXISTS;
            else {
                snprintf(f, sizeof f, "matchExpressions[%zu].operator", i);
                sched_perr_set(err, f, "must be In, NotIn, Exists or DoesNotExist");
                goto fail;
            }
            json_t *vals = json_object_get(e, "values");
            snprintf(f, sizeof f, "matchExpressions[%zu].values", i);
            if (vals && !json_is_null(vals) && strlist_parse(vals, f, &x->values, err) < 0)
                goto fail;
            if ((x->op == SEL_IN || x->op == SEL_NOT_IN) && x->values.n == 0) {
                sched_perr_set(err, f, "required (non-empty) for operator In/NotIn");
                goto fail;
            }
            if ((x->op == SEL_EXISTS || x->op == SEL_NOT_EXISTS) && x->values.n) {
                sched_perr_set(err, f, "must be empty for operator Exists/DoesNotExist");
                goto fail;
            }
            const char *const ekeys[] = {"key", "operator", "values", NULL};
            const char *k;
            json_t *v;
            json_object_foreach(e, k, v)
            {
                bool ok = false;
                for (size_t j = 0; ekeys[j]; j++)
                    ok |= strcmp(ekeys[j], k) == 0;
                if (!ok) {
                    snprintf(f, sizeof f, "matchExpressions[%zu].%s", i, k);
                    sched_perr_set(err, f, "unknown field");
                    goto fail;
                }
            }
        }
    }
    *state = st;
    return 0;
fail:
    selector_destroy(st);
    return -1;
}

static bool selector_match(const struct label_selector *st, const struct sched_endpoint *e)
{
    for (size_t i = 0; i < st->n_match; i++) {
        const char *v = sched_endpoint_label(e, st->match_keys[i]);
        if (!v || strcmp(v, st->match_values[i]) != 0)
            return false;
    }
    for (size_t i = 0; i < st->n_exprs; i++) {
        const struct sel_expr *x = &st->exprs[i];
        const char *v = sched_endpoint_label(e, x->key);
        switch (x->op) {
        case SEL_IN:
            if (!v || !strlist_has(&x->values, v))
                return false;
            break;
        case SEL_NOT_IN:
            if (v && strlist_has(&x->values, v))
                return false;
            break;
        case SEL_EXISTS:
            if (!v)
                return false;
            break;
        case SEL_NOT_EXISTS:
            if (v)
                return false;
            break;
        }
    }
    return true;
}

static size_t selector_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                              size_t n, uint16_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (selector_match(self->st, c->eps[in[i]]))
            out[m++] = in[i];
    return m;
}

const struct sched_plugin_type sched_label_selector_filter = {
    .type = "label-selector-filter",
    .kind = SCHED_PK_FILTER,
    .create = selector_create,
    .destroy = selector_destroy,
    .filter = selector_filter,
};

/* by-label-selector: llm-d's deprecated name for label-selector-filter (same parameters,
 * same filter); llm-d logs the deprecation at load, so does tandem. */
static int deprecated_selector_create(const json_t *params, void **state, struct sched_perr *err)
{
    if (selector_create(params, state, err) < 0)
        return -1;
    LOG_W("sched", "by-label-selector: deprecated, use 'label-selector-filter' (same "
                   "parameters, same filter)");
    return 0;
}

const struct sched_plugin_type sched_by_label_selector = {
    .type = "by-label-selector",
    .kind = SCHED_PK_FILTER,
    .create = deprecated_selector_create,
    .destroy = selector_destroy,
    .filter = selector_filter,
};

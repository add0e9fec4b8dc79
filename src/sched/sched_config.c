/* The EndpointPickerConfig loader (llm-d's schema, YAML or JSON) and the --policy
 * presets. sched_new validates everything up front: an unknown type, an unknown or
 * ill-typed parameter, a dangling pluginRef, a bad weight, a duplicate name or a profile
 * a handler needs but that is missing refuses the config with "FILE:LINE: field: why",
 * so a running scheduler never meets a configuration problem.
 *
 * Ownership: the scheduler owns its plugin instances, profiles and the default picker;
 * it registers a remove hook with the datastore (purging removed endpoints from its
 * prefix indexes) and drops it in sched_free. The datastore must outlive it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/yaml.h"
#include "sched/sched_internal.h"

/* --- presets ------------------------------------------------------------------------------ */

#define PRESET_HEAD "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"

#define PRESET_ONE(type)                                                                      \
    PRESET_HEAD "plugins:\n- type: " type "\nschedulingProfiles:\n- name: default\n"         \
                "  plugins:\n  - pluginRef: " type "\n"

static const char preset_llmd[] = PRESET_HEAD
    "plugins:\n"
    "- type: single-profile-handler\n"
    "- type: queue-scorer\n"
    "- type: kv-cache-utilization-scorer\n"
    "- type: prefix-cache-scorer\n"
    "- type: max-score-picker\n"
    "schedulingProfiles:\n"
    "- name: default\n"
    "  plugins:\n"
    "  - pluginRef: queue-scorer\n"
    "    weight: 2\n"
    "  - pluginRef: kv-cache-utilization-scorer\n"
    "    weight: 2\n"
    "  - pluginRef: prefix-cache-scorer\n"
    "    weight: 3\n"
    "  - pluginRef: max-score-picker\n";

/* P/D (llm-d's pd example): disaggregate when the uncached part of the prompt on the
 * chosen decode pod is >= 100 characters. */
static const char preset_pd[] = PRESET_HEAD
    "plugins:\n"
    "- type: prefill-filter\n"
    "- type: decode-filter\n"
    "- type: prefix-cache-scorer\n"
    "- type: queue-scorer\n"
    "- type: max-score-picker\n"
    "- type: pd-profile-handler\n"
    "  parameters: {threshold: 100}\n"
    "schedulingProfiles:\n"
    "- name: prefill\n"
    "  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer, weight: 2},\n"
    "            {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]\n"
    "- name: decode\n"
    "  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer, weight: 2},\n"
    "            {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]\n";

static const struct {
    const char *name;
    const char *text;
} presets[] = {
    {"pd", preset_pd},
    {"round_robin", PRESET_ONE("round-robin-picker")},
    {"random", PRESET_ONE("random-picker")},
    {"consistent_hash", PRESET_ONE("consistent-hash-picker")},
    {"power_of_two", PRESET_ONE("power-of-two-picker")},
    {"rendezvous_hash", PRESET_ONE("rendezvous-hash-picker")},
    {"cache_aware", PRESET_ONE("cache-aware-picker")},
    {"llm-d", preset_llmd},
};

const char *sched_policy_config(const char *policy)
{
    for (size_t i = 0; policy && i < sizeof presets / sizeof *presets; i++)
        if (strcmp(presets[i].name, policy) == 0)
            return presets[i].text;
    return NULL;
}

/* --- lifecycle ---------------------------------------------------------------------------- */

static void plugin_free(struct sched_plugin *p)
{
    if (!p)
        return;
    if (p->t->destroy && p->st)
        p->t->destroy(p->st);
    free(p->name);
    free(p);
}

static void on_endpoint_removed(void *arg, uint32_t id)
{
    struct sched *s = arg;
    for (size_t i = 0; i < s->n_plugins; i++) {
        struct sched_plugin *p = s->plugins[i];
        if (sched_plugin_is_prefix(p))
            prefix_index_purge(sched_prefix_plugin_index(p), id);
        struct prefix_index *ca = sched_cache_aware_index(p);
        if (ca)
            prefix_index_purge(ca, id);
    }
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    if (s->ds)
        sched_ds_del_hook(s->ds, on_endpoint_removed, s);
    for (size_t i = 0; i < s->n_profiles; i++) {
        free(s->profiles[i].name);
        free(s->profiles[i].filters);
        free(s->profiles[i].scorers);
    }
    free(s->profiles);
    for (size_t i = 0; i < s->n_plugins; i++)
        plugin_free(s->plugins[i]);
    free(s->plugins);
    plugin_free(s->default_picker);
    free(s);
}

int sched_start(struct sched *s, struct uv_loop_s *loop, struct errinfo *err)
{
    for (size_t i = 0; i < s->n_plugins; i++) {
        struct sched_plugin *p = s->plugins[i];
        struct sched_perr pe = {{0}, {0}};
        if (p->t->start && p->t->start(p, loop, &pe) < 0) {
            for (size_t j = 0; j < i; j++)
                if (s->plugins[j]->t->stop)
                    s->plugins[j]->t->stop(s->plugins[j]);
            if (err)
                snprintf(err->msg, sizeof err->msg, "plugin '%s' (%s): %s: %s", p->name,
                         p->t->type, pe.field, pe.why);
            return -1;
        }
    }
    return 0;
}

void sched_stop(struct sched *s)
{
    for (size_t i = 0; s && i < s->n_plugins; i++)
        if (s->plugins[i]->t->stop)
            s->plugins[i]->t->stop(s->plugins[i]);
}

/* --- loading ------------------------------------------------------------------------------ */

struct loader {
    const char *name;
    struct yaml_positions *pos;
    struct errinfo *err;
    /* The entry being loaded: its line stands in for values that have no recorded
     * position (null/true/false, empty collections). */
    const json_t *ctx;
    /* What the config asks for that tandem does not apply (logged once at load). */
    char not_applied[512];
};

static void note_not_applied(struct loader *L, const char *what)
{
    if (strstr(L->not_applied, what))
        return;
    size_t n = strlen(L->not_applied);
    snprintf(L->not_applied + n, sizeof L->not_applied - n, "%s%s", n ? "; " : "", what);
}

static int line_of(struct loader *L, const json_t *node)
{
    int line = 0, col = 0;
    if (node && L->pos && yaml_position(L->pos, node, &line, &col))
        return line;
    if (L->ctx && node != L->ctx && L->pos && yaml_position(L->pos, L->ctx, &line, &col))
        return line;
    return 0;
}

static int fail(struct loader *L, const json_t *node, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct loader *L, const json_t *node, const char *field, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (L->err)
        snprintf(L->err->msg, sizeof L->err->msg, "%s:%d: %s: %s", L->name, line_of(L, node),
                 field, why);
    return -1;
}

static bool key_allowed(const char *key, const char *const *allowed)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(allowed[i], key) == 0)
            return true;
    return false;
}

static int check_fields(struct loader *L, const json_t *obj, const char *path,
                        const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!key_allowed(key, allowed)) {
            char f[160];
            snprintf(f, sizeof f, "%s%s%s", path, path[0] ? "." : "", key);
            return fail(L, v, f, "unknown field");
        }
    }
    return 0;
}

static const char *kind_text(enum sched_plugin_kind k)
{
    switch (k) {
    case SCHED_PK_FILTER: return "filter";
    case SCHED_PK_SCORER: return "scorer";
    case SCHED_PK_PICKER: return "picker";
    case SCHED_PK_HANDLER: return "profile handler";
    case SCHED_PK_DECIDER: return "P/D decider";
    case SCHED_PK_PARSER: return "parser";
    case SCHED_PK_SOURCE: return "data layer source";
    case SCHED_PK_EXTRACTOR: return "data layer extractor";
    case SCHED_PK_ADMITTER: return "admitter";
    case SCHED_PK_REPORTER: return "response reporter";
    case SCHED_PK_PRODUCER: return "data producer";
    case SCHED_PK_PREREQUEST: return "pre-request plugin";
    case SCHED_PK_FLOW: return "flow-control policy";
    }
    return "plugin";
}

/* Reports a plugin's create/bind error at the offending parameter when it exists. */
static int plugin_fail(struct loader *L, const json_t *entry, size_t idx,
                       const struct sched_perr *pe)
{
    char f[256];
    if (strncmp(pe->field, "schedulingProfiles", 18) == 0)
        return fail(L, entry, pe->field, "%s", pe->why);
    json_t *params = json_object_get(entry, "parameters");
    const json_t *node = params ? params : entry;
    char top[96];
    snprintf(top, sizeof top, "%s", pe->field);
    char *cut = strpbrk(top, ".[");
    if (cut)
        *cut = 0;
    json_t *pv = params && json_is_object(params) ? json_object_get(params, top) : NULL;
    if (pv && line_of(L, pv))
        node = pv;
    L->ctx = entry;
    if (pe->field[0] && strcmp(pe->field, "parameters") != 0)
        snprintf(f, sizeof f, "plugins[%zu].parameters.%s", idx, pe->field);
    else
        snprintf(f, sizeof f, "plugins[%zu].parameters", idx);
    return fail(L, node, f, "%s", pe->why);
}

static int load_plugins(struct sched *s, struct loader *L, const json_t *plugins)
{
    static const char *const fields[] = {"type", "name", "parameters", NULL};
    if (!json_is_array(plugins))
        return fail(L, plugins, "plugins", "must be a list");
    s->plugins = xcalloc(json_array_size(plugins) + 1, sizeof *s->plugins);
    size_t i;
    json_t *e;
    json_array_foreach(plugins, i, e)
    {
        char path[64];
        snprintf(path, sizeof path, "plugins[%zu]", i);
        L->ctx = e;
        if (!json_is_object(e))
            return fail(L, e, path, "must be a mapping with type, name, parameters");
        if (check_fields(L, e, path, fields) < 0)
            return -1;
        json_t *jt = json_object_get(e, "type");
        json_t *jn = json_object_get(e, "name");
        json_t *jp = json_object_get(e, "parameters");
        char f[96];
        snprintf(f, sizeof f, "%s.type", path);
        if (!jt)
            return fail(L, e, f, "required");
        if (!json_is_string(jt))
            return fail(L, jt, f, "must be a string");
        const struct sched_plugin_type *t = sched_plugin_type_find(json_string_value(jt));
        if (!t)
            return fail(L, jt, f, "unknown plugin type '%s'", json_string_value(jt));
        snprintf(f, sizeof f, "%s.name", path);
        if (jn && !json_is_null(jn) && (!json_is_string(jn) || !json_string_value(jn)[0]))
            return fail(L, jn, f, "must be a non-empty string");
        const char *name = jn && json_is_string(jn) ? json_string_value(jn) : t->type;
        if (sched_find_plugin(s, name))
            return fail(L, jn ? jn : jt, f, "duplicate plugin name '%s'", name);
        snprintf(f, sizeof f, "%s.parameters", path);
        if (jp && json_is_null(jp))
            jp = NULL;
        if (jp && !json_is_object(jp))
            return fail(L, jp, f, "must be a mapping");
        struct sched_perr pe = {{0}, {0}};
        void *st = NULL;
        if (t->create(jp, &st, &pe) < 0)
            return plugin_fail(L, e, i, &pe);
        struct sched_plugin *p = xcalloc(1, sizeof *p);
        p->t = t;
        p->name = xstrdup(name);
        p->st = st;
        p->line = line_of(L, e);
        s->plugins[s->n_plugins++] = p;
        if (t->kind == SCHED_PK_HANDLER) {
            if (s->handler)
                return fail(L, jt, path, "only one profile handler allowed ('%s' is already one)",
                            s->handler->name);
            s->handler = p;
        }
    }
    return 0;
}

static int load_profiles(struct sched *s, struct loader *L, const json_t *profiles)
{
    static const char *const fields[] = {"name", "plugins", NULL};
    static const char *const ref_fields[] = {"pluginRef", "weight", NULL};
    if (!json_is_array(profiles) || json_array_size(profiles) == 0)
        return fail(L, profiles, "schedulingProfiles", "must be a non-empty list");
    s->profiles = xcalloc(json_array_size(profiles), sizeof *s->profiles);
    size_t i;
    json_t *e;
    json_array_foreach(profiles, i, e)
    {
        char path[64], f[192];
        snprintf(path, sizeof path, "schedulingProfiles[%zu]", i);
        L->ctx = e;
        if (!json_is_object(e))
            return fail(L, e, path, "must be a mapping with name and plugins");
        if (check_fields(L, e, path, fields) < 0)
            return -1;
        json_t *jn = json_object_get(e, "name");
        snprintf(f, sizeof f, "%s.name", path);
        if (!jn || !json_is_string(jn) || !json_string_value(jn)[0])
            return fail(L, jn ? jn : e, f, "required non-empty string");
        if (sched_find_profile(s, json_string_value(jn)))
            return fail(L, jn, f, "duplicate profile name '%s'", json_string_value(jn));
        struct sched_profile *p = &s->profiles[s->n_profiles++];
        p->name = xstrdup(json_string_value(jn));
        json_t *jp = json_object_get(e, "plugins");
        snprintf(f, sizeof f, "%s.plugins", path);
        if (!jp || !json_is_array(jp))
            return fail(L, jp ? jp : e, f, "required list of {pluginRef, weight}");
        size_t n = json_array_size(jp);
        p->filters = xcalloc(n + 1, sizeof *p->filters);
        p->scorers = xcalloc(n + 1, sizeof *p->scorers);
        size_t k;
        json_t *r;
        json_array_foreach(jp, k, r)
        {
            char rp[128];
            snprintf(rp, sizeof rp, "%s.plugins[%zu]", path, k);
            L->ctx = r;
            if (!json_is_object(r))
                return fail(L, r, rp, "must be a mapping with pluginRef and weight");
            if (check_fields(L, r, rp, ref_fields) < 0)
                return -1;
            json_t *jr = json_object_get(r, "pluginRef");
            json_t *jw = json_object_get(r, "weight");
            snprintf(f, sizeof f, "%s.pluginRef", rp);
            if (!jr || !json_is_string(jr))
                return fail(L, jr ? jr : r, f, "required string");
            struct sched_plugin *pl = sched_find_plugin(s, json_string_value(jr));
            if (!pl)
                return fail(L, jr, f, "no plugin named '%s' in plugins", json_string_value(jr));
            double w = 1;
            snprintf(f, sizeof f, "%s.weight", rp);
            if (jw && !json_is_null(jw)) {
                if (!json_is_number(jw))
                    return fail(L, jw, f, "must be a number");
                w = json_number_value(jw);
                if (!(w >= 0) || w > 1e9)
                    return fail(L, jw, f, "must be a non-negative number, got %g", w);
            }
            snprintf(f, sizeof f, "%s.pluginRef", rp);
            switch (pl->t->kind) {
            case SCHED_PK_FILTER:
                p->filters[p->n_filters++] = pl;
                break;
            case SCHED_PK_SCORER:
                /* a scorer that is also a filter (context-length-aware) is both here */
                if (pl->t->filter)
                    p->filters[p->n_filters++] = pl;
                p->scorers[p->n_scorers++] = (struct sched_weighted){pl, w};
                break;
            case SCHED_PK_PICKER:
                if (p->picker)
                    return fail(L, jr, f, "profile already has picker '%s'", p->picker->name);
                p->picker = pl;
                break;
            case SCHED_PK_PARSER:
            case SCHED_PK_SOURCE:
            case SCHED_PK_EXTRACTOR:
            case SCHED_PK_ADMITTER:
            case SCHED_PK_REPORTER:
            case SCHED_PK_PRODUCER:
            case SCHED_PK_PREREQUEST:
            case SCHED_PK_FLOW:
                /* llm-d registers a profile's plugins by the interfaces they implement; a
                 * request-control plugin has none of a profile's, so it is a no-op there
                 * (it acts on every request anyway) */
                break;
            default:
                return fail(L, jr, f, "'%s' is a %s, not a filter, scorer or picker",
                            pl->name, kind_text(pl->t->kind));
            }
        }
    }
    return 0;
}

/* No schedulingProfiles (or an empty list): llm-d's loader builds one profile named
 * "default" holding every filter, scorer (weight 1) and picker the config defines. llm-d
 * walks a map there; tandem keeps the config's order, so filters run in the order given. */
static int default_profile(struct sched *s, struct loader *L, const json_t *root)
{
    s->profiles = xcalloc(1, sizeof *s->profiles);
    struct sched_profile *p = &s->profiles[s->n_profiles++];
    p->name = xstrdup("default");
    p->filters = xcalloc(s->n_plugins + 1, sizeof *p->filters);
    p->scorers = xcalloc(s->n_plugins + 1, sizeof *p->scorers);
    for (size_t i = 0; i < s->n_plugins; i++) {
        struct sched_plugin *pl = s->plugins[i];
        if (pl->t->kind == SCHED_PK_FILTER) {
            p->filters[p->n_filters++] = pl;
        } else if (pl->t->kind == SCHED_PK_SCORER) {
            if (pl->t->filter)
                p->filters[p->n_filters++] = pl;
            p->scorers[p->n_scorers++] = (struct sched_weighted){pl, 1};
        } else if (pl->t->kind == SCHED_PK_PICKER) {
            if (p->picker)
                return fail(L, root, "schedulingProfiles",
                            "none given, and the default profile would get two pickers "
                            "('%s', '%s')", p->picker->name, pl->name);
            p->picker = pl;
        }
    }
    return 0;
}

/* {pluginRef: NAME} naming a plugin of kind k; *out (optional) gets it. */
static int load_ref(struct sched *s, struct loader *L, const json_t *obj, const char *path,
                    enum sched_plugin_kind k, struct sched_plugin **out)
{
    static const char *const fields[] = {"pluginRef", NULL};
    char f[160];
    if (!json_is_object(obj))
        return fail(L, obj, path, "must be a mapping with pluginRef");
    if (check_fields(L, obj, path, fields) < 0)
        return -1;
    json_t *jr = json_object_get(obj, "pluginRef");
    snprintf(f, sizeof f, "%s.pluginRef", path);
    if (!jr || !json_is_string(jr))
        return fail(L, jr ? jr : obj, f, "required string");
    struct sched_plugin *pl = sched_find_plugin(s, json_string_value(jr));
    if (!pl)
        return fail(L, jr, f, "no plugin named '%s' in plugins", json_string_value(jr));
    if (pl->t->kind != k)
        return fail(L, jr, f, "'%s' is a %s, not a %s", pl->name, kind_text(pl->t->kind),
                    kind_text(k));
    if (out)
        *out = pl;
    return 0;
}

static int load_data_layer(struct sched *s, struct loader *L, const json_t *dl)
{
    static const char *const fields[] = {"injectDefaults", "sources", "discovery", NULL};
    static const char *const src_fields[] = {"pluginRef", "extractors", NULL};
    L->ctx = dl;
    if (!json_is_object(dl))
        return fail(L, dl, "dataLayer", "must be a mapping with sources");
    if (check_fields(L, dl, "dataLayer", fields) < 0)
        return -1;
    json_t *inj = json_object_get(dl, "injectDefaults");
    if (inj && !json_is_null(inj) && !json_is_boolean(inj))
        return fail(L, inj, "dataLayer.injectDefaults", "must be true or false");
    json_t *disc = json_object_get(dl, "discovery");
    if (disc && !json_is_null(disc)) {
        /* tandem has no discovery plugin types: endpoints come from --worker-urls,
         * --endpoints-file or the Kubernetes watch */
        json_t *jr = json_is_object(disc) ? json_object_get(disc, "pluginRef") : NULL;
        if (!jr || !json_is_string(jr))
            return fail(L, jr ? jr : disc, "dataLayer.discovery.pluginRef", "required string");
        if (!sched_find_plugin(s, json_string_value(jr)))
            return fail(L, jr, "dataLayer.discovery.pluginRef", "no plugin named '%s' in plugins",
                        json_string_value(jr));
        return fail(L, jr, "dataLayer.discovery.pluginRef",
                    "'%s' is not a discovery plugin (tandem has none)", json_string_value(jr));
    }
    json_t *srcs = json_object_get(dl, "sources");
    if (!srcs || json_is_null(srcs))
        return 0;
    if (!json_is_array(srcs))
        return fail(L, srcs, "dataLayer.sources", "must be a list of {pluginRef, extractors}");
    size_t i;
    json_t *e;
    json_array_foreach(srcs, i, e)
    {
        char path[64];
        snprintf(path, sizeof path, "dataLayer.sources[%zu]", i);
        L->ctx = e;
        if (!json_is_object(e))
            return fail(L, e, path, "must be a mapping with pluginRef and extractors");
        if (check_fields(L, e, path, src_fields) < 0)
            return -1;
        json_t *jr = json_object_get(e, "pluginRef");
        char f[96];
        snprintf(f, sizeof f, "%s.pluginRef", path);
        if (!jr || !json_is_string(jr))
            return fail(L, jr ? jr : e, f, "required string");
        struct sched_plugin *pl = sched_find_plugin(s, json_string_value(jr));
        if (!pl)
            return fail(L, jr, f, "no plugin named '%s' in plugins", json_string_value(jr));
        if (pl->t->kind != SCHED_PK_SOURCE)
            return fail(L, jr, f, "'%s' is a %s, not a data layer source", pl->name,
                        kind_text(pl->t->kind));
        json_t *ex = json_object_get(e, "extractors");
        if (!ex || json_is_null(ex))
            continue;
        snprintf(f, sizeof f, "%s.extractors", path);
        if (!json_is_array(ex))
            return fail(L, ex, f, "must be a list of {pluginRef}");
        size_t k;
        json_t *x;
        bool endpoint_src = pl->t == &sched_endpoint_notification_source;
        json_array_foreach(ex, k, x)
        {
            char xp[128];
            snprintf(xp, sizeof xp, "%s.extractors[%zu]", path, k);
            L->ctx = x;
            if (!endpoint_src && pl->t != &sched_k8s_notification_source) {
                if (load_ref(s, L, x, xp, SCHED_PK_EXTRACTOR, NULL) < 0)
                    return -1;
                continue;
            }
            /* llm-d checks an extractor's input type against the source's output: an
             * endpoint source takes EndpointExtractors only, a k8s source GVK extractors
             * (tandem has none) */
            static const char *const ref_fields[] = {"pluginRef", NULL};
            char xf[160];
            if (!json_is_object(x))
                return fail(L, x, xp, "must be a mapping with pluginRef");
            if (check_fields(L, x, xp, ref_fields) < 0)
                return -1;
            json_t *xr = json_object_get(x, "pluginRef");
            snprintf(xf, sizeof xf, "%s.pluginRef", xp);
            if (!xr || !json_is_string(xr))
                return fail(L, xr ? xr : x, xf, "required string");
            struct sched_plugin *xpl = sched_find_plugin(s, json_string_value(xr));
            if (!xpl)
                return fail(L, xr, xf, "no plugin named '%s' in plugins", json_string_value(xr));
            if (!endpoint_src || !xpl->t->extract_endpoint)
                return fail(L, xr, xf,
                            "extractor '%s' (%s) input type incompatible with datasource '%s' "
                            "(%s): it does not take %s",
                            xpl->name, xpl->t->type, pl->name, pl->t->type,
                            endpoint_src ? "endpoint events" : "Kubernetes object events");
            sched_notify_wire(pl, s, xpl);
        }
    }
    return 0;
}

/* llm-d's registered feature gates; anything else is refused like llm-d does. */
static int load_feature_gates(struct loader *L, const json_t *fg)
{
    if (!json_is_array(fg))
        return fail(L, fg, "featureGates", "must be a list of gate names");
    size_t i;
    json_t *g;
    json_array_foreach(fg, i, g)
    {
        char f[48];
        snprintf(f, sizeof f, "featureGates[%zu]", i);
        if (!json_is_string(g))
            return fail(L, g, f, "must be a string");
        const char *v = json_string_value(g);
        if (strcmp(v, "dataLayer") == 0 || strcmp(v, "enableLegacyMetrics") == 0)
            continue; /* tandem's one metrics path: the scraper feeding the datastore */
        if (strcmp(v, "flowControl") == 0) {
            note_not_applied(L, "flowControl (tandem has no flow control layer)");
            continue;
        }
        return fail(L, g, f, "unknown feature gate '%s' (known: dataLayer, enableLegacyMetrics, "
                    "flowControl)", v);
    }
    return 0;
}

static int load_sections(struct sched *s, struct loader *L, const json_t *root)
{
    json_t *v = json_object_get(root, "featureGates");
    L->ctx = root;
    if (v && !json_is_null(v) && load_feature_gates(L, v) < 0)
        return -1;
    v = json_object_get(root, "parser");
    L->ctx = root;
    if (v && !json_is_null(v) && load_ref(s, L, v, "parser", SCHED_PK_PARSER, &s->parser) < 0)
        return -1;
    v = json_object_get(root, "dataLayer");
    /* `data` is the section's name before llm-d renamed it (GAIE #2639, April 2026);
     * configs and READMEs written before that still use it */
    json_t *old = json_object_get(root, "data");
    if (v && old)
        return fail(L, old, "data", "give dataLayer or its old name data, not both");
    if (!v)
        v = old;
    if (v && !json_is_null(v) && load_data_layer(s, L, v) < 0)
        return -1;
    L->ctx = root;
    v = json_object_get(root, "saturationDetector");
    if (v && !json_is_null(v)) {
        static const char *const fields[] = {"pluginRef", NULL};
        if (!json_is_object(v))
            return fail(L, v, "saturationDetector", "must be a mapping with pluginRef");
        if (check_fields(L, v, "saturationDetector", fields) < 0)
            return -1;
        json_t *jr = json_object_get(v, "pluginRef");
        if (jr && !json_is_string(jr))
            return fail(L, jr, "saturationDetector.pluginRef", "must be a string");
        if (jr && !sched_find_plugin(s, json_string_value(jr)))
            return fail(L, jr, "saturationDetector.pluginRef", "no plugin named '%s' in plugins",
                        json_string_value(jr));
        struct sched_plugin *pl = jr ? sched_find_plugin(s, json_string_value(jr)) : NULL;
        if (pl && !pl->t->saturation_admit)
            return fail(L, jr, "saturationDetector.pluginRef",
                        "'%s' is not a saturation detector", json_string_value(jr));
        s->saturation = pl;
    }
    v = json_object_get(root, "flowControl");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v))
            return fail(L, v, "flowControl", "must be a mapping");
        note_not_applied(L, "flowControl (tandem has no flow control layer)");
    }
    return 0;
}

static int load(struct sched *s, struct loader *L, const json_t *root)
{
    static const char *const fields[] = {"apiVersion", "kind",       "plugins",
                                         "schedulingProfiles", "featureGates",
                                         "saturationDetector", "data", "metadata",
                                         "parser", "dataLayer", "flowControl", NULL};
    L->ctx = root;
    if (!json_is_object(root))
        return fail(L, root, "(document)", "must be a mapping (an EndpointPickerConfig)");
    if (check_fields(L, root, "", fields) < 0)
        return -1;
    json_t *av = json_object_get(root, "apiVersion");
    if (av && !(json_is_string(av) &&
                (strcmp(json_string_value(av), "llm-d.ai/v1alpha1") == 0 ||
                 strcmp(json_string_value(av), "inference.networking.x-k8s.io/v1alpha1") == 0)))
        return fail(L, av, "apiVersion",
                    "must be llm-d.ai/v1alpha1 or inference.networking.x-k8s.io/v1alpha1");
    json_t *kind = json_object_get(root, "kind");
    if (kind && !(json_is_string(kind) &&
                  strcmp(json_string_value(kind), "EndpointPickerConfig") == 0))
        return fail(L, kind, "kind", "must be EndpointPickerConfig");
    json_t *plugins = json_object_get(root, "plugins");
    if (!plugins)
        return fail(L, root, "plugins", "required");
    if (load_plugins(s, L, plugins) < 0)
        return -1;
    L->ctx = root;
    json_t *profiles = json_object_get(root, "schedulingProfiles");
    if (!profiles || json_is_null(profiles) ||
        (json_is_array(profiles) && json_array_size(profiles) == 0)) {
        profiles = (json_t *)root;
        if (default_profile(s, L, root) < 0)
            return -1;
    } else if (load_profiles(s, L, profiles) < 0) {
        return -1;
    }
    if (load_sections(s, L, root) < 0)
        return -1;
    struct sched_perr pe = {{0}, {0}};
    void *st = NULL;
    if (!s->handler) {
        const struct sched_plugin_type *t = sched_plugin_type_find("single-profile-handler");
        t->create(NULL, &st, &pe);
        struct sched_plugin *h = xcalloc(1, sizeof *h);
        h->t = t;
        h->name = xstrdup(t->type);
        s->plugins = xrealloc(s->plugins, (s->n_plugins + 1) * sizeof *s->plugins);
        s->plugins[s->n_plugins++] = h;
        s->handler = h;
    }
    if (!s->saturation) {
        /* llm-d's default saturationDetector: a utilization-detector with its defaults (or
         * the plugin of that name when the config defines one) */
        struct sched_plugin *ud = sched_find_plugin(s, "utilization-detector");
        if (ud && ud->t->saturation_admit) {
            s->saturation = ud;
        } else if (!ud) {
            const struct sched_plugin_type *t = sched_plugin_type_find("utilization-detector");
            st = NULL;
            if (t->create(NULL, &st, &pe) == 0) {
                struct sched_plugin *h = xcalloc(1, sizeof *h);
                h->t = t;
                h->name = xstrdup(t->type);
                h->st = st;
                s->plugins = xrealloc(s->plugins, (s->n_plugins + 1) * sizeof *s->plugins);
                s->plugins[s->n_plugins++] = h;
                s->saturation = h;
            }
        }
    }
    const struct sched_plugin_type *mp = sched_plugin_type_find("max-score-picker");
    st = NULL;
    mp->create(NULL, &st, &pe);
    s->default_picker = xcalloc(1, sizeof *s->default_picker);
    s->default_picker->t = mp;
    s->default_picker->name = xstrdup(mp->type);
    s->default_picker->st = st;
    L->ctx = root;
    for (size_t i = 0; i < s->n_plugins; i++) {
        struct sched_plugin *p = s->plugins[i];
        if (!p->t->bind)
            continue;
        memset(&pe, 0, sizeof pe);
        if (p->t->bind(p, s, &pe) < 0) {
            if (strncmp(pe.field, "schedulingProfiles", 18) == 0)
                return fail(L, profiles, pe.field, "%s", pe.why);
            json_t *entry = i < json_array_size(plugins) ? json_array_get(plugins, i) : NULL;
            if (!entry)
                return fail(L, profiles, "schedulingProfiles", "%s: %s", pe.field, pe.why);
            return plugin_fail(L, entry, i, &pe);
        }
    }
    return 0;
}

struct sched *sched_new(struct sched_datastore *ds, const char *text, size_t len, const char *name,
                        struct errinfo *err)
{
    if (err)
        err->msg[0] = 0;
    if (!text) {
        text = preset_llmd;
        len = sizeof preset_llmd - 1;
        name = "<default-config>";
    }
    if (!name)
        name = "<config-text>";
    struct errinfo ye;
    memset(&ye, 0, sizeof ye);
    struct yaml_positions *pos = NULL;
    json_t *root = yaml_parse_pos(text, len, name, &pos, &ye);
    if (!root) {
        if (err)
            snprintf(err->msg, sizeof err->msg, "%s", ye.msg[0] ? ye.msg : "invalid YAML");
        yaml_positions_free(pos);
        return NULL;
    }
    struct loader L = {name, pos, err, NULL, {0}};
    struct sched *s = xcalloc(1, sizeof *s);
    int rc = load(s, &L, root);
    if (rc == 0 && L.not_applied[0])
        LOG_W("sched", "%s: not applied by tandem: %s", name, L.not_applied);
    yaml_positions_free(pos);
    json_decref(root);
    if (rc < 0) {
        sched_free(s);
        return NULL;
    }
    s->ds = ds;
    sched_ds_add_hook(ds, on_endpoint_removed, s);
    return s;
}

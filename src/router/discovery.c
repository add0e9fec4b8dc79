/* Endpoints from an InferencePool (GAIE's EPP behaviour): watch the pool, watch the pods
 * in its namespace that match its selector, and keep one endpoint per Ready pod and
 * target port in the datastore (source "pool:NS/NAME"). The sidecar uses the same
 * watches for its SSRF allowlist: the Ready pods' addresses and the pool's ports.
 *
 * Everything here runs on the control loop. What workers read (the allowlist, the
 * pool's state for 503 messages) sits behind `lock` or in atomics. Endpoint identity
 * (address, role, labels) is compared as a signature string so a pod's status churn
 * (every probe writes the pod) does not re-upsert an unchanged endpoint.
 *
 * Pools: inference.networking.k8s.io/v1 (spec.selector.matchLabels,
 * spec.targetPorts[].number) and inference.networking.x-k8s.io/v1alpha2 (spec.selector,
 * spec.targetPortNumber). A pod is routable when Ready=True, it has a podIP and no
 * deletionTimestamp. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "k8s/k8s.h"
#include "router/router_internal.h"

#define LOG_C "discovery"
#define MAX_PORTS 8

struct router_discovery {
    struct router *r;
    struct k8s_client *cl;
    struct k8s_informer *pool_inf, *pod_inf;
    char *ns, *name, *group, *version;
    char *source; /* "pool:NS/NAME" */
    char *selector; /* "k=v,k2=v2" of the current pool, or NULL */
    int ports[MAX_PORTS];
    size_t n_ports;
    bool sidecar;
    json_t *current; /* endpoint name -> signature, what we put in the datastore */
    /* worker-visible */
    pthread_rwlock_t lock;
    json_t *allowed_ips; /* sidecar: podIP -> true */
    int allowed_ports[MAX_PORTS];
    size_t n_allowed_ports;
    /* logging once per change of state */
    char last_state[2][160];
    uint64_t seen_restarts, seen_errors;
};

static const char *const RBAC_FILE = "deploy/rbac/router.yaml";

/* --- pods -> endpoints --------------------------------------------------------------- */

static bool pod_routable(const json_t *pod, const char **ip)
{
    const json_t *md = json_object_get(pod, "metadata");
    const json_t *st = json_object_get(pod, "status");
    *ip = json_string_value(json_object_get(st, "podIP"));
    if (!*ip || !**ip || json_object_get(md, "deletionTimestamp"))
        return false;
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(st, "conditions"), i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (type && !strcmp(type, "Ready")) {
            const char *s = json_string_value(json_object_get(c, "status"));
            return s && !strcmp(s, "True");
        }
    }
    return false;
}

static void endpoint_name(struct router_discovery *d, const char *pod, size_t port_idx,
                          char *out, size_t cap)
{
    if (d->n_ports <= 1)
        snprintf(out, cap, "%s", pod);
    else
        snprintf(out, cap, "%s-rank-%zu", pod, port_idx);
}

/* The spec of a pod's endpoint on one port (labels borrowed from the pod) and its
 * signature. */
static void pod_spec(struct router_discovery *d, const json_t *pod, const char *ip, int port,
                     const char *name, struct sched_endpoint_spec *e, struct buf *sig)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    e->host = ip;
    e->port = port;
    e->source = d->source;
    buf_printf(sig, "%s:%d", ip, port);
    const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
    /* llm-d.ai/ labels first, so the role and model always fit in SCHED_MAX_LABELS */
    for (int pass = 0; pass < 2; pass++) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)labels, k, v)
        {
            bool llmd = !strncmp(k, "llm-d.ai/", 9);
            if ((pass == 0) != llmd || !json_is_string(v) || e->n_labels == SCHED_MAX_LABELS)
                continue;
            e->labels[e->n_labels].key = (char *)k;
            e->labels[e->n_labels].value = (char *)json_string_value(v);
            e->n_labels++;
            buf_printf(sig, "|%s=%s", k, json_string_value(v));
        }
    }
}

static void remove_endpoint(struct router_discovery *d, const char *name, const char *why)
{
    if (!json_object_get(d->current, name))
        return;
    json_object_del(d->current, name);
    sched_ds_remove(d->r->ds, name);
    LOG_I(LOG_C, "pool %s/%s: endpoint %s removed (%s)", d->ns, d->name, name, why);
}

static const char *spec_role(const struct sched_endpoint_spec *e)
{
    for (size_t i = 0; i < e->n_labels; i++)
        if (!strcmp(e->labels[i].key, "llm-d.ai/role"))
            return e->labels[i].value;
    return NULL;
}

/* Brings one pod's endpoints in line with its state (deleted: none). */
static void sync_pod(struct router_discovery *d, const json_t *pod, bool deleted)
{
    const char *pname = k8s_obj_name(pod);
    if (!pname)
        return;
    const char *ip = NULL;
    bool routable = !deleted && d->selector && pod_routable(pod, &ip);
    const char *why = deleted ? "pod deleted"
                      : json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp")
                          ? "pod terminating"
                          : "pod not ready";
    for (size_t i = 0; i < d->n_ports; i++) {
        char name[300];
        endpoint_name(d, pname, i, name, sizeof name);
        if (!routable) {
            remove_endpoint(d, name, why);
            continue;
        }
        struct sched_endpoint_spec e;
        struct buf sig = BUF_INIT;
        pod_spec(d, pod, ip, d->ports[i], name, &e, &sig);
        const char *cur = json_string_value(json_object_get(d->current, name));
        if ((!cur || strcmp(cur, sig.data) != 0) && sched_ds_upsert(d->r->ds, &e) == 0) {
            const char *role = spec_role(&e);
            LOG_I(LOG_C, "pool %s/%s: endpoint %s %s (%s:%d%s%s)", d->ns, d->name, name,
                  cur ? "updated" : "added", ip, d->ports[i], role ? ", role " : "",
                  role ? role : "");
            json_object_set_new(d->current, name, json_string(sig.data));
        }
        buf_free(&sig);
    }
}

/* Removes every endpoint this pool put in, then adds the cached pods' again. */
static void sync_all(struct router_discovery *d, const char *why)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(d->current, tmp, k, v)
    {
        char *name = xstrdup(k);
        remove_endpoint(d, name, why);
        free(name);
    }
    if (!d->pod_inf)
        return;
    const json_t *cache = k8s_informer_cache(d->pod_inf);
    json_object_foreach((json_t *)cache, k, v) sync_pod(d, v, false);
}

/* --- sidecar allowlist ---------------------------------------------------------------- */

static void allow_rebuild(struct router_discovery *d)
{
    json_t *ips = json_object();
    if (d->pod_inf && d->selector) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)k8s_informer_cache(d->pod_inf), k, v)
        {
            const char *ip;
            if (pod_routable(v, &ip))
                json_object_set_new(ips, ip, json_true());
        }
    }
    pthread_rwlock_wrlock(&d->lock);
    json_t *old = d->allowed_ips;
    d->allowed_ips = ips;
    memcpy(d->allowed_ports, d->ports, sizeof d->ports);
    d->n_allowed_ports = d->selector ? d->n_ports : 0;
    pthread_rwlock_unlock(&d->lock);
    json_decref(old);
}

bool router_discovery_allows(struct router_discovery *d, const char *host, int port)
{
    if (!d)
        return false;
    bool ok = false;
    pthread_rwlock_rdlock(&d->lock);
    if (d->allowed_ips && json_object_get(d->allowed_ips, host)) {
        for (size_t i = 0; i < d->n_allowed_ports && !ok; i++)
            ok = d->allowed_ports[i] == port;
    }
    pthread_rwlock_unlock(&d->lock);
    return ok;
}

/* --- metrics and state --------------------------------------------------------------- */

static void update_counters(struct router_discovery *d)
{
    uint64_t restarts = 0;
    struct k8s_informer *infs[2] = {d->pool_inf, d->pod_inf};
    for (int i = 0; i < 2; i++) {
        if (!infs[i])
            continue;
        struct k8s_informer_stats st;
        k8s_informer_get_stats(infs[i], &st);
        restarts += st.watch_restarts + (st.lists > 1 ? st.lists - 1 : 0);
    }
    if (restarts > d->seen_restarts) {
        metrics_counter_add(d->r->m.discovery_restarts, (double)(restarts - d->seen_restarts));
        d->seen_restarts = restarts;
    }
}

static void on_state(struct router_discovery *d, int which, const char *what,
                     enum k8s_informer_state st, const struct k8s_response *why)
{
    char state[160];
    if (st == K8S_INFORMER_SYNCED) {
        snprintf(state, sizeof state, "ok");
    } else {
        snprintf(state, sizeof state, "%d %s", why ? why->code : 0,
                 why && why->reason[0] ? why->reason : "error");
        const char *kind = why && why->reason[0] ? why->reason : "TransportError";
        metrics_counter_inc(metrics_series_get(d->r->m.discovery_errors, &kind));
    }
    update_counters(d);
    if (!strcmp(state, d->last_state[which]))
        return; /* once per change of state, not once per retry */
    bool was_error = d->last_state[which][0] && strcmp(d->last_state[which], "ok") != 0;
    snprintf(d->last_state[which], sizeof d->last_state[which], "%s", state);
    if (st == K8S_INFORMER_SYNCED) {
        if (was_error)
            LOG_I(LOG_C, "%s: watching again (%s)", what, k8s_client_config(d->cl)->server);
        else
            LOG_I(LOG_C, "%s: listed, watching", what);
        return;
    }
    if (why && why->code == 403) {
        LOG_E(LOG_C,
              "%s: forbidden: %s. The %s needs get, list and watch on pods and "
              "inferencepools (%s) in namespace %s: apply %s (Role tandem-router) and bind it "
              "to this service account",
              what, why->message, d->sidecar ? "sidecar" : "router", d->group, d->ns, RBAC_FILE);
    } else if (why && why->code == 404 && which == 0) {
        LOG_E(LOG_C, "%s: not found (%s): is the InferencePool CRD (%s/%s) installed?", what,
              why->message, d->group, d->version);
    } else if (why && why->status == 0) {
        LOG_W(LOG_C, "%s: API server %s unreachable (%s): serving with the last known "
                     "endpoints, retrying with backoff",
              what, k8s_client_config(d->cl)->server, why->message);
    } else {
        LOG_W(LOG_C, "%s: %d %s: %s (retrying with backoff)", what, why ? why->code : 0,
              why ? why->reason : "", why ? why->message : "");
    }
}

static void pool_state_cb(enum k8s_informer_state st, const struct k8s_response *why,
                          void *ctx)
{
    struct router_discovery *d = ctx;
    char what[300];
    snprintf(what, sizeof what, "InferencePool %s/%s", d->ns, d->name);
    on_state(d, 0, what, st, why);
    if (st == K8S_INFORMER_SYNCED && !d->selector &&
        atomic_load(&d->r->pool_state) == ROUTER_POOL_UNKNOWN) {
        atomic_store(&d->r->pool_state, ROUTER_POOL_MISSING);
        LOG_W(LOG_C, "InferencePool %s/%s does not exist (yet): no endpoints from it", d->ns,
              d->name);
    }
}

static void pod_state_cb(enum k8s_informer_state st, const struct k8s_response *why, void *ctx)
{
    struct router_discovery *d = ctx;
    char what[300];
    snprintf(what, sizeof what, "pods of InferencePool %s/%s (selector %s)", d->ns, d->name,
             d->selector ? d->selector : "");
    on_state(d, 1, what, st, why);
}

/* --- pods ------------------------------------------------------------------------------ */

/* What the pod cache keeps: identity, labels, deletion, podIP and the Ready condition
 * (a full pod is ~3 KB of JSON; this is ~10% of it). */
static json_t *pod_transform(json_t *pod, void *ctx)
{
    const json_t *md = json_object_get(pod, "metadata");
    const json_t *st = json_object_get(pod, "status");
    json_t *out = json_object();
    json_t *m = json_object();
    static const char *const keep_md[] = {"name", "namespace", "resourceVersion", "labels",
                                          "deletionTimestamp"};
    for (size_t i = 0; i < sizeof keep_md / sizeof *keep_md; i++) {
        json_t *v = json_object_get(md, keep_md[i]);
        if (v)
            json_object_set(m, keep_md[i], v);
    }
    json_object_set_new(out, "metadata", m);
    json_t *s = json_object();
    json_t *ip = json_object_get(st, "podIP");
    if (ip)
        json_object_set(s, "podIP", ip);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(st, "conditions"), i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (type && !strcmp(type, "Ready")) {
            json_t *conds = json_array();
            json_array_append_new(conds, json_pack("{s:s, s:O}", "type", "Ready", "status",
                                                   json_object_get(c, "status")
                                                       ? json_object_get(c, "status")
                                                       : json_null()));
            json_object_set_new(s, "conditions", conds);
            break;
        }
    }
    json_object_set_new(out, "status", s);
    return out;
}

static void after_pods(struct router_discovery *d)
{
    if (d->sidecar)
        allow_rebuild(d);
    update_counters(d);
}

static void pod_add(json_t *obj, void *ctx)
{
    struct router_discovery *d = ctx;
    if (!d->sidecar)
        sync_pod(d, obj, false);
    after_pods(d);
}

static void pod_update(json_t *old, json_t *obj, void *ctx)
{
    pod_add(obj, ctx);
}

static void pod_delete(json_t *obj, void *ctx)
{
    struct router_discovery *d = ctx;
    if (!d->sidecar)
        sync_pod(d, obj, true);
    after_pods(d);
}

/* --- the pool ------------------------------------------------------------------------ */

/* Reads selector and ports from either API version. false with why. */
static bool parse_pool(struct router_discovery *d, const json_t *pool, struct buf *sel,
                       int *ports, size_t *n_ports, char *why, size_t whylen)
{
    const json_t *spec = json_object_get(pool, "spec");
    const json_t *s = json_object_get(spec, "selector");
    const json_t *labels = json_object_get(s, "matchLabels");
    if (!labels && !strcmp(d->version, "v1alpha2"))
        labels = s;
    if (!json_is_object(labels) || json_object_size(labels) == 0) {
        snprintf(why, whylen, "spec.selector%s: no labels", labels == s ? "" : ".matchLabels");
        return false;
    }
    /* sorted, so an unchanged selector compares equal */
    const char **keys = xcalloc(json_object_size(labels), sizeof *keys);
    size_t nk = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (!json_is_string(v)) {
            snprintf(why, whylen, "spec.selector: %s: value must be a string", k);
            free(keys);
            return false;
        }
        keys[nk++] = k;
    }
    for (size_t i = 1; i < nk; i++)
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < nk; i++)
        buf_printf(sel, "%s%s=%s", i ? "," : "", keys[i],
                   json_string_value(json_object_get(labels, keys[i])));
    free(keys);
    *n_ports = 0;
    const json_t *tp = json_object_get(spec, "targetPorts");
    if (json_is_array(tp)) {
        size_t i;
        const json_t *p;
        json_array_foreach(tp, i, p)
        {
            json_int_t n = json_integer_value(json_object_get(p, "number"));
            if (n > 0 && n < 65536 && *n_ports < MAX_PORTS)
                ports[(*n_ports)++] = (int)n;
        }
    } else {
        json_int_t n = json_integer_value(json_object_get(spec, "targetPortNumber"));
        if (n > 0 && n < 65536)
            ports[(*n_ports)++] = (int)n;
    }
    if (*n_ports == 0) {
        snprintf(why, whylen, "%s: no valid port",
                 json_is_array(tp) ? "spec.targetPorts[].number" : "spec.targetPortNumber");
        return false;
    }
    return true;
}

static void pool_apply(struct router_discovery *d, const json_t *pool)
{
    struct buf sel = BUF_INIT;
    int ports[MAX_PORTS];
    size_t n_ports = 0;
    char why[256];
    if (!parse_pool(d, pool, &sel, ports, &n_ports, why, sizeof why)) {
        LOG_E(LOG_C, "InferencePool %s/%s: %s: keeping the previous endpoints", d->ns, d->name,
              why);
        buf_free(&sel);
        return;
    }
    atomic_store(&d->r->pool_state, ROUTER_POOL_OK);
    bool ports_changed = n_ports != d->n_ports || memcmp(ports, d->ports, n_ports * sizeof *ports);
    bool sel_changed = !d->selector || strcmp(d->selector, sel.data) != 0;
    if (!ports_changed && !sel_changed) {
        buf_free(&sel);
        return;
    }
    LOG_I(LOG_C, "InferencePool %s/%s: selector %s, target port%s %d%s", d->ns, d->name,
          sel.data, n_ports > 1 ? "s" : "", ports[0], n_ports > 1 ? ", ..." : "");
    free(d->selector);
    d->selector = buf_steal(&sel, NULL);
    memcpy(d->ports, ports, sizeof ports);
    d->n_ports = n_ports;
    if (!d->pod_inf) {
        char *path = xasprintf("/api/v1/namespaces/%s/pods", d->ns);
        struct k8s_informer_config pc = {
            .path = path,
            .label_selector = d->selector,
            .on_add = pod_add,
            .on_update = pod_update,
            .on_delete = pod_delete,
            .on_state = pod_state_cb,
            .transform = pod_transform,
            .ctx = d,
            .watch_timeout_s = d->r->cfg.k8s_watch_timeout_s,
        };
        d->pod_inf = k8s_informer_start(d->cl, &pc);
        free(path);
        return;
    }
    if (sel_changed) /* the informer reports pods leaving and joining the selection */
        k8s_informer_set_label_selector(d->pod_inf, d->selector);
    if (ports_changed && !d->sidecar)
        sync_all(d, "target ports changed");
    after_pods(d);
}

static void pool_add(json_t *obj, void *ctx)
{
    pool_apply(ctx, obj);
}

static void pool_update(json_t *old, json_t *obj, void *ctx)
{
    pool_apply(ctx, obj);
}

static void pool_delete(json_t *obj, void *ctx)
{
    struct router_discovery *d = ctx;
    LOG_W(LOG_C, "InferencePool %s/%s deleted: no endpoints from it until it is back", d->ns,
          d->name);
    atomic_store(&d->r->pool_state, ROUTER_POOL_DELETED);
    free(d->selector);
    d->selector = NULL;
    d->n_ports = 0;
    if (d->pod_inf) {
        k8s_informer_stop(d->pod_inf);
        d->pod_inf = NULL;
    }
    if (!d->sidecar)
        sync_all(d, "InferencePool deleted");
    after_pods(d);
}

/* --- start / stop ---------------------------------------------------------------------- */

struct router_discovery *router_discovery_start(struct router *r, uv_loop_t *loop, char *err,
                                                size_t errlen)
{
    const struct router_config *cfg = &r->cfg;
    struct k8s_config kc;
    if (!k8s_config_load(cfg->kubeconfig, NULL, &kc, err, errlen))
        return NULL;
    struct router_discovery *d = xcalloc(1, sizeof *d);
    d->r = r;
    d->sidecar = cfg->sidecar;
    d->name = xstrdup(cfg->pool_name);
    d->ns = xstrdup(cfg->pool_namespace && *cfg->pool_namespace ? cfg->pool_namespace
                                                                  : kc.namespace);
    d->group = xstrdup(cfg->pool_group && *cfg->pool_group ? cfg->pool_group
                                                            : "inference.networking.k8s.io");
    d->version = xstrdup(!strcmp(d->group, "inference.networking.x-k8s.io") ? "v1alpha2" : "v1");
    d->source = xasprintf("pool:%s/%s", d->ns, d->name);
    d->current = json_object();
    pthread_rwlock_init(&d->lock, NULL);
    d->cl = k8s_client_new(loop, &kc, cfg->sidecar ? "tandem-sidecar" : "tandem-router");
    LOG_I(LOG_C, "discovering endpoints from InferencePool %s/%s (%s/%s) via %s (%s)", d->ns,
          d->name, d->group, d->version, kc.server, kc.source);
    k8s_config_free(&kc);
    char *path = xasprintf("/apis/%s/%s/namespaces/%s/inferencepools", d->group, d->version,
                           d->ns);
    char *field = xasprintf("metadata.name=%s", d->name);
    struct k8s_informer_config pc = {
        .path = path,
        .field_selector = field,
        .on_add = pool_add,
        .on_update = pool_update,
        .on_delete = pool_delete,
        .on_state = pool_state_cb,
        .ctx = d,
        .watch_timeout_s = cfg->k8s_watch_timeout_s,
    };
    d->pool_inf = k8s_informer_start(d->cl, &pc);
    free(path);
    free(field);
    return d;
}

/* Stops the watches; the memory goes once the client's handles have closed, which
 * needs the loop to run (router_run does). */
void router_discovery_stop(struct router_discovery *d)
{
    if (!d)
        return;
    if (d->pod_inf)
        k8s_informer_stop(d->pod_inf);
    k8s_informer_stop(d->pool_inf);
    d->pod_inf = d->pool_inf = NULL;
    k8s_client_free(d->cl);
    d->cl = NULL;
}

void router_discovery_free(struct router_discovery *d)
{
    if (!d)
        return;
    json_decref(d->current);
    json_decref(d->allowed_ips);
    pthread_rwlock_destroy(&d->lock);
    free(d->ns);
    free(d->name);
    free(d->group);
    free(d->version);
    free(d->source);
    free(d->selector);
    free(d);
}

const char *router_discovery_pool(const struct router_discovery *d)
{
    return d ? d->source + 5 : "";
}

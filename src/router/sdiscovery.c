/* vllm-router's Kubernetes service discovery (--service-discovery): the workers are the
 * Ready pods (Ready=True, a podIP, not terminating) of one namespace that match a label
 * selector, each at http://POD_IP:--service-discovery-port. Regular mode watches
 * --selector; P/D mode watches --prefill-selector and --decode-selector, and a pod's
 * workers get that role. With --intra-node-data-parallel-size N a pod is N workers,
 * URL@0..URL@N-1, like workers given by URL.
 *
 * Everything here runs on the control loop, through the informers of src/k8s. `current`
 * maps each watched pod (selector index + ns/name) to the worker URL it was given, so a
 * pod's status churn (every probe writes the pod) does not touch the datastore unless
 * its address or readiness changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "k8s/k8s.h"
#include "router/router_internal.h"

#define LOG_C "discovery"

struct sd_watch {
    struct router_sd *d;
    enum sched_role role; /* NONE (regular), PREFILL or DECODE */
    char *selector;       /* "k=v,k2=v2" */
    struct k8s_informer *inf;
};

struct router_sd {
    struct router *r;
    struct k8s_client *cl;
    char *ns;
    struct sd_watch w[2];
    size_t n_w;
    json_t *current; /* "i/ns/name" -> "http://ip:port" */
};

static bool pod_ready(const json_t *pod, const char **ip)
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

static const char *role_name(enum sched_role r)
{
    return r == SCHED_ROLE_PREFILL ? "prefill" : r == SCHED_ROLE_DECODE ? "decode" : NULL;
}

static void remove_workers(struct router_sd *d, const char *base)
{
    for (long long k = 0; k < d->r->cfg.dp_size; k++) {
        char name[320];
        if (d->r->cfg.dp_size > 1)
            snprintf(name, sizeof name, "%s@%lld", base, k);
        else
            snprintf(name, sizeof name, "%s", base);
        if (sched_ds_remove(d->r->ds, name))
            LOG_I(LOG_C, "worker %s removed", name);
    }
}

static void add_workers(struct sd_watch *w, const char *base, const char *ip, const char *pod)
{
    struct router_sd *d = w->d;
    char source[300];
    snprintf(source, sizeof source, "selector:%s", w->selector);
    for (long long k = 0; k < d->r->cfg.dp_size; k++) {
        char name[320], rank[24];
        if (d->r->cfg.dp_size > 1)
            snprintf(name, sizeof name, "%s@%lld", base, k);
        else
            snprintf(name, sizeof name, "%s", base);
        struct sched_endpoint_spec e = {
            .name = name,
            .host = ip,
            .port = (int)d->r->cfg.sd_port,
            .role = w->role,
            .source = source,
        };
        if (role_name(w->role)) {
            e.labels[e.n_labels].key = "llm-d.ai/role";
            e.labels[e.n_labels++].value = (char *)role_name(w->role);
        }
        if (d->r->cfg.dp_size > 1) {
            snprintf(rank, sizeof rank, "%lld", k);
            e.labels[e.n_labels].key = ROUTER_DP_RANK_LABEL;
            e.labels[e.n_labels++].value = rank;
        }
        if (sched_ds_upsert(d->r->ds, &e) == 0)
            LOG_I(LOG_C, "worker %s added (pod %s/%s%s%s)", name, d->ns, pod,
                  role_name(w->role) ? ", role " : "",
                  role_name(w->role) ? role_name(w->role) : "");
    }
}

static void sync_pod(struct sd_watch *w, const json_t *pod, bool deleted)
{
    struct router_sd *d = w->d;
    const char *pname = k8s_obj_name(pod);
    if (!pname)
        return;
    char key[400];
    snprintf(key, sizeof key, "%d/%s", (int)(w - d->w), pname);
    const char *ip = NULL;
    char base[300] = "";
    if (!deleted && pod_ready(pod, &ip)) {
        bool v6 = strchr(ip, ':') != NULL;
        snprintf(base, sizeof base, v6 ? "http://[%s]:%lld" : "http://%s:%lld", ip,
                 d->r->cfg.sd_port);
    }
    const char *old = json_string_value(json_object_get(d->current, key));
    if (old && strcmp(old, base) == 0)
        return;
    if (old) {
        remove_workers(d, old);
        json_object_del(d->current, key);
    }
    if (base[0]) {
        add_workers(w, base, ip, pname);
        json_object_set_new(d->current, key, json_string(base));
    }
}

static void on_add(json_t *obj, void *ctx)
{
    sync_pod(ctx, obj, false);
}

static void on_update(json_t *old, json_t *obj, void *ctx)
{
    sync_pod(ctx, obj, false);
}

static void on_delete(json_t *obj, void *ctx)
{
    sync_pod(ctx, obj, true);
}

static void on_state(enum k8s_informer_state st, const struct k8s_response *why, void *ctx)
{
    struct sd_watch *w = ctx;
    if (st == K8S_INFORMER_SYNCED)
        LOG_I(LOG_C, "pods of %s with %s: listed, watching", w->d->ns, w->selector);
    else if (why && why->code == 403)
        LOG_E(LOG_C, "pods of %s: forbidden: %s (the router needs get, list and watch on pods)",
              w->d->ns, why->message);
    else
        LOG_W(LOG_C, "pods of %s with %s: %d %s (retrying with backoff)", w->d->ns, w->selector,
              why ? why->code : 0, why ? why->message : "");
}

static char *join(const char *const *kv, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(kv[i]) + 1;
    char *out = xcalloc(1, len);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, kv[i]);
    }
    return out;
}

struct router_sd *router_sd_start(struct router *r, uv_loop_t *loop, char *err, size_t errlen)
{
    const struct router_config *cfg = &r->cfg;
    struct k8s_config kc;
    if (!k8s_config_load(cfg->kubeconfig, NULL, &kc, err, errlen))
        return NULL;
    struct router_sd *d = xcalloc(1, sizeof *d);
    d->r = r;
    d->ns = xstrdup(cfg->sd_namespace && *cfg->sd_namespace ? cfg->sd_namespace : kc.namespace);
    d->current = json_object();
    d->cl = k8s_client_new(loop, &kc, "tandem-router");
    if (cfg->pd_router) {
        if (cfg->n_prefill_selector)
            d->w[d->n_w++] = (struct sd_watch){
                d, SCHED_ROLE_PREFILL, join(cfg->prefill_selector, cfg->n_prefill_selector), NULL};
        if (cfg->n_decode_selector)
            d->w[d->n_w++] = (struct sd_watch){
                d, SCHED_ROLE_DECODE, join(cfg->decode_selector, cfg->n_decode_selector), NULL};
    } else {
        d->w[d->n_w++] =
            (struct sd_watch){d, SCHED_ROLE_NONE, join(cfg->selector, cfg->n_selector), NULL};
    }
    char *path = xasprintf("/api/v1/namespaces/%s/pods", d->ns);
    for (size_t i = 0; i < d->n_w; i++) {
        LOG_I(LOG_C, "discovering %s workers: pods of %s with %s, port %lld, via %s (%s)",
              role_name(d->w[i].role) ? role_name(d->w[i].role) : "", d->ns, d->w[i].selector,
              cfg->sd_port, kc.server, kc.source);
        struct k8s_informer_config ic = {
            .path = path,
            .label_selector = d->w[i].selector,
            .on_add = on_add,
            .on_update = on_update,
            .on_delete = on_delete,
            .on_state = on_state,
            .ctx = &d->w[i],
            .watch_timeout_s = cfg->k8s_watch_timeout_s,
        };
        d->w[i].inf = k8s_informer_start(d->cl, &ic);
    }
    free(path);
    k8s_config_free(&kc);
    return d;
}

void router_sd_stop(struct router_sd *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_w; i++) {
        if (d->w[i].inf)
            k8s_informer_stop(d->w[i].inf);
        d->w[i].inf = NULL;
    }
    k8s_client_free(d->cl);
    d->cl = NULL;
}

void router_sd_free(struct router_sd *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_w; i++)
        free(d->w[i].selector);
    json_decref(d->current);
    free(d->ns);
    free(d);
}

/* `tandem ms controller`: reconciles ModelServices on a cluster (docs/kubernetes.md).
 *
 * One libuv loop. Informers watch ModelServices, ConfigMaps (BaseConfigs, and the
 * ConfigMaps we own) and every kind ms_generate can emit (by our owner label). Event
 * handlers put "ns/name" keys on a work queue (a set: a key is queued once, held by one
 * reconcile at a time, re-queued if it changed meanwhile); --concurrency reconciles run at
 * once; a failed key waits 5 ms * 2^n (capped at 1000 s) before it is tried again; every
 * key is re-queued by a periodic resync.
 *
 * A reconcile reads everything from the caches, renders the children with ms_generate
 * (the same code as `tandem ms generate`), and then writes only what differs:
 *   - a child is applied (server-side apply, field manager tandem-modelservice, force)
 *     when it is missing, or when its live object does not contain what we render (a
 *     hand edit); decoupleScaling Deployments get spec.replicas only at creation, under
 *     their own field manager, so `kubectl scale` or an HPA owns them afterwards;
 *   - a child the render no longer produces, labelled and owned by this CR, is deleted;
 *   - status is patched only when the computed status differs from the stored one
 *     (lastTransitionTime moves only when a condition flips).
 * So an idle cluster sees no writes. Events are posted on transitions only.
 *
 * With --leader-elect, a coordination.k8s.io/v1 Lease decides who writes: caches stay
 * warm on standbys; the leader renews every 2 s and exits if it cannot renew within
 * 10 s; SIGTERM releases the lease. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/metrics.h"
#include "k8s/k8s.h"
#include "ms/ms.h"
#include "net/http_server.h"
#include "net/loop.h"

#define LOG_C "controller"
#define MANAGER "tandem-modelservice"
#define MANAGER_REPLICAS "tandem-modelservice-replicas"
#define OWNER_LABEL "llm-d.ai/modelservice"
#define MS_GROUP_VERSION "llm-d.ai/v1alpha1"
#define LEASE_NAME "tandem-modelservice-controller"
#define LEASE_DURATION_S 15
#define RENEW_DEADLINE_S 10
#define RETRY_PERIOD_S 2
#define MAX_KINDS 16

struct ctl;

/* One reconcile in flight. */
struct rec {
    struct ctl *c;
    char *key;
    char ns[256], name[256];
    int pending; /* API calls not answered yet */
    bool failed;
    char why[600];
    char reason[64];
    uint64_t t0;
    json_t *cr;           /* borrowed-then-increfed copy of the cached CR */
    json_t *status;       /* the computed status */
    bool created, updated;
    bool status_written;
};

struct ctl {
    uv_loop_t *loop;
    struct k8s_client *cl;
    const char *ns; /* NULL: all namespaces */
    int concurrency;
    const char *pool_api;
    const char *epp_role;
    struct k8s_informer *ms_inf, *cm_inf;
    struct k8s_informer *child_inf[MAX_KINDS];
    bool child_ready[MAX_KINDS]; /* listed, or its CRD is missing */
    struct child_watch {
        struct ctl *c;
        size_t idx;
    } child_ctx[MAX_KINDS];
    const struct ms_child_kind *kinds;
    size_t n_kinds;
    /* work queue */
    json_t *queued;     /* key -> true: waiting in fifo */
    json_t *active;     /* key -> true: a reconcile runs */
    json_t *dirty;      /* key -> true: changed while active */
    json_t *failures;   /* key -> count */
    json_t *applied;    /* "kind/ns/name" -> "desiredhash:resourceVersion" we last saw */
    json_t *warned;     /* key -> last Warning reason (events on transitions only) */
    char **fifo;
    size_t fifo_head, fifo_len, fifo_cap;
    int running;
    uv_timer_t resync, kick, stop_deadline;
    bool stop_started;
    double resync_s;
    struct retry *retries;
    /* leader election */
    bool leader_elect, leader;
    char *lease_ns;
    char identity[128];
    uv_timer_t lease_timer;
    uint64_t last_renew_ns;
    char observed_record[512]; /* holder|renewTime as last read */
    uint64_t observed_at_ns;
    bool stopping;
    /* admin */
    struct http_server *health, *metrics_srv;
    struct metrics_registry *reg;
    struct metrics_family *reconciles, *api_requests;
    struct metrics_series *duration, *queue_depth, *is_leader;
    int exit_code;
};

static void queue_kick(struct ctl *c);
static void enqueue(struct ctl *c, const char *key);
static bool contains(const json_t *live, const json_t *want);
static void maybe_stop(struct ctl *c);

/* --- small helpers -------------------------------------------------------------------- */

static const char *jstr(const json_t *j, const char *a, const char *b)
{
    const json_t *x = json_object_get(j, a);
    if (b)
        x = json_object_get(x, b);
    return json_string_value(x);
}

/* Reconciles wait for every cache: a child kind whose CRD is missing (404) counts as
 * read (nothing of it can exist). */
static bool synced(const struct ctl *c)
{
    if (!k8s_informer_synced(c->ms_inf) || !k8s_informer_synced(c->cm_inf))
        return false;
    for (size_t i = 0; i < c->n_kinds; i++)
        if (c->child_inf[i] && !c->child_ready[i])
            return false;
    return true;
}

/* Where the first difference is, for the debug log. */
static bool first_diff(const json_t *live, const json_t *want, char *path, size_t cap)
{
    if (json_is_object(want) && json_is_object(live)) {
        const char *k;
        json_t *v;
        size_t l = strlen(path);
        json_object_foreach((json_t *)want, k, v)
        {
            snprintf(path + l, cap - l, ".%s", k);
            if (first_diff(json_object_get(live, k), v, path, cap))
                return true;
        }
        path[l] = '\0';
        return false;
    }
    if (json_is_array(want) && json_is_array(live) &&
        json_array_size(live) == json_array_size(want)) {
        size_t l = strlen(path);
        for (size_t i = 0; i < json_array_size(want); i++) {
            snprintf(path + l, cap - l, "[%zu]", i);
            if (first_diff(json_array_get(live, i), json_array_get(want, i), path, cap))
                return true;
        }
        path[l] = '\0';
        return false;
    }
    return !contains(live, want);
}

/* Does `live` contain every field of `want` (objects key by key, arrays element by
 * element, scalars equal)? What the server adds (defaults, status) does not matter. */
static bool contains(const json_t *live, const json_t *want)
{
    if (!live) /* the server omits zero values (omitempty): readOnly: false, [] ... */
        return json_is_false(want) || json_is_null(want) ||
               (json_is_integer(want) && json_integer_value(want) == 0) ||
               (json_is_string(want) && !*json_string_value(want)) ||
               (json_is_array(want) && !json_array_size(want)) ||
               (json_is_object(want) && !json_object_size(want));
    if (json_is_object(want)) {
        if (!json_is_object(live))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)want, k, v)
        {
            if (!contains(json_object_get(live, k), v))
                return false;
        }
        return true;
    }
    if (json_is_array(want)) {
        if (!json_is_array(live) || json_array_size(live) != json_array_size(want))
            return false;
        for (size_t i = 0; i < json_array_size(want); i++)
            if (!contains(json_array_get(live, i), json_array_get(want, i)))
                return false;
        return true;
    }
    if (json_is_integer(want) && json_is_string(live)) { /* intstr: 8000 vs "8000" */
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(want));
        return !strcmp(n, json_string_value(live));
    }
    return json_equal((json_t *)live, (json_t *)want);
}

static const struct ms_child_kind *kind_of(struct ctl *c, const json_t *obj, size_t *idx)
{
    const char *av = jstr(obj, "apiVersion", NULL), *k = jstr(obj, "kind", NULL);
    for (size_t i = 0; av && k && i < c->n_kinds; i++)
        if (!strcmp(c->kinds[i].api_version, av) && !strcmp(c->kinds[i].kind, k)) {
            if (idx)
                *idx = i;
            return &c->kinds[i];
        }
    return NULL;
}

static char *obj_path(const struct ms_child_kind *k, const char *ns, const char *name)
{
    bool core = !strchr(k->api_version, '/');
    return xasprintf("/%s/%s/namespaces/%s/%s%s%s", core ? "api" : "apis", k->api_version, ns,
                     k->plural, name ? "/" : "", name ? name : "");
}

static const json_t *cached(struct ctl *c, size_t kind, const char *ns, const char *name)
{
    if (!c->child_inf[kind])
        return NULL;
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    return json_object_get(k8s_informer_cache(c->child_inf[kind]), key);
}

/* --- events --------------------------------------------------------------------------- */

static void on_event_done(const struct k8s_response *r, void *ctx)
{
    if (r->status != 201)
        LOG_W(LOG_C, "posting an Event failed: %d %s: %s", r->status, r->reason, r->message);
}

static void event(struct ctl *c, const json_t *cr, const char *type, const char *reason,
                  const char *action, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void event(struct ctl *c, const json_t *cr, const char *type, const char *reason,
                  const char *action, const char *fmt, ...)
{
    char note[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note, sizeof note, fmt, ap);
    va_end(ap);
    k8s_event(c->cl, cr, type, reason, action, note, "llm-d.ai/tandem-modelservice", c->identity,
              on_event_done, NULL);
}

/* --- status --------------------------------------------------------------------------- */

static void deploy_counts(struct ctl *c, const char *ns, const char *name, bool *exists,
                          long long *desired, long long *ready, long long *avail)
{
    size_t di = 0;
    for (size_t i = 0; i < c->n_kinds; i++)
        if (!strcmp(c->kinds[i].kind, "Deployment"))
            di = i;
    const json_t *d = cached(c, di, ns, name);
    *exists = d != NULL;
    json_t *spec = json_object_get(d, "spec"), *st = json_object_get(d, "status");
    json_t *rep = json_object_get(spec, "replicas");
    *desired = rep ? json_integer_value(rep) : 1;
    *ready = json_integer_value(json_object_get(st, "readyReplicas"));
    *avail = json_integer_value(json_object_get(st, "availableReplicas"));
}

static json_t *find_condition(const json_t *status, const char *type)
{
    size_t i;
    json_t *cnd;
    json_array_foreach(json_object_get(status, "conditions"), i, cnd)
    {
        const char *t = json_string_value(json_object_get(cnd, "type"));
        if (t && !strcmp(t, type))
            return cnd;
    }
    return NULL;
}

static void set_condition(json_t *status, const json_t *old_status, const char *type, bool on,
                          const char *reason, const char *message, long long gen)
{
    const json_t *old = find_condition(old_status, type);
    const char *st = on ? "True" : "False";
    const char *when = NULL;
    char now[40];
    if (old && !strcmp(json_string_value(json_object_get(old, "status")) ?: "", st))
        when = json_string_value(json_object_get(old, "lastTransitionTime"));
    if (!when) {
        k8s_micro_time(now, sizeof now);
        now[19] = 'Z'; /* metav1.Time: seconds */
        now[20] = '\0';
        when = now;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", message);
    json_array_append_new(json_object_get(status, "conditions"),
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "type", type, "status", st,
                                    "reason", reason, "message", msg, "lastTransitionTime",
                                    when, "observedGeneration", (json_int_t)gen));
}

/* The status from the children in the caches; err/reason when the reconcile failed. */
static json_t *compute_status(struct ctl *c, struct rec *r, const json_t *objs)
{
    const json_t *old = json_object_get(r->cr, "status");
    long long gen = json_integer_value(json_object_get(json_object_get(r->cr, "metadata"),
                                                       "generation"));
    json_t *st = json_object();
    json_object_set_new(st, "observedGeneration", json_integer(gen));
    json_object_set_new(st, "conditions", json_array());
    static const char *const roles[] = {"prefill", "decode", "epp"};
    bool all_ready = true, any = false;
    char notready[256] = "";
    for (int i = 0; i < 3; i++) {
        char dname[300];
        snprintf(dname, sizeof dname, "%s-%s", r->name, roles[i]);
        bool wanted = false;
        size_t k;
        json_t *o;
        char sane[300];
        json_array_foreach((json_t *)objs, k, o)
        {
            const char *kind = jstr(o, "kind", NULL), *n = jstr(o, "metadata", "name");
            if (kind && n && !strcmp(kind, "Deployment")) {
                size_t l = strlen(n), rl = strlen(roles[i]);
                if (l > rl + 1 && n[l - rl - 1] == '-' && !strcmp(n + l - rl, roles[i])) {
                    wanted = true;
                    snprintf(sane, sizeof sane, "%s", n);
                }
            }
        }
        bool exists = false;
        long long desired = 0, ready = 0, avail = 0;
        if (wanted)
            deploy_counts(c, r->ns, sane, &exists, &desired, &ready, &avail);
        if (!wanted || !exists)
            desired = ready = avail = 0;
        char key[40], val[64];
        snprintf(key, sizeof key, "%sReady", roles[i]);
        snprintf(val, sizeof val, "%lld/%lld", ready, desired);
        json_object_set_new(st, key, json_string(val));
        snprintf(key, sizeof key, "%sAvailable", roles[i]);
        json_object_set_new(st, key, json_integer(avail));
        if (wanted) {
            any = true;
            snprintf(key, sizeof key, "%sDeploymentRef", roles[i]);
            if (exists)
                json_object_set_new(st, key, json_string(sane));
            if (!exists || avail < desired || ready < desired) {
                all_ready = false;
                snprintf(notready + strlen(notready), sizeof notready - strlen(notready),
                         "%s%s %lld/%lld", notready[0] ? ", " : "", roles[i], ready, desired);
            }
        }
    }
    /* references of the other children that exist */
    json_t *cms = json_array();
    size_t k;
    json_t *o;
    json_array_foreach((json_t *)objs, k, o)
    {
        size_t ki;
        const struct ms_child_kind *kd = kind_of(c, o, &ki);
        const char *n = jstr(o, "metadata", "name");
        if (!kd || !n || !cached(c, ki, r->ns, n))
            continue;
        const char *field = NULL;
        if (!strcmp(kd->kind, "InferencePool"))
            field = "inferencePoolRef";
        else if (!strcmp(kd->kind, "InferenceModel"))
            field = "inferenceModelRef";
        else if (!strcmp(kd->kind, "HTTPRoute"))
            field = "httpRouteRef";
        else if (!strcmp(kd->kind, "RoleBinding"))
            field = "eppRoleBindingRef";
        else if (!strcmp(kd->kind, "ConfigMap"))
            json_array_append_new(cms, json_string(n));
        else if (!strcmp(kd->kind, "ServiceAccount"))
            field = strstr(n, "-epp-sa") ? "eppServiceAccountRef" : "pdServiceAccountRef";
        else if (!strcmp(kd->kind, "Service"))
            field = strstr(n, "-epp-service")       ? "eppServiceRef"
                    : strstr(n, "-service-prefill") ? "prefillServiceRef"
                                                    : "decodeServiceRef";
        if (field)
            json_object_set_new(st, field, json_string(n));
    }
    if (json_array_size(cms))
        json_object_set_new(st, "configMapRefs", cms);
    else
        json_decref(cms);
    if (r->failed) {
        set_condition(st, old, "Ready", false, r->reason, r->why, gen);
        set_condition(st, old, "Progressing", false, r->reason, r->why, gen);
        set_condition(st, old, "Degraded", true, r->reason, r->why, gen);
    } else {
        char m[400];
        snprintf(m, sizeof m, "%s", all_ready ? "every Deployment is available"
                                              : "waiting for Deployments: ");
        if (!all_ready)
            snprintf(m + strlen(m), sizeof m - strlen(m), "%s", notready);
        set_condition(st, old, "Ready", all_ready, all_ready ? "AllAvailable" : "Progressing",
                      any ? m : "no Deployments", gen);
        set_condition(st, old, "Progressing", !all_ready,
                      all_ready ? "Reconciled" : "DeploymentsNotReady", m, gen);
        set_condition(st, old, "Degraded", false, "AsExpected", "children applied", gen);
    }
    return st;
}

/* --- one reconcile -------------------------------------------------------------------- */

static void rec_finish(struct rec *r);

static void rec_done_call(struct rec *r)
{
    if (--r->pending == 0)
        rec_finish(r);
}

static void rec_fail(struct rec *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rec_fail(struct rec *r, const char *reason, const char *fmt, ...)
{
    if (r->failed)
        return; /* the first failure names the problem */
    r->failed = true;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
}

struct apply_ctx {
    struct rec *r;
    char *memo_key;
    char *hash;
    json_t *obj;         /* what was applied (for the replicas follow-up) */
    long long replicas;  /* decoupleScaling at creation: apply this after, -1 none */
    char *path;
};

static void apply_ctx_free(struct apply_ctx *a)
{
    free(a->memo_key);
    free(a->hash);
    free(a->path);
    json_decref(a->obj);
    free(a);
}

static void on_replicas(const struct k8s_response *resp, void *ctx)
{
    struct apply_ctx *a = ctx;
    if (resp->status != 200 && resp->status != 201)
        rec_fail(a->r, "ApplyFailed", "setting the initial replicas of %s: %d %s: %s",
                 a->path, resp->code, resp->reason, resp->message);
    struct rec *r = a->r;
    apply_ctx_free(a);
    rec_done_call(r);
}

static void on_applied(const struct k8s_response *resp, void *ctx)
{
    struct apply_ctx *a = ctx;
    struct rec *r = a->r;
    if (resp->status == 200 || resp->status == 201) {
        if (resp->status == 201)
            r->created = true;
        else
            r->updated = true;
        json_t *live = json_loadb(resp->body, resp->len, 0, NULL);
        const char *rv = k8s_obj_rv(live);
        char memo[200];
        snprintf(memo, sizeof memo, "%s:%s", a->hash, rv ? rv : "");
        json_object_set_new(r->c->applied, a->memo_key, json_string(memo));
        json_decref(live);
        LOG_I(LOG_C, "%s/%s: %s %s", r->ns, r->name, resp->status == 201 ? "created" : "updated",
              a->path);
        if (a->replicas >= 0) {
            json_t *body = json_pack("{s:O, s:O, s:{s:s, s:s}, s:{s:I}}", "apiVersion",
                                     json_object_get(a->obj, "apiVersion"), "kind",
                                     json_object_get(a->obj, "kind"), "metadata", "name",
                                     jstr(a->obj, "metadata", "name"), "namespace", r->ns,
                                     "spec", "replicas", (json_int_t)a->replicas);
            a->replicas = -1;
            k8s_apply(r->c->cl, a->path, body, MANAGER_REPLICAS, true, on_replicas, a);
            json_decref(body);
            return;
        }
    } else {
        rec_fail(r, "ApplyFailed", "applying %s: %d %s: %s", a->path, resp->code, resp->reason,
                 resp->message);
    }
    apply_ctx_free(a);
    rec_done_call(r);
}

static void on_deleted(const struct k8s_response *resp, void *ctx)
{
    struct apply_ctx *a = ctx;
    struct rec *r = a->r;
    if (resp->status == 200 || resp->status == 202 || resp->status == 404) {
        LOG_I(LOG_C, "%s/%s: pruned %s", r->ns, r->name, a->path);
        event(r->c, r->cr, "Normal", "Pruned", "Prune", "deleted %s: the render no longer has it",
              a->path);
    } else {
        rec_fail(r, "PruneFailed", "deleting %s: %d %s: %s", a->path, resp->code, resp->reason,
                 resp->message);
    }
    apply_ctx_free(a);
    rec_done_call(r);
}

static void on_status(const struct k8s_response *resp, void *ctx)
{
    struct rec *r = ctx;
    if (resp->status != 200)
        rec_fail(r, "StatusFailed", "status patch: %d %s: %s", resp->code, resp->reason,
                 resp->message);
    rec_done_call(r);
}

/* Adds our label and the owner reference; decoupleScaling handling for Deployments.
 * Returns the replicas to set after creation, or -1. */
static long long own(struct rec *r, json_t *obj, bool decouple, bool exists)
{
    json_t *md = json_object_get(obj, "metadata");
    json_t *labels = json_object_get(md, "labels");
    if (!json_is_object(labels)) {
        labels = json_object();
        json_object_set_new(md, "labels", labels);
    }
    json_object_set_new(labels, OWNER_LABEL, json_string(r->name));
    json_object_set_new(labels, "app.kubernetes.io/managed-by", json_string("tandem"));
    json_object_set_new(md, "ownerReferences",
                        json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]", "apiVersion",
                                  MS_GROUP_VERSION, "kind", "ModelService", "name", r->name,
                                  "uid", jstr(r->cr, "metadata", "uid") ?: "", "controller", 1,
                                  "blockOwnerDeletion", 1));
    const char *kind = jstr(obj, "kind", NULL);
    const char *role = json_string_value(json_object_get(labels, "llm-d.ai/role"));
    if (!decouple || !kind || strcmp(kind, "Deployment") || !role)
        return -1;
    json_t *spec = json_object_get(obj, "spec");
    json_t *rep = json_object_get(spec, "replicas");
    long long n = rep ? json_integer_value(rep) : 1;
    json_object_del(spec, "replicas"); /* never under our main field manager */
    return exists ? -1 : n;
}

static void reconcile(struct ctl *c, const char *key)
{
    struct rec *r = xcalloc(1, sizeof *r);
    r->c = c;
    r->key = xstrdup(key);
    r->t0 = clock_monotonic_ns();
    r->pending = 1; /* this function's own hold */
    const char *slash = strchr(key, '/');
    snprintf(r->ns, sizeof r->ns, "%.*s", (int)(slash - key), key);
    snprintf(r->name, sizeof r->name, "%s", slash + 1);
    json_t *cr = json_object_get(k8s_informer_cache(c->ms_inf), key);
    if (!cr || json_object_get(json_object_get(cr, "metadata"), "deletionTimestamp")) {
        /* gone or going: the garbage collector removes the children */
        rec_done_call(r);
        return;
    }
    r->cr = json_incref(cr);
    /* the CR, checked as `ms generate` checks a file */
    char *text = json_dumps(cr, JSON_COMPACT);
    char label[600];
    snprintf(label, sizeof label, "modelservice %s", key);
    struct ms_cr mc;
    char err[1024];
    json_t *objs = NULL;
    if (!ms_cr_parse(text, strlen(text), label, &mc, err, sizeof err)) {
        free(text);
        rec_fail(r, "InvalidSpec", "%s", err);
        rec_done_call(r);
        return;
    }
    free(text);
    /* the BaseConfig */
    const json_t *base = NULL;
    const json_t *ref = json_object_get(json_object_get(cr, "spec"), "baseConfigMapRef");
    if (ref) {
        const char *bn = jstr(ref, "name", NULL), *bns = jstr(ref, "namespace", NULL);
        char bkey[600];
        snprintf(bkey, sizeof bkey, "%s/%s", bns && *bns ? bns : r->ns, bn ? bn : "");
        base = json_object_get(k8s_informer_cache(c->cm_inf), bkey);
        if (!base) {
            ms_cr_free(&mc);
            rec_fail(r, "BaseConfigNotFound",
                     "spec.baseConfigMapRef: ConfigMap %s not found", bkey);
            rec_done_call(r);
            return;
        }
    }
    struct ms_gen_opts o = {.epp_cluster_role = c->epp_role,
                            .pool_api = c->pool_api,
                            .namespace = r->ns,
                            .base_obj = base,
                            .base_name = NULL}; /* errors name <configmap NS/NAME> */
    objs = ms_generate(&mc, &o, err, sizeof err);
    ms_cr_free(&mc);
    if (!objs) {
        rec_fail(r, "RenderFailed", "%s", err);
        rec_done_call(r);
        return;
    }
    bool decouple = json_is_true(json_object_get(json_object_get(cr, "spec"), "decoupleScaling"));
    json_t *desired = json_object(); /* "kind/name" -> true */
    size_t i;
    json_t *obj;
    json_array_foreach(objs, i, obj)
    {
        size_t ki;
        const struct ms_child_kind *kd = kind_of(c, obj, &ki);
        const char *name = jstr(obj, "metadata", "name");
        if (!kd || !name)
            continue;
        char dk[600];
        snprintf(dk, sizeof dk, "%zu/%s", ki, name);
        json_object_set_new(desired, dk, json_true());
        const json_t *live = cached(c, ki, r->ns, name);
        json_t *want = json_deep_copy(obj);
        long long later = own(r, want, decouple, live != NULL);
        /* skip when the live object already holds what we render */
        char *dump = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        char hash[20];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)hash_str(dump, 0));
        free(dump);
        char memo_key[700];
        snprintf(memo_key, sizeof memo_key, "%s/%s/%s", kd->kind, r->ns, name);
        const char *memo = json_string_value(json_object_get(c->applied, memo_key));
        const char *lrv = k8s_obj_rv(live);
        char expect[200];
        snprintf(expect, sizeof expect, "%s:%s", hash, lrv ? lrv : "");
        bool same = live && ((memo && !strcmp(memo, expect)) || contains(live, want));
        if (live && !same && log_enabled(LOG_DEBUG)) {
            char where[512] = "";
            first_diff(live, want, where, sizeof where);
            LOG_D(LOG_C, "%s/%s: %s %s differs at %s", r->ns, r->name, kd->kind, name, where);
        }
        if (same) {
            json_object_set_new(c->applied, memo_key, json_string(expect));
            json_decref(want);
            continue;
        }
        struct apply_ctx *a = xcalloc(1, sizeof *a);
        a->r = r;
        a->memo_key = xstrdup(memo_key);
        a->hash = xstrdup(hash);
        a->obj = json_incref(want);
        a->replicas = later;
        a->path = obj_path(kd, r->ns, name);
        r->pending++;
        k8s_apply(c->cl, a->path, want, MANAGER, true, on_applied, a);
        json_decref(want);
    }
    /* prune: ours (label + owner uid), not rendered any more */
    const char *uid = jstr(cr, "metadata", "uid");
    for (size_t ki = 0; ki < c->n_kinds; ki++) {
        if (!c->child_inf[ki])
            continue;
        const char *k;
        json_t *live;
        json_object_foreach((json_t *)k8s_informer_cache(c->child_inf[ki]), k, live)
        {
            const char *lns = k8s_obj_namespace(live), *ln = k8s_obj_name(live);
            const char *owner = jstr(json_object_get(live, "metadata"), "labels", OWNER_LABEL);
            if (!lns || !ln || strcmp(lns, r->ns) || !owner || strcmp(owner, r->name))
                continue;
            bool owned = false;
            size_t j;
            json_t *orf;
            json_array_foreach(json_object_get(json_object_get(live, "metadata"),
                                               "ownerReferences"),
                               j, orf)
            {
                const char *ou = jstr(orf, "uid", NULL);
                owned = owned || (ou && uid && !strcmp(ou, uid));
            }
            char dk[600];
            snprintf(dk, sizeof dk, "%zu/%s", ki, ln);
            if (!owned || json_object_get(desired, dk) ||
                json_object_get(json_object_get(live, "metadata"), "deletionTimestamp"))
                continue;
            struct apply_ctx *a = xcalloc(1, sizeof *a);
            a->r = r;
            a->path = obj_path(&c->kinds[ki], r->ns, ln);
            a->replicas = -1;
            r->pending++;
            static const char del[] = "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                                      "\"propagationPolicy\":\"Background\"}";
            k8s_request(c->cl, "DELETE", a->path, "application/json", del, sizeof del - 1,
                        on_deleted, a);
        }
    }
    json_decref(desired);
    r->status = compute_status(c, r, objs);
    json_decref(objs);
    rec_done_call(r);
}

/* A failed key comes back after its backoff (one timer per failure). */
struct retry {
    uv_timer_t t;
    struct ctl *c;
    char *key;
    struct retry *prev, *next; /* c->retries, so shutdown can close them */
};

static void retry_closed(uv_handle_t *h)
{
    struct retry *rt = h->data;
    free(rt->key);
    free(rt);
}

static void retry_drop(struct retry *rt)
{
    struct ctl *c = rt->c;
    if (rt->prev)
        rt->prev->next = rt->next;
    else
        c->retries = rt->next;
    if (rt->next)
        rt->next->prev = rt->prev;
    uv_close((uv_handle_t *)&rt->t, retry_closed);
}

static void retry_fire(uv_timer_t *t)
{
    struct retry *rt = t->data;
    if (!rt->c->stopping)
        enqueue(rt->c, rt->key);
    retry_drop(rt);
}

static void retry_later(struct ctl *c, const char *key, double delay_s)
{
    struct retry *rt = xcalloc(1, sizeof *rt);
    rt->c = c;
    rt->key = xstrdup(key);
    rt->next = c->retries;
    if (c->retries)
        c->retries->prev = rt;
    c->retries = rt;
    uv_timer_init(c->loop, &rt->t);
    rt->t.data = rt;
    uv_timer_start(&rt->t, retry_fire, (uint64_t)(delay_s * 1e3), 0);
}

static bool status_differs(const json_t *old, const json_t *now)
{
    return !old || !json_equal((json_t *)old, (json_t *)now);
}

static void rec_free(struct rec *r)
{
    json_decref(r->cr);
    json_decref(r->status);
    free(r->key);
    free(r);
}

static void rec_finish(struct rec *r)
{
    struct ctl *c = r->c;
    if (r->cr && !r->status_written) {
        /* after the writes: status from the caches, or the failure */
        if (!r->status || r->failed) {
            json_decref(r->status);
            json_t *none = json_array();
            r->status = compute_status(c, r, none);
            json_decref(none);
        }
        const json_t *old = json_object_get(r->cr, "status");
        r->status_written = true;
        if (status_differs(old, r->status)) {
            char *path = xasprintf("/apis/%s/namespaces/%s/modelservices/%s", MS_GROUP_VERSION,
                                   r->ns, r->name);
            json_t *patch = json_pack("{s:O}", "status", r->status);
            /* conditions replace the old list whole (merge patch); fields we no longer
             * compute are removed */
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(r->cr, "status"), k, v)
            {
                if (!json_object_get(r->status, k))
                    json_object_set_new(json_object_get(patch, "status"), k, json_null());
            }
            r->pending++;
            k8s_patch_status(c->cl, path, patch, on_status, r);
            json_decref(patch);
            free(path);
            return;
        }
    }
    /* events on transitions */
    const char *last = json_string_value(json_object_get(c->warned, r->key));
    if (r->cr && r->failed && (!last || strcmp(last, r->reason))) {
        event(c, r->cr, "Warning", r->reason, "Reconcile", "%s", r->why);
        json_object_set_new(c->warned, r->key, json_string(r->reason));
        LOG_W(LOG_C, "%s: %s: %s", r->key, r->reason, r->why);
    } else if (!r->failed && last) {
        json_object_del(c->warned, r->key);
        LOG_I(LOG_C, "%s: recovered", r->key);
    }
    if (r->cr && !r->failed && (r->created || r->updated))
        event(c, r->cr, "Normal", r->created ? "Created" : "Updated", "Reconcile",
              "children %s from the BaseConfig and the spec",
              r->created ? "created" : "updated");
    double secs = (double)(clock_monotonic_ns() - r->t0) / 1e9;
    metrics_histogram_observe(c->duration, secs);
    const char *result = r->failed ? "error" : "success";
    metrics_counter_inc(metrics_series_get(c->reconciles, &result));
    /* the queue */
    json_object_del(c->active, r->key);
    c->running--;
    if (r->failed && !c->stopping) {
        json_int_t n = json_integer_value(json_object_get(c->failures, r->key));
        json_object_set_new(c->failures, r->key, json_integer(n + 1));
        double delay = 0.005 * (double)(1ull << (n < 20 ? n : 20));
        if (delay > 1000)
            delay = 1000;
        retry_later(c, r->key, delay);
    } else {
        json_object_del(c->failures, r->key);
    }
    if (json_object_get(c->dirty, r->key)) {
        json_object_del(c->dirty, r->key);
        enqueue(c, r->key);
    }
    rec_free(r);
    queue_kick(c);
    maybe_stop(c);
}

/* --- the work queue --------------------------------------------------------------------- */

static void enqueue(struct ctl *c, const char *key)
{
    if (c->stopping)
        return;
    if (json_object_get(c->active, key)) {
        json_object_set_new(c->dirty, key, json_true());
        return;
    }
    if (json_object_get(c->queued, key))
        return;
    json_object_set_new(c->queued, key, json_true());
    if (c->fifo_head + c->fifo_len == c->fifo_cap) {
        if (c->fifo_head) {
            memmove(c->fifo, c->fifo + c->fifo_head, c->fifo_len * sizeof *c->fifo);
            c->fifo_head = 0;
        } else {
            c->fifo_cap = c->fifo_cap ? c->fifo_cap * 2 : 64;
            c->fifo = xrealloc(c->fifo, c->fifo_cap * sizeof *c->fifo);
        }
    }
    c->fifo[c->fifo_head + c->fifo_len++] = xstrdup(key);
    queue_kick(c);
}

static void on_kick(uv_timer_t *t)
{
    struct ctl *c = t->data;
    metrics_gauge_set(c->queue_depth, (double)c->fifo_len);
    if (c->stopping || (c->leader_elect && !c->leader) || !synced(c))
        return;
    while (c->fifo_len && c->running < c->concurrency) {
        char *key = c->fifo[c->fifo_head++];
        c->fifo_len--;
        if (!c->fifo_len)
            c->fifo_head = 0;
        json_object_del(c->queued, key);
        json_object_set_new(c->active, key, json_true());
        c->running++;
        reconcile(c, key);
        free(key);
    }
    metrics_gauge_set(c->queue_depth, (double)c->fifo_len);
}

/* Runs the queue on the next loop turn (never from inside an informer callback). */
static void queue_kick(struct ctl *c)
{
    if (!c->stopping)
        uv_timer_start(&c->kick, on_kick, 0, 0);
}

static void enqueue_all(struct ctl *c)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)k8s_informer_cache(c->ms_inf), k, v) enqueue(c, k);
}

static void on_resync(uv_timer_t *t)
{
    enqueue_all(t->data);
}

/* --- informer handlers ------------------------------------------------------------------ */

static void ms_key(const json_t *obj, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", k8s_obj_namespace(obj) ?: "", k8s_obj_name(obj) ?: "");
}

static void ms_add(json_t *obj, void *ctx)
{
    char key[600];
    ms_key(obj, key, sizeof key);
    enqueue(ctx, key);
}

static void ms_update(json_t *old, json_t *obj, void *ctx)
{
    /* our own status writes change resourceVersion only: the spec (generation), labels
     * and deletion are what matter */
    const json_t *om = json_object_get(old, "metadata"), *nm = json_object_get(obj, "metadata");
    if (json_equal(json_object_get(om, "generation"), json_object_get(nm, "generation")) &&
        json_equal(json_object_get(om, "labels"), json_object_get(nm, "labels")) &&
        !json_object_get(nm, "deletionTimestamp"))
        return;
    ms_add(obj, ctx);
}

static void ms_delete(json_t *obj, void *ctx)
{
    struct ctl *c = ctx;
    char key[600];
    ms_key(obj, key, sizeof key);
    json_object_del(c->failures, key);
    json_object_del(c->warned, key);
}

/* A child changed: its owner reconciles. */
static void owner_event(struct ctl *c, json_t *obj)
{
    const char *owner = jstr(json_object_get(obj, "metadata"), "labels", OWNER_LABEL);
    const char *ns = k8s_obj_namespace(obj);
    if (!owner || !ns)
        return;
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ns, owner);
    if (json_object_get(k8s_informer_cache(c->ms_inf), key))
        enqueue(c, key);
}

static void child_event(json_t *obj, void *ctx)
{
    owner_event(((struct child_watch *)ctx)->c, obj);
}

static void child_update(json_t *old, json_t *obj, void *ctx)
{
    child_event(obj, ctx);
}

static void child_state(enum k8s_informer_state st, const struct k8s_response *why, void *ctx)
{
    struct child_watch *w = ctx;
    struct ctl *c = w->c;
    if (st == K8S_INFORMER_SYNCED || (why && why->code == 404)) {
        if (!c->child_ready[w->idx] && st != K8S_INFORMER_SYNCED)
            LOG_W(LOG_C, "no %s API (%s): its CRD is not installed; ModelServices that render "
                         "one will fail to apply it",
                  c->kinds[w->idx].kind, c->kinds[w->idx].api_version);
        c->child_ready[w->idx] = true;
        queue_kick(c);
        return;
    }
    if (why)
        LOG_W(LOG_C, "watch %s: %d %s: %s (retrying)", c->kinds[w->idx].plural, why->code,
              why->reason, why->message);
}

/* A ConfigMap changed: every CR whose BaseConfig it is, and its owner if it is ours. */
static void cm_event(json_t *obj, void *ctx)
{
    struct ctl *c = ctx;
    owner_event(c, obj);
    const char *ns = k8s_obj_namespace(obj), *name = k8s_obj_name(obj);
    const char *k;
    json_t *cr;
    json_object_foreach((json_t *)k8s_informer_cache(c->ms_inf), k, cr)
    {
        const json_t *ref = json_object_get(json_object_get(cr, "spec"), "baseConfigMapRef");
        const char *bn = jstr(ref, "name", NULL), *bns = jstr(ref, "namespace", NULL);
        if (!bns || !*bns)
            bns = k8s_obj_namespace(cr);
        if (bn && ns && name && !strcmp(bn, name) && bns && !strcmp(bns, ns))
            enqueue(c, k);
    }
}

static void cm_update(json_t *old, json_t *obj, void *ctx)
{
    if (json_equal(json_object_get(old, "data"), json_object_get(obj, "data")) &&
        json_equal(json_object_get(json_object_get(old, "metadata"), "labels"),
                   json_object_get(json_object_get(obj, "metadata"), "labels")))
        return;
    cm_event(obj, ctx);
}

static void on_inf_state(enum k8s_informer_state st, const struct k8s_response *why, void *ctx)
{
    struct ctl *c = ctx;
    if (st == K8S_INFORMER_SYNCED) {
        queue_kick(c);
        return;
    }
    if (why && why->code != 404) /* a missing optional CRD (pools, routes) is expected */
        LOG_W(LOG_C, "watch: %d %s: %s (retrying)", why->code, why->reason, why->message);
}

static struct k8s_informer *watch(struct ctl *c, const char *api_version, const char *plural,
                                  const char *selector, void (*add)(json_t *, void *),
                                  void (*upd)(json_t *, json_t *, void *),
                                  void (*del)(json_t *, void *), struct child_watch *child)
{
    bool core = !strchr(api_version, '/');
    char *path = c->ns ? xasprintf("/%s/%s/namespaces/%s/%s", core ? "api" : "apis",
                                   api_version, c->ns, plural)
                       : xasprintf("/%s/%s/%s", core ? "api" : "apis", api_version, plural);
    struct k8s_informer_config ic = {.path = path,
                                     .label_selector = selector,
                                     .on_add = add,
                                     .on_update = upd,
                                     .on_delete = del,
                                     .on_state = child ? child_state : on_inf_state,
                                     .ctx = child ? (void *)child : (void *)c};
    struct k8s_informer *inf = k8s_informer_start(c->cl, &ic);
    free(path);
    return inf;
}

/* --- leader election (coordination.k8s.io/v1 Lease) ------------------------------------ */

static void lease_tick(uv_timer_t *t);

static void become_leader(struct ctl *c)
{
    if (c->leader)
        return;
    c->leader = true;
    c->last_renew_ns = clock_monotonic_ns();
    metrics_gauge_set(c->is_leader, 1);
    LOG_I(LOG_C, "leader election: %s is the leader (lease %s/%s)", c->identity, c->lease_ns,
          LEASE_NAME);
    enqueue_all(c);
    queue_kick(c);
}

static void on_lease_write(const struct k8s_response *r, void *ctx)
{
    struct ctl *c = ctx;
    if (r->status == 200 || r->status == 201) {
        if (!c->stopping)
            become_leader(c);
        c->last_renew_ns = clock_monotonic_ns();
        return;
    }
    if (r->status == 409) {
        if (c->leader)
            LOG_W(LOG_C, "leader election: lost the lease (409)");
        c->leader = false;
        metrics_gauge_set(c->is_leader, 0);
    }
}

static void on_lease_get(const struct k8s_response *r, void *ctx)
{
    struct ctl *c = ctx;
    if (c->stopping)
        return;
    if (r->status == 404) {
        k8s_lease_create(c->cl, c->lease_ns, LEASE_NAME, c->identity, LEASE_DURATION_S,
                         on_lease_write, c);
        return;
    }
    if (r->status != 200)
        return; /* retried on the next tick; the leader's deadline check runs there */
    json_t *lease = json_loadb(r->body, r->len, 0, NULL);
    json_t *spec = json_object_get(lease, "spec");
    char holder_buf[256];
    snprintf(holder_buf, sizeof holder_buf, "%s", jstr(spec, "holderIdentity", NULL) ?: "");
    const char *holder = holder_buf[0] ? holder_buf : NULL; /* a copy: spec changes below */
    const char *renew = jstr(spec, "renewTime", NULL);
    char record[512];
    snprintf(record, sizeof record, "%s|%s", holder ?: "", renew ?: "");
    uint64_t now = clock_monotonic_ns();
    if (strcmp(record, c->observed_record)) { /* local time of each change we see */
        snprintf(c->observed_record, sizeof c->observed_record, "%s", record);
        c->observed_at_ns = now;
    }
    bool mine = holder && !strcmp(holder, c->identity);
    json_int_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    if (dur <= 0)
        dur = LEASE_DURATION_S;
    bool expired = !holder || !*holder || now - c->observed_at_ns > (uint64_t)dur * 1000000000ull;
    if (mine || expired) {
        char ts[40];
        k8s_micro_time(ts, sizeof ts);
        if (!mine) {
            json_object_set_new(spec, "holderIdentity", json_string(c->identity));
            json_object_set_new(spec, "acquireTime", json_string(ts));
            json_object_set_new(spec, "leaseTransitions",
                                json_integer(json_integer_value(
                                                 json_object_get(spec, "leaseTransitions")) +
                                             1));
            LOG_I(LOG_C, "leader election: taking over the lease from '%s'", holder ?: "");
        }
        json_object_set_new(spec, "leaseDurationSeconds", json_integer(LEASE_DURATION_S));
        json_object_set_new(spec, "renewTime", json_string(ts));
        k8s_lease_update(c->cl, c->lease_ns, lease, on_lease_write, c);
    } else if (c->leader) {
        LOG_W(LOG_C, "leader election: '%s' holds the lease now", holder);
        c->leader = false;
        metrics_gauge_set(c->is_leader, 0);
    }
    json_decref(lease);
}

static void lease_tick(uv_timer_t *t)
{
    struct ctl *c = t->data;
    if (c->stopping)
        return;
    if (c->leader && clock_monotonic_ns() - c->last_renew_ns > RENEW_DEADLINE_S * 1000000000ull) {
        LOG_E(LOG_C, "leader election: could not renew the lease for %d s: exiting",
              RENEW_DEADLINE_S);
        c->exit_code = 1;
        uv_stop(c->loop);
        return;
    }
    k8s_lease_get(c->cl, c->lease_ns, LEASE_NAME, on_lease_get, c);
}

/* --- health and metrics ------------------------------------------------------------------ */

static void admin_handler(struct http_exchange *ex, void *ctx)
{
    struct ctl *c = ctx;
    const struct http_request *q = http_exchange_request(ex);
    if (!strcmp(q->path, "/healthz")) {
        http_respond(ex, 200, "text/plain", "ok", 2);
    } else if (!strcmp(q->path, "/readyz")) {
        if (synced(c))
            http_respond(ex, 200, "text/plain", "ok", 2);
        else
            http_respond(ex, 503, "text/plain", "caches not synced", 17);
    } else if (!strcmp(q->path, "/metrics")) {
        struct buf b = BUF_INIT;
        metrics_render(c->reg, &b);
        http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
    } else {
        http_respond(ex, 404, "text/plain", "/healthz, /readyz, /metrics", 27);
    }
}

static void observe(const char *method, int status, void *ctx)
{
    struct ctl *c = ctx;
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    const char *labels[] = {method, code};
    metrics_counter_inc(metrics_series_get(c->api_requests, labels));
}

static void metrics_init(struct ctl *c)
{
    c->reg = metrics_registry_new();
    const char *res[] = {"result"};
    c->reconciles = metrics_family_new(c->reg, METRICS_COUNTER, "tandem_ms_reconciles_total",
                                       "Reconciles by result (success, error).", res, 1, NULL, 0);
    c->duration = metrics_series0(metrics_family_new(
        c->reg, METRICS_HISTOGRAM, "tandem_ms_reconcile_duration_seconds",
        "Time from taking a key off the queue to its last write answered.", NULL, 0,
        metrics_buckets_request_latency, metrics_buckets_request_latency_n));
    c->queue_depth = metrics_series0(metrics_family_new(
        c->reg, METRICS_GAUGE, "tandem_ms_queue_depth", "Keys waiting in the work queue.", NULL,
        0, NULL, 0));
    const char *vc[] = {"verb", "code"};
    c->api_requests = metrics_family_new(c->reg, METRICS_COUNTER, "tandem_ms_api_requests_total",
                                         "Kubernetes API requests by HTTP verb and status code "
                                         "(0: no answer).",
                                         vc, 2, NULL, 0);
    c->is_leader = metrics_series0(metrics_family_new(
        c->reg, METRICS_GAUGE, "tandem_ms_leader", "1 while this controller holds the lease.",
        NULL, 0, NULL, 0));
}

/* --- process ------------------------------------------------------------------------------ */

static void on_released(const struct k8s_response *r, void *ctx)
{
    struct ctl *c = ctx;
    LOG_I(LOG_C, "leader election: lease released (%d)", r->status);
    uv_stop(c->loop);
}

static void on_release_get(const struct k8s_response *r, void *ctx)
{
    struct ctl *c = ctx;
    json_t *lease = r->status == 200 ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *holder = jstr(json_object_get(lease, "spec"), "holderIdentity", NULL);
    if (!lease || !holder || strcmp(holder, c->identity)) {
        json_decref(lease);
        uv_stop(c->loop);
        return;
    }
    json_t *spec = json_object_get(lease, "spec");
    json_object_set_new(spec, "holderIdentity", json_string(""));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
    k8s_lease_update(c->cl, c->lease_ns, lease, on_released, c);
    json_decref(lease);
}

/* Once the reconciles in flight have finished: release the lease, then stop. */
static void maybe_stop(struct ctl *c)
{
    if (!c->stopping || c->running > 0 || c->stop_started)
        return;
    c->stop_started = true;
    if (c->leader) /* hand the lease over at once */
        k8s_lease_get(c->cl, c->lease_ns, LEASE_NAME, on_release_get, c);
    else
        uv_stop(c->loop);
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct ctl *c = t->data;
    LOG_W(LOG_C, "shutdown: %d reconciles still running after 5 s: stopping anyway", c->running);
    uv_stop(c->loop);
}

static void on_shutdown(void *ctx)
{
    struct ctl *c = ctx;
    if (c->stopping)
        return;
    c->stopping = true;
    LOG_I(LOG_C, "shutting down");
    uv_timer_stop(&c->resync);
    uv_timer_stop(&c->lease_timer);
    uv_timer_stop(&c->kick);
    uv_timer_start(&c->stop_deadline, on_stop_deadline, 5000, 0);
    maybe_stop(c);
}

int ms_controller_main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *ns = NULL, *lease_ns = NULL, *log_level = NULL;
    const char *pool_api = "v1alpha2", *role = "pod-read";
    long long metrics_port = 0, health_port = 0, concurrency = 4, v = 2;
    double resync = 600;
    bool leader_elect = false, log_json = false;
    const struct flag flags[] = {
        {"--kubeconfig", NULL, FLAG_STRING, &kubeconfig, "FILE",
         "kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)", NULL},
        {"--namespace", "-n", FLAG_STRING, &ns, "NS", "watch one namespace (default: all)", NULL},
        {"--leader-elect", NULL, FLAG_BOOL, &leader_elect, NULL,
         "only the holder of a coordination.k8s.io Lease writes", NULL},
        {"--leader-election-namespace", NULL, FLAG_STRING, &lease_ns, "NS",
         "the Lease's namespace (default: the kubeconfig's or the pod's)", NULL},
        {"--metrics-port", NULL, FLAG_INT, &metrics_port, "N",
         "Prometheus /metrics (0: served on --health-port)", NULL},
        {"--health-port", NULL, FLAG_INT, &health_port, "N", "/healthz, /readyz (0: none)", NULL},
        {"--concurrency", NULL, FLAG_INT, &concurrency, "N", "reconciles at once (4)", NULL},
        {"--resync", NULL, FLAG_DOUBLE, &resync, "S", "re-queue every ModelService every S s (600)",
         NULL},
        {"--pool-api", NULL, FLAG_STRING, &pool_api, "V", "InferencePool API: v1alpha2 or v1",
         NULL},
        {"--epp-cluster-role", NULL, FLAG_STRING, &role, "NAME",
         "ClusterRole the EPP RoleBinding points at (pod-read)", NULL},
        {"--v", "-v", FLAG_INT, &v, "N", "verbosity: 2 info, 4 debug (2)", NULL},
        {"--log-level", NULL, FLAG_STRING, &log_level, "LEVEL", "error, warn, info, debug", NULL},
        {"--log-json", NULL, FLAG_BOOL, &log_json, NULL, "log JSON lines", NULL},
    };
    size_t nf = sizeof flags / sizeof flags[0];
    struct flags_result res;
    char err[1024];
    if (!flags_parse(flags, nf, argc, argv, &res, err, sizeof err)) {
        fprintf(stderr, "tandem ms controller: %s\n", err);
        return 2;
    }
    if (res.help) {
        flags_print_help(stdout, "tandem ms controller [flags]",
                         "Reconciles ModelServices (llm-d.ai/v1alpha1) into their children with "
                         "server-side apply,\nowner references, pruning, status and Events.",
                         flags, nf);
        return 0;
    }
    if (res.n_positional || concurrency < 1 || concurrency > 64 || metrics_port < 0 ||
        metrics_port > 65535 || health_port < 0 || health_port > 65535 || !(resync > 0) ||
        (strcmp(pool_api, "v1alpha2") && strcmp(pool_api, "v1"))) {
        fprintf(stderr, "tandem ms controller: --concurrency in [1, 64], ports in [0, 65535], "
                        "--resync > 0, --pool-api v1alpha2|v1 (see --help)\n");
        return 2;
    }
    enum log_level lvl = v >= 4 ? LOG_DEBUG : v >= 2 ? LOG_INFO : LOG_WARN;
    if (log_level && !log_parse_level(log_level, &lvl)) {
        fprintf(stderr, "tandem ms controller: --log-level: '%s' is not error, warn, info or "
                        "debug\n", log_level);
        return 2;
    }
    log_set_level(lvl);
    log_set_json(log_json);
    struct k8s_config kc;
    if (!k8s_config_load(kubeconfig, NULL, &kc, err, sizeof err)) {
        fprintf(stderr, "tandem ms controller: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct ctl *c = xcalloc(1, sizeof *c);
    c->loop = xcalloc(1, sizeof *c->loop);
    uv_loop_init(c->loop);
    c->ns = ns;
    c->concurrency = (int)concurrency;
    c->pool_api = pool_api;
    c->epp_role = role;
    c->resync_s = resync;
    c->leader_elect = leader_elect;
    c->lease_ns = xstrdup(lease_ns ? lease_ns : kc.namespace);
    char host[64] = "controller";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(c->identity, sizeof c->identity, "%s_%08llx", host,
             (unsigned long long)(hash_str(host, clock_monotonic_ns()) & 0xffffffffu));
    c->queued = json_object();
    c->active = json_object();
    c->dirty = json_object();
    c->failures = json_object();
    c->applied = json_object();
    c->warned = json_object();
    metrics_init(c);
    c->cl = k8s_client_new(c->loop, &kc, MANAGER);
    k8s_client_observe(c->cl, observe, c);
    LOG_I(LOG_C, "tandem ms controller %s via %s (%s), namespace %s, concurrency %d%s",
          c->identity, kc.server, kc.source, ns ? ns : "(all)", c->concurrency,
          leader_elect ? ", leader election on" : "");
    k8s_config_free(&kc);
    uv_timer_init(c->loop, &c->kick);
    c->kick.data = c;
    uv_timer_init(c->loop, &c->resync);
    c->resync.data = c;
    uv_timer_start(&c->resync, on_resync, (uint64_t)(resync * 1e3), (uint64_t)(resync * 1e3));
    uv_timer_init(c->loop, &c->lease_timer);
    c->lease_timer.data = c;
    uv_timer_init(c->loop, &c->stop_deadline);
    c->stop_deadline.data = c;
    if (leader_elect)
        uv_timer_start(&c->lease_timer, lease_tick, 0, RETRY_PERIOD_S * 1000);
    c->ms_inf =
        watch(c, MS_GROUP_VERSION, "modelservices", NULL, ms_add, ms_update, ms_delete, NULL);
    c->cm_inf = watch(c, "v1", "configmaps", NULL, cm_event, cm_update, cm_event, NULL);
    c->n_kinds = ms_child_kinds(&c->kinds);
    if (c->n_kinds > MAX_KINDS)
        c->n_kinds = MAX_KINDS;
    for (size_t i = 0; i < c->n_kinds; i++) {
        if (!strcmp(c->kinds[i].kind, "ConfigMap"))
            continue; /* the ConfigMap informer above sees ours too */
        if (c->kinds[i].pool_api && strcmp(c->kinds[i].pool_api, pool_api))
            continue; /* the other InferencePool API: never rendered */
        c->child_ctx[i] = (struct child_watch){c, i};
        c->child_inf[i] = watch(c, c->kinds[i].api_version, c->kinds[i].plural, OWNER_LABEL,
                                child_event, child_update, child_event, &c->child_ctx[i]);
    }
    for (size_t i = 0; i < c->n_kinds; i++) /* ConfigMap children: the shared informer */
        if (!strcmp(c->kinds[i].kind, "ConfigMap")) {
            c->child_inf[i] = c->cm_inf;
            c->child_ready[i] = true; /* synced() checks cm_inf itself */
        }
    if (health_port || metrics_port) {
        struct http_server_config hc = {.host = "0.0.0.0",
                                        .port = (int)(health_port ? health_port : metrics_port),
                                        .handler = admin_handler,
                                        .handler_ctx = c,
                                        .server_name = "controller-admin"};
        int e = http_server_start(c->loop, &hc, &c->health);
        if (e)
            LOG_E(LOG_C, "cannot listen on port %d: %s", hc.port, uv_strerror(e));
        if (health_port && metrics_port && metrics_port != health_port) {
            hc.port = (int)metrics_port;
            if (http_server_start(c->loop, &hc, &c->metrics_srv) != 0) {
                c->metrics_srv = NULL;
                LOG_E(LOG_C, "cannot listen on metrics port %lld", metrics_port);
            }
        }
    }
    loop_on_shutdown(c->loop, on_shutdown, c);
    printf("tandem ms controller ready\n");
    fflush(stdout);
    uv_run(c->loop, UV_RUN_DEFAULT);
    /* stopped: close everything */
    c->stopping = true;
    for (size_t i = 0; i < c->n_kinds; i++)
        if (c->child_inf[i] && c->child_inf[i] != c->cm_inf)
            k8s_informer_stop(c->child_inf[i]);
    k8s_informer_stop(c->cm_inf);
    k8s_informer_stop(c->ms_inf);
    k8s_client_free(c->cl);
    loop_shutdown_watch_close(c->loop);
    if (c->health)
        http_server_stop(c->health, NULL, NULL);
    if (c->metrics_srv)
        http_server_stop(c->metrics_srv, NULL, NULL);
    while (c->retries)
        retry_drop(c->retries);
    uv_close((uv_handle_t *)&c->kick, NULL);
    uv_close((uv_handle_t *)&c->resync, NULL);
    uv_close((uv_handle_t *)&c->lease_timer, NULL);
    uv_close((uv_handle_t *)&c->stop_deadline, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    int rc = c->exit_code;
    uv_loop_close(c->loop);
    free(c->loop);
    for (size_t i = 0; i < c->fifo_len; i++)
        free(c->fifo[c->fifo_head + i]);
    free(c->fifo);
    json_decref(c->queued);
    json_decref(c->active);
    json_decref(c->dirty);
    json_decref(c->failures);
    json_decref(c->applied);
    json_decref(c->warned);
    metrics_registry_free(c->reg);
    free(c->lease_ns);
    free(c);
    return rc;
}

/* Writes on top of k8s_request: server-side apply, status merge patches, Events and
 * Leases (kubernetes.md sections 3-5). Bodies are JSON; a JSON document is valid YAML,
 * so apply sends it as application/apply-patch+yaml unchanged (raw UTF-8, no "\/"). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "k8s/k8s.h"

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT);
}

void k8s_micro_time(char *out, size_t cap)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%06ldZ", base, (long)tv.tv_usec);
}

struct k8s_req *k8s_apply(struct k8s_client *c, const char *path, const json_t *obj,
                          const char *field_manager, bool force, k8s_done_fn done, void *ctx)
{
    char fm[400];
    k8s_query_escape(field_manager, fm, sizeof fm);
    char *url = xasprintf("%s?fieldManager=%s%s", path, fm, force ? "&force=true" : "");
    char *body = dump(obj);
    struct k8s_req *r = k8s_request(c, "PATCH", url, "application/apply-patch+yaml", body,
                                    strlen(body), done, ctx);
    free(body);
    free(url);
    return r;
}

struct k8s_req *k8s_patch_status(struct k8s_client *c, const char *path, const json_t *patch,
                                 k8s_done_fn done, void *ctx)
{
    char *url = xasprintf("%s/status", path);
    char *body = dump(patch);
    struct k8s_req *r = k8s_request(c, "PATCH", url, "application/merge-patch+json", body,
                                    strlen(body), done, ctx);
    free(body);
    free(url);
    return r;
}

struct k8s_req *k8s_event(struct k8s_client *c, const json_t *regarding, const char *type,
                          const char *reason, const char *action, const char *note,
                          const char *controller, const char *instance, k8s_done_fn done,
                          void *ctx)
{
    const char *ns = k8s_obj_namespace(regarding);
    const char *name = k8s_obj_name(regarding);
    const json_t *md = json_object_get(regarding, "metadata");
    char now[40];
    k8s_micro_time(now, sizeof now);
    static _Atomic uint64_t seq;
    char suffix[17]; /* unique per process and time, as client-go's "%x" of UnixNano */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(suffix, sizeof suffix, "%016llx",
             (unsigned long long)((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                                  atomic_fetch_add(&seq, 1)));
    char *ename = xasprintf("%.200s.%s", name ? name : "object", suffix);
    char shortnote[1024];
    snprintf(shortnote, sizeof shortnote, "%s", note ? note : "");
    json_t *ref = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "apiVersion",
                            json_string_value(json_object_get(regarding, "apiVersion")), "kind",
                            json_string_value(json_object_get(regarding, "kind")), "name", name,
                            "namespace", ns, "uid",
                            json_string_value(json_object_get(md, "uid")));
    json_t *ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}",
                           "apiVersion", "events.k8s.io/v1", "kind", "Event", "metadata",
                           "name", ename, "namespace", ns ? ns : "default", "eventTime", now,
                           "reportingController", controller, "reportingInstance", instance,
                           "action", action, "reason", reason, "type", type, "note", shortnote,
                           "regarding", ref);
    char *url = xasprintf("/apis/events.k8s.io/v1/namespaces/%s/events", ns ? ns : "default");
    char *body = dump(ev);
    struct k8s_req *r =
        k8s_request(c, "POST", url, "application/json", body, strlen(body), done, ctx);
    free(body);
    free(url);
    free(ename);
    json_decref(ev);
    return r;
}

struct k8s_req *k8s_lease_get(struct k8s_client *c, const char *ns, const char *name,
                              k8s_done_fn done, void *ctx)
{
    char *url = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", ns, name);
    struct k8s_req *r = k8s_request(c, "GET", url, NULL, NULL, 0, done, ctx);
    free(url);
    return r;
}

struct k8s_req *k8s_lease_create(struct k8s_client *c, const char *ns, const char *name,
                                 const char *holder, int duration_s, k8s_done_fn done,
                                 void *ctx)
{
    char now[40];
    k8s_micro_time(now, sizeof now);
    json_t *lease = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}", "apiVersion",
        "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", name, "namespace", ns,
        "spec", "holderIdentity", holder, "leaseDurationSeconds", duration_s, "acquireTime",
        now, "renewTime", now, "leaseTransitions", 0);
    char *url = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases", ns);
    char *body = dump(lease);
    struct k8s_req *r =
        k8s_request(c, "POST", url, "application/json", body, strlen(body), done, ctx);
    free(body);
    free(url);
    json_decref(lease);
    return r;
}

struct k8s_req *k8s_lease_update(struct k8s_client *c, const char *ns, const json_t *lease,
                                 k8s_done_fn done, void *ctx)
{
    char *url = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", ns,
                          k8s_obj_name(lease));
    char *body = dump(lease);
    struct k8s_req *r =
        k8s_request(c, "PUT", url, "application/json", body, strlen(body), done, ctx);
    free(body);
    free(url);
    return r;
}

/* src/k8s against a real kube-apiserver (run by tests/integration/test_k8s.py with the
 * environment of tests/k8s/env.sh): every call the controller and the router rely on,
 * each checked by reading back what the server stored.
 *
 *   k8s_client_test KUBECONFIG NAMESPACE [CERT_KUBECONFIG TOKEN_DIR GOOD_TOKEN]
 *
 * Prints "N passed, N failed" and exits non-zero on any failure. Every step waits on the
 * loop with a deadline (10 s), never forever. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "k8s/k8s.h"

static uv_loop_t loop;
static int passed, failed;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (cond) {                                                                          \
            passed++;                                                                        \
        } else {                                                                             \
            failed++;                                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                      \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
        }                                                                                    \
    } while (0)

/* One request's outcome, copied out of the callback. */
struct result {
    bool done;
    int status, code;
    char reason[64];
    char message[512];
    json_t *body;
};

static void on_done(const struct k8s_response *r, void *ctx)
{
    struct result *res = ctx;
    res->done = true;
    res->status = r->status;
    res->code = r->code;
    snprintf(res->reason, sizeof res->reason, "%s", r->reason);
    snprintf(res->message, sizeof res->message, "%s", r->message);
    res->body = r->len ? json_loadb(r->body, r->len, 0, NULL) : NULL;
}

static void on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until res->done or 10 s. */
static void wait_done(struct result *res)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_deadline, 10000, 0);
    while (!res->done && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!res->done)
        printf("FAIL: request did not finish in 10 s\n");
}

static struct result call(struct k8s_client *c, const char *method, const char *path,
                          const char *ctype, const char *body)
{
    struct result res = {0};
    k8s_request(c, method, path, ctype, body, body ? strlen(body) : 0, on_done, &res);
    wait_done(&res);
    return res;
}

static void release(struct result *r)
{
    json_decref(r->body);
    r->body = NULL;
}

static const char *str_at(json_t *j, const char *a, const char *b, const char *c)
{
    json_t *x = json_object_get(j, a);
    if (b)
        x = json_object_get(x, b);
    if (c)
        x = json_object_get(x, c);
    return json_string_value(x);
}

static struct k8s_client *client_for(const char *kubeconfig)
{
    struct k8s_config cfg;
    char err[512];
    if (!k8s_config_load(kubeconfig, NULL, &cfg, err, sizeof err)) {
        printf("FAIL config: %s\n", err);
        exit(1);
    }
    struct k8s_client *c = k8s_client_new(&loop, &cfg, "tandem-test");
    k8s_config_free(&cfg);
    return c;
}

static void test_errors_are_status_objects(struct k8s_client *c, const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/does-not-exist", ns);
    struct result r = call(c, "GET", path, NULL, NULL);
    CHECK(r.status == 404 && r.code == 404 && !strcmp(r.reason, "NotFound") &&
              strstr(r.message, "does-not-exist"),
          "404 as a Status: %d %d %s %s", r.status, r.code, r.reason, r.message);
    release(&r);
    /* A body the server rejects: 4xx with the server's message, not "request failed". */
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", ns);
    r = call(c, "POST", path, "application/json", "{\"kind\":\"ConfigMap\"}");
    CHECK(r.status >= 400 && r.status < 500 && r.reason[0] && r.message[0],
          "invalid create: %d %s %s", r.status, r.reason, r.message);
    release(&r);
}

static void test_apply(struct k8s_client *c, const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps/applied", ns);
    json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s}}", "apiVersion",
                            "v1", "kind", "ConfigMap", "metadata", "name", "applied",
                            "namespace", ns, "labels", "app.kubernetes.io/managed-by",
                            "tandem", "data", "a", "1", "b", "caf\xc3\xa9 / x");
    struct result r = {0};
    k8s_apply(c, path, obj, "tandem-test", true, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 201, "apply creates: %d %s", r.status, r.message);
    release(&r);
    /* Apply again without "a": the field this manager owned is removed. */
    json_object_del(json_object_get(obj, "data"), "a");
    r = (struct result){0};
    k8s_apply(c, path, obj, "tandem-test", true, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 200, "apply updates: %d %s", r.status, r.message);
    release(&r);
    r = call(c, "GET", path, NULL, NULL);
    CHECK(r.status == 200 && !str_at(r.body, "data", "a", NULL) &&
              !strcmp(str_at(r.body, "data", "b", NULL) ?: "", "caf\xc3\xa9 / x"),
          "applied object read back");
    json_t *mf = json_object_get(json_object_get(r.body, "metadata"), "managedFields");
    const char *manager = json_string_value(json_object_get(json_array_get(mf, 0), "manager"));
    const char *op = json_string_value(json_object_get(json_array_get(mf, 0), "operation"));
    CHECK(manager && !strcmp(manager, "tandem-test") && op && !strcmp(op, "Apply"),
          "field manager tandem-test, operation Apply");
    release(&r);
    json_decref(obj);
}

static void test_status_patch(struct k8s_client *c, const char *ns)
{
    char path[256];
    snprintf(path, sizeof path, "/apis/llm-d.ai/v1alpha1/namespaces/%s/modelservices", ns);
    const char *ms = "{\"apiVersion\":\"llm-d.ai/v1alpha1\",\"kind\":\"ModelService\","
                     "\"metadata\":{\"name\":\"m1\"},\"spec\":{\"baseConfigMapRef\":{\"name\":"
                     "\"b\"},\"routing\":{\"modelName\":\"m\"},\"modelArtifacts\":{\"uri\":"
                     "\"hf://facebook/opt-125m\"},\"decode\":{\"replicas\":1}}}";
    struct result r = call(c, "POST", path, "application/json", ms);
    CHECK(r.status == 201, "ModelService created: %d %s", r.status, r.message);
    json_t *created = json_incref(r.body);
    release(&r);
    snprintf(path, sizeof path, "/apis/llm-d.ai/v1alpha1/namespaces/%s/modelservices/m1", ns);
    json_t *patch = json_pack("{s:{s:s, s:i, s:s, s:i, s:s, s:i}}", "status", "decodeReady",
                              "1/1", "decodeAvailable", 1, "prefillReady", "0/0",
                              "prefillAvailable", 0, "eppReady", "1/1", "eppAvailable", 1);
    r = (struct result){0};
    k8s_patch_status(c, path, patch, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 200, "status patch: %d %s %s", r.status, r.reason, r.message);
    release(&r);
    r = call(c, "GET", path, NULL, NULL);
    CHECK(r.status == 200 &&
              !strcmp(str_at(r.body, "status", "decodeReady", NULL) ?: "", "1/1"),
          "status read back");
    release(&r);
    json_decref(patch);
    /* An Event about it (events.k8s.io/v1), found by listing. */
    r = (struct result){0};
    k8s_event(c, created ? created : json_object(), "Normal", "Reconciled", "Reconcile",
              "all children applied", "llm-d.ai/tandem-modelservice", "test-0", on_done, &r);
    wait_done(&r);
    CHECK(r.status == 201, "event: %d %s %s", r.status, r.reason, r.message);
    release(&r);
    snprintf(path, sizeof path, "/apis/events.k8s.io/v1/namespaces/%s/events", ns);
    r = call(c, "GET", path, NULL, NULL);
    json_t *item = json_array_get(json_object_get(r.body, "items"), 0);
    CHECK(item && !strcmp(str_at(item, "reason", NULL, NULL) ?: "", "Reconciled") &&
              !strcmp(str_at(item, "regarding", "name", NULL) ?: "", "m1"),
          "event listed with its reason and regarding");
    release(&r);
    json_decref(created);
}

static void test_lease(struct k8s_client *c, const char *ns)
{
    struct result r = {0};
    k8s_lease_get(c, ns, "tandem-ms", on_done, &r);
    wait_done(&r);
    CHECK(r.status == 404, "no lease yet: %d", r.status);
    release(&r);
    r = (struct result){0};
    k8s_lease_create(c, ns, "tandem-ms", "holder-a", 15, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 201, "lease created: %d %s", r.status, r.message);
    release(&r);
    r = (struct result){0};
    k8s_lease_create(c, ns, "tandem-ms", "holder-b", 15, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 409 && !strcmp(r.reason, "AlreadyExists"), "second create: %d %s",
          r.status, r.reason);
    release(&r);
    r = (struct result){0};
    k8s_lease_get(c, ns, "tandem-ms", on_done, &r);
    wait_done(&r);
    json_t *lease = json_incref(r.body);
    release(&r);
    CHECK(!strcmp(str_at(lease, "spec", "holderIdentity", NULL) ?: "", "holder-a"),
          "holder-a holds it");
    const char *at = str_at(lease, "spec", "renewTime", NULL);
    CHECK(at && strlen(at) == 27 && at[19] == '.' && at[26] == 'Z', "MicroTime renewTime %s",
          at ? at : "(none)");
    /* Two updates from the same read: the first wins, the second conflicts (409). */
    json_t *a = json_deep_copy(lease), *b = json_deep_copy(lease);
    json_object_set_new(json_object_get(a, "spec"), "holderIdentity", json_string("holder-b"));
    json_object_set_new(json_object_get(b, "spec"), "holderIdentity", json_string("holder-c"));
    r = (struct result){0};
    k8s_lease_update(c, ns, a, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 200, "update with the read resourceVersion: %d %s", r.status, r.message);
    release(&r);
    r = (struct result){0};
    k8s_lease_update(c, ns, b, on_done, &r);
    wait_done(&r);
    CHECK(r.status == 409 && r.code == 409 && !strcmp(r.reason, "Conflict"),
          "stale update conflicts: %d %s", r.status, r.reason);
    release(&r);
    json_decref(a);
    json_decref(b);
    json_decref(lease);
}

/* An informer over ConfigMaps with paging forced by many objects is what the router's
 * pod watch does; here: list paging by hand (limit/continue). */
static void test_list_paging(struct k8s_client *c, const char *ns)
{
    char path[8192];
    for (int i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps", ns);
        char body[256];
        snprintf(body, sizeof body,
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"page-%d\","
                 "\"labels\":{\"paging\":\"yes\"}}}",
                 i);
        struct result r = call(c, "POST", path, "application/json", body);
        release(&r);
    }
    int seen = 0, pages = 0;
    char cont[2048] = "";
    do {
        char esc[4096];
        k8s_query_escape(cont, esc, sizeof esc);
        snprintf(path, sizeof path,
                 "/api/v1/namespaces/%s/configmaps?labelSelector=paging%%3Dyes&limit=3%s%s", ns,
                 cont[0] ? "&continue=" : "", cont[0] ? esc : "");
        struct result r = call(c, "GET", path, NULL, NULL);
        seen += (int)json_array_size(json_object_get(r.body, "items"));
        pages++;
        const char *next = str_at(r.body, "metadata", "continue", NULL);
        snprintf(cont, sizeof cont, "%s", next ? next : "");
        release(&r);
    } while (cont[0] && pages < 10);
    CHECK(seen == 7 && pages == 3, "paging: %d objects in %d pages", seen, pages);
}

static void test_token_file_reread_on_401(const char *server_kc, const char *dir,
                                          const char *good)
{
    /* A kubeconfig whose user reads its token from a file that holds a wrong token when
     * the client starts and the right one by its first request: the 401 makes it read
     * the file again and retry once. */
    struct k8s_config cfg;
    char err[512];
    if (!k8s_config_load(server_kc, NULL, &cfg, err, sizeof err)) {
        CHECK(false, "%s", err);
        return;
    }
    char tokpath[512];
    snprintf(tokpath, sizeof tokpath, "%s/rotating-token", dir);
    FILE *f = fopen(tokpath, "w");
    fputs("not-a-valid-token\n", f);
    fclose(f);
    free(cfg.token);
    cfg.token = NULL;
    cfg.token_file = xstrdup(tokpath);
    free(cfg.client_cert_pem);
    free(cfg.client_key_pem);
    cfg.client_cert_pem = cfg.client_key_pem = NULL;
    struct k8s_client *c = k8s_client_new(&loop, &cfg, "tandem-test");
    k8s_config_free(&cfg);
    f = fopen(tokpath, "w");
    fprintf(f, "%s\n", good);
    fclose(f);
    struct result r = call(c, "GET", "/api/v1/namespaces/default", NULL, NULL);
    CHECK(r.status == 200, "token rotated: 401, re-read, retried: %d %s", r.status, r.message);
    release(&r);
    k8s_client_free(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: k8s_client_test KUBECONFIG NAMESPACE [CERT_KUBECONFIG DIR "
                        "GOOD_TOKEN]\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    uv_loop_init(&loop);
    struct k8s_client *c = client_for(argv[1]);
    test_errors_are_status_objects(c, argv[2]);
    test_apply(c, argv[2]);
    test_status_patch(c, argv[2]);
    test_lease(c, argv[2]);
    test_list_paging(c, argv[2]);
    k8s_client_free(c);
    if (argc >= 6) {
        /* the same server through a client certificate and file paths */
        struct k8s_client *cc = client_for(argv[3]);
        struct result r = call(cc, "GET", "/api/v1/namespaces/default", NULL, NULL);
        CHECK(r.status == 200, "client certificate: %d %s", r.status, r.message);
        release(&r);
        k8s_client_free(cc);
        test_token_file_reread_on_401(argv[1], argv[4], argv[5]);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* closes what the clients left */
    int rc = uv_loop_close(&loop);
    CHECK(rc == 0, "every handle closed: %s", rc ? uv_strerror(rc) : "ok");
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

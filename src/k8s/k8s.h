/* A small Kubernetes API client (kubernetes.md): configuration (kubeconfig or
 * in-cluster), requests on libcurl's multi interface driven by a libuv loop, watches,
 * informers (list + watch into a local cache), server-side apply, status patches,
 * Events and Leases.
 *
 * Threads: a client and everything made from it belong to one libuv loop; every
 * callback runs on that loop's thread.
 *
 * Errors: an API error reaches the caller as the Status object's code, reason and
 * message (struct k8s_response), a transport error as status 0 and curl's text. */
#ifndef TANDEM_K8S_K8S_H
#define TANDEM_K8S_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

/* --- configuration ---------------------------------------------------------------- */

struct k8s_config {
    char *server;          /* "https://10.96.0.1:443", no trailing slash */
    char *ca_pem;          /* CA bundle (PEM) from -data or a file; NULL: system CAs */
    char *token;           /* bearer token, or NULL */
    char *token_file;      /* re-read when it changes (in-cluster, tokenFile) */
    char *client_cert_pem; /* client-certificate(-data) */
    char *client_key_pem;  /* client-key(-data) */
    bool insecure;         /* insecure-skip-tls-verify */
    char *namespace;       /* the context's namespace, the in-cluster one, or "default" */
    char *source;          /* "in-cluster" or the kubeconfig path, for logs */
};

/* Where the configuration comes from, in controller-runtime's order: kubeconfig (if
 * given), $KUBECONFIG (a colon list: the first file to set a key wins), in-cluster
 * (KUBERNETES_SERVICE_HOST/PORT set), ~/.kube/config. context NULL = current-context.
 * false with a message naming the file and field. */
bool k8s_config_load(const char *kubeconfig, const char *context, struct k8s_config *out,
                     char *err, size_t errlen);
/* One kubeconfig document's text (path names it in errors and anchors relative file
 * paths). */
bool k8s_config_from_kubeconfig(const char *text, size_t len, const char *path,
                                const char *context, struct k8s_config *out, char *err,
                                size_t errlen);
/* The in-cluster configuration: env KUBERNETES_SERVICE_HOST/PORT and the service
 * account directory (NULL = /var/run/secrets/kubernetes.io/serviceaccount). */
bool k8s_config_in_cluster(const char *sa_dir, struct k8s_config *out, char *err,
                           size_t errlen);
void k8s_config_free(struct k8s_config *c);

/* --- client and requests ---------------------------------------------------------- */

struct k8s_client;
struct k8s_req;

struct k8s_response {
    int status;          /* HTTP status; 0 when no answer came (transport error) */
    const char *body;    /* the whole body (buffered requests), NUL-terminated */
    size_t len;
    /* Not 2xx: from the Status object when there is one, else made up from the status. */
    int code;
    const char *reason;  /* "NotFound", "Forbidden", "Expired", "Conflict", ... or "" */
    const char *message; /* the server's words, or curl's for a transport error */
    double retry_after_s; /* Retry-After on 429/503, 0 when absent */
};

typedef void (*k8s_done_fn)(const struct k8s_response *r, void *ctx);

/* The client copies cfg. user_agent is also the field manager of non-apply writes. */
struct k8s_client *k8s_client_new(uv_loop_t *loop, const struct k8s_config *cfg,
                                  const char *user_agent);
/* Cancels every request and watch (no callback fires afterwards) and frees the client
 * once its handles are closed. */
void k8s_client_free(struct k8s_client *c);
const struct k8s_config *k8s_client_config(const struct k8s_client *c);
/* Called after every finished request (not cancelled ones) with its method and HTTP
 * status (0: no answer), for metrics. One observer per client. */
typedef void (*k8s_observe_fn)(const char *method, int status, void *ctx);
void k8s_client_observe(struct k8s_client *c, k8s_observe_fn fn, void *ctx);
uv_loop_t *k8s_client_loop(const struct k8s_client *c);

/* A buffered request. path starts with "/" and carries its query. body may be NULL.
 * Never calls back synchronously. Returns a handle for k8s_request_cancel, valid until
 * done runs. */
struct k8s_req *k8s_request(struct k8s_client *c, const char *method, const char *path,
                            const char *content_type, const char *body, size_t len,
                            k8s_done_fn done, void *ctx);
/* No callback of the request fires after this. Safe from inside any k8s callback. */
void k8s_request_cancel(struct k8s_req *r);

/* A streamed request (watch): on_data(NULL, 0) once the 200 head has arrived, then the
 * body as it arrives (borrowed bytes); done at the end (body empty on 200, the error's
 * body otherwise). timeout_s bounds the whole call (0 = none). on_data may cancel any
 * request but must not free the client. */
typedef void (*k8s_data_fn)(const char *data, size_t len, void *ctx);
struct k8s_req *k8s_stream(struct k8s_client *c, const char *path, double timeout_s,
                           k8s_data_fn on_data, k8s_done_fn done, void *ctx);

/* Percent-encodes s for a query value into out (always NUL-terminated). */
void k8s_query_escape(const char *s, char *out, size_t cap);

/* --- writes -------------------------------------------------------------------------- */

/* Server-side apply: PATCH application/apply-patch+yaml (a JSON body is valid YAML) with
 * fieldManager and force. path is the object's (…/namespaces/ns/deployments/name). */
struct k8s_req *k8s_apply(struct k8s_client *c, const char *path, const json_t *obj,
                          const char *field_manager, bool force, k8s_done_fn done, void *ctx);
/* Merge patch of the status subresource (path is the object's; "/status" is added). */
struct k8s_req *k8s_patch_status(struct k8s_client *c, const char *path, const json_t *patch,
                                 k8s_done_fn done, void *ctx);
/* POST an events.k8s.io/v1 Event about `regarding` (an object: apiVersion, kind,
 * metadata.name/namespace/uid are used). type "Normal" or "Warning". */
struct k8s_req *k8s_event(struct k8s_client *c, const json_t *regarding, const char *type,
                          const char *reason, const char *action, const char *note,
                          const char *controller, const char *instance, k8s_done_fn done,
                          void *ctx);

/* coordination.k8s.io/v1 Lease: get, create, update (the object as read, changed; its
 * resourceVersion makes the update conditional: 409 when someone else wrote first). */
struct k8s_req *k8s_lease_get(struct k8s_client *c, const char *ns, const char *name,
                              k8s_done_fn done, void *ctx);
struct k8s_req *k8s_lease_create(struct k8s_client *c, const char *ns, const char *name,
                                 const char *holder, int duration_s, k8s_done_fn done,
                                 void *ctx);
struct k8s_req *k8s_lease_update(struct k8s_client *c, const char *ns, const json_t *lease,
                                 k8s_done_fn done, void *ctx);
/* "2026-12-07T10:00:00.123456Z" (MicroTime) for now, into out (>= 32 bytes). */
void k8s_micro_time(char *out, size_t cap);

/* --- watch event stream -------------------------------------------------------------- */

/* Newline-delimited {type, object} JSON, as the API server sends it; an event may span
 * any number of pieces. */
struct k8s_watch_parser {
    char *line;
    size_t len, cap;
    size_t max_line; /* 0: 64 MiB */
};

/* type: ADDED, MODIFIED, DELETED, BOOKMARK, ERROR; object borrowed for the call. */
typedef void (*k8s_event_fn)(const char *type, json_t *object, void *ctx);

/* Feeds bytes; calls fn for each whole event. false with err (the stream is then
 * unusable) on a line that is not an event or is longer than max_line. */
bool k8s_watch_parser_feed(struct k8s_watch_parser *p, const char *data, size_t len,
                           k8s_event_fn fn, void *ctx, char *err, size_t errlen);
void k8s_watch_parser_reset(struct k8s_watch_parser *p);
void k8s_watch_parser_free(struct k8s_watch_parser *p);

/* --- informer ------------------------------------------------------------------------ */

struct k8s_informer;

enum k8s_informer_state {
    K8S_INFORMER_SYNCED,  /* listed (again) and watching */
    K8S_INFORMER_ERROR,   /* a list or watch failed: retrying with backoff */
};

struct k8s_informer_config {
    const char *path;           /* collection: "/api/v1/namespaces/ns/pods" */
    const char *label_selector; /* or NULL */
    const char *field_selector; /* or NULL */
    /* Objects are borrowed for the call (managedFields removed). on_update gets the old
     * and the new version; it fires only when resourceVersion changed. */
    void (*on_add)(json_t *obj, void *ctx);
    void (*on_update)(json_t *old, json_t *obj, void *ctx);
    void (*on_delete)(json_t *obj, void *ctx);
    /* Each change of state, and every error (why: the failed response). Optional. */
    void (*on_state)(enum k8s_informer_state st, const struct k8s_response *why, void *ctx);
    void *ctx;
    double watch_timeout_s;     /* 0: random in [300, 600) (timeoutSeconds) */
    /* Optional (client-go's SetTransform): what to keep of each object, as a new
     * reference; the cache and the callbacks see only that. It must keep
     * metadata.name, namespace and resourceVersion. */
    json_t *(*transform)(json_t *obj, void *ctx);
};

/* Lists, then watches; reconnects with jittered backoff (0.8 s doubling to 30 s), relists
 * on 410 Gone, diffs a relist against the cache so only real changes are reported.
 * Strings in cfg are copied. */
struct k8s_informer *k8s_informer_start(struct k8s_client *c,
                                        const struct k8s_informer_config *cfg);
/* No callback fires after this; the cache goes with it. Safe from its own callbacks. */
void k8s_informer_stop(struct k8s_informer *inf);
/* A new label selector: lists again with it and reports only the differences (objects
 * that left the selection are deleted, new ones added). */
void k8s_informer_set_label_selector(struct k8s_informer *inf, const char *selector);
bool k8s_informer_synced(const struct k8s_informer *inf);
/* The cache: ns/name -> object (borrowed; valid until the next callback or stop). */
const json_t *k8s_informer_cache(const struct k8s_informer *inf);

struct k8s_informer_stats {
    uint64_t lists;          /* lists done (1 + relists) */
    uint64_t watch_restarts; /* watches started after the first */
    uint64_t errors;         /* failed lists and watches */
    uint64_t events;         /* watch events applied */
};
void k8s_informer_get_stats(const struct k8s_informer *inf, struct k8s_informer_stats *out);

/* Helpers on objects. */
const char *k8s_obj_name(const json_t *obj);
const char *k8s_obj_namespace(const json_t *obj);
const char *k8s_obj_rv(const json_t *obj);

#endif

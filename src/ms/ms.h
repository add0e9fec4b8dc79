/* ModelService: one CR (+ a BaseConfig of templated manifests) -> Kubernetes objects
 * (`tandem ms generate`), or local processes (`tandem up`). See docs/modelservice.md.
 *
 *   ms.c    CR and BaseConfig loading and validation, template variables, merge,
 *           model artifacts, object generation, `tandem ms generate`
 *   tmpl.c  the Go text/template subset BaseConfigs are written in
 *   up.c    `tandem up`: the same CR as processes on one machine
 *   autoscale.c  spec.<role>.autoscaling -> HPA / KEDA ScaledObject (autoscale.h)
 *   hpa.c   the HPA v2 algorithm, for `tandem up`'s autoscaler (hpa.h)
 *
 * Ownership: an ms_cr owns its parsed document; strings in it point into the document.
 * ms_generate returns a new JSON array the caller frees. */
#ifndef TANDEM_MS_MS_H
#define TANDEM_MS_MS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ms/autoscale.h"

enum ms_uri_kind { MS_URI_HF, MS_URI_PVC, MS_URI_OCI };

struct ms_cr {
    json_t *doc; /* the whole CR, owned */
    char path[512];
    const char *name, *namespace;
    const char *model_name; /* spec.routing.modelName */
    const char *uri;
    enum ms_uri_kind uri_kind;
    char hf_model[512];  /* hf://repo/model -> repo/model */
    char pvc_claim[256]; /* pvc://claim/path */
    char model_path[512]; /* path inside the claim or image ("" for hf) */
    char oci_image[512];
    const char *auth_secret; /* or NULL */
    json_t *size;            /* borrowed: string or integer, or NULL */
    bool decouple_scaling;
    json_t *prefill, *decode, *epp; /* borrowed sections, NULL when absent */
    long long prefill_replicas, decode_replicas;
    struct ms_autoscaling prefill_as, decode_as; /* spec.<role>.autoscaling */
    json_t *ports;        /* borrowed spec.routing.ports, or NULL */
    json_t *gateway_refs; /* borrowed, or NULL */
    const char *base_name; /* spec.baseConfigMapRef.name, or NULL */
};

/* Loads and validates a ModelService. Errors name the file and the field, e.g.
 * "msvc.yaml: spec.routing.modelName: required". On failure out holds nothing (calling
 * ms_cr_free on it is harmless). */
bool ms_cr_load(const char *path, struct ms_cr *out, char *err, size_t errlen);
bool ms_cr_parse(const char *text, size_t len, const char *name, struct ms_cr *out, char *err,
                 size_t errlen);
void ms_cr_free(struct ms_cr *cr);

/* "facebook/opt-125m" -> "facebook-opt-125m": lower case, [a-z0-9-], <= 63 characters,
 * no leading or trailing '-'. */
void ms_sanitize(const char *in, char *out, size_t cap);

/* The BaseConfig comes from the first of base_text, base_path, base_obj that is set;
 * with none, generate works from the CR alone. The same checks apply to each: a
 * ConfigMap (an object without kind, as the API server lists them, is accepted too)
 * whose data maps known keys to strings. Errors name the file (base_text: the
 * base_path or "<baseconfig>"), or for base_obj "<configmap NS/NAME>". */
struct ms_gen_opts {
    const char *base_path;        /* BaseConfig ConfigMap file, or NULL (empty) */
    const char *base_text;        /* or its text (tests) */
    const json_t *base_obj;       /* or the ConfigMap as parsed JSON, e.g. as read from the
                                     API server (a controller); borrowed, only read (not even
                                     its reference count), so threads may share one */
    const char *base_name;        /* with base_obj, optional: "NS/NAME" for its errors;
                                     NULL: from base_obj's metadata.namespace and name */
    const char *epp_cluster_role; /* "pod-read" */
    const char *pool_api;         /* "v1alpha2" (default) or "v1" */
    const char *namespace;        /* overrides the CR's; default "default" */
};

/* The objects, in dependency order (ServiceAccounts, RoleBinding, ConfigMaps, Services,
 * Deployments, InferencePool, InferenceModel, HTTPRoute), each kind one of
 * ms_child_kinds(). The result may share (reference) parts of cr->doc: copy a value
 * before changing it in place. NULL with err. */
json_t *ms_generate(const struct ms_cr *cr, const struct ms_gen_opts *o, char *err,
                    size_t errlen);

/* One kind of object ms_generate can emit. All are namespaced (in the CR's namespace or
 * -n; a child of a namespaced owner must be). pool_api: the only --pool-api under which
 * it is emitted ("v1alpha2" or "v1"), NULL for any. */
struct ms_child_kind {
    const char *api_version, *kind, *plural;
    const char *pool_api;
};

/* Every kind ms_generate may emit, in its dependency order, so a controller knows every
 * kind it may have to prune: *out points at a static table (never freed); returns its
 * length. */
size_t ms_child_kinds(const struct ms_child_kind **out);

/* Strict checks of one generated object (apiVersion, kind, metadata.name as a DNS
 * label/subdomain, label keys and values, required fields per kind). */
bool ms_validate_object(const json_t *obj, char *err, size_t errlen);

/* `tandem ms generate ...` */
int ms_main(int argc, char **argv);
/* `tandem up ...` */
int up_main(int argc, char **argv);
/* `tandem ms controller ...` (argv after "controller"): reconciles ModelServices. */
int ms_controller_main(int argc, char **argv);

#endif

/* ModelService -> Kubernetes objects (see ms.h and docs/modelservice.md).
 *
 * generate: load the CR (validated, errors name file and field) and the BaseConfig (a
 * ConfigMap whose data keys hold templated manifests); render each template with the
 * CR's variables; merge what the CR says into the rendered manifests (containers by
 * name, CR args before base args, env by name, volumes deduped, maps key by key); add
 * the model artifact volume; enforce names, namespace and llm-d's labels; add the RBAC
 * and routing objects; emit in dependency order. Two tables drive it: kinds[] (every kind
 * generate emits, in dependency order; ms_child_kinds) and sections[] (each BaseConfig
 * key -> the kind it makes -> its build function; the only list of the keys). */
#include "ms/ms.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/flags.h"
#include "base/yaml.h"
#include "base/yaml_emit.h"
#include "ms/tmpl.h"

#define MS_GROUP "llm-d.ai"

static bool failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

void ms_sanitize(const char *in, char *out, size_t cap)
{
    size_t n = 0, max = cap - 1 < 63 ? cap - 1 : 63;
    for (const char *p = in; *p && n < max; p++) {
        char c = (char)tolower((unsigned char)*p);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '-';
        if (c == '-' && (n == 0 || out[n - 1] == '-'))
            continue; /* no leading or repeated dashes */
        out[n++] = c;
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
}

/* ---- the CR --------------------------------------------------------------------------- */

static const char *str_at(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool check_section(const char *file, const char *sec, json_t *s, long long *replicas,
                          char *err, size_t errlen)
{
    if (!json_is_object(s))
        return failf(err, errlen, "%s: spec.%s: must be a mapping", file, sec);
    json_t *r = json_object_get(s, "replicas");
    *replicas = 1;
    if (r) {
        if (!json_is_integer(r) || json_integer_value(r) < 0 ||
            json_integer_value(r) > 2147483647)
            return failf(err, errlen, "%s: spec.%s.replicas: must be an integer in [0, 2147483647]",
                         file, sec);
        *replicas = json_integer_value(r);
    }
    static const char *const lists[] = {"containers", "initContainers"};
    for (size_t l = 0; l < 2; l++) {
        json_t *cs = json_object_get(s, lists[l]);
        if (!cs)
            continue;
        if (!json_is_array(cs))
            return failf(err, errlen, "%s: spec.%s.%s: must be a list", file, sec, lists[l]);
        size_t i;
        json_t *c;
        json_array_foreach(cs, i, c)
        {
            if (!json_is_object(c) || !json_is_string(json_object_get(c, "name")))
                return failf(err, errlen, "%s: spec.%s.%s[%zu].name: required", file, sec,
                             lists[l], i);
            static const char *const arrs[] = {"command", "args", "env", "envFrom"};
            for (size_t k = 0; k < 4; k++) {
                json_t *v = json_object_get(c, arrs[k]);
                if (v && !json_is_array(v))
                    return failf(err, errlen, "%s: spec.%s.%s[%zu].%s: must be a list", file,
                                 sec, lists[l], i, arrs[k]);
            }
            size_t ei;
            json_t *ev;
            json_array_foreach(json_object_get(c, "env"), ei, ev)
            {
                if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "name")))
                    return failf(err, errlen, "%s: spec.%s.%s[%zu].env[%zu].name: required", file,
                                 sec, lists[l], i, ei);
            }
            json_t *args = json_object_get(c, "args");
            size_t k;
            json_t *a;
            json_array_foreach(args, k, a) if (!json_is_string(a)) return failf(
                err, errlen, "%s: spec.%s.%s[%zu].args[%zu]: must be a string", file, sec,
                lists[l], i, k);
        }
    }
    json_t *par = json_object_get(s, "parallelism");
    if (par) {
        json_t *t = json_object_get(par, "tensor");
        if (!json_is_object(par) || (t && (!json_is_integer(t) || json_integer_value(t) < 1)))
            return failf(err, errlen, "%s: spec.%s.parallelism.tensor: must be an integer >= 1",
                         file, sec);
    }
    json_t *acc = json_object_get(s, "acceleratorTypes");
    if (acc && (!json_is_object(acc) || !json_is_string(json_object_get(acc, "labelKey")) ||
                !json_is_array(json_object_get(acc, "labelValues"))))
        return failf(err, errlen,
                     "%s: spec.%s.acceleratorTypes: needs labelKey and labelValues[]", file, sec);
    return true;
}

static bool cr_parse(const char *text, size_t len, const char *name, struct ms_cr *cr, char *err,
                     size_t errlen)
{
    memset(cr, 0, sizeof *cr);
    snprintf(cr->path, sizeof cr->path, "%s", name);
    struct errinfo ye;
    cr->doc = yaml_parse(text, len, name, &ye);
    if (!cr->doc)
        return failf(err, errlen, "%s", ye.msg);
    const char *f = cr->path;
    json_t *d = cr->doc;
    if (!json_is_object(d))
        return failf(err, errlen, "%s: a ModelService must be a mapping", f);
    const char *api = str_at(d, "apiVersion"), *kind = str_at(d, "kind");
    if (!kind || strcmp(kind, "ModelService"))
        return failf(err, errlen, "%s: kind: must be ModelService, got %s", f,
                     kind ? kind : "nothing");
    if (!api || strcmp(api, MS_GROUP "/v1alpha1"))
        return failf(err, errlen, "%s: apiVersion: must be llm-d.ai/v1alpha1, got %s", f,
                     api ? api : "nothing");
    json_t *md = json_object_get(d, "metadata");
    cr->name = str_at(md, "name");
    if (!cr->name || !*cr->name)
        return failf(err, errlen, "%s: metadata.name: required", f);
    char san[64];
    ms_sanitize(cr->name, san, sizeof san);
    if (strcmp(san, cr->name) || strlen(cr->name) > 47)
        return failf(err, errlen,
                     "%s: metadata.name: '%s' must be a DNS label of at most 47 characters "
                     "(children add suffixes of up to 16, such as -service-prefill)",
                     f, cr->name);
    cr->namespace = str_at(md, "namespace");
    json_t *spec = json_object_get(d, "spec");
    if (!json_is_object(spec))
        return failf(err, errlen, "%s: spec: required", f);
    json_t *routing = json_object_get(spec, "routing");
    if (!json_is_object(routing))
        return failf(err, errlen, "%s: spec.routing: required", f);
    json_t *mn = json_object_get(routing, "modelName");
    if (!mn)
        return failf(err, errlen, "%s: spec.routing.modelName: required", f);
    if (!json_is_string(mn) || !json_string_length(mn) || json_string_length(mn) > 256)
        return failf(err, errlen, "%s: spec.routing.modelName: must be a string of 1-256 "
                                  "characters",
                     f);
    cr->model_name = json_string_value(mn);
    cr->ports = json_object_get(routing, "ports");
    if (cr->ports) {
        if (!json_is_array(cr->ports))
            return failf(err, errlen, "%s: spec.routing.ports: must be a list", f);
        size_t i;
        json_t *p;
        json_array_foreach(cr->ports, i, p)
        {
            json_t *pn = json_object_get(p, "port");
            if (!json_is_string(json_object_get(p, "name")) || !json_is_integer(pn) ||
                json_integer_value(pn) < 1 || json_integer_value(pn) > 65535)
                return failf(err, errlen,
                             "%s: spec.routing.ports[%zu]: needs name and port (1-65535)", f, i);
        }
    }
    cr->gateway_refs = json_object_get(routing, "gatewayRefs");
    if (cr->gateway_refs && !json_is_array(cr->gateway_refs))
        return failf(err, errlen, "%s: spec.routing.gatewayRefs: must be a list", f);
    json_t *art = json_object_get(spec, "modelArtifacts");
    if (!json_is_object(art))
        return failf(err, errlen, "%s: spec.modelArtifacts: required", f);
    cr->uri = str_at(art, "uri");
    if (!cr->uri)
        return failf(err, errlen, "%s: spec.modelArtifacts.uri: required", f);
    const char *rest;
    if (!strncmp(cr->uri, "hf://", 5)) {
        cr->uri_kind = MS_URI_HF;
        rest = cr->uri + 5;
        const char *slash = strchr(rest, '/');
        if (!slash || slash == rest || !slash[1])
            return failf(err, errlen,
                         "%s: spec.modelArtifacts.uri: '%s' must be hf://<repo>/<model>", f,
                         cr->uri);
        snprintf(cr->hf_model, sizeof cr->hf_model, "%s", rest);
    } else if (!strncmp(cr->uri, "pvc://", 6)) {
        cr->uri_kind = MS_URI_PVC;
        rest = cr->uri + 6;
        const char *slash = strchr(rest, '/');
        size_t cl = slash ? (size_t)(slash - rest) : strlen(rest);
        if (!cl || cl >= sizeof cr->pvc_claim)
            return failf(err, errlen,
                         "%s: spec.modelArtifacts.uri: '%s' must be pvc://<claim>/<path>", f,
                         cr->uri);
        memcpy(cr->pvc_claim, rest, cl);
        cr->pvc_claim[cl] = '\0';
        snprintf(cr->model_path, sizeof cr->model_path, "%s", slash ? slash + 1 : "");
    } else if (!strncmp(cr->uri, "oci://", 6)) {
        cr->uri_kind = MS_URI_OCI;
        rest = cr->uri + 6;
        const char *sep = strstr(rest, "::");
        size_t il = sep ? (size_t)(sep - rest) : strlen(rest);
        if (!il || il >= sizeof cr->oci_image)
            return failf(err, errlen,
                         "%s: spec.modelArtifacts.uri: '%s' must be oci://<image>[::<path>]", f,
                         cr->uri);
        memcpy(cr->oci_image, rest, il);
        cr->oci_image[il] = '\0';
        const char *p = sep ? sep + 2 : "";
        while (*p == '/')
            p++;
        snprintf(cr->model_path, sizeof cr->model_path, "%s", p);
    } else {
        return failf(err, errlen,
                     "%s: spec.modelArtifacts.uri: '%s' has an unknown scheme (hf://, pvc://, "
                     "oci://)",
                     f, cr->uri);
    }
    cr->auth_secret = str_at(art, "authSecretName");
    cr->size = json_object_get(art, "size");
    if (cr->size && !json_is_string(cr->size) && !json_is_integer(cr->size))
        return failf(err, errlen, "%s: spec.modelArtifacts.size: must be a quantity like 10Gi",
                     f);
    json_t *dec = json_object_get(spec, "decoupleScaling");
    if (dec && !json_is_boolean(dec))
        return failf(err, errlen, "%s: spec.decoupleScaling: must be true or false", f);
    cr->decouple_scaling = json_is_true(dec);
    json_t *base = json_object_get(spec, "baseConfigMapRef");
    if (base) {
        cr->base_name = str_at(base, "name");
        if (!cr->base_name)
            return failf(err, errlen, "%s: spec.baseConfigMapRef.name: required", f);
    }
    cr->prefill = json_object_get(spec, "prefill");
    cr->decode = json_object_get(spec, "decode");
    cr->epp = json_object_get(spec, "endpointPicker");
    if (json_is_null(cr->prefill))
        cr->prefill = NULL;
    if (json_is_null(cr->decode))
        cr->decode = NULL;
    if (cr->prefill && !check_section(f, "prefill", cr->prefill, &cr->prefill_replicas, err,
                                      errlen))
        return false;
    if (cr->decode &&
        !check_section(f, "decode", cr->decode, &cr->decode_replicas, err, errlen))
        return false;
    if (!ms_autoscaling_parse(f, "prefill", cr->prefill, cr->decouple_scaling, &cr->prefill_as,
                              err, errlen) ||
        !ms_autoscaling_parse(f, "decode", cr->decode, cr->decouple_scaling, &cr->decode_as,
                              err, errlen))
        return false;
    /* Autoscaled roles start at minReplicas unless the CR gives a count. */
    if (cr->prefill_as.on && !json_object_get(cr->prefill, "replicas"))
        cr->prefill_replicas = cr->prefill_as.min_replicas;
    if (cr->decode_as.on && !json_object_get(cr->decode, "replicas"))
        cr->decode_replicas = cr->decode_as.min_replicas;
    if (cr->epp && !json_is_object(cr->epp))
        return failf(err, errlen, "%s: spec.endpointPicker: must be a mapping", f);
    json_t *er = json_object_get(cr->epp, "replicas");
    if (er && (!json_is_integer(er) || json_integer_value(er) < 0 ||
               json_integer_value(er) > 2147483647))
        return failf(err, errlen,
                     "%s: spec.endpointPicker.replicas: must be an integer in [0, 2147483647]", f);
    return true;
}

bool ms_cr_parse(const char *text, size_t len, const char *name, struct ms_cr *cr, char *err,
                 size_t errlen)
{
    if (cr_parse(text, len, name, cr, err, errlen))
        return true;
    ms_cr_free(cr); /* a refused CR holds nothing */
    return false;
}

static char *read_all(const char *path, size_t *len, char *err, size_t errlen)
{
    struct buf b = BUF_INIT;
    int e = buf_read_file(&b, path);
    if (e) {
        failf(err, errlen, "cannot read %s: %s", path, strerror(e));
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, len);
}

bool ms_cr_load(const char *path, struct ms_cr *out, char *err, size_t errlen)
{
    size_t len;
    char *text = read_all(path, &len, err, errlen);
    if (!text) {
        memset(out, 0, sizeof *out);
        return false;
    }
    bool ok = ms_cr_parse(text, len, path, out, err, errlen);
    free(text);
    return ok;
}

void ms_cr_free(struct ms_cr *cr)
{
    json_decref(cr->doc);
    cr->doc = NULL;
}

/* ---- template variables ---------------------------------------------------------------- */

struct names {
    char msvc[64], model[64];
    char epp_deploy[80], epp_svc[80], epp_sa[80], epp_rb[80], epp_cfg[80];
    char decode_deploy[80], prefill_deploy[80], decode_svc[80], prefill_svc[80], sa[80];
    char pool[80], route[80];
};

static void make_names(const struct ms_cr *cr, struct names *n)
{
    snprintf(n->msvc, sizeof n->msvc, "%s", cr->name);
    ms_sanitize(cr->model_name, n->model, sizeof n->model);
#define NM(field, suffix) snprintf(n->field, sizeof n->field, "%s" suffix, n->msvc)
    NM(epp_deploy, "-epp");
    NM(epp_svc, "-epp-service");
    NM(epp_sa, "-epp-sa");
    NM(epp_rb, "-epp-rolebinding");
    NM(epp_cfg, "-epp-config");
    NM(decode_deploy, "-decode");
    NM(prefill_deploy, "-prefill");
    NM(decode_svc, "-service-decode");
    NM(prefill_svc, "-service-prefill");
    NM(sa, "-sa");
    NM(pool, "-inference-pool");
    NM(route, "-http-route");
#undef NM
}

static const char *mounted_path(const struct ms_cr *cr, char *buf, size_t cap)
{
    if (cr->uri_kind == MS_URI_HF) {
        snprintf(buf, cap, "%s", cr->hf_model); /* vLLM downloads it under HF_HOME */
    } else {
        snprintf(buf, cap, "/model-cache%s%s", cr->model_path[0] ? "/" : "", cr->model_path);
    }
    return buf;
}

static json_t *make_vars(const struct ms_cr *cr, const struct names *n, const char *ns)
{
    char mp[600];
    json_t *v = json_object();
    json_object_set_new(v, "ModelServiceName", json_string(cr->name));
    json_object_set_new(v, "ModelServiceNamespace", json_string(ns));
    json_object_set_new(v, "ModelName", json_string(cr->model_name));
    json_object_set_new(v, "SanitizedModelName", json_string(n->model));
    json_object_set_new(v, "HFModelName", json_string(cr->uri_kind == MS_URI_HF ? cr->hf_model
                                                                                 : ""));
    json_object_set_new(v, "ModelPath", json_string(cr->uri_kind == MS_URI_HF ? cr->hf_model
                                                                               : cr->model_path));
    json_object_set_new(v, "MountedModelPath", json_string(mounted_path(cr, mp, sizeof mp)));
    json_object_set_new(v, "AuthSecretName", json_string(cr->auth_secret ? cr->auth_secret
                                                                          : ""));
    json_object_set_new(v, "EPPServiceName", json_string(n->epp_svc));
    json_object_set_new(v, "EPPDeploymentName", json_string(n->epp_deploy));
    json_object_set_new(v, "PrefillDeploymentName", json_string(n->prefill_deploy));
    json_object_set_new(v, "DecodeDeploymentName", json_string(n->decode_deploy));
    json_object_set_new(v, "PrefillServiceName", json_string(n->prefill_svc));
    json_object_set_new(v, "DecodeServiceName", json_string(n->decode_svc));
    json_object_set_new(v, "InferencePoolName", json_string(n->pool));
    json_object_set_new(v, "InferenceModelName", json_string(n->msvc));
    /* getPort reads .Ports: the CR's routing.ports by name. */
    json_t *ports = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(cr->ports, i, p)
        json_object_set(ports, str_at(p, "name"), json_object_get(p, "port"));
    json_object_set_new(v, "Ports", ports);
    return v;
}

/* Renders one template to text; errors as "FILE: data.KEY:LINE:COL: why". */
static bool render(const char *text, const char *where, const json_t *vars, struct buf *out,
                   char *err, size_t errlen)
{
    struct errinfo te;
    if (!tmpl_render(text, strlen(text), where, vars, NULL, 0, out, &te))
        return failf(err, errlen, "%s", te.msg);
    return true;
}

/* Renders a BaseConfig key and parses the manifest(s) it produces. */
static json_t *render_manifest(const json_t *data, const char *key, const char *base_file,
                               const json_t *vars, bool list, char *err, size_t errlen)
{
    const char *text = str_at(data, key);
    if (!text)
        return NULL;
    char where[600];
    snprintf(where, sizeof where, "%.400s: data.%.100s", base_file, key);
    struct buf out = BUF_INIT;
    if (!render(text, where, vars, &out, err, errlen)) {
        buf_free(&out);
        return NULL;
    }
    struct errinfo ye;
    json_t *v = list ? yaml_parse_all(out.data ? out.data : "", out.len, where, &ye)
                     : yaml_parse(out.data ? out.data : "", out.len, where, &ye);
    buf_free(&out);
    if (!v) {
        failf(err, errlen, "%s (after rendering the template)", ye.msg);
        return NULL;
    }
    if (!list && !json_is_object(v)) {
        failf(err, errlen, "%s: must render to one YAML mapping (a Kubernetes object)", where);
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ---- merge ------------------------------------------------------------------------------ */

static json_t *obj_at(json_t *parent, const char *key)
{
    json_t *v = json_object_get(parent, key);
    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(parent, key, v);
    }
    return v;
}

static json_t *arr_at(json_t *parent, const char *key)
{
    json_t *v = json_object_get(parent, key);
    if (!json_is_array(v)) {
        v = json_array();
        json_object_set_new(parent, key, v);
    }
    return v;
}

static json_t *find_named(json_t *arr, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) if (name && !strcmp(str_at(e, "name") ? str_at(e, "name") : "",
                                                      name)) return e;
    return NULL;
}

/* env by name (CR wins, keeps the base's order); other lists append. */
static void merge_env(json_t *dst, const json_t *src)
{
    size_t i;
    json_t *e;
    json_array_foreach(src, i, e)
    {
        json_t *old = find_named(dst, str_at(e, "name"));
        if (old) {
            json_object_clear(old);
            json_object_update(old, e);
        } else {
            json_array_append(dst, e);
        }
    }
}

static void merge_container(json_t *base, const json_t *cr)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cr, key, v)
    {
        if (!strcmp(key, "mountModelVolume") || !strcmp(key, "name"))
            continue;
        if (!strcmp(key, "args")) {
            /* The CR's args go first: a positional model argument lands right after
             * `vllm serve`. */
            json_t *merged = json_deep_copy(v);
            json_array_extend(merged, arr_at(base, "args"));
            json_object_set_new(base, "args", merged);
        } else if (!strcmp(key, "env")) {
            merge_env(arr_at(base, "env"), v);
        } else if (json_is_array(v) && strcmp(key, "command")) {
            json_array_extend(arr_at(base, key), v);
        } else if (json_is_object(v) && json_is_object(json_object_get(base, key))) {
            json_object_update_recursive(json_object_get(base, key), v);
        } else {
            json_object_set(base, key, v); /* command and scalars: the CR's replaces */
        }
    }
}

static void merge_containers(json_t *pod_spec, const char *key, const json_t *cr_list)
{
    if (!cr_list)
        return;
    json_t *base = arr_at(pod_spec, key);
    size_t i;
    json_t *c;
    json_array_foreach(cr_list, i, c)
    {
        json_t *b = find_named(base, str_at(c, "name"));
        if (!b) {
            b = json_object();
            json_object_set_new(b, "name", json_string(str_at(c, "name")));
            json_array_append_new(base, b);
        }
        merge_container(b, c);
    }
}

static void dedupe_volumes(json_t *pod_spec)
{
    json_t *vols = json_object_get(pod_spec, "volumes");
    if (!json_is_array(vols))
        return;
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(vols, i, v)
    {
        json_t *old = find_named(out, str_at(v, "name"));
        if (old) {
            json_object_clear(old);
            json_object_update(old, v); /* the later (CR or artifact) definition wins */
        } else
            json_array_append(out, v);
    }
    json_object_set_new(pod_spec, "volumes", out);
}

static bool has_arg(const json_t *args, const char *flag)
{
    size_t i;
    json_t *a;
    size_t fl = strlen(flag);
    json_array_foreach(args, i, a)
    {
        const char *s = json_string_value(a);
        if (s && !strncmp(s, flag, fl) && (s[fl] == '\0' || s[fl] == '='))
            return true;
    }
    return false;
}

/* CR containers' args are templated too; mountModelVolume is remembered by name. */
static json_t *render_section(const json_t *sec, const json_t *vars, const char *file,
                              const char *secname, char *err, size_t errlen)
{
    json_t *copy = json_deep_copy(sec);
    static const char *const lists[] = {"containers", "initContainers"};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(copy, lists[l]), i, c)
        {
            size_t k;
            json_t *a;
            json_array_foreach(json_object_get(c, "args"), k, a)
            {
                char where[600];
                snprintf(where, sizeof where, "%.400s: spec.%s.%s[%zu].args[%zu]", file, secname,
                         lists[l], i, k);
                struct buf out = BUF_INIT;
                if (!render(json_string_value(a), where, vars, &out, err, errlen)) {
                    buf_free(&out);
                    json_decref(copy);
                    return NULL;
                }
                json_array_set_new(json_object_get(c, "args"), k,
                                   json_stringn(out.data ? out.data : "", out.len));
                buf_free(&out);
            }
        }
    }
    return copy;
}

/* ---- objects ------------------------------------------------------------------------------ */

/* Every kind generate can emit, in dependency order: objects come out kind by kind in
 * this order (ServiceAccounts before the pods that run as them, ConfigMaps before the
 * pods that mount them, Services before the pods that find each other through them, the
 * pool before the model and the route that name it). A new kind is one row here (where
 * it belongs in that order) plus its section below. ms_child_kinds() hands this table
 * to a controller, which prunes children by kind. */
enum kind_id {
    K_SA,
    K_RB,
    K_CM,
    K_SVC,
    K_DEPLOY,
    K_HPA,
    K_SCALEDOBJECT,
    K_POOL, /* v1alpha2 */
    K_POOL_V1,
    K_MODEL,
    K_ROUTE,
    K_COUNT
};

static const struct ms_child_kind kinds[K_COUNT] = {
    [K_SA] = {"v1", "ServiceAccount", "serviceaccounts", NULL},
    [K_RB] = {"rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", NULL},
    [K_CM] = {"v1", "ConfigMap", "configmaps", NULL},
    [K_SVC] = {"v1", "Service", "services", NULL},
    [K_DEPLOY] = {"apps/v1", "Deployment", "deployments", NULL},
    [K_HPA] = {"autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", NULL},
    [K_SCALEDOBJECT] = {"keda.sh/v1alpha1", "ScaledObject", "scaledobjects", NULL},
    [K_POOL] = {"inference.networking.x-k8s.io/v1alpha2", "InferencePool", "inferencepools",
                "v1alpha2"},
    [K_POOL_V1] = {"inference.networking.k8s.io/v1", "InferencePool", "inferencepools", "v1"},
    [K_MODEL] = {"inference.networking.x-k8s.io/v1alpha2", "InferenceModel", "inferencemodels",
                 NULL},
    [K_ROUTE] = {"gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", NULL},
};

size_t ms_child_kinds(const struct ms_child_kind **out)
{
    *out = kinds;
    return K_COUNT;
}

/* apiVersion and kind where the template left them out; name and namespace always. */
static void set_meta(json_t *obj, enum kind_id k, const char *name, const char *ns)
{
    if (!str_at(obj, "apiVersion"))
        json_object_set_new(obj, "apiVersion", json_string(kinds[k].api_version));
    if (!str_at(obj, "kind"))
        json_object_set_new(obj, "kind", json_string(kinds[k].kind));
    json_t *md = obj_at(obj, "metadata");
    json_object_set_new(md, "name", json_string(name));
    if (ns)
        json_object_set_new(md, "namespace", json_string(ns));
}

static void set_labels(json_t *labels, const char *model, const char *role)
{
    json_object_set_new(labels, "llm-d.ai/inferenceServing", json_string("true"));
    json_object_set_new(labels, "llm-d.ai/model", json_string(model));
    if (role)
        json_object_set_new(labels, "llm-d.ai/role", json_string(role));
}

/* The model artifact: volume model-storage mounted at /model-cache where asked. */
static void add_artifacts(const struct ms_cr *cr, json_t *pod_spec, const json_t *cr_sec)
{
    json_t *vols = arr_at(pod_spec, "volumes");
    json_t *vol = json_object();
    json_object_set_new(vol, "name", json_string("model-storage"));
    if (cr->uri_kind == MS_URI_HF) {
        json_t *ed = json_object();
        if (cr->size)
            json_object_set(ed, "sizeLimit", cr->size);
        json_object_set_new(vol, "emptyDir", ed);
    } else if (cr->uri_kind == MS_URI_PVC) {
        json_object_set_new(vol, "persistentVolumeClaim",
                            json_pack("{s:s,s:b}", "claimName", cr->pvc_claim, "readOnly", 1));
    } else {
        json_object_set_new(vol, "image", json_pack("{s:s,s:s}", "reference", cr->oci_image,
                                                    "pullPolicy", "IfNotPresent"));
    }
    json_array_append_new(vols, vol);
    static const char *const lists[] = {"containers", "initContainers"};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(cr_sec, lists[l]), i, c)
        {
            if (!json_is_true(json_object_get(c, "mountModelVolume")))
                continue;
            json_t *pc = find_named(json_object_get(pod_spec, lists[l]), str_at(c, "name"));
            if (!pc)
                continue;
            json_t *mounts = arr_at(pc, "volumeMounts");
            if (!find_named(mounts, "model-storage"))
                json_array_append_new(
                    mounts, json_pack("{s:s,s:s,s:b}", "name", "model-storage", "mountPath",
                                      "/model-cache", "readOnly", cr->uri_kind != MS_URI_HF));
            if (cr->uri_kind != MS_URI_HF)
                continue;
            json_t *env = arr_at(pc, "env");
            if (!find_named(env, "HF_HOME"))
                json_array_append_new(env, json_pack("{s:s,s:s}", "name", "HF_HOME", "value",
                                                     "/model-cache"));
            if (cr->auth_secret && !find_named(env, "HF_TOKEN"))
                json_array_append_new(
                    env, json_pack("{s:s,s:{s:{s:s,s:s}}}", "name", "HF_TOKEN", "valueFrom",
                                   "secretKeyRef", "name", cr->auth_secret, "key", "HF_TOKEN"));
        }
    }
}

/* A P/D Deployment: the base's rendering (or a skeleton) with the CR merged in. */
static json_t *pd_deployment(const struct ms_cr *cr, const struct names *n, const char *ns,
                             json_t *base, const json_t *sec, const char *role)
{
    json_t *d = base ? base : json_object();
    set_meta(d, K_DEPLOY, !strcmp(role, "decode") ? n->decode_deploy : n->prefill_deploy, ns);
    set_labels(obj_at(obj_at(d, "metadata"), "labels"), n->model, role);
    json_t *spec = obj_at(d, "spec");
    long long replicas = !strcmp(role, "decode") ? cr->decode_replicas : cr->prefill_replicas;
    json_object_set_new(spec, "replicas", json_integer(replicas));
    json_t *sel = obj_at(obj_at(spec, "selector"), "matchLabels");
    set_labels(sel, n->model, role);
    json_t *tpl = obj_at(spec, "template");
    set_labels(obj_at(obj_at(tpl, "metadata"), "labels"), n->model, role);
    json_t *ps = obj_at(tpl, "spec");
    json_object_set_new(ps, "serviceAccountName", json_string(n->sa));
    merge_containers(ps, "initContainers", json_object_get(sec, "initContainers"));
    merge_containers(ps, "containers", json_object_get(sec, "containers"));
    if (json_array_size(json_object_get(ps, "initContainers")) == 0)
        json_object_del(ps, "initContainers");
    json_t *nsel = json_object_get(sec, "nodeSelector");
    if (json_is_object(nsel))
        json_object_update(obj_at(ps, "nodeSelector"), nsel);
    json_t *tol = json_object_get(sec, "tolerations");
    if (json_is_array(tol))
        json_array_extend(arr_at(ps, "tolerations"), tol);
    json_t *acc = json_object_get(sec, "acceleratorTypes");
    if (json_is_object(acc)) {
        /* Terms are ORed: the accelerator requirement goes into every one (ANDed). */
        json_t *expr = json_pack("{s:s,s:s,s:O}", "key", str_at(acc, "labelKey"), "operator",
                                 "In", "values", json_object_get(acc, "labelValues"));
        json_t *na = obj_at(obj_at(ps, "affinity"), "nodeAffinity");
        json_t *req = obj_at(na, "requiredDuringSchedulingIgnoredDuringExecution");
        json_t *terms = arr_at(req, "nodeSelectorTerms");
        if (json_array_size(terms) == 0)
            json_array_append_new(terms, json_object());
        size_t ti;
        json_t *term;
        json_array_foreach(terms, ti, term)
            json_array_append(arr_at(term, "matchExpressions"), expr);
        json_decref(expr);
    }
    json_t *tp = json_object_get(json_object_get(sec, "parallelism"), "tensor");
    if (json_is_integer(tp)) {
        /* Tensor parallelism: the engine flag and the GPUs, unless the args say it. */
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(sec, "containers"), i, c)
        {
            json_t *pc = find_named(json_object_get(ps, "containers"), str_at(c, "name"));
            if (!pc || !json_is_true(json_object_get(c, "mountModelVolume")))
                continue;
            json_t *args = arr_at(pc, "args");
            if (!has_arg(args, "--tensor-parallel-size") && !has_arg(args, "-tp")) {
                json_array_append_new(args, json_string("--tensor-parallel-size"));
                char t[24];
                snprintf(t, sizeof t, "%lld", json_integer_value(tp));
                json_array_append_new(args, json_string(t));
            }
            json_t *res = obj_at(pc, "resources");
            json_t *lim = obj_at(res, "limits"), *rq = obj_at(res, "requests");
            if (!json_object_get(lim, "nvidia.com/gpu"))
                json_object_set(lim, "nvidia.com/gpu", tp);
            if (!json_object_get(rq, "nvidia.com/gpu"))
                json_object_set(rq, "nvidia.com/gpu", tp);
        }
    }
    add_artifacts(cr, ps, sec);
    dedupe_volumes(ps);
    return d;
}

static json_t *service_account(const char *name, const char *ns)
{
    json_t *o = json_object();
    set_meta(o, K_SA, name, ns);
    return o;
}

/* ---- generate: BaseConfig sections -> objects ------------------------------------------- */

/* One ms_generate run. */
struct gen {
    const struct ms_cr *cr;
    struct names n;
    const char *ns, *cluster_role;
    bool v1;              /* --pool-api v1 */
    const json_t *data;   /* the BaseConfig's data, or NULL */
    const char *bfile;    /* names the BaseConfig in errors */
    json_t *vars;         /* template variables */
    json_t *out[K_COUNT]; /* what is emitted, by kind (that is, in dependency order) */
    bool pd_sa;           /* <msvc>-sa emitted */
    bool epp;             /* an EPP Deployment is generated */
    json_int_t epp_port;  /* the EPP Service's first port; 0 unknown */
    char *err;
    size_t errlen;
};

static void emit(struct gen *g, enum kind_id k, json_t *obj)
{
    json_array_append_new(g->out[k], obj);
}

/* A BaseConfig data key. Sections render in table order (so the first failing one is
 * the one reported); wanted says whether the section is rendered at all (NULL: always);
 * build takes the rendering (NULL when the key is absent: a skeleton or nothing),
 * completes it and emits what it makes, returning false with g->err on failure. */
struct section {
    const char *key;
    enum kind_id kind; /* what it produces */
    const char *role;  /* P/D sections: "decode" or "prefill" */
    bool list;         /* a YAML stream of objects rather than one object */
    bool (*wanted)(const struct gen *g, const struct section *s);
    bool (*build)(struct gen *g, const struct section *s, json_t *obj);
};

/* P/D: the CR's section for the row's role, or NULL. */
static const json_t *pd_sec(const struct gen *g, const struct section *s)
{
    return !strcmp(s->role, "decode") ? g->cr->decode : g->cr->prefill;
}

static bool pd_wanted(const struct gen *g, const struct section *s)
{
    return pd_sec(g, s) != NULL;
}

static bool epp_wanted(const struct gen *g, const struct section *s)
{
    (void)s;
    return g->epp;
}

/* decodeDeployment, prefillDeployment: the template (or a skeleton) with the CR's
 * section merged in; any P/D Deployment brings <msvc>-sa. */
static bool build_pd_deployment(struct gen *g, const struct section *s, json_t *base)
{
    json_t *rsec = render_section(pd_sec(g, s), g->vars, g->cr->path, s->role, g->err,
                                  g->errlen);
    if (!rsec) {
        json_decref(base);
        return false;
    }
    emit(g, s->kind, pd_deployment(g->cr, &g->n, g->ns, base, rsec, s->role));
    json_decref(rsec);
    if (!g->pd_sa) {
        emit(g, K_SA, service_account(g->n.sa, g->ns));
        g->pd_sa = true;
    }
    return true;
}

/* decodeService, prefillService: selecting the role's pods. */
static bool build_pd_service(struct gen *g, const struct section *s, json_t *svc)
{
    if (!svc)
        return true;
    set_meta(svc, s->kind, !strcmp(s->role, "decode") ? g->n.decode_svc : g->n.prefill_svc,
             g->ns);
    set_labels(obj_at(obj_at(svc, "spec"), "selector"), g->n.model, s->role);
    emit(g, s->kind, svc);
    return true;
}

/* eppDeployment: the router as llm-d's endpoint picker, with its ServiceAccount and the
 * RoleBinding to the EPP's ClusterRole. */
static bool build_epp_deployment(struct gen *g, const struct section *s, json_t *epp)
{
    if (!epp)
        return true;
    const struct names *n = &g->n;
    set_meta(epp, s->kind, n->epp_deploy, g->ns);
    json_object_set_new(obj_at(obj_at(epp, "metadata"), "labels"), "llm-d.ai/epp",
                        json_string(n->epp_deploy));
    json_t *spec = obj_at(epp, "spec");
    json_t *rep = json_object_get(g->cr->epp, "replicas");
    if (json_is_integer(rep))
        json_object_set(spec, "replicas", rep);
    else if (!json_object_get(spec, "replicas"))
        json_object_set_new(spec, "replicas", json_integer(1));
    json_object_set_new(obj_at(obj_at(spec, "selector"), "matchLabels"), "llm-d.ai/epp",
                        json_string(n->epp_deploy));
    json_t *tpl = obj_at(spec, "template");
    json_object_set_new(obj_at(obj_at(tpl, "metadata"), "labels"), "llm-d.ai/epp",
                        json_string(n->epp_deploy));
    json_t *ps = obj_at(tpl, "spec");
    json_object_set_new(ps, "serviceAccountName", json_string(n->epp_sa));
    merge_containers(ps, "containers", json_object_get(g->cr->epp, "containers"));
    dedupe_volumes(ps);
    emit(g, s->kind, epp);
    g->epp = true;
    emit(g, K_SA, service_account(n->epp_sa, g->ns));
    json_t *rb = json_object();
    set_meta(rb, K_RB, n->epp_rb, g->ns);
    json_object_set_new(rb, "roleRef",
                        json_pack("{s:s,s:s,s:s}", "apiGroup", "rbac.authorization.k8s.io",
                                  "kind", "ClusterRole", "name", g->cluster_role));
    json_object_set_new(rb, "subjects",
                        json_pack("[{s:s,s:s,s:s}]", "kind", "ServiceAccount", "name",
                                  n->epp_sa, "namespace", g->ns));
    emit(g, K_RB, rb);
    return true;
}

/* eppService (only with an EPP): selects the EPP's pods; its first port is the one the
 * InferencePool's endpoint picker reference names. */
static bool build_epp_service(struct gen *g, const struct section *s, json_t *es)
{
    if (!es)
        return true;
    set_meta(es, s->kind, g->n.epp_svc, g->ns);
    json_t *spec = obj_at(es, "spec");
    json_object_set_new(obj_at(spec, "selector"), "llm-d.ai/epp", json_string(g->n.epp_deploy));
    json_t *port = json_object_get(json_array_get(json_object_get(spec, "ports"), 0), "port");
    if (json_is_integer(port))
        g->epp_port = json_integer_value(port);
    emit(g, s->kind, es);
    return true;
}

/* eppConfig: an EndpointPickerConfig (wrapped into a ConfigMap) or a ConfigMap. */
static bool build_epp_config(struct gen *g, const struct section *s, json_t *ec)
{
    if (!ec)
        return true;
    if (strcmp(str_at(ec, "kind") ? str_at(ec, "kind") : "", "ConfigMap")) {
        struct buf y = BUF_INIT;
        yaml_emit(&y, ec, 0);
        json_t *cm = json_object();
        set_meta(cm, s->kind, g->n.epp_cfg, g->ns);
        json_object_set_new(cm, "data",
                            json_pack("{s:s%}", "config.yaml", y.data ? y.data : "", y.len));
        buf_free(&y);
        json_decref(ec);
        ec = cm;
    } else {
        set_meta(ec, s->kind, g->n.epp_cfg, g->ns);
    }
    emit(g, s->kind, ec);
    return true;
}

/* configMaps: a list of ConfigMaps (or a stream of them), kept as written but moved into
 * the stack's namespace. */
static bool build_config_maps(struct gen *g, const struct section *s, json_t *cml)
{
    if (!cml)
        return true;
    size_t i;
    json_t *doc;
    json_array_foreach(cml, i, doc)
    {
        size_t k;
        json_t *cm;
        if (json_is_array(doc)) {
            json_array_foreach(doc, k, cm) json_array_append(g->out[s->kind], cm);
        } else if (json_is_object(doc)) {
            json_array_append(g->out[s->kind], doc);
        }
    }
    json_decref(cml);
    json_array_foreach(g->out[s->kind], i, doc)
    {
        json_object_set_new(obj_at(doc, "metadata"), "namespace", json_string(g->ns));
    }
    return true;
}

/* The pool's selector in the --pool-api's shape (v1alpha2: a map of labels; v1:
 * matchLabels), the model's labels always in it. */
static void pool_selector(struct gen *g, json_t *spec)
{
    json_t *sel = obj_at(spec, "selector");
    if (g->v1) {
        json_t *ml = obj_at(sel, "matchLabels");
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(sel, tmp, k, v)
        {
            if (json_is_string(v)) { /* v1alpha2's flat labels */
                json_object_set(ml, k, v);
                json_object_del(sel, k);
            }
        }
        set_labels(ml, g->n.model, NULL);
    } else {
        json_t *ml = json_object_get(sel, "matchLabels");
        if (json_is_object(ml)) { /* v1's matchLabels */
            json_object_update(sel, ml);
            json_object_del(sel, "matchLabels");
        }
        set_labels(sel, g->n.model, NULL);
    }
}

/* The reference to the endpoint picker, as llm-d's controller sets it: when we generate
 * the EPP, its name is always our EPP Service, with that Service's port where the
 * template gives none. v1alpha2: extensionRef {name, portNumber}; v1: endpointPickerRef
 * {name, port: {number}}, the port required for a Service (the EPP Service's first port,
 * else 9002, GAIE's EPP port). A reference written for the other version converts. */
static void pool_epp_ref(struct gen *g, json_t *spec)
{
    const char *mine = g->v1 ? "endpointPickerRef" : "extensionRef";
    const char *other = g->v1 ? "extensionRef" : "endpointPickerRef";
    json_t *theirs = json_object_get(spec, other);
    if (json_is_object(theirs) && !json_object_get(spec, mine))
        json_object_set(spec, mine, theirs);
    json_object_del(spec, other);
    json_t *ref = json_object_get(spec, mine);
    if (!json_is_object(ref)) {
        if (!g->epp)
            return;
        ref = obj_at(spec, mine);
    }
    if (g->epp)
        json_object_set_new(ref, "name", json_string(g->n.epp_svc));
    if (!g->v1) {
        json_t *num = json_object_get(json_object_get(ref, "port"), "number");
        if (num && !json_object_get(ref, "portNumber"))
            json_object_set(ref, "portNumber", num);
        json_object_del(ref, "port");
        if (g->epp && g->epp_port && !json_object_get(ref, "portNumber"))
            json_object_set_new(ref, "portNumber", json_integer(g->epp_port));
        return;
    }
    json_t *pn = json_object_get(ref, "portNumber");
    const char *kind = str_at(ref, "kind");
    if (!json_object_get(json_object_get(ref, "port"), "number") &&
        (!kind || !strcmp(kind, "Service")))
        json_object_set_new(obj_at(ref, "port"), "number",
                            json_is_integer(pn) ? json_incref(pn)
                            : g->epp_port       ? json_integer(g->epp_port)
                                                : json_integer(9002));
    json_object_del(ref, "portNumber");
}

/* inferencePool: in the --pool-api's group and shape (a template written for the other
 * version converts: targetPortNumber <-> targetPorts, selector, EPP reference), selecting
 * the model's pods, naming our EPP. */
static bool build_pool(struct gen *g, const struct section *s, json_t *pool)
{
    if (!pool)
        return true;
    enum kind_id k = g->v1 ? K_POOL_V1 : s->kind;
    json_object_set_new(pool, "apiVersion", json_string(kinds[k].api_version));
    set_meta(pool, k, g->n.pool, g->ns);
    json_t *spec = obj_at(pool, "spec");
    pool_selector(g, spec);
    if (g->v1) {
        json_t *tn = json_object_get(spec, "targetPortNumber");
        if (tn && !json_object_get(spec, "targetPorts"))
            json_object_set_new(spec, "targetPorts", json_pack("[{s:O}]", "number", tn));
        json_object_del(spec, "targetPortNumber");
    } else {
        json_t *tn = json_object_get(json_array_get(json_object_get(spec, "targetPorts"), 0),
                                     "number");
        if (tn && !json_object_get(spec, "targetPortNumber"))
            json_object_set(spec, "targetPortNumber", tn);
        json_object_del(spec, "targetPorts");
    }
    pool_epp_ref(g, spec);
    emit(g, k, pool);
    return true;
}

/* inferenceModel: the CR's model name in our pool; criticality defaults to Standard. */
static bool build_model(struct gen *g, const struct section *s, json_t *im)
{
    if (!im)
        return true;
    json_object_set_new(im, "apiVersion", json_string(kinds[s->kind].api_version));
    set_meta(im, s->kind, g->n.msvc, g->ns);
    json_t *spec = obj_at(im, "spec");
    json_object_set_new(spec, "modelName", json_string(g->cr->model_name));
    json_t *ref = obj_at(spec, "poolRef");
    json_object_set_new(ref, "name", json_string(g->n.pool));
    if (g->v1)
        json_object_set_new(ref, "group", json_string("inference.networking.k8s.io"));
    if (!json_object_get(spec, "criticality"))
        json_object_set_new(spec, "criticality", json_string("Standard"));
    emit(g, s->kind, im);
    return true;
}

/* httpRoute: also without a template when the CR names gateways; routes to our pool
 * unless the template has rules. */
static bool build_route(struct gen *g, const struct section *s, json_t *route)
{
    json_t *gw = g->cr->gateway_refs;
    if (!route && !json_array_size(gw))
        return true;
    if (!route)
        route = json_object();
    set_meta(route, s->kind, g->n.route, g->ns);
    json_t *spec = obj_at(route, "spec");
    if (json_array_size(gw))
        json_object_set(spec, "parentRefs", gw);
    if (!json_object_get(spec, "rules"))
        json_object_set_new(spec, "rules",
                            json_pack("[{s:[{s:s,s:s,s:s}]}]", "backendRefs", "group",
                                      g->v1 ? "inference.networking.k8s.io"
                                            : "inference.networking.x-k8s.io",
                                      "kind", "InferencePool", "name", g->n.pool));
    emit(g, s->kind, route);
    return true;
}

/* The BaseConfig keys, each the kind it makes and how: the only list of them. A new
 * section is one row and its build function (and, for a new kind, a row in kinds[]). */
static const struct section sections[] = {
    {"decodeDeployment", K_DEPLOY, "decode", false, pd_wanted, build_pd_deployment},
    {"prefillDeployment", K_DEPLOY, "prefill", false, pd_wanted, build_pd_deployment},
    {"decodeService", K_SVC, "decode", false, pd_wanted, build_pd_service},
    {"prefillService", K_SVC, "prefill", false, pd_wanted, build_pd_service},
    {"eppDeployment", K_DEPLOY, NULL, false, NULL, build_epp_deployment},
    {"eppService", K_SVC, NULL, false, epp_wanted, build_epp_service},
    {"eppConfig", K_CM, NULL, false, NULL, build_epp_config},
    {"configMaps", K_CM, NULL, true, NULL, build_config_maps},
    {"inferencePool", K_POOL, NULL, false, NULL, build_pool},
    {"inferenceModel", K_MODEL, NULL, false, NULL, build_model},
    {"httpRoute", K_ROUTE, NULL, false, NULL, build_route},
};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

static const struct section *find_section(const char *key)
{
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (!strcmp(sections[i].key, key))
            return &sections[i];
    return NULL;
}

/* The BaseConfig (a new reference, or NULL with none) from o's file, text or object;
 * *bfile names it in errors (label is its storage for a ConfigMap object). Checks that
 * it is a ConfigMap whose data maps known keys to strings. false with err. */
static bool load_base(const struct ms_gen_opts *o, json_t **out, const char **bfile,
                      char *label, size_t lcap, char *err, size_t errlen)
{
    json_t *base = NULL;
    bool from_obj = false;
    *out = NULL;
    *bfile = o->base_path ? o->base_path : "<baseconfig>";
    if (o->base_path || o->base_text) {
        struct errinfo ye;
        if (o->base_text) {
            base = yaml_parse(o->base_text, strlen(o->base_text), *bfile, &ye);
        } else {
            size_t len;
            char *text = read_all(o->base_path, &len, err, errlen);
            if (!text)
                return false;
            base = yaml_parse(text, len, *bfile, &ye);
            free(text);
        }
        if (!base)
            return failf(err, errlen, "%s", ye.msg);
    } else if (o->base_obj) {
        const json_t *md = json_object_get(o->base_obj, "metadata");
        const char *mns = str_at(md, "namespace"), *mname = str_at(md, "name");
        if (o->base_name)
            snprintf(label, lcap, "<configmap %.200s>", o->base_name);
        else
            snprintf(label, lcap, "<configmap %.100s%s%.100s>", mns ? mns : "",
                     mns ? "/" : "", mname ? mname : "?");
        *bfile = label;
        base = json_deep_copy(o->base_obj); /* read only: callers may share theirs */
        from_obj = true;
    } else {
        return true;
    }
    /* An object from the API server's list responses has no kind: only a wrong one is
     * refused. */
    const char *kind = str_at(base, "kind");
    if (!json_is_object(base) || (kind ? strcmp(kind, "ConfigMap") != 0 : !from_obj)) {
        json_decref(base);
        return failf(err, errlen, "%s: kind: a BaseConfig is a ConfigMap", *bfile);
    }
    json_t *data = json_object_get(base, "data");
    if (data && !json_is_object(data)) {
        json_decref(base);
        return failf(err, errlen, "%s: data: must be a mapping of templates", *bfile);
    }
    const char *key;
    json_t *val;
    json_object_foreach(data, key, val)
    {
        bool known = find_section(key) != NULL;
        if (!known || !json_is_string(val)) {
            char list[512] = "";
            size_t used = 0;
            for (size_t i = 0; i < N_SECTIONS && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                         i ? ", " : "", sections[i].key);
            failf(err, errlen, "%s: data.%s: %s%s%s", *bfile, key,
                  known ? "must be a string (a templated manifest)" : "unknown key (",
                  known ? "" : list, known ? "" : ")");
            json_decref(base);
            return false;
        }
    }
    *out = base;
    return true;
}

json_t *ms_generate(const struct ms_cr *cr, const struct ms_gen_opts *o, char *err,
                    size_t errlen)
{
    const char *pool_api = o->pool_api ? o->pool_api : "v1alpha2";
    if (strcmp(pool_api, "v1alpha2") && strcmp(pool_api, "v1")) {
        failf(err, errlen, "--pool-api: '%s' is not v1alpha2 or v1", pool_api);
        return NULL;
    }
    struct gen g = {
        .cr = cr,
        .ns = o->namespace ? o->namespace : cr->namespace ? cr->namespace : "default",
        .cluster_role = o->epp_cluster_role ? o->epp_cluster_role : "pod-read",
        .v1 = !strcmp(pool_api, "v1"),
        .err = err,
        .errlen = errlen,
    };
    make_names(cr, &g.n);
    json_t *base;
    char label[320];
    if (!load_base(o, &base, &g.bfile, label, sizeof label, err, errlen))
        return NULL;
    g.data = json_object_get(base, "data");
    g.vars = make_vars(cr, &g.n, g.ns);
    /* The router's --pool-group for the pool generated alongside it. */
    json_object_set_new(g.vars, "InferencePoolGroup",
                        json_string(g.v1 ? "inference.networking.k8s.io"
                                         : "inference.networking.x-k8s.io"));
    for (size_t k = 0; k < K_COUNT; k++)
        g.out[k] = json_array();
    err[0] = '\0';
    bool ok = true;
    for (size_t i = 0; ok && i < N_SECTIONS; i++) {
        const struct section *s = &sections[i];
        if (s->wanted && !s->wanted(&g, s))
            continue;
        json_t *obj = render_manifest(g.data, s->key, g.bfile, g.vars, s->list, err, errlen);
        ok = (obj || !err[0]) && s->build(&g, s, obj);
    }
    /* Autoscalers come from the CR alone (no BaseConfig key), one per autoscaled role
     * whose Deployment is generated. */
    for (int r = 0; ok && r < 2; r++) {
        const struct ms_autoscaling *as = r ? &cr->decode_as : &cr->prefill_as;
        if (as->on && (r ? cr->decode : cr->prefill))
            emit(&g, as->engine == MS_AS_KEDA ? K_SCALEDOBJECT : K_HPA,
                 ms_autoscaler_object(as, r ? "decode" : "prefill",
                                      r ? g.n.decode_deploy : g.n.prefill_deploy, g.ns,
                                      g.n.model));
    }
    json_t *result = NULL;
    if (ok) {
        result = json_array();
        for (size_t k = 0; k < K_COUNT; k++)
            json_array_extend(result, g.out[k]);
        size_t i;
        json_t *obj;
        json_array_foreach(result, i, obj)
        {
            char why[768];
            if (!ms_validate_object(obj, why, sizeof why)) {
                failf(err, errlen, "%.400s: the generated %s (check the CR and the BaseConfig)",
                      cr->path, why);
                json_decref(result);
                result = NULL;
                break;
            }
        }
    }
    for (size_t k = 0; k < K_COUNT; k++)
        json_decref(g.out[k]);
    json_decref(g.vars);
    json_decref(base);
    return result;
}

/* ---- validity ------------------------------------------------------------------------------ */

static bool dns_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              (max > 63 && s[i] == '.')))
            return false;
    return true;
}

/* Label keys: [prefix/]name, name <= 63 of [A-Za-z0-9-_.] starting and ending
 * alphanumeric; prefix a DNS subdomain. Values: "" or the same as a name. */
static bool label_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static bool check_labels(const json_t *labels, const char *what, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        const char *slash = strchr(k, '/');
        const char *name = slash ? slash + 1 : k;
        if (slash) {
            char prefix[256];
            size_t pl = (size_t)(slash - k);
            if (pl >= sizeof prefix)
                return failf(err, errlen, "%s: label key '%s': prefix too long", what, k);
            memcpy(prefix, k, pl);
            prefix[pl] = '\0';
            if (!dns_label(prefix, 253))
                return failf(err, errlen, "%s: label key '%s': bad prefix", what, k);
        }
        if (!label_name(name, strlen(name)))
            return failf(err, errlen, "%s: label key '%s' is not a valid label name", what, k);
        if (!json_is_string(v))
            return failf(err, errlen, "%s: label '%s' must be a string (quote it)", what, k);
        const char *s = json_string_value(v);
        if (*s && !label_name(s, strlen(s)))
            return failf(err, errlen, "%s: label '%s' value '%s' is not a valid label value",
                         what, k, s);
    }
    return true;
}

static bool check_pod_template(const json_t *d, const char *what, char *err, size_t errlen)
{
    const json_t *spec = json_object_get(d, "spec");
    const json_t *sel = json_object_get(json_object_get(spec, "selector"), "matchLabels");
    const json_t *tl = json_object_get(
        json_object_get(json_object_get(spec, "template"), "metadata"), "labels");
    if (!json_is_object(sel) || !json_object_size(sel))
        return failf(err, errlen, "%s: spec.selector.matchLabels: required", what);
    if (!check_labels(sel, what, err, errlen) || !check_labels(tl, what, err, errlen))
        return false;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)sel, k, v) if (!json_equal(json_object_get(tl, k), v)) return failf(
        err, errlen, "%s: spec.template.metadata.labels must include the selector's %s", what,
        k);
    const json_t *cs =
        json_object_get(json_object_get(json_object_get(spec, "template"), "spec"), "containers");
    if (!json_is_array(cs) || !json_array_size(cs))
        return failf(err, errlen, "%s: spec.template.spec.containers: at least one", what);
    size_t i;
    json_array_foreach(cs, i, v)
    {
        const char *name = str_at(v, "name");
        if (!name || !dns_label(name, 63))
            return failf(err, errlen, "%s: containers[%zu].name: required DNS label", what, i);
        if (!str_at(v, "image"))
            return failf(err, errlen, "%s: containers[%zu] (%s).image: required", what, i,
                         name);
    }
    return true;
}

bool ms_validate_object(const json_t *obj, char *err, size_t errlen)
{
    const char *api = str_at(obj, "apiVersion"), *kind = str_at(obj, "kind");
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = str_at(md, "name");
    char what[160];
    snprintf(what, sizeof what, "%s %s", kind ? kind : "object", name ? name : "?");
    if (!api || !*api || !kind || !*kind)
        return failf(err, errlen, "%s: apiVersion and kind are required", what);
    if (!name || !dns_label(name, 253))
        return failf(err, errlen, "%s: metadata.name must be a DNS subdomain", what);
    bool label63 = !strcmp(kind, "Service") || !strcmp(kind, "Deployment");
    if (label63 && !dns_label(name, 63))
        return failf(err, errlen, "%s: metadata.name must be a DNS label (<= 63)", what);
    if (!str_at(md, "namespace"))
        return failf(err, errlen, "%s: metadata.namespace: required", what);
    const json_t *labels = json_object_get(md, "labels");
    if (labels && !check_labels(labels, what, err, errlen))
        return false;
    const json_t *spec = json_object_get(obj, "spec");
    if (!strcmp(kind, "Deployment")) {
        if (strcmp(api, "apps/v1"))
            return failf(err, errlen, "%s: apiVersion must be apps/v1", what);
        return check_pod_template(obj, what, err, errlen);
    }
    if (!strcmp(kind, "Service")) {
        const json_t *ports = json_object_get(spec, "ports");
        if (!json_is_array(ports) || !json_array_size(ports))
            return failf(err, errlen, "%s: spec.ports: at least one", what);
        size_t i;
        json_t *p;
        json_array_foreach(ports, i, p)
        {
            json_t *pn = json_object_get(p, "port");
            if (!json_is_integer(pn) || json_integer_value(pn) < 1 ||
                json_integer_value(pn) > 65535)
                return failf(err, errlen, "%s: spec.ports[%zu].port: 1-65535", what, i);
        }
        return check_labels(json_object_get(spec, "selector"), what, err, errlen);
    }
    if (!strcmp(kind, "RoleBinding")) {
        const json_t *rr = json_object_get(obj, "roleRef");
        if (!str_at(rr, "kind") || !str_at(rr, "name") ||
            !json_array_size(json_object_get(obj, "subjects")))
            return failf(err, errlen, "%s: roleRef and subjects are required", what);
        return true;
    }
    if (!strcmp(kind, "InferencePool")) {
        const json_t *sel = json_object_get(spec, "selector");
        if (json_object_get(sel, "matchLabels"))
            sel = json_object_get(sel, "matchLabels");
        if (!json_object_size(sel))
            return failf(err, errlen, "%s: spec.selector: required", what);
        return check_labels(sel, what, err, errlen);
    }
    if (!strcmp(kind, "InferenceModel")) {
        if (!str_at(spec, "modelName") || !str_at(json_object_get(spec, "poolRef"), "name"))
            return failf(err, errlen, "%s: spec.modelName and spec.poolRef.name are required",
                         what);
        return true;
    }
    if (!strcmp(kind, "HTTPRoute")) {
        if (!json_array_size(json_object_get(spec, "rules")))
            return failf(err, errlen, "%s: spec.rules: at least one", what);
        return true;
    }
    if (!strcmp(kind, "HorizontalPodAutoscaler") || !strcmp(kind, "ScaledObject")) {
        const json_t *ref = json_object_get(spec, "scaleTargetRef");
        if (!str_at(ref, "name") || !str_at(ref, "kind"))
            return failf(err, errlen, "%s: spec.scaleTargetRef: kind and name are required",
                         what);
        const json_t *m = json_object_get(spec, !strcmp(kind, "ScaledObject") ? "triggers"
                                                                              : "metrics");
        if (!json_array_size(m))
            return failf(err, errlen, "%s: at least one metric or trigger", what);
        return true;
    }
    if (!strcmp(kind, "ConfigMap")) {
        const json_t *d = json_object_get(obj, "data");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)d, k, v) if (!json_is_string(v)) return failf(
            err, errlen, "%s: data.%s must be a string", what, k);
        return true;
    }
    return true;
}

/* ---- tandem ms generate ------------------------------------------------------------------- */

static void ms_usage(FILE *out)
{
    fputs("usage: tandem ms generate -m MODELSERVICE.yaml [-b BASECONFIG.yaml]\n"
          "                          [--epp-cluster-role pod-read] [--pool-api v1alpha2|v1]\n"
          "                          [-n NAMESPACE]\n\n"
          "Prints the Kubernetes objects a ModelService becomes (what the controller would\n"
          "apply), as a multi-document YAML stream for `kubectl apply -f -`, in dependency\n"
          "order. Errors name the file and field; nothing is printed on error.\n\n"
          "usage: tandem ms controller [--kubeconfig FILE] [--namespace NS] [--leader-elect]\n"
          "                            [--health-port N] [--metrics-port N] [--concurrency N]\n\n"
          "Reconciles ModelServices on a cluster with the same rendering (see\n"
          "`tandem ms controller --help`).\n",
          out);
}

int ms_main(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        ms_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "controller"))
        return ms_controller_main(argc - 1, argv + 1);
    if (strcmp(argv[0], "generate")) {
        fprintf(stderr, "tandem ms: unknown subcommand '%s' (generate, controller)\n", argv[0]);
        return 2;
    }
    const char *msvc = NULL, *basef = NULL, *role = "pod-read", *pool_api = "v1alpha2",
               *ns = NULL;
    const struct flag flags[] = {
        {"--modelservice", "-m", FLAG_STRING, &msvc, "FILE", "the ModelService CR", NULL},
        {"--baseconfig", "-b", FLAG_STRING, &basef, "FILE", "the BaseConfig ConfigMap", NULL},
        {"--epp-cluster-role", NULL, FLAG_STRING, &role, "NAME", "ClusterRole for the EPP (pod-read)", NULL},
        {"--pool-api", NULL, FLAG_STRING, &pool_api, "V", "InferencePool API: v1alpha2 or v1", NULL},
        {"--namespace", "-n", FLAG_STRING, &ns, "NS", "namespace (the CR's, else default)", NULL},
    };
    struct flags_result res;
    char err[1024];
    size_t nf = sizeof flags / sizeof flags[0];
    if (!flags_parse(flags, nf, argc - 1, argv + 1, &res, err, sizeof err)) {
        fprintf(stderr, "tandem ms generate: %s\n", err);
        return 2;
    }
    if (res.help) {
        ms_usage(stdout);
        flags_print_help(stdout, "tandem ms generate [flags]", "", flags, nf);
        return 0;
    }
    if (!msvc) {
        fprintf(stderr, "tandem ms generate: -m MODELSERVICE.yaml is required\n");
        return 2;
    }
    struct ms_cr cr;
    if (!ms_cr_load(msvc, &cr, err, sizeof err)) {
        fprintf(stderr, "tandem ms generate: %s\n", err);
        ms_cr_free(&cr);
        return 2;
    }
    struct ms_gen_opts o = {.base_path = basef, .epp_cluster_role = role,
                            .pool_api = pool_api, .namespace = ns};
    json_t *objs = ms_generate(&cr, &o, err, sizeof err);
    if (!objs) {
        fprintf(stderr, "tandem ms generate: %s\n", err);
        ms_cr_free(&cr);
        return 2;
    }
    struct buf out = BUF_INIT;
    size_t i;
    json_t *obj;
    json_array_foreach(objs, i, obj) yaml_emit_doc(&out, obj);
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    buf_free(&out);
    json_decref(objs);
    ms_cr_free(&cr);
    return fflush(stdout) == 0 ? 0 : 1;
}

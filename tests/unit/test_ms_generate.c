/* Unit tests for ModelService generation: seed 000's scenarios as golden object lists,
 * merge semantics, model artifacts, invalid input, and the strict object checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/yaml.h"
#include "ms/ms.h"

#define SAMPLES TANDEM_SOURCE_DIR "/deploy/samples/"

static json_t *gen_files(const char *cr_path, const char *base_path)
{
    struct ms_cr cr;
    char err[1024];
    if (!ms_cr_load(cr_path, &cr, err, sizeof err))
        fail_msg("%s", err);
    struct ms_gen_opts o = {.base_path = base_path};
    json_t *objs = ms_generate(&cr, &o, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    ms_cr_free(&cr);
    return objs;
}

static const json_t *find(const json_t *objs, const char *kind, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        const char *k = json_string_value(json_object_get(o, "kind"));
        const char *n =
            json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
        if (k && n && !strcmp(k, kind) && !strcmp(n, name))
            return o;
    }
    return NULL;
}

static const char *path_str(const json_t *o, const char *const *keys)
{
    for (; *keys; keys++)
        o = json_object_get(o, *keys);
    return json_string_value(o);
}

/* Seed 000 scenario 2: exactly these objects, in dependency order. */
static void test_golden_scenario_2(void **state)
{
    (void)state;
    json_t *objs = gen_files(SAMPLES "nixl-xpyd/facebook-nixl.yaml",
                             SAMPLES "nixl-xpyd/universal-baseconfig-hf.yaml");
    static const char *const want[][2] = {
        {"ServiceAccount", "facebook-opt-125m-nixl-sa"},
        {"ServiceAccount", "facebook-opt-125m-nixl-epp-sa"},
        {"RoleBinding", "facebook-opt-125m-nixl-epp-rolebinding"},
        {"Service", "facebook-opt-125m-nixl-epp-service"},
        {"Deployment", "facebook-opt-125m-nixl-decode"},
        {"Deployment", "facebook-opt-125m-nixl-prefill"},
        {"Deployment", "facebook-opt-125m-nixl-epp"},
        {"InferencePool", "facebook-opt-125m-nixl-inference-pool"},
        {"InferenceModel", "facebook-opt-125m-nixl"},
        {"HTTPRoute", "facebook-opt-125m-nixl-http-route"},
    };
    size_t n = sizeof want / sizeof *want;
    if (json_array_size(objs) != n) {
        char *s = json_dumps(objs, JSON_COMPACT);
        fail_msg("%zu objects, want %zu: %.2000s", json_array_size(objs), n, s);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(objs, i);
        assert_string_equal(json_string_value(json_object_get(o, "kind")), want[i][0]);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(o, "metadata"), "name")),
            want[i][1]);
    }
    /* Labels seed 000 shows on the decode Deployment (and its pods and selector). */
    const json_t *dec = find(objs, "Deployment", "facebook-opt-125m-nixl-decode");
    const json_t *labels = json_object_get(json_object_get(dec, "metadata"), "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "llm-d.ai/inferenceServing")),
                        "true");
    assert_string_equal(json_string_value(json_object_get(labels, "llm-d.ai/model")),
                        "facebook-opt-125m");
    assert_string_equal(json_string_value(json_object_get(labels, "llm-d.ai/role")), "decode");
    static const char *const sel[] = {"spec", "selector", "matchLabels", "llm-d.ai/role", NULL};
    assert_string_equal(path_str(dec, sel), "decode");
    static const char *const sa[] = {"spec", "template", "spec", "serviceAccountName", NULL};
    assert_string_equal(path_str(dec, sa), "facebook-opt-125m-nixl-sa");
    const json_t *epp = find(objs, "Deployment", "facebook-opt-125m-nixl-epp");
    assert_string_equal(path_str(epp, sa), "facebook-opt-125m-nixl-epp-sa");
    /* EPP Service on 9002; RoleBinding to ClusterRole pod-read; the InferenceModel. */
    const json_t *svc = find(objs, "Service", "facebook-opt-125m-nixl-epp-service");
    json_t *port = json_object_get(
        json_array_get(json_object_get(json_object_get(svc, "spec"), "ports"), 0), "port");
    assert_int_equal(json_integer_value(port), 9002);
    const json_t *rb = find(objs, "RoleBinding", "facebook-opt-125m-nixl-epp-rolebinding");
    static const char *const rk[] = {"roleRef", "kind", NULL}, *const rn[] = {"roleRef", "name",
                                                                             NULL};
    assert_string_equal(path_str(rb, rk), "ClusterRole");
    assert_string_equal(path_str(rb, rn), "pod-read");
    const json_t *im = find(objs, "InferenceModel", "facebook-opt-125m-nixl");
    static const char *const mn[] = {"spec", "modelName", NULL},
                             *const pr[] = {"spec", "poolRef", "name", NULL};
    assert_string_equal(path_str(im, mn), "facebook/opt-125m");
    assert_string_equal(path_str(im, pr), "facebook-opt-125m-nixl-inference-pool");
    const json_t *pool = find(objs, "InferencePool", "facebook-opt-125m-nixl-inference-pool");
    static const char *const ps[] = {"spec", "selector", "llm-d.ai/model", NULL};
    assert_string_equal(path_str(pool, ps), "facebook-opt-125m");
    assert_string_equal(json_string_value(json_object_get(pool, "apiVersion")),
                        "inference.networking.x-k8s.io/v1alpha2");
    json_decref(objs);
}

/* Scenario 3 differs only in the decode replicas. */
static void test_golden_scenario_3(void **state)
{
    (void)state;
    json_t *a = gen_files(SAMPLES "nixl-xpyd/facebook-nixl.yaml",
                          SAMPLES "nixl-xpyd/universal-baseconfig-hf.yaml");
    json_t *b = gen_files(SAMPLES "nixl-xpyd/facebook-nixl-xpyd.yaml",
                          SAMPLES "nixl-xpyd/universal-baseconfig-hf.yaml");
    assert_int_equal(json_array_size(a), json_array_size(b));
    json_t *da = (json_t *)find(a, "Deployment", "facebook-opt-125m-nixl-decode");
    json_t *db = (json_t *)find(b, "Deployment", "facebook-opt-125m-nixl-decode");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(da, "spec"), "replicas")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(db, "spec"), "replicas")),
                     2);
    json_object_set_new(json_object_get(db, "spec"), "replicas", json_integer(1));
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void test_all_samples_valid(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {SAMPLES "facebook/msvc.yaml", SAMPLES "facebook/baseconfig.yaml"},
        {SAMPLES "sim/msvc.yaml", SAMPLES "sim/baseconfig.yaml"},
    };
    for (size_t i = 0; i < 2; i++) {
        json_t *objs = gen_files(pairs[i][0], pairs[i][1]);
        assert_true(json_array_size(objs) >= 3);
        size_t k;
        json_t *o;
        char err[512];
        json_array_foreach(objs, k, o) if (!ms_validate_object(o, err, sizeof err))
            fail_msg("%s", err);
        json_decref(objs);
    }
}

static const char CR_HEAD[] =
    "apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1, namespace: ns1}\n"
    "spec:\n  routing: {modelName: org/model-A, ports: [{name: app_port, port: 8000}]}\n";

static json_t *gen_text(const char *cr_text, const char *base, char *err, size_t errlen)
{
    struct ms_cr cr;
    if (!ms_cr_parse(cr_text, strlen(cr_text), "cr.yaml", &cr, err, errlen)) {
        ms_cr_free(&cr);
        return NULL;
    }
    struct ms_gen_opts o = {.base_text = base};
    json_t *objs = ms_generate(&cr, &o, err, errlen);
    ms_cr_free(&cr);
    return objs;
}

static const char BASE_DECODE[] =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base}\ndata:\n"
    "  decodeDeployment: |\n"
    "    apiVersion: apps/v1\n"
    "    kind: Deployment\n"
    "    metadata: {name: x, labels: {team: a}}\n"
    "    spec:\n"
    "      template:\n"
    "        spec:\n"
    "          containers:\n"
    "          - name: vllm\n"
    "            image: vllm/vllm-openai:v0.9\n"
    "            command: [base-cmd]\n"
    "            args: ['--port', '{{ \"app_port\" | getPort }}']\n"
    "            env: [{name: A, value: base}, {name: B, value: base}]\n"
    "          volumes: [{name: shm, emptyDir: {}}, {name: model-storage, emptyDir: {}}]\n";

static void test_merge(void **state)
{
    (void)state;
    char cr[2048], err[1024];
    snprintf(cr, sizeof cr,
             "%s  modelArtifacts: {uri: \"hf://org/model-A\", authSecretName: hf-secret, size: "
             "20Gi}\n"
             "  decode:\n    replicas: 3\n    containers:\n"
             "    - name: vllm\n      command: [vllm, serve]\n"
             "      args: [\"{{ .HFModelName }}\", \"--served-model-name\", \"{{ .ModelName }}\"]\n"
             "      env: [{name: B, value: cr}, {name: C, value: cr}]\n"
             "      mountModelVolume: true\n"
             "    - name: sidecar\n      image: tandem:dev\n      args: [sidecar]\n",
             CR_HEAD);
    json_t *objs = gen_text(cr, BASE_DECODE, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    const json_t *d = find(objs, "Deployment", "m1-decode");
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(d, "metadata"), "labels"), "team")),
                        "a"); /* maps merge key by key: the base's label stays */
    const json_t *ps = json_object_get(json_object_get(json_object_get(d, "spec"), "template"),
                                       "spec");
    const json_t *cs = json_object_get(ps, "containers");
    assert_int_equal(json_array_size(cs), 2); /* the CR's new container appended */
    const json_t *v = json_array_get(cs, 0);
    /* command replaced; CR args (templated) before the base's */
    assert_string_equal(json_string_value(json_array_get(json_object_get(v, "command"), 0)),
                        "vllm");
    const json_t *args = json_object_get(v, "args");
    static const char *const want_args[] = {"org/model-A", "--served-model-name", "org/model-A",
                                            "--port", "8000"};
    assert_int_equal(json_array_size(args), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_array_get(args, i)), want_args[i]);
    /* env by name, CR wins, base order kept; HF env added, CR env kept */
    const json_t *env = json_object_get(v, "env");
    static const char *const names[] = {"A", "B", "C", "HF_HOME", "HF_TOKEN"};
    static const char *const vals[] = {"base", "cr", "cr", "/model-cache", NULL};
    assert_int_equal(json_array_size(env), 5);
    for (size_t i = 0; i < 5; i++) {
        const json_t *e = json_array_get(env, i);
        assert_string_equal(json_string_value(json_object_get(e, "name")), names[i]);
        if (vals[i])
            assert_string_equal(json_string_value(json_object_get(e, "value")), vals[i]);
    }
    static const char *const sec[] = {"valueFrom", "secretKeyRef", "name", NULL};
    assert_string_equal(path_str(json_array_get(env, 4), sec), "hf-secret");
    /* volumes deduped by name; model-storage is the artifact's emptyDir with the size */
    const json_t *vols = json_object_get(ps, "volumes");
    assert_int_equal(json_array_size(vols), 2);
    const json_t *ms = json_array_get(vols, 1);
    assert_string_equal(json_string_value(json_object_get(ms, "name")), "model-storage");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ms, "emptyDir"), "sizeLimit")), "20Gi");
    /* mounted only where mountModelVolume */
    assert_int_equal(json_array_size(json_object_get(v, "volumeMounts")), 1);
    assert_null(json_object_get(json_array_get(cs, 1), "volumeMounts"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "spec"), "replicas")),
                     3);
    json_decref(objs);
}

static void artifact(const char *uri, const char *want_path, const char *vol_key)
{
    char cr[2048], err[1024];
    snprintf(cr, sizeof cr,
             "%s  modelArtifacts: {uri: \"%s\"}\n"
             "  decode:\n    containers:\n    - name: vllm\n      image: v\n"
             "      args: [\"{{ .MountedModelPath }}\"]\n      mountModelVolume: true\n",
             CR_HEAD, uri);
    json_t *objs = gen_text(cr, NULL, err, sizeof err);
    if (!objs)
        fail_msg("%s: %s", uri, err);
    const json_t *d = find(objs, "Deployment", "m1-decode");
    const json_t *ps = json_object_get(json_object_get(json_object_get(d, "spec"), "template"),
                                       "spec");
    const json_t *c = json_array_get(json_object_get(ps, "containers"), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "args"), 0)),
                        want_path);
    const json_t *vol = json_array_get(json_object_get(ps, "volumes"), 0);
    assert_non_null(json_object_get(vol, vol_key));
    const json_t *mount = json_array_get(json_object_get(c, "volumeMounts"), 0);
    assert_string_equal(json_string_value(json_object_get(mount, "mountPath")), "/model-cache");
    bool ro = json_is_true(json_object_get(mount, "readOnly"));
    assert_true(ro == (strncmp(uri, "hf://", 5) != 0));
    json_decref(objs);
}

static void test_artifacts(void **state)
{
    (void)state;
    artifact("hf://org/model-A", "org/model-A", "emptyDir");
    artifact("pvc://models/llama/8b", "/model-cache/llama/8b", "persistentVolumeClaim");
    artifact("oci://registry.io/models/llama:1::/weights", "/model-cache/weights", "image");
}

static void test_invalid_inputs(void **state)
{
    (void)state;
    char err[1024];
    static const struct {
        const char *cr, *base, *want;
    } cases[] = {
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {}\n  modelArtifacts: {uri: \"hf://a/b\"}\n",
         NULL, "cr.yaml: spec.routing.modelName: required"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"s3://a/b\"}\n",
         NULL, "cr.yaml: spec.modelArtifacts.uri: 's3://a/b' has an unknown scheme"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b\n", NULL, "cr.yaml:"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n"
         "  decode: {containers: [{name: v, image: i}]}\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
         "  decodeDeployment: |\n    apiVersion: apps/v1\n    kind: Deployment\n"
         "    metadata:\n      name: {{ .NoSuchVar }}\n",
         "data.decodeDeployment:4:"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n  decodeDeploymnt: x\n",
         "data.decodeDeploymnt: unknown key"},
        {"apiVersion: llm-d.ai/v9\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n",
         NULL, "cr.yaml: apiVersion: must be llm-d.ai/v1alpha1"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\n"
         "metadata: {name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefgh}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n",
         NULL, "cr.yaml: metadata.name: 'abcdefghijabcdefghijabcdefghijabcdefghijabcdefgh' must "
               "be a DNS label of at most 47"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n"
         "  decode: {containers: [{name: v, image: i, env: [{value: x}]}]}\n",
         NULL, "cr.yaml: spec.decode.containers[0].env[0].name: required"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n"
         "  decode: {replicas: 99999999999, containers: [{name: v, image: i}]}\n",
         NULL, "cr.yaml: spec.decode.replicas: must be an integer in [0, 2147483647]"},
        {"apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
         "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n"
         "  decode: {containers: [{name: side}]}\n",
         NULL, "cr.yaml: the generated Deployment m1-decode: containers[0] (side).image: required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = '\0';
        json_t *objs = gen_text(cases[i].cr, cases[i].base, err, sizeof err);
        assert_null(objs);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
    }
}

/* acceleratorTypes is ANDed into every node-affinity term; base ConfigMaps land in the
 * stack's namespace; an InferenceModel needs only its own key. */
static void test_affinity_namespace_model(void **state)
{
    (void)state;
    char cr[2048], err[1024];
    snprintf(cr, sizeof cr,
             "%s  modelArtifacts: {uri: \"hf://org/m\"}\n"
             "  decode:\n    acceleratorTypes: {labelKey: gpu, labelValues: [H100]}\n"
             "    containers: [{name: vllm, image: v}]\n",
             CR_HEAD);
    const char *base =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
        "  decodeDeployment: |\n    apiVersion: apps/v1\n    kind: Deployment\n"
        "    spec:\n      template:\n        spec:\n          affinity:\n"
        "            nodeAffinity:\n              requiredDuringSchedulingIgnoredDuringExecution:\n"
        "                nodeSelectorTerms:\n"
        "                - matchExpressions: [{key: zone, operator: In, values: [z1]}]\n"
        "                - matchExpressions: [{key: zone, operator: In, values: [z2]}]\n"
        "  configMaps: |\n    - apiVersion: v1\n      kind: ConfigMap\n"
        "      metadata: {name: extra, namespace: other}\n      data: {a: b}\n"
        "  inferenceModel: |\n    spec: {criticality: Critical}\n";
    json_t *objs = gen_text(cr, base, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    const json_t *d = find(objs, "Deployment", "m1-decode");
    const json_t *terms = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(
                                                                 d, "spec"),
                                                             "template"),
                                                             "spec"),
                                            "affinity"),
                            "nodeAffinity"),
            "requiredDuringSchedulingIgnoredDuringExecution"),
        "nodeSelectorTerms");
    assert_int_equal(json_array_size(terms), 2);
    for (size_t i = 0; i < 2; i++) {
        const json_t *ex = json_object_get(json_array_get(terms, i), "matchExpressions");
        assert_int_equal(json_array_size(ex), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(ex, 1), "key")),
                            "gpu");
    }
    const json_t *cm = find(objs, "ConfigMap", "extra");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(cm, "metadata"), "namespace")), "ns1");
    const json_t *im = find(objs, "InferenceModel", "m1");
    assert_non_null(im);
    static const char *const crit[] = {"spec", "criticality", NULL};
    assert_string_equal(path_str(im, crit), "Critical");
    json_decref(objs);
}

/* The pool as llm-d's controller builds it: a template with neither selector nor EPP
 * reference gets both, in either API version's shape; our EPP's name wins over the
 * template's; the port comes from the template, else the EPP Service, else 9002 (v1). */
static const char BASE_POOL[] =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
    "  eppDeployment: |\n    spec: {template: {spec: {containers: [{name: epp, image: e}]}}}\n"
    "  eppService: |\n    spec: {ports: [{name: grpc, port: 9009}, {name: m, port: 9090}]}\n"
    "  inferencePool: |\n    spec: {targetPortNumber: 8000}\n";

static json_t *gen_opts(const char *cr_text, struct ms_gen_opts *o, char *err, size_t errlen)
{
    struct ms_cr cr;
    if (!ms_cr_parse(cr_text, strlen(cr_text), "cr.yaml", &cr, err, errlen)) {
        ms_cr_free(&cr);
        return NULL;
    }
    json_t *objs = ms_generate(&cr, o, err, errlen);
    ms_cr_free(&cr);
    return objs;
}

static const json_t *pool_spec(const json_t *objs)
{
    const json_t *pool = find(objs, "InferencePool", "m1-inference-pool");
    assert_non_null(pool);
    return json_object_get(pool, "spec");
}

static void test_pool_completed(void **state)
{
    (void)state;
    char cr[1024], err[1024];
    snprintf(cr, sizeof cr, "%s  modelArtifacts: {uri: \"hf://org/model-A\"}\n", CR_HEAD);
    static const char *const model[] = {"selector", "llm-d.ai/model", NULL},
                             *const serving[] = {"selector", "llm-d.ai/inferenceServing", NULL},
                             *const ml_model[] = {"selector", "matchLabels", "llm-d.ai/model",
                                                  NULL},
                             *const ext_name[] = {"extensionRef", "name", NULL},
                             *const epr_name[] = {"endpointPickerRef", "name", NULL};
    /* v1alpha2 */
    struct ms_gen_opts o = {.base_text = BASE_POOL};
    json_t *objs = gen_opts(cr, &o, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    const json_t *spec = pool_spec(objs);
    assert_string_equal(path_str(spec, model), "org-model-a");
    assert_string_equal(path_str(spec, serving), "true");
    assert_string_equal(path_str(spec, ext_name), "m1-epp-service");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(spec, "extensionRef"), "portNumber")),
        9009);
    assert_int_equal(json_integer_value(json_object_get(spec, "targetPortNumber")), 8000);
    assert_null(json_object_get(spec, "endpointPickerRef"));
    json_decref(objs);
    /* v1 */
    o.pool_api = "v1";
    objs = gen_opts(cr, &o, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    spec = pool_spec(objs);
    assert_string_equal(
        json_string_value(json_object_get(find(objs, "InferencePool", "m1-inference-pool"),
                                          "apiVersion")),
        "inference.networking.k8s.io/v1");
    assert_string_equal(path_str(spec, ml_model), "org-model-a");
    assert_int_equal(json_object_size(json_object_get(spec, "selector")), 1); /* matchLabels */
    assert_string_equal(path_str(spec, epr_name), "m1-epp-service");
    const json_t *epr = json_object_get(spec, "endpointPickerRef");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(epr, "port"), "number")),
                     9009);
    assert_null(json_object_get(epr, "portNumber"));
    assert_null(json_object_get(spec, "extensionRef"));
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(spec, "targetPorts"), 0), "number")),
                     8000);
    json_decref(objs);
    /* A template naming another EPP with its own port, no EPP Service: the name is ours,
     * the template's port and failure mode stay (converted for v1). */
    const char *base2 =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
        "  eppDeployment: |\n    spec: {template: {spec: {containers: [{name: epp, image: e}]}}}\n"
        "  inferencePool: |\n    spec:\n      targetPortNumber: 8000\n"
        "      extensionRef: {name: other, portNumber: 9100, failureMode: FailOpen}\n";
    for (int v1 = 0; v1 < 2; v1++) {
        struct ms_gen_opts o2 = {.base_text = base2, .pool_api = v1 ? "v1" : NULL};
        objs = gen_opts(cr, &o2, err, sizeof err);
        if (!objs)
            fail_msg("%s", err);
        spec = pool_spec(objs);
        const json_t *ref = json_object_get(spec, v1 ? "endpointPickerRef" : "extensionRef");
        assert_string_equal(json_string_value(json_object_get(ref, "name")), "m1-epp-service");
        assert_string_equal(json_string_value(json_object_get(ref, "failureMode")), "FailOpen");
        const json_t *port = v1 ? json_object_get(json_object_get(ref, "port"), "number")
                                : json_object_get(ref, "portNumber");
        assert_int_equal(json_integer_value(port), 9100);
        json_decref(objs);
    }
    /* v1 without an EPP Service: GAIE's EPP port. Without an EPP the template's
     * reference (here none) is left as it is. */
    const char *base3 =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
        "  eppDeployment: |\n    spec: {template: {spec: {containers: [{name: epp, image: e}]}}}\n"
        "  inferencePool: |\n    spec: {targetPortNumber: 8000}\n";
    struct ms_gen_opts o3 = {.base_text = base3, .pool_api = "v1"};
    objs = gen_opts(cr, &o3, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    epr = json_object_get(pool_spec(objs), "endpointPickerRef");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(epr, "port"), "number")),
                     9002);
    json_decref(objs);
    const char *base4 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
                        "  inferencePool: |\n    spec: {targetPortNumber: 8000}\n";
    for (int v1 = 0; v1 < 2; v1++) {
        struct ms_gen_opts o4 = {.base_text = base4, .pool_api = v1 ? "v1" : NULL};
        objs = gen_opts(cr, &o4, err, sizeof err);
        if (!objs)
            fail_msg("%s", err);
        spec = pool_spec(objs);
        assert_null(json_object_get(spec, "extensionRef"));
        assert_null(json_object_get(spec, "endpointPickerRef"));
        assert_string_equal(path_str(spec, v1 ? ml_model : model), "org-model-a");
        json_decref(objs);
    }
}

/* The golden sample's pool already names the EPP Service with its port: kept as written
 * (v1alpha2), converted to endpointPickerRef.port (v1). */
static void test_pool_golden_ref(void **state)
{
    (void)state;
    for (int v1 = 0; v1 < 2; v1++) {
        struct ms_cr cr;
        char err[1024];
        if (!ms_cr_load(SAMPLES "nixl-xpyd/facebook-nixl.yaml", &cr, err, sizeof err))
            fail_msg("%s", err);
        struct ms_gen_opts o = {.base_path = SAMPLES "nixl-xpyd/universal-baseconfig-hf.yaml",
                                .pool_api = v1 ? "v1" : NULL};
        json_t *objs = ms_generate(&cr, &o, err, sizeof err);
        ms_cr_free(&cr);
        if (!objs)
            fail_msg("%s", err);
        const json_t *pool = find(objs, "InferencePool", "facebook-opt-125m-nixl-inference-pool");
        const json_t *spec = json_object_get(pool, "spec");
        const json_t *ref = json_object_get(spec, v1 ? "endpointPickerRef" : "extensionRef");
        char *got = json_dumps(ref, JSON_COMPACT);
        assert_string_equal(got, v1 ? "{\"name\":\"facebook-opt-125m-nixl-epp-service\","
                                      "\"failureMode\":\"FailClose\",\"port\":{\"number\":9002}}"
                                    : "{\"name\":\"facebook-opt-125m-nixl-epp-service\","
                                      "\"portNumber\":9002,\"failureMode\":\"FailClose\"}");
        free(got);
        json_decref(objs);
    }
}

/* base_obj: the BaseConfig as a parsed ConfigMap (what a controller reads) renders what
 * the same text does, is left untouched, and errors name the ConfigMap. */
static void test_base_obj(void **state)
{
    (void)state;
    char cr[2048], err[1024];
    snprintf(cr, sizeof cr,
             "%s  modelArtifacts: {uri: \"hf://org/model-A\"}\n"
             "  decode:\n    containers: [{name: vllm, image: v, args: [\"{{ .ModelName }}\"]}]\n",
             CR_HEAD);
    json_t *want = gen_text(cr, BASE_DECODE, err, sizeof err);
    if (!want)
        fail_msg("%s", err);
    struct errinfo ye;
    json_t *cm = yaml_parse(BASE_DECODE, strlen(BASE_DECODE), "base", &ye);
    assert_non_null(cm);
    json_object_set_new(json_object_get(cm, "metadata"), "namespace", json_string("ns1"));
    json_t *data = json_object_get(cm, "data");
    json_t *before = json_deep_copy(cm);
    struct ms_gen_opts o = {.base_obj = cm};
    json_t *got = gen_opts(cr, &o, err, sizeof err);
    if (!got)
        fail_msg("%s", err);
    assert_true(json_equal(got, want));
    assert_true(json_equal(cm, before));
    json_decref(before);
    assert_int_equal(cm->refcount, 1);
    json_decref(got);
    /* As the API server lists it: no kind, no apiVersion. */
    json_object_del(cm, "kind");
    json_object_del(cm, "apiVersion");
    got = gen_opts(cr, &o, err, sizeof err);
    if (!got)
        fail_msg("%s", err);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    /* Errors name <configmap NS/NAME>, or base_name. */
    json_object_set_new(data, "decodeDeploymnt", json_string("x"));
    assert_null(gen_opts(cr, &o, err, sizeof err));
    assert_non_null(strstr(err, "<configmap ns1/base>: data.decodeDeploymnt: unknown key ("));
    static const char *const keys[] = {"decodeDeployment", "prefillDeployment",
                                       "decodeService",    "prefillService",
                                       "eppDeployment",    "eppService",
                                       "eppConfig",        "configMaps",
                                       "inferencePool",    "inferenceModel",
                                       "httpRoute"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strstr(strstr(err, "unknown key"), keys[i]))
            fail_msg("'%s' lacks %s", err, keys[i]);
    json_object_del(data, "decodeDeploymnt");
    json_object_set_new(data, "decodeService", json_integer(1));
    o.base_name = "team/cfg";
    assert_null(gen_opts(cr, &o, err, sizeof err));
    assert_string_equal(err, "<configmap team/cfg>: data.decodeService: must be a string (a "
                             "templated manifest)");
    json_object_set_new(data, "decodeService", json_string("spec: {{ .Nope }}\n"));
    assert_null(gen_opts(cr, &o, err, sizeof err));
    assert_non_null(strstr(err, "<configmap team/cfg>: data.decodeService:1:"));
    json_object_set_new(cm, "data", json_string("x"));
    assert_null(gen_opts(cr, &o, err, sizeof err));
    assert_string_equal(err, "<configmap team/cfg>: data: must be a mapping of templates");
    json_object_set_new(cm, "kind", json_string("Secret"));
    o.base_name = NULL;
    assert_null(gen_opts(cr, &o, err, sizeof err));
    assert_string_equal(err, "<configmap ns1/base>: kind: a BaseConfig is a ConfigMap");
    json_decref(cm);
}

/* ms_child_kinds: every object generate emits is of a listed kind (apiVersion and kind),
 * under a matching pool API; both pool groups are listed. */
static void test_child_kinds(void **state)
{
    (void)state;
    const struct ms_child_kind *k;
    size_t nk = ms_child_kinds(&k);
    assert_int_equal(nk, 11);
    size_t pools = 0;
    for (size_t i = 0; i < nk; i++) {
        assert_non_null(k[i].api_version);
        assert_non_null(k[i].plural);
        pools += !strcmp(k[i].kind, "InferencePool");
    }
    assert_int_equal(pools, 2);
    static const char *const pairs[][2] = {
        {SAMPLES "sim/msvc.yaml", SAMPLES "sim/baseconfig.yaml"},
        {SAMPLES "nixl-xpyd/facebook-nixl.yaml", SAMPLES "nixl-xpyd/universal-baseconfig-hf.yaml"},
    };
    for (size_t p = 0; p < 2; p++) {
        for (int v1 = 0; v1 < 2; v1++) {
            struct ms_cr cr;
            char err[1024];
            if (!ms_cr_load(pairs[p][0], &cr, err, sizeof err))
                fail_msg("%s", err);
            struct ms_gen_opts o = {.base_path = pairs[p][1], .pool_api = v1 ? "v1" : NULL};
            json_t *objs = ms_generate(&cr, &o, err, sizeof err);
            ms_cr_free(&cr);
            if (!objs)
                fail_msg("%s", err);
            size_t i, last = 0;
            json_t *obj;
            json_array_foreach(objs, i, obj)
            {
                const char *api = json_string_value(json_object_get(obj, "apiVersion"));
                const char *kind = json_string_value(json_object_get(obj, "kind"));
                size_t j;
                for (j = 0; j < nk; j++)
                    if (!strcmp(k[j].api_version, api) && !strcmp(k[j].kind, kind))
                        break;
                if (j == nk)
                    fail_msg("%s %s is not in ms_child_kinds", api, kind);
                if (k[j].pool_api)
                    assert_string_equal(k[j].pool_api, v1 ? "v1" : "v1alpha2");
                assert_true(j >= last); /* emitted in the table's (dependency) order */
                last = j;
            }
            json_decref(objs);
        }
    }
}

/* spec.<role>.autoscaling: an HPA per role for each metric kind, a KEDA ScaledObject with
 * per-role Prometheus queries, the Deployment starting at minReplicas, and the errors. */
static const char AS_HEAD[] =
    "apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1, namespace: ns1}\n"
    "spec:\n  routing: {modelName: org/model-A}\n  modelArtifacts: {uri: \"hf://org/model-A\"}\n"
    "  decoupleScaling: true\n";

static const char *at(const json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && cur;
         k = strtok_r(NULL, ".", &save))
        cur = k[0] >= '0' && k[0] <= '9' ? json_array_get(cur, (size_t)atoi(k))
                                         : json_object_get(cur, k);
    static char out[512];
    if (json_is_string(cur))
        return json_string_value(cur);
    if (json_is_integer(cur)) {
        snprintf(out, sizeof out, "%lld", (long long)json_integer_value(cur));
        return out;
    }
    return NULL;
}

static void test_autoscaling_hpa(void **state)
{
    (void)state;
    char cr[4096], err[1024];
    snprintf(cr, sizeof cr,
             "%s  prefill:\n    containers: [{name: vllm, image: i}]\n"
             "    autoscaling:\n      minReplicas: 2\n      maxReplicas: 6\n      metrics:\n"
             "      - {metric: \"vllm:num_requests_waiting\", target: 4}\n"
             "      - {metric: \"vllm:kv_cache_usage_perc\", target: 0.8, averaging: total}\n"
             "      - {metric: \"vllm:request_success_total\", target: 5, rate: 2m}\n"
             "      behavior:\n        scaleDown: {stabilizationWindowSeconds: 120, policies: "
             "[{type: Pods, value: 1, periodSeconds: 30}]}\n"
             "  decode:\n    replicas: 3\n    containers: [{name: vllm, image: i}]\n",
             AS_HEAD);
    json_t *objs = gen_text(cr, NULL, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    const json_t *h = find(objs, "HorizontalPodAutoscaler", "m1-prefill");
    assert_non_null(h);
    assert_null(find(objs, "HorizontalPodAutoscaler", "m1-decode")); /* not autoscaled */
    assert_string_equal(at(h, "apiVersion"), "autoscaling/v2");
    assert_string_equal(at(h, "spec.scaleTargetRef.kind"), "Deployment");
    assert_string_equal(at(h, "spec.scaleTargetRef.name"), "m1-prefill");
    assert_string_equal(at(h, "spec.minReplicas"), "2");
    assert_string_equal(at(h, "spec.maxReplicas"), "6");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(h, "metadata"), "labels"),
                            "llm-d.ai/role")),
                        "prefill");
    /* per pod -> Pods metric, AverageValue */
    assert_string_equal(at(h, "spec.metrics.0.type"), "Pods");
    assert_string_equal(at(h, "spec.metrics.0.pods.metric.name"), "vllm:num_requests_waiting");
    assert_string_equal(at(h, "spec.metrics.0.pods.target.averageValue"), "4");
    /* total -> External, Value, selected by the role's labels; 0.8 -> 800m */
    assert_string_equal(at(h, "spec.metrics.1.type"), "External");
    assert_string_equal(at(h, "spec.metrics.1.external.target.value"), "800m");
    assert_string_equal(at(h, "spec.metrics.1.external.metric.selector.matchLabels.llm_d_ai_role"),
                        "prefill");
    /* a counter -> prometheus-adapter's per-second rate */
    assert_string_equal(at(h, "spec.metrics.2.pods.metric.name"),
                        "vllm:request_success_per_second");
    assert_string_equal(at(h, "spec.behavior.scaleDown.stabilizationWindowSeconds"), "120");
    /* The Deployment starts at minReplicas; the HPA comes after it. */
    const json_t *d = find(objs, "Deployment", "m1-prefill");
    assert_string_equal(at(d, "spec.replicas"), "2");
    assert_string_equal(at(find(objs, "Deployment", "m1-decode"), "spec.replicas"), "3");
    size_t i, di = 0, hi = 0;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        if (o == d)
            di = i;
        if (o == h)
            hi = i;
    }
    assert_true(hi > di);
    json_decref(objs);

    /* The local autoscaler's policy: min/max and the behavior, HPA defaults elsewhere. */
    struct ms_cr c;
    assert_true(ms_cr_parse(cr, strlen(cr), "cr.yaml", &c, err, sizeof err));
    assert_true(c.prefill_as.on);
    assert_false(c.decode_as.on);
    assert_int_equal(c.prefill_as.policy.min_replicas, 2);
    assert_int_equal((int)c.prefill_as.policy.down.window_s, 120);
    assert_int_equal(c.prefill_as.policy.down.policies[0].type, MS_HPA_PODS);
    assert_int_equal((int)c.prefill_as.policy.up.n_policies, 2); /* default kept */
    assert_int_equal((int)c.prefill_as.metrics[2].rate_s, 120);
    ms_cr_free(&c);
}

static void test_autoscaling_keda(void **state)
{
    (void)state;
    char cr[4096], err[1024];
    snprintf(cr, sizeof cr,
             "%s  decode:\n    containers: [{name: vllm, image: i}]\n"
             "    autoscaling:\n      engine: keda\n      minReplicas: 0\n      maxReplicas: 8\n"
             "      prometheus: {serverAddress: \"http://prom.monitoring:9090\"}\n"
             "      metrics:\n"
             "      - {metric: \"vllm:num_requests_running\", target: 16}\n"
             "      - {metric: \"vllm:request_success_total\", target: 2.5, averaging: total}\n"
             "      behavior: {scaleUp: {stabilizationWindowSeconds: 30}}\n",
             AS_HEAD);
    json_t *objs = gen_text(cr, NULL, err, sizeof err);
    if (!objs)
        fail_msg("%s", err);
    const json_t *so = find(objs, "ScaledObject", "m1-decode");
    assert_non_null(so);
    assert_string_equal(at(so, "apiVersion"), "keda.sh/v1alpha1");
    assert_string_equal(at(so, "spec.scaleTargetRef.name"), "m1-decode");
    assert_string_equal(at(so, "spec.minReplicaCount"), "0");
    assert_string_equal(at(so, "spec.maxReplicaCount"), "8");
    assert_string_equal(at(so, "spec.triggers.0.type"), "prometheus");
    assert_string_equal(at(so, "spec.triggers.0.metricType"), "AverageValue");
    assert_string_equal(at(so, "spec.triggers.0.metadata.serverAddress"),
                        "http://prom.monitoring:9090");
    assert_string_equal(at(so, "spec.triggers.0.metadata.query"),
                        "sum(vllm:num_requests_running{namespace=\"ns1\",llm_d_ai_role=\"decode\","
                        "llm_d_ai_model=\"org-model-a\"})");
    assert_string_equal(at(so, "spec.triggers.0.metadata.threshold"), "16");
    assert_string_equal(at(so, "spec.triggers.1.metricType"), "Value");
    assert_string_equal(at(so, "spec.triggers.1.metadata.threshold"), "2.5");
    assert_non_null(strstr(at(so, "spec.triggers.1.metadata.query"),
                           "sum(rate(vllm:request_success_total{"));
    assert_string_equal(at(so, "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp."
                               "stabilizationWindowSeconds"),
                        "30");
    assert_null(find(objs, "HorizontalPodAutoscaler", "m1-decode"));
    json_decref(objs);
}

static void test_autoscaling_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 1}]}\n",
         "cr.yaml: spec.decode.autoscaling: needs spec.decoupleScaling: true"},
        {"    autoscaling: {minReplicas: 3, maxReplicas: 2, metrics: [{metric: x, target: 1}]}\n",
         "spec.decode.autoscaling.maxReplicas: 2 is below minReplicas 3"},
        {"    autoscaling: {maxReplicas: 2}\n", "spec.decode.autoscaling.metrics: required"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 0}]}\n",
         "spec.decode.autoscaling.metrics[0].target: required, a number > 0"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: \"bad name\", target: 1}]}\n",
         "spec.decode.autoscaling.metrics[0].metric:"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 1, rate: 1m}]}\n",
         "metrics[0].rate: only counters"},
        {"    autoscaling: {maxReplicas: 2, minReplicas: 0, metrics: [{metric: x, target: 1}]}\n",
         "spec.decode.autoscaling.minReplicas: an integer >= 1"},
        {"    autoscaling: {engine: keda, maxReplicas: 2, metrics: [{metric: x, target: 1}]}\n",
         "spec.decode.autoscaling.prometheus.serverAddress: required with engine keda"},
        {"    autoscaling: {engine: knative, maxReplicas: 2, metrics: [{metric: x, target: 1}]}\n",
         "spec.decode.autoscaling.engine: hpa (the default) or keda"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 1}], "
         "behavior: {scaleDown: {policies: [{type: Pods, value: 1, periodSeconds: 4000}]}}}\n",
         "spec.decode.autoscaling.behavior.scaleDown.policies[0].periodSeconds"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 1}], "
         "behavior: {scaleUp: {selectPolicy: Maximum}}}\n",
         "behavior.scaleUp.selectPolicy: Max, Min or Disabled"},
        {"    autoscaling: {maxReplicas: 2, metrics: [{metric: x, target: 1}], minReplica: 1}\n",
         "spec.decode.autoscaling.minReplica: unknown field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cr[2048], err[1024] = "";
        /* The first case has no decoupleScaling; the rest do. */
        snprintf(cr, sizeof cr,
                 "apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
                 "spec:\n  routing: {modelName: a/b}\n  modelArtifacts: {uri: \"hf://a/b\"}\n"
                 "%s  decode:\n    containers: [{name: v, image: i}]\n%s",
                 i ? "  decoupleScaling: true\n" : "", cases[i].body);
        json_t *objs = gen_text(cr, NULL, err, sizeof err);
        if (objs || !strstr(err, cases[i].want))
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err);
    }
}

static void test_validate_object(void **state)
{
    (void)state;
    char err[512];
    json_t *o = json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
                           "\"a\",\"namespace\":\"n\",\"labels\":{\"llm-d.ai/role\":\"de code\"}},"
                           "\"spec\":{\"ports\":[{\"port\":80}]}}",
                           0, NULL);
    assert_false(ms_validate_object(o, err, sizeof err));
    assert_non_null(strstr(err, "not a valid label value"));
    json_object_set_new(json_object_get(json_object_get(o, "metadata"), "labels"),
                        "llm-d.ai/role", json_string("decode"));
    assert_true(ms_validate_object(o, err, sizeof err));
    json_object_set_new(json_object_get(o, "metadata"), "name", json_string("Bad_Name"));
    assert_false(ms_validate_object(o, err, sizeof err));
    json_decref(o);
    char s[80];
    ms_sanitize("Facebook/OPT-125m", s, sizeof s);
    assert_string_equal(s, "facebook-opt-125m");
    ms_sanitize("meta-llama/Llama-3.1-8B-Instruct", s, sizeof s);
    assert_string_equal(s, "meta-llama-llama-3-1-8b-instruct");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_scenario_2), cmocka_unit_test(test_golden_scenario_3),
        cmocka_unit_test(test_all_samples_valid), cmocka_unit_test(test_merge),
        cmocka_unit_test(test_artifacts),         cmocka_unit_test(test_invalid_inputs),
        cmocka_unit_test(test_validate_object), cmocka_unit_test(test_affinity_namespace_model),
        cmocka_unit_test(test_pool_completed),  cmocka_unit_test(test_pool_golden_ref),
        cmocka_unit_test(test_base_obj),        cmocka_unit_test(test_child_kinds),
        cmocka_unit_test(test_autoscaling_hpa), cmocka_unit_test(test_autoscaling_keda),
        cmocka_unit_test(test_autoscaling_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

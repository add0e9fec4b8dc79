/* Fuzz target: the ModelService CR loader and the generator behind `tandem ms generate`
 * (YAML via libfyaml, so leak checks are off for this target, as for the other
 * libfyaml-backed ones). Whatever is accepted must generate valid objects or fail with
 * a message; nothing may crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ms/ms.h"

static const char base[] =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
    "  decodeDeployment: |\n    apiVersion: apps/v1\n    kind: Deployment\n"
    "    spec:\n      template:\n        spec:\n          containers:\n"
    "          - name: vllm\n            image: v\n            args: [\"{{ .ModelName }}\"]\n"
    "  inferencePool: |\n    spec:\n      targetPortNumber: 8000\n"
    "  inferenceModel: |\n    spec: {criticality: Critical}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ms_cr cr;
    char err[1024];
    if (ms_cr_parse((const char *)data, size, "fuzz.yaml", &cr, err, sizeof err)) {
        struct ms_gen_opts o = {.base_text = base};
        json_t *objs = ms_generate(&cr, &o, err, sizeof err);
        if (!objs && !err[0])
            abort(); /* a failure always says why */
        json_decref(objs);
    } else if (!err[0]) {
        abort();
    }
    ms_cr_free(&cr);
    return 0;
}

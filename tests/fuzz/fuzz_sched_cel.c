/* Fuzz target: request-attribute-reporter's CEL subset (sched_cel.c): compile arbitrary
 * bytes as an expression and evaluate whatever compiles over a fixed usage object. A
 * refusal must come with a message; evaluation must return one of the result kinds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *usage;
    if (!usage)
        usage = json_pack("{s:i, s:i, s:i, s:{s:i}, s:s, s:n, s:b}", "prompt_tokens", 10,
                          "completion_tokens", 7, "total_tokens", 17, "prompt_tokens_details",
                          "cached_tokens", 4, "note", "x", "none", "flag", 1);
    char *src = malloc(size + 1);
    memcpy(src, data, size);
    src[size] = 0;
    char err[200] = "";
    struct sched_cel *e = sched_cel_compile(src, err, sizeof err);
    if (!e && !err[0])
        abort();
    if (e) {
        double v;
        int k = sched_cel_eval(e, usage, &v);
        if (k != SCHED_CEL_ERROR && k != SCHED_CEL_NUM && k != SCHED_CEL_BOOL &&
            k != SCHED_CEL_OTHER)
            abort();
        k = sched_cel_eval(e, NULL, &v);
        (void)k;
        sched_cel_free(e);
    }
    free(src);
    return 0;
}

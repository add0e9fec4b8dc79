/* Fuzz target: the BaseConfig template engine (ms/tmpl). The input up to its first NUL
 * (or all of it) is a template; when it parses it is executed against a fixed data object
 * with a 1 MiB output cap and a step budget, so every run terminates. Errors must carry
 * a position inside the template. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ms/tmpl.h"

static json_t *fixed_data(void)
{
    static json_t *d;
    if (!d)
        d = json_pack("{s:s,s:s,s:i,s:f,s:b,s:n,s:[s,s,s],s:{s:{s:s}},s:{s:i,s:i},s:{s:s,s:s},"
                      "s:[{s:s,s:i},{s:s,s:i}],s:[],s:s}",
                      "ModelServiceName", "msvc", "ModelName", "Org/Model-1", "N", 3, "Half", 0.5,
                      "T", 1, "Nil", "List", "a", "b", "c", "Nested", "Inner", "Name", "deep",
                      "Ports", "app_port", 8000, "grpc", 9002, "Labels", "llm-d.ai/role",
                      "decode", "app", "true", "Items", "name", "x", "port", 1, "name", "y",
                      "port", 2, "None", "Empty", "");
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - text) : size;
    struct errinfo err;
    struct tmpl *t = tmpl_parse(text, len, "fuzz", NULL, 0, &err);
    if (!t) {
        if (err.line < 1 || err.column < 1)
            abort();
        return 0;
    }
    struct buf out = BUF_INIT;
    struct tmpl_limits lim = {.max_bytes = 1 << 20, .max_steps = 100000};
    if (!tmpl_exec(t, fixed_data(), &lim, &out, &err)) {
        if (err.line < 1 || err.column < 1 || out.len != 0)
            abort();
    } else if (out.len > lim.max_bytes) {
        abort();
    }
    buf_free(&out);
    tmpl_free(t);
    return 0;
}

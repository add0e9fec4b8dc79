/* Fuzz target: the structured-output generator (sim_structured_generate). Input bytes are
 * a JSON Schema; whatever parses is run through the generator with two seeds. A success
 * must be one valid JSON text within the size limit; a failure must leave a message and
 * the buffer as it was. The first input byte also picks the seed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "sim/structured.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *schema = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!schema)
        return 0;
    for (uint64_t seed = 0; seed < 2; seed++) {
        struct buf out = BUF_INIT;
        char err[512];
        uint64_t s = seed * 7919 + (size ? data[0] : 0);
        if (sim_structured_generate(schema, s, &out, err, sizeof err)) {
            if (out.len == 0 || out.len > SIM_STRUCT_MAX_BYTES + 4096)
                abort();
            json_t *v = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
            if (!v)
                abort();
            json_decref(v);
        } else {
            if (out.len != 0 || err[0] == 0 || !memchr(err, 0, sizeof err))
                abort();
        }
        buf_free(&out);
    }
    json_decref(schema);
    return 0;
}

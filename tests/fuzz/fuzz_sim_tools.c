/* Fuzz target: the sim's structured-output and tool fields (sim_shape_parse) behind the
 * OpenAI request parser, then an answer for two seeds. The first byte picks the API (bit
 * 0) and whether auto tool choice is enabled (bit 1). A JSON answer (schema, json_object
 * or tool arguments) must parse; a choice answer must be one of the choices. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/arena.h"
#include "base/buf.h"
#include "openai/openai.h"
#include "sim/tools.h"

static void check_answer(const struct sim_shape *sh, const json_t *root, uint64_t seed)
{
    struct buf out = BUF_INIT;
    long tool;
    if (!sim_shape_answer(sh, root, seed, &out, &tool)) {
        if (out.len || tool >= 0 ||
            (sh->text != SIM_TEXT_PLAIN && sh->tool_choice == SIM_TOOL_NONE))
            abort();
        return;
    }
    if (tool >= 0 && (size_t)tool >= json_array_size(sh->tools))
        abort();
    if (tool >= 0 || sh->text == SIM_TEXT_JSON) {
        json_t *v = json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL);
        if (!v)
            abort();
        json_decref(v);
    } else {
        bool found = false;
        size_t i;
        const json_t *c;
        json_array_foreach(sh->choices, i, c) found =
            found ||
            (json_string_length(c) == out.len && !memcmp(json_string_value(c), out.data, out.len));
        if (!found)
            abort();
    }
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum openai_api api = (data[0] & 1) ? OPENAI_CHAT : OPENAI_COMPLETIONS;
    bool auto_ok = data[0] & 2;
    struct arena a;
    arena_init(&a, 1024);
    struct openai_request r;
    struct openai_error err;
    if (openai_request_parse(api, (const char *)data + 1, size - 1, &a, &r, &err)) {
        struct sim_shape sh;
        if (sim_shape_parse(r.root, api, auto_ok, &sh, &err)) {
            check_answer(&sh, r.root, 1);
            check_answer(&sh, r.root, 0x9e3779b97f4a7c15ull);
        } else if (err.status != 400 || !err.message[0]) {
            abort();
        }
        openai_request_free(&r);
    }
    arena_free(&a);
    return 0;
}

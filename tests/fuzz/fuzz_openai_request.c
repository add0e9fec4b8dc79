/* Fuzz target: the OpenAI request parser (completions and chat), the first thing every
 * request body meets in the sim and the router. The first byte picks the API. */
#include <stdint.h>
#include <stddef.h>

#include "base/arena.h"
#include "openai/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum openai_api api = (data[0] & 1) ? OPENAI_CHAT : OPENAI_COMPLETIONS;
    struct arena a;
    arena_init(&a, 1024);
    struct openai_request r;
    struct openai_error err;
    if (openai_request_parse(api, (const char *)data + 1, size - 1, &a, &r, &err))
        openai_request_free(&r);
    arena_free(&a);
    return 0;
}

/* Fuzz target: E/P/D's encode stage reading a client's chat body (the sidecar gets it from
 * the network) into one encoder request per multimodal item and the prefill/decode body.
 * Every encoder request must be a JSON object with exactly one user message holding one
 * multimodal part, max_tokens 1 and stream false; a refusal always says why. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai/openai.h"
#include "pd/epd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf pd = BUF_INIT, *items = NULL;
    size_t n = 0;
    char err[256] = "";
    int st = epd_bodies((const char *)data, size, &pd, &items, &n, err, sizeof err);
    if (st < 0 && !err[0])
        abort();
    if (st == 0 && (n || items))
        abort();
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_loadb(items[i].data, items[i].len, 0, NULL);
        json_t *msgs = json_object_get(j, "messages");
        json_t *content = json_object_get(json_array_get(msgs, 0), "content");
        if (!json_is_object(j) || json_array_size(msgs) != 1 || json_array_size(content) != 1 ||
            openai_count_mm_parts(msgs, true) != 1 ||
            json_integer_value(json_object_get(j, "max_tokens")) != 1 ||
            !json_is_false(json_object_get(j, "stream")) || json_object_get(j, "stream_options"))
            abort();
        json_decref(j);
    }
    if (st == 1) {
        json_t *j = json_loadb(pd.data, pd.len, 0, NULL);
        if (!json_is_object(j) || json_integer_value(json_object_get(j, "cache_hit_threshold")))
            abort();
        json_decref(j);
    }
    epd_bodies_free(items, n);
    buf_free(&pd);
    return 0;
}

/* Fuzz target: the router's request scanner (base/jscan), differentially against
 * jansson. Every document jansson accepts must be accepted with the same top-level
 * "model" and "prompt" values; a document jscan accepts that jansson refuses may only
 * be a number jansson cannot convert or a key with an escaped NUL (both valid JSON). Raw NUL bytes, which
 * jansson takes as the end of input, are refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/jscan.h"

static void same_string(const struct jscan_val *v, const json_t *j, struct arena *a)
{
    if (!json_is_string(j)) {
        if (v->type == JSCAN_STRING)
            abort();
        return;
    }
    if (v->type != JSCAN_STRING)
        abort();
    size_t n;
    char *s = jscan_str_dup(v, a, &n);
    if (n != json_string_length(j) || memcmp(s, json_string_value(j), n) != 0)
        abort();
    const char *view;
    size_t vn;
    jscan_str_view(v, a, &view, &vn);
    if (vn != n || memcmp(view, s, n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jscan_field f[3] = {{.key = "model"}, {.key = "prompt"}, {.key = "messages"}};
    struct errinfo err;
    enum jscan_status st = jscan_object((const char *)data, size, f, 3, &err);
    if (memchr(data, 0, size)) {
        /* A raw NUL byte is never valid JSON; jansson stops reading at one instead. */
        if (st != JSCAN_INVALID)
            abort();
        return 0;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (j && st == JSCAN_INVALID)
        abort(); /* refused valid JSON */
    if (!j && st != JSCAN_INVALID && !strstr(je.text, "too big") && !strstr(je.text, "overflow") &&
        !strstr(je.text, "NUL byte in object key"))
        abort(); /* accepted invalid JSON */
    if (j && (st == JSCAN_OK) != json_is_object(j))
        abort();
    if (j && st == JSCAN_OK) {
        struct arena a;
        arena_init(&a, 1024);
        same_string(&f[0].v, json_object_get(j, "model"), &a);
        const json_t *p = json_object_get(j, "prompt");
        same_string(&f[1].v, p, &a);
        if (json_is_array(p)) {
            struct jscan_val first;
            bool has = jscan_array_first(&f[1].v, &first);
            if (has != (json_array_size(p) > 0))
                abort();
            if (has)
                same_string(&first, json_array_get(p, 0), &a);
        }
        const json_t *m = json_object_get(j, "messages");
        if ((m != NULL) != (f[2].v.type != JSCAN_ABSENT))
            abort();
        if (m) {
            /* The value's extent re-parses to an equal value. */
            json_t *again = json_loadb(f[2].v.p, f[2].v.len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                                       &je);
            if (again && !json_equal(again, m))
                abort();
            json_decref(again);
        }
        arena_free(&a);
    }
    json_decref(j);
    return 0;
}

/* libFuzzer target for the watch event stream parser (k8s/watch.c). The input is fed in
 * pieces cut at data-derived points; the events seen must be the same as when it is fed
 * whole (or both must fail), and every object handed out must be a JSON object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

struct count {
    size_t n;
    size_t types_len;
};

static void on_event(const char *type, json_t *obj, void *ctx)
{
    struct count *c = ctx;
    if (!type || !json_is_object(obj))
        abort();
    c->n++;
    c->types_len += strlen(type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    char err[256];
    struct k8s_watch_parser a = {.max_line = 1 << 16};
    struct count ca = {0, 0};
    bool ok_a = k8s_watch_parser_feed(&a, copy, size, on_event, &ca, err, sizeof err);
    struct k8s_watch_parser b = {.max_line = 1 << 16};
    struct count cb = {0, 0};
    bool ok_b = true;
    size_t pos = 0, step = size ? (size_t)data[0] % 7 + 1 : 1;
    while (ok_b && pos < size) {
        size_t n = step < size - pos ? step : size - pos;
        ok_b = k8s_watch_parser_feed(&b, copy + pos, n, on_event, &cb, err, sizeof err);
        pos += n;
        step = step * 3 % 11 + 1;
    }
    if (ok_a != ok_b || (ok_a && (ca.n != cb.n || ca.types_len != cb.types_len)))
        abort();
    k8s_watch_parser_free(&a);
    k8s_watch_parser_free(&b);
    free(copy);
    return 0;
}

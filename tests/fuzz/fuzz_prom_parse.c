/* libFuzzer target for the Prometheus text parser (base/prom.h). The input is copied to
 * a buffer of exactly its size, so ASan sees any read past the end. Checks that hold for
 * every input: the count matches the callbacks, every delivered name and label pointer
 * lies inside the input or the sample's own storage, and a failure always says which
 * line. The input is then parsed again cut after a data-derived newline: when the whole
 * is valid, that prefix must be valid too and cannot hold more samples. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/prom.h"

struct sink {
    const char *base;
    size_t len;
    long n;
};

static void on_sample(const struct prom_sample *s, void *ctx)
{
    struct sink *k = ctx;
    k->n++;
    if (s->name < k->base || s->name + s->name_len > k->base + k->len || s->name_len == 0)
        abort();
    if (s->n_labels > PROM_MAX_LABELS)
        abort();
    for (size_t i = 0; i < s->n_labels; i++) {
        const struct prom_label *l = &s->labels[i];
        if (l->name < k->base || l->name + l->name_len > k->base + k->len || l->name_len == 0)
            abort();
        /* Values point into the input or into scratch storage: touch every byte. */
        volatile char sink_byte = 0;
        for (size_t b = 0; b < l->value_len; b++)
            sink_byte ^= l->value[b];
        (void)sink_byte;
        size_t len;
        char name[64];
        if (l->name_len < sizeof name) {
            memcpy(name, l->name, l->name_len);
            name[l->name_len] = '\0';
            if (!prom_label(s, name, &len))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (size)
        memcpy(text, data, size);
    struct sink whole = {text, size, 0};
    char err[96];
    long n = prom_parse(text, size, on_sample, &whole, err, sizeof err);
    if (n >= 0 && n != whole.n)
        abort();
    if (n < 0 && strncmp(err, "line ", 5) != 0)
        abort();

    /* Cut after the k-th newline (k from the first byte): that prefix is a complete
     * exposition of its own. */
    if (size > 0) {
        size_t want = data[0] % 8, seen = 0, cut = 0;
        for (size_t i = 0; i < size; i++)
            if (text[i] == '\n' && seen++ == want) {
                cut = i + 1;
                break;
            }
        if (cut) {
            struct sink part = {text, cut, 0};
            long pn = prom_parse(text, cut, on_sample, &part, err, sizeof err);
            if (pn >= 0 && (pn > whole.n && n >= 0))
                abort(); /* a prefix cannot hold more samples than the whole */
            if (n >= 0 && pn < 0)
                abort(); /* every line of a valid whole is valid */
        }
    }
    free(text);
    return 0;
}

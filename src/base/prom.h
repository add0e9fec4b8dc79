/* Prometheus text exposition format (0.0.4) parser, for scrapers. Streams samples to a
 * callback; never allocates per sample; never crashes or loops on garbage. */
#ifndef TANDEM_BASE_PROM_H
#define TANDEM_BASE_PROM_H

#include <stddef.h>

#define PROM_MAX_LABELS 16

struct prom_label {
    const char *name; /* not NUL-terminated: use the lengths */
    size_t name_len;
    const char *value; /* unescaped (\\ \" \n); valid only during the callback */
    size_t value_len;
};

struct prom_sample {
    const char *name;
    size_t name_len;
    struct prom_label labels[PROM_MAX_LABELS];
    size_t n_labels;
    double value; /* +Inf, -Inf, NaN accepted */
};

typedef void (*prom_sample_fn)(const struct prom_sample *s, void *ctx);

/* Parses a whole exposition. Comments (# HELP, # TYPE, others) and blank lines are
 * skipped; an optional timestamp after the value is ignored; \r\n accepted. Returns the
 * number of samples delivered, or -1 at the first malformed line with err set to
 * "line N: why" (samples before it were delivered). */
long prom_parse(const char *text, size_t len, prom_sample_fn fn, void *ctx, char *err,
                size_t errlen);

/* Helpers for callbacks. */
int prom_name_is(const struct prom_sample *s, const char *name); /* exact match, 1/0 */
/* Value of a label (unescaped, borrowed for the callback) or NULL; *len set. */
const char *prom_label(const struct prom_sample *s, const char *name, size_t *len);

#endif

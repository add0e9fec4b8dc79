/* context-length-aware (llm-d's scorer, also a filter): pods declare the prompt lengths
 * they serve in a label "min-max" (llm-d.ai/context-length-range by default). As a scorer
 * (always) an in-range pod scores in (0.3, 1], more for a narrow range and for headroom
 * left above the prompt; an out-of-range pod scores in [0, 0.3), less the farther the
 * prompt is from its range; a pod without the label scores 0.5 and one with a bad label 0.
 * With enableFiltering it also drops the pods whose range does not hold the prompt (and
 * those with a bad label). The prompt length is the request's token count (the
 * token-producer's, or the parser's) or, when there is none, characters x 0.25, as llm-d
 * estimates it. Stateless apart from its parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

#define CTXLEN_DEFAULT_LABEL "llm-d.ai/context-length-range"

struct ctxlen {
    char *label;
    bool filtering;
};

static void ctxlen_destroy(void *state)
{
    struct ctxlen *st = state;
    if (st)
        free(st->label);
    free(st);
}

static int ctxlen_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"label", "enableFiltering", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *label = CTXLEN_DEFAULT_LABEL;
    bool filtering = false;
    if (sched_param_str(params, "label", &label, err) < 0 ||
        sched_param_bool(params, "enableFiltering", &filtering, err) < 0)
        return -1;
    if (!label || !label[0]) {
        sched_perr_set(err, "label", "must be specified");
        return -1;
    }
    struct ctxlen *st = xcalloc(1, sizeof *st);
    st->label = xstrdup(label);
    st->filtering = filtering;
    *state = st;
    return 0;
}

/* "min-max" with optional spaces around each bound, min <= max (Go's strconv.Atoi). */
static bool parse_range(const char *s, long long *lo, long long *hi)
{
    const char *dash = s ? strchr(s, '-') : NULL;
    if (!dash || dash == s || strchr(dash + 1, '-'))
        return false;
    char a[32], b[32];
    size_t la = (size_t)(dash - s), lb = strlen(dash + 1);
    if (la >= sizeof a || lb >= sizeof b)
        return false;
    memcpy(a, s, la);
    a[la] = 0;
    memcpy(b, dash + 1, lb + 1);
    char *end;
    *lo = strtoll(a, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == a || *end)
        return false;
    *hi = strtoll(b, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == b || *end)
        return false;
    /* strtoll skips leading blanks; an empty bound is an error, as in Go */
    return *lo <= *hi;
}

static long long sched_ctxlen_tokens(const struct sched_request *r)
{
    if (r->prompt_tokens)
        return r->prompt_tokens;
    return (long long)((double)r->prompt_len * 0.25);
}

static double sched_ctxlen_score(long long len, long long lo, long long hi)
{
    const double fallback = 0.3;
    if (len >= lo && len <= hi) {
        long long width = hi - lo;
        if (width == 0)
            return 1.0;
        double width_score = 1.0 / (1.0 + (double)width / 10000.0);
        double position = (double)(hi - len) / (double)width;
        return fallback + (0.7 * width_score + 0.3 * position) * (1.0 - fallback);
    }
    long long dist = len > hi ? len - hi : lo - len;
    return fallback / (1.0 + (double)dist / 1000.0);
}

static size_t ctxlen_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                            size_t n, uint16_t *out)
{
    const struct ctxlen *st = self->st;
    if (!st->filtering) {
        memcpy(out, in, n * sizeof *in);
        return n;
    }
    long long len = sched_ctxlen_tokens(c->req);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = sched_endpoint_label(c->eps[in[i]], st->label);
        long long lo, hi;
        if (!v || (parse_range(v, &lo, &hi) && len >= lo && len <= hi))
            out[m++] = in[i];
    }
    return m;
}

static void ctxlen_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                         size_t n, double *out)
{
    const struct ctxlen *st = self->st;
    long long len = sched_ctxlen_tokens(c->req);
    for (size_t i = 0; i < n; i++) {
        const char *v = sched_endpoint_label(c->eps[in[i]], st->label);
        long long lo, hi;
        if (!v)
            out[i] = 0.5;
        else if (!parse_range(v, &lo, &hi))
            out[i] = 0;
        else
            out[i] = sched_ctxlen_score(len, lo, hi);
    }
}

/* A scorer that is also a filter: a profile listing it runs both (llm-d registers a
 * profile's plugin under every interface it implements). */
const struct sched_plugin_type sched_context_length_aware = {
    .type = "context-length-aware",
    .kind = SCHED_PK_SCORER,
    .create = ctxlen_create,
    .destroy = ctxlen_destroy,
    .filter = ctxlen_filter,
    .score = ctxlen_score,
};

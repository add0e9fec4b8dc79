/* In-flight load: llm-d's concurrency-detector and inflight-load-producer.
 *   inflight-load-producer: in llm-d it counts, per endpoint, the requests the EPP sent and
 *     has not seen finish, and their estimated tokens (input + 1.5 x input), for
 *     concurrency-detector, active-request-scorer and token-load-scorer. tandem's router
 *     keeps those counters for every endpoint whatever the config says
 *     (sched_endpoint_inflight_add; the cycle's metrics snapshot carries them), so this
 *     plugin only loads and says, in one log line, what it feeds;
 *   concurrency-detector: a saturation detector on those counters. Saturation = sum of
 *     in-flight load / (candidates x maxConcurrency) (or tokens / maxTokenConcurrency in
 *     concurrencyMode tokens); at >= 1.0 a sheddable request (priority < 0) is dropped
 *     (llm-d's admission without flow control), as with utilization-detector. As a filter
 *     it keeps the endpoints whose load is under capacity x (1 + headroom), and nothing
 *     when none is (llm-d's filter has no keep-all fallback).
 * Tokens: the router's in-flight token count is the prompts' estimated tokens
 * (characters / 4); sched_inflight_tokens adds llm-d's output estimate (1.5 x input), so
 * maxTokenConcurrency (and token-load-scorer's queueThresholdTokens) mean what they mean
 * in llm-d.
 *
 * Ownership: a detector instance owns its parameter struct; the producer has no state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

/* llm-d's SimpleTokenEstimator: output tokens = round(input x 1.5), counted with input. */
#define OUTPUT_RATIO 1.5

/* --- concurrency-detector ------------------------------------------------------------------ */

struct conc_detector {
    bool tokens; /* concurrencyMode: tokens */
    long long max_requests, max_tokens;
    double headroom;
};

static int cd_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"maxConcurrency", "headroom", "concurrencyMode",
                                       "maxTokenConcurrency", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long maxc = 100, maxt = 1000000;
    double headroom = 0;
    const char *mode = "requests";
    if (sched_param_int(params, "maxConcurrency", &maxc, err) < 0 ||
        sched_param_num(params, "headroom", &headroom, err) < 0 ||
        sched_param_str(params, "concurrencyMode", &mode, err) < 0 ||
        sched_param_int(params, "maxTokenConcurrency", &maxt, err) < 0)
        return -1;
    if (maxc <= 0) {
        sched_perr_set(err, "maxConcurrency", "must be strictly positive, got %lld", maxc);
        return -1;
    }
    if (!(headroom >= 0)) {
        sched_perr_set(err, "headroom", "must be a non-negative value, got %g", headroom);
        return -1;
    }
    if (maxt <= 0) {
        sched_perr_set(err, "maxTokenConcurrency", "must be strictly positive, got %lld", maxt);
        return -1;
    }
    if (strcmp(mode, "requests") != 0 && strcmp(mode, "tokens") != 0) {
        sched_perr_set(err, "concurrencyMode",
                       "unsupported concurrencyMode: \"%s\" (requests "
                       "or tokens)",
                       mode);
        return -1;
    }
    if (headroom > 1.0)
        LOG_W("sched",
              "concurrency-detector: unusually high headroom %g (a fraction: %.0f%% burst "
              "above the limit); verify it is not a percentage",
              headroom, headroom * 100);
    struct conc_detector *st = xcalloc(1, sizeof *st);
    st->tokens = strcmp(mode, "tokens") == 0;
    st->max_requests = maxc;
    st->max_tokens = maxt;
    st->headroom = headroom;
    *state = st;
    return 0;
}

int64_t sched_inflight_tokens(const struct sched_endpoint_metrics *m)
{
    int64_t in = m->inflight_tokens;
    return in + (int64_t)llround((double)in * OUTPUT_RATIO);
}

/* An endpoint's in-flight load in the detector's unit. */
static int64_t cd_load(const struct conc_detector *st, const struct sched_endpoint_metrics *m)
{
    return st->tokens ? sched_inflight_tokens(m) : m->inflight_requests;
}

static size_t cd_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                        size_t n, uint16_t *out)
{
    const struct conc_detector *st = self->st;
    double cap = (double)(st->tokens ? st->max_tokens : st->max_requests);
    int64_t limit = (int64_t)(cap * (1.0 + st->headroom));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (cd_load(st, &c->m[in[i]]) < limit)
            out[k++] = in[i];
    return k;
}

static int cd_admit(struct sched_plugin *self, struct sched_cycle *c, char *reason, size_t cap)
{
    const struct conc_detector *st = self->st;
    if (c->req->priority >= 0)
        return 0;
    double load = 0, capacity = 0;
    for (size_t i = 0; i < c->n; i++) {
        load += (double)cd_load(st, &c->m[i]);
        capacity += (double)(st->tokens ? st->max_tokens : st->max_requests);
    }
    double sat = capacity > 0 ? load / capacity : 1.0;
    if (sat < 1.0)
        return 0;
    snprintf(reason, cap, "system saturated, sheddable request dropped");
    return 429;
}

const struct sched_plugin_type sched_concurrency_detector = {
    .type = "concurrency-detector",
    .kind = SCHED_PK_FILTER,
    .create = cd_create,
    .destroy = free,
    .filter = cd_filter,
    .saturation_admit = cd_admit,
};

/* --- inflight-load-producer ------------------------------------------------------------------ */

static int ilp_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    (void)err;
    /* llm-d's factory reads no parameters; neither does tandem */
    LOG_I("sched",
          "inflight-load-producer: the router counts in-flight requests and tokens per "
          "endpoint whatever the config says; they feed concurrency-detector, "
          "active-request-scorer and token-load-scorer%s",
          params && json_object_size(params) ? " (its parameters are ignored, as in llm-d)" : "");
    return 0;
}

const struct sched_plugin_type sched_inflight_load_producer = {
    .type = "inflight-load-producer",
    .kind = SCHED_PK_PRODUCER,
    .create = ilp_create,
};

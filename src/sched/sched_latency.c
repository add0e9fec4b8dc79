/* llm-d's latency-prediction plugins, as they behave without predictions:
 *   predicted-latency-producer: in llm-d it asks a latency-predictor sidecar (a model trained
 *     online on observed TTFT/TPOT) for each candidate's predicted TTFT and TPOT; tandem runs
 *     no such sidecar, so it produces nothing and says so in one WARN line (its parameters
 *     are checked as llm-d checks them);
 *   latency-scorer: scores by predicted latency headroom when predictions exist; without
 *     them llm-d's scorer uses its composite fallback, and so does tandem's, always:
 *       score = round(100 x (wKV x (1 - kv_usage) + wQ x relQueue + wP x prefix)) / 100
 *     with the composite weights normalised to sum 1 (all <= 0: KV alone), relQueue =
 *     (maxWaiting - waiting) / maxWaiting over the candidates (1 when all are 0), and prefix
 *     the share of the prompt's blocks the pod holds per the config's approximate prefix
 *     plugin (prefix-cache-scorer or approx-prefix-cache-producer; 0 without one).
 *     ttftWeight, tpotWeight and headroomSelectionStrategy only act on predictions.
 *
 * Ownership: a scorer instance owns its parameter struct and borrows the prefix plugin. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

/* --- predicted-latency-producer -------------------------------------------------------------- */

static int plp_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"samplingMean",     "maxDecodeTokenSamplesForPrediction",
                                       "sloBufferFactor",  "contextTTL",
                                       "streamingMode",    "endpointRoleLabel",
                                       "predictInProduce", NULL};
    double mean = 1000, buffer = 1;
    long long max_samples = 0, ttl = 0;
    bool streaming = false, predict = true;
    const char *role_label = "";
    (void)state;
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_num(params, "samplingMean", &mean, err) < 0 ||
        sched_param_int(params, "maxDecodeTokenSamplesForPrediction", &max_samples, err) < 0 ||
        sched_param_num(params, "sloBufferFactor", &buffer, err) < 0 ||
        sched_param_int(params, "contextTTL", &ttl, err) < 0 || /* Go Duration: ns */
        sched_param_bool(params, "streamingMode", &streaming, err) < 0 ||
        sched_param_str(params, "endpointRoleLabel", &role_label, err) < 0 ||
        sched_param_bool(params, "predictInProduce", &predict, err) < 0)
        return -1;
    if (!(mean > 0)) {
        sched_perr_set(err, "samplingMean", "must be > 0, got %g", mean);
        return -1;
    }
    if (max_samples < 0) {
        sched_perr_set(err, "maxDecodeTokenSamplesForPrediction", "must be >= 0, got %lld",
                       max_samples);
        return -1;
    }
    if (!(buffer > 0)) {
        sched_perr_set(err, "sloBufferFactor", "must be > 0, got %g", buffer);
        return -1;
    }
    LOG_W("sched",
          "predicted-latency-producer: produces nothing: it needs llm-d's latency-predictor "
          "sidecar (a TTFT/TPOT model trained online), which tandem does not run; "
          "latency-scorer uses its composite fallback, latency-slo-admitter admits all, "
          "slo-headroom-tier-filter keeps all");
    return 0;
}

const struct sched_plugin_type sched_predicted_latency_producer = {
    .type = "predicted-latency-producer",
    .kind = SCHED_PK_PRODUCER,
    .create = plp_create,
};

/* --- latency-scorer ------------------------------------------------------------------------- */

struct latency_scorer {
    double wkv, wq, wpref;       /* normalised */
    struct sched_plugin *prefix; /* borrowed; NULL: prefix share 0 */
};

static int ls_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"ttftWeight",
                                       "tpotWeight",
                                       "headroomSelectionStrategy",
                                       "compositeKVWeight",
                                       "compositeQueueWeight",
                                       "compositePrefixWeight",
                                       NULL};
    double ttft = 0.8, tpot = 0.2, wkv = 1, wq = 1, wpref = 1;
    const char *strategy = "least";
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_num(params, "ttftWeight", &ttft, err) < 0 ||
        sched_param_num(params, "tpotWeight", &tpot, err) < 0 ||
        sched_param_str(params, "headroomSelectionStrategy", &strategy, err) < 0 ||
        sched_param_num(params, "compositeKVWeight", &wkv, err) < 0 ||
        sched_param_num(params, "compositeQueueWeight", &wq, err) < 0 ||
        sched_param_num(params, "compositePrefixWeight", &wpref, err) < 0)
        return -1;
    if (strcmp(strategy, "least") != 0 && strcmp(strategy, "most") != 0) {
        sched_perr_set(err, "headroomSelectionStrategy", "must be least or most, got '%s'",
                       strategy);
        return -1;
    }
    double sum = wkv + wq + wpref;
    if (!(sum > 0)) {
        wkv = 1, wq = 0, wpref = 0;
        sum = 1;
    }
    struct latency_scorer *st = xcalloc(1, sizeof *st);
    st->wkv = wkv / sum;
    st->wq = wq / sum;
    st->wpref = wpref / sum;
    *state = st;
    return 0;
}

static int ls_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct latency_scorer *st = self->st;
    (void)err;
    for (size_t i = 0; i < s->n_plugins && !st->prefix; i++)
        if (sched_plugin_is_prefix(s->plugins[i]))
            st->prefix = s->plugins[i];
    LOG_W("sched",
          "latency-scorer '%s': no latency predictions (llm-d's predicted-latency-producer "
          "needs a predictor sidecar tandem does not run): it scores by llm-d's composite "
          "fallback, free KV x %.2f + relative queue x %.2f + prefix share x %.2f%s",
          self->name, st->wkv, st->wq, st->wpref,
          st->prefix ? "" : " (no prefix-cache-scorer or approx-prefix-cache-producer: 0)");
    return 0;
}

static void ls_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                     double *out)
{
    const struct latency_scorer *st = self->st;
    size_t blocks = 0;
    if (st->prefix && st->wpref > 0)
        blocks = st->prefix->t->match_prefix(st->prefix, c);
    double maxq = 0;
    for (size_t i = 0; i < n; i++)
        maxq = fmax(maxq, floor(c->m[in[i]].waiting));
    for (size_t i = 0; i < n; i++) {
        const struct sched_endpoint_metrics *m = &c->m[in[i]];
        double rel = maxq > 0 ? (maxq - floor(m->waiting)) / maxq : 1.0;
        double prefix = blocks ? (double)c->px_matched[in[i]] / (double)blocks : 0;
        double comp = st->wkv * (1.0 - m->kv_usage) + st->wq * rel + st->wpref * prefix;
        out[i] = round(100 * comp) / 100;
    }
}

const struct sched_plugin_type sched_latency_scorer = {
    .type = "latency-scorer",
    .kind = SCHED_PK_SCORER,
    .create = ls_create,
    .destroy = free,
    .bind = ls_bind,
    .score = ls_score,
};

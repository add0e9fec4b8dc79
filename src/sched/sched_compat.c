/* Plugin types that llm-d's docs and READMEs configure and that tandem either runs with
 * llm-d's semantics here (prefix-cache-affinity-filter) or loads so the config works
 * unchanged while saying, in exactly one WARN line at load, why it has nothing to do:
 *   - disagg-headers-handler (deprecated in llm-d) and its older name
 *     prefill-header-handler: tandem always sets x-prefiller-host-port from the P/D
 *     decision itself;
 *   - vllmgrpc-parser: tandem parses OpenAI JSON bodies only;
 *   - static-usage-limit-policy: tandem has no flow-control layer;
 *   - latency-slo-admitter, slo-headroom-tier-filter: they act on latency predictions
 *     (llm-d's predicted-latency-producer), which tandem does not make; without them
 *     llm-d's own plugins admit everything / keep every pod, as these do;
 *   - models-data-source, models-data-extractor: llm-d polls each engine's /v1/models into
 *     an endpoint attribute that none of its plugins reads; tandem does not poll it;
 *   - k8s-notification-source: streams a Kubernetes kind's changes to Go extractor plugins
 *     users add to llm-d; tandem has no such extractors, so it watches nothing.
 * State: the affinity filter's parameters and the prefix plugin it reads (borrowed from
 * the scheduler); the others keep at most their parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

static bool no_params(const json_t *params, struct sched_perr *err)
{
    static const char *const keys[] = {NULL};
    return sched_param_check_keys(params, keys, err);
}

/* --- disagg-headers-handler ---------------------------------------------------------------- */

/* disagg-headers-handler and prefill-header-handler (llm-d's older name, same factory):
 * parameters checked, then one WARN line naming the profiles that are not read. */
static int headers_check(const char *type, const json_t *params, struct sched_perr *err)
{
    static const char *const keys[] = {"prefillProfile", "encodeProfile", NULL};
    const char *pre = "prefill", *enc = "encode";
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_str(params, "prefillProfile", &pre, err) < 0 ||
        sched_param_str(params, "encodeProfile", &enc, err) < 0)
        return -1;
    LOG_W("sched",
          "%s: %snothing to add: tandem itself sets x-prefiller-host-port to the prefill "
          "pick whenever its P/D handler disaggregates (prefillProfile '%s' and "
          "encodeProfile '%s' are not read)",
          type,
          strcmp(type, "disagg-headers-handler") ? "deprecated alias of disagg-headers-handler, "
                                                 : "",
          pre, enc);
    return 0;
}

static int headers_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    return headers_check("disagg-headers-handler", params, err);
}

static int prefill_headers_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    return headers_check("prefill-header-handler", params, err);
}

/* --- vllmgrpc-parser ------------------------------------------------------------------------- */

static int grpc_parser_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    if (!no_params(params, err))
        return -1;
    LOG_W("sched", "vllmgrpc-parser: not applied: tandem parses OpenAI JSON bodies only, "
                   "so requests in vLLM's gRPC format are not understood");
    return 0;
}

/* --- static-usage-limit-policy --------------------------------------------------------------- */

static int usage_limit_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"threshold", NULL};
    double th = 1.0;
    (void)state;
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_num(params, "threshold", &th, err) < 0)
        return -1;
    if (!(th > 0 && th <= 1)) {
        sched_perr_set(err, "threshold", "must be in (0.0, 1.0], got %g", th);
        return -1;
    }
    LOG_W("sched",
          "static-usage-limit-policy: not applied: tandem has no flow-control "
          "layer (threshold %g caps nothing)",
          th);
    return 0;
}

/* --- latency-slo-admitter, slo-headroom-tier-filter ------------------------------------------ */

static int latency_admitter_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    if (!no_params(params, err))
        return -1;
    LOG_W("sched", "latency-slo-admitter: admits every request: it needs latency "
                   "predictions (llm-d's predicted-latency-producer), which tandem does not "
                   "make; llm-d's admitter also admits everything without them");
    return 0;
}

static int slo_tier_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"epsilonExploreNeg", NULL};
    double eps = 0.01;
    (void)state;
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_num(params, "epsilonExploreNeg", &eps, err) < 0)
        return -1;
    if (!(eps >= 0 && eps <= 1)) {
        sched_perr_set(err, "epsilonExploreNeg", "must be in [0, 1], got %g", eps);
        return -1;
    }
    LOG_W("sched", "slo-headroom-tier-filter: keeps every pod: it tiers pods by predicted "
                   "latency headroom (llm-d's predicted-latency-producer), which tandem does "
                   "not make; llm-d's filter also keeps all without predictions");
    return 0;
}

static size_t keep_all(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                       size_t n, uint16_t *out)
{
    (void)self;
    (void)c;
    memcpy(out, in, n * sizeof *in);
    return n;
}

/* --- prefix-cache-affinity-filter ------------------------------------------------------------ */

struct affinity {
    double threshold, explore;
    struct sched_plugin *prefix; /* borrowed; NULL: no prefix data, keeps all */
};

static int affinity_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"affinityThreshold", "explorationProbability",
                                       "maxTTFTPenaltyMs", NULL};
    double th = 0.80, ex = 0.01, pen = 5000;
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_num(params, "affinityThreshold", &th, err) < 0 ||
        sched_param_num(params, "explorationProbability", &ex, err) < 0 ||
        sched_param_num(params, "maxTTFTPenaltyMs", &pen, err) < 0)
        return -1;
    if (th > 1) {
        sched_perr_set(err, "affinityThreshold", "must be <= 1.0, got %g", th);
        return -1;
    }
    if (!(ex >= 0 && ex <= 1)) {
        sched_perr_set(err, "explorationProbability", "must be in [0, 1], got %g", ex);
        return -1;
    }
    if (!(pen >= 0)) {
        sched_perr_set(err, "maxTTFTPenaltyMs", "must be >= 0, got %g", pen);
        return -1;
    }
    struct affinity *st = xcalloc(1, sizeof *st);
    st->threshold = th;
    st->explore = ex;
    *state = st;
    return 0;
}

static int affinity_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct affinity *st = self->st;
    (void)err;
    for (size_t i = 0; i < s->n_plugins && !st->prefix; i++)
        if (sched_plugin_is_prefix(s->plugins[i]))
            st->prefix = s->plugins[i];
    if (!st->prefix)
        LOG_W("sched",
              "prefix-cache-affinity-filter '%s': no prefix-cache-scorer or "
              "approx-prefix-cache-producer in the config, so no prefix data: it keeps "
              "every pod (as llm-d's does without one); maxTTFTPenaltyMs needs latency "
              "predictions tandem does not make",
              self->name);
    else
        LOG_W("sched",
              "prefix-cache-affinity-filter '%s': maxTTFTPenaltyMs not applied: it "
              "compares predicted TTFTs, which tandem does not make (llm-d's gate "
              "never opens without them either)",
              self->name);
    return 0;
}

/* Keeps the pods whose cached share of the prompt (the prefix plugin's matched blocks /
 * the prompt's blocks) is >= affinityThreshold; none such, one candidate, or an
 * exploration draw: keeps all. */
static size_t affinity_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                              size_t n, uint16_t *out)
{
    const struct affinity *st = self->st;
    size_t blocks = 0;
    if (n > 1 && st->threshold > 0 && st->prefix && !(sched_rand_unit() < st->explore))
        blocks = st->prefix->t->match_prefix(st->prefix, c);
    size_t m = 0;
    for (size_t i = 0; blocks && i < n; i++)
        if ((double)c->px_matched[in[i]] / (double)blocks >= st->threshold)
            out[m++] = in[i];
    if (m)
        return m;
    return keep_all(self, c, in, n, out);
}

/* --- models-data-source, models-data-extractor ---------------------------------------------- */

static int models_source_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"scheme", "path", "insecureSkipVerify", NULL};
    const char *scheme = "http", *path = "/v1/models";
    bool skip = true;
    (void)state;
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_str(params, "scheme", &scheme, err) < 0 ||
        sched_param_str(params, "path", &path, err) < 0 ||
        sched_param_bool(params, "insecureSkipVerify", &skip, err) < 0)
        return -1;
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        sched_perr_set(err, "scheme", "must be http or https, got '%s'", scheme);
        return -1;
    }
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        sched_perr_set(err, "path", "must be an absolute URL path such as /v1/models");
        return -1;
    }
    LOG_W("sched",
          "models-data-source: not polled: the engines' %s list feeds no "
          "scheduling plugin (in llm-d none reads it either)",
          path);
    return 0;
}

static int models_extractor_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    if (!no_params(params, err))
        return -1;
    LOG_W("sched", "models-data-extractor: not applied: it stores the served models as an "
                   "endpoint attribute no scheduling plugin reads");
    return 0;
}

/* --- k8s-notification-source ----------------------------------------------------------------- */

static int k8s_notify_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"group", "version", "kind", NULL};
    const char *group = "", *version = NULL, *kind = NULL;
    (void)state;
    if (!params) {
        sched_perr_set(err, "",
                       "k8s-notification-source requires parameters (group, version, "
                       "kind)");
        return -1;
    }
    if (!sched_param_check_keys(params, keys, err) ||
        sched_param_str(params, "group", &group, err) < 0 ||
        sched_param_str(params, "version", &version, err) < 0 ||
        sched_param_str(params, "kind", &kind, err) < 0)
        return -1;
    if (!version || !version[0] || !kind || !kind[0]) {
        sched_perr_set(err, !version || !version[0] ? "version" : "kind",
                       "version and kind are required");
        return -1;
    }
    LOG_W("sched",
          "k8s-notification-source: watches nothing: it feeds %s%s%s/%s changes to "
          "extractor plugins compiled into llm-d, and tandem has none",
          group, group[0] ? "/" : "", version, kind);
    return 0;
}

/* --- tables ----------------------------------------------------------------------------------- */

const struct sched_plugin_type sched_disagg_headers_handler = {
    .type = "disagg-headers-handler",
    .kind = SCHED_PK_PREREQUEST,
    .create = headers_create,
};

const struct sched_plugin_type sched_prefill_header_handler = {
    .type = "prefill-header-handler",
    .kind = SCHED_PK_PREREQUEST,
    .create = prefill_headers_create,
};

const struct sched_plugin_type sched_vllmgrpc_parser = {
    .type = "vllmgrpc-parser",
    .kind = SCHED_PK_PARSER,
    .create = grpc_parser_create,
};

const struct sched_plugin_type sched_static_usage_limit_policy = {
    .type = "static-usage-limit-policy",
    .kind = SCHED_PK_FLOW,
    .create = usage_limit_create,
};

const struct sched_plugin_type sched_latency_slo_admitter = {
    .type = "latency-slo-admitter",
    .kind = SCHED_PK_ADMITTER,
    .create = latency_admitter_create,
};

const struct sched_plugin_type sched_slo_headroom_tier_filter = {
    .type = "slo-headroom-tier-filter",
    .kind = SCHED_PK_FILTER,
    .create = slo_tier_create,
    .filter = keep_all,
};

const struct sched_plugin_type sched_prefix_cache_affinity_filter = {
    .type = "prefix-cache-affinity-filter",
    .kind = SCHED_PK_FILTER,
    .create = affinity_create,
    .destroy = free,
    .bind = affinity_bind,
    .filter = affinity_filter,
};

const struct sched_plugin_type sched_models_data_source = {
    .type = "models-data-source",
    .kind = SCHED_PK_SOURCE,
    .create = models_source_create,
};

const struct sched_plugin_type sched_models_data_extractor = {
    .type = "models-data-extractor",
    .kind = SCHED_PK_EXTRACTOR,
    .create = models_extractor_create,
};

const struct sched_plugin_type sched_k8s_notification_source = {
    .type = "k8s-notification-source",
    .kind = SCHED_PK_SOURCE,
    .create = k8s_notify_create,
};

/* Profile handlers and P/D deciders: which profiles run for a request and how their
 * results combine into sched_result (decode picks, optional prefill pod, the static
 * reason text). Handlers resolve the profiles and plugins they name at bind time, so a
 * config naming a missing profile is refused before the scheduler exists. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"
#include "tokenize/tokenize.h"

static int no_params_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const none[] = {NULL};
    *state = NULL;
    return sched_param_check_keys(params, none, err) ? 0 : -1;
}

/* Runs p; on success stores the picks (ref'd) as the decode result. */
static bool run_decode(struct sched_cycle *c, const struct sched_profile *p,
                       struct sched_result *res)
{
    uint16_t picks[SCHED_MAX_PICKS];
    size_t n = 0;
    int st = sched_run_profile(c, p, picks, &n, res->reason, sizeof res->reason);
    if (st) {
        res->status = st;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        res->picks[i] = c->eps[picks[i]];
        sched_endpoint_ref(res->picks[i]);
    }
    res->n_picks = n;
    c->decode_pick = picks[0];
    return true;
}

/* Runs the prefill profile; a failure there is not an error (decode alone serves). */
static bool run_prefill(struct sched_cycle *c, const struct sched_profile *p,
                        struct sched_result *res)
{
    uint16_t picks[SCHED_MAX_PICKS];
    size_t n = 0;
    char why[256];
    if (sched_run_profile(c, p, picks, &n, why, sizeof why) != 0 || n == 0)
        return false;
    res->prefill = c->eps[picks[0]];
    sched_endpoint_ref(res->prefill);
    return true;
}

/* --- single-profile-handler --------------------------------------------------------------- */

static void single_handle(struct sched_plugin *self, struct sched_cycle *c, struct sched_result *res)
{
    if (run_decode(c, &c->s->profiles[0], res))
        res->pd_reason = "single profile";
}

static int single_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    if (s->n_profiles != 1) {
        sched_perr_set(err, "schedulingProfiles",
                       "single-profile-handler needs exactly one profile, got %zu", s->n_profiles);
        return -1;
    }
    return 0;
}

const struct sched_plugin_type sched_single_profile_handler = {
    .type = "single-profile-handler",
    .kind = SCHED_PK_HANDLER,
    .create = no_params_create,
    .bind = single_bind,
    .handle = single_handle,
};

/* --- pd-profile-handler ----------------------------------------------------------------- */

struct pd_handler {
    double threshold;
    long long block_size;
    int primary_port; /* llm-d's primaryPort: the decode pick's DP rewrite (0: none) */
    char *decode_name, *prefill_name, *prefix_name;
    struct sched_profile *decode, *prefill;
    struct sched_plugin *prefix;
};

static void pd_destroy(void *state)
{
    struct pd_handler *st = state;
    if (!st)
        return;
    free(st->decode_name);
    free(st->prefill_name);
    free(st->prefix_name);
    free(st);
}

static int pd_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"threshold",        "decodeProfile", "prefillProfile",
                                       "prefixPluginName", "hashBlockSize", "primaryPort",
                                       NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    double thr = 0;
    long long bs = 64, port = 0;
    const char *dp = "decode", *pp = "prefill", *px = "prefix-cache-scorer";
    if (sched_param_num(params, "threshold", &thr, err) < 0 ||
        sched_param_int(params, "hashBlockSize", &bs, err) < 0 ||
        sched_param_int(params, "primaryPort", &port, err) < 0 ||
        sched_param_str(params, "decodeProfile", &dp, err) < 0 ||
        sched_param_str(params, "prefillProfile", &pp, err) < 0 ||
        sched_param_str(params, "prefixPluginName", &px, err) < 0)
        return -1;
    if (!(thr >= 0)) {
        sched_perr_set(err, "threshold", "must be >= 0");
        return -1;
    }
    if (bs <= 0) {
        sched_perr_set(err, "hashBlockSize", "must be > 0");
        return -1;
    }
    if (port < 0 || port > 65535) {
        sched_perr_set(err, "primaryPort", "must be between 1 and 65535, got %lld", port);
        return -1;
    }
    struct pd_handler *st = xcalloc(1, sizeof *st);
    st->primary_port = (int)port;
    st->threshold = thr;
    st->block_size = bs;
    st->decode_name = xstrdup(dp);
    st->prefill_name = xstrdup(pp);
    st->prefix_name = xstrdup(px);
    *state = st;
    return 0;
}

static int bind_profile(struct sched *s, const char *name, const char *field,
                        struct sched_profile **out, struct sched_perr *err)
{
    *out = sched_find_profile(s, name);
    if (!*out) {
        sched_perr_set(err, field, "profile '%s' is not in schedulingProfiles", name);
        return -1;
    }
    return 0;
}

static int pd_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct pd_handler *st = self->st;
    if (bind_profile(s, st->decode_name, "decodeProfile", &st->decode, err) < 0 ||
        bind_profile(s, st->prefill_name, "prefillProfile", &st->prefill, err) < 0)
        return -1;
    struct sched_plugin *p = sched_find_plugin(s, st->prefix_name);
    st->prefix = sched_plugin_is_prefix(p) ? p : NULL; /* absent: nothing counts as cached */
    return 0;
}

static void pd_handle(struct sched_plugin *self, struct sched_cycle *c, struct sched_result *res)
{
    struct pd_handler *st = self->st;
    if (!run_decode(c, st->decode, res))
        return;
    res->dp_primary_port = st->primary_port; /* decode pick: to its pod's primary port */
    double len = (double)c->req->prompt_len;
    double hit = 0;
    if (st->prefix && len > 0) {
        st->prefix->t->match_prefix(st->prefix, c);
        double matched = c->px_matched[c->decode_pick];
        hit = fmin(1.0, fmax(matched - 1, 0) * (double)st->block_size / len);
    }
    if ((1 - hit) * len >= st->threshold) {
        bool ok = run_prefill(c, st->prefill, res);
        res->pd = ok ? SCHED_PD_DISAGGREGATE : SCHED_PD_NO_PREFILL;
        res->pd_reason = ok ? "uncached prompt length >= threshold: prefill disaggregated"
                            : "no prefill endpoint: decode only";
    } else {
        res->pd = SCHED_PD_DECODE_ONLY;
        res->pd_reason = "uncached prompt length < threshold: decode only";
    }
}

const struct sched_plugin_type sched_pd_profile_handler = {
    .type = "pd-profile-handler",
    .kind = SCHED_PK_HANDLER,
    .create = pd_create,
    .destroy = pd_destroy,
    .bind = pd_bind,
    .handle = pd_handle,
};

/* --- disagg-profile-handler ---------------------------------------------------------------- */

struct disagg_handler {
    char *decode_name, *prefill_name, *decider_name;
    struct sched_profile *decode, *prefill;
    struct sched_plugin *decider;
};

static void disagg_destroy(void *state)
{
    struct disagg_handler *st = state;
    if (!st)
        return;
    free(st->decode_name);
    free(st->prefill_name);
    free(st->decider_name);
    free(st);
}

static int disagg_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"profiles", "deciders", NULL};
    static const char *const pkeys[] = {"decode", "prefill", NULL};
    static const char *const dkeys[] = {"prefill", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    json_t *profiles = params ? json_object_get(params, "profiles") : NULL;
    json_t *deciders = params ? json_object_get(params, "deciders") : NULL;
    const char *dp = "decode", *pp = "prefill", *dec = NULL;
    struct sched_perr sub;
    if (profiles && !json_is_null(profiles)) {
        if (!sched_param_check_keys(profiles, pkeys, &sub) ||
            sched_param_str(profiles, "decode", &dp, &sub) < 0 ||
            sched_param_str(profiles, "prefill", &pp, &sub) < 0) {
            char f[128];
            if (strcmp(sub.field, "parameters") == 0)
                snprintf(f, sizeof f, "profiles");
            else
                snprintf(f, sizeof f, "profiles.%s", sub.field);
            sched_perr_set(err, f, "%s", sub.why);
            return -1;
        }
    }
    if (deciders && !json_is_null(deciders)) {
        if (!sched_param_check_keys(deciders, dkeys, &sub) ||
            sched_param_str(deciders, "prefill", &dec, &sub) < 0) {
            char f[128];
            if (strcmp(sub.field, "parameters") == 0)
                snprintf(f, sizeof f, "deciders");
            else
                snprintf(f, sizeof f, "deciders.%s", sub.field);
            sched_perr_set(err, f, "%s", sub.why);
            return -1;
        }
    }
    struct disagg_handler *st = xcalloc(1, sizeof *st);
    st->decode_name = xstrdup(dp);
    st->prefill_name = xstrdup(pp);
    st->decider_name = dec ? xstrdup(dec) : NULL;
    *state = st;
    return 0;
}

static int disagg_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct disagg_handler *st = self->st;
    if (bind_profile(s, st->decode_name, "profiles.decode", &st->decode, err) < 0 ||
        bind_profile(s, st->prefill_name, "profiles.prefill", &st->prefill, err) < 0)
        return -1;
    if (st->decider_name) {
        st->decider = sched_find_plugin(s, st->decider_name);
        if (!st->decider || st->decider->t->kind != SCHED_PK_DECIDER) {
            sched_perr_set(err, "deciders.prefill", "'%s' is not a P/D decider plugin",
                           st->decider_name);
            return -1;
        }
    }
    return 0;
}

static void disagg_handle(struct sched_plugin *self, struct sched_cycle *c,
                          struct sched_result *res)
{
    struct disagg_handler *st = self->st;
    if (!run_decode(c, st->decode, res))
        return;
    const char *why = "no decider configured: always disaggregate";
    bool go = true;
    if (st->decider)
        go = st->decider->t->decide(st->decider, c, (uint16_t)c->decode_pick, &why);
    if (!go) {
        res->pd = SCHED_PD_DECODE_ONLY;
        res->pd_reason = why;
        return;
    }
    bool ok = run_prefill(c, st->prefill, res);
    res->pd = ok ? SCHED_PD_DISAGGREGATE : SCHED_PD_NO_PREFILL;
    res->pd_reason = ok ? why : "no prefill endpoint: decode only";
}

const struct sched_plugin_type sched_disagg_profile_handler = {
    .type = "disagg-profile-handler",
    .kind = SCHED_PK_HANDLER,
    .create = disagg_create,
    .destroy = disagg_destroy,
    .bind = disagg_bind,
    .handle = disagg_handle,
};

/* --- deciders -------------------------------------------------------------------------------- */

struct prefix_decider {
    long long non_cached, prompt_min;
    char *prefix_name;
    struct sched_plugin *prefix;
};

static void pdec_destroy(void *state)
{
    struct prefix_decider *st = state;
    if (!st)
        return;
    free(st->prefix_name);
    free(st);
}

static int pdec_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"nonCachedTokens", "promptTokens", "prefixPluginName", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long nc = 0, pt = 0;
    const char *px = "prefix-cache-scorer";
    if (sched_param_int(params, "nonCachedTokens", &nc, err) < 0 ||
        sched_param_int(params, "promptTokens", &pt, err) < 0 ||
        sched_param_str(params, "prefixPluginName", &px, err) < 0)
        return -1;
    if (nc < 0 || pt < 0) {
        sched_perr_set(err, nc < 0 ? "nonCachedTokens" : "promptTokens", "must be >= 0");
        return -1;
    }
    struct prefix_decider *st = xcalloc(1, sizeof *st);
    st->non_cached = nc;
    st->prompt_min = pt;
    st->prefix_name = xstrdup(px);
    *state = st;
    return 0;
}

static int pdec_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct prefix_decider *st = self->st;
    struct sched_plugin *p = sched_find_plugin(s, st->prefix_name);
    st->prefix = sched_plugin_is_prefix(p) ? p : NULL;
    return 0;
}

static bool pdec_decide(struct sched_plugin *self, struct sched_cycle *c, uint16_t decode,
                        const char **reason)
{
    const struct prefix_decider *st = self->st;
    const struct sched_request *r = c->req;
    if (st->non_cached <= 0) {
        *reason = "prefix-based-pd-decider: nonCachedTokens 0: never disaggregate";
        return false;
    }
    double tokens = r->prompt_tokens;
    if (tokens == 0 && r->prompt)
        tokens = (double)tok_count(r->prompt, r->prompt_len);
    if (st->prompt_min > 0 && tokens < (double)st->prompt_min) {
        *reason = "prefix-based-pd-decider: prompt shorter than promptTokens: decode only";
        return false;
    }
    double cached = 0;
    if (st->prefix && r->prompt_len) {
        st->prefix->t->match_prefix(st->prefix, c);
        double chars = (double)c->px_matched[decode] * (double)c->px_block_size;
        cached = fmin(tokens, chars * tokens / (double)r->prompt_len);
    }
    if (tokens - cached >= (double)st->non_cached) {
        *reason = "prefix-based-pd-decider: non-cached tokens >= nonCachedTokens: disaggregate";
        return true;
    }
    *reason = "prefix-based-pd-decider: prompt mostly cached on the decode pod: decode only";
    return false;
}

const struct sched_plugin_type sched_prefix_based_pd_decider = {
    .type = "prefix-based-pd-decider",
    .kind = SCHED_PK_DECIDER,
    .create = pdec_create,
    .destroy = pdec_destroy,
    .bind = pdec_bind,
    .decide = pdec_decide,
};

static bool always_decide(struct sched_plugin *self, struct sched_cycle *c, uint16_t decode,
                          const char **reason)
{
    *reason = "always-disagg-pd-decider: always disaggregate";
    return true;
}

const struct sched_plugin_type sched_always_disagg_pd_decider = {
    .type = "always-disagg-pd-decider",
    .kind = SCHED_PK_DECIDER,
    .create = no_params_create,
    .decide = always_decide,
};

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

/* llm-d's unified handler (disagg_profile_handler.go): decode first; then, if the config
 * has an encode profile and deciders.encode says so, the encode profile (its picks become
 * x-encoder-hosts-ports); then, if it has a prefill profile and deciders.prefill says so,
 * the prefill profile. A stage with no decider configured never runs; a missing encode
 * or prefill profile just means that stage does not exist (E/PD has no prefill). */
struct disagg_handler {
    char *decode_name, *prefill_name, *encode_name, *decider_name, *enc_decider_name;
    struct sched_profile *decode, *prefill, *encode; /* prefill, encode may be NULL */
    struct sched_plugin *decider, *enc_decider;
};

static void disagg_destroy(void *state)
{
    struct disagg_handler *st = state;
    if (!st)
        return;
    free(st->decode_name);
    free(st->prefill_name);
    free(st->encode_name);
    free(st->decider_name);
    free(st->enc_decider_name);
    free(st);
}

/* Reads sub-mapping key of params with the given keys into outs; errors name
 * "key.field". */
static int disagg_sub(const json_t *params, const char *key, const char *const *keys,
                      const char **outs[], struct sched_perr *err)
{
    json_t *m = params ? json_object_get(params, key) : NULL;
    if (!m || json_is_null(m))
        return 0;
    struct sched_perr sub;
    bool ok = sched_param_check_keys(m, keys, &sub);
    for (size_t i = 0; ok && keys[i]; i++)
        ok = sched_param_str(m, keys[i], outs[i], &sub) >= 0;
    if (ok)
        return 0;
    char f[128];
    if (strcmp(sub.field, "parameters") == 0)
        snprintf(f, sizeof f, "%s", key);
    else
        snprintf(f, sizeof f, "%s.%s", key, sub.field);
    sched_perr_set(err, f, "%s", sub.why);
    return -1;
}

static int disagg_create(const json_t *params, void **state, struct sched_perr *err)
{
    /* The nested form, and llm-d's deprecated flat one (not both at once). */
    static const char *const keys[] = {"profiles",
                                       "deciders",
                                       "decodeProfile",
                                       "prefillProfile",
                                       "encodeProfile",
                                       "prefillDeciderPluginName",
                                       "encodeDeciderPluginName",
                                       "deciderPluginName",
                                       NULL};
    static const char *const pkeys[] = {"decode", "prefill", "encode", NULL};
    static const char *const dkeys[] = {"prefill", "encode", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *dp = NULL, *pp = NULL, *ep = NULL, *dec = NULL, *edec = NULL;
    const char **pouts[] = {&dp, &pp, &ep};
    const char **douts[] = {&dec, &edec};
    if (disagg_sub(params, "profiles", pkeys, pouts, err) < 0 ||
        disagg_sub(params, "deciders", dkeys, douts, err) < 0)
        return -1;
    bool nested = dp || pp || ep || dec || edec;
    const char *ldp = NULL, *lpp = NULL, *lep = NULL, *lpd = NULL, *led = NULL, *ld = NULL;
    if (sched_param_str(params, "decodeProfile", &ldp, err) < 0 ||
        sched_param_str(params, "prefillProfile", &lpp, err) < 0 ||
        sched_param_str(params, "encodeProfile", &lep, err) < 0 ||
        sched_param_str(params, "prefillDeciderPluginName", &lpd, err) < 0 ||
        sched_param_str(params, "encodeDeciderPluginName", &led, err) < 0 ||
        sched_param_str(params, "deciderPluginName", &ld, err) < 0)
        return -1;
    bool legacy = ldp || lpp || lep || lpd || led || ld;
    if (nested && legacy) {
        sched_perr_set(err, "parameters",
                       "cannot mix deprecated flat parameters (decodeProfile, prefillProfile, "
                       "encodeProfile, deciderPluginName, prefillDeciderPluginName, "
                       "encodeDeciderPluginName) with nested parameters (profiles, deciders): "
                       "use one format or the other");
        return -1;
    }
    if (legacy) {
        dp = ldp;
        pp = lpp;
        ep = lep;
        dec = lpd ? lpd : ld;
        edec = led;
    }
    struct disagg_handler *st = xcalloc(1, sizeof *st);
    st->decode_name = xstrdup(dp && *dp ? dp : "decode");
    st->prefill_name = xstrdup(pp && *pp ? pp : "prefill");
    st->encode_name = xstrdup(ep && *ep ? ep : "encode");
    st->decider_name = dec && *dec ? xstrdup(dec) : NULL;
    st->enc_decider_name = edec && *edec ? xstrdup(edec) : NULL;
    *state = st;
    return 0;
}

static int bind_decider(struct sched *s, const char *name, const char *field,
                        struct sched_plugin **out, struct sched_perr *err)
{
    *out = NULL;
    if (!name)
        return 0;
    *out = sched_find_plugin(s, name);
    if (!*out || (*out)->t->kind != SCHED_PK_DECIDER) {
        sched_perr_set(err, field, "'%s' is not %s decider plugin", name,
                       strcmp(field, "deciders.encode") == 0 ? "an encode" : "a P/D");
        return -1;
    }
    return 0;
}

static int disagg_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct disagg_handler *st = self->st;
    if (bind_profile(s, st->decode_name, "profiles.decode", &st->decode, err) < 0)
        return -1;
    st->prefill = sched_find_profile(s, st->prefill_name);
    st->encode = sched_find_profile(s, st->encode_name);
    if (bind_decider(s, st->decider_name, "deciders.prefill", &st->decider, err) < 0)
        return -1;
    return bind_decider(s, st->enc_decider_name, "deciders.encode", &st->enc_decider, err);
}

/* Runs the encode profile: every pick is an encoder (a picker's maxNumOfEndpoints > 1
 * spreads the items over several). False when it found none. */
static bool run_encode(struct sched_cycle *c, const struct sched_profile *p,
                       struct sched_result *res)
{
    uint16_t picks[SCHED_MAX_PICKS];
    size_t n = 0;
    char why[256];
    if (sched_run_profile(c, p, picks, &n, why, sizeof why) != 0 || n == 0)
        return false;
    for (size_t i = 0; i < n && i < SCHED_MAX_PICKS; i++) {
        res->encode[i] = c->eps[picks[i]];
        sched_endpoint_ref(res->encode[i]);
    }
    res->n_encode = n < SCHED_MAX_PICKS ? n : SCHED_MAX_PICKS;
    return true;
}

/* The prefill stage of disagg_handle. */
static void disagg_prefill(const struct disagg_handler *st, struct sched_cycle *c,
                           struct sched_result *res)
{
    if (!st->prefill) {
        res->pd = SCHED_PD_SINGLE;
        res->pd_reason = "no prefill profile: decode only";
        return;
    }
    const char *why = "no deciders.prefill configured: P/D disaggregation disabled";
    bool go = false;
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

static void disagg_handle(struct sched_plugin *self, struct sched_cycle *c,
                          struct sched_result *res)
{
    struct disagg_handler *st = self->st;
    if (!run_decode(c, st->decode, res))
        return;
    if (st->encode) {
        const char *why = "no deciders.encode configured: encode disaggregation disabled";
        bool go = st->enc_decider &&
                  st->enc_decider->t->decide(st->enc_decider, c, (uint16_t)c->decode_pick, &why);
        if (go && !run_encode(c, st->encode, res))
            why = "no encode endpoint: encoded in place";
        res->encode_reason = why;
    }
    disagg_prefill(st, c, res);
    res->disagg_decision = res->n_encode
                               ? (res->prefill ? "encode-prefill-decode" : "encode-decode")
                           : res->prefill ? "prefill-decode"
                                          : "decode-only";
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

/* --- E/P/D: always-disagg-multimodal-decider ------------------------------------------------- */

/* llm-d's encode decider: a chat request with any image_url / video_url / input_audio
 * content part gets an encode stage; anything else (text, completions) does not. */
static bool mm_decide(struct sched_plugin *self, struct sched_cycle *c, uint16_t decode,
                      const char **reason)
{
    if (c->req->mm_items) {
        *reason = "always-disagg-multimodal-decider: multimodal content: encode disaggregated";
        return true;
    }
    *reason = "always-disagg-multimodal-decider: no multimodal content: no encode stage";
    return false;
}

const struct sched_plugin_type sched_always_disagg_mm_decider = {
    .type = "always-disagg-multimodal-decider",
    .kind = SCHED_PK_DECIDER,
    .create = no_params_create,
    .decide = mm_decide,
};

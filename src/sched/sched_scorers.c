/* Scorers: each maps a candidate to [0, 1] from the cycle's metrics snapshot (the
 * caller clamps and weights). Formulas and parameter names follow llm-d's plugins.
 *
 * The prefix-cache-scorer owns an approximate prefix index; its block hashes for the
 * request are computed once per cycle (prefix_match) and reused by its post-pick insert;
 * the P/D handlers, deciders and the no-hit-lru-scorer reach them only through its
 * match_prefix hook. The no-hit-lru-scorer
 * keeps an MRU-first list of the pods that took cold requests under a mutex (touched
 * once per cold request). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

#define ST(p, type) ((type *)(p)->st)

/* --- queue-scorer / running-requests-size-scorer --------------------------------------- */

static void minmax_score(const double *v, size_t n, double *out)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = hi > lo ? (hi - v[i]) / (hi - lo) : 1.0;
}

static int no_params_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const none[] = {NULL};
    *state = NULL;
    return sched_param_check_keys(params, none, err) ? 0 : -1;
}

static void queue_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                        size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = sched_m_waiting_est(&c->m[in[i]]);
    minmax_score(out, n, out);
}

static void running_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                          size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = c->m[in[i]].running;
    minmax_score(out, n, out);
}

const struct sched_plugin_type sched_queue_scorer = {
    .type = "queue-scorer",
    .kind = SCHED_PK_SCORER,
    .create = no_params_create,
    .score = queue_score,
};

const struct sched_plugin_type sched_running_scorer = {
    .type = "running-requests-size-scorer",
    .kind = SCHED_PK_SCORER,
    .create = no_params_create,
    .score = running_score,
};

/* --- kv-cache-utilization-scorer ------------------------------------------------------- */

static void kv_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                     double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0 - sched_m_kv_usage_est(&c->m[in[i]]);
}

const struct sched_plugin_type sched_kv_scorer = {
    .type = "kv-cache-utilization-scorer",
    .kind = SCHED_PK_SCORER,
    .create = no_params_create,
    .score = kv_score,
};

/* --- load-aware-scorer ----------------------------------------------------------------- */

struct load_aware {
    double threshold;
};

static int load_aware_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"threshold", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    double t = 128;
    if (sched_param_num(params, "threshold", &t, err) < 0)
        return -1;
    if (!(t > 0)) {
        sched_perr_set(err, "threshold", "must be > 0");
        return -1;
    }
    struct load_aware *st = xcalloc(1, sizeof *st);
    st->threshold = t;
    *state = st;
    return 0;
}

static void load_aware_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                             size_t n, double *out)
{
    double t = ST(self, struct load_aware)->threshold;
    for (size_t i = 0; i < n; i++) {
        double q = sched_m_waiting_est(&c->m[in[i]]);
        out[i] = q <= 0 ? 0.5 : 0.5 * (1.0 - fmin(q, t) / t);
    }
}

const struct sched_plugin_type sched_load_aware_scorer = {
    .type = "load-aware-scorer",
    .kind = SCHED_PK_SCORER,
    .create = load_aware_create,
    .destroy = free,
    .score = load_aware_score,
};

/* --- active-request-scorer ------------------------------------------------------------- */

struct active_req {
    long long idle;
    double max_busy;
};

static int active_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"idleThreshold", "maxBusyScore", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long idle = 0;
    double mb = 1.0;
    if (sched_param_int(params, "idleThreshold", &idle, err) < 0 ||
        sched_param_num(params, "maxBusyScore", &mb, err) < 0)
        return -1;
    if (idle < 0) {
        sched_perr_set(err, "idleThreshold", "must be >= 0");
        return -1;
    }
    if (!(mb >= 0 && mb <= 1)) {
        sched_perr_set(err, "maxBusyScore", "must be between 0 and 1");
        return -1;
    }
    struct active_req *st = xcalloc(1, sizeof *st);
    st->idle = idle;
    st->max_busy = mb;
    *state = st;
    return 0;
}

static void active_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                         size_t n, double *out)
{
    const struct active_req *st = self->st;
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, (double)c->m[in[i]].inflight_requests);
    for (size_t i = 0; i < n; i++) {
        double cnt = (double)c->m[in[i]].inflight_requests;
        out[i] = cnt <= (double)st->idle ? 1.0 : (mx - cnt) / mx * st->max_busy;
    }
}

const struct sched_plugin_type sched_active_request_scorer = {
    .type = "active-request-scorer",
    .kind = SCHED_PK_SCORER,
    .create = active_create,
    .destroy = free,
    .score = active_score,
};

/* --- token-load-scorer ----------------------------------------------------------------- */

struct token_load {
    double threshold;
};

static int token_load_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"queueThresholdTokens", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long t = 4194304;
    if (sched_param_int(params, "queueThresholdTokens", &t, err) < 0)
        return -1;
    if (t <= 0) {
        sched_perr_set(err, "queueThresholdTokens", "must be > 0");
        return -1;
    }
    struct token_load *st = xcalloc(1, sizeof *st);
    st->threshold = (double)t;
    *state = st;
    return 0;
}

static void token_load_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                             size_t n, double *out)
{
    double t = ST(self, struct token_load)->threshold;
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0 - fmin(1.0, fmax(0.0, (double)sched_inflight_tokens(&c->m[in[i]])) / t);
}

const struct sched_plugin_type sched_token_load_scorer = {
    .type = "token-load-scorer",
    .kind = SCHED_PK_SCORER,
    .create = token_load_create,
    .destroy = free,
    .score = token_load_score,
};

/* --- session-affinity-scorer ----------------------------------------------------------- */

static void session_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                          size_t n, double *out)
{
    const char *tok = c->req->headers ? http_headers_get(c->req->headers, "x-session-token") : NULL;
    char name[256];
    size_t len = tok ? sched_b64_decode(tok, strlen(tok), name, sizeof name) : 0;
    for (size_t i = 0; i < n; i++)
        out[i] = len && strcmp(c->eps[in[i]]->name, name) == 0 ? 1.0 : 0.0;
}

const struct sched_plugin_type sched_session_affinity_scorer = {
    .type = "session-affinity-scorer",
    .kind = SCHED_PK_SCORER,
    .create = no_params_create,
    .score = session_score,
};

/* --- lora-affinity-scorer -------------------------------------------------------------- */

static bool list_has(const char *list, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((size_t)(t - p) == nl && nl && memcmp(p, name, nl) == 0)
            return true;
        p = e;
    }
    return false;
}

static size_t list_count(const char *list)
{
    size_t n = 0;
    bool in = false;
    for (const char *p = list; *p; p++) {
        if (*p == ',' || *p == ' ') {
            in = false;
        } else if (!in) {
            in = true;
            n++;
        }
    }
    return n;
}

static void lora_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                       size_t n, double *out)
{
    const char *want = c->req->target_lora;
    for (size_t i = 0; i < n; i++) {
        const struct sched_endpoint_metrics *m = &c->m[in[i]];
        if (!want || !want[0])
            out[i] = 1.0; /* no adapter asked for: no preference */
        else if (list_has(m->running_loras, want))
            out[i] = 1.0;
        else if (list_count(m->running_loras) + list_count(m->waiting_loras) < m->max_lora)
            out[i] = 0.8;
        else if (list_has(m->waiting_loras, want))
            out[i] = 0.6;
        else
            out[i] = 0.0;
    }
}

const struct sched_plugin_type sched_lora_affinity_scorer = {
    .type = "lora-affinity-scorer",
    .kind = SCHED_PK_SCORER,
    .create = no_params_create,
    .score = lora_score,
};

/* --- prefix-cache-scorer --------------------------------------------------------------- */

struct sched_prefix_scorer {
    size_t block_size; /* characters (blockSizeTokens x 4, or the legacy blockSize) */
    size_t max_blocks;
    size_t lru_capacity;
    bool auto_tune; /* block size (first candidate's) and each endpoint's LRU capacity
                       from the engines' vllm:cache_config_info when known */
    struct prefix_index *ix;
};

/* llm-d's approximate prefix parameters: blockSizeTokens (default 16, hashed as 4
 * characters per token, like llm-d), autoTune (default true: the block size follows the
 * first candidate's scraped cache_config_info block_size, and each endpoint's index
 * capacity its num_gpu_blocks), maxPrefixBlocksToMatch (256), maxPrefixTokensToMatch
 * (wins when > 0: blocks = tokens / blockSizeTokens), lruCapacityPerServer (31250: the
 * capacity of an endpoint that reports no num_gpu_blocks, or of all without autoTune).
 * blockSize / hashBlockSize are tandem's older spelling, in characters; they fix the
 * block size (no auto-tuning). */
#define PREFIX_CHARS_PER_TOKEN 4

static int prefix_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"blockSize",       "blockSizeTokens",
                                       "autoTune",        "maxPrefixBlocksToMatch",
                                       "maxPrefixTokensToMatch", "lruCapacityPerServer",
                                       "hashBlockSize",   NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long bs = -1, bst = 16, mb = 256, mt = 0, lru = 31250;
    bool auto_tune = true;
    if (sched_param_int(params, "hashBlockSize", &bs, err) < 0 ||
        sched_param_int(params, "blockSize", &bs, err) < 0 ||
        sched_param_int(params, "blockSizeTokens", &bst, err) < 0 ||
        sched_param_bool(params, "autoTune", &auto_tune, err) < 0 ||
        sched_param_int(params, "maxPrefixBlocksToMatch", &mb, err) < 0 ||
        sched_param_int(params, "maxPrefixTokensToMatch", &mt, err) < 0 ||
        sched_param_int(params, "lruCapacityPerServer", &lru, err) < 0)
        return -1;
    if (bst <= 0 || bst > (1 << 18)) {
        sched_perr_set(err, "blockSizeTokens", "must be between 1 and 262144");
        return -1;
    }
    if (mt < 0) {
        sched_perr_set(err, "maxPrefixTokensToMatch", "must be >= 0");
        return -1;
    }
    if (mt > 0)
        mb = mt / bst > 0 ? mt / bst : 1;
    if (bs >= 0)
        auto_tune = false;
    else
        bs = bst * PREFIX_CHARS_PER_TOKEN;
    if (bs <= 0 || bs > (1 << 20)) {
        sched_perr_set(err, "blockSize", "must be between 1 and 1048576");
        return -1;
    }
    if (mb <= 0 || mb > SCHED_MAX_PREFIX_BLOCKS) {
        sched_perr_set(err, "maxPrefixBlocksToMatch", "must be between 1 and %d",
                       SCHED_MAX_PREFIX_BLOCKS);
        return -1;
    }
    if (lru <= 0 || lru > (1 << 24)) {
        sched_perr_set(err, "lruCapacityPerServer", "must be between 1 and 16777216");
        return -1;
    }
    struct sched_prefix_scorer *st = xcalloc(1, sizeof *st);
    st->block_size = (size_t)bs;
    st->max_blocks = (size_t)mb;
    st->lru_capacity = (size_t)lru;
    st->auto_tune = auto_tune;
    st->ix = prefix_index_new((size_t)lru);
    *state = st;
    return 0;
}

static void prefix_destroy(void *state)
{
    struct sched_prefix_scorer *st = state;
    prefix_index_free(st->ix);
    free(st);
}

static void prefix_hashes_ensure(struct sched_cycle *c, const struct sched_prefix_scorer *ps)
{
    if (c->px_owner == ps)
        return;
    const struct sched_request *r = c->req;
    c->px_owner = ps;
    c->px_block_size = ps->block_size;
    /* autoTune: llm-d takes the block size of the first endpoint that reports one */
    for (size_t i = 0; ps->auto_tune && i < c->n; i++)
        if (c->m[i].block_size > 0) {
            c->px_block_size = (size_t)c->m[i].block_size * PREFIX_CHARS_PER_TOKEN;
            break;
        }
    c->px_matched_done = false;
    c->px_n = r->prompt ? sched_prefix_hashes(r->model, r->prompt, r->prompt_len, c->px_block_size,
                                              c->px_hashes, ps->max_blocks)
                        : 0;
}

static size_t prefix_match(struct sched_plugin *prefix_plugin, struct sched_cycle *c)
{
    if (!prefix_plugin)
        return 0;
    const struct sched_prefix_scorer *ps = prefix_plugin->st;
    prefix_hashes_ensure(c, ps);
    if (!c->px_matched_done) {
        uint32_t ids[32];
        for (size_t off = 0; off < c->n; off += 32) {
            size_t k = c->n - off < 32 ? c->n - off : 32;
            for (size_t i = 0; i < k; i++)
                ids[i] = c->eps[off + i]->id;
            prefix_index_match_many(ps->ix, ids, k, c->px_hashes, c->px_n, c->px_matched + off);
        }
        c->px_matched_done = true;
    }
    return c->px_n;
}

bool sched_plugin_is_prefix(const struct sched_plugin *p)
{
    return p && p->t->match_prefix && p->t->prefix_block_size;
}

static size_t prefix_block_size(const struct sched_plugin *p)
{
    return ((const struct sched_prefix_scorer *)p->st)->block_size;
}

struct prefix_index *sched_prefix_plugin_index(const struct sched_plugin *p)
{
    return ((const struct sched_prefix_scorer *)p->st)->ix;
}

static void prefix_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                         size_t n, double *out)
{
    size_t total = prefix_match(self, c);
    for (size_t i = 0; i < n; i++)
        out[i] = total ? (double)c->px_matched[in[i]] / (double)total : 0.0;
}

/* The LRU capacity of endpoint e's index entries: with autoTune, the num_gpu_blocks its
 * engine reports in vllm:cache_config_info (llm-d's CacheNumBlocks), else
 * lruCapacityPerServer. */
static size_t prefix_capacity(const struct sched_prefix_scorer *ps, const struct sched_cycle *c,
                              const struct sched_endpoint *e)
{
    if (!ps->auto_tune)
        return ps->lru_capacity;
    struct sched_endpoint_metrics m;
    size_t i = 0;
    while (i < c->n && c->eps[i] != e)
        i++;
    if (i < c->n)
        m = c->m[i];
    else
        sched_endpoint_snapshot(e, &m);
    return m.num_blocks > 0 ? m.num_blocks : ps->lru_capacity;
}

static void prefix_post_pick(struct sched_plugin *self, struct sched_cycle *c,
                             const struct sched_result *res)
{
    const struct sched_prefix_scorer *ps = self->st;
    prefix_hashes_ensure(c, ps);
    if (res->n_picks)
        prefix_index_insert_cap(ps->ix, res->picks[0], c->px_hashes, c->px_n,
                                prefix_capacity(ps, c, res->picks[0]));
    if (res->prefill)
        prefix_index_insert_cap(ps->ix, res->prefill, c->px_hashes, c->px_n,
                                prefix_capacity(ps, c, res->prefill));
}

const struct sched_plugin_type sched_prefix_cache_scorer = {
    .type = "prefix-cache-scorer",
    .kind = SCHED_PK_SCORER,
    .create = prefix_create,
    .destroy = prefix_destroy,
    .score = prefix_score,
    .post_pick = prefix_post_pick,
    .match_prefix = prefix_match,
    .prefix_block_size = prefix_block_size,
};

/* llm-d's approx-prefix-cache-producer: the same approximate index and parameters as
 * prefix-cache-scorer, as a data producer that scores nothing. It learns from every pick
 * (post_pick) and offers its matches to prefix-cache-affinity-filter, the P/D deciders'
 * and no-hit-lru's prefixPluginName. */
const struct sched_plugin_type sched_approx_prefix_cache_producer = {
    .type = "approx-prefix-cache-producer",
    .kind = SCHED_PK_PRODUCER,
    .create = prefix_create,
    .destroy = prefix_destroy,
    .post_pick = prefix_post_pick,
    .match_prefix = prefix_match,
    .prefix_block_size = prefix_block_size,
};

/* --- no-hit-lru-scorer ----------------------------------------------------------------- */

struct no_hit_lru {
    pthread_mutex_t mu;
    uint32_t *ids; /* most recently used first */
    size_t n, cap;
    char *prefix_name;
    struct sched_plugin *prefix;
};

static int nohit_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"lruSize", "prefixPluginName", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long size = 1024;
    const char *pname = "prefix-cache-scorer";
    if (sched_param_int(params, "lruSize", &size, err) < 0 ||
        sched_param_str(params, "prefixPluginName", &pname, err) < 0)
        return -1;
    if (size <= 0 || size > (1 << 20)) {
        sched_perr_set(err, "lruSize", "must be between 1 and 1048576");
        return -1;
    }
    struct no_hit_lru *st = xcalloc(1, sizeof *st);
    pthread_mutex_init(&st->mu, NULL);
    st->cap = (size_t)size;
    st->ids = xcalloc(st->cap, sizeof *st->ids);
    st->prefix_name = xstrdup(pname);
    *state = st;
    return 0;
}

static void nohit_destroy(void *state)
{
    struct no_hit_lru *st = state;
    pthread_mutex_destroy(&st->mu);
    free(st->ids);
    free(st->prefix_name);
    free(st);
}

static int nohit_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    struct no_hit_lru *st = self->st;
    struct sched_plugin *p = sched_find_plugin(s, st->prefix_name);
    st->prefix = sched_plugin_is_prefix(p) ? p : NULL; /* none: every request is cold */
    return 0;
}

static bool cycle_is_cold(struct sched_cycle *c, struct sched_plugin *prefix)
{
    if (!prefix)
        return true;
    prefix->t->match_prefix(prefix, c);
    for (size_t i = 0; i < c->n; i++)
        if (c->px_matched[i])
            return false;
    return true;
}

static void nohit_score(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                        size_t n, double *out)
{
    struct no_hit_lru *st = self->st;
    if (!cycle_is_cold(c, st->prefix)) {
        for (size_t i = 0; i < n; i++)
            out[i] = 0.5;
        return;
    }
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < n; i++) {
        uint32_t id = c->eps[in[i]]->id;
        out[i] = 1.0; /* never used: the coldest choice */
        for (size_t k = 0; k < st->n; k++) {
            if (st->ids[k] == id) {
                out[i] = (double)(k + 1) / (double)(st->n + 1);
                break;
            }
        }
    }
    pthread_mutex_unlock(&st->mu);
}

static void nohit_post_pick(struct sched_plugin *self, struct sched_cycle *c,
                            const struct sched_result *res)
{
    struct no_hit_lru *st = self->st;
    if (!res->n_picks || !cycle_is_cold(c, st->prefix))
        return;
    uint32_t id = res->picks[0]->id;
    pthread_mutex_lock(&st->mu);
    size_t k;
    for (k = 0; k < st->n; k++)
        if (st->ids[k] == id)
            break;
    if (k == st->n)
        k = st->n < st->cap ? st->n++ : st->n - 1;
    memmove(&st->ids[1], &st->ids[0], k * sizeof *st->ids);
    st->ids[0] = id;
    pthread_mutex_unlock(&st->mu);
}

const struct sched_plugin_type sched_no_hit_lru_scorer = {
    .type = "no-hit-lru-scorer",
    .kind = SCHED_PK_SCORER,
    .create = nohit_create,
    .destroy = nohit_destroy,
    .bind = nohit_bind,
    .score = nohit_score,
    .post_pick = nohit_post_pick,
};

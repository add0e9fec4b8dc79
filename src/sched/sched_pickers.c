/* Pickers: choose up to maxNumOfEndpoints candidates (best first; the rest are the
 * router's fallbacks). llm-d's max-score, random and weighted-random pickers, and
 * vllm-router's policies (round robin, consistent hash, power of two, cache aware) as
 * pickers, so one router reproduces both.
 *
 * Shared state: round robin is one atomic counter; the consistent-hash ring is rebuilt
 * under a write lock only when the datastore's generation changes and read under a read
 * lock otherwise; the cache-aware picker owns a prefix index (see sched_prefix_index.c)
 * at 16-character granularity. Ties are broken with the per-thread PRNG. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "sched/sched_internal.h"

struct picker_base {
    size_t max_eps;
};

static int max_eps_param(const json_t *params, size_t *out, struct sched_perr *err)
{
    long long v = 1;
    if (sched_param_int(params, "maxNumOfEndpoints", &v, err) < 0)
        return -1;
    if (v < 1 || v > SCHED_MAX_PICKS) {
        sched_perr_set(err, "maxNumOfEndpoints", "must be between 1 and %d", SCHED_MAX_PICKS);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int base_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"maxNumOfEndpoints", NULL};
    size_t m;
    if (!sched_param_check_keys(params, keys, err) || max_eps_param(params, &m, err) < 0)
        return -1;
    struct picker_base *st = xcalloc(1, sizeof *st);
    st->max_eps = m;
    *state = st;
    return 0;
}

static size_t want(const struct sched_plugin *self, size_t n, size_t max)
{
    size_t k = self->st ? ((const struct picker_base *)self->st)->max_eps : 1;
    if (k > max)
        k = max;
    return k < n ? k : n;
}

static bool taken(const uint16_t *out, size_t k, uint16_t v)
{
    for (size_t i = 0; i < k; i++)
        if (out[i] == v)
            return true;
    return false;
}

/* Top k of v[0..n) (largest first), ties broken uniformly at random (reservoir). */
static size_t top_k(const double *v, size_t n, size_t k, uint16_t *out)
{
    for (size_t r = 0; r < k; r++) {
        size_t best = SIZE_MAX, ties = 0;
        for (size_t i = 0; i < n; i++) {
            if (taken(out, r, (uint16_t)i))
                continue;
            if (best == SIZE_MAX || v[i] > v[best]) {
                best = i;
                ties = 1;
            } else if (v[i] == v[best] && sched_rand() % ++ties == 0) {
                best = i;
            }
        }
        out[r] = (uint16_t)best;
    }
    return k;
}

/* --- max-score-picker ------------------------------------------------------------------- */

static size_t max_score_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                             const double *totals, size_t n, uint16_t *out, size_t max)
{
    return top_k(totals, n, want(self, n, max), out);
}

const struct sched_plugin_type sched_max_score_picker = {
    .type = "max-score-picker",
    .kind = SCHED_PK_PICKER,
    .create = base_create,
    .destroy = free,
    .pick = max_score_pick,
};

/* --- random-picker ---------------------------------------------------------------------- */

static size_t random_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                          const double *totals, size_t n, uint16_t *out, size_t max)
{
    size_t k = want(self, n, max);
    /* Reservoir sampling, then a shuffle so the order is random too. */
    for (size_t i = 0; i < n; i++) {
        if (i < k) {
            out[i] = (uint16_t)i;
        } else {
            size_t j = (size_t)(sched_rand() % (i + 1));
            if (j < k)
                out[j] = (uint16_t)i;
        }
    }
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)(sched_rand() % i);
        uint16_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
    return k;
}

const struct sched_plugin_type sched_random_picker = {
    .type = "random-picker",
    .kind = SCHED_PK_PICKER,
    .create = base_create,
    .destroy = free,
    .pick = random_pick,
};

/* --- weighted-random-picker (A-Res: key = U^(1/w), largest keys win) -------------------- */

static size_t weighted_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                            const double *totals, size_t n, uint16_t *out, size_t max)
{
    double st_keys[64] = {0};
    double *keys = n <= 64 ? st_keys : xmalloc(n * sizeof *keys);
    bool any = false;
    for (size_t i = 0; i < n; i++)
        any |= totals[i] > 0;
    for (size_t i = 0; i < n; i++) {
        /* log(U)/w orders like U^(1/w) without underflow; all-zero weights: uniform. */
        double w = any ? totals[i] : 1.0;
        keys[i] = w > 0 ? log(sched_rand_unit()) / w : -INFINITY;
    }
    size_t k = top_k(keys, n, want(self, n, max), out);
    if (keys != st_keys)
        free(keys);
    return k;
}

const struct sched_plugin_type sched_weighted_random_picker = {
    .type = "weighted-random-picker",
    .kind = SCHED_PK_PICKER,
    .create = base_create,
    .destroy = free,
    .pick = weighted_pick,
};

/* --- round-robin-picker ----------------------------------------------------------------- */

struct round_robin {
    struct picker_base base;
    atomic_uint_fast64_t next;
};

static int rr_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"maxNumOfEndpoints", NULL};
    size_t m;
    if (!sched_param_check_keys(params, keys, err) || max_eps_param(params, &m, err) < 0)
        return -1;
    struct round_robin *st = xcalloc(1, sizeof *st);
    st->base.max_eps = m;
    atomic_init(&st->next, 0);
    *state = st;
    return 0;
}

static size_t rr_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                      const double *totals, size_t n, uint16_t *out, size_t max)
{
    struct round_robin *st = self->st;
    /* A dry run shows the next choice without consuming it. */
    uint64_t at = c->dry_run ? atomic_load(&st->next) : atomic_fetch_add(&st->next, 1);
    size_t k = want(self, n, max);
    for (size_t i = 0; i < k; i++)
        out[i] = (uint16_t)((at + i) % n);
    return k;
}

const struct sched_plugin_type sched_round_robin_picker = {
    .type = "round-robin-picker",
    .kind = SCHED_PK_PICKER,
    .create = rr_create,
    .destroy = free,
    .pick = rr_pick,
};

/* --- consistent-hash-picker -------------------------------------------------------------- */

struct ring_point {
    uint64_t h;
    uint32_t id;
};

struct chash {
    struct picker_base base;
    size_t vnodes;
    pthread_rwlock_t lock;
    uint64_t gen; /* datastore generation the ring was built for */
    struct ring_point *pts;
    size_t n_pts;
};

static int chash_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"maxNumOfEndpoints", "virtualNodes", NULL};
    size_t m;
    long long vn = 160;
    if (!sched_param_check_keys(params, keys, err) || max_eps_param(params, &m, err) < 0 ||
        sched_param_int(params, "virtualNodes", &vn, err) < 0)
        return -1;
    if (vn < 1 || vn > 4096) {
        sched_perr_set(err, "virtualNodes", "must be between 1 and 4096");
        return -1;
    }
    struct chash *st = xcalloc(1, sizeof *st);
    st->base.max_eps = m;
    st->vnodes = (size_t)vn;
    pthread_rwlock_init(&st->lock, NULL);
    *state = st;
    return 0;
}

static void chash_destroy(void *state)
{
    struct chash *st = state;
    pthread_rwlock_destroy(&st->lock);
    free(st->pts);
    free(st);
}

static int point_cmp(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Points depend only on endpoint names (xxh64 of the name, seeded by the vnode number),
 * so every router process builds the same ring. */
static void chash_rebuild(struct chash *st, struct sched_datastore *ds, uint64_t gen)
{
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(ds, &eps);
    free(st->pts);
    st->n_pts = n * st->vnodes;
    st->pts = xmalloc((st->n_pts ? st->n_pts : 1) * sizeof *st->pts);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(eps[i]->name);
        for (size_t v = 0; v < st->vnodes; v++) {
            st->pts[i * st->vnodes + v].h = hash_xxh64(eps[i]->name, len, v);
            st->pts[i * st->vnodes + v].id = eps[i]->id;
        }
    }
    qsort(st->pts, st->n_pts, sizeof *st->pts, point_cmp);
    st->gen = gen;
    sched_ds_release_list(eps, n);
}

static const char *const chash_headers[] = {"x-session-id",     "x-user-id",    "x-tenant-id",
                                            "x-correlation-id", "x-request-id", "x-trace-id"};

static uint64_t chash_key(const struct sched_request *r)
{
    for (size_t i = 0; r->headers && i < sizeof chash_headers / sizeof *chash_headers; i++) {
        const char *v = http_headers_get(r->headers, chash_headers[i]);
        if (v && v[0])
            return hash_str(v, 0);
    }
    const char *const fields[] = {r->user, r->session_id};
    for (size_t i = 0; i < 2; i++)
        if (fields[i] && fields[i][0])
            return hash_str(fields[i], 0);
    return hash_xxh64(r->prompt ? r->prompt : "", r->prompt ? r->prompt_len : 0, 0);
}

static size_t chash_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                         const double *totals, size_t n, uint16_t *out, size_t max)
{
    struct chash *st = self->st;
    size_t k = want(self, n, max);
    uint64_t gen = sched_ds_generation(c->s->ds);
    pthread_rwlock_rdlock(&st->lock);
    if (st->gen != gen) {
        pthread_rwlock_unlock(&st->lock);
        pthread_rwlock_wrlock(&st->lock);
        if (st->gen != gen)
            chash_rebuild(st, c->s->ds, gen);
        pthread_rwlock_unlock(&st->lock);
        pthread_rwlock_rdlock(&st->lock);
    }
    uint64_t key = chash_key(c->req);
    size_t lo = 0, hi = st->n_pts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->pts[mid].h < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Walk clockwise; points of non-candidates (unhealthy, filtered out) are skipped,
     * which is "next on the ring" for a missing owner. */
    size_t got = 0;
    for (size_t step = 0; step < st->n_pts && got < k; step++) {
        uint32_t id = st->pts[(lo + step) % st->n_pts].id;
        for (size_t i = 0; i < n; i++) {
            if (c->eps[in[i]]->id == id) {
                if (!taken(out, got, (uint16_t)i))
                    out[got++] = (uint16_t)i;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&st->lock);
    /* Endpoints added since the ring was built (race) still get a pick. */
    for (size_t i = 0; got < k && i < n; i++)
        if (!taken(out, got, (uint16_t)i))
            out[got++] = (uint16_t)i;
    return got;
}

const struct sched_plugin_type sched_consistent_hash_picker = {
    .type = "consistent-hash-picker",
    .kind = SCHED_PK_PICKER,
    .create = chash_create,
    .destroy = chash_destroy,
    .pick = chash_pick,
};

/* --- rendezvous-hash-picker ------------------------------------------------------------ */

/* vllm-router's rendezvous_hash (highest random weight): every candidate is scored with a
 * hash of the request's key (the same key as consistent-hash-picker: session headers, then
 * the body's user / session_id, then the prompt) and its name; the highest wins. Fallback
 * picks follow in score order. Removing an endpoint moves only the keys it owned. */
static size_t hrw_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                       const double *totals, size_t n, uint16_t *out, size_t max)
{
    size_t k = want(self, n, max);
    uint64_t key = chash_key(c->req);
    double *score = xmalloc((n ? n : 1) * sizeof *score);
    for (size_t i = 0; i < n; i++) {
        const char *name = c->eps[in[i]]->name;
        /* The top 53 bits as a double: exact, and ordered like the integers. */
        score[i] = (double)(hash_xxh64(name, strlen(name), key) >> 11);
    }
    size_t got = top_k(score, n, k, out);
    free(score);
    return got;
}

const struct sched_plugin_type sched_rendezvous_hash_picker = {
    .type = "rendezvous-hash-picker",
    .kind = SCHED_PK_PICKER,
    .create = base_create,
    .destroy = free,
    .pick = hrw_pick,
};

/* --- power-of-two-picker ------------------------------------------------------------------ */

static double load_of(const struct sched_endpoint_metrics *m)
{
    return (double)m->inflight_requests + m->waiting;
}

static size_t p2_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                      const double *totals, size_t n, uint16_t *out, size_t max)
{
    size_t k = want(self, n, max);
    if (n == 1) {
        out[0] = 0;
        return 1;
    }
    size_t a = (size_t)(sched_rand() % n);
    size_t b = (size_t)(sched_rand() % (n - 1));
    if (b >= a)
        b++;
    if (load_of(&c->m[in[b]]) < load_of(&c->m[in[a]])) {
        size_t t = a;
        a = b;
        b = t;
    }
    out[0] = (uint16_t)a;
    size_t got = 1;
    if (got < k)
        out[got++] = (uint16_t)b;
    for (size_t i = 0; got < k && i < n; i++)
        if (!taken(out, got, (uint16_t)i))
            out[got++] = (uint16_t)i;
    return got;
}

const struct sched_plugin_type sched_power_of_two_picker = {
    .type = "power-of-two-picker",
    .kind = SCHED_PK_PICKER,
    .create = base_create,
    .destroy = free,
    .pick = p2_pick,
};

/* --- cache-aware-picker -------------------------------------------------------------------- */

/* vllm-router's cache-aware policy keeps a character radix tree per model. The same
 * decision (longest prompt prefix each worker has seen, per model) is answered here by
 * the approximate prefix index at CA_BLOCK characters: matched length is known to within
 * one block, which is all the cache_threshold comparison needs. */
#define CA_BLOCK 16
#define CA_MAX_BLOCKS 1024

struct cache_aware {
    struct picker_base base;
    double threshold, abs_thr, rel_thr;
    struct prefix_index *ix;
};

static int ca_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"maxNumOfEndpoints",   "cacheThreshold",
                                       "balanceAbsThreshold", "balanceRelThreshold",
                                       "maxTreeSize",         NULL};
    size_t m;
    double thr = 0.3, abs_thr = 64, rel_thr = 1.5;
    long long tree = 1 << 16;
    if (!sched_param_check_keys(params, keys, err) || max_eps_param(params, &m, err) < 0 ||
        sched_param_num(params, "cacheThreshold", &thr, err) < 0 ||
        sched_param_num(params, "balanceAbsThreshold", &abs_thr, err) < 0 ||
        sched_param_num(params, "balanceRelThreshold", &rel_thr, err) < 0 ||
        sched_param_int(params, "maxTreeSize", &tree, err) < 0)
        return -1;
    if (!(thr >= 0 && thr <= 1)) {
        sched_perr_set(err, "cacheThreshold", "must be between 0 and 1");
        return -1;
    }
    if (!(abs_thr >= 0) || !(rel_thr >= 1)) {
        sched_perr_set(err, !(abs_thr >= 0) ? "balanceAbsThreshold" : "balanceRelThreshold",
                       "must be >= 0 (abs) / >= 1 (rel)");
        return -1;
    }
    if (tree < 1 || tree > (1 << 24)) {
        sched_perr_set(err, "maxTreeSize", "must be between 1 and 16777216");
        return -1;
    }
    struct cache_aware *st = xcalloc(1, sizeof *st);
    st->base.max_eps = m;
    st->threshold = thr;
    st->abs_thr = abs_thr;
    st->rel_thr = rel_thr;
    st->ix = prefix_index_new((size_t)tree);
    *state = st;
    return 0;
}

static void ca_destroy(void *state)
{
    struct cache_aware *st = state;
    prefix_index_free(st->ix);
    free(st);
}

static size_t least_loaded(struct sched_cycle *c, const uint16_t *in, size_t n, uint16_t *out,
                           size_t k)
{
    double st_l[64] = {0};
    double *neg = n <= 64 ? st_l : xmalloc(n * sizeof *neg);
    for (size_t i = 0; i < n; i++)
        neg[i] = -load_of(&c->m[in[i]]);
    top_k(neg, n, k, out);
    if (neg != st_l)
        free(neg);
    return k;
}

static size_t ca_pick(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                      const double *totals, size_t n, uint16_t *out, size_t max)
{
    struct cache_aware *st = self->st;
    size_t k = want(self, n, max);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, load_of(&c->m[in[i]]));
        hi = fmax(hi, load_of(&c->m[in[i]]));
    }
    if (hi - lo > st->abs_thr && hi > st->rel_thr * lo)
        return least_loaded(c, in, n, out, k);
    const struct sched_request *r = c->req;
    uint64_t h[CA_MAX_BLOCKS];
    size_t nh = r->prompt ? sched_prefix_hashes(r->model, r->prompt, r->prompt_len, CA_BLOCK, h,
                                                CA_MAX_BLOCKS)
                          : 0;
    size_t best = SIZE_MAX, best_m = 0;
    for (size_t i = 0; nh && i < n; i++) {
        size_t m = prefix_index_match(st->ix, c->eps[in[i]]->id, h, nh);
        if (m > best_m) {
            best_m = m;
            best = i;
        }
    }
    double rate = r->prompt_len ? (double)(best_m * CA_BLOCK) / (double)r->prompt_len : 0;
    if (best == SIZE_MAX || !(rate > st->threshold))
        return least_loaded(c, in, n, out, k);
    out[0] = (uint16_t)best;
    if (k > 1) {
        uint16_t rest[SCHED_MAX_PICKS];
        size_t got = 1;
        least_loaded(c, in, n, rest, k);
        for (size_t i = 0; i < k && got < k; i++)
            if (rest[i] != best)
                out[got++] = rest[i];
    }
    return k;
}

static void ca_post_pick(struct sched_plugin *self, struct sched_cycle *c,
                         const struct sched_result *res)
{
    struct cache_aware *st = self->st;
    const struct sched_request *r = c->req;
    if (!r->prompt || !res->n_picks)
        return;
    uint64_t h[CA_MAX_BLOCKS];
    size_t nh = sched_prefix_hashes(r->model, r->prompt, r->prompt_len, CA_BLOCK, h, CA_MAX_BLOCKS);
    prefix_index_insert(st->ix, res->picks[0], h, nh);
}

struct prefix_index *sched_cache_aware_index(const struct sched_plugin *p)
{
    return p->t->post_pick == ca_post_pick ? ((struct cache_aware *)p->st)->ix : NULL;
}

const struct sched_plugin_type sched_cache_aware_picker = {
    .type = "cache-aware-picker",
    .kind = SCHED_PK_PICKER,
    .create = ca_create,
    .destroy = ca_destroy,
    .pick = ca_pick,
    .post_pick = ca_post_pick,
};

/* The spec's short name for the same plugin. */
const struct sched_plugin_type sched_cache_aware_picker_alias = {
    .type = "cache-aware",
    .kind = SCHED_PK_PICKER,
    .create = ca_create,
    .destroy = ca_destroy,
    .pick = ca_pick,
    .post_pick = ca_post_pick,
};

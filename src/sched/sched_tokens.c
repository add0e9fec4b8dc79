/* token-producer (llm-d): the prompt's token ids from the model server itself, so token
 * counts are the engine's, not an estimate. tandem asks the engine's vLLM `/tokenize`
 * endpoint at `vllm.http` (a completions prompt as `prompt`, a chat as `messages` with
 * add_generation_prompt) before scheduling; the router makes that call
 * (sched_tokenize_needed, then sched_tokens_put) and the scheduler uses the cached ids of
 * a prompt for its prompt_tokens. The cache is direct-mapped, 4096 prompts, keyed by
 * xxh64(modelName, prompt text); a slot is replaced by the next prompt that maps to it.
 * `tokenizer`, llm-d's deprecated name of the type, is the same plugin (one WARN at load).
 *
 * Ownership: an instance owns its configuration strings and the cache (ids arrays). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/log.h"
#include "net/url.h"
#include "sched/sched_internal.h"

#define TP_CACHE 4096           /* prompts */
#define TP_MAX_IDS (1u << 17)   /* ids kept per prompt; longer ones keep their count only */

struct tp_entry {
    uint64_t key; /* 0 = empty */
    uint32_t n;
    uint32_t *ids; /* NULL when n > TP_MAX_IDS */
};

struct token_producer {
    char *model;
    struct url url;
    uint64_t timeout_ms, mm_timeout_ms;
    pthread_mutex_t mu;
    struct tp_entry *cache; /* TP_CACHE */
    _Atomic uint64_t hits, misses;
};

/* "5s", "500ms", "1m" (the Go durations llm-d takes) in milliseconds; false if malformed. */
static bool duration_ms(const char *s, uint64_t *ms)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0))
        return false;
    double scale = !strcmp(end, "ms") ? 1 : !strcmp(end, "s") ? 1e3 : !strcmp(end, "m") ? 60e3
                 : !strcmp(end, "h") ? 3600e3 : -1;
    if (scale < 0 || v * scale < 1 || v * scale > 3600e3)
        return false;
    *ms = (uint64_t)(v * scale);
    return true;
}

static void tp_destroy(void *state)
{
    struct token_producer *st = state;
    if (!st)
        return;
    for (size_t i = 0; i < TP_CACHE; i++)
        free(st->cache[i].ids);
    free(st->cache);
    pthread_mutex_destroy(&st->mu);
    free(st->model);
    free(st);
}

static int tp_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"modelName", "vllm", "udsTokenizerConfig", NULL};
    static const char *const vkeys[] = {"http", "timeout", "mmTimeout", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *model = NULL;
    if (sched_param_str(params, "modelName", &model, err) < 0)
        return -1;
    if (!model || !model[0]) {
        sched_perr_set(err, "modelName", "must be specified");
        return -1;
    }
    const json_t *uds = params ? json_object_get(params, "udsTokenizerConfig") : NULL;
    if (uds && !json_is_null(uds) && !json_is_object(uds)) {
        sched_perr_set(err, "udsTokenizerConfig", "must be a mapping");
        return -1;
    }
    const json_t *v = params ? json_object_get(params, "vllm") : NULL;
    const char *http = "http://localhost:8000", *timeout = "5s", *mm_timeout = "30s";
    if (v && !json_is_null(v)) {
        struct sched_perr sub = {{0}, {0}};
        if (!json_is_object(v)) {
            sched_perr_set(err, "vllm", "must be a mapping with http, timeout, mmTimeout");
            return -1;
        }
        if (!sched_param_check_keys(v, vkeys, &sub) ||
            sched_param_str(v, "http", &http, &sub) < 0 ||
            sched_param_str(v, "timeout", &timeout, &sub) < 0 ||
            sched_param_str(v, "mmTimeout", &mm_timeout, &sub) < 0) {
            snprintf(err->field, sizeof err->field, "vllm.%.90s", sub.field);
            snprintf(err->why, sizeof err->why, "%s", sub.why);
            return -1;
        }
    }
    struct token_producer *st = xcalloc(1, sizeof *st);
    const char *why = NULL;
    if (!url_parse(http, 80, &st->url, &why) || st->url.tls) {
        free(st);
        sched_perr_set(err, "vllm.http", "'%s': %s", http,
                       why ? why : "https is not supported: give the engine's http URL");
        return -1;
    }
    if (!duration_ms(timeout, &st->timeout_ms)) {
        free(st);
        sched_perr_set(err, "vllm.timeout", "must be a duration such as 5s, got '%s'", timeout);
        return -1;
    }
    if (!duration_ms(mm_timeout, &st->mm_timeout_ms)) {
        free(st);
        sched_perr_set(err, "vllm.mmTimeout", "must be a duration such as 30s, got '%s'",
                       mm_timeout);
        return -1;
    }
    /* the base URL's path prefixes /tokenize ("/" alone adds nothing) */
    size_t pl = strlen(st->url.path);
    while (pl > 0 && st->url.path[pl - 1] == '/')
        st->url.path[--pl] = 0;
    if (uds && !json_is_null(uds))
        LOG_W("sched",
              "token-producer: udsTokenizerConfig not applied: tandem does not speak "
              "llm-d-kv-cache's UDS tokenizer protocol; it tokenizes through the engine's "
              "/tokenize at vllm.http (%s) instead, and falls back to its own estimate when "
              "that fails",
              http);
    st->model = xstrdup(model);
    pthread_mutex_init(&st->mu, NULL);
    st->cache = xcalloc(TP_CACHE, sizeof *st->cache);
    *state = st;
    return 0;
}

const struct sched_plugin_type sched_token_producer = {
    .type = "token-producer",
    .kind = SCHED_PK_PRODUCER,
    .create = tp_create,
    .destroy = tp_destroy,
};

/* tokenizer: llm-d's deprecated name of token-producer (same parameters, same plugin);
 * llm-d logs the deprecation at load, so does tandem. */
static int tokenizer_create(const json_t *params, void **state, struct sched_perr *err)
{
    if (tp_create(params, state, err) < 0)
        return -1;
    LOG_W("sched", "tokenizer: deprecated, use 'token-producer' (same parameters, same "
                   "plugin)");
    return 0;
}

const struct sched_plugin_type sched_tokenizer_legacy = {
    .type = "tokenizer",
    .kind = SCHED_PK_PRODUCER,
    .create = tokenizer_create,
    .destroy = tp_destroy,
};

static struct token_producer *producer(const struct sched *s)
{
    for (size_t i = 0; s && i < s->n_plugins; i++)
        if (s->plugins[i]->t == &sched_token_producer ||
            s->plugins[i]->t == &sched_tokenizer_legacy)
            return s->plugins[i]->st;
    return NULL;
}

static uint64_t tp_key(const struct token_producer *st, const struct sched_request *req)
{
    uint64_t k = hash_xxh64(req->prompt, req->prompt_len, hash_str(st->model, 0x746f6b));
    return k ? k : 1;
}

/* Cached token count of req's prompt, or -1. */
static long long tp_lookup(struct token_producer *st, const struct sched_request *req)
{
    uint64_t k = tp_key(st, req);
    long long n = -1;
    pthread_mutex_lock(&st->mu);
    struct tp_entry *e = &st->cache[k & (TP_CACHE - 1)];
    if (e->key == k)
        n = e->n;
    pthread_mutex_unlock(&st->mu);
    return n;
}

int sched_tokenize_needed(const struct sched *s, const struct sched_request *req,
                          struct sched_tokenize *out)
{
    struct token_producer *st = producer(s);
    if (!st || !req->prompt)
        return SCHED_TOK_NONE;
    if (tp_lookup(st, req) >= 0) {
        st->hits++;
        return SCHED_TOK_CACHED;
    }
    st->misses++;
    *out = (struct sched_tokenize){st->url.host, st->url.port, st->url.path, st->model,
                                   st->timeout_ms, st->mm_timeout_ms};
    return SCHED_TOK_NEEDED;
}

void sched_tokens_put(const struct sched *s, const struct sched_request *req,
                      const uint32_t *ids, size_t n)
{
    struct token_producer *st = producer(s);
    if (!st || !req->prompt || n > UINT32_MAX)
        return;
    uint64_t k = tp_key(st, req);
    uint32_t *copy = NULL;
    if (n <= TP_MAX_IDS && n) {
        copy = xmalloc(n * sizeof *copy);
        memcpy(copy, ids, n * sizeof *copy);
    }
    pthread_mutex_lock(&st->mu);
    struct tp_entry *e = &st->cache[k & (TP_CACHE - 1)];
    free(e->ids);
    *e = (struct tp_entry){k, (uint32_t)n, copy};
    pthread_mutex_unlock(&st->mu);
}

bool sched_has_token_producer(const struct sched *s)
{
    return producer(s) != NULL;
}

void sched_tokens_stats(const struct sched *s, uint64_t *hits, uint64_t *misses)
{
    struct token_producer *st = producer(s);
    *hits = st ? st->hits : 0;
    *misses = st ? st->misses : 0;
}

uint32_t sched_tokens_count(const struct sched *s, const struct sched_request *req)
{
    struct token_producer *st = producer(s);
    long long n = st && req->prompt ? tp_lookup(st, req) : -1;
    return n > 0 ? (uint32_t)n : 0;
}

size_t sched_tokens_ids(const struct sched *s, const struct sched_request *req, uint32_t **ids)
{
    struct token_producer *st = producer(s);
    *ids = NULL;
    if (!st || !req->prompt)
        return 0;
    uint64_t k = tp_key(st, req);
    size_t n = 0;
    pthread_mutex_lock(&st->mu);
    struct tp_entry *e = &st->cache[k & (TP_CACHE - 1)];
    if (e->key == k && e->ids && e->n) {
        n = e->n;
        *ids = xmalloc(n * sizeof **ids);
        memcpy(*ids, e->ids, n * sizeof **ids);
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

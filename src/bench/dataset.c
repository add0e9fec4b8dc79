/* tandem bench workloads: random, shared-prefix, prefix_repetition, sharegpt.
 *
 * Synthetic text is built from tandem's generation vocabulary (" word" strings: a
 * space followed by letters). Such a word always tokenizes on its own, whatever comes
 * before it (the previous letter run ends at the space, and a space joins the letter
 * run after it), so the token count of a concatenation is the sum of its words' counts.
 * That makes "exactly N tokens" cheap: sum per-word counts computed once, and fill the
 * last gap with single-token words. It also makes segments concatenate safely:
 * tokens(system) + tokens(question) == tokens(system + question).
 *
 * Determinism: every piece of text comes from its own PRNG stream (splitmix64 seeded
 * from opts->seed, a per-purpose salt and the piece's index), so the same opts give the
 * same bytes, and a subset (e.g. --num-prompts) is a subset of the full workload.
 *
 * Behaviour choices (vllm bench serve / SGLang):
 *   random             input length uniform over [floor(in*(1-r)), ceil(in*(1+r))] (at
 *                      least 1), output likewise; random_prefix_len tokens shared by
 *                      all prompts come on top of the sampled input length.
 *   shared-prefix      groups x prompts_per_group prompts (system prompt + question),
 *                      always shuffled; num_prompts > 0 takes the first num_prompts.
 *   prefix_repetition  prompt i uses prefix i % num_prefixes, then shuffled.
 *   sharegpt           first human turn -> prompt, the next assistant turn's token
 *                      count -> output; vLLM's filters; shuffled; first num_prompts.
 *   num_prompts 0 means "all" for shared-prefix and sharegpt; random and
 *   prefix_repetition need it > 0. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/json.h"
#include "bench/bench.h"
#include "tokenize/tokenize.h"

#define DS_MAX_LEN 1000000LL      /* tokens in one length flag */
#define DS_MAX_PROMPTS 10000000LL /* prompts in one workload */
#define SGPT_MIN_LEN 4            /* vLLM's is_valid_sequence defaults */
#define SGPT_MAX_PROMPT 1024
#define SGPT_MAX_TOTAL 2048

/* Salts: one PRNG stream per purpose. */
enum {
    SALT_RANDOM_PREFIX = 1,
    SALT_RANDOM_LEN,
    SALT_RANDOM_TEXT,
    SALT_GSP_SYSTEM,
    SALT_GSP_QUESTION,
    SALT_GSP_SHUFFLE,
    SALT_PREP_PREFIX,
    SALT_PREP_SUFFIX,
    SALT_PREP_SHUFFLE,
    SALT_SGPT_SHUFFLE,
};

/* ---- errors ------------------------------------------------------------------------- */

static bool fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---- PRNG (splitmix64) -------------------------------------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static struct rng rng_make(long long seed, uint64_t salt, uint64_t index)
{
    uint64_t s = mix64((uint64_t)seed + 0x9E3779B97F4A7C15ULL);
    s = mix64(s ^ (salt * 0xD1B54A32D192ED03ULL));
    s = mix64(s ^ (index * 0xAEF17502108EF2D9ULL + 0x2545F4914F6CDD1DULL));
    return (struct rng){s};
}

static uint64_t rng_next(struct rng *r)
{
    r->s += 0x9E3779B97F4A7C15ULL;
    return mix64(r->s);
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is negligible here). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform integer in [lo, hi]. */
static long long rng_range(struct rng *r, long long lo, long long hi)
{
    return lo + (long long)rng_below(r, (uint64_t)(hi - lo) + 1);
}

static void shuffle_idx(size_t *a, size_t n, struct rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- text of exactly N tokens ------------------------------------------------------- */

struct word {
    const char *s;
    uint32_t len, tokens;
};

static struct {
    struct word *all; /* usable vocabulary words */
    size_t n_all;
    struct word *one; /* the single-token ones, for the last gap */
    size_t n_one;
} g_words;
static pthread_once_t g_words_once = PTHREAD_ONCE_INIT;

static bool is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static void words_init(void)
{
    size_t n = tok_vocab_size();
    g_words.all = xcalloc(n + 1, sizeof *g_words.all);
    g_words.one = xcalloc(n + 1, sizeof *g_words.one);
    for (size_t i = 0; i < n; i++) {
        const char *w = tok_vocab_word(i);
        size_t len = w ? strlen(w) : 0;
        /* Only " letters" words: those are what makes token counts additive. */
        bool ok = len >= 2 && w[0] == ' ';
        for (size_t k = 1; ok && k < len; k++)
            ok = is_letter((unsigned char)w[k]);
        if (!ok)
            continue;
        struct word wd = {w, (uint32_t)len, (uint32_t)tok_count(w, len)};
        g_words.all[g_words.n_all++] = wd;
        if (wd.tokens == 1)
            g_words.one[g_words.n_one++] = wd;
    }
    if (g_words.n_one == 0) /* " a" is one piece of two bytes: one token */
        g_words.one[g_words.n_one++] = (struct word){" a", 2, 1};
    if (g_words.n_all == 0)
        g_words.all[g_words.n_all++] = g_words.one[0];
}

/* Appends text of exactly n tokens (each word " letters", so counts add up). */
static void gen_text(struct buf *b, long long n, struct rng *r)
{
    pthread_once(&g_words_once, words_init);
    buf_reserve(b, (size_t)n * 4 + 8);
    while (n > 0) {
        const struct word *w = &g_words.all[rng_below(r, g_words.n_all)];
        if (w->tokens > n)
            w = &g_words.one[rng_below(r, g_words.n_one)];
        buf_append(b, w->s, w->len);
        n -= w->tokens;
    }
}

static char *gen_text_dup(long long n, struct rng *r, size_t *len_out)
{
    struct buf b = BUF_INIT;
    gen_text(&b, n, r);
    buf_append(&b, "", 0); /* data non-NULL even for n == 0 */
    return buf_steal(&b, len_out);
}

/* ---- validation --------------------------------------------------------------------- */

/* Checks lo <= v <= DS_MAX_LEN (lo is 0 or 1), naming the flag. */
static bool check_len(long long v, long long lo, const char *flag, char *err, size_t errlen)
{
    if (v < lo)
        return fail(err, errlen, "%s must be %s", flag, lo > 0 ? "> 0" : ">= 0");
    if (v > DS_MAX_LEN)
        return fail(err, errlen, "%s must be <= %lld", flag, DS_MAX_LEN);
    return true;
}

static bool check_count(long long v, long long lo, const char *flag, char *err, size_t errlen)
{
    if (v < lo)
        return fail(err, errlen, "%s must be %s", flag, lo > 0 ? "> 0" : ">= 0");
    if (v > DS_MAX_PROMPTS)
        return fail(err, errlen, "%s must be <= %lld", flag, DS_MAX_PROMPTS);
    return true;
}

static void set_prompt(struct bench_prompt *p, char *text, size_t len, long long out_tokens,
                       uint32_t group)
{
    p->text = text;
    p->text_len = len;
    size_t in = tok_count(text, len);
    p->input_tokens = in > UINT32_MAX ? UINT32_MAX : (uint32_t)in;
    p->output_tokens = (uint32_t)out_tokens;
    p->group = group;
}

/* ---- random ------------------------------------------------------------------------- */

static bool load_random(const struct bench_dataset_opts *o, struct bench_dataset *out, char *err,
                        size_t errlen)
{
    if (!check_count(o->num_prompts, 1, "--num-prompts", err, errlen) ||
        !check_len(o->random_input_len, 1, "--random-input-len", err, errlen) ||
        !check_len(o->random_output_len, 1, "--random-output-len", err, errlen) ||
        !check_len(o->random_prefix_len, 0, "--random-prefix-len", err, errlen))
        return false;
    double r = o->random_range_ratio;
    if (!(r >= 0.0 && r < 1.0))
        return fail(err, errlen, "--random-range-ratio must be in [0, 1), got %g", r);

    /* vLLM: low = floor(len * (1 - r)), high = ceil(len * (1 + r)); at least 1. */
    long long in_lo = (long long)floor((double)o->random_input_len * (1.0 - r));
    long long in_hi = (long long)ceil((double)o->random_input_len * (1.0 + r));
    long long out_lo = (long long)floor((double)o->random_output_len * (1.0 - r));
    long long out_hi = (long long)ceil((double)o->random_output_len * (1.0 + r));
    if (in_lo < 1)
        in_lo = 1;
    if (out_lo < 1)
        out_lo = 1;
    if (in_hi < in_lo)
        in_hi = in_lo;
    if (out_hi < out_lo)
        out_hi = out_lo;

    size_t n = (size_t)o->num_prompts;
    struct rng pr = rng_make(o->seed, SALT_RANDOM_PREFIX, 0);
    size_t prefix_len;
    char *prefix = gen_text_dup(o->random_prefix_len, &pr, &prefix_len);

    out->prompts = xcalloc(n, sizeof *out->prompts);
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        struct rng lr = rng_make(o->seed, SALT_RANDOM_LEN, i);
        long long in_len = rng_range(&lr, in_lo, in_hi);
        long long out_len = rng_range(&lr, out_lo, out_hi);
        struct rng tr = rng_make(o->seed, SALT_RANDOM_TEXT, i);
        struct buf b = BUF_INIT;
        buf_reserve(&b, prefix_len + (size_t)in_len * 4 + 8);
        buf_append(&b, prefix, prefix_len);
        gen_text(&b, in_len, &tr);
        size_t len;
        char *text = buf_steal(&b, &len);
        set_prompt(&out->prompts[i], text, len, out_len, 0);
    }
    free(prefix);
    return true;
}

/* ---- shared-prefix (SGLang generated-shared-prefix) --------------------------------- */

static bool load_shared_prefix(const struct bench_dataset_opts *o, struct bench_dataset *out,
                               char *err, size_t errlen)
{
    if (!check_count(o->num_prompts, 0, "--num-prompts", err, errlen) ||
        !check_count(o->gsp_num_groups, 1, "--gsp-num-groups", err, errlen) ||
        !check_count(o->gsp_prompts_per_group, 1, "--gsp-prompts-per-group", err, errlen) ||
        !check_len(o->gsp_system_prompt_len, 1, "--gsp-system-prompt-len", err, errlen) ||
        !check_len(o->gsp_question_len, 1, "--gsp-question-len", err, errlen) ||
        !check_len(o->gsp_output_len, 1, "--gsp-output-len", err, errlen))
        return false;
    long long total = o->gsp_num_groups * o->gsp_prompts_per_group;
    if (total > DS_MAX_PROMPTS)
        return fail(err, errlen, "--gsp-num-groups x --gsp-prompts-per-group must be <= %lld",
                    DS_MAX_PROMPTS);

    size_t n_all = (size_t)total, per = (size_t)o->gsp_prompts_per_group;
    size_t *order = xmalloc(n_all * sizeof *order);
    for (size_t i = 0; i < n_all; i++)
        order[i] = i;
    struct rng sr = rng_make(o->seed, SALT_GSP_SHUFFLE, 0);
    shuffle_idx(order, n_all, &sr);
    size_t n = n_all;
    if (o->num_prompts > 0 && (size_t)o->num_prompts < n)
        n = (size_t)o->num_prompts;

    /* System prompts are built once per group, only for the groups used. */
    size_t n_groups = (size_t)o->gsp_num_groups;
    char **sys = xcalloc(n_groups, sizeof *sys);
    size_t *sys_len = xcalloc(n_groups, sizeof *sys_len);

    out->prompts = xcalloc(n, sizeof *out->prompts);
    out->n = n;
    for (size_t k = 0; k < n; k++) {
        size_t idx = order[k], g = idx / per;
        if (!sys[g]) {
            struct rng gr = rng_make(o->seed, SALT_GSP_SYSTEM, g);
            sys[g] = gen_text_dup(o->gsp_system_prompt_len, &gr, &sys_len[g]);
        }
        struct rng qr = rng_make(o->seed, SALT_GSP_QUESTION, idx);
        struct buf b = BUF_INIT;
        buf_reserve(&b, sys_len[g] + (size_t)o->gsp_question_len * 4 + 8);
        buf_append(&b, sys[g], sys_len[g]);
        gen_text(&b, o->gsp_question_len, &qr);
        size_t len;
        char *text = buf_steal(&b, &len);
        set_prompt(&out->prompts[k], text, len, o->gsp_output_len, (uint32_t)g);
    }
    for (size_t g = 0; g < n_groups; g++)
        free(sys[g]);
    free(sys);
    free(sys_len);
    free(order);
    return true;
}

/* ---- prefix_repetition (vLLM) ------------------------------------------------------- */

static bool load_prefix_repetition(const struct bench_dataset_opts *o, struct bench_dataset *out,
                                   char *err, size_t errlen)
{
    if (!check_count(o->num_prompts, 1, "--num-prompts", err, errlen) ||
        !check_len(o->prefix_repetition_prefix_len, 1, "--prefix-repetition-prefix-len", err,
                   errlen) ||
        !check_len(o->prefix_repetition_suffix_len, 1, "--prefix-repetition-suffix-len", err,
                   errlen) ||
        !check_count(o->prefix_repetition_num_prefixes, 1, "--prefix-repetition-num-prefixes", err,
                     errlen) ||
        !check_len(o->prefix_repetition_output_len, 1, "--prefix-repetition-output-len", err,
                   errlen))
        return false;

    size_t n = (size_t)o->num_prompts, k = (size_t)o->prefix_repetition_num_prefixes;
    if (k > n)
        k = n; /* prefixes beyond the prompt count would never be used */
    char **pre = xcalloc(k, sizeof *pre);
    size_t *pre_len = xcalloc(k, sizeof *pre_len);
    for (size_t p = 0; p < k; p++) {
        struct rng r = rng_make(o->seed, SALT_PREP_PREFIX, p);
        pre[p] = gen_text_dup(o->prefix_repetition_prefix_len, &r, &pre_len[p]);
    }
    size_t *order = xmalloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    struct rng sr = rng_make(o->seed, SALT_PREP_SHUFFLE, 0);
    shuffle_idx(order, n, &sr);

    out->prompts = xcalloc(n, sizeof *out->prompts);
    out->n = n;
    for (size_t j = 0; j < n; j++) {
        size_t i = order[j], p = i % k;
        struct rng r = rng_make(o->seed, SALT_PREP_SUFFIX, i);
        struct buf b = BUF_INIT;
        buf_reserve(&b, pre_len[p] + (size_t)o->prefix_repetition_suffix_len * 4 + 8);
        buf_append(&b, pre[p], pre_len[p]);
        gen_text(&b, o->prefix_repetition_suffix_len, &r);
        size_t len;
        char *text = buf_steal(&b, &len);
        set_prompt(&out->prompts[j], text, len, o->prefix_repetition_output_len, (uint32_t)p);
    }
    for (size_t p = 0; p < k; p++)
        free(pre[p]);
    free(pre);
    free(pre_len);
    free(order);
    return true;
}

/* ---- sharegpt ----------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len_out, char *err, size_t errlen)
{
    struct buf b = BUF_INIT;
    int e = buf_read_file(&b, path);
    if (e) {
        fail(err, errlen, "%s %s: %s", e == ENOENT || e == EACCES ? "cannot open" : "cannot read",
             path, strerror(e));
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, len_out);
}

enum turn_role { ROLE_OTHER, ROLE_HUMAN, ROLE_GPT };

static enum turn_role role_of(const char *s)
{
    if (!strcmp(s, "human") || !strcmp(s, "user"))
        return ROLE_HUMAN;
    if (!strcmp(s, "gpt") || !strcmp(s, "assistant") || !strcmp(s, "chatgpt") ||
        !strcmp(s, "bard") || !strcmp(s, "model"))
        return ROLE_GPT;
    return ROLE_OTHER;
}

/* Reads one turn's role and text ("from"/"value" or "role"/"content"). */
static bool parse_turn(const json_t *t, const char *path, size_t e, size_t k, enum turn_role *role,
                       const char **text, char *err, size_t errlen)
{
    if (!json_is_object(t))
        return fail(err, errlen, "%s: entry %zu: turn %zu must be an object", path, e, k);
    struct errinfo je;
    const char *who = NULL, *val = NULL;
    int rc = json_get_str(t, "from", &who, &je);
    if (rc == 0)
        rc = json_get_str(t, "role", &who, &je);
    if (rc < 0)
        return fail(err, errlen, "%s: entry %zu: turn %zu: %s", path, e, k, je.msg);
    if (rc == 0)
        return fail(err, errlen, "%s: entry %zu: turn %zu: missing 'from' (or 'role')", path, e, k);
    rc = json_get_str(t, "value", &val, &je);
    if (rc == 0)
        rc = json_get_str(t, "content", &val, &je);
    if (rc < 0)
        return fail(err, errlen, "%s: entry %zu: turn %zu: %s", path, e, k, je.msg);
    if (rc == 0)
        return fail(err, errlen, "%s: entry %zu: turn %zu: missing 'value' (or 'content')", path, e,
                    k);
    *role = role_of(who);
    *text = val;
    return true;
}

struct sgpt_cand {
    const char *prompt, *reply;
};

static bool load_sharegpt(const struct bench_dataset_opts *o, struct bench_dataset *out, char *err,
                          size_t errlen)
{
    if (!o->path || !*o->path)
        return fail(err, errlen, "--dataset-path is required for sharegpt");
    if (!check_count(o->num_prompts, 0, "--num-prompts", err, errlen) ||
        !check_len(o->sharegpt_output_len, 0, "--sharegpt-output-len", err, errlen))
        return false;
    const char *path = o->path;
    size_t flen;
    char *data = read_file(path, &flen, err, errlen);
    if (!data)
        return false;
    struct errinfo je = {.msg = {0}};
    json_t *root = json_parse(data, flen, &je);
    free(data);
    if (!root)
        return fail(err, errlen, "%s: %s", path, je.msg);
    bool ok = false;
    struct sgpt_cand *cand = NULL;
    size_t *order = NULL;
    if (!json_is_array(root)) {
        fail(err, errlen, "%s: top level must be a JSON array of conversations", path);
        goto done;
    }

    /* Pass 1: check every entry's shape (so errors never depend on --num-prompts or the
     * seed) and keep those with a human turn followed by an assistant turn. */
    size_t n_entries = json_array_size(root), n_cand = 0;
    cand = xcalloc(n_entries ? n_entries : 1, sizeof *cand);
    for (size_t e = 0; e < n_entries; e++) {
        const json_t *ent = json_array_get(root, e);
        if (!json_is_object(ent)) {
            fail(err, errlen, "%s: entry %zu must be an object", path, e);
            goto done;
        }
        json_t *conv = NULL;
        int rc = json_get_arr(ent, "conversations", &conv, &je);
        if (rc < 0) {
            fail(err, errlen, "%s: entry %zu: %s", path, e, je.msg);
            goto done;
        }
        if (rc == 0) {
            fail(err, errlen, "%s: entry %zu: missing 'conversations'", path, e);
            goto done;
        }
        size_t nt = json_array_size(conv);
        const char *prompt = NULL, *reply = NULL;
        bool seen_human = false, after_first_human = false;
        for (size_t k = 0; k < nt; k++) {
            enum turn_role role = ROLE_OTHER;
            const char *text = NULL;
            if (!parse_turn(json_array_get(conv, k), path, e, k, &role, &text, err, errlen))
                goto done;
            /* The first human turn is the prompt; the turn right after it must be the
             * assistant's reply, else the entry is skipped. */
            if (after_first_human && role == ROLE_GPT)
                reply = text;
            after_first_human = false;
            if (role == ROLE_HUMAN && !seen_human) {
                seen_human = true;
                after_first_human = true;
                prompt = text;
            }
        }
        if (!reply)
            prompt = NULL;
        if (nt >= 2 && prompt)
            cand[n_cand++] = (struct sgpt_cand){prompt, reply};
    }

    /* Pass 2: shuffle, then take prompts passing vLLM's filters until num_prompts. */
    order = xmalloc((n_cand ? n_cand : 1) * sizeof *order);
    for (size_t i = 0; i < n_cand; i++)
        order[i] = i;
    struct rng sr = rng_make(o->seed, SALT_SGPT_SHUFFLE, 0);
    shuffle_idx(order, n_cand, &sr);
    size_t want = o->num_prompts > 0 ? (size_t)o->num_prompts : n_cand;
    if (want > n_cand)
        want = n_cand;
    out->prompts = xcalloc(want ? want : 1, sizeof *out->prompts);
    out->n = 0;
    bool fixed = o->sharegpt_output_len > 0;
    for (size_t j = 0; j < n_cand && out->n < want; j++) {
        const struct sgpt_cand *c = &cand[order[j]];
        size_t plen = strlen(c->prompt);
        size_t in = tok_count(c->prompt, plen);
        size_t outn =
            fixed ? (size_t)o->sharegpt_output_len : tok_count(c->reply, strlen(c->reply));
        if (in < SGPT_MIN_LEN || (!fixed && outn < SGPT_MIN_LEN))
            continue;
        if (in > SGPT_MAX_PROMPT || in + outn > SGPT_MAX_TOTAL)
            continue;
        struct bench_prompt *p = &out->prompts[out->n++];
        p->text = xstrndup(c->prompt, plen);
        p->text_len = plen;
        p->input_tokens = (uint32_t)in;
        p->output_tokens = (uint32_t)outn;
        p->group = 0;
    }
    if (out->n == 0) {
        fail(err, errlen,
             "%s: no usable prompts (%zu entries, %zu with a human turn and a reply; vLLM's "
             "filters keep prompts of %d..%d tokens, replies >= %d, total <= %d)",
             path, n_entries, n_cand, SGPT_MIN_LEN, SGPT_MAX_PROMPT, SGPT_MIN_LEN, SGPT_MAX_TOTAL);
        goto done;
    }
    ok = true;
done:
    free(order);
    free(cand);
    json_decref(root);
    if (!ok)
        bench_dataset_free(out);
    return ok;
}

/* ---- public ------------------------------------------------------------------------- */

void bench_dataset_opts_defaults(struct bench_dataset_opts *o)
{
    memset(o, 0, sizeof *o);
    o->name = "random";
    o->path = NULL;
    o->num_prompts = 1000; /* vllm bench serve's default */
    o->seed = 0;
    o->random_input_len = 1024;
    o->random_output_len = 128;
    o->random_prefix_len = 0;
    o->random_range_ratio = 0.0;
    o->gsp_num_groups = 150;
    o->gsp_prompts_per_group = 5;
    o->gsp_system_prompt_len = 6000;
    o->gsp_question_len = 1200;
    o->gsp_output_len = 1000;
    o->prefix_repetition_prefix_len = 256;
    o->prefix_repetition_suffix_len = 256;
    o->prefix_repetition_num_prefixes = 10;
    o->prefix_repetition_output_len = 128;
    o->sharegpt_output_len = 0;
}

bool bench_dataset_load(const struct bench_dataset_opts *o, struct bench_dataset *out, char *err,
                        size_t errlen)
{
    out->prompts = NULL;
    out->n = 0;
    const char *name = o->name && *o->name ? o->name : "random";
    bool ok;
    if (!strcmp(name, "random"))
        ok = load_random(o, out, err, errlen);
    else if (!strcmp(name, "shared-prefix") || !strcmp(name, "generated-shared-prefix"))
        ok = load_shared_prefix(o, out, err, errlen);
    else if (!strcmp(name, "prefix_repetition") || !strcmp(name, "prefix-repetition"))
        ok = load_prefix_repetition(o, out, err, errlen);
    else if (!strcmp(name, "sharegpt"))
        ok = load_sharegpt(o, out, err, errlen);
    else
        return fail(err, errlen,
                    "unknown --dataset-name '%s' (valid: random, shared-prefix, sharegpt, "
                    "prefix_repetition)",
                    name);
    if (!ok)
        bench_dataset_free(out);
    return ok;
}

void bench_dataset_free(struct bench_dataset *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->prompts[i].text);
    free(d->prompts);
    d->prompts = NULL;
    d->n = 0;
}

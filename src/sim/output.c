/* What the sim says and how it is framed. Output is decided when a request arrives
 * (sampled from the pseudo language model of sim/lm.h, or the echoed prompt; cut at
 * max_tokens or end of text, clipped at stop strings), so the engine only has to count
 * tokens. Every logprob (output, echoed prompt, prompt_logprobs) is scored by the same
 * model from the ids before the position, so they agree across requests. Responses are
 * built by hand rather than through a JSON DOM: chunks are on the hot path of streaming
 * (one per token). Shapes follow vLLM's OpenAI server. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/json.h"
#include "sim/lm.h"
#include "sim/sim_internal.h"
#include "tokenize/tokenize.h"

static void output_push(struct sim_output *o, uint32_t *cap, uint32_t id, uint64_t h,
                        const char *text, size_t len)
{
    if (o->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        o->ids = xrealloc(o->ids, *cap * sizeof *o->ids);
        o->off = xrealloc(o->off, *cap * sizeof *o->off);
        o->len = xrealloc(o->len, *cap * sizeof *o->len);
        o->h = xrealloc(o->h, *cap * sizeof *o->h);
    }
    o->ids[o->n] = id;
    o->h[o->n] = h;
    o->off[o->n] = (uint32_t)o->text.len;
    o->len[o->n] = (uint32_t)len;
    buf_append(&o->text, text, len);
    o->n++;
}

/* The context hash after the prompt (sim/lm.h). */
static uint64_t prompt_hash(const struct sim_choice *c)
{
    uint64_t h = SIM_LM_H0;
    for (uint32_t i = 0; i < c->n_prompt; i++)
        h = sim_lm_next(h, c->prompt_ids[i]);
    return h;
}

/* Appends the tokens of text, at most `limit` in total; *h follows them. */
static void push_text(struct sim_output *o, uint32_t *cap, uint64_t *h, const char *text,
                      size_t len, uint32_t limit)
{
    struct tok_result t = {0};
    tok_encode(text, len, TOK_DEFAULT_VOCAB, &t);
    for (size_t i = 0; i < t.n && o->n < limit; i++) {
        output_push(o, cap, t.pieces[i].id, *h, text + t.pieces[i].offset, t.pieces[i].len);
        *h = sim_lm_next(*h, t.pieces[i].id);
    }
    tok_result_free(&t);
}

static void push_id(struct sim_output *o, uint32_t *cap, uint64_t *h, uint32_t id)
{
    char t[TOK_ID_TEXT_MAX];
    size_t n = tok_id_text(id, TOK_DEFAULT_VOCAB, t);
    output_push(o, cap, id, *h, t, n);
    *h = sim_lm_next(*h, id);
}

void sim_detokenize(const uint32_t *ids, size_t n, struct buf *out)
{
    char t[TOK_ID_TEXT_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t len = tok_id_text(ids[i], TOK_DEFAULT_VOCAB, t);
        buf_append(out, t, len);
    }
}

/* Finds the earliest stop string; clips text and tokens at it. */
static void apply_stop(const struct openai_request *q, struct sim_output *o)
{
    size_t best = SIZE_MAX;
    const char *which = NULL;
    for (size_t i = 0; i < q->n_stop; i++) {
        const char *hit = memmem(o->text.data ? o->text.data : "", o->text.len, q->stop[i],
                                 strlen(q->stop[i]));
        if (hit && (size_t)(hit - o->text.data) < best) {
            best = (size_t)(hit - o->text.data);
            which = q->stop[i];
        }
    }
    if (!which)
        return;
    size_t end = best + strlen(which); /* the stop string completes at byte end-1 */
    uint32_t keep = 0;
    while (keep < o->n && o->off[keep] < end)
        keep++;
    o->n = keep;
    o->final_len = q->include_stop_str_in_output ? end : best;
    o->finish = SIM_FINISH_STOP;
    o->stop_reason = which;
}

/* Random mode: samples from the pseudo language model. Temperature 0 always takes the
 * argmax; otherwise, between words, the rank-2 (70%) or rank-3 token with probability
 * min(0.3 * temperature, 0.6). End of text stops the sequence once min_tokens (and at
 * least one token) are out, unless ignore_eos; a masked end takes the best other token. */
static void sample_lm(const struct sim_config *cfg, const struct openai_request *q,
                      const struct sim_choice *c, uint32_t max_tokens, struct sim_output *o,
                      uint32_t *cap, bool *natural_stop)
{
    /* Same prompt + same seed = same answer, on every sim process; each of the n
     * choices of a prompt has its own stream. */
    uint64_t rng = cfg->seed ^ 0x5eedull;
    rng ^= hash_xxh64(c->prompt_ids, c->n_prompt * sizeof *c->prompt_ids, 0);
    if (q->has_seed)
        rng ^= hash_xxh64(&q->seed, sizeof q->seed, 1);
    if (c->sample)
        rng = sim_lm_mix(rng + c->sample * 0x9E3779B97F4A7C15ULL);
    double stray = q->temperature <= 0 ? 0 : q->temperature * 0.3;
    if (stray > 0.6)
        stray = 0.6;
    uint32_t min_out = q->min_tokens > 0 ? (uint32_t)q->min_tokens : 1;

    /* The grammar reads the last SIM_LM_WINDOW ids: the prompt's tail, then the output. */
    uint32_t wp = c->n_prompt < SIM_LM_WINDOW ? c->n_prompt : SIM_LM_WINDOW;
    uint32_t *ctx = xmalloc(((size_t)wp + max_tokens) * sizeof *ctx);
    memcpy(ctx, c->prompt_ids + (c->n_prompt - wp), wp * sizeof *ctx);
    uint64_t h = prompt_hash(c);
    struct sim_lm_dist d;
    for (uint32_t i = 0; i < max_tokens; i++) {
        sim_lm_dist(ctx, wp + i, h, 3, &d);
        uint32_t pick = 0;
        if (stray > 0 && !d.mid_word) {
            double u = (double)(hash_rand_next(&rng) >> 11) * 0x1p-53;
            if (u < stray)
                pick = hash_rand_below(&rng, 10) < 7 ? 1 : 2;
        }
        uint32_t id = d.ids[pick];
        if (id == TOK_EOS_ID) {
            if (!q->ignore_eos && i >= min_out) {
                *natural_stop = true;
                break;
            }
            id = d.ids[pick == 0 ? 1 : 0];
        }
        ctx[wp + i] = id;
        push_id(o, cap, &h, id);
    }
    free(ctx);
}

void sim_output_generate(const struct sim_config *cfg, const struct sim_req *r,
                         const struct sim_choice *c, uint32_t max_tokens, struct sim_output *o)
{
    const struct openai_request *q = &r->oreq;
    memset(o, 0, sizeof *o);
    uint32_t cap = 0;
    bool natural_stop = false;
    uint64_t h = prompt_hash(c);

    if (q->echo_only) {
        /* Echo without generation: the engine still runs one step (vLLM samples one
         * token and drops it); nothing of it is reported. */
        struct sim_lm_dist d;
        uint32_t wp = c->n_prompt < SIM_LM_WINDOW ? c->n_prompt : SIM_LM_WINDOW;
        sim_lm_dist(c->prompt_ids + (c->n_prompt - wp), wp, h, 2, &d);
        output_push(o, &cap, d.ids[0] == TOK_EOS_ID ? d.ids[1] : d.ids[0], h, "", 0);
        o->final_len = 0;
        o->finish = SIM_FINISH_LENGTH;
        return;
    }
    if (cfg->mode == SIM_MODE_ECHO) {
        if (q->api == OPENAI_CHAT) {
            push_text(o, &cap, &h, q->last_message, q->last_message_len, max_tokens);
        } else if (c->prompt_text) {
            push_text(o, &cap, &h, c->prompt_text, c->prompt_text_len, max_tokens);
        } else {
            for (uint32_t i = 0; i < c->n_prompt && o->n < max_tokens; i++)
                push_id(o, &cap, &h, c->prompt_ids[i]);
        }
        natural_stop = o->n < max_tokens; /* the echo ran out before the cap */
    } else {
        sample_lm(cfg, q, c, max_tokens, o, &cap, &natural_stop);
    }
    if (o->n == 0) {
        /* Echo of an empty prompt: still produce one token, as engines always do. */
        const char *word = tok_vocab_word(0);
        push_text(o, &cap, &h, word, strlen(word), 1);
        natural_stop = max_tokens > 1;
    }
    o->final_len = o->text.len;
    o->finish = natural_stop ? SIM_FINISH_STOP : SIM_FINISH_LENGTH;
    if (!q->ignore_eos || q->n_stop)
        apply_stop(q, o);
}

void sim_output_from_text(const struct openai_request *q, const struct sim_choice *c,
                          const char *text, size_t len, uint32_t max_tokens, struct sim_output *o)
{
    memset(o, 0, sizeof *o);
    uint32_t cap = 0;
    uint64_t h = prompt_hash(c);
    push_text(o, &cap, &h, text, len, max_tokens);
    o->final_len = o->text.len;
    /* Complete with room to spare: the model would sample EOS next (a natural stop). */
    o->finish = o->text.len == len && o->n < max_tokens ? SIM_FINISH_STOP : SIM_FINISH_LENGTH;
    apply_stop(q, o);
}

void sim_output_free(struct sim_output *o)
{
    free(o->ids);
    free(o->off);
    free(o->len);
    free(o->h);
    buf_free(&o->text);
    memset(o, 0, sizeof *o);
}

/* --- rendering ------------------------------------------------------------------- */

static const char *finish_str(const struct sim_choice *c, enum sim_finish f)
{
    return sim_tool_finish(c, f == SIM_FINISH_STOP ? "stop" : "length");
}

/* Text token i contributes to the reported output (clipped at a stop string). */
static void token_text(const struct sim_output *o, uint32_t i, const char **p, size_t *len)
{
    size_t a = o->off[i], b = o->off[i] + o->len[i];
    if (b > o->final_len)
        b = o->final_len;
    if (a > b)
        a = b;
    *p = o->text.data + a;
    *len = b - a;
}

static void append_double(struct buf *out, double v)
{
    if (!isfinite(v) || v < -9999.0) {
        buf_append_str(out, "-9999.0");
        return;
    }
    buf_printf(out, "%.6g", v);
}

static void append_bytes_array(struct buf *out, const char *p, size_t n)
{
    buf_append_char(out, '[');
    for (size_t i = 0; i < n; i++)
        buf_printf(out, i ? ",%u" : "%u", (unsigned char)p[i]);
    buf_append_char(out, ']');
}

/* One scored position: the listed distribution and the token's own logprob and rank. */
struct scored {
    struct sim_lm_dist d;
    double lp;
    uint32_t rank;
};

/* Scores the token at position pos of choice c (prompt, then output): the context is
 * every id before pos, its hash h. */
static void score_pos(const struct sim_choice *c, uint32_t pos, uint64_t h, struct scored *s)
{
    uint32_t win[SIM_LM_WINDOW];
    uint32_t from = pos > SIM_LM_WINDOW ? pos - SIM_LM_WINDOW : 0, wn = 0;
    for (uint32_t p = from; p < pos; p++)
        win[wn++] = p < c->n_prompt ? c->prompt_ids[p] : c->out.ids[p - c->n_prompt];
    sim_lm_dist(win, wn, h, SIM_LM_TOP, &s->d);
    uint32_t t = pos < c->n_prompt ? c->prompt_ids[pos] : c->out.ids[pos - c->n_prompt];
    sim_lm_score(&s->d, h, t, &s->lp, &s->rank);
}

/* vLLM's per-position candidates: the sampled token first, then the top k by rank
 * (without the sampled one again). Calls fn for each, up to `max` of them. */
typedef void (*cand_fn)(void *ctx, uint32_t id, double lp, uint32_t rank, bool first);
static void candidates(const struct scored *s, uint32_t sampled, int k, int max, cand_fn fn,
                       void *ctx)
{
    int emitted = 0;
    if (max <= 0)
        return;
    fn(ctx, sampled, s->lp, s->rank, true);
    emitted++;
    for (int r = 0; r < k && r < (int)s->d.n && emitted < max; r++) {
        if (s->d.ids[r] == sampled)
            continue;
        fn(ctx, s->d.ids[r], s->d.lp[r], (uint32_t)r + 1, false);
        emitted++;
    }
}

/* Completions' top_logprobs dict {token text: logprob}; keys are unique (a second id
 * with the same text is dropped, as a Python dict would keep one). */
struct dict_ctx {
    struct buf *out;
    const char *first_text; /* the sampled token's text as reported */
    size_t first_len;
    char keys[SIM_LM_TOP + 1][TOK_ID_TEXT_MAX];
    int n_keys;
};

static void dict_entry(void *vctx, uint32_t id, double lp, uint32_t rank, bool first)
{
    (void)rank;
    struct dict_ctx *c = vctx;
    char t[TOK_ID_TEXT_MAX];
    const char *p = t;
    size_t n;
    if (first) {
        p = c->first_text;
        n = c->first_len;
    } else {
        n = tok_id_text(id, TOK_DEFAULT_VOCAB, t);
        if (n == c->first_len && memcmp(t, c->first_text, n) == 0)
            return;
        for (int i = 0; i < c->n_keys; i++)
            if (strcmp(c->keys[i], t) == 0)
                return;
        if (c->n_keys < SIM_LM_TOP + 1)
            memcpy(c->keys[c->n_keys++], t, n + 1);
    }
    if (c->out->len && c->out->data[c->out->len - 1] != '{')
        buf_append_char(c->out, ',');
    json_quote(c->out, p, n);
    buf_append_char(c->out, ':');
    append_double(c->out, lp);
}

/* Chat's top_logprobs list [{token, logprob, bytes}]. */
struct list_ctx {
    struct buf *out;
    const char *first_text;
    size_t first_len;
    bool any;
};

static void list_entry(void *vctx, uint32_t id, double lp, uint32_t rank, bool first)
{
    (void)rank;
    struct list_ctx *c = vctx;
    char t[TOK_ID_TEXT_MAX];
    const char *p = t;
    size_t n;
    if (first) {
        p = c->first_text;
        n = c->first_len;
    } else {
        n = tok_id_text(id, TOK_DEFAULT_VOCAB, t);
    }
    if (c->any)
        buf_append_char(c->out, ',');
    c->any = true;
    buf_append_str(c->out, "{\"token\":");
    json_quote(c->out, p, n);
    buf_append_str(c->out, ",\"logprob\":");
    append_double(c->out, lp);
    buf_append_str(c->out, ",\"bytes\":");
    append_bytes_array(c->out, p, n);
    buf_append_char(c->out, '}');
}

/* prompt_logprobs dict {"id": {logprob, rank, decoded_token}}. */
static void plp_entry(void *vctx, uint32_t id, double lp, uint32_t rank, bool first)
{
    (void)first;
    struct buf *out = vctx;
    char t[TOK_ID_TEXT_MAX];
    size_t n = tok_id_text(id, TOK_DEFAULT_VOCAB, t);
    if (out->len && out->data[out->len - 1] != '{')
        buf_append_char(out, ',');
    buf_printf(out, "\"%u\":{\"logprob\":", id);
    append_double(out, lp);
    buf_printf(out, ",\"rank\":%u,\"decoded_token\":", rank);
    json_quote(out, t, n);
    buf_append_char(out, '}');
}

/* Chat logprobs entries for output tokens [from, to). */
static void chat_logprobs(const struct sim_req *r, const struct sim_choice *c, uint32_t from,
                          uint32_t to, struct buf *out)
{
    const struct sim_output *o = &c->out;
    buf_append_str(out, "{\"content\":[");
    for (uint32_t i = from; i < to; i++) {
        const char *p;
        size_t n;
        token_text(o, i, &p, &n);
        struct scored sc;
        score_pos(c, c->n_prompt + i, o->h[i], &sc);
        if (i > from)
            buf_append_char(out, ',');
        buf_append_str(out, "{\"token\":");
        json_quote(out, p, n);
        buf_append_str(out, ",\"logprob\":");
        append_double(out, sc.lp);
        buf_append_str(out, ",\"bytes\":");
        append_bytes_array(out, p, n);
        buf_append_str(out, ",\"top_logprobs\":[");
        struct list_ctx lc = {.out = out, .first_text = p, .first_len = n};
        int k = r->oreq.top_logprobs;
        candidates(&sc, o->ids[i], k, k, list_entry, &lc);
        buf_append_str(out, "]}");
    }
    buf_append_str(out, "]}");
}

/* The prompt's token texts: slices of the prompt when we have its text (exact), else
 * the ids' texts. Calls fn(ctx, i, text, len) for each prompt token. */
static void prompt_tokens(const struct sim_choice *c,
                          void (*fn)(void *ctx, uint32_t i, const char *p, size_t n), void *ctx)
{
    struct tok_result pt = {0};
    if (c->prompt_text)
        tok_encode(c->prompt_text, c->prompt_text_len, TOK_DEFAULT_VOCAB, &pt);
    char t[TOK_ID_TEXT_MAX];
    for (uint32_t i = 0; i < c->n_prompt; i++) {
        if (i < pt.n)
            fn(ctx, i, c->prompt_text + pt.pieces[i].offset, pt.pieces[i].len);
        else
            fn(ctx, i, t, tok_id_text(c->prompt_ids[i], TOK_DEFAULT_VOCAB, t));
    }
    tok_result_free(&pt);
}

/* Completions logprobs, built column by column. */
struct cmpl_lp {
    const struct sim_choice *c;
    int k;
    struct buf toks, lps, tops, offs;
    size_t text_pos;
    bool any;
    uint64_t h; /* prompt walk: hash before the current prompt token */
};

static void cmpl_sep(struct cmpl_lp *l)
{
    if (l->any) {
        buf_append_char(&l->toks, ',');
        buf_append_char(&l->lps, ',');
        buf_append_char(&l->tops, ',');
        buf_append_char(&l->offs, ',');
    }
    l->any = true;
}

/* One position: its token text, and its score unless it is the very first token. */
static void cmpl_add(struct cmpl_lp *l, uint32_t id, const struct scored *sc, const char *p,
                     size_t n)
{
    cmpl_sep(l);
    json_quote(&l->toks, p, n);
    if (!sc) {
        buf_append_str(&l->lps, "null");
        buf_append_str(&l->tops, "null");
    } else {
        append_double(&l->lps, sc->lp);
        buf_append_char(&l->tops, '{');
        struct dict_ctx dc = {.out = &l->tops, .first_text = p, .first_len = n};
        candidates(sc, id, l->k, l->k + 1, dict_entry, &dc);
        buf_append_char(&l->tops, '}');
    }
    buf_printf(&l->offs, "%zu", l->text_pos);
    l->text_pos += n;
}

static void cmpl_prompt_token(void *vctx, uint32_t i, const char *p, size_t n)
{
    struct cmpl_lp *l = vctx;
    struct scored sc;
    if (i > 0)
        score_pos(l->c, i, l->h, &sc);
    cmpl_add(l, l->c->prompt_ids[i], i > 0 ? &sc : NULL, p, n);
    l->h = sim_lm_next(l->h, l->c->prompt_ids[i]);
}

/* Completions logprobs for output tokens [from, to), with the prompt's tokens first when
 * with_prompt. text_offset counts from the start of the reported text, which includes
 * the prompt whenever the request asked for echo. */
static void completion_logprobs(const struct sim_req *r, const struct sim_choice *c,
                                uint32_t from, uint32_t to, bool with_prompt, struct buf *out)
{
    const struct sim_output *o = &c->out;
    struct cmpl_lp l = {.c = c, .k = r->oreq.logprobs, .h = SIM_LM_H0};
    l.text_pos = !with_prompt && r->oreq.echo ? sim_prompt_text_len(c) : 0;
    if (with_prompt)
        prompt_tokens(c, cmpl_prompt_token, &l);
    if (!r->oreq.echo_only) {
        for (uint32_t i = 0; i < from; i++)
            l.text_pos += o->len[i];
        for (uint32_t i = from; i < to; i++) {
            const char *p;
            size_t n;
            token_text(o, i, &p, &n);
            struct scored sc;
            score_pos(c, c->n_prompt + i, o->h[i], &sc);
            cmpl_add(&l, o->ids[i], &sc, p, n);
        }
    }
    buf_printf(out, "{\"text_offset\":[%s],\"token_logprobs\":[%s],\"tokens\":[%s],"
                    "\"top_logprobs\":[%s]}",
               l.offs.data ? l.offs.data : "", l.lps.data ? l.lps.data : "",
               l.toks.data ? l.toks.data : "", l.tops.data ? l.tops.data : "");
    buf_free(&l.toks);
    buf_free(&l.lps);
    buf_free(&l.tops);
    buf_free(&l.offs);
}

/* vLLM's prompt_logprobs: null for the first token, then per token a dict of the prompt
 * token and the top k, keyed by id. */
static void prompt_logprobs(const struct sim_req *r, const struct sim_choice *c,
                            struct buf *out)
{
    int k = r->oreq.prompt_logprobs;
    uint64_t h = SIM_LM_H0;
    buf_append_char(out, '[');
    for (uint32_t i = 0; i < c->n_prompt; i++) {
        if (i == 0) {
            buf_append_str(out, "null");
        } else {
            struct scored sc;
            score_pos(c, i, h, &sc);
            buf_append_str(out, ",{");
            candidates(&sc, c->prompt_ids[i], k, k + 1, plp_entry, out);
            buf_append_char(out, '}');
        }
        h = sim_lm_next(h, c->prompt_ids[i]);
    }
    buf_append_char(out, ']');
}

size_t sim_prompt_text_len(const struct sim_choice *c)
{
    if (c->prompt_text)
        return c->prompt_text_len;
    struct buf t = BUF_INIT;
    sim_detokenize(c->prompt_ids, c->n_prompt, &t);
    size_t n = t.len;
    buf_free(&t);
    return n;
}

/* The prompt as text: exact when we have it, detokenized ids otherwise. */
static void append_prompt_escaped(struct buf *out, const struct sim_choice *c)
{
    if (c->prompt_text) {
        json_escape(out, c->prompt_text, c->prompt_text_len);
        return;
    }
    struct buf t = BUF_INIT;
    sim_detokenize(c->prompt_ids, c->n_prompt, &t);
    json_escape(out, t.data ? t.data : "", t.len);
    buf_free(&t);
}

/* Output tokens reported: none for echo without generation. */
static uint32_t reported_tokens(const struct sim_req *r, const struct sim_choice *c)
{
    return r->oreq.echo_only ? 0 : c->produced;
}

/* Bytes of output text reported: all of it, or, when the engine ended a sequence early
 * (it outgrew the whole cache), only what its produced tokens cover. */
static size_t reported_len(const struct sim_choice *c)
{
    const struct sim_output *o = &c->out;
    if (c->produced >= o->n)
        return o->final_len;
    size_t end = c->produced ? o->off[c->produced - 1] + o->len[c->produced - 1] : 0;
    return end < o->final_len ? end : o->final_len;
}

static void append_stop_reason(struct buf *out, const struct sim_choice *c)
{
    buf_append_str(out, ",\"stop_reason\":");
    if (c->out.stop_reason && c->produced >= c->out.n)
        json_quote(out, c->out.stop_reason, strlen(c->out.stop_reason));
    else
        buf_append_str(out, "null");
}

/* vLLM counts each prompt once however many choices it has. */
void sim_render_usage(const struct sim_req *r, struct buf *out)
{
    uint64_t prompt = 0, completion = 0, cached = 0;
    for (uint32_t i = 0; i < r->n_choices; i++) {
        const struct sim_choice *c = &r->choices[i];
        if (c->sample == 0) {
            prompt += c->n_prompt;
            cached += c->cached_tokens;
        }
        completion += reported_tokens(r, c);
    }
    buf_printf(out,
               "{\"prompt_tokens\":%llu,\"total_tokens\":%llu,\"completion_tokens\":%llu,"
               "\"prompt_tokens_details\":",
               (unsigned long long)prompt, (unsigned long long)(prompt + completion),
               (unsigned long long)completion);
    if (r->s->cfg->prompt_tokens_details)
        buf_printf(out, "{\"cached_tokens\":%llu}}", (unsigned long long)cached);
    else
        buf_append_str(out, "null}");
}

static void header_fields(const struct sim_req *r, const char *object, struct buf *out)
{
    buf_append_str(out, "{\"id\":");
    json_quote(out, r->id, strlen(r->id));
    buf_printf(out, ",\"object\":\"%s\",\"created\":%llu,\"model\":", object,
               (unsigned long long)r->created);
    json_quote(out, r->s->cfg->model, strlen(r->s->cfg->model));
}

void sim_render_response(const struct sim_req *r, const char *kv_params, struct buf *out)
{
    bool chat = r->oreq.api == OPENAI_CHAT;
    header_fields(r, chat ? "chat.completion" : "text_completion", out);
    buf_append_str(out, ",\"choices\":[");
    for (uint32_t i = 0; i < r->n_choices; i++) {
        const struct sim_choice *c = &r->choices[i];
        const struct sim_output *o = &c->out;
        if (i)
            buf_append_char(out, ',');
        buf_printf(out, "{\"index\":%u,", c->index);
        if (chat && c->tool) {
            buf_append_str(out, "\"message\":");
            sim_tool_render_message(c, o->text.data ? o->text.data : "", reported_len(c), out);
            buf_append_str(out, ",\"logprobs\":");
            if (r->oreq.chat_logprobs)
                chat_logprobs(r, c, 0, c->produced, out);
            else
                buf_append_str(out, "null");
        } else if (chat) {
            buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
            json_quote(out, o->text.data ? o->text.data : "", reported_len(c));
            buf_append_str(out, ",\"refusal\":null,\"tool_calls\":[],\"reasoning_content\":null},"
                                "\"logprobs\":");
            if (r->oreq.chat_logprobs)
                chat_logprobs(r, c, 0, c->produced, out);
            else
                buf_append_str(out, "null");
        } else {
            buf_append_str(out, "\"text\":\"");
            if (r->oreq.echo)
                append_prompt_escaped(out, c);
            json_escape(out, o->text.data ? o->text.data : "", reported_len(c));
            buf_append_str(out, "\",\"logprobs\":");
            if (r->oreq.logprobs >= 0)
                completion_logprobs(r, c, 0, c->produced, r->oreq.echo, out);
            else
                buf_append_str(out, "null");
        }
        buf_printf(out, ",\"finish_reason\":\"%s\"", finish_str(c, c->finish));
        append_stop_reason(out, c);
        if (!chat) {
            buf_append_str(out, ",\"prompt_logprobs\":");
            if (r->oreq.prompt_logprobs >= 0)
                prompt_logprobs(r, c, out);
            else
                buf_append_str(out, "null");
        }
        buf_append_char(out, '}');
    }
    buf_append_str(out, "],\"usage\":");
    sim_render_usage(r, out);
    buf_append_str(out, ",\"prompt_logprobs\":");
    if (chat && r->oreq.prompt_logprobs >= 0 && r->n_choices)
        prompt_logprobs(r, &r->choices[0], out);
    else
        buf_append_str(out, "null");
    buf_append_str(out, ",\"kv_transfer_params\":");
    buf_append_str(out, kv_params ? kv_params : "null");
    buf_append_char(out, '}');
}

/* SSE frames are written straight into the output: "data: " + chunk JSON + "\n\n".
 * The chunk JSON never contains a newline (json_escape escapes them). */
static void frame_begin(struct buf *out)
{
    buf_append(out, "data: ", 6);
}

static void frame_end(struct buf *out)
{
    buf_append(out, "\n\n", 2);
}

/* vLLM sends usage on every chunk only when both include_usage and
 * continuous_usage_stats are set. */
static bool continuous_usage(const struct sim_req *r)
{
    return r->oreq.include_usage && r->oreq.continuous_usage_stats;
}

static void chunk_usage(struct buf *out, uint32_t prompt, uint32_t completion)
{
    buf_printf(out,
               ",\"usage\":{\"prompt_tokens\":%u,\"total_tokens\":%u,\"completion_tokens\":%u}",
               prompt, prompt + completion, completion);
}

void sim_render_token_chunks(struct sim_req *r, struct sim_choice *c, struct buf *out)
{
    bool chat = r->oreq.api == OPENAI_CHAT;
    if (chat && !r->role_sent) {
        /* vLLM's first chat chunk: the role, empty content, sent with the first output. */
        for (uint32_t i = 0; i < r->n_choices; i++) {
            frame_begin(out);
            header_fields(r, "chat.completion.chunk", out);
            buf_printf(out,
                       ",\"choices\":[{\"index\":%u,\"delta\":{\"role\":\"assistant\","
                       "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]",
                       r->choices[i].index);
            if (continuous_usage(r))
                chunk_usage(out, r->choices[i].n_prompt, 0);
            buf_append_char(out, '}');
            frame_end(out);
        }
        r->role_sent = true;
    }
    for (uint32_t i = c->streamed; i < c->produced; i++) {
        bool last = i + 1 == c->out.n;
        bool echo_first = !chat && r->oreq.echo && i == 0;
        const char *p;
        size_t n;
        token_text(&c->out, i, &p, &n);
        if (chat && c->tool && i == 0) {
            /* vLLM's first tool-call delta: id, type, name, empty arguments. */
            frame_begin(out);
            header_fields(r, "chat.completion.chunk", out);
            buf_printf(out, ",\"choices\":[{\"index\":%u,", c->index);
            sim_tool_render_delta(c, true, NULL, 0, out);
            buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":null}]");
            if (continuous_usage(r))
                chunk_usage(out, c->n_prompt, 0);
            buf_append_char(out, '}');
            frame_end(out);
        }
        if (n == 0 && !last && !echo_first)
            continue; /* a token inside a stop string: nothing to show */
        frame_begin(out);
        header_fields(r, chat ? "chat.completion.chunk" : "text_completion", out);
        buf_printf(out, ",\"choices\":[{\"index\":%u,", c->index);
        if (chat) {
            if (c->tool) {
                sim_tool_render_delta(c, false, p, n, out);
            } else {
                buf_append_str(out, "\"delta\":{\"content\":");
                json_quote(out, p, n);
                buf_append_char(out, '}');
            }
            buf_append_str(out, ",\"logprobs\":");
            if (r->oreq.chat_logprobs)
                chat_logprobs(r, c, i, i + 1, out);
            else
                buf_append_str(out, "null");
        } else {
            /* echo: the prompt goes out with the first token, as vLLM sends it. */
            buf_append_str(out, "\"text\":\"");
            if (echo_first)
                append_prompt_escaped(out, c);
            json_escape(out, p, n);
            buf_append_str(out, "\",\"logprobs\":");
            if (r->oreq.logprobs >= 0)
                completion_logprobs(r, c, i, i + 1, echo_first, out);
            else
                buf_append_str(out, "null");
        }
        if (last) {
            buf_printf(out, ",\"finish_reason\":\"%s\"", finish_str(c, c->out.finish));
            append_stop_reason(out, c);
            c->finish_sent = true;
        } else {
            buf_append_str(out, ",\"finish_reason\":null");
            if (!chat)
                buf_append_str(out, ",\"stop_reason\":null");
        }
        buf_append_str(out, "}]");
        if (continuous_usage(r))
            chunk_usage(out, c->n_prompt, r->oreq.echo_only ? 0 : i + 1);
        buf_append_char(out, '}');
        frame_end(out);
    }
    c->streamed = c->produced;
}

void sim_render_finish_chunk(const struct sim_req *r, const struct sim_choice *c,
                             struct buf *out)
{
    bool chat = r->oreq.api == OPENAI_CHAT;
    frame_begin(out);
    header_fields(r, chat ? "chat.completion.chunk" : "text_completion", out);
    if (chat)
        buf_printf(out, ",\"choices\":[{\"index\":%u,\"delta\":{},\"logprobs\":null", c->index);
    else
        buf_printf(out, ",\"choices\":[{\"index\":%u,\"text\":\"\",\"logprobs\":null",
                   c->index);
    buf_printf(out, ",\"finish_reason\":\"%s\"", finish_str(c, c->finish));
    append_stop_reason(out, c);
    buf_append_str(out, "}]");
    if (continuous_usage(r))
        chunk_usage(out, c->n_prompt, reported_tokens(r, c));
    buf_append_char(out, '}');
    frame_end(out);
}

void sim_render_usage_chunk(const struct sim_req *r, struct buf *out)
{
    bool chat = r->oreq.api == OPENAI_CHAT;
    frame_begin(out);
    header_fields(r, chat ? "chat.completion.chunk" : "text_completion", out);
    buf_append_str(out, ",\"choices\":[],\"usage\":");
    sim_render_usage(r, out);
    buf_append_char(out, '}');
    frame_end(out);
}

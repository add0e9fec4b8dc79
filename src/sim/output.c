/* What the sim says and how it is framed. Output is decided when a request arrives
 * (random words or echo, cut at max_tokens or a drawn length, clipped at stop strings),
 * so the engine only has to count tokens. Responses are built by hand rather than
 * through a JSON DOM: chunks are on the hot path of streaming (one per token). Shapes
 * follow vLLM's OpenAI server. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/json.h"
#include "sim/sim_internal.h"
#include "tokenize/tokenize.h"

static void output_push(struct sim_output *o, uint32_t *cap, uint32_t id, const char *text,
                        size_t len)
{
    if (o->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        o->ids = xrealloc(o->ids, *cap * sizeof *o->ids);
        o->off = xrealloc(o->off, *cap * sizeof *o->off);
        o->len = xrealloc(o->len, *cap * sizeof *o->len);
    }
    o->ids[o->n] = id;
    o->off[o->n] = (uint32_t)o->text.len;
    o->len[o->n] = (uint32_t)len;
    buf_append(&o->text, text, len);
    o->n++;
}

/* Appends the tokens of text, at most `limit` in total. */
static void push_text(struct sim_output *o, uint32_t *cap, const char *text, size_t len,
                      uint32_t limit)
{
    struct tok_result t = {0};
    tok_encode(text, len, TOK_DEFAULT_VOCAB, &t);
    for (size_t i = 0; i < t.n && o->n < limit; i++)
        output_push(o, cap, t.pieces[i].id, text + t.pieces[i].offset, t.pieces[i].len);
    tok_result_free(&t);
}

void sim_detokenize(const uint32_t *ids, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = tok_piece_text(ids[i], TOK_DEFAULT_VOCAB);
        if (p)
            buf_append_str(out, p);
        else
            buf_printf(out, "<|%u|>", ids[i]);
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
    o->final_len = best;
    o->finish = SIM_FINISH_STOP;
    o->stop_reason = which;
}

void sim_output_generate(const struct sim_config *cfg, const struct sim_req *r,
                         const struct sim_choice *c, uint32_t max_tokens, struct sim_output *o)
{
    const struct openai_request *q = &r->oreq;
    memset(o, 0, sizeof *o);
    uint32_t cap = 0;
    /* Same prompt + same seed = same answer, on every sim process. */
    uint64_t rng = cfg->seed ^ 0x5eedull;
    rng ^= hash_xxh64(c->prompt_ids, c->n_prompt * sizeof *c->prompt_ids, 0);
    if (q->has_seed)
        rng ^= hash_xxh64(&q->seed, sizeof q->seed, 1);

    uint32_t target = max_tokens;
    bool natural_stop = false;
    if (!q->ignore_eos && cfg->mode == SIM_MODE_RANDOM) {
        uint32_t lo = q->min_tokens > 0 ? (uint32_t)q->min_tokens : 1;
        if (lo > max_tokens)
            lo = max_tokens;
        target = lo + (uint32_t)hash_rand_below(&rng, max_tokens - lo + 1);
        natural_stop = target < max_tokens;
    }

    if (cfg->mode == SIM_MODE_ECHO) {
        if (q->api == OPENAI_CHAT) {
            push_text(o, &cap, q->last_message, q->last_message_len, max_tokens);
        } else if (c->prompt_text) {
            push_text(o, &cap, c->prompt_text, c->prompt_text_len, max_tokens);
        } else {
            for (uint32_t i = 0; i < c->n_prompt && o->n < max_tokens; i++) {
                struct buf t = BUF_INIT;
                sim_detokenize(&c->prompt_ids[i], 1, &t);
                output_push(o, &cap, c->prompt_ids[i], t.data, t.len);
                buf_free(&t);
            }
        }
        natural_stop = o->n < max_tokens; /* the echo ran out before the cap */
    } else {
        while (o->n < target) {
            size_t w = (size_t)hash_rand_below(&rng, tok_vocab_size());
            const char *word = tok_vocab_word(w);
            push_text(o, &cap, word, strlen(word), target);
        }
    }
    if (o->n == 0) {
        /* Echo of an empty prompt: still produce one token, as engines always do. */
        const char *word = tok_vocab_word(0);
        push_text(o, &cap, word, strlen(word), 1);
        natural_stop = max_tokens > 1;
    }
    o->final_len = o->text.len;
    o->finish = natural_stop ? SIM_FINISH_STOP : SIM_FINISH_LENGTH;
    if (!q->ignore_eos || q->n_stop)
        apply_stop(q, o);
}

void sim_output_from_text(const struct openai_request *q, const char *text, size_t len,
                          uint32_t max_tokens, struct sim_output *o)
{
    memset(o, 0, sizeof *o);
    uint32_t cap = 0;
    push_text(o, &cap, text, len, max_tokens);
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
    buf_free(&o->text);
    memset(o, 0, sizeof *o);
}

/* --- rendering ------------------------------------------------------------------- */

static const char *finish_str(const struct sim_choice *c)
{
    return sim_tool_finish(c, c->finish == SIM_FINISH_STOP ? "stop" : "length");
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

/* Deterministic pseudo log-probabilities, consistent with greedy sampling: the sampled
 * token (rank 0) is in (-2, 0) and alternatives come strictly lower, in rank order, so
 * a harness checking "is the sampled token the most likely" sees a greedy model. */
static double fake_logprob(uint32_t id, uint32_t pos, uint32_t rank)
{
    uint64_t h = hash_xxh64(&id, sizeof id, pos);
    double lp = -((double)(h % 2000) / 1000.0 + 0.001);
    for (uint32_t j = 1; j <= rank; j++) {
        uint64_t hj = hash_xxh64(&id, sizeof id, ((uint64_t)pos << 8) | j);
        lp -= 0.5 + (double)(hj % 400) / 1000.0;
    }
    return lp;
}

/* The rank-th alternative (rank >= 1) to a sampled token: distinct vocabulary words,
 * never the sampled text itself. */
static const char *alt_word(uint32_t id, const char *sampled, size_t n, int rank)
{
    size_t v = tok_vocab_size();
    int seen = 0;
    for (size_t k = 1; k < v; k++) {
        const char *w = tok_vocab_word((id + k * 7919u) % v);
        if (strlen(w) == n && memcmp(w, sampled, n) == 0)
            continue;
        if (++seen == rank)
            return w;
    }
    return tok_vocab_word(0);
}

static void append_double(struct buf *out, double v)
{
    if (!isfinite(v)) {
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

/* Chat logprobs entries for tokens [from, to). */
static void chat_logprobs(const struct sim_req *r, const struct sim_output *o, uint32_t from,
                          uint32_t to, struct buf *out)
{
    buf_append_str(out, "{\"content\":[");
    for (uint32_t i = from; i < to; i++) {
        const char *p;
        size_t n;
        token_text(o, i, &p, &n);
        if (i > from)
            buf_append_char(out, ',');
        buf_append_str(out, "{\"token\":");
        json_quote(out, p, n);
        buf_append_str(out, ",\"logprob\":");
        append_double(out, fake_logprob(o->ids[i], i, 0));
        buf_append_str(out, ",\"bytes\":");
        append_bytes_array(out, p, n);
        buf_append_str(out, ",\"top_logprobs\":[");
        for (int k = 0; k < r->oreq.top_logprobs; k++) {
            const char *alt = k == 0 ? p : alt_word(o->ids[i], p, n, k);
            size_t alen = k == 0 ? n : strlen(alt);
            if (k)
                buf_append_char(out, ',');
            buf_append_str(out, "{\"token\":");
            json_quote(out, alt, alen);
            buf_append_str(out, ",\"logprob\":");
            append_double(out, fake_logprob(o->ids[i], i, (uint32_t)k));
            buf_append_str(out, ",\"bytes\":");
            append_bytes_array(out, alt, alen);
            buf_append_char(out, '}');
        }
        buf_append_str(out, "]}");
    }
    buf_append_str(out, "]}");
}

/* Length of the prompt as the response shows it (echo). */
static size_t prompt_text_len(const struct sim_choice *c)
{
    if (c->prompt_text)
        return c->prompt_text_len;
    struct buf t = BUF_INIT;
    sim_detokenize(c->prompt_ids, c->n_prompt, &t);
    size_t n = t.len;
    buf_free(&t);
    return n;
}

/* Completions logprobs for output tokens [from, to), with the prompt's tokens first when
 * with_prompt. text_offset counts from the start of the reported text, which includes
 * the prompt whenever the request asked for echo. */
static void completion_logprobs(const struct sim_req *r, const struct sim_choice *c,
                                uint32_t from, uint32_t to, bool with_prompt, struct buf *out)
{
    const struct sim_output *o = &c->out;
    int k = r->oreq.logprobs;
    struct buf toks = BUF_INIT, lps = BUF_INIT, tops = BUF_INIT, offs = BUF_INIT;
    size_t text_pos = !with_prompt && r->oreq.echo ? prompt_text_len(c) : 0;
    bool first = true;
    if (with_prompt) {
        /* Prompt token texts: slices of the prompt when we have its text (exact), else
         * the ids detokenized (lossy for words outside the sim's vocabulary). */
        struct tok_result pt = {0};
        if (c->prompt_text)
            tok_encode(c->prompt_text, c->prompt_text_len, TOK_DEFAULT_VOCAB, &pt);
        struct buf t = BUF_INIT;
        for (uint32_t i = 0; i < c->n_prompt; i++) {
            buf_reset(&t);
            if (i < pt.n)
                buf_append(&t, c->prompt_text + pt.pieces[i].offset, pt.pieces[i].len);
            else
                sim_detokenize(&c->prompt_ids[i], 1, &t);
            if (!first) {
                buf_append_char(&toks, ',');
                buf_append_char(&lps, ',');
                buf_append_char(&tops, ',');
                buf_append_char(&offs, ',');
            }
            json_quote(&toks, t.data ? t.data : "", t.len);
            if (i == 0) {
                buf_append_str(&lps, "null");
                buf_append_str(&tops, "null");
            } else {
                append_double(&lps, fake_logprob(c->prompt_ids[i], i, 0));
                buf_append_char(&tops, '{');
                json_quote(&tops, t.data ? t.data : "", t.len);
                buf_append_char(&tops, ':');
                append_double(&tops, fake_logprob(c->prompt_ids[i], i, 0));
                buf_append_char(&tops, '}');
            }
            buf_printf(&offs, "%zu", text_pos);
            text_pos += t.len;
            first = false;
        }
        buf_free(&t);
        tok_result_free(&pt);
    }
    for (uint32_t i = 0; i < from; i++)
        text_pos += o->len[i];
    for (uint32_t i = from; i < to; i++) {
        const char *p;
        size_t n;
        token_text(o, i, &p, &n);
        if (!first) {
            buf_append_char(&toks, ',');
            buf_append_char(&lps, ',');
            buf_append_char(&tops, ',');
            buf_append_char(&offs, ',');
        }
        first = false;
        json_quote(&toks, p, n);
        append_double(&lps, fake_logprob(o->ids[i], i, 0));
        buf_append_char(&tops, '{');
        for (int j = 0; j < (k > 0 ? k : 1); j++) {
            const char *alt = j == 0 ? p : alt_word(o->ids[i], p, n, j);
            size_t alen = j == 0 ? n : strlen(alt);
            if (j)
                buf_append_char(&tops, ',');
            json_quote(&tops, alt, alen);
            buf_append_char(&tops, ':');
            append_double(&tops, fake_logprob(o->ids[i], i, (uint32_t)j));
        }
        buf_append_char(&tops, '}');
        buf_printf(&offs, "%zu", text_pos);
        text_pos += o->len[i];
    }
    buf_printf(out, "{\"text_offset\":[%s],\"token_logprobs\":[%s],\"tokens\":[%s],"
                    "\"top_logprobs\":[%s]}",
               offs.data ? offs.data : "", lps.data ? lps.data : "", toks.data ? toks.data : "",
               tops.data ? tops.data : "");
    buf_free(&toks);
    buf_free(&lps);
    buf_free(&tops);
    buf_free(&offs);
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

void sim_render_usage(const struct sim_req *r, struct buf *out)
{
    uint64_t prompt = 0, completion = 0, cached = 0;
    for (uint32_t i = 0; i < r->n_choices; i++) {
        prompt += r->choices[i].n_prompt;
        completion += r->choices[i].produced;
        cached += r->choices[i].cached_tokens;
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
                chat_logprobs(r, o, 0, c->produced, out);
            else
                buf_append_str(out, "null");
        } else if (chat) {
            buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
            json_quote(out, o->text.data ? o->text.data : "", reported_len(c));
            buf_append_str(out, ",\"refusal\":null,\"tool_calls\":[],\"reasoning_content\":null},"
                                "\"logprobs\":");
            if (r->oreq.chat_logprobs)
                chat_logprobs(r, o, 0, c->produced, out);
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
        buf_printf(out, ",\"finish_reason\":\"%s\"", finish_str(c));
        append_stop_reason(out, c);
        if (!chat)
            buf_append_str(out, ",\"prompt_logprobs\":null");
        buf_append_char(out, '}');
    }
    buf_append_str(out, "],\"usage\":");
    sim_render_usage(r, out);
    buf_append_str(out, ",\"prompt_logprobs\":null,\"kv_transfer_params\":");
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
                       "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}",
                       r->choices[i].index);
            frame_end(out);
        }
        r->role_sent = true;
    }
    if (!chat && r->oreq.echo && c->streamed == 0 && c->produced > 0) {
        /* echo: the prompt goes out first, as its own chunk. */
        frame_begin(out);
        header_fields(r, "text_completion", out);
        buf_printf(out, ",\"choices\":[{\"index\":%u,\"text\":\"", c->index);
        append_prompt_escaped(out, c);
        buf_append_str(out, "\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}]}");
        frame_end(out);
    }
    for (uint32_t i = c->streamed; i < c->produced; i++) {
        const char *p;
        size_t n;
        token_text(&c->out, i, &p, &n);
        if (chat && c->tool && i == 0) {
            /* vLLM's first tool-call delta: id, type, name, empty arguments. */
            frame_begin(out);
            header_fields(r, "chat.completion.chunk", out);
            buf_printf(out, ",\"choices\":[{\"index\":%u,", c->index);
            sim_tool_render_delta(c, true, NULL, 0, out);
            buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":null}]}");
            frame_end(out);
        }
        if (n == 0)
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
                chat_logprobs(r, &c->out, i, i + 1, out);
            else
                buf_append_str(out, "null");
            buf_append_str(out, ",\"finish_reason\":null}]");
        } else {
            buf_append_str(out, "\"text\":");
            json_quote(out, p, n);
            buf_append_str(out, ",\"logprobs\":");
            if (r->oreq.logprobs >= 0)
                completion_logprobs(r, c, i, i + 1, false, out);
            else
                buf_append_str(out, "null");
            buf_append_str(out, ",\"finish_reason\":null,\"stop_reason\":null}]");
        }
        if (r->oreq.continuous_usage_stats) {
            buf_printf(out,
                       ",\"usage\":{\"prompt_tokens\":%u,\"total_tokens\":%u,"
                       "\"completion_tokens\":%u}",
                       c->n_prompt, c->n_prompt + i + 1, i + 1);
        }
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
    buf_printf(out, ",\"finish_reason\":\"%s\"", finish_str(c));
    append_stop_reason(out, c);
    buf_append_str(out, "}]}");
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

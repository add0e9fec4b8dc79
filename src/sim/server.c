/* The sim's HTTP face and its engine driver.
 *
 * Driver: the engine model runs in engine time; a libuv timer fires when the in-flight
 * step's end has passed in real time, and every step whose end is due is completed in
 * that callback, each next step starting exactly when the previous ended. So modeled
 * rates stay exact even when steps are shorter than the timer's 1 ms resolution; a
 * token is delivered at most ~1 ms after its modeled time.
 *
 * Requests: see sim_internal.h for the lifetime rules. Each generation request holds
 * one engine sequence per prompt (choice). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/log.h"
#include "net/loop.h"
#include "net/sse.h"
#include "sim/lm.h"
#include "sim/sim_internal.h"
#include "tokenize/tokenize.h"

#define LOG_C "sim"

/* --- engine driver ------------------------------------------------------------- */

static void on_step_timer(uv_timer_t *t);

static void on_step_idle(uv_idle_t *h);

static void arm_step_timer(struct sim_rank *k, uint64_t now)
{
    uint64_t wait_ns = k->step_end > now ? k->step_end - now : 0;
    if (wait_ns < 50000) {
        /* libuv timers have 1 ms resolution: a step this short (tiny --time-scale, the
         * benchmarks' zero-latency engines) continues on the next loop turn instead. */
        uv_idle_start(&k->step_idle, on_step_idle);
        return;
    }
    uint64_t ms = (wait_ns + 999999) / 1000000;
    uv_timer_start(&k->step_timer, on_step_timer, ms, 0);
}

static void kick_rank(struct sim_rank *k)
{
    if (k->step_in_flight || k->in_step_end || k->s->stopping)
        return;
    uint64_t now = clock_monotonic_ns();
    uint64_t dur = sim_engine_step_begin(k->engine, now);
    if (!dur)
        return;
    k->step_in_flight = true;
    k->step_end = now + dur;
    arm_step_timer(k, now);
}

/* Starts a step on every idle rank that has work. Called whenever work may have
 * appeared: a request arrived, KV arrived, blocks were freed (an abort, a pull, an
 * expired pin) so the waiting head may fit now. (A rank without work costs one check.) */
void sim_driver_kick(struct sim_server *s)
{
    for (uint32_t i = 0; i < s->n_ranks; i++)
        kick_rank(&s->ranks[i]);
}

/* Completes every step that is due, but hands the loop back after ~10 ms of work so
 * output is flushed and clients are read: an overloaded sim falls behind modeled time
 * (as an overloaded engine would) instead of piling up output in memory. Within the
 * budget, several steps' tokens for one stream leave in one write, which is what keeps
 * an overloaded sim's throughput up (syscalls dominate otherwise). The rest
 * continues from an idle handle, which runs on the next iteration after I/O (a timer
 * re-armed with 0 ms from its own callback would run again before any I/O). */
static void run_due_steps(struct sim_rank *k)
{
    uint64_t now = clock_monotonic_ns();
    uint64_t budget_end = now + 10000000; /* 10 ms */
    uint64_t wall = now;
    while (k->step_in_flight && k->step_end <= now) {
        uint64_t end = k->step_end;
        k->step_in_flight = false;
        k->in_step_end = true;
        k->step_wall = wall; /* one clock read per step, not per token */
        sim_engine_step_end(k->engine, end);
        k->in_step_end = false;
        if (k->kvpub) /* one KVEventBatch per engine step, as vLLM publishes */
            sim_kvpub_flush(k->kvpub, (double)clock_realtime_ns() / 1e9);
        if (k->s->stopping)
            return;
        uint64_t dur = sim_engine_step_begin(k->engine, end);
        if (!dur)
            return;
        k->step_in_flight = true;
        k->step_end = end + dur;
        wall = clock_monotonic_ns();
        if (wall >= budget_end) {
            uv_idle_start(&k->step_idle, on_step_idle);
            return;
        }
    }
    if (k->step_in_flight)
        arm_step_timer(k, now);
}

static void on_step_timer(uv_timer_t *t)
{
    run_due_steps(t->data);
}

static void on_step_idle(uv_idle_t *h)
{
    uv_idle_stop(h);
    run_due_steps(h->data);
}

/* --- responses ------------------------------------------------------------------ */

static void add_common_headers(struct sim_server *s, struct http_exchange *ex,
                               const char *request_id)
{
    if (s->cfg->pod_name)
        http_add_header(ex, "x-inference-pod", s->cfg->pod_name);
    if (request_id)
        http_add_header(ex, "x-request-id", request_id);
}

static void access_log(struct sim_server *s, struct http_exchange *ex, int status)
{
    if (!s->cfg->access_log || !log_enabled(LOG_INFO))
        return;
    const struct http_request *q = http_exchange_request(ex);
    if (strcmp(q->path, "/metrics") == 0 || strcmp(q->path, "/health") == 0)
        return; /* scrapers and probes would drown everything else */
    LOG_I(LOG_C, "%s - \"%s %s HTTP/1.1\" %d %s", q->peer, q->method, q->path, status,
          http_status_text(status));
}

static void respond(struct sim_server *s, struct http_exchange *ex, int status,
                    const char *ctype, const char *body, size_t len, const char *request_id)
{
    add_common_headers(s, ex, request_id);
    access_log(s, ex, status);
    http_respond(ex, status, ctype, body, len);
}

static void respond_error(struct sim_server *s, struct http_exchange *ex,
                          const struct openai_error *e, const char *request_id)
{
    struct buf b = BUF_INIT;
    openai_error_body(&b, e);
    respond(s, ex, e->status, "application/json", b.data, b.len, request_id);
    buf_free(&b);
}

static void respond_errorf(struct sim_server *s, struct http_exchange *ex, int status,
                           const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void respond_errorf(struct sim_server *s, struct http_exchange *ex, int status,
                           const char *param, const char *fmt, ...)
{
    struct openai_error e;
    va_list ap;
    va_start(ap, fmt);
    openai_error_vset(&e, status, param, fmt, ap);
    va_end(ap);
    respond_error(s, ex, &e, NULL);
}

/* --- request lifecycle ------------------------------------------------------------ */

static void req_free_cb(uv_handle_t *h)
{
    struct sim_req *r = h->data;
    for (uint32_t i = 0; i < r->n_choices; i++) {
        free(r->choices[i].prompt_ids);
        sim_output_free(&r->choices[i].out);
    }
    openai_request_free(&r->oreq);
    arena_free(&r->arena);
    free(r);
}

/* Ends the request: aborts what still runs in the engine, cancels the KV pull, and
 * frees everything once the timer handle has closed. Idempotent. */
void sim_req_release(struct sim_req *r)
{
    if (r->released)
        return;
    r->released = true;
    bool freed = false;
    for (uint32_t i = 0; i < r->n_choices; i++) {
        if (r->choices[i].seq) {
            sim_engine_abort(r->rank->engine, r->choices[i].seq);
            r->choices[i].seq = 0;
            freed = true;
        }
    }
    sim_pd_cancel(r);
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_free_cb);
    if (freed)
        sim_driver_kick(r->s); /* the freed blocks may let the waiting head in */
}

static void on_client_abort(struct http_exchange *ex, void *ctx)
{
    struct sim_req *r = ctx;
    r->ex = NULL;
    /* Requests held before the engine (slow, hang) count as one. */
    uint32_t left = r->n_choices > r->n_done ? r->n_choices - r->n_done : 0;
    sim_metrics_on_abort(r->rank, r->n_choices ? left : 1);
    LOG_D(LOG_C, "request %s: client went away", r->request_id);
    sim_req_release(r);
}

void sim_req_write(struct sim_req *r, const char *data, size_t len)
{
    if (r->ex)
        http_stream_write(r->ex, data, len);
    /* Back-pressure: a real engine keeps generating whatever the client's pace; the
     * server's queue holds what the client has not read. */
}

void sim_req_fail(struct sim_req *r, int status, const char *param, const char *fmt, ...)
{
    struct openai_error e;
    va_list ap;
    va_start(ap, fmt);
    openai_error_vset(&e, status, param, fmt, ap);
    va_end(ap);
    if (r->ex) {
        respond_error(r->s, r->ex, &e, r->request_id);
        r->ex = NULL;
    }
    sim_req_release(r);
}

/* All choices finished: send what is left and end the exchange. */
void sim_req_finish_response(struct sim_req *r)
{
    if (!r->ex) {
        sim_req_release(r);
        return;
    }
    if (r->stream) {
        struct buf b = BUF_INIT;
        if (r->oreq.include_usage)
            sim_render_usage_chunk(r, &b);
        sse_append_data(&b, "[DONE]", 6);
        http_stream_write(r->ex, b.data, b.len);
        buf_free(&b);
        http_stream_end(r->ex);
    } else {
        const char *kv = NULL;
        if (r->pd == SIM_PD_PREFILL)
            kv = sim_pd_pin(r, &r->choices[0]);
        struct buf b = BUF_INIT;
        sim_render_response(r, kv, &b);
        respond(r->s, r->ex, 200, "application/json", b.data, b.len, r->request_id);
        buf_free(&b);
    }
    r->ex = NULL;
    sim_req_release(r);
}

/* --- engine callbacks -------------------------------------------------------------- */

/* What clients observe: engine time, or later when an overloaded sim runs behind it.
 * Latency metrics use this so they never look better than what was delivered. Engine
 * callbacks only run inside step_end, where the driver has just read the wall clock. */
static uint64_t real_time(const struct sim_rank *k, uint64_t engine_now)
{
    return k->step_wall > engine_now ? k->step_wall : engine_now;
}

static void cb_admit(void *user, uint32_t cached_tokens, uint64_t now)
{
    struct sim_choice *c = user;
    c->cached_tokens = cached_tokens;
    c->t_admit = real_time(c->req->rank, now);
}

static void cb_kv_load(void *user, uint64_t id, uint32_t tokens, uint64_t now)
{
    struct sim_choice *c = user;
    sim_pd_on_kv_load(c->req, id, tokens);
}

static void cb_tokens(void *user, uint32_t first, uint32_t n, uint64_t now)
{
    struct sim_choice *c = user;
    struct sim_req *r = c->req;
    if (r->released)
        return;
    struct sim_metrics *m = r->rank->m;
    uint64_t t = real_time(r->rank, now);
    if (c->produced == 0)
        c->t_first = t;
    else
        metrics_histogram_observe(m->itl, (double)(t - c->t_last) / 1e9);
    c->t_last = t;
    c->produced = first + n;
    bool drop = r->fault == SIM_FAULT_CLOSE_AFTER && c->produced >= r->close_after;
    if (drop)
        c->produced = r->close_after; /* exactly N tokens reach the client */
    if (r->stream && r->ex) {
        struct buf *b = &r->s->scratch;
        buf_reset(b);
        sim_render_token_chunks(r, c, b);
        if (b->len)
            sim_req_write(r, b->data, b->len);
    }
    if (drop && r->ex) {
        LOG_I(LOG_C, "request %s: fault close-after-%u-tokens: dropping the connection",
              r->request_id, r->close_after);
        http_exchange_close(r->ex);
        r->ex = NULL;
        sim_metrics_on_abort(r->rank, r->n_choices - r->n_done);
        sim_req_release(r);
    }
}

static void cb_preempt(void *user, uint64_t now)
{
    struct sim_choice *c = user;
    LOG_D(LOG_C, "request %s: preempted (KV cache full), will recompute", c->req->request_id);
}

static void cb_finish(void *user, enum sim_finish reason, uint64_t now)
{
    struct sim_choice *c = user;
    struct sim_req *r = c->req;
    if (r->released)
        return;
    now = real_time(r->rank, now);
    c->finish = reason;
    c->done = true;
    if (r->pd != SIM_PD_PREFILL)
        c->seq = 0; /* the engine freed it; a prefill keeps it pinned (pd.c) */
    r->n_done++;
    sim_metrics_on_finish(r->s, r, c, now);
    if (r->stream && r->ex && !c->finish_sent) {
        /* The last token chunk carries finish_reason; only a sequence the engine ended
         * early needs a chunk of its own. */
        struct buf b = BUF_INIT;
        sim_render_finish_chunk(r, c, &b);
        sim_req_write(r, b.data, b.len);
        buf_free(&b);
    }
    if (r->n_done == r->n_choices)
        sim_req_finish_response(r);
}

static const struct sim_engine_ops engine_ops = {
    .on_admit = cb_admit,
    .on_kv_load = cb_kv_load,
    .on_tokens = cb_tokens,
    .on_preempt = cb_preempt,
    .on_finish = cb_finish,
};

/* --- generation requests ------------------------------------------------------------ */

static bool model_known(struct sim_server *s, const char *model)
{
    for (size_t i = 0; i < s->cfg->n_served; i++) {
        if (strcmp(s->cfg->served_names[i], model) == 0)
            return true;
    }
    return false;
}

/* x-fault header or --failure-rate. Returns true when the request was answered. */
static bool inject_fault(struct sim_server *s, struct sim_req *r, const char *fault)
{
    if (!fault && s->cfg->failure_rate > 0) {
        double u = (double)(hash_rand_next(&s->rng) >> 11) / (double)(1ull << 53);
        if (u < s->cfg->failure_rate) {
            int code = s->cfg->failure_types[hash_rand_below(&s->rng, s->cfg->n_failure_types)];
            sim_metrics_count(s->m.faults, "failure-rate");
            sim_req_fail(r, code, NULL, "injected failure (--failure-rate): %s",
                         http_status_text(code));
            return true;
        }
    }
    if (!fault || !*fault)
        return false;
    /* Counted under the parsed kind, never the raw header (bounded label values). */
    int code;
    unsigned n;
    char tail;
    if (sscanf(fault, "error-%d%c", &code, &tail) == 1 && code >= 400 && code <= 599) {
        char kind[16];
        snprintf(kind, sizeof kind, "error-%d", code);
        sim_metrics_count(s->m.faults, kind);
        sim_req_fail(r, code, NULL, "injected failure (x-fault: %s)", fault);
        return true;
    }
    if (strcmp(fault, "hang") == 0) {
        sim_metrics_count(s->m.faults, "hang");
        r->fault = SIM_FAULT_HANG;
        return true; /* never answered; released when the client leaves */
    }
    if (sscanf(fault, "close-after-%u-tokens%c", &n, &tail) == 1 ||
        sscanf(fault, "close-after-%u%c", &n, &tail) == 1) {
        sim_metrics_count(s->m.faults, "close-after");
        r->fault = SIM_FAULT_CLOSE_AFTER;
        r->close_after = n;
        return false;
    }
    if (strcmp(fault, "slow") == 0) {
        sim_metrics_count(s->m.faults, "slow");
        r->fault = SIM_FAULT_SLOW;
        return false;
    }
    sim_req_fail(r, 400, "x-fault",
                 "unknown x-fault '%s' (error-<status>, hang, close-after-<N>-tokens, slow)",
                 fault);
    return true;
}

#define SIM_MAX_PLANNED_TOKENS (8u << 20)

static bool prepare_choices(struct sim_server *s, struct sim_req *r)
{
    const struct openai_request *q = &r->oreq;
    uint32_t max_len = s->cfg->engine.max_model_len;
    uint64_t planned = 0;
    if (q->n_prompts * q->n > 4096) {
        sim_req_fail(r, 400, "n", "%zu prompts x n=%u is more than 4096 choices", q->n_prompts,
                     q->n);
        return false;
    }
    /* Over the context length, the per-prompt check below says so in vLLM's words. */
    if (q->max_tokens > 0 && q->max_tokens <= (long long)max_len &&
        (uint64_t)q->max_tokens > SIM_MAX_PLANNED_TOKENS / (q->n_prompts * q->n)) {
        sim_req_fail(r, 400, "max_tokens",
                     "the request asks for more than %u output tokens in all (prompts x n x "
                     "max_tokens)",
                     SIM_MAX_PLANNED_TOKENS);
        return false;
    }
    /* vLLM numbers choices prompt-major: index = prompt * n + sample. */
    r->n_choices = (uint32_t)(q->n_prompts * q->n);
    r->choices = arena_calloc(&r->arena, r->n_choices * sizeof *r->choices);
    for (uint32_t i = 0; i < r->n_choices; i++) {
        struct sim_choice *c = &r->choices[i];
        const struct openai_prompt *p = &q->prompts[i / q->n];
        c->req = r;
        c->index = i;
        c->prompt_index = i / q->n;
        c->sample = i % q->n;
        if (p->ids) {
            c->n_prompt = (uint32_t)p->n_ids;
            c->prompt_ids = xmalloc((p->n_ids ? p->n_ids : 1) * sizeof *c->prompt_ids);
            memcpy(c->prompt_ids, p->ids, p->n_ids * sizeof *c->prompt_ids);
        } else {
            struct tok_result t = {0};
            tok_encode(p->text, p->text_len, TOK_DEFAULT_VOCAB, &t);
            c->n_prompt = (uint32_t)t.n;
            c->prompt_ids = xmalloc((t.n ? t.n : 1) * sizeof *c->prompt_ids);
            for (size_t k = 0; k < t.n; k++)
                c->prompt_ids[k] = t.pieces[k].id;
            tok_result_free(&t);
            c->prompt_text = p->text;
            c->prompt_text_len = p->text_len;
        }
        if (c->n_prompt == 0) {
            sim_req_fail(r, 400, q->api == OPENAI_CHAT ? "messages" : "prompt",
                         "the prompt is empty (0 tokens)");
            return false;
        }
        if (c->n_prompt > max_len) {
            sim_req_fail(r, 400, q->api == OPENAI_CHAT ? "messages" : "prompt",
                         "This model's maximum context length is %u tokens. However, your "
                         "request has %u input tokens. Please reduce the length of the input.",
                         max_len, c->n_prompt);
            return false;
        }
        long long want = q->echo_only ? 1 : q->max_tokens;
        if (want < 0)
            want = q->api == OPENAI_COMPLETIONS ? 16 : (long long)(max_len - c->n_prompt);
        if (want > (long long)(max_len - c->n_prompt)) { /* no overflow: n_prompt <= max_len */
            if (q->max_tokens >= 0) {
                sim_req_fail(r, 400, "max_tokens",
                             "This model's maximum context length is %u tokens. However, you "
                             "requested %llu tokens (%u in the input, %lld in the completion). "
                             "Please reduce the length of the input or completion.",
                             max_len, (unsigned long long)c->n_prompt + (unsigned long long)want,
                             c->n_prompt, want);
                return false;
            }
            want = max_len - c->n_prompt;
        }
        if (want < 1) {
            sim_req_fail(r, 400, "prompt",
                         "the prompt (%u tokens) leaves no room for output within the maximum "
                         "context length of %u tokens",
                         c->n_prompt, max_len);
            return false;
        }
        if (q->min_tokens > want) {
            sim_req_fail(r, 400, "min_tokens",
                         "'min_tokens' (%lld) must be less than or equal to 'max_tokens' (%lld)",
                         q->min_tokens, want);
            return false;
        }
        if (r->pd == SIM_PD_PREFILL)
            want = 1; /* the prefill leg produces exactly one token */
        if (q->api == OPENAI_CHAT && q->max_tokens < 0 && want > 4096)
            want = 4096; /* an open-ended chat still ends; keeps random lengths sane */
        /* Output is decided up front (~25 bytes a token): bound one request's share. */
        planned += (uint64_t)want;
        if (planned > SIM_MAX_PLANNED_TOKENS) {
            sim_req_fail(r, 400, "max_tokens",
                         "the request asks for more than %u output tokens in all (prompts x "
                         "n x max_tokens)",
                         SIM_MAX_PLANNED_TOKENS);
            return false;
        }
        if (q->echo_only || !sim_shape_output(r, c, (uint32_t)want))
            sim_output_generate(s->cfg, r, c, (uint32_t)want, &c->out);
    }
    return true;
}

static void start_engine(struct sim_req *r)
{
    struct sim_server *s = r->s;
    uint64_t now = clock_monotonic_ns();
    for (uint32_t i = 0; i < r->n_choices; i++) {
        struct sim_choice *c = &r->choices[i];
        struct sim_seq_spec spec = {
            .prompt_ids = c->prompt_ids,
            .n_prompt = c->n_prompt,
            .output_ids = c->out.ids,
            .n_output = c->out.n,
            .finish = c->out.finish,
            .pin_on_finish = r->pd == SIM_PD_PREFILL,
            .remote_tokens = r->pd == SIM_PD_DECODE ? c->n_prompt : 0,
            .user = c,
        };
        c->seq = sim_engine_add(r->rank->engine, &spec, now);
        if (!c->seq) {
            sim_req_fail(r, 400, "prompt",
                         "the prompt needs %u KV blocks but the cache has only %u",
                         (c->n_prompt + s->cfg->engine.block_size - 1) /
                             s->cfg->engine.block_size,
                         s->cfg->engine.num_gpu_blocks);
            return;
        }
    }
    if (r->stream) {
        add_common_headers(s, r->ex, r->request_id);
        access_log(s, r->ex, 200);
        http_stream_begin(r->ex, 200, "text/event-stream");
    }
    kick_rank(r->rank);
}

static void on_slow_timer(uv_timer_t *t)
{
    struct sim_req *r = t->data;
    start_engine(r);
}

/* The rank a request runs on: X-data-parallel-rank when given (vLLM's header), else the
 * least loaded (running + waiting). NULL after a 400. */
static struct sim_rank *pick_rank(struct sim_server *s, struct sim_req *r,
                                  const struct http_request *hq)
{
    const char *h = http_headers_get(&hq->headers, "x-data-parallel-rank");
    if (h) {
        char *end;
        long v = strtol(h, &end, 10);
        if (!*h || *end || end == h) {
            sim_req_fail(r, 400, NULL, "X-data-parallel-rank: '%s' is not an integer", h);
            return NULL;
        }
        if (v < 0 || v >= (long)s->n_ranks) {
            sim_req_fail(r, 400, NULL, "data_parallel_rank %ld is out of range [0, %u).", v,
                         s->n_ranks);
            return NULL;
        }
        return &s->ranks[v];
    }
    /* Ties rotate (the scan starts one further each request), so sequential requests
     * spread over idle ranks. */
    struct sim_rank *best = &s->ranks[0];
    uint32_t best_load = UINT32_MAX;
    for (uint32_t j = 0; j < s->n_ranks && s->n_ranks > 1; j++) {
        struct sim_rank *k = &s->ranks[(j + s->n_requests) % s->n_ranks];
        struct sim_engine_stats st;
        sim_engine_stats(k->engine, &st);
        if (st.running + st.waiting < best_load) {
            best_load = st.running + st.waiting;
            best = k;
        }
    }
    return best;
}

/* --- E/P/D encoder (--mm-encoder-only) ----------------------------------------------- */

/* The items are encoded: answer an empty one-token completion (what llm-d's sidecar waits
 * for; the embeddings would go to the EC connector's storage). */
static void on_encode_timer(uv_timer_t *t)
{
    struct sim_req *r = t->data;
    struct sim_server *s = r->s;
    metrics_counter_add(s->m.mm_encoded, r->n_mm);
    LOG_I(LOG_C, "request %s: encoded %u multimodal item%s in %.1f ms", r->request_id, r->n_mm,
          r->n_mm == 1 ? "" : "s", (double)(clock_monotonic_ns() - r->t_arrival) / 1e6);
    uint32_t prompt = 0;
    for (size_t i = 0; i < r->oreq.n_prompts; i++)
        prompt += r->oreq.prompts[i].ids
                      ? (uint32_t)r->oreq.prompts[i].n_ids
                      : (uint32_t)tok_count(r->oreq.prompts[i].text, r->oreq.prompts[i].text_len);
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:n, s:s, s:n}], "
                  "s:{s:I, s:I, s:i}}",
                  "id", r->id, "object", "chat.completion", "created", (json_int_t)r->created,
                  "model", r->oreq.model ? r->oreq.model : s->cfg->model, "choices", "index", 0,
                  "message", "role", "assistant", "content", "", "logprobs", "finish_reason",
                  "length", "stop_reason", "usage", "prompt_tokens", (json_int_t)prompt,
                  "total_tokens", (json_int_t)prompt, "completion_tokens", 0);
    struct buf b = BUF_INIT;
    json_dump_to(&b, j);
    json_decref(j);
    if (r->ex) {
        respond(s, r->ex, 200, "application/json", b.data, b.len, r->request_id);
        r->ex = NULL;
    }
    buf_free(&b);
    sim_req_release(r);
}

static void start_encode(struct sim_server *s, struct sim_req *r)
{
    double ms = (double)r->n_mm * s->cfg->mm_encode_s * s->cfg->engine.time_scale * 1e3;
    uv_timer_start(&r->timer, on_encode_timer, (uint64_t)(ms + 0.5), 0);
}

static void handle_generate(struct sim_server *s, struct http_exchange *ex, enum openai_api api)
{
    const struct http_request *hq = http_exchange_request(ex);
    struct sim_req *r = xcalloc(1, sizeof *r);
    r->s = s;
    r->rank = &s->ranks[0];
    r->ex = ex;
    arena_init(&r->arena, 4096);
    uv_timer_init(s->loop, &r->timer);
    r->timer.data = r;
    r->t_arrival = clock_monotonic_ns();
    r->created = clock_realtime_ns() / 1000000000ull;
    http_exchange_on_abort(ex, on_client_abort, r);
    s->n_requests++;

    const char *rid = http_headers_get(&hq->headers, "x-request-id");
    char uuid[37];
    if (!rid || !*rid) {
        hash_uuid4(uuid);
        rid = uuid;
    }
    r->request_id = arena_strdup(&r->arena, rid);
    r->id = arena_sprintf(&r->arena, "%s-%s", api == OPENAI_CHAT ? "chatcmpl" : "cmpl", rid);

    if (s->pod_mode == SIM_POD_REFUSE) {
        sim_req_fail(r, 503, NULL, "the engine is refusing requests (fault mode 'refuse')");
        return;
    }
    if (s->pod_mode == SIM_POD_HANG)
        return; /* held until the client gives up */
    r->rank = pick_rank(s, r, hq);
    if (!r->rank) {
        r->rank = &s->ranks[0]; /* for the release */
        return;
    }

    struct openai_error err;
    if (!openai_request_parse(api, hq->body, hq->body_len, &r->arena, &r->oreq, &err)) {
        respond_error(s, ex, &err, r->request_id);
        r->ex = NULL;
        sim_req_release(r);
        return;
    }
    if (r->oreq.model && !model_known(s, r->oreq.model)) {
        sim_req_fail(r, 404, "model", "The model `%s` does not exist.", r->oreq.model);
        return;
    }
    r->stream = r->oreq.stream;
    if (inject_fault(s, r, http_headers_get(&hq->headers, "x-fault")))
        return;
    if (api == OPENAI_CHAT) {
        r->n_mm = (uint32_t)openai_count_mm_parts(json_object_get(r->oreq.root, "messages"), true);
        if (r->n_mm)
            metrics_counter_add(s->m.mm_items, r->n_mm);
    }
    if (s->cfg->mm_encoder_only && api == OPENAI_CHAT) {
        start_encode(s, r);
        return;
    }
    if (!sim_pd_prepare(r))
        return;
    if (!sim_shape_prepare(r))
        return;
    if (!prepare_choices(s, r))
        return;
    if (r->fault == SIM_FAULT_SLOW) {
        uint64_t ms = (uint64_t)(s->cfg->fault_slow_s * s->cfg->engine.time_scale * 1e3);
        uv_timer_start(&r->timer, on_slow_timer, ms, 0);
        return;
    }
    start_engine(r);
}

/* --- other endpoints ---------------------------------------------------------------- */

/* vLLM's ModelCard. */
static void model_card(struct sim_server *s, const char *name, struct buf *b)
{
    buf_append_str(b, "{\"id\":");
    json_quote(b, name, strlen(name));
    buf_printf(b, ",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"vllm\",\"root\":",
               (unsigned long long)s->created);
    json_quote(b, s->cfg->model_path, strlen(s->cfg->model_path));
    buf_printf(b, ",\"parent\":null,\"max_model_len\":%u,\"permission\":[]}",
               s->cfg->engine.max_model_len);
}

static void handle_models(struct sim_server *s, struct http_exchange *ex)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < s->cfg->n_served; i++) {
        if (i)
            buf_append_char(&b, ',');
        model_card(s, s->cfg->served_names[i], &b);
    }
    buf_append_str(&b, "]}");
    respond(s, ex, 200, "application/json", b.data, b.len, NULL);
    buf_free(&b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* GET /v1/models/{id}: one card; the id may contain '/' (as "facebook/opt-125m" does)
 * or arrive percent-encoded. */
static void handle_model(struct sim_server *s, struct http_exchange *ex, const char *rest)
{
    size_t len = strcspn(rest, "?");
    char *id = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (rest[i] == '%' && i + 2 < len && (hi = hexval(rest[i + 1])) >= 0 &&
            (lo = hexval(rest[i + 2])) >= 0) {
            id[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            id[n++] = rest[i];
        }
    }
    id[n] = '\0';
    if (strlen(id) != n || !model_known(s, id)) {
        char shown[256];
        snprintf(shown, sizeof shown, "%s", id);
        respond_errorf(s, ex, 404, "model", "The model `%s` does not exist.", shown);
    } else {
        struct buf b = BUF_INIT;
        model_card(s, id, &b);
        respond(s, ex, 200, "application/json", b.data, b.len, NULL);
        buf_free(&b);
    }
    free(id);
}

/* vLLM's GET /tokenizer_info: the tokenizer_config.json fields of the (pseudo)
 * tokenizer, plus its vocabulary size and the chat template the sim renders. */
static void handle_tokenizer_info(struct sim_server *s, struct http_exchange *ex)
{
    static const char chat_template[] =
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\\n"
        "{{ message['content'] }}<|im_end|>\\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}";
    struct buf b = BUF_INIT;
    buf_printf(&b,
               "{\"tokenizer_class\":\"TandemPseudoTokenizer\",\"model_max_length\":%u,"
               "\"vocab_size\":%u,\"bos_token\":\"<|endoftext|>\",\"eos_token\":"
               "\"<|endoftext|>\",\"unk_token\":\"<|endoftext|>\",\"pad_token\":null,"
               "\"eos_token_id\":%u,\"add_bos_token\":false,\"add_eos_token\":false,"
               "\"add_prefix_space\":false,\"clean_up_tokenization_spaces\":false,"
               "\"padding_side\":\"right\",\"truncation_side\":\"right\","
               "\"max_piece_bytes\":4,\"chat_template\":\"%s\"}",
               s->cfg->engine.max_model_len, TOK_DEFAULT_VOCAB, TOK_EOS_ID, chat_template);
    respond(s, ex, 200, "application/json", b.data, b.len, NULL);
    buf_free(&b);
}

static void handle_tokenize(struct sim_server *s, struct http_exchange *ex)
{
    const struct http_request *hq = http_exchange_request(ex);
    struct errinfo je;
    json_t *root = json_parse(hq->body, hq->body_len, &je);
    if (!root || !json_is_object(root)) {
        respond_errorf(s, ex, 400, NULL, "%s", root ? "request body must be a JSON object" : je.msg);
        json_decref(root);
        return;
    }
    const char *model = NULL;
    struct buf text = BUF_INIT;
    struct openai_error err;
    bool ok = true;
    if (json_get_str(root, "model", &model, &je) < 0) {
        openai_error_set(&err, 400, "model", "%s", je.msg);
        ok = false;
    } else if (model && !model_known(s, model)) {
        openai_error_set(&err, 404, "model", "The model `%s` does not exist.", model);
        ok = false;
    } else if (json_object_get(root, "messages")) {
        ok = openai_render_chat(json_object_get(root, "messages"), &text, &err);
    } else {
        const json_t *p = json_object_get(root, "prompt");
        if (!json_is_string(p)) {
            openai_error_set(&err, 400, "prompt", "'prompt' (a string) or 'messages' is required");
            ok = false;
        } else {
            buf_append(&text, json_string_value(p), json_string_length(p));
        }
    }
    if (!ok) {
        respond_error(s, ex, &err, NULL);
    } else {
        struct tok_result t = {0};
        tok_encode(text.data ? text.data : "", text.len, TOK_DEFAULT_VOCAB, &t);
        struct buf b = BUF_INIT;
        buf_printf(&b, "{\"count\":%zu,\"max_model_len\":%u,\"tokens\":[", t.n,
                   s->cfg->engine.max_model_len);
        for (size_t i = 0; i < t.n; i++)
            buf_printf(&b, i ? ",%u" : "%u", t.pieces[i].id);
        buf_append_str(&b, "],\"token_strs\":null}");
        respond(s, ex, 200, "application/json", b.data, b.len, NULL);
        buf_free(&b);
        tok_result_free(&t);
    }
    buf_free(&text);
    json_decref(root);
}

static void handle_detokenize(struct sim_server *s, struct http_exchange *ex)
{
    const struct http_request *hq = http_exchange_request(ex);
    struct errinfo je;
    json_t *root = json_parse(hq->body, hq->body_len, &je);
    json_t *tokens = NULL;
    if (!root || !json_is_object(root)) {
        respond_errorf(s, ex, 400, NULL, "%s", root ? "request body must be a JSON object" : je.msg);
    } else if (json_get_arr(root, "tokens", &tokens, &je) <= 0) {
        respond_errorf(s, ex, 400, "tokens", "%s",
                       tokens ? je.msg : "'tokens' (a list of token ids) is required");
    } else {
        size_t n = json_array_size(tokens);
        uint32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            const json_t *v = json_array_get(tokens, i);
            ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
                 json_integer_value(v) <= 0x7fffffff;
            if (ok)
                ids[i] = (uint32_t)json_integer_value(v);
        }
        if (!ok) {
            respond_errorf(s, ex, 400, "tokens", "'tokens' must be a list of non-negative integers");
        } else {
            struct buf text = BUF_INIT, b = BUF_INIT;
            sim_detokenize(ids, n, &text);
            buf_append_str(&b, "{\"prompt\":");
            json_quote(&b, text.data ? text.data : "", text.len);
            buf_append_char(&b, '}');
            respond(s, ex, 200, "application/json", b.data, b.len, NULL);
            buf_free(&b);
            buf_free(&text);
        }
        free(ids);
    }
    json_decref(root);
}

static void on_die_timer(uv_timer_t *t)
{
    LOG_W(LOG_C, "fault mode 'die': exiting now");
    _exit(1);
}

static void handle_admin_fault(struct sim_server *s, struct http_exchange *ex)
{
    const struct http_request *hq = http_exchange_request(ex);
    struct errinfo je;
    json_t *root = json_parse(hq->body, hq->body_len, &je);
    const char *mode = NULL;
    if (!root || json_get_str(root, "mode", &mode, &je) <= 0) {
        respond_errorf(s, ex, 400, "mode",
                       "body must be {\"mode\": \"healthy|refuse|hang|die\"}");
        json_decref(root);
        return;
    }
    if (strcmp(mode, "healthy") == 0) {
        s->pod_mode = SIM_POD_HEALTHY;
    } else if (strcmp(mode, "refuse") == 0) {
        s->pod_mode = SIM_POD_REFUSE;
    } else if (strcmp(mode, "hang") == 0) {
        s->pod_mode = SIM_POD_HANG;
    } else if (strcmp(mode, "die") == 0) {
        static uv_timer_t die;
        if (!s->dying) {
            s->dying = true;
            uv_timer_init(s->loop, &die);
            uv_timer_start(&die, on_die_timer, 50, 0); /* let this answer go out first */
        }
    } else {
        respond_errorf(s, ex, 400, "mode", "unknown mode '%s' (healthy, refuse, hang, die)", mode);
        json_decref(root);
        return;
    }
    LOG_W(LOG_C, "fault mode set to '%s'", mode);
    struct buf b = BUF_INIT;
    buf_append_str(&b, "{\"mode\":");
    json_quote(&b, mode, strlen(mode));
    buf_append_char(&b, '}');
    respond(s, ex, 200, "application/json", b.data, b.len, NULL);
    buf_free(&b);
    json_decref(root);
}

static void handle(struct http_exchange *ex, void *ctx)
{
    struct sim_server *s = ctx;
    const struct http_request *q = http_exchange_request(ex);
    bool get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
    enum openai_api api;

    if (openai_api_from_path(q->path, &api)) {
        if (!post) {
            respond_errorf(s, ex, 405, NULL, "%s %s: use POST", q->method, q->path);
            return;
        }
        handle_generate(s, ex, api);
    } else if (strcmp(q->path, "/health") == 0 || strcmp(q->path, "/health/ready") == 0) {
        if (s->pod_mode == SIM_POD_HANG)
            return; /* a hung engine does not answer probes either (exchange closes later) */
        if (s->pod_mode == SIM_POD_REFUSE)
            respond_errorf(s, ex, 503, NULL, "engine is refusing requests");
        else
            respond(s, ex, 200, "application/json", "{}", 2, NULL);
    } else if (get && strcmp(q->path, "/metrics") == 0) {
        struct buf b = BUF_INIT;
        metrics_render(s->m.reg, &b);
        respond(s, ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
        buf_free(&b);
    } else if (get && strcmp(q->path, OPENAI_PATH_MODELS) == 0) {
        handle_models(s, ex);
    } else if (get && strncmp(q->path, OPENAI_PATH_MODELS "/", sizeof OPENAI_PATH_MODELS) == 0) {
        handle_model(s, ex, q->path + sizeof OPENAI_PATH_MODELS);
    } else if (get && strcmp(q->path, "/tokenizer_info") == 0) {
        handle_tokenizer_info(s, ex);
    } else if (get && strcmp(q->path, "/version") == 0) {
        static const char v[] = "{\"version\":\"tandem-sim " TANDEM_VERSION "\"}";
        respond(s, ex, 200, "application/json", v, sizeof v - 1, NULL);
    } else if (post && strcmp(q->path, "/tokenize") == 0) {
        handle_tokenize(s, ex);
    } else if (post && strcmp(q->path, "/detokenize") == 0) {
        handle_detokenize(s, ex);
    } else if (post && strcmp(q->path, "/kv/pull") == 0) {
        sim_pd_handle_pull(s, ex);
    } else if (post && strcmp(q->path, "/admin/fault") == 0) {
        handle_admin_fault(s, ex);
    } else {
        respond_errorf(s, ex, 404, NULL, "no route for %s %s", q->method, q->path);
    }
}

/* --- process ------------------------------------------------------------------------ */

static void on_stats_timer(uv_timer_t *t)
{
    sim_stats_log(t->data);
}

static void on_shutdown(void *ctx)
{
    struct sim_server *s = ctx;
    if (s->stopping)
        return;
    LOG_I(LOG_C, "shutting down");
    s->stopping = true;
    for (uint32_t i = 0; i < s->n_ranks; i++) {
        uv_timer_stop(&s->ranks[i].step_timer);
        uv_close((uv_handle_t *)&s->ranks[i].step_timer, NULL);
        uv_close((uv_handle_t *)&s->ranks[i].step_idle, NULL);
    }
    uv_close((uv_handle_t *)&s->stats_timer, NULL);
    sim_pd_free_all(s);
    http_server_stop(s->http, NULL, NULL);
    http_client_free(s->client);
    loop_shutdown_watch_close(s->loop);
}

static void free_ranks(struct sim_server *s)
{
    for (uint32_t i = 0; i < s->n_ranks; i++) {
        sim_kvpub_free(s->ranks[i].kvpub);
        sim_engine_free(s->ranks[i].engine);
        if (i > 0)
            free(s->ranks[i].m);
    }
    free(s->ranks);
    s->ranks = NULL;
}

int sim_main(int argc, char **argv)
{
    struct sim_config cfg;
    int rc = sim_config_parse(&cfg, argc, argv);
    if (rc != 0) {
        sim_config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);

    struct sim_server *s = xcalloc(1, sizeof *s);
    s->cfg = &cfg;
    s->loop = xmalloc(sizeof *s->loop);
    uv_loop_init(s->loop);
    hash_uuid4(s->engine_id);
    s->created = clock_realtime_ns() / 1000000000ull;
    s->rng = cfg.seed ^ clock_monotonic_ns();
    s->n_ranks = (uint32_t)cfg.data_parallel_size;
    s->ranks = xcalloc(s->n_ranks, sizeof *s->ranks);
    for (uint32_t i = 0; i < s->n_ranks; i++) {
        struct sim_rank *k = &s->ranks[i];
        k->s = s;
        k->index = i;
        snprintf(k->label, sizeof k->label, "%u", i);
        k->engine = sim_engine_new(&cfg.engine, &engine_ops);
        k->m = i == 0 ? &s->m : xcalloc(1, sizeof *k->m);
    }
    for (uint32_t i = 0; cfg.kv_events && i < s->n_ranks; i++) {
        struct sim_kvpub_config kc = {.endpoint = cfg.kv_events_endpoint,
                                      .topic = cfg.kv_events_topic,
                                      .hwm = cfg.kv_events_hwm,
                                      .dp_rank = i,
                                      .hash_algo = cfg.prefix_caching_hash_algo,
                                      .hash_seed = getenv("PYTHONHASHSEED")};
        char kerr[256];
        s->ranks[i].kvpub = sim_kvpub_new(&kc, s->ranks[i].engine, kerr, sizeof kerr);
        if (!s->ranks[i].kvpub) {
            fprintf(stderr, "tandem sim: --kv-events-config: %s\n", kerr);
            free_ranks(s);
            uv_loop_close(s->loop);
            free(s->loop);
            free(s);
            sim_config_free(&cfg);
            return 1;
        }
        LOG_I(LOG_C, "KV events: engine %u publishes on %s topic '%s'", i,
              sim_kvpub_endpoint(s->ranks[i].kvpub), cfg.kv_events_topic);
    }
    sim_lm_period(); /* builds the model's tables now, not inside the first request's TTFT */
    sim_metrics_init(s);

    struct http_server_config hc = {
        .host = cfg.host,
        .port = cfg.port,
        .max_body_bytes = (size_t)cfg.max_body_bytes,
        .read_timeout_ms = (uint64_t)cfg.read_timeout_ms,
        .handler = handle,
        .handler_ctx = s,
        .server_name = "sim",
    };
    int err = http_server_start(s->loop, &hc, &s->http);
    if (err) {
        fprintf(stderr, "tandem sim: cannot listen on %s:%d: %s\n", cfg.host, cfg.port,
                uv_strerror(err));
        free_ranks(s);
        metrics_registry_free(s->m.reg);
        uv_run(s->loop, UV_RUN_DEFAULT); /* the failed server frees itself in close callbacks */
        uv_loop_close(s->loop);
        free(s->loop);
        free(s);
        sim_config_free(&cfg);
        return 1;
    }
    cfg.port = http_server_port(s->http);
    struct http_client_config cc = {0};
    s->client = http_client_new(s->loop, &cc);

    for (uint32_t i = 0; i < s->n_ranks; i++) {
        uv_timer_init(s->loop, &s->ranks[i].step_timer);
        s->ranks[i].step_timer.data = &s->ranks[i];
        uv_idle_init(s->loop, &s->ranks[i].step_idle);
        s->ranks[i].step_idle.data = &s->ranks[i];
    }
    uv_timer_init(s->loop, &s->stats_timer);
    s->stats_timer.data = s;
    s->log_last_ns = clock_monotonic_ns();
    if (cfg.stats_interval_s > 0) {
        uint64_t ms = (uint64_t)(cfg.stats_interval_s * 1e3);
        uv_timer_start(&s->stats_timer, on_stats_timer, ms, ms);
    }
    loop_on_shutdown(s->loop, on_shutdown, s);

    LOG_I(LOG_C,
          "tandem sim serving model=%s on %s:%d profile=%s time-scale=%g blocks=%u x %u tokens "
          "max-num-seqs=%u max-model-len=%u mode=%s engine-id=%s data-parallel-size=%u",
          cfg.model, cfg.host, cfg.port, cfg.profile, cfg.engine.time_scale,
          cfg.engine.num_gpu_blocks, cfg.engine.block_size, cfg.engine.max_num_seqs,
          cfg.engine.max_model_len, cfg.mode == SIM_MODE_ECHO ? "echo" : "random", s->engine_id,
          s->n_ranks);
    /* Tests and scripts wait for this exact line. */
    printf("tandem sim ready on %s:%d\n", cfg.host, cfg.port);
    fflush(stdout);

    loop_run_and_close(s->loop);
    free_ranks(s);
    metrics_registry_free(s->m.reg);
    buf_free(&s->scratch);
    uv_loop_close(s->loop);
    free(s->loop);
    free(s);
    sim_config_free(&cfg);
    return 0;
}

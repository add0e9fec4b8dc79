/* tandem bench: the driver. Arrivals (Poisson with burstiness, constant, or all at
 * once), an optional concurrency cap, rate ladders, a streaming client that timestamps
 * every SSE content chunk, a progress line, the summary, the result JSON and the HTML
 * report. One libuv loop on one thread; requests are sent from a timer that fires at
 * the next due arrival (1 ms resolution; lateness shows up as schedule delay, and
 * latencies are measured from the actual send). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/json.h"
#include "bench/bench.h"
#include "openai/openai.h"
#include "net/http_client.h"
#include "net/sse.h"
#include "net/url.h"

#define MAX_STAGES 32

struct opts {
    const char *base_url, *host, *endpoint, *model, *label, *arrival;
    long long port;
    struct bench_dataset_opts ds;
    long long num_prompts, max_concurrency;
    double request_rate, burstiness, duration, stage_duration, timeout;
    const char *request_rate_str, *rate_ladder, *goodput, *percentile_metrics,
        *metric_percentiles;
    const char *result_filename, *result_dir, *html;
    const char *timeline_url, *timeline_metrics;
    double timeline_interval;
    bool ignore_eos, save_result, save_detailed, no_stream, disable_tqdm;
};

struct bench;

struct inflight {
    struct bench *b;
    size_t rec;       /* index into b->recs */
    uint64_t t_send;  /* ns, monotonic */
    uint64_t t_last;  /* last content chunk */
    struct sse_parser sse;
    struct buf err_body; /* non-2xx body, for the error message */
    struct buf body;     /* non-streaming body */
    double *itl;
    size_t n_itl, cap_itl;
    uint32_t chunks;
    bool usage_seen;
    bool chat;
};

struct bench {
    struct opts *o;
    uv_loop_t *loop;
    struct http_client *client;
    struct url url;
    char path[1024];
    const struct bench_dataset *ds;
    struct buf *bodies; /* request body per dataset prompt */
    bool chat;
    /* schedule */
    double rates[MAX_STAGES];
    size_t n_stages;
    uint64_t rng;
    uint64_t t0;          /* ns */
    double next_due;      /* s from t0: the next arrival */
    size_t stage;         /* stage of the next arrival */
    size_t n_sched;       /* arrivals scheduled so far */
    size_t n_total;       /* 0 = until time runs out */
    double t_stop;        /* s: no arrivals at or after (duration / ladder); INFINITY */
    bool arrivals_done;
    /* queue of arrivals waiting for a concurrency slot (record indexes) */
    size_t *queue;
    size_t q_head, q_len, q_cap;
    /* records */
    struct bench_record *recs;
    size_t n_recs, cap_recs;
    size_t in_flight, finished, errors;
    uv_timer_t tick, progress;
    bool tty;
    bool closing;
    /* --timeline-url: a metrics page sampled every --timeline-interval */
    uv_timer_t sampler;
    struct url tl_url;
    char *tl_names_buf;
    const char *tl_names[BENCH_TIMELINE_MAX_SERIES];
    size_t n_tl_names;
    struct http_call *tl_call;
    struct bench_timeline timeline;
};

static double now_s(const struct bench *b)
{
    return (double)(clock_monotonic_ns() - b->t0) / 1e9;
}

/* ---- arrivals ------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* (0, 1) */
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s)
{
    return sqrt(-2.0 * log(rng_unit(s))) * cos(2.0 * M_PI * rng_unit(s));
}

/* Gamma(shape k, scale 1) by Marsaglia and Tsang; k < 1 boosted by U^(1/k). */
static double rng_gamma(uint64_t *s, double k)
{
    if (k < 1.0)
        return rng_gamma(s, k + 1.0) * pow(rng_unit(s), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(s), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = rng_unit(s);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

/* vLLM's arrivals: gaps drawn from Gamma(burstiness, 1 / (rate * burstiness)), so the
 * mean rate is `rate` and burstiness 1 is Poisson; --arrival constant spaces evenly. */
static double next_gap(struct bench *b, double rate)
{
    if (isinf(rate))
        return 0;
    if (b->o->arrival && strcmp(b->o->arrival, "constant") == 0)
        return 1.0 / rate;
    double k = b->o->burstiness;
    return rng_gamma(&b->rng, k) / (rate * k);
}

/* ---- one request ------------------------------------------------------------------------ */

static void add_itl(struct inflight *f, double gap)
{
    if (f->n_itl == f->cap_itl) {
        f->cap_itl = f->cap_itl ? f->cap_itl * 2 : 64;
        f->itl = xrealloc(f->itl, f->cap_itl * sizeof *f->itl);
    }
    f->itl[f->n_itl++] = gap;
}

static void take_usage(struct inflight *f, const json_t *usage)
{
    struct bench_record *r = &f->b->recs[f->rec];
    json_t *v;
    if ((v = json_object_get(usage, "prompt_tokens")) && json_is_integer(v))
        r->input_tokens = (uint32_t)json_integer_value(v);
    if ((v = json_object_get(usage, "completion_tokens")) && json_is_integer(v)) {
        r->output_tokens = (uint32_t)json_integer_value(v);
        f->usage_seen = true;
    }
    json_t *d = json_object_get(usage, "prompt_tokens_details");
    if (json_is_object(d) && (v = json_object_get(d, "cached_tokens")) && json_is_integer(v)) {
        r->cached_tokens = (uint32_t)json_integer_value(v);
        r->has_cached = true;
    }
}

/* The text a chunk carries: choices[0].text (completions) or .delta.content (chat). */
static bool chunk_has_content(const json_t *ev, bool chat)
{
    const json_t *c0 = json_array_get(json_object_get(ev, "choices"), 0);
    if (!c0)
        return false;
    const json_t *t = chat ? json_object_get(json_object_get(c0, "delta"), "content")
                           : json_object_get(c0, "text");
    return json_is_string(t) && json_string_length(t) > 0;
}

static void on_event(const char *data, size_t len, void *ctx)
{
    struct inflight *f = ctx;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return;
    uint64_t t = clock_monotonic_ns();
    json_t *ev = json_loadb(data, len, 0, NULL);
    if (!ev)
        return;
    if (chunk_has_content(ev, f->chat)) {
        struct bench_record *r = &f->b->recs[f->rec];
        if (f->chunks == 0)
            r->ttft = (double)(t - f->t_send) / 1e9;
        else
            add_itl(f, (double)(t - f->t_last) / 1e9);
        f->chunks++;
        f->t_last = t;
    }
    json_t *usage = json_object_get(ev, "usage");
    if (json_is_object(usage))
        take_usage(f, usage);
    json_decref(ev);
}

static void on_head(struct http_call *c, int status, const struct http_headers *h, void *ctx)
{
    (void)c;
    struct inflight *f = ctx;
    struct bench_record *r = &f->b->recs[f->rec];
    r->status = status;
    const char *pod = http_headers_get(h, "x-inference-pod");
    if (pod)
        snprintf(r->pod, sizeof r->pod, "%s", pod);
}

static void on_body(struct http_call *c, const char *data, size_t len, void *ctx)
{
    (void)c;
    struct inflight *f = ctx;
    struct bench_record *r = &f->b->recs[f->rec];
    if (r->status < 200 || r->status > 299) {
        if (f->err_body.len < 1024)
            buf_append(&f->err_body, data, len < 1024 ? len : 1024);
        return;
    }
    if (f->b->o->no_stream)
        buf_append(&f->body, data, len);
    else
        sse_parser_feed(&f->sse, data, len, on_event, f);
}

static void pump(struct bench *b);

/* "HTTP 503: no endpoint available" from an OpenAI error body, else the raw start. */
static void http_error_text(struct inflight *f, char *out, size_t cap, int status)
{
    const char *msg = NULL;
    json_t *j = f->err_body.len ? json_loadb(f->err_body.data, f->err_body.len, 0, NULL) : NULL;
    if (j) {
        const json_t *e = json_object_get(j, "error");
        msg = json_string_value(json_is_object(e) ? json_object_get(e, "message")
                                                  : json_object_get(j, "message"));
    }
    if (msg)
        snprintf(out, cap, "HTTP %d: %s", status, msg);
    else if (f->err_body.len)
        snprintf(out, cap, "HTTP %d: %.*s", status, (int)(f->err_body.len < 100 ? f->err_body.len : 100),
                 f->err_body.data);
    else
        snprintf(out, cap, "HTTP %d", status);
    json_decref(j);
}

static void on_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    (void)c;
    struct inflight *f = ctx;
    struct bench *b = f->b;
    struct bench_record *r = &b->recs[f->rec];
    uint64_t t = clock_monotonic_ns();
    r->e2el = (double)(t - f->t_send) / 1e9;
    r->status = status;
    if (err != HTTP_CALL_OK) {
        if (err == HTTP_CALL_ECONNECT)
            snprintf(r->error, sizeof r->error, "cannot connect to %.64s:%d (%s)",
                     b->url.host, b->url.port, http_call_error_str(err));
        else
            snprintf(r->error, sizeof r->error, "%s", http_call_error_str(err));
    } else if (status < 200 || status > 299) {
        http_error_text(f, r->error, sizeof r->error, status);
    } else if (b->o->no_stream) {
        json_t *j = json_loadb(f->body.data ? f->body.data : "", f->body.len, 0, NULL);
        if (!j) {
            snprintf(r->error, sizeof r->error, "invalid JSON response");
        } else {
            r->ok = true;
            r->ttft = r->e2el;
            json_t *usage = json_object_get(j, "usage");
            if (json_is_object(usage))
                take_usage(f, usage);
            json_decref(j);
        }
    } else if (f->chunks == 0) {
        /* vLLM's client: no content chunk means no TTFT: a failure, even with usage. */
        snprintf(r->error, sizeof r->error, "stream ended without any content");
    } else {
        r->ok = true;
        if (!f->usage_seen)
            r->output_tokens = f->chunks;
    }
    if (!r->ok)
        b->errors++;
    r->itl = f->itl;
    r->n_itl = f->n_itl;
    sse_parser_free(&f->sse);
    buf_free(&f->err_body);
    buf_free(&f->body);
    free(f);
    b->in_flight--;
    b->finished++;
    pump(b);
}

static const struct http_call_callbacks call_cbs = {on_head, on_body, on_done};

static void send_one(struct bench *b, size_t rec)
{
    struct bench_record *r = &b->recs[rec];
    size_t pi = rec % b->ds->n;
    struct inflight *f = xcalloc(1, sizeof *f);
    f->b = b;
    f->rec = rec;
    f->chat = b->chat;
    sse_parser_init(&f->sse);
    f->t_send = clock_monotonic_ns();
    r->t_send = (double)(f->t_send - b->t0) / 1e9;
    r->input_tokens = b->ds->prompts[pi].input_tokens;
    static const struct http_header hdr[] = {{"Content-Type", "application/json", 12, 16}};
    struct http_call_request q = {.method = "POST", .host = b->url.host, .port = b->url.port,
                                  .path = b->path, .headers = hdr, .n_headers = 1,
                                  .body = b->bodies[pi].data, .body_len = b->bodies[pi].len,
                                  .timeout_ms = (uint64_t)(b->o->timeout * 1000)};
    b->in_flight++;
    http_call_start(b->client, &q, &call_cbs, f);
}

/* ---- the schedule --------------------------------------------------------------------- */

static size_t new_record(struct bench *b, double t_sched, size_t stage)
{
    if (b->n_recs == b->cap_recs) {
        b->cap_recs = b->cap_recs ? b->cap_recs * 2 : 1024;
        b->recs = xrealloc(b->recs, b->cap_recs * sizeof *b->recs);
    }
    struct bench_record *r = &b->recs[b->n_recs];
    memset(r, 0, sizeof *r);
    r->t_sched = t_sched;
    r->ttft = -1;
    r->stage = (uint32_t)stage;
    return b->n_recs++;
}

static void queue_push(struct bench *b, size_t rec)
{
    if (b->q_len == b->q_cap) {
        size_t cap = b->q_cap ? b->q_cap * 2 : 256;
        size_t *q = xmalloc(cap * sizeof *q);
        for (size_t i = 0; i < b->q_len; i++)
            q[i] = b->queue[(b->q_head + i) % b->q_cap];
        free(b->queue);
        b->queue = q;
        b->q_cap = cap;
        b->q_head = 0;
    }
    b->queue[(b->q_head + b->q_len++) % b->q_cap] = rec;
}

static bool slot_free(const struct bench *b)
{
    return b->o->max_concurrency <= 0 || b->in_flight < (size_t)b->o->max_concurrency;
}

static void finish(struct bench *b)
{
    if (b->closing)
        return;
    b->closing = true;
    uv_timer_stop(&b->tick);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_timer_stop(&b->progress);
    uv_close((uv_handle_t *)&b->progress, NULL);
    uv_timer_stop(&b->sampler);
    uv_close((uv_handle_t *)&b->sampler, NULL);
    http_client_free(b->client); /* cancels a sample in flight (no callback) */
}

static void on_sample_page(enum http_call_error err, int status, const char *body, size_t len,
                           void *ctx)
{
    struct bench *b = ctx;
    b->tl_call = NULL;
    if (err == HTTP_CALL_OK && status == 200)
        bench_timeline_add(&b->timeline, now_s(b), body, len, b->tl_names, b->n_tl_names);
}

static void on_sampler(uv_timer_t *t)
{
    struct bench *b = t->data;
    if (b->tl_call || b->closing)
        return; /* the previous page is still coming: skip a beat */
    struct http_call_request req = {.method = "GET", .host = b->tl_url.host,
                                    .port = b->tl_url.port, .path = b->tl_url.path,
                                    .timeout_ms = 5000};
    b->tl_call = http_fetch(b->client, &req, 16 << 20, on_sample_page, b);
}

static void on_finish(uv_timer_t *t)
{
    finish(t->data);
}

static void on_tick(uv_timer_t *t);

/* Schedules every arrival due by now, sends what the concurrency cap allows, and arms
 * the timer for the next arrival. Called from the timer and after each completion. */
static void pump(struct bench *b)
{
    if (b->closing)
        return;
    double t = now_s(b);
    /* Past the end of a timed run or ladder: no more arrivals, whatever is drawn next. */
    if (!b->arrivals_done && (t >= b->t_stop || b->next_due >= b->t_stop))
        b->arrivals_done = true;
    while (!b->arrivals_done && b->next_due <= t) {
        if (b->n_total && b->n_sched >= b->n_total) {
            b->arrivals_done = true;
            break;
        }
        /* All at once with no count (a --duration run): a closed loop, one arrival per
         * free slot, or the queue would grow without bound. */
        bool closed = isinf(b->rates[b->stage]) && !b->n_total;
        if (closed && b->q_len + b->in_flight >= (size_t)b->o->max_concurrency)
            break;
        if (closed)
            b->next_due = t; /* due when the slot freed, not at the previous arrival */
        size_t rec = new_record(b, b->next_due, b->stage);
        b->n_sched++;
        queue_push(b, rec);
        double next = b->next_due + next_gap(b, b->rates[b->stage]);
        if (b->n_stages > 1) {
            double end = (double)(b->stage + 1) * b->o->stage_duration;
            if (next >= end && b->stage + 1 < b->n_stages) {
                b->stage++;
                next = end;
            }
        }
        if (isinf(b->rates[b->stage]) && !b->n_total && next < t)
            next = t; /* closed loop: arrivals are "now" when a slot frees */
        b->next_due = next;
    }
    if (!b->arrivals_done && b->n_total && b->n_sched >= b->n_total)
        b->arrivals_done = true;
    while (b->q_len && slot_free(b)) {
        size_t rec = b->queue[b->q_head];
        b->q_head = (b->q_head + 1) % b->q_cap;
        b->q_len--;
        send_one(b, rec);
    }
    if (b->arrivals_done && b->q_len == 0 && b->in_flight == 0) {
        /* Not from inside a client callback: the client is freed in finish. */
        uv_timer_start(&b->tick, on_finish, 0, 0);
        return;
    }
    if (!b->arrivals_done) {
        /* Wake for the next arrival, or at the end of the run if that comes first. */
        double wait = fmin(b->next_due, b->t_stop) - t;
        if (wait > 0)
            uv_timer_start(&b->tick, on_tick, (uint64_t)ceil(wait * 1000), 0);
    }
}

static void on_tick(uv_timer_t *t)
{
    pump(t->data);
}

static void on_progress(uv_timer_t *t)
{
    struct bench *b = t->data;
    double el = now_s(b);
    size_t total = b->n_total;
    char bar[41];
    size_t fill = 0;
    if (total)
        fill = b->finished * 40 / total;
    else if (isfinite(b->t_stop))
        fill = (size_t)(fmin(el / b->t_stop, 1.0) * 40);
    for (size_t i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[40] = '\0';
    char of[32] = "";
    if (total)
        snprintf(of, sizeof of, "/%zu", total);
    fprintf(stderr, "\r[%s] %zu%s done  %.1f req/s  %zu in flight  %zu errors ", bar,
            b->finished, of, el > 0 ? (double)b->finished / el : 0.0, b->in_flight, b->errors);
    fflush(stderr);
}

/* ---- set-up --------------------------------------------------------------------------- */

static void build_bodies(struct bench *b)
{
    const struct opts *o = b->o;
    b->bodies = xcalloc(b->ds->n, sizeof *b->bodies);
    for (size_t i = 0; i < b->ds->n; i++) {
        const struct bench_prompt *p = &b->ds->prompts[i];
        struct buf *out = &b->bodies[i];
        buf_printf(out, "{\"model\":");
        json_quote(out, o->model, strlen(o->model));
        if (b->chat) {
            buf_printf(out, ",\"messages\":[{\"role\":\"user\",\"content\":");
            json_quote(out, p->text, p->text_len);
            buf_printf(out, "}]");
        } else {
            buf_printf(out, ",\"prompt\":");
            json_quote(out, p->text, p->text_len);
        }
        buf_printf(out, ",\"max_tokens\":%u", p->output_tokens);
        if (o->ignore_eos)
            buf_printf(out, ",\"ignore_eos\":true");
        if (!o->no_stream)
            buf_printf(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
        buf_printf(out, "}");
    }
}

struct fetch_state {
    bool done;
    enum http_call_error err;
    int status;
    char *body;
};

static void fetch_done(enum http_call_error err, int status, const char *body, size_t len,
                       void *ctx)
{
    struct fetch_state *st = ctx;
    st->done = true;
    st->err = err;
    st->status = status;
    st->body = body ? xstrndup(body, len) : NULL;
}

/* GET /v1/models: proves the server is there, and names the model when --model is not
 * given (the first one, as vllm bench serve does). */
static bool probe_server(struct bench *b, char *model_out, size_t cap)
{
    struct fetch_state st = {0};
    struct http_call_request q = {.method = "GET", .host = b->url.host, .port = b->url.port,
                                  .path = OPENAI_PATH_MODELS, .timeout_ms = 10000};
    http_fetch(b->client, &q, 1 << 20, fetch_done, &st);
    while (!st.done)
        uv_run(b->loop, UV_RUN_ONCE);
    bool ok = false;
    if (st.err != HTTP_CALL_OK) {
        fprintf(stderr,
                "tandem bench: cannot connect to http://%s:%d (%s); is the server running?\n",
                b->url.host, b->url.port, http_call_error_str(st.err));
    } else if (st.status != 200) {
        if (b->o->model) {
            ok = true; /* some servers have no /v1/models; the model was given */
        } else {
            fprintf(stderr, "tandem bench: GET /v1/models answered HTTP %d; pass --model\n",
                    st.status);
        }
    } else {
        ok = true;
        if (!b->o->model) {
            json_t *j = st.body ? json_loads(st.body, 0, NULL) : NULL;
            const char *id = json_string_value(
                json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
            if (id)
                snprintf(model_out, cap, "%s", id);
            else {
                fprintf(stderr, "tandem bench: GET /v1/models lists no model; pass --model\n");
                ok = false;
            }
            json_decref(j);
        }
    }
    free(st.body);
    return ok;
}

static bool parse_list(const char *text, double *out, size_t max, size_t *n, bool allow_inf)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        double v;
        if (allow_inf && strncmp(p, "inf", 3) == 0) {
            v = INFINITY;
            end = (char *)p + 3;
        } else {
            errno = 0;
            v = strtod(p, &end);
            if (end == p || errno || !(v > 0))
                return false;
        }
        if (*n == max)
            return false;
        out[(*n)++] = v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return false;
    }
    return *n > 0;
}

static bool parse_rate(const char *v, void *target, char *err, size_t errlen)
{
    double *r = target;
    if (!strcmp(v, "inf")) {
        *r = INFINITY;
        return true;
    }
    char *end;
    *r = strtod(v, &end);
    if (end == v || *end || !(*r > 0)) {
        snprintf(err, errlen, "'%s' is not a positive number or inf", v);
        return false;
    }
    return true;
}

static void rate_word(double r, char *out, size_t cap)
{
    if (isinf(r))
        snprintf(out, cap, "inf");
    else
        snprintf(out, cap, "%g", r);
}

/* ---- main ----------------------------------------------------------------------------- */

/* What to send and where: rates, stages, the count or the duration, the URL and the
 * path. 0, or 2 after saying why (a usage error). */
static int plan_run(struct opts *o, struct bench *b)
{
    if (!(o->timeout > 0 && o->timeout <= 1e6)) {
        fprintf(stderr, "tandem bench: --timeout must be in (0, 1000000] seconds\n");
        return 2;
    }
    if (!(o->burstiness > 0)) {
        fprintf(stderr, "tandem bench: --burstiness must be > 0\n");
        return 2;
    }
    enum openai_api api;
    if (!openai_api_from_path(o->endpoint, &api)) {
        fprintf(stderr, "tandem bench: --endpoint: '%s' is not /v1/completions or "
                        "/v1/chat/completions\n", o->endpoint);
        return 2;
    }
    b->chat = strstr(o->endpoint, "chat") != NULL;
    if (o->rate_ladder) {
        if (!parse_list(o->rate_ladder, b->rates, MAX_STAGES, &b->n_stages, true)) {
            fprintf(stderr, "tandem bench: --rate-ladder: '%s' is not a list of rates like "
                            "3,10,20\n", o->rate_ladder);
            return 2;
        }
        if (!(o->stage_duration > 0)) {
            fprintf(stderr, "tandem bench: --stage-duration must be > 0\n");
            return 2;
        }
        b->t_stop = o->stage_duration * (double)b->n_stages;
    } else {
        b->rates[0] = o->request_rate;
        b->n_stages = 1;
        if (o->duration > 0)
            b->t_stop = o->duration;
        else if (o->num_prompts > 0 || o->num_prompts == -1)
            b->n_total = o->num_prompts > 0 ? (size_t)o->num_prompts : 1000;
        else {
            fprintf(stderr, "tandem bench: --num-prompts must be > 0 (or give --duration)\n");
            return 2;
        }
    }
    bool open_ended = !b->n_total;
    for (size_t i = 0; i < b->n_stages; i++)
        if (isinf(b->rates[i]) && open_ended && o->max_concurrency <= 0) {
            fprintf(stderr, "tandem bench: an infinite rate with --duration or --rate-ladder "
                            "needs --max-concurrency\n");
            return 2;
        }
    const char *why = NULL;
    char hostport[300];
    if (o->base_url) {
        if (!url_parse(o->base_url, 80, &b->url, &why)) {
            fprintf(stderr, "tandem bench: --base-url: %s\n", why);
            return 2;
        }
    } else {
        snprintf(hostport, sizeof hostport, "%s:%lld", o->host, o->port);
        if (!url_parse(hostport, 8000, &b->url, &why)) {
            fprintf(stderr, "tandem bench: --host/--port: %s\n", why);
            return 2;
        }
    }
    if (b->url.tls) {
        fprintf(stderr, "tandem bench: https is not supported; use http://\n");
        return 2;
    }
    /* base path + endpoint: "http://h:p" + "/v1/completions" */
    const char *base = strcmp(b->url.path, "/") ? b->url.path : "";
    size_t bl = strlen(base);
    if (bl && base[bl - 1] == '/')
        bl--;
    snprintf(b->path, sizeof b->path, "%.*s%s", (int)bl, base, o->endpoint);

    return 0;
}

/* The prompt pool: exactly the requests of a counted run. A timed run or a ladder
 * cycles through a pool (request i uses prompt i mod pool): --num-prompts sizes it;
 * by default it covers the expected arrivals (repeats would be unrealistic cache
 * hits), or the whole dataset for shared-prefix and sharegpt. */
static void size_pool(struct opts *o, const struct bench *b)
{
    if (b->n_total)
        o->ds.num_prompts = (long long)b->n_total;
    else if (o->num_prompts > 0)
        o->ds.num_prompts = o->num_prompts;
    else if (!strcmp(o->ds.name, "random") || !strcmp(o->ds.name, "prefix_repetition")) {
        double expect = 0;
        for (size_t i = 0; i < b->n_stages; i++) {
            double span = o->rate_ladder ? o->stage_duration : o->duration;
            expect += isinf(b->rates[i]) ? 10000 : b->rates[i] * span * 1.2 + 16;
        }
        o->ds.num_prompts = expect > 200000 ? 200000 : (long long)expect;
    } else
        o->ds.num_prompts = 0;
}

/* Prints the statistics (per stage and whole), the first distinct errors, and writes the
 * result JSON and the HTML report when asked. Returns the exit code. */
static int report(struct bench *b, struct opts *o, const struct bench_slo *slo,
                  const double *pcts, size_t n_pcts, const char *rw)
{
    /* Results: per stage when laddered, then the whole run. */
    time_t now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    char date[32];
    strftime(date, sizeof date, "%Y%m%d-%H%M%S", &tmv);
    char base_url[600];
    snprintf(base_url, sizeof base_url, "http://%s:%d", b->url.host, b->url.port);
    struct bench_meta meta = {.date = date, .label = o->label, .model = o->model,
                              .base_url = base_url, .endpoint = o->endpoint,
                              .dataset_name = o->ds.name, .num_prompts = (long long)b->n_recs,
                              .request_rate = o->rate_ladder ? b->rates[b->n_stages - 1]
                                                            : o->request_rate,
                              .burstiness = o->burstiness,
                              .max_concurrency = o->max_concurrency,
                              .percentile_metrics = o->percentile_metrics};
    struct bench_stats all;
    struct bench_stats stage_stats[MAX_STAGES];
    size_t n_views = 0;
    struct bench_run_view views[MAX_STAGES + 1];
    char names[MAX_STAGES][64];
    json_t *stages = json_array();
    bool laddered = o->rate_ladder != NULL;
    if (laddered) {
        for (size_t i = 0; i < b->n_stages; i++) {
            char title[64], r[32];
            rate_word(b->rates[i], r, sizeof r);
            snprintf(title, sizeof title, " Stage %zu: %s req/s ", i + 1, r);
            bench_stats_compute(b->recs, b->n_recs, (int)i, slo, pcts, n_pcts, &stage_stats[i]);
            bench_stats_print(stdout, &stage_stats[i], title);
            snprintf(names[i], sizeof names[i], "%s req/s", r);
            views[n_views++] = (struct bench_run_view){names[i], &stage_stats[i], NULL, 0, NULL};
            struct bench_meta sm = meta;
            sm.request_rate = b->rates[i];
            json_array_append_new(stages, bench_result_json(&sm, &stage_stats[i], NULL, 0, false));
        }
    }
    bench_stats_compute(b->recs, b->n_recs, -1, slo, pcts, n_pcts, &all);
    bench_stats_print(stdout, &all, laddered ? " All stages " : NULL);
    /* Failed requests, by message, so a broken backend is obvious. */
    for (size_t i = 0, shown = 0; i < b->n_recs && shown < 5; i++) {
        if (b->recs[i].ok)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !b->recs[j].ok && !strcmp(b->recs[j].error, b->recs[i].error);
        if (!seen) {
            printf("error: %s\n", b->recs[i].error);
            shown++;
        }
    }
    int rc = 0;
    if (o->save_result || o->result_filename) {
        json_t *j = bench_result_json(&meta, &all, b->recs, b->n_recs, o->save_detailed);
        if (laddered)
            json_object_set(j, "stages", stages);
        if (b->timeline.n_t)
            json_object_set_new(j, "timeline", bench_timeline_json(&b->timeline));
        char fname[768];
        if (o->result_filename)
            snprintf(fname, sizeof fname, "%s", o->result_filename);
        else {
            const char *mb = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
            char conc[32] = "";
            if (o->max_concurrency > 0)
                snprintf(conc, sizeof conc, "-concurrency%lld", o->max_concurrency);
            snprintf(fname, sizeof fname, "%s-%sqps%s-%s-%s.json", o->label,
                     o->rate_ladder ? "ladder" : rw, conc, mb, date);
        }
        char path[1024];
        if (o->result_dir)
            snprintf(path, sizeof path, "%s/%s", o->result_dir, fname);
        else
            snprintf(path, sizeof path, "%s", fname);
        if (json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
            fprintf(stderr, "tandem bench: cannot write %s: %s\n", path, strerror(errno));
            rc = 1;
        } else
            printf("Result written to %s\n", path);
        json_decref(j);
    }
    json_decref(stages);
    if (o->html) {
        FILE *f = fopen(o->html, "w");
        struct bench_run_view whole = {o->label, &all, b->recs, b->n_recs,
                                       b->timeline.n_t ? &b->timeline : NULL};
        if (laddered) {
            /* Stage views get their records for the charts: records are in arrival
             * order and stages only increase, so each stage is one slice. */
            size_t start = 0;
            for (size_t i = 0; i < n_views; i++) {
                size_t end = start;
                while (end < b->n_recs && b->recs[end].stage == i)
                    end++;
                views[i].recs = b->recs + start;
                views[i].n = end - start;
                start = end;
            }
        }
        views[n_views] = whole; /* a ladder's report shows every stage and the whole run */
        bool ok = f && bench_report_html(f, o->label, laddered ? views : &views[n_views],
                                          laddered ? n_views + 1 : 1);
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok) {
            fprintf(stderr, "tandem bench: cannot write %s: %s\n", o->html, strerror(errno));
            rc = 1;
        } else
            printf("Report written to %s\n", o->html);
    }
    if (all.completed == 0 && b->n_recs > 0) {
        fprintf(stderr, "tandem bench: every request failed\n");
        rc = 1;
    }
    for (size_t i = 0; laddered && i < b->n_stages; i++)
        bench_stats_free(&stage_stats[i]);
    bench_stats_free(&all);
    return rc;
}

static const char usage_text[] = "tandem bench [flags]   |   tandem bench compare A.json B.json ...";
static const char description[] =
    "Load generator with vllm bench serve's metrics (TTFT, TPOT, ITL, E2EL, goodput) and\n"
    "flag names. Streams by default; reports per-pod counts (x-inference-pod), prefix\n"
    "cache hits (usage.prompt_tokens_details.cached_tokens) and schedule delay.\n"
    "Examples:\n"
    "  tandem bench --num-prompts 100 --max-concurrency 16\n"
    "  tandem bench --dataset-name shared-prefix --gsp-num-groups 16 --request-rate 5\n"
    "  tandem bench --rate-ladder 2,5,10 --stage-duration 30 --save-result --html r.html";

int bench_main(int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "compare") == 0)
        return bench_compare_main(argc - 1, argv + 1);
    struct opts o = {.host = "127.0.0.1", .port = 8000, .endpoint = OPENAI_PATH_COMPLETIONS,
                     .label = "tandem", .arrival = "poisson", .num_prompts = -1,
                     .request_rate = INFINITY, .burstiness = 1.0, .stage_duration = 30,
                     .timeout = 600, .percentile_metrics = "ttft,tpot,itl,e2el",
                     .metric_percentiles = "90,99"};
    bench_dataset_opts_defaults(&o.ds);
    o.ds.name = "random";
    const struct flag flags[] = {
        {"--base-url", NULL, FLAG_STRING, &o.base_url, "URL", "server URL (overrides --host/--port)", NULL},
        {"--host", NULL, FLAG_STRING, &o.host, "ADDR", "server address (127.0.0.1)", NULL},
        {"--port", NULL, FLAG_INT, &o.port, "N", "server port (8000)", NULL},
        {"--endpoint", NULL, FLAG_STRING, &o.endpoint, "PATH", "/v1/completions (default) or /v1/chat/completions", NULL},
        {"--model", NULL, FLAG_STRING, &o.model, "NAME", "model name (default: the first in GET /v1/models)", NULL},
        {"--label", NULL, FLAG_STRING, &o.label, "NAME", "run name in results (tandem)", NULL},
        {"--dataset-name", NULL, FLAG_STRING, &o.ds.name, "NAME", "random | shared-prefix | sharegpt | prefix_repetition (random)", NULL},
        {"--dataset-path", NULL, FLAG_STRING, &o.ds.path, "FILE", "ShareGPT JSON file", NULL},
        {"--num-prompts", NULL, FLAG_INT, &o.num_prompts, "N", "requests to send (1000); with --duration or a ladder, the prompt pool size", NULL},
        {"--duration", NULL, FLAG_DOUBLE, &o.duration, "S", "send for S seconds instead of --num-prompts", NULL},
        {"--request-rate", NULL, FLAG_FUNC, &o.request_rate, "R", "requests/s, or inf = all at once (inf)", parse_rate},
        {"--burstiness", NULL, FLAG_DOUBLE, &o.burstiness, "K", "gamma shape of arrival gaps; 1 = Poisson (1)", NULL},
        {"--arrival", NULL, FLAG_STRING, &o.arrival, "KIND", "poisson (default) or constant", NULL},
        {"--max-concurrency", NULL, FLAG_INT, &o.max_concurrency, "N", "most requests in flight (no limit)", NULL},
        {"--rate-ladder", NULL, FLAG_STRING, &o.rate_ladder, "R1,R2,..", "stages of rising rates, each --stage-duration long", NULL},
        {"--stage-duration", NULL, FLAG_DOUBLE, &o.stage_duration, "S", "seconds per ladder stage (30)", NULL},
        {"--seed", NULL, FLAG_INT, &o.ds.seed, "N", "seed for prompts and arrivals (0)", NULL},
        {"--ignore-eos", NULL, FLAG_BOOL, &o.ignore_eos, NULL, "ask for exactly the output lengths", NULL},
        {"--no-stream", NULL, FLAG_BOOL, &o.no_stream, NULL, "non-streaming requests (TTFT = E2EL)", NULL},
        {"--goodput", NULL, FLAG_STRING, &o.goodput, "SLOS", "e.g. \"ttft:500 tpot:50 e2el:2000\" (ms)", NULL},
        {"--percentile-metrics", NULL, FLAG_STRING, &o.percentile_metrics, "LIST", "metrics in the result (ttft,tpot,itl,e2el)", NULL},
        {"--metric-percentiles", NULL, FLAG_STRING, &o.metric_percentiles, "LIST", "percentiles (90,99)", NULL},
        {"--save-result", NULL, FLAG_BOOL, &o.save_result, NULL, "write the result JSON", NULL},
        {"--save-detailed", NULL, FLAG_BOOL, &o.save_detailed, NULL, "include per-request arrays", NULL},
        {"--result-filename", NULL, FLAG_STRING, &o.result_filename, "FILE", "result file name", NULL},
        {"--result-dir", NULL, FLAG_STRING, &o.result_dir, "DIR", "directory for the result file", NULL},
        {"--html", NULL, FLAG_STRING, &o.html, "FILE", "write a self-contained HTML report", NULL},
        {"--timeout", NULL, FLAG_DOUBLE, &o.timeout, "S", "per-request timeout (600)", NULL},
        {"--timeline-url", NULL, FLAG_STRING, &o.timeline_url, "URL", "a Prometheus /metrics page sampled during the run (e.g. tandem up's --metrics-port)", NULL},
        {"--timeline-metrics", NULL, FLAG_STRING, &o.timeline_metrics, "A,B", "metric names kept from it (every series of each), in the result JSON and the HTML", NULL},
        {"--timeline-interval", NULL, FLAG_DOUBLE, &o.timeline_interval, "S", "seconds between samples (1)", NULL},
        {"--disable-tqdm", NULL, FLAG_BOOL, &o.disable_tqdm, NULL, "no progress line", NULL},
        {"--random-input-len", NULL, FLAG_INT, &o.ds.random_input_len, "N", "random: prompt tokens (1024)", NULL},
        {"--random-output-len", NULL, FLAG_INT, &o.ds.random_output_len, "N", "random: output tokens (128)", NULL},
        {"--random-range-ratio", NULL, FLAG_DOUBLE, &o.ds.random_range_ratio, "F", "random: lengths vary by +-F (0)", NULL},
        {"--random-prefix-len", NULL, FLAG_INT, &o.ds.random_prefix_len, "N", "random: shared prefix tokens (0)", NULL},
        {"--gsp-num-groups", NULL, FLAG_INT, &o.ds.gsp_num_groups, "N", "shared-prefix: groups (150)", NULL},
        {"--gsp-prompts-per-group", NULL, FLAG_INT, &o.ds.gsp_prompts_per_group, "N", "shared-prefix: prompts per group (5)", NULL},
        {"--gsp-system-prompt-len", NULL, FLAG_INT, &o.ds.gsp_system_prompt_len, "N", "shared-prefix: system prompt tokens (6000)", NULL},
        {"--gsp-question-len", NULL, FLAG_INT, &o.ds.gsp_question_len, "N", "shared-prefix: question tokens (1200)", NULL},
        {"--gsp-output-len", NULL, FLAG_INT, &o.ds.gsp_output_len, "N", "shared-prefix: output tokens (1000)", NULL},
        {"--prefix-repetition-prefix-len", NULL, FLAG_INT, &o.ds.prefix_repetition_prefix_len, "N", "prefix_repetition: prefix tokens (256)", NULL},
        {"--prefix-repetition-suffix-len", NULL, FLAG_INT, &o.ds.prefix_repetition_suffix_len, "N", "prefix_repetition: suffix tokens (256)", NULL},
        {"--prefix-repetition-num-prefixes", NULL, FLAG_INT, &o.ds.prefix_repetition_num_prefixes, "N", "prefix_repetition: prefixes (10)", NULL},
        {"--prefix-repetition-output-len", NULL, FLAG_INT, &o.ds.prefix_repetition_output_len, "N", "prefix_repetition: output tokens (128)", NULL},
        {"--sharegpt-output-len", NULL, FLAG_INT, &o.ds.sharegpt_output_len, "N", "sharegpt: fixed output tokens", NULL},
    };
    size_t nf = sizeof flags / sizeof flags[0];
    struct flags_result res;
    char err[512];
    if (!flags_parse(flags, nf, argc, argv, &res, err, sizeof err)) {
        fprintf(stderr, "tandem bench: %s\n", err);
        return 2;
    }
    if (res.help) {
        flags_print_help(stdout, usage_text, description, flags, nf);
        return 0;
    }
    /* vllm takes --goodput as several words: ttft:500 tpot:50. */
    struct buf slo_text = BUF_INIT;
    if (o.goodput)
        buf_printf(&slo_text, "%s", o.goodput);
    for (size_t i = 0; i < res.n_positional; i++) {
        if (!o.goodput || !strchr(res.positional[i], ':')) {
            fprintf(stderr, "tandem bench: unexpected argument '%s'\n", res.positional[i]);
            buf_free(&slo_text);
            return 2;
        }
        buf_printf(&slo_text, " %s", res.positional[i]);
    }
    struct bench_slo slo = {0};
    if (slo_text.len && !bench_slo_parse(slo_text.data, &slo, err, sizeof err)) {
        fprintf(stderr, "tandem bench: %s\n", err);
        buf_free(&slo_text);
        return 2;
    }
    buf_free(&slo_text);
    double pcts[8];
    size_t n_pcts;
    if (!parse_list(o.metric_percentiles, pcts, 8, &n_pcts, false)) {
        fprintf(stderr, "tandem bench: --metric-percentiles: '%s' is not a list of numbers in "
                        "(0, 100]\n", o.metric_percentiles);
        return 2;
    }
    for (size_t i = 0; i < n_pcts; i++)
        if (pcts[i] > 100) {
            fprintf(stderr, "tandem bench: --metric-percentiles: %g is above 100\n", pcts[i]);
            return 2;
        }
    if (strcmp(o.arrival, "poisson") && strcmp(o.arrival, "constant")) {
        fprintf(stderr, "tandem bench: --arrival: '%s' is not poisson or constant\n", o.arrival);
        return 2;
    }
    struct bench b = {.o = &o, .t_stop = INFINITY};
    if (!!o.timeline_url != !!o.timeline_metrics) {
        fprintf(stderr, "tandem bench: --timeline-url and --timeline-metrics go together\n");
        return 2;
    }
    if (o.timeline_interval == 0)
        o.timeline_interval = 1;
    if (!(o.timeline_interval >= 0.05 && o.timeline_interval <= 3600)) {
        fprintf(stderr, "tandem bench: --timeline-interval: seconds in [0.05, 3600]\n");
        return 2;
    }
    if (o.timeline_url) {
        const char *why;
        if (!url_parse(o.timeline_url, 80, &b.tl_url, &why) || b.tl_url.tls) {
            fprintf(stderr, "tandem bench: --timeline-url: '%s': %s\n", o.timeline_url,
                    b.tl_url.tls ? "https is not supported" : why);
            return 2;
        }
        b.tl_names_buf = xstrdup(o.timeline_metrics);
        for (char *save = NULL, *m = strtok_r(b.tl_names_buf, ",", &save);
             m && b.n_tl_names < BENCH_TIMELINE_MAX_SERIES; m = strtok_r(NULL, ",", &save))
            b.tl_names[b.n_tl_names++] = m;
    }
    int prc = plan_run(&o, &b);
    if (prc) {
        free(b.tl_names_buf);
        return prc;
    }
    size_pool(&o, &b);
    struct bench_dataset ds = {0};
    if (!bench_dataset_load(&o.ds, &ds, err, sizeof err)) {
        fprintf(stderr, "tandem bench: %s\n", err);
        free(b.tl_names_buf);
        return 2;
    }
    if (ds.n == 0) {
        fprintf(stderr, "tandem bench: the dataset has no prompts\n");
        bench_dataset_free(&ds);
        free(b.tl_names_buf);
        return 2;
    }
    b.ds = &ds;
    b.rng = (uint64_t)o.ds.seed * 0x2545F4914F6CDD1DULL + 17;
    b.loop = xmalloc(sizeof *b.loop);
    uv_loop_init(b.loop);
    struct http_client_config cc = {.max_idle_per_upstream = 4096};
    b.client = http_client_new(b.loop, &cc);
    char model[256] = "";
    if (!probe_server(&b, model, sizeof model)) {
        http_client_free(b.client);
        uv_run(b.loop, UV_RUN_DEFAULT);
        uv_loop_close(b.loop);
        free(b.loop);
        bench_dataset_free(&ds);
        free(b.tl_names_buf);
        return 1;
    }
    if (!o.model)
        o.model = model;
    build_bodies(&b);

    char rw[32];
    rate_word(o.request_rate, rw, sizeof rw);
    if (o.rate_ladder)
        printf("Rate ladder: %s req/s, %g s per stage\n", o.rate_ladder, o.stage_duration);
    else
        printf("Traffic request rate: %s\n", rw);
    printf("Burstiness factor: %g (%s)\n", o.burstiness,
           strcmp(o.arrival, "constant") == 0 ? "constant"
           : o.burstiness == 1.0              ? "Poisson process"
                                              : "Gamma distribution");
    if (o.max_concurrency > 0)
        printf("Maximum request concurrency: %lld\n", o.max_concurrency);
    printf("Model: %s  endpoint: http://%s:%d%s  dataset: %s (%zu prompts)\n", o.model,
           b.url.host, b.url.port, b.path, o.ds.name, ds.n);
    fflush(stdout);

    b.tty = isatty(2) && !o.disable_tqdm;
    uv_timer_init(b.loop, &b.tick);
    b.tick.data = &b;
    uv_timer_init(b.loop, &b.progress);
    b.progress.data = &b;
    uv_timer_init(b.loop, &b.sampler);
    b.sampler.data = &b;
    b.t0 = clock_monotonic_ns();
    if (b.tty)
        uv_timer_start(&b.progress, on_progress, 200, 200);
    if (b.n_tl_names) {
        uint64_t ms = (uint64_t)(o.timeline_interval * 1000);
        uv_timer_start(&b.sampler, on_sampler, 0, ms);
    }
    pump(&b);
    uv_run(b.loop, UV_RUN_DEFAULT);
    if (b.tty) {
        on_progress(&b.progress);
        fprintf(stderr, "\n");
    }
    uv_loop_close(b.loop);
    free(b.loop);

    int rc = report(&b, &o, &slo, pcts, n_pcts, rw);
    for (size_t i = 0; i < b.n_recs; i++)
        bench_record_free(&b.recs[i]);
    free(b.recs);
    free(b.queue);
    for (size_t i = 0; i < ds.n; i++)
        buf_free(&b.bodies[i]);
    free(b.bodies);
    bench_dataset_free(&ds);
    bench_timeline_free(&b.timeline);
    free(b.tl_names_buf);
    return rc;
}

/* sse_load: a closed-loop streaming load generator for bench/sim-throughput.
 *
 * Keeps --streams streaming completions open against one server (each slot starts a new
 * request when its previous one ends) for --duration seconds, counts SSE events as the
 * client library delivers them, and reports events/s, completed requests, errors, and
 * how many streams were open and receiving at once. One libuv loop, one core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/flags.h"
#include "net/http_client.h"
#include "net/sse.h"

struct load;

struct slot {
    struct load *l;
    struct http_call *call;
    struct sse_parser sse;
    bool open;      /* head received, not done */
    bool receiving; /* got an event since the last sample */
};

struct load {
    uv_loop_t *loop;
    struct http_client *client;
    struct http_call_request req;
    struct slot *slots;
    long long n_slots;
    uint64_t t_start, t_end;
    uint64_t measure_from; /* after warm-up */
    unsigned long long events, events_measured, done, errors, non200;
    long long open_now, open_peak, active_peak;
    uv_timer_t sample, stop;
    bool stopping;
};

static void start(struct slot *s);

static void on_event(const char *data, size_t len, void *ctx)
{
    struct slot *s = ctx;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return;
    s->l->events++;
    s->receiving = true;
    if (clock_monotonic_ns() >= s->l->measure_from)
        s->l->events_measured++;
}

static void on_head(struct http_call *c, int status, const struct http_headers *h, void *ctx)
{
    struct slot *s = ctx;
    if (status != 200) {
        s->l->non200++;
        return;
    }
    s->open = true;
    if (++s->l->open_now > s->l->open_peak)
        s->l->open_peak = s->l->open_now;
}

static void on_body(struct http_call *c, const char *data, size_t len, void *ctx)
{
    struct slot *s = ctx;
    sse_parser_feed(&s->sse, data, len, on_event, s);
}

static void on_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    struct slot *s = ctx;
    s->call = NULL;
    if (s->open)
        s->l->open_now--;
    s->open = false;
    if (err != HTTP_CALL_OK) {
        if (s->l->errors++ < 5)
            fprintf(stderr, "sse_load: request failed: %s\n", http_call_error_str(err));
    } else {
        s->l->done++;
    }
    sse_parser_free(&s->sse);
    if (!s->l->stopping)
        start(s);
}

static const struct http_call_callbacks callbacks = {on_head, on_body, on_done};

static void start(struct slot *s)
{
    sse_parser_init(&s->sse);
    s->call = http_call_start(s->l->client, &s->l->req, &callbacks, s);
}

static void on_sample(uv_timer_t *t)
{
    struct load *l = t->data;
    long long active = 0;
    for (long long i = 0; i < l->n_slots; i++) {
        active += l->slots[i].receiving;
        l->slots[i].receiving = false;
    }
    if (active > l->active_peak)
        l->active_peak = active;
}

static void on_stop(uv_timer_t *t)
{
    struct load *l = t->data;
    l->stopping = true;
    l->t_end = clock_monotonic_ns();
    for (long long i = 0; i < l->n_slots; i++) {
        if (l->slots[i].call) {
            http_call_cancel(l->slots[i].call);
            l->slots[i].call = NULL;
            sse_parser_free(&l->slots[i].sse);
        }
    }
    uv_close((uv_handle_t *)&l->sample, NULL);
    uv_close((uv_handle_t *)&l->stop, NULL);
    http_client_free(l->client);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/v1/completions", *model = NULL;
    long long port = 8000, streams = 100, max_tokens = 1000, prompt_words = 20;
    double duration = 10, warmup = 1;
    const struct flag flags[] = {
        {"--host", NULL, FLAG_STRING, &host, "ADDR", "server address (127.0.0.1)", NULL},
        {"--port", NULL, FLAG_INT, &port, "N", "server port (8000)", NULL},
        {"--path", NULL, FLAG_STRING, &path, "PATH", "endpoint (/v1/completions)", NULL},
        {"--model", NULL, FLAG_STRING, &model, "NAME", "model field (omitted by default)", NULL},
        {"--streams", NULL, FLAG_INT, &streams, "N", "concurrent streams (100)", NULL},
        {"--duration", NULL, FLAG_DOUBLE, &duration, "S", "seconds to run (10)", NULL},
        {"--warmup", NULL, FLAG_DOUBLE, &warmup, "S", "seconds not counted in events/s (1)", NULL},
        {"--max-tokens", NULL, FLAG_INT, &max_tokens, "N", "tokens per request (1000)", NULL},
        {"--prompt-words", NULL, FLAG_INT, &prompt_words, "N", "prompt length (20)", NULL},
    };
    struct flags_result res;
    char err[256];
    if (!flags_parse(flags, sizeof flags / sizeof flags[0], argc - 1, argv + 1, &res, err,
                     sizeof err)) {
        fprintf(stderr, "sse_load: %s\n", err);
        return 2;
    }
    if (res.help) {
        flags_print_help(stdout, "sse_load [flags]",
                         "Closed-loop SSE load: N concurrent streaming completions.", flags,
                         sizeof flags / sizeof flags[0]);
        return 0;
    }
    if (streams < 1 || duration <= warmup) {
        fprintf(stderr, "sse_load: need --streams >= 1 and --duration > --warmup\n");
        return 2;
    }

    struct buf body = BUF_INIT;
    buf_append_str(&body, "{");
    if (model)
        buf_printf(&body, "\"model\":\"%s\",", model);
    buf_append_str(&body, "\"prompt\":\"");
    for (long long i = 0; i < prompt_words; i++)
        buf_printf(&body, "%sword%lld", i ? " " : "", i);
    buf_printf(&body, "\",\"max_tokens\":%lld,\"ignore_eos\":true,\"stream\":true}", max_tokens);

    struct load l = {0};
    l.loop = uv_default_loop();
    struct http_client_config cc = {.max_idle_per_upstream = (size_t)streams,
                                    .connect_timeout_ms = 10000};
    l.client = http_client_new(l.loop, &cc);
    static const struct http_header hdr[] = {{"Content-Type", "application/json", 12, 16}};
    l.req = (struct http_call_request){.method = "POST", .host = host, .port = (int)port,
                                       .path = path, .headers = hdr, .n_headers = 1,
                                       .body = body.data, .body_len = body.len};
    l.n_slots = streams;
    l.slots = xcalloc((size_t)streams, sizeof *l.slots);
    l.t_start = clock_monotonic_ns();
    l.measure_from = l.t_start + (uint64_t)(warmup * 1e9);
    for (long long i = 0; i < streams; i++) {
        l.slots[i].l = &l;
        start(&l.slots[i]);
    }
    uv_timer_init(l.loop, &l.sample);
    l.sample.data = &l;
    uv_timer_start(&l.sample, on_sample, 1000, 1000);
    uv_timer_init(l.loop, &l.stop);
    l.stop.data = &l;
    uv_timer_start(&l.stop, on_stop, (uint64_t)(duration * 1e3), 0);
    uv_run(l.loop, UV_RUN_DEFAULT);

    double measured = (double)(l.t_end - l.measure_from) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"streams\":%lld,\"duration_s\":%.2f,\"events\":%llu,\"events_per_s\":%.0f,"
           "\"requests_done\":%llu,\"errors\":%llu,\"non_200\":%llu,\"open_peak\":%lld,"
           "\"receiving_peak\":%lld,\"client_cpu_pct\":%.1f}\n",
           streams, duration, l.events, measured > 0 ? l.events_measured / measured : 0,
           l.done, l.errors, l.non200, l.open_peak, l.active_peak,
           100.0 * cpu / ((double)(l.t_end - l.t_start) / 1e9));
    free(l.slots);
    buf_free(&body);
    uv_loop_close(l.loop);
    return l.errors || l.non200 ? 1 : 0;
}

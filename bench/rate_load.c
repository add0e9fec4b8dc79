/* rate_load: an open-loop load generator for latency at a fixed request rate.
 *
 * Requests start on a schedule (--rate per second, checked every millisecond), whether
 * or not earlier ones have finished, so a slow server cannot slow the load down and
 * hide its latency (closed loops do). Latency is measured from each request's scheduled
 * start to its last response byte. Keep-alive connections come from the client's pool. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/flags.h"
#include "net/http_client.h"

struct rl {
    uv_loop_t *loop;
    struct http_client *client;
    struct http_call_request req;
    double rate;
    uint64_t t0, t_end, warm_end;
    unsigned long long started, done, errors, non200;
    double *lat; /* microseconds, measured requests only */
    size_t n_lat, cap_lat;
    uv_timer_t tick;
    size_t in_flight;
};

struct one {
    struct rl *l;
    uint64_t t_sched;
};

static void on_done(struct http_call *c, enum http_call_error err, int status, void *ctx)
{
    struct one *o = ctx;
    struct rl *l = o->l;
    uint64_t now = clock_monotonic_ns();
    l->in_flight--;
    if (err != HTTP_CALL_OK)
        l->errors++;
    else if (status != 200)
        l->non200++;
    else if (o->t_sched >= l->warm_end) {
        if (l->n_lat == l->cap_lat) {
            l->cap_lat = l->cap_lat ? l->cap_lat * 2 : 4096;
            l->lat = xrealloc(l->lat, l->cap_lat * sizeof *l->lat);
        }
        l->lat[l->n_lat++] = (double)(now - o->t_sched) / 1e3;
    }
    l->done++;
    free(o);
    if (l->in_flight == 0 && now >= l->t_end) {
        uv_timer_stop(&l->tick);
        uv_close((uv_handle_t *)&l->tick, NULL);
        http_client_free(l->client);
    }
}

static const struct http_call_callbacks cbs = {NULL, NULL, on_done};

static void on_tick(uv_timer_t *t)
{
    struct rl *l = t->data;
    uint64_t now = clock_monotonic_ns();
    uint64_t until = now < l->t_end ? now : l->t_end;
    unsigned long long due = (unsigned long long)((double)(until - l->t0) / 1e9 * l->rate);
    while (l->started < due) {
        struct one *o = xcalloc(1, sizeof *o);
        o->l = l;
        /* The scheduled time, not now: a late start counts against the server. */
        o->t_sched = l->t0 + (uint64_t)((double)l->started / l->rate * 1e9);
        l->started++;
        l->in_flight++;
        http_call_start(l->client, &l->req, &cbs, o);
    }
    if (now >= l->t_end && l->in_flight == 0) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        http_client_free(l->client);
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/v1/completions";
    const char *body = "{\"model\":\"m\",\"prompt\":\"Hello, how are you today?\",\"max_tokens\":1}";
    long long port = 8000;
    double rate = 1000, duration = 10, warmup = 2;
    const struct flag flags[] = {
        {"--host", NULL, FLAG_STRING, &host, "ADDR", "server address (127.0.0.1)", NULL},
        {"--port", NULL, FLAG_INT, &port, "N", "server port (8000)", NULL},
        {"--path", NULL, FLAG_STRING, &path, "PATH", "POST path (/v1/completions)", NULL},
        {"--body", NULL, FLAG_STRING, &body, "JSON", "request body (a 1-token completion)", NULL},
        {"--rate", NULL, FLAG_DOUBLE, &rate, "R", "requests per second (1000)", NULL},
        {"--duration", NULL, FLAG_DOUBLE, &duration, "S", "seconds (10)", NULL},
        {"--warmup", NULL, FLAG_DOUBLE, &warmup, "S", "seconds not measured (2)", NULL},
    };
    struct flags_result res;
    char err[256];
    size_t nf = sizeof flags / sizeof flags[0];
    if (!flags_parse(flags, nf, argc - 1, argv + 1, &res, err, sizeof err)) {
        fprintf(stderr, "rate_load: %s\n", err);
        return 2;
    }
    if (res.help) {
        flags_print_help(stdout, "rate_load [flags]", "Open-loop load at a fixed rate; prints "
                                                      "latency percentiles.", flags, nf);
        return 0;
    }
    if (!(rate > 0) || !(duration > warmup)) {
        fprintf(stderr, "rate_load: need --rate > 0 and --duration > --warmup\n");
        return 2;
    }
    struct rl l = {0};
    l.loop = uv_default_loop();
    struct http_client_config cc = {.max_idle_per_upstream = 1024};
    l.client = http_client_new(l.loop, &cc);
    static const struct http_header hdr[] = {{"Content-Type", "application/json", 12, 16}};
    l.req = (struct http_call_request){.method = "POST", .host = host, .port = (int)port,
                                       .path = path, .headers = hdr, .n_headers = 1,
                                       .body = body, .body_len = strlen(body),
                                       .timeout_ms = 10000};
    l.rate = rate;
    l.t0 = clock_monotonic_ns();
    l.warm_end = l.t0 + (uint64_t)(warmup * 1e9);
    l.t_end = l.t0 + (uint64_t)(duration * 1e9);
    uv_timer_init(l.loop, &l.tick);
    l.tick.data = &l;
    uv_timer_start(&l.tick, on_tick, 1, 1);
    uv_run(l.loop, UV_RUN_DEFAULT);
    qsort(l.lat, l.n_lat, sizeof *l.lat, cmp);
    double p50 = l.n_lat ? l.lat[l.n_lat / 2] : NAN, p90 = l.n_lat ? l.lat[l.n_lat * 9 / 10] : NAN;
    double p99 = l.n_lat ? l.lat[l.n_lat * 99 / 100] : NAN;
    double mx = l.n_lat ? l.lat[l.n_lat - 1] : NAN;
    printf("{\"rate\":%.0f,\"requests\":%llu,\"measured\":%zu,\"errors\":%llu,\"non_200\":%llu,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
           rate, l.done, l.n_lat, l.errors, l.non200, p50, p90, p99, mx);
    free(l.lat);
    uv_loop_close(l.loop);
    return l.errors || l.non200 ? 1 : 0;
}

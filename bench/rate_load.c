/* rate_load: an open-loop load generator for latency at a fixed request rate.
 *
 * Requests start on a schedule (--rate per second), whether or not earlier ones have
 * finished, so a slow server cannot slow the load down and hide its latency (closed
 * loops do). A pacer thread sleeps until each request's time (clock_nanosleep, absolute)
 * and wakes the event loop, so requests leave within tens of microseconds of their
 * time, not on millisecond timer ticks. Latency is measured from each request's
 * scheduled start to its last response byte; "lag" reports how late the starts were.
 * Keep-alive connections come from the client's pool. */
#include <math.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdatomic.h>
#include <time.h>
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
    uv_async_t wake;
    pthread_t pacer;
    atomic_bool pacer_done;
    bool closed;
    size_t in_flight;
    double *lag; /* microseconds from scheduled to actual start, measured requests */
    size_t n_lag, cap_lag;
};

struct one {
    struct rl *l;
    uint64_t t_sched;
};

static void maybe_finish(struct rl *l)
{
    if (l->closed || l->in_flight || !atomic_load(&l->pacer_done))
        return;
    l->closed = true;
    uv_close((uv_handle_t *)&l->wake, NULL);
    http_client_free(l->client);
}

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
    maybe_finish(l);
}

static const struct http_call_callbacks cbs = {NULL, NULL, on_done};

static void on_wake(uv_async_t *a)
{
    struct rl *l = a->data;
    uint64_t now = clock_monotonic_ns();
    uint64_t until = now < l->t_end ? now : l->t_end;
    unsigned long long due = (unsigned long long)((double)(until - l->t0) / 1e9 * l->rate) + 1;
    unsigned long long total = (unsigned long long)((double)(l->t_end - l->t0) / 1e9 * l->rate);
    if (due > total)
        due = total;
    while (l->started < due) {
        struct one *o = xcalloc(1, sizeof *o);
        o->l = l;
        /* The scheduled time, not now: a late start counts against the server. */
        o->t_sched = l->t0 + (uint64_t)((double)l->started / l->rate * 1e9);
        if (o->t_sched >= l->warm_end) {
            if (l->n_lag == l->cap_lag) {
                l->cap_lag = l->cap_lag ? l->cap_lag * 2 : 4096;
                l->lag = xrealloc(l->lag, l->cap_lag * sizeof *l->lag);
            }
            l->lag[l->n_lag++] = now > o->t_sched ? (double)(now - o->t_sched) / 1e3 : 0;
        }
        l->started++;
        l->in_flight++;
        http_call_start(l->client, &l->req, &cbs, o);
    }
    maybe_finish(l);
}

/* Sleeps until each request's scheduled time and wakes the loop. */
static void *pacer_main(void *arg)
{
    struct rl *l = arg;
    prctl(PR_SET_TIMERSLACK, 1UL); /* the default 50 us slack would delay every start */
    for (unsigned long long i = 0;; i++) {
        uint64_t t = l->t0 + (uint64_t)((double)i / l->rate * 1e9);
        if (t >= l->t_end)
            break;
        struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ULL),
                              .tv_nsec = (long)(t % 1000000000ULL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
        }
        uv_async_send(&l->wake);
    }
    atomic_store(&l->pacer_done, true);
    uv_async_send(&l->wake);
    return NULL;
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
    uv_async_init(l.loop, &l.wake, on_wake);
    l.wake.data = &l;
    pthread_create(&l.pacer, NULL, pacer_main, &l);
    uv_run(l.loop, UV_RUN_DEFAULT);
    pthread_join(l.pacer, NULL);
    qsort(l.lat, l.n_lat, sizeof *l.lat, cmp);
    double p50 = l.n_lat ? l.lat[l.n_lat / 2] : NAN, p90 = l.n_lat ? l.lat[l.n_lat * 9 / 10] : NAN;
    double p99 = l.n_lat ? l.lat[l.n_lat * 99 / 100] : NAN;
    double mx = l.n_lat ? l.lat[l.n_lat - 1] : NAN;
    qsort(l.lag, l.n_lag, sizeof *l.lag, cmp);
    double lag50 = l.n_lag ? l.lag[l.n_lag / 2] : NAN;
    double lag99 = l.n_lag ? l.lag[l.n_lag * 99 / 100] : NAN;
    printf("{\"rate\":%.0f,\"requests\":%llu,\"measured\":%zu,\"errors\":%llu,\"non_200\":%llu,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
           "\"lag_p50_us\":%.1f,\"lag_p99_us\":%.1f}\n",
           rate, l.done, l.n_lat, l.errors, l.non200, p50, p90, p99, mx, lag50, lag99);
    free(l.lat);
    free(l.lag);
    uv_loop_close(l.loop);
    return l.errors || l.non200 ? 1 : 0;
}

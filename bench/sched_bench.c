/* sched_bench: the scheduler alone, in process, no network.
 *
 *   1. decision time: 8 healthy endpoints with varied load, the default profile (queue 2,
 *      kv-cache 2, prefix-cache 3, max-score-picker), 4 KiB prompts that differ from one
 *      request to the next; p50/p99 over 200,000 decisions, and with the JSON trace on.
 *   2. memory: 100 endpoints, distinct 16 KiB prompts (256 prefix blocks each) until the
 *      prefix index holds lruCapacityPerServer (31,250) blocks for every endpoint; the
 *      process RSS before and after. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "sched/sched.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    }
    if (f)
        fclose(f);
    return kib;
}

static struct sched_datastore *make_ds(int n, bool uniform)
{
    struct sched_datastore *ds = sched_ds_new();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "decode-%d", i);
        struct sched_endpoint_spec sp = {.name = name, .host = "127.0.0.1", .port = 8000 + i,
                                         .role = SCHED_ROLE_DECODE};
        sched_ds_upsert(ds, &sp);
        struct sched_endpoint *e = sched_ds_find(ds, name);
        struct sched_endpoint_metrics m = {.have = true, .healthy = true, .waiting = i % 3,
                                           .running = i % 5, .kv_usage = 0.05 * (i % 10)};
        if (uniform) /* equal load: ties are broken at random, so picks spread evenly */
            m.waiting = m.running = m.kv_usage = 0;
        sched_endpoint_set_scraped(e, &m);
        sched_endpoint_unref(e);
    }
    return ds;
}

static void fill_prompt(char *p, size_t n, unsigned long long seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (char)('a' + (seed >> 59) % 26);
    }
}

int main(void)
{
    /* 1. decision time */
    struct sched_datastore *ds = make_ds(8, false);
    struct sched *s = sched_new(ds, NULL, 0, NULL, NULL);
    enum { N = 200000, NT = 20000 };
    static char prompt[16384];
    double *t = malloc(N * sizeof *t);
    fill_prompt(prompt, 4096, 1);
    for (int k = 0; k < N; k++) {
        /* Keep a shared head (prefix hits happen) and vary the tail. */
        prompt[1024 + (k * 13) % 3072] = (char)('A' + k % 26);
        struct sched_request req = {.request_id = "r", .model = "m", .prompt = prompt,
                                    .prompt_len = 4096, .prompt_tokens = 1024};
        struct sched_result r;
        double a = now_us();
        sched_schedule(s, &req, false, &r, NULL);
        t[k] = now_us() - a;
        sched_result_release(&r);
    }
    qsort(t, N, sizeof *t, cmp_double);
    printf("decision: 8 endpoints, default profile, 4 KiB prompt: p50 %.2f us, p99 %.2f us "
           "(%d decisions)\n", t[N / 2], t[N * 99 / 100], N);
    struct buf tr = BUF_INIT;
    for (int k = 0; k < NT; k++) {
        struct sched_request req = {.request_id = "r", .model = "m", .prompt = prompt,
                                    .prompt_len = 4096, .prompt_tokens = 1024};
        struct sched_result r;
        buf_reset(&tr);
        double a = now_us();
        sched_schedule(s, &req, true, &r, &tr);
        t[k] = now_us() - a;
        sched_result_release(&r);
    }
    qsort(t, NT, sizeof *t, cmp_double);
    printf("decision with the JSON trace (--v 4 / /debug/schedule): p50 %.2f us, p99 %.2f us\n",
           t[NT / 2], t[NT * 99 / 100]);
    buf_free(&tr);
    sched_free(s);
    sched_ds_free(ds);

    /* 2. memory with 100 endpoints and a full prefix index */
    long before = rss_kib();
    ds = make_ds(100, true);
    s = sched_new(ds, NULL, 0, NULL, NULL);
    size_t target = 100ull * 31250, size = 0;
    unsigned long long seed = 7;
    double a = now_us();
    int requests = 0;
    while (size < target && requests < 200000) {
        fill_prompt(prompt, sizeof prompt, seed++);
        struct sched_request req = {.request_id = "r", .model = "m", .prompt = prompt,
                                    .prompt_len = sizeof prompt, .prompt_tokens = 4096};
        struct sched_result r;
        sched_schedule(s, &req, false, &r, NULL);
        sched_result_release(&r);
        if (++requests % 1000 == 0)
            size = sched_prefix_index_size(s);
    }
    size = sched_prefix_index_size(s);
    long after = rss_kib();
    printf("memory: 100 endpoints, prefix index %zu blocks (target %zu) after %d distinct "
           "16 KiB prompts (%.1f s): RSS %.1f MiB -> %.1f MiB (+%.1f MiB)\n",
           size, target, requests, (now_us() - a) / 1e6, before / 1024.0, after / 1024.0,
           (after - before) / 1024.0);
    sched_free(s);
    sched_ds_free(ds);
    free(t);
    return 0;
}

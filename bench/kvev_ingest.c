/* kvev_ingest: the precise-prefix-cache-scorer's KV-event ingestion alone, on one thread,
 * no ZMQ: vLLM KVEventBatch payloads encoded beforehand with kvev_encode, then fed
 * through the scorer's decode + index path (sched_precise_apply, what the router's
 * control loop runs for every message it receives).
 *
 *   1. memory: BlockStored batches (32 blocks of 16 tokens each, token ids included, as
 *      vLLM sends them) from 8 pods until the index holds BLOCKS distinct blocks (default
 *      1,000,000); the process RSS grown / blocks held, and the index table's own size
 *      per (block, pod) entry (here one pod per block, so entries = blocks).
 *   2. throughput, index kept at that size: each batch stores new blocks and removes as
 *      many old ones (the steady state of engines that evict). Two shapes:
 *        prefill: 1 BlockStored of 32 blocks (512 tokens) + 1 BlockRemoved of 32 blocks
 *        decode:  32 BlockStored of 1 block (one per running sequence, as a decode step
 *                 that completes a block in each) + 1 BlockRemoved of 32 blocks
 *      events/s and blocks/s, median of 5 runs of EVENTS events each.
 *   3. scoring, index at that size: sched_precise_score_hashes (what a router worker runs
 *      per request) for 32-block prompts against 8 candidate endpoints, half of them
 *      prefixes some pod holds, half blocks nobody holds (scoring stops at the first
 *      block no candidate holds); request blocks scored/s, median of 5.
 *
 * usage: kvev_ingest [BLOCKS] [BATCHES_PER_RUN] */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "sched/kvevents.h"
#include "sched/sched_internal.h"

#define PODS 8
#define BLOCK_TOKENS 16
#define RUN_BLOCKS 32
#define REPS 5

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Block hash k of pod p: distinct, uniform (what xxh64 / sha256 keys look like). */
static uint64_t block_hash(uint64_t pod, uint64_t k)
{
    uint64_t x = (pod << 56) ^ (k + 1) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x ? x : 1;
}

static const char *topics[PODS] = {
    "kv@10.0.0.1:8000@m", "kv@10.0.0.2:8000@m", "kv@10.0.0.3:8000@m", "kv@10.0.0.4:8000@m",
    "kv@10.0.0.5:8000@m", "kv@10.0.0.6:8000@m", "kv@10.0.0.7:8000@m", "kv@10.0.0.8:8000@m",
};

/* One payload: n_stored BlockStored events of per_event blocks each (hashes from
 * *next_store on), then, when n_removed > 0, one BlockRemoved of n_removed blocks (from
 * *next_remove on). */
static void encode_batch(struct buf *out, uint64_t pod, size_t n_stored, size_t per_event,
                         uint64_t *next_store, size_t n_removed, uint64_t *next_remove)
{
    struct kvev_event ev[RUN_BLOCKS + 1];
    uint64_t hs[RUN_BLOCKS], rm[RUN_BLOCKS];
    uint32_t toks[RUN_BLOCKS * BLOCK_TOKENS];
    for (size_t i = 0; i < RUN_BLOCKS * BLOCK_TOKENS; i++)
        toks[i] = (uint32_t)((pod * 7919 + *next_store * 31 + i * 13) % 151936); /* Qwen vocab */
    size_t ne = 0, h = 0;
    for (size_t e = 0; e < n_stored; e++) {
        ev[ne] = (struct kvev_event){.type = KVEV_BLOCK_STORED,
                                     .n_hashes = (uint32_t)per_event,
                                     .hashes = &hs[h],
                                     .has_parent = *next_store > 0,
                                     .parent = block_hash(pod, *next_store - 1),
                                     .n_tokens = (uint32_t)(per_event * BLOCK_TOKENS),
                                     .token_ids = &toks[h * BLOCK_TOKENS],
                                     .block_size = BLOCK_TOKENS,
                                     .medium = "GPU"};
        for (size_t j = 0; j < per_event; j++)
            hs[h++] = block_hash(pod, (*next_store)++);
        ne++;
    }
    if (n_removed) {
        for (size_t j = 0; j < n_removed; j++)
            rm[j] = block_hash(pod, (*next_remove)++);
        ev[ne++] = (struct kvev_event){.type = KVEV_BLOCK_REMOVED,
                                       .n_hashes = (uint32_t)n_removed,
                                       .hashes = rm,
                                       .medium = "GPU"};
    }
    struct kvev_batch b = {.ts = 1.7e9, .n_events = ne, .events = ev};
    kvev_encode(&b, out);
}

struct payloads {
    size_t n;
    size_t *off, *len;
    struct buf all;
    size_t events, blocks; /* per run */
};

static void apply(void *st, size_t pod, const uint8_t *p, size_t n)
{
    char err[160];
    if (sched_precise_apply(st, topics[pod], strlen(topics[pod]), p, n, err, sizeof err) < 0) {
        fprintf(stderr, "kvev_ingest: decode failed: %s\n", err);
        exit(1);
    }
}

/* Builds one run of batches of the given shape; advances the per-pod counters. */
static void build_run(struct payloads *pl, size_t batches, size_t n_stored, size_t per_event,
                      uint64_t *store, uint64_t *remove)
{
    memset(pl, 0, sizeof *pl);
    pl->n = batches;
    pl->off = calloc(batches, sizeof *pl->off);
    pl->len = calloc(batches, sizeof *pl->len);
    for (size_t i = 0; i < batches; i++) {
        size_t pod = i % PODS;
        pl->off[i] = pl->all.len;
        encode_batch(&pl->all, pod, n_stored, per_event, &store[pod], RUN_BLOCKS, &remove[pod]);
        pl->len[i] = pl->all.len - pl->off[i];
    }
    pl->events = batches * (n_stored + 1);
    pl->blocks = batches * (n_stored * per_event + RUN_BLOCKS);
}

static void run_shape(void *st, const char *name, size_t batches, size_t n_stored, size_t per_event,
                      uint64_t *store, uint64_t *remove)
{
    double eps[REPS], bps[REPS];
    size_t bytes = 0;
    for (int r = 0; r < REPS; r++) {
        struct payloads pl;
        build_run(&pl, batches, n_stored, per_event, store, remove);
        bytes = pl.all.len / pl.n;
        double t0 = now_s();
        for (size_t i = 0; i < pl.n; i++)
            apply(st, i % PODS, (const uint8_t *)pl.all.data + pl.off[i], pl.len[i]);
        double dt = now_s() - t0;
        eps[r] = (double)pl.events / dt;
        bps[r] = (double)pl.blocks / dt;
        buf_free(&pl.all);
        free(pl.off);
        free(pl.len);
    }
    qsort(eps, REPS, sizeof *eps, cmp_double);
    qsort(bps, REPS, sizeof *bps, cmp_double);
    printf("| %s | %zu | %zu B | %.0f | %.0f | %.0f-%.0f | %zu |\n", name, batches * (n_stored + 1),
           bytes, eps[REPS / 2], bps[REPS / 2], eps[0], eps[REPS - 1], sched_precise_blocks(st));
}

static void run_score(void *st, const uint64_t *store)
{
    static const char *addrs[PODS], *hosts[PODS];
    static char hostbuf[PODS][32], addrbuf[PODS][32];
    for (size_t p = 0; p < PODS; p++) {
        snprintf(hostbuf[p], sizeof hostbuf[p], "10.0.0.%zu", p + 1);
        snprintf(addrbuf[p], sizeof addrbuf[p], "10.0.0.%zu:8000", p + 1);
        hosts[p] = hostbuf[p];
        addrs[p] = addrbuf[p];
    }
    const size_t calls = 100000;
    double lps[REPS];
    uint64_t rng = 12345, hits = 0;
    uint64_t *hs = malloc(calls * RUN_BLOCKS * sizeof *hs);
    for (int r = 0; r < REPS; r++) {
        for (size_t c = 0; c < calls; c++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t pod = (rng >> 33) % PODS, k0 = (rng >> 8) % (store[pod] - RUN_BLOCKS);
            for (size_t j = 0; j < RUN_BLOCKS; j++)
                hs[c * RUN_BLOCKS + j] =
                    c % 2 ? block_hash(pod, k0 + j) : block_hash(pod + PODS, k0 + j);
        }
        double out[PODS];
        double t0 = now_s();
        for (size_t c = 0; c < calls; c++) {
            sched_precise_score_hashes(st, hs + c * RUN_BLOCKS, RUN_BLOCKS, addrs, hosts, PODS,
                                       out);
            hits += out[0] > 0;
        }
        lps[r] = (double)(calls * RUN_BLOCKS) / (now_s() - t0);
    }
    free(hs);
    qsort(lps, REPS, sizeof *lps, cmp_double);
    printf("\nscoring: %.0f request blocks scored/s = %.0f prompts/s (median of %d; range "
           "%.0f-%.0f blocks/s), %zu x 32-block prompts per run, half held by one pod, half by "
           "none (pod 0 matched %" PRIu64 ")\n",
           lps[REPS / 2], lps[REPS / 2] / RUN_BLOCKS, REPS, lps[0], lps[REPS - 1], calls, hits);
}

int main(int argc, char **argv)
{
    size_t target = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    size_t batches = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;
    const struct sched_plugin_type *t = sched_plugin_type_find("precise-prefix-cache-scorer");
    struct sched_perr perr = {.field = {0}};
    void *st = NULL;
    if (!t || t->create(NULL, &st, &perr) < 0) {
        fprintf(stderr, "kvev_ingest: cannot create the scorer: %s: %s\n", perr.field, perr.why);
        return 1;
    }
    uint64_t store[PODS] = {0}, remove[PODS] = {0};

    /* 1. memory */
    long rss0 = rss_kib();
    struct buf one = BUF_INIT;
    for (size_t i = 0; sched_precise_blocks(st) < target; i++) {
        size_t pod = i % PODS;
        buf_reset(&one);
        encode_batch(&one, pod, 1, RUN_BLOCKS, &store[pod], 0, &remove[pod]);
        apply(st, pod, (const uint8_t *)one.data, one.len);
    }
    buf_free(&one);
    long rss1 = rss_kib();
    size_t held = sched_precise_blocks(st), entries, table;
    sched_precise_index_size(st, &entries, &table);
    printf("index memory: %zu blocks held (%zu (block, pod) entries); RSS +%ld KiB = %.1f "
           "B/block; table %zu B = %.1f B/entry\n",
           held, entries, rss1 - rss0, (double)(rss1 - rss0) * 1024.0 / (double)held, table,
           (double)table / (double)entries);

    /* 3. scoring (before the throughput runs evict the start of every pod's range) */
    run_score(st, store);

    /* 2. throughput */
    printf("\n| shape | events per run | payload / batch | events/s (median of %d) | blocks/s "
           "| events/s range | blocks held |\n|---|---|---|---|---|---|---|\n",
           REPS);
    run_shape(st, "prefill: 1 x BlockStored(32) + BlockRemoved(32)", batches, 1, RUN_BLOCKS, store,
              remove);
    run_shape(st, "decode: 32 x BlockStored(1) + BlockRemoved(32)", batches / 4, RUN_BLOCKS, 1,
              store, remove);
    t->destroy(st);
    return 0;
}

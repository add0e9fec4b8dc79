/* vLLM's metrics for the sim, and its periodic "Avg prompt throughput" log line.
 * Engine-wide numbers are pulled from the engine's stats when /metrics is scraped
 * (counters advance by the difference since the last scrape); per-request histograms
 * are observed when a request finishes. Names, labels and buckets are vLLM v1's. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "sim/sim_internal.h"

static void collect_rank(struct sim_rank *k)
{
    struct sim_metrics *m = k->m;
    struct sim_engine_stats st;
    sim_engine_stats(k->engine, &st);
    metrics_gauge_set(m->running, st.running);
    metrics_gauge_set(m->waiting, st.waiting);
    metrics_gauge_set(m->kv_usage, st.kv_usage);
    if (m->gpu_cache_usage)
        metrics_gauge_set(m->gpu_cache_usage, st.kv_usage);
    metrics_counter_add(m->prompt_tokens, (double)(st.prompt_tokens - m->last.prompt_tokens));
    metrics_counter_add(m->generation_tokens,
                        (double)(st.generation_tokens - m->last.generation_tokens));
    metrics_counter_add(m->preemptions, (double)(st.preemptions - m->last.preemptions));
    metrics_counter_add(m->prefix_queries,
                        (double)(st.prefix_queries_tokens - m->last.prefix_queries_tokens));
    metrics_counter_add(m->prefix_hits,
                        (double)(st.prefix_hits_tokens - m->last.prefix_hits_tokens));
    m->last = st;
    if (k->kvpub) {
        uint64_t sent = sim_kvpub_events_sent(k->kvpub);
        uint64_t dropped = sim_kvpub_events_dropped(k->kvpub);
        metrics_counter_add(m->kv_events_published, (double)(sent - k->kv_sent_last));
        metrics_counter_add(m->kv_events_dropped, (double)(dropped - k->kv_dropped_last));
        k->kv_sent_last = sent;
        k->kv_dropped_last = dropped;
    }
}

static void collect(void *ctx)
{
    struct sim_server *s = ctx;
    for (uint32_t i = 0; i < s->n_ranks; i++)
        collect_rank(&s->ranks[i]);
}

void sim_metrics_init(struct sim_server *s)
{
    struct sim_metrics *m = &s->m;
    const struct sim_config *cfg = s->cfg;
    m->reg = metrics_registry_new();
    const char *lbl[] = {"model_name", "engine"};
    struct metrics_registry *r = m->reg;

    /* One series per DP rank, engine="<rank>" as vLLM labels its engines. */
#define EACH_RANK(f, field)                                                                 \
    for (uint32_t k_ = 0; k_ < s->n_ranks; k_++) {                                         \
        const char *val_[] = {cfg->model, s->ranks[k_].label};                              \
        s->ranks[k_].m->field = metrics_series_get(f, val_);                                \
    }
#define GAUGE(field, name, help)                                                            \
    EACH_RANK(metrics_family_new(r, METRICS_GAUGE, name, help, lbl, 2, NULL, 0), field)
#define COUNTER(field, name, help)                                                          \
    EACH_RANK(metrics_family_new(r, METRICS_COUNTER, name, help, lbl, 2, NULL, 0), field)
#define HIST(field, name, help, b, nb)                                                      \
    EACH_RANK(metrics_family_new(r, METRICS_HISTOGRAM, name, help, lbl, 2, b, nb), field)

    GAUGE(running, "vllm:num_requests_running", "Number of requests in model execution batches.");
    GAUGE(waiting, "vllm:num_requests_waiting", "Number of requests waiting to be processed.");
    GAUGE(kv_usage, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
    if (cfg->emit_deprecated_metrics)
        GAUGE(gpu_cache_usage, "vllm:gpu_cache_usage_perc",
              "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).");

    char bs[16], nb[16];
    snprintf(bs, sizeof bs, "%u", cfg->engine.block_size);
    snprintf(nb, sizeof nb, "%u", cfg->engine.num_gpu_blocks);
    const char *info_lbl[] = {"block_size", "cache_dtype", "enable_prefix_caching",
                              "num_gpu_blocks", "engine"};
    struct metrics_family *info = metrics_family_new(r, METRICS_GAUGE, "vllm:cache_config_info",
                                                     "Information of the LLMEngine CacheConfig",
                                                     info_lbl, 5, NULL, 0);
    for (uint32_t k = 0; k < s->n_ranks; k++) {
        const char *info_val[] = {bs, "auto", "True", nb, s->ranks[k].label};
        metrics_gauge_set(metrics_series_get(info, info_val), 1);
    }

    COUNTER(prompt_tokens, "vllm:prompt_tokens_total", "Number of prefill tokens processed.");
    COUNTER(generation_tokens, "vllm:generation_tokens_total",
            "Number of generation tokens processed.");
    COUNTER(preemptions, "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.");
    COUNTER(prefix_queries, "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.");
    COUNTER(prefix_hits, "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.");

    const char *succ_lbl[] = {"model_name", "engine", "finished_reason"};
    struct metrics_family *succ =
        metrics_family_new(r, METRICS_COUNTER, "vllm:request_success_total",
                           "Count of successfully processed requests.", succ_lbl, 3, NULL, 0);
    for (uint32_t k = 0; k < s->n_ranks; k++) {
        const char *e = s->ranks[k].label;
        const char *v_stop[] = {cfg->model, e, "stop"};
        const char *v_len[] = {cfg->model, e, "length"};
        const char *v_abort[] = {cfg->model, e, "abort"};
        s->ranks[k].m->success_stop = metrics_series_get(succ, v_stop);
        s->ranks[k].m->success_length = metrics_series_get(succ, v_len);
        s->ranks[k].m->success_abort = metrics_series_get(succ, v_abort);
    }

    HIST(ttft, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
         metrics_buckets_ttft, metrics_buckets_ttft_n);
    HIST(itl, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
         metrics_buckets_itl, metrics_buckets_itl_n);
    HIST(e2e, "vllm:e2e_request_latency_seconds",
         "Histogram of e2e request latency in seconds.", metrics_buckets_request_latency,
         metrics_buckets_request_latency_n);
    HIST(queue_time, "vllm:request_queue_time_seconds",
         "Histogram of time spent in WAITING phase for request.",
         metrics_buckets_request_latency, metrics_buckets_request_latency_n);
    HIST(prefill_time, "vllm:request_prefill_time_seconds",
         "Histogram of time spent in PREFILL phase for request.",
         metrics_buckets_request_latency, metrics_buckets_request_latency_n);
    HIST(decode_time, "vllm:request_decode_time_seconds",
         "Histogram of time spent in DECODE phase for request.",
         metrics_buckets_request_latency, metrics_buckets_request_latency_n);
    double tok_buckets[64];
    size_t ntb = metrics_buckets_1_2_5(cfg->engine.max_model_len, tok_buckets, 64);
    HIST(req_prompt_tokens, "vllm:request_prompt_tokens",
         "Number of prefill tokens processed.", tok_buckets, ntb);
    HIST(req_generation_tokens, "vllm:request_generation_tokens",
         "Number of generation tokens processed.", tok_buckets, ntb);

    const char *reason[] = {"reason"};
    m->pd_fallbacks = metrics_family_new(
        r, METRICS_COUNTER, "tandem_sim_pd_fallbacks_total",
        "P/D decode requests that prefilled locally instead of loading remote KV.", reason, 1,
        NULL, 0);
    const char *result[] = {"result"};
    m->kv_pulls = metrics_family_new(r, METRICS_COUNTER, "tandem_sim_kv_pulls_total",
                                     "KV pulls by outcome (ok, failed on the decode side; "
                                     "expired on the prefill side).",
                                     result, 1, NULL, 0);
    const char *kind[] = {"kind"};
    m->faults = metrics_family_new(r, METRICS_COUNTER, "tandem_sim_faults_injected_total",
                                   "Faults injected (x-fault header or --failure-rate).", kind,
                                   1, NULL, 0);
    m->pinned = metrics_series0(metrics_family_new(
        r, METRICS_GAUGE, "tandem_sim_kv_pinned_requests",
        "Finished prefills whose KV blocks wait for a decoder.", NULL, 0, NULL, 0));
    m->mm_items = metrics_series0(metrics_family_new(
        r, METRICS_COUNTER, "tandem_sim_mm_items_total",
        "Multimodal content parts (image_url, video_url, audio_url, input_audio) in the "
        "chat requests accepted.",
        NULL, 0, NULL, 0));
    m->mm_encoded = metrics_series0(metrics_family_new(
        r, METRICS_COUNTER, "tandem_sim_mm_encoded_items_total",
        "Multimodal items encoded by this sim as an E/P/D encoder (--mm-encoder-only).", NULL, 0,
        NULL, 0));
    if (cfg->kv_events) {
        COUNTER(kv_events_published, "tandem_sim_kv_events_published_total",
                "KV events (BlockStored, BlockRemoved) sent on the ZMQ PUB socket.");
        COUNTER(kv_events_dropped, "tandem_sim_kv_events_dropped_total",
                "KV events in batches the ZMQ PUB socket refused (not sent).");
    }
    metrics_registry_on_collect(r, collect, s);
#undef EACH_RANK
#undef GAUGE
#undef COUNTER
#undef HIST
}

void sim_metrics_count(struct metrics_family *f, const char *label)
{
    metrics_counter_inc(metrics_series_get(f, &label));
}

static double secs(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e9 : 0.0;
}

void sim_metrics_on_finish(struct sim_server *s, const struct sim_req *r,
                           const struct sim_choice *c, uint64_t now)
{
    struct sim_metrics *m = r->rank->m;
    metrics_counter_inc(c->finish == SIM_FINISH_STOP ? m->success_stop : m->success_length);
    metrics_histogram_observe(m->ttft, secs(r->t_arrival, c->t_first));
    metrics_histogram_observe(m->e2e, secs(r->t_arrival, now));
    metrics_histogram_observe(m->queue_time, secs(r->t_arrival, c->t_admit));
    metrics_histogram_observe(m->prefill_time, secs(c->t_admit, c->t_first));
    metrics_histogram_observe(m->decode_time, secs(c->t_first, now));
    metrics_histogram_observe(m->req_prompt_tokens, c->n_prompt);
    metrics_histogram_observe(m->req_generation_tokens, c->produced);
}

void sim_metrics_on_abort(struct sim_rank *k, uint32_t n)
{
    metrics_counter_add(k->m->success_abort, n);
}

void sim_stats_log(struct sim_server *s)
{
    uint64_t now = clock_monotonic_ns();
    double dt = (double)(now - s->log_last_ns) / 1e9;
    for (uint32_t k = 0; k < s->n_ranks; k++) {
        struct sim_rank *rk = &s->ranks[k];
        struct sim_engine_stats st;
        sim_engine_stats(rk->engine, &st);
        uint64_t dp = st.prompt_tokens - rk->log_last.prompt_tokens;
        uint64_t dg = st.generation_tokens - rk->log_last.generation_tokens;
        uint64_t dq = st.prefix_queries_tokens - rk->log_last.prefix_queries_tokens;
        uint64_t dh = st.prefix_hits_tokens - rk->log_last.prefix_hits_tokens;
        /* Like vLLM: stay quiet while idle; one line per engine (DP rank). */
        if (dp || dg || st.running || st.waiting) {
            LOG_I("sim",
                  "Engine %03u: Avg prompt throughput: %.1f tokens/s, Avg generation "
                  "throughput: %.1f tokens/s, Running: %u reqs, Waiting: %u reqs, GPU KV cache "
                  "usage: %.1f%%, Prefix cache hit rate: %.1f%%",
                  k, dt > 0 ? dp / dt : 0, dt > 0 ? dg / dt : 0, st.running, st.waiting,
                  st.kv_usage * 100, dq ? 100.0 * dh / dq : 0.0);
        }
        rk->log_last = st;
    }
    s->log_last_ns = now;
}

/* tandem bench: a load generator that measures what `vllm bench serve` measures.
 *
 * Pieces (one file each):
 *   dataset.c  workloads -> prompts (random, shared-prefix, sharegpt, prefix_repetition)
 *   stats.c    per-request records -> vLLM's metrics (TTFT, TPOT, ITL, E2EL, goodput),
 *              the summary table, the result JSON with vllm bench serve's keys
 *   report.c   self-contained HTML report with inline SVG charts; `bench compare`
 *   timeline.c metrics sampled over the run (--timeline-url), for the JSON and the report
 *   run.c      the driver: arrivals, concurrency cap, rate ladder, streaming client,
 *              progress bar; `tandem bench` (bench_main)
 *
 * Times are seconds (double) from the run's start unless named _ms. Ownership: a
 * dataset owns its prompts' text; records own their itl arrays; every *_free frees what
 * the matching constructor allocated. */
#ifndef TANDEM_BENCH_H
#define TANDEM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* ---- workloads (dataset.c) ----------------------------------------------------------- */

struct bench_prompt {
    char *text;             /* owned, NUL-terminated */
    size_t text_len;
    uint32_t input_tokens;  /* as tandem's tokenizer (src/tokenize) counts text */
    uint32_t output_tokens; /* max_tokens to request */
    uint32_t group;         /* shared-prefix / prefix_repetition group, else 0 */
};

struct bench_dataset {
    struct bench_prompt *prompts;
    size_t n;
};

/* Flag values; names follow vllm bench serve / SGLang (dashes become underscores). */
struct bench_dataset_opts {
    const char *name; /* "random" | "shared-prefix" | "sharegpt" | "prefix_repetition" */
    const char *path; /* sharegpt JSON file */
    long long num_prompts;
    long long seed;
    /* random */
    long long random_input_len, random_output_len, random_prefix_len;
    double random_range_ratio;
    /* shared-prefix (SGLang's generated-shared-prefix names) */
    long long gsp_num_groups, gsp_prompts_per_group, gsp_system_prompt_len, gsp_question_len,
        gsp_output_len;
    /* prefix_repetition (vLLM's names) */
    long long prefix_repetition_prefix_len, prefix_repetition_suffix_len,
        prefix_repetition_num_prefixes, prefix_repetition_output_len;
    /* sharegpt */
    long long sharegpt_output_len; /* 0 = the dataset's own reply length */
};

/* Fills defaults (vllm's: random 1024/128, ratio 0; gsp 150x5, 6000/1200/1000 ...). */
void bench_dataset_opts_defaults(struct bench_dataset_opts *o);

/* Builds the prompts. Deterministic for a given opts (seed included). On error returns
 * false and writes a message naming the flag or FILE: field. */
bool bench_dataset_load(const struct bench_dataset_opts *o, struct bench_dataset *out,
                        char *err, size_t errlen);
void bench_dataset_free(struct bench_dataset *d);

/* ---- per-request records (written by run.c, read by stats.c / report.c) -------------- */

struct bench_record {
    bool ok;              /* 2xx and a complete response */
    int status;           /* HTTP status; 0 when no response arrived */
    char error[160];      /* "" when ok; e.g. "HTTP 503", "connection refused" */
    uint32_t stage;       /* rate-ladder stage index, 0 without a ladder */
    double t_sched;       /* when it was due to be sent */
    double t_send;        /* when it was sent */
    double ttft;          /* first content chunk - t_send; -1 when none */
    double e2el;          /* last chunk - t_send */
    double *itl;          /* owned: gaps between successive content chunks */
    size_t n_itl;
    uint32_t input_tokens;  /* usage.prompt_tokens, else the dataset's count */
    uint32_t output_tokens; /* usage.completion_tokens, else content chunks */
    uint32_t cached_tokens; /* usage.prompt_tokens_details.cached_tokens */
    bool has_cached;
    char pod[64]; /* x-inference-pod, "" when absent */
};

void bench_record_free(struct bench_record *r);

/* ---- statistics and results (stats.c) ------------------------------------------------ */

/* SLOs for goodput, in ms; <= 0 means not set. */
struct bench_slo {
    double ttft_ms, tpot_ms, e2el_ms;
};

/* Parses "ttft:500 tpot:50" (vllm's --goodput, words separated by spaces or given as
 * separate argv words joined by the caller). False with err on a bad key or value. */
bool bench_slo_parse(const char *text, struct bench_slo *out, char *err, size_t errlen);

struct bench_dist { /* one metric over requests, in ms */
    size_t n;
    double mean, median, std, min, max;
    double pct[8]; /* at bench_stats.pcts */
};

struct bench_pod_count {
    char pod[64];
    size_t requests;
};

struct bench_stats {
    double duration; /* s: first send to last completion of the records counted */
    size_t completed, failed;
    size_t failed_by_status[8][2]; /* {status, count}; status 0 = no response */
    size_t n_failed_status;
    uint64_t total_input_tokens, total_output_tokens, total_cached_tokens;
    double request_throughput, output_throughput, total_token_throughput;
    double request_goodput; /* -1 when no SLO was given (null in the JSON) */
    double cache_hit_ratio; /* cached / input over requests reporting cached tokens; -1 none */
    size_t good;            /* requests meeting every SLO */
    double pcts[8];         /* percentiles asked for, e.g. {90, 99} */
    size_t n_pcts;
    struct bench_dist ttft, tpot, itl, e2el;
    double schedule_delay_mean_ms, schedule_delay_p99_ms; /* t_send - t_sched */
    struct bench_pod_count *pods; /* owned, sorted by name */
    size_t n_pods;
    double max_concurrent; /* most requests in flight at once */
};

/* Computes the stats of the records (all of them, or those with r->stage == stage when
 * stage >= 0). Failed requests count in failed only. TPOT excludes requests with <= 1
 * output token; ITL pools every gap of every request (vLLM's definition). */
void bench_stats_compute(const struct bench_record *recs, size_t n, int stage,
                         const struct bench_slo *slo, const double *pcts, size_t n_pcts,
                         struct bench_stats *out);
void bench_stats_free(struct bench_stats *s);

/* vllm bench serve's summary block ("============ Serving Benchmark Result ====="). */
void bench_stats_print(FILE *out, const struct bench_stats *s, const char *title);

/* Describes the run for the result JSON (vllm's top-level keys). */
struct bench_meta {
    const char *date;  /* "YYYYMMDD-HHMMSS" */
    const char *label; /* "tandem" unless --label */
    const char *model;
    const char *base_url, *endpoint, *dataset_name;
    long long num_prompts;
    double request_rate; /* INFINITY for inf */
    double burstiness;
    long long max_concurrency; /* 0 = none */
    const char *percentile_metrics; /* "ttft,tpot,itl,e2el" */
};

/* The result object: vllm bench serve's keys (duration, completed, failed,
 * total_input_tokens, ..., {mean,median,std,pNN}_{ttft,tpot,itl,e2el}_ms) plus tandem's
 * (cache_hit_ratio, per_pod, failed_by_status, schedule delay). With detailed, also
 * the per-request arrays (input_lens, output_lens, ttfts, itls, errors). */
json_t *bench_result_json(const struct bench_meta *m, const struct bench_stats *s,
                          const struct bench_record *recs, size_t n, bool detailed);

/* ---- metrics over time (timeline.c) -------------------------------------------------- */

#define BENCH_TIMELINE_MAX_SERIES 64
#define BENCH_TIMELINE_MAX_SAMPLES 20000

/* Columns of sampled values: v[series][sample], NaN where absent. Owns everything. */
struct bench_timeline {
    double *t; /* s from the run's start */
    size_t n_t;
    char **names; /* "metric{label=\"v\",...}" */
    double **v;
    size_t n_series;
};

/* Adds one sample row at t from a Prometheus text page, keeping the series of the named
 * metrics (several series with the same labels are summed). */
void bench_timeline_add(struct bench_timeline *tl, double t, const char *text, size_t len,
                        const char *const *names, size_t n_names);
void bench_timeline_free(struct bench_timeline *tl);
/* {"t": [...], "series": {"name{labels}": [v or null, ...]}} (new reference). */
json_t *bench_timeline_json(const struct bench_timeline *tl);
/* The reverse; false when j is not such an object. */
bool bench_timeline_from_json(const json_t *j, struct bench_timeline *out);
/* The series' integral over time (value x seconds, each value held until the next
 * sample), e.g. replica-seconds; NaN when there is no such series. */
double bench_timeline_integral(const struct bench_timeline *tl, const char *key);

/* ---- report and compare (report.c) --------------------------------------------------- */

/* One run in a report: its stats, records and a name for legends. */
struct bench_run_view {
    const char *name;
    const struct bench_stats *stats;
    const struct bench_record *recs;
    size_t n;
    const struct bench_timeline *timeline; /* or NULL */
};

/* Writes one self-contained HTML page (inline SVG: TTFT/ITL/E2EL CDFs, TTFT over time,
 * p90 TTFT and ITL over time, sampled metrics over time, per-pod bars, the summary
 * table). No scripts, no external resources. */
bool bench_report_html(FILE *out, const char *title, const struct bench_run_view *runs,
                       size_t n_runs);

/* `tandem bench compare a.json b.json ...`: the runs side by side, ratios vs the first. */
int bench_compare_main(int argc, char **argv);

/* ---- the driver (run.c) -------------------------------------------------------------- */

int bench_main(int argc, char **argv);

#endif

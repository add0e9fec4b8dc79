/* tandem sim: a vLLM-compatible engine simulator (the `tandem sim` command).
 *
 * sim.h is the role's public face: configuration, profiles and the entry point. The
 * engine model itself is in engine.h; everything else in src/sim is internal. */
#ifndef TANDEM_SIM_SIM_H
#define TANDEM_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/engine.h"

enum sim_mode { SIM_MODE_RANDOM, SIM_MODE_ECHO };

/* A named set of engine timings and sizes (docs/sim.md lists them). */
struct sim_profile {
    const char *name;
    const char *description;
    uint32_t num_gpu_blocks; /* at block size 16 */
    uint32_t max_num_seqs;
    uint32_t max_num_batched_tokens;
    uint32_t max_model_len;
    double step_base_s;
    double prefill_tokens_per_s;
    double decode_per_seq_s;
    double decode_per_ctx_token_s;
    double kv_bytes_per_token;     /* KV size of one token (all layers, K and V) */
    double kv_transfer_bandwidth;  /* bytes/s between pods (NIXL) */
    double kv_transfer_latency_s;  /* fixed cost of one transfer */
};

extern const struct sim_profile sim_profiles[];
extern const size_t sim_profiles_n;
const struct sim_profile *sim_profile_find(const char *name);

#define SIM_MAX_NAMES 8
#define SIM_MAX_FAILURE_TYPES 8

struct sim_config {
    const char *model;                       /* the name reported (first served name) */
    const char *model_path;                  /* --model as given (root in /v1/models) */
    const char *served_names[SIM_MAX_NAMES]; /* names the API accepts; [0] is reported */
    size_t n_served;
    char *names_storage; /* owns the --served-model-name strings */
    const char *host;
    int port;
    const char *advertise_host; /* remote_host in kv_transfer_params */
    const char *pod_name;       /* x-inference-pod */
    const char *profile;
    struct sim_engine_config engine;
    long long data_parallel_size; /* --data-parallel-size: engines in this process (1) */
    enum sim_mode mode;
    uint64_t seed;
    uint64_t hash_seed;
    double kv_hold_timeout_s;
    double kv_bytes_per_token;
    double kv_transfer_bandwidth;
    double kv_transfer_latency_s;
    double failure_rate;
    int failure_types[SIM_MAX_FAILURE_TYPES];
    size_t n_failure_types;
    double fault_slow_s;
    bool prompt_tokens_details; /* usage.prompt_tokens_details.cached_tokens */
    bool emit_deprecated_metrics; /* also vllm:gpu_cache_usage_perc */
    double stats_interval_s;      /* periodic engine stats log; 0 = off */
    long long max_body_bytes;
    long long read_timeout_ms; /* one request's header + body */
    bool access_log;
    bool enable_auto_tool_choice; /* --enable-auto-tool-choice */
    const char *tool_call_parser; /* --tool-call-parser NAME (any name; the sim emits
                                   * tool calls itself and parses nothing) */
    /* --kv-events-config JSON (vLLM's KVEventsConfig): publish KV events over ZMQ. */
    bool kv_events;
    char *kv_events_endpoint; /* owned; default tcp, any host, port 5557 */
    char *kv_events_topic;    /* owned; "" */
    int kv_events_hwm;        /* 100000 */
    const char *prefix_caching_hash_algo; /* --prefix-caching-hash-algo ALGO (argv); NULL: engine keys */
    /* E/P/D: --mm-encoder-only (vLLM's flag) makes this sim an encoder: a chat request's
     * multimodal items are "encoded" (mm_encode_s each, time-scaled) and it answers an
     * empty one-token completion; --mm-encode-ms sets mm_encode_s (20 ms). */
    bool mm_encoder_only;
    double mm_encode_s;
};

/* Frees what sim_config_parse allocated (safe on a failed parse). */
void sim_config_free(struct sim_config *cfg);

/* Fills cfg from argv (flags after "tandem sim"). Returns 0 on success, 1 when --help
 * was printed, -1 on a bad command line (message printed to stderr). */
int sim_config_parse(struct sim_config *cfg, int argc, char **argv);

/* Runs the sim until SIGINT/SIGTERM. Returns the process exit code. */
int sim_main(int argc, char **argv);

#endif

/* The sim's command line: vLLM-style flags, profiles, and the vLLM flags a simulator
 * accepts and ignores so a manifest's command line runs as is. A profile fills every
 * engine number first; explicit flags then override. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/flags.h"
#include "base/log.h"
#include "sim/sim.h"
#include "tokenize/tokenize.h"

const struct sim_profile sim_profiles[] = {
    {
        .name = "h100-32b",
        .description = "Qwen3-32B, TP2 on H100: prefill ~15,900 tok/s, ~307k KV tokens",
        .num_gpu_blocks = 19200,
        .max_num_seqs = 256,
        .max_num_batched_tokens = 8192,
        .max_model_len = 32768,
        .step_base_s = 0.020,
        .prefill_tokens_per_s = 15900,
        .decode_per_seq_s = 50e-6,
        .decode_per_ctx_token_s = 100e-9,
        .kv_bytes_per_token = 262144, /* 64 layers x 8 kv heads x 128 x K,V x bf16 */
        .kv_transfer_bandwidth = 50e9,
        .kv_transfer_latency_s = 0.002,
    },
    {
        .name = "h100-8b",
        .description = "Llama-3.1-8B on one H100: prefill ~40,000 tok/s, ~458k KV tokens",
        .num_gpu_blocks = 28600,
        .max_num_seqs = 256,
        .max_num_batched_tokens = 8192,
        .max_model_len = 131072,
        .step_base_s = 0.008,
        .prefill_tokens_per_s = 40000,
        .decode_per_seq_s = 30e-6,
        .decode_per_ctx_token_s = 50e-9,
        .kv_bytes_per_token = 131072, /* 32 layers x 8 kv heads x 128 x K,V x bf16 */
        .kv_transfer_bandwidth = 50e9,
        .kv_transfer_latency_s = 0.002,
    },
    {
        .name = "fast",
        .description = "test profile: h100-8b timings 100x faster, small cache (64k tokens)",
        .num_gpu_blocks = 4096,
        .max_num_seqs = 256,
        .max_num_batched_tokens = 8192,
        .max_model_len = 8192,
        .step_base_s = 80e-6,
        .prefill_tokens_per_s = 4e6,
        .decode_per_seq_s = 0.3e-6,
        .decode_per_ctx_token_s = 0.5e-9,
        .kv_bytes_per_token = 131072,
        .kv_transfer_bandwidth = 5e12,
        .kv_transfer_latency_s = 20e-6,
    },
};
const size_t sim_profiles_n = sizeof sim_profiles / sizeof sim_profiles[0];

const struct sim_profile *sim_profile_find(const char *name)
{
    for (size_t i = 0; i < sim_profiles_n; i++) {
        if (strcmp(sim_profiles[i].name, name) == 0)
            return &sim_profiles[i];
    }
    return NULL;
}

static void apply_profile(struct sim_config *cfg, const struct sim_profile *p)
{
    cfg->profile = p->name;
    cfg->engine.block_size = 16;
    cfg->engine.num_gpu_blocks = p->num_gpu_blocks;
    cfg->engine.max_num_seqs = p->max_num_seqs;
    cfg->engine.max_num_batched_tokens = p->max_num_batched_tokens;
    cfg->engine.max_model_len = p->max_model_len;
    cfg->engine.step_base_s = p->step_base_s;
    cfg->engine.prefill_tokens_per_s = p->prefill_tokens_per_s;
    cfg->engine.decode_per_seq_s = p->decode_per_seq_s;
    cfg->engine.decode_per_ctx_token_s = p->decode_per_ctx_token_s;
    cfg->kv_bytes_per_token = p->kv_bytes_per_token;
    cfg->kv_transfer_bandwidth = p->kv_transfer_bandwidth;
    cfg->kv_transfer_latency_s = p->kv_transfer_latency_s;
}

/* Flag values land here first so ranges can be checked before they reach the config. */
struct raw_flags {
    long long port, block_size, num_gpu_blocks, max_num_seqs, max_batched, max_model_len;
    long long seed, hash_seed, max_body_bytes;
    const char *served, *mode, *log_level, *failure_types, *profile, *kv_events;
    double time_scale, step_base_ms, prefill_rate, decode_per_seq_ms, decode_per_ctx_us;
    double kv_bw, kv_latency_ms, kv_bytes_per_token, fault_slow_ms, mm_encode_ms;
    bool log_json, no_details, no_access_log;
};

static bool parse_failure_types(const char *v, struct sim_config *cfg, char *err, size_t len)
{
    cfg->n_failure_types = 0;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", v);
    for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int code = atoi(t);
        if (code < 400 || code > 599) {
            snprintf(err, len, "--failure-types: '%s' is not an HTTP error status (400-599)", t);
            return false;
        }
        if (cfg->n_failure_types == SIM_MAX_FAILURE_TYPES) {
            snprintf(err, len, "--failure-types: at most %d types", SIM_MAX_FAILURE_TYPES);
            return false;
        }
        cfg->failure_types[cfg->n_failure_types++] = code;
    }
    if (cfg->n_failure_types == 0) {
        snprintf(err, len, "--failure-types: give at least one status, e.g. 503");
        return false;
    }
    return true;
}

static bool split_names(const char *v, struct sim_config *cfg, char *err, size_t len)
{
    /* --served-model-name a,b: names point into one owned copy (freed by sim_main). */
    cfg->names_storage = xstrdup(v);
    for (char *save = NULL, *t = strtok_r(cfg->names_storage, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (cfg->n_served == SIM_MAX_NAMES) {
            snprintf(err, len, "--served-model-name: at most %d names", SIM_MAX_NAMES);
            return false;
        }
        cfg->served_names[cfg->n_served++] = t;
    }
    return true;
}

#define RANGE(val, lo, hi, flag)                                                            \
    do {                                                                                    \
        if ((val) < (lo) || (val) > (hi)) {                                                 \
            fprintf(stderr, "tandem sim: %s: %lld is out of range [%lld, %lld]\n", flag,    \
                    (long long)(val), (long long)(lo), (long long)(hi));                    \
            return -1;                                                                      \
        }                                                                                   \
    } while (0)

/* The profile (--profile is read first: every engine default comes from it) and the
 * defaults of everything else. -1 on an unknown profile. */
static int set_defaults(struct sim_config *cfg, struct raw_flags *raw, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    const char *profile = flags_peek(argc, argv, "--profile");
    if (!profile)
        profile = "h100-8b";
    const struct sim_profile *p = sim_profile_find(profile);
    if (!p) {
        fprintf(stderr, "tandem sim: --profile: unknown profile '%s' (known:", profile);
        for (size_t i = 0; i < sim_profiles_n; i++)
            fprintf(stderr, " %s", sim_profiles[i].name);
        fprintf(stderr, ")\n");
        return -1;
    }
    apply_profile(cfg, p);
    cfg->host = "0.0.0.0";
    cfg->port = 8000;
    cfg->engine.time_scale = 1.0;
    cfg->kv_hold_timeout_s = 480;
    cfg->prompt_tokens_details = true;
    cfg->stats_interval_s = 10;
    cfg->data_parallel_size = 1;
    cfg->access_log = true;

    *raw = (struct raw_flags){
        .port = 8000,
        .block_size = 16,
        .num_gpu_blocks = p->num_gpu_blocks,
        .max_num_seqs = p->max_num_seqs,
        .max_batched = p->max_num_batched_tokens,
        .max_model_len = p->max_model_len,
        .max_body_bytes = 32ll << 20,
        .time_scale = 1.0,
        .step_base_ms = p->step_base_s * 1e3,
        .prefill_rate = p->prefill_tokens_per_s,
        .decode_per_seq_ms = p->decode_per_seq_s * 1e3,
        .decode_per_ctx_us = p->decode_per_ctx_token_s * 1e6,
        .kv_bw = p->kv_transfer_bandwidth,
        .kv_latency_ms = p->kv_transfer_latency_s * 1e3,
        .kv_bytes_per_token = p->kv_bytes_per_token,
        .fault_slow_ms = 2000,
        .mm_encode_ms = 20,
        .mode = "random",
        .log_level = "info",
    };
    const char *pod_env = getenv("POD_NAME");
    cfg->pod_name = pod_env && *pod_env ? pod_env : NULL;
    return 0;
}

/* The flag table: values land in cfg or in r (converted and checked by apply()). vLLM's
 * flags that do not matter to a simulator are rows too (accepted, noted in the log). */
#define SIM_N_FLAGS 80
static size_t sim_flags(struct sim_config *cfg, struct raw_flags *r, struct flag *out)
{
    const struct flag rows[] = {
        {"--model", NULL, FLAG_STRING, &cfg->model, "NAME", "model name (default facebook/opt-125m); also the first positional argument", NULL},
        {"--served-model-name", NULL, FLAG_STRING, &r->served, "A,B", "names the API accepts (comma-separated); the first is reported", NULL},
        {"--host", NULL, FLAG_STRING, &cfg->host, "ADDR", "listen address (default 0.0.0.0)", NULL},
        {"--port", NULL, FLAG_INT, &r->port, "N", "listen port (default 8000)", NULL},
        {"--profile", NULL, FLAG_STRING, &r->profile, "NAME", "engine profile: h100-32b, h100-8b (default), fast", NULL},
        {"--time-scale", NULL, FLAG_DOUBLE, &r->time_scale, "F", "multiply every modeled duration (0.01 = 100x faster)", NULL},
        {"--block-size", NULL, FLAG_INT, &r->block_size, "N", "tokens per KV block (16)", NULL},
        {"--num-gpu-blocks", NULL, FLAG_INT, &r->num_gpu_blocks, "N", "KV cache blocks (profile)", NULL},
        {"--num-gpu-blocks-override", NULL, FLAG_INT, &r->num_gpu_blocks, "N", NULL, NULL},
        {"--max-num-seqs", NULL, FLAG_INT, &r->max_num_seqs, "N", "running sequences cap (profile)", NULL},
        {"--max-num-batched-tokens", NULL, FLAG_INT, &r->max_batched, "N", "token budget per step (profile)", NULL},
        {"--max-model-len", NULL, FLAG_INT, &r->max_model_len, "N", "prompt + output limit in tokens (profile)", NULL},
        {"--step-base-ms", NULL, FLAG_DOUBLE, &r->step_base_ms, "MS", "fixed cost of one engine step (profile)", NULL},
        {"--prefill-rate", NULL, FLAG_DOUBLE, &r->prefill_rate, "TOK/S", "prefill tokens per second (profile)", NULL},
        {"--decode-per-seq-ms", NULL, FLAG_DOUBLE, &r->decode_per_seq_ms, "MS", "step cost per decoding sequence (profile)", NULL},
        {"--decode-per-ctx-token-us", NULL, FLAG_DOUBLE, &r->decode_per_ctx_us, "US", "step cost per context token of decodes (profile)", NULL},
        {"--mode", NULL, FLAG_STRING, &r->mode, "random|echo", "output text: random words (default) or echo the prompt", NULL},
        {"--seed", NULL, FLAG_INT, &r->seed, "N", "seed for generated text and lengths (0)", NULL},
        {"--hash-seed", NULL, FLAG_INT, &r->hash_seed, "N", "prefix-cache hash chain seed (0)", NULL},
        {"--pod-name", NULL, FLAG_STRING, &cfg->pod_name, "NAME", "x-inference-pod header value (env POD_NAME)", NULL},
        {"--advertise-host", NULL, FLAG_STRING, &cfg->advertise_host, "ADDR", "remote_host given to decoders in kv_transfer_params (default: listen address, or 127.0.0.1)", NULL},
        {"--kv-hold-timeout", NULL, FLAG_DOUBLE, &cfg->kv_hold_timeout_s, "S", "seconds a prefill keeps KV blocks for the decoder (480)", NULL},
        {"--kv-transfer-bandwidth", NULL, FLAG_DOUBLE, &r->kv_bw, "B/S", "KV transfer bandwidth in bytes/s (profile)", NULL},
        {"--kv-transfer-latency-ms", NULL, FLAG_DOUBLE, &r->kv_latency_ms, "MS", "fixed cost of one KV transfer (profile)", NULL},
        {"--kv-bytes-per-token", NULL, FLAG_DOUBLE, &r->kv_bytes_per_token, "B", "KV bytes per token (profile)", NULL},
        {"--failure-rate", NULL, FLAG_DOUBLE, &cfg->failure_rate, "P", "fraction of requests answered with an injected error (0)", NULL},
        {"--failure-types", NULL, FLAG_STRING, &r->failure_types, "CODES", "statuses to inject, e.g. 429,503,500,400 (default 503)", NULL},
        {"--fault-slow-ms", NULL, FLAG_DOUBLE, &r->fault_slow_ms, "MS", "delay added by x-fault: slow (2000)", NULL},
        {"--no-prompt-tokens-details", NULL, FLAG_BOOL, &r->no_details, NULL, "report usage.prompt_tokens_details as null, like vLLM's default", NULL},
        {"--emit-deprecated-metrics", NULL, FLAG_BOOL, &cfg->emit_deprecated_metrics, NULL, "also emit vllm:gpu_cache_usage_perc for older scrapers", NULL},
        {"--stats-interval", NULL, FLAG_DOUBLE, &cfg->stats_interval_s, "S", "seconds between engine stats log lines, 0 = off (10)", NULL},
        {"--max-body-bytes", NULL, FLAG_INT, &r->max_body_bytes, "N", "largest request body accepted (32 MiB)", NULL},
        {"--read-timeout-ms", NULL, FLAG_INT, &cfg->read_timeout_ms, "MS", "time allowed to receive one request (30000)", NULL},
        {"--log-level", NULL, FLAG_STRING, &r->log_level, "LEVEL", "error, warn, info (default), debug", NULL},
        {"--log-json", NULL, FLAG_BOOL, &r->log_json, NULL, "log JSON lines", NULL},
        {"--disable-log-requests", NULL, FLAG_BOOL, &r->no_access_log, NULL, "no log line per request", NULL},
        {"--mm-encoder-only", NULL, FLAG_BOOL, &cfg->mm_encoder_only, NULL, "E/P/D encoder: chat requests' multimodal items are encoded (--mm-encode-ms each) and answered with an empty 1-token completion", NULL},
        {"--mm-encode-ms", NULL, FLAG_DOUBLE, &r->mm_encode_ms, "MS", "modelled encoder time per multimodal item, time-scaled (20)", NULL},
        {"--ec-transfer-config", NULL, FLAG_IGNORE_VALUE, NULL, "JSON", "accepted for vLLM compatibility (E/P/D: encoder outputs are not moved)", NULL},
        {"--kv-transfer-config", NULL, FLAG_IGNORE_VALUE, NULL, "JSON", "accepted for vLLM compatibility (P/D is always on)", NULL},
        /* vLLM flags that do not matter to a simulator: accepted and noted. */
        {"--enforce-eager", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--tensor-parallel-size", "-tp", FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--pipeline-parallel-size", "-pp", FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--data-parallel-size", "-dp", FLAG_INT, &cfg->data_parallel_size, "N", "DP ranks: N engines (each its own batch and KV cache) behind this port, picked by the X-data-parallel-rank header, else the least loaded (1)", NULL},
        {"--gpu-memory-utilization", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--dtype", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--kv-cache-dtype", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--quantization", "-q", FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--trust-remote-code", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--enable-prefix-caching", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--enable-chunked-prefill", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--disable-log-stats", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--enable-log-requests", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--disable-uvicorn-access-log", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--uvicorn-log-level", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--swap-space", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--load-format", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--download-dir", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--tokenizer", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--revision", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--distributed-executor-backend", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--chat-template", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--enable-auto-tool-choice", NULL, FLAG_BOOL, &cfg->enable_auto_tool_choice, NULL, "tool_choice \"auto\" (and tools without a tool_choice) may answer with tool calls", NULL},
        {"--tool-call-parser", NULL, FLAG_STRING, &cfg->tool_call_parser, "NAME", "vLLM's parser name (hermes, llama3_json, ...): required with --enable-auto-tool-choice, otherwise unused", NULL},
        {"--max-logprobs", NULL, FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--compilation-config", "-O", FLAG_IGNORE_VALUE, NULL, NULL, NULL, NULL},
        {"--kv-events-config", NULL, FLAG_STRING, &r->kv_events, "JSON", "vLLM's KVEventsConfig: {\"enable_kv_cache_events\": true, \"publisher\": \"zmq\", \"endpoint\": \"tcp://*:5557\", \"topic\": \"\"} publishes BlockStored/BlockRemoved over ZMQ", NULL},
        {"--prefix-caching-hash-algo", NULL, FLAG_STRING, &cfg->prefix_caching_hash_algo, "ALGO", "sha256_cbor: KV events carry vLLM's sha256_cbor block keys (root from PYTHONHASHSEED, as vLLM); other values: the sim's own keys", NULL},
        {"--async-scheduling", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
        {"--disable-frontend-multiprocessing", NULL, FLAG_IGNORE, NULL, NULL, NULL, NULL},
    };
    _Static_assert(sizeof rows / sizeof rows[0] <= SIM_N_FLAGS, "raise SIM_N_FLAGS");
    memcpy(out, rows, sizeof rows);
    return sizeof rows / sizeof rows[0];
}

/* vLLM's KVEventsConfig as JSON. Unknown keys are refused, as vLLM's config class does;
 * replay and queue settings are accepted (the sim has no replay socket and no queue). */
static int parse_kv_events(struct sim_config *cfg, const char *text)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        fprintf(stderr, "tandem sim: --kv-events-config: %s\n",
                root ? "expected a JSON object" : je.text);
        json_decref(root);
        return -1;
    }
    bool enable = false;
    const char *publisher = NULL, *endpoint = "tcp://*:5557", *topic = "";
    long long hwm = 100000;
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        const char *want = NULL;
        if (strcmp(key, "enable_kv_cache_events") == 0) {
            if (json_is_boolean(v))
                enable = json_is_true(v);
            else
                want = "a boolean";
        } else if (strcmp(key, "publisher") == 0) {
            if (json_is_string(v) || json_is_null(v))
                publisher = json_string_value(v);
            else
                want = "a string";
        } else if (strcmp(key, "endpoint") == 0 || strcmp(key, "topic") == 0) {
            if (json_is_string(v))
                *(key[0] == 'e' ? &endpoint : &topic) = json_string_value(v);
            else
                want = "a string";
        } else if (strcmp(key, "replay_endpoint") == 0) {
            if (json_is_string(v))
                LOG_W("sim", "--kv-events-config: replay_endpoint is not supported by the sim "
                             "(no replay socket); subscribers see only live batches");
            else if (!json_is_null(v))
                want = "a string or null";
        } else if (strcmp(key, "hwm") == 0 || strcmp(key, "buffer_steps") == 0 ||
                   strcmp(key, "max_queue_size") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 1000000000)
                want = "a non-negative integer";
            else if (key[0] == 'h')
                hwm = json_integer_value(v);
        } else {
            fprintf(stderr, "tandem sim: --kv-events-config: unknown field '%s'\n", key);
            rc = -1;
            break;
        }
        if (want) {
            fprintf(stderr, "tandem sim: --kv-events-config: '%s' must be %s\n", key, want);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && publisher && strcmp(publisher, "zmq") != 0 && strcmp(publisher, "null") != 0) {
        fprintf(stderr, "tandem sim: --kv-events-config: unknown publisher '%s' (zmq, null)\n",
                publisher);
        rc = -1;
    }
    if (rc == 0) {
        /* vLLM: the publisher defaults to zmq when events are enabled; "null" publishes
         * nothing. */
        cfg->kv_events = enable && !(publisher && strcmp(publisher, "null") == 0);
        cfg->kv_events_endpoint = xstrdup(endpoint);
        cfg->kv_events_topic = xstrdup(topic);
        cfg->kv_events_hwm = (int)hwm;
    }
    json_decref(root);
    return rc;
}

void sim_config_free(struct sim_config *cfg)
{
    free(cfg->names_storage);
    free(cfg->kv_events_endpoint);
    free(cfg->kv_events_topic);
    cfg->names_storage = cfg->kv_events_endpoint = cfg->kv_events_topic = NULL;
}

/* Checks the raw values and moves them into cfg (durations to seconds, names split).
 * -1 with a message naming the flag. */
static int apply(struct sim_config *cfg, const struct raw_flags *rr)
{
    const struct raw_flags r = *rr;
    char err[512];
    RANGE(r.port, 0, 65535, "--port");
    RANGE(r.block_size, 1, 1024, "--block-size");
    RANGE(r.num_gpu_blocks, 1, 100000000, "--num-gpu-blocks");
    RANGE(r.max_num_seqs, 1, 1000000, "--max-num-seqs");
    RANGE(r.max_batched, 1, 100000000, "--max-num-batched-tokens");
    RANGE(r.max_model_len, 1, 100000000, "--max-model-len");
    RANGE(r.max_body_bytes, 1024, 1ll << 34, "--max-body-bytes");
    if (!(r.time_scale > 0) || !(r.prefill_rate > 0) || !(r.kv_bw > 0) || r.step_base_ms < 0 ||
        r.decode_per_seq_ms < 0 || r.decode_per_ctx_us < 0 || r.kv_latency_ms < 0 ||
        r.kv_bytes_per_token < 0) {
        fprintf(stderr, "tandem sim: --time-scale, --prefill-rate and --kv-transfer-bandwidth "
                        "must be > 0, and timing flags >= 0\n");
        return -1;
    }
    if (!(cfg->kv_hold_timeout_s >= 0 && cfg->kv_hold_timeout_s <= 86400 * 7) ||
        !(r.fault_slow_ms >= 0 && r.fault_slow_ms <= 3600e3) ||
        !(r.mm_encode_ms >= 0 && r.mm_encode_ms <= 3600e3)) {
        fprintf(stderr, "tandem sim: --kv-hold-timeout must be in [0, 604800] s, and "
                        "--fault-slow-ms and --mm-encode-ms in [0, 3600000]\n");
        return -1;
    }
    if (cfg->failure_rate < 0 || cfg->failure_rate > 1) {
        fprintf(stderr, "tandem sim: --failure-rate: %g is not in [0, 1]\n", cfg->failure_rate);
        return -1;
    }
    if (cfg->enable_auto_tool_choice && !cfg->tool_call_parser) {
        /* vLLM refuses to start this way too. */
        fprintf(stderr, "tandem sim: --enable-auto-tool-choice requires --tool-call-parser\n");
        return -1;
    }
    if (strcmp(r.mode, "random") == 0) {
        cfg->mode = SIM_MODE_RANDOM;
    } else if (strcmp(r.mode, "echo") == 0) {
        cfg->mode = SIM_MODE_ECHO;
    } else {
        fprintf(stderr, "tandem sim: --mode: '%s' is not random or echo\n", r.mode);
        return -1;
    }
    enum log_level lvl;
    if (!log_parse_level(r.log_level, &lvl)) {
        fprintf(stderr, "tandem sim: --log-level: '%s' is not error, warn, info or debug\n",
                r.log_level);
        return -1;
    }
    log_set_level(lvl);
    log_set_json(r.log_json);
    if (r.served && !split_names(r.served, cfg, err, sizeof err)) {
        fprintf(stderr, "tandem sim: %s\n", err);
        return -1;
    }
    if (cfg->n_served == 0)
        cfg->served_names[cfg->n_served++] = cfg->model;
    cfg->model_path = cfg->model;
    cfg->model = cfg->served_names[0];
    if (r.failure_types) {
        if (!parse_failure_types(r.failure_types, cfg, err, sizeof err)) {
            fprintf(stderr, "tandem sim: %s\n", err);
            return -1;
        }
    } else {
        cfg->failure_types[cfg->n_failure_types++] = 503;
    }

    cfg->port = (int)r.port;
    cfg->engine.block_size = (uint32_t)r.block_size;
    cfg->engine.num_gpu_blocks = (uint32_t)r.num_gpu_blocks;
    cfg->engine.max_num_seqs = (uint32_t)r.max_num_seqs;
    cfg->engine.max_num_batched_tokens = (uint32_t)r.max_batched;
    cfg->engine.max_model_len = (uint32_t)r.max_model_len;
    cfg->engine.time_scale = r.time_scale;
    cfg->engine.step_base_s = r.step_base_ms / 1e3;
    cfg->engine.prefill_tokens_per_s = r.prefill_rate;
    cfg->engine.decode_per_seq_s = r.decode_per_seq_ms / 1e3;
    cfg->engine.decode_per_ctx_token_s = r.decode_per_ctx_us / 1e6;
    cfg->kv_transfer_bandwidth = r.kv_bw;
    cfg->kv_transfer_latency_s = r.kv_latency_ms / 1e3;
    cfg->kv_bytes_per_token = r.kv_bytes_per_token;
    cfg->fault_slow_s = r.fault_slow_ms / 1e3;
    cfg->mm_encode_s = r.mm_encode_ms / 1e3;
    cfg->seed = (uint64_t)r.seed;
    cfg->hash_seed = (uint64_t)r.hash_seed;
    cfg->engine.hash_seed = tok_hash_seed(cfg->model, cfg->hash_seed);
    cfg->max_body_bytes = r.max_body_bytes;
    if (cfg->read_timeout_ms < 0) {
        fprintf(stderr, "tandem sim: --read-timeout-ms must be >= 0\n");
        return -1;
    }
    if (cfg->data_parallel_size < 1 || cfg->data_parallel_size > 64) {
        fprintf(stderr, "tandem sim: --data-parallel-size must be in [1, 64]\n");
        return -1;
    }
    cfg->prompt_tokens_details = !r.no_details;
    cfg->access_log = !r.no_access_log;
    if (r.kv_events && parse_kv_events(cfg, r.kv_events) != 0)
        return -1;
    if (!cfg->advertise_host) {
        cfg->advertise_host =
            strcmp(cfg->host, "0.0.0.0") == 0 || strcmp(cfg->host, "::") == 0 ? "127.0.0.1"
                                                                                : cfg->host;
    }
    return 0;
}

int sim_config_parse(struct sim_config *cfg, int argc, char **argv)
{
    struct raw_flags r;
    if (set_defaults(cfg, &r, argc, argv) != 0)
        return -1;
    struct flag flags[SIM_N_FLAGS];
    const size_t n_flags = sim_flags(cfg, &r, flags);

    struct flags_result res;
    char err[512];
    if (!flags_parse(flags, n_flags, argc, argv, &res, err, sizeof err)) {
        fprintf(stderr, "tandem sim: %s\n", err);
        return -1;
    }
    if (res.help) {
        flags_print_help(stdout, "tandem sim [MODEL] [flags]",
                         "A vLLM-compatible engine simulator: OpenAI API, continuous batching,\n"
                         "prefix cache, P/D KV transfer (NIXL protocol), vLLM metrics.\n"
                         "Profiles set every engine number at once; flags override them.\n"
                         "vLLM flags that do not matter to a simulator are accepted and ignored.",
                         flags, n_flags);
        return 1;
    }
    /* "tandem sim serve MODEL ..." mirrors "vllm serve MODEL ...". */
    size_t first_pos = 0;
    if (res.n_positional > 0 && strcmp(res.positional[0], "serve") == 0)
        first_pos = 1;
    for (size_t i = first_pos; i < res.n_positional; i++)
        res.positional[i - first_pos] = res.positional[i];
    res.n_positional -= first_pos;
    if (res.n_positional > 1) {
        fprintf(stderr, "tandem sim: unexpected argument '%s'\n", res.positional[1]);
        return -1;
    }
    if (res.n_positional == 1 && !cfg->model)
        cfg->model = res.positional[0];
    if (!cfg->model)
        cfg->model = "facebook/opt-125m";

    if (apply(cfg, &r) != 0)
        return -1;
    for (size_t i = 0; i < res.n_ignored; i++)
        LOG_I("sim", "ignoring vLLM flag %s (no effect in a simulator)", res.ignored[i]);
    return 0;
}

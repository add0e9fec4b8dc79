/* The scheduler: llm-d's endpoint picker semantics (profile handler -> per profile:
 * filters -> weighted scorers -> picker), over an endpoint datastore.
 *
 * This header is the contract the router role uses. Plugins, the registry, the prefix
 * index and the EndpointPickerConfig loader live behind it (the .c files of src/sched).
 *
 * Threads: one datastore and one scheduler are shared by every router worker thread.
 * sched_schedule may run concurrently on several threads; endpoint metrics are written
 * by the scraper while schedulers read them (fields are atomics or copied under the
 * datastore's lock; see sched_endpoint_snapshot). */
#ifndef TANDEM_SCHED_SCHED_H
#define TANDEM_SCHED_SCHED_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "net/http.h"
#include "base/err.h"

/* --- endpoints ---------------------------------------------------------------------- */

enum sched_role { SCHED_ROLE_NONE, SCHED_ROLE_DECODE, SCHED_ROLE_PREFILL, SCHED_ROLE_BOTH };

#define SCHED_MAX_LABELS 16

struct sched_label {
    char *key;
    char *value;
};

/* What defines an endpoint (from --endpoint, an endpoints file, later Kubernetes). */
struct sched_endpoint_spec {
    const char *name; /* "decode-0" */
    const char *host; /* numeric address or "localhost" */
    int port;
    enum sched_role role;
    struct sched_label labels[SCHED_MAX_LABELS]; /* includes llm-d.ai/role when given */
    size_t n_labels;
    const char *source; /* where it came from, for /debug/endpoints: "flag", "file:PATH",
                           "pool:NS/NAME" (NULL = "flag") */
};

/* Engine state as last scraped, plus the router's own live counts. */
struct sched_endpoint_metrics {
    bool have;           /* at least one successful scrape */
    bool stale;          /* older than the staleness threshold */
    bool healthy;        /* reachable (last scrape or probe succeeded) */
    double waiting;      /* vllm:num_requests_waiting */
    double running;      /* vllm:num_requests_running */
    double kv_usage;     /* vllm:kv_cache_usage_perc (0..1) */
    uint32_t block_size; /* from vllm:cache_config_info, 0 if unknown */
    uint32_t num_blocks;
    /* LoRA (vllm:lora_requests_info): comma-separated adapter names. */
    char running_loras[256];
    char waiting_loras[256];
    uint32_t max_lora;
    uint64_t scraped_at_ns;    /* monotonic */
    int64_t inflight_requests; /* router's own: sent, not finished */
    int64_t inflight_tokens;   /* router's own: prompt tokens of those */
    /* Dispatch-since-scrape estimate. The scraper stores the endpoint's sent counters
     * (sched_endpoint_sent) as they were when it requested this scrape; UINT64_MAX: no
     * estimate (--raw-scraped-load). The snapshot fills pending_*: what the router sent
     * since then and is still in flight (min of the two), which the scraped values
     * cannot show yet (0 without an estimate). */
    uint64_t sent_base_requests;
    uint64_t sent_base_tokens;
    double pending_requests;
    double pending_tokens;
};

/* The load the queue and KV scorers rank by: the scraped value plus what this router sent
 * since that scrape was requested (a request arrives waiting and takes KV blocks for its
 * prompt), so consecutive picks between two scrapes do not all land on the endpoint that
 * looked idlest at the last one. With --raw-scraped-load these are the scraped values. */
static inline double sched_m_waiting_est(const struct sched_endpoint_metrics *m)
{
    return m->waiting + m->pending_requests;
}

static inline double sched_m_kv_usage_est(const struct sched_endpoint_metrics *m)
{
    double cap = (double)m->num_blocks * m->block_size, u = m->kv_usage;
    if (cap > 0)
        u += m->pending_tokens / cap;
    return u < 1.0 ? u : 1.0;
}

struct sched_endpoint; /* opaque, refcounted, owned by the datastore */
struct sched_datastore;

struct sched_datastore *sched_ds_new(void);
void sched_ds_free(struct sched_datastore *ds);
/* Adds or replaces (same name) an endpoint. Copies the spec. Returns 0 or -EINVAL. */
int sched_ds_upsert(struct sched_datastore *ds, const struct sched_endpoint_spec *spec);
/* Removes an endpoint; its prefix-index entries are purged. false if unknown. */
bool sched_ds_remove(struct sched_datastore *ds, const char *name);
/* Current endpoints, each with a reference taken: release with sched_ds_release_list. */
size_t sched_ds_list(struct sched_datastore *ds, struct sched_endpoint ***out);
void sched_ds_release_list(struct sched_endpoint **eps, size_t n);
struct sched_endpoint *sched_ds_find(struct sched_datastore *ds, const char *name); /* ref'd */
void sched_endpoint_ref(struct sched_endpoint *e);
void sched_endpoint_unref(struct sched_endpoint *e);

const char *sched_endpoint_name(const struct sched_endpoint *e);
const char *sched_endpoint_host(const struct sched_endpoint *e);
int sched_endpoint_port(const struct sched_endpoint *e);
const char *sched_endpoint_addr(const struct sched_endpoint *e); /* "host:port" */
enum sched_role sched_endpoint_role(const struct sched_endpoint *e);
/* An llm-d.ai/role value as a role: decode, prefill, both (also prefill-decode and
 * encode-prefill-decode), prefill for encode-prefill; NONE for encode, unknown or NULL. */
enum sched_role sched_role_from_text(const char *v);
/* Whether llm-d's role filter filter_type ("decode-filter", "prefill-filter",
 * "encode-filter") keeps e, by the role label's value (llm-d's lists, roles.go). */
bool sched_role_accepts(const struct sched_endpoint *e, const char *filter_type);
const char *sched_endpoint_label(const struct sched_endpoint *e, const char *key); /* or NULL */
const char *sched_endpoint_source(const struct sched_endpoint *e); /* never NULL */
/* Consistent copy of the metrics. */
void sched_endpoint_snapshot(const struct sched_endpoint *e, struct sched_endpoint_metrics *out);

/* Scraper side. */
void sched_endpoint_set_scraped(struct sched_endpoint *e, const struct sched_endpoint_metrics *m);
void sched_endpoint_set_health(struct sched_endpoint *e, bool healthy);
/* Router side: a blocked endpoint (its circuit breaker is open) is not a candidate, like
 * an unhealthy one, but health scraping does not unblock it; only the router does. */
void sched_endpoint_set_blocked(struct sched_endpoint *e, bool blocked);
bool sched_endpoint_blocked(const struct sched_endpoint *e);
/* Router side: +1/-1 request and +/- prompt tokens when a proxied request starts/ends.
 * A start (requests > 0) also counts in the sent totals. */
void sched_endpoint_inflight_add(struct sched_endpoint *e, int64_t requests, int64_t tokens);
/* Monotonic totals of requests and prompt tokens sent to the endpoint (scraper side:
 * stored as sent_base_* with each scrape). */
void sched_endpoint_sent(const struct sched_endpoint *e, uint64_t *requests, uint64_t *tokens);

/* --- scheduling ---------------------------------------------------------------------- */

/* What the scheduler sees of one request. Everything is borrowed for the call. */
struct sched_request {
    const char *request_id;
    const char *model;  /* may be NULL */
    const char *prompt; /* completions prompt, or the chat rendered to text */
    size_t prompt_len;
    uint32_t prompt_tokens; /* 0 = not counted: plugins needing it count lazily */
    const struct http_headers *headers;
    const char *user;        /* body "user", may be NULL (consistent-hash key) */
    const char *session_id;  /* body "session_id", may be NULL (same) */
    const char *target_lora; /* adapter name when the model is a LoRA, else NULL */
    /* Chat content parts of type image_url / video_url / input_audio (llm-d's multimodal
     * test, always-disagg-multimodal-decider); 0 for text-only and completions. */
    uint32_t mm_items;
    /* The request's InferenceObjective priority (0 default); < 0 = sheddable: admitters
     * and the saturation detector may refuse it with 429. */
    int priority;
    /* The gateway's subset hint (ext_proc envoy.lb.subset_hint): only endpoints whose
     * "host:port" is listed are candidates; an empty list leaves none (503). */
    bool has_subset;
    const char *const *subset;
    size_t n_subset;
};

/* What the profile handler decided about P/D. */
enum sched_pd_outcome {
    SCHED_PD_SINGLE = 0,       /* one profile: no P/D in this config (or not scheduled) */
    SCHED_PD_DECODE_ONLY,      /* the decider said no (cached / short prompt) */
    SCHED_PD_DISAGGREGATE,     /* prefill picked: res->prefill is set */
    SCHED_PD_NO_PREFILL,       /* disaggregation wanted, no prefill endpoint healthy */
};

#define SCHED_MAX_PICKS 8
#define SCHED_MAX_PLUGIN_TIMES 24

struct sched_result {
    int status;       /* 0 ok; 503 no endpoint survived; 429 queue bound */
    char reason[256]; /* why status != 0, for the error body */
    /* Decode (or only) profile: picked endpoints, best first (fallbacks after [0]). */
    struct sched_endpoint *picks[SCHED_MAX_PICKS]; /* each ref'd: sched_result_release */
    size_t n_picks;
    /* P/D: the prefill endpoint when the handler decided to disaggregate. */
    struct sched_endpoint *prefill; /* ref'd, or NULL */
    const char *pd_reason;          /* static text: why P/D was or was not chosen */
    /* E/P/D: the encode profile's picks when the handler ran it (each ref'd), joined
     * into x-encoder-hosts-ports; n_encode 0 = no encode stage. */
    struct sched_endpoint *encode[SCHED_MAX_PICKS];
    size_t n_encode;
    const char *encode_reason; /* static text: why the encode stage ran or not, or NULL */
    /* disagg-profile-handler: llm-d's decision_type (decode-only, prefill-decode,
     * encode-decode, encode-prefill-decode); NULL under other handlers. Static. */
    const char *disagg_decision;
    enum sched_pd_outcome pd;       /* the same, for code to branch on */
    uint64_t elapsed_ns;
    /* Time spent in each plugin call, on sampled decisions only (1 in 16 per thread: the
     * clock reads are not free); n_plugin_times is 0 on the others. Names are borrowed
     * from the scheduler and live as long as it does. */
    struct {
        const char *name;
        uint64_t ns;
    } plugin_times[SCHED_MAX_PLUGIN_TIMES];
    size_t n_plugin_times;
    /* Prefix index view of the pick: the prompt's blocks and how many of its leading
     * blocks the picked endpoint held (0/0 when no prefix scorer ran). */
    uint32_t prefix_blocks;
    uint32_t prefix_hit_blocks;
    /* data-parallel-profile-handler: send to the pick's host at this port, with
     * x-data-parallel-host-port = the pick's "host:port" (0: no rewrite). */
    int dp_primary_port;
};
void sched_result_release(struct sched_result *r);

struct sched;


/* Builds a scheduler from an EndpointPickerConfig (YAML or JSON text; name is used in
 * errors, e.g. the file path or "<config-text>"). NULL text = the default profile
 * (queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer 3,
 * max-score-picker). Returns NULL with err on any problem. ds is borrowed and must
 * outlive the scheduler (sched_free before sched_ds_free). */
struct sched *sched_new(struct sched_datastore *ds, const char *text, size_t len, const char *name,
                        struct errinfo *err);
/* The config text for a --policy preset (round_robin, random, consistent_hash,
 * power_of_two, cache_aware, llm-d); NULL for an unknown name. Static string. */
const char *sched_policy_config(const char *policy);
/* The URL path the router scrapes engine metrics from: the config's metrics-data-source
 * path, "/metrics" without one. Owned by s. */
const char *sched_metrics_path(const struct sched *s);
/* One attribute a response reporter (request-attribute-reporter) produced: Envoy dynamic
 * metadata namespace, key and value. Strings are owned by the scheduler. */
struct sched_attribute {
    const char *ns;
    const char *name;
    double value;
};
#define SCHED_MAX_ATTRIBUTES 8
/* Runs the config's response reporters over a finished response's usage object (may be
 * NULL: none run); returns how many attributes were written to out (<= max). */
size_t sched_report_response(const struct sched *s, const json_t *usage,
                             struct sched_attribute *out, size_t max);
/* Whether the config has response reporters (so the caller keeps response bodies). */
bool sched_has_reporters(const struct sched *s);
/* Envoy's dynamic metadata on a response (ext_proc: the metadata_context of the
 * response_headers message), as destination-endpoint-served-verifier reads it: whether
 * namespace envoy.lb is there (a struct), and its x-gateway-destination-endpoint-served
 * string (NULL when absent or not a string). The HTTP proxy has no Envoy: has_lb false. */
struct sched_lb_meta {
    bool has_lb;
    const char *served;
};
/* One response header a response-header plugin sets (name static, value copied). */
struct sched_resp_header {
    const char *name;
    char value[512];
};
#define SCHED_MAX_RESP_HEADERS 4
/* Runs the config's response-header plugins (destination-endpoint-served-verifier) when a
 * response's headers arrive; returns how many headers were written to out (<= max). */
size_t sched_response_headers(const struct sched *s, const struct sched_lb_meta *lb,
                              struct sched_resp_header *out, size_t max);
bool sched_has_response_headers(const struct sched *s);
/* token-producer: where to tokenize a prompt before scheduling (the engine's vLLM
 * /tokenize under path_prefix). Strings are owned by the scheduler. */
struct sched_tokenize {
    const char *host;
    int port;
    const char *path_prefix; /* "" or "/prefix" */
    const char *model;       /* modelName, sent as "model" */
    uint64_t timeout_ms;     /* vllm.timeout */
    uint64_t mm_timeout_ms;  /* vllm.mmTimeout: chats with non-text content */
};
/* Whether req's prompt should be tokenized first: SCHED_TOK_NEEDED (the config has a
 * token-producer and its cache does not hold this prompt; t filled), SCHED_TOK_CACHED (it
 * does), SCHED_TOK_NONE (no token-producer, or no prompt). */
enum { SCHED_TOK_NONE, SCHED_TOK_CACHED, SCHED_TOK_NEEDED };
int sched_tokenize_needed(const struct sched *s, const struct sched_request *req,
                          struct sched_tokenize *t);
/* Caches the engine's token ids for req's prompt; later decisions use their count as
 * prompt_tokens. */
void sched_tokens_put(const struct sched *s, const struct sched_request *req,
                      const uint32_t *ids, size_t n);
void sched_tokens_stats(const struct sched *s, uint64_t *hits, uint64_t *misses);
bool sched_has_token_producer(const struct sched *s);
/* Whether the config's parser is passthrough-parser: the router then parses no request
 * body (no model, prompt or stream flag; the body goes to the engine as it came). */
bool sched_passthrough_parser(const struct sched *s);
/* Starts the plugins' own I/O on loop (the router's control loop; today the
 * precise-prefix-cache-scorer's KV events socket). 0, or -1 with err naming the plugin and
 * field. sched_stop (on the same loop thread, before the loop's last run) closes the
 * handles; sched_free releases the rest. Loading a config (sched_new) opens nothing. */
struct uv_loop_s;
int sched_start(struct sched *s, struct uv_loop_s *loop, struct errinfo *err);
void sched_stop(struct sched *s);
/* precise-prefix-cache-scorer's index counters (llm-d's kvcache_index_*), summed over
 * the scorers whose kvBlockIndexConfig.enableMetrics is true; false when there is none. */
struct sched_kv_index_stats {
    uint64_t admissions;      /* (block, pod) pairs added from BlockStored */
    uint64_t evictions;       /* (block, pod) pairs removed (BlockRemoved, AllBlocksCleared) */
    uint64_t lookup_requests; /* scoring lookups */
    uint64_t lookup_hits;     /* request blocks found in the index during lookups */
    uint64_t blocks;          /* blocks indexed now */
};
bool sched_kv_index_stats(const struct sched *s, struct sched_kv_index_stats *out);
/* Writes every known plugin type with its kind and parameters (--help-plugins). */
void sched_help_plugins(FILE *out);
void sched_free(struct sched *s);

/* Runs the pipeline. With trace != NULL, appends the decision as one JSON object:
 * {"request_id","model","profiles":[{"name","candidates":[...],"filters":[{"name",
 * "survivors":[...]}],"scorers":[{"name","weight","scores":{pod:score}}],"totals":{pod:t},
 * "picked":[...]}],"pd":{"decision","reason"},"picked":...,"prefill":...,"elapsed_us"}.
 * Top-level "picked" is the array of res->picks names, "prefill" a name or null,
 * "pd.decision" "disaggregate" or "decode-only"; "status" is always present and
 * "reason" too when status != 0 (a failed profile carries its own "reason").
 * Candidates are the endpoints whose metrics say healthy (scraped or probed OK);
 * unhealthy and never-healthy endpoints are excluded before any filter runs.
 * After a successful pick the post-pick hooks run (prefix index insert, LRU, session),
 * unless dry_run. res is overwritten (not released first). */
void sched_schedule(struct sched *s, const struct sched_request *req, bool dry_run,
                    struct sched_result *res, struct buf *trace);

/* Session affinity: the token to return to the client for this endpoint (base64 of the
 * endpoint name, as llm-d does), written into out. */
void sched_session_token(const struct sched_endpoint *e, char *out, size_t cap);

/* Stats for /metrics. */
size_t sched_prefix_index_size(const struct sched *s); /* block entries */

#endif

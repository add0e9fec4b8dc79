/* Internal state of the sim role, shared by its files:
 *   server.c   HTTP routes, request lifecycle, the engine driver (a libuv timer)
 *   output.c   generated text, stop strings, logprobs, response/chunk JSON
 *   pd.c       P/D: pinned KV on the prefill side, pulls on the decode side
 *   stats.c    vLLM metrics and the periodic stats log line
 *
 * Lifetime: a sim_req is created by a generation request and freed only in the close
 * callback of its timer (req_release), never inside one of its own callbacks. The HTTP
 * exchange may go away first (client disconnect): then ex is NULL and nothing more is
 * written. Engine sequences are aborted before the request is released. */
#ifndef TANDEM_SIM_SIM_INTERNAL_H
#define TANDEM_SIM_SIM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/metrics.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "openai/openai.h"
#include "sim/engine.h"
#include "sim/kvpub.h"
#include "sim/sim.h"
#include "sim/tools.h"

struct sim_req;
struct sim_rank;

/* Output decided up front: token ids and the text they decode to. */
struct sim_output {
    uint32_t *ids; /* n tokens */
    uint32_t n;
    struct buf text;   /* text of all n tokens */
    uint32_t *off;     /* token i covers text[off[i], off[i] + len[i]) */
    uint32_t *len;
    uint64_t *h;       /* context hash (sim/lm.h) before token i: its logprobs */
    size_t final_len;  /* text reported: clipped before a matched stop string (or after
                        * it, with include_stop_str_in_output) */
    enum sim_finish finish;
    const char *stop_reason; /* the matched stop string, or NULL */
};

enum sim_pd_role { SIM_PD_NONE, SIM_PD_PREFILL, SIM_PD_DECODE };

struct sim_choice {
    struct sim_req *req;
    uint32_t index;        /* prompt * n + sample, as vLLM numbers choices */
    uint32_t prompt_index; /* which prompt of the request */
    uint32_t sample;       /* which of the prompt's n choices (its sampling stream) */
    uint32_t *prompt_ids;
    uint32_t n_prompt;
    const char *prompt_text; /* may be NULL (token-id prompts) */
    size_t prompt_text_len;
    struct sim_output out;
    uint64_t seq; /* engine id, 0 once finished or aborted */
    uint32_t produced;
    uint32_t streamed; /* tokens already written to the stream */
    bool finish_sent;  /* streaming: the last content chunk carried finish_reason */
    uint32_t cached_tokens;
    bool done;
    enum sim_finish finish;
    uint64_t t_admit, t_first, t_last; /* engine time (monotonic ns) */
    struct sim_tool_call *tool; /* the answer is this tool call (tools.c), or NULL */
};

enum sim_fault_kind { SIM_FAULT_NONE, SIM_FAULT_HANG, SIM_FAULT_CLOSE_AFTER, SIM_FAULT_SLOW };

struct sim_req {
    struct sim_server *s;
    struct sim_rank *rank;    /* the DP rank (engine) serving it */
    struct http_exchange *ex; /* NULL once the client is gone or the response ended */
    struct arena arena;       /* lives as long as the request */
    struct openai_request oreq;
    const char *id;           /* "cmpl-..." / "chatcmpl-..." */
    const char *request_id;   /* x-request-id */
    uint64_t created;         /* unix seconds */
    uint64_t t_arrival;       /* monotonic ns */
    uint32_t n_mm;            /* multimodal content parts (chat) */
    struct sim_choice *choices; /* n_prompts x n, in choice-index order */
    uint32_t n_choices;
    uint32_t n_done;
    bool stream;
    bool role_sent;           /* chat streaming: first chunk with the role went out */
    struct sim_shape *shape;  /* structured output / tools (tools.c), or NULL: plain text */
    enum sim_pd_role pd;
    /* Decode side: the prefiller's params, checked. */
    const char *remote_host;
    int remote_port;
    const char *remote_request_id;
    const char *remote_engine_id;
    json_t *remote_block_ids; /* borrowed from oreq.root */
    struct http_call *pull;   /* in flight, or NULL */
    uint64_t pull_seq;        /* engine id waiting for KV */
    uint32_t pull_tokens;
    enum sim_fault_kind fault;
    uint32_t close_after;     /* SIM_FAULT_CLOSE_AFTER */
    uv_timer_t timer;         /* slow fault, KV transfer; its close frees the request */
    bool released;
};

/* A prefill's finished KV, held for the decoder. */
struct sim_pin {
    struct sim_pin *next; /* hash chain */
    struct sim_server *s;
    struct sim_rank *rank; /* whose engine holds the blocks */
    char *request_id;
    uint64_t seq;
    uint32_t n_blocks;
    uv_timer_t hold; /* --kv-hold-timeout */
};

#define SIM_PIN_BUCKETS 1024

enum sim_pod_mode { SIM_POD_HEALTHY, SIM_POD_REFUSE, SIM_POD_HANG };

struct sim_metrics {
    struct metrics_registry *reg;
    struct metrics_series *running, *waiting, *kv_usage, *gpu_cache_usage;
    struct metrics_series *prompt_tokens, *generation_tokens, *preemptions;
    struct metrics_series *prefix_queries, *prefix_hits;
    struct metrics_series *success_stop, *success_length, *success_abort;
    struct metrics_series *ttft, *itl, *e2e, *queue_time, *prefill_time, *decode_time;
    struct metrics_series *req_prompt_tokens, *req_generation_tokens;
    struct metrics_family *pd_fallbacks; /* tandem_sim_pd_fallbacks_total{reason} */
    struct metrics_family *kv_pulls;     /* tandem_sim_kv_pulls_total{result} */
    struct metrics_family *faults;       /* tandem_sim_faults_injected_total{kind} */
    struct metrics_series *pinned;       /* tandem_sim_kv_pinned_requests */
    struct metrics_series *mm_items;     /* tandem_sim_mm_items_total (chat, any role) */
    struct metrics_series *mm_encoded;   /* tandem_sim_mm_encoded_items_total (encoder) */
    struct metrics_series *kv_events_published, *kv_events_dropped; /* with kv events on */
    struct sim_engine_stats last;        /* counters already exported */
};

/* One data-parallel rank (--data-parallel-size): its own engine (batch, KV cache), its
 * driver, and its series (engine="<index>") of the shared metric families. Requests pick
 * one by the X-data-parallel-rank header, else the least loaded. */
struct sim_rank {
    struct sim_server *s;
    uint32_t index;
    char label[12]; /* the engine label value: "0", "1", ... */
    struct sim_engine *engine;
    uv_timer_t step_timer;
    uv_idle_t step_idle; /* continues a step backlog after the loop did I/O */
    bool step_in_flight;
    bool in_step_end;   /* callbacks run: the driver begins the next step itself */
    uint64_t step_wall; /* wall time when the step being completed was completed */
    uint64_t step_end;  /* engine time the in-flight step completes */
    struct sim_metrics *m; /* its series; rank 0's is s->m (which holds the shared ones) */
    struct sim_engine_stats log_last;
    struct sim_kvpub *kvpub; /* --kv-events-config publisher, or NULL */
    uint64_t kv_sent_last, kv_dropped_last; /* already exported to the metrics */
};

struct sim_server {
    struct sim_config *cfg;
    uv_loop_t *loop;
    struct http_server *http;
    struct http_client *client;
    struct sim_rank *ranks; /* --data-parallel-size of them */
    uint32_t n_ranks;
    uv_timer_t stats_timer;
    struct sim_metrics m;
    char engine_id[37];
    uint64_t created;
    uint64_t rng;
    enum sim_pod_mode pod_mode;
    struct sim_pin *pins[SIM_PIN_BUCKETS];
    size_t n_pins;
    uint64_t n_requests; /* served, for logs */
    uint64_t n_pins_made; /* makes every remote_request_id unique */
    bool dying;
    uint64_t log_last_ns;
    bool stopping;
    struct buf scratch; /* token frames of one callback, reused */
};

/* server.c */
void sim_driver_kick(struct sim_server *s);
void sim_req_write(struct sim_req *r, const char *data, size_t len);
void sim_req_fail(struct sim_req *r, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sim_req_finish_response(struct sim_req *r);
void sim_req_release(struct sim_req *r);

/* output.c */
void sim_output_generate(const struct sim_config *cfg, const struct sim_req *r,
                         const struct sim_choice *c, uint32_t max_tokens, struct sim_output *out);
void sim_output_free(struct sim_output *o);
/* Output that is the given text (structured output, tool arguments), cut at max_tokens;
 * finish STOP when it all fits with room for EOS, else LENGTH. Stop strings apply. */
void sim_output_from_text(const struct openai_request *q, const struct sim_choice *c,
                          const char *text, size_t len, uint32_t max_tokens, struct sim_output *o);
/* Whole non-streaming response body. kv_params: JSON text or NULL ("null"). */
void sim_render_response(const struct sim_req *r, const char *kv_params, struct buf *out);
/* Streaming: appends SSE frames for tokens [c->streamed, c->produced) of choice c. */
void sim_render_token_chunks(struct sim_req *r, struct sim_choice *c, struct buf *out);
/* Streaming: a finish frame for choice c, for when its last token chunk could not
 * carry finish_reason (the engine ended it early). */
void sim_render_finish_chunk(const struct sim_req *r, const struct sim_choice *c,
                             struct buf *out);
/* Streaming: the usage frame (choices: []). */
void sim_render_usage_chunk(const struct sim_req *r, struct buf *out);
void sim_render_usage(const struct sim_req *r, struct buf *out);
/* Bytes of the prompt as echo shows it. */
size_t sim_prompt_text_len(const struct sim_choice *c);
/* Prompt text of token ids (pieces we know, pseudo-words otherwise: tok_id_text). */
void sim_detokenize(const uint32_t *ids, size_t n, struct buf *out);

/* pd.c */
/* Reads kv_transfer_params; returns false after answering the request with a 400. */
bool sim_pd_prepare(struct sim_req *r);
void sim_pd_on_kv_load(struct sim_req *r, uint64_t seq, uint32_t tokens);
/* Prefill side, after the sequence finished: pins its blocks, returns the params JSON
 * (arena string) for the response, or NULL when vLLM would return none. */
const char *sim_pd_pin(struct sim_req *r, struct sim_choice *c);
void sim_pd_cancel(struct sim_req *r);
void sim_pd_handle_pull(struct sim_server *s, struct http_exchange *ex);
void sim_pd_free_all(struct sim_server *s);

/* stats.c */
void sim_metrics_init(struct sim_server *s);
void sim_metrics_on_finish(struct sim_server *s, const struct sim_req *r,
                           const struct sim_choice *c, uint64_t now);
/* n sequences ended because their client went away (or a fault dropped it). */
void sim_metrics_on_abort(struct sim_rank *k, uint32_t n);
void sim_metrics_count(struct metrics_family *f, const char *label);
void sim_stats_log(struct sim_server *s);

#endif

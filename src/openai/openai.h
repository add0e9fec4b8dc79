/* The OpenAI request model: parse a request body once into the fields engines and
 * routers need, render chat messages into one prompt, and write OpenAI-style errors.
 *
 * Ownership: openai_request_parse takes no ownership of body; the request keeps its own
 * reference to the parsed JSON (root) and allocates everything else from the arena the
 * caller passes, so the request lives until openai_request_free and the arena's end,
 * whichever is first. Strings point into root or the arena. */
#ifndef TANDEM_OPENAI_OPENAI_H
#define TANDEM_OPENAI_OPENAI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/arena.h"
#include "base/buf.h"

enum openai_api {
    OPENAI_COMPLETIONS,
    OPENAI_CHAT,
};

/* The OpenAI routes tandem serves or proxies: one table, used by the router, the sim,
 * P/D and bench. */
#define OPENAI_PATH_COMPLETIONS "/v1/completions"
#define OPENAI_PATH_CHAT "/v1/chat/completions"
#define OPENAI_PATH_RESPONSES "/v1/responses"
#define OPENAI_PATH_MODELS "/v1/models"

enum openai_route {
    OPENAI_ROUTE_COMPLETIONS,
    OPENAI_ROUTE_CHAT,
    OPENAI_ROUTE_RESPONSES,
    OPENAI_ROUTE_MODELS,
};

struct openai_route_info {
    enum openai_route route;
    const char *method; /* "POST" or "GET" */
    const char *path;   /* static: usable as a metrics label */
    bool generation;    /* a prompt goes in, tokens come out (scheduled, P/D) */
};

/* The route for a request, or NULL. A query string after the path is ignored. */
const struct openai_route_info *openai_route_find(const char *method, const char *path);

/* Maps a path to an API; false for paths that are not generation endpoints. */
bool openai_api_from_path(const char *path, enum openai_api *out);

/* One prompt of a (possibly batched) completions request, or the rendered chat. */
struct openai_prompt {
    const char *text; /* NULL when given as token ids */
    size_t text_len;
    const uint32_t *ids; /* when given as token ids, else NULL */
    size_t n_ids;
};

#define OPENAI_MAX_STOP 64
#define OPENAI_MAX_N 128      /* choices per prompt */
#define OPENAI_MAX_LOGPROBS 20 /* vLLM's default --max-logprobs */
#define OPENAI_VOCAB_SIZE 50257 /* what logprobs: -1 means (the sim's vocabulary) */

struct openai_request {
    enum openai_api api;
    json_t *root; /* owned reference */
    const char *model;
    struct openai_prompt *prompts; /* arena; >= 1 */
    size_t n_prompts;
    /* Chat only: the last message's text (echo mode repeats it). */
    const char *last_message;
    size_t last_message_len;
    bool stream;
    bool include_usage;          /* stream_options.include_usage */
    bool continuous_usage_stats; /* stream_options.continuous_usage_stats */
    long long max_tokens;        /* -1 when absent (chat: max_completion_tokens first);
                                  * 0 only with echo (echo_only) */
    long long min_tokens;        /* 0 when absent */
    bool echo;                   /* completions */
    bool echo_only;              /* completions: echo with max_tokens 0 (nothing generated) */
    int logprobs;                /* completions: top-k (-1 = none); chat: 0 = logprobs on */
    int top_logprobs;            /* chat */
    bool chat_logprobs;          /* chat: "logprobs": true */
    int prompt_logprobs;         /* vLLM extension: top-k per prompt token, -1 when absent */
    uint32_t n;                  /* choices per prompt (1..OPENAI_MAX_N) */
    long long best_of;           /* 0 when absent; accepted when >= n (not streamed) */
    bool include_stop_str_in_output;
    double top_p;                /* (0, 1]; accepted, unused by the sim */
    const char *stop[OPENAI_MAX_STOP];
    size_t n_stop;
    bool has_seed;
    long long seed;
    bool ignore_eos;
    double temperature;         /* >= 0; 1.0 when absent (vLLM's default) */
    const char *user;           /* may be NULL */
    json_t *kv_transfer_params; /* borrowed from root; NULL when absent or null */
};

/* Errors, in OpenAI's form:
 *   {"error":{"message":"...","type":"BadRequestError","param":"max_tokens","code":400}} */
struct openai_error {
    int status;       /* 400, 404, 413, ... */
    const char *type; /* "BadRequestError", "NotFoundError", ... (static string) */
    char param[64];   /* the offending field, "" if none */
    char message[512];
};

void openai_error_set(struct openai_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void openai_error_vset(struct openai_error *e, int status, const char *param, const char *fmt,
                       va_list ap) __attribute__((format(printf, 4, 0)));
/* Appends the JSON error body. */
void openai_error_body(struct buf *out, const struct openai_error *e);
/* The type name OpenAI clients expect for a status (400 -> BadRequestError ...). */
const char *openai_error_type(int status);

/* Completions bodies at least this long with a string prompt are parsed without a DOM
 * of the prompt (it is decoded into the arena). */
#define OPENAI_SPLIT_PROMPT_MIN 16384

/* Parses and validates a request body. Returns true on success; false with err set
 * (status 400, message naming the field). */
bool openai_request_parse(enum openai_api api, const char *body, size_t len, struct arena *a,
                          struct openai_request *out, struct openai_error *err);
void openai_request_free(struct openai_request *r);

/* Renders chat messages into one prompt with a ChatML-like template:
 *   <|im_start|>ROLE\nCONTENT<|im_end|>\n ... <|im_start|>assistant\n
 * Content may be a string or a list of {"type":"text","text":...} parts (other part
 * types are skipped). An assistant message's tool_calls follow its content as
 * <tool_call>\n{"name": NAME, "arguments": ARGS}\n</tool_call> (Hermes style). Returns false with err on malformed messages. */
bool openai_render_chat(const json_t *messages, struct buf *out, struct openai_error *err);

/* Multimodal content parts in chat messages: parts whose "type" is image_url, video_url
 * or input_audio (llm-d's always-disagg-multimodal-decider), plus audio_url when
 * with_audio_url (llm-d's sidecar also sends those to encoders). messages is borrowed;
 * anything that is not a list of messages counts 0. */
size_t openai_count_mm_parts(const json_t *messages, bool with_audio_url);
/* Whether a content part type string is one of those. */
bool openai_is_mm_part_type(const char *type);

#endif

/* OpenAI request parsing and error bodies. Validation follows vLLM: wrong types and
 * out-of-range values are 400s whose message names the field; unknown fields are
 * ignored (clients send many we do not model). */
#include "openai/openai.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/jscan.h"
#include "base/json.h"
#include "net/http.h"

static const struct openai_route_info routes[] = {
    {OPENAI_ROUTE_COMPLETIONS, "POST", OPENAI_PATH_COMPLETIONS, true},
    {OPENAI_ROUTE_CHAT, "POST", OPENAI_PATH_CHAT, true},
    {OPENAI_ROUTE_RESPONSES, "POST", OPENAI_PATH_RESPONSES, true},
    {OPENAI_ROUTE_MODELS, "GET", OPENAI_PATH_MODELS, false},
};

const struct openai_route_info *openai_route_find(const char *method, const char *path)
{
    size_t len = strcspn(path, "?");
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const struct openai_route_info *r = &routes[i];
        if (strlen(r->path) == len && !strncmp(r->path, path, len) &&
            (!method || !strcmp(method, r->method)))
            return r;
    }
    return NULL;
}

bool openai_api_from_path(const char *path, enum openai_api *out)
{
    const struct openai_route_info *r = openai_route_find(NULL, path);
    if (r && r->route == OPENAI_ROUTE_COMPLETIONS)
        *out = OPENAI_COMPLETIONS;
    else if (r && r->route == OPENAI_ROUTE_CHAT)
        *out = OPENAI_CHAT;
    else
        return false;
    return true;
}

const char *openai_error_type(int status)
{
    return http_error_type(status);
}

void openai_error_vset(struct openai_error *e, int status, const char *param, const char *fmt,
                       va_list ap)
{
    e->status = status;
    e->type = openai_error_type(status);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void openai_error_set(struct openai_error *e, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    openai_error_vset(e, status, param, fmt, ap);
    va_end(ap);
}

void openai_error_body(struct buf *out, const struct openai_error *e)
{
    buf_append_str(out, "{\"error\":{\"message\":");
    json_quote(out, e->message, strlen(e->message));
    buf_append_str(out, ",\"type\":");
    json_quote(out, e->type, strlen(e->type));
    buf_append_str(out, ",\"param\":");
    if (e->param[0])
        json_quote(out, e->param, strlen(e->param));
    else
        buf_append_str(out, "null");
    buf_printf(out, ",\"code\":%d}}", e->status);
}

/* Field errors from base/json come as "'x' must be ..."; wrap them. */
static bool field_err(struct openai_error *err, const char *param, const struct errinfo *je)
{
    openai_error_set(err, 400, param, "%s", je->msg);
    return false;
}

/* A double as Python's repr writes it ("0.0", "-0.5", "1e-07"): vLLM's messages
 * interpolate request values that way. */
static const char *pyfloat(char *out, size_t cap, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    if (!strpbrk(out, ".eEni")) /* integral: Python adds ".0" */
        snprintf(out + strlen(out), cap - strlen(out), ".0");
    return out;
}

#define GET(kind, key, ptr)                                                                        \
    do {                                                                                           \
        if (json_get_##kind(root, key, ptr, &je) < 0)                                              \
            return field_err(err, key, &je);                                                       \
    } while (0)

static bool parse_token_ids(const json_t *arr, struct arena *a, struct openai_prompt *p,
                            struct openai_error *err)
{
    size_t n = json_array_size(arr);
    uint32_t *ids = arena_alloc(a, (n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 0x7fffffff) {
            openai_error_set(err, 400, "prompt",
                             "'prompt' token ids must be non-negative integers (item %zu)", i);
            return false;
        }
        ids[i] = (uint32_t)json_integer_value(v);
    }
    p->ids = ids;
    p->n_ids = n;
    p->text = NULL;
    p->text_len = 0;
    return true;
}

/* prompt: "text" | ["text", ...] | [1, 2, 3] | [[1, 2], [3]] */
static bool parse_prompt(const json_t *prompt, struct arena *a, struct openai_request *r,
                         struct openai_error *err)
{
    if (!prompt || json_is_null(prompt)) {
        openai_error_set(err, 400, "prompt", "'prompt' is required");
        return false;
    }
    if (json_is_string(prompt)) {
        r->prompts = arena_calloc(a, sizeof *r->prompts);
        r->n_prompts = 1;
        r->prompts[0].text = json_string_value(prompt);
        r->prompts[0].text_len = json_string_length(prompt);
        return true;
    }
    if (!json_is_array(prompt)) {
        openai_error_set(err, 400, "prompt",
                         "'prompt' must be a string, a list of strings or a list of token ids");
        return false;
    }
    size_t n = json_array_size(prompt);
    if (n == 0) {
        openai_error_set(err, 400, "prompt", "'prompt' must not be empty");
        return false;
    }
    const json_t *first = json_array_get(prompt, 0);
    if (json_is_integer(first)) {
        r->prompts = arena_calloc(a, sizeof *r->prompts);
        r->n_prompts = 1;
        return parse_token_ids(prompt, a, &r->prompts[0], err);
    }
    r->prompts = arena_calloc(a, n * sizeof *r->prompts);
    r->n_prompts = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(prompt, i);
        if (json_is_string(v)) {
            r->prompts[i].text = json_string_value(v);
            r->prompts[i].text_len = json_string_length(v);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            if (!parse_token_ids(v, a, &r->prompts[i], err))
                return false;
        } else {
            openai_error_set(err, 400, "prompt",
                             "'prompt' item %zu must be a string or a non-empty list of token "
                             "ids",
                             i);
            return false;
        }
    }
    return true;
}

static bool append_content(const json_t *content, struct buf *out, size_t idx,
                           struct openai_error *err)
{
    if (!content || json_is_null(content))
        return true;
    if (json_is_string(content)) {
        buf_append(out, json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content)) {
        openai_error_set(err, 400, "messages",
                         "'messages[%zu].content' must be a string or a list of parts", idx);
        return false;
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *type = json_object_get(part, "type");
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            openai_error_set(err, 400, "messages",
                             "'messages[%zu].content[%zu]' must be an object with a 'type'", idx,
                             i);
            return false;
        }
        if (strcmp(json_string_value(type), "text") != 0)
            continue;
        if (!json_is_string(text)) {
            openai_error_set(err, 400, "messages",
                             "'messages[%zu].content[%zu].text' must be a string", idx, i);
            return false;
        }
        buf_append(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

/* An assistant turn's tool calls, the way Hermes-style chat templates write them, so a
 * multi-turn tool conversation's prompt carries the calls it made. */
static void append_tool_calls(const json_t *calls, struct buf *out)
{
    size_t i;
    const json_t *call;
    json_array_foreach(calls, i, call)
    {
        const json_t *fn = json_object_get(call, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        buf_append_str(out, "<tool_call>\n{\"name\": ");
        if (json_is_string(name))
            json_quote(out, json_string_value(name), json_string_length(name));
        else
            buf_append_str(out, "null");
        buf_append_str(out, ", \"arguments\": ");
        if (json_is_string(args))
            buf_append(out, json_string_value(args), json_string_length(args));
        else if (args)
            json_dump_to(out, args);
        else
            buf_append_str(out, "{}");
        buf_append_str(out, "}\n</tool_call>");
    }
}

bool openai_render_chat(const json_t *messages, struct buf *out, struct openai_error *err)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        openai_error_set(err, 400, "messages", "'messages' must be a non-empty list");
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        const json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            openai_error_set(err, 400, "messages", "'messages[%zu].role' must be a string", i);
            return false;
        }
        buf_append_str(out, "<|im_start|>");
        buf_append(out, json_string_value(role), json_string_length(role));
        buf_append_char(out, '\n');
        if (!append_content(json_object_get(m, "content"), out, i, err))
            return false;
        append_tool_calls(json_object_get(m, "tool_calls"), out);
        buf_append_str(out, "<|im_end|>\n");
    }
    buf_append_str(out, "<|im_start|>assistant\n");
    return true;
}

static bool parse_stop(const json_t *root, struct openai_request *r, struct openai_error *err)
{
    const json_t *stop = json_object_get(root, "stop");
    if (!stop || json_is_null(stop))
        return true;
    if (json_is_string(stop)) {
        if (json_string_length(stop) > 0)
            r->stop[r->n_stop++] = json_string_value(stop);
        return true;
    }
    if (!json_is_array(stop)) {
        openai_error_set(err, 400, "stop", "'stop' must be a string or a list of strings");
        return false;
    }
    if (json_array_size(stop) > OPENAI_MAX_STOP) {
        openai_error_set(err, 400, "stop", "'stop' accepts at most %d strings", OPENAI_MAX_STOP);
        return false;
    }
    size_t i;
    const json_t *s;
    json_array_foreach(stop, i, s)
    {
        if (!json_is_string(s)) {
            openai_error_set(err, 400, "stop", "'stop[%zu]' must be a string", i);
            return false;
        }
        if (json_string_length(s) > 0)
            r->stop[r->n_stop++] = json_string_value(s);
    }
    return true;
}

/* The last message's text, for echo mode. */
static void last_message(const json_t *messages, struct arena *a, struct openai_request *r)
{
    size_t n = json_array_size(messages);
    const json_t *content = json_object_get(json_array_get(messages, n - 1), "content");
    struct buf b = BUF_INIT;
    struct openai_error ignored;
    append_content(content, &b, n - 1, &ignored);
    r->last_message = arena_strndup(a, b.data ? b.data : "", b.len);
    r->last_message_len = b.len;
    buf_free(&b);
}

static bool parse_fields(json_t *root, struct arena *a, struct openai_request *r,
                         struct openai_error *err)
{
    struct errinfo je;
    if (!json_is_object(root)) {
        openai_error_set(err, 400, NULL, "request body must be a JSON object");
        return false;
    }
    if (json_get_str(root, "model", &r->model, &je) < 0)
        return field_err(err, "model", &je);
    GET(bool, "stream", &r->stream);
    GET(bool, "echo", &r->echo);
    GET(bool, "ignore_eos", &r->ignore_eos);
    GET(bool, "include_stop_str_in_output", &r->include_stop_str_in_output);
    GET(str, "user", &r->user);
    char num[64];
    r->temperature = 1.0;
    GET(num, "temperature", &r->temperature);
    if (!(r->temperature >= 0)) {
        openai_error_set(err, 400, "temperature", "temperature must be non-negative, got %s.",
                         pyfloat(num, sizeof num, r->temperature));
        return false;
    }
    r->top_p = 1.0;
    GET(num, "top_p", &r->top_p);
    if (!(r->top_p > 0 && r->top_p <= 1)) {
        openai_error_set(err, 400, "top_p", "top_p must be in (0, 1], got %s.",
                         pyfloat(num, sizeof num, r->top_p));
        return false;
    }
    if (r->api == OPENAI_COMPLETIONS && json_object_get(root, "suffix") &&
        !json_is_null(json_object_get(root, "suffix"))) {
        openai_error_set(err, 400, "suffix", "suffix is not currently supported");
        return false;
    }
    GET(int, "min_tokens", &r->min_tokens);
    if (r->min_tokens < 0) {
        openai_error_set(err, 400, "min_tokens", "'min_tokens' must be non-negative");
        return false;
    }

    /* Chat prefers max_completion_tokens; max_tokens is its deprecated alias. */
    const char *mt_key = "max_tokens";
    if (r->api == OPENAI_CHAT && json_object_get(root, "max_completion_tokens") &&
        !json_is_null(json_object_get(root, "max_completion_tokens")))
        mt_key = "max_completion_tokens";
    long long v = -1;
    int got = json_get_int(root, mt_key, &v, &je);
    if (got < 0)
        return field_err(err, mt_key, &je);
    if (got > 0 && v < 1) {
        /* vLLM's echo without generation: the prompt comes back, scored, and nothing
         * else (lm-eval's loglikelihood requests). */
        if (r->api == OPENAI_COMPLETIONS && r->echo && v == 0) {
            r->echo_only = true;
        } else {
            openai_error_set(err, 400, mt_key, "%s must be at least 1, got %lld.", mt_key, v);
            return false;
        }
    }
    r->max_tokens = v;

    long long n = 1;
    GET(int, "n", &n);
    if (n < 1) {
        openai_error_set(err, 400, "n", "n must be at least 1, got %lld.", n);
        return false;
    }
    if (n > OPENAI_MAX_N) {
        openai_error_set(err, 400, "n", "'n' must be at most %d, got %lld", OPENAI_MAX_N, n);
        return false;
    }
    r->n = (uint32_t)n;
    GET(int, "best_of", &r->best_of);
    if (json_object_get(root, "best_of") && !json_is_null(json_object_get(root, "best_of"))) {
        if (r->best_of < n) {
            openai_error_set(err, 400, "best_of",
                             "best_of must be greater than or equal to n, got n=%lld and "
                             "best_of=%lld.",
                             n, r->best_of);
            return false;
        }
        if (r->best_of > OPENAI_MAX_N) {
            openai_error_set(err, 400, "best_of", "'best_of' must be at most %d, got %lld",
                             OPENAI_MAX_N, r->best_of);
            return false;
        }
        if (r->stream && r->best_of != n) {
            openai_error_set(err, 400, "best_of", "best_of must equal n to use output_kind=DELTA");
            return false;
        }
    }

    long long pl = -1;
    GET(int, "prompt_logprobs", &pl);
    r->prompt_logprobs = -1;
    if (json_object_get(root, "prompt_logprobs") &&
        !json_is_null(json_object_get(root, "prompt_logprobs"))) {
        if (r->stream && (pl > 0 || pl == -1)) {
            openai_error_set(err, 400, "prompt_logprobs",
                             "`prompt_logprobs` are not available when `stream=True`.");
            return false;
        }
        if (pl < -1) {
            openai_error_set(err, 400, "prompt_logprobs",
                             "`prompt_logprobs` must be a positive value or -1.");
            return false;
        }
        if (pl == -1 || pl > OPENAI_MAX_LOGPROBS) {
            openai_error_set(err, 400, "prompt_logprobs",
                             "Requested prompt logprobs of %lld, which is greater than max "
                             "allowed: %d",
                             pl == -1 ? (long long)OPENAI_VOCAB_SIZE : pl, OPENAI_MAX_LOGPROBS);
            return false;
        }
        r->prompt_logprobs = (int)pl;
    }
    if (json_get_int(root, "seed", &r->seed, &je) < 0)
        return field_err(err, "seed", &je);
    r->has_seed = json_object_get(root, "seed") && !json_is_null(json_object_get(root, "seed"));

    json_t *so = NULL;
    GET(obj, "stream_options", &so);
    if (so) {
        if (json_get_bool(so, "include_usage", &r->include_usage, &je) < 0)
            return field_err(err, "stream_options.include_usage", &je);
        if (json_get_bool(so, "continuous_usage_stats", &r->continuous_usage_stats, &je) < 0)
            return field_err(err, "stream_options.continuous_usage_stats", &je);
        if (!r->stream && json_object_size(so) > 0) { /* vLLM: an empty {} is falsy */
            openai_error_set(err, 400, "stream_options",
                             "'stream_options' is only allowed when 'stream' is true");
            return false;
        }
    }

    json_t *kv = NULL;
    GET(obj, "kv_transfer_params", &kv);
    r->kv_transfer_params = kv;

    r->logprobs = -1;
    if (r->api == OPENAI_COMPLETIONS) {
        long long lp = -1;
        GET(int, "logprobs", &lp);
        if (json_object_get(root, "logprobs") && !json_is_null(json_object_get(root, "logprobs"))) {
            if (lp < -1) {
                openai_error_set(err, 400, "logprobs",
                                 "`logprobs` must be a positive value or -1.");
                return false;
            }
            if (lp == -1 || lp > OPENAI_MAX_LOGPROBS) {
                openai_error_set(err, 400, "logprobs",
                                 "Requested sample logprobs of %lld, which is greater than max "
                                 "allowed: %d",
                                 lp == -1 ? (long long)OPENAI_VOCAB_SIZE : lp,
                                 OPENAI_MAX_LOGPROBS);
                return false;
            }
            r->logprobs = (int)lp;
        }
        /* vLLM scores the echoed prompt with the request's logprobs. */
        if (r->echo && r->prompt_logprobs < 0 && r->logprobs >= 0)
            r->prompt_logprobs = r->logprobs;
        if (!parse_prompt(json_object_get(root, "prompt"), a, r, err))
            return false;
    } else {
        GET(bool, "logprobs", &r->chat_logprobs);
        long long tl = 0;
        GET(int, "top_logprobs", &tl);
        if (tl < -1) {
            openai_error_set(err, 400, "top_logprobs",
                             "`top_logprobs` must be a positive value or -1.");
            return false;
        }
        if ((tl == -1 || tl > 0) && !r->chat_logprobs) {
            openai_error_set(err, 400, "top_logprobs",
                             "when using `top_logprobs`, `logprobs` must be set to true.");
            return false;
        }
        if (tl == -1 || tl > OPENAI_MAX_LOGPROBS) {
            openai_error_set(err, 400, "top_logprobs",
                             "Requested sample logprobs of %lld, which is greater than max "
                             "allowed: %d",
                             tl == -1 ? (long long)OPENAI_VOCAB_SIZE : tl, OPENAI_MAX_LOGPROBS);
            return false;
        }
        r->top_logprobs = (int)tl;
        json_t *messages = json_object_get(root, "messages");
        struct buf b = BUF_INIT;
        bool ok = openai_render_chat(messages, &b, err);
        if (ok) {
            r->prompts = arena_calloc(a, sizeof *r->prompts);
            r->n_prompts = 1;
            r->prompts[0].text = arena_strndup(a, b.data, b.len);
            r->prompts[0].text_len = b.len;
            last_message(messages, a, r);
        }
        buf_free(&b);
        if (!ok)
            return false;
    }
    return parse_stop(root, r, err);
}

bool openai_request_parse(enum openai_api api, const char *body, size_t len, struct arena *a,
                          struct openai_request *out, struct openai_error *err)
{
    memset(out, 0, sizeof *out);
    out->api = api;
    out->max_tokens = -1;
    out->logprobs = -1;
    out->prompt_logprobs = -1;
    out->n = 1;
    out->temperature = 1.0;
    out->top_p = 1.0;
    struct errinfo je;
    /* A long string prompt is most of the body: building a DOM of it costs ~5 ns a
     * byte. jscan validates the body and finds the prompt; the DOM is built of the body
     * with the prompt's contents cut out, and the prompt is decoded into the arena. */
    const char *text = NULL;
    size_t text_len = 0;
    char *rest = NULL;
    if (api == OPENAI_COMPLETIONS && len >= OPENAI_SPLIT_PROMPT_MIN) {
        struct jscan_field f = {.key = "prompt"};
        if (jscan_object(body, len, &f, 1, &je) == JSCAN_OK && f.v.type == JSCAN_STRING &&
            f.v.len >= OPENAI_SPLIT_PROMPT_MIN / 2) {
            text = jscan_str_dup(&f.v, a, &text_len);
            size_t head = (size_t)(f.v.p - body), tail = len - head - f.v.len;
            rest = xmalloc(head + tail);
            memcpy(rest, body, head);
            memcpy(rest + head, f.v.p + f.v.len, tail);
            body = rest;
            len = head + tail;
        }
    }
    out->root = json_parse(body, len, &je);
    free(rest);
    if (!out->root) {
        openai_error_set(err, 400, NULL, "%s", je.msg);
        return false;
    }
    if (!parse_fields(out->root, a, out, err)) {
        openai_request_free(out);
        return false;
    }
    if (text) {
        out->prompts[0].text = text;
        out->prompts[0].text_len = text_len;
    }
    return true;
}

void openai_request_free(struct openai_request *r)
{
    if (r->root)
        json_decref(r->root);
    r->root = NULL;
}

/* --- multimodal content parts ------------------------------------------------------------- */

bool openai_is_mm_part_type(const char *type)
{
    return type && (!strcmp(type, "image_url") || !strcmp(type, "video_url") ||
                    !strcmp(type, "audio_url") || !strcmp(type, "input_audio"));
}

size_t openai_count_mm_parts(const json_t *messages, bool with_audio_url)
{
    size_t n = 0, i, k;
    const json_t *m, *part;
    if (!json_is_array(messages))
        return 0;
    json_array_foreach(messages, i, m)
    {
        const json_t *content = json_object_get(m, "content");
        if (!json_is_array(content))
            continue;
        json_array_foreach(content, k, part)
        {
            const char *t = json_string_value(json_object_get(part, "type"));
            n += openai_is_mm_part_type(t) && (with_audio_url || strcmp(t, "audio_url") != 0);
        }
    }
    return n;
}

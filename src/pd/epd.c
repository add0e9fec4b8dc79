/* E/P/D's encode stage (see epd.h): the multimodal items of one chat request fanned out
 * to the encoders as one-item chat requests, all in flight at once, and the body the
 * prefill/decode legs get afterwards. Owns the per-item calls and their contexts. */
#include "pd/epd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/json.h"
#include "openai/openai.h"

#define EPD_MAX_ENCODER_RESPONSE (1u << 20)

struct epd_item_call {
    struct epd_encode *e;
    size_t idx;
    struct http_call *call; /* NULL once done */
};

struct epd_encode {
    struct epd_item_call *calls;
    size_t n, pending;
    char *error; /* the first failure, or NULL */
    struct buf pd_body;
    uint64_t t0;
    epd_encode_done_fn done;
    void *ctx;
};

/* The URL of a URL-based item (image_url / video_url / audio_url {"url": ...}), or NULL. */
static const char *item_url(const json_t *item)
{
    const char *type = json_string_value(json_object_get(item, "type"));
    if (!type || !strcmp(type, "input_audio"))
        return NULL;
    const json_t *v = json_object_get(item, type);
    return json_is_object(v) ? json_string_value(json_object_get(v, "url")) : NULL;
}

/* The request's multimodal items (borrowed from root), URL items deduplicated, in order. */
static size_t collect_items(const json_t *root, const json_t ***out)
{
    const json_t *msgs = json_object_get(root, "messages");
    size_t cap = openai_count_mm_parts(msgs, true), n = 0, i, k;
    *out = xcalloc(cap ? cap : 1, sizeof **out);
    const json_t *m, *part;
    json_array_foreach(msgs, i, m)
    {
        const json_t *content = json_object_get(m, "content");
        if (!json_is_array(content))
            continue;
        json_array_foreach(content, k, part)
        {
            if (!openai_is_mm_part_type(json_string_value(json_object_get(part, "type"))))
                continue;
            const char *url = item_url(part);
            bool dup = false;
            for (size_t j = 0; url && j < n && !dup; j++) {
                const char *seen = item_url((*out)[j]);
                dup = seen && !strcmp(seen, url);
            }
            if (!dup && n < cap)
                (*out)[n++] = part;
        }
    }
    return n;
}

static void finish(struct epd_encode *e)
{
    struct epd_encode_result res = {
        .ok = e->error == NULL,
        .items = e->n,
        .error = e->error,
        .body = e->pd_body.data,
        .body_len = e->pd_body.len,
        .seconds = (double)(clock_monotonic_ns() - e->t0) / 1e9,
    };
    e->done(&res, e->ctx);
    free(e->error);
    buf_free(&e->pd_body);
    free(e->calls);
    free(e);
}

static void on_item_done(enum http_call_error err, int status, const char *body, size_t len,
                         void *ctx)
{
    struct epd_item_call *c = ctx;
    struct epd_encode *e = c->e;
    c->call = NULL;
    if (!e->error && (err != HTTP_CALL_OK || status < 200 || status > 299)) {
        if (err != HTTP_CALL_OK)
            e->error = xasprintf("encoder request failed for item %zu: %s", c->idx,
                                 http_call_error_str(err));
        else
            e->error = xasprintf("encoder request failed for item %zu with status %d: %.*s", c->idx,
                                 status, (int)(len > 300 ? 300 : len), body ? body : "");
    }
    if (--e->pending == 0)
        finish(e);
}

int epd_bodies(const char *body, size_t len, struct buf *pd_body, struct buf **items,
               size_t *n_items, char *err, size_t errlen)
{
    *items = NULL;
    *n_items = 0;
    struct errinfo je;
    json_t *root = json_parse(body, len, &je);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "%s", root ? "request body must be a JSON object" : je.msg);
        json_decref(root);
        return -1;
    }
    const json_t **mm;
    size_t n = collect_items(root, &mm);
    if (n) {
        *items = xcalloc(n, sizeof **items);
        for (size_t i = 0; i < n; i++) {
            json_t *req = json_copy(root); /* shallow: the item is shared, not changed */
            json_t *content = json_array();
            json_array_append(content, (json_t *)mm[i]);
            json_t *msg = json_object();
            json_object_set_new(msg, "role", json_string("user"));
            json_object_set_new(msg, "content", content);
            json_t *msgs = json_array();
            json_array_append_new(msgs, msg);
            json_object_set_new(req, "messages", msgs);
            json_object_set_new(req, "max_tokens", json_integer(1));
            json_object_set_new(req, "stream", json_false());
            json_object_del(req, "stream_options");
            json_dump_to(&(*items)[i], req);
            json_decref(req);
        }
        /* The prefill/decode legs' body: llm-d turns off the decode-first shortcut, since
         * the encoders already ran. */
        json_object_set_new(root, "cache_hit_threshold", json_integer(0));
        json_dump_to(pd_body, root);
    }
    free(mm);
    json_decref(root);
    *n_items = n;
    return (int)(n > 0);
}

void epd_bodies_free(struct buf *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_free(&items[i]);
    free(items);
}

int epd_encode_start(struct http_client *client, const struct epd_encoder *encoders,
                     size_t n_encoders, const char *body, size_t body_len, const char *request_id,
                     uint64_t timeout_ms, epd_encode_done_fn done, void *ctx,
                     struct epd_encode **out, char *err, size_t errlen)
{
    *out = NULL;
    struct buf pd = BUF_INIT, *items;
    size_t n;
    int st = epd_bodies(body, body_len, &pd, &items, &n, err, errlen);
    if (st < 0)
        return -1;
    if (st == 0 || n_encoders == 0) {
        buf_free(&pd);
        epd_bodies_free(items, n);
        return 1;
    }
    struct epd_encode *e = xcalloc(1, sizeof *e);
    e->calls = xcalloc(n, sizeof *e->calls);
    e->n = e->pending = n;
    e->t0 = clock_monotonic_ns();
    e->done = done;
    e->ctx = ctx;
    e->pd_body = pd;
    for (size_t i = 0; i < n; i++) {
        char rid[200];
        snprintf(rid, sizeof rid, "%s-enc-%zu", request_id ? request_id : "epd", i);
        const struct http_header hdrs[] = {
            {"content-type", "application/json", 0, 0},
            {"x-request-id", rid, 0, 0},
        };
        const struct epd_encoder *enc = &encoders[i % n_encoders];
        struct http_call_request hr = {.method = "POST",
                                       .host = enc->host,
                                       .port = enc->port,
                                       .path = "/v1/chat/completions",
                                       .headers = hdrs,
                                       .n_headers = 2,
                                       .body = items[i].data,
                                       .body_len = items[i].len,
                                       .timeout_ms = timeout_ms};
        e->calls[i] = (struct epd_item_call){.e = e, .idx = i};
        e->calls[i].call =
            http_fetch(client, &hr, EPD_MAX_ENCODER_RESPONSE, on_item_done, &e->calls[i]);
    }
    epd_bodies_free(items, n);
    *out = e;
    return 0;
}

void epd_encode_cancel(struct epd_encode *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        if (e->calls[i].call)
            http_call_cancel(e->calls[i].call);
    free(e->error);
    buf_free(&e->pd_body);
    free(e->calls);
    free(e);
}

/* E/P/D: the encode stage llm-d's sidecar runs before prefill/decode when the router
 * sends x-encoder-hosts-ports (its "ec-example" EC connector, shared-storage style: the
 * encoders write the embeddings, prefill/decode engines read them).
 *
 * Flow: epd_encode_start reads the chat request's multimodal content parts (image_url,
 * video_url, audio_url, input_audio; URL items deduplicated), sends each as its own
 * POST /v1/chat/completions to an encoder (item i to encoder i mod n, all at once): the
 * client's body with messages = [{"role": "user", "content": [item]}], max_tokens 1,
 * stream false, no stream_options, x-request-id "<id>-enc-<i>". When every encoder has
 * answered it calls back once: ok with the body for the prefill/decode legs (the client's
 * plus "cache_hit_threshold": 0, as llm-d sends it), or the first failure's text (the
 * caller answers 502, as llm-d does).
 *
 * Ownership: epd_encode_start copies what it needs; the result (body, error) is valid only
 * during the callback. epd_encode_cancel stops every call in flight (their connections are
 * closed) and no callback fires. */
#ifndef TANDEM_PD_EPD_H
#define TANDEM_PD_EPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/http.h"
#include "net/http_client.h"

/* The EC connectors llm-d's sidecar knows (--ec-connector). */
#define EPD_EC_EXAMPLE "ec-example"

struct epd_encoder {
    const char *host; /* borrowed for the start call only */
    int port;
};

struct epd_encode_result {
    bool ok;
    size_t items;      /* multimodal items sent */
    const char *error; /* !ok: why, for the 502 body and the log */
    const char *body;  /* ok: the prefill/decode body */
    size_t body_len;
    double seconds; /* the whole stage */
};

typedef void (*epd_encode_done_fn)(const struct epd_encode_result *res, void *ctx);

struct epd_encode;

/* The stage's bodies, without sending anything: for a client body, the encoder request
 * of each multimodal item (items[i], item order, URL items deduplicated) and the
 * prefill/decode body. Returns 1 with *n_items > 0 (free with epd_bodies_free; pd_body
 * filled), 0 when there is no item (nothing allocated, pd_body untouched), or -1 with err
 * when the body is not a JSON object. */
int epd_bodies(const char *body, size_t len, struct buf *pd_body, struct buf **items,
               size_t *n_items, char *err, size_t errlen);
void epd_bodies_free(struct buf *items, size_t n);

/* Starts the stage. Returns 0 with *out set (the callback will fire, never synchronously),
 * 1 when the body has no multimodal item (nothing started: go on without encoding), or -1
 * with err when the body is not a JSON object (the caller answers 400). */
int epd_encode_start(struct http_client *client, const struct epd_encoder *encoders,
                     size_t n_encoders, const char *body, size_t body_len, const char *request_id,
                     uint64_t timeout_ms, epd_encode_done_fn done, void *ctx,
                     struct epd_encode **out, char *err, size_t errlen);
void epd_encode_cancel(struct epd_encode *e);

#endif

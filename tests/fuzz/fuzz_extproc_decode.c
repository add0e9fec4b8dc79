/* Fuzz target: the ext_proc request path without gRPC, i.e. ProcessingRequest decoding
 * (protobuf-c, the trimmed protos) and the phase machine's handling of each message
 * (src/extproc/stream.c), with a dummy decide hook.
 *
 * Input: one option byte, then ProcessingRequest messages, each prefixed by its length as
 * a protobuf varint (the "delimited" framing). Option bits: 0-1 the configured body mode
 * (auto, full duplex, buffered), 2-3 the decision (route, route with a prefiller, 503,
 * "route" without an endpoint), 4 a 4 KiB body limit, 5 the call ends cancelled.
 *
 * Checked on every run: each queued reply decodes as a ProcessingResponse; streamed body
 * chunks are at most 62,000 bytes; no request_body reply comes before the request_headers
 * reply in full-duplex mode; decide() runs at most once; a token is released exactly once,
 * and only one from a routed decision. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ext_proc.pb-c.h"
#include "extproc/stream.h"

#define RESP(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_##x

static int decides, releases, decision_kind;
static int token;

static void fz_decide(void *ctx, const struct extproc_request *req, struct extproc_decision *out)
{
    decides++;
    /* Touch everything the hook is promised. */
    size_t sum = req->body_len;
    for (size_t i = 0; i < req->n_headers; i++)
        sum += strlen(req->headers[i].key) + strlen(req->headers[i].value);
    for (size_t i = 0; i < req->n_subset; i++)
        sum += strlen(req->subset[i]);
    sum += strlen(req->request_id);
    if (req->body_len)
        sum += (unsigned char)req->body[req->body_len - 1];
    (void)sum;
    switch (decision_kind) {
    case 0:
    case 1:
        strcpy(out->endpoint, "10.0.0.1:8000");
        if (decision_kind == 1)
            strcpy(out->prefiller, "10.0.0.2:8000");
        out->token = &token;
        break;
    case 2:
        out->status = 503;
        strcpy(out->message, "no endpoint");
        strcpy(out->reason, "fuzz");
        break;
    default:
        out->token = &token; /* status 0, no endpoint: a 500, token still released */
        break;
    }
}

static void fz_release(void *ctx, void *tok, bool cancelled)
{
    if (tok != &token)
        abort();
    releases++;
}

static void fz_on_response(void *ctx, void *tok, int status, const char *chunk, size_t len,
                           bool eos, struct extproc_attrs *md)
{
    if (eos != (md != NULL))
        abort();
    if (md) { /* exercise the metadata path */
        snprintf(md->a[0].ns, sizeof md->a[0].ns, "envoy.lb");
        snprintf(md->a[0].name, sizeof md->a[0].name, "n");
        md->a[0].value = (double)len;
        md->n = 1;
    }
    if (len && !chunk)
        abort();
}

static void check_replies(struct xp_stream *s, bool duplex, bool *headers_seen)
{
    struct xp_out *o;
    while ((o = xp_stream_pop(s))) {
        Envoy__Service__ExtProc__V3__ProcessingResponse *r =
            envoy__service__ext_proc__v3__processing_response__unpack(NULL, o->len, o->data);
        if (!r)
            abort();
        if (r->response_case == RESP(REQUEST_HEADERS))
            *headers_seen = true;
        if (r->response_case == RESP(REQUEST_BODY) && duplex && !*headers_seen)
            abort(); /* a "spurious message" for Envoy */
        if (r->response_case == RESP(REQUEST_BODY) || r->response_case == RESP(RESPONSE_BODY)) {
            const Envoy__Service__ExtProc__V3__CommonResponse *c = r->request_body->response;
            if (c && c->body_mutation &&
                c->body_mutation->mutation_case ==
                    ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_STREAMED_RESPONSE &&
                c->body_mutation->streamed_response->body.len > XP_CHUNK_MAX)
                abort();
        }
        envoy__service__ext_proc__v3__processing_response__free_unpacked(r, NULL);
        free(o);
    }
}

/* The verifier's path: reads the envoy.lb metadata, sets a header from it. */
static void fz_on_response_headers(void *ctx, void *tok, const struct extproc_lb_meta *lb,
                                   struct extproc_resp_headers *out)
{
    (void)ctx;
    (void)tok;
    if (lb->served && !lb->has_lb)
        abort();
    snprintf(out->h[0].key, sizeof out->h[0].key, "x-conformance-test-served-endpoint");
    snprintf(out->h[0].value, sizeof out->h[0].value, "%s",
             lb->served ? lb->served : "fail: missing envoy lb metadata");
    out->n = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    data++;
    size--;
    static const enum extproc_body_mode modes[4] = {EXTPROC_MODE_AUTO, EXTPROC_MODE_FULL_DUPLEX,
                                                    EXTPROC_MODE_BUFFERED, EXTPROC_MODE_AUTO};
    struct xp_stream_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hooks.decide = fz_decide;
    cfg.hooks.release = fz_release;
    cfg.hooks.on_response = fz_on_response;
    cfg.hooks.on_response_headers = fz_on_response_headers;
    cfg.mode = modes[opt & 3];
    cfg.max_body_bytes = (opt & 16) ? 4096 : 0;
    decision_kind = (opt >> 2) & 3;
    decides = releases = 0;

    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    bool headers_seen = false;
    while (size > 0) {
        /* varint length */
        uint64_t len = 0;
        size_t i = 0;
        int shift = 0;
        while (i < size && i < 10) {
            len |= (uint64_t)(data[i] & 0x7f) << shift;
            shift += 7;
            if (!(data[i++] & 0x80))
                break;
        }
        data += i;
        size -= i;
        if (len > size)
            len = size;
        enum xp_action a = xp_stream_feed(&s, data, (size_t)len);
        check_replies(&s, s.req_mode == XP_REQ_DUPLEX, &headers_seen);
        data += len;
        size -= len;
        if (a != XP_CONTINUE)
            break; /* the transport stops reading here */
    }
    if (decides > 1)
        abort();
    xp_stream_end(&s, (opt & 32) != 0);
    xp_stream_free(&s);
    int want = decides && (decision_kind != 2) ? 1 : 0;
    if (releases != want)
        abort();
    return 0;
}

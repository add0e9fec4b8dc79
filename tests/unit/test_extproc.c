/* Unit tests for src/extproc: the phase machine (stream.c) fed encoded
 * ProcessingRequests, its replies decoded back (full duplex, buffered, trailers,
 * ImmediateResponse, 413, subset hint, chunking, the response phase, token release), and
 * the gRPC transport (server.c) on loopback through the C core's client API: health,
 * a Process stream, a cancel, a stop with a stream in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "envoy_config_core.pb-c.h"
#include "ext_proc.pb-c.h"
#include "extproc/extproc.h"
#include "extproc/stream.h"
#include "google/protobuf/struct.pb-c.h"
#include "health.pb-c.h"

typedef Envoy__Service__ExtProc__V3__ProcessingRequest preq_t;
typedef Envoy__Service__ExtProc__V3__ProcessingResponse presp_t;
typedef Envoy__Service__ExtProc__V3__CommonResponse common_t;
typedef Envoy__Config__Core__V3__HeaderValue hv_t;

#define RESP(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_##x
#define REQ(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_##x

/* --- the hooks: record what they saw, answer from a template ------------------------- */

struct rec {
    int decides;
    size_t n_headers;
    char request_id[64];
    char path[64];
    struct buf body;
    bool has_subset;
    size_t n_subset;
    char subset0[64];
    struct extproc_decision answer;
    _Atomic int releases;
    _Atomic int released_cancelled;
    void *released_token;
    int on_response_calls;
    int resp_status;
    struct buf resp_body;
    bool resp_eos;
    bool add_attr; /* at the end of the response: report envoy.lb.cost = 42 */
    int resp_header_calls;
    bool lb_has;
    char lb_served[64]; /* "(null)" when NULL */
};

static void hook_decide(void *ctx, const struct extproc_request *req, struct extproc_decision *out)
{
    struct rec *r = ctx;
    r->decides++;
    r->n_headers = req->n_headers;
    snprintf(r->request_id, sizeof r->request_id, "%s", req->request_id);
    r->path[0] = '\0';
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcmp(req->headers[i].key, ":path"))
            snprintf(r->path, sizeof r->path, "%s", req->headers[i].value);
    buf_reset(&r->body);
    buf_append(&r->body, req->body, req->body_len);
    r->has_subset = req->has_subset;
    r->n_subset = req->n_subset;
    r->subset0[0] = '\0';
    if (req->n_subset)
        snprintf(r->subset0, sizeof r->subset0, "%s", req->subset[0]);
    *out = r->answer;
}

static void hook_release(void *ctx, void *token, bool cancelled)
{
    struct rec *r = ctx;
    r->released_token = token;
    if (cancelled)
        atomic_fetch_add(&r->released_cancelled, 1);
    atomic_fetch_add(&r->releases, 1);
}

static void hook_on_response(void *ctx, void *token, int status, const char *chunk, size_t len,
                             bool eos, struct extproc_attrs *md)
{
    struct rec *r = ctx;
    assert_true(eos == (md != NULL));
    if (md && r->add_attr) {
        snprintf(md->a[0].ns, sizeof md->a[0].ns, "envoy.lb");
        snprintf(md->a[0].name, sizeof md->a[0].name, "cost");
        md->a[0].value = 42;
        snprintf(md->a[1].ns, sizeof md->a[1].ns, "acme");
        snprintf(md->a[1].name, sizeof md->a[1].name, "tokens");
        md->a[1].value = 7;
        md->n = 2;
    }
    r->on_response_calls++;
    r->resp_status = status;
    if (len)
        buf_append(&r->resp_body, chunk, len);
    r->resp_eos = eos;
}

/* As the router does with destination-endpoint-served-verifier: the served endpoint, or
 * what was missing, as x-conformance-test-served-endpoint. */
static void hook_on_response_headers(void *ctx, void *token, const struct extproc_lb_meta *lb,
                                     struct extproc_resp_headers *out)
{
    struct rec *r = ctx;
    assert_non_null(token);
    r->resp_header_calls++;
    r->lb_has = lb->has_lb;
    snprintf(r->lb_served, sizeof r->lb_served, "%s", lb->served ? lb->served : "(null)");
    snprintf(out->h[0].key, sizeof out->h[0].key, "x-conformance-test-served-endpoint");
    snprintf(out->h[0].value, sizeof out->h[0].value, "%s",
             !lb->has_lb  ? "fail: missing envoy lb metadata"
             : lb->served ? lb->served
                          : "fail: missing destination endpoint served metadata");
    out->n = 1;
}

static int the_token;

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->answer.endpoint, sizeof r->answer.endpoint, "10.0.0.1:8000,10.0.0.2:8000");
    r->answer.token = &the_token;
}

static void rec_free(struct rec *r)
{
    buf_free(&r->body);
    buf_free(&r->resp_body);
}

static void cfg_init(struct xp_stream_cfg *cfg, struct rec *r, enum extproc_body_mode mode,
                     size_t max_body)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->hooks.decide = hook_decide;
    cfg->hooks.release = hook_release;
    cfg->hooks.on_response = hook_on_response;
    cfg->hooks.ctx = r;
    cfg->mode = mode;
    cfg->max_body_bytes = max_body;
}

/* --- encoding requests ----------------------------------------------------------------- */

static void pack_req(const preq_t *m, struct buf *out)
{
    buf_reset(out);
    size_t n = envoy__service__ext_proc__v3__processing_request__get_packed_size(m);
    buf_reserve(out, n);
    out->len = envoy__service__ext_proc__v3__processing_request__pack(m, (uint8_t *)out->data);
}

/* Request or response headers. pc_mode >= 0: a protocol_config with that request body
 * mode (and resp_mode for responses). subset: NULL, or a NULL-terminated list. */
static void enc_headers(struct buf *out, bool response, const char *const *kv, bool eos,
                        int pc_mode, int pc_resp_mode, const char *const *subset)
{
    size_t n = 0;
    while (kv[2 * n])
        n++;
    hv_t hv[16];
    hv_t *hp[16];
    for (size_t i = 0; i < n; i++) {
        envoy__config__core__v3__header_value__init(&hv[i]);
        hv[i].key = (char *)kv[2 * i];
        /* Envoy fills raw_value; the first header uses value, to cover both. */
        if (i == 0) {
            hv[i].value = (char *)kv[2 * i + 1];
        } else {
            hv[i].raw_value.data = (uint8_t *)kv[2 * i + 1];
            hv[i].raw_value.len = strlen(kv[2 * i + 1]);
        }
        hp[i] = &hv[i];
    }
    Envoy__Config__Core__V3__HeaderMap hm;
    envoy__config__core__v3__header_map__init(&hm);
    hm.n_headers = n;
    hm.headers = hp;
    Envoy__Service__ExtProc__V3__HttpHeaders h;
    envoy__service__ext_proc__v3__http_headers__init(&h);
    h.headers = &hm;
    h.end_of_stream = eos;
    preq_t r;
    envoy__service__ext_proc__v3__processing_request__init(&r);
    r.request_case = response ? REQ(RESPONSE_HEADERS) : REQ(REQUEST_HEADERS);
    r.request_headers = &h;
    Envoy__Service__ExtProc__V3__ProtocolConfiguration pc;
    if (pc_mode >= 0) {
        envoy__service__ext_proc__v3__protocol_configuration__init(&pc);
        pc.request_body_mode = pc_mode;
        pc.response_body_mode = pc_resp_mode;
        r.protocol_config = &pc;
    }
    /* metadata_context {"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": [..]}} */
    Google__Protobuf__Value vals[8], *vp[8], list_v;
    Google__Protobuf__ListValue lv;
    Google__Protobuf__Struct__FieldsEntry fe, *fep = &fe;
    Google__Protobuf__Struct st;
    Envoy__Config__Core__V3__Metadata__FilterMetadataEntry me, *mep = &me;
    Envoy__Config__Core__V3__Metadata md;
    if (subset) {
        size_t k = 0;
        for (; subset[k]; k++) {
            google__protobuf__value__init(&vals[k]);
            vals[k].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
            vals[k].string_value = (char *)subset[k];
            vp[k] = &vals[k];
        }
        google__protobuf__list_value__init(&lv);
        lv.n_values = k;
        lv.values = vp;
        google__protobuf__value__init(&list_v);
        list_v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        list_v.list_value = &lv;
        google__protobuf__struct__fields_entry__init(&fe);
        fe.key = (char *)"x-gateway-destination-endpoint-subset";
        fe.value = &list_v;
        google__protobuf__struct__init(&st);
        st.n_fields = 1;
        st.fields = &fep;
        envoy__config__core__v3__metadata__filter_metadata_entry__init(&me);
        me.key = (char *)"envoy.lb.subset_hint";
        me.value = &st;
        envoy__config__core__v3__metadata__init(&md);
        md.n_filter_metadata = 1;
        md.filter_metadata = &mep;
        r.metadata_context = &md;
    }
    pack_req(&r, out);
}

static void enc_body(struct buf *out, bool response, const void *data, size_t len, bool eos)
{
    Envoy__Service__ExtProc__V3__HttpBody b;
    envoy__service__ext_proc__v3__http_body__init(&b);
    b.body.data = (uint8_t *)data;
    b.body.len = len;
    b.end_of_stream = eos;
    preq_t r;
    envoy__service__ext_proc__v3__processing_request__init(&r);
    r.request_case = response ? REQ(RESPONSE_BODY) : REQ(REQUEST_BODY);
    r.request_body = &b;
    pack_req(&r, out);
}

static void enc_trailers(struct buf *out, bool response)
{
    Envoy__Service__ExtProc__V3__HttpTrailers t;
    envoy__service__ext_proc__v3__http_trailers__init(&t);
    preq_t r;
    envoy__service__ext_proc__v3__processing_request__init(&r);
    r.request_case = response ? REQ(RESPONSE_TRAILERS) : REQ(REQUEST_TRAILERS);
    r.request_trailers = &t;
    pack_req(&r, out);
}

static enum xp_action feed(struct xp_stream *s, const struct buf *m)
{
    return xp_stream_feed(s, (const uint8_t *)m->data, m->len);
}

/* --- decoding replies ------------------------------------------------------------------ */

static presp_t *pop_resp(struct xp_stream *s)
{
    struct xp_out *o = xp_stream_pop(s);
    assert_non_null(o);
    presp_t *r = envoy__service__ext_proc__v3__processing_response__unpack(NULL, o->len, o->data);
    assert_non_null(r);
    free(o);
    return r;
}

static void free_resp(presp_t *r)
{
    envoy__service__ext_proc__v3__processing_response__free_unpacked(r, NULL);
}

/* The value of set_headers' `key` (raw_value, OVERWRITE_IF_EXISTS_OR_ADD), or NULL. */
static const char *set_header(const Envoy__Service__ExtProc__V3__HeaderMutation *m, const char *key,
                              char *tmp, size_t tmplen)
{
    if (!m)
        return NULL;
    for (size_t i = 0; i < m->n_set_headers; i++) {
        const hv_t *h = m->set_headers[i]->header;
        if (strcmp(h->key, key))
            continue;
        assert_int_equal(m->set_headers[i]->append_action, 2);
        assert_string_equal(h->value, ""); /* raw_value only */
        assert_true(h->raw_value.len < tmplen);
        memcpy(tmp, h->raw_value.data, h->raw_value.len);
        tmp[h->raw_value.len] = '\0';
        return tmp;
    }
    return NULL;
}

/* dynamic_metadata["envoy.lb"]["x-gateway-destination-endpoint"] */
static const char *lb_endpoint(const presp_t *r)
{
    const Google__Protobuf__Struct *md = r->dynamic_metadata;
    if (!md)
        return NULL;
    for (size_t i = 0; i < md->n_fields; i++) {
        if (strcmp(md->fields[i]->key, "envoy.lb"))
            continue;
        const Google__Protobuf__Value *v = md->fields[i]->value;
        assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE);
        const Google__Protobuf__Struct *lb = v->struct_value;
        for (size_t j = 0; j < lb->n_fields; j++)
            if (!strcmp(lb->fields[j]->key, "x-gateway-destination-endpoint")) {
                assert_int_equal(lb->fields[j]->value->kind_case,
                                 GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
                return lb->fields[j]->value->string_value;
            }
    }
    return NULL;
}

/* Pops streamed request/response body replies up to the one with end_of_stream (or
 * `count` of them when count > 0), appending their bytes. Returns how many. */
static int pop_streamed(struct xp_stream *s, int which, struct buf *out, int count, bool *eos)
{
    int n = 0;
    *eos = false;
    while (count <= 0 || n < count) {
        presp_t *r = pop_resp(s);
        assert_int_equal(r->response_case, which);
        const common_t *c = r->request_body->response;
        assert_non_null(c);
        assert_non_null(c->body_mutation);
        assert_int_equal(c->body_mutation->mutation_case,
                         ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_STREAMED_RESPONSE);
        const Envoy__Service__ExtProc__V3__StreamedBodyResponse *sb =
            c->body_mutation->streamed_response;
        assert_true(sb->body.len <= XP_CHUNK_MAX);
        buf_append(out, sb->body.data, sb->body.len);
        *eos = sb->end_of_stream;
        free_resp(r);
        n++;
        if (*eos && count <= 0)
            break;
    }
    return n;
}

static const char *const REQ_HEADERS[] = {
    ":method", "POST", ":path", "/v1/completions", "content-type", "application/json", NULL};

/* --- the phase machine ------------------------------------------------------------------ */

static void test_full_duplex(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    snprintf(rec.answer.prefiller, sizeof rec.answer.prefiller, "10.0.0.9:8000");
    snprintf(rec.answer.encoders, sizeof rec.answer.encoders, "10.0.0.7:8000,10.0.0.8:8000");
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;

    enc_headers(&m, false, REQ_HEADERS, false, 4, 4, NULL);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_null(s.out_head); /* nothing before the body's end */
    /* 150,000 bytes in 10,000-byte chunks. */
    char *body = malloc(150000);
    for (size_t i = 0; i < 150000; i++)
        body[i] = (char)('a' + i % 26);
    for (size_t off = 0; off < 150000; off += 10000) {
        enc_body(&m, false, body + off, 10000, off + 10000 == 150000);
        assert_int_equal(feed(&s, &m), XP_CONTINUE);
        if (off + 10000 < 150000)
            assert_null(s.out_head);
    }
    assert_int_equal(rec.decides, 1);
    assert_int_equal(rec.body.len, 150000);
    assert_memory_equal(rec.body.data, body, 150000);
    assert_int_equal(rec.n_headers, 3);
    assert_string_equal(rec.path, "/v1/completions");
    assert_int_equal(strlen(rec.request_id), 36); /* made up: a UUID */
    assert_false(rec.has_subset);

    /* a. the headers reply */
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_HEADERS));
    const common_t *c = r->request_headers->response;
    assert_true(c->clear_route_cache);
    assert_int_equal(c->status, 0);
    char tmp[128];
    assert_string_equal(
        set_header(c->header_mutation, "x-gateway-destination-endpoint", tmp, sizeof tmp),
        "10.0.0.1:8000,10.0.0.2:8000");
    assert_string_equal(set_header(c->header_mutation, "content-length", tmp, sizeof tmp),
                        "150000");
    assert_string_equal(set_header(c->header_mutation, "x-prefiller-host-port", tmp, sizeof tmp),
                        "10.0.0.9:8000");
    /* E/P/D: the encode profile's picks for the decode pod's sidecar */
    assert_string_equal(set_header(c->header_mutation, "x-encoder-hosts-ports", tmp, sizeof tmp),
                        "10.0.0.7:8000,10.0.0.8:8000");
    assert_string_equal(set_header(c->header_mutation, "x-request-id", tmp, sizeof tmp),
                        rec.request_id);
    assert_string_equal(lb_endpoint(r), "10.0.0.1:8000,10.0.0.2:8000");
    free_resp(r);
    /* b. the body, re-chunked: 62000 + 62000 + 26000 */
    struct buf got = BUF_INIT;
    bool eos;
    assert_int_equal(pop_streamed(&s, RESP(REQUEST_BODY), &got, 0, &eos), 3);
    assert_true(eos);
    assert_int_equal(got.len, 150000);
    assert_memory_equal(got.data, body, 150000);
    assert_null(s.out_head);
    /* Envoy's duplicated end-of-stream chunk is ignored. */
    enc_body(&m, false, "", 0, true);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_null(s.out_head);

    /* The response phase: headers, then SSE chunks echoed at once. */
    static const char *const rh[] = {":status", "200", "content-type", "text/event-stream", NULL};
    enc_headers(&m, true, rh, false, -1, -1, NULL);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(RESPONSE_HEADERS));
    assert_non_null(r->response_headers->response);
    free_resp(r);
    assert_int_equal(rec.resp_status, 200);
    enc_body(&m, true, "data: 1\n\n", 9, false);
    feed(&s, &m);
    buf_reset(&got);
    assert_int_equal(pop_streamed(&s, RESP(RESPONSE_BODY), &got, 1, &eos), 1);
    assert_false(eos);
    assert_int_equal(got.len, 9);
    /* A response chunk above 62,000 bytes is split too. */
    enc_body(&m, true, body, 100000, true);
    feed(&s, &m);
    buf_reset(&got);
    assert_int_equal(pop_streamed(&s, RESP(RESPONSE_BODY), &got, 0, &eos), 2);
    assert_true(eos);
    assert_memory_equal(got.data, body, 100000);
    assert_int_equal(rec.resp_body.len, 100009);
    assert_true(rec.resp_eos);
    assert_true(s.resp_done);

    /* Released once, completed, even if the call then ends cancelled (a reset after the
     * response is no cancel). */
    assert_false(xp_stream_end(&s, true));
    assert_false(xp_stream_end(&s, true));
    assert_int_equal(rec.releases, 1);
    assert_int_equal(rec.released_cancelled, 0);
    assert_ptr_equal(rec.released_token, &the_token);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 1);
    assert_int_equal(atomic_load(&cfg.decisions), 1);
    free(body);
    buf_free(&got);
    buf_free(&m);
    rec_free(&rec);
}

static void test_duplex_empty_body_and_request_id(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_FULL_DUPLEX, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    static const char *const h[] = {":path", "/v1/models", "X-Request-Id", "abc-123", NULL};
    enc_headers(&m, false, h, false, -1, -1, NULL);
    feed(&s, &m);
    enc_body(&m, false, "", 0, true);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_string_equal(rec.request_id, "abc-123"); /* keys are lower-cased */
    presp_t *r = pop_resp(&s);
    char tmp[64];
    const common_t *c = r->request_headers->response;
    assert_null(set_header(c->header_mutation, "x-request-id", tmp, sizeof tmp));
    assert_null(set_header(c->header_mutation, "x-prefiller-host-port", tmp, sizeof tmp));
    assert_null(set_header(c->header_mutation, "x-encoder-hosts-ports", tmp, sizeof tmp));
    assert_string_equal(set_header(c->header_mutation, "content-length", tmp, sizeof tmp), "0");
    free_resp(r);
    struct buf got = BUF_INIT;
    bool eos;
    assert_int_equal(pop_streamed(&s, RESP(REQUEST_BODY), &got, 0, &eos), 1);
    assert_true(eos);
    assert_int_equal(got.len, 0);
    assert_null(s.out_head);
    /* Ended before the response: a cancel is reported as such. */
    assert_true(xp_stream_end(&s, true));
    assert_int_equal(rec.released_cancelled, 1);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 1);
    buf_free(&got);
    buf_free(&m);
    rec_free(&rec);
}

static void test_headers_end_of_stream(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_int_equal(rec.decides, 1);
    assert_int_equal(rec.body.len, 0);
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_HEADERS));
    char tmp[64];
    const common_t *c = r->request_headers->response;
    assert_true(c->clear_route_cache);
    assert_non_null(
        set_header(c->header_mutation, "x-gateway-destination-endpoint", tmp, sizeof tmp));
    assert_null(set_header(c->header_mutation, "content-length", tmp, sizeof tmp));
    free_resp(r);
    assert_null(s.out_head);
    /* The gateway half-closes without a response phase: completed. */
    assert_false(xp_stream_end(&s, false));
    assert_int_equal(rec.releases, 1);
    assert_int_equal(rec.released_cancelled, 0);
    xp_stream_free(&s);
    buf_free(&m);
    rec_free(&rec);
}

static void test_request_trailers(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, false, -1, -1, NULL);
    feed(&s, &m);
    enc_body(&m, false, "{\"a\":1}", 7, false);
    feed(&s, &m);
    assert_null(s.out_head);
    enc_trailers(&m, false);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_int_equal(rec.decides, 1);
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_HEADERS));
    free_resp(r);
    struct buf got = BUF_INIT;
    bool eos;
    assert_int_equal(pop_streamed(&s, RESP(REQUEST_BODY), &got, 1, &eos), 1);
    assert_false(eos); /* the stream ends with the trailers, not the body */
    assert_int_equal(got.len, 7);
    r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_TRAILERS));
    assert_null(r->request_trailers->header_mutation);
    free_resp(r);
    assert_null(s.out_head);
    /* Response trailers end the response. */
    enc_trailers(&m, true);
    feed(&s, &m);
    r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(RESPONSE_TRAILERS));
    free_resp(r);
    assert_true(s.resp_done);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 1);
    assert_int_equal(rec.released_cancelled, 0);
    buf_free(&got);
    buf_free(&m);
    rec_free(&rec);
}

static void check_buffered(int pc_mode, enum extproc_body_mode cfg_mode)
{
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, cfg_mode, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, false, pc_mode, pc_mode, NULL);
    feed(&s, &m);
    /* The headers reply at once, with only clear_route_cache. */
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_HEADERS));
    assert_true(r->request_headers->response->clear_route_cache);
    assert_null(r->request_headers->response->header_mutation);
    assert_null(r->dynamic_metadata);
    free_resp(r);
    assert_null(s.out_head);
    assert_int_equal(rec.decides, 0);
    const char *body = "{\"model\":\"m\",\"prompt\":\"hi\"}";
    enc_body(&m, false, body, strlen(body), true);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_int_equal(rec.decides, 1);
    r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_BODY));
    const common_t *c = r->request_body->response;
    char tmp[64];
    assert_string_equal(
        set_header(c->header_mutation, "x-gateway-destination-endpoint", tmp, sizeof tmp),
        "10.0.0.1:8000,10.0.0.2:8000");
    snprintf(tmp, sizeof tmp, "%zu", strlen(body));
    char tmp2[64];
    assert_string_equal(set_header(c->header_mutation, "content-length", tmp2, sizeof tmp2), tmp);
    assert_non_null(c->body_mutation);
    assert_int_equal(c->body_mutation->mutation_case,
                     ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_BODY);
    assert_int_equal(c->body_mutation->body.len, strlen(body));
    assert_memory_equal(c->body_mutation->body.data, body, strlen(body));
    assert_string_equal(lb_endpoint(r), "10.0.0.1:8000,10.0.0.2:8000");
    free_resp(r);
    assert_null(s.out_head);
    /* The response body, buffered: a plain CONTINUE. */
    static const char *const rh[] = {":status", "200", NULL};
    enc_headers(&m, true, rh, false, -1, -1, NULL);
    feed(&s, &m);
    free_resp(pop_resp(&s));
    rec.add_attr = true;
    enc_body(&m, true, "{\"x\":1}", 7, true);
    feed(&s, &m);
    r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(RESPONSE_BODY));
    assert_null(r->response_body->response->body_mutation);
    /* the hook's attributes ride on the reply to the response's last message */
    const Google__Protobuf__Struct *md = r->dynamic_metadata;
    assert_non_null(md);
    assert_int_equal(md->n_fields, 2);
    assert_string_equal(md->fields[0]->key, "envoy.lb");
    assert_string_equal(md->fields[0]->value->struct_value->fields[0]->key, "cost");
    assert_true(md->fields[0]->value->struct_value->fields[0]->value->number_value == 42);
    assert_string_equal(md->fields[1]->key, "acme");
    assert_true(md->fields[1]->value->struct_value->fields[0]->value->number_value == 7);
    free_resp(r);
    assert_true(s.resp_done);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 1);
    buf_free(&m);
    rec_free(&rec);
}

static void test_buffered(void **state)
{
    (void)state;
    check_buffered(2, EXTPROC_MODE_FULL_DUPLEX); /* protocol_config wins */
    check_buffered(-1, EXTPROC_MODE_BUFFERED);   /* else the configured mode */
}

static void test_immediate_response(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    rec.answer.status = 503;
    snprintf(rec.answer.message, sizeof rec.answer.message, "no \"ready\" endpoint");
    snprintf(rec.answer.reason, sizeof rec.answer.reason, "no-endpoints");
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, false, -1, -1, NULL);
    feed(&s, &m);
    enc_body(&m, false, "{}", 2, true);
    assert_int_equal(feed(&s, &m), XP_FINISH);
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(IMMEDIATE_RESPONSE));
    const Envoy__Service__ExtProc__V3__ImmediateResponse *ir = r->immediate_response;
    assert_int_equal(ir->status->code, 503);
    char tmp[128];
    assert_string_equal(set_header(ir->headers, "content-type", tmp, sizeof tmp),
                        "application/json");
    assert_string_equal(set_header(ir->headers, "x-llm-d-request-dropped-reason", tmp, sizeof tmp),
                        "no-endpoints");
    json_t *j = json_loadb((const char *)ir->body.data, ir->body.len, 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "no \"ready\" endpoint");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "ServiceUnavailableError");
    assert_true(json_is_null(json_object_get(e, "param")));
    assert_int_equal(json_integer_value(json_object_get(e, "code")), 503);
    json_decref(j);
    free_resp(r);
    assert_null(s.out_head);
    assert_int_equal(atomic_load(&cfg.immediate), 1);
    /* Anything after is ignored. */
    assert_int_equal(feed(&s, &m), XP_FINISH);
    assert_null(s.out_head);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 0); /* a refused request holds no token */
    buf_free(&m);
    rec_free(&rec);
}

static void test_body_too_large(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 100);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, false, -1, -1, NULL);
    feed(&s, &m);
    char big[60];
    memset(big, 'x', sizeof big);
    enc_body(&m, false, big, 60, false);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_int_equal(feed(&s, &m), XP_FINISH); /* 120 > 100 */
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(IMMEDIATE_RESPONSE));
    assert_int_equal(r->immediate_response->status->code, 413);
    free_resp(r);
    assert_int_equal(rec.decides, 0);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 0);
    buf_free(&m);
    rec_free(&rec);
}

static void test_subset_hint(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    static const char *const subset[] = {"10.0.0.7:8000", "10.0.0.8:8000", NULL};
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, subset);
    feed(&s, &m);
    assert_true(rec.has_subset);
    assert_int_equal(rec.n_subset, 2);
    assert_string_equal(rec.subset0, "10.0.0.7:8000");
    xp_stream_free(&s);
    /* An empty list is a subset too (the router answers 503). */
    xp_stream_init(&s, &cfg);
    static const char *const none[] = {NULL};
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, none);
    feed(&s, &m);
    assert_true(rec.has_subset);
    assert_int_equal(rec.n_subset, 0);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 2);
    assert_int_equal(rec.released_cancelled, 2);
    buf_free(&m);
    rec_free(&rec);
}

/* response_headers with metadata_context {"envoy.lb": {served key: served}} when lb (served
 * NULL: the namespace without the key; a number instead of a string when as_number). */
static void enc_resp_headers_lb(struct buf *out, bool lb, const char *served, bool as_number)
{
    hv_t hv;
    hv_t *hp = &hv;
    envoy__config__core__v3__header_value__init(&hv);
    hv.key = (char *)":status";
    hv.raw_value.data = (uint8_t *)"200";
    hv.raw_value.len = 3;
    Envoy__Config__Core__V3__HeaderMap hm;
    envoy__config__core__v3__header_map__init(&hm);
    hm.n_headers = 1;
    hm.headers = &hp;
    Envoy__Service__ExtProc__V3__HttpHeaders h;
    envoy__service__ext_proc__v3__http_headers__init(&h);
    h.headers = &hm;
    preq_t r;
    envoy__service__ext_proc__v3__processing_request__init(&r);
    r.request_case = REQ(RESPONSE_HEADERS);
    r.response_headers = &h;
    Google__Protobuf__Value v;
    Google__Protobuf__Struct__FieldsEntry fe, *fep = &fe;
    Google__Protobuf__Struct st;
    Envoy__Config__Core__V3__Metadata__FilterMetadataEntry other, me, *mep[2] = {&other, &me};
    Google__Protobuf__Struct empty;
    Envoy__Config__Core__V3__Metadata md;
    if (lb) {
        google__protobuf__struct__init(&st);
        if (served) {
            google__protobuf__value__init(&v);
            if (as_number) {
                v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
                v.number_value = 7;
            } else {
                v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
                v.string_value = (char *)served;
            }
            google__protobuf__struct__fields_entry__init(&fe);
            fe.key = (char *)"x-gateway-destination-endpoint-served";
            fe.value = &v;
            st.n_fields = 1;
            st.fields = &fep;
        }
        /* another namespace first: only envoy.lb counts */
        google__protobuf__struct__init(&empty);
        envoy__config__core__v3__metadata__filter_metadata_entry__init(&other);
        other.key = (char *)"envoy.lb.subset_hint";
        other.value = &empty;
        envoy__config__core__v3__metadata__filter_metadata_entry__init(&me);
        me.key = (char *)"envoy.lb";
        me.value = &st;
        envoy__config__core__v3__metadata__init(&md);
        md.n_filter_metadata = 2;
        md.filter_metadata = mep;
        r.metadata_context = &md;
    }
    pack_req(&r, out);
}

/* destination-endpoint-served-verifier's path: the response_headers message's envoy.lb
 * metadata reaches the hook, and its header goes out as a mutation on the
 * response_headers reply; without the hook the reply stays a plain CONTINUE. */
static void test_response_headers_lb_metadata(void **state)
{
    (void)state;
    static const struct {
        bool lb;
        const char *served;
        bool as_number;
        bool want_has;
        const char *want_served, *want_header;
    } cases[] = {
        {true, "10.0.0.1:8000", false, true, "10.0.0.1:8000", "10.0.0.1:8000"},
        {true, NULL, false, true, "(null)", "fail: missing destination endpoint served metadata"},
        {true, "x", true, true, "(null)", "fail: missing destination endpoint served metadata"},
        {false, NULL, false, false, "(null)", "fail: missing envoy lb metadata"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct rec rec;
        rec_init(&rec);
        struct xp_stream_cfg cfg;
        cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
        cfg.hooks.on_response_headers = hook_on_response_headers;
        struct xp_stream s;
        xp_stream_init(&s, &cfg);
        struct buf m = BUF_INIT;
        enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
        assert_int_equal(feed(&s, &m), XP_CONTINUE);
        free_resp(pop_resp(&s));
        enc_resp_headers_lb(&m, cases[i].lb, cases[i].served, cases[i].as_number);
        assert_int_equal(feed(&s, &m), XP_CONTINUE);
        assert_int_equal(rec.resp_header_calls, 1);
        assert_int_equal(rec.lb_has, cases[i].want_has);
        assert_string_equal(rec.lb_served, cases[i].want_served);
        presp_t *r = pop_resp(&s);
        assert_int_equal(r->response_case, RESP(RESPONSE_HEADERS));
        char tmp[128];
        const char *v = set_header(r->response_headers->response->header_mutation,
                                   "x-conformance-test-served-endpoint", tmp, sizeof tmp);
        assert_non_null(v);
        assert_string_equal(v, cases[i].want_header);
        free_resp(r);
        assert_null(s.out_head);
        xp_stream_free(&s);
        buf_free(&m);
        rec_free(&rec);
    }
    /* no hook: CONTINUE without a mutation, whatever the metadata */
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    feed(&s, &m);
    free_resp(pop_resp(&s));
    enc_resp_headers_lb(&m, true, "10.0.0.1:8000", false);
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(RESPONSE_HEADERS));
    assert_null(r->response_headers->response->header_mutation);
    free_resp(r);
    xp_stream_free(&s);
    buf_free(&m);
    rec_free(&rec);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    enc_body(&m, false, "x", 1, true);
    assert_int_equal(feed(&s, &m), XP_FAIL);
    assert_non_null(strstr(s.err, "before request_headers"));
    xp_stream_free(&s);
    xp_stream_init(&s, &cfg);
    static const uint8_t junk[] = {0x12, 0x05, 0x0a, 0x10, 0xff}; /* truncated */
    assert_int_equal(xp_stream_feed(&s, junk, sizeof junk), XP_FAIL);
    xp_stream_free(&s);
    /* Response before the request was answered. */
    xp_stream_init(&s, &cfg);
    enc_headers(&m, false, REQ_HEADERS, false, -1, -1, NULL);
    feed(&s, &m);
    enc_body(&m, true, "x", 1, true);
    assert_int_equal(feed(&s, &m), XP_FAIL);
    xp_stream_free(&s);
    /* Observability mode: processed, never answered. */
    xp_stream_init(&s, &cfg);
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    buf_append(&m, "\x50\x01", 2); /* observability_mode = true (field 10) */
    assert_int_equal(feed(&s, &m), XP_CONTINUE);
    assert_null(s.out_head);
    assert_int_equal(rec.decides, 1);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 1);
    buf_free(&m);
    rec_free(&rec);
}

static void test_streamed_mode_and_no_endpoint(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct xp_stream_cfg cfg;
    cfg_init(&cfg, &rec, EXTPROC_MODE_AUTO, 0);
    struct xp_stream s;
    xp_stream_init(&s, &cfg);
    struct buf m = BUF_INIT;
    /* STREAMED (1): decided on the headers, each chunk answered CONTINUE. */
    enc_headers(&m, false, REQ_HEADERS, false, 1, 0, NULL);
    feed(&s, &m);
    assert_int_equal(rec.decides, 1);
    free_resp(pop_resp(&s));
    enc_body(&m, false, "abc", 3, false);
    feed(&s, &m);
    presp_t *r = pop_resp(&s);
    assert_int_equal(r->response_case, RESP(REQUEST_BODY));
    assert_null(r->request_body->response->body_mutation);
    free_resp(r);
    xp_stream_free(&s);
    /* A "success" without an endpoint is a 500; its token is still released. */
    rec.answer.endpoint[0] = '\0';
    xp_stream_init(&s, &cfg);
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    assert_int_equal(feed(&s, &m), XP_FINISH);
    r = pop_resp(&s);
    assert_int_equal(r->immediate_response->status->code, 500);
    free_resp(r);
    xp_stream_free(&s);
    assert_int_equal(rec.releases, 2);
    buf_free(&m);
    rec_free(&rec);
}

/* --- the transport, through the C core's client API ------------------------------------ */

static gpr_timespec in_ms(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void batch(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n, bool want_ok)
{
    static int tag;
    assert_int_equal(grpc_call_start_batch(call, ops, n, &tag, NULL), GRPC_CALL_OK);
    grpc_event ev = grpc_completion_queue_pluck(cq, &tag, in_ms(10000), NULL);
    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    if (want_ok)
        assert_true(ev.success);
}

static grpc_byte_buffer *bb_of(const struct buf *m)
{
    grpc_slice sl = grpc_slice_from_copied_buffer(m->data, m->len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static void bb_read(grpc_byte_buffer *bb, struct buf *out)
{
    buf_reset(out);
    grpc_byte_buffer_reader rd;
    assert_true(grpc_byte_buffer_reader_init(&rd, bb));
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    buf_append(out, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    grpc_byte_buffer_destroy(bb);
}

static int health_check(grpc_channel *ch, grpc_completion_queue *cq, const char *service,
                        grpc_status_code *code)
{
    grpc_slice method = grpc_slice_from_static_string("/grpc.health.v1.Health/Check");
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                               in_ms(10000), NULL);
    Grpc__Health__V1__HealthCheckRequest rq;
    grpc__health__v1__health_check_request__init(&rq);
    rq.service = (char *)service;
    struct buf m = BUF_INIT;
    buf_reserve(&m, 300);
    m.len = grpc__health__v1__health_check_request__pack(&rq, (uint8_t *)m.data);
    grpc_byte_buffer *send = bb_of(&m), *recv = NULL;
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_slice details;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[5].data.recv_status_on_client.status = code;
    ops[5].data.recv_status_on_client.status_details = &details;
    batch(call, cq, ops, 6, true);
    int status = -1;
    if (recv) {
        bb_read(recv, &m);
        Grpc__Health__V1__HealthCheckResponse *rs =
            grpc__health__v1__health_check_response__unpack(NULL, m.len, (uint8_t *)m.data);
        assert_non_null(rs);
        status = rs->status;
        grpc__health__v1__health_check_response__free_unpacked(rs, NULL);
    }
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    buf_free(&m);
    return status;
}

struct client_stream {
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array imd, tmd;
    grpc_status_code code;
    grpc_slice details;
};

static void cs_open(struct client_stream *cs, grpc_channel *ch, grpc_completion_queue *cq)
{
    memset(cs, 0, sizeof *cs);
    cs->cq = cq;
    grpc_slice method =
        grpc_slice_from_static_string("/envoy.service.ext_proc.v3.ExternalProcessor/Process");
    cs->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                        in_ms(20000), NULL);
    grpc_metadata_array_init(&cs->imd);
    grpc_metadata_array_init(&cs->tmd);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    batch(cs->call, cq, &op, 1, true);
}

static void cs_send(struct client_stream *cs, const struct buf *m)
{
    grpc_byte_buffer *bb = bb_of(m);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    batch(cs->call, cs->cq, &op, 1, true);
    grpc_byte_buffer_destroy(bb);
}

/* One reply decoded, or NULL at the end of the stream. */
static presp_t *cs_recv(struct client_stream *cs, bool first)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (first) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &cs->imd;
        n++;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
    batch(cs->call, cs->cq, ops, n, false);
    if (!bb)
        return NULL;
    struct buf m = BUF_INIT;
    bb_read(bb, &m);
    presp_t *r =
        envoy__service__ext_proc__v3__processing_response__unpack(NULL, m.len, (uint8_t *)m.data);
    assert_non_null(r);
    buf_free(&m);
    return r;
}

static grpc_status_code cs_finish(struct client_stream *cs, bool half_close)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (half_close)
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &cs->tmd;
    ops[n].data.recv_status_on_client.status = &cs->code;
    ops[n].data.recv_status_on_client.status_details = &cs->details;
    n++;
    batch(cs->call, cs->cq, ops, n, true);
    grpc_slice_unref(cs->details);
    grpc_metadata_array_destroy(&cs->imd);
    grpc_metadata_array_destroy(&cs->tmd);
    grpc_call_unref(cs->call);
    return cs->code;
}

static void wait_for(_Atomic int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) < want; i++)
        usleep(10000);
    assert_int_equal(atomic_load(v), want);
}

static void test_server(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct extproc_hooks hooks = {.decide = hook_decide, .release = hook_release, .ctx = &rec};
    struct extproc_config cfg = {.host = "127.0.0.1",
                                 .port = 0,
                                 .health_port = 0,
                                 .tls = false,
                                 .workers = 2,
                                 .mode = EXTPROC_MODE_AUTO,
                                 .max_body_bytes = 1 << 20};
    struct extproc_server *srv;
    char err[256];
    assert_true(extproc_server_start(&cfg, &hooks, &srv, err, sizeof err));
    assert_true(extproc_port(srv) > 0);
    assert_true(extproc_health_port(srv) > 0);
    assert_int_not_equal(extproc_port(srv), extproc_health_port(srv));

    /* The port is taken: a second server fails, cleanly. */
    struct extproc_config cfg2 = cfg;
    cfg2.port = extproc_port(srv);
    struct extproc_server *srv2;
    assert_false(extproc_server_start(&cfg2, &hooks, &srv2, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen"));
    /* A bad certificate directory fails too. */
    cfg2.port = 0;
    cfg2.tls = true;
    cfg2.cert_dir = "/nonexistent";
    assert_false(extproc_server_start(&cfg2, &hooks, &srv2, err, sizeof err));
    assert_non_null(strstr(err, "tls.crt"));

    grpc_init();
    grpc_channel_credentials *cc = grpc_insecure_credentials_create();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", extproc_health_port(srv));
    grpc_channel *hch = grpc_channel_create(target, cc, NULL);
    snprintf(target, sizeof target, "127.0.0.1:%d", extproc_port(srv));
    grpc_channel *ch = grpc_channel_create(target, cc, NULL);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);

    grpc_status_code code;
    assert_int_equal(health_check(hch, cq, "", &code), 1);
    assert_int_equal(health_check(hch, cq, "liveness", &code), 1);
    assert_int_equal(health_check(hch, cq, "readiness", &code), 2);
    extproc_set_ready(srv, true);
    assert_int_equal(health_check(hch, cq, "readiness", &code), 1);
    assert_int_equal(health_check(ch, cq, "envoy.service.ext_proc.v3.ExternalProcessor", &code), 1);
    assert_int_equal(health_check(ch, cq, "nope", &code), 3);
    assert_int_equal(code, GRPC_STATUS_OK);

    /* A full-duplex stream: headers, body, replies in order, OK on half-close. */
    struct buf m = BUF_INIT;
    struct client_stream cs;
    cs_open(&cs, ch, cq);
    enc_headers(&m, false, REQ_HEADERS, false, -1, -1, NULL);
    cs_send(&cs, &m);
    enc_body(&m, false, "{\"prompt\":\"hi\"}", 15, true);
    cs_send(&cs, &m);
    presp_t *r = cs_recv(&cs, true);
    assert_int_equal(r->response_case, RESP(REQUEST_HEADERS));
    free_resp(r);
    r = cs_recv(&cs, false);
    assert_int_equal(r->response_case, RESP(REQUEST_BODY));
    assert_true(r->request_body->response->body_mutation->streamed_response->end_of_stream);
    free_resp(r);
    assert_int_equal(cs_finish(&cs, true), GRPC_STATUS_OK);
    wait_for(&rec.releases, 1);
    assert_int_equal(rec.released_cancelled, 0);

    /* Cancelled after the decision: released as cancelled. */
    cs_open(&cs, ch, cq);
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    cs_send(&cs, &m);
    free_resp(cs_recv(&cs, true));
    grpc_call_cancel(cs.call, NULL);
    assert_int_equal(cs_finish(&cs, false), GRPC_STATUS_CANCELLED);
    wait_for(&rec.releases, 2);
    wait_for(&rec.released_cancelled, 1);

    /* A protocol error ends the call with INVALID_ARGUMENT. */
    cs_open(&cs, ch, cq);
    enc_body(&m, false, "x", 1, true);
    cs_send(&cs, &m);
    assert_null(cs_recv(&cs, true));
    assert_int_equal(cs_finish(&cs, false), GRPC_STATUS_INVALID_ARGUMENT);

    /* Watch is not implemented. */
    {
        grpc_slice method = grpc_slice_from_static_string("/grpc.health.v1.Health/Watch");
        grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                                   NULL, in_ms(10000), NULL);
        grpc_metadata_array imd, tmd;
        grpc_metadata_array_init(&imd);
        grpc_metadata_array_init(&tmd);
        grpc_slice details;
        grpc_op ops[5];
        grpc_byte_buffer *none = NULL;
        memset(ops, 0, sizeof ops);
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &none;
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        /* A Trailers-Only answer reaches the core's client only with initial metadata
         * asked for. */
        ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[2].data.recv_initial_metadata.recv_initial_metadata = &imd;
        ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[3].data.recv_status_on_client.trailing_metadata = &tmd;
        ops[3].data.recv_status_on_client.status = &code;
        ops[3].data.recv_status_on_client.status_details = &details;
        batch(call, cq, ops, 5, true);
        assert_null(none);
        assert_int_equal(code, GRPC_STATUS_UNIMPLEMENTED);
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&imd);
        grpc_metadata_array_destroy(&tmd);
        grpc_call_unref(call);
    }

    /* Stop with a routed stream in flight: its token is released, cancelled. */
    cs_open(&cs, ch, cq);
    enc_headers(&m, false, REQ_HEADERS, true, -1, -1, NULL);
    cs_send(&cs, &m);
    free_resp(cs_recv(&cs, true));
    struct extproc_stats st;
    extproc_get_stats(srv, &st);
    assert_int_equal(st.streams, 4);
    assert_int_equal(st.decisions, 3);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.immediate, 0);
    extproc_server_stop(srv);
    assert_int_equal(rec.releases, 3);
    assert_int_equal(rec.released_cancelled, 2);
    assert_int_not_equal(cs_finish(&cs, false), GRPC_STATUS_OK);

    grpc_channel_destroy(ch);
    grpc_channel_destroy(hch);
    grpc_channel_credentials_release(cc);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    grpc_shutdown_blocking();
    buf_free(&m);
    rec_free(&rec);
}

static void test_server_tls(void **state)
{
    (void)state;
    struct rec rec;
    rec_init(&rec);
    struct extproc_hooks hooks = {.decide = hook_decide, .release = hook_release, .ctx = &rec};
    struct extproc_config cfg = {
        .host = "127.0.0.1", .port = 0, .health_port = -1, .tls = true, .workers = 1};
    struct extproc_server *srv;
    char err[256];
    assert_true(extproc_server_start(&cfg, &hooks, &srv, err, sizeof err));
    assert_int_equal(extproc_health_port(srv), 0);
    extproc_server_stop(srv);
    rec_free(&rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_duplex),
        cmocka_unit_test(test_duplex_empty_body_and_request_id),
        cmocka_unit_test(test_headers_end_of_stream),
        cmocka_unit_test(test_request_trailers),
        cmocka_unit_test(test_buffered),
        cmocka_unit_test(test_immediate_response),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_subset_hint),
        cmocka_unit_test(test_response_headers_lb_metadata),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_streamed_mode_and_no_endpoint),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_server_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

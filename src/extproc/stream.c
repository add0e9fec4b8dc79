/* The ext_proc phase machine of one Process stream (extproc.md §2), without gRPC.
 *
 * Decoding is protobuf-c's (trimmed .proto files in proto/, compiled at build time);
 * every reply is packed at once into one xp_out and queued, so the queue order is the
 * wire order: the request_headers reply always precedes the request_body replies
 * (GIE #3033), and nothing is sent for the request before the decision in full-duplex
 * mode. Invariants:
 *   - decide() runs at most once per stream;
 *   - a token from a successful decision is released exactly once, by xp_stream_end();
 *   - after an ImmediateResponse or a protocol error (XP_PH_DONE) nothing else is queued;
 *   - the request (headers, body, subset) is dropped once it has been routed: a stream
 *     can live as long as a streamed LLM response, and holds only its small state then. */
#include "extproc/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "envoy_config_core.pb-c.h"
#include "ext_proc.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "openai/openai.h"

typedef Envoy__Service__ExtProc__V3__ProcessingRequest preq_t;
typedef Envoy__Service__ExtProc__V3__ProcessingResponse presp_t;
typedef Envoy__Service__ExtProc__V3__HeadersResponse headers_resp_t;
typedef Envoy__Service__ExtProc__V3__BodyResponse body_resp_t;
typedef Envoy__Service__ExtProc__V3__TrailersResponse trailers_resp_t;
typedef Envoy__Service__ExtProc__V3__CommonResponse common_t;
typedef Envoy__Service__ExtProc__V3__HeaderMutation hmut_t;
typedef Envoy__Service__ExtProc__V3__BodyMutation bmut_t;
typedef Envoy__Service__ExtProc__V3__StreamedBodyResponse streamed_t;
typedef Envoy__Service__ExtProc__V3__ImmediateResponse immediate_t;
typedef Envoy__Type__V3__HttpStatus http_status_t;
typedef Envoy__Config__Core__V3__HeaderMap header_map_t;
typedef Envoy__Config__Core__V3__HeaderValue header_value_t;
typedef Envoy__Config__Core__V3__HeaderValueOption header_opt_t;
typedef Envoy__Config__Core__V3__Metadata metadata_t;
typedef Google__Protobuf__Struct pstruct_t;
typedef Google__Protobuf__Struct__FieldsEntry pfield_t;
typedef Google__Protobuf__Value pvalue_t;

#define RESP(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_##x
#define REQ(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_##x

enum { APPEND_OVERWRITE_IF_EXISTS_OR_ADD = 2 };
enum { MODE_NONE, MODE_STREAMED, MODE_BUFFERED, MODE_BUFFERED_PARTIAL, MODE_FULL_DUPLEX };

static const char SUBSET_NS[] = "envoy.lb.subset_hint";
static const char SUBSET_KEY[] = "x-gateway-destination-endpoint-subset";
static const char LB_NS[] = "envoy.lb";
static const char ENDPOINT_KEY[] = "x-gateway-destination-endpoint";
static const char SERVED_KEY[] = "x-gateway-destination-endpoint-served";

void xp_stream_init(struct xp_stream *s, struct xp_stream_cfg *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->phase = XP_PH_HEADERS;
    arena_init(&s->arena, 0);
    s->out_tail = &s->out_head;
}

struct xp_out *xp_stream_pop(struct xp_stream *s)
{
    struct xp_out *o = s->out_head;
    if (o) {
        s->out_head = o->next;
        if (!s->out_head)
            s->out_tail = &s->out_head;
        o->next = NULL;
        s->out_count--;
    }
    return o;
}

bool xp_stream_end(struct xp_stream *s, bool grpc_cancelled)
{
    bool cancelled = (grpc_cancelled || s->failed) && !s->resp_done;
    if (s->has_token) {
        s->has_token = false;
        if (s->cfg->hooks.release)
            s->cfg->hooks.release(s->cfg->hooks.ctx, s->token, cancelled);
    }
    return cancelled;
}

void xp_stream_free(struct xp_stream *s)
{
    xp_stream_end(s, true);
    struct xp_out *o;
    while ((o = xp_stream_pop(s)))
        free(o);
    buf_free(&s->body);
    arena_free(&s->arena);
}

/* --- replies ------------------------------------------------------------------------ */

static void emit(struct xp_stream *s, const presp_t *r0)
{
    if (s->observe)
        return;
    presp_t rr = *r0, *r = &rr;
    if (s->resp_md && !r->dynamic_metadata) { /* the response's attributes, once */
        r->dynamic_metadata = s->resp_md;
        s->resp_md = NULL;
    }
    size_t n = envoy__service__ext_proc__v3__processing_response__get_packed_size(r);
    struct xp_out *o = xmalloc(sizeof *o + n);
    o->next = NULL;
    o->len = envoy__service__ext_proc__v3__processing_response__pack(r, o->data);
    *s->out_tail = o;
    s->out_tail = &o->next;
    s->out_count++;
}

/* A header mutation of a few set_headers, all on the stack. */
#define HMUT_MAX 8
struct hmut {
    hmut_t m;
    header_opt_t opt[HMUT_MAX];
    header_value_t hv[HMUT_MAX];
    header_opt_t *p[HMUT_MAX];
};

static void hmut_init(struct hmut *h)
{
    envoy__service__ext_proc__v3__header_mutation__init(&h->m);
    h->m.set_headers = h->p;
}

/* Sets raw_value only: Envoy refuses a HeaderValue with both value and raw_value. */
static void hmut_set(struct hmut *h, const char *key, const char *value)
{
    size_t i = h->m.n_set_headers++;
    envoy__config__core__v3__header_value__init(&h->hv[i]);
    h->hv[i].key = (char *)key;
    h->hv[i].raw_value.data = (uint8_t *)value;
    h->hv[i].raw_value.len = strlen(value);
    envoy__config__core__v3__header_value_option__init(&h->opt[i]);
    h->opt[i].header = &h->hv[i];
    h->opt[i].append_action = APPEND_OVERWRITE_IF_EXISTS_OR_ADD;
    h->p[i] = &h->opt[i];
}

/* dynamic_metadata {"envoy.lb": {"x-gateway-destination-endpoint": endpoint}} */
struct lbmeta {
    pstruct_t top, lb;
    pfield_t top_f, lb_f;
    pfield_t *top_p, *lb_p;
    pvalue_t top_v, lb_v;
};

static void lbmeta_init(struct lbmeta *m, const char *endpoint)
{
    google__protobuf__value__init(&m->lb_v);
    m->lb_v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    m->lb_v.string_value = (char *)endpoint;
    google__protobuf__struct__fields_entry__init(&m->lb_f);
    m->lb_f.key = (char *)ENDPOINT_KEY;
    m->lb_f.value = &m->lb_v;
    m->lb_p = &m->lb_f;
    google__protobuf__struct__init(&m->lb);
    m->lb.n_fields = 1;
    m->lb.fields = &m->lb_p;

    google__protobuf__value__init(&m->top_v);
    m->top_v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    m->top_v.struct_value = &m->lb;
    google__protobuf__struct__fields_entry__init(&m->top_f);
    m->top_f.key = (char *)LB_NS;
    m->top_f.value = &m->top_v;
    m->top_p = &m->top_f;
    google__protobuf__struct__init(&m->top);
    m->top.n_fields = 1;
    m->top.fields = &m->top_p;
}

/* An empty CommonResponse (CONTINUE) as the reply of kind `which`. */
static void emit_continue(struct xp_stream *s, int which)
{
    common_t c;
    envoy__service__ext_proc__v3__common_response__init(&c);
    headers_resp_t h;
    body_resp_t b;
    trailers_resp_t t;
    presp_t r;
    envoy__service__ext_proc__v3__processing_response__init(&r);
    r.response_case = which;
    switch (which) {
    case RESP(REQUEST_HEADERS):
    case RESP(RESPONSE_HEADERS):
        envoy__service__ext_proc__v3__headers_response__init(&h);
        h.response = &c;
        r.request_headers = &h; /* same union slot as response_headers */
        break;
    case RESP(REQUEST_BODY):
    case RESP(RESPONSE_BODY):
        envoy__service__ext_proc__v3__body_response__init(&b);
        b.response = &c;
        r.request_body = &b;
        break;
    default:
        envoy__service__ext_proc__v3__trailers_response__init(&t);
        r.request_trailers = &t;
        break;
    }
    emit(s, &r);
}

/* One body reply per XP_CHUNK_MAX bytes, as streamed_response; eos on the last. An empty
 * body still makes one (empty) reply. */
static void emit_streamed(struct xp_stream *s, int which, const uint8_t *p, size_t n, bool eos)
{
    size_t off = 0;
    do {
        size_t k = n - off < XP_CHUNK_MAX ? n - off : XP_CHUNK_MAX;
        streamed_t sb;
        envoy__service__ext_proc__v3__streamed_body_response__init(&sb);
        sb.body.data = k ? (uint8_t *)p + off : NULL;
        sb.body.len = k;
        sb.end_of_stream = eos && off + k == n;
        bmut_t bm;
        envoy__service__ext_proc__v3__body_mutation__init(&bm);
        bm.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_STREAMED_RESPONSE;
        bm.streamed_response = &sb;
        common_t c;
        envoy__service__ext_proc__v3__common_response__init(&c);
        c.body_mutation = &bm;
        body_resp_t b;
        envoy__service__ext_proc__v3__body_response__init(&b);
        b.response = &c;
        presp_t r;
        envoy__service__ext_proc__v3__processing_response__init(&r);
        r.response_case = which;
        r.request_body = &b;
        emit(s, &r);
        off += k;
    } while (off < n);
}

static void emit_immediate(struct xp_stream *s, int status, const char *message, const char *reason)
{
    struct openai_error e;
    openai_error_set(&e, status, NULL, "%s", message);
    struct buf body = BUF_INIT;
    openai_error_body(&body, &e);

    struct hmut h;
    hmut_init(&h);
    hmut_set(&h, "content-type", "application/json");
    if (reason && reason[0])
        hmut_set(&h, "x-llm-d-request-dropped-reason", reason);
    http_status_t hs;
    envoy__type__v3__http_status__init(&hs);
    hs.code = status;
    immediate_t ir;
    envoy__service__ext_proc__v3__immediate_response__init(&ir);
    ir.status = &hs;
    ir.headers = &h.m;
    ir.body.data = (uint8_t *)body.data;
    ir.body.len = body.len;
    presp_t r;
    envoy__service__ext_proc__v3__processing_response__init(&r);
    r.response_case = RESP(IMMEDIATE_RESPONSE);
    r.immediate_response = &ir;
    emit(s, &r);
    buf_free(&body);
    atomic_fetch_add_explicit(&s->cfg->immediate, 1, memory_order_relaxed);
    s->phase = XP_PH_DONE;
}

static enum xp_action fail(struct xp_stream *s, const char *why)
{
    snprintf(s->err, sizeof s->err, "%s", why);
    s->failed = true;
    s->phase = XP_PH_DONE;
    return XP_FAIL;
}

/* --- the request -------------------------------------------------------------------- */

static char *arena_bytes(struct arena *a, const void *p, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void make_request_id(struct xp_stream *s)
{
    uint8_t r[16];
    arc4random_buf(r, sizeof r);
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* UUID version 4 */
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    s->request_id = arena_sprintf(
        &s->arena, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
        r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
        r[15]);
    s->request_id_made = true;
}

/* Body bytes reserved up front from content-length, at most. */
#define PREALLOC_MAX ((size_t)64 << 20)

/* A decimal content-length, or 0 when it is not one (or too long to matter). */
static size_t parse_length(const char *v)
{
    size_t n = 0;
    if (!*v)
        return 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > PREALLOC_MAX)
            return 0;
        n = n * 10 + (size_t)(*v - '0');
    }
    return n;
}

static void take_headers(struct xp_stream *s, const header_map_t *hm)
{
    size_t n = hm ? hm->n_headers : 0;
    s->headers = arena_alloc(&s->arena, (n ? n : 1) * sizeof *s->headers);
    s->n_headers = 0;
    size_t content_length = 0;
    for (size_t i = 0; i < n; i++) {
        const header_value_t *hv = hm->headers[i];
        if (!hv || !hv->key)
            continue;
        size_t kl = strlen(hv->key);
        char *k = arena_bytes(&s->arena, hv->key, kl);
        for (char *c = k; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        const char *v;
        if (hv->raw_value.len)
            v = arena_bytes(&s->arena, hv->raw_value.data, hv->raw_value.len);
        else
            v = arena_bytes(&s->arena, hv->value ? hv->value : "",
                            hv->value ? strlen(hv->value) : 0);
        s->headers[s->n_headers].key = k;
        s->headers[s->n_headers].value = v;
        s->n_headers++;
        if (!s->request_id && !strcmp(k, "x-request-id") && v[0])
            s->request_id = v;
        else if (!strcmp(k, "content-length"))
            content_length = parse_length(v);
    }
    if (!s->request_id)
        make_request_id(s);
    /* One allocation for the whole body when its size is announced and allowed (and not
     * absurd: the header is the client's word, the limit is ours). */
    size_t cap = s->cfg->max_body_bytes ? s->cfg->max_body_bytes : PREALLOC_MAX;
    if (content_length && content_length <= cap && content_length <= PREALLOC_MAX)
        buf_reserve(&s->body, content_length);
}

/* envoy.lb.subset_hint -> x-gateway-destination-endpoint-subset: a list of "ip:port"
 * strings. Only a list counts (as in GIE); an empty one means "no endpoint allowed". */
static void take_metadata(struct xp_stream *s, const metadata_t *md)
{
    if (!md || s->has_subset || s->decided)
        return;
    for (size_t i = 0; i < md->n_filter_metadata; i++) {
        const Envoy__Config__Core__V3__Metadata__FilterMetadataEntry *e = md->filter_metadata[i];
        if (!e || !e->key || strcmp(e->key, SUBSET_NS) || !e->value)
            continue;
        for (size_t j = 0; j < e->value->n_fields; j++) {
            const pfield_t *f = e->value->fields[j];
            if (!f || !f->key || strcmp(f->key, SUBSET_KEY) || !f->value ||
                f->value->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE ||
                !f->value->list_value)
                continue;
            const Google__Protobuf__ListValue *l = f->value->list_value;
            s->has_subset = true;
            s->subset = arena_alloc(&s->arena, (l->n_values ? l->n_values : 1) * sizeof(char *));
            s->n_subset = 0;
            for (size_t k = 0; k < l->n_values; k++) {
                const pvalue_t *v = l->values[k];
                if (v && v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
                    v->string_value)
                    s->subset[s->n_subset++] = arena_strdup(&s->arena, v->string_value);
            }
            return;
        }
    }
}

static void set_modes(struct xp_stream *s,
                      const Envoy__Service__ExtProc__V3__ProtocolConfiguration *pc)
{
    if (pc) {
        switch (pc->request_body_mode) {
        case MODE_FULL_DUPLEX:
            s->req_mode = XP_REQ_DUPLEX;
            break;
        case MODE_BUFFERED:
        case MODE_BUFFERED_PARTIAL:
            s->req_mode = XP_REQ_BUFFERED;
            break;
        default: /* NONE, STREAMED, GRPC, unknown */
            s->req_mode = XP_REQ_HEADERS_ONLY;
            break;
        }
        s->resp_duplex = pc->response_body_mode == MODE_FULL_DUPLEX;
        return;
    }
    bool buffered = s->cfg->mode == EXTPROC_MODE_BUFFERED;
    s->req_mode = buffered ? XP_REQ_BUFFERED : XP_REQ_DUPLEX;
    s->resp_duplex = !buffered;
}

/* The request is routed (or refused): what it held is no longer needed. */
static void drop_request(struct xp_stream *s)
{
    buf_free(&s->body);
    arena_free(&s->arena);
    s->headers = NULL;
    s->n_headers = 0;
    s->subset = NULL;
    s->n_subset = 0;
    s->request_id = NULL;
}

enum route_how {
    ROUTE_HEADERS,       /* in the request_headers reply, no body seen (no content-length) */
    ROUTE_DUPLEX,        /* request_headers reply, then the body re-streamed */
    ROUTE_BUFFERED_BODY, /* in the request_body reply, with the body */
    ROUTE_TRAILERS_ONLY, /* only dynamic metadata can still go out (buffered, no body) */
};

/* Calls decide() and queues the replies. Returns XP_FINISH after an ImmediateResponse. */
static enum xp_action decide_and_reply(struct xp_stream *s, enum route_how how)
{
    struct extproc_request req = {
        .headers = s->headers,
        .n_headers = s->n_headers,
        .body = s->body.data ? s->body.data : "",
        .body_len = s->body.len,
        .has_subset = s->has_subset,
        .subset = s->subset,
        .n_subset = s->n_subset,
        .request_id = s->request_id,
    };
    struct extproc_decision d;
    memset(&d, 0, sizeof d);
    s->decided = true;
    atomic_fetch_add_explicit(&s->cfg->decisions, 1, memory_order_relaxed);
    if (s->cfg->hooks.decide) {
        s->cfg->hooks.decide(s->cfg->hooks.ctx, &req, &d);
    } else {
        d.status = 503;
        snprintf(d.message, sizeof d.message, "no scheduler");
    }
    d.message[sizeof d.message - 1] = '\0';
    d.reason[sizeof d.reason - 1] = '\0';
    d.endpoint[sizeof d.endpoint - 1] = '\0';
    d.prefiller[sizeof d.prefiller - 1] = '\0';
    d.encoders[sizeof d.encoders - 1] = '\0';
    d.dp_rank[sizeof d.dp_rank - 1] = '\0';
    if (d.status == 0 && d.token) {
        s->has_token = true;
        s->token = d.token;
    }
    if (d.status == 0 && !d.endpoint[0]) {
        d.status = 500;
        snprintf(d.message, sizeof d.message, "the scheduler picked no endpoint");
    }
    if (d.status != 0) {
        int code = d.status >= 200 && d.status <= 599 ? d.status : 500;
        emit_immediate(s, code, d.message[0] ? d.message : "request refused", d.reason);
        drop_request(s);
        return XP_FINISH;
    }

    s->routed = true;
    s->phase = XP_PH_RESPONSE;
    struct hmut h;
    hmut_init(&h);
    hmut_set(&h, ENDPOINT_KEY, d.endpoint);
    char clen[24];
    bool with_body = how == ROUTE_DUPLEX || (how == ROUTE_BUFFERED_BODY && s->body_eos);
    if (with_body) {
        snprintf(clen, sizeof clen, "%zu", s->body.len);
        hmut_set(&h, "content-length", clen);
    }
    if (d.prefiller[0])
        hmut_set(&h, "x-prefiller-host-port", d.prefiller);
    if (d.encoders[0])
        hmut_set(&h, "x-encoder-hosts-ports", d.encoders);
    if (d.dp_rank[0])
        hmut_set(&h, "x-data-parallel-host-port", d.dp_rank);
    if (s->request_id_made)
        hmut_set(&h, "x-request-id", s->request_id);
    struct lbmeta md;
    lbmeta_init(&md, d.endpoint);

    common_t c;
    envoy__service__ext_proc__v3__common_response__init(&c);
    c.header_mutation = &h.m;
    c.clear_route_cache = 1;
    bmut_t bm;
    headers_resp_t hr;
    body_resp_t br;
    trailers_resp_t tr;
    presp_t r;
    envoy__service__ext_proc__v3__processing_response__init(&r);
    r.dynamic_metadata = &md.top;
    switch (how) {
    case ROUTE_HEADERS:
    case ROUTE_DUPLEX:
        envoy__service__ext_proc__v3__headers_response__init(&hr);
        hr.response = &c;
        r.response_case = RESP(REQUEST_HEADERS);
        r.request_headers = &hr;
        break;
    case ROUTE_BUFFERED_BODY:
        if (s->body_eos) {
            envoy__service__ext_proc__v3__body_mutation__init(&bm);
            bm.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_BODY;
            bm.body.data = (uint8_t *)s->body.data;
            bm.body.len = s->body.len;
            c.body_mutation = &bm;
        }
        envoy__service__ext_proc__v3__body_response__init(&br);
        br.response = &c;
        r.response_case = RESP(REQUEST_BODY);
        r.request_body = &br;
        break;
    case ROUTE_TRAILERS_ONLY:
        envoy__service__ext_proc__v3__trailers_response__init(&tr);
        r.response_case = RESP(REQUEST_TRAILERS);
        r.request_trailers = &tr;
        break;
    }
    emit(s, &r);
    if (how == ROUTE_DUPLEX) {
        if (!s->trailers || s->body.len)
            emit_streamed(s, RESP(REQUEST_BODY), (const uint8_t *)s->body.data, s->body.len,
                          !s->trailers);
        if (s->trailers)
            emit_continue(s, RESP(REQUEST_TRAILERS));
    }
    drop_request(s);
    return XP_CONTINUE;
}

static enum xp_action body_too_large(struct xp_stream *s)
{
    char msg[96];
    snprintf(msg, sizeof msg, "request body exceeds %zu bytes", s->cfg->max_body_bytes);
    emit_immediate(s, 413, msg, NULL);
    drop_request(s);
    return XP_FINISH;
}

static enum xp_action on_request_headers(struct xp_stream *s,
                                         const Envoy__Service__ExtProc__V3__HttpHeaders *h)
{
    if (s->phase != XP_PH_HEADERS)
        return fail(s, "request_headers twice");
    take_headers(s, h ? h->headers : NULL);
    if ((h && h->end_of_stream) || s->req_mode == XP_REQ_HEADERS_ONLY)
        return decide_and_reply(s, ROUTE_HEADERS);
    s->phase = XP_PH_BODY;
    if (s->req_mode == XP_REQ_BUFFERED) {
        /* Envoy waits for this before it sends the body. */
        common_t c;
        envoy__service__ext_proc__v3__common_response__init(&c);
        c.clear_route_cache = 1;
        headers_resp_t hr;
        envoy__service__ext_proc__v3__headers_response__init(&hr);
        hr.response = &c;
        presp_t r;
        envoy__service__ext_proc__v3__processing_response__init(&r);
        r.response_case = RESP(REQUEST_HEADERS);
        r.request_headers = &hr;
        emit(s, &r);
    }
    return XP_CONTINUE;
}

static enum xp_action on_request_body(struct xp_stream *s,
                                      const Envoy__Service__ExtProc__V3__HttpBody *b)
{
    static const Envoy__Service__ExtProc__V3__HttpBody empty =
        ENVOY__SERVICE__EXT_PROC__V3__HTTP_BODY__INIT;
    if (!b)
        b = &empty;
    switch (s->phase) {
    case XP_PH_HEADERS:
        return fail(s, "request_body before request_headers");
    case XP_PH_RESPONSE:
        /* STREAMED mode wants one reply per chunk; in the other modes this is Envoy's
         * duplicated end-of-stream chunk (GIE #2988) or a late chunk: ignored. */
        if (s->req_mode == XP_REQ_HEADERS_ONLY)
            emit_continue(s, RESP(REQUEST_BODY));
        return XP_CONTINUE;
    default:
        break;
    }
    if (s->cfg->max_body_bytes && b->body.len > s->cfg->max_body_bytes - s->body.len)
        return body_too_large(s);
    if (b->body.len)
        buf_append(&s->body, b->body.data, b->body.len);
    if (s->req_mode == XP_REQ_BUFFERED) {
        /* One message: the whole body, or (BUFFERED_PARTIAL) its first part. */
        s->body_eos = b->end_of_stream;
        return decide_and_reply(s, ROUTE_BUFFERED_BODY);
    }
    if (!b->end_of_stream)
        return XP_CONTINUE;
    s->body_eos = true;
    return decide_and_reply(s, ROUTE_DUPLEX);
}

static enum xp_action on_request_trailers(struct xp_stream *s)
{
    switch (s->phase) {
    case XP_PH_HEADERS:
        return fail(s, "request_trailers before request_headers");
    case XP_PH_BODY:
        s->trailers = true;
        return decide_and_reply(s,
                                s->req_mode == XP_REQ_DUPLEX ? ROUTE_DUPLEX : ROUTE_TRAILERS_ONLY);
    default:
        emit_continue(s, RESP(REQUEST_TRAILERS));
        return XP_CONTINUE;
    }
}

/* {ns: {name: value, ...}, ...} from the hook's attributes, in the stream's arena. */
static pstruct_t *attrs_struct(struct xp_stream *s, const struct extproc_attrs *md)
{
    struct arena *a = &s->arena;
    pstruct_t *top = arena_alloc(a, sizeof *top);
    google__protobuf__struct__init(top);
    top->fields = arena_alloc(a, md->n * sizeof *top->fields);
    for (size_t i = 0; i < md->n; i++) {
        pstruct_t *ns = NULL;
        for (size_t k = 0; k < top->n_fields && !ns; k++)
            if (!strcmp(top->fields[k]->key, md->a[i].ns))
                ns = top->fields[k]->value->struct_value;
        if (!ns) {
            ns = arena_alloc(a, sizeof *ns);
            google__protobuf__struct__init(ns);
            ns->fields = arena_alloc(a, md->n * sizeof *ns->fields);
            pvalue_t *v = arena_alloc(a, sizeof *v);
            google__protobuf__value__init(v);
            v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
            v->struct_value = ns;
            pfield_t *f = arena_alloc(a, sizeof *f);
            google__protobuf__struct__fields_entry__init(f);
            f->key = arena_strdup(a, md->a[i].ns);
            f->value = v;
            top->fields[top->n_fields++] = f;
        }
        pvalue_t *v = arena_alloc(a, sizeof *v);
        google__protobuf__value__init(v);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = md->a[i].value;
        pfield_t *f = arena_alloc(a, sizeof *f);
        google__protobuf__struct__fields_entry__init(f);
        f->key = arena_strdup(a, md->a[i].name);
        f->value = v;
        ns->fields[ns->n_fields++] = f;
    }
    return top;
}

/* Before the reply to this response message is emitted, so attributes ride on it. */
static void notify_response(struct xp_stream *s, const char *chunk, size_t len, bool eos)
{
    if (eos)
        s->resp_done = true;
    if (s->cfg->hooks.on_response) {
        struct extproc_attrs md;
        md.n = 0;
        s->cfg->hooks.on_response(s->cfg->hooks.ctx, s->token, s->resp_status, chunk, len, eos,
                                  eos ? &md : NULL);
        if (eos && md.n > 0 && md.n <= EXTPROC_MAX_ATTRS)
            s->resp_md = attrs_struct(s, &md);
    }
}

/* The envoy.lb namespace of a message's metadata_context (borrowed from md). */
static void lb_meta(const metadata_t *md, struct extproc_lb_meta *out)
{
    out->has_lb = false;
    out->served = NULL;
    for (size_t i = 0; md && i < md->n_filter_metadata; i++) {
        const Envoy__Config__Core__V3__Metadata__FilterMetadataEntry *e = md->filter_metadata[i];
        if (!e || !e->key || strcmp(e->key, LB_NS) || !e->value)
            continue;
        out->has_lb = true;
        for (size_t j = 0; j < e->value->n_fields; j++) {
            const pfield_t *f = e->value->fields[j];
            if (f && f->key && !strcmp(f->key, SERVED_KEY) && f->value &&
                f->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
                f->value->string_value)
                out->served = f->value->string_value;
        }
        return;
    }
}

/* The response_headers reply: CONTINUE, with the hook's headers as a mutation. */
static void reply_response_headers(struct xp_stream *s, const metadata_t *md)
{
    struct extproc_resp_headers rh;
    rh.n = 0;
    if (s->cfg->hooks.on_response_headers) {
        struct extproc_lb_meta lb;
        lb_meta(md, &lb);
        s->cfg->hooks.on_response_headers(s->cfg->hooks.ctx, s->token, &lb, &rh);
    }
    if (rh.n == 0 || rh.n > EXTPROC_MAX_RESP_HEADERS) {
        emit_continue(s, RESP(RESPONSE_HEADERS));
        return;
    }
    struct hmut h;
    hmut_init(&h);
    for (size_t i = 0; i < rh.n; i++) {
        rh.h[i].key[sizeof rh.h[i].key - 1] = '\0';
        rh.h[i].value[sizeof rh.h[i].value - 1] = '\0';
        hmut_set(&h, rh.h[i].key, rh.h[i].value);
    }
    common_t c;
    envoy__service__ext_proc__v3__common_response__init(&c);
    c.header_mutation = &h.m;
    headers_resp_t hr;
    envoy__service__ext_proc__v3__headers_response__init(&hr);
    hr.response = &c;
    presp_t r;
    envoy__service__ext_proc__v3__processing_response__init(&r);
    r.response_case = RESP(RESPONSE_HEADERS);
    r.response_headers = &hr;
    emit(s, &r);
}

static enum xp_action on_response_headers(struct xp_stream *s,
                                          const Envoy__Service__ExtProc__V3__HttpHeaders *h,
                                          const metadata_t *md)
{
    if (s->phase != XP_PH_RESPONSE)
        return fail(s, "response_headers before the request was answered");
    const header_map_t *hm = h ? h->headers : NULL;
    for (size_t i = 0; hm && i < hm->n_headers; i++) {
        const header_value_t *hv = hm->headers[i];
        if (!hv || !hv->key || strcmp(hv->key, ":status"))
            continue;
        char tmp[8];
        size_t n = hv->raw_value.len ? hv->raw_value.len : (hv->value ? strlen(hv->value) : 0);
        const void *p = hv->raw_value.len ? (const void *)hv->raw_value.data : hv->value;
        if (n >= sizeof tmp)
            n = sizeof tmp - 1;
        if (n)
            memcpy(tmp, p, n);
        tmp[n] = '\0';
        s->resp_status = atoi(tmp);
        break;
    }
    notify_response(s, NULL, 0, h && h->end_of_stream);
    reply_response_headers(s, md);
    return XP_CONTINUE;
}

static enum xp_action on_response_body(struct xp_stream *s,
                                       const Envoy__Service__ExtProc__V3__HttpBody *b)
{
    if (s->phase != XP_PH_RESPONSE)
        return fail(s, "response_body before the request was answered");
    const uint8_t *p = b ? b->body.data : NULL;
    size_t n = b ? b->body.len : 0;
    bool eos = b && b->end_of_stream;
    notify_response(s, (const char *)p, n, eos);
    if (s->resp_duplex)
        emit_streamed(s, RESP(RESPONSE_BODY), p, n, eos);
    else
        emit_continue(s, RESP(RESPONSE_BODY));
    return XP_CONTINUE;
}

static enum xp_action on_response_trailers(struct xp_stream *s)
{
    if (s->phase != XP_PH_RESPONSE)
        return fail(s, "response_trailers before the request was answered");
    notify_response(s, NULL, 0, true);
    emit_continue(s, RESP(RESPONSE_TRAILERS));
    return XP_CONTINUE;
}

enum xp_action xp_stream_feed(struct xp_stream *s, const uint8_t *msg, size_t len)
{
    if (s->phase == XP_PH_DONE)
        return s->failed ? XP_FAIL : XP_FINISH;
    preq_t *r = envoy__service__ext_proc__v3__processing_request__unpack(NULL, len, msg);
    if (!r)
        return fail(s, "undecodable ProcessingRequest");
    if (r->observability_mode)
        s->observe = true;
    if (s->req_mode == XP_REQ_UNSET)
        set_modes(s, r->protocol_config);
    take_metadata(s, r->metadata_context);
    enum xp_action a = XP_CONTINUE;
    switch (r->request_case) {
    case REQ(REQUEST_HEADERS):
        a = on_request_headers(s, r->request_headers);
        break;
    case REQ(REQUEST_BODY):
        a = on_request_body(s, r->request_body);
        break;
    case REQ(REQUEST_TRAILERS):
        a = on_request_trailers(s);
        break;
    case REQ(RESPONSE_HEADERS):
        a = on_response_headers(s, r->response_headers, r->metadata_context);
        break;
    case REQ(RESPONSE_BODY):
        a = on_response_body(s, r->response_body);
        break;
    case REQ(RESPONSE_TRAILERS):
        a = on_response_trailers(s);
        break;
    default: /* nothing but metadata: nothing to answer */
        break;
    }
    envoy__service__ext_proc__v3__processing_request__free_unpacked(r, NULL);
    return a;
}

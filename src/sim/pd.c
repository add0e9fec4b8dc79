/* P/D in the sim, following vLLM's NixlConnector protocol end to end.
 *
 * Prefill side (kv_transfer_params.do_remote_decode): the request runs with one output
 * token; when it stopped on that cap its blocks stay pinned and the response carries
 * do_remote_prefill params naming them. The pin lasts until a decoder pulls the blocks
 * (POST /kv/pull on this server, our stand-in for NIXL's side channel) or
 * --kv-hold-timeout passes.
 *
 * Decode side (do_remote_prefill with every remote_* field): once the engine admits the
 * sequence it asks for the KV (on_kv_load); we pull from the prefiller, wait the modeled
 * transfer time, and hand the blocks to the engine, which counts them as computed and
 * cached. Missing or invalid params, or a failed pull, fall back to a local prefill
 * with a warning and a counter, as vLLM does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/log.h"
#include "sim/sim_internal.h"

#define LOG_C "sim.pd"

static bool is_true(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

bool sim_pd_prepare(struct sim_req *r)
{
    const json_t *kv = r->oreq.kv_transfer_params;
    if (!kv)
        return true;
    if (is_true(kv, "do_remote_decode")) {
        if (r->stream) {
            sim_req_fail(r, 400, "stream",
                         "streaming is not supported with kv_transfer_params.do_remote_decode "
                         "(the prefill leg must be non-streaming)");
            return false;
        }
        if (r->oreq.n_prompts != 1) {
            sim_req_fail(r, 400, "prompt", "P/D supports one prompt per request");
            return false;
        }
        r->pd = SIM_PD_PREFILL;
        return true;
    }
    if (!is_true(kv, "do_remote_prefill"))
        return true;
    if (r->oreq.n_prompts != 1) {
        sim_req_fail(r, 400, "prompt", "P/D supports one prompt per request");
        return false;
    }
    const json_t *host = json_object_get(kv, "remote_host");
    const json_t *port = json_object_get(kv, "remote_port");
    const json_t *rid = json_object_get(kv, "remote_request_id");
    const json_t *eid = json_object_get(kv, "remote_engine_id");
    const json_t *blocks = json_object_get(kv, "remote_block_ids");
    const char *why = NULL;
    if (!json_is_string(host))
        why = "remote_host";
    else if (!json_is_integer(port) || json_integer_value(port) <= 0 ||
             json_integer_value(port) > 65535)
        why = "remote_port";
    else if (!json_is_string(rid))
        why = "remote_request_id";
    else if (!json_is_string(eid))
        why = "remote_engine_id";
    else if (!json_is_array(blocks))
        why = "remote_block_ids";
    if (why) {
        LOG_W(LOG_C,
              "request %s: do_remote_prefill without a valid %s; prefilling locally",
              r->request_id, why);
        sim_metrics_count(r->s->m.pd_fallbacks, "invalid_params");
        return true;
    }
    r->pd = SIM_PD_DECODE;
    r->remote_host = json_string_value(host);
    r->remote_port = (int)json_integer_value(port);
    r->remote_request_id = json_string_value(rid);
    r->remote_engine_id = json_string_value(eid);
    r->remote_block_ids = (json_t *)blocks;
    return true;
}

/* --- decode side ----------------------------------------------------------------- */

static void pull_body(struct sim_req *r, struct buf *b)
{
    buf_append_str(b, "{\"remote_request_id\":");
    json_quote(b, r->remote_request_id, strlen(r->remote_request_id));
    buf_append_str(b, ",\"remote_engine_id\":");
    json_quote(b, r->remote_engine_id, strlen(r->remote_engine_id));
    buf_append_str(b, ",\"remote_block_ids\":");
    json_dump_to(b, r->remote_block_ids);
    buf_append_char(b, '}');
}

static void on_transfer_done(uv_timer_t *t)
{
    struct sim_req *r = t->data;
    LOG_D(LOG_C, "request %s: KV transfer of %u tokens done", r->request_id, r->pull_tokens);
    r->choices[0].cached_tokens += r->pull_tokens; /* loaded, not computed: vLLM counts
                                                      external hits as cached */
    sim_engine_kv_loaded(r->rank->engine, r->pull_seq, true);
    sim_driver_kick(r->s);
}

static void on_pull_done(enum http_call_error err, int status, const char *body, size_t len,
                         void *ctx)
{
    struct sim_req *r = ctx;
    struct sim_server *s = r->s;
    r->pull = NULL;
    if (err != HTTP_CALL_OK || status != 200) {
        LOG_W(LOG_C,
              "request %s: KV pull from %s:%d failed (%s, status %d: %.*s); prefilling locally",
              r->request_id, r->remote_host, r->remote_port,
              err ? http_call_error_str(err) : "http error", status, (int)(len > 200 ? 200 : len),
              body ? body : "");
        sim_metrics_count(s->m.kv_pulls, "failed");
        sim_metrics_count(s->m.pd_fallbacks, "pull_failed");
        sim_engine_kv_loaded(r->rank->engine, r->pull_seq, false);
        sim_driver_kick(s);
        return;
    }
    sim_metrics_count(s->m.kv_pulls, "ok");
    /* The modeled transfer: only the tokens this pod did not already have move. */
    double bytes = (double)r->pull_tokens * s->cfg->kv_bytes_per_token;
    double secs = (bytes / s->cfg->kv_transfer_bandwidth + s->cfg->kv_transfer_latency_s) *
                  s->cfg->engine.time_scale;
    uint64_t ms = (uint64_t)(secs * 1e3 + 0.5);
    uv_timer_start(&r->timer, on_transfer_done, ms, 0);
}

/* POSTs /kv/pull to the prefiller. The body is copied by the client. */
static struct http_call *post_pull(struct sim_req *r, http_fetch_done_fn done, void *ctx)
{
    struct buf b = BUF_INIT;
    pull_body(r, &b);
    static const struct http_header hdr[] = {
        {"Content-Type", "application/json", 12, 16},
    };
    struct http_call_request req = {
        .method = "POST",
        .host = r->remote_host,
        .port = r->remote_port,
        .path = "/kv/pull",
        .headers = hdr,
        .n_headers = 1,
        .body = b.data,
        .body_len = b.len,
        .timeout_ms = 10000,
    };
    struct http_call *call = http_fetch(r->s->client, &req, 1 << 20, done, ctx);
    buf_free(&b);
    return call;
}

void sim_pd_on_kv_load(struct sim_req *r, uint64_t seq, uint32_t tokens)
{
    r->pull_seq = seq;
    r->pull_tokens = tokens;
    LOG_D(LOG_C, "request %s: pulling %u tokens of KV from %s:%d", r->request_id, tokens,
          r->remote_host, r->remote_port);
    r->pull = post_pull(r, on_pull_done, r);
}

void sim_pd_cancel(struct sim_req *r)
{
    if (r->pull) {
        http_call_cancel(r->pull);
        r->pull = NULL;
    }
}

/* --- prefill side: pins ---------------------------------------------------------- */

static size_t pin_bucket(const char *rid)
{
    return hash_str(rid, 0) % SIM_PIN_BUCKETS;
}

static void pin_free_cb(uv_handle_t *h)
{
    struct sim_pin *p = h->data;
    free(p->request_id);
    free(p);
}

/* Unlinks and releases a pin; its blocks go back to the cache (still cached). */
static void pin_drop(struct sim_server *s, struct sim_pin *p)
{
    struct sim_pin **pp = &s->pins[pin_bucket(p->request_id)];
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    s->n_pins--;
    metrics_gauge_set(s->m.pinned, (double)s->n_pins);
    sim_engine_unpin(p->rank->engine, p->seq);
    uv_timer_stop(&p->hold);
    uv_close((uv_handle_t *)&p->hold, pin_free_cb);
    sim_driver_kick(s); /* the released blocks may let a waiting request in */
}

static void on_hold_timeout(uv_timer_t *t)
{
    struct sim_pin *p = t->data;
    LOG_W(LOG_C, "request %s: KV blocks not pulled within --kv-hold-timeout; releasing",
          p->request_id);
    sim_metrics_count(p->s->m.kv_pulls, "expired");
    pin_drop(p->s, p);
}

const char *sim_pd_pin(struct sim_req *r, struct sim_choice *c)
{
    struct sim_server *s = r->s;
    if (c->finish != SIM_FINISH_LENGTH || !c->seq) {
        /* vLLM returns params only when the prefill stopped on the 1-token cap. */
        if (c->seq)
            sim_engine_unpin(r->rank->engine, c->seq);
        c->seq = 0;
        return NULL;
    }
    size_t n = sim_engine_seq_blocks(r->rank->engine, c->seq, NULL, 0);
    uint32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    sim_engine_seq_blocks(r->rank->engine, c->seq, ids, n);

    struct sim_pin *p = xcalloc(1, sizeof *p);
    p->s = s;
    p->rank = r->rank;
    /* Unique even when clients reuse x-request-id (the two legs of one P/D request share
     * it by design), so one decoder's pull never releases another request's blocks. */
    p->request_id = xasprintf("%s-%llu", r->id, (unsigned long long)++s->n_pins_made);
    p->seq = c->seq;
    p->n_blocks = (uint32_t)n;
    c->seq = 0; /* the pin owns it now */
    uv_timer_init(s->loop, &p->hold);
    p->hold.data = p;
    uv_timer_start(&p->hold, on_hold_timeout, (uint64_t)(s->cfg->kv_hold_timeout_s * 1e3), 0);
    size_t b = pin_bucket(p->request_id);
    p->next = s->pins[b];
    s->pins[b] = p;
    s->n_pins++;
    metrics_gauge_set(s->m.pinned, (double)s->n_pins);

    struct buf j = BUF_INIT;
    buf_append_str(&j, "{\"do_remote_prefill\":true,\"do_remote_decode\":false,"
                       "\"remote_engine_id\":");
    json_quote(&j, s->engine_id, strlen(s->engine_id));
    buf_append_str(&j, ",\"remote_block_ids\":[");
    for (size_t i = 0; i < n; i++)
        buf_printf(&j, i ? ",%u" : "%u", ids[i]);
    free(ids);
    buf_append_str(&j, "],\"remote_request_id\":");
    json_quote(&j, p->request_id, strlen(p->request_id));
    buf_append_str(&j, ",\"remote_host\":");
    json_quote(&j, s->cfg->advertise_host, strlen(s->cfg->advertise_host));
    buf_printf(&j, ",\"remote_port\":%d,\"tp_size\":1}", s->cfg->port);
    const char *out = arena_strndup(&r->arena, j.data, j.len);
    buf_free(&j);
    LOG_I(LOG_C, "request %s: prefill done, %zu KV blocks pinned for the decoder as %s", r->id,
          n, p->request_id);
    return out;
}

void sim_pd_handle_pull(struct sim_server *s, struct http_exchange *ex)
{
    const struct http_request *q = http_exchange_request(ex);
    struct errinfo je;
    json_t *root = json_parse(q->body, q->body_len, &je);
    const char *rid = NULL, *eid = NULL;
    struct openai_error err = {0};
    struct buf b = BUF_INIT;
    int status = 200;
    if (!root || json_get_str(root, "remote_request_id", &rid, &je) <= 0) {
        openai_error_set(&err, 400, "remote_request_id", "'remote_request_id' is required");
    } else if (json_get_str(root, "remote_engine_id", &eid, &je) < 0) {
        openai_error_set(&err, 400, "remote_engine_id", "%s", je.msg);
    } else if (eid && strcmp(eid, s->engine_id) != 0) {
        openai_error_set(&err, 404, "remote_engine_id",
                         "engine id '%s' is not this engine (%s)", eid, s->engine_id);
    } else {
        struct sim_pin *p = s->pins[pin_bucket(rid)];
        while (p && strcmp(p->request_id, rid) != 0)
            p = p->next;
        if (!p) {
            openai_error_set(&err, 404, "remote_request_id",
                             "no pinned KV for request '%s' (already pulled or expired)", rid);
        } else {
            uint32_t bs = s->cfg->engine.block_size;
            buf_printf(&b, "{\"blocks\":%u,\"block_size\":%u,\"bytes\":%.0f}", p->n_blocks, bs,
                       (double)p->n_blocks * bs * s->cfg->kv_bytes_per_token);
            LOG_I(LOG_C, "request %s: %u KV blocks pulled by %s; released", rid, p->n_blocks,
                  q->peer);
            pin_drop(s, p);
        }
    }
    if (err.status) {
        status = err.status;
        openai_error_body(&b, &err);
    }
    if (s->cfg->pod_name)
        http_add_header(ex, "x-inference-pod", s->cfg->pod_name);
    http_respond(ex, status, "application/json", b.data, b.len);
    buf_free(&b);
    json_decref(root);
}

void sim_pd_free_all(struct sim_server *s)
{
    for (size_t i = 0; i < SIM_PIN_BUCKETS; i++) {
        while (s->pins[i])
            pin_drop(s, s->pins[i]);
    }
}

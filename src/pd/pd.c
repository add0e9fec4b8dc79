/* P/D coordination: the nixlv2 connector and the buffered prefill leg (see pd.h). */
#include "openai/openai.h"
#include "pd/pd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/json.h"

/* ---- nixlv2 (vLLM's NixlConnector) ---------------------------------------------------- */

static bool nixl_prefill_body(const char *path, const char *body, size_t len, struct buf *out,
                              char *err, size_t errlen)
{
    struct errinfo je;
    json_t *root = json_parse(body, len, &je);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "%s", root ? "request body must be a JSON object" : je.msg);
        json_decref(root);
        return false;
    }
    json_t *kv = json_object();
    json_object_set_new(kv, "do_remote_decode", json_true());
    json_object_set_new(kv, "do_remote_prefill", json_false());
    json_object_set_new(kv, "remote_engine_id", json_null());
    json_object_set_new(kv, "remote_block_ids", json_null());
    json_object_set_new(kv, "remote_host", json_null());
    json_object_set_new(kv, "remote_port", json_null());
    json_object_set_new(root, "kv_transfer_params", kv);
    json_object_set_new(root, "stream", json_false());
    json_object_del(root, "stream_options");
    const struct openai_route_info *rt = openai_route_find(NULL, path);
    if (rt && rt->route == OPENAI_ROUTE_RESPONSES) {
        json_object_set_new(root, "max_output_tokens", json_integer(1));
    } else {
        json_object_set_new(root, "max_tokens", json_integer(1));
        json_object_set_new(root, "max_completion_tokens", json_integer(1));
    }
    json_dump_to(out, root);
    json_decref(root);
    return true;
}

static bool nixl_decode_body(const char *body, size_t len, const char *resp, size_t resp_len,
                             struct buf *out, const char **why)
{
    struct errinfo je;
    json_t *r = json_parse(resp, resp_len, &je);
    json_t *kv = json_is_object(r) ? json_object_get(r, "kv_transfer_params") : NULL;
    if (!json_is_object(kv)) {
        *why = r ? "the prefill response has no kv_transfer_params (vLLM returns them only "
                   "when the prefill stopped on its 1-token cap)"
                 : "the prefill response is not JSON";
        json_decref(r);
        return false;
    }
    json_t *root = json_parse(body, len, &je);
    if (!json_is_object(root)) {
        *why = "request body must be a JSON object";
        json_decref(root);
        json_decref(r);
        return false;
    }
    json_object_set(root, "kv_transfer_params", kv);
    json_dump_to(out, root);
    json_decref(root);
    json_decref(r);
    return true;
}

static const struct pd_connector connectors[] = {
    {"nixlv2", nixl_prefill_body, nixl_decode_body},
};

const struct pd_connector *pd_connector_find(const char *name)
{
    for (size_t i = 0; i < sizeof connectors / sizeof *connectors; i++)
        if (!strcmp(connectors[i].name, name ? name : "nixlv2"))
            return &connectors[i];
    return NULL;
}

/* ---- the prefill leg ------------------------------------------------------------------ */

struct pd_prefill {
    const struct pd_connector *conn;
    struct http_call *call;
    const char *body; /* the client's, borrowed until done or cancel */
    size_t body_len;
    uint64_t t0;
    pd_prefill_done_fn done;
    void *ctx;
};

#define PD_MAX_PREFILL_RESPONSE (8u << 20)

static void on_fetched(enum http_call_error err, int status, const char *resp, size_t len,
                       void *ctx)
{
    struct pd_prefill *p = ctx;
    struct pd_prefill_result res = {.status = status,
                                    .seconds = (double)(clock_monotonic_ns() - p->t0) / 1e9};
    struct buf decode = BUF_INIT;
    char detail[256];
    if (err != HTTP_CALL_OK) {
        res.outcome = PD_FALLBACK;
        res.reason = err == HTTP_CALL_ECONNECT    ? "prefill_unreachable"
                     : err == HTTP_CALL_ETIMEOUT || err == HTTP_CALL_EIDLE ? "prefill_timeout"
                     : err == HTTP_CALL_ETOOBIG  ? "prefill_too_big"
                     : err == HTTP_CALL_EPROTO   ? "prefill_bad_response"
                                                  : "prefill_reset";
        snprintf(detail, sizeof detail, "prefill leg failed: %s", http_call_error_str(err));
    } else if (status >= 400 && status < 500) {
        res.outcome = PD_CLIENT_ERROR;
        res.body = resp;
        res.body_len = len;
        snprintf(detail, sizeof detail, "prefill answered %d", status);
    } else if (status < 200 || status > 299) {
        res.outcome = PD_FALLBACK;
        res.reason = status >= 500 ? "prefill_5xx" : "prefill_unexpected_status";
        snprintf(detail, sizeof detail, "prefill answered %d", status);
    } else {
        const char *why = NULL;
        if (p->conn->decode_body(p->body, p->body_len, resp, len, &decode, &why)) {
            res.outcome = PD_OK;
            res.body = decode.data;
            res.body_len = decode.len;
            snprintf(detail, sizeof detail, "prefill done");
        } else {
            res.outcome = PD_FALLBACK;
            res.reason = "no_kv_params";
            snprintf(detail, sizeof detail, "%s", why);
        }
    }
    res.detail = detail;
    p->call = NULL;
    p->done(&res, p->ctx);
    buf_free(&decode);
    free(p);
}

struct pd_prefill *pd_prefill_start(struct http_client *client, const struct pd_connector *c,
                                    const char *host, int port, const char *path,
                                    const struct http_header *headers, size_t n_headers,
                                    const char *body, size_t body_len, uint64_t timeout_ms,
                                    pd_prefill_done_fn done, void *ctx)
{
    struct pd_prefill *p = xcalloc(1, sizeof *p);
    p->conn = c;
    p->body = body;
    p->body_len = body_len;
    p->done = done;
    p->ctx = ctx;
    p->t0 = clock_monotonic_ns();
    struct buf pb = BUF_INIT;
    char err[256];
    if (!c->prefill_body(path, body, body_len, &pb, err, sizeof err)) {
        /* The decode engine will answer the bad body itself: not P/D's business. Send
         * it to the prefill as is, so its 400 reaches the client. */
        buf_free(&pb);
        buf_append(&pb, body, body_len);
    }
    struct http_call_request req = {.method = "POST",
                                    .host = host,
                                    .port = port,
                                    .path = path,
                                    .headers = headers,
                                    .n_headers = n_headers,
                                    .body = pb.data,
                                    .body_len = pb.len,
                                    .timeout_ms = timeout_ms};
    p->call = http_fetch(client, &req, PD_MAX_PREFILL_RESPONSE, on_fetched, p);
    buf_free(&pb);
    return p;
}

void pd_prefill_cancel(struct pd_prefill *p)
{
    if (!p)
        return;
    if (p->call)
        http_call_cancel(p->call);
    free(p);
}

bool pd_parse_prefiller(const char *value, bool sample, char *host, size_t host_cap, int *port)
{
    if (!value)
        return false;
    /* Pick one of a comma-separated list. */
    const char *items[16];
    size_t lens[16], n = 0;
    const char *s = value;
    while (*s && n < 16) {
        while (*s == ' ')
            s++;
        const char *e = strchr(s, ',');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        while (l && s[l - 1] == ' ')
            l--;
        if (l) {
            items[n] = s;
            lens[n++] = l;
        }
        if (!e)
            break;
        s = e + 1;
    }
    if (!n)
        return false;
    static _Thread_local uint64_t rs;
    if (!rs)
        rs = clock_monotonic_ns() | 1;
    size_t k = sample ? (size_t)hash_rand_below(&rs, n) : 0;
    char tmp[300];
    if (lens[k] >= sizeof tmp)
        return false;
    memcpy(tmp, items[k], lens[k]);
    tmp[lens[k]] = '\0';
    const char *hp = tmp;
    if (!strncasecmp(hp, "http://", 7))
        hp += 7;
    else if (!strncasecmp(hp, "https://", 8))
        hp += 8;
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp)
        return false;
    char *end;
    long pv = strtol(colon + 1, &end, 10);
    if ((*end && *end != '/') || pv <= 0 || pv > 65535)
        return false;
    size_t hl = (size_t)(colon - hp);
    if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']') {
        hp++;
        hl -= 2;
    } else if (memchr(hp, ':', hl) || memchr(hp, '[', hl) || memchr(hp, ']', hl)) {
        return false; /* an IPv6 address must be bracketed: "[::1]:8000" */
    }
    if (hl == 0 || hl >= host_cap)
        return false;
    memcpy(host, hp, hl);
    host[hl] = '\0';
    *port = (int)pv;
    return true;
}

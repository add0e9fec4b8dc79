/* P/D coordination: connectors (how the two legs' bodies are built) and the prefill
 * leg, shared by `tandem sidecar` and `tandem router --pd-mode router`.
 *
 * Flow (pd.md): pd_prefill_start sends the prefill leg (the connector's prefill body),
 * buffers the answer and calls back once with one of:
 *   PD_OK            the decode leg's body (client body + the prefill's KV params);
 *   PD_CLIENT_ERROR  the prefill said 4xx: give the client that status and body;
 *   PD_FALLBACK      5xx, timeout, unreachable or no KV params: decode the original
 *                    body in place, and say why (reason, for logs and metrics).
 * The caller then runs the decode leg with its own streaming proxy.
 *
 * Ownership: pd_prefill_start copies what it needs; the result passed to the callback
 * (bodies included) is valid only during the callback. pd_prefill_cancel stops the leg
 * (the connection is closed, so the prefill engine aborts) and no callback fires. */
#ifndef TANDEM_PD_PD_H
#define TANDEM_PD_PD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/http.h"
#include "net/http_client.h"

/* A KV connector: one row per protocol (nixlv2 first; sglang bootstrap, shared storage
 * later). */
struct pd_connector {
    const char *name;
    /* The prefill leg's body from the client's (path says which API). False with err
     * when the body is not a JSON object. */
    bool (*prefill_body)(const char *path, const char *body, size_t len, struct buf *out,
                         char *err, size_t errlen);
    /* The decode leg's body from the client's body and the prefill's response. False
     * (with why) when the response carries no usable KV params. */
    bool (*decode_body)(const char *body, size_t len, const char *resp, size_t resp_len,
                        struct buf *out, const char **why);
};

/* By name ("nixlv2"); NULL when unknown. */
const struct pd_connector *pd_connector_find(const char *name);

enum pd_outcome {
    PD_OK = 0,
    PD_CLIENT_ERROR,
    PD_FALLBACK,
};

struct pd_prefill_result {
    enum pd_outcome outcome;
    int status;              /* the prefill's HTTP status, 0 when none */
    const char *body;        /* PD_OK: the decode body; PD_CLIENT_ERROR: the prefill's */
    size_t body_len;
    const char *reason;      /* PD_FALLBACK: prefill_5xx, prefill_timeout,
                                prefill_unreachable, prefill_reset, no_kv_params,
                                bad_request_body */
    const char *detail;      /* human text for the log */
    double seconds;          /* duration of the prefill leg */
};

typedef void (*pd_prefill_done_fn)(const struct pd_prefill_result *res, void *ctx);

struct pd_prefill;

/* Starts the prefill leg to host:port with the client's path, headers (forwarded as
 * given) and body. Never calls back synchronously. */
struct pd_prefill *pd_prefill_start(struct http_client *client, const struct pd_connector *c,
                                    const char *host, int port, const char *path,
                                    const struct http_header *headers, size_t n_headers,
                                    const char *body, size_t body_len, uint64_t timeout_ms,
                                    pd_prefill_done_fn done, void *ctx);
void pd_prefill_cancel(struct pd_prefill *p);

/* Parses "host:port" / "http://host:port" (first of a comma-separated list, or a random
 * one with sample) into host and port. False on bad input. */
bool pd_parse_prefiller(const char *value, bool sample, char *host, size_t host_cap, int *port);

#endif

/* Envoy ext_proc v3 server (envoy.service.ext_proc.v3.ExternalProcessor/Process) and
 * grpc.health.v1.Health/Check, on the gRPC C core with protobuf-c (extproc.md). The
 * transport and the protocol's phase machine live here; what endpoint to pick is the
 * caller's (the router's scheduler), through struct extproc_hooks.
 *
 * Threads: `workers` completion-queue threads; a call stays on the thread that accepted
 * it. Hooks are called on those threads, concurrently: they must be thread-safe.
 *
 * Ownership: everything passed to a hook is borrowed for the duration of the call. */
#ifndef TANDEM_EXTPROC_EXTPROC_H
#define TANDEM_EXTPROC_EXTPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum extproc_body_mode {
    EXTPROC_MODE_AUTO = 0,      /* from protocol_config, else the configured default */
    EXTPROC_MODE_FULL_DUPLEX,   /* FULL_DUPLEX_STREAMED */
    EXTPROC_MODE_BUFFERED,      /* BUFFERED */
};

struct extproc_header {
    const char *key;   /* lower case, as Envoy sends it (":path", "content-type") */
    const char *value; /* NUL-terminated; raw_value when Envoy set it, else value */
};

/* One request, complete (headers and whole body), ready to be scheduled. */
struct extproc_request {
    const struct extproc_header *headers;
    size_t n_headers;
    const char *body; /* may contain NULs; not NUL-terminated */
    size_t body_len;
    /* envoy.lb.subset_hint -> x-gateway-destination-endpoint-subset */
    bool has_subset;
    const char *const *subset; /* "ip:port" strings */
    size_t n_subset;
    const char *request_id;    /* the x-request-id header, or one made up here */
};

struct extproc_decision {
    int status;          /* 0: route it; else the ImmediateResponse's HTTP status
                            (400 bad body, 429 shed, 503 no endpoint, 500 internal) */
    char message[512];   /* status != 0: the OpenAI error message */
    char reason[64];     /* status != 0: x-llm-d-request-dropped-reason value (optional) */
    char endpoint[1024]; /* status == 0: "ip:port[,ip:port...]" primary then fallbacks */
    char prefiller[300]; /* "" or x-prefiller-host-port (P/D disaggregation) */
    char dp_rank[300];   /* "" or x-data-parallel-host-port (data-parallel-profile-handler) */
    void *token;         /* opaque, handed back to release() when the stream ends */
    char encoders[1024]; /* "" or x-encoder-hosts-ports (E/P/D: "ip:port[,ip:port...]") */
};

/* Dynamic metadata a response-phase hook reports (request-attribute-reporter). */
#define EXTPROC_MAX_ATTRS 8
struct extproc_attrs {
    struct {
        char ns[64];
        char name[128];
        double value;
    } a[EXTPROC_MAX_ATTRS];
    size_t n;
};

/* Envoy's dynamic metadata on the response_headers message (its metadata_context):
 * whether filter_metadata has namespace "envoy.lb", and that namespace's
 * "x-gateway-destination-endpoint-served" string (NULL when absent or not a string). */
struct extproc_lb_meta {
    bool has_lb;
    const char *served;
};

/* Headers a response-headers hook sets on the response (header mutation of the
 * response_headers reply). */
#define EXTPROC_MAX_RESP_HEADERS 4
struct extproc_resp_headers {
    struct {
        char key[64];
        char value[512];
    } h[EXTPROC_MAX_RESP_HEADERS];
    size_t n;
};

struct extproc_hooks {
    /* Picks an endpoint for the request. Called once per stream that reaches EOS (or
     * trailers, or headers with end_of_stream). Fills *out. */
    void (*decide)(void *ctx, const struct extproc_request *req, struct extproc_decision *out);
    /* The stream that got decision `token` ended: completed (the gateway half-closed after
     * the response phase or the request phase) or cancelled (client gone, error).
     * Called exactly once per successful decide() with a non-NULL token. */
    void (*release)(void *ctx, void *token, bool cancelled);
    /* Response phase, optional: the response's status and each body chunk as it passes
     * (SSE usage accounting). At the end of the stream md is non-NULL: attributes added
     * there go out as dynamic metadata {ns: {name: value}} on the reply to that last
     * message. May be NULL. */
    void (*on_response)(void *ctx, void *token, int status, const char *chunk, size_t len,
                        bool end_of_stream, struct extproc_attrs *md);
    /* Response phase, optional: the response headers arrived, with Envoy's envoy.lb
     * metadata; headers added to out are set on the response (overwriting). May be NULL. */
    void (*on_response_headers)(void *ctx, void *token, const struct extproc_lb_meta *lb,
                                struct extproc_resp_headers *out);
    void *ctx;
};

struct extproc_config {
    const char *host;            /* "0.0.0.0" */
    int port;                    /* ext_proc, 9002; 0 = any free port (see extproc_port) */
    int health_port;             /* grpc.health.v1, 9003; 0 = any, -1 = on `port` only */
    bool tls;                    /* --secure-serving (default true, self-signed) */
    const char *cert_dir;        /* tls.crt + tls.key there, else a self-signed pair */
    int workers;                 /* completion-queue threads (>= 1) */
    enum extproc_body_mode mode; /* when the first message has no protocol_config */
    size_t max_body_bytes;       /* larger request bodies -> 413 ImmediateResponse */
};

struct extproc_server;

/* Binds, starts the threads. false with err (the port in use, a bad cert dir, ...). */
bool extproc_server_start(const struct extproc_config *cfg, const struct extproc_hooks *hooks,
                          struct extproc_server **out, char *err, size_t errlen);
int extproc_port(const struct extproc_server *s);        /* the bound ext_proc port */
int extproc_health_port(const struct extproc_server *s); /* the bound health port, or 0 */
/* Health answers NOT_SERVING for "readiness" until set true. */
void extproc_set_ready(struct extproc_server *s, bool ready);
/* Stops accepting, cancels streams (their tokens are released), joins the threads and
 * frees everything. */
void extproc_server_stop(struct extproc_server *s);

struct extproc_stats {
    uint64_t streams;   /* Process streams accepted */
    uint64_t decisions; /* decide() calls */
    uint64_t immediate; /* ImmediateResponses sent */
    uint64_t cancelled; /* streams cancelled by the client */
};
void extproc_get_stats(const struct extproc_server *s, struct extproc_stats *out);

#endif

/* Internal to src/extproc: the ext_proc phase machine of one Process stream, without
 * gRPC (extproc.md §2). It takes encoded ProcessingRequest messages one at a time and
 * queues encoded ProcessingResponse messages, in the order they must be sent. The
 * transport (server.c) moves bytes between it and a gRPC call; the unit test and the
 * fuzz target drive it directly.
 *
 * Not thread-safe: one stream is used by one thread at a time. */
#ifndef TANDEM_EXTPROC_STREAM_H
#define TANDEM_EXTPROC_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"
#include "extproc/extproc.h"

/* Envoy splits nothing for us: each streamed_response carries at most this many body
 * bytes (GIE's limit; Envoy's default per-message buffer is 64 KiB). */
#define XP_CHUNK_MAX 62000

/* One encoded ProcessingResponse, header and bytes in one allocation (free() it, or
 * hand `data` to gRPC with the node as the slice's user data). */
struct xp_out {
    struct xp_out *next;
    size_t len;
    uint8_t data[];
};

/* Shared by every stream of a server; read-only but for the counters. */
struct xp_stream_cfg {
    struct extproc_hooks hooks;
    enum extproc_body_mode mode; /* when the first message has no protocol_config */
    size_t max_body_bytes;       /* 0: no limit */
    _Atomic uint64_t decisions;
    _Atomic uint64_t immediate;
};

enum xp_action {
    XP_CONTINUE, /* keep reading */
    XP_FINISH,   /* the stream is over (an ImmediateResponse went out): end the call with
                    OK once the queued messages are sent; stop reading */
    XP_FAIL,     /* protocol error (undecodable message, body before headers): end the
                    call with INVALID_ARGUMENT and xp_stream.err */
};

enum xp_req_mode {
    XP_REQ_UNSET = 0,
    XP_REQ_DUPLEX,       /* FULL_DUPLEX_STREAMED: reply after the whole body */
    XP_REQ_BUFFERED,     /* BUFFERED / BUFFERED_PARTIAL: one body message */
    XP_REQ_HEADERS_ONLY, /* NONE / STREAMED / GRPC: decide on the headers alone */
};

enum xp_phase {
    XP_PH_HEADERS,  /* waiting for request_headers */
    XP_PH_BODY,     /* collecting the request body */
    XP_PH_RESPONSE, /* routed; response-phase messages pass through */
    XP_PH_DONE,     /* ImmediateResponse sent or protocol error: ignore the rest */
};

struct xp_stream {
    struct xp_stream_cfg *cfg; /* borrowed, outlives the stream */
    enum xp_phase phase;
    enum xp_req_mode req_mode;
    bool resp_duplex; /* response bodies echoed as streamed_response */
    bool observe;     /* observability_mode: never reply */
    struct arena arena;

    /* The request, complete once the phase leaves XP_PH_BODY. */
    struct extproc_header *headers; /* arena */
    size_t n_headers;
    const char *request_id; /* arena */
    bool request_id_made;   /* generated here, so sent back as a header */
    bool has_subset;
    const char **subset; /* arena */
    size_t n_subset;
    struct buf body;
    bool body_eos; /* a request_body with end_of_stream arrived */
    bool trailers; /* request_trailers arrived */

    /* The decision. */
    bool decided;
    bool routed;    /* decision status 0: the response phase follows */
    bool has_token; /* a token waits for release() */
    void *token;
    int resp_status; /* response :status, 0 until the response headers */
    bool resp_done;  /* the response reached its end (EOS or trailers) */
    /* Response attributes (on_response at the end of stream) for the next reply. */
    struct Google__Protobuf__Struct *resp_md; /* arena, or NULL */
    bool failed;     /* XP_FAIL happened */

    struct xp_out *out_head, **out_tail; /* queued replies, oldest first */
    size_t out_count;
    char err[160]; /* XP_FAIL: why */
};

void xp_stream_init(struct xp_stream *s, struct xp_stream_cfg *cfg);
/* Feeds one encoded ProcessingRequest (borrowed for the call). Replies go to the queue. */
enum xp_action xp_stream_feed(struct xp_stream *s, const uint8_t *msg, size_t len);
/* The oldest queued reply, or NULL; ownership passes to the caller. */
struct xp_out *xp_stream_pop(struct xp_stream *s);
/* The call is over. grpc_cancelled: the gRPC call ended cancelled (client gone, reset,
 * server stop). Releases the decision's token once. Returns whether the stream counts as
 * cancelled: cancelled or failed before the response reached its end. Idempotent. */
bool xp_stream_end(struct xp_stream *s, bool grpc_cancelled);
/* Frees everything the stream holds (queued replies too). Calls xp_stream_end(s, true)
 * first if it was not called. */
void xp_stream_free(struct xp_stream *s);

#endif

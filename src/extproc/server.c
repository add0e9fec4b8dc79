/* The gRPC transport of the ext_proc server, on the gRPC C core (extproc.md §3). Every
 * grpc_* call of the module is in this file.
 *
 * Threads and queues: `workers` threads each loop grpc_completion_queue_next on their own
 * queue, registered with the ext_proc server; a call's operations all complete on the
 * queue that accepted it, so a call is only ever touched by one thread and holds no lock.
 * The health server on its own port (plaintext, as GIE's and as Kubernetes' gRPC probes
 * want) has one more thread and queue. Each queue keeps a few request slots posted per
 * method, and one for unregistered methods (answered UNIMPLEMENTED, or they would wait).
 *
 * A Process call (struct xp_call) embeds its tags and counts its operations in flight:
 *   - RECV_CLOSE_ON_SERVER is posted at once; it completes when the call ends and says
 *     whether it was cancelled; then the decision's token is released;
 *   - one RECV_MESSAGE at a time, re-armed after each message;
 *   - one SEND_MESSAGE at a time (a second one is refused by the core): replies wait in
 *     the stream's queue, pumped on each write completion, which keeps them in order;
 *   - SEND_STATUS_FROM_SERVER once the queue is empty and the client half-closed, or the
 *     stream finished (ImmediateResponse: OK; protocol error: INVALID_ARGUMENT).
 * The call is freed when its close has completed and nothing is in flight.
 *
 * Stop: shutdown_and_notify + cancel_all_calls on each server, wait for the notification
 * on a queue nobody else polls, destroy the servers; then wait until every request slot
 * and call has been freed by its worker (`live`: the notification can come before a
 * cancelled call's last completions are handled, and a batch started on a queue already
 * shut down is a fatal assertion in the core); shut the worker queues down (their threads
 * exit once the queues are drained), join, free. */
#include "extproc/extproc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "extproc/stream.h"
#include "health.pb-c.h"

#define COMP "extproc"
#define PROCESS_METHOD "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
#define CHECK_METHOD "/grpc.health.v1.Health/Check"
#define EXTPROC_SERVICE "envoy.service.ext_proc.v3.ExternalProcessor"

/* grpc.health.v1 ServingStatus */
enum { HEALTH_SERVING = 1, HEALTH_NOT_SERVING = 2, HEALTH_SERVICE_UNKNOWN = 3 };

/* Request slots kept posted per queue. A burst larger than this waits in the core. */
#define PROCESS_SLOTS 32
#define CHECK_SLOTS 2
#define OTHER_SLOTS 2

enum tag_kind {
    T_PROC_NEW,
    T_PROC_READ,
    T_PROC_WRITE,
    T_PROC_CLOSE,
    T_PROC_STATUS,
    T_UNARY_NEW,
    T_UNARY_DONE,
};

struct xp_tag {
    enum tag_kind kind;
    void *obj;
};

struct xp_worker {
    struct extproc_server *s;
    grpc_server *server;
    void *check_method; /* the Check method as registered on `server` */
    bool serves_process;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool thread_started;
};

struct extproc_server {
    grpc_server *server;  /* ext_proc (+ health) */
    grpc_server *hserver; /* health only, on health_port; NULL when health_port < 0 */
    void *m_process, *m_check, *h_check;
    grpc_completion_queue *scq, *hscq; /* shutdown notifications only */
    struct xp_worker *workers;
    int nworkers; /* the health worker included */
    struct xp_stream_cfg scfg;
    atomic_bool ready;
    atomic_bool stopping; /* no request slot is re-posted once set */
    /* Request slots posted plus calls accepted, not yet freed: the queues are shut down
     * only once this is 0, since a cancelled call may still have completions to handle
     * (and batches to start) after the server's shutdown was notified. */
    _Atomic int live;
    _Atomic int workers_up; /* threads that posted their first slots */
    _Atomic uint64_t streams, cancelled;
    int port, hport;
};

/* --- Process calls -------------------------------------------------------------------- */

struct xp_call {
    struct xp_worker *w;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    struct xp_tag t_new, t_read, t_write, t_close, t_status;
    grpc_byte_buffer *rbuf;
    grpc_byte_buffer *wbuf;
    grpc_slice details;
    int cancelled;    /* RECV_CLOSE_ON_SERVER's answer */
    int inflight;     /* operations started and not completed */
    bool accepted;    /* the stream was initialised */
    bool md_sent;     /* initial metadata went out */
    bool writing;     /* a SEND_MESSAGE is in flight */
    bool half_closed; /* the client sent its last message */
    bool finishing;   /* the stream asked to end the call */
    bool status_sent;
    bool closed; /* RECV_CLOSE_ON_SERVER completed */
    grpc_status_code code;
    struct xp_stream st;
};

static bool start_batch(grpc_call *call, const grpc_op *ops, size_t n, struct xp_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        LOG_E(COMP, "grpc_call_start_batch (op %d): error %d", (int)ops[0].op, (int)e);
        return false;
    }
    return true;
}

static void post_process(struct xp_worker *w)
{
    struct xp_call *c = xcalloc(1, sizeof *c);
    c->w = w;
    grpc_metadata_array_init(&c->md);
    c->t_new = (struct xp_tag){T_PROC_NEW, c};
    c->t_read = (struct xp_tag){T_PROC_READ, c};
    c->t_write = (struct xp_tag){T_PROC_WRITE, c};
    c->t_close = (struct xp_tag){T_PROC_CLOSE, c};
    c->t_status = (struct xp_tag){T_PROC_STATUS, c};
    c->details = grpc_empty_slice();
    atomic_fetch_add(&w->s->live, 1);
    grpc_call_error e = grpc_server_request_registered_call(
        w->server, w->s->m_process, &c->call, &c->deadline, &c->md, NULL, w->cq, w->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        LOG_E(COMP, "grpc_server_request_registered_call: error %d", (int)e);
        grpc_metadata_array_destroy(&c->md);
        atomic_fetch_sub(&w->s->live, 1);
        free(c);
    }
}

static void proc_maybe_free(struct xp_call *c)
{
    if (c->inflight > 0 || (c->call && !c->closed))
        return;
    if (c->accepted)
        xp_stream_free(&c->st);
    if (c->rbuf)
        grpc_byte_buffer_destroy(c->rbuf);
    if (c->wbuf)
        grpc_byte_buffer_destroy(c->wbuf);
    grpc_slice_unref(c->details);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    atomic_fetch_sub(&c->w->s->live, 1);
    free(c);
}

static void proc_read(struct xp_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->rbuf;
    if (start_batch(c->call, &op, 1, &c->t_read))
        c->inflight++;
    else
        grpc_call_cancel(c->call, NULL);
}

static void slice_free_out(void *p)
{
    free(p);
}

/* Sends the next queued reply, or the status once nothing is left to send. */
static void proc_pump(struct xp_call *c)
{
    if (c->closed || c->writing || c->status_sent)
        return;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = 0;
        n++;
    }
    struct xp_out *o = xp_stream_pop(&c->st);
    if (o) {
        grpc_slice sl = grpc_slice_new_with_user_data(o->data, o->len, slice_free_out, o);
        c->wbuf = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->wbuf;
        n++;
        if (!start_batch(c->call, ops, n, &c->t_write)) {
            grpc_byte_buffer_destroy(c->wbuf);
            c->wbuf = NULL;
            grpc_call_cancel(c->call, NULL);
            return;
        }
        c->md_sent = true;
        c->writing = true;
        c->inflight++;
        return;
    }
    if (!c->half_closed && !c->finishing)
        return;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = 0;
    ops[n].data.send_status_from_server.status = c->code;
    ops[n].data.send_status_from_server.status_details =
        c->code != GRPC_STATUS_OK ? &c->details : NULL;
    n++;
    if (!start_batch(c->call, ops, n, &c->t_status)) {
        grpc_call_cancel(c->call, NULL);
        return;
    }
    c->md_sent = true;
    c->status_sent = true;
    c->inflight++;
}

static void proc_new(struct xp_call *c, bool ok)
{
    if (!ok) { /* the server is shutting down: this slot never got a call */
        if (c->call) {
            grpc_call_unref(c->call);
            c->call = NULL;
        }
        proc_maybe_free(c);
        return;
    }
    struct xp_worker *w = c->w;
    if (!atomic_load_explicit(&w->s->stopping, memory_order_relaxed))
        post_process(w);
    atomic_fetch_add_explicit(&w->s->streams, 1, memory_order_relaxed);
    xp_stream_init(&c->st, &w->s->scfg);
    c->accepted = true;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (!start_batch(c->call, &op, 1, &c->t_close)) {
        /* Cannot happen on a fresh call; without a close there is no clean end. */
        grpc_call_cancel(c->call, NULL);
        c->closed = true;
        xp_stream_end(&c->st, true);
        proc_maybe_free(c);
        return;
    }
    c->inflight++;
    proc_read(c);
}

static void proc_on_read(struct xp_call *c, bool ok)
{
    c->inflight--;
    if (!ok || c->closed || c->finishing) {
        /* The call failed (its close will tell) or we stopped listening. */
        if (c->rbuf) {
            grpc_byte_buffer_destroy(c->rbuf);
            c->rbuf = NULL;
        }
        proc_maybe_free(c);
        return;
    }
    if (!c->rbuf) { /* half-close: answer OK once everything queued is sent */
        c->half_closed = true;
        proc_pump(c);
        proc_maybe_free(c);
        return;
    }
    grpc_byte_buffer *bb = c->rbuf;
    c->rbuf = NULL;
    grpc_slice sl;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        sl = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    } else {
        grpc_byte_buffer_reader rd;
        if (!grpc_byte_buffer_reader_init(&rd, bb)) {
            grpc_byte_buffer_destroy(bb);
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "bad message", NULL);
            return;
        }
        sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
    }
    grpc_byte_buffer_destroy(bb);
    enum xp_action a = xp_stream_feed(&c->st, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    if (a == XP_FAIL) {
        LOG_W(COMP, "Process stream: %s", c->st.err);
        c->finishing = true;
        c->code = GRPC_STATUS_INVALID_ARGUMENT;
        grpc_slice_unref(c->details);
        c->details = grpc_slice_from_copied_string(c->st.err);
    } else if (a == XP_FINISH) {
        c->finishing = true;
        c->code = GRPC_STATUS_OK;
    }
    proc_pump(c);
    if (!c->finishing)
        proc_read(c);
}

static void proc_on_write(struct xp_call *c, bool ok)
{
    c->inflight--;
    c->writing = false;
    grpc_byte_buffer_destroy(c->wbuf); /* frees the xp_out through the slice */
    c->wbuf = NULL;
    if (ok)
        proc_pump(c);
    proc_maybe_free(c);
}

static void proc_on_close(struct xp_call *c)
{
    c->inflight--;
    c->closed = true;
    bool grpc_cancelled = c->cancelled != 0;
    if (grpc_cancelled && !c->st.resp_done)
        atomic_fetch_add_explicit(&c->w->s->cancelled, 1, memory_order_relaxed);
    xp_stream_end(&c->st, grpc_cancelled);
    proc_maybe_free(c);
}

/* --- Health checks and unknown methods (unary, one batch) ---------------------------- */

struct xp_unary {
    struct xp_worker *w;
    grpc_call *call;
    bool generic; /* an unregistered method */
    gpr_timespec deadline;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_byte_buffer *resp;
    int cancelled;
    struct xp_tag t_new, t_done;
};

static void post_unary(struct xp_worker *w, bool generic)
{
    struct xp_unary *u = xcalloc(1, sizeof *u);
    u->w = w;
    u->generic = generic;
    grpc_metadata_array_init(&u->md);
    grpc_call_details_init(&u->details);
    u->t_new = (struct xp_tag){T_UNARY_NEW, u};
    u->t_done = (struct xp_tag){T_UNARY_DONE, u};
    grpc_call_error e;
    atomic_fetch_add(&w->s->live, 1);
    if (generic)
        e = grpc_server_request_call(w->server, &u->call, &u->details, &u->md, w->cq, w->cq,
                                     &u->t_new);
    else
        e = grpc_server_request_registered_call(w->server, w->check_method, &u->call, &u->deadline,
                                                &u->md, &u->payload, w->cq, w->cq, &u->t_new);
    if (e != GRPC_CALL_OK) {
        LOG_E(COMP, "grpc_server_request_call: error %d", (int)e);
        grpc_metadata_array_destroy(&u->md);
        grpc_call_details_destroy(&u->details);
        atomic_fetch_sub(&w->s->live, 1);
        free(u);
    }
}

static void unary_free(struct xp_unary *u)
{
    if (u->payload)
        grpc_byte_buffer_destroy(u->payload);
    if (u->resp)
        grpc_byte_buffer_destroy(u->resp);
    if (u->call)
        grpc_call_unref(u->call);
    grpc_metadata_array_destroy(&u->md);
    grpc_call_details_destroy(&u->details);
    atomic_fetch_sub(&u->w->s->live, 1);
    free(u);
}

/* GIE's answers (cmd/epp/runner/health.go), with "readiness" following
 * extproc_set_ready and an unknown name answered SERVICE_UNKNOWN, not an error. */
static int health_status(struct extproc_server *s, const char *service)
{
    if (!service[0] || !strcmp(service, "liveness") || !strcmp(service, EXTPROC_SERVICE))
        return HEALTH_SERVING;
    if (!strcmp(service, "readiness"))
        return atomic_load(&s->ready) ? HEALTH_SERVING : HEALTH_NOT_SERVING;
    return HEALTH_SERVICE_UNKNOWN;
}

static void unary_new(struct xp_unary *u, bool ok)
{
    if (!ok) {
        unary_free(u);
        return;
    }
    struct xp_worker *w = u->w;
    if (!atomic_load_explicit(&w->s->stopping, memory_order_relaxed))
        post_unary(w, u->generic);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    /* Always: the core writes no trailers for a call that never sent initial metadata
     * (it then goes out as a Trailers-Only response). */
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    grpc_slice details = grpc_empty_slice();
    grpc_status_code code = GRPC_STATUS_OK;
    if (u->generic) {
        code = GRPC_STATUS_UNIMPLEMENTED;
        details = grpc_slice_from_static_string("method not implemented");
    } else {
        char service[256] = "";
        if (u->payload) {
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, u->payload)) {
                grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
                grpc_byte_buffer_reader_destroy(&rd);
                Grpc__Health__V1__HealthCheckRequest *rq =
                    grpc__health__v1__health_check_request__unpack(NULL, GRPC_SLICE_LENGTH(sl),
                                                                   GRPC_SLICE_START_PTR(sl));
                grpc_slice_unref(sl);
                if (rq) {
                    snprintf(service, sizeof service, "%s", rq->service ? rq->service : "");
                    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
                } else {
                    code = GRPC_STATUS_INVALID_ARGUMENT;
                    details = grpc_slice_from_static_string("bad HealthCheckRequest");
                }
            }
        }
        if (code == GRPC_STATUS_OK) {
            Grpc__Health__V1__HealthCheckResponse rs;
            grpc__health__v1__health_check_response__init(&rs);
            rs.status = health_status(w->s, service);
            uint8_t enc[16];
            size_t len = grpc__health__v1__health_check_response__pack(&rs, enc);
            grpc_slice sl = grpc_slice_from_copied_buffer((const char *)enc, len);
            u->resp = grpc_raw_byte_buffer_create(&sl, 1);
            grpc_slice_unref(sl);
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n].data.send_message.send_message = u->resp;
            n++;
        }
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = code ? &details : NULL;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &u->cancelled;
    n++;
    bool started = start_batch(u->call, ops, n, &u->t_done);
    grpc_slice_unref(details); /* the core holds its own reference */
    if (!started)
        unary_free(u);
}

/* --- workers ------------------------------------------------------------------------- */

static void post_slots(struct xp_worker *w)
{
    if (w->serves_process)
        for (int i = 0; i < PROCESS_SLOTS; i++)
            post_process(w);
    for (int i = 0; i < CHECK_SLOTS; i++)
        post_unary(w, false);
    for (int i = 0; i < OTHER_SLOTS; i++)
        post_unary(w, true);
}

static void *worker_main(void *arg)
{
    struct xp_worker *w = arg;
    post_slots(w);
    atomic_fetch_add(&w->s->workers_up, 1);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct xp_tag *t = ev.tag;
        bool ok = ev.success != 0;
        switch (t->kind) {
        case T_PROC_NEW:
            proc_new(t->obj, ok);
            break;
        case T_PROC_READ:
            proc_on_read(t->obj, ok);
            break;
        case T_PROC_WRITE:
            proc_on_write(t->obj, ok);
            break;
        case T_PROC_CLOSE:
            proc_on_close(t->obj);
            break;
        case T_PROC_STATUS: {
            struct xp_call *c = t->obj;
            c->inflight--;
            proc_maybe_free(c);
            break;
        }
        case T_UNARY_NEW:
            unary_new(t->obj, ok);
            break;
        case T_UNARY_DONE:
            unary_free(t->obj);
            break;
        }
    }
    return NULL;
}

/* --- TLS ----------------------------------------------------------------------------- */

static char *bio_string(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    return xstrndup(p, n > 0 ? (size_t)n : 0);
}

static bool add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed P-256 certificate for CN tandem-epp, SAN localhost and 127.0.0.1, valid
 * a year, as GIE's EPP makes when no --cert-path is given (gateways connect without
 * verifying it). */
static bool self_signed(char **cert_pem, char **key_pem)
{
    bool ok = false;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    if (!key || !x || !bn || !cb || !kb)
        goto out;
    if (!X509_set_version(x, 2) || !BN_rand(bn, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto out;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600))
        goto out;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"tandem", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tandem-epp",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
        goto out;
    /* CA:TRUE so that a client may pin this very certificate as its trust root. */
    if (!add_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        !add_ext(x, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, NID_subject_key_identifier, "hash") ||
        !add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"))
        goto out;
    if (!X509_sign(x, key, EVP_sha256()))
        goto out;
    if (!PEM_write_bio_X509(cb, x) || !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
        goto out;
    *cert_pem = bio_string(cb);
    *key_pem = bio_string(kb);
    ok = true;
out:
    BIO_free(cb);
    BIO_free(kb);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

/* tls.crt and tls.key from dir, checked to parse (the core would only fail at the first
 * handshake). */
static bool load_pair(const char *dir, char **cert_pem, char **key_pem, char *err, size_t errlen)
{
    struct buf c = BUF_INIT, k = BUF_INIT;
    char *cp = xasprintf("%s/tls.crt", dir), *kp = xasprintf("%s/tls.key", dir);
    bool ok = false;
    int e;
    if ((e = buf_read_file(&c, cp))) {
        snprintf(err, errlen, "%s: %s", cp, strerror(e));
        goto out;
    }
    if ((e = buf_read_file(&k, kp))) {
        snprintf(err, errlen, "%s: %s", kp, strerror(e));
        goto out;
    }
    BIO *b = BIO_new_mem_buf(c.data, (int)c.len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    b = BIO_new_mem_buf(k.data, (int)k.len);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x)
        snprintf(err, errlen, "%s: no PEM certificate", cp);
    else if (!pk)
        snprintf(err, errlen, "%s: no PEM private key", kp);
    else if (X509_check_private_key(x, pk) != 1)
        snprintf(err, errlen, "%s does not match %s", kp, cp);
    else
        ok = true;
    X509_free(x);
    EVP_PKEY_free(pk);
    if (ok) {
        *cert_pem = buf_steal(&c, NULL);
        *key_pem = buf_steal(&k, NULL);
    }
out:
    buf_free(&c);
    buf_free(&k);
    free(cp);
    free(kp);
    return ok;
}

static grpc_server_credentials *make_creds(const struct extproc_config *cfg, char *err,
                                           size_t errlen)
{
    if (!cfg->tls)
        return grpc_insecure_server_credentials_create();
    char *cert = NULL, *key = NULL;
    if (cfg->cert_dir && cfg->cert_dir[0]) {
        if (!load_pair(cfg->cert_dir, &cert, &key, err, errlen))
            return NULL;
    } else if (!self_signed(&cert, &key)) {
        snprintf(err, errlen, "cannot make a self-signed certificate");
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_server_credentials *cr = grpc_ssl_server_credentials_create_ex(
        NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
    OPENSSL_cleanse(key, strlen(key));
    free(cert);
    free(key);
    if (!cr)
        snprintf(err, errlen, "grpc_ssl_server_credentials_create_ex failed");
    return cr;
}

/* --- start / stop -------------------------------------------------------------------- */

static char *host_port(const char *host, int port)
{
    if (!host || !host[0])
        host = "0.0.0.0";
    if (strchr(host, ':') && host[0] != '[')
        return xasprintf("[%s]:%d", host, port);
    return xasprintf("%s:%d", host, port);
}

static grpc_server *new_server(size_t max_msg, grpc_completion_queue **scq)
{
    grpc_arg args[4];
    memset(args, 0, sizeof args);
    int n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n].value.integer = max_msg == 0 || max_msg > INT_MAX ? -1 : (int)max_msg;
    n++;
    /* The core sets SO_REUSEPORT by default: a port in use would be shared, not refused. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[n].value.integer = 0;
    n++;
    /* Tolerate gateways' keepalive pings on idle connections. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[n].value.integer = 1;
    n++;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    args[n].value.integer = 10000;
    n++;
    grpc_channel_args ca = {.num_args = (size_t)n, .args = args};
    grpc_server *srv = grpc_server_create(&ca, NULL);
    *scq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv, *scq, NULL);
    return srv;
}

/* Shuts a server down (started or not), cancelling its calls, and destroys it. The
 * worker threads, if running, keep draining the calls meanwhile. */
static void server_down(grpc_server *srv, grpc_completion_queue *scq)
{
    static struct xp_tag shutdown_tag;
    grpc_server_shutdown_and_notify(srv, scq, &shutdown_tag);
    grpc_server_cancel_all_calls(srv);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(scq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == &shutdown_tag)
            break;
    }
    grpc_server_destroy(srv);
}

static void drain_destroy_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

/* Tears down whatever start() got to: servers first (calls cancelled, tokens released),
 * then the queues, the threads, the memory. */
static void teardown(struct extproc_server *s)
{
    int started = 0;
    for (int i = 0; i < s->nworkers; i++)
        started += s->workers[i].thread_started;
    while (atomic_load(&s->workers_up) < started)
        usleep(1000);
    atomic_store(&s->stopping, true);
    if (s->server)
        server_down(s->server, s->scq);
    if (s->hserver)
        server_down(s->hserver, s->hscq);
    /* Every slot fails once its server is down, and every call was cancelled: wait for
     * the workers to have handled them all. */
    while (atomic_load(&s->live) > 0)
        usleep(1000);
    for (int i = 0; i < s->nworkers; i++) {
        struct xp_worker *w = &s->workers[i];
        if (!w->cq)
            continue;
        grpc_completion_queue_shutdown(w->cq);
        if (w->thread_started) {
            pthread_join(w->thread, NULL);
        } else {
            while (
                grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
                GRPC_QUEUE_SHUTDOWN)
                ;
        }
        grpc_completion_queue_destroy(w->cq);
    }
    if (s->scq)
        drain_destroy_cq(s->scq);
    if (s->hscq)
        drain_destroy_cq(s->hscq);
    free(s->workers);
    free(s);
    grpc_shutdown_blocking();
}

bool extproc_server_start(const struct extproc_config *cfg, const struct extproc_hooks *hooks,
                          struct extproc_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!hooks || !hooks->decide) {
        snprintf(err, errlen, "extproc: no decide hook");
        return false;
    }
    grpc_init();
    struct extproc_server *s = xcalloc(1, sizeof *s);
    s->scfg.hooks = *hooks;
    s->scfg.mode = cfg->mode;
    s->scfg.max_body_bytes = cfg->max_body_bytes;
    int nproc = cfg->workers < 1 ? 1 : cfg->workers > 64 ? 64 : cfg->workers;
    bool health_apart = cfg->health_port >= 0;
    s->nworkers = nproc + (health_apart ? 1 : 0);
    s->workers = xcalloc((size_t)s->nworkers, sizeof *s->workers);

    size_t max_msg = cfg->max_body_bytes ? cfg->max_body_bytes + (1u << 20) : 0;
    s->server = new_server(max_msg, &s->scq);
    s->m_process =
        grpc_server_register_method(s->server, PROCESS_METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
    s->m_check = grpc_server_register_method(s->server, CHECK_METHOD, NULL,
                                             GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (health_apart) {
        s->hserver = new_server(1u << 20, &s->hscq);
        s->h_check = grpc_server_register_method(s->hserver, CHECK_METHOD, NULL,
                                                 GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
    for (int i = 0; i < s->nworkers; i++) {
        struct xp_worker *w = &s->workers[i];
        w->s = s;
        w->serves_process = i < nproc;
        w->server = w->serves_process ? s->server : s->hserver;
        w->check_method = w->serves_process ? s->m_check : s->h_check;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(w->server, w->cq, NULL);
    }

    grpc_server_credentials *cr = make_creds(cfg, err, errlen);
    if (!cr)
        goto fail;
    char *addr = host_port(cfg->host, cfg->port);
    s->port = grpc_server_add_http2_port(s->server, addr, cr);
    grpc_server_credentials_release(cr);
    if (s->port <= 0) {
        snprintf(err, errlen, "cannot listen on %s (in use?)", addr);
        free(addr);
        goto fail;
    }
    free(addr);
    if (health_apart) {
        /* Plaintext, as GIE's health server and Kubernetes' gRPC probes are. */
        cr = grpc_insecure_server_credentials_create();
        addr = host_port(cfg->host, cfg->health_port);
        s->hport = grpc_server_add_http2_port(s->hserver, addr, cr);
        grpc_server_credentials_release(cr);
        if (s->hport <= 0) {
            snprintf(err, errlen, "cannot listen on %s (in use?)", addr);
            free(addr);
            goto fail;
        }
        free(addr);
    }

    grpc_server_start(s->server);
    if (s->hserver)
        grpc_server_start(s->hserver);
    for (int i = 0; i < s->nworkers; i++) {
        struct xp_worker *w = &s->workers[i];
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            goto fail;
        }
        w->thread_started = true;
    }
    LOG_I(COMP, "ext_proc on port %d (%s), health on port %d, %d worker%s", s->port,
          cfg->tls ? "TLS" : "plaintext", health_apart ? s->hport : s->port, nproc,
          nproc == 1 ? "" : "s");
    *out = s;
    return true;
fail:
    teardown(s);
    return false;
}

int extproc_port(const struct extproc_server *s)
{
    return s->port;
}

int extproc_health_port(const struct extproc_server *s)
{
    return s->hserver ? s->hport : 0;
}

void extproc_set_ready(struct extproc_server *s, bool ready)
{
    atomic_store(&s->ready, ready);
}

void extproc_server_stop(struct extproc_server *s)
{
    if (s)
        teardown(s);
}

void extproc_get_stats(const struct extproc_server *s, struct extproc_stats *out)
{
    struct extproc_server *m = (struct extproc_server *)s;
    out->streams = atomic_load_explicit(&m->streams, memory_order_relaxed);
    out->decisions = atomic_load_explicit(&m->scfg.decisions, memory_order_relaxed);
    out->immediate = atomic_load_explicit(&m->scfg.immediate, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&m->cancelled, memory_order_relaxed);
}

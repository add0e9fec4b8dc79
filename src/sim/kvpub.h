/* KV event publisher of one sim engine (one DP rank): vLLM's ZmqEventPublisher, minus
 * the replay socket. Events the engine reports during a step are batched and sent as one
 * KVEventBatch when the driver calls sim_kvpub_flush after the step; see
 * sched/kvevents.h for the wire format. */
#ifndef TANDEM_SIM_KVPUB_H
#define TANDEM_SIM_KVPUB_H

#include <stddef.h>
#include <stdint.h>

#include "sim/engine.h"

struct sim_kvpub;

struct sim_kvpub_config {
    const char *endpoint; /* vLLM's: "*" / "::" / ipc:// / inproc:// bind, else connect;
                           * the tcp port is offset by the DP rank, as vLLM does */
    const char *topic;    /* first frame ("" by default) */
    int hwm;              /* ZMQ send high-water mark (100000) */
    uint32_t dp_rank;     /* data_parallel_rank of every batch */
    const char *hash_algo; /* --prefix-caching-hash-algo: "sha256_cbor" publishes vLLM's
                            * keys (tok_vllm_block_keys), anything else the engine's */
    const char *hash_seed; /* PYTHONHASHSEED for sha256_cbor; NULL: random, as vLLM */
};

/* Opens the PUB socket and becomes e's KV sink (call before any request reaches e).
 * Returns NULL with a message in err when the endpoint cannot be bound/connected. The
 * config's strings are copied. */
struct sim_kvpub *sim_kvpub_new(const struct sim_kvpub_config *cfg, struct sim_engine *e,
                                char *err, size_t errlen);
/* Sends the events gathered since the last flush as one batch (nothing when there are
 * none). ts: unix seconds. Never blocks (ZMQ_DONTWAIT); a batch that cannot be queued
 * is dropped and counted. */
void sim_kvpub_flush(struct sim_kvpub *p, double ts);
/* Events sent / dropped so far; flushes-in-waiting do not count. */
uint64_t sim_kvpub_events_sent(const struct sim_kvpub *p);
uint64_t sim_kvpub_events_dropped(const struct sim_kvpub *p);
/* The endpoint after the DP offset (for logs). */
const char *sim_kvpub_endpoint(const struct sim_kvpub *p);
void sim_kvpub_free(struct sim_kvpub *p);

/* vLLM's offset_endpoint_port: tcp ports move up by the rank, inproc gets "_dp<rank>".
 * Returns a new string (caller frees), or NULL for an unusable endpoint. */
char *sim_kvpub_offset_endpoint(const char *endpoint, uint32_t rank);

#endif

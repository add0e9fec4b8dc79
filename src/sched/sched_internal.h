/* Internals shared by the scheduler's files: the endpoint and datastore layout, the
 * plugin table shape, the per-call scheduling cycle and the approximate prefix index.
 * Nothing here is part of the router's contract (sched.h); unit tests may use it. */
#ifndef TANDEM_SCHED_SCHED_INTERNAL_H
#define TANDEM_SCHED_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>

#include "sched/sched.h"

/* --- endpoints and datastore ---------------------------------------------------------- */

/* The mutable half of an endpoint, shared by every version of it: an upsert of the same
 * name makes a new sched_endpoint pointing at the same state, so the scraper and the
 * router's in-flight accounting may keep using whichever version they hold. */
struct sched_endpoint_state {
    atomic_int refs;
    pthread_mutex_t mu; /* guards m (except the in-flight counters, which are atomics) */
    struct sched_endpoint_metrics m;
    _Atomic int64_t inflight_requests;
    _Atomic int64_t inflight_tokens;
    _Atomic uint64_t sent_requests; /* monotonic: every start counted by inflight_add */
    _Atomic uint64_t sent_tokens;
    atomic_bool blocked; /* the router's circuit breaker is open: not a candidate */
};

struct sched_endpoint {
    atomic_int refs;
    atomic_bool removed; /* set by sched_ds_remove before the prefix purge */
    uint32_t id;         /* unique per endpoint lifetime; kept across an upsert of the same name */
    uint64_t name_hash;  /* xxh64(name): consistent hashing, stable across restarts */
    char *name;
    char *host;
    char *addr;
    char *source;
    int port;
    enum sched_role role;
    struct sched_label labels[SCHED_MAX_LABELS];
    size_t n_labels;
    struct sched_endpoint_state *st; /* ref'd; shared with other versions of this endpoint */
};

/* Called (with the endpoint id) after an endpoint left the datastore. */
typedef void (*sched_ds_remove_hook)(void *arg, uint32_t id);

struct sched_ds_hook {
    sched_ds_remove_hook fn;
    void *arg;
};

#define SCHED_DS_MAX_HOOKS 64

struct sched_datastore {
    pthread_rwlock_t lock; /* guards eps/n/cap */
    struct sched_endpoint **eps;
    size_t n, cap;
    atomic_uint_fast64_t generation; /* bumped on every upsert/remove */
    pthread_mutex_t hooks_mu;
    struct sched_ds_hook hooks[SCHED_DS_MAX_HOOKS];
    size_t n_hooks;
};

/* Fills out[0..cap) with ref'd endpoints; returns the total count (may exceed cap, in
 * which case only cap were taken: call again with a larger array). No allocation. */
size_t sched_ds_list_into(struct sched_datastore *ds, struct sched_endpoint **out, size_t cap);
void sched_ds_add_hook(struct sched_datastore *ds, sched_ds_remove_hook fn, void *arg);
void sched_ds_del_hook(struct sched_datastore *ds, sched_ds_remove_hook fn, void *arg);
uint64_t sched_ds_generation(struct sched_datastore *ds);

/* --- approximate prefix index ---------------------------------------------------------- */

/* Per pod: a set of block hashes with CLOCK (approximate LRU) eviction at a bounded capacity, under
 * its own rwlock. The pod directory has an rwlock taken in read mode by lookups and inserts, in
 * write mode only to add a pod or purge one. Lookups never write, so concurrent schedulers only
 * share cache lines for the lock words. */
struct prefix_index;

struct prefix_index *prefix_index_new(size_t capacity_per_pod);
void prefix_index_free(struct prefix_index *ix);
/* Leading blocks of hashes[0..n) held by pod id. */
size_t prefix_index_match(struct prefix_index *ix, uint32_t id, const uint64_t *hashes, size_t n);
/* Match for several pods at once (one directory lock). */
void prefix_index_match_many(struct prefix_index *ix, const uint32_t *ids, size_t n_ids,
                             const uint64_t *hashes, size_t n, uint16_t *out);
/* Inserts (or refreshes) the hashes for pod id unless e is marked removed. */
void prefix_index_insert(struct prefix_index *ix, const struct sched_endpoint *e,
                         const uint64_t *hashes, size_t n);
/* The same with pod id's own capacity (0: the index's): the first insert sets it, a
 * different one later replaces it (a lower one evicts down to it at once). */
void prefix_index_insert_cap(struct prefix_index *ix, const struct sched_endpoint *e,
                             const uint64_t *hashes, size_t n, size_t capacity);
void prefix_index_purge(struct prefix_index *ix, uint32_t id);
size_t prefix_index_size(struct prefix_index *ix);
size_t prefix_index_pod_size(struct prefix_index *ix, uint32_t id);
/* Pod id's capacity (0: no such pod). */
size_t prefix_index_pod_capacity(struct prefix_index *ix, uint32_t id);

/* Chained block hashes: h_0 = xxh64(model), h_i = xxh64(block_i || le64(h_{i-1})) over
 * block_size-byte blocks, trailing partial block dropped. Returns how many (<= max). */
size_t sched_prefix_hashes(const char *model, const char *text, size_t len, size_t block_size,
                           uint64_t *out, size_t max);

/* --- plugins ---------------------------------------------------------------------------- */

enum sched_plugin_kind {
    SCHED_PK_FILTER,
    SCHED_PK_SCORER,
    SCHED_PK_PICKER,
    SCHED_PK_HANDLER,
    SCHED_PK_DECIDER,
    SCHED_PK_PARSER,    /* request parser (the config's parser section) */
    SCHED_PK_SOURCE,    /* data layer source (dataLayer.sources[].pluginRef) */
    SCHED_PK_EXTRACTOR, /* data layer extractor (dataLayer.sources[].extractors[]) */
    SCHED_PK_ADMITTER,  /* admission: may refuse a request before any profile runs */
    SCHED_PK_REPORTER,  /* response processing: attributes from the response's usage */
    SCHED_PK_PRODUCER,  /* request data producer (token-producer) */
    SCHED_PK_PREREQUEST, /* pre-request hook (llm-d's disagg-headers-handler) */
    SCHED_PK_FLOW,       /* flow-control policy (tandem has no flow-control layer) */
};

struct sched;
struct sched_cycle;
struct sched_plugin;
struct sched_profile;

/* An endpoint lifecycle event from endpoint-notification-source (llm-d's EndpointEvent):
 * strings are borrowed for the call only. */
enum sched_endpoint_event_type {
    SCHED_EP_ADD_OR_UPDATE,
    SCHED_EP_DELETE,
};

struct sched_endpoint_event {
    enum sched_endpoint_event_type type;
    const char *name; /* the datastore name (llm-d's namespaced name) */
    const char *host;
    const char *addr; /* "host:port" */
    int port;
};

/* Errors from create/bind: the parameter (or "" for the plugin as a whole) and why. */
struct sched_perr {
    char field[96];
    char why[256];
};

struct sched_plugin_type {
    const char *type;
    enum sched_plugin_kind kind;
    /* params may be NULL (no "parameters"); returns state (may be NULL) or sets err. */
    int (*create)(const json_t *params, void **state, struct sched_perr *err);
    void (*destroy)(void *state);
    /* After every plugin and profile exists: resolve names of other plugins/profiles. */
    int (*bind)(struct sched_plugin *self, struct sched *s, struct sched_perr *err);
    /* filter: writes survivors of in[0..n) to out, returns how many. */
    size_t (*filter)(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                     uint16_t *out);
    /* scorer: writes a score per candidate (clamped by the caller). */
    void (*score)(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in, size_t n,
                  double *out);
    /* picker: writes up to max picks (candidate positions, best first), returns how many. */
    size_t (*pick)(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                   const double *totals, size_t n, uint16_t *out, size_t max);
    /* handler: runs profiles and fills res (status, picks, prefill, pd_reason). */
    void (*handle)(struct sched_plugin *self, struct sched_cycle *c, struct sched_result *res);
    /* decider: whether to disaggregate given the decode pick (cycle endpoint index). */
    bool (*decide)(struct sched_plugin *self, struct sched_cycle *c, uint16_t decode,
                   const char **reason);
    /* After a successful, non-dry-run decision. */
    void (*post_pick)(struct sched_plugin *self, struct sched_cycle *c,
                      const struct sched_result *res);
    /* prefix matcher (prefix-cache-scorer): matches this cycle's prompt blocks against
     * every candidate once (c->px_hashes, c->px_matched), returns the prompt's block
     * count. Other plugins (P/D handlers and deciders, no-hit-lru) read prefix state only
     * through this hook, never by calling the scorer's own functions. */
    size_t (*match_prefix)(struct sched_plugin *self, struct sched_cycle *c);
    /* its block size in characters (for turning matched blocks into cached tokens) */
    size_t (*prefix_block_size)(const struct sched_plugin *self);
    /* admitter: 0 admits; else the HTTP status (429) with reason written. */
    int (*admit)(struct sched_plugin *self, struct sched_cycle *c, char *reason, size_t cap);
    /* saturation detector (the config's saturationDetector): the same contract, run after
     * the admitters. */
    int (*saturation_admit)(struct sched_plugin *self, struct sched_cycle *c, char *reason,
                            size_t cap);
    /* reporter: from a finished response's usage object, one attribute; false when
     * none (condition false, evaluation error, zero value). */
    bool (*report)(struct sched_plugin *self, const json_t *usage, struct sched_attribute *out);
    /* response-header plugin: on the response's headers, one header to set; false when
     * none. */
    bool (*response_header)(struct sched_plugin *self, const struct sched_lb_meta *lb,
                            struct sched_resp_header *out);
    /* I/O on the router's control loop (sched_start / sched_stop): open sockets and
     * handles; stop closes the handles (the loop then runs their close callbacks). */
    int (*start)(struct sched_plugin *self, uv_loop_t *loop, struct sched_perr *err);
    void (*stop)(struct sched_plugin *self);
    /* endpoint extractor (llm-d's EndpointExtractor): endpoint add/update/delete events from
     * an endpoint-notification-source it is wired to, on the router's control loop. A
     * plugin with this hook may be listed under that source's extractors whatever its
     * kind; nothing else may. */
    void (*extract_endpoint)(struct sched_plugin *self, const struct sched_endpoint_event *ev);
};

struct sched_plugin {
    const struct sched_plugin_type *t;
    char *name;
    void *st;
    int line; /* of its entry in the config, 0 if unknown */
};

struct sched_weighted {
    struct sched_plugin *p;
    double weight;
};

struct sched_profile {
    char *name;
    struct sched_plugin **filters;
    size_t n_filters;
    struct sched_weighted *scorers;
    size_t n_scorers;
    struct sched_plugin *picker;
};

struct sched {
    struct sched_datastore *ds;
    struct sched_plugin **plugins;
    size_t n_plugins;
    struct sched_profile *profiles;
    size_t n_profiles;
    struct sched_plugin *handler;
    struct sched_plugin *saturation; /* the saturationDetector, or NULL (borrowed) */
    struct sched_plugin *parser;     /* the parser section's plugin, or NULL (borrowed) */
    struct sched_plugin *default_picker; /* owned; used by profiles without a picker */
};

/* The registry: every plugin type, in one array (sched_registry.c). */
extern const struct sched_plugin_type *const sched_plugin_types[];
const struct sched_plugin_type *sched_plugin_type_find(const char *type);

struct sched_plugin *sched_find_plugin(struct sched *s, const char *name);
struct sched_profile *sched_find_profile(struct sched *s, const char *name);

/* --- the scheduling cycle (one sched_schedule call) ------------------------------------- */

#define SCHED_MAX_PREFIX_BLOCKS 1024

struct sched_prefix_scorer; /* scorer state, sched_scorers.c */

struct sched_cycle {
    struct sched *s;
    const struct sched_request *req;
    bool dry_run;
    struct sched_endpoint **eps;      /* healthy endpoints, ref'd */
    struct sched_endpoint_metrics *m; /* snapshot per endpoint */
    size_t n;
    struct buf *trace;
    bool trace_first_profile;
    /* Prefix state, computed once per cycle by the first prefix-cache-scorer that needs
     * it and reused by its post-pick insert, the P/D handler and deciders. */
    const struct sched_prefix_scorer *px_owner;
    size_t px_block_size;
    size_t px_n;
    bool px_matched_done;
    uint64_t *px_hashes;  /* SCHED_MAX_PREFIX_BLOCKS */
    uint16_t *px_matched; /* per endpoint index */
    /* Decode pick of the last profile run, for deciders. */
    int decode_pick;
    /* Per-plugin timing of a sampled decision (NULL when this one is not sampled). */
    struct sched_result *timed;
};

/* Runs one profile on all healthy endpoints: filters, scorers, picker. Returns 0 with
 * picks (endpoint indexes, best first) or 503 with reason. Appends to the trace. */
int sched_run_profile(struct sched_cycle *c, const struct sched_profile *p, uint16_t *picks,
                      size_t *n_picks, char *reason, size_t reason_cap);

/* Whether p offers the prefix-matcher hooks (match_prefix, prefix_block_size). */
bool sched_plugin_is_prefix(const struct sched_plugin *p);
struct prefix_index *sched_prefix_plugin_index(const struct sched_plugin *p);
/* The cache-aware picker's index, or NULL when p is another plugin. */
struct prefix_index *sched_cache_aware_index(const struct sched_plugin *p);

/* Per-thread PRNG (splitmix64 seeded from the clock and the thread). */
uint64_t sched_rand(void);
double sched_rand_unit(void); /* (0, 1) */

/* Helpers for plugins' create(): typed parameter access that names the parameter. */
bool sched_param_check_keys(const json_t *params, const char *const *allowed,
                            struct sched_perr *err);
int sched_param_num(const json_t *params, const char *key, double *out, struct sched_perr *err);
int sched_param_int(const json_t *params, const char *key, long long *out, struct sched_perr *err);
int sched_param_str(const json_t *params, const char *key, const char **out,
                    struct sched_perr *err);
int sched_param_bool(const json_t *params, const char *key, bool *out, struct sched_perr *err);
void sched_perr_set(struct sched_perr *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A Go duration ("200ms", "1.5s", "1m30s") in ns; false when malformed or not positive
 * (sched_admit.c). */
bool sched_parse_duration(const char *s, uint64_t *ns);

/* token-producer's cached token ids for req's prompt: returns their count with *ids a
 * malloc'd copy (caller frees), or 0 with *ids NULL when none are cached. */
size_t sched_tokens_ids(const struct sched *s, const struct sched_request *req, uint32_t **ids);

/* precise-prefix-cache-scorer (sched_precise.c), for tests: applies one KV event batch
 * (topic frame, payload frame) to the index of state (the plugin's st); 0 or -EINVAL
 * with err. Then: blocks indexed; scores of endpoints (addrs "host:port", hosts) for a
 * request whose block keys are hashes[0..nb). */
int sched_precise_apply(void *state, const char *topic, size_t topic_len, const uint8_t *payload,
                        size_t n, char *err, size_t errlen);
size_t sched_precise_blocks(void *state);
/* The index's (block, pod) entries and its table's bytes (kvev_ingest reports them). */
void sched_precise_index_size(void *state, size_t *entries, size_t *table_bytes);
void sched_precise_score_hashes(void *state, const uint64_t *hashes, size_t nb,
                                const char *const *addrs, const char *const *hosts, size_t n,
                                double *out);

/* endpoint-notification-source (sched_notify.c). The loader wires extractors to a source
 * (the caller checked ext has extract_endpoint); wired says whether ext is wired to any
 * endpoint-notification-source of s. sync diffs the datastore against the source's last
 * view and dispatches the events now (the source's timer does this on the control loop;
 * tests call it directly); returns how many events it dispatched. */
extern const struct sched_plugin_type sched_endpoint_notification_source;
extern const struct sched_plugin_type sched_k8s_notification_source;
void sched_notify_wire(struct sched_plugin *src, struct sched *s, struct sched_plugin *ext);
bool sched_notify_wired(const struct sched *s, const struct sched_plugin *ext);
size_t sched_notify_sync(struct sched_plugin *src);

/* precise-prefix-cache-scorer, for tests: per-pod subscribers open now (their endpoint
 * names written to names[0..cap), comma-free), speculative entries expired at now_ns. */
size_t sched_precise_subscribers(void *state, char names[][128], size_t cap);
size_t sched_precise_expire(void *state, uint64_t now_ns);
/* Speculative entries for keys[0..nk) on the endpoints addrs[0..n) ("host:port"), expiring
 * at now_ns + speculativeTTL (what a pick does with speculativeIndexing). */
void sched_precise_speculate(void *state, const uint64_t *keys, size_t nk, const char *const *addrs,
                             size_t n, uint64_t now_ns);

/* An endpoint's in-flight tokens as llm-d's inflight-load-producer counts them (its
 * SimpleTokenEstimator: input + round(1.5 x input)), from the router's in-flight prompt
 * token estimate (sched_concurrency.c). Read by concurrency-detector and token-load-scorer. */
int64_t sched_inflight_tokens(const struct sched_endpoint_metrics *m);

/* token-producer's cached token count for req's prompt (0 when none). */
uint32_t sched_tokens_count(const struct sched *s, const struct sched_request *req);

/* The CEL subset of request-attribute-reporter (sched_cel.c): one variable, `usage`. */
struct sched_cel;
enum { SCHED_CEL_ERROR, SCHED_CEL_NUM, SCHED_CEL_BOOL, SCHED_CEL_OTHER };
struct sched_cel *sched_cel_compile(const char *src, char *err, size_t cap);
void sched_cel_free(struct sched_cel *e);
/* SCHED_CEL_NUM / _BOOL with *out set (bool: 0 or 1), or _ERROR / _OTHER. */
int sched_cel_eval(const struct sched_cel *e, const json_t *usage, double *out);

/* Base64 (standard alphabet, padded) of the endpoint name, and back. */
size_t sched_b64_decode(const char *in, size_t len, char *out, size_t cap);

#endif

/* Informer: client-go's reflector in small (kubernetes.md section 2).
 *
 *   list (resourceVersion=0 the first time, a paged quorum list after an expiry)
 *     -> diff against the cache: add / update (resourceVersion changed) / delete
 *     -> watch from the list's resourceVersion with bookmarks
 *   watch ends cleanly        -> watch again from the last resourceVersion
 *   410 (status or ERROR event) -> relist (quorum), diffed, so nothing flaps
 *   refused, 5xx, 429, 403...  -> back off 0.8 s doubling to 30 s (x1-1.2 jitter,
 *                                 Retry-After honoured), then watch again (or list,
 *                                 if no list has succeeded yet); the backoff resets
 *                                 after 2 minutes without error
 *
 * The cache is a jansson object "ns/name" -> object (managedFields removed), owned by
 * the informer. Callbacks run on the loop thread and may stop the informer: `stopped`
 * is checked after each, and the memory is freed by the timer's close callback, on a
 * later loop turn, when no callback of ours is on the stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"
#include "k8s/k8s.h"

#define LOG_C "k8s"
#define BACKOFF_MIN_S 0.8
#define BACKOFF_MAX_S 30.0
#define HEALTHY_RESET_NS (120ull * 1000000000ull)
#define PAGE_LIMIT 500

struct k8s_informer {
    struct k8s_client *cl;
    struct k8s_informer_config cfg; /* strings owned */
    json_t *cache;
    json_t *relist; /* the list being read (pages), replaces cache when complete */
    char *rv;       /* last resourceVersion seen (list, event or bookmark) */
    char *cont;     /* continue token of the page being read */
    struct k8s_req *req;
    struct k8s_watch_parser parser;
    uv_timer_t timer;
    double backoff_s;
    uint64_t last_error_ns;
    uint64_t watch_started_ns;
    uint64_t watch_events;
    bool quorum;      /* next list: resourceVersion="" with paging */
    bool synced;
    bool listed_once;
    bool in_error;    /* the last thing reported was an error */
    bool reported;    /* on_state has been called at least once */
    bool watch_restart_pending;
    bool stopped;
    struct k8s_informer_stats stats;
    uint64_t rng; /* backoff jitter, watch timeouts */
    uint64_t selector_gen; /* bumped by set_label_selector */
};

static void do_list(struct k8s_informer *inf);
static void do_watch(struct k8s_informer *inf);

const char *k8s_obj_name(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
}

const char *k8s_obj_namespace(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
}

const char *k8s_obj_rv(const json_t *obj)
{
    return json_string_value(
        json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

static void obj_key(const json_t *obj, char *out, size_t cap)
{
    const char *ns = k8s_obj_namespace(obj), *name = k8s_obj_name(obj);
    snprintf(out, cap, "%s/%s", ns ? ns : "", name ? name : "");
}

static void set_rv(struct k8s_informer *inf, const char *rv)
{
    if (!rv || !*rv)
        return;
    free(inf->rv);
    inf->rv = xstrdup(rv);
}

/* --- reporting ----------------------------------------------------------------------- */

static void report(struct k8s_informer *inf, enum k8s_informer_state st,
                   const struct k8s_response *why)
{
    if (st == K8S_INFORMER_ERROR) {
        inf->stats.errors++;
        inf->last_error_ns = clock_monotonic_ns();
    }
    bool change = (st == K8S_INFORMER_ERROR) != inf->in_error || st == K8S_INFORMER_ERROR ||
                  !inf->reported;
    inf->in_error = st == K8S_INFORMER_ERROR;
    inf->reported = true;
    if (change && inf->cfg.on_state && !inf->stopped) {
        inf->cfg.on_state(st, why, inf->cfg.ctx);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct k8s_informer *inf = h->data;
    json_decref(inf->cache);
    json_decref(inf->relist);
    free(inf->rv);
    free(inf->cont);
    k8s_watch_parser_free(&inf->parser);
    free((char *)inf->cfg.path);
    free((char *)inf->cfg.label_selector);
    free((char *)inf->cfg.field_selector);
    free(inf);
}

void k8s_informer_stop(struct k8s_informer *inf)
{
    if (!inf || inf->stopped)
        return;
    inf->stopped = true;
    if (inf->req) {
        k8s_request_cancel(inf->req);
        inf->req = NULL;
    }
    uv_timer_stop(&inf->timer);
    uv_close((uv_handle_t *)&inf->timer, on_timer_closed); /* frees on a later turn */
}

/* --- scheduling the next step --------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct k8s_informer *inf = t->data;
    if (inf->stopped)
        return;
    if (!inf->listed_once || inf->quorum || !inf->rv)
        do_list(inf);
    else
        do_watch(inf);
}

static void next_now(struct k8s_informer *inf)
{
    uv_timer_start(&inf->timer, on_timer, 0, 0);
}

/* prev_error_ns: the error before this one (2 minutes without one reset the backoff). */
static void backoff(struct k8s_informer *inf, uint64_t prev_error_ns, double retry_after_s)
{
    uint64_t now = clock_monotonic_ns();
    if (prev_error_ns && now - prev_error_ns > HEALTHY_RESET_NS)
        inf->backoff_s = 0;
    inf->backoff_s = inf->backoff_s ? inf->backoff_s * 2 : BACKOFF_MIN_S;
    if (inf->backoff_s > BACKOFF_MAX_S)
        inf->backoff_s = BACKOFF_MAX_S;
    double d = inf->backoff_s * (1.0 + 0.2 * (double)(hash_rand_below(&inf->rng, 1000)) / 1000.0);
    if (retry_after_s > d)
        d = retry_after_s;
    uv_timer_start(&inf->timer, on_timer, (uint64_t)(d * 1e3), 0);
}

static void fail(struct k8s_informer *inf, const struct k8s_response *r)
{
    uint64_t prev = inf->last_error_ns;
    report(inf, K8S_INFORMER_ERROR, r);
    if (inf->stopped)
        return;
    if (r->code == 429 && r->retry_after_s > 0) {
        /* the server says when (e.g. its cache is initializing): not a fault to back off */
        uv_timer_start(&inf->timer, on_timer, (uint64_t)(r->retry_after_s * 1e3), 0);
        return;
    }
    backoff(inf, prev, r->retry_after_s);
}

/* --- the cache ---------------------------------------------------------------------- */

/* What the cache keeps of an object: the transform's result, or the object without
 * managedFields. A new reference. */
static json_t *prepare(struct k8s_informer *inf, json_t *obj)
{
    if (inf->cfg.transform)
        return inf->cfg.transform(obj, inf->cfg.ctx);
    json_t *md = json_object_get(obj, "metadata");
    if (json_is_object(md))
        json_object_del(md, "managedFields");
    return json_incref(obj);
}

static void upsert(struct k8s_informer *inf, json_t *obj)
{
    char key[512];
    obj_key(obj, key, sizeof key);
    json_t *old = json_incref(json_object_get(inf->cache, key));
    json_object_set(inf->cache, key, obj);
    if (!old) {
        if (inf->cfg.on_add)
            inf->cfg.on_add(obj, inf->cfg.ctx);
    } else {
        const char *a = k8s_obj_rv(old), *b = k8s_obj_rv(obj);
        if ((!a || !b || strcmp(a, b) != 0) && inf->cfg.on_update)
            inf->cfg.on_update(old, obj, inf->cfg.ctx);
    }
    json_decref(old);
}

static void remove_key(struct k8s_informer *inf, const char *key)
{
    json_t *old = json_incref(json_object_get(inf->cache, key));
    if (!old)
        return;
    json_object_del(inf->cache, key);
    if (inf->cfg.on_delete)
        inf->cfg.on_delete(old, inf->cfg.ctx);
    json_decref(old);
}

/* The list is complete: report what differs from the cache, then replace it. */
static void apply_relist(struct k8s_informer *inf)
{
    json_t *fresh = inf->relist;
    inf->relist = NULL;
    /* deletions first: keys cached and not listed */
    const char *key;
    json_t *v;
    void *tmp;
    json_t *gone = json_array();
    json_object_foreach_safe(inf->cache, tmp, key, v)
    {
        if (!json_object_get(fresh, key))
            json_array_append_new(gone, json_string(key));
    }
    size_t i;
    json_t *k;
    json_array_foreach(gone, i, k)
    {
        if (inf->stopped)
            break;
        remove_key(inf, json_string_value(k));
    }
    json_decref(gone);
    json_object_foreach(fresh, key, v)
    {
        if (inf->stopped)
            break;
        upsert(inf, v);
    }
    json_decref(fresh);
}

/* --- list --------------------------------------------------------------------------- */

static void append_selectors(struct k8s_informer *inf, struct buf *b)
{
    char esc[2048];
    if (inf->cfg.label_selector && *inf->cfg.label_selector) {
        k8s_query_escape(inf->cfg.label_selector, esc, sizeof esc);
        buf_printf(b, "&labelSelector=%s", esc);
    }
    if (inf->cfg.field_selector && *inf->cfg.field_selector) {
        k8s_query_escape(inf->cfg.field_selector, esc, sizeof esc);
        buf_printf(b, "&fieldSelector=%s", esc);
    }
}

static void on_list(const struct k8s_response *r, void *ctx)
{
    struct k8s_informer *inf = ctx;
    inf->req = NULL;
    if (r->status != 200) {
        if (r->code == 410 && inf->cont) { /* the continue token expired: start over */
            free(inf->cont);
            inf->cont = NULL;
            json_decref(inf->relist);
            inf->relist = NULL;
            inf->quorum = true;
        }
        fail(inf, r);
        return;
    }
    json_error_t je;
    json_t *doc = json_loadb(r->body, r->len, 0, &je);
    json_t *items = json_object_get(doc, "items");
    if (!json_is_array(items)) {
        struct k8s_response bad = *r;
        bad.reason = "BadList";
        bad.message = "the list response has no items array";
        json_decref(doc);
        fail(inf, &bad);
        return;
    }
    if (!inf->relist)
        inf->relist = json_object();
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        char key[512];
        obj_key(item, key, sizeof key);
        json_object_set_new(inf->relist, key, prepare(inf, item));
    }
    const json_t *md = json_object_get(doc, "metadata");
    const char *cont = json_string_value(json_object_get(md, "continue"));
    free(inf->cont);
    inf->cont = cont && *cont ? xstrdup(cont) : NULL;
    if (inf->cont) {
        json_decref(doc);
        do_list(inf); /* next page */
        return;
    }
    set_rv(inf, json_string_value(json_object_get(md, "resourceVersion")));
    json_decref(doc);
    inf->stats.lists++;
    inf->quorum = false;
    inf->listed_once = true;
    uint64_t gen = inf->selector_gen;
    apply_relist(inf);
    if (inf->stopped || gen != inf->selector_gen)
        return; /* stopped, or re-selected from a callback: a new list is on its way */
    inf->synced = true;
    report(inf, K8S_INFORMER_SYNCED, r);
    if (!inf->stopped && gen == inf->selector_gen)
        do_watch(inf);
}

static void do_list(struct k8s_informer *inf)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s?", inf->cfg.path);
    if (inf->quorum || inf->cont) {
        buf_printf(&b, "limit=%d", PAGE_LIMIT);
        if (inf->cont) {
            char esc[4096];
            k8s_query_escape(inf->cont, esc, sizeof esc);
            buf_printf(&b, "&continue=%s", esc);
        }
    } else {
        buf_append_str(&b, "resourceVersion=0");
    }
    append_selectors(inf, &b);
    inf->req = k8s_request(inf->cl, "GET", b.data, NULL, NULL, 0, on_list, inf);
    buf_free(&b);
}

/* --- watch -------------------------------------------------------------------------- */

static void on_event(const char *type, json_t *obj, void *ctx)
{
    struct k8s_informer *inf = ctx;
    if (inf->stopped || inf->watch_restart_pending)
        return;
    inf->watch_events++;
    inf->stats.events++;
    if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
        set_rv(inf, k8s_obj_rv(obj));
        json_t *kept = prepare(inf, obj);
        upsert(inf, kept);
        json_decref(kept);
    } else if (!strcmp(type, "DELETED")) {
        set_rv(inf, k8s_obj_rv(obj));
        char key[512];
        obj_key(obj, key, sizeof key);
        remove_key(inf, key);
    } else if (!strcmp(type, "BOOKMARK")) {
        set_rv(inf, k8s_obj_rv(obj));
    } else if (!strcmp(type, "ERROR")) {
        /* A Status inside a 200 stream; 410 Expired: our version is too old. */
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *reason = json_string_value(json_object_get(obj, "reason"));
        const char *msg = json_string_value(json_object_get(obj, "message"));
        struct k8s_response r = {.status = 200,
                                 .code = (int)code,
                                 .reason = reason ? reason : "",
                                 .message = msg ? msg : "",
                                 .body = ""};
        if (inf->req) {
            k8s_request_cancel(inf->req);
            inf->req = NULL;
        }
        inf->watch_restart_pending = true;
        if (code == 410) {
            LOG_I(LOG_C, "watch %s: %s (410): listing again", inf->cfg.path,
                  r.message[0] ? r.message : "resource version expired");
            inf->quorum = true;
            next_now(inf);
        } else {
            fail(inf, &r);
        }
    }
}

static void on_watch_data(const char *data, size_t len, void *ctx)
{
    struct k8s_informer *inf = ctx;
    if (inf->stopped || inf->watch_restart_pending)
        return;
    if (!data) { /* the stream is open: the server answers again */
        if (inf->in_error)
            report(inf, K8S_INFORMER_SYNCED, NULL);
        return;
    }
    char err[256];
    bool ok = k8s_watch_parser_feed(&inf->parser, data, len, on_event, inf, err, sizeof err);
    if (!ok && !inf->stopped && !inf->watch_restart_pending) {
        if (inf->req) {
            k8s_request_cancel(inf->req);
            inf->req = NULL;
        }
        inf->watch_restart_pending = true;
        struct k8s_response r = {.reason = "BadWatchStream", .message = err, .body = ""};
        fail(inf, &r);
    }
}

static void on_watch_done(const struct k8s_response *r, void *ctx)
{
    struct k8s_informer *inf = ctx;
    inf->req = NULL;
    if (inf->watch_restart_pending)
        return;
    if (r->status == 200) {
        uint64_t ran = clock_monotonic_ns() - inf->watch_started_ns;
        if (inf->watch_events == 0 && ran < 1000000000ull) {
            struct k8s_response e = *r;
            e.reason = "WatchEndedEarly";
            e.message = "the watch ended within 1 s with no event";
            fail(inf, &e);
            return;
        }
        next_now(inf); /* a clean end (timeoutSeconds): watch again from rv */
        return;
    }
    if (r->code == 410 || (r->code == 504 && strstr(r->message, "too large"))) {
        LOG_I(LOG_C, "watch %s: %s (%d): listing again", inf->cfg.path,
              r->message[0] ? r->message : "resource version expired", r->code);
        inf->quorum = true;
        next_now(inf);
        return;
    }
    fail(inf, r);
}

static void do_watch(struct k8s_informer *inf)
{
    double t = inf->cfg.watch_timeout_s;
    if (t <= 0)
        t = 300 + (double)(hash_rand_below(&inf->rng, 300));
    struct buf b = BUF_INIT;
    char esc[256];
    k8s_query_escape(inf->rv, esc, sizeof esc);
    buf_printf(&b, "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
               inf->cfg.path, esc, (int)t);
    append_selectors(inf, &b);
    if (inf->watch_started_ns)
        inf->stats.watch_restarts++;
    inf->watch_started_ns = clock_monotonic_ns();
    inf->watch_events = 0;
    inf->watch_restart_pending = false;
    k8s_watch_parser_reset(&inf->parser);
    inf->req = k8s_stream(inf->cl, b.data, t + 30, on_watch_data, on_watch_done, inf);
    buf_free(&b);
}

/* --- public ------------------------------------------------------------------------- */

struct k8s_informer *k8s_informer_start(struct k8s_client *c,
                                        const struct k8s_informer_config *cfg)
{
    struct k8s_informer *inf = xcalloc(1, sizeof *inf);
    inf->cl = c;
    inf->cfg = *cfg;
    inf->cfg.path = xstrdup(cfg->path);
    inf->cfg.label_selector = cfg->label_selector ? xstrdup(cfg->label_selector) : NULL;
    inf->cfg.field_selector = cfg->field_selector ? xstrdup(cfg->field_selector) : NULL;
    inf->cache = json_object();
    inf->rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)inf;
    uv_timer_init(k8s_client_loop(c), &inf->timer);
    inf->timer.data = inf;
    next_now(inf); /* never calls back from inside start */
    return inf;
}

void k8s_informer_set_label_selector(struct k8s_informer *inf, const char *selector)
{
    const char *cur = inf->cfg.label_selector ? inf->cfg.label_selector : "";
    if (!strcmp(cur, selector ? selector : ""))
        return;
    free((char *)inf->cfg.label_selector);
    inf->cfg.label_selector = selector ? xstrdup(selector) : NULL;
    inf->selector_gen++;
    if (inf->req) {
        k8s_request_cancel(inf->req);
        inf->req = NULL;
    }
    json_decref(inf->relist);
    inf->relist = NULL;
    free(inf->cont);
    inf->cont = NULL;
    inf->watch_restart_pending = true; /* events of the old watch are stale */
    inf->quorum = true;
    inf->listed_once = false;
    next_now(inf);
}

bool k8s_informer_synced(const struct k8s_informer *inf)
{
    return inf->synced;
}

const json_t *k8s_informer_cache(const struct k8s_informer *inf)
{
    return inf->cache;
}

void k8s_informer_get_stats(const struct k8s_informer *inf, struct k8s_informer_stats *out)
{
    *out = inf->stats;
}

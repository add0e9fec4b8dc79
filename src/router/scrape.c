/* The engine metrics scraper. Every --refresh-metrics-interval it GETs /metrics from each
 * endpoint (one scrape in flight per endpoint at a time), keeps only the vLLM series the
 * scorers use, and updates the datastore. A failed scrape marks the endpoint unhealthy;
 * the next good one brings it back. Metrics older than the staleness threshold are
 * flagged stale. It runs on the control loop, never on a worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/prom.h"
#include "extproc/extproc.h"
#include "router/router_internal.h"

#define LOG_C "scraper"

struct scrape {
    struct router *r;
    struct sched_endpoint *ep; /* ref'd */
    uint64_t sent_requests;    /* the endpoint's sent totals when this scrape was requested */
    uint64_t sent_tokens;
};

/* Endpoints never scraped successfully get one warning, not one per scrape (the control
 * loop is single-threaded; a small set of name hashes is enough). */
static bool first_failure(struct router_scraper *s, const char *name)
{
    uint64_t h = hash_str(name, 7);
    for (size_t i = 0; i < s->n_warned; i++)
        if (s->warned[i] == h)
            return false;
    if (s->n_warned < sizeof s->warned / sizeof *s->warned)
        s->warned[s->n_warned++] = h;
    return true;
}

static bool is_busy(struct router_scraper *s, const char *name)
{
    for (size_t i = 0; i < s->n_busy; i++) {
        if (!strcmp(sched_endpoint_name(s->busy[i]->ep), name))
            return true;
    }
    return false;
}

static void busy_add(struct router_scraper *s, struct scrape *sc)
{
    if (s->n_busy == s->cap_busy) {
        s->cap_busy = s->cap_busy ? s->cap_busy * 2 : 16;
        s->busy = xrealloc(s->busy, s->cap_busy * sizeof *s->busy);
    }
    s->busy[s->n_busy++] = sc;
}

static void busy_remove(struct router_scraper *s, struct scrape *sc)
{
    for (size_t i = 0; i < s->n_busy; i++) {
        if (s->busy[i] == sc) {
            s->busy[i] = s->busy[--s->n_busy];
            return;
        }
    }
}

static void copy_label(const struct prom_sample *s, const char *label, char *out, size_t cap)
{
    size_t len;
    const char *v = prom_label(s, label, &len);
    if (!v)
        return;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

struct parsed {
    struct sched_endpoint_metrics m;
    bool have_kv, have_gpu_kv;
    double gpu_kv;
    char rank[16]; /* a DP worker (URL@rank): only its engine's series, else "" (all) */
};

static void on_sample(const struct prom_sample *s, void *ctx)
{
    struct parsed *p = ctx;
    if (p->rank[0]) {
        /* vLLM labels each DP rank's series engine="<rank>". */
        size_t len;
        const char *e = prom_label(s, "engine", &len);
        if (e && (len != strlen(p->rank) || memcmp(e, p->rank, len) != 0))
            return;
    }
    if (prom_name_is(s, "vllm:num_requests_waiting")) {
        p->m.waiting += s->value;
    } else if (prom_name_is(s, "vllm:num_requests_running")) {
        p->m.running += s->value;
    } else if (prom_name_is(s, "vllm:kv_cache_usage_perc")) {
        p->have_kv = true;
        if (s->value > p->m.kv_usage)
            p->m.kv_usage = s->value;
    } else if (prom_name_is(s, "vllm:gpu_cache_usage_perc")) {
        p->have_gpu_kv = true;
        if (s->value > p->gpu_kv)
            p->gpu_kv = s->value;
    } else if (prom_name_is(s, "vllm:cache_config_info")) {
        char v[32] = "";
        copy_label(s, "block_size", v, sizeof v);
        p->m.block_size = (uint32_t)strtoul(v, NULL, 10);
        v[0] = '\0';
        copy_label(s, "num_gpu_blocks", v, sizeof v);
        p->m.num_blocks = (uint32_t)strtoul(v, NULL, 10);
    } else if (prom_name_is(s, "vllm:lora_requests_info")) {
        copy_label(s, "running_lora_adapters", p->m.running_loras, sizeof p->m.running_loras);
        copy_label(s, "waiting_lora_adapters", p->m.waiting_loras, sizeof p->m.waiting_loras);
        char v[32] = "";
        copy_label(s, "max_lora", v, sizeof v);
        p->m.max_lora = (uint32_t)strtoul(v, NULL, 10);
    }
}

static void update_ready(struct router *r)
{
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    int ready = 0;
    for (size_t i = 0; i < n && !ready; i++) {
        struct sched_endpoint_metrics m;
        sched_endpoint_snapshot(eps[i], &m);
        ready = m.healthy;
    }
    sched_ds_release_list(eps, n);
    r->ready = ready;
    if (r->extproc)
        extproc_set_ready(r->extproc, ready);
}

static void on_scraped(enum http_call_error err, int status, const char *body, size_t len,
                       void *ctx)
{
    struct scrape *sc = ctx;
    struct router *r = sc->r;
    const char *name = sched_endpoint_name(sc->ep);
    busy_remove(&sc->r->scraper, sc);
    struct sched_endpoint_metrics before;
    sched_endpoint_snapshot(sc->ep, &before);
    struct parsed p = {0};
    int rank = router_endpoint_dp_rank(sc->ep);
    if (rank >= 0)
        snprintf(p.rank, sizeof p.rank, "%d", rank);
    char why[160] = "";
    if (err != HTTP_CALL_OK)
        snprintf(why, sizeof why, "%s", http_call_error_str(err));
    else if (status != 200)
        snprintf(why, sizeof why, "HTTP %d", status);
    else
        prom_parse(body, len, on_sample, &p, why, sizeof why); /* why names a bad line */
    if (why[0]) {
        if (before.healthy || (!before.have && first_failure(&r->scraper, name)))
            LOG_W(LOG_C, "endpoint %s (%s): metrics scrape failed (%s); marked unhealthy", name,
                  sched_endpoint_addr(sc->ep), why);
        sched_endpoint_set_health(sc->ep, false);
    } else {
        if (!p.have_kv && p.have_gpu_kv)
            p.m.kv_usage = p.gpu_kv; /* older vLLM name */
        p.m.have = true;
        p.m.healthy = true;
        p.m.stale = false;
        p.m.scraped_at_ns = clock_monotonic_ns();
        p.m.sent_base_requests = r->cfg.raw_scraped_load ? UINT64_MAX : sc->sent_requests;
        p.m.sent_base_tokens = sc->sent_tokens;
        if (!before.healthy)
            LOG_I(LOG_C, "endpoint %s (%s) is healthy", name, sched_endpoint_addr(sc->ep));
        sched_endpoint_set_scraped(sc->ep, &p.m);
    }
    sched_endpoint_unref(sc->ep);
    free(sc);
    if (!r->stopping)
        update_ready(r);
}

static void check_endpoints_file(struct router *r, uint64_t now)
{
    if (!r->cfg.endpoints_file || now - r->scraper.file_checked_ns < 1000000000ull)
        return;
    r->scraper.file_checked_ns = now;
    struct stat st;
    if (stat(r->cfg.endpoints_file, &st) != 0)
        return;
    if (st.st_mtim.tv_sec == r->scraper.file_mtime.tv_sec &&
        st.st_mtim.tv_nsec == r->scraper.file_mtime.tv_nsec)
        return;
    r->scraper.file_mtime = st.st_mtim;
    char err[512];
    if (!router_load_endpoints_file(r, r->cfg.endpoints_file, err, sizeof err))
        LOG_E(LOG_C, "endpoints file not reloaded: %s", err);
}

static void on_tick(uv_timer_t *t)
{
    struct router *r = t->data;
    uint64_t now = clock_monotonic_ns();
    check_endpoints_file(r, now);
    router_breakers_tick(r);
    struct sched_endpoint **eps;
    size_t n = sched_ds_list(r->ds, &eps);
    uint64_t stale_ns = (uint64_t)(r->cfg.staleness_s * 1e9);
    for (size_t i = 0; i < n; i++) {
        const char *name = sched_endpoint_name(eps[i]);
        struct sched_endpoint_metrics m;
        sched_endpoint_snapshot(eps[i], &m);
        if (m.have && !m.stale && now - m.scraped_at_ns > stale_ns) {
            m.stale = true;
            sched_endpoint_set_scraped(eps[i], &m);
        }
        if (is_busy(&r->scraper, name))
            continue;
        struct scrape *sc = xcalloc(1, sizeof *sc);
        sc->r = r;
        sc->ep = eps[i];
        sched_endpoint_ref(sc->ep);
        sched_endpoint_sent(sc->ep, &sc->sent_requests, &sc->sent_tokens);
        busy_add(&r->scraper, sc);
        uint64_t timeout = (uint64_t)(r->cfg.refresh_metrics_s * 1e3) * 20;
        struct http_call_request req = {
            .method = "GET",
            .host = sched_endpoint_host(eps[i]),
            .port = sched_endpoint_port(eps[i]),
            .path = sched_metrics_path(r->sched),
            .timeout_ms = timeout < 1000 ? 1000 : timeout,
        };
        http_fetch(r->scrape_client, &req, 8 << 20, on_scraped, sc);
    }
    sched_ds_release_list(eps, n);
}

void router_scrape_start(struct router *r)
{
    struct http_client_config cc = {.connect_timeout_ms = 1000};
    r->scrape_client = http_client_new(&r->control, &cc);
    uv_timer_init(&r->control, &r->scrape_timer);
    r->scrape_timer.data = r;
    uint64_t ms = (uint64_t)(r->cfg.refresh_metrics_s * 1e3);
    if (ms == 0)
        ms = 1;
    uv_timer_start(&r->scrape_timer, on_tick, 0, ms);
}

void router_scrape_stop(struct router *r)
{
    uv_timer_stop(&r->scrape_timer);
    uv_close((uv_handle_t *)&r->scrape_timer, NULL);
    /* Freeing the client cancels in-flight scrapes without callbacks: drop their state. */
    http_client_free(r->scrape_client);
    struct router_scraper *sp = &r->scraper;
    for (size_t i = 0; i < sp->n_busy; i++) {
        sched_endpoint_unref(sp->busy[i]->ep);
        free(sp->busy[i]);
    }
    free(sp->busy);
    sp->busy = NULL;
    sp->n_busy = sp->cap_busy = 0;
}

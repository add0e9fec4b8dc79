/* `tandem up`'s per-role autoscaler: the policy of spec.<role>.autoscaling (ms/hpa.c,
 * the HPA's algorithm) run against the engines' own /metrics, starting parked replicas
 * and draining running ones (up_internal.h explains parking).
 *
 * Each role has a timer (the CR's polling interval or --autoscale-interval). A round
 * reads /metrics from every routable replica of the role, sums each configured metric
 * (per pod average, or the role's total; counters as a per-second rate between rounds)
 * and asks ms_hpa_decide for the replica count. Scale-up starts parked replicas; the
 * router learns of one when it is ready. Scale-down drains: the replica leaves the
 * router's endpoints file; once the router no longer lists it and it has been idle for
 * two polls in a row (engine: no running or waiting request; its sidecar: no request in
 * flight, prefill leg included), it gets SIGTERM and is parked when it exits. So no
 * client request is cut by a scale-down.
 *
 * The router's endpoints file is rewritten (atomically: a temporary file renamed over
 * it) whenever the routable set changes; the router re-reads it within a second. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/prom.h"
#include "ms/up_internal.h"
#include "net/http_client.h"
#include "net/http_server.h"

#define LOG_C "up"
#define DRAIN_POLL_MS 200
#define DRAIN_MAX_S 300 /* a replica still busy after this is stopped anyway (logged) */

enum drain_phase { D_NONE, D_UNLISTING, D_QUIESCING, D_STOPPING };

/* Per replica of an autoscaled role. */
struct replica {
    struct up_scaler *sc;
    size_t engine;  /* index into u->procs */
    bool listed;    /* in the router's endpoints file */
    enum drain_phase phase;
    uint64_t phase_ns, last_poll_ns;
    int quiet;      /* consecutive idle polls */
    int answers;    /* idle answers pending in this poll (engine, sidecar) */
    bool busy;
    struct http_call *poll[2];
    double prev[MS_AS_MAX_METRICS]; /* counters at the previous round */
    double prev_t;
    bool have_prev;
};

struct up_scaler {
    struct up *u;
    enum up_role role;
    const struct ms_autoscaling *as;
    struct ms_hpa hpa;
    uv_timer_t timer;
    double interval_s;
    struct replica *reps;
    size_t n_reps;
    /* the current round */
    size_t pending;
    int answered;
    double sums[MS_AS_MAX_METRICS];
    bool have[MS_AS_MAX_METRICS];
    struct http_call *router_call; /* /debug/endpoints for drains */
    /* metrics */
    struct metrics_series *m_desired, *m_ready, *m_running, *m_up, *m_down;
    struct metrics_series *m_value[MS_AS_MAX_METRICS], *m_target[MS_AS_MAX_METRICS];
};

static const char *role_str(enum up_role r)
{
    return r == ROLE_PREFILL ? "prefill" : "decode";
}

static struct up_proc *engine_of(const struct up_scaler *sc, const struct replica *rp)
{
    return &sc->u->procs[rp->engine];
}

static struct up_proc *sidecar_of(const struct up_scaler *sc, const struct replica *rp)
{
    const struct up_proc *e = engine_of(sc, rp);
    return e->partner >= 0 ? &sc->u->procs[e->partner] : NULL;
}

static bool active(const struct up_scaler *sc, const struct replica *rp)
{
    const struct up_proc *e = engine_of(sc, rp);
    return !e->parked && !e->draining;
}

int up_role_desired(const struct up *u, enum up_role role)
{
    int n = 0;
    for (size_t i = 0; i < u->n; i++) {
        const struct up_proc *p = &u->procs[i];
        n += p->role == role && !p->parked && !p->draining;
    }
    return n;
}

/* --- the router's endpoints file ---------------------------------------------------------- */

static bool write_endpoints(struct up *u)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "# written by tandem up (autoscaling); the router re-reads it\n"
                       "endpoints:");
    size_t n = 0;
    for (int r = 0; r < 2; r++) {
        struct up_scaler *sc = u->scalers[r];
        for (size_t i = 0; i < u->n; i++) {
            const struct up_proc *p = &u->procs[i];
            if (p->role != (r ? ROLE_DECODE : ROLE_PREFILL))
                continue;
            bool listed = !p->parked && !p->draining;
            if (sc) {
                for (size_t k = 0; k < sc->n_reps; k++)
                    if (sc->reps[k].engine == i)
                        listed = sc->reps[k].listed;
            }
            if (!listed)
                continue;
            int port = p->partner >= 0 ? u->procs[p->partner].port : p->port;
            buf_printf(&b, "\n- {name: %s, address: \"127.0.0.1:%d\", role: %s}", p->name, port,
                       role_str(p->role));
            n++;
        }
    }
    buf_append_str(&b, n ? "\n" : " []\n");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", u->endpoints_file);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fwrite(b.data, 1, b.len, f) == b.len;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, u->endpoints_file) != 0)
        ok = false;
    if (!ok)
        LOG_E(LOG_C, "writing %s: %s", u->endpoints_file, strerror(errno));
    buf_free(&b);
    return ok;
}

/* --- metrics of a round ------------------------------------------------------------------- */

/* Sums every series (DP ranks, labels) of each named metric in a Prometheus page: the
 * one reading both the autoscaling rounds and the drains use. false on a bad page. */
struct sum_ctx {
    const char *const *names;
    size_t n;
    double *v;
    bool *seen;
};

static void on_sample(const struct prom_sample *s, void *ctx)
{
    struct sum_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) {
        if (prom_name_is(s, c->names[i]) && isfinite(s->value)) {
            c->v[i] += s->value;
            c->seen[i] = true;
        }
    }
}

static bool sum_page(const char *body, size_t len, const char *const *names, size_t n,
                     double *v, bool *seen)
{
    memset(v, 0, n * sizeof *v);
    memset(seen, 0, n * sizeof *seen);
    struct sum_ctx c = {names, n, v, seen};
    char perr[128];
    return prom_parse(body, len, on_sample, &c, perr, sizeof perr) >= 0;
}

static void decide(struct up_scaler *sc);

static void on_metrics(enum http_call_error err, int status, const char *body, size_t len,
                       void *ctx)
{
    struct replica *rp = ctx;
    struct up_scaler *sc = rp->sc;
    if (err == HTTP_CALL_OK && status == 200) {
        const char *names[MS_AS_MAX_METRICS];
        double vals[MS_AS_MAX_METRICS];
        bool seen[MS_AS_MAX_METRICS];
        for (size_t i = 0; i < sc->as->n_metrics; i++)
            names[i] = sc->as->metrics[i].metric;
        if (sum_page(body, len, names, sc->as->n_metrics, vals, seen)) {
            double now = (double)clock_monotonic_ns() / 1e9;
            bool counted = false;
            for (size_t i = 0; i < sc->as->n_metrics; i++) {
                if (!seen[i])
                    continue;
                double v = vals[i];
                if (sc->as->metrics[i].rate_s > 0) {
                    /* a counter: its rate since the previous round (a restart resets it) */
                    double prev = rp->prev[i];
                    rp->prev[i] = vals[i];
                    if (!rp->have_prev || v < prev || now <= rp->prev_t)
                        continue;
                    v = (v - prev) / (now - rp->prev_t);
                }
                sc->sums[i] += v;
                sc->have[i] = true;
                counted = true;
            }
            rp->prev_t = now;
            rp->have_prev = true;
            sc->answered += counted || sc->as->n_metrics == 0;
        }
    }
    if (--sc->pending == 0)
        decide(sc);
}

static void on_round(uv_timer_t *t)
{
    struct up_scaler *sc = t->data;
    struct up *u = sc->u;
    if (u->shutting_down || sc->pending)
        return;
    memset(sc->sums, 0, sizeof sc->sums);
    memset(sc->have, 0, sizeof sc->have);
    sc->answered = 0;
    for (size_t k = 0; k < sc->n_reps; k++) {
        struct replica *rp = &sc->reps[k];
        struct up_proc *e = engine_of(sc, rp);
        if (!active(sc, rp) || !up_replica_ready(u, e))
            continue;
        struct http_call_request req = {
            .method = "GET", .host = "127.0.0.1", .port = e->port, .path = "/metrics",
            .timeout_ms = 2000,
        };
        sc->pending++;
        http_fetch(u->client, &req, 4 << 20, on_metrics, rp);
    }
    if (sc->pending == 0)
        decide(sc); /* nothing ready: only min/max apply */
}

/* --- scaling ------------------------------------------------------------------------------ */

static void start_replica(struct up_scaler *sc, struct replica *rp)
{
    struct up *u = sc->u;
    struct up_proc *e = engine_of(sc, rp), *side = sidecar_of(sc, rp);
    e->parked = false;
    e->restarts = 0;
    up_proc_start(u, e);
    if (side) {
        side->parked = false;
        side->restarts = 0;
        up_proc_start(u, side);
    }
    rp->have_prev = false;
    LOG_I(LOG_C, "autoscale %s: starting %s", role_str(sc->role), e->name);
}

static void start_drain(struct up_scaler *sc, struct replica *rp)
{
    struct up_proc *e = engine_of(sc, rp), *side = sidecar_of(sc, rp);
    e->draining = true;
    if (side)
        side->draining = true;
    bool was_listed = rp->listed;
    rp->listed = false;
    rp->phase = was_listed ? D_UNLISTING : D_QUIESCING;
    rp->phase_ns = clock_monotonic_ns();
    rp->quiet = 0;
    write_endpoints(sc->u);
    LOG_I(LOG_C, "autoscale %s: draining %s (out of the router; stopped once idle)",
          role_str(sc->role), e->name);
}

static void decide(struct up_scaler *sc)
{
    struct up *u = sc->u;
    if (u->shutting_down)
        return;
    int current = up_role_desired(u, sc->role);
    struct ms_hpa_metric m[MS_AS_MAX_METRICS];
    size_t n = 0;
    char vals[512] = "";
    size_t off = 0;
    for (size_t i = 0; i < sc->as->n_metrics; i++) {
        const struct ms_as_metric *am = &sc->as->metrics[i];
        if (!sc->have[i] || sc->answered == 0)
            continue;
        /* average: per pod (an HPA Pods metric, KEDA AverageValue); total: the role's sum
         * against the target as a whole (an HPA External Value target, KEDA Value), so
         * both propose ceil(current x value / target) as in the cluster. */
        double v = am->total ? sc->sums[i] : sc->sums[i] / sc->answered;
        m[n++] = (struct ms_hpa_metric){am->metric, v, am->target};
        metrics_gauge_set(sc->m_value[i], v);
        if (off < sizeof vals)
            off += (size_t)snprintf(vals + off, sizeof vals - off, "%s%s %s %.3g / target %g",
                                    off ? ", " : "", am->metric, am->total ? "total" : "average",
                                    v, am->target);
    }
    struct ms_hpa_why why;
    double now = (double)clock_monotonic_ns() / 1e9;
    int want = ms_hpa_decide(&sc->hpa, now, current, m, n, &why);
    metrics_gauge_set(sc->m_desired, want);
    int ready = 0;
    for (size_t k = 0; k < sc->n_reps; k++)
        ready += active(sc, &sc->reps[k]) && up_replica_ready(u, engine_of(sc, &sc->reps[k]));
    metrics_gauge_set(sc->m_ready, ready);
    if (want == current) {
        LOG_D(LOG_C, "autoscale %s: %d replicas (%s)", role_str(sc->role), current,
              n ? vals : "no metrics yet");
        return;
    }
    LOG_I(LOG_C, "autoscale %s: %d -> %d replicas (%s; proposed %d, stabilized %d%s%s)",
          role_str(sc->role), current, want, n ? vals : "no metrics", why.proposed,
          why.stabilized, why.limit ? ", limited by " : "", why.limit ? why.limit : "");
    if (want > current) {
        metrics_counter_add(sc->m_up, (double)(want - current));
        for (size_t k = 0; k < sc->n_reps && current < want; k++) {
            struct replica *rp = &sc->reps[k];
            struct up_proc *e = engine_of(sc, rp), *side = sidecar_of(sc, rp);
            if (!e->parked || e->draining || e->pid != 0)
                continue;
            /* Its ports were free when tandem up planned them; something else may hold one
             * now (an outgoing connection's ephemeral port: keep --base-port below
             * ip_local_port_range). Then the next parked replica goes instead. */
            if (!up_port_free("127.0.0.1", e->port) ||
                (side && !up_port_free("127.0.0.1", side->port))) {
                LOG_W(LOG_C, "autoscale %s: cannot start %s: port %d%s in use; trying another",
                      role_str(sc->role), e->name, e->port, side ? " or its sidecar's" : "");
                continue;
            }
            start_replica(sc, rp);
            current++;
        }
    } else {
        metrics_counter_add(sc->m_down, (double)(current - want));
        for (size_t k = sc->n_reps; k-- > 0 && current > want;) {
            struct replica *rp = &sc->reps[k];
            if (active(sc, rp)) {
                start_drain(sc, rp);
                current--;
            }
        }
    }
    up_maybe_print(u);
}

/* --- drains ------------------------------------------------------------------------------- */

static void on_router_eps(enum http_call_error err, int status, const char *body, size_t len,
                          void *ctx)
{
    struct up_scaler *sc = ctx;
    sc->router_call = NULL;
    if (err != HTTP_CALL_OK || status != 200)
        return;
    json_error_t je;
    json_t *doc = json_loadb(body, len, 0, &je);
    struct buf names = BUF_INIT;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "endpoints"), i, e)
    {
        buf_printf(&names, "\n%s\n", json_string_value(json_object_get(e, "name")) ?: "");
    }
    json_decref(doc);
    buf_append_char(&names, '\0');
    for (size_t k = 0; k < sc->n_reps; k++) {
        struct replica *rp = &sc->reps[k];
        if (rp->phase != D_UNLISTING)
            continue;
        char needle[300];
        snprintf(needle, sizeof needle, "\n%s\n", engine_of(sc, rp)->name);
        if (!strstr(names.data, needle)) {
            rp->phase = D_QUIESCING;
            rp->phase_ns = clock_monotonic_ns();
        }
    }
    buf_free(&names);
}

static void on_idle_answer(struct replica *rp, int which, enum http_call_error err, int status,
                           const char *body, size_t len)
{
    rp->poll[which] = NULL;
    /* the engine: nothing running or waiting; its sidecar: nothing in flight */
    static const char *const engine[] = {"vllm:num_requests_running",
                                         "vllm:num_requests_waiting"};
    static const char *const sidecar[] = {"tandem_router_endpoint_inflight"};
    double v[2];
    bool seen[2];
    bool ok = err == HTTP_CALL_OK && status == 200 &&
              sum_page(body, len, which ? sidecar : engine, which ? 1 : 2, v, seen);
    if (!ok || v[0] > 0 || (!which && v[1] > 0))
        rp->busy = true;
    if (--rp->answers > 0)
        return;
    rp->quiet = rp->busy ? 0 : rp->quiet + 1;
    struct up_scaler *sc = rp->sc;
    bool overdue = clock_monotonic_ns() - rp->phase_ns > (uint64_t)DRAIN_MAX_S * 1000000000ull;
    if (rp->quiet >= 2 || overdue) {
        struct up_proc *e = engine_of(sc, rp), *side = sidecar_of(sc, rp);
        if (overdue)
            LOG_W(LOG_C, "autoscale %s: %s still busy after %d s: stopping it anyway",
                  role_str(sc->role), e->name, DRAIN_MAX_S);
        else
            LOG_I(LOG_C, "autoscale %s: %s drained: stopping it", role_str(sc->role), e->name);
        rp->phase = D_STOPPING;
        if (side)
            up_proc_signal(side, SIGTERM);
        up_proc_signal(e, SIGTERM);
    }
}

static void on_idle_engine(enum http_call_error err, int status, const char *body, size_t len,
                           void *ctx)
{
    on_idle_answer(ctx, 0, err, status, body, len);
}

static void on_idle_sidecar(enum http_call_error err, int status, const char *body, size_t len,
                            void *ctx)
{
    on_idle_answer(ctx, 1, err, status, body, len);
}

static void poll_idle(struct up_scaler *sc, struct replica *rp)
{
    struct up *u = sc->u;
    struct up_proc *e = engine_of(sc, rp), *side = sidecar_of(sc, rp);
    if (rp->poll[0] || rp->poll[1])
        return;
    rp->busy = false;
    rp->answers = side ? 2 : 1;
    struct http_call_request req = {
        .method = "GET", .host = "127.0.0.1", .port = e->port, .path = "/metrics",
        .timeout_ms = 2000,
    };
    rp->poll[0] = http_fetch(u->client, &req, 4 << 20, on_idle_engine, rp);
    if (side) {
        req.port = side->port;
        req.path = "/sidecar/metrics";
        rp->poll[1] = http_fetch(u->client, &req, 4 << 20, on_idle_sidecar, rp);
    }
}

void up_scale_tick(struct up *u)
{
    if (!u->endpoints_file[0] || u->shutting_down)
        return;
    uint64_t now = clock_monotonic_ns();
    bool changed = false;
    for (int r = 0; r < 2; r++) {
        struct up_scaler *sc = u->scalers[r];
        if (!sc)
            continue;
        bool unlisting = false;
        int running = 0;
        for (size_t k = 0; k < sc->n_reps; k++)
            running += !engine_of(sc, &sc->reps[k])->parked;
        metrics_gauge_set(sc->m_running, running);
        for (size_t k = 0; k < sc->n_reps; k++) {
            struct replica *rp = &sc->reps[k];
            struct up_proc *e = engine_of(sc, rp);
            /* a started replica joins the router once it answers */
            if (active(sc, rp) && !rp->listed && up_replica_ready(u, e)) {
                rp->listed = true;
                changed = true;
                LOG_I(LOG_C, "autoscale %s: %s ready: routing to it", role_str(sc->role),
                      e->name);
            }
            if (rp->phase == D_UNLISTING)
                unlisting = true;
            if (rp->phase == D_QUIESCING && now - rp->last_poll_ns >= DRAIN_POLL_MS * 1000000ull) {
                rp->last_poll_ns = now;
                poll_idle(sc, rp);
            }
        }
        if (unlisting && !sc->router_call) {
            struct http_call_request req = {
                .method = "GET", .host = "127.0.0.1", .port = u->router_admin_port,
                .path = "/debug/endpoints", .timeout_ms = 2000,
            };
            sc->router_call = http_fetch(u->client, &req, 8 << 20, on_router_eps, sc);
        }
    }
    if (changed)
        write_endpoints(u);
}

bool up_scale_exited(struct up *u, struct up_proc *p)
{
    if (!p->draining)
        return false;
    p->state = ST_EXITED;
    struct up_proc *e = p->role == ROLE_SIDECAR ? &u->procs[p->partner] : p;
    struct up_proc *side = e->partner >= 0 ? &u->procs[e->partner] : NULL;
    if (e->pid == 0 && (!side || side->pid == 0)) {
        e->draining = false;
        e->parked = true;
        if (side) {
            side->draining = false;
            side->parked = true;
        }
        for (int r = 0; r < 2; r++) {
            struct up_scaler *sc = u->scalers[r];
            for (size_t k = 0; sc && k < sc->n_reps; k++) {
                if (engine_of(sc, &sc->reps[k]) == e) {
                    sc->reps[k].phase = D_NONE;
                    LOG_I(LOG_C, "autoscale %s: %s stopped", role_str(sc->role), e->name);
                }
            }
        }
    }
    return true;
}

/* --- set-up and status -------------------------------------------------------------------- */

static void metrics_handler(struct http_exchange *ex, void *ctx)
{
    struct up *u = ctx;
    const struct http_request *q = http_exchange_request(ex);
    if (strcmp(q->path, "/metrics") != 0) {
        http_respond(ex, 404, "text/plain", "/metrics", 8);
        return;
    }
    struct buf b = BUF_INIT;
    metrics_render(u->metrics, &b);
    http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

bool up_scale_init(struct up *u)
{
    u->metrics = metrics_registry_new();
    static const char *const role_l[] = {"role"};
    static const char *const rm_l[] = {"role", "metric"};
    struct metrics_family *f_desired = metrics_family_new(
        u->metrics, METRICS_GAUGE, "tandem_up_desired_replicas",
        "Replicas the autoscaler wants per role", role_l, 1, NULL, 0);
    struct metrics_family *f_running = metrics_family_new(
        u->metrics, METRICS_GAUGE, "tandem_up_running_replicas",
        "Replicas with processes per role (starting, serving or draining): what the role "
        "costs now",
        role_l, 1, NULL, 0);
    struct metrics_family *f_ready = metrics_family_new(
        u->metrics, METRICS_GAUGE, "tandem_up_ready_replicas", "Ready replicas per role", role_l,
        1, NULL, 0);
    struct metrics_family *f_events = metrics_family_new(
        u->metrics, METRICS_COUNTER, "tandem_up_scaled_replicas_total",
        "Replicas added (direction=up) or drained (down) by the autoscaler",
        (const char *const[]){"role", "direction"}, 2, NULL, 0);
    struct metrics_family *f_value = metrics_family_new(
        u->metrics, METRICS_GAUGE, "tandem_up_autoscaler_metric_value",
        "The last value of each autoscaling metric (average per pod or the role's total)", rm_l,
        2, NULL, 0);
    struct metrics_family *f_target = metrics_family_new(
        u->metrics, METRICS_GAUGE, "tandem_up_autoscaler_metric_target",
        "Each autoscaling metric's target", rm_l, 2, NULL, 0);
    for (int r = 0; r < 2; r++) {
        const struct ms_autoscaling *as = r ? &u->cr.decode_as : &u->cr.prefill_as;
        enum up_role role = r ? ROLE_DECODE : ROLE_PREFILL;
        if (!as->on || (r == 0 && !u->cr.prefill))
            continue;
        struct up_scaler *sc = xcalloc(1, sizeof *sc);
        sc->u = u;
        sc->role = role;
        sc->as = as;
        ms_hpa_init(&sc->hpa, &as->policy);
        sc->interval_s = u->autoscale_interval_s > 0 ? u->autoscale_interval_s : as->polling_s;
        for (size_t i = 0; i < u->n; i++)
            sc->n_reps += u->procs[i].role == role;
        sc->reps = xcalloc(sc->n_reps ? sc->n_reps : 1, sizeof *sc->reps);
        size_t k = 0;
        for (size_t i = 0; i < u->n; i++) {
            if (u->procs[i].role != role)
                continue;
            sc->reps[k].sc = sc;
            sc->reps[k].engine = i;
            sc->reps[k].listed = !u->procs[i].parked;
            k++;
        }
        const char *rl[] = {role_str(role)};
        sc->m_desired = metrics_series_get(f_desired, rl);
        sc->m_ready = metrics_series_get(f_ready, rl);
        sc->m_running = metrics_series_get(f_running, rl);
        sc->m_up = metrics_series_get(f_events, (const char *const[]){role_str(role), "up"});
        sc->m_down = metrics_series_get(f_events, (const char *const[]){role_str(role), "down"});
        metrics_gauge_set(sc->m_desired, up_role_desired(u, role));
        metrics_gauge_set(sc->m_running, up_role_desired(u, role));
        for (size_t i = 0; i < as->n_metrics; i++) {
            const char *l[] = {role_str(role), as->metrics[i].metric};
            sc->m_value[i] = metrics_series_get(f_value, l);
            sc->m_target[i] = metrics_series_get(f_target, l);
            metrics_gauge_set(sc->m_target[i], as->metrics[i].target);
        }
        uv_timer_init(u->loop, &sc->timer);
        sc->timer.data = sc;
        uint64_t ms = (uint64_t)(sc->interval_s * 1000);
        uv_timer_start(&sc->timer, on_round, ms ? ms : 1, ms ? ms : 1);
        u->scalers[r] = sc;
        LOG_I(LOG_C, "autoscale %s: %d-%d replicas, a decision every %g s", role_str(role),
              as->min_replicas, as->max_replicas, sc->interval_s);
    }
    if (u->endpoints_file[0] && !write_endpoints(u)) {
        fprintf(stderr, "tandem up: cannot write %s\n", u->endpoints_file);
        return false;
    }
    if (u->metrics_port) {
        struct http_server_config hc = {.host = "127.0.0.1", .port = u->metrics_port,
                                        .handler = metrics_handler, .handler_ctx = u,
                                        .server_name = "up-metrics"};
        int e = http_server_start(u->loop, &hc, &u->metrics_srv);
        if (e) {
            fprintf(stderr, "tandem up: --metrics-port %d: %s\n", u->metrics_port, uv_strerror(e));
            u->metrics_srv = NULL;
            return false;
        }
    }
    return true;
}

static void on_scaler_timer_closed(uv_handle_t *h)
{
    struct up_scaler *sc = h->data;
    free(sc->reps);
    free(sc);
}

void up_scale_close(struct up *u)
{
    for (int r = 0; r < 2; r++) {
        struct up_scaler *sc = u->scalers[r];
        if (!sc)
            continue;
        /* in-flight calls belong to u->client, which finish() has freed (no callbacks) */
        u->scalers[r] = NULL;
        uv_timer_stop(&sc->timer);
        uv_close((uv_handle_t *)&sc->timer, on_scaler_timer_closed);
    }
    if (u->metrics_srv) {
        http_server_stop(u->metrics_srv, NULL, NULL);
        u->metrics_srv = NULL;
    }
}

void up_scale_status(const struct up *u, struct buf *b)
{
    for (int r = 0; r < 2; r++) {
        const struct up_scaler *sc = u->scalers[r];
        if (!sc)
            continue;
        int draining = 0;
        for (size_t k = 0; k < sc->n_reps; k++)
            draining += engine_of(sc, &sc->reps[k])->draining;
        buf_printf(b, "%sautoscaling %s: %d replicas (min %d, max %d)%s", r && u->scalers[0] ? "; " : "\n",
                   role_str(sc->role), up_role_desired(u, sc->role), sc->as->min_replicas,
                   sc->as->max_replicas, draining ? ", draining" : "");
        if (draining)
            buf_printf(b, " %d", draining);
    }
    if (u->scalers[0] || u->scalers[1])
        buf_append_char(b, '\n');
}

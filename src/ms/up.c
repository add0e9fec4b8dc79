/* `tandem up`: one ModelService as processes on this machine (modelservice.md, "tandem
 * up"). prefill.replicas engines, decode.replicas engines (each behind a `tandem sidecar`
 * when there is a prefill section) and the router in front, with a status block like
 * `kubectl get modelservice` and a pod table, restarts like a Deployment, and a clean stop.
 *
 * Processes: fork + exec of this binary (/proc/self/exe), not uv_spawn, because the child
 * must run code before exec: prctl(PR_SET_PDEATHSIG, SIGTERM) (children die with us even
 * when we are SIGKILLed), setpgid (a terminal's Ctrl-C reaches only us, so we stop the
 * children in order instead of racing their exits against our restart logic), stdin from
 * /dev/null and stdout onto stderr (our stdout carries only the status output). Signals
 * are blocked across fork so libuv's handlers never run in a child before exec.
 *
 * Signals go through libuv: uv_signal for SIGCHLD (reap with waitpid(WNOHANG), then
 * restart with backoff 200 ms doubling to 5 s, reset after 10 s up) and for SIGINT and
 * SIGTERM (SIGTERM every child, SIGKILL whatever is left after 5 s, exit 0 once all are
 * reaped; a second signal sends SIGKILL at once). Readiness: a 200 ms uv_timer probes
 * every process with http_fetch (engines and sidecars GET /health, the router GET
 * /ready); "serving" is printed once every process is ready and the router reports every
 * endpoint healthy (/debug/endpoints), so the first request already sees the whole pool. */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/log.h"
#include "base/metrics.h"
#include "ms/ms.h"
#include "ms/up_internal.h"
#include "net/http_client.h"
#include "net/loop.h"

/* --- output ---------------------------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One write(2) per block: the children share our stderr and the harness merges the two,
 * so a block never interleaves with their log lines mid-line. */
static void out_buf(struct buf *b)
{
    if (b->len)
        write_all(1, b->data, b->len);
}

static void fmt_age(char *out, size_t cap, uint64_t ns)
{
    uint64_t s = ns / 1000000000ull;
    if (s < 120)
        snprintf(out, cap, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(out, cap, "%llum%llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else
        snprintf(out, cap, "%lluh%llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
}

static const char *state_str(const struct up_proc *p)
{
    switch (p->state) {
    case ST_STARTING:
        return "Starting";
    case ST_RUNNING:
        return "Running";
    case ST_RESTARTING:
        return p->restarts >= 3 ? "CrashLoopBackOff" : "Restarting";
    case ST_TERMINATING:
        return "Terminating";
    case ST_EXITED:
        return "Exited";
    }
    return "?";
}

/* A decode pod is ready when its engine and (P/D) its sidecar are. */
bool up_replica_ready(const struct up *u, const struct up_proc *p)
{
    return p->ready && (p->partner < 0 || u->procs[p->partner].ready);
}

static void counts(const struct up *u, int *p_ready, int *d_ready)
{
    *p_ready = *d_ready = 0;
    for (size_t i = 0; i < u->n; i++) {
        const struct up_proc *p = &u->procs[i];
        if (p->parked)
            continue;
        if (p->role == ROLE_PREFILL && p->ready)
            (*p_ready)++;
        if (p->role == ROLE_DECODE && up_replica_ready(u, p))
            (*d_ready)++;
    }
}

/* Everything the status shows except AGE: a change prints the block again. */
static void signature(const struct up *u, char *out, size_t cap)
{
    size_t off = 0;
    out[0] = 0;
    for (size_t i = 0; i < u->n && off < cap; i++) {
        const struct up_proc *p = &u->procs[i];
        int w = snprintf(out + off, cap - off, "%d/%s/%d/%d/%d%d;", p->ready, state_str(p),
                         p->restarts, (int)p->pid, p->parked, p->draining);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

static void print_status(struct up *u)
{
    int pr, dr;
    counts(u, &pr, &dr);
    char age[32], ready_p[32], ready_d[32];
    fmt_age(age, sizeof age, clock_monotonic_ns() - u->start_ns);
    if (u->cr.prefill)
        snprintf(ready_p, sizeof ready_p, "%d/%d", pr, up_role_desired(u, ROLE_PREFILL));
    else
        snprintf(ready_p, sizeof ready_p, "-");
    snprintf(ready_d, sizeof ready_d, "%d/%d", dr, up_role_desired(u, ROLE_DECODE));

    size_t wname = 4;
    for (size_t i = 0; i < u->n; i++) {
        size_t l = strlen(u->procs[i].name);
        if (l > wname)
            wname = l;
    }
    size_t wcr = strlen(u->cr.name) > 4 ? strlen(u->cr.name) : 4;

    struct buf b = BUF_INIT;
    buf_printf(&b, "\n%-*s  %-16s  %-13s  %-13s  %-12s  %-12s  %s\n", (int)wcr, "NAME",
               "DECOUPLE SCALING", "PREFILL READY", "PREFILL AVAIL", "DECODE READY", "DECODE AVAIL",
               "AGE");
    char pavail[16];
    if (u->cr.prefill)
        snprintf(pavail, sizeof pavail, "%d", pr);
    else
        snprintf(pavail, sizeof pavail, "-");
    buf_printf(&b, "%-*s  %-16s  %-13s  %-13s  %-12s  %-12d  %s\n", (int)wcr, u->cr.name,
               u->cr.decouple_scaling ? "true" : "false", ready_p, pavail, ready_d, dr, age);
    buf_printf(&b, "\n%-*s  %-8s  %-5s  %-16s  %-8s  %-5s  %s\n", (int)wname, "NAME", "ROLE",
               "READY", "STATUS", "RESTARTS", "PORT", "PID");
    for (size_t i = 0; i < u->n; i++) {
        const struct up_proc *p = &u->procs[i];
        if (p->parked)
            continue;
        char pid[24] = "-";
        if (p->pid > 0)
            snprintf(pid, sizeof pid, "%d", (int)p->pid);
        buf_printf(&b, "%-*s  %-8s  %-5s  %-16s  %-8d  %-5d  %s\n", (int)wname, p->name,
                   role_names[p->role], p->ready ? "1/1" : "0/1",
                   p->draining ? "Draining" : state_str(p), p->restarts, p->port, pid);
    }
    up_scale_status(u, &b);
    buf_append_char(&b, '\n');
    out_buf(&b);
    buf_free(&b);
}

void up_maybe_print(struct up *u)
{
    if (!u->all_up_once || u->shutting_down)
        return;
    char sig[sizeof u->last_sig];
    signature(u, sig, sizeof sig);
    if (strcmp(sig, u->last_sig) != 0) {
        memcpy(u->last_sig, sig, sizeof sig);
        print_status(u);
    }
}

/* --- processes ------------------------------------------------------------------------- */

static void on_restart_timer(uv_timer_t *t);

void up_proc_start(struct up *u, struct up_proc *p)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only, then exec. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++)
            sigaction(s, &dfl, NULL); /* fails harmlessly on SIGKILL/SIGSTOP */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1); /* we died between fork and prctl */
        setpgid(0, 0);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            if (nul > 2)
                close(nul);
        }
        dup2(2, 1);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (p->use_path)
            execvp(p->argv[0], p->argv);
        else
            execv("/proc/self/exe", p->argv);
        static const char msg[] = "tandem up: exec failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    p->gen++;
    p->ready = false;
    if (pid < 0) {
        LOG_E("up", "fork for %s: %s", p->name, strerror(fork_errno));
        p->pid = 0;
        p->state = ST_RESTARTING;
        uv_timer_start(&p->restart_timer, on_restart_timer, p->backoff_ms, 0);
        return;
    }
    setpgid(pid, pid); /* also in the child: whichever runs first */
    p->pid = pid;
    p->state = ST_STARTING;
    p->started_ns = clock_monotonic_ns();
    (void)u;
}

static void on_restart_timer(uv_timer_t *t)
{
    struct up_proc *p = t->data;
    if (p->up->shutting_down)
        return;
    LOG_I("up", "starting %s again", p->name);
    up_proc_start(p->up, p);
    up_maybe_print(p->up);
}

static bool all_done(const struct up *u)
{
    for (size_t i = 0; i < u->n; i++) {
        if (u->procs[i].pid > 0)
            return false;
    }
    return true;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(struct up *u)
{
    uv_timer_stop(&u->probe_timer);
    uv_timer_stop(&u->status_timer);
    uv_timer_stop(&u->kill_timer);
    if (u->client) {
        http_client_free(u->client); /* cancels probes; their callbacks do not fire */
        u->client = NULL;
    }
    uv_close((uv_handle_t *)&u->probe_timer, on_closed);
    uv_close((uv_handle_t *)&u->status_timer, on_closed);
    uv_close((uv_handle_t *)&u->kill_timer, on_closed);
    uv_close((uv_handle_t *)&u->sig_chld, on_closed);
    uv_close((uv_handle_t *)&u->sig_int, on_closed);
    uv_close((uv_handle_t *)&u->sig_term, on_closed);
    for (size_t i = 0; i < u->n; i++)
        uv_close((uv_handle_t *)&u->procs[i].restart_timer, on_closed);
    up_scale_close(u);
}

static void on_sigchld(uv_signal_t *h, int signum)
{
    struct up *u = h->data;
    for (;;) {
        int st = 0;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            break;
        struct up_proc *p = NULL;
        for (size_t i = 0; i < u->n; i++) {
            if (u->procs[i].pid == pid)
                p = &u->procs[i];
        }
        if (!p)
            continue;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
        p->pid = 0;
        p->ready = false;
        p->last_exit = code;
        if (p->probe) {
            http_call_cancel(p->probe);
            p->probe = NULL;
        }
        if (u->shutting_down) {
            p->state = ST_EXITED;
            continue;
        }
        if (up_scale_exited(u, p))
            continue; /* scaled down: parked, not restarted */
        uint64_t ran_ms = (clock_monotonic_ns() - p->started_ns) / 1000000ull;
        if (ran_ms >= UP_BACKOFF_RESET_MS)
            p->backoff_ms = UP_BACKOFF_MIN_MS;
        p->restarts++;
        p->state = ST_RESTARTING;
        LOG_W("up", "restarting %s (exit code %d) in %llu ms", p->name, code,
              (unsigned long long)p->backoff_ms);
        uv_timer_start(&p->restart_timer, on_restart_timer, p->backoff_ms, 0);
        p->backoff_ms *= 2;
        if (p->backoff_ms > UP_BACKOFF_MAX_MS)
            p->backoff_ms = UP_BACKOFF_MAX_MS;
    }
    if (u->shutting_down) {
        if (all_done(u)) {
            LOG_I("up", "every process stopped");
            finish(u);
        }
        return;
    }
    up_maybe_print(u);
}

void up_proc_signal(struct up_proc *p, int sig)
{
    if (p->pid <= 0)
        return;
    /* Each child leads its own process group: signal the group, so whatever an engine
     * started goes too. */
    if (kill(-p->pid, sig) != 0)
        kill(p->pid, sig);
    p->state = ST_TERMINATING;
}

static void kill_all(struct up *u, int sig)
{
    /* The router first, so clients stop being routed to engines about to go away. */
    for (size_t k = u->n; k-- > 0;)
        up_proc_signal(&u->procs[k], sig);
}

static void on_kill_timer(uv_timer_t *t)
{
    struct up *u = t->data;
    LOG_W("up", "processes still running after %d s: SIGKILL", UP_TERM_GRACE_MS / 1000);
    kill_all(u, SIGKILL);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct up *u = h->data;
    if (u->signals++ > 0) {
        LOG_W("up", "second signal %d: SIGKILL to every process", signum);
        kill_all(u, SIGKILL);
        return;
    }
    LOG_I("up", "signal %d: stopping every process", signum);
    u->shutting_down = true;
    for (size_t i = 0; i < u->n; i++) {
        uv_timer_stop(&u->procs[i].restart_timer);
        if (u->procs[i].pid == 0)
            u->procs[i].state = ST_EXITED;
    }
    uv_timer_stop(&u->probe_timer);
    uv_timer_stop(&u->status_timer);
    if (all_done(u)) {
        finish(u);
        return;
    }
    kill_all(u, SIGTERM);
    uv_timer_start(&u->kill_timer, on_kill_timer, UP_TERM_GRACE_MS, 0);
}

/* --- readiness ------------------------------------------------------------------------- */

static void on_eps(enum http_call_error err, int status, const char *body, size_t len, void *ctx)
{
    struct up *u = ctx;
    u->eps_call = NULL;
    if (u->serving || u->shutting_down || err != HTTP_CALL_OK || status != 200)
        return;
    json_error_t je;
    json_t *doc = json_loadb(body, len, 0, &je);
    json_t *eps = json_object_get(doc, "endpoints");
    size_t n = json_array_size(eps), healthy = 0;
    for (size_t i = 0; i < n; i++) {
        if (json_is_true(json_object_get(json_array_get(eps, i), "healthy")))
            healthy++;
    }
    json_decref(doc);
    if (n == 0 || healthy < n)
        return;
    u->serving = true;
    struct buf b = BUF_INIT;
    buf_printf(&b, "tandem up: serving %s on http://%s:%d\n", u->cr.model_name, u->host, u->port);
    buf_printf(&b,
               "  try: curl http://%s:%d/v1/completions -H \"Content-Type: application/json\" "
               "-d '{\"model\": \"%s\", \"prompt\": \"San Francisco is a\", "
               "\"max_tokens\": 16}'\n"
               "  router metrics, /debug/endpoints, POST /debug/schedule: http://127.0.0.1:%d\n"
               "  stop: Ctrl-C\n",
               u->host, u->port, u->cr.model_name, u->router_admin_port);
    out_buf(&b);
    buf_free(&b);
}

static void on_probe(enum http_call_error err, int status, const char *body, size_t len, void *ctx)
{
    struct up_proc *p = ctx;
    p->probe = NULL;
    if (p->probe_gen != p->gen || p->pid == 0)
        return;
    bool ready = err == HTTP_CALL_OK && status == 200;
    p->ready = ready;
    if (ready && p->state == ST_STARTING)
        p->state = ST_RUNNING;
}

static void on_probe_timer(uv_timer_t *t)
{
    struct up *u = t->data;
    if (u->shutting_down)
        return;
    bool all = true;
    for (size_t i = 0; i < u->n; i++) {
        struct up_proc *p = &u->procs[i];
        if (p->parked)
            continue;
        if (!p->ready && !p->draining)
            all = false;
        if (p->pid == 0 || p->probe)
            continue;
        struct http_call_request req = {
            .method = "GET",
            .host = "127.0.0.1",
            .port = p->port,
            .path = p->probe_path,
            .timeout_ms = UP_PROBE_TIMEOUT_MS,
        };
        p->probe_gen = p->gen;
        p->probe = http_fetch(u->client, &req, 64 << 10, on_probe, p);
    }
    if (all)
        u->all_up_once = true;
    if (all && !u->serving && !u->eps_call) {
        struct http_call_request req = {
            .method = "GET",
            .host = "127.0.0.1",
            .port = u->router_admin_port,
            .path = "/debug/endpoints",
            .timeout_ms = UP_PROBE_TIMEOUT_MS,
        };
        u->eps_call = http_fetch(u->client, &req, 1 << 20, on_eps, u);
    }
    up_scale_tick(u);
    up_maybe_print(u);
}

static void on_status_timer(uv_timer_t *t)
{
    struct up *u = t->data;
    if (!u->shutting_down)
        print_status(u);
}

/* --- set-up ---------------------------------------------------------------------------- */

static char **argv_new(void)
{
    return xcalloc(1, sizeof(char *));
}

static char **argv_add(char **av, const char *s)
{
    size_t n = 0;
    while (av[n])
        n++;
    av = xrealloc(av, (n + 2) * sizeof *av);
    av[n] = xstrdup(s);
    av[n + 1] = NULL;
    return av;
}

static char **argv_addf(char **av, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char **argv_addf(char **av, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return argv_add(av, tmp);
}

static void argv_free(char **av)
{
    if (!av)
        return;
    for (size_t i = 0; av[i]; i++)
        free(av[i]);
    free(av);
}

static bool parse_host(const char *host, struct sockaddr_storage *ss, socklen_t *len, int port)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return true;
    }
    return false;
}

/* Whether host:port can be bound now (SO_REUSEADDR, as the servers do). */
bool up_port_free(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (!parse_host(host, &ss, &len, port))
        return true; /* a name we cannot check: let the process find out */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

static int next_port(int *cursor, int avoid)
{
    while (*cursor <= 65535) {
        int p = (*cursor)++;
        if (p == avoid)
            continue;
        if (up_port_free("127.0.0.1", p))
            return p;
    }
    return -1;
}

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        return false;
    char *copy = xstrdup(path), *save = NULL;
    bool found = false;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", *dir ? dir : ".", prog);
        struct stat st;
        found = stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

/* --engine vllm: the section's first container's command + args, then --host/--port. */
static char **vllm_argv(const struct up *u, json_t *section, int port)
{
    char **av = argv_new();
    json_t *c = json_array_get(json_object_get(section, "containers"), 0);
    json_t *cmd = json_object_get(c, "command"), *args = json_object_get(c, "args");
    if (json_array_size(cmd) == 0) {
        av = argv_add(av, "vllm");
        av = argv_add(av, "serve");
        av = argv_add(av, u->cr.uri_kind == MS_URI_HF ? u->cr.hf_model : u->cr.model_name);
    }
    size_t i;
    json_t *v;
    json_array_foreach(cmd, i, v)
    {
        if (json_is_string(v))
            av = argv_add(av, json_string_value(v));
    }
    json_array_foreach(args, i, v)
    {
        if (json_is_string(v))
            av = argv_add(av, json_string_value(v));
    }
    av = argv_add(av, "--served-model-name");
    av = argv_add(av, u->cr.model_name);
    av = argv_add(av, "--host");
    av = argv_add(av, "127.0.0.1");
    av = argv_add(av, "--port");
    av = argv_addf(av, "%d", port);
    return av;
}

static char **engine_argv(const struct up *u, json_t *section, const char *pod, int port)
{
    if (u->vllm)
        return vllm_argv(u, section, port);
    char **av = argv_new();
    av = argv_add(av, "tandem");
    av = argv_add(av, "sim");
    av = argv_add(av, "--model");
    av = argv_add(av, u->cr.model_name);
    av = argv_add(av, "--host");
    av = argv_add(av, "127.0.0.1");
    av = argv_add(av, "--port");
    av = argv_addf(av, "%d", port);
    av = argv_add(av, "--pod-name");
    av = argv_add(av, pod);
    av = argv_add(av, "--profile");
    av = argv_add(av, u->profile);
    av = argv_add(av, "--stats-interval");
    av = argv_add(av, "0");
    return av;
}

static struct up_proc *add_proc(struct up *u, enum up_role role, const char *name, int port,
                                const char *probe, char **argv)
{
    u->procs = xrealloc(u->procs, (u->n + 1) * sizeof *u->procs);
    struct up_proc *p = &u->procs[u->n++];
    memset(p, 0, sizeof *p);
    p->role = role;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->port = port;
    p->probe_path = probe;
    p->argv = argv;
    p->partner = -1;
    p->backoff_ms = UP_BACKOFF_MIN_MS;
    return p;
}

static const char up_usage[] =
    "tandem up -m MSVC.yaml [-b BASECONFIG.yaml] [--port 8000] [--host 127.0.0.1]\n"
    "                 [--engine sim|vllm] [--profile fast] [--base-port N] [--status-interval S]";
static const char up_desc[] =
    "Runs one ModelService on this machine: spec.prefill.replicas engines and\n"
    "spec.decode.replicas engines (each behind a `tandem sidecar` when the CR has a prefill\n"
    "section: llm-d's P/D layout), and `tandem router` on HOST:PORT in front of them (its P/D\n"
    "preset when there are prefill pods). Engine and sidecar ports are taken from --base-port\n"
    "(default PORT+1) upward, skipping ports in use.\n\n"
    "Prints a status block like `kubectl get modelservice` and a pod table (NAME ROLE READY\n"
    "STATUS RESTARTS PORT PID) when everything is ready and again whenever it changes, and\n"
    "\"tandem up: serving MODEL on http://HOST:PORT\" once the router sees every endpoint\n"
    "healthy. A process that exits is restarted (backoff 200 ms doubling to 5 s), as a\n"
    "Deployment would. SIGINT (Ctrl-C) or SIGTERM stops every process (SIGKILL after 5 s) and\n"
    "exits 0; the processes also die when tandem up is killed. Their logs go to stderr.\n\n"
    "-b: the BaseConfig is only checked to be readable for now; the router uses its built-in\n"
    "P/D preset, not the BaseConfig's EPP config.\n"
    "--engine vllm: each section's first container's command and args (plus --served-model-name,\n"
    "--host and --port) instead of simulators; needs vllm on PATH.";

/* The processes, their ports and command lines (nothing starts yet). false when the
 * ports ran out. */
static bool plan_processes(struct up *u, int base_port)
{
    /* The processes, ports as in scripts/up.sh: prefill engines, then per decode pod its
     * sidecar and its engine. */
    int cursor = base_port, port = u->port;
    struct buf allowed = BUF_INIT; /* the sidecars' --allowed-prefillers */
    bool pd = u->cr.prefill != NULL && u->cr.prefill_replicas > 0;
    char name[160];
    /* Autoscaled roles: every replica up to maxReplicas, those above the count parked. */
    long long n_prefill = u->cr.prefill_replicas, n_decode = u->cr.decode_replicas;
    if (u->cr.prefill_as.on && u->cr.prefill_as.max_replicas > n_prefill)
        n_prefill = u->cr.prefill_as.max_replicas;
    if (u->cr.decode_as.on && u->cr.decode_as.max_replicas > n_decode)
        n_decode = u->cr.decode_as.max_replicas;
    for (long long i = 0; pd && i < n_prefill; i++) {
        int p = next_port(&cursor, port);
        if (p < 0) {
            buf_free(&allowed);
            return false;
        }
        snprintf(name, sizeof name, "%s-prefill-%lld", u->cr.name, i);
        struct up_proc *e =
            add_proc(u, ROLE_PREFILL, name, p, "/health", engine_argv(u, u->cr.prefill, name, p));
        e->use_path = u->vllm; /* vllm from PATH; sims are this binary */
        e->replica = (int)i;
        e->parked = i >= u->cr.prefill_replicas;
    }
    /* Sidecars may call exactly these prefillers (SSRF protection is on by default). */
    for (size_t i = 0; i < u->n; i++)
        if (u->procs[i].role == ROLE_PREFILL)
            buf_printf(&allowed, "%s127.0.0.1:%d", allowed.len ? "," : "", u->procs[i].port);
    for (long long i = 0; i < n_decode; i++) {
        int sp = 0;
        if (pd && (sp = next_port(&cursor, port)) < 0) {
            buf_free(&allowed);
            return false;
        }
        int ep = next_port(&cursor, port);
        if (ep < 0) {
            buf_free(&allowed);
            return false;
        }
        snprintf(name, sizeof name, "%s-decode-%lld", u->cr.name, i);
        struct up_proc *e =
            add_proc(u, ROLE_DECODE, name, ep, "/health", engine_argv(u, u->cr.decode, name, ep));
        e->use_path = u->vllm;
        e->replica = (int)i;
        e->parked = i >= u->cr.decode_replicas;
        if (pd) {
            char **av = argv_new();
            av = argv_add(av, "tandem");
            av = argv_add(av, "sidecar");
            av = argv_add(av, "--host");
            av = argv_add(av, "127.0.0.1");
            av = argv_add(av, "--port");
            av = argv_addf(av, "%d", sp);
            av = argv_add(av, "--vllm-port");
            av = argv_addf(av, "%d", ep);
            av = argv_add(av, "--allowed-prefillers");
            av = argv_add(av, allowed.len ? allowed.data : "127.0.0.1:1");
            char sname[200];
            snprintf(sname, sizeof sname, "%s-sidecar", name);
            add_proc(u, ROLE_SIDECAR, sname, sp, "/health", av);
            u->procs[u->n - 1].partner = (int)u->n - 2;
            u->procs[u->n - 2].partner = (int)u->n - 1;
            u->procs[u->n - 1].replica = (int)i;
            u->procs[u->n - 1].parked = i >= u->cr.decode_replicas;
        }
    }
    {
        char **av = argv_new();
        av = argv_add(av, "tandem");
        av = argv_add(av, "router");
        av = argv_add(av, "--host");
        av = argv_add(av, u->host);
        av = argv_add(av, "--port");
        av = argv_addf(av, "%d", port);
        u->router_admin_port = next_port(&cursor, port);
        if (u->router_admin_port < 0) {
            buf_free(&allowed);
            return false;
        }
        av = argv_add(av, "--metrics-port");
        av = argv_addf(av, "%d", u->router_admin_port);
        av = argv_add(av, "--workers");
        av = argv_add(av, "2");
        if (u->endpoints_file[0]) {
            /* Autoscaling: the router follows a file we rewrite as replicas come and go. */
            av = argv_add(av, "--endpoints-file");
            av = argv_add(av, u->endpoints_file);
        }
        for (size_t i = 0; i < u->n && !u->endpoints_file[0]; i++) {
            const struct up_proc *p = &u->procs[i];
            if (p->role == ROLE_SIDECAR)
                continue;
            int addr_port = p->partner >= 0 ? u->procs[p->partner].port : p->port;
            av = argv_add(av, "--endpoint");
            av = argv_addf(av, "name=%s,addr=127.0.0.1:%d,role=%s", p->name, addr_port,
                           p->role == ROLE_PREFILL ? "prefill" : "decode");
        }
        snprintf(name, sizeof name, "%s-router", u->cr.name);
        add_proc(u, ROLE_ROUTER, name, port, "/ready", av);
        u->router = u->n - 1;
    }
    buf_free(&allowed);
    return true;
}

/* Starts every process and runs until Ctrl-C / SIGTERM has stopped them all. */
static bool run_processes(struct up *u, const char *msvc)
{
    signal(SIGPIPE, SIG_IGN);
    u->loop = xcalloc(1, sizeof *u->loop);
    uv_loop_init(u->loop);
    struct http_client_config cc = {.max_idle_per_upstream = 2,
                                    .idle_timeout_ms = 2000,
                                    .connect_timeout_ms = UP_PROBE_TIMEOUT_MS};
    u->client = http_client_new(u->loop, &cc);
    uv_timer_init(u->loop, &u->probe_timer);
    uv_timer_init(u->loop, &u->status_timer);
    uv_timer_init(u->loop, &u->kill_timer);
    u->probe_timer.data = u->status_timer.data = u->kill_timer.data = u;
    uv_signal_init(u->loop, &u->sig_chld);
    uv_signal_init(u->loop, &u->sig_int);
    uv_signal_init(u->loop, &u->sig_term);
    u->sig_chld.data = u->sig_int.data = u->sig_term.data = u;
    uv_signal_start(&u->sig_chld, on_sigchld, SIGCHLD);
    uv_signal_start(&u->sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&u->sig_term, on_stop_signal, SIGTERM);
    u->start_ns = clock_monotonic_ns();

    {
        struct buf b = BUF_INIT;
        buf_printf(&b, "tandem up: %s (%s, model %s): %s\n", u->cr.name, msvc, u->cr.model_name,
                   u->cr.prefill && u->cr.prefill_replicas > 0 ? "prefill/decode disaggregated"
                                                               : "aggregated");
        for (size_t i = 0; i < u->n; i++) {
            const struct up_proc *p = &u->procs[i];
            if (p->parked)
                continue;
            buf_printf(&b, "tandem up: %-8s %s on %s:%d\n", role_names[p->role], p->name,
                       p->role == ROLE_ROUTER ? u->host : "127.0.0.1", p->port);
        }
        out_buf(&b);
        buf_free(&b);
    }
    for (size_t i = 0; i < u->n; i++) {
        struct up_proc *p = &u->procs[i];
        p->up = u;
        uv_timer_init(u->loop, &p->restart_timer);
        p->restart_timer.data = p;
    }
    if (!up_scale_init(u)) {
        u->shutting_down = true;
        finish(u);
        loop_run_and_close(u->loop);
        uv_loop_close(u->loop);
        free(u->loop);
        metrics_registry_free(u->metrics);
        return false;
    }
    for (size_t i = 0; i < u->n; i++)
        if (!u->procs[i].parked)
            up_proc_start(u, &u->procs[i]);
    uv_timer_start(&u->probe_timer, on_probe_timer, UP_PROBE_MS, UP_PROBE_MS);
    if (u->status_interval_s > 0) {
        uint64_t ms = (uint64_t)(u->status_interval_s * 1000.0);
        if (ms == 0)
            ms = 1;
        uv_timer_start(&u->status_timer, on_status_timer, ms, ms);
    }
    uv_run(u->loop, UV_RUN_DEFAULT);
    loop_run_and_close(u->loop);
    uv_loop_close(u->loop);
    free(u->loop);
    metrics_registry_free(u->metrics);
    return true;
}

int up_main(int argc, char **argv)
{
    const char *msvc = NULL, *base = NULL, *host = "127.0.0.1", *engine = "sim", *profile = "fast";
    long long port = 8000, base_port = 0;
    double status_interval = 0, autoscale_interval = 0;
    long long metrics_port = 0;
    const struct flag flags[] = {
        {"--modelservice", "-m", FLAG_STRING, &msvc, "FILE", "the ModelService CR (YAML), required",
         NULL},
        {"--baseconfig", "-b", FLAG_STRING, &base, "FILE",
         "the BaseConfig (checked to be readable; not used yet)", NULL},
        {"--port", NULL, FLAG_INT, &port, "N", "router port (8000)", NULL},
        {"--host", NULL, FLAG_STRING, &host, "ADDR",
         "router listen address (127.0.0.1); engines and sidecars listen on 127.0.0.1", NULL},
        {"--engine", NULL, FLAG_STRING, &engine, "NAME",
         "sim (tandem sim, default) or vllm (the containers' command lines)", NULL},
        {"--profile", NULL, FLAG_STRING, &profile, "NAME",
         "tandem sim profile: fast (default), h100-8b, h100-32b", NULL},
        {"--base-port", NULL, FLAG_INT, &base_port, "N", "first engine/sidecar port (PORT+1)",
         NULL},
        {"--status-interval", NULL, FLAG_DOUBLE, &status_interval, "S",
         "also print the status every S seconds (0 = on change only)", NULL},
        {"--autoscale-interval", NULL, FLAG_DOUBLE, &autoscale_interval, "S",
         "seconds between autoscaling decisions (default: the CR's prometheus.pollingInterval, "
         "else 15 as the HPA)",
         NULL},
        {"--metrics-port", NULL, FLAG_INT, &metrics_port, "N",
         "serve tandem up's /metrics (replicas and scaling decisions per role) on "
         "127.0.0.1:N (0 = off)",
         NULL},
    };
    size_t nflags = sizeof flags / sizeof flags[0];
    struct flags_result res;
    char err[1024];
    if (!flags_parse(flags, nflags, argc, argv, &res, err, sizeof err)) {
        fprintf(stderr, "tandem up: %s\n", err);
        return 2;
    }
    if (res.help) {
        flags_print_help(stdout, up_usage, up_desc, flags, nflags);
        return 0;
    }
    if (res.n_positional) {
        fprintf(stderr, "tandem up: unexpected argument '%s'\n", res.positional[0]);
        return 2;
    }
    if (!msvc) {
        fprintf(stderr, "tandem up: -m MSVC.yaml is required (see tandem up --help)\n");
        return 2;
    }
    if (port < 1 || port > 65535) {
        fprintf(stderr, "tandem up: --port: %lld is not a port\n", port);
        return 2;
    }
    if (base_port == 0)
        base_port = port + 1;
    if (base_port < 1 || base_port > 65535) {
        fprintf(stderr, "tandem up: --base-port: %lld is not a port\n", base_port);
        return 2;
    }
    if (!(autoscale_interval >= 0 && autoscale_interval <= 3600) || metrics_port < 0 ||
        metrics_port > 65535) {
        fprintf(stderr, "tandem up: --autoscale-interval must be in [0, 3600] seconds and "
                        "--metrics-port a port\n");
        return 2;
    }
    if (!(status_interval >= 0 && status_interval <= 86400)) {
        fprintf(stderr, "tandem up: --status-interval: must be in [0, 86400] seconds\n");
        return 2;
    }
    bool vllm = false;
    if (!strcmp(engine, "vllm")) {
        vllm = true;
    } else if (strcmp(engine, "sim") != 0) {
        fprintf(stderr, "tandem up: --engine: '%s' is not sim or vllm\n", engine);
        return 2;
    }
    if (base) {
        FILE *f = fopen(base, "r");
        if (!f) {
            fprintf(stderr, "tandem up: %s: %s\n", base, strerror(errno));
            return 2;
        }
        fclose(f);
    }

    struct up *u = xcalloc(1, sizeof *u);
    if (!ms_cr_load(msvc, &u->cr, err, sizeof err)) {
        fprintf(stderr, "tandem up: %s\n", err);
        ms_cr_free(&u->cr); /* a failed load may hold the parsed document */
        free(u);
        return 2;
    }
    int rc = 0;
    if (!u->cr.name || !*u->cr.name)
        u->cr.name = "modelservice";
    if (u->cr.decode_replicas < 1) {
        fprintf(stderr,
                "tandem up: %s: spec.decode.replicas: nothing to serve locally "
                "without a decode replica\n",
                msvc);
        rc = 2;
        goto out_cr;
    }
    if (vllm && !on_path("vllm")) {
        fprintf(stderr, "tandem up: --engine vllm: vllm is not installed (not on PATH)\n");
        rc = 2;
        goto out_cr;
    }
    if (!up_port_free(host, (int)port)) {
        fprintf(stderr, "tandem up: --port: %s:%lld is in use\n", host, port);
        rc = 1;
        goto out_cr;
    }
    u->host = host;
    u->port = (int)port;
    u->profile = profile;
    u->vllm = vllm;
    u->status_interval_s = status_interval;
    u->autoscale_interval_s = autoscale_interval;
    u->metrics_port = (int)metrics_port;
    char as_dir[64] = "";
    if (u->cr.prefill_as.on || u->cr.decode_as.on) {
        snprintf(as_dir, sizeof as_dir, "/tmp/tandem-up-XXXXXX");
        if (!mkdtemp(as_dir)) {
            fprintf(stderr, "tandem up: a directory for the router's endpoints file: %s\n",
                    strerror(errno));
            rc = 1;
            goto out_cr;
        }
        snprintf(u->endpoints_file, sizeof u->endpoints_file, "%s/endpoints.yaml", as_dir);
    }

    if (!plan_processes(u, (int)base_port)) {
        fprintf(stderr, "tandem up: no free port from --base-port %lld up to 65535\n", base_port);
        rc = 1;
        goto out_procs;
    }
    if (!run_processes(u, msvc))
        rc = 2;
    else
        LOG_I("up", "stopped");
out_procs:
    if (as_dir[0]) {
        unlink(u->endpoints_file);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", u->endpoints_file);
        unlink(tmp);
        rmdir(as_dir);
    }
    for (size_t i = 0; i < u->n; i++)
        argv_free(u->procs[i].argv);
    free(u->procs);
out_cr:
    ms_cr_free(&u->cr);
    free(u);
    return rc;
}

/* `tandem up` internals shared by up.c (processes, readiness, status) and up_scale.c
 * (the per-role autoscaler). Not a module contract: only these two files include it.
 *
 * Replicas of an autoscaled role are planned up to maxReplicas when tandem up starts
 * (ports chosen, command lines built, sidecars told every prefill port), and those above
 * the current count are parked: not running, not shown, not routed to. Scaling up starts
 * a parked replica; scaling down drains one and parks it again. So the process table
 * never moves in memory (libuv handles live inside it) and partner indexes stay valid. */
#ifndef TANDEM_MS_UP_INTERNAL_H
#define TANDEM_MS_UP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "base/buf.h"
#include "ms/ms.h"

struct http_client;
struct http_call;
struct http_server;
struct metrics_registry;
struct up_scaler;

#define UP_PROBE_MS 200
#define UP_PROBE_TIMEOUT_MS 1000
#define UP_BACKOFF_MIN_MS 200
#define UP_BACKOFF_MAX_MS 5000
#define UP_BACKOFF_RESET_MS 10000
#define UP_TERM_GRACE_MS 5000

enum up_role { ROLE_PREFILL, ROLE_DECODE, ROLE_SIDECAR, ROLE_ROUTER };
static const char *const role_names[] = {"prefill", "decode", "sidecar", "router"};

enum up_state { ST_STARTING, ST_RUNNING, ST_RESTARTING, ST_TERMINATING, ST_EXITED };

struct up;

struct up_proc {
    struct up *up;
    char name[256];
    enum up_role role;
    int port;
    const char *probe_path;
    char **argv;   /* owned, NULL-terminated */
    bool use_path; /* execvp(argv[0]) instead of this binary */
    pid_t pid;     /* 0 when not running */
    enum up_state state;
    bool ready;
    int restarts;
    int last_exit;
    uint64_t backoff_ms;
    uint64_t started_ns;
    uv_timer_t restart_timer;
    struct http_call *probe;
    uint64_t gen; /* bumped at every start: stale probe answers are ignored */
    uint64_t probe_gen;
    int partner; /* decode engine <-> its sidecar, index or -1 */
    int replica; /* index within its role */
    bool parked; /* an autoscaled replica not running now (see the file comment) */
    bool draining; /* scaling down: out of the router, stopping once idle */
};

struct up {
    uv_loop_t *loop;
    struct ms_cr cr;
    const char *host;
    int port;
    const char *profile;
    bool vllm;
    double status_interval_s;

    struct up_proc *procs;
    size_t n;
    size_t router;         /* index of the router */
    int router_admin_port; /* its metrics port: /debug/endpoints is served there */

    struct http_client *client;
    uv_timer_t probe_timer, status_timer, kill_timer;
    uv_signal_t sig_chld, sig_int, sig_term;
    bool status_timer_on;

    uint64_t start_ns;
    bool all_up_once; /* every process ready at least once: status printing begins */
    bool serving;     /* the "serving" line was printed */
    struct http_call *eps_call;
    char endpoints_file[512]; /* the router's --endpoints-file when autoscaling, else "" */
    struct up_scaler *scalers[2]; /* prefill, decode: NULL when not autoscaled */
    struct http_server *metrics_srv;
    struct metrics_registry *metrics;
    int metrics_port;
    double autoscale_interval_s; /* --autoscale-interval, 0 = the CR's */
    char last_sig[4096];
    bool shutting_down;
    int signals;
};

/* up.c */
/* Whether host:port can be bound now. */
bool up_port_free(const char *host, int port);
void up_proc_start(struct up *u, struct up_proc *p);
/* Signals a process's group (then the process) and marks it terminating. */
void up_proc_signal(struct up_proc *p, int sig);
void up_maybe_print(struct up *u);
/* Whether a decode replica (engine + its sidecar) or a prefill engine is ready. */
bool up_replica_ready(const struct up *u, const struct up_proc *p);

/* up_scale.c */
/* Sets up the autoscalers of the CR's autoscaled roles (after the processes are planned,
 * before the loop runs): timers, the endpoints file, the metrics registry. false with a
 * message on stderr. */
bool up_scale_init(struct up *u);
/* Called every probe tick: keeps the endpoints file equal to the routable replicas and
 * moves drains along. */
void up_scale_tick(struct up *u);
/* A process of ours exited; true when it was a drained replica (park it, no restart). */
bool up_scale_exited(struct up *u, struct up_proc *p);
/* Closes the autoscalers' handles and calls (shutdown). */
void up_scale_close(struct up *u);
/* Replicas wanted now per role (non-parked, non-draining), for the status block. */
int up_role_desired(const struct up *u, enum up_role role);
/* The status line of the autoscalers ("" when none). */
void up_scale_status(const struct up *u, struct buf *b);

#endif

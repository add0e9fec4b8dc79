/* data-parallel-profile-handler (llm-d): one scheduling profile over endpoints that are
 * each one data-parallel rank's port of a pod (the InferencePool's targetPorts give one
 * endpoint per port). The request goes to the pod's primaryPort (default 8000) with
 * x-data-parallel-host-port naming the chosen rank's "host:port", so the pod's routing
 * sidecar hands it to that rank. sched_result.dp_primary_port carries the port; the router
 * (proxy and ext_proc) rewrites the destination and adds the header.
 *
 * Ownership: its state is one int, owned by the plugin instance. */
#include <stdlib.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

struct dp_handler {
    int primary_port;
};

static int dp_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"primaryPort", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    long long port = 8000;
    if (sched_param_int(params, "primaryPort", &port, err) < 0)
        return -1;
    if (port < 0 || port > 65535) {
        sched_perr_set(err, "primaryPort", "must be between 1 and 65535, got %lld", port);
        return -1;
    }
    struct dp_handler *st = xcalloc(1, sizeof *st);
    st->primary_port = (int)port; /* 0: llm-d's "keep the rank's port" */
    *state = st;
    return 0;
}

static int dp_bind(struct sched_plugin *self, struct sched *s, struct sched_perr *err)
{
    (void)self;
    if (s->n_profiles != 1) {
        sched_perr_set(err, "schedulingProfiles",
                       "data-parallel-profile-handler needs exactly one profile, got %zu",
                       s->n_profiles);
        return -1;
    }
    return 0;
}

static void dp_handle(struct sched_plugin *self, struct sched_cycle *c, struct sched_result *res)
{
    const struct dp_handler *st = self->st;
    uint16_t picks[SCHED_MAX_PICKS];
    size_t n = 0;
    int rc = sched_run_profile(c, &c->s->profiles[0], picks, &n, res->reason, sizeof res->reason);
    if (rc) {
        res->status = rc;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        res->picks[i] = c->eps[picks[i]];
        sched_endpoint_ref(res->picks[i]);
    }
    res->n_picks = n;
    c->decode_pick = picks[0];
    res->dp_primary_port = st->primary_port;
    res->pd_reason = "data parallel: rank picked, sent to the primary port";
}

const struct sched_plugin_type sched_data_parallel_profile_handler = {
    .type = "data-parallel-profile-handler",
    .kind = SCHED_PK_HANDLER,
    .create = dp_create,
    .destroy = free,
    .bind = dp_bind,
    .handle = dp_handle,
};

/* llm-d's flow-control policy plugins: fairness between flows (global-strict-fairness-policy,
 * round-robin-fairness-policy), ordering within a flow's queue (fcfs-ordering-policy,
 * edf-ordering-policy, slo-deadline-ordering-policy) and which dispatched requests to evict
 * (priority-then-time-eviction-order-policy, sheddable-eviction-filter). They act on the
 * request queues of llm-d's flow controller; tandem has no flow-control layer (requests go
 * to the scheduler as they arrive, and admission is the saturation detector's and the
 * admitters' job), so each loads, takes no parameters (llm-d's factories read none: any
 * given are ignored, as there) and says so in exactly one WARN line.
 *
 * Ownership: no state. */
#include <string.h>

#include "base/log.h"
#include "sched/sched_internal.h"

struct flow_policy {
    const char *type;
    const char *does; /* what it does in llm-d's flow controller */
};

static const struct flow_policy policies[] = {
    {"global-strict-fairness-policy",
     "serves the flow holding the single best request of a priority band first"},
    {"round-robin-fairness-policy", "serves the flows of a priority band in turn"},
    {"fcfs-ordering-policy", "orders a flow's queue by arrival time"},
    {"edf-ordering-policy", "orders a flow's queue by deadline (arrival + TTL)"},
    {"slo-deadline-ordering-policy",
     "orders a flow's queue by SLO deadline (arrival + x-slo-ttft-ms)"},
    {"priority-then-time-eviction-order-policy",
     "evicts the lowest-priority, newest dispatched request first"},
    {"sheddable-eviction-filter", "lets only sheddable requests (priority < 0) be evicted"},
};

static int flow_create(const char *type, const json_t *params)
{
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++)
        if (strcmp(policies[i].type, type) == 0)
            LOG_W("sched", "%s: not applied: tandem has no flow-control layer (in llm-d it %s)%s",
                  type, policies[i].does,
                  params && json_object_size(params) ? "; its parameters are ignored, as in llm-d"
                                                     : "");
    return 0;
}

#define FLOW_POLICY(sym, name)                                                                     \
    static int sym##_create(const json_t *params, void **state, struct sched_perr *err)            \
    {                                                                                              \
        (void)state;                                                                               \
        (void)err;                                                                                 \
        return flow_create(name, params);                                                          \
    }                                                                                              \
    const struct sched_plugin_type sched_##sym = {                                                 \
        .type = name,                                                                              \
        .kind = SCHED_PK_FLOW,                                                                     \
        .create = sym##_create,                                                                    \
    };

FLOW_POLICY(global_strict_fairness_policy, "global-strict-fairness-policy")
FLOW_POLICY(round_robin_fairness_policy, "round-robin-fairness-policy")
FLOW_POLICY(fcfs_ordering_policy, "fcfs-ordering-policy")
FLOW_POLICY(edf_ordering_policy, "edf-ordering-policy")
FLOW_POLICY(slo_deadline_ordering_policy, "slo-deadline-ordering-policy")
FLOW_POLICY(priority_then_time_eviction_order_policy, "priority-then-time-eviction-order-policy")
FLOW_POLICY(sheddable_eviction_filter, "sheddable-eviction-filter")

/* The plugin registry: every plugin type tandem knows, in one explicit array (nginx's
 * ngx_modules[] style). Adding a plugin = one file (or one table in a family file) and
 * one row here. Type names are llm-d's, so its EndpointPickerConfig files load as-is. */
#include <string.h>

#include "sched/sched_internal.h"

extern const struct sched_plugin_type sched_single_profile_handler, sched_pd_profile_handler,
    sched_disagg_profile_handler, sched_prefix_based_pd_decider, sched_always_disagg_pd_decider,
    sched_decode_filter, sched_prefill_filter, sched_by_label_filter,
    sched_label_selector_filter, sched_queue_scorer, sched_kv_scorer, sched_running_scorer,
    sched_load_aware_scorer, sched_active_request_scorer, sched_token_load_scorer,
    sched_prefix_cache_scorer, sched_session_affinity_scorer, sched_lora_affinity_scorer,
    sched_no_hit_lru_scorer, sched_max_score_picker, sched_random_picker,
    sched_weighted_random_picker, sched_round_robin_picker, sched_consistent_hash_picker,
    sched_power_of_two_picker, sched_rendezvous_hash_picker, sched_cache_aware_picker, sched_cache_aware_picker_alias;

const struct sched_plugin_type *const sched_plugin_types[] = {
    /* profile handlers */
    &sched_single_profile_handler,
    &sched_pd_profile_handler,
    &sched_disagg_profile_handler,
    /* P/D deciders */
    &sched_prefix_based_pd_decider,
    &sched_always_disagg_pd_decider,
    /* filters */
    &sched_decode_filter,
    &sched_prefill_filter,
    &sched_by_label_filter,
    &sched_label_selector_filter,
    /* scorers */
    &sched_queue_scorer,
    &sched_kv_scorer,
    &sched_running_scorer,
    &sched_load_aware_scorer,
    &sched_active_request_scorer,
    &sched_token_load_scorer,
    &sched_prefix_cache_scorer,
    &sched_session_affinity_scorer,
    &sched_lora_affinity_scorer,
    &sched_no_hit_lru_scorer,
    /* pickers (llm-d) */
    &sched_max_score_picker,
    &sched_random_picker,
    &sched_weighted_random_picker,
    /* pickers (vllm-router policies) */
    &sched_round_robin_picker,
    &sched_consistent_hash_picker,
    &sched_power_of_two_picker,
    &sched_rendezvous_hash_picker,
    &sched_cache_aware_picker,
    &sched_cache_aware_picker_alias,
    NULL,
};

const struct sched_plugin_type *sched_plugin_type_find(const char *type)
{
    for (size_t i = 0; sched_plugin_types[i]; i++)
        if (strcmp(sched_plugin_types[i]->type, type) == 0)
            return sched_plugin_types[i];
    return NULL;
}

/* The plugin registry: every plugin type tandem knows, in one explicit array (nginx's
 * ngx_modules[] style). Adding a plugin = one file (or one table in a family file) and
 * one row here. Type names are llm-d's, so its EndpointPickerConfig files load as-is. */
#include <stdio.h>
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
    sched_power_of_two_picker, sched_rendezvous_hash_picker, sched_cache_aware_picker, sched_cache_aware_picker_alias,
    sched_openai_parser, sched_metrics_data_source, sched_core_metrics_extractor,
    sched_data_parallel_profile_handler, sched_probabilistic_admitter,
    sched_utilization_detector, sched_request_attribute_reporter, sched_token_producer,
    sched_precise_prefix_cache_scorer;
/* added for the configs in llm-d's docs and READMEs */
extern const struct sched_plugin_type sched_context_length_aware, sched_disagg_headers_handler,
    sched_vllmgrpc_parser, sched_static_usage_limit_policy, sched_latency_slo_admitter,
    sched_slo_headroom_tier_filter, sched_prefix_cache_affinity_filter,
    sched_approx_prefix_cache_producer, sched_models_data_source, sched_models_data_extractor,
    sched_endpoint_notification_source,
    sched_k8s_notification_source;
extern const struct sched_plugin_type sched_encode_filter, sched_always_disagg_mm_decider;
/* the rest of llm-d's production plugin types */
extern const struct sched_plugin_type sched_by_label_selector, sched_prefill_header_handler,
    sched_tokenizer_legacy, sched_concurrency_detector, sched_inflight_load_producer,
    sched_vertexai_parser, sched_raw_parser, sched_predicted_latency_producer, sched_latency_scorer,
    sched_global_strict_fairness_policy, sched_round_robin_fairness_policy,
    sched_fcfs_ordering_policy, sched_edf_ordering_policy, sched_slo_deadline_ordering_policy,
    sched_priority_then_time_eviction_order_policy, sched_sheddable_eviction_filter;
/* GAIE conformance-test plugins (sched_testing.c) */
extern const struct sched_plugin_type sched_header_based_testing_filter,
    sched_destination_endpoint_served_verifier;

const struct sched_plugin_type *const sched_plugin_types[] = {
    /* profile handlers */
    &sched_single_profile_handler,
    &sched_pd_profile_handler,
    &sched_disagg_profile_handler,
    &sched_data_parallel_profile_handler,
    /* P/D deciders */
    &sched_prefix_based_pd_decider,
    &sched_always_disagg_pd_decider,
    /* filters */
    &sched_decode_filter,
    &sched_prefill_filter,
    &sched_by_label_filter,
    &sched_label_selector_filter,
    &sched_utilization_detector,
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
    &sched_precise_prefix_cache_scorer,
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
    /* admission */
    &sched_probabilistic_admitter,
    /* request data producers */
    &sched_token_producer,
    /* response processing */
    &sched_request_attribute_reporter,
    /* request parser, data layer */
    &sched_openai_parser,
    &sched_metrics_data_source,
    &sched_core_metrics_extractor,
    /* added for the configs in llm-d's docs and READMEs */
    &sched_context_length_aware,
    &sched_prefix_cache_affinity_filter,
    &sched_approx_prefix_cache_producer,
    &sched_disagg_headers_handler,
    &sched_vllmgrpc_parser,
    &sched_static_usage_limit_policy,
    &sched_latency_slo_admitter,
    &sched_slo_headroom_tier_filter,
    &sched_models_data_source,
    &sched_models_data_extractor,
    /* data layer notification sources (sched_notify.c) */
    &sched_endpoint_notification_source,
    &sched_k8s_notification_source,
    /* E/P/D */
    &sched_encode_filter,
    &sched_always_disagg_mm_decider,
    /* the rest of llm-d's production plugin types */
    &sched_by_label_selector,
    &sched_prefill_header_handler,
    &sched_tokenizer_legacy,
    &sched_concurrency_detector,
    &sched_inflight_load_producer,
    &sched_vertexai_parser,
    &sched_raw_parser,
    &sched_predicted_latency_producer,
    &sched_latency_scorer,
    &sched_global_strict_fairness_policy,
    &sched_round_robin_fairness_policy,
    &sched_fcfs_ordering_policy,
    &sched_edf_ordering_policy,
    &sched_slo_deadline_ordering_policy,
    &sched_priority_then_time_eviction_order_policy,
    &sched_sheddable_eviction_filter,
    /* GAIE conformance-test plugins */
    &sched_header_based_testing_filter,
    &sched_destination_endpoint_served_verifier,
    NULL,
};

const struct sched_plugin_type *sched_plugin_type_find(const char *type)
{
    for (size_t i = 0; sched_plugin_types[i]; i++)
        if (strcmp(sched_plugin_types[i]->type, type) == 0)
            return sched_plugin_types[i];
    return NULL;
}

/* --- --help-plugins ---------------------------------------------------------------------- */

/* Parameters per type, as each create() accepts them (keep in step with its keys[]). */
static const struct {
    const char *type, *params;
} plugin_params[] = {
    {"pd-profile-handler", "threshold, decodeProfile, prefillProfile, prefixPluginName, "
                           "hashBlockSize, primaryPort"},
    {"data-parallel-profile-handler", "primaryPort (8000)"},
    {"disagg-profile-handler", "profiles{decode,prefill,encode}, deciders{prefill,encode} "
                               "(or llm-d's flat decodeProfile, prefillProfile, encodeProfile, "
                               "prefillDeciderPluginName, encodeDeciderPluginName, "
                               "deciderPluginName)"},
    {"prefix-based-pd-decider", "nonCachedTokens, promptTokens, prefixPluginName"},
    {"by-label", "label, validValues, allowsNoLabel"},
    {"label-selector-filter", "matchLabels, matchExpressions[{key,operator,values}]"},
    {"load-aware-scorer", "threshold"},
    {"active-request-scorer", "idleThreshold, maxBusyScore"},
    {"token-load-scorer", "queueThresholdTokens"},
    {"prefix-cache-scorer", "blockSizeTokens, autoTune, maxPrefixBlocksToMatch, "
                            "maxPrefixTokensToMatch, lruCapacityPerServer, blockSize (chars, "
                            "legacy), hashBlockSize (chars, legacy)"},
    {"precise-prefix-cache-scorer",
     "tokenProcessorConfig{blockSize (16), hashSeed (\"\"), hashAlgo (tandem; sha256_cbor: "
     "vLLM's keys)}, kvEventsConfig{zmqEndpoint "
     "(tcp://*:5557, bound; \"\": none), topicFilter (kv@), concurrency, maxQueueDepth, "
     "engineType (vllm), tracing, discoverPods, podDiscoveryConfig{socketPort (5557), "
     "podLabelSelector, podNamespace, replaySocketPort, dataParallelSize, rankPodMapping}}, "
     "indexerConfig{kvBlockIndexConfig{"
     "inMemoryConfig{size}, maxPrefixBlocksToMatch, enableMetrics}}, speculativeIndexing, "
     "speculativeTTL (2s)"},
    {"no-hit-lru-scorer", "lruSize, prefixPluginName"},
    {"max-score-picker", "maxNumOfEndpoints"},
    {"random-picker", "maxNumOfEndpoints"},
    {"weighted-random-picker", "maxNumOfEndpoints"},
    {"round-robin-picker", "maxNumOfEndpoints"},
    {"consistent-hash-picker", "maxNumOfEndpoints, virtualNodes"},
    {"rendezvous-hash-picker", "maxNumOfEndpoints"},
    {"power-of-two-picker", "maxNumOfEndpoints"},
    {"cache-aware-picker", "maxNumOfEndpoints, cacheThreshold, balanceAbsThreshold, "
                           "balanceRelThreshold, maxTreeSize"},
    {"cache-aware", "(alias of cache-aware-picker)"},
    {"probabilistic-admitter", "queueDepthThreshold (5), kvCacheUtilThreshold (0.8), "
                               "power (5), k (300)"},
    {"utilization-detector", "queueDepthThreshold (5), kvCacheUtilThreshold (0.8), "
                             "metricsStalenessThreshold (200ms), headroom (0)"},
    {"request-attribute-reporter", "attributes[1]{key{namespace (envoy.lb), name}, expression "
                                   "(CEL over usage), condition}"},
    {"token-producer", "modelName, vllm{http (http://localhost:8000), timeout (5s), "
                       "mmTimeout (30s)}"},
    {"metrics-data-source", "scheme (http), path, insecureSkipVerify"},
    {"core-metrics-extractor", "defaultEngine (vllm)"},
    /* added for the configs in llm-d's docs and READMEs */
    {"context-length-aware", "label (llm-d.ai/context-length-range), enableFiltering (false)"},
    {"prefix-cache-affinity-filter", "affinityThreshold (0.8), explorationProbability (0.01), "
                                     "maxTTFTPenaltyMs (5000; not applied)"},
    {"approx-prefix-cache-producer", "as prefix-cache-scorer: blockSizeTokens, autoTune, "
                                     "maxPrefixBlocksToMatch, maxPrefixTokensToMatch, "
                                     "lruCapacityPerServer, blockSize"},
    {"disagg-headers-handler", "prefillProfile, encodeProfile (not applied: tandem sets the "
                               "header itself)"},
    {"vllmgrpc-parser", "(none; not applied: OpenAI JSON only)"},
    {"static-usage-limit-policy", "threshold (1.0; not applied: no flow control)"},
    {"latency-slo-admitter", "(none; admits all: no latency predictions)"},
    {"slo-headroom-tier-filter", "epsilonExploreNeg (0.01; keeps all: no latency predictions)"},
    {"models-data-source", "scheme (http|https), path (/v1/models), insecureSkipVerify (true); "
                           "not polled"},
    {"models-data-extractor", "(none; not applied)"},
    {"k8s-notification-source", "group, version, kind (required); watches nothing"},
    {"endpoint-notification-source", "(none); extractors: precise-prefix-cache-scorer"},
    /* the rest of llm-d's production plugin types */
    {"by-label-selector", "(deprecated alias of label-selector-filter) matchLabels, "
                          "matchExpressions[{key,operator,values}]"},
    {"prefill-header-handler", "(deprecated alias of disagg-headers-handler) prefillProfile, "
                               "encodeProfile (not applied)"},
    {"tokenizer", "(deprecated alias of token-producer) modelName, vllm{http, timeout, "
                  "mmTimeout}"},
    {"concurrency-detector", "concurrencyMode (requests|tokens), maxConcurrency (100), "
                             "maxTokenConcurrency (1000000), headroom (0)"},
    {"inflight-load-producer", "(none; the router always counts in-flight load)"},
    {"passthrough-parser", "(none); as the parser: request bodies are not parsed"},
    {"vertexai-parser", "(none; not applied: HTTP/1.1 OpenAI JSON only)"},
    {"predicted-latency-producer", "samplingMean (1000), maxDecodeTokenSamplesForPrediction "
                                   "(0), sloBufferFactor (1), contextTTL (ns), streamingMode, "
                                   "endpointRoleLabel, predictInProduce; produces nothing"},
    {"latency-scorer", "compositeKVWeight (1), compositeQueueWeight (1), "
                       "compositePrefixWeight (1); ttftWeight (0.8), tpotWeight (0.2), "
                       "headroomSelectionStrategy (least) need predictions"},
    {"global-strict-fairness-policy", "(none; not applied: no flow control)"},
    {"round-robin-fairness-policy", "(none; not applied: no flow control)"},
    {"fcfs-ordering-policy", "(none; not applied: no flow control)"},
    {"edf-ordering-policy", "(none; not applied: no flow control)"},
    {"slo-deadline-ordering-policy", "(none; not applied: no flow control)"},
    {"priority-then-time-eviction-order-policy", "(none; not applied: no flow control)"},
    {"sheddable-eviction-filter", "(none; not applied: no flow control)"},
    {"header-based-testing-filter", "(none; GAIE conformance tests: header "
                                    "test-epp-endpoint-selection)"},
    {"destination-endpoint-served-verifier", "(none; GAIE conformance tests: response header "
                                             "x-conformance-test-served-endpoint)"},
};

static const char *kind_name(enum sched_plugin_kind k)
{
    switch (k) {
    case SCHED_PK_FILTER: return "filter";
    case SCHED_PK_SCORER: return "scorer";
    case SCHED_PK_PICKER: return "picker";
    case SCHED_PK_HANDLER: return "profile-handler";
    case SCHED_PK_DECIDER: return "pd-decider";
    case SCHED_PK_PARSER: return "parser";
    case SCHED_PK_SOURCE: return "data-source";
    case SCHED_PK_EXTRACTOR: return "data-extractor";
    case SCHED_PK_ADMITTER: return "admitter";
    case SCHED_PK_REPORTER: return "response-reporter";
    case SCHED_PK_PRODUCER: return "data-producer";
    case SCHED_PK_PREREQUEST: return "pre-request";
    case SCHED_PK_FLOW: return "flow-control";
    }
    return "plugin";
}

void sched_help_plugins(FILE *out)
{
    fprintf(out, "%-40s %-16s %s\n", "TYPE", "KIND", "PARAMETERS");
    for (size_t i = 0; sched_plugin_types[i]; i++) {
        const char *params = "(none)";
        for (size_t k = 0; k < sizeof plugin_params / sizeof *plugin_params; k++)
            if (strcmp(plugin_params[k].type, sched_plugin_types[i]->type) == 0)
                params = plugin_params[k].params;
        fprintf(out, "%-40s %-16s %s\n", sched_plugin_types[i]->type,
                kind_name(sched_plugin_types[i]->kind), params);
    }
}

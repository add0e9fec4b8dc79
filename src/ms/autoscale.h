/* Per-role autoscaling of a ModelService (spec.prefill.autoscaling,
 * spec.decode.autoscaling; docs/modelservice.md): the CR fields, the objects a cluster
 * scales with (an autoscaling/v2 HorizontalPodAutoscaler, or a KEDA ScaledObject with
 * Prometheus triggers), and the same policy in the terms of ms/hpa.h for `tandem up`.
 *
 * Ownership: a parsed ms_autoscaling borrows strings and the behavior object from the
 * CR document (it lives as long as the ms_cr). Objects returned are new references. */
#ifndef TANDEM_MS_AUTOSCALE_H
#define TANDEM_MS_AUTOSCALE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ms/hpa.h"

#define MS_AS_MAX_METRICS 8

enum ms_as_engine { MS_AS_HPA, MS_AS_KEDA };

struct ms_as_metric {
    const char *metric; /* a vLLM metric name, e.g. vllm:num_requests_waiting */
    double target;
    bool total;         /* averaging: total (the role's sum) rather than per pod */
    double rate_s;      /* > 0: a counter read as a per-second rate over this window */
};

struct ms_autoscaling {
    bool on;
    enum ms_as_engine engine;
    int min_replicas, max_replicas;
    struct ms_as_metric metrics[MS_AS_MAX_METRICS];
    size_t n_metrics;
    const json_t *behavior;     /* borrowed, validated; NULL = the HPA's defaults */
    struct ms_hpa_spec policy;  /* min/max, tolerance and behavior for ms/hpa.c */
    const char *server_address; /* keda: prometheus.serverAddress */
    double polling_s;           /* keda pollingInterval / tandem up's decision period */
};

/* Parses spec.<role>.autoscaling (sec is the role's section; absent -> out->on false).
 * decouple: spec.decoupleScaling, which autoscaling requires. Errors name the file and
 * the field ("msvc.yaml: spec.decode.autoscaling.metrics[0].target: ..."). */
bool ms_autoscaling_parse(const char *file, const char *role, const json_t *sec, bool decouple,
                          struct ms_autoscaling *out, char *err, size_t errlen);

/* The autoscaler object for a role's Deployment (named deploy, in ns): an HPA or a
 * ScaledObject per a->engine, scaleTargetRef the Deployment. model is the sanitized
 * llm-d.ai/model label value the Prometheus queries select on. */
json_t *ms_autoscaler_object(const struct ms_autoscaling *a, const char *role,
                             const char *deploy, const char *ns, const char *model);

/* The Kubernetes quantity text for a target (4 -> "4", 0.8 -> "800m"). */
void ms_quantity(double v, char *out, size_t cap);

#endif

/* The EndpointPickerConfig's non-scheduling plugin types that tandem really has: the
 * request parsers (openai-parser: tandem's OpenAI body parsing; passthrough-parser: none,
 * the body forwarded unread; vertexai-parser loads with a WARN: gRPC is not served) and the
 * data layer's metrics source and extractor (metrics-data-source: where the router scrapes
 * each engine's Prometheus text; core-metrics-extractor: the vLLM metric names it reads).
 * They are referenced from the config's parser / dataLayer sections; the loader checks
 * those references (sched_config.c).
 *
 * Ownership: each instance owns its state (the metrics path string). */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "sched/sched_internal.h"

/* --- openai-parser ---------------------------------------------------------------------- */

static int parser_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {NULL};
    (void)state;
    return sched_param_check_keys(params, keys, err) ? 0 : -1;
}

const struct sched_plugin_type sched_openai_parser = {
    .type = "openai-parser",
    .kind = SCHED_PK_PARSER,
    .create = parser_create,
};

/* --- passthrough-parser ----------------------------------------------------------------- */

/* llm-d's passthrough-parser keeps the body as raw bytes: no model, no prompt, nothing for
 * the prefix or token plugins; the request is routed on what is left (load, headers).
 * As the config's parser, the router does the same (sched_passthrough_parser). */
static int passthrough_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    (void)err;
    if (params && json_object_size(params))
        LOG_W("sched", "passthrough-parser: its parameters are ignored, as in llm-d");
    return 0;
}

const struct sched_plugin_type sched_raw_parser = {
    .type = "passthrough-parser",
    .kind = SCHED_PK_PARSER,
    .create = passthrough_create,
};

bool sched_passthrough_parser(const struct sched *s)
{
    return s && s->parser && s->parser->t == &sched_raw_parser;
}

/* --- vertexai-parser -------------------------------------------------------------------- */

/* llm-d's vertexai-parser reads Vertex AI's gRPC PredictionService/ChatCompletions (an h2c
 * protobuf ChatCompletionsRequest wrapping an OpenAI JSON body in HttpBody) and skips every
 * other method; tandem's router serves HTTP/1.1 OpenAI JSON only. */
static int vertexai_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)state;
    (void)err;
    LOG_W("sched", "vertexai-parser: not applied: it parses Vertex AI's gRPC (h2c) "
                   "PredictionService/ChatCompletions, and tandem serves HTTP/1.1 OpenAI "
                   "JSON only, which it parses as openai-parser does%s",
          params && json_object_size(params) ? " (its parameters are ignored, as in llm-d)"
                                             : "");
    return 0;
}

const struct sched_plugin_type sched_vertexai_parser = {
    .type = "vertexai-parser",
    .kind = SCHED_PK_PARSER,
    .create = vertexai_create,
};

/* --- metrics-data-source ---------------------------------------------------------------- */

struct metrics_source {
    char *path;
};

static int msrc_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"scheme", "path", "insecureSkipVerify", NULL};
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *scheme = "http", *path = "/metrics";
    bool skip = true;
    if (sched_param_str(params, "scheme", &scheme, err) < 0 ||
        sched_param_str(params, "path", &path, err) < 0 ||
        sched_param_bool(params, "insecureSkipVerify", &skip, err) < 0)
        return -1;
    if (strcmp(scheme, "http") != 0) {
        sched_perr_set(err, "scheme", "tandem scrapes engines over http only, got '%s'", scheme);
        return -1;
    }
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        sched_perr_set(err, "path", "must be an absolute URL path such as /metrics");
        return -1;
    }
    struct metrics_source *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    *state = st;
    return 0;
}

static void msrc_destroy(void *state)
{
    struct metrics_source *st = state;
    free(st->path);
    free(st);
}

const struct sched_plugin_type sched_metrics_data_source = {
    .type = "metrics-data-source",
    .kind = SCHED_PK_SOURCE,
    .create = msrc_create,
    .destroy = msrc_destroy,
};

const char *sched_metrics_path(const struct sched *s)
{
    for (size_t i = 0; s && i < s->n_plugins; i++)
        if (s->plugins[i]->t == &sched_metrics_data_source)
            return ((const struct metrics_source *)s->plugins[i]->st)->path;
    return "/metrics";
}

/* --- core-metrics-extractor ------------------------------------------------------------- */

static int cme_create(const json_t *params, void **state, struct sched_perr *err)
{
    static const char *const keys[] = {"defaultEngine", NULL};
    (void)state;
    if (!sched_param_check_keys(params, keys, err))
        return -1;
    const char *engine = "vllm";
    if (sched_param_str(params, "defaultEngine", &engine, err) < 0)
        return -1;
    if (strcmp(engine, "vllm") != 0) {
        sched_perr_set(err, "defaultEngine", "tandem reads vLLM's metric names only, got '%s'",
                       engine);
        return -1;
    }
    return 0;
}

const struct sched_plugin_type sched_core_metrics_extractor = {
    .type = "core-metrics-extractor",
    .kind = SCHED_PK_EXTRACTOR,
    .create = cme_create,
};

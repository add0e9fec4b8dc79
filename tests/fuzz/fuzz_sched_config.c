/* Fuzz target: the EndpointPickerConfig loader (sched_new) on arbitrary bytes, then one
 * traced scheduling decision with whatever loaded, over a small fixed datastore. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "base/buf.h"
#include "sched/sched.h"

static struct sched_datastore *fuzz_ds(void)
{
    static struct sched_datastore *ds;
    if (ds)
        return ds;
    ds = sched_ds_new();
    static const struct {
        const char *name;
        enum sched_role role;
    } eps[] = {{"decode-0", SCHED_ROLE_DECODE}, {"decode-1", SCHED_ROLE_DECODE},
               {"prefill-0", SCHED_ROLE_PREFILL}, {"both-0", SCHED_ROLE_BOTH}};
    for (size_t i = 0; i < sizeof eps / sizeof *eps; i++) {
        struct sched_endpoint_spec spec;
        memset(&spec, 0, sizeof spec);
        spec.name = eps[i].name;
        spec.host = "127.0.0.1";
        spec.port = 8000 + (int)i;
        spec.role = eps[i].role;
        spec.labels[0].key = "zone";
        spec.labels[0].value = i % 2 ? "a" : "b";
        spec.n_labels = 1;
        sched_ds_upsert(ds, &spec);
        struct sched_endpoint *e = sched_ds_find(ds, eps[i].name);
        struct sched_endpoint_metrics m = {.have = true, .healthy = true,
                                           .waiting = (double)i, .kv_usage = 0.2 * (double)i};
        sched_endpoint_set_scraped(e, &m);
        sched_endpoint_unref(e);
    }
    return ds;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct errinfo err;
    struct sched *s = sched_new(fuzz_ds(), (const char *)data, size, "<fuzz>", &err);
    if (!s)
        return 0;
    static const char prompt[] =
        "You are a helpful assistant. Summarise the following text about routing requests to "
        "the engine pod that already holds the prompt's prefix in its KV cache.";
    struct sched_request req;
    memset(&req, 0, sizeof req);
    req.request_id = "fuzz";
    req.model = "m";
    req.prompt = prompt;
    req.prompt_len = sizeof prompt - 1;
    req.prompt_tokens = 30;
    struct sched_result res;
    struct buf trace = BUF_INIT;
    sched_schedule(s, &req, false, &res, &trace);
    sched_result_release(&res);
    buf_free(&trace);
    sched_free(s);
    return 0;
}

/* Fuzz target: header-based-testing-filter's parsing of the test-epp-endpoint-selection
 * header (IP / IP:port items, brackets, commas) over a fixed set of IPv4 and IPv6
 * endpoints. The input is the header value; every survivor must be a candidate, each
 * address at most once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "sched/sched.h"

static struct sched_datastore *ds;
static struct sched *sch;

static void add(const char *name, const char *host, int port)
{
    struct sched_endpoint_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = name;
    spec.host = host;
    spec.port = port;
    if (sched_ds_upsert(ds, &spec) != 0)
        abort();
    struct sched_endpoint *e = sched_ds_find(ds, name);
    sched_endpoint_set_health(e, true);
    sched_endpoint_unref(e);
}

static void setup(void)
{
    static const char cfg[] =
        "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
        "- type: header-based-testing-filter\n- type: max-score-picker\n"
        "  parameters: {maxNumOfEndpoints: 8}\n";
    ds = sched_ds_new();
    add("a", "10.0.0.1", 8000);
    add("b", "10.0.0.2", 3000);
    add("c", "fd00::1", 3000);
    add("d", "[fd00::2]", 8000);
    add("e", "10.0.0.5", 8000);
    add("f", "10.0.0.5", 8001);
    struct errinfo err = {.msg = {0}};
    sch = sched_new(ds, cfg, strlen(cfg), "<fuzz>", &err);
    if (!sch)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sch)
        setup();
    if (size > 4096)
        return 0;
    char *hv = xmalloc(size + 1);
    memcpy(hv, data, size);
    hv[size] = '\0';
    struct http_header item = {"test-epp-endpoint-selection", hv, 27, strlen(hv)};
    struct http_headers hh = {0};
    hh.items = &item;
    hh.n = 1;
    hh.cap = 1;
    struct sched_request req;
    memset(&req, 0, sizeof req);
    req.request_id = "fuzz";
    req.model = "m";
    req.prompt = "p";
    req.prompt_len = 1;
    req.headers = &hh;
    struct sched_result res;
    sched_schedule(sch, &req, true, &res, NULL);
    if (res.status != 0 && res.status != 503)
        abort();
    for (size_t i = 0; i < res.n_picks; i++)
        for (size_t k = i + 1; k < res.n_picks; k++)
            if (!strcmp(sched_endpoint_host(res.picks[i]), sched_endpoint_host(res.picks[k])))
                abort(); /* one survivor per address */
    sched_result_release(&res);
    free(hv);
    return 0;
}

/* Fuzz target: the KV event decoder (what the router reads from engines' ZMQ PUB
 * sockets). A payload that decodes must re-encode and decode again to the same events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/kvevents.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kvev_batch b;
    char err[128];
    if (kvev_decode(data, size, &b, err, sizeof err) != 0) {
        if (!err[0])
            abort(); /* a rejection always says why */
        return 0;
    }
    struct buf out = BUF_INIT;
    kvev_encode(&b, &out);
    struct kvev_batch c;
    if (kvev_decode((const uint8_t *)out.data, out.len, &c, err, sizeof err) != 0)
        abort();
    if (c.n_events != b.n_events || c.has_dp_rank != b.has_dp_rank)
        abort();
    for (size_t i = 0; i < b.n_events; i++) {
        const struct kvev_event *x = &b.events[i], *y = &c.events[i];
        if (x->type != y->type || x->n_hashes != y->n_hashes || x->n_tokens != y->n_tokens ||
            (x->n_hashes && memcmp(x->hashes, y->hashes, x->n_hashes * sizeof *x->hashes) != 0))
            abort();
    }
    kvev_batch_free(&c);
    kvev_batch_free(&b);
    buf_free(&out);
    return 0;
}

/* Fuzz target: what P/D coordination parses from the network: the x-prefiller-host-port
 * header, a client body turned into the prefill leg, and a prefill engine's response
 * turned into the decode leg. The first byte picks which. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pd/pd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const struct pd_connector *c = pd_connector_find("nixlv2");
    struct buf b = BUF_INIT;
    switch (data[0] % 3) {
    case 0: {
        char *s = malloc(n + 1);
        memcpy(s, in, n);
        s[n] = '\0';
        char host[256];
        int port = 0;
        if (pd_parse_prefiller(s, data[0] & 4, host, sizeof host, &port) &&
            (port <= 0 || port > 65535 || !host[0]))
            abort();
        free(s);
        break;
    }
    case 1: {
        char err[256];
        c->prefill_body("/v1/chat/completions", in, n, &b, err, sizeof err);
        break;
    }
    default: {
        const char *why = NULL;
        const char *body = "{\"model\":\"m\",\"prompt\":\"p\"}";
        if (!c->decode_body(body, strlen(body), in, n, &b, &why) && !why)
            abort(); /* a refusal always says why */
        break;
    }
    }
    buf_free(&b);
    return 0;
}

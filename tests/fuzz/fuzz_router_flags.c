/* Fuzz target: the router's command line (router/config.c, router/vrouter.c, base/flags.c)
 * on arbitrary argument lists: one argument per line; a first line "vllm-router" parses
 * as the binary invoked by that name. Multi-valued flags, the optional port after
 * --prefill URL, URL workers with DP ranks and the generated policy configs all run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "router/router_internal.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct router_config cfg; /* large: not on the stack */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *p = text; argc < MAX_ARGS;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        argv[argc++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    argv[argc] = NULL;
    bool as_vr = argc > 0 && strcmp(argv[0], "vllm-router") == 0;
    router_config_parse_as(&cfg, argc - as_vr, argv + as_vr, as_vr);
    router_config_free(&cfg);
    log_set_level(LOG_ERROR);
    free(text);
    return 0;
}

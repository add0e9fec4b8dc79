/* libFuzzer target for kubeconfig parsing (k8s/config.c): any text either gives a
 * configuration with a server URL and a namespace, or an error that names the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    struct k8s_config c;
    char err[512];
    if (k8s_config_from_kubeconfig(copy, size, "/fuzz/kubeconfig", NULL, &c, err, sizeof err)) {
        if (!c.server || strncmp(c.server, "http", 4) != 0 || !c.namespace || !c.source)
            abort();
        k8s_config_free(&c);
    } else if (strncmp(err, "/fuzz/kubeconfig", 16) != 0) {
        abort();
    }
    free(copy);
    return 0;
}

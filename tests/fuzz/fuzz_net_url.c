/* Fuzz target: url_parse (net/url.c on libcurl's URL API), the parser of every address a
 * user or a client header gives us (--prefill URL, --endpoint addr=, x-prefiller-host-port,
 * --base-url). An accepted address must come out as something we can connect to: a
 * non-empty NUL-terminated host without whitespace, a port in 1-65535, a path that starts
 * with '/' and has no fragment; a refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct url u;
    const char *why = NULL;
    int default_port = size ? data[0] * 300 : 0; /* both in and out of range */
    if (url_parse(s, default_port, &u, &why)) {
        size_t hl = strnlen(u.host, sizeof u.host);
        if (hl == 0 || hl == sizeof u.host || strpbrk(u.host, " \t\r\n/@"))
            abort();
        if (u.port < 1 || u.port > 65535)
            abort();
        size_t pl = strnlen(u.path, sizeof u.path);
        if (pl == sizeof u.path || u.path[0] != '/' || strchr(u.path, '#'))
            abort();
    } else if (!why || !*why) {
        abort();
    }
    free(s);
    return 0;
}

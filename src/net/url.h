/* Parsing of "host:port" and "http://host:port/path" forms used on command lines and in
 * headers (x-prefiller-host-port, --prefill URL). */
#ifndef TANDEM_NET_URL_H
#define TANDEM_NET_URL_H

#include <stdbool.h>
#include <stddef.h>

struct url {
    char host[256]; /* without brackets for IPv6 */
    int port;
    char path[1024]; /* "/" if absent */
    bool tls;        /* https */
};

/* Accepts "host:port", "[v6]:port", "http://host[:port][/path]", "https://...".
 * default_port is used when none is given. Returns false (with why) on bad input. */
bool url_parse(const char *s, int default_port, struct url *out, const char **why);

#endif

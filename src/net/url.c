/* "host:port" and "http[s]://host[:port][/path]" parsing. Output is fixed-size (no
 * allocation); anything that does not fit is an error rather than a truncation, so a
 * parsed struct url is always exactly what the user wrote. */
#include "net/url.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool fail(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return false;
}

static bool parse_port(const char *s, size_t n, int *out)
{
    if (n == 0 || n > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *out = v;
    return true;
}

static bool host_char_ok(char c)
{
    /* Registered names and IPv4 literals; no userinfo, no whitespace, no reserved. */
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%';
}

bool url_parse(const char *s, int default_port, struct url *out, const char **why)
{
    if (!s || !*s)
        return fail(why, "empty address");
    memset(out, 0, sizeof *out);
    const char *p = s;
    bool have_scheme = false;
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
        have_scheme = true;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        out->tls = true;
        have_scheme = true;
    } else if (strstr(p, "://")) {
        return fail(why, "unsupported scheme (want http or https)");
    }

    /* The authority ends at the first '/', '?' or '#' (or the end). */
    size_t auth_len = strcspn(p, "/?#");
    const char *auth = p;
    const char *rest = p + auth_len;
    if (auth_len == 0)
        return fail(why, "missing host");
    if (memchr(auth, '@', auth_len))
        return fail(why, "user info in address is not supported");

    const char *host;
    size_t host_len;
    const char *port_s = NULL;
    size_t port_len = 0;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (!close)
            return fail(why, "unterminated '[' in IPv6 address");
        host = auth + 1;
        host_len = (size_t)(close - host);
        if (host_len == 0)
            return fail(why, "empty IPv6 address");
        for (size_t i = 0; i < host_len; i++) {
            char c = host[i];
            /* hex groups, dotted IPv4 tail, "%zone" (alphanumeric interface names) */
            if (!isalnum((unsigned char)c) && c != ':' && c != '.' && c != '%' && c != '-' &&
                c != '_')
                return fail(why, "invalid character in IPv6 address");
        }
        const char *after = close + 1;
        size_t after_len = auth_len - (size_t)(after - auth);
        if (after_len > 0) {
            if (after[0] != ':')
                return fail(why, "unexpected text after ']'");
            port_s = after + 1;
            port_len = after_len - 1;
            if (port_len == 0)
                return fail(why, "empty port");
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        if (colon && memchr(colon + 1, ':', auth_len - (size_t)(colon + 1 - auth)))
            return fail(why, "IPv6 addresses need brackets: [addr]:port");
        host = auth;
        host_len = colon ? (size_t)(colon - auth) : auth_len;
        if (colon) {
            port_s = colon + 1;
            port_len = auth_len - host_len - 1;
            if (port_len == 0)
                return fail(why, "empty port");
        }
        if (host_len == 0)
            return fail(why, "missing host");
        for (size_t i = 0; i < host_len; i++)
            if (!host_char_ok(host[i]))
                return fail(why, "invalid character in host");
    }
    if (host_len >= sizeof out->host)
        return fail(why, "host too long");
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';

    if (port_s) {
        if (!parse_port(port_s, port_len, &out->port))
            return fail(why, "invalid port (want 1-65535)");
    } else {
        if (default_port < 1 || default_port > 65535)
            return fail(why, "missing port");
        out->port = default_port;
    }

    if (!have_scheme && *rest)
        return fail(why, "a path needs a scheme (http://host:port/path)");
    if (*rest == '#')
        rest = ""; /* fragments never go on the wire */
    size_t rest_len = strcspn(rest, "#");
    for (size_t i = 0; i < rest_len; i++)
        if ((unsigned char)rest[i] <= ' ' || rest[i] == 0x7f)
            return fail(why, "invalid character in path");
    if (rest_len == 0) {
        strcpy(out->path, "/");
    } else if (rest[0] == '?') {
        if (rest_len + 1 >= sizeof out->path)
            return fail(why, "path too long");
        out->path[0] = '/';
        memcpy(out->path + 1, rest, rest_len);
        out->path[rest_len + 1] = '\0';
    } else {
        if (rest_len >= sizeof out->path)
            return fail(why, "path too long");
        memcpy(out->path, rest, rest_len);
        out->path[rest_len] = '\0';
    }
    return true;
}

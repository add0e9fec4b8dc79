/* "host:port" and "http[s]://host[:port][/path]" parsing on libcurl's URL API (CURLU),
 * so tandem reads a URL the way curl, and the Kubernetes client built on it, does.
 * What this file adds on top: the scheme-less "host:port" form of command lines and
 * headers, the http/https allowlist, refusing user info, a path only with a scheme, and
 * error texts a user can act on. Output is fixed-size (no allocation kept); anything
 * that does not fit is an error rather than a truncation, so a parsed struct url is
 * always exactly what the user wrote. */
#include "net/url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static bool fail(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return false;
}

static const char *curl_why(CURLUcode rc)
{
    switch (rc) {
    case CURLUE_BAD_PORT_NUMBER:
        return "invalid port (want 1-65535)";
    case CURLUE_BAD_IPV6:
        return "invalid IPv6 address";
    case CURLUE_BAD_HOSTNAME:
    case CURLUE_NO_HOST:
        return "invalid character in host (or missing host)";
    case CURLUE_BAD_PATH:
        return "invalid character in path";
    case CURLUE_MALFORMED_INPUT:
        return "malformed address";
    default:
        return "not a URL like http://host:port/path";
    }
}

/* Copies a CURLU part (freed here) into dst; false when absent or too long. */
static bool take_part(CURLU *h, CURLUPart part, unsigned flags, char *dst, size_t cap,
                      bool *too_long)
{
    char *v = NULL;
    if (curl_url_get(h, part, &v, flags) != CURLUE_OK || !v)
        return false;
    size_t n = strlen(v);
    bool ok = n < cap;
    if (ok)
        memcpy(dst, v, n + 1);
    else if (too_long)
        *too_long = true;
    curl_free(v);
    return ok;
}

static bool has_part(CURLU *h, CURLUPart part)
{
    char *v = NULL;
    bool present = curl_url_get(h, part, &v, 0) == CURLUE_OK && v;
    curl_free(v);
    return present;
}

bool url_parse(const char *s, int default_port, struct url *out, const char **why)
{
    if (!s || !*s)
        return fail(why, "empty address");
    memset(out, 0, sizeof *out);
    if (strlen(s) > 2048)
        return fail(why, "address too long");
    const char *sep = strstr(s, "://");
    bool have_scheme = sep != NULL;
    if (have_scheme) {
        size_t sl = (size_t)(sep - s);
        if (sl == 5 && !strncasecmp(s, "https", 5))
            out->tls = true;
        else if (!(sl == 4 && !strncasecmp(s, "http", 4)))
            return fail(why, "unsupported scheme (want http or https)");
    } else {
        /* Scheme-less forms are authority only: say so before curl reads them as paths. */
        size_t auth = strcspn(s, "/?#");
        if (s[auth])
            return fail(why, "a path needs a scheme (http://host:port/path)");
        if (s[0] != '[') {
            const char *colon = strchr(s, ':');
            if (colon && strchr(colon + 1, ':'))
                return fail(why, "IPv6 addresses need brackets: [addr]:port");
        }
    }
    {
        /* curl takes "host:" as the default port; a user who typed the colon meant one. */
        const char *a = have_scheme ? sep + 3 : s;
        size_t al = strcspn(a, "/?#");
        if (al && a[al - 1] == ':')
            return fail(why, "empty port");
    }
    if (strpbrk(s, " \t\r\n"))
        return fail(why, strchr(s, '/') && have_scheme ? "invalid character in path"
                                                       : "invalid character in host");

    char buf[2100];
    snprintf(buf, sizeof buf, "%s%s", have_scheme ? "" : "http://", s);
    CURLU *h = curl_url();
    if (!h)
        abort();
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, buf, CURLU_PATH_AS_IS);
    bool ok = false;
    bool too_long = false;
    char host[300];
    char port[16];
    if (rc != CURLUE_OK) {
        fail(why, curl_why(rc));
    } else if (has_part(h, CURLUPART_USER) || has_part(h, CURLUPART_PASSWORD)) {
        fail(why, "user info in address is not supported");
    } else if (!take_part(h, CURLUPART_HOST, 0, host, sizeof host, &too_long) || !host[0]) {
        fail(why, too_long ? "host too long" : "missing host");
    } else {
        /* IPv6 comes back bracketed, its zone separately ("%25" form on the wire). */
        const char *hb = host;
        size_t hl = strlen(host);
        if (hb[0] == '[' && hl >= 2 && hb[hl - 1] == ']') {
            hb++;
            hl -= 2;
        }
        char zone[64] = "";
        bool has_zone = take_part(h, CURLUPART_ZONEID, 0, zone, sizeof zone, NULL);
        int w = snprintf(out->host, sizeof out->host, "%.*s%s%s", (int)hl, hb,
                         has_zone ? "%25" : "", has_zone ? zone : "");
        if (hl == 0) {
            fail(why, "missing host");
        } else if (w < 0 || (size_t)w >= sizeof out->host) {
            fail(why, "host too long");
        } else if (take_part(h, CURLUPART_PORT, 0, port, sizeof port, NULL)) {
            char *end;
            long p = strtol(port, &end, 10);
            if (*end || p < 1 || p > 65535)
                fail(why, "invalid port (want 1-65535)");
            else
                out->port = (int)p, ok = true;
        } else if (default_port < 1 || default_port > 65535) {
            fail(why, "missing port");
        } else {
            out->port = default_port;
            ok = true;
        }
    }
    if (ok) {
        /* Path and query as written (no normalisation); fragments never go on the wire. */
        char path[sizeof out->path], query[sizeof out->path];
        too_long = false;
        if (!take_part(h, CURLUPART_PATH, 0, path, sizeof path, &too_long))
            strcpy(path, "/");
        bool q = take_part(h, CURLUPART_QUERY, 0, query, sizeof query, &too_long);
        int w = snprintf(out->path, sizeof out->path, "%s%s%s", path, q ? "?" : "",
                         q ? query : "");
        if (too_long || w < 0 || (size_t)w >= sizeof out->path)
            ok = fail(why, "path too long");
    }
    curl_url_cleanup(h);
    return ok;
}

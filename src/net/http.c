/* Shared HTTP/1.1 helpers: header lookup, status texts, hop-by-hop classification.
 * Everything here is pure and allocation-free so both the server and the client (and
 * the fuzz targets) can use it on hot paths. */
#include "net/http.h"

#include <string.h>
#include <strings.h>

const char *http_headers_get(const struct http_headers *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->n; i++) {
        const struct http_header *it = &h->items[i];
        if (it->name_len == n && strncasecmp(it->name, name, n) == 0)
            return it->value;
    }
    return NULL;
}

static const struct {
    int status;
    const char *text;
} status_texts[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Entity"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_status_text(int status)
{
    for (size_t i = 0; i < sizeof status_texts / sizeof status_texts[0]; i++)
        if (status_texts[i].status == status)
            return status_texts[i].text;
    if (status >= 100 && status < 200)
        return "Informational";
    if (status >= 200 && status < 300)
        return "Success";
    if (status >= 300 && status < 400)
        return "Redirection";
    if (status >= 400 && status < 500)
        return "Client Error";
    return "Server Error";
}

static bool name_is(const char *name, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && strncasecmp(name, lit, n) == 0;
}

bool http_header_is_hop_by_hop(const char *name, size_t len)
{
    if (len >= 6 && strncasecmp(name, "proxy-", 6) == 0)
        return true;
    return name_is(name, len, "connection") || name_is(name, len, "keep-alive") ||
           name_is(name, len, "te") || name_is(name, len, "trailer") ||
           name_is(name, len, "trailers") || name_is(name, len, "transfer-encoding") ||
           name_is(name, len, "upgrade");
}

const char *http_error_type(int status)
{
    switch (status) {
    case 400:
        return "BadRequestError";
    case 401:
        return "AuthenticationError";
    case 403:
        return "PermissionDeniedError";
    case 404:
        return "NotFoundError";
    case 408:
        return "RequestTimeoutError";
    case 413:
        return "RequestTooLargeError";
    case 422:
        return "UnprocessableEntityError";
    case 429:
        return "RateLimitError";
    case 501:
        return "NotImplementedError";
    case 503:
        return "ServiceUnavailableError";
    default:
        return status >= 500 ? "InternalServerError" : "BadRequestError";
    }
}

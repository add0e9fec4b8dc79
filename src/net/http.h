/* Shared HTTP/1.1 types: header lists, status texts. */
#ifndef TANDEM_NET_HTTP_H
#define TANDEM_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http_header {
    const char *name; /* as received (case preserved); compare case-insensitively */
    const char *value;
    size_t name_len;
    size_t value_len;
};

struct http_headers {
    struct http_header *items;
    size_t n;
    size_t cap;
};

/* Case-insensitive lookup; returns the first match (NUL-terminated) or NULL. */
const char *http_headers_get(const struct http_headers *h, const char *name);
const char *http_status_text(int status);
/* The OpenAI SDK's error class for a status ("BadRequestError", "RequestTimeoutError",
 * ...): the one mapping every error body uses (server-made and OpenAI-layer alike). */
const char *http_error_type(int status);
/* True for Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade. */
bool http_header_is_hop_by_hop(const char *name, size_t len);

#endif

/* jscan: a validating JSON scanner that reads a few top-level fields of an object
 * without building a DOM.
 *
 * The router only needs `model`, the prompt and a couple of hash keys out of a request
 * body that may be hundreds of KiB, and forwards the body unchanged. jscan checks the
 * whole text is valid JSON (same grammar jansson accepts: UTF-8, escapes, surrogate
 * pairs, strict numbers, nesting up to 2048) in one pass, and returns where the asked
 * fields' values lie inside the text. Strings without escapes are then used in place.
 *
 * Differences from jansson, by design (tests/fuzz/fuzz_jscan.c checks the rest agree):
 * numbers are not converted, so an integer or real too big for jansson is accepted (the
 * engine behind the router decides); a key containing an escaped NUL is accepted; a raw
 * NUL byte is refused (jansson stops reading at it). */
#ifndef TANDEM_BASE_JSCAN_H
#define TANDEM_BASE_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "base/arena.h"
#include "base/json.h"

enum jscan_type {
    JSCAN_ABSENT = 0,
    JSCAN_NULL,
    JSCAN_FALSE,
    JSCAN_TRUE,
    JSCAN_NUMBER,
    JSCAN_STRING,
    JSCAN_ARRAY,
    JSCAN_OBJECT,
};

/* A value inside the scanned text (borrowed). Strings: p/len are the raw bytes between
 * the quotes and escaped says whether they contain a backslash. Other types: the whole
 * value's text. */
struct jscan_val {
    enum jscan_type type;
    bool escaped;
    const char *p;
    size_t len;
};

/* A top-level key to look for and, after jscan_object, its value (the last occurrence
 * wins, as in jansson). */
struct jscan_field {
    const char *key;
    struct jscan_val v;
};

enum jscan_status {
    JSCAN_OK = 0,
    JSCAN_INVALID = -1,    /* err: "invalid JSON at line L column C: why" */
    JSCAN_NOT_OBJECT = -2, /* valid JSON, but not an object */
};

/* Validates text (len bytes; NUL bytes are data) as one JSON value and fills the
 * fields' values when it is an object. */
enum jscan_status jscan_object(const char *text, size_t len, struct jscan_field *fields,
                               size_t n_fields, struct errinfo *err);

/* Type name for messages ("string", "array", ...). */
const char *jscan_type_name(enum jscan_type t);

/* The decoded bytes of a string value: in place when it has no escapes, else decoded
 * into the arena. *out is NUL-terminated in the decoded case only; use *len. */
void jscan_str_view(const struct jscan_val *v, struct arena *a, const char **out, size_t *len);

/* The decoded string, always a NUL-terminated arena copy. NULL unless v is a string. */
char *jscan_str_dup(const struct jscan_val *v, struct arena *a, size_t *len);

/* The first element of an array value: false when v is not an array or is empty. */
bool jscan_array_first(const struct jscan_val *v, struct jscan_val *out);

#endif

/* JSON helpers on top of jansson: typed field access whose errors name the field, and a
 * fast string escaper for hand-built JSON on hot paths (SSE chunks). */
#ifndef TANDEM_BASE_JSON_H
#define TANDEM_BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/err.h"


/* Parse text. On failure returns NULL and writes "invalid JSON at line L column C: why"
 * into err. The result is owned by the caller (json_decref). Rejects duplicate keys?
 * No: last wins, as in Python's json (vLLM's behaviour). */
json_t *json_parse(const char *text, size_t len, struct errinfo *err);

/* Typed getters. Each returns: 1 when the field is present with the right type (value
 * stored), 0 when absent or null (out untouched), -1 on a wrong type (err says e.g.
 * "'max_tokens' must be an integer, got string"). Strings are borrowed from obj. */
int json_get_str(const json_t *obj, const char *key, const char **out, struct errinfo *err);
int json_get_int(const json_t *obj, const char *key, long long *out, struct errinfo *err);
int json_get_bool(const json_t *obj, const char *key, bool *out, struct errinfo *err);
/* Accepts integers too. */
int json_get_num(const json_t *obj, const char *key, double *out, struct errinfo *err);
int json_get_obj(const json_t *obj, const char *key, json_t **out, struct errinfo *err);
int json_get_arr(const json_t *obj, const char *key, json_t **out, struct errinfo *err);

/* Appends s (n bytes) JSON-escaped, without surrounding quotes. Invalid UTF-8 bytes are
 * replaced by U+FFFD so the output is always valid JSON. */
void json_escape(struct buf *out, const char *s, size_t n);
/* Appends "s" with quotes. */
void json_quote(struct buf *out, const char *s, size_t n);
/* Serialise a jansson value compactly (no spaces, keys in insertion order). */
void json_dump_to(struct buf *out, const json_t *v);

#endif

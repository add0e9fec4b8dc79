/* JSON helpers: parsing with positioned errors, typed getters whose messages name the
 * field, and a UTF-8-validating escaper for hand-built JSON. */
#include "base/json.h"

#include <stdio.h>
#include <string.h>

json_t *json_parse(const char *text, size_t len, struct errinfo *err)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v && err)
        snprintf(err->msg, sizeof err->msg, "invalid JSON at line %d column %d: %s", je.line,
                 je.column, je.text);
    return v;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

static int wrong(const json_t *v, const char *key, const char *want, struct errinfo *err)
{
    if (err)
        snprintf(err->msg, sizeof err->msg, "'%s' must be %s, got %s", key, want, type_name(v));
    return -1;
}

static const json_t *field(const json_t *obj, const char *key)
{
    if (!obj || !json_is_object(obj))
        return NULL;
    const json_t *v = json_object_get(obj, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

int json_get_str(const json_t *obj, const char *key, const char **out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return wrong(v, key, "a string", err);
    *out = json_string_value(v);
    return 1;
}

int json_get_int(const json_t *obj, const char *key, long long *out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (json_is_real(v)) {
        /* 5.0 is an integer to Python's pydantic in lax mode; accept exact integrals.
         * Range-check first: converting an out-of-range double is undefined. */
        double d = json_real_value(v);
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(long long)d) {
            *out = (long long)d;
            return 1;
        }
    }
    if (!json_is_integer(v))
        return wrong(v, key, "an integer", err);
    *out = json_integer_value(v);
    return 1;
}

int json_get_bool(const json_t *obj, const char *key, bool *out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return wrong(v, key, "a boolean", err);
    *out = json_is_true(v);
    return 1;
}

int json_get_num(const json_t *obj, const char *key, double *out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return wrong(v, key, "a number", err);
    *out = json_number_value(v);
    return 1;
}

int json_get_obj(const json_t *obj, const char *key, json_t **out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_object(v))
        return wrong(v, key, "an object", err);
    *out = (json_t *)v;
    return 1;
}

int json_get_arr(const json_t *obj, const char *key, json_t **out, struct errinfo *err)
{
    const json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return wrong(v, key, "an array", err);
    *out = (json_t *)v;
    return 1;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned int cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Reject overlong forms, surrogates and out-of-range code points. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void json_escape(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    buf_reserve(out, n + 8);
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            buf_append(out, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                buf_append(out, "\xef\xbf\xbd", 3);
                i++;
            } else {
                buf_append(out, p + i, l);
                i += l;
            }
            continue;
        }
        switch (c) {
        case '"':
            buf_append(out, "\\\"", 2);
            break;
        case '\\':
            buf_append(out, "\\\\", 2);
            break;
        case '\n':
            buf_append(out, "\\n", 2);
            break;
        case '\r':
            buf_append(out, "\\r", 2);
            break;
        case '\t':
            buf_append(out, "\\t", 2);
            break;
        case '\b':
            buf_append(out, "\\b", 2);
            break;
        case '\f':
            buf_append(out, "\\f", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, u, 6);
        }
        }
        i++;
    }
}

void json_quote(struct buf *out, const char *s, size_t n)
{
    buf_append_char(out, '"');
    json_escape(out, s, n);
    buf_append_char(out, '"');
}

static int dump_cb(const char *data, size_t size, void *ctx)
{
    buf_append((struct buf *)ctx, data, size);
    return 0;
}

void json_dump_to(struct buf *out, const json_t *v)
{
    json_dump_callback(v, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

/* jscan: see jscan.h. One pass, no allocation, an explicit stack (no recursion). */
#include "base/jscan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define JSCAN_MAX_DEPTH 2048

struct scan {
    const unsigned char *start, *p, *end;
    const char *why;
    const unsigned char *err_at;
};

static bool fail(struct scan *s, const unsigned char *at, const char *why)
{
    if (!s->why) {
        s->why = why;
        s->err_at = at;
    }
    return false;
}

static inline void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads XXXX after "\u" at p; -1 when not 4 hex digits. */
static int32_t hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p (first byte >= 0x80), 0 when invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Scans the string whose opening quote is at s->p; leaves s->p after the closing one. */
static bool scan_string(struct scan *s, struct jscan_val *v)
{
    const unsigned char *open = s->p;
    const unsigned char *p = open + 1, *end = s->end;
    bool escaped = false;
    for (;;) {
        /* Eight bytes at a time while none is '"', '\\', a control or non-ASCII byte. */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
            uint64_t hit = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x) | x;
            if (hit & HIGHS)
                break;
            p += 8;
        }
        if (p >= end)
            return fail(s, open, "unterminated string");
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c == '\\') {
            escaped = true;
            if (end - p < 2)
                return fail(s, open, "unterminated string");
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                break;
            case 'u': {
                int32_t u = hex4(p + 2, end);
                if (u < 0)
                    return fail(s, p, "invalid \\u escape");
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return fail(s, p, "invalid Unicode escape (lone low surrogate)");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    int32_t lo = (end - p >= 12 && p[6] == '\\' && p[7] == 'u') ? hex4(p + 8, end)
                                                                               : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail(s, p, "invalid Unicode escape (lone high surrogate)");
                    p += 12;
                } else
                    p += 6;
                break;
            }
            default:
                return fail(s, p, "invalid escape");
            }
            continue;
        }
        if (c < 0x20)
            return fail(s, p, "control character in string");
        if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (!n)
                return fail(s, p, "invalid UTF-8 in string");
            p += n;
            continue;
        }
        p++;
    }
    if (v) {
        v->type = JSCAN_STRING;
        v->escaped = escaped;
        v->p = (const char *)open + 1;
        v->len = (size_t)(p - open - 1);
    }
    s->p = p + 1;
    return true;
}

static bool is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static bool scan_number(struct scan *s)
{
    const unsigned char *p = s->p, *end = s->end, *start = p;
    if (*p == '-')
        p++;
    if (!is_digit(p, end))
        return fail(s, start, "invalid number");
    if (*p == '0')
        p++;
    else
        while (is_digit(p, end))
            p++;
    if (p < end && *p == '.') {
        p++;
        if (!is_digit(p, end))
            return fail(s, start, "invalid number");
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            return fail(s, start, "invalid number");
        while (is_digit(p, end))
            p++;
    }
    s->p = p;
    return true;
}

static bool scan_literal(struct scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, s->p, "invalid token");
    s->p += n;
    return true;
}

/* Decodes a validated string's raw bytes into out (room for len + 1 bytes is enough:
 * no escape decodes to more bytes than it occupies). Returns the decoded length. */
static size_t decode(const char *in, size_t len, char *out)
{
    const unsigned char *p = (const unsigned char *)in, *end = p + len;
    char *o = out;
    while (p < end) {
        const unsigned char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = bs ? (size_t)(bs - p) : (size_t)(end - p);
        memcpy(o, p, run);
        o += run;
        p += run;
        if (!bs)
            break;
        unsigned char e = p[1];
        p += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(p, end);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)hex4(p + 2, end);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80)
                *o++ = (char)cp;
            else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *o++ = (char)e; break; /* " \ / */
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

/* Does the raw key (validated string contents) equal want? */
static bool key_equals(const struct jscan_val *k, const char *want, size_t want_len)
{
    if (!k->escaped)
        return k->len == want_len && memcmp(k->p, want, want_len) == 0;
    char tmp[128];
    if (k->len >= sizeof tmp)
        return false; /* our keys are short; an escaped long key cannot decode to them */
    size_t n = decode(k->p, k->len, tmp);
    return n == want_len && memcmp(tmp, want, want_len) == 0;
}

/* Scans one value at s->p (leading whitespace allowed) into *top (may be NULL); inside
 * a top-level object, the values of the keys in fields go to their fields. */
static bool scan_value(struct scan *s, struct jscan_val *top, struct jscan_field *fields,
                       size_t n_fields)
{
    unsigned char stack[JSCAN_MAX_DEPTH];
    struct jscan_val *cont[2] = {NULL, NULL}; /* the top value, a field value: set on close */
    size_t depth = 0;
    struct jscan_val *target = top; /* where the value being scanned goes, or NULL */

value:
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, s->p, "unexpected end of input");
    if (target) {
        target->p = (const char *)s->p;
        target->escaped = false;
    }
    switch (*s->p) {
    case '{':
    case '[':
        if (depth == JSCAN_MAX_DEPTH)
            return fail(s, s->p, "maximum nesting depth reached");
        if (target)
            target->type = *s->p == '{' ? JSCAN_OBJECT : JSCAN_ARRAY;
        if (depth < 2)
            cont[depth] = target;
        stack[depth++] = *s->p;
        target = NULL;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == (stack[depth - 1] == '{' ? '}' : ']')) {
            s->p++;
            goto closed;
        }
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    case '"':
        if (!scan_string(s, target))
            return false;
        target = NULL;
        goto next;
    case 't':
        if (!scan_literal(s, "true", 4))
            return false;
        if (target)
            target->type = JSCAN_TRUE;
        break;
    case 'f':
        if (!scan_literal(s, "false", 5))
            return false;
        if (target)
            target->type = JSCAN_FALSE;
        break;
    case 'n':
        if (!scan_literal(s, "null", 4))
            return false;
        if (target)
            target->type = JSCAN_NULL;
        break;
    default:
        if (*s->p != '-' && (*s->p < '0' || *s->p > '9'))
            return fail(s, s->p, "invalid token");
        if (!scan_number(s))
            return false;
        if (target)
            target->type = JSCAN_NUMBER;
        break;
    }
    if (target)
        target->len = (size_t)((const char *)s->p - target->p);
    target = NULL;
    goto next;

closed:
    /* The container at stack[depth - 1] just closed (s->p is past its bracket). */
    depth--;
    if (depth < 2 && cont[depth]) {
        cont[depth]->len = (size_t)((const char *)s->p - cont[depth]->p);
        cont[depth] = NULL;
    }
    goto next;

key:
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"')
        return fail(s, s->p, "expected a string key");
    {
        struct jscan_val k;
        if (!scan_string(s, &k))
            return false;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return fail(s, s->p, "expected ':'");
        s->p++;
        if (depth == 1 && stack[0] == '{')
            for (size_t i = 0; i < n_fields; i++)
                if (key_equals(&k, fields[i].key, strlen(fields[i].key)))
                    target = &fields[i].v;
    }
    goto value;

next:
    if (depth == 0)
        return true;
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, s->p, "unexpected end of input");
    if (stack[depth - 1] == '{') {
        if (*s->p == ',') {
            s->p++;
            goto key;
        }
        if (*s->p == '}') {
            s->p++;
            goto closed;
        }
        return fail(s, s->p, "expected ',' or '}'");
    }
    if (*s->p == ',') {
        s->p++;
        goto value;
    }
    if (*s->p == ']') {
        s->p++;
        goto closed;
    }
    return fail(s, s->p, "expected ',' or ']'");
}

static void set_error(const struct scan *s, struct errinfo *err)
{
    if (!err)
        return;
    size_t line = 1, col = 1;
    for (const unsigned char *q = s->start; q < s->err_at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if ((*q & 0xC0) != 0x80)
            col++;
    }
    snprintf(err->msg, sizeof err->msg, "invalid JSON at line %zu column %zu: %s", line, col,
             s->why);
}

enum jscan_status jscan_object(const char *text, size_t len, struct jscan_field *fields,
                               size_t n_fields, struct errinfo *err)
{
    for (size_t i = 0; i < n_fields; i++)
        fields[i].v = (struct jscan_val){0};
    const unsigned char *t = (const unsigned char *)(text ? text : "");
    struct scan s = {.start = t, .p = t, .end = t + (text ? len : 0)};
    struct jscan_val top = {0};
    if (!scan_value(&s, &top, fields, n_fields)) {
        set_error(&s, err);
        for (size_t i = 0; i < n_fields; i++)
            fields[i].v = (struct jscan_val){0};
        return JSCAN_INVALID;
    }
    skip_ws(&s);
    if (s.p < s.end) {
        fail(&s, s.p, "end of input expected");
        set_error(&s, err);
        for (size_t i = 0; i < n_fields; i++)
            fields[i].v = (struct jscan_val){0};
        return JSCAN_INVALID;
    }
    if (top.type != JSCAN_OBJECT) {
        if (err)
            snprintf(err->msg, sizeof err->msg, "request body must be a JSON object, got %s",
                     jscan_type_name(top.type));
        return JSCAN_NOT_OBJECT;
    }
    return JSCAN_OK;
}

const char *jscan_type_name(enum jscan_type t)
{
    switch (t) {
    case JSCAN_NULL: return "null";
    case JSCAN_FALSE:
    case JSCAN_TRUE: return "boolean";
    case JSCAN_NUMBER: return "number";
    case JSCAN_STRING: return "string";
    case JSCAN_ARRAY: return "array";
    case JSCAN_OBJECT: return "object";
    case JSCAN_ABSENT: break;
    }
    return "nothing";
}

void jscan_str_view(const struct jscan_val *v, struct arena *a, const char **out, size_t *len)
{
    if (v->type != JSCAN_STRING) {
        *out = NULL;
        *len = 0;
        return;
    }
    if (!v->escaped) {
        *out = v->p;
        *len = v->len;
        return;
    }
    char *o = arena_alloc(a, v->len + 1);
    *len = decode(v->p, v->len, o);
    *out = o;
}

char *jscan_str_dup(const struct jscan_val *v, struct arena *a, size_t *len)
{
    if (v->type != JSCAN_STRING)
        return NULL;
    char *o = arena_alloc(a, v->len + 1);
    size_t n = decode(v->p, v->len, o);
    if (len)
        *len = n;
    return o;
}

bool jscan_array_first(const struct jscan_val *v, struct jscan_val *out)
{
    *out = (struct jscan_val){0};
    if (v->type != JSCAN_ARRAY || v->len < 2)
        return false;
    const unsigned char *t = (const unsigned char *)v->p;
    /* The array was validated, so scanning its first element cannot fail. */
    struct scan s = {.start = t, .p = t + 1, .end = t + v->len - 1};
    skip_ws(&s);
    if (s.p >= s.end)
        return false;
    struct scan one = {.start = t, .p = s.p, .end = s.end};
    /* Scan the first element only: stop at its end by scanning a value with the
     * remainder treated as trailing text. */
    return scan_value(&one, out, NULL, 0) && out->type != JSCAN_ABSENT;
}

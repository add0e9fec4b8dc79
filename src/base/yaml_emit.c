/* Block YAML writer for jansson values.
 *
 * The invariant is the round trip: yaml_parse(yaml_emit(v)) is json_equal to v. Strings
 * are written plain only when no YAML 1.1 or 1.2 parser could read them as anything
 * else (a number, a boolean, null, an indicator, a comment, a line break); everything
 * else is double-quoted with escapes, all on one line, so no string ever depends on
 * indentation or folding. Reals always carry a '.' or an exponent so they do not come
 * back as integers. */
#include "base/yaml_emit.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void pad(struct buf *out, int n)
{
    for (int i = 0; i < n; i++)
        buf_append_char(out, ' ');
}

/* Decodes one UTF-8 sequence at s (n > 0 bytes left); returns its length, or 0 when the
 * bytes are not well-formed UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, min = 0x800, c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* Code points YAML does not allow raw in a scalar, or reads as line breaks or a BOM. */
static bool needs_escape_cp(unsigned cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

static bool word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* Words YAML 1.1 or 1.2 resolves to null, booleans or special floats, in any case. */
static bool is_special_word(const char *s, size_t n)
{
    static const char *const words[] = {"null", "~",   "true", "false", "yes",      "no",  "on",
                                        "off",  "y",   "n",    "inf",   "infinity", "nan", "=",
                                        NULL};
    for (const char *const *w = words; *w; w++)
        if (word_is(s, n, *w))
            return true;
    return false;
}

static bool needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    unsigned char c0 = (unsigned char)s[0];
    /* Indicators, and anything that could start a number (digits, signs, '.'). A '-'
     * followed by a letter or another '-' ("--port") is plain; "---" is not. */
    if (c0 == '-' && n >= 2 && (isalpha((unsigned char)s[1]) || s[1] == '-') &&
        !(n >= 3 && s[1] == '-' && s[2] == '-') && !is_special_word(s + 1, n - 1))
        c0 = 'a';
    if (strchr("-?:,[]{}#&*!|>'\"%@` \t.+", c0) || (c0 >= '0' && c0 <= '9'))
        return true;
    if (n >= 2 && s[0] == '<' && s[1] == '<') /* the merge key */
        return true;
    if (s[n - 1] == ' ' || s[n - 1] == ':')
        return true;
    if (is_special_word(s, n))
        return true;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (len == 0 || needs_escape_cp(cp))
            return true;
        if (cp == ':' && i + 1 < n && s[i + 1] == ' ')
            return true;
        if (cp == ' ' && i + 1 < n && s[i + 1] == '#')
            return true;
        i += len;
    }
    return false;
}

static void emit_quoted(struct buf *out, const char *s, size_t n)
{
    buf_append_char(out, '"');
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) { /* not UTF-8: the byte as a code point, the best YAML can do */
            buf_printf(out, "\\u%04x", (unsigned char)s[i]);
            i++;
            continue;
        }
        switch (cp) {
        case '"':
            buf_append_str(out, "\\\"");
            break;
        case '\\':
            buf_append_str(out, "\\\\");
            break;
        case '\n':
            buf_append_str(out, "\\n");
            break;
        case '\t':
            buf_append_str(out, "\\t");
            break;
        case '\r':
            buf_append_str(out, "\\r");
            break;
        default:
            if (needs_escape_cp(cp))
                buf_printf(out, "\\u%04x", cp);
            else
                buf_append(out, s + i, len);
        }
        i += len;
    }
    buf_append_char(out, '"');
}

void yaml_emit_string(struct buf *out, const char *s, size_t n)
{
    if (needs_quotes(s, n))
        emit_quoted(out, s, n);
    else
        buf_append(out, s, n);
}

/* Shortest text that reads back as the same double, always with '.' or an exponent. */
static void emit_real(struct buf *out, double d)
{
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    buf_append_str(out, tmp);
    if (!strpbrk(tmp, ".eE"))
        buf_append_str(out, ".0");
}

static bool is_collection(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

/* A scalar or empty collection, on the current line, without the newline. */
static void emit_scalar(struct buf *out, const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        buf_append_str(out, "{}");
        break;
    case JSON_ARRAY:
        buf_append_str(out, "[]");
        break;
    case JSON_STRING:
        yaml_emit_string(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        emit_real(out, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_append_str(out, "true");
        break;
    case JSON_FALSE:
        buf_append_str(out, "false");
        break;
    case JSON_NULL:
        buf_append_str(out, "null");
        break;
    }
}

static void emit_block(struct buf *out, const json_t *v, int indent, bool first_inline);

/* The value after "key:" or "- ": inline when a scalar, else a nested block. */
static void emit_entry_value(struct buf *out, const json_t *v, int indent)
{
    if (!is_collection(v)) {
        buf_append_char(out, ' ');
        emit_scalar(out, v);
        buf_append_char(out, '\n');
    } else {
        buf_append_char(out, '\n');
        emit_block(out, v, indent + 2, false);
    }
}

/* A non-empty collection, one entry per line at indent. With first_inline the cursor is
 * already at column indent (after a "- "), so the first line gets no padding. */
static void emit_block(struct buf *out, const json_t *v, int indent, bool first_inline)
{
    bool first = true;
    if (json_is_object(v)) {
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach((json_t *)v, key, key_len, val)
        {
            if (!(first && first_inline))
                pad(out, indent);
            first = false;
            yaml_emit_string(out, key, key_len);
            buf_append_char(out, ':');
            emit_entry_value(out, val, indent);
        }
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach((json_t *)v, i, item)
    {
        if (!(first && first_inline))
            pad(out, indent);
        first = false;
        buf_append_str(out, "- ");
        if (is_collection(item)) {
            emit_block(out, item, indent + 2, true);
        } else {
            emit_scalar(out, item);
            buf_append_char(out, '\n');
        }
    }
}

void yaml_emit(struct buf *out, const json_t *v, int indent)
{
    if (indent < 0)
        indent = 0;
    if (is_collection(v)) {
        emit_block(out, v, indent, false);
    } else {
        pad(out, indent);
        emit_scalar(out, v);
        buf_append_char(out, '\n');
    }
}

void yaml_emit_doc(struct buf *out, const json_t *v)
{
    buf_append_str(out, "---\n");
    yaml_emit(out, v, 0);
}

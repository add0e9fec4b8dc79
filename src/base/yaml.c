/* YAML -> jansson conversion on libfyaml.
 *
 * libfyaml parses; this file decides what each node means as JSON. Scalars follow the
 * YAML 1.2 core schema (so `yes`/`on` stay strings, `0x1f` is an integer). Documents are
 * loaded without libfyaml's own alias resolution, which copies eagerly and lets a few
 * hundred bytes expand to gigabytes; aliases and `<<` merge keys are resolved here
 * instead, against a node budget proportional to the input size.
 *
 * libfyaml never writes to stderr from here: its diagnostics go to a private diag object
 * that collects errors, and the first one becomes the caller's yaml_err. Positions in
 * yaml_err are 1-based.
 *
 * Source positions (yaml_parse_pos) map each produced json_t* to where its node starts.
 * libfyaml's public API only gives marks for scalar tokens (and those start inside the
 * quotes, after an alias's '*', and at the content of a block scalar), so the start of
 * anything else is found from the text: a collection starts at its first entry, moved
 * back to the '[', '{', '-' or '?' that opens it; a quoted scalar at its quote; an alias
 * at its '*'; a block scalar at its '|' or '>'. Empty collections have no entry to start
 * from and get no position. json_true/false/null are singletons shared by every such
 * node, so they never have a position either. */
#include "base/yaml.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#include "base/alloc.h"
#include "base/buf.h"

/* Deep enough for any real config; stops recursive aliases (an alias to its own
 * ancestor) long before the C stack is in danger. */
#define YAML_MAX_DEPTH 256

#define TAG_PREFIX "tag:yaml.org,2002:"

struct conv {
    const char *name;
    struct errinfo *err;
    size_t budget; /* nodes still allowed to be produced */
    /* The mapping key whose value is being converted: where errors point when the
     * node itself has no position (an empty value has no token). */
    struct fy_node *near;
    /* Positions of produced values; NULL unless the caller asked for them. */
    struct yaml_positions *pos;
    /* Starts already found, keyed by fy_node: an anchored node converted once per
     * alias is looked at once, so finding positions stays linear in the text. */
    struct yaml_positions *starts;
    const char *text;
    size_t len;
};

/* Open addressing keyed by pointer (json_t or fy_node), linear probing, at most half
 * full. */
struct yaml_pos_slot {
    const void *node; /* NULL: empty slot */
    size_t off;       /* byte offset, to find a parent's opening bracket from it */
    int line;
    int column;
};

struct yaml_positions {
    struct yaml_pos_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

static size_t pos_hash(const void *node, size_t mask)
{
    uint64_t x = (uint64_t)(uintptr_t)node;
    x ^= x >> 29; /* allocations are aligned: the low bits carry no information */
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 24) & mask;
}

static struct yaml_pos_slot *pos_find(const struct yaml_positions *pos, const void *node)
{
    if (!pos || pos->cap == 0)
        return NULL;
    size_t mask = pos->cap - 1;
    for (size_t i = pos_hash(node, mask);; i = (i + 1) & mask) {
        struct yaml_pos_slot *s = &pos->slots[i];
        if (s->node == node)
            return s;
        if (!s->node)
            return NULL; /* the table is never full, so this ends */
    }
}

/* Records (or overwrites: the last conversion of a node wins) a position. */
static void pos_put(struct yaml_positions *pos, const void *node, size_t off, int line, int column)
{
    struct yaml_pos_slot *found = pos_find(pos, node);
    if (found) {
        *found = (struct yaml_pos_slot){node, off, line, column};
        return;
    }
    if ((pos->n + 1) * 2 > pos->cap) {
        struct yaml_positions bigger = {NULL, pos->cap ? pos->cap * 2 : 64, 0};
        bigger.slots = xcalloc(bigger.cap, sizeof *bigger.slots);
        for (size_t i = 0; i < pos->cap; i++)
            if (pos->slots[i].node)
                pos_put(&bigger, pos->slots[i].node, pos->slots[i].off, pos->slots[i].line,
                        pos->slots[i].column);
        free(pos->slots);
        *pos = bigger;
    }
    size_t mask = pos->cap - 1;
    size_t i = pos_hash(node, mask);
    while (pos->slots[i].node)
        i = (i + 1) & mask;
    pos->slots[i] = (struct yaml_pos_slot){node, off, line, column};
    pos->n++;
}

static bool is_singleton(const json_t *v)
{
    return json_is_null(v) || json_is_true(v) || json_is_false(v);
}

static void set_err(struct errinfo *err, const char *name, int line, int column, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));

static void set_err(struct errinfo *err, const char *name, int line, int column, const char *fmt,
                    ...)
{
    if (!err)
        return;
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    err->line = line > 0 ? line : 0;
    err->column = line > 0 && column > 0 ? column : 0;
    if (err->line)
        snprintf(err->msg, sizeof err->msg, "%s:%d:%d: %s", name, err->line, err->column, why);
    else
        snprintf(err->msg, sizeof err->msg, "%s: %s", name, why);
}

/* Where a node starts, 1-based; 0/0 when libfyaml has no token for it (an empty
 * mapping, say). Collections have no token of their own, so use their first scalar. */
static void node_pos(struct fy_node *n, int *line, int *column)
{
    *line = *column = 0;
    for (int depth = 0; n && depth < 64; depth++) {
        if (fy_node_is_scalar(n)) { /* also aliases */
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
            if (m) {
                *line = m->line + 1;
                *column = m->column + 1;
            }
            return;
        }
        void *it = NULL;
        if (fy_node_is_mapping(n)) {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p ? fy_node_pair_key(p) : NULL;
        } else {
            n = fy_node_sequence_iterate(n, &it);
        }
    }
}

static json_t *fail(struct conv *c, struct fy_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *fail(struct conv *c, struct fy_node *at, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    int line, column;
    node_pos(at, &line, &column);
    if (line == 0 && c->near)
        node_pos(c->near, &line, &column);
    set_err(c->err, c->name, line, column, "%s", why);
    return NULL;
}

/* The text of s for messages: at most 40 bytes, one line. */
static const char *excerpt(const char *s, size_t n, char out[48])
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < 40; i++)
        out[k++] = (s[i] == '\n' || s[i] == '\0') ? ' ' : s[i];
    if (n > 40) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static bool is_digits(const char *s, size_t n, int base)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = base == 16 ? ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                                (ch >= 'A' && ch <= 'F'))
                             : (ch >= '0' && ch < '0' + base);
        if (!ok)
            return false;
    }
    return true;
}

static bool is_one_of(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0)
            return true;
    return false;
}

static const char *const null_words[] = {"~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

/* Core-schema integer: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+. Values past long long
 * become reals rather than errors: a config number that large is a size, not an id. */
static json_t *parse_int(const char *s, size_t n)
{
    char tmp[72];
    if (n == 0 || n >= sizeof tmp)
        return NULL;
    int base = 10;
    size_t start = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
        base = s[1] == 'o' ? 8 : 16;
        start = 2;
    } else if (s[0] == '-' || s[0] == '+') {
        start = 1;
    }
    if (!is_digits(s + start, n - start, base))
        return NULL;
    memcpy(tmp, s + start, n - start);
    tmp[n - start] = '\0';
    errno = 0;
    unsigned long long u = strtoull(tmp, NULL, base);
    bool neg = base == 10 && s[0] == '-';
    if (errno == 0 && (neg ? u <= (unsigned long long)LLONG_MAX + 1 : u <= LLONG_MAX))
        return json_integer(neg ? -(json_int_t)(u - 1) - 1 : (json_int_t)u);
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d = base == 10 ? strtod(tmp, NULL) : (double)u; /* u saturates: good enough */
    return isfinite(d) ? json_real(d) : NULL;
}

/* Core-schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?. Infinity and
 * NaN have no JSON form, so .inf/.nan (and overflowing literals) are left as strings. */
static json_t *parse_float(const char *s, size_t n)
{
    char tmp[128];
    if (n == 0 || n >= sizeof tmp)
        return NULL;
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+')
        i++;
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, int_digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, frac_digits++;
    }
    if (int_digits == 0 && frac_digits == 0)
        return NULL;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, exp_digits++;
        if (exp_digits == 0)
            return NULL;
    }
    if (i != n)
        return NULL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    return isfinite(d) ? json_real(d) : NULL;
}

static json_t *string_value(struct conv *c, struct fy_node *n, const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (!v) /* the input was checked as UTF-8 up front, so this is only allocation */
        return fail(c, n, "string is not valid UTF-8");
    return v;
}

static json_t *convert_scalar(struct conv *c, struct fy_node *n)
{
    size_t len = 0;
    const char *s = fy_node_get_scalar(n, &len);
    if (!s) {
        s = "";
        len = 0;
    }
    size_t tag_len = 0;
    const char *tag = fy_node_get_tag(n, &tag_len);
    bool plain = fy_node_get_style(n) == FYNS_PLAIN;
    char ex[48];

    if (tag && tag_len > strlen(TAG_PREFIX) && memcmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0) {
        const char *kind = tag + strlen(TAG_PREFIX);
        size_t kind_len = tag_len - strlen(TAG_PREFIX);
        json_t *v = NULL;
        const char *want = NULL;
        if (kind_len == 3 && memcmp(kind, "str", 3) == 0) {
            return string_value(c, n, s, len);
        } else if (kind_len == 3 && memcmp(kind, "int", 3) == 0) {
            want = "an integer";
            v = parse_int(s, len);
            if (v && !json_is_integer(v)) {
                json_decref(v);
                v = NULL;
            }
        } else if (kind_len == 5 && memcmp(kind, "float", 5) == 0) {
            want = "a float";
            v = parse_float(s, len);
            if (!v && (v = parse_int(s, len)) && json_is_integer(v)) {
                json_t *r = json_real((double)json_integer_value(v));
                json_decref(v);
                v = r;
            }
        } else if (kind_len == 4 && memcmp(kind, "bool", 4) == 0) {
            want = "a boolean";
            if (is_one_of(s, len, true_words))
                v = json_true();
            else if (is_one_of(s, len, false_words))
                v = json_false();
        } else if (kind_len == 4 && memcmp(kind, "null", 4) == 0) {
            want = "null";
            if (len == 0 || is_one_of(s, len, null_words))
                v = json_null();
        }
        if (want) {
            if (!v)
                return fail(c, n, "'%s' is not %s", excerpt(s, len, ex), want);
            return v;
        }
        /* Other core tags (binary, timestamp...) keep their text. */
        return string_value(c, n, s, len);
    }
    /* "!" is the non-specific tag: "treat as a string", as for quoted scalars. */
    if (tag && tag_len == 1 && tag[0] == '!')
        plain = false;
    if (!plain)
        return string_value(c, n, s, len);

    if (len == 0 || is_one_of(s, len, null_words))
        return json_null();
    if (is_one_of(s, len, true_words))
        return json_true();
    if (is_one_of(s, len, false_words))
        return json_false();
    json_t *v = parse_int(s, len);
    if (!v)
        v = parse_float(s, len);
    return v ? v : string_value(c, n, s, len);
}

static json_t *convert(struct conv *c, struct fy_node *n, int depth);

/* Follows aliases to the node they name. */
static struct fy_node *deref(struct conv *c, struct fy_node *n)
{
    if (!n || !fy_node_is_alias(n))
        return n;
    /* Look the anchor up by name: fy_node_resolve_alias reads names like "/1" as paths
     * and overreads (libfyaml 0.7.12, found by fuzzing). */
    size_t len = 0;
    const char *name = fy_node_get_scalar(n, &len);
    struct fy_anchor *a = name ? fy_document_lookup_anchor(fy_node_document(n), name, len) : NULL;
    struct fy_node *t = a ? fy_anchor_node(a) : NULL;
    if (!t) {
        char ex[48];
        fail(c, n, "unknown alias '*%s'", excerpt(name ? name : "", len, ex));
    }
    return t;
}

/* Applies one `<<` source: keys already in obj win (explicit keys, earlier merges). */
static bool merge_one(struct conv *c, json_t *obj, json_t *merged, struct fy_node *src, int depth)
{
    struct fy_node *m = deref(c, src);
    if (src && !m)
        return false;
    if (!m || !fy_node_is_mapping(m)) {
        fail(c, src, "merge key '<<' needs a mapping or a list of mappings");
        return false;
    }
    json_t *v = convert(c, m, depth + 1);
    if (!v)
        return false;
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach(v, key, key_len, val)
    {
        if (json_object_getn(obj, key, key_len))
            continue;
        json_object_setn(obj, key, key_len, val);
        json_object_setn_new(merged, key, key_len, json_true());
    }
    json_decref(v);
    return true;
}

static json_t *convert_mapping(struct conv *c, struct fy_node *n, int depth)
{
    json_t *obj = json_object();
    /* Keys that came from merges, which a later explicit key may override. */
    json_t *merged = json_object();
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(n, &it))) {
        struct fy_node *key_node = fy_node_pair_key(p);
        struct fy_node *val_node = fy_node_pair_value(p);
        struct fy_node *k = deref(c, key_node);
        if (key_node && !k)
            goto fail;
        if (k && !fy_node_is_scalar(k)) {
            fail(c, key_node, "mapping keys must be scalars");
            goto fail;
        }
        size_t klen = 0;
        const char *ks = k ? fy_node_get_scalar(k, &klen) : NULL;
        if (!ks) {
            ks = "";
            klen = 0;
        }
        c->near = key_node;
        if (k && !fy_node_is_alias(key_node) && fy_node_get_style(k) == FYNS_PLAIN && klen == 2 &&
            memcmp(ks, "<<", 2) == 0) {
            struct fy_node *src = deref(c, val_node);
            if (val_node && !src)
                goto fail;
            if (src && fy_node_is_sequence(src)) {
                void *sit = NULL;
                struct fy_node *item;
                while ((item = fy_node_sequence_iterate(src, &sit)))
                    if (!merge_one(c, obj, merged, item, depth))
                        goto fail;
            } else if (!merge_one(c, obj, merged, val_node, depth)) {
                goto fail;
            }
            continue;
        }
        if (json_object_getn(obj, ks, klen) && !json_object_getn(merged, ks, klen)) {
            char ex[48];
            fail(c, key_node, "duplicate key '%s'", excerpt(ks, klen, ex));
            goto fail;
        }
        json_t *v = convert(c, val_node, depth + 1);
        if (!v)
            goto fail;
        if (json_object_setn_new(obj, ks, klen, v) != 0) {
            fail(c, key_node, "mapping key is not valid UTF-8");
            goto fail;
        }
        json_object_deln(merged, ks, klen);
    }
    json_decref(merged);
    return obj;
fail:
    json_decref(merged);
    json_decref(obj);
    return NULL;
}

/* A place in the text: byte offset and 1-based line/column (columns count code
 * points, as libfyaml's do). */
struct text_pos {
    size_t off;
    int line;
    int column;
};

/* The first character before at.off that is not a blank or line break, with its line
 * and column; false if there is none. */
static bool prev_char(const struct conv *c, struct text_pos at, struct text_pos *out)
{
    size_t i = at.off;
    int lines_back = 0;
    while (i > 0) {
        char ch = c->text[i - 1];
        if (ch == '\n')
            lines_back++;
        else if (ch != ' ' && ch != '\t' && ch != '\r')
            break;
        i--;
    }
    if (i == 0)
        return false;
    out->off = i - 1;
    out->line = at.line - lines_back;
    if (lines_back == 0) {
        out->column = at.column - (int)(at.off - out->off); /* only one-byte blanks between */
        return out->column >= 1;
    }
    size_t start = out->off;
    while (start > 0 && c->text[start - 1] != '\n')
        start--;
    int column = 1;
    for (size_t k = start; k < out->off; k++)
        if (((unsigned char)c->text[k] & 0xc0) != 0x80) /* not a UTF-8 continuation byte */
            column++;
    out->column = column;
    return out->line >= 1;
}

static bool char_in(char ch, const char *set)
{
    return ch != '\0' && strchr(set, ch) != NULL;
}

static bool scalar_start(const struct conv *c, struct fy_node *n, struct text_pos *out)
{
    struct fy_token *t = fy_node_get_scalar_token(n);
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    if (!m || m->input_pos > c->len)
        return false;
    *out = (struct text_pos){m->input_pos, m->line + 1, m->column + 1};
    enum fy_node_style style = fy_node_get_style(n);
    char ch = out->off > 0 ? c->text[out->off - 1] : '\0';
    bool back = (style == FYNS_ALIAS && ch == '*') || (style == FYNS_SINGLE_QUOTED && ch == '\'') ||
                (style == FYNS_DOUBLE_QUOTED && ch == '"');
    if (back && out->column > 1) {
        out->off--;
        out->column--;
    } else if (style == FYNS_LITERAL || style == FYNS_FOLDED) {
        /* The token starts at the content; the node at the header's indicator, which
         * may carry chomping and indentation indicators ("|-", ">2+"). */
        struct text_pos p;
        if (!prev_char(c, *out, &p))
            return true;
        while (char_in(c->text[p.off], "+-0123456789") && p.off > 0 && p.column > 1) {
            p.off--;
            p.column--;
        }
        if (c->text[p.off] == '|' || c->text[p.off] == '>')
            *out = p;
    }
    return true;
}

static bool find_start(const struct conv *c, struct fy_node *n, struct text_pos *out);

/* Where n starts; false when there is no way to tell. */
static bool node_start(const struct conv *c, struct fy_node *n, struct text_pos *out)
{
    const struct yaml_pos_slot *s = pos_find(c->starts, n);
    if (s) {
        *out = (struct text_pos){s->off, s->line, s->column};
        return true;
    }
    if (!find_start(c, n, out))
        return false;
    pos_put(c->starts, n, out->off, out->line, out->column);
    return true;
}

static bool find_start(const struct conv *c, struct fy_node *n, struct text_pos *out)
{
    if (fy_node_is_scalar(n)) /* also aliases */
        return scalar_start(c, n, out);
    void *it = NULL;
    struct text_pos first;
    const char *openers;
    if (fy_node_is_mapping(n)) {
        struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
        struct fy_node *k = p ? fy_node_pair_key(p) : NULL;
        if (!k || !fy_node_is_scalar(k) || !scalar_start(c, k, &first))
            return false;
        openers = "{?";
    } else {
        struct fy_node *item = fy_node_sequence_iterate(n, &it);
        if (!item || !node_start(c, item, &first))
            return false;
        openers = "[-";
    }
    *out = first;
    struct text_pos p;
    if (prev_char(c, first, &p) && char_in(c->text[p.off], openers))
        *out = p;
    return true;
}

static json_t *convert_node(struct conv *c, struct fy_node *n, int depth);

static json_t *convert(struct conv *c, struct fy_node *n, int depth)
{
    json_t *v = convert_node(c, n, depth);
    struct text_pos p;
    if (v && n && c->pos && !is_singleton(v) && node_start(c, n, &p))
        pos_put(c->pos, v, p.off, p.line, p.column);
    return v;
}

static json_t *convert_node(struct conv *c, struct fy_node *n, int depth)
{
    if (depth > YAML_MAX_DEPTH)
        return fail(c, n, "nesting deeper than %d levels (recursive alias?)", YAML_MAX_DEPTH);
    if (c->budget == 0)
        return fail(c, n, "document expands to too many nodes (alias bomb?)");
    c->budget--;
    if (!n)
        return json_null(); /* `key:` with nothing after it */
    if (fy_node_is_alias(n)) {
        struct fy_node *t = deref(c, n);
        return t ? convert(c, t, depth + 1) : NULL;
    }
    if (fy_node_is_scalar(n))
        return convert_scalar(c, n);
    if (fy_node_is_mapping(n))
        return convert_mapping(c, n, depth);
    json_t *arr = json_array();
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(n, &it))) {
        json_t *v = convert(c, item, depth + 1);
        if (!v) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, v);
    }
    return arr;
}

/* jansson needs UTF-8 and libfyaml quietly drops what is not, so check first and say
 * where the bad byte is. */
static bool check_utf8(const char *text, size_t len, const char *name, struct errinfo *err)
{
    const unsigned char *s = (const unsigned char *)text;
    int line = 1, col = 1;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = s[i];
        size_t need = ch < 0x80             ? 0
                      : (ch & 0xe0) == 0xc0 ? 1
                      : (ch & 0xf0) == 0xe0 ? 2
                      : (ch & 0xf8) == 0xf0 ? 3
                                            : 4;
        bool ok = need < 4 && i + need < len;
        unsigned int cp = need == 0 ? ch : ch & (0x3f >> need);
        for (size_t k = 1; ok && k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (ok && need > 0) {
            static const unsigned int min_cp[] = {0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[need] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (!ok) {
            set_err(err, name, line, col, "invalid UTF-8 byte 0x%02x", ch);
            return false;
        }
        if (ch == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += need + 1;
    }
    return true;
}

/* Rejects, with a position, what configuration files never need and libfyaml 0.7
 * mishandles (fuzzing found a crash on an explicit key followed by a tab, "? ::\t:",
 * and leaks on unterminated quoted scalars):
 *   - control characters other than tab, LF, CR (YAML 1.2 forbids them anyway);
 *   - tabs outside quoted scalars and comments (YAML indents with spaces);
 *   - the explicit-key indicator "? " (complex mapping keys);
 *   - quoted scalars still open at the end of the text.
 * Quote tracking is the YAML rule: ' ends at a ' not doubled, " at a " not escaped; a
 * quote only opens a scalar where one can start (after space, indicator or line start). */
static bool prescan(const char *text, size_t len, const char *name, struct errinfo *err)
{
    int line = 1, col = 1, q_line = 0, q_col = 0;
    char quote = 0;
    bool comment = false;
    char prev = '\n';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7f) {
            set_err(err, name, line, col, "control character 0x%02x is not allowed in YAML", ch);
            return false;
        }
        if (ch == '\n' || ch == '\r') {
            comment = false;
            if (ch == '\n' || (i + 1 < len && text[i + 1] != '\n')) {
                line++;
                col = 1;
            }
            prev = '\n';
            continue;
        }
        if (quote == '\'') {
            if (ch == '\'') {
                if (i + 1 < len && text[i + 1] == '\'') {
                    i++;
                    col++;
                } else {
                    quote = 0;
                }
            }
        } else if (quote == '"') {
            if (ch == '\\' && i + 1 < len && text[i + 1] != '\n') {
                i++;
                col++;
            } else if (ch == '"') {
                quote = 0;
            }
        } else if (!comment) {
            bool at_start = prev == '\n' || prev == ' ' || prev == '\t' || prev == '[' ||
                            prev == '{' || prev == ',' || prev == ':' || prev == '-';
            if (ch == '#' && (prev == '\n' || prev == ' ' || prev == '\t')) {
                comment = true;
            } else if (ch == '\t') {
                set_err(err, name, line, col, "tab character: YAML here needs spaces");
                return false;
            } else if ((ch == '\'' || ch == '"') && at_start) {
                quote = (char)ch;
                q_line = line;
                q_col = col;
            } else if (ch == '?' && at_start &&
                       (i + 1 == len || text[i + 1] == ' ' || text[i + 1] == '\t' ||
                        text[i + 1] == '\n' || text[i + 1] == '\r')) {
                set_err(err, name, line, col,
                        "explicit mapping keys ('? ') are not supported in tandem's YAML");
                return false;
            }
        }
        prev = (char)ch;
        if ((ch & 0xc0) != 0x80)
            col++;
    }
    if (quote) {
        set_err(err, name, q_line, q_col, "quoted scalar is never closed");
        return false;
    }
    return true;
}

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag, (void)user, (void)buf, (void)len;
}

struct stream {
    struct fy_diag *diag;
    struct fy_parser *parser;
};

static bool stream_open(struct stream *st, const char *text, size_t len)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.level = FYET_ERROR;
    dcfg.colorize = false;
    st->diag = fy_diag_create(&dcfg);
    if (!st->diag)
        return false;
    fy_diag_set_collect_errors(st->diag, true);
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET, .diag = st->diag};
    st->parser = fy_parser_create(&pcfg);
    if (!st->parser || fy_parser_set_string(st->parser, len ? text : "", len) != 0) {
        if (st->parser)
            fy_parser_destroy(st->parser);
        fy_diag_destroy(st->diag);
        return false;
    }
    return true;
}

static void stream_close(struct stream *st)
{
    fy_parser_destroy(st->parser);
    fy_diag_destroy(st->diag);
}

/* Next document, or NULL at the end (*failed false) or on a parse error (*failed true,
 * err filled from the first error libfyaml collected). */
static struct fy_document *stream_next(struct stream *st, const char *name, struct errinfo *err,
                                       bool *failed)
{
    *failed = false;
    struct fy_document *d = fy_parse_load_document(st->parser);
    if (d)
        return d;
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(st->diag, &it))) {
        if (e->type < FYET_ERROR)
            continue;
        set_err(err, name, e->line, e->column, "%s", e->msg ? e->msg : "invalid YAML");
        *failed = true;
        return NULL;
    }
    if (fy_parser_get_stream_error(st->parser)) {
        set_err(err, name, 0, 0, "invalid YAML");
        *failed = true;
    }
    return NULL;
}

/* Copies into out the positions of the values reachable from v: the scratch table also
 * holds values that were converted and then dropped (merge sources), whose addresses a
 * later allocation may reuse. */
static void pos_keep(const struct yaml_positions *scratch, struct yaml_positions *out, json_t *v)
{
    const struct yaml_pos_slot *s = pos_find(scratch, v);
    if (s)
        pos_put(out, v, s->off, s->line, s->column);
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) pos_keep(scratch, out, item);
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item) pos_keep(scratch, out, item);
    }
}

static json_t *parse(const char *text, size_t len, const char *name, struct errinfo *err, bool all,
                     struct yaml_positions **pos)
{
    if (pos)
        *pos = NULL;
    if (!name)
        name = "<yaml>";
    if (err) {
        err->msg[0] = '\0';
        err->line = err->column = 0;
    }
    if (!check_utf8(text, len, name, err) || !prescan(text, len, name, err))
        return NULL;
    struct stream st;
    if (!stream_open(&st, text, len)) {
        set_err(err, name, 0, 0, "cannot start the YAML parser");
        return NULL;
    }
    /* Without aliases a document has fewer nodes than bytes; the slack lets configs
     * reuse anchors freely while a billion-laughs document fails fast. */
    struct conv c = {
        .name = name, .err = err, .budget = 4 * len + 100000, .text = text, .len = len};
    struct yaml_positions scratch = {NULL, 0, 0}, starts = {NULL, 0, 0};
    if (pos) {
        c.pos = &scratch;
        c.starts = &starts;
    }
    json_t *result = all ? json_array() : NULL;
    bool failed;
    struct fy_document *d;
    while ((d = stream_next(&st, name, err, &failed))) {
        json_t *v = convert(&c, fy_document_root(d), 0);
        fy_parse_document_destroy(st.parser, d);
        if (!v) {
            failed = true;
            break;
        }
        if (!all) {
            result = v;
            break;
        }
        json_array_append_new(result, v);
    }
    stream_close(&st);
    free(starts.slots);
    if (failed) {
        free(scratch.slots);
        json_decref(result);
        return NULL;
    }
    if (!result)
        result = json_null(); /* an empty stream is a null document */
    if (pos) {
        *pos = xcalloc(1, sizeof **pos);
        pos_keep(&scratch, *pos, result);
        free(scratch.slots);
    }
    return result;
}

json_t *yaml_parse(const char *text, size_t len, const char *name, struct errinfo *err)
{
    return parse(text, len, name, err, false, NULL);
}

json_t *yaml_parse_all(const char *text, size_t len, const char *name, struct errinfo *err)
{
    return parse(text, len, name, err, true, NULL);
}

json_t *yaml_load_file(const char *path, struct errinfo *err)
{
    struct buf b = BUF_INIT;
    int e = buf_read_file(&b, path);
    if (e) {
        set_err(err, path, 0, 0, "%s: %s", e == ENOENT || e == EACCES ? "cannot open"
                                                                         : "cannot read",
                strerror(e));
        buf_free(&b);
        return NULL;
    }
    json_t *v = yaml_parse(b.data ? b.data : "", b.len, path, err);
    buf_free(&b);
    return v;
}

json_t *yaml_parse_pos(const char *text, size_t len, const char *name, struct yaml_positions **pos,
                       struct errinfo *err)
{
    return parse(text, len, name, err, false, pos);
}

bool yaml_position(const struct yaml_positions *pos, const json_t *node, int *line, int *column)
{
    /* A singleton stands for every null/true/false in the document at once. */
    const struct yaml_pos_slot *s = node && !is_singleton(node) ? pos_find(pos, node) : NULL;
    if (!s)
        return false;
    if (line)
        *line = s->line;
    if (column)
        *column = s->column;
    return true;
}

void yaml_positions_free(struct yaml_positions *pos)
{
    if (!pos)
        return;
    free(pos->slots);
    free(pos);
}

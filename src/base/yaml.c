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
 * yaml_err are 1-based. */
#include "base/yaml.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
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
    struct yaml_err *err;
    size_t budget; /* nodes still allowed to be produced */
    /* The mapping key whose value is being converted: where errors point when the
     * node itself has no position (an empty value has no token). */
    struct fy_node *near;
};

static void set_err(struct yaml_err *err, const char *name, int line, int column, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));

static void set_err(struct yaml_err *err, const char *name, int line, int column, const char *fmt,
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
    struct fy_node *t = fy_node_resolve_alias(n);
    if (!t) {
        size_t len = 0;
        const char *name = fy_node_get_scalar(n, &len);
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

static json_t *convert(struct conv *c, struct fy_node *n, int depth)
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
static bool check_utf8(const char *text, size_t len, const char *name, struct yaml_err *err)
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
static struct fy_document *stream_next(struct stream *st, const char *name, struct yaml_err *err,
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

static json_t *parse(const char *text, size_t len, const char *name, struct yaml_err *err, bool all)
{
    if (!name)
        name = "<yaml>";
    if (err) {
        err->msg[0] = '\0';
        err->line = err->column = 0;
    }
    if (!check_utf8(text, len, name, err))
        return NULL;
    struct stream st;
    if (!stream_open(&st, text, len)) {
        set_err(err, name, 0, 0, "cannot start the YAML parser");
        return NULL;
    }
    /* Without aliases a document has fewer nodes than bytes; the slack lets configs
     * reuse anchors freely while a billion-laughs document fails fast. */
    struct conv c = {.name = name, .err = err, .budget = 4 * len + 100000};
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
    if (failed) {
        json_decref(result);
        return NULL;
    }
    return result ? result : json_null(); /* an empty stream is a null document */
}

json_t *yaml_parse(const char *text, size_t len, const char *name, struct yaml_err *err)
{
    return parse(text, len, name, err, false);
}

json_t *yaml_parse_all(const char *text, size_t len, const char *name, struct yaml_err *err)
{
    return parse(text, len, name, err, true);
}

json_t *yaml_load_file(const char *path, struct yaml_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct buf b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    bool bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        set_err(err, path, 0, 0, "cannot read: %s", strerror(saved));
        buf_free(&b);
        return NULL;
    }
    json_t *v = yaml_parse(b.data ? b.data : "", b.len, path, err);
    buf_free(&b);
    return v;
}

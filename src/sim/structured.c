/* The structured-output generator: schema in, one conforming JSON text out. It walks the
 * schema once, writing straight into the output buffer; choices (which optional
 * properties, how many items, which anyOf branch, which enum value) come from a
 * splitmix64 stream seeded by the caller, so output is a pure function of (schema,
 * seed). allOf and $ref-with-siblings are flattened into merged schemas kept alive in
 * g->keep until the call ends. Depth is bounded (recursive $refs), and so are output
 * size and every loop count, so a hostile schema costs at most SIM_STRUCT_MAX_BYTES of
 * output and a bounded walk. Strings are written ASCII so lengths in characters are
 * lengths in bytes (pattern literals are the exception and are copied as given). */
#include "sim/structured.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/json.h"
#include "tokenize/tokenize.h"

#define ERR_UNSUPPORTED                                                                            \
    "The provided JSON schema contains features not supported by the simulator: "
#define ERR_INVALID "Failed to transform json schema into a grammar: "

struct gen {
    const json_t *root;
    uint64_t rng;
    struct buf *out;
    char *err;
    size_t err_len;
    bool failed;
    int depth;
    json_t *keep;  /* objects made during the walk, freed at its end */
    json_t *cache; /* merged schemas by what they were made of: an array of 5,000 items
                    * under an allOf merges it once, not 5,000 times */
    char path[160];
    size_t plen;
};

static bool fail(struct gen *g, bool unsupported, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(struct gen *g, bool unsupported, const char *fmt, ...)
{
    if (g->failed)
        return false;
    g->failed = true;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(g->err, g->err_len, "%s%s (at #%.*s)", unsupported ? ERR_UNSUPPORTED : ERR_INVALID,
             what, (int)g->plen, g->path);
    return false;
}

static size_t path_push(struct gen *g, const char *seg)
{
    size_t old = g->plen;
    int n = snprintf(g->path + g->plen, sizeof g->path - g->plen, "/%s", seg);
    if (n > 0)
        g->plen += (size_t)n;
    if (g->plen >= sizeof g->path)
        g->plen = sizeof g->path - 1;
    return old;
}

static void path_pop(struct gen *g, size_t old)
{
    g->plen = old;
    g->path[old] = 0;
}

static uint64_t rnd(struct gen *g, uint64_t n)
{
    return n ? hash_rand_below(&g->rng, n) : 0;
}

static bool soft(const struct gen *g)
{
    return g->depth > SIM_STRUCT_SOFT_DEPTH;
}

static bool too_big(struct gen *g)
{
    if (g->out->len > SIM_STRUCT_MAX_BYTES)
        return !fail(g, false, "the generated instance exceeds %d bytes", SIM_STRUCT_MAX_BYTES);
    return g->failed;
}

static void gen_value(struct gen *g, const json_t *s);

/* --- keywords ------------------------------------------------------------------------ */

static const char *const unsupported_kw[] = {
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "contains",
    "dependencies",
    "dependentSchemas",
    "dependentRequired",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
};

/* Keys that say nothing about which instances are valid. */
static bool annotation(const char *k)
{
    static const char *const ann[] = {
        "title",           "description",   "default",    "examples",    "$comment",
        "$schema",         "$id",           "$defs",      "definitions", "$anchor",
        "readOnly",        "writeOnly",     "deprecated", "strict",      "contentMediaType",
        "contentEncoding", "discriminator", "nullable",
    };
    for (size_t i = 0; i < sizeof ann / sizeof *ann; i++)
        if (!strcmp(k, ann[i]))
            return true;
    return false;
}

static bool check_unsupported(struct gen *g, const json_t *s)
{
    for (size_t i = 0; i < sizeof unsupported_kw / sizeof *unsupported_kw; i++) {
        const json_t *v = json_object_get(s, unsupported_kw[i]);
        if (!v)
            continue;
        /* Vacuous uses are harmless: {} maps, true schemas, empty lists. */
        if (json_is_true(v) || (json_is_object(v) && json_object_size(v) == 0 &&
                                strcmp(unsupported_kw[i], "not") != 0))
            continue;
        if (json_is_array(v) && json_array_size(v) == 0)
            continue;
        return fail(g, true, "'%s'", unsupported_kw[i]);
    }
    return true;
}

/* Decodes one JSON-pointer segment [p, e) into buf (~1 -> /, ~0 -> ~). */
static void pointer_segment(const char *p, const char *e, char *buf, size_t cap)
{
    size_t n = 0;
    while (p < e && n + 1 < cap) {
        if (*p == '~' && p + 1 < e && (p[1] == '0' || p[1] == '1')) {
            buf[n++] = p[1] == '0' ? '~' : '/';
            p += 2;
        } else {
            buf[n++] = *p++;
        }
    }
    buf[n] = 0;
}

static const json_t *resolve_ref(struct gen *g, const json_t *ref)
{
    if (!json_is_string(ref)) {
        fail(g, false, "'$ref' must be a string");
        return NULL;
    }
    const char *r = json_string_value(ref);
    if (r[0] != '#') {
        fail(g, true, "$ref '%.80s' (only local references such as '#/$defs/NAME')", r);
        return NULL;
    }
    const json_t *cur = g->root;
    const char *p = r + 1;
    if (*p && *p != '/') {
        fail(g, true, "$ref '%.80s' (anchors are not supported)", r);
        return NULL;
    }
    while (*p == '/') {
        const char *e = strchr(p + 1, '/');
        if (!e)
            e = p + strlen(p);
        char seg[128];
        pointer_segment(p + 1, e, seg, sizeof seg);
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            cur = *seg && !*end ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
        if (!cur) {
            fail(g, false, "$ref '%.80s' does not resolve", r);
            return NULL;
        }
        p = e;
    }
    return cur;
}

/* --- allOf: merging schemas ---------------------------------------------------------- */

enum {
    T_NULL = 1,
    T_BOOL = 2,
    T_INT = 4,
    T_NUM = 8,
    T_STR = 16,
    T_ARR = 32,
    T_OBJ = 64,
    T_ALL = 127,
};
static const char *const type_names[] = {"null",   "boolean", "integer", "number",
                                         "string", "array",   "object"};

static int type_bit(struct gen *g, const json_t *v)
{
    if (!json_is_string(v)) {
        fail(g, false, "'type' must be a string or a list of strings");
        return 0;
    }
    for (int i = 0; i < 7; i++)
        if (!strcmp(json_string_value(v), type_names[i]))
            return 1 << i;
    fail(g, false, "unknown type '%.40s'", json_string_value(v));
    return 0;
}

/* The set of types a "type" value allows (T_ALL when absent); 0 on error. */
static int types_of(struct gen *g, const json_t *t)
{
    if (!t)
        return T_ALL;
    if (json_is_array(t)) {
        if (json_array_size(t) == 0)
            return fail(g, false, "'type' must not be an empty list"), 0;
        int m = 0;
        size_t i;
        const json_t *v;
        json_array_foreach(t, i, v)
        {
            int b = type_bit(g, v);
            if (!b)
                return 0;
            m |= b;
        }
        return m;
    }
    return type_bit(g, t);
}

static int type_set(struct gen *g, const json_t *s)
{
    return types_of(g, json_object_get(s, "type"));
}

static json_t *type_json(int m)
{
    json_t *a = json_array();
    for (int i = 0; i < 7; i++)
        if (m & (1 << i))
            json_array_append_new(a, json_string(type_names[i]));
    if (json_array_size(a) != 1)
        return a;
    json_t *one = json_incref(json_array_get(a, 0));
    json_decref(a);
    return one;
}

static bool is_min_kw(const char *k)
{
    return !strcmp(k, "minimum") || !strcmp(k, "minLength") || !strcmp(k, "minItems") ||
           !strcmp(k, "minProperties");
}

static bool is_max_kw(const char *k)
{
    return !strcmp(k, "maximum") || !strcmp(k, "maxLength") || !strcmp(k, "maxItems") ||
           !strcmp(k, "maxProperties");
}

/* Follows $ref chains (bounded) to a schema with no $ref of its own, or returns s when
 * the $ref has constraining siblings (the caller merges those). */
static const json_t *deref(struct gen *g, const json_t *s)
{
    for (int hops = 0; hops < 32 && json_is_object(s) && json_object_get(s, "$ref"); hops++) {
        const char *k;
        const json_t *v;
        bool siblings = false;
        json_object_foreach((json_t *)s, k, v)
        {
            if (strcmp(k, "$ref") != 0 && !annotation(k))
                siblings = true;
        }
        if (siblings)
            return s;
        s = resolve_ref(g, json_object_get(s, "$ref"));
        if (!s)
            return NULL;
    }
    if (json_is_object(s) && json_object_get(s, "$ref"))
        return fail(g, false, "$ref chain too long"), NULL;
    return s;
}

static void merge_into(struct gen *g, json_t *acc, const json_t *s, int level);

static void merge_key(struct gen *g, json_t *acc, const char *k, const json_t *v)
{
    json_t *cur = json_object_get(acc, k);
    if (!cur) {
        json_object_set(acc, k, (json_t *)v);
        return;
    }
    if (!strcmp(k, "properties") && json_is_object(cur) && json_is_object(v)) {
        json_t *props = json_copy(cur);
        const char *pk;
        json_t *pv;
        json_object_foreach((json_t *)v, pk, pv)
        {
            json_t *old = json_object_get(props, pk);
            if (!old) {
                json_object_set(props, pk, pv);
            } else {
                json_t *both = json_pack("{s:[OO]}", "allOf", old, pv);
                json_object_set_new(props, pk, both);
            }
        }
        json_object_set_new(acc, k, props);
    } else if (!strcmp(k, "required") && json_is_array(cur) && json_is_array(v)) {
        json_t *req = json_copy(cur);
        size_t i;
        json_t *r;
        json_array_foreach((json_t *)v, i, r)
        {
            bool have = false;
            size_t j;
            json_t *x;
            json_array_foreach(req, j, x) have = have || json_equal(x, r);
            if (!have)
                json_array_append(req, r);
        }
        json_object_set_new(acc, k, req);
    } else if (!strcmp(k, "type")) {
        int a = types_of(g, cur), b = types_of(g, v);
        int m = a & b;
        if ((a & T_NUM) && (b & T_INT))
            m |= T_INT;
        if ((b & T_NUM) && (a & T_INT))
            m |= T_INT;
        if (g->failed)
            return;
        if (!m) {
            fail(g, false, "allOf branches have no type in common");
            return;
        }
        json_object_set_new(acc, k, type_json(m));
    } else if (!strcmp(k, "enum") && json_is_array(cur) && json_is_array(v)) {
        json_t *both = json_array();
        size_t i, j;
        json_t *x, *y;
        json_array_foreach(cur, i, x)
        {
            bool in = false;
            json_array_foreach((json_t *)v, j, y) in = in || json_equal(x, y);
            if (in)
                json_array_append(both, x);
        }
        if (json_array_size(both) == 0)
            fail(g, false, "allOf branches have no enum value in common");
        json_object_set_new(acc, k, both);
    } else if ((is_min_kw(k) || (!strcmp(k, "exclusiveMinimum") && json_is_number(v))) &&
               json_is_number(cur) && json_is_number(v)) {
        if (json_number_value(v) > json_number_value(cur))
            json_object_set(acc, k, (json_t *)v);
    } else if ((is_max_kw(k) || (!strcmp(k, "exclusiveMaximum") && json_is_number(v))) &&
               json_is_number(cur) && json_is_number(v)) {
        if (json_number_value(v) < json_number_value(cur))
            json_object_set(acc, k, (json_t *)v);
    } else if (!strcmp(k, "additionalProperties")) {
        if (json_is_false(v))
            json_object_set(acc, k, (json_t *)v);
    } else if (!strcmp(k, "items") && json_is_object(cur) && json_is_object(v)) {
        json_object_set_new(acc, k, json_pack("{s:[OO]}", "allOf", cur, v));
    } else if (!strcmp(k, "anyOf") || !strcmp(k, "oneOf")) {
        /* One branch list is kept; a second one is nested as its own allOf member. */
        json_t *inner = json_object_get(acc, "__allOf_more");
        if (!inner) {
            inner = json_array();
            json_object_set_new(acc, "__allOf_more", inner);
        }
        json_array_append_new(inner, json_pack("{sO}", k, v));
    } else if (!strcmp(k, "const") && !json_equal(cur, v)) {
        fail(g, false, "allOf branches have different 'const' values");
    }
    /* Anything else: the first branch's value stands. */
}

static void merge_into(struct gen *g, json_t *acc, const json_t *s, int level)
{
    if (g->failed)
        return;
    if (level > 16) {
        fail(g, false, "allOf nesting too deep");
        return;
    }
    s = deref(g, s);
    if (!s || json_is_true(s))
        return;
    if (json_is_false(s)) {
        fail(g, false, "allOf contains the schema 'false'");
        return;
    }
    if (!json_is_object(s)) {
        fail(g, false, "a schema must be an object or a boolean");
        return;
    }
    if (!check_unsupported(g, s))
        return;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        if (annotation(k))
            continue;
        if (!strcmp(k, "allOf")) {
            if (!json_is_array(v)) {
                fail(g, false, "'allOf' must be a list");
                return;
            }
            size_t i;
            const json_t *b;
            json_array_foreach(v, i, b) merge_into(g, acc, b, level + 1);
        } else if (!strcmp(k, "$ref")) {
            const json_t *t = resolve_ref(g, v);
            if (t)
                merge_into(g, acc, t, level + 1);
        } else {
            merge_key(g, acc, k, v);
        }
        if (g->failed)
            return;
    }
}

/* The merge of a and b (b may be NULL), made once per walk. */
static const json_t *merged(struct gen *g, const json_t *a, const json_t *b)
{
    char key[64];
    snprintf(key, sizeof key, "%p|%p", (const void *)a, (const void *)b);
    json_t *acc = json_object_get(g->cache, key);
    if (acc)
        return acc;
    acc = json_object();
    json_object_set_new(g->cache, key, acc);
    /* Hold the parts so their addresses, the key, stay theirs for the whole walk. */
    json_array_append(g->keep, (json_t *)a);
    if (b)
        json_array_append(g->keep, (json_t *)b);
    merge_into(g, acc, a, 0);
    if (b)
        merge_into(g, acc, b, 0);
    return acc;
}

/* A schema with its allOf / $ref flattened. */
static const json_t *flatten(struct gen *g, const json_t *s)
{
    return merged(g, s, NULL);
}

/* --- scalars ------------------------------------------------------------------------- */

static const char *word(struct gen *g)
{
    const char *w = tok_vocab_word((size_t)rnd(g, tok_vocab_size()));
    return w[0] == ' ' ? w + 1 : w;
}

/* A few vocabulary words, space-separated. */
static void words_text(struct gen *g, struct buf *t, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (t->len)
            buf_append_char(t, ' ');
        buf_append_str(t, word(g));
    }
}

static bool get_count(struct gen *g, const json_t *s, const char *k, long long dflt, long long *out)
{
    const json_t *v = json_object_get(s, k);
    *out = dflt;
    if (!v)
        return true;
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        *out = (long long)json_real_value(v);
    else if (json_is_integer(v))
        *out = json_integer_value(v);
    else
        return fail(g, false, "'%s' must be a non-negative integer", k);
    if (*out < 0)
        return fail(g, false, "'%s' must be a non-negative integer", k);
    return true;
}

static bool get_number(struct gen *g, const json_t *s, const char *k, double *out, bool *has)
{
    const json_t *v = json_object_get(s, k);
    *has = false;
    if (!v)
        return true;
    if (!json_is_number(v))
        return fail(g, false, "'%s' must be a number", k);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return fail(g, false, "'%s' must be finite", k);
    *has = true;
    return true;
}

struct bounds {
    double lo, hi;
    bool has_lo, has_hi, lo_excl, hi_excl;
};

static bool read_bounds(struct gen *g, const json_t *s, struct bounds *b)
{
    memset(b, 0, sizeof *b);
    double v;
    bool has;
    if (!get_number(g, s, "minimum", &b->lo, &b->has_lo) ||
        !get_number(g, s, "maximum", &b->hi, &b->has_hi))
        return false;
    const json_t *emin = json_object_get(s, "exclusiveMinimum");
    const json_t *emax = json_object_get(s, "exclusiveMaximum");
    if (json_is_boolean(emin)) { /* draft 4 */
        b->lo_excl = b->has_lo && json_is_true(emin);
    } else if (emin) {
        if (!get_number(g, s, "exclusiveMinimum", &v, &has))
            return false;
        if (!b->has_lo || v >= b->lo) {
            b->lo = v;
            b->has_lo = true;
            b->lo_excl = true;
        }
    }
    if (json_is_boolean(emax)) {
        b->hi_excl = b->has_hi && json_is_true(emax);
    } else if (emax) {
        if (!get_number(g, s, "exclusiveMaximum", &v, &has))
            return false;
        if (!b->has_hi || v <= b->hi) {
            b->hi = v;
            b->has_hi = true;
            b->hi_excl = true;
        }
    }
    /* Bounds beyond +-1e15 (int64 limits, say) are pulled in where that only narrows
     * the range; a range wholly out there is refused. */
    if (b->has_lo && b->lo < -1e15) {
        b->lo = -1e15;
        b->lo_excl = false;
    }
    if (b->has_hi && b->hi > 1e15) {
        b->hi = 1e15;
        b->hi_excl = false;
    }
    if ((b->has_lo && b->lo > 1e15) || (b->has_hi && b->hi < -1e15))
        return fail(g, true, "numeric bounds beyond 1e15 in magnitude");
    /* Open ends: a window of 100 next to the closed end, or [0, 100]. */
    if (!b->has_lo && !b->has_hi) {
        b->lo = 0;
        b->hi = 100;
    } else if (!b->has_lo) {
        b->lo = b->hi - 100;
    } else if (!b->has_hi) {
        b->hi = b->lo + 100;
    }
    return true;
}

static void gen_integer(struct gen *g, const json_t *s)
{
    struct bounds b;
    if (!read_bounds(g, s, &b))
        return;
    long long lo = (long long)ceil(b.lo), hi = (long long)floor(b.hi);
    if (b.lo_excl && (double)lo <= b.lo)
        lo++;
    if (b.hi_excl && (double)hi >= b.hi)
        hi--;
    double m = 1;
    bool has_m;
    if (!get_number(g, s, "multipleOf", &m, &has_m))
        return;
    if (has_m && m <= 0) {
        fail(g, false, "'multipleOf' must be greater than 0");
        return;
    }
    long long step = 1;
    if (has_m) {
        if (m != floor(m)) {
            fail(g, true, "a fractional 'multipleOf' (%g) on an integer", m);
            return;
        }
        step = (long long)m;
    }
    /* Multiples of step in [lo, hi]: k in [ceil(lo/step), floor(hi/step)]. */
    long long klo = lo >= 0 ? (lo + step - 1) / step : -((-lo) / step);
    long long khi = hi >= 0 ? hi / step : -((-hi + step - 1) / step);
    if (klo > khi) {
        fail(g, false, "no integer satisfies the bounds%s", has_m ? " and 'multipleOf'" : "");
        return;
    }
    long long k = klo + (long long)rnd(g, (uint64_t)(khi - klo) + 1);
    if (soft(g))
        k = klo;
    buf_printf(g->out, "%lld", k * step);
}

static void gen_number(struct gen *g, const json_t *s)
{
    struct bounds b;
    if (!read_bounds(g, s, &b))
        return;
    double m;
    bool has_m;
    if (!get_number(g, s, "multipleOf", &m, &has_m))
        return;
    if (has_m && m <= 0) {
        fail(g, false, "'multipleOf' must be greater than 0");
        return;
    }
    if (b.lo > b.hi || (b.lo == b.hi && (b.lo_excl || b.hi_excl))) {
        fail(g, false, "no number satisfies the bounds");
        return;
    }
    double v;
    if (has_m) {
        double klo = ceil(b.lo / m), khi = floor(b.hi / m);
        if (b.lo_excl && klo * m <= b.lo)
            klo++;
        if (b.hi_excl && khi * m >= b.hi)
            khi--;
        if (klo > khi || khi - klo > 1e15) {
            fail(g, false, "no number satisfies the bounds and 'multipleOf'");
            return;
        }
        v = (klo + (double)rnd(g, (uint64_t)(khi - klo) + 1)) * m;
    } else {
        /* Two decimals, strictly inside when an end is exclusive. */
        double span = b.hi - b.lo;
        v = b.lo + span * (double)(1 + rnd(g, 98)) / 100.0;
        double r = round(v * 100) / 100;
        if (r > b.lo && r < b.hi)
            v = r;
        if (!b.lo_excl && !b.hi_excl && span == 0)
            v = b.lo;
    }
    char num[64];
    snprintf(num, sizeof num, "%.15g", v);
    if (strtod(num, NULL) != v) /* keep full precision when 15 digits lose it */
        snprintf(num, sizeof num, "%.17g", v);
    buf_append_str(g->out, num);
}

/* --- strings ------------------------------------------------------------------------- */

/* A tiny generator for the regular-expression subset: alternation, groups, classes,
 * escapes, quantifiers. It writes one string the pattern matches in full. */
struct rx {
    struct gen *g;
    const char *pat;
    struct buf *t;
    int depth;
    long steps; /* atoms generated: bounds patterns that repeat empty groups */
};

static bool rx_fail(struct rx *x, const char *why)
{
    return fail(x->g, true, "'pattern' /%.60s/: %s", x->pat, why);
}

static void put_cp(struct buf *t, uint32_t c)
{
    if (c < 0x80) {
        buf_append_char(t, (char)c);
    } else if (c < 0x800) {
        buf_append_char(t, (char)(0xc0 | (c >> 6)));
        buf_append_char(t, (char)(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
        buf_append_char(t, (char)(0xe0 | (c >> 12)));
        buf_append_char(t, (char)(0x80 | ((c >> 6) & 0x3f)));
        buf_append_char(t, (char)(0x80 | (c & 0x3f)));
    } else {
        buf_append_char(t, (char)(0xf0 | (c >> 18)));
        buf_append_char(t, (char)(0x80 | ((c >> 12) & 0x3f)));
        buf_append_char(t, (char)(0x80 | ((c >> 6) & 0x3f)));
        buf_append_char(t, (char)(0x80 | (c & 0x3f)));
    }
}

/* Decodes one UTF-8 code point at *p (bounded by e); invalid bytes read as themselves. */
static uint32_t get_cp(const char **p, const char *e)
{
    const unsigned char *s = (const unsigned char *)*p;
    uint32_t c = s[0];
    int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (n && (const char *)s + n < e) {
        c &= 0x3f >> n;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80) {
                *p += 1;
                return s[0];
            }
            c = (c << 6) | (s[i] & 0x3f);
        }
        *p += n + 1;
        return c;
    }
    *p += 1;
    return c;
}

struct cls {
    uint32_t lo[48], hi[48];
    int n;
    bool neg;
};

static bool cls_add(struct rx *x, struct cls *c, uint32_t lo, uint32_t hi)
{
    if (c->n == 48)
        return rx_fail(x, "character class too large");
    if (lo > hi)
        return rx_fail(x, "range out of order in a character class");
    c->lo[c->n] = lo;
    c->hi[c->n] = hi;
    c->n++;
    return true;
}

/* Adds a class escape (\d \w \s) to c; false if ch is not one. */
static bool cls_escape(struct rx *x, struct cls *c, char ch, bool *was)
{
    *was = true;
    switch (ch) {
    case 'd':
        return cls_add(x, c, '0', '9');
    case 'w':
        return cls_add(x, c, 'a', 'z') && cls_add(x, c, 'A', 'Z') && cls_add(x, c, '0', '9') &&
               cls_add(x, c, '_', '_');
    case 's':
        return cls_add(x, c, ' ', ' ');
    case 'D':
    case 'W':
    case 'S':
    case 'b':
    case 'B':
    case 'p':
    case 'P':
        return rx_fail(x, "negated or Unicode class escapes are not supported");
    default:
        *was = false;
        return true;
    }
}

/* The code point an escape stands for (\n, \t, \xHH, \uHHHH, \. ...). */
static bool esc_char(struct rx *x, const char **p, const char *e, uint32_t *out)
{
    char ch = **p;
    (*p)++;
    switch (ch) {
    case 'n':
        *out = '\n';
        return true;
    case 't':
        *out = '\t';
        return true;
    case 'r':
        *out = '\r';
        return true;
    case 'f':
        *out = '\f';
        return true;
    case 'v':
        *out = '\v';
        return true;
    case '0':
        *out = 0;
        return rx_fail(x, "NUL characters are not supported");
    case 'x':
    case 'u': {
        int n = ch == 'x' ? 2 : 4;
        if (e - *p < n)
            return rx_fail(x, "truncated escape");
        char hex[5] = {0};
        memcpy(hex, *p, (size_t)n);
        char *end;
        *out = (uint32_t)strtoul(hex, &end, 16);
        if (*end || *out == 0 || (*out >= 0xd800 && *out < 0xe000))
            return rx_fail(x, "bad hex escape");
        *p += n;
        return true;
    }
    default:
        if ((ch >= '1' && ch <= '9') || ch == 'k')
            return rx_fail(x, "backreferences are not supported");
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
            return rx_fail(x, "unknown escape");
        *out = (uint32_t)(unsigned char)ch;
        return true;
    }
}

/* Parses a class starting after '['; *p ends after ']'. */
static bool parse_class(struct rx *x, const char **p, const char *e, struct cls *c)
{
    memset(c, 0, sizeof *c);
    if (*p < e && **p == '^') {
        c->neg = true;
        (*p)++;
    }
    bool first = true;
    while (*p < e && (**p != ']' || first)) {
        first = false;
        uint32_t lo;
        if (**p == '\\') {
            (*p)++;
            if (*p >= e)
                return rx_fail(x, "trailing backslash");
            bool was;
            if (!cls_escape(x, c, **p, &was))
                return false;
            if (was) {
                (*p)++;
                continue;
            }
            if (!esc_char(x, p, e, &lo))
                return false;
        } else {
            lo = get_cp(p, e);
        }
        uint32_t hi = lo;
        if (*p + 1 < e && **p == '-' && (*p)[1] != ']') {
            (*p)++;
            if (**p == '\\') {
                (*p)++;
                if (*p >= e || !esc_char(x, p, e, &hi))
                    return x->g->failed ? false : rx_fail(x, "bad range");
            } else {
                hi = get_cp(p, e);
            }
        }
        if (!cls_add(x, c, lo, hi))
            return false;
    }
    if (*p >= e)
        return rx_fail(x, "unterminated character class");
    (*p)++;
    if (c->n == 0 && !c->neg)
        return rx_fail(x, "empty character class");
    return true;
}

static bool cls_has(const struct cls *c, uint32_t cp)
{
    for (int i = 0; i < c->n; i++)
        if (cp >= c->lo[i] && cp <= c->hi[i])
            return true;
    return false;
}

static bool cls_emit(struct rx *x, const struct cls *c)
{
    if (!c->neg) {
        int i = (int)rnd(x->g, (uint64_t)c->n);
        uint32_t span = c->hi[i] - c->lo[i];
        uint32_t cp = c->lo[i] + (uint32_t)rnd(x->g, (uint64_t)span + 1);
        /* Only scalar values make valid UTF-8: no surrogates, nothing past U+10FFFF. */
        if ((cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff)
            cp = c->lo[i];
        if ((cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff || cp == 0)
            return rx_fail(x, "a class of code points that are not characters");
        put_cp(x->t, cp);
        return true;
    }
    /* Printable ASCII not in the set, starting somewhere random. */
    uint32_t start = (uint32_t)rnd(x->g, 94);
    for (uint32_t k = 0; k < 94; k++) {
        uint32_t cp = 0x21 + (start + k) % 94;
        if (!cls_has(c, cp)) {
            put_cp(x->t, cp);
            return true;
        }
    }
    return rx_fail(x, "negated class excludes every printable character");
}

static bool rx_alt(struct rx *x, const char *p, const char *e);

/* End of the atom starting at p (p < e). */
static bool atom_end(struct rx *x, const char *p, const char *e, const char **out)
{
    if (*p == '(') {
        int depth = 0;
        bool in_cls = false;
        for (const char *q = p; q < e; q++) {
            if (*q == '\\') {
                q++;
                continue;
            }
            if (in_cls) {
                in_cls = *q != ']';
                continue;
            }
            if (*q == '[')
                in_cls = true;
            else if (*q == '(')
                depth++;
            else if (*q == ')' && --depth == 0) {
                *out = q + 1;
                return true;
            }
        }
        return rx_fail(x, "unbalanced parenthesis");
    }
    if (*p == '[') {
        const char *q = p + 1;
        if (q < e && *q == '^')
            q++;
        if (q < e && *q == ']')
            q++;
        for (; q < e; q++) {
            if (*q == '\\')
                q++;
            else if (*q == ']') {
                *out = q + 1;
                return true;
            }
        }
        return rx_fail(x, "unterminated character class");
    }
    if (*p == '\\') {
        if (p + 1 >= e)
            return rx_fail(x, "trailing backslash");
        if (p[1] == 'x' || p[1] == 'u') {
            *out = p + 2 + (p[1] == 'x' ? 2 : 4);
            if (*out > e)
                return rx_fail(x, "truncated escape");
            return true;
        }
        *out = p + 2;
        return true;
    }
    if (*p == ')')
        return rx_fail(x, "unbalanced parenthesis");
    if (*p == '*' || *p == '+' || *p == '?' || *p == '{')
        return rx_fail(x, "quantifier without an atom");
    const char *q = p;
    get_cp(&q, e);
    *out = q;
    return true;
}

static bool rx_atom(struct rx *x, const char *p, const char *e)
{
    if (x->t->len > SIM_STRUCT_MAX_BYTES)
        return rx_fail(x, "the generated string is too long");
    if (++x->steps > 1000000)
        return rx_fail(x, "too complex");
    switch (*p) {
    case '^':
    case '$':
        return true; /* anchors: the whole string matches anyway */
    case '.':
        put_cp(x->t, 'a' + (uint32_t)rnd(x->g, 26));
        return true;
    case '(':
        p++;
        e--; /* the closing parenthesis */
        if (*p == '?') {
            if (p + 1 < e && p[1] == ':')
                p += 2;
            else
                return rx_fail(x, "lookaround and named groups are not supported");
        }
        if (++x->depth > 32)
            return rx_fail(x, "groups nested too deep");
        if (!rx_alt(x, p, e))
            return false;
        x->depth--;
        return true;
    case '[': {
        struct cls c;
        const char *q = p + 1;
        return parse_class(x, &q, e, &c) && cls_emit(x, &c);
    }
    case '\\': {
        struct cls c = {0};
        bool was;
        if (!cls_escape(x, &c, p[1], &was))
            return false;
        if (was)
            return cls_emit(x, &c);
        const char *q = p + 1;
        uint32_t cp;
        if (!esc_char(x, &q, e, &cp))
            return false;
        put_cp(x->t, cp);
        return true;
    }
    default:
        buf_append(x->t, p, (size_t)(e - p));
        return true;
    }
}

/* Reads a quantifier at *p: {min, max} repetitions (max may be -1 for unbounded). */
static bool quantifier(struct rx *x, const char **p, const char *e, long *mn, long *mx)
{
    *mn = *mx = 1;
    if (*p >= e)
        return true;
    switch (**p) {
    case '?':
        *mn = 0;
        *mx = 1;
        break;
    case '*':
        *mn = 0;
        *mx = -1;
        break;
    case '+':
        *mn = 1;
        *mx = -1;
        break;
    case '{': {
        char *end;
        long a = strtol(*p + 1, &end, 10);
        if (end == *p + 1 || end >= e)
            return rx_fail(x, "bad {n,m} quantifier");
        long b = a;
        if (*end == ',') {
            const char *q = end + 1;
            b = *q == '}' ? -1 : strtol(q, &end, 10);
            if (b != -1 && end == q)
                return rx_fail(x, "bad {n,m} quantifier");
            if (b == -1)
                end = (char *)q;
        }
        if (end >= e || *end != '}' || a < 0 || (b != -1 && b < a))
            return rx_fail(x, "bad {n,m} quantifier");
        if (a > 10000)
            return rx_fail(x, "repetition count too large");
        *mn = a;
        *mx = b;
        *p = end;
        break;
    }
    default:
        return true;
    }
    (*p)++;
    if (*p < e && **p == '?') /* lazy: same language */
        (*p)++;
    if (*p < e && (**p == '*' || **p == '+' || **p == '?' || **p == '{'))
        return rx_fail(x, "nested quantifier");
    return true;
}

static bool rx_seq(struct rx *x, const char *p, const char *e)
{
    while (p < e) {
        const char *ae = e; /* set by atom_end; initialized for gcc's flow analysis */
        if (!atom_end(x, p, e, &ae))
            return false;
        const char *q = ae;
        long mn, mx;
        if (!quantifier(x, &q, e, &mn, &mx))
            return false;
        long hi = mx < 0 ? mn + 3 : mx;
        if (hi > mn + 3 && mx < 0)
            hi = mn + 3;
        long n = soft(x->g) ? mn : mn + (long)rnd(x->g, (uint64_t)(hi - mn) + 1);
        if ((*p == '^' || *p == '$') && n > 1)
            n = 1;
        for (long i = 0; i < n; i++)
            if (!rx_atom(x, p, ae))
                return false;
        p = q;
    }
    return true;
}

static bool rx_alt(struct rx *x, const char *p, const char *e)
{
    /* Top-level '|' positions split the alternatives. */
    const char *starts[64], *ends[64];
    int n = 0, depth = 0;
    bool in_cls = false;
    starts[0] = p;
    for (const char *q = p; q < e; q++) {
        if (*q == '\\') {
            q++;
            continue;
        }
        if (in_cls) {
            in_cls = *q != ']';
            continue;
        }
        if (*q == '[')
            in_cls = true;
        else if (*q == '(')
            depth++;
        else if (*q == ')')
            depth--;
        else if (*q == '|' && depth == 0) {
            if (n == 63)
                return rx_fail(x, "too many alternatives");
            ends[n++] = q;
            starts[n] = q + 1;
        }
    }
    ends[n++] = e;
    int pick = (int)rnd(x->g, (uint64_t)n);
    return rx_seq(x, starts[pick], ends[pick]);
}

static void gen_pattern(struct gen *g, const char *pat, size_t len)
{
    struct buf t = BUF_INIT;
    struct rx x = {.g = g, .pat = pat, .t = &t};
    if (rx_alt(&x, pat, pat + len))
        json_quote(g->out, t.data ? t.data : "", t.len);
    buf_free(&t);
}

static void gen_format(struct gen *g, const char *f, struct buf *t)
{
    uint64_t a = rnd(g, 1u << 30);
    if (!strcmp(f, "date")) {
        buf_printf(t, "%04d-%02d-%02d", 1990 + (int)(a % 40), 1 + (int)(a / 40 % 12),
                   1 + (int)(a / 480 % 28));
    } else if (!strcmp(f, "date-time")) {
        buf_printf(t, "%04d-%02d-%02dT%02d:%02d:%02dZ", 1990 + (int)(a % 40),
                   1 + (int)(a / 40 % 12), 1 + (int)(a / 480 % 28), (int)(a / 13440 % 24),
                   (int)(a / 322560 % 60), (int)(a % 60));
    } else if (!strcmp(f, "time")) {
        buf_printf(t, "%02d:%02d:%02dZ", (int)(a % 24), (int)(a / 24 % 60), (int)(a / 1440 % 60));
    } else if (!strcmp(f, "email")) {
        buf_printf(t, "%s.%u@example.com", word(g), (unsigned)(a % 1000));
    } else if (!strcmp(f, "uuid")) {
        uint64_t h = hash_rand_next(&g->rng), l = hash_rand_next(&g->rng);
        buf_printf(t, "%08x-%04x-4%03x-%x%03x-%012llx", (unsigned)(h >> 32),
                   (unsigned)(h >> 16 & 0xffff), (unsigned)(h & 0xfff), 8 + (unsigned)(l >> 62),
                   (unsigned)(l >> 48 & 0xfff), (unsigned long long)(l & 0xffffffffffffull));
    } else if (!strcmp(f, "uri") || !strcmp(f, "url") || !strcmp(f, "uri-reference")) {
        buf_printf(t, "https://example.com/%s", word(g));
    } else if (!strcmp(f, "ipv4")) {
        buf_printf(t, "10.%u.%u.%u", (unsigned)(a & 255), (unsigned)(a >> 8 & 255),
                   1 + (unsigned)(a >> 16 & 253));
    } else if (!strcmp(f, "hostname")) {
        buf_printf(t, "%s.example.com", word(g));
    }
}

static void gen_string(struct gen *g, const json_t *s)
{
    long long mn, mx;
    if (!get_count(g, s, "minLength", 0, &mn) || !get_count(g, s, "maxLength", -1, &mx))
        return;
    if (mx >= 0 && mx < mn) {
        fail(g, false, "'maxLength' is less than 'minLength'");
        return;
    }
    if (mn > SIM_STRUCT_MAX_BYTES) {
        fail(g, false, "'minLength' %lld exceeds the output limit", mn);
        return;
    }
    const json_t *pat = json_object_get(s, "pattern");
    if (pat) {
        if (!json_is_string(pat)) {
            fail(g, false, "'pattern' must be a string");
            return;
        }
        gen_pattern(g, json_string_value(pat), json_string_length(pat));
        return;
    }
    struct buf t = BUF_INIT;
    const json_t *fmt = json_object_get(s, "format");
    if (json_is_string(fmt))
        gen_format(g, json_string_value(fmt), &t);
    if (t.len == 0 || (long long)t.len < mn || (mx >= 0 && (long long)t.len > mx)) {
        /* No format, an unknown one, or one whose text cannot fit the lengths: a few
         * words, more while short of minLength, cut at maxLength. */
        buf_reset(&t);
        words_text(g, &t, soft(g) ? 1 : 1 + rnd(g, 4));
        while ((long long)t.len < mn)
            words_text(g, &t, 1);
        if (mx >= 0 && (long long)t.len > mx)
            t.len = (size_t)mx;
        while (t.len > 0 && (long long)t.len > mn && t.data[t.len - 1] == ' ')
            t.len--;
        if (t.len && t.data[t.len - 1] == ' ')
            t.data[t.len - 1] = 'x';
    }
    json_quote(g->out, t.data ? t.data : "", t.len);
    buf_free(&t);
}

/* --- containers ---------------------------------------------------------------------- */

static void emit_key(struct gen *g, const char *k, bool *first)
{
    if (!*first)
        buf_append_char(g->out, ',');
    *first = false;
    json_quote(g->out, k, strlen(k));
    buf_append_char(g->out, ':');
}

static void gen_child(struct gen *g, const char *seg, const json_t *sub)
{
    size_t old = path_push(g, seg);
    gen_value(g, sub);
    path_pop(g, old);
}

static bool in_required(const json_t *req, const char *k)
{
    size_t i;
    const json_t *v;
    json_array_foreach(req, i,
                       v) if (json_is_string(v) && !strcmp(json_string_value(v), k)) return true;
    return false;
}

static void gen_object(struct gen *g, const json_t *s)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) {
        fail(g, false, "'properties' must be an object");
        return;
    }
    if (req && !json_is_array(req)) {
        fail(g, false, "'required' must be a list of strings");
        return;
    }
    if (addl && !json_is_boolean(addl) && !json_is_object(addl)) {
        fail(g, false, "'additionalProperties' must be a schema");
        return;
    }
    long long mnp, mxp;
    if (!get_count(g, s, "minProperties", 0, &mnp) || !get_count(g, s, "maxProperties", -1, &mxp))
        return;
    size_t n_req = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(req, i, v)
    {
        if (!json_is_string(v)) {
            fail(g, false, "'required' must be a list of strings");
            return;
        }
        size_t j;
        const json_t *w;
        bool dup = false;
        json_array_foreach(req, j, w) if (j < i && json_equal(v, w)) dup = true;
        n_req += !dup;
    }
    if (mxp >= 0 && (long long)n_req > mxp) {
        fail(g, false, "more required properties than 'maxProperties'");
        return;
    }
    bool addl_ok = !json_is_false(addl);
    const json_t *addl_schema = json_is_object(addl) ? addl : json_true();

    json_t *emitted = json_object(); /* names written, as a set */
    json_array_append_new(g->keep, emitted);
    bool first = true;
    size_t n_opt = 0;
    buf_append_char(g->out, '{');
    const char *k;
    const json_t *sub;
    json_object_foreach((json_t *)props, k, sub)
    {
        bool required = in_required(req, k);
        bool room = mxp < 0 || (long long)(n_opt + n_req) < mxp;
        if (!required && (soft(g) || !room || rnd(g, 3) == 0))
            continue;
        n_opt += !required;
        emit_key(g, k, &first);
        json_object_set_new(emitted, k, json_true());
        gen_child(g, k, sub);
        if (g->failed || too_big(g))
            return;
    }
    json_array_foreach(req, i, v)
    {
        k = json_string_value(v);
        if (json_object_get(emitted, k))
            continue;
        if (!addl_ok) {
            fail(g, false,
                 "required property '%.40s' is not in 'properties' and "
                 "additionalProperties is false",
                 k);
            return;
        }
        emit_key(g, k, &first);
        json_object_set_new(emitted, k, json_true());
        gen_child(g, k, addl_schema);
        if (g->failed || too_big(g))
            return;
    }
    /* minProperties: more of the optional properties first, then extra names. */
    json_object_foreach((json_t *)props, k, sub)
    {
        if ((long long)json_object_size(emitted) >= mnp)
            break;
        if (json_object_get(emitted, k))
            continue;
        emit_key(g, k, &first);
        json_object_set_new(emitted, k, json_true());
        gen_child(g, k, sub);
        if (g->failed || too_big(g))
            return;
    }
    long long want = mnp;
    if (json_is_object(addl) && json_object_size(props ? props : emitted) == 0 && !soft(g) &&
        json_object_size(emitted) == 0)
        want = 1 + (long long)rnd(g, 2); /* a map: give it an entry or two */
    if (mxp >= 0 && want > mxp)
        want = mxp;
    for (int extra = 1; (long long)json_object_size(emitted) < want; extra++) {
        if (!addl_ok) {
            fail(g, false, "'minProperties' cannot be met with additionalProperties false");
            return;
        }
        char name[32];
        snprintf(name, sizeof name, "key_%d", extra);
        if (json_object_get(emitted, name) || json_object_get(props, name))
            continue;
        emit_key(g, name, &first);
        json_object_set_new(emitted, name, json_true());
        gen_child(g, name, addl_schema);
        if (g->failed || too_big(g))
            return;
    }
    buf_append_char(g->out, '}');
}

static void gen_array(struct gen *g, const json_t *s)
{
    const json_t *prefix = json_object_get(s, "prefixItems");
    const json_t *items = json_object_get(s, "items");
    const json_t *rest = items;
    if (prefix && !json_is_array(prefix)) {
        fail(g, false, "'prefixItems' must be a list");
        return;
    }
    if (!prefix && json_is_array(items)) { /* draft 4-7 tuple form */
        prefix = items;
        rest = json_object_get(s, "additionalItems");
    }
    if (rest && !json_is_boolean(rest) && !json_is_object(rest)) {
        fail(g, false, "'items' must be a schema");
        return;
    }
    long long mn, mx;
    if (!get_count(g, s, "minItems", 0, &mn) || !get_count(g, s, "maxItems", -1, &mx))
        return;
    if (mx >= 0 && mx < mn) {
        fail(g, false, "'maxItems' is less than 'minItems'");
        return;
    }
    if (mn > 10000) {
        fail(g, false, "'minItems' %lld is too large", mn);
        return;
    }
    long long np = (long long)json_array_size(prefix);
    long long hi = (mn > np ? mn : np) + 3;
    if (mx >= 0 && hi > mx)
        hi = mx;
    long long n = soft(g) ? mn : mn + (long long)rnd(g, (uint64_t)(hi - mn) + 1);
    if (!soft(g) && n < np && (mx < 0 || np <= mx))
        n = np; /* a tuple reads best whole */
    if (json_is_false(rest) && n > np) {
        n = np;
        if (n < mn) {
            fail(g, false, "'minItems' cannot be met: no items allowed past the tuple");
            return;
        }
    }
    bool unique = json_is_true(json_object_get(s, "uniqueItems"));
    size_t *offs = unique ? calloc((size_t)n + 1, 2 * sizeof(size_t)) : NULL;
    buf_append_char(g->out, '[');
    long long written = 0;
    for (long long i = 0; i < n; i++) {
        const json_t *sub = i < np ? json_array_get(prefix, (size_t)i) : rest ? rest : json_true();
        char seg[24];
        snprintf(seg, sizeof seg, "%lld", i);
        size_t mark = g->out->len;
        bool placed = false;
        for (int attempt = 0; attempt < (unique ? 16 : 1) && !placed; attempt++) {
            g->out->len = mark;
            if (written)
                buf_append_char(g->out, ',');
            size_t start = g->out->len;
            gen_child(g, seg, sub);
            if (g->failed || too_big(g)) {
                free(offs);
                return;
            }
            placed = true;
            for (long long j = 0; unique && j < written; j++) {
                size_t o = offs[2 * j], l = offs[2 * j + 1];
                if (l == g->out->len - start && !memcmp(g->out->data + o, g->out->data + start, l))
                    placed = false;
            }
            if (placed && unique) {
                offs[2 * written] = start;
                offs[2 * written + 1] = g->out->len - start;
            }
        }
        if (!placed) {
            g->out->len = mark;
            if (written < mn) {
                free(offs);
                fail(g, false, "cannot generate %lld unique items", mn);
                return;
            }
            break;
        }
        written++;
    }
    free(offs);
    buf_append_char(g->out, ']');
}

/* Any JSON value; scalars only when deep. */
static void gen_any(struct gen *g)
{
    switch (rnd(g, soft(g) ? 4 : 5)) {
    case 0: {
        struct buf t = BUF_INIT;
        words_text(g, &t, 1 + rnd(g, 3));
        json_quote(g->out, t.data, t.len);
        buf_free(&t);
        break;
    }
    case 1:
        buf_printf(g->out, "%u", (unsigned)rnd(g, 1000));
        break;
    case 2:
        buf_append_str(g->out, rnd(g, 2) ? "true" : "false");
        break;
    case 3:
        buf_append_str(g->out, "null");
        break;
    default:
        buf_append_char(g->out, '[');
        for (uint64_t i = 0, n = 1 + rnd(g, 3); i < n; i++) {
            if (i)
                buf_append_char(g->out, ',');
            buf_printf(g->out, "%u", (unsigned)rnd(g, 100));
        }
        buf_append_char(g->out, ']');
    }
}

/* Types implied by keywords when "type" is absent. */
static int implied_types(const json_t *s)
{
    static const struct {
        const char *kw;
        int t;
    } kws[] = {
        {"properties", T_OBJ},    {"required", T_OBJ},         {"additionalProperties", T_OBJ},
        {"minProperties", T_OBJ}, {"maxProperties", T_OBJ},    {"items", T_ARR},
        {"prefixItems", T_ARR},   {"minItems", T_ARR},         {"maxItems", T_ARR},
        {"uniqueItems", T_ARR},   {"minLength", T_STR},        {"maxLength", T_STR},
        {"pattern", T_STR},       {"format", T_STR},           {"minimum", T_NUM},
        {"maximum", T_NUM},       {"exclusiveMinimum", T_NUM}, {"exclusiveMaximum", T_NUM},
        {"multipleOf", T_NUM},
    };
    int m = 0;
    for (size_t i = 0; i < sizeof kws / sizeof *kws; i++)
        if (json_object_get(s, kws[i].kw))
            m |= kws[i].t;
    return m;
}

static void gen_typed(struct gen *g, const json_t *s)
{
    int m = type_set(g, s);
    if (!m)
        return;
    if (!json_object_get(s, "type")) {
        int imp = implied_types(s);
        if (!imp) {
            gen_any(g);
            return;
        }
        m = imp;
    }
    if (soft(g) && (m & (T_NULL | T_BOOL | T_INT | T_NUM | T_STR)))
        m &= T_NULL | T_BOOL | T_INT | T_NUM | T_STR; /* deep: stop nesting */
    int choices[7], n = 0;
    for (int i = 0; i < 7; i++)
        if (m & (1 << i))
            choices[n++] = 1 << i;
    int t = choices[rnd(g, (uint64_t)n)];
    switch (t) {
    case T_NULL:
        buf_append_str(g->out, "null");
        break;
    case T_BOOL:
        buf_append_str(g->out, rnd(g, 2) ? "true" : "false");
        break;
    case T_INT:
        gen_integer(g, s);
        break;
    case T_NUM:
        gen_number(g, s);
        break;
    case T_STR:
        gen_string(g, s);
        break;
    case T_ARR:
        gen_array(g, s);
        break;
    default:
        gen_object(g, s);
    }
}

/* s without key k, made once per walk. */
static const json_t *without(struct gen *g, const json_t *s, const char *k)
{
    char ck[80];
    snprintf(ck, sizeof ck, "-%p|%.40s", (const void *)s, k);
    json_t *c = json_object_get(g->cache, ck);
    if (c)
        return c;
    c = json_copy((json_t *)s);
    json_object_del(c, k);
    json_object_set_new(g->cache, ck, c);
    json_array_append(g->keep, (json_t *)s);
    return c;
}

static bool has_constraints(const json_t *s)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) if (!annotation(k)) return true;
    return false;
}

static void gen_value(struct gen *g, const json_t *s)
{
    if (g->failed)
        return;
    if (++g->depth > SIM_STRUCT_MAX_DEPTH) {
        fail(g, false,
             "the schema nests deeper than %d levels (a recursive $ref with no "
             "finite instance?)",
             SIM_STRUCT_MAX_DEPTH);
        g->depth--;
        return;
    }
    if (too_big(g)) {
        g->depth--;
        return;
    }
    if (json_is_true(s)) {
        gen_any(g);
    } else if (json_is_false(s)) {
        fail(g, false, "the schema 'false' accepts no value");
    } else if (!json_is_object(s)) {
        fail(g, false, "a schema must be an object or a boolean");
    } else if (!check_unsupported(g, s)) {
        /* failed */
    } else if (json_object_get(s, "allOf") || json_object_get(s, "$ref")) {
        const json_t *d = json_object_get(s, "allOf") ? s : deref(g, s);
        if (d && d != s)
            gen_value(g, d);
        else if (d)
            gen_value(g, flatten(g, s));
    } else if (json_object_get(s, "__allOf_more")) {
        /* A merged schema with several branch lists: pick from each in turn. */
        const json_t *more = json_object_get(s, "__allOf_more");
        json_t *acc = json_object();
        json_array_append_new(g->keep, acc);
        merge_into(g, acc, without(g, s, "__allOf_more"), 0);
        size_t i;
        const json_t *b;
        json_array_foreach(more, i, b)
        {
            const char *key = json_object_get(b, "anyOf") ? "anyOf" : "oneOf";
            const json_t *list = json_object_get(b, key);
            if (!json_is_array(list) || json_array_size(list) == 0) {
                fail(g, false, "'%s' must be a non-empty list", key);
                break;
            }
            merge_into(g, acc, json_array_get(list, rnd(g, json_array_size(list))), 0);
        }
        gen_value(g, acc);
    } else if (json_object_get(s, "anyOf") || json_object_get(s, "oneOf")) {
        const char *key = json_object_get(s, "anyOf") ? "anyOf" : "oneOf";
        const json_t *list = json_object_get(s, key);
        if (!json_is_array(list) || json_array_size(list) == 0) {
            fail(g, false, "'%s' must be a non-empty list", key);
        } else {
            size_t n = json_array_size(list), pick = rnd(g, n);
            if (soft(g)) /* deep: the first branch that does not nest, if any */
                for (size_t i = 0; i < n; i++) {
                    const json_t *b = json_array_get(list, i);
                    int t = json_is_object(b) ? type_set(g, b) : 0;
                    if (t && !(t & (T_ARR | T_OBJ)) && json_object_get(b, "type")) {
                        pick = i;
                        break;
                    }
                }
            const json_t *branch = json_array_get(list, pick);
            const json_t *rest = without(g, s, key);
            char seg[40];
            snprintf(seg, sizeof seg, "%s/%zu", key, pick);
            size_t old = path_push(g, seg);
            if (has_constraints(rest)) {
                const json_t *acc = merged(g, rest, branch);
                g->depth--; /* the merge is this level, not a new one */
                gen_value(g, acc);
                g->depth++;
            } else {
                gen_value(g, branch);
            }
            path_pop(g, old);
        }
    } else if (json_object_get(s, "const")) {
        json_dump_to(g->out, json_object_get(s, "const"));
    } else if (json_object_get(s, "enum")) {
        const json_t *e = json_object_get(s, "enum");
        if (!json_is_array(e) || json_array_size(e) == 0)
            fail(g, false, "'enum' must be a non-empty list");
        else
            json_dump_to(g->out, json_array_get(e, rnd(g, json_array_size(e))));
    } else {
        gen_typed(g, s);
    }
    g->depth--;
}

/* json_object mode: a few fields with words for names and assorted values. */
static void gen_generic(struct gen *g)
{
    json_t *names = json_object();
    json_array_append_new(g->keep, names);
    bool first = true;
    buf_append_char(g->out, '{');
    for (uint64_t i = 0, n = 1 + rnd(g, 4); i < n; i++) {
        const char *k = word(g);
        if (json_object_get(names, k))
            continue;
        json_object_set_new(names, k, json_true());
        emit_key(g, k, &first);
        gen_any(g);
    }
    buf_append_char(g->out, '}');
}

bool sim_structured_generate(const json_t *schema, uint64_t seed, struct buf *out, char *err,
                             size_t err_len)
{
    char dummy[8];
    struct gen g = {
        .root = schema,
        .rng = seed ^ 0x6a736f6eull,
        .out = out,
        .err = err && err_len ? err : dummy,
        .err_len = err && err_len ? err_len : sizeof dummy,
        .keep = json_array(),
        .cache = json_object(),
    };
    g.err[0] = 0;
    size_t mark = out->len;
    if (!schema)
        gen_generic(&g);
    else
        gen_value(&g, schema);
    json_decref(g.keep);
    json_decref(g.cache);
    if (g.failed)
        out->len = mark;
    return !g.failed;
}

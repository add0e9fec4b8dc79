/* Prometheus text format (0.0.4) parser for the router's metrics scraper.
 *
 * The input is a scraped body: not NUL-terminated, possibly truncated, possibly hostile.
 * Every read is bounded by the end of the current line, and every loop advances by at
 * least one byte, so garbage costs time linear in its length and nothing else.
 *
 * No allocation: a sample and the unescaped copies of its label values live in one
 * struct on the stack for the duration of the callback. Label values without escapes
 * point straight into the input (the common case); only values with escapes are copied
 * into the scratch area, whose size bounds them ("label value too long"). */
#include "base/prom.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for the unescaped label values of one sample; far above what vLLM exports. */
#define PROM_SCRATCH 4096
/* Longest value or timestamp token; a double needs well under 40 characters. */
#define PROM_MAX_NUMBER 64

struct prom_state {
    struct prom_sample s;
    char scratch[PROM_SCRATCH];
    size_t scratch_used;
};

struct cursor {
    const char *p;
    const char *end; /* end of the line, '\r' excluded */
};

static bool is_name_start(char ch, bool allow_colon)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
           (allow_colon && ch == ':');
}

static bool is_name_char(char ch, bool allow_colon)
{
    return is_name_start(ch, allow_colon) || (ch >= '0' && ch <= '9');
}

static void skip_blanks(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Metric names may contain ':' (recording rules, vLLM's "vllm:" prefix); label names
 * may not. Returns the length read, 0 if there is no valid name here. */
static size_t read_name(struct cursor *c, bool allow_colon)
{
    const char *start = c->p;
    if (c->p >= c->end || !is_name_start(*c->p, allow_colon))
        return 0;
    c->p++;
    while (c->p < c->end && is_name_char(*c->p, allow_colon))
        c->p++;
    return (size_t)(c->p - start);
}

/* Reads a quoted label value (cursor on the opening quote). Returns NULL on success or
 * the reason it failed. */
static const char *read_label_value(struct cursor *c, struct prom_state *st, struct prom_label *l)
{
    c->p++; /* the opening quote */
    const char *start = c->p;
    bool escaped = false;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\\') {
            escaped = true;
            if (c->p + 1 >= c->end)
                return "unterminated label value";
            c->p++;
        }
        c->p++;
    }
    if (c->p >= c->end)
        return "unterminated label value";
    const char *stop = c->p;
    c->p++; /* the closing quote */
    if (!escaped) {
        l->value = start;
        l->value_len = (size_t)(stop - start);
        return NULL;
    }
    char *out = st->scratch + st->scratch_used;
    size_t room = sizeof st->scratch - st->scratch_used;
    size_t n = 0;
    for (const char *q = start; q < stop; q++) {
        char ch = *q;
        if (ch == '\\') {
            q++; /* in range: the scan above saw a character after every backslash */
            if (*q == '\\' || *q == '"')
                ch = *q;
            else if (*q == 'n')
                ch = '\n';
            else
                return "invalid escape in label value";
        }
        if (n >= room)
            return "label value too long";
        out[n++] = ch;
    }
    st->scratch_used += n;
    l->value = out;
    l->value_len = n;
    return NULL;
}

static const char *read_labels(struct cursor *c, struct prom_state *st)
{
    c->p++; /* '{' */
    for (;;) {
        skip_blanks(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++; /* an empty set, or after a trailing comma */
            return NULL;
        }
        if (st->s.n_labels >= PROM_MAX_LABELS)
            return "too many labels";
        struct prom_label *l = &st->s.labels[st->s.n_labels];
        l->name = c->p;
        l->name_len = read_name(c, false);
        if (l->name_len == 0)
            return c->p >= c->end ? "unterminated label set" : "invalid label name";
        skip_blanks(c);
        if (c->p >= c->end || *c->p != '=')
            return "expected '=' after label name";
        c->p++;
        skip_blanks(c);
        if (c->p >= c->end || *c->p != '"')
            return "expected '\"' to start label value";
        const char *why = read_label_value(c, st, l);
        if (why)
            return why;
        st->s.n_labels++;
        skip_blanks(c);
        if (c->p >= c->end)
            return "unterminated label set";
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == '}') {
            c->p++;
            return NULL;
        }
        return "expected ',' or '}' after label value";
    }
}

static bool word_is(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != word[i])
            return false;
    }
    return true;
}

/* Go's strconv.ParseFloat is what Prometheus uses: decimal and scientific notation,
 * and Inf/Infinity/NaN in any case with an optional sign. strtod alone would also take
 * hex floats and "nan(...)", which no exporter writes, so the charset is checked first. */
static bool parse_value(const char *s, size_t n, double *out)
{
    if (n == 0 || n >= PROM_MAX_NUMBER)
        return false;
    const char *w = s;
    size_t wn = n;
    bool neg = false;
    if (*w == '+' || *w == '-') {
        neg = *w == '-';
        w++;
        wn--;
    }
    if (word_is(w, wn, "inf") || word_is(w, wn, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return true;
    }
    if (word_is(w, wn, "nan")) {
        *out = NAN;
        return true;
    }
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9')
            digit = true;
        else if (ch != '+' && ch != '-' && ch != '.' && ch != 'e' && ch != 'E')
            return false;
    }
    if (!digit)
        return false;
    char tmp[PROM_MAX_NUMBER];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *endp;
    *out = strtod(tmp, &endp);
    return endp == tmp + n;
}

static bool parse_timestamp(const char *s, size_t n)
{
    size_t i = (n > 0 && s[0] == '-') ? 1 : 0;
    if (i == n || n - i > 19) /* int64 milliseconds */
        return false;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static const char *parse_line(struct cursor *c, struct prom_state *st)
{
    st->s.name = c->p;
    st->s.name_len = read_name(c, true);
    if (st->s.name_len == 0)
        return "invalid metric name";
    skip_blanks(c);
    if (c->p < c->end && *c->p == '{') {
        const char *why = read_labels(c, st);
        if (why)
            return why;
        skip_blanks(c);
    }
    if (c->p >= c->end)
        return "missing value";
    const char *v = c->p;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\t')
        c->p++;
    if (!parse_value(v, (size_t)(c->p - v), &st->s.value))
        return "invalid value";
    skip_blanks(c);
    if (c->p < c->end) {
        const char *ts = c->p;
        while (c->p < c->end && *c->p != ' ' && *c->p != '\t')
            c->p++;
        if (!parse_timestamp(ts, (size_t)(c->p - ts)))
            return "invalid timestamp";
        skip_blanks(c);
        if (c->p < c->end)
            return "unexpected text after timestamp";
    }
    return NULL;
}

static void set_err(char *err, size_t errlen, unsigned long line, const char *why)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "line %lu: %s", line, why);
}

long prom_parse(const char *text, size_t len, prom_sample_fn fn, void *ctx, char *err,
                size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    if (!text)
        return 0; /* NULL + 0 is still undefined */
    struct prom_state st;
    const char *p = text, *end = text + len;
    unsigned long line = 0;
    long delivered = 0;
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        struct cursor c = {p, eol};
        p = nl ? nl + 1 : end;
        if (c.end > c.p && c.end[-1] == '\r')
            c.end--;
        skip_blanks(&c);
        if (c.p == c.end || *c.p == '#')
            continue;
        st.s.n_labels = 0;
        st.scratch_used = 0;
        const char *why = parse_line(&c, &st);
        if (why) {
            set_err(err, errlen, line, why);
            return -1;
        }
        if (fn)
            fn(&st.s, ctx);
        delivered++;
    }
    return delivered;
}

int prom_name_is(const struct prom_sample *s, const char *name)
{
    size_t n = strlen(name);
    return s->name_len == n && memcmp(s->name, name, n) == 0;
}

const char *prom_label(const struct prom_sample *s, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->n_labels && i < PROM_MAX_LABELS; i++) {
        const struct prom_label *l = &s->labels[i];
        if (l->name_len == n && memcmp(l->name, name, n) == 0) {
            if (len)
                *len = l->value_len;
            return l->value;
        }
    }
    if (len)
        *len = 0;
    return NULL;
}

/* Go text/template subset: lexer, parser and evaluator over jansson values.
 *
 * The template text is copied and lexed into a token array up front (trim markers and
 * comments are resolved there), then parsed into a tree allocated from one arena owned
 * by the template. Literal values are jansson references parsed once and kept in
 * t->lits. Every node and token keeps its byte offset into the copied text; line and
 * column are computed from the offset only when an error is reported.
 *
 * Execution holds every intermediate value as an owned jansson reference: each eval_*
 * returns a new reference or NULL with the error set. Variables live on one stack of
 * (name, reference) pairs; a control structure remembers the stack height on entry and
 * pops back to it on exit, as Go's scoping does. Data values are borrowed from the caller
 * and only ever increfed, never changed. Output is bounded by limits.max_bytes and work
 * by limits.max_steps, so a hostile template always terminates. */
#define _GNU_SOURCE /* memmem */
#include "ms/tmpl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/arena.h"
#include "base/yaml_emit.h"

#define MAX_DEPTH 100 /* nesting of controls and parentheses */
#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define DEFAULT_MAX_STEPS ((size_t)10 * 1000 * 1000)

/* ---- template, tokens, tree ---------------------------------------------------- */

enum ttype {
    T_EOF,
    T_TEXT,
    T_LEFT,
    T_RIGHT,
    T_SPACE,
    T_IDENT,
    T_FIELD, /* s = name without the dot */
    T_DOT,
    T_VAR, /* s = "$name" or "$" */
    T_STRING,
    T_RAW,
    T_CHAR,
    T_NUMBER,
    T_LPAREN,
    T_RPAREN,
    T_PIPE,
    T_DECLARE,
    T_ASSIGN,
    T_COMMA,
};

struct tok {
    enum ttype type;
    size_t off;
    const char *s; /* into the text copy */
    size_t n;
};

struct builtin;

struct fref {
    const char *name;
    const struct builtin *b;   /* built-in, or */
    const struct tmpl_func *f; /* caller's */
};

enum akind { A_DOT, A_CONST, A_FIELD, A_VAR, A_FUNC, A_PIPE };

struct pipe;

struct arg {
    enum akind kind;
    size_t off, end;  /* source extent, for messages */
    json_t *lit;      /* A_CONST (borrowed from t->lits) */
    const char *var;  /* A_VAR */
    struct fref fn;   /* A_FUNC */
    struct pipe *sub; /* A_PIPE */
    const char **fields;
    size_t *field_offs;
    size_t nfields;
};

struct cmd {
    size_t off;
    struct arg *args;
    size_t nargs;
};

struct pipe {
    size_t off;
    bool declare; /* := rather than = */
    const char *vars[2];
    size_t nvars;
    struct cmd *cmds;
    size_t ncmds;
};

enum nkind { N_TEXT, N_ACTION, N_IF, N_RANGE, N_WITH, N_BREAK, N_CONTINUE };

struct node {
    enum nkind kind;
    size_t off;
    const char *text; /* N_TEXT */
    size_t len;
    struct pipe *pipe;
    struct node *list, *else_list;
    struct node *next;
};

struct tmpl {
    char *name;
    char *text;
    size_t len;
    struct arena arena;
    json_t *lits; /* array keeping literal values alive */
    struct node *root;
    const struct tmpl_func *funcs;
    size_t nfuncs;
};

static void pos_of(const char *text, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n')
            l++, c = 1;
        else if ((ch & 0xc0) != 0x80)
            c++;
    }
    *line = l;
    *col = c;
}

static void set_errv(struct errinfo *err, const char *name, const char *text, size_t len,
                     size_t off, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static void set_errv(struct errinfo *err, const char *name, const char *text, size_t len,
                     size_t off, const char *fmt, va_list ap)
{
    if (!err)
        return;
    char why[400];
    vsnprintf(why, sizeof why, fmt, ap);
    pos_of(text, len, off, &err->line, &err->column);
    snprintf(err->msg, sizeof err->msg, "%s:%d:%d: %s", name, err->line, err->column, why);
}

/* ---- lexer --------------------------------------------------------------------- */

struct parser {
    struct tmpl *t;
    struct errinfo *err;
    bool failed;
    struct tok *toks;
    size_t ntoks, cap, pos;
    const char **vars; /* names in scope, innermost last */
    size_t nvars, capvars;
    int depth, range_depth;
};

static bool perr(struct parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool perr(struct parser *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    va_list ap;
    va_start(ap, fmt);
    set_errv(p->err, p->t->name, p->t->text, p->t->len, off, fmt, ap);
    va_end(ap);
    return false;
}

static void push_tok(struct parser *p, enum ttype type, size_t off, size_t start, size_t end)
{
    if (p->ntoks == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->toks = xrealloc(p->toks, p->cap * sizeof *p->toks);
    }
    p->toks[p->ntoks++] = (struct tok){type, off, p->t->text + start, end - start};
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alnum(char c)
{
    return isalnum((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}

static bool starts(const char *s, size_t n, size_t pos, const char *w)
{
    size_t k = strlen(w);
    return pos + k <= n && memcmp(s + pos, w, k) == 0;
}

/* " -}}" at pos: a right delimiter with a trim marker. */
static bool rtrim_at(const char *s, size_t n, size_t pos)
{
    return pos + 3 < n && is_space(s[pos]) && s[pos + 1] == '-' && s[pos + 2] == '}' &&
           s[pos + 3] == '}';
}

static bool at_terminator(const char *s, size_t n, size_t pos)
{
    return pos >= n || is_space(s[pos]) || strchr(".,|:)(=", s[pos]) || starts(s, n, pos, "}}");
}

static const char *show_char(char c, char buf[8])
{
    if (isprint((unsigned char)c))
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "\\x%02x", (unsigned char)c);
    return buf;
}

/* Lexes one action from pos (just past "{{" and any trim marker) through its "}}". */
static bool lex_action(struct parser *p, size_t left, size_t *posp, bool *trim_next)
{
    const char *s = p->t->text;
    size_t n = p->t->len, pos = *posp;
    char cb[8];
    for (;;) {
        if (pos >= n)
            return perr(p, left, "unclosed action");
        char c = s[pos];
        if (starts(s, n, pos, "}}")) {
            push_tok(p, T_RIGHT, pos, pos, pos + 2);
            *posp = pos + 2;
            return true;
        }
        if (is_space(c)) {
            size_t sp = pos;
            while (pos < n && is_space(s[pos]) && !rtrim_at(s, n, pos))
                pos++;
            if (pos > sp)
                push_tok(p, T_SPACE, sp, sp, pos);
            if (rtrim_at(s, n, pos)) {
                push_tok(p, T_RIGHT, pos + 2, pos + 2, pos + 4);
                *posp = pos + 4;
                *trim_next = true;
                return true;
            }
            continue;
        }
        size_t j = pos + 1;
        switch (c) {
        case '=':
            push_tok(p, T_ASSIGN, pos, pos, j);
            break;
        case ':':
            if (j >= n || s[j] != '=')
                return perr(p, pos, "expected :=");
            j++;
            push_tok(p, T_DECLARE, pos, pos, j);
            break;
        case '|':
            push_tok(p, T_PIPE, pos, pos, j);
            break;
        case ',':
            push_tok(p, T_COMMA, pos, pos, j);
            break;
        case '(':
            push_tok(p, T_LPAREN, pos, pos, j);
            break;
        case ')':
            push_tok(p, T_RPAREN, pos, pos, j);
            break;
        case '"':
        case '\'':
            while (j < n && s[j] != c && s[j] != '\n') {
                if (s[j] == '\\')
                    j++;
                j++;
            }
            if (j >= n || s[j] != c)
                return perr(p, pos, c == '"' ? "unterminated quoted string"
                                             : "unterminated character constant");
            push_tok(p, c == '"' ? T_STRING : T_CHAR, pos, pos + 1, j);
            j++;
            break;
        case '`':
            while (j < n && s[j] != '`')
                j++;
            if (j >= n)
                return perr(p, pos, "unterminated raw quoted string");
            push_tok(p, T_RAW, pos, pos + 1, j);
            j++;
            break;
        case '$':
            while (j < n && is_alnum(s[j]))
                j++;
            if (!at_terminator(s, n, j))
                return perr(p, j, "bad character %s", show_char(s[j], cb));
            push_tok(p, T_VAR, pos, pos, j);
            break;
        default:
            if (c == '.' && !(j < n && isdigit((unsigned char)s[j]))) {
                while (j < n && is_alnum(s[j]))
                    j++;
                if (!at_terminator(s, n, j))
                    return perr(p, j, "bad character %s", show_char(s[j], cb));
                push_tok(p, j == pos + 1 ? T_DOT : T_FIELD, pos, pos + 1, j);
            } else if (c == '.' || c == '+' || c == '-' || isdigit((unsigned char)c)) {
                while (j < n && (is_alnum(s[j]) || s[j] == '.' ||
                                 ((s[j] == '+' || s[j] == '-') && strchr("eEpP", s[j - 1]))))
                    j++;
                push_tok(p, T_NUMBER, pos, pos, j);
            } else if (is_alnum(c)) {
                while (j < n && is_alnum(s[j]))
                    j++;
                if (!at_terminator(s, n, j))
                    return perr(p, j, "bad character %s", show_char(s[j], cb));
                push_tok(p, T_IDENT, pos, pos, j);
            } else {
                return perr(p, pos, "unexpected character %s in action", show_char(c, cb));
            }
        }
        pos = j;
    }
}

static bool lex(struct parser *p)
{
    const char *s = p->t->text;
    size_t n = p->t->len, pos = 0;
    bool trim_next = false;
    for (;;) {
        const char *lp = pos < n ? memmem(s + pos, n - pos, "{{", 2) : NULL;
        size_t idx = lp ? (size_t)(lp - s) : n;
        size_t start = pos, end = idx;
        bool ltrim = lp && idx + 3 < n && s[idx + 2] == '-' && is_space(s[idx + 3]);
        if (trim_next)
            while (start < end && is_space(s[start]))
                start++;
        if (ltrim)
            while (end > start && is_space(s[end - 1]))
                end--;
        if (end > start)
            push_tok(p, T_TEXT, start, start, end);
        trim_next = false;
        if (!lp)
            break;
        pos = idx + 2 + (ltrim ? 2 : 0);
        if (starts(s, n, pos, "/*")) {
            const char *ce = memmem(s + pos + 2, n - pos - 2, "*/", 2);
            if (!ce)
                return perr(p, idx, "unclosed comment");
            pos = (size_t)(ce - s) + 2;
            if (rtrim_at(s, n, pos)) {
                pos += 4;
                trim_next = true;
            } else if (starts(s, n, pos, "}}")) {
                pos += 2;
            } else {
                return perr(p, idx, "comment ends before closing delimiter");
            }
            continue;
        }
        push_tok(p, T_LEFT, idx, idx, idx + 2);
        if (!lex_action(p, idx, &pos, &trim_next))
            return false;
    }
    push_tok(p, T_EOF, n, n, n);
    return true;
}

/* ---- literals -------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp, k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), k = 4;
    }
    buf_append(b, u, k);
}

/* Go's strconv.Unquote for the body of a "..." or '...' literal. Returns the offset
 * (relative to s) of a bad escape, or -1 when all is well. */
static long unescape(const char *s, size_t n, char quote, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            buf_append_char(out, s[i]);
            continue;
        }
        size_t at = i++;
        if (i >= n)
            return (long)at;
        char c = s[i];
        const char *simple = strchr("abfnrtv\\", c);
        if (simple && c) {
            static const char map[] = "\a\b\f\n\r\t\v\\";
            buf_append_char(out, map[simple - "abfnrtv\\"]);
        } else if (c == quote) {
            buf_append_char(out, c);
        } else if (c == 'x' || c == 'u' || c == 'U') {
            size_t k = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (size_t d = 1; d <= k; d++) {
                if (i + d >= n || hexval(s[i + d]) < 0)
                    return (long)at;
                v = v * 16 + (uint32_t)hexval(s[i + d]);
            }
            i += k;
            if (c == 'x') {
                buf_append_char(out, (char)v);
            } else {
                if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                    return (long)at;
                put_utf8(out, v);
            }
        } else if (c >= '0' && c <= '7') {
            uint32_t v = 0;
            for (size_t d = 0; d < 3; d++) {
                if (i + d >= n || s[i + d] < '0' || s[i + d] > '7')
                    return (long)at;
                v = v * 8 + (uint32_t)(s[i + d] - '0');
            }
            if (v > 255)
                return (long)at;
            i += 2;
            buf_append_char(out, (char)v);
        } else {
            return (long)at;
        }
    }
    return -1;
}

/* Decodes one UTF-8 sequence; 0 when malformed (then *cp is the byte). */
static size_t utf8_next(const char *str, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    uint32_t c = s[0], min;
    size_t len;
    *cp = c;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, min = 0x80, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0)
        len = 3, min = 0x800, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0)
        len = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
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

/* A Go number literal: ints (decimal, 0x, 0o, 0b, leading-0 octal, '_' separators) and
 * floats (with '.', exponent, or hex 'p'). */
static json_t *parse_number(const char *s, size_t n)
{
    char tmp[80];
    size_t k = 0;
    if (n == 0 || n >= sizeof tmp)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '_')
            tmp[k++] = s[i];
    tmp[k] = '\0';
    const char *d = tmp;
    bool neg = false;
    if (*d == '+' || *d == '-')
        neg = *d++ == '-';
    if (!*d)
        return NULL;
    bool hex = d[0] == '0' && (d[1] == 'x' || d[1] == 'X');
    bool is_float = hex ? strpbrk(d, ".pP") != NULL : strpbrk(d, ".eE") != NULL;
    char *end;
    if (is_float) {
        errno = 0;
        double v = strtod(tmp, &end);
        if (*end || errno == ERANGE || !isfinite(v))
            return NULL;
        return json_real(v);
    }
    int base = 10;
    if (hex)
        base = 16, d += 2;
    else if (d[0] == '0' && (d[1] == 'o' || d[1] == 'O'))
        base = 8, d += 2;
    else if (d[0] == '0' && (d[1] == 'b' || d[1] == 'B'))
        base = 2, d += 2;
    else if (d[0] == '0' && d[1])
        base = 8, d += 1;
    if (!*d || *d == '+' || *d == '-' || isspace((unsigned char)*d))
        return NULL;
    errno = 0;
    unsigned long long u = strtoull(d, &end, base);
    if (*end || errno == ERANGE)
        return NULL;
    if (neg ? u > (unsigned long long)INT64_MAX + 1 : u > (unsigned long long)INT64_MAX)
        return NULL;
    return json_integer(neg ? (json_int_t)(-(int64_t)(u - 1) - 1) : (json_int_t)u);
}

/* ---- parser ---------------------------------------------------------------------- */

struct builtin {
    const char *name;
    int min, max; /* max < 0: variadic */
    bool (*fn)(const json_t *root, json_t *const *a, size_t n, json_t **out, char *e, size_t el,
               size_t max_bytes);
    int lazy; /* 1: and, 2: or (arguments evaluated one at a time) */
};

static const struct builtin *find_builtin(const char *name);

static struct tok *peek(struct parser *p)
{
    return &p->toks[p->pos];
}

static struct tok *next_tok(struct parser *p)
{
    struct tok *t = &p->toks[p->pos];
    if (t->type != T_EOF)
        p->pos++;
    return t;
}

static void skip_space(struct parser *p)
{
    while (peek(p)->type == T_SPACE)
        p->pos++;
}

static bool tok_is(const struct tok *t, const char *word)
{
    return t->type == T_IDENT && t->n == strlen(word) && memcmp(t->s, word, t->n) == 0;
}

static const char *tok_desc(const struct tok *t, char *buf, size_t cap)
{
    switch (t->type) {
    case T_EOF:
        return "end of template";
    case T_RIGHT:
        return "}}";
    case T_LEFT:
        return "{{";
    case T_TEXT:
        return "text";
    default:
        snprintf(buf, cap, "%.*s", (int)(t->n > 40 ? 40 : t->n), t->s);
        return buf;
    }
}

static const char *dup_tok(struct parser *p, const struct tok *t)
{
    return arena_strndup(&p->t->arena, t->s, t->n);
}

static void push_var(struct parser *p, const char *name)
{
    if (p->nvars == p->capvars) {
        p->capvars = p->capvars ? p->capvars * 2 : 16;
        p->vars = xrealloc(p->vars, p->capvars * sizeof *p->vars);
    }
    p->vars[p->nvars++] = name;
}

static bool var_known(struct parser *p, const struct tok *t)
{
    if (t->n == 1)
        return true; /* $ */
    for (size_t i = p->nvars; i-- > 0;)
        if (strlen(p->vars[i]) == t->n && memcmp(p->vars[i], t->s, t->n) == 0)
            return true;
    return false;
}

static const char *const keywords[] = {"if",    "else",  "end",      "range",    "with", "define",
                                       "block", "break", "continue", "template", NULL};

static bool is_keyword(const struct tok *t)
{
    for (const char *const *k = keywords; *k; k++)
        if (tok_is(t, *k))
            return true;
    return false;
}

static struct pipe *parse_pipeline(struct parser *p, const char *ctx, size_t max_vars,
                                   enum ttype end);

static json_t *keep_lit(struct parser *p, json_t *v)
{
    json_array_append_new(p->t->lits, v);
    return v;
}

static bool resolve_func(struct parser *p, const struct tok *t, struct fref *fr)
{
    const char *name = dup_tok(p, t);
    *fr = (struct fref){name, NULL, NULL};
    for (size_t i = 0; i < p->t->nfuncs; i++)
        if (p->t->funcs[i].name && strcmp(p->t->funcs[i].name, name) == 0) {
            fr->f = &p->t->funcs[i];
            return true;
        }
    fr->b = find_builtin(name);
    if (!fr->b)
        return perr(p, t->off, "function \"%s\" not defined", name);
    return true;
}

/* One operand: a term and any .Field chain after it. Returns false with nothing
 * consumed (and no error) when the next token cannot start an operand. */
static bool parse_operand(struct parser *p, struct arg *a, bool *got)
{
    struct tok *t = peek(p);
    *got = false;
    memset(a, 0, sizeof *a);
    a->off = t->off;
    struct buf lit = BUF_INIT;
    size_t nfields = 0, capf = 0;
    const char **fields = NULL;
    size_t *offs = NULL;
    switch (t->type) {
    case T_IDENT:
        if (is_keyword(t))
            return perr(p, t->off, "unexpected %.*s in command", (int)t->n, t->s);
        if (tok_is(t, "true") || tok_is(t, "false") || tok_is(t, "nil")) {
            a->kind = A_CONST;
            a->lit = tok_is(t, "true") ? json_true() : tok_is(t, "false") ? json_false() : json_null();
            keep_lit(p, a->lit);
        } else {
            a->kind = A_FUNC;
            if (!resolve_func(p, t, &a->fn))
                return false;
        }
        break;
    case T_DOT:
        a->kind = A_DOT;
        break;
    case T_VAR:
        if (!var_known(p, t))
            return perr(p, t->off, "undefined variable \"%.*s\"", (int)t->n, t->s);
        a->kind = A_VAR;
        a->var = dup_tok(p, t);
        break;
    case T_FIELD:
        a->kind = A_FIELD;
        p->pos--; /* the field is the chain's first link, read below */
        break;
    case T_STRING:
    case T_CHAR: {
        long bad = unescape(t->s, t->n, t->type == T_STRING ? '"' : '\'', &lit);
        if (bad >= 0) {
            buf_free(&lit);
            return perr(p, t->off + 1 + (size_t)bad, "invalid escape in %s literal",
                        t->type == T_STRING ? "string" : "character");
        }
        if (t->type == T_STRING) {
            a->lit = keep_lit(p, json_stringn_nocheck(lit.data ? lit.data : "", lit.len));
        } else {
            uint32_t cp = 0;
            size_t used = lit.len ? utf8_next(lit.data, lit.len, &cp) : 0;
            if (lit.len == 0 || (used != lit.len && lit.len != 1)) {
                buf_free(&lit);
                return perr(p, t->off, "invalid character constant");
            }
            a->lit = keep_lit(p, json_integer(cp));
        }
        buf_free(&lit);
        a->kind = A_CONST;
        break;
    }
    case T_RAW:
        for (size_t i = 0; i < t->n; i++)
            if (t->s[i] != '\r')
                buf_append_char(&lit, t->s[i]);
        a->lit = keep_lit(p, json_stringn_nocheck(lit.data ? lit.data : "", lit.len));
        buf_free(&lit);
        a->kind = A_CONST;
        break;
    case T_NUMBER: {
        json_t *v = parse_number(t->s, t->n);
        if (!v)
            return perr(p, t->off, "bad number syntax: %.*s", (int)(t->n > 40 ? 40 : t->n), t->s);
        a->lit = keep_lit(p, v);
        a->kind = A_CONST;
        break;
    }
    case T_LPAREN:
        if (++p->depth > MAX_DEPTH)
            return perr(p, t->off, "parentheses nested too deeply");
        p->pos++;
        a->sub = parse_pipeline(p, "parenthesized pipeline", 0, T_RPAREN);
        p->depth--;
        if (!a->sub)
            return false;
        a->kind = A_PIPE;
        p->pos--; /* parse_pipeline consumed the ')'; the common advance below redoes it */
        break;
    default:
        return true;
    }
    p->pos++;
    while (peek(p)->type == T_FIELD) {
        struct tok *f = next_tok(p);
        if (a->kind == A_CONST || a->kind == A_DOT) {
            free(fields);
            free(offs);
            return perr(p, f->off, "unexpected . after term");
        }
        if (nfields == capf) {
            capf = capf ? capf * 2 : 4;
            fields = xrealloc(fields, capf * sizeof *fields);
            offs = xrealloc(offs, capf * sizeof *offs);
        }
        fields[nfields] = dup_tok(p, f);
        offs[nfields++] = f->off;
    }
    if (nfields) {
        a->fields = arena_alloc(&p->t->arena, nfields * sizeof *fields);
        a->field_offs = arena_alloc(&p->t->arena, nfields * sizeof *offs);
        memcpy(a->fields, fields, nfields * sizeof *fields);
        memcpy(a->field_offs, offs, nfields * sizeof *offs);
        a->nfields = nfields;
    }
    free(fields);
    free(offs);
    a->end = p->toks[p->pos - 1].off + p->toks[p->pos - 1].n +
             (p->toks[p->pos - 1].type == T_FIELD ? 1 : 0);
    if (p->toks[p->pos - 1].type == T_STRING || p->toks[p->pos - 1].type == T_RAW ||
        p->toks[p->pos - 1].type == T_CHAR)
        a->end += 2;
    *got = true;
    return true;
}

static bool parse_command(struct parser *p, struct cmd *c)
{
    struct arg *args = NULL;
    size_t n = 0, cap = 0;
    char tb[48];
    skip_space(p);
    c->off = peek(p)->off;
    for (;;) {
        skip_space(p);
        enum ttype ty = peek(p)->type;
        if (ty == T_RIGHT || ty == T_RPAREN || ty == T_PIPE)
            break;
        struct arg a;
        bool got;
        if (!parse_operand(p, &a, &got))
            goto fail;
        if (!got) {
            perr(p, peek(p)->off, "unexpected %s in command", tok_desc(peek(p), tb, sizeof tb));
            goto fail;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            args = xrealloc(args, cap * sizeof *args);
        }
        args[n++] = a;
        ty = peek(p)->type;
        if (ty != T_SPACE && ty != T_RIGHT && ty != T_RPAREN && ty != T_PIPE) {
            perr(p, peek(p)->off, "unexpected %s in operand", tok_desc(peek(p), tb, sizeof tb));
            goto fail;
        }
    }
    if (n == 0) {
        free(args);
        return perr(p, peek(p)->off, "missing value for command");
    }
    c->args = arena_alloc(&p->t->arena, n * sizeof *args);
    memcpy(c->args, args, n * sizeof *args);
    c->nargs = n;
    free(args);
    return true;
fail:
    free(args);
    return false;
}

/* Parses "[$v[, $w] (:=|=)] cmd | cmd ..." up to and including the end token. */
static struct pipe *parse_pipeline(struct parser *p, const char *ctx, size_t max_vars,
                                   enum ttype end)
{
    struct pipe *pp = arena_calloc(&p->t->arena, sizeof *pp);
    char tb[48];
    skip_space(p);
    pp->off = peek(p)->off;
    size_t save = p->pos;
    struct tok *decl_toks[2] = {NULL, NULL};
    if (peek(p)->type == T_VAR && max_vars > 0) {
        decl_toks[0] = next_tok(p);
        skip_space(p);
        struct tok *t = peek(p);
        if (t->type == T_COMMA && max_vars > 1) {
            next_tok(p);
            skip_space(p);
            if (peek(p)->type != T_VAR) {
                perr(p, peek(p)->off, "expected variable after ',' in %s", ctx);
                return NULL;
            }
            decl_toks[1] = next_tok(p);
            skip_space(p);
            t = peek(p);
            if (t->type != T_DECLARE && t->type != T_ASSIGN) {
                perr(p, t->off, "expected := after variables in %s", ctx);
                return NULL;
            }
        }
        if (t->type == T_DECLARE || t->type == T_ASSIGN) {
            pp->declare = t->type == T_DECLARE;
            next_tok(p);
            for (size_t i = 0; i < 2 && decl_toks[i]; i++) {
                if (decl_toks[i]->n == 1) {
                    perr(p, decl_toks[i]->off, "cannot assign to $");
                    return NULL;
                }
                if (!pp->declare && !var_known(p, decl_toks[i])) {
                    perr(p, decl_toks[i]->off, "undefined variable \"%.*s\"",
                         (int)decl_toks[i]->n, decl_toks[i]->s);
                    return NULL;
                }
                pp->vars[pp->nvars++] = dup_tok(p, decl_toks[i]);
            }
        } else {
            p->pos = save;
        }
    }
    struct cmd *cmds = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        struct cmd c;
        if (!parse_command(p, &c))
            goto fail;
        if (n > 0 && c.args[0].kind != A_FUNC) {
            perr(p, c.off, "non executable command in pipeline stage %zu", n + 1);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            cmds = xrealloc(cmds, cap * sizeof *cmds);
        }
        cmds[n++] = c;
        struct tok *t = next_tok(p);
        if (t->type == T_PIPE)
            continue;
        if (t->type == end)
            break;
        if (end == T_RPAREN)
            perr(p, t->off, "unclosed left paren");
        else
            perr(p, t->off, "unexpected %s in %s", tok_desc(t, tb, sizeof tb), ctx);
        goto fail;
    }
    pp->cmds = arena_alloc(&p->t->arena, n * sizeof *cmds);
    memcpy(pp->cmds, cmds, n * sizeof *cmds);
    pp->ncmds = n;
    free(cmds);
    if (pp->declare)
        for (size_t i = 0; i < pp->nvars; i++)
            push_var(p, pp->vars[i]);
    return pp;
fail:
    free(cmds);
    return NULL;
}

enum stop { STOP_EOF, STOP_END, STOP_ELSE };

static struct node *new_node(struct parser *p, enum nkind kind, size_t off)
{
    struct node *n = arena_calloc(&p->t->arena, sizeof *n);
    n->kind = kind;
    n->off = off;
    return n;
}

static bool expect_right(struct parser *p, const char *what)
{
    char tb[48];
    skip_space(p);
    struct tok *t = next_tok(p);
    if (t->type != T_RIGHT)
        return perr(p, t->off, "unexpected %s in {{%s}}", tok_desc(t, tb, sizeof tb), what);
    return true;
}

static bool parse_list(struct parser *p, struct node **head, enum stop *stop, size_t *stop_off);

static struct node *parse_control(struct parser *p, enum nkind kind, size_t left)
{
    static const char *const names[] = {[N_IF] = "if", [N_RANGE] = "range", [N_WITH] = "with"};
    const char *kw = names[kind];
    if (++p->depth > MAX_DEPTH) {
        perr(p, left, "{{%s}} nested too deeply", kw);
        return NULL;
    }
    size_t mark = p->nvars;
    struct node *n = new_node(p, kind, left);
    n->pipe = parse_pipeline(p, kw, kind == N_RANGE ? 2 : 1, T_RIGHT);
    if (!n->pipe)
        return NULL;
    if (n->pipe->nvars > 1 && kind != N_RANGE) {
        perr(p, n->pipe->off, "too many declarations in {{%s}}", kw);
        return NULL;
    }
    enum stop stop;
    size_t stop_off;
    if (kind == N_RANGE)
        p->range_depth++;
    bool ok = parse_list(p, &n->list, &stop, &stop_off);
    if (kind == N_RANGE)
        p->range_depth--;
    if (!ok)
        return NULL;
    if (stop == STOP_ELSE) {
        skip_space(p);
        struct tok *t = peek(p);
        if ((kind == N_IF && tok_is(t, "if")) || (kind == N_WITH && tok_is(t, "with"))) {
            /* {{else if x}}: an if nested in the else branch, sharing our {{end}}. */
            next_tok(p);
            n->else_list = parse_control(p, kind, stop_off);
            if (!n->else_list)
                return NULL;
        } else {
            if (!expect_right(p, "else"))
                return NULL;
            if (!parse_list(p, &n->else_list, &stop, &stop_off))
                return NULL;
            if (stop == STOP_ELSE) {
                perr(p, stop_off, "expected {{end}} for {{%s}}, found {{else}}", kw);
                return NULL;
            }
        }
    }
    if (stop == STOP_EOF) {
        perr(p, left, "unclosed {{%s}}: missing {{end}}", kw);
        return NULL;
    }
    p->nvars = mark;
    p->depth--;
    return n;
}

/* Items until end of input, {{end}} (consumed) or {{else (consumed through "else"). */
static bool parse_list(struct parser *p, struct node **head, enum stop *stop, size_t *stop_off)
{
    struct node **tail = head;
    *head = NULL;
    for (;;) {
        struct tok *t = next_tok(p);
        struct node *n = NULL;
        if (t->type == T_EOF) {
            *stop = STOP_EOF;
            return true;
        }
        if (t->type == T_TEXT) {
            n = new_node(p, N_TEXT, t->off);
            n->text = t->s;
            n->len = t->n;
        } else {
            size_t left = t->off;
            skip_space(p);
            struct tok *k = peek(p);
            if (tok_is(k, "end") || tok_is(k, "else")) {
                next_tok(p);
                *stop = tok_is(k, "end") ? STOP_END : STOP_ELSE;
                *stop_off = left;
                if (*stop == STOP_END && !expect_right(p, "end"))
                    return false;
                return true;
            } else if (tok_is(k, "if") || tok_is(k, "range") || tok_is(k, "with")) {
                next_tok(p);
                n = parse_control(p, tok_is(k, "if") ? N_IF : tok_is(k, "range") ? N_RANGE : N_WITH,
                                  left);
                if (!n)
                    return false;
            } else if (tok_is(k, "break") || tok_is(k, "continue")) {
                bool brk = tok_is(k, "break");
                next_tok(p);
                if (p->range_depth == 0)
                    return perr(p, left, "{{%s}} outside {{range}}", brk ? "break" : "continue");
                if (!expect_right(p, brk ? "break" : "continue"))
                    return false;
                n = new_node(p, brk ? N_BREAK : N_CONTINUE, left);
            } else if (tok_is(k, "define") || tok_is(k, "template") || tok_is(k, "block")) {
                return perr(p, k->off, "{{%.*s}} is not supported", (int)k->n, k->s);
            } else {
                n = new_node(p, N_ACTION, left);
                n->pipe = parse_pipeline(p, "command", 1, T_RIGHT);
                if (!n->pipe)
                    return false;
            }
        }
        *tail = n;
        tail = &n->next;
    }
}

struct tmpl *tmpl_parse(const char *text, size_t len, const char *name,
                        const struct tmpl_func *funcs, size_t nfuncs, struct errinfo *err)
{
    struct tmpl *t = xcalloc(1, sizeof *t);
    t->name = xstrdup(name ? name : "template");
    t->text = xmalloc(len + 1);
    if (len)
        memcpy(t->text, text, len);
    t->text[len] = '\0';
    t->len = len;
    arena_init(&t->arena, 0);
    t->lits = json_array();
    t->funcs = funcs;
    t->nfuncs = funcs ? nfuncs : 0;
    struct parser p = {.t = t, .err = err};
    bool ok = lex(&p);
    if (ok) {
        enum stop stop;
        size_t stop_off = 0;
        ok = parse_list(&p, &t->root, &stop, &stop_off);
        if (ok && stop != STOP_EOF)
            ok = perr(&p, stop_off, "unexpected {{%s}}", stop == STOP_END ? "end" : "else");
    }
    free(p.toks);
    free(p.vars);
    if (!ok) {
        tmpl_free(t);
        return NULL;
    }
    return t;
}

void tmpl_free(struct tmpl *t)
{
    if (!t)
        return;
    json_decref(t->lits);
    arena_free(&t->arena);
    free(t->text);
    free(t->name);
    free(t);
}

/* ---- values ---------------------------------------------------------------------- */

static const char *type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return "map";
    case JSON_ARRAY:
        return "slice";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "int";
    case JSON_REAL:
        return "float64";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    case JSON_NULL:
        break;
    }
    return "nil";
}

static bool truth(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0;
    case JSON_TRUE:
        return true;
    case JSON_FALSE:
    case JSON_NULL:
        break;
    }
    return false;
}

/* Go's %v for a float64: strconv.FormatFloat(f, 'g', -1, 64). */
static void fmt_float(struct buf *b, double d)
{
    if (d == 0) {
        buf_append_str(b, signbit(d) ? "-0" : "0");
        return;
    }
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    char digits[24];
    int nd = 0;
    const char *q = tmp;
    if (*q == '-') {
        buf_append_char(b, '-');
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q) && nd < 20)
            digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp = *q ? atoi(q + 1) : 0;
    if (exp < -4 || exp >= 6) { /* Go's shortest %v: eprec is 6 */
        buf_append_char(b, digits[0]);
        if (nd > 1) {
            buf_append_char(b, '.');
            buf_append(b, digits + 1, (size_t)nd - 1);
        }
        buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    int dp = exp + 1; /* digits before the point */
    if (dp <= 0) {
        buf_append_str(b, "0.");
        for (int i = 0; i < -dp; i++)
            buf_append_char(b, '0');
        buf_append(b, digits, (size_t)nd);
        return;
    }
    for (int i = 0; i < dp; i++)
        buf_append_char(b, i < nd ? digits[i] : '0');
    if (nd > dp) {
        buf_append_char(b, '.');
        buf_append(b, digits + dp, (size_t)(nd - dp));
    }
}

/* Go's %v (sprig's strval): strings raw, collections as compact JSON, nil as nil_text. */
static bool fmt_value(struct buf *b, const json_t *v, const char *nil_text)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING:
        buf_append(b, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        fmt_float(b, json_real_value(v));
        return true;
    case JSON_TRUE:
        buf_append_str(b, "true");
        return true;
    case JSON_FALSE:
        buf_append_str(b, "false");
        return true;
    case JSON_NULL:
        buf_append_str(b, nil_text);
        return true;
    case JSON_OBJECT:
    case JSON_ARRAY:
        break;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return false; /* a string inside is not UTF-8 */
    buf_append_str(b, s);
    free(s);
    return true;
}

/* Go's strconv.Quote. */
static void go_quote(struct buf *b, const char *s, size_t n)
{
    buf_append_char(b, '"');
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        if (len == 0) {
            buf_printf(b, "\\x%02x", (unsigned char)s[i]);
            i++;
            continue;
        }
        const char *esc = NULL;
        switch (cp) {
        case '\a':
            esc = "\\a";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\v':
            esc = "\\v";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '"':
            esc = "\\\"";
            break;
        default:
            break;
        }
        if (esc)
            buf_append_str(b, esc);
        else if (cp < 0x20 || cp == 0x7f)
            buf_printf(b, "\\x%02x", cp);
        else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x2028 || cp == 0x2029 ||
                 cp == 0xfeff || cp == 0xfffe || cp == 0xffff)
            buf_printf(b, "\\u%04x", cp);
        else
            buf_append(b, s + i, len);
        i += len;
    }
    buf_append_char(b, '"');
}

static json_t *str_new(struct buf *b)
{
    json_t *v = json_stringn_nocheck(b->data ? b->data : "", b->len);
    buf_free(b);
    return v;
}

/* ---- built-in functions ------------------------------------------------------------ */

#define BFN(name)                                                                           \
    static bool name(const json_t *root, json_t *const *a, size_t n, json_t **out, char *e, \
                     size_t el, size_t max_bytes)

static bool want_str(json_t *const *a, size_t i, char *e, size_t el)
{
    if (json_is_string(a[i]))
        return true;
    snprintf(e, el, "argument %zu: expected string, got %s", i + 1, type_name(a[i]));
    return false;
}

static bool want_int(json_t *const *a, size_t i, json_int_t *v, char *e, size_t el)
{
    if (json_is_integer(a[i])) {
        *v = json_integer_value(a[i]);
        return true;
    }
    snprintf(e, el, "argument %zu: expected int, got %s", i + 1, type_name(a[i]));
    return false;
}

static bool too_big(size_t n, size_t max_bytes, char *e, size_t el)
{
    if (n <= max_bytes)
        return false;
    snprintf(e, el, "result of %zu bytes exceeds the limit of %zu", n, max_bytes);
    return true;
}

BFN(f_getport)
{
    json_t *ports = json_is_object(root) ? json_object_get(root, "Ports") : NULL;
    if (!want_str(a, 0, e, el))
        return false;
    json_t *v = json_is_object(ports) ? json_object_get(ports, json_string_value(a[0])) : NULL;
    if (!v) {
        snprintf(e, el, "port \"%.100s\" not defined", json_string_value(a[0]));
        return false;
    }
    *out = json_incref(v);
    return true;
}

static bool quote_common(json_t *const *a, size_t n, json_t **out, char *e, size_t el,
                         size_t max_bytes, bool single)
{
    struct buf b = BUF_INIT, tmp = BUF_INIT;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (json_is_null(a[i]))
            continue; /* sprig skips nil */
        if (!first)
            buf_append_char(&b, ' ');
        first = false;
        buf_reset(&tmp);
        if (!fmt_value(&tmp, a[i], "")) {
            snprintf(e, el, "argument %zu cannot be printed", i + 1);
            buf_free(&b);
            buf_free(&tmp);
            return false;
        }
        if (single) {
            buf_append_char(&b, '\'');
            buf_append(&b, tmp.data, tmp.len);
            buf_append_char(&b, '\'');
        } else {
            go_quote(&b, tmp.data, tmp.len);
        }
        if (too_big(b.len, max_bytes, e, el)) {
            buf_free(&b);
            buf_free(&tmp);
            return false;
        }
    }
    buf_free(&tmp);
    *out = str_new(&b);
    return true;
}

BFN(f_quote)
{
    return quote_common(a, n, out, e, el, max_bytes, false);
}

BFN(f_squote)
{
    return quote_common(a, n, out, e, el, max_bytes, true);
}

BFN(f_default)
{
    /* sprig: default DEFAULT [GIVEN]: GIVEN unless it is empty. */
    *out = json_incref(n >= 2 && truth(a[1]) ? a[1] : a[0]);
    return true;
}

static bool change_case(json_t *const *a, json_t **out, char *e, size_t el, bool up)
{
    if (!want_str(a, 0, e, el))
        return false;
    size_t len = json_string_length(a[0]);
    char *s = xmalloc(len + 1);
    memcpy(s, json_string_value(a[0]), len);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)(up ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
    *out = json_stringn_nocheck(s, len);
    free(s);
    return true;
}

BFN(f_lower)
{
    return change_case(a, out, e, el, false);
}

BFN(f_upper)
{
    return change_case(a, out, e, el, true);
}

BFN(f_trunc)
{
    json_int_t c;
    if (!want_int(a, 0, &c, e, el) || !want_str(a, 1, e, el))
        return false;
    const char *s = json_string_value(a[1]);
    json_int_t len = (json_int_t)json_string_length(a[1]);
    if (c < 0 && len + c > 0)
        *out = json_stringn_nocheck(s + len + c, (size_t)(-c));
    else if (c >= 0 && len > c)
        *out = json_stringn_nocheck(s, (size_t)c);
    else
        *out = json_incref(a[1]);
    return true;
}

BFN(f_replace)
{
    for (size_t i = 0; i < 3; i++)
        if (!want_str(a, i, e, el))
            return false;
    const char *old = json_string_value(a[0]), *nw = json_string_value(a[1]);
    const char *s = json_string_value(a[2]);
    size_t on = json_string_length(a[0]), nn = json_string_length(a[1]);
    size_t sn = json_string_length(a[2]);
    /* Count first, so a huge result is refused before it is built. */
    size_t hits = 0;
    if (on == 0) {
        for (size_t i = 0; i < sn;) {
            uint32_t cp;
            size_t k = utf8_next(s + i, sn - i, &cp);
            i += k ? k : 1;
            hits++;
        }
        hits++;
    } else {
        for (size_t i = 0; i + on <= sn;) {
            if (memcmp(s + i, old, on) == 0)
                hits++, i += on;
            else
                i++;
        }
    }
    if (nn > on && too_big(sn + hits * (nn - on), max_bytes, e, el))
        return false;
    struct buf b = BUF_INIT;
    if (on == 0) {
        /* Go: the replacement goes before every UTF-8 sequence and at the end. */
        for (size_t i = 0; i < sn;) {
            uint32_t cp;
            size_t k = utf8_next(s + i, sn - i, &cp);
            k = k ? k : 1;
            buf_append(&b, nw, nn);
            buf_append(&b, s + i, k);
            i += k;
        }
        buf_append(&b, nw, nn);
    } else {
        size_t i = 0;
        while (i < sn) {
            if (i + on <= sn && memcmp(s + i, old, on) == 0) {
                buf_append(&b, nw, nn);
                i += on;
            } else {
                buf_append_char(&b, s[i++]);
            }
        }
    }
    *out = str_new(&b);
    return true;
}

BFN(f_trimsuffix)
{
    if (!want_str(a, 0, e, el) || !want_str(a, 1, e, el))
        return false;
    size_t sl = json_string_length(a[0]), n1 = json_string_length(a[1]);
    const char *s = json_string_value(a[1]);
    if (sl <= n1 && memcmp(s + n1 - sl, json_string_value(a[0]), sl) == 0)
        *out = json_stringn_nocheck(s, n1 - sl);
    else
        *out = json_incref(a[1]);
    return true;
}

BFN(f_toyaml)
{
    struct buf b = BUF_INIT;
    yaml_emit(&b, a[0], 0);
    while (b.len && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    if (too_big(b.len, max_bytes, e, el)) {
        buf_free(&b);
        return false;
    }
    *out = str_new(&b);
    return true;
}

static bool indent_common(json_t *const *a, json_t **out, char *e, size_t el, size_t max_bytes,
                          bool leading_newline)
{
    json_int_t w;
    if (!want_int(a, 0, &w, e, el) || !want_str(a, 1, e, el))
        return false;
    if (w < 0)
        w = 0;
    const char *s = json_string_value(a[1]);
    size_t sn = json_string_length(a[1]), lines = 1;
    for (size_t i = 0; i < sn; i++)
        lines += s[i] == '\n';
    if ((size_t)w > max_bytes || too_big(sn + 1 + lines * (size_t)w, max_bytes, e, el)) {
        if ((size_t)w > max_bytes)
            snprintf(e, el, "indent %" JSON_INTEGER_FORMAT " exceeds the limit", w);
        return false;
    }
    struct buf b = BUF_INIT;
    if (leading_newline)
        buf_append_char(&b, '\n');
    for (json_int_t k = 0; k < w; k++)
        buf_append_char(&b, ' ');
    for (size_t i = 0; i < sn; i++) {
        buf_append_char(&b, s[i]);
        if (s[i] == '\n')
            for (json_int_t k = 0; k < w; k++)
                buf_append_char(&b, ' ');
    }
    *out = str_new(&b);
    return true;
}

BFN(f_indent)
{
    return indent_common(a, out, e, el, max_bytes, false);
}

BFN(f_nindent)
{
    return indent_common(a, out, e, el, max_bytes, true);
}

/* Go's basic kinds for comparison. */
enum kind { K_BAD, K_BOOL, K_INT, K_FLOAT, K_STRING, K_NIL };

static enum kind kind_of(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_TRUE:
    case JSON_FALSE:
        return K_BOOL;
    case JSON_INTEGER:
        return K_INT;
    case JSON_REAL:
        return K_FLOAT;
    case JSON_STRING:
        return K_STRING;
    case JSON_NULL:
        return K_NIL;
    default:
        return K_BAD;
    }
}

static double num_of(const json_t *v)
{
    return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
}

/* -1/0/1 into *cmp; numbers compare across int and float. */
static bool compare(const json_t *x, const json_t *y, bool ordered, int *cmp, char *e, size_t el)
{
    enum kind kx = kind_of(x), ky = kind_of(y);
    if (kx == K_BAD || ky == K_BAD) {
        snprintf(e, el, "non-comparable type %s", type_name(kx == K_BAD ? x : y));
        return false;
    }
    bool numx = kx == K_INT || kx == K_FLOAT, numy = ky == K_INT || ky == K_FLOAT;
    if (ordered && (kx == K_BOOL || kx == K_NIL || ky == K_BOOL || ky == K_NIL)) {
        snprintf(e, el, "invalid type for comparison");
        return false;
    }
    if (kx == K_NIL || ky == K_NIL) {
        *cmp = kx == ky ? 0 : 1;
        return true;
    }
    if (kx != ky && !(numx && numy)) {
        snprintf(e, el, "incompatible types for comparison");
        return false;
    }
    if (kx == K_INT && ky == K_INT) {
        json_int_t a = json_integer_value(x), b = json_integer_value(y);
        *cmp = a < b ? -1 : a > b;
    } else if (numx) {
        double a = num_of(x), b = num_of(y);
        *cmp = a < b ? -1 : a > b;
    } else if (kx == K_STRING) {
        size_t la = json_string_length(x), lb = json_string_length(y);
        int c = memcmp(json_string_value(x), json_string_value(y), la < lb ? la : lb);
        *cmp = c ? (c < 0 ? -1 : 1) : (la < lb ? -1 : la > lb);
    } else {
        *cmp = json_is_true(x) == json_is_true(y) ? 0 : 1;
    }
    return true;
}

BFN(f_eq)
{
    bool eq = false;
    for (size_t i = 1; i < n && !eq; i++) {
        int c;
        if (!compare(a[0], a[i], false, &c, e, el))
            return false;
        eq = c == 0;
    }
    *out = json_boolean(eq);
    return true;
}

BFN(f_ne)
{
    int c;
    if (!compare(a[0], a[1], false, &c, e, el))
        return false;
    *out = json_boolean(c != 0);
    return true;
}

#define ORDER_FN(name, test)                             \
    BFN(name)                                            \
    {                                                    \
        int c;                                           \
        if (!compare(a[0], a[1], true, &c, e, el))       \
            return false;                                \
        *out = json_boolean(test);                       \
        return true;                                     \
    }
ORDER_FN(f_lt, c < 0)
ORDER_FN(f_le, c <= 0)
ORDER_FN(f_gt, c > 0)
ORDER_FN(f_ge, c >= 0)

BFN(f_not)
{
    *out = json_boolean(!truth(a[0]));
    return true;
}

BFN(f_len)
{
    size_t len;
    if (json_is_string(a[0]))
        len = json_string_length(a[0]);
    else if (json_is_array(a[0]))
        len = json_array_size(a[0]);
    else if (json_is_object(a[0]))
        len = json_object_size(a[0]);
    else {
        snprintf(e, el, "len of type %s", type_name(a[0]));
        return false;
    }
    *out = json_integer((json_int_t)len);
    return true;
}

BFN(f_index)
{
    json_t *v = a[0];
    for (size_t i = 1; i < n; i++) {
        if (json_is_array(v)) {
            if (!json_is_integer(a[i])) {
                snprintf(e, el, "cannot index slice with %s", type_name(a[i]));
                return false;
            }
            json_int_t k = json_integer_value(a[i]);
            if (k < 0 || (size_t)k >= json_array_size(v)) {
                snprintf(e, el, "index out of range: %" JSON_INTEGER_FORMAT, k);
                return false;
            }
            v = json_array_get(v, (size_t)k);
        } else if (json_is_object(v)) {
            if (!json_is_string(a[i])) {
                snprintf(e, el, "cannot index map with %s", type_name(a[i]));
                return false;
            }
            /* Go: a missing map key gives the zero value. */
            v = json_object_getn(v, json_string_value(a[i]), json_string_length(a[i]));
            if (!v)
                v = json_null();
        } else {
            snprintf(e, el, "can't index item of type %s", type_name(v));
            return false;
        }
    }
    *out = json_incref(v);
    return true;
}

static void bad_verb(struct buf *b, char verb, const json_t *v)
{
    buf_printf(b, "%%!%c(%s=", verb, type_name(v));
    fmt_value(b, v, "<nil>");
    buf_append_char(b, ')');
}

BFN(f_printf)
{
    if (!want_str(a, 0, e, el))
        return false;
    const char *f = json_string_value(a[0]);
    size_t fn = json_string_length(a[0]), ai = 1;
    struct buf b = BUF_INIT, tmp = BUF_INIT;
    for (size_t i = 0; i < fn; i++) {
        if (f[i] != '%' || i + 1 >= fn) {
            buf_append_char(&b, f[i]);
            continue;
        }
        char verb = f[++i];
        if (verb == '%') {
            buf_append_char(&b, '%');
            continue;
        }
        if (ai >= n) {
            buf_printf(&b, "%%!%c(MISSING)", verb);
            continue;
        }
        const json_t *v = a[ai++];
        buf_reset(&tmp);
        switch (verb) {
        case 's':
        case 'v':
            if (!fmt_value(&b, v, "<nil>"))
                bad_verb(&b, verb, json_null());
            break;
        case 'd':
            if (json_is_integer(v))
                buf_printf(&b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            else
                bad_verb(&b, verb, v);
            break;
        case 't':
            if (json_is_boolean(v))
                buf_append_str(&b, json_is_true(v) ? "true" : "false");
            else
                bad_verb(&b, verb, v);
            break;
        case 'q':
            if (json_is_string(v))
                go_quote(&b, json_string_value(v), json_string_length(v));
            else
                bad_verb(&b, verb, v);
            break;
        default:
            bad_verb(&b, verb, v);
        }
        if (too_big(b.len, max_bytes, e, el)) {
            buf_free(&b);
            buf_free(&tmp);
            return false;
        }
    }
    if (ai < n) {
        buf_append_str(&b, "%!(EXTRA ");
        for (; ai < n; ai++) {
            buf_printf(&b, "%s=", type_name(a[ai]));
            fmt_value(&b, a[ai], "<nil>");
            if (ai + 1 < n)
                buf_append_str(&b, ", ");
        }
        buf_append_char(&b, ')');
    }
    buf_free(&tmp);
    if (too_big(b.len, max_bytes, e, el)) {
        buf_free(&b);
        return false;
    }
    *out = str_new(&b);
    return true;
}

static const struct builtin builtins[] = {
    {"and", 1, -1, NULL, 1},
    {"or", 1, -1, NULL, 2},
    {"not", 1, 1, f_not, 0},
    {"eq", 2, -1, f_eq, 0},
    {"ne", 2, 2, f_ne, 0},
    {"lt", 2, 2, f_lt, 0},
    {"le", 2, 2, f_le, 0},
    {"gt", 2, 2, f_gt, 0},
    {"ge", 2, 2, f_ge, 0},
    {"len", 1, 1, f_len, 0},
    {"index", 1, -1, f_index, 0},
    {"printf", 1, -1, f_printf, 0},
    {"getPort", 1, 1, f_getport, 0},
    {"quote", 0, -1, f_quote, 0},
    {"squote", 0, -1, f_squote, 0},
    {"default", 1, -1, f_default, 0},
    {"lower", 1, 1, f_lower, 0},
    {"upper", 1, 1, f_upper, 0},
    {"trunc", 2, 2, f_trunc, 0},
    {"replace", 3, 3, f_replace, 0},
    {"trimSuffix", 2, 2, f_trimsuffix, 0},
    {"toYaml", 1, 1, f_toyaml, 0},
    {"indent", 2, 2, f_indent, 0},
    {"nindent", 2, 2, f_nindent, 0},
};

static const struct builtin *find_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

/* ---- execution ------------------------------------------------------------------- */

struct var {
    const char *name;
    json_t *val; /* owned */
};

struct ex {
    const struct tmpl *t;
    const json_t *root;
    struct buf *out;
    size_t max_bytes, steps_left;
    struct var *vars;
    size_t nvars, capvars;
    struct errinfo *err;
    enum { FLOW_NONE, FLOW_BREAK, FLOW_CONTINUE } flow;
};

static bool xerr(struct ex *x, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool xerr(struct ex *x, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_errv(x->err, x->t->name, x->t->text, x->t->len, off, fmt, ap);
    va_end(ap);
    return false;
}

static void xpush(struct ex *x, const char *name, json_t *val)
{
    if (x->nvars == x->capvars) {
        x->capvars = x->capvars ? x->capvars * 2 : 16;
        x->vars = xrealloc(x->vars, x->capvars * sizeof *x->vars);
    }
    x->vars[x->nvars++] = (struct var){name, val};
}

static void xpop(struct ex *x, size_t mark)
{
    while (x->nvars > mark)
        json_decref(x->vars[--x->nvars].val);
}

static struct var *xlookup(struct ex *x, const char *name)
{
    for (size_t i = x->nvars; i-- > 0;)
        if (strcmp(x->vars[i].name, name) == 0)
            return &x->vars[i];
    return NULL;
}

static bool step(struct ex *x, size_t off)
{
    if (x->steps_left == 0)
        return xerr(x, off, "template too expensive: over the step limit");
    x->steps_left--;
    return true;
}

static json_t *eval_pipeline(struct ex *x, const json_t *dot, const struct pipe *pp, bool declare);

/* Follows a.fields from base (owned reference, consumed). */
static json_t *eval_chain(struct ex *x, json_t *base, const struct arg *a)
{
    for (size_t i = 0; i < a->nfields; i++) {
        const char *f = a->fields[i];
        size_t upto = a->field_offs[i] + 1 + strlen(f) - a->off;
        const char *src = x->t->text + a->off;
        json_t *v = json_is_object(base) ? json_object_get(base, f) : NULL;
        if (!json_is_object(base)) {
            xerr(x, a->field_offs[i], "can't evaluate field %s in type %s (%.*s)", f,
                 type_name(base), (int)(upto > 80 ? 80 : upto), src);
            json_decref(base);
            return NULL;
        }
        if (!v) {
            xerr(x, a->field_offs[i], "unknown variable %.*s", (int)(upto > 80 ? 80 : upto), src);
            json_decref(base);
            return NULL;
        }
        json_incref(v);
        json_decref(base);
        base = v;
    }
    return base;
}

static json_t *call(struct ex *x, const json_t *dot, const struct arg *fa, const struct arg *args,
                    size_t nargs, json_t *final);

static json_t *eval_arg(struct ex *x, const json_t *dot, const struct arg *a)
{
    json_t *v = NULL;
    switch (a->kind) {
    case A_DOT:
        return json_incref((json_t *)dot);
    case A_CONST:
        return json_incref(a->lit);
    case A_FIELD:
        v = json_incref((json_t *)dot);
        break;
    case A_VAR:
        if (strcmp(a->var, "$") == 0) {
            v = json_incref((json_t *)x->root);
        } else {
            struct var *var = xlookup(x, a->var);
            if (!var) {
                xerr(x, a->off, "undefined variable \"%s\"", a->var);
                return NULL;
            }
            v = json_incref(var->val);
        }
        break;
    case A_FUNC:
        v = call(x, dot, a, NULL, 0, NULL);
        break;
    case A_PIPE:
        v = eval_pipeline(x, dot, a->sub, false);
        break;
    }
    if (!v)
        return NULL;
    return eval_chain(x, v, a);
}

static json_t *call(struct ex *x, const json_t *dot, const struct arg *fa, const struct arg *args,
                    size_t nargs, json_t *final)
{
    const struct fref *fr = &fa->fn;
    size_t total = nargs + (final ? 1 : 0);
    if (fr->b && (total < (size_t)fr->b->min || (fr->b->max >= 0 && total > (size_t)fr->b->max))) {
        if (fr->b->max < 0)
            xerr(x, fa->off, "wrong number of args for %s: want at least %d, got %zu", fr->name,
                 fr->b->min, total);
        else if (fr->b->min == fr->b->max)
            xerr(x, fa->off, "wrong number of args for %s: want %d, got %zu", fr->name,
                 fr->b->min, total);
        else
            xerr(x, fa->off, "wrong number of args for %s: want %d to %d, got %zu", fr->name,
                 fr->b->min, fr->b->max, total);
        return NULL;
    }
    if (!step(x, fa->off))
        return NULL;
    if (fr->b && fr->b->lazy) {
        /* and/or: Go evaluates arguments only until the result is known. */
        json_t *v = NULL;
        for (size_t i = 0; i < total; i++) {
            json_decref(v);
            v = i < nargs ? eval_arg(x, dot, &args[i]) : json_incref(final);
            if (!v)
                return NULL;
            if (truth(v) == (fr->b->lazy == 2))
                break;
        }
        return v;
    }
    json_t *stack_args[8];
    json_t **av = total <= 8 ? stack_args : xmalloc(total * sizeof *av);
    size_t got = 0;
    json_t *result = NULL;
    for (; got < nargs; got++) {
        av[got] = eval_arg(x, dot, &args[got]);
        if (!av[got])
            goto done;
    }
    if (final)
        av[got++] = json_incref(final);
    char why[300] = "";
    bool ok = fr->b ? fr->b->fn(x->root, av, total, &result, why, sizeof why, x->max_bytes)
                    : fr->f->fn(av, total, &result, why, sizeof why, fr->f->ctx);
    if (!ok || !result) {
        json_decref(result);
        result = NULL;
        xerr(x, fa->off, "error calling %s: %s", fr->name, why[0] ? why : "failed");
        goto done;
    }
    if (json_is_string(result) && json_string_length(result) > x->max_bytes) {
        json_decref(result);
        result = NULL;
        xerr(x, fa->off, "error calling %s: result exceeds the limit of %zu bytes", fr->name,
             x->max_bytes);
    }
done:
    for (size_t i = 0; i < got; i++)
        json_decref(av[i]);
    if (av != stack_args)
        free(av);
    return result;
}

static json_t *eval_command(struct ex *x, const json_t *dot, const struct cmd *c, json_t *final)
{
    const struct arg *first = &c->args[0];
    if (first->kind == A_FUNC && first->nfields == 0)
        return call(x, dot, first, c->args + 1, c->nargs - 1, final);
    if (c->nargs > 1 || final) {
        const char *src = x->t->text + first->off;
        int len = (int)(first->end - first->off);
        if (first->kind == A_CONST && json_is_null(first->lit))
            xerr(x, first->off, "nil is not a command");
        else
            xerr(x, first->off, "can't give argument to non-function %.*s", len > 80 ? 80 : len,
                 src);
        return NULL;
    }
    if (first->kind == A_CONST && json_is_null(first->lit)) {
        xerr(x, first->off, "nil is not a command");
        return NULL;
    }
    return eval_arg(x, dot, first);
}

static json_t *eval_pipeline(struct ex *x, const json_t *dot, const struct pipe *pp, bool declare)
{
    json_t *v = NULL;
    for (size_t i = 0; i < pp->ncmds; i++) {
        json_t *nv = eval_command(x, dot, &pp->cmds[i], v);
        json_decref(v);
        if (!nv)
            return NULL;
        v = nv;
    }
    if (declare) {
        for (size_t i = 0; i < pp->nvars; i++) {
            if (pp->declare) {
                xpush(x, pp->vars[i], json_incref(v));
            } else {
                struct var *var = xlookup(x, pp->vars[i]);
                if (!var) {
                    xerr(x, pp->off, "undefined variable \"%s\"", pp->vars[i]);
                    json_decref(v);
                    return NULL;
                }
                json_decref(var->val);
                var->val = json_incref(v);
            }
        }
    }
    return v;
}

static bool emit(struct ex *x, size_t off, const char *s, size_t n)
{
    buf_append(x->out, s, n);
    if (x->out->len > x->max_bytes)
        return xerr(x, off, "output exceeds the limit of %zu bytes", x->max_bytes);
    return true;
}

static bool exec_list(struct ex *x, const json_t *dot, const struct node *n);

struct kv {
    const char *key;
    size_t len;
    json_t *val;
};

/* Byte order, as Go sorts string map keys. */
static int cmp_keys(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static bool range_body(struct ex *x, const struct node *n, json_t *key, json_t *val, bool *stop)
{
    size_t mark = x->nvars;
    const struct pipe *pp = n->pipe;
    if (pp->nvars == 1) {
        xpush(x, pp->vars[0], json_incref(val));
    } else if (pp->nvars == 2) {
        xpush(x, pp->vars[0], json_incref(key));
        xpush(x, pp->vars[1], json_incref(val));
    }
    bool ok = step(x, n->off) && exec_list(x, val, n->list);
    xpop(x, mark);
    *stop = x->flow == FLOW_BREAK;
    x->flow = FLOW_NONE;
    return ok;
}

static bool exec_range(struct ex *x, const json_t *dot, const struct node *n)
{
    /* The range's own variables are set per element, not assigned the pipeline. */
    json_t *v = eval_pipeline(x, dot, n->pipe, false);
    if (!v)
        return false;
    bool ok = true, stop = false;
    if (json_is_array(v) && json_array_size(v) > 0) {
        for (size_t i = 0; ok && !stop && i < json_array_size(v); i++) {
            json_t *k = json_integer((json_int_t)i);
            ok = range_body(x, n, k, json_array_get(v, i), &stop);
            json_decref(k);
        }
    } else if (json_is_object(v) && json_object_size(v) > 0) {
        size_t cnt = json_object_size(v), i = 0;
        struct kv *keys = xmalloc(cnt * sizeof *keys);
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach(v, key, key_len, val)
        {
            keys[i++] = (struct kv){key, key_len, val};
        }
        qsort(keys, cnt, sizeof *keys, cmp_keys);
        for (i = 0; ok && !stop && i < cnt; i++) {
            json_t *k = json_stringn_nocheck(keys[i].key, keys[i].len);
            ok = range_body(x, n, k, keys[i].val, &stop);
            json_decref(k);
        }
        free(keys);
    } else if (json_is_array(v) || json_is_object(v) || json_is_null(v)) {
        ok = exec_list(x, dot, n->else_list);
    } else {
        ok = xerr(x, n->pipe->off, "range can't iterate over %s", type_name(v));
    }
    json_decref(v);
    return ok;
}

static bool exec_list(struct ex *x, const json_t *dot, const struct node *n)
{
    for (; n; n = n->next) {
        if (!step(x, n->off))
            return false;
        switch (n->kind) {
        case N_TEXT:
            if (!emit(x, n->off, n->text, n->len))
                return false;
            break;
        case N_ACTION: {
            json_t *v = eval_pipeline(x, dot, n->pipe, true);
            if (!v)
                return false;
            bool ok = true;
            if (n->pipe->nvars == 0) {
                if (!fmt_value(x->out, v, ""))
                    ok = xerr(x, n->off, "value cannot be printed (not UTF-8)");
                else if (x->out->len > x->max_bytes)
                    ok = xerr(x, n->off, "output exceeds the limit of %zu bytes", x->max_bytes);
            }
            json_decref(v);
            if (!ok)
                return false;
            break;
        }
        case N_IF:
        case N_WITH: {
            size_t mark = x->nvars;
            json_t *v = eval_pipeline(x, dot, n->pipe, true);
            if (!v)
                return false;
            bool ok;
            if (truth(v))
                ok = exec_list(x, n->kind == N_WITH ? v : dot, n->list);
            else
                ok = exec_list(x, dot, n->else_list);
            xpop(x, mark);
            json_decref(v);
            if (!ok)
                return false;
            break;
        }
        case N_RANGE: {
            size_t mark = x->nvars;
            bool ok = exec_range(x, dot, n);
            xpop(x, mark);
            if (!ok)
                return false;
            break;
        }
        case N_BREAK:
            x->flow = FLOW_BREAK;
            return true;
        case N_CONTINUE:
            x->flow = FLOW_CONTINUE;
            return true;
        }
        if (x->flow != FLOW_NONE)
            return true;
    }
    return true;
}

bool tmpl_exec(const struct tmpl *t, const json_t *data, const struct tmpl_limits *limits,
               struct buf *out, struct errinfo *err)
{
    struct ex x = {
        .t = t,
        .root = data ? data : json_null(),
        .out = out,
        .max_bytes = limits && limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES,
        .steps_left = limits && limits->max_steps ? limits->max_steps : DEFAULT_MAX_STEPS,
        .err = err,
    };
    size_t start = out->len;
    bool ok = exec_list(&x, x.root, t->root);
    xpop(&x, 0);
    free(x.vars);
    if (!ok) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return ok;
}

bool tmpl_render(const char *text, size_t len, const char *name, const json_t *data,
                 const struct tmpl_func *funcs, size_t nfuncs, struct buf *out,
                 struct errinfo *err)
{
    struct tmpl *t = tmpl_parse(text, len, name, funcs, nfuncs, err);
    if (!t)
        return false;
    bool ok = tmpl_exec(t, data, NULL, out, err);
    tmpl_free(t);
    return ok;
}

/* The CEL subset request-attribute-reporter's expressions use: one variable, `usage`
 * (the response's OpenAI usage object), field selection (`usage.prompt_tokens_details.
 * cached_tokens`), `has(usage.x)`, number / bool / null / string literals, arithmetic
 * (+ - * / %, unary -), comparisons, `!`, `&&`, `||`, `c ? a : b`, `int(x)`, `double(x)`
 * and parentheses. Compiled once at config load (errors name the column), evaluated per
 * response over a jansson object. Numbers are doubles (usage arrives as a
 * google.protobuf.Struct in llm-d, whose numbers are doubles). Anything outside the subset
 * is a compile error, never a silently different result.
 *
 * Ownership: a compiled expression owns its node tree (sched_cel_free). Evaluation
 * allocates nothing. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sched/sched_internal.h"

enum cel_op {
    C_NUM, C_BOOL, C_NULL, C_STR, C_USAGE, C_SELECT, C_HAS, C_NOT, C_NEG, C_ADD, C_SUB,
    C_MUL, C_DIV, C_MOD, C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_AND, C_OR, C_COND, C_INT,
    C_DOUBLE,
};

struct cel_node {
    enum cel_op op;
    double num;
    char *str; /* C_STR literal, C_SELECT field */
    struct cel_node *a, *b, *c;
};

struct sched_cel {
    struct cel_node *root;
};

#define CEL_MAX_DEPTH 64
#define CEL_MAX_LEN 4096

struct cparse {
    const char *src, *p;
    int depth;
    char *err;
    size_t cap;
    bool failed;
};

static void node_free(struct cel_node *n)
{
    if (!n)
        return;
    node_free(n->a);
    node_free(n->b);
    node_free(n->c);
    free(n->str);
    free(n);
}

static struct cel_node *node(enum cel_op op, struct cel_node *a, struct cel_node *b)
{
    struct cel_node *n = xcalloc(1, sizeof *n);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static struct cel_node *perr(struct cparse *P, const char *what)
{
    if (!P->failed)
        snprintf(P->err, P->cap, "column %d: %s", (int)(P->p - P->src) + 1, what);
    P->failed = true;
    return NULL;
}

static void skip_ws(struct cparse *P)
{
    while (*P->p && isspace((unsigned char)*P->p))
        P->p++;
}

static bool eat(struct cparse *P, const char *tok)
{
    skip_ws(P);
    size_t n = strlen(tok);
    if (strncmp(P->p, tok, n) != 0)
        return false;
    P->p += n;
    return true;
}

static bool is_ident_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

static size_t ident_len(const char *p)
{
    if (!isalpha((unsigned char)*p) && *p != '_')
        return 0;
    size_t n = 1;
    while (is_ident_char(p[n]))
        n++;
    return n;
}

static struct cel_node *parse_expr(struct cparse *P);

/* usage(.field)* */
static struct cel_node *parse_select_chain(struct cparse *P, struct cel_node *base)
{
    for (;;) {
        skip_ws(P);
        if (*P->p != '.')
            return base;
        P->p++;
        skip_ws(P);
        size_t n = ident_len(P->p);
        if (!n) {
            node_free(base);
            return perr(P, "expected a field name after '.'");
        }
        struct cel_node *s = node(C_SELECT, base, NULL);
        s->str = xstrndup(P->p, n);
        P->p += n;
        base = s;
    }
}

static struct cel_node *parse_primary(struct cparse *P)
{
    skip_ws(P);
    const char *p = P->p;
    if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v))
            return perr(P, "bad number");
        P->p = end;
        if (*P->p == 'u' || *P->p == 'U') /* CEL's unsigned suffix */
            P->p++;
        struct cel_node *n = node(C_NUM, NULL, NULL);
        n->num = v;
        return n;
    }
    if (*p == '"' || *p == '\'') {
        char q = *p++;
        const char *s = p;
        while (*p && *p != q && *p != '\\')
            p++;
        if (*p != q)
            return perr(P, "unterminated string (escapes are not supported)");
        struct cel_node *n = node(C_STR, NULL, NULL);
        n->str = xstrndup(s, (size_t)(p - s));
        P->p = p + 1;
        return n;
    }
    if (*p == '(') {
        P->p++;
        struct cel_node *e = parse_expr(P);
        if (!e)
            return NULL;
        if (!eat(P, ")")) {
            node_free(e);
            return perr(P, "expected ')'");
        }
        return e;
    }
    size_t n = ident_len(p);
    if (!n)
        return perr(P, *p ? "unexpected character" : "unexpected end of expression");
    P->p += n;
    if (n == 4 && !strncmp(p, "true", 4)) {
        struct cel_node *b = node(C_BOOL, NULL, NULL);
        b->num = 1;
        return b;
    }
    if (n == 5 && !strncmp(p, "false", 5))
        return node(C_BOOL, NULL, NULL);
    if (n == 4 && !strncmp(p, "null", 4))
        return node(C_NULL, NULL, NULL);
    if (n == 5 && !strncmp(p, "usage", 5))
        return parse_select_chain(P, node(C_USAGE, NULL, NULL));
    enum cel_op fn = (n == 3 && !strncmp(p, "has", 3))      ? C_HAS
                     : (n == 3 && !strncmp(p, "int", 3))    ? C_INT
                     : (n == 6 && !strncmp(p, "double", 6)) ? C_DOUBLE
                                                            : C_NULL;
    if (fn == C_NULL) {
        P->p = p;
        return perr(P, "unknown name (only `usage`, has(), int(), double() are supported)");
    }
    if (!eat(P, "("))
        return perr(P, "expected '('");
    struct cel_node *arg = parse_expr(P);
    if (!arg)
        return NULL;
    if (!eat(P, ")")) {
        node_free(arg);
        return perr(P, "expected ')'");
    }
    if (fn == C_HAS && arg->op != C_SELECT) {
        node_free(arg);
        return perr(P, "has() takes a field selection such as usage.completion_tokens");
    }
    return node(fn, arg, NULL);
}

static struct cel_node *parse_unary(struct cparse *P)
{
    if (++P->depth > CEL_MAX_DEPTH)
        return perr(P, "expression nested too deeply");
    struct cel_node *r;
    skip_ws(P);
    if (*P->p == '!' && P->p[1] != '=') {
        P->p++;
        struct cel_node *a = parse_unary(P);
        r = a ? node(C_NOT, a, NULL) : NULL;
    } else if (*P->p == '-') {
        P->p++;
        struct cel_node *a = parse_unary(P);
        r = a ? node(C_NEG, a, NULL) : NULL;
    } else {
        r = parse_primary(P);
    }
    P->depth--;
    return r;
}

static struct cel_node *parse_mul(struct cparse *P)
{
    struct cel_node *l = parse_unary(P);
    while (l) {
        skip_ws(P);
        enum cel_op op = *P->p == '*' ? C_MUL : *P->p == '/' ? C_DIV : *P->p == '%' ? C_MOD : C_NULL;
        if (op == C_NULL)
            break;
        P->p++;
        struct cel_node *r = parse_unary(P);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = node(op, l, r);
    }
    return l;
}

static struct cel_node *parse_add(struct cparse *P)
{
    struct cel_node *l = parse_mul(P);
    while (l) {
        skip_ws(P);
        enum cel_op op = *P->p == '+' ? C_ADD : *P->p == '-' ? C_SUB : C_NULL;
        if (op == C_NULL)
            break;
        P->p++;
        struct cel_node *r = parse_mul(P);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = node(op, l, r);
    }
    return l;
}

static struct cel_node *parse_rel(struct cparse *P)
{
    struct cel_node *l = parse_add(P);
    if (!l)
        return NULL;
    static const struct {
        const char *tok;
        enum cel_op op;
    } ops[] = {{"==", C_EQ}, {"!=", C_NE}, {"<=", C_LE}, {">=", C_GE}, {"<", C_LT}, {">", C_GT}};
    skip_ws(P);
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (!strncmp(P->p, ops[i].tok, strlen(ops[i].tok))) {
            P->p += strlen(ops[i].tok);
            struct cel_node *r = parse_add(P);
            if (!r) {
                node_free(l);
                return NULL;
            }
            return node(ops[i].op, l, r);
        }
    return l;
}

static struct cel_node *parse_and(struct cparse *P)
{
    struct cel_node *l = parse_rel(P);
    while (l && eat(P, "&&")) {
        struct cel_node *r = parse_rel(P);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = node(C_AND, l, r);
    }
    return l;
}

static struct cel_node *parse_or(struct cparse *P)
{
    struct cel_node *l = parse_and(P);
    while (l && eat(P, "||")) {
        struct cel_node *r = parse_and(P);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = node(C_OR, l, r);
    }
    return l;
}

static struct cel_node *parse_expr(struct cparse *P)
{
    if (++P->depth > CEL_MAX_DEPTH)
        return perr(P, "expression nested too deeply");
    struct cel_node *c = parse_or(P);
    if (c && eat(P, "?")) {
        struct cel_node *a = parse_expr(P), *b = NULL;
        if (a && !eat(P, ":")) {
            node_free(a);
            a = NULL;
            perr(P, "expected ':'");
        }
        if (a)
            b = parse_expr(P);
        if (!a || !b) {
            node_free(a);
            node_free(c);
            P->depth--;
            return NULL;
        }
        struct cel_node *n = node(C_COND, a, b);
        n->c = c;
        c = n;
    }
    P->depth--;
    return c;
}

struct sched_cel *sched_cel_compile(const char *src, char *err, size_t cap)
{
    if (strlen(src) > CEL_MAX_LEN) {
        snprintf(err, cap, "longer than %d characters", CEL_MAX_LEN);
        return NULL;
    }
    struct cparse P = {src, src, 0, err, cap, false};
    struct cel_node *root = parse_expr(&P);
    if (root) {
        skip_ws(&P);
        if (*P.p) {
            node_free(root);
            root = perr(&P, "unexpected text after the expression");
        }
    }
    if (!root) {
        if (!P.failed)
            snprintf(err, cap, "invalid expression");
        return NULL;
    }
    struct sched_cel *e = xmalloc(sizeof *e);
    e->root = root;
    return e;
}

void sched_cel_free(struct sched_cel *e)
{
    if (!e)
        return;
    node_free(e->root);
    free(e);
}

/* --- evaluation --------------------------------------------------------------------------- */

enum vkind { V_ERR, V_NULL, V_BOOL, V_NUM, V_STR, V_OBJ, V_OTHER };

struct val {
    enum vkind k;
    double num;
    const char *str;
    const json_t *obj;
};

static struct val from_json(const json_t *j)
{
    struct val v = {V_OTHER, 0, NULL, j};
    if (!j)
        v.k = V_ERR;
    else if (json_is_null(j))
        v.k = V_NULL;
    else if (json_is_boolean(j))
        v.k = V_BOOL, v.num = json_is_true(j);
    else if (json_is_number(j))
        v.k = V_NUM, v.num = json_number_value(j);
    else if (json_is_string(j))
        v.k = V_STR, v.str = json_string_value(j);
    else if (json_is_object(j))
        v.k = V_OBJ;
    return v;
}

static const struct val verr = {V_ERR, 0, NULL, NULL};

static struct val num(double d)
{
    return (struct val){V_NUM, d, NULL, NULL};
}

static struct val boolean(bool b)
{
    return (struct val){V_BOOL, b, NULL, NULL};
}

static struct val eval(const struct cel_node *n, const json_t *usage)
{
    struct val a, b;
    switch (n->op) {
    case C_NUM: return num(n->num);
    case C_BOOL: return boolean(n->num != 0);
    case C_NULL: return (struct val){V_NULL, 0, NULL, NULL};
    case C_STR: return (struct val){V_STR, 0, n->str, NULL};
    case C_USAGE: return usage ? from_json(usage) : verr;
    case C_SELECT:
        a = eval(n->a, usage);
        if (a.k != V_OBJ)
            return verr; /* no such key / not a map */
        return from_json(json_object_get(a.obj, n->str));
    case C_HAS:
        a = eval(n->a->a, usage);
        if (a.k != V_OBJ)
            return verr;
        return boolean(json_object_get(a.obj, n->a->str) != NULL);
    case C_NOT:
        a = eval(n->a, usage);
        return a.k == V_BOOL ? boolean(a.num == 0) : verr;
    case C_NEG:
        a = eval(n->a, usage);
        return a.k == V_NUM ? num(-a.num) : verr;
    case C_INT:
        a = eval(n->a, usage);
        return a.k == V_NUM && fabs(a.num) < 9.2e18 ? num(trunc(a.num)) : verr;
    case C_DOUBLE:
        a = eval(n->a, usage);
        return a.k == V_NUM ? a : verr;
    case C_AND:
    case C_OR: {
        bool is_and = n->op == C_AND;
        a = eval(n->a, usage);
        if (a.k == V_BOOL && (a.num != 0) != is_and)
            return a; /* false && _, true || _ */
        b = eval(n->b, usage);
        if (b.k == V_BOOL && (b.num != 0) != is_and)
            return b; /* CEL absorbs the other side's error here */
        if (a.k != V_BOOL || b.k != V_BOOL)
            return verr;
        return boolean(is_and);
    }
    case C_COND:
        a = eval(n->c, usage);
        if (a.k != V_BOOL)
            return verr;
        return eval(a.num != 0 ? n->a : n->b, usage);
    default:
        break;
    }
    a = eval(n->a, usage);
    b = eval(n->b, usage);
    if (a.k == V_ERR || b.k == V_ERR)
        return verr;
    if (n->op == C_EQ || n->op == C_NE) {
        bool eq;
        if (a.k != b.k)
            eq = false;
        else if (a.k == V_STR)
            eq = strcmp(a.str, b.str) == 0;
        else if (a.k == V_NUM || a.k == V_BOOL || a.k == V_NULL)
            eq = a.num == b.num;
        else
            return verr;
        return boolean(n->op == C_EQ ? eq : !eq);
    }
    if (a.k != V_NUM || b.k != V_NUM)
        return verr;
    switch (n->op) {
    case C_ADD: return num(a.num + b.num);
    case C_SUB: return num(a.num - b.num);
    case C_MUL: return num(a.num * b.num);
    case C_DIV: return b.num == 0 ? verr : num(a.num / b.num);
    case C_MOD: return b.num == 0 ? verr : num(fmod(a.num, b.num));
    case C_LT: return boolean(a.num < b.num);
    case C_LE: return boolean(a.num <= b.num);
    case C_GT: return boolean(a.num > b.num);
    case C_GE: return boolean(a.num >= b.num);
    default: return verr;
    }
}

int sched_cel_eval(const struct sched_cel *e, const json_t *usage, double *out)
{
    struct val v = eval(e->root, usage);
    switch (v.k) {
    case V_NUM: *out = v.num; return SCHED_CEL_NUM;
    case V_BOOL: *out = v.num; return SCHED_CEL_BOOL;
    case V_ERR: return SCHED_CEL_ERROR;
    default: return SCHED_CEL_OTHER;
    }
}

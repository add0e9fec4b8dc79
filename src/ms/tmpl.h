/* Go text/template, the subset llm-d BaseConfig templates use, over jansson data.
 *
 * Syntax: text and {{ actions }} with {{- / -}} trimming and comment actions
 * ({{ slash-star ... star-slash }});
 * pipelines `arg | fn a b`; operands .Field, .A.B, ., $, $var, $var.Field, "strings"
 * (Go escapes), `raw strings`, 'c' (a rune, as an integer), numbers, true, false, nil,
 * (parenthesized pipelines) with optional .Field chains; {{$x := p}}, {{$x = p}};
 * if / else if / else with / else range / else / end (range $i, $v := p), break,
 * continue. Not supported: define, template, block, methods, range over integers.
 *
 * Semantics (Go's, with Option("missingkey=error")):
 * - The data is the initial dot and $. A field of an object that has no such key is an
 *   error "unknown variable .A.B" at the field; a field of a non-object is an error.
 * - Printing: strings raw; integers in decimal; reals as Go's %v (shortest, 1e+06);
 *   true/false; nil prints nothing; arrays and objects print as compact JSON.
 * - Truth: false, 0, 0.0, nil, "" and empty arrays/objects are false.
 * - range over an object visits keys in byte order (Go sorts map keys); over nil runs
 *   the else branch; over anything else but an array it is an error.
 * - Functions: Go's eq ne lt le gt ge and or not len index printf; sprig's quote squote
 *   default lower upper trunc replace trimSuffix toYaml indent nindent; and getPort,
 *   which by default looks the name up in the root data's "Ports" object (name -> port).
 *   Caller functions (tmpl_parse's funcs) replace built-ins of the same name.
 * Every error message is "NAME:LINE:COL: why", LINE:COL (1-based, columns in
 * characters) the place in the template text; err->line/column repeat them. */
#ifndef TANDEM_MS_TMPL_H
#define TANDEM_MS_TMPL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/err.h"


/* A function callable from templates. args are borrowed (never NULL: nil is json null)
 * and live for the call; on success set *out to a new reference and return true; on
 * failure write a one-line reason into err (errlen bytes) and return false. The engine
 * checks no arity for these: the function does. */
typedef bool (*tmpl_fn)(json_t *const *args, size_t n, json_t **out, char *err, size_t errlen,
                        void *ctx);

struct tmpl_func {
    const char *name;
    tmpl_fn fn;
    void *ctx; /* passed to fn as is */
};

struct tmpl;

/* Parses a template. name prefixes error messages ("baseconfig.yaml: data.decodeDeployment").
 * funcs (nfuncs entries, may be NULL) are the caller's functions; the table and what its
 * entries point to are borrowed and must outlive the template. Calls to functions that are
 * neither built in nor in funcs, undefined $variables, unbalanced if/range/with/end and
 * bad syntax are errors here. Returns a template owned by the caller (tmpl_free), or NULL
 * with err filled. text need not be NUL-terminated; it is copied. */
struct tmpl *tmpl_parse(const char *text, size_t len, const char *name,
                        const struct tmpl_func *funcs, size_t nfuncs, struct errinfo *err);

struct tmpl_limits {
    size_t max_bytes; /* output, and any one string made while executing; 0: 64 MiB */
    size_t max_steps; /* actions and range iterations executed; 0: 10 million */
};

/* Executes t with data (borrowed; usually an object) as dot and $, appending the output
 * to out. limits may be NULL (defaults). On failure returns false with err filled, and out
 * is truncated back to its length on entry. t is not changed: one template may be
 * executed many times, from several threads at once. */
bool tmpl_exec(const struct tmpl *t, const json_t *data, const struct tmpl_limits *limits,
               struct buf *out, struct errinfo *err);

void tmpl_free(struct tmpl *t);

/* Parse and execute in one call, for templates used once. */
bool tmpl_render(const char *text, size_t len, const char *name, const json_t *data,
                 const struct tmpl_func *funcs, size_t nfuncs, struct buf *out,
                 struct errinfo *err);

#endif

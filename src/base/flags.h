/* Command-line flags from a table: "--name value", "--name=value", boolean "--name",
 * multi-valued "--name a b c", with generated --help text. Errors name the flag and the bad value. */
#ifndef TANDEM_BASE_FLAGS_H
#define TANDEM_BASE_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum flag_type {
    FLAG_BOOL,         /* bool*: "--x" sets true; "--x=false" / "--no-x" sets false */
    FLAG_INT,          /* long long* */
    FLAG_DOUBLE,       /* double* */
    FLAG_STRING,       /* const char** (points into argv) */
    FLAG_FUNC,         /* fn(value, target) parses the value itself */
    FLAG_IGNORE,       /* accepted, ignored, no value (noted at start-up) */
    FLAG_IGNORE_VALUE, /* accepted, ignored, takes a value */
    FLAG_FUNC_MULTI,   /* like FLAG_FUNC, once per value: "--x a b c" takes every argument
                          up to the next one starting with '-' (zero or more, clap's
                          num_args = 0..); "--x=a" takes one */
    FLAG_IGNORE_MULTI, /* accepted, ignored, zero or more values like FLAG_FUNC_MULTI */
};

struct flag {
    const char *name;  /* "--port" */
    const char *alias; /* "-p" or NULL */
    enum flag_type type;
    void *target;
    const char *metavar; /* shown in help, e.g. "N" */
    const char *help;    /* NULL hides the flag from --help (ignored vLLM flags) */
    /* FLAG_FUNC: returns false and writes why into err. */
    bool (*fn)(const char *value, void *target, char *err, size_t errlen);
};

struct flags_result {
    const char *positional[8]; /* non-flag arguments, in order */
    size_t n_positional;
    const char *ignored[32]; /* names of FLAG_IGNORE* flags seen */
    size_t n_ignored;
    bool help; /* --help or -h was given */
};

/* Parses argv[0..argc) (argv[0] is NOT skipped: pass argv+1). Returns true or false with
 * err like "--port: 'abc' is not an integer". */
bool flags_parse(const struct flag *flags, size_t n, int argc, char **argv,
                 struct flags_result *res, char *err, size_t errlen);
/* Looks up the value of one flag without parsing the rest (for --profile, which must be
 * applied before the other flags override it). Returns NULL if absent. */
const char *flags_peek(int argc, char **argv, const char *name);
void flags_print_help(FILE *out, const char *usage, const char *description,
                      const struct flag *flags, size_t n);

#endif

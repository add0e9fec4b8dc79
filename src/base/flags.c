/* Table-driven flag parsing. Flags are matched by exact name; a value is the next
 * argument or the text after '='. Nothing is allocated: strings point into argv. */
#include "base/flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct flag *find(const struct flag *flags, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        const char *cands[2] = {flags[i].name, flags[i].alias};
        for (int k = 0; k < 2; k++) {
            if (cands[k] && strlen(cands[k]) == len && strncmp(cands[k], name, len) == 0)
                return &flags[i];
        }
    }
    return NULL;
}

static bool parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) {
        *out = true;
        return true;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) {
        *out = false;
        return true;
    }
    return false;
}

static bool set_value(const struct flag *f, const char *v, char *err, size_t errlen)
{
    char *end;
    switch (f->type) {
    case FLAG_BOOL:
        if (!parse_bool(v, f->target)) {
            snprintf(err, errlen, "%s: '%s' is not true or false", f->name, v);
            return false;
        }
        return true;
    case FLAG_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            snprintf(err, errlen, "%s: '%s' is not an integer", f->name, v);
            return false;
        }
        *(long long *)f->target = x;
        return true;
    }
    case FLAG_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end) {
            snprintf(err, errlen, "%s: '%s' is not a number", f->name, v);
            return false;
        }
        *(double *)f->target = x;
        return true;
    }
    case FLAG_STRING:
        *(const char **)f->target = v;
        return true;
    case FLAG_FUNC:
    case FLAG_FUNC_MULTI: {
        char why[256] = "";
        if (!f->fn(v, f->target, why, sizeof why)) {
            snprintf(err, errlen, "%s: %s", f->name, why);
            return false;
        }
        return true;
    }
    case FLAG_IGNORE:
    case FLAG_IGNORE_VALUE:
    case FLAG_IGNORE_MULTI:
        return true;
    }
    return false;
}

bool flags_parse(const struct flag *flags, size_t n, int argc, char **argv,
                 struct flags_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            res->help = true;
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (res->n_positional == sizeof res->positional / sizeof *res->positional) {
                snprintf(err, errlen, "too many arguments at '%s'", a);
                return false;
            }
            res->positional[res->n_positional++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const struct flag *f = find(flags, n, a, name_len);
        bool negated = false;
        if (!f && name_len > 5 && strncmp(a, "--no-", 5) == 0) {
            /* --no-x for boolean --x */
            char pos[128];
            snprintf(pos, sizeof pos, "--%.*s", (int)(name_len - 5), a + 5);
            f = find(flags, n, pos, strlen(pos));
            if (f && f->type != FLAG_BOOL && f->type != FLAG_IGNORE)
                f = NULL;
            negated = f != NULL;
        }
        if (!f) {
            snprintf(err, errlen, "unknown flag '%.*s' (see --help)", (int)name_len, a);
            return false;
        }
        if (f->type == FLAG_IGNORE || f->type == FLAG_IGNORE_VALUE ||
            f->type == FLAG_IGNORE_MULTI) {
            if (res->n_ignored < sizeof res->ignored / sizeof *res->ignored)
                res->ignored[res->n_ignored++] = f->name;
        }
        if (f->type == FLAG_BOOL || f->type == FLAG_IGNORE) {
            if (eq) {
                if (!set_value(f, eq + 1, err, errlen))
                    return false;
            } else if (f->type == FLAG_BOOL) {
                *(bool *)f->target = !negated;
            }
            continue;
        }
        if ((f->type == FLAG_FUNC_MULTI || f->type == FLAG_IGNORE_MULTI) && !eq) {
            /* Every following argument that is not a flag is a value. */
            while (i + 1 < argc && (argv[i + 1][0] != '-' || argv[i + 1][1] == '\0')) {
                if (!set_value(f, argv[++i], err, errlen))
                    return false;
            }
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", f->name);
                return false;
            }
            v = argv[++i];
        }
        if (!set_value(f, v, err, errlen))
            return false;
    }
    return true;
}

const char *flags_peek(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], name, len) != 0)
            continue;
        if (argv[i][len] == '=')
            return argv[i] + len + 1;
        if (argv[i][len] == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

void flags_print_help(FILE *out, const char *usage, const char *description,
                      const struct flag *flags, size_t n)
{
    fprintf(out, "usage: %s\n\n%s\n\nflags:\n", usage, description);
    for (size_t i = 0; i < n; i++) {
        const struct flag *f = &flags[i];
        if (!f->help)
            continue;
        char left[96];
        snprintf(left, sizeof left, "%s%s%s%s%s", f->alias ? f->alias : "", f->alias ? ", " : "",
                 f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "");
        if (strlen(left) > 30)
            fprintf(out, "  %s\n  %-30s  %s\n", left, "", f->help);
        else
            fprintf(out, "  %-30s  %s\n", left, f->help);
    }
    fprintf(out, "  %-30s  %s\n", "-h, --help", "show this help");
}

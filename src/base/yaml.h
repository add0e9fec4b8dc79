/* YAML loading on libfyaml. Documents are converted to jansson values so configuration
 * code handles JSON and YAML alike; positions are kept so errors can name the line. */
#ifndef TANDEM_BASE_YAML_H
#define TANDEM_BASE_YAML_H

#include <stddef.h>

#include <jansson.h>

struct yaml_err {
    char msg[512]; /* "FILE:LINE:COL: why" */
    int line;      /* 1-based, 0 if unknown */
    int column;
};

/* Loads the first document of a YAML (or JSON) text as a jansson value; scalars become
 * strings unless they are plain ints, floats, true/false or null. name is used in error
 * messages (a file path or "<config-text>"). Returns a new reference or NULL with err. */
json_t *yaml_parse(const char *text, size_t len, const char *name, struct yaml_err *err);
json_t *yaml_load_file(const char *path, struct yaml_err *err);
/* Loads every document of a multi-document stream into a JSON array. */
json_t *yaml_parse_all(const char *text, size_t len, const char *name, struct yaml_err *err);

#endif

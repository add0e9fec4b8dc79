/* YAML loading on libfyaml. Documents are converted to jansson values so configuration
 * code handles JSON and YAML alike; positions are kept so errors can name the line. */
#ifndef TANDEM_BASE_YAML_H
#define TANDEM_BASE_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include "base/err.h"


/* Loads the first document of a YAML (or JSON) text as a jansson value; scalars become
 * strings unless they are plain ints, floats, true/false or null. name is used in error
 * messages (a file path or "<config-text>"). Returns a new reference or NULL with err. */
json_t *yaml_parse(const char *text, size_t len, const char *name, struct errinfo *err);
json_t *yaml_load_file(const char *path, struct errinfo *err);
/* Loads every document of a multi-document stream into a JSON array. */
json_t *yaml_parse_all(const char *text, size_t len, const char *name, struct errinfo *err);

/* Source positions: the same as yaml_parse, plus a table mapping every value node of the
 * result to where it starts in the text, so configuration errors can name the line of
 * the offending field. The table holds borrowed json_t pointers: keep the value alive
 * while using it, free the table first or after, either way. */
struct yaml_positions;
json_t *yaml_parse_pos(const char *text, size_t len, const char *name, struct yaml_positions **pos,
                       struct errinfo *err);
/* true with 1-based line/column when node (any value inside the result) is known. */
bool yaml_position(const struct yaml_positions *pos, const json_t *node, int *line, int *column);
void yaml_positions_free(struct yaml_positions *pos);

#endif

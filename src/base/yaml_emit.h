/* Block-style YAML output of jansson values: the inverse of base/yaml.h's yaml_parse.
 * Whatever is emitted parses back (yaml_parse) to a value json_equal to the input, and
 * reads the same under YAML 1.1 parsers (kubectl, go-yaml): strings that a 1.1 or 1.2
 * parser could take for another type are quoted. */
#ifndef TANDEM_BASE_YAML_EMIT_H
#define TANDEM_BASE_YAML_EMIT_H

#include <jansson.h>

#include "base/buf.h"

/* Appends v (borrowed) to out as block YAML. Every line, including the last, ends in
 * '\n' and starts with indent spaces (indent >= 0). Objects keep their insertion order;
 * nested collections are indented by 2; arrays of objects use the Kubernetes "- key: v"
 * form; empty collections print as {} and []. A NULL v prints as null. */
void yaml_emit(struct buf *out, const json_t *v, int indent);

/* Appends "---\n" then v at indent 0: one document of a multi-document stream. */
void yaml_emit_doc(struct buf *out, const json_t *v);

/* Appends s[0..n) as a YAML scalar: plain when that reads back as the same string,
 * double-quoted with escapes otherwise. Exposed for callers writing YAML by hand. */
void yaml_emit_string(struct buf *out, const char *s, size_t n);

#endif

/* Structured output for the sim: a deterministic JSON generator driven by a JSON Schema.
 * The sim has no model, so where vLLM would constrain sampling with a grammar, the sim
 * writes a JSON text that conforms to the schema outright; the text is then tokenized
 * and emitted like any other output.
 *
 * Supported: type (single or list), properties, required, additionalProperties,
 * minProperties/maxProperties, enum, const, items, prefixItems (and the older tuple form
 * items: [...] with additionalItems), minItems/maxItems, uniqueItems,
 * minLength/maxLength, pattern (a regular-expression subset: literals, escapes, classes,
 * groups, alternation, quantifiers), format (date, date-time, time, email, uuid, uri,
 * ipv4, hostname), minimum/maximum/exclusiveMinimum/exclusiveMaximum (numbers and the
 * draft-4 booleans), multipleOf, anyOf/oneOf (one branch picked), allOf (merged), $ref
 * to local JSON pointers (#, #/$defs/..., #/definitions/...). Annotations (title,
 * description, default, examples, ...) are ignored.
 * Refused with an error: not, if/then/else, patternProperties, propertyNames,
 * contains, dependencies, dependentSchemas, dependentRequired, unevaluated*, remote
 * $refs, and pattern constructs outside the subset (lookaround, backreferences).
 *
 * Ownership: the generator borrows the schema for the call only; it appends to the
 * caller's buffer and allocates nothing that outlives the call. */
#ifndef TANDEM_SIM_STRUCTURED_H
#define TANDEM_SIM_STRUCTURED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"

/* Nesting levels of schema walked for one value (recursive $refs included): past
 * SIM_STRUCT_SOFT_DEPTH the generator takes the smallest instance it can (no optional
 * properties, minItems items), past SIM_STRUCT_MAX_DEPTH it gives up with an error. */
#define SIM_STRUCT_SOFT_DEPTH 8
#define SIM_STRUCT_MAX_DEPTH 48
/* The longest JSON text generated; larger instances are an error. */
#define SIM_STRUCT_MAX_BYTES (256 * 1024)

/* Appends a compact JSON text that conforms to schema to out. schema NULL means "any
 * JSON object" (response_format json_object): a small generic object. The same schema
 * and seed always give the same text. Returns true on success; false with a
 * NUL-terminated message in err (at most err_len bytes, vLLM-like: "The provided JSON
 * schema contains features not supported ..." or "Failed to transform json schema into
 * a grammar: ...") for an invalid or unsupported schema. On failure out's length is
 * restored to what it was. */
bool sim_structured_generate(const json_t *schema, uint64_t seed, struct buf *out, char *err,
                             size_t err_len);

#endif

/* The shape of a sim answer beyond plain text: structured output (response_format,
 * guided_json / guided_choice, structured_outputs) and tool calls (tools, tool_choice),
 * as vLLM's OpenAI server takes them.
 *
 * Ownership: everything a sim_shape points at is borrowed from the request's parsed
 * body (r->oreq.root) or allocated from the request arena, so it lives as long as the
 * request. */
#ifndef TANDEM_SIM_TOOLS_H
#define TANDEM_SIM_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "openai/openai.h"

struct sim_req;
struct sim_choice;

enum sim_tool_choice {
    SIM_TOOL_NONE,     /* no tools, or tool_choice "none" */
    SIM_TOOL_AUTO,     /* the sim decides (needs --enable-auto-tool-choice) */
    SIM_TOOL_REQUIRED, /* always a tool call */
    SIM_TOOL_NAMED,    /* always a call of one given function */
};

enum sim_text_kind {
    SIM_TEXT_PLAIN,  /* random words or echo: output.c's own text */
    SIM_TEXT_JSON,   /* JSON conforming to schema (NULL: any object) */
    SIM_TEXT_CHOICE, /* one of choices (guided_choice) */
};

struct sim_shape {
    enum sim_text_kind text;
    const json_t *schema;  /* SIM_TEXT_JSON; NULL = json_object */
    const json_t *choices; /* SIM_TEXT_CHOICE: non-empty list of strings */
    enum sim_tool_choice tool_choice;
    const json_t *tools; /* list of {"type":"function","function":{...}} */
    size_t named;        /* SIM_TOOL_NAMED: index into tools */
};

/* A choice's tool call, decided with its output. */
struct sim_tool_call {
    const char *name; /* borrowed from the request */
    char id[48];      /* "chatcmpl-tool-" + 32 hex digits */
    bool named;       /* tool_choice named a function: finish_reason stays "stop" */
};

/* Reads a request body's structured-output and tool fields (tools only for chat):
 * response_format, guided_json/guided_choice/guided_regex/guided_grammar,
 * structured_outputs, tools, tool_choice. auto_tool_choice: the server runs with
 * --enable-auto-tool-choice and a --tool-call-parser. Returns false with err (status
 * 400, vLLM's message where vLLM has one). Every schema is tried once with the
 * generator. May add a key to root (a schema given as JSON text, parsed). */
bool sim_shape_parse(json_t *root, enum openai_api api, bool auto_tool_choice,
                     struct sim_shape *out, struct openai_error *err);

/* Which tool a choice calls (index into sh->tools), or -1 for an answer in text. */
long sim_shape_pick_tool(const struct sim_shape *sh, const json_t *root, uint64_t seed);

/* The text of an answer into out; *tool = the called tool's index, or -1. Returns false
 * when the answer is plain text (nothing written). */
bool sim_shape_answer(const struct sim_shape *sh, const json_t *root, uint64_t seed,
                      struct buf *out, long *tool);

/* sim_shape_parse on a sim request, into r->shape (left NULL when the answer is plain
 * text). Returns false after answering with the 400. Trying every schema here makes a
 * schema the generator cannot serve a 400 now, not a broken answer later. */
bool sim_shape_prepare(struct sim_req *r);

/* The text choice c answers with when the request has a shape, into out; sets c->tool
 * (arena) when the answer is a tool call (text = its arguments). Returns false when the
 * answer is plain text after all (output.c then makes its usual text). Deterministic:
 * the same prompt, seed and choice index give the same answer. */
bool sim_shape_text(struct sim_req *r, struct sim_choice *c, struct buf *out);

/* Decides choice c's output when the request has a shape (sim_shape_text, then
 * sim_output_from_text into c->out). Returns false for plain text: the caller generates
 * its usual output. */
bool sim_shape_output(struct sim_req *r, struct sim_choice *c, uint32_t max_tokens);

/* Rendering hooks for output.c. finish: the reason the engine reported ("stop" or
 * "length"); returns what the response says ("tool_calls" for a finished auto or
 * required call). */
const char *sim_tool_finish(const struct sim_choice *c, const char *finish);
/* The chat message of a tool-call choice: {"role":"assistant","content":null,...,
 * "tool_calls":[...]} with arguments = text[0, len). */
void sim_tool_render_message(const struct sim_choice *c, const char *text, size_t len,
                             struct buf *out);
/* The "delta":{...} member of a streaming chunk of a tool-call choice: the header
 * (index, id, type, function name, arguments "") when header, else one arguments
 * fragment with the call's index. */
void sim_tool_render_delta(const struct sim_choice *c, bool header, const char *frag, size_t n,
                           struct buf *out);

#endif

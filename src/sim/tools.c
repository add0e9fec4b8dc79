/* Structured output and tool calls for the sim: reading response_format, guided_*,
 * structured_outputs, tools and tool_choice (validated as vLLM validates them), deciding
 * per choice whether the answer is a tool call, and producing the JSON text the answer
 * consists of. The text comes from sim/structured (a generator, not a grammar-guided
 * sampler); output.c tokenizes it and the engine emits it token by token like any other
 * output, so max_tokens cuts it exactly as it cuts vLLM's.
 *
 * Determinism: a choice's answer is a function of (--seed, the prompt's token ids, the
 * request seed, the choice index); the tool-call id of (request id, choice index). */
#define _GNU_SOURCE /* memmem */
#include "sim/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/json.h"
#include "sim/sim_internal.h"
#include "sim/structured.h"

#define CORRECT_USAGE                                                                              \
    "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`"

/* What the parsers need: the body, the server's flag, where errors go. */
struct pctx {
    json_t *root;
    bool auto_ok;
    struct openai_error *err;
};

static bool bad(struct pctx *r, const char *param, const char *msg)
{
    openai_error_set(r->err, 400, param, "%s", msg);
    return false;
}

/* Tries the generator once on schema: a schema it cannot serve is a 400 up front. */
static bool schema_ok(struct pctx *r, const char *param, const json_t *schema)
{
    struct buf b = BUF_INIT;
    char err[400];
    bool ok = sim_structured_generate(schema, 0, &b, err, sizeof err);
    buf_free(&b);
    if (!ok)
        openai_error_set(r->err, 400, param, "%s", err);
    return ok;
}

/* A schema given as an object or as JSON text (guided_json allows both). */
static bool schema_value(struct pctx *r, const char *param, const json_t *v, const json_t **out)
{
    if (json_is_string(v)) {
        struct errinfo je;
        json_t *parsed = json_parse(json_string_value(v), json_string_length(v), &je);
        if (!parsed)
            return bad(r, param, "Invalid JSON grammar specification.");
        /* Keep it alive with the request: hang it on the parsed body. */
        json_object_set_new(r->root, "__tandem_parsed_schema", parsed);
        v = parsed;
    }
    if (!json_is_object(v) && !json_is_boolean(v)) {
        openai_error_set(r->err, 400, param, "'%s' must be a JSON schema (an object)", param);
        return false;
    }
    *out = v;
    return schema_ok(r, param, v);
}

static bool choice_list(struct pctx *r, const char *param, const json_t *v, struct sim_shape *sh)
{
    size_t i;
    const json_t *s;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        openai_error_set(r->err, 400, param, "'%s' must be a non-empty list of strings", param);
        return false;
    }
    json_array_foreach(v, i, s) if (!json_is_string(s) || json_string_length(s) == 0)
    {
        openai_error_set(r->err, 400, param, "'%s' must be a non-empty list of non-empty strings",
                         param);
        return false;
    }
    sh->text = SIM_TEXT_CHOICE;
    sh->choices = v;
    return true;
}

static bool present(const json_t *v)
{
    return v && !json_is_null(v) && !json_is_false(v);
}

/* response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {...}} */
static bool parse_response_format(struct pctx *r, const json_t *rf, struct sim_shape *sh,
                                  int *kinds)
{
    if (!json_is_object(rf))
        return bad(r, "response_format", "'response_format' must be an object");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!type)
        return bad(r, "response_format", "'response_format.type' is required");
    if (!strcmp(type, "text"))
        return true;
    if (!strcmp(type, "json_object")) {
        sh->text = SIM_TEXT_JSON;
        sh->schema = NULL;
        (*kinds)++;
        return true;
    }
    if (strcmp(type, "json_schema") != 0) {
        openai_error_set(r->err, 400, "response_format",
                         "'response_format.type' must be 'text', 'json_object' or 'json_schema', "
                         "got '%.40s'",
                         type);
        return false;
    }
    const json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return bad(r, "response_format",
                   "'response_format.json_schema' is required when 'response_format.type' is "
                   "'json_schema'");
    if (!json_is_string(json_object_get(js, "name")))
        return bad(r, "response_format", "'response_format.json_schema.name' is required");
    const json_t *schema = json_object_get(js, "schema");
    sh->text = SIM_TEXT_JSON;
    sh->schema = NULL; /* no schema: any JSON object */
    (*kinds)++;
    if (!present(schema))
        return true;
    return schema_value(r, "response_format", schema, &sh->schema);
}

/* structured_outputs (current vLLM) and the guided_* fields (older vLLM). */
static bool parse_structured(struct pctx *r, struct sim_shape *sh, int *kinds)
{
    const json_t *root = r->root;
    const json_t *so = json_object_get(root, "structured_outputs");
    if (present(so) && !json_is_object(so))
        return bad(r, "structured_outputs", "'structured_outputs' must be an object");
    struct {
        const char *param;
        const json_t *v;
        char kind; /* j = schema, o = any object, c = choice list, x = unsupported */
    } f[] = {
        {"guided_json", json_object_get(root, "guided_json"), 'j'},
        {"guided_choice", json_object_get(root, "guided_choice"), 'c'},
        {"guided_regex", json_object_get(root, "guided_regex"), 'x'},
        {"guided_grammar", json_object_get(root, "guided_grammar"), 'x'},
        {"structured_outputs.json", json_object_get(so, "json"), 'j'},
        {"structured_outputs.json_object", json_object_get(so, "json_object"), 'o'},
        {"structured_outputs.choice", json_object_get(so, "choice"), 'c'},
        {"structured_outputs.regex", json_object_get(so, "regex"), 'x'},
        {"structured_outputs.grammar", json_object_get(so, "grammar"), 'x'},
        {"structured_outputs.structural_tag", json_object_get(so, "structural_tag"), 'x'},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (!present(f[i].v))
            continue;
        if (++*kinds > 1)
            return bad(r, f[i].param,
                       "You can only use one kind of structured outputs constraint but "
                       "multiple are specified");
        switch (f[i].kind) {
        case 'j':
            sh->text = SIM_TEXT_JSON;
            if (!schema_value(r, f[i].param, f[i].v, &sh->schema))
                return false;
            break;
        case 'o':
            sh->text = SIM_TEXT_JSON;
            sh->schema = NULL;
            break;
        case 'c':
            if (!choice_list(r, f[i].param, f[i].v, sh))
                return false;
            break;
        default:
            openai_error_set(r->err, 400, f[i].param,
                             "'%s' is not supported by the simulator (supported: JSON schemas, "
                             "json_object, choice)",
                             f[i].param);
            return false;
        }
    }
    return true;
}

static bool parse_tools(struct pctx *r, struct sim_shape *sh)
{
    const json_t *root = r->root;
    const json_t *tools = json_object_get(root, "tools");
    const json_t *tc = json_object_get(root, "tool_choice");
    if (json_is_null(tools))
        tools = NULL;
    if (json_is_null(tc))
        tc = NULL;
    if (tools && !json_is_array(tools))
        return bad(r, "tools", "'tools' must be a list");
    if (tools && json_array_size(tools) == 0)
        return bad(r, "tools",
                   "`tools` must not be an empty array. Either provide at least "
                   "one tool or omit the field entirely.");
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *fn = json_object_get(t, "function");
        const json_t *type = json_object_get(t, "type");
        if (!json_is_object(t) ||
            (type && !(json_is_string(type) && !strcmp(json_string_value(type), "function")))) {
            openai_error_set(r->err, 400, "tools", "'tools[%zu].type' must be 'function'", i);
            return false;
        }
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name"))) {
            openai_error_set(r->err, 400, "tools", "'tools[%zu].function.name' is required", i);
            return false;
        }
        const json_t *params = json_object_get(fn, "parameters");
        if (present(params) && !json_is_object(params)) {
            openai_error_set(r->err, 400, "tools",
                             "'tools[%zu].function.parameters' must be an object", i);
            return false;
        }
    }
    /* vLLM: tools without a tool_choice mean "auto". */
    const char *tcs = tc ? json_string_value(tc) : tools ? "auto" : NULL;
    if (!tc && !tools)
        return true;
    if (tcs && !strcmp(tcs, "none"))
        return true;
    if (!tools)
        return bad(r, "tool_choice", "When using `tool_choice`, `tools` must be set.");
    if (tcs && !strcmp(tcs, "auto")) {
        if (!r->auto_ok)
            return bad(r, "tool_choice",
                       "\"auto\" tool choice requires "
                       "--enable-auto-tool-choice and --tool-call-parser to "
                       "be set");
        sh->tool_choice = SIM_TOOL_AUTO;
    } else if (tcs && !strcmp(tcs, "required")) {
        sh->tool_choice = SIM_TOOL_REQUIRED;
    } else if (json_is_object(tc)) {
        const json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(fn))
            return bad(r, "tool_choice",
                       "Invalid value for `function` in `tool_choice`! " CORRECT_USAGE);
        const json_t *name = json_object_get(fn, "name");
        if (!name)
            return bad(r, "tool_choice",
                       "Expected field `name` in `function` in `tool_choice`! " CORRECT_USAGE);
        if (!json_is_string(name) || json_string_length(name) == 0)
            return bad(r, "tool_choice",
                       "Invalid `name` in `function` in `tool_choice`! " CORRECT_USAGE);
        bool found = false;
        json_array_foreach(tools, i, t)
        {
            const json_t *n = json_object_get(json_object_get(t, "function"), "name");
            if (json_equal(n, name)) {
                sh->named = i;
                found = true;
                break;
            }
        }
        if (!found)
            return bad(r, "tool_choice",
                       "The tool specified in `tool_choice` does not match "
                       "any of the specified `tools`");
        sh->tool_choice = SIM_TOOL_NAMED;
    } else {
        char *txt = json_dumps(tc, JSON_ENCODE_ANY | JSON_COMPACT);
        openai_error_set(r->err, 400, "tool_choice",
                         "Invalid value for `tool_choice`: %.80s! Only named tools, \"none\", "
                         "\"auto\" or \"required\" are supported.",
                         txt ? txt : "?");
        free(txt);
        return false;
    }
    sh->tools = tools;
    json_array_foreach(tools, i, t)
    {
        if (sh->tool_choice == SIM_TOOL_NAMED && i != sh->named)
            continue;
        const json_t *params = json_object_get(json_object_get(t, "function"), "parameters");
        if (present(params) && !schema_ok(r, "tools", params))
            return false;
    }
    return true;
}

bool sim_shape_parse(json_t *root, enum openai_api api, bool auto_tool_choice,
                     struct sim_shape *out, struct openai_error *err)
{
    struct pctx ctx = {.root = root, .auto_ok = auto_tool_choice, .err = err};
    struct pctx *r = &ctx;
    memset(out, 0, sizeof *out);
    int kinds = 0;
    const json_t *rf = json_object_get(root, "response_format");
    if (present(rf) && !parse_response_format(r, rf, out, &kinds))
        return false;
    if (!parse_structured(r, out, &kinds))
        return false;
    if (api == OPENAI_CHAT && !parse_tools(r, out))
        return false;
    return true;
}

bool sim_shape_prepare(struct sim_req *r)
{
    struct sim_shape sh;
    struct openai_error err;
    const struct sim_config *cfg = r->s->cfg;
    if (!sim_shape_parse(r->oreq.root, r->oreq.api,
                         cfg->enable_auto_tool_choice && cfg->tool_call_parser, &sh, &err)) {
        sim_req_fail(r, err.status, err.param[0] ? err.param : NULL, "%s", err.message);
        return false;
    }
    if (sh.text == SIM_TEXT_PLAIN && sh.tool_choice == SIM_TOOL_NONE)
        return true;
    r->shape = arena_alloc(&r->arena, sizeof *r->shape);
    *r->shape = sh;
    return true;
}

/* --- answers --------------------------------------------------------------------------- */

static uint64_t choice_seed(const struct sim_req *r, const struct sim_choice *c)
{
    uint64_t h = r->s->cfg->seed ^ 0x700150ull;
    h ^= hash_xxh64(c->prompt_ids, c->n_prompt * sizeof *c->prompt_ids, 7);
    if (r->oreq.has_seed)
        h ^= hash_xxh64(&r->oreq.seed, sizeof r->oreq.seed, 8);
    return hash_xxh64(&h, sizeof h, c->index);
}

/* Text of a message's content (string or text parts), appended to out. */
static void content_text(const json_t *content, struct buf *out)
{
    if (json_is_string(content)) {
        buf_append(out, json_string_value(content), json_string_length(content));
        return;
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *text = json_object_get(part, "text");
        if (json_is_string(text))
            buf_append(out, json_string_value(text), json_string_length(text));
    }
}

static const char *tool_name(const json_t *tool)
{
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

/* Which tool to call, or -1 for a text answer. */
long sim_shape_pick_tool(const struct sim_shape *sh, const json_t *root, uint64_t seed)
{
    size_t n = json_array_size(sh->tools);
    if (sh->tool_choice == SIM_TOOL_NAMED)
        return (long)sh->named;
    const json_t *msgs = json_object_get(root, "messages");
    const json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    /* auto after a tool result: the model reads the result and answers in words, which
     * ends an agent's loop the way a real model usually does. */
    if (sh->tool_choice == SIM_TOOL_AUTO && role && !strcmp(role, "tool"))
        return -1;
    const json_t *user = NULL;
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        const json_t *m = json_array_get(msgs, i);
        const char *mr = json_string_value(json_object_get(m, "role"));
        if (mr && !strcmp(mr, "user")) {
            user = m;
            break;
        }
    }
    struct buf text = BUF_INIT;
    content_text(json_object_get(user, "content"), &text);
    long mentioned = -1;
    for (size_t i = 0; i < n && mentioned < 0 && text.len; i++) {
        const char *name = tool_name(json_array_get(sh->tools, i));
        if (name && *name && memmem(text.data, text.len, name, strlen(name)))
            mentioned = (long)i;
    }
    buf_free(&text);
    if (mentioned >= 0)
        return mentioned;
    if (sh->tool_choice == SIM_TOOL_AUTO && (seed >> 17) % 2 == 0)
        return -1;
    return (long)((seed >> 33) % n);
}

static void generate(const json_t *schema, uint64_t seed, struct buf *out)
{
    char err[8];
    if (sim_structured_generate(schema, seed, out, err, sizeof err))
        return;
    /* Seed 0 was tried when the request came in; another seed can still fail where the
     * generator gives up on retries (uniqueItems). */
    if (!sim_structured_generate(schema, 0, out, err, sizeof err))
        buf_append_str(out, "{}");
}

bool sim_shape_answer(const struct sim_shape *sh, const json_t *root, uint64_t seed,
                      struct buf *out, long *tool)
{
    *tool = -1;
    if (sh->tool_choice != SIM_TOOL_NONE) {
        long t = sim_shape_pick_tool(sh, root, seed);
        if (t >= 0) {
            const json_t *fn = json_object_get(json_array_get(sh->tools, (size_t)t), "function");
            const json_t *params = json_object_get(fn, "parameters");
            *tool = t;
            if (present(params))
                generate(params, seed, out);
            else
                buf_append_str(out, "{}");
            return true;
        }
    }
    switch (sh->text) {
    case SIM_TEXT_JSON:
        generate(sh->schema, seed, out);
        return true;
    case SIM_TEXT_CHOICE: {
        const json_t *s = json_array_get(sh->choices, seed % json_array_size(sh->choices));
        buf_append(out, json_string_value(s), json_string_length(s));
        return true;
    }
    default:
        return false;
    }
}

bool sim_shape_text(struct sim_req *r, struct sim_choice *c, struct buf *out)
{
    const struct sim_shape *sh = r->shape;
    long t;
    if (!sh || !sim_shape_answer(sh, r->oreq.root, choice_seed(r, c), out, &t))
        return false;
    if (t >= 0) {
        const json_t *fn = json_object_get(json_array_get(sh->tools, (size_t)t), "function");
        struct sim_tool_call *call = arena_calloc(&r->arena, sizeof *call);
        call->name = json_string_value(json_object_get(fn, "name"));
        call->named = sh->tool_choice == SIM_TOOL_NAMED;
        uint64_t h1 = hash_xxh64(r->id, strlen(r->id), c->index);
        uint64_t h2 = hash_xxh64(r->id, strlen(r->id), c->index + 0x9e3779b9ull);
        snprintf(call->id, sizeof call->id, "chatcmpl-tool-%016llx%016llx", (unsigned long long)h1,
                 (unsigned long long)h2);
        c->tool = call;
    }
    return true;
}

bool sim_shape_output(struct sim_req *r, struct sim_choice *c, uint32_t max_tokens)
{
    struct buf t = BUF_INIT;
    bool shaped = sim_shape_text(r, c, &t);
    if (shaped)
        sim_output_from_text(&r->oreq, c, t.data, t.len, max_tokens, &c->out);
    buf_free(&t);
    return shaped;
}

/* --- rendering ------------------------------------------------------------------------- */

const char *sim_tool_finish(const struct sim_choice *c, const char *finish)
{
    if (c->tool && !c->tool->named && !strcmp(finish, "stop"))
        return "tool_calls";
    return finish;
}

void sim_tool_render_message(const struct sim_choice *c, const char *text, size_t len,
                             struct buf *out)
{
    buf_append_str(out, "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,"
                        "\"tool_calls\":[{\"id\":");
    json_quote(out, c->tool->id, strlen(c->tool->id));
    buf_append_str(out, ",\"type\":\"function\",\"function\":{\"name\":");
    json_quote(out, c->tool->name, strlen(c->tool->name));
    buf_append_str(out, ",\"arguments\":");
    json_quote(out, text, len);
    buf_append_str(out, "}}],\"reasoning_content\":null}");
}

void sim_tool_render_delta(const struct sim_choice *c, bool header, const char *frag, size_t n,
                           struct buf *out)
{
    buf_append_str(out, "\"delta\":{\"tool_calls\":[{\"index\":0,");
    if (header) {
        buf_append_str(out, "\"id\":");
        json_quote(out, c->tool->id, strlen(c->tool->id));
        buf_append_str(out, ",\"type\":\"function\",\"function\":{\"name\":");
        json_quote(out, c->tool->name, strlen(c->tool->name));
        buf_append_str(out, ",\"arguments\":\"\"}}]}");
        return;
    }
    buf_append_str(out, "\"function\":{\"arguments\":");
    json_quote(out, frag, n);
    buf_append_str(out, "}}]}");
}

"""tandem sim: structured output (response_format, guided_json, structured_outputs) and
tool calls (tools, tool_choice), over raw HTTP, checked against the schemas they carry."""

import json
import subprocess

from harness import TANDEM, post, start_sim, sse_events, stream

try:
    import jsonschema
except ImportError:  # no jsonschema in this python: a small validator below stands in
    jsonschema = None

MODEL = "facebook/opt-125m"
AUTO_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                 "uniqueItems": True},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
ORDER = {
    "$defs": {
        "item": {"type": "object", "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "qty": {"type": "integer", "minimum": 1, "maximum": 9},
            "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 500}},
            "required": ["sku", "qty", "price"]},
    },
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1,
                  "maxItems": 4},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "placed": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "items", "note"],
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"], "additionalProperties": False}}}
SEARCH = {"type": "function", "function": {
    "name": "search_docs",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "minLength": 3},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50}},
        "required": ["query"]}}}
TOOLS = [WEATHER, SEARCH]


def validate(inst, schema, root=None):
    """Asserts inst conforms to schema: jsonschema when installed, else a small subset."""
    if jsonschema is not None:
        jsonschema.validate(inst, schema,
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        return
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return validate(inst, root["$defs"][name], root)
    if "anyOf" in schema:
        errs = 0
        for b in schema["anyOf"]:
            try:
                validate(inst, b, root)
            except AssertionError:
                errs += 1
        assert errs < len(schema["anyOf"]), (inst, schema)
        return
    if "enum" in schema:
        assert inst in schema["enum"], (inst, schema)
    types = {"object": dict, "array": list, "string": str, "integer": int, "null": type(None),
             "number": (int, float), "boolean": bool}
    if "type" in schema:
        assert isinstance(inst, types[schema["type"]]), (inst, schema)
    if isinstance(inst, dict):
        for k in schema.get("required", []):
            assert k in inst, (k, inst)
        for k, v in inst.items():
            if k in schema.get("properties", {}):
                validate(v, schema["properties"][k], root)
            else:
                assert schema.get("additionalProperties", True) is not False, (k, inst)
    if isinstance(inst, list):
        assert len(inst) >= schema.get("minItems", 0) and len(inst) <= schema.get("maxItems", 1e9)
        for v in inst:
            validate(v, schema.get("items", {}), root)
    if isinstance(inst, (int, float)) and not isinstance(inst, bool):
        assert inst >= schema.get("minimum", -1e300) and inst <= schema.get("maximum", 1e300)
    if isinstance(inst, str):
        assert schema.get("minLength", 0) <= len(inst) <= schema.get("maxLength", 1e9)


def sim(*extra):
    return start_sim("--model", MODEL, "--profile", "fast", *extra)


def chat(port, body):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
    b.update(body)
    return post(port, "/v1/chat/completions", b)


def err_message(r, status=400):
    assert r.status == status, (r.status, r.body)
    e = r.json()["error"]
    assert e["code"] == status and e["type"] == "BadRequestError", e
    return e["message"]


def stream_chunks(raw):
    """The chunks of an SSE body with choices, and the usage chunks; the finish_reason
    must be on the last choice chunk (vLLM puts it on the last content chunk)."""
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    body = [c for c in chunks if c["choices"]]
    usage = [c for c in chunks if not c["choices"]]
    for c in body[:-1]:
        assert c["choices"][0]["finish_reason"] is None, c
    assert body[-1]["choices"][0]["finish_reason"] is not None, body[-1]
    return body, usage


def tokens_of(port, text):
    return post(port, "/tokenize", {"prompt": text}).json()["count"]


def test_json_object():
    s = sim()
    for i in range(5):
        r = chat(s.port, {"messages": [{"role": "user", "content": "give me json %d" % i}],
                          "response_format": {"type": "json_object"}})
        assert r.status == 200, r.body
        c = r.json()["choices"][0]
        content = c["message"]["content"]
        assert isinstance(json.loads(content), dict), content
        assert c["finish_reason"] == "stop" and c["message"]["tool_calls"] == []
        assert r.json()["usage"]["completion_tokens"] == tokens_of(s.port, content)
    # completions take response_format too; "text" is plain text
    r = post(s.port, "/v1/completions", {"prompt": "x", "max_tokens": 200,
                                          "response_format": {"type": "json_object"}})
    assert isinstance(json.loads(r.json()["choices"][0]["text"]), dict)
    r = chat(s.port, {"response_format": {"type": "text"}, "max_tokens": 5})
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] <= 5


def test_json_schema_conformance_and_determinism():
    s = sim()
    for schema in (PERSON, ORDER):
        seen = set()
        for i in range(12):
            body = {"messages": [{"role": "user", "content": "record number %d" % i}],
                    "response_format": {"type": "json_schema", "json_schema": {
                        "name": "rec", "schema": schema, "strict": True}}}
            r = chat(s.port, body)
            assert r.status == 200, r.body
            content = r.json()["choices"][0]["message"]["content"]
            validate(json.loads(content), schema)
            seen.add(content)
            assert r.json()["choices"][0]["finish_reason"] == "stop"
            # the same request gives the same JSON
            assert chat(s.port, body).json()["choices"][0]["message"]["content"] == content
        assert len(seen) >= 10, seen  # different prompts, different instances
    # vLLM's other spellings: guided_json (object or text) and structured_outputs.json
    for extra in ({"guided_json": ORDER}, {"guided_json": json.dumps(ORDER)},
                  {"structured_outputs": {"json": ORDER}}):
        body = {"prompt": "order", "max_tokens": 1000}
        body.update(extra)
        r = post(s.port, "/v1/completions", body)
        assert r.status == 200, (extra, r.body)
        validate(json.loads(r.json()["choices"][0]["text"]), ORDER)
    r = chat(s.port, {"structured_outputs": {"choice": ["yes", "no", "maybe"]}})
    assert r.json()["choices"][0]["message"]["content"] in ("yes", "no", "maybe")


def test_json_cut_at_max_tokens_and_streamed():
    s = sim()
    body = {"messages": [{"role": "user", "content": "an order please"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "o", "schema": ORDER}}}
    full = chat(s.port, body).json()
    text = full["choices"][0]["message"]["content"]
    n = full["usage"]["completion_tokens"]
    assert n > 8
    cut = chat(s.port, dict(body, max_tokens=5)).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    assert text.startswith(cut["choices"][0]["message"]["content"])
    # Exactly as many tokens as the JSON: no room for EOS, so vLLM says "length".
    exact = chat(s.port, dict(body, max_tokens=n)).json()["choices"][0]
    assert exact["message"]["content"] == text and exact["finish_reason"] == "length"
    # Streaming: one content delta per token, reassembling the same JSON.
    status, _, raw, _ = stream(s.port, "/v1/chat/completions", dict(
        body, model=MODEL, stream=True, stream_options={"include_usage": True}))
    assert status == 200
    body, usage = stream_chunks(raw)
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"]["content"] for c in body[1:]
              if "content" in c["choices"][0]["delta"]]
    assert "".join(deltas) == text and len(deltas) == n, (deltas, text)
    assert body[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage[0]["usage"]["completion_tokens"] == n


def tool_call_of(port, r):
    assert r.status == 200, r.body
    c = r.json()["choices"][0]
    m = c["message"]
    assert m["content"] is None and m["role"] == "assistant", m
    assert len(m["tool_calls"]) == 1, m
    call = m["tool_calls"][0]
    assert call["type"] == "function"
    assert call["id"].startswith("chatcmpl-tool-") and len(call["id"]) == 14 + 32, call["id"]
    int(call["id"][14:], 16)
    args = json.loads(call["function"]["arguments"])
    tool = {t["function"]["name"]: t for t in TOOLS}[call["function"]["name"]]
    validate(args, tool["function"]["parameters"])
    assert r.json()["usage"]["completion_tokens"] == tokens_of(port, call["function"]["arguments"])
    return c, call


def test_tools_auto_required_named():
    s = sim(*AUTO_FLAGS)
    # auto, the user names a tool: a call of that tool
    r = chat(s.port, {"messages": [{"role": "user", "content": "use search_docs for KV cache"}],
                      "tools": TOOLS, "tool_choice": "auto"})
    c, call = tool_call_of(s.port, r)
    assert call["function"]["name"] == "search_docs" and c["finish_reason"] == "tool_calls"
    # tools without tool_choice mean auto
    r = chat(s.port, {"messages": [{"role": "user", "content": "get_weather in Oslo?"}],
                      "tools": TOOLS})
    c, call = tool_call_of(s.port, r)
    assert call["function"]["name"] == "get_weather"
    # auto without a mention: a deterministic mix of calls and text
    kinds = []
    for i in range(16):
        body = {"messages": [{"role": "user", "content": "question %d" % i}], "tools": TOOLS,
                "max_tokens": 200}
        r = chat(s.port, body)
        m = r.json()["choices"][0]["message"]
        kinds.append(bool(m["tool_calls"]))
        again = chat(s.port, body).json()["choices"][0]["message"]
        assert bool(again["tool_calls"]) == kinds[-1]
        if m["tool_calls"]:
            tool_call_of(s.port, r)
        else:
            assert isinstance(m["content"], str) and m["content"]
            assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert 0 < sum(kinds) < 16, kinds
    # required: always a call, finish_reason tool_calls
    for i in range(6):
        r = chat(s.port, {"messages": [{"role": "user", "content": "anything %d" % i}],
                          "tools": TOOLS, "tool_choice": "required"})
        c, _ = tool_call_of(s.port, r)
        assert c["finish_reason"] == "tool_calls"
    # named: a call of that function; vLLM keeps finish_reason "stop" here
    r = chat(s.port, {"tools": TOOLS, "tool_choice": {"type": "function",
                                                      "function": {"name": "get_weather"}}})
    c, call = tool_call_of(s.port, r)
    assert call["function"]["name"] == "get_weather" and c["finish_reason"] == "stop"
    # none: plain text even with tools
    r = chat(s.port, {"messages": [{"role": "user", "content": "get_weather now"}],
                      "tools": TOOLS, "tool_choice": "none", "max_tokens": 5})
    m = r.json()["choices"][0]["message"]
    assert m["tool_calls"] == [] and isinstance(m["content"], str)


def test_multi_turn_tool_history():
    s = sim(*AUTO_FLAGS)
    first = chat(s.port, {"messages": [{"role": "user", "content": "get_weather for Rome"}],
                          "tools": TOOLS})
    _, call = tool_call_of(s.port, first)
    history = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "get_weather for Rome"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
    ]
    # After a tool result, auto answers in words: the agent loop ends.
    r = chat(s.port, {"messages": history, "tools": TOOLS})
    assert r.status == 200, r.body
    # The call made is part of the prompt now (rendered like a Hermes chat template).
    bare = [dict(m, tool_calls=[]) if m["role"] == "assistant" else m for m in history]
    n_bare = chat(s.port, {"messages": bare, "max_tokens": 1}).json()["usage"]["prompt_tokens"]
    assert r.json()["usage"]["prompt_tokens"] > n_bare + tokens_of(
        s.port, call["function"]["arguments"])
    m = r.json()["choices"][0]["message"]
    assert m["tool_calls"] == [] and m["content"], m
    # required still calls, history and all
    r = chat(s.port, {"messages": history, "tools": TOOLS, "tool_choice": "required"})
    tool_call_of(s.port, r)
    # and a history without tools in the request is plain chat
    r = chat(s.port, {"messages": history, "max_tokens": 4})
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"]


def test_streaming_tool_deltas():
    s = sim(*AUTO_FLAGS)
    for choice, finish in (("required", "tool_calls"),
                           ({"type": "function", "function": {"name": "search_docs"}}, "stop")):
        body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "look it up"}],
                "tools": TOOLS, "tool_choice": choice}
        status, _, raw, _ = stream(s.port, "/v1/chat/completions", body)
        assert status == 200
        chunks, usage = stream_chunks(raw)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        head = chunks[1]["choices"][0]["delta"]["tool_calls"]
        assert len(head) == 1 and head[0]["index"] == 0
        assert head[0]["id"].startswith("chatcmpl-tool-") and head[0]["type"] == "function"
        assert head[0]["function"]["arguments"] == ""
        name = head[0]["function"]["name"]
        frags = []
        for c in chunks[2:]:
            d = c["choices"][0]["delta"]
            if not d:
                assert c is chunks[-1]  # a separate finish chunk, if any, is empty
                continue
            assert set(d) == {"tool_calls"}, d
            tc = d["tool_calls"]
            assert len(tc) == 1 and tc[0]["index"] == 0 and set(tc[0]) == {"index", "function"}
            assert set(tc[0]["function"]) == {"arguments"}
            frags.append(tc[0]["function"]["arguments"])
        args = json.loads("".join(frags))
        tool = {t["function"]["name"]: t for t in TOOLS}[name]
        validate(args, tool["function"]["parameters"])
        assert chunks[-1]["choices"][0]["finish_reason"] == finish
        assert usage[0]["usage"]["completion_tokens"] == len(frags)
        if isinstance(choice, dict):
            assert name == "search_docs"
        # the non-streaming answer to the same request has the same arguments
        plain = dict(body, stream=False)
        del plain["stream_options"]
        r = post(s.port, "/v1/chat/completions", plain).json()
        assert r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == \
            "".join(frags)


def test_n_choices_each_conform():
    s = sim(*AUTO_FLAGS)
    r = chat(s.port, {"n": 4, "response_format": {"type": "json_schema", "json_schema": {
        "name": "p", "schema": PERSON}}})
    assert r.status == 200, r.body
    contents = [c["message"]["content"] for c in r.json()["choices"]]
    assert [c["index"] for c in r.json()["choices"]] == [0, 1, 2, 3]
    for c in contents:
        validate(json.loads(c), PERSON)
    assert len(set(contents)) >= 3, contents  # each choice its own instance
    assert r.json()["usage"]["completion_tokens"] == sum(tokens_of(s.port, c) for c in contents)
    # n streamed tool calls: every choice's arguments reassemble on their own
    status, _, raw, _ = stream(s.port, "/v1/chat/completions", {
        "model": MODEL, "stream": True, "n": 3, "tools": TOOLS, "tool_choice": "required",
        "messages": [{"role": "user", "content": "go"}]})
    assert status == 200
    frags, names = {}, {}
    for e in sse_events(raw)[:-1]:
        for ch in json.loads(e)["choices"]:
            for tc in ch["delta"].get("tool_calls", []):
                assert tc["index"] == 0
                if "id" in tc:
                    names[ch["index"]] = tc["function"]["name"]
                else:
                    frags.setdefault(ch["index"], []).append(tc["function"]["arguments"])
    assert sorted(names) == [0, 1, 2] and sorted(frags) == [0, 1, 2]
    for i, parts in frags.items():
        tool = {t["function"]["name"]: t for t in TOOLS}[names[i]]
        validate(json.loads("".join(parts)), tool["function"]["parameters"])


def test_errors():
    s = sim()
    auto_msg = ('"auto" tool choice requires --enable-auto-tool-choice and '
                '--tool-call-parser to be set')
    assert err_message(chat(s.port, {"tools": TOOLS, "tool_choice": "auto"})) == auto_msg
    assert err_message(chat(s.port, {"tools": TOOLS})) == auto_msg
    # required and named work without the flags
    assert chat(s.port, {"tools": TOOLS, "tool_choice": "required"}).status == 200
    assert err_message(chat(s.port, {"tool_choice": "required"})) == \
        "When using `tool_choice`, `tools` must be set."
    assert err_message(chat(s.port, {"tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}})) == \
        "When using `tool_choice`, `tools` must be set."
    assert err_message(chat(s.port, {"tools": TOOLS, "tool_choice": {
        "type": "function", "function": {"name": "nope"}}})) == \
        "The tool specified in `tool_choice` does not match any of the specified `tools`"
    assert "Only named tools" in err_message(chat(s.port, {"tools": TOOLS,
                                                           "tool_choice": "sometimes"}))
    assert "`name`" in err_message(chat(s.port, {"tools": TOOLS, "tool_choice": {
        "type": "function", "function": {}}}))
    assert "must not be an empty array" in err_message(chat(s.port, {"tools": []}))
    assert "tools[0].function.name" in err_message(
        chat(s.port, {"tools": [{"type": "function", "function": {}}],
                      "tool_choice": "required"}))
    # schemas the generator cannot serve, or that are not schemas
    r = chat(s.port, {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"not": {}}},
                                "required": ["a"]}}}})
    assert "'not'" in err_message(r) and r.json()["error"]["param"] == "response_format"
    assert "strang" in err_message(chat(s.port, {"response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strang"}}}}))
    assert "pattern" in err_message(chat(s.port, {"guided_json": {
        "type": "string", "pattern": "(?<=a)b"}}))
    assert err_message(post(s.port, "/v1/completions", {
        "prompt": "x", "guided_json": "{not json"})) == "Invalid JSON grammar specification."
    assert "json_schema" in err_message(chat(s.port, {"response_format": {
        "type": "json_schema"}}))
    assert "response_format.type" in err_message(chat(s.port, {"response_format": {
        "type": "yaml"}}))
    assert "one kind" in err_message(chat(s.port, {"guided_json": PERSON,
                                                   "structured_outputs": {"json": PERSON}}))
    assert "tools" == chat(s.port, {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"$ref": "http://x/y"}}}], "tool_choice": "required"}
    ).json()["error"]["param"]
    # the sim is still serving after all that
    assert chat(s.port, {"max_tokens": 2}).status == 200


def test_auto_tool_choice_flag_needs_a_parser():
    out = subprocess.run([TANDEM, "sim", "--enable-auto-tool-choice"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 2 and "--tool-call-parser" in out.stderr, out.stderr
    help_text = subprocess.run([TANDEM, "sim", "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    assert "--enable-auto-tool-choice" in help_text and "--tool-call-parser" in help_text


if __name__ == "__main__":
    from harness import run
    run([test_json_object, test_json_schema_conformance_and_determinism,
         test_json_cut_at_max_tokens_and_streamed, test_tools_auto_required_named,
         test_multi_turn_tool_history, test_streaming_tool_deltas, test_n_choices_each_conform,
         test_errors,
         test_auto_tool_choice_flag_needs_a_parser])

"""The official `openai` Python SDK (pinned in requirements.txt) against tandem router in
front of two tandem sims: every response below is parsed by the SDK's own models and
stream decoder, not by our code."""

import json
import sys

import stack

N_TESTS = 22
if __name__ == "__main__":
    stack.bootstrap("openai SDK tests", N_TESTS)

import openai  # noqa: E402
from harness import post, run  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from stack import MODEL  # noqa: E402

TOOL_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                   "required": ["zone"]}}}


def client(sim_flags=(), with_sims=False):
    r, sims = stack.stack(2, sim_flags)
    c = openai.OpenAI(base_url=r.base + "/v1", api_key="EMPTY", max_retries=0, timeout=30)
    return (c, sims) if with_sims else c


def extra(c):
    """Fields vLLM adds beyond OpenAI's schema (stop_reason, ...), as the SDK keeps them."""
    return c.model_extra or {}


def chat_msgs(text="Tell me about the sea."):
    return [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": text}]


# --- completions -----------------------------------------------------------------------

def test_completions():
    c = client()
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                             seed=3, extra_body={"ignore_eos": True})
    assert r.object == "text_completion" and r.id.startswith("cmpl-"), r
    assert r.model == MODEL and len(r.choices) == 1
    ch = r.choices[0]
    assert ch.index == 0 and ch.text and ch.finish_reason == "length", ch
    u = r.usage
    assert u.completion_tokens == 12 and u.prompt_tokens > 0, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    # A list of prompts: one choice each, indexed in order.
    r2 = c.completions.create(model=MODEL, prompt=["a b c", "d e f"], max_tokens=3)
    assert [x.index for x in r2.choices] == [0, 1], r2.choices


def test_completions_stream():
    c = client()
    args = dict(model=MODEL, prompt="Stream me a story", max_tokens=10, seed=11,
                extra_body={"ignore_eos": True})
    whole = c.completions.create(**args).choices[0].text
    chunks = list(c.completions.create(stream=True, **args))
    assert all(k.object == "text_completion" for k in chunks)
    text = "".join(k.choices[0].text for k in chunks if k.choices)
    assert text == whole, (text, whole)  # same request, same seed: same tokens
    assert chunks[-1].choices[0].finish_reason == "length", chunks[-1]
    assert all(k.usage is None for k in chunks), "usage without stream_options"


def test_completions_stream_usage():
    c = client()
    chunks = list(c.completions.create(
        model=MODEL, prompt="count my tokens", max_tokens=6, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 6, last
    assert all(k.usage is None for k in chunks[:-1])


def test_stop():
    c = client()
    args = dict(model=MODEL, prompt="Say many words", max_tokens=16, seed=5,
                extra_body={"ignore_eos": True})
    full = c.completions.create(**args).choices[0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[len(words) // 2]
    head = full[:full.index(stop)]
    r = c.completions.create(stop=[stop], **args).choices[0]
    assert r.text == head and r.finish_reason == "stop", (r, head)
    assert extra(r).get("stop_reason") == stop, r


def test_include_stop_str_in_output():
    c = client()
    args = dict(model=MODEL, prompt="Say many words", max_tokens=16, seed=5)
    full = c.completions.create(extra_body={"ignore_eos": True}, **args).choices[0].text
    words = full.split()
    stop = " " + words[len(words) // 2]
    head = full[:full.index(stop)]
    r = c.completions.create(stop=[stop], extra_body={
        "ignore_eos": True, "include_stop_str_in_output": True}, **args).choices[0]
    assert r.text == head + stop and r.finish_reason == "stop", (r, head + stop)
    # The same through a stream: the stop string is the last text sent.
    text = "".join(k.choices[0].text for k in c.completions.create(
        stop=[stop], stream=True, extra_body={"ignore_eos": True,
                                              "include_stop_str_in_output": True}, **args)
        if k.choices)
    assert text == head + stop, (text, head + stop)


def test_n_choices():
    c = client()
    r = c.completions.create(model=MODEL, prompt="pick", max_tokens=4, n=3, seed=1,
                             temperature=1.0, extra_body={"ignore_eos": True})
    assert sorted(x.index for x in r.choices) == [0, 1, 2], r.choices
    assert r.usage.completion_tokens == 12, r.usage
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs(), max_tokens=3, n=2,
                                  extra_body={"ignore_eos": True})
    assert sorted(x.index for x in r.choices) == [0, 1], r.choices
    assert all(x.message.content for x in r.choices)
    # Streaming n=2: chunks of both choices, each ending with its own finish_reason.
    seen = {}
    for k in c.chat.completions.create(model=MODEL, messages=chat_msgs(), max_tokens=3,
                                       n=2, stream=True, extra_body={"ignore_eos": True}):
        for ch in k.choices:
            s = seen.setdefault(ch.index, {"text": "", "finish": None})
            s["text"] += ch.delta.content or ""
            s["finish"] = ch.finish_reason or s["finish"]
    assert sorted(seen) == [0, 1] and all(s["text"] and s["finish"] == "length"
                                          for s in seen.values()), seen


def test_echo_prompt_logprobs():
    """What lm-eval's loglikelihood needs: echo + max_tokens 0 + logprobs gives the
    prompt's own tokens with their logprobs and generates nothing."""
    c = client()
    prompt = "The quick brown fox jumps over the lazy dog"
    r = c.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True,
                             logprobs=1)
    ch = r.choices[0]
    assert ch.text == prompt, ch.text
    lp = ch.logprobs
    assert len(lp.tokens) == r.usage.prompt_tokens and r.usage.completion_tokens == 0, r
    assert "".join(lp.tokens) == prompt, lp.tokens
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # Deterministic: the same prompt scores the same again (lm-eval relies on it).
    again = c.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True,
                                 logprobs=1).choices[0].logprobs.token_logprobs
    assert again == lp.token_logprobs


def test_token_id_prompts():
    """A prompt given as token ids is decoded: echo shows text, not id placeholders. The
    sim's tokenizer is a hash, so the text of an id is the server's /detokenize of it;
    text the sim generated comes back exactly (its ids re-tokenize to themselves)."""
    c, sims = client(with_sims=True)
    said = c.completions.create(model=MODEL, prompt="Say something.", max_tokens=8,
                                seed=9, extra_body={"ignore_eos": True}).choices[0].text
    for text in (said, "Hello world, how are you?"):
        r = post(sims[0].port, "/tokenize", {"model": MODEL, "prompt": text})
        assert r.status == 200, r.body
        ids = r.json()["tokens"]
        r = post(sims[0].port, "/detokenize", {"model": MODEL, "tokens": ids})
        decoded = r.json()["prompt"]
        assert "<|" not in decoded, decoded
        if text == said:
            assert decoded == said, (decoded, said)
        out = c.completions.create(model=MODEL, prompt=ids, max_tokens=2, echo=True,
                                   extra_body={"ignore_eos": True})
        assert out.choices[0].text.startswith(decoded), (out.choices[0].text, decoded)
        assert out.usage.prompt_tokens == len(ids), out.usage
    # A batch of id lists: one choice each.
    out = c.completions.create(model=MODEL, prompt=[ids, ids[:2]], max_tokens=1, echo=True)
    assert [x.index for x in out.choices] == [0, 1], out.choices


def test_top_logprobs():
    c = client()
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs(), max_tokens=5,
                                  logprobs=True, top_logprobs=4)
    content = r.choices[0].message.content
    toks = r.choices[0].logprobs.content
    assert "".join(t.token for t in toks) == content, (toks, content)
    for t in toks:
        alts = t.top_logprobs
        assert len(alts) == 4 and len({a.token for a in alts}) == 4, alts
        assert all(a.logprob <= 0 for a in alts), alts
        # (vLLM lists the sampled token first, so the list need not be sorted.)
        for a in alts:
            if a.token == t.token:
                assert a.logprob == t.logprob, (a, t)
    # Completions: logprobs=N gives N distinct alternatives per generated token.
    r = c.completions.create(model=MODEL, prompt="alternatives", max_tokens=5, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == r.usage.completion_tokens
    for tok, top in zip(lp.tokens, lp.top_logprobs):
        assert len(top) == 3, top  # a dict: 3 keys means 3 distinct tokens


# --- chat ------------------------------------------------------------------------------

def test_chat():
    c = client()
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs(), max_tokens=8, seed=2)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-"), r
    m = r.choices[0].message
    assert m.role == "assistant" and m.content, m
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # max_completion_tokens is the newer name of the same cap.
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs(), seed=2,
                                  max_completion_tokens=5, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5, r.usage


def test_chat_stream():
    c = client()
    args = dict(model=MODEL, messages=chat_msgs("Stream, please."), max_tokens=9, seed=4,
                extra_body={"ignore_eos": True})
    whole = c.chat.completions.create(**args).choices[0].message.content
    chunks = list(c.chat.completions.create(stream=True, stream_options={
        "include_usage": True}, **args))
    assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
    text = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
    assert text == whole, (text, whole)
    fin = [k.choices[0].finish_reason for k in chunks if k.choices]
    assert fin[-1] == "length" and not any(fin[:-1]), fin
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9


def test_continuous_usage_stats():
    """stream_options.continuous_usage_stats (vLLM): every chunk carries the running
    usage, the finish chunk included; the last one is the total."""
    c = client()
    common = dict(model=MODEL, max_tokens=6, stream=True, extra_body={"ignore_eos": True},
                  stream_options={"include_usage": True, "continuous_usage_stats": True})
    for chunks in (list(c.completions.create(prompt="count my tokens", **common)),
                   list(c.chat.completions.create(messages=chat_msgs(), **common))):
        assert all(k.usage is not None for k in chunks), [k.usage for k in chunks]
        running = [k.usage.completion_tokens for k in chunks]
        assert running == sorted(running) and running[-1] == 6, running
        assert chunks[-1].choices == [], chunks[-1]


# --- tools and structured output -------------------------------------------------------

def check_args(call, tool):
    """Arguments are a JSON object with the tool's required keys and valid enums."""
    params = tool["function"]["parameters"]
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict), args
    for k in params["required"]:
        assert k in args, (k, args)
    for k, spec in params["properties"].items():
        if k in args:
            assert isinstance(args[k], str), (k, args)
            if "enum" in spec:
                assert args[k] in spec["enum"], (k, args)
    return args


def test_tools_auto():
    """An agent's loop: the model calls the tool the user asks for, the client runs it
    and sends the result back, and the next answer is text."""
    c = client(TOOL_FLAGS)
    msgs = chat_msgs("Use get_weather: what's the weather in Paris?")
    r = c.chat.completions.create(model=MODEL, tools=[WEATHER, TIME], tool_choice="auto",
                                  messages=msgs, max_tokens=1000)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.tool_calls, ch
    call = ch.message.tool_calls[0]
    assert call.type == "function" and call.id and call.function.name == "get_weather", call
    args = check_args(call, WEATHER)
    msgs += [ch.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id,
              "content": "sunny, 21 degrees in %s" % args["city"]}]
    r = c.chat.completions.create(model=MODEL, tools=[WEATHER, TIME], tool_choice="auto",
                                  messages=msgs, max_tokens=50)
    ch = r.choices[0]
    assert not ch.message.tool_calls and ch.message.content, ch
    assert ch.finish_reason in ("stop", "length"), ch


def test_tools_required():
    c = client(TOOL_FLAGS)
    r = c.chat.completions.create(model=MODEL, tools=[WEATHER], tool_choice="required",
                                  messages=chat_msgs("Weather?"))
    calls = r.choices[0].message.tool_calls
    assert calls and all(x.function.name == "get_weather" for x in calls), r
    check_args(calls[0], WEATHER)
    # Streamed: the SDK's accumulated deltas parse to the same kind of call.
    name, argtext = None, ""
    for k in c.chat.completions.create(model=MODEL, tools=[WEATHER], tool_choice="required",
                                       messages=chat_msgs("Weather?"), stream=True):
        for ch in k.choices:
            for tc in ch.delta.tool_calls or []:
                if tc.index != 0:
                    continue
                name = name or (tc.function and tc.function.name)
                argtext += (tc.function and tc.function.arguments) or ""
    assert name == "get_weather", name
    assert {"city", "unit"} <= set(json.loads(argtext)), argtext


def test_tools_named():
    c = client(TOOL_FLAGS)
    r = c.chat.completions.create(
        model=MODEL, tools=[WEATHER, TIME], messages=chat_msgs("What time is it?"),
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_time", r
    check_args(calls[0], TIME)


def test_response_format_json_object():
    c = client()
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs("Reply in JSON."),
                                  response_format={"type": "json_object"}, max_tokens=1000)
    assert isinstance(json.loads(r.choices[0].message.content), dict), r


class City(BaseModel):
    name: str
    population: int
    coastal: bool


def test_response_format_json_schema():
    c = client()
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "size": {"type": "string", "enum": ["s", "m", "l"]},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "size", "tags"], "additionalProperties": False}
    r = c.chat.completions.create(
        model=MODEL, messages=chat_msgs("Describe a city."), max_tokens=1000,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": schema, "strict": True}})
    obj = json.loads(r.choices[0].message.content)
    assert set(obj) == {"name", "size", "tags"}, obj
    assert isinstance(obj["name"], str) and obj["size"] in ("s", "m", "l"), obj
    assert isinstance(obj["tags"], list) and all(isinstance(t, str) for t in obj["tags"])
    # The SDK's own structured parsing: a pydantic model in, a validated instance out.
    p = c.chat.completions.parse(model=MODEL, messages=chat_msgs("A city, as JSON."),
                                 response_format=City, max_tokens=1000)
    city = p.choices[0].message.parsed
    assert isinstance(city, City) and isinstance(city.population, int), p


def test_guided_json():
    """vLLM's own spelling of a JSON-schema constraint, passed as an extra body field."""
    c = client()
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    r = c.chat.completions.create(model=MODEL, messages=chat_msgs("2+2?"), max_tokens=1000,
                                  extra_body={"guided_json": schema})
    obj = json.loads(r.choices[0].message.content)
    assert isinstance(obj, dict) and isinstance(obj.get("answer"), int), obj
    r = c.completions.create(model=MODEL, prompt="JSON please:", max_tokens=1000,
                             extra_body={"guided_json": schema})
    assert isinstance(json.loads(r.choices[0].text).get("answer"), int), r


# --- models and errors -----------------------------------------------------------------

def test_models_list():
    c = client()
    ids = [m.id for m in c.models.list()]
    assert ids == [MODEL], ids


def test_models_retrieve():
    c = client()
    m = c.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model", m
    try:
        c.models.retrieve("no-such-model")
        raise AssertionError("retrieve of an unknown model succeeded")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and "no-such-model" in str(e.message), e


def test_errors():
    c = client()
    try:
        c.completions.create(model=MODEL, prompt="x", max_tokens="many")
        raise AssertionError("a string max_tokens was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and "max_tokens" in e.message, e.message
        assert e.body["param"] == "max_tokens", e.body  # the SDK unwraps {"error": ...}
    try:
        c.chat.completions.create(model="no-such-model", messages=chat_msgs())
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and "no-such-model" in e.message, e.message


def test_errors_vllm_messages():
    """vLLM's own 400s, word for word as the SDK shows them."""
    c = client()
    try:
        c.completions.create(model=MODEL, prompt="x", max_tokens=-1)
        raise AssertionError("max_tokens -1 was accepted")
    except openai.BadRequestError as e:
        assert "max_tokens must be at least 1, got -1." in e.message, e.message
    try:
        c.chat.completions.create(model=MODEL, messages=chat_msgs(), logprobs=True,
                                  top_logprobs=25)
        raise AssertionError("top_logprobs 25 was accepted")
    except openai.BadRequestError as e:
        assert "Requested sample logprobs of 25, which is greater than max allowed: 20" \
            in e.message, e.message


TESTS = [test_completions, test_completions_stream, test_completions_stream_usage,
         test_stop, test_include_stop_str_in_output, test_n_choices,
         test_echo_prompt_logprobs, test_token_id_prompts, test_top_logprobs, test_chat,
         test_chat_stream, test_continuous_usage_stats, test_tools_auto,
         test_tools_required, test_tools_named, test_response_format_json_object,
         test_response_format_json_schema, test_guided_json, test_models_list,
         test_models_retrieve, test_errors, test_errors_vllm_messages]

if __name__ == "__main__":
    assert len(TESTS) == N_TESTS, len(TESTS)
    only = sys.argv[1:]
    run([t for t in TESTS if not only or t.__name__ in only])

"""tandem sim: the OpenAI API shapes, streaming framing, models, tokenize, errors."""

import json
import subprocess

from harness import (TANDEM, get, post, request, run, sse_events, start_sim, stream)

SEED_PROMPT = (
    "Author-contribution statements and acknowledgements in research papers should state "
    "clearly and specifically whether, and to what extent, the authors used AI technologies "
    "such as ChatGPT in the preparation of their manuscript and analysis. They should also "
    "indicate which LLMs were used. This will alert editors and reviewers to scrutinize "
    "manuscripts more carefully for potential biases, inaccuracies and improper source "
    "crediting. Likewise, scientific journals should be transparent about their use of LLMs, "
    "for example when selecting submitted manuscripts. Mention the large language model "
    "based product mentioned in the paragraph above:")


def sim(*extra):
    return start_sim("--model", "facebook/opt-125m", "--profile", "fast", *extra)


def test_seed_000_completion_shape():
    s = sim("--pod-name", "decode-0")
    r = post(s.port, "/v1/completions", {"model": "facebook/opt-125m", "prompt": SEED_PROMPT})
    assert r.status == 200, r.body
    assert r.header("x-inference-pod") == "decode-0"
    assert r.header("content-type").startswith("application/json")
    j = r.json()
    # The keys of seed 000's response, at every level.
    for k in ("id", "object", "created", "model", "choices", "usage", "kv_transfer_params"):
        assert k in j, k
    assert j["object"] == "text_completion"
    assert j["id"].startswith("cmpl-")
    assert j["model"] == "facebook/opt-125m"
    assert isinstance(j["created"], int) and j["created"] > 1700000000
    assert j["kv_transfer_params"] is None
    c = j["choices"][0]
    assert set(c) >= {"index", "text", "logprobs", "finish_reason", "stop_reason",
                      "prompt_logprobs"}, c
    assert c["index"] == 0 and c["logprobs"] is None and c["stop_reason"] is None
    assert c["finish_reason"] in ("stop", "length")
    assert isinstance(c["text"], str) and c["text"]
    u = j["usage"]
    assert set(u) >= {"prompt_tokens", "completion_tokens", "total_tokens",
                      "prompt_tokens_details"}
    # ~1 token per 4 characters of English.
    assert 0.15 * len(SEED_PROMPT) < u["prompt_tokens"] < 0.4 * len(SEED_PROMPT), u
    assert 1 <= u["completion_tokens"] <= 16  # vLLM's default max_tokens for completions
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    # Deterministic: the same request gives the same text.
    r2 = post(s.port, "/v1/completions", {"model": "facebook/opt-125m", "prompt": SEED_PROMPT})
    assert r2.json()["choices"][0]["text"] == c["text"]


def test_max_tokens_ignore_eos_and_request_id():
    s = sim()
    r = post(s.port, "/v1/completions",
             {"prompt": "hello there", "max_tokens": 7, "ignore_eos": True},
             headers={"x-request-id": "abc-123"})
    j = r.json()
    assert r.header("x-request-id") == "abc-123"
    assert j["id"] == "cmpl-abc-123"
    assert j["usage"]["completion_tokens"] == 7
    assert j["choices"][0]["finish_reason"] == "length"


def test_chat_completion():
    s = sim()
    r = post(s.port, "/v1/chat/completions", {
        "model": "facebook/opt-125m", "max_tokens": 5, "ignore_eos": True,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert r.status == 200, r.body
    j = r.json()
    assert j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-")
    m = j["choices"][0]["message"]
    assert m["role"] == "assistant" and isinstance(m["content"], str) and m["content"]
    assert j["choices"][0]["finish_reason"] == "length"
    assert j["usage"]["completion_tokens"] == 5


def check_chunk_common(c, obj):
    assert c["object"] == obj and c["model"] == "facebook/opt-125m", c
    assert isinstance(c["created"], int) and c["id"]


def test_chat_streaming_framing():
    s = sim()
    status, headers, raw, _ = stream(s.port, "/v1/chat/completions", {
        "model": "facebook/opt-125m", "stream": True, "max_tokens": 6, "ignore_eos": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "tell me a story"}]})
    assert status == 200
    h = {k.lower(): v for k, v in headers}
    assert h["content-type"].startswith("text/event-stream")
    assert h.get("transfer-encoding") == "chunked"
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for c in chunks:
        check_chunk_common(c, "chat.completion.chunk")
    role, tokens, usage = chunks[0], chunks[1:-1], chunks[-1]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert role["choices"][0]["finish_reason"] is None
    assert len(tokens) == 6, tokens
    for t in tokens:
        d = t["choices"][0]
        assert set(d["delta"]) == {"content"} and d["delta"]["content"]
    # The last token's chunk carries finish_reason (no empty-delta chunk after it).
    assert [t["choices"][0]["finish_reason"] for t in tokens] == [None] * 5 + ["length"]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 6
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 6
    # Without include_usage: no usage chunk.
    _, _, raw2, _ = stream(s.port, "/v1/chat/completions", {
        "stream": True, "max_tokens": 3, "ignore_eos": True,
        "messages": [{"role": "user", "content": "x"}]})
    ev2 = sse_events(raw2)
    assert ev2[-1] == "[DONE]"
    last = json.loads(ev2[-2])
    assert last["choices"][0]["finish_reason"] == "length" and "usage" not in last


def test_completion_streaming_text_matches_non_streaming():
    s = sim()
    body = {"prompt": "the quick brown fox", "max_tokens": 12, "seed": 7}
    full = post(s.port, "/v1/completions", body).json()
    status, _, raw, _ = stream(s.port, "/v1/completions", dict(body, stream=True))
    assert status == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for c in chunks:
        check_chunk_common(c, "text_completion")
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == full["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]


def test_stop_strings_echo_logprobs():
    s = start_sim("--profile", "fast", "--mode", "echo")
    r = post(s.port, "/v1/completions",
             {"prompt": "alpha beta gamma delta", "max_tokens": 50, "stop": [" gamma"]})
    c = r.json()["choices"][0]
    assert c["text"] == "alpha beta", c
    assert c["finish_reason"] == "stop" and c["stop_reason"] == " gamma"
    r = post(s.port, "/v1/completions",
             {"prompt": "one two", "max_tokens": 3, "echo": True, "logprobs": 2})
    c = r.json()["choices"][0]
    assert c["text"].startswith("one two"), c["text"]
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"])
    assert lp["token_logprobs"][0] is None  # the first prompt token has no logprob
    assert all(isinstance(x, float) for x in lp["token_logprobs"][1:])
    # The sampled token plus the top 2: 2 entries, or 3 when the sampled one is not in them.
    assert all(2 <= len(t) <= 3 for t in lp["top_logprobs"][1:])
    assert "".join(lp["tokens"]) == c["text"]
    r = post(s.port, "/v1/chat/completions",
             {"messages": [{"role": "user", "content": "say this back"}], "logprobs": True,
              "top_logprobs": 2})
    c = r.json()["choices"][0]
    assert c["message"]["content"] == "say this back"
    content = c["logprobs"]["content"]
    assert "".join(x["token"] for x in content) == "say this back"
    assert all(len(x["top_logprobs"]) == 2 for x in content)


def test_logprobs_are_greedy_consistent():
    s = sim()
    # Temperature 0: every sampled token is the argmax.
    j = post(s.port, "/v1/completions", {"prompt": "x y z", "max_tokens": 8, "logprobs": 5,
                                         "ignore_eos": True, "temperature": 0}).json()
    lp = j["choices"][0]["logprobs"]
    for tok, top in zip(lp["tokens"], lp["top_logprobs"]):
        assert len(top) == 5, top  # distinct alternatives
        assert max(top, key=top.get) == tok, (tok, top)
    c = post(s.port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}],
                                              "max_tokens": 6, "logprobs": True,
                                              "top_logprobs": 4}).json()
    for entry in c["choices"][0]["logprobs"]["content"]:
        # vLLM lists the sampled token first, then the most likely others, best first.
        top = entry["top_logprobs"]
        assert top[0]["token"] == entry["token"] and top[0]["logprob"] == entry["logprob"]
        vals = [t["logprob"] for t in top[1:]]
        assert vals == sorted(vals, reverse=True), entry
        assert len({t["token"] for t in top}) == 4


def test_streaming_echo_logprob_offsets():
    s = sim()
    body = {"prompt": "hello world", "max_tokens": 3, "echo": True, "logprobs": 1,
            "ignore_eos": True}
    full = post(s.port, "/v1/completions", body).json()["choices"][0]["logprobs"]
    _, _, raw, _ = stream(s.port, "/v1/completions", dict(body, stream=True))
    offs = []
    for e in sse_events(raw)[:-1]:
        lp = json.loads(e)["choices"][0]["logprobs"]
        if lp:
            offs += lp["text_offset"]
    # The prompt's logprobs come with the first token, as vLLM streams echo.
    assert offs == full["text_offset"], (offs, full["text_offset"])
    n_prompt = len(full["tokens"]) - 3
    assert offs[n_prompt] == len("hello world")


def test_engine_ended_sequence_reports_what_it_produced():
    # max-model-len above the cache: a sequence can outgrow all 4 blocks (64 tokens) and
    # is ended early; its text must match the tokens it produced.
    s = start_sim("--profile", "fast", "--num-gpu-blocks", "4", "--max-model-len", "200")
    j = post(s.port, "/v1/completions", {"prompt": "x", "max_tokens": 150,
                                         "ignore_eos": True}).json()
    c = j["choices"][0]
    n = j["usage"]["completion_tokens"]
    assert n < 150 and c["finish_reason"] == "length", j
    assert post(s.port, "/tokenize", {"prompt": c["text"]}).json()["count"] == n


def test_batched_prompts_and_token_ids():
    s = sim()
    r = post(s.port, "/v1/completions",
             {"prompt": ["first prompt", "second prompt"], "max_tokens": 4, "ignore_eos": True})
    j = r.json()
    assert [c["index"] for c in j["choices"]] == [0, 1]
    assert j["usage"]["completion_tokens"] == 8
    r = post(s.port, "/v1/completions", {"prompt": [11, 22, 33, 44], "max_tokens": 2})
    assert r.status == 200 and r.json()["usage"]["prompt_tokens"] == 4


def test_models_health_version():
    s = sim("--served-model-name", "opt,facebook/opt-125m", "--max-model-len", "2048")
    j = get(s.port, "/v1/models").json()
    assert j["object"] == "list"
    assert [m["id"] for m in j["data"]] == ["opt", "facebook/opt-125m"]
    for m in j["data"]:
        assert m["object"] == "model" and m["max_model_len"] == 2048
        assert m["root"] == "facebook/opt-125m"  # the --model path, as vLLM reports it
        assert "created" in m and "owned_by" in m
    assert get(s.port, "/health").status == 200
    assert get(s.port, "/health/ready").status == 200
    assert "version" in get(s.port, "/version").json()
    # The first served name is the one reported; the second is accepted.
    r = post(s.port, "/v1/completions", {"model": "facebook/opt-125m", "prompt": "x"})
    assert r.status == 200 and r.json()["model"] == "opt"


def test_tokenize_detokenize():
    s = sim()
    j = post(s.port, "/tokenize", {"prompt": "Hello world, hello tandem!"}).json()
    assert j["count"] == len(j["tokens"]) > 3
    again = post(s.port, "/tokenize", {"prompt": "Hello world, hello tandem!"}).json()
    assert again["tokens"] == j["tokens"]
    # Generated text round-trips: tokenize what the sim said, detokenize the ids.
    out = post(s.port, "/v1/completions", {"prompt": "x", "max_tokens": 8}).json()
    text = out["choices"][0]["text"]
    ids = post(s.port, "/tokenize", {"prompt": text}).json()["tokens"]
    back = post(s.port, "/detokenize", {"tokens": ids}).json()
    assert back["prompt"] == text, (back, text)
    chat = post(s.port, "/tokenize", {"messages": [{"role": "user", "content": "hi"}]}).json()
    assert chat["count"] > 1
    assert post(s.port, "/detokenize", {"tokens": ["x"]}).status == 400


def err_of(r):
    j = r.json()
    assert set(j) == {"error"}, j
    e = j["error"]
    assert set(e) >= {"message", "type", "code"}, e
    assert e["code"] == r.status
    return e


def test_errors_name_the_field():
    s = sim("--max-model-len", "64")
    cases = [
        (b"{not json", 400, "invalid JSON"),
        (b"[1,2]", 400, "JSON object"),
        ({"prompt": 5}, 400, "'prompt'"),
        ({"prompt": "x", "max_tokens": "ten"}, 400, "'max_tokens' must be an integer"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens must be at least 1, got 0."),
        ({"prompt": "x", "stream": "yes"}, 400, "'stream' must be a boolean"),
        ({"prompt": "x", "n": 0}, 400, "n must be at least 1"),
        ({"prompt": "x", "stop": [1]}, 400, "'stop[0]'"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
        ({}, 400, "'prompt' is required"),
        ({"prompt": "word " * 100}, 400, "maximum context length is 64"),
        ({"prompt": "x", "max_tokens": 100}, 400, "maximum context length is 64"),
        ({"prompt": "x", "model": "nope"}, 404, "does not exist"),
    ]
    for body, status, needle in cases:
        r = post(s.port, "/v1/completions", body)
        assert r.status == status, (body, r.status, r.body)
        e = err_of(r)
        assert needle in e["message"], (body, e)
    r = post(s.port, "/v1/chat/completions", {"messages": [{"content": "no role"}]})
    assert r.status == 400 and "role" in err_of(r)["message"]
    r = post(s.port, "/v1/chat/completions", {"messages": []})
    assert r.status == 400 and "'messages'" in err_of(r)["message"]
    assert request(s.port, "GET", "/v1/completions").status == 405
    assert get(s.port, "/nope").status == 404
    # Still healthy after all that.
    assert post(s.port, "/v1/completions", {"prompt": "ok"}).status == 200


def test_cli_help_and_bad_flags():
    out = subprocess.run([TANDEM, "sim", "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--profile" in out.stdout and "--time-scale" in out.stdout
    out = subprocess.run([TANDEM, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "sim" in out.stdout
    out = subprocess.run([TANDEM, "version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("tandem ")
    out = subprocess.run([TANDEM, "sim", "--port", "abc"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "--port" in out.stderr and "abc" in out.stderr
    out = subprocess.run([TANDEM, "sim", "--prot", "1"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "--prot" in out.stderr
    out = subprocess.run([TANDEM, "sim", "--profile", "nope"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "nope" in out.stderr and "h100-32b" in out.stderr
    out = subprocess.run([TANDEM, "frobnicate"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "frobnicate" in out.stderr


def test_vllm_command_line_runs_as_is():
    # A vLLM manifest's args: positional model, flags the sim ignores with a note.
    s = start_sim("serve", "Qwen/Qwen3-32B", "--profile", "fast", "--tensor-parallel-size", "2",
                  "--enforce-eager", "--gpu-memory-utilization=0.9",
                  "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}')
    assert "ignoring vLLM flag --tensor-parallel-size" in s.output()
    r = post(s.port, "/v1/completions", {"model": "Qwen/Qwen3-32B", "prompt": "hi"})
    assert r.status == 200 and r.json()["model"] == "Qwen/Qwen3-32B"


if __name__ == "__main__":
    run([test_seed_000_completion_shape, test_max_tokens_ignore_eos_and_request_id,
         test_chat_completion, test_chat_streaming_framing,
         test_completion_streaming_text_matches_non_streaming, test_stop_strings_echo_logprobs,
         test_logprobs_are_greedy_consistent, test_streaming_echo_logprob_offsets,
         test_engine_ended_sequence_reports_what_it_produced,
         test_batched_prompts_and_token_ids, test_models_health_version,
         test_tokenize_detokenize, test_errors_name_the_field, test_cli_help_and_bad_flags,
         test_vllm_command_line_runs_as_is])

"""tandem sim: the rest of vLLM's OpenAI API - n > 1, echo without generation (lm-eval's
loglikelihood requests), prompt_logprobs, top-N logprobs that are consistent across
requests, token-id prompts that read as text, include_stop_str_in_output,
continuous usage stats, vLLM's 400s, model cards, /tokenizer_info, realistic lengths."""

import json
import re
import urllib.parse

from harness import get, post, run, sse_events, start_sim, stream


def sim(*extra):
    return start_sim("--model", "facebook/opt-125m", "--profile", "fast", *extra)


def chunks_of(raw):
    events = sse_events(raw)
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def test_n_choices_completions():
    s = sim()
    body = {"prompt": ["first prompt here", "and a second one"], "n": 3, "max_tokens": 20,
            "ignore_eos": True, "seed": 5}
    j = post(s.port, "/v1/completions", body).json()
    ch = j["choices"]
    # vLLM numbers choices prompt-major: index = prompt_idx * n + i.
    assert [c["index"] for c in ch] == list(range(6)), ch
    for p in range(2):
        texts = [ch[p * 3 + i]["text"] for i in range(3)]
        assert all(texts) and len(set(texts)) >= 2, texts  # independent sequences
    # Usage: each prompt counted once, completions summed over every choice.
    one = [post(s.port, "/v1/completions", {"prompt": p, "max_tokens": 1}).json()["usage"]
           ["prompt_tokens"] for p in body["prompt"]]
    assert j["usage"]["prompt_tokens"] == sum(one), (j["usage"], one)
    assert j["usage"]["completion_tokens"] == 6 * 20
    assert j["usage"]["total_tokens"] == sum(one) + 120
    # Deterministic given the seed; choice 0 of a prompt is what n=1 gives.
    again = post(s.port, "/v1/completions", body).json()
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in ch]
    single = post(s.port, "/v1/completions", dict(body, prompt=body["prompt"][1], n=1)).json()
    assert single["choices"][0]["text"] == ch[3]["text"]
    other_seed = post(s.port, "/v1/completions", dict(body, seed=6)).json()
    assert [c["text"] for c in other_seed["choices"]] != [c["text"] for c in ch]


def test_n_choices_chat_streaming():
    s = sim()
    body = {"messages": [{"role": "user", "content": "tell me two things"}], "n": 2,
            "max_tokens": 24, "ignore_eos": True, "seed": 1}
    full = post(s.port, "/v1/chat/completions", body).json()
    assert [c["index"] for c in full["choices"]] == [0, 1]
    texts = [c["message"]["content"] for c in full["choices"]]
    assert texts[0] != texts[1], texts
    status, _, raw, _ = stream(s.port, "/v1/chat/completions", dict(
        body, stream=True, stream_options={"include_usage": True}))
    assert status == 200
    chunks = chunks_of(raw)
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 48
    got, finished = {0: "", 1: ""}, {}
    roles = [c["choices"][0]["index"] for c in chunks[:-1]
             if "role" in c["choices"][0]["delta"]]
    assert roles == [0, 1], roles
    for c in chunks[:-1]:
        assert len(c["choices"]) == 1
        d = c["choices"][0]
        i = d["index"]
        assert i not in finished, "a chunk after choice %d finished" % i
        got[i] += d["delta"].get("content", "")
        if d["finish_reason"] is not None:
            # The last content chunk carries finish_reason: no empty delta after it.
            assert d["delta"].get("content"), d
            finished[i] = d["finish_reason"]
    assert finished == {0: "length", 1: "length"}
    assert [got[0], got[1]] == texts


def logprobs_of(port, prompt, max_tokens, **extra):
    body = {"prompt": prompt, "max_tokens": max_tokens, "logprobs": 1, "ignore_eos": True}
    body.update(extra)
    return post(port, "/v1/completions", body).json()["choices"][0]


def test_echo_without_generation_is_lm_eval_loglikelihood():
    s = sim()
    context, continuation = "Question: what holds the cache?\nAnswer:", " The engine"
    # What lm-eval sends: echo, max_tokens 0, logprobs, temperature 0.
    j = post(s.port, "/v1/completions", {
        "model": "facebook/opt-125m", "prompt": context + continuation, "echo": True,
        "max_tokens": 0, "logprobs": 1, "temperature": 0.0}).json()
    c = j["choices"][0]
    assert c["text"] == context + continuation
    assert c["finish_reason"] == "length"
    assert j["usage"]["completion_tokens"] == 0
    n = j["usage"]["prompt_tokens"]
    assert j["usage"]["total_tokens"] == n
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == n
    assert "".join(lp["tokens"]) == c["text"]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["text_offset"][0] == 0
    for tok, val, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
        assert isinstance(val, float) and val < 0
        assert top[tok] == val and 1 <= len(top) <= 2, (tok, top)
    # lm-eval's computation: continuation loglikelihood and whether it is greedy.
    ctx_len = len(context)
    idx = lp["text_offset"].index(ctx_len)
    ll = sum(lp["token_logprobs"][idx:])
    greedy = all(max(top, key=top.get) == tok
                 for tok, top in zip(lp["tokens"][idx:], lp["top_logprobs"][idx:]))
    assert ll < 0 and not greedy  # arbitrary text is not what the model would say
    # vLLM also fills prompt_logprobs when echo scores the prompt.
    assert c["prompt_logprobs"][0] is None and len(c["prompt_logprobs"]) == n


def test_logprobs_are_functions_of_context_position_token():
    s = sim()
    prompt = "Notes on the router:\n"
    # The same prompt scores the same whatever max_tokens, stream or echo.
    short = logprobs_of(s.port, prompt, 5, temperature=0)["logprobs"]
    long = logprobs_of(s.port, prompt, 30, temperature=0)["logprobs"]
    assert long["tokens"][:5] == short["tokens"]
    assert long["token_logprobs"][:5] == short["token_logprobs"]
    assert long["top_logprobs"][:5] == short["top_logprobs"]
    _, _, raw, _ = stream(s.port, "/v1/completions", {
        "prompt": prompt, "max_tokens": 30, "logprobs": 1, "ignore_eos": True,
        "temperature": 0, "stream": True})
    streamed = [x for c in chunks_of(raw) for x in c["choices"][0]["logprobs"]["token_logprobs"]]
    assert streamed == long["token_logprobs"]
    # Greedy output is the argmax everywhere (but where ignore_eos passed over the end of
    # text)...
    for tok, top in zip(long["tokens"], long["top_logprobs"]):
        assert max(top, key=top.get) in (tok, "<|endoftext|>"), (tok, top)
    # ...and echoing it back scores each token exactly as when it was generated.
    text = "".join(long["tokens"])
    echo = post(s.port, "/v1/completions", {"prompt": prompt + text, "echo": True,
                                            "max_tokens": 0, "logprobs": 1}).json()
    elp = echo["choices"][0]["logprobs"]
    assert elp["tokens"][-30:] == long["tokens"]
    assert elp["token_logprobs"][-30:] == long["token_logprobs"]
    assert elp["top_logprobs"][-30:] == long["top_logprobs"]
    # Sampling (temperature 1, the default) sometimes takes a token that is not the argmax;
    # its top_logprobs then lists it plus the argmax, which scores higher.
    strays = 0
    for seed in range(4):
        out = logprobs_of(s.port, prompt, 60, seed=seed)["logprobs"]
        for tok, top in zip(out["tokens"], out["top_logprobs"]):
            best = max(top, key=top.get)
            if best != tok:
                strays += 1
                assert len(top) == 2 and top[best] > top[tok], (tok, top)
    assert strays > 0


def test_top_logprobs_are_distinct_and_ranked():
    s = sim()
    out = logprobs_of(s.port, "The cache", 20, logprobs=5)["logprobs"]
    for tok, top in zip(out["tokens"], out["top_logprobs"]):
        assert 5 <= len(top) <= 6 and tok in top, top
    c = post(s.port, "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "q"}], "max_tokens": 30, "logprobs": True,
        "top_logprobs": 5, "ignore_eos": True, "seed": 3}).json()["choices"][0]
    for e in c["logprobs"]["content"]:
        top = e["top_logprobs"]
        assert len(top) == 5 and len({t["token"] for t in top}) == 5
        # vLLM: the sampled token first, then the most likely others in rank order.
        assert top[0]["token"] == e["token"] and top[0]["logprob"] == e["logprob"]
        rest = [t["logprob"] for t in top[1:]]
        assert rest == sorted(rest, reverse=True)
        assert bytes(e["bytes"]).decode() == e["token"]
        if rest[0] > e["logprob"]:  # not the argmax: the argmax is listed next
            assert all(t["token"] != e["token"] for t in top[1:])


def test_prompt_logprobs_shape():
    s = sim()
    prompt = "alpha beta gamma"
    ids = post(s.port, "/tokenize", {"prompt": prompt}).json()["tokens"]
    c = post(s.port, "/v1/completions", {"prompt": prompt, "max_tokens": 2,
                                         "prompt_logprobs": 2}).json()["choices"][0]
    pl = c["prompt_logprobs"]
    assert len(pl) == len(ids) and pl[0] is None
    for tid, entry in zip(ids[1:], pl[1:]):
        assert str(tid) in entry, (tid, entry)
        assert 2 <= len(entry) <= 3
        ranks = sorted(v["rank"] for v in entry.values())
        assert ranks[:2] == [1, 2] or entry[str(tid)]["rank"] in (1, 2), entry
        for k, v in entry.items():
            assert k.isdigit() and set(v) == {"logprob", "rank", "decoded_token"}
            assert isinstance(v["decoded_token"], str) and v["logprob"] < 0
        best = max(entry.values(), key=lambda v: v["logprob"])
        assert best["rank"] == 1
    # The echo logprobs of the same prompt agree with prompt_logprobs.
    echo = post(s.port, "/v1/completions", {"prompt": prompt, "max_tokens": 0, "echo": True,
                                            "logprobs": 0}).json()["choices"][0]
    assert echo["logprobs"]["token_logprobs"][1:] == \
        [e[str(t)]["logprob"] for t, e in zip(ids[1:], pl[1:])]
    # Chat: top-level prompt_logprobs over the rendered prompt.
    j = post(s.port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                              "max_tokens": 2, "prompt_logprobs": 0}).json()
    assert j["prompt_logprobs"][0] is None and len(j["prompt_logprobs"]) == \
        j["usage"]["prompt_tokens"]
    assert all(len(e) == 1 for e in j["prompt_logprobs"][1:])
    r = post(s.port, "/v1/completions", {"prompt": "x", "prompt_logprobs": 1, "stream": True})
    assert r.status == 400 and r.json()["error"]["message"] == \
        "`prompt_logprobs` are not available when `stream=True`."


def test_token_id_prompts_read_as_text():
    s = sim()
    ids = [464, 3290, 318, 50256 - 1]
    det = post(s.port, "/detokenize", {"tokens": ids}).json()["prompt"]
    assert det and "<|" not in det and re.fullmatch(r"[ a-zA-Z.,']+", det), det
    assert post(s.port, "/detokenize", {"tokens": ids}).json()["prompt"] == det  # stable
    c = post(s.port, "/v1/completions", {"prompt": ids, "echo": True, "max_tokens": 3,
                                         "logprobs": 1, "ignore_eos": True}).json()
    ch = c["choices"][0]
    assert ch["text"].startswith(det), (ch["text"], det)
    assert "".join(ch["logprobs"]["tokens"]) == ch["text"]
    # Vocabulary ids keep their own text.
    known = post(s.port, "/tokenize", {"prompt": " the model"}).json()["tokens"]
    assert post(s.port, "/detokenize", {"tokens": known}).json()["prompt"] == " the model"
    # A batch of id lists echoes each.
    j = post(s.port, "/v1/completions", {"prompt": [ids[:2], ids[2:]], "echo": True,
                                         "max_tokens": 0}).json()
    assert "".join(c["text"] for c in j["choices"]) == det


def test_include_stop_str_and_continuous_usage():
    s = start_sim("--profile", "fast", "--mode", "echo")
    body = {"prompt": "alpha beta gamma delta", "max_tokens": 50, "stop": [" gamma"]}
    assert post(s.port, "/v1/completions", body).json()["choices"][0]["text"] == "alpha beta"
    c = post(s.port, "/v1/completions",
             dict(body, include_stop_str_in_output=True)).json()["choices"][0]
    assert c["text"] == "alpha beta gamma" and c["stop_reason"] == " gamma"
    assert c["finish_reason"] == "stop"
    # Streaming, with the stop string: the text still ends with it.
    _, _, raw, _ = stream(s.port, "/v1/completions",
                          dict(body, include_stop_str_in_output=True, stream=True))
    ch = chunks_of(raw)
    assert "".join(x["choices"][0]["text"] for x in ch) == "alpha beta gamma"
    assert ch[-1]["choices"][0]["finish_reason"] == "stop"
    # continuous_usage_stats: usage on every chunk (vLLM needs include_usage with it).
    _, _, raw, _ = stream(s.port, "/v1/completions", {
        "prompt": "one two three four", "max_tokens": 4, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    ch = chunks_of(raw)
    prompt_tokens = ch[-1]["usage"]["prompt_tokens"]
    done = [x["usage"]["completion_tokens"] for x in ch[:-1]]
    assert done == list(range(1, len(done) + 1)), done
    for x in ch:
        u = x["usage"]
        assert u["prompt_tokens"] == prompt_tokens
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert ch[-1]["choices"] == [] and ch[-1]["usage"]["completion_tokens"] == done[-1]
    _, _, raw, _ = stream(s.port, "/v1/completions", {
        "prompt": "one two", "max_tokens": 2, "stream": True,
        "stream_options": {"continuous_usage_stats": True}})
    assert all("usage" not in x for x in chunks_of(raw))
    # Chat: the role chunk carries usage too.
    _, _, raw, _ = stream(s.port, "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 3, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    ch = chunks_of(raw)
    assert ch[0]["choices"][0]["delta"].get("role") == "assistant"
    assert ch[0]["usage"]["completion_tokens"] == 0
    assert all("usage" in x for x in ch)


def test_vllm_400s():
    s = sim()
    cases = [
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix",
         "suffix is not currently supported"),
        ("/v1/completions", {"prompt": "x", "n": 2, "best_of": 1}, "best_of",
         "best_of must be greater than or equal to n, got n=2 and best_of=1."),
        ("/v1/completions", {"prompt": "x", "best_of": 2, "stream": True}, "best_of",
         "best_of must equal n to use output_kind=DELTA"),
        ("/v1/completions", {"prompt": "x", "top_p": 0}, "top_p",
         "top_p must be in (0, 1], got 0.0."),
        ("/v1/completions", {"prompt": "x", "temperature": -1}, "temperature",
         "temperature must be non-negative, got -1.0."),
        ("/v1/completions", {"prompt": "x", "logprobs": 21}, "logprobs",
         "Requested sample logprobs of 21, which is greater than max allowed: 20"),
        ("/v1/completions", {"prompt": "x", "n": 0}, "n", "n must be at least 1, got 0."),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "top_logprobs": 3}, "top_logprobs",
         "when using `top_logprobs`, `logprobs` must be set to true."),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                  "logprobs": True, "top_logprobs": 21}, "top_logprobs",
         "Requested sample logprobs of 21, which is greater than max allowed: 20"),
    ]
    for path, body, param, message in cases:
        r = post(s.port, path, body)
        assert r.status == 400, (body, r.status, r.body)
        e = r.json()["error"]
        assert e["message"] == message and e["param"] == param and e["code"] == 400, (body, e)
        assert e["type"] == "BadRequestError"
    # One request's planned output is bounded (it is decided up front).
    big = start_sim("--profile", "fast", "--max-model-len", "200000")
    r = post(big.port, "/v1/completions", {"prompt": "x", "n": 128, "max_tokens": 100000})
    assert r.status == 400 and r.json()["error"]["param"] == "max_tokens", r.body
    assert post(big.port, "/v1/completions", {"prompt": "x", "n": 4}).status == 200
    # best_of >= n without streaming is accepted (n choices come back).
    j = post(s.port, "/v1/completions", {"prompt": "x", "n": 2, "best_of": 3,
                                         "max_tokens": 3}).json()
    assert len(j["choices"]) == 2
    assert post(s.port, "/v1/completions", {"prompt": "x", "suffix": None}).status == 200


def test_model_card_and_tokenizer_info():
    s = sim("--served-model-name", "opt,facebook/opt-125m", "--max-model-len", "2048")
    listed = get(s.port, "/v1/models").json()["data"]
    for name, card in (("opt", listed[0]), ("facebook/opt-125m", listed[1])):
        for path in ("/v1/models/" + name, "/v1/models/" + urllib.parse.quote(name, safe="")):
            r = get(s.port, path)
            assert r.status == 200, (path, r.body)
            assert r.json() == card, (r.json(), card)
    j = get(s.port, "/v1/models/opt").json()
    assert j["id"] == "opt" and j["object"] == "model" and j["owned_by"] == "vllm"
    assert j["max_model_len"] == 2048 and j["root"] == "facebook/opt-125m"
    r = get(s.port, "/v1/models/gpt-4")
    assert r.status == 404
    assert r.json() == {"error": {"message": "The model `gpt-4` does not exist.",
                                  "type": "NotFoundError", "param": "model", "code": 404}}
    info = get(s.port, "/tokenizer_info").json()
    assert info["tokenizer_class"] and info["model_max_length"] == 2048
    assert info["vocab_size"] == 50257 and info["eos_token"] == "<|endoftext|>"
    assert "<|im_start|>" in info["chat_template"]


def test_default_length_reads_like_text():
    s = sim()
    stops, lengths = 0, []
    for i in range(12):
        c = post(s.port, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "question number %d" % i}]}).json()
        text = c["choices"][0]["message"]["content"]
        n = c["usage"]["completion_tokens"]
        lengths.append(n)
        assert text[0].isupper(), text  # a capitalized first word, no leading space
        if c["choices"][0]["finish_reason"] == "stop":
            stops += 1
            assert text.endswith("."), text  # end of text right after a period
        for m in re.finditer(r"\. (.)", text):
            assert m.group(1).isupper(), text
    assert stops >= 10 and sum(lengths) / len(lengths) >= 8, lengths
    # Completions (default max_tokens 16): each runs to the cap or ends a sentence.
    total = 0
    for i in range(12):
        j = post(s.port, "/v1/completions", {"prompt": "Item %d." % i}).json()
        c = j["choices"][0]
        total += j["usage"]["completion_tokens"]
        if c["finish_reason"] == "stop":
            assert c["text"].endswith("."), c
        assert c["text"].startswith(" ") and c["text"][1].isupper(), c  # a new sentence
    assert total / 12 >= 8
    # Temperature 0 is deterministic and seed-independent; --mode echo still echoes.
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 30}
    a = post(s.port, "/v1/chat/completions", dict(body, seed=1)).json()
    b = post(s.port, "/v1/chat/completions", dict(body, seed=2)).json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]


if __name__ == "__main__":
    run([test_n_choices_completions, test_n_choices_chat_streaming,
         test_echo_without_generation_is_lm_eval_loglikelihood,
         test_logprobs_are_functions_of_context_position_token,
         test_top_logprobs_are_distinct_and_ranked, test_prompt_logprobs_shape,
         test_token_id_prompts_read_as_text, test_include_stop_str_and_continuous_usage,
         test_vllm_400s, test_model_card_and_tokenizer_info,
         test_default_length_reads_like_text])

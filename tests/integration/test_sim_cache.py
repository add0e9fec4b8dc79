"""tandem sim: prefix cache hits, LRU eviction, preemption, prompts beyond max-model-len."""

import json
import threading

from harness import metric, post, run, sse_events, start_sim, stream


def words(tag, n):
    return " ".join("%s%d" % (tag, i) for i in range(n))


def ttft(port, prompt):
    """Seconds to the first token chunk, and the final usage."""
    status, _, raw, pieces = stream(port, "/v1/completions", {
        "prompt": prompt, "max_tokens": 2, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}})
    assert status == 200
    first = None
    for t, chunk in pieces:
        if b'"text":"' in chunk:
            first = t
            break
    events = sse_events(raw)
    usage = json.loads(events[-2])["usage"]
    return first, usage


def test_prefix_cache_hit_second_time():
    # time-scale 50: a ~4k-token prefill takes ~50 ms, a cached one a few ms.
    s = start_sim("--profile", "fast", "--time-scale", "50")
    prompt = words("tok", 1300)
    hits0 = metric(s.port, "vllm:prefix_cache_hits_total")
    t1, u1 = ttft(s.port, prompt)
    t2, u2 = ttft(s.port, prompt)
    assert u1["prompt_tokens_details"]["cached_tokens"] == 0, u1
    cached = u2["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0.9 * u2["prompt_tokens"], u2
    assert cached % 16 == 0  # whole blocks
    assert t2 < t1 * 0.6, (t1, t2)
    hits = metric(s.port, "vllm:prefix_cache_hits_total")
    assert hits - hits0 == cached, (hits0, hits, cached)
    assert metric(s.port, "vllm:prefix_cache_queries_total") >= 2 * u1["prompt_tokens"]


def test_generated_blocks_are_cached_too():
    s = start_sim("--profile", "fast", "--mode", "random")
    prompt = words("w", 40)
    out = post(s.port, "/v1/completions",
               {"prompt": prompt, "max_tokens": 64, "ignore_eos": True}).json()
    follow = prompt + out["choices"][0]["text"]
    u = post(s.port, "/v1/completions", {"prompt": follow, "max_tokens": 1}).json()["usage"]
    # More than the original prompt's blocks are cached: the output's blocks were kept.
    assert u["prompt_tokens_details"]["cached_tokens"] > out["usage"]["prompt_tokens"], u


def test_lru_eviction():
    # 64 blocks x 16 tokens: a and b take 25 blocks each; c's 40 force evictions, and the
    # least recently used blocks (all of a's) go first.
    s = start_sim("--profile", "fast", "--num-gpu-blocks", "64", "--max-model-len", "1024")
    a, b, c = words("a", 200), words("b", 200), words("c", 320)
    for p in (a, b, c):
        r = post(s.port, "/v1/completions", {"prompt": p, "max_tokens": 1})
        assert r.status == 200, r.body
    # b (more recent) survived; a (least recently used) was evicted to make room for c.
    ub = post(s.port, "/v1/completions", {"prompt": b, "max_tokens": 1}).json()["usage"]
    ua = post(s.port, "/v1/completions", {"prompt": a, "max_tokens": 1}).json()["usage"]
    assert ub["prompt_tokens_details"]["cached_tokens"] >= ub["prompt_tokens"] - 16, ub
    assert ua["prompt_tokens_details"]["cached_tokens"] == 0, ua


def test_preemption_when_kv_runs_out():
    # 32 blocks = 512 tokens; six sequences growing to ~215 tokens each cannot all fit.
    # time-scale 20 makes each run ~0.3 s, so all six overlap even on a loaded machine.
    s = start_sim("--profile", "fast", "--num-gpu-blocks", "32", "--max-model-len", "512",
                  "--time-scale", "20")
    results = [None] * 6

    def one(i):
        results[i] = post(s.port, "/v1/completions", {
            "prompt": words("p%d_" % i, 30), "max_tokens": 150, "ignore_eos": True},
            timeout=60)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for r in results:
        assert r is not None and r.status == 200, r and r.body
        assert r.json()["usage"]["completion_tokens"] == 150
    assert metric(s.port, "vllm:num_preemptions_total") > 0
    assert metric(s.port, "vllm:num_requests_running") == 0
    assert metric(s.port, "vllm:kv_cache_usage_perc") == 0


def test_prompt_larger_than_cache_is_rejected():
    s = start_sim("--profile", "fast", "--num-gpu-blocks", "8", "--max-model-len", "4096")
    r = post(s.port, "/v1/completions", {"prompt": words("x", 400), "max_tokens": 1})
    assert r.status == 400 and "KV blocks" in r.json()["error"]["message"], r.body


if __name__ == "__main__":
    run([test_prefix_cache_hit_second_time, test_generated_blocks_are_cached_too,
         test_lru_eviction, test_preemption_when_kv_runs_out,
         test_prompt_larger_than_cache_is_rejected])

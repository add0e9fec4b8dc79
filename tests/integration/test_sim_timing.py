"""tandem sim: measured TTFT and ITL follow the engine model's formula.

With --profile fast --time-scale 100 the step costs are: base 8 ms, prefill 40,000
tokens/s, 30 us per decoding sequence, 50 ns per context token of decodes. Client-side
measurements carry loopback and timer jitter (~1 ms), so the tolerances are generous but
would still catch a model that ignored load, prompt length or the time scale.
"""

import json
import threading

from harness import metric, run, sse_events, start_sim, stream

BASE, PREFILL_RATE, PER_SEQ, PER_CTX = 0.008, 40000.0, 30e-6, 50e-9


def timed_stream(port, prompt_words, max_tokens):
    status, _, raw, pieces = stream(port, "/v1/completions", {
        "prompt": " ".join("w%d" % i for i in range(prompt_words)), "max_tokens": max_tokens,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}},
        timeout=60)
    assert status == 200
    times, pending = [], b""
    for t, chunk in pieces:
        pending += chunk
        while b"\n\n" in pending:
            ev, pending = pending.split(b"\n\n", 1)
            if ev.startswith(b"data: {"):
                j = json.loads(ev[6:])
                if j["choices"] and j["choices"][0].get("text"):
                    times.append(t)
    usage = json.loads(sse_events(raw)[-2])["usage"]
    return times, usage


def test_single_request_ttft_and_itl():
    s = start_sim("--profile", "fast", "--time-scale", "100")
    times, usage = timed_stream(s.port, 300, 40)
    p = usage["prompt_tokens"]
    assert len(times) == 40, len(times)
    want_ttft = BASE + p / PREFILL_RATE
    ttft = times[0]
    assert want_ttft * 0.9 <= ttft <= want_ttft + 0.012, (ttft, want_ttft)
    want_itl = BASE + PER_SEQ + (p + 20) * PER_CTX
    itl = (times[-1] - times[0]) / (len(times) - 1)
    assert abs(itl - want_itl) / want_itl < 0.1, (itl, want_itl)
    # The server's own TTFT histogram agrees.
    hsum = metric(s.port, "vllm:time_to_first_token_seconds_sum")
    assert want_ttft * 0.9 <= hsum <= want_ttft + 0.005, (hsum, want_ttft)


def test_itl_grows_with_load():
    s = start_sim("--profile", "fast", "--time-scale", "100")
    n, results = 16, [None] * 16

    def one(i):
        results[i] = timed_stream(s.port, 1000, 60)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    p = results[0][1]["prompt_tokens"]
    # Mid-stream, all 16 decode together: base + 16 seqs + 16 contexts of ~p+30 tokens.
    want = BASE + n * PER_SEQ + n * (p + 30) * PER_CTX
    itls = []
    for times, _ in results:
        mid = times[20:40]
        itls.append((mid[-1] - mid[0]) / (len(mid) - 1))
    itls.sort()
    median = itls[len(itls) // 2]
    assert abs(median - want) / want < 0.12, (median, want)
    single = BASE + PER_SEQ + (p + 30) * PER_CTX
    assert median > single * 1.05, (median, single)


if __name__ == "__main__":
    run([test_single_request_ttft_and_itl, test_itl_grows_with_load])

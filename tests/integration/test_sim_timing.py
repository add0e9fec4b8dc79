"""tandem sim: measured TTFT and ITL follow the engine model's formula.

With --profile fast --time-scale 300 the step costs are: base 24 ms, prefill 13,333
tokens/s, 90 us per decoding sequence, 150 ns per context token of decodes. Client-side
measurements carry loopback, timer and scheduling jitter (a few ms on a loaded 2-core
machine), so durations are made long enough for that to be small, and the tolerances
would still catch a model that ignored load, prompt length or the time scale. ctest runs
this file alone (RUN_SERIAL).
"""

import json
import threading

from harness import metric, run, sse_events, start_sim, stream

SCALE = 300
BASE, PREFILL_RATE, PER_SEQ, PER_CTX = 80e-6 * SCALE, 4e6 / SCALE, 0.3e-6 * SCALE, 0.5e-9 * SCALE


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
    s = start_sim("--profile", "fast", "--time-scale", str(SCALE))
    times, usage = timed_stream(s.port, 300, 30)
    p = usage["prompt_tokens"]
    assert len(times) == 30, len(times)
    want_ttft = BASE + p / PREFILL_RATE
    ttft = times[0]
    assert want_ttft * 0.95 <= ttft <= want_ttft * 1.1 + 0.02, (ttft, want_ttft)
    want_itl = BASE + PER_SEQ + (p + 15) * PER_CTX
    itl = (times[-1] - times[0]) / (len(times) - 1)
    assert abs(itl - want_itl) / want_itl < 0.1, (itl, want_itl)
    # The server's own TTFT histogram agrees.
    hsum = metric(s.port, "vllm:time_to_first_token_seconds_sum")
    assert want_ttft * 0.9 <= hsum <= want_ttft + 0.005, (hsum, want_ttft)


def test_itl_grows_with_load():
    s = start_sim("--profile", "fast", "--time-scale", str(SCALE))
    n, results = 16, [None] * 16

    def one(i):
        results[i] = timed_stream(s.port, 500, 45)

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
    assert abs(median - want) / want < 0.08, (median, want)
    single = BASE + PER_SEQ + (p + 30) * PER_CTX
    assert median > single * 1.05, (median, single)


if __name__ == "__main__":
    run([test_single_request_ttft_and_itl, test_itl_grows_with_load])

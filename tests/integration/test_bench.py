"""tandem bench against a real stack (router + 2 sims, as `make up` runs it): counts,
vllm bench serve's result keys, plausible latencies, per-pod counts, the HTML report,
compare, and errors reported rather than hidden (503s by status, refused connections)."""

import json
import os
import subprocess
import tempfile
import time

from harness import TANDEM, Proc, free_port, get, run, start_sim, wait_until

VLLM_KEYS = ["date", "endpoint_type", "label", "model_id", "tokenizer_id", "num_prompts",
             "request_rate", "burstiness", "max_concurrency", "duration", "completed",
             "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
             "request_goodput", "output_throughput", "total_token_throughput"]


def stack():
    sims = []
    for name in ("decode-0", "decode-1"):
        s = start_sim("--model", "m", "--profile", "fast", "--pod-name", name)
        s.name = name
        sims.append(s)
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--refresh-metrics-interval", "20"]
    for s in sims:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d" % (s.name, s.port)]
    r = Proc(args, r"tandem router ready on", 20)
    r.port = port
    wait_until(lambda: get(port, "/ready").status == 200, 10, what="router ready")
    return r, sims


def bench(*args, timeout=60):
    p = subprocess.run([TANDEM, "bench", "--disable-tqdm"] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_bench_against_the_stack():
    r, sims = stack()
    d = tempfile.mkdtemp()
    rc, out, err = bench("--base-url", "http://127.0.0.1:%d" % r.port, "--num-prompts", "40",
                         "--max-concurrency", "8", "--random-input-len", "64",
                         "--random-output-len", "8", "--ignore-eos", "--seed", "1",
                         "--goodput", "ttft:5000", "e2el:10000", "--save-result",
                         "--save-detailed", "--result-dir", d, "--result-filename", "a.json",
                         "--html", os.path.join(d, "r.html"))
    assert rc == 0, (out, err)
    assert "Serving Benchmark Result" in out and "Successful requests:" in out
    res = json.load(open(os.path.join(d, "a.json")))
    for k in VLLM_KEYS:
        assert k in res, k
    for m in ("ttft", "tpot", "itl", "e2el"):
        for s in ("mean", "median", "std", "p90", "p99"):
            assert "%s_%s_ms" % (s, m) in res, (s, m)
    assert res["completed"] == 40 and res["failed"] == 0 and res["model_id"] == "m"
    # Counts come from the sims' usage and agree with the dataset: exact lengths.
    assert res["total_input_tokens"] == 40 * 64, res["total_input_tokens"]
    assert res["total_output_tokens"] == 40 * 8
    assert res["input_lens"] == [64] * 40 and res["output_lens"] == [8] * 40
    # Plausible latencies: the fast profile's steps are sub-millisecond to a few ms.
    assert 0 < res["median_ttft_ms"] < 1000 and res["median_ttft_ms"] <= res["median_e2el_ms"]
    assert 0 < res["mean_tpot_ms"] < 1000 and 0 < res["mean_itl_ms"] < 1000
    assert all(len(x) == 7 for x in res["itls"])  # 8 tokens: 7 gaps each
    assert res["request_goodput"] == res["request_throughput"]  # generous SLOs: all good
    assert res["request_throughput"] > 0 and res["output_throughput"] > 0
    # Per-pod counts from x-inference-pod: both sims served, nothing lost.
    assert set(res["per_pod"]) == {"decode-0", "decode-1"}
    assert sum(res["per_pod"].values()) == 40
    sims_total = sum(metric_total(s.port) for s in sims)
    assert sims_total == 40
    html = open(os.path.join(d, "r.html")).read()
    assert "<svg" in html and "<script" not in html
    # A second run, chat endpoint and a fixed rate, then compare the two.
    rc, out, err = bench("--base-url", "http://127.0.0.1:%d" % r.port, "--num-prompts", "20",
                         "--endpoint", "/v1/chat/completions", "--request-rate", "200",
                         "--random-input-len", "32", "--random-output-len", "4",
                         "--ignore-eos", "--save-result", "--result-dir", d,
                         "--result-filename", "b.json")
    assert rc == 0, (out, err)
    b = json.load(open(os.path.join(d, "b.json")))
    assert b["completed"] == 20 and b["total_output_tokens"] == 80
    # Timed runs end on time: a closed loop (infinite rate, capped) and a slow open loop
    # whose next drawn arrival lies far past the end.
    for extra in (["--request-rate", "inf", "--max-concurrency", "4"],
                  ["--request-rate", "0.5", "--seed", "3"]):
        t0 = time.monotonic()
        rc, out, err = bench("--base-url", "http://127.0.0.1:%d" % r.port, "--duration", "1",
                             "--random-input-len", "16", "--random-output-len", "4",
                             "--save-result", "--save-detailed", "--result-dir", d,
                             "--result-filename", "t.json", *extra)
        assert time.monotonic() - t0 < 5, extra
        t = json.load(open(os.path.join(d, "t.json")))
        assert all(s < 1.0 for s in t["start_times"]), (extra, max(t["start_times"]))
        if "inf" in extra:  # sent the moment a slot freed: no schedule delay to speak of
            assert t["completed"] > 4 and t["mean_schedule_delay_ms"] < 5, t
    p = subprocess.run([TANDEM, "bench", "compare", "--html", os.path.join(d, "c.html"),
                        os.path.join(d, "a.json"), os.path.join(d, "b.json")],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "vs first" in p.stdout and "median_ttft_ms" in p.stdout, p
    # b.json has no per-request data: said so, and the report still has a's charts.
    assert "b.json has no per-request data" in p.stderr
    assert "<svg" in open(os.path.join(d, "c.html")).read()


def metric_total(port):
    text = get(port, "/metrics").body.decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))


def test_errors_are_reported():
    # A router whose only endpoint is down answers 503: counted by status, shown.
    dead = free_port()
    port = free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
              "--endpoint", "name=gone,addr=127.0.0.1:%d" % dead], r"tandem router ready on", 20)
    d = tempfile.mkdtemp()
    rc, out, err = bench("--port", str(port), "--model", "m", "--num-prompts", "10",
                         "--random-input-len", "16", "--random-output-len", "2",
                         "--save-result", "--result-dir", d, "--result-filename", "f.json")
    assert rc == 1 and "every request failed" in err, (rc, out, err)
    res = json.load(open(os.path.join(d, "f.json")))
    assert res["completed"] == 0 and res["failed"] == 10
    assert sum(res["failed_by_status"].values()) == 10
    status = list(res["failed_by_status"])[0]
    assert status.startswith("5"), res["failed_by_status"]
    assert "Failed requests:" in out and ("error: HTTP %s" % status) in out, out
    r.stop()
    # Nothing listening: one clear line, no result, exit 1.
    rc, out, err = bench("--port", str(dead), "--num-prompts", "5")
    assert rc == 1 and "cannot connect to http://127.0.0.1:%d" % dead in err, (rc, out, err)
    assert "Traceback" not in err and "Serving Benchmark Result" not in out
    # Bad flags name the flag.
    rc, out, err = bench("--timeout", "-1", "--port", str(dead))
    assert rc == 2 and "--timeout" in err
    rc, out, err = bench("--request-rate", "fast")
    assert rc == 2 and "--request-rate" in err
    rc, out, err = bench("--dataset-name", "nope", "--port", str(dead))
    assert rc == 2 and "nope" in err


if __name__ == "__main__":
    run([test_bench_against_the_stack, test_errors_are_reported])

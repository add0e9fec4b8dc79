"""tandem router as vllm-router (docs/router.md, "vllm-router compatibility"): seed 003's
command line (--pd-disaggregation --prefill URL --decode URL
--intra-node-data-parallel-size N --policy consistent_hash) against sims that run DP ranks
(--data-parallel-size), its "PD retry attempt" debug line, its metrics on the prometheus
port, the per-worker circuit breaker, --worker-urls, flags refused and ignored, the
`vllm-router` name, and /tokenize forwarding. Checks read the sims' own metrics (per engine
label) and the router's log, not only the client's status."""

import os
import re
import subprocess
import tempfile
import threading
import time

import harness
from harness import Proc, free_port, get, metric, post, run, start_sim, wait_until

DP = 2


def sim(*extra):
    return start_sim("--model", "m", "--profile", "fast", *extra)


def url(s):
    return "http://127.0.0.1:%d" % s.port


def vrouter(args, ready=True):
    """tandem router with vllm-router flags, on free ports (the API and the prometheus
    port); returns the Proc with .port and .mport."""
    port, mport = free_port(), free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--prometheus-port",
              str(mport), "--workers", "1"] + list(args),
             r"tandem router ready on" if ready else None, 20)
    r.port, r.mport = port, mport
    return r


def health(r):
    """{worker: health} from vllm_router_worker_health."""
    out = {}
    for series, v in harness.metrics(r.mport).items():
        m = re.match(r'vllm_router_worker_health\{worker="([^"]+)"\}', series)
        if m:
            out[m.group(1)] = v
    return out


def wait_workers(r, n):
    wait_until(lambda: len(health(r)) == n and all(v == 1 for v in health(r).values()), 10,
               what="%d healthy workers" % n)


def complete(port, prompt, headers=None, max_tokens=4):
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
    return post(port, "/v1/completions", body, headers=headers, timeout=20)


def val(port, name, **labels):
    return metric(port, name, **labels) or 0.0


PD_LINE = r"PD retry attempt (\d+) using prefill=(\S+) decode=(\S+)"


def pd_lines(r, start=0):
    with r.cond:
        lines = r.lines[start:]
    return [m.groups() for m in (re.search(PD_LINE, l) for l in lines) if m]


# --- seed 003 ----------------------------------------------------------------------------

def seed_topology(*extra):
    p, d = sim("--data-parallel-size", str(DP)), sim("--data-parallel-size", str(DP))
    r = vrouter(["--pd-disaggregation", "--prefill", url(p), "--decode", url(d),
                 "--intra-node-data-parallel-size", str(DP), "--policy", "consistent_hash",
                 "--log-level", "debug"] + list(extra))
    wait_workers(r, 2 * DP)
    return p, d, r


def test_seed_003_pd_with_dp_ranks_and_consistent_hash():
    p, d, r = seed_topology()
    assert set(health(r)) == {"%s@%d" % (url(s), k) for s in (p, d) for k in range(DP)}
    n = 24
    start = r.line_count()
    for i in range(n):
        resp = complete(r.port, "prompt number %d about something else entirely" % i)
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.json()["usage"]["completion_tokens"] == 4
    # Every request ran both legs: a prefill on P, a KV pull on D.
    assert val(p.port, "vllm:request_success_total") == n
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == n
    # vllm-router's debug line, attempt 0, workers named URL@rank.
    lines = wait_until(lambda: len(pd_lines(r, start)) >= n and pd_lines(r, start), 5,
                       what="PD retry attempt lines")
    assert len(lines) == n, lines
    rx_p = re.compile(r"^%s@[0-%d]$" % (re.escape(url(p)), DP - 1))
    rx_d = re.compile(r"^%s@[0-%d]$" % (re.escape(url(d)), DP - 1))
    for attempt, pw, dw in lines:
        assert attempt == "0" and rx_p.match(pw) and rx_d.match(dw), (attempt, pw, dw)
    # The rank in the worker name is the engine that served it (X-data-parallel-rank).
    for s, idx in ((p, 1), (d, 2)):
        for k in range(DP):
            want = sum(1 for l in lines if l[idx].endswith("@%d" % k))
            got = val(s.port, "vllm:request_success_total", engine=str(k))
            assert got == want, (s.port, k, got, want)
            assert got > 0, "rank %d of %s got nothing" % (k, url(s))
    # consistent_hash: the same prompt goes to the same pair, every time.
    pairs = set()
    for _ in range(4):
        before = r.line_count()
        assert complete(r.port, "the same prompt again").status == 200
        got = wait_until(lambda: pd_lines(r, before), 5, what="PD line")
        pairs.add(got[0][1:])
    assert len(pairs) == 1, pairs
    # A session header wins over the prompt (vllm-router's key order).
    pairs = set()
    for i in range(4):
        before = r.line_count()
        assert complete(r.port, "different prompt %d" % i,
                        headers={"x-session-id": "s-42"}).status == 200
        got = wait_until(lambda: pd_lines(r, before), 5, what="PD line")
        pairs.add(got[0][1:])
    assert len(pairs) == 1, pairs


def test_metrics_page_has_vllm_router_families():
    # Scrapes every 60 s: the dead prefill below is found by the request, not the scraper.
    p, d, r = seed_topology("--refresh-metrics-interval", "60000")
    for i in range(4):
        assert complete(r.port, "metrics prompt %d" % i).status == 200
    assert post(r.port, "/v1/completions", "{not json").status == 400
    text = get(r.mport, "/metrics").body.decode()
    types = {
        "vllm_router_requests_total": "counter",
        "vllm_router_request_duration_seconds": "histogram",
        "vllm_router_request_errors_total": "counter",
        "vllm_router_retries_total": "counter",
        "vllm_router_active_workers": "gauge",
        "vllm_router_worker_health": "gauge",
        "vllm_router_worker_load": "gauge",
        "vllm_router_processed_requests_total": "counter",
        "vllm_router_pd_requests_total": "counter",
        "vllm_router_pd_prefill_requests_total": "counter",
        "vllm_router_pd_decode_requests_total": "counter",
        "vllm_router_pd_request_duration_seconds": "histogram",
        "vllm_router_pd_errors_total": "counter",
        "vllm_router_pd_prefill_errors_total": "counter",
        "vllm_router_pd_decode_errors_total": "counter",
        "vllm_router_cb_state": "gauge",
    }
    for name, t in types.items():
        assert "# TYPE %s %s\n" % (name, t) in text, name
    # tandem's own families are there too.
    assert "# TYPE tandem_router_requests_total counter" in text
    route = '{route="/v1/completions"}'
    assert val(r.mport, "vllm_router_requests_total", route="/v1/completions") == 5
    assert val(r.mport, "vllm_router_pd_requests_total", route="/v1/completions") == 4
    assert 'vllm_router_request_duration_seconds_bucket{route="/v1/completions",le="240"} 5' \
        in text
    assert "vllm_router_pd_request_duration_seconds_count%s 4" % route in text
    assert val(r.mport, "vllm_router_request_errors_total", route="/v1/completions",
               error_type="bad_request") == 1
    assert val(r.mport, "vllm_router_active_workers") == 2 * DP
    workers = ["%s@%d" % (url(s), k) for s in (p, d) for k in range(DP)]
    for w in workers:
        assert 'vllm_router_cb_state{worker="%s"} 0' % w in text, w
        assert 'vllm_router_worker_load{worker="%s"} 0' % w in text, w
    assert sum(val(r.mport, "vllm_router_pd_prefill_requests_total", worker=w)
               for w in workers[:DP]) == 4
    assert sum(val(r.mport, "vllm_router_pd_decode_requests_total", worker=w)
               for w in workers[DP:]) == 4
    assert val(r.mport, "vllm_router_processed_requests_total") == 8  # both picks per request
    # A dead prefill: decoded in place (tandem's fallback), counted as vllm-router's errors.
    p.stop()
    assert complete(r.port, "after the prefill died").status == 200
    wait_until(lambda: val(r.mport, "vllm_router_pd_prefill_errors_total") == 1, 5,
               what="prefill error counted")
    assert val(r.mport, "vllm_router_pd_errors_total", error_type="prefill_failed") == 1


def test_circuit_breaker_opens_and_others_serve():
    a, b = sim(), sim()
    # Scrapes every 60 s: the first requests to a dead worker are what finds it out.
    r = vrouter(["--worker-urls", url(a), url(b), "--policy", "round_robin",
                 "--cb-failure-threshold", "1", "--cb-timeout-duration-secs", "2",
                 "--refresh-metrics-interval", "60000"])
    wait_workers(r, 2)
    for i in range(4):
        assert complete(r.port, "warm %d" % i).status == 200
    assert val(a.port, "vllm:request_success_total") == 2
    assert val(b.port, "vllm:request_success_total") == 2
    b.stop()
    for i in range(6):
        resp = complete(r.port, "after %d" % i)
        assert resp.status == 200, (resp.status, resp.body)
    assert val(a.port, "vllm:request_success_total") == 8
    assert val(r.mport, "vllm_router_cb_state", worker=url(b)) == 1  # open
    assert val(r.mport, "vllm_router_cb_state", worker=url(a)) == 0
    assert val(r.mport, "vllm_router_retries_total", route="/v1/completions") >= 1
    assert r.wait_log(r"circuit breaker of %s: closed -> open" % re.escape(url(b)), 5)
    # After --cb-timeout-duration-secs: half-open (2).
    wait_until(lambda: val(r.mport, "vllm_router_cb_state", worker=url(b)) == 2, 6,
               what="half-open")


def test_worker_urls_regular_mode_and_tokenize():
    a, b = sim(), sim()
    r = vrouter(["--worker-urls", url(a), url(b), "--policy", "rendezvous_hash"])
    wait_workers(r, 2)
    for i in range(6):
        assert complete(r.port, "regular %d" % i).status == 200
    assert val(a.port, "vllm:request_success_total") + \
        val(b.port, "vllm:request_success_total") == 6
    assert val(r.mport, "vllm_router_pd_requests_total") == 0
    # /tokenize and /detokenize reach an engine of the model.
    t = post(r.port, "/tokenize", {"model": "m", "prompt": "hello there"})
    assert t.status == 200, t.body
    tokens = t.json()["tokens"]
    assert tokens and t.json()["count"] == len(tokens)
    dt = post(r.port, "/detokenize", {"model": "m", "tokens": tokens})
    assert dt.status == 200 and isinstance(dt.json()["prompt"], str), dt.body
    # Bad model: the engine's own 404, passed through.
    assert post(r.port, "/tokenize", {"model": "nope", "prompt": "x"}).status == 404
    # What lm-eval asks a vLLM server for before tokenizing through it, and the model card.
    ti = get(r.port, "/tokenizer_info")
    assert ti.status == 200 and ti.json()["vocab_size"] > 0, ti.body
    card = get(r.port, "/v1/models/m")
    assert card.status == 200 and card.json()["id"] == "m", card.body
    assert get(r.port, "/v1/models/nope").status == 404


def test_dp_worker_metrics_are_per_rank():
    """A DP worker URL@r reads only engine="r" of its engine's metrics."""
    s = sim("--data-parallel-size", "2", "--time-scale", "20")
    r = vrouter(["--worker-urls", url(s), "--intra-node-data-parallel-size", "2",
                 "--refresh-metrics-interval", "20"])
    wait_workers(r, 2)
    done = []

    def long_request():
        done.append(post(s.port, "/v1/completions",
                         {"model": "m", "prompt": "busy rank one", "max_tokens": 200,
                          "ignore_eos": True},
                         headers={"X-data-parallel-rank": "1"}, timeout=60).status)

    t = threading.Thread(target=long_request, daemon=True)
    t.start()

    def worker(rank):
        es = get(r.mport, "/debug/endpoints").json()["endpoints"]
        return [e for e in es if e["name"] == "%s@%d" % (url(s), rank)][0]

    wait_until(lambda: worker(1)["running"] == 1, 10, what="rank 1 running one request")
    t0 = time.monotonic()

    def rank0_scraped_since():
        e = worker(0)
        return e if e["scraped_ms_ago"] / 1e3 < time.monotonic() - t0 else None

    e0 = wait_until(rank0_scraped_since, 5, what="rank 0 scraped again")
    assert e0["running"] == 0 and not done, (e0, done)  # engine="0" only, not the sum
    t.join(60)
    assert done == [200]


def test_worker_host_names_are_resolved():
    """Workers given by name (a Kubernetes Service's DNS name, here localhost) are resolved
    on the control loop; a name that does not resolve is an unhealthy worker, retried."""
    a = sim()
    named = "http://localhost:%d" % a.port
    r = vrouter(["--worker-urls", named, "http://no-such-host.invalid:8000", "--policy",
                 "round_robin"])

    def eps():
        return {e["name"]: e for e in get(r.mport, "/debug/endpoints").json()["endpoints"]}

    wait_until(lambda: eps()[named]["address"] == "127.0.0.1:%d" % a.port and
               eps()[named]["healthy"], 10, what="localhost resolved")
    assert r.wait_log(r"worker %s: localhost is 127\.0\.0\.1" % re.escape(named), 5)
    assert r.wait_log(r"worker http://no-such-host\.invalid:8000: cannot resolve "
                      r"no-such-host\.invalid", 30), r.output()[-2000:]
    assert not eps()["http://no-such-host.invalid:8000"]["healthy"]
    for i in range(3):
        assert complete(r.port, "named %d" % i).status == 200
    assert val(a.port, "vllm:request_success_total") == 3


def test_flags_unknown_fails_ignored_logs():
    out = subprocess.run([harness.TANDEM, "router", "--worker-urls", "http://127.0.0.1:1",
                          "--no-such-vllm-router-flag"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "unknown flag '--no-such-vllm-router-flag'" in out.stderr, \
        out
    out = subprocess.run([harness.TANDEM, "router", "--policy", "random"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2, out
    a = sim()
    r = vrouter(["--worker-urls", url(a), "--cors-allowed-origins", "http://x", "http://y",
                 "--enable-trace", "--health-check-interval-secs", "30"])
    for f in ("--cors-allowed-origins", "--enable-trace", "--health-check-interval-secs"):
        assert r.wait_log(r"ignoring vllm-router flag %s \(no effect in tandem\)" % f, 5), f
    wait_workers(r, 1)
    assert complete(r.port, "ok").status == 200


def test_invoked_as_vllm_router():
    a = sim()
    d = tempfile.mkdtemp()
    link = os.path.join(d, "vllm-router")
    os.symlink(os.path.abspath(harness.TANDEM), link)
    saved = harness.TANDEM
    harness.TANDEM = link
    try:
        port, mport = free_port(), free_port()
        # No "router" command: the name says it, and vllm-router's flags are all it takes.
        r = Proc(["--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(mport),
                  "--worker-urls", url(a), "--prefill-policy", "random"],
                 r"tandem router ready on 127\.0\.0\.1:%d" % port, 20)
        r.port, r.mport = port, mport
    finally:
        harness.TANDEM = saved
    wait_workers(r, 1)
    assert complete(port, "via the link").status == 200
    assert val(mport, "vllm_router_requests_total", route="/v1/completions") == 1
    out = subprocess.run([link, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--intra-node-data-parallel-size" in out.stdout, out


if __name__ == "__main__":
    run([test_seed_003_pd_with_dp_ranks_and_consistent_hash,
         test_metrics_page_has_vllm_router_families,
         test_circuit_breaker_opens_and_others_serve,
         test_worker_urls_regular_mode_and_tokenize,
         test_dp_worker_metrics_are_per_rank,
         test_worker_host_names_are_resolved,
         test_flags_unknown_fails_ignored_logs,
         test_invoked_as_vllm_router])

"""tandem router in front of real tandem sims: each plugin's effect, health, retries,
config errors, the decision trace, and cancellation on client disconnect."""

import json
import signal
import os
import socket
import subprocess
import tempfile
import threading
import time

from harness import (TANDEM, Proc, free_port, get, metric, post, request, run, sims,
                     sse_events, start_sim,
                     stream, wait_until)

# Seed 001's two prompts: the second shares a long prefix with the first.
PROMPT_1 = ("I am working on learning to run benchmarks in my openshift cluster. I was wondering "
            "if you could provide me a list of best practices when collecting metrics on the k8s "
            "platform, and furthermore, any OCP specific optimizations that are applicable here. "
            "Finally please help me construct a plan to support testing metrics collection for "
            "testing and dev environments such as minikube or kind")
PROMPT_2 = ("I am working on learning to run benchmarks in my openshift cluster. I was wondering "
            "if you could provide me a list of best practices when collecting metrics on the k8s "
            "platform. Finally please help me build out a plan to extend this benchmarking to run "
            "against workloads on GKE and K8s that runs on CoreWeave to help us integrate into the "
            "ecosystems of our wonderful llm-d partners.")


def start_router(backends, *extra, roles=None, port=None):
    port = port or free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "2", "--refresh-metrics-interval", "20", "--enable-debug-endpoints"]
    for i, b in enumerate(backends):
        spec = "name=%s,addr=127.0.0.1:%d" % (b.name, b.port)
        if roles:
            spec += ",role=%s" % roles[i]
        args += ["--endpoint", spec]
    args += list(extra)
    p = Proc(args, r"tandem router ready on", 20)
    p.port = port
    wait_until(lambda: get(port, "/ready").status == 200, 10, what="router ready")
    # every endpoint scraped once: decisions then see them all
    wait_until(lambda: all(e["healthy"] for e in
                           get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="every endpoint healthy")
    return p


def pod_of(r):
    assert r.status == 200, (r.status, r.body)
    return r.header("x-inference-pod")


def complete(port, prompt, headers=None, **kw):
    body = {"model": "m", "prompt": prompt, "max_tokens": 2}
    body.update(kw)
    return post(port, "/v1/completions", body, headers=headers)


def test_proxy_streaming_and_headers():
    a, b = sims(2)
    r = start_router([a, b])
    resp = complete(r.port, "hello", headers={"x-request-id": "rid-1"})
    assert pod_of(resp) in ("decode-0", "decode-1")
    assert resp.header("x-request-id") == "rid-1" and resp.json()["id"] == "cmpl-rid-1"
    status, headers, raw, _ = stream(r.port, "/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200
    events = sse_events(raw)
    # role, tokens (the last carries finish_reason), usage, [DONE]
    assert events[-1] == "[DONE]" and len(events) == 1 + 4 + 1 + 1
    assert get(r.port, "/health").status == 200
    models = get(r.port, "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["m"]
    assert metric(r.port, "tandem_router_requests_total", code="200") >= 2
    for i in range(32):  # plugin timings are sampled, 1 decision in 16 per thread
        complete(r.port, "sample %d" % i)
    assert metric(r.port, "tandem_router_plugin_duration_seconds_count",
                  plugin="prefix-cache-scorer") >= 1
    # Bad bodies: 400 with an OpenAI error naming the problem, nothing sent upstream.
    sent = metric(a.port, "vllm:request_success_total") + metric(b.port, "vllm:request_success_total")
    for body, want in [(b'{"model":"m","prompt":"x",}', "invalid JSON at line 1 column 27"),
                       (b'{"model":"m",\n"prompt":"\\q"}', "line 2 column 11: invalid escape"),
                       (b'[1, 2]', "must be a JSON object, got array"),
                       (b'{"model": 5, "prompt": "x"}', "'model' must be a string, got number")]:
        resp = post(r.port, "/v1/completions", body)
        assert resp.status == 400, (body, resp.status)
        err = resp.json()["error"]
        assert want in err["message"] and err["type"] == "BadRequestError", (body, err)
    assert (metric(a.port, "vllm:request_success_total")
            + metric(b.port, "vllm:request_success_total")) == sent


def test_prefix_cache_scorer_keeps_similar_prompts_together():
    a, b = sims(2)
    r = start_router([a, b], "--v", "4")
    first = pod_of(complete(r.port, PROMPT_1))
    for _ in range(3):
        assert pod_of(complete(r.port, PROMPT_2)) == first
    # The decision log names the prefix scorer's scores (seed 001's EPP log, as JSON).
    assert r.wait_log(r'"prefix-cache-scorer"', 5)
    assert 0 < metric(r.port, "tandem_router_prefix_index_hit_ratio") < 1
    assert metric(r.port, "tandem_router_prefix_index_size") > 0
    # The index sees decoded text: the same prompt sent with \u escapes and as raw UTF-8
    # (and as the first element of a prompt list) goes to the same pod.
    uni = "Caf\u00e9 \u2615 na\u00efve r\u00e9sum\u00e9 \U0001F600 " * 12
    escaped = json.dumps({"model": "m", "prompt": uni, "max_tokens": 2})
    raw = json.dumps({"model": "m", "prompt": [uni], "max_tokens": 2},
                     ensure_ascii=False).encode()
    assert "\\u00e9" in escaped
    home = pod_of(post(r.port, "/v1/completions", escaped))
    t = post(r.port, "/debug/schedule", raw).json()
    scores = {s["name"]: s["scores"] for s in t["profiles"][0]["scorers"]}
    assert scores["prefix-cache-scorer"][home] > 0.9, scores


def test_queue_scorer_steers_away_from_a_long_queue():
    busy_sim = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-busy",
                         "--max-num-seqs", "1", "--time-scale", "200")
    busy_sim.name = "decode-busy"
    idle_sim = sims(1)[0]
    r = start_router([busy_sim, idle_sim])
    def occupy():
        try:
            post(busy_sim.port, "/v1/completions", {"model": "m", "prompt": "x",
                                                     "max_tokens": 200, "ignore_eos": True},
                 timeout=60)
        except OSError:
            pass  # the sim is stopped at the end of the test

    for i in range(4):  # one runs, three wait
        threading.Thread(target=occupy, daemon=True).start()
    wait_until(lambda: any(e["name"] == "decode-busy" and e["waiting"] >= 2
                           for e in get(r.port, "/debug/endpoints").json()["endpoints"]),
               10, what="router to see the queue")
    pods = [pod_of(complete(r.port, "distinct prompt %d about %d" % (i, i * 7)))
            for i in range(8)]
    assert pods == ["decode-0"] * 8, pods


def test_load_scorers_count_what_was_sent_since_the_scrape():
    # One scrape (the interval is ten minutes), so only what the router itself sent can
    # tell the pods apart: a request in flight on one makes queue-scorer and
    # kv-cache-utilization-scorer prefer the other; --raw-scraped-load sees equal pods.
    cfg = ("plugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\n"
           "- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins:\n"
           "  - pluginRef: queue-scorer\n  - pluginRef: kv-cache-utilization-scorer\n"
           "  - pluginRef: max-score-picker\n")
    for raw in (False, True):
        pods = sims(2, "--time-scale", "200")  # a 200-token answer takes seconds
        r = start_router(pods, "--config-text", cfg, "--refresh-metrics-interval", "600000",
                         *(["--raw-scraped-load"] if raw else []))

        def long_request():
            try:
                post(r.port, "/v1/completions", {"model": "m", "prompt": "x " * 400,
                                                 "max_tokens": 200, "ignore_eos": True},
                     timeout=60)
            except OSError:
                pass  # stopped with the test

        def in_flight():
            return [e["name"] for e in get(r.port, "/debug/endpoints").json()["endpoints"]
                    if e["inflight_requests"] == 1]

        threading.Thread(target=long_request, daemon=True).start()
        wait_until(in_flight, 10, what="the request in flight")
        busy = in_flight()
        idle = [p.name for p in pods if p.name != busy[0]][0]
        t = post(r.port, "/debug/schedule", {"model": "m", "prompt": "y"}).json()
        sc = {s["name"]: s["scores"] for s in t["profiles"][0]["scorers"]}
        q, kv = sc["queue-scorer"], sc["kv-cache-utilization-scorer"]
        if raw:
            assert q[busy[0]] == q[idle] == 1 and kv[busy[0]] == kv[idle], sc
        else:
            assert (q[busy[0]], q[idle]) == (0, 1) and kv[busy[0]] < kv[idle], sc
            assert t["profiles"][0]["picked"] in (idle, [idle]), t["profiles"][0]
        r.stop()
        for p in pods:
            p.stop()


def test_session_affinity():
    a, b = sims(2)
    cfg = ("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
           "- type: session-affinity-scorer\n- type: max-score-picker\n"
           "schedulingProfiles:\n- name: default\n  plugins:\n"
           "  - pluginRef: session-affinity-scorer\n  - pluginRef: max-score-picker\n")
    r = start_router([a, b], "--config-text", cfg)
    first = complete(r.port, "turn one")
    token = first.header("x-session-token")
    assert token
    pod = pod_of(first)
    for i in range(6):
        assert pod_of(complete(r.port, "turn %d" % i, headers={"x-session-token": token})) == pod


def test_consistent_hash_stable_and_moves_few_keys():
    a, b, c = sims(3)
    keys = ["user-%d" % i for i in range(40)]

    def mapping(router):
        return {k: pod_of(complete(router.port, "p", headers={"x-session-id": k})) for k in keys}

    r1 = start_router([a, b], "--policy", "consistent_hash")
    m1 = mapping(r1)
    assert len(set(m1.values())) == 2
    r1.stop()
    r2 = start_router([a, b], "--policy", "consistent_hash")
    assert mapping(r2) == m1  # stable across restarts
    r2.stop()
    r3 = start_router([a, b, c], "--policy", "consistent_hash")
    m3 = mapping(r3)
    moved = [k for k in keys if m3[k] != m1[k]]
    assert all(m3[k] == "decode-2" for k in moved)  # only keys the new pod took moved
    assert 0.1 * len(keys) <= len(moved) <= 0.6 * len(keys), len(moved)


def test_role_filters():
    d, p = sims(2, roles=["decode", "prefill"])
    cfg = ("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
           "- type: decode-filter\n- type: queue-scorer\n"
           "schedulingProfiles:\n- name: default\n  plugins:\n"
           "  - pluginRef: decode-filter\n  - pluginRef: queue-scorer\n")
    r = start_router([d, p], "--config-text", cfg, roles=["decode", "prefill"])
    wait_until(lambda: all(e["healthy"] for e in
                           get(r.port, "/debug/endpoints").json()["endpoints"]),
               10, what="both endpoints scraped")
    for i in range(6):
        assert pod_of(complete(r.port, "q%d" % i)) == "decode-0"


def test_killed_sim_is_unhealthy_and_traffic_moves():
    a, b = sims(2)
    r = start_router([a, b], "--policy", "round_robin")
    for i in range(4):
        pod_of(complete(r.port, "x%d" % i))
    b.stop()
    # Requests right after the kill still succeed: a refused connection is retried.
    for i in range(10):
        assert pod_of(complete(r.port, "y%d" % i)) == "decode-0"
    wait_until(lambda: any(e["name"] == "decode-1" and not e["healthy"]
                           for e in get(r.port, "/debug/endpoints").json()["endpoints"]),
               5, what="decode-1 unhealthy")


def test_debug_schedule_trace():
    a, b = sims(2)
    r = start_router([a, b])
    t = post(r.port, "/debug/schedule", {"model": "m", "prompt": PROMPT_1}).json()
    prof = t["profiles"][0]
    assert set(prof["candidates"]) == {"decode-0", "decode-1"}
    scorers = {s["name"]: s for s in prof["scorers"]}
    assert {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"} <= set(scorers)
    for s in scorers.values():
        assert set(s["scores"]) == {"decode-0", "decode-1"} and "weight" in s
    assert set(prof["totals"]) == {"decode-0", "decode-1"} and prof["picked"]
    assert t["elapsed_us"] >= 0
    # Dry run: nothing was sent to a sim.
    assert metric(a.port, "vllm:prompt_tokens_total") == 0


def test_client_disconnect_stops_generation():
    a2 = start_sim("--model", "m", "--profile", "fast", "--time-scale", "20")
    a2.name = "decode-slow"
    r = start_router([a2])
    c = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    body = json.dumps({"model": "m", "prompt": "go", "max_tokens": 3000, "ignore_eos": True,
                       "stream": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data: ") < 3:
        got += c.recv(4096)
    assert metric(a2.port, "vllm:num_requests_running") == 1
    c.close()
    t0 = time.monotonic()
    wait_until(lambda: metric(a2.port, "vllm:num_requests_running") == 0, 5,
               what="the sim to stop generating")
    assert time.monotonic() - t0 < 1.0


def test_endpoints_file_and_metrics_port():
    a, b = sims(2)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("endpoints:\n- name: decode-0\n  address: 127.0.0.1:%d\n  role: decode\n"
                "- name: decode-1\n  host: 127.0.0.1\n  port: %d\n  labels: {zone: b}\n"
                % (a.port, b.port))
        path = f.name
    try:
        port, mport = free_port(), free_port()
        r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port",
                  str(mport), "--workers", "1", "--endpoints-file", path],
                 r"tandem router ready on", 20)
        wait_until(lambda: get(port, "/ready").status == 200, 10, what="ready")
        # The debug routes are on the metrics port only (no --enable-debug-endpoints).
        for method, route in (("GET", "/debug/endpoints"), ("POST", "/debug/schedule")):
            rr = request(port, method, route, {"model": "m", "prompt": "x"} if method == "POST"
                         else None)
            assert rr.status == 404, (route, rr.status, rr.body)
            assert "metrics port" in rr.json()["error"]["message"], rr.body
        t = post(mport, "/debug/schedule", {"model": "m", "prompt": "x"}).json()
        assert t["profiles"], t
        names = {e["name"]: e for e in get(mport, "/debug/endpoints").json()["endpoints"]}
        assert set(names) == {"decode-0", "decode-1"} and names["decode-0"]["role"] == "decode"
        assert pod_of(complete(port, "x")) in names
        # Rewrite the file without decode-1: it is removed within a couple of seconds.
        with open(path, "w") as f:
            f.write("- name: decode-0\n  address: 127.0.0.1:%d\n" % a.port)
        os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
        wait_until(lambda: [e["name"] for e in
                            get(mport, "/debug/endpoints").json()["endpoints"]] == ["decode-0"],
                   5, what="decode-1 to be removed")
        assert r.wait_log(r"endpoint decode-1 removed", 2)
        for i in range(4):
            assert pod_of(complete(port, "y%d" % i)) == "decode-0"
        # The metrics port serves the router's metrics, and nothing else.
        m = get(mport, "/metrics").body.decode()
        assert "tandem_router_requests_total" in m and 'endpoint="decode-0"' in m
        assert get(mport, "/v1/completions").status == 404
        # A broken file at start-up is refused with its name.
        with open(path, "w") as f:
            f.write("- name: x\n  address: nowhere\n")
        out = subprocess.run([TANDEM, "router", "--port", "0", "--metrics-port", "0",
                              "--endpoints-file", path], capture_output=True, text=True,
                             timeout=10)
        assert out.returncode == 2 and path in out.stderr and "endpoint 0" in out.stderr, \
            out.stderr
    finally:
        os.unlink(path)


def test_stalled_endpoint_read_timeout():
    """A SIGSTOPped engine. Streaming (vLLM sends the head at once, so silence means a
    stalled engine): with nothing sent to the client yet the request moves to another
    endpoint and the stalled one is marked down at once. Non-streaming (silence may be a
    long generation): 504 with an OpenAI error body, no second run, endpoint left alone."""
    a, b = sims(2)
    # one worker: round robin is per worker, and both picks must see the same cursor
    r = start_router([a, b], "--policy", "round_robin", "--upstream-read-timeout", "0.5",
                     "--refresh-metrics-interval", "60000", "--workers", "1")
    a.p.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        for i in range(2):  # round robin: one of the two lands on the stalled pod first
            status, headers, raw, _ = stream(r.port, "/v1/completions", {
                "model": "m", "prompt": "stall %d" % i, "max_tokens": 2, "stream": True})
            assert status == 200 and sse_events(raw)[-1] == "[DONE]", (status, raw[:300])
            assert dict((k.lower(), v) for k, v in headers).get("x-inference-pod") == b.name
        assert time.monotonic() - t0 < 5
        eps = {e["name"]: e for e in get(r.port, "/debug/endpoints").json()["endpoints"]}
        assert not eps[a.name]["healthy"] and eps[b.name]["healthy"], eps
        assert r.wait_log(r"no byte from %s for 0.5 s.*marked down, retrying" % a.name, 2)
        assert (metric(r.port, "tandem_router_upstream_errors_total", endpoint=a.name,
                       kind="read timeout") or 0) >= 1
    finally:
        a.p.send_signal(signal.SIGCONT)
    c = sims(1)[0]
    r2 = start_router([c], "--upstream-read-timeout", "0.5")
    wait_until(lambda: get(r2.port, "/ready").status == 200, 5, what="ready")
    c.p.send_signal(signal.SIGSTOP)
    try:
        resp = complete(r2.port, "alone")
        assert resp.status == 504, (resp.status, resp.body)
        err = resp.json()["error"]
        assert "--upstream-read-timeout" in err["message"] and err["code"] == 504, err
        assert r2.wait_log(r"no byte from decode-0 for 0.5 s \(--upstream-read-timeout\): 504", 2)
        assert (metric(r2.port, "tandem_router_retries_total") or 0) == 0
    finally:
        c.p.send_signal(signal.SIGCONT)
    wait_until(lambda: metric(c.port, "vllm:request_success_total") is not None, 5,
               what="the sim answers again")


def test_503_and_reset_before_any_byte_are_retried():
    """Nothing reached the client yet: a pod that answers 503 (a sidecar whose engine is
    down, an engine loading) or dies before answering gets the request moved to another
    pod, and is marked down; the client sees 200."""
    busy = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-0",
                     "--failure-rate", "1", "--failure-types", "503")
    busy.name = "decode-0"
    good = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-1")
    good_port = good.port
    # a "pod" that reads the request and drops the connection without a byte
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    dead_port = lsock.getsockname()[1]
    stop = threading.Event()

    def dropper():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                data = conn.recv(65536)
                if data.startswith(b"GET"):  # health and metrics scrapes pass
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            except OSError:
                pass
            conn.close()
    t = threading.Thread(target=dropper, daemon=True)
    t.start()
    try:
        port = free_port()
        r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                  "--workers", "1", "--policy", "round_robin", "--enable-debug-endpoints",
                  "--refresh-metrics-interval", "60000",
                  "--endpoint", "name=decode-0,addr=127.0.0.1:%d" % busy.port,
                  "--endpoint", "name=decode-1,addr=127.0.0.1:%d" % good_port],
                 r"tandem router ready on", 20)
        r.port = port
        wait_until(lambda: all(e["healthy"] for e in
                               get(port, "/debug/endpoints").json()["endpoints"]),
                   10, what="both endpoints scraped")
        for i in range(4):
            assert pod_of(complete(port, "retry %d" % i)) == "decode-1"
        assert r.wait_log(r"decode-0 answered 503: marked down, retrying elsewhere", 2)
        r.stop()
        # the dropping pod: its socket accepts, reads, closes
        port2 = free_port()
        r2 = Proc(["router", "--host", "127.0.0.1", "--port", str(port2), "--metrics-port",
                   "0", "--workers", "1", "--policy", "round_robin", "--enable-debug-endpoints",
                   "--refresh-metrics-interval", "60000",
                   "--endpoint", "name=dropper,addr=127.0.0.1:%d" % dead_port,
                   "--endpoint", "name=decode-1,addr=127.0.0.1:%d" % good_port],
                  r"tandem router ready on", 20)
        wait_until(lambda: all(e["healthy"] for e in
                               get(port2, "/debug/endpoints").json()["endpoints"]),
                   10, what="both endpoints scraped")
        for i in range(4):
            assert pod_of(complete(port2, "reset %d" % i)) == "decode-1"
        assert r2.wait_log(r"dropper unreachable, retrying", 2), r2.output()[-2000:]
    finally:
        stop.set()
        lsock.close()


def test_max_connections_refuses_clearly():
    a = sims(1)[0]
    r = start_router([a], "--max-connections", "3", "--workers", "1")
    held = [socket.create_connection(("127.0.0.1", r.port), timeout=5) for _ in range(3)]
    try:
        # Each held connection is accepted (one request answered on each).
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        extra = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        data = b""
        while True:
            chunk = extra.recv(4096)
            if not chunk:
                break
            data += chunk
        extra.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), data
        err = json.loads(body)["error"]
        assert "--max-connections" in err["message"] and err["code"] == 503, err
        assert r.wait_log(r"WARN.*refusing connections.*--max-connections", 2)
    finally:
        for s in held:
            s.close()
    # Room again once they are gone.
    wait_until(lambda: get(r.port, "/health").status == 200, 5, what="a connection accepted")


def test_inflight_bound_gives_429():
    slow = start_sim("--model", "m", "--profile", "fast", "--time-scale", "50",
                     "--pod-name", "decode-0")
    slow.name = "decode-0"
    r = start_router([slow], "--max-inflight-per-endpoint", "1")
    c = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    body = json.dumps({"model": "m", "prompt": "long", "max_tokens": 2000, "ignore_eos": True,
                       "stream": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"data: " not in got:
        got += c.recv(4096)
    busy = complete(r.port, "second")
    assert busy.status == 429, busy.body
    e = busy.json()["error"]
    assert e["type"] == "RateLimitError" and "--max-inflight-per-endpoint" in e["message"]
    c.close()  # the first request ends: capacity comes back
    refused = [1]  # the second request's 429, then any retry that raced the close

    def third_served():
        st = complete(r.port, "third").status
        refused[0] += st == 429
        return st == 200

    wait_until(third_served, 5, what="capacity back")
    assert metric(r.port, "tandem_router_requests_total", code="429") == refused[0]


def test_config_errors_name_file_line_field():
    a = sims(1)[0]
    cases = {
        "unknown": ("plugins:\n- type: queue-scorer\n- type: no-such-plugin\n", "no-such-plugin"),
        "dangling": ("plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n"
                     "  plugins:\n  - pluginRef: missing-one\n", "missing-one"),
        "badtype": ("plugins:\n- type: prefix-cache-scorer\n  parameters:\n"
                    "    blockSize: lots\n", "blockSize"),
    }
    for case, (body, needle) in cases.items():
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n" + body)
            path = f.name
        out = subprocess.run([TANDEM, "router", "--port", "0", "--metrics-port", "0",
                              "--endpoint", "name=a,addr=127.0.0.1:%d" % a.port,
                              "--config-file", path], capture_output=True, text=True, timeout=10)
        os.unlink(path)
        assert out.returncode == 2, (case, out.stderr)
        assert path in out.stderr and needle in out.stderr, (case, out.stderr)
        line = out.stderr.split(path + ":", 1)[1].split(":", 1)[0]
        assert line.isdigit() and int(line) > 2, (case, out.stderr)


ROUTER_MD_EXAMPLE = """apiVersion: llm-d.ai/v1alpha1      # inference.networking.x-k8s.io/v1alpha1 also accepted
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: prefix-cache-scorer
  parameters: {blockSize: 64}
- type: queue-scorer
- type: pd-profile-handler
  parameters: {threshold: 100}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}]
"""


def test_llm_d_example_config_loads():
    d, p = sims(2, roles=["decode", "prefill"])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(ROUTER_MD_EXAMPLE)
        path = f.name
    try:
        r = start_router([d, p], "--config-file", path, roles=["decode", "prefill"])
        wait_until(lambda: all(e["healthy"] for e in
                               get(r.port, "/debug/endpoints").json()["endpoints"]),
                   10, what="both endpoints scraped")
        assert pod_of(complete(r.port, "short")) == "decode-0"
        t = post(r.port, "/debug/schedule", {"model": "m", "prompt": PROMPT_1 * 3}).json()
        assert t["pd"]["decision"] in ("disaggregate", "decode-only"), t["pd"]
    finally:
        os.unlink(path)


if __name__ == "__main__":
    run([test_proxy_streaming_and_headers, test_prefix_cache_scorer_keeps_similar_prompts_together,
         test_queue_scorer_steers_away_from_a_long_queue,
         test_load_scorers_count_what_was_sent_since_the_scrape, test_session_affinity,
         test_consistent_hash_stable_and_moves_few_keys, test_role_filters,
         test_killed_sim_is_unhealthy_and_traffic_moves, test_debug_schedule_trace,
         test_client_disconnect_stops_generation, test_endpoints_file_and_metrics_port,
         test_inflight_bound_gives_429,
         test_stalled_endpoint_read_timeout, test_503_and_reset_before_any_byte_are_retried,
         test_max_connections_refuses_clearly,
         test_config_errors_name_file_line_field,
         test_llm_d_example_config_loads])

"""P/D disaggregation end to end (pd.md): tandem router -> tandem sidecar -> decode sims
with a prefill sim (--pd-mode sidecar, the default), and the router running both legs
itself (--pd-mode router). Every check looks at the sims' own metrics (and logs where
pd.md says so), not only at the client's status.

The core checks are functions of a mode and run once per mode; the sidecar-only and
router-only behaviours (SSRF, the sidecar's 503, pair retries) have their own tests."""

import json
import os
import random
import re
import socket
import subprocess
import time

from harness import TANDEM, Proc, free_port, get, metric, post, run, sse_events, start_sim, stream, \
    wait_until

# 640 characters: the P/D decider's threshold is 100 uncached characters and the prefix
# scorer's block is 64 characters, so a first sight is disaggregated and a repeat (whole
# blocks cached on its decode pod: 64 characters left uncached) is decoded in place.
LONG = 640
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu").split()
_rng = random.Random(20240611)


def long_prompt(n=LONG):
    """A fresh prompt of exactly n characters, different from every other from its first
    character on (no prefix shared with anything sent before)."""
    head = "%08x" % _rng.getrandbits(32)
    words = [_rng.choice(WORDS) + str(_rng.randrange(1000)) for _ in range(n // 4)]
    text = head + " " + " ".join(words)
    assert len(text) >= n
    return text[:n]


def val(port, name, **labels):
    """A metric's value, 0 when the series does not exist yet."""
    return metric(port, name, **labels) or 0.0


# --- processes ----------------------------------------------------------------------------

def sim(name, *extra, port=None):
    s = start_sim("--model", "m", "--profile", "fast", "--pod-name", name, *extra, port=port)
    s.name = name
    return s


def start_sidecar(engine, *extra):
    port, mport = free_port(), free_port()
    p = Proc(["sidecar", "--host", "127.0.0.1", "--port", str(port), "--vllm-port",
              str(engine.port), "--metrics-port", str(mport)] + list(extra),
             r"tandem sidecar ready on 127\.0\.0\.1:%d" % port, 20)
    p.port, p.mport, p.engine = port, mport, engine
    wait_until(lambda: get(port, "/health").status == 200, 10, what="sidecar health")
    return p


def endpoints(r):
    return {e["name"]: e for e in get(r.port, "/debug/endpoints").json()["endpoints"]}


def allow(*sims):
    """The sidecar flag that lets it call these prefill sims (SSRF protection is on by
    default)."""
    return ("--allowed-prefillers", ",".join("127.0.0.1:%d" % s.port for s in sims))


def start_router(eps, *extra):
    """eps: (name, port, role). No --policy: endpoints with the prefill role get the P/D
    preset (prefill/decode filters, prefix-cache-scorer x2, queue-scorer, threshold 100)."""
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "2", "--refresh-metrics-interval", "20", "--enable-debug-endpoints"]
    for name, p, role in eps:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d,role=%s" % (name, p, role)]
    args += list(extra)
    r = Proc(args, r"tandem router ready on", 20)
    r.port = port
    wait_until(lambda: get(port, "/ready").status == 200, 10, what="router ready")
    # Every endpoint scraped and healthy before the first decision: a decision taken
    # before the prefill pod is known would be decode-only.
    names = {e[0] for e in eps}

    def all_healthy():
        es = endpoints(r)
        return set(es) == names and all(e["healthy"] for e in es.values())

    wait_until(all_healthy, 10, what="all endpoints healthy")
    return r


class Topo:
    """One prefill sim, n decode sims, and the coordinators in front of them."""

    def __init__(self, mode, n_decode=1, prefill_args=(), decode_args=(), router_args=()):
        self.mode = mode
        self.p = sim("prefill-0", *prefill_args)
        self.d = [sim("decode-%d" % i, *decode_args) for i in range(n_decode)]
        self.sidecars = {}
        eps = [("prefill-0", self.p.port, "prefill")]
        extra = list(router_args)
        if mode == "sidecar":  # the default --pd-mode: decode endpoints are the sidecars
            for d in self.d:
                sc = start_sidecar(d, *allow(self.p))
                self.sidecars[d.name] = sc
                eps.append((d.name, sc.port, "decode"))
        else:
            eps += [(d.name, d.port, "decode") for d in self.d]
            extra = ["--pd-mode", "router"] + extra
        self.router = start_router(eps, *extra)

    def decode(self, name):
        return [d for d in self.d if d.name == name][0]

    def pulls(self, d=None):
        ds = [d] if d else self.d
        return sum(val(x.port, "tandem_sim_kv_pulls_total", result="ok") for x in ds)

    def decisions(self, decision):
        return val(self.router.port, "tandem_router_pd_decisions_total", decision=decision)

    def fallbacks(self):
        """Fallbacks counted by whoever runs the legs."""
        if self.mode == "sidecar":
            return sum(val(s.mport, "tandem_sidecar_pd_fallbacks_total")
                       for s in self.sidecars.values())
        return val(self.router.port, "tandem_router_pd_fallbacks_total")

    def coordinators(self):
        return list(self.sidecars.values()) if self.mode == "sidecar" else [self.router]


def complete(port, prompt, max_tokens=8, headers=None, **kw):
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
    body.update(kw)
    return post(port, "/v1/completions", body, headers=headers, timeout=20)


def ok_text(r, max_tokens=8):
    """Checks a non-streaming completion is whole; returns its usage."""
    assert r.status == 200, (r.status, r.body)
    j = r.json()
    assert j["choices"][0]["text"], j
    assert j["usage"]["completion_tokens"] == max_tokens, j["usage"]
    assert j["usage"]["prompt_tokens"] > 0, j["usage"]
    return j["usage"]


# --- the core suite, once per mode -----------------------------------------------------------

def check_long_prompt_goes_p_then_d(mode):
    t = Topo(mode)
    p, d = t.p, t.d[0]
    assert val(p.port, "vllm:prompt_tokens_total") == 0
    # Non-streaming completion.
    prompt = long_prompt()
    r = complete(t.router.port, prompt, headers={"x-request-id": "pd-rid-1"})
    usage = ok_text(r)
    assert r.header("x-inference-pod") == "decode-0"
    assert r.json()["id"] == "cmpl-pd-rid-1"  # the decode leg kept the client's request id
    # P prefilled the whole prompt, with the same request id, and pinned its blocks...
    assert val(p.port, "vllm:prompt_tokens_total") == usage["prompt_tokens"]
    assert p.wait_log(r"pd-rid-1\S*: prefill done, \d+ KV blocks pinned", 5), p.output()[-2000:]
    # ...which D pulled, releasing the pin.
    assert t.pulls(d) == 1
    assert p.wait_log(r"KV blocks pulled by", 5)
    wait_until(lambda: val(p.port, "tandem_sim_kv_pinned_requests") == 0, 5, what="pin released")
    assert val(d.port, "tandem_sim_pd_fallbacks_total") == 0
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0, usage
    assert t.decisions("disaggregate") == 1 and t.decisions("decode-only") == 0
    # The prefill leg was one token: P generated exactly one.
    assert val(p.port, "vllm:generation_tokens_total") == 1
    if mode == "sidecar":
        sc = t.sidecars["decode-0"]
        assert val(sc.mport, "tandem_sidecar_requests_total", pd="disaggregated") == 1
        assert val(sc.mport, "tandem_sidecar_prefill_duration_seconds_count") == 1
        assert val(sc.mport, "tandem_sidecar_true_ttft_seconds_count") >= 1
    else:
        assert t.router.wait_log(r"pd pair prefill=prefill-0 decode=decode-0 attempt=1", 5)

    # Streaming chat: SSE intact, usage last, and still P then D (the sim refuses a
    # streaming prefill leg, so this also shows the coordinator forced stream: false).
    status, _, raw, _ = stream(t.router.port, "/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": long_prompt()}],
        "max_tokens": 8, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}}, timeout=20)
    assert status == 200, raw[:500]
    events = sse_events(raw)
    assert events[-1] == "[DONE]", events[-3:]
    # role, tokens (the last carries finish_reason), usage, [DONE]
    assert len(events) == 1 + 8 + 1 + 1, events
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]), chunks
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 8 and usage["prompt_tokens"] > 0, usage
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0, usage
    assert t.pulls(d) == 2
    assert val(p.port, "vllm:generation_tokens_total") == 2
    wait_until(lambda: val(p.port, "tandem_sim_kv_pinned_requests") == 0, 5, what="pin released")
    assert t.decisions("disaggregate") == 2
    assert val(p.port, "vllm:request_success_total") == 2


def check_1p2d_spreads_over_both_decoders(mode):
    t = Topo(mode, n_decode=2)
    n = 10
    pods = []
    for _ in range(n):
        r = complete(t.router.port, long_prompt(), max_tokens=4)
        ok_text(r, 4)
        pods.append(r.header("x-inference-pod"))
    assert set(pods) == {"decode-0", "decode-1"}, pods
    for d in t.d:  # each pulled exactly the requests it served
        assert t.pulls(d) == pods.count(d.name), (d.name, t.pulls(d), pods)
    assert val(t.p.port, "vllm:request_success_total") == n
    assert t.decisions("disaggregate") == n
    wait_until(lambda: val(t.p.port, "tandem_sim_kv_pinned_requests") == 0, 5,
               what="every pin released")


def check_short_and_repeated_prompts_decode_in_place(mode):
    t = Topo(mode, n_decode=2)
    p = t.p
    r = complete(t.router.port, "hi")
    ok_text(r)
    assert val(p.port, "vllm:prompt_tokens_total") == 0  # P never saw it
    assert t.decisions("decode-only") == 1 and t.decisions("disaggregate") == 0
    assert t.pulls() == 0
    if mode == "sidecar":
        sc = t.sidecars[r.header("x-inference-pod")]
        assert val(sc.mport, "tandem_sidecar_requests_total", pd="decode_only") == 1
    # A long prompt: disaggregated the first time...
    prompt = long_prompt()
    r1 = complete(t.router.port, prompt)
    ok_text(r1)
    home = r1.header("x-inference-pod")
    seen = val(p.port, "vllm:prompt_tokens_total")
    assert seen > 0 and t.decisions("disaggregate") == 1 and t.pulls() == 1
    # ...and decoded in place, on the pod that holds it, when repeated.
    for i in range(2):
        r2 = complete(t.router.port, prompt)
        ok_text(r2)
        assert r2.header("x-inference-pod") == home
        assert t.decisions("decode-only") == 2 + i and t.decisions("disaggregate") == 1
    assert val(p.port, "vllm:prompt_tokens_total") == seen
    assert t.pulls() == 1
    # The decode pod's own prefix cache served the repeats.
    assert val(t.decode(home).port, "vllm:prefix_cache_hits_total") > 0
    # Per role, for autoscalers: 4 requests reached a decode pod, 1 a prefill pod (3
    # skipped prefill); nothing in flight now, and the scraped gauges settle at idle.
    rr = lambda role: val(t.router.port, "tandem_router_role_requests_total", role=role)
    assert (rr("decode"), rr("prefill")) == (4, 1)
    assert val(t.router.port, "tandem_router_role_inflight", role="decode") == 0
    assert val(t.router.port, "tandem_router_role_inflight", role="prefill") == 0
    for g in ("tandem_router_role_queue", "tandem_router_role_running"):
        wait_until(lambda: val(t.router.port, g, role="decode") == 0, 5, what=g + " idle")


def check_prefill_5xx_falls_back(mode):
    t = Topo(mode, prefill_args=("--failure-rate", "1", "--failure-types", "503"))
    p, d = t.p, t.d[0]
    n = 3
    for _ in range(n):
        ok_text(complete(t.router.port, long_prompt()))
    # P was asked (and failed), D prefilled by itself, the fallback was counted and logged.
    assert val(p.port, "tandem_sim_faults_injected_total") >= 1
    assert t.pulls() == 0
    assert val(d.port, "vllm:request_success_total") == n
    assert val(d.port, "vllm:prompt_tokens_total") > 0
    assert t.fallbacks() >= 1
    assert t.fallbacks() + t.decisions("decode-only") >= n
    assert any(c.wait_log(r"WARN.*fallback", 5) for c in t.coordinators()), \
        "\n".join(c.output()[-2000:] for c in t.coordinators())
    if mode == "sidecar":
        sc = t.sidecars["decode-0"]
        assert val(sc.mport, "tandem_sidecar_requests_total", pd="fallback") == t.fallbacks()
        assert val(sc.mport, "tandem_sidecar_pd_fallbacks_total") >= 1


def check_prefill_killed_falls_back(mode):
    t = Topo(mode)
    p, d = t.p, t.d[0]
    ok_text(complete(t.router.port, long_prompt()))
    assert t.pulls() == 1
    p.stop()
    n = 5
    for _ in range(n):  # no client errors
        ok_text(complete(t.router.port, long_prompt()))
    assert t.pulls() == 1
    assert val(d.port, "vllm:request_success_total") == 1 + n
    # Counted: either the coordinator's prefill leg failed (a fallback) or the router
    # already knew P was down and decided decode-only; nothing silent.
    assert t.fallbacks() + t.decisions("decode-only") >= n, (t.fallbacks(),
                                                             t.decisions("decode-only"))
    if t.fallbacks():
        assert any(c.wait_log(r"WARN.*fallback", 5) for c in t.coordinators())
    wait_until(lambda: not endpoints(t.router)["prefill-0"]["healthy"], 5,
               what="prefill-0 unhealthy")


def check_prefill_400_goes_to_the_client(mode):
    t = Topo(mode, prefill_args=("--failure-rate", "1", "--failure-types", "400"))
    d = t.d[0]
    r = complete(t.router.port, long_prompt())
    assert r.status == 400, (r.status, r.body)
    assert "injected failure (--failure-rate)" in r.json()["error"]["message"], r.body
    assert val(t.p.port, "tandem_sim_faults_injected_total") == 1
    # The request is bad: no decode leg, no fallback.
    assert val(d.port, "vllm:request_success_total") == 0
    assert val(d.port, "vllm:prompt_tokens_total") == 0
    assert t.fallbacks() == 0


def check_client_disconnect_cancels_prefill(mode):
    # fast profile x10000: the prefill step of a 640-character prompt takes ~2.7 s.
    t = Topo(mode, prefill_args=("--time-scale", "10000", "--kv-hold-timeout", "2"))
    p, d = t.p, t.d[0]
    c = socket.create_connection(("127.0.0.1", t.router.port), timeout=5)
    body = json.dumps({"model": "m", "prompt": long_prompt(), "max_tokens": 50,
                       "ignore_eos": True, "stream": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_until(lambda: val(p.port, "vllm:num_requests_running") == 1, 5,
               what="the prefill leg to run on P")
    assert t.decisions("disaggregate") == 1  # a prefill leg, not the request itself on P
    # In flight during the leg: the decode pod has the request from the prefill leg on;
    # in router mode the router runs the leg, so P has it too (load scoring of prefill
    # picks, autoscaling on the prefill role); in sidecar mode the sidecar runs it.
    inflight = lambda role: val(t.router.port, "tandem_router_role_inflight", role=role)
    assert (inflight("decode"), inflight("prefill")) == (1, 1 if mode == "router" else 0)
    c.close()
    t0 = time.monotonic()
    wait_until(lambda: val(p.port, "vllm:num_requests_running") == 0, 5,
               what="P to stop the prefill")
    assert time.monotonic() - t0 < 1.0  # well before the prefill would have finished
    wait_until(lambda: (inflight("decode"), inflight("prefill")) == (0, 0), 2,
               what="nothing in flight after the cancel")
    wait_until(lambda: val(p.port, "vllm:request_success_total", finished_reason="abort") == 1,
               2, what="P to count the abort")
    wait_until(lambda: val(p.port, "tandem_sim_kv_pinned_requests") == 0, 2.5,
               what="no pin left on P")
    # Nothing reached D, nothing was pinned, nothing expired.
    assert val(d.port, "vllm:request_success_total") == 0
    assert val(d.port, "vllm:num_requests_running") == 0
    assert val(p.port, "tandem_sim_kv_pulls_total", result="expired") == 0


CORE = [check_long_prompt_goes_p_then_d, check_1p2d_spreads_over_both_decoders,
        check_short_and_repeated_prompts_decode_in_place, check_prefill_5xx_falls_back,
        check_prefill_killed_falls_back, check_prefill_400_goes_to_the_client,
        check_client_disconnect_cancels_prefill]


def in_mode(check, mode):
    def t():
        check(mode)
    t.__name__ = "%s[%s]" % (check.__name__.replace("check_", "test_"), mode)
    return t


# --- sidecar only ----------------------------------------------------------------------------

def test_sidecar_direct():
    p, d = sim("prefill-0"), sim("decode-0")
    dead = free_port()  # an allowed prefiller that refuses connections (below)
    sc = start_sidecar(d, "--log-level", "info", "--allowed-prefillers",
                       "127.0.0.1:%d,127.0.0.1:%d" % (p.port, dead))
    # Its own health; everything else is the engine's.
    assert get(sc.port, "/health").status == 200
    assert [m["id"] for m in get(sc.port, "/v1/models").json()["data"]] == ["m"]
    assert "vllm:num_requests_running" in get(sc.port, "/metrics").body.decode()
    # No header: a plain proxy.
    r = complete(sc.port, long_prompt())
    ok_text(r)
    assert r.header("x-inference-pod") == "decode-0"
    assert val(p.port, "vllm:prompt_tokens_total") == 0 and val(d.port, "tandem_sim_kv_pulls_total") == 0
    assert val(sc.mport, "tandem_sidecar_requests_total", pd="decode_only") == 1
    own = get(sc.mport, "/metrics").body.decode()
    assert "tandem_sidecar_requests_total" in own, own[:500]
    # The header, with a scheme and a second (ignored) entry: P then D.
    hdr = {"x-prefiller-host-port": "http://127.0.0.1:%d,127.0.0.1:1" % p.port}
    ok_text(complete(sc.port, long_prompt(), headers=hdr))
    assert val(p.port, "vllm:request_success_total") == 1
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1
    assert val(sc.mport, "tandem_sidecar_requests_total", pd="disaggregated") == 1
    # Streaming completions through the sidecar: SSE intact.
    status, _, raw, _ = stream(sc.port, "/v1/completions", {
        "model": "m", "prompt": long_prompt(), "max_tokens": 5, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True}},
        headers={"x-prefiller-host-port": "127.0.0.1:%d" % p.port})
    assert status == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 5
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 2
    # A prefiller that refuses connections: decode-only fallback, counted and logged.
    ok_text(complete(sc.port, long_prompt(),
                     headers={"x-prefiller-host-port": "127.0.0.1:%d" % dead}))
    assert val(sc.mport, "tandem_sidecar_pd_fallbacks_total") == 1
    assert val(sc.mport, "tandem_sidecar_requests_total", pd="fallback") == 1
    assert sc.wait_log(r"WARN.*fallback", 5), sc.output()[-2000:]
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 2
    wait_until(lambda: val(p.port, "tandem_sim_kv_pinned_requests") == 0, 5, what="no pins")


def test_sidecar_ssrf_protection():
    p, d = sim("prefill-0"), sim("decode-0")
    other = free_port()
    sc = start_sidecar(d, "--enable-ssrf-protection", "--allowed-prefillers",
                       "127.0.0.1:%d" % other)
    r = complete(sc.port, long_prompt(),
                 headers={"x-prefiller-host-port": "127.0.0.1:%d" % p.port})
    assert r.status == 403, (r.status, r.body)
    err = r.json()["error"]
    assert "127.0.0.1:%d" % p.port in err["message"], err
    # Neither engine saw anything.
    assert val(p.port, "vllm:prompt_tokens_total") == 0
    assert val(p.port, "vllm:request_success_total") == 0
    assert val(d.port, "vllm:request_success_total") == 0
    # Smuggling an allowed host:port into the host part is refused (unbracketed colons).
    for smuggled in ("127.0.0.1:%d:%d" % (other, p.port), "[127.0.0.1:%d]:%d" % (other, p.port)):
        r = complete(sc.port, long_prompt(), headers={"x-prefiller-host-port": smuggled})
        assert r.status in (400, 403), (smuggled, r.status, r.body)
    assert val(p.port, "vllm:request_success_total") == 0
    # The same prefiller on the list is used.
    sc2 = start_sidecar(d, "--enable-ssrf-protection", "--allowed-prefillers",
                        "127.0.0.1:%d,127.0.0.1:%d" % (other, p.port))
    ok_text(complete(sc2.port, long_prompt(),
                     headers={"x-prefiller-host-port": "127.0.0.1:%d" % p.port}))
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1


def test_sidecar_ssrf_on_by_default():
    """With no allowed prefillers configured, the sidecar calls none: 403, counted,
    logged once with how to configure it; --enable-ssrf-protection=false opts out."""
    p, d = sim("prefill-0"), sim("decode-0")
    sc = start_sidecar(d)
    assert sc.wait_log(r"WARN.*SSRF protection is on and no prefiller is allowed.*"
                       r"--allowed-prefillers", 5), sc.output()[-2000:]
    for _ in range(3):
        r = complete(sc.port, long_prompt(),
                     headers={"x-prefiller-host-port": "127.0.0.1:%d" % p.port})
        assert r.status == 403, (r.status, r.body)
        err = r.json()["error"]
        assert "no prefillers are configured" in err["message"], err
        assert err["code"] == 403 and err["type"], err
    assert val(sc.mport, "tandem_sidecar_requests_total", pd="refused") == 3
    refusals = [l for l in sc.output().splitlines() if "refused: SSRF protection is on" in l]
    assert len(refusals) == 1, refusals  # once, not per request
    assert "--enable-ssrf-protection=false" in refusals[0], refusals[0]
    assert val(p.port, "vllm:request_success_total") == 0
    assert val(d.port, "vllm:request_success_total") == 0
    # Requests without the header are still proxied.
    ok_text(complete(sc.port, long_prompt()))
    # Opting out: any prefiller is called.
    sc2 = start_sidecar(d, "--enable-ssrf-protection=false")
    ok_text(complete(sc2.port, long_prompt(),
                     headers={"x-prefiller-host-port": "127.0.0.1:%d" % p.port}))
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1
    assert val(p.port, "vllm:request_success_total") == 1


def test_router_ignores_client_prefiller_header():
    """The router's P/D legs go only to its own endpoints: a client's
    x-prefiller-host-port is dropped, in both modes."""
    for mode in ("sidecar", "router"):
        t = Topo(mode)
        evil = sim("evil-0")
        r = complete(t.router.port, "hi", headers={"x-prefiller-host-port":
                                                   "127.0.0.1:%d" % evil.port})
        ok_text(r)
        assert val(evil.port, "vllm:request_success_total") == 0
        assert val(t.p.port, "vllm:request_success_total") == 0


def test_sidecar_decode_down():
    t = Topo("sidecar", n_decode=2)
    prompt = long_prompt()
    r = complete(t.router.port, prompt)
    ok_text(r)
    home = r.header("x-inference-pod")
    other = "decode-1" if home == "decode-0" else "decode-0"
    t.decode(home).stop()
    # The sidecar in front of the dead engine says so.
    sc = t.sidecars[home]
    r = complete(sc.port, long_prompt(), headers={"x-prefiller-host-port": t.p.base})
    assert r.status == 503, (r.status, r.body)
    assert "decode endpoint not ready" in r.body.decode(), r.body
    # The router stops picking it: traffic moves to the other decode pod.
    wait_until(lambda: not endpoints(t.router)[home]["healthy"], 5, what="%s unhealthy" % home)
    for _ in range(4):
        r = complete(t.router.port, prompt + " " + long_prompt())
        ok_text(r)
        assert r.header("x-inference-pod") == other
    assert t.pulls(t.decode(other)) == 4


# --- router mode only ------------------------------------------------------------------------

def test_router_mode_decode_down_pair_retry():
    # Slow scrapes: the router learns that a decode pod died from the refused decode leg.
    t = Topo("router", n_decode=2, router_args=("--refresh-metrics-interval", "3000",
                                                "--metrics-staleness-threshold", "60000"))
    prompt = long_prompt()
    r = complete(t.router.port, prompt)
    ok_text(r)
    home = r.header("x-inference-pod")
    other = "decode-1" if home == "decode-0" else "decode-0"
    t.decode(home).stop()
    # Shares its first 640 characters with `prompt`, so the prefix scorer picks `home`
    # again, and is long enough uncached to be disaggregated: the pair fails on the
    # decode leg and is retried with the other decode pod, with no client error.
    mark = t.router.line_count()
    r = complete(t.router.port, prompt + " " + long_prompt())
    ok_text(r)
    assert r.header("x-inference-pod") == other
    assert t.router.wait_log(r"pd pair prefill=prefill-0 decode=%s attempt=1" % home, 5,
                             start=mark), t.router.output()[-3000:]
    assert t.router.wait_log(r"pd pair prefill=prefill-0 decode=%s attempt=2" % other, 5,
                             start=mark), t.router.output()[-3000:]
    assert t.pulls(t.decode(other)) == 1
    wait_until(lambda: not endpoints(t.router)[home]["healthy"], 5, what="%s unhealthy" % home)
    for _ in range(3):
        r = complete(t.router.port, long_prompt())
        ok_text(r)
        assert r.header("x-inference-pod") == other
    # No decode pod left: 503 with a message that says why.
    t.decode(other).stop()
    r = complete(t.router.port, long_prompt())
    assert r.status == 503, (r.status, r.body)
    msg = r.json()["error"]["message"]
    assert msg and re.search(r"decode|endpoint", msg), msg


def test_prefill_decode_url_flags():
    p, d = sim("prefill-0"), sim("decode-0")
    port = free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
              "--workers", "1", "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
              "--prefill", "http://127.0.0.1:%d" % p.port,
              "--decode", "http://127.0.0.1:%d" % d.port], r"tandem router ready on", 20)
    r.port = port
    wait_until(lambda: get(port, "/ready").status == 200, 10, what="router ready")
    es = get(port, "/debug/endpoints").json()["endpoints"]
    assert sorted(e["role"] for e in es) == ["decode", "prefill"], es
    wait_until(lambda: all(e["healthy"] for e in get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="endpoints healthy")
    # Router mode is implied: the router runs both legs against the sims themselves.
    ok_text(complete(port, long_prompt()))
    assert val(p.port, "vllm:request_success_total") == 1
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1
    assert r.wait_log(r"pd pair prefill=\S+ decode=\S+ attempt=1", 5), r.output()[-2000:]
    assert val(port, "tandem_router_pd_decisions_total", decision="disaggregate") == 1
    ok_text(complete(port, "hi"))
    assert val(port, "tandem_router_pd_decisions_total", decision="decode-only") == 1
    assert val(p.port, "vllm:request_success_total") == 1


def start_dp_sidecar(base, env=None):
    """A sidecar with --data-parallel-size 2 on two consecutive free ports."""
    for _ in range(20):
        port = free_port()
        try:
            sc = Proc(["sidecar", "--host", "127.0.0.1", "--port", str(port), "--vllm-port",
                       str(base), "--data-parallel-size", "2"], r"tandem sidecar ready on", 20,
                      env=env)
        except AssertionError:
            continue
        sc.port = port
        wait_until(lambda: get(port, "/health").status == 200, 10, what="sidecar health")
        return sc
    raise AssertionError("no two consecutive free ports for the sidecar")


def test_sidecar_data_parallel_host_port():
    # llm-d's sidecar with --data-parallel-size 2: rank i's engine listens on the decoder
    # port + i; on --port, x-data-parallel-host-port HOST:(--port + i) sends the request to
    # rank i, a port that is no rank of this pod is a 400, no header goes to rank 0; rank
    # i is also served on --port + i directly (the header is not looked at there)
    r0 = r1 = None
    for _ in range(20):  # two consecutive free ports for the two ranks' engines
        base = free_port()
        r0 = sim("rank-0", port=base)
        try:
            r1 = sim("rank-1", port=base + 1)
            break
        except AssertionError:
            r0.stop()
    assert r1, "no two consecutive free ports"
    sc = start_dp_sidecar(base)
    port = sc.port

    def pod(hp, at=None):
        h = {"x-data-parallel-host-port": hp} if hp else None
        r = complete(at or port, "hello", max_tokens=2, headers=h)
        return r.status, r.header("x-inference-pod"), r
    assert pod("127.0.0.1:%d" % port)[:2] == (200, "rank-0")
    assert pod("127.0.0.1:%d" % (port + 1))[:2] == (200, "rank-1")
    assert pod(None)[:2] == (200, "rank-0")
    st, _, r = pod("127.0.0.1:%d" % (port + 2))
    assert st == 400 and "x-data-parallel-host-port" in r.json()["error"]["message"], r.body
    assert pod("nonsense")[0] == 400
    # rank 1's own port
    assert get(port + 1, "/health").status == 200
    assert pod(None, at=port + 1)[:2] == (200, "rank-1")
    assert pod("127.0.0.1:%d" % port, at=port + 1)[:2] == (200, "rank-1")
    sc.stop()
    # with POD_IP set (as in a pod) the host must be the pod's
    sc = start_dp_sidecar(base, env={"POD_IP": "10.1.2.3"})
    port = sc.port
    assert pod("10.1.2.3:%d" % (port + 1))[:2] == (200, "rank-1")
    assert pod("127.0.0.1:%d" % (port + 1))[0] == 400
    # --port 0 cannot have rank ports
    out = subprocess.run([TANDEM, "sidecar", "--port", "0", "--vllm-port", str(base),
                          "--data-parallel-size", "2"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode != 0 and "--data-parallel-size" in out.stderr, out.stderr


def test_router_data_parallel_through_sidecar():
    # the whole llm-d DP hop with tandem on both ends: the router's
    # data-parallel-profile-handler (llm-d's sample config) sends every request to the pod's
    # primary port (the sidecar) with x-data-parallel-host-port naming the picked rank, and
    # the sidecar hands it to that rank's engine; the ranks are scraped through the
    # sidecar's rank ports
    r0 = r1 = None
    for _ in range(20):
        base = free_port()
        r0 = sim("rank-0", port=base)
        try:
            r1 = sim("rank-1", port=base + 1)
            break
        except AssertionError:
            r0.stop()
    assert r1, "no two consecutive free ports"
    sc = start_dp_sidecar(base)
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "data", "epp-configs", "llm-d-inference-scheduler",
                             "deploy-config-dp-epp-config.yaml")).read()
    assert "primaryPort: 8000" in text
    text = text.replace("primaryPort: 8000", "primaryPort: %d" % sc.port)
    port = free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
              "--workers", "1", "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
              "--config-text", text,
              "--endpoint", "name=rank-0,addr=127.0.0.1:%d,role=decode" % sc.port,
              "--endpoint", "name=rank-1,addr=127.0.0.1:%d,role=decode" % (sc.port + 1)],
             r"tandem router ready on", 20)
    wait_until(lambda: all(e["healthy"] for e in get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="both ranks scraped through the sidecar")
    seen = set()
    for i in range(8):
        p = long_prompt(200) + " dp %d" % i
        got = complete(port, p, max_tokens=2)
        assert got.status == 200, got.body
        # the prefix-cache-scorer sends the same prompt where it went: the router's pick
        picked = post(port, "/debug/schedule", {"model": "m", "prompt": p}).json()["picked"][0]
        assert got.header("x-inference-pod") == picked, (got.headers, picked)
        seen.add(picked)
    assert seen, seen


if __name__ == "__main__":
    run([in_mode(c, m) for m in ("sidecar", "router") for c in CORE] +
        [test_sidecar_direct, test_sidecar_ssrf_protection, test_sidecar_ssrf_on_by_default,
         test_router_ignores_client_prefiller_header, test_sidecar_decode_down,
         test_router_mode_decode_down_pair_retry, test_prefill_decode_url_flags,
         test_sidecar_data_parallel_host_port, test_router_data_parallel_through_sidecar])

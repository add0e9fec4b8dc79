#!/usr/bin/env python3
"""llm-d's current EndpointPickerConfig features through a real router: --help-plugins lists
the registry, llm-d's copied configs start a router, the metrics-data-source path is what
gets scraped, and data-parallel-profile-handler sends a request to the pod's primary port
with x-data-parallel-host-port naming the rank that was picked."""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import TANDEM, Proc, free_port, get, metric, post, run, sims, wait_until

SRC = os.environ.get("TANDEM_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(SRC, "tests", "data", "epp-configs", "llm-d-inference-scheduler")


def router(backends, *extra):
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "1", "--refresh-metrics-interval", "20", "--enable-debug-endpoints"]
    for b in backends:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d" % (b.name, b.port)]
    p = Proc(args + list(extra), r"tandem router ready on", 20)
    p.port = port
    return p


def healthy(port):
    return [e["healthy"] for e in get(port, "/debug/endpoints").json()["endpoints"]]


def test_help_plugins():
    out = subprocess.run([TANDEM, "router", "--help-plugins"], capture_output=True, timeout=10)
    assert out.returncode == 0, out
    text = out.stdout.decode()
    rows = {l.split()[0]: l.split()[1] for l in text.splitlines()[1:] if l.strip()}
    assert rows["prefix-cache-scorer"] == "scorer"
    assert rows["data-parallel-profile-handler"] == "profile-handler"
    assert rows["metrics-data-source"] == "data-source"
    assert rows["openai-parser"] == "parser"
    assert "blockSizeTokens" in text and "primaryPort" in text
    # plugins tandem does not have are not listed (a config needing them fails to load)
    assert rows["probabilistic-admitter"] == "admitter"
    assert rows["token-producer"] == "data-producer"
    assert rows["precise-prefix-cache-scorer"] == "scorer" and "zmqEndpoint" in text
    assert rows["encode-filter"] == "filter"
    assert rows["always-disagg-multimodal-decider"] == "pd-decider"
    assert "deciders{prefill,encode}" in text
    assert "not-a-plugin-type" not in rows


def test_llm_d_configs_route():
    # the chart's default config and the sim P/D-less config route through real sims
    a, b = sims(2)
    for name in ("config-charts-epplib-templates-_config-default.yaml",
                 "deploy-config-sim-epp-config.yaml"):
        r = router([a, b], "--config-file", os.path.join(CONFIGS, name))
        wait_until(lambda: all(healthy(r.port)), 10, what="endpoints scraped")
        resp = post(r.port, "/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 2})
        assert resp.status == 200, (name, resp.status, resp.body)
        r.stop()


def test_metrics_data_source_path():
    a, = sims(1)
    cfg = ("plugins:\n- type: queue-scorer\n- type: metrics-data-source\n"
           "  parameters: {path: /not-metrics}\n- type: core-metrics-extractor\n"
           "schedulingProfiles:\n- name: default\n  plugins: [{pluginRef: queue-scorer}]\n"
           "dataLayer:\n  sources:\n  - pluginRef: metrics-data-source\n"
           "    extractors: [{pluginRef: core-metrics-extractor}]\n")
    r = router([a], "--config-text", cfg)
    # the sim has no /not-metrics: the scrape fails there, so the endpoint never turns healthy
    assert r.wait_log(r"metrics scrape failed \(HTTP 404\); marked unhealthy", 10), \
        r.output()[-2000:]
    assert healthy(r.port) == [False]
    r.stop()
    r = router([a], "--config-text", cfg.replace("/not-metrics", "/metrics"))
    wait_until(lambda: healthy(r.port) == [True], 10, what="scraped at /metrics")


class Primary(BaseHTTPRequestHandler):
    """Stands in for a DP pod's primary port (its routing sidecar): records the header."""
    seen = []

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        Primary.seen.append(self.headers.get("x-data-parallel-host-port"))
        body = json.dumps({"id": "cmpl-1", "object": "text_completion", "model": "m",
                           "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                     "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_data_parallel_profile_handler():
    ranks = sims(2)  # two ranks' ports of one pod (same host)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Primary)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        primary = srv.server_address[1]
        text = open(os.path.join(CONFIGS, "deploy-config-dp-epp-config.yaml")).read()
        assert "primaryPort: 8000" in text
        r = router(ranks, "--config-text", text.replace("primaryPort: 8000",
                                                          "primaryPort: %d" % primary))
        wait_until(lambda: all(healthy(r.port)), 10, what="ranks scraped")
        for i in range(4):
            resp = post(r.port, "/v1/completions",
                        {"model": "m", "prompt": "dp %d" % i, "max_tokens": 1})
            assert resp.status == 200, (resp.status, resp.body)
        assert len(Primary.seen) == 4, Primary.seen
        rank_addrs = {"127.0.0.1:%d" % s.port for s in ranks}
        assert all(h in rank_addrs for h in Primary.seen), (Primary.seen, rank_addrs)
        # the ranks themselves were not called: the primary port's sidecar does that
        for s in ranks:
            m = get(s.port, "/metrics").body.decode()
            assert "vllm:request_success_total" not in m or \
                all(l.endswith(" 0") or l.endswith(" 0.0") for l in m.splitlines()
                    if l.startswith("vllm:request_success_total")), m[:400]
    finally:
        srv.shutdown()


def test_admission_sheds_sheddable_requests():
    """llm-d's probabilistic-admitter sample config; its utilization-detector made to see
    every pod saturated (metrics always stale): a sheddable request (its objective's
    priority < 0) gets 429, counted; the others are served."""
    a, b = sims(2)
    text = open(os.path.join(CONFIGS, "deploy-config-probabilistic-admitter-epp-config.yaml")).read()
    text = text.replace("kvCacheUtilThreshold: 1.0",
                        "kvCacheUtilThreshold: 1.0\n    metricsStalenessThreshold: 1ns")
    assert "metricsStalenessThreshold: 1ns" in text
    r = router([a, b], "--config-text", text, "--inference-objective", "batch=-1",
               "--inference-objective", "chat=2")
    wait_until(lambda: all(healthy(r.port)), 10, what="endpoints scraped")
    body = {"model": "m", "prompt": "hi", "max_tokens": 1}
    resp = post(r.port, "/v1/completions", body,
                headers={"x-gateway-inference-objective": "batch"})
    assert resp.status == 429, (resp.status, resp.body)
    assert "system saturated, sheddable request dropped" in resp.json()["error"]["message"]
    for hdr in ({"x-gateway-inference-objective": "chat"}, {}):
        resp = post(r.port, "/v1/completions", body, headers=hdr)
        assert resp.status == 200, (hdr, resp.status, resp.body)
    m = get(r.port, "/metrics").body.decode()
    assert any(l.startswith("tandem_router_requests_total") and 'code="429"' in l
               and l.endswith(" 1") for l in m.splitlines()), \
        [l for l in m.splitlines() if l.startswith("tandem_router_requests_total")]
    # a bad flag is refused clearly
    out = subprocess.run([TANDEM, "router", "--inference-objective", "batch"],
                         capture_output=True, timeout=10)
    assert out.returncode != 0 and b"NAME=PRIORITY" in out.stderr, out


class Tokenizer(BaseHTTPRequestHandler):
    """Stands in for the engine's /tokenize: 40 ids for any prompt; records each call."""
    calls = []

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        Tokenizer.calls.append((self.path, json.loads(self.rfile.read(n))))
        body = json.dumps({"count": 40, "max_model_len": 4096,
                           "tokens": list(range(100, 140)), "token_strs": None}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def pd_decisions(port, decision):
    m = get(port, "/metrics").body.decode()
    for l in m.splitlines():
        if l.startswith("tandem_router_pd_decisions_total") and 'decision="%s"' % decision in l:
            return float(l.split()[-1])
    return 0.0


def test_token_producer_tokenizes_through_the_engine():
    """The engine's token count drives the P/D decider: a 2-word prompt that tandem would
    count as a few tokens is 40 tokens to the engine, over nonCachedTokens 16, so the
    request disaggregates; the second time the cached ids are used (no second call)."""
    d, p = sims(2, roles=["decode", "prefill"])
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Tokenizer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = ("plugins:\n- type: token-producer\n  parameters:\n    modelName: tok-model\n"
               "    vllm:\n      http: http://127.0.0.1:%d/prefix\n"
               "- type: prefill-filter\n- type: decode-filter\n- type: prefix-cache-scorer\n"
               "- type: prefix-based-pd-decider\n  parameters: {nonCachedTokens: 16}\n"
               "- type: disagg-profile-handler\n"
               "  parameters: {deciders: {prefill: prefix-based-pd-decider}}\n"
               "schedulingProfiles:\n- name: prefill\n  plugins: [{pluginRef: prefill-filter}]\n"
               "- name: decode\n  plugins: [{pluginRef: decode-filter}, "
               "{pluginRef: prefix-cache-scorer}]\n") % srv.server_address[1]
        port = free_port()
        args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                "--workers", "1", "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
                "--pd-mode", "router", "--config-text", cfg,
                "--endpoint", "name=decode-0,addr=127.0.0.1:%d,role=decode" % d.port,
                "--endpoint", "name=prefill-0,addr=127.0.0.1:%d,role=prefill" % p.port]
        r = Proc(args, r"tandem router ready on", 20)
        r.port = port
        wait_until(lambda: all(healthy(port)), 10, what="endpoints scraped")
        body = {"model": "m", "prompt": "hello world", "max_tokens": 1}
        for i in range(2):
            resp = post(port, "/v1/completions", body)
            assert resp.status == 200, (resp.status, resp.body)
        assert len(Tokenizer.calls) == 1, Tokenizer.calls
        path, sent = Tokenizer.calls[0]
        assert path == "/prefix/tokenize" and sent == {"model": "tok-model", "prompt": "hello world"}, \
            Tokenizer.calls
        assert pd_decisions(port, "disaggregate") == 2, get(port, "/metrics").body.decode()[:3000]
        assert metric(port, "tandem_router_token_producer_total", result="tokenized") == 1
        assert metric(port, "tandem_router_token_producer_total", result="cached") == 1
        # a chat goes as messages with the generation prompt
        resp = post(port, "/v1/chat/completions",
                    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        assert resp.status == 200, (resp.status, resp.body)
        assert Tokenizer.calls[-1][1] == {"model": "tok-model", "add_generation_prompt": True,
                                          "messages": [{"role": "user", "content": "hi"}]}, \
            Tokenizer.calls[-1]
    finally:
        srv.shutdown()
        srv.server_close()
    # the engine's tokenizer gone: the request is still served, on the estimate
    before = len(Tokenizer.calls)
    resp = post(port, "/v1/completions", {"model": "m", "prompt": "another one", "max_tokens": 1})
    assert resp.status == 200, (resp.status, resp.body)
    assert len(Tokenizer.calls) == before
    assert pd_decisions(port, "decode-only") >= 1
    assert metric(port, "tandem_router_token_producer_total", result="failed") == 1


def test_token_producer_against_the_sim():
    """The sim's own /tokenize (vLLM's format) as the engine's tokenizer."""
    a, = sims(1)
    cfg = ("plugins:\n- type: token-producer\n  parameters:\n    modelName: m\n"
           "    vllm: {http: 'http://127.0.0.1:%d'}\n- type: queue-scorer\n"
           "schedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer}]\n") % a.port
    r = router([a], "--config-text", cfg)
    wait_until(lambda: all(healthy(r.port)), 10, what="endpoints scraped")
    for i in range(3):
        resp = post(r.port, "/v1/completions", {"model": "m", "prompt": "same prompt", "max_tokens": 1})
        assert resp.status == 200, (resp.status, resp.body)
    assert metric(r.port, "tandem_router_token_producer_total", result="tokenized") == 1
    assert metric(r.port, "tandem_router_token_producer_total", result="cached") == 2


if __name__ == "__main__":
    run([test_help_plugins, test_llm_d_configs_route, test_metrics_data_source_path,
         test_data_parallel_profile_handler, test_admission_sheds_sheddable_requests,
         test_token_producer_tokenizes_through_the_engine, test_token_producer_against_the_sim])

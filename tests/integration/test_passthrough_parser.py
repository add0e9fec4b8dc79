#!/usr/bin/env python3
"""passthrough-parser as the config's parser: the router reads nothing from the request body
(llm-d's passthrough keeps it as raw bytes), so a body tandem's OpenAI parser would refuse
reaches the engine unchanged and the engine answers it; with the default parser the router
answers 400 itself. Routing still works on what is left (load), and the decision log shows
no model."""
import json

from harness import Proc, free_port, get, post, request, run, sims, wait_until

CFG = """apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: passthrough-parser
- type: queue-scorer
- type: max-score-picker
parser:
  pluginRef: passthrough-parser
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
"""


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
    return all(e["healthy"] for e in get(port, "/debug/endpoints").json()["endpoints"])


BAD = b'{"model": "m", "prompt": "hi", "max_tokens": 1, "stream": '  # truncated JSON


def test_passthrough_forwards_unparsed_bodies():
    backends = sims(1)
    plain = router(backends)
    raw = router(backends, "--config-text", CFG)
    try:
        for r in (plain, raw):
            wait_until(lambda: healthy(r.port), 10, what="sim scraped")
        # the default parser: the router itself refuses the body
        a = request(plain.port, "POST", "/v1/completions", BAD)
        assert a.status == 400, (a.status, a.body)
        # passthrough: the engine got it and answered (its own error, not the router's)
        b = request(raw.port, "POST", "/v1/completions", BAD)
        assert b.status == 400, (b.status, b.body)
        assert a.body != b.body, (a.body, b.body)
        sim_direct = request(backends[0].port, "POST", "/v1/completions", BAD)
        assert b.body == sim_direct.body, (b.body, sim_direct.body)
        # a good request routes and completes; the decision saw no model
        ok = post(raw.port, "/v1/completions", {"model": "m", "prompt": "hello", "max_tokens": 2})
        assert ok.status == 200, (ok.status, ok.body)
        assert json.loads(ok.body)["choices"][0]["text"] is not None
        d = post(raw.port, "/debug/schedule", {"model": "m", "prompt": "hello"})
        assert d.status == 200, (d.status, d.body)
        assert json.loads(d.body)["model"] is None, d.body
    finally:
        raw.stop()
        plain.stop()
        for s in backends:
            s.stop()


if __name__ == "__main__":
    run([test_passthrough_forwards_unparsed_bodies])

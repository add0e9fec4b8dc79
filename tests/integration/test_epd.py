"""E/P/D end to end, as llm-d runs it: tandem router with llm-d's own sample configs
(deploy/config/sim-e-p-d-epp-config.yaml and sim-e-pd-epp-config.yaml, copied unchanged
into tests/data), sims labelled llm-d.ai/role encode / prefill / decode, the decode sim
behind a tandem sidecar with --ec-connector ec-example. A multimodal chat request goes
encoder -> prefill -> decode; a text request skips the encoder. Every check reads the
sims' and the sidecar's own metrics and logs."""

import json
import os
import time

from harness import Proc, free_port, get, metric, post, run, start_sim, wait_until

SRC = os.environ.get("TANDEM_SRC", os.getcwd())
CFG = os.path.join(SRC, "tests/data/epp-configs/llm-d-inference-scheduler")
E_P_D = os.path.join(CFG, "deploy-config-sim-e-p-d-epp-config.yaml")
E_PD = os.path.join(CFG, "deploy-config-sim-e-pd-epp-config.yaml")

TEXT = ("Describe what you see in detail: every object, colour and person, where it was "
        "probably taken and why you think so, in a few short sentences please.")


def val(port, name, **labels):
    return metric(port, name, **labels) or 0.0


def sim(name, *extra):
    s = start_sim("--model", "m", "--profile", "fast", "--pod-name", name, *extra)
    s.name = name
    return s


def start_sidecar(engine, allowed):
    port, mport = free_port(), free_port()
    p = Proc(["sidecar", "--host", "127.0.0.1", "--port", str(port), "--vllm-port",
              str(engine.port), "--metrics-port", str(mport), "--ec-connector", "ec-example",
              "--allowed-prefillers", ",".join("127.0.0.1:%d" % s.port for s in allowed)],
             r"tandem sidecar ready on 127\.0\.0\.1:%d" % port, 20)
    p.port, p.mport = port, mport
    wait_until(lambda: get(port, "/health").status == 200, 10, what="sidecar health")
    return p


def start_router(config, eps, *extra):
    """eps: (name, port, llm-d.ai/role label): the role comes from the label only."""
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
            "--config-file", config] + list(extra)
    for name, p, role in eps:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d,label.llm-d.ai/role=%s" %
                 (name, p, role)]
    r = Proc(args, r"tandem router ready on", 20)
    r.port = port

    def all_healthy():
        es = get(port, "/debug/endpoints").json()["endpoints"]
        return len(es) == len(eps) and all(e["healthy"] for e in es)

    wait_until(all_healthy, 10, what="all endpoints healthy")
    return r


def mm_body(urls, audio=False, stream=False):
    content = [{"type": "text", "text": TEXT}]
    content += [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    if audio:
        content.append({"type": "input_audio",
                        "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}})
    return {"model": "m", "max_tokens": 4, "stream": stream,
            "messages": [{"role": "user", "content": content}]}


def text_body():
    return {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": TEXT}]}


class Topo:
    def __init__(self, config, with_prefill, encoder_args=()):
        self.e = sim("encode-0", "--mm-encoder-only", "--mm-encode-ms", "150", *encoder_args)
        self.p = sim("prefill-0") if with_prefill else None
        self.d = sim("decode-0")
        allowed = [self.e] + ([self.p] if self.p else [])
        self.sc = start_sidecar(self.d, allowed)
        eps = [("encode-0", self.e.port, "encode"), ("decode-0", self.sc.port, "decode")]
        if self.p:
            eps.append(("prefill-0", self.p.port, "prefill"))
        self.r = start_router(config, eps)

    def snap(self):
        s = {"encoded": val(self.e.port, "tandem_sim_mm_encoded_items_total"),
             "d_mm": val(self.d.port, "tandem_sim_mm_items_total"),
             "pulls": val(self.d.port, "tandem_sim_kv_pulls_total", result="ok"),
             "sc_ok": val(self.sc.mport, "tandem_sidecar_encoder_items_total", result="ok"),
             "p_mm": val(self.p.port, "tandem_sim_mm_items_total") if self.p else 0}
        return s


def test_e_p_d_multimodal():
    t = Topo(E_P_D, with_prefill=True)
    before = t.snap()
    start = time.monotonic()
    # Three images, one of them twice (deduplicated: two encoder requests), and audio.
    r = post(t.r.port, "/v1/chat/completions",
             mm_body(["http://img.example/a.png", "http://img.example/b.png",
                      "http://img.example/a.png"], audio=True),
             headers={"x-request-id": "epd-1"}, timeout=20)
    elapsed = time.monotonic() - start
    assert r.status == 200, (r.status, r.body)
    assert r.json()["choices"][0]["message"]["content"] is not None
    after = t.snap()
    # Encoder: 3 items (a.png, b.png, the audio), one request each, concurrently.
    assert after["encoded"] - before["encoded"] == 3, (before, after)
    for i in range(3):
        assert t.e.wait_log(r"request epd-1-enc-%d: encoded 1 multimodal item" % i, 5), \
            t.e.output()
    assert after["sc_ok"] - before["sc_ok"] == 3
    # Concurrent: 3 x 150 ms in parallel takes ~150 ms, not 450 (and at least 150).
    assert 0.15 <= elapsed < 0.45 + 0.5, elapsed
    # Then P/D: the prefill sim saw the request (with its 4 multimodal parts), the decode
    # sim pulled the KV from it.
    assert after["p_mm"] - before["p_mm"] == 4
    assert after["pulls"] - before["pulls"] == 1
    assert after["d_mm"] - before["d_mm"] == 4
    assert val(t.sc.mport, "tandem_sidecar_requests_total", pd="disaggregated") >= 1
    # llm-d's decision metric and the per-role request count on the router.
    assert val(t.r.port, "llm_d_inference_scheduler_disagg_decision_total", model_name="m",
               decision_type="encode-prefill-decode") == 1
    assert val(t.r.port, "tandem_router_role_requests_total", role="encode") == 1

    # A text-only request: no encode stage (the decider says no), P/D still runs.
    before = after
    r = post(t.r.port, "/v1/chat/completions", text_body(), timeout=20)
    assert r.status == 200, (r.status, r.body)
    after = t.snap()
    assert after["encoded"] == before["encoded"]
    assert after["sc_ok"] == before["sc_ok"]
    assert after["pulls"] - before["pulls"] == 1
    assert val(t.r.port, "llm_d_inference_scheduler_disagg_decision_total",
               decision_type="prefill-decode") == 1
    # The router's decision trace says why.
    tr = post(t.r.port, "/debug/schedule", text_body()).json()
    assert "no multimodal content" in tr["encode_reason"], tr
    tr = post(t.r.port, "/debug/schedule", mm_body(["http://x/1.png"])).json()
    assert tr["encode"] == ["encode-0"], tr


def test_client_encoder_header_is_dropped():
    # audio_url is not multimodal to llm-d's decider (image_url, video_url, input_audio)
    # but its sidecar sends it to encoders: sent straight to the sidecar with the header,
    # it is encoded; sent through the router with a client-made header, the router drops
    # the header (only the router sets it) and nothing is encoded.
    t = Topo(E_PD, with_prefill=False)
    body = {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": TEXT},
        {"type": "audio_url", "audio_url": {"url": "http://snd.example/a.wav"}}]}]}
    hdr = {"x-encoder-hosts-ports": "127.0.0.1:%d" % t.e.port}
    r = post(t.sc.port, "/v1/chat/completions", body, headers=hdr, timeout=20)
    assert r.status == 200, (r.status, r.body)
    assert val(t.e.port, "tandem_sim_mm_encoded_items_total") == 1
    r = post(t.r.port, "/v1/chat/completions", body, headers=hdr, timeout=20)
    assert r.status == 200, (r.status, r.body)
    assert val(t.e.port, "tandem_sim_mm_encoded_items_total") == 1
    assert val(t.d.port, "tandem_sim_mm_items_total") == 2  # both reached the decoder
    # An encoder not on the sidecar's allowlist is removed (SSRF protection), not called.
    other = sim("encode-x", "--mm-encoder-only")
    r = post(t.sc.port, "/v1/chat/completions", body, timeout=20,
             headers={"x-encoder-hosts-ports": "127.0.0.1:%d" % other.port})
    assert r.status == 200, (r.status, r.body)
    assert val(other.port, "tandem_sim_mm_encoded_items_total") == 0
    assert t.sc.wait_log(r"encoder 127\.0\.0\.1:%d not allowed" % other.port, 5)


def test_e_pd_multimodal():
    t = Topo(E_PD, with_prefill=False)
    before = t.snap()
    r = post(t.r.port, "/v1/chat/completions",
             mm_body(["http://img.example/c.png", "http://img.example/d.png"], stream=True),
             timeout=20)
    assert r.status == 200, (r.status, r.body)
    assert b"data: [DONE]" in r.body
    after = t.snap()
    assert after["encoded"] - before["encoded"] == 2
    assert after["d_mm"] - before["d_mm"] == 2
    assert after["pulls"] == before["pulls"]  # no prefill stage in E/PD
    assert val(t.sc.mport, "tandem_sidecar_requests_total", pd="encoded") == 1
    assert val(t.r.port, "llm_d_inference_scheduler_disagg_decision_total",
               decision_type="encode-decode") == 1
    before = after
    r = post(t.r.port, "/v1/chat/completions", text_body(), timeout=20)
    assert r.status == 200
    after = t.snap()
    assert after["encoded"] == before["encoded"]
    assert val(t.sc.mport, "tandem_sidecar_requests_total", pd="decode_only") == 1


def test_encoder_failure_is_502():
    # An encoder that fails every request: llm-d's sidecar answers 502 and never decodes.
    t = Topo(E_PD, with_prefill=False,
             encoder_args=("--failure-rate", "1", "--failure-types", "503"))
    before = t.snap()
    r = post(t.r.port, "/v1/chat/completions", mm_body(["http://img.example/e.png"]),
             timeout=20)
    assert r.status == 502, (r.status, r.body)
    msg = r.json()["error"]["message"]
    assert "encoder request failed for item 0 with status 503" in msg, msg
    after = t.snap()
    assert after["d_mm"] == before["d_mm"]  # the decode engine never saw it
    assert val(t.sc.mport, "tandem_sidecar_encoder_items_total", result="error") == 1
    assert val(t.sc.mport, "tandem_sidecar_requests_total", pd="encode_error") == 1
    # Text requests are unaffected.
    assert post(t.r.port, "/v1/chat/completions", text_body(), timeout=20).status == 200


def test_client_gone_during_encode():
    # A slow encoder (2 s per item) and a client that gives up after 0.3 s: the sidecar
    # cancels the encoder calls and never starts the decode leg.
    t = Topo(E_PD, with_prefill=False, encoder_args=("--mm-encode-ms", "2000"))
    try:
        post(t.r.port, "/v1/chat/completions", mm_body(["http://img.example/h.png"]),
             timeout=0.3)
        raise AssertionError("the request should have timed out")
    except OSError:
        pass
    assert t.sc.wait_log(r"client went away during the encode stage: cancelled", 5), \
        t.sc.output()
    wait_until(lambda: val(t.sc.mport, "tandem_sidecar_requests_total", pd="cancelled") == 1,
               5, what="the request counted as cancelled")
    assert val(t.e.port, "tandem_sim_mm_encoded_items_total") == 0  # aborted, not encoded
    assert val(t.d.port, "tandem_sim_mm_items_total") == 0
    # The encoder is still fine for the next request.
    r = post(t.r.port, "/v1/chat/completions", text_body(), timeout=20)
    assert r.status == 200


def test_llm_d_e2e_e_pd_sequence():
    # llm-d's own E/PD e2e scenario (test/e2e/e2e_test.go): two encoders, one
    # prefill-decode pod; a text completion, two single-image chats, a two-image chat, a
    # video, an audio and an image_embeds chat -> 2 decode-only and 5 encode-decode
    # decisions, every response from the prefill-decode pod.
    encs = [sim("encode-%d" % i, "--mm-encoder-only") for i in range(2)]
    d = sim("pd-0")
    sc = start_sidecar(d, encs)
    r = start_router(E_PD, [("encode-0", encs[0].port, "encode"),
                            ("encode-1", encs[1].port, "encode"),
                            ("pd-0", sc.port, "prefill-decode")])

    def chat(parts):
        body = {"model": "m", "max_tokens": 2, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}] + parts}]}
        resp = post(r.port, "/v1/chat/completions", body, timeout=20)
        assert resp.status == 200, (resp.status, resp.body)
        assert dict(resp.headers).get("x-inference-pod") == "pd-0", resp.headers

    resp = post(r.port, "/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 2})
    assert resp.status == 200 and dict(resp.headers).get("x-inference-pod") == "pd-0"
    img = lambda u: {"type": "image_url", "image_url": {"url": u}}  # noqa: E731
    chat([img("http://img.example/1.png")])
    chat([img("http://img.example/1.png")])
    chat([img("http://img.example/1.png"), img("http://img.example/2.png")])
    chat([{"type": "video_url", "video_url": {"url": "http://vid.example/1.mp4"}}])
    chat([{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}])
    chat([{"type": "image_embeds", "image_embeds": "AAAA"}])
    dd = lambda t: val(r.port, "llm_d_inference_scheduler_disagg_decision_total",  # noqa: E731
                       model_name="m", decision_type=t)
    assert dd("decode-only") == 2 and dd("encode-decode") == 5, (dd("decode-only"),
                                                                 dd("encode-decode"))
    # 6 items reached the encoders (1 + 1 + 2 + video + audio).
    got = [val(e.port, "tandem_sim_mm_encoded_items_total") for e in encs]
    assert sum(got) == 6, got


def test_router_mode_e_p_d():
    # --pd-mode router (no sidecar): the router runs the encode stage itself, then both
    # P/D legs, with the same code.
    e = sim("encode-0", "--mm-encoder-only")
    p = sim("prefill-0")
    d = sim("decode-0")
    r = start_router(E_P_D, [("encode-0", e.port, "encode"), ("prefill-0", p.port, "prefill"),
                             ("decode-0", d.port, "decode")], "--pd-mode", "router")
    resp = post(r.port, "/v1/chat/completions",
                mm_body(["http://img.example/f.png", "http://img.example/g.png"]),
                headers={"x-request-id": "rm-1"}, timeout=20)
    assert resp.status == 200, (resp.status, resp.body)
    assert val(e.port, "tandem_sim_mm_encoded_items_total") == 2
    assert e.wait_log(r"request rm-1-enc-1: encoded 1 multimodal item", 5), e.output()
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1
    assert val(p.port, "tandem_sim_mm_items_total") == 2
    resp = post(r.port, "/v1/chat/completions", text_body(), timeout=20)
    assert resp.status == 200
    assert val(e.port, "tandem_sim_mm_encoded_items_total") == 2
    assert val(d.port, "tandem_sim_kv_pulls_total", result="ok") == 2


if __name__ == "__main__":
    run([test_e_p_d_multimodal, test_client_encoder_header_is_dropped, test_e_pd_multimodal, test_encoder_failure_is_502,
         test_client_gone_during_encode, test_llm_d_e2e_e_pd_sequence, test_router_mode_e_p_d])

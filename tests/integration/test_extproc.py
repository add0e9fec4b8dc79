"""tandem router as a GAIE gateway's endpoint picker over Envoy ext_proc, checked by an
independent client that shares no code with the server (tests/extproc/client: Go, Envoy's
published API types from go-control-plane) playing Envoy against real sims: the decision
headers and metadata, seed 001's similar prompt landing on the same pod, load spreading,
the P/D header, the gateway's subset hint, reply ordering, 1 MB and 20 MB bodies in both
body modes, SSE response streaming, cancels, errors as ImmediateResponse, gRPC health,
TLS and plaintext."""

import base64
import json
import os
import subprocess

from harness import (Proc, free_port, get, metric, post, run, run_setup, sims,
                     wait_until)

SRC = os.environ.get("TANDEM_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
CLIENT = None

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


def build_client():
    global CLIENT
    r = run_setup([os.path.join(SRC, "tests", "extproc", "build-client.sh")],
                  "ext_proc tests", 12)
    CLIENT = r.stdout.strip().splitlines()[-1]


def xp(port, *args, tls=False, check=True):
    cmd = [CLIENT, "-addr", "127.0.0.1:%d" % port, "-timeout", "60s"] + (["-tls"] if tls else [])
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("client %s: rc %d\n%s\n%s" % (args, r.returncode, r.stdout,
                                                          r.stderr))
    out = json.loads(r.stdout) if r.stdout.strip() else {}
    assert not out.get("violations"), out.get("violations")
    return out


def start_router(backends, *extra, roles=None, tls=False):
    port, gport, hport = free_port(), free_port(), free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "2", "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
            "--grpc-port", str(gport), "--grpc-health-port", str(hport),
            "--secure-serving=%s" % ("true" if tls else "false")]
    for i, b in enumerate(backends):
        spec = "name=%s,addr=127.0.0.1:%d" % (b.name, b.port)
        if roles:
            spec += ",role=%s" % roles[i]
        args += ["--endpoint", spec]
    r = Proc(args + list(extra), r"tandem router ready on", 20)
    r.port, r.gport, r.hport = port, gport, hport
    wait_until(lambda: all(e["healthy"] for e in
                           get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="every endpoint healthy")
    return r


def dest(out):
    return out["set_headers"].get("x-gateway-destination-endpoint", "")


def addr(s):
    return "127.0.0.1:%d" % s.port


def inflight_zero(r):
    return all(e["inflight_requests"] == 0 for e in
               get(r.port, "/debug/endpoints").json()["endpoints"])


# --- tests -------------------------------------------------------------------------------

def test_decision_headers_and_metadata():
    a, b = sims(2)
    r = start_router([a, b])
    out = xp(r.gport, "-prompt", "hello there", "-model", "m")
    assert out["order"][:2] == ["request_headers", "request_body"], out["order"]
    d = dest(out)
    primary = d.split(",")[0]
    assert primary in (addr(a), addr(b)), d
    assert out["clear_route_cache"] is True
    assert out["dynamic_metadata"]["envoy.lb"]["x-gateway-destination-endpoint"] == d
    assert int(out["set_headers"]["content-length"]) == out["sent_body_bytes"]
    assert out["body_equal"] and out["body_eos"] and out["grpc_code"] == "OK"
    wait_until(lambda: inflight_zero(r), 5, what="in-flight released")
    # the same decision log and metrics as the HTTP path
    assert metric(r.port, "inference_objective_request_total", model_name="m",
                  target_model_name="m") == 1


def test_similar_prompt_same_pod_and_load_spreads():
    a, b = sims(2)
    r = start_router([a, b])
    first = dest(xp(r.gport, "-prompt", PROMPT_1, "-model", "m")).split(",")[0]
    second = dest(xp(r.gport, "-prompt", PROMPT_2, "-model", "m")).split(",")[0]
    assert first == second, (first, second)
    seen = set()
    for i in range(16):
        seen.add(dest(xp(r.gport, "-prompt", "unrelated %d %s" % (i, "x" * i),
                         "-model", "m")).split(",")[0])
    assert seen == {addr(a), addr(b)}, seen


def test_pd_header_when_disaggregating():
    p, d = sims(2, roles=["prefill", "decode"])
    r = start_router([p, d], roles=["prefill", "decode"])
    out = xp(r.gport, "-prompt", "long prompt " * 80, "-model", "m")
    assert dest(out).split(",")[0] == addr(d), dest(out)
    assert out["set_headers"].get("x-prefiller-host-port") == addr(p), out["set_headers"]
    out = xp(r.gport, "-prompt", "hi", "-model", "m")
    assert "x-prefiller-host-port" not in out["set_headers"]


def test_subset_hint_and_empty_subset():
    a, b = sims(2)
    r = start_router([a, b])
    for i in range(6):
        out = xp(r.gport, "-prompt", "subset %d" % i, "-model", "m", "-subset", addr(b))
        assert dest(out).split(",") == [addr(b)], dest(out)
    out = xp(r.gport, "-prompt", "none", "-model", "m", "-subset-empty")
    assert out["immediate"]["status"] == 503, out
    err = json.loads(out["immediate"]["body"])["error"]
    assert "subset" in err["message"] and err["code"] == 503, err
    assert out["grpc_code"] == "OK"


def test_large_bodies_both_modes():
    a, b = sims(2, "--max-model-len", "20000000")
    r = start_router([a, b], "--max-body-bytes", str(64 << 20))
    for size in (1 << 20, 20 << 20):
        out = xp(r.gport, "-body-size", str(size), "-chunk", "65536")
        assert out["body_equal"] and out["body_eos"], (size, out["body_chunks"][:3])
        assert max(out["body_chunks"]) <= 62000 and sum(out["body_chunks"]) == \
            out["sent_body_bytes"]
        assert int(out["set_headers"]["content-length"]) == out["sent_body_bytes"]
        outb = xp(r.gport, "-mode", "buffered", "-body-size", str(size))
        assert outb["body_equal"], size
        assert outb["body_mutation_headers"].get("x-gateway-destination-endpoint"), outb
    wait_until(lambda: inflight_zero(r), 5, what="in-flight released")


def test_response_phase_sse_and_trailers():
    a = sims(1)[0]
    r = start_router([a])
    out = xp(r.gport, "-prompt", "stream me", "-model", "m", "-resp-status", "200", "-resp-sse",
             "-resp-chunks", "5", "-resp-lockstep", "-trailers")
    assert "request_trailers" in out["order"], out["order"]
    assert len(out["response_bodies"]) == 5 and out["response_equal"], out["response_bodies"]
    assert out["grpc_code"] == "OK"


def test_cancel_mid_stream_releases():
    a = sims(1)[0]
    r = start_router([a])
    out = xp(r.gport, "-body-size", str(1 << 20), "-chunk", "16384", "-cancel-after", "3")
    assert out["grpc_code"] == "Canceled", out
    for _ in range(10):
        xp(r.gport, "-body-size", str(1 << 20), "-chunk", "16384", "-cancel-after", "60")
    wait_until(lambda: inflight_zero(r), 5, what="nothing left in flight")
    assert xp(r.gport, "-prompt", "after cancels", "-model", "m")["grpc_code"] == "OK"
    assert r.p.poll() is None


def test_errors_as_immediate_response():
    a = sims(1)[0]
    r = start_router([a])
    out = xp(r.gport, "-body", "{not json")
    assert out["immediate"]["status"] == 400, out
    assert json.loads(out["immediate"]["body"])["error"]["code"] == 400
    assert out["grpc_code"] == "OK"
    a.stop()
    wait_until(lambda: not any(e["healthy"] for e in
                               get(r.port, "/debug/endpoints").json()["endpoints"]),
               5, what="the pod unhealthy")
    out = xp(r.gport, "-prompt", "nobody home", "-model", "m")
    assert out["immediate"]["status"] == 503, out


def test_health_tls_and_plaintext():
    a = sims(1)[0]
    r = start_router([a], tls=True)
    for svc in ("", "liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
        h = xp(r.gport, "-health", svc, tls=True)  # on the ext_proc port, over its TLS
        assert h["health"] == "SERVING", (svc, h)
        h = xp(r.hport, "-health", svc)  # the health port is plaintext, as GAIE's
        assert h["health"] == "SERVING", (svc, h)
    assert xp(r.hport, "-health", "no.such.Service")["health"] == "SERVICE_UNKNOWN"
    assert xp(r.gport, "-prompt", "tls", "-model", "m", tls=True)["grpc_code"] == "OK"
    plain = xp(r.gport, "-prompt", "tls", "-model", "m", check=False)
    assert plain.get("grpc_code") != "OK"  # a TLS port refuses plaintext
    r2 = start_router([a])
    assert xp(r2.hport, "-health", "")["health"] == "SERVING"
    assert xp(r2.gport, "-prompt", "plain", "-model", "m")["grpc_code"] == "OK"


EPP = os.path.join(SRC, "tests", "data", "epp-configs", "llm-d-inference-scheduler")


def test_request_attribute_reporter_metadata():
    """llm-d's request-attribute-reporter test config unchanged: the response's
    usage.completion_tokens goes back as envoy.lb dynamic metadata on the last reply."""
    a = sims(1)[0]
    r = start_router([a], "--config-file",
                     os.path.join(EPP, "test-integration-epp-testdata-request-attribute-reporter-config.yaml"))
    key = "x-gateway-inference-request-cost"
    out = xp(r.gport, "-prompt", "cost me", "-model", "m", "-resp-status", "200")
    assert out["dynamic_metadata"]["envoy.lb"].get(key) == 2, out["dynamic_metadata"]
    out = xp(r.gport, "-prompt", "cost me", "-model", "m", "-resp-status", "200", "-resp-sse",
             "-resp-chunks", "5")
    assert out["dynamic_metadata"]["envoy.lb"].get(key) == 4, out["dynamic_metadata"]
    assert out["response_equal"] and out["grpc_code"] == "OK"
    # an error response reports nothing
    out = xp(r.gport, "-prompt", "cost me", "-model", "m", "-resp-status", "500")
    assert key not in out["dynamic_metadata"].get("envoy.lb", {}), out["dynamic_metadata"]


def test_data_parallel_destination_and_header():
    ranks = sims(2)
    text = open(os.path.join(EPP, "deploy-config-dp-epp-config.yaml")).read()
    r = start_router(ranks, "--config-text", text.replace("primaryPort: 8000", "primaryPort: 8123"))
    out = xp(r.gport, "-prompt", "dp", "-model", "m")
    rank = out["set_headers"]["x-data-parallel-host-port"]
    assert rank in (addr(ranks[0]), addr(ranks[1])), out["set_headers"]
    assert dest(out).split(",")[0] == "127.0.0.1:8123", dest(out)


CONFORMANCE = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: header-based-testing-filter
- type: destination-endpoint-served-verifier
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: header-based-testing-filter
  - pluginRef: max-score-picker
"""
SEL = "test-epp-endpoint-selection"
SERVED = "x-conformance-test-served-endpoint"


def test_conformance_plugins():
    """GAIE's conformance-test plugins: header-based-testing-filter steers each request to
    the pod named in test-epp-endpoint-selection (ext_proc and HTTP proxy), and
    destination-endpoint-served-verifier copies Envoy's envoy.lb
    x-gateway-destination-endpoint-served metadata (sent on response_headers) into the
    response header x-conformance-test-served-endpoint, or says what was missing."""
    a, b = sims(2)
    r = start_router([a, b], "--config-text", CONFORMANCE)
    for s in (a, b, a, b):
        out = xp(r.gport, "-prompt", "steer", "-model", "m", "-H", "%s:%s" % (SEL, addr(s)),
                 "-resp-status", "200", "-resp-lb", "served=" + addr(s))
        assert dest(out).split(",") == [addr(s)], dest(out)
        assert out["response_set_headers"].get(SERVED) == addr(s), out["response_set_headers"]
        assert out["response_equal"] and out["grpc_code"] == "OK"
    # the envoy.lb namespace without the key, then no metadata at all
    out = xp(r.gport, "-prompt", "steer", "-model", "m", "-H", "%s:%s" % (SEL, addr(b)),
             "-resp-status", "200", "-resp-lb", "empty")
    assert out["response_set_headers"].get(SERVED) == \
        "fail: missing destination endpoint served metadata", out["response_set_headers"]
    out = xp(r.gport, "-prompt", "steer", "-model", "m", "-H", "%s:%s" % (SEL, addr(b)),
             "-resp-status", "200")
    assert out["response_set_headers"].get(SERVED) == "fail: missing envoy lb metadata", \
        out["response_set_headers"]
    # no selection header: the filter keeps nothing -> 503 ImmediateResponse
    out = xp(r.gport, "-prompt", "steer", "-model", "m")
    assert out["immediate"]["status"] == 503, out
    # a port that no pod listens on: nothing either
    out = xp(r.gport, "-prompt", "steer", "-model", "m", "-H", "%s:127.0.0.1:1" % SEL)
    assert out["immediate"]["status"] == 503, out
    wait_until(lambda: inflight_zero(r), 5, what="in-flight released")
    # the HTTP proxy: the same filter; no Envoy, so the verifier reports the missing metadata
    for s in (a, b):
        resp = post(r.port, "/v1/completions", {"model": "m", "prompt": "steer", "max_tokens": 2},
                    headers={SEL: " 10.9.9.9:80 , %s" % addr(s)})
        assert resp.status == 200, resp.body
        assert resp.header(SERVED) == "fail: missing envoy lb metadata", resp.headers
        name = base64.b64decode(resp.header("x-session-token")).decode()
        assert name == s.name, (name, s.name)
    resp = post(r.port, "/v1/completions", {"model": "m", "prompt": "steer", "max_tokens": 2})
    assert resp.status == 503, resp.body


if __name__ == "__main__":
    build_client()
    run([test_decision_headers_and_metadata, test_similar_prompt_same_pod_and_load_spreads,
         test_pd_header_when_disaggregating, test_subset_hint_and_empty_subset,
         test_large_bodies_both_modes, test_response_phase_sse_and_trailers,
         test_cancel_mid_stream_releases, test_errors_as_immediate_response,
         test_health_tls_and_plaintext, test_request_attribute_reporter_metadata,
         test_data_parallel_destination_and_header, test_conformance_plugins])

#!/usr/bin/env python3
"""The EndpointPickerConfigs embedded in llm-d's docs and plugin READMEs
(tests/data/epp-configs/llm-d-inference-scheduler/*-md-block*.yaml) through a real router:
each one that loads starts a router that serves a request through real sims, each one that
does not is refused at start naming the file, line and field; context-length-aware sends
short and long prompts to the pods labelled for them."""
import glob
import os
import subprocess

from harness import TANDEM, Proc, free_port, get, post, run, sims, wait_until

SRC = os.environ.get("TANDEM_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(SRC, "tests", "data", "epp-configs", "llm-d-inference-scheduler")

# Refused at load, and why (tests/unit/test_sched_epp_configs.c has the same table).
REFUSED = {
    "pkg-epp-framework-plugins-datalayer-source-notifications-README-md-block0.yaml":
        "my-pod-extractor",
    "pkg-epp-framework-plugins-datalayer-source-notifications-README-md-block1.yaml":
        "my-endpoint-extractor",
    "pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block0.yaml":
        "profile 'decode' is not in schedulingProfiles",
    "pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block1.yaml":
        "profile 'decode' is not in schedulingProfiles",
    "pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block2.yaml":
        "profile 'decode' is not in schedulingProfiles",
    "pkg-epp-framework-plugins-scheduling-profilehandler-disagg-README-md-block5.yaml":
        "profile 'decode' is not in schedulingProfiles",
    "pkg-epp-framework-plugins-scheduling-scorer-nohitlru-README-md-block0.yaml":
        "plugins[0].weight: unknown field",
    "config-charts-inferencepool-README-md-block6.yaml": "custom-scorer",
}


def router(endpoints, *extra):
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "1", "--refresh-metrics-interval", "20", "--enable-debug-endpoints"]
    for e in endpoints:
        args += ["--endpoint", e]
    p = Proc(args + list(extra), r"tandem router ready on", 20)
    p.port = port
    return p


def healthy(port):
    return [e["healthy"] for e in get(port, "/debug/endpoints").json()["endpoints"]]


def docs_configs():
    names = [os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*-md-block*.yaml"))]
    assert len(names) >= 40, names
    return sorted(names)


def test_docs_configs_load_or_are_refused_clearly():
    a, b = sims(2)
    # the labels the READMEs' filters select on: role (docs/disaggregation.md), and the
    # by-label / label-selector examples' gpu.type, inference-role, hardware-type
    common = ",label.gpu.type=a100,label.inference-role=decode,label.hardware-type=H100"
    eps = ["name=%s,addr=127.0.0.1:%d,label.role=%s%s" % (s.name, s.port, role, common)
           for s, role in ((a, "decode"), (b, "prefill"))]
    served = 0
    for name in docs_configs():
        path = os.path.join(CONFIGS, name)
        if name in REFUSED:
            out = subprocess.run([TANDEM, "router", "--port", "0", "--endpoint", eps[0],
                                  "--config-file", path],
                                 capture_output=True, timeout=20)
            err = out.stderr.decode()
            assert out.returncode != 0, (name, err)
            assert name + ":" in err and REFUSED[name] in err, (name, err)
            continue
        text = open(path).read()
        if "precise-prefix-cache-scorer" in text:
            continue  # binds its KV-event port (tcp://*:5557): test_precise_prefix.py's job
        r = router(eps, "--config-file", path)
        wait_until(lambda: all(healthy(r.port)), 10, what="endpoints scraped for " + name)
        if "data-parallel-profile-handler" not in text:  # that one sends to port 8000
            resp = post(r.port, "/v1/completions",
                        {"model": "m", "prompt": "hello there", "max_tokens": 2})
            assert resp.status == 200, (name, resp.status, resp.body)
            served += 1
        r.stop()
    assert served >= 20, served


def test_context_length_aware_routes_by_label():
    short, long_ = sims(2)
    label = "label.llm-d.ai/context-length-range="
    eps = ["name=short,addr=127.0.0.1:%d,%s0-256" % (short.port, label),
           "name=long,addr=127.0.0.1:%d,%s257-100000" % (long_.port, label)]
    cfg = os.path.join(CONFIGS, "pkg-epp-framework-plugins-scheduling-scorer-"
                       "contextlengthaware-README-md-block3.yaml")
    assert "enableFiltering: true" in open(cfg).read()
    r = router(eps, "--config-file", cfg)
    wait_until(lambda: all(healthy(r.port)), 10, what="endpoints scraped")
    for words, want in ((10, "short"), (500, "long"), (20, "short"), (800, "long")):
        prompt = " ".join("word%d" % i for i in range(words))
        d = post(r.port, "/debug/schedule", {"model": "m", "prompt": prompt}).json()
        assert d["picked"] == [want], (words, d)
        resp = post(r.port, "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": 1})
        assert resp.status == 200, (resp.status, resp.body)


if __name__ == "__main__":
    run([test_docs_configs_load_or_are_refused_clearly, test_context_length_aware_routes_by_label])

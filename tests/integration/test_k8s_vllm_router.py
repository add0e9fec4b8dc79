"""vllm-router's Kubernetes service discovery in tandem router (--service-discovery with
--selector, or --prefill-selector/--decode-selector in P/D mode) against a real
kube-apiserver (tests/k8s/env.sh, as test_k8s.py): Ready pods with matching labels become
workers http://POD_IP:--service-discovery-port (URL@rank with DP ranks), pods that are not
Ready, do not match or are deleted are not. Pods get podIP 127.0.0.N where a sim listens, so
requests really reach them."""

import os
import re
import tempfile

import harness
import test_k8s as k
from harness import Proc, free_port, post, run, run_setup, wait_until

TESTS = 2


def env_start():
    """test_k8s's control plane (skipped, like its tests, where Go is missing)."""
    d = tempfile.mkdtemp(prefix="tandem-k8s-")
    run_setup([k.ENVSH, "start", d], "Kubernetes vllm-router tests", TESTS)
    with open(os.path.join(d, "env")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("export "):
                key, _, v = line[7:].partition("=")
                k.ENV[key] = v.strip("'\"")
    k.ENV["DIR"] = d


def workers(r):
    """{worker: healthy} of the datastore (tandem's /debug/endpoints on the metrics port)."""
    return {e["name"]: e["healthy"] for e in
            harness.get(r.mport, "/debug/endpoints").json()["endpoints"]}


def healthy(r):
    return {w for w, v in workers(r).items() if v}


def start(ns, *extra):
    port, mport = free_port(), free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--prometheus-port",
              str(mport), "--workers", "1", "--refresh-metrics-interval", "20",
              "--service-discovery", "--service-discovery-namespace", ns,
              "--kubeconfig", k.ENV["KUBECONFIG"]] + list(extra),
             r"tandem router ready on", 20)
    r.port, r.mport = port, mport
    return r


def complete(port, prompt):
    return post(port, "/v1/completions",
                {"model": "m", "prompt": prompt, "max_tokens": 4, "ignore_eos": True},
                timeout=20)


def test_pd_selectors_with_dp_ranks():
    ns = k.namespace()
    ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
    port = k.common_port(ips)
    p0 = k.sim_at(ips[0], port, "p0", "--data-parallel-size", "2")
    d0 = k.sim_at(ips[1], port, "d0", "--data-parallel-size", "2")
    d1 = k.sim_at(ips[2], port, "d1", "--data-parallel-size", "2")
    k.pod(ns, "p0", {"app": "vr", "role": "prefill"}, ips[0])
    k.pod(ns, "d0", {"app": "vr", "role": "decode"}, ips[1])
    k.pod(ns, "d1", {"app": "vr", "role": "decode"}, ips[2], ready=False)
    k.pod(ns, "other", {"app": "not-vr", "role": "decode"}, ips[2])
    r = start(ns, "--pd-disaggregation", "--prefill-selector", "app=vr", "role=prefill",
              "--decode-selector", "app=vr", "role=decode", "--service-discovery-port",
              str(port), "--intra-node-data-parallel-size", "2", "--policy", "round_robin")
    url = lambda ip: "http://%s:%d" % (ip, port)
    want = {"%s@%d" % (url(ip), rank) for ip in ips[:2] for rank in (0, 1)}
    wait_until(lambda: healthy(r) == want, 15, what="p0 and d0 as 4 workers")
    assert set(workers(r)) == want  # d1 not Ready, "other" does not match
    for i in range(4):
        resp = complete(r.port, "discovered %d" % i)
        assert resp.status == 200, (resp.status, resp.body)
    assert metric_at(p0, "vllm:request_success_total") == 4
    assert metric_at(d0, "tandem_sim_kv_pulls_total", result="ok") == 4
    for rank in ("0", "1"):  # round robin over both ranks of each pod
        assert metric_at(d0, "vllm:request_success_total", engine=rank) == 2
    # d1 becomes Ready: two more decode workers; d0 deleted: its workers go.
    k.set_ready(ns, "d1", ips[2])
    want |= {"%s@%d" % (url(ips[2]), rank) for rank in (0, 1)}
    wait_until(lambda: healthy(r) == want, 15, what="d1 added")
    k.kubectl("-n", ns, "delete", "pod", "d0", "--grace-period=0", "--force")
    want -= {"%s@%d" % (url(ips[1]), rank) for rank in (0, 1)}
    wait_until(lambda: set(workers(r)) == want, 15, what="d0 removed")
    for i in range(2):
        assert complete(r.port, "after churn %d" % i).status == 200
    assert metric_at(d1, "tandem_sim_kv_pulls_total", result="ok") == 2
    assert r.wait_log(r"worker %s@1 removed" % re.escape(url(ips[1])), 5)


def metric_at(s, name, **labels):
    """A sim's metric, read at its pod address."""
    import http.client
    c = http.client.HTTPConnection(s.ip, s.port, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    total = None
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        series, _, v = line.rpartition(" ")
        if series.split("{", 1)[0] != name:
            continue
        if all('%s="%s"' % (a, b) in series for a, b in labels.items()):
            total = (total or 0) + float(v)
    return total


def test_regular_selector():
    ns = k.namespace()
    ips = ["127.0.0.24", "127.0.0.25"]
    port = k.common_port(ips)
    a = k.sim_at(ips[0], port, "a")
    k.sim_at(ips[1], port, "b")
    k.pod(ns, "a", {"app": "reg"}, ips[0])
    k.pod(ns, "b", {"app": "other"}, ips[1])
    r = start(ns, "--selector", "app=reg", "--service-discovery-port", str(port), "--policy",
              "random")
    wait_until(lambda: healthy(r) == {"http://%s:%d" % (ips[0], port)}, 15,
               what="pod a as a worker")
    assert complete(r.port, "regular").status == 200
    assert metric_at(a, "vllm:request_success_total") == 1


if __name__ == "__main__":
    env_start()
    try:
        run([test_pd_selectors_with_dp_ranks, test_regular_selector])
    finally:
        k.env_stop()

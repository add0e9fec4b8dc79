"""The router (and sidecar) against a real kube-apiserver (tests/k8s/env.sh): endpoints
from an InferencePool's Ready pods, churn, selector changes, both pool API versions, a
deleted pool, the API server going away and coming back (with a 410 relist), restricted
RBAC, and the sidecar's SSRF allowlist following the pool.

There is no kubelet: pods are created with kubectl and made Ready by patching their
status with podIP 127.0.0.N, where a `tandem sim --host 127.0.0.N` listens, so requests
really go to the pod's address."""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import TANDEM as TANDEM_BIN_PATH
from harness import Proc, free_port, get, metric, post, run, run_setup, start_sim, wait_until

SRC = os.environ.get("TANDEM_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
ENVSH = os.path.join(SRC, "tests", "k8s", "env.sh")
ENV = {}
_ns_count = [0]


# --- the control plane ---------------------------------------------------------------------

def env_start():
    d = tempfile.mkdtemp(prefix="tandem-k8s-")
    run_setup([ENVSH, "start", d], "Kubernetes tests", 9)
    with open(os.path.join(d, "env")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[7:].partition("=")
                ENV[k] = v.strip("'\"")
    ENV["DIR"] = d


def env_stop():
    if ENV.get("DIR"):
        subprocess.run([ENVSH, "stop", ENV["DIR"]], capture_output=True, timeout=60)
        shutil.rmtree(ENV["DIR"], ignore_errors=True)


def kubectl(*args, stdin=None, check=True, kubeconfig=None):
    env = dict(os.environ, KUBECONFIG=kubeconfig or ENV["KUBECONFIG"])
    r = subprocess.run([ENV["KUBECTL"]] + list(args), input=stdin, capture_output=True,
                       text=True, env=env, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("kubectl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r


def apply(obj):
    kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def namespace():
    _ns_count[0] += 1
    ns = "t%d-%d" % (os.getpid() % 100000, _ns_count[0])
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    # Pods need the namespace's default ServiceAccount, which a controller creates.
    wait_until(lambda: kubectl("-n", ns, "get", "serviceaccount", "default",
                               check=False).returncode == 0, 30, interval=0.1,
               what="ServiceAccount %s/default" % ns)
    return ns


def pool_v1(ns, name, labels, ports):
    apply({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"selector": {"matchLabels": labels},
                    "targetPorts": [{"number": p} for p in ports],
                    "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}})


def pod(ns, name, labels, ip=None, ready=True, finalizer=False):
    md = {"name": name, "namespace": ns, "labels": labels}
    if finalizer:
        md["finalizers"] = ["tandem.test/hold"]
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": md,
           "spec": {"containers": [{"name": "engine", "image": "x"}]}})
    if ip:
        set_ready(ns, name, ip, ready)


def set_ready(ns, name, ip, ready=True):
    st = {"status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running",
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
            json.dumps(st))


def common_port(ips):
    """A port free on every one of these loopback addresses."""
    for _ in range(200):
        p = free_port()
        ok = True
        for ip in ips:
            with socket.socket() as s:
                try:
                    s.bind((ip, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
    raise AssertionError("no common free port")


def sim_at(ip, port, name, *extra):
    s = start_sim("--model", "m", "--profile", "fast", "--pod-name", name, "--host", ip,
                  *extra, port=port)
    s.ip, s.name = ip, name
    return s


def start_router(ns, pool, *extra, kubeconfig=None):
    port, mport = free_port(), free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(mport),
            "--workers", "2", "--refresh-metrics-interval", "20", "--pool-name", pool,
            "--pool-namespace", ns, "--kubeconfig", kubeconfig or ENV["KUBECONFIG"]]
    r = Proc(args + list(extra), r"tandem router ready on", 20)
    r.port, r.mport = port, mport
    return r


def endpoints(r):
    return {e["name"]: e for e in get(r.mport, "/debug/endpoints").json()["endpoints"]}


def wait_endpoints(r, names, timeout=10, healthy=True):
    names = set(names)

    def ok():
        eps = endpoints(r)
        return set(eps) == names and (not healthy or all(e["healthy"] for e in eps.values()))
    wait_until(ok, timeout, what="endpoints %s (have %s)" % (sorted(names), sorted(endpoints(r))))


def complete(port, prompt="hello", **kw):
    body = {"model": "m", "prompt": prompt, "max_tokens": 2}
    body.update(kw)
    return post(port, "/v1/completions", body, timeout=20)


def served_by(r, n=12):
    pods = set()
    for i in range(n):
        # long enough for whole prefix-cache blocks (64 characters each)
        resp = complete(r.port, ("request %d %s " % (i, time.monotonic())) * 12)
        assert resp.status == 200, (resp.status, resp.body)
        pods.add(resp.header("x-inference-pod"))
    return pods


def count_lines(proc, needle):
    return sum(1 for line in proc.output().splitlines() if needle in line)


# --- tests -------------------------------------------------------------------------------------

def test_ready_pods_get_traffic():
    ns = namespace()
    ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = common_port(ips)
    a, b = sim_at(ips[0], port, "pod-a"), sim_at(ips[1], port, "pod-b")
    labels = {"app": "m1", "llm-d.ai/inferenceServing": "true"}
    pool_v1(ns, "pool", {"app": "m1"}, [port])
    pod(ns, "pod-a", dict(labels, **{"llm-d.ai/role": "decode"}), ips[0])
    pod(ns, "pod-b", dict(labels, **{"llm-d.ai/role": "decode"}), ips[1])
    pod(ns, "pod-c", labels, ips[2], ready=False)       # NotReady: never an endpoint
    pod(ns, "pod-d", labels)                              # no IP yet
    pod(ns, "other", {"app": "elsewhere"}, ips[2])        # outside the selector
    r = start_router(ns, "pool")
    wait_endpoints(r, ["pod-a", "pod-b"])
    eps = endpoints(r)
    assert eps["pod-a"]["address"] == "%s:%d" % (ips[0], port), eps
    assert eps["pod-a"]["role"] == "decode" and eps["pod-a"]["source"] == "pool:%s/pool" % ns
    assert served_by(r) == {"pod-a", "pod-b"}
    assert metric(r.port, "tandem_router_endpoints", role="decode") == 2
    assert r.wait_log(r"endpoint pod-a added \(127\.0\.0\.2:%d, role decode\)" % port, 2)
    assert a.p.poll() is None and b.p.poll() is None


def test_churn_notready_terminating_deleted_added():
    ns = namespace()
    ips = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
    port = common_port(ips)
    for i, ip in enumerate(ips):
        sim_at(ip, port, "pod-%d" % i)
    lab = {"app": "churn"}
    pool_v1(ns, "pool", lab, [port])
    pod(ns, "pod-0", lab, ips[0])
    r = start_router(ns, "pool")
    wait_endpoints(r, ["pod-0"])
    # Traffic fills the prefix index for pod-0; it is purged when pod-0 leaves.
    assert served_by(r, 4) == {"pod-0"}
    assert metric(r.port, "tandem_router_prefix_index_size") > 0
    # A new Ready pod joins.
    pod(ns, "pod-1", lab, ips[1], finalizer=True)
    wait_endpoints(r, ["pod-0", "pod-1"])
    # NotReady leaves, and its prefix-index entries go with it.
    set_ready(ns, "pod-0", ips[0], ready=False)
    wait_endpoints(r, ["pod-1"])
    assert r.wait_log(r"endpoint pod-0 removed \(pod not ready\)", 2)
    wait_until(lambda: metric(r.port, "tandem_router_prefix_index_size") == 0, 5,
               what="prefix index purged")
    assert served_by(r, 4) == {"pod-1"}
    # Ready again: back.
    set_ready(ns, "pod-0", ips[0], ready=True)
    wait_endpoints(r, ["pod-0", "pod-1"])
    # Terminating (deletionTimestamp set, held by a finalizer): leaves at once.
    kubectl("-n", ns, "delete", "pod", "pod-1", "--wait=false")
    wait_endpoints(r, ["pod-0"])
    assert r.wait_log(r"endpoint pod-1 removed \(pod terminating\)", 2)
    kubectl("-n", ns, "patch", "pod", "pod-1", "--type=merge", "-p",
            '{"metadata":{"finalizers":null}}')
    # Deleted: leaves.
    pod(ns, "pod-2", lab, ips[2])
    wait_endpoints(r, ["pod-0", "pod-2"])
    kubectl("-n", ns, "delete", "pod", "pod-2", "--wait=false", "--grace-period=0", "--force")
    wait_endpoints(r, ["pod-0"])
    assert served_by(r, 4) == {"pod-0"}
    assert metric(r.port, "tandem_router_endpoints", role="decode") == 0  # no role label
    assert metric(r.port, "tandem_router_endpoints", role="both") == 0


def test_selector_change_reselects():
    ns = namespace()
    ips = ["127.0.0.8", "127.0.0.9"]
    port = common_port(ips)
    sim_at(ips[0], port, "one-0")
    sim_at(ips[1], port, "two-0")
    pool_v1(ns, "pool", {"app": "one"}, [port])
    pod(ns, "one-0", {"app": "one"}, ips[0])
    pod(ns, "two-0", {"app": "two"}, ips[1])
    r = start_router(ns, "pool")
    wait_endpoints(r, ["one-0"])
    pool_v1(ns, "pool", {"app": "two"}, [port])
    wait_endpoints(r, ["two-0"])
    assert served_by(r, 4) == {"two-0"}
    assert r.wait_log(r"InferencePool %s/pool: selector app=two" % ns, 2)


def test_v1alpha2_pool():
    ns = namespace()
    ip = "127.0.0.10"
    port = common_port([ip])
    sim_at(ip, port, "alpha-0")
    apply({"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
           "metadata": {"name": "legacy", "namespace": ns},
           "spec": {"selector": {"app": "alpha"}, "targetPortNumber": port,
                    "extensionRef": {"name": "epp"}}})
    pod(ns, "alpha-0", {"app": "alpha", "llm-d.ai/role": "both"}, ip)
    # GAIE's older camelCase flag spellings.
    port_r, mport = free_port(), free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port_r), "--metrics-port",
              str(mport), "-poolName", "legacy", "-poolNamespace", ns, "--pool-group",
              "inference.networking.x-k8s.io", "--kubeconfig", ENV["KUBECONFIG"]],
             r"tandem router ready on", 20)
    r.port, r.mport = port_r, mport
    wait_endpoints(r, ["alpha-0"])
    assert endpoints(r)["alpha-0"]["role"] == "both"
    assert served_by(r, 3) == {"alpha-0"}


def test_deleted_pool_gives_503_then_recovers():
    ns = namespace()
    ip = "127.0.0.11"
    port = common_port([ip])
    sim_at(ip, port, "p-0")
    pool_v1(ns, "pool", {"app": "gone"}, [port])
    pod(ns, "p-0", {"app": "gone"}, ip)
    r = start_router(ns, "pool")
    wait_endpoints(r, ["p-0"])
    kubectl("-n", ns, "delete", "inferencepool.inference.networking.k8s.io", "pool")
    wait_endpoints(r, [], healthy=False)
    resp = complete(r.port)
    assert resp.status == 503, (resp.status, resp.body)
    err = resp.json()["error"]
    assert "InferencePool %s/pool was deleted" % ns in err["message"], err
    pool_v1(ns, "pool", {"app": "gone"}, [port])
    wait_endpoints(r, ["p-0"])
    assert served_by(r, 2) == {"p-0"}
    # A pool that never existed says so.
    r2 = start_router(ns, "nope")
    wait_until(lambda: "InferencePool %s/nope does not exist" % ns in
               complete(r2.port).json()["error"]["message"], 10,
               what="503 naming the missing pool")


def etcd_compact():
    """Writes a key and compacts etcd to the newest revision: any watch from an older
    resourceVersion gets 410 Expired."""
    url = ENV["TANDEM_K8S_ETCD_URL"]

    def call(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as f:
            return json.loads(f.read())
    key = base64.b64encode(b"/tandem-test/compact").decode()
    rev = int(call("/v3/kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
              ["header"]["revision"])
    call("/v3/kv/compaction", {"revision": rev, "physical": True})


def test_apiserver_restart_relists_on_410_and_keeps_serving():
    ns = namespace()
    ips = ["127.0.0.12", "127.0.0.13"]
    port = common_port(ips)
    sim_at(ips[0], port, "r-0")
    sim_at(ips[1], port, "r-1")
    pool_v1(ns, "pool", {"app": "restart"}, [port])
    pod(ns, "r-0", {"app": "restart"}, ips[0])
    r = start_router(ns, "pool")
    wait_endpoints(r, ["r-0"])
    subprocess.run([ENVSH, "apiserver-stop", ENV["DIR"]], check=True, timeout=60,
                   capture_output=True)
    # The router keeps serving with the endpoints it knows, and says so once.
    assert r.wait_log(r"WARN.*API server .* unreachable.*serving with the last known", 10)
    for _ in range(5):
        assert complete(r.port).status == 200
    etcd_compact()  # the router's resourceVersion is now too old: its next watch gets 410
    wait_until(lambda: metric(r.port, "tandem_router_discovery_errors_total",
                              kind="TransportError") >= 3, 15, what="a few retries")
    assert count_lines(r, "unreachable") <= 2, r.output()[-3000:]  # per change, not retry
    subprocess.run([ENVSH, "apiserver-start", ENV["DIR"]], check=True, timeout=120,
                   capture_output=True)
    assert r.wait_log(r"\(410\): listing again", 40), r.output()[-3000:]
    assert r.wait_log(r"watching again", 10)
    assert count_lines(r, "endpoint r-0 removed") == 0  # the relist did not drop it
    assert served_by(r, 2) == {"r-0"}
    # It follows changes made after the restart.
    pod(ns, "r-1", {"app": "restart"}, ips[1])
    set_ready(ns, "r-0", ips[0], ready=False)
    wait_endpoints(r, ["r-1"])
    assert metric(r.port, "tandem_router_discovery_watch_restarts_total") >= 1


def test_restricted_rbac_with_exactly_the_role():
    ns = namespace()
    ip = "127.0.0.14"
    port = common_port([ip])
    sim_at(ip, port, "rb-0")
    pool_v1(ns, "pool", {"app": "rbac"}, [port])
    pod(ns, "rb-0", {"app": "rbac"}, ip)
    r = start_router(ns, "pool", kubeconfig=ENV["TANDEM_K8S_ROUTER_KUBECONFIG"])
    m = r.wait_log(r"ERROR.*forbidden.*deploy/rbac/router\.yaml", 10)
    assert m, r.output()[-3000:]
    assert "inferencepools" in m.group(0) and ns in m.group(0)
    # Exactly the Role in deploy/rbac, bound to the restricted user.
    kubectl("-n", ns, "apply", "-f", os.path.join(SRC, "deploy", "rbac", "router.yaml"))
    kubectl("-n", ns, "create", "rolebinding", "tandem-router", "--role", "tandem-router",
            "--user", "tandem-router")
    wait_endpoints(r, ["rb-0"], timeout=30)
    assert served_by(r, 2) == {"rb-0"}
    assert count_lines(r, "forbidden") == 1, r.output()[-3000:]
    # The restricted user can do nothing else (the Role is all it has).
    denied = kubectl("-n", ns, "get", "secrets", check=False,
                     kubeconfig=ENV["TANDEM_K8S_ROUTER_KUBECONFIG"])
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_sidecar_allowlist_follows_the_pool():
    ns = namespace()
    ips = ["127.0.0.15", "127.0.0.16", "127.0.0.17"]
    port = common_port(ips)
    p0 = sim_at(ips[0], port, "prefill-0")
    p1 = sim_at(ips[1], port, "prefill-1")
    outsider = sim_at(ips[2], port, "outsider")
    d = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-0")
    pool_v1(ns, "pool", {"app": "pd"}, [port])
    pod(ns, "prefill-0", {"app": "pd", "llm-d.ai/role": "prefill"}, ips[0])
    sport = free_port()
    sc = Proc(["sidecar", "--host", "127.0.0.1", "--port", str(sport), "--vllm-port",
               str(d.port), "--inference-pool-name", "pool", "--inference-pool-namespace", ns,
               "--kubeconfig", ENV["KUBECONFIG"]], r"tandem sidecar ready on", 20)
    prompt = "x" * 700

    def via(ip):
        return post(sport, "/v1/completions", {"model": "m", "prompt": prompt + ip + str(time.monotonic()),
                                               "max_tokens": 2},
                    headers={"x-prefiller-host-port": "%s:%d" % (ip, port)}, timeout=20)
    wait_until(lambda: via(ips[0]).status == 200, 10, what="prefill-0 allowed")
    assert (metric_at(ips[0], port, "vllm:request_success_total") or 0) >= 1
    resp = via(ips[1])  # not in the pool yet
    assert resp.status == 403, (resp.status, resp.body)
    assert "InferencePool" in resp.json()["error"]["message"]
    pod(ns, "prefill-1", {"app": "pd", "llm-d.ai/role": "prefill"}, ips[1])
    wait_until(lambda: via(ips[1]).status == 200, 10, what="prefill-1 allowed")
    set_ready(ns, "prefill-0", ips[0], ready=False)
    wait_until(lambda: via(ips[0]).status == 403, 10, what="prefill-0 refused")
    assert via(ips[2]).status == 403  # never in the pool
    assert (metric_at(ips[2], port, "vllm:request_success_total") or 0) == 0
    assert p1.p.poll() is None and outsider.p.poll() is None and sc.p.poll() is None


def metric_at(ip, port, name):
    """The sum of a metric's series on a sim listening at ip:port."""
    total = None
    with urllib.request.urlopen("http://%s:%d/metrics" % (ip, port), timeout=5) as f:
        for line in f.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def test_client_calls_against_the_server():
    """src/k8s's calls (Status errors, server-side apply, status patch, Events, Lease
    create/update/conflict, list paging, client certificates, a token file re-read after
    a 401) checked by a C program against this API server."""
    exe = os.environ.get("TANDEM_K8S_CLIENT_TEST") or os.path.join(
        os.path.dirname(TANDEM_BIN_PATH), "k8s_client_test")
    ns = namespace()
    r = subprocess.run([exe, ENV["KUBECONFIG"], ns, ENV["TANDEM_K8S_ADMIN_CERT_KUBECONFIG"],
                        ENV["DIR"], ENV["TANDEM_K8S_ADMIN_TOKEN"]],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "0 failed" in out and "AddressSanitizer" not in out, out


if __name__ == "__main__":
    env_start()
    try:
        run([test_ready_pods_get_traffic, test_churn_notready_terminating_deleted_added,
             test_selector_change_reselects, test_v1alpha2_pool,
             test_deleted_pool_gives_503_then_recovers,
             test_apiserver_restart_relists_on_410_and_keeps_serving,
             test_restricted_rbac_with_exactly_the_role,
             test_sidecar_allowlist_follows_the_pool, test_client_calls_against_the_server])
    finally:
        env_stop()

"""`tandem ms controller` against a real kube-apiserver (tests/k8s/env.sh, garbage
collector on): seed 000's scenario 2 converges to what `ms generate` prints, owned by the
CR; status columns follow the Deployments; replicas and decoupleScaling; hand edits and
deletions restored; a BaseConfig change re-renders; prune; a broken CR is Degraded with
a Warning Event while others go on, and recovers; deleting the CR collects its children;
leader election hands over; an idle controller writes nothing; the controller works
with exactly deploy/controller's ClusterRole."""

import json
import os
import subprocess
import tempfile
import time

import test_k8s as k
from harness import Proc, TANDEM, free_port, get, run, wait_until

SRC = k.SRC
SAMPLE_CR = os.path.join(SRC, "deploy", "samples", "nixl-xpyd", "facebook-nixl.yaml")
SAMPLE_BASE = os.path.join(SRC, "deploy", "samples", "nixl-xpyd", "universal-baseconfig-hf.yaml")
PLURALS = {"ServiceAccount": "serviceaccounts", "RoleBinding": "rolebindings",
           "ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments",
           "InferencePool": "inferencepools.inference.networking.x-k8s.io",
           "InferenceModel": "inferencemodels.inference.networking.x-k8s.io",
           "HTTPRoute": "httproutes.gateway.networking.k8s.io",
           "HorizontalPodAutoscaler": "horizontalpodautoscalers.autoscaling",
           "ScaledObject": "scaledobjects.keda.sh"}


def kubectl_json(*args):
    return json.loads(k.kubectl(*args, "-o", "json").stdout)


def get_obj(ns, kind, name, check=True):
    r = k.kubectl("-n", ns, "get", PLURALS.get(kind, kind), name, "-o", "json",
                  "--show-managed-fields", check=False)
    if r.returncode != 0:
        if check:
            raise AssertionError("%s/%s: %s" % (kind, name, r.stderr))
        return None
    return json.loads(r.stdout)


def contains(live, want):
    if live is None:  # the server omits zero values (omitempty)
        return want in (False, None, 0, "", [], {})
    if isinstance(want, dict):
        return isinstance(live, dict) and all(contains(live.get(key), v) for key, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(live) == len(want) and \
            all(contains(a, b) for a, b in zip(live, want))
    if isinstance(want, int) and isinstance(live, str):
        return str(want) == live
    return live == want


def generate(cr, base, ns):
    out = subprocess.run([TANDEM, "ms", "generate", "-m", cr, "-b", base, "-n", ns],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    docs = [d for d in out.split("\n---\n") if d.strip()]
    objs = []
    for d in docs:  # the YAML is JSON-compatible enough for kubectl to convert
        r = k.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", stdin=d)
        objs.append(json.loads(r.stdout))
    return objs


def start_controller(*extra, kubeconfig=None, name="controller"):
    hp = free_port()
    p = Proc(["ms", "controller", "--kubeconfig", kubeconfig or k.ENV["KUBECONFIG"],
              "--health-port", str(hp), "--resync", "600"] + list(extra),
             r"tandem ms controller ready", 20)
    p.hp = hp
    wait_until(lambda: get(hp, "/readyz").status == 200, 20, what="%s caches synced" % name)
    return p


def metric_sum(port, name, **labels):
    total = 0.0
    for line in get(port, "/metrics").body.decode().splitlines():
        if not line.startswith(name):
            continue
        head, _, val = line.rpartition(" ")
        if all('%s="%s"' % (a, b) in head for a, b in labels.items()):
            total += float(val)
    return total


def writes(port):
    """API writes, leases excluded (those are leader election's heartbeat)."""
    return sum(metric_sum(port, "tandem_ms_api_requests_total", verb=v)
               for v in ("PATCH", "POST", "PUT", "DELETE"))


def apply_sample(ns, cr=SAMPLE_CR, base=SAMPLE_BASE):
    k.kubectl("-n", ns, "apply", "-f", base)
    k.kubectl("-n", ns, "apply", "-f", cr)


def cr_status(ns, name):
    return (get_obj(ns, "modelservice", name) or {}).get("status", {})


def condition(ns, name, ctype):
    for c in cr_status(ns, name).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def set_deploy_status(ns, name, replicas, ready, avail):
    k.kubectl("-n", ns, "patch", "deployment", name, "--subresource=status", "--type=merge",
              "-p", json.dumps({"status": {"replicas": replicas, "readyReplicas": ready,
                                           "availableReplicas": avail,
                                           "updatedReplicas": replicas}}))


MS = "facebook-opt-125m-nixl"


def test_converges_to_generate_owned_by_the_cr():
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    want = generate(SAMPLE_CR, SAMPLE_BASE, ns)
    uid = get_obj(ns, "modelservice", MS)["metadata"]["uid"]

    def converged():
        for o in want:
            live = get_obj(ns, o["kind"], o["metadata"]["name"], check=False)
            if live is None:
                return False
        return True
    wait_until(converged, 20, interval=0.2, what="every generated object to exist")
    for o in want:
        live = get_obj(ns, o["kind"], o["metadata"]["name"])
        refs = live["metadata"].get("ownerReferences", [])
        assert [r["uid"] for r in refs] == [uid] and refs[0]["controller"] and \
            refs[0]["blockOwnerDeletion"], (o["kind"], refs)
        assert live["metadata"]["labels"]["llm-d.ai/modelservice"] == MS
        # the same object as `ms generate` prints, apart from what we add and the server sets
        body = {key: v for key, v in o.items() if key != "metadata"}
        assert contains(live, body), (o["kind"], o["metadata"]["name"])
        mf = [m["manager"] for m in live["metadata"].get("managedFields", [])]
        assert "tandem-modelservice" in mf, mf
    assert len(want) == 10, [o["kind"] for o in want]
    # status follows the Deployments' status: seed 000's columns with live values
    set_deploy_status(ns, MS + "-decode", 1, 1, 1)
    set_deploy_status(ns, MS + "-prefill", 1, 0, 0)
    wait_until(lambda: cr_status(ns, MS).get("decodeReady") == "1/1" and
               cr_status(ns, MS).get("prefillReady") == "0/1", 10, what="status columns")
    out = k.kubectl("-n", ns, "get", "modelservice", MS).stdout
    head, row = out.splitlines()[0], out.splitlines()[1]
    assert head.split()[:3] == ["NAME", "DECOUPLE", "SCALING"], head
    assert "0/1" in row.split() and "1/1" in row.split(), row
    assert condition(ns, MS, "Ready")["status"] == "False"
    set_deploy_status(ns, MS + "-prefill", 1, 1, 1)
    set_deploy_status(ns, MS + "-epp", 1, 1, 1)
    wait_until(lambda: (condition(ns, MS, "Ready") or {}).get("status") == "True", 10,
               what="Ready=True")
    st = cr_status(ns, MS)
    assert st["observedGeneration"] == get_obj(ns, "modelservice", MS)["metadata"]["generation"]
    assert st["inferencePoolRef"] == MS + "-inference-pool" and st["decodeDeploymentRef"]
    evs = kubectl_json("-n", ns, "get", "events.events.k8s.io")["items"]
    assert any(e.get("reason") == "Created" and e["regarding"]["name"] == MS for e in evs), evs
    assert c.p.poll() is None


def reconciled_after(c, poke):
    """Runs poke() and waits until the controller has finished one more reconcile."""
    before = metric_sum(c.hp, "tandem_ms_reconciles_total")
    poke()
    wait_until(lambda: metric_sum(c.hp, "tandem_ms_reconciles_total") > before, 10,
               what="a reconcile")


def test_replicas_decoupling_and_restore():
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode", check=False), 20,
               what="decode Deployment")
    # replicas in the CR reach the Deployment (no decoupling)
    k.kubectl("-n", ns, "patch", "modelservice", MS, "--type=merge", "-p",
              '{"spec":{"decode":{"replicas":3}}}')
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode")["spec"]["replicas"] == 3, 10,
               what="replicas 3")
    # a child deleted by hand comes back; an edited one is restored
    k.kubectl("-n", ns, "delete", "service", MS + "-epp-service")
    wait_until(lambda: get_obj(ns, "Service", MS + "-epp-service", check=False), 10,
               what="Service restored")
    k.kubectl("-n", ns, "patch", "deployment", MS + "-decode", "--type=merge", "-p",
              '{"spec":{"replicas":7}}')
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode")["spec"]["replicas"] == 3, 10,
               what="hand-edited replicas restored")
    # decoupleScaling: an external scale stays
    reconciled_after(c, lambda: k.kubectl("-n", ns, "patch", "modelservice", MS,
                                          "--type=merge", "-p",
                                          '{"spec":{"decoupleScaling":true}}'))
    k.kubectl("-n", ns, "scale", "deployment", MS + "-decode", "--replicas=5")
    # the scale itself and a CR change both make it reconcile: replicas stay
    reconciled_after(c, lambda: k.kubectl("-n", ns, "label", "modelservice", MS, "poke=1"))
    assert get_obj(ns, "Deployment", MS + "-decode")["spec"]["replicas"] == 5


def test_baseconfig_change_rerenders_and_prunes():
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    wait_until(lambda: get_obj(ns, "InferencePool", MS + "-inference-pool", check=False), 20,
               what="pool")
    base = k.kubectl("-n", ns, "get", "configmap", "universal-base-config-hf", "-o",
                     "json").stdout
    cm = json.loads(base)
    dep = cm["data"]["eppDeployment"].replace("- --v=2", "- --v=3")
    assert dep != cm["data"]["eppDeployment"]
    cm["data"]["eppDeployment"] = dep
    del cm["data"]["inferencePool"]
    k.kubectl("-n", ns, "replace", "-f", "-", stdin=json.dumps(cm))

    def rerendered():
        d = get_obj(ns, "Deployment", MS + "-epp")
        return "--v=3" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    wait_until(rerendered, 10, what="the EPP Deployment re-rendered")
    wait_until(lambda: get_obj(ns, "InferencePool", MS + "-inference-pool", check=False) is None,
               10, what="the pool pruned")
    evs = kubectl_json("-n", ns, "get", "events.events.k8s.io")["items"]
    assert any(e.get("reason") == "Pruned" for e in evs)
    # something not ours with the same name pattern is never touched
    k.apply({"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": MS + "-stranger", "namespace": ns,
                          "labels": {"llm-d.ai/modelservice": MS}}})
    reconciled_after(c, lambda: k.kubectl("-n", ns, "label", "modelservice", MS, "poke=2"))
    assert get_obj(ns, "ConfigMap", MS + "-stranger", check=False)


def test_broken_cr_degraded_others_fine_then_recovers():
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    broken = json.loads(k.kubectl("create", "--dry-run=client", "-o", "json", "-f",
                                  SAMPLE_CR).stdout)
    broken["metadata"] = {"name": "broken"}
    broken["spec"]["baseConfigMapRef"]["name"] = "not-yet"
    k.kubectl("-n", ns, "apply", "-f", "-", stdin=json.dumps(broken))
    wait_until(lambda: (condition(ns, "broken", "Degraded") or {}).get("reason") ==
               "BaseConfigNotFound", 10, what="Degraded BaseConfigNotFound")
    assert "not-yet" in condition(ns, "broken", "Degraded")["message"]
    evs = kubectl_json("-n", ns, "get", "events.events.k8s.io")["items"]
    warn = [e for e in evs if e["regarding"]["name"] == "broken" and e["type"] == "Warning"]
    assert warn and warn[0]["reason"] == "BaseConfigNotFound", evs
    # the good one is unaffected
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode", check=False), 20,
               what="the good CR's children")
    # a template error names the key, line and column
    cm = json.loads(k.kubectl("-n", ns, "get", "configmap", "universal-base-config-hf", "-o",
                              "json").stdout)
    cm["metadata"] = {"name": "not-yet", "namespace": ns}
    cm["data"]["decodeService"] = "apiVersion: v1\nkind: Service\nspec: {{ .NoSuchVar }}\n"
    k.kubectl("-n", ns, "apply", "-f", "-", stdin=json.dumps(cm))
    wait_until(lambda: (condition(ns, "broken", "Degraded") or {}).get("reason") ==
               "RenderFailed", 10, what="Degraded RenderFailed")
    assert "NoSuchVar" in condition(ns, "broken", "Degraded")["message"]
    # fixed: it recovers without a restart
    del cm["data"]["decodeService"]
    k.kubectl("-n", ns, "replace", "-f", "-", stdin=json.dumps(cm))
    wait_until(lambda: (condition(ns, "broken", "Degraded") or {}).get("status") == "False",
               20, what="recovered")
    wait_until(lambda: get_obj(ns, "Deployment", "broken-decode", check=False), 10,
               what="its children")
    assert c.p.poll() is None
    # deleting a CR: the garbage collector takes its children (in a control plane started
    # seconds ago it first has to discover the ModelService resource: up to a minute)
    k.kubectl("-n", ns, "delete", "modelservice", "broken")
    wait_until(lambda: get_obj(ns, "Deployment", "broken-decode", check=False) is None, 120,
               interval=0.5, what="children collected")


def test_idle_controller_writes_nothing():
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    wait_until(lambda: (condition(ns, MS, "Degraded") or {}).get("status") == "False", 20,
               what="reconciled")
    time.sleep(2)  # the last status write and the events it caused
    before = writes(c.hp)
    time.sleep(60)  # a minute of idling (the test asks for exactly this)
    after = writes(c.hp)
    assert after == before, (before, after)
    assert metric_sum(c.hp, "tandem_ms_reconciles_total", result="success") >= 1


def test_leader_election_handover():
    ns = k.namespace()
    lease_args = ("--namespace", ns, "--leader-elect", "--leader-election-namespace", ns)
    a = start_controller(*lease_args, name="a")
    b = start_controller(*lease_args, name="b")

    def leaders():
        return [p for p in (a, b) if p.p.poll() is None and
                metric_sum(p.hp, "tandem_ms_leader") == 1]
    wait_until(lambda: len(leaders()) == 1, 20, what="one leader")
    first = leaders()[0]
    other = b if first is a else a
    apply_sample(ns)
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode", check=False), 20,
               what="the leader reconciles")
    assert writes(other.hp) == 0  # the standby wrote nothing
    first.p.kill()  # no release: the other waits out the lease duration
    t0 = time.monotonic()
    wait_until(lambda: metric_sum(other.hp, "tandem_ms_leader") == 1, 30, what="takeover")
    assert time.monotonic() - t0 < 25
    k.kubectl("-n", ns, "delete", "service", MS + "-epp-service")
    wait_until(lambda: get_obj(ns, "Service", MS + "-epp-service", check=False), 10,
               what="the new leader restores")
    # SIGTERM releases the lease: a third controller takes over at once
    c3 = start_controller(*lease_args, name="c")
    t0 = time.monotonic()
    other.stop()
    wait_until(lambda: metric_sum(c3.hp, "tandem_ms_leader") == 1, 10, what="handover")
    assert time.monotonic() - t0 < 8
    assert other.wait_log(r"lease released", 2)


def test_rbac_exactly_the_controller_role():
    ns = k.namespace()
    k.kubectl("apply", "-f", os.path.join(SRC, "deploy", "rbac", "pod-read.yaml"))
    k.kubectl("apply", "-f", os.path.join(SRC, "deploy", "controller", "rbac.yaml"))
    token = k.kubectl("-n", "tandem-system", "create", "token", "tandem-modelservice",
                      "--duration=1h").stdout.strip()
    kc = os.path.join(k.ENV["DIR"], "controller.kubeconfig")
    with open(k.ENV["TANDEM_K8S_ROUTER_KUBECONFIG"]) as f:
        text = f.read()
    with open(kc, "w") as f:
        f.write(text.replace(k.ENV["TANDEM_K8S_ROUTER_TOKEN"], token))
    c = start_controller("--leader-elect", "--leader-election-namespace", "tandem-system",
                         kubeconfig=kc)
    apply_sample(ns)
    want = generate(SAMPLE_CR, SAMPLE_BASE, ns)
    wait_until(lambda: all(get_obj(ns, o["kind"], o["metadata"]["name"], check=False)
                           for o in want), 30, interval=0.2, what="every child, as the SA")
    wait_until(lambda: (condition(ns, MS, "Degraded") or {}).get("status") == "False", 10,
               what="status written")
    assert metric_sum(c.hp, "tandem_ms_api_requests_total", code="403") == 0, \
        get(c.hp, "/metrics").body.decode()[-3000:]


AUTOSCALING = {
    "prefill": {"minReplicas": 1, "maxReplicas": 4,
                "metrics": [{"metric": "vllm:num_requests_waiting", "target": 4},
                            {"metric": "vllm:request_success_total", "target": 5,
                             "averaging": "total"}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120,
                                           "policies": [{"type": "Pods", "value": 1,
                                                         "periodSeconds": 30}]}}},
    "decode": {"engine": "keda", "minReplicas": 2, "maxReplicas": 8,
               "prometheus": {"serverAddress": "http://prometheus.monitoring:9090"},
               "metrics": [{"metric": "vllm:kv_cache_usage_perc", "target": 0.8}]},
}


def test_autoscalers_created_kept_and_pruned():
    """spec.<role>.autoscaling: the API server accepts the generated HPA (autoscaling/v2,
    built in) and ScaledObject (KEDA's CRD, installed by env.sh); both are owned by the CR;
    a replica count the autoscaler writes is kept; dropping autoscaling prunes them."""
    ns = k.namespace()
    c = start_controller("--namespace", ns)
    apply_sample(ns)
    wait_until(lambda: get_obj(ns, "Deployment", MS + "-decode", check=False), 20,
               what="decode Deployment")
    uid = get_obj(ns, "modelservice", MS)["metadata"]["uid"]
    k.kubectl("-n", ns, "patch", "modelservice", MS, "--type=merge", "-p", json.dumps(
        {"spec": {"decoupleScaling": True,
                  "prefill": {"autoscaling": AUTOSCALING["prefill"]},
                  "decode": {"autoscaling": AUTOSCALING["decode"]}}}))
    wait_until(lambda: get_obj(ns, "HorizontalPodAutoscaler", MS + "-prefill", check=False) and
               get_obj(ns, "ScaledObject", MS + "-decode", check=False), 20,
               what="the HPA and the ScaledObject")
    hpa = get_obj(ns, "HorizontalPodAutoscaler", MS + "-prefill")
    so = get_obj(ns, "ScaledObject", MS + "-decode")
    for o in (hpa, so):
        assert [r["uid"] for r in o["metadata"]["ownerReferences"]] == [uid], o["metadata"]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": MS + "-prefill"}, spec
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    assert spec["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    assert spec["metrics"][1]["external"]["metric"]["name"] == "vllm:request_success_per_second"
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    # the API server filled in the rest of behavior with the HPA's defaults
    assert spec["behavior"]["scaleUp"]["policies"], spec["behavior"]
    ss = so["spec"]
    assert ss["scaleTargetRef"]["name"] == MS + "-decode"
    assert (ss["minReplicaCount"], ss["maxReplicaCount"]) == (2, 8)
    q = ss["triggers"][0]["metadata"]["query"]
    assert 'llm_d_ai_role="decode"' in q and "vllm:kv_cache_usage_perc" in q, q
    assert ss["triggers"][0]["metadata"]["threshold"] == "0.8"
    # what the autoscaler writes (the scale subresource) survives reconciles
    k.kubectl("-n", ns, "scale", "deployment", MS + "-prefill", "--replicas=3")
    reconciled_after(c, lambda: k.kubectl("-n", ns, "label", "modelservice", MS, "poke=3"))
    assert get_obj(ns, "Deployment", MS + "-prefill")["spec"]["replicas"] == 3
    # autoscaling off for decode: its ScaledObject is pruned, the HPA stays
    k.kubectl("-n", ns, "patch", "modelservice", MS, "--type=json", "-p",
              '[{"op":"remove","path":"/spec/decode/autoscaling"}]')
    wait_until(lambda: get_obj(ns, "ScaledObject", MS + "-decode", check=False) is None, 10,
               what="the ScaledObject pruned")
    assert get_obj(ns, "HorizontalPodAutoscaler", MS + "-prefill", check=False)
    # autoscaling without decoupleScaling is refused with the reason, in the CR's status
    k.kubectl("-n", ns, "patch", "modelservice", MS, "--type=merge", "-p",
              '{"spec":{"decoupleScaling":false}}')
    wait_until(lambda: "decoupleScaling" in ((condition(ns, MS, "Degraded") or {})
                                             .get("message") or ""), 10,
               what="Degraded naming decoupleScaling")


if __name__ == "__main__":
    k.env_start()
    try:
        run([test_converges_to_generate_owned_by_the_cr, test_replicas_decoupling_and_restore,
             test_baseconfig_change_rerenders_and_prunes,
             test_broken_cr_degraded_others_fine_then_recovers,
             test_leader_election_handover, test_rbac_exactly_the_controller_role,
             test_idle_controller_writes_nothing, test_autoscalers_created_kept_and_pruned])
    finally:
        k.env_stop()

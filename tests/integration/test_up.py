"""tandem up (modelservice.md, "tandem up"): a ModelService CR run as local processes
(prefill sims, decode sims behind sidecars, the router), its status output, restarts,
and a clean stop. Every port and PID is read from tandem up's own output (the pod
table), never assumed."""

import atexit
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from harness import TANDEM, Proc, free_port, get, metric, post, run, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "..", "deploy", "samples", "sim")
MODEL = "facebook/opt-125m"

SEED_PROMPT = (
    "Author-contribution statements and acknowledgements in research papers should state "
    "clearly and specifically whether, and to what extent, the authors used AI technologies "
    "such as ChatGPT in the preparation of their manuscript and analysis. They should also "
    "indicate which LLMs were used. This will alert editors and reviewers to scrutinize "
    "manuscripts more carefully for potential biases, inaccuracies and improper source "
    "crediting. Likewise, scientific journals should be transparent about their use of LLMs, "
    "for example when selecting submitted manuscripts. Mention the large language model "
    "based product mentioned in the paragraph above:")

CR_PD = """apiVersion: llm-d.ai/v1alpha1
kind: ModelService
metadata:
  name: sim-opt
spec:
  routing:
    modelName: facebook/opt-125m
  modelArtifacts:
    uri: hf://facebook/opt-125m
  prefill:
    replicas: 1
    containers:
    - name: vllm
      image: ghcr.io/llm-d/llm-d:0.0.8
  decode:
    replicas: 2
    containers:
    - name: vllm
      image: ghcr.io/llm-d/llm-d:0.0.8
"""

CR_AGG = """apiVersion: llm-d.ai/v1alpha1
kind: ModelService
metadata:
  name: agg-opt
spec:
  routing:
    modelName: facebook/opt-125m
  modelArtifacts:
    uri: hf://facebook/opt-125m
  decode:
    replicas: 2
    containers:
    - name: vllm
      image: ghcr.io/llm-d/llm-d:0.0.8
"""

# spec.routing without its modelName.
CR_BAD = CR_AGG.replace("    modelName: facebook/opt-125m\n",
                        "    ports:\n    - name: app_port\n      port: 8000\n")

_tmp = tempfile.mkdtemp(prefix="tandem-up-test-")
atexit.register(shutil.rmtree, _tmp, True)
_rng = random.Random()


def write_cr(name, text):
    path = os.path.join(_tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


ROW = re.compile(r"^(\S+)\s+(prefill|decode|sidecar|router)\s+([01])/1\s+(\S+)\s+(\d+)\s+"
                 r"(\d+)\s+(\d+|-)\s*$")


def pod_table(p):
    """The last complete pod table tandem up printed: {name: row}."""
    tables, cur = [], None
    for line in p.output().splitlines():
        if re.match(r"^NAME\s+ROLE\s+READY\s+STATUS\s+RESTARTS\s+PORT\s+PID\s*$", line):
            cur = {}
            tables.append(cur)
            continue
        m = ROW.match(line)
        if m and cur is not None:
            cur[m.group(1)] = {"role": m.group(2), "ready": m.group(3) == "1",
                               "status": m.group(4), "restarts": int(m.group(5)),
                               "port": int(m.group(6)),
                               "pid": 0 if m.group(7) == "-" else int(m.group(7))}
        elif cur is not None and cur:
            cur = None  # the table ended
    return tables[-1] if tables else {}


def all_pids(p):
    """Every PID any pod table showed (restarted processes have a new one)."""
    pids = set()
    for line in p.output().splitlines():
        m = ROW.match(line)
        if m and m.group(7) != "-":
            pids.add(int(m.group(7)))
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is as good as gone (waiting for its reaper).
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def no_sanitizer_report(r):
    assert not any(k in r.stderr for k in (b"Sanitizer", b"runtime error:")), r.stderr


def start_up(cr_path, *extra, base=None):
    port = free_port()
    base = base or _rng.randrange(20000, 60000)
    p = Proc(["up", "-m", cr_path, "--port", str(port), "--base-port", str(base)] +
             list(extra), r"tandem up: serving", 30)
    p.port = port
    return p


def health(port, path="/health"):
    try:
        return get(port, path, timeout=2).status == 200
    except OSError:
        return False


def complete(port, prompt):
    r = post(port, "/v1/completions", {"model": MODEL, "prompt": prompt})
    assert r.status == 200, (r.status, r.body)
    return r


def long_prompt(i):
    words = ["w%d" % _rng.randrange(10 ** 6) for _ in range(150)]
    return ("%d-%08x " % (i, _rng.getrandbits(32))) + " ".join(words)


# --- tests ----------------------------------------------------------------------------------


def test_pd_serving_restart_and_stop():
    p = start_up(write_cr("msvc.yaml", CR_PD))
    assert re.search(r"serving facebook/opt-125m on http://127\.0\.0\.1:%d" % p.port,
                     p.output())
    t = pod_table(p)
    assert set(t) == {"sim-opt-prefill-0", "sim-opt-decode-0", "sim-opt-decode-0-sidecar",
                      "sim-opt-decode-1", "sim-opt-decode-1-sidecar", "sim-opt-router"}, t
    assert all(r["ready"] and r["status"] == "Running" and r["restarts"] == 0
               for r in t.values()), t
    assert t["sim-opt-router"]["port"] == p.port
    # The modelservice status line: 1/1 prefill, 2/2 decode.
    assert re.search(r"^sim-opt\s+false\s+1/1\s+1\s+2/2\s+2\s+\d+s\s*$", p.output(), re.M), \
        p.output()
    for name, row in t.items():
        assert health(row["port"], "/ready" if row["role"] == "router" else "/health"), name

    # Seed 000: vLLM's completion shape through the router; long and uncached, so it is
    # disaggregated: the prefill sim did the prompt.
    r = complete(p.port, SEED_PROMPT)
    j = r.json()
    for k in ("id", "object", "created", "model", "choices", "usage"):
        assert k in j, k
    assert j["object"] == "text_completion" and j["model"] == MODEL
    assert j["choices"][0]["text"] and j["usage"]["prompt_tokens"] > 0
    assert r.header("x-inference-pod") in ("sim-opt-decode-0", "sim-opt-decode-1")
    prefill_port = t["sim-opt-prefill-0"]["port"]
    assert (metric(prefill_port, "vllm:prompt_tokens_total") or 0) > 0

    # 1P2D: both decode pods serve distinct long prompts.
    seen = set()
    for i in range(24):
        seen.add(complete(p.port, long_prompt(i)).header("x-inference-pod"))
        if len(seen) == 2:
            break
    assert seen == {"sim-opt-decode-0", "sim-opt-decode-1"}, seen

    # kill -9 a decode engine: restarted like a Deployment's pod, ready again.
    victim = t["sim-opt-decode-1"]
    os.kill(victim["pid"], signal.SIGKILL)
    assert p.wait_log(r"restarting sim-opt-decode-1 \(exit code 137\)", 10), p.output()[-3000:]

    def restarted():
        row = pod_table(p).get("sim-opt-decode-1")
        return row and row["restarts"] == 1 and row["ready"] and row["status"] == "Running" \
            and row["pid"] != victim["pid"] and row
    row = wait_until(restarted, 15, what="decode-1 restarted and ready")
    assert row["port"] == victim["port"]
    wait_until(lambda: health(victim["port"]), 10, what="decode-1 /health")
    assert not alive(victim["pid"])
    # It serves again (through its sidecar, via the router).
    def decode1_serves():
        r = post(p.port, "/v1/completions", {"model": MODEL, "prompt": long_prompt(99)})
        return r.status == 200 and r.header("x-inference-pod") == "sim-opt-decode-1"
    wait_until(decode1_serves, 15, interval=0.05, what="decode-1 serving again")

    # Ctrl-C: exit 0, no child left.
    pids = all_pids(p)
    assert len(pids) >= 7, pids  # 6 processes + the restarted one
    p.p.send_signal(signal.SIGINT)
    assert p.p.wait(10) == 0, p.output()[-3000:]
    wait_until(lambda: not any(alive(x) for x in pids), 5,
               what="no child of tandem up left: %s" % [x for x in pids if alive(x)])


def test_aggregated_and_killed_parent():
    """No prefill section: decode sims straight behind the router (no sidecars). If tandem
    up itself is SIGKILLed, its children die too (PR_SET_PDEATHSIG)."""
    p = start_up(write_cr("agg.yaml", CR_AGG), "--profile", "fast", "--status-interval", "0.2")
    t = pod_table(p)
    assert set(t) == {"agg-opt-decode-0", "agg-opt-decode-1", "agg-opt-router"}, t
    assert re.search(r"^agg-opt\s+false\s+-\s+-\s+2/2\s+2\s+\d+s\s*$", p.output(), re.M), \
        p.output()
    r = complete(p.port, SEED_PROMPT)
    assert r.header("x-inference-pod") in ("agg-opt-decode-0", "agg-opt-decode-1")
    # --status-interval: the block again with nothing changed.
    n = p.output().count("DECOUPLE SCALING")
    wait_until(lambda: p.output().count("DECOUPLE SCALING") >= n + 2, 5,
               what="periodic status blocks")
    pids = all_pids(p)
    assert len(pids) == 3
    p.p.kill()
    p.p.wait(5)
    wait_until(lambda: not any(alive(x) for x in pids), 10,
               what="children gone after SIGKILL of tandem up")


def test_invalid_cr():
    bad = write_cr("bad.yaml", CR_BAD)
    r = subprocess.run([TANDEM, "up", "-m", bad, "--port", str(free_port())],
                       capture_output=True, timeout=10)
    no_sanitizer_report(r)
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.decode()
    assert "bad.yaml" in err and "modelName" in err, err
    assert r.stdout == b"", r.stdout
    # A missing file and a missing -m are usage errors too.
    r = subprocess.run([TANDEM, "up", "-m", os.path.join(_tmp, "nope.yaml")],
                       capture_output=True, timeout=10)
    no_sanitizer_report(r)
    assert r.returncode == 2 and b"nope.yaml" in r.stderr and r.stdout == b"", r
    r = subprocess.run([TANDEM, "up"], capture_output=True, timeout=10)
    no_sanitizer_report(r)
    assert r.returncode == 2 and r.stdout == b"", r
    r = subprocess.run([TANDEM, "up", "-m", write_cr("ok.yaml", CR_AGG), "-b",
                        os.path.join(_tmp, "nobase.yaml")], capture_output=True, timeout=10)
    no_sanitizer_report(r)
    assert r.returncode == 2 and b"nobase.yaml" in r.stderr and r.stdout == b"", r
    r = subprocess.run([TANDEM, "up", "--help"], capture_output=True, timeout=10)
    no_sanitizer_report(r)
    assert r.returncode == 0 and b"usage: tandem up" in r.stdout, r


def test_engine_vllm_needs_vllm():
    env = dict(os.environ, PATH=_tmp)  # no vllm there
    r = subprocess.run([TANDEM, "up", "-m", write_cr("pd.yaml", CR_PD), "--engine", "vllm",
                        "--port", str(free_port())], capture_output=True, timeout=10, env=env)
    no_sanitizer_report(r)
    assert r.returncode == 2, r
    assert b"--engine vllm: vllm is not installed" in r.stderr, r.stderr


FAKE_VLLM = """#!%s
# A stand-in for vllm: records its arguments, then runs tandem sim on the --host/--port
# and --served-model-name it was given (the last of each, as argparse would).
import os, sys
args = sys.argv[1:]
with open(os.path.join(os.path.dirname(__file__), "argv.%%d" %% os.getpid()), "w") as f:
    f.write("\\n".join(args))
def last(flag):
    v = None
    for i, a in enumerate(args[:-1]):
        if a == flag:
            v = args[i + 1]
    return v
tandem = os.environ["FAKE_VLLM_TANDEM"]
os.execv(tandem, [tandem, "sim", "--model", last("--served-model-name"), "--host",
                  last("--host"), "--port", last("--port"), "--profile", "fast",
                  "--stats-interval", "0"])
"""

CR_VLLM = CR_AGG.replace("agg-opt", "vllm-opt").replace(
    "      image: ghcr.io/llm-d/llm-d:0.0.8\n",
    "      image: ghcr.io/llm-d/llm-d:0.0.8\n"
    "      command: [vllm, serve]\n"
    "      args: [facebook/opt-125m, --max-model-len, '2048']\n")


def test_engine_vllm_runs_container_command():
    """--engine vllm runs the first container's command and args (vllm here is a stand-in
    that records its argv and runs a sim)."""
    d = tempfile.mkdtemp(dir=_tmp)
    fake = os.path.join(d, "vllm")
    with open(fake, "w") as f:
        f.write(FAKE_VLLM % sys.executable)
    os.chmod(fake, 0o755)
    env = {"PATH": d + os.pathsep + os.environ.get("PATH", ""),
           "FAKE_VLLM_TANDEM": os.path.abspath(TANDEM)}
    port = free_port()
    p = Proc(["up", "-m", write_cr("vllm.yaml", CR_VLLM), "--engine", "vllm", "--port",
              str(port), "--base-port", str(_rng.randrange(20000, 60000))],
             r"tandem up: serving", 30, env=env)
    t = pod_table(p)
    assert set(t) == {"vllm-opt-decode-0", "vllm-opt-decode-1", "vllm-opt-router"}, t
    assert complete(port, SEED_PROMPT).json()["model"] == MODEL
    recorded = sorted(os.path.join(d, x) for x in os.listdir(d) if x.startswith("argv."))
    assert len(recorded) == 2, recorded
    ports = set()
    for path in recorded:
        with open(path) as f:
            argv = f.read().split("\n")
        assert argv[:4] == ["serve", "facebook/opt-125m", "--max-model-len", "2048"], argv
        assert argv[argv.index("--served-model-name") + 1] == MODEL
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        ports.add(int(argv[argv.index("--port") + 1]))
    assert ports == {t["vllm-opt-decode-0"]["port"], t["vllm-opt-decode-1"]["port"]}
    p.p.send_signal(signal.SIGINT)
    assert p.p.wait(10) == 0


def test_sample_cr():
    """The bundled sample (deploy/samples/sim), when it is there."""
    msvc = os.path.join(SAMPLES, "msvc.yaml")
    if not os.path.exists(msvc):
        print("skip: %s not found" % msvc)
        return
    extra = []
    base = os.path.join(SAMPLES, "baseconfig.yaml")
    if os.path.exists(base):
        extra = ["-b", base]
    p = start_up(msvc, *extra)
    t = pod_table(p)
    assert t and all(r["ready"] for r in t.values()), t
    served = re.search(r"tandem up: serving (\S+) on", p.output()).group(1)
    r = post(p.port, "/v1/completions", {"model": served, "prompt": SEED_PROMPT})
    assert r.status == 200, r.body
    p.p.send_signal(signal.SIGINT)
    assert p.p.wait(10) == 0


CR_AUTOSCALE = """apiVersion: llm-d.ai/v1alpha1
kind: ModelService
metadata:
  name: as-opt
spec:
  decoupleScaling: true
  routing:
    modelName: facebook/opt-125m
  modelArtifacts:
    uri: hf://facebook/opt-125m
  prefill:
    autoscaling:
      minReplicas: 1
      maxReplicas: 3
      metrics:
      - {metric: "vllm:num_requests_waiting", target: 2}
      - {metric: "vllm:num_requests_running", target: 4}
      behavior:
        scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 2}]}
        scaleDown: {stabilizationWindowSeconds: 4, policies: [{type: Pods, value: 1, periodSeconds: 2}]}
  decode:
    autoscaling:
      minReplicas: 1
      maxReplicas: 3
      metrics:
      - {metric: "vllm:num_requests_running", target: 8}
      behavior:
        scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 2}]}
        scaleDown: {stabilizationWindowSeconds: 4, policies: [{type: Pods, value: 1, periodSeconds: 2}]}
"""


def bench(port, *args):
    """tandem bench in the background against the router; returns the process."""
    return subprocess.Popen([TANDEM, "bench", "--port", str(port), "--model", MODEL,
                             "--disable-tqdm", "--ignore-eos", "--dataset-name", "random",
                             "--seed", str(_rng.randrange(1 << 30))] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def bench_result(b):
    out = b.communicate(timeout=120)[0].decode()
    ok = re.search(r"Successful requests:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    assert b.returncode == 0 and ok and failed, out
    return int(ok.group(1)), int(failed.group(1)), out


def test_autoscale_roles_separately():
    """Seed 002 on one machine: new long prompts scale prefill while decode stays; short
    prompts with long answers (no prefill: under the P/D threshold) scale decode while
    prefill goes back; idle, both return to min; not one request fails, scale-downs
    (drain, then stop) included. Decisions every 0.5 s against the sims' own metrics."""
    mp = free_port()
    # Replicas started later keep the ports planned at start: below the ephemeral range,
    # where the load's own connections cannot take them meanwhile.
    p = start_up(write_cr("autoscale.yaml", CR_AUTOSCALE), "--profile", "h100-8b",
                 "--autoscale-interval", "0.5", "--metrics-port", str(mp),
                 base=_rng.randrange(20000, 32000))
    want = lambda role: metric(mp, "tandem_up_desired_replicas", role=role)
    assert (want("prefill"), want("decode")) == (1, 1)
    assert re.search(r"autoscaling prefill: 1 replicas \(min 1, max 3\)", p.output())
    # 1. new long prompts: the prefill pods queue
    b1 = bench(p.port, "--random-input-len", "3000", "--random-output-len", "4",
               "--num-prompts", "400", "--request-rate", "25")
    wait_until(lambda: want("prefill") >= 2, 40, interval=0.2, what="prefill scaled up")
    assert want("decode") == 1, p.output()[-3000:]
    assert re.search(r"autoscale prefill: 1 -> 2 replicas \(vllm:num_requests_waiting average",
                     p.output()), p.output()[-3000:]
    ok1, failed1, out1 = bench_result(b1)
    assert failed1 == 0 and ok1 == 400, out1
    assert metric(mp, "tandem_up_scaled_replicas_total", role="decode", direction="up") == 0, \
        [l for l in p.output().splitlines() if "autoscale" in l]
    # 2. short prompts, long answers: decode-only requests fill the decode batch
    b2 = bench(p.port, "--random-input-len", "8", "--random-output-len", "300",
               "--num-prompts", "700", "--request-rate", "45")
    wait_until(lambda: want("decode") >= 2, 40, interval=0.2, what="decode scaled up")
    # prefill idles meanwhile and is drained back to its minimum
    wait_until(lambda: want("prefill") == 1, 40, interval=0.2, what="prefill back to 1")
    assert p.wait_log(r"autoscale prefill: as-opt-prefill-\d drained: stopping it", 20), \
        p.output()[-3000:]
    ok2, failed2, out2 = bench_result(b2)
    assert failed2 == 0 and ok2 == 700, out2
    # 3. idle: both at min, every drained replica stopped and parked
    wait_until(lambda: want("decode") == 1 and want("prefill") == 1, 60, interval=0.2,
               what="both roles back to min")
    wait_until(lambda: set(pod_table(p)) == {"as-opt-prefill-0", "as-opt-decode-0",
                                             "as-opt-decode-0-sidecar", "as-opt-router"},
               30, interval=0.2, what="only the min replicas in the pod table")
    assert metric(mp, "tandem_up_scaled_replicas_total", role="decode", direction="down") >= 1
    # what is left still serves
    complete(p.port, SEED_PROMPT)
    p.p.send_signal(signal.SIGINT)
    assert p.p.wait(10) == 0


if __name__ == "__main__":
    run([test_invalid_cr, test_engine_vllm_needs_vllm, test_engine_vllm_runs_container_command,
         test_pd_serving_restart_and_stop, test_aggregated_and_killed_parent, test_sample_cr,
         test_autoscale_roles_separately])

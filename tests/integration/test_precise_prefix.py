"""precise-prefix-cache-scorer end to end: two sims publish KV events (vLLM's
--kv-events-config, connecting to the router's bound SUB socket, topic
kv@<ip:port>@m); the router's index follows the sims' real caches, so a prompt one sim
served routes back to it, and stops doing so once that sim evicted it."""

import http.client
import json
import os
import subprocess
import tempfile

from harness import TANDEM, Proc, free_port, get, metric, post, run, sims, start_sim, wait_until

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu").split()


def prompt(tag, n_words):
    return tag + ": " + " ".join(WORDS[(i * 7 + len(tag)) % len(WORDS)] + str(i)
                                 for i in range(n_words))


def config(zport, tp_extra=""):
    return """apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters:
    tokenProcessorConfig:
      blockSize: 16%s
    kvEventsConfig:
      zmqEndpoint: tcp://127.0.0.1:%d
      topicFilter: "kv@"
    indexerConfig:
      kvBlockIndexConfig:
        enableMetrics: true
- type: decode-filter
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
  - pluginRef: precise-prefix-cache-scorer
    weight: 10
""" % (tp_extra, zport)


def start_sims(zport, n=2, blocks=48, extra=()):
    out = []
    for i in range(n):
        port = free_port()
        kv = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": "tcp://127.0.0.1:%d" % zport,  # connect mode: the router binds
              "topic": "kv@127.0.0.1:%d@m" % port}
        s = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-%d" % i,
                      "--num-gpu-blocks", str(blocks), "--block-size", "16",
                      "--kv-events-config", json.dumps(kv), *extra, port=port)
        s.name = "decode-%d" % i
        out.append(s)
    return out


def start_router(zport, backends, tp_extra=""):
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "2", "--refresh-metrics-interval", "20", "--enable-debug-endpoints",
            "--config-text", config(zport, tp_extra)]
    for b in backends:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d,role=decode" % (b.name, b.port)]
    r = Proc(args, r"tandem router ready on", 20)
    r.port = port
    wait_until(lambda: all(e["healthy"] for e in
                           get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="every endpoint healthy")
    # PUB/SUB drops what a sim sends before its connection (retried every 100 ms) is up:
    # a throwaway prompt per sim, new each try, until the router's index shows it
    for b in backends:
        n = [0]

        def connected():
            n[0] += 1
            w = prompt("warmup-%s-%d" % (b.name, n[0]), 20)
            complete(b.port, w)
            return precise_scores(r, w)[b.name] > 0 or None
        wait_until(connected, 10, interval=0.1, what="KV events from %s" % b.name)
    return r


def precise_scores(r, text):
    t = post(r.port, "/debug/schedule", {"model": "m", "prompt": text}).json()
    for s in t["profiles"][0]["scorers"]:
        if s["name"] == "precise-prefix-cache-scorer":
            return s["scores"]
    raise AssertionError("no precise scorer in trace: %r" % t)


def complete(port, text, headers=None):
    r = post(port, "/v1/completions", {"model": "m", "prompt": text, "max_tokens": 1,
                                       "ignore_eos": True}, headers=headers)
    assert r.status == 200, (r.status, r.body)
    return r


def test_follows_sim_cache_and_evictions():
    zport = free_port()
    a, b = start_sims(zport)
    r = start_router(zport, [a, b])
    p = prompt("shared", 90)  # ~ 12 blocks of 16 tokens
    # nothing cached anywhere: no preference
    assert precise_scores(r, p) == {"decode-0": 0, "decode-1": 0}
    # sim A serves p directly (not through the router): only its KV events tell the router
    complete(a.port, p)
    s = wait_until(lambda: (lambda sc: sc if sc["decode-0"] > 0.5 else None)(
        precise_scores(r, p)), 10, what="router index holding A's blocks")
    assert s["decode-1"] == 0, s
    # the next requests with the same prefix go to A (a longer prompt shares its prefix)
    for i in range(4):
        resp = complete(r.port, p + " and more %d" % i)
        assert resp.header("x-inference-pod") == "decode-0", resp.headers
    # A evicts p: other prompts fill its 48-block cache (p's blocks are the oldest free ones)
    for i in range(6):
        complete(a.port, prompt("filler%d" % i, 200))  # ~ 28 blocks each
    wait_until(lambda: precise_scores(r, p)["decode-0"] == 0, 10,
               what="A's evictions reaching the router's index")
    assert precise_scores(r, p) == {"decode-0": 0, "decode-1": 0}
    # enableMetrics: llm-d's index counters on the router's /metrics
    assert metric(r.port, "kvcache_index_admissions_total") >= 17
    assert metric(r.port, "kvcache_index_evictions_total") >= 17
    assert metric(r.port, "kvcache_index_lookup_requests_total") > 0
    assert metric(r.port, "kvcache_index_lookup_hits_total") > 0
    # B now serves p directly: the preference moves to B
    complete(b.port, p)
    s = wait_until(lambda: (lambda sc: sc if sc["decode-1"] > 0.5 else None)(
        precise_scores(r, p)), 10, what="router index holding B's blocks")
    assert s["decode-0"] == 0, s
    resp = complete(r.port, p)
    assert resp.header("x-inference-pod") == "decode-1"


def test_chat_blocks_match():
    # the router renders a chat the way the sim does, so a conversation one sim served
    # scores there (same tokens, same block keys)
    zport = free_port()
    a, b = start_sims(zport)
    r = start_router(zport, [a, b])
    msgs = [{"role": "system", "content": prompt("system", 60)},
            {"role": "user", "content": "what now?"}]
    resp = post(b.port, "/v1/chat/completions", {"model": "m", "messages": msgs,
                                                 "max_tokens": 1})
    assert resp.status == 200, resp.body

    def scored():
        t = post(r.port, "/debug/schedule", {"model": "m", "messages": msgs}).json()
        sc = [s for s in t["profiles"][0]["scorers"]
              if s["name"] == "precise-prefix-cache-scorer"][0]["scores"]
        return sc if sc["decode-1"] > 0.5 else None
    sc = wait_until(scored, 10, what="chat blocks of B in the router's index")
    assert sc["decode-0"] == 0, sc


def test_vllm_sha256_cbor_keys():
    # both sides on vLLM's sha256_cbor keys (sim: vLLM's flag + PYTHONHASHSEED; scorer:
    # tokenProcessorConfig.hashAlgo + hashSeed): the index follows stores and evictions
    zport = free_port()
    os.environ["PYTHONHASHSEED"] = "42"
    try:
        a, b = start_sims(zport, extra=("--prefix-caching-hash-algo", "sha256_cbor"))
    finally:
        del os.environ["PYTHONHASHSEED"]
    tp = '\n      hashSeed: "42"\n      hashAlgo: sha256_cbor'
    r = start_router(zport, [a, b], tp)
    p = prompt("vkeys", 90)
    complete(a.port, p)
    s = wait_until(lambda: (lambda sc: sc if sc["decode-0"] > 0.5 else None)(
        precise_scores(r, p)), 10, what="router index holding A's sha256_cbor blocks")
    assert s["decode-1"] == 0, s
    assert complete(r.port, p + " more").header("x-inference-pod") == "decode-0"
    for i in range(6):
        complete(a.port, prompt("filler%d" % i, 200))
    wait_until(lambda: precise_scores(r, p)["decode-0"] == 0, 10,
               what="A's sha256_cbor evictions reaching the router's index")


def test_bind_failure_stops_router():
    zport = free_port()
    a, = start_sims(zport, n=1)
    r = start_router(zport, [a])
    out = subprocess.run([TANDEM, "router", "--host", "127.0.0.1", "--port", "0",
                          "--metrics-port", "0", "--workers", "1", "--config-text",
                          config(zport), "--endpoint", "name=x,addr=127.0.0.1:%d" % a.port],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "kvEventsConfig.zmqEndpoint" in out.stderr, out.stderr
    assert get(r.port, "/ready").status == 200


def notify_config(zport, sport, speculative=False):
    return """apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: endpoint-notification-source
- type: metrics-data-source
- type: core-metrics-extractor
- type: decode-filter
- type: max-score-picker
- type: precise-prefix-cache-scorer
  parameters:
    tokenProcessorConfig:
      blockSize: 16
    kvEventsConfig:
      zmqEndpoint: tcp://127.0.0.1:%d
      topicFilter: "kv@"
      concurrency: 4
      discoverPods: true
      podDiscoveryConfig:
        socketPort: %d
    speculativeIndexing: %s
    speculativeTTL: 1s
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
  - pluginRef: endpoint-notification-source
    extractors:
    - pluginRef: precise-prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
  - pluginRef: precise-prefix-cache-scorer
    weight: 10
""" % (zport, sport, "true" if speculative else "false")


def post_to(ip, port, path, body):
    c = http.client.HTTPConnection(ip, port, timeout=15)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, (r.status, data)
    return data


def write_endpoints(path, pods):
    with open(path, "w") as f:
        f.write("endpoints:\n")
        for p in pods:
            f.write("- name: %s\n  address: %s:%d\n  role: decode\n" % (p.name, p.ip, p.port))
    st = os.stat(path)
    os.utime(path, (st.st_atime + 5, st.st_mtime + 5))  # a new mtime, whatever the clock


def test_notification_source_per_pod_subscribers():
    # llm-d's recommended precise setup: every engine binds its own PUB socket at the same
    # port on its own address (tcp://*:5556 in a pod; here [::ffff:127.0.0.X]:S), the
    # router connects one SUB per endpoint, following endpoint-notification-source. The
    # topic names nobody: events on a pod's socket belong to that pod.
    zport, sport = free_port(), free_port()
    pods = []
    for i, ip in enumerate(("127.0.0.2", "127.0.0.3")):
        port = free_port()
        kv = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": "tcp://[::ffff:%s]:%d" % (ip, sport), "topic": "kv@somebody@m"}
        s = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-%d" % i,
                      "--host", ip, "--num-gpu-blocks", "48", "--block-size", "16",
                      "--kv-events-config", json.dumps(kv), port=port)
        s.name, s.ip = "decode-%d" % i, ip
        pods.append(s)
    a, b = pods
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        path = f.name
    try:
        write_endpoints(path, pods)
        port = free_port()
        r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
                  "--workers", "2", "--refresh-metrics-interval", "20",
                  "--enable-debug-endpoints", "--endpoints-file", path,
                  "--config-text", notify_config(zport, sport)], r"tandem router ready on", 20)
        r.port = port
        for p in pods:
            assert r.wait_log(r"subscriber for endpoint '%s' connected to tcp://%s:%d"
                              % (p.name, p.ip, sport), 10), r.output()
        assert r.wait_log(r"bound at tcp://127.0.0.1:%d" % zport, 1)  # global socket kept

        def sees(pod, tag):
            n = [0]

            def seen():
                n[0] += 1
                w = prompt("%s-%s-%d" % (tag, pod.name, n[0]), 20)
                post_to(pod.ip, pod.port, "/v1/completions",
                        {"model": "m", "prompt": w, "max_tokens": 1})
                return precise_scores(r, w).get(pod.name, 0) > 0 or None
            wait_until(seen, 10, interval=0.1, what="KV events from %s" % pod.name)
        for p in pods:
            sees(p, "warmup")
        p = prompt("pod-socket", 90)
        post_to(a.ip, a.port, "/v1/completions", {"model": "m", "prompt": p, "max_tokens": 1})
        sc = wait_until(lambda: (lambda x: x if x["decode-0"] > 0.5 else None)(
            precise_scores(r, p)), 10, what="A's blocks in the router's index")
        assert sc["decode-1"] == 0, sc
        for i in range(3):
            assert complete(r.port, p + " then %d" % i).header("x-inference-pod") == "decode-0"

        # A leaves the pool: its subscriber closes and its blocks leave the index
        mark = r.line_count()
        write_endpoints(path, [b])
        m = r.wait_log(r"subscriber for endpoint 'decode-0' \(tcp://127.0.0.2:%d\) closed, "
                       r"(\d+) blocks dropped" % sport, 10, start=mark)
        assert m and int(m.group(1)) >= 5, r.output()
        assert precise_scores(r, p) == {"decode-1": 0}
        assert complete(r.port, p).header("x-inference-pod") == "decode-1"
        # and comes back: a new subscriber, fed from what A does from now on
        mark = r.line_count()
        write_endpoints(path, pods)
        assert r.wait_log(r"subscriber for endpoint 'decode-0' connected", 10, start=mark)
        sees(a, "back")
    finally:
        os.unlink(path)


def test_speculative_indexing():
    # speculativeIndexing: a pick counts as cached on the picked pod at once, before (here:
    # without) any KV event, and for speculativeTTL (1s) only. These sims publish nothing.
    zport, sport = free_port(), free_port()
    a, b = sims(2)
    port = free_port()
    r = Proc(["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
              "--workers", "1", "--enable-debug-endpoints", "--config-text",
              notify_config(zport, sport, speculative=True),
              "--endpoint", "name=decode-0,addr=127.0.0.1:%d,role=decode" % a.port,
              "--endpoint", "name=decode-1,addr=127.0.0.1:%d,role=decode" % b.port],
             r"tandem router ready on", 20)
    r.port = port
    wait_until(lambda: all(e["healthy"] for e in
                           get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="every endpoint healthy")
    p = prompt("speculate", 90)
    assert precise_scores(r, p) == {"decode-0": 0, "decode-1": 0}
    picked = complete(r.port, p).header("x-inference-pod")
    other = "decode-1" if picked == "decode-0" else "decode-0"
    sc = precise_scores(r, p)
    assert sc[picked] == 1 and sc[other] == 0, sc
    # the same prefix follows the speculation
    for i in range(3):
        assert complete(r.port, p + " again %d" % i).header("x-inference-pod") == picked
    # nothing confirms it: gone after the TTL (plus the 100 ms sweep)
    wait_until(lambda: precise_scores(r, p)[picked] == 0, 5, what="speculative entries to expire")


if __name__ == "__main__":
    run([test_follows_sim_cache_and_evictions, test_chat_blocks_match,
         test_vllm_sha256_cbor_keys, test_bind_failure_stops_router,
         test_notification_source_per_pod_subscribers, test_speculative_indexing])

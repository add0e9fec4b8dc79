"""tandem sim --kv-events-config: KV events on a ZMQ PUB socket, read back by
build-test/kvev_sub (a C subscriber printing JSON lines; the system Python has no zmq)."""

import hashlib
import json
import os
import socket
import subprocess
import threading
import time

from harness import TANDEM, free_port, metric, post, run, start_sim

SUB = os.path.join(os.path.dirname(os.path.abspath(TANDEM)), "kvev_sub")


class Sub:
    """kvev_sub on a thread: every decoded batch lands in self.batches."""

    def __init__(self, endpoint, topic=""):
        self.p = subprocess.Popen([SUB, endpoint, topic, "120"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.batches = []
        self.errors = []
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.wait(lambda: self.ready, "subscriber ready")

    ready = False

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode().strip()
            with self.cond:
                if line == "ready":
                    self.ready = True
                elif line.startswith("{"):
                    d = json.loads(line)
                    (self.errors if "error" in d else self.batches).append(d)
                else:
                    self.errors.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait(self, fn, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not fn():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; batches=%r errors=%r" %
                                         (what, self.batches[-5:], self.errors))
                self.cond.wait(min(left, 0.2))

    def events(self, since=0, kind=None):
        with self.cond:
            return [e for b in self.batches[since:] for e in b["events"]
                    if kind is None or e["type"] == kind]

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def kv_cfg(port, topic="kv@sim@m", **extra):
    c = {"enable_kv_cache_events": True, "publisher": "zmq",
         "endpoint": "tcp://*:%d" % port, "topic": topic}
    c.update(extra)
    return json.dumps(c)


def complete(port, prompt, max_tokens=1, headers=None):
    r = post(port, "/v1/completions", {"prompt": prompt, "max_tokens": max_tokens,
                                       "ignore_eos": True}, headers=headers)
    assert r.status == 200, r.body
    return r.json()


def joined(sim, sub, tag, headers=None):
    """ZMQ drops what a PUB sends before the SUB's connection is up (the slow joiner):
    send distinct prompts until one's events arrive. Returns the batch count then."""
    deadline = time.monotonic() + 10
    i = 0
    while time.monotonic() < deadline:
        complete(sim.port, " ".join("%s%d_%d" % (tag, i, k) for k in range(40)), headers=headers)
        i += 1
        try:
            sub.wait(lambda: sub.batches, "first batch", timeout=0.3)
            with sub.cond:
                return len(sub.batches)
        except AssertionError:
            continue
    raise AssertionError("no KV events reached the subscriber")


def test_request_stores_its_full_blocks():
    zport = free_port()
    s = start_sim("--model", "m", "--profile", "fast", "--block-size", "16",
                  "--kv-events-config", kv_cfg(zport))
    sub = Sub("tcp://127.0.0.1:%d" % zport, "kv@")
    mark = joined(s, sub, "warm")
    out = complete(s.port, " ".join("alpha%d" % k for k in range(150)))
    n_prompt = out["usage"]["prompt_tokens"]
    want = n_prompt // 16  # full prompt blocks; the one sampled token never gets KV
    assert want >= 5, n_prompt
    sub.wait(lambda: sum(len(e["block_hashes"]) for e in sub.events(mark, "BlockStored")) >= want,
             "%d stored blocks" % want)
    stored = sub.events(mark, "BlockStored")
    assert sum(len(e["block_hashes"]) for e in stored) == want, stored
    assert stored[0]["parent_block_hash"] is None  # the prompt's first block
    prev = None
    for e in stored:
        assert e["block_size"] == 16
        assert len(e["token_ids"]) == 16 * len(e["block_hashes"])
        assert e["medium"] == "GPU"
        if prev is not None:
            assert e["parent_block_hash"] == prev, (e, prev)  # the chain continues
        prev = e["block_hashes"][-1]
    b = sub.batches[-1]
    assert b["topic"] == "kv@sim@m" and b["dp_rank"] == 0, b
    # The same prompt again is a cache hit: nothing new is stored.
    n_before = len(sub.events(mark, "BlockStored"))
    complete(s.port, " ".join("alpha%d" % k for k in range(150)))
    complete(s.port, " ".join("beta%d" % k for k in range(40)))  # a marker that stores
    sub.wait(lambda: len(sub.events(mark, "BlockStored")) > n_before, "marker")
    new = sub.events(mark, "BlockStored")[n_before:]
    hashes = {h for e in stored for h in e["block_hashes"]}
    assert not any(h in hashes for e in new for h in e["block_hashes"]), new
    total = sum(len(e["block_hashes"]) for e in sub.events(0))
    assert metric(s.port, "tandem_sim_kv_events_published_total") >= len(sub.events(0))
    assert total > 0 and not sub.errors, sub.errors
    sub.close()


def test_evictions_publish_block_removed():
    zport = free_port()
    # 24 blocks of 16 tokens: each ~10-block prompt evicts an older one's blocks.
    s = start_sim("--model", "m", "--profile", "fast", "--block-size", "16",
                  "--num-gpu-blocks", "24", "--max-model-len", "384",
                  "--kv-events-config", kv_cfg(zport))
    sub = Sub("tcp://127.0.0.1:%d" % zport)
    mark = joined(s, sub, "warm")
    for i in range(6):  # ~160 tokens (10 blocks) each
        complete(s.port, " ".join("p%d_%d" % (i, k) for k in range(40)))
    sub.wait(lambda: sub.events(mark, "BlockRemoved"), "BlockRemoved")
    stored = {h for e in sub.events(0, "BlockStored") for h in e["block_hashes"]}
    removed = [h for e in sub.events(0, "BlockRemoved") for h in e["block_hashes"]]
    assert removed and all(h in stored for h in removed), (len(removed), len(stored))
    assert len(set(removed)) == len(removed)  # a block is removed once
    assert all(e["medium"] == "GPU" for e in sub.events(0, "BlockRemoved"))
    seqs = [b["seq"] for b in sub.batches]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    assert metric(s.port, "tandem_sim_kv_events_dropped_total") == 0
    sub.close()


def test_data_parallel_ranks_publish_on_offset_ports():
    zport = free_port()
    while True:  # rank 1 publishes on zport + 1 (vLLM's offset)
        try:
            with socket.socket() as t:
                t.bind(("127.0.0.1", zport + 1))
            break
        except OSError:
            zport = free_port()
    s = start_sim("--model", "m", "--profile", "fast", "--data-parallel-size", "2",
                  "--kv-events-config", kv_cfg(zport))
    sub1 = Sub("tcp://127.0.0.1:%d" % (zport + 1))
    sub0 = Sub("tcp://127.0.0.1:%d" % zport)
    joined(s, sub1, "r1", headers={"X-data-parallel-rank": "1"})
    joined(s, sub0, "r0", headers={"X-data-parallel-rank": "0"})
    assert all(b["dp_rank"] == 1 for b in sub1.batches), sub1.batches
    assert all(b["dp_rank"] == 0 for b in sub0.batches), sub0.batches
    sub0.close()
    sub1.close()


def test_bad_config_is_refused():
    for cfg, needle in (('{"enable_kv_cache_events": true, "bogus": 1}', "unknown field 'bogus'"),
                        ('{"enable_kv_cache_events": "yes"}', "'enable_kv_cache_events' must be"),
                        ('{"enable_kv_cache_events": true, "publisher": "kafka"}', "kafka"),
                        ('{"enable_kv_cache_events": true, "endpoint": "bogus"}', "bogus"),
                        ("not json", "--kv-events-config")):
        p = subprocess.run([TANDEM, "sim", "--port", "0", "--kv-events-config", cfg],
                           capture_output=True, timeout=20)
        assert p.returncode != 0, cfg
        assert needle in p.stderr.decode(), (cfg, p.stderr)


def test_disabled_publishes_nothing():
    zport = free_port()
    s = start_sim("--model", "m", "--profile", "fast", "--kv-events-config",
                  json.dumps({"enable_kv_cache_events": False, "endpoint": "tcp://*:%d" % zport}))
    complete(s.port, "hello there")
    assert metric(s.port, "tandem_sim_kv_events_published_total") is None


def _cbor_head(major, v):
    if v < 24:
        return bytes([major << 5 | v])
    for n, ai in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if v < 1 << (8 * n):
            return bytes([major << 5 | ai]) + v.to_bytes(n, "big")
    raise ValueError(v)


def vllm_block_digest(parent, tokens):
    """vLLM's sha256_cbor: SHA-256 of canonical CBOR (parent bytes, (tokens...), None)."""
    enc = (b"\x83" + _cbor_head(2, len(parent)) + parent + _cbor_head(4, len(tokens)) +
           b"".join(_cbor_head(0, t) for t in tokens) + b"\xf6")
    return hashlib.sha256(enc).digest()


def test_sha256_cbor_keys_on_the_wire():
    # --prefix-caching-hash-algo sha256_cbor + PYTHONHASHSEED: every BlockStored key is
    # the low 64 bits of vLLM's digest chain, recomputed here from the event's token ids
    zport = free_port()
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        s = start_sim("--model", "m", "--profile", "fast", "--block-size", "16",
                      "--num-gpu-blocks", "24", "--max-model-len", "384",
                      "--prefix-caching-hash-algo", "sha256_cbor",
                      "--kv-events-config", kv_cfg(zport))
    finally:
        del os.environ["PYTHONHASHSEED"]
    sub = Sub("tcp://127.0.0.1:%d" % zport)
    mark = joined(s, sub, "warm")
    for i in range(6):  # ~10 blocks each in a 24-block cache: evictions too
        complete(s.port, " ".join("q%d_%d" % (i, k) for k in range(40)))
    sub.wait(lambda: sub.events(mark, "BlockRemoved"), "BlockRemoved")
    seed = "0".encode()
    digest = {}  # 64-bit key -> 32-byte digest
    checked = 0
    for e in sub.events(0, "BlockStored"):
        if e["parent_block_hash"] is None:
            d = hashlib.sha256(_cbor_head(3, len(seed)) + seed).digest()
        elif e["parent_block_hash"] in digest:
            d = digest[e["parent_block_hash"]]
        else:
            continue  # parent announced before the subscriber joined
        toks = e["token_ids"]
        for i, h in enumerate(e["block_hashes"]):
            d = vllm_block_digest(d, toks[16 * i:16 * (i + 1)])
            assert h == int.from_bytes(d[24:], "big"), (i, e)
            digest[h] = d
            checked += 1
    assert checked >= 50, checked
    removed = [h for e in sub.events(0, "BlockRemoved") for h in e["block_hashes"]]
    # evictions name vLLM keys too (blocks stored before the join may be among them)
    assert sum(h in digest for h in removed) >= 10, (len(removed), removed)
    sub.close()



if __name__ == "__main__":
    run([test_request_stores_its_full_blocks, test_evictions_publish_block_removed,
         test_sha256_cbor_keys_on_the_wire,
         test_data_parallel_ranks_publish_on_offset_ports, test_bad_config_is_refused,
         test_disabled_publishes_nothing])

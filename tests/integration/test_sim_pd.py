"""tandem sim: P/D over the NIXL kv_transfer_params protocol between two sim processes."""

import json
import threading

from harness import free_port, metric, post, run, sse_events, start_sim, stream, wait_until

PROMPT = " ".join("ctx%d" % i for i in range(600))
PREFILL_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False,
                  "remote_engine_id": None, "remote_block_ids": None,
                  "remote_host": None, "remote_port": None}


def prefill(p, extra=None):
    body = {"model": "m", "prompt": PROMPT, "max_tokens": 1, "max_completion_tokens": 1,
            "stream": False, "kv_transfer_params": PREFILL_PARAMS}
    body.update(extra or {})
    r = post(p.port, "/v1/completions", body, headers={"x-request-id": "pd-1"})
    assert r.status == 200, r.body
    return r.json()


def test_prefill_then_decode_pulls_the_blocks():
    p = start_sim("--model", "m", "--profile", "fast", "--pod-name", "prefill-0")
    d = start_sim("--model", "m", "--profile", "fast", "--pod-name", "decode-0")
    pj = prefill(p)
    kv = pj["kv_transfer_params"]
    assert kv["do_remote_prefill"] is True and kv["do_remote_decode"] is False
    for k in ("remote_engine_id", "remote_block_ids", "remote_request_id", "remote_host",
              "remote_port", "tp_size"):
        assert kv.get(k) is not None, (k, kv)
    assert kv["remote_host"] == "127.0.0.1" and kv["remote_port"] == p.port
    prompt_tokens = pj["usage"]["prompt_tokens"]
    assert len(kv["remote_block_ids"]) == (prompt_tokens + 1 + 15) // 16 or \
        len(kv["remote_block_ids"]) == (prompt_tokens + 15) // 16, (len(kv["remote_block_ids"]),
                                                                     prompt_tokens)
    assert pj["choices"][0]["finish_reason"] == "length"
    assert pj["usage"]["completion_tokens"] == 1
    # The blocks are pinned on P until the decoder pulls them.
    assert metric(p.port, "tandem_sim_kv_pinned_requests") == 1
    assert metric(p.port, "vllm:kv_cache_usage_perc") > 0

    status, _, raw, _ = stream(d.port, "/v1/completions", {
        "model": "m", "prompt": PROMPT, "max_tokens": 20, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}, "kv_transfer_params": kv},
        headers={"x-request-id": "pd-1"})
    assert status == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 20
    # The decoder reports the prompt as cached: it loaded it instead of computing it.
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"], usage
    assert metric(d.port, "tandem_sim_kv_pulls_total", result="ok") == 1
    # P released its pinned blocks when they were pulled.
    assert metric(p.port, "tandem_sim_kv_pinned_requests") == 0
    assert metric(p.port, "vllm:kv_cache_usage_perc") == 0
    assert p.wait_log(r"KV blocks pulled by", 5)
    # D computed no prompt tokens itself: its prefix-cache queries saw them as hits.
    assert metric(d.port, "tandem_sim_pd_fallbacks_total") is None


def test_missing_params_fall_back_to_local_prefill():
    d = start_sim("--model", "m", "--profile", "fast")
    r = post(d.port, "/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 3,
                                         "kv_transfer_params": {"do_remote_prefill": True}})
    assert r.status == 200, r.body
    assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert d.wait_log(r"WARN.*do_remote_prefill without a valid remote_host", 5)
    assert metric(d.port, "tandem_sim_pd_fallbacks_total", reason="invalid_params") == 1


def test_failed_pull_falls_back():
    d = start_sim("--model", "m", "--profile", "fast")
    dead = free_port()
    kv = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": "x",
          "remote_block_ids": [1, 2], "remote_request_id": "cmpl-gone",
          "remote_host": "127.0.0.1", "remote_port": dead, "tp_size": 1}
    r = post(d.port, "/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 3,
                                         "kv_transfer_params": kv})
    assert r.status == 200, r.body
    assert metric(d.port, "tandem_sim_pd_fallbacks_total", reason="pull_failed") == 1
    assert d.wait_log(r"KV pull from 127.0.0.1:%d failed" % dead, 5)


def test_pull_of_unknown_request_is_404_and_falls_back():
    p = start_sim("--model", "m", "--profile", "fast")
    d = start_sim("--model", "m", "--profile", "fast")
    kv = prefill(p)["kv_transfer_params"]
    r = post(p.port, "/kv/pull", {"remote_request_id": "cmpl-nope"})
    assert r.status == 404 and "no pinned KV" in r.json()["error"]["message"]
    kv2 = dict(kv, remote_request_id="cmpl-other")
    r = post(d.port, "/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 2,
                                         "kv_transfer_params": kv2})
    assert r.status == 200
    assert metric(d.port, "tandem_sim_pd_fallbacks_total", reason="pull_failed") == 1


def test_hold_timeout_releases_blocks():
    p = start_sim("--model", "m", "--profile", "fast", "--kv-hold-timeout", "0.2")
    prefill(p)
    assert metric(p.port, "tandem_sim_kv_pinned_requests") == 1
    wait_until(lambda: metric(p.port, "tandem_sim_kv_pinned_requests") == 0, 5,
               what="pin to expire")
    assert metric(p.port, "tandem_sim_kv_pulls_total", result="expired") == 1
    assert metric(p.port, "vllm:kv_cache_usage_perc") == 0


def blocked_request_is_served_when_pin_goes(release):
    # 8 blocks: a pinned 119-token prefill holds all of them, so the next request waits
    # at the head of the queue with the engine idle. Releasing the pin (a pull, or the
    # hold timeout) must restart the engine; nothing else will.
    p = start_sim("--model", "m", "--profile", "fast", "--num-gpu-blocks", "8",
                  "--max-model-len", "128", "--kv-hold-timeout", "1.5")
    prompt = " ".join("w%d" % i for i in range(59))  # 1 + 59*2 = 119 tokens
    kv = post(p.port, "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": 1,
                                          "kv_transfer_params": PREFILL_PARAMS}).json()
    kv = kv["kv_transfer_params"]
    assert len(kv["remote_block_ids"]) == 8, kv
    result = {}

    def waiting():
        result["r"] = post(p.port, "/v1/completions",
                           {"model": "m", "prompt": "a b c d e f g h i j k l m n o p q r s",
                            "max_tokens": 2}, timeout=10)

    t = threading.Thread(target=waiting)
    t.start()
    wait_until(lambda: metric(p.port, "vllm:num_requests_waiting") == 1, 5, what="queued")
    release(p, kv)
    t.join(8)
    assert "r" in result and result["r"].status == 200, result


def test_pull_restarts_a_waiting_request():
    blocked_request_is_served_when_pin_goes(
        lambda p, kv: post(p.port, "/kv/pull", {"remote_request_id": kv["remote_request_id"],
                                                "remote_engine_id": kv["remote_engine_id"]}))


def test_hold_timeout_restarts_a_waiting_request():
    blocked_request_is_served_when_pin_goes(lambda p, kv: None)


def test_reused_request_ids_get_distinct_pins():
    p = start_sim("--model", "m", "--profile", "fast")
    a = prefill(p)["kv_transfer_params"]
    b = prefill(p)["kv_transfer_params"]  # same x-request-id: pd-1
    assert a["remote_request_id"] != b["remote_request_id"]
    assert metric(p.port, "tandem_sim_kv_pinned_requests") == 2
    r = post(p.port, "/kv/pull", {"remote_request_id": a["remote_request_id"]})
    assert r.status == 200 and r.json()["blocks"] == len(a["remote_block_ids"])
    assert metric(p.port, "tandem_sim_kv_pinned_requests") == 1
    r = post(p.port, "/kv/pull", {"remote_request_id": b["remote_request_id"],
                                  "remote_engine_id": 5})
    assert r.status == 400, r.body
    r = post(p.port, "/kv/pull", {"remote_request_id": b["remote_request_id"]})
    assert r.status == 200 and metric(p.port, "tandem_sim_kv_pinned_requests") == 0


def test_streaming_prefill_is_rejected():
    p = start_sim("--model", "m", "--profile", "fast")
    r = post(p.port, "/v1/completions", {"model": "m", "prompt": "x", "stream": True,
                                         "kv_transfer_params": PREFILL_PARAMS})
    assert r.status == 400 and "stream" in r.json()["error"]["message"]


if __name__ == "__main__":
    run([test_prefill_then_decode_pulls_the_blocks,
         test_missing_params_fall_back_to_local_prefill, test_failed_pull_falls_back,
         test_pull_of_unknown_request_is_404_and_falls_back, test_hold_timeout_releases_blocks,
         test_streaming_prefill_is_rejected, test_pull_restarts_a_waiting_request,
         test_hold_timeout_restarts_a_waiting_request, test_reused_request_ids_get_distinct_pins])

"""tandem sim: bad input never crashes or hangs it; faults can be injected on purpose."""

import json
import socket
import subprocess
import threading
import time

from harness import (TANDEM, free_port, get, metric, post, request, run, start_sim, stream,
                     wait_until)


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes, returns everything the server sends before closing (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def healthy(port):
    return post(port, "/v1/completions", {"prompt": "still alive?", "max_tokens": 2}).status == 200


def test_garbage_and_malformed_http():
    s = start_sim("--profile", "fast")
    for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"):
        out = raw_exchange(s.port, junk)
        assert out.startswith(b"HTTP/1.1 400"), (junk, out[:100])
    assert healthy(s.port)


def test_bad_json_types_and_utf8():
    s = start_sim("--profile", "fast")
    bodies = [b'{"prompt": "\xff\xfe"}', b'{"prompt": ["a", 1]}', b'{"prompt": [[1, -2]]}',
              b'{"prompt": "x", "max_tokens": 1e400}', b'{"messages": "hi"}', b'null',
              b'{"prompt": "x", "logprobs": 99}', b'{"prompt": {"a": 1}}', b'',
              b'{"prompt": "x", "stop": "x", "stream_options": 5}']
    for b in bodies:
        for path in ("/v1/completions", "/v1/chat/completions"):
            r = post(s.port, path, b)
            assert r.status == 400, (path, b, r.status, r.body)
            assert "error" in r.json()
    assert healthy(s.port)


def test_huge_body_is_413():
    s = start_sim("--profile", "fast", "--max-body-bytes", "65536")
    r = post(s.port, "/v1/completions", {"prompt": "x" * 100000})
    assert r.status == 413, r.status
    # A declared-but-huge Content-Length is refused before the body arrives.
    out = raw_exchange(s.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 999999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413"), out[:80]
    assert healthy(s.port)


def test_slow_client_is_timed_out_and_others_are_served():
    s = start_sim("--profile", "fast", "--read-timeout-ms", "300")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
    # Meanwhile others are served.
    assert healthy(s.port)
    t0 = time.monotonic()
    data = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        data += b
    c.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:80]
    assert time.monotonic() - t0 < 3


def test_disconnect_mid_stream_frees_the_sequence():
    s = start_sim("--profile", "fast", "--time-scale", "20")
    aborted0 = metric(s.port, "vllm:request_success_total", finished_reason="abort") or 0
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    body = json.dumps({"prompt": "tell me everything", "max_tokens": 3000, "ignore_eos": True,
                       "stream": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data: ") < 5:
        got += c.recv(4096)
    assert metric(s.port, "vllm:num_requests_running") == 1
    c.close()  # abrupt: no more reads
    wait_until(lambda: metric(s.port, "vllm:num_requests_running") == 0, 5,
               what="aborted sequence to leave the engine")
    assert metric(s.port, "vllm:kv_cache_usage_perc") == 0
    assert metric(s.port, "vllm:request_success_total", finished_reason="abort") == aborted0 + 1
    assert healthy(s.port)


def test_many_clients_disconnecting_at_once():
    s = start_sim("--profile", "fast", "--time-scale", "100")  # 500 tokens take ~4 s
    socks = []
    body = json.dumps({"prompt": "x", "max_tokens": 500, "ignore_eos": True,
                       "stream": True}).encode()
    for _ in range(50):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        socks.append(c)
    wait_until(lambda: metric(s.port, "vllm:num_requests_running") == 50, 5,
               what="50 running")
    for c in socks:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
    wait_until(lambda: metric(s.port, "vllm:num_requests_running") == 0, 5, what="all aborted")
    assert healthy(s.port)


def test_fault_header_kinds():
    s = start_sim("--profile", "fast", "--time-scale", "5", "--fault-slow-ms", "100")
    r = post(s.port, "/v1/completions", {"prompt": "x"}, headers={"x-fault": "error-503"})
    assert r.status == 503 and "injected" in r.json()["error"]["message"]
    r = post(s.port, "/v1/completions", {"prompt": "x"}, headers={"x-fault": "error-429"})
    assert r.status == 429 and r.json()["error"]["type"] == "RateLimitError"
    # close-after-N-tokens: the stream stops without [DONE].
    status, _, raw, _ = stream(s.port, "/v1/completions",
                               {"prompt": "x", "max_tokens": 50, "ignore_eos": True,
                                "stream": True}, headers={"x-fault": "close-after-3-tokens"})
    assert b"[DONE]" not in raw and raw.count(b"data: ") >= 3
    # hang: never answered; the client gives up, the sim carries on.
    try:
        post(s.port, "/v1/completions", {"prompt": "x"}, headers={"x-fault": "hang"},
             timeout=0.3)
        assert False, "hang fault answered"
    except (socket.timeout, TimeoutError):
        pass
    # slow: answered, later than usual (100 ms x time-scale 5).
    t0 = time.monotonic()
    r = post(s.port, "/v1/completions", {"prompt": "x", "max_tokens": 1},
             headers={"x-fault": "slow"})
    assert r.status == 200 and time.monotonic() - t0 >= 0.45
    r = post(s.port, "/v1/completions", {"prompt": "x"}, headers={"x-fault": "explode"})
    assert r.status == 400 and "x-fault" in r.json()["error"]["message"]
    assert metric(s.port, "tandem_sim_faults_injected_total", kind="error-503") == 1
    assert healthy(s.port)


def test_fault_header_junk_keeps_metrics_valid():
    s = start_sim("--profile", "fast")
    body = b'{"prompt":"x"}'
    out = raw_exchange(s.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                               b"x-fault: \xff\xfe{junk}\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(body), body), timeout=2)
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    m = get(s.port, "/metrics").body
    m.decode("utf-8")  # must stay valid UTF-8
    assert b"junk" not in m
    # An unknown fault is an error, not an injected fault.
    assert metric(s.port, "tandem_sim_faults_injected_total") is None


def test_huge_max_tokens_is_a_clean_400():
    s = start_sim("--profile", "fast")
    for v in (9223372036854775807, 2**62, 10**12):
        r = post(s.port, "/v1/completions", {"prompt": "hi", "max_tokens": v})
        assert r.status == 400 and "maximum context length" in r.json()["error"]["message"]
        assert "-" not in r.json()["error"]["message"].split("requested")[1].split("tokens")[0]
    r = post(s.port, "/v1/completions", {"prompt": "hi", "max_tokens": 2, "min_tokens": 5})
    assert r.status == 400 and r.json()["error"]["param"] == "min_tokens"
    assert healthy(s.port)


def test_bad_fault_and_timeout_flags():
    for args, needle in ((["--failure-types", ","], "--failure-types"),
                         (["--kv-hold-timeout", "-1"], "--kv-hold-timeout"),
                         (["--fault-slow-ms", "-5"], "--fault-slow-ms"),
                         (["--failure-rate", "2"], "--failure-rate")):
        out = subprocess.run([TANDEM, "sim", "--port", "0"] + args, capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)


def test_failure_rate():
    s = start_sim("--profile", "fast", "--failure-rate", "1", "--failure-types", "429")
    for _ in range(5):
        assert post(s.port, "/v1/completions", {"prompt": "x"}).status == 429
    s2 = start_sim("--profile", "fast", "--failure-rate", "0.5", "--failure-types", "500,503")
    codes = [post(s2.port, "/v1/completions", {"prompt": "x"}).status for _ in range(60)]
    assert set(codes) <= {200, 500, 503} and 5 < codes.count(200) < 55, codes


def test_admin_fault_modes():
    s = start_sim("--profile", "fast")
    assert post(s.port, "/admin/fault", {"mode": "refuse"}).status == 200
    assert post(s.port, "/v1/completions", {"prompt": "x"}).status == 503
    assert get(s.port, "/health").status == 503
    assert post(s.port, "/admin/fault", {"mode": "healthy"}).status == 200
    assert get(s.port, "/health").status == 200 and healthy(s.port)
    assert post(s.port, "/admin/fault", {"mode": "bogus"}).status == 400
    assert post(s.port, "/admin/fault", {"mode": "die"}).status == 200
    s.p.wait(5)
    assert s.p.returncode == 1


def test_port_in_use_is_a_clear_error():
    s = start_sim("--profile", "fast")
    out = subprocess.run([TANDEM, "sim", "--host", "127.0.0.1", "--port", str(s.port)],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "cannot listen" in out.stderr, out.stderr


if __name__ == "__main__":
    run([test_garbage_and_malformed_http, test_bad_json_types_and_utf8, test_huge_body_is_413,
         test_slow_client_is_timed_out_and_others_are_served,
         test_disconnect_mid_stream_frees_the_sequence, test_many_clients_disconnecting_at_once,
         test_fault_header_kinds, test_fault_header_junk_keeps_metrics_valid,
         test_huge_max_tokens_is_a_clean_400, test_bad_fault_and_timeout_flags,
         test_failure_rate, test_admin_fault_modes,
         test_port_in_use_is_a_clear_error])

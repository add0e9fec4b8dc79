"""A real benchmark client, inference-perf (Kubernetes SIG Serving's, pinned), for a short
constant-rate run against tandem router + two sims. Its report's request count and token
totals must equal what the sims counted themselves (vllm:request_success_total,
vllm:prompt_tokens_total, vllm:generation_tokens_total from their /metrics).

Its prompts come from its shared_prefix generator (llm-d's prefix-cache workload) with a
local word-level tokenizer (stack.word_tokenizer), so nothing is downloaded. Why
inference-perf and not guidellm: docs/decisions.md ("Real clients in CI")."""

import json
import os
import subprocess
import sys

import stack

N_TESTS = 2
if __name__ == "__main__":
    stack.bootstrap("inference-perf tests", N_TESTS)

from harness import run  # noqa: E402

from stack import MODEL  # noqa: E402

RATE, DURATION = 8, 2  # requests per second, seconds: 16 requests
OUTPUT_LEN = 8


def config(base, tokenizer, out, api_type, streaming):
    return {
        "api": {"type": api_type, "streaming": streaming},
        "data": {"type": "shared_prefix", "shared_prefix": {
            "num_groups": 2, "num_prompts_per_group": 4, "system_prompt_len": 48,
            "question_len": 12, "output_len": OUTPUT_LEN, "seed": 7}},
        "load": {"type": "constant", "stages": [{"rate": RATE, "duration": DURATION}],
                 "num_workers": 0, "request_timeout": 30},
        "server": {"type": "vllm", "model_name": MODEL, "base_url": base,
                   "ignore_eos": True},
        "tokenizer": {"pretrained_model_name_or_path": tokenizer},
        "report": {"request_lifecycle": {"summary": True, "per_stage": False,
                                         "per_request": False}},
        "storage": {"local_storage": {"path": out}},
    }


def summary(stdout):
    """The summary report inference-perf prints between its START/END markers."""
    a = stdout.index("=== START_SUMMARY ===") + len("=== START_SUMMARY ===")
    return json.loads(stdout[a:stdout.index("=== END_SUMMARY ===")])


def check_run(api_type, streaming):
    router, sims = stack.stack(2)
    before = stack.sim_totals(sims)
    work = stack.tmpdir("tandem-inference-perf-")
    tok = stack.word_tokenizer(os.path.join(work, "tokenizer"))
    cfg = os.path.join(work, "config.json")  # YAML is a superset of JSON
    with open(cfg, "w") as f:
        json.dump(config(router.base, tok, os.path.join(work, "reports"), api_type,
                         streaming), f)
    r = subprocess.run([os.path.join(sys.prefix, "bin", "inference-perf"), "--config_file",
                        cfg], cwd=work, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, "inference-perf failed (%d):\n%s\n%s" % (
        r.returncode, r.stdout[-3000:], r.stderr[-5000:])
    s = summary(r.stdout)
    after = stack.sim_totals(sims)
    got = {k: after[k] - before[k] for k in after}

    ok = s["successes"]
    n = ok["count"]
    # A constant-rate stage sends about rate x duration requests; every one succeeded.
    assert RATE * DURATION - 2 <= n <= RATE * DURATION, s["load_summary"]
    assert s["load_summary"]["count"] == n and s["failures"]["count"] == 0, s["failures"]
    assert got["vllm:request_success_total"] == n, (got, n)
    # Its token totals are the server's usage (no client-side fallback), and equal the
    # sims' own counters.
    assert ok["client_fallback_requests"] == {"prompt": 0, "output": 0}, ok
    prompt_total = ok["prompt_tokens"]["total"]
    output_total = ok["output_tokens"]["total"]
    assert got["vllm:prompt_tokens_total"] == prompt_total, (got, prompt_total)
    assert got["vllm:generation_tokens_total"] == output_total, (got, output_total)
    assert output_total == n * OUTPUT_LEN, (output_total, n)  # ignore_eos: exactly that
    # Shared prefixes: later prompts of a group hit the prefix cache (usage's
    # prompt_tokens_details.cached_tokens, which the sims report by default).
    assert 0 < ok["prompt_tokens"]["cached"] < prompt_total, ok["prompt_tokens"]
    return s


def test_completions_streaming():
    check_run("completion", True)


def test_chat_non_streaming():
    check_run("chat", False)


TESTS = [test_completions_streaming, test_chat_non_streaming]

if __name__ == "__main__":
    assert len(TESTS) == N_TESTS
    only = sys.argv[1:]
    run([t for t in TESTS if not only or t.__name__ in only])

"""The stock OpenAI JavaScript client (npm `openai`, test-only) talks to tandem sim:
non-streaming and streaming completions and chat, usage chunks, and error bodies are all
parsed by the library itself, not by our own SSE code."""

import json
import os
import shutil
import subprocess
import sys

from harness import run, start_sim

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "openai-client")


def ensure_client():
    """Installs the pinned client once into openai-client/node_modules (git-ignored)."""
    if os.path.isdir(os.path.join(CLIENT, "node_modules", "openai")):
        return
    npm = shutil.which("npm")
    assert npm, "npm is missing: run scripts/deps.sh"
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--legacy-peer-deps",
                        "--no-save"], cwd=CLIENT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, "npm install failed:\n" + r.stdout + r.stderr


def test_openai_js_client():
    ensure_client()
    s = start_sim("--model", "facebook/opt-125m", "--profile", "fast")
    r = subprocess.run(["node", os.path.join(CLIENT, "client.mjs"),
                        "http://127.0.0.1:%d/v1" % s.port, "facebook/opt-125m"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    c = out["completion"]
    assert c["object"] == "text_completion" and c["id"].startswith("cmpl-") and c["text"]
    assert c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + \
        c["usage"]["completion_tokens"]
    chat = out["chat_stream"]
    assert chat["roles"] == ["assistant"], chat
    assert chat["finish"] == "length" and chat["content"]
    assert chat["usage"]["completion_tokens"] == 6
    assert chat["chunks"] == 1 + 6 + 1, chat  # role, tokens (the last one finishes), usage
    assert out["completion_stream"]["text"]
    e = out["error"]
    assert e and e["status"] == 400 and "max_tokens" in e["message"], e


if __name__ == "__main__":
    if not shutil.which("node"):
        print("node is missing: run scripts/deps.sh", file=sys.stderr)
        sys.exit(1)
    run([test_openai_js_client])

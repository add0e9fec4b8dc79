"""lm-eval (EleutherAI's harness, pinned) against tandem router + sims, on the local task
files in tests/clients/tasks/ (no dataset download, no hub tokenizer):

- tandem_mc, a loglikelihood multiple-choice task, with `--model local-completions`.
  lm-eval needs a tokenizer for loglikelihood (to know where the continuation starts);
  it gets a byte-level one built here (stack.byte_tokenizer: token id = UTF-8 byte) and
  sends token-id prompts with echo + logprobs. The test scores every choice itself by
  asking a sim directly (echo, max_tokens 0, logprobs) and requires lm-eval's acc and
  acc_norm to equal the ones computed from those logprobs.
- tandem_gen, a generate_until task with stop sequences (`until`), with
  `--model local-completions` and `--model local-chat-completions`, string prompts
  (tokenizer_backend=None), against sims in echo mode; exact_match must equal the one
  computed from the sim's own answers (and the 3 of 5 the task file is built for).
"""

import glob
import json
import os
import subprocess
import sys

import stack

N_TESTS = 4
if __name__ == "__main__":
    stack.bootstrap("lm-eval tests", N_TESTS)

from harness import post, run  # noqa: E402

from stack import MODEL  # noqa: E402

TASKS = os.path.join(stack.HERE, "tasks")


def docs(name):
    with open(os.path.join(TASKS, name + ".jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def lm_eval(model, model_args, task, *extra):
    """Runs the lm_eval CLI; returns (results, samples) from its output files."""
    out = stack.tmpdir("tandem-lm-eval-")
    env = dict(os.environ, HF_DATASETS_CACHE=os.path.join(out, "hf-datasets"),
               HF_HOME=os.path.join(out, "hf-home"))
    cmd = [os.path.join(sys.prefix, "bin", "lm_eval"), "run", "--model", model,
           "--model_args", ",".join("%s=%s" % kv for kv in model_args.items()),
           "--tasks", task, "--include_path", TASKS, "--output_path", out,
           "--log_samples", "--batch_size", "1", "--seed", "1234"] + list(extra)
    # cwd: the task files name their data files relative to it.
    r = subprocess.run(cmd, cwd=TASKS, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "lm_eval failed (%d):\n%s\n%s" % (
        r.returncode, r.stdout[-3000:], r.stderr[-6000:])
    res = glob.glob(os.path.join(out, "**", "results_*.json"), recursive=True)
    smp = glob.glob(os.path.join(out, "**", "samples_%s_*.jsonl" % task), recursive=True)
    assert len(res) == 1 and len(smp) == 1, (res, smp, r.stdout[-2000:])
    with open(res[0]) as f:
        results = json.load(f)["results"][task]
    with open(smp[0]) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    return results, samples


# --- loglikelihood ---------------------------------------------------------------------

def continuation_logprob(sim, encode, context, continuation):
    """The sim's own score of continuation after context, tokenized as lm-eval does
    (the whole text encoded, the context's length cut off); echo + max_tokens 0 returns
    the prompt's logprobs and nothing else (vLLM)."""
    ctx = encode(context)
    ids = encode(context + continuation)
    assert ids[:len(ctx)] == ctx, (ctx, ids)
    r = post(sim.port, "/v1/completions", {"model": MODEL, "prompt": ids, "max_tokens": 0,
                                           "echo": True, "logprobs": 1, "temperature": 0})
    assert r.status == 200, (r.status, r.body[:300])
    lp = r.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert len(lp) == len(ids), (len(lp), len(ids))
    return sum(lp[len(ctx):])


def argmax(xs):
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first of equals, as numpy


def check_multiple_choice(model_args, encode):
    """Runs tandem_mc with local-completions; lm-eval's per-choice loglikelihoods, acc
    and acc_norm must equal the ones computed here from the sims' logprobs."""
    router, sims = stack.stack(2)
    args = {"model": MODEL, "base_url": router.base + "/v1/completions",
            "num_concurrent": 1, "max_retries": 1, "max_length": 4096}
    args.update(model_args)
    results, samples = lm_eval("local-completions", args, "tandem_mc")

    acc = acc_norm = 0
    expected_ll = {}
    ds = docs("tandem_mc")
    for i, d in enumerate(ds):
        context = "Question: %s\nAnswer:" % d["question"]
        # Alternate sims: every sim must score the same prompt the same way.
        lls = [continuation_logprob(sims[i % 2], encode(sims[0]), context, " " + c)
               for c in d["choices"]]
        expected_ll[i] = lls
        acc += argmax(lls) == d["answer"]
        acc_norm += argmax([ll / len(c) for ll, c in zip(lls, d["choices"])]) == d["answer"]
    acc /= len(ds)
    acc_norm /= len(ds)

    # Per document first: lm-eval's loglikelihood of every choice is the sim's.
    assert len(samples) == len(ds), len(samples)
    for s in samples:
        got = [float(resp[0][0]) for resp in s["resps"]]  # logged as strings
        want = expected_ll[s["doc_id"]]
        d = ds[s["doc_id"]]
        assert s["arguments"]["gen_args_0"]["arg_0"] == "Question: %s\nAnswer:" % d["question"]
        assert all(abs(g - w) < 1e-6 for g, w in zip(got, want)), (s["doc_id"], got, want)
    assert results["acc,none"] == acc, (results, acc)
    assert results["acc_norm,none"] == acc_norm, (results, acc_norm)


def test_loglikelihood_multiple_choice():
    """With a local tokenizer whose ids are UTF-8 bytes: lm-eval sends token-id prompts."""
    tok = stack.byte_tokenizer(stack.tmpdir("tandem-tok-"))
    check_multiple_choice({"tokenizer_backend": "huggingface", "tokenizer": tok,
                           "tokenized_requests": True},
                          lambda sim: lambda text: list(text.encode()))


def sim_tokenize(sim):
    def encode(text):
        r = post(sim.port, "/tokenize", {"model": MODEL, "prompt": text,
                                         "add_special_tokens": False})
        assert r.status == 200, r.body[:300]
        return r.json()["tokens"]
    return encode


def test_loglikelihood_remote_tokenizer():
    """lm-eval with no tokenizer argument at all, as against vLLM started with
    --enable-tokenizer-info-endpoint: it finds /tokenizer_info next to base_url and
    tokenizes through the server's /tokenize."""
    check_multiple_choice({}, sim_tokenize)


# --- generate_until --------------------------------------------------------------------

GEN = docs("tandem_gen")
UNTIL = [".", "\n"]


def expected_exact_match(sim, chat):
    hits = 0
    for d in GEN:
        body = {"model": MODEL, "max_tokens": 48, "temperature": 0, "stop": UNTIL,
                "seed": 1234, "ignore_eos": True}
        if chat:
            body["messages"] = [{"role": "user", "content": d["prompt"]}]
            r = post(sim.port, "/v1/chat/completions", body)
            text = r.json()["choices"][0]["message"]["content"]
        else:
            body["prompt"] = d["prompt"]
            r = post(sim.port, "/v1/completions", body)
            text = r.json()["choices"][0]["text"]
        assert r.status == 200, r.body[:300]
        hits += text == d["answer"]
    return hits / len(GEN)


def check_generate(model, path, chat):
    router, sims = stack.stack(2, ("--mode", "echo"))
    extra = ("--apply_chat_template",) if chat else ()
    results, samples = lm_eval(model, {
        "model": MODEL, "base_url": router.base + path, "tokenizer_backend": "None",
        "tokenized_requests": False, "num_concurrent": 1, "max_retries": 1},
        "tandem_gen", *extra)
    assert len(samples) == len(GEN), len(samples)
    want = expected_exact_match(sims[0], chat)
    assert results["exact_match,none"] == want, (results, want, [
        (s["doc_id"], s["filtered_resps"]) for s in samples])
    # The task file is built so that echo + `until` answers 3 of its 5 documents.
    assert want == 0.6, want


def test_generate_until_completions():
    check_generate("local-completions", "/v1/completions", chat=False)


def test_generate_until_chat():
    check_generate("local-chat-completions", "/v1/chat/completions", chat=True)


TESTS = [test_loglikelihood_multiple_choice, test_loglikelihood_remote_tokenizer,
         test_generate_until_completions,
         test_generate_until_chat]

if __name__ == "__main__":
    assert len(TESTS) == N_TESTS
    only = sys.argv[1:]
    run([t for t in TESTS if not only or t.__name__ in only])

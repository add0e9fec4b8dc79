"""Shared setup of the real-client tests: the pinned venv, a router + sims stack, the sims'
counters, and small local tokenizers so that no client fetches anything from a hub.

Each tests/clients/test_*.py calls bootstrap() first: under a plain python3 (ctest, or a
person) it builds or finds the cached venv (setup-venv.sh) and re-runs the file with the
venv's interpreter; without one (no Python >= 3.12, PyPI unreachable) it prints one SKIP
line and exits 0, or fails under CI=true.
"""

import atexit
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("TANDEM_BIN", os.path.join(SRC, "build-test", "tandem"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import harness  # noqa: E402  (needs TANDEM_BIN set first)
from harness import Proc, free_port, get, metric, start_sim, wait_until  # noqa: E402,F401

MODEL = "tandem-sim"


def bootstrap(what, n_tests):
    """Re-executes the calling test file under the venv's python (building the venv
    once); returns when already there. Also makes every Hugging Face library offline."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[k] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # "PyTorch was not found"
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    venv = os.environ.get("TANDEM_CLIENTS_VENV")
    if venv and os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return venv
    r = harness.run_setup([os.path.join(HERE, "setup-venv.sh")], what, n_tests)
    venv = r.stdout.strip().splitlines()[-1]
    py = os.path.join(venv, "bin", "python")
    os.environ["TANDEM_CLIENTS_VENV"] = venv
    sys.stdout.flush()
    os.execv(py, [py, os.path.abspath(sys.argv[0])] + sys.argv[1:])


def tmpdir(prefix):
    """A temporary folder removed when the test file exits."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


# --- the stack -------------------------------------------------------------------------

def start_sims(n, *extra):
    """n fast sims serving MODEL, named decode-0..; extra flags go to each."""
    out = []
    for i in range(n):
        name = "decode-%d" % i
        s = start_sim("--model", MODEL, "--profile", "fast", "--pod-name", name, *extra)
        s.name = name
        out.append(s)
    return out


def start_router(backends, *extra):
    port = free_port()
    args = ["router", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--workers", "2", "--refresh-metrics-interval", "20", "--enable-debug-endpoints"]
    for b in backends:
        args += ["--endpoint", "name=%s,addr=127.0.0.1:%d" % (b.name, b.port)]
    args += list(extra)
    p = Proc(args, r"tandem router ready on", 20)
    p.port = port
    p.base = "http://127.0.0.1:%d" % port
    wait_until(lambda: get(port, "/ready").status == 200, 10, what="router ready")
    wait_until(lambda: all(e["healthy"] for e in
                           get(port, "/debug/endpoints").json()["endpoints"]),
               10, what="every endpoint healthy")
    return p


def stack(n_sims=2, sim_flags=()):
    """A router in front of n sims; returns (router, sims). The harness stops them after
    each test."""
    sims = start_sims(n_sims, *sim_flags)
    return start_router(sims), sims


SIM_COUNTERS = ("vllm:request_success_total", "vllm:prompt_tokens_total",
                "vllm:generation_tokens_total")


def sim_totals(sims):
    """{counter: sum over sims (and over every label set)} for SIM_COUNTERS."""
    return {c: sum(metric(s.port, c) or 0.0 for s in sims) for c in SIM_COUNTERS}


# --- local tokenizers (no hub) ---------------------------------------------------------

def _bytes_to_unicode():
    # GPT-2's printable stand-ins for the 256 byte values (the ByteLevel alphabet).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


EOS = "<|endoftext|>"


def byte_tokenizer(path):
    """Saves a Hugging Face fast tokenizer to path whose token ids are the UTF-8 bytes of
    the text (id 256 is EOS): lossless and prefix-stable, so a test can compute the ids
    lm-eval sends as list(text.encode())."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab[EOS] = 256
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   model_max_length=8192)
    fast.save_pretrained(path)
    return path


WORDS = ("the of and to in is that for it as with was on be by at this from or an are "
         "have not but had his they you were her she which one all their there been has "
         "when who will more no if out so said what up its about into than them can only "
         "other new some could time these two may then do first any my now such like our "
         "over man me even most made after also did many before must through back years "
         "where much your way well down should because each just those people how too "
         "little state good very make world still own see men work long get here between "
         "both life being under never day same another know while last might us great old "
         "year off come since against go came right used take three").split()


def word_tokenizer(path):
    """Saves a word-level tokenizer (whitespace-separated English words; id 0 is EOS) to
    path: random token ids decode to plain words that tokenize back to the same count,
    which benchmark clients need to build prompts of a given length."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {EOS: 0, "[UNK]": 1}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token="[UNK]",
                                   model_max_length=8192)
    fast.save_pretrained(path)
    return path

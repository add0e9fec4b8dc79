#!/usr/bin/env bash
# Seed 003's run-eval.sh on one machine: lm-eval's OpenAI-compatible completions client
# through the router started by start.sh.
#
# usage: run-eval.sh [TASK=tandem_mc] [CONCURRENCY=1] [LIMIT=100]   (env: ROUTER_PORT 10001)
# TASK is any lm-eval task. The default, tandem_mc (a multiple-choice loglikelihood
# task), and tandem_gen (generate_until with stop sequences) are small local tasks in
# tests/clients/tasks, so nothing is downloaded; hub tasks such as gsm8k, mmlu or
# hellaswag need Hugging Face access, as in the seed. lm_eval comes from the test venv
# (tests/clients/setup-venv.sh, which `make test` runs) unless one is on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
TASK="${1:-tandem_mc}"
CONCURRENCY="${2:-1}"
LIMIT="${3:-100}"
ROUTER_PORT="${ROUTER_PORT:-10001}"
MODEL=meta-llama/Llama-3.1-8B-Instruct
curl -fs "http://127.0.0.1:$ROUTER_PORT/health" >/dev/null ||
  { echo "run-eval.sh: no router on :$ROUTER_PORT: run start.sh first" >&2; exit 1; }
LM_EVAL="$(command -v lm_eval || true)"
if [ -z "$LM_EVAL" ]; then
  venv="$("$root/tests/clients/setup-venv.sh")" ||
    { echo "run-eval.sh: no lm_eval: pip install lm-eval, or run tests/clients/setup-venv.sh" >&2; exit 1; }
  LM_EVAL="$venv/bin/lm_eval"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" OPENAI_API_KEY="${OPENAI_API_KEY:-EMPTY}"
# tokenizer_backend=remote: as against vLLM, lm-eval reads the server's /tokenizer_info and
# tokenizes through /tokenize (the router passes both to an engine).
cd "$root/tests/clients/tasks" # the local tasks name their data files relative to it
exec "$LM_EVAL" run --model local-completions \
  --model_args "model=$MODEL,base_url=http://127.0.0.1:$ROUTER_PORT/v1/completions,num_concurrent=$CONCURRENCY,max_retries=3,tokenizer_backend=remote" \
  --include_path "$root/tests/clients/tasks" --tasks "$TASK" --limit "$LIMIT"

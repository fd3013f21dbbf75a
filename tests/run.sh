#!/usr/bin/env bash
# The test command: install, lint, run the test suite. Extra arguments go to
# pytest (e.g. `bash tests/run.sh -m slow` for the slow tests only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/.ci/setup-venv.sh"
cd "$ROOT"
"$PY" -m ruff check .
exec "$PY" -m pytest "$@"

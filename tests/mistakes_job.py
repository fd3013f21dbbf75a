"""Runs many ``mtkeras`` command lines in one process (TensorFlow imported once) and reports each one.

    python tests/mistakes_job.py CASES.json RESULTS.json

``CASES.json`` is a list of ``{"id", "argv", "cwd"}``; for each case the command runs as
``mtkeras.cli.main(argv)`` inside ``cwd`` and the result records the exit code, what it wrote to
stdout and stderr, whether an exception escaped ``main`` (a traceback a user would see) and every
file or folder under ``cwd`` that was not there before (what a failed command left behind).
Used by ``tests/test_mistakes.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback


def tree(root: str) -> set[str]:
    paths = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            paths.add(os.path.relpath(os.path.join(folder, name), root))
    return paths


def run_case(case: dict) -> dict:
    from mtkeras.cli import main

    before, here, started = tree(case["cwd"]), os.getcwd(), time.perf_counter()
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    os.chdir(case["cwd"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case["argv"])
            except SystemExit as stop:  # argparse, or a command that exits itself
                code = stop.code if isinstance(stop.code, int) else 1
                if not isinstance(stop.code, int | type(None)):
                    print(stop.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what a user would see as a traceback
                code, escaped = 1, traceback.format_exc()
    finally:
        os.chdir(here)
    return {"id": case["id"], "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "traceback": escaped, "left": sorted(tree(case["cwd"]) - before),
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    results = [run_case(case) for case in cases]
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

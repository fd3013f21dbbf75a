"""ONNX Runtime (2 threads) against the SavedModel's ``predict_ids``, side by side, on the same token batches.

    python benchmarks/onnx_speed.py [RUN] [--repeats 3]     # RUN: default runs/bench/multitask

Exports RUN's model once (``runs/bench/exports/onnx-speed/``: SavedModel version 1 and ``model.onnx``), tokenizes the
1,425 Debtags validation descriptions once (length-sorted batches of 32, padded to each batch's longest row, the
Predictor's batching), then times whole passes alternately (SavedModel, ONNX, SavedModel, ...) and reports the
median pass, texts/s, the ratio and the largest difference between the two models' outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import mtkeras as mtk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=os.path.join(ROOT, "runs", "bench", "multitask"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import onnxruntime as ort

    from mtkeras._compat import tf

    out = os.path.join(ROOT, "runs", "bench", "exports", "onnx-speed")
    saved, onnx_path = os.path.join(out, "saved_model", "1"), os.path.join(out, "model.onnx")
    if not os.path.exists(saved):
        mtk.export_saved_model(args.run, os.path.join(out, "saved_model"), version=1, warmup=False)
    if not os.path.exists(onnx_path):
        mtk.export_onnx(args.run, onnx_path)
    _, spec, tokenizer = mtk.load_model(args.run)
    texts = [r["text"] for r in mtk.read_records(os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl"),
                                                 spec)]
    encoded = mtk.data.encode_unpadded(tokenizer, texts, spec)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    batches = [mtk.data.pad_rows(encoded, order[i:i + 32], tokenizer.pad_token_id, 1, window=spec.max_length)
               for i in range(0, len(texts), 32)]
    served = tf.saved_model.load(saved).signatures["predict_ids"]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run_tf() -> list[dict]:
        return [{k: v.numpy() for k, v in served(**{k: tf.constant(v) for k, v in b.items()}).items()}
                for b in batches]

    def run_onnx() -> list[dict]:
        return [dict(zip(names, session.run(None, b), strict=True)) for b in batches]

    contenders = {"SavedModel predict_ids (TF, 2 cores)": run_tf, "ONNX Runtime 1.30 (2 threads)": run_onnx}
    results = {name: run() for name, run in contenders.items()}  # warm-up pass, and the outputs compared
    diff = max(float(np.abs(a[k] - b[k]).max()) for a, b in zip(*results.values(), strict=True) for k in a)
    times = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    first = statistics.median(next(iter(times.values())))
    print(f"{len(texts)} texts, batches of 32, {args.repeats} alternating passes; max |difference| {diff:.2e}\n")
    print("| contender | median pass | texts/s | vs SavedModel |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} s | {len(texts) / median:.0f} | {first / median:.2f}x |")


if __name__ == "__main__":
    main()

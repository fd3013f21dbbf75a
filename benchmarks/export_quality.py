"""Exports of a real run: SavedModel parity and TFLite size / decoded-label agreement with Keras.

    python benchmarks/export_quality.py runs/bench/multitask

On the 1,425 validation descriptions: the max abs difference between the
SavedModel's ``serving_default`` (raw text in) and the Keras model, and for each
TFLite variant (float32, float16, dynamic-range int8) its size, max abs
probability difference and the share of texts whose decoded labels (all
groups) equal Keras'.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

import mtkeras as mtk
import mtkeras.export
from mtkeras._compat import tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    run = sys.argv[1]
    predictor = mtk.Predictor.from_folder(run)
    spec, tokenizer = predictor.spec, predictor.tokenizer
    validation = os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl")
    texts = [r["text"] for r in mtk.data.read_jsonl(validation)]
    keras_probs = predictor.predict_proba(texts)
    keras_labels = predictor.decode(keras_probs)
    out = tempfile.mkdtemp()
    report = {"run": run, "texts": len(texts)}

    started = time.perf_counter()
    export = mtk.export_saved_model(run, os.path.join(out, "sm"), version=1)
    report["saved_model_export_seconds"] = round(time.perf_counter() - started, 1)
    serve = tf.saved_model.load(export).signatures["serving_default"]
    served = {name: [] for name in spec.group_names}
    for start in range(0, len(texts), 64):
        result = serve(text=tf.constant(texts[start : start + 64]))
        for name in spec.group_names:
            served[name].append(result[f"{name}_probabilities"].numpy())
    served = {k: np.concatenate(v) for k, v in served.items()}
    report["saved_model_max_abs_diff"] = float(max(np.abs(served[k] - keras_probs[k]).max() for k in served))
    labels_equal = np.mean([a == b for a, b in zip(predictor.decode(served), keras_labels, strict=True)])
    report["saved_model_label_agreement"] = float(labels_equal)

    from ai_edge_litert.interpreter import Interpreter

    for quantize in mtk.defaults.QUANTIZE:
        path = mtk.export_tflite(run, os.path.join(out, f"{quantize}.tflite"), quantize=quantize)
        runner = Interpreter(model_path=path).get_signature_runner()
        probs = {name: [] for name in spec.group_names}
        order = np.argsort([len(t) for t in texts])
        for start in range(0, len(texts), 32):
            rows = order[start : start + 32]
            batch = mtk.tokenize(tokenizer, [texts[i] for i in rows], spec.max_length)
            result = runner(**batch)
            for name in spec.group_names:
                probs[name].append((rows, result[f"{name}_probabilities"]))
        merged = {}
        for name, parts in probs.items():
            merged[name] = np.zeros_like(keras_probs[name])
            for rows, values in parts:
                merged[name][rows] = values
        agreement = np.mean([a == b for a, b in zip(predictor.decode(merged), keras_labels, strict=True)])
        report[f"tflite_{quantize or 'float32'}"] = {
            "bytes": os.path.getsize(path),
            "max_abs_diff": float(max(np.abs(merged[k] - keras_probs[k]).max() for k in merged)),
            "label_agreement": float(agreement),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

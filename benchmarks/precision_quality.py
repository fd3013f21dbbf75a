"""Quality and label agreement of the lower-precision paths against float32, on one trained model (issue 17).

    python benchmarks/precision_quality.py RUN [--contenders bfloat16,tflite-dynamic,onnx,onnx-int8-tensor,onnx-int8]
                                               [--parts]

RUN is a trained Debtags run of ``benchmarks/debtags_quality.py`` (e.g. ``runs/bench/precision-bfloat16``). Every
contender computes the heads' own probabilities (no temperatures) on the 1,425 validation texts from the same
weights: ``float32`` and ``bfloat16`` with the ``Predictor`` (``precision=...``, no XLA), ``tflite-dynamic``
(``export_tflite(..., quantize="dynamic")``: int8 weights, XNNPACK), ``onnx`` (``export_onnx``, ONNX Runtime),
``onnx-int8`` (``export_onnx(..., quantize="dynamic")``: int8 MatMuls, per-channel weight scales, activations
quantized per call) and ``onnx-int8-tensor`` (the float32 file through ``onnxruntime.quantization.quantize_dynamic``
with its defaults: one scale per weight matrix, embedding and bag tables quantized too). ``--parts`` adds the
int8 file with one part of its MatMuls quantized at a time (each layer; each role over every layer; all but the
FFN's output): where the changed answers come from. Reported per contender:

- **label sets equal to float32's** with the run's deployed temperatures and thresholds (every group equal,
  per text) and the largest probability difference;
- **re-tuned**: the same agreement when each contender's thresholds are tuned on its own outputs — the
  validation rows split in two seeded halves, thresholds (float32's and the contender's) tuned on one half,
  agreement counted on the other, mean of both ways;
- **quality** under the honest protocol (``mtk.cross_fitted_report``, calibrate and tune as the run's config;
  one candidate: the run's best weights), the headline column per group.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.calibration import calibrate_arrays
from mtkeras.export.onnx_export import head_matmuls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import as_trained, threshold_settings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLINE = [("section", "accuracy"), ("interface", "micro_f1"), ("use", "micro_f1"), ("works_with", "micro_f1")]


def _id_batches(tokenizer, spec, texts: list[str], batch: int = 32) -> list[tuple[np.ndarray, dict]]:
    encoded = mtk.data.encode_unpadded(tokenizer, texts, spec)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    return [(order[i:i + batch], mtk.data.pad_rows(encoded, order[i:i + batch], tokenizer.pad_token_id, 1,
                                                   window=spec.max_length))
            for i in range(0, len(texts), batch)]


def _gather(spec, batches, run_batch, rows: int) -> dict[str, np.ndarray]:
    out = {g.name: np.zeros((rows, len(g.labels)), np.float32) for g in spec.groups}
    for index, batch in batches:
        result = run_batch(batch)
        for group in spec.groups:
            out[group.name][index] = np.asarray(result[f"{group.name}_probabilities"])
    return out


def contender_probs(name: str, model, raw, tokenizer, texts: list[str], work: str) -> dict[str, np.ndarray]:
    """The heads' own probabilities of one contender, in input order."""
    if name in mtk.defaults.PRECISIONS:
        return mtk.Predictor(model, raw, tokenizer, precision=name, jit_compile=False).predict_proba(texts)
    batches = _id_batches(tokenizer, raw, texts)
    if name == "tflite-dynamic":
        path = mtk.export_tflite(model, os.path.join(work, "m.tflite"), spec=raw, quantize="dynamic")
        runner = tf.lite.Interpreter(model_path=path, num_threads=2).get_signature_runner()
        return _gather(raw, batches, lambda b: runner(**b), len(texts))
    path = os.path.join(work, "m.onnx")
    if not os.path.exists(path):
        mtk.export_onnx(model, path, spec=raw)
    if name == "onnx-int8":  # what `mtkeras export --onnx --quantize dynamic` writes: per-channel weight scales
        path = mtk.export_onnx(model, os.path.join(work, "m-int8.onnx"), spec=raw, quantize="dynamic",
                               overwrite=True)
    elif name == "onnx-int8-tensor":  # ORT's defaults: one scale per weight matrix, Gathers quantized too
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(path, os.path.join(work, "m-int8-tensor.onnx"), weight_type=QuantType.QInt8)
        path = os.path.join(work, "m-int8-tensor.onnx")
    elif name != "onnx":
        raise SystemExit(f"unknown contender {name!r}")
    return _ort_probs(raw, batches, path, len(texts))


def _ort_probs(raw, batches, path: str, rows: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return _gather(raw, batches, lambda b: dict(zip(names, session.run(None, b), strict=True)), rows)


#: ``--parts``: the encoder's MatMuls by role (a substring of the node name tf2onnx gives them), and the heads.
_PARTS = {"attention query": "/attention/self/query/", "attention key": "/attention/self/key/",
          "attention value": "/attention/self/value/", "attention output": "/attention/output/dense/",
          "FFN in (intermediate)": "/intermediate/dense/", "FFN out": "/output/dense/"}


def part_probs(model, raw, tokenizer, texts: list[str], work: str) -> dict[str, dict[str, np.ndarray]]:
    """``--parts``: the int8 file (per-channel, as exported) with one part of the MatMuls quantized and the rest
    float32: each encoder layer alone, each role alone (over all layers), and all but the FFN's output."""
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = os.path.join(work, "m.onnx")
    if not os.path.exists(path):
        mtk.export_onnx(model, path, spec=raw)
    proto = onnx.load(path)
    heads = head_matmuls(proto, raw)  # the MatMuls `export_onnx(quantize="dynamic")` keeps float32
    weighted = [n.name for n in proto.graph.node if n.op_type == "MatMul"
                and ("/Tensordot/" in n.name or n.name in heads)]  # not attention's activation x activation
    layer = {n: int(m.group(1)) for n in weighted if (m := re.search(r"/layer_\._(\d+)/", n))}
    role = {n: "heads" if n in heads else next(r for r, key in _PARTS.items()
                                               if key in n and not (r == "FFN out" and "/attention/" in n))
            for n in weighted}
    parts = {f"layer {i} only": [n for n in weighted if layer.get(n) == i] for i in sorted(set(layer.values()))}
    parts |= {f"{r} only (every layer)": [n for n in weighted if role[n] == r] for r in [*_PARTS, "heads"]}
    parts["all but FFN out"] = [n for n in weighted if role[n] != "FFN out"]
    batches = _id_batches(tokenizer, raw, texts)
    out = {}
    for name, nodes in parts.items():
        target = os.path.join(work, "part.onnx")
        quantize_dynamic(path, target, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_quantize=nodes)
        out[f"{name} ({len(nodes)} MatMuls)"] = _ort_probs(raw, batches, target, len(texts))
    return out


def _labels(spec, probs: dict[str, np.ndarray]) -> list[dict]:
    """Each row's answers with ``spec``'s temperatures and thresholds (what a deployed model returns)."""
    calibrated = calibrate_arrays(spec, probs)
    rows = len(next(iter(probs.values())))
    decoded = {g.name: g.rules.decode(calibrated[g.name], [""] * rows) for g in spec.groups}
    return [{name: values[i] for name, values in decoded.items()} for i in range(rows)]


def _rows(values: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--contenders", default="bfloat16,tflite-dynamic,onnx,onnx-int8-tensor,onnx-int8")
    parser.add_argument("--parts", action="store_true",
                        help="also: the int8 ONNX file with one part of the MatMuls quantized at a time")
    args = parser.parse_args()
    model, spec, tokenizer = mtk.load_model(args.run)
    raw, config = as_trained(args.run)  # nothing fitted on validation: the cross-fitted reports start here
    settings = threshold_settings(config)
    validation = mtk.read_records(config["data"]["validation"], spec)
    texts = [r[spec.text_column] for r in validation]
    targets, weights = mtk.encode_targets(spec, validation)
    work = tempfile.mkdtemp(prefix="precision-quality-")
    probs = {name: contender_probs(name, model, raw, tokenizer, texts, work)
             for name in ["float32", *args.contenders.split(",")]}
    if args.parts:
        probs |= {f"onnx-int8, {name}": values for name, values in part_probs(model, raw, tokenizer, texts,
                                                                             work).items()}

    half = np.empty(len(texts), np.int64)
    half[np.random.default_rng(0).permutation(len(texts))] = np.arange(len(texts)) % 2
    deployed = {name: _labels(spec, p) for name, p in probs.items()}

    def retuned(name: str) -> float:
        equal = []
        for k in (0, 1):
            tune, score = half != k, half == k
            chosen = {}
            for contender in ("float32", name):
                calibrated = calibrate_arrays(spec, _rows(probs[contender], tune))
                tuned = mtk.tune_thresholds(raw.with_temperatures({g.name: spec.group(g.name).temperature
                                                                    for g in raw.groups}),
                                            calibrated, _rows(targets, tune), _rows(weights, tune),
                                            floor=settings["floor"], min_positives=settings["min_positives"],
                                            scope=settings["scope"])
                chosen[contender] = _labels(tuned, _rows(probs[contender], score))
            equal += [a == b for a, b in zip(chosen["float32"], chosen[name], strict=True)]
        return float(np.mean(equal))

    print(f"\n{len(texts)} Debtags validation texts; model {args.run}\n")
    print("| contender | label sets equal to float32 (deployed thresholds) | re-tuned on its own outputs | "
          "max abs Δ probability | " + " | ".join(f"{g} {m}" for g, m in HEADLINE) + " |")
    print("|---" * (4 + len(HEADLINE)) + "|")
    for name, values in probs.items():
        equal = np.mean([a == b for a, b in zip(deployed[name], deployed["float32"], strict=True)])
        delta = max(float(np.max(np.abs(values[g] - probs["float32"][g]))) for g in values)
        report = mtk.cross_fitted_report(raw, [values], targets, weights, seed=config["training"]["seed"],
                                         **settings)
        cells = [f"{report['summary'][f'{g}/{m}']:.3f}" for g, m in HEADLINE]
        again = "—" if name == "float32" else f"{retuned(name):.2%}"
        print(f"| {name} | {equal:.2%} | {again} | {delta:.4f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""bfloat16 against float32 inference with the `Predictor`, side by side in one process (issue 17, item 2).

    python benchmarks/precision_speed.py MODEL_FOLDER [--passes 3] [--contenders float32,bfloat16,...]

MODEL_FOLDER is a trained Debtags model (a run folder of ``benchmarks/debtags_quality.py``, e.g.
``runs/bench/ablation-lr2e-4_layer_decay_0.8``). Each contender is the same weights in a model built with
``build_model(spec, mixed_precision=...)`` (``float32``, or ``bfloat16`` = ``mixed_bfloat16``: encoder and
pooling compute in bfloat16, heads and outputs float32), run by a ``Predictor`` (length-sorted batches of
32; ``+noxla`` turns its XLA off). After a warm-up pass each, the contenders take turns over the 1,425
Debtags validation texts, ``--passes`` times; the report gives median texts/s, the ratio to the first
contender, and how often each contender's decoded labels equal the first contender's (per text, every group
equal) and the largest probability difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import mtkeras as mtk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = mtk.defaults.PRECISIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--contenders", default="float32,bfloat16,float32+noxla,bfloat16+noxla")
    args = parser.parse_args()
    trained, spec, tokenizer = mtk.load_model(args.model)
    with open(os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl"), encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines]

    contenders = []
    for name in args.contenders.split(","):
        precision, _, xla = name.partition("+")
        model = mtk.build_model(spec, mixed_precision=POLICIES[precision])
        model.set_weights(trained.get_weights())
        predictor = mtk.Predictor(model, spec, tokenizer, jit_compile=xla != "noxla", precision=None)
        predictor.predict_proba(texts)  # warm-up: traces, XLA compiles each shape
        contenders.append({"name": name, "predictor": predictor, "rates": []})
    for _ in range(args.passes):
        for contender in contenders:
            started = time.perf_counter()
            contender["probs"] = contender["predictor"].predict_proba(texts)
            contender["rates"].append(len(texts) / (time.perf_counter() - started))
    reference = contenders[0]
    labels = {c["name"]: c["predictor"].decode(c["probs"]) for c in contenders}
    print(f"\n{len(texts)} Debtags validation texts, {args.passes} passes each, alternating, after a warm-up\n")
    print("| contender | texts/s (median) | all passes | × first row | label sets equal to the first row | "
          "max |Δ probability| |")
    print("|---|---|---|---|---|---|")
    for c in contenders:
        rate = statistics.median(c["rates"])
        equal = np.mean([a == b for a, b in zip(labels[c["name"]], labels[reference["name"]], strict=True)])
        delta = max(float(np.max(np.abs(c["probs"][g] - reference["probs"][g]))) for g in c["probs"])
        print(f"| {c['name']} | {rate:.1f} | {', '.join(f'{r:.1f}' for r in c['rates'])} | "
              f"{rate / statistics.median(reference['rates']):.2f} | {equal:.2%} | {delta:.4f} |")


if __name__ == "__main__":
    main()

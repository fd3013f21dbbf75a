"""Where a training step's time goes, piece by piece, on the same batches (issue 17, item 5).

    python benchmarks/training_profile.py [--precisions float32,bfloat16] [--batches 8] [--repeats 5]

The default multi-task model (MiniLM + the four Debtags heads, ``examples/debtags.yaml``, ``compile_model``'s
RAdam with layer-wise learning rates) and the first ``--batches`` bucketed batches of the train rows (no
shuffle, so every piece sees the same shapes). Each piece is its own ``tf.function`` and is timed over all
batches, ``--repeats`` times, the pieces and precisions taking turns, after a warm-up:

- ``forward``: ``model(x, training=True)`` (dropout on);
- ``forward + backward``: the loss and ``tape.gradient`` over the trainable weights;
- ``optimizer update``: ``optimizer.apply_gradients`` alone, on gradients computed once (22.7M weights, RAdam's
  moments, weight decay, per-layer rates);
- ``train step``: ``model.train_step`` as ``fit`` runs it (forward, backward, update, metrics);
- ``host overhead in fit``: ``model.fit`` over the same batches (one epoch of them, ``steps_per_execution`` 1)
  minus the train steps: Keras' loop, callbacks, the iterator.

The report gives the median milliseconds per step and each piece's share of the train step (forward +
backward + update ≈ the step; the rest is metrics and loss bookkeeping).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import mtkeras as mtk
from mtkeras._compat import tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import recipe_batches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spec, dataset, batches = recipe_batches(args.batches)
    tokens = sum(int(x["input_ids"].shape[0] * x["input_ids"].shape[1]) for x, _, _ in batches)

    contenders = []
    for precision in args.precisions.split(","):
        model = mtk.build_model(spec, mixed_precision=mtk.defaults.PRECISIONS[precision])
        mtk.compile_model(model, spec, total_steps=1000, warmup_steps=100)
        variables = model.trainable_variables

        def gradients(x, y, w, model=model, variables=variables):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x, y, model(x, training=True), w)
                if isinstance(model.optimizer, mtk.keras.mixed_precision.LossScaleOptimizer):
                    loss = model.optimizer.get_scaled_loss(loss)
            return tape.gradient(loss, variables)

        grads = tf.function(gradients)
        fixed = [grads(*b) for b in batches[:1]][0]  # one set of gradients, reused by the update piece
        pieces = {
            "forward": tf.function(lambda x, y, w, model=model: model(x, training=True)),
            "forward + backward": grads,
            "optimizer update": tf.function(
                lambda x, y, w, model=model, variables=variables, fixed=fixed:
                model.optimizer.apply_gradients(zip(fixed, variables, strict=True))),
            "train step": tf.function(lambda x, y, w, model=model: model.train_step((x, y, w))),
        }

        def fit(model=model):
            model.fit(tf.data.Dataset.from_tensor_slices([0]).flat_map(lambda _: dataset.take(args.batches)),
                      epochs=1, verbose=0)

        contenders.append({"precision": precision, "pieces": pieces, "fit": fit, "times": {}})
    for contender in contenders:  # warm-up: traces
        for piece in contender["pieces"].values():
            for batch in batches:
                piece(*batch)
        contender["fit"]()
    for _ in range(args.repeats):
        for contender in contenders:
            for name, piece in contender["pieces"].items():
                started = time.perf_counter()
                for batch in batches:
                    out = piece(*batch)
                tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
                contender["times"].setdefault(name, []).append((time.perf_counter() - started) / len(batches))
            started = time.perf_counter()
            contender["fit"]()
            contender["times"].setdefault("model.fit", []).append((time.perf_counter() - started) / len(batches))

    print(f"\n{args.batches} bucketed batches of 32 ({tokens / args.batches:.0f} token slots per batch), "
          f"{args.repeats} repeats, pieces alternating\n")
    print("| piece | " + " | ".join(f"{c['precision']} ms/step | share of the step" for c in contenders) + " |")
    print("|---|" + "---|---|" * len(contenders))
    names = [*contenders[0]["pieces"], "model.fit"]
    for name in names:
        cells = []
        for contender in contenders:
            median = statistics.median(contender["times"][name]) * 1e3
            step = statistics.median(contender["times"]["train step"]) * 1e3
            cells.append(f"{median:.0f} | {median / step:.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for contender in contenders:
        fit = statistics.median(contender["times"]["model.fit"])
        step = statistics.median(contender["times"]["train step"])
        print(f"\n{contender['precision']}: host overhead in fit (model.fit - train step) "
              f"{(fit - step) * 1e3:.0f} ms/step ({(fit - step) / fit:.1%} of fit); examples/s in fit "
              f"{32 / fit:.1f}")


if __name__ == "__main__":
    main()

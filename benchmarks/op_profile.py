"""Where the time goes, op by op: TensorFlow's profiler over inference and training steps (issue 17, item 5).

    python benchmarks/op_profile.py predict MODEL_FOLDER [--texts 320] [--precisions float32,bfloat16]
    python benchmarks/op_profile.py train [--batches 4] [--precisions float32,bfloat16]

``predict``: the trained model's weights in a model built per precision (``build_model(spec,
mixed_precision=...)``), run by a ``Predictor`` without XLA (XLA shows as one opaque cluster op; without it
every TensorFlow op is visible, and bfloat16 runs without XLA by default) over the first ``--texts``
Debtags validation texts, length-sorted batches of 32 (the ``Predictor`` tokenizes in Python, outside the
trace's ops). ``train``: the default
multi-task model of ``examples/debtags.yaml`` and ``--batches`` bucketed batches of 32 of the train rows
through ``model.train_step`` (the set-up of ``training_profile.py``).

Each contender is warmed up (traced), timed once without the profiler (wall seconds), then run once under
``tf.profiler.experimental``. The trace (``*.xplane.pb``) is read with TensorFlow's own ``xplane_pb2``: every
op event on the executor threads (``name:Type``), its self time (its own duration less the op events nested in
it), summed per op type. The report gives each contender's top op types with their share of the summed op
time, and the share of matrix products (``MatMul``, ``BatchMatMul``, ``Einsum`` and oneDNN's fused forms) — the
part that runs at the matmul rate ``peak_flops.py`` measures; the rest (softmax, layer norm, GELU, casts,
transposes) is what bfloat16 does not speed up. Op time is CPU time of the executor threads:
two ops running at once on the two cores both count, so it can exceed wall time. ``(executor)`` is the
executor's own time between ops (scheduling, bookkeeping).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

import mtkeras as mtk
from mtkeras._compat import tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import recipe_batches  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MATMUL_WORDS = ("MatMul", "Einsum", "Conv2D")


def _op_type(event: str) -> str | None:
    """``name:Type`` of a TensorFlow op → ``Type``; the executor's own event → ``(executor)``; else None."""
    if event == "ExecutorState::Process":
        return "(executor)"
    name, colon, kind = event.partition(":")
    return kind if colon and name and kind and ":" not in kind else None


def _op_self_times(logdir: str) -> collections.Counter:
    """Self time in seconds per op type from the profiler trace written under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as trace:
        space.ParseFromString(trace.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = plane.event_metadata
        for line in plane.lines:
            if line.name == "python":  # the caller's thread: the whole call, not ops
                continue
            ops = sorted(((e.offset_ps, e.offset_ps + e.duration_ps, kind) for e in line.events
                          if (kind := _op_type(names[e.metadata_id].name))),
                         key=lambda event: (event[0], -event[1]))
            stack: list[list] = []  # [end, type, self_ps]
            for start, end, name in ops:
                while stack and stack[-1][0] <= start:
                    done = stack.pop()
                    totals[done[1]] += done[2] / 1e12
                if stack:
                    stack[-1][2] -= end - start  # a nested op: not the caller's own time
                stack.append([end, name, end - start])
            for done in stack:
                totals[done[1]] += done[2] / 1e12
    return totals


def _profile(run, name: str) -> tuple[float, collections.Counter]:
    run()  # warm-up: traces
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix=f"op-profile-{name}-") as logdir:
        tf.profiler.experimental.start(logdir)
        run()
        tf.profiler.experimental.stop()
        return wall, _op_self_times(logdir)


def _predict_contenders(args) -> list[tuple[str, object]]:
    trained, spec, tokenizer = mtk.load_model(args.model)
    path = os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl")
    with open(path, encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines][: args.texts]
    contenders = []
    for precision in args.precisions.split(","):
        model = mtk.build_model(spec, mixed_precision=mtk.defaults.PRECISIONS[precision])
        model.set_weights(trained.get_weights())
        predictor = mtk.Predictor(model, spec, tokenizer, jit_compile=False, precision=None)
        contenders.append((precision, lambda predictor=predictor: predictor.predict_proba(texts)))
    print(f"{len(texts)} Debtags validation texts, length-sorted batches of 32, no XLA")
    return contenders


def _train_contenders(args) -> list[tuple[str, object]]:
    spec, _, batches = recipe_batches(args.batches, "spec.neighbours=0")
    contenders = []
    for precision in args.precisions.split(","):
        model = mtk.build_model(spec, mixed_precision=mtk.defaults.PRECISIONS[precision])
        mtk.compile_model(model, spec, total_steps=1000, warmup_steps=100)
        step = tf.function(lambda x, y, w, model=model: model.train_step((x, y, w)))

        def run(step=step):
            for batch in batches:
                out = step(*batch)
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)

        contenders.append((precision, run))
    slots = sum(int(x["input_ids"].shape[0] * x["input_ids"].shape[1]) for x, _, _ in batches)
    print(f"{len(batches)} bucketed batches of 32 ({slots / len(batches):.0f} token slots per batch), "
          "model.train_step")
    return contenders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["predict", "train"])
    parser.add_argument("model", nargs="?", help="a trained model folder (predict)")
    parser.add_argument("--texts", type=int, default=320)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if args.what == "predict" and not args.model:
        parser.error("predict needs MODEL_FOLDER, a trained model folder")
    contenders = (_predict_contenders if args.what == "predict" else _train_contenders)(args)
    results = {name: _profile(run, name) for name, run in contenders}

    for name, (wall, times) in results.items():
        total = sum(times.values())
        matmul = sum(t for op, t in times.items() if any(word in op for word in _MATMUL_WORDS))
        print(f"\n**{name}**: wall {wall:.2f} s unprofiled; op time {total:.2f} s; matrix products "
              f"{matmul:.2f} s ({matmul / total:.0%} of op time)\n")
        print("| op type | seconds | share of op time |")
        print("|---|---|---|")
        for op, seconds in times.most_common(args.top):
            print(f"| {op} | {seconds:.3f} | {seconds / total:.1%} |")
    if len(results) > 1:
        (a, (_, ta)), (b, (_, tb)) = list(results.items())[:2]
        print(f"\n| op type | {a} s | {b} s | {a} / {b} |")
        print("|---|---|---|---|")
        for op, _ in (ta + tb).most_common(args.top):
            ratio = f"{ta[op] / tb[op]:.2f}" if tb[op] else "–"
            print(f"| {op} | {ta[op]:.3f} | {tb[op]:.3f} | {ratio} |")


if __name__ == "__main__":
    main()

"""Benchmark workers: one process per contender, driven over stdin/stdout by an orchestrator.

A worker loads its model, warms up with one full pass, prints ``ready {json}``, then
answers each ``run`` line with one timed pass over the texts as ``{json}``
(seconds, peak RSS so far). Only the stdlib is imported at module level, so the
PyTorch worker runs in its own virtualenv without mtkeras.

    python benchmarks/_workers.py KIND TEXTS_JSON [options]

Kinds: ``base`` (imports TensorFlow + TF Text and nothing else: the memory floor),
``savedmodel`` (one or more exports called through ``serving_default`` in client
batches, input order), ``predictor`` (``mtkeras.Predictor`` on a model folder),
``torch`` (Hugging Face transformers ``AutoModelForSequenceClassification``,
``torch.inference_mode``, batch padded to its longest row, input order).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _threads(intra: int, inter: int) -> None:
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def _savedmodel(args: argparse.Namespace, texts: list[str]):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the exports use)

    _threads(args.intra, args.inter)
    serves = [tf.saved_model.load(path).signatures["serving_default"] for path in args.paths]

    def run() -> None:
        for serve in serves:
            for start in range(0, len(texts), args.batch):
                outputs = serve(text=tf.constant(texts[start : start + args.batch]))
                for value in outputs.values():
                    value.numpy()

    return run


def _predictor(args: argparse.Namespace, texts: list[str]):
    import mtkeras as mtk

    _threads(args.intra, args.inter)
    predictor = mtk.Predictor.from_folder(args.paths[0], batch_size=args.batch, jit_compile=args.jit)
    return lambda: predictor.predict_proba(texts)


def _torch(args: argparse.Namespace, texts: list[str]):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if args.intra:
        torch.set_num_threads(args.intra)
    tokenizer = AutoTokenizer.from_pretrained(args.paths[0])
    model = AutoModelForSequenceClassification.from_pretrained(args.paths[0], num_labels=args.num_labels).eval()

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, len(texts), args.batch):
                batch = tokenizer(
                    texts[start : start + args.batch], padding="longest", truncation=True,
                    max_length=args.max_length, return_tensors="pt",
                )
                model(**batch).logits.softmax(-1).numpy()

    return run


def _base(args: argparse.Namespace, texts: list[str]):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    tf.constant(texts[:1])
    return lambda: None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["base", "savedmodel", "predictor", "torch"])
    parser.add_argument("texts")
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--intra", type=int, default=0)
    parser.add_argument("--inter", type=int, default=0)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--num-labels", type=int, default=37)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    started = time.perf_counter()
    run = {"base": _base, "savedmodel": _savedmodel, "predictor": _predictor, "torch": _torch}[args.kind](args, texts)
    run()  # warm-up: traces, allocations, first-call costs
    print("ready " + json.dumps({"load_and_warmup_s": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}),
          flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}), flush=True)


if __name__ == "__main__":
    main()

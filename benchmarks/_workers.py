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
``torch.inference_mode``, batch padded to its longest row, input order), ``ort`` (ONNX Runtime on
the same MiniLM exported from PyTorch with mean pooling and the four Debtags heads, fused by
``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``, ``ORT_ENABLE_ALL``, 2 intra-op
threads, spinning off; HF fast tokenizer; ``--order sorted`` length-sorts like the Predictor;
``--quantize`` runs ORT's dynamic int8 quantization of the fused graph), ``onnx`` (an mtkeras ONNX export,
``--quantize``: the same dynamic int8 quantization, one scale per weight matrix as ORT's default; an int8 file
from ``export_onnx(quantize="dynamic")`` runs as it is) and ``tflite`` (an mtkeras TFLite file, XNNPACK, 2
threads); the last two take token ids from the HF tokenizer, length-sorted batches.
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
    predictor = mtk.Predictor.from_folder(args.paths[0], batch_size=args.batch, jit_compile=args.jit,
                                          precision=args.precision)
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


#: The Debtags heads the ORT contender computes (labels per group): the multi-task model's work after the encoder.
_HEADS = {"section": 37, "interface": 8, "use": 29, "works_with": 17}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _ort_fused(minilm: str, cache: str, quantize: bool) -> str:
    """MiniLM + mean pooling + heads exported from PyTorch, fused for ORT (and int8-quantized): cached files."""
    import os

    import torch
    from transformers import AutoModel

    os.makedirs(cache, exist_ok=True)
    raw, fused, int8 = (os.path.join(cache, name) for name in ("minilm.onnx", "minilm-fused.onnx",
                                                               "minilm-fused-int8.onnx"))
    if not os.path.exists(raw):
        class Heads(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                # eager attention: the pattern ORT's BERT fusion recognises (sdpa exports are left unfused)
                self.bert = AutoModel.from_pretrained(minilm, attn_implementation="eager")
                self.heads = torch.nn.ModuleList(torch.nn.Linear(384, n) for n in _HEADS.values())

            def forward(self, input_ids, attention_mask, token_type_ids):
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                logits = [head(pooled) for head in self.heads]
                return (logits[0].softmax(-1), *(x.sigmoid() for x in logits[1:]))

        model = Heads().eval()
        ids = torch.ones(2, 16, dtype=torch.int64)
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), raw, input_names=list(_INPUTS),
                          output_names=list(_HEADS), opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in _INPUTS})
    if not os.path.exists(fused):
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(raw, model_type="bert", num_heads=12, hidden_size=384)
        optimized.save_model_to_file(fused)
    if quantize and not os.path.exists(int8):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # the fused contrib ops defeat shape inference: name the float type
        quantize_dynamic(fused, int8, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return int8 if quantize else fused


def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads or 2, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads spin by default and take the CPU from whichever contender runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _id_batches(tokenizer, texts: list[str], batch: int, max_length: int, order: str, dtype):
    """HF fast tokenizer once over all texts, then batches (input order or length-sorted), each padded to its
    longest row: the Predictor's batching."""
    import numpy as np

    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    rows = np.argsort(lengths, kind="stable") if order == "sorted" else np.arange(len(texts))
    for start in range(0, len(texts), batch):
        chosen = rows[start : start + batch]
        width = max(lengths[i] for i in chosen)
        out = {name: np.zeros((len(chosen), width), dtype) for name in _INPUTS}
        out["input_ids"] += tokenizer.pad_token_id
        for r, i in enumerate(chosen):
            n = lengths[i]
            out["input_ids"][r, :n] = encoded["input_ids"][i]
            out["attention_mask"][r, :n] = 1
            out["token_type_ids"][r, :n] = encoded["token_type_ids"][i]
        yield out


def _ort(args: argparse.Namespace, texts: list[str]):
    import numpy as np
    from transformers import AutoTokenizer

    session = _ort_session(_ort_fused(args.paths[0], args.paths[1], args.quantize), args.intra)
    tokenizer = AutoTokenizer.from_pretrained(args.paths[0])

    def run() -> None:
        for feed in _id_batches(tokenizer, texts, args.batch, args.max_length, args.order, np.int64):
            session.run(None, feed)

    return run


def _onnx(args: argparse.Namespace, texts: list[str]):
    import os

    import numpy as np
    from transformers import AutoTokenizer

    path = args.paths[0]
    if args.quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = path[: -len(".onnx")] + "-int8.onnx"
        if not os.path.exists(int8):
            quantize_dynamic(path, int8, weight_type=QuantType.QInt8)
        path = int8
    session = _ort_session(path, args.intra)
    tokenizer = AutoTokenizer.from_pretrained(args.paths[1])

    def run() -> None:
        for feed in _id_batches(tokenizer, texts, args.batch, args.max_length, args.order, np.int32):
            session.run(None, feed)

    return run


def _tflite(args: argparse.Namespace, texts: list[str]):
    import numpy as np
    import tensorflow as tf
    from transformers import AutoTokenizer

    interpreter = tf.lite.Interpreter(model_path=args.paths[0], num_threads=args.intra or 2)
    runner = interpreter.get_signature_runner()
    tokenizer = AutoTokenizer.from_pretrained(args.paths[1])

    def run() -> None:
        for feed in _id_batches(tokenizer, texts, args.batch, args.max_length, args.order, np.int32):
            runner(**feed)

    return run


def _base(args: argparse.Namespace, texts: list[str]):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    tf.constant(texts[:1])
    return lambda: None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["base", "savedmodel", "predictor", "torch", "ort", "onnx", "tflite"])
    parser.add_argument("texts")
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--intra", type=int, default=0)
    parser.add_argument("--inter", type=int, default=0)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--num-labels", type=int, default=37)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--order", choices=["input", "sorted"], default="input")
    parser.add_argument("--quantize", action="store_true", help="ort / onnx: dynamic int8 quantization")
    parser.add_argument("--precision", default="float32", help="predictor: Predictor(precision=...)")
    args = parser.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    started = time.perf_counter()
    run = {"base": _base, "savedmodel": _savedmodel, "predictor": _predictor, "torch": _torch, "ort": _ort,
           "onnx": _onnx, "tflite": _tflite}[args.kind](args, texts)
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

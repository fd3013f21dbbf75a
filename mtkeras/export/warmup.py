"""TF Serving warm-up records: requests TF Serving replays when it loads a version, before any user's.

TF Serving reads ``assets.extra/tf_serving_warmup_requests`` (a TFRecord file of ``PredictionLog`` protos) and
runs each request through the loaded model, so the first user request does not pay for the graph's lazy
initialisation and, with XLA or on GPU, for compiling its first shapes.
"""

from __future__ import annotations

import os
from typing import Any

from mtkeras._compat import tf
from mtkeras.spec import TaskSpec

#: Where TF Serving looks for warm-up requests inside a version folder.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
#: Batch sizes of the warm-up requests, for each length.
WARMUP_BATCH_SIZES: tuple[int, ...] = (1, 8)


def warmup_token_counts(spec: TaskSpec) -> list[int]:
    """Word pieces in each warm-up text: short, half a window, one full window, and texts that fill 2 ..
    ``max_windows`` windows (HF overflow windows: each next one starts ``stride`` pieces before the last ended)."""
    window = spec.max_length - 2  # [CLS] ... [SEP]
    counts = {min(6, window), spec.max_length // 2 - 2, window}
    counts |= {window + (k - 1) * (window - spec.stride) for k in range(2, spec.max_windows + 1)}
    return sorted(count for count in counts if count >= 1)


def warmup_texts(spec: TaskSpec, tokenizer: Any) -> list[str]:
    """One text per :func:`warmup_token_counts` entry, made of one word that is one piece in this vocabulary."""
    word = _one_token_word(tokenizer)
    return [" ".join([word] * count) for count in warmup_token_counts(spec)]


def _one_token_word(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    for token, _ in vocab:
        if token.isalpha() and token.isascii() and len(token) > 1 and tokenizer.tokenize(token) == [token]:
            return token
    return "a"  # pragma: no cover - every BERT vocabulary has whole words


def write_warmup(path: str, spec: TaskSpec, tokenizer: Any, model_name: str = "") -> int:
    """Write ``serving_default`` warm-up requests (every length x :data:`WARMUP_BATCH_SIZES`) to ``path``;
    returns how many. ``model_name`` fills ``model_spec.name`` (TF Serving ignores it on warm-up)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    count = 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for text in warmup_texts(spec, tokenizer):
            for batch in WARMUP_BATCH_SIZES:
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
                request.inputs["text"].CopyFrom(tf.make_tensor_proto([text] * batch, dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
                count += 1
    return count


def read_warmup(path: str) -> list[Any]:
    """The ``PredictionLog`` protos of a warm-up file, in order."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs

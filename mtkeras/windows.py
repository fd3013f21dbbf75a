"""Long texts read whole: windows of ``max_length`` tokens, one after another in one row.

A text of more tokens than ``max_length`` is split the way Hugging Face tokenizers split it with
``return_overflowing_tokens=True``: each window holds ``max_length - 2`` word pieces between its own
[CLS] and [SEP], consecutive windows share ``stride`` pieces, and a text gets at most
``max_windows`` windows (later pieces are cut). The windows of a text are laid end to end in one
model-input row: every window but the last is exactly ``max_length`` tokens, so a row of ``n >
max_length`` tokens holds ``ceil(n / max_length)`` windows. Inside the model :class:`SplitWindows`
reshapes such rows to one window per row for the encoder and :class:`MergeWindows` lays the
encoder's outputs end to end again, so the masked mean pools over every real token of every
window of the text and token-level heads answer every token. A row that fits in ``max_length``
is one window: exactly the model of a spec without windows.

The same layout is built by the Python tokenizer path (:func:`window_rows`, used by
``make_dataset`` and the ``Predictor``) and by the SavedModel's in-graph tokenizer
(:func:`graph_window_rows`), so ``model.fit``, the ``Predictor`` and TF Serving agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtkeras._compat import keras, tf
from mtkeras.spec import INPUT_NAMES, TaskSpec


def window_step(max_length: int, stride: int) -> int:
    """Word pieces from one window's start to the next's: ``max_length - 2 - stride``."""
    return max_length - 2 - stride


def max_pieces(max_length: int, max_windows: int, stride: int) -> int:
    """The most word pieces of a text the model reads (the first window's, then ``step`` more per window)."""
    return max_length - 2 + (max_windows - 1) * window_step(max_length, stride)


def round_length(length: int, window: int, multiple: int = 1) -> int:
    """A batch's padded length: a multiple of ``window`` beyond one window (whole windows), else
    ``length`` rounded up to ``multiple`` (at most one window)."""
    if length > window:
        return -(-length // window) * window
    return min(-(-length // multiple) * multiple, max(window, length))


def window_rows(tokenizer: Any, texts: Sequence[str], spec: TaskSpec, offsets: bool = False) -> dict[str, list]:
    """Unpadded model-input rows (lists of ids per text, windows end to end) from a Hugging Face tokenizer.

    With ``offsets``, also each token's character offsets (``offset_mapping``; fast tokenizers only).
    """
    names = [*INPUT_NAMES, "offset_mapping"] if offsets else list(INPUT_NAMES)
    common = dict(truncation=True, max_length=spec.max_length, return_token_type_ids=True,
                  return_attention_mask=True, return_offsets_mapping=offsets)
    if spec.max_windows == 1:
        encoded = tokenizer(list(texts), **common)
        return {name: list(encoded[name]) for name in names}
    encoded = tokenizer(list(texts), stride=spec.stride, return_overflowing_tokens=True, **common)
    rows: dict[str, list] = {name: [[] for _ in texts] for name in names}
    windows = [0] * len(texts)
    for window, text in enumerate(encoded["overflow_to_sample_mapping"]):
        if windows[text] == spec.max_windows:
            continue
        windows[text] += 1
        for name in names:
            rows[name][text].extend(encoded[name][window])
    return rows


def graph_window_rows(pieces: tf.RaggedTensor, max_length: int, max_windows: int, stride: int, cls_id: int,
                      sep_id: int) -> tf.RaggedTensor:
    """Word-piece ids ``[batch, (pieces)]`` (int64) -> model-input ids ``[batch, (tokens)]``, windows end to end,
    exactly as :func:`window_rows` lays them out; TF core ops only."""
    content, step = max_length - 2, window_step(max_length, stride)
    pieces = pieces[:, : max_pieces(max_length, max_windows, stride)]
    counts = pieces.row_lengths()  # int64 [batch]
    windows = 1 + tf.maximum(tf.constant(0, tf.int64), -(-(counts - content) // step))  # [batch]
    starts = tf.ragged.range(windows) * step  # [batch, (windows)]: each window's first piece
    text_of = starts.value_rowids()
    begin = starts.flat_values
    end = tf.minimum(begin + content, tf.gather(counts, text_of))
    flat = tf.gather(pieces.flat_values, tf.ragged.range(begin, end) + tf.gather(pieces.row_starts(), text_of)[:, None])
    total = tf.shape(begin, out_type=tf.int64)[0]
    wrapped = tf.concat([tf.fill([total, 1], tf.constant(cls_id, tf.int64)), flat,
                         tf.fill([total, 1], tf.constant(sep_id, tf.int64))], axis=1)  # [windows, (len)]
    # Every window but a text's last is full (max_length tokens), so laying the windows end to end is
    # concatenating their tokens.
    return tf.RaggedTensor.from_row_lengths(wrapped.values, tf.math.segment_sum(wrapped.row_lengths(), text_of))


def graph_token_positions(piece_index: tf.Tensor, max_length: int, stride: int) -> tf.Tensor:
    """The row position (int64) of the first copy of the text's piece ``piece_index`` (0-based), as laid out
    by :func:`graph_window_rows`: window ``k`` = the first one holding it, then [CLS] and its place there."""
    content, step = max_length - 2, window_step(max_length, stride)
    window = tf.where(piece_index < content, tf.zeros_like(piece_index), (piece_index - content) // step + 1)
    return window * max_length + 1 + piece_index - window * step


@keras.saving.register_keras_serializable(package="mtkeras")
class SplitWindows(keras.layers.Layer):
    """Model inputs ``[batch, length]`` -> one window per row ``[batch * windows, window]``.

    Rows no longer than ``window`` pass as they are (one window); longer ones are padded to whole
    windows and cut into them.
    """

    def __init__(self, window: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.window = int(window)

    def call(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        length = tf.shape(inputs[INPUT_NAMES[0]])[1]
        size = tf.maximum(tf.minimum(length, self.window), 1)
        padded = -(-length // size) * size
        return {name: tf.reshape(tf.pad(value, [[0, 0], [0, padded - length]]), [-1, size])
                for name, value in inputs.items()}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "window": self.window}


@keras.saving.register_keras_serializable(package="mtkeras")
class MergeWindows(keras.layers.Layer):
    """Encoder outputs ``[batch * windows, window, hidden]`` -> ``[batch, length, hidden]``, aligned with the
    model's input tokens again (``reference`` is any ``[batch, length]`` input)."""

    def call(self, hidden: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(reference)
        return tf.reshape(hidden, [shape[0], -1, hidden.shape[-1]])[:, : shape[1]]

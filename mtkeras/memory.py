"""A memory of the training rows: each text's nearest training texts vote beside the heads.

A fine-tuned head is one linear layer on the pooled vector; the training rows closest to a text in that same
vector space often know its labels better, for labels the head learned weakly (BENCHMARKS.md, "Nearest
training rows as a second opinion"). After training, :func:`add_memory` stores every training row's pooled
encoder vector (the ``mean_pooling`` layer, L2-normalised) and its labels in the model:

- :class:`NeighbourMemory` finds a text's ``spec.neighbours`` nearest stored rows by cosine similarity (one matmul
  and a top-k) and weighs them by ``softmax(similarity / spec.neighbour_temperature)``;
- one :class:`NeighbourVote` per group whose kind remembers (:attr:`GroupKind.neighbour_vote`) answers
  ``(1 - spec.neighbour_share) * head + spec.neighbour_share * vote``, the vote being the weighted mean of the
  neighbours' labels (neighbours not annotated for the group do not vote; a text none of whose neighbours is
  annotated gets its head's answer alone).

Both are plain Keras layers with their rows as non-trainable weights, so the ``Predictor``, the Keras file, the
SavedModel, TFLite and ONNX all answer with the memory, from the same ops (the model ``model.fit`` trains has
none: the memory is filled from the trained model's own vectors). The
spec holds the options and the number of stored rows (``memory_rows``); ``build_model`` builds the memory when
that is > 0. ``mtkeras train`` with ``spec.neighbours`` > 0 fills it after the best epoch is restored, before
temperatures and thresholds are fitted (on the remembering model's answers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mtkeras._checks import check_option
from mtkeras._compat import keras, tf
from mtkeras.spec import HEAD_SUFFIX, MEMORY_LAYER, TaskSpec

#: How a kind's vote turns the neighbours' weighted labels into probabilities
#: (:attr:`mtkeras.kinds.GroupKind.neighbour_vote`); the keys are the accepted values.
VOTES: dict[str, str] = {
    "distribution": "one label per text: the weighted label counts, smoothed by 1e-4 and normalised to sum to 1",
    "independent": "each label on its own: the weighted share of neighbours holding it, kept in [1e-4, 1 - 1e-4]",
}
#: What keeps a vote's probabilities off 0 and 1 (a label no neighbour holds is unlikely, not impossible).
_SMOOTHING = 1e-4


@keras.saving.register_keras_serializable(package="mtkeras")
class NeighbourMemory(keras.layers.Layer):
    """Pooled vectors ``[batch, dim]`` -> ``(weights [batch, k], rows [batch, k])``: the ``k`` stored rows nearest
    by cosine similarity and their softmax(similarity / ``temperature``) weights. ``vectors`` (``[rows, dim]``,
    L2-normalised, non-trainable) is filled by :func:`add_memory`.

    Example:
        >>> memory = NeighbourMemory(rows=6651, dim=384, k=20, temperature=0.05, name="neighbour_memory")
        >>> weights, rows = memory(pooled)
    """

    def __init__(self, rows: int, dim: int, k: int, temperature: float, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rows, self.dim, self.k, self.temperature = int(rows), int(dim), int(k), float(temperature)

    def build(self, input_shape: Any) -> None:
        self.vectors = self.add_weight(name="vectors", shape=[self.rows, self.dim], initializer="zeros",
                                       trainable=False, dtype="float32")
        super().build(input_shape)

    def call(self, pooled: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        unit = tf.math.l2_normalize(tf.cast(pooled, tf.float32), axis=-1)
        similarity = tf.matmul(unit, self.vectors, transpose_b=True)
        nearest, rows = tf.math.top_k(similarity, k=min(self.k, self.rows))
        return tf.nn.softmax(nearest / self.temperature, axis=-1), rows

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rows": self.rows, "dim": self.dim, "k": self.k,
                "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="mtkeras")
class NeighbourVote(keras.layers.Layer):
    """``(head [batch, labels], (weights, rows))`` -> ``(1 - share) * head + share * vote``: one group's answer
    with the memory. ``labels`` (``[rows, labels]``: each stored row's target) and ``annotated`` (``[rows]``: 1
    where the row is annotated for the group) are non-trainable, filled by :func:`add_memory`; ``vote`` is one
    of :data:`VOTES`.

    Example:
        >>> vote = NeighbourVote(rows=6651, labels=34, share=0.25, vote="independent", name="use")
        >>> answer = vote(head, memory(pooled))
    """

    def __init__(self, rows: int, labels: int, share: float, vote: str, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rows, self.labels, self.share = int(rows), int(labels), float(share)
        self.vote = check_option(vote, "vote", VOTES)

    def build(self, input_shape: Any) -> None:
        self.table = self.add_weight(name="labels", shape=[self.rows, self.labels], initializer="zeros",
                                     trainable=False, dtype="float32")
        self.annotated = self.add_weight(name="annotated", shape=[self.rows], initializer="zeros",
                                         trainable=False, dtype="float32")
        super().build(input_shape)

    def call(self, head: tf.Tensor, near: Sequence[tf.Tensor]) -> tf.Tensor:
        weights, rows = near
        weights = weights * tf.gather(self.annotated, rows)                        # [batch, k]
        total = tf.reduce_sum(weights, axis=-1, keepdims=True)                     # [batch, 1]
        held = tf.reduce_sum(weights[..., None] * tf.gather(self.table, rows), axis=1)
        held = held / tf.maximum(total, 1e-12)                                     # [batch, labels]
        if self.vote == "distribution":
            vote = (held + _SMOOTHING) / tf.reduce_sum(held + _SMOOTHING, axis=-1, keepdims=True)
        else:
            vote = tf.clip_by_value(held + _SMOOTHING, _SMOOTHING, 1.0 - _SMOOTHING)
        share = self.share * tf.cast(total > 0.0, tf.float32)                     # no annotated neighbour: head
        return (1.0 - share) * tf.cast(head, tf.float32) + share * vote

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rows": self.rows, "labels": self.labels, "share": self.share,
                "vote": self.vote}


def remembering(spec: TaskSpec) -> list[str]:
    """The groups a memory answers for: those whose kind votes (:attr:`GroupKind.neighbour_vote`)."""
    return [group.name for group in spec.groups if group.rules.neighbour_vote]


def add_memory(
    model: keras.Model,
    spec: TaskSpec,
    records: Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any | None = None,
    batch_size: int = 64,
) -> tuple[keras.Model, TaskSpec]:
    """``(model, spec)`` answering with a memory of ``records`` (the training rows: their texts and labels).

    ``model`` is a trained model built by :func:`mtkeras.build_model` from ``spec`` (with or without a memory:
    an existing one is replaced); ``spec.neighbours`` (> 0) and its ``neighbour_*`` options say how the memory
    answers. A row not annotated for a group (:func:`mtkeras.encode_targets`' weight 0) does not vote for it. The
    returned model is a new one (same policy, same weights, plus the memory); the returned spec has
    ``memory_rows = len(records)``, so :func:`mtkeras.build_model` and :func:`mtkeras.load_model` rebuild it.

    Example:
        >>> spec = dataclasses.replace(spec, neighbours=20)
        >>> model, spec = add_memory(model, spec, mtk.read_records("train.jsonl", spec))
    """
    from mtkeras.data import encode_targets
    from mtkeras.encoder import load_tokenizer
    from mtkeras.model import build_model, check_outputs
    from mtkeras.precision import PRECISIONS, model_precision
    from mtkeras.predict import Predictor
    from mtkeras.spec import ENCODER_LAYER

    check_outputs(model, spec, "add_memory")
    if not spec.neighbours:
        raise ValueError("add_memory: `spec.neighbours` is 0 (no memory); set it to the number of nearest training "
                         "rows each text reads, e.g. dataclasses.replace(spec, neighbours=20).")
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence) or not records:
        raise ValueError(f"add_memory: `records` must be a non-empty list of training rows (dicts with the text "
                         f"and the groups' labels), received {records!r:.80}.")
    targets, weights = encode_targets(spec, records)
    texts = [record[spec.text_column] for record in records]
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.encoder)
    vectors = Predictor(model, spec, tokenizer, batch_size=batch_size, precision=None).embed(texts)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    spec = replace(spec, memory_rows=len(texts))
    remembered = build_model(spec, bert_config=model.get_layer(ENCODER_LAYER).bert_config,
                             mixed_precision=PRECISIONS[model_precision(model)])
    _copy_weights(model, remembered, spec)
    remembered.get_layer(MEMORY_LAYER).set_weights([vectors])
    for name in remembering(spec):
        annotated = (np.asarray(weights[name]) > 0).astype(np.float32)
        remembered.get_layer(name).set_weights([np.asarray(targets[name], np.float32), annotated])
    return remembered, spec


def _copy_weights(source: keras.Model, target: keras.Model, spec: TaskSpec) -> None:
    """Every weight of ``source`` (built from ``spec`` with or without a memory) into the same layer of ``target``
    (built with one): a voting group's head, named like the group without a memory, is ``<group>_head`` in
    ``target``; the memory's own layers are left as they are."""
    heads = {name: name + HEAD_SUFFIX for name in remembering(spec)}
    names = {layer.name for layer in target.layers}
    for layer in source.layers:
        if isinstance(layer, (NeighbourMemory, NeighbourVote)) or not layer.weights:
            continue
        name = heads.get(layer.name, layer.name)
        if name not in names:
            raise ValueError(f"add_memory: the model's layer {layer.name!r} has no counterpart in the model the "
                             "spec builds; was the model built from this spec?")
        target.get_layer(name).set_weights(layer.get_weights())


__all__ = ["VOTES", "NeighbourMemory", "NeighbourVote", "add_memory", "remembering"]

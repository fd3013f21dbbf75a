"""``PieceBag``: the wide part of a wide-and-deep model — a bag of the text's word pieces beside the encoder.

A linear model on word and n-gram counts (TF-IDF + logistic regression) reads a text differently from a
fine-tuned encoder, and the two err on different texts: on Debtags the mean of their probabilities scores
higher than either (BENCHMARKS.md, "Wide and deep"). ``PieceBag`` brings that reading into the one model:
every word piece of the text, and (with ``buckets``) every pair of consecutive pieces hashed into
``buckets`` rows, has a learned vector of ``dim`` numbers; the text's vector is the mean of its pieces'
plus the mean of its pairs', over real tokens only (``attention_mask``), of every window. The model
concatenates it to the pooled encoder vector, so each head is a linear model on both (Cheng et al. 2016,
"Wide & Deep Learning"; the bag itself is fastText's, Joulin et al. 2016), trained jointly by ``model.fit``.

It reads only ``input_ids`` and ``attention_mask``, so ``model.fit``, the ``Predictor``, the SavedModel and
TFLite compute it alike, and padding changes nothing (padded positions carry mask 0).
"""

from __future__ import annotations

from typing import Any

from mtkeras._compat import keras, tf


@keras.saving.register_keras_serializable(package="mtkeras")
class PieceBag(keras.layers.Layer):
    """``input_ids``, ``attention_mask`` ``[batch, length]`` -> float32 ``[batch, dim]``: the mean of the real
    tokens' piece vectors, plus (``buckets`` > 0) the mean of their hashed bigrams' vectors.

    Example:
        >>> bag = PieceBag(vocab_size=30522, dim=64, buckets=2**17, name="piece_bag")
        >>> bag(batch["input_ids"], batch["attention_mask"]).shape
        TensorShape([2, 64])
    """

    def __init__(self, vocab_size: int, dim: int, buckets: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.buckets = int(vocab_size), int(dim), int(buckets)

    def build(self, input_shape: Any) -> None:
        # Keras' Embedding initialiser: small uniform values, so the bag starts near zero beside the encoder.
        def table(name: str, rows: int) -> tf.Variable:
            return self.add_weight(name=name, shape=[rows, self.dim],
                                   initializer=keras.initializers.RandomUniform(-0.05, 0.05))

        self.pieces = table("pieces", self.vocab_size)
        self.bigrams = table("bigrams", self.buckets) if self.buckets else None
        super().build(input_shape)

    def call(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        # [batch, length, 1]; expand_dims, not [..., None]: TFLite's builtins have no strided slice with new axes.
        mask = tf.expand_dims(tf.cast(attention_mask, self.compute_dtype), -1)
        vector = _masked_mean(tf.gather(self.pieces, input_ids), mask)
        if self.bigrams is not None:
            # Pair (a, b) -> (a * vocab + b) mod buckets, in int64: no overflow for any vocabulary size.
            ids = tf.cast(input_ids, tf.int64)
            pairs = tf.math.floormod(ids[:, :-1] * self.vocab_size + ids[:, 1:], self.buckets)
            vector += _masked_mean(tf.gather(self.bigrams, pairs), mask[:, 1:] * mask[:, :-1])
        return vector

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim, "buckets": self.buckets}


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of ``values`` where ``mask`` is 1; zeros for a row without any."""
    return tf.reduce_sum(values * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

"""``PieceBag``: the wide part of a wide-and-deep model — a bag of the text's word pieces beside the encoder.

A linear model on word and n-gram counts (TF-IDF + logistic regression) reads a text differently from a
fine-tuned encoder, and the two err on different texts: on Debtags the mean of their probabilities scores
higher than either (BENCHMARKS.md, "Wide and deep"). ``PieceBag`` brings that reading into the one model:
every word piece of the text, and (with ``buckets``) every pair of consecutive pieces hashed into
``buckets`` rows, has a learned vector of ``dim`` numbers; the text's vector is the mean of its pieces'
plus the mean of its pairs', over real tokens only (``attention_mask``), of every window; with
``pooling="weighted"`` each piece and pair also learns a weight, and the means are weighted (a learned
inverse document frequency: TF-IDF weighs down pieces that occur everywhere, a plain mean cannot). The model
concatenates it to the pooled encoder vector, so each head is a linear model on both (Cheng et al. 2016,
"Wide & Deep Learning"; the bag itself is fastText's, Joulin et al. 2016), trained jointly by ``model.fit``.

It reads only ``input_ids`` and ``attention_mask``, so ``model.fit``, the ``Predictor``, the SavedModel and
TFLite compute it alike, and padding changes nothing (padded positions carry mask 0).
"""

from __future__ import annotations

from typing import Any

from mtkeras._checks import check_option
from mtkeras._compat import keras, tf
from mtkeras.defaults import BAG_POOLINGS


@keras.saving.register_keras_serializable(package="mtkeras")
class PieceBag(keras.layers.Layer):
    """``input_ids``, ``attention_mask`` ``[batch, length]`` -> float32 ``[batch, dim]``: the mean of the real
    tokens' piece vectors, plus (``buckets`` > 0) the mean of their hashed bigrams' vectors; ``pooling``
    is one of :data:`mtkeras.defaults.BAG_POOLINGS` (``"weighted"``: means weighted by learned per-piece and
    per-pair weights ``exp(w)``, ``w`` starting at 0).

    Example:
        >>> bag = PieceBag(vocab_size=30522, dim=64, buckets=2**17, pooling="weighted", name="piece_bag")
        >>> bag(batch["input_ids"], batch["attention_mask"]).shape
        TensorShape([2, 64])
    """

    def __init__(self, vocab_size: int, dim: int, buckets: int = 0, pooling: str = "mean", **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.buckets = int(vocab_size), int(dim), int(buckets)
        self.pooling = check_option(pooling, "pooling", BAG_POOLINGS)

    def build(self, input_shape: Any) -> None:
        # Keras' Embedding initialiser: small uniform values, so the bag starts near zero beside the encoder.
        def table(name: str, rows: int, width: int, initializer: Any) -> tf.Variable:
            return self.add_weight(name=name, shape=[rows, width], initializer=initializer)

        def vectors() -> keras.initializers.Initializer:  # one per table: an unseeded one reused repeats its values
            return keras.initializers.RandomUniform(-0.05, 0.05)

        self.pieces = table("pieces", self.vocab_size, self.dim, vectors())
        self.bigrams = table("bigrams", self.buckets, self.dim, vectors()) if self.buckets else None
        # Log-weights of "weighted" pooling, one per piece and per pair bucket: 0 at first, a plain mean.
        weighted = self.pooling == "weighted"
        self.piece_weights = table("piece_weights", self.vocab_size, 1, "zeros") if weighted else None
        self.bigram_weights = table("bigram_weights", self.buckets, 1, "zeros") if weighted and self.buckets else None
        super().build(input_shape)

    def call(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        # [batch, length, 1]; expand_dims, not [..., None]: TFLite's builtins have no strided slice with new axes.
        mask = tf.expand_dims(tf.cast(attention_mask, self.compute_dtype), -1)
        vector = _masked_mean(tf.gather(self.pieces, input_ids), _weighted(mask, self.piece_weights, input_ids))
        if self.bigrams is not None:
            # Pair (a, b) -> (a * vocab + b) mod buckets, in int64: no overflow for any vocabulary size.
            ids = tf.cast(input_ids, tf.int64)
            pairs = tf.math.floormod(ids[:, :-1] * self.vocab_size + ids[:, 1:], self.buckets)
            pair_mask = _weighted(mask[:, 1:] * mask[:, :-1], self.bigram_weights, pairs)
            vector += _masked_mean(tf.gather(self.bigrams, pairs), pair_mask)
        return vector

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim, "buckets": self.buckets,
                "pooling": self.pooling}


def _weighted(mask: tf.Tensor, log_weights: tf.Variable | None, ids: tf.Tensor) -> tf.Tensor:
    """``mask`` ``[batch, length, 1]`` times each token's ``exp(w)`` (``log_weights`` None: ``mask`` itself).

    Computed as ``exp(w - m)``, ``m`` the largest ``w`` of the row's real tokens: the weighted mean is unchanged,
    no ``exp`` overflows (padding counts as -1e9), and the row's weights sum to at least 1, so
    :func:`_masked_mean`'s floor of 1 only ever applies to a row without real tokens.
    """
    if log_weights is None:
        return mask
    weights = tf.gather(log_weights, ids) * mask + (mask - 1.0) * 1e9
    return tf.exp(weights - tf.stop_gradient(tf.reduce_max(weights, axis=1, keepdims=True))) * mask


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of ``values`` weighted by ``mask`` (0 or 1, or :func:`_weighted`'s); zeros for a row
    without any."""
    return tf.reduce_sum(values * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

"""Keras pieces the group kinds need beyond stock Keras: a de-normalising regression head,
a scale-aware regression loss, a token loss and a token ROC-AUC that skip ignored tokens.

All are registered, so a saved model loads without ``custom_objects``.
Token targets mark tokens that carry no loss (padding, [CLS], [SEP], word-piece
continuations) with :data:`IGNORED_TOKEN` in every label column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtkeras._checks import check_option
from mtkeras._compat import keras, tf
from mtkeras.kinds.regression import REGRESSION_LOSSES

#: Target value of a token that carries no loss and no metric.
IGNORED_TOKEN = -1.0


@keras.saving.register_keras_serializable(package="mtkeras")
class RegressionHead(keras.layers.Dense):
    """A linear head whose outputs are in the targets' own units: ``dense(x) * std + mean``.

    The dense part learns standardised targets (mean 0, std 1) when ``target_mean``
    and ``target_std`` are the training data's statistics; the model, and every
    export of it, outputs real values.

    Example:
        >>> head = RegressionHead(1, target_mean=[5.2], target_std=[3.1], name="tag_count")
    """

    def __init__(self, units: int, target_mean: Sequence[float], target_std: Sequence[float], **kwargs: Any) -> None:
        kwargs.pop("activation", None)
        super().__init__(units, activation=None, **kwargs)
        if len(target_mean) != units or len(target_std) != units:
            raise ValueError(
                f"RegressionHead: `target_mean` and `target_std` need {units} values each, received "
                f"{list(target_mean)!r} and {list(target_std)!r}."
            )
        self.target_mean = [float(v) for v in target_mean]
        self.target_std = [float(v) for v in target_std]

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        standardised = super().call(inputs)
        return standardised * tf.constant(self.target_std, self.compute_dtype) + tf.constant(
            self.target_mean, self.compute_dtype
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activation", None)
        config.update(target_mean=self.target_mean, target_std=self.target_std)
        return config


@keras.saving.register_keras_serializable(package="mtkeras")
class ScaledRegressionLoss(keras.losses.Loss):
    """MSE or Huber on ``(prediction - target) / scale``, averaged over targets.

    With ``scale`` = the targets' standard deviations this is the loss on
    standardised targets, so a count in the hundreds and a score in [0, 1] weigh
    alike; the loss weight in the spec then means what it says.
    """

    def __init__(self, loss: str = "mse", scale: Sequence[float] = (1.0,), delta: float = 1.0,
                 name: str | None = None, **kwargs: Any) -> None:
        check_option(loss, "loss", REGRESSION_LOSSES)
        super().__init__(name=name or loss, **kwargs)
        self.loss, self.scale, self.delta = loss, [float(s) for s in scale], float(delta)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        error = (tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)) / tf.constant(self.scale, tf.float32)
        if self.loss == "mse":
            per_target = tf.square(error)
        else:
            absolute = tf.abs(error)
            quadratic = tf.minimum(absolute, self.delta)
            per_target = 0.5 * tf.square(quadratic) + self.delta * (absolute - quadratic)
        return tf.reduce_mean(per_target, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "loss": self.loss, "scale": self.scale, "delta": self.delta}


@keras.saving.register_keras_serializable(package="mtkeras")
class WeightedCrossentropy(keras.losses.Loss):
    """Cross-entropy on probabilities with per-label weights and a focal term (Lin et al. 2017).

    ``mode="categorical"`` (softmax heads): ``-sum_j w_j y_j (1 - p_j)^gamma log p_j``: a row weighs
    its true class's weight. ``mode="binary"`` (sigmoid heads): the mean over labels of
    ``-(w_j y_j (1 - p_j)^gamma log p_j + (1 - y_j) p_j^gamma log(1 - p_j))``: ``w_j`` weighs the
    label's positives. Weights 1 and ``gamma`` 0 give Keras' own cross-entropies.

    Example:
        >>> WeightedCrossentropy("binary", label_weights=[1.0, 7.5], gamma=2.0)
    """

    def __init__(self, mode: str = "binary", label_weights: Sequence[float] | None = None, gamma: float = 0.0,
                 name: str | None = None, **kwargs: Any) -> None:
        check_option(mode, "mode", ("binary", "categorical"))
        super().__init__(name=name or f"weighted_{mode}_crossentropy", **kwargs)
        self.mode, self.gamma = mode, float(gamma)
        self.label_weights = None if label_weights is None else [float(w) for w in label_weights]

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        epsilon = keras.backend.epsilon()
        y_true = tf.cast(y_true, tf.float32)
        p = tf.clip_by_value(tf.cast(y_pred, tf.float32), epsilon, 1.0 - epsilon)
        weights = 1.0 if self.label_weights is None else tf.constant(self.label_weights, tf.float32)
        positive = weights * y_true * tf.math.log(p)
        if self.gamma:
            positive *= tf.pow(1.0 - p, self.gamma)
        if self.mode == "categorical":
            return -tf.reduce_sum(positive, axis=-1)
        negative = (1.0 - y_true) * tf.math.log(1.0 - p)
        if self.gamma:
            negative *= tf.pow(p, self.gamma)
        return -tf.reduce_mean(positive + negative, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "label_weights": self.label_weights, "gamma": self.gamma}


def token_weights(y_true: tf.Tensor, sample_weight: tf.Tensor | None) -> tf.Tensor:
    """float32 ``[batch, length]``: 1 on tokens that carry a target, times the row's sample weight."""
    weights = tf.cast(y_true[..., 0] > IGNORED_TOKEN / 2, tf.float32)
    if sample_weight is not None:
        weights *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1])
    return weights


@keras.saving.register_keras_serializable(package="mtkeras")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy averaged over the tokens that carry a target (and their labels).

    ``y_true`` is ``[batch, length, labels]`` with :data:`IGNORED_TOKEN` on tokens
    that carry no loss; a row's sample weight scales its tokens. The result is
    ``sum(weight * loss) / sum(weight)``, so padding and special tokens change
    neither the numerator nor the denominator.
    """

    def __init__(self, name: str = "masked_binary_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """Per-token loss ``[batch, length]`` (0 on ignored tokens)."""
        y_true, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
        per_label = keras.backend.binary_crossentropy(tf.maximum(y_true, 0.0), y_pred)
        return tf.reduce_mean(per_label, axis=-1) * token_weights(y_true, None)

    def __call__(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> tf.Tensor:
        with tf.name_scope(self.name):
            weights = token_weights(tf.cast(y_true, tf.float32), sample_weight)
            total = tf.reduce_sum(self.call(y_true, y_pred) * weights)
            return tf.math.divide_no_nan(total, tf.reduce_sum(weights))


@keras.saving.register_keras_serializable(package="mtkeras")
class TokenAUC(keras.metrics.AUC):
    """ROC-AUC over the tokens that carry a target (one AUC per label, averaged)."""

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> Any:
        y_true = tf.cast(y_true, tf.float32)
        labels = tf.shape(y_true)[-1]
        weights = tf.reshape(token_weights(y_true, sample_weight), [-1, 1])
        return super().update_state(
            tf.reshape(tf.maximum(y_true, 0.0), [-1, labels]),
            tf.reshape(tf.cast(y_pred, tf.float32), [-1, labels]),
            sample_weight=weights,
        )

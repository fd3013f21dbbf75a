"""Learned loss weights (``TaskSpec.loss_weighting="uncertainty"``; Kendall, Gal and Cipolla 2018).

Each output ``g`` gets one learned log-variance ``s_g`` (0 at first), and its loss ``L_g`` enters the total as
``loss_weight_g * (exp(-s_g) * L_g + s_g)``. Minimising over ``s_g`` gives ``exp(-s_g) = 1 / L_g``: each group's
gradient is weighed by ``loss_weight_g / L_g``, so a group whose loss is small (a sigmoid head's per-label
cross-entropy beside a 37-way softmax) is not drowned out, and the spec's static weights stay a prior on top.

The log-variances live in the model (:class:`TaskUncertainty`, an identity layer on the encoder's output that
owns them), so they are saved, restored on resume and stepped by the optimizer like any weight; each group's
loss is wrapped by :class:`UncertaintyWeightedLoss`, bound to its log-variance by
:func:`mtkeras.compile_model`. Inference never reads them: every export answers as without them.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from mtkeras._compat import keras, tf

#: The TaskUncertainty layer built last in this process: a loss rebuilt from its config by Keras binds to it (Keras
#: rebuilds a loaded model's layers, then its compiled losses, in one call).
_last_built: weakref.ref | None = None


@keras.saving.register_keras_serializable(package="mtkeras")
class TaskUncertainty(keras.layers.Layer):
    """Identity on its input; owns ``log_variance``, one learned value per group (in ``group_names`` order).

    Example:
        >>> layer = TaskUncertainty(["section", "use"], name="loss_uncertainty")
        >>> hidden = layer(hidden)
        >>> layer.scales()  # {"section": exp(-s_section), "use": exp(-s_use)}: 1.0 each before training
    """

    def __init__(self, group_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group_names = [str(name) for name in group_names]
        if not self.group_names:
            raise ValueError("TaskUncertainty: `group_names` is empty; give one name per output, received [].")

    def build(self, input_shape: Any) -> None:
        global _last_built
        self.log_variance = self.add_weight(name="log_variance", shape=[len(self.group_names)],
                                            initializer="zeros", dtype="float32")
        super().build(input_shape)
        _last_built = weakref.ref(self)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.identity(inputs)

    def scales(self) -> dict[str, float]:
        """Each group's current factor ``exp(-s_g)`` on its loss."""
        values = tf.exp(-self.log_variance).numpy()
        return {name: float(value) for name, value in zip(self.group_names, values, strict=True)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "group_names": self.group_names}


@keras.saving.register_keras_serializable(package="mtkeras")
class UncertaintyWeightedLoss(keras.losses.Loss):
    """``exp(-s) * loss + s``, ``s`` being group ``group``'s entry of a :class:`TaskUncertainty` layer's
    log-variances.

    ``loss`` is reduced as it reduces itself (sample weights included), then weighed. :func:`mtkeras.compile_model`
    binds each loss to its model's layer. A loss rebuilt from its config — a compiled model loaded by plain
    ``keras.models.load_model``, e.g. a ``ModelCheckpoint`` file — binds to the layer Keras built just before it
    in the same load (the model's own: Keras builds a model's layers, then compiles it); one that finds none
    refuses to compute and says to compile with :func:`mtkeras.compile_model`.

    Example:
        >>> layer = model.get_layer("loss_uncertainty")
        >>> loss = UncertaintyWeightedLoss(keras.losses.BinaryCrossentropy(), group="use", layer=layer)
    """

    def __init__(self, loss: Any, group: str, layer: TaskUncertainty | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        self.inner = keras.losses.deserialize(loss) if isinstance(loss, dict) else loss
        super().__init__(name=name or f"uncertainty_{getattr(self.inner, 'name', 'loss')}", **kwargs)
        self.group = str(group)
        self._layer: weakref.ref | None = None
        if layer is not None:
            self.bind(layer)

    def bind(self, layer: TaskUncertainty) -> None:
        """Read the log-variance of ``self.group`` in ``layer``."""
        if self.group not in layer.group_names:
            raise ValueError(f"{self.name}: group {self.group!r} has no log-variance in layer {layer.name!r}, which "
                             f"holds {list(layer.group_names)}.")
        # A weak reference, not the layer: Keras' saving walks a compiled model's losses before its layers and would
        # store the layer's variables under the loss's path, leaving none under the layer's own.
        self._layer = weakref.ref(layer)

    def bound_layer(self) -> TaskUncertainty | None:
        """The layer holding the log-variance this loss reads (None: not bound)."""
        return None if self._layer is None else self._layer()

    def __call__(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> tf.Tensor:
        layer = self.bound_layer()
        if layer is None:
            raise ValueError(
                f"{self.name} (group {self.group!r}): this loss is not bound to a model's learned log-variances; "
                "compile the model with mtkeras.compile_model(model, spec), which binds it."
            )
        # Keras' compile lets the loss it was given (this one) average over the batch under a tf.distribute strategy,
        # and scales that average per replica itself; the inner loss computes the average for it.
        self.inner._allow_sum_over_batch_size = self._allow_sum_over_batch_size
        value = tf.cast(self.inner(y_true, y_pred, sample_weight=sample_weight), tf.float32)
        log_variance = layer.log_variance[layer.group_names.index(self.group)]
        return tf.exp(-log_variance) * value + log_variance

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "loss": keras.losses.serialize(self.inner), "group": self.group}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UncertaintyWeightedLoss:
        loss = cls(**config)
        layer = None if _last_built is None else _last_built()
        if layer is not None and loss.group in layer.group_names:
            loss.bind(layer)
        return loss


class LossScales(keras.callbacks.Callback):
    """Adds ``loss_scale_<group>`` (``exp(-s_g)``, the learned factor on each group's loss) to the epoch logs."""

    def __init__(self, layer_name: str) -> None:
        super().__init__()
        self.layer_name = layer_name

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        layer = self.model.get_layer(self.layer_name)
        logs.update({f"loss_scale_{name}": value for name, value in layer.scales().items()})

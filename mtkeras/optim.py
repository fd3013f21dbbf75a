"""``RAdam``: rectified Adam (Liu et al., 2020) as a serializable tf_keras optimizer."""

from __future__ import annotations

import math
import re
from typing import Any

from mtkeras._compat import keras, tf


@keras.saving.register_keras_serializable(package="mtkeras")
class RAdam(keras.optimizers.Optimizer):
    """Rectified Adam with optional linear warm-up/decay and decoupled weight decay.

    The update is Algorithm 2 of Liu et al., "On the Variance of the Adaptive
    Learning Rate and Beyond" (ICLR 2020): while the variance of the adaptive
    learning rate is intractable (``rho_t <= rectify_threshold``) the step is
    SGD with momentum; afterwards it is Adam scaled by the rectification term
    ``r_t``. On top of the schedule in ``learning_rate`` the step size ramps up
    linearly over ``warmup_steps`` and, when ``total_steps`` is set, decays
    linearly to ``min_learning_rate`` at ``total_steps`` (as in
    tensorflow-addons' RectifiedAdam). Weight decay is decoupled (AdamW-style):
    ``w -= lr_t * weight_decay * w``; exclude variables with
    ``exclude_from_weight_decay(var_names=[...])``. ``lr_multipliers`` maps
    regular expressions on variable names to a factor on their step size
    (e.g. freshly initialised heads learning faster than a pretrained encoder);
    the first matching pattern wins.

    Example:
        >>> optimizer = RAdam(learning_rate=3e-5, warmup_steps=100, weight_decay=0.01)
        >>> model.compile(optimizer=optimizer, loss=...)
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        warmup_steps: int = 0,
        total_steps: int = 0,
        min_learning_rate: float = 0.0,
        rectify_threshold: float = 5.0,
        lr_multipliers: dict[str, float] | None = None,
        name: str = "RAdam",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        for arg, value, low, high in (
            ("beta_1", beta_1, 0.0, 1.0),
            ("beta_2", beta_2, 0.0, 1.0),
        ):
            if not low <= value < high:
                raise ValueError(f"RAdam `{arg}` must be in [{low}, {high}), received {value!r}.")
        if not epsilon > 0:
            raise ValueError(f"RAdam `epsilon` must be > 0, received {epsilon!r}.")
        if weight_decay is not None and not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"RAdam `weight_decay` must be >= 0 or None, received {weight_decay!r}.")
        for arg, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"RAdam `{arg}` must be an integer >= 0, received {value!r}.")
        if total_steps and total_steps <= warmup_steps:
            raise ValueError(
                f"RAdam `total_steps`={total_steps} must exceed `warmup_steps`={warmup_steps} "
                "(or be 0 for no decay)."
            )
        if not min_learning_rate >= 0:
            raise ValueError(f"RAdam `min_learning_rate` must be >= 0, received {min_learning_rate!r}.")
        lr_multipliers = dict(lr_multipliers or {})
        for pattern, factor in lr_multipliers.items():
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"RAdam `lr_multipliers` key {pattern!r} is not a regular expression: {error}."
                ) from None
            if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
                raise ValueError(
                    f"RAdam `lr_multipliers[{pattern!r}]` must be a finite number > 0, received {factor!r}."
                )
        self.lr_multipliers = lr_multipliers
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_learning_rate = min_learning_rate
        self.rectify_threshold = rectify_threshold

    def build(self, var_list: list[tf.Variable]) -> None:
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        self._momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "v") for v in var_list]

    def _step_size(self, step: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        """The learning rate at 1-based ``step`` after warm-up and decay."""
        lr = tf.cast(self.learning_rate, dtype)
        if self.warmup_steps:
            lr = lr * tf.minimum(1.0, step / float(self.warmup_steps))
        if self.total_steps:
            decay_steps = float(self.total_steps - self.warmup_steps)
            progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            min_lr = tf.constant(self.min_learning_rate, dtype)
            lr = tf.where(step > self.warmup_steps, lr + (min_lr - lr) * progress, lr)
        return lr

    def _multiplier(self, variable: tf.Variable) -> float:
        for pattern, factor in self.lr_multipliers.items():
            if re.search(pattern, variable.name):
                return float(factor)
        return 1.0

    def update_step(self, gradient: tf.Tensor, variable: tf.Variable) -> None:
        dtype = variable.dtype
        gradient = tf.convert_to_tensor(gradient)  # sparse (embedding) gradients become dense
        step = tf.cast(self.iterations + 1, dtype)
        lr = self._step_size(step, dtype) * self._multiplier(variable)
        # tf.constant, not tf.cast: casting a Python float goes through float32 first.
        beta_1 = tf.constant(self.beta_1, dtype)
        beta_2 = tf.constant(self.beta_2, dtype)
        beta_1_power = tf.pow(beta_1, step)
        beta_2_power = tf.pow(beta_2, step)

        if self.weight_decay is not None and self._use_weight_decay(variable):
            variable.assign_sub(variable * lr * tf.constant(self.weight_decay, dtype))

        index = self._index_dict[self._var_key(variable)]
        m = self._momentums[index]
        v = self._velocities[index]
        m.assign(beta_1 * m + (1.0 - beta_1) * gradient)
        v.assign(beta_2 * v + (1.0 - beta_2) * tf.square(gradient))
        m_hat = m / (1.0 - beta_1_power)

        rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta_2_power / (1.0 - beta_2_power)
        # Clamp inside the sqrt: both branches are evaluated by tf.where.
        r_t = tf.sqrt(
            tf.maximum(rho_t - 4.0, 0.0)
            * tf.maximum(rho_t - 2.0, 0.0)
            * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        )
        adaptive = tf.sqrt(1.0 - beta_2_power) / (tf.sqrt(v) + tf.constant(self.epsilon, dtype))
        update = tf.where(rho_t > self.rectify_threshold, r_t * m_hat * adaptive, m_hat)
        variable.assign_sub(lr * update)

    def _apply_weight_decay(self, variables: list[tf.Variable]) -> None:
        # Weight decay is applied in update_step, scaled by the warmed-up step size.
        return

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps,
                "min_learning_rate": self.min_learning_rate,
                "rectify_threshold": self.rectify_threshold,
                "lr_multipliers": dict(self.lr_multipliers),
            }
        )
        return config

"""``multiclass``: exactly one label per text (softmax head, categorical cross-entropy, argmax)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras.defaults import ROC_AUC
from mtkeras.kinds.base import PROBABILITIES, Features, GroupKind, Output, per_label_auc, text


class Multiclass(GroupKind):
    """Exactly one label per text.

    Example:
        >>> LabelGroup("section", "multiclass", labels=["net", "utils"]).rules.decode(np.array([[0.2, 0.8]]), [""])
        ['utils']
    """

    name = "multiclass"
    description = "exactly one label per text (softmax head, categorical cross-entropy)"
    min_labels = 2
    losses = ("categorical_crossentropy", "focal")
    focal_losses = ("focal",)
    weighs_classes = True
    calibrates = True
    neighbour_vote = "distribution"
    decision = "decoded by argmax"
    metric_names = ("accuracy", ROC_AUC)
    selection_metric = "roc_auc_ovr_macro"
    outputs = (PROBABILITIES, Output("labels", "string", ("batch",), "the label with the highest probability"))
    raw_output = Output("probabilities", "float32", ("batch", "n_labels"), "the head's probabilities")

    # --- head -> loss -> metrics ---------------------------------------------------------

    def head(self, features: Features, initializer: Any, name: str) -> Any:
        return self._dense("softmax", initializer, name)(features.pooled)

    def loss(self) -> Any:
        from mtkeras._compat import keras

        return self._weighted_loss("categorical") or keras.losses.CategoricalCrossentropy()

    def metrics(self) -> list[Any]:
        from mtkeras._compat import keras

        return [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            # multi_label=True averages one AUC per class: one-vs-rest macro ROC-AUC.
            keras.metrics.AUC(curve="ROC", multi_label=True, num_labels=len(self.group.labels), name=ROC_AUC),
        ]

    def fit_class_weights(self, targets: np.ndarray) -> tuple[float, ...]:
        counts = targets.sum(axis=0, dtype=np.float64)
        balanced = np.where(counts > 0, len(targets) / (len(counts) * np.maximum(counts, 1)), 1.0)
        return tuple(float(w) for w in (np.sqrt(balanced) if self.group.class_weight == "sqrt_balanced" else balanced))

    # --- calibration: softmax(log p / T), the same as dividing the logits by T ---------------

    def _scaled(self, values: Any, temperature: float) -> Any:
        from mtkeras._compat import tf

        return tf.nn.softmax(tf.math.log(tf.clip_by_value(values, 1e-12, 1.0)) / temperature, axis=-1)

    def log_loss(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return float(-np.mean(np.sum(targets * np.log(np.clip(outputs, 1e-12, 1.0)), axis=-1)))

    def _confidences(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return outputs.max(axis=-1), (outputs.argmax(axis=-1) == targets.argmax(axis=-1)).astype(np.float64)

    # --- encode ----------------------------------------------------------------------

    def encode(self, value: Any, row: int, text: str) -> np.ndarray:
        if isinstance(value, (list, tuple, set, frozenset)) and len(value) != 1:
            raise ValueError(
                f"{self.where(row)}: a cell holds exactly one label, received "
                f"{len(value)} labels {sorted(value)!r}; use a multilabel group for several labels per text."
            )
        if isinstance(value, (list, tuple)):
            value = value[0]
        if not isinstance(value, str):
            raise TypeError(
                f"{self.where(row)}: expected one label as a string, received {value!r} ({type(value).__name__})."
            )
        target = np.zeros(len(self.group.labels), dtype=np.float32)
        target[self.label_index(value, row)] = 1.0
        return target

    # --- decode ----------------------------------------------------------------------

    def decode(self, outputs: np.ndarray, texts: Sequence[str]) -> list[str]:
        return [self.group.labels[i] for i in np.argmax(outputs, axis=-1)]

    def indicator(self, outputs: np.ndarray) -> np.ndarray:
        return np.eye(len(self.group.labels), dtype=np.int8)[np.argmax(outputs, axis=-1)]

    def flatten(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs)

    # --- serve -----------------------------------------------------------------------

    def serve(self, values: Any, words: Any) -> dict[str, Any]:
        from mtkeras._compat import tf

        labels = tf.gather(tf.constant(list(self.group.labels)), tf.argmax(values, axis=-1, output_type=tf.int32))
        return {"probabilities": values, "labels": labels}

    def read_served(self, row: Mapping[str, Any]) -> str:
        return text(self.served(row, "labels"))

    # --- evaluate --------------------------------------------------------------------

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, f1_score

        true = np.argmax(targets, axis=-1)
        predicted = np.argmax(outputs, axis=-1)
        present = sorted(set(true.tolist()) | set(predicted.tolist()))
        auc, skipped = per_label_auc(targets, outputs)
        return {
            "accuracy": float(accuracy_score(true, predicted)),
            "macro_f1": float(f1_score(true, predicted, labels=present, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(true, predicted, average="micro", zero_division=0)),
            "roc_auc_ovr_macro": auc,
            "ece": self.calibration_error(outputs, targets),
            "roc_auc_labels_skipped": skipped,
            "per_label": self.label_report(targets, self.indicator(outputs)),
        }

"""``multilabel``: any number of labels per text (sigmoid head, binary cross-entropy, tuned thresholds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras.defaults import ROC_AUC
from mtkeras.kinds.base import (
    PROBABILITIES,
    Features,
    GroupKind,
    Output,
    graph_thresholded_labels,
    parse_json,
    per_label_auc,
    served_labels,
)


class Multilabel(GroupKind):
    """Any number of labels per text, each chosen by its own threshold.

    Example:
        >>> LabelGroup("use", "multilabel", labels=["a", "b"]).rules.decode(np.array([[0.7, 0.2]]), [""])
        [['a']]
    """

    name = "multilabel"
    description = "any number of labels per text (sigmoid head, binary cross-entropy)"
    losses = ("binary_crossentropy", "focal")
    focal_losses = ("focal",)
    weighs_classes = True
    calibrates = True
    neighbour_vote = "independent"
    thresholded = True
    metric_names = ("accuracy", ROC_AUC)
    selection_metric = "roc_auc_macro"
    outputs = (
        PROBABILITIES,
        Output("labels", "string", ("batch", "n_labels"),
               "the labels whose probability >= their threshold, in label order, then '' padding"),
    )
    raw_output = Output("probabilities", "float32", ("batch", "n_labels"), "the head's probabilities")

    # --- head -> loss -> metrics ---------------------------------------------------------

    def head(self, features: Features, initializer: Any, name: str) -> Any:
        return self._dense("sigmoid", initializer, name)(features.pooled)

    def loss(self) -> Any:
        from mtkeras._compat import keras

        return self._weighted_loss("binary") or keras.losses.BinaryCrossentropy()

    def metrics(self) -> list[Any]:
        from mtkeras._compat import keras

        return [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(curve="ROC", multi_label=True, num_labels=len(self.group.labels), name=ROC_AUC),
        ]

    def fit_class_weights(self, targets: np.ndarray) -> tuple[float, ...]:
        """Weights on each label's positives: negatives / positives ('balanced'), or its square root."""
        positives = targets.sum(axis=0, dtype=np.float64)
        balanced = np.where(positives > 0, (len(targets) - positives) / np.maximum(positives, 1), 1.0)
        balanced = np.maximum(balanced, 1e-3)  # a label on every row still weighs > 0
        return tuple(float(w) for w in (np.sqrt(balanced) if self.group.class_weight == "sqrt_balanced" else balanced))

    # --- calibration: sigmoid(logit(p) / T), one temperature for the group's labels -----------

    def _scaled(self, values: Any, temperature: float) -> Any:
        from mtkeras._compat import tf

        p = tf.clip_by_value(values, 1e-7, 1.0 - 1e-7)
        return tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) / temperature)

    def log_loss(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        p = np.clip(outputs, 1e-7, 1.0 - 1e-7)
        return float(-np.mean(targets * np.log(p) + (1.0 - targets) * np.log1p(-p)))

    def _confidences(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(outputs, np.float64).ravel(), np.asarray(targets, np.float64).ravel()

    # --- encode ----------------------------------------------------------------------

    def encode(self, value: Any, row: int, text: str) -> np.ndarray:
        if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
            raise TypeError(
                f"{self.where(row)}: expected a list of labels "
                f"(an empty list for none), received {value!r} ({type(value).__name__})."
            )
        target = np.zeros(len(self.group.labels), dtype=np.float32)
        for label in value:
            target[self.label_index(label, row)] = 1.0
        return target

    @classmethod
    def parse_cell(cls, value: str, delimiter: str) -> Any:
        """A JSON list, or labels separated by ``delimiter``."""
        if value.lstrip().startswith("["):
            return parse_json(value, "a JSON list")
        return [label.strip() for label in value.split(delimiter) if label.strip()]

    # --- decode ----------------------------------------------------------------------

    def indicator(self, outputs: np.ndarray) -> np.ndarray:
        return (outputs >= np.asarray(self.group.thresholds, dtype=outputs.dtype)).astype(np.int8)

    def decode(self, outputs: np.ndarray, texts: Sequence[str]) -> list[list[str]]:
        return [[self.group.labels[i] for i in np.flatnonzero(row)] for row in self.indicator(outputs)]

    def flatten(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs)

    # --- serve -----------------------------------------------------------------------

    def serve(self, values: Any, words: Any) -> dict[str, Any]:
        labels = graph_thresholded_labels(self.group.labels, self.group.thresholds, values)
        return {"probabilities": values, "labels": labels}

    def read_served(self, row: Mapping[str, Any]) -> list[str]:
        return served_labels(self.served(row, "labels"))

    # --- evaluate --------------------------------------------------------------------

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import f1_score, roc_auc_score

        predicted = self.indicator(outputs)
        true = targets.astype(np.int8)
        auc_macro, skipped = per_label_auc(targets, outputs)
        both_classes = 0 < true.sum() < true.size
        return {
            "micro_f1": float(f1_score(true, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
            "roc_auc_micro": float(roc_auc_score(true.ravel(), outputs.ravel())) if both_classes else None,
            "roc_auc_macro": auc_macro,
            "ece": self.calibration_error(outputs, targets),
            "roc_auc_labels_skipped": skipped,
            "subset_accuracy": float(np.mean(np.all(predicted == true, axis=1))),
            "per_label": self.label_report(targets, predicted),
        }

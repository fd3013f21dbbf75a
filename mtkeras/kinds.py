"""Per-kind rules: the one place that says what a label group of each kind is.

A :class:`Kind` holds everything that differs between group kinds: head
activation, loss, metrics, how one row's labels become a target vector and how
a batch of head outputs becomes label names. Every other module looks a kind
up in :data:`KINDS`; adding a kind is adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mtkeras._compat import keras

if TYPE_CHECKING:  # pragma: no cover
    from mtkeras.spec import LabelGroup


def _preview(values: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} labels)"


def _label_index(group: LabelGroup, label: Any, row: int) -> int:
    try:
        return group.labels.index(label)
    except ValueError:
        raise ValueError(
            f"Row {row}, group {group.name!r}: unknown label {label!r}. "
            f"Accepted labels: {_preview(group.labels)}."
        ) from None


# --- multiclass: exactly one label per row ---------------------------------


def _encode_multiclass(group: LabelGroup, value: Any, row: int) -> np.ndarray:
    if not isinstance(value, str):
        raise TypeError(
            f"Row {row}, group {group.name!r} (multiclass): expected one label as a "
            f"string, received {value!r} ({type(value).__name__})."
        )
    target = np.zeros(len(group.labels), dtype=np.float32)
    target[_label_index(group, value, row)] = 1.0
    return target


def _decode_multiclass(group: LabelGroup, probs: np.ndarray) -> list[str]:
    return [group.labels[i] for i in np.argmax(probs, axis=-1)]


def _multiclass_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        # multi_label=True averages one AUC per class: one-vs-rest macro ROC-AUC.
        keras.metrics.AUC(
            curve="ROC", multi_label=True, num_labels=len(group.labels), name="roc_auc"
        ),
    ]


# --- multilabel: any number of labels per row ------------------------------


def _encode_multilabel(group: LabelGroup, value: Any, row: int) -> np.ndarray:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            f"Row {row}, group {group.name!r} (multilabel): expected a list of labels "
            f"(an empty list for none), received {value!r} ({type(value).__name__})."
        )
    target = np.zeros(len(group.labels), dtype=np.float32)
    for label in value:
        target[_label_index(group, label, row)] = 1.0
    return target


def _decode_multilabel(group: LabelGroup, probs: np.ndarray) -> list[list[str]]:
    chosen = probs >= np.asarray(group.thresholds, dtype=probs.dtype)
    return [[group.labels[i] for i in np.flatnonzero(row)] for row in chosen]


def _multilabel_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.AUC(
            curve="ROC", multi_label=True, num_labels=len(group.labels), name="roc_auc"
        ),
    ]


@dataclass(frozen=True)
class Kind:
    """What a label-group kind means for the head, the loss, the metrics and decoding."""

    name: str
    description: str
    min_labels: int
    activation: str
    uses_thresholds: bool
    make_loss: Callable[[], keras.losses.Loss]
    make_metrics: Callable[[LabelGroup], list[keras.metrics.Metric]]
    encode: Callable[[LabelGroup, Any, int], np.ndarray]
    decode: Callable[[LabelGroup, np.ndarray], list[Any]]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            name="multiclass",
            description="exactly one label per text (softmax head, categorical cross-entropy)",
            min_labels=2,
            activation="softmax",
            uses_thresholds=False,
            make_loss=lambda: keras.losses.CategoricalCrossentropy(),
            make_metrics=_multiclass_metrics,
            encode=_encode_multiclass,
            decode=_decode_multiclass,
        ),
        Kind(
            name="multilabel",
            description="any number of labels per text (sigmoid head, binary cross-entropy)",
            min_labels=1,
            activation="sigmoid",
            uses_thresholds=True,
            make_loss=lambda: keras.losses.BinaryCrossentropy(),
            make_metrics=_multilabel_metrics,
            encode=_encode_multilabel,
            decode=_decode_multilabel,
        ),
    )
}

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

from mtkeras._compat import keras, tf

if TYPE_CHECKING:  # pragma: no cover
    from mtkeras.spec import LabelGroup


def _where(group: LabelGroup, row: int) -> str:
    """``Row 3, column 'use' (multilabel group 'use')``: where a bad cell is."""
    return f"Row {row}, column {group.source_column!r} ({group.kind} group {group.name!r})"


def _preview(values: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} labels)"


def _label_index(group: LabelGroup, label: Any, row: int) -> int:
    try:
        return group.labels.index(label)
    except ValueError:
        raise ValueError(
            f"{_where(group, row)}: unknown label {label!r}. "
            f"Accepted labels: {_preview(group.labels)}."
        ) from None


def _per_label_auc(targets: np.ndarray, probs: np.ndarray) -> tuple[float | None, int]:
    """Macro ROC-AUC over labels that have both classes in ``targets``, and how many were skipped."""
    from sklearn.metrics import roc_auc_score

    scores, skipped = [], 0
    for j in range(targets.shape[1]):
        column = targets[:, j]
        if column.min() == column.max():
            skipped += 1
            continue
        scores.append(roc_auc_score(column, probs[:, j]))
    return (float(np.mean(scores)) if scores else None), skipped


def _label_report(group: LabelGroup, targets: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import classification_report

    return classification_report(
        targets.astype(int),
        predicted.astype(int),
        labels=list(range(len(group.labels))),
        target_names=list(group.labels),
        output_dict=True,
        zero_division=0,
    )


# --- multiclass: exactly one label per row ---------------------------------


def _encode_multiclass(group: LabelGroup, value: Any, row: int) -> np.ndarray:
    if isinstance(value, (list, tuple, set, frozenset)) and len(value) != 1:
        raise ValueError(
            f"{_where(group, row)}: a cell holds exactly one label, received "
            f"{len(value)} labels {sorted(value)!r}; use a multilabel group for several labels per text."
        )
    if isinstance(value, (list, tuple)):
        value = value[0]
    if not isinstance(value, str):
        raise TypeError(
            f"{_where(group, row)}: expected one label as a "
            f"string, received {value!r} ({type(value).__name__})."
        )
    target = np.zeros(len(group.labels), dtype=np.float32)
    target[_label_index(group, value, row)] = 1.0
    return target


def _decode_multiclass(group: LabelGroup, probs: np.ndarray) -> list[str]:
    return [group.labels[i] for i in np.argmax(probs, axis=-1)]


def _indicator_multiclass(group: LabelGroup, probs: np.ndarray) -> np.ndarray:
    return np.eye(len(group.labels), dtype=np.int8)[np.argmax(probs, axis=-1)]


def _evaluate_multiclass(group: LabelGroup, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    true = np.argmax(targets, axis=-1)
    predicted = np.argmax(probs, axis=-1)
    present = sorted(set(true.tolist()) | set(predicted.tolist()))
    auc, skipped = _per_label_auc(targets, probs)
    return {
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, labels=present, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(true, predicted, average="micro", zero_division=0)),
        "roc_auc_ovr_macro": auc,
        "roc_auc_labels_skipped": skipped,
        "per_label": _label_report(group, targets, _indicator_multiclass(group, probs)),
    }


def _graph_decode_multiclass(group: LabelGroup, probs: tf.Tensor) -> tf.Tensor:
    """string ``[batch]``: the argmax label."""
    return tf.gather(tf.constant(group.labels), tf.argmax(probs, axis=-1, output_type=tf.int32))


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
            f"{_where(group, row)}: expected a list of labels "
            f"(an empty list for none), received {value!r} ({type(value).__name__})."
        )
    target = np.zeros(len(group.labels), dtype=np.float32)
    for label in value:
        target[_label_index(group, label, row)] = 1.0
    return target


def _decode_multilabel(group: LabelGroup, probs: np.ndarray) -> list[list[str]]:
    return [[group.labels[i] for i in np.flatnonzero(row)] for row in _indicator_multilabel(group, probs)]


def _indicator_multilabel(group: LabelGroup, probs: np.ndarray) -> np.ndarray:
    return (probs >= np.asarray(group.thresholds, dtype=probs.dtype)).astype(np.int8)


def _evaluate_multilabel(group: LabelGroup, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import f1_score, roc_auc_score

    predicted = _indicator_multilabel(group, probs)
    true = targets.astype(np.int8)
    auc_macro, skipped = _per_label_auc(targets, probs)
    both_classes = 0 < true.sum() < true.size
    return {
        "micro_f1": float(f1_score(true, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
        "roc_auc_micro": float(roc_auc_score(true.ravel(), probs.ravel())) if both_classes else None,
        "roc_auc_macro": auc_macro,
        "roc_auc_labels_skipped": skipped,
        "subset_accuracy": float(np.mean(np.all(predicted == true, axis=1))),
        "per_label": _label_report(group, targets, predicted),
    }


def _graph_decode_multilabel(group: LabelGroup, probs: tf.Tensor) -> tf.Tensor:
    """string ``[batch, n_labels]``: the chosen labels first (in label order), then "" padding.

    A fixed-width, ragged-free layout that REST JSON and gRPC carry as is.
    """
    width = len(group.labels)
    chosen = probs >= tf.constant(group.thresholds, probs.dtype)
    names = tf.broadcast_to(tf.constant(group.labels), tf.shape(chosen))
    return tf.ragged.boolean_mask(names, chosen).to_tensor(default_value="", shape=[None, width])


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
    #: 0/1 matrix of the decoded labels, for F1 scores over all groups together.
    indicator: Callable[[LabelGroup, np.ndarray], np.ndarray]
    #: the evaluation report of one group: (group, probs, targets) -> metrics.
    evaluate: Callable[[LabelGroup, np.ndarray, np.ndarray], dict[str, Any]]
    #: in-graph decoding for exports: probabilities tensor -> string tensor of labels.
    graph_decode: Callable[[LabelGroup, tf.Tensor], tf.Tensor]
    #: how ``graph_decode``'s output reads, for the export metadata and docs.
    labels_layout: str


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
            indicator=_indicator_multiclass,
            evaluate=_evaluate_multiclass,
            graph_decode=_graph_decode_multiclass,
            labels_layout="string [batch]: the label with the highest probability",
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
            indicator=_indicator_multilabel,
            evaluate=_evaluate_multilabel,
            graph_decode=_graph_decode_multilabel,
            labels_layout=(
                "string [batch, n_labels]: the labels whose probability >= their threshold, in label "
                "order, then '' padding"
            ),
        ),
    )
}

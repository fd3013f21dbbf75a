"""Per-kind rules: the one place that says what a label group of each kind is.

A :class:`Kind` holds everything that differs between group kinds: the head
(on the pooled vector or on every token), loss, metrics, how one row's labels
become a target, how head outputs become answers (label names, floats, words
with labels), the evaluation report, and the outputs of an export. Every other
module looks a kind up in :data:`KINDS`; adding a kind is adding one entry here.

Kinds: ``multiclass`` (one label per text), ``multilabel`` (any number per
text), ``regression`` (one float per named target) and ``token_multilabel``
(any number of labels per word).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mtkeras._compat import keras, tf
from mtkeras.heads import (
    REGRESSION_LOSSES,
    MaskedBinaryCrossentropy,
    RegressionHead,
    ScaledRegressionLoss,
    TokenAUC,
)
from mtkeras.words import label_runs, split_words

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


def _encode_multiclass(group: LabelGroup, value: Any, row: int, text: str) -> np.ndarray:
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


def _decode_multiclass(group: LabelGroup, probs: np.ndarray, texts: Sequence[str]) -> list[str]:
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


def _serve_multiclass(group: LabelGroup, probs: tf.Tensor, words: Any) -> dict[str, tf.Tensor]:
    return {"probabilities": probs, "labels": _graph_decode_multiclass(group, probs)}


def _serve_multilabel(group: LabelGroup, probs: tf.Tensor, words: Any) -> dict[str, tf.Tensor]:
    return {"probabilities": probs, "labels": _graph_decode_multilabel(group, probs)}


def _multiclass_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        # multi_label=True averages one AUC per class: one-vs-rest macro ROC-AUC.
        keras.metrics.AUC(
            curve="ROC", multi_label=True, num_labels=len(group.labels), name="roc_auc"
        ),
    ]


# --- multilabel: any number of labels per row ------------------------------


def _encode_multilabel(group: LabelGroup, value: Any, row: int, text: str) -> np.ndarray:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            f"{_where(group, row)}: expected a list of labels "
            f"(an empty list for none), received {value!r} ({type(value).__name__})."
        )
    target = np.zeros(len(group.labels), dtype=np.float32)
    for label in value:
        target[_label_index(group, label, row)] = 1.0
    return target


def _decode_multilabel(group: LabelGroup, probs: np.ndarray, texts: Sequence[str]) -> list[list[str]]:
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
    """string ``[..., n_labels]``: the chosen labels first (in label order), then "" padding.

    A fixed-width, ragged-free layout that REST JSON and gRPC carry as is.
    """
    width = len(group.labels)
    chosen = probs >= tf.constant(group.thresholds, probs.dtype)
    names = tf.broadcast_to(tf.constant(group.labels), tf.shape(chosen))
    shape = [None] * (probs.shape.rank - 1) + [width]
    return tf.ragged.boolean_mask(names, chosen).to_tensor(default_value="", shape=shape)


def _multilabel_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.AUC(
            curve="ROC", multi_label=True, num_labels=len(group.labels), name="roc_auc"
        ),
    ]




def _parse_label_list(value: str, delimiter: str) -> Any:
    """A multilabel CSV cell: a JSON list, or labels separated by ``delimiter``."""
    if value.lstrip().startswith("["):
        return _parse_json(value, "a JSON list")
    return [label.strip() for label in value.split(delimiter) if label.strip()]


def _parse_json(value: str, what: str) -> Any:
    import json

    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{value[:80]!r} is not {what} ({error})") from None


def _collect_labels(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _dense_head(group: LabelGroup, initializer: Any) -> keras.layers.Layer:
    return keras.layers.Dense(
        len(group.labels),
        activation=group.kind_rules.activation,
        kernel_initializer=initializer,
        dtype="float32",
        name=group.name,
    )


def _flatten_rows(group: LabelGroup, values: np.ndarray) -> np.ndarray:
    return np.asarray(values)


# --- regression: one float per named target ---------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _encode_regression(group: LabelGroup, value: Any, row: int, text: str) -> np.ndarray:
    targets = group.labels
    if isinstance(value, Mapping):
        missing = [t for t in targets if t not in value]
        unknown = sorted(set(value) - set(targets))
        if missing or unknown:
            raise ValueError(
                f"{_where(group, row)}: received targets {sorted(value)!r}; expected exactly {list(targets)!r}"
                f"{f' (missing {missing})' if missing else ''}{f' (unknown {unknown})' if unknown else ''}."
            )
        values = [value[t] for t in targets]
    elif isinstance(value, (list, tuple)):
        if len(value) != len(targets):
            raise ValueError(
                f"{_where(group, row)}: received {len(value)} values {list(value)!r:.80} for the "
                f"{len(targets)} targets {list(targets)!r}."
            )
        values = list(value)
    else:
        if len(targets) != 1:
            raise TypeError(
                f"{_where(group, row)}: a group with {len(targets)} targets needs a list or a "
                f"{{target: number}} dict, received {value!r:.80}."
            )
        values = [value]
    for target, number in zip(targets, values, strict=True):
        if not _is_number(number) or not math.isfinite(number):
            raise ValueError(
                f"{_where(group, row)}: target {target!r} must be a finite number, received {number!r:.80} "
                f"({type(number).__name__})."
            )
    return np.asarray(values, dtype=np.float32)


def _parse_regression_cell(value: str, delimiter: str) -> Any:
    text = value.strip()
    if text.startswith(("[", "{")):
        return _parse_json(text, "a JSON list or object of numbers")
    try:
        return float(text)
    except ValueError:
        return text  # the encoder reports it with its row and column


def _decode_regression(group: LabelGroup, values: np.ndarray, texts: Sequence[str]) -> list[Any]:
    values = np.asarray(values, dtype=np.float64)
    if len(group.labels) == 1:
        return [float(v) for v in values[:, 0]]
    return [{t: float(v) for t, v in zip(group.labels, row, strict=True)} for row in values]


def _evaluate_regression(group: LabelGroup, values: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    values, targets = np.asarray(values, np.float64), np.asarray(targets, np.float64)
    per_target = {}
    for j, target in enumerate(group.labels):
        error = values[:, j] - targets[:, j]
        spread = float(np.sum((targets[:, j] - targets[:, j].mean()) ** 2))
        per_target[target] = {
            "mae": float(np.mean(np.abs(error))),
            "rmse": float(np.sqrt(np.mean(error**2))),
            "r2": 1.0 - float(np.sum(error**2)) / spread if spread > 0 else None,
            "target_mean": float(targets[:, j].mean()),
            "predicted_mean": float(values[:, j].mean()),
        }
    r2 = [entry["r2"] for entry in per_target.values() if entry["r2"] is not None]
    return {
        "mae": float(np.mean([entry["mae"] for entry in per_target.values()])),
        "rmse": float(np.mean([entry["rmse"] for entry in per_target.values()])),
        "r2": float(np.mean(r2)) if r2 else None,
        "per_target": per_target,
    }


def _regression_loss(group: LabelGroup) -> keras.losses.Loss:
    scale = [std for _, std in group.target_stats] if group.normalize else [1.0] * len(group.labels)
    return ScaledRegressionLoss(group.loss, scale=scale)


def _regression_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]


def _regression_head(group: LabelGroup, initializer: Any) -> keras.layers.Layer:
    stats = group.target_stats if group.normalize else ((0.0, 1.0),) * len(group.labels)
    return RegressionHead(
        len(group.labels),
        target_mean=[mean for mean, _ in stats],
        target_std=[std for _, std in stats],
        kernel_initializer=initializer,
        dtype="float32",
        name=group.name,
    )


def _serve_regression(group: LabelGroup, values: tf.Tensor, words: Any) -> dict[str, tf.Tensor]:
    return {"values": values}


# --- token_multilabel: any number of labels per word ------------------------------------


def _is_span(item: Any) -> bool:
    if isinstance(item, Mapping):
        return True
    return isinstance(item, (list, tuple)) and len(item) == 3 and type(item[0]) is int


def _span_fields(group: LabelGroup, item: Any, row: int, index: int) -> tuple[Any, Any, Any]:
    if isinstance(item, Mapping):
        if set(item) != {"start", "end", "label"}:
            raise ValueError(
                f"{_where(group, row)}: span {index} has keys {sorted(item)}; a span is "
                '{"start": int, "end": int, "label": str} or [start, end, label].'
            )
        return item["start"], item["end"], item["label"]
    if not isinstance(item, (list, tuple)) or len(item) != 3:
        raise TypeError(
            f"{_where(group, row)}: span {index} is {item!r:.80}; a span is [start, end, label] or "
            '{"start": ..., "end": ..., "label": ...}.'
        )
    return tuple(item)


def _encode_token_multilabel(group: LabelGroup, value: Any, row: int, text: str) -> np.ndarray:
    """float32 ``[words, labels]`` from per-word label lists or character spans."""
    words = split_words(text)
    target = np.zeros((len(words), len(group.labels)), dtype=np.float32)
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{_where(group, row)}: expected a list with one label list per word, or a list of spans "
            f"[start, end, label]; received {value!r:.80} ({type(value).__name__})."
        )
    if not value:
        return target  # no spans: every word carries no label
    if _is_span(value[0]):
        seen: dict[str, list[tuple[int, int]]] = {}
        for index, item in enumerate(value):
            start, end, label = _span_fields(group, item, row, index)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not (
                0 <= start < end <= len(text)
            ):
                raise ValueError(
                    f"{_where(group, row)}: span {index} [{start!r}, {end!r}, {label!r}] is outside the text; "
                    f"spans need integer character offsets 0 <= start < end <= {len(text)} (the text's length)."
                )
            column = _label_index(group, label, row)
            for other_start, other_end in seen.get(label, []):
                if start < other_end and other_start < end:
                    raise ValueError(
                        f"{_where(group, row)}: span {index} [{start}, {end}, {label!r}] overlaps span "
                        f"[{other_start}, {other_end}, {label!r}]; spans of one label may not overlap "
                        "(spans of different labels may)."
                    )
            seen.setdefault(label, []).append((start, end))
            covered = [w for w, (w_start, w_end) in enumerate(words) if w_start < end and start < w_end]
            if not covered:
                raise ValueError(
                    f"{_where(group, row)}: span {index} [{start}, {end}, {label!r}] covers only whitespace "
                    f"({text[start:end]!r}); a span must cover part of a word."
                )
            target[covered, column] = 1.0
        return target
    if len(value) != len(words):
        raise ValueError(
            f"{_where(group, row)}: {len(value)} word-label lists for the {len(words)} words of the text; give "
            "one list per whitespace-separated word (see mtkeras.split_words), or character spans."
        )
    for w, labels in enumerate(value):
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
            raise TypeError(
                f"{_where(group, row)}: word {w} ({text[words[w][0]:words[w][1]]!r}) has {labels!r:.80}; "
                "each word takes a list of labels ([] for none)."
            )
        for label in labels:
            target[w, _label_index(group, label, row)] = 1.0
    return target


def _parse_token_cell(value: str, delimiter: str) -> Any:
    return _parse_json(value.strip(), "a JSON list of word-label lists or spans")


def _collect_token_labels(value: Any) -> Iterable[str]:
    labels: list[str] = []
    for item in value if isinstance(value, (list, tuple)) else []:
        if isinstance(item, Mapping) and isinstance(item.get("label"), str):
            labels.append(item["label"])
        elif _is_span(item) and isinstance(item[2], str):
            labels.append(item[2])
        elif isinstance(item, (list, tuple)):
            labels.extend(label for label in item if isinstance(label, str))
    return labels


def _flatten_words(group: LabelGroup, values: np.ndarray) -> np.ndarray:
    """All rows' ``[words, labels]`` arrays stacked: ``[total words, labels]``."""
    arrays = [np.asarray(v, np.float32).reshape(-1, len(group.labels)) for v in values]
    return np.concatenate(arrays) if arrays else np.zeros((0, len(group.labels)), np.float32)


def _decode_token_multilabel(group: LabelGroup, probs: np.ndarray, texts: Sequence[str]) -> list[list[dict]]:
    decoded = []
    for text, row in zip(texts, probs, strict=True):
        chosen = np.asarray(row) >= np.asarray(group.thresholds, dtype=np.float32)
        decoded.append([
            {"word": text[start:end], "start": start, "end": end,
             "labels": [group.labels[j] for j in np.flatnonzero(chosen[w])]}
            for w, (start, end) in enumerate(split_words(text))
        ])
    return decoded


def _evaluate_token_multilabel(group: LabelGroup, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import f1_score, roc_auc_score

    thresholds = np.asarray(group.thresholds, dtype=np.float32)
    flat_probs, flat_true = _flatten_words(group, probs), _flatten_words(group, targets).astype(np.int8)
    flat_predicted = (flat_probs >= thresholds).astype(np.int8)
    true_spans = predicted_spans = matched = 0
    for p, t in zip(probs, targets, strict=True):
        predicted = label_runs(np.asarray(p) >= thresholds)
        true = label_runs(np.asarray(t) > 0.5)
        true_spans, predicted_spans, matched = true_spans + len(true), predicted_spans + len(predicted), matched + len(
            predicted & true
        )
    precision = matched / predicted_spans if predicted_spans else 0.0
    recall = matched / true_spans if true_spans else 0.0
    both_classes = 0 < flat_true.sum() < flat_true.size
    return {
        "words": int(len(flat_true)),
        "token_micro_f1": float(f1_score(flat_true, flat_predicted, average="micro", zero_division=0)),
        "token_macro_f1": float(f1_score(flat_true, flat_predicted, average="macro", zero_division=0)),
        "roc_auc_micro": float(roc_auc_score(flat_true.ravel(), flat_probs.ravel())) if both_classes else None,
        "span_precision": float(precision),
        "span_recall": float(recall),
        "span_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "spans_true": int(true_spans),
        "spans_predicted": int(predicted_spans),
        "per_label": _label_report(group, flat_true, flat_predicted),
    }


def _token_metrics(group: LabelGroup) -> list[keras.metrics.Metric]:
    return [TokenAUC(curve="ROC", multi_label=True, num_labels=len(group.labels), name="roc_auc")]


def _serve_token_multilabel(group: LabelGroup, probs: tf.Tensor, words: Mapping[str, tf.Tensor]) -> dict:
    """Per word: its first piece's probabilities (0 for words without a token), labels, text and offsets."""
    starts = words["starts"]
    per_word = tf.gather(probs, tf.maximum(starts, 0), batch_dims=1)
    per_word *= tf.cast(starts >= 0, probs.dtype)[..., None]
    return {
        "probabilities": per_word,
        "labels": _graph_decode_multilabel(group, per_word),
        "words": words["texts"],
        "offsets": words["offsets"],
    }


@dataclass(frozen=True)
class Kind:
    """What a label-group kind means for the head, the loss, the metrics, decoding and export."""

    name: str
    description: str
    #: "text": the head reads the pooled vector; "token": it reads every token's hidden state.
    level: str
    min_labels: int
    activation: str
    #: accepted values of ``LabelGroup.loss``; the first is the default.
    losses: tuple[str, ...]
    uses_thresholds: bool
    #: whether ``LabelGroup.normalize`` (target standardisation) applies.
    normalizable: bool
    #: whether the compiled metrics include ``roc_auc`` (averaged into ``val_mean_roc_auc``).
    reports_roc_auc: bool
    #: whether a NaN cell means "not annotated" (pandas' missing value) rather than a bad value.
    nan_is_missing: bool
    make_head: Callable[[LabelGroup, Any], keras.layers.Layer]
    make_loss: Callable[[LabelGroup], keras.losses.Loss]
    make_metrics: Callable[[LabelGroup], list[keras.metrics.Metric]]
    #: one row's value -> target: ``[labels]`` (text level) or ``[words, labels]`` (token level).
    encode: Callable[[LabelGroup, Any, int, str], np.ndarray]
    #: a CSV cell (str) -> the value ``encode`` takes.
    parse_cell: Callable[[str, str], Any]
    #: the label names a value mentions (to complete a config's label list from data).
    collect_labels: Callable[[Any], Iterable[str]] | None
    #: outputs (in :meth:`Predictor.predict_proba` layout) and texts -> one answer per text.
    decode: Callable[[LabelGroup, np.ndarray, Sequence[str]], list[Any]]
    #: 0/1 matrix of the decoded labels for F1 over all text-level label groups; None: not counted.
    indicator: Callable[[LabelGroup, np.ndarray], np.ndarray] | None
    #: the evaluation report of one group: (group, outputs, targets) -> metrics.
    evaluate: Callable[[LabelGroup, np.ndarray, np.ndarray], dict[str, Any]]
    #: outputs -> ``[items, labels]`` probabilities for threshold tuning and ROC curves; None: no probabilities.
    flatten: Callable[[LabelGroup, np.ndarray], np.ndarray] | None
    #: the model output's name suffix in ``predict_ids`` and TFLite: ``<group>_<raw_output>``.
    raw_output: str
    #: (group, model output, words) -> ``{suffix: tensor}`` outputs of ``serving_default``.
    serve: Callable[[LabelGroup, tf.Tensor, Any], dict[str, tf.Tensor]]
    #: ``{suffix: layout}`` of :attr:`serve`'s outputs, for the export metadata and docs.
    serving_layout: dict[str, str]


_PROBABILITIES = "float32 [batch, n_labels]: the head's probabilities"
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            name="multiclass",
            nan_is_missing=True,
            description="exactly one label per text (softmax head, categorical cross-entropy)",
            level="text",
            min_labels=2,
            activation="softmax",
            losses=("categorical_crossentropy",),
            uses_thresholds=False,
            normalizable=False,
            reports_roc_auc=True,
            make_head=_dense_head,
            make_loss=lambda group: keras.losses.CategoricalCrossentropy(),
            make_metrics=_multiclass_metrics,
            encode=_encode_multiclass,
            parse_cell=lambda value, delimiter: value.strip(),
            collect_labels=_collect_labels,
            decode=_decode_multiclass,
            indicator=_indicator_multiclass,
            evaluate=_evaluate_multiclass,
            flatten=_flatten_rows,
            raw_output="probabilities",
            serve=_serve_multiclass,
            serving_layout={
                "probabilities": _PROBABILITIES,
                "labels": "string [batch]: the label with the highest probability",
            },
        ),
        Kind(
            name="multilabel",
            nan_is_missing=True,
            description="any number of labels per text (sigmoid head, binary cross-entropy)",
            level="text",
            min_labels=1,
            activation="sigmoid",
            losses=("binary_crossentropy",),
            uses_thresholds=True,
            normalizable=False,
            reports_roc_auc=True,
            make_head=_dense_head,
            make_loss=lambda group: keras.losses.BinaryCrossentropy(),
            make_metrics=_multilabel_metrics,
            encode=_encode_multilabel,
            parse_cell=_parse_label_list,
            collect_labels=_collect_labels,
            decode=_decode_multilabel,
            indicator=_indicator_multilabel,
            evaluate=_evaluate_multilabel,
            flatten=_flatten_rows,
            raw_output="probabilities",
            serve=_serve_multilabel,
            serving_layout={
                "probabilities": _PROBABILITIES,
                "labels": "string [batch, n_labels]: the labels whose probability >= their threshold, in label "
                "order, then '' padding",
            },
        ),
        Kind(
            name="regression",
            nan_is_missing=False,
            description="one float per named target (linear head on the pooled vector, MSE or Huber loss; "
            "optional target standardisation)",
            level="text",
            min_labels=1,
            activation="linear",
            losses=REGRESSION_LOSSES,
            uses_thresholds=False,
            normalizable=True,
            reports_roc_auc=False,
            make_head=_regression_head,
            make_loss=_regression_loss,
            make_metrics=_regression_metrics,
            encode=_encode_regression,
            parse_cell=_parse_regression_cell,
            collect_labels=None,
            decode=_decode_regression,
            indicator=None,
            evaluate=_evaluate_regression,
            flatten=None,
            raw_output="values",
            serve=_serve_regression,
            serving_layout={"values": "float32 [batch, n_targets]: the predicted values, in the targets' units"},
        ),
        Kind(
            name="token_multilabel",
            nan_is_missing=True,
            description="any number of labels per word (sigmoid head on every token, binary cross-entropy "
            "over the first word piece of each word)",
            level="token",
            min_labels=1,
            activation="sigmoid",
            losses=("binary_crossentropy",),
            uses_thresholds=True,
            normalizable=False,
            reports_roc_auc=True,
            make_head=_dense_head,
            make_loss=lambda group: MaskedBinaryCrossentropy(),
            make_metrics=_token_metrics,
            encode=_encode_token_multilabel,
            parse_cell=_parse_token_cell,
            collect_labels=_collect_token_labels,
            decode=_decode_token_multilabel,
            indicator=None,
            evaluate=_evaluate_token_multilabel,
            flatten=_flatten_words,
            raw_output="token_probabilities",
            serve=_serve_token_multilabel,
            serving_layout={
                "probabilities": "float32 [batch, words, n_labels]: per word, its first piece's probabilities "
                "(0 for padding and for words cut off by max_length)",
                "labels": "string [batch, words, n_labels]: per word, the labels whose probability >= their "
                "threshold, then '' padding",
                "words": "string [batch, words]: the whitespace-separated words up to the last one within "
                "max_length tokens (later words have no answer; at most 4 x max_length words), '' padding",
                "offsets": "int32 [batch, words, 2]: each word's [start, end) character offsets in the text "
                "(Unicode code points), -1 padding",
            },
        ),
    )
}

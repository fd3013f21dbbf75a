"""``GroupKind``: what a label group of one kind does, bound to its group.

A subclass reads top to bottom in the order a group lives: head -> loss -> metrics
-> encode -> decode -> serve -> evaluate. It declares its outputs once (:class:`Output`);
the SavedModel signatures, the export and TFLite metadata, the README table and the
serving client all read that declaration.

Importing this module (and the kind modules) needs no TensorFlow: the methods that
build Keras or graph pieces import it when called.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mtkeras._checks import is_number, preview

if TYPE_CHECKING:  # pragma: no cover
    from mtkeras.spec import LabelGroup


#: ``class_weight`` strategies, learned from the training data (:func:`mtkeras.fit_target_stats`).
CLASS_WEIGHTINGS: dict[str, str] = {
    "balanced": "multiclass: rows / (classes x rows of the class); multilabel: negatives / positives of the label",
    "sqrt_balanced": "the square root of 'balanced': rare labels weigh more, less extremely",
}
#: ``focal_gamma`` of a focal loss when the group gives none (Lin et al. 2017).
FOCAL_GAMMA = 2.0


@dataclass(frozen=True)
class Output:
    """One output of an export, per group: ``<group>_<suffix>``.

    ``shape`` uses ``batch``, ``words``, ``length`` and ``n_labels`` (a regression
    group's labels are its targets).
    """

    suffix: str
    dtype: str
    shape: tuple[str, ...]
    meaning: str

    def layout(self) -> str:
        """``float32 [batch, n_labels]: meaning``, as the export metadata writes it."""
        return f"{self.dtype} [{', '.join(self.shape)}]: {self.meaning}"


@dataclass(frozen=True)
class Features:
    """What a head may read: the pooled text vector, and every token's hidden state."""

    pooled: Any
    tokens: Any


class GroupKind:
    """The base of every kind: shared checks and helpers; a subclass fills in the rest.

    Example:
        >>> group = LabelGroup("use", "multilabel", labels=["editing", "viewing"])
        >>> group.rules.encode(["viewing"], row=0, text="a viewer")
        array([0., 1.], dtype=float32)
    """

    #: the ``kind`` string of a LabelGroup; the registry key.
    name: ClassVar[str]
    description: ClassVar[str]
    min_labels: ClassVar[int] = 1
    #: accepted values of ``LabelGroup.loss``; the first is the default.
    losses: ClassVar[tuple[str, ...]]
    #: whether answers are chosen by per-label thresholds (tuned on validation data).
    thresholded: ClassVar[bool] = False
    #: how answers are chosen when not by thresholds (for error messages).
    decision: ClassVar[str] = "decoded by thresholds"
    #: whether targets and answers are per word (data and exports then need word offsets).
    per_word: ClassVar[bool] = False
    #: the value a batch pads this group's targets with (per-token targets: positions that carry no loss).
    target_padding: ClassVar[float] = 0.0
    #: names of the compiled metrics (``metrics()`` builds exactly these).
    metric_names: ClassVar[tuple[str, ...]]
    #: losses of ``losses`` that take ``focal_gamma``.
    focal_losses: ClassVar[tuple[str, ...]] = ()
    #: whether ``class_weight`` applies (then :meth:`fit_class_weights` learns it from the training data).
    weighs_classes: ClassVar[bool] = False
    #: whether the group's probabilities take a fitted ``temperature`` (:mod:`mtkeras.calibration`).
    calibrates: ClassVar[bool] = False
    #: how a memory of training rows votes for the group (a key of :data:`mtkeras.memory.VOTES`), or None: the
    #: memory does not answer for it (:mod:`mtkeras.memory`).
    neighbour_vote: ClassVar[str | None] = None
    #: the key of :meth:`evaluate` that picks among candidate models (epochs) in a cross-fitted
    #: report: higher is better; threshold-free, so it can be compared before thresholds are tuned.
    selection_metric: ClassVar[str]
    #: ``serving_default`` outputs.
    outputs: ClassVar[tuple[Output, ...]]
    #: the model's own output, as ``predict_ids`` and TFLite name it.
    raw_output: ClassVar[Output]

    def __init__(self, group: LabelGroup) -> None:
        self.group = group

    # --- checks (called by LabelGroup) --------------------------------------------------

    @classmethod
    def check_fields(cls, group: LabelGroup) -> dict[str, Any]:
        """The group's kind-specific fields, checked and normalised: ``{field: value}``."""
        if len(group.labels) < cls.min_labels:
            raise ValueError(
                f"LabelGroup {group.name!r}: a {cls.name} group needs at least "
                f"{cls.min_labels} labels, received {list(group.labels)}."
            )
        loss = cls.losses[0] if group.loss is None else group.loss
        if loss not in cls.losses:
            raise ValueError(
                f"LabelGroup {group.name!r}: a {cls.name} group takes `loss` in {list(cls.losses)}, "
                f"received {group.loss!r}."
            )
        return {"loss": loss, "thresholds": cls._checked_thresholds(group), **cls._checked_standardisation(group),
                "class_weight": cls._checked_class_weight(group), "focal_gamma": cls._checked_focal_gamma(group, loss),
                "temperature": cls._checked_temperature(group)}

    @classmethod
    def _refuse_field(cls, group: LabelGroup, field: str, flag: str, shown: str) -> None:
        """Raise for a ``field`` this kind does not take, naming the kinds whose ``flag`` says they do."""
        from mtkeras.kinds import KINDS

        takers = [kind.name for kind in KINDS.values() if getattr(kind, flag)]
        raise ValueError(
            f"LabelGroup {group.name!r}: `{field}` applies to kinds {takers}, not to a {cls.name} group, "
            f"received {shown}."
        )

    @classmethod
    def _checked_temperature(cls, group: LabelGroup) -> float | None:
        value = group.temperature
        if value is None:
            return None
        if not cls.calibrates:
            cls._refuse_field(group, "temperature", "calibrates", f"{value!r}")
        if not is_number(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"LabelGroup {group.name!r}: `temperature` must be a finite number > 0 (1: the head's own "
                f"probabilities), received {value!r}."
            )
        return float(value)

    # --- calibration (kinds with `calibrates`) -------------------------------------------

    def calibrate(self, values: Any, temperature: float | None = None) -> Any:
        """The head's output tensor with the temperature applied (the group's own by default); TensorFlow ops,
        used in the Predictor's, the SavedModel's and the TFLite graph alike."""
        temperature = self.group.temperature if temperature is None else temperature
        if not self.calibrates or temperature is None or temperature == 1.0:
            return values
        return self._scaled(values, float(temperature))

    def _scaled(self, values: Any, temperature: float) -> Any:
        raise NotImplementedError

    def log_loss(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Mean negative log-likelihood of ``targets`` under ``outputs`` (what a temperature is fitted on)."""
        raise NotImplementedError

    def calibration_error(self, outputs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
        """Expected calibration error: the mean gap between confidence and frequency over ``bins`` equal bins,
        weighted by their share of :meth:`_confidences`."""
        confidence, outcome = self._confidences(outputs, targets)
        which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
        error = 0.0
        for b in range(bins):
            inside = which == b
            if inside.any():
                error += inside.mean() * abs(float(outcome[inside].mean()) - float(confidence[inside].mean()))
        return float(error)

    def _confidences(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(confidence, outcome)`` pairs the calibration error compares."""
        raise NotImplementedError

    @classmethod
    def _checked_class_weight(cls, group: LabelGroup) -> str | tuple[float, ...] | None:
        value = group.class_weight
        if value is None:
            return None
        if not cls.weighs_classes:
            cls._refuse_field(group, "class_weight", "weighs_classes", f"{value!r:.80}")
        if isinstance(value, str):
            if value not in CLASS_WEIGHTINGS:
                raise ValueError(
                    f"LabelGroup {group.name!r}: `class_weight` must be one of {list(CLASS_WEIGHTINGS)} or one "
                    f"number > 0 per label, received {value!r}."
                )
            return value
        if not isinstance(value, Sequence) or len(value) != len(group.labels) or not all(
            is_number(v) and math.isfinite(v) and v > 0 for v in value
        ):
            raise ValueError(
                f"LabelGroup {group.name!r}: `class_weight` must be one of {list(CLASS_WEIGHTINGS)} or one finite "
                f"number > 0 per label ({len(group.labels)}), received {value!r:.80}."
            )
        return tuple(float(v) for v in value)

    @classmethod
    def _checked_focal_gamma(cls, group: LabelGroup, loss: str) -> float | None:
        if loss not in cls.focal_losses:
            if group.focal_gamma is not None:
                raise ValueError(
                    f"LabelGroup {group.name!r}: `focal_gamma` applies only with a focal `loss` "
                    f"({list(cls.focal_losses) or 'none for a ' + cls.name + ' group'}), received "
                    f"{group.focal_gamma!r} with loss {loss!r}."
                )
            return None
        gamma = FOCAL_GAMMA if group.focal_gamma is None else group.focal_gamma
        if not is_number(gamma) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(
                f"LabelGroup {group.name!r}: `focal_gamma` must be a finite number >= 0, received {gamma!r}."
            )
        return float(gamma)

    def fit_class_weights(self, targets: np.ndarray) -> tuple[float, ...]:
        """Per-label weights from the annotated training targets ``[rows, labels]``, by the group's strategy."""
        raise NotImplementedError

    def _weighted_loss(self, mode: str) -> Any:
        """The kind's cross-entropy with the group's class weights and focal term (heads.WeightedCrossentropy),
        or None when the group asks for neither (the stock Keras loss then)."""
        group = self.group
        if group.class_weight is None and group.focal_gamma is None:
            return None
        if isinstance(group.class_weight, str):
            raise ValueError(
                f"LabelGroup {group.name!r} has class_weight={group.class_weight!r} but no weights yet; learn them "
                "from the training data first: spec = mtkeras.fit_target_stats(spec, train_records)."
            )
        from mtkeras.heads import WeightedCrossentropy

        return WeightedCrossentropy(mode, label_weights=group.class_weight, gamma=group.focal_gamma or 0.0,
                                    name=group.loss)

    @classmethod
    def _checked_standardisation(cls, group: LabelGroup) -> dict[str, Any]:
        """``normalize`` and ``target_stats``: only kinds that learn standardised targets take them."""
        if cls._normalize_flag(group):
            from mtkeras.kinds import KINDS

            takers = [kind.name for kind in KINDS.values()
                      if kind._checked_standardisation.__func__ is not GroupKind._checked_standardisation.__func__]
            raise ValueError(
                f"LabelGroup {group.name!r}: `normalize` applies to kinds {takers}, not to a {cls.name} group."
            )
        if group.target_stats is not None:
            raise ValueError(
                f"LabelGroup {group.name!r}: a {cls.name} group takes no `target_stats`, received "
                f"{group.target_stats!r:.80}."
            )
        return {}

    @staticmethod
    def _normalize_flag(group: LabelGroup) -> bool:
        if not isinstance(group.normalize, bool):
            raise TypeError(
                f"LabelGroup {group.name!r}: `normalize` must be true or false, received {group.normalize!r}."
            )
        return group.normalize

    @classmethod
    def _checked_thresholds(cls, group: LabelGroup) -> tuple[float, ...] | None:
        if not cls.thresholded:
            if group.thresholds is not None:
                raise ValueError(
                    f"LabelGroup {group.name!r}: a {cls.name} group is {cls.decision} "
                    f"and takes no `thresholds`, received {group.thresholds!r}."
                )
            return None
        if group.thresholds is None:
            return (0.5,) * len(group.labels)
        if isinstance(group.thresholds, str) or not isinstance(group.thresholds, Sequence):
            raise TypeError(
                f"LabelGroup {group.name!r}: `thresholds` must be a list of numbers in (0, 1), one per label, "
                f"received {group.thresholds!r:.80}."
            )
        thresholds = tuple(group.thresholds)
        if len(thresholds) != len(group.labels):
            raise ValueError(
                f"LabelGroup {group.name!r}: `thresholds` has {len(thresholds)} values for "
                f"{len(group.labels)} labels; give one per label, received {list(thresholds)!r:.80}."
            )
        for label, value in zip(group.labels, thresholds, strict=True):
            if not is_number(value) or not 0.0 < value < 1.0:
                raise ValueError(
                    f"LabelGroup {group.name!r}: threshold for label {label!r} must be a "
                    f"number in (0, 1), received {value!r}."
                )
        return tuple(float(value) for value in thresholds)

    # --- head -> loss -> metrics (Keras; subclasses) ------------------------------------

    def head(self, features: Features, initializer: Any, name: str) -> Any:
        """The head's output tensor, built on what it reads of ``features`` by a layer called ``name`` (the
        group's name, or ``<group>_head`` under a memory's vote)."""
        raise NotImplementedError

    def _dense(self, activation: str, initializer: Any, name: str) -> Any:
        from mtkeras._compat import keras

        return keras.layers.Dense(len(self.group.labels), activation=activation, kernel_initializer=initializer,
                                  dtype="float32", name=name)

    def loss(self) -> Any:
        raise NotImplementedError

    def metrics(self) -> list[Any]:
        raise NotImplementedError

    # --- encode: one row's value -> its target -----------------------------------------

    def is_missing(self, value: Any) -> bool:
        """Whether a cell means "not annotated": None, or pandas' NaN for a missing cell."""
        return value is None or (isinstance(value, float) and value != value)

    def encode(self, value: Any, row: int, text: str) -> np.ndarray:
        """float32 ``[labels]`` (or ``[words, labels]`` per word) for one row's value."""
        raise NotImplementedError

    def encode_missing(self, text: str) -> np.ndarray | None:
        """The target of a row not annotated for this group (it carries weight 0); None: all zeros."""
        return None

    def target_array(self, rows: int) -> np.ndarray:
        """An empty target array for ``rows`` rows."""
        return np.zeros((rows, len(self.group.labels)), np.float32)

    @classmethod
    def parse_cell(cls, value: str, delimiter: str) -> Any:
        """A CSV cell (not empty) -> the value :meth:`encode` takes."""
        return value.strip()

    @classmethod
    def labels_in(cls, value: Any) -> Iterable[str] | None:
        """The label names a value mentions (a config's label list filled in from data); None: no labels
        to collect (the group's labels are named, not found)."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)):
            return [v for v in value if isinstance(v, str)]
        return []

    def dataset_targets(self, targets: np.ndarray, starts: Any, lengths: np.ndarray) -> tuple[Any, float]:
        """``(tensor of the targets, their padding value)`` for a tf.data pipeline."""
        from mtkeras._compat import tf

        return tf.constant(targets), self.target_padding

    # --- model outputs -> answers ------------------------------------------------------

    def store(self, out: np.ndarray, rows: np.ndarray, values: np.ndarray, starts: Any) -> None:
        """Put one batch of model outputs into ``out`` (see :meth:`target_array`) at ``rows``."""
        out[rows] = values

    def decode(self, outputs: np.ndarray, texts: Sequence[str]) -> list[Any]:
        """One answer per row from the outputs (in :meth:`Predictor.predict_proba` layout)."""
        raise NotImplementedError

    def check_outputs(self, outputs: Any, what: str = "Outputs") -> np.ndarray:
        """``outputs`` as a float array in :meth:`Predictor.predict_proba` layout (``[rows, labels]``), or a
        ValueError naming ``what`` (e.g. ``` `targets` ```), the group, the shape received and the shape
        expected."""
        array = np.asarray(outputs)
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ValueError(f"{what} of group {self.group.name!r} must be numbers, received dtype {array.dtype}.")
        if array.ndim != 2 or array.shape[1] != len(self.group.labels):
            raise ValueError(
                f"{what} of group {self.group.name!r} have shape {array.shape}; expected (rows, "
                f"{len(self.group.labels)}): one column per label of {preview(self.group.labels)}."
            )
        return array

    def indicator(self, outputs: np.ndarray) -> np.ndarray | None:
        """0/1 ``[rows, labels]`` of the decoded labels, for F1 over all groups; None: not counted."""
        return None

    def flatten(self, outputs: np.ndarray) -> np.ndarray | None:
        """``[items, labels]`` probabilities for threshold tuning and ROC curves; None: no probabilities."""
        return None

    @property
    def has_probabilities(self) -> bool:
        """Whether outputs are probabilities (derived: the kind defines :meth:`flatten`)."""
        return type(self).flatten is not GroupKind.flatten

    # --- serve: graph outputs of serving_default, and reading them back ----------------

    def serve(self, values: Any, words: Any) -> dict[str, Any]:
        """``{suffix: tensor}`` for every declared :attr:`outputs`, from the model output."""
        raise NotImplementedError

    def read_served(self, row: Mapping[str, Any]) -> Any:
        """The answer from one served row ``{"<group>_<suffix>": nested lists}`` (REST or gRPC)."""
        raise NotImplementedError

    def served(self, row: Mapping[str, Any], suffix: str) -> Any:
        """One declared output of this group from a served row, or a clear error."""
        key = f"{self.group.name}_{suffix}"
        if key not in row:
            raise ValueError(
                f"The served answer has no {key!r} for {self.name} group {self.group.name!r}; received outputs "
                f"{sorted(row)}. Is the client's spec the one of this export?"
            )
        return row[key]

    # --- evaluate ----------------------------------------------------------------------

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        """This group's evaluation report on annotated rows."""
        raise NotImplementedError

    # --- helpers for subclasses --------------------------------------------------------

    def where(self, row: int | str) -> str:
        """Where a bad cell is: ``Row 3, column 'use' (multilabel group 'use')`` for in-memory records (0-based
        index), ``train.jsonl, line 4, column 'use' (...)`` for a row read from a file (``row`` its name)."""
        at = row if isinstance(row, str) else f"Row {row}"
        return f"{at}, column {self.group.source_column!r} ({self.name} group {self.group.name!r})"

    def label_index(self, label: Any, row: int | str) -> int:
        try:
            return self.group.labels.index(label)
        except ValueError:
            raise ValueError(
                f"{self.where(row)}: unknown label {label!r}. Accepted labels: {preview(self.group.labels)}."
            ) from None

    def label_report(self, targets: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import classification_report

        return classification_report(
            targets.astype(int), predicted.astype(int), labels=list(range(len(self.group.labels))),
            target_names=list(self.group.labels), output_dict=True, zero_division=0,
        )


def per_label_auc(targets: np.ndarray, probs: np.ndarray) -> tuple[float | None, int]:
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


def parse_json(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{value[:80]!r} is not {what} ({error})") from None


def text(value: Any) -> str:
    """A served string: bytes from gRPC, str from REST."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def served_labels(value: Any) -> list[str]:
    """A served label list with its '' padding removed."""
    return [text(v) for v in value if text(v)]


def floats(value: Any) -> Any:
    """Nested lists of numbers as nested lists of floats."""
    return [floats(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


def graph_thresholded_labels(labels: Sequence[str], thresholds: Sequence[float], probs: Any) -> Any:
    """string ``[..., n_labels]``: the labels whose probability >= threshold (label order), then '' padding.

    A fixed-width, ragged-free layout that REST JSON and gRPC carry as is.
    """
    from mtkeras._compat import tf

    chosen = probs >= tf.constant(thresholds, probs.dtype)
    names = tf.broadcast_to(tf.constant(list(labels)), tf.shape(chosen))
    shape = [None] * (probs.shape.rank - 1) + [len(labels)]
    return tf.ragged.boolean_mask(names, chosen).to_tensor(default_value="", shape=shape)


PROBABILITIES = Output("probabilities", "float32", ("batch", "n_labels"), "the head's probabilities")

"""The task spec: the single source of truth for heads, losses, metrics and decoding."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from mtkeras._checks import check_int, check_number, check_option, is_number
from mtkeras._io import read_utf8, write_atomic
from mtkeras.defaults import BAG_POOLINGS, LOSS_WEIGHTING, LOSS_WEIGHTINGS
from mtkeras.kinds import KINDS, GroupKind

#: Model input names, exactly the Hugging Face keyword arguments.
INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
#: Names of the model's own layers (see model.py); a group may not take them.
ENCODER_LAYER, BERT_LAYER, POOLING_LAYER, DROPOUT_LAYER = "encoder", "bert_model", "mean_pooling", "head_dropout"
TOKEN_DROPOUT_LAYER = "token_dropout"
SPLIT_WINDOWS_LAYER, MERGE_WINDOWS_LAYER = "split_windows", "merge_windows"
PIECE_BAG_LAYER, WIDE_AND_DEEP_LAYER = "piece_bag", "wide_and_deep"
UNCERTAINTY_LAYER = "loss_uncertainty"
MEMORY_LAYER = "neighbour_memory"
LAYER_NAMES: tuple[str, ...] = (ENCODER_LAYER, BERT_LAYER, POOLING_LAYER, DROPOUT_LAYER, TOKEN_DROPOUT_LAYER,
                                SPLIT_WINDOWS_LAYER, MERGE_WINDOWS_LAYER, PIECE_BAG_LAYER, WIDE_AND_DEEP_LAYER,
                                UNCERTAINTY_LAYER, MEMORY_LAYER)
#: In a model with a memory (``TaskSpec.memory_rows`` > 0), a remembering group's head layer is ``<group>_head``
#: and the group's output layer (its name) is the memory's vote (mtkeras.memory).
HEAD_SUFFIX = "_head"

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
SPEC_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LabelGroup:
    """One output head: a named set of labels of one kind.

    Args:
        name: output name (letters, digits, ``_``; starts with a letter). Also the
            key of the group in model outputs, losses, metrics and predictions.
        kind: one of ``mtkeras.KINDS`` (``"multiclass"``, ``"multilabel"``,
            ``"regression"``, ``"token_multilabel"``).
        labels: the label names, in head order (a regression group's target names).
        loss_weight: weight of this head's loss in the total loss (finite, > 0).
        thresholds: per-label decision thresholds in (0, 1) for kinds that use
            them (multilabel, token_multilabel); defaults to 0.5 for every label.
        column: the data field holding this group's labels (defaults to ``name``).
        loss: the loss, from the kind's accepted losses (regression: ``"mse"``
            or ``"huber"``); defaults to the kind's first.
        normalize: regression only: learn standardised targets; needs
            ``target_stats`` (see :func:`mtkeras.fit_target_stats`) before a model is built.
        target_stats: regression only: ``(mean, std)`` per target, from the
            training data; the model outputs ``standardised * std + mean``.
        class_weight: multiclass and multilabel: weigh rare labels up in the loss, by a strategy of
            :data:`mtkeras.kinds.CLASS_WEIGHTINGS` (``"balanced"``, ``"sqrt_balanced"``; learned from the
            training data by :func:`mtkeras.fit_target_stats`) or one weight per label (a multiclass
            group's per class, a multilabel group's on each label's positives).
        focal_gamma: with ``loss="focal"``: the focusing exponent (default 2.0; 0 is cross-entropy).
        temperature: multiclass and multilabel: probabilities are served as ``softmax(log p / T)`` /
            ``sigmoid(logit(p) / T)``, ``T`` fitted on held-apart data (:func:`mtkeras.fit_temperatures`);
            None or 1: the head's own.

    Example:
        >>> LabelGroup("use", "multilabel", labels=["editing", "viewing"], loss_weight=4.0)
        >>> LabelGroup("tag_count", "regression", labels=["tags"], loss="huber", normalize=True)
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    loss_weight: float = 1.0
    thresholds: tuple[float, ...] | None = None
    column: str | None = None
    loss: str | None = None
    normalize: bool = False
    target_stats: tuple[tuple[float, float], ...] | None = None
    class_weight: str | tuple[float, ...] | None = None
    focal_gamma: float | None = None
    temperature: float | None = None
    _rules: GroupKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"LabelGroup `name` must be 1-64 letters, digits or '_' starting with a "
                f"letter (it names a Keras output); received {self.name!r}."
            )
        if self.name in INPUT_NAMES + LAYER_NAMES:
            raise ValueError(
                f"LabelGroup `name` {self.name!r} clashes with a model input or layer; "
                f"reserved names are {list(INPUT_NAMES + LAYER_NAMES)}."
            )
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(
                f"LabelGroup {self.name!r}: unknown `kind` {self.kind!r}. "
                f"Accepted kinds: {sorted(KINDS)}."
            )
        labels = self.labels
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TypeError(
                f"LabelGroup {self.name!r}: `labels` must be a list of strings, "
                f"received {labels!r} ({type(labels).__name__})."
            )
        labels = tuple(labels)
        if not labels:
            raise ValueError(f"LabelGroup {self.name!r}: `labels` is empty; give at least one label.")
        bad = [label for label in labels if not isinstance(label, str) or not label]
        if bad:
            raise TypeError(
                f"LabelGroup {self.name!r}: every label must be a non-empty string, "
                f"received {bad[0]!r}."
            )
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"LabelGroup {self.name!r}: duplicate labels {duplicates}; each label "
                "must appear once."
            )
        object.__setattr__(self, "labels", labels)

        if not is_number(self.loss_weight) or not math.isfinite(self.loss_weight) or self.loss_weight <= 0:
            raise ValueError(
                f"LabelGroup {self.name!r}: `loss_weight` must be a finite number > 0, "
                f"received {self.loss_weight!r}."
            )
        object.__setattr__(self, "loss_weight", float(self.loss_weight))
        if self.column is not None and (not isinstance(self.column, str) or not self.column):
            raise TypeError(
                f"LabelGroup {self.name!r}: `column` must be a non-empty string or None, "
                f"received {self.column!r}."
            )
        kind = KINDS[self.kind]
        for name, value in kind.check_fields(self).items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_rules", kind(self))

    @property
    def rules(self) -> GroupKind:
        """This group's kind, bound to it: ``group.rules.encode(value, row, text)``, ``.decode(...)``, ..."""
        return self._rules

    @property
    def source_column(self) -> str:
        """The data field this group's labels are read from."""
        return self.column or self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "loss_weight": self.loss_weight,
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            "column": self.column,
            "loss": self.loss,
            "normalize": self.normalize,
            "target_stats": None if self.target_stats is None else [list(pair) for pair in self.target_stats],
            "class_weight": self.class_weight if not isinstance(self.class_weight, tuple) else list(self.class_weight),
            "focal_gamma": self.focal_gamma,
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelGroup:
        return cls(**_checked_keys(cls, data, "label group"))


@dataclass(frozen=True)
class TaskSpec:
    """The whole task: which encoder, how long a text may be, and the label groups.

    Args:
        encoder: path of a local Hugging Face BERT folder (``config.json``,
            ``model.safetensors`` or ``tf_model.h5``, and the tokenizer files).
        groups: the label groups, one output head each.
        max_length: tokens per window, [CLS] and [SEP] included (at most the encoder's positions).
        max_windows: windows per text: a text longer than ``max_length`` is read in up to this many
            windows of ``max_length`` tokens (see :mod:`mtkeras.windows`); 1 cuts it at ``max_length``.
        stride: word pieces shared by consecutive windows (Hugging Face's ``stride``), in
            ``[0, max_length - 3]``.
        text_column: the data field holding the text.
        head_dropout: dropout on the pooled vector before the heads, in [0, 1).
        bag_dim: the wide part of a wide-and-deep model (:class:`mtkeras.bag.PieceBag`): each word piece
            (and hashed pair of consecutive pieces) of the text gets a learned vector of ``bag_dim`` numbers,
            their mean over the text is concatenated to the pooled vector, so text-level heads read both
            the encoder and the text's pieces; 0: no bag (the encoder alone).
        bag_buckets: with ``bag_dim``: rows of the table that pairs of consecutive word pieces are hashed
            into; 0: single pieces only.
        bag_pooling: with ``bag_dim``: how the bag averages its vectors, one of
            :data:`mtkeras.defaults.BAG_POOLINGS` (``"weighted"``: each piece and pair also learns a weight).
        loss_weighting: how the groups' losses add up, one of :data:`mtkeras.defaults.LOSS_WEIGHTINGS`
            (default :data:`mtkeras.defaults.LOSS_WEIGHTING`, ``"uncertainty"``: a learned factor per group on top
            of ``loss_weight``, :mod:`mtkeras.uncertainty`; ``"fixed"``: ``loss_weight`` alone).
        neighbours: a memory of the training rows (:mod:`mtkeras.memory`): each text's this many nearest training
            rows (cosine similarity of pooled vectors) vote beside the heads of groups whose kind remembers
            (multiclass, multilabel); 0: no memory. ``mtkeras train`` fills it after training.
        neighbour_share: with ``neighbours``: the votes' share of a remembering group's answer, in (0, 1].
        neighbour_temperature: with ``neighbours``: neighbours weigh softmax(similarity / this), > 0.
        memory_rows: the training rows the model's memory holds (set by :func:`mtkeras.memory.add_memory`; 0:
            no memory built yet, as during training).

    Example:
        >>> spec = TaskSpec(
        ...     encoder="models/minilm",
        ...     groups=[
        ...         LabelGroup("section", "multiclass", labels=["utils", "net"]),
        ...         LabelGroup("use", "multilabel", labels=["editing", "viewing"]),
        ...     ],
        ...     max_length=128,
        ... )
        >>> TaskSpec.from_json(spec.to_json()) == spec
        True
    """

    encoder: str
    groups: tuple[LabelGroup, ...]
    max_length: int = 128
    max_windows: int = 1
    stride: int = 0
    text_column: str = "text"
    head_dropout: float = 0.1
    bag_dim: int = 0
    bag_buckets: int = 0
    bag_pooling: str = "mean"
    loss_weighting: str = LOSS_WEIGHTING
    neighbours: int = 0
    neighbour_share: float = 0.25
    neighbour_temperature: float = 0.05
    memory_rows: int = 0
    _by_name: dict[str, LabelGroup] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.encoder, os.PathLike):
            object.__setattr__(self, "encoder", os.fspath(self.encoder))
        if not isinstance(self.encoder, str) or not self.encoder:
            raise TypeError(
                f"TaskSpec `encoder` must be the path of a local model folder, received "
                f"{self.encoder!r}."
            )
        groups = self.groups
        if isinstance(groups, (LabelGroup, str)) or not isinstance(groups, Sequence):
            raise TypeError(f"TaskSpec `groups` must be a list of LabelGroup, received {groups!r}.")
        groups = tuple(LabelGroup.from_dict(g) if isinstance(g, Mapping) else g for g in groups)
        if not groups:
            raise ValueError("TaskSpec `groups` is empty; give at least one LabelGroup, received [].")
        for group in groups:
            if not isinstance(group, LabelGroup):
                raise TypeError(
                    f"TaskSpec `groups` items must be LabelGroup, received {group!r} "
                    f"({type(group).__name__})."
                )
        names = [group.name for group in groups]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"TaskSpec `groups`: duplicate group names {duplicates}; each output "
                "needs its own name."
            )
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "_by_name", {group.name: group for group in groups})

        check_int(self.max_length, "max_length", 3, why=" ([CLS], one token, [SEP])")
        check_int(self.max_windows, "max_windows", 1)
        check_int(self.stride, "stride", 0, maximum=self.max_length - 3,
                  why=" (word pieces shared by consecutive windows: fewer than the max_length - 2 a window holds)")
        if not isinstance(self.text_column, str) or not self.text_column:
            raise TypeError(
                f"TaskSpec `text_column` must be a non-empty string, received {self.text_column!r}."
            )
        reading_text = [group.name for group in self.groups if group.source_column == self.text_column]
        if reading_text:
            raise ValueError(
                f"TaskSpec: group {reading_text[0]!r} would read its labels from {self.text_column!r}, the "
                f"`text_column`; give the group its own `column`, or name the text's column with `text_column`."
            )
        if not is_number(self.head_dropout) or not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(
                f"TaskSpec `head_dropout` must be a number in [0, 1), received {self.head_dropout!r}."
            )
        check_int(self.bag_dim, "bag_dim", 0, why=" (dimensions of the bag of word pieces; 0: none)")
        check_int(self.bag_buckets, "bag_buckets", 0, why=" (hashed word-piece pairs; 0: single pieces only)")
        if self.bag_buckets and not self.bag_dim:
            raise ValueError(
                f"TaskSpec `bag_buckets`={self.bag_buckets} needs `bag_dim` > 0 (the bag it hashes pairs into), "
                f"received bag_dim={self.bag_dim!r}."
            )
        check_option(self.bag_pooling, "bag_pooling", BAG_POOLINGS)
        if self.bag_pooling != "mean" and not self.bag_dim:
            raise ValueError(
                f"TaskSpec `bag_pooling`={self.bag_pooling!r} needs `bag_dim` > 0 (the bag it pools), "
                f"received bag_dim={self.bag_dim!r}."
            )
        check_option(self.loss_weighting, "loss_weighting", LOSS_WEIGHTINGS)
        self._check_memory()

    def _check_memory(self) -> None:
        check_int(self.neighbours, "neighbours", 0, why=" (nearest training rows each text reads; 0: no memory)")
        check_number(self.neighbour_share, "neighbour_share", 0.0, 1.0, low_open=True)
        check_number(self.neighbour_temperature, "neighbour_temperature", 0.0, low_open=True)
        check_int(self.memory_rows, "memory_rows", 0, why=" (training rows held by the memory; 0: none yet)")
        if self.memory_rows and not self.neighbours:
            raise ValueError(f"TaskSpec `memory_rows`={self.memory_rows} needs `neighbours` > 0 (how many of the "
                             f"rows a text reads), received neighbours={self.neighbours!r}.")
        if not self.neighbours:
            return
        if not any(group.rules.neighbour_vote for group in self.groups):
            voting = [name for name, kind in KINDS.items() if kind.neighbour_vote]
            raise ValueError(f"TaskSpec `neighbours`={self.neighbours}: no group of {list(self.group_names)} is of a "
                             f"kind a memory answers for ({voting}); set `neighbours` to 0.")
        clashes = sorted(name for name in self.group_names if name.endswith(HEAD_SUFFIX)
                         and name.removesuffix(HEAD_SUFFIX) in self._by_name)
        if clashes:
            raise ValueError(f"TaskSpec `neighbours`={self.neighbours}: groups {clashes} are named like the head "
                             f"layer of another group ('<group>{HEAD_SUFFIX}') in a model with a memory; rename them.")

    # --- access -------------------------------------------------------------

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    @property
    def max_tokens(self) -> int:
        """The longest model-input row: ``max_windows`` windows of ``max_length`` tokens."""
        return self.max_length * self.max_windows

    @property
    def learns_loss_weights(self) -> bool:
        """Whether the model holds learned loss weights (``loss_weighting="uncertainty"``: its layer, losses,
        learning-rate factor and logged scales)."""
        return self.loss_weighting == "uncertainty"

    @property
    def remembers(self) -> bool:
        """Whether the model holds a memory of training rows (``neighbours`` > 0 and ``memory_rows`` > 0)."""
        return bool(self.neighbours and self.memory_rows)

    @property
    def needs_words(self) -> bool:
        """Whether a group is labelled per word (its data and outputs then need word offsets)."""
        return any(group.rules.per_word for group in self.groups)

    def group(self, name: str) -> LabelGroup:
        """The group called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"No label group named {name!r}; groups are {list(self.group_names)}."
            ) from None

    def with_thresholds(self, thresholds: Mapping[str, Sequence[float]]) -> TaskSpec:
        """A copy with new per-label thresholds for the named groups."""
        return self._with_group_field("thresholds", {name: tuple(values) for name, values in thresholds.items()})

    def with_target_stats(self, stats: Mapping[str, Sequence[Sequence[float]]]) -> TaskSpec:
        """A copy with new ``(mean, std)`` target statistics for the named regression groups."""
        return self._with_group_field("target_stats", {name: tuple(map(tuple, pairs)) for name, pairs in stats.items()})

    def with_class_weights(self, class_weights: Mapping[str, Sequence[float]]) -> TaskSpec:
        """A copy with per-label class weights for the named groups."""
        return self._with_group_field("class_weight", {name: tuple(values) for name, values in class_weights.items()})

    def with_temperatures(self, temperatures: Mapping[str, float | None]) -> TaskSpec:
        """A copy with new calibration temperatures for the named groups."""
        return self._with_group_field("temperature", temperatures)

    def with_loss_weights(self, loss_weights: Mapping[str, float]) -> TaskSpec:
        """A copy with new loss weights for the named groups."""
        return self._with_group_field("loss_weight", loss_weights)

    def _with_group_field(self, field_name: str, values: Mapping[str, Any]) -> TaskSpec:
        for name in values:
            self.group(name)  # an unknown name raises, listing the groups
        groups = [replace(g, **{field_name: values[g.name]}) if g.name in values else g for g in self.groups]
        return replace(self, groups=tuple(groups))

    # --- JSON ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "encoder": self.encoder,
            "max_length": self.max_length,
            "max_windows": self.max_windows,
            "stride": self.stride,
            "text_column": self.text_column,
            "head_dropout": self.head_dropout,
            "bag_dim": self.bag_dim,
            "bag_buckets": self.bag_buckets,
            "bag_pooling": self.bag_pooling,
            "loss_weighting": self.loss_weighting,
            "neighbours": self.neighbours,
            "neighbour_share": self.neighbour_share,
            "neighbour_temperature": self.neighbour_temperature,
            "memory_rows": self.memory_rows,
            "groups": [group.to_dict() for group in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        if not isinstance(data, Mapping):
            raise TypeError(f"A task spec must be a JSON object, received {data!r}.")
        data = dict(data)
        if "format_version" in data:  # a saved spec: one written before windows (the bag, the weighting) has none
            data.setdefault("max_windows", 1)
            data.setdefault("bag_dim", 0)
            data.setdefault("bag_buckets", 0)
            data.setdefault("bag_pooling", "mean")
            data.setdefault("loss_weighting", "fixed")
            data.setdefault("neighbours", 0)
        version = data.pop("format_version", SPEC_FORMAT_VERSION)
        if version != SPEC_FORMAT_VERSION:
            raise ValueError(
                f"Task spec `format_version` {version!r} is not supported: expected {SPEC_FORMAT_VERSION}, "
                "the version this mtkeras reads and writes."
            )
        # Groups given as dicts are turned into LabelGroup by __post_init__.
        return cls(**_checked_keys(cls, data, "task spec"))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Task spec is not valid JSON: {error}.") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the spec as JSON (atomically: a reader never sees half a file)."""
        write_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskSpec:
        """The spec saved at ``path``; errors name the file."""
        text = read_utf8(path)
        try:
            return cls.from_json(text)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{os.fspath(path)}: {error}") from None


def _checked_keys(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"A {what} must be a JSON object, received {data!r}.")
    accepted = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown {what} field(s) {unknown}; accepted fields: {accepted}.")
    required = [f.name for f in fields(cls) if f.init and f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"A {what} needs the field(s) {missing}; received only {sorted(data)}.")
    return dict(data)


def check_spec(spec: Any, where: str) -> TaskSpec:
    """``spec`` if it is a :class:`TaskSpec`, else a TypeError that says how to make one."""
    if not isinstance(spec, TaskSpec):
        hint = " (from a mapping: TaskSpec.from_dict(...))" if isinstance(spec, Mapping) else ""
        raise TypeError(f"{where}: `spec` must be a TaskSpec{hint}, received {spec!r:.80} ({type(spec).__name__}).")
    return spec

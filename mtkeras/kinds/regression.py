"""``regression``: one float per named target (linear head, MSE or Huber, optional standardisation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mtkeras._checks import is_number
from mtkeras.kinds.base import Features, GroupKind, Output, floats, parse_json

if TYPE_CHECKING:  # pragma: no cover
    from mtkeras.spec import LabelGroup

#: Accepted ``loss`` values of a regression group (the first is the default).
REGRESSION_LOSSES: tuple[str, ...] = ("mse", "huber")


class Regression(GroupKind):
    """One float per named target; a group's ``labels`` are its target names.

    With ``normalize=True`` the head learns standardised targets from ``target_stats``
    (see :func:`mtkeras.fit_target_stats`) and outputs values in the targets' units.

    Example:
        >>> LabelGroup("tags", "regression", labels=["tags"]).rules.decode(np.array([[3.5]]), [""])
        [3.5]
    """

    name = "regression"
    description = ("one float per named target (linear head on the pooled vector, MSE or Huber loss; "
                   "optional target standardisation)")
    losses = REGRESSION_LOSSES
    decision = "a linear output"
    metric_names = ("mae", "rmse")
    selection_metric = "r2"
    outputs = (Output("values", "float32", ("batch", "n_labels"), "the predicted values, in the targets' units"),)
    raw_output = Output("values", "float32", ("batch", "n_labels"), "the predicted values, in the targets' units")

    @classmethod
    def _checked_standardisation(cls, group: LabelGroup) -> dict[str, Any]:
        cls._normalize_flag(group)
        return {"target_stats": cls._checked_stats(group)}

    @staticmethod
    def _checked_stats(group: LabelGroup) -> tuple[tuple[float, float], ...] | None:
        stats = group.target_stats
        if stats is None:
            return None
        shape_ok = isinstance(stats, Sequence) and len(stats) == len(group.labels) and all(
            isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2 for pair in stats
        )
        if not shape_ok:
            raise ValueError(
                f"LabelGroup {group.name!r}: `target_stats` must hold one [mean, std] pair per target "
                f"({len(group.labels)}), received {stats!r:.80}."
            )
        for target, (mean, std) in zip(group.labels, stats, strict=True):
            if not (is_number(mean) and math.isfinite(mean) and is_number(std) and math.isfinite(std) and std > 0):
                raise ValueError(
                    f"LabelGroup {group.name!r}: `target_stats` for {target!r} must be a finite mean and a finite "
                    f"std > 0, received [{mean!r}, {std!r}]."
                )
        return tuple((float(mean), float(std)) for mean, std in stats)

    def _stats(self) -> tuple[tuple[float, float], ...]:
        group = self.group
        if group.normalize and group.target_stats is None:
            raise ValueError(
                f"Groups [{group.name!r}] have normalize=True but no `target_stats`; learn them from the training "
                "data first: spec = mtkeras.fit_target_stats(spec, train_records)."
            )
        return group.target_stats if group.normalize else ((0.0, 1.0),) * len(group.labels)

    # --- head -> loss -> metrics ---------------------------------------------------------

    def head(self, features: Features, initializer: Any, name: str) -> Any:
        from mtkeras.heads import RegressionHead

        stats = self._stats()
        return RegressionHead(
            len(self.group.labels), target_mean=[mean for mean, _ in stats], target_std=[std for _, std in stats],
            kernel_initializer=initializer, dtype="float32", name=name,
        )(features.pooled)

    def loss(self) -> Any:
        from mtkeras.heads import ScaledRegressionLoss

        return ScaledRegressionLoss(self.group.loss, scale=[std for _, std in self._stats()])

    def metrics(self) -> list[Any]:
        from mtkeras._compat import keras

        return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]

    # --- encode ----------------------------------------------------------------------

    def is_missing(self, value: Any) -> bool:
        return value is None  # NaN is a bad value here, reported by encode

    def encode(self, value: Any, row: int, text: str) -> np.ndarray:
        targets = self.group.labels
        if isinstance(value, Mapping):
            missing = [t for t in targets if t not in value]
            unknown = sorted(set(value) - set(targets))
            if missing or unknown:
                raise ValueError(
                    f"{self.where(row)}: received targets {sorted(value)!r}; expected exactly {list(targets)!r}"
                    f"{f' (missing {missing})' if missing else ''}{f' (unknown {unknown})' if unknown else ''}."
                )
            values = [value[t] for t in targets]
        elif isinstance(value, (list, tuple)):
            if len(value) != len(targets):
                raise ValueError(
                    f"{self.where(row)}: received {len(value)} values {list(value)!r:.80} for the "
                    f"{len(targets)} targets {list(targets)!r}."
                )
            values = list(value)
        else:
            if len(targets) != 1:
                raise TypeError(
                    f"{self.where(row)}: a group with {len(targets)} targets needs a list or a "
                    f"{{target: number}} dict, received {value!r:.80}."
                )
            values = [value]
        for target, number in zip(targets, values, strict=True):
            if not is_number(number) or not math.isfinite(number):
                raise ValueError(
                    f"{self.where(row)}: target {target!r} must be a finite number, received {number!r:.80} "
                    f"({type(number).__name__})."
                )
        return np.asarray(values, dtype=np.float32)

    @classmethod
    def parse_cell(cls, value: str, delimiter: str) -> Any:
        stripped = value.strip()
        if stripped.startswith(("[", "{")):
            return parse_json(stripped, "a JSON list or object of numbers")
        try:
            return float(stripped)
        except ValueError:
            return stripped  # encode reports it with its row and column

    @classmethod
    def labels_in(cls, value: Any) -> None:
        return None  # target names are named in the spec, not found in data

    # --- decode ----------------------------------------------------------------------

    def decode(self, outputs: np.ndarray, texts: Sequence[str]) -> list[Any]:
        values = np.asarray(outputs, dtype=np.float64)
        if len(self.group.labels) == 1:
            return [float(v) for v in values[:, 0]]
        return [{t: float(v) for t, v in zip(self.group.labels, row, strict=True)} for row in values]

    # --- serve -----------------------------------------------------------------------

    def serve(self, values: Any, words: Any) -> dict[str, Any]:
        return {"values": values}

    def read_served(self, row: Mapping[str, Any]) -> Any:
        return self.decode(np.asarray([floats(self.served(row, "values"))]), [""])[0]

    # --- evaluate --------------------------------------------------------------------

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        values, targets = np.asarray(outputs, np.float64), np.asarray(targets, np.float64)
        per_target = {}
        for j, target in enumerate(self.group.labels):
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


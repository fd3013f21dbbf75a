"""Calibrated probabilities: one temperature per group, fitted on held-apart rows, stored in the spec.

The Keras model outputs its heads' own probabilities (what it was trained on); the ``Predictor``,
the SavedModel and the TFLite model apply the spec's temperatures with the same TensorFlow ops
(:func:`calibrated`), so every artefact serves the same calibrated probabilities. A temperature
never changes a multiclass argmax nor the order of one label's probabilities; thresholds are tuned
on the calibrated probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mtkeras.evaluation import _annotated, _check_arrays
from mtkeras.spec import TaskSpec

#: Temperatures tried by :func:`fit_temperatures`: 0.2 to 10, log-spaced (about 4% apart).
TEMPERATURE_GRID: np.ndarray = np.exp(np.linspace(np.log(0.2), np.log(10.0), 101))


def calibrated(spec: TaskSpec, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The model's outputs ``{group: tensor}`` with each group's temperature applied (TensorFlow ops)."""
    return {name: spec.group(name).rules.calibrate(value) for name, value in outputs.items()}


def uncalibrated(spec: TaskSpec) -> TaskSpec:
    """A copy of ``spec`` without temperatures: it serves the heads' own probabilities (what the model outputs)."""
    return spec.with_temperatures({group.name: None for group in spec.groups if group.rules.calibrates})


def calibrate_arrays(spec: TaskSpec, probs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`calibrated` on numpy arrays (run eagerly with the same ops)."""
    from mtkeras._compat import tf

    out = {}
    for name, values in probs.items():
        rules = spec.group(name).rules
        scaled = rules.calibrate(tf.constant(np.asarray(values, np.float32))) if rules.calibrates else values
        out[name] = np.asarray(scaled)
    return out


def fit_temperatures(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
) -> TaskSpec:
    """A copy of ``spec`` whose calibratable groups carry the temperature (of :data:`TEMPERATURE_GRID`) that
    minimises the log loss of ``targets`` under ``probs`` (the heads' own probabilities) on annotated rows.

    Fit on rows the model was not trained on, and report on others.

    Example:
        >>> spec = fit_temperatures(spec, raw_probs_on_dev, *encode_targets(spec, dev_records))
    """
    from mtkeras._compat import tf

    _check_arrays(spec, probs, targets, weights, groups=[g for g in spec.groups if g.rules.calibrates])
    temperatures = {}
    for group in spec.groups:
        if not group.rules.calibrates:
            continue
        rows = _annotated(weights, group.name, len(targets[group.name]))
        if not rows.any():
            continue
        p = tf.constant(np.asarray(probs[group.name], np.float32)[rows])
        t = np.asarray(targets[group.name], np.float64)[rows]
        losses = [group.rules.log_loss(np.asarray(group.rules.calibrate(p, float(T))), t) for T in TEMPERATURE_GRID]
        temperatures[group.name] = float(round(TEMPERATURE_GRID[int(np.argmin(losses))], 4))
    return spec.with_temperatures(temperatures)


def plot_reliability(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None,
    path: str | os.PathLike,
    uncalibrated: Mapping[str, np.ndarray] | None = None,
    bins: int = 15,
) -> str | None:
    """A reliability-diagram PNG, one panel per calibratable group: observed frequency against confidence
    per bin (multiclass: the top label; multilabel: every label), for ``probs`` and, when given, the heads'
    ``uncalibrated`` probabilities. Returns the path, or None when no group calibrates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [group for group in spec.groups if group.rules.calibrates]
    if not groups:
        return None
    figure, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), squeeze=False)
    for axis, group in zip(axes[0], groups, strict=True):
        rows = _annotated(weights, group.name, len(targets[group.name]))
        t = np.asarray(targets[group.name])[rows]
        series = [("calibrated" if uncalibrated is not None else "probabilities", probs, "tab:red")]
        if uncalibrated is not None:
            series.insert(0, ("uncalibrated", uncalibrated, "tab:blue"))
        for label, values, colour in series:
            p = np.asarray(values[group.name])[rows]
            confidence, outcome = group.rules._confidences(p, t)
            which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
            used = [b for b in range(bins) if (which == b).any()]
            axis.plot([confidence[which == b].mean() for b in used], [outcome[which == b].mean() for b in used],
                      marker="o", markersize=3, color=colour,
                      label=f"{label} (ECE {group.rules.calibration_error(p, t, bins):.3f})")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        axis.legend(loc="upper left", fontsize=8)
        temperature = group.temperature or 1.0
        axis.set(title=f"{group.name} ({group.kind}, T={temperature:.3g})", xlabel="confidence",
                 ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1.01))
    figure.tight_layout()
    path = os.fspath(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

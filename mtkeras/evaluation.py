"""Evaluation reports, threshold tuning and ROC plots, all driven by the spec's kinds."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras._checks import check_int, check_number, check_option
from mtkeras._io import write_json
from mtkeras.defaults import THRESHOLD_SCOPE, THRESHOLD_SCOPES
from mtkeras.spec import TaskSpec

#: Threshold candidates tried by :func:`tune_thresholds` (before the floor is applied).
THRESHOLD_GRID: np.ndarray = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _annotated(weights: Mapping[str, np.ndarray] | None, name: str, rows: int) -> np.ndarray:
    """Boolean mask of the rows annotated for group ``name`` (all rows when there are no weights)."""
    return np.ones(rows, bool) if weights is None else np.asarray(weights[name]) > 0


def _check_arrays(spec: TaskSpec, probs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                  weights: Mapping[str, np.ndarray] | None = None, what: str = "probs",
                  groups: Sequence[Any] | None = None) -> int:
    """The row count shared by each group's (of ``groups``, default all) ``probs``, ``targets`` and ``weights``;
    a clear error naming the group when one is missing, its layout is not its kind's (``check_outputs``) or its
    rows disagree (numpy would index silently, or fail on a boolean mask, naming neither)."""
    rows = None
    arrays = {what: probs, "targets": targets, **({"weights": weights} if weights is not None else {})}
    for group in spec.groups if groups is None else groups:
        for name, given in arrays.items():
            if group.name not in given:
                raise KeyError(f"`{name}` has no entry for group {group.name!r}; received groups {sorted(given)}, "
                               f"the spec's are {[g.name for g in spec.groups]}.")
        counts = {name: len(group.rules.check_outputs(given[group.name], what=f"`{name}`")) if name != "weights"
                  else len(np.atleast_1d(given[group.name])) for name, given in arrays.items()}
        rows = counts["targets"] if rows is None else rows
        if any(count != rows for count in counts.values()):
            named = " and ".join(f"`{name}`" for name in counts)
            raise ValueError(f"Group {group.name!r}: {named} must have one row per text ({rows} rows), received "
                             f"rows {counts}.")
    return int(rows or 0)


def evaluation_report(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """One report: per group its kind's metrics (on annotated rows), and F1 over all groups together.

    ``overall`` treats every (group, label) pair of the text-level label groups
    (multiclass, multilabel) as one binary label and computes micro- and
    macro-F1 over the rows annotated for every such group, as users do when they
    compare one multi-task model with several single-task ones. Regression and
    token-level groups have their own reports only.
    """
    rows = _check_arrays(spec, probs, targets, weights)
    report: dict[str, Any] = {"groups": {}, "overall": {}}
    everywhere = np.ones(rows, dtype=bool)
    predicted, true = [], []
    for group in spec.groups:
        annotated = _annotated(weights, group.name, rows)
        p, t = np.asarray(probs[group.name]), np.asarray(targets[group.name])
        entry: dict[str, Any] = {"kind": group.kind, "rows": int(annotated.sum())}
        if annotated.any():
            entry.update(group.rules.evaluate(p[annotated], t[annotated]))
        report["groups"][group.name] = entry
        indicator = group.rules.indicator(p)
        if indicator is not None:
            everywhere &= annotated
            predicted.append(indicator)
            true.append(t.astype(np.int8))
    if predicted and everywhere.any():
        from sklearn.metrics import f1_score

        all_predicted = np.concatenate(predicted, axis=1)[everywhere]
        all_true = np.concatenate(true, axis=1)[everywhere]
        report["overall"] = {
            "rows": int(everywhere.sum()),
            "micro_f1": float(f1_score(all_true, all_predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(all_true, all_predicted, average="macro", zero_division=0)),
        }
    return report


def summary(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's headline numbers, flat (``group/metric``), without per-label detail."""
    flat = {}
    for name, entry in report["groups"].items():
        for key, value in entry.items():
            if isinstance(value, (int, float)) and key not in ("rows", "roc_auc_labels_skipped"):
                flat[f"{name}/{key}"] = round(float(value), 4)
    for key, value in report.get("overall", {}).items():
        if key != "rows":
            flat[f"overall/{key}"] = round(float(value), 4)
    return flat


def tune_thresholds(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
    *,
    floor: float = 0.1,
    min_positives: int = 5,
    scope: str = THRESHOLD_SCOPE,
) -> TaskSpec:
    """A copy of ``spec`` whose thresholded groups carry thresholds maximising F1.

    ``scope`` (one of :data:`mtkeras.defaults.THRESHOLD_SCOPES`): ``"label"`` gives each label the
    threshold that maximises its own F1; a label with fewer than ``min_positives`` annotated positives
    (F1 on a handful of rows is noise) takes its group's threshold instead. ``"group"`` gives every label
    of a group one threshold, the one that maximises the group's micro-F1. ``"auto"`` decides per group
    between the two on these rows alone: each rule is tuned on one seeded half of them and scored
    (micro-F1) on the other, both ways; the better rule (ties: ``"group"``) is then tuned on all rows.
    Candidates are 0.01, 0.02, ..., 0.99 not below ``floor``; ties go to the candidate nearest 0.5. A
    group without positives keeps its thresholds. Tune on validation data, never on the data you report.

    Example:
        >>> tuned = tune_thresholds(spec, predictor.predict_proba(texts), *encode_targets(spec, records))
    """
    return _tune_thresholds(spec, probs, targets, weights, floor=floor, min_positives=min_positives,
                            scope=scope)[0]


def _tune_thresholds(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None,
    *,
    floor: float,
    min_positives: int,
    scope: str,
) -> tuple[TaskSpec, dict[str, str]]:
    """:func:`tune_thresholds`, and the rule (``"label"`` or ``"group"``) each tuned group used."""
    check_number(floor, "floor", 0.0, 1.0, high_open=True)
    check_int(min_positives, "min_positives", 1)
    check_option(scope, "scope", tuple(THRESHOLD_SCOPES))
    _check_arrays(spec, probs, targets, weights, groups=[g for g in spec.groups if g.rules.thresholded])
    grid = THRESHOLD_GRID[THRESHOLD_GRID >= floor]
    tuned, rules = {}, {}
    for group in spec.groups:
        if not group.rules.thresholded:
            continue
        annotated = _annotated(weights, group.name, len(targets[group.name]))
        p = group.rules.flatten(np.asarray(probs[group.name])[annotated])
        t = group.rules.flatten(np.asarray(targets[group.name])[annotated]) > 0.5
        if not t.any():
            continue
        rules[group.name] = _auto_scope(p, t, grid, min_positives) if scope == "auto" else scope
        tuned[group.name] = _group_thresholds(p, t, grid, min_positives, rules[group.name])
    return spec.with_thresholds(tuned), rules


def _group_thresholds(p: np.ndarray, t: np.ndarray, grid: np.ndarray, min_positives: int, scope: str) -> list[float]:
    """One group's thresholds under ``scope`` ``"label"`` or ``"group"`` (scores and truths ``[rows, labels]``)."""
    whole = _best_f1_threshold(p.ravel(), t.ravel(), grid)
    if scope == "group":
        return [whole] * p.shape[1]
    return [_best_f1_threshold(p[:, j], t[:, j], grid) if t[:, j].sum() >= min_positives else whole
            for j in range(p.shape[1])]


def _auto_scope(p: np.ndarray, t: np.ndarray, grid: np.ndarray, min_positives: int) -> str:
    """``"label"`` or ``"group"``: the rule whose thresholds, tuned on one seeded half of the rows, give the
    higher micro-F1 on the other half (both ways, counts pooled); ties (and too few rows) go to ``"group"``."""
    if len(p) < 4:
        return "group"
    half = _seeded_parts(len(p), 2, seed=0)
    f1 = {}
    for rule in ("label", "group"):
        tp = fp = fn = 0
        for k in (0, 1):
            fit, held = half != k, half == k
            if not t[fit].any():
                continue
            chosen = p[held] >= np.asarray(_group_thresholds(p[fit], t[fit], grid, min_positives, rule))
            tp += int((chosen & t[held]).sum())
            fp += int((chosen & ~t[held]).sum())
            fn += int((~chosen & t[held]).sum())
        f1[rule] = 2 * tp / max(2 * tp + fp + fn, 1)
    return "label" if f1["label"] > f1["group"] else "group"


def _best_f1_threshold(p: np.ndarray, t: np.ndarray, grid: np.ndarray) -> float:
    """The candidate of ``grid`` whose F1 over scores ``p`` and truths ``t`` is highest (ties: nearest 0.5)."""
    chosen = p[None, :] >= grid[:, None]  # [candidates, scores]
    tp = (chosen & t).sum(axis=1)
    f1 = 2 * tp / (chosen.sum(axis=1) + t.sum())
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def _seeded_parts(rows: int, parts: int, seed: int) -> np.ndarray:
    """Each row's part, 0 to ``parts - 1``: a seeded shuffle dealt round-robin (sizes differ by at most one)."""
    part = np.empty(rows, dtype=np.int64)
    part[np.random.default_rng(seed).permutation(rows)] = np.arange(rows) % parts
    return part


def _rows(arrays: Mapping[str, np.ndarray] | None, mask: np.ndarray) -> dict[str, np.ndarray] | None:
    return None if arrays is None else {name: np.asarray(values)[mask] for name, values in arrays.items()}


def selection_score(spec: TaskSpec, report: Mapping[str, Any]) -> float:
    """The mean over groups of each kind's ``selection_metric`` (higher is better; groups without a value are
    left out): how a cross-fitted report picks among candidate models."""
    values = [report["groups"][group.name].get(group.rules.selection_metric) for group in spec.groups]
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else float("-inf")


def cross_fitted_report(
    spec: TaskSpec,
    candidates: Sequence[Mapping[str, np.ndarray]],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
    *,
    folds: int = 2,
    seed: int = 0,
    tune: bool = True,
    calibrate: bool = False,
    floor: float = 0.1,
    min_positives: int = 5,
    scope: str = THRESHOLD_SCOPE,
    answers: Callable[[int], Mapping[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """An honest report: every row is scored with choices made on other rows only.

    The rows are split into ``folds`` parts (seeded). For each part, the other parts pick the
    candidate (e.g. one set of validation probabilities per epoch) with the best
    :func:`selection_score`, fit the temperatures (with ``calibrate``; candidates are then the heads'
    own probabilities) and tune the thresholds on the calibrated probabilities (with ``tune``, as
    :func:`tune_thresholds` with ``floor``, ``min_positives`` and ``scope``); the
    part is then scored with those choices. ``summary`` is the mean over parts of each headline
    number (with ``calibrate``, ``<group>/ece_uncalibrated`` too); ``folds`` keeps each part's
    report and choices.

    ``answers`` (optional) maps a chosen candidate's index to the probabilities it answers with, when they are
    not the ones it is chosen by (a model with a memory is chosen by its heads' probabilities, as its training
    picks its checkpoint, and answers with the memory's blend): those are calibrated, tuned and scored. It is
    called once per candidate chosen by some part, never for the others.

    Example:
        >>> report = cross_fitted_report(spec, [probs_epoch_1, probs_epoch_2], *encode_targets(spec, records))
        >>> report["summary"]["section/accuracy"]
    """
    if isinstance(candidates, Mapping) or not isinstance(candidates, Sequence) or not candidates:
        raise TypeError(
            "`candidates` must be a non-empty list of {group: probabilities} dicts (one per candidate model), "
            f"received {candidates!r:.80}."
        )
    for index, probs in enumerate(candidates):
        rows = _check_arrays(spec, probs, targets, weights, what=f"candidates[{index}]")
    check_int(folds, "folds", 2, maximum=max(2, rows))
    part = _seeded_parts(rows, folds, seed)
    answered: dict[int, Mapping[str, np.ndarray]] = {}
    reports = []
    for k in range(folds):
        choose, scored = part != k, part == k
        chosen_targets, chosen_weights = _rows(targets, choose), _rows(weights, choose)
        scores = [selection_score(spec, evaluation_report(spec, _rows(probs, choose), chosen_targets, chosen_weights))
                  for probs in candidates]
        best = int(np.argmax(scores))  # ties: the earliest candidate
        if answers is not None and best not in answered:
            answered[best] = answers(best)
            _check_arrays(spec, answered[best], targets, weights, what=f"answers({best})")
        chosen_spec, probs, before, rules = spec, answered.get(best, candidates[best]), {}, {}
        if calibrate:
            from mtkeras.calibration import calibrate_arrays, fit_temperatures

            raw_report = evaluation_report(spec, _rows(probs, scored), _rows(targets, scored), _rows(weights, scored))
            before = {f"{name}/ece_uncalibrated": entry["ece"] for name, entry in raw_report["groups"].items()
                      if entry.get("ece") is not None}
            chosen_spec = fit_temperatures(spec, _rows(probs, choose), chosen_targets, chosen_weights)
            probs = calibrate_arrays(chosen_spec, probs)
        if tune:
            chosen_spec, rules = _tune_thresholds(chosen_spec, _rows(probs, choose), chosen_targets, chosen_weights,
                                                  floor=floor, min_positives=min_positives, scope=scope)
        report = evaluation_report(chosen_spec, _rows(probs, scored), _rows(targets, scored), _rows(weights, scored))
        reports.append({"rows": int(scored.sum()), "candidate": best, "selection_score": scores[best],
                        "temperatures": {g.name: g.temperature for g in chosen_spec.groups if g.rules.calibrates},
                        "threshold_scopes": rules,
                        "summary": {**summary(report), **before}, "report": report})
    keys = set.intersection(*(set(entry["summary"]) for entry in reports))
    return {
        "protocol": (f"cross-fitted over {folds} seeded parts of these rows (seed {seed}): each part is scored "
                     "with the candidate, temperatures and thresholds chosen on the other parts"
                     + ("" if tune else " (thresholds not tuned)") + ("" if calibrate else " (not calibrated)")),
        "summary": {key: round(float(np.mean([entry["summary"][key] for entry in reports])), 4)
                    for key in sorted(keys)},
        "folds": reports,
    }


def plot_roc_curves(
    spec: TaskSpec,
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None,
    path: str | os.PathLike,
) -> str | None:
    """A PNG with one panel per group with probabilities: each label's ROC curve (thin) and the
    micro-average (thick); token-level groups count each word. Regression groups have no panel.
    Returns the path, or None when no group has probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    groups = [group for group in spec.groups if group.rules.has_probabilities]
    if not groups:
        return None
    figure, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), squeeze=False)
    for axis, group in zip(axes[0], groups, strict=True):
        annotated = _annotated(weights, group.name, len(targets[group.name]))
        p = group.rules.flatten(np.asarray(probs[group.name])[annotated])
        t = group.rules.flatten(np.asarray(targets[group.name])[annotated]) > 0.5
        for j in range(len(group.labels)):
            if 0 < t[:, j].sum() < len(t):
                fpr, tpr, _ = roc_curve(t[:, j], p[:, j])
                axis.plot(fpr, tpr, linewidth=0.6, alpha=0.35, color="tab:blue")
        if 0 < t.sum() < t.size:
            fpr, tpr, _ = roc_curve(t.ravel(), p.ravel())
            auc = roc_auc_score(t.ravel(), p.ravel())
            axis.plot(fpr, tpr, linewidth=2.2, color="tab:red", label=f"micro-average (AUC {auc:.3f})")
            axis.legend(loc="lower right", fontsize=8)
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        axis.set(title=f"{group.name} ({group.kind}, {len(group.labels)} labels)",
                 xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    figure.tight_layout()
    path = os.fspath(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def evaluate(
    predictor: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    output_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Predict ``records`` with a :class:`~mtkeras.Predictor` and report on them.

    With ``output_dir``, also writes ``metrics.json`` and ``roc_curves.png`` there.
    """
    from mtkeras.data import check_rows, encode_targets
    from mtkeras.predict import Predictor

    if not isinstance(predictor, Predictor):
        raise TypeError(f"evaluate: `predictor` must be a Predictor (mtk.Predictor(model, spec, tokenizer), or "
                        f"Predictor.from_folder(path)), received {predictor!r:.80} ({type(predictor).__name__}).")
    spec = predictor.spec
    check_rows(records)
    if not records:
        raise ValueError("evaluate: `records` is empty; a report needs at least one row with its labels.")
    if output_dir is not None and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f"`output_dir` {os.fspath(output_dir)!r} is a file, not a folder.")
    targets, weights = encode_targets(spec, records)  # labels checked before the model runs
    probs = predictor.predict_proba([record[spec.text_column] for record in records])
    report = evaluation_report(spec, probs, targets, weights)
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        write_json(report, os.path.join(output_dir, "metrics.json"))
        plot_roc_curves(spec, probs, targets, weights, os.path.join(output_dir, "roc_curves.png"))
    return report

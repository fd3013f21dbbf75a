"""How far Debtags' labels agree with themselves, and where a run's mistakes fall.

    python benchmarks/label_agreement.py                                   # near-duplicates, copy agreement
    python benchmarks/label_agreement.py --runs recipe-auto lc-tfidf-full  # and those runs on the same rows

For every validation description, the most similar training description (cosine of word 1-2-gram TF-IDF fitted
on the training texts). Where the two are near-identical (cosine at least 0.95, 0.9, 0.8), how often copying
the training row's labels is right shows how consistently near-identical descriptions were labelled. Each run
(its kept validation probabilities, ``runs/bench/NAME/validation_predictions``, the last epoch: the recipe's
deployed one; a linear baseline's one "epoch") is scored on the same rows: section by argmax, each multilabel
group with one threshold chosen on the *other* validation rows (micro-F1, a grid of 0.05 steps), so nothing is
chosen on the rows scored. Then, per run and group, how many of its false positives fall on rows that carry no
tag of the group (each seeded half decided by the threshold chosen on the other), and ten such rows answered
confidently, to read by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import mtkeras as mtk
from mtkeras.training import load_epoch_predictions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from debtags_quality import OUT, _baseline_data  # noqa: E402  (the Debtags config, its rows and labels)

CUTS = (0.95, 0.9, 0.8)
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _micro_f1(truth: np.ndarray, decided: np.ndarray) -> float:
    hits = float(np.sum(truth * decided))
    return 2 * hits / max(float(np.sum(truth) + np.sum(decided)), 1.0)


def _nearest(train: list[dict], validation: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit([r["text"] for r in train])
    similarity = (vectorizer.transform([r["text"] for r in validation])
                  @ vectorizer.transform([r["text"] for r in train]).T).tocsr()
    return np.asarray(similarity.argmax(axis=1)).ravel(), similarity.max(axis=1).toarray().ravel()


def _scores(spec: mtk.TaskSpec, targets: dict, decided: dict, rows: np.ndarray) -> dict[str, float]:
    scores = {}
    for group in spec.groups:
        truth, answer = targets[group.name][rows], decided[group.name][rows]
        if not group.rules.thresholded:  # argmax kinds: accuracy
            scores[group.name] = float(np.mean(truth.argmax(-1) == answer.argmax(-1)))
        else:
            scores[group.name] = _micro_f1(truth, answer)
    return scores


def _decide(spec: mtk.TaskSpec, targets: dict, probs: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Section by argmax; each multilabel group at the one threshold that scores best on the rows *not* in
    ``rows`` (the rows scored)."""
    rest = ~rows
    decided = {}
    for group in spec.groups:
        p = probs[group.name]
        if not group.rules.thresholded:
            decided[group.name] = np.eye(p.shape[-1])[p.argmax(-1)]
            continue
        best = max(GRID, key=lambda t: _micro_f1(targets[group.name][rest], (p[rest] >= t).astype(float)))
        decided[group.name] = (p >= best).astype(float)
    return decided


def _untagged(spec: mtk.TaskSpec, targets: dict, probs: dict) -> dict[str, dict]:
    """Where a run's false positives fall, per multilabel group, each half decided by the threshold chosen on
    the other (two seeded halves of this script's own, not the report's): how many are on rows that carry no tag
    of the group at all, and the micro-F1 it would score if its confident answers there (probability at least
    0.8) were right."""
    half = np.random.default_rng(0).permutation(len(next(iter(targets.values())))) % 2 == 0
    first, second = _decide(spec, targets, probs, half), _decide(spec, targets, probs, ~half)
    decided = {name: np.where(half[:, None], first[name], second[name]) for name in first}
    out = {}
    for group in spec.groups:
        if not group.rules.thresholded:
            continue
        truth, answer, p = targets[group.name], decided[group.name], probs[group.name]
        untagged = truth.sum(-1) == 0
        false = (1 - truth) * answer
        completed = np.maximum(truth, ((p >= 0.8) & untagged[:, None]).astype(float))
        out[group.name] = {"untagged rows": int(untagged.sum()), "false positives": int(false.sum()),
                           "on untagged rows": int(false[untagged].sum()),
                           "untagged rows answered confidently": int(((p >= 0.8) & untagged[:, None]).any(-1).sum()),
                           "micro_f1": round(_micro_f1(truth, answer), 3),
                           "micro_f1 if those were right": round(_micro_f1(completed, answer), 3)}
    return out


def _sample(spec: mtk.TaskSpec, validation: list[dict], targets: dict, probs: dict, group: str) -> list[str]:
    """Ten seeded rows with no ``group`` tag that the run answers confidently (probability at least 0.8), to
    read by hand: is the tag missing, or the answer wrong?"""
    labels = next(g.labels for g in spec.groups if g.name == group)
    p = probs[group]
    rows = [i for i in np.flatnonzero(targets[group].sum(-1) == 0) if p[i].max() >= 0.8]
    picked = sorted(np.random.default_rng(1).choice(rows, size=min(10, len(rows)), replace=False))
    return [f"{validation[i]['package']}: {[labels[k] for k in np.flatnonzero(p[i] >= 0.8)]} | "
            f"{validation[i]['text'][:160]}" for i in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=[], help="runs in runs/bench whose kept probabilities to score")
    args = parser.parse_args()
    _, train, validation, spec = _baseline_data([])
    targets, _ = mtk.encode_targets(spec, validation)
    nearest, similarity = _nearest(train, validation)
    copied, _ = mtk.encode_targets(spec, [train[j] for j in nearest])
    results = {"rows": len(validation), "cuts": {}}
    runs = {}
    for name in args.runs:
        saved = os.path.join(OUT, name, "model", "spec.json")  # fine-tuned runs; the linear ones keep none
        if os.path.exists(saved) and [g.labels for g in mtk.TaskSpec.load(saved).groups] != [
                g.labels for g in spec.groups]:
            sys.exit(f"--runs {name}: its groups' labels are not the Debtags config's")
        epochs = load_epoch_predictions(os.path.join(OUT, name, "validation_predictions"))
        runs[name] = epochs[max(epochs)]
        widths = {group.name: (runs[name][group.name].shape[-1], len(group.labels)) for group in spec.groups}
        if any(a != b for a, b in widths.values()):
            sys.exit(f"--runs {name}: columns per group (kept, expected) {widths}")
    for cut in CUTS:
        rows = similarity >= cut
        entry = {"rows": int(rows.sum()), "copy": _scores(spec, targets, copied, rows)}
        for name, probs in runs.items():
            entry[name] = _scores(spec, targets, _decide(spec, targets, probs, rows), rows)
            entry[f"{name}, other rows"] = _scores(spec, targets, _decide(spec, targets, probs, ~rows), ~rows)
        for group in ("interface", "use", "works_with"):
            differ = [i for i in np.flatnonzero(rows) if set(validation[i][group]) != set(train[nearest[i]][group])]
            one_empty = sum(1 for i in differ if not validation[i][group] or not train[nearest[i]][group])
            entry[f"{group} sets differ"] = len(differ)
            entry[f"{group} differ, one side empty"] = one_empty
        results["cuts"][str(cut)] = entry
    for group in ("interface", "use", "works_with"):
        results[f"{group} empty (validation)"] = round(float(np.mean([not r[group] for r in validation])), 3)
    for name, probs in runs.items():
        results[f"{name}: untagged rows"] = _untagged(spec, targets, probs)
    if runs:
        results["read by hand"] = {group: _sample(spec, validation, targets, runs[args.runs[0]], group)
                                   for group in ("interface", "use", "works_with")}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

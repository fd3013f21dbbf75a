import json
import os

import numpy as np
import pytest

import mtkeras as mtk


@pytest.fixture()
def spec(tiny_spec):
    return tiny_spec


def test_tune_thresholds_finds_the_known_best(spec):
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.random((n, 4)) < 0.3
    # Positives score 0.6-0.7, negatives 0.0-0.55: every threshold above the highest negative and
    # up to 0.60 separates them perfectly; of those, the one nearest 0.5 is the first grid step above
    # the highest negative.
    probs = np.where(truth, rng.uniform(0.6, 0.7, (n, 4)), rng.uniform(0.0, 0.55, (n, 4)))
    targets = {"colour": truth.astype(np.float32), "topic": np.eye(3)[rng.integers(0, 3, n)]}
    tuned = mtk.tune_thresholds(spec, {"colour": probs, "topic": targets["topic"]}, targets, scope="label")
    highest_negative = np.where(truth, 0.0, probs).max(axis=0)
    expected = tuple(float(np.ceil(h * 100 + 1e-9) / 100) for h in highest_negative)
    assert tuned.group("colour").thresholds == pytest.approx(expected)
    assert tuned.group("topic").thresholds is None  # argmax groups have none
    report = mtk.evaluation_report(tuned, {"colour": probs, "topic": targets["topic"]}, targets)
    assert report["groups"]["colour"]["micro_f1"] == 1.0


def test_tune_thresholds_floor_ties_and_rare_labels(spec):
    # label 0: positives score 0.3 (5 rows) or 0.08 (5 rows), negatives 0.03 (10 rows).
    label0 = [0.3] * 5 + [0.08] * 5 + [0.03] * 10
    probs = np.array([[p, 0.9 if i < 10 else 0.1, 0.3, 0.5] for i, p in enumerate(label0)])
    truth = np.array([[1, 1, 0, 0]] * 10 + [[0, 0, 0, 0]] * 10, dtype=np.float32)
    truth[0, 2] = 1  # label 2 has a single positive, label 3 none: below min_positives, they take the group's
    label = {"scope": "label"}
    no_floor = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, floor=0.0, **label).group("colour")
    no_floor = no_floor.thresholds
    assert no_floor[0] == 0.08  # 0.04-0.08 all separate perfectly; ties go to the one nearest 0.5
    floored = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, floor=0.1, min_positives=5, **label)
    thresholds = floored.group("colour").thresholds
    assert thresholds[0] == 0.3  # from 0.1 up, 0.1-0.3 tie (F1 2/3); the floor keeps 0.08 out
    assert thresholds[1] == 0.5  # 0.11-0.9 all perfect: the tie goes to 0.5
    whole = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, floor=0.1, scope="group")
    assert thresholds[2] == thresholds[3] == whole.group("colour").thresholds[0] == 0.51  # the group's micro-F1 best
    with pytest.raises(ValueError, match=r"`floor` must be a number in \[0, 1\), received 1.5"):
        mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, floor=1.5)
    with pytest.raises(ValueError, match=r"`min_positives` must be an integer >= 1, received 0"):
        mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, min_positives=0)


def test_one_threshold_per_group_maximises_its_micro_f1(spec):
    # label 0: positives 0.8, negatives 0.2 (alone: 0.21-0.8 tie, 0.5 wins); label 1: positives 0.35,
    # negatives 0.05 (alone: 0.35). Together 0.21-0.35 separate every label: 0.35, nearest 0.5.
    truth = np.array([[1, 1], [1, 0], [0, 1], [0, 0]] * 5, dtype=np.float32)
    probs = np.where(truth, [0.8, 0.35], [0.2, 0.05])
    probs = np.concatenate([probs, np.full((20, 2), 0.01)], axis=1)  # labels 2 and 3: never positive
    truth = np.concatenate([truth, np.zeros((20, 2), np.float32)], axis=1)
    per_label = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="label").group("colour")
    per_label = per_label.thresholds
    per_group = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="group").group("colour")
    assert per_label[:2] == (0.5, 0.35) and per_group.thresholds == (0.35,) * 4
    nothing = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": np.zeros_like(truth)}, scope="group")
    assert nothing.group("colour").thresholds == spec.group("colour").thresholds  # no positives: kept
    with pytest.raises(ValueError, match=r"`scope` must be one of \['label', 'group', 'auto'\], received 'labels'"):
        mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="labels")
    # Both rules separate every label on each half: a tie, which "auto" gives to the one threshold per group.
    assert mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="auto").group("colour") == per_group


def test_auto_scope_keeps_per_label_thresholds_when_held_out_rows_prefer_them(spec):
    # label 0: positives 0.8, negatives 0.6; label 1: positives 0.3, negatives 0.1. No single threshold
    # separates both labels (label 0's negatives score above label 1's positives); one per label does, on
    # every half of the rows, so "auto" keeps them and tunes them on all rows.
    truth = np.array([[1, 1], [1, 0], [0, 1], [0, 0]] * 10, dtype=np.float32)
    probs = np.concatenate([np.where(truth, [0.8, 0.3], [0.6, 0.1]), np.full((40, 2), 0.01)], axis=1)
    truth = np.concatenate([truth, np.zeros((40, 2), np.float32)], axis=1)
    auto = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="auto")
    per_label = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, scope="label")
    assert auto == per_label and auto.group("colour").thresholds[:2] == (0.61, 0.3)
    report = mtk.cross_fitted_report(spec, [{"colour": probs, "topic": np.full((40, 3), 1 / 3)}],
                                     {"colour": truth, "topic": np.eye(3)[np.arange(40) % 3]}, scope="auto")
    assert [fold["threshold_scopes"] for fold in report["folds"]] == [{"colour": "label"}] * 2


def test_tuning_ignores_rows_that_are_not_annotated(spec):
    probs = np.array([[0.8, 0.5, 0.5, 0.5]] * 6 + [[0.2, 0.5, 0.5, 0.5]] * 6)
    truth = np.zeros((12, 4), np.float32)
    truth[:6, 0] = 1
    weights = {"colour": np.array([1.0] * 12)}
    clean = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth}, weights)
    truth_noisy = truth.copy()
    truth_noisy[6:, 0] = 1  # placeholder targets on rows we then mark as not annotated
    weights_noisy = {"colour": np.array([1.0] * 6 + [0.0] * 6)}
    noisy = mtk.tune_thresholds(spec, {"colour": probs}, {"colour": truth_noisy}, weights_noisy)
    assert noisy.group("colour").thresholds[0] >= 0.2 and clean.group("colour").thresholds[0] > 0.2


def test_report_values_on_a_constructed_case(spec):
    topic_true = np.eye(3)[[0, 1, 2, 0]]
    topic_probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.6, 0.2, 0.2]])
    colour_true = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.float32)
    colour_probs = np.array([[0.9, 0.1, 0.2, 0.1], [0.2, 0.8, 0.1, 0.1], [0.7, 0.3, 0.1, 0.1], [0.1, 0.2, 0.1, 0.1]])
    report = mtk.evaluation_report(spec, {"topic": topic_probs, "colour": colour_probs},
                                   {"topic": topic_true, "colour": colour_true})
    topic = report["groups"]["topic"]
    assert topic["accuracy"] == 0.75 and topic["micro_f1"] == 0.75
    assert topic["per_label"]["gamma"]["recall"] == 0.0
    colour = report["groups"]["colour"]
    # Predicted at 0.5: rows {0}, {1}, {0}, {} vs true {0}, {1}, {0,1}, {}: tp=3, fp=0, fn=1.
    assert colour["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert colour["subset_accuracy"] == 0.75
    assert colour["roc_auc_labels_skipped"] == 2  # green and yellow never occur
    assert colour["roc_auc_macro"] == pytest.approx(1.0)
    overall = report["overall"]
    # All (group, label) pairs together: topic tp=3 fp=1 fn=1, colour tp=3 fp=0 fn=1.
    assert overall["micro_f1"] == pytest.approx(2 * 6 / (2 * 6 + 1 + 2))
    assert set(mtk.evaluation.summary(report)) >= {"topic/accuracy", "colour/micro_f1", "overall/micro_f1"}


def test_report_uses_only_annotated_rows(spec):
    probs = {"topic": np.eye(3)[[0, 1, 2]], "colour": np.full((3, 4), 0.9)}
    targets = {"topic": np.eye(3)[[0, 1, 0]], "colour": np.ones((3, 4), np.float32)}
    weights = {"topic": np.array([1.0, 1.0, 0.0]), "colour": np.array([1.0, 1.0, 1.0])}
    report = mtk.evaluation_report(spec, probs, targets, weights)
    assert report["groups"]["topic"]["rows"] == 2 and report["groups"]["topic"]["accuracy"] == 1.0
    assert report["overall"]["rows"] == 2


_GOOD = {"topic": np.eye(3)[[0, 1, 2]], "colour": np.full((3, 4), 0.9)}
_MISMATCHES = {
    "rows": ({"topic": np.eye(3)[[0, 1, 2]], "colour": np.full((2, 4), 0.9)}, ValueError,
             r"Group 'colour': `probs` and `targets` must have one row per text \(3 rows\), received rows "
             r"\{'probs': 2, 'targets': 3\}"),
    "columns": ({"topic": np.eye(3)[[0, 1, 2]], "colour": np.full((3, 3), 0.9)}, ValueError,
                r"`probs` of group 'colour' have shape \(3, 3\); expected \(rows, 4\): one column per label"),
    "group missing": ({"topic": np.eye(3)[[0, 1, 2]]}, KeyError,
                      r"`probs` has no entry for group 'colour'; received groups \['topic'\], the spec's are"),
}
_TAKING_PROBS = {
    "evaluation_report": lambda spec, probs, targets: mtk.evaluation_report(spec, probs, targets),
    "tune_thresholds": lambda spec, probs, targets: mtk.tune_thresholds(spec, probs, targets),
    "fit_temperatures": lambda spec, probs, targets: mtk.calibration.fit_temperatures(spec, probs, targets),
    "cross_fitted_report": lambda spec, probs, targets: mtk.cross_fitted_report(spec, [_GOOD, probs], targets),
}


@pytest.mark.parametrize("function", list(_TAKING_PROBS))
@pytest.mark.parametrize("mismatch", list(_MISMATCHES))
def test_probabilities_that_do_not_fit_the_targets_are_named(spec, function, mismatch):
    probs, error, message = _MISMATCHES[mismatch]
    if function == "cross_fitted_report":  # the second candidate is the bad one
        message = message.replace("`probs`", r"`candidates\[1\]`").replace("'probs'", r"'candidates\[1\]'")
    targets = {"topic": np.eye(3)[[0, 1, 0]], "colour": np.ones((3, 4), np.float32)}
    _TAKING_PROBS[function](spec, _GOOD, targets)  # the good arrays pass
    with pytest.raises(error, match=message):
        _TAKING_PROBS[function](spec, probs, targets)


def test_evaluate_writes_json_and_plot(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    from conftest import synthetic_records

    predictor = mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer)
    report = predictor.evaluate(synthetic_records(30), output_dir=str(tmp_path))
    with open(tmp_path / "metrics.json") as handle:
        assert json.load(handle) == json.loads(json.dumps(report))
    with open(tmp_path / "roc_curves.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(tmp_path / "roc_curves.png") > 10_000

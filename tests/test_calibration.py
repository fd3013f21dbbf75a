"""Temperatures, class weights, focal loss and the cross-fitted (honest) report."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.calibration import TEMPERATURE_GRID, calibrate_arrays, fit_temperatures, plot_reliability, uncalibrated
from mtkeras.heads import WeightedCrossentropy
from mtkeras.kinds import CLASS_WEIGHTINGS, KINDS


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def calibrated_spec(spec: mtk.TaskSpec) -> mtk.TaskSpec:
    return spec.with_temperatures({"topic": 2.5, "colour": 0.6})


def calibrated_model(tiny_spec, tiny_tokenizer):
    """A tiny model, its calibrated spec, texts, and the float32 Predictor's raw and calibrated answers (what a
    float32 export must give)."""
    mtk.keras.utils.set_random_seed(11)
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    spec = calibrated_spec(tiny_spec)
    texts = [r["text"] for r in synthetic_records(6, seed=3)]
    raw = mtk.Predictor(model, tiny_spec, tiny_tokenizer, precision="float32").predict_proba(texts)
    return model, spec, texts, raw, mtk.Predictor(model, spec, tiny_tokenizer, precision="float32").predict_proba(texts)


def test_the_predictor_and_the_keras_file_apply_the_temperatures(tiny_spec, tiny_tokenizer, tmp_path):
    model, spec, texts, raw, python = calibrated_model(tiny_spec, tiny_tokenizer)
    expected = calibrate_arrays(spec, raw)
    for name in raw:
        np.testing.assert_allclose(python[name], expected[name], atol=1e-6)
        assert not np.allclose(python[name], raw[name], atol=1e-3)  # the temperature did something
    np.testing.assert_array_equal(python["topic"].argmax(1), raw["topic"].argmax(1))  # argmax unchanged
    assert uncalibrated(spec) == tiny_spec  # the heads' own probabilities again
    mtk.save_model(model, spec, tmp_path / "m", tiny_tokenizer)
    loaded = mtk.Predictor.from_folder(str(tmp_path / "m"), precision="float32").predict_proba(texts)
    np.testing.assert_allclose(loaded["colour"], python["colour"], atol=1e-6)


@pytest.mark.slow  # measured > 15 s; test_bag's four-artefact test serves a calibrated model by default
def test_every_artefact_serves_the_same_calibrated_probabilities(tiny_spec, tiny_tokenizer, tmp_path):
    model, spec, texts, raw, python = calibrated_model(tiny_spec, tiny_tokenizer)
    export = mtk.export_saved_model(model, str(tmp_path / "export"), spec=spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(export).signatures["serving_default"](text=tf.constant(texts))
    lite = tf.lite.Interpreter(model_path=mtk.export_tflite(model, str(tmp_path / "m.tflite"), spec=spec))
    batch = mtk.tokenize(tiny_tokenizer, texts, spec.max_length)
    lite_out = lite.get_signature_runner()(**batch)
    for name in raw:
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), python[name], atol=1e-5)
        np.testing.assert_allclose(lite_out[f"{name}_probabilities"], python[name], atol=1e-5)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_temperatures_finds_the_temperature_that_made_the_probabilities(tiny_spec, true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(4000, 3))
    topic = np.eye(3)[[rng.choice(3, p=p) for p in softmax(logits)]].astype(np.float32)
    colour_logits = rng.normal(0, 2, size=(4000, 4))
    colour = (rng.random((4000, 4)) < 1 / (1 + np.exp(-colour_logits))).astype(np.float32)
    # What an over- or under-confident head outputs: the true logits times 1 / T.
    probs = {"topic": softmax(logits / true_temperature).astype(np.float32),
             "colour": (1 / (1 + np.exp(-colour_logits / true_temperature))).astype(np.float32)}
    fitted = fit_temperatures(tiny_spec, probs, {"topic": topic, "colour": colour})
    for name in probs:
        assert fitted.group(name).temperature == pytest.approx(1 / true_temperature, rel=0.12)
        before = fitted.group(name).rules.calibration_error(probs[name], {"topic": topic, "colour": colour}[name])
        after = fitted.group(name).rules.calibration_error(calibrate_arrays(fitted, probs)[name],
                                                           {"topic": topic, "colour": colour}[name])
        assert after <= before + 0.01
    assert TEMPERATURE_GRID.min() <= fitted.group("topic").temperature <= TEMPERATURE_GRID.max()


def test_reliability_diagram_is_written(tiny_spec, tmp_path):
    rng = np.random.default_rng(1)
    probs = {"topic": softmax(rng.normal(size=(50, 3))), "colour": rng.random((50, 4))}
    targets = {"topic": np.eye(3)[rng.integers(0, 3, 50)], "colour": (rng.random((50, 4)) < 0.5).astype(float)}
    path = plot_reliability(calibrated_spec(tiny_spec), probs, targets, None, tmp_path / "r.png", uncalibrated=probs)
    assert path and (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("kind", "changes", "match"),
    [
        ("multiclass", {"temperature": 0.0}, r"`temperature` must be a finite number > 0 .*received 0.0"),
        ("multiclass", {"temperature": -1}, r"`temperature` must be a finite number > 0 .*received -1"),
        ("multilabel", {"temperature": math.nan}, r"`temperature` must be a finite number > 0 .*received nan"),
        ("multilabel", {"temperature": math.inf}, r"`temperature` must be a finite number > 0 .*received inf"),
        ("multilabel", {"temperature": "2"}, r"`temperature` must be a finite number > 0 .*received '2'"),
        ("regression", {"temperature": 2.0},
         r"`temperature` applies to kinds \['multiclass', 'multilabel'\], not to a regression group"),
        ("multilabel", {"class_weight": "rare"},
         r"`class_weight` must be one of \['balanced', 'sqrt_balanced'\] or one number > 0 per label, "
         r"received 'rare'"),
        ("multilabel", {"class_weight": [1.0, 2.0]}, r"one finite number > 0 per label \(3\), received \[1.0, 2.0\]"),
        ("multiclass", {"class_weight": [1.0, 0.0, 1.0]}, r"one finite number > 0 per label \(3\), received"),
        ("token_multilabel", {"class_weight": "balanced"},
         r"`class_weight` applies to kinds \['multiclass', 'multilabel'\], not to a token_multilabel group"),
        ("multilabel", {"focal_gamma": 1.0},
         r"`focal_gamma` applies only with a focal `loss` \(\['focal'\]\), received 1.0 with loss "
         r"'binary_crossentropy'"),
        ("multiclass", {"loss": "focal", "focal_gamma": -0.5}, r"`focal_gamma` must be a finite number >= 0, "
                                                                r"received -0.5"),
        ("multilabel", {"loss": "hinge"}, r"takes `loss` in \['binary_crossentropy', 'focal'\], received 'hinge'"),
    ],
)
def test_bad_calibration_and_imbalance_options_are_refused(kind, changes, match):
    with pytest.raises(ValueError, match=match):
        mtk.LabelGroup("g", kind, labels=["a", "b", "c"], **changes)


def test_class_weights_are_learned_from_the_training_rows(tiny_spec):
    assert list(CLASS_WEIGHTINGS) == ["balanced", "sqrt_balanced"]
    spec = dataclasses.replace(tiny_spec, groups=[
        dataclasses.replace(tiny_spec.group("topic"), class_weight="balanced"),
        dataclasses.replace(tiny_spec.group("colour"), class_weight="sqrt_balanced"),
    ])
    with pytest.raises(ValueError, match=r"class_weight='balanced' but no weights yet; .*fit_target_stats"):
        mtk.compile_model(mtk.build_model(spec, bert_config=tiny_config()), spec)
    records = synthetic_records(60)
    fitted = mtk.fit_target_stats(spec, records)
    targets, _ = mtk.encode_targets(spec, records)
    counts = targets["topic"].sum(0)
    assert fitted.group("topic").class_weight == pytest.approx(tuple(60 / (3 * counts)))
    positives = targets["colour"].sum(0)
    assert fitted.group("colour").class_weight == pytest.approx(tuple(np.sqrt((60 - positives) / positives)))
    assert mtk.TaskSpec.from_json(fitted.to_json()) == fitted
    model = mtk.build_model(fitted, bert_config=tiny_config())
    mtk.compile_model(model, fitted)
    history = model.fit(mtk.make_dataset(fitted, mtk.load_tokenizer(spec.encoder), records, batch_size=20),
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_weighted_crossentropy_is_keras_crossentropy_without_weights_and_focuses_with_gamma():
    rng = np.random.default_rng(2)
    y = np.eye(4)[rng.integers(0, 4, 16)].astype(np.float32)
    p = softmax(rng.normal(size=(16, 4))).astype(np.float32)
    keras = mtk.keras
    assert float(WeightedCrossentropy("categorical")(y, p)) == pytest.approx(
        float(keras.losses.CategoricalCrossentropy()(y, p)), rel=1e-6)
    yb = (rng.random((16, 4)) < 0.3).astype(np.float32)
    assert float(WeightedCrossentropy("binary")(yb, p)) == pytest.approx(
        float(keras.losses.BinaryCrossentropy()(yb, p)), rel=1e-5)
    # Weights scale each class's rows; the focal term shrinks the loss of confident, right answers most.
    weighted = WeightedCrossentropy("categorical", label_weights=[2.0, 1.0, 1.0, 1.0])
    per_row = weighted.call(tf.constant(y), tf.constant(p)).numpy()
    plain = WeightedCrossentropy("categorical").call(tf.constant(y), tf.constant(p)).numpy()
    np.testing.assert_allclose(per_row, plain * np.where(y[:, 0] == 1, 2.0, 1.0), rtol=1e-6)
    easy, hard = np.array([[0.95, 0.05]], np.float32), np.array([[0.4, 0.6]], np.float32)
    target = np.array([[1.0, 0.0]], np.float32)
    focal = WeightedCrossentropy("categorical", gamma=2.0)
    ratio_easy = float(focal(target, easy)) / float(WeightedCrossentropy("categorical")(target, easy))
    ratio_hard = float(focal(target, hard)) / float(WeightedCrossentropy("categorical")(target, hard))
    assert ratio_easy < ratio_hard < 1.0
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(focal))
    assert restored.get_config() == focal.get_config()
    with pytest.raises(ValueError, match=r"`mode` must be one of \['binary', 'categorical'\], received 'sparse'"):
        WeightedCrossentropy("sparse")


def test_focal_loss_is_a_loss_choice_of_the_kinds_that_weigh_classes():
    for kind in KINDS.values():
        assert ("focal" in kind.losses) == kind.weighs_classes
    group = mtk.LabelGroup("g", "multilabel", labels=["a", "b"], loss="focal")
    assert group.focal_gamma == 2.0 and isinstance(group.rules.loss(), WeightedCrossentropy)


def test_cross_fitted_report_chooses_on_the_other_half(tiny_spec):
    rng = np.random.default_rng(3)
    rows = 200
    topic = np.eye(3)[rng.integers(0, 3, rows)].astype(np.float32)
    colour = (rng.random((rows, 4)) < 0.4).astype(np.float32)
    noise = {"topic": softmax(rng.normal(size=(rows, 3))), "colour": rng.random((rows, 4)).astype(np.float32)}
    good = {"topic": softmax(4 * topic + rng.normal(size=(rows, 3))),
            "colour": np.clip(0.7 * colour + 0.3 * rng.random((rows, 4)), 0, 1).astype(np.float32)}
    targets = {"topic": topic, "colour": colour}
    report = mtk.cross_fitted_report(tiny_spec, [noise, good, noise], targets, calibrate=True)
    assert [fold["candidate"] for fold in report["folds"]] == [1, 1]
    assert [fold["rows"] for fold in report["folds"]] == [100, 100]
    assert report["summary"]["topic/accuracy"] > 0.9 and "topic/ece_uncalibrated" in report["summary"]
    # The same rows, seed and candidate: the halves do not depend on the candidates.
    again = mtk.cross_fitted_report(tiny_spec, [good], targets, calibrate=True)
    assert again["summary"] == report["summary"]
    with pytest.raises(TypeError, match=r"`candidates` must be a non-empty list of \{group: probabilities\} dicts"):
        mtk.cross_fitted_report(tiny_spec, good, targets)
    with pytest.raises(ValueError, match=r"`folds` must be an integer >= 2 and <= 200, received 1"):
        mtk.cross_fitted_report(tiny_spec, [good], targets, folds=1)


def test_cross_fitted_report_scores_what_the_chosen_candidate_answers(tiny_spec):
    """``answers``: chosen by one set of probabilities (a memory's heads), scored on another (its blend)."""
    rng = np.random.default_rng(4)
    rows = 200
    topic = np.eye(3)[rng.integers(0, 3, rows)].astype(np.float32)
    colour = (rng.random((rows, 4)) < 0.4).astype(np.float32)
    targets = {"topic": topic, "colour": colour}
    noise = {"topic": softmax(rng.normal(size=(rows, 3))), "colour": rng.random((rows, 4)).astype(np.float32)}
    fair = {"topic": softmax(topic + rng.normal(size=(rows, 3))), "colour": np.clip(0.4 * colour + 0.6 * rng.random(
        (rows, 4)), 0, 1).astype(np.float32)}
    perfect = {"topic": 0.9 * topic + 0.1 / 3, "colour": 0.8 * colour + 0.1}
    asked = []

    def answers(index):
        asked.append(index)
        return perfect

    report = mtk.cross_fitted_report(tiny_spec, [noise, fair], targets, answers=answers)
    assert [fold["candidate"] for fold in report["folds"]] == [1, 1] and asked == [1]  # once, the chosen one only
    plain = mtk.cross_fitted_report(tiny_spec, [noise, fair], targets)
    assert report["summary"]["topic/accuracy"] == 1.0 > plain["summary"]["topic/accuracy"]
    assert report["summary"]["colour/micro_f1"] == 1.0 > plain["summary"]["colour/micro_f1"]
    with pytest.raises(ValueError, match=r"Group 'topic': `answers\(1\)` and `targets` must have one row per text "
                                         r"\(200 rows\), received rows \{'answers\(1\)': 3, 'targets': 200\}"):
        mtk.cross_fitted_report(tiny_spec, [noise, fair], targets,
                                answers=lambda index: {name: values[:3] for name, values in perfect.items()})


def test_layer_wise_learning_rate_decay(tiny_spec):
    from mtkeras.training import lr_multipliers

    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    factors = lr_multipliers(model, tiny_spec, 100.0, 0.5)
    assert factors == {"^topic/": 100.0, "^colour/": 100.0, "^loss_uncertainty/": 100.0, r"/encoder/layer_\._0/": 0.5,
                       r"/encoder/layer_\._1/": 1.0, "/embeddings/": 0.25}
    optimizer = mtk.compile_model(model, tiny_spec, layer_lr_decay=0.5).optimizer
    assert optimizer.lr_multipliers == factors
    assert lr_multipliers(model, tiny_spec, 1.0, 1.0) == {}
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"`layer_lr_decay` must be a number in \(0, 1\], received {bad}"):
            mtk.compile_model(model, tiny_spec, layer_lr_decay=bad)

"""Learned loss weights (``spec.loss_weighting="uncertainty"``): the loss it computes, that it starts as the fixed
weighting, that the factors settle at 1 / each group's loss, that every kind trains with it, and that every
artefact answers as the model does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config
from test_kinds_more import mixed_records

import mtkeras as mtk
from mtkeras._compat import keras
from mtkeras.spec import UNCERTAINTY_LAYER
from mtkeras.training import build_losses, lr_multipliers
from mtkeras.uncertainty import LossScales, TaskUncertainty, UncertaintyWeightedLoss


def uncertain(spec: mtk.TaskSpec) -> mtk.TaskSpec:
    return dataclasses.replace(spec, loss_weighting="uncertainty")


def fixed(spec: mtk.TaskSpec) -> mtk.TaskSpec:
    return dataclasses.replace(spec, loss_weighting="fixed")


def test_the_loss_is_exp_minus_s_times_the_loss_plus_s():
    layer = TaskUncertainty(["a", "b"])
    layer.build((None, 4))
    layer.log_variance.assign([0.5, -1.2])
    inner = keras.losses.BinaryCrossentropy()
    y_true, y_pred = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.8, 0.3], [0.4, 0.6]])
    weights = np.array([1.0, 0.0])
    for group, s in zip(["a", "b"], [0.5, -1.2], strict=True):
        loss = UncertaintyWeightedLoss(inner, group, layer)
        expected = np.exp(-s) * float(inner(y_true, y_pred, sample_weight=weights)) + s
        assert float(loss(y_true, y_pred, sample_weight=weights)) == pytest.approx(expected, rel=1e-6)
    assert layer.scales() == pytest.approx({"a": np.exp(-0.5), "b": np.exp(1.2)})


def test_at_start_the_total_loss_is_the_fixed_weightings(tiny_spec, tiny_tokenizer):
    """s = 0: exp(0) * L + 0 = L, so a fresh model's loss (every output's and the total) is today's."""
    records = synthetic_records(16)
    mtk.keras.utils.set_random_seed(4)
    plain = mtk.build_model(fixed(tiny_spec), bert_config=tiny_config())
    learned = mtk.build_model(uncertain(tiny_spec), bert_config=tiny_config())
    for layer in plain.layers:
        if layer.weights:
            learned.get_layer(layer.name).set_weights(layer.get_weights())
    results = []
    for model, spec in ((plain, fixed(tiny_spec)), (learned, uncertain(tiny_spec))):
        mtk.compile_model(model, spec)
        dataset = mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=16)
        results.append(model.evaluate(dataset, verbose=0, return_dict=True))
    for key in ("loss", "topic_loss", "colour_loss"):
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-5), key


def test_the_factors_settle_at_one_over_each_groups_loss(tiny_spec, tiny_tokenizer):
    """With the rest of the model frozen, minimising exp(-s) L + s over s gives exp(-s) = 1 / L per group."""
    spec = dataclasses.replace(uncertain(tiny_spec), head_dropout=0.0)  # training and predicting see one loss
    records = synthetic_records(32)
    mtk.keras.utils.set_random_seed(5)
    model = mtk.build_model(spec, bert_config=tiny_config())
    for layer in model.layers:
        layer.trainable = layer.name == UNCERTAINTY_LAYER
    mtk.compile_model(model, spec, learning_rate=0.05, head_lr_multiplier=1.0, layer_lr_decay=1.0, weight_decay=0.0)
    dataset = mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=32, padding="longest")  # one batch
    history = model.fit(dataset, epochs=150, verbose=0, callbacks=[LossScales(UNCERTAINTY_LAYER)])
    inner = {group.name: group.rules.loss() for group in spec.groups}
    predictions = model.predict(dataset, verbose=0)
    targets = next(iter(dataset))[1]
    scales = model.get_layer(UNCERTAINTY_LAYER).scales()
    for name, loss in inner.items():
        value = float(loss(targets[name], predictions[name]))
        assert scales[name] == pytest.approx(1.0 / value, rel=0.05), name
        assert history.history[f"loss_scale_{name}"][-1] == pytest.approx(scales[name])
    assert scales["topic"] != pytest.approx(scales["colour"], rel=0.1)  # the two losses differ, so do the factors


@pytest.fixture(scope="module")
def trained_all_kinds(all_kinds_spec, tiny_tokenizer):
    spec = uncertain(all_kinds_spec)
    mtk.keras.utils.set_random_seed(6)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec, learning_rate=1e-3)
    history = model.fit(mtk.make_dataset(spec, tiny_tokenizer, mixed_records(32), batch_size=8), epochs=2, verbose=0)
    return spec, model, history


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "regression", "token_multilabel"])
def test_every_kind_trains_its_factor(trained_all_kinds, kind):
    spec, model, history = trained_all_kinds
    index = [group.rules.name for group in spec.groups].index(kind)
    assert model.get_layer(UNCERTAINTY_LAYER).log_variance.numpy()[index] != 0.0
    assert np.all(np.isfinite(history.history["loss"]))


def test_the_heads_factor_steps_the_log_variances_and_no_weight_decay(tiny_spec):
    spec = uncertain(tiny_spec)
    model = mtk.build_model(spec, bert_config=tiny_config())
    factors = lr_multipliers(model, spec, 100.0, 1.0)
    assert factors[f"^{UNCERTAINTY_LAYER}/"] == 100.0
    assert f"^{UNCERTAINTY_LAYER}/" not in lr_multipliers(model, fixed(tiny_spec), 100.0, 1.0)
    mtk.compile_model(model, spec)
    assert model.optimizer._use_weight_decay(model.get_layer(UNCERTAINTY_LAYER).log_variance) is False


def _trained_uncertain_model(tiny_spec, tiny_tokenizer):
    """A tiny model with learned loss weights, fitted one epoch so its log-variances are no longer 0."""
    spec = uncertain(tiny_spec)
    mtk.keras.utils.set_random_seed(7)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec, learning_rate=1e-3)
    records = synthetic_records(32)
    model.fit(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8), epochs=1, verbose=0)
    learned = model.get_layer(UNCERTAINTY_LAYER).log_variance.numpy()
    assert np.all(learned != 0.0)
    return model, spec, [r["text"] for r in records[:5]] + [""]


def test_the_keras_file_keeps_the_log_variances_and_rebinds_the_losses(tiny_spec, tiny_tokenizer, tmp_path):
    model, spec, texts = _trained_uncertain_model(tiny_spec, tiny_tokenizer)
    learned = model.get_layer(UNCERTAINTY_LAYER).log_variance.numpy()
    python = mtk.Predictor(model, spec, tiny_tokenizer).predict_proba(texts)
    mtk.save_model(model, spec, tmp_path / "saved", tiny_tokenizer)
    loaded, loaded_spec, _ = mtk.load_model(tmp_path / "saved")
    assert loaded_spec == spec
    np.testing.assert_array_equal(loaded.get_layer(UNCERTAINTY_LAYER).log_variance.numpy(), learned)
    mtk.compile_model(loaded, loaded_spec)
    assert all(loss.bound_layer() is loaded.get_layer(UNCERTAINTY_LAYER) for loss in loaded.loss.values())
    reloaded = mtk.Predictor(loaded, loaded_spec, tiny_tokenizer).predict_proba(texts)
    for name in python:
        np.testing.assert_array_equal(reloaded[name], python[name])


# The default run covers the layer in the SavedModel and TFLite through every other export test (the tiny spec's
# loss_weighting is the default, "uncertainty") and test_fresh_process_loads_every_layer; this one, with trained
# log-variances and all four artefacts side by side, is slow (> 40 s).
@pytest.mark.slow
def test_every_artefact_answers_as_the_model(tiny_spec, tiny_tokenizer, tmp_path):
    from test_export import assert_every_artefact_answers_alike

    model, spec, texts = _trained_uncertain_model(tiny_spec, tiny_tokenizer)
    assert_every_artefact_answers_alike(model, spec, tiny_tokenizer, texts, tmp_path)


def test_a_checkpoint_loaded_by_plain_keras_trains_its_own_log_variances(tiny_spec, tiny_tokenizer, tmp_path):
    """Keras' ModelCheckpoint writes a compiled .keras file; plain keras.models.load_model rebuilds the losses from
    their config, and each binds to the loaded model's own layer (not to one built before it)."""
    spec = uncertain(tiny_spec)
    records = synthetic_records(16)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec, learning_rate=1e-3)
    model.save(tmp_path / "compiled.keras")
    other = mtk.build_model(spec, bert_config=tiny_config())  # built after: not the one the loaded losses read
    loaded = keras.models.load_model(tmp_path / "compiled.keras")
    layer = loaded.get_layer(UNCERTAINTY_LAYER)
    assert layer is not other.get_layer(UNCERTAINTY_LAYER)
    assert all(isinstance(loss, UncertaintyWeightedLoss) and loss.bound_layer() is layer
               for loss in loaded.loss.values())
    loaded.fit(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8), epochs=1, verbose=0)
    assert np.all(layer.log_variance.numpy() != 0.0)


def test_an_unbound_loss_refuses_to_compute(tiny_spec):
    spec = uncertain(tiny_spec)
    loss = build_losses(spec, mtk.build_model(spec, bert_config=tiny_config()))["colour"]
    unbound = UncertaintyWeightedLoss(loss.inner, "colour")
    assert unbound.get_config()["group"] == "colour" and unbound.bound_layer() is None
    with pytest.raises(ValueError, match=r"\(group 'colour'\): this loss is not bound to a model's learned "
                                         r"log-variances; compile the model with mtkeras.compile_model"):
        unbound(np.ones((1, 4)), np.full((1, 4), 0.5))
    with pytest.raises(ValueError, match=r"group 'colour' has no log-variance in layer 'other', which holds \['a'\]"):
        unbound.bind(TaskUncertainty(["a"], name="other"))


@pytest.mark.parametrize(("model", "match"), [
    (None, r"loss_weighting='uncertainty'.*'loss_uncertainty', but no model was given"),
    ("fixed", r"loss_weighting='uncertainty'.*but model 'mtkeras' has none; build the model with build_model"),
])
def test_uncertainty_losses_need_the_model_that_holds_them(tiny_spec, model, match):
    if model == "fixed":
        model = mtk.build_model(fixed(tiny_spec), bert_config=tiny_config())
    with pytest.raises(ValueError, match=match):
        build_losses(uncertain(tiny_spec), model)


def test_an_empty_layer_and_a_bad_option_are_refused(tiny_spec):
    with pytest.raises(ValueError, match=r"`group_names` is empty; give one name per output, received \[\]"):
        TaskUncertainty([])
    with pytest.raises(ValueError, match=r"`loss_weighting` must be one of \['fixed', 'uncertainty'\], "
                                         r"received 'learned'"):
        dataclasses.replace(tiny_spec, loss_weighting="learned")


def test_the_spec_round_trips_and_an_older_spec_is_fixed(tiny_spec):
    spec = uncertain(tiny_spec)
    assert mtk.TaskSpec.from_json(spec.to_json()) == spec
    data = tiny_spec.to_dict()
    del data["loss_weighting"]
    assert mtk.TaskSpec.from_dict(data).loss_weighting == "fixed"

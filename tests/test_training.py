import dataclasses

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk


def data(spec, tokenizer, n, seed=0):
    records = synthetic_records(n, seed=seed)
    return mtk.tokenize(tokenizer, [r["text"] for r in records], spec.max_length), mtk.encode_targets(spec, records)[0]


def test_loss_metric_and_weight_dicts_are_keyed_by_output(tiny_model, tiny_spec):
    mtk.compile_model(tiny_model, tiny_spec)
    outputs = set(tiny_model.output_names)
    assert set(mtk.training.build_losses(tiny_spec, tiny_model)) == outputs
    assert set(mtk.training.build_losses(dataclasses.replace(tiny_spec, loss_weighting="fixed"))) == outputs
    assert mtk.training.build_loss_weights(tiny_spec) == {"topic": 0.7, "colour": 4.0}
    assert set(mtk.training.build_metrics(tiny_spec)) == outputs
    # The spec's default loss_weighting ("uncertainty") wraps each kind's loss.
    assert isinstance(tiny_model.loss["topic"].inner, mtk.keras.losses.CategoricalCrossentropy)
    assert isinstance(tiny_model.loss["colour"].inner, mtk.keras.losses.BinaryCrossentropy)
    assert isinstance(tiny_model.optimizer, mtk.RAdam)


def test_weighted_total_loss_is_the_sum_of_weighted_head_losses(tiny_model, tiny_spec, tiny_tokenizer):
    mtk.compile_model(tiny_model, tiny_spec)
    x, y = data(tiny_spec, tiny_tokenizer, 64)
    result = tiny_model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    expected = 0.7 * result["topic_loss"] + 4.0 * result["colour_loss"]
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    # And each head loss is the plain Keras loss of that head alone.
    predictions = tiny_model.predict(x, verbose=0)
    bce = mtk.keras.losses.BinaryCrossentropy()(y["colour"], predictions["colour"]).numpy()
    assert result["colour_loss"] == pytest.approx(float(bce), rel=1e-5)


def test_metrics_per_head(tiny_model, tiny_spec, tiny_tokenizer):
    mtk.compile_model(tiny_model, tiny_spec)
    x, y = data(tiny_spec, tiny_tokenizer, 32)
    result = tiny_model.evaluate(x, y, verbose=0, return_dict=True)
    for name in ("topic", "colour"):
        assert 0.0 <= result[f"{name}_roc_auc"] <= 1.0
        assert 0.0 <= result[f"{name}_accuracy"] <= 1.0


def test_loss_goes_down_on_a_learnable_task(tiny_spec, tiny_tokenizer):
    mtk.keras.utils.set_random_seed(0)
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    mtk.compile_model(model, tiny_spec, learning_rate=3e-3, warmup_steps=10, head_lr_multiplier=10.0)
    x, y = data(tiny_spec, tiny_tokenizer, 256)
    x_val, y_val = data(tiny_spec, tiny_tokenizer, 128, seed=1)
    before = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert history.history["val_loss"][-1] < 0.5 * before["loss"]
    assert history.history["val_topic_accuracy"][-1] > 0.9  # the topic word is in the text
    assert history.history["val_colour_roc_auc"][-1] > 0.9


def test_user_optimizer_and_metrics_are_used(tiny_model, tiny_spec):
    optimizer = mtk.keras.optimizers.SGD(0.01)
    mtk.compile_model(tiny_model, tiny_spec, optimizer=optimizer,
                      metrics={"topic": ["accuracy"], "colour": [mtk.keras.metrics.Precision(name="p")]})
    assert tiny_model.optimizer is optimizer


def test_head_lr_multiplier_reaches_the_optimizer(tiny_model, tiny_spec):
    mtk.compile_model(tiny_model, tiny_spec, head_lr_multiplier=20.0, layer_lr_decay=1.0)
    # The learned loss weights (the spec's default loss_weighting) step at the heads' factor too.
    assert tiny_model.optimizer.lr_multipliers == {"^topic/": 20.0, "^colour/": 20.0, "^loss_uncertainty/": 20.0}
    mtk.compile_model(tiny_model, tiny_spec)  # the default recipe: heads x100, each encoder layer 0.8x the next
    assert dict(tiny_model.optimizer.lr_multipliers) == pytest.approx(
        {"^topic/": 100.0, "^colour/": 100.0, "^loss_uncertainty/": 100.0, r"/encoder/layer_\._1/": 1.0,
         r"/encoder/layer_\._0/": 0.8, "/embeddings/": 0.64})


def test_compile_errors(tiny_model, tiny_spec):
    with pytest.raises(ValueError, match=r"`metrics` has keys \['topics'\] that are not outputs"):
        mtk.compile_model(tiny_model, tiny_spec, metrics={"topics": ["accuracy"]})
    other = mtk.TaskSpec(encoder=tiny_spec.encoder, max_length=32,
                         groups=[mtk.LabelGroup("other", "multilabel", labels=["x"])])
    message = r"The model's outputs \['colour', 'topic'\] do not match the spec's groups \['other'\]"
    with pytest.raises(ValueError, match=message):
        mtk.compile_model(tiny_model, other)
    for argument in ("loss", "loss_weights", "weighted_metrics"):  # once Keras' "got multiple values for keyword"
        with pytest.raises(TypeError, match=rf"compile_model: `{argument}` comes from the spec \(.+\); set it there"):
            mtk.compile_model(tiny_model, tiny_spec, **{argument: {"topic": 1.0}})
    with pytest.raises(TypeError, match=r"build_model: `spec` must be a TaskSpec \(from a mapping: "
                                        r"TaskSpec.from_dict\(...\)\), received \{'encoder': 'x'\} \(dict\)"):
        mtk.build_model({"encoder": "x"})
    with pytest.raises(ValueError, match=r"`max_length` must be an integer >= 3 \(\[CLS\], one token, \[SEP\]\), "
                                         r"received 0"):  # once three tokens came back
        mtk.tokenize(mtk.load_tokenizer(tiny_spec.encoder), ["a"], 0)


def test_fit_with_plain_keras_callbacks(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    mtk.compile_model(tiny_model, tiny_spec, learning_rate=1e-3)
    x, y = data(tiny_spec, tiny_tokenizer, 64)
    callbacks = [
        mtk.keras.callbacks.EarlyStopping(monitor="val_loss", patience=1),
        mtk.keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_topic_roc_auc", mode="max",
                                            save_best_only=True),
    ]
    tiny_model.fit(x, y, validation_split=0.25, epochs=2, batch_size=16, verbose=0, callbacks=callbacks)
    restored = mtk.keras.models.load_model(tmp_path / "best.keras")  # RAdam and the encoder load by registration
    assert isinstance(restored.optimizer, mtk.RAdam)
    assert np.all(np.isfinite(restored.evaluate(x, y, verbose=0)))


@pytest.mark.slow  # measured > 15 s; learned loss weights are the default (test_uncertainty)
def test_suggest_loss_weights_inverts_the_losses_reached_alone(tiny_spec, tiny_tokenizer):
    records = synthetic_records(64)
    suggestion = mtk.suggest_loss_weights(tiny_spec, records, steps=3, batch_size=16, learning_rate=1e-3,
                                          tokenizer=tiny_tokenizer, bert_config=tiny_config())
    weights, losses = suggestion["weights"], suggestion["losses"]
    assert set(weights) == set(losses) == {"topic", "colour"}
    assert sum(weights.values()) / len(weights) == pytest.approx(1.0)
    assert weights["topic"] / weights["colour"] == pytest.approx(losses["colour"] / losses["topic"])
    # 3-way softmax cross-entropy (~ln 3) sits above 4 sigmoid cross-entropies (~ln 2) early on.
    assert losses["topic"] > losses["colour"] and weights["topic"] < weights["colour"]
    reweighted = tiny_spec.with_loss_weights(weights)
    assert reweighted.group("topic").loss_weight == pytest.approx(weights["topic"])
    with pytest.raises(ValueError, match=r"`steps` must be an integer >= 1, received 0"):
        mtk.suggest_loss_weights(tiny_spec, records, steps=0, tokenizer=tiny_tokenizer)
    with pytest.raises(KeyError, match="No label group named 'nope'"):
        tiny_spec.with_loss_weights({"nope": 1.0})
    with pytest.raises(ValueError, match=r"at least 2 training records to hold some apart, received 1; pass `eval"):
        mtk.suggest_loss_weights(tiny_spec, records[:1], steps=1, tokenizer=tiny_tokenizer)


def test_suggest_loss_weights_holds_training_rows_apart_to_measure_on():
    from mtkeras.training import SUGGEST_HELD_APART, _held_apart

    records = [{"text": str(i)} for i in range(6000)]
    kept, held = _held_apart(records, seed=0)
    assert len(held) == SUGGEST_HELD_APART and len(kept) == 5000  # a fifth, capped
    assert {r["text"] for r in kept}.isdisjoint(r["text"] for r in held)
    assert _held_apart(records, seed=0) == (kept, held) and _held_apart(records, seed=1)[1] != held
    assert [len(part) for part in _held_apart(records[:64], seed=0)] == [52, 12]

"""Mixed precision (bfloat16 on CPU; float16 gets loss scaling) and XLA-compiled models, through export."""

import json

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
from mtkeras._compat import tf


def fitted(spec, tokenizer, mixed_precision=None, **compile_kwargs):
    mtk.keras.utils.set_random_seed(5)
    model = mtk.build_model(spec, bert_config=tiny_config(), mixed_precision=mixed_precision)
    mtk.compile_model(model, spec, learning_rate=3e-3, head_lr_multiplier=10, **compile_kwargs)
    records = synthetic_records(96)
    x = mtk.tokenize(tokenizer, [r["text"] for r in records], spec.max_length)
    y, w = mtk.encode_targets(spec, records)
    history = model.fit(x, y, sample_weight=w, epochs=4, batch_size=16, verbose=0)
    return model, x, history.history["loss"]


def test_bfloat16_encoder_float32_heads_trains_saves_and_exports(tiny_spec, tiny_tokenizer, tmp_path):
    model, x, losses = fitted(tiny_spec, tiny_tokenizer, "mixed_bfloat16")
    assert model.get_layer("encoder").compute_dtype == "bfloat16"
    assert model.get_layer("encoder").bert.bert.encoder.layer[0].compute_dtype == "bfloat16"
    assert all(w.dtype == tf.float32 for w in model.weights)  # weights stay float32
    outputs = model(x)
    assert {t.dtype for t in outputs.values()} == {tf.float32}
    assert np.isfinite(losses).all() and losses[-1] < losses[0]

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = mtk.keras.models.load_model(path)
    assert loaded.get_layer("encoder").bert.bert.encoder.layer[0].compute_dtype == "bfloat16"
    for name, value in loaded(x).items():
        np.testing.assert_allclose(value.numpy(), outputs[name].numpy(), atol=1e-6)

    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(export).signatures["predict_ids"](**{k: tf.constant(v) for k, v in x.items()})
    for name in tiny_spec.group_names:
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), outputs[name].numpy(), atol=1e-5)


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_float16_gets_loss_scaling_trains_and_exports(tiny_spec, tiny_tokenizer, tmp_path):
    model, x, losses = fitted(tiny_spec, tiny_tokenizer, "mixed_float16")
    assert isinstance(model.optimizer, mtk.keras.mixed_precision.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, mtk.RAdam)
    assert model.get_layer("encoder").compute_dtype == "float16"
    assert model.get_layer("topic").compute_dtype == "float32"
    assert np.isfinite(losses).all()
    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(export).signatures["predict_ids"](**{k: tf.constant(v) for k, v in x.items()})
    for name, value in model(x).items():
        assert served[f"{name}_probabilities"].dtype == tf.float32
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), value.numpy(), atol=1e-5)


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_xla_compiled_model_trains_and_exports(tiny_spec, tiny_tokenizer, tmp_path):
    model, x, losses = fitted(tiny_spec, tiny_tokenizer, jit_compile=True)
    assert np.isfinite(losses).all()
    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(export).signatures["predict_ids"](**{k: tf.constant(v) for k, v in x.items()})
    for name, value in model(x).items():
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), value.numpy(), atol=1e-5)


def test_bad_mixed_precision(tiny_spec):
    message = r"`mixed_precision` must be one of \[None, 'mixed_float16', 'mixed_bfloat16'\], received 'float16'"
    with pytest.raises(ValueError, match=message):
        mtk.build_model(tiny_spec, bert_config=tiny_config(), mixed_precision="float16")


def test_xla_predictor_pads_to_few_shapes_and_matches_the_plain_one(tiny_model, tiny_spec, tiny_tokenizer):
    texts = [" ".join(["red"] * n) for n in (1, 3, 7, 12, 20, 29)] + ["blue green"]
    plain = mtk.Predictor(tiny_model, tiny_spec, tokenizer=tiny_tokenizer, batch_size=4, jit_compile=False)
    xla = mtk.Predictor(tiny_model, tiny_spec, tokenizer=tiny_tokenizer, batch_size=4)  # XLA is the default
    shapes = []
    forward = xla._forward
    xla._forward = lambda batch: shapes.append(batch["input_ids"].shape) or forward(batch)
    expected, got = plain.predict_proba(texts), xla.predict_proba(texts)
    for name in tiny_spec.group_names:  # padding is masked: same answers as unpadded batches
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
    assert {length % mtk.defaults.XLA_LENGTH_STEP for _, length in shapes} == {0}
    assert {rows for rows, _ in shapes} == {4}  # 7 texts: 4 + 3, the short batch padded to 4 rows
    assert plain.predict(texts) == xla.predict(texts)


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_xla_export_pads_to_multiples_of_16_and_answers_like_the_plain_export(tiny_model, tiny_spec, tiny_tokenizer,
                                                                              tmp_path):
    texts = ["red", "blue green alpha " * 3, "gamma " * 40, ""]
    plain = tf.saved_model.load(mtk.export_saved_model(tiny_model, tmp_path / "p", spec=tiny_spec,
                                                       tokenizer=tiny_tokenizer))
    xla_dir = mtk.export_saved_model(tiny_model, tmp_path / "x", spec=tiny_spec, tokenizer=tiny_tokenizer,
                                     jit_compile=True)
    xla = tf.saved_model.load(xla_dir)
    for batch in (texts, texts[:1], texts[1:3]):
        want = plain.signatures["serving_default"](text=tf.constant(batch))
        got = xla.signatures["serving_default"](text=tf.constant(batch))
        for name, value in want.items():
            if value.dtype == tf.string:
                assert got[name].numpy().tolist() == value.numpy().tolist()
            else:
                np.testing.assert_allclose(got[name].numpy(), value.numpy(), atol=1e-5)
    widths = {xla.signatures["tokenize"](text=tf.constant(b))["input_ids"].shape[1] for b in (texts, texts[:1])}
    assert widths == {16, 32}  # rounded up to 16, capped at max_length (32)
    assert json.loads((tmp_path / "x" / "1" / "assets.extra" / "mtkeras.json").read_text())["jit_compile"] is True

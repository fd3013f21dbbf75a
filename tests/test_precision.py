"""Mixed precision (bfloat16 on CPU; float16 gets loss scaling) and XLA-compiled models, through export."""

import json
import logging

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
from mtkeras import precision as mp
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

    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer,
                                    precision="bfloat16")
    assert json.loads((tmp_path / "served" / "1" / "assets.extra" / "mtkeras.json").read_text())["precision"] == \
        "bfloat16"
    served = tf.saved_model.load(export).signatures["predict_ids"](**{k: tf.constant(v) for k, v in x.items()})
    # bfloat16 rounding apart: in a graph oneDNN fuses each FFN's MatMul, BiasAdd and GELU (rounding once);
    # run eagerly, op by op, they round to bfloat16 after each op
    for name in tiny_spec.group_names:
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), outputs[name].numpy(), atol=2e-3)


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_float16_gets_loss_scaling_trains_and_exports(tiny_spec, tiny_tokenizer, tmp_path):
    model, x, losses = fitted(tiny_spec, tiny_tokenizer, "mixed_float16")
    assert isinstance(model.optimizer, mtk.keras.mixed_precision.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, mtk.RAdam)
    assert model.get_layer("encoder").compute_dtype == "float16"
    assert model.get_layer("topic").compute_dtype == "float32"
    assert np.isfinite(losses).all()
    # exports are float32 unless asked (the bfloat16 test below): float16 here, to compare like with like
    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer,
                                    precision="float16")
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
    message = (r"`mixed_precision` must be one of \[None, 'mixed_float16', 'mixed_bfloat16', 'auto'\], received "
               r"'float16'")
    with pytest.raises(ValueError, match=message):
        mtk.build_model(tiny_spec, bert_config=tiny_config(), mixed_precision="float16")


def test_xla_predictor_pads_to_few_shapes_and_matches_the_plain_one(tiny_model, tiny_spec, tiny_tokenizer):
    texts = [" ".join(["red"] * n) for n in (1, 3, 7, 12, 20, 29)] + ["blue green"]
    plain = mtk.Predictor(tiny_model, tiny_spec, tokenizer=tiny_tokenizer, batch_size=4, jit_compile=False,
                          precision="float32")
    xla = mtk.Predictor(tiny_model, tiny_spec, tokenizer=tiny_tokenizer, batch_size=4, precision="float32")  # XLA
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


# --- inference precision: Predictor(precision=...), export_saved_model(precision=...), "auto" ----------------

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_vnni avx512_bf16\nprocessor\t: 1\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


@pytest.mark.parametrize(("cpuinfo", "has"), [(X86, True), (ARM, True), (X86.replace(" avx512_bf16", ""), False),
                                              ("", False)])
def test_cpu_flags_name_the_bfloat16_units(cpuinfo, has):
    assert bool(mp._cpu_flags(cpuinfo) & mp._BF16_FLAGS) is has


def test_onednn_isa_below_bfloat16_counts_as_no_units(monkeypatch):
    mp.cpu_bfloat16_units.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    try:
        assert mp.cpu_bfloat16_units() is False
    finally:
        mp.cpu_bfloat16_units.cache_clear()


@pytest.mark.parametrize(("units", "gpu", "expected"), [(True, False, "bfloat16"), (False, False, "float32"),
                                                        (True, True, "float32")])
def test_auto_follows_the_rule(monkeypatch, units, gpu, expected):
    monkeypatch.setattr(mp, "cpu_bfloat16_units", lambda: units)
    monkeypatch.setattr(mp, "_has_gpu", lambda: gpu)
    assert mp.resolve_precision("auto") == expected == mp.AUTO_PRECISION["cpu_bfloat16" if units and not gpu
                                                                         else "other"]


@pytest.mark.parametrize(("units", "gpu", "expected"), [(True, False, "mixed_bfloat16"), (False, False, None),
                                                        (True, True, None)])
def test_auto_mixed_precision_follows_the_same_rule(monkeypatch, tiny_spec, units, gpu, expected):
    monkeypatch.setattr(mp, "cpu_bfloat16_units", lambda: units)
    monkeypatch.setattr(mp, "_has_gpu", lambda: gpu)
    assert mp.resolve_mixed_precision("auto") == expected
    assert mp.resolve_mixed_precision("mixed_float16") == "mixed_float16" and mp.resolve_mixed_precision(None) is None
    model = mtk.build_model(tiny_spec, bert_config=tiny_config(), mixed_precision="auto")
    assert mp.model_precision(model) == ("bfloat16" if expected else "float32")
    assert mtk.build_model(tiny_spec, bert_config=tiny_config()).get_layer("encoder").dtype_policy.name == "float32"


@pytest.mark.parametrize("units", [True, False])
def test_a_default_predictor_computes_in_what_auto_picks(monkeypatch, tiny_model, tiny_spec, tiny_tokenizer, units):
    monkeypatch.setattr(mp, "cpu_bfloat16_units", lambda: units)
    predictor = mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer)
    assert predictor.precision == ("bfloat16" if units else "float32")
    assert mp.model_precision(tiny_model) == "float32"  # the model given is left as it was


def test_bfloat16_without_units_warns_once_with_the_slowdown(monkeypatch, caplog):
    monkeypatch.setattr(mp, "cpu_bfloat16_units", lambda: False)
    monkeypatch.setattr(mp, "_has_gpu", lambda: False)
    monkeypatch.setattr(mp, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="mtkeras"):
        assert mp.resolve_precision("bfloat16") == "bfloat16"  # runs, emulated: a warning, not an error
        mp.resolve_precision("bfloat16")
        mp.resolve_precision("float32")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "without bfloat16 dot-product units" in warnings[0]
    assert f"{mtk.defaults.UNITLESS_SLOWDOWN['bfloat16']:.1f}x slower" in warnings[0]


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, s, t, d: mtk.Predictor(m, s, t, precision="bf16"),
     r"`precision` must be one of \['float32', 'bfloat16', 'float16', 'auto'\], received 'bf16'"),
    (lambda m, s, t, d: mtk.Predictor(m, s, t, precision=16),
     r"`precision` must be one of .*received 16\b"),
    (lambda m, s, t, d: mtk.Predictor(m, s, t, jit_compile="yes"), r"`jit_compile` must be true or false, "
                                                                 r"received 'yes'"),
    (lambda m, s, t, d: mtk.export_saved_model(m, d, spec=s, tokenizer=t, precision="int8"),
     r"`precision` must be one of .*received 'int8'"),
    (lambda m, s, t, d: mtk.export_saved_model(m, d, spec=s, tokenizer=t, precision="auto"),
     r"'auto' is refused for an export.*'float32', 'bfloat16' or 'float16'"),
], ids=["predictor-bf16", "predictor-int", "predictor-jit", "export-int8", "export-auto"])
def test_bad_precision_is_named(tiny_model, tiny_spec, tiny_tokenizer, tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model, tiny_spec, tiny_tokenizer, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_model_precision_refuses_a_policy_it_does_not_know(tiny_spec):
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    model.get_layer("encoder")._set_dtype_policy("float64")  # a model put together by hand
    with pytest.raises(ValueError, match=r"policy 'float64', which is none of the precisions"):
        mp.model_precision(model)


def test_a_bfloat16_predictor_agrees_and_leaves_the_model_as_it_was(tiny_model, tiny_spec, tiny_tokenizer):
    texts = ["red alpha", "blue green beta program " * 4, "gamma", ""][:3]
    plain = mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer, precision="float32")
    half = mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer, precision="bfloat16")
    assert (plain.precision, half.precision) == ("float32", "bfloat16")
    assert (plain.jit_compile, half.jit_compile) == (True, False)  # bfloat16: no XLA by default (measured)
    assert half.model is not tiny_model and mp.model_precision(tiny_model) == "float32"
    assert half.model.get_layer("encoder").compute_dtype == "bfloat16"
    want, got = plain.predict_proba(texts), half.predict_proba(texts)
    for name in tiny_spec.group_names:  # the same weights, bfloat16 rounding only
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], atol=0.03)
    # back to float32: the copy gives the original's answers again
    again = mtk.Predictor(half.model, tiny_spec, tiny_tokenizer, precision="float32", jit_compile=False)
    for name, value in again.predict_proba(texts).items():
        np.testing.assert_allclose(value, want[name], atol=1e-5)
    # None: the model as built, no copy
    assert mtk.Predictor(half.model, tiny_spec, tiny_tokenizer, precision=None).model is half.model


@pytest.mark.slow  # measured > 15 s with the test above; a bfloat16 export stays in the default run (the first test)
def test_a_bfloat16_export_answers_as_the_bfloat16_predictor(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    texts = ["red alpha", "blue green beta program " * 4, "gamma"]
    got = mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer, precision="bfloat16").predict_proba(texts)
    export = mtk.export_saved_model(tiny_model, tmp_path / "bf16", spec=tiny_spec, tokenizer=tiny_tokenizer,
                                    precision="bfloat16")
    metadata = json.loads((tmp_path / "bf16" / "1" / "assets.extra" / "mtkeras.json").read_text())
    assert metadata["precision"] == "bfloat16"
    served = tf.saved_model.load(export).signatures["serving_default"](text=tf.constant(texts))
    for name in tiny_spec.group_names:  # the export computes what the bfloat16 Predictor computes
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), got[name], atol=1e-3)
    assert mp.model_precision(tiny_model) == "float32"


@pytest.mark.slow  # measured > 15 s; bfloat16 training and export stay in the default run (the first test)
def test_a_bfloat16_model_exports_float32_by_default_and_to_tflite(tiny_spec, tiny_tokenizer, tmp_path):
    mtk.keras.utils.set_random_seed(3)
    model = mtk.build_model(tiny_spec, bert_config=tiny_config(), mixed_precision="mixed_bfloat16")
    x = mtk.tokenize(tiny_tokenizer, ["red alpha", "blue beta gamma tool"], tiny_spec.max_length)
    float32 = mp.with_precision(model, tiny_spec, "float32")
    want = float32(x)
    export = mtk.export_saved_model(model, tmp_path / "served", spec=tiny_spec, tokenizer=tiny_tokenizer)
    assert json.loads((tmp_path / "served" / "1" / "assets.extra" / "mtkeras.json").read_text())["precision"] \
        == "float32"
    served = tf.saved_model.load(export).signatures["predict_ids"](**{k: tf.constant(v) for k, v in x.items()})
    path = mtk.export_tflite(model, tmp_path / "m.tflite", spec=tiny_spec)
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    lite = runner(**{k: np.asarray(v, np.int32) for k, v in x.items()})
    for name in tiny_spec.group_names:
        np.testing.assert_allclose(served[f"{name}_probabilities"].numpy(), want[name].numpy(), atol=1e-5)
        np.testing.assert_allclose(lite[f"{name}_probabilities"], want[name].numpy(), atol=1e-4)

"""Long texts in windows: the same layout from the Python and the in-graph tokenizer, the same answers
from the model, the Predictor, the SavedModel and TFLite, and exactly today's answers for texts that fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import tiny_config

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.export.text_graph import InGraphTokenizer, tokenizer_settings, write_vocab
from mtkeras.windows import max_pieces, window_rows

LONG = " ".join(["alpha red program", "the blue file", "a green network editor", "data tool"] * 6)
TEXTS = ["", "red", "alpha beta gamma delta red blue green yellow", LONG, LONG[:70], "edit" * 30]


def windowed(spec: mtk.TaskSpec, **changes) -> mtk.TaskSpec:
    return dataclasses.replace(spec, **{"max_length": 12, "max_windows": 3, "stride": 2, **changes})


@pytest.mark.parametrize(("max_windows", "stride"), [(1, 0), (3, 0), (3, 2), (5, 9)])
def test_python_rows_are_hugging_face_windows_end_to_end(tiny_spec, tiny_tokenizer, max_windows, stride):
    spec = windowed(tiny_spec, max_windows=max_windows, stride=stride)
    rows = window_rows(tiny_tokenizer, TEXTS, spec)
    for text, ids in zip(TEXTS, rows["input_ids"], strict=True):
        pieces = tiny_tokenizer(text, add_special_tokens=False)["input_ids"][: max_pieces(12, max_windows, stride)]
        step = 12 - 2 - stride
        expected, start = [], 0
        while True:  # Hugging Face's overflow windows, laid end to end
            expected += [tiny_tokenizer.cls_token_id, *pieces[start : start + 10], tiny_tokenizer.sep_token_id]
            if start + 10 >= len(pieces):
                break
            start += step
        assert ids == expected
        assert len(ids) <= 12 * max_windows
        assert all(len(ids[k : k + 12]) == 12 for k in range(0, len(ids) - 12, 12))  # full windows but the last


@pytest.mark.parametrize(("max_windows", "stride", "multiple"), [(1, 0, 1), (3, 0, 1), (3, 2, 1), (5, 9, 4)])
def test_graph_tokenizer_lays_out_windows_like_python(tiny_spec, tiny_tokenizer, tmp_path, max_windows, stride,
                                                      multiple):
    spec = windowed(tiny_spec, max_windows=max_windows, stride=stride)
    graph = InGraphTokenizer(write_vocab(tiny_tokenizer, str(tmp_path / "vocab.txt")),
                             tokenizer_settings(tiny_tokenizer), 12, length_multiple=multiple,
                             max_windows=max_windows, stride=stride)
    served = {name: value.numpy() for name, value in graph(tf.constant(TEXTS)).items()}
    rows = window_rows(tiny_tokenizer, TEXTS, spec)
    expected = mtk.data.pad_rows(rows, range(len(TEXTS)), tiny_tokenizer.pad_token_id, multiple, window=12)
    for name in mtk.spec.INPUT_NAMES:
        np.testing.assert_array_equal(served[name], expected[name], err_msg=name)


def test_a_text_that_fits_gets_exactly_the_answer_without_windows(tiny_spec, tiny_tokenizer):
    mtk.keras.utils.set_random_seed(3)
    plain_spec = dataclasses.replace(tiny_spec, max_length=12)
    plain = mtk.build_model(plain_spec, bert_config=tiny_config())
    windows = mtk.build_model(windowed(tiny_spec), bert_config=tiny_config())
    windows.set_weights(plain.get_weights())
    short = ["red", "alpha beta gamma", "the blue file"]
    a = mtk.Predictor(plain, plain_spec, tiny_tokenizer, jit_compile=False).predict_proba(short)
    b = mtk.Predictor(windows, windowed(tiny_spec), tiny_tokenizer, jit_compile=False).predict_proba(short)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_windows_pool_every_window_and_ignore_padding(tiny_spec, tiny_tokenizer):
    spec = windowed(tiny_spec)
    mtk.keras.utils.set_random_seed(4)
    model = mtk.build_model(spec, bert_config=tiny_config())
    rows = window_rows(tiny_tokenizer, [LONG, "red"], spec)
    alone = mtk.data.pad_rows(rows, [0], tiny_tokenizer.pad_token_id, window=12)
    assert alone["input_ids"].shape == (1, 36)  # three windows
    out = model(alone)["topic"].numpy()
    # Padding the batch (a short row beside it, or more windows of padding) changes nothing.
    together = mtk.data.pad_rows(rows, [1, 0], tiny_tokenizer.pad_token_id, window=12)
    np.testing.assert_allclose(model(together)["topic"].numpy()[1], out[0], atol=1e-6)
    wider = {name: np.pad(value, [(0, 0), (0, 12)]) for name, value in alone.items()}
    np.testing.assert_allclose(model(wider)["topic"].numpy(), out, atol=1e-6)
    # The pooled vector is the mean over every real token of every window (encoded one window at a time).
    encoder = model.get_layer(mtk.spec.ENCODER_LAYER)
    per_window = {name: value.reshape(3, 12) for name, value in alone.items()}
    hidden = encoder(per_window).numpy().reshape(1, 36, -1)
    mask = alone["attention_mask"][..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    head = model.get_layer("topic")
    np.testing.assert_allclose(head(pooled).numpy(), out, atol=1e-5)


@pytest.mark.slow  # measured > 15 s; test_bag's four-artefact test serves a windowed, calibrated model
def test_fit_predictor_and_saved_model_agree_on_long_texts(tiny_spec, tiny_tokenizer, tmp_path):
    from conftest import synthetic_records
    from test_export import serve_in_fresh_process

    spec = windowed(tiny_spec)
    mtk.keras.utils.set_random_seed(5)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec)
    records = [dict(r, text=r["text"] + " " + LONG[: 40 * (i % 4)]) for i, r in enumerate(synthetic_records(48))]
    history = model.fit(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    texts = [r["text"] for r in records[:8]] + [LONG]
    spec = spec.with_temperatures({"topic": 1.7, "colour": 0.8})  # calibrated too
    python = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32").predict_proba(texts)
    export = mtk.export_saved_model(model, str(tmp_path / "export"), spec=spec, tokenizer=tiny_tokenizer)
    ids = mtk.data.pad_rows(window_rows(tiny_tokenizer, texts, spec), range(len(texts)), tiny_tokenizer.pad_token_id,
                            window=12)
    # Served by a process with only TensorFlow and TF Text, as TF Serving would.
    served = serve_in_fresh_process(export, texts, ids, tmp_path)
    for group in spec.groups:
        for signature in ("text", "ids"):
            np.testing.assert_allclose(np.array(served[signature][f"{group.name}_probabilities"]), python[group.name],
                                       atol=1e-5, err_msg=signature)


@pytest.mark.slow  # measured > 15 s in a full run; test_bag's four-artefact test feeds TFLite windowed rows
def test_tflite_takes_windowed_rows(tiny_spec, tiny_tokenizer, tmp_path):
    spec = windowed(tiny_spec)
    mtk.keras.utils.set_random_seed(6)
    model = mtk.build_model(spec, bert_config=tiny_config())
    path = mtk.export_tflite(model, str(tmp_path / "m.tflite"), spec=spec)
    batch = mtk.data.pad_rows(window_rows(tiny_tokenizer, [LONG, "red"], spec), [0, 1], tiny_tokenizer.pad_token_id,
                              window=12)
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    out = runner(**batch)
    expected = model(batch)
    np.testing.assert_allclose(out["topic_probabilities"], expected["topic"].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_windows": 0}, r"`max_windows` must be an integer >= 1, received 0"),
        ({"max_windows": "4"}, r"`max_windows` must be an integer >= 1, received '4'"),
        ({"stride": 10}, r"`stride` must be an integer >= 0 and <= 9 \(word pieces shared .*received 10"),
        ({"stride": 12}, r"`stride` must be an integer >= 0 and <= 9 .*received 12"),
        ({"stride": -1}, r"`stride` must be an integer >= 0 and <= 9 .*received -1"),
    ],
)
def test_bad_window_options_are_refused(tiny_spec, changes, match):
    with pytest.raises(ValueError, match=match):
        windowed(tiny_spec, **changes)


def test_a_spec_saved_before_windows_loads_without_them(tiny_spec):
    data = tiny_spec.to_dict()
    del data["max_windows"], data["stride"]
    assert mtk.TaskSpec.from_dict(data).max_windows == 1
    assert mtk.TaskSpec.from_dict(windowed(tiny_spec).to_dict()) == windowed(tiny_spec)

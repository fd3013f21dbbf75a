import dataclasses

import numpy as np
import pytest

import mtkeras as mtk


@pytest.fixture()
def predictor(tiny_model, tiny_spec, tiny_tokenizer):
    return mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer, batch_size=2)


TEXTS = ["red alpha", "the blue beta program data tool server", "gamma", "green yellow editor the a an"]


def test_predict_returns_label_names_per_group(predictor, tiny_spec):
    predictions = predictor.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    for row in predictions:
        assert set(row) == {"topic", "colour"}
        assert row["topic"] in tiny_spec.group("topic").labels
        assert isinstance(row["colour"], list) and set(row["colour"]) <= set(tiny_spec.group("colour").labels)


def test_results_are_in_input_order_whatever_the_batching(tiny_model, tiny_spec, tiny_tokenizer):
    # float32: in bfloat16, padding to another length changes the rounding (not the order this test is about)
    def predictor(**options):
        return mtk.Predictor(tiny_model, tiny_spec, tiny_tokenizer, precision="float32", **options)

    one_batch = predictor(batch_size=64).predict_proba(TEXTS)
    chunked = predictor(batch_size=2, chunk_size=3).predict_proba(TEXTS)
    sorted_batches = predictor(batch_size=2).predict_proba(TEXTS)
    x = mtk.tokenize(tiny_tokenizer, TEXTS, tiny_spec.max_length)
    direct = tiny_model.predict(x, verbose=0)
    for name in direct:
        np.testing.assert_allclose(sorted_batches[name], direct[name], atol=1e-6)
        np.testing.assert_allclose(one_batch[name], direct[name], atol=1e-6)
        np.testing.assert_allclose(chunked[name], direct[name], atol=1e-6)


def test_default_tokenizer_comes_from_the_encoder_folder(tiny_model, tiny_spec):
    assert mtk.Predictor(tiny_model, tiny_spec).tokenizer.vocab == mtk.load_tokenizer(tiny_spec.encoder).vocab


def test_decode_argmax_and_thresholds(tiny_model, tiny_spec, tiny_tokenizer):
    spec = tiny_spec.with_thresholds({"colour": [0.5, 0.3, 0.9, 0.5]})
    predictor = mtk.Predictor(tiny_model, spec, tiny_tokenizer)
    probs = {
        "topic": np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]),
        "colour": np.array([[0.5, 0.29, 0.95, 0.1], [0.49, 0.31, 0.89, 0.0]]),
    }
    assert predictor.decode(probs) == [
        {"topic": "beta", "colour": ["red", "green"]},
        {"topic": "alpha", "colour": ["blue"]},
    ]


def test_empty_input(predictor):
    assert predictor.predict([]) == []
    assert predictor.predict_proba([])["colour"].shape == (0, 4)


def test_bad_input(predictor, tiny_model, tiny_spec, tiny_tokenizer):
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received a single str 'red alpha'"):
        predictor.predict("red alpha")
    with pytest.raises(TypeError, match=r"`texts\[1\]` is None \(NoneType\); every text must be a str"):
        predictor.predict(["red", None])
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received a single bytes b'red'"):
        predictor.predict(b"red")
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1, received 0"):
        mtk.Predictor(tiny_model, tiny_spec, batch_size=0)
    with pytest.raises(ValueError, match=r"`chunk_size` must be an integer >= 1, received 0"):
        mtk.Predictor(tiny_model, tiny_spec, chunk_size=0)
    other = mtk.TaskSpec(encoder=tiny_spec.encoder, max_length=32,
                         groups=[mtk.LabelGroup("other", "multilabel", labels=["x"])])
    with pytest.raises(ValueError, match=r"The model's outputs \['colour', 'topic'\] do not match the spec's groups "
                                         r"\['other'\]; build the model with build_model\(spec\), or use the spec"):
        mtk.Predictor(tiny_model, other)
    fewer = dataclasses.replace(tiny_spec, groups=[tiny_spec.group("topic"), mtk.LabelGroup(
        "colour", "multilabel", labels=["red", "blue", "green"])])
    with pytest.raises(ValueError, match=r"Group 'colour' lists 3 labels but the model's output 'colour' has 4; the "
                                         r"spec and the model come from different trainings"):
        mtk.Predictor(tiny_model, fewer)
    with pytest.raises(TypeError, match=r"Predictor: `model` must be a Keras model; for a model or run folder: "
                                        r"Predictor.from_folder\(path\), received 'runs/x' \(str\)"):
        mtk.Predictor("runs/x", tiny_spec, tiny_tokenizer)
    with pytest.raises(TypeError, match=r"Predictor: `spec` must be a TaskSpec \(from a mapping: "
                                        r"TaskSpec.from_dict\(...\)\), received \{'groups': \[\]\} \(dict\)"):
        mtk.Predictor(tiny_model, {"groups": []}, tiny_tokenizer)
    with pytest.raises(TypeError, match=r"Predictor: `tokenizer` must be a Hugging Face tokenizer \(from a folder: "
                                        r"mtk.load_tokenizer\(path\)\), received 'tok/' \(str\)"):
        mtk.Predictor(tiny_model, tiny_spec, "tok/")
    with pytest.raises(TypeError, match=r"evaluate: `predictor` must be a Predictor \(mtk.Predictor\(model, spec, "
                                        r"tokenizer\), or Predictor.from_folder\(path\)\), received <.*> "
                                        r"\(Functional\)"):
        mtk.evaluate(tiny_model, [{"text": "red", "topic": "alpha", "colour": []}])
    with pytest.raises(TypeError, match=r"`records` must be a list of rows \(dicts with the text and the groups' "
                                        r"labels\); read a file with mtk.read_records\(path, spec\), received "
                                        r"'validation.jsonl' \(str\)"):
        mtk.evaluate(predictor, "validation.jsonl")
    topic = dataclasses.replace(tiny_spec, groups=[tiny_spec.group("topic")])  # once a KeyError while predicting
    with pytest.raises(ValueError, match=r"The model's outputs \['colour', 'topic'\] do not match the spec's groups "
                                         r"\['topic'\]"):
        mtk.Predictor(tiny_model, topic)


def test_public_api():
    for name in ("LabelGroup", "TaskSpec", "build_model", "compile_model", "RAdam", "Predictor"):
        assert name in mtk.__all__ and hasattr(mtk, name)


def test_predict_iter_streams_any_iterable_in_input_order(tiny_model, tiny_spec, tiny_tokenizer):
    predictor = mtk.Predictor(tiny_model, tiny_spec, tokenizer=tiny_tokenizer, batch_size=3, chunk_size=5)
    texts = [" ".join(["red", "blue", "alpha"][: 1 + i % 3] * (1 + i % 7)) + f" {i}" for i in range(23)]
    pulled = []

    def lazily():
        for text in texts:
            pulled.append(text)
            yield text

    stream = predictor.predict_iter(lazily())
    first = next(stream)
    assert len(pulled) == 5  # one chunk read, not the whole input
    assert [first, *stream] == predictor.predict(texts)
    with pytest.raises(TypeError, match=r"`texts\[7\]` is 7 \(int\); every text must be a str"):
        list(predictor.predict_iter(iter(texts[:7] + [7])))
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received a single str"):
        list(predictor.predict_iter("one text"))

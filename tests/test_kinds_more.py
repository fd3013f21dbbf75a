"""Regression and token_multilabel groups: spec, data, loss, model, predictor, evaluation, save/load, exports."""

import json
import os
import sys
import unicodedata

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.data import make_dataset
from mtkeras.export import InGraphTokenizer, unsupported_ops
from mtkeras.export.text_graph import tokenizer_settings, write_vocab
from mtkeras.heads import IGNORED_TOKEN
from mtkeras.words import SEPARATORS, label_runs, word_starts

COLOURS, TOPICS = ["red", "blue", "green", "yellow"], ["alpha", "beta", "gamma"]


def mixed_records(n, seed=0):
    """All four kinds on the synthetic texts: topic, colours, their count, and each word's role."""
    records = []
    for record in synthetic_records(n, seed):
        words = record["text"].split()
        record["count"] = float(len(record["colour"]))
        record["marks"] = [["colour"] if w in COLOURS else ["topic"] if w in TOPICS else [] for w in words]
        records.append(record)
    return records


@pytest.fixture(scope="module")
def mixed_spec(tiny_folder):
    spec = mtk.TaskSpec(
        encoder=tiny_folder,
        max_length=32,
        groups=[
            mtk.LabelGroup("topic", "multiclass", labels=TOPICS),
            mtk.LabelGroup("colour", "multilabel", labels=COLOURS, loss_weight=2.0),
            mtk.LabelGroup("count", "regression", labels=["count"], normalize=True),
            mtk.LabelGroup("marks", "token_multilabel", labels=["colour", "topic"], loss_weight=2.0),
        ],
    )
    return mtk.fit_target_stats(spec, mixed_records(128))


@pytest.fixture(scope="module")
def new_spec(mixed_spec):
    """Only the two new groups: count (regression) and marks (token_multilabel)."""
    from dataclasses import replace

    return replace(mixed_spec, groups=mixed_spec.groups[2:])


@pytest.fixture(scope="module")
def count_spec(mixed_spec):
    from dataclasses import replace

    return replace(mixed_spec, groups=(mixed_spec.group("count"),))


@pytest.fixture(scope="module")
def marks_spec(mixed_spec):
    from dataclasses import replace

    return replace(mixed_spec, groups=(mixed_spec.group("marks"),))


@pytest.fixture(scope="module")
def mixed_trained(mixed_spec, tiny_tokenizer):
    mtk.keras.utils.set_random_seed(5)
    model = mtk.build_model(mixed_spec, bert_config=tiny_config())
    mtk.compile_model(model, mixed_spec, learning_rate=3e-3, head_lr_multiplier=10)
    train = make_dataset(mixed_spec, tiny_tokenizer, mixed_records(192), batch_size=16, shuffle=True, seed=0)
    history = model.fit(train, epochs=6, verbose=0)
    return model, mixed_spec, history.history


# --- spec ------------------------------------------------------------------------------------


def test_regression_and_token_group_options():
    group = mtk.LabelGroup("price", "regression", labels=["low", "high"], loss="huber", normalize=True,
                           target_stats=[[1, 2], [3.5, 0.5]])
    assert group.loss == "huber" and group.target_stats == ((1.0, 2.0), (3.5, 0.5)) and group.thresholds is None
    assert mtk.LabelGroup.from_dict(group.to_dict()) == group
    assert mtk.LabelGroup("tags", "token_multilabel", labels=["a"]).thresholds == (0.5,)
    assert mtk.LabelGroup("c", "multiclass", labels=["a", "b"]).loss == "categorical_crossentropy"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(kind="regression", loss="mae"), ValueError,
         r"a regression group takes `loss` in \['mse', 'huber'\], received 'mae'"),
        (dict(kind="multilabel", loss="mse"), ValueError,
         r"a multilabel group takes `loss` in \['binary_crossentropy', 'focal'\], received 'mse'"),
        (dict(kind="multilabel", normalize=True), ValueError,
         r"`normalize` applies to kinds \['regression'\], not to a multilabel group"),
        (dict(kind="regression", normalize="yes"), TypeError, r"`normalize` must be true or false, received 'yes'"),
        (dict(kind="regression", target_stats=[[0, 1]]), ValueError,
         r"`target_stats` must hold one \[mean, std\] pair per target \(2\), received \[\[0, 1\]\]"),
        (dict(kind="regression", target_stats=[[0, 1], [0, 0]]), ValueError,
         r"`target_stats` for 'b' must be a finite mean and a finite std > 0, received \[0, 0\]"),
        (dict(kind="regression", target_stats=[[0, 1], [float("nan"), 1]]), ValueError,
         r"`target_stats` for 'b' must be a finite mean and a finite std > 0, received \[nan, 1\]"),
        (dict(kind="token_multilabel", target_stats=[[0, 1], [0, 1]]), ValueError,
         r"a token_multilabel group takes no `target_stats`"),
        (dict(kind="regression", thresholds=[0.5, 0.5]), ValueError,
         r"a regression group is decoded by argmax and takes no `thresholds`|takes no `thresholds`"),
    ],
)
def test_bad_group_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        mtk.LabelGroup("g", labels=["a", "b"], **kwargs)


def test_normalized_group_needs_stats_before_build(mixed_spec):
    from dataclasses import replace

    unfitted = replace(mixed_spec, groups=tuple(replace(g, target_stats=None) for g in mixed_spec.groups))
    with pytest.raises(ValueError, match=r"Groups \['count'\] have normalize=True but no `target_stats`"):
        mtk.build_model(unfitted, bert_config=tiny_config())


def test_fit_target_stats(mixed_spec):
    records = [{"text": "a", "count": 1.0}, {"text": "b", "count": 3.0}, {"text": "c", "count": None}]
    spec = mtk.TaskSpec(encoder="x", groups=[mtk.LabelGroup("count", "regression", labels=["n"], normalize=True)])
    assert mtk.fit_target_stats(spec, records).group("count").target_stats == ((2.0, 1.0),)
    constant = mtk.fit_target_stats(spec, [{"text": "a", "count": 4}, {"text": "b", "count": 4}])
    assert constant.group("count").target_stats == ((4.0, 1.0),)  # std 0 would divide by zero: 1
    with pytest.raises(ValueError, match=r"No row is annotated for regression group 'count'"):
        mtk.fit_target_stats(spec, [{"text": "a", "count": None}])


# --- words ---------------------------------------------------------------------------------------


def test_separators_are_tab_newline_cr_and_unicode_category_z():
    z = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("Z")}
    assert set(SEPARATORS) == z | {"\t", "\n", "\r"}
    assert mtk.words.split_words(" GNU\u00a0image\u2028editor,  v2\t") == [(1, 4), (5, 10), (11, 18), (20, 22)]


def test_word_starts_for_words_split_into_pieces(tiny_tokenizer):
    text = "editors  read files, x\x00 \x00 zzzz"
    encoded = tiny_tokenizer([text], return_offsets_mapping=True)
    tokens = tiny_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert tokens[:6] == ["[CLS]", "editor", "##s", "read", "file", "##s"]
    starts = word_starts(encoded["offset_mapping"][0], mtk.words.split_words(text))
    # editors -> editor ##s (start 1); read (3); files, -> file ##s , (4); x\x00 -> x; \x00 alone has no token
    assert starts.tolist() == [1, 3, 4, 7, -1, 8]
    truncated = tiny_tokenizer([text], return_offsets_mapping=True, truncation=True, max_length=5)
    assert word_starts(truncated["offset_mapping"][0], mtk.words.split_words(text)).tolist() == [1, 3, -1, -1, -1, -1]


def test_label_runs():
    indicator = np.array([[1, 0], [1, 1], [0, 1], [1, 0]])
    assert label_runs(indicator) == {(0, 0, 1), (0, 3, 3), (1, 1, 2)}


# --- encoding and its errors ---------------------------------------------------------------------


def test_encode_regression_and_token_targets(new_spec):
    records = [
        {"text": "red alpha  tool", "count": 1, "marks": [["colour"], ["topic"], []]},
        {"text": "blue beta", "count": 2.5, "marks": [[0, 4, "colour"], {"start": 5, "end": 9, "label": "topic"}]},
        {"text": "red green", "count": None, "marks": None},
        {"text": "x y", "count": 0, "marks": []},
    ]
    y, w = mtk.encode_targets(new_spec, records)
    assert y["count"][:, 0].tolist() == [1.0, 2.5, 0.0, 0.0] and w["count"].tolist() == [1, 1, 0, 1]
    assert y["marks"][0].tolist() == [[1, 0], [0, 1], [0, 0]]
    assert y["marks"][1].tolist() == [[1, 0], [0, 1]]
    assert y["marks"][2].shape == (2, 2) and w["marks"].tolist() == [1, 1, 0, 1]
    assert y["marks"][3].tolist() == [[0, 0], [0, 0]]  # [] : no spans, every word negative
    spans = mtk.TaskSpec(encoder="x", groups=[mtk.LabelGroup("m", "token_multilabel", labels=["p", "q"])])
    # a span labels every word it touches; spans of different labels may overlap
    got, _ = mtk.encode_targets(spans, [{"text": "one two three", "m": [[2, 7, "p"], [0, 13, "q"]]}])
    assert got["m"][0].tolist() == [[1, 1], [1, 1], [0, 1]]


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (float("inf"), ValueError, r"Row 0, column 'count' \(regression group 'count'\): target 'count' must be a "
                                   r"finite number, received inf \(float\)"),
        (float("nan"), ValueError, r"target 'count' must be a finite number, received nan"),
        ("3", ValueError, r"target 'count' must be a finite number, received '3' \(str\)"),
        (True, ValueError, r"received True \(bool\)"),
        ([1, 2], ValueError, r"received 2 values \[1, 2\] for the 1 targets \['count'\]"),
        ({"n": 1}, ValueError, r"received targets \['n'\]; expected exactly \['count'\] \(missing \['count'\]\) "
                               r"\(unknown \['n'\]\)"),
    ],
)
def test_bad_regression_targets(count_spec, value, error, match):
    with pytest.raises(error, match=match):
        mtk.encode_targets(count_spec, [{"text": "red", "count": value}])


def test_several_regression_targets():
    spec = mtk.TaskSpec(encoder="x", groups=[mtk.LabelGroup("p", "regression", labels=["lo", "hi"])])
    y, _ = mtk.encode_targets(spec, [{"text": "a", "p": {"hi": 2, "lo": 1}}, {"text": "b", "p": [3, 4]}])
    assert y["p"].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(TypeError, match=r"a group with 2 targets needs a list or a \{target: number\} dict, "
                                        r"received 5"):
        mtk.encode_targets(spec, [{"text": "a", "p": 5}])


@pytest.mark.parametrize(
    ("text", "value", "error", "match"),
    [
        ("red alpha tool", [["colour"], []], ValueError,
         r"Row 0, column 'marks' \(token_multilabel group 'marks'\): 2 word-label lists for the 3 words of the text"),
        ("red alpha", "colour", TypeError, r"expected a list with one label list per word, or a list of spans"),
        ("red alpha", [["colour"], "topic"], TypeError, r"word 1 \('alpha'\) has 'topic'; each word takes a list"),
        ("red alpha", [["colour"], ["size"]], ValueError, r"unknown label 'size'"),
        ("red alpha", [[0, 12, "colour"]], ValueError,
         r"span 0 \[0, 12, 'colour'\] is outside the text; spans need integer character offsets "
         r"0 <= start < end <= 9"),
        ("red alpha", [[3, 3, "colour"]], ValueError, r"span 0 \[3, 3, 'colour'\] is outside the text"),
        ("red alpha", [[0, 3, "colour"], [2, 9, "colour"]], ValueError,
         r"span 1 \[2, 9, 'colour'\] overlaps span \[0, 3, 'colour'\]; spans of one label may not overlap"),
        ("red  alpha", [[3, 5, "topic"]], ValueError, r"span 0 \[3, 5, 'topic'\] covers only whitespace \('  '\)"),
        ("red alpha", [{"start": 0, "end": 3}], ValueError, r"span 0 has keys \['end', 'start'\]"),
        ("red alpha", [[0, 3, "colour"], "x"], TypeError, r"span 1 is 'x'; a span is \[start, end, label\]"),
    ],
)
def test_bad_token_labels(marks_spec, text, value, error, match):
    with pytest.raises(error, match=match):
        mtk.encode_targets(marks_spec, [{"text": text, "marks": value}])


def test_csv_cells_of_the_new_kinds(new_spec, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,count,marks\nred alpha,2,"[[""colour""], [""topic""]]"\nblue,,\nbeta,x,[]\n')
    records = mtk.data.read_csv(path, new_spec)
    assert records[0]["count"] == 2.0 and records[0]["marks"] == [["colour"], ["topic"]]
    assert records[1]["count"] is None and records[1]["marks"] is None
    with pytest.raises(ValueError, match=r"target 'count' must be a finite number, received 'x' \(str\)"):
        mtk.encode_targets(new_spec, records)
    path.write_text("text,marks\nred,[oops\n")
    with pytest.raises(ValueError, match=r"line 2, column 'marks': '\[oops' is not a JSON list of word-label lists"):
        mtk.data.read_csv(path, new_spec)


def test_token_groups_need_a_fast_tokenizer(mixed_spec, tiny_folder):
    from transformers import BertTokenizer

    slow = BertTokenizer.from_pretrained(tiny_folder)
    with pytest.raises(TypeError, match=r"Token-level groups \['marks'\] need a fast tokenizer with character "
                                        r"offsets; received BertTokenizer \(is_fast=False\)"):
        make_dataset(mixed_spec, slow, mixed_records(4))
    with pytest.raises(TypeError, match=r"need a fast tokenizer"):
        mtk.Predictor(mtk.build_model(mixed_spec, bert_config=tiny_config()), mixed_spec, slow)


# --- losses ----------------------------------------------------------------------------------------


def test_masked_token_loss_counts_only_word_starts():
    ignored = IGNORED_TOKEN
    y_true = np.array([
        [[ignored, ignored], [1, 0], [ignored, ignored], [0, 1], [ignored, ignored]],  # CLS w ##piece w SEP
        [[ignored, ignored], [0, 0], [ignored, ignored], [ignored, ignored], [ignored, ignored]],  # + padding
    ], np.float32)
    y_pred = np.full((2, 5, 2), 0.5, np.float32)
    y_pred[0, 1] = [0.9, 0.2]
    y_pred[0, 3] = [0.3, 0.6]
    y_pred[1, 1] = [0.1, 0.4]
    loss = mtk.heads.MaskedBinaryCrossentropy()

    def bce(t, p):
        return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))

    expected = (bce(np.array([1, 0]), y_pred[0, 1]) + bce(np.array([0, 1]), y_pred[0, 3])
                + bce(np.array([0, 0]), y_pred[1, 1])) / 3
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    changed = y_pred.copy()
    changed[:, 0], changed[:, 2], changed[:, 4], changed[1, 3] = 0.01, 0.99, 0.7, 0.2  # ignored tokens only
    assert float(loss(y_true, changed)) == pytest.approx(expected, rel=1e-5)
    # a row's sample weight scales its tokens; the mean is over weighted tokens
    weighted = (bce(np.array([1, 0]), y_pred[0, 1]) + bce(np.array([0, 1]), y_pred[0, 3])) / 2
    assert float(loss(y_true, y_pred, sample_weight=np.array([1.0, 0.0]))) == pytest.approx(weighted, rel=1e-5)
    assert float(loss(y_true, y_pred, sample_weight=np.zeros(2))) == 0.0


def test_scaled_regression_losses():
    y_true, y_pred = np.array([[1.0, 10.0], [3.0, 30.0]]), np.array([[2.0, 14.0], [3.0, 20.0]])
    mse = mtk.heads.ScaledRegressionLoss("mse", scale=[1.0, 10.0])
    expected = np.mean([np.mean([1.0, 0.16]), np.mean([0.0, 1.0])])
    assert float(mse(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)
    huber = mtk.heads.ScaledRegressionLoss("huber", scale=[1.0, 10.0])
    # |e| = 1, 0.4, 0, 1 -> 0.5, 0.08, 0, 0.5 (all within delta 1)
    assert float(huber(y_true, y_pred)) == pytest.approx(np.mean([0.29, 0.25]), rel=1e-6)
    big = mtk.heads.ScaledRegressionLoss("huber", scale=[1.0])(np.array([[0.0]]), np.array([[3.0]]))
    assert float(big) == pytest.approx(2.5)  # linear beyond delta: 0.5 + (3 - 1)
    assert mtk.heads.ScaledRegressionLoss.from_config(huber.get_config()).get_config() == huber.get_config()
    with pytest.raises(ValueError, match=r"`loss` must be one of \['mse', 'huber'\], received 'l1'"):
        mtk.heads.ScaledRegressionLoss("l1")


# --- model, training, prediction -------------------------------------------------------------------


def test_dataset_aligns_word_targets_to_first_pieces(mixed_spec, tiny_tokenizer):
    records = [{"text": "editors read red", "topic": "alpha", "colour": ["red"], "count": 1.0,
                "marks": [[], [], ["colour"]]}]
    x, y, w = next(iter(make_dataset(mixed_spec, tiny_tokenizer, records, padding="longest")))
    ids = x["input_ids"][0].numpy().tolist()
    assert tiny_tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "editor", "##s", "read", "red", "[SEP]"]
    i = IGNORED_TOKEN
    assert y["marks"][0].numpy().tolist() == [[i, i], [0, 0], [i, i], [0, 0], [1, 0], [i, i]]
    assert y["count"].numpy().tolist() == [[1.0]] and w["marks"].numpy().tolist() == [1.0]


def test_shapes_and_normalized_regression_head(mixed_spec, tiny_tokenizer):
    model = mtk.build_model(mixed_spec, bert_config=tiny_config())
    x = mtk.tokenize(tiny_tokenizer, ["red alpha", "blue green beta program"], mixed_spec.max_length)
    out = model(x)
    length = x["input_ids"].shape[1]
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "topic": (2, 3), "colour": (2, 4), "count": (2, 1), "marks": (2, length, 2)}
    head = model.get_layer("count")
    head.kernel.assign(tf.zeros_like(head.kernel))
    head.bias.assign(tf.zeros_like(head.bias))
    mean = mixed_spec.group("count").target_stats[0][0]
    np.testing.assert_allclose(model(x)["count"].numpy(), mean, rtol=1e-6)  # standardised 0 -> the mean


def test_mixed_kinds_train_and_decode(mixed_trained, tiny_tokenizer):
    model, spec, history = mixed_trained
    assert history["loss"][-1] < history["loss"][0] * 0.7
    assert {"marks_roc_auc", "count_mae", "count_rmse", "topic_roc_auc"} <= set(history)
    records = mixed_records(48, seed=9)
    predictor = mtk.Predictor(model, spec, tiny_tokenizer, batch_size=7)
    texts = [r["text"] for r in records]
    answers = predictor.predict(texts + ["editors  red\u00a0alpha"])
    last = answers[-1]
    assert isinstance(last["count"], float) and isinstance(last["topic"], str)
    assert [(w["word"], w["start"], w["end"]) for w in last["marks"]] == [
        ("editors", 0, 7), ("red", 9, 12), ("alpha", 13, 18)]
    report = predictor.evaluate(records)
    marks, count = report["groups"]["marks"], report["groups"]["count"]
    assert marks["span_f1"] > 0.8 and marks["token_micro_f1"] > 0.8  # the role of a word is its own text
    assert count["mae"] < 0.6 and set(count["per_target"]) == {"count"}
    assert set(report["overall"]) == {"rows", "micro_f1", "macro_f1"}  # text-level label groups only
    probs = predictor.predict_proba(texts)
    y, w = mtk.encode_targets(spec, records)
    tuned = mtk.tune_thresholds(spec, probs, y, w, min_positives=1)
    assert len(tuned.group("marks").thresholds) == 2 and tuned.group("count") == spec.group("count")


def test_token_predictions_do_not_depend_on_batch_padding(mixed_trained, tiny_tokenizer):
    model, spec, _ = mixed_trained
    predictor = mtk.Predictor(model, spec, tiny_tokenizer, batch_size=8)
    short = "red alpha"
    alone = predictor.predict_proba([short])
    padded = predictor.predict_proba([short, "gamma " * 25])
    np.testing.assert_allclose(padded["marks"][0], alone["marks"][0], atol=1e-5)
    np.testing.assert_allclose(padded["count"][0], alone["count"][0], atol=1e-5)
    long_text = " ".join(["blue"] * 40)  # 40 words, 30 fit in max_length 32
    cut = predictor.predict_proba([long_text])["marks"][0]
    assert cut.shape == (40, 2) and np.all(cut[30:] == 0) and np.all(cut[:30].max(axis=1) > 0)


def test_evaluation_numbers_of_the_new_kinds(mixed_spec):
    from mtkeras.evaluation import evaluation_report

    probs = {
        "topic": np.eye(3)[[0, 1]], "colour": np.array([[0.9, 0, 0, 0], [0, 0.9, 0, 0]]),
        "count": np.array([[1.0], [4.0]]),
        "marks": np.array([np.array([[0.9, 0.1], [0.8, 0.1], [0.1, 0.9]]), np.array([[0.1, 0.1]])], dtype=object),
    }
    targets = {
        "topic": np.eye(3)[[0, 1]], "colour": np.array([[1.0, 0, 0, 0], [0, 1, 0, 0]]),
        "count": np.array([[2.0], [4.0]]),
        "marks": np.array([np.array([[1, 0], [0, 0], [0, 1]]), np.array([[1, 0]])], dtype=object),
    }
    report = evaluation_report(mixed_spec, probs, targets)
    count = report["groups"]["count"]
    assert count["mae"] == pytest.approx(0.5) and count["rmse"] == pytest.approx(np.sqrt(0.5))
    assert count["r2"] == pytest.approx(1 - 1.0 / 2.0)
    marks = report["groups"]["marks"]
    # true spans: colour[0-0], topic[2-2], colour[0-0] of row 2; predicted: colour[0-1], topic[2-2]
    assert marks["spans_true"] == 3 and marks["spans_predicted"] == 2
    assert marks["span_precision"] == pytest.approx(0.5) and marks["span_recall"] == pytest.approx(1 / 3)
    assert marks["words"] == 4
    assert report["overall"]["micro_f1"] == 1.0


# --- save / load and exports --------------------------------------------------------------------------


def test_save_load_round_trip(mixed_trained, tiny_tokenizer, tmp_path):
    model, spec, _ = mixed_trained
    mtk.save_model(model, spec, tmp_path / "m", tiny_tokenizer)
    loaded, loaded_spec, _ = mtk.load_model(tmp_path / "m")
    assert loaded_spec == spec
    x = mtk.tokenize(tiny_tokenizer, ["red alpha editors", "beta"], spec.max_length)
    for name, value in model(x).items():
        np.testing.assert_allclose(loaded(x)[name].numpy(), value.numpy(), atol=1e-6)


def test_in_graph_word_tokenizer_equals_the_text_tokenizer(tiny_tokenizer, tmp_path):
    from test_export import EDGE_CASES, real_texts

    graph = InGraphTokenizer(write_vocab(tiny_tokenizer, str(tmp_path / "vocab.txt")),
                             tokenizer_settings(tiny_tokenizer), 32)
    texts = real_texts()[:100] + EDGE_CASES + ["  editors  read\u3000files,\u2028x\x00 \x00 é "]
    whole = graph(tf.constant(texts))
    ids, words = graph.tokenize_words(tf.constant(texts))
    for name in mtk.spec.INPUT_NAMES:
        np.testing.assert_array_equal(ids[name].numpy(), whole[name].numpy())
    encoded = tiny_tokenizer(texts, truncation=True, max_length=32, return_offsets_mapping=True)
    cut = 0
    for i, text in enumerate(texts):
        expected = word_starts(encoded["offset_mapping"][i], mtk.words.split_words(text))
        # Served: the words up to the last one with a piece within max_length (later words have no answer).
        shown = int(np.flatnonzero(expected >= 0)[-1]) + 1 if (expected >= 0).any() else 0
        cut += shown < len(expected)
        spans = mtk.words.split_words(text)[:shown]
        offsets = words["offsets"][i].numpy()
        assert offsets[: len(spans)].tolist() == [list(span) for span in spans], text[:40]
        assert np.all(offsets[len(spans):] == -1)
        texts_out = [w.decode("utf-8") for w in words["texts"][i].numpy()[: len(spans)]]
        assert texts_out == [text[a:b] for a, b in spans]
        assert words["starts"][i].numpy()[: len(spans)].tolist() == expected[:shown].tolist(), text[:40]
    assert cut >= 50  # most real texts run past 32 tokens: the cut was exercised


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_saved_model_and_tflite_match_keras(mixed_trained, tiny_tokenizer, tmp_path):
    from test_export import tflite_probs

    model, spec, _ = mixed_trained
    spec = spec.with_thresholds({"marks": [0.4, 0.6]})
    texts = [r["text"] for r in mixed_records(20, seed=4)] + ["editors  red\u00a0alpha é", "", "blue " * 40]
    path = mtk.export_saved_model(model, tmp_path / "export", spec=spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    assert set(served) == {"topic_probabilities", "topic_labels", "colour_probabilities", "colour_labels",
                           "count_values", "marks_probabilities", "marks_labels", "marks_words", "marks_offsets"}
    predictor = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32")  # as the float32 exports
    probs, answers = predictor.predict_proba(texts), predictor.predict(texts)
    np.testing.assert_allclose(served["count_values"].numpy(), probs["count"], atol=1e-4)
    np.testing.assert_allclose(served["topic_probabilities"].numpy(), probs["topic"], atol=1e-5)
    for i, answer in enumerate(answers):
        # Served word lists stop at the last word within max_length; the Predictor lists every word.
        n = int((served["marks_offsets"][i, :, 0].numpy() >= 0).sum())
        assert n == len(answer["marks"]) or (n < len(answer["marks"]) and texts[i] == "blue " * 40 and n == 30)
        assert all(not w["labels"] for w in answer["marks"][n:])
        np.testing.assert_allclose(served["marks_probabilities"][i, :n].numpy(), probs["marks"][i][:n], atol=1e-5)
        assert np.all(served["marks_probabilities"][i, n:].numpy() == 0)
        words = served["marks_words"][i].numpy()
        offsets = served["marks_offsets"][i].numpy()
        labels = served["marks_labels"][i].numpy()
        got = [{"word": words[w].decode(), "start": int(offsets[w, 0]), "end": int(offsets[w, 1]),
                "labels": [label.decode() for label in labels[w] if label]} for w in range(n)]
        assert got == answer["marks"][:n]
    # the REST client turns the same outputs into the Predictor's answers
    from mtkeras.serving import parse_rest_response

    columns = {k: v.numpy().tolist() for k, v in served.items()}  # strings stay bytes; the parser decodes them
    parsed = parse_rest_response({"outputs": columns}, path)  # decoded as the export's metadata says
    assert [p["marks"] for p in parsed] == [a["marks"][: len(p["marks"])] for p, a in zip(parsed, answers, strict=True)]
    assert [p["count"] for p in parsed] == pytest.approx([a["count"] for a in answers], abs=1e-4)
    metadata = json.loads(open(os.path.join(path, "assets.extra", "mtkeras.json")).read())
    assert set(metadata["groups"]["marks"]["serving_default_outputs"]) == {
        "marks_probabilities", "marks_labels", "marks_words", "marks_offsets"}
    assert metadata["groups"]["count"]["predict_ids_output"] == {
        "count_values": "float32 [batch, n_labels]: the predicted values, in the targets' units"}

    assert unsupported_ops(path) == []  # word offsets use TF core ops and TF Text 2.12's only

    tflite = mtk.export_tflite(model, tmp_path / "m.tflite", spec=spec)
    batch = mtk.tokenize(tiny_tokenizer, texts, spec.max_length)
    lite = tflite_probs(tflite, [batch])
    keras_out = model(batch, training=False)
    assert set(lite) == {"topic_probabilities", "colour_probabilities", "count_values", "marks_token_probabilities"}
    np.testing.assert_allclose(lite["count_values"], keras_out["count"].numpy(), atol=1e-4)
    np.testing.assert_allclose(lite["marks_token_probabilities"], keras_out["marks"].numpy(), atol=1e-4)


@pytest.mark.slow  # measured > 15 s; the token-level SavedModel stays in test_kinds' default parameter
def test_token_export_runs_without_mtkeras(mixed_trained, tiny_tokenizer, tmp_path):
    from test_export import serve_in_fresh_process

    model, spec, _ = mixed_trained
    path = mtk.export_saved_model(model, tmp_path / "export", spec=spec, tokenizer=tiny_tokenizer)
    texts = ["red alpha editors", "b\u00e9ta  blue\u3000x", ""]
    result = serve_in_fresh_process(path, texts, mtk.tokenize(tiny_tokenizer, texts, spec.max_length), tmp_path)
    assert result["text"]["marks_offsets"][1] == [[0, 4], [6, 10], [11, 12]]
    assert result["empty"]["marks_offsets"] == [0, 0, 2] and result["empty"]["count_values"] == [0, 1]
    predictor = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32")  # as the float32 exports
    np.testing.assert_allclose(result["ids"]["count_values"], predictor.predict_proba(texts)["count"], atol=1e-4)


# --- config and CLI --------------------------------------------------------------------------------------


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_config_and_cli_with_the_new_kinds(tiny_folder, tmp_path, capsys, monkeypatch):
    import yaml

    from mtkeras.cli import main as cli_main

    for name, n, seed in (("train", 160, 0), ("validation", 40, 1)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mixed_records(n, seed)))
    config = {
        "spec": {"encoder": tiny_folder, "max_length": 32, "groups": [
            {"name": "topic", "kind": "multiclass"},
            {"name": "count", "kind": "regression", "normalize": True, "loss": "huber"},  # labels: ["count"]
            {"name": "marks", "kind": "token_multilabel", "loss_weight": 2.0},  # labels from the data
        ]},
        "data": {"train": "train.jsonl", "validation": "validation.jsonl"},
        "training": {"epochs": 4, "batch_size": 16, "learning_rate": 5e-3, "head_lr_multiplier": 20},
        "output": "run",
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["train", str(tmp_path / "config.yaml"), "--verbose", "0"]) == 0
    spec = mtk.TaskSpec.load(tmp_path / "run" / "model" / "spec.json")
    assert spec.group("marks").labels == ("colour", "topic") and spec.group("count").labels == ("count",)
    mean, std = spec.group("count").target_stats[0]
    counts = [r["count"] for r in mixed_records(160, 0)]
    assert mean == pytest.approx(np.mean(counts)) and std == pytest.approx(np.std(counts))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]["groups"]
    assert metrics["marks"]["span_f1"] > 0.5 and metrics["count"]["mae"] < 1.0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("red alpha program\n"))
    assert cli_main(["predict", str(tmp_path / "run")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert isinstance(answer["count"], float)
    assert [(w["word"], w["start"], w["end"]) for w in answer["marks"]] == [
        ("red", 0, 3), ("alpha", 4, 9), ("program", 10, 17)]

    # regression alone: no group reports ROC-AUC; the selection score is the kind's own (R²)
    config["spec"]["groups"] = [config["spec"]["groups"][1]]
    config["training"]["epochs"], config["output"] = 1, "run-count"
    (tmp_path / "count.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["train", str(tmp_path / "count.yaml"), "--verbose", "0"]) == 0
    best = json.loads((tmp_path / "run-count" / "best.weights.h5.json").read_text())
    assert best["monitor"] == "val_selection_score" and np.isfinite(best["best"])
    assert not (tmp_path / "run-count" / "roc_curves.png").exists()  # nothing with probabilities to plot


@pytest.mark.parametrize("group", ["count", "marks"])
def test_each_new_kind_alone_also_in_bfloat16(mixed_spec, tiny_tokenizer, group, tmp_path):
    from dataclasses import replace

    spec = replace(mixed_spec, groups=(mixed_spec.group(group),))
    mtk.keras.utils.set_random_seed(2)
    model = mtk.build_model(spec, bert_config=tiny_config(), mixed_precision="mixed_bfloat16")
    mtk.compile_model(model, spec, learning_rate=3e-3)
    history = model.fit(make_dataset(spec, tiny_tokenizer, mixed_records(64), batch_size=16), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    texts = ["red alpha", "editors blue"]
    out = model(mtk.tokenize(tiny_tokenizer, texts, spec.max_length))
    assert out[group].dtype == tf.float32  # heads stay float32 under a half-precision encoder
    answers = mtk.Predictor(model, spec, tiny_tokenizer).predict(texts)
    assert list(answers[0]) == [group]
    mtk.save_model(model, spec, tmp_path / "m", tiny_tokenizer)
    assert mtk.Predictor.from_folder(str(tmp_path / "m")).predict(texts) == answers

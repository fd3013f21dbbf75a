import numpy as np
import pytest

import mtkeras as mtk


def test_encode_targets(tiny_spec):
    y, w = mtk.encode_targets(tiny_spec, [{"topic": "beta", "colour": ["red", "yellow"]},
                                          {"topic": "alpha", "colour": []}])
    assert w["topic"].tolist() == [1, 1] and w["colour"].tolist() == [1, 1]
    assert set(y) == {"topic", "colour"}
    np.testing.assert_array_equal(y["topic"], [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(y["colour"], [[1, 0, 0, 1], [0, 0, 0, 0]])
    assert y["topic"].dtype == np.float32
    empty, _ = mtk.encode_targets(tiny_spec, [])
    assert empty["colour"].shape == (0, 4)


def test_null_cells_are_not_annotated(tiny_spec):
    y, w = mtk.encode_targets(tiny_spec, [{"topic": None, "colour": []}, {"topic": "beta"},
                                          {"topic": "gamma", "colour": float("nan")}])
    assert w["topic"].tolist() == [0, 1, 1]
    assert w["colour"].tolist() == [1, 0, 0]  # [] is "none of these", missing/None/NaN is "not annotated"
    np.testing.assert_array_equal(y["topic"][0], [0, 0, 0])


def test_several_labels_in_a_multiclass_cell(tiny_spec):
    message = (r"Row 0, column 'topic' \(multiclass group 'topic'\): a cell holds exactly one label, "
               r"received 2 labels \['alpha', 'beta'\]")
    with pytest.raises(ValueError, match=message):
        mtk.encode_targets(tiny_spec, [{"topic": ["beta", "alpha"], "colour": []}])
    y, _ = mtk.encode_targets(tiny_spec, [{"topic": ["beta"], "colour": []}])  # one label in a list is fine
    assert y["topic"].tolist() == [[0, 1, 0]]


def test_encode_targets_errors(tiny_spec):
    message = r"Row 1, column 'topic' \(multiclass group 'topic'\): unknown label 'delta'\. Accepted labels: \['alpha'"
    with pytest.raises(ValueError, match=message):
        mtk.encode_targets(tiny_spec, [{"topic": "beta", "colour": []}, {"topic": "delta", "colour": []}])
    message = r"Row 0, column 'topic' \(multiclass group 'topic'\): expected one label as a string, received 3 \(int\)"
    with pytest.raises(TypeError, match=message):
        mtk.encode_targets(tiny_spec, [{"topic": 3, "colour": []}])
    message = r"Row 0, column 'colour' \(multilabel group 'colour'\): expected a list of labels .* received 'red'"
    with pytest.raises(TypeError, match=message):
        mtk.encode_targets(tiny_spec, [{"topic": "beta", "colour": "red"}])
    message = r"No row has the column 'colour' of group 'colour'; columns present: \['topic'\]"
    with pytest.raises(KeyError, match=message):
        mtk.encode_targets(tiny_spec, [{"topic": "beta"}])


def test_make_dataset_names_a_row_without_text(tiny_spec, tiny_tokenizer):
    rows = [{"text": "alpha", "topic": "alpha"}, {"body": "beta", "topic": "beta"}]
    with pytest.raises(KeyError, match=r"Row 1 has no text column 'text' \(its columns: \['body', 'topic'\]\); "
                                       r"name the column with the spec's `text_column`"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, rows)
    with pytest.raises(KeyError, match=r"Row 0 has no text column 'text' \(it is str, not a dict\)"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, ["alpha"])
    with pytest.raises(ValueError, match=r"`shuffle` must be true or false, received 'yes'"):  # once taken as true
        mtk.make_dataset(tiny_spec, tiny_tokenizer, rows[:1], shuffle="yes")
    with pytest.raises(TypeError, match=r"`records` must be a list of rows .*, received \{'text': 'alpha'\} \(dict\)"):
        mtk.encode_targets(tiny_spec, {"text": "alpha"})  # once a KeyError about the dict's keys


def test_tokenize_pads_to_longest_or_max_length(tiny_tokenizer):
    x = mtk.tokenize(tiny_tokenizer, ["red", "the red blue program"], max_length=32)
    assert set(x) == set(mtk.spec.INPUT_NAMES)
    assert x["input_ids"].shape == (2, 6) and x["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(x["attention_mask"][0], [1, 1, 1, 0, 0, 0])
    full = mtk.tokenize(tiny_tokenizer, ["red"], max_length=32, padding="max_length")
    assert full["input_ids"].shape == (1, 32)
    cut = mtk.tokenize(tiny_tokenizer, ["red " * 100], max_length=8)
    assert cut["input_ids"].shape == (1, 8) and cut["input_ids"][0, -1] == tiny_tokenizer.sep_token_id
    with pytest.raises(ValueError, match=r"`padding` must be one of \['longest', 'max_length'\], received 'max'"):
        mtk.tokenize(tiny_tokenizer, ["red"], 8, padding="max")


def test_pad_rows_matches_tokenizer_padding(tiny_tokenizer):
    texts = ["red", "the red blue program", "alpha beta"]
    encoded = tiny_tokenizer(texts, return_token_type_ids=True, return_attention_mask=True)
    batch = mtk.data.pad_rows(encoded, [2, 0], pad_id=tiny_tokenizer.pad_token_id)
    reference = mtk.tokenize(tiny_tokenizer, [texts[2], texts[0]], 32)
    for name in mtk.spec.INPUT_NAMES:
        np.testing.assert_array_equal(batch[name], reference[name])


def test_check_texts_errors():
    assert mtk.data.check_texts(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received a single str 'one text'; wrap"):
        mtk.data.check_texts("one text")
    with pytest.raises(TypeError, match=r"`texts\[1\]` is 3 \(int\); every text must be a str"):
        mtk.data.check_texts(["a", 3])
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received 5 \(int\)"):
        mtk.data.check_texts(5)


def test_read_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
    assert mtk.data.read_jsonl(path) == [{"text": "a"}, {"text": "b"}]
    path.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"d\.jsonl, line 2: not valid JSON"):
        mtk.data.read_jsonl(path)
    path.write_text('[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object, received \[1, 2\]"):
        mtk.data.read_jsonl(path)

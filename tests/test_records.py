"""Reading records (JSONL, CSV, DataFrame, lists) and the tf.data pipeline."""

import json
import logging

import numpy as np
import pytest
from conftest import synthetic_records

import mtkeras as mtk


def test_jsonl_csv_dataframe_and_list_give_the_same_records(tiny_spec, tmp_path):
    import pandas as pd

    records = [
        {"text": "red alpha", "topic": "alpha", "colour": ["red"]},
        {"text": "blue green beta", "topic": "beta", "colour": ["blue", "green"]},
        {"text": "gamma", "topic": "gamma", "colour": []},
        {"text": "the", "topic": None, "colour": None},
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,topic,colour\nred alpha,alpha,red\nblue green beta,beta,blue | green\n"
                        "gamma,gamma,[]\nthe,,\n", encoding="utf-8")
    frame = pd.DataFrame(records)
    frame.loc[3, "topic"] = np.nan
    for source in (jsonl, csv_path, frame, records):
        got = mtk.read_records(source, tiny_spec)
        assert got == records, source
    y, w = mtk.encode_targets(tiny_spec, mtk.read_records(csv_path, tiny_spec))
    assert w["colour"].tolist() == [1, 1, 1, 0]
    assert y["colour"][1].tolist() == [0, 1, 1, 0]


def test_csv_json_list_cells_and_other_delimiters(tiny_spec, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,topic,colour,extra\nred,alpha,"[""red"", ""blue""]",x\nblue,beta,blue;green,y\n',
                    encoding="utf-8")
    got = mtk.read_records(path, tiny_spec, label_delimiter=";")
    assert [r["colour"] for r in got] == [["red", "blue"], ["blue", "green"]]
    assert got[0]["extra"] == "x"  # other columns pass through untouched


def test_csv_errors_name_the_line(tiny_spec, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,topic,colour\nred,alpha,red\nblue,beta\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.csv, line 3: 2 cells for 3 columns \['text', 'topic', 'colour'\]"):
        mtk.read_records(path, tiny_spec)
    path.write_text('text,topic,colour\nred,alpha,"[""red"", "\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.csv, line 2, column 'colour': '\[\"red\", ' is not a JSON list"):
        mtk.read_records(path, tiny_spec)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty CSV file; expected a header row"):
        mtk.read_records(path, tiny_spec)
    path.write_text('text,topic,colour\nred,alpha,red\nblue,"beta"x,red\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.csv, line 3: not valid CSV \(',' expected after '\"'\)"):
        mtk.read_records(path, tiny_spec)


def test_unknown_source_and_extension(tiny_spec, tmp_path):
    message = r"unknown extension '.txt'; accepted: \['.csv', '.json', '.jsonl', '.ndjson'\]"
    with pytest.raises(ValueError, match=message):
        mtk.read_records(tmp_path / "d.txt", tiny_spec)
    with pytest.raises(TypeError, match=r"Cannot read records from 42 \(int\); accepted: a .jsonl or .csv path"):
        mtk.read_records(42, tiny_spec)
    with pytest.raises(TypeError, match=r"records\[1\] is 'oops' \(str\); expected a dict"):
        mtk.read_records([{"text": "a"}, "oops"], tiny_spec)


def test_text_checks(tiny_spec, caplog):
    with pytest.raises(KeyError, match=r"records: no row has the text column 'text'; columns present: \['body'\]"):
        mtk.read_records([{"body": "a"}], tiny_spec)
    message = r"the text column 'text' must hold strings; 2 rows do not \(row 1, row 2; row 1 holds 5\)"
    with pytest.raises(TypeError, match=message):
        mtk.read_records([{"text": "a"}, {"text": 5}, {"text": None}], tiny_spec)
    rows = [{"text": "a"}, {"text": "  "}, {"text": ""}]
    with pytest.raises(ValueError, match=r"2 rows have an empty text \(row 1, row 2\); .* drop_empty_texts=True"):
        mtk.read_records(rows, tiny_spec)
    with caplog.at_level(logging.WARNING, logger="mtkeras"):
        assert mtk.read_records(rows, tiny_spec, drop_empty_texts=True) == [{"text": "a"}]
    assert "dropped 2 rows with an empty text" in caplog.text


def test_spec_dict_is_enough_to_read(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("body,tags\nhello,a|b\n", encoding="utf-8")
    spec_dict = {"text_column": "body", "groups": [{"name": "tags", "kind": "multilabel"}]}
    assert mtk.read_records(path, spec_dict) == [{"body": "hello", "tags": ["a", "b"]}]
    with pytest.raises(TypeError, match=r"spec `groups` must be a list of group mappings .*, received None"):
        mtk.read_records(path, {"groups": None})
    with pytest.raises(TypeError, match="`spec` must be a TaskSpec or a spec mapping with `groups`, received 3"):
        mtk.read_records(path, 3)
    with pytest.raises(TypeError, match="`spec` must be a TaskSpec or a spec mapping with `groups`, received {}"):
        mtk.read_records(path, {})


def batches(dataset):
    return [(x, y, w) for x, y, w in dataset.as_numpy_iterator()]


def test_dataset_pads_each_batch_to_its_longest_row(tiny_spec, tiny_tokenizer):
    records = [{"text": " ".join(["red"] * n), "topic": "alpha", "colour": []} for n in (1, 1, 2, 9, 9, 12)]
    dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=2, padding="longest")
    shapes = [x["input_ids"].shape for x, _, _ in batches(dataset)]
    assert shapes == [(2, 3), (2, 11), (2, 14)]  # [CLS] + words + [SEP]; never padded to max_length=32
    x, y, w = batches(dataset)[1]
    assert x["attention_mask"].tolist() == [[1] * 4 + [0] * 7, [1] * 11]
    assert set(y) == set(w) == {"topic", "colour"} and y["colour"].shape == (2, 4)


def test_bucketing_batches_similar_lengths_and_keeps_every_row(tiny_spec, tiny_tokenizer):
    rng = np.random.default_rng(0)
    records = [{"text": " ".join(["red"] * int(n)), "topic": "alpha", "colour": []} for n in rng.integers(1, 29, 200)]
    dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=16, shuffle=True, seed=0,
                               bucket_boundaries=[8, 16, 24])
    seen, spreads = 0, []
    for x, _, _ in batches(dataset):
        lengths = x["attention_mask"].sum(axis=1)
        spreads.append(lengths.max() - lengths.min())
        seen += len(lengths)
    assert seen == 200
    assert max(spreads) <= 8  # a bucket spans at most 8 lengths
    unbucketed = mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=16, shuffle=True, seed=0,
                                  padding="longest")
    padding = lambda ds: sum(int((x["attention_mask"] == 0).sum()) for x, _, _ in batches(ds))  # noqa: E731
    assert padding(dataset) < 0.5 * padding(unbucketed)


@pytest.mark.parametrize("padding", ["bucketed_fixed", "max_length"])
def test_fixed_shape_paddings_give_few_shapes_and_keep_every_row(tiny_spec, tiny_tokenizer, padding):
    rng = np.random.default_rng(1)
    records = [{"text": " ".join(["red"] * int(n)), "topic": "alpha", "colour": []} for n in rng.integers(1, 40, 120)]
    dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=16, shuffle=True, seed=0,
                               padding=padding)
    lengths = {x["input_ids"].shape[1] for x, _, _ in batches(dataset)}
    assert sum(len(x["input_ids"]) for x, _, _ in batches(dataset)) == 120
    # tiny_spec.max_length is 32: eighths 4, 8, ..., 32 for buckets; one shape for max_length
    assert lengths <= ({4, 8, 12, 16, 20, 24, 28, 32} if padding == "bucketed_fixed" else {32})
    if padding == "bucketed_fixed":
        assert len(lengths) >= 4
    for x, _, _ in batches(dataset):  # padding is masked: every row keeps its own tokens
        assert (x["attention_mask"].sum(1) <= x["input_ids"].shape[1]).all()


def test_bad_padding_is_refused(tiny_spec, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"`padding` must be one of \['bucketed', 'bucketed_fixed', 'longest', "
                                         r"'max_length'\], received 'dynamic'"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, synthetic_records(4), padding="dynamic")


def test_dataset_trains_with_plain_fit(tiny_model, tiny_spec, tiny_tokenizer):
    mtk.compile_model(tiny_model, tiny_spec, learning_rate=1e-3)
    records = synthetic_records(40)
    records[0]["colour"] = None
    dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=8, shuffle=True, seed=1)
    history = tiny_model.fit(dataset, validation_data=dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])


def test_dataset_errors(tiny_spec, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1, received 0"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, [{"text": "a", "topic": "alpha", "colour": []}], batch_size=0)
    with pytest.raises(ValueError, match="`records` is empty"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, [])


def test_null_cells_add_no_loss(tiny_model, tiny_spec, tiny_tokenizer):
    """A head's loss ignores rows it does not annotate, whatever their (placeholder) targets."""
    mtk.compile_model(tiny_model, tiny_spec)
    records = synthetic_records(16, seed=4)
    for record in records[::2]:
        record["colour"] = None
    x = mtk.tokenize(tiny_tokenizer, [r["text"] for r in records], tiny_spec.max_length)
    y, w = mtk.encode_targets(tiny_spec, records)
    base = tiny_model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    y_changed = {k: v.copy() for k, v in y.items()}
    y_changed["colour"][::2] = 1.0  # change only the targets of rows that are not annotated
    changed = tiny_model.evaluate(x, y_changed, sample_weight=w, verbose=0, return_dict=True)
    assert changed["colour_loss"] == pytest.approx(base["colour_loss"], rel=1e-6)
    assert changed["colour_roc_auc"] == pytest.approx(base["colour_roc_auc"], rel=1e-6)
    unmasked = tiny_model.evaluate(x, y_changed, verbose=0, return_dict=True)
    assert unmasked["colour_loss"] > base["colour_loss"] + 0.1  # the same change counts when not masked
    # SUM_OVER_BATCH_SIZE: the head loss is the sum over annotated rows divided by all rows.
    probs = tiny_model.predict(x, verbose=0)["colour"]
    bce = mtk.keras.losses.binary_crossentropy(y["colour"], probs).numpy()
    assert base["colour_loss"] == pytest.approx(float((bce * w["colour"]).sum() / len(records)), rel=1e-4)

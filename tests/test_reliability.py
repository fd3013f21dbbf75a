"""Reliability (issue 8): fuzzed inputs, hostile files, full or read-only disks, threads.

Killed processes are in ``test_killed.py``. Every generator here is seeded, so a failure
reproduces with the same command; ``RELIABILITY.md`` lists what is tried and the outcome.
"""

import copy
import json
import math
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
from mtkeras._compat import tf

HERE = os.path.dirname(os.path.abspath(__file__))


# --- fuzzing the served model (a fresh TF + TF Text process) ------------------------------------------------


def fuzz_serving(export, count, seed, tmp_path):
    report = tmp_path / f"fuzz-{seed}.json"
    done = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_serving_job.py"), export, str(count), str(seed),
                           str(report)], capture_output=True, text=True, timeout=1800,  # a hang fails here
                          env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
    assert done.returncode == 0, done.stderr[-3000:]
    print("fuzz report:", report.read_text())  # shown with pytest -s: counts per sort, slowest call
    return json.loads(report.read_text())


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_fuzz_serving_default_with_10000_hostile_texts(all_kinds_export, tmp_path):
    report = fuzz_serving(all_kinds_export, 10_000, seed=0, tmp_path=tmp_path)
    assert report["inputs"] >= 10_000
    assert min(report["per_sort"].values()) >= 1, report["per_sort"]  # every sort was tried, 1 MB texts too


@pytest.mark.slow
def test_fuzz_serving_default_with_100000_hostile_texts(all_kinds_export, tmp_path):
    report = fuzz_serving(all_kinds_export, 100_000, seed=1, tmp_path=tmp_path)
    assert report["inputs"] >= 100_000


def test_predictor_takes_the_same_hostile_texts(all_kinds_spec, tiny_tokenizer):
    sys.path.insert(0, HERE)
    from fuzz_serving_job import SORTS, generate

    rng = random.Random(3)
    # In Python a text is a str: invalid UTF-8 has no str form, lone surrogates do.
    def as_str(data):
        try:
            return data.decode("utf-8", "surrogatepass")  # keeps lone surrogates
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")

    texts = [as_str(generate(rng, rng.choice(SORTS))) for _ in range(300)]
    texts += ["a\ud800b", "\udfff", "x" * 100_000, ""]
    mtk.keras.utils.set_random_seed(7)
    model = mtk.build_model(all_kinds_spec, bert_config=tiny_config())
    answers = mtk.Predictor(model, all_kinds_spec, tokenizer=tiny_tokenizer, batch_size=16).predict(texts)
    assert len(answers) == len(texts)
    for answer in answers:
        assert answer["topic"] in ("alpha", "beta", "gamma")
        assert set(answer["colour"]) <= {"red", "blue", "green", "yellow"}
        assert math.isfinite(answer["count"])
        assert all(set(w["labels"]) <= {"colour", "topic"} for w in answer["marks"])
    assert [w["word"] for w in answers[-4]["marks"]] == ["a\ufffdb"]  # a lone surrogate becomes U+FFFD in place


# --- fuzzing the data path -------------------------------------------------------------------------------------


def random_annotation(rng, group):
    if group.kind == "multiclass":
        return rng.choice(group.labels)
    if group.kind == "multilabel":
        return [label for label in group.labels if rng.random() < 0.4]
    if group.kind == "regression":
        return rng.uniform(-1e6, 1e6)
    return None  # token groups: built with the text below


@pytest.mark.parametrize("seed", range(5))
def test_labels_to_targets_to_answers_round_trip(all_kinds_spec, seed):
    rng = random.Random(seed)
    words = ["red", "blue", "alpha", "x", "é", "日本"]
    records = []
    for _ in range(40):
        text_words = [rng.choice(words) for _ in range(rng.randint(1, 8))]
        record = {"text": rng.choice([" ", "  ", "\t"]).join(text_words)}
        for group in all_kinds_spec.groups:
            record[group.name] = random_annotation(rng, group)
        record["marks"] = [[label for label in ("colour", "topic") if rng.random() < 0.3] for _ in text_words]
        records.append(record)
    targets, weights = mtk.encode_targets(all_kinds_spec, records)
    texts = [r["text"] for r in records]
    for group in all_kinds_spec.groups:
        values = targets[group.name]
        if group.kind == "token_multilabel":
            probs = np.empty(len(records), dtype=object)
            probs[:] = [np.asarray(row, np.float32) for row in values]
        else:
            probs = np.asarray(values, np.float32 if group.kind != "regression" else np.float64)
        decoded = group.rules.decode(probs, texts)
        for record, answer in zip(records, decoded, strict=True):
            expected = record[group.name]
            if group.kind == "multilabel":
                assert answer == [label for label in group.labels if label in expected]
            elif group.kind == "regression":
                assert answer == pytest.approx(expected, rel=1e-6)
            elif group.kind == "token_multilabel":
                assert [w["labels"] for w in answer] == expected
                assert [w["word"] for w in answer] == record["text"].split()
            else:
                assert answer == expected
        assert (np.asarray(weights[group.name]) == 1).all()


JSONL_FAULTS = {
    "truncated JSON": (lambda row: row[:-3], r"not valid JSON"),
    "a JSON list": (lambda row: "[1, 2]", r"expected a JSON object"),
    "a JSON number": (lambda row: "42", r"expected a JSON object"),
    "invalid UTF-8": (lambda row: row.encode()[:5] + b"\xff\xfe" + row.encode()[5:], r"not valid UTF-8"),
    "text null": (lambda row: json.dumps({**json.loads(row), "text": None}), r"must hold strings"),
    "text a number": (lambda row: json.dumps({**json.loads(row), "text": 3.5}), r"must hold strings"),
    "text empty": (lambda row: json.dumps({**json.loads(row), "text": "  "}), r"empty text"),
}
CSV_FAULTS = {
    "one cell too many": (lambda row: row + ",extra", r"cells for 3 columns"),
    "one cell missing": (lambda row: row.rsplit(",", 1)[0], r"cells for 3 columns"),
    "invalid UTF-8": (lambda row: row.encode()[:3] + b"\xc3\x28" + row.encode()[3:], r"not valid UTF-8"),
    "bad JSON label list": (lambda row: row.rsplit(",", 1)[0] + ',"[""red"","', r"column 'colour'"),
    "unclosed quote": (lambda row: '"' + row, r"not valid CSV \(unexpected end of data; a quoted cell is not closed"),
    "text empty": (lambda row: '"",' + row.split(",", 1)[1], r"empty text"),
}


@pytest.mark.parametrize("fault", sorted(JSONL_FAULTS))
def test_malformed_jsonl_row_names_its_line(tiny_spec, tmp_path, fault):
    corrupt, message = JSONL_FAULTS[fault]
    for seed in range(4):
        rng = random.Random(seed)
        rows = [json.dumps(r) for r in synthetic_records(rng.randint(3, 30), seed=seed)]
        bad = rng.randrange(len(rows))
        lines = [row.encode() for row in rows]
        broken = corrupt(rows[bad])
        lines[bad] = broken if isinstance(broken, bytes) else broken.encode()
        path = tmp_path / f"{seed}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises((ValueError, TypeError), match=message) as info:
            mtk.read_records(str(path), tiny_spec)
        assert str(path) in str(info.value) and re.search(rf"\bline {bad + 1}\b", str(info.value)), info.value


@pytest.mark.parametrize("fault", sorted(CSV_FAULTS))
def test_malformed_csv_row_names_its_line(tiny_spec, tmp_path, fault):
    corrupt, message = CSV_FAULTS[fault]
    for seed in range(4):
        rng = random.Random(seed)
        records = synthetic_records(rng.randint(3, 30), seed=seed)
        rows = [f'{r["text"]},{r["topic"]},{"|".join(r["colour"])}' for r in records]
        bad = rng.randrange(len(rows))
        broken = corrupt(rows[bad])
        lines = [b"text,topic,colour"] + [row.encode() for row in rows]
        lines[bad + 1] = broken if isinstance(broken, bytes) else broken.encode()
        path = tmp_path / f"{seed}.csv"
        path.write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises(ValueError, match=message) as info:
            mtk.read_records(str(path), tiny_spec)
        assert re.search(rf"\bline {bad + 2}\b", str(info.value)), info.value
    good = tmp_path / "good.csv"
    good.write_text("text,topic,colour\n" + "\n".join(rows[:bad] + rows[bad + 1:]) + "\n", encoding="utf-8")
    assert len(mtk.read_records(str(good), tiny_spec)) == len(rows) - 1


ODD_VALUES = [None, -1, 0, 1, 2.5, float("nan"), float("inf"), "", "x", "../../etc", [], [1], {}, {"a": 1}, True,
              10**12, "multiclass", "regression", ["a", "a"], ["a", None], -0.5]


def odd_value(rng):
    return copy.deepcopy(rng.choice(ODD_VALUES))


def mutate(data, rng):
    """One random edit somewhere in a spec's JSON tree: drop, replace, or add a key; change a list."""
    path, node = [], data
    while isinstance(node, (dict, list)) and node and rng.random() < 0.7:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    target = data
    for key in path[:-1]:
        target = target[key]
    edit = rng.choice(["replace", "drop", "add", "replace"])
    if not path:
        data[f"unknown_{rng.randrange(9)}"] = odd_value(rng)
    elif edit == "drop" and isinstance(target, dict):
        del target[path[-1]]
    elif edit == "add" and isinstance(target, dict):
        target[f"extra_{rng.randrange(9)}"] = odd_value(rng)
    elif edit == "add" and isinstance(target, list):
        target.append(odd_value(rng))
    else:
        target[path[-1]] = odd_value(rng)
    return data


def test_mutated_spec_json_is_accepted_equal_or_rejected_clearly(all_kinds_spec, tmp_path):
    rng = random.Random(0)
    accepted = rejected = 0
    base = all_kinds_spec.to_dict()
    for _ in range(2000):
        data = json.loads(json.dumps(base))
        for _edit in range(rng.randint(1, 3)):
            data = mutate(data, rng)
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        try:
            spec = mtk.TaskSpec.load(path)
        except (ValueError, TypeError) as error:  # the documented errors: they say what was received
            text = str(error)
            said = text.lower()
            assert len(text) > 20 and ("received" in said or "expected" in said or "accepted" in said), (data, text)
            rejected += 1
            continue
        spec.save(tmp_path / "again.json")
        assert mtk.TaskSpec.load(tmp_path / "again.json") == spec, data
        assert mtk.TaskSpec.from_dict(spec.to_dict()) == spec
        accepted += 1
    print(f"spec mutations: {accepted} accepted, {rejected} rejected")  # shown with pytest -s
    assert accepted >= 100 and rejected >= 1000, (accepted, rejected)


# --- full or read-only disks -----------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs with 48 KiB free, where the machine allows mounting one (root in CI); skipped elsewhere, saying why."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:100]})")
    stat = os.statvfs(mount)
    (mount / ".filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 48 * 1024))  # 48 KiB stay free
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_export_to_a_full_disk_fails_clearly_and_keeps_the_previous_version(
        compiled_tiny, tiny_tokenizer, small_disk):
    model, spec = compiled_tiny
    # version 1 is a stand-in (a marker file): the disk is full before a real version fits
    previous = small_disk / "model" / "1"
    previous.mkdir(parents=True)
    (previous / "saved_model.pb").write_bytes(b"previous version")
    with pytest.raises(OSError, match=r"Could not write SavedModel version 2 under .*: No space left on device.*"
                                      r"what was there before is intact"):
        mtk.export_saved_model(model, small_disk / "model", version=2, spec=spec, tokenizer=tiny_tokenizer)
    assert sorted(os.listdir(small_disk / "model")) == ["1"]  # no partial version, no staging leftovers
    assert (previous / "saved_model.pb").read_bytes() == b"previous version"
    with pytest.raises(OSError, match=r"Could not write the model folder 'm' under .*No space left on device"):
        mtk.save_model(model, spec, small_disk / "m", tokenizer=tiny_tokenizer)
    assert sorted(os.listdir(small_disk)) == [".filler", "model"]


def test_export_into_a_read_only_folder_fails_clearly_and_keeps_the_previous_version(
        compiled_tiny, tiny_tokenizer, tmp_path):
    model, spec = compiled_tiny
    base = tmp_path / "ro"
    mtk.export_saved_model(model, base, version=1, spec=spec, tokenizer=tiny_tokenizer)
    before = sorted(os.listdir(base / "1"))
    if os.geteuid() == 0:  # root ignores permission bits: use a read-only bind mount
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(base), str(base)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here ({done.stderr.decode().strip()[:100]})")
        undo = ["umount", str(base)]
    else:
        os.chmod(base, 0o555)
        undo = ["chmod", "755", str(base)]
    try:
        with pytest.raises(OSError, match=r"Could not write SavedModel version 2 under .*ro': .*(Read-only|denied)"):
            mtk.export_saved_model(model, base, version=2, spec=spec, tokenizer=tiny_tokenizer)
        with pytest.raises(OSError, match=r"Could not write the model folder .*(Read-only|denied)"):
            mtk.save_model(model, spec, base / "m", tokenizer=tiny_tokenizer)
    finally:
        subprocess.run(undo, check=False)
    assert sorted(os.listdir(base)) == ["1"] and sorted(os.listdir(base / "1")) == before
    tf.saved_model.load(str(base / "1"))  # still loads


@pytest.fixture()
def compiled_tiny(tiny_spec):
    mtk.keras.utils.set_random_seed(2)
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    mtk.compile_model(model, tiny_spec, learning_rate=1e-3)
    return model, tiny_spec


# --- untrusted files -------------------------------------------------------------------------------------------


@pytest.fixture()
def saved(compiled_tiny, tiny_tokenizer, tmp_path):
    model, spec = compiled_tiny
    return mtk.save_model(model, spec, tmp_path / "saved", tokenizer=tiny_tokenizer)


def test_keras_file_with_code_is_refused_and_nothing_runs(saved, tmp_path):
    canary = str(tmp_path / "ran")
    evil = mtk.keras.Sequential([mtk.keras.layers.Lambda(lambda x: (open(canary, "w").close(), x)[1],
                                                          input_shape=(2,))])
    evil.save(tmp_path / "evil.keras")
    os.remove(canary)  # building the model ran the lambda once; loading must not
    shutil.copy(tmp_path / "evil.keras", os.path.join(saved, "model.keras"))
    with pytest.raises(ValueError, match=r"safe_mode"):
        mtk.load_model(saved)
    assert not os.path.exists(canary)


def test_pickled_weights_in_an_encoder_folder_are_never_unpickled(tiny_folder, tmp_path):
    canary = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    folder = tmp_path / "encoder"
    shutil.copytree(tiny_folder, folder)
    os.remove(folder / "model.safetensors")
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump(Evil(), handle)
    with zipfile.ZipFile(tmp_path / "also.bin", "w") as archive:  # torch's zip layout, pickle inside
        archive.writestr("archive/data.pkl", pickle.dumps(Evil()))
    shutil.copy(tmp_path / "also.bin", folder / "model.bin")
    with pytest.raises(FileNotFoundError, match=r"has no weights .*one of \['model.safetensors', 'tf_model.h5'\]"):
        mtk.encoder.load_encoder(str(folder))
    assert not canary.exists()


def test_remote_code_in_an_encoder_folder_never_runs(tiny_folder, tmp_path):
    canary = tmp_path / "ran"
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_folder, folder)
    (folder / "evil.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        data = json.loads(path.read_text()) if path.exists() else {}
        data["auto_map"] = {"AutoConfig": "evil.Config", "AutoTokenizer": ["evil.Tokenizer", "evil.Tokenizer"]}
        path.write_text(json.dumps(data))
    try:
        mtk.load_tokenizer(str(folder))
        mtk.encoder.load_encoder(str(folder))
    except (ValueError, OSError):
        pass  # refusing is fine too; running the file is not
    assert not canary.exists()


def test_tokenizer_files_pointing_outside_their_folder_are_refused(tiny_folder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(os.path.join(tiny_folder, "vocab.txt"), outside / "vocab.txt")
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_folder, folder)
    os.remove(folder / "vocab.txt")
    for name in ("tokenizer.json",):
        if (folder / name).exists():
            os.remove(folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps({"vocab_file": str(outside / "vocab.txt")}))
    (folder / "vocab.txt").symlink_to(outside / "vocab.txt")
    with pytest.raises(ValueError, match=r"points outside the folder.*vocab.txt"):
        mtk.load_tokenizer(str(folder))


def test_saved_spec_pointing_elsewhere_is_not_followed(saved, tmp_path):
    spec = json.loads(open(os.path.join(saved, "spec.json")).read())
    spec["encoder"] = str(tmp_path / "does-not-exist" / ".." / ".." / "etc")
    with open(os.path.join(saved, "spec.json"), "w") as handle:
        json.dump(spec, handle)
    model, loaded_spec, tokenizer = mtk.load_model(saved)  # weights and vocab come from the folder only
    assert tokenizer.vocab_size > 0 and loaded_spec.encoder == spec["encoder"]


# (test_export covers "../evil", "a/b", "..", ".hidden" and "" through the CLI)
@pytest.mark.parametrize("name", ["a\\b", "a/../b", "x" * 200, "/abs", "ok\nname", "C:\\x", "name\n"])
def test_export_names_that_are_not_one_folder_are_refused(name):
    with pytest.raises(ValueError, match=r"Export name must be 1-128 letters.*received"):
        mtk.export.check_export_name(name)


# --- threads ---------------------------------------------------------------------------------------------------


def test_one_predictor_and_one_savedmodel_from_8_threads(compiled_tiny, tiny_tokenizer, tmp_path):
    model, spec = compiled_tiny
    predictor = mtk.Predictor(model, spec, tokenizer=tiny_tokenizer, batch_size=4)
    rng = random.Random(0)
    words = ["red", "blue", "green", "alpha", "beta", "gamma", "program", "file"]
    jobs = [[" ".join(rng.choices(words, k=rng.randint(1, 20))) for _ in range(rng.randint(1, 30))]
            for _ in range(48)]
    expected = [predictor.predict(texts) for texts in jobs]
    serve = tf.saved_model.load(mtk.export_saved_model(model, tmp_path / "sm", spec=spec,
                                                       tokenizer=tiny_tokenizer)).signatures["serving_default"]
    served_expected = [serve(text=tf.constant(texts))["topic_probabilities"].numpy() for texts in jobs]
    barrier = threading.Barrier(8)

    def work(i):
        if i < 8:
            barrier.wait()  # all 8 threads start together
        return predictor.predict(jobs[i]), serve(text=tf.constant(jobs[i]))["topic_probabilities"].numpy()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(len(jobs))))
    for (answers, served), want, served_want in zip(results, expected, served_expected, strict=True):
        assert answers == want
        np.testing.assert_allclose(served, served_want, atol=1e-6)


def test_names_with_a_trailing_newline_are_refused():
    # Python's `$` also matches before a final newline: names are checked with fullmatch.
    with pytest.raises(ValueError, match=r"LabelGroup `name` must be 1-64 letters.*received 'topic\\n'"):
        mtk.LabelGroup("topic\n", "multiclass", labels=["a", "b"])

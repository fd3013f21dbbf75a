import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk

TEXTS = [r["text"] for r in synthetic_records(12, seed=3)]


def outputs(model, tokenizer, spec):
    return model.predict(mtk.tokenize(tokenizer, TEXTS, spec.max_length), verbose=0)


def assert_same(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6)


def test_keras_file_round_trip(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    mtk.compile_model(tiny_model, tiny_spec)
    path = tmp_path / "model.keras"
    tiny_model.save(path)
    loaded = mtk.keras.models.load_model(path, safe_mode=True)  # no custom_objects
    assert_same(outputs(tiny_model, tiny_tokenizer, tiny_spec), outputs(loaded, tiny_tokenizer, tiny_spec))
    assert isinstance(loaded.optimizer, mtk.RAdam)


def test_savedmodel_round_trip(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    path = str(tmp_path / "savedmodel")
    tiny_model.save(path, save_format="tf")
    loaded = mtk.keras.models.load_model(path)
    assert_same(outputs(tiny_model, tiny_tokenizer, tiny_spec), outputs(loaded, tiny_tokenizer, tiny_spec))
    assert isinstance(loaded.get_layer("encoder"), mtk.encoder.BertEncoder)


def test_model_folder_round_trip(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    tuned = tiny_spec.with_thresholds({"colour": [0.2, 0.4, 0.6, 0.8]})
    folder = mtk.save_model(tiny_model, tuned, tmp_path / "run", tiny_tokenizer)
    assert sorted(os.listdir(folder)) == ["model.keras", "spec.json", "tokenizer"]
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no staging folder left behind
    model, spec, tokenizer = mtk.load_model(folder)
    assert spec == tuned
    assert tokenizer(TEXTS)["input_ids"] == tiny_tokenizer(TEXTS)["input_ids"]
    assert_same(outputs(tiny_model, tiny_tokenizer, tiny_spec), outputs(model, tokenizer, spec))
    before = mtk.Predictor(tiny_model, tuned, tiny_tokenizer).predict(TEXTS)
    assert mtk.Predictor.from_folder(folder).predict(TEXTS) == before


def test_save_refuses_to_overwrite_unless_asked(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    folder = mtk.save_model(tiny_model, tiny_spec, tmp_path / "run", tiny_tokenizer)
    with pytest.raises(FileExistsError, match=r"Model folder '.*run' already exists; pass overwrite=True"):
        mtk.save_model(tiny_model, tiny_spec, folder, tiny_tokenizer)
    tuned = tiny_spec.with_thresholds({"colour": [0.3] * 4})
    mtk.save_model(tiny_model, tuned, folder, tiny_tokenizer, overwrite=True)
    assert mtk.load_model(folder)[1] == tuned
    assert sorted(os.listdir(tmp_path)) == ["run"]



def test_overwrite_replaces_a_model_folder_only(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    """overwrite=True once moved any existing path aside and deleted it: a file, or a project folder."""
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text("keep me too")
    (tmp_path / "empty").mkdir()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"'.*notes.txt' is a file, not a model folder; save_model writes "
                                                  r"a folder \(model.keras, spec.json, tokenizer/\)"):
            mtk.save_model(tiny_model, tiny_spec, tmp_path / "notes.txt", tiny_tokenizer, overwrite=overwrite)
    with pytest.raises(FileExistsError, match=r"'.*project' holds \['train.py'\] but no model \(model.keras, "
                                              r"spec.json\); overwrite=True replaces a model folder only"):
        mtk.save_model(tiny_model, tiny_spec, tmp_path / "project", tiny_tokenizer, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path / "project")) == ["train.py"]
    assert sorted(os.listdir(tmp_path)) == ["empty", "notes.txt", "project"]  # no staging folder left behind
    mtk.save_model(tiny_model, tiny_spec, tmp_path / "empty", tiny_tokenizer, overwrite=True)  # an empty folder
    assert mtk.load_model(tmp_path / "empty")[1] == tiny_spec

def test_failed_save_leaves_previous_folder_intact(tiny_model, tiny_spec, tmp_path):
    folder = mtk.save_model(tiny_model, tiny_spec, tmp_path / "run", mtk.load_tokenizer(tiny_spec.encoder))

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        mtk.save_model(tiny_model, tiny_spec, folder, BrokenTokenizer(), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert mtk.load_model(folder)[1] == tiny_spec


def test_load_errors(tiny_model, tiny_spec, tiny_tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not an mtkeras model folder: 'model.keras' is missing"):
        mtk.load_model(tmp_path)
    other = mtk.TaskSpec(encoder=tiny_spec.encoder, max_length=32,
                         groups=[mtk.LabelGroup("other", "multilabel", labels=["x"])])
    with pytest.raises(ValueError, match=r"The model's outputs \['colour', 'topic'\] do not match the spec's groups"):
        mtk.save_model(tiny_model, other, tmp_path / "bad", tiny_tokenizer)
    folder = mtk.save_model(tiny_model, tiny_spec, tmp_path / "run", tiny_tokenizer)
    other.save(os.path.join(folder, "spec.json"))
    with pytest.raises(ValueError, match=r"do not match spec.json's groups \['other'\]"):
        mtk.load_model(folder)


def test_fresh_process_loads_every_layer(all_kinds_spec, tiny_tokenizer, tmp_path):
    """A process that has built nothing loads a model with every registered layer of mtkeras (encoder, windows,
    regression head, bag of pieces, learned loss weights, a memory of training rows): the layers' modules are
    imported by ``load_model``, not by building one."""
    spec = dataclasses.replace(all_kinds_spec, max_windows=2, stride=8, bag_dim=8, bag_buckets=64,
                               loss_weighting="uncertainty", neighbours=2, memory_rows=5)
    mtk.keras.utils.set_random_seed(3)
    model = mtk.build_model(spec, bert_config=tiny_config())
    assert {"split_windows", "merge_windows", "piece_bag", "loss_uncertainty", "neighbour_memory"} <= {
        layer.name for layer in model.layers}
    rng = np.random.default_rng(3)
    model.get_layer("neighbour_memory").set_weights([rng.normal(size=(5, 32)).astype(np.float32)])
    for name, labels in (("topic", 3), ("colour", 4)):  # the stored rows' labels and annotations: random
        model.get_layer(name).set_weights([rng.integers(0, 2, (5, labels)).astype(np.float32), np.ones(5, np.float32)])
    folder = mtk.save_model(model, spec, tmp_path / "run", tiny_tokenizer)
    inputs = {name: np.asarray(values) for name, values in mtk.tokenize(tiny_tokenizer, TEXTS, 64).items()}
    np.savez(tmp_path / "inputs.npz", **inputs)
    expected = model.predict(inputs, verbose=0)
    mtk.compile_model(model, spec)
    model.save(tmp_path / "compiled.keras")
    code = ("import sys, numpy as np, mtkeras as mtk\n"
            "model = mtk.load_model(sys.argv[1])[0]\n"
            "np.savez(sys.argv[3], **model.predict(dict(np.load(sys.argv[2])), verbose=0))\n"
            "import mtkeras.saving\n"  # plain Keras, compiled: the optimizer and losses are registered too
            "compiled = mtk.keras.models.load_model(sys.argv[4], safe_mode=True)\n"
            "assert isinstance(compiled.optimizer, mtk.RAdam), compiled.optimizer\n"
            "np.savez(sys.argv[5], **compiled.predict(dict(np.load(sys.argv[2])), verbose=0))\n")
    done = subprocess.run([sys.executable, "-c", code, folder, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz"),
                           str(tmp_path / "compiled.keras"), str(tmp_path / "compiled.npz")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for out in ("out.npz", "compiled.npz"):
        got = np.load(tmp_path / out)
        assert sorted(got.files) == sorted(expected) == sorted(spec.group_names)
        for name, values in expected.items():
            np.testing.assert_allclose(got[name], values, atol=1e-5, err_msg=f"{out}: {name}")


def test_a_trained_models_folder_leaves_the_optimizer_out_and_training_goes_on(tiny_spec, tiny_tokenizer, tmp_path):
    """load_model loads uncompiled, so the optimizer's state (twice the weights, for RAdam) is not written; the
    model saved keeps its optimizer in memory and trains on."""
    import zipfile

    import h5py

    mtk.keras.utils.set_random_seed(6)
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    mtk.compile_model(model, tiny_spec, learning_rate=1e-3)
    dataset = mtk.make_dataset(tiny_spec, tiny_tokenizer, synthetic_records(16), batch_size=8)
    model.fit(dataset, epochs=1, verbose=0)
    optimizer, steps = model.optimizer, int(model.optimizer.iterations.numpy())
    inputs = mtk.tokenize(tiny_tokenizer, TEXTS, 32)
    expected = model.predict(inputs, verbose=0)
    folder = mtk.save_model(model, tiny_spec, tmp_path / "saved", tiny_tokenizer)
    with zipfile.ZipFile(os.path.join(folder, "model.keras")) as archive:
        archive.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5", "r") as weights:
        assert "optimizer" not in weights and "layers" in weights
    assert model.optimizer is optimizer
    model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2 * steps
    for name, values in mtk.load_model(folder)[0].predict(inputs, verbose=0).items():  # the first fit's weights
        np.testing.assert_allclose(values, expected[name], atol=1e-6, err_msg=name)

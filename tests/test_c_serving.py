"""An export served from C with no Python in the process (tests/serve_c.c: the C++ SavedModel loader TF Serving
uses, through the C API), compared with the same signature called from Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mtkeras._compat import tf
from mtkeras.export.ops import tf_text_libraries

HERE = os.path.dirname(os.path.abspath(__file__))
TF_DIR = os.path.dirname(tf.__file__)
HOSTILE = ["", "\x00", "a\x00b", "x" * 10_000, "alpha red " * 2_000, "\u00e9t\u00e9 \u03a3\u03a3", "\U0001f600" * 50,
           "   ", "\n\t\r"]
INVALID_UTF8 = [b"\xff\xfe", b"alpha \xc3 red", b"\xed\xa0\x80"]


@pytest.fixture(scope="module")
def serve_c(tmp_path_factory) -> str:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.fail("No C compiler found (looked for $CC, cc, gcc, clang): the C-API serving test builds "
                    "tests/serve_c.c against the tensorflow wheel; install one (e.g. apt-get install gcc).")
    binary = str(tmp_path_factory.mktemp("serve_c") / "serve_c")
    done = subprocess.run([compiler, "-O1", "-o", binary, os.path.join(HERE, "serve_c.c"),
                           f"-I{os.path.join(TF_DIR, 'include')}", f"-L{TF_DIR}", "-l:libtensorflow_cc.so.2",
                           "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{TF_DIR}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return binary


def signature_lines(export: str, name: str = "serving_default") -> tuple[str, list[tuple[str, str]]]:
    """The input tensor and ``(key, tensor)`` of every output of a signature, from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(export, "saved_model.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    if name not in saved.meta_graphs[0].signature_def:
        raise KeyError(f"{export!r} has no signature {name!r}; it has {sorted(saved.meta_graphs[0].signature_def)}.")
    signature = saved.meta_graphs[0].signature_def[name]
    (only_input,) = signature.inputs.values()
    return only_input.name, sorted((key, value.name) for key, value in signature.outputs.items())


def run_c(binary: str, export: str, texts: list[bytes], tmp_path) -> dict[str, np.ndarray]:
    input_name, outputs = signature_lines(export)
    (tmp_path / "signature.txt").write_text("\n".join([input_name, *[f"{k} {t}" for k, t in outputs]]) + "\n")
    (tmp_path / "texts.txt").write_text("".join(text.hex() + "\n" for text in texts))
    done = subprocess.run([binary, export, str(tmp_path / "signature.txt"), str(tmp_path / "texts.txt"),
                           *tf_text_libraries()], capture_output=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    results, lines = {}, iter(done.stdout.decode().splitlines())
    for line in lines:
        _, key, dtype, ndims, *dims = line.split()
        shape = [int(d) for d in dims]
        values = [next(lines) for _ in range(int(np.prod(shape, dtype=np.int64)))]
        if int(dtype) == tf.string.as_datatype_enum:
            results[key] = np.array([bytes.fromhex(v) for v in values], dtype=object).reshape(shape)
        else:
            results[key] = np.array([float(v) for v in values]).reshape(shape)
    assert sorted(results) == [key for key, _ in outputs]
    return results


def python_answers(export: str, texts: list[bytes]) -> dict[str, np.ndarray]:
    served = tf.saved_model.load(export).signatures["serving_default"]
    return {key: value.numpy() for key, value in served(text=tf.constant(texts)).items()}


@pytest.mark.parametrize("batch", [1, 64])
def test_c_api_serving_equals_python(serve_c, all_kinds_export, tmp_path, batch):
    words = ["alpha", "beta", "gamma", "red", "blue", "green", "yellow", "program", "file", "the"]
    rng = np.random.default_rng(batch)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))).encode() for _ in range(batch)]
    compare(run_c(serve_c, all_kinds_export, texts, tmp_path), python_answers(all_kinds_export, texts))


def test_c_api_serving_of_hostile_texts(serve_c, all_kinds_export, tmp_path):
    texts = [text.encode() for text in HOSTILE] + INVALID_UTF8
    served = run_c(serve_c, all_kinds_export, texts, tmp_path)
    compare(served, python_answers(all_kinds_export, texts))
    assert served["topic_probabilities"].shape == (len(texts), 3)


def compare(served: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(served) == sorted(expected)
    for key, value in expected.items():
        assert served[key].shape == value.shape, key
        if value.dtype == object:
            assert served[key].tolist() == value.tolist(), key  # labels, words: equal
        else:
            np.testing.assert_allclose(served[key], value, atol=1e-5, rtol=0, err_msg=key)


@pytest.mark.parametrize(("case", "message"), [
    ("no export", r"serve_c: TF_LoadSessionFromSavedModel: .*SavedModel"),
    ("missing folder", r"serve_c: TF_LoadSessionFromSavedModel: Could not find SavedModel .pb or .pbtxt at "
                       r"supplied export directory path: .*absent"),
    # The C++ loader accepts a version without variables/ and fails at the first request (either message):
    ("half-written", r"serve_c: TF_SessionRun: (Could not find variable |Resource \S+ does not exist)"),
    ("wrong tensor", r"serve_c: no operation serving_default_texts in the graph"),
])
def test_c_harness_fails_clearly(serve_c, all_kinds_export, tmp_path, case, message):
    folder = {"no export": str(tmp_path), "missing folder": str(tmp_path / "absent")}.get(case, all_kinds_export)
    if case == "half-written":
        folder = str(tmp_path / "copy")
        shutil.copytree(all_kinds_export, folder)
        shutil.rmtree(os.path.join(folder, "variables"))
    input_name, outputs = signature_lines(all_kinds_export)
    lines = ["serving_default_texts:0"] if case == "wrong tensor" else [input_name, *[f"{k} {t}" for k, t in outputs]]
    (tmp_path / "signature.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "texts.txt").write_text("61\n")
    done = subprocess.run([serve_c, folder, str(tmp_path / "signature.txt"), str(tmp_path / "texts.txt"),
                           *tf_text_libraries()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and re.search(message, done.stderr), done.stderr[-2000:]


def test_signature_lines_names_a_wrong_signature(all_kinds_export):
    with pytest.raises(KeyError, match=r"no signature 'serve'; it has \[.*'serving_default', 'tokenize'\]"):
        signature_lines(all_kinds_export, "serve")


def test_the_listed_tf_text_libraries_are_needed_and_cover_every_op(serve_c, all_kinds_export, tmp_path):
    from mtkeras.export.ops import TF_TEXT_2_12_OPS, TF_TEXT_LIBRARIES

    assert sorted(TF_TEXT_LIBRARIES) == sorted(TF_TEXT_2_12_OPS)  # every TF Text op an export may use
    assert all(os.path.isfile(path) for path in tf_text_libraries())
    input_name, _ = signature_lines(all_kinds_export)
    (tmp_path / "signature.txt").write_text(input_name + "\n")
    (tmp_path / "texts.txt").write_text("61\n")
    done = subprocess.run([serve_c, all_kinds_export, str(tmp_path / "signature.txt"), str(tmp_path / "texts.txt")],
                          capture_output=True, text=True, timeout=300)  # TF core alone: the tokenizer's ops fail
    assert done.returncode == 1 and "Op type not registered" in done.stderr, done.stderr[-2000:]


# --- the export from other tools: mtkeras inspect, Keras 3 -------------------------------------------------


def test_inspect_describes_the_export_and_answers_a_text(all_kinds_export, capsys):
    from mtkeras.cli import main

    assert main(["inspect", all_kinds_export, "--text", "alpha red", "--text", "beta"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["signatures"]) == ["predict_ids", "serving_default", "tokenize"]
    assert report["signatures"]["serving_default"]["inputs"] == {"text": "string (None,)"}
    assert report["groups"]["colour"]["labels"] == ["red", "blue", "green", "yellow"]
    assert report["answers"]["texts"] == ["alpha red", "beta"]
    assert len(report["answers"]["topic_labels"]) == 2 and report["answers"]["topic_labels"][0] in ("alpha", "beta",
                                                                                                    "gamma")


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp, export: tmp / "absent", r"Export '.*absent' does not exist"),
    (lambda tmp, export: (tmp / "f").write_text("x") and tmp / "f", r"is a file; expected a SavedModel version"),
    (lambda tmp, export: os.path.dirname(export), r"saved_model.pb is missing; it holds versions \['1'\]"),
    (lambda tmp, export: tmp, r"saved_model.pb is missing; a complete export also has variables/"),
    (lambda tmp, export: _without(export, tmp, "variables"), r"half-written SavedModel: variables/ is missing"),
    (lambda tmp, export: _without(export, tmp, "assets.extra/mtkeras.json"), r"not an mtkeras export"),
])
def test_inspect_refuses_what_is_not_a_complete_export(all_kinds_export, tmp_path, capsys, make, message):
    from mtkeras.cli import main

    assert main(["inspect", str(make(tmp_path, all_kinds_export)), "--no-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtkeras inspect: error: ") and re.search(message, err), err


def test_inspect_refuses_an_unknown_or_id_signature(all_kinds_export, capsys):
    from mtkeras.cli import main

    assert main(["inspect", all_kinds_export, "--signature", "serve"]) == 2
    assert "has no signature 'serve'; it has ['predict_ids', 'serving_default', 'tokenize']" in capsys.readouterr().err
    assert main(["inspect", all_kinds_export, "--signature", "predict_ids"]) == 2
    assert "takes ['attention_mask', 'input_ids', 'token_type_ids'], not texts" in capsys.readouterr().err


def _without(export: str, tmp_path, part: str) -> str:
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    target = copy / part
    shutil.rmtree(target) if target.is_dir() else os.remove(target)
    return str(copy)


def test_keras_3_loads_the_export_with_tfsmlayer(all_kinds_export):
    code = textwrap.dedent(f"""
        import keras, tensorflow as tf, tensorflow_text
        assert keras.__version__.startswith("3"), keras.__version__
        layer = keras.layers.TFSMLayer({all_kinds_export!r}, call_endpoint="serving_default")
        out = layer(tf.constant(["alpha red", "beta"]))
        assert out["topic_probabilities"].shape == (2, 3), out["topic_probabilities"].shape
        print(sorted(out))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "topic_labels" in done.stdout

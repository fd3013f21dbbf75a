"""User mistakes, table-driven: each ends in one clear early error and leaves nothing behind.

Command-line cases run through ``mtkeras.cli.main`` in one subprocess (``tests/mistakes_job.py``: TensorFlow
is imported once for all of them); each asserts exit code 2, a one-line ``mtkeras <command>: error: ...``
naming the key / file / row and the value received, no traceback, and no new file or folder left in its
working folder. API cases assert the exception type and message. RELIABILITY.md counts the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import synthetic_records, tiny_config, write_jsonl

import mtkeras as mtk

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Fixtures:
    """Shared, read-only inputs of the command-line cases."""

    encoder: str
    train: str
    validation: str
    model: str  # a model folder (save_model), as `mtkeras predict|evaluate|export` read it
    texts: str


def _config(fx: Fixtures, **sections) -> dict:
    config = {
        "spec": {"encoder": fx.encoder, "max_length": 32,
                 "groups": [{"name": "topic", "kind": "multiclass"}, {"name": "colour", "kind": "multilabel"}]},
        "data": {"train": fx.train, "validation": fx.validation},
        "training": {"epochs": 1, "batch_size": 16},
        "output": "run",
    }
    for dotted, value in sections.items():
        section = config
        *parents, last = dotted.split("__")
        for key in parents:
            section = section.setdefault(key, {})
        section[last] = value
    return config


def _train(**sections) -> Callable[[Path, Fixtures], list[str]]:
    """A `mtkeras train` case: the base config with ``section__key=value`` changes, written as YAML."""

    def prepare(where: Path, fx: Fixtures) -> list[str]:
        (where / "config.yaml").write_text(yaml.safe_dump(_config(fx, **sections)), encoding="utf-8")
        return ["train", "config.yaml"]

    return prepare


def _train_text(text: str, name: str = "config.yaml") -> Callable[[Path, Fixtures], list[str]]:
    def prepare(where: Path, fx: Fixtures) -> list[str]:
        (where / name).write_text(text.format(encoder=fx.encoder, train=fx.train, validation=fx.validation),
                                  encoding="utf-8")
        return ["train", name]

    return prepare


def _train_data(which: str, content: bytes | None, **sections) -> Callable[[Path, Fixtures], list[str]]:
    """A train case whose train (or validation) file is replaced: bytes, or None for a folder of that name."""

    def prepare(where: Path, fx: Fixtures) -> list[str]:
        path = where / ("bad.csv" if sections.pop("csv", False) else "bad.jsonl")
        path.mkdir() if content is None else path.write_bytes(content)
        config = _config(fx, **sections)
        config["data"][which] = str(path)
        (where / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["train", "config.yaml"]

    return prepare


def _train_set(*overrides: str) -> Callable[[Path, Fixtures], list[str]]:
    def prepare(where: Path, fx: Fixtures) -> list[str]:
        (where / "config.yaml").write_text(yaml.safe_dump(_config(fx)), encoding="utf-8")
        return ["train", "config.yaml", *[arg for o in overrides for arg in ("--set", o)]]

    return prepare


def _encoder_without(name: str) -> Callable[[Path, Fixtures], list[str]]:
    def prepare(where: Path, fx: Fixtures) -> list[str]:
        shutil.copytree(fx.encoder, where / "encoder")
        os.remove(where / "encoder" / name)
        (where / "config.yaml").write_text(yaml.safe_dump(_config(fx, spec__encoder=str(where / "encoder"))))
        return ["train", "config.yaml"]

    return prepare


def _model(command: str, *args: str, damage: Callable[[Path], None] | None = None, files: dict | None = None
           ) -> Callable[[Path, Fixtures], list[str]]:
    """A predict / evaluate / export case on a copy of the model folder, optionally damaged; ``files`` are
    written in the case folder first (bytes, or None for a folder)."""

    def prepare(where: Path, fx: Fixtures) -> list[str]:
        model = where / "model"
        shutil.copytree(fx.model, model)
        if damage is not None:
            damage(model)
        for name, content in (files or {}).items():
            (where / name).mkdir() if content is None else (where / name).write_bytes(content)
        return [command, "model", *[a.format(texts=fx.texts, validation=fx.validation) for a in args]]

    return prepare


def _as_export(model: Path) -> None:
    """The model folder turned into what an export's version folder holds."""
    shutil.rmtree(model)
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01")


def _as_unfinished_run(model: Path) -> None:
    """The model folder turned into a run folder killed before its model was written."""
    shutil.rmtree(model)
    (model / "backup").mkdir(parents=True)
    (model / "history.csv").write_text("epoch,loss\n0,1.0\n")


def _truncate(model: Path) -> None:
    data = (model / "model.keras").read_bytes()
    (model / "model.keras").write_bytes(data[: len(data) // 2])


def _spec_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        spec = json.loads((model / "spec.json").read_text())
        edit(spec)
        (model / "spec.json").write_text(json.dumps(spec, indent=2))

    return damage


def _add_label(spec: dict) -> None:
    spec["groups"][0]["labels"].append("delta")


def _bad_json(model: Path) -> None:
    text = (model / "spec.json").read_text()
    (model / "spec.json").write_text(text.replace('"max_length"', "max_length", 1))


def _remove(name: str) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        target = model / name
        shutil.rmtree(target) if target.is_dir() else os.remove(target)

    return damage


def _remove_tokenizer_files(model: Path) -> None:
    for name in ("vocab.txt", "tokenizer.json"):
        os.remove(model / "tokenizer" / name)


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda model: (model / name).write_bytes(data)


def _zip_without_config(model: Path) -> None:
    with zipfile.ZipFile(model / "model.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")


ROW = '{"text": "alpha red", "topic": "alpha", "colour": ["red"]}\n'

def _prepare(*args: str, train: dict[str, bytes] | None = None, out_file: bool = False
             ) -> Callable[[Path, Fixtures], list[str]]:
    """A `mtkeras prepare` case: ``train`` files written in the case folder make data.train their pattern."""

    def prepare(where: Path, fx: Fixtures) -> list[str]:
        config = _config(fx)
        config["spec"]["groups"][0]["labels"] = ["alpha", "beta", "gamma"]  # so that a new label is unknown
        if train is not None:
            for name, content in train.items():
                (where / name).write_bytes(content)
            config["data"]["train"] = str(where / "part-*.jsonl")
        if out_file:
            (where / "out").write_text("x")
        (where / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["prepare", "config.yaml", "--out", "out", *args]

    return prepare


def _streamed(content: bytes) -> Callable[[Path, Fixtures], list[str]]:
    """A `mtkeras train` case on a pattern of two files, the second one ``content``."""

    def prepare(where: Path, fx: Fixtures) -> list[str]:
        (where / "part-0.jsonl").write_bytes(Path(fx.train).read_bytes())
        (where / "part-1.jsonl").write_bytes(content)
        config = _config(fx)
        config["spec"]["groups"][0]["labels"] = ["alpha", "beta", "gamma"]
        config["data"]["train"] = "part-*.jsonl"
        (where / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["train", "config.yaml"]

    return prepare


#: id -> (prepare, regexes the error line must match). Every case expects exit code 2 and nothing left behind.
CLI_CASES: dict[str, tuple[Callable[[Path, Fixtures], list[str]], tuple[str, ...]]] = {
    # --- config values: every key's type and range, checked before anything is read or written
    "batch_size 0": (_train(training__batch_size=0), (r"`training.batch_size`", r"received 0\b")),
    "batch_size a word": (_train(training__batch_size="eight"), (r"`training.batch_size`", r"'eight'")),
    "batch_size 1e9 (YAML string)": (_train_text(
        "spec: {{encoder: {encoder}, groups: [{{name: topic, kind: multiclass}}]}}\n"
        "data: {{train: {train}, validation: {validation}}}\ntraining: {{batch_size: 1e9}}\noutput: run\n"),
        (r"`training.batch_size`", r"'1e9'")),
    "learning_rate a word": (_train(training__learning_rate="fast"), (r"`training.learning_rate`", r"'fast'")),
    "learning_rate NaN": (_train(training__learning_rate=float("nan")), (r"`training.learning_rate`", r"nan")),
    "learning_rate negative": (_train(training__learning_rate=-0.001), (r"`training.learning_rate`", r"-0.001")),
    "learning_rate a bool": (_train(training__learning_rate=True), (r"`training.learning_rate`", r"True")),
    "epochs 0": (_train(training__epochs=0), (r"`training.epochs`", r"received 0")),
    "epochs 2.5": (_train(training__epochs=2.5), (r"`training.epochs`", r"2.5")),
    "warmup 1.5": (_train(training__warmup_proportion=1.5), (r"`training.warmup_proportion`", r"1.5")),
    "padding unknown": (_train(training__padding="dynamic"), (r"`training.padding`", r"'dynamic'", r"'bucketed'")),
    "mixed_precision unknown": (_train(training__mixed_precision="fp8"), (r"`training.mixed_precision`", r"'fp8'")),
    "distribute unknown": (_train(training__distribute="tpu"), (r"`training.distribute`", r"'tpu'")),
    "monitor no metric": (_train(training__monitor="val_accuracy"),
                          (r"`training.monitor`", r"'val_accuracy'", r"val_mean_roc_auc")),
    "monitor_mode unknown": (_train(training__monitor_mode="up"), (r"`training.monitor_mode`", r"'up'")),
    "train_rows negative": (_train(data__train_rows=-1), (r"`data.train_rows`", r"-1")),
    "label_delimiter empty": (_train(data__label_delimiter=""), (r"`data.label_delimiter`", r"''")),
    "floor 2": (_train(thresholds__floor=2), (r"`thresholds.floor`", r"received 2")),
    "unknown training key": (_train(training__epoch=3), (r"'training.epoch'", r"valid keys under training")),
    "unknown top-level key": (_train(trainig={"epochs": 1}), (r"'trainig'", r"valid keys")),
    "training not a mapping": (_train(training=3), (r"training", r"received 3")),
    # --- spec values
    "kind typo, labels omitted": (_train(spec__groups=[{"name": "topic", "kind": "multi-class"}]),
                                  (r"'topic'", r"`kind` 'multi-class'", r"'multiclass'")),
    "kind missing, labels omitted": (_train(spec__groups=[{"name": "topic"}]),
                                     (r"'topic': has no `kind`", r"'multiclass'")),
    "groups a mapping, not a list": (_train(spec__groups={"name": "topic", "kind": "multiclass"}),
                                     (r"`groups` must be a list of group mappings", r"received \{.*'name': 'topic'")),
    "groups empty": (_train(spec__groups=[]), (r"groups", r"\[\]")),
    "duplicate group names": (_train(spec__groups=[{"name": "topic", "kind": "multiclass"}] * 2),
                              (r"'topic'", r"[Dd]uplicate")),
    "max_length 0": (_train(spec__max_length=0), (r"max_length", r"received 0")),
    "max_windows 0": (_train(spec__max_windows=0), (r"max_windows", r"received 0")),
    "stride >= max_length": (_train(spec__max_windows=2, spec__stride=32), (r"stride", r"32")),
    "head_dropout 1": (_train(spec__head_dropout=1.0), (r"head_dropout", r"1.0")),
    "bag_dim negative": (_train(spec__bag_dim=-64), (r"bag_dim", r"-64", r">= 0")),
    "bag_buckets without a bag": (_train(spec__bag_buckets=4096), (r"bag_buckets", r"4096", r"bag_dim` > 0")),
    "bag_pooling unknown": (_train(spec__bag_dim=8, spec__bag_pooling="idf"),
                            (r"bag_pooling", r"'idf'", r"'mean', 'weighted'")),
    "loss_weighting unknown": (_train(spec__loss_weighting="learned"),
                               (r"loss_weighting", r"'learned'", r"'fixed', 'uncertainty'")),
    "temperature negative": (_train(spec__groups=[{"name": "topic", "kind": "multiclass", "temperature": -1}]),
                             (r"temperature", r"-1")),
    "class_weight unknown": (_train(spec__groups=[{"name": "topic", "kind": "multiclass", "class_weight": "balance"}]),
                             (r"class_weight", r"'balance'", r"'balanced'")),
    "loss unknown": (_train(spec__groups=[{"name": "colour", "kind": "multilabel", "loss": "hinge"}]),
                     (r"loss", r"'hinge'")),
    "focal_gamma negative": (_train(spec__groups=[{"name": "colour", "kind": "multilabel", "loss": "focal",
                                                   "focal_gamma": -1}]), (r"focal_gamma", r"-1")),
    "loss_weight negative": (_train(spec__groups=[{"name": "topic", "kind": "multiclass", "loss_weight": -2}]),
                             (r"loss_weight", r"-2")),
    "group column not in the data": (_train(spec__groups=[{"name": "size", "kind": "multiclass"}]),
                                     (r"'size'", r"no column", r"columns: \[.*'colour'.*'text'.*'topic'")),
    "group name a typo of its column": (_train(spec__groups=[{"name": "topci", "kind": "multiclass"}]),
                                        (r"no column 'topci'", r"did you mean 'topic'\?")),
    "label in data not in the spec": (_train(spec__groups=[{"name": "topic", "kind": "multiclass",
                                                            "labels": ["alpha", "beta"]}]),
                                      (r"'gamma'", r"line \d+", r"topic")),
    # --- files named by the config
    "config missing": (lambda where, fx: ["train", "nope.yaml"], (r"nope.yaml",)),
    "config is a folder": (lambda where, fx: (where / "c.yaml").mkdir() or ["train", "c.yaml"], (r"c.yaml",)),
    "config not YAML": (_train_text("spec: [unclosed\n"), (r"config.yaml", r"YAML")),
    "config a YAML list": (_train_text("- 1\n- 2\n"), (r"config.yaml", r"mapping", r"\[1, 2\]")),
    "config wrong extension": (_train_text("{{}}", name="config.txt"), (r"config.txt", r"\.yaml")),
    "config invalid UTF-8": (lambda where, fx: (where / "c.yaml").write_bytes(b"spec: \xff\n") and ["train", "c.yaml"],
                             (r"c.yaml", r"UTF-8")),
    "--set without =": (_train_set("training.epochs"), (r"--set", r"'training.epochs'")),
    "--set epochs a word": (_train_set("training.epochs=abc"), (r"`training.epochs`", r"'abc'")),
    "--set neighbours negative": (_train_set("spec.neighbours=-1"), (r"`neighbours`", r">= 0", r"received -1")),
    "--set neighbour_share 0": (_train_set("spec.neighbours=3", "spec.neighbour_share=0"),
                                (r"`neighbour_share`", r"\(0, 1\]", r"received 0")),
    "config sets memory_rows": (_train_set("spec.neighbours=3", "spec.memory_rows=7"),
                                (r"`spec.memory_rows`", r"\(7\)", r"written by training")),
    "train file missing": (_train(data__train="missing.jsonl"),
                           (r"`data.train` '.*missing.jsonl' does not exist", r"relative paths", r"shards folder")),
    "validation file missing": (_train(data__validation="missing.jsonl"),
                                (r"`data.validation` '.*missing.jsonl' does not exist", r"glob pattern")),
    "train file a folder": (_train_data("train", None), (r"bad.jsonl", r"folder|directory")),
    "train file empty": (_train_data("train", b""), (r"bad.jsonl", r"no rows|empty")),
    "train file invalid UTF-8": (_train_data("train", ROW.encode() + b'{"text": "\xff"}\n'),
                                 (r"bad.jsonl", r"line 2", r"UTF-8")),
    "train row without text": (_train_data("train", ROW.encode() + b'{"topic": "alpha"}\n'),
                               (r"bad.jsonl", r"line 2", r"'text'")),
    "validation not JSON lines": (_train_data("validation", ROW.encode() + b"alpha,red\n"),
                                  (r"bad.jsonl", r"line 2", r"JSON")),
    "csv without the text column": (_train_data("train", b"body,topic\nalpha,alpha\n", csv=True),
                                    (r"bad.csv", r"'text'")),
    "encoder folder missing": (_train(spec__encoder="no-such-encoder"), (r"no-such-encoder",)),
    "encoder without vocab": (_encoder_without("vocab.txt"), (r"encoder", r"vocab|tokenizer")),
    "encoder without weights": (_encoder_without("model.safetensors"), (r"encoder", r"weights|safetensors")),
    "output is a file": (lambda where, fx: (where / "out").write_text("x") and _train(output="out")(where, fx),
                         (r"`output`", r"out", r"not a folder|file")),
    "training diverges (non-finite loss)": (_train(training__learning_rate=1e12, training__head_lr_multiplier=1e6,
                                                   training__epochs=2),
                                            (r"non-finite", r"step \d+", r"loss")),
    # --- model folders
    "model folder missing": (lambda where, fx: ["predict", "nowhere", fx.texts], (r"nowhere",)),
    "model folder is a file": (_model("predict", "{texts}", damage=None, files={"m.txt": b"x"}),
                               (r"model",)),  # replaced below: run = a file
    "model.keras truncated": (_model("predict", "{texts}", damage=_truncate), (r"model.keras", r"not a|truncated")),
    "model.keras empty": (_model("predict", "{texts}", damage=_write("model.keras", b"")), (r"model.keras",)),
    "model.keras not a zip": (_model("evaluate", "{validation}", damage=_write("model.keras", b"hello")),
                              (r"model.keras", r"zip")),
    "model.keras zip, not a Keras model": (_model("predict", "{texts}", damage=_zip_without_config),
                                           (r"model.keras", r"Keras")),
    "spec.json not JSON": (_model("predict", "{texts}", damage=_bad_json), (r"spec.json", r"line \d+")),
    "spec.json labels != head size": (_model("predict", "{texts}", damage=_spec_edit(_add_label)),
                                      (r"spec.json", r"'topic'", r"4 labels", r"3")),
    "spec.json missing": (_model("predict", "{texts}", damage=_remove("spec.json")), (r"spec.json",)),
    "tokenizer files missing": (_model("predict", "{texts}", damage=_remove_tokenizer_files),
                                (r"tokenizer", r"vocabulary")),
    # --- predict / evaluate inputs
    # Added 2026-12-06 (seventh session): both once said only that model.keras is missing.
    "predict on a SavedModel export": (_model("predict", "{texts}", damage=_as_export),
                                       (r"model.keras", r"this is a SavedModel export: serve it")),
    "export an unfinished run": (_model("export", "--name", "m", damage=_as_unfinished_run),
                                 (r"model.keras", r"has not finished .* run the same `mtkeras train` command again")),
    "predict input missing": (_model("predict", "absent.txt"), (r"absent.txt",)),
    "predict input a folder": (_model("predict", "in", files={"in": None}), (r"'in'", r"folder|directory")),
    "predict input invalid UTF-8": (_model("predict", "in.txt", files={"in.txt": b"ok\nbad \xff\n"}),
                                    (r"in.txt", r"line 2", r"UTF-8")),
    "predict --jsonl not an object": (_model("predict", "in.jsonl", "--jsonl", files={"in.jsonl": b'["a"]\n'}),
                                      (r"in.jsonl", r"line 1", r"'text'")),
    "predict --batch-size 0": (_model("predict", "{texts}", "--batch-size", "0"), (r"batch.size", r"received 0")),
    "evaluate data missing": (_model("evaluate", "absent.jsonl"), (r"absent.jsonl",)),
    "evaluate data a folder": (_model("evaluate", "d.jsonl", files={"d.jsonl": None}), (r"d.jsonl",)),
    "evaluate unknown label": (_model("evaluate", "d.jsonl", files={
        "d.jsonl": (ROW + '{"text": "x", "topic": "omega", "colour": []}\n').encode()}),
        (r"d.jsonl", r"line 2", r"'omega'")),
    "evaluate --output is a file": (_model("evaluate", "{validation}", "--output", "o", files={"o": b"x"}),
                                    (r"'o'", r"not a folder|file")),
    # --- export options
    "export --quantize without --tflite": (_model("export", "--name", "m", "--quantize", "dynamic"),
                                           (r"--quantize", r"--tflite or --onnx")),
    "export --onnx --quantize float16": (_model("export", "--name", "m", "--onnx", "--quantize", "float16"),
                                         (r"--quantize float16", r"ONNX", r"--quantize dynamic")),
    "export --precision bf16": (_model("export", "--name", "m", "--precision", "bf16"),
                                (r"--precision", r"'bf16'", r"'float32', 'bfloat16', 'float16'")),
    "predict --precision half": (_model("predict", "{texts}", "--precision", "half"),
                                 (r"--precision", r"'half'", r"'float32', 'bfloat16', 'float16', 'auto'")),
    "export --version too large": (_model("export", "--name", "m", "--version", "99999999999999999999"),
                                   (r"version", r"99999999999999999999", r"int64|9223372036854775807")),
    "export --version 0": (_model("export", "--name", "m", "--version", "0"), (r"version", r"received 0\b")),
    "export --version -3": (_model("export", "--name", "m", "--version", "-3"), (r"version", r"-3")),
    "export --version a word": (_model("export", "--name", "m", "--version", "one"), (r"--version", r"'one'")),
    "export --output-dir is a file": (_model("export", "--name", "m", "--output-dir", "f", files={"f": b"x"}),
                                      (r"'f'", r"not a folder|file")),
    "export --name with a slash": (_model("export", "--name", "a/b"), (r"name", r"'a/b'")),
    "export a damaged model": (_model("export", "--name", "m", damage=_write("model.keras", b"junk")),
                               (r"model.keras",)),
    # --- data read from files: mtkeras prepare, a pattern in data.train
    "prepare --out is a file": (_prepare(out_file=True), (r"--out", r"'out'", r"not a folder|file")),
    "prepare --rows-per-shard 0": (_prepare("--rows-per-shard", "0"), (r"--rows-per-shard", r"received 0\b")),
    "prepare pattern matches nothing": (_prepare(train={}), (r"data.train", r"part-\*.jsonl", r"matches no file")),
    "prepare unknown label": (_prepare(train={"part-0.jsonl": (ROW + '{"text": "x", "topic": "omega"}\n').encode()}),
                              (r"part-0.jsonl", r"line 2", r"'omega'")),
    "prepare row cut off mid-line": (_prepare(train={"part-0.jsonl": (ROW + '{"text": "x", "top').encode()}),
                                     (r"part-0.jsonl", r"line 2", r"ends mid-row", r"data.truncated")),
    "streamed train unknown label": (_streamed((ROW + ROW + '{"text": "y", "topic": "omega", "colour": []}\n')
                                               .encode()), (r"part-1.jsonl", r"line 3", r"'omega'")),
    "streamed train without text": (_streamed((ROW + '{"body": "y", "topic": "alpha"}\n').encode()),
                                    (r"part-1.jsonl", r"line 2", r"'text'")),
    "streamed train suggest_loss_weights": (
        lambda where, fx: _streamed(ROW.encode())(where, fx) + ["--set", "training.suggest_loss_weights_steps=3"],
        (r"`training.suggest_loss_weights_steps`", r"\(3\)", r"in memory")),
    "streamed train with a memory": (
        lambda where, fx: _streamed(ROW.encode())(where, fx) + ["--set", "spec.neighbours=3"],
        (r"`spec.neighbours`", r"\(3\)", r"in memory")),
    # --- the command line itself
    "no command": (lambda where, fx: [], (r"command|required",)),
    "unknown command": (lambda where, fx: ["serve"], (r"'serve'",)),
}


def _model_is_a_file(where: Path, fx: Fixtures) -> list[str]:
    (where / "model").write_text("x")
    return ["predict", "model", fx.texts]


CLI_CASES["model folder is a file"] = (_model_is_a_file, (r"'model'", r"not a folder|file"))
#: The existing version the "exists" case refuses to replace.
CLI_CASES["export over an existing version"] = (
    _model("export", "--name", "m", files={"saved_models": None, "saved_models/m": None, "saved_models/m/1": None,
                                           "saved_models/m/1/saved_model.pb": b"x"}),
    (r"already exists", r"overwrite"))


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, tiny_folder, tiny_spec, tiny_tokenizer) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("mistakes")
    shared = root / "shared"
    shared.mkdir()
    mtk.keras.utils.set_random_seed(3)
    spec = tiny_spec
    model = mtk.build_model(spec, bert_config=tiny_config())
    fx = Fixtures(
        encoder=tiny_folder,
        train=write_jsonl(shared / "train.jsonl", synthetic_records(64, seed=0)),
        validation=write_jsonl(shared / "validation.jsonl", synthetic_records(32, seed=1)),
        model=mtk.save_model(model, spec, shared / "model", tokenizer=tiny_tokenizer),
        texts=str(shared / "texts.txt"),
    )
    Path(fx.texts).write_text("alpha red\nbeta\n", encoding="utf-8")
    cases = []
    for number, (case_id, (prepare, _)) in enumerate(CLI_CASES.items()):
        where = root / f"case{number:03d}"
        where.mkdir()
        cases.append({"id": case_id, "argv": prepare(where, fx), "cwd": str(where)})
    (root / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    subprocess.run([sys.executable, str(HERE / "mistakes_job.py"), str(root / "cases.json"),
                    str(root / "results.json")], check=True, cwd=root, timeout=900)
    return {r["id"]: r for r in json.loads((root / "results.json").read_text())}


@pytest.mark.parametrize("case_id", list(CLI_CASES))
def test_cli_mistake_is_one_clear_line_and_leaves_nothing(cli_results, case_id):
    result = cli_results[case_id]
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert result["traceback"] is None, result["traceback"]
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert result["code"] == 2, result
    last = lines[-1] if lines else ""
    assert last.startswith("mtkeras") and ": error: " in last, result["stderr"]
    for pattern in CLI_CASES[case_id][1]:
        assert __import__("re").search(pattern, last), f"{pattern!r} not in {last!r}"
    assert result["left"] == [], f"left behind: {result['left']}"


# --- API --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(tiny_spec, tiny_tokenizer):
    mtk.keras.utils.set_random_seed(4)
    return mtk.Predictor(mtk.build_model(tiny_spec, bert_config=tiny_config()), tiny_spec, tiny_tokenizer,
                         jit_compile=False)


class _Frame:
    """Stands in for a pandas DataFrame (has columns and to_dict) without importing pandas."""

    columns = ["text"]

    def __iter__(self):
        return iter(self.columns)

    def to_dict(self, orient="records"):
        return [{"text": "alpha"}]


API_INPUTS = {
    "dict": ({"text": "alpha"}, TypeError, r"received a dict \(iterating it gives its keys\)"),
    "DataFrame": (_Frame(), TypeError, r"DataFrame.*df\[\"text\"\]"),
    "set": ({"alpha", "beta"}, TypeError, r"received a set: it has no order"),
    "bytes": (b"alpha", TypeError, r"single bytes"),
    "bytearray": (bytearray(b"alpha"), TypeError, r"bytearray"),
    "bare string": ("alpha", TypeError, r"single str 'alpha'.*\[text\]"),
    "an int in the list": (["alpha", 3], TypeError, r"`texts\[1\]` is 3 \(int\)"),
    "None in the list": ([None], TypeError, r"`texts\[0\]` is None"),
    "not iterable": (3, TypeError, r"received 3 \(int\)"),
}


@pytest.mark.parametrize("name", list(API_INPUTS))
def test_predict_refuses_inputs_by_type(predictor, name):
    value, error, message = API_INPUTS[name]
    with pytest.raises(error, match=message):
        predictor.predict(value)
    with pytest.raises(error, match=message):
        list(predictor.predict_iter(value))


def test_predict_takes_numpy_and_pandas_string_arrays(predictor):
    pandas = pytest.importorskip("pandas")
    expected = predictor.predict(["alpha red", "beta"])
    assert predictor.predict(np.array(["alpha red", "beta"])) == expected
    assert predictor.predict(pandas.Series(["alpha red", "beta"])) == expected
    assert predictor.predict(pandas.DataFrame({"text": ["alpha red", "beta"]})["text"]) == expected
    with pytest.raises(TypeError, match=r"DataFrame.*df\[\"text\"\]"):
        predictor.predict(pandas.DataFrame({"text": ["alpha red"]}))


DECODE_MISTAKES = {
    "a group missing": (lambda p: {"topic": p["topic"]}, r"no outputs for groups \['colour'\]"),
    "one column too few": (lambda p: {**p, "topic": p["topic"][:, :2]},
                           r"'topic'.*shape \(2, 2\).*\(rows, 3\)"),
    "rows differ between groups": (lambda p: {**p, "colour": p["colour"][:1]}, r"'colour'.*1 rows.*2"),
    "not numbers": (lambda p: {**p, "topic": np.array([["a", "b", "c"]] * 2)}, r"'topic'.*numbers"),
}


@pytest.mark.parametrize("name", list(DECODE_MISTAKES))
def test_decode_checks_shapes_against_the_spec(predictor, name):
    probs = predictor.predict_proba(["alpha red", "beta"])
    change, message = DECODE_MISTAKES[name]
    with pytest.raises(ValueError, match=message):
        predictor.decode(change(probs))


#: Public functions given a path (or a string) where they take a model or a spec: each names itself, the
#: argument and the value, and says how to load one.
WRONG_OBJECTS = {
    "compile_model(path)": (lambda m, s, t: mtk.compile_model("runs/x", s),
                            r"compile_model: `model` must be a Keras model; for a model or run folder: "
                            r"mtk.load_model\(path\), received 'runs/x' \(str\)"),
    "save_model(path)": (lambda m, s, t: mtk.save_model("runs/x", s, "unused", t),
                         r"save_model: `model` must be a Keras model; .*received 'runs/x' \(str\)"),
    "add_memory(path)": (lambda m, s, t: mtk.add_memory("runs/x", s, [{"text": "alpha", "topic": "alpha"}]),
                         r"add_memory: `model` must be a Keras model; for a model or run folder: "
                         r"mtk.load_model\(path\), received 'runs/x' \(str\)"),
    "add_memory(spec=None)": (lambda m, s, t: mtk.add_memory(m, None, [{"text": "alpha"}]),
                              r"add_memory: `spec` must be a TaskSpec, received None \(NoneType\)"),
    "compile_model(spec=dict)": (lambda m, s, t: mtk.compile_model(m, {"groups": []}),
                                 r"compile_model: `spec` must be a TaskSpec \(from a mapping: TaskSpec.from_dict"),
    "suggest_loss_weights(path)": (lambda m, s, t: mtk.suggest_loss_weights("runs/x", []),
                                   r"suggest_loss_weights: `spec` must be a TaskSpec, received 'runs/x' \(str\)"),
    "training_callbacks(path)": (lambda m, s, t: mtk.training_callbacks("runs/x", "run"),
                                 r"training_callbacks: `spec` must be a TaskSpec, received 'runs/x' \(str\)"),
}


@pytest.mark.parametrize("name", list(WRONG_OBJECTS))
def test_functions_given_a_path_for_a_model_or_spec_say_how_to_load_one(tiny_spec, tiny_tokenizer, name):
    call, message = WRONG_OBJECTS[name]
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    with pytest.raises(TypeError, match=message):
        call(model, tiny_spec, tiny_tokenizer)
    assert not os.path.exists("unused")


def test_evaluate_refuses_no_rows_and_a_path(predictor):
    with pytest.raises(ValueError, match=r"evaluate: `records` is empty; a report needs at least one row"):
        mtk.evaluate(predictor, [])
    with pytest.raises(TypeError, match=r"`records` must be a list of rows .*read a file with "
                                        r"mtk.read_records\(path, spec\), received 'valid.jsonl' \(str\)"):
        mtk.evaluate(predictor, "valid.jsonl")


@pytest.mark.parametrize(("damage", "message"), [
    (_write("model.keras", b"hello"), r"model.keras.*not a zip"),
    (_truncate, r"model.keras.*(not a zip|truncated)"),
    (_zip_without_config, r"model.keras.*not a Keras model"),
    (_bad_json, r"spec.json.*not valid JSON.*line \d+"),
    (_spec_edit(_add_label), r"spec.json.*'topic' lists 4 labels.*3"),
    (_remove_tokenizer_files, r"tokenizer.*no tokenizer vocabulary"),
])
def test_load_model_names_the_broken_file(tiny_spec, tiny_tokenizer, tmp_path, damage, message):
    mtk.keras.utils.set_random_seed(5)
    folder = Path(mtk.save_model(mtk.build_model(tiny_spec, bert_config=tiny_config()), tiny_spec,
                                 tmp_path / "m", tokenizer=tiny_tokenizer))
    damage(folder)
    with pytest.raises((ValueError, OSError), match=message):
        mtk.load_model(folder)


def test_a_non_finite_loss_stops_training_at_that_step_and_writes_no_checkpoint(tmp_path):
    # The full run (`mtkeras train` with a diverging learning rate, nothing left behind) is a command-line case.
    inputs = mtk.keras.Input((2,))
    model = mtk.keras.Model(inputs, {"a": mtk.keras.layers.Dense(1, name="a")(inputs),
                                     "b": mtk.keras.layers.Dense(1, name="b")(inputs)})
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mse"})
    x = np.ones((8, 2), np.float32)
    y = {"a": np.ones((8, 1), np.float32), "b": np.full((8, 1), np.inf, np.float32)}
    best = mtk.training.BestCheckpoint(str(tmp_path / "best.weights.h5"), monitor="loss", mode="min")
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 1 \(epoch 1, batch 1\); groups whose "
                                                 r"loss is not finite: \['b'\]"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0,
                  callbacks=[mtk.training.StopOnNonFiniteLoss(["a", "b"]), best])
    assert not (tmp_path / "best.weights.h5").exists()
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mse"})
    with pytest.raises(FloatingPointError, match=r"`loss` is (nan|inf) after epoch 1: .*not kept"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[best])
    assert not (tmp_path / "best.weights.h5").exists()

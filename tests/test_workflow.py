"""Config, callbacks, the CLI end to end and resuming a killed run, on the tiny BERT."""

import json
import os

import numpy as np
import pytest
import yaml
from conftest import write_jsonl

import mtkeras as mtk
from mtkeras.cli import main as cli_main
from mtkeras.precision import model_precision, resolve_precision

# --- config ----------------------------------------------------------------------------


def test_config_defaults_paths_and_overrides(config_file, tmp_path):
    config = mtk.load_config(config_file, ["training.epochs=1", "thresholds.tune=false", "data.train_rows=10"])
    assert config["training"]["epochs"] == 1 and config["thresholds"]["tune"] is False
    assert config["data"]["train"] == str(tmp_path / "train.jsonl")  # relative to the config file
    assert config["output"] == str(tmp_path / "run")
    assert config["training"]["batch_size"] == 16 and config["training"]["weight_decay"] == 0.01
    json_path = tmp_path / "config.json"
    json_path.write_text(json.dumps(yaml.safe_load(config_file.read_text())), encoding="utf-8")
    assert mtk.load_config(json_path)["spec"] == mtk.load_config(config_file)["spec"]


def test_config_errors(config_file, tmp_path):
    base = yaml.safe_load(config_file.read_text())
    # train() takes a path or a mapping and checks it as load_config does (once a TypeError or a KeyError).
    with pytest.raises(FileNotFoundError, match=r"Config file '.*missing.yaml' does not exist"):
        mtk.train(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"Config `data.validation` is required: a path, received None"):
        mtk.train({**base, "data": {"train": "t.jsonl"}})
    with pytest.raises(TypeError, match=r"`config` must be a config file's path or a config mapping "
                                        r"\(mtk.load_config\(path\)\), received 3 \(int\)"):
        mtk.train(3)
    assert not (tmp_path / "run").exists()
    with pytest.raises(TypeError, match=r"`overrides` must be a list of 'key.sub=value' strings, received a single "
                                        r"str 'training.epochs=2'; wrap it in a list"):  # once "received 't'"
        mtk.load_config(config_file, "training.epochs=2")
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['training.epoch'\]; valid keys under training: "
                                         r"\['batch_size', 'beta_2', 'distribute'"):
        mtk.config.parse_config({**base, "training": {"epoch": 3}})
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['outputs'\]; valid keys: \['data', 'output'"):
        mtk.config.parse_config({**base, "outputs": "x"})
    with pytest.raises(ValueError, match=r"Config `data.validation` is required: a path, received None"):
        mtk.config.parse_config({**base, "data": {"train": "t.jsonl"}})
    with pytest.raises(ValueError, match=r"Config `spec` is required"):
        mtk.config.parse_config({k: v for k, v in base.items() if k != "spec"})
    with pytest.raises(ValueError, match=r"Config `thresholds.floor` must be a number in \[0, 1\), received 1.5"):
        mtk.config.parse_config({**base, "thresholds": {"floor": 1.5}})
    with pytest.raises(ValueError, match=r"Config `training.epochs` must be an integer >= 1, received 0"):
        mtk.config.parse_config({**base, "training": {"epochs": 0}})
    with pytest.raises(ValueError, match=r"`training.warmup_proportion` must be a number in \[0, 1\), received 1"):
        mtk.config.parse_config({**base, "training": {"warmup_proportion": 1}})
    with pytest.raises(ValueError, match=r"`training.padding` must be one of \['bucketed', 'bucketed_fixed', "
                                         r"'longest', 'max_length'\], received 'dynamic'"):
        mtk.config.parse_config({**base, "training": {"padding": "dynamic"}})
    with pytest.raises(ValueError, match=r"`training.jit_compile` must be true or false, received 'yes'"):
        mtk.config.parse_config({**base, "training": {"jit_compile": "yes"}})
    with pytest.raises(ValueError, match=r"`training.mixed_precision` must be one of \[None, 'mixed_float16', "
                                         r"'mixed_bfloat16', 'auto'\], received 'bf16'"):
        mtk.config.parse_config({**base, "training": {"mixed_precision": "bf16"}})
    with pytest.raises(TypeError, match=r"Config training. must be a mapping, received 3"):
        mtk.config.parse_config({**base, "training": 3})


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("training", "epochs", True, r"`training.epochs` must be an integer >= 1, received True"),
        ("training", "batch_size", 0, r"`training.batch_size` must be an integer >= 1, received 0"),
        ("training", "batch_size", "eight", r"`training.batch_size` must be an integer >= 1, received 'eight'"),
        ("training", "batch_size", 1e9, r"`training.batch_size` must be an integer >= 1, received 1000000000.0"),
        ("training", "learning_rate", float("nan"), r"`training.learning_rate` must be a number > 0, received nan"),
        ("training", "learning_rate", -0.001, r"`training.learning_rate` must be a number > 0, received -0.001"),
        ("training", "learning_rate", "fast", r"`training.learning_rate` must be a number > 0, received 'fast'"),
        ("training", "beta_2", 1.5, r"`training.beta_2` must be a number in \[0, 1\), received 1.5"),
        ("training", "head_lr_multiplier", 0, r"`training.head_lr_multiplier` must be a number > 0, received 0"),
        ("training", "layer_lr_decay", 0, r"`training.layer_lr_decay` must be a number in \(0, 1\], received 0"),
        ("training", "seed", -1, r"`training.seed` must be an integer >= 0, received -1"),
        ("training", "monitor_mode", "up", r"`training.monitor_mode` must be one of \['max', 'min'\], received 'up'"),
        ("training", "distribute", True, r"`training.distribute` must be one of \[None, 'mirrored', 'multi_worker'\]"),
        ("data", "drop_empty_texts", "no", r"`data.drop_empty_texts` must be true or false, received 'no'"),
        ("data", "train_rows", -5, r"`data.train_rows` must be an integer >= 0, received -5"),
        ("thresholds", "min_positives", 0, r"`thresholds.min_positives` must be an integer >= 1, received 0"),
        ("thresholds", "scope", "labels",
         r"`thresholds.scope` must be one of \['label', 'group', 'auto'\], received 'labels'"),
        ("thresholds", "tune", 1, r"`thresholds.tune` must be true or false, received 1"),
        ("thresholds", "calibrate", "yes", r"`thresholds.calibrate` must be true or false, received 'yes'"),
    ],
)
def test_config_checks_every_value(config_file, section, key, value, message):
    base = yaml.safe_load(config_file.read_text())
    with pytest.raises(ValueError, match="Config " + message):
        mtk.config.parse_config({**base, section: {**base.get(section, {}), key: value}})


def test_config_errors_files(config_file, tmp_path):
    base = yaml.safe_load(config_file.read_text())
    with pytest.raises(TypeError, match=r"Config training. must be a mapping, received 3"):
        mtk.config.parse_config({**base, "training": 3})
    with pytest.raises(ValueError, match=r"--set expects key.sub=value, received 'epochs'"):
        mtk.load_config(config_file, ["epochs"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML"):
        mtk.load_config(bad)
    with pytest.raises(ValueError, match=r"unknown config format; accepted extensions: .yaml, .yml, .json"):
        mtk.load_config(tmp_path / "train.jsonl")


def test_thresholds_outside_unit_interval_in_a_spec(config_file):
    base = yaml.safe_load(config_file.read_text())
    base["spec"]["groups"][1]["labels"] = ["red", "blue", "green", "yellow"]
    base["spec"]["groups"][1]["thresholds"] = [0.5, 1.2, 0.5, 0.5]
    config = mtk.config.parse_config(base)
    with pytest.raises(ValueError, match=r"threshold for label 'blue' must be a number in \(0, 1\), received 1.2"):
        mtk.workflow.spec_from_config(config, [{"topic": "alpha"}, {"topic": "beta"}])


def test_a_group_without_labels_says_why_none_were_found():
    groups = [{"name": "colour", "kind": "multilabel"}]
    with pytest.raises(ValueError, match=r"'colour' has no `labels` and the data's column 'colour' is empty in every"):
        mtk.workflow.labels_from_data(groups, [{"text": "a", "colour": []}, {"text": "b", "colour": None}])
    with pytest.raises(ValueError, match=r"no column 'color' \(did you mean 'colour'\?\); the data's columns: "
                                         r"\['colour', 'text'\]"):
        mtk.workflow.labels_from_data([{"name": "color", "kind": "multilabel"}], [{"text": "a", "colour": ["red"]}])
    with pytest.raises(ValueError, match=r"no column 'size'; the data's columns: \['text'\]"):
        mtk.workflow.labels_from_data([{"name": "size", "kind": "multiclass"}], [{"text": "a"}])


# --- callbacks -----------------------------------------------------------------------------


def test_mean_over_heads_and_best_checkpoint(tiny_model, tmp_path):
    logs = {"topic_roc_auc": 0.6, "colour_roc_auc": 0.8, "val_topic_roc_auc": 0.5, "val_colour_roc_auc": 0.7}
    mtk.training.MeanOverHeads(["topic", "colour"]).on_epoch_end(0, logs)
    assert logs["mean_roc_auc"] == pytest.approx(0.7) and logs["val_mean_roc_auc"] == pytest.approx(0.6)

    single = {"roc_auc": 0.9, "val_roc_auc": 0.8}  # Keras does not prefix a single output's metrics
    mtk.training.MeanOverHeads(["topic"]).on_epoch_end(0, single)
    assert single["val_mean_roc_auc"] == 0.8 and single["mean_roc_auc"] == 0.9

    path = str(tmp_path / "best.weights.h5")
    checkpoint = mtk.training.BestCheckpoint(path)
    checkpoint.set_model(tiny_model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0, {"val_mean_roc_auc": 0.6})
    checkpoint.on_epoch_end(1, {"val_mean_roc_auc": 0.55})
    assert checkpoint.best == 0.6 and checkpoint.best_epoch == 0
    resumed = mtk.training.BestCheckpoint(path)  # a restarted run remembers the best so far
    resumed.set_model(tiny_model)
    resumed.on_train_begin()
    assert resumed.best == 0.6 and resumed.best_epoch == 0
    with pytest.raises(KeyError, match=r"BestCheckpoint monitors 'val_mean_roc_auc', which is not in the epoch logs"):
        resumed.on_epoch_end(2, {"loss": 1.0})
    with pytest.raises(ValueError, match=r"`mode` must be one of \['max', 'min'\], received 'up'"):
        mtk.training.BestCheckpoint(path, mode="up")
    with pytest.raises(ValueError, match=r"`patience` must be an integer >= 1 or None, received 0"):
        mtk.training.BestCheckpoint(path, patience=0)


def test_epoch_predictions_keep_and_score_each_epoch(tiny_model, tmp_path):
    given = []

    def predict(model):
        given.append(model)
        return {"topic": np.full((2, 3), 1 / 3, dtype=np.float32)}

    callback = mtk.training.EpochPredictions(str(tmp_path / "p"), predict, score=lambda probs: probs["topic"].sum())
    callback.set_model(tiny_model)
    logs = {"val_loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert given == [tiny_model] and logs == {"val_loss": 1.0, "val_selection_score": pytest.approx(2.0)}
    assert mtk.training.load_epoch_predictions(str(tmp_path / "p"))[1]["topic"].shape == (2, 3)


def test_training_callbacks_choose_their_monitor(tiny_spec, tiny_tokenizer, tmp_path):
    def monitor_of(callbacks):
        return callbacks[-1].monitor, callbacks[-1].mode

    records = [{"text": "alpha red", "topic": "alpha", "colour": ["red"]}]
    given = mtk.training_callbacks(tiny_spec, str(tmp_path), validation_records=records, tokenizer=tiny_tokenizer)
    assert monitor_of(given) == ("val_selection_score", "max")
    assert isinstance(given[-2], mtk.training.EpochPredictions)  # scores the epoch before the checkpoint reads it
    assert monitor_of(mtk.training_callbacks(tiny_spec, str(tmp_path))) == ("val_mean_roc_auc", "max")
    regression = mtk.TaskSpec(encoder=tiny_spec.encoder, max_length=32,
                              groups=[mtk.LabelGroup("count", "regression", labels=["count"])])
    assert monitor_of(mtk.training_callbacks(regression, str(tmp_path))) == ("val_loss", "min")
    with pytest.raises(ValueError, match=r"`monitor='val_selection_score'` is computed from validation "
                                         r"probabilities: pass `validation_records`"):
        mtk.training_callbacks(tiny_spec, str(tmp_path), monitor="val_selection_score")


def test_early_stopping_counts_from_the_best_epoch_across_restarts(tiny_model, tmp_path):
    path = str(tmp_path / "best.weights.h5")
    first = mtk.training.BestCheckpoint(path, patience=2)
    first.set_model(tiny_model)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_mean_roc_auc": 0.7})
    first.on_epoch_end(1, {"val_mean_roc_auc": 0.6})
    assert not tiny_model.stop_training  # one epoch without improvement
    restarted = mtk.training.BestCheckpoint(path, patience=2)  # the process died here and was restarted
    restarted.set_model(tiny_model)
    restarted.on_train_begin()
    restarted.on_epoch_end(2, {"val_mean_roc_auc": 0.65})
    assert tiny_model.stop_training  # two epochs since the best (epoch 0), counting the one before the restart


# --- CLI end to end ----------------------------------------------------------------------------


def test_cli_train_evaluate_predict(config_file, tmp_path, capsys, monkeypatch):
    # All 6 epochs: on this toy task the mean ROC-AUC is ~0.99 from epoch 0, so early stopping could keep a
    # best epoch whose accuracy is still low.
    assert cli_main(["train", str(config_file), "--verbose", "0", "--set", "training.early_stopping_patience=0"]) == 0
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["best.weights.h5", "best.weights.h5.json", "config.json", "history.csv",
                                       "metrics.json", "model", "reliability.png", "roc_curves.png",
                                       "validation_predictions"]
    assert sorted(os.listdir(run / "validation_predictions")) == [f"epoch_{e}.npz" for e in range(1, 7)]
    metrics = json.loads((run / "metrics.json").read_text())
    # The honest report: each half of validation scored with the epoch, temperatures and thresholds of the other.
    honest = metrics["cross_fitted"]
    assert honest["candidates"] == [f"epoch {e}" for e in range(1, 7)] and len(honest["folds"]) == 2
    assert sum(fold["rows"] for fold in honest["folds"]) == 48
    assert honest["summary"]["topic/accuracy"] > 0.8 and "colour/ece_uncalibrated" in honest["summary"]
    topic = metrics["validation"]["groups"]["topic"]
    assert topic["roc_auc_ovr_macro"] > 0.9 and topic["accuracy"] > 0.9  # the topic word is in the text (chance 1/3)
    spec = mtk.TaskSpec.load(run / "model" / "spec.json")
    assert spec.group("colour").labels == ("blue", "green", "red", "yellow")  # taken from the data, sorted
    assert spec.group("colour").temperature is not None and spec.group("topic").temperature is not None
    used = json.loads((run / "config.json").read_text())
    model, _, _ = mtk.load_model(run / "model")  # trained in what "auto" picks here (bfloat16 with its units)
    assert used["training"]["mixed_precision"] == "auto" and model_precision(model) == resolve_precision("auto")
    assert used["training"]["epochs"] == 6 and used["data"]["train"] == str(tmp_path / "train.jsonl")
    # The deployed epoch is the one the cross-fitted report's rule (the selection score) picks on all rows.
    best = json.loads((run / "best.weights.h5.json").read_text())
    validation = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    raw = spec.with_temperatures({"topic": None, "colour": None})
    targets = mtk.encode_targets(raw, validation)
    epochs = mtk.training.load_epoch_predictions(run / "validation_predictions")
    scores = {epoch: mtk.evaluation.selection_score(raw, mtk.evaluation_report(raw, probs, *targets))
              for epoch, probs in epochs.items()}
    assert best["monitor"] == "val_selection_score" and best["epoch"] + 1 == max(scores, key=scores.get)
    assert best["best"] == pytest.approx(max(scores.values()), abs=1e-6)
    with open(run / "history.csv", encoding="utf-8") as handle:
        logged = [float(row["val_selection_score"]) for row in __import__("csv").DictReader(handle)]
    assert logged == pytest.approx([scores[epoch] for epoch in sorted(scores)], abs=1e-6)
    capsys.readouterr()

    assert cli_main(["evaluate", str(run), str(tmp_path / "validation.jsonl"), "--output", str(tmp_path / "ev")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["topic/accuracy"] == pytest.approx(metrics["validation"]["groups"]["topic"]["accuracy"], abs=1e-4)
    assert (tmp_path / "ev" / "roc_curves.png").exists()

    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("red alpha program\nbeta blue\n"))
    assert cli_main(["predict", str(run)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(line) for line in lines] == [{"topic", "colour"}] * 2
    assert lines[0]["topic"] == "alpha" and lines[1]["topic"] == "beta"

    texts = tmp_path / "texts.jsonl"
    write_jsonl(texts, [{"text": "gamma"}])
    assert cli_main(["predict", str(run), str(texts), "--jsonl"]) == 0
    assert json.loads(capsys.readouterr().out)["topic"] == "gamma"

    assert cli_main(["train", str(config_file)]) == 2  # a finished run is not overwritten
    assert "already holds a finished run" in capsys.readouterr().err


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_train_with_suggested_loss_weights(config_file, tmp_path):
    config = mtk.load_config(config_file, ["training.epochs=1", "training.suggest_loss_weights_steps=2",
                                           "thresholds.tune=false"])
    run = mtk.train(config, verbose=0)
    suggestion = json.loads((tmp_path / "run" / "loss_weights.json").read_text())
    spec = mtk.TaskSpec.load(os.path.join(run, "model", "spec.json"))
    assert {g.name: g.loss_weight for g in spec.groups} == pytest.approx(suggestion["weights"])
    assert "validation_default_thresholds" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_train_with_xla_and_bfloat16_from_config(config_file, tmp_path):
    config = mtk.load_config(config_file, ["training.epochs=1", "training.jit_compile=true",
                                           "training.mixed_precision=mixed_bfloat16", "thresholds.tune=false"])
    assert config["training"]["jit_compile"] is True
    run = mtk.train(config, verbose=0)
    predictor = mtk.Predictor.from_folder(os.path.join(run, "model"))
    assert predictor.model.get_layer("encoder").compute_dtype == "bfloat16"
    probs = predictor.predict_proba(["red green", "blue"])
    assert all(np.isfinite(p).all() and p.dtype == np.float32 for p in probs.values())


def test_train_a_single_group(config_file, tmp_path):
    config = mtk.load_config(config_file, ["training.epochs=1"])
    config["spec"]["groups"] = config["spec"]["groups"][:1]
    run = mtk.train(config, verbose=0)
    assert json.loads((tmp_path / "run" / "best.weights.h5.json").read_text())["monitor"] == "val_selection_score"
    assert set(json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]["groups"]) == {"topic"}
    assert os.path.isdir(os.path.join(run, "model"))


def test_cli_reports_bad_config_clearly(config_file, capsys):
    assert cli_main(["train", str(config_file), "--set", "training.epoch=1"]) == 2
    assert "Unknown config key(s) ['training.epoch']" in capsys.readouterr().err


# --- resuming (killed runs: tests/test_killed.py) -------------------------------------------


def test_resuming_with_another_task_is_refused(config_file, tmp_path):
    run = tmp_path / "run"
    os.makedirs(run / "backup")  # as a killed run leaves it
    (run / "config.json").write_text(json.dumps(mtk.load_config(config_file)))
    changed = mtk.load_config(config_file, ["spec.max_length=16"])
    with pytest.raises(ValueError, match=r"holds an interrupted run whose config differs in \['spec'\]"):
        mtk.train(changed, verbose=0)

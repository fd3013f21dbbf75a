"""Whole runs: train from a config into a run folder, evaluate and predict from one."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from mtkeras._compat import keras
from mtkeras._io import write_json
from mtkeras.data import encode_targets, fit_target_stats, make_dataset, read_records
from mtkeras.encoder import load_tokenizer
from mtkeras.evaluate import evaluation_report, plot_roc_curves, summary, tune_thresholds
from mtkeras.kinds import KINDS
from mtkeras.model import build_model
from mtkeras.predict import Predictor
from mtkeras.saving import RUN_MODEL_DIR, save_model
from mtkeras.spec import TaskSpec
from mtkeras.training import (
    BEST_WEIGHTS,
    compile_model,
    is_chief,
    make_strategy,
    resumed_epoch,
    suggest_loss_weights,
    training_callbacks,
)

logger = logging.getLogger("mtkeras")



def labels_from_data(groups: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Group dicts with missing ``labels`` filled in from the data: every label seen, sorted.

    A regression group's labels are its target names: a group without them gets
    one target named like the group.
    """
    filled = []
    for raw in groups:
        group = dict(raw)
        kind = KINDS.get(group.get("kind"))
        if group.get("labels") is None and kind is not None and kind.collect_labels is None:
            group["labels"] = [group.get("name")]
        elif group.get("labels") is None and kind is not None:
            column = group.get("column") or group.get("name")
            seen: set[str] = set()
            for record in records:
                value = record.get(column)
                if value is not None:
                    seen.update(kind.collect_labels(value))
            if not seen:
                raise ValueError(
                    f"Group {group.get('name')!r} has no `labels` and the data has none in "
                    f"column {column!r}; list its labels in the spec."
                )
            group["labels"] = sorted(seen)
        filled.append(group)
    return filled


def spec_from_config(config: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> TaskSpec:
    """The config's spec, with label lists it omits taken from ``records`` (train + validation)."""
    data = dict(config["spec"])
    if isinstance(data.get("groups"), list):
        data["groups"] = labels_from_data(data["groups"], records)
    return TaskSpec.from_dict(data)


def _check_same_task(run_dir: str, config: Mapping[str, Any]) -> None:
    """A resumed run must train the same task on the same data; hyper-parameters may change."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        previous = json.load(handle)
    changed = [key for key in ("spec", "data") if previous.get(key) != json.loads(json.dumps(config[key]))]
    if changed:
        raise ValueError(
            f"{run_dir!r} holds an interrupted run whose config differs in {changed}; resuming it with another "
            "task or data would mix two trainings. Use another `output`, or delete the folder to start over."
        )


def train(config: Mapping[str, Any], *, verbose: int | str = 1) -> str:
    """Train as ``config`` says (see :mod:`mtkeras.config`) and return the run folder.

    The run folder holds ``config.json`` (the exact config used), ``model/``
    (model, spec with tuned thresholds, tokenizer), ``metrics.json`` and
    ``roc_curves.png`` on the validation data, ``history.csv`` and the best
    weights. Run the same command again after an interruption: it resumes
    from the last finished epoch.
    """
    # A multi-worker strategy must exist before TensorFlow runs any op in this process.
    strategy = make_strategy(config["training"]["distribute"])
    run_dir = os.path.abspath(config["output"])
    if not is_chief(strategy):  # only the chief writes the run; other workers write to a scratch folder
        run_dir = os.path.join(run_dir, f".worker-{strategy.cluster_resolver.task_id}")
    if os.path.exists(os.path.join(run_dir, RUN_MODEL_DIR)):
        raise FileExistsError(
            f"{run_dir!r} already holds a finished run ({RUN_MODEL_DIR}/ exists); choose another `output` "
            "or delete it."
        )
    os.makedirs(run_dir, exist_ok=True)
    data, training = config["data"], config["training"]
    keras.utils.set_random_seed(training["seed"])

    # Data: records checked, label sets completed from the data, one tokenizer pass.
    read = dict(label_delimiter=data["label_delimiter"], drop_empty_texts=data["drop_empty_texts"])
    train_records = read_records(data["train"], config["spec"], **read)
    validation_records = read_records(data["validation"], config["spec"], **read)
    if data["train_rows"]:
        random.Random(training["seed"]).shuffle(train_records)
        train_records = train_records[: data["train_rows"]]
    spec = fit_target_stats(spec_from_config(config, train_records + validation_records), train_records)
    first_epoch = resumed_epoch(os.path.join(run_dir, "backup"))
    if os.path.isdir(os.path.join(run_dir, "backup")):
        _check_same_task(run_dir, config)
        logger.warning("%s: resuming an interrupted run from its last finished epoch (next: epoch %d).", run_dir,
                       first_epoch + 1)
    write_json(dict(config), os.path.join(run_dir, "config.json"))
    tokenizer = load_tokenizer(spec.encoder)
    weights_path = os.path.join(run_dir, "loss_weights.json")
    if training["suggest_loss_weights_steps"]:
        if not os.path.exists(weights_path):  # computed once; a resumed run reuses it
            suggestion = suggest_loss_weights(
                spec, train_records, validation_records, steps=training["suggest_loss_weights_steps"],
                batch_size=training["batch_size"], learning_rate=training["learning_rate"],
                head_lr_multiplier=training["head_lr_multiplier"], seed=training["seed"], tokenizer=tokenizer,
            )
            write_json(suggestion, weights_path)
        with open(weights_path, encoding="utf-8") as handle:
            spec = spec.with_loss_weights(json.load(handle)["weights"])
    # Fixed shapes under XLA: it compiles once per distinct batch shape.
    padding = training["padding"] or ("bucketed_fixed" if training["jit_compile"] else "bucketed")
    # One endless stream of shuffled passes cut into epochs of a fixed number of steps: bucketing makes
    # passes differ in batch count, which Keras' epochs cannot follow. A resumed run skips the batches of
    # the epochs already done, so it trains on exactly the batches the uninterrupted run would have.
    steps_per_epoch = math.ceil(len(train_records) / training["batch_size"])
    train_ds = make_dataset(spec, tokenizer, train_records, batch_size=training["batch_size"], shuffle=True,
                            seed=training["seed"], padding=padding)
    train_ds = train_ds.repeat().skip(first_epoch * steps_per_epoch)
    validation_ds = make_dataset(spec, tokenizer, validation_records, batch_size=training["batch_size"],
                                 padding=padding)

    # Model and optimizer schedule: warm-up over a proportion of all steps, then linear decay.
    model = build_model(spec, mixed_precision=training["mixed_precision"], strategy=strategy)
    steps = training["epochs"] * steps_per_epoch
    warmup = int(training["warmup_proportion"] * steps)
    compile_model(
        model, spec, learning_rate=training["learning_rate"], warmup_steps=warmup, total_steps=max(steps, warmup + 1),
        weight_decay=training["weight_decay"], beta_2=training["beta_2"],
        head_lr_multiplier=training["head_lr_multiplier"], jit_compile=training["jit_compile"],
    )
    callbacks = training_callbacks(spec, run_dir, monitor=training["monitor"], mode=training["monitor_mode"],
                                   patience=training["early_stopping_patience"])
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True))
    model.fit(train_ds, steps_per_epoch=steps_per_epoch, validation_data=validation_ds, epochs=training["epochs"],
              callbacks=callbacks,
              verbose=verbose)
    if strategy is not None:
        # The rest (thresholds, report, save) runs on one device: a plain model with the best weights. (Loading
        # an .h5 weights file into a strategy's model fails on its sync-on-read metric variables in TF 2.21.)
        model = build_model(spec, mixed_precision=training["mixed_precision"])
        compile_model(model, spec)
    model.load_weights(os.path.join(run_dir, BEST_WEIGHTS))
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)  # training finished: nothing to resume

    # Thresholds tuned on validation, then the report (with default and tuned thresholds).
    probs = Predictor(model, spec, tokenizer).predict_proba([r[spec.text_column] for r in validation_records])
    targets, weights = encode_targets(spec, validation_records)
    report = {"validation": evaluation_report(spec, probs, targets, weights)}
    if config["thresholds"]["tune"]:
        spec = tune_thresholds(spec, probs, targets, weights, floor=config["thresholds"]["floor"],
                               min_positives=config["thresholds"]["min_positives"])
        report = {
            "validation_default_thresholds": report["validation"],
            "validation": evaluation_report(spec, probs, targets, weights),
            "note": "`validation` uses thresholds tuned on this same validation data.",
        }
    with open(os.path.join(run_dir, BEST_WEIGHTS + ".json"), encoding="utf-8") as handle:
        report["best_epoch"] = json.load(handle)
    save_model(model, spec, os.path.join(run_dir, RUN_MODEL_DIR), tokenizer)
    write_json(report, os.path.join(run_dir, "metrics.json"))
    plot_roc_curves(spec, probs, targets, weights, os.path.join(run_dir, "roc_curves.png"))  # none for regression
    logger.warning("validation: %s", json.dumps(summary(report["validation"])))
    return run_dir

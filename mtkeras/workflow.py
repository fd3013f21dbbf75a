"""Whole runs: train from a config into a run folder, evaluate and predict from one."""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtkeras._compat import keras
from mtkeras._io import write_json
from mtkeras.calibration import calibrate_arrays, fit_temperatures, plot_reliability, uncalibrated
from mtkeras.config import load_config, parse_config
from mtkeras.data import (
    encode_targets,
    fit_target_stats,
    fit_target_stats_from,
    make_dataset,
    read_records,
    stats_groups,
)
from mtkeras.defaults import DEFAULT_MONITOR, PRECISIONS
from mtkeras.encoder import load_tokenizer
from mtkeras.evaluation import cross_fitted_report, evaluation_report, plot_roc_curves, summary, tune_thresholds
from mtkeras.files import is_pattern
from mtkeras.kinds import KINDS
from mtkeras.memory import add_memory
from mtkeras.model import build_model
from mtkeras.precision import model_precision, resolve_mixed_precision
from mtkeras.predict import Predictor
from mtkeras.saving import RUN_MODEL_DIR, save_model
from mtkeras.shards import is_shards
from mtkeras.spec import ENCODER_LAYER, TaskSpec
from mtkeras.training import (
    BEST_WEIGHTS,
    EPOCH_PREDICTIONS,
    compile_model,
    epoch_weights_path,
    is_chief,
    load_epoch_predictions,
    log_names,
    make_strategy,
    resumed_epoch,
    suggest_loss_weights,
    training_callbacks,
)

logger = logging.getLogger("mtkeras")


def labels_from_data(groups: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Group dicts with missing ``labels`` filled in from the data: every label seen, sorted.

    A regression group's labels are its target names: a group without them gets
    one target named like the group. ``records`` is read once (it may be a stream of rows from files).
    """
    from mtkeras.streaming import labels_seen

    checked = []
    for raw in groups:
        group = dict(raw)
        kind = KINDS.get(group.get("kind")) if isinstance(group.get("kind"), str) else None
        if kind is None:  # named before a missing label list is
            said = "has no `kind`" if group.get("kind") is None else f"unknown `kind` {group.get('kind')!r}"
            raise ValueError(f"LabelGroup {group.get('name')!r}: {said}. Accepted kinds: {sorted(KINDS)}.")
        if group.get("labels") is None and kind.labels_in(None) is None:
            group["labels"] = [group.get("name")]  # named targets, not found in data: one named like the group
        checked.append(group)
    columns: set = set()
    seen = labels_seen(checked, records, columns)
    for group in checked:
        if group.get("labels") is None:
            if not seen[group.get("name")]:
                raise ValueError(_no_labels_message(group, columns))
            group["labels"] = sorted(seen[group.get("name")])
    return checked


def _no_labels_message(group: Mapping[str, Any], columns: set) -> str:
    """Why a group without ``labels`` found none: its column is missing (with the columns the data has and the
    closest name), or every value in it is empty."""
    import difflib

    column = group.get("column") or group.get("name")
    start = f"Group {group.get('name')!r} has no `labels` and "
    if column in columns:
        return start + f"the data's column {column!r} is empty in every row; list the group's labels in the spec."
    names = sorted(str(name) for name in columns)
    close = difflib.get_close_matches(str(column), names, n=1)
    return (start + f"the data has no column {column!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; the data's columns: {names}. Name the group like its column (or set its `column`), "
            "or list its labels in the spec.")


def spec_from_config(config: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> TaskSpec:
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


@dataclass
class _Run:
    """What the stages of :func:`train` hand on to each other."""

    config: Mapping[str, Any]
    run_dir: str
    strategy: Any = None
    first_epoch: int = 0
    train_records: list = field(default_factory=list)
    train_source: str | None = None  # a file pattern or shards folder, read as needed (train_records stays empty)
    train_rows: int = 0
    validation_records: list = field(default_factory=list)
    spec: TaskSpec | None = None
    tokenizer: Any = None
    model: Any = None
    report: dict = field(default_factory=dict)
    raw_probs: dict = field(default_factory=dict)


def _prepare_run(config: Mapping[str, Any]) -> _Run:
    """Stage 1: the strategy (first: a multi-worker strategy must exist before TensorFlow runs any op), the run
    folder (only the chief writes the run), and refusing a finished run."""
    strategy = make_strategy(config["training"]["distribute"])
    run_dir = os.path.abspath(config["output"])
    if not is_chief(strategy):  # other workers write to a scratch folder
        run_dir = os.path.join(run_dir, f".worker-{strategy.cluster_resolver.task_id}")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise NotADirectoryError(f"Config `output` {run_dir!r} is a file, not a folder; the run needs a folder.")
    if os.path.exists(os.path.join(run_dir, RUN_MODEL_DIR)):
        raise FileExistsError(
            f"{run_dir!r} already holds a finished run ({RUN_MODEL_DIR}/ exists); choose another `output` "
            "or delete it."
        )
    keras.utils.set_random_seed(config["training"]["seed"])
    return _Run(config=config, run_dir=run_dir, strategy=strategy)


def _read_data(run: _Run) -> None:
    """Stage 2: records checked (train rows sampled when asked); nothing is written yet."""
    data, seed = run.config["data"], run.config["training"]["seed"]
    read = dict(label_delimiter=data["label_delimiter"], drop_empty_texts=data["drop_empty_texts"])
    for key in ("train", "validation"):
        _check_data_path(f"data.{key}", data[key], shards=key == "train")
    if is_pattern(data["train"]) or is_shards(data["train"]):
        _check_streamed_config(run.config)
        run.train_source = data["train"]
    else:
        run.train_records = read_records(data["train"], run.config["spec"], **read)
    run.validation_records = read_records(data["validation"], run.config["spec"], **read)
    if data["train_rows"]:
        order = list(range(len(run.train_records)))
        random.Random(seed).shuffle(order)
        run.train_records = run.train_records.take(order[: data["train_rows"]])


def _check_data_path(key: str, path: str, *, shards: bool) -> None:
    """A data path that names no file is refused with the config key and what the key accepts (a pattern that
    matches nothing is refused where its files are listed)."""
    if is_pattern(path) or os.path.exists(path):
        return
    accepted = "a .jsonl or .csv file, a glob pattern such as 'data/train-*.jsonl'" + (
        ", or a shards folder written by `mtkeras prepare`" if shards else "")
    raise FileNotFoundError(
        f"Config `{key}` {path!r} does not exist (relative paths in a config file are read from the file's "
        f"folder); accepted: {accepted}."
    )


def _check_streamed_config(config: Mapping[str, Any]) -> None:
    """What needs the training rows in memory is refused for files read as needed, naming the key."""
    train = config["data"]["train"]
    for key, value in (("data.train_rows", config["data"]["train_rows"]),
                       ("training.suggest_loss_weights_steps", config["training"]["suggest_loss_weights_steps"]),
                       ("spec.neighbours", config["spec"].get("neighbours", 0))):
        if value:
            raise ValueError(
                f"Config `{key}` ({value!r}) needs the training rows in memory, but `data.train` {train!r} is read "
                "as needed (a file pattern or shards folder); set it to 0, or train from one file."
            )


def _read_options(config: Mapping[str, Any]) -> Any:
    from mtkeras.streaming import ReadOptions

    data = config["data"]
    return ReadOptions(data["label_delimiter"], data["drop_empty_texts"], data["truncated"])


def _streamed_spec(run: _Run) -> TaskSpec:
    """The spec of a run whose training rows are read as needed: labels from the shards' manifest, or from one
    pass over the files that also checks every row's labels (errors name file and line) and counts the rows;
    target statistics from the training targets."""
    from mtkeras import shards, streaming

    source, options = run.train_source, _read_options(run.config)
    if shards.is_shards(source):
        manifest = shards.read_manifest(source)
        labels = {g["name"]: g["labels"] for g in manifest["spec"]["groups"]}
        data = dict(run.config["spec"])
        data["groups"] = [dict(g, labels=g.get("labels") or labels.get(g.get("name"))) for g in data["groups"]]
        spec = spec_from_config({"spec": data}, run.validation_records)
        run.tokenizer = load_tokenizer(spec.encoder)
        shards.check_manifest(manifest, spec, run.tokenizer, source)
        run.train_rows = int(manifest["rows"])
        if stats_groups(spec):
            spec = fit_target_stats_from(spec, *shards.shard_targets(spec, run.tokenizer, source))
        return spec
    column = run.config["spec"].get("text_column", "text")
    streamed = (record for _, record in streaming.iter_records(source, column, run.config["spec"], options,
                                                               what="data.train"))
    spec = spec_from_config(run.config, itertools.chain(run.validation_records, streamed))
    streaming.check_streamable(spec)
    scanned = streaming.scan(spec, source, options)
    run.train_rows = scanned.counts.rows
    return fit_target_stats_from(spec, scanned.targets, scanned.weights) if stats_groups(spec) else spec


def _fit_spec(run: _Run) -> None:
    """Stage 3: the spec, label lists completed from the data, target statistics from the training rows; every
    row's labels checked against it (errors name the file line) and the monitored log key checked, before any
    file is written."""
    if run.train_source is None:
        run.spec = fit_target_stats(spec_from_config(run.config, run.train_records + run.validation_records),
                                    run.train_records)
        run.train_rows = len(run.train_records)
    else:
        run.spec = _streamed_spec(run)
    if run.spec.memory_rows:
        raise ValueError(f"Config `spec.memory_rows` ({run.spec.memory_rows!r}) is written by training, after the "
                         "last epoch (the training rows the memory holds); remove it, and set `spec.neighbours` to "
                         "give the model a memory.")
    for records in (run.train_records, run.validation_records):
        encode_targets(run.spec, records)
    monitor, names = run.config["training"]["monitor"], log_names(run.spec)
    if monitor != DEFAULT_MONITOR and monitor not in names:
        raise ValueError(f"Config `training.monitor` must be one of this run's epoch logs {names}, "
                         f"received {monitor!r}.")
    if run.tokenizer is None:
        run.tokenizer = load_tokenizer(run.spec.encoder)


def _check_resume(run: _Run) -> None:
    """Stage 4: an interrupted run in the folder is resumed only for the same task and data; then the run
    folder is created with the config."""
    backup = os.path.join(run.run_dir, "backup")
    run.first_epoch = resumed_epoch(backup)
    if os.path.isdir(backup):
        _check_same_task(run.run_dir, run.config)
        logger.warning("%s: resuming an interrupted run from its last finished epoch (next: epoch %d).",
                       run.run_dir, run.first_epoch + 1)
    os.makedirs(run.run_dir, exist_ok=True)
    write_json(dict(run.config), os.path.join(run.run_dir, "config.json"))


def _loss_weights(run: _Run) -> None:
    """Stage 5 (optional): loss weights suggested once and kept in the run, so a resumed run reuses them. The
    losses are measured on training rows held apart from the suggestion's own training, never on validation rows
    (nothing of the recipe is chosen on the rows it is reported on)."""
    training = run.config["training"]
    if not training["suggest_loss_weights_steps"]:
        return
    path = os.path.join(run.run_dir, "loss_weights.json")
    if not os.path.exists(path):
        suggestion = suggest_loss_weights(
            run.spec, run.train_records, steps=training["suggest_loss_weights_steps"],
            batch_size=training["batch_size"], learning_rate=training["learning_rate"],
            head_lr_multiplier=training["head_lr_multiplier"], seed=training["seed"], tokenizer=run.tokenizer,
        )
        write_json(suggestion, path)
    with open(path, encoding="utf-8") as handle:
        run.spec = run.spec.with_loss_weights(json.load(handle)["weights"])


def _fit(run: _Run, verbose: int | str) -> None:
    """Stage 6: build, compile and fit; the best epoch's weights end in ``run.model``.

    One endless stream of shuffled passes is cut into epochs of a fixed number of steps: bucketing makes
    passes differ in batch count, which Keras' epochs cannot follow. A resumed run skips the batches of the
    epochs already done, so it trains on exactly the batches the uninterrupted run would have.
    """
    training, spec = run.config["training"], run.spec
    batch_size, padding = training["batch_size"], training["padding"]
    steps_per_epoch = math.ceil(run.train_rows / batch_size)
    files = {} if run.train_source is None else dict(shuffle_buffer=run.config["data"]["shuffle_buffer"],
                                                      read_options=_read_options(run.config))

    def train_data(batch: int, input_context: Any = None) -> Any:
        if input_context is not None:
            files["input_context"] = input_context
        dataset = make_dataset(spec, run.tokenizer, run.train_source or run.train_records, batch_size=batch,
                               shuffle=True, seed=training["seed"], padding=padding, **files)
        return dataset.repeat().skip(run.first_epoch * steps_per_epoch)

    if run.train_source is not None and run.strategy is not None:
        # Each worker reads its own files (mtkeras.streaming.shard_files): one dataset per input pipeline.
        from mtkeras.streaming import dataset_creator

        train_ds = dataset_creator(lambda context: train_data(context.get_per_replica_batch_size(batch_size),
                                                              context))
    else:
        train_ds = train_data(batch_size)
    validation_ds = make_dataset(spec, run.tokenizer, run.validation_records, batch_size=batch_size, padding=padding)

    # "auto" is resolved once, on the machine that trains: the weights are float32 in every policy, so a run
    # resumed elsewhere continues from the same checkpoint in that machine's policy.
    policy = resolve_mixed_precision(training["mixed_precision"], "training.mixed_precision")
    logger.warning("%s: training computes in %s (training.mixed_precision: %s).", run.run_dir, policy or "float32",
                   training["mixed_precision"])
    # Warm-up over a proportion of all steps, then linear decay.
    model = build_model(spec, mixed_precision=policy, strategy=run.strategy)
    steps = training["epochs"] * steps_per_epoch
    warmup = int(training["warmup_proportion"] * steps)
    compile_model(
        model, spec, learning_rate=training["learning_rate"], warmup_steps=warmup, total_steps=max(steps, warmup + 1),
        weight_decay=training["weight_decay"], beta_2=training["beta_2"],
        head_lr_multiplier=training["head_lr_multiplier"], layer_lr_decay=training["layer_lr_decay"],
        jit_compile=training["jit_compile"],
    )
    # Every epoch's validation probabilities are kept (the cross-fitted report compares the epochs on other rows)
    # and scored: the default monitor is the selection score the cross-fitted report picks epochs by.
    callbacks = training_callbacks(spec, run.run_dir, validation_records=run.validation_records,
                                   tokenizer=run.tokenizer, monitor=training["monitor"],
                                   mode=training["monitor_mode"], patience=training["early_stopping_patience"])
    callbacks.insert(-1, keras.callbacks.CSVLogger(os.path.join(run.run_dir, "history.csv"), append=True))
    model.fit(train_ds, steps_per_epoch=steps_per_epoch, validation_data=validation_ds, epochs=training["epochs"],
              callbacks=callbacks, verbose=verbose)
    if run.strategy is not None:
        # The rest (thresholds, report, save) runs on one device: a plain model with the best weights. (Loading
        # an .h5 weights file into a strategy's model fails on its sync-on-read metric variables in TF 2.21.)
        model = build_model(spec, mixed_precision=policy)
        compile_model(model, spec)
    model.load_weights(os.path.join(run.run_dir, BEST_WEIGHTS))
    shutil.rmtree(os.path.join(run.run_dir, "backup"), ignore_errors=True)  # training finished: nothing to resume
    run.model = model


def _remember(run: _Run) -> None:
    """Stage 7 (``spec.neighbours`` > 0): the best epoch's model with a memory of the training rows
    (:mod:`mtkeras.memory`); temperatures and thresholds are then fitted on its answers."""
    if run.spec.neighbours:
        logger.warning("%s: storing the %d training rows' vectors in the model's memory.", run.run_dir,
                       len(run.train_records))
        run.model, run.spec = add_memory(run.model, run.spec, run.train_records, tokenizer=run.tokenizer)


def _thresholds_and_report(run: _Run) -> tuple[dict, dict, dict]:
    """Stage 8: the validation reports: the deployed model's (thresholds tuned on validation when the config
    asks: optimistic) and the cross-fitted one (epoch and thresholds chosen on other rows: honest)."""
    spec, config = run.spec, run.config
    with open(os.path.join(run.run_dir, BEST_WEIGHTS + ".json"), encoding="utf-8") as handle:
        best = json.load(handle)
    folder = os.path.join(run.run_dir, EPOCH_PREDICTIONS)
    epochs = load_epoch_predictions(folder)
    raw, deployed = uncalibrated(spec), best["epoch"] + 1
    probs = None if spec.remembers else epochs.get(deployed)
    if probs is None:  # a memory's answers are more than the heads' kept probabilities
        probs = Predictor(run.model, raw, run.tokenizer, precision=None).predict_proba(
            [r[spec.text_column] for r in run.validation_records])
    answers = None
    if spec.remembers:  # epochs chosen by the heads' probabilities, as the checkpoint was; answers with a memory
        epochs = {epoch: heads for epoch, heads in epochs.items()
                  if epoch == deployed or os.path.exists(epoch_weights_path(folder, epoch))}
        answers = _memory_answers(run, raw, list(epochs), deployed, probs)
        candidates = [f"epoch {epoch}, with its memory" for epoch in epochs] or ["the best epoch, with its memory"]
    else:
        candidates = [f"epoch {epoch}" for epoch in epochs] or ["the best epoch"]
    targets, weights = encode_targets(spec, run.validation_records)
    thresholds = config["thresholds"]
    cross_fitted = cross_fitted_report(
        raw, list(epochs.values()) or [probs], targets, weights, seed=config["training"]["seed"],
        tune=thresholds["tune"], calibrate=thresholds["calibrate"], floor=thresholds["floor"],
        min_positives=thresholds["min_positives"], scope=thresholds["scope"], answers=answers if epochs else None)
    cross_fitted["candidates"] = candidates
    # The deployed model: temperatures fitted and thresholds tuned on all validation rows.
    run.raw_probs, run.spec = probs, raw
    if thresholds["calibrate"]:
        run.spec = fit_temperatures(raw, probs, targets, weights)
        probs = calibrate_arrays(run.spec, probs)
    spec = run.spec
    run.report = {"validation": evaluation_report(spec, probs, targets, weights)}
    if thresholds["tune"]:
        run.spec = tune_thresholds(spec, probs, targets, weights, floor=thresholds["floor"],
                                   min_positives=thresholds["min_positives"], scope=thresholds["scope"])
        run.report = {
            "validation_default_thresholds": run.report["validation"],
            "validation": evaluation_report(run.spec, probs, targets, weights),
            "note": "`validation` uses the temperatures and thresholds fitted on this same validation data "
                    "(optimistic); `cross_fitted` chooses the epoch, temperatures and thresholds on other rows "
                    "than it scores (honest).",
        }
    run.report["cross_fitted"] = cross_fitted
    run.report["best_epoch"] = best
    return probs, targets, weights


def _memory_answers(run: _Run, raw: TaskSpec, epochs: list[int], deployed: int,
                    deployed_probs: Mapping[str, Any]) -> Callable[[int], Mapping[str, Any]]:
    """``cross_fitted_report``'s ``answers`` for a model with a memory: candidate ``i`` answers as epoch
    ``epochs[i]``'s weights with a memory of the training rows would. The deployed epoch's answers are
    ``deployed_probs``; another epoch, chosen on some part of the validation rows, is rebuilt from its kept weights
    and given its own memory (its vectors differ from the deployed epoch's)."""
    folder = os.path.join(run.run_dir, EPOCH_PREDICTIONS)
    training_spec = dataclasses.replace(raw, memory_rows=0)  # the model as trained: no memory yet
    texts = [record[raw.text_column] for record in run.validation_records]

    def answer(index: int) -> Mapping[str, Any]:
        epoch = epochs[index]
        if epoch == deployed:
            return deployed_probs
        logger.warning("%s: epoch %d, chosen on part of the validation rows, answers with its own memory.",
                       run.run_dir, epoch)
        model = build_model(training_spec, bert_config=run.model.get_layer(ENCODER_LAYER).bert_config,
                            mixed_precision=PRECISIONS[model_precision(run.model)])
        model.load_weights(epoch_weights_path(folder, epoch))
        model, spec = add_memory(model, training_spec, run.train_records, tokenizer=run.tokenizer)
        return Predictor(model, spec, run.tokenizer, precision=None).predict_proba(texts)

    return answer


def _save(run: _Run, probs: dict, targets: dict, weights: dict) -> None:
    """Stage 9: model folder, metrics and ROC curves (none for regression-only runs); the epochs' weights,
    kept for the cross-fitted report of a model with a memory, are then removed."""
    save_model(run.model, run.spec, os.path.join(run.run_dir, RUN_MODEL_DIR), run.tokenizer)
    write_json(run.report, os.path.join(run.run_dir, "metrics.json"))
    plot_roc_curves(run.spec, probs, targets, weights, os.path.join(run.run_dir, "roc_curves.png"))
    plot_reliability(run.spec, probs, targets, weights, os.path.join(run.run_dir, "reliability.png"),
                     uncalibrated=run.raw_probs if run.config["thresholds"]["calibrate"] else None)
    logger.warning("validation: %s", json.dumps(summary(run.report["validation"])))
    logger.warning("validation, cross-fitted (honest): %s", json.dumps(run.report["cross_fitted"]["summary"]))
    for path in glob.glob(epoch_weights_path(os.path.join(run.run_dir, EPOCH_PREDICTIONS), "*")):
        os.remove(path)


def train(config: Mapping[str, Any] | str | os.PathLike, *, verbose: int | str = 1) -> str:
    """Train as ``config`` says (see :mod:`mtkeras.config`) and return the run folder.

    The run folder holds ``config.json`` (the exact config used), ``model/``
    (model, spec with fitted temperatures and tuned thresholds, tokenizer), ``metrics.json``
    (the deployed model's validation report and the honest cross-fitted one), ``roc_curves.png``
    and ``reliability.png`` on the validation data, ``history.csv``, every epoch's validation
    probabilities (``validation_predictions/``) and the best weights. Run the same command again
    after an interruption: it resumes from the last finished epoch. The config, the data (every label), the
    encoder and the output folder are checked before anything is written; a run that fails before its first
    epoch finishes, or whose loss stops being finite, leaves no run folder behind (one it did not create, e.g.
    a run being resumed, is kept as it was).

    ``config`` is a config file's path, :func:`load_config`'s result, or a mapping with the same keys (defaults
    filled in and every value checked as for a file; relative paths are then read from the current folder).

    Example:
        >>> run_dir = train(load_config("examples/debtags.yaml"))
    """
    if isinstance(config, (str, os.PathLike)):
        config = load_config(config)
    elif isinstance(config, Mapping):
        config = parse_config(config)
    else:
        raise TypeError(f"`config` must be a config file's path or a config mapping (mtk.load_config(path)), "
                        f"received {config!r:.80} ({type(config).__name__}).")
    run = _prepare_run(config)
    _read_data(run)
    _fit_spec(run)
    created = not os.path.exists(run.run_dir)
    try:
        _check_resume(run)
        _loss_weights(run)
        _fit(run, verbose)
    except BaseException as error:
        diverged = isinstance(error, FloatingPointError)  # NaN weights: nothing worth resuming
        if created and (diverged or not os.path.isdir(os.path.join(run.run_dir, "backup"))):
            shutil.rmtree(run.run_dir, ignore_errors=True)  # nothing to resume: leave nothing half-made
        raise
    _remember(run)
    _save(run, *_thresholds_and_report(run))
    return run.run_dir


def prepare(config: Mapping[str, Any], out_dir: str, *, rows_per_shard: int | None = None,
            skip_bad_rows: bool = False, progress: bool = False) -> dict[str, Any]:
    """Tokenize the config's ``data.train`` (a file or pattern) once into TFRecord shards in ``out_dir`` for
    the spec ``train`` would build (labels the config omits taken from the train + validation rows); returns
    the manifest. Then train from them: ``data.train: <out_dir>`` (:mod:`mtkeras.shards`). Resumable.

    Example:
        >>> prepare(load_config("examples/debtags.yaml"), "shards/debtags")
    """
    from mtkeras import shards, streaming

    train, options = config["data"]["train"], _read_options(config)
    if shards.is_shards(train):
        raise ValueError(f"Config `data.train` {train!r} is already a shards folder; prepare reads .jsonl/.csv files.")
    _check_data_path("data.train", train, shards=False)
    _check_data_path("data.validation", config["data"]["validation"], shards=False)
    validation = read_records(config["data"]["validation"], config["spec"], label_delimiter=options.label_delimiter,
                              drop_empty_texts=options.drop_empty_texts)
    column = config["spec"].get("text_column", "text")
    streamed = (record for _, record in streaming.iter_records(
        train, column, config["spec"], options, what="data.train", on_bad=(lambda *_: None) if skip_bad_rows else None))
    spec = spec_from_config(config, itertools.chain(validation, streamed))
    return shards.prepare_shards(spec, load_tokenizer(spec.encoder), train, out_dir,
                                 rows_per_shard=rows_per_shard or shards.ROWS_PER_SHARD, skip_bad_rows=skip_bad_rows,
                                 options=options, progress=progress)

"""``compile_model``: losses, loss weights, optimizer and metrics, all read off the spec."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras._checks import check_int, check_number, check_option
from mtkeras._compat import keras, tf
from mtkeras._io import write_json
from mtkeras.defaults import DEFAULT_MONITOR, DISTRIBUTE, ROC_AUC, SELECTION_MONITOR, TRAINING
from mtkeras.memory import remembering
from mtkeras.model import check_outputs
from mtkeras.optim import RAdam
from mtkeras.spec import ENCODER_LAYER, HEAD_SUFFIX, PIECE_BAG_LAYER, UNCERTAINTY_LAYER, TaskSpec, check_spec
from mtkeras.uncertainty import LossScales, TaskUncertainty, UncertaintyWeightedLoss

logger = logging.getLogger("mtkeras")

#: Variables that get no weight decay (as in BERT's own AdamW setup; the learned loss weights neither).
NO_DECAY_NAMES: tuple[str, ...] = ("LayerNorm", "layer_norm", "bias", "log_variance")


def build_losses(spec: TaskSpec, model: keras.Model | None = None) -> dict[str, keras.losses.Loss]:
    """One loss per output, keyed by group name; with ``spec.loss_weighting="uncertainty"`` each is bound to its
    learned log-variance in ``model`` (built from ``spec``)."""
    losses = {group.name: group.rules.loss() for group in spec.groups}
    if not spec.learns_loss_weights:
        return losses
    layer = _uncertainty_layer(model)
    return {name: UncertaintyWeightedLoss(loss, name, layer) for name, loss in losses.items()}


def _uncertainty_layer(model: keras.Model | None) -> TaskUncertainty:
    layer = None
    if model is not None:
        layer = next((each for each in model.layers if each.name == UNCERTAINTY_LAYER), None)
    if not isinstance(layer, TaskUncertainty):
        raise ValueError(
            f"spec.loss_weighting='uncertainty' learns its loss weights in the model's layer {UNCERTAINTY_LAYER!r}, "
            f"but {'no model was given' if model is None else f'model {model.name!r} has none'}; build the model "
            "with build_model(spec) from this spec and pass it."
        )
    return layer


def build_loss_weights(spec: TaskSpec) -> dict[str, float]:
    """Each output's weight in the total loss, keyed by group name."""
    return {group.name: group.loss_weight for group in spec.groups}


def build_metrics(spec: TaskSpec) -> dict[str, list[keras.metrics.Metric]]:
    """Each output's metrics as its kind says (accuracy and ROC-AUC; MAE and RMSE for regression)."""
    return {group.name: group.rules.metrics() for group in spec.groups}


def _uses_float16(model: keras.Model) -> bool:
    return any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers)


#: ``model.compile`` arguments that :func:`compile_model` makes from the spec, and where the spec holds them.
_FROM_THE_SPEC: dict[str, str] = {
    "loss": "each group's kind, `loss` and class weights",
    "loss_weights": "each LabelGroup's `loss_weight`, or `loss_weighting`",
    "weighted_metrics": "each kind's metrics; pass `metrics={group: [...]}` to choose others",
}


def compile_model(
    model: keras.Model,
    spec: TaskSpec,
    *,
    learning_rate: float = TRAINING.learning_rate,
    warmup_steps: int = 0,
    total_steps: int = 0,
    weight_decay: float | None = TRAINING.weight_decay,
    beta_2: float = TRAINING.beta_2,
    head_lr_multiplier: float = TRAINING.head_lr_multiplier,
    layer_lr_decay: float = TRAINING.layer_lr_decay,
    optimizer: keras.optimizers.Optimizer | None = None,
    metrics: Mapping[str, Sequence[Any]] | None = None,
    **compile_kwargs: Any,
) -> keras.Model:
    """Compile ``model`` for multi-task training as ``spec`` says.

    Defaults (learning rate, head factor, ``beta_2``, weight decay) are :data:`mtkeras.defaults.TRAINING`,
    the recipe ``mtkeras train`` uses too.

    Losses (by kind: categorical or binary cross-entropy, MSE/Huber, masked token cross-entropy) and ``loss_weights``
    come from the spec (with ``spec.loss_weighting="uncertainty"`` each loss also gets a learned factor,
    :mod:`mtkeras.uncertainty`); the optimizer defaults to :class:`RAdam` with warm-up
    and decoupled weight decay (LayerNorm and biases excluded), the heads'
    step size scaled by ``head_lr_multiplier`` (randomly initialised heads on a
    pretrained encoder often want 10-100x) and, with ``layer_lr_decay`` < 1, encoder layer ``i``
    of ``L`` (from 0) by ``layer_lr_decay ** (L - 1 - i)`` and the embeddings by ``layer_lr_decay ** L``
    (layer-wise learning-rate decay: lower layers move less); metrics default
    to each kind's (accuracy and ROC-AUC; MAE and RMSE for regression), compiled as weighted metrics so that rows
    a group does not annotate (sample weight 0) are left out. Any other keyword goes to
    ``model.compile`` (``jit_compile``, ``steps_per_execution``, ...).

    ``beta_2`` defaults to 0.98 (as in RoBERTa) rather than the paper's 0.999:
    RAdam's rectification scales early steps by about ``sqrt(t * (1 - beta_2) / 2)``,
    so with 0.999 a fine-tuning run of a few hundred steps never reaches full
    step size (measured on Debtags: a head trained 47 steps reached 7% section
    accuracy with 0.999 and 30% with 0.98, same learning rate).

    Example:
        >>> compile_model(model, spec, warmup_steps=100)
        >>> model.fit(x, y, validation_data=(x_val, y_val), epochs=3)
    """
    check_number(learning_rate, "learning_rate", 0.0, low_open=True)
    check_number(head_lr_multiplier, "head_lr_multiplier", 0.0, low_open=True)
    check_number(layer_lr_decay, "layer_lr_decay", 0.0, 1.0, low_open=True)
    check_number(beta_2, "beta_2", 0.0, 1.0, high_open=True)
    check_number(weight_decay, "weight_decay", 0.0, allow_none=True)
    check_int(warmup_steps, "warmup_steps", 0)
    check_int(total_steps, "total_steps", 0)
    check_outputs(model, spec, "compile_model")
    outputs = set(model.output_names)
    taken = sorted(set(compile_kwargs) & _FROM_THE_SPEC.keys())
    if taken:
        raise TypeError(f"compile_model: `{taken[0]}` comes from the spec ({_FROM_THE_SPEC[taken[0]]}); "
                        "set it there, not as an argument.")
    if metrics is not None:
        unknown = sorted(set(metrics) - outputs)
        if unknown:
            raise ValueError(
                f"`metrics` has keys {unknown} that are not outputs; outputs are {sorted(outputs)}."
            )
    # Under the model's distribution strategy (the default one when built without): the optimizer's
    # slots and the metrics' variables are mirrored like the model's.
    with model.distribute_strategy.scope():
        if optimizer is None:
            optimizer = RAdam(
                learning_rate=learning_rate,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                weight_decay=weight_decay,
                beta_2=beta_2,
                lr_multipliers=lr_multipliers(model, spec, head_lr_multiplier, layer_lr_decay) or None,
            )
            if weight_decay:
                optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
        if _uses_float16(model) and not isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)  # float16 gradients need loss scaling
        # Weighted metrics: rows with sample weight 0 (not annotated for a group) are left out.
        model.compile(
            optimizer=optimizer,
            loss=build_losses(spec, model),
            loss_weights=build_loss_weights(spec),
            weighted_metrics=dict(metrics) if metrics is not None else build_metrics(spec),
            **compile_kwargs,
        )
    return model


def lr_multipliers(model: keras.Model, spec: TaskSpec, head_lr_multiplier: float,
                   layer_lr_decay: float) -> dict[str, float]:
    """RAdam's ``lr_multipliers``: the heads' (and the word-piece bag's) factor, then (with decay < 1) one per
    encoder layer and the embeddings' (variable-name patterns of ``TFBertModel``)."""
    # The heads, the bag of word pieces (both start from random values) and the learned loss weights (which must
    # travel from 0 to about log(loss) in a few hundred steps) step at the heads' factor.
    # (A model with a memory of training rows names a voting group's head `<group>_head`.)
    fresh = [*spec.group_names, *([PIECE_BAG_LAYER] if spec.bag_dim else []),
             *([UNCERTAINTY_LAYER] if spec.learns_loss_weights else []),
             *(name + HEAD_SUFFIX for name in (remembering(spec) if spec.remembers else []))]
    factors = {f"^{re.escape(name)}/": head_lr_multiplier for name in fresh} if head_lr_multiplier != 1.0 else {}
    if layer_lr_decay != 1.0:
        layers = model.get_layer(ENCODER_LAYER).bert_config.num_hidden_layers
        for i in range(layers):
            factors[rf"/encoder/layer_\._{i}/"] = layer_lr_decay ** (layers - 1 - i)
        factors["/embeddings/"] = layer_lr_decay ** layers
    return factors


# --- distribution ----------------------------------------------------------------------

def make_strategy(name: str | None) -> tf.distribute.Strategy | None:
    """The ``tf.distribute`` strategy a config names (None: no strategy).

    ``"multi_worker"`` reads the cluster from ``TF_CONFIG`` and must be created
    before TensorFlow runs any op in the process.
    """
    check_option(name, "distribute", DISTRIBUTE)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the run's files: always, except on non-chief multi-worker tasks."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)


# --- callbacks ------------------------------------------------------------------------

class MeanOverHeads(keras.callbacks.Callback):
    """Adds ``val_mean_<metric>`` (and ``mean_<metric>``) to the epoch logs: the mean over heads.

    Place it before callbacks that monitor the mean (checkpointing, early stopping).
    """

    def __init__(self, group_names: Sequence[str], metric: str = ROC_AUC, outputs: int | None = None) -> None:
        super().__init__()
        self.group_names = list(group_names)
        self.metric = metric
        self.outputs = len(self.group_names) if outputs is None else outputs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or not self.group_names:
            return
        for prefix in ("", "val_"):
            if self.outputs == 1:  # Keras does not prefix the metrics of a single output
                values = [logs.get(f"{prefix}{self.group_names[0]}_{self.metric}", logs.get(f"{prefix}{self.metric}"))]
            else:
                values = [logs.get(f"{prefix}{name}_{self.metric}") for name in self.group_names]
            if values and all(value is not None for value in values):
                logs[f"{prefix}mean_{self.metric}"] = float(sum(values) / len(values))


def log_names(spec: TaskSpec) -> list[str]:
    """The epoch-log keys a run of ``spec`` can monitor: losses, each head's metrics, the mean ROC-AUC (and their
    ``val_`` forms), and ``val_selection_score`` (runs given validation records, see :func:`training_callbacks`).
    A single-output model's metrics are also accepted unprefixed, as Keras logs them."""
    names = {"loss"}
    for group in spec.groups:
        names.add(f"{group.name}_loss")
        for metric in group.rules.metric_names:
            names.add(f"{group.name}_{metric}")
            if len(spec.groups) == 1:
                names.add(metric)
    if any(ROC_AUC in group.rules.metric_names for group in spec.groups):
        names.add(f"mean_{ROC_AUC}")
    return sorted(names | {f"val_{name}" for name in names} | {SELECTION_MONITOR})


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite, with an error naming the step and
    the groups whose loss is not finite, before any checkpoint of those weights is written (the checkpoints
    are written at epoch ends)."""

    def __init__(self, group_names: Sequence[str]) -> None:
        super().__init__()
        self.group_names = list(group_names)
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        bad = [name for name in self.group_names
               if f"{name}_loss" in logs and not math.isfinite(float(logs[f"{name}_loss"]))]
        step = self.epoch * (self.params.get("steps") or 0) + batch + 1
        raise FloatingPointError(
            f"Training diverged: non-finite loss at step {step} (epoch {self.epoch + 1}, batch {batch + 1}); "
            f"groups whose loss is not finite: {bad or self.group_names}. No checkpoint of these weights was "
            "written. Lower `learning_rate` or `head_lr_multiplier`, or check the targets of those groups."
        )


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the weights whenever ``monitor`` improves; stops early; remembers the best across restarts.

    The best value and epoch live in ``<path>.json`` beside the weights, so a run
    resumed by ``BackupAndRestore`` keeps comparing with the true best so far, and
    early stopping (``patience`` epochs without improvement; None: never) counts
    from the true best epoch, not from the restart.
    """

    def __init__(
        self, path: str, monitor: str = DEFAULT_MONITOR, mode: str = "max", patience: int | None = None
    ) -> None:
        super().__init__()
        check_option(mode, "mode", ("max", "min"))
        check_int(patience, "patience", 1, allow_none=True)
        self.path, self.monitor, self.mode, self.patience = path, monitor, mode, patience
        self.best: float | None = None
        self.best_epoch: int | None = None

    @property
    def state_path(self) -> str:
        return self.path + ".json"

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if os.path.exists(self.state_path):
            with open(self.state_path, encoding="utf-8") as handle:
                state = json.load(handle)
            self.best, self.best_epoch = state["best"], state["epoch"]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"BestCheckpoint monitors {self.monitor!r}, which is not in the epoch logs "
                f"{sorted(logs or {})}; pass validation data or another `monitor`."
            )
        if not math.isfinite(float(value)):
            raise FloatingPointError(
                f"`{self.monitor}` is {value} after epoch {epoch + 1}: the model's validation outputs are not "
                "finite; these weights are not kept. Lower `learning_rate` or `head_lr_multiplier`."
            )
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch = float(value), int(epoch)
            tmp = self.path + ".tmp.weights.h5"
            self.model.save_weights(tmp)
            os.replace(tmp, self.path)
            write_json({"best": self.best, "epoch": self.best_epoch, "monitor": self.monitor}, self.state_path)
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True


class EpochPredictions(keras.callbacks.Callback):
    """Keeps every epoch's validation probabilities (``<folder>/epoch_<n>.npz``, n from 1), so the epochs
    can be compared on any rows afterwards (:func:`mtkeras.cross_fitted_report`) without keeping their weights;
    with ``score``, adds ``val_selection_score`` (``score(probabilities)``) to the epoch logs. With
    ``keep_weights``, each epoch's weights too (``epoch_<n>.weights.h5``, :func:`epoch_weights_path`): a model
    with a memory answers with more than its heads, so an epoch chosen on other rows must be rebuilt to answer.

    ``predict`` returns ``{group: probabilities}`` for the validation texts with the weights of the model it is
    given (the live model). Place it before callbacks that monitor the score (:class:`BestCheckpoint`).
    """

    def __init__(
        self,
        folder: str,
        predict: Callable[[keras.Model], Mapping[str, np.ndarray]],
        score: Callable[[Mapping[str, np.ndarray]], float] | None = None,
        keep_weights: bool = False,
    ) -> None:
        super().__init__()
        self.folder, self.predict, self.score, self.keep_weights = folder, predict, score, keep_weights

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        probs = self.predict(self.model)
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, f"epoch_{epoch + 1}.npz")
        with open(path + ".tmp", "wb") as handle:
            np.savez(handle, **{name: np.asarray(values) for name, values in probs.items()})
        os.replace(path + ".tmp", path)
        if self.keep_weights:
            path = epoch_weights_path(self.folder, epoch + 1)
            self.model.save_weights(path + ".tmp.weights.h5")
            os.replace(path + ".tmp.weights.h5", path)
        if self.score is not None and logs is not None:
            logs[SELECTION_MONITOR] = float(self.score(probs))


def epoch_weights_path(folder: str, epoch: int | str) -> str:
    """Where :class:`EpochPredictions` with ``keep_weights`` keeps epoch ``epoch``'s weights (epochs from 1;
    ``"*"``: the glob pattern of every epoch's)."""
    return os.path.join(folder, f"epoch_{epoch}.weights.h5")


def load_epoch_predictions(folder: str) -> dict[int, dict[str, np.ndarray]]:
    """``{epoch: {group: probabilities}}`` as :class:`EpochPredictions` wrote them (epochs from 1)."""
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = re.fullmatch(r"epoch_(\d+)\.npz", name)
        if match:
            with np.load(os.path.join(folder, name), allow_pickle=True) as arrays:  # token groups: object arrays
                found[int(match.group(1))] = {key: arrays[key] for key in arrays.files}
    return dict(sorted(found.items()))


#: Where ``BackupAndRestore`` (tf-keras) keeps the last finished epoch, inside its checkpoint.
_SAVED_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def resumed_epoch(backup_dir: str) -> int:
    """The epoch a run restored from ``backup_dir`` (see :func:`training_callbacks`) starts at; 0 without one."""
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief")) if os.path.isdir(backup_dir) else None
    if checkpoint is None:
        return 0
    return max(int(tf.train.load_checkpoint(checkpoint).get_tensor(_SAVED_EPOCH_KEY)) + 1, 0)


def training_callbacks(
    spec: TaskSpec,
    run_dir: str,
    *,
    validation_records: Sequence[Mapping[str, Any]] | None = None,
    tokenizer: Any | None = None,
    monitor: str | None = None,
    mode: str = "max",
    patience: int | None = 2,
) -> list[keras.callbacks.Callback]:
    """The callbacks of a resumable run: a stop at the first non-finite loss, backup/restore, mean ROC-AUC,
    (with ``validation_records``) every epoch's validation probabilities and their selection score, best
    checkpoint, early stopping.

    ``run_dir/backup`` holds the state of the last finished epoch (weights,
    optimizer moments and step count, epoch number): restarting the same
    ``fit`` after an interruption continues from there. ``run_dir/best.weights.h5``
    holds the best weights by ``monitor``. With ``validation_records`` (and their
    ``tokenizer``; default: the spec's encoder's), ``run_dir/validation_predictions/``
    keeps each epoch's probabilities (and, for a spec with ``neighbours``, its weights) and ``monitor``
    defaults to ``val_selection_score``:
    the mean over groups of each kind's ``selection_metric`` — the rule
    :func:`mtkeras.cross_fitted_report` picks epochs by. Without them it defaults to
    ``val_mean_roc_auc`` (``val_loss`` for regression-only specs).

    Example:
        >>> callbacks = training_callbacks(spec, "runs/x", validation_records=val_records, tokenizer=tokenizer)
        >>> model.fit(train, validation_data=val, epochs=5, callbacks=callbacks)
    """
    check_spec(spec, "training_callbacks")
    with_auc = [group.name for group in spec.groups if ROC_AUC in group.rules.metric_names]
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(spec.group_names),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        MeanOverHeads(with_auc, outputs=len(spec.groups)),
        *([LossScales(UNCERTAINTY_LAYER)] if spec.learns_loss_weights else []),
    ]
    if validation_records is not None:
        callbacks.append(_validation_scores(spec, run_dir, validation_records, tokenizer))
        monitor = SELECTION_MONITOR if monitor is None else monitor
    elif monitor == SELECTION_MONITOR:
        raise ValueError(f"`monitor={SELECTION_MONITOR!r}` is computed from validation probabilities: pass "
                         "`validation_records` (and their `tokenizer`), or another `monitor`.")
    if monitor is None:
        monitor = DEFAULT_MONITOR
        if not with_auc:
            logger.warning("No group reports ROC-AUC (regression only): monitoring val_loss (min) instead of %s.",
                           monitor)
            monitor, mode = "val_loss", "min"
    callbacks.append(
        BestCheckpoint(os.path.join(run_dir, BEST_WEIGHTS), monitor=monitor, mode=mode, patience=patience or None))
    return callbacks


def _validation_scores(
    spec: TaskSpec, run_dir: str, records: Sequence[Mapping[str, Any]], tokenizer: Any | None
) -> EpochPredictions:
    """Every epoch's validation probabilities (the heads' own: no temperatures) and their selection score; with
    a memory (``spec.neighbours``), every epoch's weights too."""
    from mtkeras.calibration import uncalibrated
    from mtkeras.data import encode_targets
    from mtkeras.encoder import load_tokenizer
    from mtkeras.evaluation import evaluation_report, selection_score
    from mtkeras.predict import Predictor

    raw = uncalibrated(spec)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.encoder)
    texts = [record[spec.text_column] for record in records]
    targets, weights = encode_targets(raw, records)

    predictors: dict[int, Predictor] = {}  # one per live model (the same every epoch), built on first use

    def predict(model: keras.Model) -> Mapping[str, np.ndarray]:
        if id(model) not in predictors:
            predictors[id(model)] = Predictor(model, raw, tokenizer, jit_compile=False, precision=None)
        return predictors[id(model)].predict_proba(texts)

    def score(probs: Mapping[str, np.ndarray]) -> float:
        return selection_score(raw, evaluation_report(raw, probs, targets, weights))

    return EpochPredictions(os.path.join(run_dir, EPOCH_PREDICTIONS), predict, score,
                            keep_weights=bool(spec.neighbours))


BEST_WEIGHTS = "best.weights.h5"
#: Where :func:`training_callbacks` keeps every epoch's validation probabilities, inside the run folder.
EPOCH_PREDICTIONS = "validation_predictions"


# --- loss weights ---------------------------------------------------------------------------


#: The most training rows :func:`suggest_loss_weights` holds apart to measure losses on (a fifth of them otherwise).
SUGGEST_HELD_APART = 1000


def _held_apart(records: Sequence[Mapping[str, Any]], seed: int) -> tuple[list, list]:
    """``(kept, held)``: a seeded fifth of ``records`` (at least 1, at most SUGGEST_HELD_APART) held apart."""
    if len(records) < 2:
        raise ValueError(
            f"suggest_loss_weights needs at least 2 training records to hold some apart, received {len(records)}; "
            "pass `eval_records`."
        )
    order = np.random.default_rng(seed).permutation(len(records))
    held = max(1, min(SUGGEST_HELD_APART, len(records) // 5))
    return [records[i] for i in sorted(order[held:])], [records[i] for i in sorted(order[:held])]


def suggest_loss_weights(
    spec: TaskSpec,
    train_records: Sequence[Mapping[str, Any]],
    eval_records: Sequence[Mapping[str, Any]] | None = None,
    *,
    steps: int = 50,
    batch_size: int = 32,
    learning_rate: float = TRAINING.learning_rate,
    head_lr_multiplier: float = TRAINING.head_lr_multiplier,
    seed: int = TRAINING.seed,
    tokenizer: Any | None = None,
    bert_config: Any | None = None,
) -> dict[str, dict[str, float]]:
    """Loss weights that keep any one head from dominating, found the way users do it by hand.

    Each group is trained alone for ``steps`` batches (a fresh model each
    time), its loss on ``eval_records`` is taken, and each group is weighted by
    the inverse of that loss, scaled so the weights average 1. Without
    ``eval_records``, a seeded fifth of the training records (at most
    :data:`SUGGEST_HELD_APART` rows) is held apart for it and not trained on.
    Returns ``{"weights": {...}, "losses": {...}}`` (also logged); the weights
    go into ``spec.with_loss_weights(...)``.

    Example:
        >>> suggestion = suggest_loss_weights(spec, train_records, val_records, steps=100)
        >>> spec = spec.with_loss_weights(suggestion["weights"])
    """
    from dataclasses import replace

    from mtkeras.data import make_dataset
    from mtkeras.encoder import load_tokenizer
    from mtkeras.model import build_model

    check_spec(spec, "suggest_loss_weights")
    check_int(steps, "steps", 1)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.encoder)
    if eval_records is None:
        train_records, eval_records = _held_apart(train_records, seed)
    losses = {}
    for group in spec.groups:
        alone = replace(spec, groups=(replace(group, loss_weight=1.0),))
        keras.utils.set_random_seed(seed)
        model = build_model(alone, bert_config=bert_config)
        compile_model(model, alone, learning_rate=learning_rate, warmup_steps=max(1, steps // 10),
                      head_lr_multiplier=head_lr_multiplier)
        train = make_dataset(alone, tokenizer, train_records, batch_size=batch_size, shuffle=True, seed=seed)
        model.fit(train.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
        evaluation = make_dataset(alone, tokenizer, eval_records, batch_size=batch_size)
        losses[group.name] = float(model.evaluate(evaluation, verbose=0, return_dict=True)["loss"])
    inverse = {name: 1.0 / max(loss, 1e-8) for name, loss in losses.items()}
    scale = len(inverse) / sum(inverse.values())
    weights = {name: value * scale for name, value in inverse.items()}
    logger.warning(
        "suggested loss weights (1 / loss after %d steps alone, mean 1): %s",
        steps,
        ", ".join(f"{name}: loss {losses[name]:.4f} -> weight {weights[name]:.3f}" for name in weights),
    )
    return {"weights": weights, "losses": losses}

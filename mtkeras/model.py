"""``build_model``: the functional graph text tokens → BERT → masked mean → one head per group."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from mtkeras._compat import BertConfig, keras, tf
from mtkeras.bag import PieceBag
from mtkeras.encoder import BertEncoder, check_spec_fits, load_bert_config, load_encoder
from mtkeras.kinds import Features
from mtkeras.memory import NeighbourMemory, NeighbourVote, remembering
from mtkeras.precision import resolve_mixed_precision
from mtkeras.spec import (
    DROPOUT_LAYER,
    ENCODER_LAYER,
    HEAD_SUFFIX,
    INPUT_NAMES,
    MEMORY_LAYER,
    MERGE_WINDOWS_LAYER,
    PIECE_BAG_LAYER,
    POOLING_LAYER,
    SPLIT_WINDOWS_LAYER,
    TOKEN_DROPOUT_LAYER,
    UNCERTAINTY_LAYER,
    WIDE_AND_DEEP_LAYER,
    TaskSpec,
    check_spec,
)
from mtkeras.uncertainty import TaskUncertainty
from mtkeras.windows import MergeWindows, SplitWindows


def ids_signature() -> dict[str, tf.TensorSpec]:
    """The model's inputs as a ``tf.function`` signature: int32 ``[batch, length]``, both dynamic."""
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}



def build_model(
    spec: TaskSpec,
    *,
    bert_config: BertConfig | None = None,
    mixed_precision: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> keras.Model:
    """Build the multi-head functional Keras model the spec describes.

    Args:
        spec: the task spec; its groups decide the heads.
        bert_config: build a randomly initialised encoder from this config
            instead of loading the pretrained weights in ``spec.encoder``
            (tests, training from scratch).
        mixed_precision: ``"mixed_float16"`` (GPU) or ``"mixed_bfloat16"``
            (CPU/TPU) runs the encoder and pooling in half precision with
            float32 weights; the heads and outputs stay float32. ``"auto"``:
            ``"mixed_bfloat16"`` on a CPU-only machine with bfloat16 units, else
            float32 (:func:`mtkeras.precision.resolve_mixed_precision`). Default
            float32.
        strategy: a ``tf.distribute`` strategy (``MirroredStrategy``,
            ``MultiWorkerMirroredStrategy``, ...): the model's variables are
            created under its scope, and :func:`compile_model` then creates the
            optimizer and metrics under it too. Feed ``fit`` batches of the global
            batch size; Keras splits them across replicas.

    Returns:
        A ``tf_keras.Model`` taking ``input_ids``, ``attention_mask`` and
        ``token_type_ids`` (int32 ``[batch, length]``, any length up to
        ``spec.max_tokens``: beyond ``max_length``, windows end to end) and returning
        ``{group name: output}``: probabilities
        ``[batch, labels]`` (multiclass, multilabel), values ``[batch, targets]``
        (regression) or per-token probabilities ``[batch, length, labels]`` (token_multilabel).

    Example:
        >>> model = build_model(spec)
        >>> model(tokenizer(["a text"], return_tensors="tf"))["section"].shape
        TensorShape([1, 38])
    """
    check_spec(spec, "build_model")
    unfitted = [g.name for g in spec.groups if g.normalize and g.target_stats is None]
    if unfitted:
        raise ValueError(
            f"Groups {unfitted} have normalize=True but no `target_stats`; learn them from the training data first: "
            "spec = mtkeras.fit_target_stats(spec, train_records)."
        )
    mixed_precision = resolve_mixed_precision(mixed_precision)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"`strategy` must be a tf.distribute.Strategy or None, received {strategy!r:.80}.")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _build(spec, bert_config, mixed_precision)


def check_outputs(model: Any, spec: Any, where: str, folder_hint: str = "mtk.load_model(path)") -> None:
    """Refuse a ``model`` and ``spec`` that do not belong together, naming ``where`` (the function): a ``model``
    that is not a Keras model (a TypeError; given a path, it says to load it with ``folder_hint``), a ``spec``
    that is not a :class:`TaskSpec`, other group names, or a head whose width is not its group's label count (a
    ValueError naming both)."""
    if not isinstance(model, keras.Model):
        hint = f"; for a model or run folder: {folder_hint}" if isinstance(model, (str, os.PathLike)) else ""
        raise TypeError(f"{where}: `model` must be a Keras model{hint}, received {model!r:.80} "
                        f"({type(model).__name__}).")
    check_spec(spec, where)
    outputs = dict(zip(model.output_names, model.outputs, strict=True))
    if sorted(outputs) != sorted(spec.group_names):
        raise ValueError(
            f"The model's outputs {sorted(outputs)} do not match the spec's groups {sorted(spec.group_names)}; "
            "build the model with build_model(spec), or use the spec it was built from (load_model returns both)."
        )
    for group in spec.groups:
        if outputs[group.name].shape[-1] != len(group.labels):
            raise ValueError(
                f"Group {group.name!r} lists {len(group.labels)} labels but the model's output {group.name!r} has "
                f"{outputs[group.name].shape[-1]}; the spec and the model come from different trainings."
            )


def _build(spec: TaskSpec, bert_config: BertConfig | None, mixed_precision: str | None) -> keras.Model:
    policy = mixed_precision or "float32"
    if bert_config is None:
        config = load_bert_config(spec.encoder)
        check_spec_fits(spec, config)
        encoder = load_encoder(spec.encoder, dtype=policy)
    else:
        if not isinstance(bert_config, BertConfig):
            raise TypeError(
                f"`bert_config` must be a transformers.BertConfig or None, received "
                f"{bert_config!r} ({type(bert_config).__name__})."
            )
        check_spec_fits(spec, bert_config)
        encoder = BertEncoder(bert_config, name=ENCODER_LAYER, dtype=policy)

    # Inputs: named like the Hugging Face keyword arguments, any length.
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}

    # Encoder: a row longer than max_length holds windows end to end (mtkeras.windows); each window is
    # encoded on its own, then the windows' tokens are laid end to end again.
    if spec.max_windows > 1:
        windows = SplitWindows(spec.max_length, name=SPLIT_WINDOWS_LAYER)(inputs)
        hidden = MergeWindows(name=MERGE_WINDOWS_LAYER, dtype=policy)(encoder(windows), inputs["input_ids"])
    else:
        hidden = encoder(inputs)

    # Learned loss weights (spec.loss_weighting "uncertainty"): an identity layer that owns one log-variance per
    # group, read only by the losses (mtkeras.uncertainty); every head is downstream of it, so it is always kept.
    if spec.learns_loss_weights:
        hidden = TaskUncertainty(spec.group_names, name=UNCERTAINTY_LAYER, dtype=policy)(hidden)

    # Pooling: mean over real tokens only, of every window (the mask keeps padding out).
    token_mask = tf.cast(inputs["attention_mask"], tf.bool)
    pooled = keras.layers.GlobalAveragePooling1D(name=POOLING_LAYER, dtype=policy)(hidden, mask=token_mask)
    encoded = pooled

    # Wide and deep (spec.bag_dim > 0): the bag of the text's word pieces, of every window, beside the
    # pooled vector; text-level heads read both.
    if spec.bag_dim:
        bag = PieceBag(encoder.bert_config.vocab_size, spec.bag_dim, spec.bag_buckets, spec.bag_pooling,
                       name=PIECE_BAG_LAYER)(inputs["input_ids"], inputs["attention_mask"])
        pooled = keras.layers.Concatenate(name=WIDE_AND_DEEP_LAYER, dtype="float32")([pooled, bag])
    pooled = keras.layers.Dropout(spec.head_dropout, name=DROPOUT_LAYER, dtype="float32")(pooled)

    # Heads: one per group, built by its kind on the pooled vector (text level) or on every
    # token's hidden state (token level); always float32.
    tokens = None
    if spec.needs_words:
        tokens = keras.layers.Dropout(spec.head_dropout, name=TOKEN_DROPOUT_LAYER, dtype="float32")(hidden)
    features = Features(pooled=pooled, tokens=tokens)
    stddev = encoder.bert_config.initializer_range
    voting = remembering(spec) if spec.remembers else []
    outputs = {
        group.name: group.rules.head(features, keras.initializers.TruncatedNormal(stddev=stddev),
                                     group.name + HEAD_SUFFIX if group.name in voting else group.name)
        for group in spec.groups
    }

    # Memory (spec.memory_rows > 0, filled after training by mtkeras.memory.add_memory): the text's nearest
    # training rows by its pooled encoder vector; each remembering group answers its head blended with their vote.
    if voting:
        near = NeighbourMemory(spec.memory_rows, encoded.shape[-1], spec.neighbours, spec.neighbour_temperature,
                               name=MEMORY_LAYER)(encoded)
        for name in voting:
            group = spec.group(name)
            outputs[name] = NeighbourVote(spec.memory_rows, len(group.labels), spec.neighbour_share,
                                          group.rules.neighbour_vote, name=name)(outputs[name], near)
    return keras.Model(inputs=inputs, outputs=outputs, name="mtkeras")

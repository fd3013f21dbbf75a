"""The encoder: a local Hugging Face BERT folder (or a BertConfig) as a Keras layer, and its tokenizer.

Everything is loaded from disk; nothing is fetched from a hub. Published
checkpoints ship PyTorch-layout ``model.safetensors``; they are read with
``safetensors.numpy`` and mapped onto ``TFBertModel`` with transformers' own
PyTorch→TF name mapping, so torch is not needed. ``tf_model.h5`` folders are
loaded by ``TFBertModel.from_pretrained``.
"""

from __future__ import annotations

import contextlib
import json
import os
import types
from collections.abc import Iterator
from typing import Any

from mtkeras._compat import (
    AutoTokenizer,
    BertConfig,
    TFBertModel,
    keras,
    keras_training,
    load_pytorch_state_dict_in_tf2_model,
    tf,
    transformers,
)
from mtkeras.spec import BERT_LAYER, ENCODER_LAYER, INPUT_NAMES, TaskSpec

#: Weight files an encoder folder may hold, in the order they are tried.
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "tf_model.h5")
#: Tokenizer files an encoder folder must hold one of.
VOCAB_FILES: tuple[str, ...] = ("tokenizer.json", "vocab.txt")
_FOLDER_HELP = (
    "a local Hugging Face BERT folder with config.json, one of "
    f"{list(WEIGHT_FILES)} and one of {list(VOCAB_FILES)}"
)


@keras.saving.register_keras_serializable(package="mtkeras")
class BertEncoder(keras.layers.Layer):
    """transformers' ``TFBertModel`` as a serializable Keras layer.

    Called on a dict with ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` (int32, ``[batch, length]``), it returns the last hidden
    states ``[batch, length, hidden]``. Its config is the BERT config, so a saved
    model is rebuilt with no ``custom_objects``; weights come from the save.

    Example:
        >>> encoder = BertEncoder(BertConfig(hidden_size=32, num_hidden_layers=2,
        ...                                  num_attention_heads=2, intermediate_size=64))
    """

    def __init__(self, bert_config: BertConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(bert_config, BertConfig):
            bert_config = bert_config.to_dict()
        self.bert_config = BertConfig.from_dict(dict(bert_config))
        # The inner model is named so its weights read "bert_model/bert/...":
        # transformers' PyTorch->TF mapping drops that first level. No pooler:
        # mean pooling replaces it, and unused weights would get no gradient.
        # transformers' layers take the global dtype policy when created, so this
        # layer's policy (e.g. mixed_float16, kept in its config) is made global
        # for the time it takes to create them.
        with _global_policy(self.dtype_policy.name):
            self.bert = TFBertModel(self.bert_config, add_pooling_layer=False, name=BERT_LAYER)
        if self.bert_config.hidden_act == "gelu":  # the exact GELU: fused with its Dense (below)
            for layer in self.bert.bert.encoder.layer:
                layer.intermediate.call = types.MethodType(_dense_gelu, layer.intermediate)
        for module in self.bert.submodules:  # embeddings, attention probabilities, both residual branches
            if type(module) is keras.layers.Dropout and module.noise_shape is None:
                module.call = types.MethodType(_dropout, module)

    def build_weights(self) -> None:
        """Create the encoder's variables now (eagerly), e.g. before loading weights."""
        if not self.bert.built:
            self.bert(self.bert.dummy_inputs, training=False)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        outputs = self.bert(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            token_type_ids=inputs["token_type_ids"],
            training=training,
        )
        return outputs.last_hidden_state

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple:
        shape = tuple(input_shape["input_ids"])
        return (*shape, self.bert_config.hidden_size)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["bert_config"] = self.bert_config.to_dict()
        return config


def _dense_gelu(self: Any, hidden_states: Any) -> Any:
    """transformers' ``TFBertIntermediate.call`` (Dense, then the exact GELU) on ``[tokens, hidden]``.

    Keras' ``Dense`` on ``[batch, length, hidden]`` reshapes between its MatMul and its BiasAdd
    (``tensordot``), so TensorFlow's oneDNN remapper leaves MatMul, BiasAdd and the GELU apart; on
    two-dimensional operands it fuses the three into one ``_MklNativeFusedMatMul``. That matters most in
    bfloat16, where the unfused GELU's ``Erfc`` has no vectorized CPU kernel (4x its float32 time):
    ``benchmarks/op_profile.py``, BENCHMARKS.md "Where the time goes, op by op". Same weights, same
    variables, the same answer to float32 rounding.

    In training the GELU stays unfused (its input is kept for the gradient), so in half precision it is
    computed in float32 there, where ``Erfc`` is vectorized, and cast back.
    """
    shape = tf.shape(hidden_states)
    flat = tf.reshape(hidden_states, [-1, shape[-1]])
    dense = self.dense
    out = tf.nn.bias_add(tf.matmul(flat, tf.cast(dense.kernel, flat.dtype)), tf.cast(dense.bias, flat.dtype))
    if out.dtype != tf.float32 and keras_training():
        out = tf.cast(tf.nn.gelu(tf.cast(out, tf.float32), approximate=False), out.dtype)
    else:
        out = tf.nn.gelu(out, approximate=False)
    return tf.reshape(out, tf.concat([shape[:-1], [dense.units]], axis=0))


#: Dropout's keep/drop draws are 16-bit: two from each 32-bit random number (:func:`_dropout`).
_DRAW_BITS = 16


def _dropout(self: Any, inputs: Any, training: Any = None) -> Any:
    """``keras.layers.Dropout.call`` with half the random numbers: each 32-bit draw of the stateless Philox
    generator decides two elements (16 bits each; rate 0.1 becomes 6554 / 65536, 0.10001), where Keras draws one
    float per element. Dropout's random numbers were 9% of a training step's op time in both precisions
    (``benchmarks/op_profile.py train``, BENCHMARKS.md "Where the time goes, op by op"). Each call takes a fresh
    seed from a stateful op, so runs repeat under ``tf.random.set_seed`` as Keras' dropout does. Inference
    (``training`` false) is the identity, as before."""
    rate = float(self.rate)
    if rate == 0.0:
        return tf.identity(inputs)
    if training is None:
        training = keras.backend.learning_phase()

    def dropped() -> Any:
        shape = tf.shape(inputs)
        size = tf.reduce_prod(shape)
        seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
        words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
        draws = tf.reshape(tf.bitcast(words, tf.int16), [-1])[:size]  # uniform over [-2**15, 2**15)
        dropped_draws = round(rate * 2**_DRAW_BITS)
        keep = tf.reshape(draws >= tf.constant(dropped_draws - 2 ** (_DRAW_BITS - 1), tf.int16), shape)
        scale = 1.0 / (1.0 - dropped_draws / 2**_DRAW_BITS)
        return tf.where(keep, inputs * tf.cast(scale, inputs.dtype), tf.zeros([], inputs.dtype))

    return tf.__internal__.smart_cond.smart_cond(training, dropped, lambda: tf.identity(inputs))


@contextlib.contextmanager
def _global_policy(name: str) -> Iterator[None]:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# --- folder checks -------------------------------------------------------------


def _check_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Encoder folder {folder!r} does not exist; expected {_FOLDER_HELP}.")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(
            f"Encoder folder {folder!r} has no config.json (found {sorted(os.listdir(folder))}); "
            f"expected {_FOLDER_HELP}."
        )


def _check_inside(folder: str, names: list[str]) -> None:
    """Refuse files of an encoder folder that resolve outside it (symlinks, absolute or ``..`` paths)."""
    root = os.path.realpath(folder)
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise ValueError(
                f"Encoder folder {folder!r}: {name!r} points outside the folder (to {real!r}); mtkeras reads an "
                "encoder's weights and vocabulary only from inside its folder. Copy the file into the folder."
            )


def load_bert_config(folder: str) -> BertConfig:
    """The ``BertConfig`` of a local encoder folder, checked to be a BERT model."""
    _check_folder(folder)
    _check_inside(folder, ["config.json"])
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    if raw.get("model_type") != "bert":
        raise ValueError(
            f"Encoder folder {folder!r}: config.json has model_type {raw.get('model_type')!r}; "
            "mtkeras builds on TFBertModel and accepts model_type 'bert'."
        )
    return BertConfig.from_dict(raw)


def check_spec_fits(spec: TaskSpec, config: BertConfig) -> None:
    """Raise if the spec asks for more than the encoder can do."""
    if spec.max_length > config.max_position_embeddings:
        raise ValueError(
            f"TaskSpec `max_length`={spec.max_length} exceeds the encoder's "
            f"max_position_embeddings={config.max_position_embeddings}; use a value "
            f"<= {config.max_position_embeddings}."
        )


def load_tokenizer(folder: str, config: BertConfig | None = None) -> transformers.PreTrainedTokenizerFast:
    """The fast tokenizer stored in ``folder``, checked against the encoder's vocabulary size.

    ``config`` defaults to the ``config.json`` in the same folder.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Tokenizer folder {folder!r} does not exist; expected {_FOLDER_HELP}.")
    if not any(os.path.isfile(os.path.join(folder, name)) for name in VOCAB_FILES):
        raise FileNotFoundError(
            f"Encoder folder {folder!r} has no tokenizer vocabulary (found "
            f"{sorted(os.listdir(folder))}); expected one of {list(VOCAB_FILES)}."
        )
    _check_inside(folder, [*VOCAB_FILES, "tokenizer_config.json", "special_tokens_map.json"])
    config_path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(config_path):  # files it names (vocab_file, tokenizer_file, ...) must be inside too
        with open(config_path, encoding="utf-8") as handle:
            settings = json.load(handle)
        if isinstance(settings, dict):
            _check_inside(folder, [v for k, v in settings.items() if k.endswith("_file") and isinstance(v, str)])
    # Never code from the folder: an ``auto_map`` there is ignored, not executed.
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True, trust_remote_code=False)
    if not tokenizer.is_fast:  # pragma: no cover - AutoTokenizer builds a fast one from vocab.txt
        raise TypeError(f"Encoder folder {folder!r}: could not build a fast tokenizer.")
    config = config or load_bert_config(folder)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"Encoder folder {folder!r}: the tokenizer has {len(tokenizer)} tokens but the "
            f"encoder's vocab_size is {config.vocab_size}; token ids past the embedding "
            "table would fail. Use the vocabulary the encoder was trained with."
        )
    missing = [name for name in INPUT_NAMES if name not in tokenizer.model_input_names]
    if missing:  # pragma: no cover - BERT tokenizers produce all three
        raise ValueError(f"Encoder folder {folder!r}: the tokenizer does not produce {missing}.")
    return tokenizer


def _load_safetensors(encoder: BertEncoder, path: str) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(path, framework="numpy") as handle:
        layout = (handle.metadata() or {}).get("format", "pt")
    if layout != "pt":
        raise ValueError(
            f"{path}: safetensors format {layout!r} is not supported; mtkeras reads the "
            "PyTorch layout ('pt') that published checkpoints ship, or tf_model.h5."
        )
    state_dict = load_file(path)
    encoder.build_weights()
    _, info = load_pytorch_state_dict_in_tf2_model(
        encoder.bert, state_dict, allow_missing_keys=True, output_loading_info=True
    )
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(
            f"{path} does not fit the BERT config beside it: missing weights "
            f"{info['missing_keys'][:5]}, mismatched shapes {info['mismatched_keys'][:5]}."
        )


def load_encoder(folder: str, dtype: str | None = None) -> BertEncoder:
    """A :class:`BertEncoder` with the pretrained weights of a local folder (no torch, no network).

    ``dtype`` is a Keras dtype policy name (``"mixed_float16"``, ``"mixed_bfloat16"``); weights stay float32.
    """
    config = load_bert_config(folder)
    _check_inside(folder, list(WEIGHT_FILES))
    encoder = BertEncoder(config, name=ENCODER_LAYER, dtype=dtype)
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name == "model.safetensors":
            _load_safetensors(encoder, path)
        else:
            with _global_policy("float32"):
                pretrained = TFBertModel.from_pretrained(
                    folder, config=config, add_pooling_layer=False, local_files_only=True
                )
            encoder.build_weights()
            encoder.bert.set_weights(pretrained.get_weights())
        return encoder
    raise FileNotFoundError(
        f"Encoder folder {folder!r} has no weights (found {sorted(os.listdir(folder))}); "
        f"expected one of {list(WEIGHT_FILES)}, or pass a BertConfig to build a randomly "
        "initialised encoder."
    )

"""Shared fixtures: a tiny random BERT folder (hidden 32, 2 layers) written in a tmp dir."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

import mtkeras as mtk
from mtkeras._compat import BertConfig, TFBertModel

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "alpha beta gamma delta red blue green yellow the a an of and to is in it for on with "
    "program file network editor image sound text data tool library server client game "
    "convert view edit play read write ##s ##ing ##ed ##er"
).split()
VOCAB = list(dict.fromkeys(SPECIAL + WORDS + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")))


#: Tests measured over 15 s alone that run in the default suite for one parameter only; the other parameters
#: are marked slow (run with `-m slow`). The token-level kind, the one with the most moving parts, stays.
SLOW_PARAMETERS = {
    "tests/test_kinds.py::test_saved_model_tflite_and_client_follow_the_declaration": ("multiclass", "multilabel",
                                                                                       "regression"),
    "tests/test_kinds_more.py::test_each_new_kind_alone_also_in_bfloat16": ("count", "marks"),
}


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        base, _, parameter = item.nodeid.partition("[")
        if parameter.rstrip("]") in SLOW_PARAMETERS.get(base, ()):
            item.add_marker(pytest.mark.slow)


def tiny_config(**overrides) -> BertConfig:
    values = dict(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    return BertConfig(**values)


def write_vocab(folder: str, vocab=VOCAB) -> None:
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocab) + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, handle)


def write_pt_safetensors(model: TFBertModel, path: str) -> None:
    """Save a TF BERT's weights in the PyTorch layout of a published ``BertModel`` checkpoint
    (names like ``encoder.layer.0.attention.self.query.weight``, kernels transposed)."""
    from safetensors.numpy import save_file
    from transformers.modeling_tf_pytorch_utils import (
        TransposeType,
        convert_tf_weight_name_to_pt_weight_name,
    )

    tensors = {}
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(
            weight.name, start_prefix_to_remove="", tf_weight_shape=weight.shape
        )
        value = weight.numpy()
        if transpose is TransposeType.SIMPLE:
            value = value.T
        tensors[name.removeprefix("bert.")] = np.ascontiguousarray(value)
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> str:
    """config.json + vocab.txt + PyTorch-layout model.safetensors of a random tiny BERT."""
    folder = str(tmp_path_factory.mktemp("tiny_bert"))
    config = tiny_config()
    config.save_pretrained(folder)
    write_vocab(folder)
    mtk.keras.utils.set_random_seed(1234)  # the same "pretrained" weights whatever ran before
    source = TFBertModel(config, add_pooling_layer=False, name="source")
    source(source.dummy_inputs)
    write_pt_safetensors(source, os.path.join(folder, "model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_spec(tiny_folder) -> mtk.TaskSpec:
    return mtk.TaskSpec(
        encoder=tiny_folder,
        max_length=32,
        groups=[
            mtk.LabelGroup("topic", "multiclass", labels=["alpha", "beta", "gamma"], loss_weight=0.7),
            mtk.LabelGroup("colour", "multilabel", labels=["red", "blue", "green", "yellow"], loss_weight=4.0),
        ],
    )


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_folder):
    return mtk.load_tokenizer(tiny_folder)


@pytest.fixture()
def tiny_model(tiny_spec):
    mtk.keras.utils.set_random_seed(1)
    return mtk.build_model(tiny_spec, bert_config=tiny_config())


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """Texts whose labels are readable off their words: a learnable toy task."""
    rng = np.random.default_rng(seed)
    topics, colours = ["alpha", "beta", "gamma"], ["red", "blue", "green", "yellow"]
    fillers = ["the", "program", "file", "network", "editor", "data", "tool", "server"]
    records = []
    for _ in range(n):
        topic = str(rng.choice(topics))
        chosen = [c for c in colours if rng.random() < 0.4]
        words = [topic, *chosen, *rng.choice(fillers, size=int(rng.integers(1, 6)))]
        rng.shuffle(words)
        records.append({"text": " ".join(words), "topic": topic, "colour": chosen})
    return records


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture()
def config_file(tmp_path, tiny_folder):
    write_jsonl(tmp_path / "train.jsonl", synthetic_records(192, seed=0))
    write_jsonl(tmp_path / "validation.jsonl", synthetic_records(48, seed=1))
    config = {
        "spec": {
            "encoder": tiny_folder,
            "max_length": 32,
            "groups": [{"name": "topic", "kind": "multiclass"},
                       {"name": "colour", "kind": "multilabel", "loss_weight": 2.0}],
        },
        "data": {"train": "train.jsonl", "validation": "validation.jsonl"},
        "training": {"epochs": 6, "batch_size": 16, "learning_rate": 5e-3, "head_lr_multiplier": 50},
        "output": "run",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def all_kinds_spec(tiny_folder):
    return mtk.TaskSpec(
        encoder=tiny_folder,
        max_length=32,
        groups=[
            mtk.LabelGroup("topic", "multiclass", labels=["alpha", "beta", "gamma"]),
            mtk.LabelGroup("colour", "multilabel", labels=["red", "blue", "green", "yellow"]),
            mtk.LabelGroup("count", "regression", labels=["count"]),
            mtk.LabelGroup("marks", "token_multilabel", labels=["colour", "topic"]),
        ],
    )


@pytest.fixture(scope="session")
def all_kinds_export(all_kinds_spec, tiny_tokenizer, tmp_path_factory):
    """An untrained tiny model with one group of every kind: random heads still give well-formed answers."""
    mtk.keras.utils.set_random_seed(7)
    model = mtk.build_model(all_kinds_spec, bert_config=tiny_config())
    base = tmp_path_factory.mktemp("fuzz") / "model"
    return mtk.export_saved_model(model, base, spec=all_kinds_spec, tokenizer=tiny_tokenizer)

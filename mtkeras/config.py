"""The run config (YAML or JSON) behind ``mtkeras train``: spec, data, hyper-parameters, output.

Example (YAML)::

    spec:
      encoder: models/minilm          # relative paths are relative to this file
      max_length: 128
      groups:
        - {name: section, kind: multiclass}          # labels omitted: taken from the train + validation data
        - {name: use, kind: multilabel, loss_weight: 4.0}
    data: {train: data/train.jsonl, validation: data/validation.jsonl}
    training: {epochs: 3, learning_rate: 1.0e-4}
    output: runs/debtags
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

#: Every accepted key with its default; ``None`` under ``spec``/``data`` marks a required value.
DEFAULTS: dict[str, Any] = {
    "spec": None,
    "data": {
        "train": None,
        "validation": None,
        "label_delimiter": "|",
        "drop_empty_texts": False,
        "train_rows": 0,
    },
    "training": {
        "epochs": 3,
        "batch_size": 32,
        "learning_rate": 1e-4,
        "warmup_proportion": 0.1,
        "weight_decay": 0.01,
        "head_lr_multiplier": 100.0,
        "beta_2": 0.98,
        "seed": 0,
        "padding": None,
        "jit_compile": False,
        "mixed_precision": None,
        "monitor": "val_mean_roc_auc",
        "monitor_mode": "max",
        "early_stopping_patience": 2,
        "suggest_loss_weights_steps": 0,
        "distribute": None,
    },
    "thresholds": {"tune": True, "floor": 0.1, "min_positives": 5},
    "output": None,
}
_PATH_KEYS = (("data", "train"), ("data", "validation"), ("output",), ("spec", "encoder"))


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise TypeError(f"Config {where or 'root'} must be a mapping, received {given!r:.80}.")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown config key(s) {[f'{where}{key}' for key in unknown]}; valid keys"
            f"{' under ' + where.rstrip('.') if where else ''}: {sorted(defaults)}."
        )
    merged = {}
    for key, default in defaults.items():
        value = given.get(key, copy.deepcopy(default))
        if isinstance(default, Mapping) and key != "spec":
            value = _merge(default, value or {}, f"{where}{key}.")
        merged[key] = value
    return merged


def parse_config(data: Mapping[str, Any], base_dir: str = ".") -> dict[str, Any]:
    """A full config from a partial one: defaults filled in, keys and required values checked."""
    config = _merge(DEFAULTS, data, "")
    if not isinstance(config["spec"], Mapping):
        raise ValueError(f"Config `spec` is required: a task spec mapping, received {config['spec']!r:.80}.")
    for keys in (("data", "train"), ("data", "validation"), ("output",)):
        section = config
        for key in keys[:-1]:
            section = section[key]
        if not isinstance(section[keys[-1]], str) or not section[keys[-1]]:
            raise ValueError(f"Config `{'.'.join(keys)}` is required: a path, received {section[keys[-1]]!r}.")
    for keys in _PATH_KEYS:
        section = config
        for key in keys[:-1]:
            section = section[key]
        value = section.get(keys[-1])
        if isinstance(value, str) and not os.path.isabs(value):
            section[keys[-1]] = os.path.normpath(os.path.join(base_dir, value))
    training = config["training"]
    if not (isinstance(training["epochs"], int) and training["epochs"] >= 1):
        raise ValueError(f"Config `training.epochs` must be an integer >= 1, received {training['epochs']!r}.")
    if not (isinstance(training["warmup_proportion"], (int, float)) and 0 <= training["warmup_proportion"] < 1):
        raise ValueError(
            f"Config `training.warmup_proportion` must be in [0, 1), received {training['warmup_proportion']!r}."
        )
    from mtkeras.training import DISTRIBUTE

    if training["distribute"] not in DISTRIBUTE:
        raise ValueError(
            f"Config `training.distribute` must be one of {list(DISTRIBUTE)}, received {training['distribute']!r}."
        )
    from mtkeras.data import PADDINGS
    from mtkeras.model import MIXED_PRECISION

    if training["padding"] is not None and training["padding"] not in PADDINGS:
        raise ValueError(
            f"Config `training.padding` must be null (bucketed; bucketed_fixed with jit_compile) or one of "
            f"{list(PADDINGS)}, received {training['padding']!r}."
        )
    if not isinstance(training["jit_compile"], bool):
        raise ValueError(f"Config `training.jit_compile` must be true or false, received {training['jit_compile']!r}.")
    if training["mixed_precision"] not in MIXED_PRECISION:
        raise ValueError(
            f"Config `training.mixed_precision` must be one of {list(MIXED_PRECISION)}, received "
            f"{training['mixed_precision']!r}."
        )
    floor = config["thresholds"]["floor"]
    if not (isinstance(floor, (int, float)) and 0 <= floor <= 1):
        raise ValueError(f"Config `thresholds.floor` must be a number in [0, 1], received {floor!r}.")
    return config


def _set_dotted(data: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    section = data
    for key in keys[:-1]:
        section = section.setdefault(key, {})
        if not isinstance(section, dict):
            raise ValueError(f"--set {dotted}: {key!r} is not a section.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    section[keys[-1]] = value


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config; ``overrides`` are ``key.sub=value`` strings."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error}).") from None
    elif path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    else:
        raise ValueError(f"{path}: unknown config format; accepted extensions: .yaml, .yml, .json.")
    data = data or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: the config must be a mapping, received {data!r:.80}.")
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"--set expects key.sub=value, received {override!r}.")
        key, raw = override.split("=", 1)
        _set_dotted(data, key.strip(), raw)
    return parse_config(data, base_dir=os.path.dirname(os.path.abspath(path)))

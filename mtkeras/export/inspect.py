"""``mtkeras inspect EXPORT``: what an export serves — signatures, labels, thresholds — and one sample answer.

``saved_model_cli show`` fails on an mtkeras export (``Op type not registered 'NormalizeUTF8'``) because it does not
load TF Text's kernels; this loads them first, as TF Serving links them.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from mtkeras.serving import METADATA_FILE

#: The text ``inspect`` answers when none is given.
SAMPLE_TEXT = "GNU image manipulation program"


def check_export_folder(path: str | os.PathLike) -> str:
    """``path`` if it is a complete mtkeras SavedModel version folder, else an error saying what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Export {path!r} does not exist.")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"Export {path!r} is a file; expected a SavedModel version folder "
                                 "(<name>/<version>/).")
    versions = sorted(name for name in os.listdir(path) if name.isdigit())
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        hint = (f"; it holds versions {versions}: pass one of them, e.g. {os.path.join(path, versions[-1])!r}"
                if versions else "; a complete export also has variables/ and assets/ (half-written or not an export)")
        raise FileNotFoundError(f"{path!r} is not a SavedModel: saved_model.pb is missing{hint}.")
    if not os.path.isdir(os.path.join(path, "variables")):
        raise FileNotFoundError(f"{path!r} is a half-written SavedModel: variables/ is missing.")
    if not os.path.exists(os.path.join(path, METADATA_FILE)):
        raise ValueError(f"{path!r} is a SavedModel but not an mtkeras export: {METADATA_FILE} is missing.")
    return path


def inspect_export(path: str | os.PathLike, texts: list[str] | None = None,
                   signature: str = "serving_default") -> dict[str, Any]:
    """Signatures (inputs and outputs with dtypes and shapes), per group labels/thresholds/temperature, and the
    answers of ``signature`` to ``texts`` (default: one sample text; ``[]``: run nothing).

    Example:
        >>> inspect_export("saved_models/debtags/1", ["GNU image manipulation program"])["answers"]
    """
    from mtkeras._compat import tf  # first: it sets up tf-keras before TensorFlow is imported

    importlib.import_module("tensorflow_text")  # registers the tokenizer's ops before the graph loads

    path = check_export_folder(path)
    with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as handle:
        metadata = json.load(handle)
    loaded = tf.saved_model.load(path)
    if signature not in loaded.signatures:
        raise ValueError(f"Export {path!r} has no signature {signature!r}; it has {sorted(loaded.signatures)}.")
    signatures = {}
    for name, function in loaded.signatures.items():
        inputs = function.structured_input_signature[1]
        signatures[name] = {
            "inputs": {key: f"{spec.dtype.name} {spec.shape}" for key, spec in sorted(inputs.items())},
            "outputs": {key: f"{spec.dtype.name} {spec.shape}"
                        for key, spec in sorted(function.structured_outputs.items())},
        }
    report: dict[str, Any] = {
        "export": os.path.abspath(path),
        "signatures": signatures,
        "groups": {name: {key: group[key] for key in ("kind", "labels", "thresholds", "temperature")}
                   for name, group in metadata["groups"].items()},
        "max_length": metadata["max_length"],
        "max_windows": metadata.get("max_windows", 1),
    }
    texts = [SAMPLE_TEXT] if texts is None else texts
    if texts:
        inputs = loaded.signatures[signature].structured_input_signature[1]
        if len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string:
            raise ValueError(f"Signature {signature!r} takes {sorted(inputs)}, not texts; inspect answers texts "
                             "through a text signature (serving_default), or pass no texts.")
        outputs = loaded.signatures[signature](**{next(iter(inputs)): tf.constant(texts)})
        report["answers"] = {"texts": texts, **{key: _plain(value.numpy()) for key, value in sorted(outputs.items())}}
    return report


def _plain(value: Any) -> Any:
    """A numpy output as JSON-ready lists (strings decoded, floats rounded)."""
    import numpy as np

    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value).tolist()
    if np.issubdtype(value.dtype, np.floating):
        return np.round(value.astype(np.float64), 6).tolist()
    return value.tolist()

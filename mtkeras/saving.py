"""Save and load a model folder: Keras model, spec and tokenizer side by side, written atomically."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from typing import Any

from mtkeras._compat import keras
from mtkeras._io import disk_error
from mtkeras.encoder import load_tokenizer
from mtkeras.model import check_outputs
from mtkeras.spec import ENCODER_LAYER, TaskSpec

MODEL_FILE = "model.keras"
SPEC_FILE = "spec.json"
TOKENIZER_DIR = "tokenizer"
#: Inside a run folder from ``mtkeras train``: the folder save_model writes.
RUN_MODEL_DIR = "model"
#: The modules that register the Keras objects a saved model may hold (encoder, bag of pieces, windows, heads and
#: losses, learned loss weights, a memory of training rows, the optimizer): imported with this module, so that
#: Keras finds each by its registered name in a process that has built no model (a layer Keras does not find comes
#: back as its class name, a string).
_REGISTERING_MODULES: tuple[str, ...] = ("mtkeras.encoder", "mtkeras.bag", "mtkeras.windows", "mtkeras.heads",
                                         "mtkeras.uncertainty", "mtkeras.memory", "mtkeras.optim")
for _module in _REGISTERING_MODULES:
    importlib.import_module(_module)


def save_model(
    model: keras.Model,
    spec: TaskSpec,
    folder: str | os.PathLike,
    tokenizer: Any | None = None,
    *,
    overwrite: bool = False,
) -> str:
    """Write ``folder/`` with ``model.keras``, ``spec.json`` and ``tokenizer/``.

    The folder is assembled beside its final place and renamed into it when
    complete, so a reader sees the old folder or the new one, never half of one.

    Example:
        >>> save_model(model, spec, "runs/debtags")
        >>> model, spec, tokenizer = load_model("runs/debtags")
    """
    folder = os.path.abspath(os.fspath(folder))
    _check_replaceable(folder, overwrite)
    check_outputs(model, spec, "save_model")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.encoder)
    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    except OSError as error:
        raise disk_error(error, "the model folder", parent) from error
    try:
        _save_without_optimizer(model, os.path.join(staging, MODEL_FILE))
        spec.save(os.path.join(staging, SPEC_FILE))
        tokenizer.save_pretrained(os.path.join(staging, TOKENIZER_DIR))
        if os.path.exists(folder):
            retired = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.old-", dir=parent)
            os.replace(folder, os.path.join(retired, "old"))
            os.replace(staging, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise disk_error(error, f"the model folder {os.path.basename(folder)!r}", parent) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _what_it_is(folder: str) -> str:
    """What a folder that is not a model folder looks like, for the error: an export, or a run not finished."""
    if os.path.exists(os.path.join(folder, "saved_model.pb")):
        return ("; this is a SavedModel export: serve it (TF Serving, mtk.ServingClient) or load it with "
                "tf.saved_model.load, and give this command the model or run folder it was exported from")
    if os.path.isdir(os.path.join(folder, "backup")) or os.path.exists(os.path.join(folder, "history.csv")):
        return ("; this looks like a run of `mtkeras train` that has not finished (no model/ yet): run the same "
                "`mtkeras train` command again to resume it")
    return ""


def _check_replaceable(folder: str, overwrite: bool) -> None:
    """Refuse to write ``folder`` where that would lose something: an existing path unless ``overwrite``, and
    never a file or a folder that holds something other than a model (``overwrite`` replaces a model folder)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{folder!r} is a file, not a model folder; save_model writes a folder "
                              f"({MODEL_FILE}, {SPEC_FILE}, {TOKENIZER_DIR}/): pass the path of a folder.")
    if not os.path.exists(folder):
        return
    if not overwrite:
        raise FileExistsError(f"Model folder {folder!r} already exists; pass overwrite=True to replace it.")
    entries = sorted(os.listdir(folder))
    if entries and MODEL_FILE not in entries and SPEC_FILE not in entries:
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        raise FileExistsError(
            f"{folder!r} holds {entries[:5]}{more} but no model ({MODEL_FILE}, {SPEC_FILE}); overwrite=True "
            "replaces a model folder only, never other files: choose a new or empty folder."
        )


def _save_without_optimizer(model: keras.Model, path: str) -> None:
    """``model.save(path)`` without the optimizer's state: :func:`load_model` never reads it (it loads uncompiled),
    and for a trained model it is twice the weights (RAdam's two moments per weight: 251 of 377 MB for MiniLM with
    the bag). The ``.keras`` format ignores ``include_optimizer``, so the optimizer is set aside while saving."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        model.save(path)
        return
    model.optimizer = None
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def load_model(folder: str | os.PathLike) -> tuple[keras.Model, TaskSpec, Any]:
    """``(model, spec, tokenizer)`` from a folder written by :func:`save_model` (or a run folder holding one).

    The Keras file is loaded with ``safe_mode=True``: no code stored in it runs.
    """
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"Model folder {folder!r} does not exist.")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder!r} is a file, not a model folder; expected a folder written by "
                                 f"save_model (or a run folder of `mtkeras train`).")
    if not os.path.exists(os.path.join(folder, MODEL_FILE)) and os.path.isdir(os.path.join(folder, RUN_MODEL_DIR)):
        folder = os.path.join(folder, RUN_MODEL_DIR)  # a run folder from `mtkeras train`
    for name in (MODEL_FILE, SPEC_FILE, TOKENIZER_DIR):
        if not os.path.exists(os.path.join(folder, name)):
            raise FileNotFoundError(
                f"{folder!r} is not an mtkeras model folder: {name!r} is missing; expected "
                f"{[MODEL_FILE, SPEC_FILE, TOKENIZER_DIR]} as written by save_model{_what_it_is(folder)}."
            )
    spec = TaskSpec.load(os.path.join(folder, SPEC_FILE))
    model = _load_keras_file(os.path.join(folder, MODEL_FILE))
    if sorted(model.output_names) != sorted(spec.group_names):
        raise ValueError(
            f"{folder!r}: the model's outputs {sorted(model.output_names)} do not match "
            f"spec.json's groups {sorted(spec.group_names)}."
        )
    widths = {name: output.shape[-1] for name, output in zip(model.output_names, model.outputs, strict=True)}
    for group in spec.groups:
        if widths[group.name] != len(group.labels):
            raise ValueError(
                f"{os.path.join(folder, SPEC_FILE)}: group {group.name!r} lists {len(group.labels)} labels but "
                f"the model's head {group.name!r} in {MODEL_FILE} has {widths[group.name]} outputs; the spec and "
                "the model come from different trainings."
            )
    encoder = model.get_layer(ENCODER_LAYER)
    tokenizer = load_tokenizer(os.path.join(folder, TOKENIZER_DIR), config=encoder.bert_config)
    return model, spec, tokenizer


def _load_keras_file(path: str) -> keras.Model:
    """``keras.models.load_model`` in safe mode, with errors that name the file and say what is wrong with it."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip archive ({os.path.getsize(path)} bytes): truncated, or not a .keras "
                         "file; save or copy the model again.")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    if "config.json" not in names:
        raise ValueError(f"{path}: a zip archive, but not a Keras model (no config.json inside; holds "
                         f"{sorted(names)[:5]}).")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise ValueError(f"{path}: could not be loaded as a Keras model ({message}).") from error

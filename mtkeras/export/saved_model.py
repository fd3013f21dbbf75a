"""SavedModel export for TF Serving: versioned folder, raw-text and token-id signatures, written atomically."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from typing import Any

from mtkeras._checks import check_bool, check_version
from mtkeras._compat import keras, tf, transformers
from mtkeras._io import disk_error, write_json
from mtkeras.calibration import calibrated
from mtkeras.defaults import EXPORT_JIT_COMPILE, EXPORT_PRECISION, XLA_LENGTH_STEP
from mtkeras.export.text_graph import InGraphTokenizer, tokenizer_settings, write_vocab
from mtkeras.export.warmup import WARMUP_FILE, write_warmup
from mtkeras.model import ids_signature
from mtkeras.precision import check_precision, model_precision, with_precision
from mtkeras.serving import METADATA_FILE
from mtkeras.spec import TaskSpec

logger = logging.getLogger("mtkeras")

#: The signatures of an export, and what they take.
SIGNATURES: dict[str, str] = {
    "serving_default": "text: string [batch] of raw UTF-8 texts",
    "predict_ids": "input_ids, attention_mask, token_type_ids: int32 [batch, length]",
}
_STAGING_PREFIX = ".mtkeras-export-"


def resolve_source(
    source: Any, spec: TaskSpec | None, tokenizer: Any | None, need_tokenizer: bool = True
) -> tuple[keras.Model, TaskSpec, Any]:
    """``(model, spec, tokenizer)`` from a run/model folder, or from a Keras model and its spec."""
    from mtkeras.encoder import load_tokenizer
    from mtkeras.saving import load_model

    if isinstance(source, (str, os.PathLike)):
        model, saved_spec, saved_tokenizer = load_model(source)
        return model, spec or saved_spec, tokenizer or saved_tokenizer
    if not isinstance(source, keras.Model):
        raise TypeError(
            f"`model_or_run` must be a tf_keras Model or the path of a run/model folder, received "
            f"{source!r:.80} ({type(source).__name__})."
        )
    if spec is None:
        raise ValueError("Exporting a Keras model needs its `spec=` (a run or model folder carries its own).")
    if tokenizer is None and need_tokenizer:
        tokenizer = load_tokenizer(spec.encoder)
    return source, spec, tokenizer


class ServingModule(tf.Module):
    """The exported graph: in-graph tokenizer + model + per-group decoding."""

    def __init__(
        self, model: keras.Model, spec: TaskSpec, tokenizer: Any, vocab_path: str, jit_compile: bool = False
    ) -> None:
        super().__init__(name="mtkeras")
        self.model = model
        self.spec = spec
        # With XLA, texts are padded to a multiple of XLA_LENGTH_STEP tokens: a few shapes to compile.
        self.tokenizer = InGraphTokenizer(vocab_path, tokenizer_settings(tokenizer), spec.max_length,
                                          length_multiple=XLA_LENGTH_STEP if jit_compile else 1,
                                          max_windows=spec.max_windows, stride=spec.stride)
        self._forward = tf.function(lambda inputs: model(inputs, training=False), jit_compile=jit_compile)
        self.spec_asset = tf.saved_model.Asset(os.path.join(os.path.dirname(vocab_path), "spec.json"))

    def _outputs(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = self._forward(inputs)
        return calibrated(self.spec, {name: tf.cast(outputs[name], tf.float32) for name in self.spec.group_names})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.spec.needs_words:
            inputs, words = self.tokenizer.tokenize_words(text)
        else:
            inputs, words = self.tokenizer(text), None
        values = self._outputs(inputs)
        outputs = {}
        for group in self.spec.groups:
            served = group.rules.serve(values[group.name], words)
            declared = [output.suffix for output in group.rules.outputs]
            if sorted(served) != sorted(declared):  # the declaration is the contract clients read
                raise RuntimeError(f"{group.kind} serves {sorted(served)} but declares {declared}.")
            for output in group.rules.outputs:
                outputs[f"{group.name}_{output.suffix}"] = served[output.suffix]
        return outputs

    @tf.function(input_signature=[ids_signature()])
    def serve_ids(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return raw_outputs(self.spec, self._outputs(inputs))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.tokenizer(text)


def raw_outputs(spec: TaskSpec, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The model's outputs named for ``predict_ids`` and TFLite: ``<group>_<kind's raw output>``."""
    return {f"{group.name}_{group.rules.raw_output.suffix}": values[group.name] for group in spec.groups}


def ids_function(model: keras.Model, spec: TaskSpec) -> Any:
    """The model as TFLite and ONNX export it: token ids in (int32 ``[batch, length]``, named like the HF keyword
    arguments), ``predict_ids`` outputs out, calibrated with the spec's temperatures."""

    @tf.function(input_signature=[ids_signature()])
    def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = model(inputs, training=False)
        return raw_outputs(spec, calibrated(spec, {name: tf.cast(outputs[name], tf.float32)
                                                   for name in spec.group_names}))

    return serve


def ids_metadata(spec: TaskSpec) -> dict[str, Any]:
    """:func:`export_metadata` for a token-ids model file (TFLite, ONNX): one signature, ``predict_ids`` outputs;
    the caller decodes labels from probabilities and thresholds (words: from the first piece of each)."""
    metadata = export_metadata(spec)
    metadata["signatures"] = {"serving_default": SIGNATURES["predict_ids"]}
    for group in metadata["groups"].values():
        group["outputs"] = group.pop("predict_ids_output")
        group.pop("serving_default_outputs")
    return metadata


def export_metadata(spec: TaskSpec, jit_compile: bool = False, precision: str = "float32") -> dict[str, Any]:
    """What a client needs to read an export: signatures, outputs per group, labels, thresholds, spec."""
    outputs = {}
    for group in spec.groups:
        raw = group.rules.raw_output
        outputs[group.name] = {
            "kind": group.kind,
            "labels": list(group.labels),
            "thresholds": None if group.thresholds is None else list(group.thresholds),
            "temperature": group.temperature,
            "serving_default_outputs": {f"{group.name}_{o.suffix}": o.layout() for o in group.rules.outputs},
            "predict_ids_output": {f"{group.name}_{raw.suffix}": raw.layout()},
        }
    return {
        "format": "mtkeras-export",
        "format_version": 1,
        "signatures": SIGNATURES,
        "groups": outputs,
        "max_length": spec.max_length,
        "max_windows": spec.max_windows,
        "stride": spec.stride,
        "jit_compile": bool(jit_compile),
        "precision": precision,
        "invalid_utf8": "bytes that are not valid UTF-8 are replaced by U+FFFD, which is then dropped",
        "spec": spec.to_dict(),
        "versions": {"tensorflow": tf.__version__, "transformers": transformers.__version__},
    }


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_export_name(name: Any) -> str:
    """A model name safe as one folder name: letters, digits, '_', '-', '.'; no separators, no '..'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"Export name must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit and "
            f"without '..' (it becomes a folder name); received {name!r}."
        )
    return name


_DISK_REASONS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded",
                 "File too large")


def _reason(message: str) -> str:
    """The cause in one of TensorFlow's long op error messages."""
    return next((reason for reason in _DISK_REASONS if reason in message), message.strip().splitlines()[-1][-200:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_staging(folder: str, prefix: str = _STAGING_PREFIX, fields: int = 1) -> None:
    """Remove the staging folders in ``folder`` of exports that died (killed, crashed); a live export's stays.
    Their names are ``<prefix>`` then ``fields`` fields (the SavedModel's: its version), the process id and
    ``tempfile.mkdtemp``'s random part, joined by ``-``; a name that does not parse is removed too."""
    for entry in os.listdir(folder):
        if not entry.startswith(prefix):
            continue
        # .mtkeras-export-<version>-<pid>-<random>, .mtkeras-quantize-<pid>-<random>: a process on this machine
        parts = entry[len(prefix):].split("-")
        pid = int(parts[fields]) if len(parts) >= fields + 2 and parts[fields].isdigit() else None
        if pid is None or not _pid_alive(pid):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def export_saved_model(
    model_or_run: Any,
    base_dir: str | os.PathLike,
    version: int = 1,
    *,
    spec: TaskSpec | None = None,
    tokenizer: Any | None = None,
    overwrite: bool = False,
    jit_compile: bool = EXPORT_JIT_COMPILE,
    warmup: bool = True,
    precision: str = EXPORT_PRECISION,
) -> str:
    """Write a TF Serving SavedModel to ``base_dir/<version>/`` and return that path.

    Signatures: ``serving_default`` (raw texts in; per group ``<group>_probabilities``
    and ``<group>_labels``, ``<group>_values`` for regression, and per word
    ``<group>_words``/``<group>_offsets`` for token-level groups) and ``predict_ids``
    (token ids in; the model's outputs);
    ``tokenize`` exposes the in-graph tokenizer. Labels, thresholds and the spec
    are in ``assets/spec.json`` and ``assets.extra/mtkeras.json``.

    The version is assembled in a hidden folder beside it and renamed into place
    when complete: TF Serving, polling ``base_dir``, never sees half a model.
    An existing version is refused unless ``overwrite=True``. ``jit_compile=True``
    marks the model part of the graph for XLA (the tokenizer ops stay outside it)
    and pads texts to a multiple of 16 tokens so XLA compiles a few shapes. With ``warmup`` (default) the
    version holds ``assets.extra/tf_serving_warmup_requests``: ``serving_default`` requests at a few lengths
    and batch sizes that TF Serving replays on load (:mod:`mtkeras.export.warmup`). ``precision``
    (``"float32"``, ``"bfloat16"``, ``"float16"``; not ``"auto"``: the serving machine is not this one) is
    what the exported encoder computes in (weights stay float32, cast on use; outputs float32: see
    :mod:`mtkeras.precision`; bfloat16 for CPUs with bfloat16 units, float16 for GPUs).

    Example:
        >>> export_saved_model("runs/debtags", "saved_models/debtags", version=1)
        'saved_models/debtags/1'
    """
    version = check_version(version)
    check_bool(warmup, "warmup")
    if check_precision(precision) == "auto":
        raise ValueError("`precision` 'auto' is refused for an export: it would pick the precision of the "
                         "machine exporting, not of the one serving; pass 'float32', 'bfloat16' or 'float16'.")
    if isinstance(model_or_run, keras.Model) and (
        model_or_run.optimizer is None or int(model_or_run.optimizer.iterations.numpy()) == 0
    ):
        logger.warning("Exporting a model that was never fitted (not compiled, or no training step): "
                       "its heads are untrained.")
    model, spec, tokenizer = resolve_source(model_or_run, spec, tokenizer)
    model = with_precision(model, spec, precision)
    base_dir = os.path.abspath(os.fspath(base_dir))
    final = os.path.join(base_dir, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"Export {final!r} already exists; pass overwrite=True or use another version.")
    if os.path.exists(final) and not os.path.exists(os.path.join(final, "saved_model.pb")) and (
            not os.path.isdir(final) or os.listdir(final)):
        raise FileExistsError(f"{final!r} exists and is not a SavedModel (no saved_model.pb); overwrite=True replaces "
                              "an export's version only, never other files: use another version or base folder.")
    staging = None
    try:
        os.makedirs(base_dir, exist_ok=True)
        remove_dead_staging(base_dir)
        staging = tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{version}-{os.getpid()}-", dir=base_dir)
        work = os.path.join(staging, "work")  # vocab and spec before they become assets; goes with staging
        os.makedirs(work)
        vocab_path = write_vocab(tokenizer, os.path.join(work, "vocab.txt"))
        spec.save(os.path.join(work, "spec.json"))
        module = ServingModule(model, spec, tokenizer, vocab_path, jit_compile=jit_compile)
        exported = os.path.join(staging, "model")
        tf.saved_model.save(
            module,
            exported,
            signatures={"serving_default": module.serve_text, "predict_ids": module.serve_ids,
                        "tokenize": module.tokenize},
        )
        os.makedirs(os.path.join(exported, "assets.extra"), exist_ok=True)
        write_json(export_metadata(spec, jit_compile, model_precision(model)), os.path.join(exported, METADATA_FILE))
        if warmup:  # inside the staging folder: a visible version has all of it or none
            write_warmup(os.path.join(exported, WARMUP_FILE), spec, tokenizer, model_name=os.path.basename(base_dir))
        if os.path.exists(final):  # overwrite: retire the old version in one rename, then drop it
            os.replace(final, os.path.join(staging, "retired"))
        os.replace(exported, final)
    except OSError as error:
        raise disk_error(error, f"SavedModel version {version}", base_dir) from error
    except tf.errors.OpError as error:  # TensorFlow's own writers report disk errors this way
        if not isinstance(error, (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
                                  tf.errors.FailedPreconditionError, tf.errors.UnknownError)):
            raise
        raise disk_error(OSError(None, _reason(error.message)), f"SavedModel version {version}", base_dir) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return final

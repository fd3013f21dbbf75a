"""TFLite export (token-id inputs) for teams that run models with LiteRT."""

from __future__ import annotations

import logging
import os
from typing import Any

from mtkeras._checks import check_option
from mtkeras._compat import tf
from mtkeras._io import write_atomic, write_json
from mtkeras.defaults import QUANTIZE
from mtkeras.export.saved_model import ids_function, ids_metadata, resolve_source
from mtkeras.precision import with_precision
from mtkeras.spec import TaskSpec

logger = logging.getLogger("mtkeras")



def export_tflite(
    model_or_run: Any,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    spec: TaskSpec | None = None,
    overwrite: bool = False,
) -> str:
    """Write a ``.tflite`` model taking ``input_ids``, ``attention_mask``, ``token_type_ids``
    (int32 ``[batch, length]``) and returning the model's outputs as ``predict_ids``
    names them (``<group>_probabilities``, ``<group>_values``, ``<group>_token_probabilities``);
    labels and thresholds go to ``<path>.json`` beside it. The graph is float32 (``quantize`` makes it smaller);
    a model built in mixed precision is rebuilt in float32 first. TFLite builtin ops only where the
    graph allows it (it does for BERT); otherwise TF select ops, with a warning.

    Example:
        >>> export_tflite("runs/debtags", "saved_models/debtags.tflite", quantize="dynamic")
    """
    check_option(quantize, "quantize", QUANTIZE)
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"TFLite `path` {path!r} is a folder; expected a file path such as model.tflite.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
    model, spec, _ = resolve_source(model_or_run, spec, None, need_tokenizer=False)
    model = with_precision(model, spec, "float32")  # a float32 graph (a model trained in mixed precision too)
    serve = ids_function(model, spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter raises many exception types
        logger.warning("TFLite builtins do not cover this model (%s); adding TF select ops.", str(error)[:200])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        flatbuffer = converter.convert()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, flatbuffer)
    write_json({**ids_metadata(spec), "quantize": quantize}, path + ".json")
    return path

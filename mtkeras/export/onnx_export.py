"""ONNX export (token-id inputs) for teams that run models with ONNX Runtime or another ONNX runtime."""

from __future__ import annotations

import os
from typing import Any

from mtkeras._checks import check_int, check_option
from mtkeras._io import write_atomic, write_json
from mtkeras.defaults import ONNX_QUANTIZE
from mtkeras.export.saved_model import ids_function, ids_metadata, remove_dead_staging, resolve_source
from mtkeras.precision import with_precision
from mtkeras.spec import TaskSpec

#: The ONNX opset written by default (ONNX Runtime 1.16 and later run it).
ONNX_OPSET = 17
#: The quantizer's scratch folder beside the file (``<prefix><pid>-<random>``; a dead process's is removed).
_QUANTIZE_PREFIX = ".mtkeras-quantize-"
_INSTALL = "pip install 'mtkeras[onnx]' (tf2onnx, onnx; onnxruntime to run it)"


def export_onnx(
    model_or_run: Any,
    path: str | os.PathLike,
    *,
    spec: TaskSpec | None = None,
    opset: int = ONNX_OPSET,
    quantize: str | None = None,
    overwrite: bool = False,
) -> str:
    """Write an ``.onnx`` model taking ``input_ids``, ``attention_mask``, ``token_type_ids`` (int32
    ``[batch, length]``) and returning the outputs of the SavedModel's ``predict_ids`` (calibrated),
    named as there; labels and thresholds go to ``<path>.json`` beside it, as for TFLite.

    Converted with tf2onnx; the TF ops it passes through but ONNX lacks are rewritten (:func:`rewrite_unsupported`:
    the exact GELU's ``Erfc`` as ``1 - Erf``, ``Log1p`` as ``Log(1 + x)``). ``quantize="dynamic"`` writes the
    int8 file instead (:data:`mtkeras.defaults.ONNX_QUANTIZE`; needs onnxruntime): the encoder's MatMuls with int8
    weights, one scale per output channel, activations quantized per call (``DynamicQuantizeLinear`` +
    ``MatMulInteger``, standard ONNX ops); the heads, embeddings, the bag of pieces and everything else stay
    float32. Its answers differ from float32's on some texts: BENCHMARKS.md ("int8 again") measures how many.

    Example:
        >>> export_onnx("runs/debtags", "saved_models/debtags.onnx")
        >>> session = onnxruntime.InferenceSession("saved_models/debtags.onnx")
    """
    check_int(opset, "opset", 13, maximum=21)
    check_option(quantize, "quantize", ONNX_QUANTIZE)
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"ONNX `path` {path!r} is a folder; expected a file path such as model.onnx.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx: {_INSTALL}.") from error
    model, spec, _ = resolve_source(model_or_run, spec, None, need_tokenizer=False)
    model = with_precision(model, spec, "float32")  # a float32 graph (a model trained in mixed precision too)
    serve = ids_function(model, spec)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset)
    rewrite_unsupported(proto)
    unknown = sorted({node.op_type for node in proto.graph.node if node.domain in ("", "ai.onnx")}
                     - _onnx_ops(opset))
    if unknown:
        raise ValueError(f"The converted graph has ops ONNX opset {opset} lacks: {unknown}.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = proto.SerializeToString() if quantize is None else _quantized(proto, spec, os.path.dirname(path))
    write_atomic(path, data)
    write_json({**ids_metadata(spec), "opset": opset, "quantize": quantize}, path + ".json")
    return path


def head_matmuls(proto: Any, spec: TaskSpec) -> list[str]:
    """The names of the converted graph's MatMul nodes inside a group's head (a path component named after it)."""
    return [node.name for node in proto.graph.node if node.op_type == "MatMul"
            and any(f"/{name}/" in f"/{node.name}/" for name in spec.group_names)]


def _quantized(proto: Any, spec: TaskSpec, folder: str) -> bytes:
    """``proto`` with the encoder's MatMuls dynamically quantized by ONNX Runtime (int8 weights, per output
    channel). The heads' MatMuls stay float32: they are a negligible part of the work, yet quantizing them alone
    changes about as many answers as quantizing one of the encoder's later layers (BENCHMARKS.md, "int8 again")."""
    import tempfile

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise ImportError(f"ONNX export with quantize='dynamic' needs onnxruntime: {_INSTALL}.") from error
    remove_dead_staging(folder, _QUANTIZE_PREFIX, fields=0)  # left by a quantization that was killed
    with tempfile.TemporaryDirectory(dir=folder, prefix=f"{_QUANTIZE_PREFIX}{os.getpid()}-") as work:
        source, target = os.path.join(work, "float32.onnx"), os.path.join(work, "int8.onnx")
        with open(source, "wb") as handle:
            handle.write(proto.SerializeToString())
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=head_matmuls(proto, spec))
        with open(target, "rb") as handle:
            return handle.read()


def rewrite_unsupported(proto: Any) -> dict[str, int]:
    """Rewrite the ops tf2onnx leaves as they are in TF but ONNX lacks, in place: ``Erfc(x)`` (the exact GELU)
    as ``1 - Erf(x)``, ``Log1p(x)`` (the calibrated sigmoid) as ``Log(1 + x)``. Returns how many of each."""
    import numpy as np
    from onnx import helper, numpy_helper

    rewrites = {"Erfc": ("Erf", "Sub"), "Log1p": ("Add", "Log")}
    graph, nodes, counts = proto.graph, [], dict.fromkeys(rewrites, 0)
    one = "mtkeras_one"
    for node in graph.node:
        if node.op_type not in rewrites:
            nodes.append(node)
            continue
        counts[node.op_type] += 1
        middle = f"{node.output[0]}_{node.op_type.lower()}"
        if node.op_type == "Erfc":
            nodes.append(helper.make_node("Erf", [node.input[0]], [middle], name=f"{node.name}_erf"))
            nodes.append(helper.make_node("Sub", [one, middle], [node.output[0]], name=f"{node.name}_one_minus"))
        else:
            nodes.append(helper.make_node("Add", [one, node.input[0]], [middle], name=f"{node.name}_one_plus"))
            nodes.append(helper.make_node("Log", [middle], [node.output[0]], name=f"{node.name}_log"))
    if any(counts.values()):
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), name=one))
        del graph.node[:]
        graph.node.extend(nodes)
    return counts


def _onnx_ops(opset: int) -> set[str]:
    from onnx import defs

    return {schema.name for schema in defs.get_all_schemas_with_history()
            if schema.domain == "" and schema.since_version <= opset}

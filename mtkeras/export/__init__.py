"""Exports: SavedModel for TF Serving (raw text in), TFLite, ONNX."""

from mtkeras.defaults import QUANTIZE
from mtkeras.export.onnx_export import export_onnx
from mtkeras.export.ops import TF_TEXT_2_12_OPS, saved_model_ops, unsupported_ops
from mtkeras.export.saved_model import SIGNATURES, check_export_name, export_metadata, export_saved_model
from mtkeras.export.text_graph import InGraphTokenizer
from mtkeras.export.tflite import export_tflite

__all__ = [
    "QUANTIZE",
    "SIGNATURES",
    "TF_TEXT_2_12_OPS",
    "InGraphTokenizer",
    "check_export_name",
    "export_metadata",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "saved_model_ops",
    "unsupported_ops",
]

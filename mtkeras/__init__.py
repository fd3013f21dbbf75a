"""mtkeras: one BERT model, several label groups, plain Keras.

Example:
    >>> import mtkeras as mtk
    >>> spec = mtk.TaskSpec(
    ...     encoder="path/to/bert-folder",
    ...     groups=[
    ...         mtk.LabelGroup("section", "multiclass", labels=["utils", "net"]),
    ...         mtk.LabelGroup("use", "multilabel", labels=["editing", "viewing"]),
    ...     ],
    ... )
    >>> model = mtk.build_model(spec)
    >>> mtk.compile_model(model, spec, learning_rate=3e-5)
    >>> model.fit(x, y, epochs=3)
    >>> mtk.Predictor(model, spec).predict(["a text"])
"""

from mtkeras._compat import keras
from mtkeras.data import check_texts, encode_targets, pad_rows, read_jsonl, tokenize
from mtkeras.encoder import BertEncoder, load_bert_config, load_encoder, load_tokenizer
from mtkeras.kinds import KINDS, Kind
from mtkeras.model import build_model
from mtkeras.optim import RAdam
from mtkeras.predict import Predictor
from mtkeras.saving import load_model, save_model
from mtkeras.spec import INPUT_NAMES, LabelGroup, TaskSpec
from mtkeras.training import build_loss_weights, build_losses, build_metrics, compile_model

__version__ = "0.1.0"

__all__ = [
    "INPUT_NAMES",
    "KINDS",
    "BertEncoder",
    "Kind",
    "LabelGroup",
    "Predictor",
    "RAdam",
    "TaskSpec",
    "build_loss_weights",
    "build_losses",
    "build_metrics",
    "build_model",
    "check_texts",
    "compile_model",
    "encode_targets",
    "keras",
    "load_bert_config",
    "load_encoder",
    "load_model",
    "load_tokenizer",
    "pad_rows",
    "read_jsonl",
    "save_model",
    "tokenize",
]

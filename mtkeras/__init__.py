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
from mtkeras.config import load_config, parse_config
from mtkeras.data import (
    check_texts,
    encode_targets,
    fit_target_stats,
    make_dataset,
    pad_rows,
    read_csv,
    read_jsonl,
    read_records,
    tokenize,
)
from mtkeras.encoder import BertEncoder, load_bert_config, load_encoder, load_tokenizer
from mtkeras.evaluate import evaluate, evaluation_report, plot_roc_curves, summary, tune_thresholds
from mtkeras.export import export_saved_model, export_tflite
from mtkeras.heads import MaskedBinaryCrossentropy, RegressionHead, ScaledRegressionLoss, TokenAUC
from mtkeras.kinds import KINDS, Kind
from mtkeras.model import build_model
from mtkeras.optim import RAdam
from mtkeras.predict import Predictor
from mtkeras.saving import load_model, save_model
from mtkeras.spec import INPUT_NAMES, LabelGroup, TaskSpec
from mtkeras.training import (
    BestCheckpoint,
    MeanOverHeads,
    build_loss_weights,
    build_losses,
    build_metrics,
    compile_model,
    suggest_loss_weights,
    training_callbacks,
)
from mtkeras.words import split_words
from mtkeras.workflow import train

__version__ = "0.1.0"

__all__ = [
    "INPUT_NAMES",
    "KINDS",
    "BertEncoder",
    "BestCheckpoint",
    "Kind",
    "LabelGroup",
    "MaskedBinaryCrossentropy",
    "MeanOverHeads",
    "Predictor",
    "RAdam",
    "RegressionHead",
    "ScaledRegressionLoss",
    "TaskSpec",
    "TokenAUC",
    "build_loss_weights",
    "build_losses",
    "build_metrics",
    "build_model",
    "check_texts",
    "compile_model",
    "encode_targets",
    "evaluate",
    "export_saved_model",
    "export_tflite",
    "evaluation_report",
    "fit_target_stats",
    "keras",
    "load_bert_config",
    "load_config",
    "load_encoder",
    "load_model",
    "load_tokenizer",
    "make_dataset",
    "pad_rows",
    "parse_config",
    "plot_roc_curves",
    "read_csv",
    "read_jsonl",
    "read_records",
    "save_model",
    "split_words",
    "suggest_loss_weights",
    "summary",
    "tokenize",
    "train",
    "training_callbacks",
    "tune_thresholds",
]

"""mtkeras: one BERT model, several label groups, plain Keras.

``import mtkeras`` is light: the names below load their module (and TensorFlow, for the
model, data, training, answer and export names) on first use, so ``mtkeras.spec``,
``mtkeras.config`` and ``mtkeras.serving`` work without TensorFlow installed.

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
    >>> mtk.compile_model(model, spec)          # the defaults of mtkeras.defaults.TRAINING
    >>> model.fit(x, y, epochs=3)
    >>> mtk.Predictor(model, spec).predict(["a text"])
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# tf_keras, not Keras 3, behind tf.keras: set before anything imports TensorFlow (mtkeras/_compat.py).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.2.0"

#: Public name -> the module that defines it (imported on first use).
_PUBLIC: dict[str, str] = {
    # spec (light)
    "KINDS": "mtkeras.kinds",
    "LabelGroup": "mtkeras.spec",
    "TaskSpec": "mtkeras.spec",
    # config and client (light)
    "load_config": "mtkeras.config",
    "ServingClient": "mtkeras.serving",
    # text -> tokens -> targets
    "load_tokenizer": "mtkeras.encoder",
    "read_records": "mtkeras.data",
    "tokenize": "mtkeras.data",
    "encode_targets": "mtkeras.data",
    "fit_target_stats": "mtkeras.data",
    "make_dataset": "mtkeras.data",
    "prepare_shards": "mtkeras.shards",
    # model and training
    "build_model": "mtkeras.model",
    "compile_model": "mtkeras.training",
    "training_callbacks": "mtkeras.training",
    "suggest_loss_weights": "mtkeras.training",
    "add_memory": "mtkeras.memory",
    "RAdam": "mtkeras.optim",
    "train": "mtkeras.workflow",
    # answers
    "Predictor": "mtkeras.predict",
    "evaluate": "mtkeras.evaluation",
    "evaluation_report": "mtkeras.evaluation",
    "tune_thresholds": "mtkeras.evaluation",
    "cross_fitted_report": "mtkeras.evaluation",
    # artefacts
    "save_model": "mtkeras.saving",
    "load_model": "mtkeras.saving",
    "export_saved_model": "mtkeras.export",
    "export_tflite": "mtkeras.export",
    "export_onnx": "mtkeras.export",
    "keras": "mtkeras._compat",
}

__all__ = sorted(_PUBLIC)

#: Names that were top-level before 0.2 and now live in their modules (``mtkeras.<module>.<name>``).
_MOVED: dict[str, str] = {
    "INPUT_NAMES": "spec", "Kind": "kinds (GroupKind)", "BertEncoder": "encoder", "load_encoder": "encoder",
    "load_bert_config": "encoder", "BestCheckpoint": "training", "MeanOverHeads": "training",
    "build_losses": "training", "build_loss_weights": "training", "build_metrics": "training",
    "check_texts": "data", "pad_rows": "data", "read_csv": "data", "read_jsonl": "data", "parse_config": "config",
    "summary": "evaluation", "plot_roc_curves": "evaluation", "split_words": "words",
    "MaskedBinaryCrossentropy": "heads", "RegressionHead": "heads", "ScaledRegressionLoss": "heads",
    "TokenAUC": "heads",
}
#: Submodules reachable as attributes (``mtkeras.training.BestCheckpoint``) without importing them first.
_SUBMODULES = ("bag", "calibration", "config", "data", "defaults", "encoder", "evaluation", "export", "files", "heads",
               "kinds", "memory", "model", "optim", "precision", "predict", "saving", "serving", "shards", "spec",
               "streaming", "training", "windows", "words", "workflow")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"mtkeras.{name}")
    module = _PUBLIC.get(name)
    if module is None:
        moved = f"; it moved to mtkeras.{_MOVED[name]}" if name in _MOVED else ""
        raise AttributeError(f"module 'mtkeras' has no attribute {name!r}{moved}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in ("tensorflow", "tf_keras", "transformers", "tensorflow_text"):
            raise ImportError(
                f"mtkeras.{name} needs TensorFlow ({error.name} is not installed): pip install 'mtkeras[tf]'. "
                "Without it, mtkeras.spec, mtkeras.config and mtkeras.serving work."
            ) from error
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

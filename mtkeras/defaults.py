"""One set of defaults and option lists, read by ``compile_model``, the config, ``suggest_loss_weights``,
``make_dataset``, the ``Predictor`` and the exports (no TensorFlow here).

Why each value is what it is: ``BENCHMARKS.md`` (speed: padding, XLA) and the README's training
section (learning rates). Change them here and every entry point follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainingDefaults:
    """The training recipe every entry point starts from.

    ``learning_rate`` is the encoder's; each head steps ``head_lr_multiplier`` times
    faster (randomly initialised heads on a pretrained encoder: with x1 and x20 the early
    Debtags runs stayed at chance level, with 1e-4 and x100 they learned). ``layer_lr_decay``
    < 1 steps each encoder layer that much slower than the one above it (1: all alike); 2e-4 with decay 0.8
    (the top layer at 2e-4, the embeddings at 2e-4 x 0.8^6 = 5e-5) was the best row of the Debtags ablation
    in ``BENCHMARKS.md``, and 4 epochs beat 3 there. ``beta_2`` is
    0.98, not 0.999: RAdam's rectification keeps a run of a few hundred steps below full
    step size with 0.999. ``padding`` and ``jit_compile``: bucketed batches, no XLA
    (measured faster for training on CPU, ``BENCHMARKS.md``).
    """

    learning_rate: float = 2e-4
    head_lr_multiplier: float = 100.0
    layer_lr_decay: float = 0.8
    beta_2: float = 0.98
    weight_decay: float = 0.01
    warmup_proportion: float = 0.1
    epochs: int = 4
    batch_size: int = 32
    padding: str = "bucketed"
    jit_compile: bool = False
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


TRAINING = TrainingDefaults()

#: XLA for in-process inference (``Predictor``) in float32: measured faster on CPU (``BENCHMARKS.md``).
PREDICT_JIT_COMPILE = True
#: Precisions the Predictor runs without XLA by default: bfloat16 measured faster without it (XLA's CPU
#: backend gave it no gain, BENCHMARKS.md "Precision on this CPU").
PREDICT_NO_JIT_PRECISIONS: tuple[str, ...] = ("bfloat16",)
#: XLA in SavedModel exports: off until checked on a TF Serving build with XLA for its device.
EXPORT_JIT_COMPILE = False
#: With XLA, batch lengths are rounded up to a multiple of this many tokens (few shapes to compile).
XLA_LENGTH_STEP = 16

#: How :func:`mtkeras.make_dataset` batches and pads rows; the keys are the accepted ``padding`` values.
DATASET_PADDINGS: dict[str, str] = {
    "bucketed": "rows of similar length batched together, each batch padded to its own longest row",
    "bucketed_fixed": "bucketed, each batch padded to its bucket's upper bound: a few fixed shapes (for XLA)",
    "longest": "rows in order, each batch padded to its own longest row",
    "max_length": "rows in order, every row padded to max_length: one shape",
}
#: How the word-piece bag (``TaskSpec.bag_pooling``, :class:`mtkeras.bag.PieceBag`) averages the text's piece
#: and pair vectors; the keys are the accepted values.
BAG_POOLINGS: dict[str, str] = {
    "mean": "every real token's vector counts the same",
    "weighted": "each piece and pair also learns a weight (its log starts at 0, i.e. at 'mean'): a weighted mean "
                "that can learn to ignore pieces that say nothing, as TF-IDF's inverse document frequency does",
}
#: How the groups' losses are weighed in the total (``TaskSpec.loss_weighting``); the keys are the accepted values.
LOSS_WEIGHTINGS: dict[str, str] = {
    "fixed": "each group's loss times its loss_weight",
    "uncertainty": "each group's loss times its loss_weight and a learned factor exp(-s), plus s (Kendall et al. "
                   "2018; mtkeras.uncertainty): the factor settles near 1 / the group's loss",
}
#: ``TaskSpec.loss_weighting`` of a new spec: learned loss weights on top of each group's ``loss_weight`` (1 unless
#: set). On Debtags, learned weights with every ``loss_weight`` 1 scored level with or above hand-tuned fixed weights
#: (section 1, tag groups 8) on three seeds (BENCHMARKS.md, "Learned loss weights"), with nothing to tune.
#: A spec saved before the option existed keeps "fixed" (``TaskSpec.from_dict``).
LOSS_WEIGHTING = "uncertainty"
#: How :func:`mtkeras.tokenize` pads one call's texts.
TOKENIZE_PADDINGS: tuple[str, ...] = ("longest", "max_length")
#: Accepted ``mixed_precision`` values: float32 everywhere, float16 / bfloat16 compute in the encoder, or ``"auto"``:
#: the policy of the precision ``AUTO_PRECISION`` picks on the machine that trains (mtkeras.precision).
MIXED_PRECISION: tuple[str | None, ...] = (None, "mixed_float16", "mixed_bfloat16", "auto")
#: ``training.mixed_precision`` of a new config: "auto", i.e. ``mixed_bfloat16`` on a CPU-only machine with bfloat16
#: units, float32 elsewhere. There the recipe trains faster at the same quality within noise (three seeds,
#: BENCHMARKS.md "The recipe trained in bfloat16"). ``build_model``'s own default stays float32.
TRAINING_MIXED_PRECISION = "auto"
#: Inference precisions (``Predictor(precision=...)``, ``export_saved_model(precision=...)``,
#: ``mtkeras export --precision``) and the ``mixed_precision`` policy each builds the model in.
PRECISIONS: dict[str, str | None] = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: What ``precision="auto"`` picks (mtkeras.precision.resolve_precision): bfloat16 on a CPU-only machine whose
#: CPU has bfloat16 dot-product units (faster there, same quality within noise: BENCHMARKS.md "Precision on
#: this CPU"), float32 elsewhere (GPU float16 not measured on this project's machines).
AUTO_PRECISION: dict[str, str] = {"cpu_bfloat16": "bfloat16", "other": "float32"}
#: How much slower than float32 a precision runs without its units (bfloat16 on a CPU without AVX512-BF16,
#: float16 on a CPU), measured with the Predictor: the figure the one-time warning gives.
UNITLESS_SLOWDOWN: dict[str, float] = {"bfloat16": 2.4, "float16": 1.4}
#: The Predictor's precision (and ``mtkeras predict`` / ``evaluate``'s): "auto" follows AUTO_PRECISION on the machine
#: it runs on, bfloat16 where the CPU has bfloat16 units (faster, 99.4% of label sets equal: BENCHMARKS.md
#: "Precision on this CPU"); pass ``precision="float32"`` for answers equal to a float32 export's to 1e-5.
PREDICT_PRECISION = "auto"
#: An export's precision: the artefact runs on the serving machine, whose units the exporting one cannot see.
EXPORT_PRECISION = "float32"
#: Accepted ``training.distribute`` values: one device, every local GPU (or CPU), or several machines
#: described by ``TF_CONFIG``.
DISTRIBUTE: tuple[str | None, ...] = (None, "mirrored", "multi_worker")
#: How :func:`mtkeras.tune_thresholds` tunes a multilabel group's thresholds; the keys are the accepted ``scope``
#: (``thresholds.scope``) values.
THRESHOLD_SCOPES: dict[str, str] = {
    "label": "one threshold per label, maximising its F1 (labels with few positives take the group's)",
    "group": "one threshold per group, maximising the group's micro-F1",
    "auto": "per group, whichever of label and group scores the higher micro-F1 tuned on one half of the "
            "tuning rows and scored on the other",
}
THRESHOLD_SCOPE = "auto"
#: Accepted TFLite ``quantize`` values: none (float32), float16 weights, dynamic-range int8 weights.
QUANTIZE: tuple[str | None, ...] = (None, "float16", "dynamic")
#: Accepted ONNX ``quantize`` values: none (float32), or ``dynamic``: ONNX Runtime's dynamic quantization of the
#: MatMuls with int8 weights, one scale per output channel, activations quantized per call (BENCHMARKS.md, issue 17:
#: per-channel scales keep far more answers equal to float32 than one scale per matrix, at the same speed).
ONNX_QUANTIZE: tuple[str | None, ...] = (None, "dynamic")
#: The model-selection metric of ``training_callbacks`` without validation records: mean validation ROC-AUC over
#: the heads that report it (Keras' streaming metrics).
ROC_AUC = "roc_auc"
DEFAULT_MONITOR = f"val_mean_{ROC_AUC}"
#: The model-selection metric of a run with validation records (``mtkeras train``'s default): the mean over groups
#: of each kind's ``selection_metric`` on the epoch's validation probabilities — the rule the cross-fitted
#: report picks epochs by, so the deployed checkpoint is the epoch the honest protocol would choose.
SELECTION_MONITOR = "val_selection_score"

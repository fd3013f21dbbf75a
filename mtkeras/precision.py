"""Inference precision: which units a model computes in, the rule for ``"auto"``, and the model rebuilt in it.

A precision names a Keras mixed-precision policy (:data:`mtkeras.defaults.PRECISIONS`): the encoder and the
pooling compute in it, the weights stay float32, the heads and outputs are float32 always. Changing precision
rebuilds the model in the new policy and copies its weights: nothing is retrained, outputs move by rounding
only (measured in ``BENCHMARKS.md``, "Precision on this CPU").

Example:
    >>> from mtkeras.precision import resolve_precision, with_precision
    >>> resolve_precision("auto")        # bfloat16 on a CPU with bfloat16 dot-product units
    'bfloat16'
    >>> fast = with_precision(model, spec, "bfloat16")
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from typing import Any

from mtkeras._checks import check_option
from mtkeras.defaults import AUTO_PRECISION, MIXED_PRECISION, PRECISIONS, UNITLESS_SLOWDOWN

logger = logging.getLogger("mtkeras")

#: Every accepted ``precision`` value: the named ones and ``"auto"`` (:func:`resolve_precision`).
PRECISION_CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")

#: CPU feature flags that mean bfloat16 dot products run in hardware: x86 (``/proc/cpuinfo`` flags) and
#: Arm (``Features``).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

_warned: set[str] = set()


def _cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of ``/proc/cpuinfo``'s text (x86 ``flags``, Arm ``Features``), as a set."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


@functools.lru_cache(maxsize=1)
def cpu_bfloat16_units() -> bool:
    """Whether this machine's CPU has bfloat16 dot-product units (AVX512-BF16, AMX-BF16, Arm BF16).

    Read from ``/proc/cpuinfo`` (Linux); ``False`` where it cannot be read. ``ONEDNN_MAX_CPU_ISA`` set below
    the bfloat16 instruction sets (``AVX512_CORE_VNNI`` or lower) counts as no units: oneDNN will not use them.
    """
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if isa and isa not in ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                           "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return bool(_cpu_flags(handle.read()) & _BF16_FLAGS)
    except OSError:
        return False


def _has_gpu() -> bool:
    from mtkeras._compat import tf

    return bool(tf.config.list_physical_devices("GPU"))


def check_precision(value: Any, name: str = "precision") -> str:
    """``value`` if it is an accepted precision (:data:`PRECISION_CHOICES`), else ValueError naming ``name``."""
    return check_option(value, name, PRECISION_CHOICES)


def resolve_precision(value: Any, name: str = "precision") -> str:
    """The precision ``value`` asks for on this machine: ``"auto"`` becomes :data:`AUTO_PRECISION`'s choice
    (``"bfloat16"`` on a CPU-only machine whose CPU has bfloat16 units, ``"float32"`` elsewhere: GPUs are not
    measured here). A precision without fast units here is kept, with one warning per process
    (:func:`warn_if_slow`)."""
    value = check_precision(value, name)
    if value == "auto":
        value = AUTO_PRECISION["cpu_bfloat16"] if cpu_bfloat16_units() and not _has_gpu() else AUTO_PRECISION["other"]
    warn_if_slow(value)
    return value


def resolve_mixed_precision(value: Any, name: str = "mixed_precision") -> str | None:
    """The Keras mixed-precision policy ``value`` (one of :data:`mtkeras.defaults.MIXED_PRECISION`) asks for on this
    machine: ``"auto"`` becomes the policy of :func:`resolve_precision`'s ``"auto"`` (``"mixed_bfloat16"`` or
    ``None``, float32); the others are kept. ValueError naming ``name`` for anything else.

    Example:
        >>> resolve_mixed_precision("auto")   # on a CPU with bfloat16 units
        'mixed_bfloat16'
    """
    value = check_option(value, name, MIXED_PRECISION)
    return PRECISIONS[resolve_precision("auto", name)] if value == "auto" else value


def warn_if_slow(precision: str) -> None:
    """Warn once per process when ``precision`` has no fast units on this machine (bfloat16 without a CPU's
    bfloat16 units, float16 without a GPU): it still runs, emulated, slower by the factor measured."""
    if precision == "float32" or precision in _warned:
        return
    if precision == "bfloat16" and (cpu_bfloat16_units() or _has_gpu()):
        return
    if precision == "float16" and _has_gpu():
        return
    _warned.add(precision)
    unit = "bfloat16 dot-product units (avx512_bf16 / amx_bf16)" if precision == "bfloat16" else "GPU"
    logger.warning(
        "precision %r on a machine without %s (%s): it runs emulated, about %.1fx slower than float32 "
        "(measured, BENCHMARKS.md); use precision='float32' or 'auto'.",
        precision, unit, platform.machine() or "this CPU", UNITLESS_SLOWDOWN[precision])


def model_precision(model: Any) -> str:
    """The precision a model built by :func:`mtkeras.build_model` computes in (its encoder's policy)."""
    from mtkeras.spec import ENCODER_LAYER

    policy = model.get_layer(ENCODER_LAYER).dtype_policy.name
    for precision, name in PRECISIONS.items():
        if (name or "float32") == policy:
            return precision
    raise ValueError(f"The model's encoder computes in the Keras policy {policy!r}, which is none of the "
                     f"precisions {list(PRECISIONS)} ({[name or 'float32' for name in PRECISIONS.values()]}).")


def with_precision(model: Any, spec: Any, precision: str) -> Any:
    """``model`` computing in ``precision`` (a name of :data:`PRECISIONS`, or ``"auto"``): the same model if it
    already does, else the model rebuilt in that policy with the same weights (a copy: later training of
    ``model`` does not reach it)."""
    from mtkeras.model import build_model
    from mtkeras.spec import ENCODER_LAYER

    precision = resolve_precision(precision)
    if model_precision(model) == precision:
        return model
    rebuilt = build_model(spec, bert_config=model.get_layer(ENCODER_LAYER).bert_config,
                          mixed_precision=PRECISIONS[precision])
    rebuilt.set_weights(model.get_weights())
    return rebuilt

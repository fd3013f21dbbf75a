"""The one place that picks the Keras flavour and imports TensorFlow and transformers.

``TFBertModel`` only exists in ``transformers<5`` and is built on ``tf_keras``
(Keras 2). ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is imported
so that ``tf.keras`` is the same ``tf_keras`` the models are made of. Every
other mtkeras module imports ``tf``, ``keras`` and the transformers classes
from here and nowhere else.
"""

from __future__ import annotations

import os
import sys
import warnings

_tf_was_imported = "tensorflow" in sys.modules
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import transformers  # noqa: E402
from packaging.version import Version  # noqa: E402

if _tf_was_imported and os.environ.get("TF_USE_LEGACY_KERAS") != "1":  # pragma: no cover
    warnings.warn(
        "tensorflow was imported before mtkeras without TF_USE_LEGACY_KERAS=1, so "
        "`tf.keras` is Keras 3 while mtkeras models are tf_keras models. Use "
        "`mtkeras.keras` (or `import tf_keras`) for callbacks and layers, or set "
        "TF_USE_LEGACY_KERAS=1 before importing tensorflow.",
        stacklevel=2,
    )

# Versions this package is tested with (see setup.cfg); checked so that a
# mismatched environment fails here with a message rather than deep inside.
_TESTED = {"tensorflow": "2.21", "tf_keras": "2.21", "transformers": "4.57"}


def _check_versions(found: dict[str, str] | None = None) -> None:
    found = found or {
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "transformers": transformers.__version__,
    }
    if Version(found["transformers"]).major >= 5:
        raise ImportError(
            f"mtkeras needs transformers<5 (TFBertModel was removed in v5); found "
            f"transformers=={found['transformers']}. Install transformers=={_TESTED['transformers']}.*"
        )
    tf_mm = Version(found["tensorflow"]).release[:2]
    keras_mm = Version(found["tf_keras"]).release[:2]
    if tf_mm != keras_mm:
        raise ImportError(
            f"tf_keras {found['tf_keras']} does not match tensorflow {found['tensorflow']}; "
            "install the tf-keras release with the same major.minor version."
        )


_check_versions()

transformers.logging.set_verbosity_error()  # the TF deprecation banner and load chatter

from transformers import AutoTokenizer, BertConfig, TFBertModel  # noqa: E402
from transformers.modeling_tf_pytorch_utils import (  # noqa: E402
    load_pytorch_state_dict_in_tf2_model,
)


def keras_training() -> bool:
    """Whether the Keras layer being called runs in training mode (``training=True`` given to an outer layer or
    model, as ``fit`` does), for layers whose ``call`` takes no ``training`` argument. Read from tf_keras' call
    context: private, pinned with tf_keras (``_TESTED``)."""
    from tf_keras.src.engine.base_layer_utils import call_context

    return call_context().training is True


__all__ = [
    "AutoTokenizer",
    "BertConfig",
    "TFBertModel",
    "keras",
    "keras_training",
    "load_pytorch_state_dict_in_tf2_model",
    "tf",
    "transformers",
]

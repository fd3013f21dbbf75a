import os

import pytest

import mtkeras as mtk
from mtkeras import _compat


def test_legacy_keras_is_selected_before_tensorflow_loads():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    # tf.keras is tf_keras, so a user's tf.keras callbacks and layers work with mtkeras models.
    assert mtk.keras.__name__ == "tf_keras"
    assert _compat.tf.keras.layers.Dense is mtk.keras.layers.Dense
    assert _compat.TFBertModel.__module__.startswith("transformers.models.bert")


def test_installed_versions_are_the_tested_ones():
    assert _compat.tf.__version__.startswith(_compat._TESTED["tensorflow"])
    assert _compat.keras.__version__.startswith(_compat._TESTED["tf_keras"])
    assert _compat.transformers.__version__.startswith(_compat._TESTED["transformers"])


def test_transformers_5_is_refused():
    found = {"tensorflow": "2.21.0", "tf_keras": "2.21.0", "transformers": "5.0.0"}
    with pytest.raises(ImportError, match=r"needs transformers<5 .* found transformers==5.0.0"):
        _compat._check_versions(found)


def test_mismatched_tf_keras_is_refused():
    found = {"tensorflow": "2.21.0", "tf_keras": "2.19.0", "transformers": "4.57.6"}
    with pytest.raises(ImportError, match=r"tf_keras 2.19.0 does not match tensorflow 2.21.0"):
        _compat._check_versions(found)

import numpy as np
import pytest
from conftest import tiny_config

import mtkeras as mtk
from mtkeras._compat import tf


def batch(tokenizer, texts, pad_to=None):
    x = mtk.tokenize(tokenizer, texts, max_length=32)
    if pad_to:
        extra = pad_to - x["input_ids"].shape[1]
        x = {k: np.pad(v, ((0, 0), (0, extra)), constant_values=0) for k, v in x.items()}
    return x


def test_inputs_outputs_and_shapes(tiny_model, tiny_spec, tiny_tokenizer):
    assert sorted(tiny_model.input_names) == sorted(mtk.spec.INPUT_NAMES)
    for tensor in tiny_model.inputs:
        assert tensor.dtype == tf.int32 and tensor.shape.as_list() == [None, None]
    assert tiny_model.output_names == ["colour", "topic"] or set(tiny_model.output_names) == {"topic", "colour"}
    out = tiny_model(batch(tiny_tokenizer, ["red alpha", "blue beta program"]))
    assert set(out) == {"topic", "colour"}
    assert out["topic"].shape == (2, 3) and out["colour"].shape == (2, 4)
    assert tiny_model.get_layer("encoder").bert.__class__.__name__ == "TFBertModel"


def test_any_length_up_to_max_length(tiny_model, tiny_tokenizer):
    for length in (3, 17, 32):
        x = {k: np.ones((2, length), np.int32) for k in mtk.spec.INPUT_NAMES}
        assert tiny_model(x)["topic"].shape == (2, 3)


def test_softmax_rows_sum_to_one_and_sigmoid_heads_are_independent(tiny_model, tiny_tokenizer):
    out = tiny_model(batch(tiny_tokenizer, ["red alpha", "blue beta program", "the"]))
    np.testing.assert_allclose(out["topic"].numpy().sum(axis=1), 1.0, rtol=1e-6)
    # Each sigmoid output is sigmoid(w_j . pooled + b_j) of its own column: no coupling between labels.
    pooled_model = mtk.keras.Model(tiny_model.inputs, tiny_model.get_layer("mean_pooling").output)
    x = batch(tiny_tokenizer, ["red alpha", "blue beta program", "the"])
    pooled = pooled_model(x).numpy()
    kernel, bias = tiny_model.get_layer("colour").get_weights()
    expected = 1 / (1 + np.exp(-(pooled @ kernel + bias)))
    np.testing.assert_allclose(tiny_model(x)["colour"].numpy(), expected, rtol=1e-5)
    assert not np.allclose(expected.sum(axis=1), 1.0)


def test_mean_pooling_ignores_padding(tiny_model, tiny_tokenizer):
    texts = ["red alpha", "blue beta program the data"]
    short = tiny_model(batch(tiny_tokenizer, texts))
    padded = tiny_model(batch(tiny_tokenizer, texts, pad_to=32))
    for name in short:
        np.testing.assert_allclose(short[name].numpy(), padded[name].numpy(), atol=1e-6)
    # And one text alone (no padding at all) gives the same as inside a padded batch.
    alone = tiny_model(batch(tiny_tokenizer, texts[:1]))
    np.testing.assert_allclose(alone["topic"].numpy()[0], padded["topic"].numpy()[0], atol=1e-6)


def test_pooling_is_the_mean_of_real_tokens(tiny_model, tiny_tokenizer):
    x = batch(tiny_tokenizer, ["red", "blue beta program"])
    hidden = tiny_model.get_layer("encoder")(x).numpy()
    pooled_model = mtk.keras.Model(tiny_model.inputs, tiny_model.get_layer("mean_pooling").output)
    mask = x["attention_mask"][..., None]
    np.testing.assert_allclose(pooled_model(x).numpy(), (hidden * mask).sum(1) / mask.sum(1), atol=1e-6)


def test_pretrained_weights_are_used(tiny_spec, tiny_tokenizer):
    from_folder = mtk.build_model(tiny_spec)
    reference = mtk.encoder.load_encoder(tiny_spec.encoder)
    x = batch(tiny_tokenizer, ["red alpha"])
    np.testing.assert_allclose(from_folder.get_layer("encoder")(x).numpy(), reference(x).numpy(), atol=1e-6)


def test_head_sizes_and_activations_follow_the_spec(tiny_model, tiny_spec):
    for group in tiny_spec.groups:
        layer = tiny_model.get_layer(group.name)
        assert layer.units == len(group.labels)
        assert layer.activation.__name__ == {"multiclass": "softmax", "multilabel": "sigmoid"}[group.kind]


def test_bert_config_type_is_checked(tiny_spec):
    message = r"`bert_config` must be a transformers.BertConfig or None, received \{'hidden_size': 32\}"
    with pytest.raises(TypeError, match=message):
        mtk.build_model(tiny_spec, bert_config={"hidden_size": 32})


def test_config_round_trip_builds_the_same_graph(tiny_model):
    clone = mtk.keras.Model.from_config(tiny_model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in tiny_model.layers]
    config = clone.get_layer("encoder").bert_config
    assert (config.hidden_size, config.num_hidden_layers) == (tiny_config().hidden_size, 2)

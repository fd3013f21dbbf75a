"""Wide and deep: the bag of word pieces (``spec.bag_dim``) — what it computes, that padding and windows
change nothing, that it trains, and that every artefact (Keras file, Predictor, SavedModel in a fresh process,
TFLite, ONNX) gives the same answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config
from test_windows import LONG, windowed

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.bag import PieceBag
from mtkeras.spec import PIECE_BAG_LAYER, WIDE_AND_DEEP_LAYER
from mtkeras.windows import window_rows


def with_bag(spec: mtk.TaskSpec, **changes) -> mtk.TaskSpec:
    return dataclasses.replace(spec, **{"bag_dim": 6, "bag_buckets": 50, "bag_pooling": "weighted", **changes})


def expected_bag(bag: PieceBag, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The bag by hand: mean of the real tokens' piece vectors plus mean of their pairs' hashed vectors, each
    weighted by exp(its learned log-weight) with ``weighted`` pooling."""
    def mean(vectors: np.ndarray, log_weights: tf.Variable | None, rows: list) -> np.ndarray:
        if log_weights is None:
            return vectors[rows].mean(0)
        weights = np.exp(log_weights.numpy()[rows, 0].astype(np.float64))
        return (vectors[rows] * weights[:, None]).sum(0) / weights.sum()

    out = []
    for row, keep in zip(ids.astype(np.int64), mask.astype(bool), strict=True):
        real = list(row[keep])
        vector = mean(bag.pieces.numpy(), bag.piece_weights, real)
        if bag.buckets:
            pairs = [(a * bag.vocab_size + b) % bag.buckets for a, b in zip(real[:-1], real[1:], strict=True)]
            vector = vector + (mean(bag.bigrams.numpy(), bag.bigram_weights, pairs) if pairs else 0.0)
        out.append(vector)
    return np.stack(out)


@pytest.mark.parametrize(("buckets", "pooling"), [(0, "mean"), (7, "mean"), (0, "weighted"), (7, "weighted")])
def test_the_bag_is_the_mean_of_piece_and_pair_vectors(buckets, pooling):
    # A vocabulary whose pair index (a * vocab + b) overflows int32: hashed in int64.
    bag = PieceBag(vocab_size=200_000, dim=3, buckets=buckets, pooling=pooling)
    ids = np.array([[101, 199_999, 199_998, 5, 102, 0], [101, 102, 0, 0, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    if pooling == "weighted":
        # The log-weights start at 0 (a plain mean); then large and very different ones, padding's id included:
        # the row's largest is taken out before exp, so nothing overflows.
        plain = PieceBag(vocab_size=200_000, dim=3, buckets=buckets)
        start = bag(ids, mask).numpy()
        plain(ids, mask)
        plain.set_weights(bag.get_weights()[: len(plain.weights)])
        np.testing.assert_allclose(start, plain(ids, mask).numpy(), atol=1e-6)
        rng = np.random.default_rng(0)
        for weights in [w for w in (bag.piece_weights, bag.bigram_weights) if w is not None]:
            weights.assign(rng.uniform(-3, 3, weights.shape))
        bag.piece_weights.scatter_nd_update([[199_999], [0], [7]], [[90.0], [200.0], [500.0]])
        np.testing.assert_allclose(bag(ids, mask).numpy(), expected_bag(bag, ids, mask), atol=1e-6)
        # Every real token's weight far below 0 (padding's above): still the weighted mean, not shrunk.
        for weights in [w for w in (bag.piece_weights, bag.bigram_weights) if w is not None]:
            weights.assign(rng.uniform(-60, -50, weights.shape))
        bag.piece_weights.scatter_nd_update([[0], [7]], [[200.0], [500.0]])
    out = bag(ids, mask).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected_bag(bag, ids, mask), atol=1e-6)
    # Padding (mask 0) changes nothing; a row with no real token is zeros.
    padded = bag(np.pad(ids, [(0, 0), (0, 4)], constant_values=7), np.pad(mask, [(0, 0), (0, 4)])).numpy()
    np.testing.assert_allclose(padded, out, atol=1e-6)
    np.testing.assert_array_equal(bag(ids[:1], np.zeros_like(mask[:1])).numpy(), np.zeros((1, 3)))


def test_the_piece_and_pair_tables_start_apart():
    # Each table has its own initialiser: an unseeded Keras initialiser called twice repeats its values, which
    # would start pair bucket k on piece k's vector.
    bag = PieceBag(vocab_size=40, dim=4, buckets=60)
    bag(np.ones((1, 3), np.int32), np.ones((1, 3), np.int32))
    assert not np.allclose(bag.pieces.numpy(), bag.bigrams.numpy()[:40])


def test_text_heads_read_the_pooled_vector_and_the_bag(tiny_spec, tiny_tokenizer):
    spec = windowed(with_bag(tiny_spec))
    mtk.keras.utils.set_random_seed(11)
    model = mtk.build_model(spec, bert_config=tiny_config())
    rows = window_rows(tiny_tokenizer, [LONG, "red"], spec)
    batch = mtk.data.pad_rows(rows, [0, 1], tiny_tokenizer.pad_token_id, window=12)
    out = model(batch)
    # The head's input is [pooled over every window, bag over every window's pieces].
    joined = mtk.keras.Model(model.inputs, model.get_layer(WIDE_AND_DEEP_LAYER).output)(batch).numpy()
    bag = model.get_layer(PIECE_BAG_LAYER)
    np.testing.assert_allclose(joined[:, -6:], expected_bag(bag, batch["input_ids"], batch["attention_mask"]),
                               atol=1e-6)
    np.testing.assert_allclose(model.get_layer("topic")(joined).numpy(), out["topic"].numpy(), atol=1e-5)
    # Padding the batch wider changes nothing.
    wider = {name: np.pad(value, [(0, 0), (0, 12)]) for name, value in batch.items()}
    for name, value in model(wider).items():
        np.testing.assert_allclose(value.numpy(), out[name].numpy(), atol=1e-6)
    # The bag steps at the heads' factor, like the heads (both start from random values).
    mtk.compile_model(model, spec, head_lr_multiplier=30.0)
    assert model.optimizer._multiplier(bag.pieces) == 30.0 == model.optimizer._multiplier(bag.bigrams)


def test_a_spec_without_a_bag_builds_the_model_it_built_before(tiny_spec):
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    names = [layer.name for layer in model.layers]
    assert PIECE_BAG_LAYER not in names and WIDE_AND_DEEP_LAYER not in names
    assert model.get_layer("topic").kernel.shape[0] == tiny_config().hidden_size
    bagged = mtk.build_model(with_bag(tiny_spec, bag_buckets=0), bert_config=tiny_config())
    assert bagged.get_layer("topic").kernel.shape[0] == tiny_config().hidden_size + 6
    assert [w.name for w in bagged.get_layer(PIECE_BAG_LAYER).weights] == ["piece_bag/pieces:0",
                                                                         "piece_bag/piece_weights:0"]
    plain = mtk.build_model(with_bag(tiny_spec, bag_buckets=0, bag_pooling="mean"), bert_config=tiny_config())
    assert [w.name for w in plain.get_layer(PIECE_BAG_LAYER).weights] == ["piece_bag/pieces:0"]


def test_the_bag_learns_and_every_artefact_answers_alike(tiny_spec, tiny_tokenizer, tmp_path, caplog):
    from test_export import assert_every_artefact_answers_alike

    spec = windowed(with_bag(tiny_spec))
    mtk.keras.utils.set_random_seed(12)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec, learning_rate=1e-3)
    records = [dict(r, text=r["text"] + " " + LONG[: 40 * (i % 4)]) for i, r in enumerate(synthetic_records(48))]
    bag = model.get_layer(PIECE_BAG_LAYER)
    before = [bag.pieces.numpy().copy(), bag.piece_weights.numpy().copy()]
    model.fit(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8), epochs=1, verbose=0)
    # The vectors and the pooling weights both learned (the weights from 0: the answers below are weighted).
    assert not np.allclose(bag.pieces.numpy(), before[0]) and not np.allclose(bag.piece_weights.numpy(), before[1])
    spec = spec.with_temperatures({"topic": 1.7, "colour": 0.8})
    texts = [r["text"] for r in records[:6]] + [LONG, ""]
    ids = mtk.data.pad_rows(window_rows(tiny_tokenizer, texts, spec), range(len(texts)), tiny_tokenizer.pad_token_id,
                            window=12)
    assert_every_artefact_answers_alike(model, spec, tiny_tokenizer, texts, tmp_path, ids=ids)
    assert "select ops" not in caplog.text  # TFLite's builtins cover the bag


def test_onnx_computes_the_bag(tiny_spec, tiny_tokenizer, tmp_path):
    from test_export import assert_onnx_answers_as_predict_ids

    spec = with_bag(tiny_spec)
    mtk.keras.utils.set_random_seed(13)
    model = mtk.build_model(spec, bert_config=tiny_config())
    bag = model.get_layer(PIECE_BAG_LAYER)
    for weights in (bag.piece_weights, bag.bigram_weights):  # learned weights, not the initial zeros
        weights.assign(np.random.default_rng(0).uniform(-2, 2, weights.shape))
    assert_onnx_answers_as_predict_ids(model, spec, tiny_tokenizer, ["red alpha program", "", "the blue file " * 3],
                                       tmp_path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"bag_dim": -1}, r"`bag_dim` must be an integer >= 0 \(dimensions of the bag of word pieces; 0: none\), "
                          r"received -1"),
        ({"bag_dim": 2.5}, r"`bag_dim` must be an integer >= 0 .*received 2.5"),
        ({"bag_buckets": -3}, r"`bag_buckets` must be an integer >= 0 \(hashed word-piece pairs.*received -3"),
        ({"bag_buckets": "64"}, r"`bag_buckets` must be an integer >= 0 .*received '64'"),
        ({"bag_dim": 0, "bag_buckets": 64}, r"`bag_buckets`=64 needs `bag_dim` > 0 .*received bag_dim=0"),
        ({"bag_pooling": "max"}, r"`bag_pooling` must be one of \['mean', 'weighted'\], received 'max'"),
        ({"bag_pooling": None}, r"`bag_pooling` must be one of \['mean', 'weighted'\], received None"),
        ({"bag_dim": 0, "bag_buckets": 0}, r"`bag_pooling`='weighted' needs `bag_dim` > 0 .*received bag_dim=0"),
    ],
)
def test_bad_bag_options_are_refused(tiny_spec, changes, match):
    with pytest.raises(ValueError, match=match):
        with_bag(tiny_spec, **changes)


def test_a_spec_saved_before_the_bag_loads_without_one(tiny_spec):
    data = tiny_spec.to_dict()
    del data["bag_dim"], data["bag_buckets"], data["bag_pooling"]
    loaded = mtk.TaskSpec.from_dict(data)
    assert (loaded.bag_dim, loaded.bag_buckets, loaded.bag_pooling) == (0, 0, "mean")
    # One saved with a bag before `bag_pooling` existed keeps the plain mean it was trained with.
    data = with_bag(tiny_spec, bag_pooling="mean").to_dict()
    del data["bag_pooling"]
    assert mtk.TaskSpec.from_dict(data) == with_bag(tiny_spec, bag_pooling="mean")
    assert mtk.TaskSpec.from_dict(with_bag(tiny_spec).to_dict()) == with_bag(tiny_spec)


def test_the_bag_stays_float32_under_mixed_bfloat16(tiny_spec, tiny_tokenizer):
    # The recipe may train in mixed_bfloat16: the bag's tables and its vector stay float32, and the bfloat16
    # model's answers stay close to the float32 model's with the same weights.
    spec = with_bag(tiny_spec)
    mtk.keras.utils.set_random_seed(14)
    plain = mtk.build_model(spec, bert_config=tiny_config())
    mixed = mtk.build_model(spec, bert_config=tiny_config(), mixed_precision="mixed_bfloat16")
    mixed.set_weights(plain.get_weights())
    bag = mixed.get_layer(PIECE_BAG_LAYER)
    assert bag.pieces.dtype == bag.piece_weights.dtype == tf.float32 and bag.compute_dtype == "float32"
    assert mixed.get_layer(WIDE_AND_DEEP_LAYER).output.dtype == tf.float32
    batch = mtk.tokenize(tiny_tokenizer, ["red alpha program", "the blue file " * 3], spec.max_length)
    want, got = plain(batch), mixed(batch)
    for group in spec.groups:
        assert got[group.name].dtype == tf.float32
        np.testing.assert_allclose(got[group.name].numpy(), want[group.name].numpy(), atol=0.05)
    mtk.compile_model(mixed, spec, learning_rate=1e-3)
    records = synthetic_records(16)
    before = [bag.bigrams.numpy().copy(), bag.bigram_weights.numpy().copy()]
    mixed.fit(mtk.make_dataset(spec, tiny_tokenizer, records, batch_size=8), epochs=1, verbose=0)
    assert not np.allclose(bag.bigrams.numpy(), before[0]) and not np.allclose(bag.bigram_weights.numpy(), before[1])

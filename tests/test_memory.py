"""A memory of the training rows (``spec.neighbours``, mtkeras.memory): the vote equals the numpy nearest-neighbour
rule it was measured with, the memory model keeps the trained weights, every kind either votes or answers as
before, every artefact answers as the Predictor, training fills it, and mistakes are refused clearly."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import synthetic_records, tiny_config, write_jsonl
from test_kinds_more import mixed_records

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.memory import VOTES, NeighbourMemory, NeighbourVote, add_memory, remembering
from mtkeras.spec import HEAD_SUFFIX, MEMORY_LAYER


def numpy_votes(spec, memory, queries, records, share):
    """The rule of BENCHMARKS.md "Nearest training rows as a second opinion", written out in numpy: cosine
    similarity, the k nearest, softmax(similarity / temperature), the annotated neighbours' mean label."""
    unit = memory / np.linalg.norm(memory, axis=1, keepdims=True)
    query = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarity = query @ unit.T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, : spec.neighbours]
    near = np.take_along_axis(similarity, nearest, 1)
    weight = np.exp((near - near.max(1, keepdims=True)) / spec.neighbour_temperature)
    weight /= weight.sum(1, keepdims=True)
    targets, weights = mtk.encode_targets(spec, records)
    votes = {}
    for name in remembering(spec):
        held = weight * weights[name][nearest]
        total = held.sum(1, keepdims=True)
        p = np.einsum("nk,nkl->nl", held, targets[name][nearest]) / np.maximum(total, 1e-12) + 1e-4
        p = p / p.sum(1, keepdims=True) if spec.group(name).rules.neighbour_vote == "distribution" else \
            np.clip(p, 1e-4, 1 - 1e-4)
        votes[name] = (p, np.where(total > 0, share, 0.0))
    return votes


@pytest.fixture(scope="module")
def remembered(tiny_folder, tiny_tokenizer):
    """An untrained tiny model with one group of every kind, and the same model with a memory of 40 rows (some
    unannotated for topic)."""
    from test_kinds_more import COLOURS, TOPICS

    spec = mtk.TaskSpec(encoder=tiny_folder, max_length=32, neighbours=5, neighbour_temperature=0.1, groups=[
        mtk.LabelGroup("topic", "multiclass", labels=TOPICS),
        mtk.LabelGroup("colour", "multilabel", labels=COLOURS),
        mtk.LabelGroup("count", "regression", labels=["count"]),
        mtk.LabelGroup("marks", "token_multilabel", labels=["colour", "topic"]),
    ])
    records = mixed_records(40, seed=3)
    for record in records[::4]:
        record["topic"] = None
    mtk.keras.utils.set_random_seed(21)
    model = mtk.build_model(spec, bert_config=tiny_config())
    with_memory, memory_spec = add_memory(model, spec, records, tokenizer=tiny_tokenizer)
    return model, spec, with_memory, memory_spec, records


def test_the_vote_is_the_numpy_nearest_neighbour_rule(remembered, tiny_tokenizer):
    model, spec, with_memory, memory_spec, records = remembered
    texts = [r["text"] for r in synthetic_records(24, seed=9)] + ["", "gamma " * 40]
    plain = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32")  # the numpy rule's precision
    answers = mtk.Predictor(with_memory, memory_spec, tiny_tokenizer, precision="float32").predict_proba(texts)
    head = plain.predict_proba(texts)
    votes = numpy_votes(spec, plain.embed([r["text"] for r in records]), plain.embed(texts), records,
                        spec.neighbour_share)
    assert sorted(votes) == ["colour", "topic"] and memory_spec.memory_rows == 40
    for name, (vote, share) in votes.items():
        expected = (1 - share) * head[name] + share * vote
        np.testing.assert_allclose(answers[name], expected, atol=1e-5, err_msg=name)
        assert np.abs(answers[name] - head[name]).max() > 0.01, name  # the memory changed the answers
    np.testing.assert_allclose(answers["count"], head["count"], atol=1e-6)  # kinds that do not vote: as before
    for one, other in zip(answers["marks"], head["marks"], strict=True):
        np.testing.assert_allclose(one, other, atol=1e-6)


def test_a_text_with_no_annotated_neighbour_gets_its_head_alone():
    memory = NeighbourMemory(rows=3, dim=2, k=2, temperature=0.05)
    vote = NeighbourVote(rows=3, labels=2, share=0.5, vote="independent")
    pooled = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    near = memory(pooled)
    head = tf.constant([[0.9, 0.1], [0.2, 0.6]])
    vote(head, near)
    memory.set_weights([np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)])
    vote.set_weights([np.array([[1, 0], [1, 1], [0, 1]], np.float32), np.array([0, 0, 1], np.float32)])
    answer = vote(head, memory(pooled)).numpy()
    np.testing.assert_allclose(answer[0], [0.9, 0.1], atol=1e-6)  # rows 0 and 1 are nearest, neither annotated
    np.testing.assert_allclose(answer[1], 0.5 * np.array([0.2, 0.6]) + 0.5 * np.array([1e-4, 1 - 1e-4]), atol=1e-5)


def test_the_memory_model_keeps_the_trained_weights_and_names_its_outputs_by_group(remembered):
    model, spec, with_memory, memory_spec, _ = remembered
    assert sorted(with_memory.output_names) == sorted(spec.group_names)
    for name in ("topic", "colour"):
        assert isinstance(with_memory.get_layer(name), NeighbourVote)
        for one, other in zip(with_memory.get_layer(name + HEAD_SUFFIX).get_weights(),
                              model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(one, other)
    assert with_memory.get_layer(MEMORY_LAYER).vectors.shape == (40, 32)
    assert not any(w.trainable for w in with_memory.get_layer(MEMORY_LAYER).weights)
    assert mtk.TaskSpec.from_json(memory_spec.to_json()) == memory_spec
    assert [g.kind for g in spec.groups if g.rules.neighbour_vote] == ["multiclass", "multilabel"]
    assert all(g.rules.neighbour_vote in (None, *VOTES) for g in spec.groups)


def test_a_memory_can_be_replaced_and_survives_a_precision_change(remembered, tiny_tokenizer):
    model, spec, with_memory, memory_spec, records = remembered
    again, again_spec = add_memory(with_memory, memory_spec, records[:30], tokenizer=tiny_tokenizer)
    assert again_spec.memory_rows == 30 and again.get_layer(MEMORY_LAYER).vectors.shape == (30, 32)
    texts = ["red alpha program", "blue beta"]
    fresh = add_memory(model, spec, records[:30], tokenizer=tiny_tokenizer)[0]
    for name, value in mtk.Predictor(again, again_spec, tiny_tokenizer).predict_proba(texts).items():
        if name != "marks":
            np.testing.assert_allclose(value, mtk.Predictor(fresh, again_spec, tiny_tokenizer).predict_proba(texts)
                                       [name], atol=1e-6)
    bf16 = mtk.Predictor(with_memory, memory_spec, tiny_tokenizer, precision="bfloat16").predict_proba(texts)
    float32 = mtk.Predictor(with_memory, memory_spec, tiny_tokenizer).predict_proba(texts)
    np.testing.assert_allclose(bf16["colour"], float32["colour"], atol=0.05)


@pytest.mark.slow  # measured > 15 s; ONNX (below) and test_saving's fresh process cover a memory by default
def test_the_keras_file_and_tflite_answer_with_the_memory(remembered, tiny_tokenizer, tmp_path):
    _, _, model, spec, _ = remembered
    spec = spec.with_temperatures({"topic": 1.5, "colour": 0.8})  # calibration applies to the blended answer
    texts = [r["text"] for r in synthetic_records(10, seed=11)] + ["", "x " * 40]
    python = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32").predict_proba(texts)  # as TFLite
    mtk.save_model(model, spec, tmp_path / "saved", tiny_tokenizer)
    loaded, loaded_spec, _ = mtk.load_model(tmp_path / "saved")
    assert loaded_spec == spec
    reloaded = mtk.Predictor(loaded, loaded_spec, tiny_tokenizer, precision="float32").predict_proba(texts)
    ids = {k: np.asarray(v) for k, v in mtk.tokenize(tiny_tokenizer, texts, spec.max_length).items()}
    interpreter = tf.lite.Interpreter(model_path=mtk.export_tflite(model, str(tmp_path / "m.tflite"), spec=spec))
    lite = interpreter.get_signature_runner()(**ids)
    for name in remembering(spec):
        np.testing.assert_allclose(reloaded[name], python[name], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(lite[f"{name}_probabilities"], python[name], atol=1e-5, err_msg=name)


# The SavedModel served in a process with only TensorFlow and TF Text: slow (a fresh process; > 20 s). The fresh
# process's loading of the memory's layers from the Keras file is in test_saving's test_fresh_process_loads_every_layer.
@pytest.mark.slow
def test_every_artefact_answers_with_the_memory(remembered, tiny_tokenizer, tmp_path):
    from test_export import assert_every_artefact_answers_alike

    _, _, model, spec, _ = remembered
    spec = spec.with_temperatures({"topic": 1.5, "colour": 0.8})
    texts = [r["text"] for r in synthetic_records(10, seed=11)] + ["", "x " * 40]
    assert_every_artefact_answers_alike(model, spec, tiny_tokenizer, texts, tmp_path, groups=remembering(spec))


def test_onnx_answers_with_the_memory(remembered, tiny_tokenizer, tmp_path):
    from test_export import assert_onnx_answers_as_predict_ids

    _, _, model, spec, _ = remembered
    assert_onnx_answers_as_predict_ids(model, spec, tiny_tokenizer, ["red alpha program", "", "the blue file " * 3],
                                       tmp_path)


def test_training_fills_the_memory_and_fits_thresholds_on_its_answers(config_file, tmp_path, monkeypatch):
    import yaml

    import mtkeras.workflow

    config = yaml.safe_load(config_file.read_text())
    config["spec"]["neighbours"] = 4
    config["training"]["epochs"] = 2
    config_file.write_text(yaml.safe_dump(config))
    seen = {}

    def cross_fitted_report(spec, candidates, *args, answers=None, **kwargs):  # every epoch answers (test only)
        seen.update(heads=candidates, answers=[answers(index) for index in range(len(candidates))])
        return real(spec, candidates, *args, answers=answers, **kwargs)

    real = mtkeras.workflow.cross_fitted_report
    monkeypatch.setattr(mtkeras.workflow, "cross_fitted_report", cross_fitted_report)
    run_dir = mtk.train(mtk.load_config(config_file), verbose=0)
    share = mtk.TaskSpec.load(tmp_path / "run" / "model" / "spec.json").neighbour_share
    for heads, answers in zip(seen["heads"], seen["answers"], strict=True):  # each epoch: its heads' blend with votes
        for name in ("topic", "colour"):
            votes = (answers[name] - (1 - share) * heads[name]) / share
            assert votes.min() > -1e-4 and votes.max() < 1 + 1e-4, name
    assert not np.allclose(seen["answers"][0]["colour"], seen["answers"][1]["colour"], atol=1e-3)
    model, spec, tokenizer = mtk.load_model(run_dir)
    assert spec.memory_rows == 192 and spec.neighbours == 4
    assert model.get_layer(MEMORY_LAYER).vectors.shape == (192, 32)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Epochs chosen on the other half by the heads' probabilities, as the checkpoint is; each answers with a
    # memory. The epochs' weights were kept for that, and removed once the report was written.
    assert metrics["cross_fitted"]["candidates"] == ["epoch 1, with its memory", "epoch 2, with its memory"]
    assert sorted(os.listdir(tmp_path / "run" / "validation_predictions")) == ["epoch_1.npz", "epoch_2.npz"]
    validation = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    report = mtk.Predictor(model, spec, tokenizer).evaluate(validation)
    assert mtk.evaluation.summary(report) == pytest.approx(mtk.evaluation.summary(metrics["validation"]), abs=1e-4)


def test_training_from_files_read_as_needed_refuses_a_memory(config_file, tmp_path):
    import yaml

    config = yaml.safe_load(config_file.read_text())
    config["spec"]["neighbours"] = 4
    write_jsonl(tmp_path / "train-2.jsonl", synthetic_records(8, seed=4))
    config["data"]["train"] = "train*.jsonl"
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"Config `spec.neighbours` \(4\) needs the training rows in memory, but "
                                         r"`data.train` .*train\*.jsonl' is read as needed"):
        mtk.train(mtk.load_config(config_file), verbose=0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"neighbours": -1}, r"`neighbours` must be an integer >= 0 \(nearest training rows each text reads; 0: "
                             r"no memory\), received -1"),
        ({"neighbours": 2.5}, r"`neighbours` must be an integer >= 0 .*received 2.5"),
        ({"neighbours": True}, r"`neighbours` must be an integer >= 0 .*received True"),
        ({"neighbour_share": 0.0}, r"`neighbour_share` must be a number in \(0, 1\], received 0.0"),
        ({"neighbour_share": 1.5}, r"`neighbour_share` must be a number in \(0, 1\], received 1.5"),
        ({"neighbour_temperature": 0}, r"`neighbour_temperature` must be a number > 0, received 0"),
        ({"neighbour_temperature": float("inf")}, r"`neighbour_temperature` must be a number > 0, received inf"),
        ({"neighbour_temperature": float("nan")}, r"`neighbour_temperature` must be a number > 0, received nan"),
        ({"memory_rows": -3, "neighbours": 2}, r"`memory_rows` must be an integer >= 0 .*received -3"),
        ({"memory_rows": 10, "neighbours": 0}, r"TaskSpec `memory_rows`=10 needs `neighbours` > 0 .*received "
                                               r"neighbours=0"),
    ],
)
def test_bad_memory_options_are_refused(tiny_spec, changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(tiny_spec, **changes)


def test_a_group_named_like_another_groups_head_is_refused_with_a_memory(tiny_spec):
    groups = [*tiny_spec.groups, mtk.LabelGroup("topic_head", "multilabel", labels=["x"])]
    dataclasses.replace(tiny_spec, groups=groups)  # no memory: no head layer renamed, no clash
    with pytest.raises(ValueError, match=r"TaskSpec `neighbours`=3: groups \['topic_head'\] are named like the head "
                                         r"layer of another group \('<group>_head'\)"):
        dataclasses.replace(tiny_spec, groups=groups, neighbours=3)


def test_a_memory_refuses_what_it_cannot_remember(tiny_spec, tiny_tokenizer, tiny_folder):
    model = mtk.build_model(tiny_spec, bert_config=tiny_config())
    records = synthetic_records(4)
    with pytest.raises(ValueError, match=r"add_memory: `spec.neighbours` is 0 \(no memory\); set it"):
        add_memory(model, tiny_spec, records, tokenizer=tiny_tokenizer)
    spec = dataclasses.replace(tiny_spec, neighbours=3)
    for bad in ([], "a text", {"text": "a"}):
        with pytest.raises(ValueError, match=r"add_memory: `records` must be a non-empty list of training rows"):
            add_memory(model, spec, bad, tokenizer=tiny_tokenizer)
    with pytest.raises(ValueError, match=r"Row 1, column 'colour' \(multilabel group 'colour'\): unknown label "
                                         r"'purple'"):
        add_memory(model, spec, [records[0], {**records[1], "colour": ["purple"]}], tokenizer=tiny_tokenizer)
    with pytest.raises(ValueError, match=r"TaskSpec `neighbours`=3: no group of \['count'\] is of a kind a memory "
                                         r"answers for \(\['multiclass', 'multilabel'\]\); set `neighbours` to 0"):
        mtk.TaskSpec(encoder=tiny_folder, neighbours=3, groups=[mtk.LabelGroup("count", "regression", labels=["n"])])


def test_a_config_that_sets_the_memorys_rows_is_refused(config_file):
    with pytest.raises(ValueError, match=r"Config `spec.memory_rows` \(7\) is written by training, after the last "
                                         r"epoch .*; remove it, and set `spec.neighbours`"):
        mtk.train(mtk.load_config(config_file, ["spec.neighbours=3", "spec.memory_rows=7"]), verbose=0)


def test_a_memory_models_heads_keep_the_heads_learning_rate_factor(remembered):
    from mtkeras.training import lr_multipliers

    _, _, model, spec, _ = remembered
    factors = lr_multipliers(model, spec, head_lr_multiplier=50.0, layer_lr_decay=1.0)
    heads = [v.name for v in model.trainable_variables if v.name.startswith(("topic_head/", "colour_head/"))]
    assert len(heads) == 4 and factors["^topic_head/"] == factors["^colour_head/"] == 50.0


def test_embed_needs_a_text_level_vector(tiny_folder, tiny_tokenizer):
    spec = mtk.TaskSpec(encoder=tiny_folder, max_length=32,
                        groups=[mtk.LabelGroup("marks", "token_multilabel", labels=["colour", "topic"])])
    predictor = mtk.Predictor(mtk.build_model(spec, bert_config=tiny_config()), spec, tiny_tokenizer)
    assert len(predictor.predict(["red alpha"])) == 1  # the predictor works; only embed has nothing to give
    with pytest.raises(ValueError, match=r"Predictor.embed: the model has no pooled text vector \(layer "
                                         r"'mean_pooling'\): its groups \['marks'\] all answer per token"):
        predictor.embed(["red alpha"])

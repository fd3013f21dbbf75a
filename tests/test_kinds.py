"""The contract every registered kind keeps, one parametrized test per stage:
encode -> one fit step -> predict -> decode -> save/load -> SavedModel and TFLite parity,
and the declaration (outputs, metrics) that exports, metadata, the README and the client read."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import tiny_config
from test_kinds_more import mixed_records

import mtkeras as mtk
from mtkeras._compat import tf
from mtkeras.data import make_dataset
from mtkeras.kinds import KINDS, outputs_table
from mtkeras.serving import parse_rest_response

#: One example group per registered kind, on the columns of ``mixed_records``; a new kind adds its own.
EXAMPLES = {
    "multiclass": dict(name="topic", labels=["alpha", "beta", "gamma"]),
    "multilabel": dict(name="colour", labels=["red", "blue", "green", "yellow"]),
    "regression": dict(name="count", labels=["count"], normalize=True),
    "token_multilabel": dict(name="marks", labels=["colour", "topic"]),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_kind_has_an_example():
    assert sorted(EXAMPLES) == sorted(KINDS)


@pytest.fixture(scope="module", params=sorted(KINDS))
def trained(request, tiny_folder, tiny_tokenizer):
    kind = request.param
    # Windows of 8 tokens (2 pieces shared), up to 3 per text: most synthetic texts take 2 or 3, so every
    # stage below also checks that each kind reads long texts whole, alike in every artefact.
    spec = mtk.TaskSpec(encoder=tiny_folder, max_length=8, max_windows=3, stride=2,
                        groups=[mtk.LabelGroup(kind=kind, **EXAMPLES[kind])])
    spec = mtk.fit_target_stats(spec, mixed_records(64))
    mtk.keras.utils.set_random_seed(3)
    model = mtk.build_model(spec, bert_config=tiny_config())
    mtk.compile_model(model, spec)  # the default recipe
    history = model.fit(make_dataset(spec, tiny_tokenizer, mixed_records(16), batch_size=16), epochs=1, verbose=0)
    return kind, spec, model, history.history


def test_declaration_is_consistent(trained):
    kind, spec, model, history = trained
    group = spec.groups[0]
    assert [metric.name for metric in group.rules.metrics()] == list(group.rules.metric_names)
    suffixes = [output.suffix for output in group.rules.outputs]
    assert len(set(suffixes)) == len(suffixes) and group.rules.raw_output.dtype == "float32"
    assert group.rules.has_probabilities == ("probabilities" in suffixes)
    assert np.isfinite(history["loss"]).all()  # one fit step with the default recipe


def test_encode_predict_decode_save_load(trained, tiny_tokenizer, tmp_path):
    kind, spec, model, _ = trained
    group = spec.groups[0]
    records = mixed_records(6, seed=7)
    texts = [r["text"] for r in records]
    targets, weights = mtk.encode_targets(spec, records)
    assert weights[group.name].tolist() == [1.0] * 6 and len(targets[group.name]) == 6
    predictor = mtk.Predictor(model, spec, tiny_tokenizer)
    probs = predictor.predict_proba(texts)
    answers = predictor.predict(texts)
    assert [a[group.name] for a in answers] == group.rules.decode(np.asarray(probs[group.name]), texts)
    # the Predictor decodes any outputs (here the encoded targets) with the group's own rules
    decoded = predictor.decode({group.name: targets[group.name]}, texts)
    assert [row[group.name] for row in decoded] == group.rules.decode(targets[group.name], texts)
    report = mtk.evaluation_report(spec, probs, targets, weights)
    assert report["groups"][group.name]["rows"] == 6
    mtk.save_model(model, spec, tmp_path / "m", tiny_tokenizer)
    assert mtk.Predictor.from_folder(str(tmp_path / "m")).predict(texts) == answers


def test_saved_model_tflite_and_client_follow_the_declaration(trained, tiny_tokenizer, tmp_path):
    from test_export import tflite_probs

    kind, spec, model, _ = trained
    group = spec.groups[0]
    texts = [r["text"] for r in mixed_records(5, seed=8)] + [""]
    path = mtk.export_saved_model(model, tmp_path / "export", spec=spec, tokenizer=tiny_tokenizer)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    declared = {f"{group.name}_{o.suffix}": o for o in group.rules.outputs}
    assert set(served) == set(declared)
    for name, output in declared.items():
        assert served[name].dtype.name == output.dtype and served[name].shape.rank == len(output.shape)
    predictor = mtk.Predictor(model, spec, tiny_tokenizer, precision="float32")  # as the float32 exports
    answers = [a[group.name] for a in predictor.predict(texts)]
    columns = {name: tensor.numpy().tolist() for name, tensor in served.items()}
    client = [row[group.name] for row in parse_rest_response({"outputs": columns}, path)]
    if group.rules.per_word:
        answers = [a[: len(c)] for a, c in zip(answers, client, strict=True)]  # served words stop at the last window
    if group.rules.has_probabilities:
        assert client == answers
    else:
        assert client == pytest.approx(answers, abs=1e-4)

    tflite = mtk.export_tflite(model, tmp_path / "m.tflite", spec=spec)
    batch = mtk.data.pad_rows(mtk.data.encode_unpadded(tiny_tokenizer, texts, spec), range(len(texts)),
                              tiny_tokenizer.pad_token_id, window=spec.max_length)
    assert batch["input_ids"].shape[1] > spec.max_length  # windows
    lite = tflite_probs(tflite, [batch])
    assert set(lite) == {f"{group.name}_{group.rules.raw_output.suffix}"}
    np.testing.assert_allclose(lite[f"{group.name}_{group.rules.raw_output.suffix}"],
                               model(batch, training=False)[group.name].numpy(), atol=1e-4)


def test_readme_outputs_table_is_the_declaration():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert outputs_table() in readme, "README's outputs table differs: paste mtkeras.kinds.outputs_table()"


def test_no_module_outside_kinds_branches_on_a_kind():
    """No comparison, ``in`` test or lookup with a kind's name (or a level) outside mtkeras/kinds/;
    docstring examples may name kinds."""
    import ast

    words = set(KINDS) | {"token"}  # the old token level (its twin "text" is also the input name)
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "mtkeras")):
        if os.path.basename(folder) == "kinds":
            continue
        for file in (f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, file), encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare):
                    parts = [node.left, *node.comparators]
                elif isinstance(node, ast.Subscript):
                    parts = [node.slice]
                elif isinstance(node, ast.Attribute) and node.attr in ("level", "kind_rules"):
                    offenders.append(f"{file}:{node.lineno}: .{node.attr}")
                    continue
                else:
                    continue
                for part in parts:
                    if isinstance(part, ast.Constant) and part.value in words:
                        offenders.append(f"{file}:{node.lineno}: {part.value!r}")
    assert offenders == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_group_copies_keep_their_rules(kind):
    group = mtk.LabelGroup(kind=kind, **EXAMPLES[kind])
    copy = replace(group, loss_weight=2.0)
    assert type(copy.rules) is KINDS[kind] and copy.rules.group is copy

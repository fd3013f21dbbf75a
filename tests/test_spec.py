import math

import pytest

import mtkeras as mtk
from mtkeras.spec import INPUT_NAMES, LAYER_NAMES


def group(**overrides):
    values = dict(name="use", kind="multilabel", labels=["a", "b"], loss_weight=1.0)
    values.update(overrides)
    return mtk.LabelGroup(**values)


def spec(**overrides):
    values = dict(
        encoder="models/bert",
        groups=[group(name="section", kind="multiclass", labels=["x", "y", "z"]), group()],
        max_length=64,
    )
    values.update(overrides)
    return mtk.TaskSpec(**values)


def test_labels_become_tuples_and_thresholds_default_to_half():
    g = group(labels=["a", "b", "c"])
    assert g.labels == ("a", "b", "c")
    assert g.thresholds == (0.5, 0.5, 0.5)
    assert group(kind="multiclass").thresholds is None
    assert g.source_column == "use" and group(column="tags_use").source_column == "tags_use"


def test_groups_are_frozen():
    g = group()
    with pytest.raises(AttributeError, match="cannot assign"):
        g.name = "other"


@pytest.mark.parametrize("kind", sorted(mtk.KINDS))
def test_every_kind_is_accepted(kind):
    labels = ["a", "b", "c"]
    assert type(group(kind=kind, labels=labels).rules) is mtk.KINDS[kind]


def test_unknown_kind_names_value_and_accepted_kinds():
    with pytest.raises(ValueError, match=r"unknown `kind` 'multi-class'.*Accepted kinds: \['multiclass', 'multilabel'"):
        group(kind="multi-class")


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a/b", None, "x" * 65])
def test_bad_group_name(name):
    with pytest.raises(ValueError, match="`name` must be 1-64 letters"):
        group(name=name)


@pytest.mark.parametrize("name", INPUT_NAMES + LAYER_NAMES)
def test_group_name_clashing_with_inputs_or_layers(name):
    with pytest.raises(ValueError, match=f"`name` '{name}' clashes with a model input or layer"):
        group(name=name)


def test_duplicate_labels():
    with pytest.raises(ValueError, match=r"duplicate labels \['a'\]"):
        group(labels=["a", "b", "a"])


def test_empty_labels():
    with pytest.raises(ValueError, match="`labels` is empty"):
        group(labels=[])


def test_multiclass_needs_two_labels():
    with pytest.raises(ValueError, match=r"a multiclass group needs at least 2 labels, received \['only'\]"):
        group(kind="multiclass", labels=["only"])


def test_multilabel_with_one_label_is_fine():
    assert group(labels=["only"]).labels == ("only",)


def test_labels_given_as_a_string():
    with pytest.raises(TypeError, match="`labels` must be a list of strings, received 'abc'"):
        group(labels="abc")


@pytest.mark.parametrize("label", ["", 3, None])
def test_labels_must_be_non_empty_strings(label):
    with pytest.raises(TypeError, match="every label must be a non-empty string"):
        group(labels=["a", label])


@pytest.mark.parametrize("weight", [0, -1.0, math.inf, math.nan, "1", True])
def test_bad_loss_weight(weight):
    with pytest.raises(ValueError, match="`loss_weight` must be a finite number > 0, received"):
        group(loss_weight=weight)


def test_thresholds_checked():
    assert group(thresholds=[0.2, 0.9]).thresholds == (0.2, 0.9)
    with pytest.raises(ValueError, match="`thresholds` has 1 values for 2 labels"):
        group(thresholds=[0.3])
    with pytest.raises(ValueError, match="threshold for label 'b' must be a number in \\(0, 1\\), received 1.0"):
        group(thresholds=[0.3, 1.0])
    with pytest.raises(ValueError, match="decoded by argmax and takes no `thresholds`"):
        group(kind="multiclass", thresholds=[0.5, 0.5])


def test_bad_column():
    with pytest.raises(TypeError, match="`column` must be a non-empty string or None, received ''"):
        group(column="")


def test_a_group_reading_the_text_column_is_refused():
    with pytest.raises(ValueError, match=r"TaskSpec: group 'text' would read its labels from 'text', the "
                                         r"`text_column`; give the group its own `column`"):
        spec(groups=[group(name="text")])
    with pytest.raises(ValueError, match=r"group 'use' would read its labels from 'body'"):
        spec(groups=[group(column="body")], text_column="body")
    assert spec(groups=[group(name="text", column="text_labels")]).group("text").source_column == "text_labels"


def test_duplicate_group_names():
    with pytest.raises(ValueError, match=r"duplicate group names \['use'\]"):
        spec(groups=[group(), group(labels=["c"])])


def test_empty_groups():
    with pytest.raises(ValueError, match="`groups` is empty"):
        spec(groups=[])


def test_groups_items_must_be_label_groups():
    with pytest.raises(TypeError, match="`groups` items must be LabelGroup, received 3"):
        spec(groups=[group(), 3])
    with pytest.raises(TypeError, match="`groups` must be a list of LabelGroup"):
        spec(groups=group())


@pytest.mark.parametrize("max_length", [0, 2, 12.5, "128", True])
def test_bad_max_length(max_length):
    with pytest.raises(ValueError, match="`max_length` must be an integer >= 3"):
        spec(max_length=max_length)


def test_bad_encoder_and_dropout():
    with pytest.raises(TypeError, match="`encoder` must be the path of a local model folder, received None"):
        spec(encoder=None)
    with pytest.raises(ValueError, match="`head_dropout` must be a number in \\[0, 1\\), received 1.0"):
        spec(head_dropout=1.0)
    with pytest.raises(TypeError, match="`text_column` must be a non-empty string"):
        spec(text_column="")


def test_json_round_trip(tmp_path):
    original = spec(groups=[group(name="section", kind="multiclass", labels=["x", "y"]),
                            group(thresholds=[0.25, 0.75], column="tags", loss_weight=4)])
    assert mtk.TaskSpec.from_json(original.to_json()) == original
    path = tmp_path / "spec.json"
    original.save(path)
    assert mtk.TaskSpec.load(path) == original
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]  # no temporary file left


def test_pathlike_encoder(tmp_path):
    assert spec(encoder=tmp_path).encoder == str(tmp_path)


def test_from_dict_rejects_unknown_fields_and_versions():
    data = spec().to_dict()
    with pytest.raises(ValueError, match=r"Unknown task spec field\(s\) \['max_len'\]"):
        mtk.TaskSpec.from_dict({**data, "max_len": 3})
    bad_group = {**data["groups"][0], "weight": 2}
    with pytest.raises(ValueError, match=r"Unknown label group field\(s\) \['weight'\]"):
        mtk.TaskSpec.from_dict({**data, "groups": [bad_group]})
    with pytest.raises(ValueError, match="`format_version` 99 is not supported"):
        mtk.TaskSpec.from_dict({**data, "format_version": 99})
    with pytest.raises(ValueError, match="Task spec is not valid JSON"):
        mtk.TaskSpec.from_json("{")
    with pytest.raises(TypeError, match="A task spec must be a JSON object, received \\[1\\]"):
        mtk.TaskSpec.from_json("[1]")


def test_group_from_non_mapping():
    with pytest.raises(TypeError, match=r"A label group must be a JSON object, received \['use'\]"):
        mtk.LabelGroup.from_dict(["use"])


def test_group_lookup_and_with_thresholds():
    s = spec()
    assert s.group("use").labels == ("a", "b")
    with pytest.raises(KeyError, match="No label group named 'nope'; groups are \\['section', 'use'\\]"):
        s.group("nope")
    tuned = s.with_thresholds({"use": [0.1, 0.9]})
    assert tuned.group("use").thresholds == (0.1, 0.9)
    assert s.group("use").thresholds == (0.5, 0.5)  # the original is unchanged
    with pytest.raises(KeyError, match="No label group named 'nope'"):
        s.with_thresholds({"nope": [0.5]})

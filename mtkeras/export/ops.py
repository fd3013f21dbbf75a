"""Which ops an export may use, so that TF Serving's stock model server can load it.

TF Serving's model server is built with TF core at its own version and TF
Text at 2.12: an export may use any TF core op, but only TF Text ops — and op
attributes — that tensorflow-text 2.12 registers. The in-graph tokenizer needs
three, each checked (name and attributes) against the tensorflow-text 2.12.1
wheel's op registrations:

* ``NormalizeUTF8`` (attr ``normalization_form``)
* ``RegexSplitWithOffsets`` (patterns are inputs; no attrs)
* ``WordpieceTokenizeWithOffsets`` (attrs ``suffix_indicator``, ``max_bytes_per_word``,
  ``max_chars_per_token``, ``use_unknown_token``, ``unknown_token``,
  ``split_unknown_characters``, ``output_row_partition_type``)

(Reproduce the check: ``pip download --no-deps tensorflow-text==2.12.1``, unzip,
``strings tensorflow_text/python/ops/_wordpiece_tokenizer.so | grep -E '^[a-z_]+: '``.)

:func:`unsupported_ops` reports anything else: an op that is neither TF core
(``tf.raw_ops``) nor one of these, or one of these with an attribute 2.12 lacks.
"""

from __future__ import annotations

import os

from mtkeras._compat import tf

#: TF Text ops (and their attributes) present in tensorflow-text 2.12, as TF Serving links it.
TF_TEXT_2_12_OPS: dict[str, frozenset[str]] = {
    "NormalizeUTF8": frozenset({"normalization_form"}),
    "RegexSplitWithOffsets": frozenset(),
    "WordpieceTokenizeWithOffsets": frozenset(
        {
            "suffix_indicator",
            "max_bytes_per_word",
            "max_chars_per_token",
            "use_unknown_token",
            "unknown_token",
            "split_unknown_characters",
            "output_row_partition_type",
        }
    ),
}


#: The TF Text kernel library that registers each of those ops (``tensorflow_text/python/ops/<file>``): what a
#: C++ server must link or load (``TF_LoadLibrary``) besides TF core to run an export.
TF_TEXT_LIBRARIES: dict[str, str] = {
    "NormalizeUTF8": "_normalize_ops.so",
    "RegexSplitWithOffsets": "_regex_split_ops.so",
    "WordpieceTokenizeWithOffsets": "_wordpiece_tokenizer.so",
}


def tf_text_libraries() -> list[str]:
    """Paths of the installed tensorflow-text's kernel libraries an export needs (:data:`TF_TEXT_LIBRARIES`),
    found without importing tensorflow_text."""
    import importlib.util

    found = importlib.util.find_spec("tensorflow_text")
    if found is None or not found.submodule_search_locations:
        raise ImportError("tensorflow-text is not installed; its kernels run an export's tokenizer.")
    folder = os.path.join(list(found.submodule_search_locations)[0], "python", "ops")
    return [os.path.join(folder, name) for name in sorted(set(TF_TEXT_LIBRARIES.values()))]


def tf_core_ops() -> frozenset[str]:
    """The ops TensorFlow core registers (``tf.raw_ops``); TF Text's are not among them."""
    return frozenset(name for name in dir(tf.raw_ops) if not name.startswith("_"))


def saved_model_nodes(path: str | os.PathLike) -> list:
    """Every node of a SavedModel's graphs, function bodies included."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(os.fspath(path), "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    nodes = []
    for meta_graph in saved_model.meta_graphs:
        nodes.extend(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            nodes.extend(function.node_def)
    functions = {f.signature.name for mg in saved_model.meta_graphs for f in mg.graph_def.library.function}
    return [node for node in nodes if node.op not in functions]  # calls to library functions are not ops


def saved_model_ops(path: str | os.PathLike) -> set[str]:
    """The op names used in a SavedModel."""
    return {node.op for node in saved_model_nodes(path)}


def unsupported_ops(path: str | os.PathLike) -> list[str]:
    """What in an export TF Serving's stock server could not load; empty when all is well."""
    core = tf_core_ops()
    problems = set()
    for node in saved_model_nodes(path):
        if node.op in TF_TEXT_2_12_OPS:
            extra = {a for a in node.attr if not a.startswith("_")} - TF_TEXT_2_12_OPS[node.op]
            if extra:
                problems.add(f"{node.op} with attributes {sorted(extra)} that tensorflow-text 2.12 lacks")
        elif node.op not in core:
            problems.add(f"{node.op}: not a TF core op, and not a TF Text op checked against 2.12 "
                         f"({', '.join(sorted(TF_TEXT_2_12_OPS))})")
    return sorted(problems)

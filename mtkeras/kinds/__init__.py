"""The group kinds: one class per kind, one module each, and the registry (no TensorFlow here).

Adding a kind: a module with a :class:`GroupKind` subclass, and one line in :data:`KINDS`.
Nothing outside this package branches on a kind's name.
"""

from __future__ import annotations

from mtkeras.kinds.base import CLASS_WEIGHTINGS, FOCAL_GAMMA, Features, GroupKind, Output
from mtkeras.kinds.multiclass import Multiclass
from mtkeras.kinds.multilabel import Multilabel
from mtkeras.kinds.regression import Regression
from mtkeras.kinds.token_multilabel import TokenMultilabel

#: Every registered kind by its ``LabelGroup.kind`` name.
KINDS: dict[str, type[GroupKind]] = {
    Multiclass.name: Multiclass,
    Multilabel.name: Multilabel,
    Regression.name: Regression,
    TokenMultilabel.name: TokenMultilabel,
}


def outputs_table() -> str:
    """The README's table of served outputs per kind, from the kinds' declarations."""
    lines = ["| kind | `serving_default` output | dtype and shape | meaning |", "| --- | --- | --- | --- |"]
    for kind in KINDS.values():
        for output in kind.outputs:
            lines.append(f"| {kind.name} | `<group>_{output.suffix}` | {output.dtype} `[{', '.join(output.shape)}]` "
                         f"| {output.meaning} |")
    lines += ["", "| kind | `predict_ids` / TFLite output | dtype and shape | meaning |", "| --- | --- | --- | --- |"]
    for kind in KINDS.values():
        output = kind.raw_output
        lines.append(f"| {kind.name} | `<group>_{output.suffix}` | {output.dtype} `[{', '.join(output.shape)}]` "
                     f"| {output.meaning} |")
    return "\n".join(lines)


__all__ = ["CLASS_WEIGHTINGS", "FOCAL_GAMMA", "KINDS", "Features", "GroupKind", "Output", "outputs_table"]

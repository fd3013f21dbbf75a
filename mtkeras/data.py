"""Texts and labels in, model inputs and targets out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras.spec import INPUT_NAMES, TaskSpec

#: Padding strategies accepted by :func:`tokenize`.
PADDING: tuple[str, ...] = ("longest", "max_length")


def check_texts(texts: Any, arg: str = "texts") -> list[str]:
    """``texts`` as a list of str, or a clear error naming the offending item."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"`{arg}` must be a list of strings, received a single {type(texts).__name__} "
            f"{texts[:50]!r}; wrap one text in a list: [text]."
        )
    if not isinstance(texts, Iterable):
        raise TypeError(
            f"`{arg}` must be a list of strings, received {texts!r} ({type(texts).__name__})."
        )
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"`{arg}[{index}]` is {text!r} ({type(text).__name__}); every text must be a str."
            )
    return texts


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, padding: str = "longest"
) -> dict[str, np.ndarray]:
    """Token ids, attention mask and token types (int32), truncated to ``max_length``.

    ``padding="longest"`` pads to the longest text in ``texts`` only;
    ``"max_length"`` pads every row to ``max_length``.
    """
    if padding not in PADDING:
        raise ValueError(f"`padding` must be one of {list(PADDING)}, received {padding!r}.")
    texts = check_texts(texts)
    encoded = tokenizer(
        texts,
        padding=padding,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
        return_token_type_ids=True,
        return_attention_mask=True,
    )
    return {name: np.asarray(encoded[name], dtype=np.int32) for name in INPUT_NAMES}


def pad_rows(
    encoded: Mapping[str, Sequence[Sequence[int]]], rows: Sequence[int], pad_id: int
) -> dict[str, np.ndarray]:
    """Rows ``rows`` of unpadded tokenizer output, padded to their own longest row (int32)."""
    length = max(len(encoded["input_ids"][i]) for i in rows)
    batch = {}
    for name in INPUT_NAMES:
        fill = pad_id if name == "input_ids" else 0
        array = np.full((len(rows), length), fill, dtype=np.int32)
        for out_row, row in enumerate(rows):
            values = encoded[name][row]
            array[out_row, : len(values)] = values
        batch[name] = array
    return batch


def encode_targets(spec: TaskSpec, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Targets for ``model.fit``: ``{group: float32 [rows, labels]}`` from records of labels.

    Each record holds each group's labels under ``group.source_column``: one label
    (str) for a multiclass group, a list of labels for a multilabel group.
    """
    targets: dict[str, list[np.ndarray]] = {group.name: [] for group in spec.groups}
    for row, record in enumerate(records):
        for group in spec.groups:
            column = group.source_column
            if column not in record:
                raise KeyError(
                    f"Row {row} has no field {column!r} for group {group.name!r}; "
                    f"fields present: {sorted(record)}."
                )
            targets[group.name].append(group.kind_rules.encode(group, record[column], row))
    return {
        group.name: np.stack(rows) if rows else np.zeros((0, len(group.labels)), np.float32)
        for group, rows in zip(spec.groups, targets.values(), strict=True)
    }


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: not valid JSON ({error}).") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}, line {line_number}: expected a JSON object, received {record!r:.80}."
                )
            records.append(record)
    return records

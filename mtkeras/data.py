"""Texts and labels in, model inputs, targets and tf.data pipelines out.

Records are plain dicts: the spec's ``text_column`` holds the text and each
group's ``source_column`` its labels: one label (str) for a multiclass group,
a list for a multilabel group. An empty list means "none of these labels"; a
missing key or ``None`` means "not annotated for this group": the row then
carries sample weight 0 for that head and adds nothing to its loss or metrics.

Sources: JSON lines, CSV (a multilabel cell is ``"a|b"`` or a JSON list such as
``[]``; an empty cell is not annotated), a pandas DataFrame or a list of dicts.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras._compat import tf
from mtkeras.spec import INPUT_NAMES, TaskSpec

logger = logging.getLogger("mtkeras")

#: Padding strategies accepted by :func:`tokenize`.
PADDING: tuple[str, ...] = ("longest", "max_length")
#: File formats accepted by :func:`read_records`, by extension.
FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


def check_texts(texts: Any, arg: str = "texts") -> list[str]:
    """``texts`` as a list of str, or a clear error naming the offending item."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"`{arg}` must be a list of strings, received a single {type(texts).__name__} "
            f"{texts[:50]!r}; wrap one text in a list: [text]."
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"`{arg}` must be a list of strings, received {texts!r} ({type(texts).__name__}).")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"`{arg}[{index}]` is {text!r} ({type(text).__name__}); every text must be a str.")
    return texts


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, padding: str = "longest") -> dict[str, np.ndarray]:
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


def encode_unpadded(tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    """Tokenizer output for ``texts``, truncated to ``max_length`` and not padded (lists of ids per row)."""
    return tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_token_type_ids=True,
        return_attention_mask=True,
    )


def pad_rows(encoded: Mapping[str, Sequence[Sequence[int]]], rows: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
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


# --- labels -> targets ----------------------------------------------------------


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column name that occurs in ``records``, sorted (for error messages)."""
    return sorted(set().union(*(record.keys() for record in records)))


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode_targets(
    spec: TaskSpec, records: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Targets and per-output sample weights for ``model.fit``.

    Returns ``(targets, weights)``: ``targets[group]`` is float32
    ``[rows, labels]`` (one-hot or multi-hot) and ``weights[group]`` float32
    ``[rows]``, 0 where the row is not annotated for that group (missing key or
    ``None``), else 1. Pass both: ``model.fit(x, targets, sample_weight=weights)``.

    Example:
        >>> y, w = encode_targets(spec, [{"section": "utils", "use": []}, {"section": None, "use": ["viewing"]}])
        >>> w["section"]
        array([1., 0.], dtype=float32)
    """
    for group in spec.groups:
        column = group.source_column
        if records and not any(column in record for record in records):
            raise KeyError(
                f"No row has the column {column!r} of group {group.name!r}; columns present: {_columns(records)}."
            )
    targets = {group.name: np.zeros((len(records), len(group.labels)), np.float32) for group in spec.groups}
    weights = {group.name: np.zeros(len(records), np.float32) for group in spec.groups}
    for row, record in enumerate(records):
        for group in spec.groups:
            value = record.get(group.source_column)
            if _is_null(value):
                continue
            targets[group.name][row] = group.kind_rules.encode(group, value, row)
            weights[group.name][row] = 1.0
    return targets, weights


# --- reading records ---------------------------------------------------------------


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
                raise ValueError(f"{path}, line {line_number}: expected a JSON object, received {record!r:.80}.")
            records.append(record)
    return records


def _reading_view(spec: TaskSpec | Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The text column and ``{label column: kind}`` of a spec, or of its dict form (labels not needed)."""
    if isinstance(spec, TaskSpec):
        return spec.text_column, {group.source_column: group.kind for group in spec.groups}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("groups"), list):
        raise TypeError(f"`spec` must be a TaskSpec or a spec mapping with `groups`, received {spec!r:.80}.")
    kinds = {}
    for group in spec["groups"]:
        if not isinstance(group, Mapping):
            raise TypeError(f"spec `groups` items must be mappings, received {group!r:.80}.")
        kinds[group.get("column") or group.get("name")] = group.get("kind")
    return spec.get("text_column", "text"), kinds


def _csv_cell(kinds: Mapping[str, str], column: str, value: str, delimiter: str, where: str) -> Any:
    if column not in kinds:
        return value
    if value.strip() == "":
        return None  # an empty cell: not annotated
    if kinds[column] != "multilabel":
        return value.strip()
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}, column {column!r}: {value!r} is not a JSON list ({error}).") from None
        return parsed
    return [label.strip() for label in value.split(delimiter) if label.strip()]


def read_csv(
    path: str | os.PathLike, spec: TaskSpec | Mapping[str, Any], label_delimiter: str = "|"
) -> list[dict[str, Any]]:
    """The records of a CSV file with a header row.

    Multilabel cells hold labels separated by ``label_delimiter`` or a JSON list
    (``[]`` for none); an empty cell means "not annotated".
    """
    _, kinds = _reading_view(spec)
    records = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty CSV file; expected a header row.") from None
        except csv.Error as error:
            raise ValueError(f"{path}, line 1: not valid CSV ({error}).") from None
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from None
            where = f"{path}, line {reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise ValueError(f"{where}: {len(cells)} cells for {len(header)} columns {header}.")
            records.append(
                {
                    column: _csv_cell(kinds, column, cell, label_delimiter, where)
                    for column, cell in zip(header, cells, strict=True)
                }
            )
    return records


def read_records(
    source: Any,
    spec: TaskSpec | Mapping[str, Any],
    *,
    label_delimiter: str = "|",
    drop_empty_texts: bool = False,
) -> list[dict[str, Any]]:
    """Records from a ``.jsonl``/``.csv`` path, a pandas DataFrame or a list of dicts, with texts checked.

    ``spec`` tells the text column and which columns hold multilabel cells; its
    dict form (as in a config, labels not yet listed) is enough. Each text must
    be a non-empty string. Rows with an empty or whitespace-only
    text are an error unless ``drop_empty_texts=True``, which drops them and logs
    how many.
    """
    if isinstance(source, (str, os.PathLike)):
        extension = os.path.splitext(os.fspath(source))[1].lower()
        if extension not in FORMATS:
            raise ValueError(
                f"Cannot read {os.fspath(source)!r}: unknown extension {extension!r}; accepted: {sorted(FORMATS)}."
            )
        if FORMATS[extension] == "csv":
            records = read_csv(source, spec, label_delimiter)
        else:
            records = read_jsonl(source)
        origin = os.fspath(source)
    elif hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        records = [
            {key: (None if _is_null(value) else value) for key, value in row.items()}
            for row in source.to_dict(orient="records")
        ]
        origin = "DataFrame"
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        records = list(source)
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"records[{index}] is {record!r:.80} ({type(record).__name__}); expected a dict.")
        origin = "records"
    else:
        raise TypeError(
            f"Cannot read records from {source!r:.80} ({type(source).__name__}); accepted: a .jsonl or .csv path, "
            "a pandas DataFrame or a list of dicts."
        )
    return _checked_texts(records, _reading_view(spec)[0], origin, drop_empty_texts)


def _checked_texts(
    records: list[Mapping[str, Any]], column: str, origin: str, drop_empty: bool
) -> list[Mapping[str, Any]]:
    if records and not any(column in record for record in records):
        raise KeyError(
            f"{origin}: no row has the text column {column!r}; columns present: {_columns(records)}."
        )
    not_text = [i for i, record in enumerate(records) if not isinstance(record.get(column), str)]
    if not_text:
        first = records[not_text[0]].get(column)
        raise TypeError(
            f"{origin}: the text column {column!r} must hold strings; {len(not_text)} rows do not "
            f"(rows {not_text[:10]}; row {not_text[0]} holds {first!r:.60})."
        )
    empty = [i for i, record in enumerate(records) if not record[column].strip()]
    if empty and not drop_empty:
        raise ValueError(
            f"{origin}: {len(empty)} rows have an empty text (rows {empty[:10]}); fix them or pass "
            "drop_empty_texts=True to drop them."
        )
    if empty:
        logger.warning("%s: dropped %d rows with an empty text (rows %s).", origin, len(empty), empty[:10])
        dropped = set(empty)
        records = [record for i, record in enumerate(records) if i not in dropped]
    return records


# --- tf.data -----------------------------------------------------------------------------


def default_buckets(max_length: int) -> list[int]:
    """Length-bucket boundaries: eighths of ``max_length``."""
    return sorted({max(2, max_length * k // 8) for k in range(1, 8)})


def make_dataset(
    spec: TaskSpec,
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    bucket_boundaries: Sequence[int] | None = (),
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(inputs, targets, sample_weights)`` batches for ``model.fit``.

    Texts are tokenized once. Each batch is padded only to its own longest row.
    With ``bucket_boundaries`` (``()`` means :func:`default_buckets`, ``None``
    turns bucketing off) rows of similar length are batched together, so little
    padding is computed; with ``shuffle`` the row order (and so the batches)
    change every epoch.

    Example:
        >>> train = make_dataset(spec, tokenizer, records, shuffle=True, seed=0)
        >>> model.fit(train, validation_data=make_dataset(spec, tokenizer, val_records), epochs=3)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, received {batch_size!r}.")
    if len(records) == 0:
        raise ValueError("`records` is empty; a dataset needs at least one row.")
    texts = check_texts([record[spec.text_column] for record in records], arg=f"records[*][{spec.text_column!r}]")
    encoded = encode_unpadded(tokenizer, texts, spec.max_length)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    inputs = {
        name: tf.RaggedTensor.from_row_lengths(
            np.concatenate([np.asarray(row, np.int32) for row in encoded[name]]), lengths
        )
        for name in INPUT_NAMES
    }
    pad = {name: tf.constant(tokenizer.pad_token_id if name == "input_ids" else 0, tf.int32) for name in INPUT_NAMES}
    targets, weights = encode_targets(spec, records)
    targets = {k: tf.constant(v) for k, v in targets.items()}
    weights = {k: tf.constant(v) for k, v in weights.items()}
    padding_values = (pad, {k: 0.0 for k in targets}, {k: 0.0 for k in weights})

    def row(i: tf.Tensor) -> tuple[dict[str, tf.Tensor], ...]:
        return (
            {name: inputs[name][i] for name in INPUT_NAMES},
            {k: v[i] for k, v in targets.items()},
            {k: v[i] for k, v in weights.items()},
        )

    # Rows are gathered by index: slicing a RaggedTensor row gives a dense 1-D tensor.
    dataset = tf.data.Dataset.range(len(records))
    if shuffle:
        dataset = dataset.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(row, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if bucket_boundaries is not None:
        boundaries = list(bucket_boundaries) or default_buckets(spec.max_length)
        dataset = dataset.bucket_by_sequence_length(
            lambda x, *rest: tf.shape(x["input_ids"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding_values,
        )
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding_values)
    return dataset.prefetch(tf.data.AUTOTUNE)

"""Texts and labels in, model inputs, targets and tf.data pipelines out.

Records are plain dicts: the spec's ``text_column`` holds the text and each
group's ``source_column`` its labels: one label (str) for a multiclass group,
a list for a multilabel group, a number (or a list / ``{target: number}`` dict
for several targets) for a regression group, and for a token_multilabel group
either one label list per word (see :func:`mtkeras.split_words`) or character
spans ``[start, end, label]``. An empty list means "none of these labels"; a
missing key or ``None`` means "not annotated for this group": the row then
carries sample weight 0 for that head and adds nothing to its loss or metrics.

Sources: JSON lines, CSV (a multilabel cell is ``"a|b"`` or a JSON list such as
``[]``; a regression cell a number; a token cell a JSON list; an empty cell is
not annotated), a pandas DataFrame or a list of dicts.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras._checks import check_bool, check_int, check_option, check_texts
from mtkeras._compat import tf
from mtkeras.defaults import DATASET_PADDINGS, TOKENIZE_PADDINGS, TRAINING
from mtkeras.files import file_format, is_pattern, iter_csv, iter_jsonl, list_files
from mtkeras.kinds import KINDS
from mtkeras.spec import INPUT_NAMES, TaskSpec
from mtkeras.words import split_words, word_starts

logger = logging.getLogger("mtkeras")



def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, padding: str = "longest") -> dict[str, np.ndarray]:
    """Token ids, attention mask and token types (int32), truncated to ``max_length`` (one window; the
    windowed rows of a spec with ``max_windows`` > 1 come from :func:`encode_unpadded` + :func:`pad_rows`).

    ``padding="longest"`` pads to the longest text in ``texts`` only;
    ``"max_length"`` pads every row to ``max_length``.
    """
    check_option(padding, "padding", TOKENIZE_PADDINGS)
    check_int(max_length, "max_length", 3, why=" ([CLS], one token, [SEP])")
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


def encode_unpadded(tokenizer: Any, texts: Sequence[str], spec: TaskSpec, offsets: bool = False) -> dict[str, list]:
    """Model-input rows for ``texts``, not padded (lists of ids per row): one window of ``spec.max_length``
    tokens, or up to ``spec.max_windows`` end to end (:mod:`mtkeras.windows`).

    With ``offsets``, also each token's character offsets (``offset_mapping``; fast tokenizers only).
    """
    from mtkeras.windows import window_rows

    return window_rows(tokenizer, texts, spec, offsets=offsets)


def check_word_tokenizer(spec: TaskSpec, tokenizer: Any) -> None:
    """Token-level groups need character offsets, which only fast (Rust) tokenizers give."""
    if spec.needs_words and not getattr(tokenizer, "is_fast", False):
        groups = [g.name for g in spec.groups if g.rules.per_word]
        raise TypeError(
            f"Token-level groups {groups} need a fast tokenizer with character offsets; received "
            f"{type(tokenizer).__name__} (is_fast={getattr(tokenizer, 'is_fast', None)!r}). Load it with "
            "transformers.AutoTokenizer.from_pretrained(folder, use_fast=True) (mtkeras.load_tokenizer does)."
        )


def token_word_starts(encoded: Any, texts: Sequence[str]) -> list[np.ndarray]:
    """Per text, the index of each word's first token (-1: no token), from offset-carrying tokenizer output."""
    return [word_starts(encoded["offset_mapping"][i], split_words(text)) for i, text in enumerate(texts)]


def pad_rows(
    encoded: Mapping[str, Sequence[Sequence[int]]], rows: Sequence[int], pad_id: int, multiple: int = 1,
    window: int | None = None,
) -> dict[str, np.ndarray]:
    """Rows ``rows`` of unpadded tokenizer output, padded to their own longest row rounded up to
    ``multiple`` (int32); beyond one ``window`` (``max_length``) of tokens, to whole windows."""
    from mtkeras.windows import round_length

    length = max(len(encoded["input_ids"][i]) for i in rows)
    length = round_length(length, window, multiple) if window else -(-length // multiple) * multiple
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


def check_rows(records: Any, arg: str = "records") -> None:
    """Refuse anything but a list of rows (a path, one row, a generator): a TypeError naming ``arg``."""
    if isinstance(records, (str, bytes, os.PathLike, Mapping)) or not isinstance(records, Sequence):
        hint = "; read a file with mtk.read_records(path, spec)" if isinstance(records, (str, os.PathLike)) else ""
        raise TypeError(f"`{arg}` must be a list of rows (dicts with the text and the groups' labels){hint}, "
                        f"received {records!r:.80} ({type(records).__name__}).")


def encode_targets(
    spec: TaskSpec, records: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Targets and per-output sample weights, in the layout of :meth:`Predictor.predict_proba`.

    Returns ``(targets, weights)``: ``targets[group]`` is float32
    ``[rows, labels]`` (one-hot, multi-hot or regression values) or, for a
    token-level group, an object array of ``[words, labels]`` arrays; and
    ``weights[group]`` float32 ``[rows]``, 0 where the row is not annotated for
    that group (missing key or ``None``), else 1. Without token-level groups
    pass both to Keras: ``model.fit(x, targets, sample_weight=weights)``;
    :func:`make_dataset` aligns word targets to word pieces.

    Example:
        >>> y, w = encode_targets(spec, [{"section": "utils", "use": []}, {"section": None, "use": ["viewing"]}])
        >>> w["section"]
        array([1., 0.], dtype=float32)
    """
    check_rows(records)
    for group in spec.groups:
        column = group.source_column
        if records and not any(column in record for record in records):
            raise KeyError(
                f"No row has the column {column!r} of group {group.name!r}; columns present: {_columns(records)}."
            )
    targets = {group.name: group.rules.target_array(len(records)) for group in spec.groups}
    weights = {group.name: np.zeros(len(records), np.float32) for group in spec.groups}
    names = row_names(records)
    for row, record in enumerate(records):
        for name, (target, weight) in encode_row(spec, record, row if names is None else names[row]).items():
            if target is not None:
                targets[name][row] = target
            weights[name][row] = weight
    return targets, weights


def encode_row(spec: TaskSpec, record: Mapping[str, Any], row: int | str) -> dict[str, tuple[Any, float]]:
    """One record's ``{group: (target, sample weight)}``; the target is None for an unannotated row whose
    kind has no target of its own (all zeros). ``row`` names the row in errors (index or file line)."""
    text = record.get(spec.text_column, "")
    encoded = {}
    for group in spec.groups:
        value = record.get(group.source_column)
        if not group.rules.is_missing(value):
            encoded[group.name] = (group.rules.encode(value, row, text), 1.0)
        else:  # weight 0; some kinds have their own "no labels" target
            encoded[group.name] = (group.rules.encode_missing(text), 0.0)
    return encoded


def fit_target_stats(spec: TaskSpec, records: Sequence[Mapping[str, Any]]) -> TaskSpec:
    """A copy of ``spec`` with what it learns from the training data: ``(mean, std)`` per target of its
    ``normalize=True`` groups, and the weights of groups whose ``class_weight`` names a strategy.

    Learn them on the training data only; the model then outputs real values
    (``standardised * std + mean``) and its exports too. A constant target gets std 1.

    Example:
        >>> spec = fit_target_stats(spec, train_records)
    """
    if not stats_groups(spec):
        return spec
    return fit_target_stats_from(spec, *encode_targets(spec, records))


def stats_groups(spec: TaskSpec) -> list[str]:
    """The groups whose targets :func:`fit_target_stats` learns from (``normalize``, a ``class_weight`` strategy)."""
    return [g.name for g in spec.groups if g.normalize or isinstance(g.class_weight, str)]


def fit_target_stats_from(spec: TaskSpec, targets: Mapping[str, np.ndarray],
                          weights: Mapping[str, np.ndarray]) -> TaskSpec:
    """:func:`fit_target_stats` from encoded training targets and weights (those of :func:`stats_groups` are
    enough): the streaming path collects them row by row (:mod:`mtkeras.streaming`)."""
    normalized = [group for group in spec.groups if group.normalize]
    weighted = [group for group in spec.groups if isinstance(group.class_weight, str)]
    stats = {}
    for group in normalized:
        annotated = targets[group.name][weights[group.name] > 0]
        if len(annotated) == 0:
            raise ValueError(f"No row is annotated for regression group {group.name!r}; cannot learn its mean and std.")
        std = annotated.std(axis=0, dtype=np.float64)
        stats[group.name] = [
            (float(m), float(s) if s > 0 else 1.0)
            for m, s in zip(annotated.mean(axis=0, dtype=np.float64), std, strict=True)
        ]
    class_weights = {}
    for group in weighted:
        annotated = targets[group.name][weights[group.name] > 0]
        if len(annotated) == 0:
            raise ValueError(f"No row is annotated for group {group.name!r}; cannot learn its class weights.")
        class_weights[group.name] = group.rules.fit_class_weights(annotated)
    return spec.with_target_stats(stats).with_class_weights(class_weights)


# --- reading records ---------------------------------------------------------------


def _read_jsonl_lines(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[int]]:
    rows = list(iter_jsonl(path))
    return [record for _, record in rows], [line for line, _ in rows]


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped)."""
    return _read_jsonl_lines(path)[0]


def _reading_view(spec: TaskSpec | Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The text column and ``{label column: kind}`` of a spec, or of its dict form (labels not needed)."""
    if isinstance(spec, TaskSpec):
        return spec.text_column, {group.source_column: group.kind for group in spec.groups}
    if isinstance(spec, Mapping) and "groups" in spec and not isinstance(spec["groups"], list):
        raise TypeError("spec `groups` must be a list of group mappings ([{name: ..., kind: ...}, ...]), received "
                        f"{spec['groups']!r:.80}.")
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
    kind = KINDS.get(kinds[column]) if isinstance(kinds[column], str) else None
    if kind is None:
        raise ValueError(
            f"{where}, column {column!r}: unknown group kind {kinds[column]!r}; accepted: {sorted(KINDS)}."
        )
    try:
        return kind.parse_cell(value, delimiter)
    except ValueError as error:
        raise ValueError(f"{where}, column {column!r}: {error}.") from None


def read_csv(
    path: str | os.PathLike, spec: TaskSpec | Mapping[str, Any], label_delimiter: str = "|"
) -> list[dict[str, Any]]:
    """The records of a CSV file with a header row.

    Multilabel cells hold labels separated by ``label_delimiter`` or a JSON list
    (``[]`` for none); an empty cell means "not annotated".
    """
    return _read_csv_lines(path, spec, label_delimiter)[0]


def _read_csv_lines(
    path: str | os.PathLike, spec: TaskSpec | Mapping[str, Any], label_delimiter: str
) -> tuple[list[dict[str, Any]], list[int]]:
    rows = list(iter_csv(path, csv_cell_reader(spec, label_delimiter)))
    return [record for _, record in rows], [line for line, _ in rows]


def csv_cell_reader(spec: TaskSpec | Mapping[str, Any], label_delimiter: str = "|") -> Any:
    """``cell(column, value, where)`` for :func:`mtkeras.files.iter_csv`: label cells parsed by their kind."""
    _, kinds = _reading_view(spec)

    def cell(column: str, value: str, where: str) -> Any:
        return _csv_cell(kinds, column, value, label_delimiter, where)

    return cell


def read_records(
    source: Any,
    spec: TaskSpec | Mapping[str, Any],
    *,
    label_delimiter: str = "|",
    drop_empty_texts: bool = False,
) -> list[dict[str, Any]]:
    """Records from a ``.jsonl``/``.csv`` path (or a pattern: every matching file, in sorted order), a pandas
    DataFrame or a list of dicts, with texts checked.

    ``spec`` tells the text column and which columns hold multilabel cells; its
    dict form (as in a config, labels not yet listed) is enough. Each text must
    be a non-empty string. Rows with an empty or whitespace-only
    text are an error unless ``drop_empty_texts=True``, which drops them and logs
    how many. Errors name a file's rows by their line in the file (``train.jsonl, line 6``) and in-memory
    records by their 0-based index (``Row 5``); records read from a file come back as :class:`Records`,
    which keep those names for the label errors of :func:`encode_targets`.
    """
    if isinstance(source, (str, os.PathLike)) and is_pattern(source):  # every matching file, in file order
        files = list_files(source)
        read = [read_records(path, spec, label_delimiter=label_delimiter, drop_empty_texts=drop_empty_texts)
                for path in files]
        return Records([r for part in read for r in part], [name for part in read for name in part.row_names])
    if isinstance(source, (str, os.PathLike)):
        if file_format(source) == "csv":
            records, lines = _read_csv_lines(source, spec, label_delimiter)
        else:
            records, lines = _read_jsonl_lines(source)
        origin = os.fspath(source)
        if not records:
            raise ValueError(f"{origin}: no rows (the file is empty, or holds only blank lines or a CSV header).")
        row_names = [f"line {n}" for n in lines]
    elif hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        records = [
            {key: (None if _is_null(value) else value) for key, value in row.items()}
            for row in source.to_dict(orient="records")
        ]
        origin, row_names = "DataFrame", None
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        records = list(source)
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"records[{index}] is {record!r:.80} ({type(record).__name__}); expected a dict.")
        origin, row_names = "records", None
    else:
        raise TypeError(
            f"Cannot read records from {source!r:.80} ({type(source).__name__}); accepted: a .jsonl or .csv path, "
            "a pandas DataFrame or a list of dicts."
        )
    records, row_names = _checked_texts(records, _reading_view(spec)[0], origin, drop_empty_texts, row_names)
    if row_names is None:
        return records
    return Records(records, [f"{origin}, {name}" for name in row_names])


class Records(list):
    """Records read from a file: a list of dicts that also knows each row's place in it (``row_names``,
    e.g. ``'train.jsonl, line 6'``), so an error about a row's labels names the file line. Rows of in-memory
    records are named by their 0-based index (``Row 5``); the file-line names of a file do not survive
    slicing or concatenating (plain lists): use :meth:`take`.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]], row_names: Sequence[str]) -> None:
        super().__init__(records)
        if len(row_names) != len(self):
            raise ValueError(f"{len(row_names)} row names for {len(self)} records.")
        self.row_names = list(row_names)

    def take(self, indices: Sequence[int]) -> Records:
        """The records at ``indices`` (in that order), with their names."""
        return Records([self[i] for i in indices], [self.row_names[i] for i in indices])


def row_names(records: Sequence[Any]) -> list[str] | None:
    """Each row's name in errors (file lines) for :class:`Records`; None for in-memory records (0-based index)."""
    names = getattr(records, "row_names", None)
    return names if names is not None and len(names) == len(records) else None


def _checked_texts(
    records: list[Mapping[str, Any]], column: str, origin: str, drop_empty: bool, row_names: list[str] | None = None
) -> tuple[list[Mapping[str, Any]], list[str] | None]:
    """The records with their texts checked (empty ones dropped when asked), and their row names kept in step."""
    names = row_names or [f"row {i}" for i in range(len(records))]
    if records and not any(column in record for record in records):
        raise KeyError(
            f"{origin}: no row has the text column {column!r}; columns present: {_columns(records)}."
        )
    not_text = [i for i, record in enumerate(records) if not isinstance(record.get(column), str)]
    if not_text:
        first = records[not_text[0]].get(column)
        raise TypeError(
            f"{origin}: the text column {column!r} must hold strings; {len(not_text)} rows do not "
            f"({', '.join(names[i] for i in not_text[:10])}; {names[not_text[0]]} holds {first!r:.60})."
        )
    empty = [i for i, record in enumerate(records) if not record[column].strip()]
    if empty and not drop_empty:
        raise ValueError(
            f"{origin}: {len(empty)} rows have an empty text ({', '.join(names[i] for i in empty[:10])}); fix them "
            "or pass drop_empty_texts=True to drop them."
        )
    if empty:
        logger.warning("%s: dropped %d rows with an empty text (%s).", origin, len(empty),
                       ", ".join(names[i] for i in empty[:10]))
        dropped = set(empty)
        records = [record for i, record in enumerate(records) if i not in dropped]
        row_names = None if row_names is None else [name for i, name in enumerate(row_names) if i not in dropped]
    return records, row_names


# --- tf.data -----------------------------------------------------------------------------


#: How ``make_dataset`` batches and pads rows (see :data:`mtkeras.defaults.DATASET_PADDINGS`).
PADDINGS = DATASET_PADDINGS


def default_buckets(max_length: int, max_windows: int = 1) -> list[int]:
    """Length-bucket boundaries: eighths of ``max_length``, then one bucket per number of windows."""
    return sorted({max(2, max_length * k // 8) for k in range(1, 8)}
                  | {max_length * k + 1 for k in range(1, max_windows)})


def _fixed_buckets(boundaries: Sequence[int], max_length: int, max_windows: int = 1) -> list[int]:
    """Boundaries for ``pad_to_bucket_boundary``: a bucket ``[a, b)`` pads to ``b - 1``; the buckets beyond the
    given boundaries pad to whole windows (``max_length``, ``2 * max_length``, ...)."""
    return sorted({b + 1 for b in boundaries if b < max_length}
                  | {max_length * k + 1 for k in range(1, max_windows + 1)})


def _texts_of(records: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    """Each record's text; a row without the text column is an error naming the row, its columns and the spec's
    ``text_column``."""
    texts = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or column not in record:
            name = records.row_names[index] if isinstance(records, Records) else f"Row {index}"
            held = f"its columns: {sorted(map(str, record))}" if isinstance(record, Mapping) else (
                f"it is {type(record).__name__}, not a dict")
            raise KeyError(f"{name} has no text column {column!r} ({held}); name the column with the spec's "
                           "`text_column`.")
        texts.append(record[column])
    return texts


def make_dataset(
    spec: TaskSpec,
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    padding: str = TRAINING.padding,
    bucket_boundaries: Sequence[int] = (),
    input_context: Any = None,
    shuffle_buffer: int | None = None,
    read_options: Any = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(inputs, targets, sample_weights)`` batches for ``model.fit``.

    ``records`` are in-memory records (a list of dicts, :func:`read_records`' result), or files read as they
    are needed: a pattern of ``.jsonl``/``.csv`` files (``"shards/train-*.jsonl"``, tokenized in the graph,
    :mod:`mtkeras.streaming`) or the folder of TFRecord shards ``mtkeras prepare`` wrote (:mod:`mtkeras.shards`).
    For files only: ``input_context`` (a ``tf.distribute.InputContext``) makes this pipeline read its own share
    of the files; ``shuffle_buffer`` rows are shuffled at a time (default
    :data:`mtkeras.streaming.SHUFFLE_BUFFER`); ``read_options`` is a :class:`mtkeras.streaming.ReadOptions`.

    Texts are tokenized once. ``padding`` is one of :data:`PADDINGS`: by default rows
    of similar length are batched together (``bucket_boundaries``, ``()`` means
    :func:`default_buckets`) and each batch is padded only to its own longest row,
    so little padding is computed; ``"bucketed_fixed"`` pads to the bucket's bound
    instead (a few shapes, so XLA compiles each once). With ``shuffle`` the row
    order (and so the batches) change on every pass; with a ``seed`` the sequence of
    orders is the same in every process (``mtkeras.train`` resumes a killed run on
    exactly the batches the uninterrupted run would have seen).

    With bucketing, the number of batches varies a little from pass to pass (each
    bucket's last batch is partial). Keras fixes an epoch's length to the first
    pass's, dropping or missing batches later, so for ``fit`` repeat the dataset and
    pass ``steps_per_epoch`` (as ``mtkeras.train`` does).

    Example:
        >>> train = make_dataset(spec, tokenizer, records, shuffle=True, seed=0)
        >>> model.fit(train.repeat(), steps_per_epoch=len(records) // 32, epochs=3,
        ...           validation_data=make_dataset(spec, tokenizer, val_records))
    """
    check_bool(shuffle, "shuffle")
    if isinstance(records, (str, os.PathLike)):
        from mtkeras import shards, streaming

        common = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, padding=padding,
                      bucket_boundaries=bucket_boundaries, input_context=input_context,
                      shuffle_buffer=shuffle_buffer or streaming.SHUFFLE_BUFFER)
        if shards.is_shards(records):
            return shards.shard_dataset(spec, tokenizer, os.fspath(records), **common)
        return streaming.stream_dataset(spec, tokenizer, os.fspath(records), **common,
                                        options=read_options or streaming.ReadOptions())
    if input_context is not None or shuffle_buffer is not None or read_options is not None:
        raise ValueError("`input_context`, `shuffle_buffer` and `read_options` are for data read from files (a "
                         "pattern or a shards folder); in-memory records are shuffled whole and sharded by "
                         "tf.distribute.")
    check_int(batch_size, "batch_size", 1)
    if len(records) == 0:
        raise ValueError("`records` is empty; a dataset needs at least one row.")
    check_option(padding, "padding", PADDINGS)
    texts = check_texts(_texts_of(records, spec.text_column), arg=f"records[*][{spec.text_column!r}]")
    check_word_tokenizer(spec, tokenizer)
    encoded = encode_unpadded(tokenizer, texts, spec, offsets=spec.needs_words)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    inputs = {
        name: tf.RaggedTensor.from_row_lengths(
            np.concatenate([np.asarray(row, np.int32) for row in encoded[name]]), lengths
        )
        for name in INPUT_NAMES
    }
    pad = {name: tf.constant(tokenizer.pad_token_id if name == "input_ids" else 0, tf.int32) for name in INPUT_NAMES}
    word_targets, weights = encode_targets(spec, records)
    starts = token_word_starts(encoded, texts) if spec.needs_words else None
    targets, target_padding = {}, {}
    for group in spec.groups:
        targets[group.name], target_padding[group.name] = group.rules.dataset_targets(
            word_targets[group.name], starts, lengths
        )
    weights = {k: tf.constant(v) for k, v in weights.items()}
    padding_values = (pad, target_padding, {k: 0.0 for k in weights})

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
    return batch_rows(dataset, spec, batch_size, padding, bucket_boundaries, padding_values)


def batch_rows(dataset: tf.data.Dataset, spec: TaskSpec, batch_size: int, padding: str,
               bucket_boundaries: Sequence[int], padding_values: Any) -> tf.data.Dataset:
    """Rows ``(inputs, targets, weights)`` (1-D token tensors) -> padded batches as ``padding`` says
    (:func:`make_dataset`), prefetched; shared by every pipeline, in memory or streamed."""
    if padding.startswith("bucketed"):
        boundaries = list(bucket_boundaries) or default_buckets(spec.max_length, spec.max_windows)
        fixed = padding == "bucketed_fixed"
        if fixed:
            boundaries = _fixed_buckets(boundaries, spec.max_length, spec.max_windows)
        dataset = dataset.bucket_by_sequence_length(
            lambda x, *rest: tf.shape(x["input_ids"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding_values,
            pad_to_bucket_boundary=fixed,
        )
    elif padding == "max_length":
        # Every per-token dimension (inputs, token-level targets) becomes max_tokens long (all windows).
        def full_length(element: tf.TensorSpec) -> list[int | None]:
            dims = element.shape.as_list()
            return [spec.max_tokens, *dims[1:]] if dims and dims[0] is None else dims

        shapes = tf.nest.map_structure(full_length, dataset.element_spec)
        dataset = dataset.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding_values)
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding_values)
    return dataset.prefetch(tf.data.AUTOTUNE)

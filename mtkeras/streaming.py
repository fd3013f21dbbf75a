"""Training data that does not fit in memory: rows streamed from files through tf.data.

``make_dataset(spec, tokenizer, "shards/train-*.jsonl")`` reads a pattern of JSON-lines or CSV files row by
row and tokenizes in the graph with the **same in-graph tokenizer the SavedModel serves**
(:mod:`mtkeras.export.text_graph`), so training and serving cannot tokenize differently:

    files (sorted; this worker's share) -> shuffled file order -> interleaved row readers
    -> shuffle buffer -> chunks of texts tokenized in the graph (windows as the spec says)
    -> one row per text -> length buckets (the in-memory path's) -> prefetch

Memory holds the shuffle buffer, a few chunks and the batches in flight, whatever the files' size. Each
row's labels are encoded where it is read by its kind's own ``encode`` (the function the in-memory path
uses: a label can not be encoded two ways, and an unknown label is an error naming file and line). JSON
has no TensorFlow parser, so reading and label encoding run in Python (``from_generator``, one reader per
file in flight); tokenization, the cost that matters, runs in parallel in the graph. For a pipeline that is
graph-only end to end (tf.data service, several readers per worker), tokenize once into TFRecord shards with
``mtkeras prepare`` (:mod:`mtkeras.shards`). Token-level groups need word alignment, which the streamed path
does not compute: :func:`check_streamable` refuses them and points at ``mtkeras prepare``.

Workers: with ``input_context`` (``tf.distribute.InputContext``, as ``DatasetCreator`` and
``distribute_datasets_from_function`` pass it) each input pipeline reads its own files,
``files[input_pipeline_id::num_input_pipelines]``, so a pattern needs at least as many files as workers.

Example:
    >>> train = make_dataset(spec, tokenizer, "shards/train-*.jsonl", shuffle=True, seed=0)
    >>> model.fit(train.repeat(), steps_per_epoch=rows // 32, epochs=3)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtkeras._checks import check_int, check_option, check_texts
from mtkeras.files import check_truncated, iter_file, list_files

logger = logging.getLogger("mtkeras")

#: Texts tokenized together in one graph call (rows are split again right after).
TOKENIZE_CHUNK = 256
#: Rows held by the shuffle buffer of a streamed pipeline, unless the caller says otherwise.
SHUFFLE_BUFFER = 10_000
#: Files read at once by one input pipeline.
CYCLE_LENGTH = 4


@dataclass(frozen=True)
class ReadOptions:
    """How rows are read from files: the options ``read_records`` takes, plus what to do with a last row cut
    off mid-row (:data:`mtkeras.files.TRUNCATED`)."""

    label_delimiter: str = "|"
    drop_empty_texts: bool = False
    truncated: str = "error"

    def __post_init__(self) -> None:
        check_truncated(self.truncated, "truncated")


@dataclass
class ReadCounts:
    """What a pass over files met: rows yielded, empty texts dropped, cut-off rows skipped."""

    rows: int = 0
    dropped_empty: int = 0
    skipped_truncated: int = 0
    files: list[str] = field(default_factory=list)


def shard_files(files: Sequence[str], input_context: Any = None, what: str = "data") -> list[str]:
    """This input pipeline's share of ``files``: every ``num_input_pipelines``-th from its id (all without a
    context). Fewer files than pipelines is an error: a worker would read nothing (or the same rows twice)."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return list(files)
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < count:
        raise ValueError(
            f"`{what}` has {len(files)} file(s) for {count} input pipelines (workers); each worker reads its own "
            f"files: write at least {count} shards (mtkeras prepare --rows-per-shard)."
        )
    return list(files[index::count])


def iter_records(pattern: str | Sequence[str], text_column: str, kinds: Mapping[str, Any] | Any,
                 options: ReadOptions = ReadOptions(), counts: ReadCounts | None = None,
                 what: str = "data", on_bad: Callable[[str, str], None] | None = None,
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(row name, record)`` of every row of the files matching ``pattern`` (or of the listed files), in file
    order, texts checked as :func:`mtkeras.read_records` checks them; ``kinds`` is what
    :func:`mtkeras.data.csv_cell_reader` takes (a spec or its dict form). ``counts`` is updated as rows go by.
    A row whose text is not a string or is empty is an error, or, with ``on_bad``, passed to
    ``on_bad(row name, message)`` and left out.
    """
    from mtkeras.data import csv_cell_reader

    files = list_files(pattern, what) if isinstance(pattern, str) else list(pattern)
    counts = counts if counts is not None else ReadCounts()
    counts.files = files
    cell = csv_cell_reader(kinds, options.label_delimiter)

    def skipped() -> None:
        counts.skipped_truncated += 1

    for path in files:
        for line, record in iter_file(path, cell, options.truncated, skipped):
            name = f"{path}, line {line}"
            text = record.get(text_column)
            if not isinstance(text, str):
                held = "no such column" if text_column not in record else f"{type(text).__name__} {text!r:.60}"
                message = (f"{name}: the text column {text_column!r} must hold a string ({held}); columns present: "
                           f"{sorted(record)}.")
                if on_bad is None:
                    raise TypeError(message)
                on_bad(name, message)
                continue
            if not text.strip():
                if options.drop_empty_texts:
                    counts.dropped_empty += 1
                    continue
                message = f"{name}: empty text; fix it or drop such rows (data.drop_empty_texts: true)."
                if on_bad is None:
                    raise ValueError(message)
                on_bad(name, message)
                continue
            counts.rows += 1
            yield name, record
    if counts.dropped_empty:
        logger.warning("%s: dropped %d rows with an empty text.", pattern, counts.dropped_empty)


def check_streamable(spec: Any, what: str = "data.train") -> None:
    """Token-level groups are not streamed (word alignment is computed in Python): a clear error."""
    per_word = [g.name for g in spec.groups if g.rules.per_word]
    if per_word:
        raise ValueError(
            f"`{what}` is a file pattern, read row by row, but token-level groups {per_word} need words aligned to "
            "tokens, which the streamed path does not compute. Tokenize once into shards with `mtkeras prepare` "
            "and train from them (data.train: the shards' folder), or read one file into memory."
        )


@dataclass
class Scan:
    """One pass over training files (no tokenizing): every row's labels encoded (a bad row is an error naming
    file and line), the rows counted, and the targets :func:`mtkeras.data.fit_target_stats` learns from."""

    counts: ReadCounts
    targets: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]


def scan(spec: Any, pattern: str, options: ReadOptions = ReadOptions(), what: str = "data.train") -> Scan:
    """Check every row of ``pattern`` against ``spec`` and collect what the spec learns from training data.

    Only the targets of the groups that learn statistics (``normalize``, a ``class_weight`` strategy) are kept,
    one row of floats each; for everything else memory stays flat.
    """
    from mtkeras.data import encode_row, stats_groups

    kept = set(stats_groups(spec))
    empty = {g.name: g.rules.target_array(1)[0] for g in spec.groups if g.name in kept}
    counts = ReadCounts()
    targets: dict[str, list] = {name: [] for name in kept}
    weights: dict[str, list] = {name: [] for name in kept}
    for name, record in iter_records(pattern, spec.text_column, spec, options, counts, what):
        for group, (target, weight) in encode_row(spec, record, name).items():
            if group in kept:
                targets[group].append(target if target is not None else empty[group])
                weights[group].append(weight)
    arrays = {g: np.asarray(v, np.float32) for g, v in targets.items()}
    return Scan(counts, arrays, {g: np.asarray(v, np.float32) for g, v in weights.items()})


def labels_seen(groups: Iterable[Mapping[str, Any]], records: Iterable[Mapping[str, Any]],
                columns: set | None = None) -> dict[str, set]:
    """``{group name: labels seen}`` for the group dicts without ``labels``, in one pass over ``records``;
    ``columns``, when given, is filled with every column name the records have (for error messages)."""
    from mtkeras.kinds import KINDS

    wanted = {}
    for group in groups:
        kind = KINDS.get(group.get("kind")) if isinstance(group.get("kind"), str) else None
        if kind is not None and group.get("labels") is None and kind.labels_in(None) is not None:
            wanted[group.get("name")] = (group.get("column") or group.get("name"), kind)
    seen: dict[str, set] = {name: set() for name in wanted}
    if not wanted:
        return seen
    for record in records:
        if columns is not None:
            columns.update(record)
        for name, (column, kind) in wanted.items():
            value = record.get(column)
            if value is not None:
                seen[name].update(kind.labels_in(value))
    return seen


def stream_dataset(
    spec: Any,
    tokenizer: Any,
    pattern: str,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    padding: str = "bucketed",
    bucket_boundaries: Sequence[int] = (),
    shuffle_buffer: int = SHUFFLE_BUFFER,
    input_context: Any = None,
    options: ReadOptions = ReadOptions(),
) -> Any:
    """The streamed twin of :func:`mtkeras.make_dataset` for a file pattern (see the module docstring):
    the same ``(inputs, targets, sample_weights)`` batches, the same padding and buckets, rows read and
    tokenized as they are needed. Without ``shuffle``, one file gives exactly ``make_dataset``'s batches."""
    from mtkeras._compat import tf
    from mtkeras.data import PADDINGS, batch_rows, encode_row
    from mtkeras.export.text_graph import in_graph_tokenizer
    from mtkeras.spec import INPUT_NAMES

    check_int(batch_size, "batch_size", 1)
    check_int(shuffle_buffer, "shuffle_buffer", 1)
    check_option(padding, "padding", PADDINGS)
    check_streamable(spec)
    files = shard_files(list_files(pattern, "data.train"), input_context, "data.train")
    graph = in_graph_tokenizer(tokenizer, spec.max_length, spec.max_windows, spec.stride)
    shapes = {g.name: g.rules.target_array(1).shape[1:] for g in spec.groups}
    zeros = {g.name: np.zeros(shapes[g.name], np.float32) for g in spec.groups}
    signature = (  # chunks of rows: from_generator costs about a millisecond per element, so rows go in chunks
        tf.TensorSpec([None], tf.string),
        {name: tf.TensorSpec([None, *shape], tf.float32) for name, shape in shapes.items()},
        {name: tf.TensorSpec([None], tf.float32) for name in shapes},
    )

    def chunk(texts: list[bytes], targets: dict[str, list], weights: dict[str, list]) -> tuple[Any, ...]:
        return (
            np.asarray(texts, dtype=object),
            {g: np.asarray(v, np.float32).reshape(-1, *shapes[g]) for g, v in targets.items()},
            {g: np.asarray(v, np.float32) for g, v in weights.items()},
        )

    def read(path: bytes) -> Iterator[tuple[Any, ...]]:
        texts: list[bytes] = []
        targets: dict[str, list] = {name: [] for name in shapes}
        weights: dict[str, list] = {name: [] for name in shapes}
        for name, record in iter_records([path.decode("utf-8")], spec.text_column, spec, options):
            encoded = encode_row(spec, record, name)
            text = check_texts([record[spec.text_column]], arg=name)[0]  # lone surrogates -> U+FFFD, as in memory
            texts.append(text.encode("utf-8"))
            for group, (target, weight) in encoded.items():
                targets[group].append(zeros[group] if target is None else target)
                weights[group].append(weight)
            if len(texts) == TOKENIZE_CHUNK:
                yield chunk(texts, targets, weights)
                texts, targets, weights = [], {n: [] for n in shapes}, {n: [] for n in shapes}
        if texts:
            yield chunk(texts, targets, weights)

    def tokenized(texts: tf.Tensor, targets: Any, weights: Any) -> tuple[Any, ...]:
        ids = graph.window_ids(texts)  # a chunk's rows, padded for unbatch, then cut to their own length
        return (ids.to_tensor(), ids.row_lengths()), targets, weights

    def one_row(ids: tuple[tf.Tensor, tf.Tensor], targets: Any, weights: Any) -> tuple[Any, ...]:
        row = ids[0][: ids[1]]
        inputs = {"input_ids": row, "attention_mask": tf.ones_like(row), "token_type_ids": tf.zeros_like(row)}
        return {name: inputs[name] for name in INPUT_NAMES}, targets, weights

    # Shuffled: several files read at once, rows interleaved; in order: one file after the other (file order).
    cycle = min(len(files), CYCLE_LENGTH) if shuffle else 1
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_names = file_names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    rows = file_names.interleave(
        lambda path: tf.data.Dataset.from_generator(read, args=(path,), output_signature=signature).unbatch(),
        cycle_length=cycle, block_length=1, deterministic=True if cycle > 1 else None,
        num_parallel_calls=tf.data.AUTOTUNE if cycle > 1 else None,
    )
    if shuffle:
        rows = rows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    rows = rows.batch(TOKENIZE_CHUNK).map(tokenized, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    rows = rows.unbatch().map(one_row, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pad = {name: tokenizer.pad_token_id if name == "input_ids" else 0 for name in INPUT_NAMES}
    padding_values = (pad, {g.name: g.rules.target_padding for g in spec.groups}, {g: 0.0 for g in shapes})
    dataset = batch_rows(rows, spec, batch_size, padding, bucket_boundaries, padding_values)
    if input_context is not None:  # sharded by file here: tf.distribute must not shard it again
        dataset = dataset.with_options(_no_auto_shard())
    return dataset


def _no_auto_shard() -> Any:
    from mtkeras._compat import tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def dataset_creator(make: Callable[[Any], Any]) -> Any:
    """``make(input_context)`` wrapped for ``model.fit`` under any strategy (Keras' ``DatasetCreator``)."""
    from mtkeras._compat import keras

    return keras.utils.experimental.DatasetCreator(make)

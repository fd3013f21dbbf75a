"""Tokenize once, train many times: TFRecord shards written by ``mtkeras prepare``, read graph-only.

:func:`prepare_shards` reads rows from files (a pattern of ``.jsonl``/``.csv``) as the in-memory path
reads them, tokenizes them with the encoder's tokenizer and encodes their targets exactly as
:func:`mtkeras.make_dataset` does (token-level groups included: words are aligned to tokens here), and
writes ``train-00000.tfrecord``, ... (``tf.train.Example``: ``input_ids``, and per group ``target/<group>``
and ``weight/<group>``) with a ``manifest.json``: the spec (labels, fitted statistics), the facts the shards
depend on and their hash (tokenizer vocabulary and settings, ``max_length``, windows, groups and labels),
the source files, row counts, the rows refused and every shard's size and SHA-256. Each shard is written
to a temporary file and renamed; the manifest is rewritten after each one, so a killed ``prepare`` resumes
at the first shard that is not intact.

:func:`shard_dataset` (``make_dataset(spec, tokenizer, "shards/")``) checks the manifest against the spec
and every shard's size, then reads graph-only: TFRecord files (this worker's share) -> parse -> length
buckets -> prefetch. No Python runs per row, so it works with tf.data service and ``AutoShardPolicy.FILE``.

Example:
    >>> prepare_shards(spec, tokenizer, "data/train-*.jsonl", "shards/")
    >>> train = make_dataset(spec, tokenizer, "shards/", shuffle=True, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mtkeras._checks import check_int, check_option
from mtkeras._io import write_json
from mtkeras.streaming import SHUFFLE_BUFFER, ReadCounts, ReadOptions, iter_records, shard_files

logger = logging.getLogger("mtkeras")

MANIFEST = "manifest.json"
#: The layout of the shards and manifest this version writes and reads.
FORMAT = 1
#: Rows per shard unless told otherwise: about 10 MB of shard for 128-token rows.
ROWS_PER_SHARD = 10_000
#: Refused rows listed (with their error) in the manifest; all are counted.
LISTED_BAD_ROWS = 100
#: Errors about one row's content that ``skip_bad_rows`` skips (a broken file is never skipped).
_ROW_ERRORS = (ValueError, TypeError, KeyError)


def is_shards(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder ``mtkeras prepare`` wrote (it holds a ``manifest.json``)."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def shard_facts(spec: Any, tokenizer: Any) -> dict[str, Any]:
    """What the shards' content depends on: another value of any of these needs other shards."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    settings = json.loads(backend.to_str()) if backend is not None else {}
    for key in ("model", "truncation", "padding"):  # the vocabulary is hashed below; the other two are call state
        settings.pop(key, None)
    return {
        "format": FORMAT,
        "vocab_sha256": hashlib.sha256("\n".join(token for token, _ in vocab).encode("utf-8")).hexdigest(),
        "tokenizer_sha256": hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest(),
        "max_length": spec.max_length,
        "max_windows": spec.max_windows,
        "stride": spec.stride,
        "text_column": spec.text_column,
        "groups": [{"name": g.name, "kind": g.kind, "column": g.source_column, "labels": list(g.labels)}
                   for g in spec.groups],
    }


def facts_hash(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def _differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    return [key for key in sorted(set(expected) | set(found)) if expected.get(key) != found.get(key)]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """A shards folder's manifest, or an error naming the folder (missing, not JSON, not finished)."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{os.fspath(folder)!r} holds no {MANIFEST}; it is not a folder `mtkeras prepare` wrote."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); run `mtkeras prepare` again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a shards manifest of format {FORMAT} (received format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r:.40}).")
    return manifest


def check_manifest(manifest: dict[str, Any], spec: Any, tokenizer: Any, folder: str) -> list[str]:
    """The paths of a finished shards folder written for ``spec``, every shard checked for its size; a clear
    error for another spec (naming what differs), an unfinished ``prepare`` or a shard cut off or changed."""
    if not manifest.get("complete"):
        raise ValueError(f"{folder!r}: `mtkeras prepare` did not finish writing these shards "
                         f"({len(manifest.get('shards', []))} written); run it again to complete them.")
    facts = shard_facts(spec, tokenizer)
    if manifest.get("facts_hash") != facts_hash(facts):
        differ = _differences(facts, manifest.get("facts", {}))
        raise ValueError(
            f"{folder!r} was written for another spec or tokenizer (manifest hash {manifest.get('facts_hash')!r:.18}, "
            f"this spec's {facts_hash(facts)!r:.18}): they differ in {differ}. Run `mtkeras prepare` for this spec "
            "into another folder."
        )
    paths = []
    for shard in manifest["shards"]:
        path = os.path.join(folder, shard["file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: a shard listed in {MANIFEST} is missing; run `mtkeras prepare` again.")
        size = os.path.getsize(path)
        if size != shard["bytes"]:
            raise ValueError(
                f"{path}: {size} bytes where {MANIFEST} says {shard['bytes']}: the shard is cut off or was changed. "
                "Run `mtkeras prepare` again: it rewrites only the shards that are not intact."
            )
        paths.append(path)
    return paths


# --- writing -----------------------------------------------------------------------------------


def _chunks(rows: Iterator[tuple[str, dict]], size: int) -> Iterator[list[tuple[str, dict]]]:
    chunk: list[tuple[str, dict]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rows_sha256(chunk: list[tuple[str, dict]]) -> str:
    """What a shard was made from: its rows' names and contents (a resumed run rewrites a shard whose rows
    changed in the source files, even though the shard itself is intact)."""
    digest = hashlib.sha256()
    for name, record in chunk:
        digest.update(json.dumps([name, record], sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def _examples(spec: Any, tokenizer: Any, good: list[tuple[str, dict]]) -> Iterator[bytes]:
    """Serialized ``tf.train.Example`` of each row (labels already checked): the in-memory path's rows
    (``make_dataset``)."""
    from mtkeras._compat import tf
    from mtkeras.data import Records, check_word_tokenizer, encode_targets, encode_unpadded, token_word_starts

    if not good:
        return
    records = Records([r for _, r in good], [n for n, _ in good])
    texts = [r[spec.text_column] for r in records]
    check_word_tokenizer(spec, tokenizer)
    encoded = encode_unpadded(tokenizer, texts, spec, offsets=spec.needs_words)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    word_targets, weights = encode_targets(spec, records)
    starts = token_word_starts(encoded, texts) if spec.needs_words else None
    targets = {}
    for group in spec.groups:
        value, _ = group.rules.dataset_targets(word_targets[group.name], starts, lengths)
        if isinstance(value, tf.RaggedTensor):
            flat, splits = value.flat_values.numpy(), value.row_splits.numpy()
            targets[group.name] = [flat[splits[i]:splits[i + 1]] for i in range(len(records))]
        else:
            targets[group.name] = np.asarray(value)

    def floats(values: np.ndarray) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))

    for row in range(len(records)):
        feature = {"input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=encoded["input_ids"][row]))}
        for group in spec.groups:
            feature[f"target/{group.name}"] = floats(targets[group.name][row])
            feature[f"weight/{group.name}"] = floats([weights[group.name][row]])
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def prepare_shards(
    spec: Any,
    tokenizer: Any,
    source: str,
    out_dir: str | os.PathLike,
    *,
    rows_per_shard: int = ROWS_PER_SHARD,
    skip_bad_rows: bool = False,
    options: ReadOptions | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tokenize and encode the rows of ``source`` (a file or pattern) into TFRecord shards in ``out_dir``;
    returns the manifest (see the module docstring). Run again after an interruption: shards already written
    intact, from the same rows, are kept (a complete folder is left as it is). A bad row (unknown label,
    empty text, ...) is an error naming file and line; with ``skip_bad_rows`` it is logged, left out, counted
    and listed in the manifest instead.
    """
    from tqdm.auto import tqdm

    check_int(rows_per_shard, "rows_per_shard", 1)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"`out_dir` {out_dir!r} is a file; shards need a folder.")
    from mtkeras.data import encode_row

    counts = ReadCounts()
    refused: list[dict[str, str]] = []  # every pass reads every row, so a resumed run counts them all again

    def on_bad(row: str, message: str) -> None:
        logger.warning("%s: skipped (%s)", row, message)
        refused.append({"row": row, "error": message})

    def checked(rows: Iterator[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        """Rows whose labels encode, in file order: the first bad row is the one named."""
        for name, record in rows:
            try:
                encode_row(spec, record, name)
            except _ROW_ERRORS as error:
                if not skip_bad_rows:
                    raise
                on_bad(name, str(error))
                continue
            yield name, record

    rows = checked(iter_records(source, spec.text_column, spec, options or ReadOptions(), counts, what="source",
                                on_bad=on_bad if skip_bad_rows else None))
    facts = shard_facts(spec, tokenizer)
    manifest = {"format": FORMAT, "facts_hash": facts_hash(facts), "facts": facts, "spec": spec.to_dict(),
                "rows_per_shard": rows_per_shard, "skip_bad_rows": skip_bad_rows, "complete": False, "shards": []}
    done: dict[int, dict] = {}
    if is_shards(out_dir):
        previous = read_manifest(out_dir)
        differ = _differences({k: manifest[k] for k in ("facts", "rows_per_shard", "skip_bad_rows", "spec")},
                              {k: previous.get(k) for k in ("facts", "rows_per_shard", "skip_bad_rows", "spec")})
        if differ:
            raise ValueError(f"{out_dir!r} holds shards written with another {differ}; write these into another "
                             "folder, or delete it to start over.")
        for shard in previous["shards"]:
            path = os.path.join(out_dir, shard["file"])
            if os.path.isfile(path) and os.path.getsize(path) == shard["bytes"] and _sha256(path) == shard["sha256"]:
                done[shard["index"]] = shard
        if previous.get("complete") and len(done) == len(previous["shards"]):
            logger.warning("%s: shards already complete (%d rows); nothing to do.", out_dir, previous["rows"])
            return previous
    created = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        _write_shards(spec, tokenizer, _chunks(rows, rows_per_shard), out_dir, manifest, done,
                      tqdm(unit=" rows", desc="prepare", disable=not progress))
    except BaseException:
        if created and not os.listdir(out_dir):  # failed before its first shard: leave nothing behind
            os.rmdir(out_dir)
        raise
    for index, shard in done.items():  # the source has fewer rows now: shards past its end are not data
        if index >= len(manifest["shards"]):
            os.remove(os.path.join(out_dir, shard["file"]))
    total_bad = len(refused)
    manifest.update(
        complete=True, source=counts.files, rows=sum(s["rows"] for s in manifest["shards"]), bad_rows=total_bad,
        bad=refused[:LISTED_BAD_ROWS], dropped_empty_texts=counts.dropped_empty,
        skipped_truncated=counts.skipped_truncated,
    )
    if total_bad:
        logger.warning("%s: %d bad rows skipped (listed in %s).", out_dir, total_bad, MANIFEST)
    write_json(manifest, os.path.join(out_dir, MANIFEST))
    return manifest


def _write_shards(spec: Any, tokenizer: Any, chunks: Iterator[list[tuple[str, dict]]], out_dir: str,
                  manifest: dict[str, Any], done: dict[int, dict], bar: Any) -> None:
    """Write each chunk as a shard (temporary file, then renamed) unless ``done`` holds it intact and made of
    the same rows; the manifest is rewritten after each."""
    from mtkeras._compat import tf

    for index, chunk in enumerate(chunks):
        rows_sha = _rows_sha256(chunk)
        if index in done and done[index].get("rows_sha256") == rows_sha:
            shard = done[index]
        else:
            name = f"train-{index:05d}.tfrecord"
            path, tmp = os.path.join(out_dir, name), os.path.join(out_dir, f".{name}.tmp-{os.getpid()}")
            try:
                with tf.io.TFRecordWriter(tmp) as writer:
                    for example in _examples(spec, tokenizer, chunk):
                        writer.write(example)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            shard = {"index": index, "file": name, "rows": len(chunk), "bytes": os.path.getsize(path),
                     "sha256": _sha256(path), "rows_sha256": rows_sha}
        manifest["shards"].append(shard)
        write_json(manifest, os.path.join(out_dir, MANIFEST))
        bar.update(len(chunk))
    bar.close()


# --- reading -----------------------------------------------------------------------------------


def shard_dataset(
    spec: Any,
    tokenizer: Any,
    folder: str,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    padding: str = "bucketed",
    bucket_boundaries: Sequence[int] = (),
    shuffle_buffer: int = SHUFFLE_BUFFER,
    input_context: Any = None,
) -> Any:
    """``(inputs, targets, sample_weights)`` batches from a shards folder, as :func:`mtkeras.make_dataset`
    gives for the same rows in memory (without ``shuffle``: the same batches, in the same order)."""
    from mtkeras._compat import tf
    from mtkeras.data import PADDINGS, batch_rows
    from mtkeras.spec import INPUT_NAMES
    from mtkeras.streaming import CYCLE_LENGTH, _no_auto_shard

    check_int(batch_size, "batch_size", 1)
    check_int(shuffle_buffer, "shuffle_buffer", 1)
    check_option(padding, "padding", PADDINGS)
    files = shard_files(check_manifest(read_manifest(folder), spec, tokenizer, folder), input_context, "data.train")
    features = {"input_ids": tf.io.VarLenFeature(tf.int64)}
    for group in spec.groups:
        features[f"target/{group.name}"] = tf.io.VarLenFeature(tf.float32)
        features[f"weight/{group.name}"] = tf.io.FixedLenFeature([1], tf.float32)
    widths = {g.name: len(g.labels) for g in spec.groups}
    per_token = {g.name: g.rules.per_word for g in spec.groups}

    def parse(serialized: tf.Tensor) -> tuple[Any, ...]:
        parsed = tf.io.parse_single_example(serialized, features)
        ids = tf.cast(tf.sparse.to_dense(parsed["input_ids"]), tf.int32)
        inputs = {"input_ids": ids, "attention_mask": tf.ones_like(ids), "token_type_ids": tf.zeros_like(ids)}
        targets = {
            name: tf.reshape(tf.sparse.to_dense(parsed[f"target/{name}"]), [-1, width] if per_token[name] else [width])
            for name, width in widths.items()
        }
        weights = {name: parsed[f"weight/{name}"][0] for name in widths}
        return {name: inputs[name] for name in INPUT_NAMES}, targets, weights

    # Shuffled: several files read at once, rows interleaved; in order: one file after the other (file order).
    cycle = min(len(files), CYCLE_LENGTH) if shuffle else 1
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_names = file_names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = file_names.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle, block_length=1, deterministic=True if cycle > 1 else None,
        num_parallel_calls=tf.data.AUTOTUNE if cycle > 1 else None,
    )
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    rows = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pad = {name: tokenizer.pad_token_id if name == "input_ids" else 0 for name in INPUT_NAMES}
    padding_values = (pad, {g.name: g.rules.target_padding for g in spec.groups}, {name: 0.0 for name in widths})
    dataset = batch_rows(rows, spec, batch_size, padding, bucket_boundaries, padding_values)
    if input_context is not None:
        dataset = dataset.with_options(_no_auto_shard())
    return dataset


def shard_targets(spec: Any, tokenizer: Any, folder: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The training targets and weights of :func:`mtkeras.data.stats_groups` read back from a shards folder
    (``fit_target_stats_from`` learns from them); token ids are not parsed."""
    from mtkeras._compat import tf
    from mtkeras.data import stats_groups

    names = stats_groups(spec)
    widths = {g.name: len(g.labels) for g in spec.groups if g.name in names}
    features = {}
    for name in names:
        features[f"target/{name}"] = tf.io.FixedLenFeature([widths[name]], tf.float32)
        features[f"weight/{name}"] = tf.io.FixedLenFeature([1], tf.float32)
    files = check_manifest(read_manifest(folder), spec, tokenizer, folder)
    parsed = tf.data.TFRecordDataset(files).batch(4096).map(lambda x: tf.io.parse_example(x, features))
    batches = list(parsed.as_numpy_iterator())
    targets = {n: np.concatenate([b[f"target/{n}"] for b in batches]) for n in names}
    weights = {n: np.concatenate([b[f"weight/{n}"][:, 0] for b in batches]) for n in names}
    return targets, weights

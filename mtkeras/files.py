"""Data files read row by row: JSON lines and CSV, one file or a pattern of shards, never whole in memory.

Every reader yields ``(line, record)``: the file line a row starts on (errors name it) and the row as a
dict. The in-memory readers of :mod:`mtkeras.data` and the streaming pipeline of :mod:`mtkeras.streaming`
both read through these, so a file reads the same either way and a bad row gets the same message.

Example:
    >>> for line, record in iter_rows("shards/train-00000.jsonl", spec):
    ...     print(line, record["text"])
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger("mtkeras")

#: File formats read row by row, by extension.
FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
#: What a row-by-row reader does with a last line cut off mid-row (a shard still being written, a copy that
#: stopped): refuse the file ("error"), or skip that row, logging and counting it ("skip").
TRUNCATED = ("error", "skip")
_PATTERN_CHARACTERS = set("*?[")


def is_pattern(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a glob pattern (``*``, ``?`` or ``[``) rather than one file."""
    return bool(_PATTERN_CHARACTERS & set(os.fspath(path)))


def list_files(pattern: str | os.PathLike, what: str = "data") -> list[str]:
    """The files matching ``pattern`` (one path, or a glob such as ``shards/train-*.jsonl``), sorted, so every
    process lists them in the same order; a FileNotFoundError naming ``what`` and the pattern when none does."""
    pattern = os.fspath(pattern)
    files = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
    if not files:
        folder = os.path.dirname(pattern) or "."
        hint = ("" if os.path.isdir(folder) else f"; the folder {folder!r} does not exist")
        raise FileNotFoundError(f"`{what}` {pattern!r} matches no file{hint}.")
    return files


def file_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"csv"`` from the extension, or a ValueError listing the accepted ones."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in FORMATS:
        raise ValueError(
            f"Cannot read {os.fspath(path)!r}: unknown extension {extension!r}; accepted: {sorted(FORMATS)}."
        )
    return FORMATS[extension]


def _text_lines(path: str) -> Iterator[tuple[int, str, bool]]:
    """``(line number, text, ends with a newline)`` of a file read in binary, each line decoded on its own;
    bytes that are not UTF-8 are an error naming their line and file offset."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}, line {number}: not valid UTF-8 (byte {raw[error.start:error.start + 1]!r} at file "
                    f"offset {offset + error.start}); save the file as UTF-8."
                ) from None
            offset += len(raw)
            yield number, text, raw.endswith(b"\n")


def _cut_off(path: str, number: int, what: str, truncated: str, skipped: Callable[[], None] | None) -> None:
    """A last row cut off mid-row: an error, or (``truncated="skip"``) a logged, counted skip."""
    if truncated == "skip":
        logger.warning("%s, line %d: the file ends mid-row (%s); skipped that row (data.truncated: skip).",
                       path, number, what)
        if skipped is not None:
            skipped()
        return
    raise ValueError(
        f"{path}, line {number}: the file ends mid-row ({what}); it is cut off (a copy that stopped, a shard "
        "still being written). Fix or remove the row, or skip it: data.truncated: skip (truncated='skip')."
    )


def iter_jsonl(path: str | os.PathLike, truncated: str = "error",
               skipped: Callable[[], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` of a JSON-lines file, blank lines skipped. A last line without a newline that is not
    valid JSON is a file cut off mid-row: see :data:`TRUNCATED`."""
    path = os.fspath(path)
    for number, line, complete in _text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if not complete:
                _cut_off(path, number, f"not valid JSON: {error}", truncated, skipped)
                return
            raise ValueError(f"{path}, line {number}: not valid JSON ({error}).") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, received {record!r:.80}.")
        yield number, record


def iter_csv(path: str | os.PathLike, cell: Callable[[str, str, str], Any], truncated: str = "error",
             skipped: Callable[[], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` of a CSV file with a header row; ``cell(column, value, where)`` turns each cell into
    its value (labels parsed, empty label cells None). Rows of blank cells are skipped."""
    path = os.fspath(path)
    state = {"complete": True}

    def lines() -> Iterator[str]:
        for _, text, complete in _text_lines(path):
            state["complete"] = complete
            yield text

    reader = csv.reader(lines(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty CSV file; expected a header row.") from None
    except csv.Error as error:
        raise ValueError(f"{path}, line 1: not valid CSV ({error}).") from None
    while True:
        first_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "unexpected end of data" in str(error):  # the row that opened the quote, not the file's end
                raise ValueError(
                    f"{path}, line {first_line}: not valid CSV ({error}; a quoted cell is not closed)."
                ) from None
            raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from None
        where = f"{path}, line {first_line}"
        if not any(value.strip() for value in cells):
            continue
        if len(cells) != len(header):
            if not state["complete"] and len(cells) < len(header):
                _cut_off(path, first_line, f"{len(cells)} cells for {len(header)} columns", truncated, skipped)
                return
            raise ValueError(f"{where}: {len(cells)} cells for {len(header)} columns {header}.")
        yield first_line, {column: cell(column, value, where) for column, value in zip(header, cells, strict=True)}


def iter_file(path: str | os.PathLike, cell: Callable[[str, str, str], Any], truncated: str = "error",
              skipped: Callable[[], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` of one ``.jsonl`` or ``.csv`` file (by its extension)."""
    if file_format(path) == "csv":
        return iter_csv(path, cell, truncated, skipped)
    return iter_jsonl(path, truncated, skipped)


def check_truncated(value: Any, name: str = "truncated") -> str:
    """``value`` if it is one of :data:`TRUNCATED`, else a ValueError naming ``name``."""
    from mtkeras._checks import check_option

    return check_option(value, name, TRUNCATED)


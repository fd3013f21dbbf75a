"""Small file helpers shared by every module that writes: nothing half-written is ever visible."""

from __future__ import annotations

import json
import os
from typing import Any


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to a temporary file beside ``path`` and rename it into place."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as indented UTF-8 JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def disk_error(error: OSError, what: str, folder: str) -> OSError:
    """``error`` (no space, read-only, permission) restated with what was being written and what was kept."""
    restated = type(error)(
        f"Could not write {what} under {folder!r}: {error.strerror or error} ({type(error).__name__}). "
        "Nothing was replaced: what was there before is intact and the partial files were removed. "
        "Free space or choose a writable folder, then try again."
    )
    restated.errno = error.errno
    return restated


def read_utf8(path: str | os.PathLike) -> str:
    """A file's text; bytes that are not UTF-8 are an error naming their line."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{os.fspath(path)}, line {line}: not valid UTF-8 (byte {data[error.start:error.start + 1]!r} at file "
            f"offset {error.start}); save the file as UTF-8."
        ) from None

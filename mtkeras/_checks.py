"""Argument checks shared by every layer, with one message shape (no TensorFlow here).

Each check names the argument, says what is accepted and shows what was received:
``\`batch_size\` must be an integer >= 1, received 0.``
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int in Python, never a count or a rate here)."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def check_int(value: Any, name: str, minimum: int | None = None, *, maximum: int | None = None,
              allow_none: bool = False, why: str = "") -> Any:
    """``value`` if it is an integer in ``[minimum, maximum]`` (None too with ``allow_none``), else ValueError."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = " and ".join(
            part for part in (f">= {minimum}" if minimum is not None else "",
                              f"<= {maximum}" if maximum is not None else "") if part
        )
        raise ValueError(
            f"`{name}` must be an integer{' ' + bounds if bounds else ''}{why}{' or None' if allow_none else ''}, "
            f"received {value!r}."
        )
    return value


def check_number(value: Any, name: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> Any:
    """``value`` as a float if it is a finite number in the range, else ValueError naming the range."""
    if value is None and allow_none:
        return None
    ok = is_number(value) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        if low is not None and high is not None:
            bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            bounds = f" {'<' if high_open else '<='} {high:g}"
        else:
            bounds = ""
        finite, none = "" if bounds else "finite ", " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a {finite}number{bounds}{none}, received {value!r}.")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false, received {value!r}.")
    return value


def check_option(value: Any, name: str, options: Iterable[Any]) -> Any:
    """``value`` if it is one of ``options`` (listed in the error), else ValueError."""
    options = list(options)
    try:
        accepted = value in options
    except TypeError:  # unhashable values compare unequal to every option
        accepted = False
    if not accepted or isinstance(value, bool) and not any(isinstance(o, bool) for o in options):
        raise ValueError(f"`{name}` must be one of {options}, received {value!r}.")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_texts(texts: Any, arg: str = "texts", start: int = 0) -> list[str]:
    """``texts`` as a list of str, or a clear error naming the offending item (counted from
    ``start``, for a chunk of a longer stream).

    A lone string, bytes or bytearray, a mapping or DataFrame (iterating one gives keys or column names, not
    texts) and an unordered set are refused, each with the type named; numpy and pandas string arrays are
    taken elementwise.
    Lone surrogates (code points that UTF-8 cannot encode) become U+FFFD, one for one, so
    offsets are kept; the tokenizer then drops them, as the export does with invalid UTF-8.
    """
    check_text_container(texts, arg)
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"`{arg}[{start + index}]` is {text!r:.80} ({type(text).__name__}); every text must be a str."
            )
        if not text.isascii() and _SURROGATE.search(text):
            texts[index] = _SURROGATE.sub("\ufffd", text)
    return texts


def check_text_container(texts: Any, arg: str = "texts") -> None:
    """A TypeError unless ``texts`` is an ordered iterable of texts (see :func:`check_texts`); items unchecked."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(
            f"`{arg}` must be a list of strings, received a single {type(texts).__name__} "
            f"{texts[:50]!r}; wrap one text in a list: [text]"
            f"{' (decoded: [data.decode()])' if not isinstance(texts, str) else ''}."
        )
    if hasattr(texts, "columns") and hasattr(texts, "to_dict"):  # a pandas DataFrame iterates its column names
        raise TypeError(
            f"`{arg}` must be a list of strings, received a DataFrame (iterating it gives its column names); "
            f'pass its text column: df["text"].'
        )
    if isinstance(texts, Mapping):
        raise TypeError(
            f"`{arg}` must be a list of strings, received a {type(texts).__name__} (iterating it gives its keys); "
            f'pass the texts themselves, e.g. [record["text"] for record in records] or list(mapping.values()).'
        )
    if isinstance(texts, (set, frozenset)):
        raise TypeError(
            f"`{arg}` must be a list of strings, received a {type(texts).__name__}: it has no order, so answers "
            "could not be matched to texts; pass a list (sorted(texts) for a stable order)."
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"`{arg}` must be a list of strings, received {texts!r:.80} ({type(texts).__name__}).")


#: TF Serving reads version folders as int64.
MAX_VERSION = 2**63 - 1


def check_version(version: Any) -> int:
    """A model version as TF Serving numbers them (its version folders' names)."""
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise ValueError(f"`version` must be a positive integer up to 2**63 - 1 (TF Serving's int64 version "
                         f"folder), received {version!r}.")
    return version


def preview(values: Sequence[Any], limit: int = 8) -> str:
    """``['a', 'b', ...] (12 labels)``: a long list shown short in an error."""
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} labels)"

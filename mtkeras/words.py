"""Words of a text, for token-level groups: splitting, alignment to word pieces, spans.

A *word* is a maximal run of characters that are not whitespace, whitespace
being what BERT's tokenizer splits on: tab, newline, carriage return and the
Unicode separators (category Z: spaces, U+2028, U+2029). This is
``text.split()`` except for rare control characters (``"\\x1c"``, ``"\\x85"``, ...),
which BERT drops inside a word instead of splitting on them. Each word is
labelled on its first word piece; the other pieces of a word, padding,
[CLS] and [SEP] carry no loss.

Example:
    >>> split_words("GNU  image editor")
    [(0, 3), (5, 10), (11, 17)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: Tab, newline, carriage return and every character of Unicode category Z (a test checks the list).
SEPARATORS = (
    "\t\n\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_WORD = re.compile(f"[^{re.escape(SEPARATORS)}]+")
#: The same separators as an RE2 pattern, for the in-graph tokenizer.
WORD_SEPARATOR_RE2 = r"[\t\n\r\p{Z}]+"


def split_words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the words of ``text``."""
    return [match.span() for match in _WORD.finditer(text)]


def word_starts(offsets: Sequence[tuple[int, int]], words: Sequence[tuple[int, int]]) -> np.ndarray:
    """int64 ``[len(words)]``: the index of each word's first token, -1 when no token is in it.

    ``offsets`` are a fast tokenizer's ``offset_mapping`` for one text (special
    tokens have empty offsets and are skipped). A word has no token when it was
    truncated away or consists only of characters BERT removes.
    """
    starts = np.full(len(words), -1, dtype=np.int64)
    if not words:
        return starts
    ends = np.fromiter((end for _, end in words), dtype=np.int64, count=len(words))
    for token, (begin, end) in enumerate(offsets):
        if end <= begin:
            continue
        word = int(np.searchsorted(ends, begin, side="right"))
        if word < len(words) and starts[word] < 0:
            starts[word] = token
    return starts


def label_runs(indicator: np.ndarray) -> set[tuple[int, int, int]]:
    """Spans of a ``[words, labels]`` 0/1 matrix: ``(label, first word, last word)`` of each run of 1s."""
    spans = set()
    words, labels = indicator.shape
    for label in range(labels):
        column = indicator[:, label].astype(bool)
        start = None
        for word in range(words + 1):
            on = word < words and column[word]
            if on and start is None:
                start = word
            elif not on and start is not None:
                spans.add((label, start, word - 1))
                start = None
    return spans

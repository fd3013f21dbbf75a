"""In-graph WordPiece tokenization that reproduces the encoder's Hugging Face tokenizer.

Built only from TF core ops and three TF Text ops that TF Serving's stock
server (TF Text 2.12) links: NormalizeUTF8, RegexSplitWithOffsets and
WordpieceTokenizeWithOffsets. Case folding uses TF core's ``StringLower``
rather than TF Text's CaseFoldUTF8, because Hugging Face lowercases (``"ß"``
stays) where CaseFoldUTF8 folds (``"ß"`` → ``"ss"``).

The steps mirror ``tokenizers``' BertNormalizer + BertPreTokenizer + WordPiece:

1. invalid UTF-8 is replaced by U+FFFD (``UnicodeTranscode``, errors="replace");
2. clean text: NUL, U+FFFD and control/format characters (Unicode category C,
   except tab, newline, carriage return) are removed; whitespace becomes " " (these classes, the
   combining marks and the punctuation are ``tokenizers``' own, :mod:`mtkeras.export.unicode_tables`);
3. CJK ideographs get spaces around them;
4. uncased models: NFD, combining marks (Mn) removed, lowercase (capital sigma always to U+03C3);
5. split on whitespace and punctuation (ASCII symbols and Unicode P*) and
   around CJK ideographs; words over 100 characters become [UNK] (characters,
   as HF counts, not bytes); WordPiece with the model's vocab;
6. truncate to ``max_length - 2`` pieces, add [CLS]/[SEP] (or, with ``max_windows`` > 1, up to that
   many such windows end to end, :mod:`mtkeras.windows`), pad to the longest row (rounded up to
   ``length_multiple``, at most ``max_length``, or to whole windows: few shapes for XLA).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from mtkeras._compat import tf
from mtkeras.export import _unicode_tables as _tables
from mtkeras.windows import graph_token_positions, graph_window_rows, max_pieces
from mtkeras.words import WORD_SEPARATOR_RE2

# The character classes of HF's BertNormalizer and BertPreTokenizer as `tokenizers` has them (not RE2's newer
# \p{...} tables; mtkeras.export.unicode_tables): NUL, U+FFFD and control/format characters, removed by clean_text;
# whitespace, which becomes one space; combining marks, removed by strip_accents; punctuation (ASCII symbols too).
_REMOVED = f"[{_tables.REMOVED}]"
_WHITESPACE = f"[{_tables.WHITESPACE}]"
_MARKS = f"[{_tables.MARKS}]"
# The ranges of tokenizers' BertNormalizer `is_chinese_char`, as it has them: U+2B920, not original BERT's U+2B820,
# starts the sixth range (U+2B820-2B91F are then ordinary characters: inside a word, [UNK] as a whole).
_CJK_RANGES = (
    r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}"
)
_CJK = rf"([{_CJK_RANGES}])"
# Pre-tokenization (HF BertPreTokenizer): split on whitespace (dropped) and on punctuation, ASCII
# symbols and CJK ideographs (each kept as its own word).
_PUNCTUATION = f"[{_tables.PUNCTUATION}]"
_KEEP = rf"{_PUNCTUATION}|[{_CJK_RANGES}]"
_SPLIT = rf"[{_tables.SPLIT_WHITESPACE}]+|{_KEEP}"
#: HF WordPiece's max_input_chars_per_word: longer words become the unknown token.
MAX_CHARS_PER_WORD = 100
#: Served word-level outputs list at most this many words per token of ``max_length`` per text.
MAX_WORDS_PER_LENGTH = 4


def tokenizer_settings(tokenizer: Any) -> dict[str, Any]:
    """What the in-graph tokenizer needs from a Hugging Face fast BERT tokenizer."""
    normalizer = json.loads(tokenizer.backend_tokenizer.to_str())["normalizer"] or {}
    if normalizer.get("type") != "BertNormalizer":
        raise ValueError(
            f"The tokenizer's normalizer is {normalizer.get('type')!r}; the in-graph tokenizer reproduces "
            "BERT's 'BertNormalizer' only."
        )
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    return {
        "lowercase": lowercase,
        "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
        "clean_text": bool(normalizer.get("clean_text", True)),
        "handle_chinese_chars": bool(normalizer.get("handle_chinese_chars", True)),
        "cls_id": int(tokenizer.cls_token_id),
        "sep_id": int(tokenizer.sep_token_id),
        "pad_id": int(tokenizer.pad_token_id),
        "unk_token": tokenizer.unk_token,
        "vocab_size": len(tokenizer),
    }


def write_vocab(tokenizer: Any, path: str) -> str:
    """The tokenizer's vocabulary as a ``vocab.txt`` (one token per line, line number = id)."""
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("The tokenizer's vocabulary ids are not 0..N-1; cannot write a vocab file.")
    with open(path, "w", encoding="utf-8") as handle:
        for token, _ in by_id:
            handle.write(token + "\n")
    return path


class _VocabFile(tf.lookup.TextFileInitializer):
    """A ``vocab.txt`` (line → line number) whose lookup table is shared by name only with the same vocabulary.

    TF names a text file's table after its file argument; for an Asset that is the object's repr, a memory
    address Python reuses: a tokenizer made after another one was freed could get that one's table, and tokenize
    with its vocabulary. The name here is the file's SHA-256 instead: one name, one vocabulary.
    """

    def __init__(self, asset: tf.saved_model.Asset, path: str) -> None:
        with open(path, "rb") as handle:
            self._digest = hashlib.sha256(handle.read()).hexdigest()
        super().__init__(asset, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                         value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)

    @property
    def _shared_name(self) -> str:
        return f"hash_table_vocab_{self._digest}_{self._key_index}_{self._value_index}"


class InGraphTokenizer(tf.Module):
    """Raw UTF-8 strings ``[batch]`` → ``input_ids``, ``attention_mask``, ``token_type_ids`` (int32).

    Example:
        >>> ids = InGraphTokenizer("vocab.txt", settings, max_length=128)(tf.constant(["a text"]))
    """

    def __init__(self, vocab_path: str, settings: dict[str, Any], max_length: int, length_multiple: int = 1,
                 max_windows: int = 1, stride: int = 0) -> None:
        super().__init__(name="tokenizer")
        import tensorflow_text as tf_text

        self.settings = dict(settings)
        self.max_length = int(max_length)
        self.max_windows, self.stride = int(max_windows), int(stride)
        self.length_multiple = int(length_multiple)
        self.vocab_asset = tf.saved_model.Asset(os.path.abspath(vocab_path))
        self.vocab_table = tf.lookup.StaticHashTable(_VocabFile(self.vocab_asset, vocab_path), default_value=-1)
        # Words are limited in characters below (as HF does), so the byte limit only has to let
        # every such word through: 100 characters of at most 4 UTF-8 bytes.
        self._wordpiece = tf_text.WordpieceTokenizer(
            self.vocab_table,
            token_out_type=tf.int64,
            unknown_token=settings["unk_token"],
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
        )
        self._regex_split = tf_text.regex_split
        self._regex_split_with_offsets = tf_text.regex_split_with_offsets
        self._normalize_utf8 = tf_text.normalize_utf8

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        texts = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD, replace_control_characters=False
        )
        if self.settings["clean_text"]:
            texts = tf.strings.regex_replace(texts, _REMOVED, "")
            texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        if self.settings["handle_chinese_chars"]:
            texts = tf.strings.regex_replace(texts, _CJK, r" \1 ")
        if self.settings["strip_accents"]:
            texts = self._normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, _MARKS, "")
        if self.settings["lowercase"]:
            # HF lowercases character by character; StringLower (ICU) applies the final-sigma rule (a word-final
            # capital sigma becomes U+03C2): lower capital sigma first, so it is always U+03C3 as in HF.
            texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def _pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Word-piece ids ``[n, (pieces)]`` of already transcoded strings ``[n]``."""
        words = self._regex_split(self.normalize(texts), _SPLIT, _KEEP)  # [n, (words)]
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, self.settings["unk_token"], words.flat_values))
        return self._wordpiece.tokenize(words).merge_dims(-2, -1)  # [n, (pieces)]

    def _model_inputs(self, pieces: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        """[CLS] pieces (truncated) [SEP], or up to ``max_windows`` such windows end to end
        (:mod:`mtkeras.windows`), padded to the longest row."""
        batch = pieces.nrows(out_type=tf.int32)
        ids = self._windows(pieces)  # ragged [batch, (length)]
        # Every row holds at least [CLS] [SEP]; the explicit width keeps an empty batch [0, 2], not [0, 0].
        width = tf.maximum(tf.cast(ids.bounding_shape(axis=1), tf.int32), 2)
        window = max(self.max_length, 2)
        rounded = tf.minimum(-(-width // self.length_multiple) * self.length_multiple, window)
        width = tf.where(width > window, -(-width // window) * window, rounded)  # as windows.round_length
        shape = tf.stack([batch, width])
        input_ids = ids.to_tensor(default_value=self.settings["pad_id"], shape=shape)
        attention_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
        return {
            "input_ids": tf.cast(input_ids, tf.int32),
            "attention_mask": tf.cast(attention_mask, tf.int32),
            "token_type_ids": tf.zeros_like(input_ids, dtype=tf.int32),
        }

    def _windows(self, pieces: tf.RaggedTensor) -> tf.RaggedTensor:
        return graph_window_rows(pieces, self.max_length, self.max_windows, self.stride, self.settings["cls_id"],
                                 self.settings["sep_id"])

    def window_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Token ids ``[batch, (tokens)]`` (int32, not padded): the rows ``__call__`` pads, as training reads them
        (:mod:`mtkeras.streaming`)."""
        return tf.cast(self._windows(self._pieces(self._transcode(texts))), tf.int32)

    @staticmethod
    def _transcode(texts: tf.Tensor) -> tf.Tensor:
        texts = tf.reshape(tf.convert_to_tensor(texts, tf.string), [-1])
        return tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD, replace_control_characters=False
        )

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._model_inputs(self._pieces(self._transcode(texts)))

    def tokenize_words(self, texts: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """The model inputs (equal to ``__call__``'s) and the whitespace-separated words of each text.

        Words are tokenized one by one, which gives the same pieces as the whole
        text (BERT splits on whitespace first). Returns ``(inputs, words)`` with
        ``words["texts"]`` string ``[batch, words]`` ('' padding), ``words["offsets"]``
        int32 ``[batch, words, 2]`` character (code point) offsets (-1 padding) and
        ``words["starts"]`` int32 ``[batch, words]``: the token index of each word's
        first piece, -1 when it has none (cut off by ``max_length``, or made only
        of characters BERT removes).
        """
        texts = self._transcode(texts)
        # TF Text's regex split stops a string at NUL. NUL is not a separator, so putting another
        # one-byte non-separator (U+0001) in its place splits alike and keeps the byte offsets.
        no_nul = tf.strings.regex_replace(texts, r"\x00", "\x01")
        words, begin, end = self._regex_split_with_offsets(no_nul, WORD_SEPARATOR_RE2)  # [batch, (words)], bytes
        # Byte offsets -> character offsets on flat arrays (never a [batch, characters] tensor): the start
        # byte of every character of every text, made global by adding each text's byte base.
        codepoints, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
        byte_base = tf.cumsum(tf.cast(tf.strings.length(texts), tf.int64), exclusive=True)
        char_base = tf.cumsum(char_bytes.row_lengths(), exclusive=True)
        all_chars = char_bytes.flat_values + tf.repeat(byte_base, char_bytes.row_lengths())

        def global_chars(offsets: tf.RaggedTensor) -> tf.Tensor:
            """Byte offsets [batch, (words)] -> character index in the flat array of all texts' characters."""
            rows = offsets.value_rowids()
            return tf.searchsorted(all_chars, offsets.flat_values + tf.gather(byte_base, rows), side="left",
                                   out_type=tf.int64)

        char_begin, char_end = global_chars(begin), global_chars(end)
        # The words' text re-encoded from the text's own code points (NUL included, as the caller sent it):
        # no per-word copy of the text and no dense [words, longest word] tensor.
        words = words.with_flat_values(tf.strings.unicode_encode(
            tf.gather(codepoints.flat_values, tf.ragged.range(char_begin, char_end)), "UTF-8"))
        word_pieces = self._pieces(words.flat_values)  # [all words, (pieces)]
        counts = word_pieces.row_lengths()  # int64 [all words]
        per_text = tf.reduce_sum(tf.RaggedTensor.from_row_splits(counts, words.row_splits), axis=1)
        inputs = self._model_inputs(tf.RaggedTensor.from_row_lengths(word_pieces.flat_values, per_text))

        # Token index of each word's first piece: where the first copy of its piece (0-based: the pieces of the
        # words before it in its text) lies in the row of windows.
        before = tf.cumsum(counts, exclusive=True)
        text_base = tf.gather(tf.concat([before, [tf.reduce_sum(counts)]], 0), words.row_starts())
        piece = before - tf.repeat(text_base, words.row_lengths())
        first = graph_token_positions(piece, self.max_length, self.stride)
        kept = (counts > 0) & (piece < max_pieces(self.max_length, self.max_windows, self.stride))
        starts = words.with_flat_values(tf.cast(tf.where(kept, first, -1), tf.int32))

        # Words returned per text: up to its last word that got a piece within max_length (later words
        # have no answer), at most MAX_WORDS_PER_LENGTH * max_length: a batch's outputs are dense, so one
        # huge text must not widen every row of its batch.
        index = tf.ragged.range(words.row_lengths()).flat_values
        batch = tf.shape(texts, out_type=tf.int64)[0]
        numbered = tf.where(kept, index + 1, tf.zeros_like(index))  # 1-based index of words with a piece, else 0
        last = tf.math.unsorted_segment_max(numbered, words.value_rowids(), batch)
        shown = tf.minimum(tf.maximum(last, 0), MAX_WORDS_PER_LENGTH * self.max_length * self.max_windows)
        mask = words.with_flat_values(index < tf.repeat(shown, words.row_lengths()))
        local = tf.cast(tf.gather(char_base, words.value_rowids()), tf.int64)
        begin, end = (words.with_flat_values(tf.cast(c - local, tf.int32)) for c in (char_begin, char_end))
        words, begin, end, starts = (tf.ragged.boolean_mask(t, mask) for t in (words, begin, end, starts))
        word_info = {
            "texts": words.to_tensor(default_value=""),
            "offsets": tf.stack([begin.to_tensor(default_value=-1), end.to_tensor(default_value=-1)], axis=-1),
            "starts": starts.to_tensor(default_value=-1),
        }
        return inputs, word_info


def in_graph_tokenizer(tokenizer: Any, max_length: int, max_windows: int = 1, stride: int = 0) -> InGraphTokenizer:
    """The in-graph tokenizer of a Hugging Face fast BERT ``tokenizer``, its vocabulary loaded into the lookup
    table at once (no file is kept: for tf.data pipelines and checks, not for a SavedModel, which keeps its
    ``vocab.txt`` as an asset).

    Example:
        >>> ids = in_graph_tokenizer(load_tokenizer("encoder/"), 128).window_ids(tf.constant(["a text"]))
    """
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return InGraphTokenizer(write_vocab(tokenizer, os.path.join(folder, "vocab.txt")),
                                tokenizer_settings(tokenizer), max_length, max_windows=max_windows, stride=stride)


def parity_mismatches(tokenizer: Any, texts: list[str],
                      max_length: int = 512) -> list[tuple[int, list[int], list[int]]]:
    """``(index, graph ids, Hugging Face ids)`` of every text the in-graph tokenizer reads differently from the
    Hugging Face ``tokenizer`` (both truncated to ``max_length`` pieces); empty when all agree.

    Example:
        >>> parity_mismatches(load_tokenizer("encoder/"), ["ΠΡΟΓΡΑΜΜΑΤΟΣ", "naïve café"])
        []
    """
    ours = in_graph_tokenizer(tokenizer, max_length)(tf.constant(texts, dtype=tf.string))
    reference = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    mask = ours["attention_mask"].numpy().astype(bool)
    ids = ours["input_ids"].numpy()
    return [(i, ids[i][mask[i]].tolist(), expected) for i, expected in enumerate(reference)
            if ids[i][mask[i]].tolist() != expected]

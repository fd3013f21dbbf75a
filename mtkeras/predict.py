"""``Predictor``: texts in, label names out, in-process."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras._checks import check_bool, check_int, check_text_container, check_texts
from mtkeras._compat import keras, tf
from mtkeras.calibration import calibrated
from mtkeras.data import check_word_tokenizer, encode_unpadded, pad_rows, token_word_starts
from mtkeras.defaults import PREDICT_JIT_COMPILE, PREDICT_NO_JIT_PRECISIONS, PREDICT_PRECISION, XLA_LENGTH_STEP
from mtkeras.encoder import load_tokenizer
from mtkeras.model import check_outputs, ids_signature
from mtkeras.precision import model_precision, with_precision
from mtkeras.spec import POOLING_LAYER, TaskSpec


class Predictor:
    """Tokenizes, runs the model in length-sorted batches and decodes label names.

    Texts are sorted by token count so that each batch is padded only to its
    own longest row; results come back in input order. One predictor may be
    called from several threads at once.

    Args:
        model: a model built by :func:`build_model` (or loaded).
        spec: the spec it was built from (its thresholds decide multilabel output).
        tokenizer: the encoder's tokenizer; defaults to the one in ``spec.encoder``.
        batch_size: texts per forward pass.
        chunk_size: texts tokenized (and length-sorted) together; bounds the memory
            that tokens take for long inputs.
        jit_compile: run the model XLA-compiled. Default (``None``): on in float32 and float16
            (``defaults.PREDICT_JIT_COMPILE``), off in bfloat16 (``defaults.PREDICT_NO_JIT_PRECISIONS``), as
            measured in ``BENCHMARKS.md``. Batch lengths are then rounded up to a multiple of
            ``XLA_LENGTH_STEP`` tokens and a short last batch up to a power of two rows, so
            XLA compiles a bounded set of shapes (at most 8 lengths x 6 sizes at max_length
            128, batch 32), not one per length.
        precision: what the encoder computes in: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"``
            (bfloat16 on a CPU with bfloat16 units, else float32: :mod:`mtkeras.precision`) or ``None`` (the
            model as built). Default ``defaults.PREDICT_PRECISION``. Another precision than the model's runs a
            copy of it rebuilt in that policy (``self.model``); heads and outputs stay float32.

    Example:
        >>> Predictor(model, spec).predict(["GNU image manipulation program"])
        [{'section': 'graphics', 'use': ['editing'], 'interface': ['x11']}]
    """

    def __init__(
        self,
        model: keras.Model,
        spec: TaskSpec,
        tokenizer: Any | None = None,
        batch_size: int = 32,
        chunk_size: int = 4096,
        jit_compile: bool | None = None,
        precision: str | None = PREDICT_PRECISION,
    ) -> None:
        check_outputs(model, spec, "Predictor", folder_hint="Predictor.from_folder(path)")
        if isinstance(tokenizer, (str, os.PathLike)):
            raise TypeError(f"Predictor: `tokenizer` must be a Hugging Face tokenizer (from a folder: "
                            f"mtk.load_tokenizer(path)), received {tokenizer!r:.80} ({type(tokenizer).__name__}).")
        check_int(batch_size, "batch_size", 1)
        check_int(chunk_size, "chunk_size", 1)
        if jit_compile is not None:
            check_bool(jit_compile, "jit_compile")
        model = model if precision is None else with_precision(model, spec, precision)
        #: What the encoder computes in ("float32", "bfloat16" or "float16").
        self.precision = model_precision(model)
        if jit_compile is None:
            jit_compile = PREDICT_JIT_COMPILE and self.precision not in PREDICT_NO_JIT_PRECISIONS
        self.model = model
        self.spec = spec
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.encoder)
        check_word_tokenizer(spec, self.tokenizer)
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        # Hugging Face fast tokenizers are not safe to call from several threads at once
        # ("Already borrowed"); the model's forward pass is.
        self._tokenizer_lock = threading.Lock()
        self.jit_compile = bool(jit_compile)
        self._length_multiple = XLA_LENGTH_STEP if jit_compile else 1
        # One trace for every batch shape: [batch, length] are both dynamic (XLA still compiles per shape).
        # The spec's temperatures are applied in the same graph (mtkeras.calibration), as in the exports.
        self._forward = tf.function(
            lambda inputs: calibrated(spec, model(inputs, training=False)), input_signature=[ids_signature()],
            jit_compile=jit_compile,
        )
        self._pooled: tuple[Any, int] | None = None  # embed's forward pass and width, built on first use
        self._pooled_lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: str, **options: Any) -> Predictor:
        """A predictor for a model saved with :func:`mtkeras.save_model`; ``options`` as for the class."""
        from mtkeras.saving import load_model

        model, spec, tokenizer = load_model(folder)
        return cls(model, spec, tokenizer=tokenizer, **options)

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Head outputs in input order: ``{group: float32 [len(texts), labels]}``; for a token-level
        group an object array holding one ``[words, labels]`` array per text (each word's first
        piece; 0 for words cut off by ``max_length``)."""
        return self._proba(check_texts(texts))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's pooled encoder vector (the ``mean_pooling`` layer, what a memory of training rows compares:
        :mod:`mtkeras.memory`), float32 ``[len(texts), hidden]`` in input order.

        Example:
            >>> predictor.embed(["GNU image manipulation program"]).shape
            (1, 384)
        """
        texts = check_texts(texts)
        forward, width = self._pooling()
        out = np.zeros((len(texts), width), np.float32)
        for rows, batch, _ in self._batches(texts, words=False):
            out[rows] = forward(batch).numpy()[: len(rows)]
        return out

    def _pooling(self) -> tuple[Any, int]:
        """:meth:`embed`'s forward pass (the model up to its ``mean_pooling`` layer) and the vectors' width."""
        with self._pooled_lock:
            if self._pooled is None:
                if POOLING_LAYER not in {layer.name for layer in self.model.layers}:
                    raise ValueError(f"Predictor.embed: the model has no pooled text vector (layer {POOLING_LAYER!r}):"
                                     f" its groups {list(self.spec.group_names)} all answer per token, none per text.")
                pooling = keras.Model(self.model.inputs, self.model.get_layer(POOLING_LAYER).output)
                forward = tf.function(lambda inputs: tf.cast(pooling(inputs, training=False), tf.float32),
                                      input_signature=[ids_signature()], jit_compile=self.jit_compile)
                self._pooled = (forward, int(pooling.output.shape[-1]))
            return self._pooled

    def _proba(self, texts: list[str]) -> dict[str, np.ndarray]:
        """:meth:`predict_proba` on texts already checked."""
        out = {group.name: group.rules.target_array(len(texts)) for group in self.spec.groups}
        for rows, batch, row_starts in self._batches(texts, words=self.spec.needs_words):
            outputs = self._forward(batch)
            for group in self.spec.groups:
                group.rules.store(out[group.name], rows, outputs[group.name].numpy()[: len(rows)], row_starts)
        return out

    def _batches(self, texts: list[str], words: bool) -> Iterator[tuple[np.ndarray, dict, list | None]]:
        """``(rows, batch, word starts)``: the texts' positions, their padded model inputs (rows beyond
        ``len(rows)`` repeat the first, for XLA's few shapes) and, with ``words``, each row's word starts.
        Tokens are held for one chunk of texts at a time, sorted by length inside it."""
        for chunk_start in range(0, len(texts), self.chunk_size):
            chunk = texts[chunk_start : chunk_start + self.chunk_size]
            with self._tokenizer_lock:
                encoded = encode_unpadded(self.tokenizer, chunk, self.spec, offsets=words)
            starts = token_word_starts(encoded, chunk) if words else None
            order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
            for start in range(0, len(chunk), self.batch_size):
                rows = order[start : start + self.batch_size]
                shown = rows
                if self.jit_compile and len(rows) < self.batch_size:  # a power of two rows: few shapes
                    size = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
                    shown = np.concatenate([rows, np.repeat(rows[:1], size - len(rows))])
                batch = pad_rows(encoded, shown, self.tokenizer.pad_token_id, self._length_multiple,
                                 window=self.spec.max_length)
                yield chunk_start + rows, batch, [starts[row] for row in rows] if words else None

    def decode(self, probs: dict[str, np.ndarray], texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Answers per row from head outputs, as each group's kind says: a label (argmax), labels
        (thresholds), floats (regression), or words with offsets and labels (token level, needs ``texts``)."""
        if texts is None and self.spec.needs_words:
            raise ValueError("`texts` is required to decode token-level groups (words and offsets come from them).")
        if not isinstance(probs, Mapping):
            raise TypeError(f"`probs` must be a dict {{group: outputs}} as predict_proba returns, received "
                            f"{type(probs).__name__}.")
        missing = [name for name in self.spec.group_names if name not in probs]
        if missing:
            raise ValueError(f"`probs` has no outputs for groups {missing}; it has {sorted(probs)}.")
        checked = {group.name: group.rules.check_outputs(probs[group.name]) for group in self.spec.groups}
        rows = {name: len(values) for name, values in checked.items()}
        first = self.spec.groups[0].name
        for name, count in rows.items():
            if count != rows[first]:
                raise ValueError(f"`probs[{name!r}]` has {count} rows but `probs[{first!r}]` has {rows[first]}; "
                                 "every group answers the same texts.")
        texts = None if texts is None else check_texts(texts)
        if texts is not None and len(texts) != rows[first]:
            raise ValueError(f"`texts` has {len(texts)} items for {rows[first]} rows of outputs.")
        return self._decode(checked, texts)

    def _decode(self, probs: dict[str, np.ndarray], texts: list[str] | None) -> list[dict[str, Any]]:
        """:meth:`decode` on texts already checked."""
        rows = len(np.asarray(probs[self.spec.groups[0].name]))
        texts = [""] * rows if texts is None else texts
        decoded = {
            group.name: group.rules.decode(np.asarray(probs[group.name]), texts)
            for group in self.spec.groups
        }
        return [{name: values[i] for name, values in decoded.items()} for i in range(rows)]

    def evaluate(self, records: Sequence[dict[str, Any]], output_dir: str | None = None) -> dict[str, Any]:
        """The evaluation report on labelled records (see :func:`mtkeras.evaluation`)."""
        from mtkeras.evaluation import evaluate

        return evaluate(self, records, output_dir=output_dir)

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One ``{group: answer}`` dict per text, in input order (see :meth:`decode`)."""
        texts = check_texts(texts)
        return self._decode(self._proba(texts), texts)

    def predict_iter(self, texts: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Like :meth:`predict`, streamed: reads ``chunk_size`` texts at a time from any iterable
        (a file, a generator) and yields their answers in input order, so memory stays bounded
        however many texts there are.

        Example:
            >>> with open("texts.txt") as lines:
            ...     for answer in predictor.predict_iter(line.rstrip("\\n") for line in lines):
            ...         print(answer)
        """
        check_text_container(texts)  # a lone string, a dict, a set, ...: the usual error before any work
        iterator = iter(texts)
        offset = 0
        while chunk := list(itertools.islice(iterator, self.chunk_size)):
            chunk = check_texts(chunk, start=offset)  # an item is named by its position in the whole stream
            yield from self._decode(self._proba(chunk), chunk)
            offset += len(chunk)

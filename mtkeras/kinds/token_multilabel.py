"""``token_multilabel``: any number of labels per word (sigmoid head on every token, masked
binary cross-entropy over each word's first piece)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mtkeras.defaults import ROC_AUC
from mtkeras.kinds.base import (
    Features,
    GroupKind,
    Output,
    graph_thresholded_labels,
    parse_json,
    served_labels,
    text,
)
from mtkeras.words import label_runs, split_words


def _is_span(item: Any) -> bool:
    if isinstance(item, Mapping):
        return True
    return isinstance(item, (list, tuple)) and len(item) == 3 and type(item[0]) is int


class TokenMultilabel(GroupKind):
    """Any number of labels per whitespace-separated word (see :func:`mtkeras.words.split_words`).

    Data: one label list per word, or character spans ``[start, end, label]``. Answers:
    per word its text, character offsets and labels.

    Example:
        >>> group = LabelGroup("mentions", "token_multilabel", labels=["program"])
        >>> group.rules.encode([[], ["program"]], row=0, text="run gimp")
        array([[0.], [1.]], dtype=float32)
    """

    name = "token_multilabel"
    description = ("any number of labels per word (sigmoid head on every token, binary cross-entropy "
                   "over the first word piece of each word)")
    losses = ("binary_crossentropy",)
    thresholded = True
    per_word = True
    target_padding = -1.0  # heads.IGNORED_TOKEN: padded positions carry no loss
    metric_names = (ROC_AUC,)
    selection_metric = "roc_auc_micro"
    outputs = (
        Output("probabilities", "float32", ("batch", "words", "n_labels"),
               "per word, its first piece's probabilities (0 for padding and for words past the last window)"),
        Output("labels", "string", ("batch", "words", "n_labels"),
               "per word, the labels whose probability >= their threshold, then '' padding"),
        Output("words", "string", ("batch", "words"),
               "the whitespace-separated words up to the last one within the windows read (later words have no "
               "answer; at most 4 x max_length x max_windows words), '' padding"),
        Output("offsets", "int32", ("batch", "words", "2"),
               "each word's [start, end) character offsets in the text (Unicode code points), -1 padding"),
    )
    raw_output = Output("token_probabilities", "float32", ("batch", "length", "n_labels"),
                        "per token; a word's answer is its first piece's")

    # --- head -> loss -> metrics ---------------------------------------------------------

    def head(self, features: Features, initializer: Any, name: str) -> Any:
        return self._dense("sigmoid", initializer, name)(features.tokens)

    def loss(self) -> Any:
        from mtkeras.heads import MaskedBinaryCrossentropy

        return MaskedBinaryCrossentropy()

    def metrics(self) -> list[Any]:
        from mtkeras.heads import TokenAUC

        return [TokenAUC(curve="ROC", multi_label=True, num_labels=len(self.group.labels), name=ROC_AUC)]

    # --- encode ----------------------------------------------------------------------

    def target_array(self, rows: int) -> np.ndarray:
        return np.empty(rows, dtype=object)  # one [words, labels] array per row

    def encode_missing(self, text: str) -> np.ndarray:
        return np.zeros((len(split_words(text)), len(self.group.labels)), dtype=np.float32)

    def encode(self, value: Any, row: int, text: str) -> np.ndarray:
        """float32 ``[words, labels]`` from per-word label lists or character spans."""
        words = split_words(text)
        target = np.zeros((len(words), len(self.group.labels)), dtype=np.float32)
        if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
            raise TypeError(
                f"{self.where(row)}: expected a list with one label list per word, or a list of spans "
                f"[start, end, label]; received {value!r:.80} ({type(value).__name__})."
            )
        if not value:
            return target  # no spans: every word carries no label
        if _is_span(value[0]):
            return self._encode_spans(value, row, text, words, target)
        if len(value) != len(words):
            raise ValueError(
                f"{self.where(row)}: {len(value)} word-label lists for the {len(words)} words of the text; give "
                "one list per whitespace-separated word (see mtkeras.words.split_words), or character spans."
            )
        for w, labels in enumerate(value):
            if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
                raise TypeError(
                    f"{self.where(row)}: word {w} ({text[words[w][0]:words[w][1]]!r}) has {labels!r:.80}; "
                    "each word takes a list of labels ([] for none)."
                )
            for label in labels:
                target[w, self.label_index(label, row)] = 1.0
        return target

    def _span_fields(self, item: Any, row: int, index: int) -> tuple[Any, Any, Any]:
        if isinstance(item, Mapping):
            if set(item) != {"start", "end", "label"}:
                raise ValueError(
                    f"{self.where(row)}: span {index} has keys {sorted(item)}; a span is "
                    '{"start": int, "end": int, "label": str} or [start, end, label].'
                )
            return item["start"], item["end"], item["label"]
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise TypeError(
                f"{self.where(row)}: span {index} is {item!r:.80}; a span is [start, end, label] or "
                '{"start": ..., "end": ..., "label": ...}.'
            )
        return tuple(item)

    def _encode_spans(self, value: Sequence[Any], row: int, text: str, words: list[tuple[int, int]],
                      target: np.ndarray) -> np.ndarray:
        seen: dict[str, list[tuple[int, int]]] = {}
        for index, item in enumerate(value):
            start, end, label = self._span_fields(item, row, index)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not (
                0 <= start < end <= len(text)
            ):
                raise ValueError(
                    f"{self.where(row)}: span {index} [{start!r}, {end!r}, {label!r}] is outside the text; "
                    f"spans need integer character offsets 0 <= start < end <= {len(text)} (the text's length)."
                )
            column = self.label_index(label, row)
            for other_start, other_end in seen.get(label, []):
                if start < other_end and other_start < end:
                    raise ValueError(
                        f"{self.where(row)}: span {index} [{start}, {end}, {label!r}] overlaps span "
                        f"[{other_start}, {other_end}, {label!r}]; spans of one label may not overlap "
                        "(spans of different labels may)."
                    )
            seen.setdefault(label, []).append((start, end))
            covered = [w for w, (w_start, w_end) in enumerate(words) if w_start < end and start < w_end]
            if not covered:
                raise ValueError(
                    f"{self.where(row)}: span {index} [{start}, {end}, {label!r}] covers only whitespace "
                    f"({text[start:end]!r}); a span must cover part of a word."
                )
            target[covered, column] = 1.0
        return target

    @classmethod
    def parse_cell(cls, value: str, delimiter: str) -> Any:
        return parse_json(value.strip(), "a JSON list of word-label lists or spans")

    @classmethod
    def labels_in(cls, value: Any) -> Iterable[str]:
        labels: list[str] = []
        for item in value if isinstance(value, (list, tuple)) else []:
            if isinstance(item, Mapping) and isinstance(item.get("label"), str):
                labels.append(item["label"])
            elif _is_span(item) and isinstance(item[2], str):
                labels.append(item[2])
            elif isinstance(item, (list, tuple)):
                labels.extend(label for label in item if isinstance(label, str))
        return labels

    def dataset_targets(self, targets: np.ndarray, starts: Any, lengths: np.ndarray) -> tuple[Any, float]:
        """Per-token targets ``[rows, (tokens), labels]``: each word's target on its first piece, ignored
        elsewhere (padding value ``IGNORED_TOKEN``)."""
        from mtkeras._compat import tf
        from mtkeras.heads import IGNORED_TOKEN

        aligned = np.full((int(lengths.sum()), len(self.group.labels)), IGNORED_TOKEN, dtype=np.float32)
        row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for row, (target, start) in enumerate(zip(targets, starts, strict=True)):
            kept = start >= 0  # words cut off by max_length, or without any token, carry no loss
            aligned[row_starts[row] + start[kept]] = target[kept]
        return tf.RaggedTensor.from_row_lengths(aligned, lengths), self.target_padding

    # --- model outputs -> answers ------------------------------------------------------

    def store(self, out: np.ndarray, rows: np.ndarray, values: np.ndarray, starts: Any) -> None:
        """Each word's first piece's probabilities (0 for words cut off by ``max_length``)."""
        for batch_row, row in enumerate(rows):
            word_start = starts[batch_row]
            per_word = np.zeros((len(word_start), len(self.group.labels)), np.float32)
            kept = word_start >= 0
            per_word[kept] = values[batch_row, word_start[kept]]
            out[row] = per_word

    def check_outputs(self, outputs: Any, what: str = "Outputs") -> np.ndarray:
        """One ``[words, labels]`` float array per row (an object array), or a ValueError naming ``what`` and the
        group."""
        rows = list(outputs) if isinstance(outputs, (list, tuple, np.ndarray)) else None
        if rows is None:
            raise ValueError(f"{what} of token-level group {self.group.name!r} must be one [words, labels] array "
                             f"per row, received {type(outputs).__name__}.")
        checked = np.empty(len(rows), dtype=object)
        for index, row in enumerate(rows):
            array = np.asarray(row)
            if array.ndim != 2 or array.shape[1] != len(self.group.labels) or not np.issubdtype(array.dtype,
                                                                                                 np.number):
                raise ValueError(
                    f"{what} of token-level group {self.group.name!r}, row {index}: shape {array.shape} "
                    f"(dtype {array.dtype}); expected numbers of shape (words, {len(self.group.labels)})."
                )
            checked[index] = array
        return checked

    def flatten(self, outputs: np.ndarray) -> np.ndarray:
        """All rows' ``[words, labels]`` arrays stacked: ``[total words, labels]``."""
        arrays = [np.asarray(v, np.float32).reshape(-1, len(self.group.labels)) for v in outputs]
        return np.concatenate(arrays) if arrays else np.zeros((0, len(self.group.labels)), np.float32)

    def decode(self, outputs: np.ndarray, texts: Sequence[str]) -> list[list[dict]]:
        thresholds = np.asarray(self.group.thresholds, dtype=np.float32)
        decoded = []
        for text_, row in zip(texts, outputs, strict=True):
            chosen = np.asarray(row) >= thresholds
            decoded.append([
                {"word": text_[start:end], "start": start, "end": end,
                 "labels": [self.group.labels[j] for j in np.flatnonzero(chosen[w])]}
                for w, (start, end) in enumerate(split_words(text_))
            ])
        return decoded

    # --- serve -----------------------------------------------------------------------

    def serve(self, values: Any, words: Mapping[str, Any]) -> dict[str, Any]:
        """Per word: its first piece's probabilities (0 for words without a token), labels, text and offsets."""
        from mtkeras._compat import tf

        starts = words["starts"]
        per_word = tf.gather(values, tf.maximum(starts, 0), batch_dims=1)
        per_word *= tf.cast(starts >= 0, values.dtype)[..., None]
        return {
            "probabilities": per_word,
            "labels": graph_thresholded_labels(self.group.labels, self.group.thresholds, per_word),
            "words": words["texts"],
            "offsets": words["offsets"],
        }

    def read_served(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The served words with offsets and labels; padding (offset -1) dropped."""
        answer = []
        for word, (start, end), labels in zip(self.served(row, "words"), self.served(row, "offsets"),
                                              self.served(row, "labels"), strict=True):
            if int(start) >= 0:
                answer.append({"word": text(word), "start": int(start), "end": int(end),
                               "labels": served_labels(labels)})
        return answer

    # --- evaluate --------------------------------------------------------------------

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import f1_score, roc_auc_score

        thresholds = np.asarray(self.group.thresholds, dtype=np.float32)
        flat_probs, flat_true = self.flatten(outputs), self.flatten(targets).astype(np.int8)
        flat_predicted = (flat_probs >= thresholds).astype(np.int8)
        true_spans = predicted_spans = matched = 0
        for p, t in zip(outputs, targets, strict=True):
            predicted = label_runs(np.asarray(p) >= thresholds)
            true = label_runs(np.asarray(t) > 0.5)
            true_spans += len(true)
            predicted_spans += len(predicted)
            matched += len(predicted & true)
        precision = matched / predicted_spans if predicted_spans else 0.0
        recall = matched / true_spans if true_spans else 0.0
        both_classes = 0 < flat_true.sum() < flat_true.size
        return {
            "words": int(len(flat_true)),
            "token_micro_f1": float(f1_score(flat_true, flat_predicted, average="micro", zero_division=0)),
            "token_macro_f1": float(f1_score(flat_true, flat_predicted, average="macro", zero_division=0)),
            "roc_auc_micro": float(roc_auc_score(flat_true.ravel(), flat_probs.ravel())) if both_classes else None,
            "span_precision": float(precision),
            "span_recall": float(recall),
            "span_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
            "spans_true": int(true_spans),
            "spans_predicted": int(predicted_spans),
            "per_label": self.label_report(flat_true, flat_predicted),
        }

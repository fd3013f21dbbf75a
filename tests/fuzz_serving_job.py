"""Fuzz an export's ``serving_default`` in a process that imports only TensorFlow and TF Text.

    python tests/fuzz_serving_job.py EXPORT_DIR COUNT SEED REPORT_JSON

Generates COUNT texts (seeded) of every hostile sort a public endpoint receives and
sends them in batches of 0, 1, 1,000 and random sizes. Every answer is checked
against the export's own metadata (``assets.extra/mtkeras.json``): shapes agree
with the batch, floats are finite, probabilities lie in [0, 1], multiclass rows sum
to 1, labels come from the group's label set, word offsets are ordered. Invalid
UTF-8 is not an error: the export documents that such bytes become U+FFFD and are
dropped, so it must answer like any other text. Writes a JSON report (counts per
sort, slowest call) and exits non-zero on the first violation.
"""

import json
import os
import random
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the export uses)

COMBINING = [chr(c) for c in range(0x300, 0x370)]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad"]
BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069"]
RTL = "שלום עולם مرحبا بالعالم "
CONTROL = [chr(c) for c in [*range(0, 32), *range(0x7F, 0xA0)]]
WORDS = ["red", "blue", "green", "alpha", "beta", "program", "the", "file", "network", "ünïcödé", "日本語", "😀"]


def _any_char(rng: random.Random) -> str:
    plane = rng.choice([0, 0, 0, 1, 2, 3, 14, 15, 16])
    code = rng.randrange(plane * 0x10000, plane * 0x10000 + 0x10000)
    if 0xD800 <= code <= 0xDFFF:  # surrogates are their own sort (as bytes)
        code = 0xFFFD
    return chr(code)


def generate(rng: random.Random, sort: str) -> bytes:
    """One input of the given sort, as the bytes a client sends."""
    n = rng.randint(0, 60)
    if sort == "unicode_planes":
        return "".join(_any_char(rng) for _ in range(n)).encode("utf-8")
    if sort == "combining_marks":
        return "".join(rng.choice("aeoxyz ") + "".join(rng.choices(COMBINING, k=rng.randint(0, 30)))
                       for _ in range(n)).encode("utf-8")
    if sort == "right_to_left":
        return "".join(rng.choice([RTL[rng.randrange(len(RTL))], rng.choice(BIDI), rng.choice(WORDS) + " "])
                       for _ in range(n)).encode("utf-8")
    if sort == "zero_width":
        return "".join(rng.choice([rng.choice(ZERO_WIDTH), rng.choice(WORDS), " "]) for _ in range(n)).encode()
    if sort == "nul_and_control":
        return "".join(rng.choice([rng.choice(CONTROL), rng.choice(WORDS), " "]) for _ in range(n)).encode()
    if sort == "lone_surrogates":
        text = "".join(rng.choice([chr(rng.randrange(0xD800, 0xE000)), rng.choice(WORDS), " "]) for _ in range(n))
        return text.encode("utf-8", "surrogatepass")
    if sort == "invalid_utf8":
        pieces = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
                  b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", bytes([rng.randrange(256)]), b"red ", b"blue "]
        return b"".join(rng.choice(pieces) for _ in range(n))
    if sort == "random_bytes":
        return bytes(rng.randrange(256) for _ in range(n))
    if sort == "long_words":
        return (rng.choice(["a", "é", "日", "😀", "ab1"]) * rng.randint(50, 20_000)).encode("utf-8")
    if sort == "whitespace_and_empty":
        return "".join(rng.choice([" ", "\t", "\n", "\r", "\u3000", "\u00a0", "\u2028", ""]) for _ in range(n)).encode()
    if sort == "words":
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 200))).encode("utf-8")
    raise ValueError(sort)


SORTS = ["unicode_planes", "combining_marks", "right_to_left", "zero_width", "nul_and_control", "lone_surrogates",
         "invalid_utf8", "random_bytes", "long_words", "whitespace_and_empty", "words"]


def megabyte_text(rng: random.Random) -> bytes:
    chunk = b"".join(generate(rng, rng.choice(SORTS[:-2])) for _ in range(64)) + b" red blue "
    return (chunk * (1_048_576 // max(len(chunk), 1) + 1))[:1_048_576]


def rss_mb() -> float:
    """The process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def check(outputs: dict, metadata: dict, batch: int) -> None:
    for info in metadata["groups"].values():
        labels = set(info["labels"])
        for name in info["serving_default_outputs"]:
            value = outputs[name].numpy()
            assert value.shape[0] == batch, (name, value.shape, batch)
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), f"{name}: not finite"
            if name.endswith("_probabilities"):
                assert ((value >= 0) & (value <= 1)).all(), f"{name}: outside [0, 1]"
                if info["kind"] == "multiclass" and batch:
                    assert np.allclose(value.sum(-1), 1.0, atol=1e-4), f"{name}: rows do not sum to 1"
            if name.endswith("_labels"):
                found = {v.decode("utf-8") for v in value.reshape(-1)}
                assert found <= labels | {""}, f"{name}: unknown labels {sorted(found - labels - {''})[:5]}"
                if info["kind"] == "multiclass":
                    assert "" not in found, f"{name}: a multiclass row without a label"
            if name.endswith("_offsets"):
                padding = (value == -1).all(-1)
                starts, ends = value[..., 0][~padding], value[..., 1][~padding]
                assert (starts >= 0).all() and (starts <= ends).all(), f"{name}: bad offsets"


def main() -> None:
    export_dir, count, seed, report_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    assert not set(sys.modules) & {"mtkeras", "transformers", "tf_keras"}, "not a TF-only process"
    with open(os.path.join(export_dir, "assets.extra", "mtkeras.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    rng = random.Random(seed)
    counts = {sort: 0 for sort in [*SORTS, "one_megabyte"]}
    sizes = [0, 1, 1000]
    tried, calls, slowest, rss = 0, 0, 0.0, []
    while tried < count or sizes:
        size = sizes.pop(0) if sizes else rng.choice([1, 2, 7, 32, 64, 100])
        batch = []
        for _ in range(size):
            sort = rng.choice(SORTS)
            counts[sort] += 1
            batch.append(generate(rng, sort))
        if calls % 25 == 3:  # now and then a 1 MB text
            counts["one_megabyte"] += 1
            batch.append(megabyte_text(rng))
        started = time.perf_counter()
        outputs = serve(text=tf.constant(batch, dtype=tf.string, shape=[len(batch)]))
        check(outputs, metadata, len(batch))
        slowest = max(slowest, time.perf_counter() - started)
        tried += len(batch)
        calls += 1
        if calls % 100 == 0:
            rss.append(round(rss_mb()))
    with open(report_path, "w", encoding="utf-8") as handle:
        json.dump({"inputs": tried, "calls": calls, "per_sort": counts, "slowest_call_s": round(slowest, 3),
                   "rss_mb_every_100_calls": rss}, handle)
    assert not set(sys.modules) & {"mtkeras", "transformers", "tf_keras"}, "not a TF-only process"


if __name__ == "__main__":
    main()

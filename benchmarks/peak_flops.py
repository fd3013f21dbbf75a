"""This machine's matmul peak with TensorFlow, per precision (issue 6 table 4; issue 17).

    python benchmarks/peak_flops.py [--precisions float32,bfloat16,int8]

Times ``tf.matmul`` on square shapes and the encoder's own (4,096 token rows × 384 → 1,536 and back,
32 × 128 tokens), in each precision: ``float32``; ``bfloat16`` (both operands bfloat16, as
``mixed_bfloat16`` computes: oneDNN uses the CPU's AVX512-BF16 dot products where it has them); ``int8``
(int8 operands, int32 accumulation: ``tf.linalg.matmul(..., output_type=tf.int32)``, what TensorFlow offers
without a quantized graph). The best median over shapes is the peak a path running in that precision is
compared with. ``grep -o 'avx512_bf16\\|avx512_vnni' /proc/cpuinfo | sort -u`` says what the CPU has.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mtkeras._compat import tf

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 384, 1536), (4096, 1536, 384), (4096, 384, 384)]


def _operands(m: int, k: int, n: int, precision: str) -> tuple:
    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    if precision == "int8":
        return (tf.cast(tf.clip_by_value(a * 40, -127, 127), tf.int8),
                tf.cast(tf.clip_by_value(b * 40, -127, 127), tf.int8))
    return tf.cast(a, precision), tf.cast(b, precision)


def _matmul(precision: str):
    if precision == "int8":
        return tf.function(lambda a, b: tf.linalg.matmul(a, b, output_type=tf.int32))
    return tf.function(lambda a, b: tf.matmul(a, b))


def rate(m: int, k: int, n: int, precision: str, samples: int = 7) -> list[float]:
    """GFLOP/s (GOP/s for int8) of ``samples`` timed runs, each about 20 GFLOP."""
    a, b = _operands(m, k, n, precision)
    matmul = _matmul(precision)
    matmul(a, b).numpy()
    work = 2.0 * m * k * n
    repeats = max(3, int(2e10 / work))
    rates = []
    for _ in range(samples):
        started = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.numpy()
        rates.append(work * repeats / (time.perf_counter() - started) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="float32,bfloat16,int8")
    precisions = parser.parse_args().precisions.split(",")
    results = {p: {} for p in precisions}
    for shape in SHAPES:  # precisions alternate per shape, so a noisy moment does not hit one precision only
        for precision in precisions:
            try:
                results[precision][shape] = statistics.median(rate(*shape, precision))
            except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, TypeError) as error:
                results[precision][shape] = f"not run: {type(error).__name__}"
    print("| m × k × n | " + " | ".join(f"{p} median G(FL)OP/s" for p in precisions) + " |")
    print("|---|" + "---|" * len(precisions))
    for shape in SHAPES:
        cells = [results[p][shape] for p in precisions]
        print(f"| {' × '.join(map(str, shape))} | "
              + " | ".join(f"{c:.0f}" if isinstance(c, float) else c for c in cells) + " |")
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    for precision in precisions:
        numbers = [v for v in results[precision].values() if isinstance(v, float)]
        if numbers:
            print(f"\n{precision} peak (best median): {max(numbers):.0f} G(FL)OP/s on {threads} intra-op threads")


if __name__ == "__main__":
    main()

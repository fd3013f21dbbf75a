"""This machine's float32 matmul peak with TensorFlow (issue 6, table 4).

    python benchmarks/peak_flops.py

Times ``tf.matmul`` on float32 shapes: square ones and the encoder's own
(4,096 token rows × 384 → 1,536 and back, 32 × 128 tokens). The best median
over shapes is the peak that the model's achieved GFLOP/s are compared with.
"""

from __future__ import annotations

import statistics
import time

from mtkeras._compat import tf

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 384, 1536), (4096, 1536, 384), (4096, 384, 384)]


def main() -> None:
    print("| m × k × n | median GFLOP/s | best GFLOP/s |")
    print("|---|---|---|")
    best = 0.0
    for m, k, n in SHAPES:
        a = tf.random.normal([m, k])
        b = tf.random.normal([k, n])
        matmul = tf.function(lambda a, b: tf.matmul(a, b))
        matmul(a, b).numpy()
        work = 2.0 * m * k * n
        repeats = max(3, int(2e10 / work))  # about 20 GFLOP per sample
        rates = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(repeats):
                out = matmul(a, b)
            out.numpy()
            rates.append(work * repeats / (time.perf_counter() - started) / 1e9)
        median = statistics.median(rates)
        best = max(best, median)
        print(f"| {m} × {k} × {n} | {median:.0f} | {max(rates):.0f} |")
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    print(f"\npeak (best median): {best:.0f} GFLOP/s on {threads} intra-op threads")


if __name__ == "__main__":
    main()

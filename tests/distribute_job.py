"""Training jobs for test_distribute.py, each in its own process (devices must be set before TF starts).

    python distribute_job.py mirrored OUT_DIR        # 1 device vs MirroredStrategy on 2 logical CPUs
    python distribute_job.py worker OUT_DIR          # one MultiWorkerMirroredStrategy worker (TF_CONFIG set)
    python distribute_job.py prepare OUT_DIR         # TFRecord shards of the job's rows (mtkeras.shards)
    python distribute_job.py shard_worker OUT_DIR    # a worker that trains from its own shards (TF_CONFIG set)
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mtkeras._compat import tf  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)

if sys.argv[1] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from conftest import synthetic_records, tiny_config, write_vocab  # noqa: E402

import mtkeras as mtk  # noqa: E402

STEPS, GLOBAL_BATCH = 6, 16


def setup(out_dir: str):
    folder = os.path.join(out_dir, "vocab")
    os.makedirs(folder, exist_ok=True)
    write_vocab(folder)
    tiny_config().save_pretrained(folder)
    spec = mtk.TaskSpec(
        encoder=folder,
        max_length=32,
        head_dropout=0.0,  # no randomness: one device and two replicas must compute the same steps
        groups=[
            mtk.LabelGroup("topic", "multiclass", labels=["alpha", "beta", "gamma"]),
            mtk.LabelGroup("colour", "multilabel", labels=["red", "blue", "green", "yellow"], loss_weight=2.0),
        ],
    )
    tokenizer = mtk.load_tokenizer(folder)
    dataset = mtk.make_dataset(spec, tokenizer, synthetic_records(STEPS * GLOBAL_BATCH), batch_size=GLOBAL_BATCH,
                               padding="longest")
    return spec, tokenizer, dataset


def train(spec, dataset, strategy, initial):
    model = mtk.build_model(spec, bert_config=tiny_config(), strategy=strategy)
    if initial is not None:
        model.set_weights(initial)
    start = [w.copy() for w in model.get_weights()]
    mtk.compile_model(model, spec, learning_rate=3e-3, warmup_steps=2, total_steps=STEPS * 2)
    history = model.fit(dataset, epochs=2, verbose=0)
    return model, start, history.history["loss"]


def mirrored(out_dir: str) -> None:
    spec, tokenizer, dataset = setup(out_dir)
    mtk.keras.utils.set_random_seed(0)
    single, initial, single_loss = train(spec, dataset, None, None)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored_model, _, mirrored_loss = train(spec, dataset, strategy, initial)
    weights = os.path.join(out_dir, "mirrored.weights.h5")
    mirrored_model.save_weights(weights)
    plain = mtk.build_model(spec, bert_config=tiny_config())  # no strategy: loads what the replicas wrote
    plain.load_weights(weights)
    x = mtk.tokenize(tokenizer, ["red alpha program", "beta"], spec.max_length)
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "single_loss": single_loss,
        "mirrored_loss": mirrored_loss,
        "max_weight_diff": max(float(np.max(np.abs(a - b)))
                               for a, b in zip(single.get_weights(), mirrored_model.get_weights(), strict=True)),
        "optimizer_steps": int(mirrored_model.optimizer.iterations.numpy()),
        "reload_max_diff": max(float(np.max(np.abs(plain(x)[k].numpy() - mirrored_model(x)[k].numpy())))
                               for k in spec.group_names),
    }
    print(json.dumps(result))


def worker(out_dir: str) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    spec, _, dataset = setup(out_dir)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    mtk.keras.utils.set_random_seed(0)  # same initial weights on every worker
    model, _, loss = train(spec, dataset.with_options(options), strategy, None)
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), *model.get_weights())
    print(json.dumps({"worker": index, "replicas": strategy.num_replicas_in_sync, "loss": loss}))


def prepare(out_dir: str) -> None:
    spec, tokenizer, _ = setup(out_dir)
    path = os.path.join(out_dir, "rows.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in synthetic_records(STEPS * GLOBAL_BATCH))
    manifest = mtk.shards.prepare_shards(spec, tokenizer, path, os.path.join(out_dir, "shards"),
                                         rows_per_shard=STEPS * GLOBAL_BATCH // 4)
    print(json.dumps({"shards": [s["file"] for s in manifest["shards"]]}))


def shard_worker(out_dir: str) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    spec, tokenizer, _ = setup(out_dir)
    folder = os.path.join(out_dir, "shards")
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    read = {}

    def dataset_fn(context):
        files = mtk.shards.check_manifest(mtk.shards.read_manifest(folder), spec, tokenizer, folder)
        read["files"] = [os.path.basename(f) for f in mtk.streaming.shard_files(files, context)]
        read["pipelines"] = context.num_input_pipelines
        return mtk.make_dataset(spec, tokenizer, folder, batch_size=context.get_per_replica_batch_size(GLOBAL_BATCH),
                                shuffle=True, seed=0, input_context=context).repeat()

    mtk.keras.utils.set_random_seed(0)
    model = mtk.build_model(spec, bert_config=tiny_config(), strategy=strategy)
    mtk.compile_model(model, spec, learning_rate=3e-3, warmup_steps=2, total_steps=STEPS * 2)
    history = model.fit(mtk.streaming.dataset_creator(dataset_fn), steps_per_epoch=STEPS // 2, epochs=2, verbose=0)
    np.savez(os.path.join(out_dir, f"shard_worker{index}.npz"), *model.get_weights())
    print(json.dumps({"worker": index, "replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                      **read}))


if __name__ == "__main__":
    {"mirrored": mirrored, "worker": worker, "prepare": prepare, "shard_worker": shard_worker}[sys.argv[1]](sys.argv[2])

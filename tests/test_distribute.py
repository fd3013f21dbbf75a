"""tf.distribute: MirroredStrategy on 2 logical CPUs matches one device; 2 MultiWorkerMirrored workers agree, also
when each reads its own TFRecord shards."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_config
from test_kinds_more import mixed_records

import mtkeras as mtk
from mtkeras.defaults import LOSS_WEIGHTINGS

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distribute_job.py")


def _run(args, env=None, timeout=600):
    return subprocess.Popen([sys.executable, JOB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _result(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_mirrored_strategy_matches_one_device_and_its_checkpoint_loads_without_it(tmp_path):
    result = _result(_run(["mirrored", str(tmp_path)]))
    assert result["replicas"] == 2
    # Same global batches, same initial weights: the two replicas' averaged gradients are one device's,
    # up to float32 summation order.
    np.testing.assert_allclose(result["mirrored_loss"], result["single_loss"], rtol=1e-4)
    assert result["max_weight_diff"] < 1e-4
    assert result["optimizer_steps"] == 12  # RAdam's step count (warm-up position) advanced once per global batch
    assert result["reload_max_diff"] < 1e-6


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_two_multi_worker_mirrored_workers_end_with_identical_weights(tmp_path):
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    processes = [
        _run(["worker", str(tmp_path)], env={"TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    results = [_result(process) for process in processes]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["loss"] == results[1]["loss"]  # the loss is all-reduced too
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_two_workers_train_from_disjoint_shards_and_end_with_identical_weights(tmp_path):
    shards = _result(_run(["prepare", str(tmp_path)]))["shards"]
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    processes = [
        _run(["shard_worker", str(tmp_path)], env={"TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    results = sorted((_result(process) for process in processes), key=lambda r: r["worker"])
    assert [r["pipelines"] for r in results] == [2, 2] and [r["replicas"] for r in results] == [2, 2]
    first, second = (set(r["files"]) for r in results)
    assert first and second and not first & second and first | second == set(shards)  # each its own shards
    assert results[0]["loss"] == results[1]["loss"]
    a, b = (np.load(tmp_path / f"shard_worker{i}.npz") for i in range(2))
    assert len(a.files) == len(b.files) > 0
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("weighting", sorted(LOSS_WEIGHTINGS))
def test_one_replica_strategy_trains_every_kind_as_one_device_does(all_kinds_spec, tiny_tokenizer, weighting):
    """In the default suite, what the slow multi-device tests check most often breaks first: every loss the
    product compiles (each kind's, wrapped by each loss weighting) must accept a ``tf.distribute`` strategy's
    scope, where Keras refuses a loss not cleared to average over the batch. One replica computes one device's
    step, so the losses must agree too."""
    from mtkeras._compat import tf

    spec = dataclasses.replace(all_kinds_spec, loss_weighting=weighting, head_dropout=0.0)
    dataset = mtk.make_dataset(spec, tiny_tokenizer, mixed_records(16), batch_size=8, padding="longest")
    losses = []
    for strategy in (None, tf.distribute.MirroredStrategy(["/cpu:0"])):
        mtk.keras.utils.set_random_seed(3)
        model = mtk.build_model(spec, bert_config=tiny_config(), strategy=strategy)
        mtk.compile_model(model, spec, learning_rate=1e-3)
        losses.append(model.fit(dataset, epochs=1, verbose=0).history["loss"][0])
    assert np.isfinite(losses[0])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


def test_distribute_config_and_chief(config_file, monkeypatch):
    from mtkeras._compat import tf
    from mtkeras.training import is_chief, make_strategy

    with pytest.raises(ValueError, match=r"`training.distribute` must be one of \[None, 'mirrored', 'multi_worker'\], "
                                         r"received 'tpu'"):
        mtk.load_config(config_file, ["training.distribute=tpu"])
    with pytest.raises(ValueError, match=r"`distribute` must be one of .*received 'gpu'"):
        make_strategy("gpu")
    assert make_strategy(None) is None and is_chief(None)

    class Fake:
        cluster_resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()

    cluster = {"worker": ["localhost:1", "localhost:2"]}
    for task, chief in ((("worker", 0), True), (("worker", 1), False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
        assert is_chief(Fake()) is chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**cluster, "chief": ["localhost:3"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert is_chief(Fake()) is False  # with a chief task, worker 0 is not it


@pytest.mark.slow  # measured > 15 s; run with -m slow
def test_train_from_a_config_under_mirrored_strategy(config_file, tmp_path):
    config = mtk.load_config(config_file, ["training.epochs=1", "training.distribute=mirrored"])
    run = mtk.train(config, verbose=0)
    assert os.path.isdir(os.path.join(run, "model"))
    model, spec, _ = mtk.load_model(os.path.join(run, "model"))  # written under the strategy, loaded without
    assert set(model.output_names) == set(spec.group_names)

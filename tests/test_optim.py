"""RAdam against a NumPy transcription of Algorithm 2 in Liu et al. (ICLR 2020)."""

import math

import numpy as np
import pytest

import mtkeras as mtk
from mtkeras._compat import tf


def reference_radam(grad_fn, theta, steps, lr, beta_1=0.9, beta_2=0.999, eps=1e-7, threshold=5.0,
                    warmup_steps=0, total_steps=0, min_lr=0.0, weight_decay=0.0):
    """The published update rule, step by step, in float64.

    Keras keeps the learning rate in a float32 variable, so it is rounded the same way here.
    """
    lr = float(np.float32(lr))
    theta = np.array(theta, dtype=np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rho_inf = 2 / (1 - beta_2) - 1
    history = []
    for t in range(1, steps + 1):
        alpha = lr
        if warmup_steps:
            alpha = lr * min(1.0, t / warmup_steps)
        if total_steps and t > warmup_steps:
            progress = min(1.0, (t - warmup_steps) / (total_steps - warmup_steps))
            alpha = lr + (min_lr - lr) * progress
        g = grad_fn(theta)
        theta = theta - alpha * weight_decay * theta
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        m_hat = m / (1 - beta_1**t)
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        if rho_t > threshold:
            l_t = math.sqrt(1 - beta_2**t) / (np.sqrt(v) + eps)
            r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            theta = theta - alpha * r_t * m_hat * l_t
        else:
            theta = theta - alpha * m_hat
        history.append(theta.copy())
    return np.array(history)


A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]])
B = np.array([1.0, -2.0, 0.5])
START = [2.0, -1.0, 3.0]


def quadratic_grad(theta):
    return A @ theta - B


def run_radam(steps, **kwargs):
    variable = tf.Variable(np.array(START, np.float64))
    optimizer = mtk.RAdam(**kwargs)
    history = []
    for _ in range(steps):
        grad = tf.constant(quadratic_grad(variable.numpy()))
        optimizer.apply_gradients([(grad, variable)])
        history.append(variable.numpy().copy())
    return np.array(history), optimizer


@pytest.mark.parametrize(
    "options",
    [
        dict(lr=0.05),
        dict(lr=0.1, beta_1=0.8, beta_2=0.99, threshold=4.0),
        dict(lr=0.05, warmup_steps=10, total_steps=60, min_lr=0.001),
        dict(lr=0.05, weight_decay=0.1),
    ],
)
def test_matches_the_published_update_rule(options):
    steps = 60
    expected = reference_radam(quadratic_grad, START, steps, **options)
    keyword = dict(options)
    keyword["learning_rate"] = keyword.pop("lr")
    if "threshold" in keyword:
        keyword["rectify_threshold"] = keyword.pop("threshold")
    if "min_lr" in keyword:
        keyword["min_learning_rate"] = keyword.pop("min_lr")
    got, _ = run_radam(steps, **keyword)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # Both regimes were exercised: SGD-with-momentum steps first, rectified steps later.
    rho_inf = 2 / (1 - options.get("beta_2", 0.999)) - 1
    rho = [rho_inf - 2 * t * options.get("beta_2", 0.999) ** t / (1 - options.get("beta_2", 0.999) ** t)
           for t in (1, steps)]
    assert rho[0] <= options.get("threshold", 5.0) < rho[1]


def test_converges_on_a_toy_problem():
    history, optimizer = run_radam(400, learning_rate=0.05)
    solution = np.linalg.solve(A, B)
    assert np.abs(history[-1] - solution).max() < 1e-2
    assert int(optimizer.iterations.numpy()) == 400


def test_lr_multipliers_scale_matching_variables_only():
    fast = tf.Variable([1.0], name="head/kernel")
    slow = tf.Variable([1.0], name="encoder/kernel")
    optimizer = mtk.RAdam(learning_rate=0.1, lr_multipliers={"^head/": 10.0})
    optimizer.apply_gradients([(tf.constant([1.0]), fast), (tf.constant([1.0]), slow)])
    # First step is the un-rectified one: theta -= lr * m_hat = lr * g.
    np.testing.assert_allclose(1.0 - fast.numpy(), 10 * (1.0 - slow.numpy()), rtol=1e-6)


def test_sparse_gradients_are_applied():
    table = tf.Variable(np.ones((4, 2), np.float32))
    optimizer = mtk.RAdam(learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 3]))
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)
    optimizer.apply_gradients([(grad, table)])
    np.testing.assert_allclose(table.numpy()[[0, 2]], 1.0)
    np.testing.assert_allclose(table.numpy()[[1, 3]], 0.9, rtol=1e-6)


def test_config_round_trip_and_registration():
    optimizer = mtk.RAdam(learning_rate=3e-5, warmup_steps=10, total_steps=100, weight_decay=0.01,
                          lr_multipliers={"^topic/": 20.0})
    config = mtk.keras.optimizers.serialize(optimizer)
    assert config["registered_name"] == "mtkeras>RAdam"
    clone = mtk.keras.optimizers.deserialize(config)  # no custom_objects needed
    assert isinstance(clone, mtk.RAdam)
    for key in ("warmup_steps", "total_steps", "weight_decay", "lr_multipliers", "rectify_threshold"):
        assert clone.get_config()[key] == optimizer.get_config()[key]
    assert float(clone.learning_rate) == pytest.approx(3e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(beta_1=1.0), r"`beta_1` must be in \[0.0, 1.0\), received 1.0"),
        (dict(beta_2=-0.1), r"`beta_2` must be in \[0.0, 1.0\), received -0.1"),
        (dict(epsilon=0), r"`epsilon` must be > 0, received 0"),
        (dict(weight_decay=-1.0), r"`weight_decay` must be >= 0 or None, received -1.0"),
        (dict(warmup_steps=-1), r"`warmup_steps` must be an integer >= 0, received -1"),
        (dict(total_steps=2.5), r"`total_steps` must be an integer >= 0, received 2.5"),
        (dict(warmup_steps=10, total_steps=5), r"`total_steps`=5 must exceed `warmup_steps`=10"),
        (dict(min_learning_rate=-1), r"`min_learning_rate` must be >= 0, received -1"),
        (dict(lr_multipliers={"(": 2.0}), r"`lr_multipliers` key '\(' is not a regular expression"),
        (dict(lr_multipliers={"head": 0}), r"`lr_multipliers\['head'\]` must be a finite number > 0, received 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mtk.RAdam(**kwargs)

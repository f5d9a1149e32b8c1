"""The SGD update (params -= lr * grads) and end-to-end training with train_step."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import LOSS_NAMES, num_threads

DTYPE_PARAMS = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def _net_with_gradients(dtype, sizes=(20, 30, 10), seed=0):
    rng = np.random.default_rng(seed)
    net = vg.MLP(list(sizes), activation="tanh", dtype=dtype, seed=seed, sigma_b=0.1)
    X = rng.standard_normal((16, sizes[0])).astype(dtype)
    net.train_step(X, rng.integers(0, sizes[-1], 16), "cross_entropy")
    assert np.count_nonzero(net.grads) > net.n_params // 2
    return net


def test_sgd_step_is_exactly_params_minus_lr_times_grads_float64():
    # the documented update, with NumPy's two roundings (multiply, then subtract)
    net = _net_with_gradients(np.float64)
    old, grads = net.params.copy(), net.grads.copy()
    vg.optim.SGD(net, lr=0.37).step()
    want = old - 0.37 * grads
    mismatched = np.flatnonzero(net.params != want)
    assert mismatched.size == 0, (
        f"{mismatched.size} of {net.n_params} parameters differ from old - lr*grads, e.g. "
        f"index {mismatched[0]}: {net.params[mismatched[0]]!r} != {want[mismatched[0]]!r}")


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_sgd_step_matches_reference_sgd_step(dtype):
    net = _net_with_gradients(dtype)
    ref = R.ReferenceMLP.from_network(net)
    ref.grads[...] = net.grads
    vg.optim.SGD(net, lr=0.37).step()
    ref.sgd_step(0.37)
    np.testing.assert_array_equal(net.params, ref.params)


@pytest.mark.parametrize("lr", [1e-3, 0.37, 5.0])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_sgd_step_applies_params_minus_lr_times_grads_to_rounding(dtype, lr):
    net = _net_with_gradients(dtype)
    old, grads = net.params.astype(np.float64), net.grads.astype(np.float64)
    opt = vg.optim.SGD(net, lr=lr)
    assert opt.lr == lr
    opt.step()
    eps = np.finfo(dtype).eps
    want = old - np.float64(dtype(lr)) * grads
    # within one rounding of the product and one of the difference
    err = np.abs(net.params.astype(np.float64) - want)
    assert np.all(err <= eps * (np.abs(want) + np.abs(lr * grads))), np.max(err)


def test_sgd_step_is_bit_identical_at_1_and_2_threads_on_a_large_buffer():
    # the update is split across threads at 2 threads when the buffer is large (2**19
    # parameters in the first release, 2**24 now); float32 keeps this test's memory at ~350 MB
    dtype = np.float32
    rng = np.random.default_rng(1)
    net = vg.MLP([4096, 4096], dtype=dtype, seed=1)
    assert net.n_params >= 2**24
    start = net.params.copy()
    net.grads[...] = rng.standard_normal(net.n_params, dtype=dtype)
    with num_threads(1):
        vg.optim.SGD(net, 0.01).step()
    serial = net.params.copy()
    net.params[...] = start
    with num_threads(2):
        vg.optim.SGD(net, 0.01).step()
    np.testing.assert_array_equal(net.params, serial)
    # and it is the update: check every parameter, in chunks to bound memory
    eps = np.finfo(dtype).eps
    lr = np.float64(dtype(0.01))
    for k in range(0, net.n_params, 2**22):
        sl = slice(k, k + 2**22)
        g = net.grads[sl].astype(np.float64)
        want = start[sl].astype(np.float64) - lr * g
        err = np.abs(net.params[sl].astype(np.float64) - want)
        assert np.all(err <= eps * (np.abs(want) + np.abs(lr * g))), (k, np.max(err))


def test_zero_grad_sets_every_gradient_to_zero_and_step_then_changes_nothing():
    net = _net_with_gradients(np.float64)
    opt = vg.optim.SGD(net, lr=0.1)
    opt.zero_grad()
    np.testing.assert_array_equal(net.grads, 0)
    before = net.params.copy()
    opt.step()
    np.testing.assert_array_equal(net.params, before)
    assert repr(opt) == "SGD(lr=0.1)"


def test_train_step_without_optimizer_computes_gradients_but_leaves_parameters():
    rng = np.random.default_rng(2)
    net = vg.MLP([5, 8, 3], seed=2, dtype="float64")
    params = net.params.copy()
    X = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, 6)
    value = net.train_step(X, y, "cross_entropy")
    np.testing.assert_array_equal(net.params, params)
    assert np.any(net.grads != 0)
    out = net.forward(X)
    want, dout = vg.losses.cross_entropy(out, y)
    assert value == want
    net.backward(dout)
    grads = net.grads.copy()
    net.train_step(X, y, "cross_entropy")
    np.testing.assert_array_equal(net.grads, grads)


def test_train_step_accepts_a_loss_function():
    rng = np.random.default_rng(3)
    net = vg.MLP([5, 8, 3], seed=3, dtype="float64")
    X, t = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    assert net.train_step(X, t, vg.losses.mse) == net.train_step(X, t, "mse")


def _easy_problem(loss, dtype, rng, n=128, d=8, k=3):
    """Separable Gaussian blobs (classification) or a linear map (regression)."""
    centres = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    X = (centres[y] + 0.5 * rng.standard_normal((n, d))).astype(dtype)
    if loss == "cross_entropy":
        return X, y
    if loss == "binary_cross_entropy":
        return X, np.eye(k, dtype=dtype)[y]
    return X, (X @ rng.standard_normal((d, k)) / np.sqrt(d)).astype(dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_sgd_training_decreases_the_loss(loss, dtype, threads):
    rng = np.random.default_rng(4)
    X, target = _easy_problem(loss, dtype, rng)
    net = vg.MLP([8, 32, 32, 3], activation="relu", init="he_normal", dtype=dtype, seed=4)
    lr = {"cross_entropy": 0.05, "mse": 0.01, "binary_cross_entropy": 0.5}[loss]
    opt = vg.optim.SGD(net, lr=lr)
    with num_threads(threads):
        losses = [net.train_step(X, target, loss, opt) for _ in range(50)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    if loss == "cross_entropy":
        accuracy = np.mean(np.argmax(net.predict(X), axis=1) == target)
        assert accuracy > 0.9


def test_sgd_training_of_deep_network_matches_reference_training():
    rng = np.random.default_rng(5)
    X, y = _easy_problem("cross_entropy", np.float64, rng)
    net = vg.MLP([8, 16, 16, 16, 16, 3], activation="tanh", init="orthogonal", dtype="float64",
                 seed=5)
    ref = R.ReferenceMLP.from_network(net)
    opt = vg.optim.SGD(net, lr=0.1)
    for step in range(30):
        value = net.train_step(X, y, "cross_entropy", opt)
        want = ref.train_step(X, y, "cross_entropy", lr=0.1)
        assert value == pytest.approx(want, rel=1e-9), f"step {step}"
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-8, atol=1e-10)

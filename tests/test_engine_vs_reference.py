"""The compiled engine computes what the NumPy reference computes: outputs, loss, parameter
gradients and dL/dX, for every activation, loss, dtype and thread count, including sizes where
the elementwise work is split across OpenMP threads."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import (ACTIVATION_NAMES, DTYPES, LOSS_NAMES, assert_close, compare_passes,
                     engine_pass, make_target, num_threads, reference_pass)

# every activation by name, plus non-default parameters
ACTIVATION_SPECS = [pytest.param(name, id=name) for name in ACTIVATION_NAMES] + [
    pytest.param(vg.Activation("leaky_relu", slope=0.2), id="leaky_relu-slope0.2"),
    pytest.param(vg.Activation("leaky_relu", slope=-0.5), id="leaky_relu-slope-0.5"),
    pytest.param(vg.Activation("elu", alpha=0.5), id="elu-alpha0.5"),
    pytest.param(vg.Activation("elu", alpha=1.7), id="elu-alpha1.7"),
]
DTYPE_PARAMS = [pytest.param(dt, id=np.dtype(dt).name) for dt in DTYPES]


def _data(sizes, batch, loss, dtype, seed):
    rng = np.random.default_rng(seed)
    X = (1.5 * rng.standard_normal((batch, sizes[0]))).astype(dtype)
    return X, make_target(loss, batch, sizes[-1], dtype, rng)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_SPECS)
def test_engine_matches_reference_forward_loss_backward(activation, loss, dtype, threads):
    sizes = [7, 33, 16, 5]
    net = vg.MLP(sizes, activation=activation, init="glorot_normal", dtype=dtype, seed=3,
                 sigma_b=0.3)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data(sizes, 9, loss, dtype, seed=4)
    with num_threads(threads):
        eng = engine_pass(net, X, loss, target)
    compare_passes(eng, reference_pass(ref, X, loss, target), dtype,
                   f"{activation} {loss} {threads} threads")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "identity", "softplus"])
def test_backward_without_input_grad_matches_reference_and_returns_none(activation, dtype,
                                                                         threads):
    sizes = [6, 20, 11, 9, 4]
    net = vg.MLP(sizes, activation=activation, dtype=dtype, seed=5, sigma_b=0.1)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data(sizes, 13, "cross_entropy", dtype, seed=6)
    with num_threads(threads):
        eng = engine_pass(net, X, "cross_entropy", target, input_grad=False)
    assert eng["dX"] is None
    compare_passes(eng, reference_pass(ref, X, "cross_entropy", target, input_grad=False),
                   dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_mixed_activations_per_layer_match_reference(dtype, threads):
    acts = ["tanh", vg.Activation("leaky_relu", slope=0.1), "identity", "gelu", "hard_tanh"]
    sizes = [5, 12, 9, 10, 8, 7, 3]
    net = vg.MLP(sizes, activation=acts, dtype=dtype, seed=8, sigma_b=0.5)
    assert [a.name for a in net.activations] == [
        "tanh", "leaky_relu", "identity", "gelu", "hard_tanh", "identity"]
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data(sizes, 11, "mse", dtype, seed=9)
    with num_threads(threads):
        eng = engine_pass(net, X, "mse", target)
    compare_passes(eng, reference_pass(ref, X, "mse", target), dtype)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_single_layer_network_matches_reference(dtype):
    net = vg.MLP([4, 3], dtype=dtype, seed=1, sigma_b=1.0)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data([4, 3], 5, "cross_entropy", dtype, seed=2)
    compare_passes(engine_pass(net, X, "cross_entropy", target),
                   reference_pass(ref, X, "cross_entropy", target), dtype)


# ----------------------------------------------------------------------------- large sizes
# The compiled core splits a layer's elementwise work (bias + activation, activation derivative
# + bias gradient) across OpenMP threads by column blocks when batch * width reaches a
# threshold (transcendental activations: 2**14 in the first release, 2**19 now; cheap ones:
# 2**17, then 2**22) and width >= 16 * threads.  The sizes below reach the larger thresholds.

TRANSC_PARALLEL = 2**19
CHEAP_PARALLEL = 2**22
CHEAP = ("identity", "relu", "leaky_relu", "hard_tanh")


def _run_threads(net, X, loss, target, threads, blas=None):
    with num_threads(threads, blas=blas):
        return engine_pass(net, X, loss, target)


def _assert_bit_identical(a, b, what):
    for key in ("out", "dout", "grads", "dX"):
        assert np.array_equal(a[key], b[key]), f"{what}: {key} differs between thread counts"
    assert a["loss"] == b["loss"], what


def _assert_bias_grads_bit_identical(net, a, b, what):
    for l, bias_grad in enumerate(net.bias_grads):
        off = bias_grad.__array_interface__["data"][0] - net.grads.__array_interface__["data"][0]
        sl = slice(off // net.dtype.itemsize, off // net.dtype.itemsize + bias_grad.size)
        assert np.array_equal(a["grads"][sl], b["grads"][sl]), f"{what}: bias grad of layer {l}"


def _parallel_case(sizes, batch, activation, dtype, loss, seed):
    net = vg.MLP(sizes, activation=activation, init="glorot_normal", dtype=dtype, seed=seed,
                 sigma_b=0.2)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data(sizes, batch, loss, dtype, seed=seed + 1)
    expected = reference_pass(ref, X, loss, target, single_thread_blas=True)
    serial = _run_threads(net, X, loss, target, 1)
    parallel = _run_threads(net, X, loss, target, 2)
    # BLAS on one thread in both: only the OpenMP split differs, so every result is
    # bit-identical, bias gradients included
    parallel_blas1 = _run_threads(net, X, loss, target, 2, blas=1)
    compare_passes(serial, expected, dtype, f"{activation} 1 thread")
    compare_passes(parallel, expected, dtype, f"{activation} 2 threads")
    _assert_bit_identical(serial, parallel_blas1, f"{activation}")
    _assert_bias_grads_bit_identical(net, serial, parallel_blas1, f"{activation}")


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("activation", ACTIVATION_SPECS[:len(ACTIVATION_NAMES)])
def test_parallel_elementwise_path_matches_reference_and_serial(activation, dtype):
    # two 512-wide hidden layers at batch 1024 (2**19 elements each); the narrow layer between
    # them keeps the matrix products cheap
    sizes = [16, 512, 24, 512, 10]
    batch = 1024
    assert batch * 512 >= TRANSC_PARALLEL
    _parallel_case(sizes, batch, activation, dtype, "cross_entropy", seed=11)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("activation", CHEAP)
def test_parallel_cheap_elementwise_path_matches_reference_and_serial(activation, dtype):
    sizes = [8, 4096, 8]
    batch = 1024
    assert batch * 4096 >= CHEAP_PARALLEL
    _parallel_case(sizes, batch, activation, dtype, "mse", seed=17)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("activation", ["relu", "hard_tanh", "identity", "tanh", "gelu"])
def test_parallel_path_with_odd_widths_and_wide_output_matches_reference(activation, dtype):
    # column blocks start on multiples of 16: width 150 splits into [0, 64) and [64, 150);
    # widths 40 and 37 (into [0, 16) and [16, w)) split at the smaller thresholds
    sizes = [24, 40, 150, 37]
    batch = 3600
    assert batch * 150 >= TRANSC_PARALLEL
    _parallel_case(sizes, batch, activation, dtype, "mse", seed=13)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_small_network_results_bit_identical_at_1_and_2_threads(dtype):
    # small GEMMs run single-threaded in BLAS; at 2 threads the backward pass may pipeline
    # layers across threads, which must not change a single bit
    sizes = [9, 17, 33, 12, 6]
    for activation in ACTIVATION_NAMES:
        net = vg.MLP(sizes, activation=activation, dtype=dtype, seed=15, sigma_b=0.2)
        X, target = _data(sizes, 10, "cross_entropy", dtype, seed=16)
        a = _run_threads(net, X, "cross_entropy", target, 1)
        for _ in range(3):
            b = _run_threads(net, X, "cross_entropy", target, 2)
            _assert_bit_identical(a, b, activation)


# ----------------------------------------------------------------------------- train_step

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_train_step_matches_reference_train_step(loss, dtype, threads):
    sizes = [6, 14, 10, 4]
    net = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=21, sigma_b=0.1)
    ref = R.ReferenceMLP.from_network(net)
    opt = vg.optim.SGD(net, lr=0.3)
    with num_threads(threads):
        for step in range(5):
            X, target = _data(sizes, 8, loss, dtype, seed=100 + step)
            value = net.train_step(X, target, loss, opt)
            ref_value = ref.train_step(X, target, loss, lr=0.3)
            rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
            assert value == pytest.approx(ref_value, rel=rtol), f"step {step}"
    assert_close(net.params, ref.params, dtype, "parameters after 5 SGD steps")


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_forward_accepts_batch_sizes_in_any_order_and_matches_reference(dtype):
    sizes = [5, 8, 3]
    net = vg.MLP(sizes, activation="silu", dtype=dtype, seed=2)
    ref = R.ReferenceMLP.from_network(net)
    rng = np.random.default_rng(3)
    for batch in [4, 1, 17, 4, 2, 9, 1, 17, 30, 4]:
        X = rng.standard_normal((batch, 5)).astype(dtype)
        y = rng.integers(0, 3, batch)
        compare_passes(engine_pass(net, X, "cross_entropy", y),
                       reference_pass(ref, X, "cross_entropy", y), dtype, f"batch {batch}")


def test_predict_returns_writable_copy_equal_to_forward(rng):
    net = vg.MLP([4, 6, 2], dtype="float64", seed=0)
    X = rng.standard_normal((3, 4))
    p = net.predict(X)
    assert p.flags.writeable
    np.testing.assert_array_equal(p, net.forward(X))
    p[...] = 0          # does not touch the network's buffers
    assert np.any(net.forward(X) != 0)


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_deep_narrow_network_backward_is_deterministic_across_threads_and_repeats(dtype,
                                                                                 input_grad):
    # 40 small layers: at 2 threads the backward pass may overlap layers across threads; run it
    # many times and compare every bit with the serial pass and the reference
    sizes = [12] + [16] * 39 + [5]
    net = vg.MLP(sizes, activation="tanh", init="orthogonal", dtype=dtype, seed=31, sigma_b=0.1)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _data(sizes, 8, "cross_entropy", dtype, seed=32)
    with num_threads(1):
        serial = engine_pass(net, X, "cross_entropy", target, input_grad=input_grad)
    compare_passes(serial, reference_pass(ref, X, "cross_entropy", target,
                                          input_grad=input_grad), dtype)
    with num_threads(2):
        for repeat in range(25):
            again = engine_pass(net, X, "cross_entropy", target, input_grad=input_grad)
            for key in ("out", "grads") + (("dX",) if input_grad else ()):
                assert np.array_equal(again[key], serial[key]), f"repeat {repeat}: {key}"


@pytest.mark.parametrize("threads", [1, 2])
def test_forward_and_backward_leave_their_inputs_unchanged_and_accept_read_only_inputs(threads):
    rng = np.random.default_rng(40)
    net = vg.MLP([6, 9, 7, 4], activation="selu", dtype="float64", seed=40)
    ref = R.ReferenceMLP.from_network(net)
    X = rng.standard_normal((5, 6))
    dout = rng.standard_normal((5, 4))
    X_copy, dout_copy = X.copy(), dout.copy()
    X.flags.writeable = False
    dout.flags.writeable = False
    with num_threads(threads):
        out = net.forward(X).copy()
        dX = net.backward(dout).copy()
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    assert_close(out, ref.forward(X), np.float64, "output")
    assert_close(dX, ref.backward(dout), np.float64, "dX")
    assert_close(net.grads, ref.grads, np.float64, "grads")

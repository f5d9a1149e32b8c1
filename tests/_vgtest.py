"""Shared helpers for the vgcore test suite (imported by the test modules; conftest.py puts
this folder on sys.path).

The suite checks the compiled engine against the pure-NumPy reference (:mod:`vgcore.reference`)
and against independent definitions.  Everything here is small and deterministic.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest
import threadpoolctl

import vgcore as vg
from vgcore.core import reference as R

ACTIVATION_NAMES = tuple(vg.ACTIVATIONS)
LOSS_NAMES = ("cross_entropy", "mse", "binary_cross_entropy")
DTYPES = (np.float32, np.float64)

# Engine-vs-reference tolerances: rtol on each element, plus an atol scaled by the largest
# |expected| of the array (sums of products of mixed sign lose relative accuracy elementwise).
TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol_scale=1e-4),
    np.dtype(np.float64): dict(rtol=1e-10, atol_scale=1e-11),
}

# Activations whose derivative jumps (kinks), with where the kinks are.
KINKS = {
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "elu": (0.0,),
    "selu": (0.0,),
    "hard_tanh": (-1.0, 1.0),
}


def assert_close(actual, expected, dtype, what="", scale=None):
    """Compare with the per-dtype tolerance; ``scale`` overrides the atol reference scale."""
    tol = TOL[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values in the engine's result"
    ref_scale = float(np.max(np.abs(expected))) if scale is None else float(scale)
    atol = tol["atol_scale"] * max(ref_scale, 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=atol, err_msg=what)


def make_target(loss, batch, n_out, dtype, rng):
    """Targets for a loss: class labels (int64), real targets, or probabilities in [0, 1]."""
    if loss == "cross_entropy":
        return rng.integers(0, n_out, batch)
    if loss == "mse":
        return rng.standard_normal((batch, n_out)).astype(dtype)
    if loss == "binary_cross_entropy":
        t = rng.random((batch, n_out))
        t[: batch // 2] = np.round(t[: batch // 2])     # hard labels and soft labels
        return t.astype(dtype)
    raise ValueError(loss)


def engine_pass(net, X, loss, target, input_grad=True):
    """forward, loss, backward on the compiled network; copies of everything."""
    out = net.forward(X)
    value, dout = vg.losses.get(loss)(out, target)
    dX = net.backward(dout, input_grad=input_grad)
    return dict(out=out.copy(), loss=value, dout=dout.copy(), grads=net.grads.copy(),
                dX=None if dX is None else dX.copy())


def reference_pass(ref, X, loss, target, input_grad=True, single_thread_blas=False):
    """forward, loss, backward on the NumPy reference (optionally with BLAS on one thread, which
    is faster for the large cases on a busy 2-core machine)."""
    ctx = (threadpoolctl.threadpool_limits(limits=1, user_api="blas") if single_thread_blas
           else contextlib.nullcontext())
    with ctx:
        out = ref.forward(X)
        value, dout = getattr(R, loss)(out, target)
        dX = ref.backward(dout, input_grad=input_grad)
    return dict(out=out.copy(), loss=value, dout=np.asarray(dout).copy(),
                grads=ref.grads.copy(), dX=None if dX is None else dX.copy())


def compare_passes(eng, ref, dtype, label=""):
    assert_close(eng["out"], ref["out"], dtype, f"{label} output")
    loss_rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    assert eng["loss"] == pytest.approx(ref["loss"], rel=loss_rtol, abs=loss_rtol), \
        f"{label} loss"
    assert_close(eng["dout"], ref["dout"], dtype, f"{label} dL/dout")
    assert_close(eng["grads"], ref["grads"], dtype, f"{label} parameter gradients")
    if ref["dX"] is not None:
        assert_close(eng["dX"], ref["dX"], dtype, f"{label} dL/dX")


@contextlib.contextmanager
def num_threads(n, blas=None):
    """Run with ``vg.set_num_threads(n)``; restore the previous vgcore and BLAS thread counts.

    ``blas`` additionally pins BLAS to that many threads (so only the OpenMP split changes).
    """
    previous = vg.get_num_threads()
    saved = threadpoolctl.threadpool_limits(limits=None, user_api="blas")  # records the state
    try:
        vg.set_num_threads(n)
        if blas is not None:
            threadpoolctl.threadpool_limits(limits=blas, user_api="blas")
        yield
    finally:
        vg.set_num_threads(previous)
        saved.restore_original_limits()


def identity_network(width, activation, dtype):
    """A [width, width, width] network with identity weights and zero biases, so that
    ``forward(X) == phi(X)`` and ``backward(ones) == phi'(X)`` exactly."""
    net = vg.MLP([width, width, width], activation=activation, dtype=dtype, seed=0)
    for w in net.weights:
        w[...] = np.eye(width)
    for b in net.biases:
        b[...] = 0
    return net


def execute_or_crash(config, threads=1):
    """vgcore.sweep.execute, except that a run with seed 99 kills its process (a worker that
    dies, as from the kernel's out-of-memory killer): for the sweep executors' tests."""
    import os
    if config.get("seed") == 99:
        os._exit(3)
    from vgcore.experiments.sweep import runner
    return runner._execute(config, threads)


def check_reference_case(sizes, batch, activation, loss, dtype, threads, label):
    """One pass of a glorot-normal network (seed 3, sigma_b 0.2) on a fixed batch, on the
    engine at ``threads`` threads, against the reference: outputs, loss and gradients."""
    net = vg.MLP(sizes, activation=activation, init="glorot_normal", dtype=dtype, seed=3,
                 sigma_b=0.2)
    ref = R.ReferenceMLP.from_network(net)
    rng = np.random.default_rng(5)
    X = (1.5 * rng.standard_normal((batch, sizes[0]))).astype(dtype)
    target = make_target(loss, batch, sizes[-1], np.dtype(dtype), rng)
    with num_threads(threads):
        eng = engine_pass(net, X, loss, target)
    compare_passes(eng, reference_pass(ref, X, loss, target), np.dtype(dtype), label)


def check_central_differences(net, X, loss, target, rng, n_params=40, n_inputs=8,
                              rel_tol=1e-6, h=1e-4):
    """The engine's float64 gradients (parameters and input) at ``n_params`` and ``n_inputs``
    random coordinates against the fourth-order central stencil, relative error with a floor
    at 1e-3 of the gradient's scale (smooth activations: no kink handling)."""
    def f(Xv):
        return vg.losses.get(loss)(net.forward(Xv), target)[0]

    _, dout = vg.losses.get(loss)(net.forward(X), target)
    dX = net.backward(dout).copy()
    grads = net.grads.copy()
    stencil = ((2 * h, -1.0), (h, 8.0), (-h, -8.0), (-2 * h, 1.0))
    gscale = np.max(np.abs(grads))
    for i in rng.choice(net.n_params, size=n_params, replace=False):
        old = net.params[i]
        fd = 0.0
        for s, w in stencil:
            net.params[i] = old + s
            fd += w * f(X)
        net.params[i] = old
        fd /= 12 * h
        assert abs(fd - grads[i]) <= rel_tol * max(abs(fd), abs(grads[i]), 1e-3 * gscale), \
            ("param", int(i), fd, grads[i])
    xscale = np.max(np.abs(dX))
    for flat in rng.choice(X.size, size=n_inputs, replace=False):
        idx = np.unravel_index(flat, X.shape)
        fd = 0.0
        for s, w in stencil:
            Xs = X.copy()
            Xs[idx] += s
            fd += w * f(Xs)
        fd /= 12 * h
        assert abs(fd - dX[idx]) <= rel_tol * max(abs(fd), abs(dX[idx]), 1e-3 * xscale), \
            ("X", idx, fd, dX[idx])


def vgcore_command(*args):
    """The command line of ``python -m vgcore *args`` for a child the test interrupts with
    SIGINT, with Python's KeyboardInterrupt handler installed whatever the child inherits: a
    shell that runs the tests in the background (``cmd &`` without job control) starts them
    with SIGINT ignored, and Python then installs no handler of its own."""
    code = ("import runpy, signal, sys; "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.argv[0] = 'vgcore'; "
            "runpy.run_module('vgcore', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code, *map(str, args)]

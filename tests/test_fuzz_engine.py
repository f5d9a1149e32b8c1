"""Bounded fuzzing of the compiled core (``vgcore._engine``), driven by hypothesis.

atheris is not used (not installed); hypothesis generates the inputs instead, with a fixed
budget so that the whole file runs in a few seconds:

* the compiled helpers that validate nothing (``all_finite``, ``scan_values``,
  ``flush_subnormals_into``, ``norm2``, ``first_bad_label``, ``softmax_cross_entropy``,
  ``mean_squared_error``, ``binary_cross_entropy_logits``, ``sgd_step``) are called
  directly, but only with arrays that the public validation
  (``vgcore._validation.check_float_matrix``) accepts, over the whole float range
  (subnormals, +-0, values near the float maximum, NaN and Inf where the helper is meant to
  see them), and checked against NumPy in float64;
* every activation's compiled forward and derivative, over the whole float range, through a
  network with identity weights (``forward(X) == phi(X)``, ``backward(1) == phi'(X)``);
* random sequences of valid and invalid calls through the public API (a hypothesis state
  machine): forward, backward, train_step, optimiser steps, measurements on and off,
  ``gradient_flow``, train/eval mode, thread counts, on random architectures (batch norm,
  layer norm, residual blocks, dropout, float32 and float64).  A twin network receives only
  the valid calls: after every step both must be bit-identical (rejected calls change nothing,
  results are deterministic), and plain networks must match the NumPy reference.

Deterministic: ``derandomize=True``, no example database.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import vgcore as vg
from vgcore import _engine
from vgcore.core import reference as R
from vgcore.core.activations import max_derivative
from vgcore.core._validation import check_float_matrix

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck),
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                report_multiple_bugs=False)

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def float_arrays(dtype, *, finite=True, max_rows=24, max_cols=40, bound=None):
    """2-D C-contiguous arrays of ``dtype`` over the whole float range (or |x| <= bound)."""
    width = 32 if dtype == np.float32 else 64
    if bound is not None:
        bound = float(np.asarray(bound, dtype))      # exactly representable in dtype
    if bound is None:
        elements = st.floats(width=width, allow_nan=not finite, allow_infinity=not finite,
                             allow_subnormal=True)
    else:
        elements = st.floats(-bound, bound, width=width, allow_subnormal=True)
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return hnp.arrays(dtype, shapes, elements=elements)


def accepted(x, finite=True):
    """Only call a compiled helper with what the public validation lets through."""
    return check_float_matrix(x, "x", x.dtype, finite=finite)


# ========================================================================= direct helpers

@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_all_finite_agrees_with_numpy(data, dtype):
    x = accepted(data.draw(float_arrays(dtype, finite=False)), finite=False)
    if data.draw(st.booleans()):          # one special value at a chosen place (loop tails)
        x = x.copy()
        x.flat[data.draw(st.integers(0, x.size - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf, -0.0]))
    assert _engine.all_finite(x) == bool(np.isfinite(x).all())


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_scan_values_agrees_with_numpy(data, dtype):
    """``scan_values``: (every element finite, some element subnormal), in one pass; and
    ``flush_subnormals_into``, which writes the subnormals as +0."""
    x = accepted(data.draw(float_arrays(dtype, finite=False)), finite=False)
    if data.draw(st.booleans()):          # one special value at a chosen place (loop tails)
        x = x.copy()
        tiny = np.finfo(dtype).tiny
        x.flat[data.draw(st.integers(0, x.size - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf, -0.0, tiny, -tiny,
                             np.finfo(dtype).smallest_subnormal, -tiny / 2]))
    subnormal = (np.abs(x) < np.finfo(dtype).tiny) & (x != 0)
    assert _engine.scan_values(x) == (bool(np.isfinite(x).all()), bool(subnormal.any()))
    out = np.full_like(x, 7.0)
    _engine.flush_subnormals_into(x, out)           # subnormals +0, the rest bit for bit
    want = np.where(subnormal, dtype(0), x)
    assert np.array_equal(out.view(np.uint8), want.view(np.uint8))
    _engine.flush_subnormals_into(x, x)             # in place
    assert np.array_equal(x.view(np.uint8), want.view(np.uint8))


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_norm2_agrees_with_numpy(data, dtype):
    """``norm2``: "Squared Euclidean norm of a contiguous float32/float64 array, in double".
    For float32 the squares are summed in 64 float32 lanes (vg_sumsq), only the last 8 partial
    sums in double: any |x| > 1.8e19 overflows to inf although the float64 result is finite.
    (The tolerance, 1e-6, accepts float32-level rounding; the overflow is what fails.)"""
    x = accepted(data.draw(float_arrays(dtype, max_rows=12, max_cols=24)))
    got = _engine.norm2(x)
    with np.errstate(over="ignore"):
        want = float(np.sum(np.square(x.astype(np.float64))))
    if np.isinf(want):
        assert np.isinf(got)
    else:
        rel = 1e-6 if dtype == np.float32 else 1e-12
        assert got == pytest.approx(want, rel=rel, abs=1e-300), \
            f"norm2 of an array with max |x| = {np.abs(x).max()}"


def test_clip_norm_of_huge_float32_gradients_clips_instead_of_zeroing_the_step():
    """Exploding gradients are what clip_norm is for.  With float32 gradients of 1e20 the
    global norm (``_engine.norm2``, float32 squares) is inf, so the scale clip_norm / (inf +
    1e-6) is 0: the step does nothing, and last_grad_norm reports inf instead of ~1e21."""
    net = vg.MLP([4, 5, 3], dtype="float32", seed=0)
    X = np.ones((2, 4), np.float32)
    net.forward(X)
    net.backward(np.ones((2, 3), np.float32))
    net.grads[...] = 1e20
    before = net.params.copy()
    opt = vg.optim.SGD(net, lr=0.1, clip_norm=1.0)
    opt.step()
    true_norm = 1e20 * np.sqrt(net.grads.size)
    assert opt.last_grad_norm == pytest.approx(true_norm, rel=1e-6), opt.last_grad_norm
    step = before - net.params
    assert np.linalg.norm(step.astype(np.float64)) == pytest.approx(0.1, rel=1e-3), (
        "the clipped step should have norm lr * clip_norm = 0.1")


@FUZZ
@given(labels=hnp.arrays(np.int64, st.integers(1, 200),
                         elements=st.one_of(st.integers(0, 9), st.integers(-2**63, 2**63 - 1))),
       n_classes=st.integers(1, 12))
def test_first_bad_label_agrees_with_numpy(labels, n_classes):
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    assert _engine.first_bad_label(labels, n_classes) == (bad[0] if bad.size else -1)


def _xent64(z, y):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(z.shape[0])
    loss = float(np.sum((m[:, 0] + np.log(s[:, 0]) - z[rows, y]) / z.shape[0]))
    g = e / s
    g[rows, y] -= 1
    return loss, g / z.shape[0]


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES), alias=st.booleans())
def test_softmax_cross_entropy_helper_agrees_with_float64(data, dtype, alias):
    # float64 logits up to max/64: the mean of the per-row losses (up to 2 |z|) stays finite
    bound = None if dtype == np.float32 else float(np.finfo(dtype).max) / 64
    z = accepted(data.draw(float_arrays(dtype, max_rows=12, max_cols=12, bound=bound)))
    n, c = z.shape
    y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    want_loss, want_g = _xent64(z, y)
    z_in = z.copy()
    g = z_in if alias else np.empty_like(z)         # grad_out may be the logits themselves
    loss = _engine.softmax_cross_entropy(z_in, y, g)
    scale = max(1.0, float(np.max(np.abs(z.astype(np.float64)))))
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert loss == pytest.approx(want_loss, rel=TOL[np.dtype(dtype)],
                                 abs=TOL[np.dtype(dtype)] * scale)
    np.testing.assert_allclose(g, want_g, rtol=0, atol=4 * TOL[np.dtype(dtype)] / n)


@pytest.mark.parametrize("n", [1, 16, 192])
def test_loss_means_of_huge_finite_terms_stay_finite(n):
    """Each term is scaled by 1/n before the sum (found by the fuzz test below: 16 float64
    logits of max/4 summed to Inf before the division)."""
    b = float(np.finfo(np.float64).max) / 4
    g = np.empty((n, 1))
    loss = _engine.binary_cross_entropy_logits(np.full((n, 1), b), np.zeros((n, 1)), g)
    assert loss == pytest.approx(b, rel=1e-12)
    loss = _engine.mean_squared_error(np.full((n, 1), 1e154), np.zeros((n, 1)), g)
    assert loss == pytest.approx(1e308, rel=1e-12)
    logits = np.zeros((n, 2))
    logits[:, 0] = b
    g2 = np.empty_like(logits)
    loss = _engine.softmax_cross_entropy(logits, np.ones(n, np.int64), g2)
    assert loss == pytest.approx(b, rel=1e-12)


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_mse_and_bce_helpers_agree_with_float64(data, dtype):
    # |values| <= max/4: p - t stays finite in the array's dtype (the reference's semantics:
    # the difference is taken in the array's dtype, the squares are summed in float64)
    bound = float(np.finfo(dtype).max) / 4
    p = accepted(data.draw(float_arrays(dtype, max_rows=12, max_cols=16, bound=bound)))
    t = data.draw(hnp.arrays(dtype, p.shape, elements=st.floats(
        -bound, bound, width=32 if dtype == np.float32 else 64)))
    g = np.empty_like(p)
    with np.errstate(over="ignore"):
        loss = _engine.mean_squared_error(p, accepted(t), g)
        d = (p - t).astype(np.float64)
        want = float(np.sum(d * d / d.size))
    assert loss == pytest.approx(want, rel=1e-12) or (np.isinf(want) and np.isinf(loss))
    np.testing.assert_allclose(g, 2 * (p.astype(np.float64) - t) / p.size,
                               rtol=TOL[np.dtype(dtype)],
                               atol=4 * float(np.finfo(dtype).smallest_subnormal))

    z = p
    targets = accepted(np.abs(t) / (np.abs(t).max() + 1) if t.size else t)
    targets = targets.astype(dtype)
    loss = _engine.binary_cross_entropy_logits(z, targets, g)
    z64 = z.astype(np.float64)
    want = float(np.sum((np.logaddexp(0.0, z64) - z64 * targets) / z64.size))
    assert np.isfinite(loss)
    assert loss == pytest.approx(want, rel=TOL[np.dtype(dtype)],
                                 abs=TOL[np.dtype(dtype)] * max(1.0, float(np.abs(z64).max())))
    sig = 0.5 * (1 + np.tanh(0.5 * z64))
    np.testing.assert_allclose(g, (sig - targets) / z.size, rtol=0,
                               atol=4 * TOL[np.dtype(dtype)] / z.size)


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES),
       lr=st.floats(1e-8, 1e3, allow_subnormal=False))
def test_sgd_step_helper_is_bit_identical_to_numpy(data, dtype, lr):
    bound = float(np.asarray(float(np.finfo(dtype).max) ** 0.5 / 2, dtype))
    p = accepted(data.draw(float_arrays(dtype, bound=bound)))
    g = data.draw(hnp.arrays(dtype, p.shape, elements=st.floats(
        -bound, bound, width=32 if dtype == np.float32 else 64)))
    want = p - dtype(lr) * g
    got = p.copy()
    _engine.sgd_step(got.ravel(), g.ravel(), lr)
    np.testing.assert_array_equal(got, want)


# ====================================================== activations over the float range

ACTIVATIONS = [vg.Activation(n) for n in vg.ACTIVATIONS] + [
    vg.Activation("leaky_relu", slope=0.3), vg.Activation("elu", alpha=0.25)]


def _identity_net(width, act, dtype, measure, flush=True):
    net = vg.MLP([width, width, width], activation=act, dtype=dtype, seed=0, measure=measure,
                 flush_subnormals=flush)
    for w in net.weights:
        w[...] = np.eye(width)
    for b in net.biases:
        b[...] = 0
    return net


@FUZZ
@given(data=st.data(), act=st.sampled_from(ACTIVATIONS), dtype=st.sampled_from(DTYPES),
       measure=st.booleans(), flush=st.booleans())
def test_compiled_activations_over_the_whole_float_range(data, act, dtype, measure, flush):
    """phi(x) and phi'(x) of the C kernels (polynomial exp, branch-free loops, vectorised
    with remainders) against the NumPy reference, for any finite x whose phi(x) is finite, and
    for x in the range where the activations bend and saturate (|x| <= 40), which the whole
    float range almost never samples."""
    # half the float max: selu (x 1.05) and the identity stay representable
    bound = data.draw(st.sampled_from([float(np.finfo(dtype).max) / 2, 40.0]))
    X = accepted(data.draw(float_arrays(dtype, max_rows=6, max_cols=37, bound=bound)))
    net = _identity_net(X.shape[1], act, dtype, measure, flush)
    X64 = X.astype(np.float64)
    if flush:       # the pre-activation h = X I is written flushed: a subnormal x counts as 0
        X64[np.abs(X64) < float(np.finfo(dtype).tiny)] = 0.0
    with np.errstate(all="ignore"):
        out = net.forward(X).copy()
        d = net.backward(np.ones_like(X)).copy()
        want = R.activation_forward(act, X64)
        want_d = R.activation_derivative(act, X64, want)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(d)), f"{act}: non-finite result"
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    tiny = float(np.finfo(dtype).tiny) * 64
    eps = float(np.finfo(dtype).eps)
    # Where phi is ill-conditioned (gelu's tail: d log phi / d log x ~ x^2), rounding x / sqrt 2
    # to the dtype moves phi by phi'(x) times a few ulp of x; no kernel in that dtype does
    # better, and a kernel that cancels (1 + erf(x / sqrt 2) for x < 0) does far worse.
    conditioned = 4 * eps * np.abs(X64 * want_d)
    np.testing.assert_array_less(np.abs(out - want), rtol * np.abs(want) + tiny + conditioned
                                 + np.finfo(np.float64).tiny,
                                 err_msg=f"{act.name} forward: {out} against {want}")
    # Most derivatives are written in terms of y = phi(x) (tanh: 1 - y^2), so a relative error
    # of a few ulp in y, the engine's or NumPy's (whose float64 tanh/expm1 differ by CPU: SVML
    # on AVX-512), becomes an absolute error of a few ulp of max|phi'| where the derivative is
    # small: that, and no less, is the absolute tolerance.
    atol_d = 16 * eps * max(1.0, float(max_derivative(act)))
    np.testing.assert_allclose(d, want_d, rtol=rtol, atol=atol_d,
                               err_msg=f"{act.name} derivative")


# ================================================== random call sequences (state machine)

OPTIONS = [{}, {"norm": "batch"}, {"norm": "layer"}, {"dropout": 0.3},
           {"residual": 0.5, "norm": "batch", "dropout": 0.2}]


def _state(net):
    return (net.params.copy(), net.grads.copy(), net._run_mean.copy(), net._run_var.copy(),
            net.dropout_counter, net.training, net.measure)


def _assert_same(a, b, what):
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=what)
        else:
            assert x == y, what


class EngineCalls(RuleBasedStateMachine):
    """One network (and its twin) through a random sequence of public calls."""

    def __init__(self):
        super().__init__()
        self.threads_before = vg.get_num_threads()
        self.batch = None            # batch of the last successful forward
        self.backed = False

    @initialize(depth=st.integers(1, 4), width=st.integers(1, 12), n_in=st.integers(1, 9),
                n_out=st.integers(2, 6), act=st.sampled_from(ACTIVATIONS),
                dtype=st.sampled_from(DTYPES), options=st.sampled_from(OPTIONS),
                measure=st.booleans(), seed=st.integers(0, 1000),
                optimizer=st.sampled_from(["SGD", "momentum", "Adam", "AdamW"]))
    def build(self, depth, width, n_in, n_out, act, dtype, options, measure, seed, optimizer):
        sizes = [n_in] + [width] * (depth - 1) + [n_out]
        if depth == 1:
            options = {}
        kw = dict(activation=act, dtype=dtype, seed=seed, sigma_b=0.1, measure=measure,
                  **options)
        self.net, self.twin = vg.MLP(sizes, **kw), vg.MLP(sizes, **kw)
        self.dtype = np.dtype(dtype)
        self.plain = not options
        make = {"SGD": lambda n: vg.optim.SGD(n, lr=0.05),
                "momentum": lambda n: vg.optim.SGD(n, lr=0.05, momentum=0.9, nesterov=True,
                                                   clip_norm=1.0),
                "Adam": lambda n: vg.optim.Adam(n, lr=0.01, weight_decay=0.01),
                "AdamW": lambda n: vg.optim.AdamW(n, lr=0.01, clip_value=0.5)}[optimizer]
        self.opt, self.twin_opt = make(self.net), make(self.twin)

    # ---------------------------------------------------------------- helpers
    def _X(self, batch, seed, scale):
        rng = np.random.default_rng(seed)
        return (scale * rng.standard_normal((batch, self.net.sizes[0]))).astype(self.dtype)

    def _reject(self, call, *names):
        before = _state(self.net)
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        msg = str(info.value)
        assert any(msg.startswith(n) for n in names), msg
        _assert_same(_state(self.net), before, f"state after rejected call ({msg})")

    # ---------------------------------------------------------------- valid calls
    @rule(batch=st.integers(1, 9), seed=st.integers(0, 2**16),
          scale=st.sampled_from([1e-3, 1.0, 30.0]))
    def forward(self, batch, seed, scale):
        X = self._X(batch, seed, scale)
        ref = R.ReferenceMLP.from_network(self.net) if self.plain else None
        with np.errstate(all="ignore"):
            out = self.net.forward(X).copy()
            out2 = self.twin.forward(X).copy()
        np.testing.assert_array_equal(out, out2)
        if ref is not None:
            with np.errstate(all="ignore"):
                want = ref.forward(X.copy())
            if np.all(np.isfinite(want)):
                np.testing.assert_allclose(out, want, rtol=1e-4 if self.dtype == np.float32
                                           else 1e-10, atol=1e-4 * max(1.0, np.abs(want).max()))
        self.batch, self.backed = batch, False

    @precondition(lambda self: self.batch is not None)
    @rule(seed=st.integers(0, 2**16), input_grad=st.booleans())
    def backward(self, seed, input_grad):
        dout = np.random.default_rng(seed).standard_normal(
            (self.batch, self.net.sizes[-1])).astype(self.dtype)
        with np.errstate(all="ignore"):
            a = self.net.backward(dout, input_grad=input_grad)
            b = self.twin.backward(dout, input_grad=input_grad)
        assert (a is None) == (b is None) == (not input_grad)
        if a is not None:
            np.testing.assert_array_equal(a, b)
        self.backed = True

    @rule(batch=st.integers(1, 9), seed=st.integers(0, 2**16),
          loss=st.sampled_from(["cross_entropy", "mse", "binary_cross_entropy"]),
          step=st.booleans())
    def train_step(self, batch, seed, loss, step):
        X = self._X(batch, seed, 1.0)
        rng = np.random.default_rng(seed + 1)
        n_out = self.net.sizes[-1]
        y = (rng.integers(0, n_out, batch) if loss == "cross_entropy"
             else rng.random((batch, n_out)).astype(self.dtype))
        with np.errstate(all="ignore"):
            try:
                a = self.net.train_step(X, y, loss, self.opt if step else None)
            except vg.NonFiniteError as e:   # a diverged network: NaN or Inf in a pass
                with pytest.raises(vg.NonFiniteError) as twin:
                    self.twin.train_step(X, y, loss, self.twin_opt if step else None)
                assert (twin.value.where, twin.value.layer) == (e.where, e.layer)
                self.batch = batch
                return
            b = self.twin.train_step(X, y, loss, self.twin_opt if step else None)
        assert a == b
        self.batch, self.backed = batch, True

    @rule()
    def optimizer_step(self):
        with np.errstate(all="ignore"):
            self.opt.step()
            self.twin_opt.step()

    @rule(on=st.booleans())
    def measure(self, on):
        self.net.measure = on
        self.twin.measure = on

    @rule()
    def gradient_flow(self):
        try:
            a = self.net.gradient_flow()
        except RuntimeError as e:
            with pytest.raises(RuntimeError) as info:
                self.twin.gradient_flow()
            assert str(info.value) == str(e)
            return
        b = self.twin.gradient_flow()
        for name in ("grad_norm", "delta_rms", "gain", "saturated_fraction", "dead_fraction"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_array_equal(a.per_sample_grad_norm, b.per_sample_grad_norm)

    @rule(training=st.booleans())
    def mode(self, training):
        for n in (self.net, self.twin):
            n.train_mode() if training else n.eval_mode()

    @rule(n=st.sampled_from([1, 2]))
    def threads(self, n):
        vg.set_num_threads(n)

    # ---------------------------------------------------------------- invalid calls
    @rule(kind=st.sampled_from(["nan", "inf", "cols", "int", "other_float", "fortran",
                                "misaligned", "empty", "3d", "list"]),
          batch=st.integers(1, 9))
    def forward_invalid(self, kind, batch):
        X = self._X(batch, 0, 1.0)
        if kind in ("nan", "inf"):
            X[batch - 1, -1] = np.nan if kind == "nan" else -np.inf
        elif kind == "cols":
            X = np.zeros((batch, self.net.sizes[0] + 1), self.dtype)
        elif kind == "int":
            X = X.astype(np.int32)
        elif kind == "other_float":
            X = X.astype(np.float32 if self.dtype == np.float64 else np.float64)
        elif kind == "fortran":
            X = np.asfortranarray(np.zeros((batch + 1, self.net.sizes[0] + 1), self.dtype))
            X = X[:, :self.net.sizes[0]] if self.net.sizes[0] > 0 else X
            assume(not X.flags.c_contiguous)
        elif kind == "misaligned":
            n = X.nbytes
            X = np.frombuffer(bytearray(n + 1), np.uint8, count=n, offset=1).view(
                self.dtype).reshape(X.shape)
        elif kind == "empty":
            X = X[:0]
        elif kind == "3d":
            X = X[None]
        else:
            X = X.tolist()
        self._reject(lambda: self.net.forward(X), "X")

    @precondition(lambda self: self.batch is not None)
    @rule(kind=st.sampled_from(["batch", "cols", "nan", "int", "other_float", "1d"]))
    def backward_invalid(self, kind):
        shape = (self.batch, self.net.sizes[-1])
        dout = np.ones(shape, self.dtype)
        if kind == "batch":
            dout = np.ones((self.batch + 1, shape[1]), self.dtype)
        elif kind == "cols":
            dout = np.ones((self.batch, shape[1] + 1), self.dtype)
        elif kind == "nan":
            dout[0, 0] = np.nan
        elif kind == "int":
            dout = dout.astype(np.int64)
        elif kind == "other_float":
            dout = dout.astype(np.float32 if self.dtype == np.float64 else np.float64)
        else:
            dout = dout.ravel()
        self._reject(lambda: self.net.backward(dout), "dout")

    @precondition(lambda self: self.batch is not None)
    @rule(kind=st.sampled_from(["label", "float_labels", "grad_out", "logits_nan"]))
    def loss_invalid(self, kind):
        """Losses on the last output: rejected, and the network is not touched."""
        out = self.net.forward(self._X(self.batch, 1, 1.0))
        self.twin.forward(self._X(self.batch, 1, 1.0))
        n, c = out.shape
        if kind == "label":
            self._reject(lambda: vg.losses.cross_entropy(out, np.full(n, c)), "labels")
        elif kind == "float_labels":
            self._reject(lambda: vg.losses.cross_entropy(out, np.zeros(n)), "labels")
        elif kind == "grad_out":
            self._reject(lambda: vg.losses.mse(out, np.zeros_like(out), grad_out=out),
                         "grad_out")
        else:
            bad = out.copy()
            bad[0, 0] = np.nan
            self._reject(lambda: vg.losses.binary_cross_entropy(bad, np.zeros_like(out)),
                         "logits")
        self.backed = False

    # ---------------------------------------------------------------- invariant
    @invariant()
    def twins_agree(self):
        if hasattr(self, "net"):
            _assert_same(_state(self.net), _state(self.twin), "network and twin differ")

    def teardown(self):
        vg.set_num_threads(self.threads_before)


EngineCalls.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink))
test_random_call_sequences = EngineCalls.TestCase

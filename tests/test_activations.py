"""Activation values and derivatives, checked against independent float64 definitions written
here with NumPy/SciPy (not against vgcore's own reference), over a moderate grid, at the
kinks, at tiny |x| (relative accuracy) and at huge |x| (no overflow, correct saturation).

The engine's activations are read through a [k, k, k] network with identity weights and zero
biases: forward(X) == phi(X) and backward(ones) == phi'(X), exactly (products with 1 and 0).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import vgcore as vg
from vgcore import _engine
from vgcore.core import reference as R
from vgcore.core.activations import max_derivative
from vgcore.measure.flow import SATURATION_THRESHOLD
from _vgtest import ACTIVATION_NAMES, identity_network

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

DTYPE_PARAMS = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]

ACTIVATION_SPECS = [pytest.param(vg.Activation(n), id=n) for n in ACTIVATION_NAMES] + [
    pytest.param(vg.Activation("leaky_relu", slope=0.2), id="leaky_relu-slope0.2"),
    pytest.param(vg.Activation("elu", alpha=0.5), id="elu-alpha0.5"),
]


def truth(act, x):
    """(phi(x), phi'(x)) in float64 from the definitions in vgcore.activations' docstring."""
    name, p = act.name, act.param
    x = np.asarray(x, dtype=np.float64)
    neg = np.minimum(x, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "identity":
            return x.copy(), np.ones_like(x)
        if name == "sigmoid":
            return special.expit(x), special.expit(x) * special.expit(-x)
        if name == "tanh":
            return np.tanh(x), 1.0 / np.cosh(x) ** 2
        if name == "relu":
            return np.where(x > 0, x, 0.0), np.where(x > 0, 1.0, 0.0)
        if name == "leaky_relu":
            return np.where(x > 0, x, p * x), np.where(x > 0, 1.0, p)
        if name == "elu":
            return np.where(x > 0, x, p * np.expm1(neg)), np.where(x > 0, 1.0, p * np.exp(neg))
        if name == "selu":
            return (SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(neg)),
                    np.where(x > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(neg)))
        if name == "gelu":
            pdf = np.where(np.abs(x) > 1e150, 0.0, np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
            return x * special.ndtr(x), special.ndtr(x) + x * pdf
        if name == "softplus":
            return np.logaddexp(0.0, x), special.expit(x)
        if name == "softsign":
            return x / (1 + np.abs(x)), 1.0 / (1 + np.abs(x)) ** 2
        if name == "silu":
            s = special.expit(x)
            return x * s, s * (1 + x * special.expit(-x))
        if name == "hard_tanh":
            return np.clip(x, -1.0, 1.0), np.where(np.abs(x) < 1, 1.0, 0.0)
    raise AssertionError(name)


def engine_values(act, xs, dtype):
    """phi(xs) and phi'(xs) computed by the compiled engine."""
    X = np.asarray(xs, dtype=dtype)[None, :]
    net = identity_network(X.shape[1], act, dtype)
    out = net.forward(X).copy()
    deriv = net.backward(np.ones_like(out)).copy()
    return out[0].astype(np.float64), deriv[0].astype(np.float64)


def check_close(got, want, xs, dtype, k, what):
    """|got - want| <= k eps (|want| + 1): relative above 1, absolute (k eps) below."""
    eps = float(np.finfo(dtype).eps)
    assert np.all(np.isfinite(got)), f"{what}: NaN/Inf at x = {np.asarray(xs)[~np.isfinite(got)]}"
    bad = np.abs(got - want) > k * eps * (np.abs(want) + 1)
    assert not bad.any(), (f"{what}: x={np.asarray(xs)[bad][:5]} got={got[bad][:5]} "
                           f"want={want[bad][:5]}")


GRID = np.concatenate([np.linspace(-12, 12, 481), [0.0, 1.0, -1.0, 1e-3, -1e-3, 0.125, -0.125,
                                                   0.12, -0.13, 3.7, -3.7]])


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("act", ACTIVATION_SPECS)
def test_engine_activation_and_derivative_match_definition_on_grid(act, dtype):
    xs = GRID.astype(dtype)                  # round first: compare at the representable x
    got_f, got_d = engine_values(act, xs, dtype)
    want_f, want_d = truth(act, xs)
    check_close(got_f, want_f, xs, dtype, 8, f"{act} forward")
    check_close(got_d, want_d, xs, dtype, 8, f"{act} derivative")


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("act", ACTIVATION_SPECS)
def test_reference_activation_and_derivative_match_definition_on_grid(act, dtype):
    xs = GRID.astype(dtype)
    a = R.activation_forward(act, xs)
    d = R.activation_derivative(act, xs, a)
    want_f, want_d = truth(act, xs)
    check_close(a.astype(np.float64), want_f, xs, dtype, 8, f"reference {act} forward")
    check_close(d.astype(np.float64), want_d, xs, dtype, 8, f"reference {act} derivative")


TINY = [1e-30, -1e-30, 1e-20, -1e-20, 1e-8, -1e-8, 1e-5, -1e-5, 1e-3, -1e-3]


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("act", ACTIVATION_SPECS)
def test_engine_activation_keeps_relative_accuracy_at_tiny_inputs(act, dtype):
    # near 0, tanh(x) ~ x, elu(x) ~ alpha x, silu(x) ~ x/2, ...: a few ulp relative error, not
    # the absolute error of a formula that cancels (e.g. exp(x) - 1 instead of expm1(x))
    xs = np.array(TINY, dtype=dtype)
    got_f, _ = engine_values(act, xs, dtype)
    want_f, _ = truth(act, xs)
    eps = float(np.finfo(dtype).eps)
    rel = np.where(want_f != 0, np.abs(got_f - want_f) / np.abs(np.where(want_f != 0, want_f, 1)),
                   np.where(got_f == 0, 0.0, np.inf))
    bad = rel > 4 * eps
    assert not bad.any(), (f"{act}: relative error {rel[bad]} at x = {xs[bad]}: "
                           f"got {got_f[bad]}, want {want_f[bad]}")


def test_tanh_is_x_to_working_precision_at_tiny_inputs():
    for dtype in (np.float32, np.float64):
        xs = np.array([1e-30, -1e-30, 1e-8, -1e-8], dtype=dtype)
        got, deriv = engine_values("tanh", xs, dtype)
        np.testing.assert_array_equal(got, xs.astype(np.float64))      # tanh(x) == x
        np.testing.assert_allclose(deriv, 1.0, rtol=2 * np.finfo(dtype).eps, atol=0)


def _float32_sample(lo, hi, step):
    """Every step-th float32 in [lo, hi), by bit pattern (so every binade is covered)."""
    bits = np.arange(np.float32(lo).view(np.int32), np.float32(hi).view(np.int32), step,
                     dtype=np.int32)
    return bits.view(np.float32)


def _ulps(got, xs):
    """|got - tanh(x)| in units of the last place of the correctly rounded float32 result."""
    want = np.tanh(xs.astype(np.float64))
    return np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)


def test_float32_tanh_is_within_its_ulp_bounds_and_exactly_odd():
    # vg_tanh_f32 (src/vg_math.h): 2.3 ulp at most over every float (checked exhaustively when
    # it was written; the earlier exp-and-series form reached 3.95), 1.03 for |x| >= 1 and 0.6
    # for |x| >= 2 where
    # backprop reads the derivative 1 - y^2 from y, tanh(-x) == -tanh(x) bit for bit, and
    # y == 1 exactly where the correctly rounded tanh is 1 (the zero-derivative count)
    xs = np.concatenate([_float32_sample(1e-7, 10.0, 61), _float32_sample(10.0, 100.0, 1001)])
    net = identity_network(64, "tanh", np.float32)
    xs = xs[:xs.size // 64 * 64]
    got = net.forward(xs.reshape(-1, 64)).ravel().copy()       # forward returns its buffer
    neg = net.forward(-xs.reshape(-1, 64)).ravel()
    u = _ulps(got.astype(np.float64), xs)
    assert u.max() <= 2.3, f"tanh: {u.max():.2f} ulp at x = {xs[np.argmax(u)]!r}"
    for lo, bound in ((1, 1.03), (2, 0.6)):
        far = xs >= lo
        assert u[far].max() <= bound, f"tanh: {u[far].max():.2f} ulp at |x| >= {lo}"
    np.testing.assert_array_equal(neg, -got)
    np.testing.assert_array_equal(got == 1, np.tanh(xs.astype(np.float64)).astype(np.float32) == 1)
    # for |x| < 2^-25 tanh(x) is x itself (from the smallest normal: the network flushes
    # subnormal inputs to 0 by default)
    tiny = _float32_sample(1.2e-38, 2.0 ** -25, 100003)
    tiny = tiny[:tiny.size // 64 * 64]
    np.testing.assert_array_equal(net.forward(tiny.reshape(-1, 64)).ravel(), tiny)


HUGE = {
    np.float32: [1e4, 700.0, 88.0, 87.5, 100.0, 1e10, 1e30, 1e38, 3e38],
    np.float64: [1e4, 700.0, 710.0, 745.0, 88.0, 1e10, 1e100, 1e300, 1.7e308],
}


def reference_values(act, xs, dtype):
    xs = np.asarray(xs, dtype=dtype)
    a = R.activation_forward(act, xs)
    return a.astype(np.float64), R.activation_derivative(act, xs, a).astype(np.float64)


@pytest.mark.parametrize("impl", [engine_values, reference_values], ids=["engine", "reference"])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("act", ACTIVATION_SPECS)
def test_activation_saturates_without_overflow_at_huge_inputs(act, dtype, impl):
    mags = np.array(HUGE[dtype])
    xs = np.concatenate([mags, -mags]).astype(dtype)
    got_f, got_d = impl(act, xs, dtype)
    assert np.all(np.isfinite(got_f)), f"{act} forward: {got_f}"
    assert np.all(np.isfinite(got_d)), f"{act} derivative: {got_d}"
    want_f, want_d = truth(act, xs)
    eps = float(np.finfo(dtype).eps)
    # forward: relative accuracy; where the true value underflows, at most ~ the smallest
    # normal number (not an error that grows with |x|)
    tiny = 1e4 * float(np.finfo(dtype).tiny)
    bad = np.abs(got_f - want_f) > 4 * eps * np.abs(want_f) + tiny
    assert not bad.any(), f"{act} forward at x={xs[bad]}: got {got_f[bad]}, want {want_f[bad]}"
    # derivative: the documented formulas (e.g. 1 - phi^2) are accurate to ~eps absolutely
    bad = np.abs(got_d - want_d) > 4 * eps * (np.abs(want_d) + 1)
    assert not bad.any(), f"{act} derivative at x={xs[bad]}: got {got_d[bad]}, want {want_d[bad]}"


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_derivative_at_kinks_takes_documented_side(dtype):
    cases = {
        vg.Activation("relu"): {0.0: (0.0, 0.0)},
        vg.Activation("leaky_relu", slope=0.25): {0.0: (0.0, 0.25)},
        vg.Activation("elu", alpha=0.5): {0.0: (0.0, 0.5)},
        vg.Activation("selu"): {0.0: (0.0, SELU_SCALE * SELU_ALPHA)},
        vg.Activation("hard_tanh"): {1.0: (1.0, 0.0), -1.0: (-1.0, 0.0)},
    }
    for act, points in cases.items():
        xs = list(points)
        got_f, got_d = engine_values(act, xs, dtype)
        for i, x in enumerate(xs):
            want_f, want_d = points[x]
            assert got_f[i] == pytest.approx(want_f, abs=0), f"{act}({x})"
            assert got_d[i] == pytest.approx(want_d, rel=1e-6), f"{act}'({x})"


def test_nondefault_activation_parameter_reaches_the_engine():
    xs = np.array([-2.0, -0.5, 0.5])
    f, d = engine_values(vg.Activation("leaky_relu", slope=0.3), xs, np.float64)
    np.testing.assert_allclose(f, [-0.6, -0.15, 0.5], rtol=1e-15)
    np.testing.assert_allclose(d, [0.3, 0.3, 1.0], rtol=1e-15)
    f, d = engine_values(vg.Activation("elu", alpha=2.0), xs, np.float64)
    np.testing.assert_allclose(f, [2 * math.expm1(-2), 2 * math.expm1(-0.5), 0.5], rtol=1e-14)
    np.testing.assert_allclose(d, [2 * math.exp(-2), 2 * math.exp(-0.5), 1.0], rtol=1e-14)


# ----------------------------------------------------------------------------- the API

def test_activation_defaults_and_names():
    assert vg.Activation("leaky_relu").param == 0.01
    assert vg.Activation("elu").param == 1.0
    assert vg.Activation("  ReLU ").name == "relu"
    assert repr(vg.Activation("elu", alpha=0.5)) == "Activation('elu', alpha=0.5)"
    assert vg.Activation("tanh") == vg.Activation("tanh")
    # the ids are the compiled core's, one per name it defines (src/vg_contract.h)
    assert {n: vg.Activation(n).kind for n in ACTIVATION_NAMES} == {
        n: i for i, n in enumerate(_engine.ACTIVATIONS)}


# ----------------------------------------------------------------------------- the specs
SPEC_NAMES = [pytest.param(n, id=n) for n in ACTIVATION_NAMES]
WIDE = np.concatenate([np.linspace(-30, 30, 600001), [0.0, 1.0, -1.0, math.sqrt(2)]])


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_max_derivative_is_the_largest_slope(name):
    """max |phi'| is attained (to 1e-6) on a fine grid and never exceeded: it scales the
    saturation threshold of every measurement."""
    for act in (vg.Activation(name),) + ((vg.Activation(name, **{
            vg.ACTIVATIONS[name].param_name: 1.7}),) if vg.ACTIVATIONS[name].param_name else ()):
        d = np.abs(R.activation_derivative(act, WIDE, R.activation_forward(act, WIDE)))
        m = max_derivative(act)
        assert d.max() <= m * (1 + 1e-9), (act, d.max(), m)
        assert d.max() >= m * (1 - 1e-6), (act, d.max(), m)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_second_moment_is_given_exactly_for_the_homogeneous_activations(name):
    """phi(c h) = c phi(h) for c > 0 exactly when the spec gives E[phi(z)^2] (theory's closed
    forms rest on it), and then E[phi(z)^2] = E[phi'(z)^2] = that value."""
    spec = vg.ACTIVATIONS[name]
    act = vg.Activation(name)
    h = np.linspace(-4, 4, 81)
    homogeneous = np.allclose(R.activation_forward(act, 2.5 * h),
                              2.5 * R.activation_forward(act, h), rtol=1e-13, atol=1e-13)
    assert homogeneous == (spec.second_moment is not None)
    if spec.second_moment is not None:
        m = spec.second_moment(act.param)
        ez = np.linspace(-12, 12, 480001)
        pdf = np.exp(-ez ** 2 / 2) / math.sqrt(2 * math.pi)
        phi2 = R.activation_forward(act, ez) ** 2
        dphi2 = R.activation_derivative(act, ez, R.activation_forward(act, ez)) ** 2
        step = ez[1] - ez[0]
        assert np.sum(phi2 * pdf) * step == pytest.approx(m, rel=1e-6)
        assert np.sum(dphi2 * pdf) * step == pytest.approx(m, rel=1e-4)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_saturating_means_a_derivative_that_decays_smoothly(name):
    """Saturating: on at least one side the slope decays smoothly (non-zero, under the
    saturation threshold at |h| = 8 and smaller still at 16): sigmoid, tanh, softsign, and the
    negative tails of softplus, elu, selu, gelu and silu.  The piecewise-linear activations
    (identity, relu, leaky_relu with its constant slope, hard_tanh with its exact zeros) never
    saturate; their zero derivatives are inactive entries, checked for dead units."""
    act = vg.Activation(name)
    h = np.array([-8.0, 8.0, -16.0, 16.0])
    d = np.abs(R.activation_derivative(act, h, R.activation_forward(act, h)))
    near, far = d[:2], d[2:]
    decays = (near > 0) & (near < SATURATION_THRESHOLD * max_derivative(act)) & (far < near)
    assert vg.ACTIVATIONS[name].saturating == bool(decays.any())
    assert vg.ACTIVATIONS[name].family in ("sigmoid", "tanh", "relu", "selu", "linear")


def test_the_saturating_activations_are_the_documented_ones():
    assert {n for n, s in vg.ACTIVATIONS.items() if s.saturating} == {
        "sigmoid", "tanh", "softsign", "softplus", "elu", "selu", "gelu", "silu"}
    assert set(vg.flow.SATURATING) == {n for n, s in vg.ACTIVATIONS.items() if s.saturating}


def test_specs_keep_the_tuple_meaning_of_activations():
    """ACTIVATIONS[name] was (kernel id, parameter name, default); it still reads so."""
    kind, pname, default = vg.ACTIVATIONS["leaky_relu"][:3]
    assert (kind, pname, default) == (vg.Activation("leaky_relu").kind, "slope", 0.01)
    assert vg.ACTIVATIONS["tanh"][1] is None


def test_activation_accepts_numpy_scalar_parameter():
    # numpy scalars are numbers: as for lr (vg.optim.SGD) they must be accepted
    assert vg.Activation("elu", alpha=np.float32(0.5)).param == 0.5
    assert vg.Activation("leaky_relu", slope=np.float64(0.2)).param == 0.2
    assert vg.Activation("elu", alpha=np.int64(2)).param == 2.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="relu", slope=0.1), "slope"),
    (dict(name="leaky_relu", alpha=1.0), "alpha"),
    (dict(name="leaky_relu", slope=float("nan")), "slope"),
    (dict(name="elu", alpha=float("inf")), "alpha"),
    (dict(name="elu", alpha="1"), "alpha"),
    (dict(name="swish"), "activation"),
])
def test_activation_rejects_bad_names_and_parameters(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises((ValueError, TypeError), match=match):
        vg.Activation(name, **kwargs)


def test_activation_rejects_non_string_name():
    with pytest.raises(TypeError, match="activation"):
        vg.Activation(3)

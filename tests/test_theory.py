"""vgcore.theory: mean-field signal propagation (Poole et al. 2016, Schoenholz et al. 2017),
pinned against known values, closed forms, the quadrature's failure modes, and the engine.

Reference values were checked independently with scipy.integrate.quad (adaptive, split at the
kinks): tanh at sigma_w2=1.5, sigma_b2=0.05 has q* = 0.4180372005 and chi_1 = 0.9386362682,
and the edge of chaos at sigma_b2=0.05 is sigma_w2 = 1.7609546396.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss

import vgcore as vg
from vgcore.measure import theory as T
from vgcore.core.reference import ReferenceMLP

TANH_QSTAR = 0.4180372005334779          # tanh, sigma_w2=1.5, sigma_b2=0.05
TANH_CHI1 = 0.9386362681988512
TANH_CRITICAL = 1.7609546396067406       # tanh, sigma_b2=0.05


# ------------------------------------------------------------------------------ pinned values

def test_relu_he_is_critical():
    assert T.chi1("relu", 2.0, 0.0) == pytest.approx(1.0, abs=1e-10)
    # homogeneous: chi_1 does not depend on q
    for q in (1e-6, 0.3, 1.0, 50.0):
        assert T.chi1("relu", 2.0, 0.0, q=q) == pytest.approx(1.0, abs=1e-12)
    assert T.critical_sigma_w2("relu", 0.0) == 2.0
    assert T.critical_sigma_w2(vg.Activation("leaky_relu", slope=0.2), 0.0) == \
        pytest.approx(2 / 1.04, rel=1e-14)


def test_tanh_fixed_point_and_chi1():
    q = T.fixed_point("tanh", 1.5, 0.05)
    assert q == pytest.approx(0.418, abs=1e-3)
    assert q == pytest.approx(TANH_QSTAR, rel=1e-10)
    assert T.variance_map(q, "tanh", 1.5, 0.05) == pytest.approx(q, rel=1e-12)
    x = T.chi1("tanh", 1.5, 0.05)
    assert x == pytest.approx(0.9386, abs=1e-3)
    assert x == pytest.approx(TANH_CHI1, rel=1e-10)


def test_fixed_point_is_the_limit_of_the_iteration():
    seq = T.variance_sequence("tanh", 1.5, 0.05, q0=1.0, n_layers=300)
    assert seq[0] == 1.0 and seq[1] == pytest.approx(1.5 * 0.394294 + 0.05, rel=1e-5)
    assert np.all(np.diff(seq[:25]) < 0) and np.all(np.diff(seq) <= 0)   # monotone descent
    assert seq[-1] == pytest.approx(T.fixed_point("tanh", 1.5, 0.05), rel=1e-12)
    # from below, and for a bounded and a relu-like activation
    assert T.fixed_point("tanh", 1.5, 0.05, q0=0.0) == pytest.approx(TANH_QSTAR, rel=1e-10)
    for act, sw2, sb2 in (("softsign", 3.0, 0.05), ("elu", 1.5, 0.05), ("gelu", 2.2, 0.05)):
        seq = T.variance_sequence(act, sw2, sb2, q0=1.0, n_layers=3000)
        assert T.fixed_point(act, sw2, sb2) == pytest.approx(seq[-1], rel=1e-10), act


def test_fixed_point_special_cases():
    # relu at He, no bias: every q is a fixed point, q0 is returned
    assert T.fixed_point("relu", 2.0, 0.0, q0=3.7) == 3.7
    # relu below: q* = sigma_b2 / (1 - sigma_w2/2); above or at 2 with a bias: diverges
    assert T.fixed_point("relu", 1.5, 0.1) == pytest.approx(0.1 / 0.25, rel=1e-14)
    assert T.fixed_point("relu", 1.5, 0.0) == 0.0
    assert T.fixed_point("relu", 2.5, 0.0) == math.inf
    assert T.fixed_point("relu", 2.0, 0.1) == math.inf
    assert T.fixed_point("elu", 3.0, 0.0) == math.inf
    # ordered tanh without bias decays to exactly 0 (also at the marginal sigma_w2 = 1)
    assert T.fixed_point("tanh", 0.5, 0.0) == 0.0
    assert T.fixed_point("tanh", 1.0, 0.0) == 0.0
    # hard_tanh at 1: V(q) = q - O(exp(-1/2q)) equals q in float64 below q ~ 0.015, but the
    # limit is 0 (not a rounding-level "fixed point")
    assert T.fixed_point("hard_tanh", 1.0, 0.0) == 0.0
    assert T.fixed_point("hard_tanh", 1.0, 0.1) > 0.1
    # chaotic tanh without bias: q* > 0, and q = 0 is the unstable fixed point
    assert T.fixed_point("tanh", 2.0, 0.0) > 0.5
    assert T.fixed_point("tanh", 2.0, 0.0, q0=0.0) == 0.0
    # chi_1 at q* = inf is the q -> inf limit: relu's sigma_w2 / 2
    assert T.chi1("relu", 3.0, 0.0) == pytest.approx(1.5, rel=1e-14)


def test_critical_sigma_w2_tanh():
    s = T.critical_sigma_w2("tanh", 0.05)
    assert s == pytest.approx(1.761, abs=2e-3)
    assert s == pytest.approx(TANH_CRITICAL, abs=1e-8)
    assert T.chi1("tanh", s, 0.05) == pytest.approx(1.0, abs=1e-9)
    assert T.depth_scales("tanh", s, 0.05).xi_grad > 1e6
    assert T.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)


def test_selu_self_normalising_fixed_point():
    # lecun normal: sigma_w2 = 1, no bias; q = 1 maps to 1 and E[selu(z)] = 0
    assert T.variance_map(1.0, "selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-12)
    assert T.fixed_point("selu", 1.0, 0.0, q0=1.0) == pytest.approx(1.0, abs=1e-10)
    z, w = T._common.composite_rule(np.zeros(1), 1.0)
    mean = float(np.sum(w[0] * vg.reference.activation_forward("selu", z[0])))
    assert abs(mean) < 1e-6
    assert abs(mean) < 1e-14                    # the composite rule is exact to rounding


def test_selu_network_keeps_mean_zero_and_variance_one():
    """Width 1000, 20 selu layers, lecun_normal, float64: every layer's activations have mean
    ~0 and variance ~1.  Finite width moves the per-layer variance by about 2% (quenched
    weights: sqrt(2/1000) = 4.5% per matrix, partly averaged), the mean by about 0.01."""
    net = vg.MLP([1000] * 21 + [10], activation="selu", init="lecun_normal",
                 dtype="float64", seed=0)
    X = np.random.default_rng(7).standard_normal((64, 1000))
    ref = ReferenceMLP.from_network(net)
    ref.forward(X)
    acts = ref.post_activations[:-1]
    assert len(acts) == 20
    for l, a in enumerate(acts, start=1):
        assert abs(a.mean()) < 0.04, f"layer {l}: mean {a.mean():.4f}"
        assert a.var() == pytest.approx(1.0, abs=0.06), f"layer {l}: variance {a.var():.4f}"


# ------------------------------------------------------------------------------ quadrature

def test_odd_gauss_hermite_breaks_relu_and_even_does_not():
    """An odd number of Gauss-Hermite nodes puts one at z = 0, where relu'(0) = 0 (the engine's
    convention), so chi_1 loses that node's weight; an even number never samples the kink."""
    even = T.chi1("relu", 2.0, 0.0, q=1.0, quadrature=200)
    odd = T.chi1("relu", 2.0, 0.0, q=1.0, quadrature=201)
    assert even == pytest.approx(1.0, abs=1e-12)
    z, w = hermegauss(201)
    w0 = w[np.argmin(np.abs(z))] / w.sum()
    assert odd == pytest.approx(1.0 - w0, rel=1e-12)
    assert odd < 0.95                                   # visibly wrong: 1 - 0.088
    assert T.chi1("relu", 2.0, 0.0, q=1.0) == pytest.approx(1.0, abs=1e-14)   # default rule


def test_composite_rule_beats_gauss_hermite_on_kinks_and_large_q():
    # smooth integrand at moderate q: both rules agree to rounding
    for act in ("tanh", "gelu", "sigmoid", "silu", "softplus"):
        assert T.variance_map(0.7, act, 1.0, 0.0) == pytest.approx(
            T.variance_map(0.7, act, 1.0, 0.0, quadrature=200), rel=1e-12)
    # E[selu(z)^2] = 1 exactly: Gauss-Hermite is off at the kink, composite is not
    assert abs(T.variance_map(1.0, "selu", 1.0, 0.0, quadrature=200) - 1) > 1e-5
    assert abs(T.variance_map(1.0, "selu", 1.0, 0.0) - 1) < 1e-13
    # hard_tanh, kinks at +-1: E[clip(h, -1, 1)^2] for h ~ N(0, q) in closed form
    q = 2.0
    s = math.sqrt(q)
    a = 1 / s
    p_in = math.erf(a / math.sqrt(2))
    exact = q * (p_in - 2 * a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi)) + (1 - p_in)
    assert T.variance_map(q, "hard_tanh", 1.0, 0.0) == pytest.approx(exact, rel=1e-13)
    # tanh at q = 1e8: E[tanh'(h)^2] ~ int sech^4 / sqrt(2 pi q) = (4/3) / sqrt(2 pi q),
    # relative correction O(1/q); Gauss-Hermite misses the narrow peak at 0
    want = (4 / 3) / math.sqrt(2 * math.pi * 1e8)
    assert T.chi1("tanh", 1.0, 0.0, q=1e8) == pytest.approx(want, rel=1e-7)
    assert T.chi1("tanh", 1.0, 0.0, q=1e8, quadrature=200) != pytest.approx(want, rel=1e-2)


def test_correlation_map_matches_relu_arccos_kernel():
    # relu, sigma_w2 = 2, no bias: C(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi
    for c in (-0.9, 0.0, 0.5, 0.99):
        want = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert T.correlation_map(c, "relu", 2.0, 0.0, q=1.0) == pytest.approx(want, abs=1e-13)
    assert T.correlation_map(1.0, "tanh", 1.5, 0.05) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------ depth scales

def test_depth_scales_ordered_and_critical():
    d = T.depth_scales("tanh", 1.5, 0.05)
    assert d.phase == "ordered" and d.c_star == 1.0
    assert d.q_star == pytest.approx(TANH_QSTAR, rel=1e-10)
    assert d.chi_c == d.chi_1 == pytest.approx(TANH_CHI1, rel=1e-10)
    assert d.xi_grad == pytest.approx(-1 / math.log(TANH_CHI1), rel=1e-8)
    assert d.xi_c == d.xi_grad and d.xi_grad > 0
    r = T.depth_scales("relu", 2.0, 0.0)
    assert r.phase == "critical" and r.xi_grad == math.inf and r.xi_c == math.inf


def test_depth_scales_chaotic():
    d = T.depth_scales("tanh", 2.5, 0.05)
    assert d.phase == "chaotic" and d.chi_1 > 1
    assert d.xi_grad == pytest.approx(-1 / math.log(d.chi_1), rel=1e-12) and d.xi_grad < 0
    assert 0 < d.c_star < 1
    # c* is a fixed point of the correlation map and chi_c its slope there (Price's theorem)
    C = lambda c: T.correlation_map(c, "tanh", 2.5, 0.05, q=d.q_star)  # noqa: E731
    assert C(d.c_star) == pytest.approx(d.c_star, abs=1e-11)
    h = 1e-4
    slope = (C(d.c_star + h) - C(d.c_star - h)) / (2 * h)
    assert d.chi_c == pytest.approx(slope, rel=1e-6)
    assert 0 < d.chi_c < 1 and d.xi_c == pytest.approx(-1 / math.log(d.chi_c), rel=1e-12)
    # tanh without bias is odd: c* = 0 exactly
    assert T.depth_scales("tanh", 2.5, 0.0).c_star == 0.0


# ------------------------------------------------------------------------------ profiles

def _measured_delta_sq(net, X, rng):
    """||delta_l||^2 of every hidden layer (summed over batch and units) after a backward
    pass with dout ~ N(0, 1)/batch; delta from the NumPy reference, whose backward is checked
    here to give the engine's parameter gradients."""
    dout = rng.standard_normal((X.shape[0], net.sizes[-1])) / X.shape[0]
    ref = ReferenceMLP.from_network(net)
    ref.forward(X)
    ref.backward(dout, input_grad=False)
    net.forward(X)
    net.backward(dout, input_grad=False)
    np.testing.assert_allclose(net.grads, ref.grads, rtol=1e-9,
                               atol=1e-12 * np.abs(ref.grads).max())
    return np.array([np.sum(ref._buf.d[l] ** 2) for l in range(len(net.sizes) - 2)])


@pytest.mark.parametrize("regime", ["ordered", "critical"])
def test_engine_gradient_profile_follows_mean_field(regime):
    """Width 512, 20 tanh layers, sigma_b2 = 0.05, float64, batch 256, Gaussian inputs.

    Tolerance 0.12 decades per layer on log10(||delta_l||^2 / ||delta_20||^2).  Finite width
    makes each layer's gain fluctuate by a few percent (quenched weights and biases,
    ~sqrt(2/512) = 6%, partly averaged over the batch), accumulating as a random walk:
    over 18 networks (6 seeds x 3 sigma_w2) the largest deviation seen was 0.08 decades and the
    typical one 0.03.  The prediction spans 2.7 decades (ordered) and 0.34 decades (critical,
    all of it in the transient q_l -> q*); a prediction from q* alone would be off by 0.42 and
    0.34 decades, beyond the tolerance."""
    sw2 = 1.0 if regime == "ordered" else T.critical_sigma_w2("tanh", 0.05)
    W, H, B = 512, 20, 256
    net = vg.MLP([W] * (H + 2), activation="tanh", init="normal", sigma_w=math.sqrt(sw2),
                 sigma_b=math.sqrt(0.05), dtype="float64", seed=1)
    rng = np.random.default_rng(101)
    X = rng.standard_normal((B, W))
    measured = _measured_delta_sq(net, X, rng)
    measured /= measured[-1]
    pred = T.predicted_gradient_profile(net, X=X)
    assert pred.delta_sq.shape == (H,) and pred.delta_sq[-1] == 1.0
    assert pred.q[0] == pytest.approx(sw2 * np.mean(X**2) + 0.05, rel=1e-12)
    dev = np.log10(measured) - np.log10(pred.delta_sq)
    assert np.max(np.abs(dev)) < 0.12, np.round(dev, 3)
    if regime == "ordered":
        assert np.log10(pred.delta_sq[0]) == pytest.approx(-2.69, abs=0.01)
    else:
        assert np.log10(pred.delta_sq[0]) == pytest.approx(-0.34, abs=0.01)
        assert np.all(pred.delta_sq[8:] > 0.97)     # flat once q_l has reached q*


def test_gradient_profile_accounts_for_width_changes():
    """relu, glorot_normal, unequal widths: chi_l = (2 n_l / (n_l + n_{l+1})) * 1/2, so the
    profile of ||delta_l||^2 follows the width ratios; measured within 10% per layer."""
    sizes = [300, 600, 200, 800, 400, 10]
    net = vg.MLP(sizes, activation="relu", init="glorot_normal", dtype="float64", seed=3)
    pred = T.predicted_gradient_profile(net, q0=1.0)
    n = np.array(sizes[1:-1] + [sizes[-1]])
    np.testing.assert_allclose(pred.chi, (2 * n[:-1] / (n[:-1] + n[1:])) * 0.5, rtol=1e-12)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((256, sizes[0]))
    measured = _measured_delta_sq(net, X, rng)
    np.testing.assert_allclose(measured / measured[-1], pred.delta_sq, rtol=0.1)
    np.testing.assert_allclose(pred.delta_rms,
                               np.sqrt(pred.delta_sq * pred.widths[-1] / pred.widths))


def test_gradient_profile_spec_matches_network():
    net = vg.MLP([64] * 12, activation="tanh", init="normal", sigma_w=1.2, sigma_b=0.3, seed=0)
    a = T.predicted_gradient_profile(net, q0=0.8)
    b = T.predicted_gradient_profile("tanh", depth=10, sigma_w2=1.44, sigma_b2=0.09, q0=0.8)
    np.testing.assert_allclose(a.q, b.q, rtol=1e-13)
    np.testing.assert_allclose(a.delta_sq, b.delta_sq, rtol=1e-13)
    # the transient, layer by layer: the first hidden layer sees the input itself (no phi)
    assert a.q[0] == pytest.approx(1.44 * 0.8 + 0.09, rel=1e-14)
    seq = T.variance_sequence("tanh", 1.44, 0.09, q0=a.q[0], n_layers=9)
    np.testing.assert_allclose(a.q, seq, rtol=1e-13)
    chis = [T.chi1("tanh", 1.44, 0.09, q=q) for q in seq]
    np.testing.assert_allclose(b.chi, chis, rtol=1e-13)
    np.testing.assert_allclose(b.delta_sq[0], np.prod(chis[:-1]), rtol=1e-12)
    # initialiser variances
    assert T.effective_sigma_w2("standard", 50, 70) == pytest.approx(1 / 3)
    assert T.effective_sigma_w2("he_uniform", 50, 70) == 2.0
    assert T.effective_sigma_w2("glorot_uniform", 50, 70) == pytest.approx(100 / 120)
    assert T.effective_sigma_w2("orthogonal", 50, 70, 1.5) == pytest.approx(2.25 * 50 / 70)


# ------------------------------------------------------------------------------ Jacobians

def test_jacobian_matches_finite_differences_and_keeps_state():
    net = vg.MLP([5, 7, 7, 3], activation="tanh", init="glorot_normal", dtype="float64",
                 seed=4, sigma_b=0.2)
    x = np.random.default_rng(0).standard_normal(5)
    params = net.params.copy()
    net.grads[...] = np.arange(net.grads.size)
    J = T.jacobian(net, x)
    assert J.shape == (3, 5) and J.dtype == np.float64
    eps = 1e-6
    fd = np.empty((3, 5))
    for j in range(5):
        e = np.zeros(5)
        e[j] = eps
        fd[:, j] = (net.predict((x + e)[None]) - net.predict((x - e)[None]))[0] / (2 * eps)
    np.testing.assert_allclose(J, fd, atol=1e-6)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, np.arange(net.grads.size))
    np.testing.assert_array_equal(T.jacobian(net, x[None, :]), J)


def test_jacobian_singular_values():
    # a deep linear network with orthogonal square layers is exactly isometric
    net = vg.MLP([16] * 6, activation="identity", init="orthogonal", dtype="float64", seed=2)
    X = np.random.default_rng(1).standard_normal((3, 16))
    spec = T.jacobian_singular_values(net, X)
    assert spec.singular_values.shape == (3, 16)
    np.testing.assert_allclose(spec.singular_values, 1.0, atol=1e-12)
    np.testing.assert_allclose(spec.condition, 1.0, atol=1e-11)
    # several inputs per engine call (n_out = 1500: two inputs per call): same as one by one
    net = vg.MLP([4, 8, 1500], activation="tanh", init="lecun_normal", dtype="float32", seed=0)
    X = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    spec = T.jacobian_singular_values(net, X)
    for i in range(5):
        sv = np.linalg.svd(T.jacobian(net, X[i]).astype(np.float64), compute_uv=False)
        np.testing.assert_allclose(spec.singular_values[i], sv, rtol=1e-12)
        assert spec.max[i] == sv[0] and spec.min[i] == sv[-1]
        assert spec.mean_squared[i] == pytest.approx(np.mean(sv**2), rel=1e-12)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("call, arg", [
    (lambda: T.variance_map(1.0, "tanhh", 1.0, 0.0), "activation"),
    (lambda: T.chi1("relu", -1.0, 0.0), "sigma_w2"),
    (lambda: T.fixed_point("tanh", 1.0, -0.1), "sigma_b2"),
    (lambda: T.depth_scales("tanh", float("nan"), 0.0), "sigma_w2"),
    (lambda: T.critical_sigma_w2("tanh", float("inf")), "sigma_b2"),
    (lambda: T.variance_map(-1.0, "tanh", 1.0, 0.0), "q"),
    (lambda: T.fixed_point("tanh", 1.0, 0.0, q0=float("inf")), "q0"),
    (lambda: T.fixed_point("tanh", 1.0, 0.0, tol=0.5), "tol"),
    (lambda: T.variance_map(1.0, "tanh", 1.0, 0.0, quadrature=1), "quadrature"),
    (lambda: T.variance_map(1.0, "tanh", 1.0, 0.0, quadrature="gauss"), "quadrature"),
    (lambda: T.correlation_map(1.5, "tanh", 1.0, 0.0), "c"),
    (lambda: T.predicted_gradient_profile("tanh", depth=0, sigma_w2=1.0), "depth"),
    (lambda: T.predicted_gradient_profile("tanh", depth=3), "sigma_w2"),
])
def test_bad_values_raise_value_error_naming_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        call()


def test_bad_types_and_jacobian_input():
    with pytest.raises(TypeError, match="sigma_w2"):
        T.chi1("tanh", "1.0", 0.0)
    with pytest.raises(TypeError, match="quadrature"):
        T.chi1("tanh", 1.0, 0.0, quadrature=True)
    with pytest.raises(TypeError, match="activation"):
        T.chi1(3, 1.0, 0.0)
    net = vg.MLP([4, 6, 2], activation="tanh", dtype="float64", seed=0)
    with pytest.raises(TypeError, match=r"\bx\b.*float64"):
        T.jacobian(net, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"\bx\b.*\(4,\)"):
        T.jacobian(net, np.zeros(5))
    with pytest.raises(ValueError, match=r"\bx\b.*finite"):
        T.jacobian(net, np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"\bX\b"):
        T.jacobian_singular_values(net, np.zeros((0, 4)))

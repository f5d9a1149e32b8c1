"""vgcore.theory.finite_width (Hanin & Rolnick 2018): the per-example law of
ln(|delta_l|^2 / |delta_H|^2) at finite width, against its exact per-layer terms and against
vgcore's measurements.

One example is measured by running a network on a batch of 1: ``GradientFlow.delta_norm`` is
then that example's |delta_l|.  N independent networks (seeds) give N independent samples of
the log-profile.  The theory predicts their mean and variance exactly (for Gaussian weights), so
the tolerances come from the prediction and N: the sample mean must lie within
``z sqrt(var / N)`` of the predicted mean and the sample variance within the chi-square interval
``var chi2_{N-1}(q) / (N - 1)``, both at 1e-3 overall (Bonferroni over the layers compared).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma, polygamma

import vgcore as vg
from vgcore.measure import theory as T

ALPHA = 1e-3


@pytest.fixture(autouse=True)
def _one_thread():
    before = vg.get_num_threads()
    vg.set_num_threads(1)
    yield
    vg.set_num_threads(before)


def one_example_profiles(N, sizes, **kw):
    """(N, H) samples of ln(|delta_l|^2 / |delta_H|^2) for one example, one network each."""
    H = len(sizes) - 2
    out = np.empty((N, H))
    net = vg.MLP(sizes, dtype="float64", **kw)
    for s in range(N):
        net.reset_parameters(s)                 # a fresh draw of every weight and bias
        rng = np.random.default_rng(50_000 + s)
        net.forward(rng.standard_normal((1, sizes[0])))
        net.backward(rng.standard_normal((1, sizes[-1])))
        d = net.gradient_flow().delta_norm[:H] ** 2
        out[s] = np.log(d / d[-1])
    return out, net


def assert_law(samples, mean, var, layers):
    """The sample mean and variance of ``samples[:, layers]`` against the predicted law."""
    N = samples.shape[0]
    m = len(layers) * 2
    z = stats.norm.ppf(1 - ALPHA / (2 * m))
    lo, hi = (stats.chi2.ppf([ALPHA / (2 * m), 1 - ALPHA / (2 * m)], N - 1) / (N - 1))
    for l in layers:
        x = samples[:, l]
        assert abs(x.mean() - mean[l]) <= z * math.sqrt(var[l] / N), (l, x.mean(), mean[l])
        assert lo <= x.var(ddof=1) / var[l] <= hi, (l, x.var(ddof=1), var[l])


def test_log_gain_moments_exact_terms():
    # identity, Gaussian weights: (sigma_w2 / n) chi^2_n exactly
    m, v = T.log_gain_moments(64, 64, 1.0, "identity")
    assert m == pytest.approx(math.log(1 / 64) + digamma(32) + math.log(2), rel=1e-13)
    assert v == pytest.approx(polygamma(1, 32), rel=1e-13)
    # relu: (sigma_w2 / n) chi^2_K, K ~ Binomial(n, 1/2); against a direct simulation
    rng = np.random.default_rng(0)
    n, N = 40, 400_000
    K = rng.binomial(n, 0.5, N)
    K = K[K > 0]
    x = np.log(2.0 / n * rng.chisquare(K))
    m, v = T.log_gain_moments(n, n, 2.0, "relu")
    assert abs(x.mean() - m) < 5 * x.std() / math.sqrt(x.size)
    assert v == pytest.approx(x.var(), rel=0.02)          # 5 SE of a variance at N = 4e5
    # orthogonal: Beta(K/2, (n-K)/2), and nothing for a linear orthogonal layer
    assert T.log_gain_moments(40, 40, 1.0, "identity", orthogonal=True) == (0.0, 0.0)
    b = np.log(rng.beta(K / 2, (n - K + 1e-300) / 2)[K < n])
    m, v = T.log_gain_moments(n, n, 1.0, "relu", orthogonal=True)
    assert abs(b.mean() - m) < 5 * b.std() / math.sqrt(b.size)
    # Hanin & Rolnick's scale: about 5/n per relu layer, mean about -5/(2n) below the mean field
    m, v = T.log_gain_moments(1000, 1000, 2.0, "relu")
    assert v == pytest.approx(5 / 1000, rel=0.02) and m == pytest.approx(-2.5 / 1000, rel=0.05)
    with pytest.raises(ValueError, match="activation"):
        T.log_gain_moments(10, 10, 1.0, "tanh")
    with pytest.raises(ValueError, match="fan_in"):
        T.log_gain_moments(10, 12, 1.0, "relu", orthogonal=True)


@pytest.mark.parametrize("init, sigma_b", [("he_normal", None), ("he_normal", 0.5),
                                           ("orthogonal", None)])
def test_one_example_log_profile_follows_the_finite_width_law(init, sigma_b):
    """relu, width 32, 10 hidden layers, 300 networks measured on one example each."""
    kw = dict(activation="relu", init=init, sigma_b=sigma_b)
    if init == "orthogonal":
        kw["sigma_w"] = math.sqrt(2.0)
    samples, net = one_example_profiles(300, [32] * 12, **kw)
    pred = T.predicted_gradient_profile(net, q0=1.0)
    assert pred.band_reason is None
    assert_law(samples, pred.log_mean, pred.log_var, layers=[0, 4])
    # the mean-field line (ln 1 = 0) is below-Jensen-shifted: excluded at layer 1
    N = samples.shape[0]
    assert abs(samples[:, 0].mean()) > 3 * math.sqrt(pred.log_var[0] / N)
    np.testing.assert_allclose(np.log(pred.delta_sq), 0.0, atol=1e-12)
    assert pred.log_mean[0] < 0


def test_linear_orthogonal_stack_has_no_spread():
    net = vg.MLP([32] * 8, activation="identity", init="orthogonal", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    net.forward(rng.standard_normal((1, 32)))
    net.backward(rng.standard_normal((1, 32)))
    d = net.gradient_flow().delta_norm[:6]
    np.testing.assert_allclose(d / d[-1], 1.0, rtol=1e-12)
    pred = T.predicted_gradient_profile(net)
    np.testing.assert_array_equal(pred.log_var, 0.0)
    lo, hi = pred.band(3.0)
    np.testing.assert_allclose(lo, 1.0, rtol=1e-12)
    np.testing.assert_allclose(hi, 1.0, rtol=1e-12)


def test_a_batch_measurement_lies_inside_the_one_example_band():
    """A batch's profile (a sum over its examples, which share the weights) spreads less than
    one example's: every seed's batch-32 profile lies inside the 3-sigma band.  A network that
    is far off the prediction (sigma_w2 = 4 measured against He's 2) leaves it."""
    H = 8
    pred = None
    for s in range(8):
        net = vg.MLP([64] * (H + 2), activation="relu", init="he_normal", dtype="float64",
                     seed=s)
        rng = np.random.default_rng(s)
        net.forward(rng.standard_normal((32, 64)))
        net.backward(rng.standard_normal((32, 64)) / 32)
        d = net.gradient_flow().delta_norm[:H] ** 2
        pred = pred or T.predicted_gradient_profile(net, q0=1.0)
        lo, hi = pred.band(3.0)
        assert np.all((d / d[-1] >= lo) & (d / d[-1] <= hi)), s
    off = vg.MLP([64] * (H + 2), activation="relu", init="normal", sigma_w=2.0,
                 dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    off.forward(rng.standard_normal((32, 64)))
    off.backward(rng.standard_normal((32, 64)) / 32)
    d = off.gradient_flow().delta_norm[:H] ** 2
    lo, hi = pred.band(3.0)
    assert d[0] / d[-1] > hi[0]


def test_band_says_where_it_does_not_apply():
    tanh = T.predicted_gradient_profile(vg.MLP([16] * 5, activation="tanh"))
    assert tanh.band() is None and "relu and identity" in tanh.band_reason
    bn = T.predicted_gradient_profile(vg.MLP([16] * 5, activation="relu", norm="batch"),
                                      batch=8)
    assert bn.band() is None and "plain" in bn.band_reason
    spec = T.predicted_gradient_profile("relu", depth=4, sigma_w2=2.0)
    assert spec.band() is None and "width" in spec.band_reason
    spec = T.predicted_gradient_profile("relu", depth=4, sigma_w2=2.0, width=64)
    assert spec.band() is not None
    uniform = T.predicted_gradient_profile(vg.MLP([16] * 5, activation="relu",
                                                  init="he_uniform"))
    assert uniform.band() is not None and any("leading order" in n for n in uniform.notes)
    with pytest.raises(ValueError, match="relu and identity"):
        T.gradient_log_moments(["tanh"] * 3, [16] * 3, [1.0] * 4)

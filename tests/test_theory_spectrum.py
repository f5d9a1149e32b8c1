"""vgcore.theory.spectrum: the squared singular values of the input-output Jacobian predicted by
free probability (Pennington, Schoenholz & Ganguli 2017, 2018), checked against exact
results of random-matrix theory and against the spectra jacobian_singular_values measures on
vgcore's networks.

Engine comparisons: K networks (seeds) of width 128, each measured at a few inputs.  Per network
the mean squared singular value ``m_1`` and ``m_2 / m_1^2`` are one sample each; their means
over the K networks are compared with the predictions by a t-test at 1e-3 (Student quantile for
K - 1 degrees of freedom times the standard error).  The distribution of the non-zero squared
singular values is compared by the largest distance between distribution functions, bounded by
the Kolmogorov-Smirnov critical value at 1e-3 for the number of values pooled
(``1.95 / sqrt(N)``; the singular values of one matrix repel each other, so this bound, which
assumes independent values, is conservative) plus the finite-width excess of exact zeros
(``zero_fraction(n) - zero_mass``, predicted exactly).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import vgcore as vg
from vgcore.measure import theory as T

ALPHA = 1e-3


@pytest.fixture(autouse=True)
def _one_thread():
    before = vg.get_num_threads()
    vg.set_num_threads(1)
    yield
    vg.set_num_threads(before)


def fuss_catalan_2(x):
    """Density of the squared singular values of a product of two square Gaussian matrices
    (entries of variance 1/n), on (0, 27/4] (Penson & Zyczkowski 2011)."""
    a = 27 + 3 * np.sqrt(81 - 12 * x)
    return (2 ** (1 / 3) * math.sqrt(3) / (12 * math.pi)
            * (2 ** (1 / 3) * a ** (2 / 3) - 6 * x ** (1 / 3)) / (x ** (2 / 3) * a ** (1 / 3)))


def test_free_products_reproduce_random_matrix_theory():
    # a linear stack of two Gaussian layers: Fuss-Catalan moments 1, 3, 12, 55 and density
    p = T.predicted_jacobian_spectrum("identity", depth=1, sigma_w2=1.0, n_moments=4)
    np.testing.assert_allclose(p.moments, [1, 3, 12, 55], rtol=1e-12)
    x = np.array([0.02, 0.3, 1.0, 2.5, 5.0, 6.6])
    np.testing.assert_allclose(p.density(x), fuss_catalan_2(x), rtol=2e-5)
    # P = 4 weight layers: Fuss-Catalan numbers binom((P+1)k, k) / (P k + 1)
    p = T.predicted_jacobian_spectrum("identity", depth=3, sigma_w2=1.0, n_moments=3)
    np.testing.assert_allclose(p.moments, [1, 5, 35], rtol=1e-12)
    # orthogonal weights, linear: every singular value is exactly sqrt(sigma_w2)^L
    p = T.predicted_jacobian_spectrum("identity", depth=3, sigma_w2=1.1, weights="orthogonal")
    np.testing.assert_allclose(p.moments, 1.1 ** (4 * np.arange(1, 5)), rtol=1e-12)
    assert p.relative_variance == pytest.approx(0.0, abs=1e-12)
    # Pennington et al.: relative variance = sum_l (mu2/mu1^2 - 1) + number of Gaussian layers
    for act, w in (("relu", "gaussian"), ("tanh", "orthogonal"), ("tanh", "gaussian")):
        p = T.predicted_jacobian_spectrum(act, depth=5, sigma_w2=1.7, sigma_b2=0.1, weights=w)
        want = p.per_layer.sum() + (6 if w == "gaussian" else 0)
        assert p.relative_variance == pytest.approx(want, rel=1e-10), (act, w)
    p = T.predicted_jacobian_spectrum("relu", depth=5, sigma_w2=2.0)
    np.testing.assert_allclose(p.per_layer, 1.0, rtol=1e-12)       # E[relu'^4] / E[relu'^2]^2
    assert p.mean == pytest.approx(2.0 ** 6 * 0.5 ** 5, rel=1e-12) and p.zero_mass == 0.5


def test_density_is_a_probability_with_the_predicted_moments():
    for act, w, sw in (("relu", "gaussian", 2.0), ("hard_tanh", "gaussian", 1.3),
                       ("relu", "orthogonal", 2.0)):
        p = T.predicted_jacobian_spectrum(act, depth=4, sigma_w2=sw, sigma_b2=0.05, weights=w)
        grid = np.geomspace(1e-10 * p.mean, 100 * p.mean * 4 ** 6, 2500)
        d = p.density(grid)
        mass = np.trapezoid(d * grid, np.log(grid))
        assert mass + p.zero_mass == pytest.approx(1.0, abs=2e-3), (act, w)
        assert np.trapezoid(d * grid ** 2, np.log(grid)) == pytest.approx(p.mean, rel=2e-3)
        assert np.trapezoid(d * grid ** 3, np.log(grid)) == pytest.approx(p.moments[1],
                                                                          rel=5e-3)
        F = p.cdf(np.array([1e-10 * p.mean, p.mean, 1e3 * p.mean * 4 ** 6]))
        assert F[0] == pytest.approx(p.zero_mass, abs=2e-3) and F[-1] == pytest.approx(1.0)
    p = T.predicted_jacobian_spectrum("tanh", depth=3, sigma_w2=1.0)
    with pytest.raises(ValueError, match="tanh"):
        p.density([1.0])


def test_free_product_matches_large_random_matrices():
    """hard_tanh with orthogonal weights (sigma_w2 = 1): the squared singular values of
    D_1 O_1 D_2 O_2 ... (D_l diagonal with round(rho_l n) ones, O_l Haar orthogonal, n = 400,
    3 draws) against the predicted distribution: the atom at 0, the continuous part and the
    atom at the top (the product of the factors' norms, here 1), which holds
    sum_l rho_l - (H - 1) of the mass."""
    p = T.predicted_jacobian_spectrum("hard_tanh", depth=4, sigma_w2=1.0, sigma_b2=0.05,
                                      weights="orthogonal")
    rhos = p._rho_nonzero
    n, lam = 400, []
    rng = np.random.default_rng(0)
    for _ in range(3):
        B = np.eye(n)
        for r in rhos:
            d = np.zeros(n)
            d[rng.permutation(n)[:int(round(r * n))]] = 1.0
            q, R = np.linalg.qr(rng.standard_normal((n, n)))
            B = (B * d) @ (q * np.sign(np.diag(R)))
        lam.append(np.linalg.svd(B, compute_uv=False) ** 2)
    lam = np.concatenate(lam)
    lam = np.sort(np.where(np.abs(lam - 1) <= 1e-9, 1.0, lam))   # on the atom up to rounding
    loc, mass = p.top_atom
    assert loc == pytest.approx(1.0, rel=1e-12) and mass == pytest.approx(sum(rhos) - 3)
    assert lam.max() == 1.0
    assert np.mean(lam == 1.0) == pytest.approx(mass, abs=4 / n)
    pos = lam[lam > 1e-20 * lam[-1]]
    assert (lam.size - pos.size) / lam.size == pytest.approx(p.zero_mass, abs=2 / n)
    emp = np.searchsorted(lam, pos, side="right") / lam.size     # the atom's ties together
    assert np.max(np.abs(p.cdf(pos) - emp)) <= stats.kstwobign.ppf(1 - ALPHA) / math.sqrt(
        lam.size)


def _measured_spectra(K, n, H, rows=4, **kw):
    spectra = []
    for s in range(K):
        net = vg.MLP([n] * (H + 2), dtype="float64", seed=s, **kw)
        X = np.random.default_rng(100 + s).standard_normal((rows, n))
        spectra.append(T.jacobian_singular_values(net, X))
    return spectra, net


def _t_ok(samples, predicted):
    K = len(samples)
    tol = stats.t.ppf(1 - ALPHA / 2, K - 1) * np.std(samples, ddof=1) / math.sqrt(K)
    return abs(np.mean(samples) - predicted) <= tol, np.mean(samples), tol


@pytest.mark.parametrize("act, init, sigma_w, sigma_b", [
    ("relu", "he_normal", None, None), ("hard_tanh", "normal", 1.2, 0.3),
    ("tanh", "orthogonal", 1.05, 0.05), ("tanh", "normal", 1.05, 0.05)])
def test_predicted_spectrum_matches_the_measured_jacobians(act, init, sigma_w, sigma_b):
    K, n, H = 8, 128, 5
    spectra, net = _measured_spectra(K, n, H, activation=act, init=init, sigma_w=sigma_w,
                                     sigma_b=sigma_b)
    X = np.random.default_rng(0).standard_normal((256, n))
    pred = T.predicted_jacobian_spectrum(net, X=X)
    assert pred.weights == ("orthogonal" if init == "orthogonal" else "gaussian")
    lam = [s.singular_values ** 2 for s in spectra]
    ok, got, tol = _t_ok([np.log(x.mean()) for x in lam], math.log(pred.mean))
    assert ok, ("ln m1", got, math.log(pred.mean), tol)
    ok, got, tol = _t_ok([np.mean(x * x) / x.mean() ** 2 for x in lam],
                         pred.moments[1] / pred.mean ** 2)
    assert ok, ("m2/m1^2", got, pred.moments[1] / pred.mean ** 2, tol)
    pooled = T.JacobianSpectrum(np.concatenate([s.singular_values for s in spectra]),
                                *(np.concatenate([getattr(s, k) for s in spectra])
                                  for k in ("mean_squared", "max", "min")))
    c = pred.compare(pooled)
    if pred.zero_mass > 0:
        # the rank is the fewest active units of any layer: exact in expectation at width n
        zeros = [np.mean(s.singular_values <= n * np.finfo(float).eps * s.max[:, None])
                 for s in spectra]
        ok, got, tol = _t_ok(zeros, pred.zero_fraction(n))
        assert ok, ("zero fraction", got, pred.zero_fraction(n), tol)
        assert c["predicted_zero_fraction"] == pred.zero_fraction(n) > pred.zero_mass
        assert c["measured_zero_fraction"] == pytest.approx(np.mean(zeros), rel=1e-12)
    if c["cdf_distance"] is not None:
        # sampling (Kolmogorov-Smirnov at ALPHA) plus the finite-width excess of zeros
        excess = pred.zero_fraction(n) - pred.zero_mass
        N = pooled.singular_values.size
        assert c["cdf_distance"] <= stats.kstwobign.ppf(1 - ALPHA) / math.sqrt(N) + excess


def test_dynamical_isometry_is_named_when_it_holds():
    """tanh with orthogonal weights near q* = 0 (sigma_w2 = 1, no bias, small inputs): every
    squared singular value near 1 at depth 20; with Gaussian weights the spread grows by 1 per
    layer, and relu never has it (E[relu'^4] / E[relu'^2]^2 = 2)."""
    kw = dict(depth=20, sigma_w2=1.0, sigma_b2=0.0, q0=1e-3)
    orth = T.predicted_jacobian_spectrum("tanh", weights="orthogonal", **kw)
    gauss = T.predicted_jacobian_spectrum("tanh", weights="gaussian", **kw)
    relu = T.predicted_jacobian_spectrum("relu", depth=20, sigma_w2=2.0, weights="orthogonal")
    assert orth.isometric and orth.summary.startswith("dynamical isometry")
    assert not gauss.isometric and gauss.relative_variance > 20
    assert not relu.isometric and relu.relative_variance == pytest.approx(20.0, rel=1e-10)
    assert gauss.summary.startswith("no dynamical isometry")
    net = vg.MLP([64] * 22, activation="tanh", init="orthogonal", dtype="float64", seed=0)
    X = 0.03 * np.random.default_rng(0).standard_normal((3, 64))
    lam = T.jacobian_singular_values(net, X).singular_values ** 2
    pred = T.predicted_jacobian_spectrum(net, X=X)
    assert pred.isometric
    assert lam.mean() == pytest.approx(pred.mean, rel=0.01)
    assert np.all(np.abs(lam / lam.mean() - 1) < 0.1)         # every one within 10%


def test_what_the_spectrum_prediction_does_not_cover():
    p = T.predicted_jacobian_spectrum(vg.MLP([8, 8, 8, 8], activation="relu", norm="batch"))
    assert not p.applies and "not a product of free factors" in p.reason
    assert p.summary.startswith("no prediction")
    p = T.predicted_jacobian_spectrum(vg.MLP([8, 8, 8, 8], activation="relu", residual=0.5))
    assert not p.applies
    p = T.predicted_jacobian_spectrum(vg.MLP([20, 16, 16, 4], activation="relu",
                                             init="he_normal"))
    assert p.applies and math.isnan(p.moments[1]) and "square layers" in p.reason
    with pytest.raises(ValueError, match="weights"):
        T.predicted_jacobian_spectrum("tanh", depth=2, sigma_w2=1.0, weights="haar")
    with pytest.raises(ValueError, match="n_moments"):
        T.predicted_jacobian_spectrum("tanh", depth=2, sigma_w2=1.0, n_moments=1)


def test_mean_squared_singular_value_for_rectangular_networks():
    """E||J||_F^2 = n_out prod_l sigma_w2_l prod_l E[phi'(h_l)^2], shared by the
    min(n_in, n_out) non-trivial singular values: twice the square case's for 48 -> 96."""
    net = vg.MLP([48, 128, 128, 96], activation="relu", init="he_normal", dtype="float64",
                 seed=0)
    p = T.predicted_jacobian_spectrum(net)
    want = 96 / 48 * 2.0 ** 3 * 0.5 ** 2            # He: sigma_w2 = 2; E[relu'^2] = 1/2
    assert p.mean == pytest.approx(want, rel=1e-12)
    ms = []
    for s in range(8):
        net.reset_parameters(s)
        X = np.random.default_rng(s).standard_normal((2, 48))
        ms.append(np.log(T.jacobian_singular_values(net, X).mean_squared.mean()))
    ok, got, tol = _t_ok(ms, math.log(want))
    assert ok, (got, math.log(want), tol)


def test_jacobian_refuses_training_mode_batch_norm_and_dropout():
    x = np.zeros(6)
    for kw in (dict(norm="batch"), dict(dropout=0.1)):
        net = vg.MLP([6, 8, 8, 3], activation="tanh", dtype="float64", seed=0, **kw)
        counter = net.dropout_counter
        with pytest.raises(ValueError, match=r"\bnet\b.*training mode.*eval_mode"):
            T.jacobian(net, x)
        with pytest.raises(ValueError, match="eval_mode"):
            T.jacobian_singular_values(net, x[None])
        assert net.dropout_counter == counter             # nothing ran
        J = T.jacobian(net.eval_mode(), x)
        assert J.shape == (3, 6) and np.all(np.isfinite(J))
    net = vg.MLP([6, 8, 8, 3], activation="tanh", norm="layer", residual=0.5, seed=0,
                 dtype="float64")
    assert T.jacobian(net, x).shape == (3, 6)            # deterministic: fine in training mode

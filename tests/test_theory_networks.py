"""vgcore.theory beside vgcore's own measurements for every kind of network it builds: batch
norm, layer norm, dropout, residual blocks (a scale, "auto", zero-initialised branches) and
their combinations, plus the closed forms and limits each theory must reproduce.

How the engine comparisons are judged: K networks (seeds) of width n, each measured once at
initialisation (Gaussian inputs, dL/dy ~ N(0, 1)/B), give K samples of
``y_l = ln(||delta_l||^2 / ||delta_H||^2)`` per hidden layer (``GradientFlow.delta_norm``).
Their mean is compared with the prediction ``ln delta_sq[l]`` by a two-sided t-test whose
critical value is the Student-t quantile at 1e-3 overall, Bonferroni-split over the H - 1
layers (``t_{1 - 0.0005/(H-1)}(K - 1)``, 5.9 for K = 12, H = 8).  The tolerance is that quantile
times the standard error ``s / sqrt(K)``: it follows from the sample size and the measured
spread, nothing is tuned.  Where it matters the tests also check that the prediction a wrong
theory would make (no batch-norm factor, no mean in the residual recursion, ...) falls outside
the same tolerance, so each test would fail if the theory were wrong.  The widths are moderate
(128-256): the mean-field theory is the infinite-width limit and its finite-width corrections
(O(depth / width), see docs/theory.md) are well inside these tolerances.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import vgcore as vg
from vgcore.core.reference import ReferenceMLP
from vgcore.measure import theory as T

ALPHA = 1e-3          # family-wise level of every engine comparison


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and keeps the timing steady on a busy machine."""
    before = vg.get_num_threads()
    vg.set_num_threads(1)
    yield
    vg.set_num_threads(before)


def measured_log_profile(sizes, K=12, B=32, training=True, **kw):
    """(K, H) samples of ln(||delta_l||^2 / ||delta_H||^2) and the last network."""
    H = len(sizes) - 2
    out = np.empty((K, H))
    for s in range(K):
        net = vg.MLP(sizes, dtype="float64", seed=s, **kw)
        if not training:
            net.eval_mode()
        rng = np.random.default_rng(10_000 + s)
        X = rng.standard_normal((B, sizes[0]))
        net.forward(X)
        net.backward(rng.standard_normal((B, sizes[-1])) / B)
        d = net.gradient_flow().delta_norm[:H] ** 2
        out[s] = np.log(d / d[-1])
    return out, net


def t_tolerance(samples):
    """Per-layer tolerance on the mean of ``samples`` (K, m): Student-t quantile at ALPHA,
    Bonferroni over the m columns, times the standard error."""
    K, m = samples.shape
    q = stats.t.ppf(1 - ALPHA / (2 * m), K - 1)
    return q * samples.std(axis=0, ddof=1) / math.sqrt(K)


def assert_profile_matches(samples, predicted_delta_sq):
    """The t-test of the module docstring on layers 1..H-1; returns the tolerance."""
    y = samples[:, :-1]
    pred = np.log(predicted_delta_sq[:-1])
    tol = t_tolerance(y)
    dev = y.mean(axis=0) - pred
    assert np.all(np.abs(dev) <= tol), (np.round(dev, 3), np.round(tol, 3))
    return tol


# ------------------------------------------------------------------------------ batch norm

@pytest.mark.parametrize("B", [4, 5, 8, 64, 1000])
def test_batch_norm_linear_factor_is_exactly_b_minus_2_over_b_minus_3(B):
    st = T.batch_norm_stats("identity", B)
    assert st.second_moment == pytest.approx(1.0, abs=1e-12)          # |z|^2 = B
    assert st.cross_moment == pytest.approx(-1.0 / (B - 1), abs=1e-12)  # z orthogonal to 1
    assert st.mean == pytest.approx(0.0, abs=1e-12)
    assert st.kappa1 == pytest.approx((B - 2) / (B - 1), rel=1e-11)
    assert T.batch_norm_gradient_factor("identity", B) == pytest.approx((B - 2) / (B - 3),
                                                                        rel=1e-11)


def test_batch_norm_relu_factor_tends_to_pi_over_pi_minus_1():
    limit = math.pi / (math.pi - 1)
    assert T.batch_norm_gradient_factor("relu", math.inf) == pytest.approx(limit, rel=1e-12)
    values = [T.batch_norm_gradient_factor("relu", B) for B in (4, 8, 32, 256, 1000, 10_000)]
    assert all(a > b for a, b in zip(values, values[1:]))             # decreasing in B
    assert values[0] > 3.0
    # O(1/B) from the limit: ten times the batch, a tenth of the distance
    assert (values[-1] - limit) / (values[-2] - limit) == pytest.approx(0.1, rel=0.02)
    st = T.batch_norm_stats("relu", 16)
    assert st.second_moment == pytest.approx(0.5, abs=1e-12)          # z symmetric
    assert st.mu1 == pytest.approx(0.5, abs=1e-12)
    # B <= 3: E[1/Var_batch(h)] diverges
    assert T.batch_norm_gradient_factor("tanh", 3) == math.inf
    with pytest.raises(ValueError, match=r"\bbatch\b"):
        T.batch_norm_stats("tanh", 3)


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_batch_norm_sphere_quadrature_matches_monte_carlo(act):
    """The expectations over batch norm's output (z uniform on the sphere of radius sqrt(B)
    orthogonal to 1), by quadrature, against a Monte Carlo of 200k batches (B = 6): each
    within 5 Monte Carlo standard errors."""
    B, N = 6, 200_000
    rng = np.random.default_rng(0)
    y = rng.standard_normal((N, B))
    u = y - y.mean(axis=1, keepdims=True)
    z = math.sqrt(B) * u / np.linalg.norm(u, axis=1, keepdims=True)
    f = vg.reference.activation_forward(act, z)
    d = vg.reference.activation_derivative(act, z, f)
    z1, z2, f1, f2, d1, d2 = z[:, 0], z[:, 1], f[:, 0], f[:, 1], d[:, 0], d[:, 1]
    samples = {
        "mean": f1, "second_moment": f1 * f1, "cross_moment": f1 * f2, "mu1": d1 * d1,
        "nu": d1 * d2, "kappa2": -(d1 * d2) * (1 + z1 * z2) / B,
        "kappa1": d1 * d1 * (1 - 1 / B - z1 * z1 / B) + (d1 * d2) * (1 + z1 * z2) / B,
    }
    st = T.batch_norm_stats(act, B)
    for name, s in samples.items():
        se = s.std() / math.sqrt(N)
        assert abs(getattr(st, name) - s.mean()) < 5 * se, (name, getattr(st, name), s.mean())


@pytest.mark.parametrize("act, init, B, width", [("relu", "he_normal", 8, 128),
                                                 ("tanh", "glorot_normal", 16, 128),
                                                 ("identity", "lecun_normal", 6, 128),
                                                 ("sigmoid", "standard", 32, 512)])
def test_batch_norm_profile_explodes_as_predicted(act, init, B, width):
    """Deep batch-normalised stacks explode backwards at initialisation by lambda(B) per layer
    (Yang et al. 2019), measured on vgcore's networks (8 hidden layers).  Sigmoid's normalised
    outputs have a large mean beside their spread (s - c = 0.05 of s = 0.29), which makes the
    finite-width correction of the last layer's step larger (+0.09 in ln at width 128, +0.05 at
    256, +0.01 at 512): it is measured at width 512."""
    samples, net = measured_log_profile([width] * 10, B=B, activation=act, init=init,
                                        norm="batch")
    pred = T.predicted_gradient_profile(net, q0=1.0, batch=B)
    assert pred.applies and pred.batch == B
    lam = T.batch_norm_gradient_factor(act, B)
    np.testing.assert_allclose(pred.chi[:-2], lam, rtol=1e-10)     # deep in the stack
    assert any("explode backwards" in n for n in pred.notes)
    tol = assert_profile_matches(samples, pred.delta_sq)
    # without the factor (a flat profile) the first layer would be outside the tolerance
    assert abs(samples[:, 0].mean()) > tol[0]


def test_batch_norm_rescues_the_forward_signal_at_any_weight_scale():
    """Every batch-normalised layer sees the same normalised input whatever sigma_w2: the
    activations' mean and spread are batch_norm_stats' at every layer, while the gradient
    factor is the same lambda(B) for sigma_w = 0.5 and 3."""
    B = 16
    st = T.batch_norm_stats("relu", B)
    for sw in (0.5, 3.0):
        net = vg.MLP([128] * 8, activation="relu", init="normal", sigma_w=sw, norm="batch",
                     dtype="float64", seed=1)
        X = np.random.default_rng(2).standard_normal((B, 128))
        net.forward(X)
        net.backward(np.random.default_rng(3).standard_normal((B, 128)) / B)
        f = net.gradient_flow()
        hidden = slice(0, 6)
        np.testing.assert_allclose(f.act_mean[hidden], st.mean, atol=0.05)
        np.testing.assert_allclose(f.act_std[hidden] ** 2, st.second_moment - st.mean ** 2,
                                   atol=0.05)
        g = T.gradient_growth("relu", sw * sw, norm="batch", batch=B)
        assert g.factor == pytest.approx(st.factor, rel=1e-12) and g.reason is None


# ------------------------------------------------------------------------------ layer norm

def test_layer_norm_map_and_chi1_closed_forms():
    eps = 1e-5
    # relu: E[relu(sqrt(q_hat) z)^2] = q_hat / 2, E[relu'^2] = 1/2
    q = T.layer_norm_fixed_point("relu", 2.0, 0.1)
    qh = q / (q + eps)
    assert q == pytest.approx(2.0 * qh / 2 + 0.1, rel=1e-11)
    assert T.layer_norm_chi1("relu", 2.0, 0.1) == pytest.approx(2.0 * 0.5 / (q + eps),
                                                                 rel=1e-11)
    assert T.layer_norm_variance_map(q, "relu", 2.0, 0.1) == pytest.approx(q, rel=1e-11)
    # without biases layer norm is scale invariant: chi_1 = E[phi'^2] / E[phi^2]
    for sw in (0.5, 2.0, 8.0):
        x = T.layer_norm_chi1("tanh", sw, 0.0)
        mu1 = T.chi1("tanh", 1.0, 0.0, q=1.0)
        s = T.variance_map(1.0, "tanh", 1.0, 0.0)
        assert x == pytest.approx(mu1 / s, rel=1e-4)                 # up to eps
    cp = T.critical_point("tanh", 0.0, norm="layer")
    assert math.isnan(cp.sigma_w2) and "invariant" in cp.reason
    # with biases tanh has a critical line, relu (E[phi'^2] = E[phi^2]) has none
    cp = T.critical_point("tanh", 0.05, norm="layer")
    assert cp.reason is None
    assert T.layer_norm_chi1("tanh", cp.sigma_w2, 0.05) == pytest.approx(1.0, abs=1e-9)
    cp = T.critical_point("relu", 0.05, norm="layer")
    assert math.isnan(cp.sigma_w2) and "< 1 for every sigma_w2" in cp.reason
    assert T.layer_norm_chi1("relu", 1e4, 0.05) < 1


@pytest.mark.parametrize("act, init, sigma_b", [("tanh", "glorot_normal", 0.3),
                                                ("relu", "he_normal", None)])
def test_layer_norm_profile_matches_engine(act, init, sigma_b):
    samples, net = measured_log_profile([128] * 10, activation=act, init=init, norm="layer",
                                        sigma_b=sigma_b)
    pred = T.predicted_gradient_profile(net, q0=1.0)
    assert pred.applies and np.all(pred.q_hat > 0.99)
    assert_profile_matches(samples, pred.delta_sq)


# ------------------------------------------------------------------------------ dropout

def test_dropout_shifts_the_fixed_point_and_chi1():
    p = 0.2
    keep = 1 - p
    # relu exactly: V(q) = sigma_w2 q / (2 keep) + sigma_b2
    assert T.fixed_point("relu", 1.2, 0.1, dropout=p) == pytest.approx(0.1 / (1 - 1.2 / (2 * keep)),
                                                                       rel=1e-13)
    assert T.chi1("relu", 1.2, 0.1, dropout=p) == pytest.approx(1.2 / (2 * keep), rel=1e-13)
    assert T.critical_sigma_w2("relu", 0.0, dropout=p) == pytest.approx(2 * keep, rel=1e-14)
    # tanh: q* moves up, the edge of chaos moves down
    assert T.fixed_point("tanh", 1.5, 0.05, dropout=p) > T.fixed_point("tanh", 1.5, 0.05)
    e = T.dropout_effect("tanh", 1.5, 0.05, p)
    assert e.critical_sigma_w2_with < e.critical_sigma_w2_without
    assert e.with_dropout.chi_1 > e.without.chi_1
    # two examples get independent masks: C(1) = (sw s + sb) / (sw s / keep + sb) < 1
    q = e.with_dropout.q_star
    s = (q - 0.05) * keep / 1.5
    assert T.correlation_map(1.0, "tanh", 1.5, 0.05, q=q, dropout=p) == pytest.approx(
        (1.5 * s + 0.05) / q, rel=1e-10)
    # no critical point: at chi_1 = 1 the correlation depth scale stays finite
    sw = e.critical_sigma_w2_with
    d = T.depth_scales("tanh", sw, 0.05, dropout=p)
    assert d.chi_1 == pytest.approx(1.0, abs=1e-9)
    assert d.c_star < 1 and d.chi_c < 1 and math.isfinite(d.xi_c)
    assert T.depth_scales("tanh", T.critical_sigma_w2("tanh", 0.05), 0.05).xi_c > 1e6
    assert math.isfinite(e.trainable_depth[1]) and e.trainable_depth[1] < e.trainable_depth[0]
    assert "no true critical point" in T.critical_point("tanh", 0.05, dropout=p).note


@pytest.mark.parametrize("act, init, p, sigma_w, sigma_b", [
    ("tanh", "normal", 0.2, 1.3, 0.2), ("relu", "he_normal", 0.1, None, None)])
def test_dropout_profile_matches_engine_in_both_modes(act, init, p, sigma_w, sigma_b):
    kw = dict(activation=act, init=init, dropout=p, sigma_w=sigma_w, sigma_b=sigma_b)
    samples, net = measured_log_profile([128] * 10, **kw)
    pred = T.predicted_gradient_profile(net, q0=1.0)
    assert np.all(pred.dropouts == p)
    tol = assert_profile_matches(samples, pred.delta_sq)
    # evaluation mode: no masks, the plain network's profile
    evals, net = measured_log_profile([128] * 10, training=False, **kw)
    pred_eval = T.predicted_gradient_profile(net, q0=1.0)
    assert np.all(pred_eval.dropouts == 0)
    assert_profile_matches(evals, pred_eval.delta_sq)
    # the 1/(1 - p) per layer is resolved: the two predictions differ by more than the tolerance
    assert abs(math.log(pred.delta_sq[0] / pred_eval.delta_sq[0])) > tol[0]


# ------------------------------------------------------------------------------ residual

def _stream_moments(net, X):
    ref = ReferenceMLP.from_network(net)
    ref.forward(X)
    outs = ref.layer_outputs[:-1]
    return (np.array([np.mean(o.astype(np.float64) ** 2) for o in outs]),
            np.array([np.mean(o) for o in outs]))


def test_residual_stream_carries_the_branch_mean():
    """relu blocks x + 0.5 relu(x W + b), He, 8 blocks of width 256: the stream's second moment
    follows the recursion with the mean's cross term 2 alpha M m, not L ln(1 + alpha^2)."""
    K, H = 8, 8
    logQ, M = np.empty((K, H)), np.empty((K, H))
    for s in range(K):
        net = vg.MLP([256] * (H + 2), activation="relu", init="he_normal", residual=0.5,
                     dtype="float64", seed=s)
        X = np.random.default_rng(s).standard_normal((64, 256))
        Q, m = _stream_moments(net, X)
        logQ[s], M[s] = np.log(Q), m
    pred = T.predicted_gradient_profile(net, q0=1.0)
    mom = T.residual_moments("relu", H, 2.0, 0.0, 0.5)
    np.testing.assert_allclose(mom["second_moment"], pred.second_moment, rtol=1e-12)
    np.testing.assert_allclose(mom["mean"], pred.mean, rtol=1e-12)
    tol_q, tol_m = t_tolerance(logQ), t_tolerance(M)
    assert np.all(np.abs(logQ.mean(0) - np.log(pred.second_moment)) <= tol_q)
    assert np.all(np.abs(M.mean(0) - pred.mean) <= tol_m)
    # the zero-mean recursion (1 + alpha^2)^l is far off: Q_8 = 34 instead of 5.96
    naive = np.log(mom["second_moment_without_mean"])
    np.testing.assert_allclose(naive, np.arange(1, H + 1) * math.log(1.25), rtol=1e-12)
    assert abs(logQ[:, -1].mean() - naive[-1]) > 5 * tol_q[-1]
    # tanh branches have zero mean: both recursions agree
    t = T.residual_moments("tanh", H, 1.0, 0.0, 0.5)
    np.testing.assert_allclose(t["second_moment"], t["second_moment_without_mean"], rtol=1e-12)
    np.testing.assert_allclose(t["mean"], 0.0, atol=1e-15)


@pytest.mark.parametrize("act, init, residual", [("tanh", "glorot_normal", 0.5),
                                                 ("relu", "he_normal", "auto"),
                                                 ("sigmoid", "standard", 0.3)])
def test_residual_gradient_profile_matches_engine(act, init, residual):
    samples, net = measured_log_profile([128] * 10, activation=act, init=init,
                                        residual=residual)
    pred = T.predicted_gradient_profile(net, q0=1.0)
    alpha = 1 / math.sqrt(8) if residual == "auto" else residual
    np.testing.assert_allclose(pred.residuals, alpha)
    assert_profile_matches(samples, pred.delta_sq)
    if act == "relu":          # homogeneous: a constant factor 1 + alpha^2 sigma_w2 / 2
        np.testing.assert_allclose(pred.chi[:-1], 1 + alpha ** 2, rtol=1e-12)
        assert T.gradient_growth("relu", 2.0, residual=alpha).factor == pytest.approx(
            1 + alpha ** 2, rel=1e-14)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_zero_initialised_branches(act):
    """residual_init="zero": every block is the identity at initialisation.  The gradient
    passes unchanged, delta_l = alpha phi'(0) dL/dx (all equal: tanh, sigmoid; exactly 0 for
    relu, whose relu'(0) = 0), and the stream shifts by alpha phi(0) per block."""
    alpha, H = 0.5, 6
    net = vg.MLP([32] * (H + 2), activation=act, residual=alpha, residual_init="zero",
                 dtype="float64", seed=0)
    X = np.random.default_rng(0).standard_normal((16, 32))
    net.forward(X)
    net.backward(np.random.default_rng(1).standard_normal((16, 32)) / 16)
    d2 = net.gradient_flow().delta_norm[:H] ** 2
    pred = T.predicted_gradient_profile(net, X=X)
    assert np.all(pred.sigma_w2[:-1] == 0) and np.all(pred.q == 0)
    Q, M = _stream_moments(net, X)
    np.testing.assert_allclose(M, pred.mean, rtol=1e-12, atol=1e-14)   # exact, any width
    np.testing.assert_allclose(Q, pred.second_moment, rtol=0.05)       # row means vary
    if act == "relu":
        assert np.all(d2 == 0)
        np.testing.assert_array_equal(pred.delta_sq_vs_output, 0.0)
        assert np.all(np.isnan(pred.delta_sq))
        assert any("exactly 0" in n for n in pred.notes)
    else:
        np.testing.assert_allclose(d2 / d2[-1], 1.0, rtol=1e-12)
        np.testing.assert_allclose(pred.delta_sq, 1.0, rtol=1e-14)
        phi0 = {"tanh": 0.0, "sigmoid": 0.5}[act]
        np.testing.assert_allclose(np.diff(pred.mean), alpha * phi0, atol=1e-14)


@pytest.mark.parametrize("name, kw", [
    ("residual + batch norm", dict(activation="relu", init="he_normal", residual=0.5,
                                   norm="batch")),
    ("residual + layer norm", dict(activation="tanh", init="glorot_normal", residual="auto",
                                   norm="layer")),
    ("batch norm + dropout", dict(activation="relu", init="he_normal", norm="batch",
                                  dropout=0.2)),
    ("batch norm every other layer", dict(activation="tanh", init="glorot_normal",
                                          norm=["batch", None] * 4)),
])
def test_combinations_match_engine(name, kw):
    samples, net = measured_log_profile([128] * 10, B=16, **kw)
    pred = T.predicted_gradient_profile(net, q0=1.0, batch=16)
    assert pred.applies, name
    assert_profile_matches(samples, pred.delta_sq)


# ------------------------------------------------------------------------------ reasons

def test_profile_says_why_no_theory_applies():
    net = vg.MLP([16] * 5, activation="tanh", norm="batch", seed=0)
    p = T.predicted_gradient_profile(net.eval_mode(), batch=32)
    assert not p.applies and "evaluation mode" in p.reason and np.all(np.isnan(p.delta_sq))
    assert p.band() is None
    p = T.predicted_gradient_profile(net.train_mode(), batch=3)
    assert not p.applies and "B <= 3" in p.reason
    X = np.tile(np.random.default_rng(0).standard_normal(16), (8, 1))
    p = T.predicted_gradient_profile(net, X=X, batch=8)
    assert not p.applies and "identical" in p.reason
    with pytest.raises(ValueError, match=r"\bbatch\b"):
        T.predicted_gradient_profile(net)
    # a network carries its own options
    with pytest.raises(ValueError, match=r"\bnorm\b"):
        T.predicted_gradient_profile(vg.MLP([4, 4, 2]), norm="layer")
    with pytest.raises(ValueError, match=r"\btraining\b"):
        T.predicted_gradient_profile("tanh", depth=3, sigma_w2=1.0, training=True)
    with pytest.raises(ValueError, match=r"\bresidual\b"):
        T.predicted_gradient_profile("tanh", depth=3, sigma_w2=1.0, residual="twice")
    with pytest.raises(ValueError, match=r"\bdropout\b"):
        T.predicted_gradient_profile("tanh", depth=3, sigma_w2=1.0, dropout=1.0)
    with pytest.raises(ValueError, match=r"\bnorm\b"):
        T.predicted_gradient_profile("tanh", depth=3, sigma_w2=1.0, norm="group")
    # plain networks: the same numbers as before, and a spec agrees with a network
    net = vg.MLP([16] * 6, activation="tanh", init="normal", sigma_w=1.2, norm="layer",
                 residual=0.4, dropout=0.1, seed=0)
    a = T.predicted_gradient_profile(net, q0=0.7)
    b = T.predicted_gradient_profile("tanh", depth=4, sigma_w2=1.44, q0=0.7, norm="layer",
                                     residual=0.4, dropout=0.1)
    np.testing.assert_allclose(a.delta_sq, b.delta_sq, rtol=1e-12)
    np.testing.assert_allclose(a.second_moment, b.second_moment, rtol=1e-12)


def test_critical_point_and_gradient_growth_for_every_family():
    crit = T.critical_sigma_w2("tanh", 0.05)
    cp = T.critical_point("tanh", 0.05)
    assert cp.sigma_w2 == crit and cp.reason is None and cp.note is None
    for kw, words in [(dict(norm="batch", batch=64), "independent of sigma_w2"),
                      (dict(residual=0.5), "no ordered phase"),
                      (dict(residual="auto"), "no ordered phase")]:
        cp = T.critical_point("tanh", 0.05, **kw)
        assert math.isnan(cp.sigma_w2) and words in cp.reason
        assert math.isnan(T.critical_sigma_w2("tanh", 0.05, **kw))
    assert "1.493" in T.critical_point("relu", 0.0, norm="batch", batch=64).reason
    # growth factors
    assert T.gradient_growth("tanh", 1.5, 0.05).factor == pytest.approx(T.chi1("tanh", 1.5, 0.05))
    g = T.gradient_growth("relu", 2.0, norm="batch")
    assert math.isnan(g.factor) and "batch size" in g.reason
    g = T.gradient_growth("relu", 2.0, norm="batch", batch=3)
    assert g.factor == math.inf and "diverges" in g.reason
    g = T.gradient_growth("tanh", 1.0, residual=0.5)
    assert math.isnan(g.factor) and "depth" in g.reason
    assert T.gradient_growth("relu", 2.0, residual=0.5, dropout=0.2).factor == pytest.approx(
        1.25 / 0.8, rel=1e-14)
    # batch norm with dropout: the masks put back the batch-mean component
    st = T.batch_norm_stats("relu", 16)
    g = T.gradient_growth("relu", 2.0, norm="batch", batch=16, dropout=0.2)
    assert g.factor == pytest.approx(16 * (st.kappa1 + 0.2 * st.kappa2)
                                     / ((st.second_moment - 0.8 * st.cross_moment) * 13),
                                     rel=1e-12)

"""The papers behind vgcore's numbers, each claim reproduced on vgcore's own networks.

The README's References section points here (and to tests/test_acceptance.py and
tests/test_theory.py for the claims tested there).  All runs are float64 at initialisation
unless said otherwise, seeded, and small enough for the suite; the tolerances come from
running several seeds and are stated beside each assertion.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import vgcore as vg
from vgcore.core.reference import ReferenceMLP
from vgcore.measure import theory as T


def one_step_flow(net, X, y):
    """The gradient flow of one measured forward and backward pass (no update)."""
    net.train_step(X, y, "cross_entropy")
    return net.gradient_flow()


def gaussian_batch(n, d, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return shift + scale * rng.standard_normal((n, d)), np.arange(n) % 10


def test_hochreiter_1991_bengio_1994_error_signals_decay_exponentially_through_sigmoids():
    """Hochreiter (1991), Bengio, Simard & Frasconi (1994): the backpropagated error is
    multiplied at every layer by phi' (<= 1/4 for the sigmoid) times the weights, so it decays
    exponentially with depth.  20 sigmoid layers of 64, standard init: every layer's gain is
    below 1/4 (measured 0.13-0.15), log10 ||delta_l|| is a straight line in l (largest
    residual of the fit 0.023 decades), and the first layer gets ~1e-17 of the output's
    error."""
    net = vg.MLP([64] * 21 + [10], activation="sigmoid", init="standard", dtype="float64",
                 seed=0)
    flow = one_step_flow(net, *gaussian_batch(128, 64))
    gains = flow.gain[:20]
    assert np.all(gains < 0.25) and np.all(gains > 0.05)
    log_delta = np.log10(flow.delta_norm[:20])
    layer = np.arange(20)
    fit = np.polyfit(layer, log_delta, 1)
    assert np.abs(log_delta - np.polyval(fit, layer)).max() < 0.1
    assert 10 ** fit[0] > 4                # more than 4x per layer, i.e. gain < 1/4
    assert flow.delta_ratio < 1e-15


def test_glorot_bengio_2010_normalised_init_keeps_activations_and_errors_from_shrinking():
    """Glorot & Bengio (2010): under the "standard" initialisation U(+-1/sqrt(n)) the
    activations of a deep tanh network shrink layer after layer and so does the backpropagated
    error; the normalised initialisation (glorot_uniform, variance 2/(n_in + n_out)) keeps
    both within a small factor.  10 tanh layers of 256, batch 128: standard init, activation
    std last/first 0.007 and delta_rms first/last 0.005; glorot_uniform 0.37 and 0.28."""
    X, y = gaussian_batch(128, 256)
    out = {}
    for init in ("standard", "glorot_uniform"):
        net = vg.MLP([256] * 11 + [10], activation="tanh", init=init, dtype="float64", seed=0)
        flow = one_step_flow(net, X, y)
        ref = ReferenceMLP.from_network(net)
        ref.forward(X)
        stds = [a.std() for a in ref.post_activations[:-1]]
        out[init] = (stds[-1] / stds[0], flow.delta_rms[0] / flow.delta_rms[9])
    assert out["standard"][0] < 0.02 and out["standard"][1] < 0.02
    assert out["glorot_uniform"][0] > 0.2 and out["glorot_uniform"][1] > 0.1


def test_saxe_2014_orthogonal_init_makes_a_deep_linear_network_an_exact_isometry():
    """Saxe, McClelland & Ganguli (2014): random orthogonal weights make a deep linear network's
    input-output Jacobian an isometry at any depth (all singular values 1: the condition for
    their depth-independent learning times), while scaled Gaussian weights of the same
    variance spread the spectrum with depth.  30 linear layers of 32: orthogonal, every
    singular value is 1 to 1e-12; lecun_normal (variance 1/n), the condition number is
    above 1e6 (measured 1e17)."""
    X = np.zeros((1, 32))
    ortho = vg.MLP([32] * 31, activation="identity", init="orthogonal", dtype="float64", seed=0)
    sv = T.jacobian_singular_values(ortho, X).singular_values
    np.testing.assert_allclose(sv, 1.0, atol=1e-12)
    gauss = vg.MLP([32] * 31, activation="identity", init="lecun_normal", dtype="float64",
                   seed=0)
    spec = T.jacobian_singular_values(gauss, X)
    assert spec.condition[0] > 1e6


def test_pennington_2017_orthogonal_tanh_at_criticality_achieves_dynamical_isometry():
    """Pennington, Schoenholz & Ganguli (2017), "Resurrecting the sigmoid": tanh with orthogonal
    weights at the edge of chaos with a small q* ((sigma_w2, sigma_b2) = (1.05, 2.01e-5), their
    values) keeps the Jacobian's squared singular values concentrated around 1, while the same
    network with Gaussian weights, and ReLU even with orthogonal weights, spread them.
    16 layers of 48, inputs at q*: the variance of sv^2 is 0.08-0.09 (orthogonal tanh),
    5-10 (Gaussian tanh), 65-135 (orthogonal ReLU, He gain) over three seeds."""
    sw2, sb2 = 1.05, 2.01e-5
    q_star = T.fixed_point("tanh", sw2, sb2)
    assert T.chi1("tanh", sw2, sb2) == pytest.approx(1.0, abs=0.01)       # near-critical
    W, D = 48, 16
    X = np.random.default_rng(0).standard_normal((2, W)) * math.sqrt(q_star)

    def spread(activation, init, sigma_w, sigma_b):
        net = vg.MLP([W] * (D + 2), activation=activation, init=init, sigma_w=sigma_w,
                     sigma_b=sigma_b, dtype="float64", seed=0)
        sv2 = T.jacobian_singular_values(net, X).singular_values ** 2
        return sv2.mean(), sv2.var(), sv2.max()

    mean_o, var_o, max_o = spread("tanh", "orthogonal", math.sqrt(sw2), math.sqrt(sb2))
    _, var_g, _ = spread("tanh", "normal", math.sqrt(sw2), math.sqrt(sb2))
    _, var_r, _ = spread("relu", "orthogonal", math.sqrt(2.0), None)
    assert mean_o == pytest.approx(1.0, abs=0.2) and max_o < 2.0 and var_o < 0.15
    assert var_g > 3.0 and var_g > 30 * var_o
    assert var_r > 20.0


def test_klambauer_2017_selu_attracts_mean_zero_and_unit_variance():
    """Klambauer et al. (2017): with SELU and lecun_normal weights, (mean 0, variance 1) is an
    attracting fixed point of the layer-to-layer map: activations started away from it
    (inputs of mean 0.5 and variance 4, or variance 0.25) converge to it.  20 layers of 500:
    the last layer's activations have |mean| < 0.05 and variance within 0.06 of 1 (measured
    1.04 and 0.98).  tests/test_theory.py pins the fixed point itself
    (test_selu_self_normalising_fixed_point)."""
    net = vg.MLP([500] * 21 + [10], activation="selu", init="lecun_normal", dtype="float64",
                 seed=0)
    for shift, scale in ((0.5, 2.0), (-0.3, 0.5)):
        X, _ = gaussian_batch(64, 500, seed=1, scale=scale, shift=shift)
        ref = ReferenceMLP.from_network(net)
        ref.forward(X)
        acts = ref.post_activations[:-1]
        first, last = acts[0], acts[-1]
        assert abs(first.var() - 1.0) > 0.4          # it started away from the fixed point
        assert abs(last.mean()) < 0.05
        assert last.var() == pytest.approx(1.0, abs=0.06)


def test_yang_2019_batch_norm_makes_gradients_explode_at_initialisation():
    """Yang et al. (2019), "A mean field theory of batch normalization": at initialisation a
    deep network with batch norm has gradients that explode with depth, for ReLU by
    pi / (pi - 1) = 1.468 per layer in squared norm.  30 ReLU layers of 128 with batch norm in
    training mode, He init, batch 128: the geometric mean of the squared per-layer gain of the
    error is 1.47-1.48 over three seeds (within 5% of the theory asserted), and the first layer's
    weight gradient is over 100x the output layer's."""
    rate = math.pi / (math.pi - 1)
    net = vg.MLP([128] * 31 + [10], activation="relu", init="he_normal", norm="batch",
                 dtype="float64", seed=0)
    flow = one_step_flow(net, *gaussian_batch(128, 128))
    g2 = np.exp(np.mean(np.log(flow.gain[3:27]))) ** 2
    assert g2 == pytest.approx(rate, rel=0.05)
    assert flow.grad_ratio > 100

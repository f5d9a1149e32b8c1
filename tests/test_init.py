"""Initialisers: documented variances, orthogonality, seeding, bias scale, dtype agreement."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R

FAN_IN, FAN_OUT = 400, 300


def documented_variance(name, fan_in, fan_out, sigma_w=None):
    """The variance table of vgcore.init's docstring."""
    return {
        "standard": 1 / (3 * fan_in),
        "glorot_uniform": 2 / (fan_in + fan_out),
        "glorot_normal": 2 / (fan_in + fan_out),
        "he_uniform": 2 / fan_in,
        "he_normal": 2 / fan_in,
        "lecun_uniform": 1 / fan_in,
        "lecun_normal": 1 / fan_in,
        "orthogonal": (1.0 if sigma_w is None else sigma_w) ** 2 / max(fan_in, fan_out),
        "normal": (sigma_w or 0.0) ** 2 / fan_in,
    }[name]


def _kwargs(name):
    return dict(sigma_w=1.7) if name == "normal" else {}


@pytest.mark.parametrize("fans", [(FAN_IN, FAN_OUT), (FAN_OUT, FAN_IN)], ids=["wide", "tall"])
@pytest.mark.parametrize("name", vg.INITIALISERS)
def test_weight_variance_matches_documentation(name, fans):
    fan_in, fan_out = fans
    net = vg.MLP([fan_in, fan_out], init=name, dtype="float64", seed=0, **_kwargs(name))
    W = net.weights[0]
    want = documented_variance(name, fan_in, fan_out, **_kwargs(name))
    # 120 000 draws: the sample variance is within ~1% (std error sqrt(2/N) = 0.4% for normal)
    assert np.mean(W**2) == pytest.approx(want, rel=0.03)
    assert abs(np.mean(W)) < 3 * np.sqrt(want / W.size) * 1.5
    np.testing.assert_array_equal(net.biases[0], 0)


@pytest.mark.parametrize("name", ["standard", "glorot_uniform", "he_uniform", "lecun_uniform"])
def test_uniform_initialisers_respect_their_bounds(name):
    net = vg.MLP([FAN_IN, FAN_OUT], init=name, dtype="float64", seed=1)
    bound = np.sqrt(3 * documented_variance(name, FAN_IN, FAN_OUT))
    W = net.weights[0]
    assert np.max(np.abs(W)) <= bound
    assert np.max(np.abs(W)) > 0.99 * bound          # and fill the interval


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal", "lecun_normal", "normal"])
def test_normal_initialisers_have_gaussian_tails(name):
    net = vg.MLP([FAN_IN, FAN_OUT], init=name, dtype="float64", seed=2, **_kwargs(name))
    W = net.weights[0]
    z = W / np.sqrt(documented_variance(name, FAN_IN, FAN_OUT, **_kwargs(name)))
    # kurtosis 3 (a uniform would give 1.8); some draws beyond 3 sigma
    assert np.mean(z**4) / np.mean(z**2) ** 2 == pytest.approx(3.0, abs=0.1)
    assert np.mean(np.abs(z) > 3) == pytest.approx(0.0027, abs=0.001)


@pytest.mark.parametrize("gain", [None, 1.0, 0.5, 2.0])
@pytest.mark.parametrize("fans", [(40, 30), (30, 40), (25, 25), (1, 7), (7, 1)])
def test_orthogonal_init_has_orthonormal_rows_or_columns_times_gain(fans, gain):
    fan_in, fan_out = fans
    kwargs = {} if gain is None else dict(sigma_w=gain)
    net = vg.MLP([fan_in, fan_out], init="orthogonal", dtype="float64", seed=3, **kwargs)
    W = net.weights[0]
    g = 1.0 if gain is None else gain
    if fan_in >= fan_out:
        np.testing.assert_allclose(W.T @ W, g**2 * np.eye(fan_out), atol=1e-12)
    if fan_in <= fan_out:
        np.testing.assert_allclose(W @ W.T, g**2 * np.eye(fan_in), atol=1e-12)


def test_orthogonal_init_float32_is_orthogonal_to_float32_precision():
    net = vg.MLP([64, 48, 64], init="orthogonal", dtype="float32", seed=4)
    W1, W2 = (w.astype(np.float64) for w in net.weights)
    np.testing.assert_allclose(W1.T @ W1, np.eye(48), atol=1e-6)
    np.testing.assert_allclose(W2 @ W2.T, np.eye(48), atol=1e-6)


def test_orthogonal_init_is_not_sign_biased():
    # the signs are fixed by R's diagonal: Q's diagonal is not systematically positive
    diag = np.concatenate([np.diag(vg.MLP([30, 30], init="orthogonal", dtype="float64",
                                          seed=s).weights[0]) for s in range(40)])
    assert abs(np.mean(np.sign(diag))) < 0.1


@pytest.mark.parametrize("name", vg.INITIALISERS)
def test_same_seed_gives_identical_parameters_and_different_seeds_differ(name):
    sizes = [13, 21, 8, 5]
    a = vg.MLP(sizes, init=name, seed=42, sigma_b=0.1, **_kwargs(name))
    b = vg.MLP(sizes, init=name, seed=42, sigma_b=0.1, **_kwargs(name))
    c = vg.MLP(sizes, init=name, seed=43, sigma_b=0.1, **_kwargs(name))
    np.testing.assert_array_equal(a.params, b.params)
    assert np.mean(a.params == c.params) < 0.01
    # no seed: fresh entropy each time
    d = vg.MLP(sizes, init=name, **_kwargs(name))
    e = vg.MLP(sizes, init=name, **_kwargs(name))
    assert not np.array_equal(d.params, e.params)


@pytest.mark.parametrize("name", vg.INITIALISERS)
def test_float32_and_float64_networks_with_the_same_seed_agree_to_float32_rounding(name):
    sizes = [17, 33, 9]
    n32 = vg.MLP(sizes, init=name, dtype="float32", seed=5, sigma_b=0.3, **_kwargs(name))
    n64 = vg.MLP(sizes, init=name, dtype="float64", seed=5, sigma_b=0.3, **_kwargs(name))
    assert n32.params.dtype == np.float32 and n64.params.dtype == np.float64
    np.testing.assert_array_equal(n32.params, n64.params.astype(np.float32))


@pytest.mark.parametrize("name", vg.INITIALISERS)
def test_reference_network_with_the_same_seed_has_the_same_parameters(name):
    sizes = [6, 10, 4]
    net = vg.MLP(sizes, init=name, dtype="float64", seed=9, sigma_b=0.2, **_kwargs(name))
    ref = R.ReferenceMLP(sizes, init=name, dtype="float64", seed=9, sigma_b=0.2,
                         **_kwargs(name))
    np.testing.assert_array_equal(net.params, ref.params)


@pytest.mark.parametrize("sigma_b", [0.05, 1.0, 3.0])
def test_sigma_b_gives_gaussian_biases_with_that_std(sigma_b):
    net = vg.MLP([3, 4000, 4000 // 40, 3000], dtype="float64", seed=6, sigma_b=sigma_b)
    b = np.concatenate(net.biases)
    assert np.std(b) == pytest.approx(sigma_b, rel=0.03)
    assert abs(np.mean(b)) < 4 * sigma_b / np.sqrt(b.size)


def test_zero_sigma_b_and_default_give_zero_biases():
    for kwargs in ({}, dict(sigma_b=0.0), dict(sigma_b=None)):
        net = vg.MLP([5, 6, 2], seed=0, **kwargs)
        for b in net.biases:
            np.testing.assert_array_equal(b, 0)


def test_normal_init_scales_with_sigma_w_and_zero_sigma_w_gives_zero_weights():
    w1 = vg.MLP([200, 200], init="normal", sigma_w=1.0, dtype="float64", seed=7).weights[0]
    w3 = vg.MLP([200, 200], init="normal", sigma_w=3.0, dtype="float64", seed=7).weights[0]
    np.testing.assert_allclose(w3, 3 * w1, rtol=1e-15)
    w0 = vg.MLP([20, 20], init="normal", sigma_w=0.0, seed=7).weights[0]
    np.testing.assert_array_equal(w0, 0)


def test_reset_parameters_redraws_from_the_initialiser():
    net = vg.MLP([8, 9, 3], init="he_normal", seed=11, sigma_b=0.5)
    first = net.params.copy()
    net.grads[...] = 1
    net.reset_parameters(11)
    np.testing.assert_array_equal(net.params, first)
    np.testing.assert_array_equal(net.grads, 0)
    net.reset_parameters(12)
    assert not np.array_equal(net.params, first)


def test_parameter_views_share_the_flat_buffers():
    net = vg.MLP([3, 4, 2], seed=0)
    assert net.n_params == 3 * 4 + 4 + 4 * 2 + 2 == net.params.size == net.grads.size
    net.weights[1][0, 1] = 7.0
    net.biases[0][2] = -3.0
    assert net.params[3 * 4 + 4 + 1] == 7.0
    assert net.params[3 * 4 + 2] == -3.0
    for views, buf in ((net.weights + net.biases, net.params),
                       (net.weight_grads + net.bias_grads, net.grads)):
        for v in views:
            assert np.shares_memory(v, buf)

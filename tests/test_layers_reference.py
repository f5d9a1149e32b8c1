"""The NumPy reference's layer options: batch and layer normalisation, residual blocks and
dropout (see :class:`vgcore.reference.ReferenceMLP`).  Reference-only: the backward pass
against finite differences, each option against its definition, and the option checks.
(tests/test_layers_engine.py checks the compiled engine against this reference.)
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from vgcore.core import reference as R

M64 = (1 << 64) - 1


def py_mix(x):
    """splitmix64's finaliser in pure Python ints (independent of the NumPy version)."""
    x &= M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


def py_uniform(seed, counter, layer, i, j, width):
    key = py_mix(seed ^ py_mix(counter * 1000003 + layer))
    return (py_mix(key + i * width + j) >> 40) * 2.0 ** -24


def _randomise_affine(ref, rng):
    for g, b in zip(ref.gammas, ref.betas):
        if g is not None:
            g[...] = 1 + 0.3 * rng.standard_normal(g.shape)
            b[...] = 0.2 * rng.standard_normal(b.shape)


# ------------------------------------------------------------------------------ gradients

FD_H = 1e-6
FD_TOL = 1e-6
FD_SIZES = [6, 6, 6, 5, 3]          # layers 0 and 1 can be residual, layer 2 cannot
FD_BATCH = 7


def _fd_check(ref, X, seed):
    """Central differences of L = sum(out * Rw) on every parameter and every input entry,
    against ref.backward, with the training-mode state (counter, running stats) held."""
    rng = np.random.default_rng(seed)
    Rw = rng.standard_normal((X.shape[0], ref.sizes[-1]))
    counter = ref.dropout_counter
    stats = [None if m is None else (m.copy(), v.copy())
             for m, v in zip(ref.running_means, ref.running_vars)]

    def loss():
        return float(np.sum(ref.forward(X, advance=False) * Rw))

    loss()
    dX = ref.backward(Rw).copy()
    grads = ref.grads.copy()

    def fd(buf):
        flat = buf.reshape(-1)
        out = np.empty(flat.size)
        for k in range(flat.size):
            v = flat[k]
            flat[k] = v + FD_H
            fp = loss()
            flat[k] = v - FD_H
            fm = loss()
            flat[k] = v
            out[k] = (fp - fm) / (2 * FD_H)
        return out.reshape(buf.shape)

    for what, an, num in (("params", grads, fd(ref.params)), ("X", dX, fd(X))):
        scale = np.max(np.abs(an))
        err = np.abs(num - an) / np.maximum(np.maximum(np.abs(num), np.abs(an)), 1e-2 * scale)
        assert np.max(err) < FD_TOL, f"{what}: max relative error {np.max(err):.2e}"
    # the probes moved nothing
    assert ref.dropout_counter == counter
    for s, m, v in zip(stats, ref.running_means, ref.running_vars):
        if s is not None:
            np.testing.assert_array_equal(s[0], m)
            np.testing.assert_array_equal(s[1], v)
    return grads


@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("residual", [None, 0.5])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_backward_matches_finite_differences_in_training_mode(norm, residual, dropout, act):
    ref = R.ReferenceMLP(FD_SIZES, activation=act, dtype="float64", seed=11, sigma_b=0.3,
                         norm=norm, residual=residual, dropout=dropout, dropout_seed=77)
    rng = np.random.default_rng(3)
    _randomise_affine(ref, rng)
    ref.dropout_counter = 5
    X = rng.standard_normal((FD_BATCH, FD_SIZES[0]))
    grads = _fd_check(ref, X, seed=4)
    if norm is not None:
        assert all(np.any(g != 0) for g in ref.gamma_grads[:-1])
        assert all(np.any(g != 0) for g in ref.beta_grads[:-1])
    if dropout:
        masks = ref.dropout_masks
        assert all(m is not None and np.any(m == 0) for m in masks[:-1])
    assert np.all(np.isfinite(grads))


@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_backward_matches_finite_differences_in_eval_mode(norm, act):
    """Eval mode: batch norm through the (fixed) running statistics, dropout off."""
    ref = R.ReferenceMLP(FD_SIZES, activation=act, dtype="float64", seed=12, sigma_b=0.3,
                         norm=norm, residual=0.5, dropout=0.3)
    rng = np.random.default_rng(5)
    _randomise_affine(ref, rng)
    for m, v in zip(ref.running_means, ref.running_vars):
        if m is not None:
            m[...] = 0.5 * rng.standard_normal(m.shape)
            v[...] = rng.uniform(0.5, 2.0, v.shape)
    ref.eval_mode()
    X = rng.standard_normal((FD_BATCH, FD_SIZES[0]))
    _fd_check(ref, X, seed=6)
    assert ref.dropout_masks == [None] * ref.n_layers


# ------------------------------------------------------------------------------ layout, init

def test_parameter_layout_is_w_b_gamma_beta_per_layer():
    sizes = [3, 4, 4, 2]
    ref = R.ReferenceMLP(sizes, dtype="float64", seed=0, norm=["batch", None])
    assert ref.params.size == (3 * 4 + 4 + 8) + (4 * 4 + 4) + (4 * 2 + 2)
    assert ref.norms == ("batch", None, None)
    expect = {id(ref.weights[0]): 0, id(ref.biases[0]): 12, id(ref.gammas[0]): 16,
              id(ref.betas[0]): 20, id(ref.weights[1]): 24, id(ref.biases[1]): 40,
              id(ref.weights[2]): 44, id(ref.biases[2]): 52}
    base = ref.params.__array_interface__["data"][0]
    for arr in (ref.weights + ref.biases + ref.gammas[:1] + ref.betas[:1]):
        off = (arr.__array_interface__["data"][0] - base) // 8
        assert off == expect[id(arr)]
        assert np.shares_memory(arr, ref.params)
    assert ref.gammas[1:] == [None, None] and ref.betas[1:] == [None, None]
    assert ref.gamma_grads[1:] == [None, None] and ref.beta_grads[1:] == [None, None]
    assert np.shares_memory(ref.gamma_grads[0], ref.grads)
    np.testing.assert_array_equal(ref.gammas[0], 1)
    np.testing.assert_array_equal(ref.betas[0], 0)
    assert R.param_layout(sizes, ref.norms) == (
        [(0, 12, 16, 20), (24, 40, None, None), (44, 52, None, None)], 54)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_options_do_not_change_the_random_draws(dtype):
    sizes = [5, 8, 8, 8, 3]
    plain = R.ReferenceMLP(sizes, activation="tanh", init="glorot_normal", dtype=dtype,
                           seed=4, sigma_b=0.2)
    full = R.ReferenceMLP(sizes, activation="tanh", init="glorot_normal", dtype=dtype,
                          seed=4, sigma_b=0.2, norm="layer", residual=0.3, dropout=0.2)
    zero = R.ReferenceMLP(sizes, activation="tanh", init="glorot_normal", dtype=dtype,
                          seed=4, sigma_b=0.2, norm="batch", residual="auto",
                          residual_init="zero")
    assert zero.residuals == (None, 1 / math.sqrt(3), 1 / math.sqrt(3), None)
    for l in range(plain.n_layers):
        np.testing.assert_array_equal(full.weights[l], plain.weights[l])
        np.testing.assert_array_equal(full.biases[l], plain.biases[l])
        if zero.residuals[l] is None:
            np.testing.assert_array_equal(zero.weights[l], plain.weights[l])
            np.testing.assert_array_equal(zero.biases[l], plain.biases[l])
        else:
            assert not np.any(zero.weights[l]) and not np.any(zero.biases[l])


def test_options_off_behave_exactly_as_the_plain_network():
    sizes = [4, 9, 7, 3]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4))
    y = rng.integers(0, 3, 6)
    a = R.ReferenceMLP(sizes, dtype="float64", seed=1, sigma_b=0.1)
    b = R.ReferenceMLP(sizes, dtype="float64", seed=1, sigma_b=0.1, norm=[None, None],
                       residual=[None, None], dropout=[0.0, 0.0], dropout_seed=5)
    for _ in range(2):
        assert a.train_step(X, y, lr=0.1) == b.train_step(X, y, lr=0.1)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.backward(np.ones((6, 3))), b.backward(np.ones((6, 3))))
    assert a.norms == (None,) * 3 and a.residuals == (None,) * 3 and a.dropouts == (0.0,) * 3
    assert a.running_means == [None] * 3 and a.gammas == [None] * 3
    assert a.training is True and a.dropout_counter == 2


# ------------------------------------------------------------------------------ batch norm

def _bn_net(batch_norm_layers=("batch", "batch"), **kw):
    kw.setdefault("seed", 2)
    return R.ReferenceMLP([5, 16, 12, 3], activation="tanh", dtype="float64", sigma_b=0.5,
                          norm=list(batch_norm_layers), **kw)


def test_batch_norm_training_mode_gives_unit_mean_beta_and_std_gamma():
    ref = _bn_net()
    _randomise_affine(ref, np.random.default_rng(1))
    X = 2 + 3 * np.random.default_rng(2).standard_normal((64, 5))
    ref.forward(X)
    for l in range(2):
        z, h = ref.normalized[l], ref.preactivations[l]
        np.testing.assert_allclose(z.mean(axis=0), ref.betas[l], atol=1e-12)
        var = h.var(axis=0)
        np.testing.assert_allclose(z.std(axis=0), np.abs(ref.gammas[l]) *
                                   np.sqrt(var / (var + ref.norm_eps)), rtol=1e-10)
        assert np.all(z.std(axis=0) == pytest.approx(np.abs(ref.gammas[l]), rel=1e-3))
        np.testing.assert_array_equal(ref.post_activations[l], np.tanh(z))
        np.testing.assert_array_equal(ref.layer_outputs[l], np.tanh(z))


@pytest.mark.parametrize("momentum", [0.1, 0.35])
def test_running_statistics_follow_the_update_rule(momentum):
    ref = _bn_net(norm_momentum=momentum)
    rng = np.random.default_rng(3)
    rm = [np.zeros(16), np.zeros(12)]
    rv = [np.ones(16), np.ones(12)]
    for step, B in enumerate((8, 5, 8, 4)):
        X = rng.standard_normal((B, 5)) + step
        y = rng.integers(0, 3, B)
        ref.train_step(X, y, lr=0.2)        # the parameters move between steps
        for l in range(2):
            h = ref.preactivations[l]
            mu, var = h.mean(axis=0), h.var(axis=0)
            rm[l] = (1 - momentum) * rm[l] + momentum * mu
            rv[l] = (1 - momentum) * rv[l] + momentum * var * B / (B - 1)
            np.testing.assert_allclose(ref.running_means[l], rm[l], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(ref.running_vars[l], rv[l], rtol=1e-12, atol=1e-14)
    assert ref.running_means[2] is None and ref.running_vars[2] is None
    assert ref.running_means[0].dtype == np.float64


def test_eval_mode_normalises_with_the_running_statistics_and_changes_no_state():
    ref = _bn_net(dropout=0.5)
    _randomise_affine(ref, np.random.default_rng(4))
    rng = np.random.default_rng(5)
    for _ in range(3):
        ref.forward(rng.standard_normal((10, 5)))
    assert ref.dropout_counter == 3
    rm = [m.copy() for m in ref.running_means[:2]]
    rv = [v.copy() for v in ref.running_vars[:2]]
    assert ref.eval_mode() is ref and ref.training is False
    X = rng.standard_normal((7, 5))
    out = ref.forward(X).copy()
    x = X
    for l in range(2):
        h = x @ ref.weights[l] + ref.biases[l]
        z = ref.gammas[l] * (h - rm[l]) / np.sqrt(rv[l] + ref.norm_eps) + ref.betas[l]
        np.testing.assert_allclose(ref.normalized[l], z, rtol=1e-12, atol=1e-13)
        x = np.tanh(z)
        np.testing.assert_array_equal(ref.layer_outputs[l], ref.post_activations[l])
    np.testing.assert_allclose(out, x @ ref.weights[2] + ref.biases[2], rtol=1e-12,
                               atol=1e-13)
    for l in range(2):
        np.testing.assert_array_equal(ref.running_means[l], rm[l])
        np.testing.assert_array_equal(ref.running_vars[l], rv[l])
    assert ref.dropout_counter == 3
    # each sample on its own gives the same output in eval mode
    np.testing.assert_allclose(ref.forward(X[2:3]), out[2:3], rtol=1e-12)
    assert ref.train_mode() is ref and ref.training is True


def test_batch_of_one_gives_beta_and_updates_the_variance_with_the_biased_value():
    ref = _bn_net(norm_momentum=0.25)
    _randomise_affine(ref, np.random.default_rng(6))
    X = np.random.default_rng(7).standard_normal((1, 5))
    ref.forward(X)
    np.testing.assert_array_equal(ref.normalized[0], ref.betas[0][None, :])
    h = ref.preactivations[0][0]
    np.testing.assert_allclose(ref.running_means[0], 0.25 * h, rtol=1e-14)
    np.testing.assert_array_equal(ref.running_vars[0], np.full(16, 0.75))
    ref.backward(np.ones((1, 3)))
    assert np.all(np.isfinite(ref.grads))
    # with xhat = 0 the output ignores W_1, b_1 (and gamma), so their gradients are 0
    assert not np.any(ref.weight_grads[0]) and not np.any(ref.gamma_grads[0])


# ------------------------------------------------------------------------------ layer norm

@pytest.mark.parametrize("training", [True, False])
def test_layer_norm_normalises_each_sample(training):
    ref = R.ReferenceMLP([5, 16, 12, 3], activation="relu", dtype="float64", seed=3,
                         sigma_b=1.0, norm="layer")
    if not training:
        ref.eval_mode()
    X = 4 * np.random.default_rng(8).standard_normal((9, 5))
    ref.forward(X)
    for l in range(2):
        z, h = ref.normalized[l], ref.preactivations[l]
        var = h.var(axis=1)
        np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-12)
        np.testing.assert_allclose(z.var(axis=1), var / (var + 1e-5), rtol=1e-10)
    _randomise_affine(ref, np.random.default_rng(9))
    out = ref.forward(X).copy()
    h = ref.preactivations[0]
    mu, var = h.mean(axis=1, keepdims=True), h.var(axis=1, keepdims=True)
    np.testing.assert_allclose(ref.normalized[0], ref.gammas[0] * (h - mu) /
                               np.sqrt(var + 1e-5) + ref.betas[0], rtol=1e-12, atol=1e-13)
    # per sample: one row alone gives the same output, in either mode
    np.testing.assert_allclose(ref.forward(X[4:5]), out[4:5], rtol=1e-12)
    assert ref.running_means == [None] * 3


# ------------------------------------------------------------------------------ residual

@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_zero_residual_init_starts_every_residual_block_as_the_identity(act, norm):
    sizes = [8, 8, 8, 6, 6, 3]
    ref = R.ReferenceMLP(sizes, activation=act, dtype="float64", seed=5, sigma_b=0.4,
                         residual=0.7, residual_init="zero", norm=norm)
    assert ref.residuals == (0.7, 0.7, None, 0.7, None)
    X = np.random.default_rng(10).standard_normal((5, 8))
    ref.forward(X)
    outs = ref.layer_outputs
    np.testing.assert_array_equal(outs[0], X)
    np.testing.assert_array_equal(outs[1], X)
    np.testing.assert_array_equal(outs[3], outs[2])
    assert np.any(ref.weights[2]) and np.any(ref.weights[4])


def test_residual_block_adds_the_scaled_activation_to_its_input():
    ref = R.ReferenceMLP([4, 4, 4, 2], activation="tanh", dtype="float64", seed=6,
                         sigma_b=0.3, residual=[0.25, None])
    X = np.random.default_rng(11).standard_normal((3, 4))
    ref.forward(X)
    a0 = np.tanh(X @ ref.weights[0] + ref.biases[0])
    np.testing.assert_allclose(ref.layer_outputs[0], X + 0.25 * a0, rtol=1e-14)
    a1 = np.tanh(ref.layer_outputs[0] @ ref.weights[1] + ref.biases[1])
    np.testing.assert_allclose(ref.layer_outputs[1], a1, rtol=1e-14)


def test_residual_auto_is_one_over_sqrt_of_the_number_of_hidden_layers():
    ref = R.ReferenceMLP([3, 5, 5, 5, 5, 2], dtype="float64", seed=0, residual="auto")
    s = 1 / math.sqrt(4)
    assert ref.residuals == (None, s, s, s, None)


# ------------------------------------------------------------------------------ dropout

def test_numpy_mix_matches_pure_python_and_the_splitmix64_reference_value():
    # splitmix64 with state 0: the first output is mix(0x9E3779B97F4A7C15)
    assert int(R.splitmix64_mix(0x9E3779B97F4A7C15)) == 0xE220A8397B1DCDAF
    vals = [0, 1, 2, 12345, 2**32 - 1, 2**63, M64, 0x9E3779B97F4A7C15 * 2 & M64]
    got = R.splitmix64_mix(np.array(vals, dtype=np.uint64))
    assert got.dtype == np.uint64
    assert [int(g) for g in got] == [py_mix(v) for v in vals]
    for seed, counter, layer in ((0, 0, 0), (7, 3, 2), (M64, 10**12, 5)):
        assert R.dropout_key(seed, counter, layer) == py_mix(
            seed ^ py_mix(counter * 1000003 + layer))


@pytest.mark.parametrize("seed,counter,layer", [(0, 0, 0), (123, 4, 1), (2**64 - 1, 99, 2)])
def test_dropout_uniforms_follow_the_hash_formula(seed, counter, layer):
    B, W = 6, 11
    u = R.dropout_uniforms(seed, counter, layer, B, W)
    assert u.shape == (B, W) and u.dtype == np.float64
    for i, j in ((0, 0), (0, 1), (1, 0), (3, 7), (5, 10)):
        assert u[i, j] == py_uniform(seed, counter, layer, i, j, W)
    assert np.all((u >= 0) & (u < 1))
    assert np.all(u * 2**24 == np.floor(u * 2**24))
    np.testing.assert_array_equal(R.dropout_keep(seed, counter, layer, B, W, 0.4), u >= 0.4)


def test_dropout_mask_in_the_network_is_the_hash_mask_scaled_by_one_over_keep():
    p = 0.3
    ref = R.ReferenceMLP([4, 10, 7, 2], activation="tanh", dtype="float64", seed=1,
                         dropout=p, dropout_seed=42)
    ref.dropout_counter = 9
    X = np.random.default_rng(12).standard_normal((5, 4))
    ref.forward(X)
    assert ref.dropout_counter == 10
    for l, width in ((0, 10), (1, 7)):
        mask = ref.dropout_masks[l]
        for i in range(5):
            for j in range(width):
                keep = py_uniform(42, 9, l, i, j, width) >= p
                assert mask[i, j] == (1 / (1 - p) if keep else 0.0)
        np.testing.assert_array_equal(ref.layer_outputs[l], ref.post_activations[l] * mask)
    # the second layer's input is the first layer's dropped-out output
    np.testing.assert_allclose(ref.preactivations[1],
                               ref.layer_outputs[0] @ ref.weights[1] + ref.biases[1],
                               rtol=1e-14)


def test_dropout_keeps_about_one_minus_p():
    for p in (0.1, 0.5, 0.8):
        keep = R.dropout_keep(3, 0, 0, 200, 500, p)
        assert keep.mean() == pytest.approx(1 - p, abs=0.01)
    ref = R.ReferenceMLP([20, 400, 3], dtype="float64", seed=0, dropout=0.25)
    ref.forward(np.ones((100, 20)))
    m = ref.dropout_masks[0]
    assert np.mean(m == 0) == pytest.approx(0.25, abs=0.01)
    assert set(np.unique(m)) == {0.0, 1 / 0.75}


def test_dropout_masks_are_reproducible_and_differ_across_counters_layers_and_seeds():
    def masks(seed, counter, n=1):
        ref = R.ReferenceMLP([6, 32, 32, 2], dtype="float64", seed=0, dropout=0.5,
                             dropout_seed=seed)
        ref.dropout_counter = counter
        X = np.random.default_rng(1).standard_normal((16, 6))
        for _ in range(n):
            ref.forward(X)
        return [m.copy() for m in ref.dropout_masks[:2]]

    a, b = masks(5, 3), masks(5, 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])                       # layers
    assert not np.array_equal(a[0], masks(5, 4)[0])             # counters
    assert not np.array_equal(a[0], masks(6, 3)[0])             # seeds
    # the counter advances once per training-mode forward: the 2nd pass from 3 = counter 4
    np.testing.assert_array_equal(masks(5, 3, n=2)[0], masks(5, 4)[0])
    # and the mask depends on nothing else (not on the data or the parameters)
    np.testing.assert_array_equal(
        (R.dropout_uniforms(5, 3, 0, 16, 32) >= 0.5) / 0.5, a[0])


def test_eval_mode_dropout_is_the_identity_and_the_counter_counts_training_passes_only():
    ref = R.ReferenceMLP([6, 9, 9, 2], activation="tanh", dtype="float64", seed=3,
                         dropout=[0.4, 0.6], residual=1.0)
    X = np.random.default_rng(2).standard_normal((4, 6))
    ref.eval_mode()
    out = ref.forward(X).copy()
    assert ref.dropout_counter == 0 and ref.dropout_masks == [None] * 3
    ref.backward(np.ones((4, 2)))
    x = X
    for l in range(2):
        a = np.tanh(x @ ref.weights[l] + ref.biases[l])
        x = a if l == 0 else x + 1.0 * a          # layer 1 (9 -> 9) is residual
        np.testing.assert_allclose(ref.layer_outputs[l], x, rtol=1e-14)
    np.testing.assert_allclose(out, x @ ref.weights[2] + ref.biases[2], rtol=1e-13)
    ref.train_mode()
    ref.forward(X)
    ref.backward(np.ones((4, 2)))
    ref.forward(X, advance=False)
    assert ref.dropout_counter == 1


# ------------------------------------------------------------------------------ from_network

def test_from_network_copies_options_state_and_parameters():
    rng = np.random.default_rng(0)
    a = R.ReferenceMLP([5, 8, 8, 4, 3], activation="gelu", dtype="float64", seed=2,
                       norm=["batch", "layer", "batch"], residual=0.5, dropout=[0.2, 0, 0.4],
                       dropout_seed=99, norm_momentum=0.2, norm_eps=1e-3)
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    a.train_step(X, y, lr=0.1)
    b = R.ReferenceMLP.from_network(a)
    for k in ("sizes", "norms", "residuals", "dropouts", "dropout_seed", "norm_momentum",
              "norm_eps", "training", "dropout_counter", "activations"):
        assert getattr(b, k) == getattr(a, k), k
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.shares_memory(a.params, b.params)
    for m, n in zip(a.running_means + a.running_vars, b.running_means + b.running_vars):
        assert (m is None) == (n is None)
        if m is not None:
            np.testing.assert_array_equal(m, n)
            assert not np.shares_memory(m, n)
    for _ in range(2):
        assert a.train_step(X, y, lr=0.1) == b.train_step(X, y, lr=0.1)
        np.testing.assert_array_equal(a.params, b.params)
    a.eval_mode()
    c = R.ReferenceMLP.from_network(a)
    assert c.training is False
    np.testing.assert_array_equal(a.forward(X), c.forward(X))


def test_from_network_reads_hidden_only_tuples_and_defaults_missing_attributes():
    src = R.ReferenceMLP([4, 6, 6, 2], dtype="float64", seed=1, norm="batch")
    net = SimpleNamespace(sizes=src.sizes, dtype=src.dtype, activations=src.activations,
                          init=src.init, sigma_w=None, sigma_b=None, params=src.params,
                          norms=("batch", "batch"), residuals=(None, 0.5), dropouts=(0.1, 0.0),
                          running_means=[np.full(6, 0.5), None], dropout_counter=7)
    ref = R.ReferenceMLP.from_network(net)
    assert ref.norms == ("batch", "batch", None)
    assert ref.residuals == (None, 0.5, None) and ref.dropouts == (0.1, 0.0, 0.0)
    assert ref.dropout_seed == 0 and ref.norm_momentum == 0.1 and ref.norm_eps == 1e-5
    assert ref.training is True and ref.dropout_counter == 7
    np.testing.assert_array_equal(ref.running_means[0], 0.5)
    np.testing.assert_array_equal(ref.running_means[1], 0.0)      # None given: the default
    np.testing.assert_array_equal(ref.running_vars[1], 1.0)
    np.testing.assert_array_equal(ref.gammas[1], 1.0)
    bad = SimpleNamespace(**{**vars(net), "norms": ("batch",) * 5})
    with pytest.raises(ValueError, match="norms"):
        R.ReferenceMLP.from_network(bad)


# ------------------------------------------------------------------------------ bad options

@pytest.mark.parametrize("kwargs,name", [
    (dict(norm="group"), "norm"),
    (dict(norm=["batch", "instance"]), r"norm\[1\]"),
    (dict(norm=["batch"]), "norm"),                      # wrong length
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=[0.1, 1.5]), r"dropout\[1\]"),
    (dict(dropout=float("nan")), "dropout"),
    (dict(residual=[0.5, 0.5]), r"residual\[0\]"),      # layer 0 is 5 -> 8
    (dict(residual="always"), "residual"),
    (dict(residual=float("inf")), "residual"),
    (dict(residual_init="ones"), "residual_init"),
    (dict(norm_momentum=-0.1), "norm_momentum"),
    (dict(norm_momentum=1.5), "norm_momentum"),
    (dict(norm_eps=-1e-5), "norm_eps"),
    (dict(norm_eps=0.0), "norm_eps"),
    (dict(dropout_seed=-1), "dropout_seed"),
    (dict(dropout_seed=2**64), "dropout_seed"),
])
def test_bad_options_raise_value_error_naming_the_option(kwargs, name):
    with pytest.raises(ValueError, match=name):
        R.ReferenceMLP([5, 8, 8, 3], seed=0, **kwargs)


@pytest.mark.parametrize("kwargs,name", [
    (dict(norm=1), "norm"), (dict(dropout="0.1"), "dropout"), (dict(dropout=True), "dropout"),
    (dict(residual=True), "residual"), (dict(dropout_seed=1.5), "dropout_seed"),
    (dict(norm_eps="1e-5"), "norm_eps"),
])
def test_options_of_the_wrong_type_raise_type_error(kwargs, name):
    with pytest.raises(TypeError, match=name):
        R.ReferenceMLP([5, 8, 8, 3], seed=0, **kwargs)


def test_a_single_residual_value_skips_layers_whose_width_changes():
    ref = R.ReferenceMLP([5, 8, 8, 3], seed=0, residual=0.5)
    assert ref.residuals == (None, 0.5, None)
    ref = R.ReferenceMLP([5, 8, 8, 3], seed=0, residual=[None, 0.5])
    assert ref.residuals == (None, 0.5, None)

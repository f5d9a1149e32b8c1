"""The compiled engine's layer options (batch / layer normalisation, residual blocks, dropout)
compute what the NumPy reference computes (vgcore.reference.ReferenceMLP, which defines them
and is checked against finite differences in tests/test_layers_reference.py): outputs, loss,
parameter gradients (same flat layout: W, b, then gamma, beta per normalised layer), dL/dX,
running statistics and the dropout counter, in training and eval mode, over several steps.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import (DTYPES, assert_close, compare_passes, engine_pass, make_target,
                     num_threads, reference_pass)

DTYPE_PARAMS = [pytest.param(dt, id=np.dtype(dt).name) for dt in DTYPES]
SIZES = [6, 6, 10, 10, 7, 4]      # residual possible on layers 0, 2 (not 1: 6 -> 10, nor 3)
LR = 0.05


def _data(sizes, batch, loss, dtype, seed):
    rng = np.random.default_rng(seed)
    X = (1.5 * rng.standard_normal((batch, sizes[0]))).astype(dtype)
    return X, make_target(loss, batch, sizes[-1], dtype, rng)


def _randomise_affine(net, seed):
    """Move gamma and beta away from 1 and 0 (in place, in the engine's buffer)."""
    rng = np.random.default_rng(seed)
    for g, b in zip(net.gammas, net.betas):
        if g is not None:
            g[...] = 1 + 0.3 * rng.standard_normal(g.shape)
            b[...] = 0.2 * rng.standard_normal(b.shape)


def _compare_state(net, ref, dtype, label):
    assert net.training == ref.training, label
    assert net.dropout_counter == ref.dropout_counter, f"{label}: dropout_counter"
    for l, (n, r) in enumerate(zip(net.running_means, ref.running_means)):
        assert (n is None) == (r is None), f"{label}: running_means[{l}]"
        if r is not None:
            assert_close(n, r, dtype, f"{label}: running_means[{l}]")
            assert_close(net.running_vars[l], ref.running_vars[l], dtype,
                         f"{label}: running_vars[{l}]")


def _sgd_both(net, ref):
    vg.optim.SGD(net, lr=LR).step()
    ref.sgd_step(LR)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("residual", [None, 0.5])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_engine_matches_reference_in_training_and_eval_mode(norm, residual, dropout, act,
                                                            dtype):
    net = vg.MLP(SIZES, activation=act, dtype=dtype, seed=3, sigma_b=0.3, norm=norm,
                 residual=residual, dropout=dropout, dropout_seed=1234)
    _randomise_affine(net, 4)
    ref = R.ReferenceMLP.from_network(net)
    loss = "cross_entropy"
    label = f"{norm} {residual} {dropout} {act}"
    for step in range(2):                               # the counter advances in both
        X, target = _data(SIZES, 9, loss, dtype, seed=10 + step)
        compare_passes(engine_pass(net, X, loss, target), reference_pass(ref, X, loss, target),
                       dtype, f"{label} training step {step}")
        _compare_state(net, ref, dtype, f"{label} training step {step}")
        _sgd_both(net, ref)
        assert_close(net.params, ref.params, dtype, f"{label} params after step {step}")
    assert net.dropout_counter == 2

    net.eval_mode()
    ref.eval_mode()
    assert net.training is False
    X, target = _data(SIZES, 5, loss, dtype, seed=20)
    compare_passes(engine_pass(net, X, loss, target), reference_pass(ref, X, loss, target),
                   dtype, f"{label} eval")
    _compare_state(net, ref, dtype, f"{label} eval")
    assert net.dropout_counter == 2

    net.train_mode()
    ref.train_mode()
    X, target = _data(SIZES, 9, loss, dtype, seed=30)
    compare_passes(engine_pass(net, X, loss, target), reference_pass(ref, X, loss, target),
                   dtype, f"{label} training again")
    _compare_state(net, ref, dtype, f"{label} training again")
    assert net.dropout_counter == 3


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_engine_matches_reference_with_mixed_per_layer_options(loss, dtype):
    net = vg.MLP(SIZES, activation=["tanh", "gelu", "relu", "silu"], dtype=dtype, seed=5,
                 sigma_b=0.2, norm=["layer", "batch", None, "batch"],
                 residual=[0.3, None, 1.0, None], dropout=[0.1, 0.0, 0.5, 0.2],
                 dropout_seed=2**63 + 5, norm_momentum=0.3, norm_eps=1e-3)
    _randomise_affine(net, 6)
    ref = R.ReferenceMLP.from_network(net)
    assert ref.norms == ("layer", "batch", None, "batch", None)
    assert ref.residuals == (0.3, None, 1.0, None, None)
    assert ref.dropouts == (0.1, 0.0, 0.5, 0.2, 0.0)
    assert (ref.dropout_seed, ref.norm_momentum, ref.norm_eps) == (2**63 + 5, 0.3, 1e-3)
    for step in range(3):
        X, target = _data(SIZES, 8, loss, dtype, seed=40 + step)
        compare_passes(engine_pass(net, X, loss, target), reference_pass(ref, X, loss, target),
                       dtype, f"step {step}")
        _compare_state(net, ref, dtype, f"step {step}")
        _sgd_both(net, ref)
    net.eval_mode()
    ref.eval_mode()
    X, target = _data(SIZES, 3, loss, dtype, seed=50)
    compare_passes(engine_pass(net, X, loss, target), reference_pass(ref, X, loss, target),
                   dtype, "eval")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_engine_matches_reference_on_a_larger_network_with_threads(norm, threads):
    """Widths and a batch large enough for the elementwise work to be split across threads."""
    sizes = [64, 256, 256, 256, 10]
    dtype = np.float64
    net = vg.MLP(sizes, activation="gelu", dtype=dtype, seed=7, norm=norm, residual="auto",
                 dropout=0.2, dropout_seed=9)
    _randomise_affine(net, 8)
    ref = R.ReferenceMLP.from_network(net)
    with num_threads(threads):
        for step in range(2):
            X, target = _data(sizes, 128, "cross_entropy", dtype, seed=60 + step)
            compare_passes(engine_pass(net, X, "cross_entropy", target),
                           reference_pass(ref, X, "cross_entropy", target), dtype,
                           f"{threads} threads step {step}")
            _compare_state(net, ref, dtype, f"step {step}")
            _sgd_both(net, ref)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_batch_of_one_matches_reference(norm, dtype):
    net = vg.MLP([5, 8, 8, 3], activation="tanh", dtype=dtype, seed=1, sigma_b=0.5, norm=norm,
                 residual=0.5, dropout=0.25)
    _randomise_affine(net, 2)
    ref = R.ReferenceMLP.from_network(net)
    for step in range(2):
        X, target = _data([5, 8, 8, 3], 1, "mse", dtype, seed=70 + step)
        compare_passes(engine_pass(net, X, "mse", target), reference_pass(ref, X, "mse", target),
                       dtype, f"B=1 step {step}")
        _compare_state(net, ref, dtype, f"B=1 step {step}")


# ------------------------------------------------------------------------------ construction

@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("options", [
    dict(),
    dict(norm="batch"),
    dict(norm=["layer", None, "batch", "layer"], dropout=0.1),
    dict(residual=0.5, residual_init="zero"),
    dict(residual="auto", residual_init="zero", norm="layer", dropout=[0.0, 0.1, 0.2, 0.3]),
    dict(residual=[None, None, 2.0, None]),
], ids=["plain", "batch", "mixed-norm", "zero-init", "auto-zero-layer", "explicit-residual"])
def test_engine_initialisation_and_attributes_match_the_reference_constructor(options, dtype):
    kw = dict(activation="tanh", init="glorot_normal", dtype=dtype, seed=8, sigma_b=0.2)
    net = vg.MLP(SIZES, **kw, **options)
    ref = R.ReferenceMLP(SIZES, **kw, **options)
    np.testing.assert_array_equal(net.params, ref.params)
    assert net.params.size == ref.params.size == R.param_layout(SIZES, ref.norms)[1]
    for name in ("norms", "residuals", "dropouts"):
        assert tuple(getattr(net, name)) == getattr(ref, name), name
    assert net.dropout_seed == ref.dropout_seed and net.dropout_counter == 0
    assert net.norm_momentum == 0.1 and net.norm_eps == 1e-5 and net.training is True
    offsets, _ = R.param_layout(SIZES, ref.norms)
    base = net.params.__array_interface__["data"][0]
    gbase = net.grads.__array_interface__["data"][0]
    item = net.params.itemsize
    for l, (wo, bo, go, eo) in enumerate(offsets):
        for arr, off, buf_base in ((net.weights[l], wo, base), (net.biases[l], bo, base),
                                   (net.gammas[l], go, base), (net.betas[l], eo, base),
                                   (net.gamma_grads[l], go, gbase),
                                   (net.beta_grads[l], eo, gbase)):
            if off is None:
                assert arr is None
            else:
                assert arr.__array_interface__["data"][0] == buf_base + off * item
        if ref.norms[l] == "batch":
            assert net.running_means[l].dtype == np.float64
            np.testing.assert_array_equal(net.running_means[l], 0)
            np.testing.assert_array_equal(net.running_vars[l], 1)
        else:
            assert net.running_means[l] is None and net.running_vars[l] is None


def test_residual_auto_scale_is_the_same_float():
    net = vg.MLP(SIZES, seed=0, residual="auto")
    s = 1.0 / math.sqrt(len(SIZES) - 2)
    assert tuple(net.residuals) == (s, None, s, None, None)


@pytest.mark.parametrize("kwargs,name", [
    (dict(norm="group"), "norm"),
    (dict(norm=["batch", "instance", None, None]), "norm"),
    (dict(norm=["batch"]), "norm"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=[0.1, 1.5, 0.0, 0.0]), "dropout"),
    (dict(residual=[None, 0.5, None, None]), "residual"),       # layer 1 is 6 -> 10
    (dict(residual="always"), "residual"),
    (dict(residual_init="ones"), "residual_init"),
    (dict(norm_momentum=-0.1), "norm_momentum"),
    (dict(norm_eps=-1e-5), "norm_eps"),
    (dict(norm_eps=0.0), "norm_eps"),
    (dict(dropout_seed=-1), "dropout_seed"),
])
def test_engine_rejects_bad_options_like_the_reference(kwargs, name):
    with pytest.raises(ValueError, match=name):
        R.ReferenceMLP(SIZES, seed=0, **kwargs)
    with pytest.raises(ValueError, match=name):
        vg.MLP(SIZES, seed=0, **kwargs)


def test_dropout_counter_counts_training_forward_passes_only():
    net = vg.MLP([4, 8, 8, 2], seed=0, dtype="float64", dropout=0.5, norm="batch")
    X = np.random.default_rng(0).standard_normal((6, 4))
    net.forward(X)
    assert net.dropout_counter == 1
    net.backward(np.ones((6, 2)))
    assert net.dropout_counter == 1
    net.forward(X)
    assert net.dropout_counter == 2
    rm = net.running_means[0].copy()
    net.eval_mode()
    a = net.forward(X).copy()
    b = net.forward(X).copy()
    np.testing.assert_array_equal(a, b)            # eval: deterministic, no state change
    assert net.dropout_counter == 2
    np.testing.assert_array_equal(net.running_means[0], rm)
    net.train_mode()
    assert net.training is True
    # a network without dropout counts training passes too (the reference does)
    plain = vg.MLP([4, 8, 2], seed=0, dtype="float64")
    plain.forward(X)
    assert plain.dropout_counter == 1


def test_from_network_of_an_engine_net_in_eval_mode_with_a_counter():
    net = vg.MLP(SIZES, activation="relu", dtype="float64", seed=2, norm="batch",
                 residual=0.5, dropout=0.3)
    rng = np.random.default_rng(1)
    for _ in range(3):
        net.forward(rng.standard_normal((7, SIZES[0])))
    net.eval_mode()
    ref = R.ReferenceMLP.from_network(net)
    assert ref.training is False and ref.dropout_counter == 3
    X = rng.standard_normal((4, SIZES[0]))
    assert_close(net.forward(X), ref.forward(X), np.float64, "eval output")
    net.train_mode()
    ref.train_mode()
    assert_close(net.forward(X), ref.forward(X), np.float64, "training output (counter 3)")

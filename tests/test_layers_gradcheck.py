"""Batch and layer normalisation, residual blocks and dropout in the compiled engine: float64
finite-difference checks of every parameter gradient (W, b, gamma, beta) and of dL/dX, in
training mode (dropout masks held fixed by resetting the counter) and in evaluation mode."""
import itertools

import numpy as np
import pytest

import vgcore as vg

COMBOS = [c for c in itertools.product([None, "batch", "layer"], [None, 0.5], [0.0, 0.3],
                                       ["tanh", "relu", "gelu"])
          if c[:3] != (None, None, 0.0)]


def _net(norm, res, drop, act, seed=1):
    rng = np.random.default_rng(seed)
    net = vg.MLP([6, 7, 7, 7, 3], activation=act, init="he_normal", dtype="float64", seed=seed,
                 norm=norm, residual=res, dropout=drop, sigma_b=0.2)
    for g, b in zip(net.gammas, net.betas):
        if g is not None:
            g[...] = rng.uniform(0.5, 1.5, g.shape)
            b[...] = rng.normal(0, 0.3, b.shape)
    return net


def _gradcheck(net, X, y, n_params=60, seed=0):
    rng = np.random.default_rng(seed)
    counter = net.dropout_counter

    def loss():
        net.dropout_counter = counter              # the same dropout masks every time
        return vg.losses.cross_entropy(net.forward(X), y)[0]

    net.dropout_counter = counter
    _, dout = vg.losses.cross_entropy(net.forward(X), y)
    dX = net.backward(dout).copy()
    grads = net.grads.copy()
    worst = 0.0
    for buf, g, idx in ((net.params, grads, rng.choice(net.params.size, n_params, False)),
                        (X.reshape(-1), dX.reshape(-1), range(X.size))):
        for k in idx:
            old = buf[k]
            buf[k] = old + 1e-6
            lp = loss()
            buf[k] = old - 1e-6
            lm = loss()
            buf[k] = old
            fd = (lp - lm) / 2e-6
            worst = max(worst, abs(fd - g[k]) / max(1e-4, abs(fd) + abs(g[k])))
    return worst


@pytest.mark.parametrize("norm, residual, dropout, act", COMBOS)
def test_gradients_match_finite_differences_in_training_mode(norm, residual, dropout, act):
    rng = np.random.default_rng(2)
    net = _net(norm, residual, dropout, act)
    X = rng.standard_normal((5, 6))
    y = rng.integers(0, 3, 5)
    assert _gradcheck(net, X, y) < 2e-5


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_gradients_match_finite_differences_in_evaluation_mode(norm):
    rng = np.random.default_rng(3)
    net = _net(norm, 0.5, 0.3, "tanh")
    X = rng.standard_normal((9, 6))
    y = rng.integers(0, 3, 9)
    opt = vg.optim.SGD(net, lr=0.1)
    for _ in range(3):
        net.train_step(X, y, "cross_entropy", opt)     # moves the running averages
    net.eval_mode()
    counter = net.dropout_counter
    assert _gradcheck(net, X, y) < 2e-5
    assert net.dropout_counter == counter              # no dropout pass in evaluation mode


def test_batch_norm_standardises_each_unit_over_the_batch():
    rng = np.random.default_rng(4)
    net = vg.MLP([5, 8, 3], activation="identity", norm="batch", dtype="float64", seed=0)
    net.gammas[0][...] = 2.0
    net.betas[0][...] = -1.0
    X = 3 + 5 * rng.standard_normal((64, 5))
    net.forward(X)
    z = net._ws.Z[:64 * 8].reshape(64, 8)
    np.testing.assert_allclose(z.mean(0), -1.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 2.0, rtol=1e-4)     # eps = 1e-5 << var(h)
    h = X @ net.weights[0] + net.biases[0]
    np.testing.assert_allclose(net.running_means[0], 0.1 * h.mean(0), rtol=1e-10)
    np.testing.assert_allclose(net.running_vars[0], 0.9 + 0.1 * h.var(0, ddof=1), rtol=1e-10)


def test_zero_initialised_residual_blocks_start_as_the_identity():
    rng = np.random.default_rng(5)
    net = vg.MLP([8, 8, 8, 8, 2], activation="tanh", residual="auto", residual_init="zero",
                 dtype="float64", seed=0)
    X = rng.standard_normal((4, 8))
    out = net.forward(X)
    np.testing.assert_allclose(out, X @ net.weights[-1] + net.biases[-1], rtol=1e-12)


def test_dropout_drops_about_p_and_masks_change_with_the_counter():
    rng = np.random.default_rng(6)
    net = vg.MLP([20, 200, 200, 2], activation="relu", init="he_normal", dropout=0.3,
                 dtype="float64", seed=0)
    X = np.abs(rng.standard_normal((50, 20)))
    net.forward(X)
    out1 = net._ws.OUT[:50 * 200].copy()
    a1 = net._ws.A[:50 * 200]
    kept = (out1 != 0) | (a1 == 0)
    assert abs(1 - np.mean(out1[a1 != 0] != 0) - 0.3) < 0.02
    np.testing.assert_allclose(out1[kept & (a1 != 0)], a1[kept & (a1 != 0)] / 0.7, rtol=1e-12)
    net.forward(X)
    assert not np.array_equal(net._ws.OUT[:50 * 200], out1)     # a new mask each pass
    net.eval_mode()
    a = net.forward(X)
    net.train_mode()
    assert np.isfinite(a).all()


def test_layer_options_are_checked_by_name():
    with pytest.raises(ValueError, match="norm"):
        vg.MLP([3, 4, 2], norm="group")
    with pytest.raises(ValueError, match="dropout"):
        vg.MLP([3, 4, 2], dropout=1.0)
    with pytest.raises(ValueError, match="residual"):
        vg.MLP([3, 4, 2], residual=[0.5])              # 3 -> 4 units cannot be a residual block
    with pytest.raises(ValueError, match="norm_eps"):
        vg.MLP([3, 4, 2], norm="batch", norm_eps=0)
    with pytest.raises(ValueError, match="residual_init"):
        vg.MLP([3, 3, 2], residual=1.0, residual_init="ones")


def test_an_explicit_layer_list_builds_the_same_network_as_the_options():
    a = vg.MLP([6, 8, 8, 3], activation=["tanh", "relu"], norm=["batch", None],
               residual=[None, 0.5], dropout=[0.0, 0.2], seed=3)
    b = vg.MLP.from_layers(6, [vg.Dense(8, "tanh", norm="batch"),
                               vg.Dense(8, "relu", residual=0.5, dropout=0.2), vg.Dense(3)],
                           seed=3)
    assert (a.norms, a.residuals, a.dropouts) == (b.norms, b.residuals, b.dropouts)
    np.testing.assert_array_equal(a.params, b.params)
    with pytest.raises(ValueError, match="output layer"):
        vg.MLP.from_layers(6, [vg.Dense(8, "tanh"), vg.Dense(3, "relu")])
    with pytest.raises(TypeError, match="layers"):
        vg.MLP.from_layers(6, [8, 3])


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_normalised_residual_dropout_networks_agree_across_thread_counts(norm):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((256, 600))
    y = rng.integers(0, 10, 256)
    old = vg.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            vg.set_num_threads(n)
            net = vg.MLP([600, 600, 600, 10], activation="tanh", init="glorot_normal",
                         dtype="float64", seed=0, norm=norm, residual=0.5, dropout=0.2)
            opt = vg.optim.Adam(net, lr=1e-3)
            for _ in range(2):
                net.train_step(X, y, "cross_entropy", opt)
            results.append((net.params.copy(), net._run_mean.copy()))
    finally:
        vg.set_num_threads(old)
    # (the bias of a batch-normalised layer has a zero gradient up to rounding, which Adam
    # turns into steps of ~1e-13 that BLAS rounding may flip between thread counts)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-13)

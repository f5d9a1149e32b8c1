"""Curvature: Hessian-vector products, the top eigenvalue by power iteration, sharpness tracking
and the c / lambda_max learning rate (vgcore.curvature).

The reference problem is a single linear layer under the squared error, whose Hessian is known
exactly: with ``A = [X 1]`` (the inputs and a column of ones for the bias) and the flat
parameters ordered ``[W (d x m, row-major), b (m)]``, i.e. ``A``'s column ``i`` times output
``j`` at index ``i * m + j``,

    L = mean over N m elements of (X W + b - T)^2,    H = 2 / (N m) * kron(A^T A, I_m).
"""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure import curvature as C

N, D, M = 50, 4, 3


def _linear_problem(dtype=np.float64, seed=3):
    """A linear layer, its batch and targets, and the exact Hessian of the mse loss."""
    rng = np.random.default_rng(seed)
    # unequal column scales give a well-separated top eigenvalue
    X = rng.standard_normal((N, D)) * np.array([2.0, 1.0, 1.0, 0.5])
    T = rng.standard_normal((N, M))
    net = vg.MLP([D, M], dtype=dtype, seed=seed, sigma_b=0.5)
    A = np.hstack([X, np.ones((N, 1))])
    H = 2.0 / (N * M) * np.kron(A.T @ A, np.eye(M))
    return net, X.astype(dtype), T.astype(dtype), H


def _blockwise_hv(X, v):
    """H v from the block formula 2/(N m) [[X^T R], [1^T R]], R = X V + 1 c^T."""
    V = v[:D * M].reshape(D, M)
    c = v[D * M:]
    R = X @ V + c
    return 2.0 / (N * M) * np.concatenate([(X.T @ R).ravel(), R.sum(axis=0)])


def _tanh_problem(seed=4, dtype=np.float64, sizes=(6, 10, 10, 3), batch=40):
    rng = np.random.default_rng(seed)
    net = vg.MLP(list(sizes), activation="tanh", dtype=dtype, seed=seed, sigma_b=0.3)
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    return net, X, y


def _hessian_by_columns(net, X, y, loss="cross_entropy"):
    n = net.n_params
    return np.stack([C.hessian_vector_product(net, X, y, e, loss) for e in np.eye(n)], axis=1)


def _relerr(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------- Hessian-vector products
def test_exact_kron_hessian_agrees_with_the_blockwise_formula():
    # the test's own H is laid out like net.params (guards the index ordering)
    net, X, _, H = _linear_problem()
    v = np.random.default_rng(0).standard_normal(net.n_params)
    np.testing.assert_allclose(H @ v, _blockwise_hv(X, v), rtol=1e-12, atol=1e-14)


def test_hvp_matches_the_exact_hessian_of_a_linear_layer_in_float64():
    net, X, T, H = _linear_problem()
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = rng.standard_normal(net.n_params)
        hv = C.hessian_vector_product(net, X, T, v, loss="mse")
        assert hv.dtype == np.float64 and hv.shape == (net.n_params,)
        np.testing.assert_allclose(hv, H @ v, rtol=1e-6, atol=1e-9 * np.abs(H @ v).max())


def test_hvp_in_float32_is_accurate_to_about_1e_4_on_the_linear_layer():
    net, X, T, H = _linear_problem(np.float32)
    v = np.random.default_rng(2).standard_normal(net.n_params)
    hv = C.hessian_vector_product(net, X, T, v, loss="mse")
    assert _relerr(hv, H @ v) < 1e-3


def test_hvp_is_linear_in_the_scale_of_v_and_zero_for_a_zero_vector():
    net, X, T, H = _linear_problem()
    v = np.random.default_rng(3).standard_normal(net.n_params)
    hv = C.hessian_vector_product(net, X, T, v, loss="mse")
    np.testing.assert_allclose(C.hessian_vector_product(net, X, T, 1e3 * v, loss="mse"),
                               1e3 * hv, rtol=1e-6, atol=1e-6)
    assert not C.hessian_vector_product(net, X, T, np.zeros(net.n_params), loss="mse").any()


def test_hessian_of_a_tanh_network_built_from_hvps_is_symmetric():
    net, X, y = _tanh_problem()
    H = _hessian_by_columns(net, X, y)
    assert _relerr(H, H.T) < 1e-7


def test_hvp_quadratic_form_matches_the_second_difference_of_the_loss():
    # v^T H v against (L(w + h v) - 2 L(w) + L(w - h v)) / h^2, losses from forward passes only
    net, X, y = _tanh_problem()
    v = np.random.default_rng(5).standard_normal(net.n_params)
    v /= np.linalg.norm(v)
    w = net.params.copy()
    h = 1e-3
    losses = []
    for s in (1.0, 0.0, -1.0):
        net.params[...] = w + s * h * v
        losses.append(C.loss_and_grad(net, X, y)[0])
    net.params[...] = w
    second = (losses[0] - 2 * losses[1] + losses[2]) / h**2
    assert v @ C.hessian_vector_product(net, X, y, v) == pytest.approx(second, rel=1e-5)


def test_hvp_with_an_explicit_eps_steps_that_far_along_v():
    net, X, y = _tanh_problem()
    v = np.random.default_rng(6).standard_normal(net.n_params)
    default = C.hessian_vector_product(net, X, y, v)
    assert C.default_eps(net, v) == pytest.approx(
        (np.finfo(np.float64).eps * (1 + np.linalg.norm(net.params))) ** (1 / 3)
        / np.linalg.norm(v))
    coarse = C.hessian_vector_product(net, X, y, v, eps=1e-3 / np.linalg.norm(v))
    assert 1e-12 < _relerr(coarse, default) < 1e-4      # O(eps^2) truncation, and different


# --------------------------------------------------------------- the network is left alone
def test_loss_and_grad_matches_train_step_and_returns_a_copy():
    net, X, y = _tanh_problem()
    value, g = C.loss_and_grad(net, X, y)
    assert value == net.train_step(X, y, "cross_entropy")
    np.testing.assert_array_equal(g, net.grads)
    assert g is not net.grads and not np.shares_memory(g, net.grads)


@pytest.mark.parametrize("call", ["loss_and_grad", "hvp", "top_eigenvalue", "sharpness"])
def test_params_are_bit_identical_and_grads_restored_after_the_call(call):
    net, X, y = _tanh_problem()
    net.train_step(X, y, "cross_entropy")
    net.grads[...] = np.random.default_rng(7).standard_normal(net.n_params)   # caller's grads
    params, grads = net.params.tobytes(), net.grads.copy()
    v = np.random.default_rng(8).standard_normal(net.n_params)
    {"loss_and_grad": lambda: C.loss_and_grad(net, X, y),
     "hvp": lambda: C.hessian_vector_product(net, X, y, v),
     "top_eigenvalue": lambda: C.top_eigenvalue(net, X, y, iters=5),
     "sharpness": lambda: C.Sharpness(every=1, iters=5).update(net, X, y, 0)}[call]()
    assert net.params.tobytes() == params
    np.testing.assert_array_equal(net.grads, grads)
    assert net.measure is True


def test_params_and_grads_are_restored_when_the_loss_rejects_the_targets():
    net, X, y = _tanh_problem()
    params, grads = net.params.tobytes(), net.grads.copy()
    bad = np.full_like(y, 7)                 # labels out of range for 3 classes
    with pytest.raises(ValueError, match="labels"):
        C.hessian_vector_product(net, X, bad, np.ones(net.n_params))
    assert net.params.tobytes() == params
    np.testing.assert_array_equal(net.grads, grads)


def test_float32_params_are_bit_identical_after_power_iteration():
    net, X, y = _tanh_problem(dtype=np.float32)
    params = net.params.tobytes()
    C.top_eigenvalue(net, X, y, iters=5)
    assert net.params.tobytes() == params


def test_gradient_flow_is_not_left_describing_perturbed_parameters():
    net, X, y = _tanh_problem()
    net.train_step(X, y, "cross_entropy")
    net.gradient_flow()
    C.hessian_vector_product(net, X, y, np.ones(net.n_params))
    assert net.measure is True
    with pytest.raises(RuntimeError, match="no measured step"):
        net.gradient_flow()
    net.train_step(X, y, "cross_entropy")
    net.gradient_flow()                       # the next step is measured again


# --------------------------------------------------------------- power iteration
def test_top_eigenvalue_matches_eigvalsh_of_the_exact_hessian():
    net, X, T, H = _linear_problem()
    ev, vecs = np.linalg.eigh(H)
    lam, u, k = C.top_eigenvalue(net, X, T, loss="mse")
    assert lam == pytest.approx(ev[-1], rel=1e-4)
    assert 1 < k <= 20
    assert np.linalg.norm(u) == pytest.approx(1.0)
    assert np.linalg.norm(H @ u - ev[-1] * u) < 1e-2 * ev[-1]
    # a tight tolerance gets the value to rounding
    lam, _, _ = C.top_eigenvalue(net, X, T, loss="mse", iters=200, tol=1e-10)
    assert lam == pytest.approx(ev[-1], rel=1e-8)


def test_top_eigenvalue_of_a_tanh_network_matches_its_hessian_and_shift_gives_both_ends():
    net, X, y = _tanh_problem()
    H = _hessian_by_columns(net, X, y)
    ev = np.linalg.eigvalsh((H + H.T) / 2)
    assert ev[0] < 0 < ev[-1]                # indefinite: negative curvature present
    lam, _, _ = C.top_eigenvalue(net, X, y, iters=200, tol=1e-10)
    assert lam == pytest.approx(ev[-1], rel=1e-6)
    # shifting by lambda_max makes the most negative eigenvalue the dominant one
    low, _, _ = C.top_eigenvalue(net, X, y, iters=3000, tol=1e-12, shift=lam)
    assert low == pytest.approx(ev[0], rel=1e-4)
    # and shifting by it recovers the largest algebraic eigenvalue
    high, _, _ = C.top_eigenvalue(net, X, y, iters=200, tol=1e-10, shift=low)
    assert high == pytest.approx(ev[-1], rel=1e-6)


def test_top_eigenvalue_is_reproducible_for_a_seed_and_stops_at_iters():
    net, X, y = _tanh_problem()
    a = C.top_eigenvalue(net, X, y, iters=3, tol=0.0, seed=11)
    b = C.top_eigenvalue(net, X, y, iters=3, tol=0.0, seed=11)
    assert a[0] == b[0] and a[2] == b[2] == 3
    np.testing.assert_array_equal(a[1], b[1])


def test_warm_start_from_the_eigenvector_converges_in_two_iterations():
    net, X, T, _ = _linear_problem()
    lam, u, k_cold = C.top_eigenvalue(net, X, T, loss="mse", tol=1e-8, iters=100)
    lam2, _, k_warm = C.top_eigenvalue(net, X, T, loss="mse", tol=1e-8, iters=100, v0=u)
    assert k_warm == 2 < k_cold
    assert lam2 == pytest.approx(lam, rel=1e-8)


# --------------------------------------------------------------- the step size it gives
def _gd_loss_after(lr, steps=150):
    net, X, T, _ = _linear_problem()
    opt = vg.optim.SGD(net, lr=lr)
    first = net.train_step(X, T, "mse", opt)
    for _ in range(steps):
        last = net.train_step(X, T, "mse", opt)
    return first, last


def test_gradient_descent_converges_below_2_over_lambda_max_and_diverges_above():
    net, X, T, H = _linear_problem()
    lam, _, _ = C.top_eigenvalue(net, X, T, loss="mse", tol=1e-8, iters=100)
    A = np.hstack([X, np.ones((N, 1))])
    best = np.mean((A @ np.linalg.lstsq(A, T, rcond=None)[0] - T) ** 2)
    first, last = _gd_loss_after(C.CurvatureLR(c=1.9)(lam))
    assert last == pytest.approx(best, rel=1e-8) and last < first
    first, last = _gd_loss_after(C.CurvatureLR(c=2.1)(lam))
    assert last > 1e6 * first                # the top mode grows 1.1x per step


def test_curvature_lr_is_c_over_lambda_clipped_to_its_bounds():
    assert C.CurvatureLR()(4.0) == 0.25
    assert C.CurvatureLR(c=1.5)(np.float64(3.0)) == 0.5
    assert C.CurvatureLR(c=1.0, max_lr=0.1)(4.0) == 0.1
    assert C.CurvatureLR(c=1.0, min_lr=0.5)(4.0) == 0.5
    assert C.CurvatureLR(c=1.0)(-4.0) == 0.25        # |lambda| bounds the positive eigenvalues
    assert C.CurvatureLR(max_lr=0.3)(0.0) == 0.3     # no curvature: the bound
    assert C.CurvatureLR(max_lr=0.3)(C.Sharpness()) == 0.3     # no estimate yet
    with pytest.raises(ValueError, match="sharpness: expected a nonzero lambda_max"):
        C.CurvatureLR()(C.Sharpness())


def test_curvature_lr_sets_an_sgd_learning_rate_from_a_tracker():
    net, X, y = _tanh_problem()
    sharp = C.Sharpness(every=1, iters=30)
    sharp.update(net, X, y, 0)
    opt = vg.optim.SGD(net, lr=1.0)
    opt.lr = C.CurvatureLR(c=1.0)(sharp)
    assert opt.lr == pytest.approx(1.0 / sharp.value)


# --------------------------------------------------------------- sharpness tracking
def test_sharpness_tracks_every_k_steps_during_sgd_with_warm_starts():
    net, X, y = _tanh_problem()
    sharp = C.Sharpness(every=5, iters=50, tol=1e-6)
    opt = vg.optim.SGD(net, lr=0.05)
    for step in range(21):
        net.train_step(X, y, "cross_entropy")
        sharp.update(net, X, y, step)
        opt.step()
    np.testing.assert_array_equal(sharp.steps, [0, 5, 10, 15, 20])
    assert sharp.values.dtype == np.float64 and sharp.values.shape == (5,)
    assert np.all(sharp.values > 0) and sharp.value == sharp.values[-1]
    assert sharp.iterations.shape == (5,)
    # warm starts (from the eigenvector 5 steps earlier) need fewer products than cold starts
    # at the same parameters (measured: 7, 6, 7, 9 warm against 14..26 cold)
    cold = [C.top_eigenvalue(net, X, y, iters=50, tol=1e-6, seed=s)[2] for s in range(5)]
    assert sharp.iterations[-1] < min(cold)
    assert sharp.iterations[1:].mean() < np.mean(cold) / 1.5


def test_sharpness_estimates_the_same_value_as_top_eigenvalue():
    net, X, y = _tanh_problem()
    sharp = C.Sharpness(every=10, iters=200, tol=1e-10)
    assert sharp.update(net, X, y, 0) == pytest.approx(
        C.top_eigenvalue(net, X, y, iters=200, tol=1e-10)[0], rel=1e-7)
    assert sharp.update(net, X, y, 9) == sharp.values[0] and len(sharp.steps) == 1
    sharp.update(net, X, y, 9, force=True)
    assert len(sharp.steps) == 2


def test_sharpness_batch_uses_a_subset_of_rows():
    net, X, y = _tanh_problem()
    full = C.Sharpness(every=1, iters=100, tol=1e-10).update(net, X, y, 0)
    same = C.Sharpness(every=1, iters=100, tol=1e-10, batch=len(X)).update(net, X, y, 0)
    sub = C.Sharpness(every=1, iters=100, tol=1e-10, batch=10).update(net, X, y, 0)
    assert same == pytest.approx(full, rel=1e-8)
    assert sub != pytest.approx(full, rel=1e-3)


def test_sharpness_rejects_a_step_before_the_last_one_until_reset():
    net, X, y = _tanh_problem()
    sharp = C.Sharpness(every=1, iters=3)
    sharp.update(net, X, y, 10)
    with pytest.raises(ValueError, match=r"step: expected >= 10 .* got 3"):
        sharp.update(net, X, y, 3)
    sharp.reset()
    sharp.update(net, X, y, 3)
    np.testing.assert_array_equal(sharp.steps, [3])


# --------------------------------------------------------------- bad input
def _bad_calls():
    net, X, y = _tanh_problem()
    n = net.n_params
    return [
        (lambda: C.hessian_vector_product(net, X, y, np.ones(n - 1)), ValueError,
         rf"v: expected shape \({n},\)"),
        (lambda: C.hessian_vector_product(net, X, y, np.ones(n, complex)), TypeError,
         "v: expected a real"),
        (lambda: C.hessian_vector_product(net, X, y, [1.0] * n), TypeError,
         "v: expected a numpy.ndarray"),
        (lambda: C.hessian_vector_product(net, X, y, np.full(n, np.nan)), ValueError,
         "v: expected finite values"),
        (lambda: C.hessian_vector_product(net, X, y, np.ones(n), eps=0.0), ValueError,
         "eps: expected a number > 0, got 0.0"),
        (lambda: C.hessian_vector_product(net, X, y, np.ones(n), loss="hinge"), ValueError,
         "loss: unknown loss 'hinge'"),
        (lambda: C.loss_and_grad("net", X, y), TypeError, "net: expected a vgcore.MLP, got str"),
        (lambda: C.loss_and_grad(net, X.astype(np.float32), y), TypeError,
         "X: expected dtype float64"),
        (lambda: C.top_eigenvalue(net, X, y, iters=0), ValueError,
         "iters: expected an integer >= 1, got 0"),
        (lambda: C.top_eigenvalue(net, X, y, tol=-1.0), ValueError, "tol: expected a number >= 0"),
        (lambda: C.top_eigenvalue(net, X, y, v0=np.zeros(n)), ValueError,
         "v0: expected a nonzero start vector"),
        (lambda: C.Sharpness(every=0), ValueError, "every: expected an integer >= 1, got 0"),
        (lambda: C.Sharpness(batch=2.5), TypeError, "batch: expected an integer, got float"),
        (lambda: C.Sharpness().update(net, X, y, -1), ValueError,
         "step: expected an integer >= 0, got -1"),
        (lambda: C.CurvatureLR(c=0), ValueError, "c: expected a number > 0, got 0.0"),
        (lambda: C.CurvatureLR(max_lr=0.1, min_lr=0.2), ValueError,
         r"min_lr: expected <= max_lr \(0.1\), got 0.2"),
        (lambda: C.CurvatureLR()("big"), TypeError,
         "sharpness: expected a Sharpness tracker or a number, got str"),
        (lambda: C.CurvatureLR()(np.inf), ValueError, "sharpness: expected a finite lambda_max"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_arguments_raise_errors_naming_the_argument(i):
    call, exc, pattern = _bad_calls()[i]
    with pytest.raises(exc, match=pattern):
        call()


def test_sharpness_callback_tracks_during_fit_and_sets_the_learning_rate():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((256, 6))
    y = rng.integers(0, 3, 256)
    net = vg.MLP([6, 16, 16, 3], activation="tanh", dtype="float64", seed=0, norm="batch",
                 dropout=0.1)
    opt = vg.optim.SGD(net, lr=0.05)
    cb = C.SharpnessCallback(X[:64], y[:64], C.Sharpness(every=4, iters=10),
                             lr_policy=C.CurvatureLR(c=1.0, max_lr=1.0))
    vg.fit(net, X, y, optimizer=opt, epochs=2, batch_size=32, callbacks=[cb], verbose=0)
    assert list(cb.sharpness.steps) == [0, 4, 8, 12]
    assert opt.lr == pytest.approx(min(1.0, 1.0 / abs(cb.sharpness.value)))


def test_probing_keeps_batch_norm_running_averages_and_the_dropout_counter():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((32, 6))
    y = rng.integers(0, 3, 32)
    net = vg.MLP([6, 8, 8, 3], activation="tanh", dtype="float64", seed=0, norm="batch",
                 dropout=0.2)
    net.train_step(X, y, "cross_entropy")
    means, counter = net._run_mean.copy(), net.dropout_counter
    lam, _, _ = C.top_eigenvalue(net, X, y, iters=5)
    assert np.isfinite(lam)
    np.testing.assert_array_equal(net._run_mean, means)
    assert net.dropout_counter == counter

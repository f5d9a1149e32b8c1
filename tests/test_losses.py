"""Losses: values against independent formulas, gradients against the reference and finite
differences, numerical stability at huge logits, float64 accumulation, the grad_out buffer."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import LOSS_NAMES, assert_close, make_target

DTYPE_PARAMS = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def expected_loss(loss, z, t):
    """The documented loss, in float64, written independently of vgcore."""
    z = z.astype(np.float64)
    if loss == "cross_entropy":
        return float(np.mean(special.logsumexp(z, axis=1) - z[np.arange(len(t)), t]))
    if loss == "mse":
        return float(np.mean((z - t.astype(np.float64)) ** 2))
    if loss == "binary_cross_entropy":
        t = t.astype(np.float64)
        return float(np.mean(-t * special.log_expit(z) - (1 - t) * special.log_expit(-z)))
    raise AssertionError(loss)


def expected_grad(loss, z, t):
    z = z.astype(np.float64)
    n, m = z.shape
    if loss == "cross_entropy":
        g = special.softmax(z, axis=1)
        g[np.arange(n), t] -= 1
        return g / n
    if loss == "mse":
        return 2 * (z - t) / (n * m)
    if loss == "binary_cross_entropy":
        return (special.expit(z) - t) / (n * m)
    raise AssertionError(loss)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 3), (64, 10), (5, 1)])
def test_loss_value_and_gradient_match_definition(loss, shape, dtype, rng):
    if loss == "cross_entropy" and shape[1] == 1:
        shape = (shape[0], 2)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    t = make_target(loss, shape[0], shape[1], dtype, rng)
    value, grad = vg.losses.get(loss)(z, t)
    assert isinstance(value, float)
    assert grad.shape == z.shape and grad.dtype == z.dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert value == pytest.approx(expected_loss(loss, z, t), rel=rtol, abs=rtol)
    assert_close(grad, expected_grad(loss, z, t), dtype, f"{loss} gradient")
    ref_value, ref_grad = getattr(R, loss)(z, t)
    assert value == pytest.approx(ref_value, rel=rtol, abs=rtol)
    assert_close(grad, ref_grad, dtype, f"{loss} gradient vs reference")


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_gradient_matches_central_differences(loss, rng):
    z = rng.standard_normal((4, 5))
    t = make_target(loss, 4, 5, np.float64, rng)
    fn = vg.losses.get(loss)
    _, grad = fn(z, t)
    h = 1e-5
    fd = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd[idx] = (fn(zp, t)[0] - fn(zm, t)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_cross_entropy_is_stable_at_huge_logits(dtype):
    big = 1e4 if dtype == np.float32 else 1e300
    z = np.array([[big, 0.0, -big], [-big, big, 0.0], [0.0, 0.0, 0.0]], dtype=dtype)
    y = np.array([0, 0, 2])
    value, grad = vg.losses.cross_entropy(z, y)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # per sample: 0, 2*big, log 3
    assert value == pytest.approx((0 + 2 * float(dtype(big)) + np.log(3)) / 3, rel=1e-6)
    want = np.array([[0, 0, 0], [-1, 1, 0], [1 / 3, 1 / 3, -2 / 3]]) / 3
    np.testing.assert_allclose(grad, want, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_binary_cross_entropy_is_stable_at_huge_logits(dtype):
    big = 1e4 if dtype == np.float32 else 1e300
    z = np.array([[big, -big, big, -big]], dtype=dtype)
    t = np.array([[1, 0, 0, 1]], dtype=dtype)
    value, grad = vg.losses.binary_cross_entropy(z, t)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(2 * float(dtype(big)) / 4, rel=1e-6)
    np.testing.assert_allclose(grad, np.array([[0, 0, 1, -1]]) / 4, atol=1e-7)


def test_binary_cross_entropy_soft_labels_minimised_at_sigmoid_of_logits():
    z = np.array([[-2.0, 0.0, 0.7, 3.0]])
    t = special.expit(z)
    value, grad = vg.losses.binary_cross_entropy(z, t)
    np.testing.assert_allclose(grad, 0, atol=1e-16)
    entropy = float(np.mean(-t * np.log(t) - (1 - t) * np.log(1 - t)))
    assert value == pytest.approx(entropy, rel=1e-13)


def test_losses_accumulate_in_float64_for_float32_inputs(rng):
    # 400k float32 elements: a float32 running sum would be off by ~1e-3 relative
    n, m = 4000, 100
    p = rng.standard_normal((n, m)).astype(np.float32) + 3
    t = np.zeros((n, m), np.float32)
    value, _ = vg.losses.mse(p, t)
    assert value == pytest.approx(float(np.mean(p.astype(np.float64) ** 2)), rel=1e-9)
    z = rng.standard_normal((n, m)).astype(np.float32)
    tb = (rng.random((n, m)) > 0.5).astype(np.float32)
    value, _ = vg.losses.binary_cross_entropy(z, tb)
    assert value == pytest.approx(expected_loss("binary_cross_entropy", z, tb), rel=1e-9)
    y = rng.integers(0, m, n)
    value, _ = vg.losses.cross_entropy(z, y)
    assert value == pytest.approx(expected_loss("cross_entropy", z, y), rel=1e-6)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                         np.int64, np.uint64])
def test_cross_entropy_accepts_any_integer_label_dtype(label_dtype, rng):
    z = rng.standard_normal((6, 4))
    y = np.array([0, 3, 1, 2, 3, 0])
    want = vg.losses.cross_entropy(z, y)
    got = vg.losses.cross_entropy(z, y.astype(label_dtype))
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_cross_entropy_accepts_strided_labels(rng):
    z = rng.standard_normal((5, 3))
    y = np.array([0, 9, 2, 9, 1, 9, 1, 9, 0, 9])
    value, grad = vg.losses.cross_entropy(z, y[::2])
    want = vg.losses.cross_entropy(z, np.ascontiguousarray(y[::2]))
    assert value == want[0]
    np.testing.assert_array_equal(grad, want[1])


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_grad_out_receives_the_gradient_without_a_new_array(loss, rng):
    z = rng.standard_normal((5, 3))
    t = make_target(loss, 5, 3, np.float64, rng)
    buf = np.full((5, 3), np.nan)
    value, grad = vg.losses.get(loss)(z, t, grad_out=buf)
    assert grad is buf
    want_value, want_grad = vg.losses.get(loss)(z, t)
    assert value == want_value
    np.testing.assert_array_equal(buf, want_grad)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_grad_out_may_be_the_input_array(loss, rng):
    # writing the gradient over the logits (in-place use) must either be rejected or give the
    # same loss and gradient as with a separate buffer
    z = rng.standard_normal((4, 3))
    t = make_target(loss, 4, 3, np.float64, rng)
    want_value, want_grad = vg.losses.get(loss)(z, t)
    z2 = z.copy()
    try:
        value, grad = vg.losses.get(loss)(z2, t, grad_out=z2)
    except ValueError as e:
        assert "grad_out" in str(e)
        return
    assert value == pytest.approx(want_value, rel=1e-14), "loss computed from overwritten logits"
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14)


def test_losses_get_returns_functions_and_rejects_unknown_names():
    assert vg.losses.get("mse") is vg.losses.mse
    assert vg.losses.get(vg.losses.cross_entropy) is vg.losses.cross_entropy
    with pytest.raises(ValueError, match="loss"):
        vg.losses.get("hinge")
    with pytest.raises(ValueError, match="loss"):
        vg.losses.get(None)

"""Bad input is rejected before it reaches compiled code, with an error that names the
argument, and a rejected call leaves the network unchanged and usable."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import compare_passes, engine_pass, reference_pass

SIZES = [4, 6, 3]
BATCH = 5


def _net(dtype="float32"):
    return vg.MLP(SIZES, activation="tanh", dtype=dtype, seed=0, sigma_b=0.1)


def _X(dtype=np.float32, batch=BATCH):
    return np.random.default_rng(1).standard_normal((batch, SIZES[0])).astype(dtype)


def _unaligned(shape, dtype):
    itemsize = np.dtype(dtype).itemsize
    buf = np.zeros(int(np.prod(shape)) * itemsize + 1, np.uint8)
    x = buf[1:].view(dtype).reshape(shape)
    assert not x.flags.aligned
    return x


def _with(value, where, X=None):
    X = _X() if X is None else X.copy()
    X[where] = value
    return X


BAD_X = [
    pytest.param(lambda: _X()[0], ValueError, id="1-D"),
    pytest.param(lambda: _X()[None], ValueError, id="3-D"),
    pytest.param(lambda: np.float32(1.0), TypeError, id="0-D-scalar"),
    pytest.param(lambda: _X().tolist(), TypeError, id="list"),
    pytest.param(lambda: np.zeros((BATCH, 5), np.float32), ValueError, id="too-wide"),
    pytest.param(lambda: np.zeros((BATCH, 3), np.float32), ValueError, id="too-narrow"),
    pytest.param(lambda: np.zeros((BATCH, 0), np.float32), ValueError, id="no-columns"),
    pytest.param(lambda: np.zeros((0, 4), np.float32), ValueError, id="empty-batch"),
    pytest.param(lambda: np.ones((BATCH, 4), np.int64), TypeError, id="int64"),
    pytest.param(lambda: np.ones((BATCH, 4), np.int32), TypeError, id="int32"),
    pytest.param(lambda: np.ones((BATCH, 4), np.uint8), TypeError, id="uint8"),
    pytest.param(lambda: np.ones((BATCH, 4), bool), TypeError, id="bool"),
    pytest.param(lambda: np.ones((BATCH, 4), np.complex64), TypeError, id="complex64"),
    pytest.param(lambda: np.ones((BATCH, 4), np.complex128), TypeError, id="complex128"),
    pytest.param(lambda: np.ones((BATCH, 4), object), TypeError, id="object"),
    pytest.param(lambda: np.ones((BATCH, 4), np.float16), TypeError, id="float16"),
    pytest.param(lambda: np.ones((BATCH, 4), np.longdouble), TypeError, id="longdouble"),
    pytest.param(lambda: np.ones((BATCH, 4), "U3"), TypeError, id="str"),
    pytest.param(lambda: _X(np.float64), TypeError, id="float64-into-float32-net"),
    pytest.param(lambda: _X().astype(">f4"), TypeError, id="big-endian-float32"),
    pytest.param(lambda: _with(np.nan, (2, 1)), ValueError, id="nan"),
    pytest.param(lambda: _with(np.inf, (0, 0)), ValueError, id="inf"),
    pytest.param(lambda: _with(-np.inf, (4, 3)), ValueError, id="-inf"),
    pytest.param(lambda: np.ascontiguousarray(np.repeat(_X(), 2, axis=1))[:, ::2], ValueError,
                 id="strided-columns"),
    pytest.param(lambda: _X(batch=2 * BATCH)[::2], ValueError, id="strided-rows"),
    pytest.param(lambda: np.asfortranarray(_X()), ValueError, id="fortran-order"),
    pytest.param(lambda: _unaligned((BATCH, 4), np.float32), ValueError, id="unaligned"),
]


@pytest.mark.parametrize("make_x, exc", BAD_X)
def test_forward_rejects_bad_X_naming_it(make_x, exc):
    net = _net()
    with pytest.raises(exc, match=r"^X\b"):
        net.forward(make_x())


@pytest.mark.parametrize("make_x, exc", BAD_X)
def test_train_step_rejects_bad_X_and_leaves_parameters_unchanged(make_x, exc):
    net = _net()
    opt = vg.optim.SGD(net, 0.1)
    params, grads = net.params.copy(), net.grads.copy()
    with pytest.raises(exc, match=r"^X\b"):
        net.train_step(make_x(), np.zeros(BATCH, np.int64), "cross_entropy", opt)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, grads)


def test_float32_X_into_float64_network_is_rejected():
    with pytest.raises(TypeError, match=r"^X\b.*float64"):
        _net("float64").forward(_X(np.float32))


def test_rejected_forward_keeps_the_last_pass_usable():
    net = _net("float64")
    ref = R.ReferenceMLP.from_network(net)
    X = _X(np.float64, batch=8)
    y = np.arange(8) % 3
    out = net.forward(X).copy()
    for bad in [_with(np.nan, (1, 1), _X(np.float64, batch=3)), _X(np.float32, batch=3),
                np.zeros((0, 4))]:
        with pytest.raises((ValueError, TypeError), match=r"^X\b"):
            net.forward(bad)
    np.testing.assert_array_equal(net.forward(X), out)
    compare_passes(engine_pass(net, X, "cross_entropy", y),
                   reference_pass(ref, X, "cross_entropy", y), np.float64)


# ------------------------------------------------------------------------------- backward

def test_backward_before_forward_is_a_runtime_error():
    net = _net()
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((BATCH, 3), np.float32))


BAD_DOUT = [
    pytest.param(lambda: np.zeros((BATCH, 4), np.float32), ValueError, id="wrong-width"),
    pytest.param(lambda: np.zeros((BATCH + 1, 3), np.float32), ValueError, id="wrong-batch"),
    pytest.param(lambda: np.zeros((BATCH - 1, 3), np.float32), ValueError, id="smaller-batch"),
    pytest.param(lambda: np.zeros(3, np.float32), ValueError, id="1-D"),
    pytest.param(lambda: np.zeros((BATCH, 3), np.float64), TypeError, id="float64"),
    pytest.param(lambda: np.zeros((BATCH, 3), np.int32), TypeError, id="int32"),
    pytest.param(lambda: np.full((BATCH, 3), np.nan, np.float32), ValueError, id="nan"),
    pytest.param(lambda: np.asfortranarray(np.zeros((BATCH, 3), np.float32)), ValueError,
                 id="fortran-order"),
    pytest.param(lambda: [[0.0] * 3] * BATCH, TypeError, id="list"),
]


@pytest.mark.parametrize("make_dout, exc", BAD_DOUT)
def test_backward_rejects_bad_dout_and_leaves_gradients_unchanged(make_dout, exc):
    net = _net()
    net.forward(_X())
    net.backward(np.ones((BATCH, 3), np.float32))
    grads = net.grads.copy()
    params = net.params.copy()
    with pytest.raises(exc, match=r"^dout\b"):
        net.backward(make_dout())
    np.testing.assert_array_equal(net.grads, grads)
    np.testing.assert_array_equal(net.params, params)


# --------------------------------------------------------------------------------- losses

def _logits(dtype=np.float64, shape=(BATCH, 3)):
    return np.random.default_rng(2).standard_normal(shape).astype(dtype)


BAD_LOSS_CALLS = [
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.array([0, 1, 2, 0, -1])),
                 ValueError, "labels", id="label-negative"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.array([0, 1, 2, 0, 3])),
                 ValueError, "labels", id="label-equal-n_classes"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.array([0, 1, 2, 0, 99])),
                 ValueError, "labels", id="label-too-large"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.array([0., 1., 2., 0., 1.])),
                 TypeError, "labels", id="float-labels"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.ones(BATCH, bool)),
                 TypeError, "labels", id="bool-labels"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), [0, 1, 2, 0, 1]),
                 TypeError, "labels", id="list-labels"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.zeros(BATCH - 1, np.int64)),
                 ValueError, "labels", id="labels-too-short"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.zeros(BATCH + 1, np.int64)),
                 ValueError, "labels", id="labels-too-long"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(), np.zeros((BATCH, 1), np.int64)),
                 ValueError, "labels", id="labels-2-D"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits(np.int64), np.zeros(BATCH, np.int64)),
                 TypeError, "logits", id="int-logits"),
    pytest.param(lambda: vg.losses.cross_entropy(_with(np.nan, (0, 0), _logits()),
                                                 np.zeros(BATCH, np.int64)),
                 ValueError, "logits", id="nan-logits"),
    pytest.param(lambda: vg.losses.cross_entropy(_logits()[0], np.zeros(1, np.int64)),
                 ValueError, "logits", id="1-D-logits"),
    pytest.param(lambda: vg.losses.mse(_logits(), _logits(shape=(BATCH, 4))),
                 ValueError, "target", id="mse-target-wrong-width"),
    pytest.param(lambda: vg.losses.mse(_logits(), _logits(shape=(BATCH + 1, 3))),
                 ValueError, "target", id="mse-target-wrong-batch"),
    pytest.param(lambda: vg.losses.mse(_logits(), _logits().ravel()),
                 ValueError, "target", id="mse-target-flat"),
    pytest.param(lambda: vg.losses.mse(_logits(), _logits(np.float32)),
                 TypeError, "target", id="mse-target-dtype"),
    pytest.param(lambda: vg.losses.mse(_logits(), _with(np.inf, (1, 1), _logits())),
                 ValueError, "target", id="mse-target-inf"),
    pytest.param(lambda: vg.losses.mse(_with(np.nan, (1, 1), _logits()), _logits()),
                 ValueError, "pred", id="mse-pred-nan"),
    pytest.param(lambda: vg.losses.binary_cross_entropy(_logits(), _with(-0.1, (0, 0),
                                                                         np.zeros((BATCH, 3)))),
                 ValueError, "targets", id="bce-target-negative"),
    pytest.param(lambda: vg.losses.binary_cross_entropy(_logits(), _with(1.5, (2, 2),
                                                                         np.zeros((BATCH, 3)))),
                 ValueError, "targets", id="bce-target-above-1"),
    pytest.param(lambda: vg.losses.binary_cross_entropy(_logits(), np.zeros((BATCH, 2))),
                 ValueError, "targets", id="bce-target-shape"),
    pytest.param(lambda: vg.losses.binary_cross_entropy(_logits(), np.zeros((BATCH, 3), int)),
                 TypeError, "targets", id="bce-target-int"),
    pytest.param(lambda: vg.losses.binary_cross_entropy(_logits(),
                                                        np.full((BATCH, 3), np.nan)),
                 ValueError, "targets", id="bce-target-nan"),
]


@pytest.mark.parametrize("call, exc, name", BAD_LOSS_CALLS)
def test_losses_reject_bad_input_naming_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}\b"):
        call()


def _readonly(shape, dtype=np.float64):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("loss, target", [
    ("cross_entropy", np.zeros(BATCH, np.int64)),
    ("mse", np.zeros((BATCH, 3))),
    ("binary_cross_entropy", np.zeros((BATCH, 3))),
])
@pytest.mark.parametrize("grad_out, exc", [
    pytest.param(lambda: _readonly((BATCH, 3)), ValueError, id="read-only"),
    pytest.param(lambda: np.zeros((BATCH, 4)), ValueError, id="wrong-shape"),
    pytest.param(lambda: np.zeros((BATCH, 3), np.float32), TypeError, id="wrong-dtype"),
    pytest.param(lambda: np.asfortranarray(np.zeros((BATCH, 3))), ValueError, id="fortran"),
])
def test_losses_reject_bad_grad_out(loss, target, grad_out, exc):
    with pytest.raises(exc, match=r"^grad_out\b"):
        vg.losses.get(loss)(_logits(), target, grad_out=grad_out())


@pytest.mark.parametrize("loss, target, name", [
    ("cross_entropy", np.array([0, 1, 2, 0, 3]), "labels"),
    ("cross_entropy", np.zeros(BATCH + 1, np.int64), "labels"),
    ("mse", np.zeros((BATCH, 4), np.float32), "target"),
    ("binary_cross_entropy", np.full((BATCH, 3), 2.0, np.float32), "targets"),
])
def test_train_step_with_bad_targets_leaves_parameters_and_gradients_unchanged(loss, target,
                                                                                name):
    net = _net()
    opt = vg.optim.SGD(net, 0.5)
    net.train_step(_X(), np.zeros(BATCH, np.int64), "cross_entropy")   # grads now nonzero
    params, grads = net.params.copy(), net.grads.copy()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        net.train_step(_X(), target, loss, opt)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, grads)


def test_train_step_rejects_unknown_loss_name():
    net = _net()
    with pytest.raises(ValueError, match="loss"):
        net.train_step(_X(), np.zeros(BATCH, np.int64), "hinge")


# ----------------------------------------------------------------------------- constructor

BAD_MLP = [
    pytest.param(dict(sizes=[4, 5], activation="swish"), ValueError, "activation",
                 id="unknown-activation"),
    pytest.param(dict(sizes=[4, 5, 3], activation=["relu", "tanh"]), ValueError, "activation",
                 id="activation-count"),
    pytest.param(dict(sizes=[4, 5, 3], activation=3), TypeError, "activation",
                 id="activation-int"),
    pytest.param(dict(sizes=[4, 5], init="xavier"), ValueError, "init", id="unknown-init"),
    pytest.param(dict(sizes=[4, 5], init=None), TypeError, "init", id="init-none"),
    pytest.param(dict(sizes=[4, 5], init="normal"), ValueError, "sigma_w",
                 id="normal-without-sigma_w"),
    pytest.param(dict(sizes=[4, 5], init="he_normal", sigma_w=1.0), ValueError, "sigma_w",
                 id="sigma_w-with-he_normal"),
    pytest.param(dict(sizes=[4, 5], init="normal", sigma_w=-1.0), ValueError, "sigma_w",
                 id="negative-sigma_w"),
    pytest.param(dict(sizes=[4, 5], init="normal", sigma_w=float("nan")), ValueError,
                 "sigma_w", id="nan-sigma_w"),
    pytest.param(dict(sizes=[4, 5], sigma_b=-0.1), ValueError, "sigma_b",
                 id="negative-sigma_b"),
    pytest.param(dict(sizes=[4, 5], sigma_b=float("inf")), ValueError, "sigma_b",
                 id="inf-sigma_b"),
    pytest.param(dict(sizes=[4, 5], sigma_b="0.1"), TypeError, "sigma_b", id="str-sigma_b"),
    pytest.param(dict(sizes=[4, 0, 3]), ValueError, "sizes", id="zero-width"),
    pytest.param(dict(sizes=[4, -5, 3]), ValueError, "sizes", id="negative-width"),
    pytest.param(dict(sizes=[0, 3]), ValueError, "sizes", id="zero-inputs"),
    pytest.param(dict(sizes=[4]), ValueError, "sizes", id="one-entry"),
    pytest.param(dict(sizes=[]), ValueError, "sizes", id="no-entries"),
    pytest.param(dict(sizes=[4, 2.5]), TypeError, "sizes", id="float-width"),
    pytest.param(dict(sizes=[4, True]), TypeError, "sizes", id="bool-width"),
    pytest.param(dict(sizes="45"), TypeError, "sizes", id="string"),
    pytest.param(dict(sizes=4), TypeError, "sizes", id="int"),
    pytest.param(dict(sizes=[4, 5], dtype="float16"), TypeError, "dtype", id="float16"),
    pytest.param(dict(sizes=[4, 5], dtype="int32"), TypeError, "dtype", id="int32"),
    pytest.param(dict(sizes=[4, 5], dtype="nonsense"), TypeError, "dtype", id="bad-dtype"),
    pytest.param(dict(sizes=[4, 5], seed=1.5), TypeError, "seed", id="float-seed"),
    pytest.param(dict(sizes=[4, 5], seed="1"), TypeError, "seed", id="str-seed"),
]


@pytest.mark.parametrize("kwargs, exc, name", BAD_MLP)
def test_mlp_constructor_rejects_bad_arguments_naming_them(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        vg.MLP(**kwargs)


def test_mlp_accepts_numpy_integer_sizes_and_seed():
    net = vg.MLP(np.array([4, 5, 3]), seed=np.int64(3))
    assert net.sizes == (4, 5, 3)
    np.testing.assert_array_equal(net.params, vg.MLP([4, 5, 3], seed=3).params)


# ---------------------------------------------------------------------- optimiser, threads

@pytest.mark.parametrize("lr, exc", [
    (0, ValueError), (0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (-float("inf"), ValueError), ("0.1", TypeError),
    (True, TypeError), (None, TypeError), (np.float32(np.nan), ValueError),
])
def test_sgd_rejects_bad_learning_rate(lr, exc):
    with pytest.raises(exc, match=r"^lr\b"):
        vg.optim.SGD(_net(), lr)


def test_sgd_accepts_numpy_scalar_learning_rate():
    assert vg.optim.SGD(_net(), np.float32(0.5)).lr == 0.5
    assert vg.optim.SGD(_net(), np.int64(2)).lr == 2.0


def test_sgd_rejects_something_that_is_not_a_network():
    with pytest.raises(TypeError, match=r"^net\b"):
        vg.optim.SGD(object(), 0.1)


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                    ("2", TypeError), (True, TypeError), (None, TypeError),
                                    (2**31, ValueError)])
def test_set_num_threads_rejects_bad_counts_and_keeps_the_current_one(n, exc):
    before = vg.get_num_threads()
    with pytest.raises(exc, match=r"^n\b"):
        vg.set_num_threads(n)
    assert vg.get_num_threads() == before

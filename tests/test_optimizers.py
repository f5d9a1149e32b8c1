"""The compiled optimisers against NumPy implementations of their definitions (PyTorch's
torch.optim semantics), over several steps, with weight decay and clipping."""
import math

import numpy as np
import pytest

import vgcore as vg


class NumpyOpt:
    """Reference updates on a flat float64 parameter vector."""

    def __init__(self, kind, lr, wd=0.0, momentum=0.0, nesterov=False, alpha=0.99, eps=1e-8,
                 betas=(0.9, 0.999), clip_norm=None, clip_value=None):
        self.__dict__.update(kind=kind, lr=lr, wd=wd, mom=momentum, nest=nesterov, alpha=alpha,
                             eps=eps, b1=betas[0], b2=betas[1], clip_norm=clip_norm,
                             clip_value=clip_value)
        self.t = 0
        self.s1 = self.s2 = None
        self.last_norm = math.nan

    def step(self, p, g):
        g = g.copy()
        if self.clip_norm is not None:
            n = np.linalg.norm(g)
            self.last_norm = n
            if n > self.clip_norm:
                g *= self.clip_norm / (n + 1e-6)
        if self.clip_value is not None:
            g = np.clip(g, -self.clip_value, self.clip_value)
        if self.s1 is None:
            self.s1, self.s2 = np.zeros_like(p), np.zeros_like(p)
        k = self.kind
        if k != "adamw" and self.wd:
            g = g + self.wd * p
        if k == "sgd":
            if self.mom:
                self.s1 = g.copy() if self.t == 0 else self.mom * self.s1 + g
                d = g + self.mom * self.s1 if self.nest else self.s1
            else:
                d = g
            p = p - self.lr * d
        elif k == "rmsprop":
            self.s1 = self.alpha * self.s1 + (1 - self.alpha) * g * g
            p = p - self.lr * g / (np.sqrt(self.s1) + self.eps)
        elif k == "adagrad":
            self.s1 = self.s1 + g * g
            p = p - self.lr * g / (np.sqrt(self.s1) + self.eps)
        else:
            t = self.t + 1
            self.s1 = self.b1 * self.s1 + (1 - self.b1) * g
            self.s2 = self.b2 * self.s2 + (1 - self.b2) * g * g
            mhat = self.s1 / (1 - self.b1 ** t)
            vhat = self.s2 / (1 - self.b2 ** t)
            if k == "adamw":
                p = p - self.lr * self.wd * p
            p = p - self.lr * mhat / (np.sqrt(vhat) + self.eps)
        self.t += 1
        return p


CASES = [
    ("sgd", dict(lr=0.1), dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
     dict(lr=0.05, momentum=0.8, nesterov=True, wd=0.01)),
    ("sgd", dict(lr=0.1, clip_norm=0.05), dict(lr=0.1, clip_norm=0.05)),
    ("sgd", dict(lr=0.1, clip_value=0.002, weight_decay=0.1),
     dict(lr=0.1, clip_value=0.002, wd=0.1)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, weight_decay=0.01),
     dict(lr=0.01, alpha=0.9, wd=0.01)),
    ("adagrad", dict(lr=0.05, eps=1e-10), dict(lr=0.05, eps=1e-10)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05),
     dict(lr=0.01, betas=(0.8, 0.99), wd=0.05)),
    ("adamw", dict(lr=0.01, weight_decay=0.1, clip_norm=0.1),
     dict(lr=0.01, wd=0.1, clip_norm=0.1)),
]
CLASSES = {"sgd": vg.optim.SGD, "rmsprop": vg.optim.RMSprop, "adagrad": vg.optim.Adagrad,
           "adam": vg.optim.Adam, "adamw": vg.optim.AdamW}


def _batch(rng, n=32):
    return rng.standard_normal((n, 6)), rng.integers(0, 3, n)


@pytest.mark.parametrize("measure", [True, False])
@pytest.mark.parametrize("kind, vg_kwargs, np_kwargs", CASES)
def test_optimizer_matches_its_definition_over_several_steps(kind, vg_kwargs, np_kwargs,
                                                            measure):
    rng = np.random.default_rng(0)
    net = vg.MLP([6, 9, 7, 3], activation="tanh", init="glorot_normal", dtype="float64",
                 seed=1, measure=measure)
    opt = CLASSES[kind](net, **vg_kwargs)
    ref = NumpyOpt(kind, **np_kwargs)
    p = net.params.copy()
    for _ in range(5):
        X, y = _batch(rng)
        net.train_step(X, y, "cross_entropy")
        p = ref.step(p, net.grads)
        opt.step()
        np.testing.assert_allclose(net.params, p, rtol=1e-12, atol=1e-14)
    if "clip_norm" in vg_kwargs:
        assert opt.last_grad_norm == pytest.approx(ref.last_norm, rel=1e-12)
        assert opt.last_grad_norm > vg_kwargs["clip_norm"]        # clipping was active


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_is_bias_corrected_without_weight_decay(dtype):
    """Adam's first step moves every weight by lr * g / (|g| + eps), about lr (bias-corrected
    m and v are g and g^2); without the correction it would move by about 3.2 lr.  Then four
    more steps follow the definition, in float32 too."""
    rng = np.random.default_rng(5)
    net = vg.MLP([6, 9, 7, 3], activation="tanh", init="glorot_normal", dtype=dtype, seed=4)
    lr = 1e-3
    opt = vg.optim.Adam(net, lr=lr)
    assert opt.weight_decay == 0.0
    ref = NumpyOpt("adam", lr=lr)
    p = net.params.astype(np.float64)
    tol = dict(rtol=2e-5, atol=1e-7) if dtype == "float32" else dict(rtol=1e-12, atol=1e-15)
    for step in range(5):
        X, y = _batch(rng)
        net.train_step(X.astype(dtype), y, "cross_entropy")
        g = net.grads.astype(np.float64)
        before = net.params.astype(np.float64)
        p = ref.step(before if dtype == "float32" else p, g)
        opt.step()
        if step == 0:
            moved = np.abs(net.params.astype(np.float64) - before)
            big = np.abs(g) > 1e-4                      # |g| >> eps: a step of about lr
            assert big.mean() > 0.5
            expect = lr * np.abs(g[big]) / (np.abs(g[big]) + 1e-8)
            assert np.all(expect > 0.9999 * lr)
            np.testing.assert_allclose(moved[big], expect,
                                       rtol=1e-3 if dtype == "float32" else 1e-9)
        np.testing.assert_allclose(net.params.astype(np.float64), p, **tol)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_float32_optimizers_track_float64(kind):
    rng = np.random.default_rng(1)
    nets = [vg.MLP([6, 9, 3], activation="relu", init="he_normal", dtype=dt, seed=2)
            for dt in ("float32", "float64")]
    opts = [CLASSES[kind](n, lr=0.01) for n in nets]
    for _ in range(3):
        X, y = _batch(rng)
        for n, o in zip(nets, opts):
            n.train_step(X.astype(n.dtype), y, "cross_entropy", o)
    np.testing.assert_allclose(nets[0].params, nets[1].params, rtol=2e-3, atol=2e-5)


def test_update_to_weight_is_measured_for_every_optimizer():
    rng = np.random.default_rng(2)
    for kind, cls in CLASSES.items():
        net = vg.MLP([6, 8, 3], activation="tanh", dtype="float64", seed=0)
        opt = cls(net, lr=0.01)
        X, y = _batch(rng)
        net.train_step(X, y, "cross_entropy")
        before = [w.copy() for w in net.weights]
        opt.step()
        flow = net.gradient_flow()
        want = [np.linalg.norm(w - b) / np.linalg.norm(b) for w, b in zip(net.weights, before)]
        np.testing.assert_allclose(flow.update_to_weight, want, rtol=1e-9, err_msg=kind)


def test_clipping_leaves_the_gradients_as_backward_wrote_them():
    rng = np.random.default_rng(3)
    net = vg.MLP([6, 8, 3], dtype="float64", seed=0)
    opt = vg.optim.SGD(net, lr=0.1, clip_norm=1e-4, clip_value=1e-5)
    net.train_step(*_batch(rng), "cross_entropy")
    g = net.grads.copy()
    opt.step()
    np.testing.assert_array_equal(net.grads, g)
    assert opt.last_grad_norm == pytest.approx(np.linalg.norm(g))


def test_a_schedule_sets_the_learning_rate_of_each_step():
    rng = np.random.default_rng(4)
    net = vg.MLP([6, 8, 3], dtype="float64", seed=0)
    seen = []
    opt = vg.optim.SGD(net, lr=lambda step: seen.append(step) or 0.1 / (1 + step))
    for _ in range(3):
        net.train_step(*_batch(rng), "cross_entropy")
        before = net.params.copy()
        lr = opt.current_lr()
        opt.step()
        np.testing.assert_allclose(net.params, before - lr * net.grads, rtol=1e-12)
    assert seen[-1] == 2 and opt.step_count == 3


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(5)
    batches = [_batch(rng) for _ in range(6)]
    nets = [vg.MLP([6, 8, 3], dtype="float64", seed=0) for _ in range(2)]
    a = vg.optim.Adam(nets[0], lr=0.01)
    for X, y in batches[:3]:
        nets[0].train_step(X, y, "cross_entropy", a)
    nets[1].params[...] = nets[0].params
    b = vg.optim.Adam(nets[1], lr=0.01)
    b.load_state_dict(a.state_dict())
    for X, y in batches[3:]:
        nets[0].train_step(X, y, "cross_entropy", a)
        nets[1].train_step(X, y, "cross_entropy", b)
    np.testing.assert_array_equal(nets[0].params, nets[1].params)
    with pytest.raises(ValueError, match="state"):
        vg.optim.SGD(nets[1], lr=0.1).load_state_dict(a.state_dict())


@pytest.mark.parametrize("cls, kwargs, match", [
    (vg.optim.SGD, dict(lr=0), "lr"),
    (vg.optim.SGD, dict(lr=0.1, momentum=1.0), "momentum"),
    (vg.optim.SGD, dict(lr=0.1, nesterov=True), "nesterov"),
    (vg.optim.SGD, dict(lr=0.1, weight_decay=-1), "weight_decay"),
    (vg.optim.SGD, dict(lr=0.1, clip_norm=0), "clip_norm"),
    (vg.optim.SGD, dict(lr=0.1, clip_value=float("nan")), "clip_value"),
    (vg.optim.RMSprop, dict(alpha=1.5), "alpha"),
    (vg.optim.Adam, dict(betas=(0.9, 1.0)), "betas"),
    (vg.optim.Adam, dict(betas=0.9), "betas"),
    (vg.optim.Adagrad, dict(eps=0), "eps"),
])
def test_bad_optimizer_options_are_rejected_by_name(cls, kwargs, match):
    net = vg.MLP([3, 4, 2], seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        cls(net, **kwargs)

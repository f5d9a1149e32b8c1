"""The systems the benchmarks race, each one training step of the same network on the same batch.

Every system starts from the same parameters (vgcore's, for the configuration's init and seed),
runs forward, softmax cross-entropy over the batch (mean), backward and plain SGD, float32, and
exposes, in vgcore's layout (``W`` of shape (fan_in, fan_out), ``b`` of shape (fan_out,)), the
gradients of its last step and its current parameters, so that ``check_system`` can compare it
with :mod:`vgcore.reference`.

- ``vgcore``: ``vg.MLP`` as it ships (measuring the gradient flow in every pass) with
  ``vg.optim.SGD`` and ``net.train_step``.
- ``reference``: :class:`vgcore.reference.ReferenceMLP`, the semantics (``train_step(lr=)``),
  without flushing subnormals (plain IEEE NumPy).
- ``numpy``: :class:`TunedNumpyMLP`, the fastest plain NumPy step we know how to write.
- ``torch``: :class:`TorchMLP`, PyTorch eager as a user writes it (``nn.Sequential``,
  ``torch.optim.SGD``), when torch can be imported.
"""
from __future__ import annotations

import math

import numpy as np

import vgcore as vg
from vgcore.core.reference import ReferenceMLP

SYSTEMS = ("numpy", "reference", "torch", "vgcore")
LABELS = {"numpy": "tuned NumPy", "reference": "vgcore.reference", "torch": "PyTorch eager",
          "vgcore": "vgcore"}
LOSS = "cross_entropy"


def _hidden_activation(net) -> str:
    names = {a.name for a in net.activations[:-1]}
    if len(names) != 1:
        raise ValueError(f"activation: the baselines take one activation for every hidden "
                         f"layer, got {sorted(names)}")
    (name,) = names
    if net.activations[0].param not in (None, 0.0) and name not in ("tanh", "sigmoid", "relu"):
        raise ValueError(f"activation: {name!r} with a parameter is not supported")
    return name


# ------------------------------------------------------------------------------ tuned NumPy

class TunedNumpyMLP:
    """One SGD step in NumPy as a skilled user writes it, allocating nothing once built.

    Layout (feature-major, bias folded into the weights):

    - the activations of layer ``l`` are stored as ``A[l]`` of shape (fan_in + 1, batch), whose
      last row is ones, so ``W'[l]`` of shape (fan_out, fan_in + 1) (``W.T`` with the bias as
      last column) gives the pre-activation in one GEMM, ``W'[l] @ A[l]``, written straight into
      the rows of ``A[l + 1]`` above its row of ones and activated there in place;
    - every ``W'[l]`` is a view of one flat float32 buffer ``P``; every gradient ``G'[l]`` (same
      shape) a view of one flat buffer ``G``;
    - the loss gradient ``(softmax - onehot) * lr / batch`` is scaled by ``lr`` once, so the
      backward pass produces ``lr * dL/dW'`` directly: ``G'[l] = D[l] @ A[l].T`` (dW and db in
      one GEMM), ``D[l-1] = (W'[l][:, :fan_in].T @ D[l]) * phi'`` (the derivative taken from the
      stored activation), and the update is one in-place ``P -= G``.

    The batch is bound once (:meth:`set_batch` copies ``X.T`` into ``A[0]`` and builds the
    one-hot targets), as a user who stores the data feature-major would.  Every operation
    writes into a preallocated buffer (``out=``).  Hidden activations: tanh, sigmoid (through
    ``scipy.special.expit``, one pass), relu.
    """

    ACTIVATIONS = ("tanh", "sigmoid", "relu")

    def __init__(self, weights, biases, activation, X, y, lr, n_classes=None):
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation: expected one of {self.ACTIVATIONS}, got "
                             f"{activation!r}")
        self.activation = activation
        self.lr = float(lr)
        self.sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        self.L = len(weights)
        self.n_classes = n_classes or self.sizes[-1]
        f32 = np.float32
        shapes = [(self.sizes[l + 1], self.sizes[l] + 1) for l in range(self.L)]
        n = sum(a * b for a, b in shapes)
        self.P = np.empty(n, f32)
        self.G = np.zeros(n, f32)
        self.W, self.GW, off = [], [], 0
        for shp in shapes:
            k = shp[0] * shp[1]
            self.W.append(self.P[off:off + k].reshape(shp))
            self.GW.append(self.G[off:off + k].reshape(shp))
            off += k
        # W[l][:, :fan_in].T, the strided view the backward GEMM reads (BLAS takes it as is)
        self.Wt = [w[:, :-1].T for w in self.W]
        self.set_parameters(weights, biases)
        self.batch = None
        self.set_batch(X, y)

    @classmethod
    def from_network(cls, net, X, y, lr):
        return cls([np.asarray(w) for w in net.weights], [np.asarray(b) for b in net.biases],
                   _hidden_activation(net), X, y, lr)

    def set_parameters(self, weights, biases):
        for l, (w, b) in enumerate(zip(weights, biases)):
            self.W[l][:, :-1] = w.T
            self.W[l][:, -1] = b

    def set_batch(self, X, y):
        """Bind a batch: X (batch, n_in) float32, y (batch,) int labels."""
        X = np.asarray(X, np.float32)
        y = np.asarray(y)
        b = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X: expected {self.sizes[0]} columns, got {X.shape[1]}")
        if y.shape != (b,):
            raise ValueError(f"y: expected shape ({b},), got {y.shape}")
        if b != self.batch:
            f32 = np.float32
            self.batch = b
            self.A = []                           # A[l]: (fan_in + 1, batch), last row ones
            for l in range(self.L):
                a = np.empty((self.sizes[l] + 1, b), f32)
                a[-1] = 1.0
                self.A.append(a)
            # the rows of A[l + 1] that layer l writes (contiguous: the first fan_out rows)
            self.H = [self.A[l + 1][:-1] for l in range(self.L - 1)]
            self.Z = np.empty((self.sizes[-1], b), f32)            # logits, then shifted
            self.E = np.empty((self.sizes[-1], b), f32)            # exp, then dL/dlogits * lr
            self.R = np.empty((self.sizes[-1], b), f32)            # a row vector, broadcast
            self.m = np.empty(b, f32)
            self.s = np.empty(b, f32)
            self.onehot = np.zeros((self.sizes[-1], b), f32)
            self.onehot_lr = np.zeros((self.sizes[-1], b), f32)
            # dL/d(input of layer l) * lr for l >= 1, and a scratch for phi'
            self.D = [None] + [np.empty((self.sizes[l], b), f32) for l in range(1, self.L)]
            self.S = [None] + [np.empty((self.sizes[l], b), f32) for l in range(1, self.L)]
        if y.min() < 0 or y.max() >= self.sizes[-1]:
            raise ValueError(f"y: labels must be in [0, {self.sizes[-1]}), got "
                             f"[{y.min()}, {y.max()}]")
        self.A[0][:-1] = X.T
        self.onehot[...] = 0
        self.onehot[y, np.arange(b)] = 1.0
        np.multiply(self.onehot, np.float32(self.lr / b), out=self.onehot_lr)
        # dividing s by this gives softmax * lr / b in one pass
        self._b_over_lr = np.float32(b / self.lr)

    def step(self) -> float:
        """Forward, loss, backward, ``P -= G``; returns the loss (before the update)."""
        A, W, H = self.A, self.W, self.H
        L, act = self.L, self.activation
        mm = np.matmul
        # forward: one GEMM per layer, activation in place
        for l in range(L - 1):
            h = H[l]
            mm(W[l], A[l], out=h)
            if act == "tanh":
                np.tanh(h, out=h)
            elif act == "sigmoid":
                _expit(h, out=h)
            else:
                np.maximum(h, 0, out=h)
        Z, E, m, s = self.Z, self.E, self.m, self.s
        mm(W[L - 1], A[L - 1], out=Z)
        # softmax cross-entropy over the classes (axis 0), mean over the batch
        # (a broadcasting ufunc allocates an iteration buffer in NumPy 2; np.copyto
        # broadcasts the per-sample vector into a (classes, batch) buffer without one)
        R = self.R
        np.max(Z, axis=0, out=m)
        np.copyto(R, m)
        np.subtract(Z, R, out=Z)
        np.exp(Z, out=E)
        np.sum(E, axis=0, out=s)
        # dL/dlogits * lr = (softmax - onehot) * lr / b
        np.multiply(s, self._b_over_lr, out=m)            # m is free again
        np.copyto(R, m)
        np.divide(E, R, out=E)
        np.subtract(E, self.onehot_lr, out=E)
        np.log(s, out=s)
        loss = (float(s.sum()) - float(np.vdot(self.onehot, Z))) / self.batch
        # backward: dW and db in one GEMM per layer, then dX and phi'
        D = E
        GW, Wt, Dn, S = self.GW, self.Wt, self.D, self.S
        for l in range(L - 1, -1, -1):
            mm(D, A[l].T, out=GW[l])
            if l == 0:
                break
            dx, sc, a = Dn[l], S[l], H[l - 1]
            mm(Wt[l], D, out=dx)
            if act == "tanh":                              # 1 - a^2
                np.multiply(a, a, out=sc)
                np.subtract(1.0, sc, out=sc)
            elif act == "sigmoid":                         # a (1 - a)
                np.subtract(1.0, a, out=sc)
                np.multiply(sc, a, out=sc)
            else:                                          # 1 where a > 0 (a >= 0 after relu)
                np.sign(a, out=sc)
            np.multiply(dx, sc, out=dx)
            D = dx
        np.subtract(self.P, self.G, out=self.P)
        return loss

    __call__ = step

    # vgcore's layout, for the checks
    def gradients(self):
        """The last step's gradients as [(dW (fan_in, fan_out), db (fan_out,))], float32."""
        return [((g[:, :-1].T / np.float32(self.lr)).astype(np.float32),
                 (g[:, -1] / np.float32(self.lr)).astype(np.float32)) for g in self.GW]

    def parameters(self):
        return [(w[:, :-1].T.copy(), w[:, -1].copy()) for w in self.W]


def _expit(x, out):
    from scipy.special import expit
    return expit(x, out=out)


# ------------------------------------------------------------------------------ PyTorch

def import_torch():
    """(torch, None), or (None, why not) when torch cannot be imported."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    except Exception as e:                       # a broken install: say so, do not fail
        return None, f"import torch failed: {type(e).__name__}: {e}"
    return torch, None


class TorchMLP:
    """The network in PyTorch eager, as a user writes it: ``nn.Sequential`` of ``nn.Linear``
    and the activation module, ``torch.optim.SGD(lr)``, float32, ``zero_grad(set_to_none=True)``,
    ``F.cross_entropy`` (mean).  Threads: whatever ``torch.set_num_threads`` was given (the
    benchmarks set vgcore's count)."""

    ACTS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "ReLU"}

    def __init__(self, torch, weights, biases, activation, X, y, lr):
        if activation not in self.ACTS:
            raise ValueError(f"activation: expected one of {tuple(self.ACTS)}, got "
                             f"{activation!r}")
        nn = torch.nn
        self.torch = torch
        mods = []
        for l, (w, b) in enumerate(zip(weights, biases)):
            lin = nn.Linear(w.shape[0], w.shape[1], dtype=torch.float32)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, np.float32)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float32).copy()))
            mods.append(lin)
            if l < len(weights) - 1:
                mods.append(getattr(nn, self.ACTS[activation])())
        self.model = nn.Sequential(*mods)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.loss_fn = nn.functional.cross_entropy
        self.set_batch(X, y)

    @classmethod
    def from_network(cls, torch, net, X, y, lr):
        return cls(torch, [np.asarray(w) for w in net.weights],
                   [np.asarray(b) for b in net.biases], _hidden_activation(net), X, y, lr)

    def set_batch(self, X, y):
        self.X = self.torch.from_numpy(np.ascontiguousarray(X, np.float32))
        self.y = self.torch.from_numpy(np.asarray(y, np.int64))

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.X), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()

    __call__ = step

    def gradients(self):
        return [(m.weight.grad.numpy().T.copy(), m.bias.grad.numpy().copy())
                for m in self.linears]

    def parameters(self):
        with self.torch.no_grad():
            return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                    for m in self.linears]


# ------------------------------------------------------------------------------ the other two

class VgcoreSystem:
    """``vg.MLP`` as it ships, ``vg.optim.SGD`` and ``net.train_step``."""

    def __init__(self, net, X, y, lr):
        self.net = net
        self.opt = vg.optim.SGD(net, lr=lr)
        self.X, self.y = X, y

    def step(self) -> float:
        return self.net.train_step(self.X, self.y, LOSS, self.opt)

    __call__ = step

    def gradients(self):
        return [(w.copy(), b.copy()) for w, b in zip(self.net.weight_grads,
                                                      self.net.bias_grads)]

    def parameters(self):
        return [(w.copy(), b.copy()) for w, b in zip(self.net.weights, self.net.biases)]


class ReferenceSystem:
    """:class:`vgcore.reference.ReferenceMLP` with its ``train_step(lr=)``."""

    def __init__(self, ref, X, y, lr):
        self.ref, self.X, self.y, self.lr = ref, X, y, lr

    def step(self) -> float:
        return self.ref.train_step(self.X, self.y, LOSS, lr=self.lr)

    __call__ = step

    def gradients(self):
        return [(w.copy(), b.copy()) for w, b in zip(self.ref.weight_grads,
                                                      self.ref.bias_grads)]

    def parameters(self):
        return [(w.copy(), b.copy()) for w, b in zip(self.ref.weights, self.ref.biases)]


def build(system, net, X, y, lr, torch=None):
    """A system (one of SYSTEMS) starting from ``net``'s current parameters (copied; ``vgcore``
    takes ``net`` itself)."""
    if system == "vgcore":
        return VgcoreSystem(net, X, y, lr)
    if system == "reference":
        # the semantics as plain IEEE NumPy: flushing subnormals in NumPy costs four extra
        # passes per array, work no NumPy user does (vgcore flushes inside its own loops)
        return ReferenceSystem(ReferenceMLP.from_network(net, flush_subnormals=False), X, y,
                               lr)
    if system == "numpy":
        return TunedNumpyMLP.from_network(net, X, y, lr)
    if system == "torch":
        if torch is None:
            torch, why = import_torch()
            if torch is None:
                raise RuntimeError(f"PyTorch: {why}")
        return TorchMLP.from_network(torch, net, X, y, lr)
    raise ValueError(f"system: expected one of {SYSTEMS}, got {system!r}")


# ------------------------------------------------------------------------------ checks

GRAD_RTOL = 1e-2
"""Per layer and tensor (dW, db): ||got - want|| / max(||want||, GRAD_FLOOR) (Frobenius).

float32 systems agree with the reference to about 1e-6 in this measure.  What the tolerance
must absorb is relu's kink: a pre-activation within rounding of 0 lands on the other side in a
system whose products round differently (tuned NumPy folds the bias into the GEMM, PyTorch
uses MKL), which switches one sample's contribution to a unit on or off, and changes every
layer below it by that sample's share; measured 1e-3 to 2e-3 on huge-batch (batch 2048).  A
wrong derivative, a missing bias gradient, a transposed product or a wrong lr / batch scaling
gives errors of order 1."""
GRAD_FLOOR = 1e-30
"""Gradients whose norm is below this (float32) count as vanished: flushing subnormals zeroes
entries below 1.18e-38 that the reference keeps."""
LOSS_RTOL = 1e-4


def _norm(a):
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def gradient_errors(got, want):
    """Per layer: the larger of the relative Frobenius errors of dW and db (see GRAD_RTOL)."""
    errs = []
    for (gw, gb), (rw, rb) in zip(got, want):
        errs.append(max(_norm(g.astype(np.float64) - r) / max(_norm(r), GRAD_FLOOR)
                        for g, r in ((gw, rw), (gb, rb))))
    return errs


def check_system(system, cfg_name, net_factory, X, y, lr, torch=None):
    """One step of ``system`` from the parameters ``net_factory()`` makes, against the
    reference's loss and gradients at the same parameters and batch (see GRAD_RTOL), and its
    update against ``params - lr * (its gradients)``.  Returns a dict of the errors; raises
    AssertionError on a disagreement."""
    net = net_factory()
    ref = ReferenceMLP.from_network(net)
    before = [(w.copy(), b.copy()) for w, b in zip(ref.weights, ref.biases)]
    want_loss = ref.train_step(X, y, LOSS, lr=None)        # gradients, no update
    want = [(w.astype(np.float64), b.astype(np.float64))
            for w, b in zip(ref.weight_grads, ref.bias_grads)]
    sysobj = build(system, net, X, y, lr, torch)
    loss = sysobj.step()
    what = f"{cfg_name}/{system}"
    assert isinstance(loss, float) and math.isfinite(loss), f"{what}: loss {loss!r}"
    assert math.isclose(loss, want_loss, rel_tol=LOSS_RTOL, abs_tol=1e-6), \
        f"{what}: loss {loss!r} != reference {want_loss!r}"
    got = sysobj.gradients()
    assert len(got) == len(want), f"{what}: {len(got)} layers of gradients, expected {len(want)}"
    for l, ((gw, gb), (rw, rb)) in enumerate(zip(got, want)):
        assert gw.shape == rw.shape and gb.shape == rb.shape, \
            f"{what}: layer {l} gradient shapes {gw.shape}, {gb.shape}; expected {rw.shape}, " \
            f"{rb.shape}"
    errs = gradient_errors(got, want)
    worst = int(np.argmax(errs))
    assert errs[worst] < GRAD_RTOL, \
        f"{what}: layer {worst} gradient differs from the reference by {errs[worst]:.3g} " \
        f"(relative Frobenius norm; tolerance {GRAD_RTOL})"
    # the update: params_after == params_before - lr * grads, to float32 rounding; a system
    # that flushes subnormals (vgcore by default) writes a result below float32's smallest
    # normal (a zero bias stepped by lr * 1e-37) as 0
    eps = float(np.finfo(np.float32).eps)
    tiny = float(np.finfo(np.float32).tiny)
    upd = 0.0
    for l, ((pw, pb), (w0, b0), (gw, gb)) in enumerate(zip(sysobj.parameters(), before, got)):
        for p, p0, g in ((pw, w0, gw), (pb, b0, gb)):
            p0 = p0.astype(np.float64)
            step = lr * g.astype(np.float64)
            dev = np.abs(p.astype(np.float64) - (p0 - step))
            bad = dev > 2 * eps * (np.abs(p0) + np.abs(step)) + 1e-3 * np.abs(step) + tiny
            assert not bad.any(), f"{what}: layer {l}: the update is not params - lr * grads " \
                                  f"({int(bad.sum())} entries off, by up to {dev.max():.3g})"
            upd = max(upd, float(dev.max()))
    return dict(loss=loss, reference_loss=want_loss, grad_rel_err=max(errs),
                grad_rel_errs=errs, update_abs_err=upd)

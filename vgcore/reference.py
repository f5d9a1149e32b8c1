"""The NumPy reference: the same network, activations and losses as the compiled engine.

It defines the semantics (the tests check the engine against it) and is the baseline the
benchmarks race.  It is written as a careful NumPy programmer would: parameters in one flat
buffer with per-layer views, every intermediate buffer allocated once per batch size, and
in-place ufuncs with ``out=``, so a step allocates nothing once warmed up.  Only ``gelu``
needs SciPy (``scipy.special.erf``, NumPy has no erf).
"""
from __future__ import annotations

import math

import numpy as np

from vgcore._validation import as_dtype
from vgcore.activations import SELU_ALPHA, SELU_SCALE, Activation, resolve_activation
from vgcore.init import check_init, init_weight

__all__ = ["activation_forward", "activation_derivative", "cross_entropy", "mse",
           "binary_cross_entropy", "ReferenceMLP"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erf(x, out):
    from scipy.special import erf
    return erf(x, out=out)


def activation_forward(act, h, out=None, scratch=None):
    """``phi(h)`` for an activation (name or :class:`Activation`); writes into ``out``."""
    act = resolve_activation(act)
    name, p = act.name, act.param
    a = np.empty_like(h) if out is None else out
    s = np.empty_like(h) if scratch is None else scratch
    with np.errstate(over="ignore", under="ignore"):
        if name == "identity":
            np.copyto(a, h)
        elif name == "sigmoid":
            np.negative(h, out=a)
            np.exp(a, out=a)            # overflows to inf for h << 0: 1/(1+inf) = 0, exact
            a += 1
            np.reciprocal(a, out=a)
        elif name == "tanh":
            np.tanh(h, out=a)
        elif name == "relu":
            np.maximum(h, 0, out=a)
        elif name == "leaky_relu":
            np.minimum(h, 0, out=s)
            s *= p
            np.maximum(h, 0, out=a)
            a += s
        elif name in ("elu", "selu"):
            alpha = p if name == "elu" else SELU_ALPHA
            np.minimum(h, 0, out=s)
            np.expm1(s, out=s)
            s *= alpha
            np.maximum(h, 0, out=a)
            a += s
            if name == "selu":
                a *= SELU_SCALE
        elif name == "gelu":
            np.multiply(h, 1.0 / math.sqrt(2.0), out=s)
            _erf(s, out=s)
            s += 1
            s *= 0.5                     # Phi(h)
            np.multiply(h, s, out=a)
        elif name == "softplus":
            np.logaddexp(h, 0, out=a)
        elif name == "softsign":
            np.abs(h, out=s)
            s += 1
            np.divide(h, s, out=a)
        elif name == "silu":
            np.negative(h, out=s)
            np.exp(s, out=s)
            s += 1
            np.divide(h, s, out=a)
        elif name == "hard_tanh":
            np.clip(h, -1, 1, out=a)
        else:  # pragma: no cover - resolve_activation rejects unknown names
            raise ValueError(name)
    return a


def activation_derivative(act, h, a, out=None, scratch=None):
    """``phi'(h)`` given the pre-activation ``h`` and the activation ``a = phi(h)``."""
    act = resolve_activation(act)
    name, p = act.name, act.param
    d = np.empty_like(h) if out is None else out
    s = np.empty_like(h) if scratch is None else scratch
    with np.errstate(over="ignore", under="ignore"):
        if name == "identity":
            d.fill(1)
        elif name == "sigmoid":
            np.subtract(1, a, out=d)
            d *= a
        elif name == "tanh":
            np.multiply(a, a, out=d)
            np.subtract(1, d, out=d)
        elif name == "relu":
            np.greater(h, 0, out=d)
        elif name == "leaky_relu":
            np.greater(h, 0, out=d)
            d *= 1 - p
            d += p
        elif name in ("elu", "selu"):
            # 1 (scale) for h > 0, else phi + alpha (phi + scale*alpha)
            hi = 1.0 if name == "elu" else SELU_SCALE
            lo = p if name == "elu" else SELU_SCALE * SELU_ALPHA
            np.greater(h, 0, out=s)          # mask m
            np.add(a, lo, out=d)             # left branch
            d *= 1 - s
            s *= hi
            d += s
        elif name == "gelu":
            np.multiply(h, 1.0 / math.sqrt(2.0), out=s)
            _erf(s, out=s)
            s += 1
            s *= 0.5                          # Phi(h)
            np.multiply(h, h, out=d)
            d *= -0.5
            np.exp(d, out=d)
            d *= _INV_SQRT_2PI                # N(h; 0, 1)
            d *= h
            d += s
        elif name in ("softplus", "silu"):
            np.negative(h, out=s)
            np.exp(s, out=s)
            s += 1
            np.reciprocal(s, out=s)           # sigmoid(h)
            if name == "softplus":
                np.copyto(d, s)
            else:                             # s + h s (1 - s)
                np.subtract(1, s, out=d)
                d *= h
                d += 1
                d *= s
        elif name == "softsign":
            np.abs(h, out=d)
            d += 1
            np.multiply(d, d, out=d)
            np.reciprocal(d, out=d)
        elif name == "hard_tanh":
            np.abs(h, out=s)
            np.less(s, 1, out=d)
        else:  # pragma: no cover
            raise ValueError(name)
    return d


# ------------------------------------------------------------------------------ losses

def cross_entropy(logits, labels):
    """Softmax cross-entropy, mean over the batch: returns ``(loss, dL/dlogits)``."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    lse = np.log(s.astype(np.float64))[:, 0]
    rows = np.arange(n)
    loss = float(np.mean(lse - z[rows, labels].astype(np.float64)))
    grad = e / s
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad.astype(logits.dtype, copy=False)


def mse(pred, target):
    """Mean over all elements of ``(pred - target)**2``: returns ``(loss, dL/dpred)``."""
    d = pred - target
    loss = float(np.mean(np.square(d, dtype=np.float64)))
    return loss, d * (2.0 / d.size)


def binary_cross_entropy(logits, targets):
    """Binary cross-entropy on logits, mean over all elements: ``(loss, dL/dlogits)``."""
    z = logits.astype(np.float64)
    loss = float(np.mean(np.logaddexp(0.0, z) - z * targets))
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-z))
    return loss, ((sig - targets) / z.size).astype(logits.dtype)


_LOSSES = {"cross_entropy": cross_entropy, "mse": mse,
           "binary_cross_entropy": binary_cross_entropy}


# ------------------------------------------------------------------------------ network

class _Buffers:
    def __init__(self, batch, sizes, dtype):
        L = len(sizes) - 1
        self.h = [np.empty((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.a = [np.empty((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.d = [np.empty((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.scratch = [np.empty((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.g = [np.empty((batch, sizes[l]), dtype) for l in range(L)]   # dL/d(input of l)


class ReferenceMLP:
    """The NumPy twin of :class:`vgcore.MLP`: same constructor, same parameters for the same
    seed, same ``forward``/``backward``/``train_step`` semantics."""

    def __init__(self, sizes, activation="relu", init="standard", dtype="float32", seed=None,
                 sigma_w=None, sigma_b=None):
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = as_dtype(dtype)
        n_hidden = len(self.sizes) - 2
        if isinstance(activation, (str, Activation)):
            hidden = [resolve_activation(activation)] * n_hidden
        else:
            hidden = [resolve_activation(a) for a in activation]
        self.activations = tuple(hidden) + (Activation("identity"),)
        self.init, self.sigma_w, self.sigma_b = check_init(init, sigma_w, sigma_b)
        L = len(self.sizes) - 1
        n = sum(self.sizes[l] * self.sizes[l + 1] + self.sizes[l + 1] for l in range(L))
        self.params = np.zeros(n, self.dtype)
        self.grads = np.zeros(n, self.dtype)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        off = 0
        for l in range(L):
            fi, fo = self.sizes[l], self.sizes[l + 1]
            for buf, ws, bs in ((self.params, self.weights, self.biases),
                                (self.grads, self.weight_grads, self.bias_grads)):
                ws.append(buf[off:off + fi * fo].reshape(fi, fo))
                bs.append(buf[off + fi * fo:off + fi * fo + fo])
            off += fi * fo + fo
        rng = np.random.default_rng(seed)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            w[...] = init_weight(rng, self.init, self.sizes[l], self.sizes[l + 1], self.sigma_w)
            b[...] = 0 if self.sigma_b is None else rng.normal(0.0, self.sigma_b, b.shape)
        self._buffers = {}
        self._buf = None
        self._x = None

    @classmethod
    def from_network(cls, net):
        """A reference network with the architecture and current parameters of ``net``."""
        ref = cls.__new__(cls)
        ref.sizes, ref.dtype, ref.activations = net.sizes, net.dtype, net.activations
        ref.init, ref.sigma_w, ref.sigma_b = net.init, net.sigma_w, net.sigma_b
        ref.params = net.params.copy()
        ref.grads = np.zeros_like(ref.params)
        ref.weights, ref.biases, ref.weight_grads, ref.bias_grads = [], [], [], []
        off = 0
        for l in range(len(net.sizes) - 1):
            fi, fo = net.sizes[l], net.sizes[l + 1]
            for buf, ws, bs in ((ref.params, ref.weights, ref.biases),
                                (ref.grads, ref.weight_grads, ref.bias_grads)):
                ws.append(buf[off:off + fi * fo].reshape(fi, fo))
                bs.append(buf[off + fi * fo:off + fi * fo + fo])
            off += fi * fo + fo
        ref._buffers, ref._buf, ref._x = {}, None, None
        return ref

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def _buffers_for(self, batch):
        buf = self._buffers.get(batch)
        if buf is None:
            buf = self._buffers[batch] = _Buffers(batch, self.sizes, self.dtype)
        self._buf = buf
        return buf

    @property
    def preactivations(self):
        """The last forward pass's pre-activations, one array per layer."""
        return self._buf.h

    @property
    def post_activations(self):
        """The last forward pass's activations (the output layer's is its pre-activation)."""
        return self._buf.a[:-1] + [self._buf.h[-1]]

    def forward(self, X):
        buf = self._buffers_for(X.shape[0])
        x = X
        L = self.n_layers
        for l in range(L):
            h = buf.h[l]
            np.matmul(x, self.weights[l], out=h)
            h += self.biases[l]
            if l == L - 1:
                break
            x = activation_forward(self.activations[l], h, out=buf.a[l], scratch=buf.scratch[l])
        self._x = X
        return buf.h[-1]

    def backward(self, dout, input_grad=True):
        buf = self._buf
        L = self.n_layers
        delta = dout
        for l in range(L - 1, -1, -1):
            if l < L - 1:
                delta = buf.d[l]
                activation_derivative(self.activations[l], buf.h[l], buf.a[l],
                                      out=buf.scratch[l], scratch=delta)
                np.multiply(buf.g[l + 1], buf.scratch[l], out=delta)
            x = self._x if l == 0 else buf.a[l - 1]
            np.sum(delta, axis=0, out=self.bias_grads[l])
            np.matmul(x.T, delta, out=self.weight_grads[l])
            if l > 0 or input_grad:
                np.matmul(delta, self.weights[l].T, out=buf.g[l])
        return buf.g[0] if input_grad else None

    def sgd_step(self, lr):
        """``params -= lr * grads`` over the flat buffer (one ufunc on a scratch buffer)."""
        if not hasattr(self, "_sgd_tmp") or self._sgd_tmp.shape != self.params.shape:
            self._sgd_tmp = np.empty_like(self.params)
        np.multiply(self.grads, lr, out=self._sgd_tmp)
        self.params -= self._sgd_tmp

    def train_step(self, X, y, loss="cross_entropy", lr=None):
        out = self.forward(X)
        value, dout = _LOSSES[loss](out, y)
        self.backward(dout, input_grad=False)
        if lr is not None:
            self.sgd_step(lr)
        return value

"""The NumPy reference: the same network, activations and losses as the compiled engine.

It defines the semantics (the tests check the engine against it) and is the baseline the
benchmarks race.  It is written as a careful NumPy programmer would: parameters in one flat
buffer with per-layer views, every intermediate buffer allocated once per batch size, and
in-place ufuncs with ``out=``, so a step allocates nothing once warmed up.  The activations'
NumPy definitions are their specs' (:data:`vgcore.activations.ACTIVATIONS`); only ``gelu``
needs SciPy (``scipy.special.erf``, NumPy has no erf).

The layer options (batch / layer normalisation, residual blocks, dropout with a counter-based
hash mask) are defined here too: see :class:`ReferenceMLP` and :func:`dropout_uniforms`.

Flushing subnormals (``flush_subnormals``, as :class:`vgcore.MLP`'s, on by default) is defined
here as the engine does it: every pre-activation, normalised pre-activation, activation, layer
output and error the passes write, every error arriving from the layer above, and X and dout
(copied first) are 0 where below the dtype's smallest normal in magnitude
(``np.finfo(dtype).tiny``: 1.18e-38 in float32, 2.2e-308 in float64).  The engine also runs
its arithmetic with the FTZ and DAZ bits set, so a subnormal intermediate inside an activation
(silu at -88 in float32) may differ from NumPy's by less than the smallest normal; the matrix
products' results (dW, dX) are not flushed.  :meth:`ReferenceMLP.underflow_fraction` is the engine's
``GradientFlow.underflow_fraction``, computed from the reference's buffers.
"""
from __future__ import annotations


import numpy as np

from vgcore.core._validation import as_dtype
from vgcore.core.activations import Activation, resolve_activation
from vgcore.core.init import check_init, init_weight
from vgcore.core.layers import NORMS, layer_options, param_layout  # noqa: F401 (re-exported)

__all__ = ["activation_forward", "activation_derivative", "cross_entropy", "mse",
           "binary_cross_entropy", "ReferenceMLP", "NORMS", "layer_options", "param_layout",
           "splitmix64_mix", "dropout_key", "dropout_uniforms", "dropout_keep"]

def activation_forward(act, h, out=None, scratch=None):
    """``phi(h)`` for an activation (name or :class:`Activation`); writes into ``out``.

    The definition is the activation's spec (:data:`vgcore.activations.ACTIVATIONS`), in place
    with ufuncs; ``scratch`` (like ``h``) is used for intermediate values."""
    act = resolve_activation(act)
    a = np.empty_like(h) if out is None else out
    s = np.empty_like(h) if scratch is None else scratch
    with np.errstate(over="ignore", under="ignore"):
        act.spec.forward(h, act.param, a, s)
    return a


def activation_derivative(act, h, a, out=None, scratch=None):
    """``phi'(h)`` given the pre-activation ``h`` and the activation ``a = phi(h)``."""
    act = resolve_activation(act)
    d = np.empty_like(h) if out is None else out
    s = np.empty_like(h) if scratch is None else scratch
    with np.errstate(over="ignore", under="ignore"):
        act.spec.derivative(h, a, act.param, d, s)
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


# ------------------------------------------------------------------------------ dropout hash

_MASK64 = (1 << 64) - 1
_MIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_M2 = np.uint64(0x94D049BB133111EB)
_DROPOUT_LAYER_MULT = 1000003


def splitmix64_mix(x):
    """The splitmix64 finaliser on uint64 with wrapping arithmetic, elementwise.

    ``x ^= x >> 30; x *= 0xBF58476D1CE4E5B9; x ^= x >> 27; x *= 0x94D049BB133111EB;
    x ^= x >> 31``.  Takes a Python int in [0, 2**64) or an array of them; returns a new
    uint64 array (0-d for a scalar input).
    """
    x = np.array(x, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _MIX_M1
        x ^= x >> np.uint64(27)
        x *= _MIX_M2
        x ^= x >> np.uint64(31)
    return x


def dropout_key(seed, counter, layer):
    """``mix(seed ^ mix(counter * 1000003 + layer))`` in uint64 arithmetic, as a Python int."""
    inner = int(splitmix64_mix((int(counter) * _DROPOUT_LAYER_MULT + int(layer)) & _MASK64))
    return int(splitmix64_mix((int(seed) ^ inner) & _MASK64))


def dropout_uniforms(seed, counter, layer, batch, width):
    """The dropout hash's uniforms ``u[i, j] = (mix(key + i*width + j) >> 40) * 2**-24``,
    float64 of shape (batch, width), all in [0, 1)."""
    idx = np.arange(batch * width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        idx += np.uint64(dropout_key(seed, counter, layer))      # wraps mod 2**64
    r = splitmix64_mix(idx) >> np.uint64(40)
    return (r.astype(np.float64) * 2.0 ** -24).reshape(batch, width)


def dropout_keep(seed, counter, layer, batch, width, p):
    """The dropout keep-mask (bool, shape (batch, width)): ``u >= p``."""
    return dropout_uniforms(seed, counter, layer, batch, width) >= p


# ------------------------------------------------------------------------------ network

class _Buffers:
    """Per-batch-size buffers.  For a layer without options only h, a, d, scratch and g exist
    (z is h, out is a); the others are allocated for the layers that need them."""

    def __init__(self, batch, sizes, dtype, norms, residuals, dropouts):
        L = len(sizes) - 1
        shp = [(batch, sizes[l + 1]) for l in range(L)]
        self.h = [np.empty(shp[l], dtype) for l in range(L)]       # x W + b
        self.a = [np.empty(shp[l], dtype) for l in range(L)]       # phi(z)
        self.d = [np.empty(shp[l], dtype) for l in range(L)]       # dL/dh
        self.scratch = [np.empty(shp[l], dtype) for l in range(L)]
        self.g = [np.empty((batch, sizes[l]), dtype) for l in range(L)]   # dL/d(input of l)
        self.below = [np.empty(shp[l], bool) for l in range(L)]   # flushing's masks
        self.above = [np.empty(shp[l], bool) for l in range(L)]
        self.z, self.xhat, self.mu, self.rstd, self.dz = [], [], [], [], []
        self.out, self.mask, self.t = [], [], []
        for l in range(L):
            norm = norms[l]
            self.z.append(self.h[l] if norm is None else np.empty(shp[l], dtype))
            self.xhat.append(None if norm is None else np.empty(shp[l], dtype))
            stat_shape = {None: None, "batch": (sizes[l + 1],), "layer": (batch, 1)}[norm]
            self.mu.append(None if norm is None else np.empty(stat_shape, dtype))
            self.rstd.append(None if norm is None else np.empty(stat_shape, dtype))
            extra = residuals[l] is not None or dropouts[l] > 0
            self.dz.append(np.empty(shp[l], dtype) if norm is not None or residuals[l]
                           is not None else None)
            self.out.append(np.empty(shp[l], dtype) if extra else self.a[l])
            self.mask.append(np.empty(shp[l], dtype) if dropouts[l] > 0 else None)
            self.t.append(np.empty(shp[l], dtype) if dropouts[l] > 0 else None)


class ReferenceMLP:
    """The NumPy twin of :class:`vgcore.MLP`: same constructor, same parameters for the same
    seed, same ``forward``/``backward``/``train_step`` semantics.

    Hidden layer ``l`` with input ``x`` (the output layer is always plain ``x W + b``)::

        h = x W + b
        z = gamma * (h - mu) / sqrt(var + eps) + beta     (norm="batch" or "layer"; else z = h)
        a = phi(z)
        out = x + alpha * a                               (residual alpha; else out = a)
        out = out * mask / (1 - p)                        (dropout p > 0, training mode only)

    ``norm="batch"`` takes mu, var (biased) over the batch in training mode and updates
    ``running_means`` / ``running_vars`` (momentum ``norm_momentum``, unbiased variance
    ``var * B / (B - 1)``, plain ``var`` when B == 1); eval mode uses the running stats.
    ``norm="layer"`` takes mu, var over the units of each sample, in both modes.  The dropout
    mask is a counter-based hash (see :func:`dropout_uniforms`) of ``(dropout_seed,
    dropout_counter, l, i, j)``; ``dropout_counter`` counts the training-mode forward passes.

    Per layer the flat buffer holds W (row-major), b, then gamma and beta for normalised layers.

    ``flush_subnormals`` (default True, as the engine): every value the passes write for a
    layer (h, z, a, out, the errors), the error arriving from the layer above and the inputs X
    and dout are set to 0 where their magnitude is below ``np.finfo(dtype).tiny``; see the
    module docstring.
    """

    def __init__(self, sizes, activation="relu", init="standard", dtype="float32", seed=None,
                 sigma_w=None, sigma_b=None, *, norm=None, residual=None, residual_init=None,
                 dropout=0.0, dropout_seed=0, norm_momentum=0.1, norm_eps=1e-5,
                 flush_subnormals=True):
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = as_dtype(dtype)
        n_hidden = len(self.sizes) - 2
        if isinstance(activation, (str, Activation)):
            hidden = [resolve_activation(activation)] * n_hidden
        else:
            hidden = [resolve_activation(a) for a in activation]
        self.activations = tuple(hidden) + (Activation("identity"),)
        self.init, self.sigma_w, self.sigma_b = check_init(init, sigma_w, sigma_b)
        opts = layer_options(self.sizes, norm=norm, residual=residual,
                             residual_init=residual_init, dropout=dropout,
                             dropout_seed=dropout_seed, norm_momentum=norm_momentum,
                             norm_eps=norm_eps)
        for k, v in opts.items():
            setattr(self, k, v)
        self.flush_subnormals = bool(flush_subnormals)
        self._bind_params(np.zeros(param_layout(self.sizes, self.norms)[1], self.dtype))
        rng = np.random.default_rng(seed)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            w[...] = init_weight(rng, self.init, self.sizes[l], self.sizes[l + 1], self.sigma_w)
            b[...] = 0 if self.sigma_b is None else rng.normal(0.0, self.sigma_b, b.shape)
        for g in self.gammas:
            if g is not None:
                g[...] = 1
        if self.residual_init == "zero":
            for l, r in enumerate(self.residuals):
                if r is not None:
                    self.weights[l][...] = 0
                    self.biases[l][...] = 0
        self.running_means = [np.zeros(self.sizes[l + 1]) if n == "batch" else None
                              for l, n in enumerate(self.norms)]
        self.running_vars = [np.ones(self.sizes[l + 1]) if n == "batch" else None
                             for l, n in enumerate(self.norms)]
        self.training = True
        self.dropout_counter = 0
        self._reset_state()

    def _bind_params(self, params):
        """Take ``params`` as the flat parameter buffer; make a zero grads buffer and the views."""
        self.params = params
        self.grads = np.zeros_like(params)
        offsets, total = param_layout(self.sizes, self.norms)
        if params.size != total:
            raise ValueError(f"params: expected {total} parameters for sizes {self.sizes} and "
                             f"norms {self.norms}, got {params.size}")
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        self.gammas, self.betas, self.gamma_grads, self.beta_grads = [], [], [], []
        for l, (wo, bo, go, eo) in enumerate(offsets):
            fi, fo = self.sizes[l], self.sizes[l + 1]
            for buf, ws, bs, gs, es in (
                    (self.params, self.weights, self.biases, self.gammas, self.betas),
                    (self.grads, self.weight_grads, self.bias_grads, self.gamma_grads,
                     self.beta_grads)):
                ws.append(buf[wo:wo + fi * fo].reshape(fi, fo))
                bs.append(buf[bo:bo + fo])
                gs.append(None if go is None else buf[go:go + fo])
                es.append(None if eo is None else buf[eo:eo + fo])

    def _reset_state(self):
        self._buffers = {}
        self._buf = None
        self._x = None
        self._fwd_training = self.training
        self._fwd_counter = None       # the dropout counter of the last forward (None: no mask)

    @classmethod
    def from_network(cls, net, *, flush_subnormals=None):
        """A reference network with the architecture, options, current parameters, running
        statistics, mode and dropout counter of ``net`` (an engine :class:`vgcore.MLP`, or
        another ReferenceMLP).  Options the network does not have take their defaults;
        ``flush_subnormals`` overrides the network's when given."""
        ref = cls.__new__(cls)
        ref.flush_subnormals = bool(getattr(net, "flush_subnormals", True)
                                    if flush_subnormals is None else flush_subnormals)
        ref.sizes, ref.dtype, ref.activations = tuple(net.sizes), net.dtype, net.activations
        ref.init, ref.sigma_w, ref.sigma_b = net.init, net.sigma_w, net.sigma_b
        L = len(ref.sizes) - 1

        def per_layer(name, default, conv):
            v = getattr(net, name, None)
            if v is None:
                return (default,) * L
            v = tuple(v)
            if len(v) == L - 1:          # one entry per hidden layer
                v = v + (default,)
            if len(v) != L:
                raise ValueError(f"from_network: net.{name} has {len(v)} entries; expected "
                                 f"{L - 1} or {L}")
            return tuple(default if x is None else conv(x) for x in v)

        ref.norms = per_layer("norms", None, str)
        ref.residuals = per_layer("residuals", None, float)
        ref.dropouts = per_layer("dropouts", 0.0, float)
        ref.residual_init = getattr(net, "residual_init", None)
        ref.dropout_seed = int(getattr(net, "dropout_seed", 0))
        ref.norm_momentum = float(getattr(net, "norm_momentum", 0.1))
        ref.norm_eps = float(getattr(net, "norm_eps", 1e-5))
        ref.training = bool(getattr(net, "training", True))
        ref.dropout_counter = int(getattr(net, "dropout_counter", 0))
        ref._bind_params(np.array(net.params, dtype=net.dtype, copy=True))

        def stats(name, fill):
            given = getattr(net, name, None)
            out = []
            for l, n in enumerate(ref.norms):
                if n != "batch":
                    out.append(None)
                elif given is not None and l < len(given) and given[l] is not None:
                    out.append(np.array(given[l], dtype=np.float64, copy=True))
                else:
                    out.append(np.full(ref.sizes[l + 1], fill, np.float64))
            return out

        ref.running_means = stats("running_means", 0.0)
        ref.running_vars = stats("running_vars", 1.0)
        ref._reset_state()
        return ref

    # ---------------------------------------------------------------- mode
    def train_mode(self):
        """Training mode (the default): batch statistics, dropout on, running stats updated."""
        self.training = True
        return self

    def eval_mode(self):
        """Eval mode: batch norm uses the running statistics, dropout does nothing."""
        self.training = False
        return self

    # ---------------------------------------------------------------- properties
    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def n_params(self):
        return self.params.size

    def _buffers_for(self, batch):
        buf = self._buffers.get(batch)
        if buf is None:
            buf = self._buffers[batch] = _Buffers(batch, self.sizes, self.dtype, self.norms,
                                                  self.residuals, self.dropouts)
        self._buf = buf
        return buf

    @property
    def preactivations(self):
        """The last forward pass's pre-activations ``h = x W + b``, one array per layer."""
        return self._buf.h

    @property
    def normalized(self):
        """The last forward pass's normalised pre-activations z (h itself for layers
        without normalisation), one array per layer."""
        return self._buf.z[:-1] + [self._buf.h[-1]]

    @property
    def post_activations(self):
        """The last forward pass's activations phi(z) (the output layer's is its
        pre-activation); before the residual sum and dropout."""
        return self._buf.a[:-1] + [self._buf.h[-1]]

    @property
    def layer_outputs(self):
        """The last forward pass's layer outputs (after the residual sum and dropout; the input
        of the next layer), one array per layer."""
        return self._buf.out[:-1] + [self._buf.h[-1]]

    @property
    def dropout_masks(self):
        """The last forward pass's dropout multipliers (mask / (1 - p)) per layer, None for
        layers without dropout or when the pass ran in eval mode."""
        if self._fwd_counter is None:
            return [None] * self.n_layers
        return [m if p > 0 else None for m, p in zip(self._buf.mask, self.dropouts)]

    # ---------------------------------------------------------------- passes
    def _normalize(self, l, h, buf, update):
        """z = gamma * xhat + beta for layer l (writes buf.xhat, buf.z, buf.mu, buf.rstd)."""
        norm, eps = self.norms[l], self.norm_eps
        h64 = h.astype(np.float64)
        if norm == "batch":
            if self._fwd_training:
                mu = h64.mean(axis=0)
                var = np.square(h64 - mu).mean(axis=0)
                if update:
                    B, m = h.shape[0], self.norm_momentum
                    unbiased = var * (B / (B - 1)) if B > 1 else var
                    rm, rv = self.running_means[l], self.running_vars[l]
                    rm *= 1 - m
                    rm += m * mu
                    rv *= 1 - m
                    rv += m * unbiased
            else:
                mu, var = self.running_means[l], self.running_vars[l]
        else:  # layer
            mu = h64.mean(axis=1, keepdims=True)
            var = np.square(h64 - mu).mean(axis=1, keepdims=True)
        buf.mu[l][...] = mu
        buf.rstd[l][...] = 1.0 / np.sqrt(var + eps)
        xhat, z = buf.xhat[l], buf.z[l]
        np.subtract(h, buf.mu[l], out=xhat)
        xhat *= buf.rstd[l]
        np.multiply(xhat, self.gammas[l], out=z)
        z += self.betas[l]

    def forward(self, X, advance=True):
        """Run the network on X; returns the output (a view of a buffer reused by the next pass).

        In training mode the pass uses the dropout counter ``dropout_counter`` and then
        increments it, and updates the batch-norm running statistics.  ``advance=False`` runs
        the same training-mode pass but leaves both the counter and the running statistics
        unchanged (so repeated passes see the same masks: finite differences).
        """
        buf = self._buffers_for(X.shape[0])
        X = self._flushed_input(X)
        self._fwd_training = training = bool(self.training)
        self._fwd_counter = self.dropout_counter if training else None
        x = X
        L = self.n_layers
        for l in range(L):
            h = buf.h[l]
            np.matmul(x, self.weights[l], out=h)
            h += self.biases[l]
            self._flush(h, l)
            if l == L - 1:
                break
            if self.norms[l] is not None:
                self._normalize(l, h, buf, update=advance)
                self._flush(buf.z[l], l)
            a = activation_forward(self.activations[l], buf.z[l], out=buf.a[l],
                                   scratch=buf.scratch[l])
            self._flush(a, l)
            out = buf.out[l]
            alpha, p = self.residuals[l], self.dropouts[l]
            if alpha is not None:
                np.multiply(a, alpha, out=out)
                out += x
            elif out is not a:
                np.copyto(out, a)
            if p > 0 and training:
                keep = dropout_keep(self.dropout_seed, self._fwd_counter, l, *h.shape, p)
                mask = buf.mask[l]
                np.multiply(keep, 1.0 / (1.0 - p), out=mask, casting="unsafe")
                out *= mask
            if out is not a:
                self._flush(out, l)
            x = out
        if training and advance:
            self.dropout_counter += 1
        self._x = X
        return buf.h[-1]

    def backward(self, dout, input_grad=True):
        """Backpropagate ``dout = dL/d(output)`` through the last forward pass (with the mode,
        statistics and dropout masks of that pass); fills :attr:`grads`, returns dL/dX."""
        buf = self._buf
        L = self.n_layers
        delta = self._flushed_input(dout)
        for l in range(L - 1, -1, -1):
            skip = None
            if l < L - 1:
                self._flush(buf.g[l + 1], l)       # the error arriving from above, read flushed
                if (self.norms[l] is None and self.residuals[l] is None
                        and self.dropouts[l] == 0):
                    delta = buf.d[l]
                    activation_derivative(self.activations[l], buf.h[l], buf.a[l],
                                          out=buf.scratch[l], scratch=delta)
                    np.multiply(buf.g[l + 1], buf.scratch[l], out=delta)
                    self._flush(delta, l)
                else:
                    skip, delta = self._backward_layer(l, buf)
            x = self._x if l == 0 else buf.out[l - 1]
            np.sum(delta, axis=0, out=self.bias_grads[l])
            np.matmul(x.T, delta, out=self.weight_grads[l])
            if l > 0 or input_grad:
                np.matmul(delta, self.weights[l].T, out=buf.g[l])
                if skip is not None:
                    buf.g[l] += skip
        return buf.g[0] if input_grad else None

    def _backward_layer(self, l, buf):
        """dL/dh of hidden layer l (into buf.d[l]) from dL/d(out_l) = buf.g[l+1], plus the
        gamma/beta gradients; returns (the skip gradient or None, dL/dh)."""
        g = self._effective_error(l, buf)
        skip = None
        alpha = self.residuals[l]
        if alpha is not None:
            skip = g
            g = np.multiply(g, alpha, out=buf.dz[l])
            self._flush(g, l)
        dh, s = buf.d[l], buf.scratch[l]
        activation_derivative(self.activations[l], buf.z[l], buf.a[l], out=s, scratch=dh)
        norm = self.norms[l]
        if norm is None:
            np.multiply(g, s, out=dh)
            self._flush(dh, l)
            return skip, dh
        dz = np.multiply(g, s, out=buf.dz[l])
        self._flush(dz, l)
        xhat, rstd, gamma = buf.xhat[l], buf.rstd[l], self.gammas[l]
        np.sum(dz, axis=0, out=self.beta_grads[l])
        np.multiply(dz, xhat, out=s)
        np.sum(s, axis=0, out=self.gamma_grads[l])
        if norm == "batch":
            if self._fwd_training:
                B = dz.shape[0]
                # gamma rstd (dz - mean_i dz - xhat mean_i(dz xhat))
                np.multiply(xhat, self.gamma_grads[l] / B, out=dh)
                np.subtract(dz, dh, out=dh)
                dh -= self.beta_grads[l] / B
                dh *= gamma * rstd
            else:
                np.multiply(dz, gamma * rstd, out=dh)
        else:  # layer: dxh = dz gamma; (dxh - mean_j dxh - xhat mean_j(dxh xhat)) rstd
            dxh = dz
            dxh *= gamma
            np.multiply(dxh, xhat, out=s)
            m2 = s.mean(axis=1, keepdims=True)
            m1 = dxh.mean(axis=1, keepdims=True)
            np.multiply(xhat, m2, out=dh)
            np.subtract(dxh, dh, out=dh)
            dh -= m1
            dh *= rstd
        self._flush(dh, l)
        return skip, dh

    def _effective_error(self, l, buf):
        """dL/d(out_l) (buf.g[l+1], already read flushed) through layer l's dropout mask: the
        error its residual scale and activation see (flushed)."""
        g = buf.g[l + 1]
        if self.dropouts[l] > 0 and self._fwd_counter is not None:
            np.multiply(g, buf.mask[l], out=buf.t[l])
            g = buf.t[l]
            self._flush(g, l)
        return g

    def _flushed_input(self, x):
        """x, or with flush_subnormals a copy with its subnormal entries 0 (when it has any)."""
        small = self.flush_subnormals and (np.abs(x) < np.finfo(self.dtype).tiny) & (x != 0)
        return np.where(small, 0, x) if self.flush_subnormals and small.any() else x

    def _flush(self, x, l):
        """With flush_subnormals: x[|x| < tiny] = 0 in place, without allocating (NaN kept)."""
        if not self.flush_subnormals:
            return
        tiny = np.finfo(self.dtype).tiny
        below, above = self._buf.below[l], self._buf.above[l]
        np.less(x, tiny, out=below)
        np.greater(x, -tiny, out=above)
        below &= above
        np.copyto(x, 0, where=below)

    def underflow_fraction(self):
        """Per layer, the fraction of the last backward pass's error entries lost to
        underflow: ``delta = g * phi'(z)`` below the smallest normal in magnitude (0 included)
        although ``g`` (the error arriving from above, after dropout and the residual scale,
        as the activation reads it) and ``phi'(z)`` were not 0 (0 for the output layer).  The
        definition of ``GradientFlow.underflow_fraction``; recomputed from the buffers (the
        pass itself does no extra work)."""
        buf = self._buf
        L = self.n_layers
        out = np.zeros(L)
        tiny = np.finfo(self.dtype).tiny
        for l in range(L - 1):
            g = buf.g[l + 1]
            if self.dropouts[l] > 0 and self._fwd_counter is not None:
                g = buf.t[l]
            if self.residuals[l] is not None:
                g = g * self.dtype.type(self.residuals[l])
                if self.flush_subnormals:
                    g[np.abs(g) < tiny] = 0
            dphi = activation_derivative(self.activations[l], buf.z[l], buf.a[l])
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                d = g * dphi
            lost = (g != 0) & (dphi != 0) & (np.abs(d) < tiny)
            out[l] = np.count_nonzero(lost) / lost.size
        return out

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

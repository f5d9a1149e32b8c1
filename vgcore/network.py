"""The multilayer perceptron: parameters in one flat buffer, one compiled call per pass."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from vgcore import _engine
from vgcore import losses as _losses
from vgcore._validation import as_dtype, check_float_matrix, check_positive_int
from vgcore.activations import Activation, max_derivative, resolve_activation
from vgcore.flow import N_STATS, SATURATION_THRESHOLD, GradientFlow
from vgcore.init import check_init, init_weight

__all__ = ["MLP"]

_WORKSPACE_CACHE = 4      # batch sizes whose buffers are kept (e.g. full batch + last batch)


class _Workspace:
    """Buffers for one batch size: pre-activations H, activations A, errors D of every layer
    (flat, layer after layer), dL/dX, and read-only views handed to the user."""

    __slots__ = ("batch", "H", "A", "D", "dX", "out", "dX_view", "loss_grad")

    def __init__(self, batch, sizes, dtype):
        total = batch * int(sum(sizes[1:]))
        self.batch = batch
        self.H = np.zeros(total, dtype)
        self.A = np.zeros(total, dtype)
        self.D = np.zeros(total, dtype)
        self.dX = np.zeros(batch * sizes[0], dtype)
        out = self.H[total - batch * sizes[-1]:].reshape(batch, sizes[-1])
        out.flags.writeable = False
        self.out = out
        dx = self.dX.reshape(batch, sizes[0])
        dx.flags.writeable = False
        self.dX_view = dx
        self.loss_grad = np.zeros((batch, sizes[-1]), dtype)

    @property
    def nbytes(self):
        return self.H.nbytes + self.A.nbytes + self.D.nbytes + self.dX.nbytes


class MLP:
    """A deep fully-connected network ``x -> phi(x W_1 + b_1) -> ... -> x W_L + b_L``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_in, hidden_1, ..., hidden_k, n_out]`` (at least two entries).
        Layer ``l`` has ``W_l`` of shape ``(sizes[l], sizes[l+1])``; ``y = x @ W + b``.
    activation : str, Activation, or sequence of them
        The hidden layers' activation (see :mod:`vgcore.activations`); a sequence gives one per
        hidden layer.  The output layer is always linear.
    init : str
        Weight initialiser (see :mod:`vgcore.init`); default ``"standard"``, PyTorch's default.
    dtype : {"float32", "float64"}
        The dtype of parameters, activations and gradients; inputs must match it.
    seed : int or None
        Seed for the initialiser; the same seed gives the same network.
    sigma_w : float, optional
        Weight scale for ``init="normal"`` (W ~ N(0, sigma_w^2 / fan_in)), or the gain of
        ``init="orthogonal"``.
    sigma_b : float, optional
        When given, biases are drawn from N(0, sigma_b^2); otherwise they are zero.
    measure : bool
        Measure the gradient flow in every pass (default True; see :meth:`gradient_flow`).
        It costs a few percent of a step; ``net.measure = False`` turns it off.

    Attributes
    ----------
    params, grads : ndarray, 1-D
        All parameters and all gradients, each one contiguous buffer (W_1, b_1, W_2, ...).
    weights, biases, weight_grads, bias_grads : list of ndarray
        Writable per-layer views into ``params`` and ``grads``.

    Notes
    -----
    :meth:`forward` and :meth:`backward` each make one call into compiled code, whatever the
    depth.  Buffers for activations are allocated the first time a batch size is seen and
    reused afterwards (the last few batch sizes are kept), so a training step at a known batch
    size allocates nothing.  The arrays returned by ``forward`` and ``backward`` are read-only
    views of those buffers: they are overwritten by the next pass, so copy them to keep them.
    """

    def __init__(self, sizes, activation="relu", init="standard", dtype="float32", seed=None,
                 sigma_w=None, sigma_b=None, measure=True):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes: expected a sequence of layer widths, got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least [n_in, n_out], got {list(sizes)!r}")
        self.sizes = tuple(check_positive_int(s, f"sizes[{i}]") for i, s in enumerate(sizes))
        if max(self.sizes) > 2**31 - 1:
            raise ValueError(f"sizes: widths above 2**31-1 are not supported, got {self.sizes}")
        self.dtype = as_dtype(dtype)
        n_hidden = len(self.sizes) - 2
        if isinstance(activation, (str, Activation)):
            hidden = [resolve_activation(activation)] * n_hidden
        elif not isinstance(activation, (list, tuple)):
            raise TypeError(f"activation: expected a name, a vgcore.Activation or a list of "
                            f"them, got {type(activation).__name__}")
        else:
            hidden = [resolve_activation(a) for a in activation]
            if len(hidden) != n_hidden:
                raise ValueError(f"activation: expected one activation per hidden layer "
                                 f"({n_hidden}), got {len(hidden)}")
        self.activations = tuple(hidden) + (Activation("identity"),)
        self.init, self.sigma_w, self.sigma_b = check_init(init, sigma_w, sigma_b)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
        self.seed = seed

        # one flat buffer for parameters, one for gradients, with per-layer views
        L = len(self.sizes) - 1
        w_off = np.zeros(L, np.int64)
        b_off = np.zeros(L, np.int64)
        off = 0
        for l in range(L):
            w_off[l] = off
            off += self.sizes[l] * self.sizes[l + 1]
            b_off[l] = off
            off += self.sizes[l + 1]
        self.params = np.zeros(off, self.dtype)
        self.grads = np.zeros(off, self.dtype)
        self.weights = [self._view(self.params, w_off[l], (self.sizes[l], self.sizes[l + 1]))
                        for l in range(L)]
        self.biases = [self._view(self.params, b_off[l], (self.sizes[l + 1],)) for l in range(L)]
        self.weight_grads = [self._view(self.grads, w_off[l], (self.sizes[l], self.sizes[l + 1]))
                             for l in range(L)]
        self.bias_grads = [self._view(self.grads, b_off[l], (self.sizes[l + 1],))
                           for l in range(L)]
        self.reset_parameters(seed)

        self._engine = _engine.Engine(
            np.asarray(self.sizes, np.int64),
            np.asarray([a.kind for a in self.activations], np.intc),
            np.asarray([a.param for a in self.activations], np.float64),
            w_off, b_off, self.params, self.grads)
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self._ws: _Workspace | None = None
        self._input = None          # the X of the last forward pass (kept for dW_1)

        # measurement buffers, filled by the compiled passes (see vgcore.flow)
        self._stats = np.zeros((L, N_STATS), np.float64)
        self._sat_thr = np.asarray([SATURATION_THRESHOLD * max_derivative(a)
                                    for a in self.activations], np.float64)
        self._cum_width = np.concatenate(([0], np.cumsum(self.sizes[1:]))).astype(np.int64)
        self._unit_zero = np.zeros(int(self._cum_width[-1]), self.dtype)
        self._acc = np.zeros(3 * max(self.sizes[1:]), self.dtype)
        self._dout = None           # the dout of the last backward pass (per-sample norms)
        self._stepped = False       # an optimiser step measured the norms since the backward
        self._flow_batch = None     # batch size of the last measured backward, or None
        self._measure = False
        self.measure = measure

    @staticmethod
    def _view(buf, offset, shape):
        n = int(np.prod(shape))
        return buf[offset:offset + n].reshape(shape)

    # ---------------------------------------------------------------- properties
    @property
    def measure(self) -> bool:
        """Whether the passes measure the gradient flow (see :meth:`gradient_flow`)."""
        return self._measure

    @measure.setter
    def measure(self, on):
        if not isinstance(on, (bool, np.bool_)):
            raise TypeError(f"measure: expected True or False, got {on!r}")
        self._measure = bool(on)
        self._engine.set_measurement(self._measure, self._stats, self._sat_thr,
                                     self._unit_zero, self._acc)
        self._flow_batch = None

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return self.params.size

    def __repr__(self):
        names = {a.name for a in self.activations[:-1]}
        act = names.pop() if len(names) == 1 else "mixed"
        return (f"MLP(sizes={list(self.sizes)}, activation={act!r}, init={self.init!r}, "
                f"dtype={self.dtype.name!r}, n_params={self.n_params})")

    # ---------------------------------------------------------------- parameters
    def reset_parameters(self, seed=None) -> None:
        """Draw fresh weights and biases from the network's initialiser (see :mod:`vgcore.init`)."""
        rng = np.random.default_rng(seed)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            w[...] = init_weight(rng, self.init, self.sizes[l], self.sizes[l + 1], self.sigma_w)
            if self.sigma_b is None:
                b[...] = 0
            else:
                b[...] = rng.normal(0.0, self.sigma_b, b.shape)
        self.grads[...] = 0

    # ---------------------------------------------------------------- passes
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = _Workspace(batch, self.sizes, self.dtype)
            self._workspaces[batch] = ws
            while len(self._workspaces) > _WORKSPACE_CACHE:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(batch)
        if ws is not self._ws:
            self._engine.bind(batch, ws.H, ws.A, ws.D, ws.dX)
            self._ws = ws
        return ws

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Run the network on a batch.

        Parameters
        ----------
        X : ndarray of shape (batch, sizes[0]), the network's dtype, C-contiguous, finite

        Returns
        -------
        ndarray of shape (batch, sizes[-1])
            The output layer's (linear) values: a read-only view, overwritten by the next pass.
        """
        check_float_matrix(X, "X", self.dtype, cols=self.sizes[0], what="the network's dtype")
        ws = self._workspace(X.shape[0])
        self._engine.forward(X)
        self._input = X
        self._flow_batch = None
        return ws.out

    def backward(self, dout: np.ndarray, *, input_grad: bool = True):
        """Backpropagate ``dout = dL/d(output)`` through the last forward pass.

        Fills :attr:`grads` (so :attr:`weight_grads` and :attr:`bias_grads`) with dL/dW and
        dL/db, overwriting what was there.

        Parameters
        ----------
        dout : ndarray of shape (batch, sizes[-1]), same batch as the last :meth:`forward`
        input_grad : bool
            Also compute dL/dX (one more matrix product); default True.

        Returns
        -------
        ndarray of shape (batch, sizes[0]) or None
            dL/dX as a read-only view (overwritten by the next pass), or None when
            ``input_grad`` is False.
        """
        if self._input is None:
            raise RuntimeError("backward: call forward(X) first; there is no forward pass to "
                               "backpropagate through")
        ws = self._ws
        check_float_matrix(dout, "dout", self.dtype, cols=self.sizes[-1])
        if dout.shape[0] != ws.batch:
            raise ValueError(f"dout: expected {ws.batch} rows (the batch of the last forward "
                             f"pass), got shape {dout.shape}")
        self._engine.backward(self._input, dout, bool(input_grad))
        self._stepped = False
        self._dout = dout
        self._flow_batch = ws.batch if self._measure else None
        return ws.dX_view if input_grad else None

    def gradient_flow(self) -> GradientFlow:
        """The gradient-flow measurements of the last forward and backward pass.

        Every quantity is defined in :mod:`vgcore.flow`; they were computed inside the compiled
        passes, so this call only derives them from a few sums per layer.

        Raises
        ------
        RuntimeError
            When measurements are off, or no backward pass followed the last forward pass.
        """
        if not self._measure:
            raise RuntimeError("gradient_flow: measurements are off; set net.measure = True "
                               "before the forward and backward passes")
        if self._flow_batch is None or self._ws is None or self._ws.batch != self._flow_batch:
            raise RuntimeError("gradient_flow: no measured step yet; call forward(X) and then "
                               "backward(dout) (or train_step) first")
        ws = self._ws
        if not self._stepped:
            self._engine.param_norms()     # no step yet: W and dW are as the backward left them
        in_norm2 = np.empty((self.n_layers, ws.batch))
        delta_norm2 = np.empty((self.n_layers, ws.batch))
        self._engine.per_sample_norms(self._input, self._dout, in_norm2, delta_norm2)
        return GradientFlow.from_buffers(self.sizes, self.activations, ws.batch, self._stats,
                                         in_norm2, delta_norm2, self._unit_zero,
                                         self._cum_width, self._stepped)

    def _sgd_step(self, lr: float) -> None:
        """``params -= lr * grads`` in one compiled call; when measuring, the same pass
        records the norms of W, dW and of the update (no pass of its own)."""
        if self._measure and self._flow_batch is not None and not self._stepped:
            self._engine.sgd_measured(lr)
            self._stepped = True
        else:
            _engine.sgd_step(self.params, self.grads, lr)

    def train_step(self, X, y, loss="cross_entropy", optimizer=None) -> float:
        """Forward, loss, backward and (when given) the optimiser's step; returns the loss.

        ``loss`` names a function of :mod:`vgcore.losses`.  The loss gradient is written into a
        buffer kept with the batch's workspace, so after the first step at a batch size a
        step allocates no memory.
        """
        fn = _losses.get(loss)
        out = self.forward(X)
        value, dout = fn(out, y, grad_out=self._ws.loss_grad)
        self.backward(dout, input_grad=False)
        if optimizer is not None:
            optimizer.step()
        return value

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The network's output on X as a new array (a copy of :meth:`forward`'s view)."""
        return self.forward(X).copy()

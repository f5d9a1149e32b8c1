"""The multilayer perceptron: parameters in one flat buffer, one compiled call per pass."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from vgcore import _engine
from vgcore.core import _contract
from vgcore.core._reading import ReadingSurface
from vgcore.core._updates import UpdateSurface
from vgcore.core._validation import (as_dtype, check_float_matrix,
                                     check_positive_int)
from vgcore.core.activations import Activation, resolve_activation
from vgcore.measure.flow import N_STATS, saturation_threshold
from vgcore.core.init import check_init, init_weight
from vgcore.core.layers import Dense, layer_options, param_layout
from vgcore.core._workspace import Workspace as _Workspace

__all__ = ["MLP", "Dense"]

_WORKSPACE_CACHE = 4      # batch sizes whose buffers are kept (e.g. full batch + last batch)
_contract.require("normalisations", ("none", "batch", "layer"), _contract.NORM_KINDS)


class MLP(ReadingSurface, UpdateSurface):
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
    norm : None, "batch", "layer", or a list with one per hidden layer
        Normalise each hidden layer's pre-activation ``h = x W + b`` before its activation:
        batch norm (each unit over the batch; running averages for evaluation mode) or layer
        norm (each sample over its units), then ``z = gamma * xhat + beta`` with learnable
        ``gamma`` (init 1) and ``beta`` (init 0).
    residual : None, float, "auto", or a list with one per hidden layer
        Residual blocks: a hidden layer with ``fan_in == fan_out`` outputs ``x + alpha *
        phi(z)``.  ``"auto"`` uses ``alpha = 1 / sqrt(number of hidden layers)``; one number
        applies to every hidden layer of equal widths; a list gives one per hidden layer
        (None for none).
    residual_init : None or "zero"
        ``"zero"`` starts every residual branch at zero (its W and b), so each block starts as
        the identity (SkipInit / Fixup).
    dropout : float or a list with one per hidden layer
        Dropout probability on each hidden layer's output, in training mode only (inverted
        dropout: kept units are scaled by 1 / (1 - p)).  The masks come from a counter-based
        hash of ``dropout_seed``, the number of training passes so far and the layer, so runs
        are reproducible.
    dropout_seed : int
    norm_momentum, norm_eps : float
        Batch norm's running-average momentum (0.1) and the normalisations' epsilon (1e-5).
    flush_subnormals : bool
        Flush subnormal numbers to zero in the compiled work (default True; also a read/write
        property).  Values whose magnitude is below the dtype's smallest normal (float32:
        1.18e-38, float64: 2.2e-308) become 0: every pass and step sets the FTZ and DAZ bits of
        the x86 MXCSR register in each thread doing vgcore's work and restores the caller's
        register afterwards, and the kernels that write the matrix products' operands
        (pre-activations and activations forward, errors backward) write such values as 0, so
        none reaches a matrix product even in BLAS's own threads.  The inputs are read the
        same way: a subnormal entry of ``X`` (forward, train_step) or ``dout`` (backward)
        reads as 0 (the pass then works on a copy; the caller's array is not changed).  On
        Intel CPUs arithmetic on subnormals takes microcode assists (a vanishing float32
        network stepped 9x faster with flushing in issue #11); AMD Zen has no such penalty.
        Off, the arithmetic is plain IEEE and the results are bit-identical to vgcore without
        the option.  A gradient that vanishes below 1e-38 reads as exactly 0 in float32
        either way (see ``GradientFlow.underflow_fraction``); float64 shows its size.

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
    size allocates nothing, but for the measurement buffers of a step after which a flow is
    kept (:meth:`gradient_flow` copies nothing: a flow keeps the buffers its step wrote, and
    the network moves to a free set of them, reused, or makes one while every set is held).
    The arrays returned by ``forward`` and ``backward`` are read-only views of those buffers:
    they are overwritten by the next pass, so copy them to keep them.
    """

    # per layer (the output layer's entry last: None, None, 0.0) and the scalars of the layer
    # options, set from vgcore.core.layers.layer_options
    norms: tuple
    residuals: tuple
    dropouts: tuple
    residual_init: str | None
    dropout_seed: int
    norm_momentum: float
    norm_eps: float

    def __init__(self, sizes, activation="relu", init="standard", dtype="float32", seed=None,
                 sigma_w=None, sigma_b=None, measure=True, *, norm=None, residual=None,
                 residual_init=None, dropout=0.0, dropout_seed=0, norm_momentum=0.1,
                 norm_eps=1e-5, flush_subnormals=True):
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
        self._activation_names = tuple(a.name for a in self.activations)
        self.init, self.sigma_w, self.sigma_b = check_init(init, sigma_w, sigma_b)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
        if seed is not None and seed < 0:
            raise ValueError(f"seed: expected a non-negative integer or None, got {seed}")
        self.seed = seed
        for name, value in layer_options(self.sizes, norm=norm, residual=residual,
                                         residual_init=residual_init, dropout=dropout,
                                         dropout_seed=dropout_seed, norm_momentum=norm_momentum,
                                         norm_eps=norm_eps).items():
            setattr(self, name, value)      # norms, residuals, dropouts (per layer), the rest
        self._extras = any(self.norms) or any(r is not None for r in self.residuals) \
            or any(self.dropouts)

        # one flat buffer for parameters, one for gradients, with per-layer views:
        # W_l, b_l, and gamma_l, beta_l for normalised layers
        L = len(self.sizes) - 1
        layout, off = param_layout(self.sizes, self.norms)
        w_off, b_off, g_off, be_off = (np.asarray([-1 if o is None else o for o in col], np.int64)
                                       for col in zip(*layout))
        if off * self.dtype.itemsize > 2**40:
            raise ValueError(f"sizes: {list(self.sizes)} make {off} parameters "
                             f"({off * self.dtype.itemsize / 2**30:.0f} GiB), more than vgcore "
                             f"accepts (1 TiB)")
        self.params = np.zeros(off, self.dtype)
        self.grads = np.zeros(off, self.dtype)
        self.weights = [self._view(self.params, w_off[l], (self.sizes[l], self.sizes[l + 1]))
                        for l in range(L)]
        self.biases = [self._view(self.params, b_off[l], (self.sizes[l + 1],)) for l in range(L)]
        self.weight_grads = [self._view(self.grads, w_off[l], (self.sizes[l], self.sizes[l + 1]))
                             for l in range(L)]
        self.bias_grads = [self._view(self.grads, b_off[l], (self.sizes[l + 1],))
                           for l in range(L)]

        def per_norm_layer(buf, offsets):
            return [self._view(buf, offsets[l], (self.sizes[l + 1],)) if offsets[l] >= 0
                    else None for l in range(L)]
        self.gammas, self.betas = per_norm_layer(self.params, g_off), per_norm_layer(self.params,
                                                                                    be_off)
        self.gamma_grads = per_norm_layer(self.grads, g_off)
        self.beta_grads = per_norm_layer(self.grads, be_off)
        units = int(sum(self.sizes[1:]))
        self._run_mean = np.zeros(units, np.float64)
        self._run_var = np.ones(units, np.float64)
        cw = np.concatenate(([0], np.cumsum(self.sizes[1:])))
        self.running_means = [self._run_mean[cw[l]:cw[l + 1]] if self.norms[l] == "batch"
                              else None for l in range(L)]
        self.running_vars = [self._run_var[cw[l]:cw[l + 1]] if self.norms[l] == "batch"
                             else None for l in range(L)]
        self.reset_parameters(seed)

        self._engine = _engine.Engine(
            np.asarray(self.sizes, np.int64),
            np.asarray([a.kind for a in self.activations], np.intc),
            np.asarray([a.param for a in self.activations], np.float64),
            w_off, b_off, self.params, self.grads)
        if self._extras:
            self._engine.set_layers(
                np.asarray([_contract.NORM_KINDS[k or "none"] for k in self.norms], np.intc),
                np.asarray([r or 0.0 for r in self.residuals], np.float64),
                np.asarray(self.dropouts, np.float64), g_off, be_off, self._run_mean,
                self._run_var, self.norm_eps, self.norm_momentum, self.dropout_seed,
                np.zeros(max(self.sizes[1:]), self.dtype))
        self.training = True
        self.dropout_counter = 0    # training forward passes so far (the dropout masks' counter)
        self._fwd_training = True   # the mode and counter of the last forward pass
        self._fwd_counter = 0
        self._lock = threading.RLock()   # one thread at a time, re-entrant (see _acquire)
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self._ws: _Workspace | None = None
        self._input = None          # the X of the last forward pass (kept for dW_1)

        # measurement buffers, filled by the compiled passes (see vgcore.flow)
        self._stats0 = np.zeros((L, N_STATS), np.float64)   # until a batch size is bound
        self._scratch_stats = np.zeros((L, N_STATS), np.float64)   # an unmeasured update's norms
        self._sat_thr = np.asarray([saturation_threshold(a) for a in self.activations],
                                   np.float64)
        self._cum_width = np.concatenate(([0], np.cumsum(self.sizes[1:]))).astype(np.int64)
        self._unit_zero0 = np.zeros(int(self._cum_width[-1]), self.dtype)
        self._acc = np.zeros(3 * max(self.sizes[1:]), self.dtype)
        self._stepped = False       # an optimiser step measured the norms since the backward
        self._flow_batch = None     # batch size of the last measured backward, or None
        self._measure = False
        # until a batch size is bound: then its workspace's measurement set (see _bind_set)
        self._engine.bind_measurements(self._stats0, self._unit_zero0)
        self.measure = measure
        self._flush = True
        self.flush_subnormals = flush_subnormals

    @classmethod
    def from_layers(cls, n_in, layers, **options) -> "MLP":
        """Build a network from an explicit list of :class:`Dense` layers.

        ``vg.MLP.from_layers(64, [vg.Dense(128, "tanh", norm="batch"), vg.Dense(128, "tanh",
        residual=0.5, dropout=0.1), vg.Dense(10)], init="orthogonal", seed=0)``.  The last
        layer is the output layer: linear, without normalisation, residual or dropout.
        ``options`` are the other arguments of :class:`MLP` (init, dtype, seed, ...).
        """
        layers = list(layers)
        if not layers or not all(isinstance(d, Dense) for d in layers):
            raise TypeError("layers: expected a non-empty list of vgcore.Dense")
        out = layers[-1]
        if out.activation.name != "identity" or out.norm or out.residual or out.dropout:
            raise ValueError(f"layers: the last layer is the output layer and must be linear "
                             f"with no norm, residual or dropout, got {out!r}")
        hidden = layers[:-1]
        for name in ("activation", "norm", "residual", "dropout"):
            if name in options:
                raise TypeError(f"{name}: set it on each Dense of the list, not as an option")
        return cls([n_in] + [d.units for d in layers],
                   activation=[d.activation for d in hidden], norm=[d.norm for d in hidden],
                   residual=[d.residual for d in hidden], dropout=[d.dropout for d in hidden],
                   **options)

    @classmethod
    def from_torch(cls, module, **options) -> "MLP":
        """The network computing the same function as a PyTorch ``nn.Sequential`` MLP, with
        its parameters, running statistics, dtype and mode; see
        :func:`vgcore.interop.torch_bridge.from_torch` (``options``: dtype, init, measure,
        dropout_seed, flush_subnormals) for what maps.  Needs PyTorch."""
        from vgcore.interop.torch_bridge import from_torch
        return from_torch(module, **options)

    def to_torch(self):
        """The equivalent PyTorch ``nn.Sequential`` (parameters copied); see
        :func:`vgcore.interop.torch_bridge.to_torch`.  Needs PyTorch."""
        from vgcore.interop.torch_bridge import to_torch
        return to_torch(self)

    def profile(self, on: bool = True) -> None:
        """Start (and reset) or stop timing every layer inside the compiled passes; see
        :meth:`layer_timings`.  Costs two clock reads per layer and pass."""
        if on:
            self._timing = np.zeros((self.n_layers, 4), np.float64)
            self._engine.set_timing(self._timing)
        else:
            self._engine.set_timing(None)

    def layer_timings(self) -> dict:
        """Seconds spent per layer since :meth:`profile` started, summed over passes:
        ``forward_gemm``, ``forward_elementwise`` (bias, normalisation, activation,
        measurements, residual sum, dropout), ``backward_elementwise`` (activation derivative,
        bias gradient, normalisation backward, measurements) and ``backward_gemm`` (dW and
        dL/dx), each an array of shape (n_layers,)."""
        t = getattr(self, "_timing", None)
        if t is None:
            raise RuntimeError("layer_timings: call net.profile() first")
        return {name: t[:, k].copy() for k, name in enumerate(
            ("forward_gemm", "forward_elementwise", "backward_elementwise", "backward_gemm"))}

    def train_mode(self) -> "MLP":
        """Training mode (the default): batch norm uses batch statistics and updates its
        running averages, dropout drops."""
        self.training = True
        return self

    def eval_mode(self) -> "MLP":
        """Evaluation mode: batch norm uses its running averages, dropout does nothing."""
        self.training = False
        return self

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
        self._engine.set_measurement(self._measure, self._sat_thr, self._acc)
        self._flow_batch = None

    @property
    def flush_subnormals(self) -> bool:
        """Whether the compiled work flushes subnormal numbers to zero (see :class:`MLP`)."""
        return self._flush

    @flush_subnormals.setter
    def flush_subnormals(self, on):
        if not isinstance(on, (bool, np.bool_)):
            raise TypeError(f"flush_subnormals: expected True or False, got {on!r}")
        self._flush = bool(on)
        self._engine.set_flush(self._flush)

    def blas_choice(self) -> dict:
        """How this network's passes have run their matrix products above the small-product
        limit (see :func:`vgcore.blas_policy`): per direction (``"forward"``, ``"backward"``)
        the passes that had such products, whether one BLAS thread has been the faster mode,
        and the moving averages of seconds per multiply-add with the BLAS's thread count and
        with one thread (None until measured)."""
        return self._engine.blas_choice()

    def chunk_choice(self) -> dict:
        """How this network's batch chunks (see :func:`vgcore.kernel_info`) have run at two
        threads or more: per direction the passes measured, whether one thread (the two halves
        layer by layer, the same bits) has been faster than two, and the moving averages
        of seconds per row of the batch in either mode (None until measured).  A neighbour that
        takes a core stalls a two-thread pass until the scheduler gives the core back; the
        network then runs its halves on one thread and tries two 2, 4, 8 and 16 passes after
        the switch, then every 32nd pass (``vg.set_blas_policy(adapt=False)`` keeps two)."""
        return self._engine.chunk_choice()

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
        flush = "" if self._flush else ", flush_subnormals=False"
        return (f"MLP(sizes={list(self.sizes)}, activation={act!r}, init={self.init!r}, "
                f"dtype={self.dtype.name!r}{flush}, n_params={self.n_params})")

    # ---------------------------------------------------------------- parameters
    def reset_parameters(self, seed=None) -> None:
        """Draw fresh weights and biases from the network's initialiser (see :mod:`vgcore.init`)."""
        rng = np.random.default_rng(seed)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            with np.errstate(over="ignore"):    # an overflow is reported below, as an error
                w[...] = init_weight(rng, self.init, self.sizes[l], self.sizes[l + 1],
                                     self.sigma_w)
                if self.sigma_b is None:
                    b[...] = 0
                else:
                    b[...] = rng.normal(0.0, self.sigma_b, b.shape)
            if self.residual_init == "zero" and self.residuals[l] is not None:
                w[...] = 0
                b[...] = 0
            if self.gammas[l] is not None:
                self.gammas[l][...] = 1
                self.betas[l][...] = 0
        self._run_mean[...] = 0
        self._run_var[...] = 1
        self.grads[...] = 0
        if not _engine.all_finite(self.params):
            raise ValueError(f"sigma_w / sigma_b: the initial parameters overflow "
                             f"{self.dtype.name} (sigma_w={self.sigma_w!r}, "
                             f"sigma_b={self.sigma_b!r}); use smaller scales")

    # ---------------------------------------------------------------- passes
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = _Workspace(batch, self.sizes, self.dtype, self._extras)
            self._workspaces[batch] = ws
            while len(self._workspaces) > _WORKSPACE_CACHE:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(batch)
        if ws is not self._ws:
            self._engine.bind(batch, ws.H, ws.A, ws.D, ws.dX)
            self._bind_set(ws.msets.current)
            if self._extras:
                self._engine.bind_extras(ws.Z, ws.OUT, ws.NS, ws.ns_stride)
            self._ws = ws
        return ws

    def _bind_set(self, s):
        """Point the measured passes at the measurement set s (a workspace's current one)."""
        self._engine.bind_measurements(s.stats, s.unit_zero, s.in_norm2, s.delta_norm2,
                                       s.ps_mean_sq)

    @property
    def _stats(self):
        """The measurement rows the passes write now: the bound workspace's current set's
        (one source: the compiled switch changes the set and the binding together)."""
        ws = self._ws
        return self._stats0 if ws is None else ws.msets.current.stats

    def _writable_set(self, keep):
        """Before a measured pass writes the bound workspace's measurement set: when a flow
        still holds it, move to one that no flow holds (with its contents when ``keep``), so
        that flows never change (see vgcore.core._measure_sets)."""
        msets = self._ws.msets
        if self._engine.writable_set(msets.sets, keep) is False:
            self._engine.writable_set(msets.sets, keep, msets.new_set())

    def _acquire(self, what):
        """Refuse, rather than corrupt, a network used by two threads at once: the passes share
        its buffers.  Re-entry from the same thread (train_step calls forward) is fine.  The
        caller calls :meth:`_release` in a ``finally``."""
        if not self._lock.acquire(False):   # an RLock: the same thread may enter again
            raise RuntimeError(f"{what}: another thread is using this network right now; use "
                               f"one network per thread, or serialise the calls with a lock")

    def _release(self):
        self._lock.release()

    def _aliases_workspace(self, a, backward=False) -> bool:
        """Whether ``a`` may overlap a buffer the next pass writes (a view the network
        returned)."""
        return self._ws is not None and self._ws.aliases(a, backward)

    @property
    def last_output(self) -> np.ndarray | None:
        """The output of the last forward pass (:meth:`forward`'s, or :meth:`train_step`'s
        before its update): a read-only view of shape (batch, sizes[-1]), overwritten by the
        next pass; None before the first."""
        if self._input is None or self._ws is None:
            return None
        return self._ws.out

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
        X = check_float_matrix(X, "X", self.dtype, cols=self.sizes[0],
                               what="the network's dtype", flush=self._flush)
        self._acquire("forward")
        try:
            ws = self._workspace(X.shape[0])
            if self._measure:
                self._writable_set(False)
            if self._aliases_workspace(X):
                X = X.copy()        # e.g. forward(net.forward(X)): the pass overwrites its input
            if self._extras:
                self._fwd_training, self._fwd_counter = bool(self.training), self.dropout_counter
                self._engine.set_mode(self._fwd_training, self._fwd_counter)
            self._engine.forward(X)
            if self.training:
                self.dropout_counter += 1
            self._input = X
            self._flow_batch = None
            return ws.out
        finally:
            self._release()

    def backward(self, dout: np.ndarray, *, input_grad: bool = True,
                 overwrite_dout: bool = False):
        """Backpropagate ``dout = dL/d(output)`` through the last forward pass.

        Fills :attr:`grads` (so :attr:`weight_grads` and :attr:`bias_grads`) with dL/dW and
        dL/db, overwriting what was there.

        Parameters
        ----------
        dout : ndarray of shape (batch, sizes[-1]), same batch as the last :meth:`forward`
        input_grad : bool
            Also compute dL/dX (one more matrix product); default True.
        overwrite_dout : bool
            With ``flush_subnormals``, set dout's subnormal entries to 0 in dout itself
            rather than in a copy (for a buffer you do not read again); default False.

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
        assert ws is not None                   # bound by the forward pass
        dout = check_float_matrix(dout, "dout", self.dtype, cols=self.sizes[-1],
                                  flush=self._flush, flush_in_place=bool(overwrite_dout))
        if dout.shape[0] != ws.batch:
            raise ValueError(f"dout: expected {ws.batch} rows (the batch of the last forward "
                             f"pass), got shape {dout.shape}")
        self._acquire("backward")
        try:
            if self._aliases_workspace(dout, backward=True):
                dout = dout.copy()  # e.g. backward(net.backward(d)): the pass overwrites it
            if self._extras:     # the masks and statistics of the forward pass
                self._engine.set_mode(self._fwd_training, self._fwd_counter)
            if self._measure:
                self._writable_set(True)
            self._engine.backward(self._input, dout, bool(input_grad))
            self._stepped = False
            self._flow_batch = ws.batch if self._measure else None
            return ws.dX_view if input_grad else None
        finally:
            self._release()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The network's output on X as a new array (a copy of :meth:`forward`'s view)."""
        return self.forward(X).copy()

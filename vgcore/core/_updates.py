"""The part of :class:`~vgcore.core.network.MLP` that optimisers and the trainer call: the
compiled updates (``sgd_step``, ``apply_update``), ``train_step``, where a step went non-finite,
and the buffers' memory.

:class:`UpdateSurface` is a mixin that ``MLP`` inherits and nothing else does: its methods
run on an ``MLP`` (``self: MLP``) and use the network's own buffers, so they are part of the
network's class (and documented as ``MLP``'s methods); they live here only to keep
``network.py`` one screenful of passes and buffers.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vgcore import _engine
from vgcore.core import _contract
from vgcore.core import losses as _losses
from vgcore.core._validation import check_finite_number, check_float_matrix, check_positive_int
from vgcore.core.errors import NonFiniteError
from vgcore.measure.flow import _SUM_D2, _SUM_H2

# the losses the compiled one-call step computes, by function, with the engine's ids for them
# (a name the losses module lacks fails here, at import)
_ONE_CALL_LOSSES = tuple((_losses.LOSSES[name], kind)
                         for name, kind in _engine.STEP_LOSSES.items())

if TYPE_CHECKING:
    from vgcore.core._workspace import Workspace

__all__ = ["UpdateSurface"]


class UpdateSurface:
    """``MLP``'s updates, ``train_step``, ``nonfinite``, ``norm_buffers`` and
    ``memory_usage`` (a mixin of :class:`~vgcore.core.network.MLP` only)."""

    # what MLP.__init__ sets and MLP's passes define (declared here for mypy)
    sizes: tuple
    dtype: np.dtype
    params: np.ndarray
    grads: np.ndarray
    _engine: _engine.Engine
    _ws: Workspace | None
    _workspaces: dict
    _stats0: np.ndarray
    _scratch_stats: np.ndarray
    _sat_thr: np.ndarray
    _cum_width: np.ndarray
    _unit_zero0: np.ndarray
    _acc: np.ndarray
    _run_mean: np.ndarray
    _run_var: np.ndarray
    _stepped: bool
    _flow_batch: int | None
    _measure: bool
    _flush: bool

    if TYPE_CHECKING:
        def _acquire(self, what: str) -> None: ...
        def _release(self) -> None: ...
        def _writable_set(self, keep: bool) -> None: ...
        @property
        def _stats(self) -> np.ndarray: ...
        def forward(self, X: np.ndarray) -> np.ndarray: ...
        def backward(self, dout: np.ndarray, *, input_grad: bool = True,
                     overwrite_dout: bool = False) -> object: ...

    # ---------------------------------------------------------------- updates (optimisers)
    def _update_measured(self) -> bool:
        """Whether the next update measures its norms: measuring, after a measured backward
        pass, and no update measured since."""
        return self._measure and self._flow_batch is not None and not self._stepped

    def sgd_step(self, lr: float) -> None:
        """``params -= lr * grads`` in one compiled pass over the flat buffers.

        When the network measures (and no update was measured since the last backward pass),
        the same pass records the norms of W, dW and of the update, which
        :meth:`gradient_flow` reports as ``update_to_weight``: no pass of its own.
        """
        if type(lr) is not float or not math.isfinite(lr):    # the hot path: a Python float
            lr = check_finite_number(lr, "lr")
        self._acquire("step")
        try:
            if self._update_measured():
                self._writable_set(True)
                self._engine.sgd_measured(lr)
                self._stepped = True
            else:
                _engine.sgd_step(self.params, self.grads, lr, self._flush)
        finally:
            self._release()

    def apply_update(self, kind: str, hyper: np.ndarray, state1=None, state2=None) -> None:
        """One optimiser update of every parameter, in one compiled pass (what
        :mod:`vgcore.optim` calls).

        Parameters
        ----------
        kind : str
            The compiled update: ``"sgd"`` (momentum, Nesterov), ``"rmsprop"``, ``"adagrad"``
            or ``"adam"`` (AdamW with ``decoupled``).
        hyper : ndarray of float64
            The hyper-parameter slots (``vgcore.core._contract.HYPERPARAMETERS``: lr,
            gradient scale, clipping, weight decay, betas, eps, ...).
        state1, state2 : ndarray like :attr:`params`, or None
            The optimiser's state (momentum or squared-gradient average; Adam's second
            moment), updated in place.  The update reads and writes a state only when its kind
            needs it (sgd with momentum: state1; rmsprop, adagrad: state1; adam: both).

        When the network measures, the pass also records the per-layer norms of the weights
        before the update, of the gradient and of the update (see :meth:`sgd_step`).  The
        gradients are read, never written.
        """
        states = self._update_states(kind, hyper, state1, state2)
        self._acquire("step")
        try:
            measured = self._update_measured()
            if measured:
                self._writable_set(True)
            self._engine.opt_update(_contract.OPTIMIZER_KINDS[kind], states[0], states[1], hyper,
                                    self._stats if measured else self._scratch_stats)
            if measured:
                self._stepped = True
        finally:
            self._release()

    def _update_states(self, kind, hyper, state1, state2):
        """apply_update's arguments checked; returns the two state arrays the kernel takes."""
        if kind not in _contract.OPTIMIZER_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(_contract.OPTIMIZER_KINDS)}, "
                             f"got {kind!r}")
        n_hyper = _contract.N_HYPERPARAMETERS
        if (not isinstance(hyper, np.ndarray) or hyper.dtype != np.float64
                or hyper.shape != (n_hyper,) or not hyper.flags.c_contiguous):
            raise TypeError(f"hyper: expected a contiguous float64 array of shape ({n_hyper},), "
                            f"got {getattr(hyper, 'dtype', type(hyper).__name__)} "
                            f"{getattr(hyper, 'shape', '')}")
        needed = {"sgd": 1 if hyper[_contract.HYPER["beta1"]] != 0 else 0, "rmsprop": 1,
                  "adagrad": 1, "adam": 2}[kind]
        states = []
        for i, s in enumerate((state1, state2)):
            if s is None:
                if i < needed:
                    raise ValueError(f"state{i + 1}: the {kind!r} update needs {needed} state "
                                     f"buffer{'s' if needed > 1 else ''} like params, got None")
                s = self.grads                  # a valid pointer the kernel never writes
            elif (not isinstance(s, np.ndarray) or s.dtype != self.dtype
                  or s.shape != self.params.shape or not s.flags.c_contiguous
                  or not s.flags.writeable or np.may_share_memory(s, self.params)
                  or np.may_share_memory(s, self.grads)):
                raise ValueError(f"state{i + 1}: expected a writable contiguous {self.dtype.name} "
                                 f"array of shape {self.params.shape} of its own (like params)")
            states.append(s)
        return states

    # ---------------------------------------------------------------- state and memory
    @property
    def norm_buffers(self) -> tuple:
        """``(running_mean, running_var)``: batch norm's running averages of every unit of
        every layer, as two flat float64 arrays (units of layers without batch norm hold 0 and
        1).  Writable: :attr:`running_means` and :attr:`running_vars` are per-layer views into
        them, and checkpoints save and restore them whole."""
        return self._run_mean, self._run_var

    def memory_usage(self, batch=None) -> dict:
        """Bytes of the buffers the network owns.

        Parameters
        ----------
        batch : int, optional
            Count only the workspace of this batch size (0 when it is not allocated); default:
            every cached workspace.

        Returns
        -------
        dict
            ``parameters``, ``gradients``, ``workspace`` (activations, errors and the loss
            gradient of the cached batch sizes), ``measurement`` (the gradient-flow buffers the
            network keeps: buffers that only flows you keep still hold are theirs, not counted),
            ``normalisation`` (batch norm's running averages) and ``total``.
        """
        if batch is None:
            workspace = sum(ws.nbytes for ws in self._workspaces.values())
        else:
            ws = self._workspaces.get(check_positive_int(batch, "batch"))
            workspace = 0 if ws is None else ws.nbytes
        # the measurement rows and per-unit counts are a workspace's measurement set's once a
        # batch size is bound (counted with the workspaces below)
        own = [self._scratch_stats, self._sat_thr, self._cum_width, self._acc]
        if self._ws is None:
            own += [self._stats0, self._unit_zero0]
        measurement = sum(a.nbytes for a in own)
        measurement += sum(w.measurement_nbytes for w in self._workspaces.values()
                           if batch is None or w.batch == batch)
        out = dict(parameters=self.params.nbytes, gradients=self.grads.nbytes,
                   workspace=workspace, measurement=measurement,
                   normalisation=self._run_mean.nbytes + self._run_var.nbytes)
        out["total"] = sum(out.values())
        return out

    def nonfinite(self):
        """Where the last forward and backward passes produced NaN or Inf, from the passes'
        own measurements (a few sums per layer, no pass over the data).

        Returns
        -------
        None or (str, int)
            None when they were finite; else ``("forward", layer)`` (the first layer whose
            pre-activations were not finite) or ``("backward", layer)`` (the first, from the
            output layer down, whose error was not finite), layers 1-based.  Values whose
            squares overflow the dtype count as non-finite.

        Raises
        ------
        RuntimeError
            When measurements are off (check ``net.grads`` with ``np.isfinite`` instead).
        """
        if not self._measure:
            raise RuntimeError("nonfinite: measurements are off; set net.measure = True (or "
                               "check the output and net.grads yourself)")
        st = self._stats
        if np.isfinite(st[:, _SUM_H2].sum() + st[:, _SUM_D2].sum()):
            return None
        bad_fwd = ~np.isfinite(st[:, _SUM_H2])
        if bad_fwd.any():
            return "forward", int(np.argmax(bad_fwd)) + 1
        bad_bwd = ~np.isfinite(st[:, _SUM_D2])
        return "backward", int(len(bad_bwd) - np.argmax(bad_bwd[::-1]))

    def train_step(self, X, y, loss="cross_entropy", optimizer=None) -> float:
        """Forward, loss, backward and (when given) the optimiser's step; returns the loss.

        ``loss`` names a function of :mod:`vgcore.losses`.  The loss gradient is written into a
        buffer kept with the batch's workspace, so after the first steps at a batch size a
        step allocates no memory (but for a new set of measurement buffers while every set is
        held by flows you keep: see :meth:`gradient_flow`).

        Raises
        ------
        vgcore.NonFiniteError
            When the forward pass produced NaN or Inf, or (when the network measures) the
            backward pass did: before the optimiser steps, so the parameters are unchanged.
            A :class:`FloatingPointError`, with the pass and the layer.
        """
        fn = _losses.get(loss)
        if optimizer is not None:
            from vgcore.train.optim import Optimizer
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"optimizer: expected a vgcore.optim optimiser or None, got "
                                f"{type(optimizer).__name__}")
            if optimizer.net is not self:
                raise ValueError("optimizer: it was built for another network; build it on "
                                 "this one (vg.optim.SGD(net, ...))")
        X = check_float_matrix(X, "X", self.dtype, cols=self.sizes[0],
                               what="the network's dtype", flush=self._flush)
        target = _losses.check_targets(fn, y, X.shape[0], self.sizes[-1], self.dtype)
        self._acquire("train_step")
        try:
            done = self._one_call_step(fn, X, target, optimizer)
            if done is None:
                out = self.forward(X)
                if not _engine.all_finite(out):
                    self._raise_nonfinite("forward")
                assert self._ws is not None
                value, dout = fn(out, y, grad_out=self._ws.loss_grad)
                self.backward(dout, input_grad=False, overwrite_dout=True)
                stepped = False
            else:
                value, stepped = done
            if optimizer is not None and not stepped:
                if self._measure and self.nonfinite() is not None:
                    self._raise_nonfinite("backward")
                optimizer.step()
            return value
        finally:
            self._release()

    def _one_call_step(self, fn, X, target, optimizer):
        """Forward, loss and backward in one compiled call, when the network runs in batch
        chunks and the loss is one of vgcore's: each chunk computes its rows' loss gradient and
        goes straight on to its backward pass (src/_engine_chunks.pxi).  The gradients are
        those of the separate calls, bit for bit; the loss is the sum of the chunks' shares of
        the mean.  The optimiser's step runs in the same call when it can
        (:meth:`vgcore.optim.Optimizer.pass_update`), with the parameters and norms a separate
        step gives, bit for bit, and only when the passes were finite.  Returns (loss, whether
        the optimiser stepped), or None when the separate calls must run."""
        kind = next((k for f, k in _ONE_CALL_LOSSES if f is fn), None)
        if kind is None or self._extras:
            return None
        ws = self._workspace(X.shape[0])
        if not self._engine.can_step():
            return None
        if self._aliases_workspace(X):
            X = X.copy()
        labels = np.ascontiguousarray(target) if kind == 0 else None
        targets = None if kind == 0 else np.ascontiguousarray(target)
        update, lr, hyper, s1, s2 = _engine.UPDATE_NONE, 0.0, None, None, None
        plan = None if optimizer is None else optimizer.pass_update()
        if plan is not None and plan[0] == "plain":      # lr checked by current_lr()
            update, lr = _engine.UPDATE_PLAIN_SGD, plan[1]
        elif plan is not None:
            hyper = plan[1]
            s1, s2 = self._update_states(plan[0], hyper, plan[2], plan[3])
            update = _contract.OPTIMIZER_KINDS[plan[0]]
        if self._measure:
            self._writable_set(False)
        value, finite, stepped = self._engine.train_pass(
            X, kind, labels, targets, ws.loss_grad, update, lr, hyper, s1, s2,
            self._stats if self._measure else self._scratch_stats)
        if self.training:
            self.dropout_counter += 1
        self._input = X
        self._stepped = stepped and self._measure
        self._flow_batch = ws.batch if self._measure and finite else None
        if not finite:
            self._raise_nonfinite("forward")
        if stepped:
            optimizer.step_count += 1
        return float(value), stepped

    def _raise_nonfinite(self, where):
        layer = None
        if self._measure:
            found = self.nonfinite()
            if found is not None:
                where, layer = found
        at = f" at layer {layer}" if layer else ""
        raise NonFiniteError(f"train_step: the {where} pass produced NaN or Inf{at}; the "
                             f"parameters are those before this step (try a lower learning "
                             f"rate, clip_norm, or a normalisation)", where=where, layer=layer)

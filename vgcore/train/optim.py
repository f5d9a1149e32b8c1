"""Optimisers: each step is one compiled pass over the network's flat parameter buffer.

Every optimiser takes the same options:

``lr``
    a number, or a schedule: any callable ``lr(step)`` of the number of steps taken so far
    (see :mod:`vgcore.schedules`).
``weight_decay``
    L2 penalty added to the gradient (``g + wd * w``); for :class:`AdamW` it is decoupled
    (``w -= lr * wd * w`` beside the Adam step), as in Loshchilov & Hutter.
``clip_norm``
    clip the gradient by its global norm (over all parameters): when ``||g|| > clip_norm`` the
    step uses ``g * clip_norm / (||g|| + 1e-6)``.  The norm before clipping is kept in
    :attr:`Optimizer.last_grad_norm`, not lost.  ``net.grads`` is left as the backward pass
    wrote it.
``clip_value``
    clip every gradient entry to ``[-clip_value, clip_value]`` (after ``clip_norm``).

When the network measures its gradient flow (``net.measure``), the same pass records per layer
the norms of the weights before the step, of the gradient, and of the update, from which
:meth:`vgcore.MLP.gradient_flow` gives ``update_to_weight``.  Semantics follow PyTorch's
``torch.optim`` (SGD momentum buffer starting at the first gradient, Adam bias correction).

``net.train_step(X, y, loss, optimizer)`` runs the step inside its own compiled call when the
network's passes run in batch chunks (:meth:`Optimizer.pass_update` describes it): the same
parameters, state and norms as ``optimizer.step()`` after the passes, bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from vgcore import _engine
from vgcore.core import _contract
from vgcore.core._validation import check_finite_number

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW"]

# The compiled updates and the slots of their hyper-parameter vector, by their names in
# src/vg_contract.h (kinds and slot numbers come from the compiled module; importing this
# module fails if the two sides do not list the same ones).
_contract.require("optimiser kinds", ("sgd", "rmsprop", "adagrad", "adam"),
                  _contract.OPTIMIZER_KINDS)
_contract.require("hyper-parameter slots",
                  ("lr", "gscale", "clip_value", "weight_decay", "beta1", "beta2", "eps",
                   "nesterov", "bias_corr1", "bias_corr2", "decoupled", "first_step"),
                  _contract.HYPERPARAMETERS)
_H = _contract.HYPER
(_LR, _GSCALE, _CLIP_VALUE, _WEIGHT_DECAY, _BETA1, _BETA2, _EPS, _NESTEROV, _BIAS_CORR1,
 _BIAS_CORR2, _DECOUPLED, _FIRST_STEP) = (
    _H[k] for k in ("lr", "gscale", "clip_value", "weight_decay", "beta1", "beta2", "eps",
                    "nesterov", "bias_corr1", "bias_corr2", "decoupled", "first_step"))


class Optimizer:
    """Base class: the options shared by every optimiser (see the module docstring).

    A subclass names its compiled update (``kind``, one of ``vgcore._engine.OPTIMIZERS``), the
    number of state buffers it keeps, fills its slots of the hyper-parameter vector in
    :meth:`_fill_hyper` and lists its constructor's options in :meth:`hyperparameters`.
    """

    kind = "sgd"
    _n_states = 0

    def __init__(self, net, lr=0.01, *, weight_decay=0.0, clip_norm=None, clip_value=None):
        from vgcore.core.network import MLP
        if not isinstance(net, MLP):
            raise TypeError(f"net: expected a vgcore.MLP, got {type(net).__name__}")
        self.net = net
        self.lr = lr
        self.weight_decay = check_finite_number(weight_decay, "weight_decay", nonnegative=True)
        self.clip_norm = (None if clip_norm is None
                          else check_finite_number(clip_norm, "clip_norm", positive=True))
        self.clip_value = (None if clip_value is None
                           else check_finite_number(clip_value, "clip_value", positive=True))
        self.step_count = 0
        self.last_grad_norm = math.nan      # global gradient norm before clipping (when clipping)
        self._hp = np.zeros(_contract.N_HYPERPARAMETERS, np.float64)
        self._states = [np.zeros_like(net.params) for _ in range(self._n_states)]

    # ------------------------------------------------------------------ options
    @property
    def lr(self):
        """The learning rate: a number, or a schedule ``lr(step)``."""
        return self._lr

    @lr.setter
    def lr(self, value):
        if callable(value):
            self._lr = value
        else:
            self._lr = check_finite_number(value, "lr", positive=True)

    def current_lr(self) -> float:
        """The learning rate the next step will use."""
        if callable(self._lr):
            lr = self._lr(self.step_count)
            return check_finite_number(lr, f"lr (schedule at step {self.step_count})",
                                       nonnegative=True)
        return self._lr

    def _fill_hyper(self, hp):
        """Optimiser-specific entries of the hyper-parameter vector (momentum, betas, eps)."""

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """Apply one update with the gradients of the last backward pass."""
        net = self.net
        lr = self.current_lr()
        gscale = 1.0
        if self.clip_norm is not None:
            gnorm = math.sqrt(_engine.norm2(net.grads))
            self.last_grad_norm = gnorm
            if gnorm > self.clip_norm:
                gscale = self.clip_norm / (gnorm + 1e-6)
        net.apply_update(self.kind, self._hyper(lr, gscale), *self._state_pair())
        self.step_count += 1

    def _hyper(self, lr, gscale):
        """The hyper-parameter vector of the next step."""
        hp = self._hp
        hp[:] = 0.0
        hp[_LR], hp[_GSCALE] = lr, gscale
        hp[_CLIP_VALUE] = self.clip_value or 0.0
        hp[_WEIGHT_DECAY] = self.weight_decay
        self._fill_hyper(hp)
        hp[_FIRST_STEP] = 1.0 if self.step_count == 0 else 0.0
        return hp

    def _state_pair(self):
        return tuple(self._states + [None] * (2 - len(self._states)))

    def pass_update(self):
        """The next step as :meth:`vgcore.MLP.train_step` runs it inside its compiled pass:
        ``("plain", lr)`` (``params -= lr * grads``) or ``(kind, hyper, state1, state2)``, as
        :meth:`step` would apply it; the caller counts the step.  None when it cannot: with
        ``clip_norm`` the whole gradient's norm must be known before any layer steps, and a
        :meth:`step` replaced (by a subclass or on the instance) must run as it is."""
        if self.clip_norm is not None or self._step_replaced():
            return None
        return (self.kind, self._hyper(self.current_lr(), 1.0), *self._state_pair())

    def _step_replaced(self) -> bool:
        """Whether :meth:`step` is another than the ones pass_update knows how to run."""
        return type(self).step not in _FOLDABLE_STEPS or "step" in vars(self)

    def hyperparameters(self) -> dict:
        """The constructor's options besides ``lr`` (``weight_decay``, ``clip_norm``,
        ``clip_value`` and the optimiser's own), as plain numbers: ``type(opt)(net, lr=lr,
        **opt.hyperparameters())`` builds the same optimiser (checkpoints store them so)."""
        return {"weight_decay": float(self.weight_decay),
                "clip_norm": None if self.clip_norm is None else float(self.clip_norm),
                "clip_value": None if self.clip_value is None else float(self.clip_value),
                **self._own_hyperparameters()}

    def _own_hyperparameters(self) -> dict:
        return {}

    def memory_usage(self) -> int:
        """Bytes of the optimiser's state buffers and hyper-parameter vector."""
        return sum(s.nbytes for s in self._states) + self._hp.nbytes

    def zero_grad(self) -> None:
        """Set every gradient to zero (backward overwrites them; this is for manual use)."""
        self.net.grads[...] = 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The optimiser's state: step count, learning rate (when a number) and buffers."""
        return {"type": type(self).__name__, "step_count": self.step_count,
                "lr": None if callable(self._lr) else self._lr,
                "states": [s.copy() for s in self._states]}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (same optimiser type and network size)."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state: expected a {type(self).__name__} state, got "
                             f"{state.get('type')!r}")
        states = state["states"]
        if len(states) != len(self._states) or any(
                np.shape(a) != b.shape for a, b in zip(states, self._states)):
            raise ValueError("state: its buffers do not match this network's parameters")
        for dst, src in zip(self._states, states):
            dst[...] = src
        self.step_count = int(state["step_count"])
        if state.get("lr") is not None:
            self.lr = state["lr"]

    def __repr__(self):
        return f"{type(self).__name__}(lr={self._lr!r})"


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum and Nesterov momentum.

    ``buf = momentum * buf + g`` (``buf = g`` at the first step), then ``w -= lr * buf``, or with
    ``nesterov=True`` ``w -= lr * (g + momentum * buf)``; plain ``w -= lr * g`` when
    ``momentum=0``.  Plain SGD without decay or clipping takes a dedicated pass.
    """

    def __init__(self, net, lr=0.01, momentum=0.0, nesterov=False, **options):
        momentum = check_finite_number(momentum, "momentum", nonnegative=True)
        if momentum >= 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = momentum, bool(nesterov)
        self._n_states = 1 if momentum > 0 else 0
        super().__init__(net, lr, **options)

    def _fill_hyper(self, hp):
        hp[_BETA1] = self.momentum
        hp[_NESTEROV] = 1.0 if self.nesterov else 0.0

    def _own_hyperparameters(self):
        return {"momentum": float(self.momentum), "nesterov": self.nesterov}

    def _plain(self) -> bool:
        return (self.momentum == 0 and self.weight_decay == 0 and self.clip_norm is None
                and self.clip_value is None)

    def step(self) -> None:
        if self._plain():
            self.net.sgd_step(self.current_lr())        # the dedicated pass
            self.step_count += 1
            return
        super().step()

    def pass_update(self):
        if self._plain() and not self._step_replaced():
            return ("plain", self.current_lr())
        return super().pass_update()

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in (
            ("momentum", self.momentum), ("nesterov", self.nesterov),
            ("weight_decay", self.weight_decay), ("clip_norm", self.clip_norm),
            ("clip_value", self.clip_value)) if v)
        return f"SGD(lr={self._lr!r}{extra})"


class RMSprop(Optimizer):
    """RMSprop: ``s = alpha s + (1 - alpha) g^2``, ``w -= lr g / (sqrt(s) + eps)``."""

    kind = "rmsprop"
    _n_states = 1

    def __init__(self, net, lr=0.01, alpha=0.99, eps=1e-8, **options):
        self.alpha = check_finite_number(alpha, "alpha", nonnegative=True)
        if self.alpha >= 1:
            raise ValueError(f"alpha: expected a number in [0, 1), got {alpha}")
        self.eps = check_finite_number(eps, "eps", positive=True)
        super().__init__(net, lr, **options)

    def _fill_hyper(self, hp):
        hp[_BETA1], hp[_EPS] = self.alpha, self.eps

    def _own_hyperparameters(self):
        return {"alpha": float(self.alpha), "eps": float(self.eps)}


class Adagrad(Optimizer):
    """Adagrad: ``s += g^2``, ``w -= lr g / (sqrt(s) + eps)``."""

    kind = "adagrad"
    _n_states = 1

    def __init__(self, net, lr=0.01, eps=1e-10, **options):
        self.eps = check_finite_number(eps, "eps", positive=True)
        super().__init__(net, lr, **options)

    def _fill_hyper(self, hp):
        hp[_EPS] = self.eps

    def _own_hyperparameters(self):
        return {"eps": float(self.eps)}


class Adam(Optimizer):
    """Adam: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``; ``weight_decay`` is an L2 term
    added to g (see :class:`AdamW` for the decoupled form)."""

    kind = "adam"
    _n_states = 2
    _decoupled = False

    def __init__(self, net, lr=0.001, betas=(0.9, 0.999), eps=1e-8, **options):
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}") from None
        self.beta1 = check_finite_number(b1, "betas[0]", nonnegative=True)
        self.beta2 = check_finite_number(b2, "betas[1]", nonnegative=True)
        for name, b in (("betas[0]", self.beta1), ("betas[1]", self.beta2)):
            if b >= 1:
                raise ValueError(f"{name}: expected a number in [0, 1), got {b}")
        self.eps = check_finite_number(eps, "eps", positive=True)
        super().__init__(net, lr, **options)

    def _fill_hyper(self, hp):
        t = self.step_count + 1
        hp[_BETA1], hp[_BETA2], hp[_EPS] = self.beta1, self.beta2, self.eps
        hp[_BIAS_CORR1] = 1.0 - self.beta1 ** t
        hp[_BIAS_CORR2] = 1.0 - self.beta2 ** t
        hp[_DECOUPLED] = 1.0 if self._decoupled else 0.0

    def _own_hyperparameters(self):
        return {"eps": float(self.eps), "betas": [float(self.beta1), float(self.beta2)]}


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w -= lr * weight_decay * w`` beside the Adam step
    (default ``weight_decay=0.01``)."""

    _decoupled = True

    def __init__(self, net, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 **options):
        super().__init__(net, lr, betas=betas, eps=eps, weight_decay=weight_decay, **options)


# the steps pass_update knows how to run inside train_step's compiled pass
_FOLDABLE_STEPS = (Optimizer.step, SGD.step)

"""Curvature of the loss: Hessian-vector products, the top Hessian eigenvalue (sharpness), and a
learning rate set from it.

The products and the eigenvalue are computed in :mod:`vgcore.measure.hessian` (and exported
here); this module adds their tracking during training.  Everything is computed by the engine
itself: a Hessian-vector product is the central difference of two engine gradients along
``v``,

    H v ~= (g(w + eps v) - g(w - eps v)) / (2 eps),

``g`` the gradient of the loss over the batch ``(X, y)`` and ``w`` the flat parameter vector
``net.params``.  :func:`top_eigenvalue` runs power iteration on those products,
:class:`Sharpness` tracks the result during training (warm-starting each estimate from the
previous eigenvector) and :class:`CurvatureLR` turns it into a step size ``c / lambda_max``::

    sharp = Sharpness(every=50, iters=20, loss="cross_entropy")
    policy = CurvatureLR(c=1.0, max_lr=1.0)
    opt = vg.optim.SGD(net, lr=0.01)
    for step in range(n_steps):
        net.train_step(X, y, "cross_entropy")      # gradients at w
        sharp.update(net, X, y, step)              # every 50 steps; grads are kept
        opt.lr = policy(sharp)
        opt.step()

Accuracy
--------
The step ``eps`` balances the truncation error of the central difference (``O(eps^2)``, zero
when the loss is quadratic in ``w``) against rounding: the perturbed parameters
``w +- eps v`` are rounded to the network's dtype, an error of about ``u ||w||`` (``u`` the
unit roundoff of the dtype), and the gradients carry rounding errors of their own.  The
default takes the minimiser of ``u (1 + ||w||) / h + h^2``, up to a constant, for the length
``h = eps ||v||`` of the perturbation::

    eps = (u (1 + ||w||))^(1/3) / ||v||         (2-norms; u^(1/3) = 6.1e-6 in float64,
                                                  4.9e-3 in float32)

Measured against Richardson-extrapolated float64 references on tanh and gelu networks of 150
to 20,000 parameters (cross-entropy, after some training) and against the exact Hessian of a
linear layer under the squared error: float64 products are accurate to 3e-11..2e-9 relative to
``||H v||`` (the worst along the top eigenvector of the sharpest network, where the third
derivative is largest); float32 products to 2e-5..1e-3 (2e-5 on the quadratic, where only
rounding remains).  The float32 estimate of ``lambda_max`` is then good to about 1e-3 at best.
Use float64 networks for curvature: copy the parameters into a float64 twin
(``twin.params[...] = net.params``) when training runs in float32.

Side effects
------------
Every function here leaves ``net.params`` bit-identical and ``net.grads`` (so
``weight_grads`` and ``bias_grads``) as it found them, also when an error is raised.  The
passes run with gradient-flow measurements off (they would describe the perturbed
parameters), and the measurement setting is restored afterwards; so until the next forward and
backward pass, ``net.gradient_flow()`` raises instead of returning the flow of the training
step: read or record the flow (``Recorder.record``) *before* calling these functions.  The
network's last forward pass becomes the curvature batch (at perturbed parameters), so call
``forward`` again before a ``backward`` of your own; a batch size not seen before gets its own
workspace and may displace a cached one.
"""
from __future__ import annotations

import numbers

import numpy as np

from vgcore.core._validation import check_finite_number, check_positive_int
from vgcore.measure.hessian import (_check_loss, _check_net, default_eps,
                                    hessian_vector_product, loss_and_grad, top_eigenvalue)

__all__ = ["loss_and_grad", "hessian_vector_product", "top_eigenvalue", "Sharpness",
           "SharpnessCallback", "CurvatureLR", "default_eps"]


class Sharpness:
    """Tracks the top Hessian eigenvalue (the sharpness) of the loss during training.

    Every ``every`` steps, :meth:`update` runs :func:`top_eigenvalue` on the batch it is given
    (or a random subset of ``batch`` rows of it), warm-started from the previous eigenvector,
    and appends the result to the history.

    Parameters
    ----------
    every : int >= 1
        Steps between two estimates; default 100.  The first call to :meth:`update` always
        estimates, then the first call with ``step >= last + every``.
    iters : int >= 1
        Most Hessian-vector products per estimate (see :func:`top_eigenvalue`); default 20.
    batch : int >= 1, optional
        Estimate on a random subset of this many rows of the ``X`` passed to :meth:`update`
        (drawn afresh each time); None (default) uses all of it.
    loss : str or callable
        The loss, as in :func:`loss_and_grad`; default ``"cross_entropy"``.
    tol : float >= 0
        Stopping tolerance of the power iteration; default 1e-4.
    seed : int or None
        Seeds the first start vector and the row subsets.

    Attributes
    ----------
    steps : ndarray of int64
        The steps at which an estimate was made.
    values : ndarray of float64
        The estimates (largest-magnitude eigenvalue, with its sign).
    iterations : ndarray of int64
        Hessian-vector products each estimate took.
    value : float
        The latest estimate (NaN before the first).
    vector : ndarray or None
        The latest eigenvector (the next warm start).

    Notes
    -----
    Call :meth:`update` after the step's ``train_step`` (the gradients it computed are kept for
    the optimiser) and after reading or recording the step's gradient flow (see the module's
    *Side effects*).  Each estimate costs up to ``2 * iters`` forward and backward passes on
    the curvature batch.
    """

    def __init__(self, every=100, iters=20, batch=None, loss="cross_entropy", tol=1e-4,
                 seed=0):
        self.every = check_positive_int(every, "every")
        self.iters = check_positive_int(iters, "iters")
        self.batch = None if batch is None else check_positive_int(batch, "batch")
        _check_loss(loss)
        self.loss = loss
        self.tol = check_finite_number(tol, "tol", nonnegative=True)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget the history and the warm-start vector."""
        self._rng = np.random.default_rng(self.seed)
        self._steps: list[int] = []
        self._values: list[float] = []
        self._iters: list[int] = []
        self.vector = None

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._steps, dtype=np.int64)

    @property
    def values(self) -> np.ndarray:
        return np.asarray(self._values, dtype=np.float64)

    @property
    def iterations(self) -> np.ndarray:
        return np.asarray(self._iters, dtype=np.int64)

    @property
    def value(self) -> float:
        return self._values[-1] if self._values else float("nan")

    def due(self, step) -> bool:
        """Whether :meth:`update` at ``step`` would make an estimate."""
        return not self._steps or step >= self._steps[-1] + self.every

    def update(self, net, X, y, step, *, force=False) -> float:
        """Estimate the sharpness at ``step`` when it is due; return the latest estimate.

        Parameters
        ----------
        net : vgcore.MLP
        X, y
            The batch (as in :func:`loss_and_grad`); with ``batch`` set, a random subset of its
            rows is used.
        step : int >= 0
            The training step; not smaller than the last step estimated.
        force : bool, keyword-only
            Estimate even if the step is not due.

        Returns
        -------
        float
            The latest estimate (this step's when one was made).
        """
        _check_net(net)
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step: expected an integer, got {type(step).__name__}")
        step = int(step)
        if step < 0:
            raise ValueError(f"step: expected an integer >= 0, got {step}")
        if self._steps and step < self._steps[-1]:
            raise ValueError(f"step: expected >= {self._steps[-1]} (the last step estimated), "
                             f"got {step}; call reset() to start a new run")
        if not (force or self.due(step)):
            return self.value
        if self.batch is not None and isinstance(X, np.ndarray) and X.ndim == 2 \
                and self.batch < X.shape[0]:
            if not isinstance(y, np.ndarray) or y.shape[:1] != X.shape[:1]:
                raise ValueError(f"y: expected {X.shape[0]} rows like X, got "
                                 f"{getattr(y, 'shape', type(y).__name__)}")
            idx = np.sort(self._rng.choice(X.shape[0], self.batch, replace=False))
            X, y = X[idx], y[idx]
        v0 = self.vector if (self.vector is not None
                             and self.vector.shape == (net.n_params,)) else None
        seed = None if self.seed is None else int(self._rng.integers(2**31))
        lam, vec, k = top_eigenvalue(net, X, y, loss=self.loss, iters=self.iters, tol=self.tol,
                                     seed=seed, v0=v0)
        self.vector = vec
        self._steps.append(step)
        self._values.append(lam)
        self._iters.append(k)
        return lam

    def __repr__(self):
        return (f"Sharpness(every={self.every}, iters={self.iters}, batch={self.batch}, "
                f"estimates={len(self._steps)}, value={self.value:.6g})")


class CurvatureLR:
    """A learning rate set from the sharpness: ``lr = c / lambda_max``, clipped.

    Use it with any optimiser that has a float ``lr``::

        opt.lr = policy(sharpness)      # a Sharpness tracker, or a number

    Parameters
    ----------
    c : float > 0
        The fraction of ``1 / lambda_max``; default 1.
    max_lr : float > 0, optional
        Upper bound on the learning rate, and the rate returned when ``lambda_max`` is 0 or
        not known yet (NaN).  None (default): no bound, and such a ``lambda_max`` raises.
    min_lr : float >= 0
        Lower bound on the learning rate; default 0.

    Notes
    -----
    On a quadratic loss with Hessian ``H``, gradient descent multiplies the error along an
    eigenvector of eigenvalue ``lambda`` by ``1 - lr lambda`` per step, so it is stable iff
    ``lr < 2 / lambda_max``.  ``c = 1`` (``lr = 1 / lambda_max``) is the classic choice: it
    removes the error along the top eigenvector in one step and shrinks every other direction
    monotonically; ``c`` near 2 is at the edge of stability, and ``c > 2`` diverges.  On a
    non-quadratic loss the same rule is a local one, and with minibatches the sharpness of the
    batch the estimate was made on.

    When the estimate is negative (negative curvature dominates), ``|lambda|`` still bounds
    every positive eigenvalue, so ``c / |lambda|`` is used, a conservative rate.
    """

    def __init__(self, c=1.0, max_lr=None, min_lr=0.0):
        self.c = check_finite_number(c, "c", positive=True)
        self.max_lr = None if max_lr is None else check_finite_number(max_lr, "max_lr",
                                                                      positive=True)
        self.min_lr = check_finite_number(min_lr, "min_lr", nonnegative=True)
        if self.max_lr is not None and self.min_lr > self.max_lr:
            raise ValueError(f"min_lr: expected <= max_lr ({self.max_lr}), got {self.min_lr}")

    def __call__(self, sharpness) -> float:
        """The learning rate for ``sharpness`` (a :class:`Sharpness` or a number).

        Raises
        ------
        ValueError
            When ``lambda_max`` is 0 or NaN (no estimate yet) and ``max_lr`` is None.
        """
        if isinstance(sharpness, Sharpness):
            lam = sharpness.value
        elif isinstance(sharpness, numbers.Real) and not isinstance(sharpness, (bool, np.bool_)):
            lam = float(sharpness)
        else:
            raise TypeError(f"sharpness: expected a Sharpness tracker or a number, got "
                            f"{type(sharpness).__name__}")
        if np.isinf(lam):
            raise ValueError(f"sharpness: expected a finite lambda_max, got {lam}")
        mag = abs(lam)
        if np.isnan(mag) or mag == 0:
            if self.max_lr is None:
                what = "no estimate yet (NaN)" if np.isnan(mag) else "0"
                raise ValueError(f"sharpness: expected a nonzero lambda_max, got {what}; "
                                 f"set max_lr to give a rate for this case")
            return self.max_lr
        lr = self.c / mag
        if self.max_lr is not None:
            lr = min(lr, self.max_lr)
        return max(lr, self.min_lr)

    def __repr__(self):
        return f"CurvatureLR(c={self.c}, max_lr={self.max_lr}, min_lr={self.min_lr})"


class SharpnessCallback:
    """Track the sharpness during :func:`vgcore.fit`, and optionally set the step size from it.

    Parameters
    ----------
    X, y : arrays
        A fixed probe batch (the network's dtype; labels or targets as for the loss).
    sharpness : Sharpness, optional
        The tracker (default ``Sharpness(every=100)``); its history is the record.
    lr_policy : CurvatureLR, optional
        When given, after each estimate ``trainer.optimizer.lr = lr_policy(sharpness)``.

    Used as ``vg.fit(net, X, y, callbacks=[SharpnessCallback(Xp, yp, lr_policy=CurvatureLR())])``.
    Each estimate runs after the step's recorder (the probe's passes replace the network's last
    pass, so read ``net.gradient_flow()`` before, as the Recorder does).
    """

    def __init__(self, X, y, sharpness=None, lr_policy=None):
        if sharpness is not None and not isinstance(sharpness, Sharpness):
            raise TypeError(f"sharpness: expected a vgcore.curvature.Sharpness, got "
                            f"{type(sharpness).__name__}")
        if lr_policy is not None and not isinstance(lr_policy, CurvatureLR):
            raise TypeError(f"lr_policy: expected a vgcore.curvature.CurvatureLR, got "
                            f"{type(lr_policy).__name__}")
        self.X, self.y = X, y
        self.sharpness = Sharpness() if sharpness is None else sharpness
        self.lr_policy = lr_policy

    def on_batch_end(self, step, loss, trainer):
        if not self.sharpness.due(step):
            return False
        self.sharpness.update(trainer.net, self.X, self.y, step)
        if self.lr_policy is not None:
            trainer.optimizer.lr = self.lr_policy(self.sharpness)
        return False

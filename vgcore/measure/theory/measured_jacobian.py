"""The input-output Jacobian of a real network: ``J = dy/dx`` computed with the engine's own
backward pass (exact to rounding), and its singular values.  What
:func:`vgcore.theory.predicted_jacobian_spectrum` (:mod:`vgcore.theory.spectrum`) predicts is
set beside these with :meth:`SpectrumPrediction.compare`; importable from
:mod:`vgcore.theory.spectrum` as well (where they were first).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["jacobian", "jacobian_singular_values", "JacobianSpectrum"]


def _check_net(net, name="net"):
    needed = ("forward", "backward", "sizes", "dtype", "grads", "params")
    if not all(hasattr(net, a) for a in needed):
        raise TypeError(f"{name}: expected a vgcore.MLP, got {type(net).__name__}")
    if getattr(net, "training", False):
        batch_norm = any(k == "batch" for k in getattr(net, "norms", ()))
        dropout = any(p > 0 for p in getattr(net, "dropouts", ()))
        if batch_norm or dropout:
            what = "batch norm couples the examples of a batch" if batch_norm else \
                "dropout would draw a different mask for every row of the Jacobian"
            raise ValueError(f"{name}: the network is in training mode and {what}, so an "
                             f"input-output Jacobian of one example is not defined; call "
                             f"net.eval_mode() first")


def _check_rows(x, name, net, *, one_row):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    n_in = net.sizes[0]
    if x.dtype != net.dtype:
        raise TypeError(f"{name}: expected dtype {net.dtype.name} (the network's dtype), got "
                        f"{x.dtype}")
    if one_row:
        if not (x.shape == (n_in,) or x.shape == (1, n_in)):
            raise ValueError(f"{name}: expected shape ({n_in},) or (1, {n_in}), got {x.shape}")
        rows = x.reshape(1, n_in)
    else:
        if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] == 0:
            raise ValueError(f"{name}: expected shape (n, {n_in}) with n >= 1, got {x.shape}")
        rows = x
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf entries")
    return rows


def _jacobians(net, rows):
    """J for each row of ``rows`` (n, n_in), shape (n, n_out, n_in); restores net.grads."""
    n, n_in = rows.shape
    n_out = net.sizes[-1]
    per_call = max(1, 4096 // n_out)
    eye = np.eye(n_out, dtype=net.dtype)
    out = np.empty((n, n_out, n_in), dtype=net.dtype)
    saved = net.grads.copy()
    try:
        for start in range(0, n, per_call):
            chunk = rows[start:start + per_call]
            k = chunk.shape[0]
            batch = np.ascontiguousarray(np.repeat(chunk, n_out, axis=0), dtype=net.dtype)
            net.forward(batch)
            dout = np.ascontiguousarray(np.tile(eye, (k, 1)))
            dX = net.backward(dout)
            out[start:start + k] = dX.reshape(k, n_out, n_in)
    finally:
        net.grads[...] = saved
    return out


def jacobian(net, x):
    """The input-output Jacobian ``J[i, j] = d out_i / d x_j`` of a network at one input.

    Computed by the engine itself: one forward pass on ``n_out`` copies of ``x`` and one
    backward pass with ``dout`` the ``n_out x n_out`` identity, so that row ``i`` of ``dL/dX``
    is row ``i`` of ``J`` (exact to rounding, no finite differences).

    Parameters
    ----------
    net : vgcore.MLP
    x : ndarray of shape (n_in,) or (1, n_in), the network's dtype, finite

    Returns
    -------
    ndarray of shape (n_out, n_in), the network's dtype
        A new array.

    Notes
    -----
    ``net.params`` are not touched and ``net.grads`` (so ``weight_grads``, ``bias_grads``) are
    saved and restored.  The network's last forward pass becomes the Jacobian's batch (and a
    workspace of ``n_out`` rows may displace a cached one): call ``forward`` again before the
    next ``backward``.
    """
    _check_net(net)
    rows = _check_rows(x, "x", net, one_row=True)
    return _jacobians(net, rows)[0]


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian at several inputs.

    Attributes
    ----------
    singular_values : ndarray (n, min(n_in, n_out))
        Per input (row), in decreasing order.
    mean_squared : ndarray (n,)
        Mean squared singular value ``||J||_F^2 / min(n_in, n_out)`` per input (1 for a
        network that is dynamically isometric on average).
    max, min : ndarray (n,)
        Largest and smallest singular value per input.
    """

    singular_values: np.ndarray
    mean_squared: np.ndarray
    max: np.ndarray
    min: np.ndarray

    @property
    def condition(self) -> np.ndarray:
        """``max / min`` per input (inf where the smallest singular value is 0)."""
        with np.errstate(divide="ignore"):
            return self.max / self.min


def jacobian_singular_values(net, X):
    """Singular values of the Jacobian of ``net`` at each row of ``X`` (float64 SVD).

    Parameters
    ----------
    net : vgcore.MLP
    X : ndarray of shape (n, n_in), the network's dtype, finite

    Returns
    -------
    JacobianSpectrum

    Notes
    -----
    Jacobians come from :func:`jacobian`'s method, several inputs per engine call (batches
    of at most ``max(n_out, 4096)`` rows); the same side effects apply.
    """
    _check_net(net)
    rows = _check_rows(X, "X", net, one_row=False)
    J = _jacobians(net, rows).astype(np.float64)
    sv = np.linalg.svd(J, compute_uv=False)
    return JacobianSpectrum(sv, np.mean(sv * sv, axis=1), sv[:, 0].copy(), sv[:, -1].copy())

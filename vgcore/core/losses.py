"""Loss functions, each returning ``(loss, dL/d(input))``, computed in compiled code.

Reductions: ``cross_entropy`` is the mean over the batch of the per-sample loss;
``mse`` and ``binary_cross_entropy`` are the mean over all ``batch * outputs`` elements
(the batch mean of the per-sample mean), as PyTorch's ``MSELoss`` and ``BCEWithLogitsLoss``.

============================  ==============================================  ======================
function                      loss                                            gradient
============================  ==============================================  ======================
cross_entropy(z, y)           mean_i [logsumexp(z_i) - z_i[y_i]]              (softmax(z) - onehot(y)) / n
mse(p, t)                     mean_ij (p_ij - t_ij)^2                         2 (p - t) / (n m)
binary_cross_entropy(z, t)    mean_ij [max(z,0) - z t + log1p(exp(-|z|))]     (sigmoid(z) - t) / (n m)
============================  ==============================================  ======================

The softmax is fused into the cross-entropy and shifted by the row maximum (log-sum-exp), and
the binary cross-entropy takes logits, so neither overflows.  Losses are accumulated in float64.
"""
from __future__ import annotations

import numpy as np

from vgcore import _engine
from vgcore.core._validation import check_float_matrix

__all__ = ["cross_entropy", "mse", "binary_cross_entropy", "get", "LOSSES"]


def _grad_buffer(grad_out, like, name="grad_out"):
    if grad_out is None:
        return np.empty_like(like)
    check_float_matrix(grad_out, name, like.dtype, rows=like.shape[0], cols=like.shape[1],
                       finite=False, writable=True)
    return grad_out


def _float_input(x, name):
    if isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64):
        return check_float_matrix(x, name, x.dtype)
    dtype = getattr(x, "dtype", None)
    if isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected dtype float32 or float64, got {dtype}")
    raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")


def _labels(labels, n, n_classes, name="labels"):
    """Integer class labels, one per row: int64, contiguous and aligned labels as they are,
    others as such a copy."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of integer class labels, got "
                        f"{type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels for loss='cross_entropy', got "
                        f"dtype {labels.dtype}")
    if labels.ndim == 0 or labels.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one label per sample), got shape "
                         f"{labels.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class labels, shape ({n},), got "
                         f"shape {labels.shape}")
    if labels.dtype.kind == "u" and labels.dtype.itemsize == 8 and labels.size \
            and int(labels.max()) >= n_classes:
        bad = int(np.argmax(labels >= n_classes))       # before int64 could wrap it
        raise ValueError(f"{name}: expected class labels in [0, {n_classes - 1}] "
                         f"({n_classes} outputs), got {int(labels[bad])} at position {bad}")
    if labels.dtype != np.int64 or not labels.flags.c_contiguous or not labels.flags.aligned:
        # int64, contiguous and aligned labels are used as they are; others are copied
        labels = np.require(labels, dtype=np.int64, requirements=["C", "A"])
    bad = _engine.first_bad_label(labels, n_classes)
    if bad >= 0:
        raise ValueError(f"{name}: expected class labels in [0, {n_classes - 1}] "
                         f"({n_classes} outputs), got {int(labels[bad])} at position {bad}")
    return labels


def cross_entropy(logits, labels, *, grad_out=None):
    """Softmax cross-entropy, mean over the batch.

    Parameters
    ----------
    logits : ndarray (batch, n_classes), float32 or float64, finite
    labels : ndarray (batch,), integer class indices in ``[0, n_classes)``
        (int64 is used as is; other integer dtypes are converted, which allocates)
    grad_out : ndarray like ``logits``, optional
        Where to write the gradient (no allocation); a new array otherwise.  It may be
        ``logits`` itself.

    Returns
    -------
    loss : float
    grad : ndarray (batch, n_classes), dL/dlogits
    """
    logits = _float_input(logits, "logits")
    labels = _labels(labels, logits.shape[0], logits.shape[1])
    grad = _grad_buffer(grad_out, logits)
    return _engine.softmax_cross_entropy(logits, labels, grad), grad


def _target(target, like, name):
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(target).__name__}")
    if target.shape != like.shape:
        raise ValueError(f"{name}: expected shape {like.shape} (the predictions' shape), got "
                         f"{target.shape}")
    return check_float_matrix(target, name, like.dtype, what="the predictions' dtype")


def mse(pred, target, *, grad_out=None):
    """Mean squared error, mean over all elements: ``mean((pred - target)**2)``.

    Parameters
    ----------
    pred, target : ndarray (batch, m), the same float dtype, finite
    grad_out : ndarray like ``pred``, optional

    Returns
    -------
    loss : float
    grad : ndarray (batch, m), dL/dpred = 2 (pred - target) / (batch m)
    """
    pred = _float_input(pred, "pred")
    target = _target(target, pred, "target")
    grad = _grad_buffer(grad_out, pred)
    return _engine.mean_squared_error(pred, target, grad), grad


def binary_cross_entropy(logits, targets, *, grad_out=None):
    """Binary cross-entropy on logits (sigmoid fused), mean over all elements.

    Parameters
    ----------
    logits : ndarray (batch, m), float32 or float64, finite
    targets : ndarray (batch, m), same dtype, values in [0, 1] (soft labels allowed)
    grad_out : ndarray like ``logits``, optional

    Returns
    -------
    loss : float
    grad : ndarray (batch, m), dL/dlogits = (sigmoid(logits) - targets) / (batch m)
    """
    logits = _float_input(logits, "logits")
    targets = _target(targets, logits, "targets")
    lo, hi = float(targets.min()), float(targets.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"targets: expected values in [0, 1], got values in [{lo}, {hi}]")
    grad = _grad_buffer(grad_out, logits)
    return _engine.binary_cross_entropy_logits(logits, targets, grad), grad


LOSSES = {
    "cross_entropy": cross_entropy,
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy,
}


def check_targets(fn, y, n, n_out, dtype, *, name=None, data=False):
    """Check labels or targets for the loss ``fn`` before any pass runs (so a rejected step
    changes nothing), by one rule for :meth:`vgcore.MLP.train_step` (a batch) and
    :func:`vgcore.fit` / :func:`vgcore.evaluate` (a data set).

    ``cross_entropy``: integer class labels, one per row, in ``[0, n_out)``.  ``mse`` and
    ``binary_cross_entropy``: float targets of the network's dtype, shape ``(n, n_out)``,
    finite, and in ``[0, 1]`` for the latter.  Custom loss functions check their own.

    Parameters
    ----------
    name : str, optional
        The argument's name in messages (default the loss's own: ``labels``, ``target``,
        ``targets``).
    data : bool
        A data set rather than a batch: any memory layout is accepted (and copied), and a
        network with one output takes targets of shape ``(n,)``.

    Returns
    -------
    ndarray
        The targets as the loss takes them (int64 labels; contiguous, aligned targets): the
        array itself when it already is, else a copy.
    """
    if fn is cross_entropy:
        return _labels(y, n, n_out, name or "labels")
    if fn is mse or fn is binary_cross_entropy:
        kind = "binary_cross_entropy" if fn is binary_cross_entropy else "mse"
        name = name or ("targets" if fn is binary_cross_entropy else "target")
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(y).__name__}")
        if y.dtype != dtype:
            raise TypeError(f"{name}: expected float targets of dtype {np.dtype(dtype).name} "
                            f"(the network's dtype) for loss={kind!r}, got dtype {y.dtype}")
        if data:
            if y.ndim == 1 and n_out == 1 and y.shape[0] == n:
                y = y.reshape(n, 1)
            y = np.require(y, requirements=["C", "A"])
        if y.shape != (n, n_out):
            raise ValueError(f"{name}: expected shape ({n}, {n_out}) (samples, outputs) for "
                             f"loss={kind!r}, got {y.shape}")
        t = check_float_matrix(y, name, dtype, what="the network's dtype")
        if fn is binary_cross_entropy:
            lo, hi = float(t.min()), float(t.max())
            if lo < 0 or hi > 1:
                raise ValueError(f"{name}: expected targets in [0, 1] for "
                                 f"loss='binary_cross_entropy', got values in [{lo}, {hi}]")
        return t
    return np.ascontiguousarray(y) if data else y


def get(name):
    """A loss function by name (or the function itself)."""
    if callable(name):
        return name
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss: unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name]

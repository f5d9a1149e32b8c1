"""Loss and accuracy of a network on a data set, in batches, without gradients
(:func:`evaluate`, and the trainer's per-epoch validation); the data-set checks and batch
buffers :func:`vgcore.fit` shares.

Accuracy is defined for ``cross_entropy`` (the arg-max of the logits equals the label) and
``binary_cross_entropy`` (``logit > 0`` agrees with ``target > 0.5``, over all outputs); for
other losses it is not computed.
"""
from __future__ import annotations

import numpy as np

from vgcore.core import losses as _losses
from vgcore.core._validation import check_data_matrix, check_network, check_positive_int

__all__ = ["evaluate"]


def set_training(net, on):
    """Put a network that has training and evaluation modes (batch norm, dropout) into the given
    mode; returns the mode it was in, or None for a network without modes."""
    if not hasattr(net, "training"):
        return None
    was = bool(net.training)
    if was != on:
        (net.train_mode if on else net.eval_mode)()
    return was


def loss_kind(loss):
    """``(name, function)`` of a loss given by name or function (``"custom"`` for others)."""
    fn = _losses.get(loss)
    for name, f in _losses.LOSSES.items():
        if fn is f:
            return name, fn
    return "custom", fn


def check_y(y, net, fn, n, name):
    """The targets in the form the loss takes (int64 labels (n,) or floats (n, n_out)): the
    rule of :func:`vgcore.losses.check_targets`, for a data set."""
    if isinstance(y, np.ndarray) and y.ndim >= 1 and y.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one per sample of X), got shape {y.shape}")
    return _losses.check_targets(fn, y, n, net.sizes[-1], net.dtype, name=name, data=True)


class Buffers:
    """Everything one batch size needs, allocated once."""

    __slots__ = ("X", "y", "grad", "pred", "hit", "hit2")

    def __init__(self, b, net, y_like, kind, accuracy, gather):
        n_out = net.sizes[-1]
        self.X = np.empty((b, net.sizes[0]), net.dtype) if gather else None
        self.y = np.empty((b,) + y_like.shape[1:], y_like.dtype) if gather else None
        self.grad = np.empty((b, n_out), net.dtype)
        self.pred = self.hit = self.hit2 = None
        if accuracy and kind == "cross_entropy":
            self.pred = np.empty(b, np.int64)
            self.hit = np.empty(b, bool)
        elif accuracy and kind == "binary_cross_entropy":
            self.hit = np.empty((b, n_out), bool)
            self.hit2 = np.empty((b, n_out), bool)


def count_correct(out, yb, buf, kind) -> int:
    if kind == "cross_entropy":
        np.argmax(out, axis=1, out=buf.pred)
        np.equal(buf.pred, yb, out=buf.hit)
    else:
        np.greater(out, 0, out=buf.hit)
        np.greater(yb, 0.5, out=buf.hit2)
        np.equal(buf.hit, buf.hit2, out=buf.hit)
    return int(np.count_nonzero(buf.hit))


class Evaluator:
    """Batched loss and accuracy with buffers kept between calls (for per-epoch validation)."""

    def __init__(self, net, kind, fn, accuracy, batch_size):
        self.net, self.kind, self.fn = net, kind, fn
        self.accuracy = accuracy and kind in ("cross_entropy", "binary_cross_entropy")
        self.batch_size = batch_size
        self._bufs = {}

    def __call__(self, X, y) -> dict:
        net, n = self.net, X.shape[0]
        per_row = 1 if self.kind == "cross_entropy" else net.sizes[-1]
        total = 0.0
        correct = 0
        was_measuring = net.measure
        if was_measuring:
            net.measure = False          # nothing to measure without a backward pass
        was_training = set_training(net, False)
        try:
            for s in range(0, n, self.batch_size):
                e = min(s + self.batch_size, n)
                b = e - s
                buf = self._bufs.get(b)
                if buf is None:
                    buf = self._bufs[b] = Buffers(b, net, y, self.kind, self.accuracy, False)
                out = net.forward(X[s:e])
                yb = y[s:e]
                if self.accuracy:
                    correct += count_correct(out, yb, buf, self.kind)
                value, _ = self.fn(out, yb, grad_out=buf.grad)
                total += float(value) * b
        finally:
            if was_training:
                set_training(net, True)
            if was_measuring:
                net.measure = True
        res = {"loss": total / n}
        if self.accuracy:
            res["accuracy"] = correct / (n * per_row)
        return res


def evaluate(net, X, y, loss="cross_entropy", batch_size=1024) -> dict:
    """The loss (and accuracy) of ``net`` on a data set, in batches, without gradients.

    Parameters
    ----------
    net : vgcore.MLP
    X : ndarray (samples, sizes[0]) of the network's dtype, finite
        A C-contiguous X is read in slices; another layout is copied once.
    y : ndarray
        Integer labels (samples,) for ``cross_entropy``; float targets of the network's dtype,
        (samples, sizes[-1]) (or (samples,) with one output), for ``mse`` and
        ``binary_cross_entropy`` (in [0, 1]).
    loss : str or callable
        A name of :mod:`vgcore.losses` or a function ``fn(out, y, grad_out=) -> (loss, grad)``.
    batch_size : int, >= 1

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float}``: the mean loss over the samples (for ``mse`` and
        ``binary_cross_entropy`` the mean over all outputs too, as the losses define it), and
        the accuracy (see the module docstring); no ``"accuracy"`` for other losses.

    Notes
    -----
    Measurements are switched off during the passes and back on after, so a following
    :meth:`vgcore.MLP.gradient_flow` needs a new training step.  A network with training and
    evaluation modes (``train_mode()`` / ``eval_mode()``) is evaluated in evaluation mode and
    put back in the mode it was in.
    """
    check_network(net)
    kind, fn = loss_kind(loss)
    batch_size = check_positive_int(batch_size, "batch_size")
    X = np.require(check_data_matrix(X, "X", net.dtype, net.sizes[0]),
                   requirements=["C", "A"])                      # contiguous, aligned
    y = check_y(y, net, fn, X.shape[0], "y")
    return Evaluator(net, kind, fn, True, batch_size)(X, y)

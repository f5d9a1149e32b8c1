"""The training loop: mini-batches, validation, early stopping, callbacks, checkpoints.

::

    import vgcore as vg
    from vgcore.train.trainer import fit, evaluate

    net = vg.MLP([2, 64, 64, 3], activation="tanh", init="glorot_uniform", seed=0)
    hist = fit(net, X, y, optimizer=vg.optim.Adam(net, lr=1e-3), epochs=20, batch_size=64,
               validation_split=0.2, early_stopping=3, restore_best=True,
               recorder=vg.Recorder(schedule="log"), checkpoint="run.npz")
    hist["val_loss"], evaluate(net, X_test, y_test)

Each step is ``net.forward``, the loss (written into a preallocated gradient buffer),
``net.backward`` and ``optimizer.step()``: the same computation as :meth:`vgcore.MLP.train_step`.
Mini-batches are gathered with ``np.take(X, idx, axis=0, out=buffer)`` into buffers allocated
once per batch size (the full batch size and the last, partial batch), so after the first epoch
a step allocates next to nothing; the order is a permutation per epoch drawn from
``np.random.default_rng(seed)``, so the same seed gives bit-identical training.

Logged values (one entry per epoch in the :class:`History`):

``loss``, ``accuracy``
    The mean over the epoch's training samples of the loss and accuracy of each mini-batch,
    measured during the step (before its update), as Keras reports them: no second pass.
``val_loss``, ``val_accuracy``
    :func:`evaluate` on the validation data after the epoch.
``lr``
    The learning rate of the epoch's first step (``optimizer.current_lr()``).
``time``
    Seconds the epoch took (training and validation; checkpoints not included).

Accuracy is defined for ``cross_entropy`` (the arg-max of the logits equals the label) and
``binary_cross_entropy`` (``logit > 0`` agrees with ``target > 0.5``, over all outputs); for
other losses it is not computed.
"""
from __future__ import annotations

import math
import numbers
import os
import time

import numpy as np

from vgcore import _engine

from vgcore.core import losses as _losses
from vgcore.core.errors import NonFiniteError
from vgcore.train._progress import KEY_ORDER as _KEY_ORDER
from vgcore.train._progress import make_progress

__all__ = ["fit", "evaluate", "History", "Trainer", "EarlyStopping"]

_METRICS = ("loss", "accuracy")
_CALLBACK_METHODS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end",
                     "on_train_end")


# ============================================================================ History
class History:
    """Per-epoch values of a training run: a dict of lists.

    ``hist["loss"]`` is the list of the epochs' training losses; the keys are those of the
    logged values (see the module docstring) that the run computed.  :meth:`as_dict` gives a
    plain dict (for :func:`vgcore.checkpoint.save`, pandas or JSON).

    Attributes
    ----------
    best_epoch : int or None
        The epoch (0-based) with the best value of :attr:`monitor`, or None before any epoch.
    stopped_epoch : int or None
        The epoch after which training stopped early (early stopping or a callback), or None
        when it ran all its epochs.
    monitor : str or None
        The value that defined the best epoch (``"val_loss"`` when there is validation data,
        ``"loss"`` otherwise, or the early-stopping monitor).
    """

    def __init__(self, data=None):
        self._data: dict[str, list] = {}
        self._n = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self.monitor = None
        if data is not None:
            if not isinstance(data, dict):
                raise TypeError(f"data: expected a dict of lists, got {type(data).__name__}")
            lengths = {len(v) for v in data.values()}
            if len(lengths) > 1:
                raise ValueError(f"data: expected lists of one length (one value per epoch), "
                                 f"got lengths {sorted(lengths)}")
            self._data = {str(k): [math.nan if x is None else float(x) for x in v]
                          for k, v in data.items()}
            self._n = lengths.pop() if lengths else 0

    @classmethod
    def from_dict(cls, data) -> "History":
        """A History holding ``data`` (``{name: [value per epoch]}``, e.g. from a checkpoint)."""
        return cls(data)

    def append(self, logs: dict) -> None:
        """Add one epoch's values; keys missing on either side are padded with NaN."""
        for k, v in logs.items():
            if k not in self._data:
                self._data[k] = [math.nan] * self._n
            self._data[k].append(float(v))
        self._n += 1
        for v in self._data.values():
            if len(v) < self._n:
                v.append(math.nan)

    def as_dict(self) -> dict:
        """``{name: list of float}``, copies, keys in a stable order."""
        keys = [k for k in _KEY_ORDER if k in self._data]
        keys += sorted(k for k in self._data if k not in _KEY_ORDER)
        return {k: list(self._data[k]) for k in keys}

    def keys(self):
        return self.as_dict().keys()

    def __getitem__(self, key) -> list:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"{key!r}: not in this history; it has {list(self.keys())}") from None

    def __contains__(self, key) -> bool:
        return key in self._data

    def __len__(self) -> int:
        """The number of epochs."""
        return self._n

    def __repr__(self):
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.as_dict().items() if v)
        return f"History(epochs={self._n}{', ' + last if last else ''})"


# ============================================================================ early stopping
class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int, >= 1
        Training stops at the end of the ``patience``-th epoch in a row without improvement
        (as in Keras and Lightning).
    monitor : str
        A logged value: ``"val_loss"`` (default when there is validation data), ``"loss"``
        (the default otherwise), ``"val_accuracy"`` or ``"accuracy"``.  ``"auto"`` picks the
        default.
    min_delta : float, >= 0
        An improvement must beat the best value by more than this.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"`` is ``"max"`` for accuracies and ``"min"``
        otherwise.
    """

    def __init__(self, patience=5, monitor="auto", min_delta=0.0, mode="auto"):
        if isinstance(patience, (bool, np.bool_)) or not isinstance(patience, numbers.Integral):
            raise TypeError(f"early_stopping: patience: expected an integer >= 1, got "
                            f"{type(patience).__name__} ({patience!r})")
        if patience < 1:
            raise ValueError(f"early_stopping: patience: expected an integer >= 1, got "
                             f"{patience}")
        if not isinstance(monitor, str):
            raise TypeError(f"early_stopping: monitor: expected a name such as 'val_loss' or "
                            f"'loss', got {type(monitor).__name__}")
        if isinstance(min_delta, (bool, np.bool_)) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"early_stopping: min_delta: expected a finite number >= 0, got "
                             f"{min_delta!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"early_stopping: mode: expected 'auto', 'min' or 'max', got "
                             f"{mode!r}")
        self.patience = int(patience)
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.mode = mode

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, monitor={self.monitor!r}, "
                f"min_delta={self.min_delta}, mode={self.mode!r})")


def _early_stopping(spec):
    if spec is None or isinstance(spec, EarlyStopping):
        return spec
    if isinstance(spec, numbers.Integral) and not isinstance(spec, (bool, np.bool_)):
        return EarlyStopping(patience=int(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - {"patience", "monitor", "min_delta", "mode"}
        if unknown:
            raise ValueError(f"early_stopping: unknown keys {sorted(unknown)}; expected "
                             f"patience, monitor, min_delta, mode")
        return EarlyStopping(**spec)
    raise TypeError(f"early_stopping: expected None, a patience (int), a dict of "
                    f"EarlyStopping arguments or an EarlyStopping, got {type(spec).__name__}")


# ============================================================================ input checks
def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got "
                        f"{type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _check_net(net):
    from vgcore.core.network import MLP
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a vgcore.MLP, got {type(net).__name__}")


def _set_training(net, on):
    """Put a network that has training and evaluation modes (batch norm, dropout) into the given
    mode; returns the mode it was in, or None for a network without modes."""
    if not hasattr(net, "training"):
        return None
    was = bool(net.training)
    if was != on:
        (net.train_mode if on else net.eval_mode)()
    return was


def _loss_kind(loss):
    fn = _losses.get(loss)
    for name, f in _losses.LOSSES.items():
        if fn is f:
            return name, fn
    return "custom", fn


def _check_X(X, net, name):
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (samples, {net.sizes[0]}), got a "
                         f"{X.ndim}-D array of shape {X.shape}")
    if X.dtype != net.dtype:
        hint = (f"; convert it with {name}.astype(np.{net.dtype.name})"
                if X.dtype.kind in "fiub" else "")
        raise TypeError(f"{name}: expected dtype {net.dtype.name} (the network's dtype), got "
                        f"{X.dtype}{hint}")
    if X.shape[1] != net.sizes[0]:
        raise ValueError(f"{name}: expected shape (samples, {net.sizes[0]}) (the network's "
                         f"input width), got {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {X.shape}")
    if not np.isfinite(X).all():
        n_bad = int(np.count_nonzero(~np.isfinite(X)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN or Inf entries")
    return X


def _check_y(y, net, fn, n, name):
    """The targets in the form the loss takes (int64 labels (n,) or floats (n, n_out)): the
    rule of :func:`vgcore.losses.check_targets`, for a data set."""
    if isinstance(y, np.ndarray) and y.ndim >= 1 and y.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one per sample of X), got shape {y.shape}")
    return _losses.check_targets(fn, y, n, net.sizes[-1], net.dtype, name=name, data=True)


# ============================================================================ batch buffers
class _Buffers:
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


def _count_correct(out, yb, buf, kind) -> int:
    if kind == "cross_entropy":
        np.argmax(out, axis=1, out=buf.pred)
        np.equal(buf.pred, yb, out=buf.hit)
    else:
        np.greater(out, 0, out=buf.hit)
        np.greater(yb, 0.5, out=buf.hit2)
        np.equal(buf.hit, buf.hit2, out=buf.hit)
    return int(np.count_nonzero(buf.hit))


class _Evaluator:
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
        was_training = _set_training(net, False)
        try:
            for s in range(0, n, self.batch_size):
                e = min(s + self.batch_size, n)
                b = e - s
                buf = self._bufs.get(b)
                if buf is None:
                    buf = self._bufs[b] = _Buffers(b, net, y, self.kind, self.accuracy, False)
                out = net.forward(X[s:e])
                yb = y[s:e]
                if self.accuracy:
                    correct += _count_correct(out, yb, buf, self.kind)
                value, _ = self.fn(out, yb, grad_out=buf.grad)
                total += float(value) * b
        finally:
            if was_training:
                _set_training(net, True)
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
    _check_net(net)
    kind, fn = _loss_kind(loss)
    batch_size = _check_int(batch_size, "batch_size", 1)
    X = np.require(_check_X(X, net, "X"), requirements=["C", "A"])   # contiguous, aligned
    y = _check_y(y, net, fn, X.shape[0], "y")
    return _Evaluator(net, kind, fn, True, batch_size)(X, y)


# ============================================================================ the trainer
class Trainer:
    """The state of one :func:`fit` run; callbacks receive it.

    ``fit(net, X, y, **options)`` is ``Trainer(net, X, y, **options).run()``: the constructor
    checks every argument (see :func:`fit`) and :meth:`run` trains.

    Attributes
    ----------
    net : vgcore.MLP
    optimizer : vgcore.optim.Optimizer
    history : History
        The values of the epochs finished so far.
    step : int
        Optimiser steps taken in this run so far.
    epoch : int
        The current epoch (0-based).
    epochs : int
        The number of epochs asked for.
    n_train, n_val : int
        Training and validation samples (``n_val`` is 0 without validation).
    batches_per_epoch : int
    stop_training : bool
        Set it to True (e.g. from a callback) to stop after the current batch.
    """

    def __init__(self, net, X, y, *, loss="cross_entropy", optimizer=None, epochs=10,
                 batch_size=64, shuffle=True, seed=0, validation_data=None,
                 validation_split=0.0, early_stopping=None, metrics=("loss", "accuracy"),
                 callbacks=(), recorder=None, checkpoint=None, checkpoint_best=None,
                 verbose=None, restore_best=False, drop_last=False, eval_batch_size=1024,
                 on_nonfinite="raise"):
        _check_net(net)
        if on_nonfinite not in ("raise", "skip", "stop"):
            raise ValueError(f"on_nonfinite: expected 'raise', 'skip' or 'stop', got "
                             f"{on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.skipped_steps = 0
        self.nonfinite_message = None
        self.net = net
        self.loss = loss
        self.kind, self._fn = _loss_kind(loss)

        # --- optimiser
        from vgcore.train.optim import SGD, Optimizer
        if optimizer is None:
            optimizer = SGD(net, lr=0.01)
        elif not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a vgcore.optim optimiser or None, got "
                            f"{type(optimizer).__name__}")
        elif optimizer.net is not net:
            raise ValueError("optimizer: expected an optimiser built on `net`, got one built "
                             f"on another network ({optimizer.net!r})")
        self.optimizer = optimizer

        # --- scalars
        self.epochs = _check_int(epochs, "epochs", 0)
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.eval_batch_size = _check_int(eval_batch_size, "eval_batch_size", 1)
        self.shuffle = _check_bool(shuffle, "shuffle")
        self.drop_last = _check_bool(drop_last, "drop_last")
        self.restore_best = _check_bool(restore_best, "restore_best")
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self.seed = seed
        if verbose is not None and (not isinstance(verbose, numbers.Integral)
                                    or int(verbose) not in (0, 1, 2)):
            raise ValueError(f"verbose: expected None (a progress bar only on a terminal), 0 "
                             f"(quiet), 1 (progress bar) or 2 (a line per epoch), got "
                             f"{verbose!r}")
        self.verbose = None if verbose is None else int(verbose)
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics: expected a tuple of names from {_METRICS}, got "
                            f"{metrics!r}")
        bad = [m for m in metrics if m not in _METRICS]
        if bad:
            raise ValueError(f"metrics: unknown metric {bad[0]!r}; expected names from "
                             f"{_METRICS}")
        self.accuracy = ("accuracy" in metrics
                         and self.kind in ("cross_entropy", "binary_cross_entropy"))

        # --- data
        X = _check_X(X, net, "X")
        y = _check_y(y, net, self._fn, X.shape[0], "y")
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
                validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got "
                             f"{validation_split!r}")
        validation_split = float(validation_split)
        n = X.shape[0]
        self._X, self._y = X, y
        self._Xv = self._yv = None
        if validation_data is not None and validation_split > 0:
            raise ValueError(f"validation_split: expected 0 when validation_data is given "
                             f"(use one or the other), got {validation_split}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"validation_data: expected a pair (X_val, y_val), got "
                                f"{type(validation_data).__name__}")
            Xv = _check_X(validation_data[0], net, "validation_data[0]")
            yv = _check_y(validation_data[1], net, self._fn, Xv.shape[0], "validation_data[1]")
            self._Xv, self._yv = np.require(Xv, requirements=["C", "A"]), yv
            self._train_idx = np.arange(n, dtype=np.intp)
        elif validation_split > 0:
            n_val = int(n * validation_split)
            if n_val == 0 or n_val == n:
                raise ValueError(f"validation_split: {validation_split} of {n} samples leaves "
                                 f"{n_val} for validation and {n - n_val} for training; "
                                 f"expected at least one of each")
            perm = np.random.default_rng(seed).permutation(n)
            val_idx = np.sort(perm[:n_val])
            self._train_idx = np.sort(perm[n_val:]).astype(np.intp)
            self._Xv = np.take(X, val_idx, axis=0)
            self._yv = np.take(y, val_idx, axis=0)
        else:
            self._train_idx = np.arange(n, dtype=np.intp)
        self.n_train = int(self._train_idx.size)
        self.n_val = 0 if self._Xv is None else int(self._Xv.shape[0])
        has_val = self._Xv is not None
        if self.drop_last and self.n_train < self.batch_size:
            raise ValueError(f"drop_last: with {self.n_train} training samples and batch_size "
                             f"{self.batch_size} no full batch is left; use drop_last=False "
                             f"or a smaller batch_size")
        full, rest = divmod(self.n_train, self.batch_size)
        self._sizes = [self.batch_size] * full
        if rest and not self.drop_last:
            self._sizes.append(rest)
        self.batches_per_epoch = len(self._sizes)

        # --- monitoring, early stopping, best
        self._stopper = _early_stopping(early_stopping)
        available = ["loss"] + (["accuracy"] if self.accuracy else [])
        if has_val:
            available += ["val_loss"] + (["val_accuracy"] if self.accuracy else [])
        monitor = "val_loss" if has_val else "loss"
        mode, min_delta = "min", 0.0
        if self._stopper is not None:
            if self._stopper.monitor != "auto":
                monitor = self._stopper.monitor
            if monitor not in available:
                raise ValueError(f"early_stopping: monitor: expected one of {available} (the "
                                 f"values this run logs), got {monitor!r}"
                                 + ("; pass validation_data or validation_split to monitor "
                                    "validation values" if monitor.startswith("val_") else ""))
            mode = self._stopper.mode
            min_delta = self._stopper.min_delta
        if mode == "auto":
            mode = "max" if monitor.endswith("accuracy") else "min"
        self._monitor, self._mode, self._min_delta = monitor, mode, min_delta

        # --- callbacks
        if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks: expected a list or tuple of callback objects, got "
                            f"{type(callbacks).__name__}")
        self._hooks = {m: [] for m in _CALLBACK_METHODS}
        for i, cb in enumerate(callbacks):
            for m in _CALLBACK_METHODS:
                fn = getattr(cb, m, None)
                if fn is None:
                    continue
                if not callable(fn):
                    raise TypeError(f"callbacks[{i}].{m}: expected a method, got "
                                    f"{type(fn).__name__}")
                self._hooks[m].append(fn)
        self.callbacks = tuple(callbacks)

        # --- recorder
        if recorder is not None:
            from vgcore.measure.recorder import Recorder
            if not isinstance(recorder, Recorder):
                raise TypeError(f"recorder: expected a vgcore.Recorder or None, got "
                                f"{type(recorder).__name__}")
            if not net.measure:
                raise ValueError("recorder: the network does not measure its gradient flow "
                                 "(net.measure is False); expected net.measure = True to record")
            try:
                recorder.wants(optimizer.step_count)
            except ValueError as e:
                raise ValueError(f"recorder: records steps by the optimiser's step count, "
                                 f"starting at {optimizer.step_count} here, but it has already "
                                 f"recorded later steps ({e})") from None
        self.recorder = recorder

        # --- checkpoints
        self.checkpoint = self._check_ckpt_path(checkpoint, "checkpoint")
        self.checkpoint_best = self._check_ckpt_path(checkpoint_best, "checkpoint_best")

        # --- state
        self.history = History()
        self.history.monitor = monitor
        self.step = 0
        self.epoch = 0
        self.stop_training = False
        self._best = None
        self._best_params = np.empty_like(net.params) if self.restore_best else None
        self._wait = 0
        self._rng = np.random.default_rng(seed)
        self._order = self._train_idx.copy()
        self._bufs = {}
        self._evaluator = (_Evaluator(net, self.kind, self._fn, self.accuracy,
                                      self.eval_batch_size) if has_val else None)

    @staticmethod
    def _check_ckpt_path(path, name):
        if path is None:
            return None
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name}: expected a file path (str or os.PathLike) or None, got "
                            f"{type(path).__name__}")
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{name}: expected a path in an existing folder, got {path!r} "
                             f"({folder!r} does not exist)")
        return path

    # ------------------------------------------------------------------ pieces
    def _buffers(self, b):
        buf = self._bufs.get(b)
        if buf is None:
            buf = self._bufs[b] = _Buffers(b, self.net, self._y, self.kind, self.accuracy, True)
        return buf

    def _improved(self, value):
        if value is None or not math.isfinite(value):
            return False
        if self._best is None:
            return True
        if self._mode == "min":
            return value < self._best - self._min_delta
        return value > self._best + self._min_delta

    def _save(self, path, kind):
        from vgcore.train import checkpoint as _ckpt
        _ckpt.save(path, self.net, self.optimizer, history=self.history,
                   extra={"kind": kind, "epoch": self.epoch + 1, "step": self.step,
                          "monitor": self._monitor,
                          "best": self._best, "best_epoch": self.history.best_epoch})

    def _run_epoch(self, progress):
        net, opt, fn, kind = self.net, self.optimizer, self._fn, self.kind
        rec = self.recorder
        X, y, order = self._X, self._y, self._order
        if self.shuffle:
            self._rng.shuffle(order)
        total, seen, correct = 0.0, 0, 0
        self._epoch_skipped = 0
        start = 0
        hooks = self._hooks["on_batch_end"]
        for b in self._sizes:
            idx = order[start:start + b]
            start += b
            buf = self._buffers(b)
            np.take(X, idx, axis=0, out=buf.X, mode="clip")    # "clip": unbuffered
            np.take(y, idx, axis=0, out=buf.y, mode="clip")
            out = net.forward(buf.X)
            if not _engine.all_finite(out):
                if self._nonfinite(where="forward"):
                    break
                continue
            value, dout = fn(out, buf.y, grad_out=buf.grad)
            net.backward(dout, input_grad=False)
            if not self._grads_finite():
                if self._nonfinite(where="backward"):
                    break
                continue
            if self.accuracy:
                correct += _count_correct(out, buf.y, buf, kind)
            opt.step()
            value = float(value)
            if rec is not None:
                rec.record(net, opt.step_count - 1)
            total += value * b
            seen += b
            step = self.step
            self.step += 1
            for h in hooks:
                if h(step, value, self):
                    self.stop_training = True
            progress.update(self.step - self._epoch_first_step, value)
            if self.stop_training:
                break
        logs = {"loss": total / seen if seen else math.nan}
        if self.accuracy:
            per_row = 1 if kind == "cross_entropy" else net.sizes[-1]
            logs["accuracy"] = correct / (seen * per_row) if seen else math.nan
        if self.on_nonfinite == "skip":
            logs["skipped"] = self._epoch_skipped
        return logs

    # ------------------------------------------------------------------ non-finite steps
    def _grads_finite(self) -> bool:
        """Cheaply, from the step's own measurements when the network takes them (every
        layer's pre-activation and error sums are finite), else one pass over the gradients."""
        net = self.net
        if net.measure:
            return net.nonfinite() is None
        return _engine.all_finite(net.grads)

    def _nonfinite(self, where) -> bool:
        """Apply the on_nonfinite policy to a step whose forward or backward pass produced NaN
        or Inf; the parameters are untouched (the optimiser has not stepped).  Returns True to
        end the epoch."""
        layer = None
        net = self.net
        if net.measure:
            found = net.nonfinite()        # first in the forward pass, else in the backward
            if found is not None:
                where, layer = found
        at = f" at layer {layer}" if layer else ""
        msg = (f"step {self.step}: the {where} pass produced NaN or Inf{at}; the parameters "
               f"are those before this step (try a lower learning rate, clip_norm, or a "
               f"normalisation)")
        if self.on_nonfinite == "raise":
            raise NonFiniteError(msg, where=where, layer=layer, step=self.step)
        self.nonfinite_message = msg
        if self.on_nonfinite == "skip":
            self.skipped_steps += 1
            self._epoch_skipped += 1
            return False
        self.stop_training = True      # "stop": keep the last good state
        return True

    # ------------------------------------------------------------------ the loop
    def run(self) -> History:
        """Train; returns :attr:`history`."""
        progress = make_progress(self.verbose, self.epochs)
        hist = self.history
        was_training = _set_training(self.net, True)
        try:
            for h in self._hooks["on_train_begin"]:
                h(self)
            for epoch in range(self.epochs):
                self.epoch = epoch
                t0 = time.perf_counter()
                lr = self.optimizer.current_lr()
                for h in self._hooks["on_epoch_begin"]:
                    h(epoch, self)
                self._epoch_first_step = self.step
                progress.epoch_begin(epoch, self.batches_per_epoch)
                if self.recorder is not None:
                    self.recorder.start_epoch()
                try:
                    logs = self._run_epoch(progress)
                finally:
                    if self.recorder is not None:
                        try:
                            self.recorder.end_epoch()
                        except RuntimeError:      # no record in an interrupted epoch
                            pass
                if self._evaluator is not None:
                    ev = self._evaluator(self._Xv, self._yv)
                    logs["val_loss"] = ev["loss"]
                    if "accuracy" in ev:
                        logs["val_accuracy"] = ev["accuracy"]
                logs["lr"] = lr
                logs["time"] = time.perf_counter() - t0
                hist.append(logs)

                value = logs[self._monitor]
                if self._improved(value):
                    self._best = value
                    self._wait = 0
                    hist.best_epoch = epoch
                    if self._best_params is not None:
                        np.copyto(self._best_params, self.net.params)
                    if self.checkpoint_best is not None:
                        self._save(self.checkpoint_best, "best")
                else:
                    self._wait += 1
                sched = self.optimizer.lr
                if callable(sched) and getattr(sched, "needs_metric", False):
                    sched.step(logs["val_loss"] if "val_loss" in logs else logs["loss"])
                if self.checkpoint is not None:
                    self._save(self.checkpoint, "last")
                for h in self._hooks["on_epoch_end"]:
                    if h(epoch, dict(logs), self):
                        self.stop_training = True
                if self._stopper is not None and self._wait >= self._stopper.patience:
                    self.stop_training = True
                progress.epoch_end(epoch, logs)
                if self.stop_training:
                    if epoch < self.epochs - 1:
                        hist.stopped_epoch = epoch
                    break
            if self._best_params is not None and hist.best_epoch is not None:
                self.net.params[...] = self._best_params
            for h in self._hooks["on_train_end"]:
                h(self)
        finally:
            progress.close()
            if was_training is False:
                _set_training(self.net, False)
        return hist


def fit(net, X, y, *, loss="cross_entropy", optimizer=None, epochs=10, batch_size=64,
        shuffle=True, seed=0, validation_data=None, validation_split=0.0, early_stopping=None,
        metrics=("loss", "accuracy"), callbacks=(), recorder=None, checkpoint=None,
        checkpoint_best=None, verbose=None, restore_best=False, drop_last=False,
        eval_batch_size=1024, on_nonfinite="raise") -> History:
    """Train ``net`` on ``(X, y)`` with mini-batches.

    Parameters
    ----------
    net : vgcore.MLP
    X : ndarray (samples, sizes[0]), the network's dtype, finite
        Any memory layout: batches are gathered into contiguous buffers.
    y : ndarray
        Integer class labels (samples,) for ``cross_entropy``; float targets of the network's
        dtype, (samples, sizes[-1]) (or (samples,) with one output), for ``mse`` and
        ``binary_cross_entropy`` (values in [0, 1]).
    loss : str or callable
        ``"cross_entropy"`` (default), ``"mse"``, ``"binary_cross_entropy"``, or a function
        ``fn(out, y, grad_out=) -> (loss, grad)``.
    optimizer : vgcore.optim.Optimizer, optional
        An optimiser built on ``net``; default ``SGD(net, lr=0.01)``.  A schedule with
        ``needs_metric`` (``vgcore.schedules.ReduceOnPlateau``) as its ``lr`` is stepped after
        every epoch with ``val_loss`` (or ``loss`` without validation).
    epochs : int, >= 0
    batch_size : int, >= 1
    shuffle : bool
        Draw a new order of the training samples each epoch (default True); otherwise they are
        taken in order.
    seed : int >= 0 or None
        Seeds the shuffling and the ``validation_split`` draw; the same seed (and the same
        network and optimiser) gives bit-identical parameters.
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    validation_split : float in [0, 1)
        Hold out ``int(samples * validation_split)`` samples, drawn at random with ``seed``
        once before training, as validation data.  Not with ``validation_data``.
    early_stopping : int, dict, EarlyStopping or None
        A patience (int), the arguments of :class:`EarlyStopping` (``patience``, ``monitor``:
        ``"val_loss"`` by default with validation, ``"loss"`` without; ``min_delta``,
        ``mode``), or an :class:`EarlyStopping`.  Training stops after ``patience`` epochs in
        a row in which the monitored value did not beat its best by more than ``min_delta``.
    metrics : tuple of str
        ``"loss"`` (always logged) and ``"accuracy"`` (logged for ``cross_entropy`` and
        ``binary_cross_entropy``, ignored for other losses).
    callbacks : sequence of objects
        Each may define any of ``on_train_begin(trainer)``, ``on_epoch_begin(epoch, trainer)``,
        ``on_batch_end(step, loss, trainer)``, ``on_epoch_end(epoch, logs, trainer)`` and
        ``on_train_end(trainer)``; ``on_batch_end`` and ``on_epoch_end`` returning True stop
        training (after that batch, or that epoch).  ``epoch`` and ``step`` count from 0 within
        this run; ``trainer`` is the :class:`Trainer`.
    recorder : vgcore.Recorder, optional
        ``recorder.record(net, step)`` after every step, with ``step`` the optimiser's step
        count minus one (so a run resumed from a checkpoint continues the numbering);
        ``start_epoch()`` / ``end_epoch()`` around every epoch.  Needs ``net.measure``.
    checkpoint : path, optional
        After every epoch, :func:`vgcore.checkpoint.save` the network, optimiser and history
        there (atomically; ``extra`` holds ``kind="last"``, ``epoch``, ``step``, ``monitor``,
        ``best``, ``best_epoch``): the state to resume from.  With ``restore_best`` it still
        holds the last epoch's parameters.
    checkpoint_best : path, optional
        Saved likewise (``kind="best"``) each time the monitored value improves.
    verbose : {None, 0, 1, 2}
        None: a progress bar on stderr only when stderr is a terminal, else quiet; 0: quiet;
        1: a progress bar (tqdm when it is installed, else a built-in line; one line per epoch
        when stderr is not a terminal); 2: one line per epoch.
    restore_best : bool
        At the end, set the parameters back to those after the best epoch (by the monitored
        value).  The optimiser's state is not rolled back.
    drop_last : bool
        Skip the last, partial batch of each epoch (default False: it is used).
    eval_batch_size : int, >= 1
        Batch size of the validation passes (default 1024).
    on_nonfinite : {"raise", "skip", "stop"}
        What to do with a step whose forward or backward pass produced NaN or Inf (detected
        from the step's measurements when ``net.measure`` is on, else by one pass over the
        gradients), before the optimiser touches the parameters: raise
        :class:`vgcore.NonFiniteError` (a :class:`FloatingPointError`) naming the step and the
        layer where it first appeared
        (default), skip the step (the parameters stay as they were; ``history["skipped"]``
        counts them per epoch), or stop training with the last good parameters
        (``trainer.nonfinite_message`` says why).

    Returns
    -------
    History
        One entry per epoch of ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
        ``time`` (those that apply); ``best_epoch`` and ``stopped_epoch`` say how it went.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, before any training; the message names the argument, what was
        expected and what was given.

    Notes
    -----
    A network with training and evaluation modes trains in training mode, is validated in
    evaluation mode, and is left in the mode it was in.

    After a run with validation data the network's last passes are the validation forward
    passes, so :meth:`vgcore.MLP.gradient_flow` has no measured step to report: use a
    ``recorder`` to keep the gradient flow of training.
    """
    return Trainer(net, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                   batch_size=batch_size, shuffle=shuffle, seed=seed,
                   validation_data=validation_data, validation_split=validation_split,
                   early_stopping=early_stopping, metrics=metrics, callbacks=callbacks,
                   recorder=recorder, checkpoint=checkpoint, checkpoint_best=checkpoint_best,
                   on_nonfinite=on_nonfinite,
                   verbose=verbose, restore_best=restore_best, drop_last=drop_last,
                   eval_batch_size=eval_batch_size).run()

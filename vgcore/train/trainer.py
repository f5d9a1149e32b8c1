"""The training loop: mini-batches, validation, early stopping, callbacks, checkpoints.

::

    import vgcore as vg
    from vgcore.train.trainer import fit, evaluate

    net = vg.MLP([2, 64, 64, 3], activation="tanh", init="glorot_uniform", seed=0)
    hist = fit(net, X, y, optimizer=vg.optim.Adam(net, lr=1e-3), epochs=20, batch_size=64,
               validation_split=0.2, early_stopping=3, restore_best=True,
               recorder=vg.Recorder(schedule="log"), checkpoint="run.npz")
    hist["val_loss"], evaluate(net, X_test, y_test)

Each step is :meth:`vgcore.MLP.train_step` with the optimiser when the network measures (one
compiled call for forward, loss, backward and the optimiser's step where the network runs in
batch chunks; a non-finite step is found from the measurements), else ``net.forward``, the loss
(written into a preallocated gradient buffer), ``net.backward``, a check that the gradients are
finite, and ``optimizer.step()``: the same computation.
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
other losses it is not computed.  :class:`History` and :class:`EarlyStopping` live in
:mod:`vgcore.train.history`, :func:`evaluate` in :mod:`vgcore.train.evaluation`, the progress
display in ``vgcore.train._progress``; all are importable from here as before.
"""
from __future__ import annotations

import math
import numbers
import os
import time

import numpy as np

from vgcore import _engine
from vgcore.core._validation import (check_bool, check_data_matrix, check_network,
                                     check_positive_int)
from vgcore.core.errors import NonFiniteError
from vgcore.train._progress import make_progress
from vgcore.train.evaluation import (Buffers, Evaluator, check_y, count_correct, evaluate,
                                     loss_kind, set_training)
from vgcore.train.history import EarlyStopping, History, early_stopping

__all__ = ["fit", "evaluate", "History", "Trainer", "EarlyStopping"]

_METRICS = ("loss", "accuracy")
_CALLBACK_METHODS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end",
                     "on_train_end")


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
        check_network(net)
        if on_nonfinite not in ("raise", "skip", "stop"):
            raise ValueError(f"on_nonfinite: expected 'raise', 'skip' or 'stop', got "
                             f"{on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.skipped_steps = 0
        self.nonfinite_message = None
        self.net = net
        self.loss = loss
        self.kind, self._fn = loss_kind(loss)
        self.optimizer = self._check_optimizer(optimizer)
        self._check_scalars(epochs, batch_size, eval_batch_size, shuffle, drop_last,
                            restore_best, seed, verbose, metrics)
        self._split_data(X, y, validation_data, validation_split)
        has_val = self._Xv is not None
        monitor = self._set_monitor(early_stopping, has_val)
        self._set_callbacks(callbacks)
        self.recorder = self._check_recorder(recorder)
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
        self._rng = np.random.default_rng(self.seed)
        self._order = self._train_idx.copy()
        self._bufs = {}
        self._evaluator = (Evaluator(net, self.kind, self._fn, self.accuracy,
                                     self.eval_batch_size) if has_val else None)

    # ------------------------------------------------------------------ argument checks
    def _check_optimizer(self, optimizer):
        from vgcore.train.optim import SGD, Optimizer
        if optimizer is None:
            return SGD(self.net, lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a vgcore.optim optimiser or None, got "
                            f"{type(optimizer).__name__}")
        if optimizer.net is not self.net:
            raise ValueError("optimizer: expected an optimiser built on `net`, got one built "
                             f"on another network ({optimizer.net!r})")
        return optimizer

    def _check_scalars(self, epochs, batch_size, eval_batch_size, shuffle, drop_last,
                       restore_best, seed, verbose, metrics):
        self.epochs = check_positive_int(epochs, "epochs", minimum=0)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.eval_batch_size = check_positive_int(eval_batch_size, "eval_batch_size")
        self.shuffle = check_bool(shuffle, "shuffle")
        self.drop_last = check_bool(drop_last, "drop_last")
        self.restore_best = check_bool(restore_best, "restore_best")
        self.seed = None if seed is None else check_positive_int(seed, "seed", minimum=0)
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

    def _check_xy(self, X, y, xname, yname):
        X = check_data_matrix(X, xname, self.net.dtype, self.net.sizes[0])
        return X, check_y(y, self.net, self._fn, X.shape[0], yname)

    def _split_data(self, X, y, validation_data, validation_split):
        """The training samples, the validation data (given or split off) and the batches."""
        X, y = self._check_xy(X, y, "X", "y")
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
                validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got "
                             f"{validation_split!r}")
        validation_split = float(validation_split)
        n = X.shape[0]
        self._X, self._y = X, y
        self._Xv = self._yv = None
        self._train_idx = np.arange(n, dtype=np.intp)
        if validation_data is not None and validation_split > 0:
            raise ValueError(f"validation_split: expected 0 when validation_data is given "
                             f"(use one or the other), got {validation_split}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"validation_data: expected a pair (X_val, y_val), got "
                                f"{type(validation_data).__name__}")
            Xv, yv = self._check_xy(*validation_data, "validation_data[0]",
                                    "validation_data[1]")
            # any layout is taken: a strided or misaligned X_val is copied once, here
            self._Xv, self._yv = np.require(Xv, requirements=["C", "A"]), yv
        elif validation_split > 0:
            n_val = int(n * validation_split)
            if n_val == 0 or n_val == n:
                raise ValueError(f"validation_split: {validation_split} of {n} samples leaves "
                                 f"{n_val} for validation and {n - n_val} for training; "
                                 f"expected at least one of each")
            perm = np.random.default_rng(self.seed).permutation(n)
            val_idx = np.sort(perm[:n_val])
            self._train_idx = np.sort(perm[n_val:]).astype(np.intp)
            self._Xv = np.take(X, val_idx, axis=0)
            self._yv = np.take(y, val_idx, axis=0)
        self.n_train = int(self._train_idx.size)
        self.n_val = 0 if self._Xv is None else int(self._Xv.shape[0])
        if self.drop_last and self.n_train < self.batch_size:
            raise ValueError(f"drop_last: with {self.n_train} training samples and batch_size "
                             f"{self.batch_size} no full batch is left; use drop_last=False "
                             f"or a smaller batch_size")
        full, rest = divmod(self.n_train, self.batch_size)
        self._sizes = [self.batch_size] * full
        if rest and not self.drop_last:
            self._sizes.append(rest)
        self.batches_per_epoch = len(self._sizes)

    def _set_monitor(self, spec, has_val):
        """The value that defines the best epoch and early stopping; returns its name."""
        self._stopper = early_stopping(spec)
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
        return monitor

    def _set_callbacks(self, callbacks):
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

    def _check_recorder(self, recorder):
        if recorder is None:
            return None
        from vgcore.measure.recorder import Recorder
        if not isinstance(recorder, Recorder):
            raise TypeError(f"recorder: expected a vgcore.Recorder or None, got "
                            f"{type(recorder).__name__}")
        if not self.net.measure:
            raise ValueError("recorder: the network does not measure its gradient flow "
                             "(net.measure is False); expected net.measure = True to record")
        count = self.optimizer.step_count
        try:
            recorder.wants(count)
        except ValueError as e:
            raise ValueError(f"recorder: records steps by the optimiser's step count, "
                             f"starting at {count} here, but it has already recorded later "
                             f"steps ({e})") from None
        return recorder

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
            buf = self._bufs[b] = Buffers(b, self.net, self._y, self.kind, self.accuracy, True)
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
            if net.measure:
                # train_step: one compiled call where it can, the optimiser's step included;
                # a non-finite step is found from the measurements (MLP.nonfinite())
                try:
                    value = net.train_step(buf.X, buf.y, fn, opt)
                except NonFiniteError as e:
                    if self._nonfinite(where=e.where):
                        break
                    continue
                out = net.last_output
            else:
                out = net.forward(buf.X)
                if not _engine.all_finite(out):
                    if self._nonfinite(where="forward"):
                        break
                    continue
                value, dout = fn(out, buf.y, grad_out=buf.grad)
                net.backward(dout, input_grad=False, overwrite_dout=dout is buf.grad)
                if not _engine.all_finite(net.grads):     # no measurements to read
                    if self._nonfinite(where="backward"):
                        break
                    continue
                opt.step()
            if self.accuracy:
                correct += count_correct(out, buf.y, buf, kind)
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
        if self.step == 0:      # no update yet: the parameters are as given, lr is not why
            hint = ("no step of this run has updated them yet, so the learning rate is not "
                    "the cause: check the inputs' scale (standardise them, e.g. "
                    "vg.datasets.load(..., standardize=True)) and the initialisation")
        else:
            hint = "try a lower learning rate, clip_norm, or a normalisation"
        msg = (f"step {self.step}: the {where} pass produced NaN or Inf{at}; the parameters "
               f"are those before this step ({hint})")
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
        was_training = set_training(self.net, True)
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
                set_training(self.net, False)
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

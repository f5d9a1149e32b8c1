"""Record the gradient flow of a training run: per-layer histories on a schedule, within a
fixed memory bound, with tidy exports.

A :class:`Recorder` keeps, for the steps its schedule picks, one row per step of every per-layer
measurement of :class:`vgcore.flow.GradientFlow` (the names in :data:`vgcore.flow.FIELDS`) and
of the per-step scalars in :data:`SCALARS`::

    rec = Recorder(schedule="log")
    for step in range(n_steps):
        net.train_step(X[b], y[b], "cross_entropy", opt)
        rec.record(net)                 # stores a row when the step is due
    rec.to_csv("flow.csv")              # tidy: one line per (step, layer)
    vgcore.diagnose(rec)

Schedules
---------
``"every"``
    steps ``0, every, 2 every, ...`` (``step % every == 0``).
``"log"``
    ``0`` and ``round(10 ** (j / 10))`` for ``j = 0, 1, 2, ...``: about ten steps per decade,
    ``0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 126, ...`` (see
    :func:`log_schedule`).
sorted iterable of ints
    exactly those steps.

Memory bound and thinning
-------------------------
Storage for ``max_records`` rows is allocated at the first record (``np.empty``: the operating
system commits the pages as rows are written), about ``8 * max_records * (16 * n_layers + 6)``
bytes; it never grows.  When a row is due and the storage is full, the history is *thinned*:

1. the records at positions 0, 2, 4, ... are kept (every other record, the first one always),
   the others dropped, so ``ceil(max_records / 2)`` rows remain, still in step order;
2. the *stride* doubles: from then on only one due step in ``stride`` is recorded, counted in
   due steps passed to :meth:`Recorder.record` since the last kept record.

When ``record`` is called at every due step the thinned history is exactly the schedule
subsampled by the stride (``"every"`` with ``every=1`` and ``max_records=1000`` holds steps
0, 1, ..., 999; from step 1000 on 0, 2, 4, ...; from step 2000 on 0, 4, 8, ...), so a run of
any length keeps between ``max_records / 2`` and ``max_records`` rows spread evenly over the
whole run.  When only some due steps are passed, the kept rows are still every other record
and the run is still covered, but the spacing follows the steps that were passed.

Dead units over an epoch
------------------------
Between :meth:`Recorder.start_epoch` and :meth:`Recorder.end_epoch`, every call to
:meth:`Recorder.record` (due for a history row or not) reads the network's measurements and
ANDs the per-unit dead masks (:attr:`GradientFlow.dead_units`: ``phi'(h) == 0`` on every sample
of the batch).  ``end_epoch`` turns them into per-hidden-layer fractions of units that were
dead on every sample of every batch passed during the epoch, and appends them to
:attr:`Recorder.epoch_dead_fraction` (shape ``(epochs, n_layers - 1)``).

JSON format (version 1)
-----------------------
A strict-JSON object (NaN and Inf are written as ``null`` and read back as NaN)::

    {"format": "vgcore.recorder", "version": 1,
     "sizes": [n_in, ..., n_out] or null (no record yet),
     "activations": [one name per layer, the output layer's "identity" last],
     "init": {"name": ..., "sigma_w": ..., "sigma_b": ...} or null (recorded from flows),
     "schedule": "every" | "log" | [steps], "every": int, "max_records": int,
     "stride": int, "next_step": int, "offers_seen": int,
     "steps": [step of each record],
     "offers": [index of each record among the due steps passed to record()],
     "fields": {name: [[value per layer] per record]} for every name in FIELDS,
     "scalars": {name: [value per record]} for every name in SCALARS,
     "epoch_dead_fraction": [[fraction per hidden layer] per epoch],
     "epoch_steps": [[first step, last step] per epoch]}

:meth:`Recorder.from_json` reads it back into a recorder that can go on recording.
"""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from vgcore.core._files import atomic_write
from vgcore.measure.flow import FIELDS, GradientFlow

__all__ = ["Recorder", "SCALARS", "log_schedule", "JSON_FORMAT", "JSON_VERSION"]

JSON_FORMAT = "vgcore.recorder"
JSON_VERSION = 1

SCALARS = ("grad_ratio", "delta_ratio", "nonfinite_forward_layer", "nonfinite_backward_layer")
"""Per-step scalars kept beside the per-layer fields.  ``grad_ratio`` and ``delta_ratio`` are
float64; the non-finite layers are int64, the 1-based layer where a NaN or Inf first appeared,
0 when there was none."""

_FLOAT_SCALARS = SCALARS[:2]
_INT_SCALARS = SCALARS[2:]


def _log_step(j: int) -> int:
    return int(round(10.0 ** (j / 10.0)))


def log_schedule(stop: int) -> np.ndarray:
    """The steps below ``stop`` of the ``"log"`` schedule.

    Parameters
    ----------
    stop : int, >= 0

    Returns
    -------
    ndarray of int64
        ``0`` and the distinct values of ``round(10 ** (j / 10))``, ``j = 0, 1, ...``, below
        ``stop``: ``0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, ...``.
    """
    stop = _check_int(stop, "stop", minimum=0)
    out = [0] if stop > 0 else []
    j = 0
    while True:
        s = _log_step(j)
        if s >= stop:
            break
        if s != out[-1]:
            out.append(s)
        j += 1
    return np.asarray(out, np.int64)


def _is_log_step(step: int) -> bool:
    if step == 0:
        return True
    j0 = int(round(10.0 * math.log10(step)))
    return any(_log_step(j) == step for j in (j0 - 1, j0, j0 + 1) if j >= 0)


def _check_int(value, name, minimum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    return os.fspath(path)


def _atomic_write_text(path: str, write) -> None:
    """A text file written atomically (see :func:`vgcore.core._files.atomic_write`)."""
    atomic_write(path, "x", write, encoding="utf-8", newline="")


def _json_matrix(a: np.ndarray) -> list:
    """Nested lists of Python floats with NaN and Inf as None (strict JSON)."""
    a = np.asarray(a, np.float64)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a.tolist()
    obj = a.astype(object)
    obj[bad] = None
    return obj.tolist()


class Recorder:
    """The per-layer gradient-flow history of a training run, on a schedule, in bounded memory.

    Parameters
    ----------
    schedule : {"every", "log"} or sorted iterable of int
        Which steps get a history row: ``"every"`` (``step % every == 0``, the default),
        ``"log"`` (about ten per decade, see :func:`log_schedule`), or the given steps
        (non-negative, strictly increasing).
    every : int, >= 1
        The period of ``schedule="every"`` (default 1); only valid with that schedule.
    max_records : int, >= 2
        Rows of storage (default 10 000).  When full, the history is thinned: every other
        record is kept and from then on one due step in two is recorded (see the module
        docstring), so memory never grows past this bound.
    tensorboard : str, os.PathLike or TensorBoardWriter, optional
        Also write every stored row to TensorBoard event files in this folder (with the
        weight-gradient histograms when recording from a network), see
        :mod:`vgcore.interop.tensorboard`; the writer is :attr:`tensorboard` (close it at the
        end).  Needs tensorboardX.

    Attributes
    ----------
    stride : int
        1, then doubled at each thinning: one due step in ``stride`` is recorded.

    Notes
    -----
    Each row is a copy of the network's measurements written into preallocated arrays; the
    arrays are always in step order.  Steps passed to :meth:`record` must increase from call
    to call; without ``step`` an internal counter (the last step + 1, from 0) is used.
    """

    def __init__(self, schedule="every", every=1, max_records=10_000, *, tensorboard=None):
        self._every = _check_int(every, "every", minimum=1)
        if isinstance(schedule, str):
            key = schedule.strip().lower()
            if key not in ("every", "log"):
                raise ValueError(f"schedule: expected 'every', 'log' or a sorted iterable of "
                                 f"step numbers, got {schedule!r}")
            self._schedule = key
            self._steps_list = None
        else:
            self._schedule = "steps"
            self._steps_list = self._check_steps(schedule)
        if self._schedule != "every" and self._every != 1:
            raise ValueError(f"every: only applies to schedule='every'; expected 1 (the "
                             f"default) with schedule={self.schedule!r}, got {self._every}")
        self._max = _check_int(max_records, "max_records", minimum=2)
        self._stride = 1
        self._next_step = 0          # the default step of the next call
        self._offers_seen = 0        # due steps passed to record() so far
        self._n = 0
        # network description, set by the first measurement
        self._sizes = None
        self._activations = None
        self._init = None
        # storage, allocated at the first record
        self._fields = None          # (len(FIELDS), max_records, n_layers) float64
        self._fscal = None           # (2, max_records) float64: grad_ratio, delta_ratio
        self._iscal = None           # (2, max_records) int64: non-finite layers (0 = none)
        self._step = None            # (max_records,) int64
        self._offer = None           # (max_records,) int64: index among due steps offered
        # epochs
        self._epoch_open = False
        self._epoch_mask = None
        self._epoch_first = None
        self._epoch_last = None
        self._epoch_fracs = []
        self._epoch_steps = []
        self.tensorboard = None
        """The :class:`vgcore.interop.tensorboard.TensorBoardWriter` rows go to, or None."""
        if tensorboard is not None:
            from vgcore.interop.tensorboard import as_writer
            self.tensorboard = as_writer(tensorboard)

    # ---------------------------------------------------------------- validation helpers
    @staticmethod
    def _check_steps(schedule):
        if isinstance(schedule, (bytes, dict)) or not hasattr(schedule, "__iter__"):
            raise TypeError(f"schedule: expected 'every', 'log' or a sorted iterable of step "
                            f"numbers, got {type(schedule).__name__}")
        steps = []
        for i, s in enumerate(schedule):
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
                raise TypeError(f"schedule: expected integer step numbers, got "
                                f"{type(s).__name__} ({s!r}) at position {i}")
            s = int(s)
            if s < 0:
                raise ValueError(f"schedule: expected non-negative step numbers, got {s} at "
                                 f"position {i}")
            if steps and s <= steps[-1]:
                raise ValueError(f"schedule: expected strictly increasing step numbers, got "
                                 f"{s} after {steps[-1]} at position {i}")
            steps.append(s)
        if not steps:
            raise ValueError("schedule: expected at least one step number, got an empty "
                             "iterable")
        return np.asarray(steps, np.int64)

    def _resolve_step(self, step):
        if step is None:
            return self._next_step
        step = _check_int(step, "step", minimum=0)
        if step < self._next_step:
            raise ValueError(f"step: expected an integer >= {self._next_step} (steps must "
                             f"increase from call to call; the last was "
                             f"{self._next_step - 1}), got {step}")
        return step

    # ---------------------------------------------------------------- schedule
    def _base_due(self, step: int) -> bool:
        if self._schedule == "every":
            return step % self._every == 0
        if self._schedule == "log":
            return _is_log_step(step)
        i = int(np.searchsorted(self._steps_list, step))
        return i < self._steps_list.size and int(self._steps_list[i]) == step

    def _row_due(self, offer: int) -> bool:
        """Whether the due step with index ``offer`` gets a row, thinning included."""
        n = self._n
        if n == 0:
            return True
        stride, last = self._stride, int(self._offer[n - 1])
        if n == self._max:                  # it would thin first
            stride *= 2
            last = int(self._offer[(n - 1) // 2 * 2])
        return offer - last >= stride

    def wants(self, step=None) -> bool:
        """Whether :meth:`record` at ``step`` would read the network's measurements.

        True when a history row is due at ``step`` (schedule, stride and thinning included),
        or when an epoch is open (the dead-unit tracking needs every step).  When False,
        ``record`` returns at once without touching the network, so the step can even run
        with ``net.measure = False``.

        Parameters
        ----------
        step : int or None
            The step to ask about (default: the internal counter, the last step + 1).
        """
        step = self._resolve_step(step)
        if self._epoch_open:
            return True
        return self._base_due(step) and self._row_due(self._offers_seen)

    # ---------------------------------------------------------------- recording
    def _flow_of(self, net) -> GradientFlow:
        if isinstance(net, GradientFlow):
            flow = net
        elif callable(getattr(net, "gradient_flow", None)):
            flow = net.gradient_flow()
            if not isinstance(flow, GradientFlow):
                raise TypeError(f"net: expected gradient_flow() to return a "
                                f"vgcore.flow.GradientFlow, got {type(flow).__name__}")
        else:
            raise TypeError(f"net: expected a vgcore.MLP or a vgcore.flow.GradientFlow, got "
                            f"{type(net).__name__}")
        if self._sizes is None:
            self._sizes = tuple(int(s) for s in flow.sizes)
            self._activations = tuple(flow.activations)
            if not isinstance(net, GradientFlow) and hasattr(net, "init"):
                sw = getattr(net, "sigma_w", None)
                sb = getattr(net, "sigma_b", None)
                self._init = {"name": str(net.init),
                              "sigma_w": None if sw is None else float(sw),
                              "sigma_b": None if sb is None else float(sb)}
        elif tuple(flow.sizes) != self._sizes or tuple(flow.activations) != self._activations:
            raise ValueError(f"net: expected a network with sizes {list(self._sizes)} and "
                             f"activations {list(self._activations)} (the one this recorder "
                             f"started with), got sizes {list(flow.sizes)} and activations "
                             f"{list(flow.activations)}")
        return flow

    def _allocate(self):
        L = len(self._sizes) - 1
        m = self._max
        self._fields = np.empty((len(FIELDS), m, L), np.float64)
        self._fscal = np.empty((len(_FLOAT_SCALARS), m), np.float64)
        self._iscal = np.empty((len(_INT_SCALARS), m), np.int64)
        self._step = np.empty(m, np.int64)
        self._offer = np.empty(m, np.int64)

    def _thin(self):
        """Keep the records at positions 0, 2, 4, ...; double the stride."""
        n = self._n
        k = (n + 1) // 2
        for a in (self._fields, self._fscal, self._iscal):
            a[:, :k] = a[:, 0:n:2]
        for a in (self._step, self._offer):
            a[:k] = a[0:n:2]
        self._n = k
        self._stride *= 2

    def record(self, net, step=None) -> bool:
        """Store the network's last measurements as a history row if ``step`` is due.

        Parameters
        ----------
        net : vgcore.MLP or vgcore.flow.GradientFlow
            A network after a measured forward and backward pass (its :meth:`gradient_flow` is
            read only when needed, see :meth:`wants`), or one step's measurements.
        step : int or None
            The training step (default: the internal counter, the last step + 1, from 0).
            Must be greater than the step of the previous call.

        Returns
        -------
        bool
            True if a row was stored.

        Notes
        -----
        While an epoch is open (:meth:`start_epoch`) every call also ANDs the network's dead
        units into the epoch's masks, whether or not a row is due.
        """
        step = self._resolve_step(step)
        base_due = self._base_due(step)
        offer = self._offers_seen
        row_due = base_due and self._row_due(offer)
        if row_due or self._epoch_open:
            flow = self._flow_of(net)
        elif not isinstance(net, GradientFlow) and not callable(getattr(net, "gradient_flow",
                                                                        None)):
            raise TypeError(f"net: expected a vgcore.MLP or a vgcore.flow.GradientFlow, got "
                            f"{type(net).__name__}")
        if self._epoch_open:
            self._and_dead_units(flow, step)
        self._next_step = step + 1
        if base_due:
            self._offers_seen += 1
        if not row_due:
            return False
        if self._fields is None:
            self._allocate()
        if self._n == self._max:
            self._thin()
        i = self._n
        for k, name in enumerate(FIELDS):
            self._fields[k, i] = getattr(flow, name)
        self._fscal[0, i] = flow.grad_ratio
        self._fscal[1, i] = flow.delta_ratio
        self._iscal[0, i] = flow.nonfinite_forward_layer or 0
        self._iscal[1, i] = flow.nonfinite_backward_layer or 0
        self._step[i] = step
        self._offer[i] = offer
        self._n = i + 1
        if self.tensorboard is not None:
            self.tensorboard.add_flow(flow, step, None if isinstance(net, GradientFlow) else net)
        return True

    # ---------------------------------------------------------------- epochs
    def start_epoch(self) -> None:
        """Open an epoch: from now on every :meth:`record` call ANDs the dead-unit masks.

        Raises
        ------
        RuntimeError
            When an epoch is already open.
        """
        if self._epoch_open:
            raise RuntimeError("start_epoch: an epoch is already open; call end_epoch() first")
        self._epoch_open = True
        self._epoch_mask = None
        self._epoch_first = self._epoch_last = None

    def _and_dead_units(self, flow, step):
        if self._epoch_mask is None:
            self._epoch_mask = [np.array(m, dtype=bool) for m in flow.dead_units]
            self._epoch_first = step
        else:
            for acc, m in zip(self._epoch_mask, flow.dead_units):
                acc &= m
        self._epoch_last = step

    def end_epoch(self) -> np.ndarray:
        """Close the epoch; store and return the fraction of units dead throughout it.

        Returns
        -------
        ndarray of shape (n_layers - 1,)
            Per hidden layer, the fraction of units with ``phi'(h) == 0`` on every sample of
            every batch passed to :meth:`record` since :meth:`start_epoch`.

        Raises
        ------
        RuntimeError
            When no epoch is open, or :meth:`record` was not called during it.
        """
        if not self._epoch_open:
            raise RuntimeError("end_epoch: no epoch is open; call start_epoch() first")
        if self._epoch_mask is None:
            raise RuntimeError("end_epoch: record(net) was not called since start_epoch(); "
                               "there are no measurements for this epoch")
        fr = np.asarray([m.mean() if m.size else np.nan for m in self._epoch_mask],
                        np.float64)
        self._epoch_fracs.append(fr)
        self._epoch_steps.append((int(self._epoch_first), int(self._epoch_last)))
        self._epoch_open = False
        self._epoch_mask = None
        return fr.copy()

    @property
    def epoch_dead_fraction(self) -> np.ndarray:
        """Per epoch (rows) and hidden layer (columns), the fraction of units dead on every
        sample of the epoch; shape ``(epochs, n_layers - 1)``."""
        width = 0 if self._sizes is None else len(self._sizes) - 2
        if not self._epoch_fracs:
            return np.empty((0, width), np.float64)
        return np.vstack(self._epoch_fracs)

    @property
    def epoch_steps(self) -> np.ndarray:
        """The first and last step passed to :meth:`record` in each epoch, ``(epochs, 2)``."""
        return np.asarray(self._epoch_steps, np.int64).reshape(-1, 2)

    # ---------------------------------------------------------------- read access
    def __len__(self) -> int:
        return self._n

    @property
    def schedule(self):
        """``"every"``, ``"log"``, or the tuple of scheduled steps."""
        if self._schedule == "steps":
            return tuple(int(s) for s in self._steps_list)
        return self._schedule

    @property
    def every(self) -> int:
        """The period of ``schedule="every"`` (1 for the other schedules)."""
        return self._every

    @property
    def max_records(self) -> int:
        """The storage bound, in rows."""
        return self._max

    @property
    def stride(self) -> int:
        """1, doubled at each thinning: one due step in ``stride`` gets a row."""
        return self._stride

    @property
    def sizes(self):
        """The recorded network's layer widths, or None before the first measurement."""
        return self._sizes

    @property
    def activations(self):
        """One activation name per layer (the output layer's ``"identity"`` last), or None."""
        return self._activations

    @property
    def init(self):
        """``{"name", "sigma_w", "sigma_b"}`` of the recorded MLP, or None (unknown)."""
        return None if self._init is None else dict(self._init)

    @property
    def n_layers(self) -> int:
        """Weight layers of the recorded network (0 before the first measurement)."""
        return 0 if self._sizes is None else len(self._sizes) - 1

    @property
    def steps(self) -> np.ndarray:
        """The step of each record, increasing (a copy)."""
        if self._step is None:
            return np.empty(0, np.int64)
        return self._step[:self._n].copy()

    def history(self, name, start=None, stop=None) -> np.ndarray:
        """A copy of one measurement's history, rows ``start:stop`` (Python slicing).

        Parameters
        ----------
        name : str
            One of :data:`vgcore.flow.FIELDS` (result ``(rows, n_layers)``), :data:`SCALARS`
            (``(rows,)``) or ``"step"``.
        start, stop : int or None
            Row range, e.g. ``history("grad_norm", -5)`` for the last five records.
        """
        if not isinstance(name, str):
            raise TypeError(f"name: expected a measurement name (str), got "
                            f"{type(name).__name__}")
        rows = slice(start, stop)
        if name == "step":
            return self.steps[rows]
        if name in FIELDS:
            if self._fields is None:
                return np.empty((0, self.n_layers), np.float64)
            return self._fields[FIELDS.index(name), :self._n][rows].copy()
        if name in _FLOAT_SCALARS:
            if self._fscal is None:
                return np.empty(0, np.float64)
            return self._fscal[_FLOAT_SCALARS.index(name), :self._n][rows].copy()
        if name in _INT_SCALARS:
            if self._iscal is None:
                return np.empty(0, np.int64)
            return self._iscal[_INT_SCALARS.index(name), :self._n][rows].copy()
        raise ValueError(f"name: expected 'step', one of FIELDS ({', '.join(FIELDS)}) or of "
                         f"SCALARS ({', '.join(SCALARS)}), got {name!r}")

    def __repr__(self):
        span = (f", steps {int(self._step[0])}..{int(self._step[self._n - 1])}"
                if self._n else "")
        return (f"Recorder(schedule={self.schedule!r}, every={self._every}, "
                f"max_records={self._max}, records={self._n}{span}, stride={self._stride}, "
                f"epochs={len(self._epoch_fracs)})")

    # ---------------------------------------------------------------- exports
    def to_arrays(self) -> dict:
        """The history as arrays (copies).

        Returns
        -------
        dict
            ``"step"``: int64 ``(n,)``; every name of :data:`vgcore.flow.FIELDS`: float64
            ``(n, n_layers)`` (row ``i`` is the record at ``step[i]``, column ``l`` layer
            ``l + 1``); ``"grad_ratio"``, ``"delta_ratio"``: float64 ``(n,)``;
            ``"nonfinite_forward_layer"``, ``"nonfinite_backward_layer"``: int64 ``(n,)``,
            0 for none.
        """
        out = {"step": self.history("step")}
        for name in FIELDS + SCALARS:
            out[name] = self.history(name)
        return out

    def to_dict(self) -> dict:
        """The history in long (tidy) form: one entry per (record, layer).

        Returns
        -------
        dict of equal-length columns
            ``step``, ``layer`` (1-based), ``width``, ``activation`` (list of str), every name
            of :data:`vgcore.flow.FIELDS`, and the per-step :data:`SCALARS` repeated on each
            layer of their step.  ``pandas.DataFrame(rec.to_dict())`` makes the table;
            pandas is not needed otherwise.
        """
        n, L = self._n, self.n_layers
        steps = self.history("step")
        out = {
            "step": np.repeat(steps, L),
            "layer": np.tile(np.arange(1, L + 1, dtype=np.int64), n),
            "width": np.tile(np.asarray(self._sizes[1:] if L else [], np.int64), n),
            "activation": list(self._activations or ()) * n,
        }
        for name in FIELDS:
            out[name] = self.history(name).reshape(-1)
        for name in SCALARS:
            out[name] = np.repeat(self.history(name), L)
        return out

    def to_csv(self, path) -> None:
        """Write :meth:`to_dict` as CSV: a header row, then one row per (record, layer).

        Floats are written with ``repr`` (exact round trip; ``nan``, ``inf``).  The file is
        written to a temporary file in the same folder and moved into place with
        ``os.replace``, so ``path`` never holds a partial file.

        Parameters
        ----------
        path : str or os.PathLike
        """
        path = _check_path(path)
        cols = self.to_dict()
        names = list(cols)
        data = [c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()]

        def write(f):
            w = csv.writer(f, lineterminator="\n")
            w.writerow(names)
            w.writerows(zip(*data))

        _atomic_write_text(path, write)

    def _json_object(self) -> dict:
        n = self._n
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "sizes": None if self._sizes is None else list(self._sizes),
            "activations": None if self._activations is None else list(self._activations),
            "init": self.init,
            "schedule": (list(self.schedule) if self._schedule == "steps"
                         else self._schedule),
            "every": self._every,
            "max_records": self._max,
            "stride": self._stride,
            "next_step": self._next_step,
            "offers_seen": self._offers_seen,
            "steps": self.history("step").tolist(),
            "offers": [] if self._offer is None else self._offer[:n].tolist(),
            "fields": {name: _json_matrix(self.history(name)) for name in FIELDS},
            "scalars": {**{name: _json_matrix(self.history(name)) for name in _FLOAT_SCALARS},
                        **{name: self.history(name).tolist() for name in _INT_SCALARS}},
            "epoch_dead_fraction": [_json_matrix(f) for f in self._epoch_fracs],
            "epoch_steps": [list(s) for s in self._epoch_steps],
        }

    def to_json(self, path) -> None:
        """Write the recorder as a strict-JSON file (format in the module docstring).

        NaN and Inf are written as ``null`` (and read back as NaN).  Written atomically, like
        :meth:`to_csv`.

        Parameters
        ----------
        path : str or os.PathLike
        """
        path = _check_path(path)
        obj = self._json_object()
        _atomic_write_text(path, lambda f: json.dump(obj, f, allow_nan=False,
                                                     separators=(",", ":")))

    @classmethod
    def from_json(cls, path) -> "Recorder":
        """Read a file written by :meth:`to_json`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        Recorder
            The same history, settings and closed epochs; it can go on recording (an epoch
            that was open when the file was written is not saved).

        Raises
        ------
        ValueError
            When the file is not valid JSON (corrupt or truncated), not a ``vgcore.recorder``
            file, of another version, or inconsistent; the message names the file.
        """
        path = _check_path(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"path: {path!r} is not a vgcore.recorder JSON file: it is not "
                             f"UTF-8 text ({e})") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"path: {path!r} is not a valid vgcore.recorder JSON file: "
                             f"corrupt or truncated JSON ({e})") from None
        return cls._from_object(obj, path)

    @classmethod
    def _from_object(cls, obj, path):
        def bad(what):
            return ValueError(f"path: {path!r} is not a valid vgcore.recorder JSON file: {what}")

        if not isinstance(obj, dict):
            raise bad(f"expected a JSON object, got a JSON {type(obj).__name__}")
        if obj.get("format") != JSON_FORMAT:
            raise bad(f"expected \"format\": {JSON_FORMAT!r}, got {obj.get('format')!r}")
        if obj.get("version") != JSON_VERSION:
            raise bad(f"expected \"version\": {JSON_VERSION}, got {obj.get('version')!r}")
        required = ("sizes", "activations", "init", "schedule", "every", "max_records",
                    "stride", "next_step", "offers_seen", "steps", "offers", "fields",
                    "scalars", "epoch_dead_fraction", "epoch_steps")
        missing = [k for k in required if k not in obj]
        if missing:
            raise bad(f"missing key(s) {', '.join(missing)}")
        try:
            rec = cls(schedule=obj["schedule"], every=obj["every"],
                      max_records=obj["max_records"])
        except (TypeError, ValueError) as e:
            raise bad(f"bad settings ({e})") from None

        def ints(key, minimum=0):
            v = obj[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise bad(f"expected \"{key}\" to be an integer >= {minimum}, got {v!r}")
            return v

        stride = ints("stride", 1)
        if stride & (stride - 1):
            raise bad(f"expected \"stride\" to be a power of two, got {stride}")
        rec._stride = stride
        rec._next_step = ints("next_step")
        rec._offers_seen = ints("offers_seen")
        steps, offers = obj["steps"], obj["offers"]
        if not isinstance(steps, list) or not isinstance(offers, list):
            raise bad("expected \"steps\" and \"offers\" to be lists")
        n = len(steps)
        if len(offers) != n:
            raise bad(f"expected {n} \"offers\" (one per step), got {len(offers)}")
        if n > rec._max:
            raise bad(f"{n} records exceed \"max_records\" {rec._max}")

        def int_array(v, key):
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise bad(f"expected integers in \"{key}\"")
            return np.asarray(v, np.int64).reshape(-1)

        sizes, acts, init = obj["sizes"], obj["activations"], obj["init"]
        if sizes is None:
            if n or obj["epoch_dead_fraction"]:
                raise bad("records without \"sizes\"")
            return rec
        if (not isinstance(sizes, list) or len(sizes) < 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                           for s in sizes)):
            raise bad(f"expected \"sizes\" to be a list of at least two positive integers, "
                      f"got {sizes!r}")
        L = len(sizes) - 1
        if (not isinstance(acts, list) or len(acts) != L
                or not all(isinstance(a, str) for a in acts)):
            raise bad(f"expected \"activations\" to be {L} names, got {acts!r}")
        if init is not None and not (isinstance(init, dict) and isinstance(init.get("name"),
                                                                          str)):
            raise bad(f"expected \"init\" to be null or an object with a \"name\", got "
                      f"{init!r}")
        rec._sizes = tuple(sizes)
        rec._activations = tuple(acts)
        rec._init = None if init is None else {"name": init["name"],
                                                "sigma_w": init.get("sigma_w"),
                                                "sigma_b": init.get("sigma_b")}
        step_arr = int_array(steps, "steps")
        offer_arr = int_array(offers, "offers")
        if n and (np.any(np.diff(step_arr) <= 0) or step_arr[0] < 0
                  or np.any(np.diff(offer_arr) <= 0) or offer_arr[0] < 0):
            raise bad("expected strictly increasing non-negative \"steps\" and \"offers\"")
        if n and (step_arr[-1] >= rec._next_step or offer_arr[-1] >= rec._offers_seen):
            raise bad("\"next_step\" / \"offers_seen\" are behind the last record")

        def matrix(v, key, shape, dtype=np.float64):
            try:
                a = np.asarray(v, dtype=dtype)
            except (TypeError, ValueError):
                raise bad(f"expected numbers (or null) in \"{key}\" with shape {shape}") \
                    from None
            if a.shape != shape:
                raise bad(f"expected \"{key}\" with shape {shape}, got {a.shape}")
            return a

        fields, scalars = obj["fields"], obj["scalars"]
        if not isinstance(fields, dict) or not isinstance(scalars, dict):
            raise bad("expected \"fields\" and \"scalars\" to be objects")
        rec._allocate()
        rec._n = n
        rec._step[:n] = step_arr
        rec._offer[:n] = offer_arr
        for k, name in enumerate(FIELDS):
            if name not in fields:
                raise bad(f"missing field {name!r} in \"fields\"")
            rec._fields[k, :n] = matrix(fields[name], f"fields.{name}", (n, L))
        for k, name in enumerate(_FLOAT_SCALARS):
            if name not in scalars:
                raise bad(f"missing scalar {name!r} in \"scalars\"")
            rec._fscal[k, :n] = matrix(scalars[name], f"scalars.{name}", (n,))
        for k, name in enumerate(_INT_SCALARS):
            if name not in scalars:
                raise bad(f"missing scalar {name!r} in \"scalars\"")
            v = scalars[name]
            if not isinstance(v, list):
                raise bad(f"expected a list in \"scalars.{name}\"")
            a = int_array(v, f"scalars.{name}")
            if a.shape != (n,) or np.any((a < 0) | (a > L)):
                raise bad(f"expected {n} layer numbers in 0..{L} in \"scalars.{name}\"")
            rec._iscal[k, :n] = a
        edf, est = obj["epoch_dead_fraction"], obj["epoch_steps"]
        if not isinstance(edf, list) or not isinstance(est, list) or len(edf) != len(est):
            raise bad("expected \"epoch_dead_fraction\" and \"epoch_steps\" to be lists of "
                      "equal length")
        for i, (fr, se) in enumerate(zip(edf, est)):
            if not (isinstance(se, list) and len(se) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in se)):
                raise bad(f"expected two integers in \"epoch_steps[{i}]\", got {se!r}")
            rec._epoch_fracs.append(matrix(fr, f"epoch_dead_fraction[{i}]", (L - 1,)))
            rec._epoch_steps.append((se[0], se[1]))
        return rec

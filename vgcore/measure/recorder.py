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
system commits the pages as rows are written), and never grows.  A row recorded from a network
(or from a flow that holds its sums, :attr:`GradientFlow.raw`) is stored as those sums, the few
numbers per layer the network measured, ``8 * (14 * n_layers + 5)`` bytes: recording it is a
copy, and its fields are derived from the sums whenever the history is read (compiled, the
numbers of :func:`vgcore.flow.derive`).  A row recorded from a flow built from its fields (or
read from a file) is stored as the fields, ``8 * (17 * n_layers + 9)`` bytes, in arrays
allocated when the first such row comes; a recorder that holds both kinds (one read from a
file that goes on recording from a network, say) has both, up to ``8 * max_records * (31 *
n_layers + 9)`` bytes.  When a row is due and the storage is full, the history is *thinned*:

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

JSON
----
:meth:`Recorder.to_json` writes, and :meth:`Recorder.from_json` reads, a strict-JSON object
(format ``vgcore.recorder``, version 2; NaN and Inf as ``null``) described in
:mod:`vgcore.measure.recorder_io`; :meth:`Recorder.to_json_object` and
:meth:`Recorder.from_json_object` give and take the object itself.
"""
from __future__ import annotations


import weakref

import numpy as np

from vgcore import _engine
from vgcore.measure import recorder_io as _json
from vgcore.core import _contract
from vgcore.measure.flow import FIELDS, N_STATS, GradientFlow
from vgcore.measure.record_schedule import check_int, check_steps, is_log_step, log_schedule
from vgcore.measure.recorder_epochs import RecorderEpochs
from vgcore.measure.recorder_io import (_FLOAT_SCALARS, _INT_SCALARS, JSON_FORMAT, JSON_VERSION,
                                        SCALARS, RecorderExports, _check_path)

__all__ = ["Recorder", "SCALARS", "log_schedule", "JSON_FORMAT", "JSON_VERSION"]


class Recorder(RecorderEpochs, RecorderExports):
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
        self._every = check_int(every, "every", minimum=1)
        if isinstance(schedule, str):
            key = schedule.strip().lower()
            if key not in ("every", "log"):
                raise ValueError(f"schedule: expected 'every', 'log' or a sorted iterable of "
                                 f"step numbers, got {schedule!r}")
            self._schedule = key
            self._steps_list = None
        else:
            self._schedule = "steps"
            self._steps_list = check_steps(schedule)
        if self._schedule != "every" and self._every != 1:
            raise ValueError(f"every: only applies to schedule='every'; expected 1 (the "
                             f"default) with schedule={self.schedule!r}, got {self._every}")
        self._max = check_int(max_records, "max_records", minimum=2)
        self._stride = 1
        self._next_step = 0          # the default step of the next call
        self._offers_seen = 0        # due steps passed to record() so far
        self._n = 0
        self._last_offer = -1        # the offer of the last row (_offer[_n - 1]), kept as an int
        # network description, set by the first measurement
        self._sizes = None
        self._activations = None
        self._init = None
        self._checked = None         # weakref to the network whose sums are copied directly
        # storage, allocated at the first record: a row is held either as the raw sums the
        # network measured (derived when read) or as derived fields (flows built from fields,
        # files), as _meta says
        self._meta = None            # (max_records, 5) int64: one row's step, offer, and for
                                     # a row held as sums its batch, stepped (0/1), and 1
        self._raw_st = None          # (max_records, n_layers, N_STATS) float64
        self._raw_msq = None         # (max_records, n_layers) float64
        self._dfields = None         # (len(FIELDS), max_records, n_layers) float64, on demand
        self._dfscal = None          # (2, max_records) float64: grad_ratio, delta_ratio
        self._discal = None          # (2, max_records) int64: non-finite layers (0 = none)
        self._widths = None
        self._step = None            # _meta's columns: the step of each row and its index
        self._offer = None           # among the due steps offered
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
    def _resolve_step(self, step):
        if step is None:
            return self._next_step
        step = check_int(step, "step", minimum=0)
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
            return is_log_step(step)
        i = int(np.searchsorted(self._steps_list, step))
        return i < self._steps_list.size and int(self._steps_list[i]) == step

    def _row_due(self, offer: int) -> bool:
        """Whether the due step with index ``offer`` gets a row, thinning included."""
        n = self._n
        if n == 0:
            return True
        stride, last = self._stride, self._last_offer
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
            sizes = tuple(int(s) for s in flow.sizes)
            # the network's own tuple when it holds Python ints already (a row's check is then
            # an identity); otherwise the ints (NumPy integers would not go into to_json)
            own = flow.sizes
            self._sizes = own if type(own) is tuple and all(type(s) is int for s in own) \
                else sizes
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
        if not isinstance(net, GradientFlow) and callable(getattr(net, "flow_sums_into", None)):
            # this network matches: later rows copy its sums straight into their rows
            self._checked = weakref.ref(net)
        return flow

    def _allocate(self):
        self._meta = np.zeros((self._max, 5), np.int64)
        self._step = self._meta[:, 0]
        self._offer = self._meta[:, 1]
        self._widths = np.asarray(self._sizes[1:], np.float64)

    def _set_meta(self, i, step, offer, batch, stepped, raw):
        # one compiled call; right after a step NumPy's item assignment costs microseconds
        # per item (its code has left the caches)
        if _engine.put_i64_row(self._meta, i, (step, offer, batch, stepped, raw)):
            return
        meta = self._meta
        meta[i, 0] = step
        meta[i, 1] = offer
        meta[i, 2] = batch
        meta[i, 3] = stepped
        meta[i, 4] = raw

    def _raw_storage(self):
        """The arrays of rows held as raw sums (allocated with the first such row)."""
        if self._raw_st is None:
            m, L = self._max, len(self._sizes) - 1
            self._raw_st = np.empty((m, L, N_STATS), np.float64)
            self._raw_msq = np.empty((m, L), np.float64)

    def _derived_storage(self):
        """The arrays of rows held as derived fields (allocated with the first such row)."""
        if self._dfields is None:
            m, L = self._max, len(self._sizes) - 1
            self._dfields = np.empty((len(FIELDS), m, L), np.float64)
            self._dfscal = np.empty((len(_FLOAT_SCALARS), m), np.float64)
            self._discal = np.empty((len(_INT_SCALARS), m), np.int64)

    def _read(self, name, rows, dtype):
        """Measurement ``name`` of rows ``rows`` (a slice of the records) as a new array:
        derived from the raw sums of the rows held as sums, copied for the others."""
        idx = np.arange(self._n)[rows]
        raw = self._meta[idx, 4] != 0
        if name in FIELDS:
            out = np.empty((idx.size, len(self._sizes) - 1), dtype)
            held, j = self._dfields, FIELDS.index(name)
        elif name in _FLOAT_SCALARS:
            out = np.empty(idx.size, dtype)
            held, j = self._dfscal, _FLOAT_SCALARS.index(name)
        else:
            out = np.empty(idx.size, dtype)
            held, j = self._discal, _INT_SCALARS.index(name)
        if raw.all() and idx.size and idx[-1] - idx[0] == idx.size - 1:
            # all held as sums, in a row (the common case): derived straight into out
            r = slice(int(idx[0]), int(idx[-1]) + 1)
            if out.dtype == np.float64:
                self._derive(name, r, out)
            else:
                out[:] = self._derive(name, r)
            return out
        if raw.any():
            out[raw] = self._derive(name, idx[raw])
        if not raw.all():
            out[~raw] = held[j, idx[~raw]]
        return out

    def _derive(self, name, rows, out=None):
        """Derived quantity ``name`` of the rows ``rows`` (a slice or indices) held as sums, in
        one compiled call (src/vg_derive.h), into ``out`` (float64) or a new array."""
        st, msq, meta = self._raw_st[rows], self._raw_msq[rows], self._meta[rows]
        if out is None:
            n = len(st)
            out = np.empty((n, len(self._sizes) - 1) if name in FIELDS else n, np.float64)
        _engine.derive_rows(_contract.DERIVED_ID[name], st, msq, self._widths, meta[:, 2],
                            meta[:, 3], out)
        return out

    def _thin(self):
        """Keep the records at positions 0, 2, 4, ...; double the stride."""
        n = self._n
        k = (n + 1) // 2
        for a in (self._dfields, self._dfscal, self._discal):
            if a is not None:
                a[:, :k] = a[:, 0:n:2]
        for a in (self._raw_st, self._raw_msq, self._meta):
            if a is not None:
                a[:k] = a[0:n:2]
        self._n = k
        self._last_offer = int(self._offer[k - 1])
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
        step = self._next_step if step is None else self._resolve_step(step)
        base_due = step % self._every == 0 if self._schedule == "every" else \
            self._base_due(step)
        offer = self._offers_seen
        row_due = base_due and self._row_due(offer)
        # a row of the network this recorder already checked, nothing else wanted of it: its
        # sums are copied into the row, no GradientFlow is built
        direct = (row_due and not self._epoch_open and self.tensorboard is None
                  and self._checked is not None and self._checked() is net
                  and (net.sizes is self._sizes or net.sizes == self._sizes))
        if direct:
            pass
        elif row_due or self._epoch_open:
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
        if self._meta is None:
            self._allocate()
        if self._n == self._max:
            self._thin()
        i = self._n
        if direct:
            if self._raw_st is None:
                self._raw_storage()
            batch, stepped = net.flow_sums_into(self._raw_st, self._raw_msq, i)
            self._set_meta(i, step, offer, batch, stepped, 1)
        elif (raw := flow.raw) is not None:
            self._raw_storage()
            self._raw_st[i] = raw.stats
            self._raw_msq[i] = raw.ps_mean_sq
            self._set_meta(i, step, offer, raw.batch, raw.stepped, 1)
        else:                           # a flow built from its fields
            self._derived_storage()
            for k, name in enumerate(FIELDS):
                self._dfields[k, i] = getattr(flow, name)
            self._dfscal[0, i] = flow.grad_ratio
            self._dfscal[1, i] = flow.delta_ratio
            self._discal[0, i] = flow.nonfinite_forward_layer or 0
            self._discal[1, i] = flow.nonfinite_backward_layer or 0
            self._set_meta(i, step, offer, 0, 0, 0)
        self._n = i + 1
        self._last_offer = offer
        if self.tensorboard is not None:
            self.tensorboard.add_flow(flow, step, None if isinstance(net, GradientFlow) else net)
        return True

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
            if self._meta is None:
                return np.empty((0, self.n_layers), np.float64)
            return self._read(name, rows, np.float64)
        if name in _FLOAT_SCALARS:
            if self._meta is None:
                return np.empty(0, np.float64)
            return self._read(name, rows, np.float64)
        if name in _INT_SCALARS:
            if self._meta is None:
                return np.empty(0, np.int64)
            return self._read(name, rows, np.int64)
        raise ValueError(f"name: expected 'step', one of FIELDS ({', '.join(FIELDS)}) or of "
                         f"SCALARS ({', '.join(SCALARS)}), got {name!r}")

    def __repr__(self):
        span = (f", steps {int(self._step[0])}..{int(self._step[self._n - 1])}"
                if self._n else "")
        return (f"Recorder(schedule={self.schedule!r}, every={self._every}, "
                f"max_records={self._max}, records={self._n}{span}, stride={self._stride}, "
                f"epochs={len(self._epoch_fracs)})")

    # ---------------------------------------------------------------- reading (to_*: recorder_io)
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
        return cls.from_json_object(_json.read(path), path)

    @classmethod
    def from_json_object(cls, obj, source="object") -> "Recorder":
        """A recorder from its JSON object (:meth:`to_json_object`), checked completely.

        Parameters
        ----------
        obj : dict
        source : str
            Where the object came from, for error messages (a file, a sweep history).

        Raises
        ------
        ValueError
            Naming ``source``, when the object is not a valid recorder of this version.
        """
        d = _json.decode(obj, source, FIELDS, _FLOAT_SCALARS, _INT_SCALARS)
        try:
            rec = cls(**d["settings"])
        except (TypeError, ValueError) as e:
            raise _json.invalid(source, f"bad settings ({e})") from None
        n = len(d["steps"])
        if n > rec._max:
            raise _json.invalid(source, f"{n} records exceed \"max_records\" {rec._max}")
        rec._stride, rec._next_step = d["stride"], d["next_step"]
        rec._offers_seen = d["offers_seen"]
        if d["sizes"] is None:
            return rec
        rec._sizes, rec._activations, rec._init = d["sizes"], d["activations"], d["init"]
        rec._allocate()
        rec._n = n
        rec._step[:n] = d["steps"]
        rec._offer[:n] = d["offers"]
        rec._last_offer = int(d["offers"][-1]) if n else -1
        rec._derived_storage()
        for k, name in enumerate(FIELDS):
            rec._dfields[k, :n] = d["fields"][name]
        for k, name in enumerate(_FLOAT_SCALARS):
            rec._dfscal[k, :n] = d["float_scalars"][name]
        for k, name in enumerate(_INT_SCALARS):
            rec._discal[k, :n] = d["int_scalars"][name]
        rec._epoch_fracs = list(d["epoch_fracs"])
        rec._epoch_steps = list(d["epoch_steps"])
        return rec

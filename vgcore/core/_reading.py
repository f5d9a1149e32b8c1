"""The part of :class:`~vgcore.core.network.MLP` that reads the last step's measurements:
``gradient_flow`` (a :class:`~vgcore.flow.GradientFlow` snapshot) and ``flow_sums_into`` (the
raw sums a :class:`~vgcore.Recorder` stores, copied into the caller's arrays).

:class:`ReadingSurface` is a mixin that ``MLP`` inherits and nothing else does (like
``core/_updates.py``): its methods run on an ``MLP`` and use the network's own buffers.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np

from vgcore import _engine
from vgcore.measure.flow import GradientFlow

if TYPE_CHECKING:
    from vgcore.core._workspace import Workspace

__all__ = ["ReadingSurface"]


class ReadingSurface:
    """``MLP``'s ``gradient_flow`` and ``flow_sums_into`` (a mixin of
    :class:`~vgcore.core.network.MLP` only)."""

    # what MLP.__init__ sets and MLP's passes define (declared here for mypy)
    sizes: tuple
    _activation_names: tuple
    _engine: _engine.Engine
    _ws: Workspace | None
    _cum_width: np.ndarray
    _stepped: bool
    _flow_batch: int | None
    _measure: bool

    if TYPE_CHECKING:
        def _acquire(self, what: str) -> None: ...
        def _release(self) -> None: ...
        def _writable_set(self, keep: bool) -> None: ...
        @property
        def _stats(self) -> np.ndarray: ...

    def _begin_reading(self, what: str):
        """For a reader of the last step's measurements (``what`` names it in errors): checks
        that a measured step is there, takes the network (the caller releases it) and, when no
        measured update followed the backward, takes the norms of W as the backward left them.
        Returns the workspace."""
        if not self._measure:
            raise RuntimeError(f"{what}: measurements are off; set net.measure = True "
                               "before the forward and backward passes")
        if self._flow_batch is None or self._ws is None or self._ws.batch != self._flow_batch:
            raise RuntimeError(f"{what}: no measured step yet; call forward(X) and then "
                               "backward(dout) (or train_step) first")
        self._acquire(what)
        if not self._stepped:
            try:
                self._writable_set(True)
                self._engine.param_norms()
            except BaseException:
                self._release()
                raise
        return self._ws

    def gradient_flow(self) -> GradientFlow:
        """The gradient-flow measurements of the last forward and backward pass.

        Every quantity is defined in :mod:`vgcore.flow`; they were computed inside the compiled
        passes, and this call copies nothing: the flow holds read-only arrays over the buffers
        the step wrote (a few sums per layer, the per-sample and per-unit arrays), and the
        network writes later steps into other buffers while the flow, or any array from it,
        is alive.  So the flow is a snapshot that later steps do not change, and each field is
        derived from those sums when first read.

        Raises
        ------
        RuntimeError
            When measurements are off, or no backward pass followed the last forward pass.
        """
        ws = self._begin_reading("gradient_flow")
        try:
            cur = ws.msets.sets[0]          # the set the step wrote (MeasureSets.current)
            return GradientFlow.from_read_only(self.sizes, self._activation_names, ws.batch,
                                              cur.views, self._stepped, cur.field_buffer)
        finally:
            self._release()

    def _rows_of(self, stats, ps_mean_sq, row):
        """``stats[row]`` and ``ps_mean_sq[row]`` for flow_sums_into(row=...), or the error that
        names what is wrong with ``row`` or an array (checked whole, as the caller passed it)."""
        if isinstance(row, (bool, np.bool_)):
            raise TypeError("row: expected an integer index or None, got bool")
        try:
            r = operator.index(row)
        except TypeError:
            raise TypeError(f"row: expected an integer index or None, got "
                            f"{type(row).__name__}") from None
        views = []
        for name, a, shape in (("stats", stats, self._stats.shape),
                               ("ps_mean_sq", ps_mean_sq, (len(self.sizes) - 1,))):
            want = "(n, " + ", ".join(str(d) for d in shape) + ")"
            if not isinstance(a, np.ndarray) or a.dtype != np.float64 \
                    or a.shape[1:] != shape or a.ndim != len(shape) + 1 \
                    or not a.flags.writeable:
                got = (f"a {'read-only ' if not a.flags.writeable else ''}{a.dtype} array of "
                       f"shape {a.shape}") if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{name}: with row={r}, expected a writable float64 array of "
                                 f"shape {want} (one row's sums a row), got {got}")
            if not -len(a) <= r < len(a):
                raise IndexError(f"row: {r} is outside {name}'s {len(a)} rows")
            views.append(np.asarray(a)[r])      # the base class: a subclass's row may differ
        return views[0], views[1]

    def _check_sums_out(self, stats, ps_mean_sq):
        """Raise the ValueError that names what flow_sums_into cannot write into."""
        for name, a, shape in (("stats", stats, self._stats.shape),
                               ("ps_mean_sq", ps_mean_sq, (len(self.sizes) - 1,))):
            if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.shape != shape \
                    or not a.flags.writeable:
                got = (f"a {'read-only ' if not a.flags.writeable else ''}{a.dtype} array of "
                       f"shape {a.shape}") if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{name}: expected a writable float64 array of shape {shape}, "
                                 f"got {got}")

    def flow_sums_into(self, stats: np.ndarray, ps_mean_sq: np.ndarray,
                       row: int | None = None) -> tuple[int, bool]:
        """Copy the per-layer sums of the last measured step, the ones every field of
        :meth:`gradient_flow` is derived from, into the caller's arrays, and return
        ``(batch, stepped)``: what a :class:`vgcore.Recorder` stores per row, without building
        a :class:`vgcore.flow.GradientFlow` (see :class:`vgcore.flow.RawSums`).

        Parameters
        ----------
        stats : ndarray of float64, shape ``(n_layers, vgcore.flow.N_STATS)``, writable
        ps_mean_sq : ndarray of float64, shape ``(n_layers,)``, writable
        row : int or None
            With an index, ``stats`` and ``ps_mean_sq`` have one leading axis more (a history
            of rows) and the sums go to ``stats[row]`` and ``ps_mean_sq[row]``, as if those
            views had been passed; cheaper right after a step, when making a view costs
            microseconds.

        Raises
        ------
        RuntimeError
            As :meth:`gradient_flow`.
        ValueError
            When an array has another shape or dtype, or is read-only.
        TypeError, IndexError
            When ``row`` is not an integer, or outside the arrays' first axis.
        """
        ws = self._begin_reading("flow_sums_into")
        try:
            # one compiled copy when the arrays are as a Recorder's rows are (the common case,
            # and the one that runs right after a step, when Python's and NumPy's own code has
            # left the caches); otherwise checked here and copied by NumPy
            msq = ws.msets.current.ps_mean_sq
            if row is None:
                if _engine.copy_f64_pairs(stats, self._stats, ps_mean_sq, msq):
                    return ws.batch, self._stepped
                self._check_sums_out(stats, ps_mean_sq)
            elif _engine.copy_f64_rows(stats, self._stats, ps_mean_sq, msq, row):
                return ws.batch, self._stepped
            else:                       # checked whole, as passed; then their rows' views
                stats, ps_mean_sq = self._rows_of(stats, ps_mean_sq, row)
            np.copyto(stats, self._stats)
            np.copyto(ps_mean_sq, msq)
            return ws.batch, self._stepped
        finally:
            self._release()

"""A :class:`~vgcore.measure.recorder.Recorder`'s epochs: the units dead on every sample of
an epoch (``start_epoch``, ``end_epoch``, ``epoch_dead_fraction``, ``epoch_steps``).

:class:`RecorderEpochs` is a mixin that ``Recorder`` inherits and nothing else does; its
methods work on the recorder's own state (set in ``Recorder.__init__``, saved by its JSON
form) and are documented as ``Recorder``'s.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RecorderEpochs"]


class RecorderEpochs:
    """``Recorder``'s epochs (a mixin of :class:`~vgcore.measure.recorder.Recorder` only)."""

    # set in Recorder.__init__ (declared here for mypy)
    _sizes: Any
    _epoch_open: Any
    _epoch_mask: Any
    _epoch_first: Any
    _epoch_last: Any
    _epoch_fracs: Any
    _epoch_steps: Any

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
        # one flat mask over every hidden unit, split per layer at the end of the epoch
        if self._epoch_mask is None:
            self._epoch_mask = np.array(flow.dead_unit_mask, dtype=bool)
            self._epoch_first = step
        else:
            self._epoch_mask &= flow.dead_unit_mask
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
        ends = np.cumsum(self._sizes[1:-1])
        fr = np.asarray([m.mean() if m.size else np.nan
                         for m in np.split(self._epoch_mask, ends[:-1])], np.float64)
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

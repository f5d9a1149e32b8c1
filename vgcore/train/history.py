"""A training run's record: :class:`History` (per-epoch values) and :class:`EarlyStopping`
(when to stop)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from vgcore.train._progress import KEY_ORDER as _KEY_ORDER

__all__ = ["History", "EarlyStopping", "early_stopping"]


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


def early_stopping(spec):
    """``fit(early_stopping=...)`` as an :class:`EarlyStopping` (or None): a patience, a dict
    of its arguments, or one already built."""
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

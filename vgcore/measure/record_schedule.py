"""Which steps a :class:`vgcore.Recorder` records: the ``"every"``, ``"log"`` and explicit
schedules (the Recorder adds the thinning that bounds its memory)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["log_schedule", "is_log_step", "check_steps", "check_int"]


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
    stop = check_int(stop, "stop", minimum=0)
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


def is_log_step(step: int) -> bool:
    """Whether ``step`` is on the ``"log"`` schedule."""
    if step == 0:
        return True
    j0 = int(round(10.0 * math.log10(step)))
    return any(_log_step(j) == step for j in (j0 - 1, j0, j0 + 1) if j >= 0)


def check_int(value, name, minimum=None):
    """An integer (>= ``minimum``), as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_steps(schedule) -> np.ndarray:
    """The steps of an explicit schedule: non-negative, strictly increasing integers."""
    if isinstance(schedule, (bytes, dict)) or not hasattr(schedule, "__iter__"):
        raise TypeError(f"schedule: expected 'every', 'log' or a sorted iterable of step "
                        f"numbers, got {type(schedule).__name__}")
    steps: list[int] = []
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

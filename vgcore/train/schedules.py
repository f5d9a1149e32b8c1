"""Learning-rate schedules: small objects that map a step count to a learning rate.

A schedule is called with ``step``, the number of optimiser steps taken so far (0 before the
first step), and returns the learning rate to use for the next step, as a Python float::

    import vgcore as vg
    from vgcore.train.schedules import Cosine, LinearWarmup

    sched = LinearWarmup(Cosine(0.1, total_steps=1000), warmup_steps=100)
    opt = vg.optim.SGD(net, lr=0.1)
    for step in range(1000):
        opt.lr = sched(step)
        net.train_step(X[idx], y[idx], "cross_entropy", opt)

==================  ==========================================================================
schedule            value at step ``t``
==================  ==========================================================================
Constant            ``lr``
StepDecay           ``lr * gamma ** (t // step_size)``
Exponential         ``lr * gamma ** t``
Cosine              ``min_lr + (lr - min_lr) * (1 + cos(pi t / total_steps)) / 2`` for
                    ``t <= total_steps``, then ``min_lr``
LinearWarmup        a straight line from ``start_factor * inner(0)`` at ``t = 0`` to
                    ``inner(warmup_steps)`` at ``t = warmup_steps``, then ``inner(t)``
                    (the wrapped schedule is *not* shifted: it keeps its own clock)
ReduceOnPlateau     the current learning rate, lowered by ``factor`` by :meth:`step` when a
                    monitored metric stops improving
==================  ==========================================================================

:func:`get_schedule` turns a number, a schedule, or a name with keyword arguments into a
schedule.  A schedule may return 0 (``Cosine`` and ``ReduceOnPlateau`` with ``min_lr=0``, or
``LinearWarmup`` at step 0 with ``start_factor=0``): that step then changes nothing.
"""
from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from vgcore.core._validation import check_finite_number, check_positive_int

__all__ = [
    "Schedule", "Constant", "StepDecay", "Exponential", "Cosine", "LinearWarmup",
    "ReduceOnPlateau", "SCHEDULES", "get_schedule",
]


def _check_step(step) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step: expected a non-negative integer (optimiser steps taken), "
                        f"got {type(step).__name__}")
    step = int(step)
    if step < 0:
        raise ValueError(f"step: expected a non-negative integer (optimiser steps taken), "
                         f"got {step}")
    return step


def _check_fraction(value, name, *, low, high, low_open, high_open):
    """A finite number in the interval (or [..]) from ``low`` to ``high``."""
    value = check_finite_number(value, name)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value}")
    return value


def _check_min_lr(min_lr, lr):
    min_lr = check_finite_number(min_lr, "min_lr", nonnegative=True)
    if min_lr > lr:
        raise ValueError(f"min_lr: expected a number <= lr ({lr}), got {min_lr}")
    return min_lr


class Schedule:
    """Base class of the learning-rate schedules.

    Subclasses implement ``_value(step)`` (``step`` already checked) and ``_params()`` (the
    constructor arguments, in order, for the repr).
    """

    #: Whether the schedule is driven by a monitored metric through ``step(metric)``.
    needs_metric = False

    def __call__(self, step) -> float:
        """The learning rate after ``step`` optimiser steps.

        Parameters
        ----------
        step : int, >= 0
            The number of optimiser steps taken so far (0 before the first).

        Returns
        -------
        float
        """
        return float(self._value(_check_step(step)))

    def _value(self, step: int) -> float:     # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self):                         # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same learning rate at every step.

    Parameters
    ----------
    lr : float, > 0
    """

    def __init__(self, lr):
        self.lr = check_finite_number(lr, "lr", positive=True)

    def _value(self, step):
        return self.lr

    def _params(self):
        return [("lr", self.lr)]


class StepDecay(Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps:
    ``lr * gamma ** (step // step_size)``.

    Parameters
    ----------
    lr : float, > 0
        The learning rate for steps ``0 .. step_size - 1``.
    step_size : int, >= 1
    gamma : float in (0, 1]
        Default 0.1.
    """

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = check_finite_number(lr, "lr", positive=True)
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = _check_fraction(gamma, "gamma", low=0, high=1, low_open=True,
                                     high_open=False)

    def _value(self, step):
        return self.lr * self.gamma ** (step // self.step_size)

    def _params(self):
        return [("lr", self.lr), ("step_size", self.step_size), ("gamma", self.gamma)]


class Exponential(Schedule):
    """Multiply the learning rate by ``gamma`` at every step: ``lr * gamma ** step``.

    Parameters
    ----------
    lr : float, > 0
    gamma : float in (0, 1]
    """

    def __init__(self, lr, gamma):
        self.lr = check_finite_number(lr, "lr", positive=True)
        self.gamma = _check_fraction(gamma, "gamma", low=0, high=1, low_open=True,
                                     high_open=False)

    def _value(self, step):
        return self.lr * self.gamma ** step

    def _params(self):
        return [("lr", self.lr), ("gamma", self.gamma)]


class Cosine(Schedule):
    """Cosine annealing from ``lr`` at step 0 to ``min_lr`` at ``total_steps``, then ``min_lr``.

    ``min_lr + (lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2`` for
    ``step <= total_steps``; no restarts.

    Parameters
    ----------
    lr : float, > 0
    total_steps : int, >= 1
    min_lr : float in [0, lr]
        Default 0.
    """

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr = check_finite_number(lr, "lr", positive=True)
        self.total_steps = check_positive_int(total_steps, "total_steps")
        self.min_lr = _check_min_lr(min_lr, self.lr)

    def _value(self, step):
        if step >= self.total_steps:
            return self.min_lr
        c = 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))
        return self.min_lr + (self.lr - self.min_lr) * c

    def _params(self):
        return [("lr", self.lr), ("total_steps", self.total_steps), ("min_lr", self.min_lr)]


class LinearWarmup(Schedule):
    """Linear warm-up in front of any schedule.

    For ``step < warmup_steps`` the learning rate goes in a straight line from
    ``start_factor * inner(0)`` (at step 0) to ``inner(warmup_steps)``; from ``warmup_steps``
    on it is ``inner(step)``.  The wrapped schedule is **not shifted**: it keeps counting from
    the first step, and the warm-up replaces its first ``warmup_steps`` values (so
    ``LinearWarmup(Cosine(lr, 1000), 100)`` still reaches ``min_lr`` at step 1000).  The
    curve is continuous at ``warmup_steps``.

    Parameters
    ----------
    schedule_or_lr : Schedule, number or spec
        The wrapped schedule; anything :func:`get_schedule` accepts (a number is a
        :class:`Constant`).
    warmup_steps : int, >= 0
        0 means no warm-up.
    start_factor : float in [0, 1]
        The first learning rate as a fraction of ``inner(0)``; default 0 (the first step then
        changes nothing).

    Notes
    -----
    Wrapping a :class:`ReduceOnPlateau` ramps towards its current learning rate;
    :meth:`step` passes the metric on to it, and :attr:`needs_metric` is then True.
    """

    def __init__(self, schedule_or_lr, warmup_steps, start_factor=0.0):
        self.schedule = get_schedule(schedule_or_lr)
        self.warmup_steps = check_positive_int(warmup_steps, "warmup_steps", minimum=0)
        self.start_factor = _check_fraction(start_factor, "start_factor", low=0, high=1,
                                            low_open=False, high_open=False)

    @property
    def needs_metric(self):
        return self.schedule.needs_metric

    def step(self, metric) -> float:
        """Pass a monitored metric on to the wrapped schedule (a :class:`ReduceOnPlateau`);
        returns the wrapped schedule's new learning rate."""
        if not self.schedule.needs_metric:
            raise TypeError(f"step: the wrapped schedule {self.schedule!r} takes no metric; "
                            f"only metric-driven schedules (ReduceOnPlateau) have step(metric)")
        return self.schedule.step(metric)

    def _value(self, step):
        W = self.warmup_steps
        if step >= W:
            return self.schedule(step)
        start = self.start_factor * self.schedule(0)
        end = self.schedule(W)
        return start + (end - start) * (step / W)

    def __repr__(self):
        return (f"LinearWarmup({self.schedule!r}, warmup_steps={self.warmup_steps!r}, "
                f"start_factor={self.start_factor!r})")


class ReduceOnPlateau(Schedule):
    """Lower the learning rate when a monitored metric stops improving.

    Call :meth:`step` with the metric (a validation loss, say) once per evaluation; calling
    the schedule returns the current learning rate whatever the step count.  The rules are
    PyTorch's ``ReduceLROnPlateau`` with ``threshold_mode="rel"``:

    - a metric ``m`` is an improvement when ``m < best - threshold * |best|`` (mode "min") or
      ``m > best + threshold * |best|`` (mode "max"); ``best`` starts at +inf (-inf). It then
      becomes ``best`` and the count of bad evaluations goes back to 0; otherwise the count
      goes up by 1.  (PyTorch writes ``best * (1 - threshold)``, the same for ``best >= 0``;
      with ``|best|`` a negative metric is handled the same way.)  NaN is never an
      improvement, so a diverging run counts as not improving.
    - during a cooldown (the ``cooldown`` evaluations after a reduction) the count is held at 0.
    - when the count exceeds ``patience``, the learning rate becomes
      ``max(lr * factor, min_lr)``, the count goes back to 0 and the cooldown starts.

    Parameters
    ----------
    lr : float, > 0
        The initial learning rate.
    factor : float in (0, 1)
        Default 0.1.
    patience : int, >= 0
        Bad evaluations tolerated before a reduction; default 10 (the 11th reduces).
    threshold : float, >= 0
        Relative improvement needed to count as better; default 1e-4.
    mode : {"min", "max"}
        Whether smaller or larger metric values are better; default "min".
    cooldown : int, >= 0
        Evaluations after a reduction during which bad evaluations are not counted; default 0.
    min_lr : float in [0, lr]
        The learning rate never goes below this; default 0.

    Attributes
    ----------
    current_lr : float
        The learning rate now (what calling the schedule returns).
    best : float
        The best metric seen (+-inf before the first).
    num_bad_steps, cooldown_counter, n_reductions : int
    """

    needs_metric = True

    def __init__(self, lr, factor=0.1, patience=10, threshold=1e-4, mode="min", cooldown=0,
                 min_lr=0.0):
        self.lr = check_finite_number(lr, "lr", positive=True)
        self.factor = _check_fraction(factor, "factor", low=0, high=1, low_open=True,
                                      high_open=True)
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.threshold = check_finite_number(threshold, "threshold", nonnegative=True)
        if not isinstance(mode, str):
            raise TypeError(f"mode: expected 'min' or 'max', got {type(mode).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.cooldown = check_positive_int(cooldown, "cooldown", minimum=0)
        self.min_lr = _check_min_lr(min_lr, self.lr)
        self.current_lr = self.lr
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_steps = 0
        self.cooldown_counter = 0
        self.n_reductions = 0

    def __call__(self, step=None) -> float:
        """The current learning rate; ``step`` is accepted (and checked) for a uniform
        interface, but does not change the value."""
        if step is not None:
            _check_step(step)
        return self.current_lr

    def _is_better(self, m):
        if m != m:                              # NaN
            return False
        best = self.best
        if math.isinf(best):
            return m < best if self.mode == "min" else m > best
        if self.mode == "min":
            return m < best - self.threshold * abs(best)
        return m > best + self.threshold * abs(best)

    def step(self, metric) -> float:
        """Record one evaluation of the monitored metric; returns the (new) current lr.

        Parameters
        ----------
        metric : real number (Python or NumPy scalar, or a 0-d array)
        """
        if isinstance(metric, (bool, np.bool_)):
            raise TypeError("metric: expected a real number, got bool")
        if isinstance(metric, np.ndarray):
            if metric.ndim != 0 or metric.dtype.kind not in "iuf":
                raise TypeError(f"metric: expected a real number, got an array of shape "
                                f"{metric.shape} and dtype {metric.dtype}")
        elif not isinstance(metric, numbers.Real):
            raise TypeError(f"metric: expected a real number, got {type(metric).__name__}")
        m = float(metric)

        if self._is_better(m):
            self.best = m
            self.num_bad_steps = 0
        else:
            self.num_bad_steps += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_steps = 0
        if self.num_bad_steps > self.patience:
            new = max(self.current_lr * self.factor, self.min_lr)
            if new < self.current_lr:
                self.current_lr = new
                self.n_reductions += 1
            self.cooldown_counter = self.cooldown
            self.num_bad_steps = 0
        return self.current_lr

    def _params(self):
        return [("lr", self.lr), ("factor", self.factor), ("patience", self.patience),
                ("threshold", self.threshold), ("mode", self.mode),
                ("cooldown", self.cooldown), ("min_lr", self.min_lr)]


SCHEDULES = {
    "constant": Constant,
    "step_decay": StepDecay,
    "exponential": Exponential,
    "cosine": Cosine,
    "linear_warmup": LinearWarmup,
    "reduce_on_plateau": ReduceOnPlateau,
}
_ALIASES = {k.replace("_", ""): cls for k, cls in SCHEDULES.items()}


def get_schedule(spec, **kwargs) -> Schedule:
    """Make a schedule from a number, a schedule, or a name and its arguments.

    Parameters
    ----------
    spec : number, Schedule, str, or (str, dict)
        - a number: ``Constant(spec)``;
        - a :class:`Schedule`: returned as it is (no copy);
        - a name from :data:`SCHEDULES` (``"cosine"``; case, ``_`` and ``-`` are ignored, so
          the class name ``"StepDecay"`` works too): the class called with ``**kwargs``;
        - a pair ``(name, kwargs_dict)``: the same, in one value (handy in configs).
    **kwargs
        The schedule's arguments, with a name only.

    Returns
    -------
    Schedule

    Examples
    --------
    >>> get_schedule(0.1)
    Constant(lr=0.1)
    >>> get_schedule("cosine", lr=0.1, total_steps=100)
    Cosine(lr=0.1, total_steps=100, min_lr=0.0)
    >>> get_schedule(("linear_warmup", {"schedule_or_lr": ("step_decay", {"lr": 1.0,
    ...               "step_size": 10}), "warmup_steps": 5}))
    LinearWarmup(StepDecay(lr=1.0, step_size=10, gamma=0.1), warmup_steps=5, start_factor=0.0)
    """
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        name, params = spec
        if not isinstance(params, dict):
            raise TypeError(f"spec: expected (name, dict of arguments), got a "
                            f"{type(params).__name__} as the second item")
        if kwargs:
            raise TypeError(f"get_schedule: give the arguments either in spec's dict or as "
                            f"keywords, not both; got keywords {sorted(kwargs)}")
        return get_schedule(name, **params)
    if isinstance(spec, Schedule):
        if kwargs:
            raise TypeError(f"get_schedule: keyword arguments go with a schedule name, "
                            f"not with a schedule; got {sorted(kwargs)} with {spec!r}")
        return spec
    if isinstance(spec, (int, float, np.integer, np.floating)) and \
            not isinstance(spec, (bool, np.bool_)):
        if kwargs:
            raise TypeError(f"get_schedule: keyword arguments go with a schedule name, "
                            f"not with a number; got {sorted(kwargs)} with {spec!r}")
        return Constant(spec)
    if isinstance(spec, str):
        cls = _ALIASES.get(spec.strip().lower().replace("_", "").replace("-", ""))
        if cls is None:
            raise ValueError(f"spec: unknown schedule {spec!r}; expected one of "
                             f"{', '.join(SCHEDULES)}")
        sig = inspect.signature(cls)               # the constructor's, without self
        accepted = list(sig.parameters)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"{cls.__name__}: unexpected argument(s) {', '.join(unknown)}; "
                            f"expected some of {', '.join(accepted)}")
        required = [p.name for p in sig.parameters.values()
                    if p.name != "self" and p.default is inspect.Parameter.empty]
        missing = [p for p in required if p not in kwargs]
        if missing:
            raise TypeError(f"{cls.__name__}: missing required argument(s) "
                            f"{', '.join(missing)}")
        return cls(**kwargs)
    raise TypeError(f"spec: expected a learning rate (number), a Schedule, a schedule name or "
                    f"(name, dict), got {type(spec).__name__}")

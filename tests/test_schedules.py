"""Learning-rate schedules: values at chosen steps, plateau rules, get_schedule, bad arguments."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vgcore.train import schedules as S
from vgcore.train.schedules import (Constant, Cosine, Exponential, LinearWarmup, ReduceOnPlateau,
                              StepDecay, get_schedule)

approx = pytest.approx


# ---------------------------------------------------------------- values at chosen steps

def test_constant_is_the_same_at_every_step():
    s = Constant(0.05)
    assert [s(t) for t in (0, 1, 10, 10**9)] == [0.05] * 4


def test_step_decay_multiplies_by_gamma_every_step_size_steps():
    s = StepDecay(1.0, step_size=3, gamma=0.5)
    assert [s(t) for t in range(10)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_step_decay_default_gamma_is_a_tenth():
    s = StepDecay(0.2, step_size=5)
    assert s(4) == 0.2 and s(5) == approx(0.02, rel=1e-15) and s(10) == approx(0.002, rel=1e-15)


def test_exponential_is_lr_times_gamma_to_the_step():
    s = Exponential(2.0, gamma=0.5)
    assert [s(t) for t in range(5)] == [2.0, 1.0, 0.5, 0.25, 0.125]
    assert s(100_000) == 0.0                       # underflows quietly, never raises


def test_cosine_anneals_from_lr_to_min_lr_and_stays_there():
    s = Cosine(1.0, total_steps=100, min_lr=0.1)
    assert s(0) == 1.0
    assert s(50) == approx(0.55, rel=1e-14)                       # halfway: the mean
    assert s(25) == approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-14)
    assert s(100) == 0.1 and s(101) == 0.1 and s(10**6) == 0.1
    vals = [s(t) for t in range(101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))           # never goes up


def test_cosine_default_min_lr_reaches_zero():
    s = Cosine(0.3, total_steps=4)
    assert [s(t) for t in range(6)] == approx([0.3, 0.3 * (1 + 0.5 ** 0.5) / 2, 0.15,
                                               0.3 * (1 - 0.5 ** 0.5) / 2, 0.0, 0.0],
                                              rel=1e-14, abs=1e-17)


def test_warmup_ramps_linearly_from_start_factor_times_lr0_to_the_inner_value():
    s = LinearWarmup(Constant(1.0), warmup_steps=4)
    assert [s(t) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    s = LinearWarmup(0.8, warmup_steps=4, start_factor=0.5)          # a number is Constant
    assert [s(t) for t in range(5)] == approx([0.4, 0.5, 0.6, 0.7, 0.8], rel=1e-15)


def test_warmup_does_not_shift_the_wrapped_schedule():
    inner = Cosine(1.0, total_steps=10)
    s = LinearWarmup(inner, warmup_steps=4)
    for t in range(4, 15):
        assert s(t) == inner(t)                  # the inner clock is the global step count
    assert s(2) == approx(0.5 * inner(4), rel=1e-15)   # ramp from 0 towards inner(4)
    assert s(3) < s(4)                           # continuous, ends at inner(warmup_steps)


def test_warmup_start_uses_inner_value_at_step_zero():
    inner = StepDecay(1.0, step_size=2, gamma=0.5)      # inner(0) = 1, inner(4) = 0.25
    s = LinearWarmup(inner, warmup_steps=4, start_factor=1.0)
    assert [s(t) for t in range(5)] == approx([1.0, 0.8125, 0.625, 0.4375, 0.25], rel=1e-15)


def test_warmup_of_zero_steps_is_the_wrapped_schedule():
    inner = Exponential(1.0, 0.9)
    s = LinearWarmup(inner, warmup_steps=0)
    assert [s(t) for t in range(5)] == [inner(t) for t in range(5)]


def test_schedules_return_python_floats():
    for s in (Constant(1), StepDecay(1, 2), Exponential(1, 0.5), Cosine(1, 3),
              LinearWarmup(1, 2), ReduceOnPlateau(1)):
        assert type(s(np.int64(1))) is float


def test_repr_names_the_arguments_and_evaluates_to_an_equal_schedule():
    schedules = [Constant(0.1), StepDecay(0.1, 30, gamma=0.5), Exponential(0.1, 0.99),
                 Cosine(0.1, 1000, min_lr=1e-4),
                 LinearWarmup(Cosine(0.1, 1000), warmup_steps=50, start_factor=0.1),
                 ReduceOnPlateau(0.1, factor=0.5, patience=3, mode="max", cooldown=2,
                                 min_lr=1e-3)]
    ns = {name: getattr(S, name) for name in S.__all__}
    for s in schedules:
        r = repr(s)
        assert r.startswith(type(s).__name__ + "(")
        again = eval(r, ns)
        assert repr(again) == r
        assert [again(t) for t in (0, 7, 500, 2000)] == [s(t) for t in (0, 7, 500, 2000)]
    assert repr(Cosine(0.1, 1000)) == "Cosine(lr=0.1, total_steps=1000, min_lr=0.0)"


# ---------------------------------------------------------------- reduce on plateau

def feed(s, metrics):
    return [s.step(m) for m in metrics]


def test_plateau_reduces_after_more_than_patience_bad_evaluations():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=2)
    assert s() == 1.0 and s(123) == 1.0          # the step count does not matter
    # first value improves on +inf; then two bad ones are tolerated, the third reduces
    assert feed(s, [1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    assert s.step(1.0) == 0.5 and s() == 0.5 and s.n_reductions == 1
    assert s.num_bad_steps == 0
    assert feed(s, [1.0, 1.0, 1.0]) == [0.5, 0.5, 0.25]


def test_plateau_improvement_resets_the_bad_count():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=2)
    feed(s, [5.0, 5.0, 5.0])                     # two bad
    assert s.num_bad_steps == 2
    s.step(4.0)                                  # better: count back to 0
    assert s.num_bad_steps == 0 and s.best == 4.0
    assert feed(s, [4.0, 4.0, 4.0]) == [1.0, 1.0, 0.5]


def test_plateau_relative_threshold_decides_what_counts_as_better():
    s = ReduceOnPlateau(1.0, patience=0, threshold=0.1)
    s.step(10.0)
    s.step(9.5)                                  # 9.5 is not < 10 - 0.1*10 = 9: bad, reduces
    assert s.best == 10.0 and s() == approx(0.1)
    s.step(8.9)                                  # < 9: better
    assert s.best == 8.9 and s() == approx(0.1)


def test_plateau_threshold_is_relative_to_the_magnitude_for_negative_metrics():
    s = ReduceOnPlateau(1.0, patience=0, threshold=0.1)
    s.step(-10.0)
    s.step(-10.5)                                # needs < -10 - 0.1*10 = -11: bad
    assert s.best == -10.0 and s.n_reductions == 1
    s.step(-11.5)
    assert s.best == -11.5


def test_plateau_mode_max_treats_larger_as_better():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=1, threshold=0.0, mode="max")
    assert feed(s, [0.5, 0.6, 0.7]) == [1.0, 1.0, 1.0]      # rising accuracy: all better
    assert s.best == 0.7
    assert feed(s, [0.7, 0.6]) == [1.0, 0.5]               # equal is not better (threshold 0)


def test_plateau_cooldown_ignores_bad_evaluations_after_a_reduction():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=1, cooldown=2)
    feed(s, [1.0, 1.0])
    assert s.step(1.0) == 0.5 and s.cooldown_counter == 2
    # two cooldown evaluations count nothing, then patience 1 applies again
    assert feed(s, [1.0, 1.0]) == [0.5, 0.5] and s.num_bad_steps == 0
    assert feed(s, [1.0, 1.0]) == [0.5, 0.25]


def test_plateau_never_goes_below_min_lr():
    s = ReduceOnPlateau(1.0, factor=0.1, patience=0, min_lr=0.05)
    feed(s, [1.0, 1.0])
    assert s() == approx(0.1)
    s.step(1.0)
    assert s() == 0.05 and s.n_reductions == 2
    feed(s, [1.0] * 5)
    assert s() == 0.05 and s.n_reductions == 2   # clamped: no further reductions counted


def test_plateau_counts_nan_as_not_improving():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=1)
    s.step(1.0)
    feed(s, [float("nan"), np.float32("nan")])
    assert s() == 0.5 and s.best == 1.0


def test_plateau_accepts_numpy_scalars_and_zero_d_arrays():
    s = ReduceOnPlateau(1.0)
    s.step(np.float32(2.0))
    s.step(np.array(1.0))
    s.step(3)
    assert s.best == 1.0


def test_warmup_passes_the_metric_on_to_a_wrapped_plateau():
    inner = ReduceOnPlateau(1.0, factor=0.5, patience=0)
    s = LinearWarmup(inner, warmup_steps=2)
    assert s.needs_metric and not LinearWarmup(1.0, 2).needs_metric
    assert s(1) == 0.5
    s.step(1.0)
    s.step(1.0)
    assert inner() == 0.5 and s(1) == 0.25 and s(5) == 0.5
    with pytest.raises(TypeError, match="takes no metric"):
        LinearWarmup(1.0, 2).step(1.0)


# ---------------------------------------------------------------- get_schedule

def test_get_schedule_turns_a_number_into_constant_and_returns_schedules_as_they_are():
    c = get_schedule(0.1)
    assert isinstance(c, Constant) and c.lr == 0.1
    assert isinstance(get_schedule(np.float32(0.5)), Constant)
    s = Cosine(1.0, 10)
    assert get_schedule(s) is s


def test_get_schedule_builds_a_schedule_from_a_name_and_keywords():
    s = get_schedule("cosine", lr=0.1, total_steps=100, min_lr=0.01)
    assert repr(s) == "Cosine(lr=0.1, total_steps=100, min_lr=0.01)"
    for name in ("step_decay", "StepDecay", "step-decay", " STEP_DECAY "):
        assert isinstance(get_schedule(name, lr=1.0, step_size=2), StepDecay)
    assert set(S.SCHEDULES) == {"constant", "step_decay", "exponential", "cosine",
                                "linear_warmup", "reduce_on_plateau"}


def test_get_schedule_accepts_a_name_and_dict_pair_nested_in_warmup():
    s = get_schedule(("linear_warmup", {"schedule_or_lr": ("exponential",
                                                           {"lr": 1.0, "gamma": 0.5}),
                                        "warmup_steps": 2}))
    assert isinstance(s, LinearWarmup) and isinstance(s.schedule, Exponential)
    assert [s(t) for t in range(4)] == [0.0, 0.125, 0.25, 0.125]


@pytest.mark.parametrize("args, kwargs, exc, match", [
    (("nope",), {"lr": 1}, ValueError, "spec: unknown schedule 'nope'; expected one of constant"),
    (("cosine",), {"lr": 1}, TypeError, "Cosine: missing required argument.*total_steps"),
    (("cosine",), {"lr": 1, "total_steps": 5, "gama": 1}, TypeError,
     "Cosine: unexpected argument.*gama"),
    ((0.1,), {"gamma": 0.5}, TypeError, "not with a number"),
    ((Constant(1.0),), {"lr": 2}, TypeError, "not with a schedule"),
    ((("cosine", [1, 2]),), {}, TypeError, "spec: expected \\(name, dict"),
    ((("cosine", {"lr": 1, "total_steps": 2}),), {"lr": 2}, TypeError, "not both"),
    ((True,), {}, TypeError, "spec: expected a learning rate .* got bool"),
    ((lambda t: 0.1,), {}, TypeError, "spec: expected .* got function"),
    ((None,), {}, TypeError, "got NoneType"),
    ((-0.1,), {}, ValueError, "lr: expected a number > 0, got -0.1"),
])
def test_get_schedule_rejects_bad_specs_naming_the_problem(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        get_schedule(*args, **kwargs)


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("make, exc, match", [
    (lambda: Constant(0), ValueError, "lr: expected a number > 0, got 0.0"),
    (lambda: Constant(float("nan")), ValueError, "lr: expected a finite number"),
    (lambda: Constant("0.1"), TypeError, "lr: expected a number, got str"),
    (lambda: StepDecay(1.0, 0), ValueError, "step_size: expected an integer >= 1, got 0"),
    (lambda: StepDecay(1.0, 2.5), TypeError, "step_size: expected an integer, got float"),
    (lambda: StepDecay(1.0, 2, gamma=0), ValueError, r"gamma: expected a number in \(0, 1\]"),
    (lambda: StepDecay(1.0, 2, gamma=1.5), ValueError, r"gamma: .*\(0, 1\], got 1.5"),
    (lambda: Exponential(1.0, 2.0), ValueError, r"gamma: expected a number in \(0, 1\]"),
    (lambda: Exponential(1.0, -0.5), ValueError, "gamma"),
    (lambda: Cosine(1.0, 0), ValueError, "total_steps: expected an integer >= 1, got 0"),
    (lambda: Cosine(1.0, 10, min_lr=2.0), ValueError,
     r"min_lr: expected a number <= lr \(1.0\), got 2.0"),
    (lambda: Cosine(1.0, 10, min_lr=-1e-3), ValueError, "min_lr: expected a number >= 0"),
    (lambda: LinearWarmup(1.0, -1), ValueError, "warmup_steps: expected an integer >= 0, got -1"),
    (lambda: LinearWarmup(1.0, 5, start_factor=1.5), ValueError,
     r"start_factor: expected a number in \[0, 1\], got 1.5"),
    (lambda: LinearWarmup("cosin", 5), ValueError, "spec: unknown schedule 'cosin'"),
    (lambda: ReduceOnPlateau(1.0, factor=1.0), ValueError,
     r"factor: expected a number in \(0, 1\), got 1.0"),
    (lambda: ReduceOnPlateau(1.0, factor=0), ValueError, "factor"),
    (lambda: ReduceOnPlateau(1.0, patience=-1), ValueError,
     "patience: expected an integer >= 0, got -1"),
    (lambda: ReduceOnPlateau(1.0, threshold=-1e-4), ValueError,
     "threshold: expected a number >= 0"),
    (lambda: ReduceOnPlateau(1.0, mode="minimum"), ValueError,
     "mode: expected 'min' or 'max', got 'minimum'"),
    (lambda: ReduceOnPlateau(1.0, mode=None), TypeError,
     "mode: expected 'min' or 'max', got NoneType"),
    (lambda: ReduceOnPlateau(1.0, cooldown=1.0), TypeError,
     "cooldown: expected an integer, got float"),
    (lambda: ReduceOnPlateau(1.0, min_lr=1.5), ValueError, "min_lr: expected a number <= lr"),
])
def test_constructors_reject_bad_arguments_naming_them(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("step, exc, match", [
    (-1, ValueError, "step: expected a non-negative integer .*got -1"),
    (1.0, TypeError, "step: expected a non-negative integer .*got float"),
    (True, TypeError, "got bool"),
    ("3", TypeError, "got str"),
    (None, TypeError, "got NoneType"),
])
def test_calling_with_a_bad_step_names_the_argument(step, exc, match):
    for s in (Constant(1.0), Cosine(1.0, 10), LinearWarmup(StepDecay(1.0, 2), 3)):
        with pytest.raises(exc, match=match):
            s(step)
    if step is not None:                         # the plateau's step is optional
        with pytest.raises(exc, match=match):
            ReduceOnPlateau(1.0)(step)


@pytest.mark.parametrize("metric, match", [
    (True, "metric: expected a real number, got bool"),
    ("0.5", "metric: expected a real number, got str"),
    (None, "got NoneType"),
    (np.array([1.0, 2.0]), r"metric: expected a real number, got an array of shape \(2,\)"),
    (1 + 2j, "got complex"),
])
def test_plateau_step_rejects_non_numbers(metric, match):
    s = ReduceOnPlateau(1.0)
    with pytest.raises(TypeError, match=match):
        s.step(metric)
    assert s.num_bad_steps == 0 and s.best == math.inf       # state untouched

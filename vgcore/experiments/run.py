"""What ``vgcore compare`` and ``vgcore sweep`` share: the generated data sets, the optimisers by
name, one training run (random mini-batches, a Recorder, divergence caught) and its diagnosis
and held-out evaluation.  One definition, so a configuration trained by either gives the same
numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import vgcore as vg
from vgcore.core.errors import NonFiniteError
from vgcore.measure.diagnosis import Finding, diagnose

OPTIMIZERS = {           # name -> default learning rate
    "sgd": 0.02,
    "momentum": 0.002,   # SGD with momentum 0.9
    "nesterov": 0.002,   # SGD with Nesterov momentum 0.9
    "rmsprop": 0.001,
    "adagrad": 0.01,
    "adam": 0.001,
    "adamw": 0.001,
}
DATASETS = ("gaussian_mixture", "two_spirals", "digits", "teacher_student")

N_SAMPLES = 5120          # generated data sets: 80% training, 20% held out
N_FEATURES = 64
HELD_OUT = 0.2


@dataclass
class Data:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    loss: str
    n_classes: int | None
    description: str

    @property
    def chance(self):
        return None if self.n_classes is None else 1.0 / self.n_classes

    @property
    def n_outputs(self):
        return self.n_classes if self.n_classes else self.y_train.shape[1]


def check_residual(value):
    """None, 'auto' or a finite non-zero scale (from text or a TOML value)."""
    if value is None or value is False:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected 'none', 'auto' or a number for residual, got {value!r}")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("none", "off", "no"):
            return None
        if key == "auto":
            return "auto"
        try:
            value = float(key)
        except ValueError:
            raise ValueError(f"expected 'none', 'auto' or a number for residual, got "
                             f"{value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value == 0:
        raise ValueError(f"expected 'none', 'auto' or a finite non-zero number for residual, "
                         f"got {value!r}")
    return float(value)


def load_data(name, n_samples=N_SAMPLES):
    """One of :data:`DATASETS`, generated in code from seed 0 (always the same samples), split
    80/20 into training and held-out data.

    Raises ImportError (with the reason) for ``digits`` without scikit-learn.
    """
    ds = vg.datasets
    if name == "gaussian_mixture":
        X, y = ds.gaussian_mixture(n_samples, N_FEATURES, 10, seed=0)
        loss, k, what = "cross_entropy", 10, f"10-class Gaussian mixture, {N_FEATURES} features"
    elif name == "two_spirals":
        X, y = ds.two_spirals(n_samples, seed=0)
        loss, k, what = "cross_entropy", 2, "two spirals, 2 features, 2 classes"
    elif name == "digits":
        try:
            X, y = ds.digits(seed=0)
        except ImportError:
            raise ImportError("dataset digits needs scikit-learn (pip install scikit-learn); "
                              "try gaussian_mixture or two_spirals") from None
        loss, k, what = "cross_entropy", 10, "8x8 digits, 64 features, 10 classes"
    elif name == "teacher_student":
        X, y = ds.teacher_student(n_samples, N_FEATURES, 1, seed=0)
        loss, k, what = "mse", None, (f"teacher-student regression, {N_FEATURES} features, "
                                      f"mean squared error")
    else:
        raise ValueError(f"dataset: unknown {name!r}; expected one of {', '.join(DATASETS)}")
    Xtr, ytr, Xte, yte = ds.train_val_split(X, y, HELD_OUT, seed=0)
    Xtr, Xte = np.ascontiguousarray(Xtr), np.ascontiguousarray(Xte)
    ytr, yte = np.ascontiguousarray(ytr), np.ascontiguousarray(yte)
    return Data(name, Xtr, ytr, Xte, yte, loss, k,
                f"{what}; {len(Xtr)} training and {len(Xte)} held-out samples")


def make_optimizer(net, name, lr, *, weight_decay=None, clip_norm=None):
    """The optimiser called ``name`` (a key of :data:`OPTIMIZERS`) for ``net``; weight decay
    None means the optimiser's default (0.01 for AdamW, none for the others)."""
    o = vg.optim
    kw = {"lr": lr, "clip_norm": clip_norm}
    if weight_decay is not None:
        kw["weight_decay"] = weight_decay
    if name == "sgd":
        return o.SGD(net, **kw)
    if name == "momentum":
        return o.SGD(net, momentum=0.9, **kw)
    if name == "nesterov":
        return o.SGD(net, momentum=0.9, nesterov=True, **kw)
    return {"rmsprop": o.RMSprop, "adagrad": o.Adagrad, "adam": o.Adam,
            "adamw": o.AdamW}[name](net, **kw)


def record_steps(steps, max_records):
    """``max_records`` evenly spaced steps of ``range(steps)``, the first and last included."""
    k = max(1, math.ceil(steps / max(1, max_records - 1)))
    return sorted(set(range(0, steps, k)) | {steps - 1})


def train_steps(net, opt, data, steps, batch_size, seed, recorder, on_step=None):
    """``steps`` steps on random mini-batches (drawn with replacement from
    ``np.random.default_rng([seed, 1])``), offering every step to ``recorder``.

    Returns ``(losses, diverged)``: the loss of every step (NaN after a divergence) and the step
    at which the loss or the network's output stopped being finite, or None.
    """
    rng = np.random.default_rng([seed, 1])
    n = data.X_train.shape[0]
    losses = np.full(steps, np.nan)
    diverged = None
    for step in range(steps):
        idx = rng.integers(0, n, batch_size)
        try:
            loss = net.train_step(data.X_train[idx], data.y_train[idx], data.loss, opt)
        except NonFiniteError:         # the step's forward or backward pass overflowed
            diverged = step
            break
        losses[step] = loss
        recorder.record(net, step)
        if not math.isfinite(loss):
            diverged = step
            break
        if on_step is not None:
            on_step(step)
    return losses, diverged


def findings_of(recorder, net, diverged, optimizer=None):
    """The diagnosis of a run (worded for its network and ``optimizer``), a divergence first;
    never empty."""
    findings = []
    if len(recorder):
        try:
            findings = diagnose(recorder, net=net, optimizer=optimizer)
        except (ValueError, RuntimeError):
            findings = []
    if diverged is not None and not any(f.kind == "nonfinite" for f in findings):
        findings.insert(0, Finding("nonfinite", "error",
                                   f"nonfinite: training diverged at step {diverged} (NaN or "
                                   f"Inf in the network's output); try a lower learning rate "
                                   f"or gradient clipping",
                                   {"step": diverged}))
    if not findings:
        findings = [Finding("no_gradient", "info", "no_gradient: nothing was recorded")]
    return findings


def held_out(net, data, diverged):
    """``{"loss", "accuracy"}`` on the held-out data (NaN after a divergence; accuracy None
    for regression)."""
    test = {"loss": math.nan, "accuracy": math.nan if data.n_classes else None}
    if diverged is None:
        try:
            ev = vg.evaluate(net, data.X_test, data.y_test, loss=data.loss)
            test = {"loss": float(ev["loss"]), "accuracy": ev.get("accuracy")}
        except ValueError:
            pass
    return test

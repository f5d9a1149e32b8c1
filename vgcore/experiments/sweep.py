"""Sweeps: many training runs over a grid of configurations, on one core, on every local core or
on a Dask cluster, with their gradient-flow measurements gathered into one table.

::

    import vgcore as vg

    sweep = vg.sweep.Sweep(
        base={"dataset": "gaussian_mixture", "width": 64, "steps": 300, "lr": 0.01},
        grid={"activation": ["tanh", "relu"], "depth": [5, 10, 20, 40],
              "sigma_w2": [0.5, 1.0, 1.5, 2.0, 3.0], "seed": [0, 1]})
    result = vg.sweep.run(sweep, "edge-of-chaos", executor="processes")
    result.rows[0]["final_loss"], result.history(result.rows[0]["run_id"])["loss"]
    vg.sweep.plot_phase_diagram(result, "phase.png", metric="final_loss")

or ``vgcore sweep edge.toml`` with the same settings in a TOML file (``vgcore sweep --example``
prints one).

A sweep
    ``base`` settings shared by every run, a ``grid`` (parameter -> list of values: every
    combination is run) and/or a list of explicit ``runs`` (each is combined with every grid
    point).  The parameters are those of :data:`PARAMS`; every run is a complete configuration
    (defaults filled in), and its ``run_id`` is a hash of that configuration, so the same
    configuration has the same id in every sweep and on every machine.

A run
    Builds ``vg.MLP([n_in] + [width] * depth + [n_out])`` on a data set generated in code
    (always the same samples: ``vgcore.datasets`` with seed 0, 80% for training, 20% held out),
    trains ``steps`` steps on random mini-batches drawn from ``seed``, records the per-layer
    gradient flow at ``records`` evenly spaced steps with a :class:`vgcore.Recorder`, diagnoses
    it and evaluates the held-out data.  Its result depends only on its configuration (seed
    included) and on ``threads``: whatever the executor, the numbers are bit-identical.

Executors
    ``"serial"`` (this process, one run after the other), ``"processes"`` (a pool of ``workers``
    local processes, default one per core, each run on ``threads`` threads, default 1, so runs
    do not fight over cores) and ``"dask"`` (a ``dask.distributed`` cluster: ``client=`` a
    ``Client``, or ``scheduler="tcp://host:8786"``, or neither to start a ``LocalCluster`` of
    ``workers`` single-threaded worker processes; needs ``pip install "vgcore[dask]"``; the
    workers need vgcore installed).  A run sets the number of threads of the process it runs in
    (vgcore's and BLAS's) to ``threads``.

Results (in the ``out`` folder)
    ``results.jsonl``: one line per finished run, appended (and flushed to disk) as each run
    finishes: the journal that makes a sweep resumable.  Run the same sweep into the same folder
    again and the runs it holds are skipped (``retry_failed=True`` runs the failed ones again).
    ``histories/<run_id>.json.gz``: the run's loss at every step and its Recorder (gzip-compressed
    JSON; read with :meth:`SweepResult.history`).  At the end: ``results.csv`` (one row per run,
    in the sweep's order; the columns in :data:`COLUMNS`), ``results.parquet`` (with pyarrow),
    ``phase_<metric>.png`` (with matplotlib, when the sweep has at least two depths and two
    weight variances) and ``sweep.json`` (the sweep's settings and its runs).

A run that fails (a configuration vgcore refuses, an error while training, a worker that died)
is recorded with ``status="failed"`` and its ``error``; a run whose loss or output stops being
finite is recorded with ``status="diverged"`` and the step (``diverged_at``).  Neither stops the
sweep.
"""
from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import itertools
import json
import math
import numbers
import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np

import vgcore as vg
from vgcore.core import _ui
from vgcore.core._files import atomic_write
from vgcore.experiments import run as _exp

__all__ = ["Sweep", "SweepResult", "run", "load", "execute", "run_id", "read_journal",
           "plot_phase_diagram", "phase_grid", "PhasePanel", "PARAMS", "METRICS", "COLUMNS",
           "EXECUTORS"]

FORMAT = "vgcore.sweep"
VERSION = 1
EXECUTORS = ("serial", "processes", "dask")


# ============================================================================ parameters
def _int_at_least(minimum):
    def check(value, name):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        return int(value)
    return check


def _float(minimum, *, strict, optional):
    def check(value, name):
        if value is None and optional:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a number {'>' if strict else '>='} {minimum}"
                            f"{' or none' if optional else ''}, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or v < minimum or (strict and v == minimum):
            raise ValueError(f"{name}: expected a finite number {'>' if strict else '>='} "
                             f"{minimum}, got {value!r}")
        return v
    return check


def _choice(choices, *, optional=False):
    def check(value, name):
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        key = value.strip().lower().replace("-", "_")
        if optional and key in ("none", ""):
            return None
        if key not in choices:
            raise ValueError(f"{name}: unknown {value!r}; expected one of {', '.join(choices)}")
        return key
    return check


def _residual(value, name):
    try:
        return _exp.check_residual(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


PARAMS = {
    # name: (default, check, meaning)
    "dataset": ("gaussian_mixture", _choice(_exp.DATASETS),
                "generated data set: " + ", ".join(_exp.DATASETS)),
    "n_samples": (_exp.N_SAMPLES, _int_at_least(10),
                  "samples generated (80% training, 20% held out); digits has its own 1797"),
    "depth": (10, _int_at_least(1), "hidden layers"),
    "width": (64, _int_at_least(1), "units per hidden layer"),
    "activation": ("tanh", _choice(tuple(vg.ACTIVATIONS)), "hidden activation"),
    "init": (None, _choice(tuple(vg.INITIALISERS), optional=True),
             "initialiser; default 'normal' when sigma_w2 is given, else 'standard'"),
    "sigma_w2": (None, _float(0.0, strict=True, optional=True),
                 "weight variance times fan-in: W ~ N(0, sigma_w2 / fan_in) (init 'normal'), "
                 "or the squared gain of init 'orthogonal'"),
    "sigma_b2": (0.0, _float(0.0, strict=False, optional=False),
                 "bias variance: b ~ N(0, sigma_b2); 0 = zero biases"),
    "norm": (None, _choice(("batch", "layer"), optional=True), "none, batch or layer"),
    "residual": (None, _residual, "none, 'auto' (1/sqrt(depth)) or the residual scale"),
    "optimizer": ("sgd", _choice(tuple(_exp.OPTIMIZERS)), ", ".join(_exp.OPTIMIZERS)),
    "lr": (None, _float(0.0, strict=True, optional=True),
           "learning rate; default " + ", ".join(f"{k} {v:g}"
                                                 for k, v in _exp.OPTIMIZERS.items())),
    "weight_decay": (None, _float(0.0, strict=False, optional=True),
                     "weight decay; default none (AdamW: 0.01)"),
    "clip_norm": (None, _float(0.0, strict=True, optional=True),
                  "clip the gradient's global norm to this; default none"),
    "steps": (500, _int_at_least(1), "training steps"),
    "batch_size": (64, _int_at_least(1), "mini-batch size"),
    "seed": (0, _int_at_least(0), "seed of the initialisation and of the mini-batches"),
    "dtype": ("float32", _choice(("float32", "float64")), "float32 or float64"),
    "records": (32, _int_at_least(2), "steps recorded in the run's history (evenly spaced)"),
}
"""The parameters of a run: ``name -> (default, check, meaning)``."""

METRICS = {
    "final_loss": "mean training loss over the last 10% of steps (NaN if diverged)",
    "test_loss": "held-out loss after training (NaN if diverged)",
    "test_accuracy": "held-out accuracy after training (classification only)",
    "grad_ratio_init": "||dL/dW_1|| / ||dL/dW_out|| at the first step (GradientFlow.grad_ratio)",
    "delta_ratio_init": "||delta_1|| / ||delta_out|| at the first step",
    "grad_ratio_final": "||dL/dW_1|| / ||dL/dW_out|| at the last recorded step",
    "delta_ratio_final": "||delta_1|| / ||delta_out|| at the last recorded step",
    "saturated_fraction": "saturated units, mean over hidden layers and recorded steps",
    "dead_fraction": "dead units, mean over hidden layers and recorded steps",
    "diverged_at": "the step at which the loss or output stopped being finite, or empty",
    "steps_done": "steps trained",
    "finding": "kind of the first vgcore.diagnose finding",
    "finding_text": "its message",
    "sigma_w2_eff": "the hidden layers' weight variance times fan-in (vgcore.theory."
                    "effective_sigma_w2)",
    "chi1": "mean-field chi_1 at the fixed point for (activation, sigma_w2_eff, sigma_b2); "
            "< 1 ordered (vanishing), > 1 chaotic (exploding); empty with norm or residual",
    "n_params": "trainable parameters",
}
"""The measured columns of a run's row, with their meaning."""

COLUMNS = ("run_id", "status") + tuple(PARAMS) + tuple(METRICS) + ("error", "threads",
                                                                    "seconds", "worker")
"""The columns of ``results.csv`` / ``results.parquet`` / :attr:`SweepResult.rows`.
``threads`` is the thread count the run ran with (the results are bit-identical for the same
configuration and thread count); ``seconds`` (the run's wall time) and ``worker`` (host:pid)
are the only ones that depend on where and when a run ran."""

_INT_METRICS = ("diverged_at", "steps_done", "n_params")
_STR_METRICS = ("finding", "finding_text")


def _canonical(settings, where):
    """A complete configuration: every parameter checked, defaults filled in."""
    if not isinstance(settings, dict):
        raise TypeError(f"{where}: expected a table of parameters, got {settings!r}")
    cfg = {}
    for raw, value in settings.items():
        key = str(raw).replace("-", "_")
        if key not in PARAMS:
            raise ValueError(f"{where}: unknown parameter {raw!r}; expected some of "
                             f"{', '.join(PARAMS)}")
        cfg[key] = PARAMS[key][1](value, f"{where}: {raw}")
    out = {}
    for key, (default, check, _) in PARAMS.items():
        out[key] = cfg.get(key, default)
    if out["init"] is None:
        out["init"] = "normal" if out["sigma_w2"] is not None else "standard"
    if out["lr"] is None:
        out["lr"] = _exp.OPTIMIZERS[out["optimizer"]]
    return out


def run_id(config) -> str:
    """The id of a complete configuration: 12 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ============================================================================ the sweep
class Sweep:
    """A set of run configurations: ``base`` settings, a ``grid`` and/or explicit ``runs``.

    Parameters
    ----------
    grid : dict, optional
        ``parameter -> list of values``; every combination is a run (a single value may be
        given without a list).
    runs : list of dict, optional
        Explicit configurations; each is combined with every point of the grid.  A parameter
        may not be set both by a run and by the grid.
    base : dict, optional
        Settings of every run (overridden by ``runs`` and ``grid``).
    name : str, optional
        A name for the reports.
    plot : dict, optional
        Phase-diagram settings: ``x`` (default ``"sigma_w2_eff"``), ``y`` (``"depth"``) and
        ``metrics`` (``["final_loss", "grad_ratio_init"]``).

    Raises
    ------
    ValueError, TypeError
        For an unknown parameter, a value of the wrong kind or out of range, an unknown name
        (activation, initialiser, optimiser, ...), an empty list; the message names the entry.
        Combinations vgcore refuses (say ``init = "he_normal"`` with ``sigma_w2``) are not
        checked here: such a run is recorded as failed, with the reason.
    """

    def __init__(self, grid=None, runs=None, base=None, *, name=None, plot=None):
        self.name = "sweep" if name is None else _check_name(name)
        self.base = dict(base or {})
        self.grid = {}
        for raw, values in (grid or {}).items():
            if isinstance(values, (list, tuple)):
                values = list(values)
            elif isinstance(values, np.ndarray):
                values = values.tolist()
            else:
                values = [values]
            if not values:
                raise ValueError(f"grid: {raw}: expected a non-empty list of values")
            self.grid[str(raw).replace("-", "_")] = values
        if runs is not None and not isinstance(runs, (list, tuple)):
            raise TypeError(f"runs: expected a list of tables of parameters, got {runs!r}")
        self.runs = [dict(r) if isinstance(r, dict) else r for r in (runs or [])]
        self.plot = _check_plot(plot or {})
        self._configs = self._expand()

    @classmethod
    def from_dict(cls, data, where="sweep"):
        """A sweep from a dict laid out as the TOML file: top-level parameters (the base),
        ``grid``, ``runs`` (or ``run``), ``name`` and ``plot``."""
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected a table, got {data!r}")
        base, grid, runs, name, plot = {}, None, None, None, None
        for key, value in data.items():
            if key == "grid":
                if not isinstance(value, dict):
                    raise TypeError(f"{where}: grid: expected a table [grid] of parameter = "
                                    f"[values], got {value!r}")
                grid = value
            elif key in ("runs", "run"):
                if isinstance(value, dict):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise TypeError(f"{where}: {key}: expected [[{key}]] tables, got {value!r}")
                runs = value
            elif key == "name":
                name = value
            elif key == "plot":
                plot = value
            else:
                base[key] = value
        try:
            return cls(grid=grid, runs=runs, base=base, name=name, plot=plot)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{where}: {e}") from None

    @classmethod
    def from_toml(cls, path):
        """A sweep from a TOML file (see ``vgcore sweep --example``)."""
        try:
            import tomllib
        except ImportError:                 # Python < 3.11
            import tomli as tomllib
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such sweep file: {path}") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a folder, expected a TOML file") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {' '.join(str(e).split())}") from None
        if "name" not in data:
            data = {"name": os.path.splitext(os.path.basename(path))[0] or "sweep", **data}
        return cls.from_dict(data, where=os.path.basename(path))

    def _expand(self):
        _canonical(self.base, "base")                    # report base errors as such
        for key, values in self.grid.items():
            for i, v in enumerate(values):
                _canonical({**self.base, key: v}, f"grid: {key}[{i}]")
        entries = self.runs or [{}]
        out, seen = [], set()
        for i, entry in enumerate(entries):
            where = f"runs[{i}]" if self.runs else "base"
            if not isinstance(entry, dict):
                raise TypeError(f"{where}: expected a table of parameters, got {entry!r}")
            both = sorted(set(k.replace("-", "_") for k in entry) & set(self.grid))
            if both:
                raise ValueError(f"{where}: {both[0]!r} is set both here and in the grid; set "
                                 f"it in one place")
            keys = list(self.grid)
            for combo in itertools.product(*(self.grid[k] for k in keys)):
                cfg = _canonical({**self.base, **entry, **dict(zip(keys, combo))}, where)
                rid = run_id(cfg)
                if rid not in seen:                    # the same configuration twice: one run
                    seen.add(rid)
                    out.append(cfg)
        return out

    @property
    def configs(self) -> list:
        """The complete configurations, in the sweep's order (copies)."""
        return [dict(c) for c in self._configs]

    @property
    def run_ids(self) -> list:
        return [run_id(c) for c in self._configs]

    def varying(self) -> list:
        """The parameters that take more than one value across the runs."""
        return [k for k in PARAMS if len({json.dumps(c[k]) for c in self._configs}) > 1]

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "grid": self.grid, "runs": self.runs,
                "plot": self.plot}

    def __len__(self):
        return len(self._configs)

    def __repr__(self):
        return (f"Sweep(name={self.name!r}, runs={len(self)}, "
                f"varying={', '.join(self.varying()) or 'nothing'})")


def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name: expected a non-empty string, got {name!r}")
    return " ".join(name.split())


_PLOT_KEYS = ("x", "y", "metrics")
_PLOT_AXES = tuple(PARAMS) + ("sigma_w2_eff",)


def _check_plot(plot):
    if not isinstance(plot, dict):
        raise TypeError(f"plot: expected a table, got {plot!r}")
    out = {"x": "sigma_w2_eff", "y": "depth", "metrics": ["final_loss", "grad_ratio_init"]}
    for key, value in plot.items():
        if key not in _PLOT_KEYS:
            raise ValueError(f"plot: unknown key {key!r}; expected some of "
                             f"{', '.join(_PLOT_KEYS)}")
        if key in ("x", "y"):
            if value not in _PLOT_AXES:
                raise ValueError(f"plot: {key}: expected one of {', '.join(_PLOT_AXES)}, got "
                                 f"{value!r}")
            out[key] = value
        else:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values \
                    or any(v not in _PLOTTABLE for v in values):
                raise ValueError(f"plot: metrics: expected a list of {', '.join(_PLOTTABLE)}, "
                                 f"got {value!r}")
            out[key] = list(values)
    return out


# ============================================================================ one run
@functools.lru_cache(maxsize=4)
def _data(name, n_samples):
    return _exp.load_data(name, n_samples)


def _set_threads(threads):
    vg.set_num_threads(threads)                # vgcore's and every BLAS's


def _nan_metrics():
    m = {k: math.nan for k in METRICS}
    for k in _INT_METRICS:
        m[k] = None
    for k in _STR_METRICS:
        m[k] = ""
    m["steps_done"] = 0
    return m


def _train(cfg):
    """Train one configuration; returns ``(metrics, history)``."""
    data = _data(cfg["dataset"], cfg["n_samples"])
    sizes = [data.X_train.shape[1]] + [cfg["width"]] * cfg["depth"] + [data.n_outputs]
    sigma_w = None if cfg["sigma_w2"] is None else math.sqrt(cfg["sigma_w2"])
    sigma_b = math.sqrt(cfg["sigma_b2"]) if cfg["sigma_b2"] > 0 else None
    net = vg.MLP(sizes, activation=cfg["activation"], init=cfg["init"], dtype=cfg["dtype"],
                 seed=cfg["seed"], sigma_w=sigma_w, sigma_b=sigma_b, norm=cfg["norm"],
                 residual=cfg["residual"])
    opt = _exp.make_optimizer(net, cfg["optimizer"], cfg["lr"],
                              weight_decay=cfg["weight_decay"], clip_norm=cfg["clip_norm"])
    if net.dtype != data.X_train.dtype:
        data = _exp.Data(data.name, data.X_train.astype(net.dtype),
                         data.y_train if data.n_classes else data.y_train.astype(net.dtype),
                         data.X_test.astype(net.dtype),
                         data.y_test if data.n_classes else data.y_test.astype(net.dtype),
                         data.loss, data.n_classes, data.description)
    steps = cfg["steps"]
    rec = vg.Recorder(schedule=_exp.record_steps(steps, cfg["records"]),
                      max_records=cfg["records"] + 1)
    losses, diverged = _exp.train_steps(net, opt, data, steps, cfg["batch_size"], cfg["seed"],
                                        rec)
    findings = _exp.findings_of(rec, net, diverged)
    test = _exp.held_out(net, data, diverged)

    m = _nan_metrics()
    done = steps if diverged is None else diverged
    m["steps_done"] = int(done)
    m["diverged_at"] = diverged
    if diverged is None:
        tail = losses[steps - max(1, steps // 10):]
        m["final_loss"] = float(np.mean(tail))
    m["test_loss"] = test["loss"]
    m["test_accuracy"] = math.nan if test["accuracy"] is None else float(test["accuracy"])
    H = cfg["depth"]
    if len(rec):
        gr, dr = rec.history("grad_ratio"), rec.history("delta_ratio")
        m.update(grad_ratio_init=float(gr[0]), delta_ratio_init=float(dr[0]),
                 grad_ratio_final=float(gr[-1]), delta_ratio_final=float(dr[-1]))
        # no saturating units: the nanmean of an all-NaN slice is NaN, without a warning
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m["saturated_fraction"] = float(np.nanmean(rec.history("saturated_fraction")[:, :H]))
            m["dead_fraction"] = float(np.nanmean(rec.history("dead_fraction")[:, :H]))
    m["finding"] = findings[0].kind
    m["finding_text"] = findings[0].message
    m["n_params"] = int(net.n_params)
    m["sigma_w2_eff"] = float(vg.theory.effective_sigma_w2(cfg["init"], cfg["width"],
                                                           cfg["width"], sigma_w)) \
        if H > 1 else math.nan
    if cfg["norm"] is None and cfg["residual"] is None and math.isfinite(m["sigma_w2_eff"]):
        try:
            m["chi1"] = float(vg.theory.chi1(cfg["activation"], m["sigma_w2_eff"],
                                             cfg["sigma_b2"]))
        except (ValueError, RuntimeError, ArithmeticError):
            pass
    history = {"loss": [None if not math.isfinite(x) else float(x) for x in losses[:done]],
               "recorder": rec._json_object()}
    return m, history


def _worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(config, threads=1) -> dict:
    """Run one complete configuration (as in :attr:`Sweep.configs`) on ``threads`` threads.

    Every executor runs this (in a worker process or here).  It never raises for a failing
    run: the result's ``status`` is ``"ok"``, ``"diverged"`` or ``"failed"`` (with ``error``).
    The thread counts of vgcore and BLAS are restored afterwards.

    Returns
    -------
    dict
        ``run_id``, ``status``, ``error``, ``config``, ``metrics`` (:data:`METRICS`),
        ``history`` (``{"loss", "recorder"}`` or None), ``seconds``, ``worker``.
    """
    with _ui.limited_threads(threads):
        return _execute(config, threads)


def _execute(config, threads):
    """:func:`execute` without restoring the thread counts (the executors' workers: every run
    of a worker process sets the same counts)."""
    t0 = time.perf_counter()
    rid = run_id(config)
    try:
        cfg = _canonical(config, "config")
        if run_id(cfg) != rid:
            raise ValueError("config: expected a complete configuration (Sweep.configs)")
        _set_threads(threads)
        metrics, history = _train(cfg)
        if metrics["diverged_at"] is not None:
            status = "diverged"
            error = f"diverged at step {metrics['diverged_at']}: the loss or the output " \
                    f"stopped being finite"
        else:
            status, error = "ok", ""
    except Exception as e:          # noqa: BLE001 -- a failing run is a result, not a stop
        status, error = "failed", f"{type(e).__name__}: {' '.join(str(e).split())}"
        metrics, history = _nan_metrics(), None
    return {"run_id": rid, "status": status, "error": error, "config": dict(config),
            "metrics": metrics, "history": history,
            "threads": threads, "seconds": time.perf_counter() - t0,
            "worker": _worker_name()}


def _failed(config, error, threads=None):
    return {"run_id": run_id(config), "status": "failed", "error": error,
            "config": dict(config), "metrics": _nan_metrics(), "history": None,
            "threads": threads, "seconds": math.nan, "worker": ""}


# ============================================================================ the folder
class _Folder:
    """The results folder: an exclusive lock, the journal, the histories."""

    JOURNAL = "results.jsonl"

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"out: {self.path} exists and is not a folder")
        os.makedirs(os.path.join(self.path, "histories"), exist_ok=True)
        self._lock = open(os.path.join(self.path, ".lock"), "a+")
        try:
            import fcntl
        except ImportError:                        # not POSIX: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise RuntimeError(f"out: another sweep is writing into {self.path}; wait "
                                   f"for it to finish or choose another folder") from None
        self.journal_path = os.path.join(self.path, self.JOURNAL)
        self.repaired = None
        self.records = read_journal(self.journal_path, repair=True, folder=self)
        self._journal = open(self.journal_path, "a", encoding="utf-8")

    def history_path(self, rid):
        return os.path.join(self.path, "histories", f"{rid}.json.gz")

    def write(self, result):
        """The history first (atomically), then the journal line (flushed to disk): a line in
        the journal means the run is complete on disk."""
        hist = result.get("history")
        if hist is not None:
            obj = {"format": FORMAT + ".history", "version": VERSION,
                   "run_id": result["run_id"], "config": result["config"], **hist}
            data = gzip.compress(json.dumps(obj, allow_nan=False,
                                            separators=(",", ":")).encode(),
                                 compresslevel=1, mtime=0)    # level 9: 8x the time
            atomic_write(self.history_path(result["run_id"]), "xb", lambda f: f.write(data))
        record = {k: v for k, v in result.items() if k != "history"}
        record["history"] = hist is not None
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._journal.write(json.dumps(_ui.plain_json(record, nonfinite="keep"), allow_nan=True) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.records[record["run_id"]] = record

    def close(self):
        for f in (self._journal, self._lock):
            try:
                f.close()
            except OSError:
                pass


def read_journal(path, *, repair=False, folder=None):
    """``run_id -> record`` of a ``results.jsonl`` (the last line of a run wins).

    A last line without its newline (the sweep was killed while writing it) is dropped; with
    ``repair`` it is cut from the file.  Any other line that is not a journal record raises
    ValueError naming the file and the line.
    """
    records = {}
    if not os.path.exists(path):
        return records
    with open(path, "rb") as f:
        raw = f.read()
    good = len(raw)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:                                   # torn last line
        good = len(raw) - len(lines[-1])
        lines.pop()
        if repair:
            with open(path, "r+b") as f:
                f.truncate(good)
            if folder is not None:
                folder.repaired = "dropped an incomplete last line of results.jsonl (the " \
                                  "sweep was stopped while writing it); that run runs again"
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str) \
                    or rec.get("status") not in ("ok", "diverged", "failed") \
                    or not isinstance(rec.get("metrics"), dict) \
                    or not isinstance(rec.get("config"), dict):
                raise ValueError("not a run record")
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}, line {i}: not a vgcore sweep record ({e}); the journal "
                             f"is corrupt: move the file away to start the sweep afresh")
        records[rec["run_id"]] = rec
    return records


# ============================================================================ results
def _row(record):
    cfg = record["config"]
    m = record["metrics"]
    row = {"run_id": record["run_id"], "status": record["status"]}
    for k in PARAMS:
        row[k] = cfg.get(k)
    for k in METRICS:
        row[k] = m.get(k)
    row["error"] = record.get("error", "")
    row["threads"] = record.get("threads")
    row["seconds"] = record.get("seconds")
    row["worker"] = record.get("worker", "")
    return row


@dataclass
class SweepResult:
    """What a sweep left in its folder.

    Attributes
    ----------
    out : str
        The results folder.
    rows : list of dict
        One per finished run of the sweep, in the sweep's order; keys :data:`COLUMNS`.
    missing : list of str
        Run ids of the sweep with no result yet (an interrupted sweep).
    executed, skipped : int
        Runs run by this call, and runs found done in the folder.
    seconds : float
        Wall time of this call.
    files : list of str
        Files written at the end (tables, plots).
    notes : list of str
        What the user should know (a repaired journal, plots skipped, results in the folder
        that belong to other configurations).
    """

    out: str
    sweep: Sweep
    rows: list
    missing: list
    executed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    executor: str = ""
    workers: int = 0

    def count(self, status) -> int:
        return sum(1 for r in self.rows if r["status"] == status)

    def history(self, rid) -> dict:
        """The run's ``loss`` (float64 array, one per step trained), its ``recorder`` (a
        :class:`vgcore.Recorder`) and ``config``."""
        path = os.path.join(self.out, "histories", f"{rid}.json.gz")
        if not os.path.exists(path):
            raise KeyError(f"run_id: no history for {rid!r} in {self.out} (a failed run has "
                           f"none)")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a readable sweep history ({e})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT + ".history":
            raise ValueError(f"{path}: not a vgcore sweep history")
        rec = vg.Recorder._from_object(obj["recorder"], path)
        loss = np.array([math.nan if x is None else x for x in obj["loss"]], np.float64)
        return {"loss": loss, "recorder": rec, "config": obj["config"]}

    def to_pandas(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def summary(self) -> str:
        """A few lines: counts, time, the best runs, the failures."""
        n = len(self.sweep)
        lines = [f"{self.sweep.name}: {len(self.rows)}/{n} runs done ("
                 f"{self.count('ok')} ok, {self.count('diverged')} diverged, "
                 f"{self.count('failed')} failed); {self.executed} run now, {self.skipped} "
                 f"found done in {self.out}; {self.seconds:.1f} s"
                 + (f" on {self.executor} x{self.workers}" if self.executor else "")]
        if self.missing:
            lines.append(f"{len(self.missing)} runs not done yet: run the same sweep again to "
                         f"continue")
        varying = [k for k in self.sweep.varying() if k != "seed"] or self.sweep.varying()
        ok = [r for r in self.rows if r["status"] == "ok" and _finite(r["final_loss"])]
        if ok:
            ok.sort(key=lambda r: r["final_loss"])
            lines.append("lowest final training loss: " + "; ".join(
                f"{_label(r, varying)} {r['final_loss']:.4g}" for r in ok[:3]))
        bad = [r for r in self.rows if r["status"] == "failed"]
        for r in bad[:3]:
            lines.append(f"failed: {_label(r, varying)}: {r['error'][:160]}")
        if len(bad) > 3:
            lines.append(f"... and {len(bad) - 3} more failed runs (see results.csv, column "
                         f"error)")
        lines.extend(self.notes)
        return "\n".join(lines)


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def _label(row, keys):
    if not keys:
        return row["run_id"]
    return " ".join(f"{k}={_fmt_value(row[k])}" for k in keys)


def _fmt_value(v):
    if isinstance(v, float):
        return f"{v:g}"
    return "none" if v is None else str(v)


def _result_from(sweep, folder_path, records, **kw):
    rows, missing = [], []
    for cfg in sweep._configs:
        rid = run_id(cfg)
        if rid in records:
            rows.append(_row(records[rid]))
        else:
            missing.append(rid)
    return SweepResult(out=folder_path, sweep=sweep, rows=rows, missing=missing, **kw)


def load(out, sweep=None) -> SweepResult:
    """The results in a sweep folder, without running anything.

    With ``sweep`` (a :class:`Sweep`), the rows are that sweep's, in its order; without, every
    run of the folder's journal, in the order they finished.
    """
    path = os.path.abspath(os.fspath(out))
    journal = os.path.join(path, _Folder.JOURNAL)
    if not os.path.isfile(journal):
        raise FileNotFoundError(f"out: no sweep results in {path} (no {_Folder.JOURNAL})")
    records = read_journal(journal)
    if sweep is None:
        sweep = _sweep_of_folder(path, records)
    return _result_from(sweep, path, records)


def _sweep_of_folder(path, records):
    name = "sweep"
    try:
        with open(os.path.join(path, "sweep.json"), encoding="utf-8") as f:
            meta = json.load(f)
        name = meta.get("name") or name
        configs = [c for c in meta.get("configs", []) if isinstance(c, dict)]
    except (OSError, ValueError):
        configs = []
    s = Sweep.__new__(Sweep)
    s.name, s.base, s.grid, s.runs, s.plot = name, {}, {}, [], _check_plot({})
    known = {run_id(c) for c in configs}
    s._configs = configs + [r["config"] for rid, r in records.items() if rid not in known]
    return s


def write_tables(result) -> list:
    """``results.csv`` and, with pyarrow, ``results.parquet``; returns the files written."""
    files = []
    path = os.path.join(result.out, "results.csv")

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v)
        return v

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in result.rows:
            w.writerow([cell(r[c]) for c in COLUMNS])

    atomic_write(path, "x", write, encoding="utf-8", newline="")
    files.append(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        result.notes.append("results.parquet not written: pyarrow is not installed (pip "
                            "install pyarrow)")
        return files
    def values(c):
        vs = [r[c] for r in result.rows]
        if c == "residual":               # "auto" or a scale: text, as in the CSV
            vs = [None if v is None else _fmt_value(v) for v in vs]
        return vs

    table = pa.table({c: pa.array(values(c), type=_arrow_type(pa, c)) for c in COLUMNS})
    path = os.path.join(result.out, "results.parquet")
    atomic_write(path, "xb", lambda f: pq.write_table(table, f))
    files.append(path)
    return files


def _arrow_type(pa, column):
    if column in ("depth", "width", "n_samples", "steps", "batch_size", "seed", "records",
                  "threads") \
            or column in _INT_METRICS:
        return pa.int64()
    if column in ("residual",):
        return pa.string()
    if column in ("sigma_w2", "sigma_b2", "lr", "weight_decay", "clip_norm", "seconds") \
            or column in METRICS and column not in _STR_METRICS:
        return pa.float64()
    return pa.string()


# ============================================================================ progress
class _Progress:
    """On a terminal: one status line rewritten in place; otherwise (when enabled) one line per
    finished run."""

    def __init__(self, enabled, live, total, skipped, varying, stream=None):
        self.enabled = enabled
        self.status = _ui.StatusLine(live=live, stream=stream, max_width=160)
        self.total = total
        self.done = skipped
        self.skipped = skipped
        self.counts = {"ok": 0, "diverged": 0, "failed": 0}
        self.varying = varying
        self.t0 = time.monotonic()

    @property
    def live(self):
        return self.status.live

    def _eta(self):
        new = self.done - self.skipped
        left = self.total - self.done
        if new <= 0 or left <= 0:
            return ""
        per = (time.monotonic() - self.t0) / new
        return f", ~{_clock(per * left)} left"

    def start(self, executor, workers):
        if self.enabled:
            todo = self.total - self.skipped
            self.status.line(f"vgcore sweep: {todo} runs to do ({self.skipped} done already) "
                             f"on {executor} x{workers}")

    def update(self, result, row):
        self.done += 1
        self.counts[result["status"]] += 1
        if not self.enabled:
            return
        label = _label(row, self.varying)
        if result["status"] == "ok":
            what = f"final loss {row['final_loss']:.4g}, dW1/dWout {row['grad_ratio_init']:.2e}"
        elif result["status"] == "diverged":
            what = f"diverged at step {row['diverged_at']}"
        else:
            what = result["error"][:100]
        elapsed = _clock(time.monotonic() - self.t0)
        if self.live:
            c = self.counts
            self.status.update(f"vgcore sweep: {self.done}/{self.total} ({c['ok']} ok, "
                               f"{c['diverged']} diverged, {c['failed']} failed) {elapsed}"
                               f"{self._eta()} | {label}: {what}", force=True)
        else:
            self.status.line(f"[{self.done}/{self.total} {elapsed}] {result['status']:<8} "
                             f"{label}: {what}")

    def close(self):
        if self.enabled:
            self.status.close(keep=True)


def _clock(seconds):
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# ============================================================================ executors
def _default_workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _init_worker(threads):
    _set_threads(threads)


def _run_serial(todo, threads, handle):
    with _ui.limited_threads(threads):
        for cfg in todo:
            handle(_execute(cfg, threads))


_DIED = ("a worker process died while this run was in flight (out of memory, or a crash in "
         "this run or in another run in flight beside it): run the sweep again with "
         "retry_failed=True (vgcore sweep --retry-failed)")


def _run_processes(todo, threads, workers, handle, target=None):
    import concurrent.futures as cf
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent's OpenMP and BLAS thread pools do not survive a fork
    ctx = multiprocessing.get_context("spawn")
    queue = list(reversed(todo))
    while queue:
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                      initializer=_init_worker, initargs=(threads,))
        inflight = {}
        finished = 0                      # runs that came back from this pool
        lost = []                         # runs in flight when it broke
        try:
            while (queue or inflight) and not lost:
                while queue and len(inflight) < 2 * workers:
                    cfg = queue.pop()
                    inflight[pool.submit(target or _execute, cfg, threads)] = cfg
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    cfg = inflight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        lost.append(cfg)
                        continue
                    except Exception as e:      # noqa: BLE001 -- e.g. a result not picklable
                        res = _failed(cfg, f"{type(e).__name__}: {e}", threads)
                    finished += 1
                    handle(res)
            if lost:
                lost += list(inflight.values())
                inflight.clear()
                if finished == 0:
                    raise RuntimeError(
                        "executor 'processes': the worker processes died before finishing "
                        "any run (their messages are above). From a script, the sweep must "
                        "run under `if __name__ == \"__main__\":` (each worker process imports "
                        "the script); otherwise run the sweep with executor='serial' to see "
                        "the error")
                for cfg in lost:
                    handle(_failed(cfg, _DIED, threads))
        except BaseException:             # interrupted or failed: stop the workers, now
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(5)
            raise
        pool.shutdown(wait=True)


def _run_dask(todo, threads, workers, handle, client, scheduler, timeout):
    try:
        import distributed
    except ImportError:
        raise ImportError("executor 'dask' needs dask.distributed: pip install "
                          "\"vgcore[dask]\" (or pip install \"dask[distributed]\")") from None
    own_client = own_cluster = None
    if client is None:
        if scheduler is not None:
            try:
                client = own_client = distributed.Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError) as e:
                raise ConnectionError(f"scheduler: cannot reach the Dask scheduler at "
                                      f"{scheduler} ({type(e).__name__}: {e})") from None
        else:
            own_cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None)
            client = own_client = distributed.Client(own_cluster)
    token = uuid.uuid4().hex[:8]
    futures = {}
    try:
        for cfg in todo:
            fut = client.submit(_execute, cfg, threads, key=f"vgcore-run-{run_id(cfg)}-{token}",
                                pure=False)
            futures[fut.key] = (fut, cfg)
        for fut in distributed.as_completed([f for f, _ in futures.values()]):
            cfg = futures.pop(fut.key)[1]
            try:
                res = fut.result()
            except Exception as e:          # noqa: BLE001 -- KilledWorker, cancelled, ...
                res = _failed(cfg, f"dask: {type(e).__name__}: {' '.join(str(e).split())}",
                              threads)
            fut.release()
            handle(res)
    finally:
        if futures:
            try:
                client.cancel([f for f, _ in futures.values()])
            except Exception:               # noqa: BLE001 -- best effort while stopping
                pass
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _workers_of(client):
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:                        # noqa: BLE001
        return 0


# ============================================================================ run
def run(sweep, out, *, executor=None, workers=None, threads=1, client=None, scheduler=None,
        resume=True, retry_failed=False, plots=True, progress=None, on_result=None,
        scheduler_timeout=20.0) -> SweepResult:
    """Run a sweep into the folder ``out``: every run not already there.

    Parameters
    ----------
    sweep : Sweep
    out : str or os.PathLike
        The results folder (created if needed).  If it holds results of runs of this sweep,
        they are kept and those runs are skipped.
    executor : {"serial", "processes", "dask"}, optional
        Default ``"dask"`` when ``client`` or ``scheduler`` is given, else ``"processes"``.
    workers : int, optional
        Processes of the ``"processes"`` executor, or of the LocalCluster ``"dask"`` starts
        when given neither ``client`` nor ``scheduler``; default one per core.
    threads : int
        Threads of each run (vgcore's and BLAS's); default 1.  Results are bit-identical
        across executors for the same ``threads``.
    client : dask.distributed.Client, optional
    scheduler : str, optional
        Address of a Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    resume : bool
        Skip the runs whose results are in ``out`` (default).  False runs them all again (the
        new results supersede the old ones in the journal).
    retry_failed : bool
        Run the runs recorded as failed again (not the diverged ones: a divergence is a
        result).
    plots : bool
        Write the phase diagrams at the end (needs matplotlib).
    progress : bool, optional
        Show progress on stderr; default: when stderr is a terminal.
    on_result : callable, optional
        Called with each new row (a dict, :data:`COLUMNS`) after it is on disk.
    scheduler_timeout : float
        Seconds to wait for the Dask ``scheduler`` to answer; default 20.

    Returns
    -------
    SweepResult

    Raises
    ------
    KeyboardInterrupt
        Passed on after the runs finished so far are on disk (and the tables written): run the
        same sweep again to continue.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep: expected a vgcore.sweep.Sweep, got {type(sweep).__name__}")
    if executor is None:
        executor = "dask" if (client is not None or scheduler is not None) else "processes"
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if (client is not None or scheduler is not None) and executor != "dask":
        raise ValueError(f"client / scheduler: only for executor 'dask', not {executor!r}")
    if client is not None and scheduler is not None:
        raise ValueError("client, scheduler: give one of them, not both")
    if workers is not None and (client is not None or scheduler is not None):
        raise ValueError("workers: sets the size of the local pool or cluster; a client's or "
                         "scheduler's cluster has its own workers")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"scheduler: expected an address like 'tcp://host:8786', got "
                         f"{scheduler!r}")
    if workers is not None:
        workers = _int_at_least(1)(workers, "workers")
    threads = _int_at_least(1)(threads, "threads")
    scheduler_timeout = _float(0.0, strict=True, optional=False)(scheduler_timeout,
                                                                   "scheduler_timeout")
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result: expected a callable, got {type(on_result).__name__}")

    t0 = time.perf_counter()
    folder = _Folder(out)
    try:
        _write_meta(folder.path, sweep)
        records = folder.records
        todo, skipped = [], 0
        for cfg in sweep._configs:
            rec = records.get(run_id(cfg))
            if resume and rec is not None and not (retry_failed and rec["status"] == "failed"):
                skipped += 1
            else:
                todo.append(cfg)
        if executor == "serial":
            n_workers = 1
        elif executor == "dask" and client is not None:
            n_workers = _workers_of(client)
        else:
            n_workers = workers or _default_workers()
        if progress is None:
            progress = _ui.is_terminal()
        prog = _Progress(bool(progress), _ui.is_terminal(), len(sweep), skipped,
                         [k for k in sweep.varying()])
        executed = 0

        def handle(result):
            nonlocal executed
            folder.write(result)
            executed += 1
            row = _row(folder.records[result["run_id"]])
            prog.update(result, row)
            if on_result is not None:
                on_result(row)

        interrupted = None
        if todo:
            prog.start(executor, n_workers)
            try:
                if executor == "serial":
                    _run_serial(todo, threads, handle)
                elif executor == "processes":
                    _run_processes(todo, threads, min(n_workers, len(todo)), handle)
                else:
                    _run_dask(todo, threads, n_workers, handle, client, scheduler,
                              scheduler_timeout)
            except KeyboardInterrupt as e:
                interrupted = e
            finally:
                prog.close()
        result = _result_from(sweep, folder.path, folder.records, executed=executed,
                              skipped=skipped, executor=executor, workers=n_workers)
        if folder.repaired:
            result.notes.append(folder.repaired)
        others = len(set(folder.records) - set(sweep.run_ids))
        if others:
            result.notes.append(f"{others} results in {folder.path} belong to runs not in this "
                                f"sweep: kept in results.jsonl, not in the tables")
        result.files = write_tables(result)
        if plots and interrupted is None:
            result.files += _auto_plots(result)
        result.seconds = time.perf_counter() - t0
        if interrupted is not None:
            raise interrupted
        return result
    finally:
        folder.close()


def _write_meta(path, sweep):
    meta = {"format": FORMAT, "version": VERSION, "vgcore": getattr(vg, "__version__", None),
            "name": sweep.name, "sweep": sweep.to_dict(), "varying": sweep.varying(),
            "configs": sweep.configs}
    text = json.dumps(_ui.plain_json(meta), indent=1, allow_nan=False) + "\n"
    atomic_write(os.path.join(path, "sweep.json"), "x", lambda f: f.write(text),
                 encoding="utf-8")


# ============================================================================ phase diagrams
_PLOTTABLE = {
    "final_loss": ("final training loss", False),
    "test_loss": ("held-out loss", False),
    "test_accuracy": ("held-out accuracy", False),
    "grad_ratio_init": ("log10 ||dW_1|| / ||dW_out|| at step 0", True),
    "delta_ratio_init": ("log10 ||delta_1|| / ||delta_out|| at step 0", True),
    "grad_ratio_final": ("log10 ||dW_1|| / ||dW_out|| at the end", True),
    "saturated_fraction": ("saturated fraction", False),
    "dead_fraction": ("dead fraction", False),
}
"""metric -> (colour-bar label, plotted as log10)."""


@dataclass
class PhasePanel:
    """One panel of a phase diagram: ``values[i, j]`` is the median over seeds of the metric at
    ``y = ys[i]``, ``x = xs[j]`` over the runs where it is finite (a diverged run keeps its
    first-step measurements; a failed run has none), NaN where there is none; ``runs[i, j]``
    counts the runs of the cell and ``not_ok[i, j]`` those that diverged or failed."""

    title: str
    fixed: dict
    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    runs: np.ndarray
    not_ok: np.ndarray
    critical_x: float | None = None
    depth_scale: tuple | None = None      # (x grid, 6 * xi_c)


def phase_grid(rows, metric="final_loss", x="sigma_w2_eff", y="depth") -> list:
    """The phase-diagram panels of a sweep's rows (see :class:`PhasePanel`): one per value of
    the other varying parameters (the activation, ...), seeds pooled by the median.

    With ``x`` the weight variance, each panel of a plain network (no norm, no residual) gets
    the mean-field critical ``sigma_w2`` (:func:`vgcore.theory.critical_sigma_w2`) and the
    depth ``6 xi_c`` up to which signals propagate (Schoenholz et al. 2017), where defined.
    """
    if metric not in _PLOTTABLE:
        raise ValueError(f"metric: expected one of {', '.join(_PLOTTABLE)}, got {metric!r}")
    for name, value in (("x", x), ("y", y)):
        if value not in _PLOT_AXES:
            raise ValueError(f"{name}: expected one of {', '.join(_PLOT_AXES)}, got {value!r}")
    log = _PLOTTABLE[metric][1]
    rows = [r for r in rows if _finite(r.get(x)) and _finite(r.get(y))]
    ignore = {x, y, "seed", "init", "sigma_w2"} if x == "sigma_w2_eff" else {x, y, "seed"}
    facets = [k for k in PARAMS if k not in ignore
              and len({json.dumps(r[k]) for r in rows}) > 1]
    groups = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r[k]) for k in facets), []).append(r)
    panels = []
    for key, group in groups.items():
        xs = np.array(sorted({float(r[x]) for r in group}))
        ys = np.array(sorted({float(r[y]) for r in group}))
        values = np.full((len(ys), len(xs)), np.nan)
        runs = np.zeros((len(ys), len(xs)), np.int64)
        not_ok = np.zeros((len(ys), len(xs)), np.int64)
        cells = {}
        for r in group:
            ij = (int(np.searchsorted(ys, float(r[y]))), int(np.searchsorted(xs, float(r[x]))))
            runs[ij] += 1
            not_ok[ij] += r["status"] != "ok"
            v = r.get(metric)
            if r["status"] != "failed" and _finite(v):
                if log:
                    v = math.log10(v) if v > 0 else -math.inf
                cells.setdefault(ij, []).append(v)
        for ij, vs in cells.items():
            values[ij] = float(np.median(vs))
        fixed = {k: json.loads(v) for k, v in zip(facets, key)}
        first = group[0]
        title = ", ".join(f"{k}={_fmt_value(v)}" for k, v in fixed.items()) \
            or first["activation"]
        panel = PhasePanel(title, fixed, xs, ys, values, runs, not_ok)
        if x in ("sigma_w2", "sigma_w2_eff") and first["norm"] is None \
                and first["residual"] is None and len({r["activation"] for r in group}) == 1 \
                and len({r["sigma_b2"] for r in group}) == 1:
            panel.critical_x, panel.depth_scale = _theory_lines(
                first["activation"], float(first["sigma_b2"]), float(xs.min()),
                float(xs.max()))
        panels.append(panel)
    return panels


@functools.lru_cache(maxsize=32)
def _theory_lines(activation, sigma_b2, lo, hi):
    """The critical sigma_w2 and ``(sigma_w2 grid, 6 xi_c)`` over [lo, hi] (~40 ms a point)."""
    theory = vg.theory
    try:
        crit = float(theory.critical_sigma_w2(activation, sigma_b2))
    except (ValueError, RuntimeError, ArithmeticError):
        crit = None
    if lo == hi:
        return crit, None
    grid = np.linspace(lo, hi, 30)
    if crit is not None and lo < crit < hi:
        grid = np.sort(np.append(grid, crit))
    depth = []
    for sw in grid:
        try:
            xi = theory.depth_scales(activation, float(sw), sigma_b2).xi_c
        except (ValueError, RuntimeError, ArithmeticError):
            xi = math.nan
        depth.append(6.0 * xi if math.isfinite(xi) or xi == math.inf else math.nan)
    depth = np.array(depth)
    if not np.any(np.isfinite(depth)):
        return crit, None
    return crit, (grid, depth)


def _edges(v, log):
    if len(v) == 1:
        return np.array([v[0] * 0.8, v[0] * 1.25]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    if log:
        lv = np.log(v)
        mid = (lv[1:] + lv[:-1]) / 2
        return np.exp(np.concatenate([[lv[0] - (mid[0] - lv[0])], mid,
                                      [lv[-1] + (lv[-1] - mid[-1])]]))
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def plot_phase_diagram(result, path, metric="final_loss", x="sigma_w2_eff", y="depth",
                       max_panels=12):
    """Draw :func:`phase_grid` of a sweep into a PNG: one panel per activation (and per value
    of any other varying parameter), the metric as colour over (x, y), grey crosses where every
    run diverged or failed, the mean-field critical weight variance as a dashed vertical line
    and ``6 xi_c`` as a white curve.  Needs matplotlib.

    Parameters
    ----------
    result : SweepResult or list of row dicts
    path : str or os.PathLike
        The PNG to write.
    metric, x, y : str
        As :func:`phase_grid`.
    max_panels : int
        At most this many panels (the first ones, in the sweep's order).

    Returns
    -------
    list of PhasePanel
        The panels drawn.
    """
    rows = result.rows if isinstance(result, SweepResult) else list(result)
    panels = phase_grid(rows, metric, x, y)[:max_panels]
    if not panels:
        raise ValueError(f"no finished runs with both {x} and {y} to plot")
    mpl = _ui.load_matplotlib()
    if mpl is None:
        raise ImportError("plot_phase_diagram needs matplotlib (pip install matplotlib)")
    from matplotlib import patheffects
    n = len(panels)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = _ui.new_figure(mpl, 4.8 * ncol + 1.0, 3.9 * nrow + 0.4)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    finite = np.concatenate([p.values[np.isfinite(p.values)] for p in panels])
    label, log = _PLOTTABLE[metric]
    if finite.size:
        vmin, vmax = float(np.min(finite)), float(np.max(finite))
    else:
        vmin, vmax = 0.0, 1.0
    if log:
        cmap = "RdBu_r"
        lim = max(abs(vmin), abs(vmax), 1e-3)
        vmin, vmax = -lim, lim
    else:
        cmap = "viridis_r" if "loss" in metric else "viridis"
    ylog = y == "depth" and all(p.ys.min() > 0 and p.ys.max() / p.ys.min() >= 8
                                for p in panels)
    mesh = None
    legend = {}
    for ax, p in zip(axes.flat, panels):
        xe, ye = _edges(p.xs, False), _edges(p.ys, ylog)
        masked = np.ma.masked_invalid(p.values)
        mesh = ax.pcolormesh(xe, ye, masked, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
        bad = np.argwhere(p.not_ok > 0)
        if bad.size:
            ax.scatter(p.xs[bad[:, 1]], p.ys[bad[:, 0]], marker="x", color="0.35", s=30,
                       label="diverged or failed (some or all seeds)")
        if p.depth_scale is not None:
            gx, gd = p.depth_scale
            # the axes clip the curve; an infinite depth scale (at the critical point) is drawn
            # as leaving the panel at the top
            ax.plot(gx, np.where(np.isposinf(gd), 1e12, gd), color="white", lw=1.6,
                    label=r"$6\,\xi_c$ (mean field)",
                    path_effects=[patheffects.Stroke(linewidth=3.0, foreground="0.25"),
                                  patheffects.Normal()])
        if p.critical_x is not None and xe[0] <= p.critical_x <= xe[-1]:
            ax.axvline(p.critical_x, color="black", ls="--", lw=1.3,
                       label=r"critical $\sigma_w^2$ (mean field; value in the title)")
            ax.set_title(f"{p.title}: critical {p.critical_x:.3g}", fontsize=10)
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        if ylog:
            ax.set_yscale("log")
            ax.set_yticks(p.ys)
            ax.set_yticklabels([f"{v:g}" for v in p.ys])
            ax.minorticks_off()
        ax.set_xlabel(r"$\sigma_w^2$" if x.startswith("sigma_w2") else x)
        ax.set_ylabel(y)
        if not (p.critical_x is not None and xe[0] <= p.critical_x <= xe[-1]):
            ax.set_title(p.title, fontsize=10)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab.split(" = ")[0], h)
    if legend:                      # one legend for the figure, outside the panels
        try:
            fig.legend(list(legend.values()), list(legend), loc="outside lower center",
                       ncols=len(legend), fontsize=8, frameon=False)
        except (ValueError, TypeError):           # matplotlib < 3.7
            axes.flat[0].legend(list(legend.values()), list(legend), fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes.flat[:n]), label=label, shrink=0.9)
    fig.suptitle(f"{label} over ({x}, {y})", fontsize=11)
    _ui.save_png(mpl, fig, os.fspath(path))
    return panels


def _auto_plots(result):
    """The phase diagrams of the sweep's plot settings, when it has two x and two y values."""
    cfg = result.sweep.plot
    x, y = cfg["x"], cfg["y"]
    ok = [r for r in result.rows if _finite(r.get(x)) and _finite(r.get(y))]
    if len({r[x] for r in ok}) < 2 or len({r[y] for r in ok}) < 2:
        return []
    if _ui.load_matplotlib() is None:
        result.notes.append("phase diagrams not drawn: matplotlib is not installed (pip "
                            "install matplotlib)")
        return []
    files = []
    for metric in cfg["metrics"]:
        path = os.path.join(result.out, f"phase_{metric}.png")
        try:
            plot_phase_diagram(result, path, metric=metric, x=x, y=y)
        except (ValueError, OSError) as e:
            result.notes.append(f"phase_{metric}.png not drawn: {e}")
            continue
        files.append(path)
    return files

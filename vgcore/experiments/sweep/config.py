"""The schema of a sweep: the parameters of a run (:data:`PARAMS`), the measured columns
(:data:`METRICS`, :data:`COLUMNS`), a run's complete configuration and its id, and
:class:`Sweep`, the set of configurations (``base``, ``grid``, explicit ``runs``) with its
phase-diagram settings."""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import numbers
import os

import numpy as np

import vgcore as vg
from vgcore.experiments import run as _exp

__all__ = ["Sweep", "run_id", "PARAMS", "METRICS", "COLUMNS", "PLOTTABLE"]


def _int_at_least(minimum):
    def check(value, name):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
        return int(value)
    return check


def _optional(check):
    def optional(value, name):
        return None if value is None else check(value, name)
    return optional


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


def _data_path(value, name):
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name}: expected the path of a data file (.npz, .npy, .csv, .tsv, "
                        f".parquet), got {value!r}")
    return os.path.abspath(value)


def _label(value, name):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, numbers.Integral)) \
            or value == "":
        raise TypeError(f"{name}: expected a column name or a 0-based column index, got "
                        f"{value!r}")
    return value if isinstance(value, str) else int(value)


def _sha256(value, name):
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 \
            or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{name}: expected a SHA-256 as 64 lower-case hex digits, got "
                         f"{value!r}")
    return value


@functools.lru_cache(maxsize=16)
def _file_sha256(path, size, mtime_ns):
    from vgcore.interop.files import sha256_of
    return sha256_of(path)


def data_sha256(path) -> str:
    """The SHA-256 of a data file (cached while its size and modification time stay)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"data: no such file: {path}") from None
    if not os.path.isfile(path):
        raise ValueError(f"data: {path} is not a file")
    return _file_sha256(path, st.st_size, st.st_mtime_ns)


def _residual(value, name):
    try:
        return _exp.check_residual(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


PARAMS = {
    # name: (default, check, meaning)
    "dataset": ("gaussian_mixture", _choice(_exp.DATASETS, optional=True),
                "generated data set: " + ", ".join(_exp.DATASETS) + " (none with data)"),
    "n_samples": (_exp.N_SAMPLES, _optional(_int_at_least(10)),
                  "samples generated (80% training, 20% held out); digits has its own 1797"),
    "data": (None, _data_path,
             "a data file to train on instead of a generated data set (.npz, .npy, .csv, "
             ".tsv, .parquet; vgcore.datasets.load): input width and classes from the file, "
             "features standardised with the training part, 20% held out"),
    "label": (None, _label, "the label column of a data table (a name or a 0-based index), "
                            "or the labels' array in an .npz / file for an .npy"),
    "data_sha256": (None, _sha256,
                    "the data file's SHA-256, filled in when the sweep is made; a run whose "
                    "file no longer matches it fails"),
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
    for key, (default, _, _) in PARAMS.items():
        out[key] = cfg.get(key, default)
    if out["data"] is not None:
        both = [k for k in ("dataset", "n_samples") if cfg.get(k) is not None]
        if both:
            raise ValueError(f"{where}: data, {both[0]}: a data file replaces the generated "
                             f"data set; give one of them")
        out["dataset"] = out["n_samples"] = None
        if out["data_sha256"] is None:
            out["data_sha256"] = data_sha256(out["data"])
    else:
        given = [k for k in ("label", "data_sha256") if out[k] is not None]
        if given:
            raise ValueError(f"{where}: {given[0]}: applies to a data file; set data too")
        for k in ("dataset", "n_samples"):
            if out[k] is None:
                raise ValueError(f"{where}: {k}: expected a value (none only with a data "
                                 f"file)")
    if out["init"] is None:
        out["init"] = "normal" if out["sigma_w2"] is not None else "standard"
    if out["lr"] is None:
        out["lr"] = _exp.OPTIMIZERS[out["optimizer"]]
    return out


_DATA_KEYS = ("data", "label", "data_sha256")


def run_id(config) -> str:
    """The id of a complete configuration: 12 hex digits of the SHA-256 of its canonical JSON
    (without the data-file keys when there is no data file, so that the ids of sweeps made
    before they existed stay the same)."""
    if config.get("data") is None:
        config = {k: v for k, v in config.items() if k not in _DATA_KEYS or v is not None}
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


PLOTTABLE = {
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
        _data_relative_to(data, os.path.dirname(os.path.abspath(path)))
        return cls.from_dict(data, where=os.path.basename(path))

    @classmethod
    def from_configs(cls, configs, name=None):
        """The sweep of these complete configurations, in this order, as a folder records them
        (``sweep.json``, the journal): taken as they are, neither completed with defaults nor
        re-checked, so each keeps the ``run_id`` it ran under (:func:`vgcore.sweep.load`
        rebuilds a folder's sweep so).  Its ``base``, ``grid`` and ``runs`` are empty."""
        if not isinstance(configs, (list, tuple)):
            raise TypeError(f"configs: expected a list of configurations, got {configs!r}")
        for i, c in enumerate(configs):
            if not isinstance(c, dict):
                raise TypeError(f"configs[{i}]: expected a table of parameters, got {c!r}")
        s = cls.__new__(cls)
        s.name = "sweep" if name is None else _check_name(name)
        s.base, s.grid, s.runs, s.plot = {}, {}, [], _check_plot({})
        s._configs = [dict(c) for c in configs]
        return s

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


def _data_relative_to(table, folder):
    """Make the ``data`` paths of a sweep file's table (top level, ``[grid]``, ``[[runs]]``)
    relative to the file's folder, as a path written in a file reads."""
    def fix(v):
        return os.path.join(folder, v) if isinstance(v, str) and v.strip() else v

    if "data" in table:
        table["data"] = fix(table["data"])
    grid = table.get("grid")
    if isinstance(grid, dict) and "data" in grid:
        grid["data"] = [fix(v) for v in grid["data"]] if isinstance(grid["data"], list) \
            else fix(grid["data"])
    for key in ("runs", "run"):
        runs = table.get(key)
        for entry in runs if isinstance(runs, list) else [runs]:
            if isinstance(entry, dict) and "data" in entry:
                entry["data"] = fix(entry["data"])


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
                    or any(v not in PLOTTABLE for v in values):
                raise ValueError(f"plot: metrics: expected a list of {', '.join(PLOTTABLE)}, "
                                 f"got {value!r}")
            out[key] = list(values)
    return out

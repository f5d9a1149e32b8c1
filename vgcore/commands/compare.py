"""vgcore compare: train deep networks side by side, measure the gradient reaching every
layer at every step, and write a report.

With no options it tells the story of the vanishing-gradient problem: 20 hidden layers of 64
units on a 10-class Gaussian mixture.  Sigmoid and tanh under the standard initialisation lose
their gradient on the way down and do not learn; ReLU with He initialisation, tanh with Glorot
or orthogonal initialisation, batch normalisation and residual blocks keep it and learn; an
adaptive optimiser (Adam) on the sigmoid network shows what rescaling the steps can and cannot
do.  Each configuration is trained for --steps steps with a vgcore.Recorder; the table shows
the first/last layer gradient ratios at the first step, saturation and dead units over the run,
held-out loss and accuracy and the diagnosis; the report folder holds the raw measurements
(CSV, JSON), the plots and report.html.

Choosing the configurations: --activations and/or --inits (or --norm / --residual) make a grid
(every activation with every initialiser, each with the given normalisation, residual blocks
and optimiser); a --config TOML file can list them explicitly.  Options on the command line
override the config file, which overrides the defaults.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

import vgcore as vg
from vgcore.experiments import report as _report
from vgcore.commands._common import CommandError, positive_float, positive_int
from vgcore.core import _ui
from vgcore.experiments.run import DATASETS, OPTIMIZERS, check_residual, findings_of, held_out, \
    record_steps, train_steps
from vgcore.experiments.run import load_data as _load_data
from vgcore.experiments.run import make_optimizer as _make_optimizer
from vgcore.measure.diagnosis import SATURATING, format_findings

HELP = "train deep networks side by side, measure their gradient flow, write a report " \
       "(the default command)"

EXAMPLES = """examples:
  vgcore compare                                   # the vanishing-gradient story, ~10 s
  vgcore compare --out my-report --steps 2000 --seeds 0 1 2
  vgcore compare --activations sigmoid tanh relu --inits standard glorot_uniform he_normal
  vgcore compare --activations sigmoid --norm batch --optimizer adam --lr 0.001
  vgcore compare --depth 50 --width 32 --json > summary.json
  vgcore compare --config runs.toml                # see below

config file (TOML; every key optional, names as the options, - or _):
  depth = 30
  width = 64
  steps = 1500
  seeds = [0, 1]
  dataset = "two_spirals"
  optimizer = "sgd"          # the optimiser of configurations that name none
  lr = 0.02
  [[config]]                 # explicit configurations (instead of the story or a grid)
  name = "sigmoid + batch norm"
  activation = "sigmoid"
  init = "standard"          # norm = "batch" | "layer"; residual = "auto" | 0.5;
  norm = "batch"             # optimizer = "adam"; lr = 0.001
  [[config]]
  activation = "relu"
  init = "he_normal"

output (in --out, default ./vgcore-report):
  report.html        the table, the plots (embedded) and the diagnosis; self-contained
  summary.json       the table's numbers (what --json prints)
  measurements.json  per configuration and seed: the Recorder history, the loss of every
                     step, the held-out metrics, the findings, the theory profile
  measurements.csv   one row per (configuration, seed, recorded step, layer)
  *.png              plots (need matplotlib; skipped, and said so, without it)

exit status: 0 on success, 2 for a bad argument or config file (one line on stderr)."""

# ------------------------------------------------------------------------------ vocabulary
NORMS = {"none": None, "batch": "batch", "layer": "layer"}
INITS = tuple(i for i in vg.INITIALISERS if i != "normal")   # "normal" needs sigma_w

DEFAULTS = {
    "depth": 20, "width": 64, "dataset": "gaussian_mixture", "steps": 1000, "batch_size": 64,
    "seeds": [0], "optimizer": "sgd", "lr": None, "threads": None, "out": "vgcore-report",
    "plots": True, "norm": None, "residual": None, "activations": None, "inits": None,
}
GRID_ACTIVATIONS = ["sigmoid", "tanh", "relu"]
GRID_INITS = ["standard"]

MAX_RECORDS = 64          # recorded steps per run (evenly spaced, first and last included)


@dataclass(frozen=True)
class Config:
    """One configuration to train."""

    name: str
    activation: str
    init: str = "standard"
    norm: str | None = None
    residual: float | str | None = None
    optimizer: str = "sgd"
    lr: float = 0.02

    def as_dict(self):
        return {"name": self.name, "activation": self.activation, "init": self.init,
                "norm": self.norm, "residual": self.residual, "optimizer": self.optimizer,
                "lr": self.lr}


# the story: (name, activation, init, norm, residual, optimizer or None for the base one)
STORY = (
    ("sigmoid, standard init", "sigmoid", "standard", None, None, None),
    ("tanh, standard init", "tanh", "standard", None, None, None),
    ("relu, He init", "relu", "he_normal", None, None, None),
    ("tanh, Glorot init", "tanh", "glorot_uniform", None, None, None),
    ("tanh, orthogonal init", "tanh", "orthogonal", None, None, None),
    ("sigmoid + batch norm", "sigmoid", "standard", "batch", None, None),
    ("tanh + residual", "tanh", "standard", None, "auto", None),
    ("sigmoid + Adam", "sigmoid", "standard", None, None, "adam"),
)


# ------------------------------------------------------------------------------ validation
def _name(text, what, choices):
    key = str(text).strip().lower().replace("-", "_")
    if key not in choices:
        raise ValueError(f"unknown {what} {text!r}; expected one of {', '.join(choices)}")
    return key


def check_activation(text):
    return _name(text, "activation", tuple(vg.ACTIVATIONS))


def check_init(text):
    key = str(text).strip().lower().replace("-", "_")
    if key == "normal":
        raise ValueError("init 'normal' needs a sigma_w, which compare does not take; use "
                         "one of " + ", ".join(INITS))
    return _name(text, "init", INITS)


def check_norm(text):
    if text is None or text is False:
        return None
    return NORMS[_name(text, "norm", tuple(NORMS))]


def check_optimizer(text):
    return _name(text, "optimizer", tuple(OPTIMIZERS))


def check_dataset(text):
    return _name(text, "dataset", DATASETS)


def _argtype(check):
    def convert(text):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = check.__name__.replace("check_", "")
    return convert


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


# ------------------------------------------------------------------------------ the parser
def register(sub):
    p = sub.add_parser("compare", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("network and training")
    g.add_argument("--depth", type=positive_int, metavar="N",
                   help=f"hidden layers (default {DEFAULTS['depth']})")
    g.add_argument("--width", type=positive_int, metavar="N",
                   help=f"units per hidden layer (default {DEFAULTS['width']})")
    g.add_argument("--activations", nargs="+", type=_argtype(check_activation), metavar="ACT",
                   help="hidden activations of a grid of configurations (default grid: "
                        "sigmoid tanh relu); one of " + ", ".join(vg.ACTIVATIONS))
    g.add_argument("--inits", nargs="+", type=_argtype(check_init), metavar="INIT",
                   help="initialisers of the grid (default: standard); one of "
                        + ", ".join(INITS))
    g.add_argument("--norm", type=_argtype(check_norm), metavar="{none,batch,layer}",
                   help="normalisation of every configuration of the grid (default none)")
    g.add_argument("--residual", type=_argtype(check_residual), metavar="{none,auto,SCALE}",
                   help="residual blocks x + SCALE*phi(z) in every configuration of the grid; "
                        "auto = 1/sqrt(depth) (default none)")
    g.add_argument("--optimizer", type=_argtype(check_optimizer),
                   metavar="{" + ",".join(OPTIMIZERS) + "}",
                   help="optimiser of every configuration that names none (default sgd; "
                        "momentum and nesterov use momentum 0.9)")
    g.add_argument("--lr", type=positive_float, metavar="RATE",
                   help="learning rate of --optimizer (default: " + ", ".join(
                       f"{k} {v:g}" for k, v in OPTIMIZERS.items()) + "); a configuration "
                        "that names its own optimiser keeps that one's default or its own lr")
    g.add_argument("--dataset", type=_argtype(check_dataset), metavar="NAME",
                   help="gaussian_mixture (default: 64 features, 10 classes), two_spirals "
                        "(2 classes), digits (needs scikit-learn) or teacher_student "
                        "(regression, mse); generated in code, nothing is downloaded; 20%% is "
                        "held out for the final loss and accuracy")
    g.add_argument("--steps", type=positive_int, metavar="N",
                   help=f"training steps per configuration (default {DEFAULTS['steps']})")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, metavar="N",
                   help=f"mini-batch size (default {DEFAULTS['batch_size']})")
    g.add_argument("--seeds", nargs="+", type=_seed, metavar="SEED",
                   help="seeds of the initialisation and batch order; with several, every "
                        "number is their mean (geometric for the ratios) (default 0)")
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="compute threads (default: the OpenMP default, the number of cores)")
    g.add_argument("--config", metavar="FILE.toml",
                   help="a TOML file with any of these options and/or [[config]] tables "
                        "(see below)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR",
                   help=f"report folder, created if needed (default ./{DEFAULTS['out']})")
    o.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout instead of the table")
    o.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (progress is shown only on a terminal anyway)")
    o.add_argument("--no-plots", dest="no_plots", action="store_true",
                   help="write no PNG plots (the HTML then holds the table and diagnosis)")
    p.set_defaults(func=run)
    return p


# ------------------------------------------------------------------------------ settings
_CONFIG_KEYS = ("depth", "width", "activations", "inits", "norm", "residual", "optimizer", "lr",
                "dataset", "steps", "batch_size", "seeds", "threads", "out", "plots", "config")
_ENTRY_KEYS = ("name", "activation", "init", "norm", "residual", "optimizer", "lr")


def _load_toml(path):
    try:
        import tomllib
    except ImportError:                     # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise CommandError("reading a --config file needs Python 3.11+ or the tomli "
                               "package (pip install tomli)") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise CommandError(f"--config: no such file: {path}") from None
    except IsADirectoryError:
        raise CommandError(f"--config: {path} is a folder, expected a TOML file") from None
    except OSError as e:
        raise CommandError(f"--config: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--config: {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise CommandError(f"--config: {path} is not valid TOML: {_one_line(e)}") from None


def _one_line(e):
    return " ".join(str(e).split())


def _cfg_int(value, where, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CommandError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


def _cfg_number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise CommandError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def _cfg_str(value, where, check):
    if not isinstance(value, str):
        raise CommandError(f"{where}: expected a string, got {value!r}")
    try:
        return check(value)
    except ValueError as e:
        raise CommandError(f"{where}: {e}") from None


def _cfg_list(value, where, check):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise CommandError(f"{where}: expected a non-empty list of names, got {value!r}")
    return [_cfg_str(v, where, check) for v in value]


_SHARED_KEYS = ("lr", "norm", "residual", "optimizer")     # at the top level and in [[config]]


def _cfg_shared(key, value, where):
    """A value of one of :data:`_SHARED_KEYS`, checked."""
    if key == "lr":
        return _cfg_number(value, where)
    if key == "residual":
        try:
            return check_residual(value)
        except ValueError as e:
            raise CommandError(f"{where}: {e}") from None
    return _cfg_str(value, where, check_norm if key == "norm" else check_optimizer)


def _read_config(path):
    """The options and [[config]] entries of a TOML file, validated."""
    data = _load_toml(path)
    where = os.path.basename(path)
    out = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in _CONFIG_KEYS:
            raise CommandError(f"--config: unknown key {raw_key!r} in {where}; expected some "
                               f"of {', '.join(_CONFIG_KEYS)}")
        w = f"--config: {where}: {raw_key}"
        if key in ("depth", "width", "steps", "batch_size", "threads"):
            out[key] = _cfg_int(value, w, 1)
        elif key in _SHARED_KEYS:
            out[key] = _cfg_shared(key, value, w)
        elif key == "activations":
            out[key] = _cfg_list(value, w, check_activation)
        elif key == "inits":
            out[key] = _cfg_list(value, w, check_init)
        elif key == "dataset":
            out[key] = _cfg_str(value, w, check_dataset)
        elif key == "seeds":
            seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(seeds, list) or not seeds:
                raise CommandError(f"{w}: expected a whole number or a list of them, got "
                                   f"{value!r}")
            out[key] = [_cfg_int(s, w, 0) for s in seeds]
        elif key == "out":
            if not isinstance(value, str) or not value:
                raise CommandError(f"{w}: expected a folder name, got {value!r}")
            out[key] = value
        elif key == "plots":
            if not isinstance(value, bool):
                raise CommandError(f"{w}: expected true or false, got {value!r}")
            out[key] = value
        elif key == "config":
            if isinstance(value, dict):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, dict)
                                                                   for v in value):
                raise CommandError(f"{w}: expected [[config]] tables (one per "
                                   f"configuration)")
            out[key] = [_read_entry(v, f"--config: {where}: [[config]] #{i + 1}")
                        for i, v in enumerate(value)]
    return out


def _read_entry(entry, where):
    out = {}
    for raw_key, value in entry.items():
        key = raw_key.replace("-", "_")
        if key not in _ENTRY_KEYS:
            raise CommandError(f"{where}: unknown key {raw_key!r}; expected some of "
                               f"{', '.join(_ENTRY_KEYS)}")
        w = f"{where}: {raw_key}"
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise CommandError(f"{w}: expected a non-empty string, got {value!r}")
            out[key] = " ".join(value.split())
        elif key == "activation":
            out[key] = _cfg_str(value, w, check_activation)
        elif key == "init":
            out[key] = _cfg_str(value, w, check_init)
        elif key in _SHARED_KEYS:
            out[key] = _cfg_shared(key, value, w)
    if "activation" not in out:
        raise CommandError(f"{where}: 'activation' is required")
    return out


def _auto_name(act, init, norm, residual, optimizer, base_optimizer):
    name = f"{act}, {init}"
    if norm:
        name += f" + {norm} norm"
    if residual is not None:
        name += " + residual" + ("" if residual == "auto" else f" {residual:g}")
    if optimizer != base_optimizer:
        name += f" + {optimizer}"
    return name


def resolve(args):
    """The settings and the list of :class:`Config` of a parsed command line."""
    cfg = _read_config(args.config) if args.config else {}
    s = {}
    for key, default in DEFAULTS.items():
        cli = getattr(args, key, None)
        if key == "plots":
            cli = False if args.no_plots else None
        s[key] = cli if cli is not None else cfg.get(key, default)
    base_opt = s["optimizer"]
    base_lr = s["lr"] if s["lr"] is not None else OPTIMIZERS[base_opt]
    s["lr"] = base_lr

    def make(name, act, init, norm, residual, optimizer, lr=None):
        opt = optimizer or base_opt
        if lr is None:
            lr = base_lr if opt == base_opt else OPTIMIZERS[opt]
        return Config(name=name, activation=act, init=init, norm=norm, residual=residual,
                      optimizer=opt, lr=float(lr))

    cli_grid = args.activations is not None or args.inits is not None
    if not cli_grid and "config" in cfg:
        mode = "config"
        configs = []
        for e in cfg["config"]:
            act = e["activation"]
            init = e.get("init", "standard")
            norm = e.get("norm", s["norm"])
            residual = e.get("residual", s["residual"])
            opt = e.get("optimizer", base_opt)
            name = e.get("name") or _auto_name(act, init, norm, residual, opt, base_opt)
            configs.append(make(name, act, init, norm, residual, opt, e.get("lr")))
    elif cli_grid or any(s[k] is not None for k in ("activations", "inits", "norm",
                                                     "residual")):
        mode = "grid"
        configs = []
        for act in s["activations"] or GRID_ACTIVATIONS:
            for init in s["inits"] or GRID_INITS:
                name = _auto_name(act, init, s["norm"], s["residual"], base_opt, base_opt)
                configs.append(make(name, act, init, s["norm"], s["residual"], base_opt))
    else:
        mode = "story"
        configs = [make(*row) for row in STORY]
    names = [c.name for c in configs]
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        raise CommandError(f"two configurations are both named {dup[0]!r}; give them distinct "
                           f"names")
    seen = set()
    s["seeds"] = [x for x in s["seeds"] if not (x in seen or seen.add(x))]
    s["mode"] = mode
    return s, configs


# ------------------------------------------------------------------------------ data
def load_data(name):
    try:
        return _load_data(name)
    except ImportError as e:
        raise CommandError(f"--{e}") from None


# ------------------------------------------------------------------------------ training
class Progress:
    """One status line on stderr, rewritten in place (only when enabled: on a terminal)."""

    def __init__(self, enabled, total_runs):
        self.status = _ui.StatusLine(live=enabled)
        self.total = total_runs
        self.done = 0

    @property
    def enabled(self):
        return self.status.live

    def show(self, label, step, steps, force=False):
        if self.enabled:
            self.status.update(f"vgcore compare [{self.done + 1}/{self.total}] {label}: step "
                               f"{step}/{steps}", force=force)

    def note(self, text):
        self.status.update(f"vgcore compare: {text}", force=True)

    def finish_run(self):
        self.done += 1

    def close(self):
        self.status.close()


def _record_steps(steps):
    return record_steps(steps, MAX_RECORDS)


def make_optimizer(net, cfg):
    return _make_optimizer(net, cfg.optimizer, cfg.lr)


@dataclass
class Run:
    """One configuration trained with one seed."""

    config: Config
    seed: int
    recorder: object
    losses: np.ndarray
    test: dict
    findings: list
    diverged_at: int | None
    seconds: float
    theory: tuple | None = None
    theory_q: list | None = None


def train(cfg, seed, data, s, progress):
    sizes = [data.X_train.shape[1]] + [s["width"]] * s["depth"] + \
        [data.n_classes if data.n_classes else data.y_train.shape[1]]
    try:
        net = vg.MLP(sizes, activation=cfg.activation, init=cfg.init, seed=seed,
                     norm=cfg.norm, residual=cfg.residual)
    except (ValueError, TypeError) as e:
        raise CommandError(f"configuration {cfg.name!r}: {_one_line(e)}") from None
    opt = make_optimizer(net, cfg)
    steps, batch = s["steps"], s["batch_size"]
    rec = vg.Recorder(schedule=_record_steps(steps), max_records=MAX_RECORDS + 1)
    t0 = time.perf_counter()
    losses, diverged = train_steps(net, opt, data, steps, batch, seed, rec,
                                   lambda step: progress.show(cfg.name, step + 1, steps))
    seconds = time.perf_counter() - t0
    progress.show(cfg.name, steps if diverged is None else diverged, steps, force=True)
    findings = findings_of(rec, net, diverged)
    test = held_out(net, data, diverged)

    theory = theory_q = None
    if cfg.norm is None and cfg.residual is None and len(rec) and s["depth"] >= 1:
        try:
            prof = vg.theory.predicted_gradient_profile(net, X=data.X_train)
        except (ValueError, TypeError):
            prof = None
        if prof is not None:
            H = s["depth"]
            d0 = rec.history("delta_norm", 0, 1)[0][:H]
            with np.errstate(divide="ignore", invalid="ignore"):
                measured = d0 / d0[H - 1]
            theory = (measured, np.sqrt(prof.delta_sq))
            theory_q = prof.q.tolist()
    progress.finish_run()
    return Run(cfg, seed, rec, losses, test, findings, diverged, seconds, theory, theory_q)


# ------------------------------------------------------------------------------ summary
def _mean(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if len(vals) == 1:
        return float(vals[0])
    return float(np.mean(vals))


def _geomean(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if len(vals) == 1:
        return float(vals[0])
    a = np.asarray(vals, np.float64)
    if np.any(np.isnan(a)):
        return math.nan
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(a))))


def _top(findings):
    return findings[0]


def run_numbers(run, depth):
    """The table's numbers for one run."""
    rec = run.recorder
    H = depth
    out = {"seed": run.seed}
    if len(rec):
        gr, dr = rec.history("grad_ratio"), rec.history("delta_ratio")
        out.update(grad_ratio_first=float(gr[0]), delta_ratio_first=float(dr[0]),
                   grad_ratio_last=float(gr[-1]), delta_ratio_last=float(dr[-1]),
                   last_recorded_step=int(rec.history("step")[-1]))
        with np.errstate(invalid="ignore"):
            out["saturated_fraction"] = float(np.mean(rec.history("saturated_fraction")[:, :H]))
            out["dead_fraction"] = float(np.mean(rec.history("dead_fraction")[:, :H]))
    else:
        out.update(grad_ratio_first=math.nan, delta_ratio_first=math.nan,
                   grad_ratio_last=math.nan, delta_ratio_last=math.nan, last_recorded_step=None,
                   saturated_fraction=math.nan, dead_fraction=math.nan)
    tail = run.losses[max(0, len(run.losses) - max(1, len(run.losses) // 10)):]
    out["train_loss"] = float(np.mean(tail)) if np.all(np.isfinite(tail)) else math.nan
    out["loss"] = run.test["loss"]
    out["accuracy"] = run.test["accuracy"]
    top = _top(run.findings)
    out["diagnosis"] = top.kind
    out["severity"] = top.severity
    out["diverged_at"] = run.diverged_at
    out["seconds"] = run.seconds
    return out


_SEVERITY = {"info": 0, "warning": 1, "error": 2}


def summarise(cfg, runs, depth):
    per = [run_numbers(r, depth) for r in runs]
    row = dict(cfg.as_dict())
    row["saturating"] = cfg.activation in SATURATING
    for key in ("grad_ratio_first", "delta_ratio_first", "grad_ratio_last", "delta_ratio_last"):
        row[key] = _geomean([p[key] for p in per])
    for key in ("saturated_fraction", "dead_fraction", "train_loss", "loss", "accuracy"):
        row[key] = _mean([p[key] for p in per])
    kinds = Counter(p["diagnosis"] for p in per)
    best = max(kinds.values())
    tied = [p for p in per if kinds[p["diagnosis"]] == best]
    chosen = max(tied, key=lambda p: _SEVERITY[p["severity"]])
    row["diagnosis"] = chosen["diagnosis"]
    row["severity"] = chosen["severity"]
    run0 = next(r for r in runs if _top(r.findings).kind == chosen["diagnosis"])
    row["diagnosis_message"] = _top(run0.findings).message
    row["diverged"] = [{"seed": p["seed"], "step": p["diverged_at"]} for p in per
                       if p["diverged_at"] is not None]
    row["seconds"] = float(sum(p["seconds"] for p in per))
    row["per_seed"] = per
    return row


# ------------------------------------------------------------------------------ table
COLUMNS = ("configuration", "dW 1st/last", "delta 1st/last", "saturated", "dead", "loss",
           "accuracy", "diagnosis")


def _fmt_ratio(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.1e}"


def _fmt_pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def _fmt_loss(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def table_cells(row):
    """The table's cells of one summary row, as printed and as in report.html."""
    return [row["name"], _fmt_ratio(row["grad_ratio_first"]),
            _fmt_ratio(row["delta_ratio_first"]),
            _fmt_pct(row["saturated_fraction"]) if row["saturating"] else "-",
            _fmt_pct(row["dead_fraction"]), _fmt_loss(row["loss"]), _fmt_pct(row["accuracy"]),
            row["diagnosis"].replace("_", " ") + (" (diverged)" if row["diverged"] else "")]


def format_table(rows):
    cells = [table_cells(r) for r in rows]
    w0 = max([len(COLUMNS[0])] + [len(c[0]) for c in cells])
    widths = [w0, 11, 14, 9, 6, 7, 8]
    head1 = (f"{'':{w0}s}  {'first step, layer 1 / output':>{widths[1] + widths[2] + 1}s}  "
             f"{'over the run':>{widths[3] + widths[4] + 1}s}  "
             f"{'held-out':>{widths[5] + widths[6] + 1}s}")
    head2 = f"{COLUMNS[0]:{w0}s}  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[1:3], widths[1:3])) + "  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[3:5], widths[3:5])) + "  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[5:7], widths[5:7])) + f"  {COLUMNS[7]}"
    lines = [head1, head2]
    for c in cells:
        lines.append(f"{c[0]:{w0}s}  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[1:3],
                                                                               widths[1:3]))
                     + "  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[3:5], widths[3:5]))
                     + "  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[5:7], widths[5:7]))
                     + f"  {c[7]}")
    return "\n".join(lines)


def _settings_line(s, data):
    seeds = ", ".join(str(x) for x in s["seeds"])
    return (f"{s['depth']} hidden layers of {s['width']} units; {data.description}; "
            f"{s['steps']} steps of batch {s['batch_size']}; "
            f"seed{'s' if len(s['seeds']) > 1 else ''} {seeds}; "
            f"{vg.get_num_threads()} thread{'s' if vg.get_num_threads() > 1 else ''}")


def _optimizer_text(cfg):
    return f"{cfg.optimizer} lr={cfg.lr:g}"


def _verdict(row, chance):
    acc = row["accuracy"]
    if row["diverged"]:
        return "diverged"
    if chance is None or acc is None or not math.isfinite(acc):
        return None
    if acc >= chance + 0.5 * (1 - chance):
        return "learns"
    if acc < chance + 0.1 * (1 - chance):
        return "barely learns"
    return "learns partly"


def story_lines(rows, chance):
    out = []
    for r in rows:
        g, d = r["grad_ratio_first"], r["delta_ratio_first"]
        text = (f"{r['name']}: at the first step layer 1's weight gradient is {_fmt_ratio(g)} "
                f"of the output layer's and its error signal {_fmt_ratio(d)}")
        v = _verdict(r, chance)
        if r["accuracy"] is not None and r["accuracy"] == r["accuracy"]:
            text += f"; held-out accuracy {_fmt_pct(r['accuracy'])}"
        if v:
            text += f" ({v})"
        text += f"; diagnosis: {r['diagnosis'].replace('_', ' ')}."
        out.append(text)
    return out


# ------------------------------------------------------------------------------ files
def _recorder_object(rec, tmpdir):
    path = os.path.join(tmpdir, "rec.json")
    rec.to_json(path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_measurements(out, runs, summary, s):
    """measurements.csv and measurements.json."""
    runs_json = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in runs:
            runs_json.append({
                "config": r.config.name, "seed": r.seed, "settings": r.config.as_dict(),
                "loss": r.losses, "diverged_at": r.diverged_at, "seconds": r.seconds,
                "test": r.test,
                "findings": [{"kind": f.kind, "severity": f.severity, "message": f.message,
                              "evidence": f.evidence, "fix": f.fix} for f in r.findings],
                "theory": None if r.theory is None else {
                    "delta_norm_relative_measured": r.theory[0],
                    "delta_norm_relative_predicted": r.theory[1],
                    "q": r.theory_q},
                "recorder": _recorder_object(r.recorder, tmp),
            })
    doc = {"format": "vgcore.compare.measurements", "version": 1,
           "about": "per configuration and seed: the vgcore.Recorder history (format "
                    "vgcore.recorder; Recorder.from_json reads the 'recorder' object saved as "
                    "a file), the training loss of every step, held-out metrics, findings and "
                    "the mean-field theory profile; 'summary' is summary.json",
           "summary": summary, "runs": runs_json}
    _report.write_text_atomic(os.path.join(out, "measurements.json"),
                              json.dumps(_ui.plain_json(doc), allow_nan=False))

    path = os.path.join(out, "measurements.csv")
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp_path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            header = None
            for r in runs:
                cols = r.recorder.to_dict()
                if header is None:
                    header = ["config", "seed", "loss"] + list(cols)
                    w.writerow(header)
                if not len(r.recorder):
                    continue
                data = [c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()]
                L = r.recorder.n_layers
                loss = np.repeat(r.losses[r.recorder.history("step")], L).tolist()
                for i, values in enumerate(zip(*data)):
                    w.writerow([r.config.name, r.seed, loss[i], *values])
            if header is None:
                w.writerow(["config", "seed", "loss"])
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def _geo_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    if len(arrays) == 1:
        return a[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(a), axis=0))


def _mean_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    return a[0] if len(arrays) == 1 else np.mean(a, axis=0)


def series_of(cfg, runs):
    recs = [r.recorder for r in runs]
    n = min(len(r) for r in recs)
    steps = recs[0].history("step")[:n]
    theory = None
    th = [r.theory for r in runs if r.theory is not None]
    if th:
        theory = (_geo_stack([t[0][None] for t in th])[0], th[0][1])
    return _report.RunSeries(
        name=cfg.name, steps=steps,
        grad_norm=_geo_stack([r.history("grad_norm") for r in recs]),
        delta_norm=_geo_stack([r.history("delta_norm") for r in recs]),
        saturated_fraction=_mean_stack([r.history("saturated_fraction") for r in recs]),
        dead_fraction=_mean_stack([r.history("dead_fraction") for r in recs]),
        loss=_mean_stack([r.losses for r in runs]),
        saturating=cfg.activation in SATURATING, theory=theory)


def write_html(out, s, data, rows, configs, runs, plots, elapsed):
    import html as _h
    chance = data.chance
    parts = [f"<h1>vgcore compare: the gradient flow of {len(rows)} configurations</h1>",
             f"<p class=\"muted\">{_h.escape(_settings_line(s, data))}; total "
             f"{elapsed:.1f} s.</p>"]
    parts.append("<h2>What happened</h2><ul>")
    for line in story_lines(rows, chance):
        parts.append(f"<li>{_h.escape(line)}</li>")
    parts.append("</ul>")
    for r in rows:
        cfg = next(c for c in configs if c.name == r["name"])
        if cfg.optimizer in ("adam", "adamw", "rmsprop", "adagrad") and cfg.norm is None \
                and cfg.residual is None:
            v = _verdict(r, chance)
            if v == "learns":
                parts.append(f"<p>{_h.escape(cfg.name)}: {cfg.optimizer} divides each "
                             f"parameter's step by the running size of its own gradient, so "
                             f"the small gradients of the first layers still move them.</p>")
            elif v in ("barely learns", "learns partly"):
                parts.append(
                    f"<p>{_h.escape(cfg.name)}: {cfg.optimizer} divides each parameter's step "
                    f"by the running size of its own gradient, which makes small gradients "
                    f"move their weights; but it cannot rescale what is not there: layer 1 "
                    f"receives {_fmt_ratio(r['grad_ratio_first'])} of the output layer's "
                    f"gradient (below the optimiser's epsilon), and the forward signal that "
                    f"distinguishes the inputs fades through the same layers, so at this depth "
                    f"it does not rescue the network. It helps shallower stacks.</p>")
    if chance is not None:
        parts.append(f"<p class=\"note\">Chance accuracy is {100 * chance:.0f}%. A ratio far "
                     f"below 1 means the gradient vanishes on its way to the input side; far "
                     f"above 1, that it explodes.</p>")

    parts.append("<h2>Table</h2>")
    header = ["configuration", "hidden layers", "optimiser", "dW layer 1 / output (first step)",
              "delta layer 1 / output (first step)", "saturated (mean over run)",
              "dead units (mean over run)", "held-out loss", "held-out accuracy", "diagnosis"]
    body, classes = [], []
    by_name = {c.name: c for c in configs}
    for r in rows:
        c = table_cells(r)
        cfg = by_name[r["name"]]
        layers = cfg.activation + ", " + cfg.init + (f", {cfg.norm} norm" if cfg.norm else "") \
            + (f", residual {cfg.residual}" if cfg.residual is not None else "")
        body.append([c[0], layers, _optimizer_text(cfg)] + c[1:])
        v = _verdict(r, chance)
        classes.append("good" if v == "learns" else "bad" if v in ("barely learns", "diverged")
                       else None)
    parts.append(_report.html_table(header, body, numeric=range(3, 9), row_classes=classes))
    parts.append("<p class=\"note\">dW = ||dL/dW|| (GradientFlow.grad_ratio); delta = the "
                 "backpropagated error dL/dh (delta_ratio); both measured at the first step. "
                 "Saturated: entries with |phi'(h)| &lt; 5% of its maximum, shown for "
                 "saturating activations (sigmoid, tanh, softsign, hard_tanh); dead: units with "
                 "zero derivative on the whole batch; both averaged over the hidden layers and "
                 "the recorded steps. Diagnosis: the kind of vgcore.diagnose's first finding on "
                 "the run's Recorder (its latest records).</p>")

    parts.append("<h2>Plots</h2>")
    if plots.written:
        for name in plots.written:
            parts.append(_report.html_figure(os.path.join(out, name), _report.PLOTS[name]))
    if plots.skipped:
        parts.append(f"<p class=\"note\">Skipped plots: {_h.escape(', '.join(plots.skipped))}"
                     f" &mdash; {_h.escape(plots.reason or '')}.</p>")

    parts.append("<h2>Diagnosis</h2>")
    for cfg in configs:
        rs = [r for r in runs if r.config is cfg]
        label = f"{cfg.name} (seed {rs[0].seed})" if len(rs) > 1 else cfg.name
        parts.append(f"<h3>{_h.escape(label)}</h3><pre>"
                     f"{_h.escape(format_findings(rs[0].findings))}</pre>")
    parts.append("<h2>Files</h2><p class=\"note\">Beside this page: summary.json (the table's "
                 "numbers), measurements.json (every run's Recorder history, per-step loss, "
                 "held-out metrics, findings and theory profile), measurements.csv (one row per "
                 "configuration, seed, recorded step and layer)"
                 + (", " + _h.escape(", ".join(plots.written)) if plots.written else "")
                 + ".</p>")
    _report.write_text_atomic(os.path.join(out, "report.html"),
                              _report.html_document("vgcore compare", "\n".join(parts)))


# ------------------------------------------------------------------------------ run
def _prepare_out(path):
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--out: {path} exists and is not a folder") from None
    except OSError as e:
        raise CommandError(f"--out: cannot create {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"--out: cannot write into {path}")
    return os.path.abspath(path)


def run(args):
    s, configs = resolve(args)
    data = load_data(s["dataset"])
    out = _prepare_out(s["out"])
    threads_before = vg.get_num_threads()
    progress = Progress(not args.quiet and _ui.is_terminal(), len(configs) * len(s["seeds"]))
    t0 = time.perf_counter()
    runs = []
    try:
        if s["threads"] is not None:
            vg.set_num_threads(s["threads"])
        s["threads_used"] = vg.get_num_threads()
        try:
            for cfg in configs:
                for seed in s["seeds"]:
                    runs.append(train(cfg, seed, data, s, progress))
            settings_text = _settings_line(s, data)
            rows = [summarise(c, [r for r in runs if r.config is c], s["depth"])
                    for c in configs]
            series = [series_of(c, [r for r in runs if r.config is c]) for c in configs]
            progress.note("writing the report")
            try:
                plots = _report.make_plots(series, out, enabled=s["plots"])
            except OSError as e:
                raise CommandError(f"--out: cannot write the plots into {out}: "
                                   f"{e.strerror or e}") from None
        finally:
            progress.close()
    finally:
        if vg.get_num_threads() != threads_before:
            vg.set_num_threads(threads_before)
    elapsed = time.perf_counter() - t0
    settings = {k: s[k] for k in ("mode", "depth", "width", "dataset", "steps", "batch_size",
                                  "seeds", "optimizer", "lr")}
    settings.update(threads=s["threads_used"], data=data.description, loss=data.loss,
                    n_train=int(len(data.X_train)), n_test=int(len(data.X_test)),
                    classes=data.n_classes, chance_accuracy=data.chance,
                    recorded_steps=len(_record_steps(s["steps"])))
    files = ["report.html", "summary.json", "measurements.json", "measurements.csv"] \
        + plots.written
    summary = _ui.plain_json({
        "format": "vgcore.compare", "version": 1, "settings": settings,
        "columns": {
            "grad_ratio_first": "||dL/dW_1|| / ||dL/dW_L|| at the first step "
                                "(GradientFlow.grad_ratio); geometric mean over seeds",
            "delta_ratio_first": "||delta_1|| / ||delta_L|| at the first step "
                                 "(GradientFlow.delta_ratio); geometric mean over seeds",
            "grad_ratio_last": "the same at the last recorded step",
            "delta_ratio_last": "the same at the last recorded step",
            "saturated_fraction": "mean over hidden layers and recorded steps (and seeds)",
            "dead_fraction": "mean over hidden layers and recorded steps (and seeds)",
            "loss": "held-out loss after training (mean over seeds)",
            "accuracy": "held-out accuracy after training (mean over seeds)",
            "train_loss": "mean training loss over the last 10% of steps",
            "diagnosis": "kind of the first vgcore.diagnose finding on the Recorder "
                         "(the most common over seeds)",
        },
        "configurations": rows, "out": out, "files": files,
        "skipped_plots": plots.skipped, "skipped_reason": plots.reason,
        "seconds": elapsed,
    })
    try:
        _report.write_text_atomic(os.path.join(out, "summary.json"),
                                  json.dumps(summary, indent=2, allow_nan=False) + "\n")
        write_measurements(out, runs, summary, s)
        write_html(out, s, data, rows, configs, runs, plots, elapsed)
    except OSError as e:
        raise CommandError(f"--out: cannot write the report into {out}: {e.strerror or e}") \
            from None

    if plots.skipped and s["plots"]:
        print(f"vgcore compare: skipped plots {', '.join(plots.skipped)}: {plots.reason}",
              file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    print(f"vgcore compare: {settings_text}")
    print()
    print(format_table(rows))
    print()
    print("dW, delta: ||dL/dW|| and the backpropagated error at layer 1 over the output layer's "
          "at the first step.")
    chance = "" if data.chance is None else f"; chance accuracy is {100 * data.chance:.0f}%"
    print(f"saturated (saturating activations only) and dead units: mean over hidden layers and "
          f"the run{chance}.")
    print(f"report: {os.path.join(out, 'report.html')} ({len(files)} files, "
          f"{elapsed:.1f} s)" + (f"; skipped plots: {plots.reason}" if plots.skipped else ""))
    return 0

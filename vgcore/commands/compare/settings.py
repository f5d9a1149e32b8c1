"""The settings of ``vgcore compare``: its vocabulary (norms, initialisers, the defaults, the
story's configurations), the checks of names, the TOML ``--config`` file, and :func:`resolve`,
which turns a parsed command line into the settings and the list of :class:`Config`."""
from __future__ import annotations

import argparse
import math
import os
from collections import Counter
from dataclasses import dataclass

import vgcore as vg
from vgcore.commands._common import CommandError, read_data_file
from vgcore.experiments.run import DATASETS, OPTIMIZERS, check_residual
from vgcore.experiments.run import load_data as _load_data


NORMS = {"none": None, "batch": "batch", "layer": "layer"}
INITS = tuple(i for i in vg.INITIALISERS if i != "normal")   # "normal" needs sigma_w

DEFAULTS = {
    "depth": 20, "width": 64, "dataset": "gaussian_mixture", "steps": 1000, "batch_size": 64,
    "seeds": [0], "optimizer": "sgd", "lr": None, "threads": None, "out": "vgcore-report",
    "plots": True, "norm": None, "residual": None, "activations": None, "inits": None,
    "data": None, "label": None, "tensorboard": None,
}
GRID_ACTIVATIONS = ["sigmoid", "tanh", "relu"]
GRID_INITS = ["standard"]


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


_CONFIG_KEYS = ("depth", "width", "activations", "inits", "norm", "residual", "optimizer", "lr",
                "dataset", "data", "label", "steps", "batch_size", "seeds", "threads", "out",
                "tensorboard", "plots", "config")
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
        elif key in ("out", "tensorboard"):
            if not isinstance(value, str) or not value:
                raise CommandError(f"{w}: expected a folder name, got {value!r}")
            out[key] = value
        elif key == "data":
            if not isinstance(value, str) or not value:
                raise CommandError(f"{w}: expected a file name, got {value!r}")
            # relative to the config file, as a path written in it would be read
            out[key] = os.path.join(os.path.dirname(os.path.abspath(path)), value)
        elif key == "label":
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                raise CommandError(f"{w}: expected a column name or a 0-based index, got "
                                   f"{value!r}")
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
    _check_data_options(args, cfg, s)
    s["mode"] = mode
    s["config_path"] = os.path.abspath(args.config) if args.config else None
    return s, configs


def _check_data_options(args, cfg, s):
    """``--data`` replaces the generated data set (the command line overrides the config
    file, so ``--dataset`` there drops the file's ``data``); ``--label`` needs a data file."""
    cli_data, cli_dataset = getattr(args, "data", None), getattr(args, "dataset", None)
    if cli_data is not None and cli_dataset is not None:
        raise CommandError("--data, --dataset: --data trains on your file instead of a "
                           "generated data set; give one of them")
    if cli_data is None and cli_dataset is None and "data" in cfg and "dataset" in cfg:
        raise CommandError(f"--config: {os.path.basename(args.config)}: data, dataset: a data "
                           f"file replaces the generated data set; give one of them")
    if cli_dataset is not None:
        s["data"] = None
        if getattr(args, "label", None) is None:
            s["label"] = None
    if s["data"] is not None:
        s["dataset"] = None
    elif s["label"] is not None:
        raise CommandError("--label: names the label column of a --data file; add --data "
                           "PATH")


def load_data(s):
    """The data of the settings ``s`` (a --data file, or the generated data set), and the
    data file's record for the report (None for a generated data set)."""
    if s.get("data") is not None:
        return read_data_file(s["data"], s.get("label"))
    try:
        return _load_data(s["dataset"]), None
    except ImportError as e:
        raise CommandError(f"--{e}") from None

"""The checkpoint file format (described in :mod:`vgcore.checkpoint`): the metadata a
network, an optimiser and a history are written as, and the complete check of a file before
anything is loaded from it."""
from __future__ import annotations

import json
import math
import numbers
import zlib

import numpy as np

from vgcore.core._ui import plain_json

__all__ = ["FORMAT", "VERSION", "read", "describe_net", "describe_optimizer", "history_dict",
           "build_net", "history_from", "optimizer_state", "crc"]

FORMAT = "vgcore.checkpoint"
VERSION = 1


def crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).data.cast("B")) & 0xFFFFFFFF


def json_value(x, where):
    """A strict-JSON copy of ``x`` (numpy scalars and arrays become Python values)."""
    return plain_json(x, nonfinite="raise", where=where, str_keys=True)


def history_dict(history) -> dict | None:
    """A history (a :class:`vgcore.trainer.History` or a mapping of sequences) as
    ``{name: [float or None]}``, non-finite values as None."""
    if history is None:
        return None
    if hasattr(history, "as_dict") and callable(history.as_dict):
        history = history.as_dict()
    if not isinstance(history, dict):
        raise TypeError(f"history: expected a vgcore History or a dict of lists, got "
                        f"{type(history).__name__}")
    out = {}
    for k, values in history.items():
        if not isinstance(k, str):
            raise TypeError(f"history: expected string keys, got {k!r}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"history[{k!r}]: expected a sequence of numbers, got "
                            f"{type(values).__name__}")
        row: list[float | None] = []
        for i, v in enumerate(values):
            if v is None:
                row.append(None)
                continue
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise TypeError(f"history[{k!r}][{i}]: expected a number or None, got "
                                f"{type(v).__name__}")
            v = float(v)
            row.append(v if math.isfinite(v) else None)
        out[k] = row
    return out


def describe_net(net) -> dict:
    return {
        "sizes": [int(s) for s in net.sizes],
        "activations": [{"name": a.name, "param": float(a.param)} for a in net.activations],
        "init": net.init,
        "sigma_w": None if net.sigma_w is None else float(net.sigma_w),
        "sigma_b": None if net.sigma_b is None else float(net.sigma_b),
        "dtype": net.dtype.name,
        "measure": bool(net.measure),
        "seed": None if net.seed is None else int(net.seed),
        "n_params": int(net.n_params),
        "norms": list(net.norms),
        "residuals": [None if r is None else float(r) for r in net.residuals],
        "dropouts": [float(p) for p in net.dropouts],
        "residual_init": net.residual_init,
        "dropout_seed": int(net.dropout_seed),
        "norm_momentum": float(net.norm_momentum),
        "norm_eps": float(net.norm_eps),
        "flush_subnormals": bool(net.flush_subnormals),
        "training": bool(net.training),
        "dropout_counter": int(net.dropout_counter),
    }


def describe_optimizer(opt, state) -> dict:
    hp = opt.hyperparameters()
    lr = opt.lr
    return {
        "type": type(opt).__name__,
        "lr": None if callable(lr) else float(lr),
        "lr_schedule": repr(lr) if callable(lr) else None,
        "step_count": int(state["step_count"]),
        "n_states": len(state["states"]),
        "hyperparameters": hp,
    }


class _Bad(Exception):
    """A problem with the file's content (turned into a ValueError naming the file)."""


def read(path: str):
    """Read and check a checkpoint file: ``(metadata, params, states)``; raises ValueError."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:     # not a zip, truncated, pickled data, ...
        raise ValueError(f"{path}: not a readable vgcore checkpoint (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from e
    if not hasattr(npz, "files"):          # a single .npy array
        raise ValueError(f"{path}: not a vgcore checkpoint: expected a .npz archive, got a "
                         f"single .npy array")
    try:
        with npz:
            try:
                data = {k: npz[k] for k in npz.files}
            except Exception as e:
                raise ValueError(f"{path}: not a readable vgcore checkpoint (truncated or "
                                 f"corrupt?): {type(e).__name__}: {e}") from e
        return _check_content(data)
    except _Bad as e:
        raise ValueError(f"{path}: {e}") from None


def _scalar(data, key, kind):
    if key not in data:
        raise _Bad(f"not a vgcore checkpoint: the archive has no {key!r} entry "
                   f"(entries: {sorted(data)})")
    a = data[key]
    if a.shape != () or a.dtype.kind not in kind:
        raise _Bad(f"not a vgcore checkpoint: expected {key!r} to be a scalar, got an array of "
                   f"dtype {a.dtype} and shape {a.shape}")
    return a.item()


def _check_content(data):
    fmt = _scalar(data, "format", "U")
    if fmt != FORMAT:
        raise _Bad(f"not a vgcore checkpoint: expected format {FORMAT!r}, got {fmt!r}")
    version = _scalar(data, "version", "iu")
    if version != VERSION:
        raise _Bad(f"unsupported checkpoint version {version}; this vgcore reads version "
                   f"{VERSION}")
    try:
        meta = json.loads(_scalar(data, "metadata", "U"))
    except json.JSONDecodeError as e:
        raise _Bad(f"corrupt metadata (not valid JSON: {e})") from None
    except RecursionError:
        raise _Bad("corrupt metadata (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise _Bad(f"corrupt metadata: expected a JSON object, got {type(meta).__name__}")
    try:
        netm = meta["network"]
        sizes = [int(s) for s in netm["sizes"]]
        dtype = np.dtype(netm["dtype"])
        acts = [(str(a["name"]), float(a["param"])) for a in netm["activations"]]
        checksums = meta["checksums"]
        if not isinstance(netm, dict) or not isinstance(checksums, dict):
            raise TypeError("'network' and 'checksums' must be objects")
        for k in ("init", "sigma_w", "sigma_b", "measure", "seed"):
            netm[k]
        optm = meta.get("optimizer")
        if optm is not None:
            if not isinstance(optm, dict) or not isinstance(optm["hyperparameters"], dict):
                raise TypeError("'optimizer' and its 'hyperparameters' must be objects")
            n_states = int(optm["n_states"])
            if not 0 <= n_states <= 2:
                raise ValueError(f"n_states {n_states} (an optimiser keeps 0 to 2 buffers)")
            for k in ("type", "step_count", "lr", "hyperparameters"):
                optm[k]
        else:
            n_states = 0
        hist = meta.get("history")
        if hist is not None:
            if not isinstance(hist, dict) or not all(
                    isinstance(v, list) and all(x is None or isinstance(x, (int, float))
                                                for x in v) for v in hist.values()):
                raise TypeError("'history' must be an object of lists of numbers")
        for k, kinds in (("dropout_counter", int), ("dropout_seed", int), ("training", bool),
                         ("flush_subnormals", bool)):
            if k in netm and not isinstance(netm[k], kinds):
                raise TypeError(f"'network.{k}' must be {kinds.__name__}")
    except (KeyError, TypeError, ValueError) as e:
        raise _Bad(f"corrupt metadata: a field is missing or has the wrong type "
                   f"({type(e).__name__}: {e})") from None
    if len(acts) != len(sizes) - 1:
        raise _Bad(f"corrupt metadata: {len(acts)} activations for {len(sizes) - 1} layers")
    norms = netm.get("norms") or [None] * (len(sizes) - 1)
    if not isinstance(norms, list) or len(norms) != len(sizes) - 1:
        raise _Bad(f"corrupt metadata: norms {norms!r} for {len(sizes) - 1} layers")
    n_params = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] * (3 if norms[i] else 1)
                   for i in range(len(sizes) - 1))
    if netm.get("n_params") != n_params:
        raise _Bad(f"corrupt metadata: n_params {netm.get('n_params')!r} does not match sizes "
                   f"{sizes} ({n_params} parameters)")
    names = ["params"] + [f"state_{i}" for i in range(n_states)]
    arrays = []
    for name in names:
        if name not in data:
            raise _Bad(f"the archive has no {name!r} entry")
        a = data[name]
        if a.dtype != dtype or a.shape != (n_params,):
            raise _Bad(f"{name!r}: expected {n_params} values of dtype {dtype.name} (for sizes "
                       f"{sizes}), got dtype {a.dtype} and shape {a.shape}")
        if name not in checksums or crc(a) != checksums[name]:
            raise _Bad(f"{name!r}: checksum mismatch (the file is corrupt)")
        arrays.append(a)
    units = sum(sizes[1:])
    running = []
    for name in ("running_mean", "running_var"):
        if name not in data:
            raise _Bad(f"the archive has no {name!r} entry")
        a = data[name]
        if a.dtype != np.float64 or a.shape != (units,):
            raise _Bad(f"{name!r}: expected {units} float64 values, got dtype {a.dtype} and "
                       f"shape {a.shape}")
        if name not in checksums or crc(a) != checksums[name]:
            raise _Bad(f"{name!r}: checksum mismatch (the file is corrupt)")
        running.append(a)
    meta["_running"] = running
    return meta, arrays[0], arrays[1:]


def build_net(meta):
    from vgcore.core.activations import ACTIVATIONS, Activation
    from vgcore.core.network import MLP
    m = meta["network"]
    hidden = []
    for a in m["activations"][:-1]:
        spec = ACTIVATIONS.get(a["name"])
        pname = None if spec is None else spec.param_name
        hidden.append(Activation(a["name"], **({pname: a["param"]} if pname else {})))
    hidden_only = slice(0, len(m["sizes"]) - 2)
    n_hidden = len(m["sizes"]) - 2
    return MLP(m["sizes"], activation=hidden, init=m["init"], dtype=m["dtype"], seed=m["seed"],
               sigma_w=m["sigma_w"], sigma_b=m["sigma_b"], measure=bool(m["measure"]),
               norm=(m.get("norms") or [None] * (n_hidden + 1))[hidden_only],
               residual=(m.get("residuals") or [None] * (n_hidden + 1))[hidden_only],
               dropout=(m.get("dropouts") or [0.0] * (n_hidden + 1))[hidden_only],
               residual_init=m.get("residual_init"), dropout_seed=m.get("dropout_seed", 0),
               norm_momentum=m.get("norm_momentum", 0.1), norm_eps=m.get("norm_eps", 1e-5),
               flush_subnormals=m.get("flush_subnormals", True))


def history_from(meta):
    h = meta.get("history")
    if h is None:
        return None
    return {k: [math.nan if v is None else float(v) for v in vals] for k, vals in h.items()}


def optimizer_state(meta, states):
    optm = meta.get("optimizer")
    if optm is None:
        return None
    return {"type": optm["type"], "step_count": int(optm["step_count"]), "lr": optm["lr"],
            "lr_schedule": optm.get("lr_schedule"), "states": list(states),
            "hyperparameters": dict(optm["hyperparameters"])}

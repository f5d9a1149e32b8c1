"""Checkpoints: a network, its optimiser's state and a training history in one ``.npz`` file.

::

    import vgcore as vg
    from vgcore.train import checkpoint

    checkpoint.save("run.npz", net, opt, history=hist, extra={"epoch": 7})
    ckpt = checkpoint.load("run.npz")              # a new network, built from the file
    opt2 = ckpt.make_optimizer()                   # the optimiser, with its state
    checkpoint.load_into("run.npz", net, opt)      # or into an existing network and optimiser

Format (version 1)
------------------
A NumPy ``.npz`` archive (a zip of ``.npy`` arrays, written by :func:`numpy.savez`, or
:func:`numpy.savez_compressed` with ``compress=True``) holding only plain arrays, so that
:func:`load` reads it with ``np.load(path, allow_pickle=False)`` and never runs code from the
file:

``format``
    0-d unicode array, ``"vgcore.checkpoint"``.
``version``
    0-d int64 array, ``1``.
``metadata``
    0-d unicode array: a strict-JSON object (no NaN or Infinity tokens)::

        {"network": {"sizes": [n_in, ..., n_out],
                     "activations": [{"name": ..., "param": ...} one per layer, the output
                                     layer's "identity" last],
                     "init": ..., "sigma_w": float or null, "sigma_b": float or null,
                     "dtype": "float32" | "float64", "measure": bool, "seed": int or null,
                     "n_params": int,
                     "norms": [null | "batch" | "layer" per layer],
                     "residuals": [null or the scale alpha per layer],
                     "dropouts": [p per layer], "residual_init": null | "zero",
                     "dropout_seed": int, "norm_momentum": float, "norm_eps": float,
                     "flush_subnormals": bool (absent in older files: true),
                     "training": bool, "dropout_counter": int},
         "optimizer": null or {"type": "SGD" | "Adam" | ..., "lr": float or null (a schedule),
                               "lr_schedule": repr of the schedule or null,
                               "step_count": int, "n_states": int,
                               "hyperparameters": {constructor keyword arguments, e.g.
                                                   "betas": [b1, b2], "eps": ...,
                                                   "weight_decay": ..., "clip_norm": ...}},
         "history": null or {name: [float or null per epoch]},
         "extra": null or any JSON value,
         "checksums": {"params": crc32, "state_0": crc32, ...},
         "vgcore_version": "..."}

    Non-finite history values are written as ``null`` and read back as NaN.
``params``
    1-D array of the network's dtype: :attr:`vgcore.MLP.params` (``W_1, b_1, [gamma_1,
    beta_1,] W_2, ...``).
``running_mean``, ``running_var``
    1-D float64 arrays, one entry per unit of every layer: batch norm's running averages.
``state_0``, ``state_1``, ...
    The optimiser's state buffers (:meth:`vgcore.optim.Optimizer.state_dict` ``["states"]``),
    each shaped and typed like ``params``: the momentum buffer of SGD, the squared-gradient
    average of RMSprop and Adagrad, Adam's first and second moments.

The CRC-32 checksums of the arrays' bytes are checked on loading, beside the zip format's own.

Safety
------
:func:`save` writes to a temporary file in the target's folder, flushes and ``fsync``-s it, then
renames it onto the target with :func:`os.replace`: the file at ``path`` is always either the
previous checkpoint or the complete new one, and the temporary file is removed if anything
fails.  :func:`load` and :func:`load_into` check the whole file (format, version, metadata,
shapes, dtypes, checksums, and for :func:`load_into` the architecture and optimiser) before
touching anything, and raise :class:`ValueError` naming the file and the problem: a failed load
leaves the network and optimiser as they were.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from vgcore.core._files import atomic_write
from vgcore.train import checkpoint_format as _fmt
from vgcore.train.checkpoint_format import FORMAT, VERSION

__all__ = ["save", "load", "load_into", "Checkpoint", "FORMAT", "VERSION"]


# ---------------------------------------------------------------------------- helpers
def _check_path(path, name="path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    return os.fspath(path)


def _check_net(net, name="net"):
    from vgcore.core.network import MLP
    if not isinstance(net, MLP):
        raise TypeError(f"{name}: expected a vgcore.MLP, got {type(net).__name__}")
    return net


def _check_optimizer(optimizer, net, name="optimizer"):
    from vgcore.train.optim import Optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: expected a vgcore.optim optimiser (or None), got "
                        f"{type(optimizer).__name__}")
    if optimizer.net is not net:
        raise ValueError(f"{name}: expected an optimiser of `net` (built with this network), "
                         f"got one built for another network ({optimizer.net!r})")
    return optimizer


# ---------------------------------------------------------------------------- save
def save(path, net, optimizer=None, history=None, extra=None, *, compress=False) -> None:
    """Write a checkpoint atomically (see the module docstring for the format).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write, used as given (no suffix is added; ``.npz`` is conventional).  Its
        folder must exist.  An existing file is replaced only once the new one is complete.
    net : vgcore.MLP
        The network: its architecture and parameters are saved.
    optimizer : vgcore.optim.Optimizer, optional
        An optimiser of ``net``: its type, hyper-parameters, step count, learning rate (when a
        number; a schedule is saved as its ``repr`` only) and state buffers are saved.
    history : vgcore.trainer.History or dict of lists of numbers, optional
        Per-epoch values; non-finite values are stored as null and read back as NaN.
    extra : JSON-able value, optional
        Anything else to keep (e.g. ``{"epoch": 7}``); numpy scalars and arrays are turned into
        numbers and lists.  Must be finite (strict JSON).
    compress : bool
        Use :func:`numpy.savez_compressed` (default False: :func:`numpy.savez`).

    Raises
    ------
    TypeError
        When an argument has the wrong type, or ``extra`` or ``history`` is not JSON-able.
    ValueError
        When ``optimizer`` belongs to another network, or ``extra`` holds NaN or Inf.
    OSError
        When the file cannot be written (the previous file at ``path`` is then left as it was).
    """
    path = _check_path(path)
    _check_net(net)
    if optimizer is not None:
        _check_optimizer(optimizer, net)
    if not isinstance(compress, (bool, np.bool_)):
        raise TypeError(f"compress: expected True or False, got {compress!r}")

    running_mean, running_var = net.norm_buffers
    arrays = {"params": net.params, "running_mean": running_mean, "running_var": running_var}
    checksums = {k: _fmt.crc(v) for k, v in arrays.items()}
    opt_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        opt_meta = _fmt.describe_optimizer(optimizer, state)
        for i, s in enumerate(state["states"]):
            arrays[f"state_{i}"] = s
            checksums[f"state_{i}"] = _fmt.crc(s)
    from vgcore import __version__
    meta = {
        "network": _fmt.describe_net(net),
        "optimizer": opt_meta,
        "history": _fmt.history_dict(history),
        "extra": _fmt.json_value(extra, "extra"),
        "checksums": checksums,
        "vgcore_version": __version__,
    }
    text = json.dumps(meta, allow_nan=False, separators=(",", ":"))
    arrays = {"format": np.array(FORMAT), "version": np.array(VERSION, np.int64),
              "metadata": np.array(text), **arrays}

    writer = np.savez_compressed if compress else np.savez
    atomic_write(path, "xb", lambda f: writer(f, **arrays))     # the folder fsynced too


# ---------------------------------------------------------------------------- load
@dataclass
class Checkpoint:
    """What :func:`load` returns.

    Attributes
    ----------
    net : vgcore.MLP
        A new network with the saved architecture and parameters.
    optimizer_state : dict or None
        ``{"type", "step_count", "lr", "states", "hyperparameters", "lr_schedule"}``; it can be
        passed to :meth:`vgcore.optim.Optimizer.load_state_dict` of an optimiser of the same
        type built on :attr:`net` (or use :meth:`make_optimizer`).  None when no optimiser was
        saved.
    history : dict of list of float, or None
        The saved history (NaN where a value was not finite).
    extra : any
        The saved ``extra`` value (JSON types).
    metadata : dict
        The whole metadata object of the file (see the module docstring).
    """

    net: object
    optimizer_state: dict | None
    history: dict | None
    extra: object
    metadata: dict = field(default_factory=dict, repr=False)

    def __iter__(self):
        """``net, optimizer_state, history, extra = load(path)``."""
        return iter((self.net, self.optimizer_state, self.history, self.extra))

    def make_optimizer(self, lr=None):
        """Rebuild the saved optimiser on :attr:`net`, with its hyper-parameters and state.

        Parameters
        ----------
        lr : float or callable, optional
            The learning rate to use; required when the saved one was a schedule (schedules
            are not stored), otherwise the saved number is used.

        Returns
        -------
        vgcore.optim.Optimizer
        """
        if self.optimizer_state is None:
            raise ValueError("make_optimizer: this checkpoint holds no optimiser state")
        from vgcore.train import optim
        st = self.optimizer_state
        cls = getattr(optim, st["type"], None)
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise ValueError(f"make_optimizer: the saved optimiser type {st['type']!r} is not "
                             f"one of vgcore.optim's")
        if lr is None:
            lr = st["lr"]
            if lr is None:
                raise ValueError(f"lr: the saved optimiser used a schedule "
                                 f"({st.get('lr_schedule')}), which checkpoints do not store; "
                                 f"expected lr= (a number or a schedule), got None")
        kwargs = dict(st["hyperparameters"])
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        opt = cls(self.net, lr=lr, **kwargs)
        opt.load_state_dict({"type": st["type"], "step_count": st["step_count"],
                             "lr": None if callable(lr) else lr, "states": st["states"]})
        return opt


def _restore_layer_state(net, meta) -> None:
    """Batch-norm running averages, the mode and the dropout counter."""
    m = meta["network"]
    running_mean, running_var = net.norm_buffers
    running_mean[...], running_var[...] = meta["_running"]
    net.training = bool(m.get("training", True))
    net.dropout_counter = int(m.get("dropout_counter", 0))


def load(path) -> Checkpoint:
    """Read a checkpoint into a new network.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Checkpoint
        ``(net, optimizer_state, history, extra)`` plus the file's ``metadata``; the network
        is built with the saved sizes, activations, initialiser settings, dtype, ``measure``
        and ``flush_subnormals``, and its parameters are bit-identical to the saved ones.

    Raises
    ------
    ValueError
        When the file is truncated or corrupt, not a vgcore checkpoint, or of another version;
        the message names the file and the problem.
    FileNotFoundError
        When there is no file at ``path``.
    """
    path = _check_path(path)
    meta, params, states = _fmt.read(path)
    try:
        net = _fmt.build_net(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: corrupt metadata: cannot build the network ({e})") from None
    if net.params.shape != params.shape:
        raise ValueError(f"{path}: the network built from the metadata has {net.n_params} "
                         f"parameters, the file {params.size}")
    net.params[...] = params
    _restore_layer_state(net, meta)
    meta.pop("_running")
    return Checkpoint(net, _fmt.optimizer_state(meta, states), _fmt.history_from(meta),
                      meta.get("extra"), meta)


def load_into(path, net, optimizer=None) -> Checkpoint:
    """Read a checkpoint into an existing network (and optimiser), all or nothing.

    Parameters
    ----------
    path : str or os.PathLike
    net : vgcore.MLP
        Must have the saved architecture: the same sizes, activations (with their parameters)
        and dtype.  The initialiser settings need not match; its ``measure`` and
        ``flush_subnormals`` are kept.
    optimizer : vgcore.optim.Optimizer, optional
        An optimiser of ``net`` of the saved type: its state buffers, step count and (when the
        saved one was a number) learning rate are restored, so training continues exactly as
        it would have.  Its other hyper-parameters are kept; a :class:`UserWarning` says which
        differ from the saved ones.

    Returns
    -------
    Checkpoint
        With ``net`` the given network.

    Raises
    ------
    ValueError
        When the file is truncated, corrupt, of another format or version, or does not match
        ``net`` or ``optimizer`` (or holds no optimiser state when one is given).  Everything
        is checked before anything is copied: on error ``net`` and ``optimizer`` are untouched.
    """
    path = _check_path(path)
    _check_net(net)
    if optimizer is not None:
        _check_optimizer(optimizer, net)
    meta, params, states = _fmt.read(path)
    netm = meta["network"]
    mine = _fmt.describe_net(net)
    for key in ("sizes", "activations", "dtype", "n_params", "norms", "residuals", "dropouts"):
        if netm.get(key, mine[key]) != mine[key]:
            raise ValueError(f"{path}: architecture mismatch: the checkpoint has {key} "
                             f"{netm[key]}, the network has {mine[key]}")
    opt_state = _fmt.optimizer_state(meta, states)
    if optimizer is not None:
        if opt_state is None:
            raise ValueError(f"{path}: optimizer: the checkpoint holds no optimiser state, so "
                             f"there is nothing to load into the given {type(optimizer).__name__}")
        if opt_state["type"] != type(optimizer).__name__:
            raise ValueError(f"{path}: optimizer: the checkpoint holds a {opt_state['type']} "
                             f"state, got a {type(optimizer).__name__} optimiser")
        n_mine = len(optimizer.state_dict()["states"])
        if n_mine != len(states):
            raise ValueError(f"{path}: optimizer: the checkpoint holds {len(states)} state "
                             f"buffers, the {type(optimizer).__name__} has {n_mine} (e.g. SGD "
                             f"with and without momentum)")
        saved_hp = opt_state["hyperparameters"]
        my_hp = optimizer.hyperparameters()
        differ = sorted(k for k in set(saved_hp) | set(my_hp) if saved_hp.get(k) != my_hp.get(k))
    # everything checked: copy
    net.params[...] = params
    _restore_layer_state(net, meta)
    meta.pop("_running")
    if optimizer is not None:
        optimizer.load_state_dict({"type": opt_state["type"],
                                   "step_count": opt_state["step_count"],
                                   "lr": opt_state["lr"], "states": states})
        if differ:
            detail = ", ".join(f"{k}: saved {saved_hp.get(k)!r}, optimizer {my_hp.get(k)!r}"
                               for k in differ)
            warnings.warn(f"{path}: the optimiser's hyper-parameters differ from the saved ones "
                          f"({detail}); they were kept as they are", UserWarning, stacklevel=2)
    return Checkpoint(net, opt_state, _fmt.history_from(meta), meta.get("extra"), meta)

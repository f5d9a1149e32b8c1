"""The integers the compiled core and the Python layer share, read from the compiled module.

``src/vg_contract.h`` names every id both sides use: activation ids, the fields of a layer's
measurement row, optimiser kinds, the hyper-parameter slots of an update, normalisation kinds
and the quantities derived from measurement rows.  ``vgcore._engine`` exports the names in id
order; this module turns them into ``name -> id`` maps, so no id, count or slot number is
written twice.

Each Python module that relies on a table states what it knows with :func:`require` when it is
imported (``vgcore.core.activations`` the activations, ``vgcore.measure.flow`` the measurement
fields and the derived ones, ``vgcore.train.optim`` the optimiser kinds and slots,
``vgcore.core.network`` the normalisations): if the two sides disagree (a statistic added in C
and not in Python, a stale build), ``import vgcore`` fails with a :class:`ContractError` naming
what differs, instead of a kernel writing past a buffer sized by the other side.
"""
from __future__ import annotations

from vgcore import _engine

__all__ = ["ContractError", "require", "ACTIVATION_IDS", "STATISTICS", "STAT", "N_STATS",
           "OPTIMIZER_KINDS", "HYPERPARAMETERS", "HYPER", "N_HYPERPARAMETERS", "NORM_KINDS",
           "DERIVED", "DERIVED_ID", "N_LAYER_FIELDS"]


class ContractError(ImportError):
    """The compiled core and the Python layer disagree on a shared table."""


def _table(name) -> tuple:
    names = getattr(_engine, name, None)
    if (not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)):
        raise ContractError(f"vgcore._engine.{name}: expected a tuple of distinct names, got "
                            f"{names!r}; the compiled core is stale or broken: rebuild vgcore "
                            f"(pip install .)")
    return names


def _ids(names) -> dict:
    return {n: i for i, n in enumerate(names)}


ACTIVATION_IDS = _ids(_table("ACTIVATIONS"))
"""Activation name -> compiled kernel id."""
STATISTICS = _table("STATISTICS")
"""The fields of a layer's measurement row, in row order."""
STAT = _ids(STATISTICS)
"""Measurement field -> its index in the row."""
N_STATS = len(STATISTICS)
"""Doubles per layer in the measurement array (the compiled core's ``VG_N_STATS``)."""
OPTIMIZER_KINDS = _ids(_table("OPTIMIZERS"))
"""Compiled update name -> kind."""
HYPERPARAMETERS = _table("HYPERPARAMETERS")
"""The slots of an update's hyper-parameter vector, in order."""
HYPER = _ids(HYPERPARAMETERS)
"""Hyper-parameter name -> slot."""
N_HYPERPARAMETERS = len(HYPERPARAMETERS)
NORM_KINDS = _ids(_table("NORMS"))
"""Normalisation name ("none", "batch", "layer") -> kind."""
DERIVED = _table("DERIVED")
"""The quantities derived from measurement rows (src/vg_derive.h), in id order: the per-layer
fields, then the per-step scalars."""
DERIVED_ID = _ids(DERIVED)
"""Derived quantity name -> id."""
N_LAYER_FIELDS = _engine.N_LAYER_FIELDS
"""How many of :data:`DERIVED` are per-layer fields (the first ones)."""

if (_engine.N_STATS != N_STATS or _engine.N_HYPERPARAMETERS != N_HYPERPARAMETERS
        or not 0 < N_LAYER_FIELDS <= len(DERIVED)):
    raise ContractError(f"vgcore._engine: N_STATS {_engine.N_STATS} / N_HYPERPARAMETERS "
                        f"{_engine.N_HYPERPARAMETERS} / N_LAYER_FIELDS {N_LAYER_FIELDS} do not "
                        f"match its name tables ({N_STATS} / {N_HYPERPARAMETERS} / at most "
                        f"{len(DERIVED)}); rebuild vgcore (pip install .)")


def require(what, python_names, engine_names) -> None:
    """Fail loudly unless the Python side knows exactly the names the compiled core defines.

    Parameters
    ----------
    what : str
        The table, for the message ("measurement fields", ...).
    python_names, engine_names : iterables of str

    Raises
    ------
    ContractError
        Naming the names only one side has.
    """
    py, core = list(python_names), list(engine_names)
    only_core = [n for n in core if n not in py]
    only_py = [n for n in py if n not in core]
    if only_core or only_py:
        parts = []
        if only_core:
            parts.append(f"the compiled core defines {', '.join(only_core)} (src/vg_contract.h) "
                         f"which Python does not know")
        if only_py:
            parts.append(f"Python expects {', '.join(only_py)}, which the compiled core does not "
                         f"define")
        raise ContractError(f"vgcore: the compiled core and the Python layer disagree on the "
                            f"{what}: {'; '.join(parts)}. Rebuild vgcore (pip install .) if the "
                            f"sources changed; otherwise add the name on both sides "
                            f"(CONTRIBUTING.md)")

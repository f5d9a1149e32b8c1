"""Load the compiled core with OpenMP's idle threads waiting passively, unless the user chose.

OpenMP's runtime (libgomp) reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is
loaded; by default an idle worker spins for a while after every parallel region before it
sleeps.  On a machine whose cores are shared (another process's BLAS threads, a test run, other
users) those spinning workers take the cores that vgcore's own BLAS threads are waiting for.
So, when neither variable is set, vgcore sets ``OMP_WAIT_POLICY=PASSIVE`` for the moment it
loads its compiled core (which loads libgomp) and then removes it again: the process's
environment, and its children's, are as the user left them.  Passive waiting changes no
result; it costs a thread wake-up (microseconds) per parallel region, and vgcore opens a
parallel region only for elementwise work of at least half a million elements.

If libgomp was already loaded (say by PyTorch, imported first), its settings stand and
vgcore's has no effect; :data:`STATE` says which case applies.
"""
from __future__ import annotations

import os

__all__ = ["STATE", "load_engine"]

STATE: dict = {}
"""``policy`` (the OMP_WAIT_POLICY in effect, lower case, or ``"default"``) and ``set_by``
(``"vgcore"``, ``"user"``, or ``"another library"`` when libgomp was loaded before vgcore)."""

_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            return "libgomp" in f.read()
    except OSError:
        return False


def load_engine():
    """Import ``vgcore._engine`` as described above; returns the module."""
    user = {k: os.environ[k] for k in _VARIABLES if k in os.environ}
    ours = not user and not _libgomp_loaded()
    if ours:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from vgcore import _engine
    finally:
        if ours:
            os.environ.pop("OMP_WAIT_POLICY", None)
    if ours:
        STATE.update(policy="passive", set_by="vgcore")
    elif user:
        STATE.update(policy=user.get("OMP_WAIT_POLICY", "default").lower(), set_by="user")
    else:
        STATE.update(policy="default", set_by="another library")
    return _engine

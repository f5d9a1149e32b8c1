"""Load the compiled core with OpenMP's idle threads spinning briefly, then sleeping, unless
the user chose.

OpenMP's runtime (libgomp) reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is
loaded.  By default an idle worker spins for a long while after every parallel region before
it sleeps (300,000 rounds of a pause instruction: several milliseconds); on a machine whose
cores are shared (another process's BLAS threads, a test run, other users) those spinning
workers take the cores that others wait for.  Waiting passively (sleeping at once) has its own
cost: every parallel region then wakes its worker, and Linux may wake it on the calling
thread's core and leave it there, so that both halves of a narrow network's step run on one
core (seen on a 2-core AMD EPYC VM: deep-narrow at 1.2-1.4 ms a step against 0.75 ms, in one
process out of three or four, for thousands of steps).

So, when neither variable is set, vgcore sets ``GOMP_SPINCOUNT`` to :data:`SPINCOUNT` for the
moment it loads its compiled core (which loads libgomp) and then removes it again: the
process's environment, and its children's, are as the user left them.  A worker then spins
for about 0.25 ms (AMD Zen 4; about twice that on Intel cores, whose pause instruction is
slower) after a region, long enough to span the Python between two steps, and then sleeps.
The wait policy changes no result.

If libgomp was already loaded (say by PyTorch, imported first), its settings stand and
vgcore's has no effect; :data:`STATE` says which case applies.
"""
from __future__ import annotations

import os

__all__ = ["STATE", "load_engine"]

SPINCOUNT = "10000"
"""The rounds an idle OpenMP worker spins before it sleeps, when vgcore chooses."""

STATE: dict = {}
"""``policy`` (the OMP_WAIT_POLICY in effect, lower case, ``"spin then sleep"`` when vgcore set
the spin count, or ``"default"``), ``spincount`` (GOMP_SPINCOUNT as set, a string, or None) and
``set_by`` (``"vgcore"``, ``"user"``, ``"another library"`` when libgomp was loaded before
vgcore, or ``"not libgomp"`` when vgcore's compiled core runs another OpenMP runtime, or none,
which GOMP_SPINCOUNT does not reach)."""

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
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        from vgcore import _engine
    finally:
        if ours:
            os.environ.pop("GOMP_SPINCOUNT", None)
    if ours and not _libgomp_loaded():
        STATE.update(policy="default", spincount=None, set_by="not libgomp")
    elif ours:
        STATE.update(policy="spin then sleep", spincount=SPINCOUNT, set_by="vgcore")
    elif user:
        STATE.update(policy=user.get("OMP_WAIT_POLICY", "default").lower(),
                     spincount=user.get("GOMP_SPINCOUNT"), set_by="user")
    else:
        STATE.update(policy="default", spincount=None, set_by="another library")
    return _engine

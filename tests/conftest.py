"""Fixtures for the vgcore test suite; the shared helpers live in ``_vgtest.py``.

pyproject sets ``--import-mode=importlib`` so that the installed (compiled) vgcore is imported,
not the source folder; this folder (which holds no ``vgcore``) is put on ``sys.path`` so the
test modules can import ``_vgtest``.

Nothing is dropped silently: a test module skipped as a whole fails the collection, and with
``VGCORE_NO_SKIPS=1`` (set by ``.ci/run``, where every optional dependency is installed) any
skipped test fails the run.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vgcore as vg  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_restored():
    """Every test leaves the vgcore thread count as it found it."""
    before = vg.get_num_threads()
    yield
    after = vg.get_num_threads()
    if after != before:
        vg.set_num_threads(before)
        pytest.fail(f"test changed vgcore's thread count from {before} to {after}")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module-level skip would drop every test of the module without a failure: refuse it.

    The report is changed where it is made, before anything reads it (the session's failure
    count and the terminal summary both read it in ``pytest_collectreport``)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(collector, pytest.Module):
        report.outcome = "failed"
        report.longrepr = (f"{report.nodeid}: the whole module was skipped at import "
                           f"({report.longrepr}); skip single tests instead, so a renamed "
                           f"parameter or a missing build cannot drop them all silently")


_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("VGCORE_NO_SKIPS"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped:
        print(f"\nVGCORE_NO_SKIPS is set and {len(_skipped)} test(s) were skipped: "
              + ", ".join(_skipped[:10]), file=sys.stderr)
        session.exitstatus = 1

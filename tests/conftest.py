"""Fixtures for the vgcore test suite; the shared helpers live in ``_vgtest.py``.

pyproject sets ``--import-mode=importlib`` so that the installed (compiled) vgcore is imported,
not the source folder; this folder (which holds no ``vgcore``) is put on ``sys.path`` so the
test modules can import ``_vgtest``.
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

"""The scripts in examples/ run end to end and print what they promise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_profile_torch_mlp_finds_the_vanishing_gradient_and_the_batch_norm_remedy():
    pytest.importorskip("torch")
    out = run_example("profile_torch_mlp.py")
    first, second = out.split("== the same with nn.BatchNorm1d")
    assert "[ERROR] vanishing: the gradient reaching layer 1" in first
    assert "first/last gradient norm" in first and "   11   identity" in first
    assert "[INFO] healthy" in second and "[ERROR]" not in second
    assert "net.to_torch() computes the same outputs: True" in second

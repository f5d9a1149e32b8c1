"""The baselines are honest: every system the benchmarks race computes the same training step.

For every configuration and system: one step from the same parameters and batch gives the
reference's loss (relative 1e-4) and gradients (each layer's dW and db, relative Frobenius error
below _baselines.GRAD_RTOL), and updates the parameters to ``params - lr * grads``.  These are
plain tests, run in smoke mode (``--benchmark-disable``) too.
"""
import tracemalloc

import numpy as np
import pytest

import _baselines as bl
import _bench_common as bc


@pytest.mark.parametrize("system", bc.SYSTEMS)
@pytest.mark.parametrize("config", list(bc.CONFIGS))
def test_system_agrees_with_reference(config, system):
    cfg = bc.CONFIGS[config]
    if system == "torch":
        torch, why = bc.get_torch()
        if torch is None:
            pytest.skip(f"PyTorch: {why}")
    r = bc.check_system(cfg, system)
    assert r["grad_rel_err"] < bl.GRAD_RTOL


def test_tuned_numpy_step_allocates_nothing():
    """After the first step, a tuned NumPy step allocates no array: the traced peak of three
    steps stays below the smallest array the step could allocate (a (batch,) float32 vector,
    16 KiB here).  What remains are ufunc iterators and views, a few hundred bytes to 4 KiB."""
    rng = np.random.default_rng(0)
    sizes, batch = [32, 64, 64, 10], 4096
    weights = [rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a)
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    for act in ("tanh", "sigmoid", "relu"):
        step = bl.TunedNumpyMLP(weights, biases, act, X, y, bc.LR)
        step()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(3):
                step()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak < 8192, f"{act}: a tuned NumPy step allocated {peak} bytes at its peak"


def test_tuned_numpy_learns():
    """Twenty steps on one batch lower the loss, as the reference's do, and the parameters
    stay equal to the reference's within float32 rounding."""
    cfg = bc.CONFIGS["deep-narrow"]
    prob = bc.Problem(cfg, systems=("numpy", "reference"))
    tuned, ref = prob.systems["numpy"], prob.systems["reference"]
    losses, ref_losses = [], []
    for _ in range(20):
        losses.append(tuned())
        ref_losses.append(ref())
    assert losses[-1] < losses[0] - 0.01
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for (w, b), (rw, rb) in zip(tuned.parameters(), ref.parameters()):
        assert np.max(np.abs(w - rw)) < 1e-5 and np.max(np.abs(b - rb)) < 1e-5


def test_tuned_numpy_rejects_what_it_does_not_implement():
    cfg = bc.CONFIGS["deep-narrow"]
    net = bc.make_net(cfg)
    X, y = bc.make_data(cfg)
    with pytest.raises(ValueError, match="activation"):
        bl.TunedNumpyMLP([np.asarray(w) for w in net.weights],
                         [np.asarray(b) for b in net.biases], "gelu", X, y, bc.LR)
    with pytest.raises(ValueError, match="labels"):
        bl.TunedNumpyMLP([np.asarray(w) for w in net.weights],
                         [np.asarray(b) for b in net.biases], "tanh", X, y + 10, bc.LR)


def test_problem_skips_torch_cleanly_when_absent(monkeypatch):
    monkeypatch.setattr(bc, "_TORCH", (None, "torch is not installed"))
    prob = bc.Problem(bc.CONFIGS["deep-narrow"])
    assert "torch" not in prob.systems
    assert prob.skipped == {"torch": "torch is not installed"}
    assert set(prob.systems) == {"numpy", "reference", "vgcore"}

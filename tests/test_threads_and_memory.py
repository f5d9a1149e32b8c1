"""Thread control, OpenMP, GIL release (concurrent use of separate networks), buffer reuse:
no allocation in a warmed-up training step, read-only views, bounded workspaces."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import vgcore as vg
import vgcore.core.network
from vgcore.core import reference as R
from _vgtest import LOSS_NAMES, assert_close, make_target, num_threads

DTYPE_PARAMS = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


# ------------------------------------------------------------------------------- threads

def test_set_num_threads_sets_engine_and_blas_threads_and_is_restorable():
    before = vg.get_num_threads()
    with num_threads(1):
        assert vg.get_num_threads() == 1
        assert all(info["num_threads"] == 1 for info in vg.blas_info())
    with num_threads(2):
        assert vg.get_num_threads() == 2
        assert all(info["num_threads"] == 2 for info in vg.blas_info())
    assert vg.get_num_threads() == before


def test_blas_info_lists_loaded_blas_libraries():
    info = vg.blas_info()
    assert info, "no BLAS library reported"
    for entry in info:
        assert entry["user_api"] == "blas"
        assert entry["num_threads"] >= 1


@pytest.mark.skipif(not os.environ.get("CI"), reason="OpenMP is only required on CI")
def test_openmp_enabled_on_ci():
    assert vg.openmp_enabled() is True


def _threads_in_subprocess(omp_num_threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(omp_num_threads))
    code = "import vgcore; print(vgcore.get_num_threads())"
    # run from / so that the installed vgcore is imported, not the source folder
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True,
                         text=True, timeout=120, check=True)
    return int(out.stdout.strip())


def test_default_thread_count_honours_OMP_NUM_THREADS():
    assert _threads_in_subprocess(1) == 1
    if vg.openmp_enabled():
        assert _threads_in_subprocess(3) == 3


# --------------------------------------------------------------------- concurrent networks

def _train(seed, dtype, steps, results, key, barrier=None):
    rng = np.random.default_rng(seed)
    net = vg.MLP([32, 64, 64, 10], activation="gelu", dtype=dtype, seed=seed, sigma_b=0.1)
    opt = vg.optim.SGD(net, 0.05)
    X = rng.standard_normal((32, 32)).astype(dtype)
    y = rng.integers(0, 10, 32)
    if barrier is not None:
        barrier.wait()
    losses = []
    for _ in range(steps):
        losses.append(net.train_step(X, y, "cross_entropy", opt))
        out = net.forward(X)
        dX = net.backward(np.ones_like(out)).copy()
    results[key] = (np.array(losses), net.params.copy(), dX)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
def test_separate_networks_in_python_threads_give_the_sequential_results(dtype, threads):
    steps = 40
    with num_threads(threads):
        sequential = {}
        for k in range(3):
            _train(100 + k, dtype, steps, sequential, k)
        concurrent = {}
        barrier = threading.Barrier(3)
        workers = [threading.Thread(target=_train,
                                    args=(100 + k, dtype, steps, concurrent, k, barrier))
                   for k in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers), "a worker thread hung"
    assert sorted(concurrent) == [0, 1, 2], "a worker thread failed"
    for k in range(3):
        for a, b in zip(sequential[k], concurrent[k]):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------- memory

def _target(loss, batch, n_out, dtype, rng):
    t = make_target(loss, batch, n_out, dtype, rng)
    if loss == "cross_entropy":
        t = t.astype(np.int64)
    return t


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPE_PARAMS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_warmed_up_train_step_allocates_no_memory(loss, dtype, threads):
    # batch 512: any per-step array the size of the batch (labels, outputs, gradients) would
    # be >= 4 KiB; numpy's reductions (labels.min(), targets.max()) use ~1 KiB of transient
    # bookkeeping, which the 2 KiB bound allows
    batch = 512
    rng = np.random.default_rng(0)
    net = vg.MLP([16, 24, 24, 4], activation="tanh", dtype=dtype, seed=0)
    opt = vg.optim.SGD(net, 0.01)
    X = rng.standard_normal((batch, 16)).astype(dtype)
    target = _target(loss, batch, 4, dtype, rng)
    with num_threads(threads):
        net.train_step(X, target, loss, opt)          # warm-up: buffers for this batch size
        gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            for _ in range(5):
                net.train_step(X, target, loss, opt)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak - base < 2048, f"a warmed-up step allocated {peak - base} bytes"
    assert current - base < 256, f"{current - base} bytes still allocated after 5 steps"


def test_warmed_up_forward_and_backward_allocate_no_memory():
    rng = np.random.default_rng(1)
    net = vg.MLP([16, 32, 8], dtype="float64", seed=1)
    X = rng.standard_normal((256, 16))
    dout = rng.standard_normal((256, 8))
    net.forward(X)
    net.backward(dout)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(5):
            net.forward(X)
            net.backward(dout)
            net.backward(dout, input_grad=False)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 1024
    assert current - base < 256


def test_forward_and_backward_return_read_only_views_overwritten_by_the_next_pass():
    rng = np.random.default_rng(2)
    net = vg.MLP([5, 7, 3], dtype="float64", seed=2)
    X1, X2 = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    out1 = net.forward(X1)
    assert not out1.flags.writeable
    with pytest.raises(ValueError):
        out1[0, 0] = 1.0
    saved = out1.copy()
    dX1 = net.backward(np.ones((4, 3)))
    assert not dX1.flags.writeable
    with pytest.raises(ValueError):
        dX1[...] = 0
    out2 = net.forward(X2)
    assert np.shares_memory(out1, out2)          # the same buffer, reused
    assert not np.array_equal(out1, saved)        # ... so the old view now shows the new pass
    np.testing.assert_array_equal(out2, net.predict(X2))


def test_switching_batch_sizes_back_and_forth_gives_the_same_results():
    rng = np.random.default_rng(3)
    net = vg.MLP([6, 10, 4], activation="softplus", dtype="float64", seed=3)
    Xs = {b: rng.standard_normal((b, 6)) for b in (1, 3, 8, 64)}
    first = {}
    for b, X in Xs.items():
        first[b] = (net.predict(X), net.backward(np.ones((b, 4))).copy(), net.grads.copy())
    for b in (64, 1, 8, 3, 1, 64):
        out = net.predict(Xs[b])
        dX = net.backward(np.ones((b, 4))).copy()
        np.testing.assert_array_equal(out, first[b][0])
        np.testing.assert_array_equal(dX, first[b][1])
        np.testing.assert_array_equal(net.grads, first[b][2])


def _workspace_bytes(net, batch):
    itemsize = net.dtype.itemsize
    L = len(net.sizes) - 1
    measurement_rows = 8 * batch * (2 * L + 1)     # float64 per-sample norms, in and delta
    return (itemsize * batch * (3 * sum(net.sizes[1:]) + net.sizes[0] + net.sizes[-1])
            + measurement_rows)


def test_workspaces_are_bounded_when_batch_sizes_keep_changing():
    keep = vgcore.network._WORKSPACE_CACHE
    rng = np.random.default_rng(4)
    net = vg.MLP([8, 64, 64, 8], dtype="float64", seed=4)
    old_view = net.forward(rng.standard_normal((1000, 8)))
    old_copy = old_view.copy()
    batches = list(range(200, 1200, 50))
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for b in batches:
            net.forward(rng.standard_normal((b, 8)))
            net.backward(np.ones((b, 8)))
            assert len(net._workspaces) <= keep
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(_workspace_bytes(net, b) for b in batches[-keep:])
    kept += batches[-1] * 8 * 8           # the network keeps the last X (for dW_1)
    assert current - base <= kept + 16 * 1024, (
        f"{current - base} bytes held after {len(batches)} batch sizes; the last {keep} "
        f"workspaces need {kept}")
    # a view handed out before its workspace was evicted stays valid
    np.testing.assert_array_equal(old_view, old_copy)


def test_evicted_batch_size_is_recomputed_correctly():
    rng = np.random.default_rng(5)
    net = vg.MLP([4, 9, 3], activation="elu", dtype="float64", seed=5)
    ref = R.ReferenceMLP.from_network(net)
    X = rng.standard_normal((7, 4))
    first = net.predict(X)
    for b in range(10, 10 + 2 * vgcore.network._WORKSPACE_CACHE):
        net.forward(rng.standard_normal((b, 4)))
    assert 7 not in net._workspaces
    np.testing.assert_array_equal(net.predict(X), first)
    assert_close(net.predict(X), ref.forward(X), np.float64)

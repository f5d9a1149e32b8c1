"""Long runs hold memory flat.

Thousands of tiny training steps with the batch size changing at every step (cycling through
ten sizes, more than the four workspaces a network keeps, so buffers are evicted and
reallocated all the time), repeated ``vg.fit`` epochs with validation, a recorder and
checkpoints, repeated ``vg.evaluate``, and networks built and dropped: after a warm-up, the
memory Python and NumPy hold (``tracemalloc``) and the process's resident memory (RSS, which
also sees the C and BLAS heaps) do not grow, and no reference to an input array is leaked by the
compiled calls.
"""
from __future__ import annotations

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import vgcore as vg

BATCHES = (1, 3, 7, 12, 19, 26, 33, 41, 50, 64)        # ten sizes, cycled every step
KiB = 1024


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _data(net, rng, loss="cross_entropy"):
    out = {}
    for b in BATCHES:
        X = rng.standard_normal((b, net.sizes[0])).astype(net.dtype)
        if loss == "cross_entropy":
            y = rng.integers(0, net.sizes[-1], b)
        else:
            y = rng.random((b, net.sizes[-1])).astype(net.dtype)
        out[b] = (X, y)
    return out


class _Traced:
    """tracemalloc around a block.  Tracing starts before the warm-up (so that buffers
    allocated during the warm-up and freed later are counted both ways); :meth:`mark` takes
    the baseline after a gc, :meth:`stop` the growth and peak since then."""

    def __enter__(self):
        gc.collect()
        tracemalloc.start()
        self.mark()
        return self

    def mark(self):
        gc.collect()
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0]

    def stop(self):
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        self.growth, self.peak = current - self.base, peak - self.base

    def __exit__(self, *exc):
        tracemalloc.stop()


NETWORKS = {
    "plain-float32-sgd": (lambda: vg.MLP([8, 16, 16, 4], activation="tanh", dtype="float32",
                                         seed=0), lambda n: vg.optim.SGD(n, lr=0.01),
                          "cross_entropy"),
    "plain-float64-momentum-mse": (lambda: vg.MLP([8, 12, 4], activation="gelu",
                                                  dtype="float64", seed=1, measure=False),
                                   lambda n: vg.optim.SGD(n, lr=0.01, momentum=0.9,
                                                          clip_norm=1.0), "mse"),
    "batchnorm-residual-dropout-adam": (
        lambda: vg.MLP([8, 16, 16, 16, 4], activation="relu", dtype="float32", seed=2,
                       norm="batch", residual="auto", dropout=0.1),
        lambda n: vg.optim.Adam(n, lr=1e-3), "binary_cross_entropy"),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_5000_steps_with_a_new_batch_size_every_step_hold_memory_flat(name):
    make_net, make_opt, loss = NETWORKS[name]
    net = make_net()
    opt = make_opt(net)
    data = _data(net, np.random.default_rng(0), loss)
    steps = 5000
    with _Traced() as t:
        for b in BATCHES * 2:                            # warm-up: two full cycles
            net.train_step(*data[b], loss, opt)
        t.mark()
        for k in range(steps):
            X, y = data[BATCHES[k % len(BATCHES)]]
            net.train_step(X, y, loss, opt)
            if k % 500 == 0 and net.measure:
                net.gradient_flow()                      # the measurements' read-out too
        t.stop()
    assert opt.step_count == steps + 2 * len(BATCHES)
    assert np.all(np.isfinite(net.params))
    assert len(net._workspaces) <= 4
    # the same cycle position as at the start: the same four workspaces are held
    # (NumPy's small caches account for a few KiB; one leaked object per step would be
    # >= 5000 x 50 bytes)
    assert t.growth < 64 * KiB, f"{t.growth} bytes more held after {steps} steps"
    # each step may allocate one workspace (the evicted one is freed): the peak stays within a
    # few workspaces of the largest batch, whatever the number of steps
    itemsize = net.dtype.itemsize
    ws = itemsize * max(BATCHES) * (4 * sum(net.sizes[1:]) + 2 * net.sizes[0]) \
        + 8 * max(BATCHES) * 2 * len(net.sizes)
    assert t.peak < 3 * ws + 64 * KiB, f"peak {t.peak} bytes above the start (workspace {ws})"


def test_cached_batch_sizes_allocate_nothing_over_5000_steps():
    """Cycling through four sizes (the cache holds four): after the warm-up nothing is
    allocated at all, step after step."""
    net = vg.MLP([8, 16, 16, 4], activation="tanh", dtype="float32", seed=3)
    opt = vg.optim.SGD(net, lr=0.01)
    rng = np.random.default_rng(3)
    sizes = (5, 17, 32, 64)
    data = {b: (rng.standard_normal((b, 8)).astype(np.float32), rng.integers(0, 4, b))
            for b in sizes}
    with _Traced() as t:
        for b in sizes * 2:
            net.train_step(*data[b], "cross_entropy", opt)
        t.mark()
        for k in range(5000):
            net.train_step(*data[sizes[k % 4]], "cross_entropy", opt)
        t.stop()
    assert t.growth < 1 * KiB, f"{t.growth} bytes held after 5000 steps"
    assert t.peak < 4 * KiB, f"peak {t.peak} bytes: a warmed-up step allocated"


def test_resident_memory_stays_flat_over_5000_steps_with_changing_batch_sizes():
    """RSS (sees the C heap, OpenMP and BLAS buffers, which tracemalloc does not): a leaked
    workspace per step would be ~100 KiB x 5000 = 500 MiB here."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc/self/statm (Linux)")
    net = vg.MLP([32, 64, 64, 10], activation="relu", dtype="float32", seed=4,
                 norm="layer", dropout=0.1)
    opt = vg.optim.AdamW(net, lr=1e-3)
    data = _data(net, np.random.default_rng(4))
    for k in range(300):                                 # warm-up: the allocator settles
        net.train_step(*data[BATCHES[k % len(BATCHES)]], "cross_entropy", opt)
    gc.collect()
    rss0 = _rss_bytes()
    for k in range(5000):
        net.train_step(*data[BATCHES[k % len(BATCHES)]], "cross_entropy", opt)
    gc.collect()
    growth = _rss_bytes() - rss0
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"


def test_compiled_calls_leak_no_reference_to_their_arguments():
    net = vg.MLP([6, 10, 3], activation="elu", dtype="float64", seed=5, norm="batch",
                 dropout=0.2)
    opt = vg.optim.Adam(net, lr=1e-3, clip_norm=1.0)
    rng = np.random.default_rng(5)
    X, X_other = rng.standard_normal((9, 6)), rng.standard_normal((9, 6))
    dout, dout_other = rng.standard_normal((9, 3)), rng.standard_normal((9, 3))
    labels = rng.integers(0, 3, 9)
    targets = rng.random((9, 3))
    grad = np.empty((9, 3))
    watched = {"X": X, "dout": dout, "labels": labels, "targets": targets, "grad": grad,
               "params": net.params, "grads": net.grads}

    def calls():
        out = net.forward(X)
        vg.losses.cross_entropy(out, labels, grad_out=grad)
        vg.losses.mse(out, targets, grad_out=grad)
        vg.losses.binary_cross_entropy(out, targets, grad_out=grad)
        net.backward(dout)
        net.gradient_flow()
        opt.step()
        net.train_step(X, labels, "cross_entropy", opt)
        net.forward(X_other)                 # the network keeps the last X and dout only
        net.backward(dout_other)

    calls()
    gc.collect()
    before = {k: sys.getrefcount(v) for k, v in watched.items()}
    for _ in range(2000):
        calls()
    gc.collect()
    after = {k: sys.getrefcount(v) for k, v in watched.items()}
    assert after == before, f"reference counts changed: {before} -> {after}"


def test_fit_with_validation_recorder_and_checkpoints_does_not_grow_over_epochs(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((600, 16)).astype(np.float32)
    y = rng.integers(0, 4, 600)
    net = vg.MLP([16, 32, 32, 4], activation="tanh", dtype="float32", seed=6, norm="batch")
    opt = vg.optim.Adam(net, lr=1e-3)
    rec = vg.Recorder(schedule="every", max_records=64)
    held = []

    class Probe:
        def on_epoch_end(self, epoch, logs, trainer):
            gc.collect()
            held.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        # 480 training samples in batches of 64 (7 full + one of 32), 120 validation samples
        # in batches of 50 (two of 50, one of 20): five batch sizes, all cached
        hist = vg.fit(net, X, y, optimizer=opt, epochs=14, batch_size=64,
                      validation_split=0.2, eval_batch_size=50, recorder=rec,
                      checkpoint=tmp_path / "last.npz", checkpoint_best=tmp_path / "best.npz",
                      callbacks=[Probe()], verbose=0)
    finally:
        tracemalloc.stop()
    assert len(hist) == 14 and len(held) == 14
    assert np.all(np.isfinite(hist["val_loss"]))
    # after the recorder has filled up (64 records = 8 epochs of 8 steps) only the history
    # grows: a few floats per epoch
    growth = held[-1] - held[9]
    assert growth < 16 * KiB, f"{growth} bytes more held after 4 more epochs: {held}"


def test_repeated_evaluate_and_fit_calls_do_not_grow():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 8))
    y = rng.integers(0, 3, 300)
    net = vg.MLP([8, 16, 3], dtype="float64", seed=7)
    opt = vg.optim.SGD(net, lr=0.01)
    with _Traced() as t:
        for _ in range(3):
            vg.evaluate(net, X, y, batch_size=64)
            vg.fit(net, X, y, optimizer=opt, epochs=1, batch_size=32, verbose=0,
                   validation_data=(X[:50], y[:50]))
        t.mark()
        for _ in range(150):
            vg.evaluate(net, X, y, batch_size=64)
            vg.fit(net, X, y, optimizer=opt, epochs=1, batch_size=32, verbose=0,
                   validation_data=(X[:50], y[:50]))
        t.stop()
    assert t.growth < 16 * KiB, f"{t.growth} bytes held after 150 evaluate + fit calls"


def test_networks_built_and_dropped_are_freed_without_the_cycle_collector():
    """No reference cycle keeps a dropped network (its engine, buffers, optimiser, gradient
    flow) alive: with the cycle collector off, everything goes as soon as the last reference
    does, so the collector finds nothing afterwards, and memory is back where it started.
    (The memory is read after a full collection, which also empties CPython's free lists.)"""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((16, 12)).astype(np.float32)
    y = rng.integers(0, 5, 16)

    def one():
        net = vg.MLP([12, 24, 24, 5], dtype="float32", seed=8, norm="batch", dropout=0.1)
        opt = vg.optim.Adam(net)
        net.train_step(X, y, "cross_entropy", opt)
        net.gradient_flow()
        vg.evaluate(net, X, y)

    was_enabled = gc.isenabled()
    try:
        with _Traced() as t:
            one()
            t.mark()
            gc.disable()
            for _ in range(300):
                one()
            unreachable = gc.collect()
            t.stop()
    finally:
        if was_enabled:
            gc.enable()
    assert unreachable == 0, f"{unreachable} objects were only freed by the cycle collector"
    # NumPy's bounded small-allocation caches hold ~30 KiB; one leaked network of this size
    # per iteration would be ~6 MiB
    assert t.growth < 256 * KiB, f"{t.growth} bytes held after 300 networks were dropped"

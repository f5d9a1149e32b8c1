"""Python threads and the compiled engine.

(a) Separate networks trained at the same time in separate Python threads give bit-identical
    results to the same trainings run one after the other (same thread setting), including the
    general path (batch norm, residual blocks, dropout), Adam, ``vg.fit``, and layers wide
    enough for the OpenMP-parallel elementwise kernels (two OpenMP teams at once).
(b) The GIL is released during compute: while thread A is inside one long compiled call
    (forward, backward, a training step of a network of 1024-wide layers, batch 512, about
    0.2 s a call), thread B keeps running Python code.
(c) One network used from two threads at once is refused: a second call while another
    thread is inside a pass raises RuntimeError mentioning "another thread", and the first
    thread's pass is not disturbed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import vgcore as vg
from _vgtest import num_threads

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


# ============================================================ (a) separate networks in threads

def _general_run(seed, dtype, out, key, barrier=None):
    """Batch norm, residual blocks, dropout, Adam with clipping, several batch sizes, eval
    passes and measurements: the general compiled path."""
    rng = np.random.default_rng(seed)
    net = vg.MLP([24, 48, 48, 48, 6], activation="silu", dtype=dtype, seed=seed,
                 norm="batch", residual=0.5, dropout=0.2, dropout_seed=seed)
    opt = vg.optim.Adam(net, lr=1e-2, clip_norm=1.0)
    data = [(rng.standard_normal((b, 24)).astype(dtype), rng.integers(0, 6, b))
            for b in (16, 40, 7)]
    if barrier is not None:
        barrier.wait()
    losses, flows = [], []
    for step in range(30):
        X, y = data[step % 3]
        losses.append(net.train_step(X, y, "cross_entropy", opt))
        flows.append(net.gradient_flow().grad_norm.copy())
    net.eval_mode()
    out[key] = (np.array(losses), np.array(flows), net.params.copy(), net._run_mean.copy(),
                net._run_var.copy(), net.predict(data[0][0]))


def _wide_run(seed, dtype, out, key, barrier=None):
    """A 1024-wide tanh layer at batch 512: the elementwise passes take the OpenMP-parallel
    path (>= 2**19 elements) when two threads are allowed."""
    rng = np.random.default_rng(seed)
    net = vg.MLP([32, 1024, 8], activation="tanh", dtype=dtype, seed=seed)
    opt = vg.optim.SGD(net, lr=0.05, momentum=0.9)
    X = rng.standard_normal((512, 32)).astype(dtype)
    y = rng.integers(0, 8, 512)
    if barrier is not None:
        barrier.wait()
    losses = [net.train_step(X, y, "cross_entropy", opt) for _ in range(6)]
    dX = net.backward(np.ones((512, 8), dtype)).copy()
    out[key] = (np.array(losses), net.params.copy(), dX)


def _fit_run(seed, dtype, out, key, barrier=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 10)).astype(dtype)
    y = rng.integers(0, 3, 300)
    net = vg.MLP([10, 32, 32, 3], activation="relu", dtype=dtype, seed=seed, norm="layer")
    opt = vg.optim.AdamW(net, lr=1e-2)
    if barrier is not None:
        barrier.wait()
    hist = vg.fit(net, X, y, optimizer=opt, epochs=3, batch_size=32, validation_split=0.2,
                  seed=seed, verbose=0)
    out[key] = (np.array(hist["loss"]), np.array(hist["val_loss"]), net.params.copy())


def _sequential_vs_concurrent(run, dtype, threads, n_workers=2):
    with num_threads(threads):
        sequential = {}
        for k in range(n_workers):
            run(10 + k, dtype, sequential, k)
        concurrent, errors = {}, []
        barrier = threading.Barrier(n_workers)

        def work(k):
            try:
                run(10 + k, dtype, concurrent, k, barrier)
            except BaseException as e:          # reported below
                errors.append(e)
                barrier.abort()

        workers = [threading.Thread(target=work, args=(k,)) for k in range(n_workers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers), "a worker thread hung"
    assert not errors, f"a worker thread failed: {errors[0]!r}"
    for k in range(n_workers):
        for i, (a, b) in enumerate(zip(sequential[k], concurrent[k])):
            np.testing.assert_array_equal(a, b, err_msg=f"worker {k}, result {i}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_general_networks_in_threads_match_sequential(dtype, threads):
    _sequential_vs_concurrent(_general_run, dtype, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_two_wide_networks_with_parallel_kernels_in_threads_match_sequential(threads):
    _sequential_vs_concurrent(_wide_run, np.float32, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_two_fit_runs_in_threads_match_sequential(threads):
    _sequential_vs_concurrent(_fit_run, np.float64, threads)


# ============================================================= (b) the GIL is released

WIDTH, DEPTH, BATCH = 1024, 12, 512


@pytest.fixture(scope="module")
def big():
    """12 layers of 1024 x 1024 (float32), batch 512: one forward is ~12 GFLOP, about 0.2 s
    on one core; backward about twice that."""
    net = vg.MLP([WIDTH] * (DEPTH + 1), activation="tanh", dtype="float32", seed=0,
                 measure=False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = rng.integers(0, WIDTH, BATCH)
    dout = np.full((BATCH, WIDTH), 1e-3, np.float32)
    return net, X, y, dout


class _Counter:
    """Thread B: increments a Python counter as fast as it can until stopped."""

    def __init__(self):
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        stop = self.stop
        while not stop.is_set():
            self.count += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def _progress_during(call, counter):
    """B's progress while A makes one call (A reads the counter holding the GIL, just before
    and just after), and the call's duration."""
    c0, t0 = counter.count, time.perf_counter()
    call()
    t1, c1 = time.perf_counter(), counter.count
    return c1 - c0, t1 - t0


@pytest.mark.parametrize("what", ["forward", "backward", "train_step"])
def test_gil_is_released_during_one_long_compiled_call(big, what):
    net, X, y, dout = big
    calls = {"forward": lambda: net.forward(X),
             "backward": lambda: net.backward(dout),
             "train_step": lambda: net.train_step(X, y, "cross_entropy")}
    with num_threads(1):                      # A on one core, B on the other
        net.forward(X)                        # buffers allocated, backward possible
        with _Counter() as counter:
            time.sleep(0.05)                  # B's rate on its own (A sleeps: GIL free)
            c0, t0 = counter.count, time.perf_counter()
            time.sleep(0.1)
            rate = (counter.count - c0) / (time.perf_counter() - t0)
            progress, duration = _progress_during(calls[what], counter)
    assert duration > 0.05, f"the {what} call took only {duration:.3f} s: not a long call"
    assert progress > 0, f"thread B made no progress during a {duration:.2f} s {what} call"
    # holding the GIL, A could give B at most a few 5 ms switch intervals (at Python-level
    # boundaries); releasing it, B runs for most of the call
    assert progress >= 0.3 * rate * duration, (
        f"thread B ran for only {progress / rate:.3f} s of a {duration:.3f} s {what} call "
        f"({progress} increments at {rate:.0f}/s)")


# ====================================================== (c) one network from two threads

def _second_call_while_first_is_inside(net, first, second, wait=0.05):
    """Thread A runs ``first()``; once A has been inside for ``wait`` seconds, thread B calls
    ``second()``.  Returns (A's result, B's exception or None, B's call and return times, the
    time A finished)."""
    started, res = threading.Event(), {}

    def a():
        started.set()
        try:
            res["a"] = first()
        except BaseException as e:
            res["a_error"] = e
        res["a_end"] = time.perf_counter()

    ta = threading.Thread(target=a)
    ta.start()
    started.wait(10)
    time.sleep(wait)
    t_call = time.perf_counter()
    try:
        second()
        err = None
    except BaseException as e:
        err = e
    t_back = time.perf_counter()
    ta.join(timeout=60)
    assert not ta.is_alive(), "thread A hung"
    assert "a_error" not in res, f"thread A's own call failed: {res['a_error']!r}"
    return res["a"], err, t_call, t_back, res["a_end"]


@pytest.mark.parametrize("second", ["forward", "backward", "train_step", "predict"])
def test_second_thread_is_refused_while_another_thread_runs_a_pass(big, second):
    net, X, y, dout = big
    X2 = np.ascontiguousarray(X[::-1])          # same batch size: no buffer rebinding
    with num_threads(1):
        net.forward(X)
        want = net.predict(X)                    # A's output when undisturbed
        calls = {"forward": lambda: net.forward(X2), "backward": lambda: net.backward(dout),
                 "train_step": lambda: net.train_step(X2, y, "cross_entropy"),
                 "predict": lambda: net.predict(X2)}
        out, err, t_call, t_back, a_end = _second_call_while_first_is_inside(
            net, lambda: net.forward(X).copy(), calls[second])
    assert t_call < a_end, "thread A's forward ended before thread B's call: not a concurrent use"
    if err is None:
        pytest.fail(f"net.{second} from thread B while thread A was inside net.forward was not "
                    f"refused: it returned normally after {t_back - t_call:.3f} s (thread A's "
                    f"pass ended {a_end - t_call:.3f} s after B's call); expected RuntimeError "
                    f"mentioning 'another thread'")
    assert isinstance(err, RuntimeError) and "another thread" in str(err), (
        f"net.{second} from thread B while thread A was inside net.forward: expected "
        f"RuntimeError mentioning 'another thread', got {err!r}")
    np.testing.assert_array_equal(out, want, err_msg="thread A's forward was disturbed")
    # the network is usable again once A is done (at the thread count `want` was computed
    # with: BLAS may split its products differently at another count)
    with num_threads(1):
        np.testing.assert_array_equal(net.predict(X), want)


_DIFFERENT_BATCH = r"""
import threading, time
import numpy as np
import vgcore as vg
vg.set_num_threads(1)
net = vg.MLP([1024] * 13, activation="tanh", dtype="float32", seed=0, measure=False)
X = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
want = net.predict(X)
res = {}
def a():
    res["out"] = net.forward(X).copy()
t = threading.Thread(target=a)
t.start()
time.sleep(0.05)
try:
    net.forward(np.ones((3, 1024), np.float32))   # another batch size: would rebind buffers
    print("accepted")
except RuntimeError as e:
    print("RuntimeError:", e)
t.join()
print("A intact" if np.array_equal(res["out"], want) else "A corrupted")
"""


def test_second_thread_with_another_batch_size_is_refused_in_a_subprocess():
    """A forward of another batch size from thread B rebinds the engine's buffers under
    thread A's running pass (which may then read and write out of bounds), so this case runs
    in a subprocess: a crash fails the test instead of killing the test run."""
    res = subprocess.run([sys.executable, "-c", _DIFFERENT_BATCH], capture_output=True,
                         text=True, timeout=300, cwd="/",
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = res.stdout
    assert res.returncode == 0, (f"the subprocess died with code {res.returncode}: "
                                 f"{out[-1000:]}{res.stderr[-2000:]}")
    assert "RuntimeError:" in out and "another thread" in out and "A intact" in out, out

"""gradient_flow() copies nothing: a flow holds read-only arrays over the buffers its step
wrote, and the network writes later steps into other buffers while the flow, or an array taken
from it, is alive (vgcore/core/_measure_sets.py).  These tests hold flows across every kind of
later write and check that they never change, that a loop reading a flow at every step neither
copies nor allocates, and that sets only dropped flows held are freed."""
from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure.flow import FIELDS
from vgcore.measure.recorder_io import SCALARS

EVERYTHING = FIELDS + ("per_sample_grad_norm", "dead_unit_mask") + SCALARS
BIG = 4096          # per-sample arrays: 2 x 4 layers x 4096 float64 = 256 KiB a set


def _net(**options):
    return vg.MLP([7, 11, 11, 11, 4], activation="tanh", init="glorot_normal", seed=3,
                  sigma_b=0.2, **options)


def _data(seed, batch):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 7)).astype(np.float32), rng.integers(0, 4, batch)


def _read_all(flow):
    out = {}
    for name in EVERYTHING:
        v = getattr(flow, name)
        out[name] = v if v is None else np.array(v, dtype=float)
    out["raw.stats"] = np.array(flow.raw.stats)
    out["raw.ps_mean_sq"] = np.array(flow.raw.ps_mean_sq)
    out["raw.stepped"] = flow.raw.stepped
    return out


def _assert_same(got, want):
    for name in want:
        if want[name] is None or isinstance(want[name], bool):
            assert got[name] == want[name], name
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


_GRAD: dict = {}


def _loss_grad(out, y):
    """The cross-entropy gradient, in a buffer kept per shape (the loss allocates nothing)."""
    buf = _GRAD.setdefault(out.shape, np.empty(out.shape, out.dtype))
    return vg.losses.cross_entropy(out, y, grad_out=buf)[1]


def _step_separate(net, X, y, opt, seen):
    """forward, loss, backward, read, then the step: the update writes the set the flow
    holds (its norms) unless the network moves to another."""
    net.backward(_loss_grad(net.forward(X), y))
    flow = seen(net.gradient_flow())
    net.sgd_step(0.05)
    return flow


def _optimiser_after_read(net, X, y, opt, seen):
    """as _step_separate, with an optimiser's compiled update (apply_update)."""
    net.backward(_loss_grad(net.forward(X), y))
    flow = seen(net.gradient_flow())
    opt.step()
    return flow


def _backward_twice(net, X, y, opt, seen):
    """read after a backward, then a second backward of the same forward pass."""
    d = _loss_grad(net.forward(X), y)
    net.backward(d)
    flow = seen(net.gradient_flow())
    net.backward(3.0 * d)
    return flow


def _read_twice(net, X, y, opt, seen):
    """read after a backward, change the weights, read again (the weight norms are retaken
    into the set the first flow holds unless the network moves)."""
    net.backward(_loss_grad(net.forward(X), y))
    flow = seen(net.gradient_flow())
    net.params *= 1.5
    net.gradient_flow()
    return flow


def _train_step(net, X, y, opt, seen):
    net.train_step(X, y, "cross_entropy", opt)
    return seen(net.gradient_flow())


def _forward_after_read(net, X, y, opt, seen):
    """the next step's separate forward pass writes the forward's rows."""
    net.backward(_loss_grad(net.forward(X), y))
    flow = seen(net.gradient_flow())
    net.forward(X[::-1].copy())
    return flow


@pytest.fixture
def chunks():
    """Batch chunks for these small networks: train_step's one compiled call."""
    vg._engine.set_batch_chunks(True, min_mnk=0)
    yield
    vg._engine.set_batch_chunks(True)


PATHS = {
    "train_step, separate calls": (dict(), _train_step),
    "train_step, normalised residual net": (dict(norm="batch", residual=0.5, dropout=0.1),
                                            _train_step),
    "train_step, one call in batch chunks": (dict(), _train_step),
    "a forward pass": (dict(), _forward_after_read),
    "read before sgd_step": (dict(), _step_separate),
    "read before an optimiser's step": (dict(), _optimiser_after_read),
    "a second backward": (dict(), _backward_twice),
    "a second read": (dict(), _read_twice),
}


def _chunked(path, request):
    if "batch chunks" in path:
        request.getfixturevalue("chunks")


@pytest.mark.parametrize("path", list(PATHS))
def test_kept_flows_never_change(path, request):
    """Flows kept over later passes (at two batch sizes) read what they read when taken,
    field by field and bit for bit, whatever wrote the network's buffers since."""
    _chunked(path, request)
    options, take = PATHS[path]
    net = _net(**options)
    opt = vg.optim.Adam(net, lr=0.01)
    kept, twins = [], []

    def seen(flow):
        twins.append(copy.deepcopy(flow))      # its own copies of the arrays, as taken
        return flow
    for i in range(6):
        kept.append(take(net, *_data(i, 16 if i % 3 else 24), opt, seen))
    if "batch chunks" in path:
        assert net._engine.can_step()
    for i in range(3):
        take(net, *_data(9 + i, 16), opt, lambda f: f)
    for flow, twin in zip(kept, twins):
        _assert_same(_read_all(flow), _read_all(twin))
    # the flows differ from each other: a network that gave every flow the same buffers
    # would fail above, not pass by accident
    assert not np.array_equal(kept[0].raw.stats, kept[1].raw.stats)


def test_an_array_taken_from_a_dropped_flow_never_changes():
    """Whatever array over a flow's memory is kept (a view, one made through the buffer
    protocol, the base of a flow's array), the set it is in is held."""
    net = _net()
    X, y = _data(0, 32)
    net.train_step(X, y)
    rows = net.gradient_flow().raw.stats[1:]        # a view; the flow itself is gone
    msq = net.gradient_flow().raw.ps_mean_sq
    # over the memory by the buffer protocol, and by the flat array under the shaped one
    by_buffer = np.frombuffer(memoryview(net.gradient_flow().raw.stats), np.float64)
    flat = net.gradient_flow().raw.stats.base
    assert not isinstance(flat.base, (np.ndarray, memoryview))     # no buffer under it
    # derived fields (the set's own arrays, filled by the flow's first field read): one
    # whole, a view of another
    want = [a.copy() for a in (rows, msq, by_buffer, flat)]
    grad_norm = net.gradient_flow().grad_norm
    want.append(grad_norm.copy())
    net.train_step(*_data(5, 32))
    gain = net.gradient_flow().gain[:-1]
    want.append(gain.copy())
    kept = (rows, msq, by_buffer, flat, grad_norm, gain)
    assert not rows.flags.writeable and not msq.flags.writeable and not gain.flags.writeable
    for i in range(4):
        net.train_step(*_data(i + 1, 32))
        flow = net.gradient_flow()
        assert not np.array_equal(flow.gain[:-1], want[-1])      # a step of its own
    for a, w in zip(kept, want):
        np.testing.assert_array_equal(a, w)


def test_a_copied_flow_derives_its_own_fields():
    """A flow copied before its fields are read (copy.deepcopy, pickle) derives them into
    arrays of its own, the numbers the flow itself reads."""
    import pickle
    net = _net()
    net.train_step(*_data(0, 32))
    flow = net.gradient_flow()
    copies = [copy.deepcopy(flow), pickle.loads(pickle.dumps(flow))]
    for name in FIELDS + ("grad_ratio", "delta_ratio", "nonfinite_forward_layer"):
        for c in copies:
            np.testing.assert_array_equal(getattr(c, name), getattr(flow, name), err_msg=name)
    assert copies[0].grad_norm.base is not flow.grad_norm.base


@pytest.mark.parametrize("path", ["train_step, separate calls", "read before sgd_step",
                                  "train_step, normalised residual net",
                                  "train_step, one call in batch chunks"])
def test_reading_a_flow_at_every_step_copies_and_allocates_nothing(path, request):
    """The loop `step; flow = net.gradient_flow(); read` holds one set while the next step
    writes the other: after the first steps, nothing of a set's size (256 KiB here) is
    allocated, neither by the read nor by the step."""
    _chunked(path, request)
    options, take = PATHS[path]
    net = _net(**options)
    opt = vg.optim.SGD(net, lr=0.01)
    X, y = _data(0, BIG)
    flow = None
    for _ in range(3):
        flow = take(net, X, y, opt, lambda f: f)
        assert np.isfinite(flow.grad_ratio)
    tracemalloc.start()
    try:
        for _ in range(4):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            flow = take(net, X, y, opt, lambda f: f)
            assert np.isfinite(flow.grad_ratio)
            grown = tracemalloc.get_traced_memory()[1] - before
            assert grown < 128 * 1024, grown     # (a loss's temporaries: 64 KiB)
    finally:
        tracemalloc.stop()


def test_sets_only_dropped_flows_held_are_freed():
    net = _net()
    X, y = _data(0, BIG)
    net.train_step(X, y)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kept = []
        for _ in range(6):
            net.train_step(X, y)
            kept.append(net.gradient_flow())
        held = tracemalloc.get_traced_memory()[0] - base
        assert held > 5 * 256 * 1024        # each kept flow keeps its step's set (one was there)
        del kept
        for _ in range(3):
            net.train_step(X, y)
            flow = net.gradient_flow()
        # what is left: the sets the network tracks (the bound one and two spares)
        assert tracemalloc.get_traced_memory()[0] - base < 3.5 * 256 * 1024
        del flow
    finally:
        tracemalloc.stop()
    # and what memory_usage counts: the sets the network tracks (the bound one and a spare)
    per_set = 8 * (2 * net.n_layers * BIG + net.n_layers * (vg.flow.N_STATS + 1)) \
        + 4 * sum(net.sizes[1:])
    assert net.memory_usage(BIG)["measurement"] >= 2 * per_set

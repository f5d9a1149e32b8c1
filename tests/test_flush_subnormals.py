"""Flushing subnormals (``MLP(flush_subnormals=True)``, the default) and ``underflow_fraction``.

What is pinned: the caller's MXCSR is the same after every public call (on and off, plain and
general networks, float32 and float64, error paths); FTZ and DAZ are set inside the compiled
work, OpenMP workers included (seen in MXCSR and in a product that only FTZ turns into 0);
with flushing the error of a vanishing float32 network is exactly 0 in the layers where
float64 shows it below 1e-38, ``underflow_fraction`` marks where it left the range (and is 0
in a healthy network); flushing off keeps IEEE subnormals and is bit-identical across thread
counts; on healthy networks the two settings give bit-identical results.
"""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore import _engine
from vgcore.core import reference as R
from vgcore.train import checkpoint
from _vgtest import num_threads

FTZ_DAZ = 0x8040            # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
FLAGS = 0x3F                # the sticky exception flags: NumPy clears them, they are not state
needs_mxcsr = pytest.mark.skipif(not _engine.HAVE_MXCSR, reason="MXCSR exists on x86 only")

FLT_MIN = 1.1754944e-38

# OpenMP threads keep the MXCSR of the thread that created them (vgcore creates them from the
# caller's state, see test_threads_created_during_flushing_work_do_not_keep_ftz_daz): make them
# now, from a clean state, before the tests below give the calling thread an unusual one.
_engine._mxcsr_in_parallel(False, 4)


def _control():
    return _engine._get_mxcsr() & ~FLAGS


@pytest.fixture
def caller_mxcsr():
    """Run the test with the caller's MXCSR set to FTZ only (no DAZ): a state vgcore must hand
    back as it found it, neither cleared nor with DAZ added; restored afterwards."""
    saved = _engine._get_mxcsr()
    _engine._set_mxcsr((saved & ~FTZ_DAZ) | 0x8000)
    try:
        yield _control()
    finally:
        _engine._set_mxcsr(saved)


def _vanishing(dtype="float32", flush=True, **kw):
    """60 sigmoid layers of width 96 under the standard init (issue #11's vanishing config)."""
    return vg.MLP([96] * 61 + [10], activation="sigmoid", dtype=dtype, seed=0,
                  flush_subnormals=flush, **kw)


def _batch(dtype="float32", n=64, width=96, classes=10, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, width)).astype(dtype), rng.integers(0, classes, n)


# ------------------------------------------------------------------------------ the option

def test_flush_subnormals_is_on_by_default_and_a_checked_read_write_property():
    net = vg.MLP([3, 4, 2])
    assert net.flush_subnormals is True
    assert "flush_subnormals" not in repr(net)
    net.flush_subnormals = False
    assert net.flush_subnormals is False
    assert "flush_subnormals=False" in repr(net)
    with pytest.raises(TypeError, match="flush_subnormals: expected True or False, got 1"):
        net.flush_subnormals = 1
    assert net.flush_subnormals is False                  # a rejected value changes nothing
    with pytest.raises(TypeError, match="flush_subnormals"):
        vg.MLP([3, 4, 2], flush_subnormals="yes")
    assert vg.MLP([3, 4, 2], flush_subnormals=False).flush_subnormals is False


@pytest.mark.parametrize("flush", [True, False])
def test_checkpoints_and_the_reference_carry_the_option(tmp_path, flush):
    net = vg.MLP([4, 6, 3], activation="tanh", seed=0, flush_subnormals=flush)
    checkpoint.save(tmp_path / "c.npz", net)
    loaded = checkpoint.load(tmp_path / "c.npz")
    assert loaded.net.flush_subnormals is flush
    assert loaded.metadata["network"]["flush_subnormals"] is flush
    other = vg.MLP([4, 6, 3], activation="tanh", seed=1, flush_subnormals=not flush)
    checkpoint.load_into(tmp_path / "c.npz", other)          # like measure: the net's own
    assert other.flush_subnormals is (not flush)
    assert R.ReferenceMLP.from_network(net).flush_subnormals is flush
    assert R.ReferenceMLP.from_network(net, flush_subnormals=not flush).flush_subnormals \
        is (not flush)


def test_a_checkpoint_without_the_option_loads_with_the_default(tmp_path):
    import json
    net = vg.MLP([4, 6, 3], seed=0, flush_subnormals=False)
    checkpoint.save(tmp_path / "c.npz", net)
    with np.load(tmp_path / "c.npz") as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["metadata"]))
    del meta["network"]["flush_subnormals"]                 # a file from before the option
    data["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **data)
    assert checkpoint.load(tmp_path / "old.npz").net.flush_subnormals is True


# ------------------------------------------------------------------------------ MXCSR

def _public_calls(net, X, y):
    """Every public entry that runs compiled work on a network."""
    yield "forward", lambda: net.forward(X)
    yield "backward", lambda: net.backward(np.ones((X.shape[0], net.sizes[-1]), net.dtype))
    yield "gradient_flow", lambda: net.gradient_flow()
    yield "sgd_step (measured)", lambda: net.sgd_step(0.01)
    yield "sgd_step", lambda: net.sgd_step(0.01)
    sgd = vg.optim.SGD(net, lr=0.01, momentum=0.9)
    yield "train_step + SGD", lambda: net.train_step(X, y, "cross_entropy", sgd)
    adam = vg.optim.Adam(net, lr=1e-3)
    yield "train_step + Adam", lambda: net.train_step(X, y, "cross_entropy", adam)
    yield "predict", lambda: net.predict(X)
    yield "evaluate", lambda: vg.evaluate(net, X, y, batch_size=16)


@needs_mxcsr
@pytest.mark.parametrize("flush", [True, False])
@pytest.mark.parametrize("kind", ["plain", "general"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_callers_mxcsr_is_the_same_after_every_public_call(caller_mxcsr, flush, kind,
                                                              dtype):
    extras = {} if kind == "plain" else dict(norm="batch", dropout=0.1, residual=0.5)
    net = vg.MLP([12, 16, 16, 4], activation="tanh", dtype=dtype, seed=0,
                 flush_subnormals=flush, **extras)
    X, y = _batch(dtype, n=32, width=12, classes=4)
    for name, call in _public_calls(net, X, y):
        call()
        assert _control() == caller_mxcsr, f"{name} changed the caller's MXCSR"


@needs_mxcsr
def test_the_callers_mxcsr_is_restored_when_a_step_fails(caller_mxcsr):
    net = vg.MLP([4, 8, 2], activation="relu", seed=0)
    X, y = _batch(n=8, width=4, classes=2)
    net.weights[0][...] = 3e38                              # the forward pass overflows
    with pytest.raises(vg.NonFiniteError):
        net.train_step(X, y, "cross_entropy", vg.optim.SGD(net, lr=0.1))
    assert _control() == caller_mxcsr
    with pytest.raises(ValueError):
        net.forward(X[:, :3])                               # refused before compiled work
    assert _control() == caller_mxcsr


@needs_mxcsr
def test_the_sgd_helper_flushes_only_when_asked_and_restores_mxcsr(caller_mxcsr):
    tiny = np.float32(1e-39)                                 # subnormal
    p = np.full(8, 2 * tiny, np.float32)
    g = np.ones(8, np.float32)
    _engine.sgd_step(p, g, float(tiny))                     # 2t - t = t: IEEE keeps it
    assert np.all(p == tiny)
    _engine.sgd_step(p, g, 0.0, True)                        # DAZ: t reads as 0, FTZ: 0 - 0
    assert np.all(p == 0)
    assert _control() == caller_mxcsr


@needs_mxcsr
@pytest.mark.parametrize("threads", [1, 2])
def test_ftz_and_daz_are_set_in_every_openmp_thread_during_the_work_and_cleared_after(
        caller_mxcsr, threads):
    for inside, after in _engine._mxcsr_in_parallel(True, threads):
        assert inside & FTZ_DAZ == FTZ_DAZ
        assert after & ~FLAGS & FTZ_DAZ == 0x8000 or after & FTZ_DAZ == 0
    # the calling thread (the first of the team) gets its own state back exactly
    assert _control() == caller_mxcsr
    for inside, _ in _engine._mxcsr_in_parallel(False, threads):
        assert inside & FTZ_DAZ != FTZ_DAZ                 # not asked: not touched (no DAZ)


_LEAK = """
import numpy as np, scipy.linalg.blas as sb, vgcore as vg
from vgcore import _engine
vg.set_num_threads(2)
net = vg.MLP([512, 512, 512], activation="tanh", seed=0, measure=False)   # flushing (default)
X = np.random.default_rng(0).standard_normal((2048, 512)).astype(np.float32)
for _ in range(2):                       # the first parallel regions create the OpenMP threads
    net.backward(np.ones_like(net.forward(X)))
net.measure = True
net.train_step(X, np.arange(2048) % 512, "cross_entropy", vg.optim.SGD(net, lr=0.01))
print([inside & 0x8040 for inside, _ in _engine._mxcsr_in_parallel(False, 2)])
a = np.full((512, 512), 1e-20, np.float32)           # every product and sum is subnormal
print(int(np.count_nonzero(a @ a)), int(np.count_nonzero(sb.sgemm(1.0, a, a))))
"""


@needs_mxcsr
def test_threads_created_during_flushing_work_do_not_keep_ftz_daz():
    """OpenMP (and BLAS) threads inherit their creator's MXCSR: created inside a flushing call
    they would keep FTZ/DAZ for good, and OpenMP or BLAS code outside vgcore would then flush.
    In a fresh process, after flushing work on 2 threads, the OpenMP threads' own state has no
    FTZ/DAZ and NumPy's and SciPy's BLAS keep subnormals."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _LEAK], capture_output=True, text=True,
                         timeout=300, cwd="/", check=True).stdout.split("\n")
    assert out[0] == "[0, 0]", out
    assert out[1] == f"{512 * 512} {512 * 512}", out


def _silu_at_minus_88(flush, threads):
    """A float32 silu layer on h = -88 everywhere, with identity weights: silu(-88) =
    -88 * sigmoid(-88) = -88 * 6.05e-39 = -5.3e-37.  The product is normal, its factor
    sigmoid(-88) is subnormal: only FTZ in the thread computing it makes it 0 (the explicit
    flush leaves normal values alone).  1024 x 512 entries: split over the OpenMP threads."""
    n = 512
    net = vg.MLP([n, n, n], activation="silu", dtype="float32", seed=0, measure=False,
                 flush_subnormals=flush)
    for w, b in zip(net.weights, net.biases):
        w[...] = np.eye(n)
        b[...] = 0
    X = np.full((1024, n), -88.0, np.float32)
    with num_threads(threads):
        out = net.forward(X).copy()
        # silu'(-88) = s + x s (1 - s), s = sigmoid(-88): -5.3e-37 as well, 0 under FTZ
        dX = net.backward(np.ones((1024, n), np.float32)).copy()
    return out, dX


@pytest.mark.parametrize("threads", [1, 2])
def test_a_subnormal_factor_becomes_zero_in_every_thread_of_the_compiled_kernels(threads):
    out, dX = _silu_at_minus_88(True, threads)
    if _engine.HAVE_MXCSR:
        assert np.all(out == 0) and np.all(dX == 0)
    off_out, off_dX = _silu_at_minus_88(False, threads)
    s = np.float32(1) / (np.float32(1) + np.exp(np.float32(88)))      # NumPy: IEEE, 6.05e-39
    assert 0 < s < FLT_MIN
    np.testing.assert_allclose(off_out, np.float32(-88) * s, rtol=1e-5)
    np.testing.assert_allclose(off_dX, s + np.float32(-88) * s * (1 - s), rtol=1e-5)
    assert np.all(off_out < -1e-37)


# ------------------------------------------------------------------------------ vanishing

def _engine_pass(net, X, y):
    out = net.forward(X)
    _, dout = vg.losses.cross_entropy(out, y)
    net.backward(dout)
    return net.gradient_flow().underflow_fraction, [g.copy() for g in net.bias_grads], \
        [g.copy() for g in net.weight_grads]


def _reference_pass(net, X, y):
    ref = R.ReferenceMLP.from_network(net)
    out = ref.forward(X)
    _, dout = R.cross_entropy(out, y)
    ref.backward(dout)
    return ref.underflow_fraction(), [g.copy() for g in ref.bias_grads], \
        [g.copy() for g in ref.weight_grads]


@pytest.fixture(scope="module")
def float64_errors():
    """max |delta_l| and rms of delta_l of the vanishing network's first batch, in float64
    (the NumPy reference)."""
    X, y = _batch()
    ref = R.ReferenceMLP.from_network(_vanishing("float64"))
    out = ref.forward(X.astype(np.float64))
    _, dout = R.cross_entropy(out, y)
    ref.backward(dout)
    d = ref._buf.d[:-1]
    return (np.array([np.abs(x).max() for x in d]),
            np.array([np.sqrt(np.mean(x ** 2)) for x in d]))


@pytest.mark.parametrize("system", [_engine_pass, _reference_pass], ids=["engine", "reference"])
def test_with_flushing_the_error_below_float32s_range_is_exactly_zero(system, float64_errors):
    top, rms = float64_errors
    assert top[0] < 1e-45 and top[-1] > 1e-4        # the config vanishes through the range
    below = np.flatnonzero(top < 1e-38)             # every entry below float32's smallest normal
    assert len(below) >= 10
    X, y = _batch()
    uf, db, dW = system(_vanishing(flush=True), X, y)
    assert uf[-1] == 0 and np.all((uf >= 0) & (uf <= 1))
    uf = uf[:-1]                                    # the hidden layers, as top and rms
    for l in below:
        assert not db[l].any() and not dW[l].any(), f"layer {l + 1}: not flushed to 0"
    # underflow_fraction marks the layers where the error left the range: a share of the
    # entries at the layers whose float64 error is around 1e-38, nothing above 1e-30 (the error
    # is normal there) nor deep below (no error arrives any more)
    crossing = (rms > 1e-40) & (rms < 1e-35)
    assert uf[crossing].max() > 0.05
    assert np.all(uf[rms > 1e-30] == 0)
    assert np.all(uf[top < 1e-40] == 0)


@pytest.mark.parametrize("system", [_engine_pass, _reference_pass], ids=["engine", "reference"])
def test_without_flushing_the_same_layers_keep_ieee_subnormals(system, float64_errors):
    top, _ = float64_errors
    X, y = _batch()
    uf, db, _ = system(_vanishing(flush=False), X, y)
    kept = [l for l in np.flatnonzero(top < 1e-38) if np.any(db[l] != 0)]
    assert len(kept) >= 5, "flushing off should keep subnormal errors (IEEE)"
    for l in kept:
        assert np.abs(db[l]).max() < FLT_MIN
    assert np.count_nonzero(uf > 0.9) >= 3          # subnormal all through: lost to underflow


@pytest.mark.parametrize("system", [_engine_pass, _reference_pass], ids=["engine", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_underflow_fraction_is_zero_in_a_healthy_relu_he_network(system, dtype):
    net = vg.MLP([96] * 61 + [10], activation="relu", init="he_normal", dtype=dtype, seed=0)
    X, y = _batch(dtype)
    uf, _, _ = system(net, X, y)
    assert np.all(uf == 0)


@pytest.mark.parametrize("flush", [True, False])
def test_an_error_whose_square_float32_cannot_hold_is_measured_as_float64_measures_it(
        flush, float64_errors):
    """An error between float32's smallest normal and 1.1e-19 is a normal number whose square
    is not: the measurements (taken as sums of squares) must still read it, as float64 does,
    with flushing on (which zeroes those squares) and off (which keeps a few of their bits).
    The per-sample gradient norms too, and the signal's preact_rms in the forward pass."""
    top, rms = float64_errors
    X, y = _batch()
    net = _vanishing(flush=flush)
    net64 = _vanishing("float64")
    flows = []
    for n in (net, net64):
        out = n.forward(X.astype(n.dtype))
        _, dout = vg.losses.cross_entropy(out, y)
        n.backward(dout)
        flows.append(n.gradient_flow())
    f32, f64 = flows
    tiny = np.flatnonzero((rms > 1e-35) & (rms < 1e-20) & (top > 1e-37))
    assert len(tiny) >= 5                           # the layers this is about
    np.testing.assert_allclose(f32.delta_rms[tiny], f64.delta_rms[tiny], rtol=1e-3)
    np.testing.assert_allclose(f32.delta_rms[tiny], rms[tiny], rtol=1e-3)
    np.testing.assert_allclose(f32.per_sample_grad_norm[tiny], f64.per_sample_grad_norm[tiny],
                               rtol=1e-3)
    assert np.all(f32.gain[tiny] > 0)               # nothing reads as "no error passes"
    # a signal that small in the forward pass: the input scaled down, its first layers linear
    lin = vg.MLP([96, 96, 96, 10], activation="identity", dtype="float32", seed=0,
                 flush_subnormals=flush)
    lin64 = vg.MLP([96, 96, 96, 10], activation="identity", dtype="float64", seed=0)
    lin64.params[:] = lin.params
    lin.biases[0][:] = lin64.biases[0][:] = 0
    lin.biases[1][:] = lin64.biases[1][:] = 0
    pre32 = _forward_preact_rms(lin, X * 1e-25, y)
    pre64 = _forward_preact_rms(lin64, X * 1e-25, y)
    assert 1e-36 < pre64[0] < 1e-20
    np.testing.assert_allclose(pre32[:2], pre64[:2], rtol=1e-5)


@pytest.mark.parametrize("flush", [True, False])
@pytest.mark.parametrize("how", ["sgd_step", "train_step SGD", "train_step momentum",
                                 "train_step Adam"])
def test_a_measured_optimiser_step_keeps_the_gradient_norms_float32_cannot_square(how, flush):
    """The norms a measured update takes (||dW||, and ||update|| for the update ratio) are
    sums of squares too: where the gradient is below 1.1e-19 they read what backward() alone
    reads (and float64), not 0."""
    X, y = _batch()

    def flow(net, how):
        if how == "backward":
            out = net.forward(X.astype(net.dtype))
            _, dout = vg.losses.cross_entropy(out, y)
            net.backward(dout)
        elif how == "sgd_step":
            flow(net, "backward")
            net.sgd_step(0.01)
        else:
            opt = {"train_step SGD": lambda: vg.optim.SGD(net, lr=0.01),
                   "train_step momentum": lambda: vg.optim.SGD(net, lr=0.01, momentum=0.9),
                   "train_step Adam": lambda: vg.optim.Adam(net, lr=1e-3)}[how]()
            net.train_step(X.astype(net.dtype), y, "cross_entropy", opt)
        return net.gradient_flow()

    f64 = flow(_vanishing("float64"), "backward")
    tiny = np.flatnonzero((f64.grad_norm > 1e-33) & (f64.grad_norm < 1e-19))
    assert len(tiny) >= 3
    got = flow(_vanishing(flush=flush), how)
    np.testing.assert_allclose(got.grad_norm[tiny], f64.grad_norm[tiny], rtol=1e-3)
    if how in ("sgd_step", "train_step SGD"):
        # plain SGD's update norm is lr * ||gradient|| (the other optimisers measure the
        # parameters' actual change: 0 here, below the weights' ulp)
        upd = got.update_to_weight[tiny] * got.weight_norm[tiny]
        np.testing.assert_allclose(upd, 0.01 * f64.grad_norm[tiny], rtol=1e-3)


def _wide_net(flush):
    """Products large enough for BLAS to split them over its threads (which have no DAZ)."""
    net = vg.MLP([256, 256, 256, 1024], activation="sigmoid", seed=0, flush_subnormals=flush)
    net.weights[-1][:] = 1.0
    return net


def _wide_backward(net, X, dout, threads):
    with num_threads(threads):
        net.forward(X)
        dX = net.backward(dout).copy()
        return dX, net.grads.copy(), net.gradient_flow()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_subnormal_dout_reads_as_zero_in_every_thread_with_flushing(threads):
    """The output layer's delta is the caller's dout.  Subnormal there (1.1e-38), it reads as
    0 with flushing, whichever thread runs which part of the products: the calling thread reads
    it as 0 under DAZ, and a BLAS thread, which has no DAZ, used to make normal numbers of it
    (1e-35 in dX and dW, at 2 threads only).  The caller's dout is not changed; the reference
    reads it the same way."""
    X = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    dout = np.full((64, 1024), 1.1e-38, np.float32)
    dout[0, 0] = 1.0                                # one normal entry: the rest must not count
    zeroed = np.zeros_like(dout)
    zeroed[0, 0] = 1.0
    dX, grads, _ = _wide_backward(_wide_net(True), X, dout, threads)
    dX0, grads0, _ = _wide_backward(_wide_net(True), X, zeroed, threads)
    assert np.all(dout[1:] == np.float32(1.1e-38))      # the caller's array is unchanged
    np.testing.assert_array_equal(grads, grads0)
    np.testing.assert_array_equal(dX, dX0)
    got, want = (_reference_backward(True, X, d) for d in (dout, zeroed))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    off = _reference_backward(False, X, dout)            # IEEE: the subnormals count there
    assert not np.array_equal(off[1], want[1])


def test_without_flushing_a_subnormal_dout_counts_and_is_measured():
    """IEEE arithmetic: the subnormal dout makes normal numbers in the products (1024 x 1.1e-38
    in dX), and the measurements of the layers below read them (delta_rms and the per-sample
    norms agree with the gradient norm on being 0 or not)."""
    X = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    _, grads, f = _wide_backward(_wide_net(False), X, np.full((64, 1024), 1.1e-38, np.float32),
                                 1)
    assert np.abs(grads).max() > 0
    hidden = slice(0, 2)
    assert np.all(f.grad_norm[hidden] > 0)
    assert np.array_equal(f.delta_rms[hidden] > 0, f.grad_norm[hidden] > 0)
    assert np.array_equal(f.per_sample_grad_norm[hidden].max(axis=1) > 0,
                          f.grad_norm[hidden] > 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_subnormal_input_reads_as_zero_in_every_thread_with_flushing(threads):
    """A batch X with subnormal entries gives, with flushing, exactly what the same batch with
    zeros there gives (forward, backward, train_step), at any thread count; X is not changed."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 256)).astype(np.float32)
    X[:, ::2] = 1.1e-38
    zeroed = X.copy()
    zeroed[:, ::2] = 0
    y = np.arange(256) % 1024
    results = []
    for batch in (X, zeroed):
        net = _wide_net(True)
        dX, grads, _ = _wide_backward(net, batch, np.ones((256, 1024), np.float32), threads)
        with num_threads(threads):
            out = net.forward(batch).copy()
            loss = net.train_step(batch, y, "cross_entropy", vg.optim.SGD(net, lr=0.1))
        results.append((dX, grads, out, loss, net.params.copy()))
    assert np.all(X[:, ::2] == np.float32(1.1e-38))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    dout = np.ones((256, 1024), np.float32)
    got, want = (_reference_backward(True, x, dout) for x in (X, zeroed))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    off = _reference_backward(False, X, dout)
    assert not np.array_equal(off[1], want[1])


@pytest.mark.parametrize("norm, chunks", [(None, False), ("batch", False), (None, True)],
                         ids=["separate calls", "batch norm", "one call in batch chunks"])
def test_a_confident_networks_loss_gradient_is_flushed_where_it_lies(norm, chunks):
    """A confident classifier's softmax gradient holds subnormals (a probability of 1.6e-38
    over a batch of 64: 2.6e-40).  train_step flushes the network's own loss-gradient buffer
    where it lies, whichever path runs (separate calls: in place, instead of backward copying
    it at every step; one call in batch chunks: each chunk its rows, explicitly, which on x86
    DAZ did already): no step allocates more than a small fraction of that buffer, none of
    its subnormals is left, and the step gives what a loss gradient with zeros there gives."""
    import tracemalloc
    X = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    y = np.zeros(64, np.int64)

    def confident():
        net = vg.MLP([256, 256, 128], activation="tanh", seed=0, norm=norm)
        net.weights[-1][...] = 0
        net.biases[-1][...] = -87.0                 # every other class at p = 1.6e-38
        net.biases[-1][0] = 0.0
        return net
    _, dout = vg.losses.cross_entropy(confident().forward(X), y)
    assert ((np.abs(dout) < FLT_MIN) & (dout != 0)).sum() == 64 * 127
    net = confident()
    opt = vg.optim.SGD(net, lr=0.1)
    _engine.set_batch_chunks(chunks, min_mnk=0)     # chunks this small network (or not)
    try:
        net.train_step(X, y, "cross_entropy", opt)
        assert net._engine.can_step() == chunks
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            net.train_step(X, y, "cross_entropy", opt)
            grown = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    finally:
        _engine.set_batch_chunks(True)
    assert grown < dout.nbytes // 8, grown
    g = net._ws.loss_grad
    assert not ((np.abs(g) < FLT_MIN) & (g != 0)).any()
    twin = confident()
    twin_opt = vg.optim.SGD(twin, lr=0.1)
    for _ in range(2):
        _, d = vg.losses.cross_entropy(twin.forward(X), y)
        d[(np.abs(d) < FLT_MIN)] = 0
        twin.backward(d, input_grad=False)
        twin_opt.step()
    np.testing.assert_array_equal(net.params, twin.params)


@pytest.mark.parametrize("measure", [True, False])
def test_fit_flushes_its_loss_gradient_without_copying_it(monkeypatch, measure):
    """vg.fit's unmeasured steps compute the loss into the trainer's own buffer: flushed there,
    not copied by backward at every step; the parameters are those of a fit without the
    subnormals."""
    X = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    y = np.zeros(64, np.int64)

    def confident():
        net = vg.MLP([256, 256, 1024], activation="tanh", seed=0, measure=measure)
        net.weights[-1][...] = 0
        net.biases[-1][...] = -87.0
        net.biases[-1][0] = 0.0
        return net
    copies = []
    flush_into = _engine.flush_subnormals_into
    monkeypatch.setattr(_engine, "flush_subnormals_into",
                        lambda s, d: (copies.append(s is not d), flush_into(s, d))[1])
    net = confident()
    vg.fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.1), epochs=3, batch_size=64,
           shuffle=False, verbose=False)
    assert not any(copies)
    twin = confident()
    opt = vg.optim.SGD(twin, lr=0.1)
    for _ in range(3):
        _, d = vg.losses.cross_entropy(twin.forward(X), y)
        d[np.abs(d) < FLT_MIN] = 0
        twin.backward(d, input_grad=False)
        opt.step()
    np.testing.assert_array_equal(net.params, twin.params)


def _reference_backward(flush, X, dout):
    """The reference's dX and gradients (copies: it reuses its buffers) after one pass."""
    ref = R.ReferenceMLP.from_network(_wide_net(True), flush_subnormals=flush)
    ref.forward(X)
    return ref.backward(dout).copy(), ref.grads.copy()


def _forward_preact_rms(net, X, y):
    out = net.forward(X.astype(net.dtype))
    _, dout = vg.losses.cross_entropy(out, y)
    net.backward(dout)
    return net.gradient_flow().preact_rms


def test_float64_shows_the_error_that_float32_flushes():
    X, y = _batch()
    uf64, db64, _ = _engine_pass(_vanishing("float64"), X.astype(np.float64), y)
    assert np.all(uf64 == 0)
    assert all(np.abs(d).max() > 0 for d in db64)      # 1e-54 at the first layer, not 0


def test_the_engine_agrees_with_the_reference_on_the_vanishing_network():
    """Flushing on in both: the layers that keep a normal error agree as usual (the layers
    where the error crosses 1e-38 are not compared entry by entry: products that the engine's
    FTZ zeroes inside a matrix product may sum to a normal value in NumPy)."""
    X, y = _batch()
    _, db, dW = _engine_pass(_vanishing(), X, y)
    _, rdb, rdW = _reference_pass(_vanishing(), X, y)
    for l in range(60):
        if np.abs(rdb[l]).max() > 1e-30:
            scale = np.abs(rdW[l]).max()
            np.testing.assert_allclose(dW[l], rdW[l], rtol=1e-3, atol=1e-3 * scale)


# ------------------------------------------------------------------------------ identity

def _results(net, X, y, threads):
    """Outputs, dX, gradients, parameters after Adam and SGD steps, every measurement; with
    ``threads`` OpenMP threads and BLAS on one (BLAS's own split may round differently)."""
    with num_threads(threads, blas=1):
        out = net.forward(X).copy()
        _, dout = vg.losses.cross_entropy(out, y)
        dX = net.backward(dout).copy()
        flow = net.gradient_flow() if net.measure else None
        grads = net.grads.copy()
        opt = vg.optim.Adam(net, lr=1e-3)
        net.train_step(X, y, "cross_entropy", opt)
        net.sgd_step(0.01)
        res = [out, dX, grads, net.params.copy()]
        if flow is not None:
            res += [getattr(flow, f) for f in vg.flow.FIELDS]
        return res


@pytest.mark.parametrize("measure", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_flushing_off_is_bit_identical_across_thread_counts(measure, dtype):
    X, y = _batch(dtype)
    a = _results(_vanishing(dtype, flush=False, measure=measure), X, y, 1)
    b = _results(_vanishing(dtype, flush=False, measure=measure), X, y, 2)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)
    # and a network large enough for the OpenMP split
    Xb = np.random.default_rng(0).standard_normal((2048, 40)).astype(dtype)
    yb = np.arange(2048) % 7
    mk = lambda: vg.MLP([40, 300, 300, 7], activation="tanh", dtype=dtype, seed=3,  # noqa
                        measure=measure, flush_subnormals=False)
    for x, z in zip(_results(mk(), Xb, yb, 1), _results(mk(), Xb, yb, 2)):
        np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("act", list(vg.ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_on_a_healthy_network_flushing_changes_no_bit(act, dtype):
    """No value falls below the smallest normal, so both settings compute the same numbers:
    flushing costs no accuracy where gradients do not vanish (and float64 agreement with the
    reference and finite differences, tested with the default on, is the same as off)."""
    X, y = _batch(dtype, n=48, width=12, classes=5)
    nets = [vg.MLP([12, 20, 20, 5], activation=act, init="he_normal", dtype=dtype, seed=2,
                   sigma_b=0.1, flush_subnormals=flush) for flush in (True, False)]
    for x, z in zip(*(_results(net, X, y, 1) for net in nets)):
        np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_subnormal_input_counts_as_zero_with_flushing_and_as_itself_without(dtype):
    """relu'(x) at a subnormal x > 0: 0 with flushing (the pre-activation is written as 0, as
    the reference defines it), 1 in IEEE arithmetic."""
    sub = float(np.finfo(dtype).smallest_subnormal)
    X = np.array([[sub, 1.0]], dtype)
    for flush, want in ((True, 0.0), (False, 1.0)):
        net = vg.MLP([2, 2, 2], activation="relu", dtype=dtype, seed=0, flush_subnormals=flush)
        for w in net.weights:
            w[...] = np.eye(2)
        for b in net.biases:
            b[...] = 0
        ref = vg.reference.ReferenceMLP.from_network(net)
        out = net.forward(X)
        d = net.backward(np.ones_like(X))
        assert out[0, 0] == (0.0 if flush else sub) and out[0, 1] == 1.0
        assert d[0, 0] == want and d[0, 1] == 1.0
        np.testing.assert_array_equal(ref.forward(X), out)

"""Narrow networks' passes in batch chunks (src/_engine_chunks.pxi): each chunk runs every layer
on its rows with its own gradient and measurement buffers, added up when the pass ends.

What must hold: the chunked pass is the sum of the two half-batch passes (bit for bit where the
same kernels run), agrees with the reference and with finite differences, measures the same
gradient flow (a unit is dead only if it is inactive on every row of *both* chunks), and gives
the same bits at 1 and 2 threads and on every repetition."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore import _engine
from _vgtest import (ACTIVATION_NAMES, LOSS_NAMES, check_central_differences,
                     check_reference_case, make_target, num_threads)

pytestmark = pytest.mark.skipif(_engine.gemm_kernel_info()["best"] == "none",
                                reason="batch chunks run on vgcore's own kernel (AVX2 or "
                                       "AVX-512)")


@pytest.fixture(autouse=True)
def chunks_restored():
    _engine.set_batch_chunks(True, min_mnk=0)     # chunk the small networks below too
    yield
    _engine.set_batch_chunks(True)


def _pass(net, X, dout, chunks, threads=1):
    _engine.set_batch_chunks(chunks, min_mnk=0)
    with num_threads(threads):
        out = net.forward(X).copy()
        dX = net.backward(dout).copy()
    flow = net.gradient_flow() if net.measure else None
    return out, dX, net.grads.copy(), flow


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_chunked_pass_is_the_sum_of_its_two_halves(dtype, chunks_restored):
    # every layer at least 16 wide, so the half-batch passes also run on vgcore's kernel
    sizes = [24, 40, 33, 16]
    net = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=1, sigma_b=0.3,
                 flush_subnormals=False)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, sizes[0])).astype(dtype)
    dout = rng.standard_normal((40, sizes[-1])).astype(dtype) / 40
    out, dX, grads, _ = _pass(net, X, dout, chunks=True)
    halves = [_pass(net, X[s], dout[s], chunks=False) for s in (slice(0, 20), slice(20, 40))]
    assert np.array_equal(out, np.concatenate([h[0] for h in halves]))
    assert np.array_equal(dX, np.concatenate([h[1] for h in halves]))
    assert np.array_equal(grads, halves[0][2] + halves[1][2])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_chunked_passes_match_the_reference(activation, loss, dtype, threads, chunks_restored):
    # an odd batch: the chunks have 16 and 17 rows; a 10-wide output layer (BLAS would take it
    # unchunked; in a chunk, vgcore's kernel does)
    check_reference_case([19, 33, 24, 10], 33, activation, loss, dtype, threads,
                         f"{activation} {loss} {dtype} {threads} threads, chunked")


@pytest.mark.parametrize("measure", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_results_are_bit_identical_across_thread_counts_and_runs(dtype, measure,
                                                                        chunks_restored):
    def train(threads):
        net = vg.MLP([32] + [48] * 6 + [10], activation="sigmoid", dtype=dtype, seed=4,
                     measure=measure, flush_subnormals=False)
        opt = vg.optim.SGD(net, lr=0.1)
        rng = np.random.default_rng(6)
        X = rng.standard_normal((64, 32)).astype(dtype)
        y = rng.integers(0, 10, 64)
        with num_threads(threads):
            losses = [net.train_step(X, y, "cross_entropy", opt) for _ in range(4)]
        res = [np.array(losses), net.params.copy()]
        if measure:
            flow = net.gradient_flow()
            res += [np.asarray(getattr(flow, f)) for f in vg.flow.FIELDS]
            res.append(flow.per_sample_grad_norm)
        return res

    one = train(1)
    for _ in range(3):
        for a, b in zip(one, train(2)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_measurements_agree_with_the_unchunked_pass(dtype, chunks_restored):
    sizes = [20, 32, 32, 24, 10]
    net = vg.MLP(sizes, activation="relu", init="he_normal", dtype=dtype, seed=7, sigma_b=0.1)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((48, sizes[0])).astype(dtype)
    dout = rng.standard_normal((48, sizes[-1])).astype(dtype) / 48
    *_, a = _pass(net, X, dout, chunks=True)
    *_, b = _pass(net, X, dout, chunks=False)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for field in vg.flow.FIELDS:
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=tol, atol=tol,
                                   err_msg=field)
    np.testing.assert_allclose(a.per_sample_grad_norm, b.per_sample_grad_norm, rtol=tol)
    assert np.array_equal(a.dead_unit_mask, b.dead_unit_mask)


def test_a_unit_inactive_on_one_chunks_rows_only_is_not_dead(chunks_restored):
    # unit 0 of the first hidden layer is inactive on the first half of the batch (the first
    # chunk) and active on the second; unit 1 is inactive everywhere: one dead unit, not two
    sizes = [2, 16, 16, 4]
    net = vg.MLP(sizes, activation="relu", dtype="float64", seed=9)
    W, b = net.weights[0], net.biases[0]
    W[:, :2] = 0.0
    W[0, 0] = 1.0               # h_0 = x_0: negative on the first 16 rows, positive after
    b[0] = 0.0
    b[1] = -1.0                 # h_1 = -1 on every row
    X = np.ones((32, 2))
    X[:16, 0] = -1.0
    dout = np.full((32, 4), 1.0 / 32)
    h = X @ W + b                                   # the first layer's pre-activations
    want = np.all(h <= 0, axis=0)
    assert not want[0] and want[1]
    for chunks in (True, False):
        *_, flow = _pass(net, X, dout, chunks=chunks)
        mask = flow.dead_units[0]
        assert np.array_equal(mask, want), f"chunks={chunks}: {mask} != {want}"
        assert flow.dead_fraction[0] == pytest.approx(want.mean())
        assert flow.zero_derivative_fraction[0] == pytest.approx(np.mean(h <= 0))


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "gelu"])
def test_chunked_gradients_match_central_differences(activation, loss, chunks_restored):
    rng = np.random.default_rng(10)
    sizes = [9, 17, 12, 8]
    batch = 21
    net = vg.MLP(sizes, activation=activation, init="glorot_normal", dtype="float64", seed=11,
                 sigma_b=0.5)
    X = rng.standard_normal((batch, sizes[0]))
    target = make_target(loss, batch, sizes[-1], np.float64, rng)
    check_central_differences(net, X, loss, target, rng)


def test_what_is_not_chunked(chunks_restored):
    info = _engine.batch_chunks_info()
    assert info["chunks"] == 2 and info["min_mnk"] == 0
    rng = np.random.default_rng(12)
    # too few rows (fewer than 2 x min_rows): the unchunked pass, bit for bit
    small = vg.MLP([20, 32, 16], activation="tanh", seed=1, flush_subnormals=False)
    Xs = rng.standard_normal((2 * info["min_rows"] - 1, 20)).astype(np.float32)
    ds = np.ones((Xs.shape[0], 16), np.float32)
    a, b = _pass(small, Xs, ds, True), _pass(small, Xs, ds, False)
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3]))
    # enough rows: the chunked pass differs in the last bits of dW (two half-batch sums)
    X = rng.standard_normal((64, 20)).astype(np.float32)
    d = rng.standard_normal((64, 16)).astype(np.float32)
    a, b = _pass(small, X, d, True), _pass(small, X, d, False)
    assert not np.array_equal(a[2], b[2])
    np.testing.assert_allclose(a[2], b[2], rtol=1e-5, atol=1e-6)
    # batch norm couples the rows: never chunked, whatever the switch says
    bn = vg.MLP([20, 32, 16], activation="tanh", norm="batch", seed=1)
    a, b = _pass(bn, X, d, True), _pass(bn, X, d, False)
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3]))


def test_by_default_only_networks_with_enough_work_per_chunk_are_chunked():
    _engine.set_batch_chunks(True)
    info = _engine.batch_chunks_info()
    assert info["min_mnk"] == info["default_min_mnk"] > 0
    rng = np.random.default_rng(13)
    X = rng.standard_normal((64, 64)).astype(np.float32)
    d = rng.standard_normal((64, 64)).astype(np.float32)
    for depth, chunked in ((2, False), (40, True)):     # 32 rows x 4096 x depth multiply-adds
        net = vg.MLP([64] * (depth + 1), activation="tanh", seed=2, flush_subnormals=False)
        a = _pass(net, X, d, True)
        _engine.set_batch_chunks(True)                  # _pass set min_mnk=0: back to default
        net.forward(X)
        b = net.backward(d).copy(), net.grads.copy()
        unchunked = _pass(net, X, d, False)
        assert np.array_equal(b[1], a[2]) == chunked
        assert np.array_equal(b[1], unchunked[2]) != chunked


def test_two_threads_fall_back_to_one_when_that_is_faster_and_try_two_every_32nd_pass():
    _engine.set_batch_chunks(True)
    net = vg.MLP([64] * 41 + [10], activation="tanh", seed=3, flush_subnormals=False)
    fresh = net.chunk_choice()
    assert fresh["forward"] == {"passes": 0, "one_thread": False,
                                "seconds_per_row": (None, None)}
    rng = np.random.default_rng(14)
    X = rng.standard_normal((64, 64)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    d = rng.standard_normal((64, 10)).astype(np.float32) / 64
    with num_threads(2):
        for _ in range(40):
            net.train_step(X, y, "cross_entropy")      # one call: the "step" choice
            net.forward(X)
            net.backward(d)
    choice = net.chunk_choice()
    for d in ("forward", "backward", "step"):
        assert choice[d]["passes"] == 40
        two, one = choice[d]["seconds_per_row"]
        assert two > 0 and one > 0
        assert choice[d]["one_thread"] == (one < two)
    # one thread: nothing to choose, nothing measured
    net1 = vg.MLP([64] * 41 + [10], activation="tanh", seed=3)
    with num_threads(1):
        net1.train_step(X, y, "cross_entropy")
        net1.forward(X)
    assert net1.chunk_choice()["forward"]["passes"] == 0
    assert net1.chunk_choice()["step"]["passes"] == 0
    # and without adapt, two threads always
    try:
        vg.set_blas_policy(adapt=False)
        net2 = vg.MLP([64] * 41 + [10], activation="tanh", seed=3)
        with num_threads(2):
            net2.train_step(X, y, "cross_entropy")
        assert net2.chunk_choice()["step"]["passes"] == 0
    finally:
        vg.set_blas_policy(adapt=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_train_step_in_one_call_gives_the_bits_of_the_separate_calls(loss, dtype, threads):
    # train_step runs forward, loss and backward in one compiled call for a chunked network;
    # the separate calls (forward, the loss function, backward) must give the same gradients
    # and measurements bit for bit, and the loss within rounding
    sizes = [24, 40, 33, 12]
    rng = np.random.default_rng(15)
    X = rng.standard_normal((36, sizes[0])).astype(dtype)
    target = make_target(loss, 36, sizes[-1], np.dtype(dtype), rng)
    a = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=5, sigma_b=0.2)
    b = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=5, sigma_b=0.2)
    with num_threads(threads):
        for _ in range(3):
            la = a.train_step(X, target, loss)
            lb, dout = vg.losses.get(loss)(b.forward(X), target)
            b.backward(dout, input_grad=False)
            assert la == pytest.approx(lb, rel=1e-12, abs=1e-15)
            assert np.array_equal(a.grads, b.grads)
            fa, fb = a.gradient_flow(), b.gradient_flow()
            for field in vg.flow.FIELDS:
                np.testing.assert_array_equal(getattr(fa, field), getattr(fb, field), field)
            np.testing.assert_array_equal(fa.per_sample_grad_norm, fb.per_sample_grad_norm)
            a.sgd_step(0.1)
            b.sgd_step(0.1)
    assert a.chunk_choice()["step"]["passes"] == (3 if threads > 1 else 0)


def test_a_non_finite_output_in_one_call_raises_and_keeps_the_parameters():
    net = vg.MLP([16, 32, 32, 8], activation="relu", seed=6)
    opt = vg.optim.SGD(net, lr=0.1)
    X = np.ones((32, 16), np.float32)
    y = np.arange(32) % 8
    net.train_step(X, y, "cross_entropy", opt)
    before = net.params.copy()
    net.weights[1][:] = np.float32(3e38)        # the second layer overflows to Inf
    before[...] = net.params
    for threads in (1, 2):
        with num_threads(threads), pytest.raises(vg.NonFiniteError) as e:
            net.train_step(X, y, "cross_entropy", opt)
        assert e.value.where == "forward" and e.value.layer == 2
        assert np.array_equal(net.params, before)


@pytest.mark.parametrize("bad_half", [0, 1])
def test_a_non_finite_output_in_one_chunk_only_raises_and_keeps_the_parameters(bad_half):
    # one chunk's rows overflow, the other's do not: on one thread the finite chunk's backward
    # pass then runs on its own (the first chunk's W^T made by whichever runs), on two threads
    # in its worker; both refuse the step, and the next good step has the same bits on both
    sizes = [16, 32, 32, 8]
    X = np.random.default_rng(2).standard_normal((32, 16)).astype(np.float32)
    bad = X.copy()
    bad[16 * bad_half:16 * (bad_half + 1)] *= np.float32(1e37)
    y = np.arange(32) % 8
    nets = {}
    for threads in (1, 2):
        net = vg.MLP(sizes, activation="relu", seed=6)
        opt = vg.optim.SGD(net, lr=0.1)
        with num_threads(threads):
            net.train_step(X, y, "cross_entropy", opt)
            before = net.params.copy()
            with pytest.raises(vg.NonFiniteError) as e:
                net.train_step(bad, y, "cross_entropy", opt)
            assert e.value.where == "forward"
            assert np.array_equal(net.params, before)
            net.train_step(X, y, "cross_entropy", opt)
        nets[threads] = net
    np.testing.assert_array_equal(nets[1].params, nets[2].params)
    np.testing.assert_array_equal(nets[1].grads, nets[2].grads)
    np.testing.assert_array_equal(nets[1].gradient_flow().grad_norm,
                                  nets[2].gradient_flow().grad_norm)


_OPTIMISERS = {
    "sgd": lambda net: vg.optim.SGD(net, lr=0.1),
    "sgd-nesterov-decay": lambda net: vg.optim.SGD(net, lr=0.05, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-3),
    "sgd-clip-value": lambda net: vg.optim.SGD(net, lr=0.1, clip_value=0.01),
    "rmsprop": lambda net: vg.optim.RMSprop(net, lr=0.01),
    "adagrad": lambda net: vg.optim.Adagrad(net, lr=0.05),
    "adam-schedule": lambda net: vg.optim.Adam(net, lr=lambda t: 0.01 / (1 + t)),
    "adamw": lambda net: vg.optim.AdamW(net, lr=0.01),
}


def _no_separate_step(net, opt, monkeypatch):
    """Make the separate update calls fail: a step that reaches them was not folded."""
    def boom(*args, **kwargs):
        raise AssertionError("the optimiser's step ran as a separate call")
    monkeypatch.setattr(net, "sgd_step", boom)
    monkeypatch.setattr(net, "apply_update", boom)


@pytest.mark.parametrize("measure", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(_OPTIMISERS))
def test_the_optimiser_step_in_one_call_gives_the_bits_of_a_separate_step(
        name, dtype, threads, measure, monkeypatch):
    # train_step(..., optimizer) runs the optimiser's step inside its compiled call (each
    # layer's gradients added up and the layer stepped in the same region); the parameters,
    # the optimiser's state, its step count and the measured norms must be those of the
    # separate calls (train_step, then optimizer.step()), bit for bit, step after step
    sizes = [24, 40, 33, 12]
    rng = np.random.default_rng(16)
    X = rng.standard_normal((36, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 36)
    a = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=5, sigma_b=0.2, measure=measure)
    b = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=5, sigma_b=0.2, measure=measure)
    opt_a, opt_b = _OPTIMISERS[name](a), _OPTIMISERS[name](b)
    _no_separate_step(a, opt_a, monkeypatch)
    with num_threads(threads):
        for step in range(4):
            la = a.train_step(X, y, "cross_entropy", opt_a)
            lb = b.train_step(X, y, "cross_entropy")
            opt_b.step()
            assert la == lb
            assert np.array_equal(a.params, b.params), step
            assert np.array_equal(a.grads, b.grads), step
            for sa, sb in zip(opt_a.state_dict()["states"], opt_b.state_dict()["states"]):
                assert np.array_equal(sa, sb), step
            assert opt_a.step_count == opt_b.step_count == step + 1
            if measure:
                fa, fb = a.gradient_flow(), b.gradient_flow()
                for field in vg.flow.FIELDS:
                    np.testing.assert_array_equal(getattr(fa, field), getattr(fb, field),
                                                  field)
                assert np.isfinite(fa.update_to_weight).all()
    assert not np.array_equal(a.params, vg.MLP(sizes, activation="tanh", dtype=dtype, seed=5,
                                                  sigma_b=0.2).params)


def test_steps_that_cannot_run_in_one_call_run_separately_with_the_same_result():
    # clip_norm needs the whole gradient's norm before any layer steps, and a subclass's own
    # step() must run: train_step calls them after its compiled pass, as before
    class Halved(vg.optim.SGD):
        calls = 0

        def step(self):
            Halved.calls += 1
            self.lr = 0.05
            super().step()

    sizes = [24, 40, 33, 12]
    rng = np.random.default_rng(17)
    X = rng.standard_normal((36, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 36)
    for make in (lambda n: vg.optim.Adam(n, lr=0.01, clip_norm=0.5), lambda n: Halved(n, 0.1)):
        a, b = (vg.MLP(sizes, activation="tanh", seed=5) for _ in range(2))
        opt_a, opt_b = make(a), make(b)
        for _ in range(2):
            a.train_step(X, y, "cross_entropy", opt_a)
            b.train_step(X, y, "cross_entropy")
            opt_b.step()
            assert np.array_equal(a.params, b.params)
        assert opt_a.step_count == 2
    assert Halved.calls == 4
    assert vg.optim.Adam(a, clip_norm=1.0).pass_update() is None
    # a step replaced on the instance (a wrapper that logs, say) runs too
    net = vg.MLP(sizes, activation="tanh", seed=5)
    opt = vg.optim.SGD(net, lr=0.1)
    seen = []
    plain_step = opt.step
    opt.step = lambda: (seen.append(opt.step_count), plain_step())
    assert opt.pass_update() is None
    net.train_step(X, y, "cross_entropy", opt)
    assert seen == [0] and opt.step_count == 1


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_a_non_finite_backward_in_one_call_keeps_the_parameters_and_the_step_count(
        name, threads):
    # a finite output whose errors overflow: targets of 1e30 under the mean squared error give
    # loss gradients whose squares are Inf in float32; the folded step must not run (the
    # parameters and the optimiser's state stay those before the step), and train_step
    # raises naming the backward pass
    sizes = [16, 32, 32, 8]
    net = vg.MLP(sizes, activation="tanh", seed=6)
    opt = _OPTIMISERS[name](net)
    rng = np.random.default_rng(18)
    X = rng.standard_normal((32, 16)).astype(np.float32)
    target = rng.standard_normal((32, 8)).astype(np.float32)
    with num_threads(threads):
        net.train_step(X, target, "mse", opt)
        before = net.params.copy()
        states = opt.state_dict()["states"]
        with pytest.raises(vg.NonFiniteError) as e:
            net.train_step(X, target * np.float32(1e30), "mse", opt)
        assert e.value.where == "backward"
        assert np.array_equal(net.params, before)
        assert all(np.array_equal(s, t) for s, t in zip(opt.state_dict()["states"], states))
        assert opt.step_count == 1
        net.train_step(X, target, "mse", opt)           # and it goes on from there
        assert opt.step_count == 2 and not np.array_equal(net.params, before)


@pytest.mark.parametrize("threads", [1, 2])
def test_fit_on_a_measuring_network_steps_inside_train_steps_call(threads, monkeypatch):
    # vg.fit runs net.train_step(X, y, loss, optimizer) on a measuring network, so a chunked
    # network's steps run in one compiled call: the same parameters, history and recorder
    # rows as train_step on the same mini-batches, and no separate optimiser call
    sizes = [24, 40, 33, 12]
    rng = np.random.default_rng(19)
    X = rng.standard_normal((96, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 96)
    a, b = (vg.MLP(sizes, activation="tanh", seed=7) for _ in range(2))
    opt_a, opt_b = vg.optim.Adam(a, lr=0.01), vg.optim.Adam(b, lr=0.01)
    _no_separate_step(a, opt_a, monkeypatch)
    rec = vg.Recorder(schedule="every")
    with num_threads(threads):
        hist = vg.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=32, shuffle=False,
                      recorder=rec, verbose=0)
        losses = [b.train_step(X[i:i + 32], y[i:i + 32], "cross_entropy", opt_b)
                  for _ in range(2) for i in range(0, 96, 32)]
    assert np.array_equal(a.params, b.params)
    assert opt_a.step_count == opt_b.step_count == 6
    assert hist["loss"] == pytest.approx([np.mean(losses[:3]), np.mean(losses[3:])],
                                         rel=1e-12)
    assert len(rec.steps) == 6
    np.testing.assert_array_equal(rec.history("grad_norm")[-1], b.gradient_flow().grad_norm)


def test_last_output_is_the_last_forward_pass_output():
    sizes = [24, 40, 33, 12]
    rng = np.random.default_rng(20)
    X = rng.standard_normal((36, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 36)
    net, twin = (vg.MLP(sizes, activation="tanh", seed=8) for _ in range(2))
    assert net.last_output is None
    out = net.forward(X)
    assert net.last_output is out or np.shares_memory(net.last_output, out)
    # train_step's output is the one before its update: the twin's forward with the same
    # parameters gives it, and it cannot be written
    net.train_step(X, y, "cross_entropy", vg.optim.SGD(net, lr=0.5))
    np.testing.assert_array_equal(net.last_output, twin.forward(X))
    assert not net.last_output.flags.writeable
    net.forward(X[:8])
    assert net.last_output.shape == (8, sizes[-1])

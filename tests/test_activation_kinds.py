"""float32 tanh and sigmoid in both of their forms (src/vg_math.h): with fused multiply-adds,
the default where the CPU has them, and separately rounded.  Each form within the same error
bounds over a dense sample of float32, in both forward kernels (measuring and not), at every
thread count, in batch chunks, and the engine against the reference; and the setting itself
(vg.set_kernels(activations=...), vg.kernel_info()).  Where the CPU or the build has no FMA
instruction (the sanitizer build), "fma" runs through the C library's fmaf, so both forms are
tested everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import vgcore as vg
from vgcore import _engine
from _vgtest import check_reference_case, identity_network, num_threads

BEST = _engine.act_kernel_info()["best"]
KINDS = ["plain", "fma"]        # "fma" where BEST is "plain": the C library's fmaf, slowly


@pytest.fixture(params=KINDS)
def kind(request):
    vg.set_kernels(activations=request.param)
    yield request.param
    vg.set_kernels(activations="best")


def _float32_sample(lo, hi, step):
    """Every step-th float32 in [lo, hi), by bit pattern (every binade is covered)."""
    bits = np.arange(np.float32(lo).view(np.int32), np.float32(hi).view(np.int32), step,
                     dtype=np.int32)
    return bits.view(np.float32)


def _through(act, xs, measure=True):
    """phi(xs) by the engine's forward kernel (the measuring one unless measure=False)."""
    xs = xs[:xs.size // 64 * 64]
    net = identity_network(64, act, np.float32)
    net.measure = measure
    return xs, net.forward(xs.reshape(-1, 64)).ravel().copy()


def _ulps(got, want):
    return np.abs(got.astype(np.float64) - want) / \
        np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)


SAMPLE = np.concatenate([_float32_sample(1e-7, 10.0, 61), _float32_sample(10.0, 100.0, 1001)])


@pytest.mark.parametrize("measure", [True, False], ids=["measuring", "plain-pass"])
def test_tanh_keeps_its_bounds_in_each_form(kind, measure):
    # the bounds of vg_tanh_f32, checked over every float32 for both forms when written:
    # 2.3 ulp, 1.03 for |x| >= 1, 0.6 for |x| >= 2, odd, 1 exactly where the correctly rounded
    # tanh is, x itself below 2^-25
    xs, got = _through("tanh", SAMPLE, measure)
    want = np.tanh(xs.astype(np.float64))
    u = _ulps(got, want)
    assert u.max() <= 2.3, f"{kind}: {u.max():.3f} ulp at x = {xs[np.argmax(u)]!r}"
    for lo, bound in ((1, 1.03), (2, 0.6)):
        assert u[xs >= lo].max() <= bound, f"{kind}: {u[xs >= lo].max():.3f} ulp, |x| >= {lo}"
    _, neg = _through("tanh", -SAMPLE, measure)
    np.testing.assert_array_equal(neg, -got)
    np.testing.assert_array_equal(got == 1, want.astype(np.float32) == 1)
    tiny = _float32_sample(1.2e-38, 2.0 ** -25, 100003)
    xs, got = _through("tanh", tiny, measure)
    np.testing.assert_array_equal(got, xs)


@pytest.mark.parametrize("measure", [True, False], ids=["measuring", "plain-pass"])
def test_sigmoid_keeps_its_bound_in_each_form(kind, measure):
    xs = np.concatenate([np.float32([0.0, 87.0, -87.0, 88.5, -88.5, 1e30, -1e30]), SAMPLE,
                         -SAMPLE])
    xs, got = _through("sigmoid", xs, measure)
    want = special.expit(xs.astype(np.float64))
    normal = want >= np.finfo(np.float32).tiny
    u = _ulps(got[normal], want[normal])
    assert u.max() <= 2.5, f"{kind}: {u.max():.3f} ulp at x = {xs[normal][np.argmax(u)]!r}"
    assert np.all(got[~normal] < np.finfo(np.float32).tiny)
    assert got[xs == 1e30][0] == 1 and got[xs == -1e30][0] == 0


def test_the_two_forms_differ_only_in_last_bits():
    out = {}
    for k in ("plain", "fma"):
        vg.set_kernels(activations=k)
        try:
            out[k] = {a: _through(a, SAMPLE)[1] for a in ("tanh", "sigmoid")}
        finally:
            vg.set_kernels(activations="best")
    for a in ("tanh", "sigmoid"):
        p, f = out["plain"][a], out["fma"][a]
        differ = np.mean(p != f)
        assert 0 < differ < 0.01, f"{a}: {differ:.4%} of the values differ"
        np.testing.assert_array_max_ulp(p, f, maxulp=4)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_results_do_not_depend_on_the_thread_count(kind, act):
    # layers in batch chunks (each half's product: 128 x 180 x 180 multiply-adds, at least
    # min_mnk and within vgcore's kernel); the same bits at 1 and 2 threads, measurements included
    assert vg.kernel_info()["batch_chunks"]["min_mnk"] <= 128 * 180 * 180 <= \
        vg.kernel_info()["gemm"]["max_mnk"]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((256, 180)).astype(np.float32)
    runs = []
    for t in (1, 2):
        net = vg.MLP([180] * 7 + [10], activation=act, init="glorot_normal",
                     dtype=np.float32, seed=4, sigma_b=0.1)
        with num_threads(t):
            out = net.forward(X).copy()
            net.backward(np.ones_like(out) / out.size)
            runs.append((out, net.grads.copy(), net.gradient_flow().grad_norm.copy()))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_engine_agrees_with_the_reference_in_each_form(kind, act, threads):
    check_reference_case([20, 64, 64, 48, 10], 96, act, "cross_entropy", np.float32,
                         threads, f"{act}/{kind}/{threads}t")


def test_the_setting_is_reported_and_validated():
    assert vg.kernel_info()["activations"] == {"kind": BEST, "best": BEST}
    for bad in ("avx2", "", None, 1):
        with pytest.raises(ValueError, match=f"activations: expected one of 'best', 'fma', "
                                             f"'plain', got {bad!r}"):
            vg.set_kernels(activations=bad)
    # nothing changes when one argument is refused
    with pytest.raises(ValueError, match="activations"):
        vg.set_kernels(gemm="blas", batch_chunks=False, activations="sse")
    info = vg.kernel_info()
    assert info["gemm"]["isa"] == info["gemm"]["best"] and info["batch_chunks"]["on"]
    vg.set_kernels(activations="plain")
    try:
        assert vg.kernel_info()["activations"]["kind"] == "plain"
        assert "tanh and sigmoid without fused multiply-adds" in \
            vg.core._kernels.kernels_line()
    finally:
        vg.set_kernels(activations="best")
    assert vg.kernel_info()["activations"]["kind"] == BEST
    # a record made before the setting existed still reads
    old = {k: v for k, v in vg.kernel_info().items() if k != "activations"}
    assert "tanh" not in vg.core._kernels.kernels_line(old)

"""vgcore's own matrix product for narrow layers (src/vg_gemm.h): the kernel against NumPy on
every edge of its register tiles, AVX-512 and AVX2 bit for bit, and whole networks under each
instruction set (and under BLAS alone) against the reference and finite differences."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import vgcore as vg
from vgcore import _engine
from _vgtest import (ACTIVATION_NAMES, LOSS_NAMES, check_central_differences,
                     check_reference_case, make_target, num_threads)

BEST = _engine.gemm_kernel_info()["best"]
ISAS = {"none": [], "avx2": ["avx2"], "avx512": ["avx2", "avx512"]}[BEST]
needs_kernel = pytest.mark.skipif(not ISAS, reason="this CPU has neither AVX2 nor AVX-512: "
                                  "BLAS computes every product")


@pytest.fixture
def isa_restored():
    yield
    _engine.set_gemm_isa("best")


def _own(A, B, isa):
    _engine.set_gemm_isa(isa)
    C = np.full((A.shape[0], B.shape[1]), np.nan, dtype=A.dtype)
    _engine.gemm_own(A, B, C)
    return C


# rows: the tiles of 8 / 6, 4, 2, 1 and their sums; columns: masked edges of both vectors
ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 64]
COLS = [1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 63, 64, 100]


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed_a", [False, True], ids=["A", "A.T"])
def test_the_kernel_matches_numpy_on_every_tile_edge(dtype, transposed_a, isa_restored):
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for isa in ISAS:
        for M, N, K in itertools.product(ROWS, COLS, [0, 1, 5, 64]):
            if transposed_a:
                A = np.ascontiguousarray(rng.standard_normal((K, M)).astype(dtype)).T
            else:
                A = rng.standard_normal((M, K)).astype(dtype)
            B = rng.standard_normal((K, N)).astype(dtype)
            want = A.astype(np.float64) @ B.astype(np.float64)
            got = _own(A, B, isa)
            scale = np.sqrt(max(K, 1))
            assert np.all(np.abs(got - want) <= tol * scale * (1 + np.abs(want))), \
                f"{isa} {dtype.__name__} M={M} N={N} K={K}: off by " \
                f"{np.max(np.abs(got - want))}"


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_writes_nothing_outside_its_output(dtype, isa_restored):
    # C is a block of a larger buffer: the masked edges must not touch its neighbours
    rng = np.random.default_rng(1)
    for isa in ISAS:
        for N in (5, 17, 33):
            A = rng.standard_normal((9, 7)).astype(dtype)
            B = rng.standard_normal((7, N)).astype(dtype)
            buf = np.full(9 * N + 64, 7.0, dtype=dtype)
            C = buf[:9 * N].reshape(9, N)
            _engine.set_gemm_isa(isa)
            _engine.gemm_own(A, B, C)
            assert np.all(buf[9 * N:] == 7.0), f"{isa}: wrote past the output"
            np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-5)


def _round_to(q, dtype):
    """The exact rational q rounded to the nearest value of dtype (ties to even)."""
    r = dtype(float(q))                       # float64 of a Fraction is correctly rounded
    cands = [r, np.nextafter(r, dtype(np.inf)), np.nextafter(r, dtype(-np.inf))]
    best = min(abs(Fraction(float(c)) - q) for c in cands)
    near = [c for c in cands if abs(Fraction(float(c)) - q) == best]
    return near[0] if len(near) == 1 else \
        [c for c in near if int(np.array(c).view(np.int32 if dtype == np.float32
                                                 else np.int64)) % 2 == 0][0]


def _fma_chain(A, B):
    """C = A B summed as the kernel documents it: for each element, p = 0 .. K-1, one fused
    multiply-add (a single rounding) a step, in exact arithmetic."""
    dt = A.dtype.type
    C = np.zeros((A.shape[0], B.shape[1]), A.dtype)
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            c = dt(0)
            for p in range(A.shape[1]):
                c = _round_to(Fraction(float(A[i, p])) * Fraction(float(B[p, j]))
                              + Fraction(float(c)), dt)
            C[i, j] = c
    return C


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_instruction_set_sums_in_the_documented_order(dtype, isa_restored):
    # each element summed p = 0 .. K-1 with one rounding a step, bit for bit, by every
    # instruction set this CPU runs: so AVX-512 and AVX2 give the same bits (compared directly
    # below where both run), and so does the batch-chunk split wherever it runs
    rng = np.random.default_rng(2)
    for isa in ISAS:
        for M, N, K in [(3, 5, 9), (9, 19, 13), (2, 40, 6)]:   # edges of both tile shapes
            A = rng.standard_normal((M, K)).astype(dtype)
            B = rng.standard_normal((K, N)).astype(dtype)
            assert np.array_equal(_own(A, B, isa), _fma_chain(A, B)), f"{isa} {M}x{N}x{K}"
    if len(ISAS) == 2:
        for M, N, K in [(64, 64, 64), (13, 33, 17), (7, 100, 3), (128, 96, 96)]:
            A = rng.standard_normal((M, K)).astype(dtype)
            B = rng.standard_normal((K, N)).astype(dtype)
            assert np.array_equal(_own(A, B, "avx512"), _own(A, B, "avx2"))


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_transposition_is_exact(dtype, isa_restored):
    rng = np.random.default_rng(3)
    # bands of two blocks (16 rows in float, 8 in double), of one block, single rows, and the
    # columns after the last whole block
    for r, c in [(1, 1), (3, 5), (8, 8), (9, 17), (64, 64), (33, 7), (100, 256), (16, 16),
                 (24, 40), (17, 33), (256, 256), (40, 9), (5, 100)]:
        A = rng.standard_normal((r, c)).astype(dtype)
        out = np.empty((c, r), dtype=dtype)
        _engine.transpose_own(A, out)
        assert np.array_equal(out, A.T)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packing_b_changes_no_bit(dtype, isa_restored):
    # with more rows than one register tile (and K up to 32 KB of panel) the kernel copies each
    # panel of B into a contiguous buffer first; a single row (one tile) reads B in place, and
    # so does any K beyond the buffer: every row must come out the same either way, for the
    # power-of-two row lengths the copy is for, and match NumPy
    rng = np.random.default_rng(4)
    for isa in ISAS:
        for M, N, K in [(9, 256, 64), (64, 256, 256), (20, 100, 600), (12, 64, 1100),
                        (9, 33, 513), (9, 32, 512), (9, 32, 257)]:   # each side of 512 / 256
            A = rng.standard_normal((M, K)).astype(dtype)
            B = rng.standard_normal((K, N)).astype(dtype)
            got = _own(A, B, isa)
            rows = np.vstack([_own(A[i:i + 1], B, isa) for i in range(M)])
            assert np.array_equal(got, rows), f"{isa} {dtype.__name__} M={M} N={N} K={K}"
            want = A.astype(np.float64) @ B.astype(np.float64)
            tol = 1e-5 if dtype == np.float32 else 1e-13
            assert np.all(np.abs(got - want) <= tol * np.sqrt(K) * (1 + np.abs(want)))
            AT = np.ascontiguousarray(A.T).T                  # the transposed layout of dW
            assert np.array_equal(_own(AT, B, isa), got)


def test_a_bad_instruction_set_is_refused_naming_it(isa_restored):
    with pytest.raises(ValueError, match="isa: expected one of"):
        _engine.set_gemm_isa("sse9")
    if BEST != "avx512":
        with pytest.raises(ValueError, match="does not support 'avx512'"):
            _engine.set_gemm_isa("avx512")
    _engine.set_gemm_isa("none")
    assert _engine.gemm_kernel_info()["isa"] == "none"
    _engine.set_gemm_isa("best")
    assert _engine.gemm_kernel_info()["isa"] == BEST


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_narrow_layer_runs_through_the_kernel(dtype, isa_restored):
    # a one-layer identity network: its forward output is the kernel's product plus the bias,
    # bit for bit, and BLAS's differs (otherwise this test could not tell them apart)
    rng = np.random.default_rng(4)
    net = vg.MLP([40, 48], activation="identity", dtype=dtype, seed=1, sigma_b=0.5)
    X = rng.standard_normal((24, 40)).astype(dtype)
    W, b = net.weights[0], net.biases[0]
    C = np.empty((24, 48), dtype=dtype)
    _engine.gemm_own(X, np.ascontiguousarray(W), C)
    got = net.forward(X).copy()
    assert np.array_equal(got, C + b)
    _engine.set_gemm_isa("none")
    blas = net.forward(X).copy()
    np.testing.assert_allclose(blas, got, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-5 if dtype == "float32" else 1e-12)


# Widths that every product of the layer sends to the kernel (at least 16 output columns in
# float32, 8 in float64), with edges of the register tiles in every dimension.
SIZES = [19, 33, 16, 24]
BATCH = 13


@pytest.mark.parametrize("isa", ["none"] + ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_engine_matches_the_reference_under_each_instruction_set(activation, loss, dtype,
                                                                threads, isa, isa_restored):
    _engine.set_gemm_isa(isa)
    check_reference_case(SIZES, BATCH, activation, loss, dtype, threads,
                         f"{activation} {loss} {dtype} {threads} threads {isa}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu", "softplus", "silu"])
def test_the_kernels_gradients_match_central_differences(activation, loss, isa, isa_restored):
    _engine.set_gemm_isa(isa)
    rng = np.random.default_rng(6)
    sizes = [9, 17, 12, 8]
    net = vg.MLP(sizes, activation=activation, init="glorot_normal", dtype="float64", seed=7,
                 sigma_b=0.5)
    X = rng.standard_normal((11, sizes[0]))
    check_central_differences(net, X, loss, make_target(loss, 11, sizes[-1], np.float64, rng),
                              rng)


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_bit_identical_across_runs_and_thread_counts(dtype, isa_restored):
    # the kernel runs in the calling thread: the same steps give the same bits at 1 and 2
    # threads (flushing off, so that nothing but the thread count differs)
    def run(threads):
        net = vg.MLP([32, 64, 64, 48, 10], activation="tanh", dtype=dtype, seed=2,
                     flush_subnormals=False)
        opt = vg.optim.SGD(net, lr=0.05)
        rng = np.random.default_rng(8)
        X = rng.standard_normal((40, 32)).astype(dtype)
        y = rng.integers(0, 10, 40)
        with num_threads(threads):
            for _ in range(5):
                net.train_step(X, y, "cross_entropy", opt)
        return net.params.copy(), net.gradient_flow()

    p1, f1 = run(1)
    p1b, _ = run(1)
    p2, f2 = run(2)
    assert np.array_equal(p1, p1b)
    assert np.array_equal(p1, p2)


def test_kernel_info_and_set_kernels(isa_restored):
    info = vg.kernel_info()
    assert info["gemm"]["isa"] == info["gemm"]["best"] == BEST
    assert info["batch_chunks"]["on"] and info["batch_chunks"]["chunks"] == 2
    try:
        vg.set_kernels(gemm="blas", batch_chunks=False)
        assert vg.kernel_info()["gemm"]["isa"] == "none"
        assert not vg.kernel_info()["batch_chunks"]["on"]
        vg.set_kernels(gemm="best", batch_chunks=True)
        assert vg.kernel_info()["gemm"]["isa"] == BEST
        with pytest.raises(ValueError, match="gemm: expected one of 'best', 'avx512', 'avx2', "
                                             "'blas', got 'sse'"):
            vg.set_kernels(gemm="sse")
        with pytest.raises(TypeError, match="batch_chunks: expected True or False, got 1"):
            vg.set_kernels(batch_chunks=1)
        if BEST != "avx512":
            with pytest.raises(ValueError, match="does not support 'avx512'|neither"):
                vg.set_kernels(gemm="avx512")
    finally:
        vg.set_kernels(gemm="best", batch_chunks=True)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_accumulating_product_adds_once_after_the_sum(dtype, isa_restored):
    # C + (A B), one rounding for the sum and one for the addition: the bits of adding a
    # separately computed product (what the batch chunks rely on)
    rng = np.random.default_rng(9)
    for isa in ISAS:
        _engine.set_gemm_isa(isa)
        for M, N, K in [(9, 33, 17), (64, 64, 32), (3, 5, 7)]:
            A = rng.standard_normal((M, K)).astype(dtype)
            B = rng.standard_normal((K, N)).astype(dtype)
            C0 = rng.standard_normal((M, N)).astype(dtype)
            P = np.empty((M, N), dtype)
            _engine.gemm_own(A, B, P)
            C = C0.copy()
            _engine.gemm_own(A, B, C, accumulate=True)
            assert np.array_equal(C, C0 + P)

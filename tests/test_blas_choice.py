"""Which OpenBLAS computes the products vgcore leaves to a BLAS (vg.use_blas, vg_blas.h):
NumPy's own when its wheel carries one, else SciPy's.  Each available library agrees with the
reference in both dtypes and at 1 and 2 threads, repeats its bits at a fixed choice, is the one
blas_info() marks, and the choice is validated where it is made (argument, VGCORE_BLAS)."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import vgcore as vg
import vgcore.reference as R
from vgcore import _engine
from _vgtest import compare_passes, engine_pass, make_target, num_threads, reference_pass

AVAILABLE = sorted(_engine.blas_products()["available"])
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


@pytest.fixture
def restore_choice():
    before = vg.blas_policy()["products"]["library"]
    yield
    vg.use_blas(before)


@pytest.fixture
def every_product_through_blas():
    """vgcore's own kernel off: every product of the network below goes to the BLAS."""
    _engine.set_gemm_isa("none")
    yield
    _engine.set_gemm_isa("best")


def _net(dtype):
    # 300-wide at batch 96: 8.6 million multiply-adds, above vgcore's kernel and split by
    # OpenBLAS over its threads; the 24-wide layers are small products in one thread
    return vg.MLP([300, 300, 300, 24, 10], activation="tanh", init="glorot_normal",
                  dtype=dtype, seed=3, sigma_b=0.2)


def _batch(dtype, rng_seed=5):
    rng = np.random.default_rng(rng_seed)
    X = (1.5 * rng.standard_normal((96, 300))).astype(dtype)
    return X, make_target("cross_entropy", 96, 10, np.dtype(dtype), rng)


def test_auto_prefers_numpys_openblas_when_it_is_loaded(restore_choice):
    got = vg.use_blas("auto")
    assert got["library"] == ("numpy" if "numpy" in AVAILABLE else "scipy")
    assert got == vg.blas_policy()["products"]
    assert got["file"] == got["available"][got["library"]]
    if got["file"] is not None:
        assert os.path.isfile(got["file"])


@pytest.mark.parametrize("library", AVAILABLE)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_library_agrees_with_the_reference(library, dtype, threads, restore_choice,
                                                every_product_through_blas):
    assert vg.use_blas(library)["library"] == library
    net = _net(dtype)
    ref = R.ReferenceMLP.from_network(net)
    X, target = _batch(dtype)
    with num_threads(threads):
        eng = engine_pass(net, X, "cross_entropy", target)
    compare_passes(eng, reference_pass(ref, X, "cross_entropy", target), np.dtype(dtype),
                   f"{library} BLAS, {threads} threads")


@pytest.mark.parametrize("library", AVAILABLE)
def test_a_fixed_choice_repeats_its_bits(
        library, restore_choice):
    vg.use_blas(library)
    X, y = _batch(np.float32)
    runs = []
    for _ in range(2):
        net = _net(np.float32)
        opt = vg.optim.SGD(net, lr=0.05)
        for _ in range(5):
            net.train_step(X, y, "cross_entropy", opt)
        runs.append(net.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_the_libraries_agree_with_each_other(restore_choice, every_product_through_blas):
    if len(AVAILABLE) < 2:
        pytest.skip("only one OpenBLAS is loaded here (NumPy not from its PyPI wheel)")
    X, target = _batch(np.float64)
    got = {}
    for library in AVAILABLE:
        vg.use_blas(library)
        got[library] = engine_pass(_net(np.float64), X, "cross_entropy", target)
    a, b = (got[k] for k in AVAILABLE)
    np.testing.assert_allclose(a["grads"], b["grads"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(a["dX"], b["dX"], rtol=1e-10, atol=1e-14)


def _sgemm_address(library, path):
    """The address of ``library``'s sgemm as Python finds it on its own (ctypes)."""
    if library == "numpy":
        return ctypes.cast(ctypes.CDLL(path).scipy_sgemm_64_, ctypes.c_void_p).value
    from scipy.linalg import cython_blas
    capsule = cython_blas.__pyx_capi__["sgemm"]
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


@pytest.mark.parametrize("library", AVAILABLE)
def test_the_passes_call_the_chosen_librarys_sgemm(library, restore_choice):
    got = vg.use_blas(library)
    assert _engine._blas_sgemm_address() == _sgemm_address(library, got["file"])


@pytest.mark.parametrize("library", AVAILABLE)
def test_blas_info_marks_the_library_that_computes(library, restore_choice):
    vg.use_blas(library)
    if not vg.blas_policy()["bound"]:
        pytest.skip(f"{library}'s BLAS is not an OpenBLAS whose thread count vgcore reaches")
    mine = [i for i in vg.blas_info() if i["vgcore"]]
    assert len(mine) == 1
    assert os.path.realpath(mine[0]["filepath"]) == vg.blas_policy()["products"]["file"]
    # the thread control is bound in that library
    assert vg.blas_policy()["bound"] is True
    assert ("64_" in vg.blas_policy()["symbol"]) == (library == "numpy")
    assert mine[0]["package"] == library


@pytest.mark.parametrize("bad", ["mkl", "NumPy ", "", None, 1])
def test_a_bad_library_is_refused_naming_it(bad, restore_choice):
    with pytest.raises(ValueError, match="library: expected one of 'auto', 'numpy', 'scipy'"):
        vg.use_blas(bad)


def _import_with(value):
    env = dict(os.environ, VGCORE_BLAS=value)
    return subprocess.run(
        [sys.executable, "-c", "import vgcore as vg; print(vg.blas_policy()['products']"
                               "['library'])"],
        env=env, capture_output=True, text=True, timeout=120,
        cwd="/")        # the installed vgcore, not a source tree in the working directory


def test_the_environment_sets_the_choice_at_import():
    done = _import_with("scipy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "scipy"
    done = _import_with(" AUTO ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("numpy" if "numpy" in AVAILABLE else "scipy")


def test_a_bad_environment_value_is_refused_naming_it():
    done = _import_with("openblas")
    assert done.returncode != 0
    assert "VGCORE_BLAS: expected one of auto, numpy, scipy, got 'openblas'" in done.stderr


@pytest.mark.parametrize("library", AVAILABLE)
@pytest.mark.parametrize("trans", ["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blas_product_computes_op_a_op_b(library, trans, dtype, restore_choice):
    vg.use_blas(library)
    rng = np.random.default_rng(0)
    m, n, k = 37, 29, 41
    A = np.asfortranarray(rng.standard_normal((m, k) if trans[0] == "N" else (k, m)), dtype)
    B = np.asfortranarray(rng.standard_normal((k, n) if trans[1] == "N" else (n, k)), dtype)
    C = np.full((m, n), np.nan, dtype, order="F")
    out = _engine.blas_product(trans, A, B, C)
    assert out is C
    want = (A if trans[0] == "N" else A.T) @ (B if trans[1] == "N" else B.T)
    np.testing.assert_allclose(C, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_blas_product_refuses_what_it_cannot_compute():
    a = np.ones((3, 4), np.float32, order="F")
    b = np.ones((4, 5), np.float32, order="F")
    c = np.zeros((3, 5), np.float32, order="F")
    with pytest.raises(ValueError, match="trans"):
        _engine.blas_product("NX", a, b, c)
    with pytest.raises(ValueError, match="A: expected a Fortran-ordered"):
        _engine.blas_product("NN", np.ones((3, 4), np.float32), b, c)
    with pytest.raises(ValueError, match="B: expected a Fortran-ordered"):
        _engine.blas_product("NN", a, b.astype(np.float64, order="F"), c)
    with pytest.raises(ValueError, match="shapes"):
        _engine.blas_product("NN", a, b.T.copy(order="F"), c)
    c.flags.writeable = False
    with pytest.raises(ValueError, match="C: expected a writable"):
        _engine.blas_product("NN", a, b, c)


def test_without_numpys_openblas_auto_takes_scipys_and_numpy_is_refused(monkeypatch):
    from vgcore.core import _threads
    chosen = []
    only_scipy = {"library": "scipy", "file": "/x/libscipy_openblas.so",
                  "available": {"scipy": "/x/libscipy_openblas.so"}}
    monkeypatch.setattr(_threads._engine, "blas_products", lambda: only_scipy)
    monkeypatch.setattr(_threads._engine, "use_blas_products", chosen.append)
    assert vg.use_blas("auto")["library"] == "scipy"
    assert chosen == ["scipy"]
    with pytest.raises(ValueError, match="'numpy''s OpenBLAS is not loaded in this process "
                                         r"\(found: scipy\)"):
        vg.use_blas("numpy")
    assert chosen == ["scipy"]

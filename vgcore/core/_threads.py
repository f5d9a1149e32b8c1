"""Thread control: OpenMP threads for elementwise work and BLAS threads for matrix products."""
from __future__ import annotations

import threadpoolctl

from vgcore import _engine, _omp_wait
from vgcore.core._validation import check_positive_int

__all__ = ["set_num_threads", "get_num_threads", "openmp_enabled", "blas_info",
           "limited_threads", "wait_policy", "small_products", "set_small_product_limit"]

_controller = None
MAX_THREADS = 4096


def _blas_controller():
    global _controller
    if _controller is None:
        _controller = threadpoolctl.ThreadpoolController()
    return _controller


def openmp_enabled() -> bool:
    """True when the compiled core was built with OpenMP."""
    return _engine.openmp_enabled()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads: for vgcore's elementwise kernels (OpenMP) and for the BLAS that runs
    its matrix products.

    The BLAS limit goes through threadpoolctl and applies to every BLAS library loaded in the
    process (NumPy's too).  The default, before any call, is the OpenMP runtime's: the number of
    cores, or ``OMP_NUM_THREADS`` when set.  Results agree across thread counts (bias
    gradients and elementwise kernels are bit-identical; BLAS may round differently).  Small
    matrix products run in one BLAS thread whatever ``n`` is: see :func:`small_products`.
    """
    n = check_positive_int(n, "n")
    if n > MAX_THREADS:
        raise ValueError(f"n: expected at most {MAX_THREADS} threads, got {n}")
    _engine.set_engine_threads(n)
    _blas_controller().select(user_api="blas").limit(limits=n)


def get_num_threads() -> int:
    """The number of threads vgcore's compiled kernels use."""
    return _engine.get_engine_threads()


def wait_policy() -> dict:
    """How OpenMP's idle threads wait: ``{"policy": "passive" | "active" | "default",
    "set_by": "vgcore" | "user" | "another library"}``.  vgcore loads OpenMP with passive
    waiting unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set, or OpenMP was already
    loaded by another library (see :mod:`vgcore._omp_wait`)."""
    return dict(_omp_wait.STATE)


def small_products() -> dict:
    """How vgcore keeps small matrix products in one BLAS thread.

    OpenBLAS splits a product over its threads once m*n*k passes 262,144 multiply-adds; for
    the products of narrow layers that costs more than it saves (1.15-1.4x slower on 2 cores),
    and OpenBLAS's threads do not flush subnormals, so where gradients vanish they take a
    microcode assist per tiny value (2x slower on Intel).  While a compiled pass multiplies
    matrices of at most ``max_mnk`` multiply-adds (float64 products count twice), the BLAS runs
    them in the calling thread; larger ones get the BLAS's thread count back, and the count is
    as it was when the pass returns.  Returns ``{"bound": bool, "symbol": str | None,
    "max_mnk": int, "default_max_mnk": int}``; ``bound`` is False when the BLAS behind SciPy is
    not an OpenBLAS whose thread count vgcore can reach (then the BLAS decides alone).
    """
    info = _engine.blas_one_thread_info()
    return {"bound": info["bound"], "symbol": info["symbol"], "max_mnk": int(info["max_mnk"]),
            "default_max_mnk": int(info["default_max_mnk"])}


def set_small_product_limit(max_mnk: int | None) -> None:
    """Products of at most ``max_mnk`` multiply-adds (m*n*k; float64 products count twice)
    run in one BLAS thread during vgcore's passes; ``0`` turns this off (the BLAS decides, as
    for NumPy), ``None`` restores the default (4,194,304, the crossover measured on 2 cores).
    Process-wide.  Results do not change, only which thread computes them."""
    if max_mnk is None:
        max_mnk = _engine.blas_one_thread_info()["default_max_mnk"]
    elif isinstance(max_mnk, bool) or not isinstance(max_mnk, (int, float)) or \
            not (max_mnk >= 0) or max_mnk == float("inf"):
        raise ValueError(f"max_mnk: expected a finite number of multiply-adds >= 0 or None, "
                         f"got {max_mnk!r}")
    _engine.set_blas_one_max(float(max_mnk))


def blas_info() -> list[dict]:
    """What BLAS libraries are loaded, with their kernel (``architecture``) and thread counts."""
    return [dict(info) for info in _blas_controller().select(user_api="blas").info()]


class limited_threads:
    """Context manager: vgcore's and BLAS's thread counts set to ``n`` inside the block, both
    restored on the way out (BLAS to the limits it had, not to ``n``'s predecessor guessed).

    ``n=None`` changes nothing, so callers can pass an optional ``--threads`` as it is.
    Re-entrant and nestable; not thread-safe (thread counts are process-wide).
    """

    def __init__(self, n):
        if n is not None:
            n = check_positive_int(n, "n")
            if n > MAX_THREADS:
                raise ValueError(f"n: expected at most {MAX_THREADS} threads, got {n}")
        self.n = n
        self._saved = []

    def __enter__(self):
        if self.n is not None:
            blas = _blas_controller().select(user_api="blas").limit(limits=self.n)
            self._saved.append((_engine.get_engine_threads(), blas))
            _engine.set_engine_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            engine, blas = self._saved.pop()
            blas.restore_original_limits()
            _engine.set_engine_threads(engine)
        return False

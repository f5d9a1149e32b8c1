"""Thread control: OpenMP threads for elementwise work and BLAS threads for matrix products."""
from __future__ import annotations

import os

import threadpoolctl

from vgcore import _engine, _omp_wait
from vgcore.core._validation import check_positive_int

__all__ = ["set_num_threads", "get_num_threads", "openmp_enabled", "blas_info",
           "limited_threads", "wait_policy", "blas_policy", "set_blas_policy", "use_blas"]

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
    matrix products run in one BLAS thread whatever ``n`` is, and larger ones when that has
    been faster: see :func:`blas_policy`.  A narrow network runs each pass as two halves of
    the batch, one per thread, and gives the same bits at any ``n`` (see
    :func:`vgcore.kernel_info`).
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
    """How OpenMP's idle threads wait: ``{"policy": "spin then sleep" | "passive" | "active" |
    "default", "spincount": GOMP_SPINCOUNT (a string) or None, "set_by": "vgcore" | "user" |
    "another library" | "not libgomp"}``.  vgcore loads OpenMP with a short spin
    (``GOMP_SPINCOUNT=10000``, about a quarter of a millisecond) before an idle worker sleeps,
    unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set, or OpenMP was already loaded by
    another library (see :mod:`vgcore._omp_wait`)."""
    return dict(_omp_wait.STATE)


def blas_policy() -> dict:
    """How vgcore runs the BLAS's threads during its passes.

    OpenBLAS splits a product over its threads once m*n*k passes 262,144 multiply-adds.  For
    the products of narrow layers that costs more than it saves (1.15-1.4x slower on 2 cores),
    and OpenBLAS's threads do not flush subnormals, so where gradients vanish they take a
    microcode assist per tiny value (2x slower on Intel).  So:

    - products of at most ``max_mnk`` multiply-adds (float64 products count twice) run in the
      calling thread, which flushes subnormals;
    - with ``adapt``, larger products also run in one thread when that has been faster for the
      network lately: each network keeps, per pass direction, a moving average of its time per
      multiply-add in either mode, runs the faster and tries the other every
      ``probe_every``-th pass (every 128th while the other was 1.5x slower or more), and
      2, 4, 8 and 16 passes after a switch, so that a burst of load is soon undone.  On a
      quiet machine that keeps both cores on large products; when another process takes a
      core, a 2-thread product waits at its end for the thread the scheduler gave away (20x
      slower at the 90th percentile), and one thread wins.

    The BLAS's thread count is as it was when each pass returns.  ``bound`` is False when the
    BLAS that computes the products is not an OpenBLAS whose thread count vgcore can reach;
    then the BLAS decides alone.

    All this assumes that the BLAS gives the same bits in one thread and in several (OpenBLAS
    splits a product's output over its threads, not its sums).  Some of its kernels do not:
    Haswell's, as run on an AMD EPYC, round differently at another thread count.  When vgcore
    loads it computes a few products both ways; if the bits differ
    (``threads_change_bits``), vgcore leaves the BLAS's thread count alone (``hands_off``):
    every product runs at the count you set, so a run repeats its results bit for bit at a
    fixed thread count, also with other networks training in other Python threads, at the
    price of the protections above (on narrow networks vgcore's own matrix product does most
    of the work anyway).  ``set_blas_policy(reproducible=False)`` takes speed under load
    over that.

    ``products`` says which OpenBLAS computes the products (:func:`use_blas`).

    Returns ``{"bound", "symbol", "max_mnk", "default_max_mnk", "adapt", "probe_every",
    "threads_change_bits", "reproducible", "hands_off", "products"}``.
    """
    info = _engine.blas_one_thread_info()
    return {"products": _engine.blas_products(),
            "bound": info["bound"], "symbol": info["symbol"], "max_mnk": int(info["max_mnk"]),
            "default_max_mnk": int(info["default_max_mnk"]), "adapt": info["adapt"],
            "probe_every": info["probe_every"],
            "threads_change_bits": info["threads_change_bits"],
            "reproducible": info["reproducible"], "hands_off": info["hands_off"]}


_UNCHANGED = object()


def set_blas_policy(max_mnk=_UNCHANGED, adapt=_UNCHANGED, reproducible=_UNCHANGED) -> None:
    """Change how vgcore runs the BLAS's threads (see :func:`blas_policy`); process-wide.

    ``max_mnk``: products of at most this many multiply-adds (m*n*k; float64 counts twice) run
    in one thread; ``0`` runs every product as the BLAS decides, ``None`` restores the default
    (4,194,304: the crossover measured on 2 cores).  ``adapt``: True or False; it also decides
    whether a narrow network's batch chunks may fall back to one thread under load (see
    :meth:`vgcore.MLP.chunk_choice`).  ``reproducible``: True (the default) or False; when
    the BLAS's bits depend on its thread count (``blas_policy()["threads_change_bits"]``),
    True leaves that count alone and the two settings above do not apply to BLAS products;
    False applies them anyway, and results may then differ in the last bits from run to run.
    Otherwise results do not change, only which threads compute them.
    """
    if max_mnk is not _UNCHANGED:
        if max_mnk is None:
            max_mnk = _engine.blas_one_thread_info()["default_max_mnk"]
        elif isinstance(max_mnk, bool) or not isinstance(max_mnk, (int, float)) or \
                not (0 <= max_mnk < float("inf")):
            raise ValueError(f"max_mnk: expected a finite number of multiply-adds >= 0 or None, "
                             f"got {max_mnk!r}")
    if adapt is not _UNCHANGED and not isinstance(adapt, bool):
        raise TypeError(f"adapt: expected True or False, got {adapt!r}")
    if reproducible is not _UNCHANGED and not isinstance(reproducible, bool):
        raise TypeError(f"reproducible: expected True or False, got {reproducible!r}")
    if max_mnk is not _UNCHANGED:
        _engine.set_blas_one_max(float(max_mnk))
    if isinstance(adapt, bool):
        _engine.set_blas_adapt(adapt)
    if isinstance(reproducible, bool):
        _engine.set_blas_reproducible(reproducible)


def blas_info() -> list[dict]:
    """What BLAS libraries are loaded, with their kernel (``architecture``) and thread counts;
    ``vgcore`` is True for the one that computes vgcore's larger matrix products (see
    :func:`use_blas`), ``package`` is ``"numpy"`` or ``"scipy"`` for the OpenBLAS that NumPy or
    SciPy carries (None for any other)."""
    products = _engine.blas_products()
    owner = {path: name for name, path in products["available"].items() if path}
    out = []
    for info in _blas_controller().select(user_api="blas").info():
        path = os.path.realpath(info["filepath"]) if info.get("filepath") else None
        out.append(dict(info, vgcore=path is not None and path == products["file"],
                        package=owner.get(path)))
    return out


BLAS_CHOICES = ("auto", "numpy", "scipy")
BLAS_PACKAGES = {"numpy": "NumPy's", "scipy": "SciPy's"}
"""How reports name the package whose OpenBLAS it is (``blas_info()``'s ``package``)."""


def use_blas(library: str = "auto") -> dict:
    """Choose the OpenBLAS that computes the matrix products vgcore's own kernel leaves to a
    BLAS (those of layers wider than about 256, or of large batches); process-wide.

    - ``"numpy"``: NumPy's own OpenBLAS, when NumPy's wheel carries one (``scipy-openblas``,
      64-bit integers). vgcore's products then share the thread pool of your NumPy code
      instead of keeping a second one beside it, and that OpenBLAS is often the newer
      release: on an AMD EPYC, NumPy's 0.3.31 computed the weight gradients of 512- and
      1024-wide layers 10-13% faster than SciPy's 0.3.30.
    - ``"scipy"``: SciPy's, through ``scipy.linalg.cython_blas``: any BLAS SciPy was built with.
    - ``"auto"`` (the default when vgcore is imported): NumPy's when it is found, else SciPy's.

    The environment variable ``VGCORE_BLAS`` (``auto``, ``numpy`` or ``scipy``) sets the choice
    made at import. Results agree within rounding either way (the two libraries may order
    their sums differently); at a fixed choice and thread count a run repeats its bits.
    Choose before training, not while another thread runs a network: a switch is refused
    (RuntimeError) while a pass holds the BLAS's thread count, and a pass that runs through a
    switch may compute some products with each library (safe, but not bit for bit repeatable).
    Choosing also probes whether the library's bits depend on its thread count (~5 ms; see
    :func:`blas_policy`). Returns :func:`blas_policy`'s ``products``: ``{"library", "file",
    "available"}``.
    """
    if not isinstance(library, str) or library not in BLAS_CHOICES:
        raise ValueError(f"library: expected one of {', '.join(map(repr, BLAS_CHOICES))}, "
                         f"got {library!r}")
    available = _engine.blas_products()["available"]
    if library == "auto":
        library = "numpy" if "numpy" in available else "scipy"
    elif library not in available:
        raise ValueError(f"library: {library!r}'s OpenBLAS is not loaded in this process "
                         f"(found: {', '.join(sorted(available))}); vgcore uses NumPy's own "
                         f"only where NumPy's wheel carries scipy-openblas64 (NumPy 2 from "
                         f"PyPI)")
    _engine.use_blas_products(library)
    return _engine.blas_products()


def _use_blas_from_environment() -> None:
    choice = os.environ.get("VGCORE_BLAS", "auto").strip().lower() or "auto"
    if choice not in BLAS_CHOICES:
        raise ValueError(f"VGCORE_BLAS: expected one of {', '.join(BLAS_CHOICES)}, got "
                         f"{os.environ['VGCORE_BLAS']!r}")
    use_blas(choice)


_use_blas_from_environment()


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

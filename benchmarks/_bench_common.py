"""Shared by the pytest-benchmark suite (test_*.py) and benchmarks/report.py.

The configurations, how a problem is built (network, reference twin, data), the flop count of a
train step, and the BLAS-only baseline that runs the same three matrix products per layer.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas as _blas

import vgcore as vg
from vgcore.commands.bench import lead_in  # noqa: F401  (the one untimed warm-up)
from vgcore.core.reference import ReferenceMLP

N_OUT = 10
LR = 0.01
LOSS = "cross_entropy"
INIT = "glorot_uniform"
THREADS_ENV = "VGCORE_BENCH_THREADS"   # when set, vg.set_num_threads(int(value)) before timing


@dataclass(frozen=True)
class Config:
    name: str
    n_hidden: int
    width: int
    batch: int
    activation: str
    target: float          # wanted ratio reference time / vgcore time
    gemm_baseline: bool    # also time the matrix products alone

    @property
    def sizes(self):
        # input width = hidden width, N_OUT outputs
        return [self.width] * (self.n_hidden + 1) + [N_OUT]

    @property
    def shape(self):
        return f"{self.n_hidden}x{self.width}"


CONFIGS = {c.name: c for c in (
    Config("deep-narrow", 50, 64, 64, "tanh", 2.5, False),
    Config("deep-narrow-2", 100, 32, 32, "sigmoid", 3.0, False),
    Config("medium", 10, 256, 128, "relu", 1.3, False),
    Config("wide", 4, 1024, 256, "relu", 1.0, True),
    Config("huge-batch", 8, 512, 2048, "relu", 1.0, True),
)}
GEMM_CONFIGS = [name for name, c in CONFIGS.items() if c.gemm_baseline]


def apply_thread_env():
    """Honour VGCORE_BENCH_THREADS (vgcore's OpenMP threads and every loaded BLAS)."""
    n = os.environ.get(THREADS_ENV)
    if n:
        vg.set_num_threads(int(n))


def train_step_flops(cfg: Config) -> int:
    """Flops of the three matrix products of a train step: 2*b*fin*fout each for x@W,
    x.T@delta and delta@W.T in every layer, minus the first layer's delta@W.T (the input
    gradient is not needed).  Elementwise work (bias, activation, loss, SGD) is not counted."""
    s, b = cfg.sizes, cfg.batch
    total = sum(6 * b * s[l] * s[l + 1] for l in range(len(s) - 1))
    return total - 2 * b * s[0] * s[1]


def make_data(cfg: Config, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((cfg.batch, cfg.width), dtype=np.float32)
    y = rng.integers(0, N_OUT, cfg.batch).astype(np.int64)
    return X, y


class Problem:
    """A vgcore network, its NumPy twin with the same parameters, and one batch.

    ``check()`` runs one step on each from identical parameters and asserts they agree (the
    loss, and the parameters after the SGD update), which also allocates every buffer so the
    timed steps that follow are steady-state.
    """

    def __init__(self, cfg: Config, seed: int = 0):
        self.cfg = cfg
        self.net = vg.MLP(cfg.sizes, activation=cfg.activation, init=INIT, dtype="float32",
                          seed=seed)
        self.ref = ReferenceMLP.from_network(self.net)
        self.opt = vg.optim.SGD(self.net, lr=LR)
        self.X, self.y = make_data(cfg)
        self.flops = train_step_flops(cfg)

    def vgcore_step(self) -> float:
        return self.net.train_step(self.X, self.y, LOSS, self.opt)

    def reference_step(self) -> float:
        return self.ref.train_step(self.X, self.y, LOSS, lr=LR)

    def step(self, impl: str):
        return {"vgcore": self.vgcore_step, "reference": self.reference_step}[impl]

    def check(self):
        l_vg = self.vgcore_step()
        l_ref = self.reference_step()
        assert_sane_loss(l_vg, "vgcore")
        assert_sane_loss(l_ref, "reference")
        assert math.isclose(l_vg, l_ref, rel_tol=1e-4, abs_tol=1e-5), \
            f"{self.cfg.name}: first-step loss vgcore {l_vg!r} != reference {l_ref!r}"
        err = float(np.max(np.abs(self.net.params - self.ref.params)))
        assert err < 1e-4, f"{self.cfg.name}: parameters differ by {err} after one SGD step"
        return l_vg, l_ref

    def params(self, impl: str) -> np.ndarray:
        return self.net.params if impl == "vgcore" else self.ref.params


def assert_sane_loss(loss, what=""):
    assert isinstance(loss, float), f"{what}: loss is {type(loss).__name__}, not float"
    # softmax cross-entropy over 10 classes starts near ln(10) = 2.30 and must stay finite
    assert math.isfinite(loss) and 0.0 <= loss < 50.0, f"{what}: loss {loss!r} is not sane"


def assert_finite(a: np.ndarray, what=""):
    assert np.isfinite(a).all(), f"{what}: non-finite values"


# ------------------------------------------------------------------------------ GEMM baseline

class GemmBaseline:
    """The matrix products of one train step, alone, on preallocated float32 arrays.

    Per layer ``l`` (input ``x`` of shape (b, fin), ``W`` (fin, fout), ``delta`` (b, fout)):
    ``h = x @ W``, ``dW = x.T @ delta`` and, except for the first layer, ``dx = delta @ W.T``.

    ``backend="scipy"`` calls ``scipy.linalg.blas.sgemm`` -- the OpenBLAS that vgcore links
    through ``scipy.linalg.cython_blas`` -- on transposed (Fortran-ordered) views of the C-ordered
    arrays, writing into the output in place (no copies); ``backend="numpy"`` uses
    ``numpy.matmul(..., out=)`` (NumPy's own OpenBLAS, the one the reference uses).
    """

    def __init__(self, cfg: Config, backend: str = "scipy", seed: int = 2):
        if backend not in ("scipy", "numpy"):
            raise ValueError(backend)
        self.cfg, self.backend = cfg, backend
        self.flops = train_step_flops(cfg)
        rng = np.random.default_rng(seed)
        s, b = cfg.sizes, cfg.batch
        self.layers = []
        for l in range(len(s) - 1):
            fin, fout = s[l], s[l + 1]
            lim = math.sqrt(6.0 / (fin + fout))
            self.layers.append(dict(
                x=rng.standard_normal((b, fin), dtype=np.float32),
                W=rng.uniform(-lim, lim, (fin, fout)).astype(np.float32),
                delta=(rng.standard_normal((b, fout), dtype=np.float32) / b),
                h=np.zeros((b, fout), np.float32),
                dW=np.zeros((fin, fout), np.float32),
                dx=np.zeros((b, fin), np.float32) if l > 0 else None,
            ))
        self.run = self._run_scipy if backend == "scipy" else self._run_numpy
        if backend == "scipy":
            self._check_in_place()

    def _run_scipy(self):
        sgemm = _blas.sgemm
        for L in self.layers:
            x, W, d = L["x"], L["W"], L["delta"]
            # row-major C = A @ B is column-major C.T = B.T @ A.T; every .T below is F-ordered
            sgemm(1.0, W.T, x.T, c=L["h"].T, overwrite_c=True)                   # h = x @ W
            sgemm(1.0, d.T, x.T, trans_b=True, c=L["dW"].T, overwrite_c=True)    # dW = x.T @ d
            if L["dx"] is not None:
                sgemm(1.0, W.T, d.T, trans_a=True, c=L["dx"].T, overwrite_c=True)  # dx = d @ W.T

    def _run_numpy(self):
        mm = np.matmul
        for L in self.layers:
            x, W, d = L["x"], L["W"], L["delta"]
            mm(x, W, out=L["h"])
            mm(x.T, d, out=L["dW"])
            if L["dx"] is not None:
                mm(d, W.T, out=L["dx"])

    def _check_in_place(self):
        """sgemm must write into our arrays (f2py would silently copy a non-F-ordered c)."""
        L = self.layers[-1]
        ret = _blas.sgemm(1.0, L["W"].T, L["x"].T, c=L["h"].T, overwrite_c=True)
        assert np.shares_memory(ret, L["h"]), "sgemm did not write in place"

    def check(self, run=True):
        """Compare every product (of a fresh run, or of the last one) with NumPy."""
        if run:
            self.run()
        for L in self.layers:
            x, W, d = L["x"], L["W"], L["delta"]
            for got, want in ((L["h"], x @ W), (L["dW"], x.T @ d),
                              (L["dx"], None if L["dx"] is None else d @ W.T)):
                if got is None:
                    continue
                assert_finite(got, "GEMM baseline")
                scale = float(np.max(np.abs(want))) or 1.0
                err = float(np.max(np.abs(got - want))) / scale
                assert err < 1e-4, f"GEMM baseline ({self.backend}): relative error {err}"


def blas_summary() -> str:
    """One line naming the loaded BLAS libraries, their kernels and threads."""
    parts = []
    for info in vg.blas_info():
        path = info.get("filepath", "")
        lib = os.path.basename(path) or info.get("prefix", "?")
        if "scipy" in os.path.dirname(path):
            lib += ", SciPy's: vgcore's GEMMs"
        elif "numpy" in os.path.dirname(path):
            lib += ", NumPy's: the reference's GEMMs"
        parts.append(f"{info.get('internal_api')} {info.get('version')} "
                     f"[{info.get('architecture')}, {info.get('num_threads')} threads, "
                     f"{info.get('threading_layer')}] ({lib})")
    env = {k: os.environ[k] for k in sorted(os.environ)
           if k.startswith(("OPENBLAS_", "OMP_", "GOMP_", "MKL_", THREADS_ENV))}
    env_s = ", ".join(f"{k}={v}" for k, v in env.items()) or "none"
    return (f"BLAS: {'; '.join(parts) or 'none found'}. vgcore threads: {vg.get_num_threads()} "
            f"(OpenMP {'on' if vg.openmp_enabled() else 'off'}), os.cpu_count()={os.cpu_count()}. "
            f"Env: {env_s}.")


# configurations whose vgcore-vs-reference agreement was already checked in this process
CHECKED: set = set()

# results collected by the pytest suite for the GFLOP/s summary printed by conftest
RESULTS: list = []


def record(benchmark, config: str, impl: str, flops: int) -> None:
    """Put the flop count (and, when timed, the achieved GFLOP/s) in benchmark.extra_info."""
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["config"] = config
    benchmark.extra_info["impl"] = impl
    stats = getattr(benchmark, "stats", None)
    if stats:                                     # None / empty under --benchmark-disable
        median = stats.stats.median
        gflops = flops / median / 1e9
        benchmark.extra_info["gflops_median"] = round(gflops, 2)
        RESULTS.append(dict(config=config, impl=impl, median_ms=median * 1e3, gflops=gflops))

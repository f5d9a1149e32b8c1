"""Shared by the pytest-benchmark suite (test_*.py), benchmarks/report.py and
benchmarks/contention.py.

The configurations and the targets of issues #11 and #16, how a problem is built (one vgcore
network and the baselines of _baselines.py from the same parameters, one batch), the flop count
of a train step, the machine's identity (CPU model, BLAS kernels, threads), the interleaved
timing of all systems of a configuration, and the BLAS-only baseline that runs the same three
matrix products per layer.
"""
from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass

import numpy as np

import vgcore as vg
from vgcore import _engine
from vgcore.core._threads import BLAS_PACKAGES
from vgcore.core._kernels import kernels_line  # noqa: F401  (report, contention)
import _baselines as bl
from vgcore.commands.bench import lead_in, time_interleaved  # noqa: F401  (the shared timer)

N_OUT = 10
LR = 0.01
LOSS = "cross_entropy"
INIT = "glorot_uniform"
THREADS_ENV = "VGCORE_BENCH_THREADS"   # when set, vg.set_num_threads(int(value)) before timing
SYSTEMS = bl.SYSTEMS                   # numpy (tuned), reference, torch, vgcore
LABELS = bl.LABELS


@dataclass(frozen=True)
class Config:
    name: str
    n_hidden: int
    width: int
    batch: int
    activation: str
    init: str = INIT
    gemm_baseline: bool = False    # also time the matrix products alone

    @property
    def sizes(self):
        # input width = hidden width, N_OUT outputs
        return [self.width] * (self.n_hidden + 1) + [N_OUT]

    @property
    def shape(self):
        return f"{self.n_hidden}x{self.width}"

    @property
    def label(self):
        return f"{self.shape} b{self.batch} {self.activation}" + \
            ("" if self.init == INIT else f" {self.init}")


CONFIGS = {c.name: c for c in (
    Config("deep-narrow", 50, 64, 64, "tanh"),
    Config("deep-narrow-2", 100, 32, 32, "sigmoid"),
    Config("medium", 10, 256, 128, "relu"),
    Config("wide", 4, 1024, 256, "relu", gemm_baseline=True),
    Config("huge-batch", 8, 512, 2048, "relu", gemm_baseline=True),
    # issue #11: gradients that vanish through the float32 subnormal range (PyTorch's default
    # init), and the same shapes under relu / He, whose step it should cost at most 1.15x
    Config("vanishing", 60, 96, 64, "sigmoid", "standard"),
    Config("vanishing-relu", 60, 96, 64, "relu", "he_normal"),
)}
GEMM_CONFIGS = [name for name, c in CONFIGS.items() if c.gemm_baseline]
# configurations timed in one interleaved pool, so that their ratio is measured side by side
TWINS = {"vanishing": "vanishing-relu", "vanishing-relu": "vanishing"}
VANISHING_MAX = 1.15      # vanishing step / vanishing-relu step, issue #11

# Targets: tuned NumPy time / vgcore time and PyTorch time / vgcore time, by thread count
# (issue #16 for the five standard configurations, issue #11 for the vanishing one).
TARGETS = {
    "deep-narrow": {2: (2.0, 5.0), 1: (1.8, None)},
    "deep-narrow-2": {2: (6.0, 8.0), 1: (6.0, None)},
    "medium": {2: (1.15, 1.2), 1: (1.1, None)},
    "wide": {2: (1.05, 1.1), 1: (1.05, None)},
    "huge-batch": {2: (1.05, 1.1), 1: (1.05, None)},
    "vanishing": {2: (6.0, None)},
}


def target(config, threads, against):
    """The target ratio (``against`` time / vgcore time) or None."""
    t = TARGETS.get(config, {}).get(threads)
    if t is None:
        return None
    return t[0] if against == "numpy" else t[1] if against == "torch" else None


def apply_thread_env():
    """Honour VGCORE_BENCH_THREADS (vgcore's OpenMP threads, every BLAS, PyTorch)."""
    n = os.environ.get(THREADS_ENV)
    if n:
        set_threads(int(n))


def set_threads(n):
    """vgcore's OpenMP and every loaded BLAS (vg.set_num_threads), and PyTorch's intra-op
    threads when torch is imported."""
    vg.set_num_threads(n)
    torch = _torch_if_imported()
    if torch is not None:
        torch.set_num_threads(n)


def _torch_if_imported():
    import sys
    return sys.modules.get("torch")


_TORCH = None


def get_torch():
    """(torch, None) or (None, reason); imported once, its threads set to vgcore's."""
    global _TORCH
    if _TORCH is None:
        _TORCH = bl.import_torch()
        if _TORCH[0] is not None:
            _TORCH[0].set_num_threads(vg.get_num_threads())
    return _TORCH


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


def make_net(cfg: Config, seed: int = 0):
    """vgcore's network for ``cfg`` as it ships (measuring the gradient flow)."""
    return vg.MLP(cfg.sizes, activation=cfg.activation, init=cfg.init, dtype="float32",
                  seed=seed)


class Problem:
    """One configuration: a vgcore network and the baselines, all from the same parameters,
    and one batch.  ``systems`` maps a name of SYSTEMS to a callable that runs one training
    step and returns its loss; torch is left out (see ``skipped``) when it cannot be imported.
    """

    def __init__(self, cfg: Config, systems=SYSTEMS, seed: int = 0):
        self.cfg = cfg
        self.net = make_net(cfg, seed)
        self.X, self.y = make_data(cfg)
        self.flops = train_step_flops(cfg)
        self.systems, self.skipped = {}, {}
        for name in systems:
            torch = None
            if name == "torch":
                torch, why = get_torch()
                if torch is None:
                    self.skipped[name] = why
                    continue
            self.systems[name] = bl.build(name, self.net, self.X, self.y, LR, torch)

    @property
    def ref(self):
        return self.systems["reference"].ref

    @property
    def opt(self):
        return self.systems["vgcore"].opt

    def step(self, system: str):
        return self.systems[system]


def check_system(cfg: Config, system: str) -> dict:
    """One step of ``system`` against vgcore.reference on the same parameters and batch (see
    _baselines.check_system)."""
    torch = None
    if system == "torch":
        torch, why = get_torch()
        if torch is None:
            raise RuntimeError(f"PyTorch: {why}")
    X, y = make_data(cfg)
    return bl.check_system(system, cfg.name, lambda: make_net(cfg), X, y, LR, torch)


def assert_sane_loss(loss, what=""):
    assert isinstance(loss, float), f"{what}: loss is {type(loss).__name__}, not float"
    # softmax cross-entropy over 10 classes starts near ln(10) = 2.30 and must stay finite
    assert math.isfinite(loss) and 0.0 <= loss < 50.0, f"{what}: loss {loss!r} is not sane"


def assert_finite(a: np.ndarray, what=""):
    assert np.isfinite(a).all(), f"{what}: non-finite values"


# ------------------------------------------------------------------------------ timing

def time_configs(names, systems=SYSTEMS, rounds=7, sample_s=0.02, warmup_s=0.1,
                 lead_in_s=0.05):
    """Build every system of every configuration in ``names`` and time all of them in one
    interleaved pool (time_interleaved: rotating rounds, an untimed lead-in before each
    sample).  Returns ``({config: {system: result}}, {config: Problem})``; each result is
    time_interleaved's dict (median, min, max, reps, samples; seconds per step)."""
    probs = {n: Problem(CONFIGS[n], systems) for n in names}
    fns = {(n, s): fn for n, p in probs.items() for s, fn in p.systems.items()}
    for (n, s), fn in fns.items():
        assert_sane_loss(fn(), f"{n}/{s}")
    res = time_interleaved({f"{n}|{s}": fn for (n, s), fn in fns.items()}, rounds, sample_s,
                           warmup_s, lead_in_s)
    out = {n: {} for n in names}
    for key, r in res.items():
        n, s = key.split("|")
        out[n][s] = r
    return out, probs


class WithSetting:
    """A step run after ``apply()``, which switches one of vgcore's settings: in an interleaved
    pool the first call of a sample is its untimed lead-in, so the switch never falls inside a
    timed sample."""

    def __init__(self, step, apply):
        self.step, self.apply = step, apply

    def __call__(self):
        self.apply()
        return self.step()


def settings_pool(config, settings, restore, rounds):
    """vgcore's step of ``config`` under each of ``settings`` ({name: apply}) and tuned NumPy's,
    timed in one interleaved pool (time_interleaved; keys ``vgcore-<name>`` and
    ``tuned-numpy``), then ``restore()``."""
    prob = Problem(CONFIGS[config], systems=("vgcore", "numpy"))
    fns = {f"vgcore-{name}": WithSetting(prob.systems["vgcore"], apply)
           for name, apply in settings.items()}
    fns["tuned-numpy"] = prob.systems["numpy"]
    try:
        return time_interleaved(fns, rounds, 0.25, 0.2)
    finally:
        restore()


# ------------------------------------------------------------------------------ the machine

def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else lscpu, else platform), with its family /
    model numbers and widest vector extension, and the number of logical CPUs."""
    name, fam, mod, flags = None, None, None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and name is None:
                    name = v
                elif k == "cpu family" and fam is None:
                    fam = v
                elif k == "model" and mod is None:
                    mod = v
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    if name is None:
        try:
            import subprocess
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            m = re.search(r"^Model name:\s*(.+)$", out, re.M)
            name = m.group(1).strip() if m else None
        except (OSError, subprocess.SubprocessError):
            pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else \
        "AVX" if "avx" in flags else None
    extra = [f"family {fam} model {mod}" if fam and mod else None, simd,
             f"{os.cpu_count()} logical CPUs"]
    return f"{name} ({', '.join(e for e in extra if e)})"


def blas_kernels() -> list:
    """Every loaded BLAS (threadpoolctl): who uses it, name, version, kernel, threads; and
    PyTorch's (MKL, built in) when torch is imported."""
    out = []
    infos = sorted(vg.blas_info(), key=lambda i: not i.get("vgcore"))
    for info in infos:
        path = info.get("filepath", "")
        pkg = BLAS_PACKAGES.get(info.get("package"), "")
        users = (["vgcore"] if info.get("vgcore") else []) + \
            (["NumPy, reference, tuned NumPy"] if info.get("package") == "numpy" else [])
        user = f"{', '.join(users)} ({pkg})" if users and pkg else \
            ", ".join(users) or (f"none of the systems ({pkg})" if pkg else "?")
        out.append(dict(used_by=user, name=info.get("internal_api"),
                        version=info.get("version"), architecture=info.get("architecture"),
                        threads=info.get("num_threads"),
                        threading_layer=info.get("threading_layer"),
                        file=os.path.basename(path)))
    torch = _torch_if_imported()
    if torch is not None:
        cfg = torch.__config__.show()
        m = re.search(r"Math Kernel Library Version ([\w.]+)", cfg)
        blas = re.search(r"BLAS_INFO=(\w+)", cfg)
        out.append(dict(used_by="PyTorch", name=(blas.group(1) if blas else "?"),
                        version=m.group(1) if m else None,
                        architecture=torch.backends.cpu.get_cpu_capability(),
                        threads=torch.get_num_threads(), threading_layer="openmp",
                        file="built into torch " + torch.__version__))
    return out


def blas_kernels_line() -> str:
    return "; ".join(f"{b['used_by']}: {b['name']} {b['version']} {b['architecture']} kernel, "
                     f"{b['threads']} threads" for b in blas_kernels()) or "none found"


def threads_line() -> str:
    torch = _torch_if_imported()
    t = f", PyTorch {torch.get_num_threads()}" if torch is not None else ""
    return (f"vgcore {vg.get_num_threads()} (OpenMP {'on' if vg.openmp_enabled() else 'off'}), "
            f"BLAS {', '.join(str(b.get('num_threads')) for b in vg.blas_info())}{t}")


def env_line() -> str:
    env = {k: os.environ[k] for k in sorted(os.environ)
           if k.startswith(("OPENBLAS_", "OMP_", "GOMP_", "MKL_", THREADS_ENV))}
    return ", ".join(f"{k}={v}" for k, v in env.items()) or "none"


def machine_info() -> dict:
    torch = _torch_if_imported()
    return dict(cpu=cpu_model(), blas=blas_kernels(), kernels=vg.kernel_info(),
                threads=vg.get_num_threads(),
                openmp=vg.openmp_enabled(), env=env_line(), vgcore=vg.__version__,
                numpy=np.__version__, python=platform.python_version(),
                torch=None if torch is None else torch.__version__)


def blas_summary() -> str:
    """Everything about the machine on one line (pytest header, reports)."""
    return (f"CPU: {cpu_model()}. BLAS: {blas_kernels_line()}. Threads: {threads_line()}. "
            f"Env: {env_line()}.")


# ------------------------------------------------------------------------------ GEMM baseline

class GemmBaseline:
    """The matrix products of one train step, alone, on preallocated float32 arrays.

    Per layer ``l`` (input ``x`` of shape (b, fin), ``W`` (fin, fout), ``delta`` (b, fout)):
    ``h = x @ W``, ``dW = x.T @ delta`` and, except for the first layer, ``dx = delta @ W.T``.

    ``backend="vgcore"`` calls the BLAS that computes vgcore's own products (``vg.use_blas``:
    NumPy's OpenBLAS or SciPy's; ``vgcore._engine.blas_product``) on transposed
    (Fortran-ordered) views of the C-ordered arrays, writing into the output in place (no
    copies); ``backend="numpy"`` uses ``numpy.matmul(..., out=)`` (NumPy's own BLAS, the one
    the reference and tuned NumPy use).
    """

    def __init__(self, cfg: Config, backend: str = "vgcore", seed: int = 2):
        if backend not in ("vgcore", "numpy"):
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
        self.run = self._run_vgcore if backend == "vgcore" else self._run_numpy

    def _run_vgcore(self):
        g = _engine.blas_product
        for L in self.layers:
            x, W, d = L["x"], L["W"], L["delta"]
            # row-major C = A @ B is column-major C.T = B.T @ A.T; every .T below is F-ordered
            g("NN", W.T, x.T, L["h"].T)                       # h = x @ W
            g("NT", d.T, x.T, L["dW"].T)                      # dW = x.T @ d
            if L["dx"] is not None:
                g("TN", W.T, d.T, L["dx"].T)                  # dx = d @ W.T

    def _run_numpy(self):
        mm = np.matmul
        for L in self.layers:
            x, W, d = L["x"], L["W"], L["delta"]
            mm(x, W, out=L["h"])
            mm(x.T, d, out=L["dW"])
            if L["dx"] is not None:
                mm(d, W.T, out=L["dx"])

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


# configurations whose vgcore-vs-reference agreement was already checked in this process
CHECKED: set = set()

# results collected by the pytest suite for the GFLOP/s summary printed by conftest
RESULTS: list = []


def record(benchmark, config: str, impl: str, flops: int, **interleaved) -> None:
    """Put the flop count (and, when timed, the achieved GFLOP/s) in benchmark.extra_info, and
    keep the row for the summary conftest prints (with the interleaved figures, if any)."""
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["config"] = config
    benchmark.extra_info["impl"] = impl
    stats = getattr(benchmark, "stats", None)
    if stats:                                     # None / empty under --benchmark-disable
        median = stats.stats.median
        gflops = flops / median / 1e9
        benchmark.extra_info["gflops_median"] = round(gflops, 2)
        RESULTS.append(dict(config=config, impl=impl, median_ms=median * 1e3, gflops=gflops,
                            **interleaved))

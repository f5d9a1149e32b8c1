"""vgcore's training step on the configurations whose products go to the BLAS (wide,
huge-batch), once per OpenBLAS vgcore can compute them with (``vg.use_blas``: NumPy's own and
SciPy's), grouped by configuration beside test_train_step's systems.

The ratio each test records (``extra_info["scipy_over_this"]``) comes from both libraries timed
in one interleaved pool in this run; the library is switched (with its thread-count probe,
~5 ms) in the untimed lead-in before each sample, never inside one.  Tuned NumPy is in the same
pool, so ``tuned_numpy_over_this`` is side by side too.  Smoke mode runs each step once.
"""
import pytest

import _bench_common as bc
from vgcore import _engine

LIBRARIES = sorted(_engine.blas_products()["available"])
POOL_ROUNDS = 5
_POOLS = {}


def _use(library):
    """Switch vgcore's products to ``library``, only when needed."""
    def apply():
        if _engine.blas_products()["library"] != library:
            bc.vg.use_blas(library)
    return apply


def interleaved(config):
    if config not in _POOLS:
        before = _engine.blas_products()["library"]
        _POOLS[config] = bc.settings_pool(config, {lib: _use(lib) for lib in LIBRARIES},
                                          lambda: bc.vg.use_blas(before), POOL_ROUNDS)
    return _POOLS[config]


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("config", bc.GEMM_CONFIGS)
def test_vgcore_step_per_blas_library(benchmark, config, library):
    cfg = bc.CONFIGS[config]
    before = _engine.blas_products()["library"]
    bc.vg.use_blas(library)
    try:
        prob = bc.Problem(cfg, systems=("vgcore",))
        step = prob.systems["vgcore"]
        if benchmark.enabled:
            bc.lead_in(step)
        benchmark.group = config
        benchmark.extra_info.update(
            system=f"vgcore, {library}'s OpenBLAS", shape=cfg.shape, batch=cfg.batch,
            threads=bc.vg.get_num_threads(), cpu=bc.cpu_model(), blas=bc.blas_kernels())
        loss = benchmark(step)
    finally:
        bc.vg.use_blas(before)
    bc.assert_sane_loss(loss, f"{config}/vgcore with {library}'s BLAS")
    if benchmark.enabled:
        pool = interleaved(config)
        info = benchmark.extra_info
        mine = pool[f"vgcore-{library}"]["median"]
        info["interleaved_ms"] = round(mine * 1e3, 4)
        info["tuned_numpy_over_this"] = round(pool["tuned-numpy"]["median"] / mine, 3)
        if "vgcore-scipy" in pool:
            info["scipy_over_this"] = round(pool["vgcore-scipy"]["median"] / mine, 3)

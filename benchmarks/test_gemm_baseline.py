"""The matrix products of a train step with plain BLAS alone (no bias, activation, loss or
update), for the configurations where GEMMs dominate: the rate vgcore's full step should
approach.  Same flop count as test_train_step (extra_info["flops"]), same groups.

``vgcore`` is the BLAS vgcore itself calls for these products (``vgcore.use_blas``: NumPy's
OpenBLAS or SciPy's), called straight; ``numpy`` is numpy.matmul(out=), NumPy's BLAS, which the
reference and tuned NumPy use."""
import pytest

import _bench_common as bc
from vgcore import _engine


@pytest.mark.parametrize("backend", ["vgcore", "numpy"])
@pytest.mark.parametrize("config", bc.GEMM_CONFIGS)
def test_gemm_baseline(benchmark, config, backend):
    cfg = bc.CONFIGS[config]
    base = bc.GemmBaseline(cfg, backend)
    if benchmark.enabled:
        bc.lead_in(base.run)         # untimed warm-up (see bc.lead_in)

    benchmark.group = config
    benchmark.extra_info.update(shape=cfg.shape, batch=cfg.batch,
                                blas=(f"vgcore's BLAS ({_engine.blas_products()['library']}"
                                      "'s OpenBLAS)" if backend == "vgcore"
                                      else "numpy.matmul(out=)"))
    benchmark(base.run)

    base.check(run=False)            # every product of the last run equals NumPy's
    bc.record(benchmark, config, f"gemm-{backend}", base.flops)

"""vgcore's training step on the tanh and sigmoid configurations (deep-narrow, deep-narrow-2,
the vanishing stack) with float32 tanh and sigmoid computed each way
(``vg.set_kernels(activations=...)``): with fused multiply-adds (the default where the CPU
has them) and separately rounded, grouped by configuration beside test_train_step's systems.

The ratio each test records (``extra_info["plain_over_this"]``) comes from both kinds timed in
one interleaved pool in this run, with tuned NumPy in the same pool
(``tuned_numpy_over_this``); the kind is switched (one store) before each sample's untimed
lead-in, never inside one.  On a CPU without FMA only "plain" runs.  Smoke mode runs each step
once.
"""
import pytest

import _bench_common as bc
from vgcore import _engine

KINDS = ["plain", "fma"] if _engine.act_kernel_info()["best"] == "fma" else ["plain"]
CONFIGS = ("deep-narrow", "deep-narrow-2", "vanishing")
POOL_ROUNDS = 7
_POOLS = {}


def interleaved(config):
    if config not in _POOLS:
        _POOLS[config] = bc.settings_pool(
            config, {k: lambda k=k: bc.vg.set_kernels(activations=k) for k in KINDS},
            lambda: bc.vg.set_kernels(activations="best"), POOL_ROUNDS)
    return _POOLS[config]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_vgcore_step_per_activation_kind(benchmark, config, kind):
    cfg = bc.CONFIGS[config]
    bc.vg.set_kernels(activations=kind)
    try:
        prob = bc.Problem(cfg, systems=("vgcore",))
        step = prob.systems["vgcore"]
        if benchmark.enabled:
            bc.lead_in(step)
        benchmark.group = config
        benchmark.extra_info.update(
            system=f"vgcore, tanh and sigmoid {kind}", shape=cfg.shape, batch=cfg.batch,
            threads=bc.vg.get_num_threads(), cpu=bc.cpu_model(), blas=bc.blas_kernels())
        loss = benchmark(step)
    finally:
        bc.vg.set_kernels(activations="best")
    bc.assert_sane_loss(loss, f"{config}/vgcore with tanh and sigmoid {kind}")
    if benchmark.enabled:
        pool = interleaved(config)
        info = benchmark.extra_info
        mine = pool[f"vgcore-{kind}"]["median"]
        info["interleaved_ms"] = round(mine * 1e3, 4)
        info["tuned_numpy_over_this"] = round(pool["tuned-numpy"]["median"] / mine, 3)
        info["plain_over_this"] = round(pool["vgcore-plain"]["median"] / mine, 3)

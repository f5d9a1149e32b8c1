"""One training step (forward, softmax cross-entropy, backward, SGD lr 0.01, float32) of every
system -- tuned NumPy, vgcore.reference, PyTorch eager, vgcore -- grouped by configuration so
pytest-benchmark's table puts them side by side.

pytest-benchmark times each system in its own test; the ratio against tuned NumPy that each
test records in ``extra_info`` comes instead from all systems of the configuration timed in
one interleaved pool in this run (bc.time_configs; the vanishing configuration and its
relu / He twin share one pool, so their ratio is side by side too).  ``extra_info`` also holds
the CPU model, the BLAS kernels and the thread count.  Correctness of every system is checked
in test_baselines.py; the GEMM-only baseline of the wide configurations is in
test_gemm_baseline.py, in the same groups.

Smoke mode (``--benchmark-disable``) runs each step once and skips the interleaved pool.
"""
import pytest

import _bench_common as bc

POOL_ROUNDS = 5
_POOLS = {}
bc.get_torch()       # imported once, its threads set to vgcore's, before any extra_info is read


def interleaved(config):
    """{config: {system: time_interleaved result}} for the pool that holds ``config``."""
    names = tuple(sorted({config, bc.TWINS.get(config, config)}))
    if names not in _POOLS:
        _POOLS[names] = bc.time_configs(names, rounds=POOL_ROUNDS)[0]
    return _POOLS[names]


@pytest.mark.parametrize("system", bc.SYSTEMS)
@pytest.mark.parametrize("config", list(bc.CONFIGS))
def test_train_step(benchmark, config, system):
    cfg = bc.CONFIGS[config]
    prob = bc.Problem(cfg, systems=(system,))
    if system not in prob.systems:
        pytest.skip(f"PyTorch: {prob.skipped[system]}")
    step = prob.systems[system]
    if benchmark.enabled:
        bc.lead_in(step)             # untimed warm-up (see bc.lead_in)

    benchmark.group = config
    benchmark.extra_info.update(
        system=bc.LABELS[system], shape=cfg.shape, batch=cfg.batch, activation=cfg.activation,
        init=cfg.init, threads=bc.vg.get_num_threads(), cpu=bc.cpu_model(),
        blas=bc.blas_kernels())
    loss = benchmark(step)           # returns the loss of one more step after the timed ones

    bc.assert_sane_loss(loss, f"{config}/{system}")
    if benchmark.enabled:
        pool = interleaved(config)
        res = pool[config]
        info = benchmark.extra_info
        info["interleaved_ms"] = round(res[system]["median"] * 1e3, 4)
        info["interleaved_rounds"] = POOL_ROUNDS
        info["tuned_numpy_over_this"] = round(res["numpy"]["median"] / res[system]["median"], 3)
        if system == "vgcore":
            if "torch" in res:
                info["pytorch_over_vgcore"] = round(res["torch"]["median"] /
                                                    res["vgcore"]["median"], 3)
            for against in ("numpy", "torch"):
                t = bc.target(config, bc.vg.get_num_threads(), against)
                if t is not None:
                    info[f"target_{against}_over_vgcore"] = t
        twin = bc.TWINS.get(config)
        if config == "vanishing" and twin in pool:
            info["over_relu_he_same_shapes"] = round(
                res[system]["median"] / pool[twin][system]["median"], 3)
            info["target_over_relu_he"] = bc.VANISHING_MAX
        bc.record(benchmark, config, system, prob.flops,
                  interleaved_ms=info["interleaved_ms"], vs_numpy=info["tuned_numpy_over_this"])
    else:
        bc.record(benchmark, config, system, prob.flops)

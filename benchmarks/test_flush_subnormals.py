"""Flushing subnormals on and off, side by side, on issue #11's vanishing configuration (60
sigmoid layers of 96, batch 64, standard init, float32: the error decays through the float32
subnormal range) and on its relu / He twin (no subnormals: flushing should cost nothing there).

One pytest-benchmark group per configuration, ``flush_subnormals=True`` (the default) and
``False`` in it.  ``extra_info`` holds the CPU model (the effect is a property of the CPU:
Intel cores take microcode assists on subnormal operands and results, issue #11 measured 9x on
a Xeon; AMD Zen does not), the BLAS kernels, the thread count, and ``off_over_on``: the step
time without flushing over the time with it, both timed in one interleaved pool in this run.

    pytest benchmarks/test_flush_subnormals.py
"""
import pytest

import _bench_common as bc

POOL_ROUNDS = 7
_POOLS = {}


def _step(config, flush):
    cfg = bc.CONFIGS[config]
    net = bc.make_net(cfg)
    net.flush_subnormals = flush
    X, y = bc.make_data(cfg)
    opt = bc.vg.optim.SGD(net, lr=bc.LR)
    return lambda: net.train_step(X, y, "cross_entropy", opt)


def interleaved(config):
    """{flush: time_interleaved result} for ``config``, both settings in one pool."""
    if config not in _POOLS:
        fns = {str(flush): _step(config, flush) for flush in (True, False)}
        _POOLS[config] = bc.time_interleaved(fns, POOL_ROUNDS, 0.02, 0.1, 0.05)
    return _POOLS[config]


@pytest.mark.parametrize("flush", [True, False], ids=["flush-on", "flush-off"])
@pytest.mark.parametrize("config", ["vanishing", "vanishing-relu"])
def test_train_step_flush_subnormals(benchmark, config, flush):
    cfg = bc.CONFIGS[config]
    step = _step(config, flush)
    if benchmark.enabled:
        bc.lead_in(step)
    benchmark.group = f"{config} flush_subnormals"
    benchmark.extra_info.update(
        system="vgcore", flush_subnormals=flush, shape=cfg.shape, batch=cfg.batch,
        activation=cfg.activation, init=cfg.init, threads=bc.vg.get_num_threads(),
        cpu=bc.cpu_model(), blas=bc.blas_kernels())
    loss = benchmark(step)
    bc.assert_sane_loss(loss, f"{config}/flush={flush}")
    if benchmark.enabled:
        pool = interleaved(config)
        benchmark.extra_info["interleaved_ms"] = round(pool[str(flush)]["median"] * 1e3, 4)
        benchmark.extra_info["off_over_on"] = round(pool["False"]["median"]
                                                    / pool["True"]["median"], 3)

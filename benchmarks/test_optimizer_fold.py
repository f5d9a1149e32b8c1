"""The optimiser's step folded into ``net.train_step(X, y, loss, optimizer)`` (batch-chunked
networks: each thread adds up a layer's gradients and steps it inside the compiled call)
against the same step as a separate call after the pass (``net.train_step(X, y, loss)`` then
``optimizer.step()``), side by side per configuration and optimiser.  Both give the same
parameters bit for bit (tests/test_batch_chunks.py); ``python benchmarks/optimizer_fold.py``
prints the ratios, timed in interleaved rounds."""
import numpy as np
import pytest

import _bench_common as bc
import vgcore as vg

CONFIGS = ["deep-narrow", "medium", "vanishing"]
OPTIMIZERS = {"sgd": lambda net: vg.optim.SGD(net, lr=bc.LR),
              "adam": lambda net: vg.optim.Adam(net, lr=1e-4)}


def make(cfg, how, optimizer):
    """One train step with the optimiser ``optimizer`` (a name of OPTIMIZERS), folded into the
    call (``how == "folded"``) or as a separate call (``"separate"``)."""
    net = vg.MLP(cfg.sizes, activation=cfg.activation, init=cfg.init, dtype="float32", seed=0)
    opt = OPTIMIZERS[optimizer](net)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((cfg.batch, cfg.width), dtype=np.float32)
    y = rng.integers(0, bc.N_OUT, cfg.batch)
    if how == "folded":
        def step():
            return net.train_step(X, y, bc.LOSS, opt)
    else:
        def step():
            loss = net.train_step(X, y, bc.LOSS)
            opt.step()
            return loss
    return step


@pytest.mark.parametrize("how", ["separate", "folded"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("config", CONFIGS)
def test_train_step_with_optimizer(benchmark, config, optimizer, how):
    cfg = bc.CONFIGS[config]
    step = make(cfg, how, optimizer)
    benchmark.group = f"optimizer-{config}-{optimizer}"
    loss = benchmark(step)
    bc.assert_sane_loss(float(loss), f"{config}/{optimizer}/{how}")

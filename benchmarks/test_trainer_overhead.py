"""What the trainer adds over the bare train step: one epoch through ``vg.fit`` (shuffling,
gathering each batch, running metrics, history) against the same number of bare
``net.train_step`` calls on batches prepared beforehand, side by side per configuration.
The issue's bound is < 5%; ``python benchmarks/trainer_overhead.py`` prints the ratios."""
import numpy as np
import pytest

import _bench_common as bc
import vgcore as vg

CONFIGS = ["deep-narrow", "medium"]
N_SAMPLES = 4096


def make(cfg, how, n_samples=N_SAMPLES):
    net = vg.MLP(cfg.sizes, activation=cfg.activation, init=cfg.init, dtype="float32", seed=0)
    opt = vg.optim.SGD(net, lr=bc.LR)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, cfg.width), dtype=np.float32)
    y = rng.integers(0, bc.N_OUT, n_samples)
    if how == "trainer":
        def epoch():
            return vg.fit(net, X, y, optimizer=opt, epochs=1, batch_size=cfg.batch, seed=0,
                          verbose=0).as_dict()["loss"][-1]
    else:
        batches = [(np.ascontiguousarray(X[i:i + cfg.batch]), y[i:i + cfg.batch])
                   for i in range(0, n_samples, cfg.batch)]

        def epoch():
            losses = [net.train_step(xb, yb, bc.LOSS, opt) for xb, yb in batches]
            return float(np.mean(losses))
    return epoch


@pytest.mark.parametrize("how", ["bare", "trainer"])
@pytest.mark.parametrize("config", CONFIGS)
def test_one_epoch(benchmark, config, how):
    cfg = bc.CONFIGS[config]
    # smoke mode (--benchmark-disable): four batches, enough to run every line once
    epoch = make(cfg, how, N_SAMPLES if benchmark.enabled else 4 * cfg.batch)
    benchmark.group = f"epoch-{config}"
    loss = benchmark(epoch)
    bc.assert_sane_loss(float(loss), f"{config}/{how}")

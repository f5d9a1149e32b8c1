"""The cost of measuring the gradient flow at every step: the same train step (forward, softmax
cross-entropy, backward, SGD) with ``net.measure`` on and off, side by side per configuration.
The issue's bound is on <= 1.05 x off (goal 1.02) on deep-narrow and medium; the numbers for
README come from ``python benchmarks/measurement_cost.py``, which interleaves the two in one
process."""
import numpy as np
import pytest

import _bench_common as bc
import vgcore as vg

CONFIGS = ["deep-narrow", "deep-narrow-2", "medium"]


def make_step(cfg, measure):
    net = vg.MLP(cfg.sizes, activation=cfg.activation, init=cfg.init, dtype="float32", seed=0,
                 measure=measure)
    opt = vg.optim.SGD(net, lr=bc.LR)
    X, y = bc.make_data(cfg)

    def step():
        return net.train_step(X, y, bc.LOSS, opt)
    return net, step


@pytest.mark.parametrize("measure", [False, True], ids=["off", "on"])
@pytest.mark.parametrize("config", CONFIGS)
def test_train_step_with_measurements(benchmark, config, measure):
    cfg = bc.CONFIGS[config]
    net, step = make_step(cfg, measure)
    if benchmark.enabled:
        bc.lead_in(step)
    benchmark.group = f"measure-{config}"
    benchmark.extra_info.update(measure=measure)
    loss = benchmark(step)
    bc.assert_sane_loss(loss, f"{config}/measure={measure}")
    if measure:
        flow = net.gradient_flow()            # the step's measurements are all there
        assert flow.grad_norm.shape == (net.n_layers,)
        assert np.isfinite(flow.grad_norm).all() and np.isfinite(flow.update_to_weight).all()
    else:
        with pytest.raises(RuntimeError, match="measure"):
            net.gradient_flow()

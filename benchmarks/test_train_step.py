"""One training step (forward, softmax cross-entropy, backward without input gradient, SGD)
of vgcore against its NumPy reference, grouped by configuration so pytest-benchmark prints the
two side by side.  The GEMM-only baseline of the wide configurations is in
test_gemm_baseline.py, in the same groups."""
import pytest

import _bench_common as bc

IMPLS = ["vgcore", "reference"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", list(bc.CONFIGS))
def test_train_step(benchmark, config, impl):
    cfg = bc.CONFIGS[config]
    prob = bc.Problem(cfg)
    step = prob.step(impl)
    if config not in bc.CHECKED:
        prob.check()                 # vgcore == reference on step 1 (loss and updated params)
        bc.CHECKED.add(config)
    if benchmark.enabled:
        bc.lead_in(step)             # untimed warm-up (see bc.lead_in)

    benchmark.group = config
    benchmark.extra_info.update(shape=cfg.shape, batch=cfg.batch, activation=cfg.activation,
                                target_ratio=cfg.target)
    loss = benchmark(step)           # returns the loss of one more step after the timed ones

    bc.assert_sane_loss(loss, f"{config}/{impl}")
    bc.assert_finite(prob.params(impl), f"{config}/{impl} parameters")
    bc.record(benchmark, config, impl, prob.flops)

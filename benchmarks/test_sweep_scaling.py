"""A sweep of small training runs on 1 and on 2 local processes (the ``processes`` executor,
each run single-threaded), wall time of the whole ``vg.sweep.run`` call: pool start-up,
every run, the journal and the tables.  The speedup is the 1-process median over the
2-process median; ``python benchmarks/sweep_scaling.py`` measures both interleaved in one
process and prints it.

In smoke mode (``--benchmark-disable``) a 4-run sweep of 20-step runs is run once per
worker count, checking that both give the same results."""
import pytest

import vgcore as vg

RUNS = 40                # runs of the measured sweep
STEPS = 400              # steps per run: ~0.3 s on one core (20 tanh layers of 64, batch 64)


def make_sweep(runs=RUNS, steps=STEPS):
    return vg.sweep.Sweep(base={"depth": 20, "width": 64, "activation": "tanh",
                                "init": "glorot_uniform", "steps": steps, "batch_size": 64,
                                "records": 8, "n_samples": 2048},
                          grid={"seed": list(range(runs))}, name="scaling")


def run_once(sweep, out, workers):
    return vg.sweep.run(sweep, out, executor="processes", workers=workers, plots=False,
                        progress=False, resume=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_processes(benchmark, tmp_path, workers):
    smoke = benchmark.disabled
    sweep = make_sweep(4, 20) if smoke else make_sweep()
    benchmark.group = "sweep-processes"
    benchmark.extra_info["runs"] = len(sweep)
    result = benchmark.pedantic(run_once, args=(sweep, tmp_path / "out", workers), rounds=1
                                if smoke else 3, iterations=1, warmup_rounds=0)
    assert result.count("ok") == len(sweep)
    serial = vg.sweep.run(sweep, tmp_path / "serial", executor="serial", plots=False) \
        if smoke else None
    if serial is not None:
        strip = ("seconds", "worker")
        assert [{k: v for k, v in r.items() if k not in strip} for r in result.rows] == \
            [{k: v for k, v in r.items() if k not in strip} for r in serial.rows]

#!/usr/bin/env python
"""Speedup of a sweep of small runs from 1 to 2 local processes, interleaved rounds in one
process: python benchmarks/sweep_scaling.py [--rounds N] [--runs N] [--steps N]

Each round runs the same sweep (RUNS runs of STEPS steps, each single-threaded) with the
``processes`` executor on 1 worker, then on 2 (the order alternates between rounds); the time
is the whole ``vg.sweep.run`` call, pool start-up included.  Prints the median wall time per
worker count, the speedup (1-worker median / 2-worker median), the steady-state throughput
(runs finished per second once every worker has delivered its first run: what a long sweep
sees, without the workers' start-up of about half a second, spent importing NumPy, SciPy and
vgcore), the serial executor's median for reference (this process, no pool), and which BLAS
kernel ran."""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vgcore as vg  # noqa: E402
from test_sweep_scaling import RUNS, STEPS, make_sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args(argv)
    sweep = make_sweep(args.runs, args.steps)
    kernels = ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}"
                        for b in vg.blas_info())
    print(f"BLAS: {kernels}; cores available: {len(os.sched_getaffinity(0))}")
    print(f"sweep: {len(sweep)} runs x {args.steps} steps (20 tanh layers of 64, batch 64), "
          f"{args.rounds} rounds")
    times = {"serial": [], 1: [], 2: []}
    steady = {1: [], 2: []}
    base = tempfile.mkdtemp(prefix="vgcore-sweep-bench-")
    try:
        for r in range(args.rounds):
            order = ["serial", 1, 2] if r % 2 == 0 else [2, 1, "serial"]
            for how in order:
                out = os.path.join(base, f"{how}-{r}")
                finished = []
                t0 = time.perf_counter()
                if how == "serial":
                    res = vg.sweep.run(sweep, out, executor="serial", plots=False)
                else:
                    res = vg.sweep.run(sweep, out, executor="processes", workers=how,
                                       plots=False,
                                       on_result=lambda row: finished.append(time.perf_counter()))
                times[how].append(time.perf_counter() - t0)
                if how != "serial":      # runs per second after the first `how` results
                    steady[how].append((len(finished) - how) /
                                       (finished[-1] - finished[how - 1]))
                assert res.count("ok") == len(sweep)
                shutil.rmtree(out)
            print(f"round {r + 1}: " + ", ".join(f"{k}: {v[-1]:.2f} s" for k, v in
                                                  times.items()), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    thr = {k: statistics.median(v) for k, v in steady.items()}
    print("| executor | workers | median s | runs/s | speedup over 1 process | steady-state "
          "runs/s | steady-state speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| serial (this process) | 1 | {med['serial']:.2f} | "
          f"{len(sweep) / med['serial']:.2f} | | | |")
    for w in (1, 2):
        print(f"| processes | {w} | {med[w]:.2f} | {len(sweep) / med[w]:.2f} | "
              f"{med[1] / med[w]:.2f} | {thr[w]:.2f} | {thr[w] / thr[1]:.2f} |")


if __name__ == "__main__":
    main()

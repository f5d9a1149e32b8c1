#!/usr/bin/env python
"""What measuring the gradient flow at every step costs: a train step with ``net.measure`` on
against the same step with it off, timed side by side in interleaved rounds in one process.

    python benchmarks/measurement_cost.py [--rounds N] [--configs NAME ...] [--threads N]
                                          [--reading-configs NAME ...]

With measurements on, every step computes, per layer, the sums behind every field of
vgcore.flow (delta, gradient, weight and update norms, pre-activation and activation
statistics, saturated, zero-derivative and dead units, per-sample norms) inside the compiled
passes.

The second table is the cost of reading them at every step (issue #11: <= 2% of a deep-narrow
step): the measured step alone, then followed by ``net.gradient_flow()``, by a flow and two of
its fields (``grad_ratio``, ``grad_norm``), and by a Recorder's capture (``rec.record(net)``, a
row every step), each on an identical network, interleaved in one pool; then the same on the
calling thread's CPU clock, which other processes on the cores disturb far less than wall time,
on one thread (see test_measurement_cost.reading_cpu_cost): step + read against the step alone,
so that what a read leaves to the next step counts too, and the read alone; and last the
same on one network whose every iteration draws its read at random (``--random-steps``
iterations, wall time, at the current thread count and at one thread: see
test_measurement_cost.reading_random_cost), which cancels the machine's slow periods out of
the differences and gives each cost a standard error.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench_common as bc  # noqa: E402
import vgcore as vg  # noqa: E402
from report import time_interleaved  # noqa: E402
from test_measurement_cost import (make_step, reading_cpu_cost, reading_pool,  # noqa: E402
                                   reading_random_cost)

# the reads of the reading tables, as they are labelled there
READ_LABELS = (("gradient_flow", "gradient_flow()"),
               ("flow_fields", "gradient_flow(), grad_ratio, grad_norm"),
               ("recorder", "a recorder row"))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--sample-ms", type=float, default=25.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--configs", nargs="*", choices=list(bc.CONFIGS),
                    default=["deep-narrow", "deep-narrow-2", "medium"])
    ap.add_argument("--reading-configs", nargs="*", choices=list(bc.CONFIGS),
                    default=["deep-narrow"], help="configurations of the reading table "
                    "(default deep-narrow; none to skip it)")
    ap.add_argument("--random-steps", type=int, default=20000,
                    help="iterations of the randomised reading estimate (0 to skip it)")
    args = ap.parse_args(argv)
    if args.threads:
        vg.set_num_threads(args.threads)
    if args.configs:
        print("| config | layers x width | batch | act | off ms | on ms | on / off |")
        print("|---|---|---:|---|---:|---:|---:|")
    for name in args.configs:
        cfg = bc.CONFIGS[name]
        _, off = make_step(cfg, False)
        _, on = make_step(cfg, True)
        t = time_interleaved({"off": off, "on": on}, args.rounds, args.sample_ms / 1e3, 0.2,
                             lead_in_s=0.05)
        a, b = t["off"]["median"], t["on"]["median"]
        print(f"| {name} | {cfg.shape} | {cfg.batch} | {cfg.activation} | {a * 1e3:.3f} | "
              f"{b * 1e3:.3f} | {b / a:.3f} |", flush=True)
    if args.reading_configs:
        print("\nWall time, the step alone and followed by each read, interleaved:\n")
        print("| config | step ms | + gradient_flow() ms | ratio | + flow, 2 fields ms | ratio | "
              "+ recorder ms | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.reading_configs:
        t = reading_pool(bc.CONFIGS[name], args.rounds, args.sample_ms / 1e3)
        a, f, ff, r = (t[k]["median"] for k in ("step", "gradient_flow", "flow_fields",
                                                "recorder"))
        print(f"| {name} | {a * 1e3:.3f} | {f * 1e3:.3f} | {f / a:.3f} | {ff * 1e3:.3f} | "
              f"{ff / a:.3f} | {r * 1e3:.3f} | {r / a:.3f} |", flush=True)
    if args.reading_configs:
        print("\nOn one thread and its CPU clock: step + read against the step alone, one "
              "network, in alternating blocks (medians of per-round means; 'control' reads "
              "nothing: the noise between blocks; 'alone': the read's own time, less the "
              "clock's):\n")
        print("| config | step CPU ms | control | read | step + read over the step, us | / step "
              "| the read alone, us |")
        print("|---|---:|---:|---|---:|---:|---:|")
    for name in args.reading_configs:
        c = reading_cpu_cost(bc.CONFIGS[name], args.rounds)
        a = c["step"]
        clock = c["step_alone"]             # two clock readings around no read
        for k, what in READ_LABELS:
            f = c[k] - a
            print(f"| {name} | {a * 1e3:.3f} | {c['control'] / a - 1:+.2%} | {what} | "
                  f"{f * 1e6:.1f} | {f / a:.2%} | {(c[k + '_alone'] - clock) * 1e6:.1f} |",
                  flush=True)
    if args.reading_configs and args.random_steps:
        print(f"\nRandomised: {args.random_steps} iterations of one network, each drawing its "
              "read (none, or one of the three) at random; cost = what the read adds to its "
              "own iteration and to the next one, +- one standard error (wall time, the "
              "slowest 1% of each group dropped, a rolling median taken out; the error from batch "
              "means):\n")
        print("| config | threads | step ms | read | cost, us | / step | the read alone, us |")
        print("|---|---:|---:|---|---:|---:|---:|")
    for name in args.reading_configs if args.random_steps else ():
        for th in dict.fromkeys([vg.get_num_threads(), 1]):
            c = reading_random_cost(bc.CONFIGS[name], args.random_steps, threads=th)
            a = c["step"]
            for k, what in READ_LABELS:
                r = c[k]
                print(f"| {name} | {th} | {a * 1e3:.3f} | {what} | {r['cost'] * 1e6:.1f} +- "
                      f"{r['se'] * 1e6:.1f} | {r['cost'] / a:.2%} | {r['own'] * 1e6:.1f} |",
                      flush=True)
    print(f"\n{bc.blas_summary()}")


if __name__ == "__main__":
    main()

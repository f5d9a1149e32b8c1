#!/usr/bin/env python
"""What computing float32 tanh and sigmoid with fused multiply-adds gains: vgcore's train step
and forward pass with ``vg.set_kernels(activations="plain")`` against ``"fma"``, paired.

    python benchmarks/activation_kinds.py [--configs NAME ...] [--threads N [N ...]]
                                          [--pairs N] [--calls N]

For each configuration (default: the tanh and sigmoid ones, deep-narrow, deep-narrow-2 and
the vanishing stack) and thread count, one network runs --pairs pairs of samples; a sample is
three untimed calls and then --calls timed ones, with the kind switched before it, and the
two kinds alternate which goes first.  The ratio of each pair (plain time / fma time) is taken
within a few milliseconds, so the slow periods of a shared VM, which last far longer, fall on
both halves of a pair alike; the report gives the median ratio and a bootstrap 95% interval.
Above 1: the fused form is faster.  Needs a CPU with FMA.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _bench_common as bc  # noqa: E402

perf = time.perf_counter


def paired(fn, pairs, calls):
    """plain time / fma time of each pair of samples of ``fn``."""
    ratios = []
    for i in range(pairs):
        t = {}
        for kind in (("fma", "plain") if i % 2 else ("plain", "fma")):
            bc.vg.set_kernels(activations=kind)
            for _ in range(3):
                fn()
            t0 = perf()
            for _ in range(calls):
                fn()
            t[kind] = perf() - t0
        ratios.append(t["plain"] / t["fma"])
    return np.array(ratios)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["deep-narrow", "deep-narrow-2", "vanishing"],
                    choices=sorted(bc.CONFIGS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--calls", type=int, default=8)
    a = ap.parse_args(argv)
    if bc.vg.kernel_info()["activations"]["best"] != "fma":
        sys.exit("activation_kinds: this CPU (or this build) has no fused multiply-add form "
                 "to compare")
    print(f"CPU: {bc.cpu_model()}\nBLAS: {bc.blas_kernels_line()}")
    print(f"{'threads':>7}  {'config':14} {'what':8} {'plain / fma':>11}  95% interval")
    rng = np.random.default_rng(0)
    try:
        for threads in a.threads:
            bc.set_threads(threads)
            for name in a.configs:
                prob = bc.Problem(bc.CONFIGS[name], systems=("vgcore",))
                net, X = prob.net, prob.X
                for what, fn in (("step", prob.systems["vgcore"]),
                                 ("forward", lambda net=net, X=X: net.forward(X))):
                    r = paired(fn, a.pairs, a.calls)
                    boot = [np.median(rng.choice(r, r.size)) for _ in range(400)]
                    lo, hi = np.percentile(boot, [2.5, 97.5])
                    print(f"{threads:>7}  {name:14} {what:8} {np.median(r):>11.3f}  "
                          f"{lo:.3f}-{hi:.3f}", flush=True)
    finally:
        bc.vg.set_kernels(activations="best")


if __name__ == "__main__":
    main()

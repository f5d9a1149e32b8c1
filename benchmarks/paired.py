#!/usr/bin/env python
"""One of vgcore's kernel settings against its alternative, in paired samples: the train step
and the forward pass with each value of ``vg.set_kernels(SETTING=...)``.

    python benchmarks/paired.py [--setting activations|batch_chunks] [--configs NAME ...]
                                [--threads N [N ...]] [--pairs N] [--calls N] [--lead-in-ms MS]

``--setting activations`` (the default): float32 tanh and sigmoid computed separately rounded
("plain") against fused multiply-adds ("fma"; needs a CPU with FMA); default configurations:
the tanh and sigmoid ones, deep-narrow, deep-narrow-2 and the vanishing stack.
``--setting batch_chunks``: narrow networks' passes in batch chunks (on) against unchunked
(off); default configurations deep-narrow, medium and the vanishing stack.

For each configuration and thread count, one network runs --pairs pairs of samples; a sample
is an untimed lead-in (three calls, or --lead-in-ms of calls: give 250 or so when the two
values use different thread pools, as batch chunks at 2 threads do against BLAS's, so that the
other pool's spinning workers have stopped) and then --calls timed calls, with the setting
switched before it; the two values alternate which goes first.  The ratio of each pair (first
value's time / second's: plain / fma, on / off) is taken within milliseconds, so the slow
periods of a shared VM, which last far longer, fall on both halves of a pair alike.  The report
gives the median ratio and a bootstrap 95% interval; above 1, the second value is faster.
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
SETTINGS = {    # values compared (first / second) and the configurations run by default
    "activations": (("plain", "fma"), ["deep-narrow", "deep-narrow-2", "vanishing"]),
    "batch_chunks": ((True, False), ["deep-narrow", "medium", "vanishing"]),
}


def _label(value):
    return {True: "on", False: "off"}.get(value, value)


def paired(fn, setting, values, pairs, calls, lead_in_s=0.0):
    """first value's time / second value's time, for each pair of samples of ``fn``."""
    ratios = []
    for i in range(pairs):
        t = {}
        for v in (values[::-1] if i % 2 else values):
            bc.vg.set_kernels(**{setting: v})
            t0 = perf()
            n = 0
            while n < 3 or perf() - t0 < lead_in_s:
                fn()
                n += 1
            t0 = perf()
            for _ in range(calls):
                fn()
            t[v] = perf() - t0
        ratios.append(t[values[0]] / t[values[1]])
    return np.array(ratios)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="activations")
    ap.add_argument("--configs", nargs="+", choices=sorted(bc.CONFIGS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--lead-in-ms", type=float, default=0.0)
    a = ap.parse_args(argv)
    values, configs = SETTINGS[a.setting]
    configs = a.configs or configs
    if a.setting == "activations" and bc.vg.kernel_info()["activations"]["best"] != "fma":
        sys.exit("paired: this CPU (or this build) has no fused multiply-add form to compare")
    before = bc.vg.kernel_info()
    what = " / ".join(_label(v) for v in values)
    print(f"CPU: {bc.cpu_model()}\nBLAS: {bc.blas_kernels_line()}")
    print(f"{a.setting}: {what} (time of each pair's first over its second; median of "
          f"{a.pairs} pairs, bootstrap 95% interval)")
    print(f"{'threads':>7}  {'config':14} {'what':8} {what:>11}  95% interval")
    rng = np.random.default_rng(0)
    try:
        for threads in a.threads:
            bc.set_threads(threads)
            for name in configs:
                prob = bc.Problem(bc.CONFIGS[name], systems=("vgcore",))
                net, X = prob.net, prob.X
                for part, fn in (("step", prob.systems["vgcore"]),
                                 ("forward", lambda net=net, X=X: net.forward(X))):
                    r = paired(fn, a.setting, values, a.pairs, a.calls, a.lead_in_ms / 1e3)
                    boot = [np.median(rng.choice(r, r.size)) for _ in range(400)]
                    lo, hi = np.percentile(boot, [2.5, 97.5])
                    print(f"{threads:>7}  {name:14} {part:8} {np.median(r):>11.3f}  "
                          f"{lo:.3f}-{hi:.3f}", flush=True)
    finally:
        bc.vg.set_kernels(activations=before["activations"]["kind"],
                          batch_chunks=before["batch_chunks"]["on"])


if __name__ == "__main__":
    main()

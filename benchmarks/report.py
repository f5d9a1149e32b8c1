#!/usr/bin/env python
"""Side-by-side timing of vgcore's train step against the NumPy reference, in one process.

    python benchmarks/report.py [--rounds N] [--json FILE] [--threads N] [--phases]
                                [--gemm-all] [--configs NAME ...] [--lead-in-ms MS]

For every configuration: both implementations (and, for wide and huge-batch, the same matrix
products with plain sgemm alone) are built, checked against each other, warmed up, and then
timed in interleaved rounds (the order rotates every round) with time.perf_counter.  A sample
repeats the step enough times to last about --sample-ms and follows an untimed lead-in of the
same implementation (see time_interleaved); the table shows medians of the per-step times.
--phases adds a per-phase breakdown (forward, loss, backward, SGD) of both; --threads N runs
vgcore's OpenMP and every BLAS on N threads (default: the library's default); the environment
variable VGCORE_BENCH_THREADS does the same when --threads is not given.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _bench_common as bc  # noqa: E402
import vgcore as vg  # noqa: E402
from vgcore.core import reference as vref  # noqa: E402
from vgcore.commands.bench import time_interleaved  # noqa: E402

perf = time.perf_counter
NOISY = 1.5          # flag configurations whose slowest sample is this many times the fastest


def time_phases(prob: bc.Problem, rounds: int, lead_in_s: float = 0.12):
    """Median ms of forward / loss / backward / SGD for both implementations (each after an
    untimed lead-in of its whole step, as in time_interleaved)."""
    cfg, X, y = prob.cfg, prob.X, prob.y
    net, ref, opt = prob.net, prob.ref, prob.opt
    grad = np.empty((cfg.batch, bc.N_OUT), np.float32)
    n = max(rounds, 5)
    out = {}
    for impl in ("vgcore", "reference"):
        ts = {p: [] for p in ("forward", "loss", "backward", "sgd")}
        bc.lead_in(prob.step(impl), lead_in_s, min_calls=1)
        for i in range(n + 2):
            t0 = perf()
            if impl == "vgcore":
                o = net.forward(X)
                t1 = perf()
                loss, d = vg.losses.cross_entropy(o, y, grad_out=grad)
                t2 = perf()
                net.backward(d, input_grad=False)
                t3 = perf()
                opt.step()
            else:
                o = ref.forward(X)
                t1 = perf()
                loss, d = vref.cross_entropy(o, y)
                t2 = perf()
                ref.backward(d, input_grad=False)
                t3 = perf()
                ref.sgd_step(bc.LR)
            t4 = perf()
            bc.assert_sane_loss(loss, f"{cfg.name}/{impl} (phases)")
            if i >= 2:                                  # first two are warm-up
                for p, dt in zip(ts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    ts[p].append(dt * 1e3)
        out[impl] = {p: statistics.median(v) for p, v in ts.items()}
    return out


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    ap.add_argument("--sample-ms", type=float, default=25.0,
                    help="target duration of one sample, in ms (default 25)")
    ap.add_argument("--warmup", type=float, default=0.2,
                    help="warm-up seconds per implementation and configuration (default 0.2)")
    ap.add_argument("--lead-in-ms", type=float, default=120.0,
                    help="untimed calls for this long (at least one) before each sample, "
                         "after switching implementation (default 120; see time_interleaved)")
    ap.add_argument("--threads", type=int, default=None,
                    help="vg.set_num_threads(N) first (vgcore's OpenMP and every BLAS)")
    ap.add_argument("--configs", nargs="+", choices=list(bc.CONFIGS), default=list(bc.CONFIGS))
    ap.add_argument("--gemm-all", action="store_true",
                    help="GEMM-only baseline for every configuration, not just wide and "
                         "huge-batch (small layers: includes ~1 us of Python call per GEMM)")
    ap.add_argument("--phases", action="store_true",
                    help="also time forward / loss / backward / SGD separately")
    ap.add_argument("--json", metavar="FILE", help="write the numbers to FILE")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.lead_in_ms < 0:
        ap.error("--lead-in-ms must be >= 0")

    if args.threads is not None:
        vg.set_num_threads(args.threads)
    else:
        bc.apply_thread_env()

    t_start = perf()
    rows = []
    for name in args.configs:
        cfg = bc.CONFIGS[name]
        prob = bc.Problem(cfg)
        prob.check()
        fns = {"reference": prob.reference_step, "vgcore": prob.vgcore_step}
        gemm = None
        if cfg.gemm_baseline or args.gemm_all:
            gemm = bc.GemmBaseline(cfg, "scipy")
            gemm.check()
            fns["gemm"] = gemm.run
        res = time_interleaved(fns, args.rounds, args.sample_ms / 1e3, args.warmup,
                               args.lead_in_ms / 1e3)
        loss = prob.vgcore_step()
        bc.assert_sane_loss(loss, f"{name}/vgcore")
        bc.assert_sane_loss(prob.reference_step(), f"{name}/reference")
        bc.assert_finite(prob.net.params, f"{name}/vgcore parameters")
        bc.assert_finite(prob.ref.params, f"{name}/reference parameters")

        ref_s, vg_s = res["reference"]["median"], res["vgcore"]["median"]
        gemm_s = res["gemm"]["median"] if gemm else None
        row = dict(
            config=name, shape=cfg.shape, batch=cfg.batch, activation=cfg.activation,
            flops=prob.flops,
            reference_ms=ref_s * 1e3, vgcore_ms=vg_s * 1e3,
            ratio=ref_s / vg_s, target=cfg.target, meets_target=ref_s / vg_s >= cfg.target,
            vgcore_gflops=prob.flops / vg_s / 1e9,
            reference_gflops=prob.flops / ref_s / 1e9,
            gemm_ms=None if gemm_s is None else gemm_s * 1e3,
            gemm_gflops=None if gemm_s is None else prob.flops / gemm_s / 1e9,
            pct_of_gemm=None if gemm_s is None else 100.0 * gemm_s / vg_s,
            spread_ms={k: [v["min"] * 1e3, v["max"] * 1e3] for k, v in res.items()},
            samples_ms={k: [round(x * 1e3, 4) for x in v["samples"]] for k, v in res.items()},
            reps_per_sample={k: v["reps"] for k, v in res.items()},
        )
        if args.phases:
            row["phases_ms"] = time_phases(prob, args.rounds, args.lead_in_ms / 1e3)
        rows.append(row)
        print(f"  {name}: done ({perf() - t_start:.1f} s)", file=sys.stderr, flush=True)

    print(f"## vgcore train step vs NumPy reference "
          f"(float32, softmax cross-entropy, SGD lr={bc.LR}; median of {args.rounds} "
          f"interleaved rounds)\n")
    print("| config | layers x width | batch | act | reference ms | vgcore ms "
          "| ratio ref/vgcore | target ratio | vgcore GFLOP/s | GEMM-only GFLOP/s "
          "| % of GEMM rate |")
    print("|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        ok = "met" if r["meets_target"] else "**MISSED**"
        print(f"| {r['config']} | {r['shape']} | {r['batch']} | {r['activation']} "
              f"| {r['reference_ms']:.3f} | {r['vgcore_ms']:.3f} | {r['ratio']:.2f} "
              f"| >= {r['target']:g} ({ok}) | {r['vgcore_gflops']:.1f} "
              f"| {fmt(r['gemm_gflops'], '.1f')} | {fmt(r['pct_of_gemm'], '.0f')}"
              f"{'%' if r['pct_of_gemm'] is not None else ''} |")
    print()
    print("GFLOP/s count 6*batch*fan_in*fan_out per layer (x@W, x.T@delta, delta@W.T) minus the "
          "first layer's delta@W.T; GEMM-only = those products alone with "
          "scipy.linalg.blas.sgemm (vgcore's OpenBLAS) on preallocated arrays.")
    print()
    print(bc.blas_summary())
    noisy = [f"{r['config']}/{k} {lo:.3g}-{hi:.3g} ms" for r in rows
             for k, (lo, hi) in r["spread_ms"].items() if hi > NOISY * lo]
    if noisy:
        print(f"\nNoisy: samples spread more than {NOISY}x (min-max per step) in "
              f"{'; '.join(noisy)}. Absolute times and GFLOP/s are then unreliable (ratios of "
              f"interleaved medians less so); compare with --threads 1, or rerun.")
    if args.phases:
        print("\n### Per-phase medians (ms)\n")
        print("| config | impl | forward | loss | backward | sgd | sum |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            for impl, ph in r["phases_ms"].items():
                print(f"| {r['config']} | {impl} | {ph['forward']:.3f} | {ph['loss']:.3f} "
                      f"| {ph['backward']:.3f} | {ph['sgd']:.3f} | {sum(ph.values()):.3f} |")
    print(f"\n(total {perf() - t_start:.1f} s)")

    if args.json:
        meta = dict(rounds=args.rounds, sample_ms=args.sample_ms, lead_in_ms=args.lead_in_ms,
                    threads=vg.get_num_threads(),
                    openmp=vg.openmp_enabled(), blas=vg.blas_info(), summary=bc.blas_summary(),
                    python=platform.python_version(), numpy=np.__version__,
                    vgcore=vg.__version__, cpu_count=os.cpu_count(),
                    machine=platform.machine(), processor=platform.processor(),
                    env={k: v for k, v in os.environ.items()
                         if k.startswith(("OPENBLAS_", "OMP_", "GOMP_", bc.THREADS_ENV))})
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, results=rows), f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""README's speed table: vgcore's train step against tuned NumPy, vgcore.reference and
PyTorch eager, side by side in one process.

    python benchmarks/report.py [--threads N [N ...]] [--configs NAME ...] [--rounds N]
                                [--markdown] [--json FILE] [--systems NAME ...] [--gemm]
                                [--phases] [--sample-ms MS] [--lead-in-ms MS] [--park-ms MS]
                                [--warmup S]

For every configuration every system (see _baselines.py) is built from the same parameters and
batch, checked against vgcore.reference (loss, gradients and update of one step; a system that
disagrees stops the report), warmed up, and timed in interleaved rounds whose order rotates
(vgcore.commands.bench.time_interleaved): a sample repeats the step for about --sample-ms after
an untimed lead-in of the same system, which lets the previous system's thread pool (NumPy's
OpenBLAS, SciPy's OpenBLAS and vgcore's OpenMP, PyTorch's OpenMP and MKL) go idle: an
OpenBLAS worker spins ~0.1 s after its library's last call.  vgcore's passes, which adapt
their threads to the load, see that spinning worker during the lead-in; --park-ms MS sleeps
before each lead-in instead (see time_interleaved for what that pause costs in turn).  The
table
shows medians; the ratios are the other system's median over vgcore's (> 1: vgcore is faster)
with the targets of issues #11 and #16 for that thread count.  The vanishing configuration
and its relu / He twin are timed in one pool, so their ratio is side by side too.

--threads N sets vgcore's OpenMP threads, every BLAS (vg.set_num_threads) and PyTorch's
(torch.set_num_threads) to N; several values run one table each.  Default: the current count
(VGCORE_BENCH_THREADS when set, else OpenMP's default, the number of cores).  The report
prints the CPU model, the thread counts and the BLAS kernels it ran with.  --markdown prints
the table as README shows it; --json FILE writes every number (``-`` for stdout).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _bench_common as bc  # noqa: E402
import vgcore as vg  # noqa: E402
from vgcore.core import reference as vref  # noqa: E402
from vgcore.commands.bench import PARK_S, time_interleaved  # noqa: E402,F401  (imported from here)

perf = time.perf_counter
NOISY = 1.5          # flag systems whose slowest sample is this many times the fastest
COLS = ("numpy", "reference", "torch", "vgcore")


def time_phases(prob: bc.Problem, rounds: int, lead_in_s: float = 0.12, park_s: float = 0.0):
    """Median ms of forward / loss / backward / SGD for vgcore and the reference (each after
    a pause and an untimed lead-in of its whole step, as in time_interleaved)."""
    cfg, X, y = prob.cfg, prob.X, prob.y
    net, ref, opt = prob.net, prob.ref, prob.opt
    grad = np.empty((cfg.batch, bc.N_OUT), np.float32)
    n = max(rounds, 5)
    out = {}
    for impl in ("vgcore", "reference"):
        ts = {p: [] for p in ("forward", "loss", "backward", "sgd")}
        if park_s > 0:
            time.sleep(park_s)
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


def pools(names):
    """The configurations in timing pools: a configuration and its twin share one."""
    out, seen = [], set()
    for n in names:
        if n in seen:
            continue
        pool = [n] + [t for t in (bc.TWINS.get(n),) if t in names and t not in seen]
        seen.update(pool)
        out.append(pool)
    return out


def measure(args, threads):
    """One table: every configuration at ``threads`` threads.  Returns the rows."""
    bc.set_threads(threads)
    rows = []
    t_start = perf()
    for pool in pools(args.configs):
        probs, fns, gemms = {}, {}, {}
        for name in pool:
            cfg = bc.CONFIGS[name]
            for s in args.systems:
                if s == "torch" and bc.get_torch()[0] is None:
                    continue
                r = bc.check_system(cfg, s)          # raises on a disagreement
                if not args.quiet:
                    print(f"  {name}/{s}: agrees with the reference (gradients "
                          f"{r['grad_rel_err']:.1e})", file=sys.stderr, flush=True)
            prob = probs[name] = bc.Problem(cfg, args.systems)
            for s, fn in prob.systems.items():
                bc.assert_sane_loss(fn(), f"{name}/{s}")
                fns[f"{name}|{s}"] = fn
            if args.gemm and cfg.gemm_baseline or args.gemm_all:
                g = gemms[name] = bc.GemmBaseline(cfg, "vgcore")
                g.check()
                fns[f"{name}|gemm"] = g.run
        res = time_interleaved(fns, args.rounds, args.sample_ms / 1e3, args.warmup,
                               args.lead_in_ms / 1e3, park_s=args.park_ms / 1e3)
        for name in pool:
            prob, cfg = probs[name], bc.CONFIGS[name]
            r = {s: res[f"{name}|{s}"] for s in list(prob.systems) + ["gemm"]
                 if f"{name}|{s}" in res}
            for s, fn in prob.systems.items():
                bc.assert_sane_loss(fn(), f"{name}/{s} after timing")
            ms = {s: (r[s]["median"] * 1e3 if s in r else None) for s in COLS + ("gemm",)}
            vg_ms = ms["vgcore"]
            row = dict(config=name, shape=cfg.shape, batch=cfg.batch,
                       activation=cfg.activation, init=cfg.init, threads=threads,
                       flops=prob.flops, skipped=prob.skipped,
                       **{f"{s}_ms": ms[s] for s in COLS},
                       gemm_ms=ms["gemm"],
                       numpy_over_vgcore=_ratio(ms["numpy"], vg_ms),
                       torch_over_vgcore=_ratio(ms["torch"], vg_ms),
                       reference_over_vgcore=_ratio(ms["reference"], vg_ms),
                       target_numpy_over_vgcore=bc.target(name, threads, "numpy"),
                       target_torch_over_vgcore=bc.target(name, threads, "torch"),
                       gflops={s: prob.flops / (v * 1e-3) / 1e9 for s, v in ms.items()
                               if v is not None},
                       spread_ms={s: [v["min"] * 1e3, v["max"] * 1e3] for s, v in r.items()},
                       samples_ms={s: [round(x * 1e3, 4) for x in v["samples"]]
                                   for s, v in r.items()},
                       reps_per_sample={s: v["reps"] for s, v in r.items()})
            if args.phases and "vgcore" in prob.systems and "reference" in prob.systems:
                row["phases_ms"] = time_phases(prob, args.rounds, args.lead_in_ms / 1e3,
                                               args.park_ms / 1e3)
            rows.append(row)
            if not args.quiet:
                print(f"  {threads} thread{'s' if threads > 1 else ''}, {name}: done "
                      f"({perf() - t_start:.1f} s)",
                      file=sys.stderr, flush=True)
    # vanishing against the same shapes under relu / He, measured in one pool
    by = {r["config"]: r for r in rows}
    for name, twin in bc.TWINS.items():
        if name == "vanishing" and name in by and twin in by:
            by[name]["over_relu_he"] = {
                s: _ratio(by[name][f"{s}_ms"], by[twin][f"{s}_ms"]) for s in COLS
                if by[name][f"{s}_ms"] is not None}
    return rows


def _ratio(a, b):
    return None if a is None or b is None else a / b


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def target_cell(r):
    parts = []
    for k, lab in (("numpy", "NumPy"), ("torch", "PyTorch")):
        t = r[f"target_{k}_over_vgcore"]
        v = r[f"{k}_over_vgcore"]
        if t is not None:
            mark = "" if v is None else (" met" if v >= t else " missed")
            parts.append(f"{lab} >= {t:g}{mark}")
    if "over_relu_he" in r and r["over_relu_he"].get("vgcore") is not None:
        v = r["over_relu_he"]["vgcore"]
        parts.append(f"<= {bc.VANISHING_MAX:g}x relu/He ({v:.2f}x,"
                     f"{' met' if v <= bc.VANISHING_MAX else ' missed'})")
    return "; ".join(parts) or "-"


def header_lines(meta):
    return [f"CPU: {meta['cpu']}",
            "BLAS: " + "; ".join(f"{b['used_by']}: {b['name']} {b['version']} "
                                 f"({b['architecture']} kernel)" for b in meta["blas"]),
            f"vgcore: {bc.kernels_line(meta['kernels'])}",
            (f"Versions: vgcore {meta['vgcore']}, NumPy {meta['numpy']}, "
             f"PyTorch {meta['torch'] or 'not installed'}, Python {meta['python']}"),
            f"Environment: {meta['env']}"]


def print_text(rows, meta, args):
    print(f"vgcore train step vs tuned NumPy, vgcore.reference and PyTorch eager "
          f"(float32, softmax cross-entropy over {bc.N_OUT} classes, SGD lr {bc.LR}); "
          f"medians of {args.rounds} interleaved rounds; ratio = other ms / vgcore ms")
    for line in header_lines(meta):
        print(line)
    for threads in meta["threads"]:
        trs = [r for r in rows if r["threads"] == threads]
        print(f"\n{threads} thread{'s' if threads > 1 else ''}: {trs[0]['threads_line']}")
        print(f"{'config':15s} {'shape':>7s} {'batch':>5s} {'act':>8s} {'NumPy ms':>9s} "
              f"{'ref ms':>9s} {'torch ms':>9s} {'vgcore ms':>9s} {'NumPy/vg':>9s} "
              f"{'torch/vg':>9s}  targets")
        for r in trs:
            print(f"{r['config']:15s} {r['shape']:>7s} {r['batch']:5d} {r['activation']:>8s} "
                  f"{fmt(r['numpy_ms'], '9.3f'):>9s} {fmt(r['reference_ms'], '9.3f'):>9s} "
                  f"{fmt(r['torch_ms'], '9.3f'):>9s} {fmt(r['vgcore_ms'], '9.3f'):>9s} "
                  f"{fmt(r['numpy_over_vgcore'], '9.2f'):>9s} "
                  f"{fmt(r['torch_over_vgcore'], '9.2f'):>9s}  {target_cell(r)}")
        extra_lines(trs)


def extra_lines(trs, md=False):
    if md:
        print()
    for r in trs:
        if "over_relu_he" in r:
            v = r["over_relu_he"]
            print(f"{'- ' if md else ''}{r['config']} step / the same shapes under relu / He "
                  f"(vanishing-relu, same pool): " +
                  ", ".join(f"{bc.LABELS[s]} {fmt(v.get(s), '.2f')}" for s in COLS if s in v) +
                  f" (target for vgcore <= {bc.VANISHING_MAX:g})")
        if r.get("gemm_ms") is not None and r.get("vgcore_ms"):
            print(f"{'- ' if md else ''}{r['config']}: the step's matrix products alone "
                  f"(vgcore's BLAS) {r['gemm_ms']:.3f} ms, {r['gflops']['gemm']:.1f} GFLOP/s; "
                  f"vgcore reaches {100 * r['gemm_ms'] / r['vgcore_ms']:.0f}% of that rate")
        if "phases_ms" in r:
            for impl, ph in r["phases_ms"].items():
                print(f"{'- ' if md else ''}{r['config']} {impl} phases (ms): " +
                      ", ".join(f"{k} {v:.3f}" for k, v in ph.items()) +
                      f", sum {sum(ph.values()):.3f}")
    skipped = {s: why for r in trs for s, why in r["skipped"].items()}
    for s, why in skipped.items():
        print(f"{'- ' if md else ''}{bc.LABELS[s]}: skipped ({why})")
    spread = sorted(((hi / lo, f"{r['config']}/{s}") for r in trs
                     for s, (lo, hi) in r["spread_ms"].items() if hi > NOISY * lo),
                    reverse=True)
    if spread:
        n = sum(len(r["spread_ms"]) for r in trs)
        worst = ", ".join(f"{name} {x:.1f}x" for x, name in spread[:3])
        print(f"{'- ' if md else ''}Noisy: in {len(spread)} of {n} measurements the slowest "
              f"sample took more than {NOISY}x the fastest (worst: {worst}). Ratios of "
              f"interleaved medians are more robust than absolute times; rerun on a quiet "
              f"machine (--json keeps every sample).")


def print_markdown(rows, meta, args):
    for threads in meta["threads"]:
        trs = [r for r in rows if r["threads"] == threads]
        print(f"\n{threads} thread{'s' if threads > 1 else ''} "
              f"({trs[0]['threads_line']}); medians of {args.rounds} interleaved rounds:\n")
        print("| config | layers x width | batch | activation | tuned NumPy ms "
              "| vgcore.reference ms | PyTorch ms | vgcore ms | NumPy / vgcore "
              "| PyTorch / vgcore | targets (#11, #16) |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for r in trs:
            act = r["activation"] + ("" if r["init"] == bc.INIT else f" ({r['init']})")
            print(f"| {r['config']} | {r['shape']} | {r['batch']} | {act} "
                  f"| {fmt(r['numpy_ms'], '.3f')} | {fmt(r['reference_ms'], '.3f')} "
                  f"| {fmt(r['torch_ms'], '.3f')} | {fmt(r['vgcore_ms'], '.3f')} "
                  f"| {fmt(r['numpy_over_vgcore'], '.2f')} "
                  f"| {fmt(r['torch_over_vgcore'], '.2f')} | {target_cell(r)} |")
        extra_lines(trs, md=True)
    print()
    for line in header_lines(meta):
        print(f"{line}  ")
    print(f"Command: `{meta['command']}`")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts, one table each (default: the current count)")
    ap.add_argument("--configs", nargs="+", choices=list(bc.CONFIGS), default=list(bc.CONFIGS))
    ap.add_argument("--systems", nargs="+", choices=list(bc.SYSTEMS), default=list(bc.SYSTEMS),
                    help="systems to race (default all; vgcore and numpy are always in)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    ap.add_argument("--sample-ms", type=float, default=25.0,
                    help="target duration of one sample, in ms (default 25)")
    ap.add_argument("--warmup", type=float, default=0.2,
                    help="warm-up seconds per system and configuration (default 0.2)")
    ap.add_argument("--lead-in-ms", type=float, default=120.0,
                    help="untimed calls for this long (at least one) before each sample "
                         "(default 120; see time_interleaved)")
    ap.add_argument("--park-ms", type=float, default=0.0,
                    help="pause before a system's lead-in, in which the previous system's "
                         f"BLAS threads park (default 0; they spin ~{PARK_S * 1e3:.0f} ms)")
    ap.add_argument("--gemm", action="store_true",
                    help="also time the step's matrix products alone (vgcore's BLAS) for wide "
                         "and huge-batch")
    ap.add_argument("--gemm-all", action="store_true",
                    help="the same for every configuration (small layers: includes ~1 us of "
                         "Python call per GEMM)")
    ap.add_argument("--phases", action="store_true",
                    help="also time forward / loss / backward / SGD of vgcore and the "
                         "reference separately")
    ap.add_argument("--markdown", action="store_true", help="print the table as README shows it")
    ap.add_argument("--json", metavar="FILE", help="write every number to FILE ('-': stdout)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.lead_in_ms < 0:
        ap.error("--lead-in-ms must be >= 0")
    if args.park_ms < 0:
        ap.error("--park-ms must be >= 0")
    if args.threads and min(args.threads) < 1:
        ap.error("--threads must be >= 1")
    args.systems = [s for s in bc.SYSTEMS if s in set(args.systems) | {"numpy", "vgcore"}]

    if args.threads is None:
        bc.apply_thread_env()
    if "torch" in args.systems:
        bc.get_torch()
    before = vg.get_num_threads()
    threads = args.threads or [before]
    t_start = perf()
    rows = []
    try:
        for n in threads:
            trs = measure(args, n)
            line = bc.threads_line()
            for r in trs:
                r["threads_line"] = line
                r["blas"] = bc.blas_kernels()
            rows += trs
        meta = bc.machine_info()
    finally:
        bc.set_threads(before)
    meta.update(threads=threads, rounds=args.rounds, sample_ms=args.sample_ms,
                lead_in_ms=args.lead_in_ms, park_ms=args.park_ms, warmup_s=args.warmup,
                total_s=perf() - t_start,
                command="python benchmarks/report.py" +
                        "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None
                                                               else sys.argv[1:])))
    if args.json != "-":
        (print_markdown if args.markdown else print_text)(rows, meta, args)
        print(f"\n(total {meta['total_s']:.1f} s)", file=sys.stderr)
    if args.json:
        text = json.dumps(dict(meta=meta, results=rows), indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``vgcore bench``: a quick side-by-side speed comparison of vgcore's training step.

One training step (forward, softmax cross-entropy, backward, SGD lr 0.01; float32, 10
outputs, Glorot-uniform init) of vgcore against the same network in plain NumPy
(vgcore.reference.ReferenceMLP, the engine's semantics with preallocated buffers) and, when it
can be imported, PyTorch (torch.nn.Linear layers, torch.optim.SGD).  vgcore runs as it ships,
measuring the gradient flow at every step.

Standard configurations (layers x width, batch, activation):

  deep-narrow     50x64,   batch 64,   tanh
  deep-narrow-2   100x32,  batch 32,   sigmoid
  medium          10x256,  batch 128,  relu
  wide            4x1024,  batch 256,  relu
  huge-batch      8x512,   batch 2048, relu

Each implementation is first checked against vgcore (same loss and, for the reference, the same
parameters after one step), then timed in interleaved rounds whose order rotates; a sample
repeats the step for about --sample-ms after an untimed lead-in of the same implementation
(which lets the other BLAS library's spinning threads park).  The table shows medians.
Ratios are the other implementation's time over vgcore's (> 1: vgcore is faster).

JSON (--json) keys: results [{config, shape, batch, activation, flops, reference_ms,
vgcore_ms, torch_ms, ratio, torch_ratio, vgcore_gflops, reference_gflops, torch_gflops,
agree, max_param_diff, spread_ms, reps_per_sample}], rounds, sample_ms, lead_in_ms, threads,
torch {available, version, reason}, blas, blas_line, notes.  torch_* are null without PyTorch.
"""
from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time

import numpy as np

from vgcore.commands._common import (blas_line, nonneg_float, positive_float, positive_int,
                                     print_json)
from vgcore.core._ui import limited_threads

HELP = "time vgcore's train step against the NumPy reference (and PyTorch if installed)"
EXAMPLES = """examples:
  vgcore bench                          # the five standard configurations
  vgcore bench --quick                  # 3 rounds of the three small ones, a few seconds
  vgcore bench --configs wide huge-batch --rounds 15
  vgcore bench --threads 1 --json > bench.json"""

N_OUT = 10
LR = 0.01
INIT = "glorot_uniform"
CONFIGS = {   # name: (hidden layers, width, batch, activation)
    "deep-narrow": (50, 64, 64, "tanh"),
    "deep-narrow-2": (100, 32, 32, "sigmoid"),
    "medium": (10, 256, 128, "relu"),
    "wide": (4, 1024, 256, "relu"),
    "huge-batch": (8, 512, 2048, "relu"),
}
QUICK_CONFIGS = ("deep-narrow", "deep-narrow-2", "medium")
NOISY = 1.5
perf = time.perf_counter



def register(sub):
    p = sub.add_parser("bench", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), metavar="NAME", default=None,
                   help="configurations to run, of: " + ", ".join(CONFIGS) + " (default: all; "
                        "with --quick: " + ", ".join(QUICK_CONFIGS) + ")")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="interleaved rounds (default 7; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a few rounds of the small configurations, short samples")
    p.add_argument("--sample-ms", type=positive_float, default=None,
                   help="duration of one timed sample (default 20; 5 with --quick)")
    p.add_argument("--lead-in-ms", type=nonneg_float, default=None,
                   help="untimed calls before each sample (default 100; 20 with --quick)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="vgcore's, BLAS and PyTorch threads (default: the OpenMP default)")
    p.add_argument("--no-torch", action="store_true", help="do not try PyTorch")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")
    p.set_defaults(func=run)
    return p


def _flops(sizes, batch):
    """x@W, x.T@delta, delta@W.T in every layer, less the first layer's delta@W.T."""
    total = sum(6 * batch * sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))
    return total - 2 * batch * sizes[0] * sizes[1]


def _import_torch():
    try:
        import torch
    except ImportError:
        return None, "not installed"
    except Exception as e:                     # a broken install: say so, do not fail
        return None, f"import torch failed: {type(e).__name__}: {e}"
    return torch, None


class _TorchStep:
    """The same network in PyTorch, from vgcore's parameters."""

    ACTS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "ReLU"}

    def __init__(self, torch, net, X, y):
        nn = torch.nn
        mods = []
        L = net.n_layers
        for l, (W, b) in enumerate(zip(net.weights, net.biases)):
            lin = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b.copy()))
            mods.append(lin)
            if l < L - 1:
                mods.append(getattr(nn, self.ACTS[net.activations[l].name])())
        self.model = nn.Sequential(*mods)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.ce = torch.nn.functional.cross_entropy

    def __call__(self):
        self.opt.zero_grad(set_to_none=False)
        loss = self.ce(self.model(self.X), self.y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def lead_in(fn, seconds=0.12, min_calls=1):
    """Untimed calls of fn for ``seconds`` (at least ``min_calls``); returns their number.

    Besides warming caches and allocating buffers, this lets the worker threads of the BLAS
    used by the previous measurement park: an OpenBLAS worker spins for ~2**28 TSC cycles
    (~0.1 s, OPENBLAS_THREAD_TIMEOUT) after its library's last call, and the baselines may use
    another library than vgcore (``vgcore.use_blas``; PyTorch's MKL always); on a 2-core
    machine that spinning thread slows the first ~0.1 s of the next measurement.
    """
    t_end = perf() + seconds
    n = 0
    while n < min_calls or perf() < t_end:
        fn()
        n += 1
    return n


def calibrate(fn, sample_s, calls=5):
    """Repetitions per sample so that one sample lasts about sample_s (at least 1), from the
    fastest of a few calls (one slow call -- a page fault, a descheduled thread -- would
    otherwise set a single repetition)."""
    best = math.inf
    for _ in range(calls):
        t0 = perf()
        fn()
        best = min(best, perf() - t0)
    return max(1, min(1000, int(math.ceil(sample_s / max(best, 1e-7)))))


PARK_S = 0.12
"""Seconds an OpenBLAS worker spins after its library's last call before it sleeps: ~2**28 TSC
cycles (OPENBLAS_THREAD_TIMEOUT's default), measured ~0.106 s of CPU on an AMD EPYC for
NumPy's and SciPy's OpenBLAS alike."""


def time_interleaved(fns, rounds, sample_s, warmup_s, lead_in_s=0.12, park_s=0.0):
    """Median seconds per call of each function, sampled in interleaved, rotating rounds.

    Each sample is preceded by an untimed :func:`lead_in` of the same function for
    ``lead_in_s`` (at least one call), so that timing right after a switch of implementation
    (and of BLAS library) does not measure the other library's spinning workers.  With
    ``park_s`` > 0 the timer first sleeps that long whenever the function changes, so that
    those workers park before the lead-in instead of during it: a system that adapts its
    threads to the load (vgcore) then does not learn from another library's spinning threads,
    which a program running one system step after step never meets.  The pause has its own
    cost: after it, Linux was seen to wake vgcore's second OpenMP thread on the first one's
    core and leave it there for the next ~50 steps of a narrow network (a 2-thread
    deep-narrow step at its 1-thread speed), which a program running step after step does not
    meet either.

    Returns ``{name: {"median", "min", "max", "reps", "samples"}}`` (seconds per call).
    """
    reps = {}
    for k, fn in fns.items():
        if park_s > 0:
            time.sleep(park_s)
        lead_in(fn, warmup_s)
        reps[k] = calibrate(fn, sample_s)
    samples = {k: [] for k in fns}
    keys = list(fns)
    last = keys[-1]
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn, n = fns[k], reps[k]
            if park_s > 0 and k != last:
                time.sleep(park_s)
            last = k
            lead_in(fn, lead_in_s)
            t0 = perf()
            for _ in range(n):
                fn()
            samples[k].append((perf() - t0) / n)
    return {k: dict(median=statistics.median(v), min=min(v), max=max(v), reps=reps[k],
                    samples=v) for k, v in samples.items()}


def run(args):
    import vgcore as vg
    from vgcore.core.reference import ReferenceMLP

    names = args.configs or list(QUICK_CONFIGS if args.quick else CONFIGS)
    rounds = args.rounds or (3 if args.quick else 7)
    sample_ms = args.sample_ms or (5.0 if args.quick else 20.0)
    lead_in_ms = args.lead_in_ms if args.lead_in_ms is not None else \
        (20.0 if args.quick else 100.0)
    warmup_s = 0.05 if args.quick else 0.2
    torch, torch_reason = (None, "--no-torch") if args.no_torch else _import_torch()
    notes = []
    if torch is None:
        notes.append(f"PyTorch: skipped ({torch_reason})")

    results = []
    t_start = perf()
    with limited_threads(args.threads):
        if torch is not None:
            torch.set_num_threads(vg.get_num_threads())
        for name in names:
            n_hidden, width, batch, act = CONFIGS[name]
            sizes = [width] * (n_hidden + 1) + [N_OUT]
            net = vg.MLP(sizes, activation=act, init=INIT, dtype="float32", seed=0)
            ref = ReferenceMLP.from_network(net)
            opt = vg.optim.SGD(net, lr=LR)
            rng = np.random.default_rng(1)
            X = rng.standard_normal((batch, width), dtype=np.float32)
            y = rng.integers(0, N_OUT, batch).astype(np.int64)
            fns = {"reference": functools.partial(ref.train_step, X, y, "cross_entropy", lr=LR),
                   "vgcore": functools.partial(net.train_step, X, y, "cross_entropy", opt)}
            tstep = None
            if torch is not None:
                try:
                    tstep = _TorchStep(torch, net, X, y)
                except Exception as e:           # report it, keep the others
                    notes.append(f"{name}: PyTorch model failed ({type(e).__name__}: {e})")
            # one step each from identical parameters: do they agree?
            l_vg, l_ref = fns["vgcore"](), fns["reference"]()
            diff = float(np.max(np.abs(net.params - ref.params)))
            agree = math.isclose(l_vg, l_ref, rel_tol=1e-4, abs_tol=1e-5) and diff < 1e-4
            if tstep is not None:
                l_t = tstep()
                if not math.isclose(l_vg, l_t, rel_tol=1e-4, abs_tol=1e-5):
                    notes.append(f"{name}: PyTorch's first loss {l_t:.6g} differs from "
                                 f"vgcore's {l_vg:.6g}")
                fns["torch"] = tstep
            if not agree:
                notes.append(f"{name}: vgcore and the reference disagree after one step "
                             f"(loss {l_vg:.6g} vs {l_ref:.6g}, parameters by {diff:.2g})")
            res = time_interleaved(fns, rounds, sample_ms / 1e3, warmup_s, lead_in_ms / 1e3)
            flops = _flops(sizes, batch)
            vg_s = res["vgcore"]["median"]
            row = dict(config=name, shape=f"{n_hidden}x{width}", batch=batch, activation=act,
                       flops=flops, vgcore_ms=vg_s * 1e3,
                       reference_ms=res["reference"]["median"] * 1e3,
                       torch_ms=res["torch"]["median"] * 1e3 if "torch" in res else None,
                       agree=agree, max_param_diff=diff,
                       spread_ms={k: [v["min"] * 1e3, v["max"] * 1e3] for k, v in res.items()},
                       reps_per_sample={k: v["reps"] for k, v in res.items()})
            row["ratio"] = row["reference_ms"] / row["vgcore_ms"]
            row["torch_ratio"] = None if row["torch_ms"] is None else \
                row["torch_ms"] / row["vgcore_ms"]
            for k in ("vgcore", "reference", "torch"):
                ms = row[f"{k}_ms"]
                row[f"{k}_gflops"] = None if ms is None else flops / (ms * 1e-3) / 1e9
            results.append(row)
            if not args.quiet:
                print(f"  {name}: done ({perf() - t_start:.1f} s)", file=sys.stderr, flush=True)
        threads = vg.get_num_threads()
        line = blas_line(vg)
        blas = vg.blas_info()
    noisy = [f"{r['config']}/{k} {lo:.3g}-{hi:.3g} ms" for r in results
             for k, (lo, hi) in r["spread_ms"].items() if hi > NOISY * lo]
    if noisy:
        notes.append("noisy samples (slowest over fastest > 1.5): " + "; ".join(noisy)
                     + ". Ratios of interleaved medians are more robust than absolute times; "
                       "rerun or try --threads 1.")
    out = dict(results=results, rounds=rounds, sample_ms=sample_ms, lead_in_ms=lead_in_ms,
               threads=threads,
               torch=dict(available=torch is not None,
                          version=getattr(torch, "__version__", None) if torch else None,
                          reason=torch_reason),
               blas=blas, blas_line=line, total_s=perf() - t_start, notes=notes)
    if args.json:
        print_json(out)
        return 0
    print(f"vgcore bench: train step (forward, softmax cross-entropy, backward, SGD), float32, "
          f"{N_OUT} outputs; medians of {rounds} interleaved rounds; ratio = other ms / vgcore ms")
    has_t = any(r["torch_ms"] is not None for r in results)
    hdr = (f"{'config':14s} {'layers x width':>14s} {'batch':>6s} {'act':>8s} "
           f"{'reference ms':>13s} {'vgcore ms':>10s} {'ref/vgcore':>11s} {'vgcore GFLOP/s':>15s}")
    if has_t:
        hdr += f" {'torch ms':>9s} {'torch/vgcore':>13s}"
    print(hdr)
    for r in results:
        s = (f"{r['config']:14s} {r['shape']:>14s} {r['batch']:6d} {r['activation']:>8s} "
             f"{r['reference_ms']:13.3f} {r['vgcore_ms']:10.3f} {r['ratio']:11.2f} "
             f"{r['vgcore_gflops']:15.1f}")
        if has_t:
            s += (f" {r['torch_ms']:9.3f} {r['torch_ratio']:13.2f}" if r["torch_ms"] is not None
                  else f" {'-':>9s} {'-':>13s}")
        print(s)
    tinfo = f"torch {out['torch']['version']}" if torch else f"skipped ({torch_reason})"
    print(f"PyTorch: {tinfo}")
    print(line)
    if not args.quiet:
        for n in notes:
            if not n.startswith("PyTorch:"):
                print(f"note: {n}")
    return 0

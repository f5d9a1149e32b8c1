"""``vgcore profile``: where the time of a training step goes, layer by layer.

Builds one network, trains it for a few SGD steps (softmax cross-entropy on a random batch, or
on a batch of your own data with --data) and reports, from the same run:

- the time of each phase of a step (forward, loss, backward, optimiser update) with the
  gradient-flow measurements on (vgcore's default) and off, the difference being what the
  measurements cost;
- the time per layer and per phase inside the compiled passes (forward GEMM, forward
  elementwise, backward elementwise, backward GEMM; from ``net.profile()`` and
  ``net.layer_timings()``), with the GFLOP/s of the matrix products against the rate of the same
  products run alone through vgcore's BLAS (sgemm/dgemm on preallocated arrays);
- the memory of the parameter, gradient, workspace, measurement and optimiser buffers;
- the gradient-flow measurements of the last step, per layer.

Each timed round runs three steps in rotating order: one with the per-layer timers on (the
layer breakdown), one with measurements on and one with them off (the measurement cost).
Every time is the mean over the faster half of the steps of its kind (ranked by step time), so
that a step the OS descheduled does not count and the parts of a step add up to its total.

JSON (--json) keys: config (with data: the --data file's record, path, SHA-256, rows, columns,
label, or null), threads, openmp, blas, blas_line, steps_ms {measured, unmeasured,
profiled: {forward, loss, backward, optimizer, total}}, step_spread (median / fastest step),
measurement_cost_ms, measurement_cost_ratio, timer_cost_ms, phases [{phase, ms, share, gflops,
gemm_only_ms, gemm_only_gflops, pct_of_gemm_rate}], layers [{layer, fan_in, fan_out,
activation, forward_gemm_ms, forward_elementwise_ms, backward_elementwise_ms, backward_gemm_ms,
total_ms, forward_gemm_gflops, backward_gemm_gflops, gemm_only_forward_ms,
gemm_only_backward_ms}], layer_sum_ms, layer_sum_over_passes, flops, total_gflops,
gemm_only_ms, gemm_only_gflops, gemm_call_overhead_us, memory_bytes {parameters, gradients,
workspace, measurement, normalisation, optimizer, batch, total}, loss_first, loss_last,
gradient_flow {layer, width, activation, delta_rms, grad_norm, ..., grad_ratio, delta_ratio,
nonfinite_forward_layer, nonfinite_backward_layer}, flow_summary, plots {written, skipped,
reason} (null without --plot-dir), notes.
Times in milliseconds; numbers that are not finite (NaN, inf) are null.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

from vgcore import _engine
from vgcore.commands._common import (CommandError, blas_line, gap_line, nonneg_int, note,
                                     plot_dir, positive_float, positive_int, print_json,
                                     shown_rows)
from vgcore.commands._common import label_arg, read_data_file
from vgcore.core._kernels import kernels_line
from vgcore.core._threads import BLAS_PACKAGES
from vgcore.core._ui import limited_threads, load_matplotlib, new_figure, save_png
from vgcore.experiments.report.record import data_text

HELP = "time a training step per layer and phase, with memory and gradient flow"
EXAMPLES = """examples:
  vgcore profile
  vgcore profile --depth 50 --width 64 --batch 64 --activation tanh --steps 30
  vgcore profile --depth 8 --width 512 --batch 256 --activation relu --init he_normal
  vgcore profile --norm batch --dtype float64 --threads 1 --json > profile.json
  vgcore profile --plot-dir plots/          # also per-layer time and gradient-norm charts
  vgcore profile --data train.csv --label species   # a batch of your own data"""

PHASES = ("forward_gemm", "forward_elementwise", "backward_elementwise", "backward_gemm")
PHASE_LABELS = {"forward_gemm": "forward GEMM", "forward_elementwise": "forward elementwise",
                "backward_elementwise": "backward elementwise", "backward_gemm": "backward GEMM",
                "optimizer": "optimiser update", "loss": "loss (softmax cross-entropy)",
                "other": "other (Python, input checks)"}
STEP_PARTS = ("forward", "loss", "backward", "optimizer")
perf = time.perf_counter
NOISY = 1.3       # a note when the median step of a kind took this many times the fastest


# ------------------------------------------------------------------ the GEMM baseline

def _blas_name() -> str:
    """Which OpenBLAS computes vgcore's products: "NumPy's" or "SciPy's"."""
    return BLAS_PACKAGES[_engine.blas_products()["library"]]


class GemmAlone:
    """The matrix products of one training step, alone, through the BLAS that computes
    vgcore's products (``vgcore.use_blas``: NumPy's OpenBLAS or SciPy's).

    Per layer (input x (B, fan_in), W (fan_in, fan_out), delta (B, fan_out)): forward
    ``h = x @ W``; backward ``dW = x.T @ delta`` and, except for the first layer (whose input
    gradient a training step does not need), ``dx = delta @ W.T``.  The C-ordered arrays are
    passed as their transposes (Fortran-ordered) and written in place, so nothing is copied.
    """

    def __init__(self, sizes, batch, dtype, seed=2):
        self.gemm = _engine.blas_product
        rng = np.random.default_rng(seed)
        self.layers = []
        for l in range(len(sizes) - 1):
            fin, fout = sizes[l], sizes[l + 1]
            self.layers.append(dict(
                x=rng.standard_normal((batch, fin)).astype(dtype),
                W=(rng.standard_normal((fin, fout)) / math.sqrt(fin)).astype(dtype),
                d=(rng.standard_normal((batch, fout)) / batch).astype(dtype),
                h=np.zeros((batch, fout), dtype), dW=np.zeros((fin, fout), dtype),
                dx=np.zeros((batch, fin), dtype) if l > 0 else None))

    def call_overhead(self, n=300) -> float:
        """Seconds of Python overhead per gemm call: the fastest of ``n`` 1x1x1 products
        written in place."""
        a = np.ones((1, 1), self.layers[0]["x"].dtype)
        c = np.zeros((1, 1), a.dtype)
        best = math.inf
        for _ in range(n):
            t0 = perf()
            self.gemm("NN", a.T, a.T, c.T)
            best = min(best, perf() - t0)
        return best

    def time(self, reps: int):
        """Median seconds per layer of the forward product and of the backward products, less
        the measured call overhead of each product (never below a tenth of the raw time)."""
        g = self.gemm
        ovh = self.call_overhead()
        self.overhead = ovh
        fwd: list[list[float]] = [[] for _ in self.layers]
        bwd: list[list[float]] = [[] for _ in self.layers]
        for r in range(reps + 2):                   # two warm-up passes
            for i, L in enumerate(self.layers):
                x, W, d = L["x"], L["W"], L["d"]
                t0 = perf()
                # row-major C = A @ B is column-major C.T = B.T @ A.T (F-ordered views)
                g("NN", W.T, x.T, L["h"].T)                 # h = x @ W
                t1 = perf()
                g("NT", d.T, x.T, L["dW"].T)                # dW = x.T @ d
                if L["dx"] is not None:
                    g("TN", W.T, d.T, L["dx"].T)            # dx = d @ W.T
                t2 = perf()
                if r >= 2:
                    fwd[i].append(t1 - t0)
                    bwd[i].append(t2 - t1)
        f = np.array([statistics.median(v) for v in fwd])
        b = np.array([statistics.median(v) for v in bwd])
        calls = np.array([1 if L["dx"] is None else 2 for L in self.layers])
        return np.maximum(f - ovh, 0.1 * f), np.maximum(b - calls * ovh, 0.1 * b)


def core_peak_gflops(dtype, reps=30) -> tuple:
    """One core's product rate on this machine, GFLOP/s: the best of ``reps`` runs of a
    128 x 256 x 256 product held in cache, through vgcore's own matrix product (or BLAS on one
    thread when vgcore's kernel is off).  Returns ``(gflops, how)``."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((128, 256)).astype(dtype)
    B = rng.standard_normal((256, 256)).astype(dtype)
    C = np.zeros((128, 256), dtype)
    isa = _engine.gemm_kernel_info()["isa"]
    if isa != "none":
        def run():
            _engine.gemm_own(A, B, C)
        how = f"vgcore's matrix product ({isa})"
    else:
        def run():
            _engine.blas_product("NN", B.T, A.T, C.T)
        how = f"{_blas_name()} BLAS on one thread"
    best = math.inf
    with limited_threads(1):
        for _ in range(reps):
            t0 = perf()
            for _ in range(5):
                run()
            best = min(best, (perf() - t0) / 5)
    return 2.0 * 128 * 256 * 256 / best / 1e9, how


# ------------------------------------------------------------------ the command

def register(sub):
    import vgcore as vg
    p = sub.add_parser("profile", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=positive_int, default=20,
                   help="hidden layers (default 20)")
    p.add_argument("--width", type=positive_int, default=64, help="hidden width (default 64)")
    p.add_argument("--inputs", type=positive_int, default=None,
                   help="input width (default: --width)")
    p.add_argument("--outputs", type=positive_int, default=None,
                   help="output classes (default 10)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="profile on a batch of your own data instead of random numbers: "
                        ".npz, .npy, .csv / .tsv or .parquet (as vgcore compare --data); the "
                        "input width and the classes come from the file, the batch is "
                        "--batch rows drawn at random (--seed) from its training part "
                        "(80%%), standardised")
    p.add_argument("--label", type=label_arg, metavar="COLUMN", default=None,
                   help="the label column of a --data table (a name or a 0-based index)")
    p.add_argument("--batch", type=positive_int, default=64, help="batch size (default 64)")
    p.add_argument("--activation", choices=list(vg.ACTIVATIONS), default="tanh",
                   metavar="NAME", help="hidden activation, one of: "
                   + ", ".join(vg.ACTIVATIONS) + " (default tanh)")
    p.add_argument("--init", choices=list(vg.INITIALISERS), default="standard", metavar="NAME",
                   help="weight initialiser, one of: " + ", ".join(vg.INITIALISERS)
                   + " (default standard)")
    p.add_argument("--sigma-w", type=positive_float, default=None,
                   help="weight scale for --init normal, gain for --init orthogonal")
    p.add_argument("--norm", choices=("none", "batch", "layer"), default="none",
                   help="normalise hidden layers (default none)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--steps", type=positive_int, default=20,
                   help="timed rounds, each of three SGD steps: timers on, measurements on, "
                        "measurements off (default 20)")
    p.add_argument("--warmup", type=nonneg_int, default=3,
                   help="untimed rounds first (default 3)")
    p.add_argument("--lr", type=positive_float, default=0.01,
                   help="SGD learning rate (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="vgcore's and BLAS threads (default: the OpenMP default)")
    p.add_argument("--rows", type=nonneg_int, default=24,
                   help="at most this many layers in the tables (0: all; default 24)")
    p.add_argument("--plot-dir", metavar="DIR", default=None,
                   help="write profile_layers.png and profile_gradient_flow.png there "
                        "(needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")
    p.set_defaults(func=run)
    return p


def _data_batch(args):
    """``(X, y, record)``: ``--batch`` rows of the --data file's training part, drawn at
    random with ``--seed``, in ``--dtype``."""
    if args.inputs is not None or args.outputs is not None:
        raise CommandError(f"--{'inputs' if args.inputs is not None else 'outputs'}: with "
                           f"--data the input width and the classes come from the file")
    data, rec = read_data_file(args.data, args.label, dtype=args.dtype)
    n = len(data.X_train)
    if n < args.batch:
        raise CommandError(f"--batch: {os.path.basename(args.data)} has {n} training rows "
                           f"(of {rec['samples']}; 20% are held out), fewer than the batch of "
                           f"{args.batch}; pass --batch {n} or less")
    idx = np.random.default_rng(args.seed + 1).choice(n, args.batch, replace=False)
    rec["profile_batch"] = f"{args.batch} rows drawn at random (seed {args.seed + 1}) from " \
                           f"the {n} training rows"
    return (np.ascontiguousarray(data.X_train[idx]),
            np.ascontiguousarray(data.y_train[idx]), data.n_classes, rec)


def _build(args, vg):
    if args.label is not None and args.data is None:
        raise CommandError("--label: names the label column of a --data file; add --data PATH")
    if args.data is not None:
        X, y, n_out, args.data_record = _data_batch(args)
        n_in = X.shape[1]
    else:
        args.data_record = None
        n_in = args.inputs or args.width
        n_out = args.outputs or 10
    sizes = [n_in] + [args.width] * args.depth + [n_out]
    try:
        net = vg.MLP(sizes, activation=args.activation, init=args.init, dtype=args.dtype,
                     seed=args.seed, sigma_w=args.sigma_w,
                     norm=None if args.norm == "none" else args.norm)
    except (ValueError, TypeError) as e:
        raise CommandError(str(e)) from None
    if args.norm == "batch" and args.batch < 2:
        raise CommandError("--batch: batch normalisation needs a batch of at least 2")
    if args.data is None:
        rng = np.random.default_rng(args.seed + 1)
        X = rng.standard_normal((args.batch, n_in)).astype(args.dtype)
        y = rng.integers(0, n_out, args.batch).astype(np.int64)
    return sizes, net, X, y


def _step(vg, net, opt, X, y, grad):
    t0 = perf()
    out = net.forward(X)
    t1 = perf()
    loss, d = vg.losses.cross_entropy(out, y, grad_out=grad)
    t2 = perf()
    net.backward(d, input_grad=False)
    t3 = perf()
    opt.step()
    t4 = perf()
    return loss, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def _memory(net, opt, X, y, batch):
    mem = net.memory_usage(batch)
    del mem["total"]
    mem.update(optimizer=opt.memory_usage(), batch=X.nbytes + y.nbytes)
    mem["total"] = sum(mem.values())
    return mem


def run(args):
    import vgcore as vg

    if args.plot_dir:
        plot_dir(args.plot_dir)                 # fail before the work, not after
    sizes, net, X, y = _build(args, vg)
    with limited_threads(args.threads):
        res = _profile(args, vg, sizes, net, X, y)
    res["plots"] = _plots(args, res) if args.plot_dir else None
    if args.json:
        print_json(res)
    else:
        _print_tables(args, res)
    return 0


def _profile(args, vg, sizes, net, X, y):
    opt = vg.optim.SGD(net, lr=args.lr)
    grad = np.empty((args.batch, sizes[-1]), net.dtype)
    L = net.n_layers
    kinds = ("profiled", "measured", "unmeasured")
    times = {k: [] for k in kinds}
    layer_t = []                                  # per profiled step: (4, L)
    losses = []
    note(args, f"vgcore profile: {args.warmup} warm-up and {args.steps} timed rounds of 3 steps "
               f"on {args.depth}x{args.width}, batch {args.batch} ...")
    try:
        for r in range(args.warmup + args.steps):
            order = kinds[r % 3:] + kinds[:r % 3]
            for kind in order:
                net.measure = kind != "unmeasured"
                if kind == "profiled":
                    net.profile(True)
                loss, ts = _step(vg, net, opt, X, y, grad)
                if kind == "profiled":
                    lt = net.layer_timings()
                    net.profile(False)
                if r < args.warmup:
                    continue
                losses.append(loss)
                times[kind].append(ts)
                if kind == "profiled":
                    layer_t.append(np.array([lt[p] for p in PHASES]))
        net.measure = True                                   # the last step, measured
        loss, _ = _step(vg, net, opt, X, y, grad)
        losses.append(loss)
        flow = net.gradient_flow()
    except (ValueError, TypeError) as e:
        raise CommandError(str(e)) from None

    # every time below is the mean over the faster half of the steps of its kind (ranked by
    # step time): a descheduled step does not count, and the parts add up to the total
    steps_ms, fast = {}, {}
    for k in kinds:
        a = np.array(times[k]) * 1e3                               # (steps, 4)
        fast[k] = np.argsort(a.sum(axis=1), kind="stable")[:max(1, (len(a) + 1) // 2)]
        d = {p: float(a[fast[k], i].mean()) for i, p in enumerate(STEP_PARTS)}
        d["total"] = float(sum(d.values()))
        steps_ms[k] = d
    lt_ms = np.stack(layer_t)[fast["profiled"]].mean(axis=0) * 1e3    # (4, L)

    # flops of the matrix products, per layer
    B = args.batch
    mk = np.array([2.0 * B * sizes[l] * sizes[l + 1] for l in range(L)])
    f_fwd = mk
    f_bwd = mk * 2
    f_bwd[0] = mk[0]                       # no input gradient for the first layer
    flops = float(f_fwd.sum() + f_bwd.sum())

    gemm = GemmAlone(sizes, B, net.dtype)
    peak, peak_how = core_peak_gflops(net.dtype)
    g_fwd, g_bwd = gemm.time(max(args.steps, 5))
    g_fwd, g_bwd = g_fwd * 1e3, g_bwd * 1e3

    def gf(fl, ms):
        return fl / (ms * 1e-3) / 1e9 if ms > 0 else math.nan

    prof = steps_ms["profiled"]
    layer_sum = float(lt_ms.sum())
    passes = prof["forward"] + prof["backward"]
    coverage = layer_sum / passes if passes > 0 else math.nan
    parts = {p: float(lt_ms[i].sum()) for i, p in enumerate(PHASES)}
    parts["loss"] = prof["loss"]
    parts["optimizer"] = prof["optimizer"]
    parts["other"] = max(passes - layer_sum, 0.0)     # Python and input checks in the calls
    phases = []
    for p in ("forward_gemm", "forward_elementwise", "backward_elementwise", "backward_gemm",
              "loss", "optimizer", "other"):
        row = dict(phase=p, ms=parts[p], share=parts[p] / prof["total"], gflops=None,
                   gemm_only_ms=None, gemm_only_gflops=None, pct_of_gemm_rate=None)
        if p in ("forward_gemm", "backward_gemm"):
            fl = f_fwd.sum() if p == "forward_gemm" else f_bwd.sum()
            g = float((g_fwd if p == "forward_gemm" else g_bwd).sum())
            row.update(gflops=gf(fl, parts[p]), gemm_only_ms=g, gemm_only_gflops=gf(fl, g),
                       pct_of_gemm_rate=100.0 * g / parts[p] if parts[p] > 0 else None)
        phases.append(row)
    meas, unmeas = steps_ms["measured"]["total"], steps_ms["unmeasured"]["total"]
    gemm_total = float(g_fwd.sum() + g_bwd.sum())
    layers = []
    for l in range(L):
        layers.append(dict(
            layer=l + 1, fan_in=sizes[l], fan_out=sizes[l + 1],
            activation=net.activations[l].name,
            **{f"{p}_ms": float(lt_ms[i, l]) for i, p in enumerate(PHASES)},
            total_ms=float(lt_ms[:, l].sum()),
            forward_gemm_gflops=gf(f_fwd[l], lt_ms[0, l]),
            backward_gemm_gflops=gf(f_bwd[l], lt_ms[3, l]),
            gemm_only_forward_ms=float(g_fwd[l]), gemm_only_backward_ms=float(g_bwd[l])))
    flow_d = flow.as_dict()
    flow_d.update(grad_ratio=flow.grad_ratio, delta_ratio=flow.delta_ratio,
                  nonfinite_forward_layer=flow.nonfinite_forward_layer,
                  nonfinite_backward_layer=flow.nonfinite_backward_layer)
    notes = []
    tot = {k: np.array(times[k]).sum(axis=1) for k in kinds}
    spread = {k: float(np.median(v) / v.min()) for k, v in tot.items()}
    noisy = {k: v for k, v in spread.items() if v > NOISY}
    if noisy:
        notes.append("noisy: the median step took " + ", ".join(
            f"{v:.2f}x the fastest ({k})" for k, v in noisy.items()) + "; another process "
            "may be using the cores: rerun, or try --threads 1, before trusting absolute times.")
    notes += [
        "times are means over the faster half of the steps of each kind; 'measured' is "
        "vgcore as it ships (gradient-flow measurements on), 'profiled' adds the per-layer "
        "timers the phase and layer tables come from.",
        f"GEMM-only: the same products alone through vgcore's BLAS ({_blas_name()} "
        f"{'sgemm' if net.dtype == np.float32 else 'dgemm'}) on preallocated arrays; a "
        f"call overhead of {gemm.overhead * 1e6:.2f} us per product (a 1x1 product's time) "
        "is subtracted.  '% of GEMM rate' is that time over the products' time in the step: "
        "above 100%, the step's own product kernels beat the BLAS call on these shapes; on "
        "the whole-step row, it is the products alone over the whole step.",
        "GFLOP/s count 2*batch*fan_in*fan_out per product: x@W forward; x.T@delta and "
        "delta@W.T backward (not the first layer's delta@W.T). Elementwise work is not counted.",
    ]
    return dict(
        config=dict(sizes=list(sizes), depth=args.depth, width=args.width, batch=B,
                    activation=args.activation, init=args.init, sigma_w=args.sigma_w,
                    norm=args.norm, dtype=args.dtype, steps=args.steps, warmup=args.warmup,
                    lr=args.lr, seed=args.seed, n_params=int(net.n_params),
                    loss="cross_entropy", optimizer="SGD", data=args.data_record),
        threads=vg.get_num_threads(), openmp=vg.openmp_enabled(), blas=vg.blas_info(),
        blas_line=blas_line(vg),
        steps_ms=steps_ms,
        measurement_cost_ms=meas - unmeas,
        measurement_cost_ratio=meas / unmeas if unmeas > 0 else None,
        timer_cost_ms=prof["total"] - meas,
        phases=phases, layers=layers,
        layer_sum_ms=layer_sum, layer_sum_over_passes=coverage,
        flops=flops, total_gflops=gf(flops, meas), gemm_only_ms=gemm_total,
        gemm_call_overhead_us=gemm.overhead * 1e6,
        gemm_only_gflops=gf(flops, gemm_total),
        core_peak_gflops=peak, core_peak_how=peak_how, kernels=vg.kernel_info(),
        memory_bytes=_memory(net, opt, X, y, B),
        loss_first=float(losses[0]), loss_last=float(losses[-1]),
        gradient_flow=flow_d, flow_summary=_flow_table(flow, args.rows),
        step_spread=spread, notes=notes)


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else format(x, spec)


def _pct(x):
    return "-" if x is None or not math.isfinite(x) else f"{x:.0f}%"


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _print_tables(args, r):
    c = r["config"]
    print(f"vgcore profile: {c['depth']} hidden layers of {c['width']} ({c['activation']}, "
          f"init {c['init']}, norm {c['norm']}), batch {c['batch']}, {c['dtype']}, "
          f"{c['sizes'][-1]} outputs, {c['n_params']} parameters; "
          f"SGD lr {c['lr']}, {c['steps']} timed rounds")
    if c.get("data"):
        d = c["data"]
        print(f"data: {data_text(d)}; {d['profile_batch']}")
    print(r["blas_line"])
    print("vgcore: " + kernels_line(r["kernels"]))
    print()
    print(f"{'step (ms)':34s} {'forward':>9s} {'loss':>8s} {'backward':>9s} "
          f"{'optimiser':>10s} {'total':>9s}")
    labels = {"measured": "measurements on (default)", "unmeasured": "measurements off",
              "profiled": "measurements on + layer timers"}
    for k in ("measured", "unmeasured", "profiled"):
        s = r["steps_ms"][k]
        print(f"{labels[k]:34s} {s['forward']:9.3f} {s['loss']:8.3f} {s['backward']:9.3f} "
              f"{s['optimizer']:10.3f} {s['total']:9.3f}")
    ratio = r["measurement_cost_ratio"]
    print(f"measurement cost: {r['measurement_cost_ms']:+.3f} ms a step (on / off = "
          f"{_fmt(ratio, '.3f')}); layer timers: {r['timer_cost_ms']:+.3f} ms a step")
    print()
    print(f"{'phase (profiled step)':30s} {'ms':>8s} {'share':>6s} {'GFLOP/s':>8s} "
          f"{'GEMM-only ms':>13s} {'GEMM-only GFLOP/s':>18s} {'% of GEMM rate':>15s}")
    for p in r["phases"]:
        print(f"{PHASE_LABELS[p['phase']]:30s} {p['ms']:8.3f} {p['share']:6.1%} "
              f"{_fmt(p['gflops'], '8.1f'):>8s} {_fmt(p['gemm_only_ms'], '13.3f'):>13s} "
              f"{_fmt(p['gemm_only_gflops'], '18.1f'):>18s} "
              f"{_pct(p['pct_of_gemm_rate']):>15s}")
    meas = r["steps_ms"]["measured"]["total"]
    gemm_pct = 100.0 * r["gemm_only_ms"] / meas if meas > 0 else None
    print(f"{'whole step (measurements on)':30s} {meas:8.3f} {'':6s} "
          f"{_fmt(r['total_gflops'], '8.1f'):>8s} {r['gemm_only_ms']:13.3f} "
          f"{_fmt(r['gemm_only_gflops'], '18.1f'):>18s} {_pct(gemm_pct):>15s}")
    print(f"the layers' times add up to {r['layer_sum_ms']:.3f} ms, "
          f"{_fmt(r['layer_sum_over_passes'], '.1%')} of the forward and backward calls")
    peak, tg = r["core_peak_gflops"], r["total_gflops"]
    if peak and tg:
        print(f"one core's product rate here: {peak:.1f} GFLOP/s ({r['core_peak_how']} on a "
              f"128 x 256 x 256 product in cache); the step (measurements on, "
              f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}) reaches "
              f"{tg / peak:.0%} of one core's rate")
    print()
    print("per layer (us; alone = the same products alone, through BLAS)")
    print(f"{'layer':>5s} {'in':>5s} {'out':>5s} {'fwd GEMM':>9s} {'fwd elem':>9s} "
          f"{'bwd elem':>9s} {'bwd GEMM':>9s} {'total':>9s} {'fwd GF/s':>9s} {'bwd GF/s':>9s} "
          f"{'alone fwd':>10s} {'alone bwd':>10s}")
    shown = shown_rows(len(r["layers"]), args.rows)
    for prev, i in zip([-1] + shown, shown):
        if i > prev + 1:
            print(gap_line(prev, i))
        lr = r["layers"][i]
        print(f"{lr['layer']:5d} {lr['fan_in']:5d} {lr['fan_out']:5d} "
              f"{lr['forward_gemm_ms'] * 1e3:9.1f} {lr['forward_elementwise_ms'] * 1e3:9.1f} "
              f"{lr['backward_elementwise_ms'] * 1e3:9.1f} {lr['backward_gemm_ms'] * 1e3:9.1f} "
              f"{lr['total_ms'] * 1e3:9.1f} {_fmt(lr['forward_gemm_gflops'], '9.1f'):>9s} "
              f"{_fmt(lr['backward_gemm_gflops'], '9.1f'):>9s} "
              f"{lr['gemm_only_forward_ms'] * 1e3:10.1f} {lr['gemm_only_backward_ms'] * 1e3:10.1f}")
    if len(shown) < len(r["layers"]):
        print(f"{len(shown)} of {len(r['layers'])} layers shown; --rows 0 shows all")
    print()
    m = r["memory_bytes"]
    print("memory")
    mlabels = dict(parameters="parameters (net.params)", gradients="gradients (net.grads)",
                   workspace=f"workspace, batch {c['batch']} (H, A, D, dX, ...)",
                   measurement="measurement buffers", normalisation="normalisation statistics",
                   optimizer="optimiser state", batch="the batch (X, labels)", total="total")
    for k, label in mlabels.items():
        print(f"  {label:42s} {_bytes(m[k]):>12s}")
    print()
    print(f"gradient flow at the last step (loss {r['loss_first']:.4f} at the first timed "
          f"step, {r['loss_last']:.4f} at the last)")
    print(r["flow_summary"])
    if r.get("plots"):
        for path in r["plots"]["written"]:
            print(f"wrote {path}")
    if not args.quiet:
        print()
        for n in r["notes"]:
            print(f"note: {n}")


def _flow_table(flow, rows):
    """``flow.summary`` with at most ``rows`` layers (0: all), its note worded for this
    command."""
    text = flow.summary(None if rows == 0 else max(2, rows))
    return text.replace("summary(max_rows=None) shows all", "--rows 0 shows all")


def _plots(args, r):
    d = plot_dir(args.plot_dir)
    names = ["profile_layers.png", "profile_gradient_flow.png"]
    mpl = load_matplotlib()
    if mpl is None:
        msg = f"matplotlib is not installed: skipped the plots {', '.join(names)}"
        note(args, f"vgcore profile: {msg}")
        return dict(written=[], skipped=names, reason=msg)
    layers = r["layers"]
    x = np.arange(1, len(layers) + 1)
    fig = new_figure(mpl, max(6, len(layers) * 0.18 + 3), 4, layout="tight")
    ax = fig.subplots()
    bottom = np.zeros(len(layers))
    for p in PHASES:
        v = np.array([lr[f"{p}_ms"] for lr in layers]) * 1e3
        ax.bar(x, v, bottom=bottom, label=PHASE_LABELS[p])
        bottom += v
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("time per step (us)")
    c = r["config"]
    ax.set_title(f"vgcore profile: {c['depth']}x{c['width']} {c['activation']}, batch "
                 f"{c['batch']}, {c['dtype']}")
    ax.set_ylim(0, max(float(bottom.max()), 1e-9) * 1.35)        # room for the legend
    ax.legend(fontsize=8, ncol=2, loc="upper center")
    out = [os.path.join(d, names[0])]
    save_png(mpl, fig, out[0])

    fl = r["gradient_flow"]
    fig = new_figure(mpl, 6, 4, layout="tight")
    ax = fig.subplots()
    for key, label in (("grad_norm", "||dL/dW_l|| (weight gradient)"),
                       ("delta_rms", "RMS of delta_l = dL/dh_l (error signal)")):
        v = np.asarray(fl[key], float)
        ax.semilogy(x, np.where(v > 0, v, np.nan), marker="o" if key == "grad_norm" else "s",
                    ms=3, ls="-" if key == "grad_norm" else "--", label=label)
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("gradient size (log scale)")
    ax.set_title("gradient flow at the last step")
    ax.legend(fontsize=8)
    out.append(os.path.join(d, names[1]))
    save_png(mpl, fig, out[1])
    return dict(written=out, skipped=[], reason=None)

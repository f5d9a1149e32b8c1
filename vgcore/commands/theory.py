"""``vgcore theory``: the mean-field theory of an activation, as tables (and plots).

For one activation (vgcore.theory; Poole et al. 2016, Schoenholz et al. 2017):

- chi_1 = sigma_w2 E[phi'(h)^2] at the fixed point q*, and the depth scales xi_c
  (correlations) and xi_grad (gradients, signed: > 0 vanishing towards the input, < 0
  exploding), over a grid of sigma_w2 at --sigma-b2;
- chi_1 over the grid of (sigma_w2, sigma_b2);
- the critical line sigma_w2*(sigma_b2), the edge of chaos (chi_1 = 1), over the sigma_b2 range;
- the predicted gradient profile of --depth hidden layers for a few sigma_w2 values:
  E||dL/dh_l||^2 relative to the last hidden layer (and its per-unit RMS).

sigma_w2 is fan_in * Var(W) (He init: 2, LeCun and square Glorot: 1, vgcore's "standard":
1/3), sigma_b2 = Var(b).  The sigma_w2 grid defaults to 0.5x .. 1.5x the critical value at
--sigma-b2 (0.5 .. 3 when there is none).

JSON (--json) keys: activation, sigma_b2, q0, depth, critical_sigma_w2, grid {sigma_w2,
sigma_b2, chi_1 (rows: sigma_w2, columns: sigma_b2)}, table [{sigma_w2, q_star, chi_1,
c_star, chi_c, xi_c, xi_grad, phase}], critical_line [{sigma_b2, sigma_w2}], profiles
[{sigma_w2, sigma_b2, q, chi, delta_sq, delta_rms, first_over_last}], plots, notes.
Numbers that are not finite (an infinite depth scale at exactly chi_1 = 1, a diverging q*)
are null.
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from vgcore.commands._common import (CommandError, nonneg_float, nonneg_int, note, plot_dir,
                                     positive_float, positive_int, print_json, shown_rows)
from vgcore.core._ui import load_matplotlib, new_figure, save_png

HELP = "mean-field theory: chi_1, depth scales, edge of chaos, predicted gradient profile"
EXAMPLES = """examples:
  vgcore theory                                  # tanh, sigma_b2 = 0.05
  vgcore theory --activation relu --sigma-b2 0
  vgcore theory --activation tanh --sigma-w2-range 0.5 3 --sigma-w2-points 26
  vgcore theory --activation sigmoid --depth 50 --profile-sigma-w2 1 10 103
  vgcore theory --activation selu --plot-dir plots/ --json > theory.json"""



def register(sub):
    import vgcore as vg
    p = sub.add_parser("theory", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activation", choices=list(vg.ACTIVATIONS), default="tanh", metavar="NAME",
                   help="one of: " + ", ".join(vg.ACTIVATIONS) + " (default tanh)")
    p.add_argument("--sigma-b2", type=nonneg_float, default=0.05,
                   help="bias variance of the sigma_w2 table and the profiles (default 0.05)")
    p.add_argument("--sigma-w2-range", type=positive_float, nargs=2, metavar=("LO", "HI"),
                   default=None, help="sigma_w2 grid (default: 0.5x to 1.5x the critical value)")
    p.add_argument("--sigma-w2-points", type=positive_int, default=11,
                   help="points of the sigma_w2 grid (default 11)")
    p.add_argument("--sigma-b2-range", type=nonneg_float, nargs=2, metavar=("LO", "HI"),
                   default=(0.0, 0.5),
                   help="sigma_b2 grid of the chi_1 table and the critical line "
                        "(default 0 0.5)")
    p.add_argument("--sigma-b2-points", type=positive_int, default=6,
                   help="points of the sigma_b2 grid (default 6)")
    p.add_argument("--depth", type=positive_int, default=20,
                   help="hidden layers of the predicted gradient profile (default 20)")
    p.add_argument("--profile-sigma-w2", type=positive_float, nargs="+", metavar="SW2",
                   default=None,
                   help="sigma_w2 values of the profiles (default: 0.8x, 1x, 1.25x critical)")
    p.add_argument("--q0", type=nonneg_float, default=1.0,
                   help="mean squared input entry, start of the variance map (default 1)")
    p.add_argument("--rows", type=nonneg_int, default=12,
                   help="at most this many layers in the profile table (0: all; default 12)")
    p.add_argument("--plot-dir", metavar="DIR", default=None,
                   help="write theory_chi1_<act>.png (chi_1 heatmap with the critical line) "
                        "and theory_profile_<act>.png there (needs matplotlib)")
    p.add_argument("--heatmap-points", type=positive_int, default=41,
                   help="grid points per axis of the heatmap (default 41)")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    p.add_argument("--quiet", action="store_true", help="no notes on stderr")
    p.set_defaults(func=run)
    return p


def _grid(lo, hi, n, name):
    if lo > hi:
        raise CommandError(f"{name}: expected LO <= HI, got {lo:g} > {hi:g}")
    if n == 1 or lo == hi:
        return np.array([lo])
    return np.linspace(lo, hi, n)


def _critical(T, act, sb, q0):
    try:
        return T.critical_sigma_w2(act, sb, q0=q0)
    except RuntimeError:
        return None


def run(args):
    from vgcore.measure import theory as T

    act, sb, q0 = args.activation, args.sigma_b2, args.q0
    if args.plot_dir:
        plot_dir(args.plot_dir)                 # fail before the work, not after
    notes = []
    crit = _critical(T, act, sb, q0)
    if crit is None:
        notes.append(f"{act} has no edge of chaos at sigma_b2={sb:g} (chi_1 does not cross 1 "
                     f"for sigma_w2 in [1e-8, 1e8])")
    if args.sigma_w2_range is not None:
        sw_grid = _grid(*args.sigma_w2_range, args.sigma_w2_points, "--sigma-w2-range")
    elif crit is not None:
        sw_grid = _grid(0.5 * crit, 1.5 * crit, args.sigma_w2_points, "--sigma-w2-range")
    else:
        sw_grid = _grid(0.5, 3.0, args.sigma_w2_points, "--sigma-w2-range")
    sb_grid = _grid(*args.sigma_b2_range, args.sigma_b2_points, "--sigma-b2-range")

    table = []
    for sw in sw_grid:
        d = T.depth_scales(act, float(sw), sb, q0=q0)
        table.append(dict(sigma_w2=float(sw), q_star=d.q_star, chi_1=d.chi_1, c_star=d.c_star,
                          chi_c=d.chi_c, xi_c=d.xi_c, xi_grad=d.xi_grad, phase=d.phase))
    chi_grid = np.array([[T.chi1(act, float(sw), float(b), q0=q0) for b in sb_grid]
                         for sw in sw_grid])
    line = [dict(sigma_b2=float(b), sigma_w2=_critical(T, act, float(b), q0)) for b in sb_grid]

    prof_sw = args.profile_sigma_w2 or ([0.8 * crit, crit, 1.25 * crit] if crit is not None
                                        else [0.5, 1.0, 2.0])
    profiles = []
    for sw in prof_sw:
        g = T.predicted_gradient_profile(act, depth=args.depth, sigma_w2=float(sw),
                                         sigma_b2=sb, q0=q0)
        profiles.append(dict(sigma_w2=float(sw), sigma_b2=sb, q=g.q, chi=g.chi,
                             delta_sq=g.delta_sq, delta_rms=g.delta_rms,
                             first_over_last=float(g.delta_sq[0])))
    if any(r["q_star"] is not None and math.isinf(r["q_star"]) for r in table):
        notes.append("q* = inf (null in JSON): the variance diverges there; chi_1 is then its "
                     "q -> inf limit")
    res = dict(activation=act, sigma_b2=sb, q0=q0, depth=args.depth, critical_sigma_w2=crit,
               grid=dict(sigma_w2=sw_grid, sigma_b2=sb_grid, chi_1=chi_grid),
               table=table, critical_line=line, profiles=profiles, notes=notes)
    res["plots"] = _plots(args, res, T) if args.plot_dir else None
    if args.json:
        print_json(res)
    else:
        _print_tables(args, res)
    return 0


def _f(x, spec=".4g", width=10):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        s = "-"
    elif isinstance(x, float) and math.isinf(x):
        s = "inf" if x > 0 else "-inf"
    else:
        s = format(x, spec)
    return f"{s:>{width}s}"


def _print_tables(args, r):
    act, sb = r["activation"], r["sigma_b2"]
    crit = r["critical_sigma_w2"]
    print(f"vgcore theory: {act}, q0 = {r['q0']:g} (mean-field, infinite width)")
    print(f"edge of chaos at sigma_b2 = {sb:g}: sigma_w2* = "
          f"{'none' if crit is None else format(crit, '.4f')}")
    print()
    print(f"chi_1 and depth scales at sigma_b2 = {sb:g} (xi in layers; xi_grad > 0: gradients "
          f"vanish towards the input, < 0: explode)")
    print(f"{'sigma_w2':>10s} {'q*':>10s} {'chi_1':>10s} {'c*':>10s} {'chi_c':>10s} "
          f"{'xi_c':>10s} {'xi_grad':>10s}  phase")
    for t in r["table"]:
        print(f"{t['sigma_w2']:10.4g} {_f(t['q_star'])} {_f(t['chi_1'], '.5f')} "
              f"{_f(t['c_star'])} {_f(t['chi_c'], '.5f')} {_f(t['xi_c'], '.3g')} "
              f"{_f(t['xi_grad'], '.3g')}  {t['phase']}")
    print()
    g = r["grid"]
    print("chi_1 over (sigma_w2, sigma_b2)")
    corner = "sw2 \\ sb2"
    print(f"{corner:>10s} " + " ".join(f"{b:>9.3g}" for b in g["sigma_b2"]))
    for sw, row in zip(g["sigma_w2"], g["chi_1"]):
        print(f"{sw:10.4g} " + " ".join(f"{x:9.4f}" for x in row))
    print()
    print("critical line (edge of chaos, chi_1 = 1)")
    print(f"{'sigma_b2':>10s} {'sigma_w2*':>10s}")
    for c in r["critical_line"]:
        print(f"{c['sigma_b2']:10.4g} {_f(c['sigma_w2'], '.4f')}")
    print()
    prof = r["profiles"]
    print(f"predicted gradient profile, {r['depth']} hidden layers, sigma_b2 = {sb:g}: "
          f"E||dL/dh_l||^2 / E||dL/dh_{r['depth']}||^2 (layer 1 = input side)")
    print(f"{'layer':>5s} " + " ".join(f"{'sw2=' + format(p['sigma_w2'], '.4g'):>14s}"
                                       for p in prof))
    for i in shown_rows(r["depth"], args.rows):
        print(f"{i + 1:5d} " + " ".join(f"{p['delta_sq'][i]:14.4e}" for p in prof))
    if r.get("plots"):
        for path in r["plots"]["written"]:
            print(f"wrote {path}")
    if not args.quiet:
        for n in r["notes"]:
            print(f"note: {n}")


def _plots(args, r, T):
    d = plot_dir(args.plot_dir)
    act = r["activation"]
    names = [f"theory_chi1_{act}.png", f"theory_profile_{act}.png"]
    mpl = load_matplotlib()
    if mpl is None:
        msg = f"matplotlib is not installed: skipped the plots {', '.join(names)}"
        note(args, f"vgcore theory: {msg}")
        return dict(written=[], skipped=names, reason=msg)
    from matplotlib.colors import LogNorm

    n = args.heatmap_points
    sw_lo, sw_hi = float(r["grid"]["sigma_w2"][0]), float(r["grid"]["sigma_w2"][-1])
    sb_lo, sb_hi = float(r["grid"]["sigma_b2"][0]), float(r["grid"]["sigma_b2"][-1])
    sw = np.linspace(sw_lo, sw_hi, n) if sw_hi > sw_lo else np.array([sw_lo])
    sb = np.linspace(sb_lo, sb_hi, n) if sb_hi > sb_lo else np.array([sb_lo])
    chi = np.array([[T.chi1(act, float(w), float(b), q0=r["q0"]) for w in sw] for b in sb])
    crit = [(float(b), _critical(T, act, float(b), r["q0"])) for b in sb]
    fig = new_figure(mpl, 6.5, 4.5, layout="tight")
    ax = fig.subplots()
    pos = chi[chi > 0]
    lo = float(pos.min()) if pos.size else 0.1
    hi = float(chi.max()) if chi.size else 10.0
    span = max(1.0 / lo if lo > 0 else 10.0, hi, 1.01)
    mesh = ax.pcolormesh(sw, sb, np.where(chi > 0, chi, np.nan), shading="auto",
                         cmap="RdBu_r", norm=LogNorm(vmin=1 / span, vmax=span))
    fig.colorbar(mesh, ax=ax, label="chi_1 (< 1 ordered: vanishing, > 1 chaotic: exploding)")
    cb, cw = zip(*[(b, w) for b, w in crit if w is not None]) if any(
        w is not None for _, w in crit) else ((), ())
    if cb:
        ax.plot(cw, cb, "k-", lw=2, label="edge of chaos sigma_w2*(sigma_b2)")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(sw[0], sw[-1])
    ax.set_xlabel("sigma_w2 (fan_in Var W)")
    ax.set_ylabel("sigma_b2 (Var b)")
    ax.set_title(f"chi_1 of {act} (q0 = {r['q0']:g})")
    out = [os.path.join(d, names[0])]
    save_png(mpl, fig, out[0])

    fig = new_figure(mpl, 6.5, 4.5, layout="tight")
    ax = fig.subplots()
    layers = np.arange(1, r["depth"] + 1)
    for p in r["profiles"]:
        ax.semilogy(layers, np.asarray(p["delta_sq"], float), marker="o", ms=3,
                    label=f"sigma_w2 = {p['sigma_w2']:.4g}")
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.set_ylabel("E||dL/dh_l||^2 / E||dL/dh_last||^2")
    ax.set_title(f"predicted gradient profile: {act}, sigma_b2 = {r['sigma_b2']:g}")
    ax.legend(fontsize=8)
    out.append(os.path.join(d, names[1]))
    save_png(mpl, fig, out[1])
    return dict(written=out, skipped=[], reason=None)

"""``vgcore theory``: the theory of signal propagation at initialisation, as tables (and plots).

For one activation (vgcore.theory; docs/theory.md has every formula and its reference):

plain stacks (the default; with --dropout p, Schoenholz et al. 2017's dropout shift)
  - chi_1 = sigma_w2 E[phi'(h)^2] / (1 - p) at the fixed point q*, and the depth scales xi_c
    (correlations) and xi_grad (gradients, signed: > 0 vanishing towards the input, < 0
    exploding), over a grid of sigma_w2 at --sigma-b2;
  - chi_1 over the grid of (sigma_w2, sigma_b2);
  - the critical line sigma_w2*(sigma_b2), the edge of chaos (chi_1 = 1);
  - the predicted gradient profile of --depth hidden layers for a few sigma_w2 values:
    E||dL/dh_l||^2 relative to the last hidden layer.
--norm layer
  the same tables for layer norm's variance map and chi_1 (q_hat = q / (q + eps) is what the
  activation sees).
--norm batch --batch B
  Yang et al. 2019: the per-layer growth lambda(B) of E||dL/dz||^2 towards the input in a deep
  batch-normalised stack (independent of sigma_w2), over batch sizes, with its limits, the
  expectations over batch norm's output, and the predicted profile.
the input-output Jacobian (plain stacks, with or without --dropout)
  the mean and relative variance of its squared singular values for Gaussian and orthogonal
  weights at the profiles' sigma_w2, predicted by free probability (Pennington et al. 2017)
  and measured on real networks of --width (default 64) square layers, and where dynamical
  isometry holds.
--residual ALPHA (or auto; --residual-init zero; with --norm and --dropout too)
  the forward recursion of the residual stream, layer by layer: the branch's q_l, the second
  moment Q_l and mean M_l of the stream, and Q_l without the mean's cross term (what the
  familiar L ln(1 + alpha^2) assumes), and the predicted gradient profiles.

sigma_w2 is fan_in * Var(W) (He init: 2, LeCun and square Glorot: 1, vgcore's "standard":
1/3), sigma_b2 = Var(b).  The sigma_w2 grid defaults to 0.5x .. 1.5x the critical value at
--sigma-b2 (0.5 .. 3 when there is none).  --width adds the finite-width band (Hanin & Rolnick
2018) to the profiles of plain relu and linear stacks.

JSON (--json) keys: activation, sigma_b2, q0, depth, norm, batch, residual, residual_init,
dropout, width, critical_sigma_w2, critical_reason, grid {sigma_w2, sigma_b2, chi_1 (rows:
sigma_w2, columns: sigma_b2)}, table [{sigma_w2, q_star, chi_1, c_star, chi_c, xi_c, xi_grad,
phase}] (layer norm: q_star, q_hat, chi_1, xi_grad, phase), critical_line [{sigma_b2,
sigma_w2}], profiles [{sigma_w2, sigma_b2, q, chi, delta_sq, delta_rms, first_over_last,
band_low, band_high}], batch_norm {factor, stats, by_batch [{batch, factor}], limits} (with
--norm batch), residual_stream {alpha, sigma_w2, layers [{layer, q, second_moment,
second_moment_without_mean, mean}]} (with --residual), dropout_effect (with --dropout),
spectrum {inputs, width, rows [{sigma_w2, weights, predicted_mean,
predicted_relative_variance, predicted_zero_fraction, isometric, summary, measured_mean,
measured_relative_variance, measured_width}]} (plain stacks),
plots, notes.  Numbers that are not finite (an infinite depth scale at exactly chi_1 = 1, a
diverging q*) are null.
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from vgcore.commands._common import (CommandError, nonneg_float, nonneg_int, note, plot_dir,
                                     positive_float, positive_int, print_json, shown_rows)
from vgcore.core._ui import load_matplotlib, new_figure, save_png

HELP = "signal-propagation theory: chi_1, depth scales, edge of chaos, batch norm, residual"
EXAMPLES = """examples:
  vgcore theory                                  # tanh, sigma_b2 = 0.05
  vgcore theory --activation relu --sigma-b2 0 --width 128
  vgcore theory --activation tanh --sigma-w2-range 0.5 3 --sigma-w2-points 26
  vgcore theory --activation sigmoid --depth 50 --profile-sigma-w2 1 10 103
  vgcore theory --activation relu --norm batch --batch 64
  vgcore theory --activation tanh --norm layer
  vgcore theory --activation relu --residual 0.2
  vgcore theory --activation tanh --dropout 0.1
  vgcore theory --activation selu --plot-dir plots/ --json > theory.json"""

BATCHES = (4, 8, 16, 32, 64, 128, 256, 1024)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text}")
    return value


def _residual(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not math.isfinite(value) or value == 0.0:
        raise argparse.ArgumentTypeError(f"expected a finite non-zero scale or 'auto', got "
                                         f"{text}")
    return value


def _batch(text: str):
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'inf', got "
                                         f"{text!r}") from None
    if value < 4:
        raise argparse.ArgumentTypeError(f"expected a batch of 4 or more (batch norm's "
                                         f"expected gradient diverges for B <= 3), got {value}")
    return value


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
    p.add_argument("--norm", choices=("none", "batch", "layer"), default="none",
                   help="normalisation in every hidden layer (default none)")
    p.add_argument("--batch", type=_batch, default=None, metavar="B",
                   help="batch size for --norm batch (an integer >= 4, or inf)")
    p.add_argument("--norm-eps", type=positive_float, default=1e-5,
                   help="the normalisations' epsilon (default 1e-5, vgcore's)")
    p.add_argument("--residual", type=_residual, default=None, metavar="ALPHA",
                   help="residual blocks x + ALPHA phi(x W + b) in every hidden layer "
                        "('auto': 1/sqrt(depth))")
    p.add_argument("--residual-init", choices=("zero",), default=None,
                   help="start every residual branch at zero (SkipInit / Fixup)")
    p.add_argument("--sigma-w2", type=positive_float, default=None, metavar="SW2",
                   help="sigma_w2 of the residual-stream table (default: the plain critical "
                        "value, or 1)")
    p.add_argument("--dropout", type=_probability, default=0.0, metavar="P",
                   help="dropout probability on every hidden layer (default 0)")
    p.add_argument("--width", type=positive_int, default=None,
                   help="hidden width: adds the finite-width band to the profiles of plain "
                        "relu and linear stacks")
    p.add_argument("--rows", type=nonneg_int, default=12,
                   help="at most this many layers in the profile table (0: all; default 12)")
    p.add_argument("--plot-dir", metavar="DIR", default=None,
                   help="write theory_chi1_<act>.png (the per-layer factor over (sigma_w2, "
                        "sigma_b2) with the critical line; lambda(B) with --norm batch; the "
                        "stream's second moment with --residual) and theory_profile_<act>.png "
                        "there (needs matplotlib)")
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

    if args.plot_dir:
        plot_dir(args.plot_dir)                 # fail before the work, not after
    norm = None if args.norm == "none" else args.norm
    if norm == "batch" and args.batch is None:
        raise CommandError("--batch: --norm batch needs the batch size (batch norm's theory "
                           "depends on it), e.g. --batch 64")
    if args.batch is not None and norm != "batch":
        raise CommandError("--batch: applies to --norm batch only")
    if args.residual_init and args.residual is None:
        raise CommandError("--residual-init: applies to residual blocks; add --residual")
    res = dict(activation=args.activation, sigma_b2=args.sigma_b2, q0=args.q0,
               depth=args.depth, norm=norm, batch=args.batch, residual=args.residual,
               residual_init=args.residual_init, dropout=args.dropout, width=args.width,
               notes=[])
    if args.residual is not None:
        _residual_tables(args, res, T)
    elif norm == "batch":
        _batch_norm_tables(args, res, T)
    else:
        _plain_tables(args, res, T, norm)
        if norm is None:
            _spectrum_tables(args, res, T)
    res["plots"] = _plots(args, res, T) if args.plot_dir else None
    if args.json:
        print_json(res)
    else:
        _print(args, res)
    return 0


# ------------------------------------------------------------------------------ computations

def _profiles(args, res, T, sws, **family):
    out = []
    for sw in sws:
        g = T.predicted_gradient_profile(args.activation, depth=args.depth, sigma_w2=float(sw),
                                         sigma_b2=args.sigma_b2, q0=args.q0, width=args.width,
                                         **family)
        band = g.band(2.0)
        out.append(dict(sigma_w2=float(sw), sigma_b2=args.sigma_b2, q=g.q, chi=g.chi,
                        delta_sq=g.delta_sq, delta_rms=g.delta_rms,
                        first_over_last=float(g.delta_sq[0]),
                        band_low=None if band is None else band[0],
                        band_high=None if band is None else band[1]))
        for n in g.notes:
            if n not in res["notes"]:
                res["notes"].append(n)
        if args.width is not None and band is None and g.band_reason and \
                g.band_reason not in res["notes"]:
            res["notes"].append(g.band_reason)
    return out


def _plain_tables(args, res, T, norm):
    act, sb, q0, p = args.activation, args.sigma_b2, args.q0, args.dropout
    eps = args.norm_eps
    if norm is None and p == 0.0:
        crit = _critical(T, act, sb, q0)
        reason = None if crit is not None else (
            f"{act} has no edge of chaos at sigma_b2={sb:g} (chi_1 does not cross 1 for "
            f"sigma_w2 in [1e-8, 1e8])")
    else:
        cp = T.critical_point(act, sb, norm=norm, dropout=p, q0=q0, norm_eps=eps)
        crit = cp.sigma_w2 if math.isfinite(cp.sigma_w2) else None
        reason = cp.reason
        if cp.note:
            res["notes"].append(cp.note)
    if reason:
        res["notes"].append(reason)
    if args.sigma_w2_range is not None:
        sw_grid = _grid(*args.sigma_w2_range, args.sigma_w2_points, "--sigma-w2-range")
    elif crit is not None:
        sw_grid = _grid(0.5 * crit, 1.5 * crit, args.sigma_w2_points, "--sigma-w2-range")
    else:
        sw_grid = _grid(0.5, 3.0, args.sigma_w2_points, "--sigma-w2-range")
    sb_grid = _grid(*args.sigma_b2_range, args.sigma_b2_points, "--sigma-b2-range")

    table = []
    for sw in sw_grid:
        if norm == "layer":
            q = T.layer_norm_fixed_point(act, float(sw), sb, q0, eps=eps, dropout=p)
            x1 = T.layer_norm_chi1(act, float(sw), sb, q=q, eps=eps, dropout=p)
            xi = math.inf if abs(x1 - 1) <= 1e-12 else (-1.0 / math.log(x1) if x1 > 0 else 0.0)
            table.append(dict(sigma_w2=float(sw), q_star=q, q_hat=q / (q + eps), chi_1=x1,
                              xi_grad=xi, phase="critical" if abs(x1 - 1) <= 1e-12
                              else "ordered" if x1 < 1 else "chaotic"))
        else:
            d = T.depth_scales(act, float(sw), sb, q0=q0, dropout=p)
            table.append(dict(sigma_w2=float(sw), q_star=d.q_star, chi_1=d.chi_1,
                              c_star=d.c_star, chi_c=d.chi_c, xi_c=d.xi_c, xi_grad=d.xi_grad,
                              phase=d.phase))
    if norm is None and p == 0.0:
        chi_grid = np.array([[T.chi1(act, float(sw), float(b), q0=q0) for b in sb_grid]
                             for sw in sw_grid])
        line = [dict(sigma_b2=float(b), sigma_w2=_critical(T, act, float(b), q0))
                for b in sb_grid]
    else:
        chi_grid = np.array([[T.gradient_growth(act, float(sw), float(b), norm=norm, dropout=p,
                                                q0=q0, norm_eps=eps).factor
                              for b in sb_grid] for sw in sw_grid])
        line = []
        for b in sb_grid:
            v = T.critical_point(act, float(b), norm=norm, dropout=p, q0=q0,
                                 norm_eps=eps).sigma_w2
            line.append(dict(sigma_b2=float(b), sigma_w2=v if math.isfinite(v) else None))
    prof_sw = args.profile_sigma_w2 or ([0.8 * crit, crit, 1.25 * crit] if crit is not None
                                        else [0.5, 1.0, 2.0])
    profiles = _profiles(args, res, T, prof_sw, norm=norm, dropout=p, norm_eps=eps)
    if any(r["q_star"] is not None and math.isinf(r["q_star"]) for r in table):
        res["notes"].append("q* = inf (null in JSON): the variance diverges there; chi_1 is "
                            "then its q -> inf limit")
    res.update(critical_sigma_w2=crit, critical_reason=reason,
               grid=dict(sigma_w2=sw_grid, sigma_b2=sb_grid, chi_1=chi_grid), table=table,
               critical_line=line, profiles=profiles)
    if p > 0 and norm is None:
        ref = crit if crit is not None else float(sw_grid[len(sw_grid) // 2])
        e = T.dropout_effect(act, ref, sb, p, q0=q0)
        res["dropout_effect"] = dict(
            sigma_w2=ref, p=p,
            without=dict(q_star=e.without.q_star, chi_1=e.without.chi_1,
                         c_star=e.without.c_star, xi_c=e.without.xi_c),
            with_dropout=dict(q_star=e.with_dropout.q_star, chi_1=e.with_dropout.chi_1,
                              c_star=e.with_dropout.c_star, xi_c=e.with_dropout.xi_c),
            critical_sigma_w2_without=e.critical_sigma_w2_without,
            critical_sigma_w2_with=e.critical_sigma_w2_with)


SPECTRUM_INPUTS = 16


def _spectrum_tables(args, res, T):
    """The input-output Jacobian's squared singular values at each profile sigma_w2, for
    Gaussian and orthogonal weights: predicted (free probability) and, without dropout,
    measured on real networks of --width (default 64) square layers."""
    import vgcore as vg
    width = args.width or 64
    rows = []
    X = np.random.default_rng(0).standard_normal((SPECTRUM_INPUTS, width)) * math.sqrt(args.q0)
    for prof in res["profiles"]:
        sw = prof["sigma_w2"]
        for weights, init in (("gaussian", "normal"), ("orthogonal", "orthogonal")):
            pred = T.predicted_jacobian_spectrum(args.activation, depth=args.depth,
                                                 sigma_w2=sw, sigma_b2=args.sigma_b2,
                                                 weights=weights, q0=args.q0,
                                                 dropout=args.dropout)
            row = dict(sigma_w2=sw, weights=weights, predicted_mean=pred.mean,
                       predicted_relative_variance=pred.relative_variance,
                       predicted_zero_fraction=pred.zero_mass, isometric=pred.isometric,
                       summary=pred.summary, measured_mean=None,
                       measured_relative_variance=None, measured_width=None)
            if args.dropout == 0.0:
                net = vg.MLP([width] * (args.depth + 2), activation=args.activation,
                             init=init, sigma_w=math.sqrt(sw),
                             sigma_b=math.sqrt(args.sigma_b2) if args.sigma_b2 > 0 else None,
                             dtype="float64", seed=0)
                lam = T.jacobian_singular_values(net, X).singular_values.ravel() ** 2
                m1 = float(lam.mean())
                row.update(measured_mean=m1, measured_width=width,
                           measured_relative_variance=float(np.mean(lam * lam)) / m1 ** 2 - 1
                           if m1 > 0 else None)
            rows.append(row)
    res["spectrum"] = dict(inputs=SPECTRUM_INPUTS if args.dropout == 0.0 else 0,
                           width=width if args.dropout == 0.0 else None, rows=rows)
    if args.dropout:
        res["notes"].append("Jacobian spectrum: measured only without dropout (dropout would "
                            "draw a different mask for every row of the Jacobian)")


def _batch_norm_tables(args, res, T):
    act, B = args.activation, args.batch
    st = T.batch_norm_stats(act, B)
    by_batch = [dict(batch=b, factor=T.batch_norm_gradient_factor(act, b))
                for b in sorted(set(BATCHES) | ({B} if math.isfinite(B) else set()))]
    by_batch.append(dict(batch=math.inf, factor=T.batch_norm_gradient_factor(act, math.inf)))
    for row in by_batch:
        row["over_depth"] = row["factor"] ** (args.depth - 1)
    cp = T.critical_point(act, args.sigma_b2, norm="batch", batch=B)
    sws = args.profile_sigma_w2 or [1.0]
    profiles = _profiles(args, res, T, sws, norm="batch", batch=B, dropout=args.dropout,
                         norm_eps=args.norm_eps)
    growth = T.gradient_growth(act, 1.0, args.sigma_b2, norm="batch", batch=B,
                               dropout=args.dropout).factor
    res.update(critical_sigma_w2=None, critical_reason=cp.reason, profiles=profiles,
               batch_norm=dict(
                   factor=st.factor, factor_with_dropout=growth,
                   stats=dict(mean=st.mean, second_moment=st.second_moment,
                              cross_moment=st.cross_moment, mu1=st.mu1, nu=st.nu,
                              kappa1=st.kappa1, kappa2=st.kappa2),
                   by_batch=by_batch,
                   limits=dict(identity=None if not math.isfinite(B) else (B - 2) / (B - 3),
                               relu_large_batch=math.pi / (math.pi - 1))))


def _residual_tables(args, res, T):
    act, sb, q0 = args.activation, args.sigma_b2, args.q0
    norm = None if args.norm == "none" else args.norm
    crit = _critical(T, act, sb, q0)
    sw = args.sigma_w2 if args.sigma_w2 is not None else (crit if crit is not None else 1.0)
    alpha = T.residual_alpha(args.residual, args.depth)
    stream = T.residual_moments(act, args.depth, sw, sb, args.residual, q0=q0,
                                residual_init=args.residual_init, norm=norm, batch=args.batch,
                                dropout=args.dropout)
    cp = T.critical_point(act, sb, residual=args.residual, norm=norm, batch=args.batch,
                          dropout=args.dropout)
    sws = args.profile_sigma_w2 or [0.8 * sw, sw, 1.25 * sw]
    profiles = _profiles(args, res, T, sws, norm=norm, batch=args.batch,
                         residual=args.residual, residual_init=args.residual_init,
                         dropout=args.dropout, norm_eps=args.norm_eps)
    layers = [dict(layer=i + 1, q=stream["q"][i], second_moment=stream["second_moment"][i],
                   second_moment_without_mean=stream["second_moment_without_mean"][i],
                   mean=stream["mean"][i]) for i in range(args.depth)]
    res.update(critical_sigma_w2=None, critical_reason=cp.reason, profiles=profiles,
               residual_stream=dict(alpha=alpha, sigma_w2=sw, layers=layers))


# ------------------------------------------------------------------------------ printing

def _f(x, spec=".4g", width=10):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        s = "-"
    elif isinstance(x, float) and math.isinf(x):
        s = "inf" if x > 0 else "-inf"
    else:
        s = format(x, spec)
    return f"{s:>{width}s}"


def _what(r):
    parts = [r["activation"]]
    if r["norm"] == "batch":
        parts.append(f"batch norm (B = {r['batch']:g})")
    elif r["norm"] == "layer":
        parts.append("layer norm")
    if r["residual"] is not None:
        parts.append(f"residual {r['residual']}" + (" (zero-initialised branches)"
                                                   if r["residual_init"] else ""))
    if r["dropout"]:
        parts.append(f"dropout {r['dropout']:g}")
    return " + ".join(parts)


def _print(args, r):
    print(f"vgcore theory: {_what(r)}, q0 = {r['q0']:g} (mean field: infinite width, "
          f"training mode at initialisation)")
    if "batch_norm" in r:
        _print_batch_norm(args, r)
    elif "residual_stream" in r:
        _print_residual(args, r)
    else:
        _print_plain(args, r)
    _print_profiles(args, r)
    if "spectrum" in r:
        _print_spectrum(r)
    if r.get("plots"):
        for path in r["plots"]["written"]:
            print(f"wrote {path}")
    if not args.quiet:
        for n in r["notes"]:
            print(f"note: {n}")


def _print_plain(args, r):
    sb, crit = r["sigma_b2"], r["critical_sigma_w2"]
    layer = r["norm"] == "layer"
    print(f"edge of chaos at sigma_b2 = {sb:g}: sigma_w2* = "
          f"{'none' if crit is None else format(crit, '.4f')}")
    if "dropout_effect" in r:
        e = r["dropout_effect"]
        a, b = e["without"], e["with_dropout"]
        print(f"dropout {e['p']:g} at sigma_w2 = {e['sigma_w2']:.4g}: q* {a['q_star']:.4g} -> "
              f"{b['q_star']:.4g}, chi_1 {a['chi_1']:.4g} -> {b['chi_1']:.4g}, c* "
              f"{a['c_star']:.4g} -> {b['c_star']:.4g}, xi_c {_f(a['xi_c'], '.3g', 0)} -> "
              f"{_f(b['xi_c'], '.3g', 0)}; sigma_w2* {e['critical_sigma_w2_without']:.4g} -> "
              f"{e['critical_sigma_w2_with']:.4g}")
    print()
    if layer:
        print(f"layer norm: chi_1 at sigma_b2 = {sb:g} (q_hat = q / (q + eps) is what the "
              f"activation sees; xi_grad > 0: gradients vanish towards the input, < 0: explode)")
        print(f"{'sigma_w2':>10s} {'q*':>10s} {'q_hat*':>10s} {'chi_1':>10s} "
              f"{'xi_grad':>10s}  phase")
        for t in r["table"]:
            print(f"{t['sigma_w2']:10.4g} {_f(t['q_star'])} {_f(t['q_hat'], '.6f')} "
                  f"{_f(t['chi_1'], '.5f')} {_f(t['xi_grad'], '.3g')}  {t['phase']}")
    else:
        print(f"chi_1 and depth scales at sigma_b2 = {sb:g} (xi in layers; xi_grad > 0: "
              f"gradients vanish towards the input, < 0: explode)")
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


def _print_batch_norm(args, r):
    bn = r["batch_norm"]
    B = r["batch"]
    print(f"per-layer growth of E||dL/dz||^2 towards the input, deep in a batch-normalised "
          f"stack: lambda({B:g}) = {bn['factor']:.5g}, at every sigma_w2 and sigma_b2 "
          f"(Yang et al. 2019)")
    if r["dropout"]:
        print(f"with dropout {r['dropout']:g}: {bn['factor_with_dropout']:.5g} per layer")
    print()
    print(f"lambda(B) for {r['activation']}")
    print(f"{'B':>8s} {'lambda':>10s} {'over ' + str(args.depth - 1) + ' layers':>16s}")
    for row in bn["by_batch"]:
        b = row["batch"]
        print(f"{'inf' if math.isinf(b) else int(b):>8} {row['factor']:10.5f} "
              f"{row['over_depth']:16.4g}")
    lim = bn["limits"]
    ident = "" if lim["identity"] is None else f"identity at B = {B:g}: (B-2)/(B-3) = " \
        f"{lim['identity']:.5f}; "
    print(f"(limits: {ident}relu as B -> inf: pi/(pi-1) = {lim['relu_large_batch']:.5f})")
    print()
    s = bn["stats"]
    print(f"batch norm's output at B = {B:g} (z uniform on the sphere of radius sqrt(B) "
          f"orthogonal to (1,...,1)):")
    print(f"  E[phi(z1)] = {s['mean']:.5g}, E[phi(z1)^2] = {s['second_moment']:.5g}, "
          f"E[phi(z1) phi(z2)] = {s['cross_moment']:.5g}, E[phi'(z1)^2] = {s['mu1']:.5g}, "
          f"kappa_1 = {s['kappa1']:.5g}, kappa_2 = {s['kappa2']:.5g}")
    print()


def _print_residual(args, r):
    st = r["residual_stream"]
    print(f"residual stream x_l = x_(l-1) + alpha phi(...), alpha = {st['alpha']:.4g}, "
          f"sigma_w2 = {st['sigma_w2']:.4g}, sigma_b2 = {r['sigma_b2']:g}")
    print("(Q: mean square of the stream's entries, M: their mean; 'no mean' drops the "
          "2 alpha M m term, which is what L ln(1 + alpha^2) assumes)")
    print(f"{'layer':>5s} {'q (branch)':>12s} {'Q':>12s} {'Q (no mean)':>12s} {'M':>10s}")
    layers = st["layers"]
    for i in shown_rows(len(layers), args.rows):
        x = layers[i]
        print(f"{x['layer']:5d} {x['q']:12.5g} {x['second_moment']:12.5g} "
              f"{x['second_moment_without_mean']:12.5g} {x['mean']:10.4g}")
    print(f"critical sigma_w2: none ({r['critical_reason']})")
    print()


def _print_profiles(args, r):
    prof = r["profiles"]
    what = "dL/dz_l" if r["norm"] else "dL/dh_l"
    print(f"predicted gradient profile, {r['depth']} hidden layers, sigma_b2 = "
          f"{r['sigma_b2']:g}: E||{what}||^2 / E||{what[:-1]}{r['depth']}||^2 (layer 1 = "
          f"input side)" + ("; [2-sigma band of one example at width "
                            f"{r['width']}]" if any(p["band_low"] is not None for p in prof)
                            else ""))
    print(f"{'layer':>5s} " + " ".join(f"{'sw2=' + format(p['sigma_w2'], '.4g'):>14s}"
                                       for p in prof))
    for i in shown_rows(r["depth"], args.rows):
        cells = []
        for p in prof:
            c = f"{p['delta_sq'][i]:14.4e}"
            if p["band_low"] is not None:
                c += f" [{p['band_low'][i]:.3g}, {p['band_high'][i]:.3g}]"
            cells.append(c)
        print(f"{i + 1:5d} " + " ".join(cells))


def _print_spectrum(r):
    sp = r["spectrum"]
    meas = sp["width"] is not None
    print()
    print(f"input-output Jacobian at initialisation, {r['depth']} hidden layers: its squared "
          f"singular values predicted by free probability (Pennington et al. 2017)"
          + (f" and measured on networks of width {sp['width']} ({sp['inputs']} inputs, "
             f"seed 0, float64)" if meas else ""))
    print(f"{'sigma_w2':>10s} {'weights':>10s} {'mean':>10s} "
          + (f"{'measured':>10s} " if meas else "")
          + f"{'rel. var':>10s} " + (f"{'measured':>10s} " if meas else "")
          + " dynamical isometry")
    for x in sp["rows"]:
        print(f"{x['sigma_w2']:10.4g} {x['weights']:>10s} {_f(x['predicted_mean'], '.4g')} "
              + (f"{_f(x['measured_mean'], '.4g')} " if meas else "")
              + f"{_f(x['predicted_relative_variance'], '.4g')} "
              + (f"{_f(x['measured_relative_variance'], '.4g')} " if meas else "")
              + (" yes" if x["isometric"] else " no"))
    iso = [x for x in sp["rows"] if x["isometric"]]
    print("dynamical isometry (mean within 0.1 of 1, relative spread below 0.3): "
          + ("; ".join(f"{x['weights']} weights at sigma_w2 = {x['sigma_w2']:.4g}" for x in iso)
             if iso else "none of these"))


# ------------------------------------------------------------------------------ plots

def _plots(args, r, T):
    d = plot_dir(args.plot_dir)
    act = r["activation"]
    names = [f"theory_chi1_{act}.png", f"theory_profile_{act}.png"]
    mpl = load_matplotlib()
    if mpl is None:
        msg = f"matplotlib is not installed: skipped the plots {', '.join(names)}"
        note(args, f"vgcore theory: {msg}")
        return dict(written=[], skipped=names, reason=msg)
    out = [os.path.join(d, names[0])]
    fig = new_figure(mpl, 6.5, 4.5, layout="tight")
    ax = fig.subplots()
    if "batch_norm" in r:
        rows = [x for x in r["batch_norm"]["by_batch"] if math.isfinite(x["batch"])]
        ax.semilogx([x["batch"] for x in rows], [x["factor"] for x in rows], "o-",
                    label=f"lambda(B), {act}")
        inf = r["batch_norm"]["by_batch"][-1]["factor"]
        ax.axhline(inf, color="k", ls="--", lw=1, label=f"B -> inf: {inf:.4g}")
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("growth of E||dL/dz||^2 per layer")
        ax.set_title(f"batch norm at initialisation: {act} (Yang et al. 2019)")
        ax.legend(fontsize=8)
    elif "residual_stream" in r:
        layers = r["residual_stream"]["layers"]
        x = [v["layer"] for v in layers]
        ax.semilogy(x, [v["second_moment"] for v in layers], "o-", ms=3,
                    label="Q_l (mean-field, with the mean)")
        ax.semilogy(x, [v["second_moment_without_mean"] for v in layers], "s--", ms=3,
                    label="without the mean's cross term")
        ax.set_xlabel("block (1 = input side)")
        ax.set_ylabel("mean square of the stream's entries")
        ax.set_title(f"residual stream: {act}, alpha = {r['residual_stream']['alpha']:.3g}")
        ax.legend(fontsize=8)
    else:
        _heatmap(args, r, T, fig, ax)
    save_png(mpl, fig, out[0])

    fig = new_figure(mpl, 6.5, 4.5, layout="tight")
    ax = fig.subplots()
    layers = np.arange(1, r["depth"] + 1)
    for p in r["profiles"]:
        line, = ax.semilogy(layers, np.asarray(p["delta_sq"], float), marker="o", ms=3,
                            label=f"sigma_w2 = {p['sigma_w2']:.4g}")
        if p["band_low"] is not None:
            ax.fill_between(layers, p["band_low"], p["band_high"], color=line.get_color(),
                            alpha=0.2, lw=0)
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.set_ylabel("E||delta_l||^2 / E||delta_last||^2")
    title = f"predicted gradient profile: {_what(r)}"
    if any(p["band_low"] is not None for p in r["profiles"]):
        title += f"\n(shaded: 2-sigma band of one example at width {r['width']})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    out.append(os.path.join(d, names[1]))
    save_png(mpl, fig, out[1])
    return dict(written=out, skipped=[], reason=None)


def _heatmap(args, r, T, fig, ax):
    from matplotlib.colors import LogNorm
    act = r["activation"]
    n = args.heatmap_points
    sw_lo, sw_hi = float(r["grid"]["sigma_w2"][0]), float(r["grid"]["sigma_w2"][-1])
    sb_lo, sb_hi = float(r["grid"]["sigma_b2"][0]), float(r["grid"]["sigma_b2"][-1])
    sw = np.linspace(sw_lo, sw_hi, n) if sw_hi > sw_lo else np.array([sw_lo])
    sb = np.linspace(sb_lo, sb_hi, n) if sb_hi > sb_lo else np.array([sb_lo])
    norm, p = r["norm"], r["dropout"]
    if norm is None and p == 0.0:
        chi = np.array([[T.chi1(act, float(w), float(b), q0=r["q0"]) for w in sw] for b in sb])
        crit = [(float(b), _critical(T, act, float(b), r["q0"])) for b in sb]
    else:
        chi = np.array([[T.gradient_growth(act, float(w), float(b), norm=norm, dropout=p,
                                           q0=r["q0"], norm_eps=args.norm_eps).factor
                         for w in sw] for b in sb])
        crit = []
        for b in sb:
            v = T.critical_point(act, float(b), norm=norm, dropout=p, q0=r["q0"],
                                 norm_eps=args.norm_eps).sigma_w2
            crit.append((float(b), v if math.isfinite(v) else None))
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
    ax.set_title(f"chi_1 of {_what(r)} (q0 = {r['q0']:g})")

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

from vgcore.commands._common import (CommandError, nonneg_float, nonneg_int, plot_dir,
                                     positive_float, positive_int, print_json)
from vgcore.commands.theory.plots import _plots
# BATCHES and SPECTRUM_INPUTS re-exported: vgcore.commands.theory's names before the split
from vgcore.commands.theory.tables import BATCHES as BATCHES
from vgcore.commands.theory.tables import SPECTRUM_INPUTS as SPECTRUM_INPUTS
from vgcore.commands.theory.tables import (_batch_norm_tables, _plain_tables, _residual_tables,
                                           _spectrum_tables)
from vgcore.commands.theory.text import _print

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

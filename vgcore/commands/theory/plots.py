"""``vgcore theory --plot-dir``: the figures (chi_1 and the depth scales over sigma_w2, the
chi_1 heat map with the critical line, the predicted gradient profiles), as PNG files."""
from __future__ import annotations

import math
import os

import numpy as np

from vgcore.commands._common import note, plot_dir
from vgcore.core._ui import load_matplotlib, new_figure, save_png
from vgcore.commands.theory.tables import _critical
from vgcore.commands.theory.text import _what


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

"""Phase diagrams of a sweep: a metric over (sigma_w², depth), one panel per activation (or
other varying parameter), seeds pooled by the median, with the critical weight variance
(:func:`vgcore.theory.critical_point`: mean field for plain stacks, layer norm's where it has
one) and, for plain stacks, the depth scale ``6 xi_c`` drawn over them; a normalised or
residual panel without a critical value says why (batch norm explodes at every sigma_w²,
residual blocks have no ordered phase)."""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np

import vgcore as vg
from vgcore.core import _ui
from vgcore.experiments.sweep.config import PARAMS, PLOTTABLE, _PLOT_AXES
from vgcore.experiments.sweep.store import SweepResult, _finite, format_value

__all__ = ["PhasePanel", "phase_grid", "plot_phase_diagram"]


@dataclass
class PhasePanel:
    """One panel of a phase diagram: ``values[i, j]`` is the median over seeds of the metric at
    ``y = ys[i]``, ``x = xs[j]`` over the runs where it is finite (a diverged run keeps its
    first-step measurements; a failed run has none), NaN where there is none; ``runs[i, j]``
    counts the runs of the cell and ``not_ok[i, j]`` those that diverged or failed."""

    title: str
    fixed: dict
    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    runs: np.ndarray
    not_ok: np.ndarray
    critical_x: float | None = None
    depth_scale: tuple | None = None      # (x grid, 6 * xi_c)
    critical_reason: str | None = None    # why a normalised or residual panel has no line


def phase_grid(rows, metric="final_loss", x="sigma_w2_eff", y="depth") -> list:
    """The phase-diagram panels of a sweep's rows (see :class:`PhasePanel`): one per value of
    the other varying parameters (the activation, ...), seeds pooled by the median.

    With ``x`` the weight variance, each panel of a plain network (no norm, no residual) gets
    the mean-field critical ``sigma_w2`` (:func:`vgcore.theory.critical_sigma_w2`) and the
    depth ``6 xi_c`` up to which signals propagate (Schoenholz et al. 2017), where defined;
    a normalised or residual panel gets :func:`vgcore.theory.critical_point`'s value (layer
    norm with biases and an activation whose E[phi'^2] exceeds E[phi^2]) or, in
    ``critical_reason``, why there is none.
    """
    if metric not in PLOTTABLE:
        raise ValueError(f"metric: expected one of {', '.join(PLOTTABLE)}, got {metric!r}")
    for name, value in (("x", x), ("y", y)):
        if value not in _PLOT_AXES:
            raise ValueError(f"{name}: expected one of {', '.join(_PLOT_AXES)}, got {value!r}")
    log = PLOTTABLE[metric][1]
    rows = [r for r in rows if _finite(r.get(x)) and _finite(r.get(y))]
    ignore = {x, y, "seed", "init", "sigma_w2"} if x == "sigma_w2_eff" else {x, y, "seed"}
    facets = [k for k in PARAMS if k not in ignore
              and len({json.dumps(r[k]) for r in rows}) > 1]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r[k]) for k in facets), []).append(r)
    panels = []
    for key, group in groups.items():
        xs = np.array(sorted({float(r[x]) for r in group}))
        ys = np.array(sorted({float(r[y]) for r in group}))
        values = np.full((len(ys), len(xs)), np.nan)
        runs = np.zeros((len(ys), len(xs)), np.int64)
        not_ok = np.zeros((len(ys), len(xs)), np.int64)
        cells: dict[tuple, list] = {}
        for r in group:
            ij = (int(np.searchsorted(ys, float(r[y]))), int(np.searchsorted(xs, float(r[x]))))
            runs[ij] += 1
            not_ok[ij] += r["status"] != "ok"
            v = r.get(metric)
            if r["status"] != "failed" and _finite(v):
                if log:
                    v = math.log10(v) if v > 0 else -math.inf
                cells.setdefault(ij, []).append(v)
        for ij, vs in cells.items():
            values[ij] = float(np.median(vs))
        fixed = {k: json.loads(v) for k, v in zip(facets, key)}
        first = group[0]
        title = ", ".join(f"{k}={format_value(v)}" for k, v in fixed.items()) \
            or first["activation"]
        panel = PhasePanel(title, fixed, xs, ys, values, runs, not_ok)
        one = all(len({json.dumps(r[k]) for r in group}) == 1
                  for k in ("activation", "sigma_b2", "norm", "residual", "batch_size"))
        if x in ("sigma_w2", "sigma_w2_eff") and one:
            if first["norm"] is None and first["residual"] is None:
                panel.critical_x, panel.depth_scale = _theory_lines(
                    first["activation"], float(first["sigma_b2"]), float(xs.min()),
                    float(xs.max()))
            else:
                panel.critical_x, panel.critical_reason = _critical_line(
                    first["activation"], float(first["sigma_b2"]), first["norm"],
                    first["batch_size"], first["residual"])
        panels.append(panel)
    return panels


@functools.lru_cache(maxsize=32)
def _theory_lines(activation, sigma_b2, lo, hi):
    """The critical sigma_w2 and ``(sigma_w2 grid, 6 xi_c)`` over [lo, hi] (~40 ms a point)."""
    theory = vg.theory
    try:
        crit = float(theory.critical_sigma_w2(activation, sigma_b2))
    except (ValueError, RuntimeError, ArithmeticError):
        crit = None
    if lo == hi:
        return crit, None
    grid = np.linspace(lo, hi, 30)
    if crit is not None and lo < crit < hi:
        grid = np.sort(np.append(grid, crit))
    depth = []
    for sw in grid:
        try:
            xi = theory.depth_scales(activation, float(sw), sigma_b2).xi_c
        except (ValueError, RuntimeError, ArithmeticError):
            xi = math.nan
        depth.append(6.0 * xi if math.isfinite(xi) or xi == math.inf else math.nan)
    depth = np.array(depth)
    if not np.any(np.isfinite(depth)):
        return crit, None
    return crit, (grid, depth)


@functools.lru_cache(maxsize=32)
def _critical_line(activation, sigma_b2, norm, batch, residual):
    """``(critical sigma_w2 or None, reason or None)`` of a normalised or residual network
    (:func:`vgcore.theory.critical_point`): layer norm has one for some activations with
    biases; batch norm and residual blocks have none, and the reason says why."""
    try:
        cp = vg.theory.critical_point(activation, sigma_b2, norm=norm,
                                      batch=batch if norm == "batch" else None,
                                      residual=residual)
    except (ValueError, RuntimeError, ArithmeticError) as e:
        return None, " ".join(str(e).split())
    if math.isfinite(cp.sigma_w2):
        return float(cp.sigma_w2), None
    return None, cp.reason


def _edges(v, log):
    if len(v) == 1:
        return np.array([v[0] * 0.8, v[0] * 1.25]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    if log:
        lv = np.log(v)
        mid = (lv[1:] + lv[:-1]) / 2
        return np.exp(np.concatenate([[lv[0] - (mid[0] - lv[0])], mid,
                                      [lv[-1] + (lv[-1] - mid[-1])]]))
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def plot_phase_diagram(result, path, metric="final_loss", x="sigma_w2_eff", y="depth",
                       max_panels=12):
    """Draw :func:`phase_grid` of a sweep into a PNG: one panel per activation (and per value
    of any other varying parameter), the metric as colour over (x, y), grey crosses where every
    run diverged or failed, the mean-field critical weight variance as a dashed vertical line
    and ``6 xi_c`` as a white curve.  Needs matplotlib.

    Parameters
    ----------
    result : SweepResult or list of row dicts
    path : str or os.PathLike
        The PNG to write.
    metric, x, y : str
        As :func:`phase_grid`.
    max_panels : int
        At most this many panels (the first ones, in the sweep's order).

    Returns
    -------
    list of PhasePanel
        The panels drawn.
    """
    rows = result.rows if isinstance(result, SweepResult) else list(result)
    panels = phase_grid(rows, metric, x, y)[:max_panels]
    if not panels:
        raise ValueError(f"no finished runs with both {x} and {y} to plot")
    mpl = _ui.load_matplotlib()
    if mpl is None:
        raise ImportError("plot_phase_diagram needs matplotlib (pip install matplotlib)")
    import matplotlib
    with matplotlib.rc_context(_RC):
        _draw_phase(mpl, panels, path, metric, x, y)
    return panels


_RC = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
       "ytick.labelsize": 10, "legend.fontsize": 9.5}


def _draw_phase(mpl, panels, path, metric, x, y):
    """The figure of :func:`plot_phase_diagram`: two panels abreast (3.5 inches each, so it
    fits a phone's screen), as many rows as needed."""
    from matplotlib import patheffects
    n = len(panels)
    ncol = min(n, 2)
    nrow = math.ceil(n / ncol)
    fig = _ui.new_figure(mpl, 3.5 * ncol + 1.0, 3.2 * nrow + 1.3)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    finite = np.concatenate([p.values[np.isfinite(p.values)] for p in panels])
    label, log = PLOTTABLE[metric]
    if finite.size:
        vmin, vmax = float(np.min(finite)), float(np.max(finite))
    else:
        vmin, vmax = 0.0, 1.0
    if log:
        cmap = "RdBu_r"
        lim = max(abs(vmin), abs(vmax), 1e-3)
        vmin, vmax = -lim, lim
    else:
        cmap = "viridis_r" if "loss" in metric else "viridis"
    ylog = y == "depth" and all(p.ys.min() > 0 and p.ys.max() / p.ys.min() >= 8
                                for p in panels)
    mesh = None
    legend = {}
    for ax, p in zip(axes.flat, panels):
        xe, ye = _edges(p.xs, False), _edges(p.ys, ylog)
        masked = np.ma.masked_invalid(p.values)
        mesh = ax.pcolormesh(xe, ye, masked, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
        bad = np.argwhere(p.not_ok > 0)
        if bad.size:
            ax.scatter(p.xs[bad[:, 1]], p.ys[bad[:, 0]], marker="x", color="0.35", s=30,
                       label="diverged or failed (some or all seeds)")
        if p.depth_scale is not None:
            gx, gd = p.depth_scale
            # the axes clip the curve; an infinite depth scale (at the critical point) is drawn
            # as leaving the panel at the top
            ax.plot(gx, np.where(np.isposinf(gd), 1e12, gd), color="white", lw=1.6,
                    label=r"$6\,\xi_c$ (mean field)",
                    path_effects=[patheffects.Stroke(linewidth=3.0, foreground="0.25"),
                                  patheffects.Normal()])
        if p.critical_x is not None and xe[0] <= p.critical_x <= xe[-1]:
            ax.axvline(p.critical_x, color="black", ls="--", lw=1.3,
                       label=r"critical $\sigma_w^2$ (theory; value in the title)")
            ax.set_title(f"{p.title}: critical {p.critical_x:.3g}")
        elif p.critical_reason:
            ax.text(0.02, 0.02, "no critical line: " + _short(p.critical_reason),
                    transform=ax.transAxes, fontsize=7, va="bottom", ha="left",
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        if ylog:
            ax.set_yscale("log")
            ax.set_yticks(p.ys)
            ax.set_yticklabels([f"{v:g}" for v in p.ys])
            ax.minorticks_off()
        ax.set_xlabel(r"$\sigma_w^2$" if x.startswith("sigma_w2") else x)
        ax.set_ylabel(y)
        if not (p.critical_x is not None and xe[0] <= p.critical_x <= xe[-1]):
            ax.set_title(p.title)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab.split(" = ")[0], h)
    if legend:                      # one legend for the figure, outside the panels
        try:
            fig.legend(list(legend.values()), list(legend), loc="outside lower center",
                       ncols=1, frameon=False)
        except (ValueError, TypeError):           # matplotlib < 3.7
            axes.flat[0].legend(list(legend.values()), list(legend), fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes.flat[:n]), label=label, shrink=0.9)
    fig.suptitle(f"{label} over ({x}, {y})")
    _ui.save_png(mpl, fig, os.fspath(path))


def _short(reason, width=44, lines=5):
    """A reason wrapped to fit the corner of a panel (cut after ``lines`` lines)."""
    import textwrap
    out = textwrap.wrap(reason, width)
    return "\n".join(out[:lines]) + (" ..." if len(out) > lines else "")


def _auto_plots(result):
    """The phase diagrams of the sweep's plot settings, when it has two x and two y values."""
    cfg = result.sweep.plot
    x, y = cfg["x"], cfg["y"]
    ok = [r for r in result.rows if _finite(r.get(x)) and _finite(r.get(y))]
    if len({r[x] for r in ok}) < 2 or len({r[y] for r in ok}) < 2:
        return []
    if _ui.load_matplotlib() is None:
        result.notes.append("phase diagrams not drawn: matplotlib is not installed (pip "
                            "install matplotlib)")
        return []
    files = []
    for metric in cfg["metrics"]:
        path = os.path.join(result.out, f"phase_{metric}.png")
        try:
            plot_phase_diagram(result, path, metric=metric, x=x, y=y)
        except (ValueError, OSError) as e:
            result.notes.append(f"phase_{metric}.png not drawn: {e}")
            continue
        files.append(path)
    return files

"""The figures of a comparison of gradient-flow runs (``vgcore compare``).

matplotlib is a dependency of vgcore; :func:`vgcore.core._ui.load_matplotlib` imports it lazily
(the Agg canvas, no GUI and no global backend switch) and, should it be missing or broken,
:func:`make_plots` writes nothing and says which plots it skipped and why.

The plots take a list of :class:`RunSeries`, one per configuration: the recorded per-layer
histories (steps x layers) and the training loss, aggregated over seeds by the caller.  They
are drawn 6.4 inches (640 px) wide, panels stacked, so that they fit a phone's screen and sit
two abreast on a desktop.  Every curve can be seen: each has its own colour, line style and
marker, markers of different curves fall on different points, and curves that coincide are
named in the legend (``B = A``, or ``B ≈ A`` when they are within half a percent of the axis)
and in :attr:`PlotResult.notes`.  Axes are scaled to the data.

================================  ===============================================================
file (:data:`PLOTS`)              what
================================  ===============================================================
``gradient_norms.png``            ||dL/dW_l|| per layer, log scale, every configuration: at the
                                  first step (top) and at the last recorded step (bottom)
``gradient_heatmap.png``          log10 ||dL/dW_l||, layer x step, one panel per configuration,
                                  one colour scale for all
``saturation_dead.png``           per hidden layer, averaged over the recorded steps: the
                                  saturated fraction of the activations that saturate (top) and
                                  the dead-unit fraction of the piecewise-linear ones (bottom)
``training_curves.png``           training loss against step (moving average), log scale
``theory_vs_measured.png``        ||delta_l|| relative to the last hidden layer at the first
                                  step, measured and as the theory predicts (with its band when
                                  it has one); the configurations it has no prediction for are
                                  listed with the reason
================================  ===============================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vgcore.core._ui import MATPLOTLIB_MISSING, load_matplotlib
from vgcore.core._ui import new_figure as _new_figure
from vgcore.core._ui import save_png as _save

__all__ = ["RunSeries", "TheoryCurve", "PLOTS", "make_plots", "PlotResult"]

PLOTS = {
    "gradient_norms.png": "Gradient norm ||dL/dW|| per layer (log scale) at the first step "
                          "(top) and at the last recorded step (bottom). Layer 1 is the input "
                          "side; the last layer is the linear output layer.",
    "gradient_heatmap.png": "log10 ||dL/dW|| per layer (rows, input side at the bottom) and "
                            "recorded step (columns), one colour scale for every "
                            "configuration: dark lower rows are layers that receive almost no "
                            "gradient.",
    "saturation_dead.png": "Per hidden layer, averaged over the recorded steps: the fraction of "
                           "saturated entries (|phi'(h)| < 5% of its maximum) of the "
                           "activations whose derivative decays smoothly (top), and the "
                           "fraction of dead units (zero derivative on the whole batch) of the "
                           "piecewise-linear ones such as relu (bottom). Each axis is scaled to "
                           "its data.",
    "training_curves.png": "Training loss (moving average over the mini-batches) against "
                           "step, log scale.",
    "theory_vs_measured.png": "Norm of the backpropagated error delta per hidden layer, "
                              "relative to the last hidden layer, at the first step: measured "
                              "(solid) and predicted by the theory "
                              "(vgcore.theory.predicted_gradient_profile, dashed, with its "
                              "band where it has one).",
}
"""The plot files :func:`make_plots` writes, with their captions."""


@dataclass
class TheoryCurve:
    """One configuration's error profile at the first step, measured, and the theory's
    prediction when there is one.

    Attributes
    ----------
    measured : ndarray (hidden layers,)
        ||delta_l|| / ||delta_H|| at the first step.
    predicted : ndarray (hidden layers,) or None
        The same, as the theory predicts it; None when it makes no prediction.
    band : tuple (low, high) of ndarray or None
        Where the measurement of one example should fall (e.g. the finite-width band).
    reason : str or None
        Why there is no prediction (shown on the plot), when ``predicted`` is None.
    """

    measured: np.ndarray
    predicted: np.ndarray | None = None
    band: tuple | None = None
    reason: str | None = None


@dataclass
class RunSeries:
    """What the plots need of one configuration.

    Attributes
    ----------
    name : str
    steps : ndarray (records,)
        The recorded steps.
    grad_norm, delta_norm, saturated_fraction, dead_fraction : ndarray (records, layers)
        The recorded histories (all weight layers, the output layer last).
    loss : ndarray (steps,)
        Training loss at every step (NaN after a divergence).
    saturating : bool
        Whether the hidden activation can saturate (:data:`vgcore.flow.SATURATING`): its
        saturated fraction is shown, else its dead units.
    theory : TheoryCurve or None
        The error profile at the first step and the theory's prediction; None when nothing
        was recorded.  A ``(measured, predicted)`` pair is accepted too.
    """

    name: str
    steps: np.ndarray
    grad_norm: np.ndarray
    delta_norm: np.ndarray
    saturated_fraction: np.ndarray
    dead_fraction: np.ndarray
    loss: np.ndarray
    saturating: bool = False
    theory: TheoryCurve | None = None

    def __post_init__(self):
        if isinstance(self.theory, tuple):
            self.theory = TheoryCurve(*self.theory)


@dataclass
class PlotResult:
    """What :func:`make_plots` did: ``written`` file names (in :data:`PLOTS` order),
    ``skipped`` file names and the ``reason`` they were skipped (None when none was), and
    ``notes`` per written file (curves that coincide, configurations without a prediction)."""

    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    reason: str | None = None
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ styles
WIDTH = 6.4                 # inches at 100 dpi: 640 px
_RC = {"font.size": 11, "axes.titlesize": 11.5, "axes.labelsize": 11, "xtick.labelsize": 10,
       "ytick.labelsize": 10, "legend.fontsize": 9}
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
_MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">"]
_LINES = ["-", "--", "-.", ":"]


def _style(i):
    """Colour, line style and marker of curve ``i``: no two of the first 40 share all three."""
    return (_COLOURS[i % 10], _LINES[(i // 2 + i) % 4] if i else "-",
            _MARKERS[(i + i // 10) % len(_MARKERS)])


def _markevery(n_points, i, n_curves):
    """Markers every few points, shifted per curve, so overlapping curves show them all."""
    step = max(1, n_points // 7)
    return (int(i * step / max(1, n_curves)) % step, step)


def _integer_x(ax, axis="x"):
    from matplotlib.ticker import MaxNLocator
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _positive(a):
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def coinciding(curves, log, tol=0.005):
    """Curves that lie on top of each other: ``{i: (j, exact)}`` for each curve ``i`` drawn
    within ``tol`` of the axis span of an earlier curve ``j`` at every point (in log10 for a log
    axis); ``exact`` when they are equal to float32 rounding (relative 2e-6)."""
    ys = [np.log10(_positive(c)) if log else np.asarray(c, np.float64) for c in curves]
    finite = [y[np.isfinite(y)] for y in ys]
    allv = np.concatenate(finite) if finite else np.empty(0)
    span = float(allv.max() - allv.min()) if allv.size else 0.0
    out = {}
    for i, yi in enumerate(ys):
        for j in range(i):
            if j in out or yi.shape != ys[j].shape or not np.isfinite(yi).any():
                continue
            yj = ys[j]
            if not np.array_equal(np.isfinite(yi), np.isfinite(yj)):
                continue
            m = np.isfinite(yi)
            diff = float(np.max(np.abs(yi[m] - yj[m])))
            if diff <= tol * max(span, 1e-12):
                exact = diff <= (1e-6 if log else 2e-6 * max(1e-300, float(np.max(np.abs(
                    yj[m])))))
                out[i] = (j, exact)
                break
    return out


def _label(names, i, same):
    if i not in same:
        return names[i]
    j, exact = same[i]
    return f"{names[i]} {'=' if exact else '≈'} {names[j]}"


def _notes(names, same, where=""):
    out = []
    for i, (j, exact) in same.items():
        out.append(f"{names[i]} {'equals' if exact else 'lies on'} {names[j]}"
                   f"{where}: both are drawn, each with its own markers.")
    return out


def _keys(series, chosen):
    """The style of each of ``chosen`` (a subset of ``series``): its position in ``series``, so
    a configuration keeps its colour, line and marker in every plot of the report."""
    where = {id(s): i for i, s in enumerate(series)}
    return [where[id(s)] for s in chosen]


def _draw_curves(ax, x, curves, names, log, lw=1.5, keys=None):
    """Every curve with its own style (``keys``: the style index of each, default its
    position); returns the coincidences (see :func:`coinciding`)."""
    same = coinciding(curves, log)
    n = len(curves)
    for i, (y, _name) in enumerate(zip(curves, names)):
        c, ls, m = _style(i if keys is None else keys[i])
        xi = x[i] if isinstance(x, list) else x
        ax.plot(xi, _positive(y) if log else y, ls=ls, color=c, lw=lw, marker=m, ms=5,
                markevery=_markevery(len(xi), i, n), label=_label(names, i, same),
                zorder=3 + (n - i) * 0.01)
    return same


_LEGEND_ROW = 0.2          # inches per row of legend entries


def _legend_layout(labels):
    """(columns, rows) of a legend of ``labels`` under a 6.4-inch panel."""
    ncol = 2 if labels and max(len(t) for t in labels) <= 40 else 1
    return ncol, -(-len(labels) // ncol)


def _stack(mpl, panels, extra=0.0):
    """A figure of panels stacked top to bottom, each followed by a strip for its legend
    (outside the plot, so it hides no data): ``panels`` is a list of ``(height in inches,
    legend labels)``; returns ``(fig, axes, strips)``."""
    ratios = []
    for height, labels in panels:
        _, rows = _legend_layout(labels)
        ratios += [height, _LEGEND_ROW * rows + 0.08]
    fig = _new_figure(mpl, WIDTH, sum(ratios) + extra)
    grid = fig.subplots(len(ratios), 1, height_ratios=ratios, squeeze=False)[:, 0]
    for strip in grid[1::2]:
        strip.axis("off")
    return fig, list(grid[0::2]), list(grid[1::2])


def _legend(ax, strip):
    """The legend of ``ax``'s curves, in its strip under it."""
    handles, labels = ax.get_legend_handles_labels()
    if not labels:
        return
    ncol, _ = _legend_layout(labels)
    strip.legend(handles, labels, loc="upper center", ncols=ncol, frameon=False,
                 fontsize=9, borderaxespad=0.0, handlelength=2.6, columnspacing=1.2)


# ------------------------------------------------------------------------------ plots
def plot_gradient_norms(mpl, series, path):
    drawn = [s for s in series if len(s.steps)]
    names = [s.name for s in drawn]
    rows = ((0, "first step"), (-1, "last recorded step"))
    labels = [[_label(names, i, coinciding([s.grad_norm[r] for s in drawn], True))
               for i in range(len(names))] for r, _ in rows]
    fig, axes, strips = _stack(mpl, [(3.9, labels[0]), (3.9, labels[1])])
    notes = []
    for ax, strip, (row, title) in zip(axes, strips, rows):
        curves = [s.grad_norm[row] for s in drawn]
        x = np.arange(1, curves[0].size + 1) if curves else np.arange(1)
        same = _draw_curves(ax, x, curves, names, log=True, keys=_keys(series, drawn))
        notes += _notes(names, same, f" ({title})")
        ax.set_yscale("log")
        ax.set_ylabel("||dL/dW|| (log scale)")
        ax.set_title(f"gradient norm per layer, {title}" + (
            f" (step {int(drawn[0].steps[-1])})" if row == -1 and drawn and
            len({int(s.steps[-1]) for s in drawn}) == 1 else ""))
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("layer (1 = input side)")
        _integer_x(ax)
        _legend(ax, strip)
    _save(mpl, fig, path)
    return notes


def plot_heatmaps(mpl, series, path):
    n = len(series)
    ncol = 1 if n == 1 else 2
    nrow = -(-n // ncol)
    fig = _new_figure(mpl, WIDTH, 2.35 * nrow + 1.1)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False, sharey=True)).ravel()
    logs = []
    for s in series:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append(np.log10(_positive(s.grad_norm)))
    finite = np.concatenate([g[np.isfinite(g)] for g in logs]) if logs else np.empty(0)
    if finite.size:
        vmax = float(np.ceil(finite.max()))
        vmin = float(max(np.floor(finite.min()), vmax - 24))
    else:
        vmin, vmax = -10.0, 0.0
    image = None
    from matplotlib.ticker import MaxNLocator
    for k, (ax, s, lg) in enumerate(zip(axes, series, logs)):
        if lg.size == 0:
            ax.set_title(s.name + " (no record)", fontsize=10.5)
            continue
        steps = np.asarray(s.steps, np.float64)
        last = steps[-1] if steps.size > 1 else steps[0] + 1
        L = lg.shape[1]
        image = ax.imshow(lg.T, origin="lower", aspect="auto", interpolation="nearest",
                          cmap="viridis", vmin=vmin, vmax=vmax,
                          extent=(steps[0], last, 0.5, L + 0.5))
        ax.set_title(s.name, fontsize=10.5)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
        if k >= n - ncol:
            ax.set_xlabel("step")
        if k % ncol == 0:
            ax.set_ylabel("layer")
    for ax in axes[n:]:
        ax.set_visible(False)
    if image is not None:
        cb = fig.colorbar(image, ax=list(axes[:n]), orientation="horizontal", shrink=0.8,
                          aspect=40, pad=0.02 if nrow > 2 else 0.05)
        cb.set_label("log10 ||dL/dW|| (yellow: large, dark: almost no gradient)")
    _save(mpl, fig, path)
    return []


def _percent_axis(ax, top):
    from matplotlib.ticker import PercentFormatter
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))


def _mean_over_run(s, name):
    hist = getattr(s, name)
    with np.errstate(invalid="ignore"):
        return np.nanmean(hist[:, :-1], axis=0) if hist.shape[1] > 1 else np.empty(0)


def plot_saturation_dead(mpl, series, path):
    panels = ((True, "saturated_fraction", "saturated entries (activations whose derivative "
               "decays)", "saturated"),
              (False, "dead_fraction", "dead units (relu and the other piecewise-linear "
               "activations)", "dead"))
    chosen = [[s for s in series if s.saturating == sat and getattr(s, name).size]
              for sat, name, _, _ in panels]
    curves = [[_mean_over_run(s, p[1]) for s in c] for p, c in zip(panels, chosen)]
    names = [[s.name for s in c] for c in chosen]
    labels = [[_label(n, i, coinciding(cv, False)) for i in range(len(n))]
              for n, cv in zip(names, curves)]
    fig, axes, strips = _stack(mpl, [(3.3, labels[0]), (3.3, labels[1])])
    notes = []
    for ax, strip, (sat, _name, title, word), cs, ns, ch in zip(axes, strips, panels, curves,
                                                              names, chosen):
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("hidden layer (1 = input side)")
        ax.set_ylabel(f"{word} (mean over the run)")
        if not cs:
            ax.text(0.5, 0.5, "no configuration of this kind", ha="center", va="center",
                    transform=ax.transAxes, color="#555")
            _percent_axis(ax, 0.05)
            continue
        finite = np.concatenate([c[np.isfinite(c)] for c in cs])
        top = float(finite.max()) if finite.size else 0.0
        x = np.arange(1, cs[0].size + 1)
        same = _draw_curves(ax, x, cs, ns, log=False, keys=_keys(series, ch))
        notes += _notes(ns, same, f" ({word})")
        _percent_axis(ax, max(top * 1.12, 0.01))
        if top == 0.0:
            ax.text(0.5, 0.6, f"0 in every layer: no {word} {'entries' if sat else 'units'}",
                    ha="center", va="center", transform=ax.transAxes, color="#555")
        _integer_x(ax)
        _legend(ax, strip)
    _save(mpl, fig, path)
    return notes


def _moving_average(x, k):
    x = np.asarray(x, np.float64)
    if k <= 1 or x.size < k:
        return x
    ok = np.isfinite(x)
    c = np.concatenate(([0.0], np.cumsum(np.where(ok, x, 0.0))))
    n = np.concatenate(([0], np.cumsum(ok)))
    lo = np.maximum(np.arange(x.size) - k + 1, 0)
    cnt = n[1:] - n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(cnt > 0, (c[1:] - c[lo]) / np.maximum(cnt, 1), np.nan)
    out[~ok] = np.nan
    return out


def plot_training_curves(mpl, series, path):
    curves, xs = [], []
    for s in series:
        loss = np.asarray(s.loss, np.float64)
        curves.append(_moving_average(loss, max(1, loss.size // 50)))
        xs.append(np.arange(loss.size))
    names = [s.name for s in series]
    same = coinciding(curves, True)
    fig, (ax,), (strip,) = _stack(mpl, [(4.2, [_label(names, i, same)
                                               for i in range(len(names))])])
    lengths = {c.size for c in curves}
    same = _draw_curves(ax, xs if len(lengths) > 1 else xs[0], curves, names, log=True,
                        lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title("training curves")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, strip)
    _save(mpl, fig, path)
    return _notes(names, same)


def plot_theory(mpl, series, path):
    with_theory = [s for s in series if s.theory is not None and s.theory.predicted is not None]
    reasons = {}
    for s in series:
        if s.theory is not None and s.theory.predicted is None:
            reasons.setdefault(s.theory.reason or "no prediction", []).append(s.name)
    notes = [f"No prediction for {'; '.join(names)}: {reason}."
             for reason, names in reasons.items()]
    # configurations with the same first step (e.g. one network under two optimisers) share
    # one pair of curves
    groups = []
    for s in with_theory:
        for g in groups:
            if all(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True) for a, b in
                   ((g[0].theory.measured, s.theory.measured),
                    (g[0].theory.predicted, s.theory.predicted))):
                g[1].append(s.name)
                break
        else:
            groups.append((s, [s.name]))
    labels = []
    for s, names in groups:
        labels += [f"{' = '.join(names)}, measured", f"{' = '.join(names)}, theory"
                   + (" and its band" if s.theory.band is not None else "")]
    text = "\n".join(_wrap(n, 90) for n in notes)
    extra = 0.19 * (text.count("\n") + 1) + 0.1 if notes else 0.0
    fig, (ax,), (strip,) = _stack(mpl, [(4.4, labels)], extra=extra)
    for k, (s, _names) in enumerate(groups):
        th = s.theory
        colour, _, marker = _style(_keys(series, [s])[0])
        x = np.arange(1, len(th.measured) + 1)
        if th.band is not None:
            ax.fill_between(x, _positive(th.band[0]), _positive(th.band[1]), color=colour,
                            alpha=0.12, lw=0)
        ax.plot(x, _positive(th.measured), "-", marker=marker, ms=5,
                markevery=_markevery(x.size, k, len(groups)), color=colour,
                label=labels[2 * k])
        ax.plot(x, _positive(th.predicted), "--", color=colour, lw=1.6, alpha=0.9,
                label=labels[2 * k + 1])
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer (1 = input side)")
    _integer_x(ax)
    ax.set_ylabel("||delta_l|| / ||delta_last hidden||")
    ax.set_title("error signal at the first step: measured vs theory")
    ax.grid(True, which="major", alpha=0.3)
    if groups:
        _legend(ax, strip)
    else:
        ax.text(0.5, 0.5, "the theory predicts no configuration here", ha="center",
                va="center", transform=ax.transAxes, color="#555")
    if notes:
        fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=9, color="#444")
        fig.get_layout_engine().set(rect=(0, extra / fig.get_figheight(), 1,
                                          1 - extra / fig.get_figheight()))
    _save(mpl, fig, path)
    return notes


def _wrap(text, width):
    import textwrap
    return "\n".join(textwrap.wrap(text, width))


_PLOTTERS = {
    "gradient_norms.png": plot_gradient_norms,
    "gradient_heatmap.png": plot_heatmaps,
    "saturation_dead.png": plot_saturation_dead,
    "training_curves.png": plot_training_curves,
    "theory_vs_measured.png": plot_theory,
}


def make_plots(series, out_dir, *, enabled=True) -> PlotResult:
    """Write the :data:`PLOTS` of ``series`` (a list of :class:`RunSeries`) into ``out_dir``.

    Returns a :class:`PlotResult`.  Nothing is written, and every plot is listed as skipped
    with the reason, when ``enabled`` is False or matplotlib cannot be imported; the theory
    plot is skipped when the theory predicts no configuration (the reasons are then in
    ``reason``).
    """
    result = PlotResult()
    names = list(PLOTS)
    if not enabled:
        result.skipped, result.reason = names, "plots turned off (--no-plots)"
        return result
    mpl = load_matplotlib()
    if mpl is None:
        result.skipped, result.reason = names, MATPLOTLIB_MISSING
        return result
    import matplotlib
    for name in names:
        if name == "theory_vs_measured.png" and not any(
                s.theory is not None and s.theory.predicted is not None for s in series):
            result.skipped.append(name)
            reasons = sorted({s.theory.reason for s in series
                              if s.theory is not None and s.theory.reason})
            result.reason = "the theory predicts no configuration here" + (
                f" ({'; '.join(reasons)})" if reasons else "")
            continue
        path = os.path.join(out_dir, name)
        with matplotlib.rc_context(_RC):  # type: ignore[arg-type]
            notes = _PLOTTERS[name](mpl, series, path)
        result.written.append(name)
        if notes:
            result.notes[name] = notes
    return result

"""The figures of a comparison of gradient-flow runs (``vgcore compare``).

matplotlib is optional: :func:`vgcore.core._ui.load_matplotlib` imports it lazily (the Agg
canvas, no GUI and no global backend switch) and returns None when it is missing, and
:func:`make_plots` then writes nothing and says which plots it skipped.

The plots take a list of :class:`RunSeries`, one per configuration: the recorded per-layer
histories (steps x layers) and the training loss, aggregated over seeds by the caller.

================================  ===============================================================
file (:data:`PLOTS`)              what
================================  ===============================================================
``gradient_norms.png``            ||dL/dW_l|| per layer, log scale, every configuration on one
                                  chart: at the first step and at the last recorded step
``gradient_heatmap.png``          log10 ||dL/dW_l||, layer x step, one panel per configuration,
                                  one colour scale for all
``saturation_dead.png``           per hidden layer, the saturated fraction (saturating
                                  activations) and the dead-unit fraction (the others), averaged
                                  over the recorded steps
``training_curves.png``           training loss against step (moving average), log scale
``theory_vs_measured.png``        ||delta_l|| relative to the last hidden layer at the first
                                  step, measured and as the mean-field theory predicts
                                  (configurations without normalisation or residual blocks)
================================  ===============================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vgcore.core._ui import MATPLOTLIB_MISSING, load_matplotlib
from vgcore.core._ui import new_figure as _new_figure
from vgcore.core._ui import save_png as _save

__all__ = ["RunSeries", "PLOTS", "make_plots", "PlotResult"]

PLOTS = {
    "gradient_norms.png": "Gradient norm ||dL/dW|| per layer (log scale) at the first step and "
                          "at the last recorded step. Layer 1 is the input side; the last layer "
                          "is the linear output layer.",
    "gradient_heatmap.png": "log10 ||dL/dW|| per layer (rows, input side at the bottom) and "
                            "recorded step (columns), one colour scale for every "
                            "configuration: dark lower rows are layers that receive almost no "
                            "gradient.",
    "saturation_dead.png": "Per hidden layer, averaged over the recorded steps: the fraction of "
                           "saturated entries (|phi'(h)| < 5% of its maximum) for saturating "
                           "activations, and the fraction of dead units (zero derivative on "
                           "the whole batch) for the others.",
    "training_curves.png": "Training loss (moving average over the mini-batches) against "
                           "step, log scale.",
    "theory_vs_measured.png": "Norm of the backpropagated error delta per hidden layer, "
                              "relative to the last hidden layer, at the first step: measured "
                              "(solid) and predicted by the mean-field theory "
                              "(vgcore.theory.predicted_gradient_profile, dashed), for the "
                              "configurations without normalisation or residual blocks.",
}
"""The plot files :func:`make_plots` writes, with their captions."""


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
        Whether the hidden activation has flat tails (saturation is shown, else dead units).
    theory : tuple (measured, predicted) of ndarray (hidden layers,) or None
        ||delta_l|| / ||delta_H|| at the first step, measured and predicted; None when the
        theory does not apply.
    """

    name: str
    steps: np.ndarray
    grad_norm: np.ndarray
    delta_norm: np.ndarray
    saturated_fraction: np.ndarray
    dead_fraction: np.ndarray
    loss: np.ndarray
    saturating: bool = False
    theory: tuple | None = None


@dataclass
class PlotResult:
    """What :func:`make_plots` did: ``written`` file names (in :data:`PLOTS` order),
    ``skipped`` file names and the ``reason`` they were skipped (None when none was)."""

    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    reason: str | None = None


# ------------------------------------------------------------------------------ plots
def _colours(n):
    base = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
    return [base[i % len(base)] for i in range(n)]


def _styles(n):
    """Line styles that keep overlapping curves apart (colours repeat after ten)."""
    return [("-", "--", "-.", ":")[(i // 2) % 4] if i % 2 else "-" for i in range(n)]


def _integer_x(ax, axis="x"):
    from matplotlib.ticker import MaxNLocator
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _positive(a):
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _legend(ax, n):
    ax.legend(fontsize=7 if n > 6 else 8, loc="best", framealpha=0.8)


def plot_gradient_norms(mpl, series, path):
    fig = _new_figure(mpl, 11, 4.3)
    axes = fig.subplots(1, 2, sharey=True)
    cols, styles = _colours(len(series)), _styles(len(series))
    for ax, (row, title) in zip(axes, ((0, "first step"), (-1, "last recorded step"))):
        for s, c, ls in zip(series, cols, styles):
            if len(s.steps) == 0:
                continue
            g = _positive(s.grad_norm[row])
            step = int(s.steps[row])
            ax.plot(np.arange(1, g.size + 1), g, ls, color=c, marker=".", ms=4,
                    label=s.name if row == 0 else f"{s.name} (step {step})")
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = input side)")
        _integer_x(ax)
        ax.set_title(f"||dL/dW|| per layer, {title}")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, len(series))
    axes[0].set_ylabel("gradient norm")
    _save(mpl, fig, path)


def plot_heatmaps(mpl, series, path):
    n = len(series)
    ncol = min(4, n)
    nrow = -(-n // ncol)
    fig = _new_figure(mpl, 3.2 * ncol + 1.0, 2.8 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    logs = []
    for s in series:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append(np.log10(_positive(s.grad_norm)))
    finite = np.concatenate([l[np.isfinite(l)] for l in logs]) if logs else np.empty(0)
    if finite.size:
        vmax = float(np.ceil(finite.max()))
        vmin = float(max(np.floor(finite.min()), vmax - 24))
    else:
        vmin, vmax = -10.0, 0.0
    image = None
    for ax, s, lg in zip(axes, series, logs):
        if lg.size == 0:
            ax.set_title(s.name + " (no record)", fontsize=9)
            continue
        steps = np.asarray(s.steps, np.float64)
        last = steps[-1] if steps.size > 1 else steps[0] + 1
        L = lg.shape[1]
        image = ax.imshow(lg.T, origin="lower", aspect="auto", interpolation="nearest",
                          cmap="viridis", vmin=vmin, vmax=vmax,
                          extent=(steps[0], last, 0.5, L + 0.5))
        ax.set_title(s.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        _integer_x(ax, "y")
        ax.tick_params(labelsize=7)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    if image is not None:
        cb = fig.colorbar(image, ax=list(axes[:len(series)]), shrink=0.9)
        cb.set_label("log10 ||dL/dW||")
    _save(mpl, fig, path)


def plot_saturation_dead(mpl, series, path):
    fig = _new_figure(mpl, 11, 4.0)
    axes = fig.subplots(1, 2)
    cols, styles = _colours(len(series)), _styles(len(series))
    panels = ((axes[0], "saturated_fraction", True, "saturated fraction (saturating activations)"),
              (axes[1], "dead_fraction", False, "dead-unit fraction (other activations)"))
    for ax, name, sat, title in panels:
        drawn = 0
        for s, c, ls in zip(series, cols, styles):
            hist = getattr(s, name)
            if s.saturating != sat or hist.size == 0:
                continue
            with np.errstate(invalid="ignore"):
                v = np.nanmean(hist[:, :-1], axis=0) if hist.shape[1] > 1 else np.empty(0)
            ax.plot(np.arange(1, v.size + 1), v, ls, color=c, marker=".", ms=4, label=s.name)
            drawn += 1
        ax.set_title(title)
        ax.set_xlabel("hidden layer (1 = input side)")
        _integer_x(ax)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        if drawn:
            _legend(ax, drawn)
        else:
            ax.text(0.5, 0.5, "no configuration of this kind", ha="center", va="center",
                    transform=ax.transAxes, color="#666")
    axes[0].set_ylabel("fraction, mean over the recorded steps")
    _save(mpl, fig, path)


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
    fig = _new_figure(mpl, 8, 4.3)
    ax = fig.subplots()
    cols, styles = _colours(len(series)), _styles(len(series))
    for s, c, ls in zip(series, cols, styles):
        loss = np.asarray(s.loss, np.float64)
        k = max(1, loss.size // 50)
        ax.plot(np.arange(loss.size), _positive(_moving_average(loss, k)), ls, color=c,
                label=s.name, lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title("training curves")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(series))
    _save(mpl, fig, path)


def plot_theory(mpl, series, path):
    fig = _new_figure(mpl, 8, 4.6)
    ax = fig.subplots()
    cols = _colours(len(series))
    colour = {s.name: c for s, c in zip(series, cols)}
    # configurations with the same first step (e.g. the same network under two optimisers)
    # share one pair of curves
    groups = []
    for s in series:
        if s.theory is None:
            continue
        for g in groups:
            if all(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
                   for a, b in zip(g[0].theory, s.theory)):
                g[1].append(s.name)
                break
        else:
            groups.append((s, [s.name]))
    for s, names in groups:
        measured, predicted = s.theory
        label = " = ".join(names)
        x = np.arange(1, len(measured) + 1)
        ax.plot(x, _positive(measured), "-", marker=".", ms=4, color=colour[s.name],
                label=f"{label}, measured")
        ax.plot(x, _positive(predicted), "--", color=colour[s.name], alpha=0.8,
                label=f"{label}, theory")
    applicable = groups
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer (1 = input side)")
    _integer_x(ax)
    ax.set_ylabel("||delta_l|| / ||delta_last hidden||")
    ax.set_title("backpropagated error at the first step: measured vs mean-field theory")
    ax.grid(True, which="major", alpha=0.3)
    if applicable:
        _legend(ax, 2 * len(applicable))
    else:
        ax.text(0.5, 0.5, "the theory applies to no configuration here\n(all use "
                "normalisation or residual blocks)", ha="center", va="center",
                transform=ax.transAxes, color="#666")
    _save(mpl, fig, path)


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
    plot is skipped when no configuration has a theory profile.
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
    for name in names:
        if name == "theory_vs_measured.png" and not any(s.theory is not None for s in series):
            result.skipped.append(name)
            result.reason = "the mean-field theory applies to no configuration (all use " \
                            "normalisation or residual blocks)"
            continue
        path = os.path.join(out_dir, name)
        _PLOTTERS[name](mpl, series, path)
        result.written.append(name)
    return result

"""The files of ``vgcore compare``: measurements.json and measurements.csv (every run's
history), the plots' series, and report.html."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from vgcore.commands._common import CommandError
from vgcore.commands.compare.summary import (_fmt_ratio, _optimizer_text, _settings_line,
                                             _verdict, story_lines, table_cells)
from vgcore.core import _ui
from vgcore.experiments import report as _report
from vgcore.measure.diagnosis import SATURATING, format_findings


def write_measurements(out, runs, summary, s):
    """measurements.csv and measurements.json."""
    runs_json = []
    for r in runs:
        runs_json.append({
            "config": r.config.name, "seed": r.seed, "settings": r.config.as_dict(),
            "loss": r.losses, "diverged_at": r.diverged_at, "seconds": r.seconds,
            "test": r.test,
            "findings": [{"kind": f.kind, "severity": f.severity, "message": f.message,
                          "evidence": f.evidence, "fix": f.fix} for f in r.findings],
            "theory": None if r.theory is None else {
                "delta_norm_relative_measured": r.theory[0],
                "delta_norm_relative_predicted": r.theory[1],
                "q": r.theory_q},
            "recorder": r.recorder.to_json_object(),
        })
    doc = {"format": "vgcore.compare.measurements", "version": 1,
           "about": "per configuration and seed: the vgcore.Recorder history (format "
                    "vgcore.recorder; Recorder.from_json reads the 'recorder' object saved as "
                    "a file), the training loss of every step, held-out metrics, findings and "
                    "the mean-field theory profile; 'summary' is summary.json",
           "summary": summary, "runs": runs_json}
    _report.write_text_atomic(os.path.join(out, "measurements.json"),
                              json.dumps(_ui.plain_json(doc), allow_nan=False))

    path = os.path.join(out, "measurements.csv")
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp_path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            header = None
            for r in runs:
                cols = r.recorder.to_dict()
                if header is None:
                    header = ["config", "seed", "loss"] + list(cols)
                    w.writerow(header)
                if not len(r.recorder):
                    continue
                data = [c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()]
                L = r.recorder.n_layers
                loss = np.repeat(r.losses[r.recorder.history("step")], L).tolist()
                for i, values in enumerate(zip(*data)):
                    w.writerow([r.config.name, r.seed, loss[i], *values])
            if header is None:
                w.writerow(["config", "seed", "loss"])
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def _geo_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    if len(arrays) == 1:
        return a[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(a), axis=0))


def _mean_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    return a[0] if len(arrays) == 1 else np.mean(a, axis=0)


def series_of(cfg, runs):
    recs = [r.recorder for r in runs]
    n = min(len(r) for r in recs)
    steps = recs[0].history("step")[:n]
    theory = None
    th = [r.theory for r in runs if r.theory is not None]
    if th:
        theory = (_geo_stack([t[0][None] for t in th])[0], th[0][1])
    return _report.RunSeries(
        name=cfg.name, steps=steps,
        grad_norm=_geo_stack([r.history("grad_norm") for r in recs]),
        delta_norm=_geo_stack([r.history("delta_norm") for r in recs]),
        saturated_fraction=_mean_stack([r.history("saturated_fraction") for r in recs]),
        dead_fraction=_mean_stack([r.history("dead_fraction") for r in recs]),
        loss=_mean_stack([r.losses for r in runs]),
        saturating=cfg.activation in SATURATING, theory=theory)


def write_html(out, s, data, rows, configs, runs, plots, elapsed):
    import html as _h
    chance = data.chance
    parts = [f"<h1>vgcore compare: the gradient flow of {len(rows)} configurations</h1>",
             f"<p class=\"muted\">{_h.escape(_settings_line(s, data))}; total "
             f"{elapsed:.1f} s.</p>"]
    parts.append("<h2>What happened</h2><ul>")
    for line in story_lines(rows, chance):
        parts.append(f"<li>{_h.escape(line)}</li>")
    parts.append("</ul>")
    for r in rows:
        cfg = next(c for c in configs if c.name == r["name"])
        if cfg.optimizer in ("adam", "adamw", "rmsprop", "adagrad") and cfg.norm is None \
                and cfg.residual is None:
            v = _verdict(r, chance)
            if v == "learns":
                parts.append(f"<p>{_h.escape(cfg.name)}: {cfg.optimizer} divides each "
                             f"parameter's step by the running size of its own gradient, so "
                             f"the small gradients of the first layers still move them.</p>")
            elif v in ("barely learns", "learns partly"):
                parts.append(
                    f"<p>{_h.escape(cfg.name)}: {cfg.optimizer} divides each parameter's step "
                    f"by the running size of its own gradient, which makes small gradients "
                    f"move their weights; but it cannot rescale what is not there: layer 1 "
                    f"receives {_fmt_ratio(r['grad_ratio_first'])} of the output layer's "
                    f"gradient (below the optimiser's epsilon), and the forward signal that "
                    f"distinguishes the inputs fades through the same layers, so at this depth "
                    f"it does not rescue the network. It helps shallower stacks.</p>")
    if chance is not None:
        parts.append(f"<p class=\"note\">Chance accuracy is {100 * chance:.0f}%. A ratio far "
                     f"below 1 means the gradient vanishes on its way to the input side; far "
                     f"above 1, that it explodes.</p>")

    parts.append("<h2>Table</h2>")
    header = ["configuration", "hidden layers", "optimiser", "dW layer 1 / output (first step)",
              "delta layer 1 / output (first step)", "saturated (mean over run)",
              "dead units (mean over run)", "held-out loss", "held-out accuracy", "diagnosis"]
    body, classes = [], []
    by_name = {c.name: c for c in configs}
    for r in rows:
        c = table_cells(r)
        cfg = by_name[r["name"]]
        layers = cfg.activation + ", " + cfg.init + (f", {cfg.norm} norm" if cfg.norm else "") \
            + (f", residual {cfg.residual}" if cfg.residual is not None else "")
        body.append([c[0], layers, _optimizer_text(cfg)] + c[1:])
        v = _verdict(r, chance)
        classes.append("good" if v == "learns" else "bad" if v in ("barely learns", "diverged")
                       else None)
    parts.append(_report.html_table(header, body, numeric=range(3, 9), row_classes=classes))
    parts.append("<p class=\"note\">dW = ||dL/dW|| (GradientFlow.grad_ratio); delta = the "
                 "backpropagated error dL/dh (delta_ratio); both measured at the first step. "
                 "Saturated: entries with |phi'(h)| &lt; 5% of its maximum, shown for "
                 "saturating activations (sigmoid, tanh, softsign, hard_tanh); dead: units with "
                 "zero derivative on the whole batch; both averaged over the hidden layers and "
                 "the recorded steps. Diagnosis: the kind of vgcore.diagnose's first finding on "
                 "the run's Recorder (its latest records).</p>")

    parts.append("<h2>Plots</h2>")
    if plots.written:
        for name in plots.written:
            parts.append(_report.html_figure(os.path.join(out, name), _report.PLOTS[name]))
    if plots.skipped:
        parts.append(f"<p class=\"note\">Skipped plots: {_h.escape(', '.join(plots.skipped))}"
                     f" &mdash; {_h.escape(plots.reason or '')}.</p>")

    parts.append("<h2>Diagnosis</h2>")
    for cfg in configs:
        rs = [r for r in runs if r.config is cfg]
        label = f"{cfg.name} (seed {rs[0].seed})" if len(rs) > 1 else cfg.name
        parts.append(f"<h3>{_h.escape(label)}</h3><pre>"
                     f"{_h.escape(format_findings(rs[0].findings))}</pre>")
    parts.append("<h2>Files</h2><p class=\"note\">Beside this page: summary.json (the table's "
                 "numbers), measurements.json (every run's Recorder history, per-step loss, "
                 "held-out metrics, findings and theory profile), measurements.csv (one row per "
                 "configuration, seed, recorded step and layer)"
                 + (", " + _h.escape(", ".join(plots.written)) if plots.written else "")
                 + ".</p>")
    _report.write_text_atomic(os.path.join(out, "report.html"),
                              _report.html_document("vgcore compare", "\n".join(parts)))


def _prepare_out(path):
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--out: {path} exists and is not a folder") from None
    except OSError as e:
        raise CommandError(f"--out: cannot create {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"--out: cannot write into {path}")
    return os.path.abspath(path)



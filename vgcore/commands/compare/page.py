"""report.html of ``vgcore compare``: the verdict first, then the table, the diagnoses with the
measurement each rests on, the plots, the run record and links to the files beside it."""
from __future__ import annotations

import html
import math
import os

from vgcore.commands.compare.summary import (_fmt_ratio, _optimizer_text, _settings_line,
                                             _verdict, table_cells, verdict)
from vgcore.experiments import report as _report
from vgcore.measure.diagnosis import VANISHING_WARNING, format_findings

ADAPTIVE = ("adam", "adamw", "rmsprop", "adagrad")

FILES = {
    "summary.json": "the table's numbers, the diagnoses and the run record",
    "measurements.json": "per configuration and seed: the Recorder history of every layer, "
                         "the loss of every step, held-out metrics, findings and the theory "
                         "profile",
    "measurements.csv": "one row per configuration, seed, recorded step and layer",
}


def _e(text):
    return html.escape(str(text))


def _results(rows, configs, chance):
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
    table = _report.html_table(header, body, numeric=range(3, 9), row_classes=classes)
    note = ("<p class=\"note\">dW = ||dL/dW|| (GradientFlow.grad_ratio); delta = the "
            "backpropagated error dL/dh (delta_ratio); both measured at the first step. "
            "Saturated: entries whose derivative has decayed below 5% of its maximum "
            "(|phi'(h)| &lt; 0.05 max|phi'|); it applies to the activations whose derivative "
            "decays smoothly (sigmoid, tanh, softsign, and the tails of softplus, elu, selu, "
            "gelu, silu) and is 0 for piecewise-linear ones such as relu, whose zero derivatives "
            "are inactive, not saturated. Dead: units with zero derivative on the whole batch. "
            "Both are averaged over the hidden layers and the recorded steps. Green rows learn "
            "(held-out accuracy at least half-way from chance to 100%), red rows do not"
            + (f"; chance accuracy is {100 * chance:.0f}%" if chance is not None else "")
            + ".</p>")
    return table + "\n" + note


def _two_ratios(rows):
    """The sentence on weight gradient vs error signal, with this run's numbers when one
    configuration shows the difference."""
    text = ("<p>Two ratios, because they can disagree. A layer's weight gradient is its input "
            "times its error signal, dL/dW<sub>l</sub> = x<sub>l</sub><sup>T</sup> "
            "delta<sub>l</sub>, so ||dW<sub>l</sub>|| ~ ||x<sub>l</sub>|| ||delta<sub>l</sub>||: "
            "when the forward signal shrinks with depth as the error does, the first layer's "
            "larger input makes up for its smaller error and the weight-gradient ratio looks "
            "level")
    for r in rows:
        g, d = r["grad_ratio_first"], r["delta_ratio_first"]
        if g is not None and d is not None and math.isfinite(g) and math.isfinite(d) \
                and g >= VANISHING_WARNING > d:
            text += (f" (here {_e(r['name'])}: dW ratio {_fmt_ratio(g)}, while the error "
                     f"signal reaching layer 1 is {_fmt_ratio(d)} of the output layer's)")
            break
    return text + (". The error-signal ratio says whether the gradient gets through the "
                   "layers; the weight-gradient ratio says how fast each layer moves under one "
                   "learning rate. Each diagnosis below names the measurement it rests on "
                   "(the median of the run's last records).</p>")


def _optimiser_notes(rows, configs, chance):
    out = []
    by_name = {c.name: c for c in configs}
    for r in rows:
        cfg = by_name[r["name"]]
        if cfg.optimizer not in ADAPTIVE or cfg.norm is not None or cfg.residual is not None:
            continue
        v = _verdict(r, chance)
        if v == "learns":
            out.append(f"<p>{_e(cfg.name)}: {cfg.optimizer} divides each parameter's step by "
                       f"the running size of its own gradient, so the small gradients of the "
                       f"first layers still move them.</p>")
        elif v in ("barely learns", "learns partly"):
            rms = (r.get("diagnosis_evidence") or {}).get("first_layer_grad_rms")
            eps = 1e-10 if cfg.optimizer == "adagrad" else 1e-8     # vgcore.optim's defaults
            size = (f"layer 1's gradient entries are about {_fmt_ratio(rms)} RMS, far below "
                    f"its eps of {eps:g}, so its steps there are about lr * g / eps: nothing"
                    if rms is not None and math.isfinite(rms) and rms < 1e-2 * eps else
                    f"layer 1 receives {_fmt_ratio(r['grad_ratio_first'])} of the output "
                    f"layer's gradient")
            out.append(
                f"<p>{_e(cfg.name)}: {cfg.optimizer} divides each parameter's step by the "
                f"running size of its own gradient plus a small eps, which makes small "
                f"gradients move their weights; but it cannot rescale what is not there: "
                f"{size}. The forward signal that distinguishes the inputs fades through the "
                f"same layers, so at this depth it does not rescue the network.</p>")
    return out


def _diagnoses(rows, configs, runs, chance):
    parts = [_two_ratios(rows)]
    header = ["configuration", "diagnosis", "rests on"]
    body, classes = [], []
    for r in rows:
        body.append([r["name"], r["diagnosis"].replace("_", " ")
                     + (" (diverged)" if r["diverged"] else ""), r["rests_on"]])
        classes.append("bad" if r["severity"] == "error" or r["diverged"] else
                       "good" if r["severity"] == "info" else None)
    parts.append(_report.html_table(header, body, row_classes=classes))
    parts += _optimiser_notes(rows, configs, chance)
    parts.append("<p class=\"note\">The findings in full, with their evidence and the "
                 "suggested fixes for each network (vgcore.diagnose on the run's Recorder):</p>")
    for cfg in configs:
        rs = [r for r in runs if r.config is cfg]
        row = next(r for r in rows if r["name"] == cfg.name)
        seed = row.get("diagnosis_seed", rs[0].seed)
        run = next((r for r in rs if r.seed == seed), rs[0])
        label = f"{cfg.name} (seed {run.seed})" if len(rs) > 1 else cfg.name
        parts.append(f"<details><summary>{_e(label)}: {_e(row['diagnosis'].replace('_', ' '))}"
                     f"</summary><pre>{_e(format_findings(run.findings))}</pre></details>")
    return "\n".join(parts)


def _plots(out, plots):
    parts = []
    if plots.written:
        parts.append(_report.html_figures(
            [_report.html_figure(os.path.join(out, name), _report.PLOTS[name],
                                 notes=plots.notes.get(name, ())) for name in plots.written]))
    if plots.skipped:
        parts.append(f"<p class=\"note\">Not drawn: {_e(', '.join(plots.skipped))} &mdash; "
                     f"{_e(plots.reason or '')}.</p>")
    return "\n".join(parts) or "<p class=\"note\">No plots.</p>"


def page_html(out, s, data, rows, configs, runs, plots, elapsed, record, shown_out=None) -> str:
    """The whole page (``out`` is the folder holding the plots it embeds, ``shown_out`` the
    folder the page will be in, default ``out``)."""
    depth = s["depth"]
    title = f"vgcore compare: {len(rows)} configuration{'s' if len(rows) != 1 else ''} of " \
            f"{depth} hidden layer{'s' if depth != 1 else ''}"
    sections = [("results", "Results"), ("diagnoses", "Diagnoses"), ("plots", "Plots"),
                ("record", "Run record"), ("files", "Files")]
    files = [(name, what) for name, what in FILES.items()] + \
        [(name, "plot: " + _report.PLOTS[name].split(". ")[0].rstrip(".")) for name in
         plots.written]
    body = [f"<h1>{_e(title)}</h1>",
            _report.html_verdict(verdict(rows, data.chance)),
            f"<p class=\"muted\">{_e(_settings_line(s, data))}; {elapsed:.1f} s.</p>",
            _report.html_toc(sections),
            _report.html_section("results", "Results", _results(rows, configs, data.chance)),
            _report.html_section("diagnoses", "Diagnoses",
                                 _diagnoses(rows, configs, runs, data.chance)),
            _report.html_section("plots", "Plots", _plots(out, plots)),
            _report.html_section("record", "Run record",
                                 "<p class=\"note\">What produced this page; the command "
                                 "reproduces it (the same seeds and thread count give the same "
                                 "numbers).</p>" + _report.record_html(record)),
            _report.html_section("files", "Files",
                                 "<p class=\"note\">Beside this page in "
                                 f"<code>{_e(shown_out or out)}</code>:</p>"
                                 + _report.html_files(files))]
    return _report.html_document(title, "\n".join(body))


def write_html(out, s, data, rows, configs, runs, plots, elapsed, record,
               shown_out=None) -> None:
    """Write report.html into ``out`` (``shown_out``: the folder it will end up in)."""
    _report.write_text_atomic(os.path.join(out, "report.html"),
                              page_html(out, s, data, rows, configs, runs, plots, elapsed,
                                        record, shown_out))

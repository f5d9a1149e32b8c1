"""``report.html`` of a sweep, in the style of ``vgcore compare``'s: a one-line verdict, the
phase diagrams, the results table (sortable by a click on a column header), the runs that
failed or diverged with their errors, the run record and links to the files beside it.
Self-contained: inline CSS and script, the plots embedded."""
from __future__ import annotations

import html
import math
import os
from collections import Counter

from vgcore.experiments import report as _report
from vgcore.experiments.sweep.config import PLOTTABLE
from vgcore.experiments.sweep.store import SweepResult, _finite, _label, format_value

__all__ = ["report_html", "write_report", "MAX_ROWS", "MAX_FAILURES"]

MAX_ROWS = 2000
"""The most runs the page's table shows (in the sweep's order); results.csv has them all."""
MAX_FAILURES = 100
"""The most failed or diverged runs listed with their errors."""

_KIND_WORDS = {"vanishing": ("vanishes", "vanish"), "exploding": ("explodes", "explode"),
               "saturation": ("saturates", "saturate"),
               "dead_units": ("has dead layers", "have dead layers"),
               "nonfinite": ("hits NaN or Inf", "hit NaN or Inf"),
               "no_gradient": ("gets no gradient", "get no gradient")}

# metric columns of the table: (column, header, format, shown on phones)
_METRICS = (
    ("final_loss", "final loss", "{:.4g}", True),
    ("test_accuracy", "held-out accuracy", "pct", True),
    ("grad_ratio_init", "dW1/dWout, step 0", "{:.1e}", True),
    ("delta_ratio_init", "delta1/delta_out, step 0", "{:.1e}", False),
    ("saturated_fraction", "saturated", "pct", False),
    ("dead_fraction", "dead", "pct", False),
    ("finding", "diagnosis", "{}", True),
    ("chi1", "chi_1", "{:.3g}", False),
)
DESKTOP = 1240
"""Estimated pixels (:func:`_width`, which runs ~6% high) a table may need before it is shown
as cards on a desktop too (the page is 1140 px wide there)."""


def _e(text):
    return html.escape(str(text))


def _fmt(value, fmt):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if fmt == "pct":
        return f"{100 * value:.1f}%"
    if isinstance(value, str):
        return value.replace("_", " ")
    return fmt.format(value)


def verdict(result) -> str:
    """One line: how many runs finished and how, what the diagnoses say, the best run."""
    rows, n = result.rows, len(result.sweep)
    status = Counter(r["status"] for r in rows)
    head = (f"{len(rows)} of {n} runs done" if result.missing else f"{n} runs") + \
        f" ({status['ok']} ok, {status['diverged']} diverged, {status['failed']} failed)"
    kinds = Counter(r["finding"] for r in rows if r["status"] != "failed" and r["finding"])
    parts = [f"{kinds[k]} {_KIND_WORDS[k][kinds[k] != 1]}" for k in _KIND_WORDS if kinds.get(k)]
    if kinds.get("healthy"):
        parts.insert(0, f"{kinds['healthy']} healthy")
    text = head + (": " + ", ".join(parts) if parts else "")
    varying = [k for k in result.sweep.varying() if k != "seed"] or result.sweep.varying()
    ok = [r for r in rows if r["status"] == "ok" and _finite(r["final_loss"])]
    if ok:
        best = min(ok, key=lambda r: r["final_loss"])
        text += f"; lowest final loss {best['final_loss']:.4g} at {_label(best, varying)}"
    if result.missing:
        text += f"; {len(result.missing)} runs not done yet (run the same sweep again)"
    return text + "."


def _settings(result):
    sweep = result.sweep
    varying = sweep.varying()
    shared = {}
    if result.rows:
        first = result.rows[0]
        from vgcore.experiments.sweep.config import PARAMS
        shared = {k: first[k] for k in PARAMS if k not in varying}
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in shared.items())
    vary = "; ".join(f"{k}: {', '.join(format_value(v) for v in _values(result, k))}"
                     for k in varying)
    return (f"Varying {vary or 'nothing'}. Shared by every run: {fixed}." if fixed else
            f"Varying {vary or 'nothing'}.")


def _values(result, key):
    seen = []
    for cfg in result.sweep.configs:
        if cfg[key] not in seen:
            seen.append(cfg[key])
    return seen


def _table(result):
    varying = result.sweep.varying()
    metrics = [m for m in _METRICS if any(r.get(m[0]) not in (None, "")
                                         and not (isinstance(r.get(m[0]), float)
                                                  and math.isnan(r[m[0]]))
                                         for r in result.rows)]
    header = ["run_id", "status"] + varying + [m[1] for m in metrics]
    rows = result.rows[:MAX_ROWS]
    body, keys, classes = [], [], []
    for r in rows:
        cells = [r["run_id"], r["status"]] + [format_value(r[k]) for k in varying] + \
            [_fmt(r.get(m[0]), m[2]) for m in metrics]
        sort = [None, r["status"]] + [r[k] if isinstance(r[k], (int, float)) else
                                      format_value(r[k]) for k in varying] + \
            [r.get(m[0]) if isinstance(r.get(m[0]), (int, float)) and
             math.isfinite(r.get(m[0])) else (r.get(m[0]) or None)
             if isinstance(r.get(m[0]), str) else None for m in metrics]
        body.append(cells)
        keys.append(sort)
        classes.append("bad" if r["status"] != "ok" else None)
    numeric = [i for i, m in enumerate(metrics, 2 + len(varying)) if m[2] != "{}"]
    table = _report.html_table(header, body, numeric=numeric, row_classes=classes,
                               sortable=True, sort_values=keys)
    hidden = [m[1] for m in metrics if not m[3]]
    notes = ["Click a column's name to sort by it (again to reverse); runs without a value sort "
             "last. Red rows diverged or failed (see below)."]
    if hidden:
        notes.append(f"On a narrow screen the columns {', '.join(hidden)} are left out of the "
                     f"cards; results.csv has every column, and the run's finding text.")
    if len(result.rows) > len(rows):
        notes.append(f"{len(rows)} of {len(result.rows)} runs shown (the first, in the sweep's "
                     f"order); results.csv has them all.")
    # a table too wide for a desktop screen is shown as cards there too, rather than scroll
    need = _width(header, body, set(numeric))
    below = need + 60 if need > DESKTOP else 700
    css = (_report.cards_css("table.sortable", below) if below > 700 else "") + \
        _hide_on_phones([header.index(m[1]) for m in metrics if not m[3]])
    return table + "".join(f"<p class=\"note\">{_e(n)}</p>" for n in notes), css


def _width(header, body, numeric=()):
    """About how many pixels the table needs at least (its min-content width): per column
    the longest header word (with the sort arrow) or cell (numbers do not wrap, text wraps
    at spaces), at ~7 px a character, plus padding."""
    total = 0
    for j, h in enumerate(header):
        cells = [str(row[j]) if j in numeric else max(str(row[j]).split() or [""], key=len)
                 for row in body[:500]]
        total += max([7 * len(w) + 14 for w in str(h).split()] +
                     [7 * len(c) for c in cells]) + 12
    return total


def _hide_on_phones(columns):
    """CSS that leaves the given columns out of the cards on narrow screens."""
    if not columns:
        return ""
    rules = ", ".join(f"table.sortable td:nth-child({c + 1}), "
                      f"table.sortable th:nth-child({c + 1})" for c in columns)
    return f"@media (max-width: 700px) {{ {rules} {{ display: none; }} }}"


def _failures(result):
    varying = result.sweep.varying()
    failed = [r for r in result.rows if r["status"] == "failed"]
    diverged = [r for r in result.rows if r["status"] == "diverged"]
    if not failed and not diverged:
        return "<p>Every run finished: none failed or diverged.</p>"
    out = ["<p>A failed run is a configuration vgcore refused or an error while training; a "
           "diverged run is one whose loss or output stopped being finite. Both are results: "
           "the sweep went on.</p>"]
    shown = 0
    errors = {}
    for r in failed:
        errors.setdefault(r["error"] or "(no error recorded)", []).append(r)
    for error, rs in errors.items():
        out.append(f"<h3>{len(rs)} failed run{'s' if len(rs) != 1 else ''}</h3>"
                   f"<pre>{_e(error)}</pre>")
        take = rs[:max(0, MAX_FAILURES - shown)]
        shown += len(take)
        if take:
            out.append(_report.html_table(["run_id", "configuration"],
                                          [[r["run_id"], _label(r, varying)] for r in take]))
    take = diverged[:max(0, MAX_FAILURES - shown)]
    if take:
        shown += len(take)
        out.append(f"<h3>{len(diverged)} diverged run{'s' if len(diverged) != 1 else ''}</h3>")
        out.append(_report.html_table(
            ["run_id", "configuration", "diverged at step"],
            [[r["run_id"], _label(r, varying), _fmt(r["diverged_at"], "{}")] for r in take],
            numeric=[2]))
    if shown < len(failed) + len(diverged):
        out.append(f"<p class=\"note\">{shown} of {len(failed) + len(diverged)} runs listed; "
                   f"results.csv lists every run with its status and error (columns status, "
                   f"error, diverged_at).</p>")
    return "\n".join(out)


def _plots(result):
    pngs = [f for f in result.files if f.endswith(".png")]
    figs = []
    for path in pngs:
        metric = os.path.basename(path)[len("phase_"):-len(".png")]
        label = PLOTTABLE.get(metric, (metric, False))[0]
        cfg = result.sweep.plot
        caption = (f"{label} over ({cfg['x']}, {cfg['y']}), one panel per activation (and per "
                   f"value of any other varying parameter), seeds pooled by the median. "
                   f"Dashed line: the critical weight variance the theory predicts "
                   f"(vgcore.theory.critical_point: mean field for plain stacks, layer norm's "
                   f"where it has one; a panel with batch norm or residual blocks, which have "
                   f"none, says why in its corner); white curve: the depth scale 6 xi_c up to "
                   f"which signals propagate (plain stacks); grey crosses: runs that diverged "
                   f"or failed.")
        figs.append(_report.html_figure(path, caption))
    notes = [n for n in result.notes if "phase" in n or "matplotlib" in n]
    out = [_report.html_figures(figs)] if figs else []
    if not figs:
        out.append("<p class=\"note\">No phase diagrams: they need at least two values of "
                   f"{_e(result.sweep.plot['x'])} and of {_e(result.sweep.plot['y'])}.</p>")
    out += [f"<p class=\"note\">{_e(n)}</p>" for n in notes]
    return "\n".join(out)


def _files(result):
    names = [("results.csv", "one row per run: parameters, status, error, measurements"),
             ("results.jsonl", "the journal: one line per finished run, as it finished")]
    if os.path.exists(os.path.join(result.out, "results.parquet")):
        names.append(("results.parquet", "the same table as results.csv"))
    names += [("sweep.json", "the sweep's settings and its runs"),
              ("histories/", "per run: the loss of every step and the per-layer history "
                             "(RUN_ID.json.gz)")]
    names += [(os.path.basename(f), "phase diagram") for f in result.files
              if f.endswith(".png")]
    return _report.html_files(names)


def report_html(result, record=None) -> str:
    """The page of a :class:`~vgcore.experiments.sweep.SweepResult` (its phase diagrams are
    read from its folder); ``record`` is the run record (default: one made now, without a
    command)."""
    if not isinstance(result, SweepResult):
        raise TypeError(f"result: expected a vgcore.sweep.SweepResult, got "
                        f"{type(result).__name__}")
    record = record or _report.run_record()
    title = f"vgcore sweep: {result.sweep.name}"
    sections = [("phase", "Phase diagrams"), ("results", "Results"),
                ("failures", "Failed and diverged runs"), ("record", "Run record"),
                ("files", "Files")]
    table, css = _table(result)
    body = [f"<h1>{_e(title)}</h1>", _report.html_verdict(verdict(result)),
            f"<p class=\"muted\">{_e(_settings(result))}</p>", _report.html_toc(sections),
            _report.html_section("phase", "Phase diagrams", _plots(result)),
            _report.html_section("results", "Results", table),
            _report.html_section("failures", "Failed and diverged runs", _failures(result)),
            _report.html_section("record", "Run record",
                                 "<p class=\"note\">What produced this page. A run's numbers "
                                 "depend only on its configuration and thread count, so the "
                                 "command reproduces every row.</p>"
                                 + _report.record_html(record)),
            _report.html_section("files", "Files", f"<p class=\"note\">Beside this page in "
                                 f"<code>{_e(result.out)}</code>:</p>" + _files(result))]
    return _report.html_document(title, "\n".join(body), css=css)


def write_report(result, record=None) -> str:
    """Write :func:`report_html` as ``report.html`` in the sweep's folder (atomically) and
    return its path."""
    path = os.path.join(result.out, "report.html")
    _report.write_text_atomic(path, report_html(result, record))
    return path

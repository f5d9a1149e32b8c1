"""The numbers of ``vgcore compare``: per run, per configuration (seeds pooled), the printed
table and the sentences that tell what happened."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

import vgcore as vg
from vgcore.measure.diagnosis import SATURATING


def _mean(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if len(vals) == 1:
        return float(vals[0])
    return float(np.mean(vals))


def _geomean(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if len(vals) == 1:
        return float(vals[0])
    a = np.asarray(vals, np.float64)
    if np.any(np.isnan(a)):
        return math.nan
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(a))))


def _top(findings):
    return findings[0]


def run_numbers(run, depth):
    """The table's numbers for one run."""
    rec = run.recorder
    H = depth
    out = {"seed": run.seed}
    if len(rec):
        gr, dr = rec.history("grad_ratio"), rec.history("delta_ratio")
        out.update(grad_ratio_first=float(gr[0]), delta_ratio_first=float(dr[0]),
                   grad_ratio_last=float(gr[-1]), delta_ratio_last=float(dr[-1]),
                   last_recorded_step=int(rec.history("step")[-1]))
        with np.errstate(invalid="ignore"):
            out["saturated_fraction"] = float(np.mean(rec.history("saturated_fraction")[:, :H]))
            out["dead_fraction"] = float(np.mean(rec.history("dead_fraction")[:, :H]))
    else:
        out.update(grad_ratio_first=math.nan, delta_ratio_first=math.nan,
                   grad_ratio_last=math.nan, delta_ratio_last=math.nan, last_recorded_step=None,
                   saturated_fraction=math.nan, dead_fraction=math.nan)
    tail = run.losses[max(0, len(run.losses) - max(1, len(run.losses) // 10)):]
    out["train_loss"] = float(np.mean(tail)) if np.all(np.isfinite(tail)) else math.nan
    out["loss"] = run.test["loss"]
    out["accuracy"] = run.test["accuracy"]
    top = _top(run.findings)
    out["diagnosis"] = top.kind
    out["severity"] = top.severity
    out["diverged_at"] = run.diverged_at
    out["seconds"] = run.seconds
    return out


_SEVERITY = {"info": 0, "warning": 1, "error": 2}


def summarise(cfg, runs, depth):
    per = [run_numbers(r, depth) for r in runs]
    row = dict(cfg.as_dict())
    row["saturating"] = cfg.activation in SATURATING
    for key in ("grad_ratio_first", "delta_ratio_first", "grad_ratio_last", "delta_ratio_last"):
        row[key] = _geomean([p[key] for p in per])
    for key in ("saturated_fraction", "dead_fraction", "train_loss", "loss", "accuracy"):
        row[key] = _mean([p[key] for p in per])
    kinds = Counter(p["diagnosis"] for p in per)
    best = max(kinds.values())
    tied = [p for p in per if kinds[p["diagnosis"]] == best]
    chosen = max(tied, key=lambda p: _SEVERITY[p["severity"]])
    row["diagnosis"] = chosen["diagnosis"]
    row["severity"] = chosen["severity"]
    run0 = next(r for r in runs if _top(r.findings).kind == chosen["diagnosis"])
    row["diagnosis_message"] = _top(run0.findings).message
    row["diverged"] = [{"seed": p["seed"], "step": p["diverged_at"]} for p in per
                       if p["diverged_at"] is not None]
    row["seconds"] = float(sum(p["seconds"] for p in per))
    row["per_seed"] = per
    return row


COLUMNS = ("configuration", "dW 1st/last", "delta 1st/last", "saturated", "dead", "loss",
           "accuracy", "diagnosis")


def _fmt_ratio(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.1e}"


def _fmt_pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def _fmt_loss(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def table_cells(row):
    """The table's cells of one summary row, as printed and as in report.html."""
    return [row["name"], _fmt_ratio(row["grad_ratio_first"]),
            _fmt_ratio(row["delta_ratio_first"]),
            _fmt_pct(row["saturated_fraction"]),
            _fmt_pct(row["dead_fraction"]), _fmt_loss(row["loss"]), _fmt_pct(row["accuracy"]),
            row["diagnosis"].replace("_", " ") + (" (diverged)" if row["diverged"] else "")]


def format_table(rows):
    cells = [table_cells(r) for r in rows]
    w0 = max([len(COLUMNS[0])] + [len(c[0]) for c in cells])
    widths = [w0, 11, 14, 9, 6, 7, 8]
    head1 = (f"{'':{w0}s}  {'first step, layer 1 / output':>{widths[1] + widths[2] + 1}s}  "
             f"{'over the run':>{widths[3] + widths[4] + 1}s}  "
             f"{'held-out':>{widths[5] + widths[6] + 1}s}")
    head2 = f"{COLUMNS[0]:{w0}s}  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[1:3], widths[1:3])) + "  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[3:5], widths[3:5])) + "  " + " ".join(
        f"{h:>{w}s}" for h, w in zip(COLUMNS[5:7], widths[5:7])) + f"  {COLUMNS[7]}"
    lines = [head1, head2]
    for c in cells:
        lines.append(f"{c[0]:{w0}s}  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[1:3],
                                                                               widths[1:3]))
                     + "  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[3:5], widths[3:5]))
                     + "  " + " ".join(f"{x:>{w}s}" for x, w in zip(c[5:7], widths[5:7]))
                     + f"  {c[7]}")
    return "\n".join(lines)


def _settings_line(s, data):
    seeds = ", ".join(str(x) for x in s["seeds"])
    return (f"{s['depth']} hidden layers of {s['width']} units; {data.description}; "
            f"{s['steps']} steps of batch {s['batch_size']}; "
            f"seed{'s' if len(s['seeds']) > 1 else ''} {seeds}; "
            f"{vg.get_num_threads()} thread{'s' if vg.get_num_threads() > 1 else ''}")


def _optimizer_text(cfg):
    return f"{cfg.optimizer} lr={cfg.lr:g}"


def _verdict(row, chance):
    acc = row["accuracy"]
    if row["diverged"]:
        return "diverged"
    if chance is None or acc is None or not math.isfinite(acc):
        return None
    if acc >= chance + 0.5 * (1 - chance):
        return "learns"
    if acc < chance + 0.1 * (1 - chance):
        return "barely learns"
    return "learns partly"


def story_lines(rows, chance):
    out = []
    for r in rows:
        g, d = r["grad_ratio_first"], r["delta_ratio_first"]
        text = (f"{r['name']}: at the first step layer 1's weight gradient is {_fmt_ratio(g)} "
                f"of the output layer's and its error signal {_fmt_ratio(d)}")
        v = _verdict(r, chance)
        if r["accuracy"] is not None and r["accuracy"] == r["accuracy"]:
            text += f"; held-out accuracy {_fmt_pct(r['accuracy'])}"
        if v:
            text += f" ({v})"
        text += f"; diagnosis: {r['diagnosis'].replace('_', ' ')}."
        out.append(text)
    return out

"""The numbers of ``vgcore compare``: per run, per configuration (seeds pooled), the printed
table and the sentences that tell what happened."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

import vgcore as vg
from vgcore.core._ui import short_number
from vgcore.measure import diagnosis as D
from vgcore.measure.flow import SATURATING


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
    top = _top(run0.findings)
    row["diagnosis_message"] = top.message
    row["diagnosis_seed"] = run0.seed
    row["rests_on"] = rests_on(top)
    row["diagnosis_evidence"] = top.evidence
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


# ------------------------------------------------------------------------------ the page's words
def _num(v):
    return "-" if v is None or not math.isfinite(v) else short_number(v)


def rests_on(finding) -> str:
    """The measurement a finding rests on, beside the alarm level of its rule, in one line."""
    ev, kind = finding.evidence, finding.kind
    if kind in ("vanishing", "exploding", "healthy"):
        g, h = ev.get("grad_ratio"), ev.get("hidden_delta_ratio")
        lo, hi = D.VANISHING_WARNING, D.EXPLODING_WARNING
        gtext = f"weight-gradient ratio dW1/dW_out {_num(g)}"
        htext = f"error-signal ratio delta1/delta_last-hidden {_num(h)}"
        if kind == "healthy":
            return (f"{gtext} and {htext}, both within {_num(lo)} to {_num(hi)}; no layer "
                    f"saturated above {D.SATURATION_WARNING:.0%} or dead above "
                    f"{D.DEAD_WARNING:.0%}")
        bad = (lambda v: v is not None and math.isfinite(v) and v < lo) if kind == "vanishing" \
            else (lambda v: v is not None and math.isfinite(v) and v > hi)
        alarm = f"{'below' if kind == 'vanishing' else 'above'} " \
                f"{_num(lo if kind == 'vanishing' else hi)}"
        trend = next((n for n in ("grad_ratio", "delta_ratio") if f"{n}_first" in ev), None)
        if g is None and h is None and trend is not None:      # a finding of the trend alone
            label = ("weight-gradient ratio dW1/dW_out" if trend == "grad_ratio" else
                     "error-signal ratio delta1/delta_out")
            s0, s1 = ev["trend_steps"]
            return (f"{label} {_num(ev[f'{trend}_first'])} at the start of the run (step "
                    f"{s0} on), {_num(ev[f'{trend}_last'])} at its end (to step {s1}); alarm "
                    f"{alarm}")
        if bad(g) and bad(h):
            return f"{gtext} and {htext}, both {alarm}"
        if bad(h):
            return f"{htext}, {alarm}; the {gtext} looks level (it scales with the input too)"
        return f"{gtext}, {alarm}; {htext}"
    if kind == "saturation":
        fr, layers = ev.get("saturated_fraction") or [0], ev.get("layers") or [0]
        i = int(np.argmax(fr))
        return (f"saturated entries up to {100 * fr[i]:.0f}% (layer {layers[i]}), alarm above "
                f"{D.SATURATION_WARNING:.0%}")
    if kind == "dead_units":
        fr, layers = ev.get("dead_fraction") or [0], ev.get("layers") or [0]
        i = int(np.argmax(fr))
        return (f"dead units up to {100 * fr[i]:.0f}% (layer {layers[i]}), alarm above "
                f"{D.DEAD_WARNING:.0%}")
    if kind == "nonfinite":
        if ev.get("step") is not None:
            return f"NaN or Inf in the output at step {ev['step']}"
        where = [f"{w} pass at layer {ev[k]}" for w, k in
                 (("forward", "nonfinite_forward_layer"), ("backward", "nonfinite_backward_layer"))
                 if ev.get(k)]
        return "NaN or Inf in the " + " and ".join(where) if where else "NaN or Inf"
    return ", ".join(f"{k} {_num(v) if isinstance(v, float) else v}" for k, v in ev.items())


_VERBS = {"vanishing": ("vanishes", "vanish"), "exploding": ("explodes", "explode"),
          "saturation": ("saturates", "saturate"), "dead_units": ("has dead layers",
                                                                   "have dead layers"),
          "nonfinite": ("diverges", "diverge"), "no_gradient": ("gets no gradient",
                                                                 "get no gradient")}


def _floor_pct(v):          # as the table rounds it, so the two agree
    return f"{100 * v:.1f}%"


_ceil_pct = _floor_pct


def _acc(r):
    a = r["accuracy"]
    return a if a is not None and math.isfinite(a) else None


def verdict(rows, chance) -> str:
    """The report's one-line verdict: how many configurations have which problem, and how far
    the others get, e.g. "3 of 8 configurations vanish and stay near chance (≤ 11.0%
    held-out accuracy; chance 10%); the other 5 keep the gradient flowing and reach ≥ 99.4%
    held-out accuracy"."""
    n = len(rows)
    word = "configuration" if n == 1 else "configurations"
    groups: dict[str, list] = {}
    for r in rows:
        kind = "nonfinite" if r["diverged"] else r["diagnosis"]
        if r["severity"] != "info" or kind == "nonfinite":
            groups.setdefault(kind, []).append(r)
    parts: list[str] = []
    for kind, rs in groups.items():
        one, many = _VERBS.get(kind, (kind, kind))
        text = f"{len(rs)} of {n} {word} {one if len(rs) == 1 else many}" if not parts \
            else f"{len(rs)} {one if len(rs) == 1 else many}"
        accs = [_acc(r) for r in rs if _acc(r) is not None]
        if chance is not None and kind != "nonfinite" and accs:
            stuck = [r for r in rs if _verdict(r, chance) == "barely learns"]
            if len(stuck) == len(rs):
                text += (f" and stay{'s' if len(rs) == 1 else ''} near chance "
                         f"(≤ {_ceil_pct(max(accs))} held-out accuracy; chance "
                         f"{100 * chance:.0f}%)")
            elif stuck:
                text += f" ({len(stuck)} of them stay near chance)"
            else:
                text += f" yet reach{'es' if len(rs) == 1 else ''} ≥ {_floor_pct(min(accs))}"
        parts.append(text)
    flagged = {id(r) for rs in groups.values() for r in rs}
    ok = [r for r in rows if id(r) not in flagged]
    if ok:
        single = len(ok) == 1
        if parts:
            lead = "the other one" if single else f"the other {len(ok)}"
        else:
            lead = f"all {n} {word}" if n > 1 else f"the {word}"
        text = f"{lead} keep{'s' if single else ''} the gradient flowing"
        accs = [_acc(r) for r in ok if _acc(r) is not None]
        if chance is not None and accs:
            learns = [r for r in ok if _verdict(r, chance) == "learns"]
            if len(learns) == len(ok):
                text += f" and reach{'es' if single else ''} ≥ {_floor_pct(min(accs))} " \
                        f"held-out accuracy"
            elif not learns:
                text += (f" but {'does' if single else 'do'} not learn (≤ "
                         f"{_ceil_pct(max(accs))} held-out accuracy)")
            else:
                text += (f"; {len(learns)} of them learn (half-way or more from chance to "
                         f"100% accuracy)")
        else:
            losses = [r["loss"] for r in ok if r["loss"] is not None and math.isfinite(r["loss"])]
            if losses:
                text += f" and reach{'es' if single else ''} a held-out loss ≤ {max(losses):.3g}"
        parts.append(text)
    return "; ".join(parts) + "."

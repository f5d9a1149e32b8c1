"""What a diagnosis looks at (:class:`_Snap`: one step's measurements, or the median of a
Recorder's latest records with its epoch dead-unit fractions) and, for a Recorder, the trends
between its first and last records."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vgcore.measure._diagnosis_words import (_family, _join, _nanmedian, _num, _pct, _py, _ranges,
                                             _steps_text, _uses)
from vgcore.measure.findings import SEVERITIES, Finding
from vgcore.measure.flow import FIELDS, SATURATING as _SATURATING

TREND_FACTOR = 1e2
"""A Recorder trend: ``grad_ratio`` or ``delta_ratio`` moved by two orders of magnitude between
the first and the last records."""
TREND_FRACTION = 0.25
"""A Recorder trend: a layer's saturated or dead fraction rose by a quarter of the layer."""



@dataclass
class _Snap:
    sizes: tuple
    acts: tuple
    f: dict
    grad_ratio: float
    delta_ratio: float
    nf_fwd: int | None
    nf_bwd: int | None
    init: dict | None
    net: object = None
    optimizer: dict | None = None       # _optimizer_info
    where: str = ""                     # e.g. " (median of the last 5 records, steps 10-14)"
    dead: np.ndarray | None = None      # per-layer dead fraction used by the dead rule
    dead_where: str = "on every sample of the batch"
    dead_source: str = "batch"

    @property
    def L(self):
        return len(self.sizes) - 1


def _snap_from_flow(flow, init, net):
    f = {name: np.asarray(getattr(flow, name), np.float64) for name in FIELDS}
    return _Snap(sizes=tuple(flow.sizes), acts=tuple(flow.activations), f=f,
                 grad_ratio=float(flow.grad_ratio), delta_ratio=float(flow.delta_ratio),
                 nf_fwd=flow.nonfinite_forward_layer, nf_bwd=flow.nonfinite_backward_layer,
                 init=init, net=net, dead=f["dead_fraction"])


def _snap_from_recorder(rec, recent, init, net):
    k = min(recent, len(rec))
    f = {name: np.asarray(_nanmedian(rec.history(name, -k), axis=0), np.float64)
         for name in FIELDS}
    steps = rec.history("step", -k)
    nf_fwd = int(rec.history("nonfinite_forward_layer", -1)[0]) or None
    nf_bwd = int(rec.history("nonfinite_backward_layer", -1)[0]) or None
    where = (f" (at {_steps_text(steps)})" if k == 1 else
             f" (median of the last {k} records, {_steps_text(steps)})")
    s = _Snap(sizes=tuple(rec.sizes), acts=tuple(rec.activations), f=f,
              grad_ratio=float(_nanmedian(rec.history("grad_ratio", -k))),
              delta_ratio=float(_nanmedian(rec.history("delta_ratio", -k))),
              nf_fwd=nf_fwd, nf_bwd=nf_bwd, init=init, net=net, where=where,
              dead=f["dead_fraction"])
    edf = rec.epoch_dead_fraction
    if edf.shape[0]:
        dead = np.full(s.L, np.nan)
        dead[:s.L - 1] = edf[-1]
        first, last = rec.epoch_steps[-1]
        s.dead = dead
        s.dead_where = (f"on every sample of epoch {edf.shape[0]} (steps {first}-{last})")
        s.dead_source = "epoch"
    return s


def _trends(rec, recent, findings, snap):
    n = len(rec)
    if n < 2:
        return findings
    k = max(1, min(recent, n // 2))
    s_first, s_last = rec.history("step", 0, k), rec.history("step", -k)
    first_txt, last_txt = _steps_text(s_first), _steps_text(s_last)
    by_kind = {f.kind: f for f in findings}
    out = list(findings)

    def replace(old, new):
        out[out.index(old)] = new

    def insert(message, clause):
        """Put ``clause`` before the message's closing "; try ...", if it has one."""
        head, sep, tail = message.rpartition("; try ")
        return f"{head}; {clause}{sep}{tail}" if sep else f"{message}; {clause}"

    # ratios
    from vgcore.measure import diagnosis as D      # its alarm levels (it imports this module)
    lo, hi = D.VANISHING_WARNING, D.EXPLODING_WARNING
    for name in ("grad_ratio", "delta_ratio"):
        a = float(_nanmedian(rec.history(name, 0, k)))
        b = float(_nanmedian(rec.history(name, -k)))
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            continue
        trend = _ratio_trend(a, b, lo, hi)
        if trend is None:
            continue
        kind, state = trend
        what = "the gradient" if name == "grad_ratio" else "the error signal (delta)"
        text = (f"{what} reaching layer 1, relative to the output layer's, "
                f"{'rose' if b > a else 'fell'} from {_num(a)} ({first_txt}) to {_num(b)} "
                f"({last_txt})")
        alarm = f"below {_num(lo)}" if kind == "vanishing" else f"above {_num(hi)}"
        text += {"recovering": ", back within the alarm range",
                 "improving": f": improving, but still {alarm}",
                 "crossed": f": from {'exploding' if kind == 'vanishing' else 'vanishing'} "
                            f"to {kind}, now {alarm}",
                 "beyond": f", now {alarm}", "heading": ""}[state]
        deep = b < D.VANISHING_ERROR if kind == "vanishing" else b > D.EXPLODING_ERROR
        severity = "error" if deep else "warning"
        ev = {f"{name}_first": a, f"{name}_last": b, f"{name}_trend": state,
              "trend_steps": [int(s_first[0]), int(s_last[-1])]}
        if kind in by_kind:             # the snapshot's finding, or the other ratio's trend
            old = by_kind[kind]
            worse = max(old.severity, severity, key=SEVERITIES.index)
            new = Finding(kind, worse, insert(old.message, f"over the run, {text}"),
                          {**old.evidence, **ev}, old.fix)
            replace(old, new)
            by_kind[kind] = new
            continue
        if state == "recovering":
            message = (f"{kind} at the start, recovering (trend): over the run, {text}; the "
                       f"first layers " + ("learned slowly" if kind == "vanishing" else
                                           "took steps too large for them") + " until then")
        elif state == "heading":
            message = (f"{kind} (trend): over the run, {text}; still within the alarm range, "
                       f"but heading out of it")
        else:
            message = f"{kind} (trend): over the run, {text}"
        new = Finding(kind, severity, message, ev, _trend_fix(kind, state, snap))
        out.append(new)
        by_kind[kind] = new

    # saturated and dead fractions
    L = rec.n_layers
    acts = rec.activations
    for name, kind, sat_act in (("saturated_fraction", "saturation", True),
                                ("dead_fraction", "dead_units", False)):
        a = _nanmedian(rec.history(name, 0, k), axis=0)[:L - 1]
        b = _nanmedian(rec.history(name, -k), axis=0)[:L - 1]
        rise = b - a
        layers = [l + 1 for l in range(L - 1) if (acts[l] in _SATURATING) == sat_act
                  and np.isfinite(rise[l]) and rise[l] >= TREND_FRACTION]
        if not layers:
            continue
        i = max(range(len(layers)), key=lambda j: rise[layers[j] - 1])
        top = layers[i]
        adjective = "saturated" if sat_act else "dead"
        text = (f"{adjective} units in {_ranges(layers)} rose over the run (layer {top}: "
                f"{_pct(a[top - 1])} at {first_txt}, {_pct(b[top - 1])} at {last_txt})")
        ev = {f"{name}_first": _py(a[np.asarray(layers) - 1]),
              f"{name}_last": _py(b[np.asarray(layers) - 1]), "trend_layers": layers,
              "trend_steps": [int(s_first[0]), int(s_last[-1])]}
        if kind in by_kind:
            old = by_kind[kind]
            new = Finding(kind, old.severity, insert(old.message, text),
                          {**old.evidence, **ev}, old.fix)
            replace(old, new)
            by_kind[kind] = new
        else:
            if sat_act:
                fam = _family(acts[top - 1])
                fix = "a smaller learning rate" + (
                    "" if _uses(snap, "norm") else ", batch normalisation before the "
                    "activation") + (", or relu-family activations with He init"
                                     if fam in ("sigmoid", "tanh") else "")
                cause = "units are being pushed into saturation during training"
            else:
                fix = ("a lower learning rate (large updates knock units into the dead zone), "
                       + ("glorot init, tanh" if acts[top - 1] == "hard_tanh" else "leaky_relu")
                       + ("" if (snap.optimizer or {}).get("clip_norm")
                          else ", gradient clipping"))
                cause = "units are dying during training, typically from a learning rate " \
                        "that is too high"
            new = Finding(kind, "warning", f"{kind} (trend): {text}; {cause}", ev, fix)
            out.append(new)
            by_kind[kind] = new

    # when did the non-finite values start?
    nf = by_kind.get("nonfinite")
    if nf is not None:
        bad = ((rec.history("nonfinite_forward_layer") > 0)
               | (rec.history("nonfinite_backward_layer") > 0))
        if bad[-1]:
            good = np.flatnonzero(~bad)
            start = int(good[-1]) + 1 if good.size else 0
            since = int(rec.history("step", start, start + 1)[0])
            clause = f"non-finite since step {since}" + (
                " (the first record)" if start == 0 else
                f" (the record before, step {int(rec.history('step', start - 1, start)[0])}, "
                f"was finite)")
            new = Finding(nf.kind, nf.severity, insert(nf.message, clause),
                          {**nf.evidence, "nonfinite_since_step": since}, nf.fix)
            replace(nf, new)
    return out


def _ratio_trend(a, b, lo, hi):
    """(kind, state) of a ratio that moved from ``a`` (the first records) to ``b`` (the last)
    by :data:`TREND_FACTOR` or more, or None.  Against the alarm range [lo, hi]: "recovering"
    (back inside from outside), "crossed" (from beyond one end to beyond the other),
    "improving" (toward 1 but still beyond the end it came from), "beyond" (out past an end,
    or further out); inside all along, "heading" when it ended in the outer half of the range
    on a log scale (more than sqrt(hi) or less than sqrt(lo)), else no trend: a ratio that
    moved to the middle of the range has not gone anywhere worrying."""
    if TREND_FACTOR * a > b > a / TREND_FACTOR:
        return None
    a_in, b_in = lo <= a <= hi, lo <= b <= hi
    if b_in and not a_in:
        return ("vanishing" if a < lo else "exploding"), "recovering"
    if not b_in:
        kind = "vanishing" if b < lo else "exploding"
        if not a_in and (a < lo) != (b < lo):
            return kind, "crossed"
        if not a_in and abs(np.log(b)) < abs(np.log(a)):
            return kind, "improving"
        return kind, "beyond"
    if b < np.sqrt(lo):
        return "vanishing", "heading"
    if b > np.sqrt(hi):
        return "exploding", "heading"
    return None


def _trend_fix(kind, state, snap):
    if kind == "vanishing":
        heading = state in ("heading", "beyond", "crossed")
        adaptive = (snap.optimizer or {}).get("adaptive")
        remedies = _join([
            "a variance-preserving initialisation for the activation"
            + ("" if heading else " (He for relu, Glorot or orthogonal for tanh)"),
            "" if _uses(snap, "norm") else "batch normalisation",
            "" if _uses(snap, "residual") else "residual connections",
            "" if adaptive or not heading else "an adaptive optimiser (Adam)"])
        return ("watch the first layers: if it keeps falling, use " + remedies if heading
                else "to start where training got to: " + remedies)
    if state in ("heading", "beyond", "crossed"):
        return ("lower the learning rate, clip gradients by their global norm, add batch "
                "normalisation")
    return ("a smaller initial weight scale, a learning-rate warm-up, or clipping gradients by "
            "their global norm")

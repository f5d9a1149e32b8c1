"""Diagnose gradient flow in plain language: what is wrong, the numbers that show it, and the
known remedies.

>>> findings = diagnose(net)            # after a measured forward + backward (train_step)
>>> print(format_findings(findings))
[ERROR] vanishing: the gradient reaching layer 1 is 3.5e-17 of layer 21's (the output
layer); it shrinks about 0.14x per layer from layer 21 down to layer 1; sigmoid's slope is at
most 0.25, so every sigmoid layer scales the gradient down; ... try relu with he init, ...

:func:`diagnose` takes a :class:`vgcore.flow.GradientFlow`, a :class:`vgcore.MLP` (its
:meth:`~vgcore.MLP.gradient_flow`, plus its initialiser and weights) or a
:class:`vgcore.recorder.Recorder` (the median of its latest records, its epoch dead-unit
fractions, and trends over the run).  It returns a list of :class:`Finding`, most severe first;
when nothing is wrong, a single ``"healthy"`` finding.

The messages and fixes speak of the network at hand: its depth, activation and initialiser,
and, when the network and the optimiser are given (``net=``, ``optimizer=``), they never
suggest what it already uses (batch norm to a batch-normalised network, Adam to an Adam run)
and say, with the measured numbers, why what it uses does not suffice.

Rules (layers are 1-based; ``L`` is the output layer)
----------------------------------------------------
nonfinite (error)
    a NaN or Inf appeared in the forward or backward pass (or, given the network, sits in its
    parameters); names the first layer of each.
vanishing
    ``grad_ratio`` (||dL/dW_1|| / ||dL/dW_L||) or the compounded gain of the hidden layers
    (``delta_norm[0] / delta_norm[L-2]``, the product of the per-layer gains) is below
    :data:`VANISHING_WARNING` (error below :data:`VANISHING_ERROR`).  The second catches
    networks whose forward signal shrinks as fast as the error (tanh with the standard init):
    their weight gradients are level but tiny everywhere.  When a hidden layer lost more than
    :data:`UNDERFLOW_WARNING` of its error entries to underflow
    (:attr:`vgcore.flow.GradientFlow.underflow_fraction`), the finding says so: the error fell
    below the dtype's smallest normal (float32: 1.2e-38) at those layers, the layers below
    receive exactly 0, and float64 shows its size.  It stays a vanishing error: a gradient
    that vanished below the range has vanished.
exploding
    either ratio above :data:`EXPLODING_WARNING` (error above :data:`EXPLODING_ERROR`).  The
    compounded gain catches a linear stack with weights too large, whose ``grad_ratio`` stays
    near 1 (forward and backward grow alike) while the error grows layer after layer.
saturation
    a hidden layer with an activation that saturates (:data:`SATURATING`: its derivative decays
    smoothly) has more than :data:`SATURATION_WARNING` of its entries saturated (error above
    :data:`SATURATION_ERROR`).  Saturated is :attr:`vgcore.flow.GradientFlow.saturated_fraction`,
    the one definition of :mod:`vgcore.flow`.
dead_units
    a hidden layer with a piecewise-linear activation (relu, leaky_relu, hard_tanh, identity),
    whose zero derivatives are inactive rather than saturated, has more than
    :data:`DEAD_WARNING` of its units with zero derivative on every sample (error above
    :data:`DEAD_ERROR`, or a layer completely dead, which blocks all gradient below it).
no_gradient (info)
    the loss gradient itself is zero: nothing to diagnose.
healthy (info)
    none of the above.

With a Recorder, the findings describe the median of the last ``recent`` records, dead units
use the last closed epoch when there is one, and trends between the first and the last records
are added: a ratio that fell (or rose) by :data:`TREND_FACTOR`, or a saturated or dead fraction
that rose by :data:`TREND_FRACTION`.  A ratio's trend says where it ended against the alarm
range (:data:`VANISHING_WARNING` to :data:`EXPLODING_WARNING`): back inside from outside is a
recovery ("vanishing at the start, recovering"), still beyond the end it came from is
"improving", out of the range is "now below" (or "above") it; a ratio that moved within the
range to its middle is no trend (``_diagnosis_snapshot._ratio_trend``).
"""
from __future__ import annotations

import math

import numpy as np

from vgcore.measure._diagnosis_snapshot import (TREND_FACTOR, TREND_FRACTION, _snap_from_flow,
                                                _snap_from_recorder, _trends)
from vgcore.measure._diagnosis_words import (ADAPTIVE_OPTIMIZERS, _RECOMMENDED, _RECOMMENDED_LONG,
                                             _decay_text, _first_grad_rms, _join, _optimizer_info,
                                             _uses,
                                             _family, _init_text, _init_verdict, _network_text,
                                             _num, _pct, _py, _py_dict, _ranges, _share, _upto,
                                             _vanishing_fix)
from vgcore.measure.findings import SEVERITIES, Finding, format_findings
from vgcore.measure.flow import SATURATING, SATURATION_THRESHOLD, GradientFlow
from vgcore.core.network import MLP
from vgcore.measure.recorder import Recorder

__all__ = ["Finding", "diagnose", "format_findings", "SEVERITIES", "KINDS", "SATURATING",
           "VANISHING_WARNING", "VANISHING_ERROR", "EXPLODING_WARNING", "EXPLODING_ERROR",
           "SATURATION_WARNING", "SATURATION_ERROR", "DEAD_WARNING", "DEAD_ERROR",
           "UNDERFLOW_WARNING",
           "TREND_FACTOR", "TREND_FRACTION", "RECENT_RECORDS", "ADAPTIVE_OPTIMIZERS"]

KINDS = ("nonfinite", "vanishing", "exploding", "saturation", "dead_units", "no_gradient",
         "healthy")

VANISHING_WARNING = 1e-2
"""First layer vs last: below 1/100 the first layers learn two orders of magnitude slower than
the last with one learning rate.  Healthy deep networks measure 0.1-2 (20 layers of relu with
He init or tanh with orthogonal/Glorot init); the compounded hidden-layer gain of tanh with
orthogonal init is about 0.15 at 20 layers, because the first layers see larger inputs."""
VANISHING_ERROR = 1e-4
"""Below 1/10 000 the first layers are effectively frozen (sigmoid with the standard init:
1e-17 at 20 layers)."""
EXPLODING_WARNING = 1e2
"""The mirror image of :data:`VANISHING_WARNING`: the first layers get 100 times the gradient
of the last, so a learning rate that suits one end is unstable at the other (tanh with
sigma_w = 3: about 300 at 20 layers)."""
EXPLODING_ERROR = 1e4
"""Four orders of magnitude: the first step of any learning rate that moves the last layers
overshoots in the first (a linear stack with sigma_w = 2: 2**19 = 5e5 at 20 layers)."""
SATURATION_WARNING = 0.3
"""Fraction of a layer's entries with ``|phi'(h)| < 0.05 max |phi'|`` (see
:data:`vgcore.flow.SATURATION_THRESHOLD`).  Healthy tanh networks stay below 0.15 (orthogonal
or Glorot init, standardised inputs); tanh with sigma_w = 3 (chaotic) holds 0.35-0.6 in every
layer.  0.5 would flag that network only in its first layer and only for some input scales, so
the alarm is at 0.3: almost a third of the paths through the layer pass under 5% of the
gradient."""
SATURATION_ERROR = 0.8
"""Most of the layer is flat: the gradient through it is mostly lost."""
DEAD_WARNING = 0.5
"""Fraction of a layer's units with zero derivative on every sample of the batch (or the
epoch).  Deep ReLU networks with He init already reach 0.3-0.45 in their deepest layers at
initialisation (measured: 20 layers of width 64, maximum over layers 0.27-0.44 over 10 seeds,
per batch of 128 and per epoch of 2048 samples), because the representations of different
inputs become correlated with depth and a unit tends to be on for all or off for all of them.
Above one half, more units are dead than even fully correlated inputs would switch off."""
DEAD_ERROR = 0.9
"""Nearly the whole layer passes no gradient."""
UNDERFLOW_WARNING = 0.01
"""Fraction of a hidden layer's error entries lost to underflow (the error arriving from above
and phi' were not 0, the product is below the smallest normal) above which a vanishing finding
says the gradient left the dtype's range.  A healthy network loses none (60 relu layers with He
init: 0 in every layer); issue #11's 60 x 96 sigmoid stack under the standard init loses 2-21%
of the entries in each of the few layers where its float32 error crosses 1e-38.  One percent is
no rounding accident."""
RECENT_RECORDS = 5
"""A Recorder's findings use the median of this many latest records (one batch is noisy)."""
SHRINKING_SIGNAL = 1e-2
"""Mentioned in a vanishing finding when the activations' standard deviation in the last hidden
layer is below this fraction of the first's: the forward signal is dying as well."""

# SATURATING (from vgcore.flow, read off the activation spec): the activations checked for
# saturation; the others (piecewise linear) are checked for dead units (units whose derivative is
# exactly zero on every sample).

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_KIND_RANK = {k: i for i, k in enumerate(KINDS)}


# ------------------------------------------------------------------------ the rules
def _hidden_ratio(s):
    """delta_norm of layer 1 / delta_norm of the last hidden layer (the compounded gain of the
    hidden layers), or NaN."""
    if s.L < 3:
        return math.nan
    dn = s.f["delta_norm"]
    a, b = dn[0], dn[s.L - 2]
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return math.nan
    return float(a / b)


def _blocked(s):
    """1-based hidden layers whose derivative is zero on every entry: no gradient passes."""
    z = s.f["zero_derivative_fraction"][:s.L - 1]
    return [l + 1 for l in np.flatnonzero(z >= 1.0)]


def _hidden_acts(s, layers):
    return sorted({s.acts[l - 1] for l in layers})


def _rule_nonfinite(s):
    bad_params = []
    if s.net is not None:
        for l, (w, b) in enumerate(zip(s.net.weights, s.net.biases)):
            n_bad = int(np.count_nonzero(~np.isfinite(w)) + np.count_nonzero(~np.isfinite(b)))
            if n_bad:
                bad_params.append((l + 1, n_bad))
    if s.nf_fwd is None and s.nf_bwd is None and not bad_params:
        return []
    parts = []
    if s.nf_fwd is not None:
        parts.append(f"first in the forward pass at layer {s.nf_fwd} (its pre-activations)")
    if s.nf_bwd is not None:
        parts.append(f"first in the backward pass at layer {s.nf_bwd} (the backward pass "
                     f"runs from layer {s.L} down)")
    what = "NaN or Inf values appear " + " and ".join(parts) if parts else \
        "the forward and backward passes were finite"
    if bad_params:
        what += "; " + "; ".join(f"layer {l}'s parameters hold {n} non-finite value"
                                 f"{'s' if n > 1 else ''}" for l, n in bad_params)
    evidence = {"nonfinite_forward_layer": s.nf_fwd, "nonfinite_backward_layer": s.nf_bwd}
    if bad_params:
        evidence["nonfinite_parameter_layers"] = [l for l, _ in bad_params]
        evidence["nonfinite_parameter_counts"] = [n for _, n in bad_params]
    fix = ("lower the learning rate and clip gradients (an overflowing update is the usual "
           "cause); check the inputs, targets and loss for NaN or Inf; re-initialise or "
           "reload the network, since NaN weights do not recover")
    msg = (f"nonfinite: {what}{s.where}; try a lower learning rate and gradient clipping, "
           f"then re-initialise")
    return [Finding("nonfinite", "error", msg, evidence, fix)]


def _rule_saturation(s):
    sat = s.f["saturated_fraction"]
    blocked = [l for l in _blocked(s) if s.acts[l - 1] in SATURATING]
    layers = [l + 1 for l in range(s.L - 1) if s.acts[l] in SATURATING
              and ((np.isfinite(sat[l]) and sat[l] > SATURATION_WARNING) or l + 1 in blocked)]
    if not layers:
        return []
    fr = np.asarray([sat[l - 1] for l in layers])
    severity = "error" if (fr.max() > SATURATION_ERROR or blocked) else "warning"
    acts = _hidden_acts(s, layers)
    act = "/".join(acts)
    family = _family(acts[0])
    msg = (f"saturation: {_share(fr)} of {act} units in {_ranges(layers)} are saturated "
           f"(|phi'| < {SATURATION_THRESHOLD:g} of its maximum{_upto(fr, layers)}){s.where}")
    if blocked:
        msg += (f"; {_ranges(blocked)} {'is' if len(blocked) == 1 else 'are'} saturated on "
                f"every entry, so no gradient reaches layers 1-{max(blocked)}")
    rec = _RECOMMENDED[family]
    verdict = _init_verdict(s.init, family)
    if verdict == "large":
        msg += f"; {_init_text(s.init)} is larger than the variance-preserving scale for {act}"
    short, long = [], []
    if verdict != "ok":
        short.append(f"{rec} init")
        long.append(f"a variance-preserving initialisation ({_RECOMMENDED_LONG[family]}; for "
                    f"init='normal', sigma_w near 1)")
    short.append("standardised inputs")
    long.append("inputs standardised to zero mean and unit variance")
    if not _uses(s, "norm"):
        short.append("batch norm")
        long.append("batch normalisation before the activation")
    if family in ("sigmoid", "tanh"):
        short.append("relu with he init")
        long.append("or relu/leaky_relu with He init, which do not saturate for positive "
                    "inputs")
    msg += "; try " + _join(short)
    fix = "keep pre-activations in the non-saturated range: " + ", ".join(long)
    if verdict == "ok":
        fix += (f" (the initialisation, {_init_text(s.init)}, is already variance-preserving "
                f"for {act}: the inputs' scale or the training pushes the units out)")
    evidence = {"layers": layers, "saturated_fraction": _py(fr), "activation": act,
                "mean_saturated_fraction": float(fr.mean())}
    if blocked:
        evidence["blocked_layers"] = blocked
    return [Finding("saturation", severity, msg, evidence, fix)]


def _rule_dead(s):
    dead = s.dead
    blocked = [l for l in _blocked(s) if s.acts[l - 1] not in SATURATING]
    layers = [l + 1 for l in range(s.L - 1) if s.acts[l] not in SATURATING
              and ((np.isfinite(dead[l]) and dead[l] > DEAD_WARNING) or l + 1 in blocked)]
    if not layers:
        return []
    fr = np.asarray([dead[l - 1] for l in layers])
    severity = "error" if (fr.max() > DEAD_ERROR or blocked) else "warning"
    act = "/".join(_hidden_acts(s, layers))
    msg = (f"dead_units: {_share(fr)} of {act} units in {_ranges(layers)} have zero gradient "
           f"{s.dead_where}{_upto(fr, layers, ' (', ')')}"
           f"{s.where if s.dead_source == 'batch' else ''}")
    if blocked:
        msg += (f"; {_ranges(blocked)} {'is' if len(blocked) == 1 else 'are'} dead on every "
                f"entry, so no gradient reaches layers 1-{max(blocked)}")
    evidence = {"layers": layers, "dead_fraction": _py(fr), "activation": act,
                "measured_over": s.dead_source}
    clipped = "hard_tanh" in act
    he = bool(s.init) and str(s.init.get("name", "")).startswith("he_")
    norm = "" if _uses(s, "norm") else "; batch normalisation"
    if clipped:
        msg += "; hard_tanh passes no gradient where |h| > 1"
        glorot = _init_verdict(s.init, "tanh") != "ok"
        fix = ("keep pre-activations within +-1: "
               + ("Glorot init (init='glorot_normal'), " if glorot else "")
               + "inputs standardised to zero mean and unit variance, a lower learning rate"
               + norm + "; or tanh, whose gradient fades beyond +-1 instead of stopping")
        short = ["glorot init" if glorot else "", "standardised inputs",
                 "batch norm" if norm else "", "tanh"]
    else:
        fix = ("use leaky_relu (or elu/selu), which keep a gradient for negative inputs; "
               + ("" if he else "He init (init='he_normal'); ")
               + "a lower learning rate (large updates push units into the dead zone); zero or "
               "slightly positive bias initialisation" + norm)
        short = ["leaky_relu", "" if he else "he init", "a lower learning rate",
                 "zero/positive bias init"]
    if s.net is not None:
        neg = [(l, float(np.mean(s.net.biases[l - 1]))) for l in layers
               if np.mean(s.net.biases[l - 1]) < -1.0]
        if neg:
            msg += (f"; {_ranges(l for l, _ in neg)} "
                    f"{'has' if len(neg) == 1 else 'have'} strongly negative biases (mean "
                    f"{_num(neg[0][1])}" + (f" in layer {neg[0][0]})" if len(neg) > 1 else ")"))
            evidence["negative_bias_layers"] = [l for l, _ in neg]
            evidence["mean_bias"] = [b for _, b in neg]
            fix = (f"reset the biases of {_ranges(l for l, _ in neg)} to zero (or small positive "
                   f"values); " + fix)
    msg += "; try " + _join(short)
    if blocked:
        evidence["blocked_layers"] = blocked
    return [Finding("dead_units", severity, msg, evidence, fix)]

def _flow_ratios(s):
    """(grad_ratio, compounded hidden-layer gain), NaN where not measurable."""
    gr = s.grad_ratio if np.isfinite(s.grad_ratio) and s.grad_ratio > 0 else math.nan
    return gr, _hidden_ratio(s)


def _rule_vanishing(s, findings):
    if _blocked(s):
        return []       # a fully dead or saturated layer: reported by its own rule
    gr, hr = _flow_ratios(s)
    cands = [v for v in (gr, hr) if np.isfinite(v)]
    if not cands or min(cands) >= VANISHING_WARNING:
        return []
    worst = min(cands)
    severity = "error" if worst < VANISHING_ERROR else "warning"
    L = s.L
    if np.isfinite(gr) and gr < VANISHING_WARNING:
        what = f"the gradient reaching layer 1 is {_num(gr)} of layer {L}'s (the output layer)"
    else:
        what = (f"the error signal (delta) reaching layer 1 is {_num(hr)} of layer {L - 1}'s "
                f"(the last hidden layer)")
    hidden = sorted(set(s.acts[:L - 1]))
    parts = [what + s.where + _network_text(s, hidden)]
    decay, where = _decay_text(s, -1)
    if decay:
        parts.append(decay)
    std = s.f["act_std"]
    if L >= 3 and np.isfinite(std[0]) and std[0] > 0 and std[L - 2] / std[0] < SHRINKING_SIGNAL:
        parts.append(f"the forward signal shrinks too (activation std {_num(std[0])} in layer "
                     f"1, {_num(std[L - 2])} in layer {L - 1}), so every layer's weight "
                     f"gradient is tiny")
    family = _family(hidden[0]) if hidden else "linear"
    for f in findings:
        if f.kind == "saturation":
            parts.append(f"{_pct(f.evidence['mean_saturated_fraction'])} of "
                         f"{f.evidence['activation']} units in {_ranges(f.evidence['layers'])} "
                         f"are saturated")
        if f.kind == "dead_units":
            parts.append(f"{_ranges(f.evidence['layers'])} have many dead units")
    underflow = _underflow_text(s)
    if underflow:
        parts.append(underflow[0])
    if "sigmoid" in hidden:
        parts.append("sigmoid's slope is at most 0.25, so every sigmoid layer scales the "
                     "gradient down")
    verdict = _init_verdict(s.init, family)
    if verdict == "small":
        parts.append(f"this init is below the variance-preserving scale for "
                     f"{'/'.join(hidden)} ({_RECOMMENDED[family]} init)")
    if np.isfinite(gr) and gr >= VANISHING_WARNING:
        parts.append(f"the weight-gradient ratio ({_num(gr)}) looks level only because "
                     f"||dL/dW_l|| ~ ||x_l|| ||delta_l||: the first layers' larger inputs make "
                     f"up for their vanishing error signal")
    fix, short = _vanishing_fix(s, family, verdict, hidden)
    parts.append(short)
    evidence = {"grad_ratio": s.grad_ratio, "hidden_delta_ratio": hr,
                "delta_ratio": s.delta_ratio, "activation": "/".join(hidden)}
    if s.init:
        evidence["init"] = s.init["name"]
    if s.optimizer:
        evidence["optimizer"] = s.optimizer["name"]
        evidence["first_layer_grad_rms"] = _first_grad_rms(s)
    if where:
        evidence.update(where)
    if underflow:
        evidence.update(underflow[1])
        fix += underflow[2]
    return [Finding("vanishing", severity, "vanishing: " + "; ".join(parts), _py_dict(evidence),
                    fix)]


def _underflow_text(s):
    """(message part, evidence, fix addition) when hidden layers lost more than
    UNDERFLOW_WARNING of their error entries to underflow, else None."""
    uf = s.f.get("underflow_fraction")
    if uf is None or s.L < 2:
        return None
    hidden = np.asarray(uf[:s.L - 1], np.float64)
    layers = [l + 1 for l in np.flatnonzero(np.isfinite(hidden) & (hidden > UNDERFLOW_WARNING))]
    if not layers:
        return None
    fr = hidden[[l - 1 for l in layers]]
    f64 = s.net is not None and np.dtype(getattr(s.net, "dtype", np.float32)) == np.float64
    dtype, tiny = ("float64", "2.2e-308") if f64 else ("float32", "1.2e-38")
    text = (f"in {_ranges(layers)} the error fell below {dtype}'s smallest normal ({tiny}) "
            f"and was lost to underflow ({_share(fr)} of the entries{_upto(fr, layers)})")
    below = min(layers) - 1
    if below >= 1:
        text += (f", so layer{'s 1-' + str(below) if below > 1 else ' 1'} "
                 f"receive{'' if below > 1 else 's'} an error of exactly 0")
    text += f": the gradient vanished below {dtype}'s range"
    if not f64:
        text += "; float64 (dtype='float64') shows its size"
    evidence = {"underflow_layers": layers, "underflow_fraction": _py(fr)}
    fix = ("" if f64 else "; to see how small the gradient really is, run the same network "
           "in float64 (dtype='float64', or MLP.from_torch(module, dtype='float64'))")
    return text, evidence, fix


def _rule_exploding(s, findings):
    gr, hr = _flow_ratios(s)
    cands = [v for v in (gr, hr) if np.isfinite(v)]
    if not cands or max(cands) <= EXPLODING_WARNING:
        return []
    worst = max(cands)
    severity = "error" if worst > EXPLODING_ERROR else "warning"
    L = s.L
    if np.isfinite(gr) and gr > EXPLODING_WARNING:
        what = (f"the gradient reaching layer 1 is {_num(gr)} times layer {L}'s (the output "
                f"layer)")
    else:
        what = (f"the error signal (delta) reaching layer 1 is {_num(hr)} times layer "
                f"{L - 1}'s (the last hidden layer)")
    hidden = sorted(set(s.acts[:L - 1]))
    parts = [what + s.where + _network_text(s, hidden)]
    if not (np.isfinite(gr) and gr > EXPLODING_WARNING):
        gmax = float(np.nanmax(s.f["grad_norm"]))
        parts.append(f"weight gradients reach {_num(gmax)}")
    decay, where = _decay_text(s, +1)
    if decay:
        parts.append(decay)
    family = _family(hidden[0]) if hidden else "linear"
    if any(f.kind == "saturation" for f in findings):
        parts.append(f"the {'/'.join(hidden)} units saturate at the same time: the weights are "
                     f"too large (the chaotic regime)")
    verdict = _init_verdict(s.init, family)
    if verdict == "large":
        parts.append(f"this init is above the variance-preserving scale for "
                     f"{'/'.join(hidden)} ({_RECOMMENDED[family]} init)")
    rec = _RECOMMENDED.get(family, "variance-preserving")
    clip = (s.optimizer or {}).get("clip_norm")
    short = [f"{rec} init (smaller weights)" if verdict != "ok" else "",
             "" if clip else "gradient clipping", "a lower learning rate",
             "" if _uses(s, "norm") else "batch norm"]
    parts.append("try " + _join(short))
    fix = "; ".join(x for x in (
        f"shrink the initial weights to the variance-preserving scale "
        f"({_RECOMMENDED_LONG[family]})" if verdict != "ok" else "",
        f"clip gradients harder (clip_norm is {_num(clip)} now)" if clip else
        "clip gradients by their global norm",
        "lower the learning rate",
        "" if _uses(s, "norm") else "add batch normalisation") if x)
    evidence = {"grad_ratio": s.grad_ratio, "hidden_delta_ratio": hr,
                "delta_ratio": s.delta_ratio, "max_grad_norm": float(np.nanmax(
                    s.f["grad_norm"])) if np.isfinite(s.f["grad_norm"]).any() else math.nan,
                "activation": "/".join(hidden)}
    if s.init:
        evidence["init"] = s.init["name"]
    if where:
        evidence.update(where)
    return [Finding("exploding", severity, "exploding: " + "; ".join(parts),
                    _py_dict(evidence), fix)]


def _rule_no_gradient(s):
    out = s.f["delta_norm"][-1]
    if np.isfinite(out) and out == 0:
        return [Finding("no_gradient", "info",
                        f"no_gradient: the loss gradient at the output is zero{s.where} (the "
                        f"network fits this batch exactly, or the loss is flat); nothing to "
                        f"diagnose", {"output_delta_norm": 0.0}, "")]
    return []


def _rules(s):
    findings = _rule_nonfinite(s)
    findings += _rule_saturation(s)
    findings += _rule_dead(s)
    findings += _rule_vanishing(s, findings)
    findings += _rule_exploding(s, findings)
    if not findings:
        findings += _rule_no_gradient(s)
    return findings


# ------------------------------------------------------------------------ public API
def diagnose(source, *, net=None, optimizer=None, recent=RECENT_RECORDS) -> list:
    """Diagnose the gradient flow of a network, a step's measurements or a recorded run.

    Parameters
    ----------
    source : vgcore.flow.GradientFlow, vgcore.MLP or vgcore.recorder.Recorder
        What to diagnose.  An MLP is read through :meth:`~vgcore.MLP.gradient_flow` (so it
        needs a measured forward and backward pass); its initialiser and parameters are used
        too.  A Recorder is read through its latest records (median of ``recent``), its last
        closed epoch's dead-unit fractions, and the trends between its first and last records.
    net : vgcore.MLP, optional
        The network the measurements come from, when ``source`` is a GradientFlow or a
        Recorder: gives the initialiser's name and scale, the biases and the parameters'
        finiteness.  It must have the same layer sizes.
    optimizer : vgcore.optim optimiser or str, optional
        The optimiser that trains the network (or its name: "sgd", "momentum", "nesterov",
        "rmsprop", "adagrad", "adam", "adamw").  Only the wording uses it: the fixes then
        never suggest what is already in use (Adam to an Adam run, clipping when it clips)
        and say, with the measured gradient size, why it does not suffice.
    recent : int, >= 1
        How many latest records of a Recorder the findings are based on (default
        :data:`RECENT_RECORDS`).

    Returns
    -------
    list of Finding
        Most severe first; a single ``"healthy"`` (or ``"no_gradient"``) info finding when no
        rule fires.

    Raises
    ------
    TypeError
        ``source``, ``net`` or ``optimizer`` of the wrong type.
    ValueError
        ``net`` with other sizes than ``source``, an empty Recorder, an unknown optimiser
        name, or a bad ``recent``.
    RuntimeError
        An MLP without a measured step (from :meth:`~vgcore.MLP.gradient_flow`).
    """
    if isinstance(recent, (bool, np.bool_)) or not isinstance(recent, (int, np.integer)):
        raise TypeError(f"recent: expected an integer, got {type(recent).__name__}")
    if recent < 1:
        raise ValueError(f"recent: expected an integer >= 1, got {recent}")
    if net is not None and not isinstance(net, MLP):
        raise TypeError(f"net: expected a vgcore.MLP or None, got {type(net).__name__}")
    opt_info = _optimizer_info(optimizer)
    if isinstance(source, MLP):
        if net is not None and net is not source:
            raise ValueError("net: expected None (or the same network) when source is an MLP, "
                             "got another network")
        net = source
        source = source.gradient_flow()
    if isinstance(source, GradientFlow):
        sizes = tuple(source.sizes)
    elif isinstance(source, Recorder):
        if len(source) == 0:
            raise ValueError("source: expected a Recorder with at least one record, got an "
                             "empty one; call record(net) after a measured step first")
        sizes = tuple(source.sizes)
    else:
        raise TypeError(f"source: expected a vgcore.flow.GradientFlow, a vgcore.MLP or a "
                        f"vgcore.recorder.Recorder, got {type(source).__name__}")
    init = None
    if net is not None:
        if tuple(net.sizes) != sizes:
            raise ValueError(f"net: expected a network with sizes {list(sizes)} (those of "
                             f"source), got {list(net.sizes)}")
        init = {"name": net.init, "sigma_w": net.sigma_w, "sigma_b": net.sigma_b}
    elif isinstance(source, Recorder):
        init = source.init

    if isinstance(source, Recorder):
        snap = _snap_from_recorder(source, int(recent), init, net)
        snap.optimizer = opt_info
        findings = _rules(snap)
        findings = _trends(source, int(recent), findings, snap)
    else:
        snap = _snap_from_flow(source, init, net)
        snap.optimizer = opt_info
        findings = _rules(snap)

    if not findings:
        findings = [_healthy(snap)]
    findings.sort(key=lambda f: (-_SEVERITY_RANK[f.severity], _KIND_RANK.get(f.kind, 99)))
    return findings


def _healthy(s):
    hidden = range(s.L - 1)
    sat = [s.f["saturated_fraction"][l] for l in hidden if s.acts[l] in SATURATING]
    dead = [s.dead[l] for l in hidden if s.acts[l] not in SATURATING]
    gain = s.f["gain"][:s.L - 1]
    evidence = {"grad_ratio": s.grad_ratio, "delta_ratio": s.delta_ratio,
                "hidden_delta_ratio": _hidden_ratio(s),
                "max_saturated_fraction": float(np.nanmax(sat)) if sat else 0.0,
                "max_dead_fraction": float(np.nanmax(dead)) if dead else 0.0}
    gtxt = ""
    if np.isfinite(gain).any():
        lo, hi = float(np.nanmin(gain)), float(np.nanmax(gain))
        evidence["min_gain"], evidence["max_gain"] = lo, hi
        gtxt = f"; per-layer gain of the error {_num(lo)}-{_num(hi)}"
    msg = (f"healthy: the gradient reaching layer 1 is {_num(s.grad_ratio)} of layer {s.L}'s "
           f"(the output layer){s.where}{gtxt}; no vanishing, exploding, saturated, dead or "
           f"non-finite layers")
    return Finding("healthy", "info", msg, _py_dict(evidence), "")



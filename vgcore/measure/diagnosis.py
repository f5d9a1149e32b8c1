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
    their weight gradients are level but tiny everywhere.
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
that rose by :data:`TREND_FRACTION`.
"""
from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as np

from vgcore.core._ui import plain_json
from vgcore.measure.flow import FIELDS, SATURATING, SATURATION_THRESHOLD, GradientFlow
from vgcore.core.network import MLP
from vgcore.measure.recorder import Recorder

__all__ = ["Finding", "diagnose", "format_findings", "SEVERITIES", "KINDS", "SATURATING",
           "VANISHING_WARNING", "VANISHING_ERROR", "EXPLODING_WARNING", "EXPLODING_ERROR",
           "SATURATION_WARNING", "SATURATION_ERROR", "DEAD_WARNING", "DEAD_ERROR",
           "TREND_FACTOR", "TREND_FRACTION", "RECENT_RECORDS"]

SEVERITIES = ("info", "warning", "error")
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
TREND_FACTOR = 1e2
"""A Recorder trend: ``grad_ratio`` or ``delta_ratio`` moved by two orders of magnitude between
the first and the last records."""
TREND_FRACTION = 0.25
"""A Recorder trend: a layer's saturated or dead fraction rose by a quarter of the layer."""
RECENT_RECORDS = 5
"""A Recorder's findings use the median of this many latest records (one batch is noisy)."""
SHRINKING_SIGNAL = 1e-2
"""Mentioned in a vanishing finding when the activations' standard deviation in the last hidden
layer is below this fraction of the first's: the forward signal is dying as well."""

# SATURATING (from vgcore.flow): the activations checked for saturation; the others (piecewise
# linear) are checked for dead units (units whose derivative is exactly zero on every sample).
ADAPTIVE_OPTIMIZERS = ("rmsprop", "adagrad", "adam", "adamw")
"""Optimisers that divide each parameter's step by the running size of its gradient."""

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_KIND_RANK = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True)
class Finding:
    """One diagnosis.

    Parameters
    ----------
    kind : str
        ``"vanishing"``, ``"exploding"``, ``"saturation"``, ``"dead_units"``, ``"nonfinite"``,
        ``"no_gradient"`` or ``"healthy"`` (see :data:`KINDS`).
    severity : {"info", "warning", "error"}
    message : str
        Plain language, starting with the kind: what is wrong, where, and what to try.
    evidence : dict
        The numbers behind the message (plain Python numbers, strings and lists).
    fix : str
        The suggested remedies, with reasons.
    """

    kind: str
    severity: str
    message: str
    evidence: dict = field(default_factory=dict)
    fix: str = ""

    def __post_init__(self):
        for name in ("kind", "message", "fix"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise TypeError(f"{name}: expected a str, got {type(v).__name__}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected one of {', '.join(SEVERITIES)}, got "
                             f"{self.severity!r}")
        if not isinstance(self.evidence, dict):
            raise TypeError(f"evidence: expected a dict, got {type(self.evidence).__name__}")

    def __str__(self):
        return format_findings([self])


# ------------------------------------------------------------------------ formatting helpers
def _num(x) -> str:
    """A short number: 0.74, 12.6, 3.5e-17, 5e5."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def _pct(x) -> str:
    return f"{100 * float(x):.0f}%"


def _share(fr) -> str:
    """"82%" when all layers agree, "on average 39%" otherwise."""
    fr = np.asarray(fr)
    if fr.max() - fr.min() < 0.005:
        return _pct(fr.mean())
    return f"on average {_pct(fr.mean())}"


def _upto(fr, layers, open_="; ", close=""):
    """"; up to 57% in layer 1" when the layers differ, else ""."""
    fr = np.asarray(fr)
    if fr.max() - fr.min() < 0.005:
        return ""
    return f"{open_}up to {_pct(fr.max())} in layer {layers[int(np.argmax(fr))]}{close}"


def _ranges(layers) -> str:
    """``[1, 2, 3, 7]`` -> ``"layers 1-3, 7"`` (1-based layer numbers)."""
    layers = sorted(int(l) for l in layers)
    parts, start, prev = [], None, None
    for l in layers:
        if start is None:
            start = prev = l
        elif l == prev + 1:
            prev = l
        else:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = l
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    word = "layer" if len(layers) == 1 else "layers"
    return f"{word} {', '.join(parts)}"


def _py(v):
    """Evidence values as plain Python (floats, ints, lists, str, None; NaN stays NaN)."""
    return plain_json(v, nonfinite="keep", where="evidence")


def _max_window(x: np.ndarray):
    """The contiguous range ``[a, b]`` of ``x`` (NaN counted as 0) with the largest sum."""
    x = np.where(np.isfinite(x), x, 0.0)
    best, best_ab, cur, start = -np.inf, (0, 0), 0.0, 0
    for i, v in enumerate(x):
        if cur <= 0:
            cur, start = v, i
        else:
            cur += v
        if cur > best:
            best, best_ab = cur, (start, i)
    return best_ab[0], best_ab[1], best


# ------------------------------------------------------------------------ remedies
def _family(act: str) -> str:
    if act == "sigmoid":
        return "sigmoid"
    if act in ("tanh", "softsign", "hard_tanh"):
        return "tanh"
    if act == "selu":
        return "selu"
    if act == "identity":
        return "linear"
    return "relu"           # relu, leaky_relu, elu, gelu, silu, softplus


_RECOMMENDED = {
    "sigmoid": "glorot",
    "tanh": "glorot/orthogonal",
    "relu": "he",
    "selu": "lecun_normal",
    "linear": "orthogonal/lecun",
}
_RECOMMENDED_LONG = {
    "sigmoid": "init='glorot_normal' (Glorot/Xavier)",
    "tanh": "init='glorot_normal' or 'glorot_uniform' (Glorot/Xavier) or 'orthogonal'",
    "relu": "init='he_normal' or 'he_uniform' (He, variance 2/fan_in)",
    "selu": "init='lecun_normal' (LeCun, variance 1/fan_in, which SELU's self-normalisation "
            "needs)",
    "linear": "init='orthogonal' or 'lecun_normal' (variance 1/fan_in)",
}
# weight standard deviation * sqrt(fan_in) that keeps the signal's scale through a layer
_TARGET_SCALE = {"tanh": 1.0, "relu": math.sqrt(2.0), "selu": 1.0, "linear": 1.0}
# the same for each initialiser (square layers for glorot; orthogonal: its gain)
_INIT_SCALE = {"standard": 1 / math.sqrt(3.0), "glorot_uniform": 1.0, "glorot_normal": 1.0,
               "he_uniform": math.sqrt(2.0), "he_normal": math.sqrt(2.0),
               "lecun_uniform": 1.0, "lecun_normal": 1.0}


def _init_scale(init):
    if not init:
        return None
    name, sw = init.get("name"), init.get("sigma_w")
    if name == "normal":
        return sw
    if name == "orthogonal":
        return 1.0 if sw is None else sw
    return _INIT_SCALE.get(name)


def _init_text(init) -> str:
    if not init:
        return ""
    s = f"init={init['name']!r}"
    if init.get("sigma_w") is not None:
        s += f", sigma_w={_num(init['sigma_w'])}"
    return s


def _init_verdict(init, family):
    """"small", "ok", "large" or None (unknown) for the initialiser's scale vs the
    variance-preserving one of the activation family."""
    scale, target = _init_scale(init), _TARGET_SCALE.get(family)
    if scale is None or target is None:
        return None
    if scale < 0.85 * target:
        return "small"
    if scale > 1.15 * target:
        return "large"
    return "ok"


def _optimizer_info(optimizer):
    """``{"name", "label", "adaptive", "eps", "clip_norm"}`` of an optimiser object or name, or
    None."""
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        labels = {"sgd": "SGD", "momentum": "SGD with momentum", "nesterov": "SGD with Nesterov "
                  "momentum", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adam": "Adam",
                  "adamw": "AdamW"}
        if key not in labels:
            raise ValueError(f"optimizer: expected a vgcore.optim optimiser or one of "
                             f"{', '.join(labels)}, got {optimizer!r}")
        return {"name": key, "label": labels[key], "adaptive": key in ADAPTIVE_OPTIMIZERS,
                "eps": None, "clip_norm": None}
    from vgcore.train.optim import Optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a vgcore.optim optimiser, a name or None, got "
                        f"{type(optimizer).__name__}")
    key = type(optimizer).__name__.lower()
    label = type(optimizer).__name__
    if key == "sgd" and getattr(optimizer, "momentum", 0):
        label = f"SGD with {'Nesterov ' if optimizer.nesterov else ''}momentum " \
                f"{_num(optimizer.momentum)}"
    return {"name": key, "label": label, "adaptive": key in ADAPTIVE_OPTIMIZERS,
            "eps": getattr(optimizer, "eps", None), "clip_norm": optimizer.clip_norm}


def _uses(s, what):
    """Whether the network uses ``what`` ("batch", "layer", "norm", "residual"): True, False,
    or None when the network is not known."""
    if s.net is None:
        return None
    if what == "residual":
        return any(r is not None for r in s.net.residuals)
    if what == "norm":
        return any(n is not None for n in s.net.norms)
    return what in s.net.norms


def _first_grad_rms(s):
    """The RMS of layer 1's weight-gradient entries: what an optimiser's update sees."""
    g = float(s.f["grad_norm"][0])
    return g / math.sqrt(s.sizes[0] * s.sizes[1]) if math.isfinite(g) else math.nan


def _adam_clause(s):
    """What an adaptive optimiser does (or would do) for this network's first layer, from the
    measured size of its gradient: (short, long)."""
    rms = _first_grad_rms(s)
    opt = s.optimizer
    eps = (opt or {}).get("eps") or 1e-8
    size = f"layer 1's gradient entries are about {_num(rms)} RMS" if math.isfinite(rms) \
        else ""
    tiny = math.isfinite(rms) and rms < 1e-2 * eps
    if opt is not None and opt["adaptive"]:
        if tiny:
            return (f"{opt['label']}, in use, cannot lift layer 1's gradient entries of "
                    f"about {_num(rms)} RMS, far below its eps={_num(eps)}",
                    f"{opt['label']} is already in use and cannot help here: it divides each "
                    f"step by sqrt(v) + eps, and {size}, far below eps={_num(eps)}, so its "
                    f"steps in the first layers are about lr * g / eps, next to nothing")
        return ("", f"{opt['label']} is already in use and rescales the first layers' small "
                    f"gradients ({size}, above its eps={_num(eps)}); the error signal itself "
                    f"still fades, so the first layers learn from a weak, noisy signal")
    if tiny:
        return ("", f"an adaptive optimiser such as Adam would not help: {size}, far below "
                    f"its eps (1e-8)")
    return ("Adam", "an adaptive optimiser such as Adam rescales each weight's step by the "
                    "running size of its gradient, which lifts the first layers' small "
                    "gradients" + (f" ({size})" if size else ""))


def _vanishing_fix(s, family, verdict, hidden):
    """(fix, short "try ..." clause) for this network: what it does not use yet."""
    act = "/".join(hidden)
    depth = s.L - 1
    short, long = [], []
    if family == "sigmoid":
        short.append("relu with he init, tanh with glorot/orthogonal init")
        long.append("replace sigmoid in the hidden layers by relu or leaky_relu with He init "
                    "(init='he_normal'), or tanh with Glorot or orthogonal init")
    elif verdict in ("small", "large"):
        short.append({"tanh": "glorot/orthogonal init", "relu": "he init",
                      "selu": "lecun_normal init", "linear": "orthogonal or lecun init"}[family])
        long.append(f"use a variance-preserving initialisation: {_RECOMMENDED_LONG[family]}")
        if family == "tanh":
            short.append("relu with he init")
            long.append("or switch to relu with He init")
    elif verdict == "ok":
        long.append(f"the initialisation ({_init_text(s.init)}) already preserves variance "
                    f"for {act}, so the depth itself ({depth} layers) is the problem")
    if not _uses(s, "norm"):
        short.append("batch norm")
        long.append("batch normalisation (norm='batch') rescales every layer's "
                    "pre-activations, so the error no longer compounds layer after layer")
    if not _uses(s, "residual"):
        short.append("residual connections")
        long.append("residual connections (residual='auto') give the error a path around "
                    "every block")
    adam_short, adam_long = _adam_clause(s)
    long.append(adam_long)
    if adam_short == "Adam":
        short.append("Adam")
    if verdict == "ok" or not short:
        short.append(f"fewer than {depth} layers")
        long.append(f"or use fewer than {depth} layers")
    text = "try " + _join(short)
    if adam_short and adam_short != "Adam":
        text += f" ({adam_short})"
    return "; ".join(long), text


def _join(items):
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


# ------------------------------------------------------------------------ the snapshot
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


def _nanmedian(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _steps_text(steps):
    steps = np.asarray(steps)
    return f"step {steps[0]}" if steps.size == 1 else f"steps {steps[0]}-{steps[-1]}"


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


def _decay_text(s, sign):
    """Where the error shrinks (sign=-1) or grows (sign=+1) most: per-layer factor and range."""
    gain = s.f["gain"][:s.L - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = sign * np.log(gain)
    if sign < 0 and np.any(gain == 0):
        l = int(np.flatnonzero(gain == 0)[-1])
        return (f"no error at all passes from layer {l + 2} to layer {l + 1}",
                {"from_layer": l + 2, "to_layer": l + 1, "gain_per_layer": 0.0})
    a, b, total = _max_window(x)
    if not np.isfinite(total) or total <= 0:
        return "", None
    n = b - a + 1
    factor = math.exp(sign * total / n)
    verb = "shrinks" if sign < 0 else "grows"
    if n >= 2:
        text = (f"the error {verb} about {_num(factor)}x per layer from layer {b + 2} down to "
                f"layer {a + 1}")
    else:
        text = f"the error {verb} {_num(factor)}x from layer {b + 2} to layer {a + 1}"
    return text, {"from_layer": b + 2, "to_layer": a + 1, "gain_per_layer": factor}


def _network_text(s, hidden):
    """", in 20 tanh hidden layers with init='standard', trained with Adam" (init, layer
    options and optimiser only when known)."""
    if not hidden:
        return ""
    text = f", in {s.L - 1} {'/'.join(hidden)} hidden layer{'s' if s.L > 2 else ''}"
    extras = []
    if s.init:
        extras.append(_init_text(s.init))
    if s.net is not None:
        norms = sorted({n for n in s.net.norms if n})
        if norms:
            extras.append(" and ".join(norms) + " norm")
        if _uses(s, "residual"):
            extras.append("residual blocks")
    if extras:
        text += " with " + ", ".join(extras)
    if s.optimizer:
        text += f", trained with {s.optimizer['label']}"
    return text


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
    return [Finding("vanishing", severity, "vanishing: " + "; ".join(parts), _py_dict(evidence),
                    fix)]


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


def _py_dict(d):
    return {k: _py(v) for k, v in d.items()}


def _rules(s):
    findings = _rule_nonfinite(s)
    findings += _rule_saturation(s)
    findings += _rule_dead(s)
    findings += _rule_vanishing(s, findings)
    findings += _rule_exploding(s, findings)
    if not findings:
        findings += _rule_no_gradient(s)
    return findings


# ------------------------------------------------------------------------ Recorder trends
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
    for name in ("grad_ratio", "delta_ratio"):
        a = float(_nanmedian(rec.history(name, 0, k)))
        b = float(_nanmedian(rec.history(name, -k)))
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            continue
        change = b / a
        if change <= 1 / TREND_FACTOR:
            kind, verb = "vanishing", "fell"
        elif change >= TREND_FACTOR:
            kind, verb = "exploding", "rose"
        else:
            continue
        what = "the gradient" if name == "grad_ratio" else "the error signal (delta)"
        text = (f"{what} reaching layer 1, relative to the output layer's, {verb} from "
                f"{_num(a)} ({first_txt}) to {_num(b)} ({last_txt})")
        ev = {f"{name}_first": a, f"{name}_last": b, "trend_steps": [int(s_first[0]),
                                                                     int(s_last[-1])]}
        if kind in by_kind:
            old = by_kind[kind]
            if "trend_steps" in old.evidence:
                continue
            new = Finding(kind, old.severity, insert(old.message, f"over the run, {text}"),
                          {**old.evidence, **ev}, old.fix)
            replace(old, new)
            by_kind[kind] = new
        else:
            if kind == "vanishing":
                adaptive = (snap.optimizer or {}).get("adaptive")
                fix = ("watch the first layers: if it keeps falling, use " + _join([
                    "a variance-preserving initialisation for the activation",
                    "" if _uses(snap, "norm") else "batch normalisation",
                    "" if _uses(snap, "residual") else "residual connections",
                    "" if adaptive else "an adaptive optimiser (Adam)"]))
            else:
                fix = ("lower the learning rate, clip gradients by their global norm, add "
                       "batch normalisation")
            new = Finding(kind, "warning", f"{kind} (trend): over the run, {text}; still "
                          f"within the alarm range, but heading out of it", ev, fix)
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
        layers = [l + 1 for l in range(L - 1) if (acts[l] in SATURATING) == sat_act
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


def format_findings(findings) -> str:
    """Findings as readable text: one block per finding (severity, message, evidence, fix).

    Parameters
    ----------
    findings : iterable of Finding

    Returns
    -------
    str
    """
    if isinstance(findings, Finding):
        findings = [findings]
    if isinstance(findings, (str, bytes, dict)) or not hasattr(findings, "__iter__"):
        raise TypeError(f"findings: expected an iterable of Finding, got "
                        f"{type(findings).__name__}")
    findings = list(findings)
    for i, f in enumerate(findings):
        if not isinstance(f, Finding):
            raise TypeError(f"findings: expected Finding objects, got {type(f).__name__} at "
                            f"position {i}")
    if not findings:
        return "no findings"
    blocks = []
    for f in findings:
        lines = textwrap.wrap(f"[{f.severity.upper()}] {f.message}", 100,
                              subsequent_indent="    ")
        if f.evidence:
            ev = ", ".join(f"{k}={_ev(v)}" for k, v in f.evidence.items())
            lines += textwrap.wrap("evidence: " + ev, 100, initial_indent="    ",
                                   subsequent_indent="        ")
        if f.fix:
            lines += textwrap.wrap("fix: " + f.fix, 100, initial_indent="    ",
                                   subsequent_indent="        ")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _ev(v):
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return "[" + ", ".join(_ev(x) for x in v) + "]"
    return str(v)

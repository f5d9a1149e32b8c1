"""The words of a diagnosis: numbers (``_num``: :func:`vgcore.core._ui.short_number`),
percentages and layer ranges as the findings write them, and the remedies of each activation
family (the recommended initialisers and what a network's initialiser scale says)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from vgcore.core._ui import plain_json
from vgcore.core._ui import short_number as _num
from vgcore.core.activations import ACTIVATIONS

ADAPTIVE_OPTIMIZERS = ("rmsprop", "adagrad", "adam", "adamw")
"""Optimisers that divide each parameter's step by the running size of its gradient."""


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
    parts: list[str] = []
    start: int | None = None
    prev = 0
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


def _py_dict(d):
    return {k: _py(v) for k, v in d.items()}


def _family(act: str) -> str:
    """Whose remedies apply: the activation spec's family (sigmoid, tanh, relu, selu, linear);
    relu's for a name this vgcore does not know (a Recorder read from another version)."""
    spec = ACTIVATIONS.get(act)
    return "relu" if spec is None else spec.family


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


def _nanmedian(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _steps_text(steps):
    steps = np.asarray(steps)
    return f"step {steps[0]}" if steps.size == 1 else f"steps {steps[0]}-{steps[-1]}"


def _ev(v):
    """An evidence value as text: short numbers, lists in brackets."""
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return "[" + ", ".join(_ev(x) for x in v) + "]"
    return str(v)

"""The words of a diagnosis: numbers, percentages and layer ranges as the findings write
them, and the remedies of each activation family (the recommended initialisers and what a
network's initialiser scale says)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from vgcore.core._ui import plain_json
from vgcore.core.activations import ACTIVATIONS


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


def _vanishing_fix(family, verdict):
    deep = ("batch normalisation or residual connections keep deep stacks trainable; an "
            "adaptive optimiser such as Adam rescales small gradients of the first layers "
            "(it cannot revive gradients far below its eps, e.g. 1e-17 through 20 sigmoid "
            "layers)")
    if family == "sigmoid":
        return ("replace sigmoid in the hidden layers by relu or leaky_relu with He init "
                "(init='he_normal'), or tanh with Glorot or orthogonal init; " + deep,
                "try relu with he init, tanh with glorot/orthogonal init, batch norm or "
                "residual connections")
    if verdict == "ok":
        return ("the initialisation already preserves variance, so depth itself is the "
                "problem: " + deep + "; or use fewer layers",
                "try batch norm, residual connections or Adam")
    short = {"tanh": "try glorot/orthogonal init, batch norm, or relu with he init",
             "relu": "try he init, batch norm or residual connections",
             "selu": "try lecun_normal init, or residual connections",
             "linear": "try orthogonal or lecun init"}[family]
    long = f"use a variance-preserving initialisation: {_RECOMMENDED_LONG[family]}; "
    if family == "tanh":
        long += "or switch to relu with He init; "
    return long + deep, short


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
    """", in 20 tanh hidden layers with init='standard'" (init only when known)."""
    if not hidden:
        return ""
    text = f", in {s.L - 1} {'/'.join(hidden)} hidden layer{'s' if s.L > 2 else ''}"
    return text + (f" with {_init_text(s.init)}" if s.init else "")


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

"""Activation functions: names, parameters and exact definitions.

Every activation has a forward ``phi(h)`` and a derivative ``phi'(h)`` computed in compiled code
(``src/vg_kernels_impl.h``) and in NumPy (:mod:`vgcore.reference`); both follow the table below.

==============  =========================================  ===========================================
name            phi(h)                                     phi'(h)
==============  =========================================  ===========================================
identity        h                                          1
sigmoid         1 / (1 + exp(-h))                          phi (1 - phi)
tanh            tanh(h)                                    1 - phi^2
relu            max(h, 0)                                  1 if h > 0 else 0
leaky_relu      h if h > 0 else slope h     (slope=0.01)   1 if h > 0 else slope
elu             h if h > 0 else alpha (e^h - 1) (alpha=1)  1 if h > 0 else phi + alpha
selu            scale * elu(h; alpha)                      scale if h > 0 else phi + scale alpha
                (alpha = 1.6732632423543772,
                scale = 1.0507009873554805)
gelu            h Phi(h), Phi the standard normal CDF      Phi(h) + h N(h; 0, 1)
                (exact, through erf)
softplus        log(1 + e^h) = max(h,0) + log1p(e^-|h|)    sigmoid(h)
softsign        h / (1 + |h|)                              1 / (1 + |h|)^2
silu            h sigmoid(h)                               s + h s (1 - s), s = sigmoid(h)
hard_tanh       clip(h, -1, 1)                             1 if -1 < h < 1 else 0
==============  =========================================  ===========================================

At a kink (relu, leaky_relu, elu and selu at 0; hard_tanh at +-1) the derivative takes the
value of the side given above.  All are computed without overflow at large ``|h|``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["Activation", "ACTIVATIONS", "resolve_activation", "SELU_ALPHA", "SELU_SCALE"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# name -> (compiled kernel id, name of its parameter or None, default parameter value)
ACTIVATIONS = {
    "identity": (0, None, 0.0),
    "sigmoid": (1, None, 0.0),
    "tanh": (2, None, 0.0),
    "relu": (3, None, 0.0),
    "leaky_relu": (4, "slope", 0.01),
    "elu": (5, "alpha", 1.0),
    "selu": (6, None, 0.0),
    "gelu": (7, None, 0.0),
    "softplus": (8, None, 0.0),
    "softsign": (9, None, 0.0),
    "silu": (10, None, 0.0),
    "hard_tanh": (11, None, 0.0),
}


@dataclass(frozen=True)
class Activation:
    """An activation function with its parameter, e.g. ``Activation("leaky_relu", slope=0.2)``.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS` (see the module docstring for the definitions).
    slope : float, optional
        The negative-side slope of ``leaky_relu`` (default 0.01).
    alpha : float, optional
        The saturation value of ``elu`` (default 1.0).
    """

    name: str
    param: float = 0.0

    def __init__(self, name: str, *, slope: float | None = None, alpha: float | None = None):
        if not isinstance(name, str):
            raise TypeError(f"activation: expected a name (str), got {type(name).__name__}")
        key = name.strip().lower()
        if key not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown name {name!r}; expected one of {', '.join(ACTIVATIONS)}")
        _, pname, default = ACTIVATIONS[key]
        given = {"slope": slope, "alpha": alpha}
        for other, value in given.items():
            if value is not None and other != pname:
                raise ValueError(f"activation {key!r} takes no {other!r} parameter"
                                 + (f" (its parameter is {pname!r})" if pname else ""))
        value = given.get(pname) if pname else None
        param = default if value is None else value
        if isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise TypeError(f"activation {key!r}: {pname} must be a number, got "
                            f"{type(param).__name__}")
        if not math.isfinite(param):
            raise ValueError(f"activation {key!r}: {pname} must be finite, got {param!r}")
        object.__setattr__(self, "name", key)
        object.__setattr__(self, "param", float(param))

    @property
    def kind(self) -> int:
        """The compiled kernel's id for this activation."""
        return ACTIVATIONS[self.name][0]

    def __repr__(self) -> str:
        pname = ACTIVATIONS[self.name][1]
        extra = f", {pname}={self.param!r}" if pname else ""
        return f"Activation({self.name!r}{extra})"


def resolve_activation(spec) -> Activation:
    """Turn a name or an :class:`Activation` into an :class:`Activation`."""
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"activation: expected a name (str) or a vgcore.Activation, got "
                        f"{type(spec).__name__}")
    return Activation(spec)


# max over h of |phi'(h)|: the scale of "saturated" (see vgcore.flow)
_MAX_DERIVATIVE = {
    "identity": 1.0, "sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "softplus": 1.0,
    "softsign": 1.0, "hard_tanh": 1.0,
    "selu": SELU_SCALE * SELU_ALPHA,     # approached as h -> 0 from below
    "gelu": 1.1289906653,                # at h = sqrt(2)
    "silu": 1.0998383,                   # at h ~ 2.3994
}


def max_derivative(act) -> float:
    """The largest value of ``|phi'(h)|`` over all h, for an activation."""
    act = resolve_activation(act)
    if act.name == "leaky_relu":
        return max(1.0, abs(act.param))
    if act.name == "elu":
        return max(1.0, abs(act.param))
    return _MAX_DERIVATIVE[act.name]

"""Activation functions: names, parameters and exact definitions, in one spec per activation.

Every activation has a forward ``phi(h)`` and a derivative ``phi'(h)`` computed in compiled code
(``src/vg_kernels_impl.h``) and in NumPy (the spec's ``forward`` and ``derivative`` below, which
:mod:`vgcore.reference` and :mod:`vgcore.theory` use); both follow the table below.

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

The spec
--------
:data:`ACTIVATIONS` maps each name to an :class:`ActivationSpec`: the compiled kernel's id
(read from ``vgcore._engine``, which defines it in ``src/vg_contract.h``; a name the core does
not know, or one it has and this table lacks, fails ``import vgcore``), its parameter, the
largest ``|phi'|`` (the scale of "saturated"), the family whose remedies
:func:`vgcore.diagnose` suggests, whether it saturates, its second moment when it is
positively homogeneous (:mod:`vgcore.theory`'s closed forms), and the NumPy ``phi`` and
``phi'``.  Adding an activation means its C expressions, one spec here, and its tests
(CONTRIBUTING.md).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np

from vgcore.core import _contract

__all__ = ["Activation", "ActivationSpec", "ACTIVATIONS", "resolve_activation", "spec_of",
           "max_derivative", "SELU_ALPHA", "SELU_SCALE"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


# ------------------------------------------------------------------------------ NumPy phi, phi'
# forward(h, p, a, s) writes phi(h) into a; derivative(h, a, p, d, s) writes phi'(h) into d,
# given a = phi(h).  p is the activation's parameter; s is a scratch array like h.  In place,
# ufuncs with out=: the NumPy reference allocates nothing in a step.

def _erf(x, out):
    from scipy.special import erf       # NumPy has no erf; SciPy on first use
    return erf(x, out=out)


def _identity(h, p, a, s):
    np.copyto(a, h)


def _d_identity(h, a, p, d, s):
    d.fill(1)


def _sigmoid(h, p, a, s):
    np.negative(h, out=a)
    np.exp(a, out=a)                    # overflows to inf for h << 0: 1/(1+inf) = 0, exact
    a += 1
    np.reciprocal(a, out=a)


def _d_sigmoid(h, a, p, d, s):
    np.subtract(1, a, out=d)
    d *= a


def _tanh(h, p, a, s):
    np.tanh(h, out=a)


def _d_tanh(h, a, p, d, s):
    np.multiply(a, a, out=d)
    np.subtract(1, d, out=d)


def _relu(h, p, a, s):
    np.maximum(h, 0, out=a)


def _d_relu(h, a, p, d, s):
    np.greater(h, 0, out=d)


def _leaky_relu(h, p, a, s):
    np.minimum(h, 0, out=s)
    s *= p
    np.maximum(h, 0, out=a)
    a += s


def _d_leaky_relu(h, a, p, d, s):
    np.greater(h, 0, out=d)
    d *= 1 - p
    d += p


def _elu_like(h, alpha, a, s):
    np.minimum(h, 0, out=s)
    np.expm1(s, out=s)
    s *= alpha
    np.maximum(h, 0, out=a)
    a += s


def _d_elu_like(h, a, hi, lo, d, s):
    """hi for h > 0, else phi + lo."""
    np.greater(h, 0, out=s)             # mask m
    np.add(a, lo, out=d)                # left branch
    d *= 1 - s
    s *= hi
    d += s


def _elu(h, p, a, s):
    _elu_like(h, p, a, s)


def _d_elu(h, a, p, d, s):
    _d_elu_like(h, a, 1.0, p, d, s)


def _selu(h, p, a, s):
    _elu_like(h, SELU_ALPHA, a, s)
    a *= SELU_SCALE


def _d_selu(h, a, p, d, s):
    _d_elu_like(h, a, SELU_SCALE, SELU_SCALE * SELU_ALPHA, d, s)


def _normal_cdf(h, s):
    np.multiply(h, _INV_SQRT_2, out=s)
    _erf(s, out=s)
    s += 1
    s *= 0.5


def _gelu(h, p, a, s):
    _normal_cdf(h, s)
    np.multiply(h, s, out=a)


def _d_gelu(h, a, p, d, s):
    _normal_cdf(h, s)                   # Phi(h)
    np.multiply(h, h, out=d)
    d *= -0.5
    np.exp(d, out=d)
    d *= _INV_SQRT_2PI                  # N(h; 0, 1)
    d *= h
    d += s


def _softplus(h, p, a, s):
    np.logaddexp(h, 0, out=a)


def _sigmoid_into(h, s):
    np.negative(h, out=s)
    np.exp(s, out=s)
    s += 1
    np.reciprocal(s, out=s)


def _d_softplus(h, a, p, d, s):
    _sigmoid_into(h, d)


def _softsign(h, p, a, s):
    np.abs(h, out=s)
    s += 1
    np.divide(h, s, out=a)


def _d_softsign(h, a, p, d, s):
    np.abs(h, out=d)
    d += 1
    np.multiply(d, d, out=d)
    np.reciprocal(d, out=d)


def _silu(h, p, a, s):
    np.negative(h, out=s)
    np.exp(s, out=s)
    s += 1
    np.divide(h, s, out=a)


def _d_silu(h, a, p, d, s):
    _sigmoid_into(h, s)                 # s + h s (1 - s)
    np.subtract(1, s, out=d)
    d *= h
    d += 1
    d *= s


def _hard_tanh(h, p, a, s):
    np.clip(h, -1, 1, out=a)


def _d_hard_tanh(h, a, p, d, s):
    np.abs(h, out=s)
    np.less(s, 1, out=d)


# ------------------------------------------------------------------------------ the specs
class ActivationSpec(NamedTuple):
    """What vgcore knows of one activation.  The first three fields keep the meaning
    ``ACTIVATIONS[name]`` had as a plain tuple: ``(kind, param_name, default)``.

    Attributes
    ----------
    kind : int
        The compiled kernel's id (from ``vgcore._engine``).
    param_name : str or None
        The name of its parameter (``"slope"``, ``"alpha"``) or None.
    default : float
        The parameter's default (0.0 without a parameter).
    name : str
    max_derivative : float or callable(param) -> float
        ``max over h of |phi'(h)|``.
    family : {"sigmoid", "tanh", "relu", "selu", "linear"}
        Whose initialisation and remedies :func:`vgcore.diagnose` recommends.
    saturating : bool
        Whether its derivative decays smoothly towards zero, on both sides (sigmoid, tanh,
        softsign) or on the negative side (softplus, elu, selu, gelu, silu): such entries are
        checked for saturation (:data:`vgcore.flow.SATURATING`).  The piecewise-linear
        activations (identity, relu, leaky_relu, hard_tanh) never saturate: their derivative
        takes fixed values, and an exactly zero one makes the entry *inactive* (checked for
        dead units).
    second_moment : callable(param) -> float, or None
        For a positively homogeneous activation (``phi(c h) = c phi(h)``, c > 0),
        ``E[phi(z)^2] = E[phi'(z)^2]`` for a standard normal z; None otherwise.
    forward : callable(h, param, out, scratch)
        ``phi(h)`` into ``out`` (NumPy, in place).
    derivative : callable(h, a, param, out, scratch)
        ``phi'(h)`` into ``out``, given ``a = phi(h)``.
    """

    kind: int
    param_name: Optional[str]
    default: float
    name: str
    max_derivative: object
    family: str
    saturating: bool
    second_moment: Optional[Callable[[float], float]]
    forward: Callable
    derivative: Callable


def _spec(name, forward, derivative, *, max_derivative, family, param=None, default=0.0,
          saturating=False, second_moment=None):
    return ActivationSpec(kind=_contract.ACTIVATION_IDS.get(name, -1), param_name=param,
                          default=default, name=name, max_derivative=max_derivative,
                          family=family, saturating=saturating, second_moment=second_moment,
                          forward=forward, derivative=derivative)


# gelu's slope Phi(h) + h N(h) peaks where its derivative (2 - h^2) N(h) vanishes, h = sqrt(2)
_GELU_MAX_SLOPE = 0.5 * (1.0 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) * _INV_SQRT_2PI


def _max_one_or_param(p):
    return max(1.0, abs(p))


ACTIVATIONS = {s.name: s for s in (
    _spec("identity", _identity, _d_identity, max_derivative=1.0, family="linear",
          second_moment=lambda p: 1.0),
    _spec("sigmoid", _sigmoid, _d_sigmoid, max_derivative=0.25, family="sigmoid",
          saturating=True),
    _spec("tanh", _tanh, _d_tanh, max_derivative=1.0, family="tanh", saturating=True),
    _spec("relu", _relu, _d_relu, max_derivative=1.0, family="relu",
          second_moment=lambda p: 0.5),
    _spec("leaky_relu", _leaky_relu, _d_leaky_relu, param="slope", default=0.01,
          max_derivative=_max_one_or_param, family="relu",
          second_moment=lambda p: 0.5 * (1.0 + p * p)),
    _spec("elu", _elu, _d_elu, param="alpha", default=1.0, max_derivative=_max_one_or_param,
          family="relu", saturating=True),
    _spec("selu", _selu, _d_selu, max_derivative=SELU_SCALE * SELU_ALPHA,   # h -> 0 from below
          family="selu", saturating=True),
    _spec("gelu", _gelu, _d_gelu, max_derivative=_GELU_MAX_SLOPE, family="relu", saturating=True),
    _spec("softplus", _softplus, _d_softplus, max_derivative=1.0, family="relu", saturating=True),
    _spec("softsign", _softsign, _d_softsign, max_derivative=1.0, family="tanh",
          saturating=True),
    # silu's slope peaks at h = 2.3993572805 (where 2 + h (1 - 2 sigmoid(h)) = 0; 30-digit root)
    _spec("silu", _silu, _d_silu, max_derivative=1.0998393201288669, family="relu",
          saturating=True),
    _spec("hard_tanh", _hard_tanh, _d_hard_tanh, max_derivative=1.0, family="tanh"),
)}
"""Every activation by name: its :class:`ActivationSpec`."""

_contract.require("activations", ACTIVATIONS, _contract.ACTIVATION_IDS)


# ------------------------------------------------------------------------------ Activation
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
        spec = ACTIVATIONS[key]
        pname = spec.param_name
        given = {"slope": slope, "alpha": alpha}
        for other, value in given.items():
            if value is not None and other != pname:
                raise ValueError(f"activation {key!r} takes no {other!r} parameter"
                                 + (f" (its parameter is {pname!r})" if pname else ""))
        value = given.get(pname) if pname else None
        param = spec.default if value is None else value
        if isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise TypeError(f"activation {key!r}: {pname} must be a number, got "
                            f"{type(param).__name__}")
        if not math.isfinite(param):
            raise ValueError(f"activation {key!r}: {pname} must be finite, got {param!r}")
        object.__setattr__(self, "name", key)
        object.__setattr__(self, "param", float(param))

    @property
    def spec(self) -> ActivationSpec:
        """The activation's :class:`ActivationSpec`."""
        return ACTIVATIONS[self.name]

    @property
    def kind(self) -> int:
        """The compiled kernel's id for this activation."""
        return ACTIVATIONS[self.name].kind

    def __repr__(self) -> str:
        pname = ACTIVATIONS[self.name].param_name
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


def spec_of(act) -> ActivationSpec:
    """The :class:`ActivationSpec` of a name or an :class:`Activation`."""
    return resolve_activation(act).spec


def max_derivative(act) -> float:
    """The largest value of ``|phi'(h)|`` over all h, for an activation."""
    act = resolve_activation(act)
    m = act.spec.max_derivative
    return float(m(act.param) if callable(m) else m)

"""The critical line of a family of networks and the asymptotic per-layer gradient factor.

* :func:`critical_point` -- the ``sigma_w2`` of the edge of chaos for an activation, bias
  variance, normalisation, residual scale and dropout, or NaN with the reason there is none
  (:func:`critical_sigma_w2` returns the number alone).
* :func:`gradient_growth` -- the factor by which ``E||delta||^2`` grows per layer towards the
  input deep in a uniform stack (chi_1, batch norm's lambda(B), ...), or NaN with the reason.

Both read the per-layer factors of :mod:`vgcore.theory.mean_field`,
:mod:`vgcore.theory.normalisation` and :mod:`vgcore.theory.residual`; the whole-network
profile they summarise is :func:`vgcore.theory.predicted_gradient_profile`.  Importable from
:mod:`vgcore.theory.profile` as well (where they were first).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from vgcore.core.activations import resolve_activation
from vgcore.measure.theory import _common as C
from vgcore.measure.theory import mean_field as MF
from vgcore.measure.theory import normalisation as N
from vgcore.measure.theory import residual as R

__all__ = ["CriticalPoint", "critical_point", "critical_sigma_w2", "GradientGrowth",
           "gradient_growth"]


# ------------------------------------------------------------------------------ critical line

@dataclass(frozen=True)
class CriticalPoint:
    """The edge of chaos of a family of networks (see :func:`critical_point`).

    Attributes
    ----------
    sigma_w2 : float
        ``fan_in Var(W)`` where ``E||delta||^2`` neither grows nor shrinks per layer deep in
        the stack (chi_1 = 1); NaN where there is no such value.
    reason : str or None
        Why there is none (None when ``sigma_w2`` is a number).
    note : str or None
        A caveat on the value (dropout: the correlations stay off-critical).
    """

    sigma_w2: float
    reason: str | None = None
    note: str | None = field(default=None)


def critical_point(activation, sigma_b2, *, norm=None, batch=None, residual=None, dropout=0.0,
                   q0=1.0, norm_eps=1e-5, xtol=1e-12, quadrature="composite"):
    """The critical ``sigma_w2`` for a stack of one kind of layer, or NaN with the reason.

    * plain (and with dropout): the root of ``chi_1(q*(sigma_w2)) = 1``
      (:func:`critical_sigma_w2`); with dropout ``chi_1`` carries ``1 / (1 - p)`` and the
      correlation depth scale stays finite there (:mod:`vgcore.theory.dropout`);
    * layer norm: the root of :func:`~vgcore.theory.normalisation.layer_norm_chi1` ``= 1``,
      which exists only for ``sigma_b2 > 0`` and ``E[phi'^2] > E[phi^2]`` (tanh: yes; relu:
      no); without biases the factor does not depend on ``sigma_w2``;
    * batch norm: none, the factor ``lambda(B)`` does not depend on ``sigma_w2``;
    * residual blocks: none, every block multiplies ``E||dL/dx||^2`` by at least 1.

    Parameters
    ----------
    activation : str or vgcore.Activation
    sigma_b2 : float >= 0
    norm : None, "batch" or "layer"
    batch : int, optional
        Batch norm's batch size (only used in the reason).
    residual : None, float or "auto"
    dropout : float in [0, 1)
    q0, norm_eps, xtol, quadrature
        As in :func:`critical_sigma_w2`.

    Returns
    -------
    CriticalPoint
    """
    act = resolve_activation(activation)
    sb = C.number(sigma_b2, "sigma_b2")
    quad = C.quadrature(quadrature)
    q0 = C.number(q0, "q0")
    xtol = _xtol(xtol)
    norm = C.norm_kind(norm)
    p = C.probability(dropout, "dropout")
    keep = 1.0 - p
    eps = N._eps(norm_eps)
    if residual is not None:
        if not (isinstance(residual, str) and residual.strip().lower() == "auto"):
            R.residual_alpha(residual, 1)
        return CriticalPoint(math.nan, "residual blocks have no ordered phase: each block "
                             "multiplies E||dL/dx||^2 by 1 + alpha^2 sigma_w2 E[phi'^2] >= 1, "
                             "so the gradient never vanishes and no sigma_w2 > 0 stops its "
                             "growth")
    if norm == "batch":
        B = math.inf if batch is None else C.batch_size(batch)
        lam = N.batch_norm_gradient_factor(act, B)
        return CriticalPoint(math.nan, f"batch norm makes the backward factor independent of "
                             f"sigma_w2: E||delta||^2 grows by lambda(B={B:g}) = {lam:.4g} per "
                             f"layer at every sigma_w2 (Yang et al. 2019)")
    if norm == "layer":
        if act.name in C.HOMOGENEOUS:
            return CriticalPoint(math.nan, f"layer norm with {act.name}, whose E[phi'^2] equals "
                                 f"E[phi^2]: chi_1 = sigma_w2 m / (sigma_w2 m q_hat + (1 - p) "
                                 f"(sigma_b2 + eps)) < 1 for every sigma_w2 (it tends to 1 "
                                 f"as sigma_w2 grows)")
        if sb == 0.0:
            x = N.layer_norm_chi1(act, 1.0, 0.0, eps=eps, dropout=p, q0=q0, quadrature=quad)
            return CriticalPoint(math.nan, f"layer norm without biases is invariant to the "
                                 f"weights' scale: chi_1 = {x:.4g} at every sigma_w2 (up to "
                                 f"eps)")
        value, why = MF._critical_plain(act, sb, q0, xtol, quad, keep, eps)
    else:
        value, why = MF._critical_plain(act, sb, q0, xtol, quad, keep)
    if value is None:
        return CriticalPoint(math.nan, why)
    note = None
    if p > 0:
        note = (f"with dropout p = {p:g} chi_1 = 1 here, but the correlation map's fixed point "
                f"stays below 1 and its depth scale xi_c finite (Schoenholz et al. 2017): "
                f"there is no true critical point")
    return CriticalPoint(value, None, note)


def _xtol(xtol):
    if isinstance(xtol, (bool, np.bool_)) or not isinstance(xtol, numbers.Real):
        raise TypeError(f"xtol: expected a real number, got {type(xtol).__name__}")
    if not 0 < float(xtol) < 1:
        raise ValueError(f"xtol: expected a number in (0, 1), got {xtol!r}")
    return float(xtol)


def critical_sigma_w2(activation, sigma_b2, *, q0=1.0, xtol=1e-12, quadrature="composite",
                      norm=None, batch=None, residual=None, dropout=0.0, norm_eps=1e-5):
    """The weight variance at the edge of chaos: the ``sigma_w2`` where ``chi_1(q*) = 1``.

    For each trial ``sigma_w2``, ``q*`` is the fixed point reached from ``q0``
    (:func:`fixed_point`) and ``chi_1`` is evaluated there.  The root of
    ``chi_1(sigma_w2) - 1`` is bracketed on the grid ``0.25 * 1.25^k`` (downwards from 0.25
    while ``chi_1 >= 1``, upwards while ``chi_1 < 1``: the first crossing found going up) and
    located by :func:`scipy.optimize.brentq` to ``xtol``.  For relu, leaky_relu and identity,
    ``chi_1 = sigma_w2 E[phi'(z)^2] / (1 - p)`` for every ``q`` and the answer is exact:
    ``(1 - p) / E[phi'(z)^2]`` = 2, 2 / (1 + slope^2), 1 without dropout, whatever
    ``sigma_b2`` (with ``sigma_b2 > 0`` the variance then diverges, see :func:`fixed_point`).

    With ``norm``, ``residual`` or ``dropout`` the family is that of :func:`critical_point`,
    which also gives the reason when there is no critical value (then this returns NaN).

    Parameters
    ----------
    activation : str or vgcore.Activation
    sigma_b2 : float >= 0
        The bias variance.
    q0 : float >= 0
        Starting variance of the fixed-point searches; default 1.
    xtol : float > 0
        Absolute tolerance on the returned ``sigma_w2``; default 1e-12.
    norm, batch, residual, dropout, norm_eps
        As in :func:`critical_point`.

    Returns
    -------
    float
        ``sigma_w2`` (Var(W) times fan_in) at which ``chi_1 = 1``.  E.g. 1.7609546 for tanh at
        ``sigma_b2 = 0.05``; 1 for tanh at ``sigma_b2 = 0`` (there ``chi_1 - 1`` is only
        quadratic in ``sigma_w2 - 1`` on the chaotic side, so the root is found to ~1e-8).
        The answer can depend on ``q0`` where the variance map has several attracting fixed
        points: gelu at ``sigma_b2 = 0.05`` gives 2.234 from ``q0 = 1`` (a finite ``q*`` near
        0.16) but 1.9997 from ``q0 = 100`` (beyond ``sigma_w2 = 2`` the variance diverges from
        there).  NaN for batch norm and residual blocks (no critical value).

    Raises
    ------
    RuntimeError
        Without norm and residual: if ``chi_1`` does not cross 1 for ``sigma_w2`` between
        1e-8 and 1e8.
    """
    act = resolve_activation(activation)
    sb = C.number(sigma_b2, "sigma_b2")
    quad = C.quadrature(quadrature)
    q0 = C.number(q0, "q0")
    xtol = _xtol(xtol)
    if C.norm_kind(norm) is None and residual is None:
        keep = 1.0 - C.probability(dropout, "dropout")
        value, why = MF._critical_plain(act, sb, q0, xtol, quad, keep)
        if value is None:
            raise RuntimeError(f"critical_sigma_w2: {why}")
        return value
    return critical_point(act, sb, norm=norm, batch=batch, residual=residual, dropout=dropout,
                          q0=q0, norm_eps=norm_eps, xtol=xtol, quadrature=quad).sigma_w2


# ------------------------------------------------------------------------------ growth factor

@dataclass(frozen=True)
class GradientGrowth:
    """The factor by which ``E||delta||^2`` grows per layer towards the input deep in a uniform
    stack (> 1: exploding, < 1: vanishing), or NaN with the reason (see
    :func:`gradient_growth`)."""

    factor: float
    reason: str | None = None


def gradient_growth(activation, sigma_w2, sigma_b2=0.0, *, norm=None, batch=None,
                    residual=None, dropout=0.0, q0=1.0, norm_eps=1e-5, quadrature="composite"):
    """The asymptotic per-layer factor of ``E||delta||^2`` in a deep stack of identical layers.

    * plain, dropout: ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] / (1 - p)`` (:func:`chi1`);
    * layer norm: :func:`~vgcore.theory.normalisation.layer_norm_chi1`;
    * batch norm: ``B (kappa_1 + p kappa_2) / ((s - (1 - p) c) (B - 3))``, Yang et al.'s
      ``lambda(B)`` (with dropout ``p``, whose masks put back the batch-mean component that
      batch norm removes); needs ``batch``;
    * residual blocks with a positively homogeneous activation (relu, leaky_relu, identity)
      and no normalisation: ``(1 + alpha^2 sigma_w2 E[phi'^2]) / (1 - p)``; otherwise the
      factor changes with depth (the stream's second moment grows) and is NaN with the reason
      -- :func:`predicted_gradient_profile` gives the profile.

    Returns
    -------
    GradientGrowth
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    norm = C.norm_kind(norm)
    p = C.probability(dropout, "dropout")
    keep = 1.0 - p
    q0 = C.number(q0, "q0")
    eps = N._eps(norm_eps)
    if residual is not None:
        if isinstance(residual, str):
            R.residual_alpha(residual, 1)
            return GradientGrowth(math.nan, "residual='auto' sets alpha = 1/sqrt(depth): pass "
                                  "the scale itself")
        alpha = R.residual_alpha(residual, 1)
        if norm is None and act.name in C.HOMOGENEOUS:
            mu1 = C.HOMOGENEOUS[act.name](act.param)
            return GradientGrowth((1.0 + alpha * alpha * sw * mu1) / keep)
        return GradientGrowth(math.nan, "with residual blocks the per-block factor changes "
                              "with depth (the stream's second moment grows): see "
                              "predicted_gradient_profile")
    if norm == "batch":
        if batch is None:
            return GradientGrowth(math.nan, "batch norm: the factor depends on the batch size; "
                                  "pass batch")
        B = C.batch_size(batch)
        if B < 4:
            return GradientGrowth(math.inf, f"batch norm with B = {B}: E[1/Var_batch(h)] "
                                  f"diverges as eps -> 0")
        st = N._bn_stats(act, B)
        if math.isinf(B):
            return GradientGrowth(st.mu1 / (st.second_moment - keep * st.cross_moment))
        return GradientGrowth(B * (st.kappa1 + p * st.kappa2)
                              / ((st.second_moment - keep * st.cross_moment) * (B - 3)))
    if norm == "layer":
        return GradientGrowth(N.layer_norm_chi1(act, sw, sb, eps=eps, dropout=p, q0=q0,
                                                quadrature=quad))
    return GradientGrowth(MF.chi1(act, sw, sb, q0=q0, dropout=p, quadrature=quad))

"""Mean-field signal propagation in deep random networks (Poole et al. 2016, Schoenholz et al.
2017): the variance map, its fixed point, chi_1, the correlation map and the depth scales.

Networks: hidden layers ``h_l = x_{l-1} W_l + b_l``, ``x_l = phi(h_l)``, weights
``W_l[i, j]`` with variance ``sigma_w2 / fan_in`` and biases with variance ``sigma_b2``, all
independent.  In the limit of infinite width every pre-activation is a centred Gaussian over the
draw of the weights, and the theory tracks its variance ``q``:

variance map
    ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] / (1 - p) + sigma_b2`` (``p`` the dropout probability,
    0 without dropout; :mod:`vgcore.theory.dropout`), so that ``q_{l+1} = V(q_l)``.
chi_1
    ``sigma_w2 E[phi'(sqrt(q) z)^2] / (1 - p)`` at the fixed point ``q*``: the factor by which
    ``E||delta_l||^2`` (``delta_l = dL/dh_l``) grows per layer going towards the input.
correlation map
    ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / V(q)`` for two inputs with
    pre-activation variance ``q`` and correlation ``c``; its stable fixed point ``c*`` and its
    slope there ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` give the depth scale
    ``xi_c = -1 / ln(chi_c)``.

The full definitions, the quadrature rules and their accuracy are in :mod:`vgcore.theory`.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from vgcore.core.init import init_name
from vgcore.measure.theory import _common as C
from vgcore.measure.theory._common import brentq

__all__ = [
    "variance_map", "variance_sequence", "fixed_point", "chi1", "correlation_map",
    "depth_scales", "DepthScales", "effective_sigma_w2",
]


# ------------------------------------------------------------------------------ variance

def _q_seen(q, ln_eps):
    """The variance the activation sees: q itself, or layer norm's ``q / (q + eps)``."""
    if ln_eps is None:
        return q
    return q / (q + ln_eps) if math.isfinite(q) else 1.0


def _vmap(act, q, sw, sb, quad, keep=1.0, ln_eps=None):
    qs = _q_seen(q, ln_eps)
    if qs == 0.0:
        return sw * float(C.phi(act, np.zeros(1))[0]) ** 2 / keep + sb
    return sw * C.expect1(lambda h: C.phi(act, h) ** 2, qs, quad) / keep + sb


def variance_map(q, activation, sigma_w2, sigma_b2, *, dropout=0.0, quadrature="composite"):
    """One layer of the variance map:
    ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] / (1 - dropout) + sigma_b2``.

    Parameters
    ----------
    q : float >= 0
        Variance of the pre-activations ``h_l`` (squared pre-activation units).
    activation : str or vgcore.Activation
        The hidden layers' activation ``phi`` (definitions in :mod:`vgcore.activations`).
    sigma_w2 : float >= 0
        Weight variance times fan-in: ``Var(W[i, j]) = sigma_w2 / fan_in``.
    sigma_b2 : float >= 0
        Bias variance: ``Var(b[j]) = sigma_b2``.
    dropout : float in [0, 1)
        Dropout probability on the layer's output (vgcore's inverted dropout scales the kept
        units by ``1 / (1 - p)``, which multiplies their second moment by ``1 / (1 - p)``);
        default 0.
    quadrature : "composite" or int
        The Gaussian quadrature rule (see :mod:`vgcore.theory`).

    Returns
    -------
    float
        ``q_{l+1}``, the variance of the next layer's pre-activations.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    return _vmap(act, C.number(q, "q"), sw, sb, quad, keep)


def variance_sequence(activation, sigma_w2, sigma_b2, q0=1.0, n_layers=10, *, dropout=0.0,
                      quadrature="composite"):
    """Iterate the variance map: ``[q0, V(q0), V(V(q0)), ...]``, ``n_layers + 1`` entries.

    With ``q0`` the pre-activation variance of a network's first hidden layer
    (``q_1 = sigma_w2 q_x + sigma_b2``, ``q_x`` the input's mean squared entry), entry ``i`` is
    the pre-activation variance of hidden layer ``i + 1`` when every layer has ``sigma_w2``,
    ``sigma_b2``, ``activation`` and ``dropout``.  Returns a float64 array.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    q = C.number(q0, "q0")
    n = C.integer(n_layers, "n_layers", 0)
    out = np.empty(n + 1)
    out[0] = q
    for i in range(n):
        q = _vmap(act, q, sw, sb, quad, keep)
        out[i + 1] = q
    return out


def _fixed_point(act, sw, sb, q0, tol, max_iter, quad, keep=1.0, ln_eps=None):
    if act.name in C.HOMOGENEOUS and ln_eps is None:
        a = sw * C.HOMOGENEOUS[act.name](act.param) / keep    # V(q) = a q + sb exactly
        if abs(a - 1.0) <= 1e-12:
            return q0 if sb == 0.0 else math.inf
        if a > 1.0:
            return 0.0 if (sb == 0.0 and q0 == 0.0) else math.inf
        return sb / (1.0 - a)

    def g(q):
        return _vmap(act, q, sw, sb, quad, keep, ln_eps) - q

    g0 = g(q0)
    if g0 == 0.0:
        return q0
    if g0 > 0:
        # V nondecreasing: the iterates rise to the smallest fixed point above q0, which is
        # >= V(q0).  Bracket it on a geometric grid starting at V(q0).
        lo, hi, steps = q0, q0 + g0, 0
        ghi = g(hi)
        while ghi > 0:
            if hi >= C.Q_MAX:
                return math.inf
            lo, hi = hi, min(hi * (2.0 if steps < 40 else 256.0), C.Q_MAX)
            ghi = g(hi)
            steps += 1
    else:
        # The iterates fall to the largest fixed point below q0, which is <= V(q0).  When 0 is
        # a fixed point (V(0) = 0) a positive fixed point below must show V(q) - q > 1e-13 q,
        # clear of rounding (at a marginal slope V(q) - q is O(q^2) as q -> 0).
        noise = 1e-13 if g(0.0) == 0.0 else 0.0
        hi, lo, steps = q0, max(q0 + g0, 0.0), 0
        glo = g(lo)
        while True:
            if lo == 0.0:
                if glo == 0.0:
                    return 0.0
                break
            if glo > noise * lo:
                break
            if glo < 0:
                hi = lo
            lo = lo / (2.0 if steps < 40 else 256.0)
            if lo < 1e-100:
                lo = 0.0
            glo = g(lo)
            steps += 1
    try:
        root, info = brentq(g, lo, hi, xtol=1e-300, rtol=max(tol, 4 * np.finfo(float).eps),
                            maxiter=max_iter, full_output=True, disp=False)
    except (RuntimeError, ValueError) as exc:      # pragma: no cover - bracket is valid
        raise RuntimeError(f"fixed_point: root finding failed between q={lo!r} and q={hi!r} "
                           f"for activation={act!r}, sigma_w2={sw}, sigma_b2={sb}: {exc}") from exc
    if not info.converged:
        raise RuntimeError(
            f"fixed_point: the variance map's fixed point did not converge within "
            f"max_iter={max_iter} iterations (activation={act!r}, sigma_w2={sw}, sigma_b2={sb}, "
            f"q0={q0}); last bracket [{lo!r}, {hi!r}]; increase max_iter or tol")
    return float(root)


def fixed_point(activation, sigma_w2, sigma_b2, q0=1.0, tol=1e-12, max_iter=200, *,
                dropout=0.0, quadrature="composite"):
    """The fixed point ``q*`` of the variance map reached from ``q0``.

    ``q*`` is the limit of ``q_{l+1} = V(q_l)`` (:func:`variance_sequence`) from ``q_0 = q0``.
    ``V`` is nondecreasing in ``q`` for every activation of vgcore, so the iterates move
    monotonically towards the nearest fixed point in the direction of ``V(q0) - q0`` and never
    cross it.  That fixed point is found directly, by bracketing ``V(q) - q`` on a geometric
    grid from ``V(q0)`` (ratio 2, then 256 beyond 2^40) and polishing with
    :func:`scipy.optimize.brentq`: the iteration's limit to relative accuracy ``tol``, even
    where the iteration itself converges slowly (slope ``V'(q*)`` near 1).

    Special cases:

    * relu, leaky_relu and identity are positively homogeneous, ``V(q) = a q + sigma_b2`` with
      ``a = sigma_w2 m / (1 - dropout)``, ``m = E[phi(z)^2]`` (1/2, (1 + slope^2)/2, 1), and
      are solved exactly: ``q* = sigma_b2 / (1 - a)`` for ``a < 1``.  At ``a = 1``
      (``|a - 1| <= 1e-12``; relu at ``sigma_w2 = 2``, He) with ``sigma_b2 = 0`` every ``q``
      is a fixed point: ``q0`` is returned.  With ``sigma_b2 > 0`` at ``a = 1``, or for
      ``a > 1``, the variance grows without bound (linearly, geometrically) and ``inf`` is
      returned (``0.0`` for ``a > 1``, ``sigma_b2 = 0`` and ``q0 = 0``, the unstable fixed
      point).
    * Any activation: ``inf`` when ``V(q) > q`` for all ``q`` from ``q0`` up to 1e300 (the
      variance diverges; e.g. elu at ``sigma_w2 > 2``).
    * ``q* = 0`` when ``sigma_b2 = 0``, ``phi(0) = 0`` and the variance decays to 0 (e.g. tanh
      with ``sigma_w2 <= 1``); ``q0 = 0`` is returned as is when it is a fixed point.  When 0
      is a fixed point, a positive one below ``q0`` must show ``V(q) - q > 1e-13 q``, clear of
      rounding: hard_tanh at ``sigma_w2 = 1`` has ``V(q) = q - O(exp(-1/(2q)))``, which in
      float64 equals ``q`` for every ``q < 0.015``, yet the iteration's limit is 0, and 0 is
      returned.

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, dropout, quadrature
        As in :func:`variance_map`.
    q0 : float >= 0
        Starting pre-activation variance (e.g. a network's ``q_1 = sigma_w2 q_x + sigma_b2``),
        which selects the basin when there are several attracting fixed points; default 1.
    tol : float
        Relative tolerance on ``q*``, between 4.4e-16 and 1e-2; default 1e-12.
    max_iter : int
        Most iterations of the root polisher (one map evaluation each); default 200.

    Returns
    -------
    float
        ``q*``, in squared pre-activation units; ``0.0`` or ``inf`` as above.

    Raises
    ------
    RuntimeError
        If the root polisher does not converge within ``max_iter`` iterations.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    q0 = C.number(q0, "q0")
    tol = C.tolerance(tol)
    max_iter = C.integer(max_iter, "max_iter", 1)
    return _fixed_point(act, sw, sb, q0, tol, max_iter, quad, keep)


# ------------------------------------------------------------------------------ chi_1

def _mu1(act, q, quad):
    """``E[phi'(sqrt(q) z)^2]`` (the q -> 0+ limit at q = 0, the q -> inf limit at inf)."""
    if math.isinf(q):
        # q -> inf: phi'(sqrt(q) z) -> phi'(+-inf) on each half-line
        ends = C.dphi(act, np.array([1e300, -1e300]))
        return 0.5 * float(ends[0] ** 2 + ends[1] ** 2)
    return C.expect1(lambda h: C.dphi(act, h) ** 2, q, quad)


def _chi1(act, sw, q, quad, keep=1.0, ln_eps=None):
    if ln_eps is None:
        return sw * _mu1(act, q, quad) / keep
    return sw * _mu1(act, _q_seen(q, ln_eps), quad) / (keep * (q + ln_eps))


def chi1(activation, sigma_w2, sigma_b2, q=None, *, q0=1.0, dropout=0.0,
         quadrature="composite"):
    """``chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2] / (1 - dropout)``: the per-layer growth factor
    of ``E||delta||^2``.

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, dropout, quadrature
        As in :func:`variance_map`.
    q : float >= 0 or inf, optional
        The pre-activation variance at which to evaluate it; default the fixed point
        ``q* = fixed_point(activation, sigma_w2, sigma_b2, q0, dropout=dropout)``.  ``q = 0``
        gives the ``q -> 0+`` limit (``sigma_w2 / 2`` for relu), ``q = inf`` the ``q -> inf``
        limit ``sigma_w2 (phi'(+inf)^2 + phi'(-inf)^2) / 2``.
    q0 : float >= 0
        The starting variance of the fixed-point search (used when ``q`` is None).

    Returns
    -------
    float
        ``chi_1`` (dimensionless).  1 at the edge of chaos; e.g. exactly 1 for relu at
        ``sigma_w2 = 2`` whatever ``q``.  For normalised layers see
        :func:`vgcore.theory.normalisation.batch_norm_gradient_factor` and
        :func:`~vgcore.theory.normalisation.layer_norm_chi1`; for any stack,
        :func:`vgcore.theory.gradient_growth`.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    if q is None:
        q = _fixed_point(act, sw, sb, C.number(q0, "q0"), 1e-12, 200, quad, keep)
    else:
        q = C.number(q, "q", allow_inf=True)
    return _chi1(act, sw, q, quad, keep)


# ------------------------------------------------------------------------------ correlations

def _cmap(act, sw, sb, q, c, quad, keep=1.0, ln_eps=None):
    qs = max(_q_seen(q, ln_eps), C.Q_FLOOR)
    num = sw * C.expect2(lambda h: C.phi(act, h), lambda h: C.phi(act, h), qs, c, quad) + sb
    return num / _vmap(act, max(q, C.Q_FLOOR), sw, sb, quad, keep, ln_eps)


def correlation_map(c, activation, sigma_w2, sigma_b2, q=None, *, q0=1.0, dropout=0.0,
                    quadrature="composite"):
    """One layer of the correlation map ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q'``.

    ``u1 = sqrt(q) z1`` and ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)`` are the pre-activations
    of two inputs, each of variance ``q``, with correlation ``c``; ``q' = V(q)`` (``= q`` at
    the fixed point), so ``C(c)`` is the correlation of the next layer's pre-activations.  With
    dropout the two inputs get independent masks: their cross moment is not scaled by
    ``1 / (1 - p)`` while ``q'`` is, so ``C(1) < 1``.

    Parameters
    ----------
    c : float in [-1, 1]
    q : float > 0, optional
        Default: the fixed point ``q*`` reached from ``q0`` (must be finite).
    activation, sigma_w2, sigma_b2, q0, dropout, quadrature
        As in :func:`chi1`.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real):
        raise TypeError(f"c: expected a real number in [-1, 1], got {type(c).__name__}")
    c = float(c)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c: expected a correlation in [-1, 1], got {c!r}")
    if q is None:
        q = _fixed_point(act, sw, sb, C.number(q0, "q0"), 1e-12, 200, quad, keep)
        if math.isinf(q):
            raise ValueError(f"q: the variance diverges (q* = inf) for activation={act!r}, "
                             f"sigma_w2={sw}, sigma_b2={sb}; pass a finite q")
    else:
        q = C.number(q, "q")
    return _cmap(act, sw, sb, q, c, quad, keep)


@dataclass(frozen=True)
class DepthScales:
    """Mean-field depth scales of a random network (Schoenholz et al. 2017).

    Attributes
    ----------
    q_star : float
        Fixed point of the variance map (squared pre-activation units; may be 0 or inf).
    chi_1 : float
        ``sigma_w2 E[phi'(sqrt(q*) z)^2] / (1 - dropout)``.
    c_star : float
        Stable fixed point of the correlation map: 1 in the ordered phase (``chi_1 <= 1``)
        without dropout, in [0, 1) in the chaotic phase or with dropout; nan when
        ``q* = inf``.
    chi_c : float
        ``sigma_w2 E[phi'(u1) phi'(u2)]`` at ``(q*, c*)``; equals ``chi_1`` when ``c* = 1``.
    xi_c : float
        Correlation depth scale ``-1 / ln(chi_c)`` in layers (``|c_l - c*| ~ exp(-l / xi_c)``);
        ``inf`` at ``chi_c = 1``; nan when ``q* = inf``.
    xi_grad : float
        Gradient depth scale ``-1 / ln(chi_1)`` in layers, signed:
        ``E||delta_l||^2 / E||delta_L||^2 = exp(-(L - l) / xi_grad)`` deep in the network.
        Positive in the ordered phase (gradients vanish towards the input, by e every
        ``xi_grad`` layers), ``inf`` at the edge of chaos (``|chi_1 - 1| <= 1e-12``), negative
        in the chaotic phase (gradients explode towards the input, growing by e every
        ``|xi_grad|`` layers).
    phase : str
        ``"ordered"`` (chi_1 < 1), ``"critical"`` (``|chi_1 - 1| <= 1e-12``) or ``"chaotic"``.
    """

    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    xi_c: float
    xi_grad: float
    phase: str


CRITICAL_TOL = 1e-12


def _depth(chi):
    if abs(chi - 1.0) <= CRITICAL_TOL:
        return math.inf
    if chi <= 0.0:
        return 0.0
    return -1.0 / math.log(chi)


def _c_star(act, sw, sb, q, quad, keep):
    """The stable fixed point of the correlation map below 1 (None when c* = 1)."""
    def h(c):
        return _cmap(act, sw, sb, q, c, quad, keep) - c
    if keep < 1.0:
        # C(1) < 1: C is convex on [0, 1] with C(0) >= 0, so C(c) = c has one root in [0, 1)
        lo = 0.0
        if h(lo) < 0:       # a negative sigma_b2 is impossible; only rounding gets here
            return 0.0
        return float(brentq(h, lo, 1.0, xtol=1e-13, rtol=1e-13, maxiter=200))
    for eps in (0.5, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
        if h(1.0 - eps) < 0:
            return float(brentq(h, 0.0, 1.0 - eps, xtol=1e-13, rtol=1e-13, maxiter=200))
    return None


def depth_scales(activation, sigma_w2, sigma_b2, *, q0=1.0, dropout=0.0,
                 quadrature="composite"):
    """The depth scales ``xi_c``, ``xi_grad`` with ``q*``, ``chi_1``, ``c*`` and ``chi_c``.

    In the ordered phase (``chi_1 <= 1``) without dropout ``c* = 1`` and ``chi_c = chi_1``, so
    ``xi_c = xi_grad``.  In the chaotic phase, or with dropout, ``c*`` is the root of
    ``C(c) = c`` in [0, 1) (unique: ``C`` has a power series in ``c`` with nonnegative
    coefficients, so it is convex on [0, 1], and either ``C(1) = 1`` with ``C'(1) = chi_1 > 1``
    or, with dropout, ``C(1) < 1``), found by brentq, and ``chi_c`` needs a two-dimensional
    Gaussian integral.  With dropout ``xi_c`` is finite at every ``sigma_w2``: there is no
    critical point for the correlations (Schoenholz et al. 2017, :mod:`vgcore.theory.dropout`).

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, q0, dropout, quadrature
        As in :func:`chi1`.

    Returns
    -------
    DepthScales
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    q = _fixed_point(act, sw, sb, C.number(q0, "q0"), 1e-12, 200, quad, keep)
    x1 = _chi1(act, sw, q, quad, keep)
    phase = ("critical" if abs(x1 - 1.0) <= CRITICAL_TOL
             else "ordered" if x1 < 1.0 else "chaotic")
    if math.isinf(q):
        return DepthScales(q, x1, math.nan, math.nan, math.nan, _depth(x1), phase)
    c_star, chi_c = 1.0, x1
    if phase == "chaotic" or keep < 1.0:
        cs = _c_star(act, sw, sb, q, quad, keep)
        if cs is not None:
            c_star = cs
            chi_c = sw * C.expect2(lambda u: C.dphi(act, u), lambda u: C.dphi(act, u),
                                   max(q, C.Q_FLOOR), c_star, quad)
    return DepthScales(q, x1, c_star, chi_c, _depth(chi_c), _depth(x1), phase)


@functools.lru_cache(maxsize=256)
def _critical_plain(act, sb, q0, xtol, quad, keep=1.0, ln_eps=None):
    """``(sigma_w2, None)`` where ``chi_1(q*) = 1`` (see :func:`vgcore.theory.
    critical_sigma_w2`), or ``(None, reason)`` when chi_1 does not cross 1 between 1e-8 and 1e8
    (cached: a sweep's phase diagrams and ``vgcore theory`` ask for the same lines again)."""
    if act.name in C.HOMOGENEOUS and ln_eps is None:
        return keep / C.HOMOGENEOUS[act.name](act.param), None

    def f(sw):
        q = _fixed_point(act, sw, sb, q0, 1e-13, 400, quad, keep, ln_eps)
        return _chi1(act, sw, q, quad, keep, ln_eps) - 1.0

    lo = 0.25
    flo = f(lo)
    while flo >= 0:
        lo /= 1.25
        if lo < 1e-8:
            return None, (f"chi_1 >= 1 for every sigma_w2 down to 1e-8 (activation={act!r}, "
                          f"sigma_b2={sb})")
        flo = f(lo)
    hi = lo * 1.25
    fhi = f(hi)
    while fhi < 0:
        lo, hi = hi, hi * 1.25
        if hi > 1e8:
            return None, (f"chi_1 < 1 for every sigma_w2 up to 1e8 (activation={act!r}, "
                          f"sigma_b2={sb})")
        fhi = f(hi)
    return float(brentq(f, lo, hi, xtol=float(xtol), rtol=4 * np.finfo(float).eps,
                        maxiter=200)), None


# ------------------------------------------------------------------------------ initialisers

def effective_sigma_w2(init, fan_in, fan_out, sigma_w=None):
    """``fan_in * Var(W[i, j])`` for a vgcore initialiser (the table of :mod:`vgcore.init`).

    standard 1/3; glorot_uniform, glorot_normal ``2 fan_in / (fan_in + fan_out)`` (1 for square
    layers); he_uniform, he_normal 2; lecun_uniform, lecun_normal 1; normal ``sigma_w^2``;
    orthogonal ``gain^2 fan_in / max(fan_in, fan_out)`` (gain = sigma_w, default 1).  Only the
    variance enters the mean-field theory (the pre-activations are Gaussian at large width
    whatever the weights' distribution).
    """
    key = init_name(init)
    fan_in = C.integer(fan_in, "fan_in", 1)
    fan_out = C.integer(fan_out, "fan_out", 1)
    if key == "standard":
        return 1.0 / 3.0
    if key.startswith("glorot"):
        return 2.0 * fan_in / (fan_in + fan_out)
    if key.startswith("he"):
        return 2.0
    if key.startswith("lecun"):
        return 1.0
    if key == "normal":
        if sigma_w is None:
            raise ValueError("sigma_w: init='normal' needs sigma_w (W ~ N(0, sigma_w^2/fan_in)), "
                             "got None")
        return C.number(sigma_w, "sigma_w") ** 2
    gain = 1.0 if sigma_w is None else C.number(sigma_w, "sigma_w")
    return gain * gain * fan_in / max(fan_in, fan_out)


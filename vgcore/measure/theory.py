"""Mean-field theory of signal propagation in deep random networks, and Jacobian diagnostics.

The theory is that of Poole et al. (2016), "Exponential expressivity in deep neural networks
through transient chaos", and Schoenholz et al. (2017), "Deep information propagation", for the
networks of :class:`vgcore.MLP`: hidden layers ``h_l = a_{l-1} W_l + b_l``, ``a_l = phi(h_l)``,
a linear output layer, weights ``W_l[i, j] ~ N(0, sigma_w2 / fan_in)`` and biases
``b_l[j] ~ N(0, sigma_b2)``, all independent.  In the limit of infinite width every
pre-activation ``h_l[j]`` is a centred Gaussian over the draw of the weights, and the theory
tracks its variance.

Definitions (``z, z1, z2`` independent standard normals, ``E`` their expectation):

q (pre-activation variance)
    ``q_l = E[h_l[j]^2]`` of hidden layer ``l``, in the units of the pre-activations squared.
    The input is not passed through ``phi``: with ``q_x`` the mean squared entry of the input
    row, ``q_1 = sigma_w2 q_x + sigma_b2``.
variance map
    ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``, so that ``q_{l+1} = V(q_l)``.
q* (fixed point)
    the limit of ``q_{l+1} = V(q_l)`` from a starting pre-activation variance; see
    :func:`fixed_point`.
chi_1
    ``sigma_w2 E[phi'(sqrt(q) z)^2]`` at ``q = q*``: the factor by which the expected squared
    norm of the backpropagated error ``delta_l = dL/dh_l`` grows per layer going towards the
    input, and the slope of the correlation map at ``c = 1``.  ``chi_1 < 1``: ordered phase
    (gradients vanish); ``chi_1 > 1``: chaotic phase (gradients explode); ``chi_1 = 1``: the
    edge of chaos (see :func:`critical_sigma_w2`).
correlation map
    for two inputs whose pre-activations have variance ``q*`` and correlation ``c``,
    ``u1 = sqrt(q*) z1``, ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)`` and
    ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*``; ``c*`` is its stable fixed point
    and ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``c*`` (``= C'(c*)``).
depth scales (in layers)
    ``xi_c = -1 / ln(chi_c)``, the depth over which the correlation of two inputs relaxes to
    ``c*`` (by a factor e), and ``xi_grad = -1 / ln(chi_1)``, the depth over which
    ``E||delta_l||^2`` changes by a factor e (see :class:`DepthScales` for the signs).

Gaussian expectations are computed in float64 with the package's own activation definitions
(:func:`vgcore.reference.activation_forward` and :func:`~vgcore.reference.activation_derivative`,
so the kink conventions are the engine's: ``relu'(0) = 0``).  Two quadrature rules are offered
through the ``quadrature`` argument of every function:

``"composite"`` (the default)
    composite 16-point Gauss-Legendre on ``|z| <= 10`` (the rest of the line carries a
    probability of 1.5e-23), with panel breaks at every integer ``z``, at ``h = 0`` and at
    ``h = +-2^k`` (``k >= -2``, ``h`` the pre-activation), so that no panel straddles a kink
    (0 for relu, leaky_relu, elu, selu, softsign; +-1 for hard_tanh) and the region
    ``|h| <~ 1`` where every activation bends is resolved however large or small ``q`` is.
    It agrees with adaptive quadrature (scipy.integrate.quad split at the kinks) to 1e-12
    relative or better for every activation and ``1e-6 <= q <= 1e4``, and with closed-form
    asymptotics at ``q = 1e8``, where quad itself fails.
an int ``n``
    plain Gauss-Hermite with ``n`` probabilists' nodes
    (:func:`numpy.polynomial.hermite_e.hermegauss`, ``2 <= n <= 300``), the textbook rule.
    Exact for polynomials of degree ``< 2n`` but slowly convergent across kinks and at large
    ``q``: with 200 nodes ``E[selu(z)]`` comes out as -5.8e-4 instead of 0, and
    ``E[tanh(10 z)^2]`` is off by 1.6e-2.  Use an even ``n``: an odd ``n`` puts a node at
    exactly 0, where a kinked derivative takes one side's value (``relu'(0) = 0``), so that
    e.g. ``chi_1`` for relu at ``sigma_w2 = 2`` becomes ``1 - w_0`` (0.912 for n = 201)
    instead of 1.

Where ``q = 0`` the pre-activations are exactly 0 and ``V(0) = sigma_w2 phi(0)^2 + sigma_b2``;
expectations of ``phi'`` are then taken in the limit ``q -> 0+`` (``relu`` gives
``E[relu'(sqrt(q) z)^2] = 1/2``, not ``relu'(0)^2 = 0``).

:func:`jacobian` and :func:`jacobian_singular_values` measure the input-output Jacobian of an
actual network with the engine's own backward pass (dynamical isometry diagnostics).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from vgcore.core.activations import Activation, resolve_activation
from vgcore.core.init import init_name
from vgcore.core.reference import activation_derivative, activation_forward

__all__ = [
    "variance_map", "variance_sequence", "fixed_point", "chi1", "correlation_map",
    "depth_scales", "DepthScales", "critical_sigma_w2", "predicted_gradient_profile",
    "GradientProfile", "effective_sigma_w2", "jacobian", "jacobian_singular_values",
    "JacobianSpectrum",
]


def brentq(*args, **kwargs):
    """:func:`scipy.optimize.brentq`, imported on first use (scipy.optimize takes 0.15 s to
    import: every ``import vgcore``, every sweep worker process, would pay it)."""
    from scipy.optimize import brentq as _brentq
    return _brentq(*args, **kwargs)


# ------------------------------------------------------------------------------ quadrature

_GL_X, _GL_W = leggauss(16)
_T_MAX = 10.0                                    # P(|z| > 10) = 1.5e-23
_T_GRID = np.arange(-10.0, 11.0)                 # unit panels in z
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_Q_FLOOR = 1e-200            # q -> 0+ limits are evaluated at this q (std 1e-100)
_Q_MAX = 1e300               # a fixed point beyond this is reported as inf
_HERMITE_MAX = 300           # hermegauss overflows beyond ~360 nodes
_HERMITE_CACHE: dict = {}



def _composite_rule(means, std):
    """Nodes ``t`` and weights ``w``, each ``(len(means), P)``, with
    ``sum_j w[i, j] g(means[i] + std t[i, j]) ~= E_{t ~ N(0,1)}[g(means[i] + std t)]``.

    Panels: unit panels in t on [-10, 10], plus breaks where ``h = means[i] + std t`` crosses
    0 and +-2^k (k >= -2); breaks finer than 1e-13 std carry no probability and are dropped.
    Breaks outside [-10, 10] are clipped to the ends (zero-width panels, zero weight), so every
    row has the same number of panels.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    n = means.size
    reach = float(np.max(np.abs(means))) + _T_MAX * std
    k_hi = max(0, math.ceil(math.log2(reach)))
    k_lo = min(max(-2, math.floor(math.log2(std * 1e-13))), k_hi)
    powers = np.ldexp(1.0, np.arange(k_lo, k_hi + 1))
    feats = np.concatenate(([0.0], powers, -powers))
    with np.errstate(over="ignore"):
        t_feat = np.clip((feats[None, :] - means[:, None]) / std, -_T_MAX, _T_MAX)
    breaks = np.sort(np.concatenate((np.broadcast_to(_T_GRID, (n, _T_GRID.size)), t_feat),
                                    axis=1), axis=1)
    half = 0.5 * (breaks[:, 1:] - breaks[:, :-1])
    mid = 0.5 * (breaks[:, 1:] + breaks[:, :-1])
    t = mid[..., None] + half[..., None] * _GL_X
    w = (half[..., None] * _GL_W) * (np.exp(-0.5 * t * t) * _INV_SQRT_2PI)
    return t.reshape(n, -1), w.reshape(n, -1)


def _hermite_rule(n):
    rule = _HERMITE_CACHE.get(n)
    if rule is None:
        z, w = hermegauss(n)
        rule = _HERMITE_CACHE[n] = (z, w / w.sum())
    return rule


def _phi(act, h):
    return activation_forward(act, h)


def _dphi(act, h):
    return activation_derivative(act, h, activation_forward(act, h))


def _std(q):
    return math.sqrt(max(q, _Q_FLOOR))


def _expect1(fn, q, quad):
    """``E[fn(sqrt(q) z)]``, z ~ N(0, 1) (q -> 0+ limit for q = 0)."""
    std = _std(q)
    if quad == "composite":
        t, w = _composite_rule(np.zeros(1), std)
        return float(np.sum(w[0] * fn(std * t[0])))
    z, w = _hermite_rule(quad)
    return float(np.dot(w, fn(std * z)))


def _expect2(f, g, q, c, quad):
    """``E[f(u1) g(u2)]`` with ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1-c^2) z2)``."""
    std = _std(q)
    s = math.sqrt(max(0.0, 1.0 - c * c))
    if quad == "composite":
        t1, w1 = _composite_rule(np.zeros(1), std)
        u1, w1 = std * t1[0], w1[0]
        if s * std < 1e-150:
            return float(np.sum(w1 * f(u1) * g(c * u1)))
        m = c * u1
        t2, w2 = _composite_rule(m, s * std)
        inner = np.sum(w2 * g(m[:, None] + (s * std) * t2), axis=1)
        return float(np.sum(w1 * f(u1) * inner))
    z, w = _hermite_rule(quad)
    u1 = std * z
    u2 = std * (c * z[:, None] + s * z[None, :])
    return float(w @ (f(u1)[:, None] * g(u2)) @ w)


# ------------------------------------------------------------------------------ validation

def _number(value, name, *, allow_inf=False):
    """A real number >= 0 (finite unless allow_inf), as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"({value!r})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return value


def _int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _quadrature(quad):
    if isinstance(quad, str):
        if quad.strip().lower() != "composite":
            raise ValueError(f"quadrature: expected 'composite' or a number of Gauss-Hermite "
                             f"nodes (int, 2..{_HERMITE_MAX}), got {quad!r}")
        return "composite"
    if isinstance(quad, (bool, np.bool_)) or not isinstance(quad, (int, np.integer)):
        raise TypeError(f"quadrature: expected 'composite' or a number of Gauss-Hermite nodes "
                        f"(int), got {type(quad).__name__}")
    if not 2 <= quad <= _HERMITE_MAX:
        raise ValueError(f"quadrature: expected between 2 and {_HERMITE_MAX} Gauss-Hermite "
                         f"nodes, got {quad}")
    return int(quad)


def _common(activation, sigma_w2, sigma_b2, quadrature):
    return (resolve_activation(activation), _number(sigma_w2, "sigma_w2"),
            _number(sigma_b2, "sigma_b2"), _quadrature(quadrature))


# ------------------------------------------------------------------------------ variance

def _vmap(act, q, sw, sb, quad):
    if q == 0.0:
        return sw * float(_phi(act, np.zeros(1))[0]) ** 2 + sb
    return sw * _expect1(lambda h: _phi(act, h) ** 2, q, quad) + sb


def variance_map(q, activation, sigma_w2, sigma_b2, *, quadrature="composite"):
    """One layer of the variance map: ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``.

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
    quadrature : "composite" or int
        The Gaussian quadrature rule (see the module docstring).

    Returns
    -------
    float
        ``q_{l+1}``, the variance of the next layer's pre-activations.
    """
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    return _vmap(act, _number(q, "q"), sw, sb, quad)


def variance_sequence(activation, sigma_w2, sigma_b2, q0=1.0, n_layers=10, *,
                      quadrature="composite"):
    """Iterate the variance map: ``[q0, V(q0), V(V(q0)), ...]``, ``n_layers + 1`` entries.

    With ``q0`` the pre-activation variance of a network's first hidden layer
    (``q_1 = sigma_w2 q_x + sigma_b2``, ``q_x`` the input's mean squared entry), entry ``i`` is
    the pre-activation variance of hidden layer ``i + 1`` when every layer has ``sigma_w2``,
    ``sigma_b2`` and ``activation``.  Returns a float64 array.
    """
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    q = _number(q0, "q0")
    n = _int(n_layers, "n_layers", 0)
    out = np.empty(n + 1)
    out[0] = q
    for i in range(n):
        q = _vmap(act, q, sw, sb, quad)
        out[i + 1] = q
    return out


def _fixed_point(act, sw, sb, q0, tol, max_iter, quad):
    # a positively homogeneous activation (phi(a h) = a phi(h), a > 0) has E[phi(z)^2] =
    # E[phi'(z)^2] = m, its spec's second moment: V(q) = sigma_w2 m q + sigma_b2 exactly
    m = act.spec.second_moment
    if m is not None:
        a = sw * m(act.param)                            # V(q) = a q + sb exactly
        if abs(a - 1.0) <= 1e-12:
            return q0 if sb == 0.0 else math.inf
        if a > 1.0:
            return 0.0 if (sb == 0.0 and q0 == 0.0) else math.inf
        return sb / (1.0 - a)

    def g(q):
        return _vmap(act, q, sw, sb, quad) - q

    g0 = g(q0)
    if g0 == 0.0:
        return q0
    if g0 > 0:
        # V nondecreasing: the iterates rise to the smallest fixed point above q0, which is
        # >= V(q0).  Bracket it on a geometric grid starting at V(q0).
        lo, hi, steps = q0, q0 + g0, 0
        ghi = g(hi)
        while ghi > 0:
            if hi >= _Q_MAX:
                return math.inf
            lo, hi = hi, min(hi * (2.0 if steps < 40 else 256.0), _Q_MAX)
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
                quadrature="composite"):
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
      ``a = sigma_w2 m``, ``m = E[phi(z)^2]`` (1/2, (1 + slope^2)/2, 1), and are solved exactly:
      ``q* = sigma_b2 / (1 - a)`` for ``a < 1``.  At ``a = 1`` (``|a - 1| <= 1e-12``; relu at
      ``sigma_w2 = 2``, He) with ``sigma_b2 = 0`` every ``q`` is a fixed point: ``q0`` is
      returned.  With ``sigma_b2 > 0`` at ``a = 1``, or for ``a > 1``, the variance grows
      without bound (linearly, geometrically) and ``inf`` is returned (``0.0`` for ``a > 1``,
      ``sigma_b2 = 0`` and ``q0 = 0``, the unstable fixed point).
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
    activation, sigma_w2, sigma_b2, quadrature
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
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    q0 = _number(q0, "q0")
    tol = _tol(tol)
    max_iter = _int(max_iter, "max_iter", 1)
    return _fixed_point(act, sw, sb, q0, tol, max_iter, quad)


def _tol(tol):
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol: expected a real number, got {type(tol).__name__}")
    tol = float(tol)
    if not (4 * np.finfo(float).eps <= tol <= 1e-2):
        raise ValueError(f"tol: expected a relative tolerance between 4.4e-16 and 1e-2, "
                         f"got {tol!r}")
    return tol


# ------------------------------------------------------------------------------ chi_1

def _chi1(act, sw, q, quad):
    if math.isinf(q):
        # q -> inf: phi'(sqrt(q) z) -> phi'(+-inf) on each half-line
        ends = _dphi(act, np.array([1e300, -1e300]))
        return sw * 0.5 * float(ends[0] ** 2 + ends[1] ** 2)
    return sw * _expect1(lambda h: _dphi(act, h) ** 2, q, quad)


def chi1(activation, sigma_w2, sigma_b2, q=None, *, q0=1.0, quadrature="composite"):
    """``chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2]``: the per-layer growth factor of ``E||delta||^2``.

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, quadrature
        As in :func:`variance_map`.
    q : float >= 0 or inf, optional
        The pre-activation variance at which to evaluate it; default the fixed point
        ``q* = fixed_point(activation, sigma_w2, sigma_b2, q0)``.  ``q = 0`` gives the
        ``q -> 0+`` limit (``sigma_w2 / 2`` for relu), ``q = inf`` the ``q -> inf`` limit
        ``sigma_w2 (phi'(+inf)^2 + phi'(-inf)^2) / 2``.
    q0 : float >= 0
        The starting variance of the fixed-point search (used when ``q`` is None).

    Returns
    -------
    float
        ``chi_1`` (dimensionless).  1 at the edge of chaos; e.g. exactly 1 for relu at
        ``sigma_w2 = 2`` whatever ``q``.
    """
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    if q is None:
        q = _fixed_point(act, sw, sb, _number(q0, "q0"), 1e-12, 200, quad)
    else:
        q = _number(q, "q", allow_inf=True)
    return _chi1(act, sw, q, quad)


# ------------------------------------------------------------------------------ correlations

def _cmap(act, sw, sb, q, c, quad):
    num = sw * _expect2(lambda h: _phi(act, h), lambda h: _phi(act, h), q, c, quad) + sb
    return num / _vmap(act, max(q, _Q_FLOOR), sw, sb, quad)


def correlation_map(c, activation, sigma_w2, sigma_b2, q=None, *, q0=1.0,
                    quadrature="composite"):
    """One layer of the correlation map ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q'``.

    ``u1 = sqrt(q) z1`` and ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)`` are the pre-activations
    of two inputs, each of variance ``q``, with correlation ``c``; ``q' = V(q)`` (``= q`` at
    the fixed point), so ``C(c)`` is the correlation of the next layer's pre-activations.

    Parameters
    ----------
    c : float in [-1, 1]
    q : float > 0, optional
        Default: the fixed point ``q*`` reached from ``q0`` (must be finite).
    activation, sigma_w2, sigma_b2, q0, quadrature
        As in :func:`chi1`.
    """
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real):
        raise TypeError(f"c: expected a real number in [-1, 1], got {type(c).__name__}")
    c = float(c)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c: expected a correlation in [-1, 1], got {c!r}")
    if q is None:
        q = _fixed_point(act, sw, sb, _number(q0, "q0"), 1e-12, 200, quad)
        if math.isinf(q):
            raise ValueError(f"q: the variance diverges (q* = inf) for activation={act!r}, "
                             f"sigma_w2={sw}, sigma_b2={sb}; pass a finite q")
    else:
        q = _number(q, "q")
    return _cmap(act, sw, sb, q, c, quad)


@dataclass(frozen=True)
class DepthScales:
    """Mean-field depth scales of a random network (Schoenholz et al. 2017).

    Attributes
    ----------
    q_star : float
        Fixed point of the variance map (squared pre-activation units; may be 0 or inf).
    chi_1 : float
        ``sigma_w2 E[phi'(sqrt(q*) z)^2]``.
    c_star : float
        Stable fixed point of the correlation map: 1 in the ordered phase (``chi_1 <= 1``),
        in [0, 1) in the chaotic phase; nan when ``q* = inf``.
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


_CRITICAL_TOL = 1e-12


def _depth(chi):
    if abs(chi - 1.0) <= _CRITICAL_TOL:
        return math.inf
    if chi <= 0.0:
        return 0.0
    return -1.0 / math.log(chi)


def depth_scales(activation, sigma_w2, sigma_b2, *, q0=1.0, quadrature="composite"):
    """The depth scales ``xi_c``, ``xi_grad`` with ``q*``, ``chi_1``, ``c*`` and ``chi_c``.

    In the ordered phase (``chi_1 <= 1``) ``c* = 1`` and ``chi_c = chi_1``, so
    ``xi_c = xi_grad``.  In the chaotic phase ``c*`` is the root of ``C(c) = c`` in [0, 1)
    (unique: ``C`` has a power series in ``c`` with nonnegative coefficients, so it is
    convex on [0, 1], and ``C(1) = 1`` with ``C'(1) = chi_1 > 1``), found by brentq, and
    ``chi_c`` needs a two-dimensional Gaussian integral.

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, q0, quadrature
        As in :func:`chi1`.

    Returns
    -------
    DepthScales
    """
    act, sw, sb, quad = _common(activation, sigma_w2, sigma_b2, quadrature)
    q = _fixed_point(act, sw, sb, _number(q0, "q0"), 1e-12, 200, quad)
    x1 = _chi1(act, sw, q, quad)
    phase = ("critical" if abs(x1 - 1.0) <= _CRITICAL_TOL
             else "ordered" if x1 < 1.0 else "chaotic")
    if math.isinf(q):
        return DepthScales(q, x1, math.nan, math.nan, math.nan, _depth(x1), phase)
    c_star, chi_c = 1.0, x1
    if phase == "chaotic":
        def h(c):
            return _cmap(act, sw, sb, q, c, quad) - c
        hi = None
        for eps in (0.5, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
            if h(1.0 - eps) < 0:
                hi = 1.0 - eps
                break
        if hi is not None:
            c_star = float(brentq(h, 0.0, hi, xtol=1e-13, rtol=1e-13, maxiter=200))
            chi_c = sw * _expect2(lambda u: _dphi(act, u), lambda u: _dphi(act, u),
                                  q, c_star, quad)
    return DepthScales(q, x1, c_star, chi_c, _depth(chi_c), _depth(x1), phase)


def critical_sigma_w2(activation, sigma_b2, *, q0=1.0, xtol=1e-12, quadrature="composite"):
    """The weight variance at the edge of chaos: the ``sigma_w2`` where ``chi_1(q*) = 1``.

    For each trial ``sigma_w2``, ``q*`` is the fixed point reached from ``q0``
    (:func:`fixed_point`) and ``chi_1`` is evaluated there.  The root of
    ``chi_1(sigma_w2) - 1`` is bracketed on the grid ``0.25 * 1.25^k`` (downwards from 0.25
    while ``chi_1 >= 1``, upwards while ``chi_1 < 1``: the first crossing found going up) and
    located by :func:`scipy.optimize.brentq` to ``xtol``.  For relu, leaky_relu and identity,
    ``chi_1 = sigma_w2 E[phi'(z)^2]`` for every ``q`` and the answer is exact:
    ``1 / E[phi'(z)^2]`` = 2, 2 / (1 + slope^2), 1, whatever ``sigma_b2`` (with
    ``sigma_b2 > 0`` the variance then diverges, see :func:`fixed_point`).

    Parameters
    ----------
    activation : str or vgcore.Activation
    sigma_b2 : float >= 0
        The bias variance.
    q0 : float >= 0
        Starting variance of the fixed-point searches; default 1.
    xtol : float > 0
        Absolute tolerance on the returned ``sigma_w2``; default 1e-12.

    Returns
    -------
    float
        ``sigma_w2`` (Var(W) times fan_in) at which ``chi_1 = 1``.  E.g. 1.7609546 for tanh at
        ``sigma_b2 = 0.05``; 1 for tanh at ``sigma_b2 = 0`` (there ``chi_1 - 1`` is only
        quadratic in ``sigma_w2 - 1`` on the chaotic side, so the root is found to ~1e-8).
        The answer can depend on ``q0`` where the variance map has several attracting fixed
        points: gelu at ``sigma_b2 = 0.05`` gives 2.234 from ``q0 = 1`` (a finite ``q*`` near
        0.16) but 1.9997 from ``q0 = 100`` (beyond ``sigma_w2 = 2`` the variance diverges from
        there).

    Raises
    ------
    RuntimeError
        If ``chi_1`` does not cross 1 for ``sigma_w2`` between 1e-8 and 1e8.
    """
    act = resolve_activation(activation)
    sb = _number(sigma_b2, "sigma_b2")
    quad = _quadrature(quadrature)
    q0 = _number(q0, "q0")
    if isinstance(xtol, (bool, np.bool_)) or not isinstance(xtol, numbers.Real):
        raise TypeError(f"xtol: expected a real number, got {type(xtol).__name__}")
    if not 0 < float(xtol) < 1:
        raise ValueError(f"xtol: expected a number in (0, 1), got {xtol!r}")
    if act.spec.second_moment is not None:             # chi_1 = sigma_w2 m for every q
        return 1.0 / act.spec.second_moment(act.param)

    def f(sw):
        q = _fixed_point(act, sw, sb, q0, 1e-13, 400, quad)
        return _chi1(act, sw, q, quad) - 1.0

    lo = 0.25
    flo = f(lo)
    while flo >= 0:
        lo /= 1.25
        if lo < 1e-8:
            raise RuntimeError(f"critical_sigma_w2: chi_1 >= 1 for every sigma_w2 down to 1e-8 "
                               f"(activation={act!r}, sigma_b2={sb})")
        flo = f(lo)
    hi = lo * 1.25
    fhi = f(hi)
    while fhi < 0:
        lo, hi = hi, hi * 1.25
        if hi > 1e8:
            raise RuntimeError(f"critical_sigma_w2: chi_1 < 1 for every sigma_w2 up to 1e8 "
                               f"(activation={act!r}, sigma_b2={sb})")
        fhi = f(hi)
    return float(brentq(f, lo, hi, xtol=float(xtol), rtol=4 * np.finfo(float).eps,
                        maxiter=200))


# ------------------------------------------------------------------------------ profiles

def effective_sigma_w2(init, fan_in, fan_out, sigma_w=None):
    """``fan_in * Var(W[i, j])`` for a vgcore initialiser (the table of :mod:`vgcore.init`).

    standard 1/3; glorot_uniform, glorot_normal ``2 fan_in / (fan_in + fan_out)`` (1 for square
    layers); he_uniform, he_normal 2; lecun_uniform, lecun_normal 1; normal ``sigma_w^2``;
    orthogonal ``gain^2 fan_in / max(fan_in, fan_out)`` (gain = sigma_w, default 1).  Only the
    variance enters the mean-field theory (the pre-activations are Gaussian at large width
    whatever the weights' distribution).
    """
    key = init_name(init)
    fan_in = _int(fan_in, "fan_in", 1)
    fan_out = _int(fan_out, "fan_out", 1)
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
        return _number(sigma_w, "sigma_w") ** 2
    gain = 1.0 if sigma_w is None else _number(sigma_w, "sigma_w")
    return gain * gain * fan_in / max(fan_in, fan_out)


@dataclass(frozen=True)
class GradientProfile:
    """The mean-field gradient profile of a network (see :func:`predicted_gradient_profile`).

    Hidden layers are numbered ``l = 1 .. H`` from the input side; every array has one entry
    per hidden layer, index ``l - 1``, except ``sigma_w2`` (one per weight layer, ``H + 1``).

    Attributes
    ----------
    q0 : float
        Mean squared entry of the input.
    widths : ndarray of int, (H,)
        Hidden widths ``n_l`` (all 1 for a spec without widths: per-unit values then).
    sigma_w2 : ndarray, (H + 1,)
        ``fan_in * Var(W_l)`` of each weight layer, output layer last.
    sigma_b2 : ndarray, (H + 1,)
        ``Var(b_l)`` of each layer.
    q : ndarray, (H,)
        ``q_l``, the variance of hidden layer l's pre-activations.
    chi : ndarray, (H,)
        ``chi_l = sigma_w2[l] * E[phi_l'(sqrt(q_l) z)^2]`` (``sigma_w2[l]`` is the weight layer
        after hidden layer l): ``E||delta_l||^2 = chi_l E||delta_{l+1}||^2``, with
        ``delta_{H+1}`` the gradient at the output.
    delta_sq : ndarray, (H,)
        ``E||delta_l||^2 / E||delta_H||^2 = chi_l chi_{l+1} ... chi_{H-1}`` (1 at ``l = H``):
        the squared norm of ``dL/dh_l`` (summed over the layer's units and over examples)
        relative to the last hidden layer.
    """

    q0: float
    widths: np.ndarray
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q: np.ndarray
    chi: np.ndarray
    delta_sq: np.ndarray

    @property
    def delta_rms(self) -> np.ndarray:
        """Root mean square entry of ``delta_l`` relative to the last hidden layer's:
        ``sqrt(delta_sq * n_H / n_l)``."""
        return np.sqrt(self.delta_sq * self.widths[-1] / self.widths)


def predicted_gradient_profile(net_or_activation, depth=None, sigma_w2=None, sigma_b2=0.0, *,
                               q0=None, X=None, quadrature="composite"):
    """The mean-field prediction of ``E||dL/dh_l||^2`` per hidden layer, relative to the last.

    Forward, ``q_1 = sigma_w2_1 q_0 + sigma_b2_1`` and
    ``q_{l+1} = sigma_w2_{l+1} E[phi_l(sqrt(q_l) z)^2] + sigma_b2_{l+1}``, layer by layer from
    the input (the transient, not just ``q*``).  Backward, ``delta_l = (delta_{l+1} W_{l+1}^T)
    * phi_l'(h_l)``; with ``W_{l+1}`` independent of everything else,
    ``E||delta_{l+1} W_{l+1}^T||^2 = n_l Var(W_{l+1}) E||delta_{l+1}||^2`` and
    ``n_l Var(W_{l+1}) = sigma_w2_{l+1}`` (the fan-in of W_{l+1} is n_l), so
    ``E||delta_l||^2 = chi_l E||delta_{l+1}||^2`` with
    ``chi_l = sigma_w2_{l+1} E[phi_l'(sqrt(q_l) z)^2]``.  Norms are over all units of the
    layer, so unequal widths are accounted for by the ``sigma_w2`` of each layer
    (:func:`effective_sigma_w2`); :attr:`GradientProfile.delta_rms` gives per-unit values.

    Call it either with a network, ``predicted_gradient_profile(net, X=X)``, or with a spec,
    ``predicted_gradient_profile("tanh", depth=20, sigma_w2=1.5, sigma_b2=0.05, q0=1.0)``.

    Parameters
    ----------
    net_or_activation : vgcore.MLP, vgcore.reference.ReferenceMLP, or str / vgcore.Activation
        A network (its sizes, per-layer activations, ``init``, ``sigma_w`` and ``sigma_b``
        give every layer's ``sigma_w2`` and ``sigma_b2``; its current weights are not used), or
        the activation of a spec.
    depth : int >= 1
        Spec only: the number of hidden layers (all the same width).
    sigma_w2, sigma_b2 : float >= 0
        Spec only: every layer's ``fan_in Var(W)`` and ``Var(b)``.
    q0 : float >= 0, optional
        Mean squared entry of the input; default 1 (standardised inputs).
    X : ndarray (batch, n_in), optional
        Inputs, from which ``q0 = mean(X**2)``; not together with ``q0``.
    quadrature : "composite" or int
        As in :func:`variance_map`.

    Returns
    -------
    GradientProfile
    """
    quad = _quadrature(quadrature)
    if X is not None:
        if q0 is not None:
            raise ValueError("q0: pass either q0 or X (from which q0 = mean(X**2)), not both")
        Xa = np.asarray(X)
        if Xa.dtype.kind not in "fiu" or Xa.size == 0:
            raise TypeError(f"X: expected a non-empty real array, got dtype {Xa.dtype} and "
                            f"shape {Xa.shape}")
        Xa = Xa.astype(np.float64)
        if not np.all(np.isfinite(Xa)):
            raise ValueError("X: expected finite values, got NaN or Inf entries")
        q0 = float(np.mean(Xa * Xa))
    q0 = 1.0 if q0 is None else _number(q0, "q0")

    if isinstance(net_or_activation, (str, Activation)):
        if depth is None or sigma_w2 is None:
            raise ValueError("depth, sigma_w2: a spec needs the activation, depth and "
                             f"sigma_w2 (got depth={depth!r}, sigma_w2={sigma_w2!r})")
        act = resolve_activation(net_or_activation)
        H = _int(depth, "depth", 1)
        sw = _number(sigma_w2, "sigma_w2")
        sb = _number(sigma_b2, "sigma_b2")
        acts = [act] * H
        widths = np.ones(H, dtype=np.int64)
        sws = np.full(H + 1, sw)
        sbs = np.full(H + 1, sb)
    else:
        net = net_or_activation
        needed = ("sizes", "activations", "init", "sigma_w", "sigma_b")
        if not all(hasattr(net, a) for a in needed):
            raise TypeError(f"net_or_activation: expected a vgcore.MLP (or ReferenceMLP) or an "
                            f"activation name, got {type(net).__name__}")
        if depth is not None or sigma_w2 is not None or sigma_b2 != 0.0:
            raise ValueError("depth, sigma_w2, sigma_b2: these describe a spec; a network "
                             "carries its own (got a network and spec arguments)")
        sizes = tuple(int(s) for s in net.sizes)
        H = len(sizes) - 2
        if H < 1:
            raise ValueError(f"net_or_activation: the network has no hidden layer "
                             f"(sizes={list(sizes)})")
        acts = [resolve_activation(a) for a in net.activations[:H]]
        widths = np.asarray(sizes[1:-1], dtype=np.int64)
        sws = np.array([effective_sigma_w2(net.init, sizes[l], sizes[l + 1], net.sigma_w)
                        for l in range(H + 1)])
        sbs = np.full(H + 1, 0.0 if net.sigma_b is None else float(net.sigma_b) ** 2)

    q = np.empty(H)
    chi = np.empty(H)
    prev = q0
    for l in range(H):
        if l == 0:
            q[0] = sws[0] * q0 + sbs[0]
        else:
            q[l] = sws[l] * _expect1(lambda h, a=acts[l - 1]: _phi(a, h) ** 2, prev, quad) \
                + sbs[l]
        prev = q[l]
        chi[l] = _chi1(acts[l], sws[l + 1], q[l], quad)
    delta_sq = np.ones(H)
    for l in range(H - 2, -1, -1):
        delta_sq[l] = delta_sq[l + 1] * chi[l]
    return GradientProfile(q0, widths, sws, sbs, q, chi, delta_sq)


# ------------------------------------------------------------------------------ Jacobians

def _check_net(net, name="net"):
    needed = ("forward", "backward", "sizes", "dtype", "grads", "params")
    if not all(hasattr(net, a) for a in needed):
        raise TypeError(f"{name}: expected a vgcore.MLP, got {type(net).__name__}")


def _check_rows(x, name, net, *, one_row):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    n_in = net.sizes[0]
    if x.dtype != net.dtype:
        raise TypeError(f"{name}: expected dtype {net.dtype.name} (the network's dtype), got "
                        f"{x.dtype}")
    if one_row:
        if not (x.shape == (n_in,) or x.shape == (1, n_in)):
            raise ValueError(f"{name}: expected shape ({n_in},) or (1, {n_in}), got {x.shape}")
        rows = x.reshape(1, n_in)
    else:
        if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] == 0:
            raise ValueError(f"{name}: expected shape (n, {n_in}) with n >= 1, got {x.shape}")
        rows = x
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf entries")
    return rows


def _jacobians(net, rows):
    """J for each row of ``rows`` (n, n_in), shape (n, n_out, n_in); restores net.grads."""
    n, n_in = rows.shape
    n_out = net.sizes[-1]
    per_call = max(1, 4096 // n_out)
    eye = np.eye(n_out, dtype=net.dtype)
    out = np.empty((n, n_out, n_in), dtype=net.dtype)
    saved = net.grads.copy()
    try:
        for start in range(0, n, per_call):
            chunk = rows[start:start + per_call]
            k = chunk.shape[0]
            batch = np.ascontiguousarray(np.repeat(chunk, n_out, axis=0), dtype=net.dtype)
            net.forward(batch)
            dout = np.ascontiguousarray(np.tile(eye, (k, 1)))
            dX = net.backward(dout)
            out[start:start + k] = dX.reshape(k, n_out, n_in)
    finally:
        net.grads[...] = saved
    return out


def jacobian(net, x):
    """The input-output Jacobian ``J[i, j] = d out_i / d x_j`` of a network at one input.

    Computed by the engine itself: one forward pass on ``n_out`` copies of ``x`` and one
    backward pass with ``dout`` the ``n_out x n_out`` identity, so that row ``i`` of ``dL/dX``
    is row ``i`` of ``J`` (exact to rounding, no finite differences).

    Parameters
    ----------
    net : vgcore.MLP
    x : ndarray of shape (n_in,) or (1, n_in), the network's dtype, finite

    Returns
    -------
    ndarray of shape (n_out, n_in), the network's dtype
        A new array.

    Notes
    -----
    ``net.params`` are not touched and ``net.grads`` (so ``weight_grads``, ``bias_grads``) are
    saved and restored.  The network's last forward pass becomes the Jacobian's batch (and a
    workspace of ``n_out`` rows may displace a cached one): call ``forward`` again before the
    next ``backward``.
    """
    _check_net(net)
    rows = _check_rows(x, "x", net, one_row=True)
    return _jacobians(net, rows)[0]


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian at several inputs.

    Attributes
    ----------
    singular_values : ndarray (n, min(n_in, n_out))
        Per input (row), in decreasing order.
    mean_squared : ndarray (n,)
        Mean squared singular value ``||J||_F^2 / min(n_in, n_out)`` per input (1 for a
        network that is dynamically isometric on average).
    max, min : ndarray (n,)
        Largest and smallest singular value per input.
    """

    singular_values: np.ndarray
    mean_squared: np.ndarray
    max: np.ndarray
    min: np.ndarray

    @property
    def condition(self) -> np.ndarray:
        """``max / min`` per input (inf where the smallest singular value is 0)."""
        with np.errstate(divide="ignore"):
            return self.max / self.min


def jacobian_singular_values(net, X):
    """Singular values of the Jacobian of ``net`` at each row of ``X`` (float64 SVD).

    Parameters
    ----------
    net : vgcore.MLP
    X : ndarray of shape (n, n_in), the network's dtype, finite

    Returns
    -------
    JacobianSpectrum

    Notes
    -----
    Jacobians come from :func:`jacobian`'s method, several inputs per engine call (batches
    of at most ``max(n_out, 4096)`` rows); the same side effects apply.
    """
    _check_net(net)
    rows = _check_rows(X, "X", net, one_row=False)
    J = _jacobians(net, rows).astype(np.float64)
    sv = np.linalg.svd(J, compute_uv=False)
    return JacobianSpectrum(sv, np.mean(sv * sv, axis=1), sv[:, 0].copy(), sv[:, -1].copy())

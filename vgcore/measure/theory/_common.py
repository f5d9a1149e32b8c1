"""Quadrature rules and argument checks shared by the theory modules.

Gaussian expectations (``E`` over ``z ~ N(0, 1)``) use the composite Gauss-Legendre rule
described in :mod:`vgcore.theory`; expectations over a coordinate of a uniformly random point of
a sphere (batch normalisation's output, :mod:`vgcore.theory.normalisation`) use the same idea in
angular coordinates.  Everything is float64 and uses the package's own activation definitions
(:func:`vgcore.reference.activation_forward` and ``activation_derivative``), so the kink
conventions are the engine's (``relu'(0) = 0``).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from vgcore.core.activations import ACTIVATIONS as _ACTIVATION_SPECS
from vgcore.core.activations import resolve_activation
from vgcore.core.reference import activation_derivative, activation_forward


def brentq(*args, **kwargs):
    """:func:`scipy.optimize.brentq`, imported on first use (scipy.optimize takes 0.15 s to
    import: every ``import vgcore``, every sweep worker process, would pay it)."""
    from scipy.optimize import brentq as _brentq
    return _brentq(*args, **kwargs)


# ------------------------------------------------------------------------------ Gaussian rules

GL_X, GL_W = leggauss(16)
T_MAX = 10.0                                    # P(|z| > 10) = 1.5e-23
T_GRID = np.arange(-10.0, 11.0)                 # unit panels in z
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
Q_FLOOR = 1e-200            # q -> 0+ limits are evaluated at this q (std 1e-100)
Q_MAX = 1e300               # a fixed point beyond this is reported as inf
HERMITE_MAX = 300           # hermegauss overflows beyond ~360 nodes
_HERMITE_CACHE: dict = {}

# E[phi(z)^2] = E[phi'(z)^2] = m(param) for the positively homogeneous activations (phi(a h) =
# a phi(h), a > 0), for which V(q) = sigma_w2 m q + sigma_b2 and chi_1 = sigma_w2 m for every q;
# m is the activation spec's second moment (vgcore.activations), the one place it is defined.
HOMOGENEOUS = {name: spec.second_moment for name, spec in _ACTIVATION_SPECS.items()
               if spec.second_moment is not None}


def _feature_points(reach, std):
    """Breaks at h = 0 and h = +-2^k (k >= -2, and finer than std 1e-13 dropped), up to
    ``reach``: every kink of vgcore's activations (0, +-1) and the region where they bend."""
    k_hi = max(0, math.ceil(math.log2(max(reach, 1e-300))))
    k_lo = min(max(-2, math.floor(math.log2(max(std * 1e-13, 1e-300)))), k_hi)
    powers = np.ldexp(1.0, np.arange(k_lo, k_hi + 1))
    return np.concatenate(([0.0], powers, -powers))


def composite_rule(means, std):
    """Nodes ``t`` and weights ``w``, each ``(len(means), P)``, with
    ``sum_j w[i, j] g(means[i] + std t[i, j]) ~= E_{t ~ N(0,1)}[g(means[i] + std t)]``.

    Panels: unit panels in t on [-10, 10], plus breaks where ``h = means[i] + std t`` crosses
    0 and +-2^k (k >= -2); breaks finer than 1e-13 std carry no probability and are dropped.
    Breaks outside [-10, 10] are clipped to the ends (zero-width panels, zero weight), so every
    row has the same number of panels.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    n = means.size
    reach = float(np.max(np.abs(means))) + T_MAX * std
    feats = _feature_points(reach, std)
    with np.errstate(over="ignore"):
        t_feat = np.clip((feats[None, :] - means[:, None]) / std, -T_MAX, T_MAX)
    breaks = np.sort(np.concatenate((np.broadcast_to(T_GRID, (n, T_GRID.size)), t_feat),
                                    axis=1), axis=1)
    half = 0.5 * (breaks[:, 1:] - breaks[:, :-1])
    mid = 0.5 * (breaks[:, 1:] + breaks[:, :-1])
    t = mid[..., None] + half[..., None] * GL_X
    w = (half[..., None] * GL_W) * (np.exp(-0.5 * t * t) * INV_SQRT_2PI)
    return t.reshape(n, -1), w.reshape(n, -1)


def hermite_rule(n):
    rule = _HERMITE_CACHE.get(n)
    if rule is None:
        z, w = hermegauss(n)
        rule = _HERMITE_CACHE[n] = (z, w / w.sum())
    return rule


def phi(act, h):
    return activation_forward(act, h)


def dphi(act, h):
    return activation_derivative(act, h, activation_forward(act, h))


def std_of(q):
    return math.sqrt(max(q, Q_FLOOR))


def expect1(fn, q, quad):
    """``E[fn(sqrt(q) z)]``, z ~ N(0, 1) (q -> 0+ limit for q = 0)."""
    std = std_of(q)
    if quad == "composite":
        t, w = composite_rule(np.zeros(1), std)
        return float(np.sum(w[0] * fn(std * t[0])))
    z, w = hermite_rule(quad)
    return float(np.dot(w, fn(std * z)))


def expect1_many(fns, q, quad):
    """``[E[f(sqrt(q) z)] for f in fns]`` on one set of nodes."""
    std = std_of(q)
    if quad == "composite":
        t, w = composite_rule(np.zeros(1), std)
        h, w = std * t[0], w[0]
    else:
        z, w = hermite_rule(quad)
        h = std * z
    return [float(np.dot(w, f(h))) for f in fns]


def expect2(f, g, q, c, quad):
    """``E[f(u1) g(u2)]`` with ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1-c^2) z2)``."""
    std = std_of(q)
    s = math.sqrt(max(0.0, 1.0 - c * c))
    if quad == "composite":
        t1, w1 = composite_rule(np.zeros(1), std)
        u1, w1 = std * t1[0], w1[0]
        if s * std < 1e-150:
            return float(np.sum(w1 * f(u1) * g(c * u1)))
        m = c * u1
        t2, w2 = composite_rule(m, s * std)
        inner = np.sum(w2 * g(m[:, None] + (s * std) * t2), axis=1)
        return float(np.sum(w1 * f(u1) * inner))
    z, w = hermite_rule(quad)
    u1 = std * z
    u2 = std * (c * z[:, None] + s * z[None, :])
    return float(w @ (f(u1)[:, None] * g(u2)) @ w)


# ------------------------------------------------------------------------------ sphere rules

Y_MAX = 10.0        # |y| beyond 10 carries less than 1e-21 of the probability for any k


def sphere_rule(k, means, scales):
    """Nodes ``u`` and weights ``w`` (each ``(len(means), P)``) with
    ``sum_j w[i, j] g(u[i, j]) ~= E[g(means[i] + scales[i] y)]``, where ``y = sqrt(k) v_1`` is
    the first coordinate of a uniformly random point ``v`` of the unit sphere in R^k (k >= 2),
    scaled to variance 1.

    ``v_1`` has the density ``(1 - t^2)^((k-3)/2) / Z`` on [-1, 1]; in the angle
    ``v_1 = sin(theta)`` it is ``cos(theta)^(k-2) / Z_k``, ``Z_k = sqrt(pi) Gamma((k-1)/2) /
    Gamma(k/2)``, smooth on [-pi/2, pi/2] for every k >= 2 (the endpoint singularity of k = 2, 3
    is gone).  Panels: unit panels in y up to ``|y| <= min(sqrt(k), 10)``, plus breaks where
    ``means + scales y`` crosses 0 and +-2^k (the kinks of vgcore's activations), each with
    16-point Gauss-Legendre in theta.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    scales = np.broadcast_to(np.asarray(scales, dtype=np.float64).reshape(-1), means.shape)
    n = means.size
    rk = math.sqrt(k)
    ymax = min(rk, Y_MAX)
    grid = np.arange(-math.floor(ymax), math.floor(ymax) + 1.0)
    grid = np.unique(np.concatenate(([-ymax], grid, [ymax])))
    smax = float(np.max(np.abs(scales))) if n else 1.0
    feats = _feature_points(float(np.max(np.abs(means))) + ymax * smax, max(smax, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y_feat = (feats[None, :] - means[:, None]) / scales[:, None]
    y_feat = np.where(np.isfinite(y_feat), y_feat, ymax)
    y_feat = np.clip(y_feat, -ymax, ymax)
    breaks = np.sort(np.concatenate((np.broadcast_to(grid, (n, grid.size)), y_feat), axis=1),
                     axis=1)
    th = np.arcsin(np.clip(breaks / rk, -1.0, 1.0))
    half = 0.5 * (th[:, 1:] - th[:, :-1])
    mid = 0.5 * (th[:, 1:] + th[:, :-1])
    theta = mid[..., None] + half[..., None] * GL_X
    log_z = 0.5 * math.log(math.pi) + math.lgamma((k - 1) / 2) - math.lgamma(k / 2)
    c = np.cos(theta)
    with np.errstate(divide="ignore"):
        dens = np.exp((k - 2) * np.log(c) - log_z) if k > 2 else np.full(c.shape,
                                                                        math.exp(-log_z))
    w = (half[..., None] * GL_W) * dens
    y = rk * np.sin(theta)
    u = means[:, None, None] + scales[:, None, None] * y
    return u.reshape(n, -1), w.reshape(n, -1)


# ------------------------------------------------------------------------------ validation

def number(value, name, *, allow_inf=False):
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


def integer(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(value, name):
    """A dropout probability in [0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a probability in [0, 1), got "
                        f"{type(value).__name__} ({value!r})")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")
    return value


def quadrature(quad):
    if isinstance(quad, str):
        if quad.strip().lower() != "composite":
            raise ValueError(f"quadrature: expected 'composite' or a number of Gauss-Hermite "
                             f"nodes (int, 2..{HERMITE_MAX}), got {quad!r}")
        return "composite"
    if isinstance(quad, (bool, np.bool_)) or not isinstance(quad, (int, np.integer)):
        raise TypeError(f"quadrature: expected 'composite' or a number of Gauss-Hermite nodes "
                        f"(int), got {type(quad).__name__}")
    if not 2 <= quad <= HERMITE_MAX:
        raise ValueError(f"quadrature: expected between 2 and {HERMITE_MAX} Gauss-Hermite "
                         f"nodes, got {quad}")
    return int(quad)


def common(activation, sigma_w2, sigma_b2, quad):
    return (resolve_activation(activation), number(sigma_w2, "sigma_w2"),
            number(sigma_b2, "sigma_b2"), quadrature(quad))


def tolerance(tol):
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol: expected a real number, got {type(tol).__name__}")
    tol = float(tol)
    if not (4 * np.finfo(float).eps <= tol <= 1e-2):
        raise ValueError(f"tol: expected a relative tolerance between 4.4e-16 and 1e-2, "
                         f"got {tol!r}")
    return tol


def batch_size(batch, name="batch"):
    """A batch size for batch norm's theory: an int >= 2, or inf for the B -> inf limit."""
    if isinstance(batch, float) and math.isinf(batch) and batch > 0:
        return math.inf
    return integer(batch, name, 2)


def norm_kind(norm, name="norm"):
    if norm is None:
        return None
    if not isinstance(norm, str) or norm.strip().lower() not in ("batch", "layer", "none"):
        raise ValueError(f"{name}: expected None, 'batch' or 'layer', got {norm!r}")
    key = norm.strip().lower()
    return None if key == "none" else key

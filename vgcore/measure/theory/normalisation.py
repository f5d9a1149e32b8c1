"""Batch and layer normalisation at initialisation: vgcore's ``norm="batch"`` and
``norm="layer"`` (``z = gamma (h - mu) / sqrt(var + eps) + beta``, ``gamma = 1``, ``beta = 0`` at
initialisation, the activation applied to ``z``).

Batch norm (Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A mean field theory of
batch normalization")
    At infinite width the ``B`` pre-activations of one unit over a batch are a Gaussian vector
    whose covariance is exchangeable (the same on every diagonal entry and on every
    off-diagonal one: Yang et al.'s BSB1 form), so after subtracting the batch mean they are
    isotropic on the ``(B-1)``-dimensional subspace orthogonal to ``1 = (1, ..., 1)``.  Batch
    norm keeps only their direction: ``z = sqrt(B) u / |u|``, ``u`` the centred vector, is
    uniformly distributed on the sphere of radius ``sqrt(B)`` in that subspace, independently
    of the batch standard deviation ``sigma = |u| / sqrt(B)``, whatever ``sigma_w2`` and the
    previous layers.  This is how batch norm rescues the forward signal: every normalised layer
    sees the same ``z``.

    Backwards, ``dL/dh = (1 / sigma) A (dL/dz)`` with ``A = I - 1 1^T / B - z z^T / B``, the
    projector that removes the batch mean and the direction of ``z``
    (:meth:`vgcore.reference.ReferenceMLP.backward` computes exactly this).  With ``Sigma`` the
    covariance over the batch of one unit's incoming gradient ``dL/da`` (independent of ``z``
    at infinite width, the gradient-independence assumption), and ``D = diag(phi'(z))``,
    ``tr E[A D Sigma D A] = tr(Sigma M)``, ``M = E[D A D] = kappa_1 I + kappa_2 1 1^T`` by
    exchangeability, so ``tr E[...] = kappa_1 tr Sigma + kappa_2 1^T Sigma 1`` with

    * ``kappa_1 + kappa_2 = E[phi'(z_1)^2 (1 - 1/B - z_1^2 / B)]``,
    * ``kappa_2 = -(1/B) E[phi'(z_1) phi'(z_2) (1 + z_1 z_2)]``.

    ``|u|^2`` is ``(Q - C) chi^2_{B-1}`` times ``sigma_w2`` (``Q``, ``C`` the diagonal and
    off-diagonal batch second moments of the layer's input, per unit), so
    ``sigma_w2 E[1 / sigma^2] = B / ((Q - C) (B - 3))`` (``E[1 / chi^2_k] = 1 / (k - 2)``; the
    bias cancels).  After one normalised layer the gradient is orthogonal to ``1`` in batch
    space (``1^T Sigma 1 = 0``), and deep in a stack of them ``E||dL/dz||^2`` grows per layer
    by the factor

        ``lambda(B) = B kappa_1 / ((s - c) (B - 3))``,  ``s = E[phi(z_1)^2]``,
        ``c = E[phi(z_1) phi(z_2)]``

    (:func:`batch_norm_gradient_factor`), independent of ``sigma_w2`` and ``sigma_b2``.  For a
    linear network ``kappa_1 = (B-2)/(B-1)``, ``s - c = B/(B-1)``: ``lambda = (B-2)/(B-3)``.
    As ``B -> inf``, ``z`` becomes standard normal and
    ``lambda -> E[phi'(z)^2] / Var(phi(z))``: ``pi / (pi - 1) = 1.467`` for relu.  So batch
    norm, which rescues the forward signal, makes a deep plain stack explode backwards at
    initialisation, at any weight variance: Yang et al.'s result.  Expectations over the sphere
    are one- and two-dimensional integrals, computed by quadrature in angular coordinates
    (:func:`vgcore.theory._common.sphere_rule`; ``z_2`` given ``z_1`` is again a coordinate of a
    uniform point of a smaller sphere), accurate to ~1e-12.  Valid for ``B >= 4`` and
    ``Var(h) >> eps``; with ``B <= 3`` ``E[1/sigma^2]`` diverges as ``eps -> 0`` and the
    gradient's size is set by ``norm_eps``, which the theory does not model.

Layer norm
    At infinite width the mean of ``h`` over a layer's units is 0 and its variance is the
    mean-field ``q``, so layer norm divides by ``sqrt(q + eps)``: the activation sees
    ``N(0, q_hat)``, ``q_hat = q / (q + eps)`` (1 unless ``q`` is comparable with ``eps``), and
    the variance map is ``V(q) = sigma_w2 E[phi(sqrt(q_hat) z)^2] / (1 - p) + sigma_b2``
    (:func:`layer_norm_variance_map`).  Backwards the two directions layer norm projects out are
    2 of ``n`` (negligible at infinite width) and ``dL/dh = dL/dz / sqrt(q + eps)``, so
    ``chi_1 = sigma_w2 E[phi'(sqrt(q_hat) z)^2] / ((1 - p) (q* + eps))``
    (:func:`layer_norm_chi1`).  With ``sigma_b2 = 0`` and ``eps -> 0``,
    ``chi_1 = E[phi'(z)^2] / E[phi(z)^2]`` whatever ``sigma_w2`` (1 for relu and identity,
    1.178 for tanh); with ``sigma_b2 > 0`` it crosses 1 at
    ``sigma_w2 = (1 - p) (sigma_b2 + eps) / (E[phi'^2] - E[phi^2])`` when
    ``E[phi'^2] > E[phi^2]``.  At width ``n`` the projection and ``E[1/var]`` add a factor of
    about ``1 + 1/n`` per layer (exactly ``(n-2)/(n-3)`` for a linear network, the same algebra
    as batch norm's over the units instead of the batch), which this mean-field theory leaves
    out.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from vgcore.core.activations import resolve_activation
from vgcore.measure.theory import _common as C
from vgcore.measure.theory import mean_field as MF

__all__ = ["BatchNormStats", "batch_norm_stats", "batch_norm_gradient_factor",
           "layer_norm_variance_map", "layer_norm_fixed_point", "layer_norm_chi1"]


# ------------------------------------------------------------------------------ batch norm

@dataclass(frozen=True)
class BatchNormStats:
    """Expectations over batch norm's output at initialisation (see the module docstring).

    ``z = (z_1, ..., z_B)`` is uniform on the sphere of radius ``sqrt(B)`` in the subspace
    orthogonal to ``(1, ..., 1)``; ``z_1`` and ``z_2`` are two of its coordinates (two examples
    of the batch, one unit).  ``batch = inf`` is the limit where they are independent standard
    normals.

    Attributes
    ----------
    batch : float
        ``B`` (an integer >= 4, or inf).
    mean : float
        ``E[phi(z_1)]``.
    second_moment : float
        ``E[phi(z_1)^2]`` (``s``).
    cross_moment : float
        ``E[phi(z_1) phi(z_2)]`` (``c``): ``s - c`` is the per-unit batch variance of the
        layer's output times ``B / (B - 1)``.
    mu1 : float
        ``E[phi'(z_1)^2]``: ``E||dL/dz||^2 = mu1 E||dL/da||^2``.
    nu : float
        ``E[phi'(z_1) phi'(z_2)]``.
    kappa1, kappa2 : float
        ``E[D A D] = kappa1 I + kappa2 1 1^T`` (``D = diag(phi'(z))``, ``A`` the projector of
        batch norm's backward pass).
    factor : float
        ``lambda(B) = B kappa1 / ((s - c) (B - 3))``: the growth of ``E||dL/dz_l||^2`` per
        layer, towards the input, deep in a stack of batch-normalised layers
        (``mu1 / (s - mean^2)`` at ``B = inf``).
    """

    batch: float
    mean: float
    second_moment: float
    cross_moment: float
    mu1: float
    nu: float
    kappa1: float
    kappa2: float
    factor: float


@functools.lru_cache(maxsize=128)
def _bn_stats(act, B):
    if math.isinf(B):
        m, s, mu1, d1 = C.expect1_many(
            [lambda h: C.phi(act, h), lambda h: C.phi(act, h) ** 2,
             lambda h: C.dphi(act, h) ** 2, lambda h: C.dphi(act, h)], 1.0, "composite")
        return BatchNormStats(math.inf, m, s, m * m, mu1, d1 * d1, mu1, 0.0,
                              mu1 / (s - m * m) if s > m * m else math.inf)
    u1, w1 = C.sphere_rule(B - 1, np.zeros(1), np.ones(1))
    u1, w1 = u1[0], w1[0]
    f1, d1 = C.phi(act, u1), C.dphi(act, u1)
    m = float(w1 @ f1)
    s = float(w1 @ (f1 * f1))
    mu1 = float(w1 @ (d1 * d1))
    m11 = float(w1 @ (d1 * d1 * (1.0 - 1.0 / B - u1 * u1 / B)))
    # z_2 given z_1: mean -z_1/(B-1) plus a coordinate of a uniform point of a sphere of radius
    # sqrt(B (1 - z_1^2/(B-1))) in B-2 dimensions, i.e. scale sqrt(B/(B-1) (1 - z_1^2/(B-1)))
    means2 = -u1 / (B - 1)
    scales2 = np.sqrt(B / (B - 1) * np.maximum(0.0, 1.0 - u1 * u1 / (B - 1)))
    u2, w2 = C.sphere_rule(B - 2, means2, scales2)
    f2, d2 = C.phi(act, u2), C.dphi(act, u2)
    c = float(w1 @ (f1 * np.sum(w2 * f2, axis=1)))
    nu = float(w1 @ (d1 * np.sum(w2 * d2, axis=1)))
    zz = float(w1 @ (u1 * d1 * np.sum(w2 * u2 * d2, axis=1)))
    kappa2 = -(nu + zz) / B
    kappa1 = m11 - kappa2
    var = s - c
    factor = B * kappa1 / (var * (B - 3)) if var > 0 else math.inf
    return BatchNormStats(float(B), m, s, c, mu1, nu, kappa1, kappa2, factor)


def batch_norm_stats(activation, batch):
    """The expectations over batch norm's output for an activation and a batch size (see
    :class:`BatchNormStats`), by quadrature (cached).

    Parameters
    ----------
    activation : str or vgcore.Activation
    batch : int >= 4, or math.inf
        The batch size ``B`` of the training-mode pass.

    Returns
    -------
    BatchNormStats
    """
    act = resolve_activation(activation)
    B = C.batch_size(batch)
    if B < 4:
        raise ValueError(f"batch: batch norm's mean-field theory needs a batch of 4 or more "
                         f"(E[1/Var_batch(h)] diverges for B <= 3 as eps -> 0), got {B}")
    return _bn_stats(act, B)


def batch_norm_gradient_factor(activation, batch):
    """``lambda(B)``: the factor by which ``E||dL/dz_l||^2`` grows per layer towards the input,
    deep in a stack of batch-normalised layers at initialisation (Yang et al. 2019).

    Independent of ``sigma_w2`` and ``sigma_b2`` (batch norm is invariant to the scale of
    ``h``).  ``(B-2)/(B-3)`` for identity; ``pi/(pi-1) = 1.4669`` for relu as ``B -> inf``.
    See the module docstring for the derivation.

    Parameters
    ----------
    activation : str or vgcore.Activation
    batch : int >= 2, or math.inf

    Returns
    -------
    float
        ``lambda(B)``; ``inf`` for ``B <= 3``, where the expectation of ``1 / Var_batch(h)``
        diverges as ``eps -> 0`` (the real gradient is then set by ``norm_eps``).
    """
    act = resolve_activation(activation)
    B = C.batch_size(batch)
    if B < 4:
        return math.inf
    return _bn_stats(act, B).factor


# ------------------------------------------------------------------------------ layer norm

def _eps(eps):
    eps = C.number(eps, "eps")
    if eps == 0.0:
        raise ValueError("eps: expected a number > 0 (vgcore's norm_eps), got 0.0")
    return eps


def layer_norm_variance_map(q, activation, sigma_w2, sigma_b2, *, eps=1e-5, dropout=0.0,
                            quadrature="composite"):
    """Layer norm's variance map:
    ``V(q) = sigma_w2 E[phi(sqrt(q / (q + eps)) z)^2] / (1 - dropout) + sigma_b2``.

    ``q`` is the mean-field second moment of a layer's pre-activations ``h`` (before the
    normalisation); ``V(q)`` is the next layer's.  ``eps`` is vgcore's ``norm_eps``.
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    return MF._vmap(act, C.number(q, "q"), sw, sb, quad, keep, _eps(eps))


def layer_norm_fixed_point(activation, sigma_w2, sigma_b2, q0=1.0, *, eps=1e-5, dropout=0.0,
                           quadrature="composite"):
    """The fixed point ``q*`` of :func:`layer_norm_variance_map` reached from ``q0`` (finite:
    ``V`` is bounded by ``sigma_w2 sup_{q_hat <= 1} E[phi(sqrt(q_hat) z)^2] / (1-p) +
    sigma_b2``)."""
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    return MF._fixed_point(act, sw, sb, C.number(q0, "q0"), 1e-12, 200, quad, keep, _eps(eps))


def layer_norm_chi1(activation, sigma_w2, sigma_b2, q=None, *, eps=1e-5, dropout=0.0, q0=1.0,
                    quadrature="composite"):
    """Layer norm's ``chi_1 = sigma_w2 E[phi'(sqrt(q_hat) z)^2] / ((1 - p) (q + eps))``,
    ``q_hat = q / (q + eps)``, at ``q`` (default the fixed point of
    :func:`layer_norm_variance_map` reached from ``q0``): the per-layer growth of
    ``E||dL/dz||^2`` towards the input in a stack of layer-normalised layers."""
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    keep = 1.0 - C.probability(dropout, "dropout")
    eps = _eps(eps)
    if q is None:
        q = MF._fixed_point(act, sw, sb, C.number(q0, "q0"), 1e-12, 200, quad, keep, eps)
    else:
        q = C.number(q, "q")
    return MF._chi1(act, sw, q, quad, keep, eps)

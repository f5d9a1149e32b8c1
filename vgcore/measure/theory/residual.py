"""Residual blocks in vgcore's form, ``x_l = x_{l-1} + alpha phi(x_{l-1} W_l + b_l)``
(``residual=alpha``, ``"auto"`` for ``alpha = 1 / sqrt(number of hidden layers)``,
``residual_init="zero"`` for branches that start at zero), at any activation and initialiser.

Forward (derived here; compare Yang & Schoenholz 2017, "Mean field residual networks: on the
edge of chaos", who track the same quantities for their residual forms)
    Let ``Q_l`` be the mean square of an entry of the block output ``x_l`` (over the units, for
    one example), ``M_l`` its mean and ``C_l`` the mean product of one unit's values for two
    different examples.  The branch's pre-activation ``h_l[j] = x_{l-1} W_l[:, j] + b_l[j]``
    has, at infinite width and over the draw of ``W_l``, the variance

        ``q_l = sigma_w2 Q_{l-1} + sigma_b2``

    (``W_l`` has zero mean, so the mean of ``x_{l-1}`` enters only through its square), and it
    is independent of ``x_{l-1}[j]``, the same unit's skip value (column ``j`` of ``W_l`` is a
    fresh draw).  Hence ``E[x_{l-1}[j] phi(h_l[j])] = M_{l-1} m(q_l)`` and

        ``M_l = M_{l-1} + alpha m(q_l)``,
        ``Q_l = Q_{l-1} + 2 alpha M_{l-1} m(q_l) + alpha^2 s(q_l)``,
        ``C_l = C_{l-1} + 2 alpha M_{l-1} m(q_l) + alpha^2 r_l``,

    with ``m(q) = E[phi(sqrt(q) z)]``, ``s(q) = E[phi(sqrt(q) z)^2]`` and ``r_l`` the mean-field
    ``E[phi(u_1) phi(u_2)]`` of the two examples (:func:`vgcore.theory.correlation_map`'s
    numerator).  The familiar ``ln Q_L = L ln(1 + alpha^2)`` (relu at He initialisation) is
    what the recursion gives without the cross term ``2 alpha M m``: it holds only for branches
    whose output has zero mean (odd activations without bias: tanh, identity).  A relu branch
    has ``m(q) = sqrt(q / (2 pi))``, the mean grows with the stream, the cross term grows with
    it, and the second moment grows much faster: at He initialisation with ``alpha = 0.5``, 12
    blocks take ``Q`` from 1 to 307 instead of ``1.25^12 = 14.6`` (vgcore measures 310-320 at
    width 256).  With batch or layer norm inside the branch ``m``, ``s`` and ``r`` are those of
    the normalised pre-activation (:mod:`vgcore.theory.normalisation`); dropout after the sum
    divides ``Q`` by ``1 - p`` and leaves ``M`` and ``C``.

Backward
    With ``g_l = dL/dx_l``, the branch's error is ``delta_l = alpha g_l * phi'(z_l)`` (vgcore
    measures this ``delta``, ``dL/dz_l``, in :attr:`GradientFlow.delta_norm
    <vgcore.flow.GradientFlow>`) and ``g_{l-1} = g_l + e_l W_l^T`` with ``e_l = dL/dh_l``
    (``= delta_l`` without normalisation).  At infinite width ``W_l`` in the backward pass is
    independent of ``g_l`` (gradient independence), so the cross term vanishes and

        ``E||g_{l-1}||^2 = E||g_l||^2 (1 + alpha^2 sigma_w2 E[phi'(z_l)^2] nu_l)``,
        ``E||delta_l||^2 = alpha^2 E[phi'(z_l)^2] E||g_l||^2``,

    ``nu_l`` the normalisation's factor (1 without; see :mod:`vgcore.theory.normalisation`).
    The gradient never shrinks through a block: ``L ln(1 + alpha^2)`` is right backwards for
    relu at He initialisation (``E[phi'^2] = 1/2`` whatever the mean), and ``"auto"``
    (``alpha^2 = 1/L``) bounds the growth over the whole stack by ``e``.  A zero-initialised
    branch (``W_l = 0``, ``b_l = 0``) has ``h_l = 0`` exactly: the block passes ``g_l`` through
    unchanged, its output shifts by ``alpha phi(0)`` (``0.5 alpha`` for sigmoid), and its
    ``delta_l = alpha phi'(0) g_l`` (exactly 0 for relu, whose ``relu'(0) = 0`` in vgcore).

Finite width
    The mean-field recursion is the infinite-width limit.  For relu blocks, whose branches add
    a growing mean to the stream, the measured per-block growth of the gradient exceeds
    ``1 + alpha^2 sigma_w2 / 2`` at finite width, most in the blocks far from the output of a
    deep stack: with ``alpha = 0.5`` at He initialisation and 16 blocks, by up to 14% per block
    at width 128 and 7% at width 512 near the input, and by a few percent or less within 8
    blocks of the output or with ``alpha = 1/sqrt(depth)``.  Tanh blocks follow the mean field
    to about 1% per block at width 128.
"""
from __future__ import annotations

import math

import numpy as np

from vgcore.measure.theory import _common as C
from vgcore.measure.theory import normalisation as N

__all__ = ["residual_alpha", "residual_moments"]


def residual_alpha(residual, n_hidden):
    """vgcore's branch scale: a number as it is, ``"auto"`` as ``1 / sqrt(n_hidden)``, None
    for no residual block."""
    if residual is None:
        return None
    if isinstance(residual, str):
        if residual.strip().lower() != "auto":
            raise ValueError(f"residual: expected None, 'auto' or a finite non-zero scale, "
                             f"got {residual!r}")
        return 1.0 / math.sqrt(n_hidden)
    if isinstance(residual, bool) or not isinstance(residual, (int, float, np.integer,
                                                               np.floating)):
        raise TypeError(f"residual: expected None, 'auto' or a number, got "
                        f"{type(residual).__name__}")
    r = float(residual)
    if not math.isfinite(r) or r == 0.0:
        raise ValueError(f"residual: expected None, 'auto' or a finite non-zero scale, got "
                         f"{residual!r}")
    return r


def forward_step(Q, Cx, M, s, r, m, alpha):
    """One block's output moments from its input's ``(Q, C, M)`` and the branch activation's
    ``s = E[a^2]``, ``r = E[a_1 a_2]`` (two examples), ``m = E[a]``: ``(Q', C', M')``."""
    if alpha is None:
        return s, r, m
    cross = 2.0 * alpha * M * m
    return Q + cross + alpha * alpha * s, Cx + cross + alpha * alpha * r, M + alpha * m


def residual_moments(activation, depth, sigma_w2, sigma_b2=0.0, alpha="auto", *, q0=1.0,
                     m0=0.0, residual_init=None, norm=None, batch=None, dropout=0.0,
                     quadrature="composite"):
    """The forward moments of a stack of ``depth`` residual blocks (see the module docstring).

    Parameters
    ----------
    activation : str or vgcore.Activation
    depth : int >= 1
        Number of blocks (hidden layers); ``"auto"`` gives ``alpha = 1 / sqrt(depth)``.
    sigma_w2, sigma_b2 : float >= 0
        Each branch's ``fan_in Var(W)`` and ``Var(b)``.
    alpha : float or "auto"
    q0, m0 : float
        Mean square and mean of the input's entries (``x_0``).
    residual_init, norm, batch, dropout, quadrature
        As in :func:`vgcore.theory.predicted_gradient_profile`.

    Returns
    -------
    dict of ndarray (depth,)
        ``q`` (each branch's pre-activation second moment), ``second_moment`` (``Q_l``),
        ``mean`` (``M_l``), ``second_moment_without_mean`` (the recursion without the
        ``2 alpha M m`` term: what ``L ln(1 + alpha^2)`` assumes), and ``delta_sq`` (the
        backward profile relative to the last block).
    """
    from vgcore.measure.theory import profile as P
    quad = C.quadrature(quadrature)
    q0 = C.number(q0, "q0")
    m0 = P._real(m0, "m0")
    eps = N._eps(1e-5)
    B = None if batch is None else C.batch_size(batch)
    layers, sw, sb = P._spec_layers(activation, depth, sigma_w2, sigma_b2, norm, alpha,
                                    residual_init, dropout, None)
    if any(L.norm == "batch" for L in layers) and B is None:
        raise ValueError("batch: batch norm's prediction depends on the batch size; pass batch")
    runs = [P._profile(layers, sw, sb, q0, m0, m0 * m0, B, eps, quad, "normal", True,
                       mean_free=free) for free in (False, True)]
    if not runs[0].applies:
        raise ValueError(f"batch: {runs[0].reason}")
    return dict(q=runs[0].q, second_moment=runs[0].second_moment, mean=runs[0].mean,
                second_moment_without_mean=runs[1].second_moment, delta_sq=runs[0].delta_sq)

"""Finite width: the spread of the squared norms around the mean-field line (Hanin & Rolnick
2018, "How to start training: the effect of initialization and architecture"; Hanin 2018,
"Which neural net architectures give rise to exploding and vanishing gradients?").

For a relu (or linear) network with Gaussian weights of variance ``sigma_w2 / fan_in``, one
example's squared norms change through each layer by an independent random factor.  Forwards,
given ``x_{l-1}``, ``h_l = x_{l-1} W_l`` has i.i.d. ``N(0, sigma_w2 |x_{l-1}|^2 / n_{l-1})``
entries (the Gaussian is rotation invariant), and relu keeps ``K_l`` of the ``n_l`` of them, so

    ``|x_l|^2 / |x_{l-1}|^2 = (sigma_w2 / n_{l-1}) chi^2_{K_l}``,  ``K_l ~ Binomial(n_l, 1/2)``,

independent of everything before (``K = n`` for identity).  Backwards, ``delta_l = (delta_{l+1}
W_{l+1}^T) * relu'(h_l)``; with symmetric weights the activation patterns are i.i.d.
Bernoulli(1/2) and independent of the weights' magnitudes (Hanin & Nica 2020, "Products of many
large random matrices and gradients in deep neural networks"), so in the same way

    ``|delta_l|^2 / |delta_{l+1}|^2 = (sigma_w2_{l+1} / n_l) chi^2_{K_l}``,
    ``K_l ~ Binomial(n_l, 1/2)``,

and ``ln(|delta_l|^2 / |delta_L|^2)`` is a sum of independent per-layer terms.  Each term's
mean and variance are exact: ``E[ln chi^2_K | K] = psi(K/2) + ln 2`` and
``Var[ln chi^2_K | K] = psi'(K/2)`` (``psi`` the digamma function), averaged over the binomial
``K`` (conditioned on ``K >= 1``: with probability ``2^-n`` every unit of the layer is off for
the example and its delta is exactly 0), plus the variance of ``psi(K/2)`` over ``K``.  Both are
about ``5 / (2 n)`` and ``5 / n`` per layer for relu: the mean of the log lies below the
mean-field line (Jensen), and the spread grows like ``sqrt(5 sum_l 1/n_l)`` (Hanin & Rolnick's
"sum of reciprocals of the widths").  For square orthogonal weights the factor is
``sigma_w2 B_l``, ``B_l ~ Beta(K_l/2, (n - K_l)/2)`` (the masked fraction of a uniformly random
direction): ``E ln B = psi(K/2) - psi(n/2)``, ``Var ln B = psi'(K/2) - psi'(n/2)``; a linear
orthogonal network has no spread at all.

This is per example.  vgcore measures ``|delta_l|`` summed over a batch: the examples share the
weights but not their activation patterns, so a batch's measurement spreads less than one
example's, and a measured profile outside the band drawn from these moments is a real departure
from the theory, not width noise.  Exact for Gaussian weights (``normal``, ``he_normal``,
``glorot_normal``, ``lecun_normal``); for the uniform initialisers the per-layer laws hold to
leading order in ``1/n`` (the weights' fourth moment enters at the next order).  Biases do not
change the backward law (the patterns stay Bernoulli(1/2) for symmetric biases).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from vgcore.core.activations import resolve_activation
from vgcore.core.init import init_name
from vgcore.measure.theory import _common as C

__all__ = ["log_gain_moments", "gradient_log_moments"]

_EXACT_INITS = ("normal", "he_normal", "glorot_normal", "lecun_normal")
_UNIFORM_INITS = ("standard", "he_uniform", "glorot_uniform", "lecun_uniform")


@functools.lru_cache(maxsize=512)
def _log_chi2_binomial(n, kind):
    """Mean and variance of ``ln chi^2_K`` (relu: K ~ Bin(n, 1/2) | K >= 1; identity: K = n),
    or of ``ln Beta(K/2, (n-K)/2)`` for orthogonal weights (``kind`` ends with '_orth')."""
    from scipy.special import digamma, gammaln, polygamma
    act, orth = kind.split("_")[0], kind.endswith("_orth")
    if act == "identity":
        K = np.array([float(n)])
        p = np.ones(1)
    else:
        mean, sd = 0.5 * n, 0.5 * math.sqrt(n)
        lo, hi = max(1, math.floor(mean - 15 * sd)), min(n, math.ceil(mean + 15 * sd))
        K = np.arange(lo, hi + 1, dtype=np.float64)
        logp = gammaln(n + 1.0) - gammaln(K + 1.0) - gammaln(n - K + 1.0)
        p = np.exp(logp - logp.max())
        p /= p.sum()
    if orth:
        if act == "identity":
            return 0.0, 0.0
        m = digamma(K / 2) - digamma(n / 2)
        v = polygamma(1, K / 2) - polygamma(1, n / 2)
    else:
        m = digamma(K / 2) + math.log(2.0)
        v = polygamma(1, K / 2)
    mean = float(p @ m)
    var = float(p @ v + p @ (m - mean) ** 2)
    return mean, var


def log_gain_moments(units, fan_in, sigma_w2, activation="relu", *, orthogonal=False):
    """Mean and variance of the log of one layer's random factor on a squared norm.

    The factor is ``(sigma_w2 / fan_in) chi^2_K`` with ``K ~ Binomial(units, 1/2)`` for relu
    and ``K = units`` for identity (Gaussian weights), or ``sigma_w2 Beta(K/2, (units-K)/2)``
    for square orthogonal weights (``fan_in == units``); see the module docstring.  Forwards
    ``units`` is the layer's width and ``fan_in`` the previous one's; backwards, from
    ``delta_{l+1}`` to ``delta_l``, both are ``n_l``.

    Returns
    -------
    (float, float)
        ``E[ln factor]`` and ``Var[ln factor]``.
    """
    act = resolve_activation(activation)
    if act.name not in ("relu", "identity"):
        raise ValueError(f"activation: the finite-width law is exact for relu and identity, "
                         f"got {act.name!r}")
    units = C.integer(units, "units", 1)
    fan_in = C.integer(fan_in, "fan_in", 1)
    sw = C.number(sigma_w2, "sigma_w2")
    if orthogonal and fan_in != units:
        raise ValueError(f"fan_in: the orthogonal law needs a square layer, got fan_in={fan_in} "
                         f"and units={units}")
    mean, var = _log_chi2_binomial(units, act.name + ("_orth" if orthogonal else ""))
    scale = sw if orthogonal else sw / fan_in
    return (math.log(scale) if scale > 0 else -math.inf) + mean, var


def _band_reason(acts, widths, init, plain):
    if not plain:
        return ("the finite-width band is derived for plain relu or linear stacks (no "
                "normalisation, residual blocks or dropout)")
    bad = sorted({a.name for a in acts if a.name not in ("relu", "identity")})
    if bad:
        return (f"the finite-width band is exact for relu and identity layers only (Hanin & "
                f"Rolnick 2018), not {', '.join(bad)}")
    key = init_name(init)
    if key == "orthogonal" and len(set(widths)) > 1:
        return "the finite-width band for orthogonal weights needs equal hidden widths"
    return None


def gradient_log_moments(activations, widths, sigma_w2, init="he_normal"):
    """Per-example mean and variance of ``ln(|delta_l|^2 / |delta_L|^2)`` for every hidden layer
    ``l = 1..L`` of a plain relu/identity stack at width ``widths`` (see the module docstring).

    Parameters
    ----------
    activations : sequence of str or Activation, (L,)
        Each hidden layer's activation (relu or identity).
    widths : sequence of int, (L,)
        Hidden widths ``n_l``.
    sigma_w2 : sequence of float, (L,) or (L + 1,)
        ``fan_in Var(W)`` of hidden layers ``1..L`` (and the output layer, unused).
    init : str
        The initialiser: Gaussian ones exact, uniform ones to leading order, ``orthogonal``
        for square layers.

    Returns
    -------
    (ndarray, ndarray)
        Means and variances, shape (L,); 0 at ``l = L``.

    Raises
    ------
    ValueError
        With the reason when the law does not apply.
    """
    acts = [resolve_activation(a) for a in activations]
    widths = [C.integer(w, "widths", 1) for w in widths]
    sws = [C.number(s, "sigma_w2") for s in sigma_w2]
    L = len(acts)
    if len(widths) != L or len(sws) < L:
        raise ValueError(f"widths, sigma_w2: expected {L} widths and at least {L} weight "
                         f"variances, got {len(widths)} and {len(sws)}")
    reason = _band_reason(acts, widths, init, True)
    if reason:
        raise ValueError(f"activations: {reason}")
    orth = init_name(init) == "orthogonal"
    mean = np.zeros(L)
    var = np.zeros(L)
    for j in range(L - 2, -1, -1):
        m, v = log_gain_moments(widths[j], widths[j], sws[j + 1], acts[j], orthogonal=orth)
        mean[j] = mean[j + 1] + m
        var[j] = var[j + 1] + v
    return mean, var


def band_note(init):
    """A sentence on how exact the band is for an initialiser."""
    key = init_name(init)
    if key in _EXACT_INITS:
        return None
    if key in _UNIFORM_INITS:
        return (f"finite-width band: init={key!r} has uniform weights, for which the per-layer "
                f"chi-square law holds to leading order in 1/width")
    return None

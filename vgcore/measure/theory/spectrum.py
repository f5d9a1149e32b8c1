"""The input-output Jacobian: measured on the real network, and predicted by free probability
(Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry: theory and practice"; 2018, "The emergence of spectral universality in deep
networks").

Measured
    :func:`jacobian` and :func:`jacobian_singular_values` compute ``J = dy/dx`` of an actual
    network with the engine's own backward pass (exact to rounding) and its singular values
    (:mod:`vgcore.theory.measured_jacobian`, re-exported here).

Predicted
    For a plain network ``J = W_{L+1}^T D_L W_L^T ... D_1 W_1^T`` (vgcore's ``y = x W``
    convention), ``D_l = diag(phi'(h_l))`` (times the dropout mask ``/ (1 - p)`` in training
    mode).  At infinite width with square layers the ``W_l W_l^T`` and ``D_l^2`` are
    asymptotically free, so the distribution of the squared singular values of ``J`` (the
    eigenvalues of ``J J^T``) is the free multiplicative convolution of their distributions,
    whose S-transforms multiply: ``S_{JJ^T} = prod_l S_{W_l W_l^T} prod_l S_{D_l^2}``.

    * ``W W^T`` for Gaussian (or any i.i.d.) weights of variance ``sigma_w2 / n``: the
      Marchenko-Pastur law of ratio 1, moments ``sigma_w2^k Catalan(k)``,
      ``S(w) = 1 / (sigma_w2 (1 + w))``; for orthogonal weights ``sigma_w2`` times the identity,
      ``S = 1 / sigma_w2``.
    * ``D_l^2``: the law of ``phi'(h)^2``, ``h ~ N(0, q_l)`` (the mean-field transient), with
      moments ``E[phi'(h)^(2k)]`` by quadrature.

    Writing ``psi(w) = sum_k m_k w^k`` for the moment series and ``chi`` for its inverse,
    ``S(w) = chi(w) (1 + w) / w``; the moments of ``J J^T`` follow from the product of the
    factors' S-series by series reversion (:attr:`SpectrumPrediction.moments`).  In
    particular the mean squared singular value is ``m_1 = prod_l sigma_w2_l prod_l mu_1(q_l)``
    and the relative variance is ``(m_2 - m_1^2) / m_1^2 = sum_l (mu_2 / mu_1^2 - 1) + (number of
    Gaussian weight layers)`` (Pennington et al.'s ``L (mu_2/mu_1^2 - 1 - s_1)``, ``s_1 = -1``
    for Gaussian, 0 for orthogonal weights), ``mu_k = E[phi'(h)^(2k)]``.  Dynamical isometry --
    every singular value near 1, at any depth -- needs ``m_1 = 1`` (the edge of chaos) and
    ``mu_2 / mu_1^2 -> 1`` with orthogonal weights: tanh with small ``q*``; relu
    (``mu_2 / mu_1^2 = 2``) never has it.

    The density is computed where ``S`` is rational: when every ``phi'`` takes one non-zero
    value (identity, relu, hard_tanh), ``D_l^2`` has the law ``(1 - rho) delta_0 + rho
    delta_a`` and ``S_D(w) = (1 + w) / (a (rho + w))``.  With ``z`` the spectral parameter,
    ``w = psi(1/z)`` solves ``z w S(w) = 1 + w``; the Stieltjes transform is
    ``G(z) = (1 + w) / z`` and the density ``-Im G(x + i0) / pi = -Im w(x) / (pi x)``.  The root
    is followed by Newton's method from outside the support (where ``w ~ m_1 / x``) along a
    grid of ``x`` just above the real axis.  The atom at 0 has the mass of the largest atom of
    the factors (1/2 for relu: half the units are off).  The series and the root-following
    are :mod:`vgcore.measure.theory._free_probability`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vgcore.core.activations import Activation
from vgcore.core.init import init_name
from vgcore.measure.theory import _common as C
from vgcore.measure.theory import _free_probability as FP
from vgcore.measure.theory import mean_field as MF
from vgcore.measure.theory.measured_jacobian import (JacobianSpectrum, jacobian,  # noqa: F401
                                                     jacobian_singular_values)

__all__ = ["jacobian", "jacobian_singular_values", "JacobianSpectrum", "SpectrumPrediction",
           "predicted_jacobian_spectrum"]

_CDF_POINTS_PER_DECADE = 100


# ------------------------------------------------------------------------------ prediction

@dataclass(frozen=True)
class SpectrumPrediction:
    """The predicted distribution of the squared singular values of a network's input-output
    Jacobian (the eigenvalues of ``J J^T``), see :func:`predicted_jacobian_spectrum`.

    Attributes
    ----------
    weights : str
        ``"gaussian"`` (any i.i.d. initialiser) or ``"orthogonal"``.
    n_layers : int
        Weight layers (hidden layers + the output layer).
    moments : ndarray (K,)
        ``m_k = E[lambda^k]``, ``k = 1..K``, ``lambda`` a squared singular value (NaN beyond
        ``m_1`` when only the mean is known).
    per_layer : ndarray (H,)
        ``mu_2 / mu_1^2 - 1`` of each hidden layer's ``D_l^2`` (the spread it adds).
    zero_mass : float
        The fraction of squared singular values that are exactly 0 (relu: 1/2).
    applies : bool
        False when no prediction can be made (then ``reason``).
    reason : str or None
        Why not, or what is missing (the density, the higher moments).
    """

    weights: str
    n_layers: int
    moments: np.ndarray
    per_layer: np.ndarray
    zero_mass: float
    applies: bool = True
    reason: str | None = None
    _atoms: tuple | None = None        # (number of Gaussian W, tuple of rho) for the density
    _n_gauss: int = 0
    _rho_nonzero: tuple | None = None  # P(phi'(h) mask != 0) per hidden layer

    @property
    def mean(self) -> float:
        """``m_1``, the mean squared singular value (``||J||_F^2 / n``)."""
        return float(self.moments[0])

    @property
    def variance(self) -> float:
        """``m_2 - m_1^2``."""
        return float(self.moments[1] - self.moments[0] ** 2)

    @property
    def relative_variance(self) -> float:
        """``(m_2 - m_1^2) / m_1^2``."""
        return self.variance / self.mean ** 2

    @property
    def top_atom(self):
        """``(location, mass)`` of an atom at the top of the spectrum, or None: with orthogonal
        weights and derivatives that are 0 or 1 (hard_tanh near ``q = 0``, identity with
        dropout) a fraction ``sum_l rho_l - (H - 1)`` of the squared singular values sit at the
        product of the factors' norms."""
        if self._atoms is None:
            return None
        a = FP.top_atom(*self._atoms)
        return None if a is None else (a[0] * self.mean, a[1])

    def is_isometric(self, mean_tol=0.1, spread_tol=0.3) -> bool:
        """Dynamical isometry: the squared singular values concentrate around 1, with
        ``|m_1 - 1| <= mean_tol`` and relative spread ``sqrt(relative_variance) <= spread_tol``."""
        if not self.applies or not math.isfinite(self.moments[1]):
            return False
        return (abs(self.mean - 1.0) <= mean_tol
                and math.sqrt(max(self.relative_variance, 0.0)) <= spread_tol)

    @property
    def isometric(self) -> bool:
        """:meth:`is_isometric` at its default tolerances."""
        return self.is_isometric()

    @property
    def summary(self) -> str:
        """One sentence: the mean and spread of the squared singular values, and whether
        dynamical isometry holds."""
        if not self.applies:
            return f"no prediction: {self.reason}"
        m1 = self.mean
        if not math.isfinite(self.moments[1]):
            return f"mean squared singular value {m1:.4g} (the spread needs square layers)"
        rv = self.relative_variance
        spread = (f"relative variance {rv:.3g} = {self.per_layer.sum():.3g} from the "
                  f"activations' derivatives + {self._n_gauss} from the Gaussian weights")
        if self.isometric:
            return (f"dynamical isometry: the squared singular values have mean {m1:.4g} and "
                    f"{spread}")
        why = []
        if abs(m1 - 1.0) > 0.1:
            why.append(f"mean {m1:.4g} is not 1 (off the edge of chaos)")
        if math.sqrt(max(rv, 0.0)) > 0.3:
            why.append(f"{spread}")
        return "no dynamical isometry: " + "; ".join(why)

    def density(self, x) -> np.ndarray:
        """The density of the squared singular values at ``x`` (> 0), excluding the atoms at 0
        (``zero_mass``) and at the top (``top_atom``).  Raises ValueError (with the reason)
        where it is not computable."""
        if self._atoms is None:
            raise ValueError(f"density: {self.reason or 'not computable for this network'}")
        x = np.asarray(x, dtype=np.float64)
        if np.any(~np.isfinite(x)) or np.any(x <= 0):
            raise ValueError("x: expected finite values > 0")
        m1 = self.mean
        n_gauss, rhos = self._atoms
        return FP.density(x.reshape(-1) / m1, n_gauss, rhos).reshape(x.shape) / m1

    def cdf(self, x) -> np.ndarray:
        """``P(lambda <= x)`` including the atoms: ``1 - integral of the density from x up``
        (trapezoids in ``ln x``, 100 points a decade, from above the support down to
        ``min(x)``; accurate to ~1e-3 where the density jumps, far better elsewhere)."""
        if self._atoms is None:
            raise ValueError(f"cdf: {self.reason or 'not computable for this network'}")
        x = np.asarray(x, dtype=np.float64)
        if np.any(~np.isfinite(x)) or np.any(x <= 0):
            raise ValueError("x: expected finite values > 0")
        m1 = self.mean
        n_gauss, rhos = self._atoms
        if n_gauss == 0 and all(r >= 1.0 for r in rhos):
            return np.where(x >= m1, 1.0, 0.0)
        top = 2.0 * FP.top_edge(n_gauss, rhos)
        lo = float(np.min(x)) / m1
        grid = np.exp(np.linspace(math.log(max(top, lo * 2)), math.log(lo),
                                  max(2, int(math.log10(max(top, lo * 2) / lo)
                                             * _CDF_POINTS_PER_DECADE) + 1)))
        d = FP.density(grid, n_gauss, rhos) * grid          # density per unit of ln x
        lg = np.log(grid)
        upper = np.concatenate(([0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * (lg[:-1] - lg[1:]))))
        # grid descends: upper[i] = integral from grid[i] to the top
        F = 1.0 - upper
        out = np.interp(np.log(x.reshape(-1) / m1), lg[::-1], F[::-1])
        atom = FP.top_atom(n_gauss, rhos)
        if atom is not None:                  # values within 1e-9 of the atom count as on it
            out = out - atom[1] * (x.reshape(-1) / m1 < atom[0] * (1.0 - 1e-9))
        return out.reshape(x.shape)

    def zero_fraction(self, width) -> float:
        """The expected fraction of exactly zero squared singular values at width ``n``
        (square layers): ``1 - E[min_l K_l] / n``, ``K_l ~ Binomial(n, rho_l)`` the units of
        hidden layer ``l`` whose derivative (times the dropout mask) is non-zero for the
        example (the rank of ``J`` is the smallest of them; independent Bernoulli patterns as
        in :mod:`vgcore.theory.finite_width`).  Tends to ``zero_mass`` as ``n -> inf``; at
        ``n = 128`` with six relu layers it is 0.555, not 0.5."""
        from scipy.stats import binom
        n = C.integer(width, "width", 1)
        if self._rho_nonzero is None:
            raise ValueError(f"width: {self.reason or 'no prediction'}")
        k = np.arange(1, n + 1)
        surv = np.ones(n)
        for rho in self._rho_nonzero:
            if rho < 1.0:
                surv *= binom.sf(k - 1, n, rho)          # P(K >= k)
        return float(1.0 - surv.sum() / n)

    def compare(self, measured, rtol=None) -> dict:
        """Set a measured :class:`JacobianSpectrum` beside the prediction.

        Returns a dict: the mean and second moment of the squared singular values, measured
        (pooled over the inputs) and predicted; the fraction of them that are zero, measured
        (singular values at most ``rtol`` times the largest; default ``max(n_in, n_out)``
        float64 epsilons, NumPy's rank tolerance; pass ``max(n) * 1.2e-7`` for a float32
        network) and predicted at the measured width (:meth:`zero_fraction`) and in the limit;
        and, where the density is known, ``cdf_distance``: the largest distance between the
        measured and predicted distribution functions (zeros included), taken at the measured
        non-zero values.  At width ``n`` the measured function starts higher by the excess of
        zeros, ``zero_fraction(n) - zero_mass`` (taken from the smallest values), so expect
        ``cdf_distance`` up to that much plus the sampling error."""
        if not isinstance(measured, JacobianSpectrum):
            raise TypeError(f"measured: expected a JacobianSpectrum (from "
                            f"jacobian_singular_values), got {type(measured).__name__}")
        sv = measured.singular_values
        if rtol is None:
            rtol = max(sv.shape[1], 1) * np.finfo(np.float64).eps
        rtol = C.number(rtol, "rtol")
        zero = sv <= rtol * sv[:, :1]
        lam = np.sort((sv ** 2).reshape(-1))
        out = {"measured_mean": float(lam.mean()), "predicted_mean": self.mean,
               "measured_second_moment": float(np.mean(lam * lam)),
               "predicted_second_moment": float(self.moments[1]),
               "measured_zero_fraction": float(zero.mean()),
               "predicted_zero_fraction": (self.zero_fraction(sv.shape[1])
                                           if self._rho_nonzero is not None else None),
               "predicted_zero_fraction_limit": self.zero_mass, "cdf_distance": None}
        if self._atoms is not None:
            pos = np.sort((sv[~zero] ** 2).reshape(-1))
            if self.top_atom is not None:        # values on the atom, up to rounding, onto it
                loc = self.top_atom[0]
                pos[np.abs(pos - loc) <= 1e-9 * loc] = loc
            if pos.size:
                F = self.cdf(pos)
                n_zero = lam.size - pos.size
                below = np.searchsorted(pos, pos, side="left")    # ties (atoms) counted once
                emp_hi = (n_zero + np.searchsorted(pos, pos, side="right")) / lam.size
                emp_lo = (n_zero + below) / lam.size
                F_lo = np.concatenate(([self.zero_mass], F[:-1]))[below] if pos.size else F
                out["cdf_distance"] = float(max(np.max(np.abs(F - emp_hi)),
                                                np.max(np.abs(F_lo - emp_lo))))
        return out


def _d2_moments(act, q, keep, K, quad):
    """E[(phi'(h)^2 mask^2 / keep^2)^k], k = 1..K, h ~ N(0, q)."""
    mus = C.expect1_many([lambda h, k=k: C.dphi(act, h) ** (2 * k) for k in range(1, K + 1)],
                         q, quad)
    return np.array([m * keep ** (1 - 2 * k) for k, m in enumerate(mus, start=1)])


def _zero_prob(act, q):
    """P(phi'(h) = 0), h ~ N(0, q)."""
    if act.name == "relu" or (act.name == "leaky_relu" and act.param == 0.0):
        return 0.5
    if act.name == "hard_tanh":
        return 1.0 - math.erf(1.0 / math.sqrt(2.0 * q)) if q > 0 else 0.0
    return 0.0


def _two_atom_rho(act, q):
    """rho with phi'(h)^2 in {0, 1} and P(phi'^2 = 1) = rho, or None."""
    if act.name == "identity":
        return 1.0
    if act.name == "relu":
        return 0.5
    if act.name == "hard_tanh":
        return math.erf(1.0 / math.sqrt(2.0 * q)) if q > 0 else 1.0
    return None


def predicted_jacobian_spectrum(net_or_activation, depth=None, sigma_w2=None, sigma_b2=0.0, *,
                                weights=None, q0=None, X=None, dropout=0.0, n_moments=4,
                                training=None, quadrature="composite"):
    """The predicted distribution of the squared singular values of the input-output Jacobian
    (see the module docstring): its moments, its density where computable, and whether
    dynamical isometry holds.

    Parameters
    ----------
    net_or_activation : vgcore.MLP or str / vgcore.Activation
        A network (plain: no normalisation, no residual blocks; dropout counts in training
        mode), or the activation of a spec of ``depth`` square hidden layers plus a square
        output layer, every one with ``sigma_w2``, ``sigma_b2``.
    weights : "gaussian" or "orthogonal", optional
        Spec only (default "gaussian"); a network's follows from its ``init``.
    q0, X
        The input's mean squared entry, or inputs to take it from (as in
        :func:`predicted_gradient_profile`).
    dropout : float
        Spec only: dropout on every hidden layer.
    n_moments : int >= 2
        How many moments to compute (default 4).
    training : bool, optional
        Network only: with dropout, whether the masks are on (default the network's mode).

    Returns
    -------
    SpectrumPrediction
        ``applies=False`` with the reason for normalised or residual networks (their
        Jacobians are not products of free factors) and networks without hidden layers.  The
        moments beyond the first need ``n_in`` = every hidden width = ``n_out``; the density
        needs, in addition, derivatives with one non-zero value (identity, relu, hard_tanh).
    """
    from vgcore.measure.theory.profile import _input_moments, _net_layers, _spec_layers
    quad = C.quadrature(quadrature)
    K = C.integer(n_moments, "n_moments", 2)
    q0, _, _ = _input_moments(X, q0, None)
    if isinstance(net_or_activation, (str, Activation)):
        if depth is None or sigma_w2 is None:
            raise ValueError("depth, sigma_w2: a spec needs the activation, depth and "
                             f"sigma_w2 (got depth={depth!r}, sigma_w2={sigma_w2!r})")
        layers, sw_out, _ = _spec_layers(net_or_activation, depth, sigma_w2, sigma_b2, None,
                                         None, None, dropout, None)
        w = "gaussian" if weights is None else str(weights).strip().lower()
        if w not in ("gaussian", "orthogonal"):
            raise ValueError(f"weights: expected 'gaussian' or 'orthogonal', got {weights!r}")
        square, sizes = True, None
    else:
        if weights is not None or depth is not None or sigma_w2 is not None or dropout:
            raise ValueError("weights, depth, sigma_w2, dropout: these describe a spec; a "
                             "network carries its own")
        layers, sw_out, _, _, init, _ = _net_layers(net_or_activation, training)
        w = "orthogonal" if init_name(init) == "orthogonal" else "gaussian"
        sizes = tuple(int(s) for s in net_or_activation.sizes)
        square = len(set(sizes)) == 1
    H = len(layers)
    nan = np.full(K, np.nan)
    if any(L.norm is not None or L.alpha is not None for L in layers):
        return SpectrumPrediction(w, H + 1, nan, np.full(H, np.nan), math.nan, False,
                                  "the Jacobian of a normalised or residual network is not a "
                                  "product of free factors; only plain networks are predicted")
    # the mean-field transient q_l
    qs = []
    q = layers[0].sw * q0 + layers[0].sb
    for l, L in enumerate(layers):
        qs.append(q)
        if l + 1 < H:
            q = MF._vmap(L.act, q, layers[l + 1].sw, layers[l + 1].sb, quad, 1.0 - L.p)
    sws = [L.sw for L in layers] + [sw_out]
    d_moms = [_d2_moments(L.act, qv, 1.0 - L.p, K, quad) for L, qv in zip(layers, qs)]
    # E||J||_F^2 = n_out prod sigma_w2 prod E[phi'^2]; the mean over min(n_in, n_out) values
    ends = 1.0 if square else sizes[-1] / min(sizes[0], sizes[-1])
    m1 = float(ends * np.prod(sws) * np.prod([m[0] for m in d_moms]))
    per_layer = np.array([m[1] / m[0] ** 2 - 1.0 if m[0] > 0 else np.nan for m in d_moms])
    rhos = []
    for L, qv in zip(layers, qs):
        r = _two_atom_rho(L.act, qv)
        rhos.append(None if r is None else r * (1.0 - L.p))
    nonzero = tuple((1.0 - L.p) * (1.0 - _zero_prob(L.act, qv)) for L, qv in zip(layers, qs))
    zero_mass = max(1.0 - r for r in nonzero)
    if not square:
        moments = nan.copy()
        moments[0] = m1
        return SpectrumPrediction(w, H + 1, moments, per_layer, zero_mass, True,
                                  "the spread and the density need square layers (n_in = every "
                                  "hidden width = n_out); the mean is exact for any widths",
                                  None, 0, None)
    if m1 == 0.0 or not math.isfinite(m1):
        moments = nan.copy()
        moments[0] = m1
        return SpectrumPrediction(w, H + 1, moments, per_layer, zero_mass, True,
                                  "the mean squared singular value is 0 or infinite", None, 0,
                                  nonzero)
    n_gauss = H + 1 if w == "gaussian" else 0
    s_tot = np.zeros(K)
    s_tot[0] = 1.0
    if n_gauss:
        s_w = FP.s_series(np.array([FP.catalan(k) for k in range(1, K + 1)]))
        for _ in range(n_gauss):
            s_tot = FP.series_product(s_tot, s_w, K)
    for m in d_moms:
        norm = m / m[0] ** np.arange(1, K + 1)
        s_tot = FP.series_product(s_tot, FP.s_series(norm), K)
    moments = FP.moments_from_s(s_tot) * m1 ** np.arange(1, K + 1)
    atoms, reason = None, None
    if all(r is not None for r in rhos):
        atoms = (n_gauss, tuple(rhos))
    else:
        bad = sorted({L.act.name for L, r in zip(layers, rhos) if r is None})
        reason = (f"density: computed when every derivative takes one non-zero value "
                  f"(identity, relu, hard_tanh), not for {', '.join(bad)}; the moments are exact")
    return SpectrumPrediction(w, H + 1, moments, per_layer, zero_mass, True, reason, atoms,
                              n_gauss, nonzero)

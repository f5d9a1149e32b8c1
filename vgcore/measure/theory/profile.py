"""Predictions for whole networks: the per-layer gradient profile of any network vgcore builds.
The critical line of a family of networks and the asymptotic per-layer gradient factor are in
:mod:`vgcore.theory.critical` (and importable from here too).

These are the functions a report or a sweep calls:

* :func:`predicted_gradient_profile` -- ``E||delta_l||^2`` per hidden layer for a network (or
  a spec), plain, batch norm (given the batch size), layer norm, residual (a scale,
  ``"auto"``, zero-initialised branches), dropout, in any combination, with the finite-width
  band where it is known; a :class:`GradientProfile` whose ``applies`` / ``reason`` say plainly
  when no theory applies.
* :func:`critical_point` (:func:`critical_sigma_w2`) and :func:`gradient_growth`: see
  :mod:`vgcore.theory.critical`.

The per-layer recursion
-----------------------
Hidden layer ``l`` of :class:`vgcore.MLP` computes ``h = x W + b``, ``z = norm(h)`` (or ``h``),
``a = phi(z)``, ``out = x + alpha a`` (residual) or ``a``, and in training mode
``x_l = out * mask / (1 - p)``.  Forwards the theory tracks, per layer and per unit, the
example's mean square ``Q_l`` of ``x_l``, its mean ``M_l`` and (when batch norm is present) the
cross moment ``C_l`` of two examples; ``q_l = sigma_w2 Q_{l-1} + sigma_b2`` is the second moment
of ``h_l`` (see :mod:`vgcore.theory.residual` for the recursion and :mod:`vgcore.theory.
normalisation` for what ``z`` is).  Backwards it tracks ``T_l = E||dL/dx_l||^2`` (summed over
units and batch) and, for batch norm, ``S_l``, the squared batch sum of the same gradient
(its component along ``(1, ..., 1)`` in batch space, which batch norm's backward pass
removes).  Through layer ``l`` (``a_2 = alpha^2`` or 1, ``~`` after the dropout mask):

* ``T~ = T / (1 - p)``, ``S~ = S + T p / (1 - p)`` (independent masks per example);
* ``E||delta_l||^2 = a_2 T~ E[phi'(z)^2]`` -- what vgcore measures, ``delta_l = dL/dz_l``
  (``= dL/dh_l`` without normalisation);
* ``T_{l-1} = sigma_w2 E||dL/dh_l||^2 + [residual] T~`` with ``E||dL/dh_l||^2`` equal to
  ``E||delta_l||^2``, ``E||delta_l||^2 / (q_l + eps)`` (layer norm) or
  ``a_2 E[1/sigma^2] (kappa_1 T~ + kappa_2 S~)`` (batch norm);
* ``S_{l-1} = sigma_w2 a_2 (T~ E[phi'^2] + (S~ - T~) E[phi'(u_1) phi'(u_2)]) + [residual] S~``
  (0 for the batch-norm term).

At the top ``T_L = sigma_w2_out E||dL/dy||^2`` and ``S_L = T_L`` (the output gradient's rows
uncorrelated across the batch).  ``delta_sq_vs_output`` is ``E||delta_l||^2 / E||dL/dy||^2``;
``delta_sq`` divides by the last hidden layer's.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from vgcore.core.activations import Activation, resolve_activation
from vgcore.core.init import init_name
from vgcore.measure.theory import _common as C
from vgcore.measure.theory import finite_width as FW
from vgcore.measure.theory.critical import (CriticalPoint, GradientGrowth,  # noqa: F401
                                            critical_point, critical_sigma_w2,
                                            gradient_growth)
from vgcore.measure.theory import mean_field as MF
from vgcore.measure.theory import normalisation as N
from vgcore.measure.theory import residual as R

__all__ = ["GradientProfile", "predicted_gradient_profile", "CriticalPoint", "critical_point",
           "critical_sigma_w2", "GradientGrowth", "gradient_growth"]


# ------------------------------------------------------------------------------ the profile

@dataclass(frozen=True)
class GradientProfile:
    """The predicted gradient profile of a network (see :func:`predicted_gradient_profile`).

    Hidden layers are numbered ``l = 1 .. H`` from the input side; every array has one entry
    per hidden layer, index ``l - 1``, except ``sigma_w2`` and ``sigma_b2`` (one per weight
    layer, ``H + 1``).  When ``applies`` is False the arrays are NaN and ``reason`` says why.

    Attributes
    ----------
    q0 : float
        Mean squared entry of the input.
    widths : ndarray of int, (H,)
        Hidden widths ``n_l`` (all 1 for a spec without ``width``: per-unit values then).
    sigma_w2 : ndarray, (H + 1,)
        ``fan_in * Var(W_l)`` of each weight layer, output layer last (0 for zero-initialised
        residual branches).
    sigma_b2 : ndarray, (H + 1,)
        ``Var(b_l)`` of each layer.
    q : ndarray, (H,)
        ``q_l``, the second moment of hidden layer l's pre-activations ``h_l`` (before any
        normalisation).
    chi : ndarray, (H,)
        ``E||delta_l||^2 = chi_l E||delta_{l+1}||^2`` with ``delta_{H+1} = dL/dy`` the output
        gradient; for a plain layer ``chi_l = sigma_w2[l] E[phi_l'(sqrt(q_l) z)^2]``.
    delta_sq : ndarray, (H,)
        ``E||delta_l||^2 / E||delta_H||^2 = chi_l ... chi_{H-1}`` (1 at ``l = H``): the squared
        norm of the error vgcore measures in :attr:`GradientFlow.delta_norm
        <vgcore.flow.GradientFlow>` (``dL/dz_l``, which is ``dL/dh_l`` without
        normalisation), summed over units and examples, relative to the last hidden layer.
        NaN when the last hidden layer's is 0 (zero-initialised relu branches).
    delta_sq_vs_output : ndarray, (H,)
        ``E||delta_l||^2 / E||dL/dy||^2``.
    q_hat : ndarray, (H,)
        The second moment of what the activation sees: ``q`` without normalisation,
        ``q / (q + eps)`` with layer norm, 1 with batch norm, 0 for a zero-initialised branch.
    second_moment, mean : ndarray, (H,)
        ``Q_l`` and ``M_l``: the mean square and the mean of the entries of the layer's output
        ``x_l`` (after the residual sum and dropout).
    log_mean, log_var : ndarray (H,) or None
        The finite-width law of ``ln(|delta_l|^2 / |delta_H|^2)`` for one example
        (:mod:`vgcore.theory.finite_width`), where it is known; :meth:`band` draws it.
    band_reason : str or None
        Why there is no finite-width band, when there is none.
    applies : bool
        False when no theory describes this network (then every array is NaN).
    reason : str or None
        Why not, when ``applies`` is False.
    notes : tuple of str
        The assumptions and caveats of this prediction, in plain words.
    norms : tuple
        Each hidden layer's normalisation (None, "batch", "layer").
    residuals, dropouts : ndarray, (H,)
        Each hidden layer's residual scale (NaN: none) and dropout probability in effect (0 in
        evaluation mode).
    batch : float or None
        The batch size of batch norm's prediction.
    """

    q0: float
    widths: np.ndarray
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q: np.ndarray
    chi: np.ndarray
    delta_sq: np.ndarray
    delta_sq_vs_output: np.ndarray | None = None
    q_hat: np.ndarray | None = None
    second_moment: np.ndarray | None = None
    mean: np.ndarray | None = None
    log_mean: np.ndarray | None = None
    log_var: np.ndarray | None = None
    band_reason: str | None = None
    applies: bool = True
    reason: str | None = None
    notes: tuple = ()
    norms: tuple = ()
    residuals: np.ndarray | None = None
    dropouts: np.ndarray | None = None
    batch: float | None = None

    @property
    def delta_rms(self) -> np.ndarray:
        """Root mean square entry of ``delta_l`` relative to the last hidden layer's:
        ``sqrt(delta_sq * n_H / n_l)``."""
        return np.sqrt(self.delta_sq * self.widths[-1] / self.widths)

    def band(self, k=2.0):
        """The finite-width band of ``delta_sq`` for one example: ``exp(log_mean -+ k
        sqrt(log_var))``, a pair of arrays (H,); None when there is no band (see
        ``band_reason``).  ``k = 2`` holds about 95% of examples (the log is close to normal);
        a batch's measurement spreads less than one example's."""
        if self.log_mean is None:
            return None
        k = C.number(k, "k")
        sd = np.sqrt(self.log_var)
        return np.exp(self.log_mean - k * sd), np.exp(self.log_mean + k * sd)


@dataclass(frozen=True)
class _Layer:
    act: Activation
    width: int
    sw: float
    sb: float
    norm: str | None
    alpha: float | None
    zero: bool
    p: float


def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def _input_moments(X, q0, m0):
    """(q0, m0, c0) from X, or from q0 / m0 (c0 = m0^2: independent examples)."""
    if X is not None:
        if q0 is not None or m0 is not None:
            raise ValueError("q0: pass either q0 (and m0) or X (from which q0 = mean(X**2)), "
                             "not both")
        Xa = np.asarray(X)
        if Xa.dtype.kind not in "fiu" or Xa.size == 0:
            raise TypeError(f"X: expected a non-empty real array, got dtype {Xa.dtype} and "
                            f"shape {Xa.shape}")
        Xa = Xa.astype(np.float64)
        if not np.all(np.isfinite(Xa)):
            raise ValueError("X: expected finite values, got NaN or Inf entries")
        Xa = Xa.reshape(Xa.shape[0], -1) if Xa.ndim > 1 else Xa.reshape(1, -1)
        q0 = float(np.mean(Xa * Xa))
        m0 = float(np.mean(Xa))
        n, d = Xa.shape
        if n > 1:
            col = Xa.sum(axis=0)
            c0 = float((col @ col - np.sum(Xa * Xa)) / (n * (n - 1) * d))
        else:
            c0 = m0 * m0
        return q0, m0, c0
    q0 = 1.0 if q0 is None else C.number(q0, "q0")
    m0 = 0.0 if m0 is None else _real(m0, "m0")
    return q0, m0, m0 * m0


def _net_layers(net, training):
    needed = ("sizes", "activations", "init", "sigma_w", "sigma_b")
    if not all(hasattr(net, a) for a in needed):
        raise TypeError(f"net_or_activation: expected a vgcore.MLP (or ReferenceMLP) or an "
                        f"activation name, got {type(net).__name__}")
    sizes = tuple(int(s) for s in net.sizes)
    H = len(sizes) - 2
    if H < 1:
        raise ValueError(f"net_or_activation: the network has no hidden layer "
                         f"(sizes={list(sizes)})")
    norms = tuple(getattr(net, "norms", (None,) * (H + 1)))[:H]
    residuals = tuple(getattr(net, "residuals", (None,) * (H + 1)))[:H]
    dropouts = tuple(getattr(net, "dropouts", (0.0,) * (H + 1)))[:H]
    zero_init = getattr(net, "residual_init", None) == "zero"
    if training is None:
        training = bool(getattr(net, "training", True))
    elif not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training: expected True, False or None, got {training!r}")
    sb = 0.0 if net.sigma_b is None else float(net.sigma_b) ** 2
    layers = []
    for l in range(H):
        zero = zero_init and residuals[l] is not None
        sw = 0.0 if zero else MF.effective_sigma_w2(net.init, sizes[l], sizes[l + 1],
                                                    net.sigma_w)
        layers.append(_Layer(resolve_activation(net.activations[l]), sizes[l + 1], sw,
                             0.0 if zero else sb, norms[l],
                             None if residuals[l] is None else float(residuals[l]), zero,
                             float(dropouts[l]) if training else 0.0))
    sw_out = MF.effective_sigma_w2(net.init, sizes[H], sizes[H + 1], net.sigma_w)
    return layers, sw_out, sb, bool(training), net.init, float(getattr(net, "norm_eps", 1e-5))


def _spec_layers(activation, depth, sigma_w2, sigma_b2, norm, residual, residual_init,
                 dropout, width):
    act = resolve_activation(activation)
    H = C.integer(depth, "depth", 1)
    sw = C.number(sigma_w2, "sigma_w2")
    sb = C.number(sigma_b2, "sigma_b2")
    norm = C.norm_kind(norm)
    alpha = R.residual_alpha(residual, H)
    if residual_init not in (None, "zero"):
        raise ValueError(f"residual_init: expected None or 'zero', got {residual_init!r}")
    zero = residual_init == "zero" and alpha is not None
    p = C.probability(dropout, "dropout")
    n = 1 if width is None else C.integer(width, "width", 1)
    layers = [_Layer(act, n, 0.0 if zero else sw, 0.0 if zero else sb, norm, alpha, zero, p)
              for _ in range(H)]
    return layers, sw, sb


def _run(layers, sw_out, q0, m0, c0, batch, eps, quad, mean_free=False):
    """The forward and backward recursions (module docstring); returns a dict of arrays, or
    a string: the reason no theory applies."""
    H = len(layers)
    need_cross = any(L.norm == "batch" for L in layers)
    out = {k: np.empty(H) for k in ("q", "q_hat", "second_moment", "mean")}
    per = []
    Q, Cx, M = q0, c0, m0
    for l, L in enumerate(layers):
        act = L.act
        scale, kap = 1.0, None
        if L.zero:
            f0 = float(C.phi(act, np.zeros(1))[0])
            d0 = float(C.dphi(act, np.zeros(1))[0])
            q = qh = 0.0
            s, r, m, mu1, nu = f0 * f0, f0 * f0, f0, d0 * d0, d0 * d0
        else:
            q = L.sw * Q + L.sb
            if L.norm == "batch":
                if batch < 4:
                    return (f"batch norm with a batch of {batch:g}: E[1/Var_batch(h)] diverges "
                            f"for B <= 3 as eps -> 0, so the gradient's size is set by "
                            f"norm_eps, which the theory does not model")
                var = Q - Cx
                if not var > 1e-12 * max(abs(Q), 1e-300):
                    return (f"batch norm at hidden layer {l + 1}: the examples of the batch "
                            f"are identical at its input (no spread to normalise), so the "
                            f"batch statistics are degenerate")
                st = N._bn_stats(act, batch)
                s, r, m, mu1, nu = (st.second_moment, st.cross_moment, st.mean, st.mu1,
                                    st.nu)
                kap = (st.kappa1, st.kappa2)
                scale = 1.0 / var if math.isinf(batch) else batch / (var * (batch - 3))
                qh = 1.0
            else:
                qh = q if L.norm is None else q / (q + eps)
                m, s, mu1 = C.expect1_many(
                    [lambda h, a=act: C.phi(a, h), lambda h, a=act: C.phi(a, h) ** 2,
                     lambda h, a=act: C.dphi(a, h) ** 2], qh, quad)
                if qh == 0.0:
                    f0 = float(C.phi(act, np.zeros(1))[0])
                    m, s = f0, f0 * f0
                r = nu = math.nan
                if need_cross:
                    c = 1.0 if q <= 0 else min(1.0, max(-1.0, (L.sw * Cx + L.sb) / q))
                    qq = max(qh, C.Q_FLOOR)
                    f = lambda h, a=act: C.phi(a, h)            # noqa: E731
                    d = lambda h, a=act: C.dphi(a, h)           # noqa: E731
                    r = C.expect2(f, f, qq, c, quad)
                    nu = C.expect2(d, d, qq, c, quad)
                if L.norm == "layer":
                    scale = 1.0 / (q + eps)
        Q, Cx, M = R.forward_step(Q, Cx, 0.0 if mean_free else M, s, r, m, L.alpha)
        Q /= 1.0 - L.p
        out["q"][l], out["q_hat"][l], out["second_moment"][l], out["mean"][l] = q, qh, Q, M
        per.append((mu1, nu, scale, kap))
    D = np.empty(H)
    T = sw_out
    S = T
    for l in range(H - 1, -1, -1):
        L = layers[l]
        mu1, nu, scale, kap = per[l]
        keep = 1.0 - L.p
        Tt, St = T / keep, S + T * L.p / keep
        a2 = 1.0 if L.alpha is None else L.alpha * L.alpha
        D[l] = a2 * Tt * mu1
        if L.zero:
            t_branch = s_branch = 0.0
        elif kap is not None:
            t_branch = a2 * scale * (kap[0] * Tt + kap[1] * St)   # sigma_w2 cancels
            s_branch = 0.0
        else:
            t_branch = L.sw * D[l] * scale
            s_branch = (L.sw * a2 * (Tt * mu1 + (St - Tt) * nu) * scale) if need_cross else 0.0
        if L.alpha is None:
            T, S = t_branch, s_branch
        else:
            T, S = t_branch + Tt, s_branch + St
    out["delta_sq_vs_output"] = D
    return out


def _notes(layers, batch, res):
    notes = []
    kinds = {L.norm for L in layers}
    if "batch" in kinds:
        acts = sorted({L.act.name for L in layers if L.norm == "batch"})
        lam = ", ".join(f"{a}: {N.batch_norm_gradient_factor(a, batch):.4g}" for a in acts)
        notes.append(f"batch norm (B = {batch:g}): the examples of a batch are exchangeable at "
                     f"infinite width (Yang et al. 2019); batch norm gives every layer the same "
                     f"normalised input, which rescues the forward signal, yet deep in the "
                     f"stack E||delta||^2 grows by lambda(B) per layer towards the input ({lam}) "
                     f"at any sigma_w2: deep batch-normalised stacks explode backwards at "
                     f"initialisation")
        notes.append("batch norm: the output gradient's rows are taken as uncorrelated across "
                     "the batch (true for a random dL/dy; close for cross-entropy at "
                     "initialisation)")
    if "layer" in kinds:
        notes.append("layer norm: mean field over the units; at width n the projection it "
                     "makes adds about 1/n per layer, not included")
    if any(L.alpha is not None for L in layers):
        if abs(res["mean"][-1]) > 0.1 * math.sqrt(max(res["second_moment"][-1], 0.0)):
            notes.append("residual: the branches' outputs have a non-zero mean, which the "
                         "stream accumulates (the forward second moment includes 2 alpha M m "
                         "per block); at finite width the measured growth of the gradient "
                         "exceeds the mean-field one, most near the input of deep stacks with "
                         "a large alpha (relu, alpha = 0.5, 16 blocks: up to 14% per block at "
                         "width 128, 7% at 512; a few percent with alpha = 1/sqrt(depth))")
        if any(L.zero for L in layers):
            notes.append("residual_init='zero': each block starts as the identity (W = b = 0), "
                         "passes the gradient through unchanged and has delta = alpha "
                         "phi'(0) dL/dx")
    if any(L.p > 0 for L in layers):
        notes.append("dropout (training mode): the masks multiply the second moment and "
                     "E||dL/dx||^2 by 1/(1-p) and decorrelate examples (Schoenholz et al. 2017)")
    return tuple(notes)


def _profile(layers, sw_out, sb_out, q0, m0, c0, batch, eps, quad, init, training,
             mean_free=False):
    H = len(layers)
    widths = np.array([L.width for L in layers], dtype=np.int64)
    sws = np.array([L.sw for L in layers] + [sw_out])
    sbs = np.array([L.sb for L in layers] + [sb_out])
    norms = tuple(L.norm for L in layers)
    alphas = np.array([math.nan if L.alpha is None else L.alpha for L in layers])
    drops = np.array([L.p for L in layers])
    common = dict(q0=q0, widths=widths, sigma_w2=sws, sigma_b2=sbs, norms=norms,
                  residuals=alphas, dropouts=drops,
                  batch=batch if "batch" in norms else None)
    reason = None
    if "batch" in norms and not training:
        reason = ("batch norm in evaluation mode normalises with its running averages, which "
                  "the theory does not track (pass training=True for the training-mode pass "
                  "at initialisation)")
    res = reason or _run(layers, sw_out, q0, m0, c0, batch, eps, quad, mean_free)
    if isinstance(res, str):
        nan = np.full(H, np.nan)
        return GradientProfile(q=nan, chi=nan, delta_sq=nan, delta_sq_vs_output=nan,
                               q_hat=nan, second_moment=nan, mean=nan, applies=False,
                               reason=res, band_reason="no theory applies", **common)
    D = res.pop("delta_sq_vs_output")
    chi = np.empty(H)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi[:-1] = D[:-1] / D[1:]
        chi[-1] = D[-1]
        delta_sq = D / D[-1] if D[-1] > 0 else np.full(H, np.nan)
    notes = list(_notes(layers, batch, res))
    if not D[-1] > 0:
        notes.append("the last hidden layer's delta is predicted to be exactly 0, so delta_sq "
                     "(relative to it) is NaN; delta_sq_vs_output holds the prediction")
    plain = all(L.norm is None and L.alpha is None and L.p == 0 and not L.zero for L in layers)
    log_mean = log_var = None
    band_reason = FW._band_reason([L.act for L in layers], list(widths), init, plain)
    if band_reason is None and int(widths.min()) < 2:
        band_reason = "the finite-width band needs the widths (pass width= with a spec)"
    if band_reason is None:
        log_mean, log_var = FW.gradient_log_moments([L.act for L in layers], list(widths),
                                                    list(sws), init)
        extra = FW.band_note(init)
        if extra:
            notes.append(extra)
    return GradientProfile(chi=chi, delta_sq=delta_sq, delta_sq_vs_output=D, log_mean=log_mean,
                           log_var=log_var, band_reason=band_reason, notes=tuple(notes),
                           **res, **common)


def predicted_gradient_profile(net_or_activation, depth=None, sigma_w2=None, sigma_b2=0.0, *,
                               q0=None, X=None, batch=None, training=None, norm=None,
                               residual=None, residual_init=None, dropout=0.0, norm_eps=1e-5,
                               m0=None, width=None, init="normal", quadrature="composite"):
    """The predicted ``E||delta_l||^2`` per hidden layer of a network at initialisation,
    relative to the last hidden layer, for every network vgcore builds.

    Plain layers follow the mean-field theory of :mod:`vgcore.theory.mean_field` (the
    transient ``q_l`` layer by layer, not just ``q*``); batch norm, layer norm, residual
    blocks (a scale, ``"auto"``, zero-initialised branches) and dropout follow
    :mod:`~vgcore.theory.normalisation`, :mod:`~vgcore.theory.residual` and
    :mod:`~vgcore.theory.dropout`, in any combination, through the recursion of this module's
    docstring.  ``delta_l`` is what vgcore measures in ``GradientFlow.delta_norm``: ``dL/dh_l``,
    or ``dL/dz_l`` (the normalised pre-activation) in a normalised layer.  Norms are over all
    units of the layer and all examples, so unequal widths are accounted for by each layer's
    ``sigma_w2`` (:func:`effective_sigma_w2`); :attr:`GradientProfile.delta_rms` gives per-unit
    values.  For plain relu and linear stacks the profile also carries the finite-width law
    of one example's log-profile (:mod:`vgcore.theory.finite_width`, :meth:`GradientProfile.
    band`).

    Call it with a network, ``predicted_gradient_profile(net, X=X, batch=64)``, or with a spec,
    ``predicted_gradient_profile("tanh", depth=20, sigma_w2=1.5, sigma_b2=0.05, q0=1.0,
    norm="batch", batch=64)``.

    Parameters
    ----------
    net_or_activation : vgcore.MLP, vgcore.reference.ReferenceMLP, or str / vgcore.Activation
        A network (its sizes, per-layer activations, ``init``, ``sigma_w``, ``sigma_b``,
        ``norms``, ``residuals``, ``residual_init``, ``dropouts``, ``norm_eps`` and mode give
        every layer; its current weights are not used: the prediction is for the network as
        initialised), or the activation of a spec.
    depth : int >= 1
        Spec only: the number of hidden layers (all the same width).
    sigma_w2, sigma_b2 : float >= 0
        Spec only: every layer's ``fan_in Var(W)`` (the output layer's too) and ``Var(b)``.
    q0 : float >= 0, optional
        Mean squared entry of the input; default 1 (standardised inputs).
    X : ndarray (n, n_in), optional
        Inputs, from which ``q0 = mean(X**2)``, the mean entry ``m0`` and, for batch norm, the
        mean product of two different rows; not together with ``q0`` or ``m0``.
    batch : int >= 2 or math.inf
        The batch size of the training-mode pass; needed when the network has batch norm.
    training : bool, optional
        Network only: predict the training-mode pass (dropout on, batch statistics) or the
        evaluation-mode pass; default the network's current mode.
    norm, residual, residual_init, dropout, norm_eps : spec only
        As the arguments of :class:`vgcore.MLP` (one value for every hidden layer).
    m0 : float, optional
        Spec only: the mean entry of the input (default 0); it matters for residual blocks
        from the first hidden layer.
    width : int, optional
        Spec only: the hidden width, for the finite-width band.
    init : str
        Spec only: the initialiser the band assumes (default ``"normal"``: Gaussian weights).
    quadrature : "composite" or int
        As in :func:`variance_map` (batch norm's sphere integrals always use their own rule).

    Returns
    -------
    GradientProfile
        With ``applies=False`` and the ``reason`` when no theory describes the network (batch
        norm in evaluation mode, a batch of 3 or fewer, identical examples).

    Raises
    ------
    ValueError, TypeError
        For bad arguments, and when a network with batch norm is given no ``batch``.
    """
    quad = C.quadrature(quadrature)
    m0_given = m0 is not None
    q0, m0, c0 = _input_moments(X, q0, m0)
    if isinstance(net_or_activation, (str, Activation)):
        if depth is None or sigma_w2 is None:
            raise ValueError("depth, sigma_w2: a spec needs the activation, depth and "
                             f"sigma_w2 (got depth={depth!r}, sigma_w2={sigma_w2!r})")
        if training is not None:
            raise ValueError("training: a spec describes the training-mode pass; pass "
                             "dropout=0 (and no batch norm) for evaluation mode")
        layers, sw_out, sb_out = _spec_layers(net_or_activation, depth, sigma_w2, sigma_b2,
                                              norm, residual, residual_init, dropout, width)
        eps = N._eps(norm_eps)
        init = init_name(init)
        train = True
    else:
        spec_args = dict(depth=depth, sigma_w2=sigma_w2, norm=norm, residual=residual,
                         residual_init=residual_init, width=width)
        given = [k for k, v in spec_args.items() if v is not None]
        if sigma_b2 != 0.0:
            given.append("sigma_b2")
        if dropout != 0.0:
            given.append("dropout")
        if norm_eps != 1e-5:
            given.append("norm_eps")
        if m0_given:
            given.append("m0")
        if init != "normal":
            given.append("init")
        if given:
            raise ValueError(f"{', '.join(given)}: these describe a spec; a network carries "
                             f"its own (got a network and spec arguments)")
        layers, sw_out, sb_out, train, init, eps = _net_layers(net_or_activation, training)
    if batch is not None:
        batch = C.batch_size(batch)
    if any(L.norm == "batch" for L in layers) and train and batch is None:
        raise ValueError("batch: the network has batch norm, whose prediction depends on the "
                         "batch size; pass batch=B (math.inf for the large-batch limit)")
    return _profile(layers, sw_out, sb_out, q0, m0, c0, batch, eps, quad, init, train)

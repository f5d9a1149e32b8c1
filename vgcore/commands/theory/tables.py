"""``vgcore theory``'s numbers: the tables of a plain stack (chi_1, depth scales, the critical
line, predicted gradient profiles), the input-output Jacobian's spectrum (predicted and
measured), batch norm's growth over batch sizes and the residual stream, each added to the
result dict ``res`` that ``run`` prints or writes as JSON."""
from __future__ import annotations

import math

import numpy as np

from vgcore.commands._common import CommandError

BATCHES = (4, 8, 16, 32, 64, 128, 256, 1024)


def _grid(lo, hi, n, name):
    if lo > hi:
        raise CommandError(f"{name}: expected LO <= HI, got {lo:g} > {hi:g}")
    if n == 1 or lo == hi:
        return np.array([lo])
    return np.linspace(lo, hi, n)


def _critical(T, act, sb, q0):
    try:
        return T.critical_sigma_w2(act, sb, q0=q0)
    except RuntimeError:
        return None


def _profiles(args, res, T, sws, **family):
    out = []
    for sw in sws:
        g = T.predicted_gradient_profile(args.activation, depth=args.depth, sigma_w2=float(sw),
                                         sigma_b2=args.sigma_b2, q0=args.q0, width=args.width,
                                         **family)
        band = g.band(2.0)
        out.append(dict(sigma_w2=float(sw), sigma_b2=args.sigma_b2, q=g.q, chi=g.chi,
                        delta_sq=g.delta_sq, delta_rms=g.delta_rms,
                        first_over_last=float(g.delta_sq[0]),
                        band_low=None if band is None else band[0],
                        band_high=None if band is None else band[1]))
        for n in g.notes:
            if n not in res["notes"]:
                res["notes"].append(n)
        if args.width is not None and band is None and g.band_reason and \
                g.band_reason not in res["notes"]:
            res["notes"].append(g.band_reason)
    return out


def _plain_tables(args, res, T, norm):
    act, sb, q0, p = args.activation, args.sigma_b2, args.q0, args.dropout
    eps = args.norm_eps
    if norm is None and p == 0.0:
        crit = _critical(T, act, sb, q0)
        reason = None if crit is not None else (
            f"{act} has no edge of chaos at sigma_b2={sb:g} (chi_1 does not cross 1 for "
            f"sigma_w2 in [1e-8, 1e8])")
    else:
        cp = T.critical_point(act, sb, norm=norm, dropout=p, q0=q0, norm_eps=eps)
        crit = cp.sigma_w2 if math.isfinite(cp.sigma_w2) else None
        reason = cp.reason
        if cp.note:
            res["notes"].append(cp.note)
    if reason:
        res["notes"].append(reason)
    if args.sigma_w2_range is not None:
        sw_grid = _grid(*args.sigma_w2_range, args.sigma_w2_points, "--sigma-w2-range")
    elif crit is not None:
        sw_grid = _grid(0.5 * crit, 1.5 * crit, args.sigma_w2_points, "--sigma-w2-range")
    else:
        sw_grid = _grid(0.5, 3.0, args.sigma_w2_points, "--sigma-w2-range")
    sb_grid = _grid(*args.sigma_b2_range, args.sigma_b2_points, "--sigma-b2-range")

    table = []
    for sw in sw_grid:
        if norm == "layer":
            q = T.layer_norm_fixed_point(act, float(sw), sb, q0, eps=eps, dropout=p)
            x1 = T.layer_norm_chi1(act, float(sw), sb, q=q, eps=eps, dropout=p)
            xi = math.inf if abs(x1 - 1) <= 1e-12 else (-1.0 / math.log(x1) if x1 > 0 else 0.0)
            table.append(dict(sigma_w2=float(sw), q_star=q, q_hat=q / (q + eps), chi_1=x1,
                              xi_grad=xi, phase="critical" if abs(x1 - 1) <= 1e-12
                              else "ordered" if x1 < 1 else "chaotic"))
        else:
            d = T.depth_scales(act, float(sw), sb, q0=q0, dropout=p)
            table.append(dict(sigma_w2=float(sw), q_star=d.q_star, chi_1=d.chi_1,
                              c_star=d.c_star, chi_c=d.chi_c, xi_c=d.xi_c, xi_grad=d.xi_grad,
                              phase=d.phase))
    if norm is None and p == 0.0:
        chi_grid = np.array([[T.chi1(act, float(sw), float(b), q0=q0) for b in sb_grid]
                             for sw in sw_grid])
        line = [dict(sigma_b2=float(b), sigma_w2=_critical(T, act, float(b), q0))
                for b in sb_grid]
    else:
        chi_grid = np.array([[T.gradient_growth(act, float(sw), float(b), norm=norm, dropout=p,
                                                q0=q0, norm_eps=eps).factor
                              for b in sb_grid] for sw in sw_grid])
        line = []
        for b in sb_grid:
            v = T.critical_point(act, float(b), norm=norm, dropout=p, q0=q0,
                                 norm_eps=eps).sigma_w2
            line.append(dict(sigma_b2=float(b), sigma_w2=v if math.isfinite(v) else None))
    prof_sw = args.profile_sigma_w2 or ([0.8 * crit, crit, 1.25 * crit] if crit is not None
                                        else [0.5, 1.0, 2.0])
    profiles = _profiles(args, res, T, prof_sw, norm=norm, dropout=p, norm_eps=eps)
    if any(r["q_star"] is not None and math.isinf(r["q_star"]) for r in table):
        res["notes"].append("q* = inf (null in JSON): the variance diverges there; chi_1 is "
                            "then its q -> inf limit")
    res.update(critical_sigma_w2=crit, critical_reason=reason,
               grid=dict(sigma_w2=sw_grid, sigma_b2=sb_grid, chi_1=chi_grid), table=table,
               critical_line=line, profiles=profiles)
    if p > 0 and norm is None:
        ref = crit if crit is not None else float(sw_grid[len(sw_grid) // 2])
        e = T.dropout_effect(act, ref, sb, p, q0=q0)
        res["dropout_effect"] = dict(
            sigma_w2=ref, p=p,
            without=dict(q_star=e.without.q_star, chi_1=e.without.chi_1,
                         c_star=e.without.c_star, xi_c=e.without.xi_c),
            with_dropout=dict(q_star=e.with_dropout.q_star, chi_1=e.with_dropout.chi_1,
                              c_star=e.with_dropout.c_star, xi_c=e.with_dropout.xi_c),
            critical_sigma_w2_without=e.critical_sigma_w2_without,
            critical_sigma_w2_with=e.critical_sigma_w2_with)


SPECTRUM_INPUTS = 16


def _spectrum_tables(args, res, T):
    """The input-output Jacobian's squared singular values at each profile sigma_w2, for
    Gaussian and orthogonal weights: predicted (free probability) and, without dropout,
    measured on real networks of --width (default 64) square layers."""
    import vgcore as vg
    width = args.width or 64
    rows = []
    X = np.random.default_rng(0).standard_normal((SPECTRUM_INPUTS, width)) * math.sqrt(args.q0)
    for prof in res["profiles"]:
        sw = prof["sigma_w2"]
        for weights, init in (("gaussian", "normal"), ("orthogonal", "orthogonal")):
            pred = T.predicted_jacobian_spectrum(args.activation, depth=args.depth,
                                                 sigma_w2=sw, sigma_b2=args.sigma_b2,
                                                 weights=weights, q0=args.q0,
                                                 dropout=args.dropout)
            row = dict(sigma_w2=sw, weights=weights, predicted_mean=pred.mean,
                       predicted_relative_variance=pred.relative_variance,
                       predicted_zero_fraction=pred.zero_mass, isometric=pred.isometric,
                       summary=pred.summary, measured_mean=None,
                       measured_relative_variance=None, measured_width=None)
            if args.dropout == 0.0:
                net = vg.MLP([width] * (args.depth + 2), activation=args.activation,
                             init=init, sigma_w=math.sqrt(sw),
                             sigma_b=math.sqrt(args.sigma_b2) if args.sigma_b2 > 0 else None,
                             dtype="float64", seed=0)
                lam = T.jacobian_singular_values(net, X).singular_values.ravel() ** 2
                m1 = float(lam.mean())
                row.update(measured_mean=m1, measured_width=width,
                           measured_relative_variance=float(np.mean(lam * lam)) / m1 ** 2 - 1
                           if m1 > 0 else None)
            rows.append(row)
    res["spectrum"] = dict(inputs=SPECTRUM_INPUTS if args.dropout == 0.0 else 0,
                           width=width if args.dropout == 0.0 else None, rows=rows)
    if args.dropout:
        res["notes"].append("Jacobian spectrum: measured only without dropout (dropout would "
                            "draw a different mask for every row of the Jacobian)")


def _batch_norm_tables(args, res, T):
    act, B = args.activation, args.batch
    st = T.batch_norm_stats(act, B)
    by_batch = [dict(batch=b, factor=T.batch_norm_gradient_factor(act, b))
                for b in sorted(set(BATCHES) | ({B} if math.isfinite(B) else set()))]
    by_batch.append(dict(batch=math.inf, factor=T.batch_norm_gradient_factor(act, math.inf)))
    for row in by_batch:
        row["over_depth"] = row["factor"] ** (args.depth - 1)
    cp = T.critical_point(act, args.sigma_b2, norm="batch", batch=B)
    sws = args.profile_sigma_w2 or [1.0]
    profiles = _profiles(args, res, T, sws, norm="batch", batch=B, dropout=args.dropout,
                         norm_eps=args.norm_eps)
    growth = T.gradient_growth(act, 1.0, args.sigma_b2, norm="batch", batch=B,
                               dropout=args.dropout).factor
    res.update(critical_sigma_w2=None, critical_reason=cp.reason, profiles=profiles,
               batch_norm=dict(
                   factor=st.factor, factor_with_dropout=growth,
                   stats=dict(mean=st.mean, second_moment=st.second_moment,
                              cross_moment=st.cross_moment, mu1=st.mu1, nu=st.nu,
                              kappa1=st.kappa1, kappa2=st.kappa2),
                   by_batch=by_batch,
                   limits=dict(identity=None if not math.isfinite(B) else (B - 2) / (B - 3),
                               relu_large_batch=math.pi / (math.pi - 1))))


def _residual_tables(args, res, T):
    act, sb, q0 = args.activation, args.sigma_b2, args.q0
    norm = None if args.norm == "none" else args.norm
    crit = _critical(T, act, sb, q0)
    sw = args.sigma_w2 if args.sigma_w2 is not None else (crit if crit is not None else 1.0)
    alpha = T.residual_alpha(args.residual, args.depth)
    stream = T.residual_moments(act, args.depth, sw, sb, args.residual, q0=q0,
                                residual_init=args.residual_init, norm=norm, batch=args.batch,
                                dropout=args.dropout)
    cp = T.critical_point(act, sb, residual=args.residual, norm=norm, batch=args.batch,
                          dropout=args.dropout)
    sws = args.profile_sigma_w2 or [0.8 * sw, sw, 1.25 * sw]
    profiles = _profiles(args, res, T, sws, norm=norm, batch=args.batch,
                         residual=args.residual, residual_init=args.residual_init,
                         dropout=args.dropout, norm_eps=args.norm_eps)
    layers = [dict(layer=i + 1, q=stream["q"][i], second_moment=stream["second_moment"][i],
                   second_moment_without_mean=stream["second_moment_without_mean"][i],
                   mean=stream["mean"][i]) for i in range(args.depth)]
    res.update(critical_sigma_w2=None, critical_reason=cp.reason, profiles=profiles,
               residual_stream=dict(alpha=alpha, sigma_w2=sw, layers=layers))

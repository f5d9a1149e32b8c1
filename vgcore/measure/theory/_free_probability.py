"""Free multiplicative convolution for :mod:`vgcore.theory.spectrum`: the S-transform's power
series (moments <-> S-series by series reversion) and, where ``S`` is rational (every factor a
Marchenko-Pastur law or a two-atom law ``(1 - rho) delta_0 + rho delta_1``), the density of the
product law, following the root ``w(z)`` of ``z w S(w) = 1 + w`` from outside the support.
Every spectrum here is normalised to mean 1; the caller scales it.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["catalan", "series_product", "series_reversion", "s_series", "moments_from_s",
           "top_edge", "top_atom", "follow_root", "density"]


def catalan(k):
    return math.comb(2 * k, k) / (k + 1)


def series_product(a, b, K):
    return np.convolve(a, b)[:K]


def series_reversion(a):
    """``b`` with ``psi(chi(w)) = w`` to order K, for ``psi(z) = sum_{k>=1} a[k] z^k``
    (``a[0] = 0``); both arrays of length K + 1."""
    K = len(a) - 1
    b = np.zeros(K + 1)
    b[1] = 1.0 / a[1]
    for n in range(2, K + 1):
        rest, power = 0.0, b[:n + 1].copy()        # chi^1 up to order n (b[n] = 0 so far)
        for j in range(2, n + 1):
            power = np.convolve(power, b[:n + 1])[:n + 1]
            rest += a[j] * power[n]
        b[n] = -rest / a[1]
    return b


def s_series(moments):
    """The S-transform's power series (K coefficients) of a law with moments m_1..m_K."""
    K = len(moments)
    b = series_reversion(np.concatenate(([0.0], moments)))
    return np.array([b[j + 1] + b[j] for j in range(K)])


def moments_from_s(s):
    """Moments m_1..m_K of the law whose S-series is ``s`` (K coefficients)."""
    K = len(s)
    inv = np.array([(-1.0) ** i for i in range(K)])          # 1 / (1 + w)
    t = series_product(s, inv, K)
    chi = np.concatenate(([0.0], t))                         # chi(w) = w S(w) / (1 + w)
    return series_reversion(chi)[1:]


ETA_PATH = 1e-2     # the path runs at z = x (1 + 0.01 i), smooth even across atoms
ETA_MIN = 1e-13     # then, at each x, down to z = x (1 + 1e-13 i)
STEPS_PER_DECADE = 40


def top_edge(n_gauss, rhos):
    """An upper bound of the normalised support: the product of the factors' norms."""
    return 4.0 ** n_gauss * math.prod(1.0 / r for r in rhos if r < 1.0)


def top_atom(n_gauss, rhos):
    """(location, mass) of the atom at the top of the normalised spectrum, or None: with
    orthogonal weights the ``D_l^2`` laws' atoms at ``1/rho_l`` combine into one at their product
    when ``sum_l rho_l > (number of them) - 1`` (Belinschi 2003: the free multiplicative
    convolution has an atom at ``a b`` where the factors' atoms at ``a`` and ``b`` have masses
    summing to more than 1; by induction over the factors)."""
    rs = [r for r in rhos if r < 1.0]
    if n_gauss or not rs:
        return None
    mass = sum(rs) - (len(rs) - 1)
    return (top_edge(0, rs), mass) if mass > 0 else None


def follow_root(x_desc, n_gauss, rhos):
    """``w(z) = psi(1/z)`` just above ``z = x`` for each x of a descending array, for the
    normalised (mean 1) spectrum: Newton's method on ``z w S(w) = 1 + w``, continued from above
    the support along ``z = x (1 + 0.01 i)`` (in the upper half-plane ``w`` is analytic, and at
    that height smooth even near atoms), then at each x down to ``z = x (1 + 1e-13 i)``.
    ``rhos``: the D factors' ``rho`` (those equal to 1 are no factor)."""
    import cmath
    counts = {}
    for r in rhos:
        if r < 1.0:
            counts[r] = counts.get(r, 0) + 1
    pairs = [(r, k, math.log(r)) for r, k in counts.items()]
    g1 = n_gauss + 1

    def newton(w, z):
        lz = cmath.log(z)
        for _ in range(80):
            try:
                l1w = cmath.log(1.0 + w)
                f = lz + cmath.log(w) - g1 * l1w
                df = 1.0 / w - g1 / (1.0 + w)
                for r, k, lr in pairs:
                    f += k * (lr + l1w - cmath.log(r + w))
                    df += k * (1.0 / (1.0 + w) - 1.0 / (r + w))
                e = cmath.exp(f)
                step = (e - 1.0) / (e * df)
            except (ZeroDivisionError, ValueError, OverflowError):
                return w, False          # a singular point: the caller takes a smaller step
            if not cmath.isfinite(step):
                return w, False
            w -= step
            if abs(step) <= 1e-13 * abs(w):
                return w, True
        return w, False

    def bad(w_new, w):
        return w_new.imag > 1e-9 * abs(w_new) or abs(w_new - w) > 0.3 * abs(w) + 1e-12

    def jump(w_new, w):
        return w_new.imag > 1e-9 * abs(w_new) or abs(w_new - w) > 0.1 * abs(w) + 1e-12

    def descend(w, x, eta):
        """From the root at x (1 + i eta) towards the real axis (down to eta = 1e-13), with
        adaptive steps in ln(eta); the last root reached and its eta."""
        le, le_end, step = math.log(eta), math.log(ETA_MIN), math.log(10.0) / 2
        for _ in range(400):
            if le <= le_end:
                break
            le_new = max(le - step, le_end)
            w_new, ok = newton(w, x * complex(1.0, math.exp(le_new)))
            if ok and not jump(w_new, w):
                w, le = w_new, le_new
                step = min(step * 2.0, math.log(10.0))
            else:
                step *= 0.25
                if step < 1e-4:
                    break
        return w, math.exp(le)

    def newton_all(w, z, active):
        """Vectorised Newton: (roots, converged) for every entry (``active`` ones counted)."""
        conv = np.zeros(w.size, dtype=bool)
        with np.errstate(all="ignore"):
            lz = np.log(z)
            for _ in range(40):
                l1w = np.log1p(w)
                f = lz + np.log(w) - g1 * l1w
                df = 1.0 / w - g1 / (1.0 + w)
                for r, k, lr in pairs:
                    f = f + k * (lr + l1w - np.log(r + w))
                    df = df + k * (1.0 / (1.0 + w) - 1.0 / (r + w))
                e = np.exp(f)
                step = (e - 1.0) / (e * df)
                step = np.where(np.isfinite(step), step, 0.0)
                w = w - step
                conv = np.abs(step) <= 1e-13 * np.abs(w)
                if np.all(conv | ~active):
                    break
        return w, conv & np.isfinite(w)

    # 1. the root along z = x (1 + 0.01 i), 40 points a decade, from far above the support
    x = np.asarray(x_desc, dtype=np.float64)
    lx = math.log(max(1e3 * top_edge(n_gauss, rhos), float(x[0]) * 2.0))
    goal = math.log(float(x[-1]))
    w, _ = newton(complex(math.exp(-lx), 0.0), math.exp(lx) * complex(1.0, ETA_PATH))
    w_prev, lx_prev = w, lx
    h_max = math.log(10.0) / STEPS_PER_DECADE
    h = h_max
    path_lx, path_w = [lx], [w]
    while lx > goal:
        lx_new = max(lx - h, goal)
        dl = lx - lx_prev
        guess = w if dl == 0 else w + (w - w_prev) * (lx_new - lx) / dl
        z = math.exp(lx_new) * complex(1.0, ETA_PATH)
        w_new, ok = newton(guess, z)
        if not ok or bad(w_new, w):
            w_new, ok = newton(w, z)
            if not ok or bad(w_new, w):
                h *= 0.5
                if h < 1e-12:
                    raise RuntimeError(f"density: the root could not be followed to "
                                       f"x = {math.exp(lx_new):.6g} (normalised)")
                continue
        w_prev, lx_prev, w, lx = w, lx, w_new, lx_new
        path_lx.append(lx)
        path_w.append(w)
        h = min(2.0 * h, h_max)
    # 2. at every x, the path's root interpolated and polished (one by one where that fails)
    plx, pw = np.array(path_lx[::-1]), np.array(path_w[::-1])
    lxs = np.log(x)
    guess = np.interp(lxs, plx, pw.real) + 1j * np.interp(lxs, plx, pw.imag)
    w, ok = newton_all(guess, x * complex(1.0, ETA_PATH), np.ones(x.size, dtype=bool))
    ok &= np.abs(w - guess) <= 0.1 * np.abs(guess) + 1e-12
    for i in np.flatnonzero(~ok):
        k = int(np.clip(np.searchsorted(plx, lxs[i]), 1, plx.size - 1))
        wi, lxi = pw[k], plx[k]                 # walk down from the path point above x
        for t in np.linspace(lxi, lxs[i], 33)[1:]:
            wi, _ = newton(wi, math.exp(t) * complex(1.0, ETA_PATH))
        w[i] = wi
    # 3. at every x, down towards the real axis: all together on a fixed schedule of eta, then
    # one by one, with adaptive steps, where the schedule's steps were too coarse (near edges)
    eta_at = np.full(x.size, ETA_PATH)
    live = np.ones(x.size, dtype=bool)
    for eta in np.geomspace(ETA_PATH, ETA_MIN, 45)[1:]:
        wn, conv = newton_all(w.copy(), x * complex(1.0, eta), live)
        good = live & conv & (wn.imag <= 1e-9 * np.abs(wn)) \
            & (np.abs(wn - w) <= 0.1 * np.abs(w) + 1e-12)
        w = np.where(good, wn, w)
        eta_at = np.where(good, eta, eta_at)
        live &= good
    for i in np.flatnonzero(~live):
        w[i], eta_at[i] = descend(w[i], float(x[i]), float(eta_at[i]))
    return w, eta_at


def density(x, n_gauss, rhos):
    """Density of the continuous part of the normalised (mean 1) spectrum at x > 0 (any
    order): ``-Im G / pi`` just above the axis, less the Lorentzian tails of the atoms at 0
    and at the top."""
    if n_gauss == 0 and all(r >= 1.0 for r in rhos):
        return np.zeros_like(x)                     # all the mass sits at 1: an atom
    order = np.argsort(-x)
    xs = x[order]
    w, eta = follow_root(xs, n_gauss, rhos)
    d = -w.imag / (math.pi * xs)
    atoms = [(0.0, max([1.0 - r for r in rhos] + [0.0]))]
    top = top_atom(n_gauss, rhos)
    if top is not None:
        atoms.append(top)
    for loc, mass in atoms:
        y = eta * xs
        d -= mass * y / (math.pi * ((xs - loc) ** 2 + y ** 2))
    out = np.empty_like(x)
    out[order] = np.maximum(0.0, d)
    return out

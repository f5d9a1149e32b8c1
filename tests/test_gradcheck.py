"""Finite-difference gradient check (float64, central differences) of the engine's backward
pass, for every activation and every loss, on parameters and on the input X.

The derivative is estimated with the fourth-order central stencil
(-f(+2h) + 8 f(+h) - 8 f(-h) + f(-2h)) / 12h, h = 1e-4: truncation error ~h^4 and rounding
error ~1e-16/h, both far below the 1e-6 relative tolerance.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import ACTIVATION_NAMES, KINKS, LOSS_NAMES, make_target, num_threads

H = 1e-4
STEPS = (2 * H, H, -H, -2 * H)
WEIGHTS = (-1.0, 8.0, -8.0, 1.0)
REL_TOL = 1e-6
SIZES = [5, 7, 6, 4]
BATCH = 3

ACTIVATION_SPECS = [pytest.param(vg.Activation(n), id=n) for n in ACTIVATION_NAMES] + [
    pytest.param(vg.Activation("leaky_relu", slope=0.3), id="leaky_relu-slope0.3"),
    pytest.param(vg.Activation("elu", alpha=0.5), id="elu-alpha0.5"),
]


def _loss(net, X, loss, target):
    return vg.losses.get(loss)(net.forward(X), target)[0]


def _kink_sides(net, X):
    """For each hidden unit of each sample, which side of each kink its pre-activation is on
    (computed with the NumPy reference, so independent of the engine)."""
    ref = R.ReferenceMLP.from_network(net)
    ref.forward(X)
    sides = []
    for act, h in zip(net.activations[:-1], ref.preactivations[:-1]):
        for k in KINKS.get(act.name, ()):
            sides.append(h > k)
    return np.concatenate([s.ravel() for s in sides]) if sides else np.zeros(0, bool)


def _stencil(values):
    return sum(w * v for w, v in zip(WEIGHTS, values)) / (12 * H)


def _rel_err(fd, an, scale):
    # relative error, with a floor at 1e-3 of the gradient's scale so that entries that are
    # (almost) zero are compared absolutely
    return abs(fd - an) / max(abs(fd), abs(an), 1e-3 * scale)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", ACTIVATION_SPECS)
def test_backward_matches_central_differences(act, loss, threads):
    rng = np.random.default_rng(zlib.crc32(f"{act!r} {loss}".encode()))
    net = vg.MLP(SIZES, activation=act, init="glorot_normal", dtype="float64", seed=7,
                 sigma_b=0.5)
    X = rng.standard_normal((BATCH, SIZES[0]))
    target = make_target(loss, BATCH, SIZES[-1], np.float64, rng)
    kinked = act.name in KINKS

    with num_threads(threads):
        out = net.forward(X)
        _, dout = vg.losses.get(loss)(out, target)
        dX = net.backward(dout).copy()
        grads = net.grads.copy()
        base_sides = _kink_sides(net, X) if kinked else None

        checked = skipped = 0
        failures = []
        gscale = float(np.max(np.abs(grads)))
        for i in rng.choice(net.n_params, size=40, replace=False):
            old = net.params[i]
            values, crossed = [], False
            for step in STEPS:
                net.params[i] = old + step
                values.append(_loss(net, X, loss, target))
                if kinked and not np.array_equal(_kink_sides(net, X), base_sides):
                    crossed = True
            net.params[i] = old
            if crossed:
                skipped += 1          # the perturbation crosses a kink: no derivative there
                continue
            fd = _stencil(values)
            checked += 1
            if _rel_err(fd, grads[i], gscale) > REL_TOL:
                failures.append(("param", int(i), fd, grads[i]))

        xscale = float(np.max(np.abs(dX)))
        for flat in rng.choice(X.size, size=8, replace=False):
            idx = np.unravel_index(flat, X.shape)
            values, crossed = [], False
            for step in STEPS:
                Xs = X.copy()
                Xs[idx] += step
                values.append(_loss(net, Xs, loss, target))
                if kinked and not np.array_equal(_kink_sides(net, Xs), base_sides):
                    crossed = True
            if crossed:
                skipped += 1
                continue
            fd = _stencil(values)
            checked += 1
            if _rel_err(fd, dX[idx], xscale) > REL_TOL:
                failures.append(("X", idx, fd, dX[idx]))

    assert not failures, f"{act} {loss}: finite differences disagree: {failures[:5]}"
    assert checked >= 32, f"only {checked} coordinates checked ({skipped} crossed a kink)"


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_parameter_gradient_matches_central_differences_deep_tanh(loss):
    # a deeper, narrower smooth network: every parameter, every input
    rng = np.random.default_rng(3)
    sizes = [3, 4, 4, 4, 4, 2]
    net = vg.MLP(sizes, activation="tanh", init="orthogonal", sigma_w=1.3, dtype="float64",
                 seed=2, sigma_b=0.3)
    X = rng.standard_normal((2, 3))
    target = make_target(loss, 2, 2, np.float64, rng)
    out = net.forward(X)
    _, dout = vg.losses.get(loss)(out, target)
    dX = net.backward(dout).copy()
    grads = net.grads.copy()
    fd = np.empty_like(grads)
    for i in range(net.n_params):
        old = net.params[i]
        values = []
        for step in STEPS:
            net.params[i] = old + step
            values.append(_loss(net, X, loss, target))
        net.params[i] = old
        fd[i] = _stencil(values)
    np.testing.assert_allclose(grads, fd, rtol=REL_TOL, atol=1e-9 * np.max(np.abs(fd)))
    fdx = np.empty_like(X)
    for idx in np.ndindex(*X.shape):
        values = []
        for step in STEPS:
            Xs = X.copy()
            Xs[idx] += step
            values.append(_loss(net, Xs, loss, target))
        fdx[idx] = _stencil(values)
    np.testing.assert_allclose(dX, fdx, rtol=REL_TOL, atol=1e-9 * np.max(np.abs(fdx)))

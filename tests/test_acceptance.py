"""The remedies do what the literature says, on vgcore's own networks."""
import math

import numpy as np

import vgcore as vg


def _sgd_steps(net, X, y, lr, steps, batch=64, seed=0):
    opt = vg.optim.SGD(net, lr=lr)
    rng = np.random.default_rng(seed)
    losses = [net.train_step(X[idx], y[idx], "cross_entropy", opt)
              for idx in (rng.integers(0, len(X), batch) for _ in range(steps))]
    return float(np.mean(losses[-50:]))


def test_deep_relu_network_trains_with_he_init_and_stalls_with_glorot():
    """He et al. 2015: 30 hidden ReLU layers of 128, plain SGD lr 0.01, batch 64, 1000 steps
    on a 10-class Gaussian mixture.  Glorot's variance (1/fan_in for square layers) halves the
    signal at every ReLU layer; He's (2/fan_in) keeps it."""
    X, y = vg.datasets.gaussian_mixture(4096, 128, 10, seed=0)
    sizes = [128] + [128] * 30 + [10]
    he = _sgd_steps(vg.MLP(sizes, activation="relu", init="he_normal", seed=0), X, y, 0.01, 1000)
    glorot = _sgd_steps(vg.MLP(sizes, activation="relu", init="glorot_normal", seed=0), X, y,
                        0.01, 1000)
    assert he < 0.1 * math.log(10)
    assert abs(glorot - math.log(10)) < 0.05


def test_batch_norm_makes_a_deep_sigmoid_network_learn():
    """Ioffe & Szegedy 2015: 10 hidden sigmoid layers under the standard initialisation do not
    learn; the same network with batch normalisation does."""
    X, y = vg.datasets.gaussian_mixture(4096, 64, 10, seed=0)
    results = {}
    for norm in (None, "batch"):
        net = vg.MLP([64] + [64] * 10 + [10], activation="sigmoid", init="standard", seed=0,
                     norm=norm)
        hist = vg.fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.1), epochs=16, batch_size=64,
                      seed=0, verbose=0)
        results[norm] = (hist.as_dict()["loss"][-1], vg.evaluate(net, X, y)["accuracy"])
    plain_loss, plain_acc = results[None]
    bn_loss, bn_acc = results["batch"]
    assert plain_loss > 0.95 * math.log(10) and plain_acc < 0.2
    assert bn_loss < 0.1 and bn_acc > 0.95

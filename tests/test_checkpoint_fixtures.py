"""Checkpoints written by earlier versions of vgcore still load, with the same meaning.

``tests/data/checkpoint_v1_*.npz`` were written by vgcore 0.1.0 (format version 1) before the
package was split into modules (issue 12) and are never rewritten: the tests below pin what
they hold, so a change of the reader (or of the parameter layout, the activation ids, the
optimiser hyper-parameters or the batch-norm buffers) that misreads an old file fails here.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import vgcore as vg
from vgcore.train import checkpoint as ckpt

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ADAM32 = os.path.join(DATA, "checkpoint_v1_adam_float32.npz")
SGD64 = os.path.join(DATA, "checkpoint_v1_sgd_float64.npz")


def _inputs():
    """The batch the float32 file's network was trained on (and evaluated on when saved)."""
    rng = np.random.default_rng(7)
    return rng.standard_normal((8, 4)).astype(np.float32), np.arange(8) % 3


# eval-mode outputs of the saved float32 network on _inputs()[0], printed when it was saved
ADAM32_EVAL_OUT = np.array([
    [-0.9282474, -0.47300732, 0.15762156],
    [-0.06695496, 0.63019973, -0.24381201],
    [-0.5278621, 0.12869479, 0.13591713],
    [0.10148403, 0.36969683, 0.11335744],
    [-2.5155349, -0.6933328, 0.01288071],
    [-2.1360855, -0.33125, -0.7580023],
    [-0.4941758, -0.22650768, -0.16642886],
    [-0.4308372, -0.21496305, -0.13945949]], np.float32)


def test_float32_adam_checkpoint_from_0_1_0_loads_with_its_architecture_and_state():
    c = ckpt.load(ADAM32)
    net = c.net
    assert net.sizes == (4, 6, 6, 3) and net.dtype == np.float32
    assert [a.name for a in net.activations] == ["leaky_relu", "tanh", "identity"]
    assert net.activations[0].param == 0.2
    assert net.norms == ("batch", None, None)
    assert net.residuals == (None, 0.5, None) and net.dropouts == (0.0, 0.25, 0.0)
    assert net.dropout_seed == 11 and net.dropout_counter == 3
    assert net.init == "glorot_uniform" and net.seed == 3 and net.sigma_b == 0.1
    with np.load(ADAM32, allow_pickle=False) as z:
        np.testing.assert_array_equal(net.params, z["params"])
        mean, var = z["running_mean"], z["running_var"]
    np.testing.assert_array_equal(net.running_means[0], mean[:6])
    np.testing.assert_array_equal(net.running_vars[0], var[:6])
    assert not np.all(mean[:6] == 0) and not np.all(var[:6] == 1)   # trained, not defaults
    assert c.history["loss"][:2] == [1.2, 0.9] and np.isnan(c.history["loss"][2])
    assert c.extra["epoch"] == 3
    opt = c.make_optimizer()
    assert isinstance(opt, vg.optim.Adam) and opt.step_count == 3
    assert (opt.lr, opt.weight_decay, opt.clip_norm) == (0.01, 1e-4, 5.0)
    assert (opt.beta1, opt.beta2, opt.eps) == (0.9, 0.999, 1e-8)
    X, _ = _inputs()
    np.testing.assert_allclose(net.eval_mode().predict(X), ADAM32_EVAL_OUT, rtol=2e-5,
                               atol=2e-6)


def test_float32_adam_checkpoint_from_0_1_0_continues_training_like_a_fresh_load_into():
    """load and load_into of the old file give the same network and optimiser: one more step
    from each is bit-identical."""
    a = ckpt.load(ADAM32)
    opt_a = a.make_optimizer()
    b_net = vg.MLP([4, 6, 6, 3], activation=[vg.Activation("leaky_relu", slope=0.2), "tanh"],
                   seed=99, norm=["batch", None], residual=[None, 0.5], dropout=[0.0, 0.25],
                   dropout_seed=11)
    opt_b = vg.optim.Adam(b_net, lr=0.5, weight_decay=1e-4, clip_norm=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # same hyper-parameters: no warning
        ckpt.load_into(ADAM32, b_net, opt_b)
    assert opt_b.lr == 0.01 and opt_b.step_count == 3
    X, y = _inputs()
    la = a.net.train_step(X, y, "cross_entropy", opt_a)
    lb = b_net.train_step(X, y, "cross_entropy", opt_b)
    assert la == lb
    np.testing.assert_array_equal(a.net.params, b_net.params)


def test_float64_sgd_nesterov_checkpoint_from_0_1_0_loads():
    c = ckpt.load(SGD64)
    net = c.net
    assert net.sizes == (3, 5, 2) and net.dtype == np.float64
    assert [a.name for a in net.activations] == ["elu", "identity"]
    assert net.activations[0].param == 1.0
    assert c.history is None and c.extra is None
    opt = c.make_optimizer()
    assert isinstance(opt, vg.optim.SGD) and opt.step_count == 2
    assert (opt.momentum, opt.nesterov) == (0.9, True)
    with np.load(SGD64, allow_pickle=False) as z:
        np.testing.assert_array_equal(net.params, z["params"])
        np.testing.assert_array_equal(opt.state_dict()["states"][0], z["state_0"])


@pytest.mark.parametrize("path", [ADAM32, SGD64], ids=["adam32", "sgd64"])
def test_checkpoints_from_0_1_0_survive_a_save_and_load_round_trip(tmp_path, path):
    c = ckpt.load(path)
    opt = c.make_optimizer()
    out = tmp_path / "again.npz"
    ckpt.save(out, c.net, opt, history=c.history, extra=c.extra)
    d = ckpt.load(out)
    np.testing.assert_array_equal(d.net.params, c.net.params)
    # written again with what 0.1.0 did not record: the default it was loaded with
    assert "flush_subnormals" not in c.metadata["network"] and c.net.flush_subnormals
    assert d.metadata["network"] == {**c.metadata["network"], "flush_subnormals": True}
    for s, t in zip(d.optimizer_state["states"], c.optimizer_state["states"]):
        np.testing.assert_array_equal(s, t)

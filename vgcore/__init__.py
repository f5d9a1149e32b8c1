"""vgcore: a compiled CPU backprop engine for deep fully-connected networks, built to see,
measure and fix vanishing and exploding gradients.

>>> import numpy as np, vgcore as vg
>>> net = vg.MLP([64, 128, 128, 10], activation="tanh", init="glorot_uniform", seed=0)
>>> X = np.random.default_rng(0).standard_normal((32, 64), dtype=np.float32)
>>> out = net.forward(X)
>>> loss, dout = vg.losses.cross_entropy(out, np.arange(32) % 10)
>>> dX = net.backward(dout)
>>> vg.optim.SGD(net, lr=0.1).step()
"""
from vgcore import (activations, checkpoint, curvature, datasets, flow, init, losses, optim,
                    schedules, theory, trainer)
from vgcore.diagnosis import Finding, diagnose, format_findings
from vgcore.recorder import Recorder
from vgcore.trainer import History, evaluate, fit
from vgcore._threads import blas_info, get_num_threads, openmp_enabled, set_num_threads
from vgcore.activations import ACTIVATIONS, Activation
from vgcore.init import INITIALISERS
from vgcore.network import MLP, Dense
from vgcore import sweep  # noqa: E402  (after the names it uses)

__version__ = "0.1.0"

__all__ = [
    "MLP", "Dense", "Activation", "fit", "evaluate", "History", "checkpoint", "trainer", "ACTIVATIONS", "INITIALISERS", "activations", "curvature", "datasets",
    "flow",
    "init", "schedules",
    "losses", "optim", "sweep", "theory", "Recorder", "diagnose", "format_findings", "Finding", "set_num_threads", "get_num_threads", "openmp_enabled", "blas_info",
]

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
import sys as _sys

from vgcore import _omp_wait

_omp_wait.load_engine()     # first: OpenMP's idle threads spin briefly, unless the user chose

from vgcore.core import activations, init, losses, network, reference
from vgcore.core._threads import (blas_info, blas_policy, get_num_threads, openmp_enabled,
                                  set_blas_policy, set_num_threads, use_blas)
from vgcore.core._kernels import kernel_info, set_kernels
from vgcore.core.activations import ACTIVATIONS, Activation
from vgcore.core.errors import NonFiniteError
from vgcore.core.init import INITIALISERS
from vgcore.core.network import MLP, Dense
from vgcore.measure import curvature, diagnosis, flow, recorder, theory
from vgcore.measure.diagnosis import Finding, diagnose, format_findings
from vgcore.measure.recorder import Recorder
from vgcore.train import checkpoint, datasets, optim, schedules, trainer
from vgcore.train.trainer import History, evaluate, fit
from vgcore.experiments import report, sweep
from vgcore import interop
from vgcore.interop.tensorboard import TensorBoard

# The package is laid out in layers (core -> measure -> train -> experiments -> commands); the
# short import paths of earlier releases (``vgcore.flow``, ``vgcore.optim``, ...) name the same
# module objects, so ``import vgcore.flow`` and ``vgcore.measure.flow`` are one module.
for _mod in (activations, init, losses, network, reference, curvature, diagnosis, flow, recorder,
             theory, checkpoint, datasets, optim, schedules, trainer, report, sweep):
    _sys.modules["vgcore." + _mod.__name__.rsplit(".", 1)[1]] = _mod
del _mod

__version__ = "0.1.0"

__all__ = [
    "MLP", "Dense", "Activation", "ACTIVATIONS", "INITIALISERS", "fit", "evaluate", "History",
    "NonFiniteError",
    "Recorder", "diagnose", "format_findings", "Finding", "set_num_threads", "get_num_threads",
    "openmp_enabled", "blas_info", "blas_policy", "set_blas_policy", "use_blas", "kernel_info",
    "set_kernels", "activations",
    "init", "losses", "reference", "flow", "curvature", "diagnosis", "recorder", "theory",
    "checkpoint", "datasets", "optim",
    "schedules", "trainer", "sweep", "interop", "TensorBoard",
]

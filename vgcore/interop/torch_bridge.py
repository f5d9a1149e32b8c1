"""PyTorch MLPs to vgcore networks and back, exactly.

:func:`from_torch` (``vg.MLP.from_torch``) turns an ``nn.Sequential`` multilayer perceptron into
a :class:`vgcore.MLP` that computes the same function with the same parameters, so its
gradient flow can be measured, diagnosed and trained with vgcore; :func:`to_torch`
(``net.to_torch()``) gives the equivalent PyTorch module back.  PyTorch is optional: it is
imported when one of them is called (``pip install "vgcore[torch]"``; install the CPU build of
PyTorch first if you do not want pip to fetch the CUDA one).

What maps
---------
vgcore computes each hidden layer as ``Linear -> [norm] -> activation -> [residual sum] ->
[dropout]`` and the output layer as a plain ``Linear``; :func:`from_torch` reads an
``nn.Sequential`` (nested ``nn.Sequential`` are flattened) in that order:

=====================================  ======================================================
PyTorch module                         vgcore
=====================================  ======================================================
``nn.Linear(n_in, n_out)`` (bias)      a dense layer; ``W = weight.T`` (PyTorch stores
                                       ``(out, in)``, vgcore ``(in, out)``), ``b = bias``
``nn.BatchNorm1d(n)``                  ``norm="batch"``: ``gamma = weight``, ``beta = bias``,
                                       running mean and variance, ``eps`` and ``momentum``
``nn.LayerNorm(n)``                    ``norm="layer"``: ``gamma``, ``beta``, ``eps``
``nn.Tanh``, ``nn.ReLU``,              ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"selu"``,
``nn.Sigmoid``, ``nn.SELU``,           ``"softsign"``, ``"silu"``, ``"identity"``
``nn.Softsign``, ``nn.SiLU``,
``nn.Identity``
``nn.LeakyReLU(negative_slope)``       ``Activation("leaky_relu", slope=negative_slope)``
``nn.ELU(alpha)``                      ``Activation("elu", alpha=alpha)``
``nn.GELU()``                          ``"gelu"`` (exact, with erf); ``approximate="tanh"``
                                       is refused: it is another function
``nn.Softplus()``                      ``"softplus"``, only with ``beta=1`` and a
                                       ``threshold`` where PyTorch's switch to the identity
                                       is below the dtype's rounding (``exp(-threshold)`` <
                                       its unit roundoff: >= 16.7 in float32, the default 20
                                       included; >= 36.8 in float64)
``nn.Hardtanh()``                      ``"hard_tanh"``, only with the range (-1, 1)
``nn.Dropout(p)``                      ``dropout=p`` on that layer's output
``Residual(body, alpha)``              ``residual=alpha``: ``x + alpha * body(x)``, body
(:class:`vgcore.interop.               ``Sequential(Linear(n, n), [norm], activation)``
_torch_modules.Residual`)
=====================================  ======================================================

The dtype (float32 or float64, or ``dtype=`` to convert) and the training or evaluation mode
come from the module.  Anything else is refused before anything is built, with the layer's
name in the ``nn.Sequential`` and what vgcore expects there: a module that is not a dense
layer (``"layer 3: nn.Conv1d is not a dense layer"``), a ``Linear`` without bias, a norm after
the activation, two activations in a row, an activation after the output layer, norms with
different ``eps`` or momenta, batch norm without running statistics or affine parameters,
layers in different modes, parameters that are not finite.

Dropout masks are vgcore's own (a counter-based hash of ``dropout_seed``), not PyTorch's
random draws: a converted network in training mode with dropout computes the same function in
distribution, not sample by sample.

Subnormals: a vgcore network flushes them by default (``flush_subnormals``, see
:class:`vgcore.MLP`); PyTorch keeps them unless ``torch.set_flush_denormal(True)`` (a
process-wide setting, so :func:`to_torch` cannot carry the option).  The two agree except on
values below the smallest normal (1.18e-38 in float32), which vgcore writes as 0.
"""
from __future__ import annotations

import numpy as np

from vgcore.interop._torch_reading import (NORM_DEFAULTS, SIMPLE_ACTIVATIONS, read_sequential,
                                           tensor_to_numpy)
from vgcore.interop._torch_reading import import_torch as _torch

__all__ = ["from_torch", "to_torch", "Residual"]  # noqa: F822 (Residual: module __getattr__)


def __getattr__(name):
    if name == "Residual":         # importing it imports torch; only on demand
        _torch()
        from vgcore.interop._torch_modules import Residual
        return Residual
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------ from_torch
def from_torch(module, *, dtype=None, init="standard", measure=True, dropout_seed=0,
               flush_subnormals=True):
    """A :class:`vgcore.MLP` computing the same function as a PyTorch ``nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        ``Linear -> [BatchNorm1d | LayerNorm] -> activation -> [Dropout]`` per hidden layer
        and a final ``Linear`` (see the module docstring for every module that maps); nested
        ``nn.Sequential`` are flattened, :class:`Residual` blocks map to residual layers.
    dtype : None, "float32" or "float64"
        The network's dtype; default the module's (float32 or float64).  Converting a float32
        module to float64 shows gradients that float32 rounds to zero.
    init : str
        The initialiser name the network reports (:attr:`vgcore.MLP.init`, used by the
        diagnosis and the mean-field theory); the weights are the module's, not drawn.  The
        default ``"standard"`` is PyTorch's default ``nn.Linear`` weight initialisation
        (U(+-1/sqrt(fan_in))); pass the one you used.
    measure : bool
        As :class:`vgcore.MLP` (default True: measure the gradient flow in every pass).
    dropout_seed : int
        The seed of vgcore's dropout masks.
    flush_subnormals : bool
        As :class:`vgcore.MLP` (default True).  PyTorch's CPU default is to keep subnormals
        (``torch.set_flush_denormal(False)``); pass False to compute exactly as IEEE does.

    Returns
    -------
    vgcore.MLP
        Same weights (``W = weight.T``), biases, norm parameters, running statistics, ``eps``,
        ``momentum`` and mode (``module.training``) as the module, which is left unchanged.

    Raises
    ------
    ImportError
        When PyTorch is not installed.
    TypeError
        When ``module`` is not an ``nn.Sequential``.
    ValueError
        When a layer cannot be mapped; the message names the layer (its name in the
        Sequential, e.g. ``"layer 3"`` or ``"layer 2.1"`` when nested) and what vgcore expects.
    """
    torch, nn = _torch()
    from vgcore.core.network import MLP
    layers, net_dtype, shared, training = read_sequential(module, torch, nn, dtype)

    hidden = layers[:-1]
    sizes = [layers[0].linear.in_features] + [lay.linear.out_features for lay in layers]
    from vgcore.core.activations import Activation
    net = MLP(sizes,
              activation=[lay.act or Activation("identity") for lay in hidden],
              init=init, dtype=net_dtype, seed=0, measure=measure,
              norm=[None if lay.norm is None else
                    ("batch" if type(lay.norm) is nn.BatchNorm1d else "layer") for lay in hidden],
              residual=[lay.residual for lay in hidden],
              dropout=[0.0 if lay.dropout is None else float(lay.dropout.p) for lay in hidden],
              dropout_seed=dropout_seed, flush_subnormals=flush_subnormals,
              norm_momentum=shared.get("momentum", (NORM_DEFAULTS["momentum"],))[0],
              norm_eps=shared.get("eps", (NORM_DEFAULTS["eps"],))[0])
    for l, lay in enumerate(layers):
        net.weights[l][...] = tensor_to_numpy(lay.linear.weight, lay.linear_name, "weight").T
        net.biases[l][...] = tensor_to_numpy(lay.linear.bias, lay.linear_name, "bias")
        if lay.norm is not None:
            net.gammas[l][...] = tensor_to_numpy(lay.norm.weight, lay.norm_name, "weight")
            net.betas[l][...] = tensor_to_numpy(lay.norm.bias, lay.norm_name, "bias")
            if net.running_means[l] is not None:
                net.running_means[l][...] = tensor_to_numpy(lay.norm.running_mean, lay.norm_name,
                                                   "running_mean")
                rv = tensor_to_numpy(lay.norm.running_var, lay.norm_name, "running_var")
                if (rv < 0).any():
                    raise ValueError(f"layer {lay.norm_name}: its running_var has negative "
                                     f"entries")
                net.running_vars[l][...] = rv
    if not np.isfinite(net.params).all():
        bad = next(l for l in range(net.n_layers)
                   if not (np.isfinite(net.weights[l]).all() and np.isfinite(net.biases[l]).all()))
        raise ValueError(f"layer {layers[bad].linear_name}: its parameters overflow "
                         f"{net.dtype.name}; convert with dtype='float64'")
    net.grads[...] = 0
    (net.train_mode if training else net.eval_mode)()
    return net


# ------------------------------------------------------------------------------ to_torch
def _activation_module(act, nn, dtype):
    name, p = act.name, act.param
    if name == "leaky_relu":
        return nn.LeakyReLU(p)
    if name == "elu":
        return nn.ELU(p)
    if name == "gelu":
        return nn.GELU()
    if name == "softplus":      # PyTorch's identity branch above threshold, exact in dtype
        return nn.Softplus(beta=1.0, threshold=20.0 if dtype == np.float32 else 40.0)
    if name == "hard_tanh":
        return nn.Hardtanh(-1.0, 1.0)
    inverse = {v: k for k, v in SIMPLE_ACTIVATIONS.items()}
    return getattr(nn, inverse[name])()


def to_torch(net):
    """The PyTorch ``nn.Sequential`` computing the same function as a :class:`vgcore.MLP`.

    Per hidden layer ``nn.Linear``, then ``nn.BatchNorm1d`` or ``nn.LayerNorm`` (with the
    network's ``norm_eps`` and ``norm_momentum``, gamma, beta and running statistics), the
    activation module (``nn.Identity`` for ``"identity"``), a :class:`Residual` block around
    those three for residual layers, and ``nn.Dropout(p)``; the output layer is a plain
    ``nn.Linear``.  Parameters are copied (``weight = W.T``), in the network's dtype, on the
    CPU, and the module is in the network's mode (``train()`` or ``eval()``).
    :func:`from_torch` of the result gives the same network back.

    Raises
    ------
    ImportError
        When PyTorch is not installed.
    """
    torch, nn = _torch()
    from vgcore.core.network import MLP
    from vgcore.interop._torch_modules import Residual
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a vgcore.MLP, got {type(net).__name__}")
    tdtype = torch.float32 if net.dtype == np.float32 else torch.float64

    def tensor(a):
        return torch.from_numpy(np.array(a, dtype=net.dtype, copy=True))

    mods = []
    L = net.n_layers
    with torch.no_grad():
        for l in range(L):
            fi, fo = net.sizes[l], net.sizes[l + 1]
            lin = nn.Linear(fi, fo, dtype=tdtype)
            lin.weight.copy_(tensor(net.weights[l].T))
            lin.bias.copy_(tensor(net.biases[l]))
            if l == L - 1:
                mods.append(lin)
                break
            body = [lin]
            norm = net.norms[l]
            if norm == "batch":
                bn = nn.BatchNorm1d(fo, eps=net.norm_eps, momentum=net.norm_momentum,
                                    dtype=tdtype)
                bn.running_mean.copy_(tensor(net.running_means[l]))
                bn.running_var.copy_(tensor(net.running_vars[l]))
                body.append(bn)
            elif norm == "layer":
                body.append(nn.LayerNorm(fo, eps=net.norm_eps, dtype=tdtype))
            if norm is not None:
                body[-1].weight.copy_(tensor(net.gammas[l]))
                body[-1].bias.copy_(tensor(net.betas[l]))
            body.append(_activation_module(net.activations[l], nn, net.dtype))
            if net.residuals[l] is not None:
                mods.append(Residual(nn.Sequential(*body), net.residuals[l]))
            else:
                mods.extend(body)
            if net.dropouts[l] > 0:
                mods.append(nn.Dropout(net.dropouts[l]))
    module = nn.Sequential(*mods)
    module.train(bool(net.training))
    return module

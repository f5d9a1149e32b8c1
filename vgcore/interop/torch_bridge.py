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

import math

import numpy as np

__all__ = ["from_torch", "to_torch", "Residual"]  # noqa: F822 (Residual: module __getattr__)

_NORM_DEFAULTS = {"eps": 1e-5, "momentum": 0.1}


def _torch():
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        raise ImportError(
            "the PyTorch bridge needs PyTorch, which is not installed; install the CPU build "
            "(pip install torch --index-url https://download.pytorch.org/whl/cpu) or "
            "pip install \"vgcore[torch]\"", name="torch") from exc
    return torch, nn


def __getattr__(name):
    if name == "Residual":         # importing it imports torch; only on demand
        _torch()
        from vgcore.interop._torch_modules import Residual
        return Residual
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------ names
def _type_name(m) -> str:
    t = type(m)
    if t.__module__.startswith("torch.nn."):
        return f"nn.{t.__name__}"
    if t.__module__ == "vgcore.interop._torch_modules":
        return f"vgcore.interop.torch_bridge.{t.__name__}"
    return f"{t.__module__}.{t.__qualname__}"


_ORDER = ("vgcore computes each hidden layer as Linear -> [BatchNorm1d or LayerNorm] -> "
          "activation -> [Dropout], and the output layer as a plain Linear")

_SIMPLE_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "SELU": "selu",
                       "Softsign": "softsign", "SiLU": "silu", "Identity": "identity"}


def _unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


def _softplus_min_threshold(dtype) -> float:
    """The smallest ``threshold`` of ``nn.Softplus`` (beta 1) at which PyTorch's switch to the
    identity differs from log(1 + e^h) by less than the dtype's unit roundoff (relative, in
    the value and in the derivative: both differ by at most exp(-threshold))."""
    return -math.log(_unit_roundoff(dtype))


# ------------------------------------------------------------------------------ from_torch
class _Layer:
    __slots__ = ("linear", "linear_name", "norm", "norm_name", "act", "act_name", "act_module",
                 "dropout", "dropout_name", "residual", "residual_name")

    def __init__(self, name, linear, residual=None):
        self.linear, self.linear_name = linear, name
        self.norm = self.norm_name = None
        self.act = self.act_name = self.act_module = None
        self.dropout = self.dropout_name = None
        self.residual = residual        # alpha, or None
        self.residual_name = name if residual is not None else None


def _flatten(module, nn, prefix=""):
    """(name, module) of every item of a (nested) nn.Sequential, in order."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out.extend(_flatten(child, nn, full + "."))
        else:
            out.append((full, child))
    return out


def _kind(m, nn):
    from vgcore.interop._torch_modules import Residual
    t = type(m)
    if t is nn.Linear:
        return "linear"
    if t is Residual:
        return "residual"
    if t in (nn.BatchNorm1d, nn.LayerNorm):
        return "norm"
    if t is nn.Dropout:
        return "dropout"
    if t.__name__ in _SIMPLE_ACTIVATIONS and t is getattr(nn, t.__name__) or t in (
            nn.LeakyReLU, nn.ELU, nn.GELU, nn.Softplus, nn.Hardtanh):
        return "activation"
    return None


def _refuse_unknown(name, m, nn):
    t = type(m)
    what = _type_name(m)
    if t.__module__ == "torch.nn.modules.activation" or t in (nn.Softmax, nn.LogSoftmax):
        extra = ""
        if t in (nn.Softmax, nn.LogSoftmax):
            extra = ("; vgcore's losses take logits (cross_entropy applies the softmax): "
                     "drop it")
        elif t is nn.PReLU:
            extra = ("; nn.PReLU learns its slope, vgcore's leaky_relu has a fixed one "
                     "(nn.LeakyReLU)")
        elif t is nn.ReLU6:
            extra = "; only nn.Hardtanh(-1, 1) maps (to hard_tanh)"
        from vgcore.core.activations import ACTIVATIONS
        return ValueError(f"layer {name}: {what} is not one of vgcore's activations "
                          f"({', '.join(ACTIVATIONS)}){extra}")
    if t.__module__.startswith("torch.nn.modules.dropout"):
        return ValueError(f"layer {name}: {what} is not vgcore's dropout; only nn.Dropout "
                          f"(inverted dropout to zero) maps")
    if t.__module__.startswith("torch.nn.modules.batchnorm") or \
            t.__module__.startswith("torch.nn.modules.normalization"):
        return ValueError(f"layer {name}: {what} is not a normalisation vgcore has; "
                          f"nn.BatchNorm1d and nn.LayerNorm map")
    if isinstance(m, nn.Linear):
        return ValueError(f"layer {name}: {what} is a subclass of nn.Linear; only nn.Linear "
                          f"itself maps (a subclass may compute something else)")
    return ValueError(f"layer {name}: {what} is not a dense layer; vgcore.MLP.from_torch maps "
                      f"an nn.Sequential of nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.Dropout "
                      f"and the activations of vgcore ({_ORDER})")


def _activation(name, m, nn, dtype):
    from vgcore.core.activations import Activation
    t = type(m)
    if t.__name__ in _SIMPLE_ACTIVATIONS and t is getattr(nn, t.__name__):
        return Activation(_SIMPLE_ACTIVATIONS[t.__name__])
    if t is nn.LeakyReLU:
        return Activation("leaky_relu", slope=float(m.negative_slope))
    if t is nn.ELU:
        return Activation("elu", alpha=float(m.alpha))
    if t is nn.GELU:
        if m.approximate != "none":
            raise ValueError(f"layer {name}: nn.GELU(approximate={m.approximate!r}) is the "
                             f"tanh approximation of GELU, another function; vgcore's gelu is "
                             f"the exact one, h * Phi(h) with erf (nn.GELU())")
        return Activation("gelu")
    if t is nn.Softplus:
        if float(m.beta) != 1.0:
            raise ValueError(f"layer {name}: nn.Softplus(beta={m.beta}); vgcore's softplus is "
                             f"log(1 + e^h), beta=1")
        need = _softplus_min_threshold(dtype)
        if float(m.threshold) < need:
            raise ValueError(
                f"layer {name}: nn.Softplus(threshold={m.threshold}) returns h itself above "
                f"{m.threshold}, which differs from log(1 + e^h) by up to "
                f"exp(-{m.threshold}) = {math.exp(-float(m.threshold)):.1e}, more than "
                f"{np.dtype(dtype).name}'s rounding ({_unit_roundoff(dtype):.1e}); vgcore "
                f"computes log(1 + e^h) everywhere: use threshold >= {math.ceil(need)}"
                + (" (or convert to float32, where the default 20 is exact)"
                   if np.dtype(dtype) == np.float64 else ""))
        return Activation("softplus")
    if t is nn.Hardtanh:
        if float(m.min_val) != -1.0 or float(m.max_val) != 1.0:
            raise ValueError(f"layer {name}: nn.Hardtanh({m.min_val}, {m.max_val}); vgcore's "
                             f"hard_tanh clips to (-1, 1)")
        return Activation("hard_tanh")
    raise AssertionError(t)       # pragma: no cover - _kind said it is an activation


def _parse(items, nn, dtype, whole=True):
    """The layers of the flattened Sequential, checked against vgcore's order (``whole``: the
    last one is the output layer)."""
    layers: list[_Layer] = []
    cur = None
    for name, m in items:
        kind = _kind(m, nn)
        if kind is None:
            raise _refuse_unknown(name, m, nn)
        what = _type_name(m)
        if kind in ("linear", "residual"):
            if cur is not None:
                layers.append(cur)
            if kind == "linear":
                cur = _Layer(name, m)
            else:
                cur = _parse_residual(name, m, nn, dtype)
            continue
        if cur is None:
            raise ValueError(f"layer {name}: {what} before the first nn.Linear; vgcore's "
                             f"network starts with a dense layer ({_ORDER})")
        if cur.residual is not None and kind != "dropout":
            raise ValueError(f"layer {name}: {what} after the residual block {cur.linear_name}; "
                             f"vgcore's residual block ends with the sum x + alpha * phi(z), "
                             f"and only nn.Dropout may follow it (put the norm and the "
                             f"activation inside the block)")
        if kind == "norm":
            if cur.act is not None or cur.dropout is not None:
                prev = cur.dropout_name if cur.dropout is not None else cur.act_name
                after = "nn.Dropout" if cur.dropout is not None else _type_name(cur.act_module)
                raise ValueError(f"layer {name}: {what} after {after} (layer {prev}); vgcore "
                                 f"normalises the pre-activation, before the activation "
                                 f"({_ORDER})")
            if cur.norm is not None:
                raise ValueError(f"layer {name}: {what} right after {_type_name(cur.norm)} "
                                 f"(layer {cur.norm_name}): two normalisations in a row; "
                                 f"vgcore has at most one per layer ({_ORDER})")
            cur.norm, cur.norm_name = m, name
        elif kind == "activation":
            if cur.dropout is not None:
                raise ValueError(f"layer {name}: {what} after nn.Dropout (layer "
                                 f"{cur.dropout_name}); vgcore drops the layer's output, after "
                                 f"the activation ({_ORDER})")
            if cur.act is not None:
                raise ValueError(f"layer {name}: {what} right after "
                                 f"{_type_name(cur.act_module)} (layer {cur.act_name}): two "
                                 f"activations in a row; vgcore has one activation per layer "
                                 f"({_ORDER})")
            cur.act, cur.act_name, cur.act_module = _activation(name, m, nn, dtype), name, m
        else:   # dropout
            if cur.dropout is not None:
                raise ValueError(f"layer {name}: nn.Dropout right after nn.Dropout (layer "
                                 f"{cur.dropout_name}): two dropouts in a row; vgcore has at "
                                 f"most one per layer")
            cur.dropout, cur.dropout_name = m, name
    if cur is None:
        raise ValueError("module: it holds no nn.Linear; expected an nn.Sequential starting "
                         f"with a dense layer ({_ORDER})")
    layers.append(cur)
    if not whole:
        return layers
    out = layers[-1]
    if out.residual is not None:
        raise ValueError(f"layer {out.residual_name}: the network ends with a residual block; "
                         f"vgcore's output layer is a plain nn.Linear")
    if out.norm is not None:
        raise ValueError(f"layer {out.norm_name}: {_type_name(out.norm)} after the output layer "
                         f"(layer {out.linear_name}); vgcore's output layer is a plain "
                         f"nn.Linear")
    if out.act is not None and out.act.name != "identity":
        hint = ""
        if out.act.name == "sigmoid":
            hint = ("; for binary targets use the logits with "
                    "loss='binary_cross_entropy' (it applies the sigmoid)")
        raise ValueError(f"layer {out.act_name}: {_type_name(out.act_module)} after the output "
                         f"layer (layer {out.linear_name}); vgcore's output layer is linear "
                         f"and its losses take logits: drop it{hint}")
    if out.dropout is not None:
        raise ValueError(f"layer {out.dropout_name}: nn.Dropout after the output layer (layer "
                         f"{out.linear_name}); vgcore's output layer is a plain nn.Linear")
    return layers


def _parse_residual(name, block, nn, dtype):
    body = block.body
    items = _flatten(body, nn, f"{name}.body.") if type(body) is nn.Sequential else \
        [(f"{name}.body", body)]
    inner = _parse(items, nn, dtype, whole=False) if items else []
    ok = (len(inner) == 1 and inner[0].residual is None and inner[0].dropout is None)
    if not ok:
        raise ValueError(f"layer {name}: the residual block's body must be "
                         f"nn.Sequential(nn.Linear(n, n), [nn.BatchNorm1d(n) or "
                         f"nn.LayerNorm(n)], activation) (a dropout goes after the block)")
    lay = inner[0]
    alpha = float(block.alpha)
    if not math.isfinite(alpha) or alpha == 0:
        raise ValueError(f"layer {name}: residual alpha={alpha!r}; expected a finite non-zero "
                         f"scale")
    lay.residual, lay.residual_name = alpha, name
    return lay


def _check_linear(lay, nn, fan_in):
    m, name = lay.linear, lay.linear_name
    if m.bias is None:
        raise ValueError(f"layer {name}: nn.Linear({m.in_features}, {m.out_features}, "
                         f"bias=False); vgcore's dense layers always have a bias (h = x W + b): "
                         f"build it with bias=True (a zero bias computes the same function)")
    if fan_in is not None and m.in_features != fan_in:
        raise ValueError(f"layer {name}: nn.Linear({m.in_features}, {m.out_features}) takes "
                         f"{m.in_features} inputs but the layer before gives {fan_in}")
    if lay.residual is not None and m.in_features != m.out_features:
        raise ValueError(f"layer {lay.residual_name}: a residual block needs fan_in == fan_out, "
                         f"got nn.Linear({m.in_features}, {m.out_features})")


def _check_norm(lay, nn, shared):
    m, name, width = lay.norm, lay.norm_name, lay.linear.out_features
    if type(m) is nn.BatchNorm1d:
        if m.num_features != width:
            raise ValueError(f"layer {name}: nn.BatchNorm1d({m.num_features}) after a layer of "
                             f"{width} units")
        if not m.affine:
            raise ValueError(f"layer {name}: nn.BatchNorm1d(affine=False); vgcore's batch norm "
                             f"always has learnable gamma and beta: use affine=True (gamma=1, "
                             f"beta=0 computes the same function)")
        if not m.track_running_stats or m.running_mean is None:
            raise ValueError(f"layer {name}: nn.BatchNorm1d(track_running_stats=False) uses "
                             f"batch statistics in evaluation mode; vgcore's batch norm keeps "
                             f"running averages (track_running_stats=True)")
        if m.momentum is None:
            raise ValueError(f"layer {name}: nn.BatchNorm1d(momentum=None) keeps a cumulative "
                             f"average; vgcore's running averages are exponential (a momentum "
                             f"in [0, 1], default 0.1)")
        _same(shared, "momentum", float(m.momentum), name)
    else:
        shape = tuple(m.normalized_shape)
        if shape != (width,):
            raise ValueError(f"layer {name}: nn.LayerNorm({list(shape)}) after a layer of "
                             f"{width} units; vgcore normalises over the layer's units: "
                             f"nn.LayerNorm({width})")
        if not m.elementwise_affine or m.weight is None:
            raise ValueError(f"layer {name}: nn.LayerNorm(elementwise_affine=False); vgcore's "
                             f"layer norm always has learnable gamma and beta")
        if m.bias is None:
            raise ValueError(f"layer {name}: nn.LayerNorm(bias=False); vgcore's layer norm "
                             f"always has a learnable beta (zero computes the same function)")
    _same(shared, "eps", float(m.eps), name)


def _same(shared, key, value, name):
    if key in shared and shared[key][0] != value:
        raise ValueError(f"layer {name}: {key}={value!r}, but layer {shared[key][1]} has "
                         f"{key}={shared[key][0]!r}; vgcore uses one norm_{key} for the whole "
                         f"network")
    shared.setdefault(key, (value, name))


def _numpy(t, name, what):
    """A parameter or buffer as a NumPy array on the CPU (float32 and float64 as they are,
    other float dtypes in float64)."""
    torch = _torch()[0]
    if t.is_meta:
        raise ValueError(f"layer {name}: its {what} is on the 'meta' device and holds no "
                         f"values; materialise the module first")
    a = t.detach().cpu()
    if not a.dtype.is_floating_point:
        raise ValueError(f"layer {name}: its {what} has dtype {a.dtype}; expected floats")
    if a.dtype not in (torch.float32, torch.float64):
        a = a.double()          # float16, bfloat16: exact in float64
    arr = a.numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"layer {name}: its {what} holds NaN or Inf; vgcore takes finite "
                         f"parameters")
    return arr


def _module_dtype(layers, torch, dtype):
    """The network dtype: ``dtype`` when given, else that of the module's parameters."""
    from vgcore.core._validation import as_dtype
    if dtype is not None:
        return as_dtype(dtype)
    seen = {}
    for lay in layers:
        for m, name in ((lay.linear, lay.linear_name), (lay.norm, lay.norm_name)):
            if m is None:
                continue
            for p in m.parameters(recurse=False):
                seen.setdefault(p.dtype, name)
    if len(seen) > 1:
        pairs = ", ".join(f"{d} (layer {n})" for d, n in seen.items())
        raise ValueError(f"module: parameters of several dtypes ({pairs}); vgcore computes in "
                         f"one dtype: convert with module.float() or module.double(), or pass "
                         f"dtype='float32' or 'float64'")
    (tdt, name), = seen.items()
    if tdt == torch.float32:
        return np.dtype(np.float32)
    if tdt == torch.float64:
        return np.dtype(np.float64)
    raise ValueError(f"module: parameters of dtype {tdt} (layer {name}); vgcore computes in "
                     f"float32 or float64: pass dtype='float32' or 'float64' to convert")


def _mode(layers, module):
    """The training flag of the layers whose behaviour depends on it (one for all)."""
    modes = {}
    for lay in layers:
        if lay.norm is not None and type(lay.norm).__name__ == "BatchNorm1d":  # LN: no mode
            modes.setdefault(bool(lay.norm.training), lay.norm_name)
        if lay.dropout is not None and lay.dropout.p > 0:
            modes.setdefault(bool(lay.dropout.training), lay.dropout_name)
    if len(modes) > 1:
        raise ValueError(f"module: layer {modes[True]} is in training mode and layer "
                         f"{modes[False]} in evaluation mode; a vgcore network has one mode: "
                         f"call module.train() or module.eval() first")
    if modes:
        return next(iter(modes))
    return bool(module.training)


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
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    if type(module) is not nn.Sequential and type(module).forward is not nn.Sequential.forward:
        raise TypeError(f"module: expected a torch.nn.Sequential (whose forward applies its "
                        f"layers in order), got {_type_name(module)} with its own forward; "
                        f"rebuild its layers as an nn.Sequential")
    items = _flatten(module, nn)
    # the dtype decides softplus' threshold check, so find it from the parameters first
    linears = [_Layer(n, m) for n, m in items if type(m) is nn.Linear]
    probe_dtype = _module_dtype(linears, torch, dtype) if linears else np.dtype(np.float32)
    layers = _parse(items, nn, probe_dtype)
    net_dtype = _module_dtype(layers, torch, dtype)

    shared: dict = {}
    fan_in = None
    for lay in layers:
        _check_linear(lay, nn, fan_in)
        fan_in = lay.linear.out_features
        if lay.norm is not None:
            _check_norm(lay, nn, shared)
        if lay.dropout is not None and not 0 <= float(lay.dropout.p) < 1:
            raise ValueError(f"layer {lay.dropout_name}: nn.Dropout(p={lay.dropout.p}); vgcore "
                             f"takes dropout rates in [0, 1)")
    training = _mode(layers, module)

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
              norm_momentum=shared.get("momentum", (_NORM_DEFAULTS["momentum"],))[0],
              norm_eps=shared.get("eps", (_NORM_DEFAULTS["eps"],))[0])
    for l, lay in enumerate(layers):
        net.weights[l][...] = _numpy(lay.linear.weight, lay.linear_name, "weight").T
        net.biases[l][...] = _numpy(lay.linear.bias, lay.linear_name, "bias")
        if lay.norm is not None:
            net.gammas[l][...] = _numpy(lay.norm.weight, lay.norm_name, "weight")
            net.betas[l][...] = _numpy(lay.norm.bias, lay.norm_name, "bias")
            if net.running_means[l] is not None:
                net.running_means[l][...] = _numpy(lay.norm.running_mean, lay.norm_name,
                                                   "running_mean")
                rv = _numpy(lay.norm.running_var, lay.norm_name, "running_var")
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
    inverse = {v: k for k, v in _SIMPLE_ACTIVATIONS.items()}
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

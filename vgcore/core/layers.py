"""The layers of a network beyond the dense product: an explicit layer list (:class:`Dense`),
the per-layer options (normalisation, residual blocks, dropout) and their checks, and the
layout of the flat parameter buffer.  :class:`vgcore.MLP` and the NumPy reference
(:class:`vgcore.reference.ReferenceMLP`) both use them, so they accept and reject the same
options with the same words."""
from __future__ import annotations

import math

import numpy as np

from vgcore.core._validation import check_positive_int
from vgcore.core.activations import resolve_activation

__all__ = ["Dense", "NORMS", "layer_options", "param_layout"]

_MASK64 = (1 << 64) - 1


class Dense:
    """One layer of an explicit layer list for :meth:`vgcore.MLP.from_layers`.

    Parameters
    ----------
    units : int
        The layer's width (its fan-out).
    activation : str or Activation
        Its activation (the last layer of a list is the output layer and must be linear:
        ``"identity"``, the default there).
    norm, residual, dropout
        As the options of :class:`vgcore.MLP`, for this layer alone.
    """

    def __init__(self, units, activation="identity", *, norm=None, residual=None, dropout=0.0):
        self.units = check_positive_int(units, "units")
        self.activation = resolve_activation(activation)
        self.norm, self.residual, self.dropout = norm, residual, dropout

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in (("norm", self.norm),
                                                   ("residual", self.residual),
                                                   ("dropout", self.dropout)) if v)
        return f"Dense({self.units}, {self.activation.name!r}{extra})"


NORMS = ("batch", "layer")


def _is_number(v):
    return (not isinstance(v, (bool, np.bool_))
            and isinstance(v, (int, float, np.integer, np.floating)))


def _per_hidden(value, n_hidden, name):
    """A single value -> None (caller broadcasts); a list -> checked length."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_hidden:
            raise ValueError(f"{name}: expected one entry per hidden layer ({n_hidden}), "
                             f"got {len(value)}")
        return list(value)
    return None


def _check_norm_entry(v, name):
    if v is None:
        return None
    if not isinstance(v, str):
        raise TypeError(f"{name}: expected None, 'batch' or 'layer', got {type(v).__name__}")
    if v not in NORMS:
        raise ValueError(f"{name}: unknown normalisation {v!r}; expected None, 'batch' or "
                         f"'layer'")
    return v


def _check_dropout_entry(v, name):
    if not _is_number(v):
        raise TypeError(f"{name}: expected a number in [0, 1), got {type(v).__name__}")
    v = float(v)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"{name}: expected a rate in [0, 1), got {v!r}")
    return v


def _check_residual_entry(v, name):
    if v is None:
        return None
    if not _is_number(v):
        raise TypeError(f"{name}: expected None, 'auto' or a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v == 0:      # the compiled core reads scale 0 as "no block"
        raise ValueError(f"{name}: expected None, 'auto' or a finite non-zero scale, got "
                         f"{v!r}")
    return v


def layer_options(sizes, norm=None, residual=None, residual_init=None, dropout=0.0,
                  dropout_seed=0, norm_momentum=0.1, norm_eps=1e-5):
    """Check the layer options of an MLP; returns a dict with per-layer tuples of length
    ``len(sizes) - 1`` (the output layer's entry is always None / None / 0.0) and the scalars.

    Every error is a ValueError (bad value) or TypeError (bad type) naming the option.
    """
    sizes = tuple(int(s) for s in sizes)
    L = len(sizes) - 1
    n_hidden = L - 1

    # norm
    lst = _per_hidden(norm, n_hidden, "norm")
    if lst is None:
        norms = [_check_norm_entry(norm, "norm")] * n_hidden
    else:
        norms = [_check_norm_entry(v, f"norm[{l}]") for l, v in enumerate(lst)]

    # residual
    lst = _per_hidden(residual, n_hidden, "residual")
    if lst is None:
        if residual is None:
            scale = None
        elif isinstance(residual, str):
            if residual != "auto":
                raise ValueError(f"residual: unknown value {residual!r}; expected None, a "
                                 f"number, 'auto' or a list")
            scale = 1.0 / math.sqrt(n_hidden) if n_hidden > 0 else None
        else:
            scale = _check_residual_entry(residual, "residual")
        residuals = [scale if sizes[l] == sizes[l + 1] else None for l in range(n_hidden)]
    else:
        residuals = []
        for l, v in enumerate(lst):
            auto = isinstance(v, str) and v == "auto"
            v = None if auto else _check_residual_entry(v, f"residual[{l}]")
            if auto:
                v = 1.0 / math.sqrt(n_hidden)
            if v is not None and sizes[l] != sizes[l + 1]:
                raise ValueError(f"residual[{l}]: hidden layer {l + 1} maps {sizes[l]} to "
                                 f"{sizes[l + 1]} units; a residual block needs equal widths "
                                 f"(fan_in == fan_out)")
            residuals.append(v)

    if residual_init is not None and residual_init != "zero":
        raise ValueError(f"residual_init: expected None or 'zero', got {residual_init!r}")

    # dropout
    lst = _per_hidden(dropout, n_hidden, "dropout")
    if lst is None:
        dropouts = [_check_dropout_entry(dropout, "dropout")] * n_hidden
    else:
        dropouts = [_check_dropout_entry(v, f"dropout[{l}]") for l, v in enumerate(lst)]

    if isinstance(dropout_seed, (bool, np.bool_)) or not isinstance(dropout_seed,
                                                                    (int, np.integer)):
        raise TypeError(f"dropout_seed: expected an integer, got {type(dropout_seed).__name__}")
    dropout_seed = int(dropout_seed)
    if not (0 <= dropout_seed <= _MASK64):
        raise ValueError(f"dropout_seed: expected an integer in [0, 2**64), got {dropout_seed}")

    if not _is_number(norm_momentum):
        raise TypeError(f"norm_momentum: expected a number, got {type(norm_momentum).__name__}")
    norm_momentum = float(norm_momentum)
    if not (0.0 <= norm_momentum <= 1.0):
        raise ValueError(f"norm_momentum: expected a number in [0, 1], got {norm_momentum!r}")
    if not _is_number(norm_eps):
        raise TypeError(f"norm_eps: expected a number, got {type(norm_eps).__name__}")
    norm_eps = float(norm_eps)
    if not (norm_eps > 0.0 and math.isfinite(norm_eps)):
        raise ValueError(f"norm_eps: expected a finite number > 0, got {norm_eps!r}")

    return dict(norms=tuple(norms) + (None,), residuals=tuple(residuals) + (None,),
                dropouts=tuple(dropouts) + (0.0,), residual_init=residual_init,
                dropout_seed=dropout_seed, norm_momentum=norm_momentum, norm_eps=norm_eps)


def param_layout(sizes, norms=None):
    """Offsets in the flat parameter buffer: per layer ``(w_off, b_off, gamma_off, beta_off)``
    (the last two None without normalisation) and the total size.  Per layer: W (fin*fout,
    row-major), b (fout), then gamma (fout) and beta (fout) for normalised layers."""
    L = len(sizes) - 1
    norms = (None,) * L if norms is None else norms
    offsets, off = [], 0
    for l in range(L):
        fi, fo = sizes[l], sizes[l + 1]
        w_off, b_off = off, off + fi * fo
        off = b_off + fo
        if norms[l] is not None:
            offsets.append((w_off, b_off, off, off + fo))
            off += 2 * fo
        else:
            offsets.append((w_off, b_off, None, None))
    return offsets, off

"""Gradient-flow measurements: what vgcore measures in every layer at every step.

The per-layer numbers are reductions computed inside the compiled forward and backward passes,
in the loops that already touch the data (see ``src/vg_kernels_impl.h``): turning them on costs
a few percent of a step, not a second pass; the per-sample norms (one sum per row of each
layer's input and delta) are taken in the measured backward pass, while those rows are in cache.
:meth:`vgcore.MLP.gradient_flow` returns them for the last step as a :class:`GradientFlow`: a
snapshot of those sums (read-only arrays over the per-layer sums and the per-sample and
per-unit arrays the step wrote, which later steps leave alone while the flow holds them: see
``vgcore/core/_measure_sets.py``) whose fields are derived when first read, so taking it at
every step costs tens of microseconds.

Notation: layer ``l`` (1-based in messages, 0-based as an array index) computes
``h_l = x_l W_l + b_l`` and ``a_l = phi(h_l)``; ``B`` is the batch size and ``n_l`` the layer's
width; ``delta_l = dL/dh_l`` is the backpropagated error at its pre-activations (for the linear
output layer, the loss gradient).  All norms are Euclidean (Frobenius for matrices).  The loss
is a mean over the batch, so ``delta`` carries a factor 1/B.

Per-layer arrays (shape ``(n_layers,)``):

=========================  =============================================================  ============
name                       definition                                                     units
=========================  =============================================================  ============
delta_rms                  sqrt(sum(delta_l^2) / (B n_l))                                 loss / unit
delta_norm                 ||delta_l|| over the batch                                     loss / unit
grad_norm                  ||dL/dW_l||                                                    loss / weight
bias_grad_norm             ||dL/db_l||                                                    loss / weight
weight_norm                ||W_l|| at the backward pass (before an optimiser step)         weight
bias_norm                  ||b_l||                                                        weight
grad_to_weight             grad_norm / weight_norm                                        loss / weight^2
update_to_weight           ||W_l after - W_l before|| / ||W_l before|| of the last         ratio
                           optimiser step after this backward (NaN before one)
preact_rms                 sqrt(sum(h_l^2) / (B n_l))                                     activation
act_mean                   mean of a_l over batch and units                               activation
act_std                    standard deviation of a_l over batch and units                 activation
saturated_fraction         fraction of the B n_l entries with                             fraction
                           |phi'(h)| < saturation_threshold(phi) (see below)
zero_derivative_fraction   fraction of entries with phi'(h) == 0 (inactive units)         fraction
dead_fraction              fraction of units with phi'(h) == 0 for every sample           fraction
underflow_fraction         fraction of entries whose delta_l is 0 or below the smallest   fraction
                           normal (float32 1.18e-38, float64 2.2e-308) although the
                           error arriving from above, dL/da_l, and phi'(h) were not 0:
                           lost to underflow, not to a zero derivative (see below)
gain                       delta_norm[l] / delta_norm[l+1] (NaN for the output layer):    ratio
                           how much the error shrinks (< 1) or grows (> 1) through layer l+1
gsnr                       gradient signal-to-noise ratio of W_l: ||mean_i g_i||^2 /      ratio
                           mean_i ||g_i - mean_j g_j||^2, g_i = per-sample gradient
=========================  =============================================================  ============

Saturated, inactive and dead: one definition everywhere (this module, :func:`vgcore.diagnose`,
``vgcore compare`` and ``vgcore sweep``).  An entry is *saturated* when its derivative has
decayed smoothly to a small fraction of its maximum, ``|phi'(h)| < SATURATION_THRESHOLD *
max|phi'|``; this applies to the activations of :data:`SATURATING` (sigmoid, tanh, softsign, and
the one-sided tails of softplus, elu, selu, gelu and silu).  The piecewise-linear activations
(identity, relu, leaky_relu, hard_tanh) never saturate: their derivative takes fixed values, so
their ``saturated_fraction`` is 0 by definition, and an exactly zero derivative (relu below 0,
hard_tanh beyond +-1) makes the entry *inactive* (``zero_derivative_fraction``; a healthy relu
layer has about half its entries inactive).  A unit inactive on every sample of the batch is
*dead* (``dead_fraction``).

Underflow: ``underflow_fraction`` counts the entries of layer ``l`` where ``g = dL/da_l`` (the
error arriving from layer ``l+1``) and ``phi'(h)`` are both not 0, yet ``delta = g * phi'(h)``
is below the dtype's smallest normal in magnitude (0 included): the error was there and the
floating-point range lost it.  With ``flush_subnormals`` on (the default, see
:class:`vgcore.MLP`) ``g`` is read flushed, so an error that already arrived below the
smallest normal counts as 0 (it was lost in the layer above's matrix product, which under FTZ
also drops the products below the smallest normal before summing them), and the lost entries
are exactly 0; with it off they may be subnormal.  The reference computes the same statistic
(:meth:`vgcore.reference.ReferenceMLP.underflow_fraction`) with NumPy's IEEE products.  In a vanishing network the fraction
is large at the layers where the error leaves the range and 0 below them (nothing arrives any
more): ``delta_rms`` reads 0 there, and float64 shows the size the error really has.  The
output layer's is 0 (its error is the loss gradient).  For a normalised layer it is taken at
the activation (dL/dz), before the normalisation's backward.

Per-sample: ``per_sample_grad_norm`` (shape ``(n_layers, B)``): ``||dL_i/dW_l||`` for each
sample's own loss ``L_i`` (the batch loss is their mean); for a dense layer it is exactly
``B * ||x_{l,i}|| * ||delta_{l,i}||``, so it needs only the row norms the passes already have.

Scalars: ``grad_ratio`` = grad_norm of the first layer / grad_norm of the output layer;
``delta_ratio`` the same for delta_norm.  ``delta_ratio`` orders of magnitude below 1 means the
error vanishes on its way down, above 1 that it explodes.  ``grad_ratio`` can hide either:
``||dW_l|| ~ ||x_l|| ||delta_l||``, so when the forward signal shrinks (or grows) as fast as the
error grows (or shrinks), the two cancel (tanh under the standard initialisation);
:func:`vgcore.diagnose` looks at both.

``nonfinite_forward_layer`` / ``nonfinite_backward_layer``: the 1-based layer where a NaN or
Inf first appeared in the forward pass (pre-activations) or the backward pass (deltas and
gradients, which run from the output layer down), or None.  Values whose squares overflow the
dtype (|h| > 1.8e19 in float32) count as non-finite too: the sums that detect them overflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from vgcore import _engine
from vgcore.core import _contract
from vgcore.core.activations import ACTIVATIONS, max_derivative, resolve_activation

__all__ = ["GradientFlow", "RawSums", "SATURATION_THRESHOLD", "SATURATING",
           "saturation_threshold", "FIELDS", "derive"]

SATURATION_THRESHOLD = 0.05
"""A unit of a :data:`SATURATING` activation counts as saturated on a sample when
|phi'(h)| < 0.05 * max |phi'| (tanh: |h| > 2.3, sigmoid: |h| > 4.4, elu: h < -3)."""

SATURATING = tuple(name for name, spec in ACTIVATIONS.items() if spec.saturating)
"""The activations (read off each activation spec's ``saturating``) whose derivative decays smoothly towards zero (on both sides, or on the
negative side): the ones that can saturate.  The others (identity, relu, leaky_relu,
hard_tanh) are piecewise linear: their zero derivatives are counted as inactive, not
saturated."""


def saturation_threshold(activation) -> float:
    """The |phi'(h)| below which an entry of ``activation`` (a name or a
    :class:`vgcore.Activation`) counts as saturated: ``SATURATION_THRESHOLD * max|phi'|`` for
    the :data:`SATURATING` activations, 0 (never) for the piecewise-linear ones."""
    act = resolve_activation(activation)
    if act.name not in SATURATING:
        return 0.0
    return SATURATION_THRESHOLD * max_derivative(act)

# The fields of a layer's compiled measurement row (src/vg_kernels.h, VG_ST_*), by their names in
# src/vg_contract.h; their indices and count come from the compiled module, and importing this
# module fails if the two sides do not list the same fields.
STAT_FIELDS = ("sum_h2", "sum_a", "sum_a2", "sum_d2", "n_sat", "n_zero", "n_dead", "w2", "dw2",
               "b2", "db2", "uw2", "n_underflow")
_contract.require("measurement fields", STAT_FIELDS, _contract.STATISTICS)
(_SUM_H2, _SUM_A, _SUM_A2, _SUM_D2, _N_SAT, _N_ZERO, _N_DEAD, _W2, _DW2, _B2, _DB2,
 _UW2, _N_UNDERFLOW) = (_contract.STAT[name] for name in STAT_FIELDS)
N_STATS = _contract.N_STATS

FIELDS = ("delta_rms", "delta_norm", "grad_norm", "bias_grad_norm", "weight_norm",
          "bias_norm", "grad_to_weight", "update_to_weight", "preact_rms", "act_mean",
          "act_std", "saturated_fraction", "zero_derivative_fraction", "dead_fraction", "gain",
          "gsnr", "underflow_fraction")
_SCALARS = ("grad_ratio", "delta_ratio", "nonfinite_forward_layer", "nonfinite_backward_layer")
# The compiled derivation (src/vg_derive.h) computes these by the ids of its table; importing
# this module fails if the two sides do not list the same per-layer fields and scalars.
_contract.require("per-layer derived fields", FIELDS,
                  _contract.DERIVED[:_contract.N_LAYER_FIELDS])
_contract.require("derived scalars", _SCALARS, _contract.DERIVED[_contract.N_LAYER_FIELDS:])
_DERIVED_NAMES = _contract.DERIVED                      # in id order, the compiled side's
_LAZY = frozenset(FIELDS + ("per_sample_grad_norm", "dead_unit_mask", "grad_ratio",
                            "delta_ratio", "nonfinite_forward_layer",
                            "nonfinite_backward_layer"))
_WIDTHS: dict = {}


def layer_widths(sizes) -> np.ndarray:
    """The layers' widths (``sizes[1:]``) as a read-only float64 array, as the compiled
    derivation takes them; one array per network shape, shared."""
    w = _WIDTHS.get(sizes)
    if w is None:
        w = np.asarray(sizes[1:], np.float64)
        w.flags.writeable = False
        if len(_WIDTHS) < 64:
            _WIDTHS[sizes] = w
    return w


class RawSums(NamedTuple):
    """The sums one step's measurements derive from (read-only arrays of a snapshot)."""

    stats: np.ndarray           # (n_layers, N_STATS): the compiled measurement rows
    ps_mean_sq: np.ndarray      # (n_layers,): mean_i ||g_i||^2, g_i the per-sample gradient
    batch: int
    stepped: bool               # an optimiser step measured the update after the backward


def derive(name, stats, ps_mean_sq, widths, batch, stepped):
    """One field of :data:`FIELDS` (or ``grad_ratio``, ``delta_ratio``,
    ``nonfinite_forward_layer``, ``nonfinite_backward_layer`` as arrays) from raw sums,
    vectorised over any leading axes: ``stats`` ``(..., n_layers, N_STATS)``, ``ps_mean_sq``
    ``(..., n_layers)``, ``widths`` the layers' widths (float64, ``(n_layers,)``), ``batch`` and
    ``stepped`` scalars or arrays of shape ``(..., 1)``.  The non-finite layers come out
    1-based, 0 for none.

    This is the definition of every field, in NumPy.  :class:`GradientFlow` and
    :class:`vgcore.Recorder` compute the same numbers, bit for bit, in compiled code
    (``src/vg_derive.h``: every field of a step in one call, where this takes microseconds per
    field; ``tests/test_derive.py`` holds the two to each other)."""
    st = stats
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if name in ("delta_norm", "gain", "delta_ratio"):
            delta_norm = np.sqrt(st[..., _SUM_D2])
            if name == "delta_norm":
                return delta_norm
            if name == "delta_ratio":
                return delta_norm[..., 0] / delta_norm[..., -1]
            gain = np.full(delta_norm.shape, np.nan)
            gain[..., :-1] = delta_norm[..., :-1] / delta_norm[..., 1:]
            return gain
        if name == "grad_norm":
            return np.sqrt(st[..., _DW2])
        if name == "grad_ratio":
            grad_norm = np.sqrt(st[..., _DW2])
            return grad_norm[..., 0] / grad_norm[..., -1]
        if name == "weight_norm":
            return np.sqrt(st[..., _W2])
        if name == "bias_grad_norm":
            return np.sqrt(st[..., _DB2])
        if name == "bias_norm":
            return np.sqrt(st[..., _B2])
        if name == "grad_to_weight":
            return np.sqrt(st[..., _DW2]) / np.sqrt(st[..., _W2])
        if name == "update_to_weight":
            if np.ndim(stepped) == 0:
                if not stepped:
                    return np.full(st.shape[:-1], np.nan)
                return np.sqrt(st[..., _UW2]) / np.sqrt(st[..., _W2])
            return np.where(stepped, np.sqrt(st[..., _UW2]) / np.sqrt(st[..., _W2]), np.nan)
        if name == "gsnr":
            signal = st[..., _DW2]
            return signal / np.maximum(ps_mean_sq - signal, 0.0)
        if name == "dead_fraction":
            return st[..., _N_DEAD] / widths
        if name in ("nonfinite_forward_layer", "nonfinite_backward_layer"):
            L = st.shape[-2]
            if name == "nonfinite_forward_layer":
                bad = ~np.isfinite(st[..., _SUM_H2])
                return np.where(bad.any(axis=-1), np.argmax(bad, axis=-1) + 1, 0)
            bad = ~(np.isfinite(st[..., _SUM_D2]) & np.isfinite(st[..., _DW2])
                    & np.isfinite(st[..., _DB2]))
            return np.where(bad.any(axis=-1), L - np.argmax(bad[..., ::-1], axis=-1), 0)
        entries = batch * widths
        if name == "delta_rms":
            return np.sqrt(st[..., _SUM_D2] / entries)
        if name == "preact_rms":
            return np.sqrt(st[..., _SUM_H2] / entries)
        if name == "act_mean":
            return st[..., _SUM_A] / entries
        if name == "act_std":
            act_mean = st[..., _SUM_A] / entries
            return np.sqrt(np.maximum(st[..., _SUM_A2] / entries - act_mean ** 2, 0.0))
        if name == "saturated_fraction":
            return st[..., _N_SAT] / entries
        if name == "zero_derivative_fraction":
            return st[..., _N_ZERO] / entries
        if name == "underflow_fraction":
            return st[..., _N_UNDERFLOW] / entries
    raise ValueError(f"name: expected one of {', '.join(FIELDS + _SCALARS)}, got {name!r}")


def _no_buffer():
    return None


class FieldBuffer:
    """Where a flow given a measurement set derives its per-layer fields: the set's writable
    ``buffer`` (field after field) and a read-only array over each field (``views``), made
    once with the set, and the layers' widths the derivation takes (:func:`layer_widths`).
    A copy of the flow (``copy.deepcopy``, pickle) leaves it behind: its views would not be
    over the copied buffer, so the copy derives into arrays of its own."""

    __slots__ = ("buffer", "views", "widths")

    def __init__(self, buffer, views, widths):
        self.buffer = buffer
        self.views = views
        self.widths = widths

    def __deepcopy__(self, memo):
        return None

    def __reduce__(self):
        return (_no_buffer, ())


# A flow made by from_read_only holds what the measured step left in ``_snapshot``, a plain
# tuple (right after a step each object a read makes costs microseconds, and a named tuple's
# more than a plain one's): (stats, ps_mean_sq, batch, stepped, widths, in_norm2, delta_norm2,
# unit_zero, fields), read-only arrays that nothing writes while they are referenced (see
# from_buffers and from_read_only), and the set's FieldBuffer or None.


@dataclass(frozen=True)
class GradientFlow:
    """One step's per-layer measurements (see the module docstring for every definition).

    A flow from :meth:`vgcore.MLP.gradient_flow` is a snapshot that later steps never change:
    it holds read-only arrays over the few sums per layer the step left and its per-sample and
    per-unit arrays, and the network writes its next steps into other buffers while the flow,
    or any array taken from it, is alive (nothing is copied).
    The first field read derives every field from them (one compiled call, the numbers of
    :func:`derive`) into read-only arrays, kept; nothing is built per layer until asked
    (``print(flow)``, ``dead_units``).
    """

    sizes: tuple
    activations: tuple
    batch: int
    delta_rms: np.ndarray
    delta_norm: np.ndarray
    grad_norm: np.ndarray
    bias_grad_norm: np.ndarray
    weight_norm: np.ndarray
    bias_norm: np.ndarray
    grad_to_weight: np.ndarray
    update_to_weight: np.ndarray
    preact_rms: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    saturated_fraction: np.ndarray
    zero_derivative_fraction: np.ndarray
    dead_fraction: np.ndarray
    gain: np.ndarray
    gsnr: np.ndarray
    underflow_fraction: np.ndarray
    per_sample_grad_norm: np.ndarray
    dead_unit_mask: np.ndarray = field(repr=False)
    grad_ratio: float
    delta_ratio: float
    nonfinite_forward_layer: int | None
    nonfinite_backward_layer: int | None

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def dead_units(self) -> list:
        """Per hidden layer, a bool array over its units: True where phi'(h) == 0 for every
        sample of the batch.  (``dead_unit_mask`` holds them all, layer after layer.)"""
        ends = np.cumsum(self.sizes[1:-1])
        return np.split(self.dead_unit_mask, ends[:-1])

    @property
    def raw(self) -> RawSums | None:
        """The per-layer sums this flow derives from (:class:`RawSums`), or None for a flow
        built from its fields.  :class:`vgcore.Recorder` stores these and derives later."""
        snap = self.__dict__.get("_snapshot")
        return None if snap is None else RawSums(*snap[:4])

    @classmethod
    def from_buffers(cls, sizes, activations, batch, stats, in_norm2, delta_norm2, ps_mean_sq,
                     unit_zero, cum_width, stepped):
        """A snapshot of the raw sums the compiled passes wrote; every field is derived from it
        when first read.  Every array is copied (read-only copies, in one compiled call), so
        later passes, which write the same buffers, leave the flow as it is.

        ``sizes`` and ``activations`` (names) are tuples; ``stats`` the measurement rows
        (taken as float64, as the compiled passes write them), ``in_norm2`` and
        ``delta_norm2`` the per-sample squared row norms ``(n_layers, batch)``,
        ``ps_mean_sq`` their per-layer mean of ``B^2 in_norm2 delta_norm2``, ``unit_zero``
        the per-unit zero-derivative counts; ``stepped`` says whether an optimiser step
        (which measured the update) followed the backward."""
        L = len(sizes) - 1
        # the sums in native float64, as the compiled derivation reads them (a copy only
        # when they are not)
        stats = np.asarray(stats, np.float64)
        ps_mean_sq = np.asarray(ps_mean_sq, np.float64)
        return cls.from_read_only(sizes, activations, int(batch), _engine.snapshot_arrays(
            stats, ps_mean_sq, in_norm2, delta_norm2, unit_zero[:cum_width[L - 1]]),
            bool(stepped))

    @classmethod
    def from_read_only(cls, sizes, activations, batch, arrays, stepped, fields=None):
        """A flow over the arrays given, without copying them: ``arrays`` is ``(stats,
        ps_mean_sq, in_norm2, delta_norm2, unit_zero)`` as :meth:`from_buffers` takes them,
        ``unit_zero`` the hidden units' counts only, all read-only, and nothing may write
        them while they are referenced (:meth:`from_buffers`'s copies, or the measurement set
        :meth:`vgcore.MLP.gradient_flow` gives, which the network leaves alone while it is
        held).  ``batch`` is an int and ``stepped`` a bool, as the network keeps them.
        ``fields``: None, or the set's :class:`FieldBuffer`, to derive the per-layer fields
        into and hand out (its views count in the set's references; its ``widths`` are the
        layers'); without it the first field read allocates them."""
        stats, ps_mean_sq, in_norm2, delta_norm2, unit_zero = arrays
        # the arguments taken as they come and the widths from the set (a read right after a
        # step runs with the interpreter's code out of the caches: each call counts)
        snap = (stats, ps_mean_sq, batch, stepped,         # the order _first_read unpacks
                layer_widths(sizes) if fields is None else fields.widths,
                in_norm2, delta_norm2, unit_zero, fields)
        flow = object.__new__(cls)
        d = flow.__dict__
        d["sizes"] = sizes
        d["activations"] = activations
        d["batch"] = batch
        d["_snapshot"] = snap
        return flow

    def as_dict(self) -> dict:
        """Per-layer columns (``layer`` 1..L, ``width``, ``activation`` and every field of
        :data:`FIELDS`), ready for ``pandas.DataFrame(flow.as_dict())``."""
        d = {"layer": np.arange(1, self.n_layers + 1), "width": np.asarray(self.sizes[1:]),
             "activation": list(self.activations)}
        for name in FIELDS:
            d[name] = getattr(self, name)
        return d

    def summary(self, max_rows: int | None = 12) -> str:
        """A plain-text table of the main measurements, one row per layer.

        With more than ``max_rows`` layers, evenly spaced layers are shown (the first and the
        last always), a ``...`` row marks each gap with the layers it leaves out, and the last
        line says how many rows are not shown and how to see them all
        (``summary(max_rows=None)``).  ``print(flow)`` is ``summary()``.

        Parameters
        ----------
        max_rows : int >= 2 or None
            The most layers to show (default 12); None shows every layer.
        """
        if max_rows is not None and (isinstance(max_rows, (bool, np.bool_))
                                     or not isinstance(max_rows, (int, np.integer))
                                     or max_rows < 2):
            raise ValueError(f"max_rows: expected an integer >= 2 or None, got {max_rows!r}")
        L = self.n_layers
        idx = np.arange(L) if max_rows is None or L <= max_rows else np.unique(
            np.linspace(0, L - 1, max_rows).round().astype(int))
        lines = [f"{'layer':>5} {'act':>10} {'delta_rms':>10} {'grad_norm':>10} "
                 f"{'g/w':>9} {'gain':>7} {'sat':>6} {'inact':>6} {'dead':>6}"]
        prev = -1
        for l in map(int, idx):
            if l > prev + 1:
                lo, hi = prev + 2, l
                lines.append(f"{'...':>5} {'':>10} (layer{'s' if hi > lo else ''} "
                             f"{lo}{'-' + str(hi) if hi > lo else ''} not shown)")
            prev = l
            # the output layer has no layer above to take a gain from: '-', not NaN
            gain = f"{'-':>7}" if l == L - 1 else f"{self.gain[l]:7.3f}"
            lines.append(f"{l + 1:5d} {self.activations[l]:>10} {self.delta_rms[l]:10.3e} "
                         f"{self.grad_norm[l]:10.3e} {self.grad_to_weight[l]:9.2e} "
                         f"{gain} {self.saturated_fraction[l]:6.1%} "
                         f"{self.zero_derivative_fraction[l]:6.1%} "
                         f"{self.dead_fraction[l]:6.1%}")
        lines.append(f"first/last gradient norm: {self.grad_ratio:.3e}")
        if len(idx) < L:
            lines.append(f"{len(idx)} of {L} layers shown; summary(max_rows=None) shows all "
                         f"{L}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _first_read(flow, name):
    """The field ``name`` of a snapshot's flow, read for the first time (by its
    :class:`_LazyField`).  The first read of a field or ratio derives them all into the
    flow's ``_derived`` (in ``_DERIVED_NAMES`` order), where the descriptors read them
    from then on; a per-sample or per-unit array is kept under its own name, where it
    hides the descriptor."""
    d = flow.__dict__
    snap = d.get("_snapshot")
    if snap is None:
        raise AttributeError(f"{type(flow).__name__!r} object has no attribute {name!r}")
    stats, ps_mean_sq, batch, stepped, widths, in_norm2, delta_norm2, unit_zero, fields = snap
    if name == "per_sample_grad_norm":
        value = d[name] = np.sqrt((batch * batch) * in_norm2 * delta_norm2)
        return value
    if name == "dead_unit_mask":
        value = d[name] = unit_zero == batch
        return value
    # every field and ratio in one compiled call (vg_derive.h): into the set's arrays, or
    # (a flow without a set) into new ones
    if fields is None:
        derived = tuple(_engine.derive_flow(stats, ps_mean_sq, widths, batch, stepped))
    else:
        derived = fields.views + _engine.derive_into(stats, ps_mean_sq, widths, batch,
                                                     stepped, fields.buffer)
    d["_derived"] = derived
    return derived[_DERIVED_INDEX[name]]


class _LazyField:
    """A snapshot flow's field, derived at its first read (:func:`_first_read`) and then read
    from the flow's ``_derived``.  A non-data descriptor: a flow built from its fields has
    them in its ``__dict__``, which Python reads first.  Not ``__getattr__``, which Python
    calls only after a failed lookup has made and discarded an AttributeError: right after a
    step, that and putting 21 names into the flow's ``__dict__`` cost more than the derivation
    itself."""

    __slots__ = ("name", "index")

    def __init__(self, name):
        self.name = name
        self.index = _DERIVED_INDEX.get(name)

    def __get__(self, flow, owner=None):
        if flow is None:
            return self
        derived = flow.__dict__.get("_derived")
        if derived is None or self.index is None:
            return _first_read(flow, self.name)
        return derived[self.index]


_DERIVED_INDEX = {name: i for i, name in enumerate(_DERIVED_NAMES)}
for _name in sorted(_LAZY):     # set after @dataclass, which would take them for defaults
    setattr(GradientFlow, _name, _LazyField(_name))
del _name

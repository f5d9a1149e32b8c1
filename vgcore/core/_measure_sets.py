"""The buffers a measured step writes (the per-layer rows, the per-unit zero-derivative counts
and the per-sample norms), in sets that a :class:`~vgcore.flow.GradientFlow` can hold.

``gradient_flow()`` copies nothing: the flow is given read-only arrays over the set the step
wrote.  Before a pass writes a set that a flow, or any array taken from one, still holds, the
network moves to another set (``Engine.writable_set``), so a flow never changes.  A training
loop that reads a flow after each step holds one set while the next step writes another: two
or three sets, reused, no allocation and no copy.  A pass that writes only part of a set (an
optimiser step or a second backward after a read, the weight norms of a second read) first
copies the held set into the free one: a loop that reads before its update pays that copy at
every step.  A set also holds the fields its flows derive (one compiled call at the first
field read, into arrays made with the set), so a field, like the flow, holds its set.  A set
nobody holds any more is reused; one still held by flows (or parts of flows) the caller keeps
is left to them, freed with them, and a new set is made.
"""
from __future__ import annotations

import numpy as np

from vgcore import _engine
from vgcore.core import _contract
from vgcore.measure.flow import N_STATS, FieldBuffer, layer_widths

__all__ = ["MeasureSet", "MeasureSets"]


def _lease(owner: np.ndarray, n: int | None = None):
    """A read-only array over the first ``n`` entries of ``owner`` (all when None), shaped as
    ``owner`` (1-D when ``n`` is given), and the 1-D array every view taken from it has as its
    base (NumPy collapses a view's base to the first array whose own base is not an array:
    here a private object that offers no buffer, so no array can be made over the memory but
    from these).  Their reference counts say whether anything outside the set holds them."""
    flat = _engine.read_only_view(owner, owner.size if n is None else n)
    shaped = flat if n is not None or owner.ndim == 1 else flat.reshape(owner.shape)
    return shaped, flat


class MeasureSet:
    """One set of measurement buffers for a batch size: the writable arrays the compiled
    passes write (``stats``, ``unit_zero``, ``in_norm2``, ``delta_norm2``, ``ps_mean_sq``)
    and the read-only arrays over them that flows are given (``views``: stats, ps_mean_sq,
    in_norm2, delta_norm2 and the hidden units' counts).  And ``field_buffer``, where its
    flows put the per-layer fields they derive (:class:`~vgcore.flow.FieldBuffer`: a writable
    buffer, field after field, which a flow's first field read fills with
    ``_engine.derive_into``, the same numbers whichever flow of the set does; and a read-only
    array over each field, the flows' attributes), made once with the set, as right after a
    step making an array takes microseconds."""

    __slots__ = ("stats", "unit_zero", "in_norm2", "delta_norm2", "ps_mean_sq", "views",
                 "field_buffer", "objs", "free_refs")

    def __init__(self, sizes: tuple, batch: int, dtype):
        n_layers = len(sizes) - 1
        n_units = int(sum(sizes[1:]))
        n_hidden = int(sum(sizes[1:-1]))
        self.stats = np.zeros((n_layers, N_STATS), np.float64)
        self.unit_zero = np.zeros(n_units, dtype)
        self.in_norm2 = np.zeros((n_layers, batch), np.float64)
        self.delta_norm2 = np.zeros((n_layers, batch), np.float64)
        self.ps_mean_sq = np.zeros(n_layers, np.float64)
        nf = _contract.N_LAYER_FIELDS
        fields = np.zeros(nf * n_layers, np.float64)
        leases = [_lease(self.stats), _lease(self.ps_mean_sq), _lease(self.in_norm2),
                  _lease(self.delta_norm2), _lease(self.unit_zero, n_hidden), _lease(fields)]
        self.views = tuple(lease[0] for lease in leases[:5])
        # a field's array is a view of the fields' lease: its base, and that of any view
        # taken from it, is that lease (counted below), and the array itself is counted too
        flat = leases[5][0]
        field_views = tuple([flat[j * n_layers:(j + 1) * n_layers] for j in range(nf)])
        self.field_buffer = FieldBuffer(fields, field_views, layer_widths(tuple(sizes)))
        # every object a flow's array can keep alive (the shaped arrays and their bases), and
        # the sum of their reference counts while only the set refers to them
        self.objs = tuple({id(o): o for group in leases + [field_views]
                           for o in group}.values())
        # (the locals' references are not the set's own: counted without them)
        del leases, flat, fields, field_views
        self.free_refs = _engine.refcount_sum(self.objs)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.stats, self.unit_zero, self.in_norm2,
                                      self.delta_norm2, self.ps_mean_sq,
                                      self.field_buffer.buffer))


class MeasureSets:
    """A workspace's measurement sets: ``sets[0]`` the one the passes write, then up to two
    spares.  Two: a loop that reads a flow after the backward pass and then steps holds the
    previous step's set and this step's while the update writes a third.  The switch is
    compiled (``Engine.writable_set``: to a spare no flow holds, or to :meth:`new_set`), so
    that the list and the set the engine writes change together."""

    __slots__ = ("sets", "_shape")

    def __init__(self, sizes: tuple, batch: int, dtype):
        self._shape = (tuple(sizes), batch, dtype)
        self.sets = [MeasureSet(*self._shape)]

    @property
    def current(self) -> MeasureSet:
        return self.sets[0]

    def new_set(self) -> MeasureSet:
        """A new set of this workspace's shapes (for Engine.writable_set, when every set is
        held)."""
        return MeasureSet(*self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the sets tracked here (sets only flows still hold are theirs)."""
        return sum(s.nbytes for s in self.sets)

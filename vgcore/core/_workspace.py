"""A network's buffers for one batch size (the pre-activations, activations and errors of
every layer, dL/dX, the loss gradient, and for layers with options the normalised values,
block outputs and saved statistics), allocated once and reused by every pass."""
from __future__ import annotations

import numpy as np

from vgcore.core._measure_sets import MeasureSets

__all__ = ["Workspace"]


class Workspace:
    """Buffers for one batch size: pre-activations H, activations A, errors D of every layer
    (flat, layer after layer), dL/dX, and read-only views handed to the user."""

    __slots__ = ("batch", "H", "A", "D", "dX", "out", "dX_view", "loss_grad", "Z", "OUT", "NS",
                 "ns_stride", "msets")

    def __init__(self, batch, sizes, dtype, extras=False):
        total = batch * int(sum(sizes[1:]))
        self.batch = batch
        self.H = np.zeros(total, dtype)
        self.A = np.zeros(total, dtype)
        self.D = np.zeros(total, dtype)
        self.dX = np.zeros(batch * sizes[0], dtype)
        out = self.H[total - batch * sizes[-1]:].reshape(batch, sizes[-1])
        out.flags.writeable = False
        self.out = out
        dx = self.dX.reshape(batch, sizes[0])
        dx.flags.writeable = False
        self.dX_view = dx
        self.loss_grad = np.zeros((batch, sizes[-1]), dtype)
        # what the measured passes write (see vgcore.measure.flow), in sets flows can hold
        self.msets = MeasureSets(sizes, batch, dtype)
        if extras:      # normalised pre-activations, block outputs, saved statistics
            self.Z = np.zeros(total, dtype)
            self.OUT = np.zeros(total, dtype)
            self.ns_stride = max(batch, max(sizes[1:]))
            self.NS = np.zeros(2 * (len(sizes) - 1) * self.ns_stride, dtype)

    @property
    def nbytes(self):
        """Bytes of every buffer this workspace owns."""
        return sum(getattr(self, k).nbytes for k in ("H", "A", "D", "dX", "loss_grad", "Z", "OUT",
                                                     "NS") if hasattr(self, k))

    @property
    def measurement_nbytes(self):
        """Bytes of the measurement sets (not counted in :attr:`nbytes`)."""
        return self.msets.nbytes

    def aliases(self, a, backward=False) -> bool:
        """Whether the array ``a`` may overlap a buffer a pass is about to write: H, A, Z and
        OUT for the forward pass, D and dX for the backward pass.  Only the read-only views
        vgcore hands out can: a writable array is not one of ours."""
        if a.flags.writeable:
            return False
        if backward:
            bufs = (self.D, self.dX)
        else:
            bufs = (self.H, self.A) + ((self.Z, self.OUT) if hasattr(self, "Z") else ())
        return any(np.may_share_memory(a, b) for b in bufs)

"""vgcore's own exceptions (bad arguments raise the built-in ValueError and TypeError)."""
from __future__ import annotations

__all__ = ["NonFiniteError"]


class NonFiniteError(FloatingPointError):
    """A training step's forward or backward pass produced NaN or Inf.

    Raised by :meth:`vgcore.MLP.train_step` and by :func:`vgcore.fit` (``on_nonfinite=
    "raise"``) before the optimiser touches the parameters, so they are those before the step.
    Being a :class:`FloatingPointError`, it is caught by ``except FloatingPointError``; it is
    not a ValueError: the input was valid, the numbers overflowed.

    Attributes
    ----------
    where : {"forward", "backward"} or None
        The pass where the first NaN or Inf appeared.
    layer : int or None
        The 1-based layer where it appeared (the backward pass runs from the output layer
        down), when the network measures its gradient flow; None otherwise.
    step : int or None
        The training step (for :func:`vgcore.fit`), when known.
    """

    def __init__(self, message, where=None, layer=None, step=None):
        super().__init__(message)
        self.where, self.layer, self.step = where, layer, step

    def __reduce__(self):                    # picklable with its attributes (worker processes)
        return type(self), (self.args[0] if self.args else "", self.where, self.layer,
                            self.step)

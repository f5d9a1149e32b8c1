"""Optimisers: one compiled update over the network's flat parameter buffer."""
from __future__ import annotations

from vgcore._validation import check_finite_number

__all__ = ["SGD"]


class SGD:
    """Plain stochastic gradient descent: ``params -= lr * grads``, one pass over the flat
    buffer in compiled code.

    Parameters
    ----------
    net : vgcore.MLP
    lr : float, > 0
    """

    def __init__(self, net, lr=0.01):
        if not hasattr(net, "params") or not hasattr(net, "grads"):
            raise TypeError(f"net: expected a vgcore.MLP, got {type(net).__name__}")
        self.net = net
        self.lr = check_finite_number(lr, "lr", positive=True)

    def step(self) -> None:
        """Apply one update with the gradients of the last backward pass."""
        self.net._sgd_step(self.lr)

    def zero_grad(self) -> None:
        """Set every gradient to zero (backward overwrites them; this is for manual use)."""
        self.net.grads[...] = 0

    def __repr__(self):
        return f"SGD(lr={self.lr})"

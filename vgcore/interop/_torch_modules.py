"""PyTorch modules for the parts of a vgcore network that ``torch.nn`` has no module for.

Imported only by :mod:`vgcore.interop.torch_bridge` when PyTorch is used (it imports torch).
"""
from __future__ import annotations

from torch import nn

__all__ = ["Residual"]


class Residual(nn.Module):
    """A residual block ``x + alpha * body(x)``, vgcore's ``residual=alpha`` hidden layer.

    ``body`` is ``nn.Sequential(nn.Linear(n, n), [nn.BatchNorm1d(n) or nn.LayerNorm(n)],
    activation)``; a dropout of the block goes after it, outside (vgcore drops the block's
    output, after the sum).  :func:`vgcore.interop.torch_bridge.from_torch` maps it back to a
    residual layer.

    Parameters
    ----------
    body : nn.Module
    alpha : float
        The scale of the branch.
    """

    def __init__(self, body: nn.Module, alpha: float = 1.0):
        super().__init__()
        self.body = body
        self.alpha = float(alpha)

    def forward(self, x):
        return x + self.alpha * self.body(x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha!r}"

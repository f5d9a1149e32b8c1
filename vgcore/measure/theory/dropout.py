"""Dropout at initialisation (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep
information propagation", section 5), for vgcore's inverted dropout: in training mode each
hidden layer's output is multiplied by ``mask / (1 - p)``, ``mask`` i.i.d. Bernoulli(1 - p),
after the residual sum (:class:`vgcore.reference.ReferenceMLP`).

* The kept units are scaled by ``1 / (1 - p)``, so the second moment of a layer's output is
  multiplied by ``E[mask^2] / (1 - p)^2 = 1 / (1 - p)``: the variance map becomes
  ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] / (1 - p) + sigma_b2``, and its fixed point ``q*`` moves
  up (:func:`vgcore.theory.fixed_point` with ``dropout=p``).
* Backwards the same mask multiplies ``dL/dx``: ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] /
  (1 - p)`` (:func:`vgcore.theory.chi1`), so the edge of chaos ``chi_1 = 1`` moves to a
  smaller ``sigma_w2`` (exactly by the factor ``1 - p`` for relu: ``sigma_w2* = 2 (1 - p)``).
* Two different examples get independent masks, so their cross moment is not scaled: the
  correlation map's ``C(1) = (sigma_w2 s + sigma_b2) / (sigma_w2 s / (1 - p) + sigma_b2) < 1``.
  Its fixed point ``c*`` is below 1 at every ``sigma_w2``, ``chi_c = sigma_w2 E[phi'(u_1)
  phi'(u_2)]`` at ``c* < 1`` is below 1, and the correlation depth scale ``xi_c`` stays finite
  even where ``chi_1 = 1``: dropout moves the network off criticality, and the depth to which
  signals (and so training, Schoenholz et al.'s ``6 xi_c``) propagate stays bounded however
  the weights are initialised.

:func:`dropout_effect` puts the numbers with and without dropout side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vgcore.measure.theory import _common as C
from vgcore.measure.theory import mean_field as MF

__all__ = ["DropoutEffect", "dropout_effect"]


@dataclass(frozen=True)
class DropoutEffect:
    """Mean-field quantities of one ``(activation, sigma_w2, sigma_b2)`` without and with
    dropout ``p`` (each a :class:`vgcore.theory.DepthScales`), and the critical ``sigma_w2``
    (``chi_1 = 1``) of each (nan where ``chi_1`` does not cross 1)."""

    p: float
    without: MF.DepthScales
    with_dropout: MF.DepthScales
    critical_sigma_w2_without: float
    critical_sigma_w2_with: float

    @property
    def trainable_depth(self):
        """``6 xi_c`` without and with dropout (Schoenholz et al.'s bound on the depth that
        trains; inf at criticality without dropout, finite with it)."""
        return 6.0 * self.without.xi_c, 6.0 * self.with_dropout.xi_c


def dropout_effect(activation, sigma_w2, sigma_b2, p, *, q0=1.0, quadrature="composite"):
    """How dropout ``p`` shifts ``q*``, ``chi_1``, ``c*``, ``xi_c`` and the critical
    ``sigma_w2`` of a plain stack (see the module docstring).

    Returns
    -------
    DropoutEffect
    """
    act, sw, sb, quad = C.common(activation, sigma_w2, sigma_b2, quadrature)
    p = C.probability(p, "p")
    q0 = C.number(q0, "q0")
    without = MF.depth_scales(act, sw, sb, q0=q0, quadrature=quad)
    with_d = MF.depth_scales(act, sw, sb, q0=q0, dropout=p, quadrature=quad)
    crit = []
    for keep in (1.0, 1.0 - p):
        value, _ = MF._critical_plain(act, sb, q0, 1e-12, quad, keep)
        crit.append(math.nan if value is None else value)
    return DropoutEffect(p, without, with_d, crit[0], crit[1])

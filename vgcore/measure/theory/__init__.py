"""Theory beside the measurements: what signal propagation in a randomly initialised network
predicts for the networks of :class:`vgcore.MLP`, and the input-output Jacobian of the real one.

One module per topic (each with its derivation and references; ``docs/theory.md`` collects
them):

``vgcore.theory.mean_field``
    The variance map, its fixed point ``q*``, ``chi_1``, the correlation map and the depth
    scales of plain stacks (Poole et al. 2016, Schoenholz et al. 2017).
``vgcore.theory.residual``
    Residual blocks ``x + alpha phi(x W + b)``: the forward recursion of the second moment and
    the mean, and the backward one, for ``alpha``, ``"auto"`` and zero-initialised branches.
``vgcore.theory.normalisation``
    Batch norm at initialisation (Yang et al. 2019: ``lambda(B)``, the backward explosion per
    layer) and layer norm (its variance map and ``chi_1``).
``vgcore.theory.dropout``
    How dropout moves the fixed point, ``chi_1`` and the correlations off criticality.
``vgcore.theory.finite_width``
    The per-example spread of the log-profile at finite width (Hanin & Rolnick 2018).
``vgcore.theory.measured_jacobian``
    The input-output Jacobian measured with the engine, and its singular values.
``vgcore.theory.spectrum``
    The distribution of the Jacobian's squared singular values predicted by free probability
    (Pennington et al. 2017, 2018); dynamical isometry.  Re-exports the measured Jacobian.
``vgcore.theory.profile``
    The integration point for reports and sweeps: :func:`predicted_gradient_profile` for any
    network vgcore builds.
``vgcore.theory.critical``
    :func:`critical_point` / :func:`critical_sigma_w2` for the critical line,
    :func:`gradient_growth` for the per-layer factor (also importable from ``profile``).

Networks: hidden layers ``h_l = x_{l-1} W_l + b_l``, then the optional normalisation ``z_l``,
``a_l = phi(z_l)``, the optional residual sum and dropout, and a linear output layer; weights
``W_l[i, j]`` with variance ``sigma_w2 / fan_in`` (:func:`effective_sigma_w2` for vgcore's
initialisers) and biases ``b_l[j] ~ N(0, sigma_b2)``, all independent.  In the limit of
infinite width every pre-activation is a centred Gaussian over the draw of the weights.

Definitions (``z, z1, z2`` independent standard normals, ``E`` their expectation):

q (pre-activation variance)
    ``q_l = E[h_l[j]^2]`` of hidden layer ``l``, in the units of the pre-activations squared.
    The input is not passed through ``phi``: with ``q_x`` the mean squared entry of the input
    row, ``q_1 = sigma_w2 q_x + sigma_b2``.
variance map
    ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``, so that ``q_{l+1} = V(q_l)``.
q* (fixed point)
    the limit of ``q_{l+1} = V(q_l)`` from a starting pre-activation variance; see
    :func:`fixed_point`.
chi_1
    ``sigma_w2 E[phi'(sqrt(q) z)^2]`` at ``q = q*``: the factor by which the expected squared
    norm of the backpropagated error ``delta_l = dL/dh_l`` grows per layer going towards the
    input, and the slope of the correlation map at ``c = 1``.  ``chi_1 < 1``: ordered phase
    (gradients vanish); ``chi_1 > 1``: chaotic phase (gradients explode); ``chi_1 = 1``: the
    edge of chaos (see :func:`critical_sigma_w2`).
correlation map
    for two inputs whose pre-activations have variance ``q*`` and correlation ``c``,
    ``u1 = sqrt(q*) z1``, ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)`` and
    ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*``; ``c*`` is its stable fixed point
    and ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``c*`` (``= C'(c*)``).
depth scales (in layers)
    ``xi_c = -1 / ln(chi_c)``, the depth over which the correlation of two inputs relaxes to
    ``c*`` (by a factor e), and ``xi_grad = -1 / ln(chi_1)``, the depth over which
    ``E||delta_l||^2`` changes by a factor e (see :class:`DepthScales` for the signs).

Gaussian expectations are computed in float64 with the package's own activation definitions
(:func:`vgcore.reference.activation_forward` and :func:`~vgcore.reference.activation_derivative`,
so the kink conventions are the engine's: ``relu'(0) = 0``).  Two quadrature rules are offered
through the ``quadrature`` argument of every function:

``"composite"`` (the default)
    composite 16-point Gauss-Legendre on ``|z| <= 10`` (the rest of the line carries a
    probability of 1.5e-23), with panel breaks at every integer ``z``, at ``h = 0`` and at
    ``h = +-2^k`` (``k >= -2``, ``h`` the pre-activation), so that no panel straddles a kink
    (0 for relu, leaky_relu, elu, selu, softsign; +-1 for hard_tanh) and the region
    ``|h| <~ 1`` where every activation bends is resolved however large or small ``q`` is.
    It agrees with adaptive quadrature (scipy.integrate.quad split at the kinks) to 1e-12
    relative or better for every activation and ``1e-6 <= q <= 1e4``, and with closed-form
    asymptotics at ``q = 1e8``, where quad itself fails.
an int ``n``
    plain Gauss-Hermite with ``n`` probabilists' nodes
    (:func:`numpy.polynomial.hermite_e.hermegauss`, ``2 <= n <= 300``), the textbook rule.
    Exact for polynomials of degree ``< 2n`` but slowly convergent across kinks and at large
    ``q``: with 200 nodes ``E[selu(z)]`` comes out as -5.8e-4 instead of 0, and
    ``E[tanh(10 z)^2]`` is off by 1.6e-2.  Use an even ``n``: an odd ``n`` puts a node at
    exactly 0, where a kinked derivative takes one side's value (``relu'(0) = 0``), so that
    e.g. ``chi_1`` for relu at ``sigma_w2 = 2`` becomes ``1 - w_0`` (0.912 for n = 201)
    instead of 1.

Where ``q = 0`` the pre-activations are exactly 0 and ``V(0) = sigma_w2 phi(0)^2 + sigma_b2``;
expectations of ``phi'`` are then taken in the limit ``q -> 0+`` (``relu`` gives
``E[relu'(sqrt(q) z)^2] = 1/2``, not ``relu'(0)^2 = 0``).  A zero-initialised residual branch
is different: its pre-activations are exactly 0 and the profile uses ``phi'(0)`` itself.

Batch norm's expectations are over the uniform distribution on a sphere (its output at
initialisation) and use an angular composite rule of the same kind (accurate to ~1e-12).
"""
import sys as _sys

from vgcore.measure.theory import (critical, dropout, finite_width, mean_field,  # noqa
                                   measured_jacobian, normalisation, profile, residual,
                                   spectrum)
from vgcore.measure.theory.dropout import DropoutEffect, dropout_effect
from vgcore.measure.theory.finite_width import gradient_log_moments, log_gain_moments
from vgcore.measure.theory.mean_field import (DepthScales, chi1, correlation_map,
                                              depth_scales, effective_sigma_w2, fixed_point,
                                              variance_map, variance_sequence)
from vgcore.measure.theory.normalisation import (BatchNormStats, batch_norm_gradient_factor,
                                                 batch_norm_stats, layer_norm_chi1,
                                                 layer_norm_fixed_point,
                                                 layer_norm_variance_map)
from vgcore.measure.theory.critical import (CriticalPoint, GradientGrowth, critical_point,
                                            critical_sigma_w2, gradient_growth)
from vgcore.measure.theory.profile import GradientProfile, predicted_gradient_profile
from vgcore.measure.theory.residual import residual_alpha, residual_moments
from vgcore.measure.theory.measured_jacobian import (JacobianSpectrum, jacobian,
                                                     jacobian_singular_values)
from vgcore.measure.theory.spectrum import SpectrumPrediction, predicted_jacobian_spectrum

__all__ = [
    # mean field (plain stacks)
    "variance_map", "variance_sequence", "fixed_point", "chi1", "correlation_map",
    "depth_scales", "DepthScales", "effective_sigma_w2",
    # whole networks, critical lines, growth factors
    "predicted_gradient_profile", "GradientProfile", "critical_sigma_w2", "critical_point",
    "CriticalPoint", "gradient_growth", "GradientGrowth",
    # residual blocks, normalisation, dropout, finite width
    "residual_moments", "residual_alpha", "batch_norm_gradient_factor", "batch_norm_stats",
    "BatchNormStats", "layer_norm_variance_map", "layer_norm_fixed_point", "layer_norm_chi1",
    "dropout_effect", "DropoutEffect", "log_gain_moments", "gradient_log_moments",
    # Jacobians
    "jacobian", "jacobian_singular_values", "JacobianSpectrum", "predicted_jacobian_spectrum",
    "SpectrumPrediction",
]

# ``vgcore.theory`` names this package (see vgcore/__init__.py); make ``vgcore.theory.residual``
# and the other submodules the same module objects under that name too, so that importing one
# by either path never loads a second copy.
for _name in ("critical", "dropout", "finite_width", "mean_field", "measured_jacobian",
              "normalisation", "profile", "residual", "spectrum"):
    _sys.modules.setdefault("vgcore.theory." + _name, _sys.modules[__name__ + "." + _name])
del _name

"""Weight initialisers: ``W`` of shape ``(fan_in, fan_out)``, variances as documented.

==============  ==========================================  ===========================
name            distribution of each weight                 variance
==============  ==========================================  ===========================
standard        U(-1/sqrt(fan_in), +1/sqrt(fan_in))         1 / (3 fan_in)
                (Glorot & Bengio's "standard"; PyTorch's nn.Linear default)
glorot_uniform  U(+-sqrt(6 / (fan_in + fan_out)))           2 / (fan_in + fan_out)
glorot_normal   N(0, 2 / (fan_in + fan_out))                2 / (fan_in + fan_out)
he_uniform      U(+-sqrt(6 / fan_in))                       2 / fan_in
he_normal       N(0, 2 / fan_in)                            2 / fan_in
lecun_uniform   U(+-sqrt(3 / fan_in))                       1 / fan_in
lecun_normal    N(0, 1 / fan_in)                            1 / fan_in
orthogonal      gain * Q, Q with orthonormal rows or        gain^2 / max(fan_in, fan_out)
                columns (QR of a Gaussian matrix, signs     on average
                fixed by R's diagonal); gain = sigma_w or 1
normal          N(0, sigma_w^2 / fan_in)                    sigma_w^2 / fan_in
==============  ==========================================  ===========================

Biases are zero, or N(0, sigma_b^2) when ``sigma_b`` is given.  Values are drawn in float64 from
``numpy.random.default_rng(seed)``, layer by layer (weights, then biases), then rounded to the
network's dtype: the same seed gives the same network.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["INITIALISERS", "init_weight", "check_init", "init_name"]

INITIALISERS = (
    "standard", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    "lecun_uniform", "lecun_normal", "orthogonal", "normal",
)


def _check_scale(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a non-negative number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return value


def init_name(init) -> str:
    """The canonical name of an initialiser (see :data:`INITIALISERS`), or a clear error."""
    if not isinstance(init, str):
        raise TypeError(f"init: expected an initialiser name (str), got {type(init).__name__}")
    key = init.strip().lower()
    if key not in INITIALISERS:
        raise ValueError(f"init: unknown initialiser {init!r}; expected one of "
                         f"{', '.join(INITIALISERS)}")
    return key


def check_init(init, sigma_w=None, sigma_b=None):
    """Validate an initialiser name and its scales; returns ``(name, sigma_w, sigma_b)``."""
    key = init_name(init)
    sigma_w = _check_scale("sigma_w", sigma_w)
    sigma_b = _check_scale("sigma_b", sigma_b)
    if key == "normal" and sigma_w is None:
        raise ValueError("init='normal' needs sigma_w: W ~ N(0, sigma_w^2 / fan_in)")
    if sigma_w is not None and key not in ("normal", "orthogonal"):
        raise ValueError(f"sigma_w applies to init='normal' and init='orthogonal' (as the gain), "
                         f"not to init={key!r}")
    return key, sigma_w, sigma_b


def init_weight(rng: np.random.Generator, name: str, fan_in: int, fan_out: int,
                sigma_w: float | None = None) -> np.ndarray:
    """Draw one ``(fan_in, fan_out)`` float64 weight matrix from the named initialiser."""
    shape = (fan_in, fan_out)
    if name == "standard":
        a = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-a, a, shape)
    if name == "glorot_uniform":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, shape)
    if name == "glorot_normal":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if name == "he_uniform":
        a = math.sqrt(6.0 / fan_in)
        return rng.uniform(-a, a, shape)
    if name == "he_normal":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if name == "lecun_uniform":
        a = math.sqrt(3.0 / fan_in)
        return rng.uniform(-a, a, shape)
    if name == "lecun_normal":
        return rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)
    if name == "normal":
        assert sigma_w is not None                       # check_init requires it
        return rng.normal(0.0, sigma_w / math.sqrt(fan_in), shape)
    if name == "orthogonal":
        gain = 1.0 if sigma_w is None else sigma_w
        big, small = max(fan_in, fan_out), min(fan_in, fan_out)
        q, r = np.linalg.qr(rng.normal(0.0, 1.0, (big, small)))
        q *= np.sign(np.diag(r))          # a uniform (Haar) draw, not one biased by QR's signs
        return gain * (q if fan_in >= fan_out else q.T)
    raise ValueError(f"init: unknown initialiser {name!r}")

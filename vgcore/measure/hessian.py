"""Hessian-vector products and the top Hessian eigenvalue of the loss, by central differences
of the engine's own gradients (the numerical core of :mod:`vgcore.curvature`, whose docstring
gives the method, its accuracy and its side effects).
"""
from __future__ import annotations


import numpy as np

from vgcore.core import losses as _losses
from vgcore.core._validation import check_finite_number, check_positive_int
from vgcore.core.network import MLP

__all__ = ["loss_and_grad", "hessian_vector_product", "top_eigenvalue", "default_eps"]


# ------------------------------------------------------------------------------ helpers
def _check_net(net, name="net"):
    if not isinstance(net, MLP):
        raise TypeError(f"{name}: expected a vgcore.MLP, got {type(net).__name__}")
    return net


def _check_loss(loss):
    # raises ValueError naming ``loss`` for an unknown name
    return _losses.get(loss)


def _check_vector(v, name, n):
    """A 1-D finite real vector of ``n`` entries, returned as a new float64 array."""
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of shape ({n},) (like net.params), "
                        f"got {type(v).__name__}")
    if v.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real (float or integer) array, got dtype "
                        f"{v.dtype}")
    if v.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) (net.n_params entries, like "
                         f"net.params), got {v.shape}")
    out = np.array(v, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        n_bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN or Inf "
                         f"entr{'y' if n_bad == 1 else 'ies'}")
    return out


def default_eps(net, v) -> float:
    """The finite-difference step :func:`hessian_vector_product` uses when ``eps`` is None.

    ``eps = (u (1 + ||w||))^(1/3) / ||v||``, with ``u`` the unit roundoff of the network's
    dtype (``np.finfo(dtype).eps``), ``w = net.params`` and 2-norms: the perturbation
    ``eps v`` has length ``h = (u (1 + ||w||))^(1/3)``, which balances the ``O(h^2)`` truncation
    error of a central difference against the ``O(u ||w|| / h)`` error of rounding
    ``w +- eps v`` to the network's dtype (see the module's *Accuracy*).

    Parameters
    ----------
    net : vgcore.MLP
    v : ndarray of shape (net.n_params,), not zero

    Returns
    -------
    float
    """
    _check_net(net)
    v = _check_vector(v, "v", net.n_params)
    nv = float(np.linalg.norm(v))
    if nv == 0:
        raise ValueError("v: expected a nonzero vector, got all zeros")
    return _eps_for(net, float(np.linalg.norm(net.params.astype(np.float64))), nv)


def _eps_for(net, w_norm, v_norm):
    return (float(np.finfo(net.dtype).eps) * (1.0 + w_norm)) ** (1.0 / 3.0) / v_norm


class _Probe:
    """Evaluates engine gradients at chosen parameter vectors; on exit restores ``params``
    (bit-identical), ``grads``, the measurement setting, batch norm's running averages and the
    dropout counter.  Every evaluation uses the same dropout masks (the counter is held), so the
    loss is one deterministic function of the parameters, in the network's current mode."""

    def __init__(self, net, X, y, loss):
        self.net = net
        self.X = X
        self.y = y
        self.fn = _check_loss(loss)
        self.dout = None

    def __enter__(self):
        net = self.net
        self.params = net.params.copy()
        self.w64 = self.params.astype(np.float64)
        self.grads = net.grads.copy()
        self.norm_buffers = [b.copy() for b in net.norm_buffers]
        self.counter = net.dropout_counter
        self.measure = net.measure
        if self.measure:
            net.measure = False
        return self

    def __exit__(self, *exc):
        net = self.net
        net.params[...] = self.params
        net.grads[...] = self.grads
        for dst, src in zip(net.norm_buffers, self.norm_buffers):
            dst[...] = src
        net.dropout_counter = self.counter
        if self.measure:
            net.measure = True
        return False

    def grad(self, w=None):
        """(loss, gradient as a new float64 array) at parameters ``w`` (None: the saved ones)."""
        net = self.net
        net.params[...] = self.params if w is None else w
        net.dropout_counter = self.counter
        out = net.forward(self.X)
        if self.dout is None or self.dout.shape != out.shape:
            self.dout = np.empty(out.shape, net.dtype)
        value, dout = self.fn(out, self.y, grad_out=self.dout)
        net.backward(dout, input_grad=False, overwrite_dout=dout is self.dout)
        return float(value), net.grads.astype(np.float64)

    def hvp(self, v, eps):
        """H v (float64) by a central difference with step ``eps`` along ``v`` (float64)."""
        w = self.w64
        dt = self.net.dtype
        _, g_plus = self.grad((w + eps * v).astype(dt))
        _, g_minus = self.grad((w - eps * v).astype(dt))
        g_plus -= g_minus
        g_plus *= 1.0 / (2.0 * eps)
        return g_plus


# ------------------------------------------------------------------------------ public API
def loss_and_grad(net, X, y, loss="cross_entropy"):
    """The loss and its gradient with respect to every parameter, by the engine.

    Parameters
    ----------
    net : vgcore.MLP
    X : ndarray of shape (batch, net.sizes[0]), the network's dtype, C-contiguous, finite
    y : ndarray
        What ``loss`` takes as its second argument: integer labels of shape ``(batch,)`` for
        ``"cross_entropy"``, targets of the output's shape and dtype for ``"mse"`` and
        ``"binary_cross_entropy"``.
    loss : str or callable
        A name of :mod:`vgcore.losses` (or such a function); default ``"cross_entropy"``.

    Returns
    -------
    loss : float
    grad : ndarray of shape (net.n_params,), the network's dtype
        A copy of the gradient buffer (ordered like ``net.params``: W_1, b_1, W_2, ...).

    Notes
    -----
    ``net.params`` are not touched.  The backward pass writes ``net.grads``; it is saved before
    and written back after, so gradients the caller computed (e.g. by ``train_step`` before an
    optimiser step) survive.  See the module's *Side effects* for the last forward pass and the
    gradient-flow measurements.
    """
    _check_net(net)
    with _Probe(net, X, y, loss) as probe:
        value, _ = probe.grad()
        g = net.grads.copy()
    return value, g


def hessian_vector_product(net, X, y, v, loss="cross_entropy", eps=None):
    """The product ``H v`` of the loss Hessian with a vector, by central differences of engine
    gradients.

    ``H v ~= (g(w + eps v) - g(w - eps v)) / (2 eps)`` with ``w = net.params`` and ``g`` the
    gradient of ``loss`` over the batch ``(X, y)``: two forward and two backward passes.

    Parameters
    ----------
    net : vgcore.MLP
    X, y, loss
        The batch and the loss, as in :func:`loss_and_grad`.
    v : ndarray of shape (net.n_params,), real, finite
        A direction in parameter space, ordered like ``net.params``.
    eps : float > 0, optional
        The step along ``v`` (the parameters are moved by ``+-eps * v``).  Default: see
        :func:`default_eps`, ``(u (1 + ||w||))^(1/3) / ||v||`` with ``u`` the network dtype's
        unit roundoff.

    Returns
    -------
    ndarray of shape (net.n_params,), float64
        ``H v`` (zeros when ``v`` is zero).

    Notes
    -----
    The difference and the division are taken in float64.  Accuracy (relative to ``||H v||``,
    measured): about 1e-10 (up to 2e-9) for float64 networks, 2e-5..1e-3 for float32 ones; use
    float64 for curvature.  The result is exact (to that accuracy) for losses quadratic in
    ``w``; for others the truncation error is ``O(eps^2)`` times the third derivative, and kinked
    activations (relu, hard_tanh, ...) make the Hessian itself ill-defined at the kinks.

    ``net.params`` are restored bit-identical and ``net.grads`` are saved and restored; see the
    module's *Side effects*.
    """
    _check_net(net)
    v = _check_vector(v, "v", net.n_params)
    if eps is not None:
        eps = check_finite_number(eps, "eps", positive=True)
    _check_loss(loss)
    nv = float(np.linalg.norm(v))
    if nv == 0:
        return np.zeros(net.n_params, np.float64)
    if eps is None:
        eps = _eps_for(net, float(np.linalg.norm(net.params.astype(np.float64))), nv)
    with _Probe(net, X, y, loss) as probe:
        return probe.hvp(v, eps)


def top_eigenvalue(net, X, y, loss="cross_entropy", iters=20, tol=1e-4, seed=0, v0=None,
                   *, shift=0.0):
    """The Hessian eigenvalue of largest magnitude, by power iteration on Hessian-vector
    products.

    Each iteration takes one product ``u = H v`` (:func:`hessian_vector_product`, two forward
    and two backward passes), the Rayleigh quotient ``lambda = v . u`` (``||v|| = 1``) and
    ``v <- u / ||u||``; it stops when ``|lambda_k - lambda_{k-1}| <= tol * |lambda_k|`` or
    after ``iters`` products.

    Parameters
    ----------
    net : vgcore.MLP
    X, y, loss
        The batch and the loss, as in :func:`loss_and_grad`.
    iters : int >= 1
        The most Hessian-vector products to take; default 20.
    tol : float >= 0
        Relative change of the estimate between two iterations that stops the iteration;
        default 1e-4.  0 runs all ``iters``.
    seed : int or None
        Seed of the random (standard normal) start when ``v0`` is None.
    v0 : ndarray of shape (net.n_params,), optional
        The start vector, e.g. the eigenvector of an earlier call (a *warm start*: during
        training the top eigenvector moves slowly, so a warm start converges in a few
        iterations instead of many).
    shift : float, keyword-only
        Run the iteration on ``H - shift * I`` instead of ``H`` (default 0).  The value
        returned is still an eigenvalue of ``H`` (the Rayleigh quotient of ``H``).

    Returns
    -------
    lambda_max : float
        The estimate of the eigenvalue of largest magnitude (of ``H - shift I``, reported as the
        eigenvalue of ``H``), with its sign.
    eigenvector : ndarray of shape (net.n_params,), float64, unit 2-norm
        The last iterate ``H v / ||H v||``; pass it as ``v0`` to warm-start the next call.
    n_iters : int
        Hessian-vector products taken.  ``n_iters == iters`` may mean the tolerance was not
        met: raise ``iters`` or accept the estimate.

    Notes
    -----
    Power iteration finds the eigenvalue of largest *magnitude*, and converges at the rate
    ``|lambda_2 / lambda_1|`` per iteration (the estimate, a Rayleigh quotient of a symmetric
    matrix, at its square).  The stopping test measures the change of the estimate, not its
    error: when ``|lambda_2 / lambda_1|`` is close to 1 the error can exceed ``tol`` several
    times over, so lower ``tol`` (and raise ``iters``) for a precise value.

    A negative result means negative curvature dominates; then the largest *algebraic*
    eigenvalue (the sharpness that limits gradient descent) is found with ``shift=lam`` (the
    negative value just found): every eigenvalue of ``H - lam I`` is ``>= 0`` and the largest
    is ``lambda_max - lam``.  Likewise ``shift=lambda_max`` (a
    positive one) gives the smallest, most negative eigenvalue.  Only the eigenvalue is
    computed, never ``H`` itself.

    ``net.params`` are restored bit-identical and ``net.grads`` are saved and restored; see the
    module's *Side effects*.
    """
    _check_net(net)
    iters = check_positive_int(iters, "iters")
    tol = check_finite_number(tol, "tol", nonnegative=True)
    shift = check_finite_number(shift, "shift")
    _check_loss(loss)
    n = net.n_params
    if v0 is None:
        if seed is not None and (isinstance(seed, bool)
                                 or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
        v = np.random.default_rng(seed).standard_normal(n)
    else:
        v = _check_vector(v0, "v0", n)
    nv = float(np.linalg.norm(v))
    if nv == 0:
        raise ValueError("v0: expected a nonzero start vector, got all zeros")
    v /= nv

    eps = _eps_for(net, float(np.linalg.norm(net.params.astype(np.float64))), 1.0)
    lam = lam_prev = np.nan
    k = 0
    with _Probe(net, X, y, loss) as probe:
        for k in range(1, iters + 1):
            u = probe.hvp(v, eps)
            lam = float(v @ u)
            if shift:
                u -= shift * v
            nu = float(np.linalg.norm(u))
            if nu == 0:          # v is in the null space of H - shift I: lambda = shift
                break
            v = u / nu
            if k > 1 and abs(lam - lam_prev) <= tol * abs(lam):
                break
            lam_prev = lam
    return lam, v, k

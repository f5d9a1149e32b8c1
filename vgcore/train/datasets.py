"""Small datasets made in code (nothing is downloaded), seeded and reproducible.

Every function returns ``(X, y)``: ``X`` a C-contiguous float32 (or ``dtype``) array of shape
``(n, features)``, ready for :class:`vgcore.MLP`; ``y`` int64 class labels, or (for
:func:`teacher_student`) float regression targets of shape ``(n, n_outputs)`` in ``dtype``.

=================  =========================================================================
name               what
=================  =========================================================================
gaussian_mixture   one Gaussian blob per class, random labels (the ``vgcore demo`` task)
two_spirals        two interleaved 2-D spirals, one per class
teacher_student    regression targets from a random teacher :class:`vgcore.MLP`
digits             scikit-learn's bundled 8x8 handwritten digits (needs scikit-learn)
=================  =========================================================================

:func:`train_val_split` splits any of them; :data:`DATASETS` and :func:`load` reach them by
name, and :func:`load` also reads files (``.npz``, ``.npy``, ``.csv``, ``.tsv``, ``.parquet``;
see :mod:`vgcore.interop.files`).  The same arguments and seed give the same arrays; values
are drawn in float64 and then rounded to ``dtype``, so float32 and float64 versions hold the
same data.
"""
from __future__ import annotations

import inspect
import os

import numpy as np

from vgcore.core._validation import as_dtype, check_finite_number, check_positive_int

__all__ = ["gaussian_mixture", "two_spirals", "teacher_student", "digits", "train_val_split",
           "DATASETS", "load"]


def _rng(seed, name="seed"):
    """``numpy.random.default_rng`` of an int >= 0, None (fresh entropy) or a Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, None or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {int(seed)}")
    return np.random.default_rng(int(seed))


def _features(x, dtype):
    return np.ascontiguousarray(x, dtype=dtype)


def gaussian_mixture(n, n_features, n_classes, seed=0, spread=1.0, dtype=np.float32):
    """A classification task: one Gaussian blob per class.

    The class centres are drawn from N(0, spread^2) in every coordinate, the labels uniformly
    at random (so classes are balanced only on average), and each point is its class centre
    plus N(0, 1) noise.  This is the task of ``vgcore demo``.

    Parameters
    ----------
    n : int, >= 1
        Number of points.
    n_features : int, >= 1
    n_classes : int, >= 1
    seed : int >= 0, None or numpy.random.Generator
        Default 0.
    spread : float, >= 0
        Scale of the class centres relative to the unit noise; larger is easier. Default 1.
    dtype : float32 or float64

    Returns
    -------
    X : ndarray of shape (n, n_features), dtype
    y : ndarray of shape (n,), int64, values in [0, n_classes)
    """
    n = check_positive_int(n, "n")
    n_features = check_positive_int(n_features, "n_features")
    n_classes = check_positive_int(n_classes, "n_classes")
    spread = check_finite_number(spread, "spread", nonnegative=True)
    dtype = as_dtype(dtype)
    rng = _rng(seed)
    # The order of the draws is part of the result: keep it.
    centres = rng.standard_normal((n_classes, n_features)) * spread
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.standard_normal((n, n_features))
    return _features(X, dtype), y.astype(np.int64)


def two_spirals(n, noise=0.1, turns=2.0, seed=0, dtype=np.float32):
    """Two interleaved spirals in the plane, one per class.

    A point of class 0 at angle ``theta`` in ``[0, 2 pi turns]`` sits at radius
    ``r = theta / (2 pi)`` (one unit of radius per turn): ``(r cos theta, r sin theta)``;
    class 1 is class 0 turned by pi.  The arms of the two classes are therefore 1/2 apart,
    and the data fill the disc of radius ``turns``.  Points are spaced about evenly along the
    arms (``theta`` is ``2 pi turns sqrt(u)``, u uniform), then N(0, noise^2) is added to both
    coordinates (the same seed gives the same points and order whatever the noise).  With the
    default ``noise=0.1`` the classes barely touch except near the centre, where the arms
    meet.

    Parameters
    ----------
    n : int, >= 2
        Number of points: ``n - n // 2`` of class 0 and ``n // 2`` of class 1, rows shuffled.
    noise : float, >= 0
        Standard deviation of the Gaussian noise; default 0.1.
    turns : float, > 0
        Turns of each spiral; default 2.
    seed : int >= 0, None or numpy.random.Generator
        Default 0.
    dtype : float32 or float64

    Returns
    -------
    X : ndarray of shape (n, 2), dtype
    y : ndarray of shape (n,), int64, 0 or 1
    """
    n = check_positive_int(n, "n", minimum=2)
    noise = check_finite_number(noise, "noise", nonnegative=True)
    turns = check_finite_number(turns, "turns", positive=True)
    dtype = as_dtype(dtype)
    rng = _rng(seed)
    y = np.zeros(n, np.int64)
    y[n - n // 2:] = 1
    theta = 2.0 * np.pi * turns * np.sqrt(rng.random(n))
    order = rng.permutation(n)          # drawn before the noise: any noise, same points
    y, theta = y[order], theta[order]
    r = theta / (2.0 * np.pi)
    phase = theta + np.pi * y
    X = np.stack([r * np.cos(phase), r * np.sin(phase)], axis=1)
    if noise > 0:
        X += noise * rng.standard_normal(X.shape)
    return _features(X, dtype), y


def teacher_student(n, n_features, n_outputs=1, depth=2, width=32, activation="tanh", seed=0,
                    noise=0.0, dtype=np.float32, *, return_teacher=False):
    """A regression task whose targets come from a random "teacher" network.

    ``X`` is N(0, 1) in every entry; the targets are the teacher's outputs on ``X``, plus
    N(0, noise^2) when ``noise > 0``.  The teacher is::

        vgcore.MLP([n_features] + [width] * depth + [n_outputs], activation=activation,
                   init="lecun_normal", dtype=dtype, seed=teacher_seed, measure=False)

    with zero biases and ``teacher_seed`` the first draw of ``default_rng(seed)`` (so its
    weights are independent of ``X``).  ``lecun_normal`` (variance 1/fan_in) gives the first
    layer unit-variance pre-activations on these inputs.  A student of the same shape can fit
    the targets exactly when ``noise == 0``.

    Parameters
    ----------
    n : int, >= 1
    n_features : int, >= 1
    n_outputs : int, >= 1
        Default 1.
    depth : int, >= 0
        Hidden layers of the teacher; 0 makes it linear. Default 2.
    width : int, >= 1
        Width of the hidden layers; default 32.
    activation : str or vgcore.Activation
        The teacher's hidden activation; default "tanh".
    seed : int >= 0, None or numpy.random.Generator
        Default 0.
    noise : float, >= 0
        Standard deviation of the noise added to the targets; default 0.
    dtype : float32 or float64
        Of ``X``, of ``Y`` and of the teacher.
    return_teacher : bool
        Also return the teacher network.

    Returns
    -------
    X : ndarray of shape (n, n_features), dtype
    Y : ndarray of shape (n, n_outputs), dtype
        Exactly ``teacher.forward(X)`` (copied) when ``noise == 0``.
    teacher : vgcore.MLP
        Only with ``return_teacher=True``.
    """
    from vgcore.core.network import MLP

    n = check_positive_int(n, "n")
    n_features = check_positive_int(n_features, "n_features")
    n_outputs = check_positive_int(n_outputs, "n_outputs")
    depth = check_positive_int(depth, "depth", minimum=0)
    width = check_positive_int(width, "width")
    noise = check_finite_number(noise, "noise", nonnegative=True)
    dtype = as_dtype(dtype)
    rng = _rng(seed)
    teacher_seed = int(rng.integers(0, 2**63 - 1))
    teacher = MLP([n_features] + [width] * depth + [n_outputs], activation=activation,
                  init="lecun_normal", dtype=dtype, seed=teacher_seed, measure=False)
    X = _features(rng.standard_normal((n, n_features)), dtype)
    Y = teacher.predict(X)
    if noise > 0:
        Y = _features(Y + noise * rng.standard_normal(Y.shape), dtype)
    if return_teacher:
        return X, Y, teacher
    return X, Y


def digits(dtype=np.float32, seed=None):
    """The 8x8 handwritten digits that scikit-learn ships (1797 images, 10 classes).

    Read with ``sklearn.datasets.load_digits``, which reads a file bundled with scikit-learn
    (no download). Pixels (0..16) are divided by 16, so features are in [0, 1].

    Parameters
    ----------
    dtype : float32 or float64
    seed : int >= 0, numpy.random.Generator or None
        When given, the rows are shuffled with ``default_rng(seed).permutation``; None keeps
        scikit-learn's order.

    Returns
    -------
    X : ndarray of shape (1797, 64), dtype, in [0, 1]
    y : ndarray of shape (1797,), int64, digits 0..9

    Raises
    ------
    ImportError
        When scikit-learn is not installed (``pip install scikit-learn``).
    """
    dtype = as_dtype(dtype)
    rng = None if seed is None else _rng(seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "digits: needs scikit-learn, which ships the 8x8 digits (no download); install "
            "it with `pip install scikit-learn`", name="sklearn") from exc
    bunch = load_digits()
    X = np.asarray(bunch.data, np.float64) / 16.0
    y = np.asarray(bunch.target).astype(np.int64)
    if rng is not None:
        order = rng.permutation(X.shape[0])
        X, y = X[order], y[order]
    return _features(X, dtype), np.ascontiguousarray(y)


def train_val_split(X, y, val_fraction=0.2, seed=0):
    """Split a dataset at random into a training and a validation part.

    ``round(len(X) * val_fraction)`` rows, chosen by ``default_rng(seed).permutation``, go to
    the validation part and the rest to the training part (both in shuffled order); each row
    goes to exactly one part.

    Parameters
    ----------
    X : array_like of shape (n, ...)
    y : array_like of shape (n, ...)
        Labels or targets, one row per row of X.
    val_fraction : float in (0, 1)
        Default 0.2. Both parts must get at least one row.
    seed : int >= 0, None or numpy.random.Generator
        Default 0.

    Returns
    -------
    X_tr, y_tr, X_val, y_val : ndarray
        C-contiguous copies with the dtypes of X and y.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0:
        raise ValueError("X: expected an array with one row per sample, got a scalar")
    if y.ndim == 0:
        raise ValueError("y: expected an array with one row per sample, got a scalar")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} rows (one per row of X), got shape "
                         f"{y.shape}")
    val_fraction = check_finite_number(val_fraction, "val_fraction")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}")
    n = X.shape[0]
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val > n - 1:
        raise ValueError(f"val_fraction: {val_fraction} of {n} rows gives {n_val} validation "
                         f"and {n - n_val} training rows; expected at least one of each")
    order = _rng(seed).permutation(n)
    val, tr = order[:n_val], order[n_val:]
    c = np.ascontiguousarray
    return c(X[tr]), c(y[tr]), c(X[val]), c(y[val])


DATASETS = {
    "gaussian_mixture": gaussian_mixture,
    "two_spirals": two_spirals,
    "teacher_student": teacher_student,
    "digits": digits,
}


def load(name, **kwargs):
    """Make a dataset by name, or read one from a file.

    ``load("two_spirals", n=1000)`` is ``two_spirals(n=1000)``; ``load("train.csv",
    label="species")`` (a path: an ``os.PathLike``, or a string with a file extension) reads a
    ``.npz``, ``.npy``, ``.csv``, ``.tsv`` or ``.parquet`` file with
    :func:`vgcore.interop.files.load`, which checks every cell and returns a
    :class:`~vgcore.interop.files.DataFile` that unpacks as ``X, y`` and carries the file's
    SHA-256.

    Parameters
    ----------
    name : str or os.PathLike
        A key of :data:`DATASETS`, or a file path.
    **kwargs
        The dataset function's arguments, or those of :func:`vgcore.interop.files.load`
        (``label``, ``features``, ``task``, ``dtype``, ``standardize``, ``one_hot``,
        ``encode_labels``, ``delimiter``, ``header``).

    Returns
    -------
    tuple or DataFile
        What the dataset function returns; for a file, a DataFile (``X, y = ...``).
    """
    if isinstance(name, os.PathLike) or (
            isinstance(name, str) and name.strip().lower().replace("-", "_") not in DATASETS
            and (os.path.splitext(name)[1] or os.sep in name or os.path.exists(name))):
        from vgcore.interop.files import load as load_file
        return load_file(name, **kwargs)
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name (str), got {type(name).__name__}; "
                        f"or a file path (str or os.PathLike)")
    fn = DATASETS.get(name.strip().lower().replace("-", "_"))
    if fn is None:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of "
                         f"{', '.join(DATASETS)}, or the path of a .npz, .npy, .csv, .tsv or "
                         f".parquet file")
    accepted = list(inspect.signature(fn).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{name}: unexpected argument(s) {', '.join(unknown)}; expected some "
                        f"of {', '.join(accepted)}")
    return fn(**kwargs)

"""Checking what a data file holds, for :mod:`vgcore.interop.files`: text cells to numbers,
the features (2-D, numeric, finite, within the dtype), the labels (class ids, one-hot,
encoded text, regression targets) and standardisation.  Every refusal is a ``ValueError``
naming the file and the cell (``locate`` / ``locate_y`` say where, in the file's own terms).
"""
from __future__ import annotations

import os

import numpy as np

_MAX_CLASS = 2**31 - 2          # class ids become output units: vgcore widths are int32


def _err(path, msg):
    return ValueError(f"{os.path.basename(path)}: {msg}")


# ============================================================================ cells
def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parse_numbers(cells, path, locate):
    """Text cells to float64, or an error naming the first cell that is not a number."""
    try:
        return np.char.strip(cells).astype(np.float64)
    except ValueError:
        pass
    for j in range(cells.shape[1]):
        col = cells[:, j]
        try:
            np.char.strip(col).astype(np.float64)
            continue
        except ValueError:
            pass
        for i, c in enumerate(col):
            if not _is_number(c):
                what = "an empty cell" if not c.strip() else f"{_show(c)} is not a number"
                raise _err(path, f"{locate(i, j)}: {what}")
    raise AssertionError("unreachable")     # pragma: no cover


# ============================================================================ checks
def _show(v) -> str:
    """A cell's value as the user wrote it: ``1e+39``, ``'abc'`` (not ``np.float64(...)``)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _first(mask):
    """(row, column) of the first True of a 2-D mask."""
    flat = int(np.flatnonzero(mask.ravel(order="C"))[0])
    return divmod(flat, mask.shape[1])


def _features_array(X, path, dtype, locate, notes):
    """X checked and converted: 2-D, numeric, finite, within the dtype, C-contiguous."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise _err(path, f"the features have shape {X.shape}; expected a 2-D array (samples, "
                         f"features)" + ("; for one feature save X.reshape(-1, 1)"
                                         if X.ndim == 1 else ""))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise _err(path, f"the features have shape {X.shape}: no samples or no features")
    if X.dtype.kind in "US":
        X = _parse_numbers(X.astype(str), path, locate)
    elif X.dtype.kind == "c":
        raise _err(path, f"the features are complex ({X.dtype}); expected real numbers")
    elif X.dtype.kind not in "biuf":
        raise _err(path, f"the features have dtype {X.dtype}; expected numbers")
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X)
        if bad.any():
            i, j = _first(bad)
            raise _err(path, f"{locate(i, j)}: {X[i, j]} (expected finite numbers; fill or "
                             f"drop missing values first)")
    if X.dtype.kind == "f" and X.dtype.itemsize > dtype.itemsize:     # integers always fit
        fmax = float(np.finfo(dtype).max)
        big = np.abs(X) > fmax
        if big.any():
            i, j = _first(big)
            raise _err(path, f"{locate(i, j)}: {_show(X[i, j])} overflows {dtype.name} (largest "
                             f"{fmax:.3g}); use dtype='float64' or rescale")
    if not X.flags.c_contiguous:
        notes.append(f"the features were stored column-major (Fortran order): copied once "
                     f"to row-major ({X.shape[0] * X.shape[1] * dtype.itemsize} bytes)")
    return np.ascontiguousarray(X, dtype=dtype)


def _one_hot_rows(Y):
    """Whether every row of a 2-D numeric array is one 1 and zeros."""
    return bool(np.isin(Y, (0, 1)).all() and (Y.sum(axis=1) == 1).all())


def _labels(y, n, path, task, dtype, locate_y, one_hot, encode_labels, notes):
    """Class ids (int64, (n,)) or regression targets ((n, k), dtype); returns (y, classes)."""
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise _err(path, f"{n} samples but {'no' if y.ndim == 0 else y.shape[0]} labels "
                         f"(shape {y.shape})")
    if y.ndim > 2:
        raise _err(path, f"the labels have shape {y.shape}; expected (samples,) or (samples, k)")
    text = y.dtype.kind in "US"
    if y.dtype.kind == "c" or (y.dtype.kind not in "biuf" and not text):
        raise _err(path, f"the labels have dtype {y.dtype}; expected numbers")
    if task == "regression":
        if text:
            y = _parse_numbers(y.reshape(n, -1).astype(str), path, locate_y)
        Y = y.reshape(n, -1)
        if Y.dtype.kind == "f":
            bad = ~np.isfinite(Y)
            if bad.any():
                i, j = _first(bad)
                raise _err(path, f"{locate_y(i, j if Y.shape[1] > 1 else None)}: target "
                                 f"{Y[i, j]} (expected finite numbers)")
            big = np.abs(Y) > np.finfo(dtype).max
            if big.any():
                i, j = _first(big)
                raise _err(path, f"{locate_y(i, j if Y.shape[1] > 1 else None)}: target "
                                 f"{_show(Y[i, j])} overflows {dtype.name}")
        return np.ascontiguousarray(Y, dtype=dtype), None

    classes = None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        Y = y
        if text:
            Y = _parse_numbers(Y.astype(str), path, locate_y)
        if Y.dtype.kind == "f" and not np.isfinite(Y).all():
            i, j = _first(~np.isfinite(Y))
            raise _err(path, f"{locate_y(i, j)}: label {Y[i, j]} (expected finite numbers)")
        if _one_hot_rows(Y):
            if not one_hot:
                raise _err(path, f"the labels are one-hot, shape {Y.shape} (one 1 per row); "
                                 f"vgcore takes class ids: pass one_hot=True to convert them "
                                 f"(argmax), or task='regression' to use them as targets")
            notes.append(f"one-hot labels ({Y.shape[1]} columns) converted to class ids")
            return np.ascontiguousarray(np.argmax(Y, axis=1), dtype=np.int64), None
        bad = np.flatnonzero(~(np.isin(Y, (0, 1)).all(axis=1) & (Y.sum(axis=1) == 1)))
        raise _err(path, f"the labels have shape {Y.shape}, {Y.shape[1]} per sample, and are "
                         f"not one-hot ({locate_y(int(bad[0]))} is not a single 1 among 0s); "
                         f"expected one class id per sample, or task='regression' for "
                         f"several targets")
    if text:
        stripped = np.char.strip(y.astype(str))
        try:
            y = stripped.astype(np.float64)
        except ValueError:
            if not encode_labels:
                i = next(k for k, c in enumerate(stripped) if not _is_number(c))
                what = "an empty cell" if not stripped[i] else f"{str(stripped[i])!r}"
                raise _err(path, f"{locate_y(i)}: label {what} is not an integer class id; "
                                 f"pass encode_labels=True to number the distinct labels "
                                 f"(sorted) as classes 0..k-1") from None
            empty = np.flatnonzero(stripped == "")
            if empty.size:
                raise _err(path, f"{locate_y(int(empty[0]))}: an empty label") from None
            classes, ids = np.unique(stripped, return_inverse=True)
            notes.append(f"text labels encoded as class ids 0..{len(classes) - 1} (sorted)")
            return np.ascontiguousarray(ids.reshape(-1), dtype=np.int64), \
                [str(c) for c in classes]
    if encode_labels:
        classes, ids = np.unique(y, return_inverse=True)
        if y.dtype.kind == "f" and not np.isfinite(classes).all():
            i = int(np.flatnonzero(~np.isfinite(y))[0])
            raise _err(path, f"{locate_y(i)}: label {y[i]} (expected a class)")
        notes.append(f"labels encoded as class ids 0..{len(classes) - 1} (sorted)")
        return np.ascontiguousarray(ids.reshape(-1), dtype=np.int64), classes.tolist()
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _err(path, f"{locate_y(i)}: label {_show(y[i])} is not an integer class id"
                             + ("; for regression targets pass task='regression'"
                                if np.isfinite(y[i]) else ""))
        if np.abs(y).max() > _MAX_CLASS:
            i = int(np.argmax(np.abs(y)))
            raise _err(path, f"{locate_y(i)}: label {_show(y[i])} is too large for a class id "
                             f"(at most {_MAX_CLASS})")
    y = y.astype(np.int64)
    if (y < 0).any():
        i = int(np.flatnonzero(y < 0)[0])
        raise _err(path, f"{locate_y(i)}: label {int(y[i])}; class ids must be >= 0 (pass "
                         f"encode_labels=True to renumber them)")
    if y.max() > _MAX_CLASS:
        i = int(np.argmax(y))
        raise _err(path, f"{locate_y(i)}: label {int(y[i])} is too large for a class id (at "
                         f"most {_MAX_CLASS}); pass encode_labels=True to renumber them")
    return np.ascontiguousarray(y), classes


def _standardize(X):
    """``(X - mean) / std`` per column, in float64, std 1 for constant columns."""
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    X64 -= mean
    std = np.sqrt(np.mean(X64 * X64, axis=0))
    constant = np.flatnonzero(std == 0)
    std[constant] = 1.0
    X64 /= std
    return X64, {"mean": mean, "std": std, "constant": constant.tolist()}

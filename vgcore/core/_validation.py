"""Input checks shared by the public API.  Every message names the argument, what was expected
and what was given; nothing reaches the compiled core unchecked."""
from __future__ import annotations

import numpy as np

from vgcore import _engine

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_DIM = 2**31 - 1     # BLAS takes 32-bit integer sizes


def as_dtype(dtype, name="dtype") -> np.dtype:
    """The network dtype: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dt.name}")
    return dt


def check_float_matrix(x, name, dtype, *, cols=None, rows=None, finite=True,
                       writable=False, what=None, flush=False, flush_in_place=False):
    """Check that ``x`` is a C-contiguous 2-D array of ``dtype`` with the given shape.

    Returns the array itself (never a copy: a copy would hide a dtype or layout mistake and
    allocate on the hot path), except with ``flush`` (which implies ``finite``): an array
    holding subnormal values (not 0, below the smallest normal) then comes back as a copy in
    which they are +0, as a network that flushes subnormals reads its inputs (the same pass
    over the values finds them), and the caller's array is not changed; with
    ``flush_in_place`` (for a buffer the network owns) they are set to +0 in ``x`` itself.
    """
    assert not (flush and (not finite or writable)), "flush: a finite input, returned as read"
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (batch, features), got a "
                         f"{x.ndim}-D array of shape {x.shape}")
    if x.dtype != dtype:
        kind = x.dtype.kind
        if kind in "fc" or kind in "iub" or kind == "O":
            hint = (f"; convert it with {name}.astype(np.{dtype.name})" if kind in "fiub"
                    else "")
            why = f" ({what})" if what else ""
            raise TypeError(f"{name}: expected dtype {dtype.name}{why}, "
                            f"got {x.dtype.name}{hint}")
        raise TypeError(f"{name}: expected dtype {dtype.name}, got {x.dtype}")
    n, m = x.shape
    if n == 0:
        raise ValueError(f"{name}: the batch is empty (shape {x.shape}); expected at least one row")
    if rows is not None and n != rows:
        raise ValueError(f"{name}: expected {rows} rows, got shape {x.shape}")
    if cols is not None and m != cols:
        raise ValueError(f"{name}: expected shape (batch, {cols}), got {x.shape}")
    if m == 0:
        raise ValueError(f"{name}: expected at least one column, got shape {x.shape}")
    if n > _MAX_DIM or m > _MAX_DIM:
        raise ValueError(f"{name}: dimensions above 2**31-1 are not supported, got {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array; got a strided view "
                         f"(strides {x.strides}); pass np.ascontiguousarray({name})")
    if not x.flags.aligned:
        raise ValueError(f"{name}: expected an aligned array; its data does not start on a "
                         f"multiple of {x.dtype.itemsize} bytes; pass {name}.copy()")
    if writable and not x.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    subnormal = False
    if flush:
        ok, subnormal = _engine.scan_values(x)
    else:
        ok = not finite or _engine.all_finite(x)
    if not ok:
        n_bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN or Inf "
                         f"entr{'y' if n_bad == 1 else 'ies'}")
    if subnormal:
        out = x if flush_in_place else np.empty_like(x)
        _engine.flush_subnormals_into(x, out)
        return out
    return x


def check_positive_int(value, name, *, minimum=1):
    """An integer >= ``minimum`` (1 by default), as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_finite_number(value, name, *, positive=False, nonnegative=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")
    return value


def check_bool(value, name) -> bool:
    """True or False (NumPy's bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_network(net, name="net"):
    """A :class:`vgcore.MLP`."""
    from vgcore.core.network import MLP
    if not isinstance(net, MLP):
        raise TypeError(f"{name}: expected a vgcore.MLP, got {type(net).__name__}")
    return net


def check_data_matrix(X, name, dtype, cols):
    """A data set: a finite 2-D array of ``dtype`` with ``cols`` columns and at least one row,
    in any memory layout (the caller gathers or copies batches from it)."""
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (samples, {cols}), got a "
                         f"{X.ndim}-D array of shape {X.shape}")
    if X.dtype != dtype:
        hint = (f"; convert it with {name}.astype(np.{dtype.name})"
                if X.dtype.kind in "fiub" else "")
        raise TypeError(f"{name}: expected dtype {dtype.name} (the network's dtype), got "
                        f"{X.dtype}{hint}")
    if X.shape[1] != cols:
        raise ValueError(f"{name}: expected shape (samples, {cols}) (the network's input "
                         f"width), got {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {X.shape}")
    if not np.isfinite(X).all():
        n_bad = int(np.count_nonzero(~np.isfinite(X)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN or Inf entries")
    return X

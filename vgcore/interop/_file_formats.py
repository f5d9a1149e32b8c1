"""Reading data files for :mod:`vgcore.interop.files`, one reader a format: ``.npy`` and
``.npz`` (headers checked against the bytes present, no pickle), CSV/TSV text (header
detection, columns by name or index) and Parquet (pyarrow); and a file's identity (size,
SHA-256) taken before it is parsed and checked after.  A reader returns the raw arrays and how
to name a cell; :mod:`vgcore.interop._file_checks` checks them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import zipfile

import numpy as np

from vgcore.interop._file_checks import _err, _is_number, _parse_numbers

_FEATURE_KEYS = ("X", "x", "features", "data")
_LABEL_KEYS = ("y", "Y", "labels", "label", "target", "targets")
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


# ============================================================================ a file's identity
def sha256_of(path) -> str:
    """The SHA-256 hex digest of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{name}: {p!r} does not exist")
    if not os.path.isfile(p):
        raise ValueError(f"{name}: {p!r} is not a file")
    return os.path.abspath(p)


class _Reading:
    """A file's identity (size, SHA-256) taken before it is parsed, and checked after."""

    def __init__(self, path):
        self.path = path
        st = os.stat(path)
        self._stamp = (st.st_size, st.st_mtime_ns)
        self.size = st.st_size
        self.sha256 = sha256_of(path)

    def check_unchanged(self):
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise ValueError(f"{self.path}: the file changed while it was read; read it again "
                             f"when nothing writes to it")

    def record(self):
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


# ============================================================================ .npy / .npz
def _read_npy(f, available, path, what):
    """One array from an open .npy stream with ``available`` bytes, checked before reading:
    a header that claims more data than there is (truncated, or hostile), pickled objects and
    structured dtypes are refused."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise _err(path, f"{what} is not a valid .npy array (truncated or corrupt: {e})") \
            from None
    if dtype.hasobject:
        raise _err(path, f"{what} holds Python objects (dtype {dtype}), which only pickle can "
                         f"read; vgcore reads numeric (or text label) arrays without pickle")
    if dtype.names is not None:
        raise _err(path, f"{what} has a structured dtype {dtype}; expected a plain numeric "
                         f"array")
    count = math.prod(shape)
    need = count * dtype.itemsize
    have = available - f.tell()
    if need > have:
        raise _err(path, f"{what} is truncated: its header says shape {shape} of {dtype} "
                         f"({need} bytes) but only {have} bytes follow")
    try:
        if count == 0:
            a = np.empty(shape, dtype)
        else:
            data = f.read(need)
            if len(data) != need:
                raise ValueError(f"expected {need} bytes, read {len(data)}")
            a = np.frombuffer(data, dtype=dtype, count=count)
            a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise _err(path, f"{what} could not be read (truncated or corrupt: {e})") from None
    return a


def _load_npy(path, reading, label, features, notes):
    if features is not None:
        raise TypeError("features: only for .npz (array name) and tables (columns); a .npy "
                        "file holds the features alone")
    with open(path, "rb") as f:
        X = _read_npy(f, reading.size, path, "the array")
    label_file = None
    if label is None:
        raise ValueError(f"label: {os.path.basename(path)} holds one array (the features); "
                         f"pass the labels' .npy file (label='labels.npy') or the index of a "
                         f"label column of the array (label=-1)")
    if isinstance(label, (str, os.PathLike)):
        lpath = _check_path(label, "label")
        lread = _Reading(lpath)
        with open(lpath, "rb") as f:
            y = _read_npy(f, lread.size, lpath, "the labels array")
        lread.check_unchanged()
        label_file = lread.record()
        where = f"file {os.path.basename(lpath)}"
        locate_y = lambda i, j=None: (f"{os.path.basename(lpath)}: row {i}" +  # noqa: E731
                                      ("" if j is None else f", column {j}"))
    elif _is_int(label):
        if X.ndim != 2:
            raise _err(path, f"the array has shape {X.shape}; a label column needs a 2-D "
                             f"array (samples, columns)")
        c = _column_index(label, X.shape[1], path, "label")
        y = X[:, c]
        X = np.delete(X, c, axis=1)
        where = f"column {c} of the array"
        locate_y = lambda i, j=None: f"row {i}, column {c}"  # noqa: E731
        notes.append(f"labels taken from column {c} of the array")
    else:
        raise TypeError(f"label: for a .npy file expected the labels' .npy path or a column "
                        f"index, got {type(label).__name__}")
    return X, y, where, None, label_file, lambda i, j: f"row {i}, column {j}", locate_y


def _load_npz(path, reading, label, features, notes):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise _err(path, f"not a valid .npz file (truncated or corrupt: {e})") from None
    with zf:
        infos = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i
                 for i in zf.infolist()}
        if not infos:
            raise _err(path, "the .npz file holds no arrays")

        def pick(given, defaults, what, option):
            if given is not None:
                if not isinstance(given, str):
                    raise TypeError(f"{option}: for a .npz file expected an array name (str), "
                                    f"got {type(given).__name__}")
                if given not in infos:
                    raise _err(path, f"no array named {given!r} ({option}=); it holds "
                                     f"{', '.join(map(repr, infos))}")
                return given
            for k in defaults:
                if k in infos:
                    return k
            raise _err(path, f"no {what} array: expected one named {' or '.join(defaults)}, "
                             f"or name it with {option}=; it holds "
                             f"{', '.join(map(repr, infos))}")

        xk = pick(features, _FEATURE_KEYS, "feature", "features")
        yk = pick(label, _LABEL_KEYS, "label", "label")
        if xk == yk:
            raise ValueError(f"features, label: both name the array {xk!r}")
        arrays = {}
        for key in (xk, yk):
            info = infos[key]
            try:
                with zf.open(info) as f:
                    arrays[key] = _read_npy(f, info.file_size, path, f"array {key!r}")
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise _err(path, f"array {key!r} could not be read (truncated or corrupt: "
                                 f"{e})") from None
    return (arrays[xk], arrays[yk], f"array {yk!r}", None, None,
            lambda i, j: f"array {xk!r}, row {i}, column {j}",
            lambda i, j=None: f"array {yk!r}, row {i}" + ("" if j is None else f", column {j}"))


# ============================================================================ tables
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _column_index(spec, n_cols, path, option, names=None):
    """A 0-based column index from a name or an index (negative from the end)."""
    if _is_int(spec):
        c = int(spec)
        if not -n_cols <= c < n_cols:
            raise _err(path, f"{option}={c}: there are {n_cols} columns (indices 0..{n_cols - 1}"
                             f" or -{n_cols}..-1)")
        return c % n_cols
    if isinstance(spec, str):
        if names is None:
            raise _err(path, f"{option}={spec!r}: the file has no header row to name columns; "
                             f"give a 0-based column index")
        matches = [i for i, n in enumerate(names) if n == spec]
        if not matches:
            matches = [i for i, n in enumerate(names) if n.strip().lower() == spec.strip().lower()]
        if len(matches) != 1:
            what = "no column" if not matches else f"{len(matches)} columns"
            raise _err(path, f"{option}={spec!r}: {what} of that name; the columns are "
                             f"{', '.join(map(repr, names))}")
        return matches[0]
    raise TypeError(f"{option}: expected a column name (str) or a 0-based index (int), got "
                    f"{type(spec).__name__}")


def _columns(spec, n_cols, path, option, names):
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"{option}: expected at least one column, got an empty list")
        cols = [_column_index(s, n_cols, path, option, names) for s in spec]
        if len(set(cols)) != len(cols):
            raise ValueError(f"{option}: a column is named twice")
        return cols
    return [_column_index(spec, n_cols, path, option, names)]


def _default_label(names, path):
    if names is not None:
        hits = [i for i, n in enumerate(names) if n.strip().lower() in _LABEL_COLUMNS]
        if len(hits) == 1:
            return [hits[0]]
    cols = "" if names is None else f"; the columns are {', '.join(map(repr, names))}"
    raise ValueError(f"label: name the label column of {os.path.basename(path)} "
                     f"(label='name' or a 0-based index such as label=-1){cols}")


def _select(names, n_cols, path, label, features):
    ycols = _default_label(names, path) if label is None else \
        _columns(label, n_cols, path, "label", names)
    if features is None:
        xcols = [c for c in range(n_cols) if c not in ycols]
    else:
        xcols = _columns(features, n_cols, path, "features", names)
        both = sorted(set(xcols) & set(ycols))
        if both:
            raise ValueError(f"features, label: column {both[0]} is in both")
    if not xcols:
        raise _err(path, "no feature columns are left besides the label column(s)")
    return xcols, ycols


def _load_text(path, reading, label, features, notes, fmt, delimiter, header):
    if delimiter is None:
        delimiter = "\t" if fmt == "tsv" else ","
    elif not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter: expected one character, got {delimiter!r}")
    if header not in ("auto", True, False):
        raise ValueError(f"header: expected 'auto', True or False, got {header!r}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise _err(path, f"not UTF-8 text ({e}); is it a {fmt} file?") from None
    if "\x00" in text:
        raise _err(path, f"holds NUL bytes: not a {fmt} text file")
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', strict=True)
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue        # blank line
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise _err(path, f"line {reader.line_num}: not valid {fmt.upper()} ({e})") from None
    if not rows:
        raise _err(path, "the file is empty (no rows)")
    first = [c.strip() for c in rows[0]]
    if header == "auto":
        if len(rows) > 1:
            second = rows[1]
            has_header = any(not _is_number(c) and c != "" and k < len(second)
                             and _is_number(second[k]) for k, c in enumerate(first))
        else:
            has_header = any(not _is_number(c) for c in first)
    else:
        has_header = header
    names = first if has_header else None
    body, body_lines = (rows[1:], lines[1:]) if has_header else (rows, lines)
    n_cols = len(rows[0])
    if not body:
        raise _err(path, "no data rows" + (" (only a header)" if has_header else ""))
    for row, line in zip(body, body_lines):
        if len(row) != n_cols:
            raise _err(path, f"line {line} has {len(row)} columns, expected {n_cols} (as line "
                             f"{lines[0]}{', the header' if has_header else ''}): ragged rows")
    if has_header:
        notes.append("first line read as a header")
    xcols, ycols = _select(names, n_cols, path, label, features)
    cells = np.array(body, dtype=str)

    def colname(c):
        return f"column {c}" + (f" ({names[c]!r})" if names else "")

    def locate(i, j):
        return f"line {body_lines[i]}, {colname(xcols[j])}"

    def locate_y(i, j=None):
        c = ycols[0 if j is None else j]
        return f"line {body_lines[i]}, {colname(c)}"

    X = _parse_numbers(cells[:, xcols], path, locate)
    y = cells[:, ycols]
    y = y[:, 0] if len(ycols) == 1 else y
    where = ", ".join(colname(c) for c in ycols)
    return (X, y, where, [names[c] for c in xcols] if names else None, None, locate, locate_y)


def _load_parquet(path, reading, label, features, notes):
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("reading .parquet needs pyarrow: pip install \"vgcore[parquet]\"",
                          name="pyarrow") from exc
    try:
        table = pq.read_table(path)
    except Exception as e:      # pyarrow raises its own ArrowInvalid, OSError, ...
        raise _err(path, f"not a valid Parquet file (truncated or corrupt: {e})") from None
    names = list(table.column_names)
    if not names or table.num_rows == 0:
        raise _err(path, "the file is empty (no columns or no rows)")
    xcols, ycols = _select(names, len(names), path, label, features)

    def locate(i, j):
        return f"row {i}, column {xcols[j]} ({names[xcols[j]]!r})"

    def locate_y(i, j=None):
        c = ycols[0 if j is None else j]
        return f"row {i}, column {c} ({names[c]!r})"

    def column(c, numeric, where):
        col = table.column(c)
        if col.null_count:
            i = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
            raise _err(path, f"{where(i)}: an empty (null) cell")
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = t.value_type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or \
                pa.types.is_decimal(t):
            if pa.types.is_decimal(t):
                col = col.cast(pa.float64())
            return col.to_numpy(zero_copy_only=False)
        if not numeric and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return col.to_numpy(zero_copy_only=False).astype(str)
        first = col[0].as_py()
        raise _err(path, f"{where(0)}: column of type {t} ({first!r}); expected numbers")

    X = np.empty((table.num_rows, len(xcols)), np.float64)
    for j, c in enumerate(xcols):
        X[:, j] = column(c, True, lambda i, j=j: locate(i, j))
    ys = [column(c, False, lambda i, k=k: locate_y(i, k)) for k, c in enumerate(ycols)]
    y = ys[0] if len(ys) == 1 else np.stack(ys, axis=1)
    where = ", ".join(f"column {c} ({names[c]!r})" for c in ycols)
    return X, y, where, [names[c] for c in xcols], None, locate, locate_y

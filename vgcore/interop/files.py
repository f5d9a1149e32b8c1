"""Features and labels from files: ``.npz``, ``.npy``, ``.csv`` / ``.tsv`` and ``.parquet``.

``vg.datasets.load(path, ...)`` calls :func:`load`; it reads the file, checks every cell, and
returns a :class:`DataFile` that unpacks as ``X, y`` and also carries where the data came from
(the file's SHA-256, size and format) and what was done to it::

    X, y = vg.datasets.load("train.csv", label="species", encode_labels=True)
    data = vg.datasets.load("runs.npz", standardize=True)
    data.X, data.y, data.sha256, data.standardization, data.describe()

Formats
-------
``.npz``
    Two arrays: the features (``features=`` names them; default the first of ``X``, ``x``,
    ``features``, ``data`` present) and the labels (``label=``; default the first of ``y``,
    ``Y``, ``labels``, ``label``, ``target``, ``targets``).  Read without pickle.
``.npy``
    The features; the labels are a second ``.npy`` file (``label="labels.npy"``) or a column
    of the features array (``label=-1``: that column is taken out as the labels).
``.csv``, ``.tsv``
    Comma- or tab-separated text (``delimiter=`` for another), UTF-8, double quotes.  A header
    row is detected (``header="auto"``): the first row is a header when one of its cells is
    not a number while the cell below it is (``header=True`` / ``False`` to say so).  The label
    column is named (``label="species"``) or indexed (``label=-1``; 0-based, negative from
    the end); without ``label=``, a header column called ``label``, ``labels``, ``y``,
    ``target`` or ``class`` (exactly one) is taken.  Blank lines are skipped.
``.parquet``
    Read with pyarrow (``pip install "vgcore[parquet]"``); columns by name or index as for
    CSV.  Feature columns must be numeric (integers, floats or booleans) without nulls.

Checks
------
Every problem raises a ``ValueError`` that names the file and where: the line (1-based, as an
editor shows it) and column (0-based index, and its name when there is a header) in text
files, the row and column (0-based) elsewhere.  Refused: an empty file or one without data
rows; a truncated or corrupt ``.npz`` / ``.npy`` (its header is checked against the bytes
present before anything is allocated), pickled object arrays, arrays that are not 2-D
features; cells that are not numbers, empty cells, NaN and Inf, values that overflow the
dtype (``1e39`` in float32); rows of different lengths; labels that are not integers
(``1.5``, text without ``encode_labels=True``, negative ids), a missing label column, a
label count that does not match the rows.

Labels
------
For ``task="classification"`` (the default) the labels become int64 class ids.  Integer
values written as floats (``3.0``) are accepted.  Text labels are refused unless
``encode_labels=True``, which numbers the distinct values in sorted order (kept in
:attr:`DataFile.classes`).  A 2-D label array (or several label columns) whose rows each hold
a single 1 and zeros elsewhere is recognised as one-hot: refused with a message, or turned
into class ids with ``one_hot=True``.  For ``task="regression"`` the labels are float targets
of shape ``(n, k)`` in ``dtype``.

Memory layout and cost
----------------------
``X`` is returned C-contiguous in ``dtype``.  A Fortran-ordered (column-major) array, as
``np.save`` writes for a transposed array and ``pandas.DataFrame.to_numpy()`` returns, is
converted together with the dtype in a single copy: ``n * d * itemsize`` bytes more at the
peak and one pass over the data, recorded in :attr:`DataFile.notes`.  CSV files are parsed in
Python (:mod:`csv`), about a second per few million cells.  The SHA-256 is computed in a
streaming pass over the file (1 MiB at a time); a file that changes while it is read is
refused.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import zipfile

import numpy as np

from vgcore.core._validation import as_dtype

__all__ = ["DataFile", "load", "from_arrays", "sha256_of", "FORMATS", "experiment_data"]

FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".pq": "parquet"}
_FEATURE_KEYS = ("X", "x", "features", "data")
_LABEL_KEYS = ("y", "Y", "labels", "label", "target", "targets")
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")
_MAX_CLASS = 2**31 - 2          # class ids become output units: vgcore widths are int32


# ============================================================================ the result
class DataFile:
    """Features and labels read from a file, and where they came from.

    Unpacks as ``X, y = data`` (``len(data) == 2``).

    Attributes
    ----------
    X : ndarray (n_samples, n_features), float32 or float64, C-contiguous
    y : ndarray
        int64 class ids ``(n_samples,)`` for classification; ``(n_samples, k)`` float targets
        in X's dtype for regression.
    path : str
        The absolute path of the file.
    format : str
        ``"npz"``, ``"npy"``, ``"csv"``, ``"tsv"`` or ``"parquet"``.
    sha256 : str
        Hex digest of the file's bytes.
    size : int
        The file's size in bytes.
    label_file : dict or None
        ``{"path", "sha256", "size"}`` of the labels' own file (a ``.npy`` pair).
    label : str
        Where the labels came from (``"column 'species' (index 4)"``, ``"array 'y'"``, ...).
    feature_names : list of str or None
        Column names (tables with a header, parquet), else None.
    task : str
        ``"classification"`` or ``"regression"``.
    n_classes : int or None
        ``max(y) + 1`` for classification.
    classes : list or None
        With ``encode_labels=True``, the original label of each class id.
    standardization : dict or None
        With ``standardize=True``: ``{"mean": ndarray, "std": ndarray, "constant": [column
        indices whose std was 0 and were only centred]}``, all in float64; X was replaced by
        ``(X - mean) / std`` (std 1 for constant columns).  :meth:`transform` applies the
        same to other data.
    notes : list of str
        What was done besides reading (a layout copy, a one-hot conversion, label encoding,
        standardisation), in plain words.
    """

    def __init__(self, X, y, *, path, format, sha256, size, label, task, feature_names=None,
                 label_file=None, classes=None, standardization=None, notes=()):
        self.X, self.y = X, y
        self.path, self.format, self.sha256, self.size = path, format, sha256, size
        self.label, self.task = label, task
        self.feature_names = feature_names
        self.label_file = label_file
        self.classes = classes
        self.standardization = standardization
        self.notes = list(notes)
        self.n_classes = int(y.max()) + 1 if task == "classification" and y.size else None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def __iter__(self):
        yield self.X
        yield self.y

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return (self.X, self.y)[i]

    def transform(self, X) -> np.ndarray:
        """``X`` standardised with this file's mean and std (a new C-contiguous array in this
        data's dtype), e.g. held-out data from another file.  Without standardisation: ``X``
        converted to the dtype."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X: expected shape (samples, {self.n_features}), got {X.shape}")
        if self.standardization is None:
            return np.ascontiguousarray(X, dtype=self.X.dtype)
        s = self.standardization
        return np.ascontiguousarray((X.astype(np.float64) - s["mean"]) / s["std"],
                                    dtype=self.X.dtype)

    def describe(self) -> dict:
        """A JSON-ready record of the data: file, SHA-256, size, format, shape, labels, and
        what was done (for a report's record of a run)."""
        d = {"path": self.path, "format": self.format, "sha256": self.sha256,
             "bytes": self.size, "samples": self.n_samples, "features": self.n_features,
             "dtype": self.X.dtype.name, "label": self.label, "task": self.task}
        if self.label_file is not None:
            d["label_file"] = dict(self.label_file)
        if self.task == "classification":
            d["classes"] = self.n_classes
            d["class_counts"] = np.bincount(self.y, minlength=self.n_classes).tolist()
            if self.classes is not None:
                d["class_names"] = [str(c) for c in self.classes]
        else:
            d["targets"] = int(self.y.shape[1])
        d["standardized"] = self.standardization is not None
        if self.standardization is not None:
            d["constant_columns"] = list(self.standardization["constant"])
        if self.feature_names is not None:
            d["feature_names"] = list(self.feature_names)
        d["notes"] = list(self.notes)
        return d

    def __repr__(self):
        what = (f"{self.n_classes} classes" if self.task == "classification"
                else f"{self.y.shape[1]} targets")
        return (f"DataFile({os.path.basename(self.path)!r}, {self.n_samples} samples x "
                f"{self.n_features} features, {what}, sha256={self.sha256[:12]}...)")


# ============================================================================ file helpers
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


def _err(path, msg):
    return ValueError(f"{os.path.basename(path)}: {msg}")


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


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


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


# ============================================================================ entry points
def _check_options(task, dtype, standardize, one_hot, encode_labels):
    if task not in ("classification", "regression"):
        raise ValueError(f"task: expected 'classification' or 'regression', got {task!r}")
    dtype = as_dtype(dtype)
    for name, v in (("standardize", standardize), ("one_hot", one_hot),
                    ("encode_labels", encode_labels)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {v!r}")
    if task == "regression" and (one_hot or encode_labels):
        raise ValueError("one_hot, encode_labels: only for task='classification'")
    return dtype


def _finish(X, y, *, path, fmt, reading, where, names, label_file, locate, locate_y, task,
            dtype, standardize, one_hot, encode_labels, notes):
    X = _features_array(X, path, dtype, locate, notes)
    y, classes = _labels(y, X.shape[0], path, task, dtype, locate_y, one_hot, encode_labels,
                         notes)
    stats = None
    if standardize:
        X64, stats = _standardize(X)
        X = np.ascontiguousarray(X64, dtype=dtype)
        notes.append("features standardised to zero mean and unit variance per column "
                     "(mean and std in .standardization)"
                     + (f"; constant columns {stats['constant']} only centred"
                        if stats["constant"] else ""))
    if reading is not None:
        reading.check_unchanged()
    return DataFile(X, y, path=path, format=fmt,
                    sha256=None if reading is None else reading.sha256,
                    size=None if reading is None else reading.size, label=where, task=task,
                    feature_names=names, label_file=label_file, classes=classes,
                    standardization=stats, notes=notes)


def load(path, label=None, *, features=None, task="classification", dtype="float32",
         standardize=False, one_hot=False, encode_labels=False, delimiter=None,
         header="auto") -> DataFile:
    """Read features and labels from a file, check every cell, and say where they came from.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz``, ``.npy``, ``.csv``, ``.tsv`` or ``.parquet`` file (see the module
        docstring for each format).
    label : str, int, list of them, or None
        Where the labels are: an array name (``.npz``), the labels' ``.npy`` file or a column
        index (``.npy``), a column name or 0-based index, or a list of columns (one-hot or
        several regression targets) (tables).  None: the format's default.
    features : str, list or None
        The feature array (``.npz``) or columns (tables); default: ``X`` / all the other
        columns.
    task : {"classification", "regression"}
        Labels as int64 class ids (default) or float targets ``(n, k)`` in ``dtype``.
    dtype : "float32" or "float64"
        Of the returned features (and regression targets).
    standardize : bool
        Centre every feature column and scale it to unit variance (statistics in float64;
        recorded in :attr:`DataFile.standardization`).
    one_hot : bool
        Convert one-hot labels to class ids instead of refusing them.
    encode_labels : bool
        Number the distinct labels in sorted order (text labels, or ids that are not
        0..k-1); the originals are in :attr:`DataFile.classes`.
    delimiter : str, optional
        The field separator of a text table (default ``,`` for .csv, tab for .tsv).
    header : "auto", True or False
        Whether a text table starts with a header row (default: detected).

    Returns
    -------
    DataFile
        Unpacks as ``X, y``; ``.sha256``, ``.describe()`` and the rest tell its origin.

    Raises
    ------
    FileNotFoundError
        When the file (or the labels' file) does not exist.
    ValueError
        For any problem with the content, naming the file and the row and column.
    TypeError
        For an option of the wrong type.
    """
    path = _check_path(path)
    dtype = _check_options(task, dtype, standardize, one_hot, encode_labels)
    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise ValueError(f"path: {os.path.basename(path)!r} has the extension {ext!r}; "
                         f"expected one of {', '.join(FORMATS)}")
    if fmt not in ("csv", "tsv") and (delimiter is not None or header != "auto"):
        raise ValueError(f"delimiter, header: only for .csv and .tsv files, not .{fmt}")
    reading = _Reading(path)
    if reading.size == 0:
        raise _err(path, "the file is empty (0 bytes)")
    notes: list[str] = []
    if fmt == "npz":
        parts = _load_npz(path, reading, label, features, notes)
    elif fmt == "npy":
        parts = _load_npy(path, reading, label, features, notes)
    elif fmt == "parquet":
        parts = _load_parquet(path, reading, label, features, notes)
    else:
        parts = _load_text(path, reading, label, features, notes, fmt, delimiter, header)
    X, y, where, names, label_file, locate, locate_y = parts
    return _finish(X, y, path=path, fmt=fmt, reading=reading, where=where, names=names,
                   label_file=label_file, locate=locate, locate_y=locate_y, task=task,
                   dtype=dtype, standardize=standardize, one_hot=one_hot,
                   encode_labels=encode_labels, notes=notes)


def from_arrays(X, y, *, task="classification", dtype="float32", standardize=False,
                one_hot=False, encode_labels=False, name="arrays") -> DataFile:
    """The checks and conversions of :func:`load` on arrays already in memory (for example
    ``df.to_numpy()``, which is Fortran-ordered: copied once to row-major).

    Returns a :class:`DataFile` whose ``path`` is ``name`` and whose ``sha256`` and ``size``
    are None.  Errors name the row and column (0-based).
    """
    dtype = _check_options(task, dtype, standardize, one_hot, encode_labels)
    return _finish(X, y, path=name, fmt="arrays", reading=None, where="y", names=None,
                   label_file=None, locate=lambda i, j: f"X[{i}, {j}]",
                   locate_y=lambda i, j=None: f"y[{i}]" if j is None else f"y[{i}, {j}]",
                   task=task, dtype=dtype, standardize=standardize, one_hot=one_hot,
                   encode_labels=encode_labels, notes=[])


def experiment_data(path, label=None, *, held_out=0.2, seed=0, standardize=True,
                    dtype="float32", **options):
    """A data file as the training/held-out split that ``vgcore compare``, ``profile`` and
    ``sweep`` train on (what their ``--data PATH --label COLUMN`` options call).

    The file is read with :func:`load` (``options``: features, task, one_hot, encode_labels,
    delimiter, header), split at random with ``seed`` (``held_out`` of the rows held out,
    :func:`vgcore.datasets.train_val_split`), and, with ``standardize``, every feature is
    standardised with the mean and std of the training part only (the held-out part gets the
    same transform, so nothing leaks from it).

    Returns
    -------
    data : vgcore.experiments.run.Data
        ``loss`` is ``cross_entropy`` for classification, ``mse`` for regression.
    record : dict
        :meth:`DataFile.describe` of the file (path, SHA-256, size, shape, labels, notes)
        plus ``held_out``, ``seed``, ``training_samples``, ``held_out_samples`` and the
        standardisation that was applied: for the report's record of the run.
    """
    from vgcore.experiments.run import Data
    from vgcore.train.datasets import train_val_split
    df = load(path, label, dtype=dtype, standardize=False, **options)
    Xtr, ytr, Xte, yte = train_val_split(df.X, df.y, held_out, seed=seed)
    rec = df.describe()
    if standardize:
        X64, stats = _standardize(Xtr)
        Xtr = np.ascontiguousarray(X64, dtype=df.X.dtype)
        Xte = np.ascontiguousarray((Xte.astype(np.float64) - stats["mean"]) / stats["std"],
                                   dtype=df.X.dtype)
        rec["standardized"] = "on the training part (its mean and std)"
        rec["constant_columns"] = stats["constant"]
    rec.update(held_out=held_out, seed=seed, training_samples=int(Xtr.shape[0]),
               held_out_samples=int(Xte.shape[0]))
    classification = df.task == "classification"
    k = df.n_classes if classification else None
    name = os.path.basename(df.path)
    what = (f"{name} ({df.n_features} features, "
            + (f"{k} classes" if classification else f"{df.y.shape[1]} targets, mean squared "
                                                      f"error")
            + f"; sha256 {df.sha256[:12]}); {len(Xtr)} training and {len(Xte)} held-out "
              f"samples")
    data = Data(name, Xtr, ytr, Xte, yte, "cross_entropy" if classification else "mse", k,
                what)
    return data, rec

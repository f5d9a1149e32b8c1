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

import os

import numpy as np

from vgcore.core._validation import as_dtype
from vgcore.interop._file_checks import _err, _features_array, _labels, _standardize
from vgcore.interop._file_formats import (_check_path, _load_npy, _load_npz, _load_parquet,
                                          _load_text, _Reading, sha256_of)

__all__ = ["DataFile", "load", "from_arrays", "sha256_of", "FORMATS", "experiment_data"]

FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".pq": "parquet"}


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

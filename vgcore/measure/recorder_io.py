"""A :class:`vgcore.Recorder`'s exports: its JSON form (what :meth:`~vgcore.Recorder.to_json`
writes and :meth:`~vgcore.Recorder.from_json` reads, also embedded in sweep histories and in
``vgcore compare``'s measurements.json), the tidy columns and the CSV file.

JSON format (version 2)
-----------------------
A strict-JSON object (NaN and Inf are written as ``null`` and read back as NaN)::

    {"format": "vgcore.recorder", "version": 2,
     "sizes": [n_in, ..., n_out] or null (no record yet),
     "activations": [one name per layer, the output layer's "identity" last],
     "init": {"name": ..., "sigma_w": ..., "sigma_b": ...} or null (recorded from flows),
     "schedule": "every" | "log" | [steps], "every": int, "max_records": int,
     "stride": int, "next_step": int, "offers_seen": int,
     "steps": [step of each record],
     "offers": [index of each record among the due steps passed to record()],
     "fields": {name: [[value per layer] per record]} for every name in FIELDS,
     "scalars": {name: [value per record]} for every name in SCALARS,
     "epoch_dead_fraction": [[fraction per hidden layer] per epoch],
     "epoch_steps": [[first step, last step] per epoch]}

:meth:`Recorder.from_json` reads it back into a recorder that can go on recording.  Version 2
added the field ``underflow_fraction``; a version 1 object is still read, with that field NaN
(not measured) in every record.

:func:`encode` builds the object from a recorder's state, :func:`decode` checks an object
completely and returns its content as arrays, :func:`read` reads a file; the Recorder turns
the content back into a recorder.
"""
from __future__ import annotations

import csv
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from vgcore.core._files import atomic_write
from vgcore.measure.flow import FIELDS

__all__ = ["JSON_FORMAT", "JSON_VERSION", "SCALARS", "encode", "decode", "read", "json_matrix",
           "tidy_columns", "csv_writer", "RecorderExports"]

JSON_FORMAT = "vgcore.recorder"
JSON_VERSION = 2
READ_VERSIONS = (1, 2)
"""The versions :func:`decode` reads (a field a version lacks reads as NaN)."""
_ADDED_IN = {"underflow_fraction": 2}

SCALARS = ("grad_ratio", "delta_ratio", "nonfinite_forward_layer", "nonfinite_backward_layer")
"""Per-step scalars kept beside the per-layer fields.  ``grad_ratio`` and ``delta_ratio`` are
float64; the non-finite layers are int64, the 1-based layer where a NaN or Inf first appeared,
0 when there was none."""

_FLOAT_SCALARS = SCALARS[:2]
_INT_SCALARS = SCALARS[2:]


def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    return os.fspath(path)


def _atomic_write_text(path: str, write) -> None:
    """A text file written atomically (see :func:`vgcore.core._files.atomic_write`)."""
    atomic_write(path, "x", write, encoding="utf-8", newline="")


_REQUIRED = ("sizes", "activations", "init", "schedule", "every", "max_records", "stride",
             "next_step", "offers_seen", "steps", "offers", "fields", "scalars",
             "epoch_dead_fraction", "epoch_steps")


def json_matrix(a) -> list:
    """Nested lists of Python floats with NaN and Inf as None (strict JSON)."""
    a = np.asarray(a, np.float64)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a.tolist()
    obj = a.astype(object)
    obj[bad] = None
    return obj.tolist()


def encode(*, sizes, activations, init, schedule, every, max_records, stride, next_step,
           offers_seen, steps, offers, fields, float_scalars, int_scalars, epoch_fracs,
           epoch_steps) -> dict:
    """The JSON object of a recorder's state (arrays in record order; ``fields`` and the
    scalars as ``{name: array}``)."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "sizes": None if sizes is None else list(sizes),
        "activations": None if activations is None else list(activations),
        "init": init,
        "schedule": schedule,
        "every": every,
        "max_records": max_records,
        "stride": stride,
        "next_step": next_step,
        "offers_seen": offers_seen,
        "steps": np.asarray(steps).tolist(),
        "offers": np.asarray(offers).tolist(),
        "fields": {name: json_matrix(a) for name, a in fields.items()},
        "scalars": {**{name: json_matrix(a) for name, a in float_scalars.items()},
                    **{name: np.asarray(a).tolist() for name, a in int_scalars.items()}},
        "epoch_dead_fraction": [json_matrix(f) for f in epoch_fracs],
        "epoch_steps": [list(s) for s in epoch_steps],
    }


def invalid(source, what) -> ValueError:
    """The error for a bad recorder object, naming where it came from."""
    return ValueError(f"path: {source!r} is not a valid vgcore.recorder JSON file: {what}")


def read(path):
    """The JSON object in the file ``path`` (ValueError naming the file when it is not UTF-8 or
    not JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"path: {path!r} is not a vgcore.recorder JSON file: it is not "
                         f"UTF-8 text ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"path: {path!r} is not a valid vgcore.recorder JSON file: "
                         f"corrupt or truncated JSON ({e})") from None


def decode(obj, source, field_names, float_scalars, int_scalars) -> dict:
    """Check a recorder object completely; returns its content: ``settings`` (the
    constructor's schedule, every, max_records, unchecked), ``stride``, ``next_step``,
    ``offers_seen``, ``sizes`` (None: no record yet), ``activations``, ``init``, ``steps``,
    ``offers`` (int64 arrays), ``fields`` (name -> float64 (n, layers)), ``float_scalars``,
    ``int_scalars`` (name -> (n,)), ``epoch_fracs`` and ``epoch_steps``.

    Raises ValueError naming ``source`` for anything missing, of the wrong type or
    inconsistent."""
    def bad(what):
        return invalid(source, what)

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got a JSON {type(obj).__name__}")
    if obj.get("format") != JSON_FORMAT:
        raise bad(f"expected \"format\": {JSON_FORMAT!r}, got {obj.get('format')!r}")
    version = obj.get("version")
    if isinstance(version, bool) or version not in READ_VERSIONS:
        raise bad(f"expected \"version\": {' or '.join(map(str, READ_VERSIONS))}, got "
                  f"{version!r}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    out: dict[str, Any] = {"settings": {k: obj[k] for k in ("schedule", "every", "max_records")}}

    def ints(key, minimum=0):
        v = obj[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise bad(f"expected \"{key}\" to be an integer >= {minimum}, got {v!r}")
        return v

    stride = ints("stride", 1)
    if stride & (stride - 1):
        raise bad(f"expected \"stride\" to be a power of two, got {stride}")
    out.update(stride=stride, next_step=ints("next_step"), offers_seen=ints("offers_seen"))
    steps, offers = obj["steps"], obj["offers"]
    if not isinstance(steps, list) or not isinstance(offers, list):
        raise bad("expected \"steps\" and \"offers\" to be lists")
    n = len(steps)
    if len(offers) != n:
        raise bad(f"expected {n} \"offers\" (one per step), got {len(offers)}")

    def int_array(v, key):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise bad(f"expected integers in \"{key}\"")
        return np.asarray(v, np.int64).reshape(-1)

    sizes, acts, init = obj["sizes"], obj["activations"], obj["init"]
    out.update(sizes=None, activations=None, init=None, steps=np.empty(0, np.int64),
               offers=np.empty(0, np.int64), fields={}, float_scalars={}, int_scalars={},
               epoch_fracs=[], epoch_steps=[])
    if sizes is None:
        if n or obj["epoch_dead_fraction"]:
            raise bad("records without \"sizes\"")
        return out
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                       for s in sizes)):
        raise bad(f"expected \"sizes\" to be a list of at least two positive integers, "
                  f"got {sizes!r}")
    L = len(sizes) - 1
    if (not isinstance(acts, list) or len(acts) != L
            or not all(isinstance(a, str) for a in acts)):
        raise bad(f"expected \"activations\" to be {L} names, got {acts!r}")
    if init is not None and not (isinstance(init, dict) and isinstance(init.get("name"), str)):
        raise bad(f"expected \"init\" to be null or an object with a \"name\", got {init!r}")
    out.update(sizes=tuple(sizes), activations=tuple(acts),
               init=None if init is None else {"name": init["name"],
                                               "sigma_w": init.get("sigma_w"),
                                               "sigma_b": init.get("sigma_b")})
    step_arr = int_array(steps, "steps")
    offer_arr = int_array(offers, "offers")
    if n and (np.any(np.diff(step_arr) <= 0) or step_arr[0] < 0
              or np.any(np.diff(offer_arr) <= 0) or offer_arr[0] < 0):
        raise bad("expected strictly increasing non-negative \"steps\" and \"offers\"")
    if n and (step_arr[-1] >= out["next_step"] or offer_arr[-1] >= out["offers_seen"]):
        raise bad("\"next_step\" / \"offers_seen\" are behind the last record")
    out.update(steps=step_arr, offers=offer_arr)

    def matrix(v, key, shape, dtype=np.float64):
        try:
            a = np.asarray(v, dtype=dtype)
        except (TypeError, ValueError):
            raise bad(f"expected numbers (or null) in \"{key}\" with shape {shape}") from None
        if a.shape != shape:
            raise bad(f"expected \"{key}\" with shape {shape}, got {a.shape}")
        return a

    fields, scalars = obj["fields"], obj["scalars"]
    if not isinstance(fields, dict) or not isinstance(scalars, dict):
        raise bad("expected \"fields\" and \"scalars\" to be objects")
    for name in field_names:
        if name not in fields and version < _ADDED_IN.get(name, 1):
            out["fields"][name] = np.full((n, L), np.nan)
            continue
        if name not in fields:
            raise bad(f"missing field {name!r} in \"fields\"")
        out["fields"][name] = matrix(fields[name], f"fields.{name}", (n, L))
    for name in float_scalars:
        if name not in scalars:
            raise bad(f"missing scalar {name!r} in \"scalars\"")
        out["float_scalars"][name] = matrix(scalars[name], f"scalars.{name}", (n,))
    for name in int_scalars:
        if name not in scalars:
            raise bad(f"missing scalar {name!r} in \"scalars\"")
        v = scalars[name]
        if not isinstance(v, list):
            raise bad(f"expected a list in \"scalars.{name}\"")
        a = int_array(v, f"scalars.{name}")
        if a.shape != (n,) or np.any((a < 0) | (a > L)):
            raise bad(f"expected {n} layer numbers in 0..{L} in \"scalars.{name}\"")
        out["int_scalars"][name] = a
    edf, est = obj["epoch_dead_fraction"], obj["epoch_steps"]
    if not isinstance(edf, list) or not isinstance(est, list) or len(edf) != len(est):
        raise bad("expected \"epoch_dead_fraction\" and \"epoch_steps\" to be lists of equal "
                  "length")
    for i, (fr, se) in enumerate(zip(edf, est)):
        if not (isinstance(se, list) and len(se) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in se)):
            raise bad(f"expected two integers in \"epoch_steps[{i}]\", got {se!r}")
        out["epoch_fracs"].append(matrix(fr, f"epoch_dead_fraction[{i}]", (L - 1,)))
        out["epoch_steps"].append((se[0], se[1]))
    return out


def tidy_columns(steps, sizes, activations, fields, scalars) -> dict:
    """Long (tidy) columns, one entry per (record, layer): ``step``, ``layer`` (1-based),
    ``width``, ``activation``, then every field ``(records, layers)`` flattened and every
    per-step scalar ``(records,)`` repeated on each layer of its step."""
    n = len(steps)
    L = 0 if sizes is None else len(sizes) - 1
    out = {
        "step": np.repeat(steps, L),
        "layer": np.tile(np.arange(1, L + 1, dtype=np.int64), n),
        "width": np.tile(np.asarray(sizes[1:] if L else [], np.int64), n),
        "activation": list(activations or ()) * n,
    }
    for name, a in fields.items():
        out[name] = a.reshape(-1)
    for name, a in scalars.items():
        out[name] = np.repeat(a, L)
    return out


def csv_writer(columns):
    """A ``write(f)`` that writes the columns as CSV: a header, then one row per entry; floats
    with ``repr`` (exact round trip; ``nan``, ``inf``)."""
    names = list(columns)
    data = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns.values()]

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        w.writerows(zip(*data))
    return write


# ---------------------------------------------------------------------------- the exports
class RecorderExports:
    """``Recorder``'s exports: ``to_arrays``, ``to_dict``, ``to_csv``, ``to_json_object``,
    ``to_json`` (a mixin of :class:`~vgcore.measure.recorder.Recorder` only, whose methods
    they are; reading, ``from_json``, stays with the class)."""

    # set in Recorder.__init__ (declared here for mypy)
    _sizes: Any
    _activations: Any
    _schedule: Any
    _every: Any
    _max: Any
    _stride: Any
    _next_step: Any
    _offers_seen: Any
    _n: Any
    _offer: Any
    _epoch_fracs: Any
    _epoch_steps: Any

    if TYPE_CHECKING:
        def history(self, name, start=None, stop=None) -> np.ndarray: ...
        @property
        def init(self) -> Any: ...
        @property
        def schedule(self) -> Any: ...

    def to_arrays(self) -> dict:
        """The history as arrays (copies).

        Returns
        -------
        dict
            ``"step"``: int64 ``(n,)``; every name of :data:`vgcore.flow.FIELDS`: float64
            ``(n, n_layers)`` (row ``i`` is the record at ``step[i]``, column ``l`` layer
            ``l + 1``); ``"grad_ratio"``, ``"delta_ratio"``: float64 ``(n,)``;
            ``"nonfinite_forward_layer"``, ``"nonfinite_backward_layer"``: int64 ``(n,)``,
            0 for none.
        """
        out = {"step": self.history("step")}
        for name in FIELDS + SCALARS:
            out[name] = self.history(name)
        return out

    def to_dict(self) -> dict:
        """The history in long (tidy) form: one entry per (record, layer).

        Returns
        -------
        dict of equal-length columns
            ``step``, ``layer`` (1-based), ``width``, ``activation`` (list of str), every name
            of :data:`vgcore.flow.FIELDS`, and the per-step :data:`SCALARS` repeated on each
            layer of their step.  ``pandas.DataFrame(rec.to_dict())`` makes the table;
            pandas is not needed otherwise.
        """
        return tidy_columns(self.history("step"), self._sizes, self._activations,
                                  {name: self.history(name) for name in FIELDS},
                                  {name: self.history(name) for name in SCALARS})

    def to_csv(self, path) -> None:
        """Write :meth:`to_dict` as CSV: a header row, then one row per (record, layer).

        Floats are written with ``repr`` (exact round trip; ``nan``, ``inf``).  The file is
        written to a temporary file in the same folder and moved into place with
        ``os.replace``, so ``path`` never holds a partial file.

        Parameters
        ----------
        path : str or os.PathLike
        """
        _atomic_write_text(_check_path(path), csv_writer(self.to_dict()))

    def to_json_object(self) -> dict:
        """The recorder as its JSON object (format ``vgcore.recorder``, version 2; see
        :mod:`vgcore.measure.recorder_io`): plain lists and numbers, NaN and Inf as None."""
        n = self._n
        return encode(
            sizes=self._sizes, activations=self._activations, init=self.init,
            schedule=(list(self.schedule) if self._schedule == "steps" else self._schedule),
            every=self._every, max_records=self._max, stride=self._stride,
            next_step=self._next_step, offers_seen=self._offers_seen,
            steps=self.history("step"),
            offers=np.empty(0, np.int64) if self._offer is None else self._offer[:n],
            fields={name: self.history(name) for name in FIELDS},
            float_scalars={name: self.history(name) for name in _FLOAT_SCALARS},
            int_scalars={name: self.history(name) for name in _INT_SCALARS},
            epoch_fracs=self._epoch_fracs, epoch_steps=self._epoch_steps)

    def to_json(self, path) -> None:
        """Write the recorder as a strict-JSON file (:meth:`to_json_object`).

        NaN and Inf are written as ``null`` (and read back as NaN).  Written atomically, like
        :meth:`to_csv`.

        Parameters
        ----------
        path : str or os.PathLike
        """
        path = _check_path(path)
        obj = self.to_json_object()
        _atomic_write_text(path, lambda f: json.dump(obj, f, allow_nan=False,
                                                     separators=(",", ":")))

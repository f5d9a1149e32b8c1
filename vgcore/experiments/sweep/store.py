"""A sweep's results folder: the exclusive lock, the journal (``results.jsonl``, one line per
finished run, fsynced), the per-run histories, the sweep's metadata (``sweep.json``), the
tables (``results.csv``, ``results.parquet``), and :class:`SweepResult`, what the folder holds
for a sweep."""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

import vgcore as vg
from vgcore.core import _ui
from vgcore.core._files import atomic_write, remove_stale_temporaries
from vgcore.experiments.sweep.config import (COLUMNS, METRICS, PARAMS, _INT_METRICS,
                                             _STR_METRICS, Sweep, run_id)

__all__ = ["SweepResult", "load", "read_journal", "write_tables", "format_value", "FORMAT",
           "VERSION"]

FORMAT = "vgcore.sweep"
VERSION = 1


class _Folder:
    """The results folder: an exclusive lock, the journal, the histories."""

    JOURNAL = "results.jsonl"

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"out: {self.path} exists and is not a folder")
        os.makedirs(os.path.join(self.path, "histories"), exist_ok=True)
        self._lock = open(os.path.join(self.path, ".lock"), "a+")
        try:
            import fcntl
        except ImportError:                        # not POSIX: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise RuntimeError(f"out: another sweep is writing into {self.path}; wait "
                                   f"for it to finish or choose another folder") from None
        for folder in (self.path, os.path.join(self.path, "histories")):
            remove_stale_temporaries(folder)     # of a sweep killed mid-write (we hold the lock)
        self.journal_path = os.path.join(self.path, self.JOURNAL)
        self.repaired = None
        self.records = read_journal(self.journal_path, repair=True, folder=self)
        self._journal = open(self.journal_path, "a", encoding="utf-8")

    def history_path(self, rid):
        return os.path.join(self.path, "histories", f"{rid}.json.gz")

    def write(self, result):
        """The history first (atomically), then the journal line (flushed to disk): a line in
        the journal means the run is complete on disk."""
        hist = result.get("history")
        if hist is not None:
            obj = {"format": FORMAT + ".history", "version": VERSION,
                   "run_id": result["run_id"], "config": result["config"], **hist}
            data = gzip.compress(json.dumps(obj, allow_nan=False,
                                            separators=(",", ":")).encode(),
                                 compresslevel=1, mtime=0)    # level 9: 8x the time
            atomic_write(self.history_path(result["run_id"]), "xb", lambda f: f.write(data))
        record = {k: v for k, v in result.items() if k != "history"}
        record["history"] = hist is not None
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = json.dumps(_ui.plain_json(record, nonfinite="keep"), allow_nan=True)
        self._journal.write(line + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.records[record["run_id"]] = record

    def close(self):
        for f in (self._journal, self._lock):
            try:
                f.close()
            except OSError:
                pass


def read_journal(path, *, repair=False, folder=None):
    """``run_id -> record`` of a ``results.jsonl`` (the last line of a run wins).

    A last line without its newline (the sweep was killed while writing it) is dropped; with
    ``repair`` it is cut from the file.  Any other line that is not a journal record raises
    ValueError naming the file and the line.
    """
    records = {}
    if not os.path.exists(path):
        return records
    with open(path, "rb") as f:
        raw = f.read()
    good = len(raw)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:                                   # torn last line
        good = len(raw) - len(lines[-1])
        lines.pop()
        if repair:
            with open(path, "r+b") as f:
                f.truncate(good)
            if folder is not None:
                folder.repaired = "dropped an incomplete last line of results.jsonl (the " \
                                  "sweep was stopped while writing it); that run runs again"
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str) \
                    or rec.get("status") not in ("ok", "diverged", "failed") \
                    or not isinstance(rec.get("metrics"), dict) \
                    or not isinstance(rec.get("config"), dict):
                raise ValueError("not a run record")
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}, line {i}: not a vgcore sweep record ({e}); the journal "
                             f"is corrupt: move the file away to start the sweep afresh") \
                from None
        records[rec["run_id"]] = rec
    return records


def _row(record):
    cfg = record["config"]
    m = record["metrics"]
    row = {"run_id": record["run_id"], "status": record["status"]}
    for k in PARAMS:
        row[k] = cfg.get(k)
    for k in METRICS:
        row[k] = m.get(k)
    row["error"] = record.get("error", "")
    row["threads"] = record.get("threads")
    row["seconds"] = record.get("seconds")
    row["worker"] = record.get("worker", "")
    return row


@dataclass
class SweepResult:
    """What a sweep left in its folder.

    Attributes
    ----------
    out : str
        The results folder.
    rows : list of dict
        One per finished run of the sweep, in the sweep's order; keys :data:`COLUMNS`.
    missing : list of str
        Run ids of the sweep with no result yet (an interrupted sweep).
    executed, skipped : int
        Runs run by this call, and runs found done in the folder.
    seconds : float
        Wall time of this call.
    files : list of str
        Files written at the end (tables, plots).
    notes : list of str
        What the user should know (a repaired journal, plots skipped, results in the folder
        that belong to other configurations).
    """

    out: str
    sweep: Sweep
    rows: list
    missing: list
    executed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    executor: str = ""
    workers: int = 0

    def count(self, status) -> int:
        return sum(1 for r in self.rows if r["status"] == status)

    def history(self, rid) -> dict:
        """The run's ``loss`` (float64 array, one per step trained), its ``recorder`` (a
        :class:`vgcore.Recorder`) and ``config``."""
        path = os.path.join(self.out, "histories", f"{rid}.json.gz")
        if not os.path.exists(path):
            raise KeyError(f"run_id: no history for {rid!r} in {self.out} (a failed run has "
                           f"none)")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a readable sweep history ({e})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT + ".history":
            raise ValueError(f"{path}: not a vgcore sweep history")
        rec = vg.Recorder.from_json_object(obj["recorder"], path)
        loss = np.array([math.nan if x is None else x for x in obj["loss"]], np.float64)
        return {"loss": loss, "recorder": rec, "config": obj["config"]}

    def to_pandas(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def summary(self) -> str:
        """A few lines: counts, time, the best runs, the failures."""
        n = len(self.sweep)
        lines = [f"{self.sweep.name}: {len(self.rows)}/{n} runs done ("
                 f"{self.count('ok')} ok, {self.count('diverged')} diverged, "
                 f"{self.count('failed')} failed); {self.executed} run now, {self.skipped} "
                 f"found done in {self.out}; {self.seconds:.1f} s"
                 + (f" on {self.executor} x{self.workers}" if self.executor else "")]
        if self.missing:
            lines.append(f"{len(self.missing)} runs not done yet: run the same sweep again to "
                         f"continue")
        varying = [k for k in self.sweep.varying() if k != "seed"] or self.sweep.varying()
        ok = [r for r in self.rows if r["status"] == "ok" and _finite(r["final_loss"])]
        if ok:
            ok.sort(key=lambda r: r["final_loss"])
            lines.append("lowest final training loss: " + "; ".join(
                f"{_label(r, varying)} {r['final_loss']:.4g}" for r in ok[:3]))
        bad = [r for r in self.rows if r["status"] == "failed"]
        for r in bad[:3]:
            lines.append(f"failed: {_label(r, varying)}: {r['error'][:160]}")
        if len(bad) > 3:
            lines.append(f"... and {len(bad) - 3} more failed runs (see results.csv, column "
                         f"error)")
        lines.extend(self.notes)
        return "\n".join(lines)


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def _label(row, keys):
    if not keys:
        return row["run_id"]
    return " ".join(f"{k}={format_value(row[k])}" for k in keys)


def format_value(v) -> str:
    """A parameter's value as tables and labels show it: ``0.5``, ``none``, ``auto``."""
    if isinstance(v, float):
        return f"{v:g}"
    return "none" if v is None else str(v)


def _result_from(sweep, folder_path, records, **kw):
    rows, missing = [], []
    for cfg in sweep.configs:
        rid = run_id(cfg)
        if rid in records:
            rows.append(_row(records[rid]))
        else:
            missing.append(rid)
    return SweepResult(out=folder_path, sweep=sweep, rows=rows, missing=missing, **kw)


def load(out, sweep=None) -> SweepResult:
    """The results in a sweep folder, without running anything.

    With ``sweep`` (a :class:`Sweep`), the rows are that sweep's, in its order; without, every
    run of the folder's journal, in the order they finished.
    """
    path = os.path.abspath(os.fspath(out))
    journal = os.path.join(path, _Folder.JOURNAL)
    if not os.path.isfile(journal):
        raise FileNotFoundError(f"out: no sweep results in {path} (no {_Folder.JOURNAL})")
    records = read_journal(journal)
    if sweep is None:
        sweep = _sweep_of_folder(path, records)
    return _result_from(sweep, path, records)


def _sweep_of_folder(path, records):
    name = "sweep"
    try:
        with open(os.path.join(path, "sweep.json"), encoding="utf-8") as f:
            meta = json.load(f)
        name = meta.get("name") or name
        configs = [c for c in meta.get("configs", []) if isinstance(c, dict)]
    except (OSError, ValueError, AttributeError):
        configs = []
    if not isinstance(name, str) or not name.strip():
        name = "sweep"
    known = {run_id(c) for c in configs}
    return Sweep.from_configs(configs + [r["config"] for rid, r in records.items()
                                         if rid not in known], name=name)


def write_tables(result) -> list:
    """``results.csv`` and, with pyarrow, ``results.parquet``; returns the files written."""
    files = []
    path = os.path.join(result.out, "results.csv")

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v)
        return v

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in result.rows:
            w.writerow([cell(r[c]) for c in COLUMNS])

    atomic_write(path, "x", write, encoding="utf-8", newline="")
    files.append(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        result.notes.append("results.parquet not written: pyarrow is not installed (pip "
                            "install pyarrow)")
        return files
    def values(c):
        vs = [r[c] for r in result.rows]
        if c in ("residual", "label"):    # "auto" or a scale, a name or an index: text
            vs = [None if v is None else format_value(v) for v in vs]
        return vs

    table = pa.table({c: pa.array(values(c), type=_arrow_type(pa, c)) for c in COLUMNS})
    path = os.path.join(result.out, "results.parquet")
    atomic_write(path, "xb", lambda f: pq.write_table(table, f))
    files.append(path)
    return files


def _arrow_type(pa, column):
    if column in ("depth", "width", "n_samples", "steps", "batch_size", "seed", "records",
                  "threads") \
            or column in _INT_METRICS:
        return pa.int64()
    if column in ("residual", "label"):
        return pa.string()
    if column in ("sigma_w2", "sigma_b2", "lr", "weight_decay", "clip_norm", "seconds") \
            or column in METRICS and column not in _STR_METRICS:
        return pa.float64()
    return pa.string()


def _write_meta(path, sweep):
    meta = {"format": FORMAT, "version": VERSION, "vgcore": getattr(vg, "__version__", None),
            "name": sweep.name, "sweep": sweep.to_dict(), "varying": sweep.varying(),
            "configs": sweep.configs}
    text = json.dumps(_ui.plain_json(meta), indent=1, allow_nan=False) + "\n"
    atomic_write(os.path.join(path, "sweep.json"), "x", lambda f: f.write(text),
                 encoding="utf-8")

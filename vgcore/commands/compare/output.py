"""The files of ``vgcore compare``: measurements.json and measurements.csv (every run's
history), the plots' series, and the report folder: a staging folder the report is written
into, moved into place complete or removed (:class:`Staging`)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import tempfile
import threading

import numpy as np

from vgcore.commands._common import CommandError
from vgcore.core import _ui
from vgcore.experiments import report as _report
from vgcore.measure.flow import SATURATING


def write_measurements(out, runs, summary, s):
    """measurements.csv and measurements.json."""
    runs_json = []
    for r in runs:
        runs_json.append({
            "config": r.config.name, "seed": r.seed, "settings": r.config.as_dict(),
            "loss": r.losses, "diverged_at": r.diverged_at, "seconds": r.seconds,
            "test": r.test,
            "findings": [{"kind": f.kind, "severity": f.severity, "message": f.message,
                          "evidence": f.evidence, "fix": f.fix} for f in r.findings],
            "theory": None if r.theory is None else {
                "delta_norm_relative_measured": r.theory.measured,
                "delta_norm_relative_predicted": r.theory.predicted,
                "band": r.theory.band, "no_prediction_because": r.theory.reason,
                "q": r.theory_q},
            "recorder": r.recorder.to_json_object(),
        })
    doc = {"format": "vgcore.compare.measurements", "version": 1,
           "about": "per configuration and seed: the vgcore.Recorder history (format "
                    "vgcore.recorder; Recorder.from_json reads the 'recorder' object saved as "
                    "a file), the training loss of every step, held-out metrics, findings and "
                    "the mean-field theory profile; 'summary' is summary.json",
           "summary": summary, "runs": runs_json}
    _report.write_text_atomic(os.path.join(out, "measurements.json"),
                              json.dumps(_ui.plain_json(doc), allow_nan=False))

    path = os.path.join(out, "measurements.csv")
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp_path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            header = None
            for r in runs:
                cols = r.recorder.to_dict()
                if header is None:
                    header = ["config", "seed", "loss"] + list(cols)
                    w.writerow(header)
                if not len(r.recorder):
                    continue
                data = [c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()]
                L = r.recorder.n_layers
                loss = np.repeat(r.losses[r.recorder.history("step")], L).tolist()
                for i, values in enumerate(zip(*data)):
                    w.writerow([r.config.name, r.seed, loss[i], *values])
            if header is None:
                w.writerow(["config", "seed", "loss"])
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def _geo_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    if len(arrays) == 1:
        return a[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(a), axis=0))


def _mean_stack(arrays):
    n = min(a.shape[0] for a in arrays)
    a = np.stack([x[:n] for x in arrays])
    return a[0] if len(arrays) == 1 else np.mean(a, axis=0)


def series_of(cfg, runs):
    recs = [r.recorder for r in runs]
    n = min(len(r) for r in recs)
    steps = recs[0].history("step")[:n]
    theory = None
    th = [r.theory for r in runs if r.theory is not None]
    if th:
        theory = _report.TheoryCurve(_geo_stack([t.measured[None] for t in th])[0],
                                     th[0].predicted, th[0].band, th[0].reason)
    return _report.RunSeries(
        name=cfg.name, steps=steps,
        grad_norm=_geo_stack([r.history("grad_norm") for r in recs]),
        delta_norm=_geo_stack([r.history("delta_norm") for r in recs]),
        saturated_fraction=_mean_stack([r.history("saturated_fraction") for r in recs]),
        dead_fraction=_mean_stack([r.history("dead_fraction") for r in recs]),
        loss=_mean_stack([r.losses for r in runs]),
        saturating=cfg.activation in SATURATING, theory=theory)


# ------------------------------------------------------------------------------ the folder
REPORT_FILES = ("report.html", "summary.json", "measurements.json", "measurements.csv") \
    + tuple(_report.PLOTS)
"""Every file a compare report may hold: what a new report replaces."""
STAGING_PREFIX = ".vgcore-compare-partial-"


class Staging:
    """A report written into a hidden staging folder inside ``--out`` and moved into place
    only when complete: ``out`` then holds either the previous report, untouched, or the
    complete new one, never a mix (the files of an older report that the new one does not
    have are removed).

    :meth:`commit` moves the files (a few renames, with Ctrl-C and SIGTERM held back until
    they are done); :meth:`abort` removes the staging folder, and ``out`` too when this run
    created it and it is still empty.  Staging folders left by killed runs (whose process is
    gone) are removed when the next one starts.
    """

    def __init__(self, out):
        existed = os.path.isdir(out)
        self.out = _prepare_out(out)
        self.created = not existed
        self.committed = False
        self._remove_stale()
        self.path = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out)

    def _remove_stale(self):
        for name in os.listdir(self.out):
            if not name.startswith(STAGING_PREFIX):
                continue
            try:
                pid = int(name[len(STAGING_PREFIX):].split("-")[0])
                os.kill(pid, 0)
                continue                           # its run is still going
            except ProcessLookupError:
                pass
            except (ValueError, OSError):
                continue
            shutil.rmtree(os.path.join(self.out, name), ignore_errors=True)

    @property
    def previous(self):
        """Whether ``out`` holds a report (before :meth:`commit`: the previous one)."""
        return os.path.isfile(os.path.join(self.out, "report.html"))

    def commit(self, files):
        """Move ``files`` (names in the staging folder) into ``out``, remove the other report
        files there, and remove the staging folder."""
        with _signals_held():
            for name in files:
                if name != "report.html":
                    os.replace(os.path.join(self.path, name), os.path.join(self.out, name))
            for name in REPORT_FILES:
                if name not in files:
                    try:
                        os.unlink(os.path.join(self.out, name))
                    except FileNotFoundError:
                        pass
            if "report.html" in files:            # last: it names the files beside it
                os.replace(os.path.join(self.path, "report.html"),
                           os.path.join(self.out, "report.html"))
            self.committed = True
            shutil.rmtree(self.path, ignore_errors=True)

    def abort(self):
        """Remove the staging folder (and ``out``, when this run created it and it is empty)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.created:
            try:
                os.rmdir(self.out)
            except OSError:
                pass


class _signals_held:
    """Hold SIGINT and SIGTERM back for the duration of the block (main thread only); one that
    arrived meanwhile is raised as KeyboardInterrupt when the block ends."""

    def __enter__(self):
        self.got, self.old = [], {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, lambda n, f: self.got.append(n))
        return self

    def __exit__(self, *exc):
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        if self.got and exc[0] is None:
            raise KeyboardInterrupt
        return False


def _prepare_out(path):
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--out: {path} exists and is not a folder") from None
    except OSError as e:
        raise CommandError(f"--out: cannot create {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"--out: cannot write into {path}")
    return os.path.abspath(path)



"""Running a sweep: :func:`run` picks the runs its folder does not hold yet, drives an
executor, writes every result as it comes (journal first, so an interrupted sweep resumes),
shows progress, and writes the tables and phase diagrams at the end."""
from __future__ import annotations

import time

from vgcore.core import _ui
from vgcore.experiments.sweep.config import Sweep, _float, _int_at_least, run_id
from vgcore.experiments.sweep.executors import (EXECUTORS, _default_workers, _run_dask,
                                                _run_processes, _run_serial, _workers_of)
from vgcore.experiments.sweep.plots import _auto_plots
from vgcore.experiments.sweep.store import (SweepResult, _Folder, _label, _result_from, _row,
                                            _write_meta, write_tables)

__all__ = ["run"]


class _Progress:
    """On a terminal: one status line rewritten in place; otherwise (when enabled) one line per
    finished run."""

    def __init__(self, enabled, live, total, skipped, varying, stream=None):
        self.enabled = enabled
        self.status = _ui.StatusLine(live=live, stream=stream, max_width=160)
        self.total = total
        self.done = skipped
        self.skipped = skipped
        self.counts = {"ok": 0, "diverged": 0, "failed": 0}
        self.varying = varying
        self.t0 = time.monotonic()

    @property
    def live(self):
        return self.status.live

    def _eta(self):
        new = self.done - self.skipped
        left = self.total - self.done
        if new <= 0 or left <= 0:
            return ""
        per = (time.monotonic() - self.t0) / new
        return f", ~{_clock(per * left)} left"

    def start(self, executor, workers):
        if self.enabled:
            todo = self.total - self.skipped
            self.status.line(f"vgcore sweep: {todo} runs to do ({self.skipped} done already) "
                             f"on {executor} x{workers}")

    def update(self, result, row):
        self.done += 1
        self.counts[result["status"]] += 1
        if not self.enabled:
            return
        label = _label(row, self.varying)
        if result["status"] == "ok":
            what = f"final loss {row['final_loss']:.4g}, dW1/dWout {row['grad_ratio_init']:.2e}"
        elif result["status"] == "diverged":
            what = f"diverged at step {row['diverged_at']}"
        else:
            what = result["error"][:100]
        elapsed = _clock(time.monotonic() - self.t0)
        if self.live:
            c = self.counts
            self.status.update(f"vgcore sweep: {self.done}/{self.total} ({c['ok']} ok, "
                               f"{c['diverged']} diverged, {c['failed']} failed) {elapsed}"
                               f"{self._eta()} | {label}: {what}", force=True)
        else:
            self.status.line(f"[{self.done}/{self.total} {elapsed}] {result['status']:<8} "
                             f"{label}: {what}")

    def close(self):
        if self.enabled:
            self.status.close(keep=True)


def _clock(seconds):
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _check_data_files(sweep, folder):
    """Refuse to add runs on a data file to a folder whose results were made from a different
    version of the same file (same path, another SHA-256): the two would sit in one table."""
    now = {c["data"]: c["data_sha256"] for c in sweep.configs if c.get("data") is not None}
    for rec in folder.records.values():
        cfg = rec["config"]
        path, sha = cfg.get("data"), cfg.get("data_sha256")
        if path in now and sha != now[path]:
            raise ValueError(f"data: {path} has changed since the results in {folder.path} "
                             f"were made from it (SHA-256 {sha} then, {now[path]} now); "
                             f"write this sweep into another folder (--out), or move "
                             f"{folder.path} away to start afresh")


def run(sweep, out, *, executor=None, workers=None, threads=1, client=None, scheduler=None,
        resume=True, retry_failed=False, plots=True, progress=None, on_result=None,
        scheduler_timeout=20.0) -> SweepResult:
    """Run a sweep into the folder ``out``: every run not already there.

    Parameters
    ----------
    sweep : Sweep
    out : str or os.PathLike
        The results folder (created if needed).  If it holds results of runs of this sweep,
        they are kept and those runs are skipped.
    executor : {"serial", "processes", "dask"}, optional
        Default ``"dask"`` when ``client`` or ``scheduler`` is given, else ``"processes"``.
    workers : int, optional
        Processes of the ``"processes"`` executor, or of the LocalCluster ``"dask"`` starts
        when given neither ``client`` nor ``scheduler``; default one per core.
    threads : int
        Threads of each run (vgcore's and BLAS's); default 1.  Results are bit-identical
        across executors for the same ``threads``.
    client : dask.distributed.Client, optional
    scheduler : str, optional
        Address of a Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    resume : bool
        Skip the runs whose results are in ``out`` (default).  False runs them all again (the
        new results supersede the old ones in the journal).
    retry_failed : bool
        Run the runs recorded as failed again (not the diverged ones: a divergence is a
        result).
    plots : bool
        Write the phase diagrams at the end (needs matplotlib).
    progress : bool, optional
        Show progress on stderr; default: when stderr is a terminal.
    on_result : callable, optional
        Called with each new row (a dict, :data:`COLUMNS`) after it is on disk.
    scheduler_timeout : float
        Seconds to wait for the Dask ``scheduler`` to answer; default 20.

    Returns
    -------
    SweepResult

    Raises
    ------
    KeyboardInterrupt
        Passed on after the runs finished so far are on disk (and the tables written): run the
        same sweep again to continue.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep: expected a vgcore.sweep.Sweep, got {type(sweep).__name__}")
    if executor is None:
        executor = "dask" if (client is not None or scheduler is not None) else "processes"
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if (client is not None or scheduler is not None) and executor != "dask":
        raise ValueError(f"client / scheduler: only for executor 'dask', not {executor!r}")
    if client is not None and scheduler is not None:
        raise ValueError("client, scheduler: give one of them, not both")
    if workers is not None and (client is not None or scheduler is not None):
        raise ValueError("workers: sets the size of the local pool or cluster; a client's or "
                         "scheduler's cluster has its own workers")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"scheduler: expected an address like 'tcp://host:8786', got "
                         f"{scheduler!r}")
    if workers is not None:
        workers = _int_at_least(1)(workers, "workers")
    threads = _int_at_least(1)(threads, "threads")
    scheduler_timeout = _float(0.0, strict=True, optional=False)(scheduler_timeout,
                                                                   "scheduler_timeout")
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result: expected a callable, got {type(on_result).__name__}")

    t0 = time.perf_counter()
    folder = _Folder(out)
    try:
        _check_data_files(sweep, folder)
        _write_meta(folder.path, sweep)
        records = folder.records
        todo, skipped = [], 0
        for cfg in sweep.configs:
            rec = records.get(run_id(cfg))
            if resume and rec is not None and not (retry_failed and rec["status"] == "failed"):
                skipped += 1
            else:
                todo.append(cfg)
        if executor == "serial":
            n_workers = 1
        elif executor == "dask" and client is not None:
            n_workers = _workers_of(client)
        else:
            n_workers = workers or _default_workers()
        if progress is None:
            progress = _ui.is_terminal()
        prog = _Progress(bool(progress), _ui.is_terminal(), len(sweep), skipped,
                         [k for k in sweep.varying()])
        executed = 0

        def handle(result):
            nonlocal executed
            folder.write(result)
            executed += 1
            row = _row(folder.records[result["run_id"]])
            prog.update(result, row)
            if on_result is not None:
                on_result(row)

        interrupted = None
        if todo:
            prog.start(executor, n_workers)
            try:
                if executor == "serial":
                    _run_serial(todo, threads, handle)
                elif executor == "processes":
                    _run_processes(todo, threads, min(n_workers, len(todo)), handle)
                else:
                    _run_dask(todo, threads, n_workers, handle, client, scheduler,
                              scheduler_timeout)
            except KeyboardInterrupt as e:
                interrupted = e
            finally:
                prog.close()
        result = _result_from(sweep, folder.path, folder.records, executed=executed,
                              skipped=skipped, executor=executor, workers=n_workers)
        if folder.repaired:
            result.notes.append(folder.repaired)
        others = len(set(folder.records) - set(sweep.run_ids))
        if others:
            result.notes.append(f"{others} results in {folder.path} belong to runs not in this "
                                f"sweep: kept in results.jsonl, not in the tables")
        result.files = write_tables(result)
        if plots and interrupted is None:
            result.files += _auto_plots(result)
        result.seconds = time.perf_counter() - t0
        if interrupted is not None:
            raise interrupted
        return result
    finally:
        folder.close()

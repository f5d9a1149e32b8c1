"""One run of a sweep: build the network of a complete configuration, train it with its
gradient-flow measurements, diagnose it, evaluate the held-out data, and return its metrics
and history.  Every executor runs :func:`execute` (or :func:`_execute` in its workers); a
failing run is a result (``status="failed"``), never an exception."""
from __future__ import annotations

import functools
import math
import os
import socket
import time
import warnings

import numpy as np

import vgcore as vg
from vgcore.core import _ui
from vgcore.experiments import run as _exp
from vgcore.experiments.sweep.config import (METRICS, _INT_METRICS, _STR_METRICS, _canonical,
                                             run_id)

__all__ = ["execute"]


@functools.lru_cache(maxsize=4)
def _data(name, n_samples):
    return _exp.load_data(name, n_samples)


@functools.lru_cache(maxsize=4)
def _file_data(path, label, dtype, sha256):
    """A data file's training/held-out split (read once per worker process), checked against
    the SHA-256 the sweep was made with."""
    from vgcore.interop.files import experiment_data
    data, record = experiment_data(path, label, dtype=dtype)
    if record["sha256"] != sha256:
        raise ValueError(f"data: {path} has SHA-256 {record['sha256']}, not the "
                         f"{sha256} the sweep was made with: the file changed since (or this "
                         f"worker's copy differs); make the sweep again to use it as it is")
    return data


def _run_data(cfg):
    if cfg["data"] is not None:
        return _file_data(cfg["data"], cfg["label"], cfg["dtype"], cfg["data_sha256"])
    return _data(cfg["dataset"], cfg["n_samples"])


def _set_threads(threads):
    vg.set_num_threads(threads)                # vgcore's and every BLAS's


def _nan_metrics():
    m = {k: math.nan for k in METRICS}
    for k in _INT_METRICS:
        m[k] = None
    for k in _STR_METRICS:
        m[k] = ""
    m["steps_done"] = 0
    return m


def _train(cfg):
    """Train one configuration; returns ``(metrics, history)``."""
    data = _run_data(cfg)
    sizes = [data.X_train.shape[1]] + [cfg["width"]] * cfg["depth"] + [data.n_outputs]
    sigma_w = None if cfg["sigma_w2"] is None else math.sqrt(cfg["sigma_w2"])
    sigma_b = math.sqrt(cfg["sigma_b2"]) if cfg["sigma_b2"] > 0 else None
    net = vg.MLP(sizes, activation=cfg["activation"], init=cfg["init"], dtype=cfg["dtype"],
                 seed=cfg["seed"], sigma_w=sigma_w, sigma_b=sigma_b, norm=cfg["norm"],
                 residual=cfg["residual"])
    opt = _exp.make_optimizer(net, cfg["optimizer"], cfg["lr"],
                              weight_decay=cfg["weight_decay"], clip_norm=cfg["clip_norm"])
    if net.dtype != data.X_train.dtype:
        data = _exp.Data(data.name, data.X_train.astype(net.dtype),
                         data.y_train if data.n_classes else data.y_train.astype(net.dtype),
                         data.X_test.astype(net.dtype),
                         data.y_test if data.n_classes else data.y_test.astype(net.dtype),
                         data.loss, data.n_classes, data.description)
    steps = cfg["steps"]
    rec = vg.Recorder(schedule=_exp.record_steps(steps, cfg["records"]),
                      max_records=cfg["records"] + 1)
    losses, diverged = _exp.train_steps(net, opt, data, steps, cfg["batch_size"], cfg["seed"],
                                        rec)
    findings = _exp.findings_of(rec, net, diverged, opt)
    test = _exp.held_out(net, data, diverged)

    m = _nan_metrics()
    done = steps if diverged is None else diverged
    m["steps_done"] = int(done)
    m["diverged_at"] = diverged
    if diverged is None:
        tail = losses[steps - max(1, steps // 10):]
        m["final_loss"] = float(np.mean(tail))
    m["test_loss"] = test["loss"]
    m["test_accuracy"] = math.nan if test["accuracy"] is None else float(test["accuracy"])
    H = cfg["depth"]
    if len(rec):
        gr, dr = rec.history("grad_ratio"), rec.history("delta_ratio")
        m.update(grad_ratio_init=float(gr[0]), delta_ratio_init=float(dr[0]),
                 grad_ratio_final=float(gr[-1]), delta_ratio_final=float(dr[-1]))
        # no saturating units: the nanmean of an all-NaN slice is NaN, without a warning
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m["saturated_fraction"] = float(np.nanmean(rec.history("saturated_fraction")[:, :H]))
            m["dead_fraction"] = float(np.nanmean(rec.history("dead_fraction")[:, :H]))
    m["finding"] = findings[0].kind
    m["finding_text"] = findings[0].message
    m["n_params"] = int(net.n_params)
    m["sigma_w2_eff"] = float(vg.theory.effective_sigma_w2(cfg["init"], cfg["width"],
                                                           cfg["width"], sigma_w)) \
        if H > 1 else math.nan
    if cfg["norm"] is None and cfg["residual"] is None and math.isfinite(m["sigma_w2_eff"]):
        try:
            m["chi1"] = float(vg.theory.chi1(cfg["activation"], m["sigma_w2_eff"],
                                             cfg["sigma_b2"]))
        except (ValueError, RuntimeError, ArithmeticError):
            pass
    history = {"loss": [None if not math.isfinite(x) else float(x) for x in losses[:done]],
               "recorder": rec.to_json_object()}
    return m, history


def _worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(config, threads=1) -> dict:
    """Run one complete configuration (as in :attr:`Sweep.configs`) on ``threads`` threads.

    Every executor runs this (in a worker process or here).  It never raises for a failing
    run: the result's ``status`` is ``"ok"``, ``"diverged"`` or ``"failed"`` (with ``error``).
    The thread counts of vgcore and BLAS are restored afterwards.

    Returns
    -------
    dict
        ``run_id``, ``status``, ``error``, ``config``, ``metrics`` (:data:`METRICS`),
        ``history`` (``{"loss", "recorder"}`` or None), ``seconds``, ``worker``.
    """
    with _ui.limited_threads(threads):
        return _execute(config, threads)


def _execute(config, threads):
    """:func:`execute` without restoring the thread counts (the executors' workers: every run
    of a worker process sets the same counts)."""
    t0 = time.perf_counter()
    rid = run_id(config)
    try:
        cfg = _canonical(config, "config")
        if run_id(cfg) != rid:
            raise ValueError("config: expected a complete configuration (Sweep.configs)")
        _set_threads(threads)
        metrics, history = _train(cfg)
        if metrics["diverged_at"] is not None:
            status = "diverged"
            error = f"diverged at step {metrics['diverged_at']}: the loss or the output " \
                    f"stopped being finite"
        else:
            status, error = "ok", ""
    except Exception as e:          # noqa: BLE001 -- a failing run is a result, not a stop
        status, error = "failed", f"{type(e).__name__}: {' '.join(str(e).split())}"
        metrics, history = _nan_metrics(), None
    return {"run_id": rid, "status": status, "error": error, "config": dict(config),
            "metrics": metrics, "history": history,
            "threads": threads, "seconds": time.perf_counter() - t0,
            "worker": _worker_name()}


def _failed(config, error, threads=None):
    return {"run_id": run_id(config), "status": "failed", "error": error,
            "config": dict(config), "metrics": _nan_metrics(), "history": None,
            "threads": threads, "seconds": math.nan, "worker": ""}

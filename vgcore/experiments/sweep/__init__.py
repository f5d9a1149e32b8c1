"""Sweeps: many training runs over a grid of configurations, on one core, on every local core or
on a Dask cluster, with their gradient-flow measurements gathered into one table.

::

    import vgcore as vg

    sweep = vg.sweep.Sweep(
        base={"dataset": "gaussian_mixture", "width": 64, "steps": 300, "lr": 0.01},
        grid={"activation": ["tanh", "relu"], "depth": [5, 10, 20, 40],
              "sigma_w2": [0.5, 1.0, 1.5, 2.0, 3.0], "seed": [0, 1]})
    result = vg.sweep.run(sweep, "edge-of-chaos", executor="processes")
    result.rows[0]["final_loss"], result.history(result.rows[0]["run_id"])["loss"]
    vg.sweep.plot_phase_diagram(result, "phase.png", metric="final_loss")

or ``vgcore sweep edge.toml`` with the same settings in a TOML file (``vgcore sweep --example``
prints one).

A sweep
    ``base`` settings shared by every run, a ``grid`` (parameter -> list of values: every
    combination is run) and/or a list of explicit ``runs`` (each is combined with every grid
    point).  The parameters are those of :data:`PARAMS`; every run is a complete configuration
    (defaults filled in), and its ``run_id`` is a hash of that configuration, so the same
    configuration has the same id in every sweep and on every machine.

A run
    Builds ``vg.MLP([n_in] + [width] * depth + [n_out])`` on a data set generated in code
    (always the same samples: ``vgcore.datasets`` with seed 0, 80% for training, 20% held out),
    trains ``steps`` steps on random mini-batches drawn from ``seed``, records the per-layer
    gradient flow at ``records`` evenly spaced steps with a :class:`vgcore.Recorder`, diagnoses
    it and evaluates the held-out data.  Its result depends only on its configuration (seed
    included) and on ``threads``: whatever the executor, the numbers are bit-identical.

Executors
    ``"serial"`` (this process, one run after the other), ``"processes"`` (a pool of ``workers``
    local processes, default one per core, each run on ``threads`` threads, default 1, so runs
    do not fight over cores) and ``"dask"`` (a ``dask.distributed`` cluster: ``client=`` a
    ``Client``, or ``scheduler="tcp://host:8786"``, or neither to start a ``LocalCluster`` of
    ``workers`` single-threaded worker processes; needs ``pip install "vgcore[dask]"``; the
    workers need vgcore installed).  A run sets the number of threads of the process it runs in
    (vgcore's and BLAS's) to ``threads``.

Results (in the ``out`` folder)
    ``results.jsonl``: one line per finished run, appended (and flushed to disk) as each run
    finishes: the journal that makes a sweep resumable.  Run the same sweep into the same folder
    again and the runs it holds are skipped (``retry_failed=True`` runs the failed ones again).
    ``histories/<run_id>.json.gz``: the run's loss at every step and its Recorder (gzip-compressed
    JSON; read with :meth:`SweepResult.history`).  At the end: ``results.csv`` (one row per run,
    in the sweep's order; the columns in :data:`COLUMNS`), ``results.parquet`` (with pyarrow),
    ``phase_<metric>.png`` (with matplotlib, when the sweep has at least two depths and two
    weight variances) and ``sweep.json`` (the sweep's settings and its runs).  ``vgcore sweep``
    also writes ``report.html`` (:func:`write_report`): the verdict, the phase diagrams, a
    sortable results table, the failures with their errors and the run record.

A run that fails (a configuration vgcore refuses, an error while training, a worker that died)
is recorded with ``status="failed"`` and its ``error``; a run whose loss or output stops being
finite is recorded with ``status="diverged"`` and the step (``diverged_at``).  Neither stops the
sweep.
"""
from vgcore.experiments.sweep.config import COLUMNS, METRICS, PARAMS, Sweep, run_id
from vgcore.experiments.sweep.driver import run
from vgcore.experiments.sweep.executors import EXECUTORS
from vgcore.experiments.sweep.page import report_html, write_report
from vgcore.experiments.sweep.plots import PhasePanel, phase_grid, plot_phase_diagram
from vgcore.experiments.sweep.runner import execute
from vgcore.experiments.sweep.store import SweepResult, load, read_journal

__all__ = ["Sweep", "SweepResult", "run", "load", "execute", "run_id", "read_journal",
           "plot_phase_diagram", "phase_grid", "PhasePanel", "PARAMS", "METRICS", "COLUMNS",
           "EXECUTORS", "report_html", "write_report"]

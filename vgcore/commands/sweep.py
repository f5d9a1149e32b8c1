"""vgcore sweep: run a grid of training runs (depth x activation x initialisation x sigma_w^2 x
normalisation x learning rate x seeds, ...) on one core, on every local core or on a Dask
cluster, measuring every run's gradient flow, and collect one table.

The sweep is described by a TOML file (`vgcore sweep --example` prints one): settings shared
by every run, a [grid] of values whose every combination is run, and/or [[runs]] tables.
Results go into the --out folder as each run finishes (results.jsonl), so an interrupted sweep
started again skips what is done.  A run that fails or diverges is recorded with its reason
and the sweep goes on.  At the end: results.csv, results.parquet (with pyarrow), the per-run
histories (histories/), phase diagrams over (sigma_w^2, depth) per activation with the
mean-field critical line, and report.html, a page that shows it all.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from vgcore.experiments import report as _report
from vgcore.experiments import sweep as _sweep
from vgcore.experiments.sweep.store import format_value
from vgcore.commands._common import CommandError, label_arg, positive_int, read_data_file
from vgcore.experiments.report.record import data_text

HELP = "run a grid of training runs on all cores or a Dask cluster; one results table"

EXAMPLE = """\
# vgcore sweep: the edge of chaos.  Run with `vgcore sweep edge.toml`.
# Every key outside [grid] / [[runs]] / [plot] applies to every run; run
# `vgcore sweep --params` for the list of parameters and their defaults.
name = "edge of chaos"
dataset = "gaussian_mixture"   # generated in code, nothing is downloaded
width = 64
steps = 300
batch_size = 64
optimizer = "sgd"
lr = 0.01
sigma_b2 = 0.05                # biases ~ N(0, 0.05); weights ~ N(0, sigma_w2 / fan_in)

[grid]                         # every combination: 2 x 5 x 6 x 2 = 120 runs
activation = ["tanh", "relu"]
depth = [4, 8, 16, 32, 64]
sigma_w2 = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
seed = [0, 1]

# [[runs]] tables add explicit configurations, each combined with the grid:
# [[runs]]
# norm = "batch"
# [[runs]]
# norm = "none"

[plot]                         # phase diagrams drawn at the end
x = "sigma_w2_eff"             # the weight variance (also for named inits)
y = "depth"
metrics = ["final_loss", "grad_ratio_init"]
"""

EXAMPLES = """examples:
  vgcore sweep --example > edge.toml             # a sweep to start from
  vgcore sweep edge.toml                         # all local cores, results in ./edge-sweep
  vgcore sweep edge.toml --dry-run               # list the runs, run nothing
  vgcore sweep edge.toml --executor serial --threads 2
  vgcore sweep edge.toml --scheduler tcp://10.0.0.5:8786   # a Dask cluster
  vgcore sweep edge.toml --executor dask --workers 2      # a local Dask cluster
  vgcore sweep edge.toml --retry-failed          # continue, and rerun the failed runs
  vgcore sweep edge.toml --data train.csv --label species --out edge-mine   # your data

output (in --out, default ./<config name>-sweep):
  results.jsonl          one line per finished run, written as runs finish (the journal that
                         makes the sweep resumable)
  results.csv            one row per run: its parameters, status, error, final/held-out loss,
                         accuracy, gradient ratios, saturated/dead fractions, diagnosis,
                         mean-field chi_1, time
  results.parquet        the same table (needs pyarrow)
  histories/ID.json.gz   per run: the loss of every step and the Recorder's per-layer history
  phase_METRIC.png       phase diagrams over (sigma_w^2, depth)
  sweep.json             the sweep's settings and its runs
  report.html            the verdict, the phase diagrams, a sortable results table, the
                         failed and diverged runs with their errors, the run record (written
                         when the sweep is done; self-contained)

Dask workers need vgcore installed and should run one thread each:
  dask scheduler &  dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1

exit status: 0 when every run of the sweep is done (failed and diverged runs are results, see
the status and error columns); 2 for a bad argument or sweep file (one line on stderr); 130
when interrupted (what finished is on disk: run the same command again to continue)."""


def register(sub):
    p = sub.add_parser("sweep", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the sweep file")
    g = p.add_argument_group("where the runs run")
    g.add_argument("--executor", choices=_sweep.EXECUTORS,
                   help="serial (here, one run after the other), processes (default: one "
                        "process per core) or dask (default when --scheduler is given)")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="processes (or LocalCluster workers) (default: one per core)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (needs "
                        "pip install \"vgcore[dask]\")")
    g.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="threads of each run (default 1: runs do not fight over cores; the "
                        "results are the same whatever the executor)")
    d = p.add_argument_group("your own data")
    d.add_argument("--data", metavar="PATH",
                   help="train every run on this file instead of the sweep file's generated "
                        "data set (.npz, .npy, .csv / .tsv, .parquet; its dataset and "
                        "n_samples are then dropped): the input width and classes come from "
                        "the file, 20%% of its rows are held out, features are standardised; "
                        "every run records the file's SHA-256, and a folder whose results "
                        "came from another version of the file is refused (a sweep file may "
                        "also set data = \"PATH\", relative to it, and label)")
    d.add_argument("--label", type=label_arg, metavar="COLUMN",
                   help="the label column of a --data table (a name or a 0-based index)")
    o = p.add_argument_group("what to run and write")
    o.add_argument("--out", metavar="DIR",
                   help="results folder (default ./<config file name>-sweep)")
    o.add_argument("--retry-failed", dest="retry_failed", action="store_true",
                   help="run the runs recorded as failed again")
    o.add_argument("--rerun", action="store_true",
                   help="run every run again, even those already in --out")
    o.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="list the runs and which are done; run nothing")
    o.add_argument("--no-plots", dest="no_plots", action="store_true",
                   help="draw no phase diagrams")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    o.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout")
    o.add_argument("--example", action="store_true",
                   help="print an example sweep file and exit")
    o.add_argument("--params", action="store_true",
                   help="list the parameters of a run and exit")
    p.set_defaults(func=run)
    return p


def _params_text():
    lines = ["parameters of a run (set them at the top of the file, in [grid] or in [[runs]]):"]
    for name, (default, _, meaning) in _sweep.PARAMS.items():
        d = "none" if default is None else json.dumps(default)
        lines.append(f"  {name:<13} default {d:<20} {meaning}")
    lines.append("")
    lines.append("columns measured per run (results.csv):")
    for name, meaning in _sweep.METRICS.items():
        lines.append(f"  {name:<19} {meaning}")
    return "\n".join(lines)


def _load(path):
    try:
        return _sweep.Sweep.from_toml(path)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from None
    except PermissionError:
        raise CommandError(f"cannot read {path}: permission denied") from None
    except (ValueError, TypeError) as e:
        raise CommandError(" ".join(str(e).split())) from None
    except ImportError as e:
        raise CommandError(str(e)) from None


def _with_data(sweep, args):
    """The sweep with ``--data`` / ``--label`` in its base settings (the command line
    overrides the file: its dataset and n_samples are dropped)."""
    if args.data is None:
        if args.label is not None:
            raise CommandError("--label: names the label column of a --data file; add --data "
                               "PATH")
        return sweep
    if not os.path.isfile(args.data):
        raise CommandError(f"--data: no such file: {args.data}" if not os.path.exists(args.data)
                           else f"--data: {args.data} is not a file")
    base = {k: v for k, v in sweep.base.items()
            if k.replace("-", "_") not in ("dataset", "n_samples", "data", "label",
                                           "data_sha256")}
    base.update(data=args.data, label=args.label)
    try:
        return _sweep.Sweep(grid=sweep.grid, runs=sweep.runs, base=base, name=sweep.name,
                            plot=sweep.plot)
    except (ValueError, TypeError) as e:
        raise CommandError(f"--data: {' '.join(str(e).split())}") from None


def _data_records(sweep, option):
    """Read every data file of the sweep once, here, before any run (a bad file is one error
    now, not a failed run each): ``(data, extra)`` for the run record."""
    seen = {}
    for c in sweep.configs:
        if c.get("data") is not None:
            seen.setdefault((c["data"], c["label"], c["data_sha256"]), None)
    entries = []
    for path, label, sha in seen:
        _, rec = read_data_file(path, label, option=option)
        if rec["sha256"] != sha:
            raise CommandError(f"data: {path} changed while the sweep was being made; run it "
                               f"again when nothing writes to the file")
        entries.append(rec)
    if not entries:
        return None, {}
    if len(entries) == 1:
        return entries[0], {}
    return None, {"data files": "; ".join(data_text(e) for e in entries)}


def _default_out(path):
    stem = os.path.splitext(os.path.basename(path))[0] or "vgcore"
    return f"{stem}-sweep"


def _dry_run(sweep, out):
    done = {}
    journal = os.path.join(out, "results.jsonl")
    if os.path.isfile(journal):
        try:
            done = _sweep.read_journal(journal)
        except ValueError as e:
            raise CommandError(str(e)) from None
    varying = sweep.varying()
    print(f"{sweep.name}: {len(sweep)} runs; varying: {', '.join(varying) or 'nothing'}")
    print(f"{'run_id':<13} {'status':<9} " + " ".join(f"{k:>12}" for k in varying))
    for cfg, rid in zip(sweep.configs, sweep.run_ids):
        status = done[rid]["status"] if rid in done else "to do"
        print(f"{rid:<13} {status:<9} "
              + " ".join(f"{format_value(cfg[k]):>12}" for k in varying))
    n_done = sum(1 for rid in sweep.run_ids if rid in done)
    print(f"{n_done} of {len(sweep)} done in {os.path.abspath(out)}")
    return 0


def _shown(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def run(args):
    if args.example:
        sys.stdout.write(EXAMPLE)
        return 0
    if args.params:
        print(_params_text())
        return 0
    if not args.config:
        raise CommandError("expected a sweep file: vgcore sweep CONFIG.toml (vgcore sweep "
                           "--example prints one)")
    if args.rerun and args.retry_failed:
        raise CommandError("--rerun runs everything again; --retry-failed is then implied")
    if args.scheduler is not None and args.executor not in (None, "dask"):
        raise CommandError(f"--scheduler needs the dask executor, not --executor "
                           f"{args.executor}")
    if args.scheduler is not None and args.workers is not None:
        raise CommandError("--workers sets the size of a local cluster; a --scheduler's "
                           "cluster has its own workers")
    sweep = _with_data(_load(args.config), args)
    out = args.out or _default_out(args.config)
    if args.dry_run:
        return _dry_run(sweep, out)
    data, data_extra = _data_records(sweep, "--data" if args.data else "data")
    try:
        result = _sweep.run(sweep, out, executor=args.executor, workers=args.workers,
                            threads=args.threads, scheduler=args.scheduler,
                            resume=not args.rerun, retry_failed=args.retry_failed,
                            plots=not args.no_plots, progress=not args.quiet)
    except KeyboardInterrupt:
        try:
            partial = _sweep.load(out, sweep)
            print(f"vgcore sweep: interrupted; {len(partial.rows)} of {len(sweep)} runs are "
                  f"on disk in {partial.out}: run the same command again to continue",
                  file=sys.stderr)
        except (OSError, ValueError):
            print("vgcore sweep: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, RuntimeError, ImportError, ConnectionError) as e:
        raise CommandError(" ".join(str(e).split())) from None
    except OSError as e:
        raise CommandError(f"--out: cannot write into {out}: {e.strerror or e}") from None
    record = _report.run_record(
        command=_report.command_line(args.argv) if getattr(args, "argv", None) else None,
        config=args.config, data=data, threads=args.threads,
        extra={"executor": f"{result.executor}, {result.workers} worker"
                           f"{'s' if result.workers != 1 else ''}, {args.threads} thread"
                           f"{'s' if args.threads != 1 else ''} per run", **data_extra})
    try:
        result.files.append(_sweep.write_report(result, record))
    except OSError as e:
        raise CommandError(f"--out: cannot write report.html into {out}: "
                           f"{e.strerror or e}") from None
    if args.json:
        print(json.dumps({
            "format": "vgcore.sweep.summary", "version": 1, "name": sweep.name,
            "out": result.out, "runs": len(sweep), "done": len(result.rows),
            "ok": result.count("ok"), "diverged": result.count("diverged"),
            "failed": result.count("failed"), "executed": result.executed,
            "skipped": result.skipped, "seconds": result.seconds,
            "executor": result.executor, "workers": result.workers,
            "files": result.files, "notes": result.notes,
        }, indent=2))
        return 0
    print(result.summary())
    print("files: " + ", ".join(_shown(f) for f in result.files))
    return 0

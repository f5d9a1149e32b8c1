"""vgcore compare: train deep networks side by side, measure the gradient reaching every
layer at every step, and write a report.

With no options it tells the story of the vanishing-gradient problem: 20 hidden layers of 64
units on a 10-class Gaussian mixture.  Sigmoid and tanh under the standard initialisation lose
their gradient on the way down and do not learn; ReLU with He initialisation, tanh with Glorot
or orthogonal initialisation, batch normalisation and residual blocks keep it and learn; an
adaptive optimiser (Adam) on the sigmoid network shows what rescaling the steps can and cannot
do.  Each configuration is trained for --steps steps with a vgcore.Recorder; the table shows
the first/last layer gradient ratios at the first step, saturation and dead units over the run,
held-out loss and accuracy and the diagnosis; the report folder holds the raw measurements
(CSV, JSON), the plots and report.html.

Choosing the configurations: --activations and/or --inits (or --norm / --residual) make a grid
(every activation with every initialiser, each with the given normalisation, residual blocks
and optimiser); a --config TOML file can list them explicitly.  Options on the command line
override the config file, which overrides the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

import vgcore as vg
from vgcore.commands._common import CommandError, label_arg, positive_float, positive_int
from vgcore.commands.compare.output import Staging, series_of, write_measurements
from vgcore.commands.compare.page import write_html
from vgcore.commands.compare.settings import (DEFAULTS, INITS, OPTIMIZERS, _argtype, _seed,
                                              check_activation, check_dataset, check_init,
                                              check_norm, check_optimizer, check_residual,
                                              load_data, resolve)
from vgcore.commands.compare.summary import _settings_line, format_table, summarise, verdict
from vgcore.commands.compare.tensorboard import check_tensorboard, open_writer
from vgcore.commands.compare.training import Progress, _record_steps, train
from vgcore.core import _ui
from vgcore.experiments import report as _report


HELP = "train deep networks side by side, measure their gradient flow, write a report " \
       "(the default command)"

EXAMPLES = """examples:
  vgcore compare                                   # the vanishing-gradient story, 15-40 s
  vgcore compare --out my-report --steps 2000 --seeds 0 1 2
  vgcore compare --activations sigmoid tanh relu --inits standard glorot_uniform he_normal
  vgcore compare --activations sigmoid --norm batch --optimizer adam --lr 0.001
  vgcore compare --depth 50 --width 32 --json > summary.json
  vgcore compare --data train.csv --label species  # your data: a .csv/.tsv/.npz/.npy/.parquet
  vgcore compare --tensorboard runs/               # then: tensorboard --logdir runs/
  vgcore compare --config runs.toml                # see below

config file (TOML; every key optional, names as the options, - or _):
  depth = 30
  width = 64
  steps = 1500
  seeds = [0, 1]
  dataset = "two_spirals"    # or data = "train.csv" (relative to this file), label = "y"
  optimizer = "sgd"          # the optimiser of configurations that name none
  lr = 0.02
  [[config]]                 # explicit configurations (instead of the story or a grid)
  name = "sigmoid + batch norm"
  activation = "sigmoid"
  init = "standard"          # norm = "batch" | "layer"; residual = "auto" | 0.5;
  norm = "batch"             # optimizer = "adam"; lr = 0.001
  [[config]]
  activation = "relu"
  init = "he_normal"

output (in --out, default ./vgcore-report; written into a hidden staging folder there and
moved into place when complete, so an interrupted run leaves the previous report, or none):
  report.html        the verdict, the table, the diagnoses with the measurement each rests on,
                     the plots (embedded), the run record; self-contained
  summary.json       the table's numbers (what --json prints)
  measurements.json  per configuration and seed: the Recorder history, the loss of every
                     step, the held-out metrics, the findings, the theory profile
  measurements.csv   one row per (configuration, seed, recorded step, layer)
  *.png              the plots

exit status: 0 on success, 2 for a bad argument or config file (one line on stderr), 130 when
interrupted (Ctrl-C or SIGTERM: --out is left as it was)."""


def register(sub):
    p = sub.add_parser("compare", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("network and training")
    g.add_argument("--depth", type=positive_int, metavar="N",
                   help=f"hidden layers (default {DEFAULTS['depth']})")
    g.add_argument("--width", type=positive_int, metavar="N",
                   help=f"units per hidden layer (default {DEFAULTS['width']})")
    g.add_argument("--activations", nargs="+", type=_argtype(check_activation), metavar="ACT",
                   help="hidden activations of a grid of configurations (default grid: "
                        "sigmoid tanh relu); one of " + ", ".join(vg.ACTIVATIONS))
    g.add_argument("--inits", nargs="+", type=_argtype(check_init), metavar="INIT",
                   help="initialisers of the grid (default: standard); one of "
                        + ", ".join(INITS))
    g.add_argument("--norm", type=_argtype(check_norm), metavar="{none,batch,layer}",
                   help="normalisation of every configuration of the grid (default none)")
    g.add_argument("--residual", type=_argtype(check_residual), metavar="{none,auto,SCALE}",
                   help="residual blocks x + SCALE*phi(z) in every configuration of the grid; "
                        "auto = 1/sqrt(depth) (default none)")
    g.add_argument("--optimizer", type=_argtype(check_optimizer),
                   metavar="{" + ",".join(OPTIMIZERS) + "}",
                   help="optimiser of every configuration that names none (default sgd; "
                        "momentum and nesterov use momentum 0.9)")
    g.add_argument("--lr", type=positive_float, metavar="RATE",
                   help="learning rate of --optimizer (default: " + ", ".join(
                       f"{k} {v:g}" for k, v in OPTIMIZERS.items()) + "); a configuration "
                        "that names its own optimiser keeps that one's default or its own lr")
    g.add_argument("--dataset", type=_argtype(check_dataset), metavar="NAME",
                   help="gaussian_mixture (default: 64 features, 10 classes), two_spirals "
                        "(2 classes), digits (needs scikit-learn) or teacher_student "
                        "(regression, mse); generated in code, nothing is downloaded; 20%% is "
                        "held out for the final loss and accuracy")
    g.add_argument("--data", metavar="PATH",
                   help="train on your own file instead of a generated data set: .npz (arrays "
                        "X and y), .npy (features; the labels a second .npy given as --label, "
                        "or a column), .csv / .tsv (header detected) or .parquet; the input "
                        "width and the number of classes come from the file; every feature is "
                        "standardised with the training part's mean and std; 20%% of the rows "
                        "(at random, seed 0) are held out; the report records the file's "
                        "SHA-256 (vgcore.datasets.load has the details)")
    g.add_argument("--label", type=label_arg, metavar="COLUMN",
                   help="the label column of a --data table: a header name, or a 0-based "
                        "index (-1: the last); default a column called label, labels, y, "
                        "target or class; for .npz the labels' array name, for .npy a labels "
                        ".npy file or a column index")
    g.add_argument("--steps", type=positive_int, metavar="N",
                   help=f"training steps per configuration (default {DEFAULTS['steps']})")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, metavar="N",
                   help=f"mini-batch size (default {DEFAULTS['batch_size']})")
    g.add_argument("--seeds", nargs="+", type=_seed, metavar="SEED",
                   help="seeds of the initialisation and batch order; with several, every "
                        "number is their mean (geometric for the ratios) (default 0)")
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="compute threads (default: the OpenMP default, the number of cores)")
    g.add_argument("--config", metavar="FILE.toml",
                   help="a TOML file with any of these options and/or [[config]] tables "
                        "(see below)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR",
                   help=f"report folder, created if needed (default ./{DEFAULTS['out']})")
    o.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard event files: one run folder per configuration "
                        "(and seed) in DIR, with the recorded per-layer gradient norms, error "
                        "signals, saturated and dead fractions, ratios and the training loss "
                        "(needs tensorboardX: pip install \"vgcore[tensorboard]\"); then "
                        "tensorboard --logdir DIR")
    o.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout instead of the table")
    o.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (progress is shown only on a terminal anyway)")
    o.add_argument("--no-plots", dest="no_plots", action="store_true",
                   help="write no PNG plots (the HTML then holds the table and diagnosis)")
    p.set_defaults(func=run)
    return p


def run(args):
    """Run ``vgcore compare``: train, then write the report into a staging folder inside
    --out and move it into place complete (Ctrl-C or SIGTERM before that leaves --out as it
    was, and says so)."""
    s, configs = resolve(args)
    data, s["data_record"] = load_data(s)
    if s["tensorboard"] is not None:
        check_tensorboard(s["tensorboard"], configs, s["seeds"])
    total = len(configs) * len(s["seeds"])
    progress = Progress(not args.quiet and _ui.is_terminal(), total)
    stage = Staging(s["out"])
    runs = []
    try:
        with _stop_on_sigterm():
            result = _run(args, s, configs, data, stage, progress, runs)
    except KeyboardInterrupt:
        print(f"vgcore compare: {_interrupted_text(stage, len(runs), total)}", file=sys.stderr)
        return 130
    except BaseException:
        stage.abort()
        raise
    return result


def _interrupted_text(stage, done, total):
    if stage.committed:
        return f"interrupted after the report was written; it is complete: " \
               f"{os.path.join(stage.out, 'report.html')}"
    stage.abort()
    if stage.previous:
        where = f"the report already in {stage.out} is unchanged"
    elif not os.path.isdir(stage.out):
        where = f"nothing was written (the folder {stage.out} it made is removed again)"
    else:
        where = f"nothing was written: {stage.out} holds no report"
    return f"interrupted after {done} of {total} runs; {where}"


class _stop_on_sigterm:
    """SIGTERM raises KeyboardInterrupt inside the block (main thread only), so an
    interrupted compare cleans up whichever way it is stopped."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _run(args, s, configs, data, stage, progress, runs):
    out, folder = stage.out, stage.path
    threads_before = vg.get_num_threads()
    t0 = time.perf_counter()
    try:
        if s["threads"] is not None:
            vg.set_num_threads(s["threads"])
        s["threads_used"] = vg.get_num_threads()
        try:
            for cfg in configs:
                for seed in s["seeds"]:
                    runs.append(train(cfg, seed, data, s, progress,
                                      writer=open_writer(s, configs, cfg, seed)))
            settings_text = _settings_line(s, data)
            rows = [summarise(c, [r for r in runs if r.config is c], s["depth"])
                    for c in configs]
            series = [series_of(c, [r for r in runs if r.config is c]) for c in configs]
            progress.note("writing the report")
            try:
                plots = _report.make_plots(series, folder, enabled=s["plots"])
            except OSError as e:
                raise CommandError(f"--out: cannot write the plots into {out}: "
                                   f"{e.strerror or e}") from None
        finally:
            progress.close()
        record = _report.run_record(
            command=_report.command_line(args.argv) if getattr(args, "argv", None) else None,
            config=s.get("config_path"), data=s["data_record"], threads=s["threads_used"],
            theory=_theory_lines(runs))
    finally:
        if vg.get_num_threads() != threads_before:
            vg.set_num_threads(threads_before)
    elapsed = time.perf_counter() - t0
    settings = {k: s[k] for k in ("mode", "depth", "width", "dataset", "steps", "batch_size",
                                  "seeds", "optimizer", "lr")}
    settings.update(data_file=s["data_record"], tensorboard=s["tensorboard"])
    settings.update(threads=s["threads_used"], data=data.description, loss=data.loss,
                    n_train=int(len(data.X_train)), n_test=int(len(data.X_test)),
                    classes=data.n_classes, chance_accuracy=data.chance,
                    recorded_steps=len(_record_steps(s["steps"])))
    files = ["report.html", "summary.json", "measurements.json", "measurements.csv"] \
        + plots.written
    summary = _ui.plain_json({
        "format": "vgcore.compare", "version": 1, "settings": settings,
        "verdict": verdict(rows, data.chance),
        "columns": {
            "grad_ratio_first": "||dL/dW_1|| / ||dL/dW_L|| at the first step "
                                "(GradientFlow.grad_ratio); geometric mean over seeds",
            "delta_ratio_first": "||delta_1|| / ||delta_L|| at the first step "
                                 "(GradientFlow.delta_ratio); geometric mean over seeds",
            "grad_ratio_last": "the same at the last recorded step",
            "delta_ratio_last": "the same at the last recorded step",
            "saturated_fraction": "entries with |phi'(h)| < 5% of its maximum (vgcore.flow; 0 "
                                  "for piecewise-linear activations such as relu): mean over "
                                  "hidden layers and recorded steps (and seeds)",
            "dead_fraction": "mean over hidden layers and recorded steps (and seeds)",
            "loss": "held-out loss after training (mean over seeds)",
            "accuracy": "held-out accuracy after training (mean over seeds)",
            "train_loss": "mean training loss over the last 10% of steps",
            "diagnosis": "kind of the first vgcore.diagnose finding on the Recorder "
                         "(the most common over seeds)",
            "rests_on": "the measurement that diagnosis rests on, beside its alarm level",
        },
        "configurations": rows, "out": out, "files": files,
        "skipped_plots": plots.skipped, "skipped_reason": plots.reason,
        "seconds": elapsed, "record": record,
    })
    try:
        _report.write_text_atomic(os.path.join(folder, "summary.json"),
                                  json.dumps(summary, indent=2, allow_nan=False) + "\n")
        write_measurements(folder, runs, summary, s)
        write_html(folder, s, data, rows, configs, runs, plots, elapsed, record, shown_out=out)
        stage.commit(files)
    except OSError as e:
        raise CommandError(f"--out: cannot write the report into {out}: {e.strerror or e}") \
            from None

    if plots.skipped and s["plots"]:
        print(f"vgcore compare: skipped plots {', '.join(plots.skipped)}: {plots.reason}",
              file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    print(f"vgcore compare: {settings_text}")
    print()
    print(format_table(rows))
    print()
    print("dW, delta: ||dL/dW|| and the backpropagated error at layer 1 over the output layer's "
          "at the first step.")
    chance = "" if data.chance is None else f"; chance accuracy is {100 * data.chance:.0f}%"
    print(f"saturated (|phi'| below 5% of its maximum; 0 for piecewise-linear activations such as "
          f"relu, whose zero derivatives are inactive) and dead units: mean over hidden layers "
          f"and the run{chance}.")
    print(f"verdict: {summary['verdict']}")
    print(f"report: {os.path.join(out, 'report.html')} ({len(files)} files, "
          f"{elapsed:.1f} s)" + (f"; skipped plots: {plots.reason}" if plots.skipped else ""))
    if s["tensorboard"] is not None:
        print(f"TensorBoard: {len(runs)} run{'s' if len(runs) != 1 else ''} in "
              f"{s['tensorboard']} (tensorboard --logdir {s['tensorboard']})")
    return 0


def _theory_lines(runs):
    """The run record's theory lines: which configurations the plot compares with a
    prediction, and why the others have none."""
    with_pred, reasons = [], {}
    for r in runs:
        if r.theory is None:
            continue
        if r.theory.predicted is not None:
            with_pred.append(r.config.name)
        else:
            reasons.setdefault(r.theory.reason, []).append(r.config.name)
    lines = []
    if with_pred:
        lines.append("vgcore.theory.predicted_gradient_profile (infinite-width signal "
                     "propagation at initialisation, training-mode pass: mean field, batch "
                     "norm at the run's batch size, layer norm, residual blocks, dropout) for "
                     + "; ".join(dict.fromkeys(with_pred)))
    for reason, names in reasons.items():
        lines.append(f"no prediction for {'; '.join(dict.fromkeys(names))}: {reason}")
    return lines

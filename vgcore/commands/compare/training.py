"""Training the configurations of ``vgcore compare``: one run per configuration and seed, its
Recorder, diagnosis, held-out metrics and mean-field profile, with a status line on a
terminal."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import vgcore as vg
from vgcore.commands._common import CommandError
from vgcore.commands.compare.settings import Config, _one_line
from vgcore.commands.compare.tensorboard import finish_writer
from vgcore.core import _ui
from vgcore.experiments.run import findings_of, held_out, record_steps, train_steps
from vgcore.experiments.run import make_optimizer as _make_optimizer
from vgcore.experiments.report.figures import TheoryCurve

MAX_RECORDS = 64          # recorded steps per run (evenly spaced, first and last included)


class Progress:
    """One status line on stderr, rewritten in place (only when enabled: on a terminal)."""

    def __init__(self, enabled, total_runs):
        self.status = _ui.StatusLine(live=enabled)
        self.total = total_runs
        self.done = 0

    @property
    def enabled(self):
        return self.status.live

    def show(self, label, step, steps, force=False):
        if self.enabled:
            self.status.update(f"vgcore compare [{self.done + 1}/{self.total}] {label}: step "
                               f"{step}/{steps}", force=force)

    def note(self, text):
        self.status.update(f"vgcore compare: {text}", force=True)

    def finish_run(self):
        self.done += 1

    def close(self):
        self.status.close()


def _record_steps(steps):
    return record_steps(steps, MAX_RECORDS)


def make_optimizer(net, cfg):
    return _make_optimizer(net, cfg.optimizer, cfg.lr)


@dataclass
class Run:
    """One configuration trained with one seed."""

    config: Config
    seed: int
    recorder: object
    losses: np.ndarray
    test: dict
    findings: list
    diverged_at: int | None
    seconds: float
    theory: TheoryCurve | None = None
    theory_q: list | None = None


def train(cfg, seed, data, s, progress, writer=None):
    """Train one configuration with one seed; with ``writer`` (a TensorBoardWriter), its
    Recorder writes every recorded step there too, then the losses (the writer is closed)."""
    sizes = [data.X_train.shape[1]] + [s["width"]] * s["depth"] + \
        [data.n_classes if data.n_classes else data.y_train.shape[1]]
    try:
        net = vg.MLP(sizes, activation=cfg.activation, init=cfg.init, seed=seed,
                     norm=cfg.norm, residual=cfg.residual)
    except (ValueError, TypeError) as e:
        raise CommandError(f"configuration {cfg.name!r}: {_one_line(e)}") from None
    opt = make_optimizer(net, cfg)
    steps, batch = s["steps"], s["batch_size"]
    try:
        rec = vg.Recorder(schedule=_record_steps(steps), max_records=MAX_RECORDS + 1,
                          tensorboard=writer)
        t0 = time.perf_counter()
        losses, diverged = train_steps(net, opt, data, steps, batch, seed, rec,
                                       lambda step: progress.show(cfg.name, step + 1, steps))
        seconds = time.perf_counter() - t0
        progress.show(cfg.name, steps if diverged is None else diverged, steps, force=True)
        findings = findings_of(rec, net, diverged, opt)
        test = held_out(net, data, diverged)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    finish_writer(writer, cfg, seed, losses, test, data)

    theory, theory_q = theory_curve(net, data, rec, s["depth"], batch)
    progress.finish_run()
    return Run(cfg, seed, rec, losses, test, findings, diverged, seconds, theory, theory_q)


def theory_curve(net, data, rec, depth, batch):
    """The error profile at the first step, measured, beside the theory's prediction for
    ``net`` (:func:`vgcore.theory.predicted_gradient_profile` of the training-mode pass at
    initialisation, with ``batch`` for batch norm: plain, normalised, residual and dropout
    networks alike), its band when the profile has one, or the reason there is none:
    ``(TheoryCurve or None, q or None)``.

    The one place compare asks the theory: the plot draws whatever this returns."""
    if not len(rec) or depth < 1:
        return None, None
    H = depth
    d0 = rec.history("delta_norm", 0, 1)[0][:H]
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = d0 / d0[H - 1]
    try:
        prof = vg.theory.predicted_gradient_profile(net, X=data.X_train, batch=batch,
                                                    training=True)
    except (ValueError, TypeError, ArithmeticError) as e:
        return TheoryCurve(measured, reason=_one_line(e)), None
    if not getattr(prof, "applies", True):
        return TheoryCurve(measured, reason=getattr(prof, "reason", None)), None
    band = None
    if callable(getattr(prof, "band", None)):
        b = prof.band()
        if b is not None:
            band = (np.sqrt(b[0]), np.sqrt(b[1]))
    return TheoryCurve(measured, np.sqrt(prof.delta_sq), band), prof.q.tolist()

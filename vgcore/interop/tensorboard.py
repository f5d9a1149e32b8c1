"""The gradient flow in TensorBoard: event files written with tensorboardX.

Three ways in, all writing the same tags:

- ``vg.Recorder(..., tensorboard="runs/exp1")``: every history row the recorder stores is also
  written (``rec.tensorboard`` is the :class:`TensorBoardWriter`; ``close()`` it at the end,
  or it flushes every ``flush_secs``);
- the ``vg.fit`` callback :class:`TensorBoard`: ``vg.fit(net, X, y, callbacks=
  [vg.TensorBoard("runs/exp1")])`` writes the flow every ``every`` steps, the step's loss, the
  epoch's logged values and histograms of the weight gradients;
- :func:`write_run`: a finished run (a :class:`vgcore.Recorder` and its per-step losses), as
  ``vgcore compare --tensorboard DIR`` will write each configuration.

Then ``tensorboard --logdir runs``.  Needs tensorboardX (``pip install
"vgcore[tensorboard]"``); TensorBoard itself is needed only to look.

Tags
----
``<field>/layer_<l>``
    A per-layer measurement of :mod:`vgcore.flow` for layer ``l`` (1-based, zero-padded so
    layers sort in order), for each field in ``fields`` (default :data:`DEFAULT_FIELDS`:
    ``grad_norm`` (||dL/dW||), ``delta_norm`` (the error signal ||dL/dh||),
    ``saturated_fraction``, ``zero_derivative_fraction`` (inactive units), ``dead_fraction``,
    ``grad_to_weight`` and ``update_to_weight``).
``flow/grad_ratio``, ``flow/delta_ratio``
    First layer over output layer.
``flow/nonfinite_forward_layer``, ``flow/nonfinite_backward_layer``
    The 1-based layer where a NaN or Inf first appeared, 0 when none.
``weight_grad/layer_<l>``
    Histograms of dL/dW_l, at most one per ``histogram_every`` steps (0: none).
``loss/train``, ``epoch/<name>``
    The step's training loss; the epoch's logged values (``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``, ``lr``) at the epoch's last step.
``loss/held_out``, ``accuracy/held_out``
    (:func:`write_run`) the held-out evaluation at the run's last step.

TensorBoard stores scalars as float32.  A value that is NaN or Inf is not written (TensorBoard
cannot draw it): ``update_to_weight`` before an optimiser step, the output layer's ``gain``,
a layer's numbers after a divergence (the ``nonfinite`` tags say where it began).
"""
from __future__ import annotations

import math
import os

import numpy as np

from vgcore.measure.flow import FIELDS

__all__ = ["TensorBoardWriter", "TensorBoard", "write_run", "DEFAULT_FIELDS", "layer_tag"]

DEFAULT_FIELDS = ("grad_norm", "delta_norm", "saturated_fraction", "zero_derivative_fraction",
                  "dead_fraction", "grad_to_weight", "update_to_weight")


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise ImportError("writing TensorBoard files needs tensorboardX: pip install "
                          "\"vgcore[tensorboard]\" (or pip install tensorboardX)",
                          name="tensorboardX") from exc
    return SummaryWriter


def layer_tag(name: str, layer: int, n_layers: int) -> str:
    """``"grad_norm/layer_07"``: the tag of a per-layer value (``layer`` 1-based), padded to the
    digits of ``n_layers`` so TensorBoard lists the layers in order."""
    return f"{name}/layer_{layer:0{len(str(n_layers))}d}"


def _check_fields(fields):
    if fields == "all":
        return tuple(FIELDS)
    if isinstance(fields, str) or not hasattr(fields, "__iter__"):
        raise TypeError(f"fields: expected 'all' or a list of names of vgcore.flow.FIELDS, got "
                        f"{fields!r}")
    fields = tuple(fields)
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ValueError(f"fields: unknown {', '.join(map(repr, unknown))}; expected names "
                         f"from {', '.join(FIELDS)}")
    return fields


def _check_interval(v, name, minimum):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


class TensorBoardWriter:
    """Writes gradient-flow measurements, losses and histograms to a TensorBoard log folder.

    Parameters
    ----------
    logdir : str or os.PathLike
        The run's folder (created when missing); point ``tensorboard --logdir`` at it or at
        its parent.
    fields : "all" or sequence of str
        The per-layer measurements to write (names of :data:`vgcore.flow.FIELDS`); default
        :data:`DEFAULT_FIELDS`.
    histogram_every : int >= 0
        Write histograms of the weight gradients at the first step offered with a network
        and then at most once per ``histogram_every`` steps; 0 writes none.  Default 100.
    flush_secs : float
        How often the background writer flushes to disk (default 10 s); :meth:`flush` and
        :meth:`close` flush at once.
    """

    def __init__(self, logdir, *, fields=DEFAULT_FIELDS, histogram_every=100, flush_secs=10):
        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir: expected a folder path (str or os.PathLike), got "
                            f"{type(logdir).__name__}")
        self.fields = _check_fields(fields)
        self.histogram_every = _check_interval(histogram_every, "histogram_every", 0)
        self.logdir = os.fspath(logdir)
        if os.path.exists(self.logdir) and not os.path.isdir(self.logdir):
            raise ValueError(f"logdir: {self.logdir!r} exists and is not a folder")
        self._w = _summary_writer()(logdir=self.logdir, flush_secs=flush_secs)
        self._last_histogram = None
        self.closed = False

    # ---------------------------------------------------------------- writing
    def add_scalar(self, tag: str, value, step: int) -> bool:
        """Write one finite value; returns False (and writes nothing) for NaN or Inf."""
        v = float(value)
        if not math.isfinite(v):
            return False
        self._w.add_scalar(tag, v, int(step))
        return True

    def add_scalars(self, values: dict, step: int, prefix: str = "") -> None:
        """Write ``{name: value}`` as ``prefix + name`` (non-finite values skipped)."""
        for k, v in values.items():
            if v is not None:
                self.add_scalar(prefix + str(k), v, step)

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        self._w.add_text(tag, str(text), int(step))

    def add_flow(self, flow, step: int, net=None) -> None:
        """Write one step's :class:`vgcore.flow.GradientFlow` (the tags in the module
        docstring); with ``net`` (the network it was measured on, its gradients still those of
        that step) also the weight-gradient histograms when due."""
        L = flow.n_layers
        for name in self.fields:
            values = getattr(flow, name)
            for l in range(L):
                self.add_scalar(layer_tag(name, l + 1, L), values[l], step)
        self.add_scalar("flow/grad_ratio", flow.grad_ratio, step)
        self.add_scalar("flow/delta_ratio", flow.delta_ratio, step)
        self.add_scalar("flow/nonfinite_forward_layer", flow.nonfinite_forward_layer or 0, step)
        self.add_scalar("flow/nonfinite_backward_layer", flow.nonfinite_backward_layer or 0,
                        step)
        if net is not None and self.histogram_every and (
                self._last_histogram is None
                or step - self._last_histogram >= self.histogram_every):
            self.add_weight_grad_histograms(net, step)

    def add_weight_grad_histograms(self, net, step: int) -> None:
        """Histograms of every layer's dL/dW (layers with NaN or Inf are skipped)."""
        L = net.n_layers
        for l, g in enumerate(net.weight_grads):
            if np.isfinite(g).all():
                self._w.add_histogram(layer_tag("weight_grad", l + 1, L), g, int(step))
        self._last_histogram = int(step)

    def add_recorder(self, recorder) -> None:
        """Write every history row a :class:`vgcore.Recorder` holds (the flow tags only: a
        recorder keeps no gradients for histograms)."""
        L = recorder.n_layers
        if L == 0:
            return
        arrays = recorder.to_arrays()
        for i, step in enumerate(arrays["step"]):
            s = int(step)
            for name in self.fields:
                for l in range(L):
                    self.add_scalar(layer_tag(name, l + 1, L), arrays[name][i, l], s)
            for name in ("grad_ratio", "delta_ratio", "nonfinite_forward_layer",
                         "nonfinite_backward_layer"):
                self.add_scalar(f"flow/{name}", arrays[name][i], s)

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if not self.closed:
            self._w.close()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"TensorBoardWriter({self.logdir!r}, fields={list(self.fields)}, "
                f"histogram_every={self.histogram_every})")


def as_writer(spec, **options) -> TensorBoardWriter:
    """A :class:`TensorBoardWriter` from a folder path, or the writer itself."""
    if isinstance(spec, TensorBoardWriter):
        if options:
            raise ValueError(f"{', '.join(options)}: set them on the TensorBoardWriter itself")
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return TensorBoardWriter(spec, **options)
    raise TypeError(f"tensorboard: expected a log folder (str or os.PathLike) or a "
                    f"vgcore.interop.tensorboard.TensorBoardWriter, got {type(spec).__name__}")


class TensorBoard:
    """A :func:`vgcore.fit` callback writing the run to TensorBoard.

    ``vg.fit(net, X, y, callbacks=[vg.TensorBoard("runs/exp1")])``.  Steps are the
    optimiser's (``optimizer.step_count - 1``, as the recorder of ``vg.fit`` numbers them), so
    a resumed run continues its curves.

    Parameters
    ----------
    logdir : str, os.PathLike or TensorBoardWriter
        A folder (a writer is opened at the start of training and closed at its end) or an
        open writer (left open).
    every : int >= 1
        Write the step's loss and gradient flow every ``every`` steps (default 10); the
        network must measure (``net.measure``, the default).
    histogram_every : int >= 0
        Weight-gradient histograms at most once per this many steps (default 100; 0: none).
    fields : "all" or sequence of str
        The per-layer fields (default :data:`DEFAULT_FIELDS`).

    At the end of every epoch the logged values (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``) are written as ``epoch/<name>``; at the start, the network and
    optimiser as text (``run/network``, ``run/optimizer``).
    """

    def __init__(self, logdir, *, every=10, histogram_every=100, fields=DEFAULT_FIELDS):
        if not isinstance(logdir, (str, os.PathLike, TensorBoardWriter)):
            raise TypeError(f"logdir: expected a folder path or a TensorBoardWriter, got "
                            f"{type(logdir).__name__}")
        self.logdir = logdir
        self.every = _check_interval(every, "every", 1)
        self._options = {"histogram_every": _check_interval(histogram_every,
                                                            "histogram_every", 0),
                         "fields": _check_fields(fields)}
        self.writer = logdir if isinstance(logdir, TensorBoardWriter) else None
        self._owned = False
        self._last = None

    def on_train_begin(self, trainer):
        net = trainer.net
        if not net.measure:
            raise ValueError("callbacks: vg.TensorBoard writes the gradient flow, which needs "
                             "net.measure = True (the default)")
        if self.writer is None or (self._owned and self.writer.closed):
            self.writer = TensorBoardWriter(self.logdir, **self._options)
            self._owned = True
        self._last = None
        self.writer.add_text("run/network", repr(net), self._step(trainer))
        self.writer.add_text("run/optimizer", repr(trainer.optimizer), self._step(trainer))

    @staticmethod
    def _step(trainer):
        return max(trainer.optimizer.step_count - 1, 0)

    def on_batch_end(self, step, loss, trainer):
        s = trainer.optimizer.step_count - 1
        if self._last is not None and s - self._last < self.every:
            return None
        self._last = s
        w = self.writer
        w.add_scalar("loss/train", loss, s)
        w.add_flow(trainer.net.gradient_flow(), s, trainer.net)
        return None

    def on_epoch_end(self, epoch, logs, trainer):
        s = self._step(trainer)
        self.writer.add_scalars({k: v for k, v in logs.items() if k != "time"}, s,
                                prefix="epoch/")
        self.writer.flush()
        return None

    def on_train_end(self, trainer):
        if self._owned:
            self.writer.close()
        else:
            self.writer.flush()

    def __repr__(self):
        return f"TensorBoard({self.logdir!r}, every={self.every})"


def write_run(logdir, recorder, *, losses=None, held_out=None, config=None,
              fields=DEFAULT_FIELDS) -> str:
    """Write one finished run to a TensorBoard folder (what ``vgcore compare --tensorboard
    DIR`` will call once per configuration and seed, with ``logdir`` = ``DIR/<configuration
    name>/seed<k>``).

    Parameters
    ----------
    logdir : str or os.PathLike
        The run's folder.
    recorder : vgcore.Recorder
        Its every history row is written (the per-layer fields and the flow scalars).
    losses : 1-D array, optional
        The training loss of every step (index = step); NaN entries (after a divergence) are
        skipped.
    held_out : dict, optional
        ``{"loss": ..., "accuracy": ...}`` on held-out data, written at the last step.
    config : dict or str, optional
        The configuration, written as text (``run/config``; a dict as ``key: value`` lines).
    fields : "all" or sequence of str
        The per-layer fields (default :data:`DEFAULT_FIELDS`).

    Returns
    -------
    str
        The folder written.
    """
    from vgcore.measure.recorder import Recorder
    if not isinstance(recorder, Recorder):
        raise TypeError(f"recorder: expected a vgcore.Recorder, got {type(recorder).__name__}")
    with TensorBoardWriter(logdir, fields=fields, histogram_every=0) as w:
        if config is not None:
            text = config if isinstance(config, str) else "\n\n".join(
                f"**{k}**: {v}" for k, v in dict(config).items())
            w.add_text("run/config", text, 0)
        w.add_recorder(recorder)
        last = int(recorder.steps[-1]) if len(recorder) else 0
        if losses is not None:
            losses = np.asarray(losses, np.float64).reshape(-1)
            for s, v in enumerate(losses):
                w.add_scalar("loss/train", v, s)
            last = max(last, len(losses) - 1)
        if held_out:
            for k in ("loss", "accuracy"):
                if held_out.get(k) is not None:
                    w.add_scalar(f"{k}/held_out", held_out[k], last)
        return w.logdir

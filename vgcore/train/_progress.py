"""The trainer's progress display: a bar per epoch on a terminal (tqdm when installed, else a
built-in line), one summary line per epoch, or nothing.  Terminal detection and the line
drawing are :mod:`vgcore.core._ui`'s."""
from __future__ import annotations

import sys

from vgcore.core import _ui

KEY_ORDER = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")


def format_logs(logs) -> str:
    """``loss 0.5  accuracy 0.9  ...  1.23s``: an epoch's logged values in a stable order."""
    parts = []
    for k in KEY_ORDER:
        if k in logs and k != "time":
            parts.append(f"{k} {logs[k]:.4g}")
    if "time" in logs:
        parts.append(f"{logs['time']:.2f}s")
    return "  ".join(parts)


class NoProgress:
    """Shows nothing."""

    def epoch_begin(self, epoch, n_batches):
        pass

    def update(self, done, loss):
        pass

    def epoch_end(self, epoch, logs):
        pass

    def close(self):
        pass


class LineProgress(NoProgress):
    """A text bar redrawn in place (at most 10 times a second) when ``live`` (a terminal), and
    one summary line per epoch."""

    def __init__(self, epochs, live):
        self.epochs = epochs
        self.status = _ui.StatusLine(live=live)
        self._n = 1
        self._epoch = 0

    def epoch_begin(self, epoch, n_batches):
        self._n = max(n_batches, 1)
        self._epoch = epoch

    def update(self, done, loss):
        if not self.status.live:
            return
        filled = int(20 * done / self._n)
        self.status.update(f"epoch {self._epoch + 1}/{self.epochs} "
                           f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{self._n}  "
                           f"loss {loss:.4g}", force=done in (1, self._n))

    def epoch_end(self, epoch, logs):
        self.status.line(f"epoch {epoch + 1}/{self.epochs}  {format_logs(logs)}")


class TqdmProgress(NoProgress):
    """One tqdm bar per epoch, on stderr."""

    def __init__(self, tqdm_cls, epochs):
        self.tqdm, self.epochs = tqdm_cls, epochs
        self.bar = None
        self._done = 0

    def epoch_begin(self, epoch, n_batches):
        self.bar = self.tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{self.epochs}",
                             file=sys.stderr, leave=True, unit="batch")
        self._done = 0

    def update(self, done, loss):
        self.bar.update(done - self._done)
        self._done = done
        self.bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)

    def epoch_end(self, epoch, logs):
        self.bar.set_postfix_str(format_logs(logs), refresh=True)
        self.bar.close()
        self.bar = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_progress(verbose, epochs):
    """The display for ``fit(verbose=...)``: None shows a bar only on a terminal; 0 nothing;
    1 a bar (tqdm when installed; one line per epoch off a terminal); 2 a line per epoch."""
    terminal = _ui.is_terminal()
    if verbose is None:
        verbose = 1 if terminal else 0
    if verbose == 0:
        return NoProgress()
    if verbose == 1 and terminal:
        tqdm = _ui.import_tqdm()
        if tqdm is not None:
            return TqdmProgress(tqdm, epochs)
        return LineProgress(epochs, live=True)
    return LineProgress(epochs, live=False)     # verbose=2, or not a terminal

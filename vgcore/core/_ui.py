"""What the trainer, the experiments and the commands share to talk to the user: terminal
detection, a status line rewritten in place, plain-JSON conversion, short numbers in text, the
thread-limit context manager and the one matplotlib loader.

Nothing here draws a network or computes a number; every module that shows progress, writes
JSON or plots goes through these, so a terminal is detected one way, NaN becomes ``null`` one
way, and no vgcore code ever switches matplotlib's global backend.
"""
from __future__ import annotations

import math
import numbers
import sys
import time

import numpy as np

from vgcore.core._threads import limited_threads

__all__ = ["is_terminal", "StatusLine", "import_tqdm", "plain_json", "short_number",
           "limited_threads", "load_matplotlib", "new_figure", "save_png", "MATPLOTLIB_MISSING"]

MATPLOTLIB_MISSING = "matplotlib is not installed (pip install matplotlib)"


# ------------------------------------------------------------------------------ terminals
def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: the current ``sys.stderr``) is an interactive terminal.
    A missing, closed or exotic stream is not one."""
    if stream is None:
        stream = sys.stderr
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class StatusLine:
    """One line of status on a stream (default: ``sys.stderr``, looked up at each write).

    On a terminal (``live``) :meth:`update` redraws the line in place with ``\\r``, at most
    every ``interval`` seconds unless forced, padding over what the previous text left;
    elsewhere it writes nothing.  :meth:`line` writes a permanent line in both cases (on a
    terminal, over the status line).  ``max_width`` cuts long status texts (not permanent
    lines).

    Parameters
    ----------
    live : bool, optional
        Redraw in place; default: whether the stream is a terminal.
    stream : file-like, optional
    interval : float
        Seconds between two redraws (default 0.1).
    max_width : int, optional
    """

    def __init__(self, live=None, stream=None, interval=0.1, max_width=None):
        self._stream = stream
        self.live = is_terminal(self.stream) if live is None else bool(live)
        self.interval = float(interval)
        self.max_width = max_width
        self._width = 0
        self._last = -math.inf

    @property
    def stream(self):
        return sys.stderr if self._stream is None else self._stream

    def _write(self, text):
        s = self.stream
        if s is not None:
            s.write(text)
            s.flush()

    def update(self, text, force=False) -> None:
        """Redraw the status line (live only; rate-limited unless ``force``)."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.max_width is not None:
            text = text[:self.max_width]
        self._write("\r" + text + " " * max(0, self._width - len(text)))
        self._width = len(text)

    def line(self, text) -> None:
        """A permanent line (over the status line on a terminal)."""
        if self.live:
            self._write("\r" + text + " " * max(0, self._width - len(text)) + "\n")
            self._width = 0
        else:
            self._write(text + "\n")

    def clear(self) -> None:
        """Erase the status line (live only)."""
        if self.live and self._width:
            self._write("\r" + " " * self._width + "\r")
            self._width = 0

    def close(self, keep=False) -> None:
        """Finish: erase the status line, or with ``keep`` leave it and end it with a newline."""
        if self.live and self._width:
            if keep:
                self._write("\n")
                self._width = 0
            else:
                self.clear()


def import_tqdm():
    """``tqdm.tqdm``, or None when tqdm is not installed (or fails to import)."""
    try:
        from tqdm import tqdm
    except Exception:       # noqa: BLE001 -- not installed, or broken: callers fall back
        return None
    return tqdm


# ------------------------------------------------------------------------------ numbers
def short_number(x) -> str:
    """A short number, as findings and summaries write it: 0.74, 12.6, 3.5e-17, 5e5."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


# ------------------------------------------------------------------------------ JSON
_NONFINITE = ("null", "keep", "raise")


def plain_json(x, *, nonfinite="null", where="value", str_keys=False):
    """``x`` as plain JSON types: dicts, lists, str, int, float, bool and None.

    NumPy scalars and arrays become Python numbers and (nested) lists, tuples become lists.

    Parameters
    ----------
    nonfinite : {"null", "keep", "raise"}
        What NaN and +-Inf become: ``None`` (strict JSON, the default), the float itself (for
        ``json.dumps(allow_nan=True)``), or a ValueError naming ``where``.
    where : str
        The name of ``x`` in error messages (``where[key][3]`` for a nested value).
    str_keys : bool
        Require string keys (TypeError otherwise); by default other keys are turned into
        strings, as ``json.dumps`` does.

    Raises
    ------
    TypeError
        A value that has no JSON form (naming where it sits).
    ValueError
        A non-finite number with ``nonfinite="raise"``.
    """
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite: expected one of {', '.join(_NONFINITE)}, got "
                         f"{nonfinite!r}")
    return _plain(x, nonfinite, where, str_keys)


def _plain(x, nonfinite, where, str_keys):
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        v = float(x)
        if math.isfinite(v) or nonfinite == "keep":
            return v
        if nonfinite == "null":
            return None
        raise ValueError(f"{where}: expected finite numbers (strict JSON), got {v}")
    if isinstance(x, np.ndarray):
        return _plain(x.tolist(), nonfinite, where, str_keys)
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                if str_keys:
                    raise TypeError(f"{where}: expected string keys (JSON), got key {k!r} of "
                                    f"type {type(k).__name__}")
                k = str(k)
            out[k] = _plain(v, nonfinite, f"{where}[{k!r}]", str_keys)
        return out
    if isinstance(x, (list, tuple)):
        return [_plain(v, nonfinite, f"{where}[{i}]", str_keys) for i, v in enumerate(x)]
    raise TypeError(f"{where}: expected JSON-able values (numbers, strings, bools, None, lists, "
                    f"dicts, numpy arrays), got {type(x).__name__}")


# ------------------------------------------------------------------------------ matplotlib
def load_matplotlib():
    """``(Figure, FigureCanvasAgg)`` from matplotlib, or None when it cannot be imported.

    Figures are drawn on the Agg canvas directly: no ``pyplot``, no GUI, and the process's
    backend (which the user may have chosen) is never changed."""
    try:
        import matplotlib       # first: a blocked or broken matplotlib fails here, not later
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    del matplotlib
    return Figure, FigureCanvasAgg


def new_figure(mpl, width, height, layout="constrained"):
    """A new figure of ``width`` x ``height`` inches from :func:`load_matplotlib`'s pair."""
    figure, _ = mpl
    return figure(figsize=(width, height), layout=layout)


def save_png(mpl, fig, path, dpi=100) -> None:
    """Write ``fig`` as a PNG (no timestamp or software tag: the same figure gives the same
    bytes)."""
    _, canvas = mpl
    canvas(fig)
    fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})

"""Shared pieces of the ``vgcore`` commands: argument types that explain what they expected,
the JSON output, notes on stderr, the plot folder and the BLAS line."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from vgcore.core._threads import BLAS_PACKAGES
from vgcore.core._ui import plain_json


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


class CommandError(Exception):
    """A problem with the user's request, reported as one line and exit code 2."""


def label_arg(text):
    """``--label``: a column name, or a 0-based index (negative from the end)."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("expected a column name or a 0-based index, got ''")
    try:
        return int(text)
    except ValueError:
        return text


def read_data_file(path, label, option="--data", **kw):
    """``vgcore.interop.files.experiment_data`` of a file named on the command line; any
    problem with it becomes a one-line CommandError that names the file (and the row and
    column)."""
    from vgcore.interop import files
    try:
        return files.experiment_data(path, label, **kw)
    except FileNotFoundError:
        raise CommandError(f"{option}: no such file: {path}") from None
    except (ValueError, TypeError, ImportError) as e:
        msg = " ".join(str(e).split())
        if msg.startswith("label: "):           # the loader's argument is --label here
            raise CommandError(f"--label: {msg[7:]}") from None
        raise CommandError(f"{option}: {msg}") from None
    except OSError as e:
        raise CommandError(f"{option}: cannot read {path}: {e.strerror or e}") from None


def print_json(obj) -> None:
    """``obj`` as indented strict JSON on stdout (NaN and Inf as null)."""
    print(json.dumps(plain_json(obj), indent=2, allow_nan=False))


def note(args, text: str) -> None:
    """A remark on stderr (not with --quiet)."""
    if not args.quiet:
        print(text, file=sys.stderr)


def plot_dir(path: str) -> str:
    """The folder of ``--plot-dir``, created if needed; a CommandError when it cannot be."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--plot-dir: cannot create {path!r}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"--plot-dir: {path!r} is not writable")
    return path


def shown_rows(n: int, max_rows: int) -> list:
    """At most ``max_rows`` evenly spaced indices of ``range(n)`` (all when ``max_rows`` <= 0),
    the first and the last included."""
    if max_rows <= 0 or n <= max_rows:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_rows).round().astype(int).tolist()))


def gap_line(prev: int, i: int) -> str:
    """The row that marks the layers left out of a table between the shown rows ``prev`` and
    ``i`` (0-based indices; shown 1-based)."""
    lo, hi = prev + 2, i
    return f"{'...':>5s} (layer{'s' if hi > lo else ''} {lo}{'-' + str(hi) if hi > lo else ''} " \
           f"not shown)"


def blas_line(vg) -> str:
    """One line: the BLAS libraries loaded (which is vgcore's), their kernels and threads."""
    parts = []
    for info in vg.blas_info():
        lib = os.path.basename(info.get("filepath", "")) or info.get("prefix", "?")
        pkg = BLAS_PACKAGES.get(info.get("package"), "")
        mine = ": vgcore's GEMMs" if info.get("vgcore") else ""
        who = f" ({pkg}{mine})" if pkg else f" ({mine[2:]})" if mine else ""
        parts.append(f"{info.get('internal_api')} {info.get('version')} "
                     f"[{info.get('architecture')}, {info.get('num_threads')} threads] "
                     f"{lib}{who}")
    return (f"BLAS: {'; '.join(parts) or 'none found'}; vgcore threads "
            f"{vg.get_num_threads()} (OpenMP {'on' if vg.openmp_enabled() else 'off'})")

"""The run record: what produced a report, so that anyone can reproduce it from the page.

:func:`run_record` gathers it as a plain dict (written into the JSON files beside a report),
:func:`record_html` and :func:`record_lines` render it.  Every report page of vgcore shows one.

======================  ========================================================================
key                     what
======================  ========================================================================
``vgcore``              the vgcore version
``date``                when the run finished, ISO 8601 with the UTC offset
``command``             the command line that reproduces the run (``vgcore compare --steps 300``)
``config``              the config file it read: ``{"path", "sha256", "text"}``, or None
``data``                the data file it trained on: ``{"path", "sha256", "samples",
                        "features", "label", ...}`` (:func:`vgcore.interop.files.
                        experiment_data`'s record), or None (the generated data sets need none:
                        the command names them and their seed)
``theory``              lines on the theory the report draws (which predictions, from what), or
                        an empty list
``cpu``                 the processor's model name and its logical cores
``platform``            operating system, Python, NumPy, SciPy and matplotlib versions
``blas``                one entry per BLAS library loaded: library, version, kernel, threads,
                        and which package's it is (the one marked computes vgcore's matrix
                        products: NumPy's or SciPy's, see ``vgcore.use_blas``)
``threads``             vgcore's compute threads, and whether its build has OpenMP
======================  ========================================================================
"""
from __future__ import annotations

import datetime
import hashlib
import html
import os
import platform
import shlex
import sys

from vgcore.core._threads import BLAS_PACKAGES

__all__ = ["run_record", "record_html", "record_lines", "file_entry", "command_line",
           "cpu_model"]


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` or the
    machine type elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return " ".join(name.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def command_line(argv, program="vgcore") -> str:
    """``argv`` (the arguments after the program name) as one shell-quoted command line."""
    return " ".join([program] + [shlex.quote(str(a)) for a in argv])


def file_entry(path, *, text=True, **extra) -> dict:
    """``{"path", "sha256", "bytes"}`` of a file (plus ``"text"``, its content, when ``text``
    and it is UTF-8 under 64 KiB), and any ``extra`` keys; the path is absolute."""
    path = os.path.abspath(os.fspath(path))
    with open(path, "rb") as f:
        raw = f.read()
    entry = {"path": path, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    if text and len(raw) <= 65536:
        try:
            entry["text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    entry.update(extra)
    return entry


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "matplotlib"):
        mod = sys.modules.get(name)
        if mod is None and name != "matplotlib":
            try:
                mod = __import__(name)
            except ImportError:
                mod = None
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def _blas(vg) -> list:
    out: list = []
    try:
        infos = vg.blas_info()
    except Exception:            # noqa: BLE001 -- threadpoolctl missing or confused: say so
        return out
    for info in infos:
        path = info.get("filepath") or ""
        pkg = BLAS_PACKAGES.get(info.get("package"), "")
        owner = f"{pkg}{': ' if pkg else ''}vgcore's matrix products" if info.get("vgcore") \
            else pkg
        out.append({"library": info.get("internal_api") or info.get("prefix") or "?",
                    "version": info.get("version"), "kernel": info.get("architecture"),
                    "threads": info.get("num_threads"), "file": os.path.basename(path),
                    "owner": owner})
    return out


def run_record(*, command=None, config=None, data=None, theory=None, threads=None,
               extra=None) -> dict:
    """The record of a run finishing now (see the module docstring for the keys).

    Parameters
    ----------
    command : str, optional
        The command line that reproduces the run (:func:`command_line`).
    config : str or os.PathLike or dict, optional
        The config file the run read (its path: hashed and, when small, copied in), or an
        entry already made with :func:`file_entry`.
    data : dict, optional
        The data file the run trained on: at least ``path`` and ``sha256`` (as
        :func:`file_entry` or :func:`vgcore.interop.files.experiment_data` make it).
    theory : list of str, optional
        Lines on the theory the report draws.
    threads : int, optional
        The compute threads of the run (default: vgcore's current count).
    extra : dict, optional
        More keys, shown after the others.
    """
    import vgcore as vg
    if config is not None and not isinstance(config, dict):
        config = file_entry(config)
    now = datetime.datetime.now().astimezone()
    return {
        "vgcore": getattr(vg, "__version__", "?"),
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "config": config,
        "data": data,
        "theory": list(theory or []),
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count()},
        "platform": {"system": platform.platform(terse=True), **_versions()},
        "blas": _blas(vg),
        "threads": {"vgcore": vg.get_num_threads() if threads is None else int(threads),
                    "openmp": bool(vg.openmp_enabled())},
        **(extra or {}),
    }


def _blas_text(b) -> str:
    parts = [f"{b['library']} {b['version'] or ''}".strip()]
    if b.get("kernel"):
        parts.append(f"{b['kernel']} kernel")
    if b.get("threads") is not None:
        parts.append(f"{b['threads']} thread{'s' if b['threads'] != 1 else ''}")
    text = ", ".join(parts)
    if b.get("owner"):
        text += f" ({b['owner']})"
    return text


def _file_text(entry) -> str:
    return f"{entry['path']} (SHA-256 {entry['sha256']})"


def data_text(entry) -> str:
    """A data file's record in one line: the file and its SHA-256, its rows and columns, the
    label column and the split (what :func:`vgcore.interop.files.experiment_data` records;
    any of them may be missing)."""
    parts = [_file_text(entry)]
    if entry.get("samples") is not None and entry.get("features") is not None:
        parts.append(f"{entry['samples']} rows x {entry['features']} feature columns")
    if entry.get("label"):
        what = (f"{entry['classes']} classes" if entry.get("classes") is not None else
                f"{entry['targets']} targets" if entry.get("targets") is not None else "")
        parts.append(f"labels: {entry['label']}" + (f" ({what})" if what else ""))
    if entry.get("label_file"):
        parts.append(f"label file {_file_text(entry['label_file'])}")
    if entry.get("training_samples") is not None:
        parts.append(f"{entry['training_samples']} training and "
                     f"{entry['held_out_samples']} held-out rows (seed {entry.get('seed')})")
    if entry.get("standardized"):
        parts.append(f"standardised {entry['standardized']}"
                     if isinstance(entry["standardized"], str) else "standardised")
    return "; ".join(parts)


def record_lines(record) -> list:
    """The record as ``(label, text)`` pairs, in reading order (what :func:`record_html`
    shows, without the config file's content)."""
    r = record
    lines = [("vgcore", r["vgcore"]), ("date", r["date"])]
    if r.get("command"):
        lines.append(("command", r["command"]))
    if r.get("config"):
        lines.append(("config file", _file_text(r["config"])))
    if r.get("data"):
        lines.append(("data file", data_text(r["data"])))
    for t in r.get("theory") or []:
        lines.append(("theory", t))
    cpu = r["cpu"]
    lines.append(("CPU", f"{cpu['model']}, {cpu['logical_cores']} logical cores"))
    p = r["platform"]
    lines.append(("platform", ", ".join([p["system"]] + [f"{k} {v}" for k, v in p.items()
                                                        if k != "system"])))
    for b in r["blas"] or [{"library": "none found", "version": None}]:
        lines.append(("BLAS", _blas_text(b)))
    t = r["threads"]
    lines.append(("threads", f"{t['vgcore']} (OpenMP {'on' if t['openmp'] else 'off'})"))
    known = {"vgcore", "date", "command", "config", "data", "theory", "cpu", "platform",
             "blas", "threads"}
    for k, v in r.items():
        if k not in known and v is not None:
            lines.append((k.replace("_", " "), str(v)))
    return lines


def record_html(record) -> str:
    """The record as an HTML definition list (``<dl class="record">``), the config file's
    content in a collapsed block below it."""
    rows = []
    for label, text in record_lines(record):
        value = html.escape(str(text))
        if label == "command":
            value = f"<code>{value}</code>"
        rows.append(f"<dt>{html.escape(label)}</dt><dd>{value}</dd>")
    out = ['<dl class="record">' + "".join(rows) + "</dl>"]
    cfg = record.get("config")
    if cfg and cfg.get("text") is not None:
        out.append(f"<details><summary>{html.escape(os.path.basename(cfg['path']))}, as "
                   f"read</summary><pre>{html.escape(cfg['text'])}</pre></details>")
    return "\n".join(out)

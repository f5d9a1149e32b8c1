"""The shared user-interface pieces (vgcore.core._ui): the status line, plain JSON, the
thread-limit context manager and the matplotlib loader."""
from __future__ import annotations

import io
import json
import math
import re
import sys

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import _ui


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Broken:
    def isatty(self):
        raise ValueError("I/O operation on closed file")


def test_terminal_detection_is_false_for_files_missing_and_broken_streams(monkeypatch):
    assert _ui.is_terminal(_Terminal()) is True
    assert _ui.is_terminal(io.StringIO()) is False
    assert _ui.is_terminal(_Broken()) is False
    monkeypatch.setattr(sys, "stderr", None)
    assert _ui.is_terminal() is False


def test_status_line_redraws_in_place_and_pads_over_longer_text():
    out = _Terminal()
    s = _ui.StatusLine(stream=out, interval=0.0)
    assert s.live
    s.update("a long status")
    s.update("short")
    s.line("done")
    s.update("next")
    s.close()
    assert out.getvalue() == ("\ra long status" + "\rshort" + " " * 8 + "\rdone" + " " + "\n"
                              + "\rnext" + "\r    \r")


def test_status_line_off_a_terminal_writes_only_permanent_lines():
    out = io.StringIO()
    s = _ui.StatusLine(stream=out)
    assert not s.live
    s.update("hidden", force=True)
    s.line("line 1")
    s.close(keep=True)
    assert out.getvalue() == "line 1\n"


def test_status_line_is_rate_limited_unless_forced_and_cut_to_max_width():
    out = _Terminal()
    s = _ui.StatusLine(stream=out, interval=3600.0, max_width=4)
    s.update("first")
    s.update("second")                  # within the interval: dropped
    s.update("third", force=True)
    s.close(keep=True)
    assert out.getvalue() == "\rfirs\rthir\n"


def test_plain_json_converts_numpy_and_applies_the_nonfinite_policy():
    value = {"a": np.float32(1.5), "b": np.arange(3), "c": (np.int64(2), np.bool_(True)),
             "d": [math.nan, np.inf], 3: None}
    out = _ui.plain_json(value)
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": [2, True], "d": [None, None], "3": None}
    assert type(out["a"]) is float and type(out["b"][0]) is int and type(out["c"][1]) is bool
    json.dumps(out, allow_nan=False)
    kept = _ui.plain_json(value, nonfinite="keep")
    assert math.isnan(kept["d"][0]) and kept["d"][1] == math.inf
    with pytest.raises(ValueError, match=r"extra\['d'\]\[0\]: expected finite numbers"):
        _ui.plain_json(value, nonfinite="raise", where="extra")
    with pytest.raises(TypeError, match="expected string keys"):
        _ui.plain_json({1: 2}, str_keys=True)
    with pytest.raises(TypeError, match=r"x\['k'\]: expected JSON-able values .* got object"):
        _ui.plain_json({"k": object()}, where="x")
    with pytest.raises(ValueError, match="nonfinite"):
        _ui.plain_json(1.0, nonfinite="drop")


def test_limited_threads_sets_and_restores_vgcore_and_blas_threads():
    before = vg.get_num_threads()
    blas_before = [i["num_threads"] for i in vg.blas_info()]
    with _ui.limited_threads(1):
        assert vg.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in vg.blas_info())
        with _ui.limited_threads(None):              # None changes nothing
            assert vg.get_num_threads() == 1
    assert vg.get_num_threads() == before
    assert [i["num_threads"] for i in vg.blas_info()] == blas_before
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        _ui.limited_threads(0)


def test_limited_threads_restores_after_an_exception():
    before = vg.get_num_threads()
    with pytest.raises(KeyError):
        with _ui.limited_threads(1):
            raise KeyError("boom")
    assert vg.get_num_threads() == before


def test_matplotlib_loader_draws_without_changing_the_global_backend(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    before = matplotlib.get_backend()
    mpl = _ui.load_matplotlib()
    fig = _ui.new_figure(mpl, 2, 2)
    fig.subplots().plot([0, 1], [1, 0])
    _ui.save_png(mpl, fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == before


def test_no_vgcore_module_imports_pyplot_or_switches_the_backend():
    """Every plot goes through _ui.load_matplotlib (the Agg canvas): a library must not
    change the backend a user's session chose."""
    import pathlib
    root = pathlib.Path(vg.__file__).parent
    pattern = re.compile(r"^\s*(import matplotlib\.pyplot|from matplotlib import pyplot|"
                         r"from matplotlib\.pyplot import|.*matplotlib\.use\()", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []


def test_short_number_writes_what_findings_and_compare_summaries_show():
    from vgcore.core._ui import short_number
    assert [short_number(x) for x in (0.7412, 12.61, 3.5e-17, 5e5, 0.0, -2.25e-4, 9999.0)] == \
        ["0.741", "12.6", "3.5e-17", "5e5", "0", "-2.2e-4", "1e+04"]
    assert short_number(float("nan")) == "nan" and short_number(float("-inf")) == "-inf"

"""The commands that produce README's speed figures run end to end (tiny settings, smoke mode
too): report.py's table, markdown and JSON, paired.py's paired samples, and
contention.py, whose neighbour process must be
gone afterwards, also when the measurement is interrupted."""
import json
import os

import pytest

import _bench_common as bc
import contention
import paired
import report


def test_report_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    threads = bc.vg.get_num_threads()
    # one thread: on a loaded machine a 2-thread PyTorch step can take a second
    assert report.main(["--threads", "1", "--configs", "deep-narrow", "--rounds", "1",
                        "--sample-ms", "1",
                        "--lead-in-ms", "0", "--park-ms", "0", "--warmup", "0", "--markdown",
                        "--quiet",
                        "--json", str(out)]) == 0
    assert bc.vg.get_num_threads() == threads          # restored
    text = capsys.readouterr().out
    assert "| deep-narrow | 50x64 | 64 | tanh |" in text
    assert "CPU: " in text and "BLAS: " in text and "Command: `python benchmarks/report.py" in text
    data = json.loads(out.read_text())
    row = data["results"][0]
    assert row["config"] == "deep-narrow"
    assert row["numpy_ms"] > 0 and row["vgcore_ms"] > 0 and row["reference_ms"] > 0
    assert row["numpy_over_vgcore"] == pytest.approx(row["numpy_ms"] / row["vgcore_ms"])
    assert row["target_numpy_over_vgcore"] == bc.target("deep-narrow", row["threads"], "numpy")
    assert data["meta"]["cpu"] and data["meta"]["blas"]
    if bc.get_torch()[0] is not None:
        assert row["torch_ms"] > 0
        assert any(b["used_by"] == "PyTorch" for b in data["meta"]["blas"])


def test_report_pools_the_vanishing_twins():
    assert report.pools(["deep-narrow", "vanishing", "medium", "vanishing-relu"]) == \
        [["deep-narrow"], ["vanishing", "vanishing-relu"], ["medium"]]


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"     # a zombie is gone too
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_contention_runs_and_stops_its_neighbour(capsys, monkeypatch):
    pids = []
    start = contention.Neighbour.start

    def spy(self):
        r = start(self)
        pids.append(self.proc.pid)
        return r
    monkeypatch.setattr(contention.Neighbour, "start", spy)
    assert contention.main(["--threads", "1", "--configs", "deep-narrow",
                            "--systems", "vgcore", "numpy",
                            "--blocks", "1", "--steps", "3", "--lead-in-ms", "0",
                            "--settle", "0.05", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "deep-narrow" in text and "tuned NumPy" in text and "CPU: " in text
    assert pids and _gone(pids[0])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_contention_stops_its_neighbour_when_interrupted(monkeypatch):
    seen = {}

    def interrupted(args, neighbour):
        seen["pid"] = neighbour.proc.pid
        neighbour.pause()                         # stopped processes must be cleaned up too
        raise KeyboardInterrupt
    monkeypatch.setattr(contention, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        contention.main(["--configs", "deep-narrow", "--systems", "vgcore", "--quiet"])
    assert _gone(seen["pid"])


def test_paired_runs_both_settings_and_restores_them(capsys):
    before = bc.vg.kernel_info()
    if before["activations"]["best"] != "fma":
        with pytest.raises(SystemExit, match="no fused multiply-add"):
            paired.main(["--configs", "deep-narrow-2", "--threads", "1"])
    else:
        paired.main(["--configs", "deep-narrow-2", "--threads", "1", "--pairs", "3",
                     "--calls", "1"])
        out = capsys.readouterr().out
        assert "CPU: " in out and "activations: plain / fma" in out
        assert len([ln for ln in out.splitlines() if "deep-narrow-2" in ln]) == 2
    paired.main(["--setting", "batch_chunks", "--configs", "deep-narrow", "--threads", "1",
                 "--pairs", "2", "--calls", "1", "--lead-in-ms", "1"])
    out = capsys.readouterr().out
    assert "batch_chunks: on / off" in out
    assert len([ln for ln in out.splitlines() if "deep-narrow " in ln]) == 2  # step, forward
    assert bc.vg.kernel_info() == before                                       # restored

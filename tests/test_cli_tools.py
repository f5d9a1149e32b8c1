"""The ``vgcore profile``, ``vgcore theory`` and ``vgcore bench`` commands, run in-process
through ``vgcore.__main__.main`` on tiny settings (plus one real subprocess)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure import theory as T
from vgcore.__main__ import main


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_json(capsys, *argv):
    rc, out, err = run_cli(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out), err


def no_matplotlib(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError


PROFILE = ("profile", "--depth", 6, "--width", 128, "--batch", 64, "--steps", 8, "--warmup", 1,
           "--quiet")


# ------------------------------------------------------------------ profile

@pytest.fixture(scope="module")
def profile_json():
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main([str(a) for a in PROFILE] + ["--json"])
    assert rc == 0
    return json.loads(buf.getvalue())


def test_profile_json_keys(profile_json):
    r = profile_json
    for key in ("config", "threads", "blas", "steps_ms", "measurement_cost_ms",
                "measurement_cost_ratio", "timer_cost_ms", "phases", "layers", "layer_sum_ms",
                "layer_sum_over_passes", "total_gflops", "gemm_only_gflops", "flops",
                "memory_bytes", "loss_first", "loss_last", "gradient_flow", "notes"):
        assert key in r, key
    for kind in ("measured", "unmeasured", "profiled"):
        assert set(r["steps_ms"][kind]) == {"forward", "loss", "backward", "optimizer", "total"}
        assert r["steps_ms"][kind]["total"] > 0
    assert [p["phase"] for p in r["phases"]] == [
        "forward_gemm", "forward_elementwise", "backward_elementwise", "backward_gemm", "loss",
        "optimizer", "other"]
    gemm = {p["phase"]: p for p in r["phases"]}
    for ph in ("forward_gemm", "backward_gemm"):
        assert gemm[ph]["gflops"] > 0 and gemm[ph]["gemm_only_gflops"] > 0
        assert gemm[ph]["pct_of_gemm_rate"] > 0
    assert r["total_gflops"] > 0
    assert math.isclose(r["measurement_cost_ms"], r["steps_ms"]["measured"]["total"]
                        - r["steps_ms"]["unmeasured"]["total"], rel_tol=1e-9, abs_tol=1e-12)
    # flops: 2*B*fin*fout forward, twice that backward, less the first layer's input gradient
    sizes = r["config"]["sizes"]
    assert sizes == [128] * 7 + [10]
    mk = [2 * 64 * sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1)]
    assert r["flops"] == 3 * sum(mk) - mk[0]


def test_profile_layer_times_positive_and_add_up(profile_json):
    r = profile_json
    layers = r["layers"]
    assert [x["layer"] for x in layers] == list(range(1, 8))
    for x in layers:
        for ph in ("forward_gemm", "forward_elementwise", "backward_elementwise",
                   "backward_gemm"):
            assert x[f"{ph}_ms"] > 0, (x["layer"], ph)
        assert math.isclose(x["total_ms"], sum(x[f"{ph}_ms"] for ph in (
            "forward_gemm", "forward_elementwise", "backward_elementwise", "backward_gemm")))
    # the compiled per-layer times account for (nearly) all of the forward + backward calls
    assert 0.6 < r["layer_sum_over_passes"] <= 1.05
    prof = r["steps_ms"]["profiled"]
    assert r["layer_sum_ms"] < prof["forward"] + prof["backward"] + 0.05 * prof["total"]
    assert r["layer_sum_ms"] > 0.5 * prof["total"]
    parts = sum(p["ms"] for p in r["phases"])
    assert parts == pytest.approx(prof["total"], rel=0.02)        # the parts add up


def test_profile_memory_and_flow(profile_json):
    r = profile_json
    net = vg.MLP(r["config"]["sizes"], activation="tanh")
    mem = r["memory_bytes"]
    assert mem["parameters"] == net.params.nbytes == mem["gradients"]
    B, units = 64, sum(r["config"]["sizes"][1:])
    # H, A, D (B x units each), dX (B x n_in) and the loss gradient (B x n_out), float32
    assert mem["workspace"] == 4 * (3 * B * units + B * 128 + B * 10)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    flow = r["gradient_flow"]
    assert len(flow["grad_norm"]) == 7 and all(g > 0 for g in flow["grad_norm"])
    assert flow["layer"] == list(range(1, 8))
    assert flow["grad_ratio"] > 0


def test_profile_table_and_options(capsys):
    rc, out, err = run_cli(capsys, "profile", "--depth", 3, "--width", 16, "--batch", 8,
                           "--steps", 2, "--warmup", 0, "--dtype", "float64", "--norm", "batch",
                           "--activation", "relu", "--init", "he_normal", "--threads", 1)
    assert rc == 0, err
    for text in ("measurement cost", "forward GEMM", "backward elementwise", "per layer",
                 "memory", "gradient flow at the last step", "BLAS:", "first/last"):
        assert text in out, text
    assert "Traceback" not in err


def test_profile_tables_mark_the_layers_they_leave_out(capsys):
    rc, out, err = run_cli(capsys, "profile", "--depth", 8, "--width", 8, "--batch", 4,
                           "--steps", 1, "--warmup", 0, "--rows", 3, "--threads", 1)
    assert rc == 0, err
    # the per-layer timing table and the gradient-flow table: 3 of 9 layers each
    assert out.count("3 of 9 layers shown; --rows 0 shows all") == 2
    assert out.count("(layers 2-4 not shown)") == 2
    rc, out, _ = run_cli(capsys, "profile", "--depth", 8, "--width", 8, "--batch", 4,
                         "--steps", 1, "--warmup", 0, "--rows", 0, "--threads", 1)
    assert "not shown" not in out and "layers shown" not in out


def test_profile_gradient_flow_plot_labels_both_axes(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from vgcore.commands import profile
    figures = []
    save = profile.save_png
    monkeypatch.setattr(profile, "save_png",
                        lambda mpl, fig, path: (figures.append(fig), save(mpl, fig, path)))
    run_json(capsys, "profile", "--depth", 2, "--width", 8, "--batch", 4, "--steps", 2,
             "--warmup", 0, "--quiet", "--plot-dir", tmp_path)
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


def test_profile_float64_json(capsys):
    r, _ = run_json(capsys, "profile", "--depth", 2, "--width", 8, "--batch", 4, "--steps", 2,
                    "--warmup", 0, "--dtype", "float64", "--quiet")
    net = vg.MLP(r["config"]["sizes"], dtype="float64")
    assert r["memory_bytes"]["parameters"] == net.params.nbytes == 8 * net.n_params


# ------------------------------------------------------------------ theory

def test_theory_json_matches_vgcore_theory(capsys):
    r, _ = run_json(capsys, "theory", "--activation", "tanh", "--sigma-b2", 0.05,
                    "--sigma-w2-points", 3, "--sigma-b2-range", 0, 0.2, "--sigma-b2-points", 2,
                    "--depth", 6)
    for key in ("activation", "sigma_b2", "q0", "depth", "critical_sigma_w2", "grid", "table",
                "critical_line", "profiles", "plots", "notes"):
        assert key in r, key
    crit = r["critical_sigma_w2"]
    assert crit == T.critical_sigma_w2("tanh", 0.05)
    assert round(crit, 3) == 1.761
    # default grid: 0.5x .. 1.5x the critical value
    assert r["grid"]["sigma_w2"] == pytest.approx([0.5 * crit, crit, 1.5 * crit])
    for row in r["table"]:
        d = T.depth_scales("tanh", row["sigma_w2"], 0.05)
        assert row["chi_1"] == d.chi_1 and row["q_star"] == d.q_star
        assert row["phase"] == d.phase
        for k in ("xi_c", "xi_grad", "c_star", "chi_c"):
            v = getattr(d, k)
            assert row[k] == (v if math.isfinite(v) else None), k
    assert r["table"][1]["phase"] == "critical" and r["table"][1]["xi_grad"] is None
    for sw, chis in zip(r["grid"]["sigma_w2"], r["grid"]["chi_1"]):
        for sb, chi in zip(r["grid"]["sigma_b2"], chis):
            assert chi == T.chi1("tanh", sw, sb)
    assert [c["sigma_b2"] for c in r["critical_line"]] == [0.0, 0.2]
    for c in r["critical_line"]:
        assert c["sigma_w2"] == T.critical_sigma_w2("tanh", c["sigma_b2"])
    assert [p["sigma_w2"] for p in r["profiles"]] == pytest.approx(
        [0.8 * crit, crit, 1.25 * crit])
    for p in r["profiles"]:
        g = T.predicted_gradient_profile("tanh", depth=6, sigma_w2=p["sigma_w2"],
                                         sigma_b2=0.05)
        np.testing.assert_array_equal(p["delta_sq"], g.delta_sq)
        np.testing.assert_array_equal(p["chi"], g.chi)
        assert len(p["q"]) == 6


def test_theory_relu_explicit_grid_and_table(capsys):
    r, _ = run_json(capsys, "theory", "--activation", "relu", "--sigma-b2", 0,
                    "--sigma-w2-range", 1, 3, "--sigma-w2-points", 3, "--sigma-b2-points", 2,
                    "--depth", 4, "--profile-sigma-w2", 2)
    assert r["critical_sigma_w2"] == 2.0
    assert [t["chi_1"] for t in r["table"]] == pytest.approx([0.5, 1.0, 1.5])
    assert [t["phase"] for t in r["table"]] == ["ordered", "critical", "chaotic"]
    assert r["profiles"][0]["delta_sq"] == pytest.approx([1.0] * 4)
    rc, out, err = run_cli(capsys, "theory", "--sigma-w2-points", 3, "--sigma-b2-points", 2,
                           "--depth", 4)
    assert rc == 0, err
    assert "edge of chaos at sigma_b2 = 0.05: sigma_w2* = 1.7610" in out
    assert "critical line" in out and "predicted gradient profile" in out


THEORY_SMALL = ("theory", "--sigma-w2-points", 3, "--sigma-b2-points", 2, "--depth", 4,
                "--heatmap-points", 4)


def test_theory_and_profile_write_plots(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    r, _ = run_json(capsys, *THEORY_SMALL, "--plot-dir", tmp_path / "t")
    assert [os.path.basename(p) for p in r["plots"]["written"]] == [
        "theory_chi1_tanh.png", "theory_profile_tanh.png"]
    r2, _ = run_json(capsys, "profile", "--depth", 2, "--width", 8, "--batch", 4, "--steps", 2,
                     "--warmup", 0, "--quiet", "--plot-dir", tmp_path / "p")
    for path in r["plots"]["written"] + r2["plots"]["written"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(r2["plots"]["written"]) == 2


def test_plots_skipped_without_matplotlib(capsys, tmp_path, monkeypatch):
    no_matplotlib(monkeypatch)
    rc, out, err = run_cli(capsys, *THEORY_SMALL, "--plot-dir", tmp_path)
    assert rc == 0
    assert "matplotlib is not installed: skipped the plots theory_chi1_tanh.png" in err
    assert "chi_1 over" in out                      # the tables are still there
    r, err = run_json(capsys, "profile", "--depth", 2, "--width", 8, "--batch", 4, "--steps",
                      2, "--warmup", 0, "--plot-dir", tmp_path)
    assert r["plots"]["written"] == []
    assert r["plots"]["skipped"] == ["profile_layers.png", "profile_gradient_flow.png"]
    assert "matplotlib is not installed" in err
    assert not list(tmp_path.glob("*.png"))


# ------------------------------------------------------------------ bench

def test_the_bench_timer_pauses_when_the_implementation_changes(monkeypatch):
    # an OpenBLAS worker spins ~0.1 s after its library's last call: with park_s, the timer
    # sleeps that long between one implementation's last call and the next one's first (its
    # lead-in included), and never between calls of the same implementation (the sleeps are
    # recorded, not slept: wall-clock gaps would also measure a busy machine)
    from vgcore.commands import bench
    events = []
    monkeypatch.setattr(bench.time, "sleep", lambda s: events.append(("sleep", s)))

    def fn(name):
        return lambda: events.append(("call", name))

    res = bench.time_interleaved({"a": fn("a"), "b": fn("b")}, rounds=3, sample_s=1e-4,
                                 warmup_s=0.0, lead_in_s=0.0, park_s=0.05)
    assert set(res) == {"a", "b"} and all(len(r["samples"]) == 3 for r in res.values())
    assert events[0] == ("sleep", 0.05)                     # before the first warm-up too
    last, slept, switches = None, False, 0
    for kind, what in events:
        if kind == "sleep":
            assert what == 0.05
            slept = True
            continue
        if last is not None:
            assert slept == (what != last), (last, what)      # a pause exactly at a change
            switches += what != last
        last, slept = what, False
    assert switches == 5                                    # a b | a b, b a, a b


def test_bench_quick_reports_ratios(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)       # absent, whatever is installed
    r, err = run_json(capsys, "bench", "--quick")
    assert [x["config"] for x in r["results"]] == ["deep-narrow", "deep-narrow-2", "medium"]
    assert r["rounds"] == 3
    for x in r["results"]:
        assert x["vgcore_ms"] > 0 and x["reference_ms"] > 0
        assert x["ratio"] == pytest.approx(x["reference_ms"] / x["vgcore_ms"])
        assert x["agree"] is True
        assert x["torch_ms"] is None and x["torch_ratio"] is None
        assert x["vgcore_gflops"] > 0
    assert r["torch"] == {"available": False, "version": None, "reason": "not installed"}
    assert r["blas_line"].startswith("BLAS:") and isinstance(r["blas"], list)
    assert "PyTorch: skipped (not installed)" in r["notes"]


def test_bench_with_pytorch_races_the_same_network_and_agrees(capsys):
    """The PyTorch path of vgcore bench (CI installs torch==2.13.0): the same network, the same
    first loss, a time and a ratio per configuration."""
    torch = pytest.importorskip("torch")
    torch_threads = torch.get_num_threads()
    try:
        r, err = run_json(capsys, "bench", "--configs", "deep-narrow-2", "--rounds", 1,
                          "--sample-ms", 1, "--lead-in-ms", 0, "--quiet")
    finally:
        torch.set_num_threads(torch_threads)
    assert r["torch"] == {"available": True, "version": torch.__version__, "reason": None}
    (row,) = r["results"]
    assert row["torch_ms"] > 0 and row["torch_ratio"] == pytest.approx(
        row["torch_ms"] / row["vgcore_ms"])
    assert not any("PyTorch" in n and ("differs" in n or "failed" in n) for n in r["notes"]), \
        r["notes"]


def test_bench_table(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    rc, out, err = run_cli(capsys, "bench", "--configs", "deep-narrow-2", "--rounds", 1,
                           "--sample-ms", 1, "--lead-in-ms", 0, "--quiet")
    assert rc == 0, err
    assert "ref/vgcore" in out and "deep-narrow-2" in out and "100x32" in out
    assert "PyTorch: skipped (not installed)" in out
    assert "BLAS:" in out
    assert err == ""


# ------------------------------------------------------------------ help and bad arguments

@pytest.mark.parametrize("cmd", ["profile", "theory", "bench"])
def test_help_has_examples(capsys, cmd):
    rc, out, _ = run_cli(capsys, cmd, "--help")
    assert rc == 0
    assert "examples:" in out and f"vgcore {cmd}" in out and "--json" in out


@pytest.mark.parametrize("argv, expect", [
    (("profile", "--activation", "nope"), "invalid choice: 'nope'"),
    (("profile", "--depth", "-3"), "--depth"),
    (("profile", "--width", "0"), "--width"),
    (("profile", "--steps", "x"), "--steps"),
    (("profile", "--dtype", "float16"), "--dtype"),
    (("profile", "--init", "normal", "--depth", "2"), "sigma_w"),
    (("profile", "--norm", "batch", "--batch", "1"), "--batch"),
    (("theory", "--activation", "nope"), "invalid choice"),
    (("theory", "--sigma-b2", "-1"), "--sigma-b2"),
    (("theory", "--sigma-w2-range", "3", "1"), "--sigma-w2-range"),
    (("theory", "--depth", "0"), "--depth"),
    (("theory", "--plot-dir", "/proc/no/such/dir"), "--plot-dir"),
    (("bench", "--configs", "tiny"), "invalid choice: 'tiny'"),
    (("bench", "--rounds", "-1"), "--rounds"),
])
def test_bad_arguments_one_line_exit_2(capsys, argv, expect):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and expect in err, err
    assert "Traceback" not in err


def test_bad_argument_subprocess_no_traceback():
    p = subprocess.run([sys.executable, "-m", "vgcore", "profile", "--depth", "-1"],
                       capture_output=True, text=True, cwd=os.path.dirname(os.__file__),
                       timeout=60)
    assert p.returncode == 2
    assert p.stdout == "" and p.stderr.count("\n") == 1
    assert "--depth" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------------------ demo

DEMO = ("demo", "--depth", 6, "--width", 8, "--steps", 3, "--batch", 16)


def test_demo_json_has_every_number_of_the_table(capsys):
    res, err = run_json(capsys, *DEMO)
    assert err == ""
    assert res["settings"]["depth"] == 6 and res["settings"]["threads"] == vg.get_num_threads()
    runs = {(r["activation"], r["init"]): r for r in res["runs"]}
    assert set(runs) == {("sigmoid", "standard"), ("tanh", "standard"),
                         ("tanh", "orthogonal"), ("relu", "he_normal")}
    for r in runs.values():
        assert len(r["first_grad_norm"]) == len(r["last_grad_norm"]) == 7
        assert all(g > 0 and math.isfinite(g) for g in r["first_grad_norm"])
        assert 0 <= r["accuracy"] <= 1 and r["seconds"] >= 0
    # the point of the demo: sigmoid's first layer gets far less than relu/He's
    sig, relu = runs["sigmoid", "standard"], runs["relu", "he_normal"]
    ratio = lambda r: r["first_grad_norm"][0] / r["first_grad_norm"][-1]    # noqa: E731
    assert ratio(sig) < 0.1 * ratio(relu)


def test_demo_quiet_prints_only_the_tables(capsys):
    rc, out, err = run_cli(capsys, *DEMO, "--quiet")
    assert rc == 0 and err == ""
    assert out.startswith("gradient norm ||dL/dW_l|| per layer at the first step")
    assert "vgcore demo:" not in out and "Chance accuracy" not in out
    rc, loud, _ = run_cli(capsys, *DEMO)
    assert loud.startswith("vgcore demo: 6 hidden layers of 8") and "Chance accuracy" in loud

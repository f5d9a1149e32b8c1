"""``vgcore theory`` for normalised, residual and dropout networks: the tables it prints and the
JSON behind them are vgcore.theory's numbers (the plain tables are pinned in test_cli_tools.py)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from vgcore.__main__ import main
from vgcore.measure import theory as T


def run_cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_json(capsys, *argv):
    rc, out, err = run_cli(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def test_batch_norm_table(capsys):
    rc, out, err = run_cli(capsys, "theory", "--activation", "relu", "--norm", "batch",
                           "--batch", 64, "--depth", 6)
    assert rc == 0, err
    lam = T.batch_norm_gradient_factor("relu", 64)
    assert f"lambda(64) = {lam:.5g}" in out
    assert "pi/(pi-1) = 1.46694" in out and "(B-2)/(B-3) = 1.01639" in out
    assert "explode backwards" in out
    r = run_json(capsys, "theory", "--activation", "relu", "--norm", "batch", "--batch", 64,
                 "--depth", 6)
    bn = r["batch_norm"]
    assert bn["factor"] == lam
    rows = {row["batch"]: row["factor"] for row in bn["by_batch"]}
    assert rows[64] == lam and rows[None] == pytest.approx(math.pi / (math.pi - 1))  # inf
    st = T.batch_norm_stats("relu", 64)
    assert bn["stats"]["kappa1"] == st.kappa1 and bn["stats"]["cross_moment"] == st.cross_moment
    prof = T.predicted_gradient_profile("relu", depth=6, sigma_w2=1.0, sigma_b2=0.05,
                                        norm="batch", batch=64)
    np.testing.assert_array_equal(r["profiles"][0]["delta_sq"], prof.delta_sq)
    assert r["critical_sigma_w2"] is None and "independent of sigma_w2" in r["critical_reason"]


def test_residual_table(capsys):
    rc, out, err = run_cli(capsys, "theory", "--activation", "relu", "--residual", 0.2,
                           "--depth", 8, "--rows", 0)
    assert rc == 0, err
    assert "residual stream" in out and "Q (no mean)" in out and "no ordered phase" in out
    r = run_json(capsys, "theory", "--activation", "relu", "--residual", 0.2, "--depth", 8)
    st = r["residual_stream"]
    assert st["alpha"] == 0.2 and st["sigma_w2"] == 2.0       # relu: the critical sigma_w2
    mom = T.residual_moments("relu", 8, 2.0, 0.05, 0.2)
    assert [x["second_moment"] for x in st["layers"]] == list(mom["second_moment"])
    assert [x["mean"] for x in st["layers"]] == list(mom["mean"])
    assert st["layers"][-1]["second_moment"] > st["layers"][-1]["second_moment_without_mean"]
    assert [p["sigma_w2"] for p in r["profiles"]] == pytest.approx([1.6, 2.0, 2.5])
    auto = run_json(capsys, "theory", "--activation", "tanh", "--residual", "auto",
                    "--residual-init", "zero", "--depth", 4)
    assert auto["residual_stream"]["alpha"] == 0.5
    assert auto["profiles"][0]["delta_sq"] == [1.0] * 4     # identity blocks: flat


def test_layer_norm_and_dropout_tables(capsys):
    r = run_json(capsys, "theory", "--activation", "tanh", "--norm", "layer",
                 "--sigma-w2-points", 3, "--sigma-b2-range", 0, 0, "--depth", 4)
    cp = T.critical_point("tanh", 0.05, norm="layer")
    assert r["critical_sigma_w2"] == cp.sigma_w2
    for row in r["table"]:
        assert row["chi_1"] == T.layer_norm_chi1("tanh", row["sigma_w2"], 0.05)
        assert row["q_hat"] == pytest.approx(1.0, abs=1e-3)
    assert r["critical_line"][0]["sigma_w2"] is None                # sigma_b2 = 0: none
    r = run_json(capsys, "theory", "--activation", "relu", "--dropout", 0.1, "--sigma-b2", 0,
                 "--sigma-w2-points", 3, "--sigma-b2-points", 2, "--depth", 4)
    e = r["dropout_effect"]
    assert r["critical_sigma_w2"] == pytest.approx(2 * 0.9, rel=1e-14)
    assert e["critical_sigma_w2_with"] == r["critical_sigma_w2"]
    assert e["critical_sigma_w2_without"] == 2.0
    assert e["with_dropout"]["c_star"] < 1 and e["without"]["c_star"] == 1
    assert r["table"][0]["chi_1"] == T.chi1("relu", r["table"][0]["sigma_w2"], 0.0,
                                            dropout=0.1)
    rc, out, err = run_cli(capsys, "theory", "--activation", "relu", "--dropout", 0.1,
                           "--sigma-w2-points", 3, "--sigma-b2-points", 2, "--depth", 4)
    assert rc == 0 and "dropout 0.1 at sigma_w2" in out and "no true critical point" in out


def test_finite_width_band_in_the_profile(capsys):
    r = run_json(capsys, "theory", "--activation", "relu", "--sigma-b2", 0, "--width", 64,
                 "--depth", 5, "--profile-sigma-w2", 2, "--sigma-w2-points", 2,
                 "--sigma-b2-points", 2)
    p = r["profiles"][0]
    g = T.predicted_gradient_profile("relu", depth=5, sigma_w2=2.0, sigma_b2=0.0, width=64)
    lo, hi = g.band(2.0)
    np.testing.assert_allclose(p["band_low"], lo)
    np.testing.assert_allclose(p["band_high"], hi)
    rc, out, err = run_cli(capsys, "theory", "--activation", "tanh", "--width", 64,
                           "--depth", 3, "--sigma-w2-points", 2, "--sigma-b2-points", 2)
    assert rc == 0 and "relu and identity layers only" in out


@pytest.mark.parametrize("argv, words", [
    (("--norm", "batch"), "--batch"),
    (("--batch", 32), "--norm batch"),
    (("--residual-init", "zero"), "--residual"),
    (("--norm", "batch", "--batch", 3), "4 or more"),
    (("--dropout", 1.0), "probability"),
    (("--residual", "twice"), "'auto'"),
])
def test_bad_options_get_one_line_and_exit_2(capsys, argv, words):
    rc, out, err = run_cli(capsys, "theory", *argv)
    assert rc == 2 and words in err and "Traceback" not in err


def test_plots_for_batch_norm_and_residual(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    for argv in (("--norm", "batch", "--batch", 16), ("--residual", "auto")):
        r = run_json(capsys, "theory", "--activation", "relu", "--depth", 4,
                     "--sigma-w2-points", 2, "--sigma-b2-points", 2, *argv,
                     "--plot-dir", tmp_path / argv[1])
        assert [os.path.basename(p) for p in r["plots"]["written"]] == [
            "theory_chi1_relu.png", "theory_profile_relu.png"]
        for path in r["plots"]["written"]:
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"

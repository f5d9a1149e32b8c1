"""The commands on the user's own files and with TensorBoard: ``--data`` / ``--label`` for
``compare``, ``profile`` and ``sweep`` (the width and classes come from the file, the record
names it with its SHA-256, a bad file is one line and exit code 2), ``compare --tensorboard``
(read back with TensorBoard's own reader), and the theory drawn for every configuration."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os

import numpy as np
import pytest

from vgcore.__main__ import main

TINY = ["--depth", "3", "--width", "8", "--steps", "12", "--batch-size", "16", "--quiet",
        "--no-plots"]


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def files(tmp_path):
    """A CSV with a header and a named label column (3 classes, 7 features) and an NPZ
    (X, y; 4 classes, 5 features)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 7))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    path_csv = tmp_path / "flowers.csv"
    with open(path_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(3)] + ["species"] + [f"g{i}" for i in range(4)])
        for row, label in zip(X, y):
            w.writerow([f"{v:.5f}" for v in row[:3]] + [int(label)]
                       + [f"{v:.5f}" for v in row[3:]])
    X2 = rng.normal(size=(90, 5))
    np.savez(tmp_path / "arrays.npz", X=X2, y=rng.integers(0, 4, 90))
    return str(path_csv), str(tmp_path / "arrays.npz")


# ------------------------------------------------------------------------------ compare
def test_compare_trains_on_a_csv_and_records_the_file(files, tmp_path):
    path, _ = files
    out = str(tmp_path / "report")
    rc, stdout, err = cli(["compare", *TINY, "--activations", "tanh", "--data", path,
                           "--label", "species", "--out", out, "--json"])
    assert rc == 0, err
    summary = json.loads(stdout)
    s = summary["settings"]
    assert s["classes"] == 3 and s["n_train"] == 96 and s["n_test"] == 24
    assert s["dataset"] is None and "flowers.csv" in s["data"]
    rec = summary["record"]["data"]
    assert rec["sha256"] == sha(path) and rec["path"] == os.path.abspath(path)
    assert rec["samples"] == 120 and rec["features"] == 7 and "species" in rec["label"]
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert sha(path) in page and "120 rows x 7 feature columns" in page
    assert "species" in page and "96 training and 24 held-out rows" in page


def test_compare_label_by_index_and_npz(files, tmp_path):
    path, npz = files
    rc, stdout, err = cli(["compare", *TINY, "--activations", "relu", "--data", path,
                           "--label", "3", "--out", str(tmp_path / "a"), "--json"])
    assert rc == 0, err
    assert json.loads(stdout)["settings"]["classes"] == 3
    rc, stdout, err = cli(["compare", *TINY, "--activations", "relu", "--data", npz,
                           "--out", str(tmp_path / "b"), "--json"])
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["settings"]["classes"] == 4
    assert summary["record"]["data"]["sha256"] == sha(npz)


def test_compare_config_file_names_the_data_relative_to_itself(files, tmp_path):
    path, _ = files
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{os.path.basename(path)}"\nlabel = "species"\n'
                   f'activations = ["tanh"]\n')
    other = tmp_path / "elsewhere"
    other.mkdir()
    cwd = os.getcwd()
    os.chdir(other)
    try:
        rc, stdout, err = cli(["compare", *TINY, "--config", str(cfg), "--out", "r",
                               "--json"])
    finally:
        os.chdir(cwd)
    assert rc == 0, err
    assert json.loads(stdout)["record"]["data"]["sha256"] == sha(path)


def _bad(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("make, extra, expect", [
    (lambda t: _bad(t, "bad.csv", "a,b,y\n1,2,0\n3,x,1\n"), [],
     r"--data: bad\.csv: line 3, column 1 \('b'\): 'x' is not a number"),
    (lambda t: _bad(t, "nan.csv", "a,b,y\n1,nan,0\n3,4,1\n"), [],
     r"--data: nan\.csv: line 2, column 1 \('b'\): nan \(expected finite numbers"),
    (lambda t: _bad(t, "ragged.csv", "a,b,y\n1,2,0\n3,1\n"), [],
     r"--data: ragged\.csv: line 3"),
    (lambda t: _bad(t, "frac.csv", "a,b,y\n1,2,0.5\n3,4,1\n"), [],
     r"--data: frac\.csv: .*not an integer|--data: frac\.csv: .*class"),
    (lambda t: str(t / "missing.csv"), [], r"--data: no such file: .*missing\.csv"),
    (lambda t: _bad(t, "ok.csv", "a,b,y\n1,2,0\n3,4,1\n"), ["--label", "nope"],
     r"--label: .*ok\.csv.*'nope'|--data: .*ok\.csv.*nope"),
    (lambda t: _bad(t, "ok.csv", "a,b,y\n1,2,0\n3,4,1\n"), ["--dataset", "two_spirals"],
     r"--data, --dataset: .*give one of them"),
])
def test_compare_bad_file_is_one_line_and_exit_2(tmp_path, make, extra, expect):
    rc, stdout, err = cli(["compare", *TINY, "--data", make(tmp_path), *extra,
                           "--out", str(tmp_path / "r")])
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("vgcore compare: error: ")
    import re
    assert re.search(expect, err), err
    assert not os.path.exists(tmp_path / "r" / "report.html")


def test_label_without_data_is_refused(tmp_path):
    rc, _, err = cli(["compare", *TINY, "--label", "y", "--out", str(tmp_path / "r")])
    assert rc == 2 and "--label: names the label column of a --data file" in err


# ------------------------------------------------------------------------------ tensorboard
def test_compare_tensorboard_writes_one_run_per_configuration(tmp_path):
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    tb = tmp_path / "tb"
    rc, stdout, err = cli(["compare", *TINY, "--activations", "sigmoid", "relu",
                           "--out", str(tmp_path / "r"), "--tensorboard", str(tb), "--json"])
    assert rc == 0, err
    summary = json.loads(stdout)
    runs = sorted(os.listdir(tb))
    assert runs == ["01-sigmoid_standard", "02-relu_standard"]
    with open(tmp_path / "r" / "measurements.json", encoding="utf-8") as f:
        meas = json.load(f)
    for k, name in enumerate(runs):
        acc = ea.EventAccumulator(str(tb / name), size_guidance={ea.SCALARS: 0,
                                                                  ea.HISTOGRAMS: 0})
        acc.Reload()
        tags = acc.Tags()
        assert "grad_norm/layer_1" in tags["scalars"] and "delta_norm/layer_4" in tags["scalars"]
        assert "flow/grad_ratio" in tags["scalars"] and "loss/train" in tags["scalars"]
        assert "weight_grad/layer_1" in tags["histograms"]
        loss = acc.Scalars("loss/train")
        assert [e.step for e in loss] == list(range(12))
        held = acc.Scalars("accuracy/held_out")
        assert len(held) == 1
        np.testing.assert_allclose(held[0].value,
                                   summary["configurations"][k]["accuracy"], rtol=1e-6)
        ratio = acc.Scalars("flow/grad_ratio")
        first = summary["configurations"][k]["grad_ratio_first"]
        assert ratio[0].step == 0
        np.testing.assert_allclose(ratio[0].value, first, rtol=1e-5)
    assert meas  # the report is written as without --tensorboard


def test_compare_tensorboard_refuses_to_mix_runs_and_names_what_is_missing(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("tensorboardX")
    tb = str(tmp_path / "tb")
    args = ["compare", *TINY, "--activations", "tanh", "--tensorboard", tb]
    assert cli([*args, "--out", str(tmp_path / "a")])[0] == 0
    rc, _, err = cli([*args, "--out", str(tmp_path / "b")])
    assert rc == 2 and "already holds the event files of an earlier run" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = cli([*args[:-1], str(tmp_path / "file"), "--out", str(tmp_path / "c")])
    assert rc == 2 and "exists and is not a folder" in err
    import sys
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    rc, _, err = cli([*args[:-1], str(tmp_path / "tb2"), "--out", str(tmp_path / "d")])
    assert rc == 2 and "needs tensorboardX" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ profile
def test_profile_on_a_batch_of_the_file(files):
    path, npz = files
    rc, stdout, err = cli(["profile", "--data", path, "--label", "species", "--depth", "2",
                           "--width", "8", "--batch", "16", "--steps", "2", "--warmup", "0",
                           "--json", "--quiet"])
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["config"]["sizes"] == [7, 8, 8, 3]
    assert r["config"]["data"]["sha256"] == sha(path)
    rc, stdout, err = cli(["profile", "--data", npz, "--depth", "2", "--width", "8",
                           "--batch", "16", "--steps", "2", "--warmup", "0", "--quiet"])
    assert rc == 0, err
    assert sha(npz) in stdout and "5 feature columns" in stdout


@pytest.mark.parametrize("extra, expect", [
    (["--batch", "500"], r"--batch: flowers\.csv has 96 training rows"),
    (["--outputs", "3"], r"--outputs: with --data the input width and the classes come"),
    (["--label", "nope"], r"'nope'"),
])
def test_profile_data_errors(files, extra, expect):
    import re
    path, _ = files
    args = ["profile", "--data", path, "--steps", "1", *extra]
    if "--label" not in extra:
        args += ["--label", "species"]
    rc, _, err = cli(args)
    assert rc == 2 and "Traceback" not in err and re.search(expect, err), err


# ------------------------------------------------------------------------------ sweep
SWEEP = """name = "mine"
dataset = "gaussian_mixture"
width = 8
steps = 6
batch_size = 16
[grid]
activation = ["tanh", "relu"]
depth = [2, 3]
"""


def test_sweep_on_a_file_records_it_and_refuses_a_changed_one(files, tmp_path):
    path, _ = files
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    out = str(tmp_path / "sw")
    args = ["sweep", str(cfg), "--data", path, "--label", "species", "--out", out,
            "--executor", "serial", "--quiet", "--no-plots"]
    rc, stdout, err = cli([*args, "--json"])
    assert rc == 0, err
    assert json.loads(stdout)["ok"] == 4
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["data"] for r in rows} == {os.path.abspath(path)}
    assert {r["data_sha256"] for r in rows} == {sha(path)}
    assert {r["label"] for r in rows} == {"species"} and {r["dataset"] for r in rows} == {""}
    assert {int(r["n_params"]) for r in rows if r["depth"] == "2"} == {7 * 8 + 8 + 8 * 8 + 8
                                                                        + 8 * 3 + 3}
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert sha(path) in page and "120 rows x 7 feature columns" in page
    with open(os.path.join(out, "results.jsonl"), encoding="utf-8") as f:
        assert all(json.loads(line)["config"]["data_sha256"] == sha(path) for line in f)
    # resumed with the same file: nothing to do
    rc, stdout, err = cli([*args, "--json"])
    assert rc == 0 and json.loads(stdout)["executed"] == 0, err
    # the file changed: refused, naming both digests
    old = sha(path)
    with open(path, "a") as f:
        f.write("0.1,0.2,0.3,1,0.4,0.5,0.6,0.7\n")
    rc, _, err = cli(args)
    assert rc == 2 and "has changed since the results" in err and old in err
    assert sha(path) in err


def test_sweep_file_with_data_and_errors(files, tmp_path):
    path, npz = files
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace('dataset = "gaussian_mixture"\n',
                                 f'data = "{os.path.basename(npz)}"\n'))
    rc, stdout, err = cli(["sweep", str(cfg), "--out", str(tmp_path / "a"), "--executor",
                           "serial", "--quiet", "--no-plots", "--json"])
    assert rc == 0, err
    assert json.loads(stdout)["ok"] == 4
    # both a data file and a generated data set in one file
    cfg.write_text(SWEEP.replace('dataset = "gaussian_mixture"\n',
                                 'dataset = "gaussian_mixture"\ndata = "arrays.npz"\n'))
    rc, _, err = cli(["sweep", str(cfg), "--out", str(tmp_path / "b"), "--quiet"])
    assert rc == 2 and "data, dataset: a data file replaces the generated data set" in err
    bad = _bad(tmp_path, "bad.csv", "a,b,y\n1,2,0\n3,x,1\n")
    cfg.write_text(SWEEP)
    rc, _, err = cli(["sweep", str(cfg), "--data", bad, "--out", str(tmp_path / "c"),
                      "--quiet"])
    assert rc == 2 and "--data: bad.csv: line 3, column 1 ('b')" in err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "c" / "results.jsonl")
    rc, _, err = cli(["sweep", str(cfg), "--data", str(tmp_path / "none.csv"), "--quiet"])
    assert rc == 2 and "--data: no such file" in err


def test_sweep_run_ids_without_data_are_unchanged():
    from vgcore.experiments.sweep.config import run_id
    from vgcore.experiments import sweep as S
    cfg = S.Sweep(base={"depth": 2}).configs[0]
    legacy = {k: v for k, v in cfg.items() if k not in ("data", "label", "data_sha256")}
    text = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    assert run_id(cfg) == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_a_worker_whose_file_differs_fails_the_run(files, tmp_path):
    from vgcore.experiments import sweep as S
    from vgcore.experiments.sweep.runner import execute
    path, _ = files
    cfg = S.Sweep(base={"data": path, "label": "species", "depth": 2, "width": 4,
                        "steps": 2}).configs[0]
    with open(path, "a") as f:
        f.write("0.1,0.2,0.3,1,0.4,0.5,0.6,0.7\n")
    res = execute(cfg)
    assert res["status"] == "failed"
    assert "the file changed since" in res["error"] and cfg["data_sha256"] in res["error"]


# ------------------------------------------------------------------------------ theory
def test_compare_draws_the_theory_for_normalised_and_residual_configurations(tmp_path):
    rc, _, err = cli(["compare", "--depth", "4", "--width", "16", "--steps", "3", "--quiet",
                      "--out", str(tmp_path / "r"), "--config", _toml(tmp_path)])
    assert rc == 0, err
    with open(tmp_path / "r" / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    theory = summary["record"]["theory"]
    assert len(theory) == 1 and theory[0].startswith("vgcore.theory.predicted_gradient_profile")
    assert theory[0].endswith("for bn; ln; res; auto"), theory
    assert "theory_vs_measured.png" in summary["files"]


def _toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[[config]]\nname = "bn"\nactivation = "relu"\nnorm = "batch"\n'
                 '[[config]]\nname = "ln"\nactivation = "tanh"\nnorm = "layer"\n'
                 '[[config]]\nname = "res"\nactivation = "relu"\nresidual = 0.5\n'
                 '[[config]]\nname = "auto"\nactivation = "tanh"\nresidual = "auto"\n')
    return str(p)


def test_theory_prints_the_jacobian_spectrum_measured_and_predicted():
    rc, stdout, err = cli(["theory", "--activation", "tanh", "--sigma-b2", "0", "--depth",
                           "4", "--width", "16", "--json"])
    assert rc == 0, err
    sp = json.loads(stdout)["spectrum"]
    assert sp["width"] == 16 and len(sp["rows"]) == 6
    for row in sp["rows"]:
        # 16 inputs x 16 singular values: the measured mean within 35% of the prediction
        assert abs(row["measured_mean"] / row["predicted_mean"] - 1) < 0.35, row
    orth = [r for r in sp["rows"] if r["weights"] == "orthogonal"]
    gauss = [r for r in sp["rows"] if r["weights"] == "gaussian"]
    for o, g in zip(orth, gauss):          # Gaussian weights add one per layer to the spread
        assert g["predicted_relative_variance"] - o["predicted_relative_variance"] \
            == pytest.approx(5.0, rel=1e-6)
        assert o["measured_relative_variance"] < g["measured_relative_variance"]


@pytest.mark.parametrize("args, expect", [
    (["--activation", "relu", "--norm", "batch", "--batch", "64"],
     "lambda(64) = 1.4"),
    (["--activation", "relu", "--residual", "0.2"], "residual stream x_l"),
])
def test_theory_tables_for_batch_norm_and_residual(args, expect):
    rc, stdout, err = cli(["theory", *args, "--depth", "6"])
    assert rc == 0, err
    assert expect in stdout and "predicted gradient profile" in stdout

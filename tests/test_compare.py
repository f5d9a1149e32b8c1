"""``vgcore compare``: the report it writes, the numbers it prints, its errors, and the story it
tells on its default settings."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import vgcore as vg
from vgcore.__main__ import main
from _vgtest import vgcore_command

TINY = ["--depth", "6", "--width", "16", "--steps", "30", "--quiet"]
PLOTS = ("gradient_norms.png", "gradient_heatmap.png", "saturation_dead.png",
         "training_curves.png", "theory_vs_measured.png")
STORY_NAMES = ["sigmoid, standard init", "tanh, standard init", "relu, He init",
               "tanh, Glorot init", "tanh, orthogonal init", "sigmoid + batch norm",
               "tanh + residual", "sigmoid + Adam"]


def cli(argv):
    """Run ``vgcore ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def load(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """The story on tiny settings, with plots, printed as a table."""
    out = str(tmp_path_factory.mktemp("story") / "report")
    rc, stdout, stderr = cli(["compare", *TINY, "--out", out])
    assert rc == 0, stderr
    return out, stdout, stderr


# ------------------------------------------------------------------------------ files
def test_writes_every_file(story):
    out, stdout, _ = story
    for name in ("report.html", "summary.json", "measurements.json", "measurements.csv") + PLOTS:
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 0, name
    for name in PLOTS:
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    summary = load(out, "summary.json")
    assert [r["name"] for r in summary["configurations"]] == STORY_NAMES
    assert set(summary["files"]) == {"report.html", "summary.json", "measurements.json",
                                      "measurements.csv", *PLOTS}
    assert summary["skipped_plots"] == []
    assert "report.html" in stdout


def _page(out):
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        return f.read()


def test_report_html_is_self_contained(story):
    out, _, _ = story
    page = _page(out)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "url(" not in page and "@import" not in page
    srcs = re.findall(r"""\bsrc\s*=\s*["']?([^"' >]*)""", page, flags=re.I)
    assert len(srcs) == len(PLOTS)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    # every link is to a section of the page or to a file beside it
    ids = set(re.findall(r"""\bid="([^"]+)\"""", page))
    hrefs = re.findall(r"""\bhref="([^"]*)\"""", page, flags=re.I)
    assert hrefs
    for h in hrefs:
        if h.startswith("#"):
            assert h[1:] in ids, h
        else:
            assert "/" not in h and ":" not in h and os.path.isfile(os.path.join(out, h)), h
    for name in STORY_NAMES:                               # table and diagnosis text
        assert name.replace("'", "&#x27;") in page
    assert "[ERROR] vanishing" in page and "<table" in page


def test_report_reads_on_a_phone(story):
    out, _, _ = story
    page = _page(out)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # tables scroll inside their own box and turn into cards on narrow screens; figures
    # shrink to the screen
    assert page.count('<div class="scroll"><table class="cards">') == page.count("<table")
    assert "@media (max-width: 700px)" in page and "max-width: 100%; height: auto" in page
    for w in re.findall(r"""<img [^>]*width="(\d+)\"""", page):
        assert int(w) <= 900                  # at most 2.5 px per CSS px on a 390 px phone


def test_report_opens_with_the_verdict_and_holds_the_run_record(story):
    out, _, _ = story
    page, summary = _page(out), load(out, "summary.json")
    body = page[page.index("<body>"):]
    first = re.findall(r"<(h1|p|nav|section)\b[^>]*>", body)[:2]
    assert first == ["h1", "p"] and '<p class="verdict" id="verdict">' in body
    verdict = summary["verdict"]
    assert verdict.replace("≤", "≤") in page
    rows = summary["configurations"]
    vanish = sum(r["diagnosis"] == "vanishing" for r in rows)
    if vanish:
        assert verdict.startswith(f"{vanish} of {len(rows)} configurations vanish")
    # the table of contents
    for ident, title in (("results", "Results"), ("diagnoses", "Diagnoses"),
                         ("plots", "Plots"), ("record", "Run record"), ("files", "Files")):
        assert f'<a href="#{ident}">{title}</a>' in page
        assert f'<section id="{ident}"><h2>{title}</h2>' in page
    # the run record: version, date, the command, CPU, BLAS, threads
    rec = summary["record"]
    assert rec["vgcore"] == vg.__version__
    assert rec["command"].startswith("vgcore compare --depth 6 --width 16")
    assert rec["threads"]["vgcore"] == summary["settings"]["threads"]
    assert rec["cpu"]["model"] and rec["data"] is None and rec["config"] is None
    assert len(rec["blas"]) == len(vg.blas_info())
    record = page[page.index('<section id="record">'):page.index('<section id="files">')]
    for text in (rec["vgcore"], rec["date"], rec["command"], rec["cpu"]["model"], "BLAS",
                 "threads"):
        assert text in record, text
    assert any(b["library"] in record for b in rec["blas"])


def test_each_diagnosis_shows_the_measurement_it_rests_on(story):
    out, _, _ = story
    page, summary = _page(out), load(out, "summary.json")
    diag = page[page.index('<section id="diagnoses">'):page.index('<section id="plots">')]
    assert "||dW<sub>l</sub>|| ~ ||x<sub>l</sub>|| ||delta<sub>l</sub>||" in diag
    for row in summary["configurations"]:
        text = row["rests_on"]
        assert text and text.replace("'", "&#x27;") in diag
        ev = row["diagnosis_evidence"]
        if row["diagnosis"] in ("vanishing", "healthy"):
            shown = [float(x) for x in re.findall(r"\d[\d.]*(?:e[-+]?\d+)?", text)]
            for key in ("grad_ratio", "hidden_delta_ratio"):     # both ratios, as measured
                assert any(v == pytest.approx(ev[key], rel=0.01) for v in shown), (key, text)


def test_a_finding_of_a_trend_alone_rests_on_the_trend():
    """relu with LeCun init: its only finding is the trend (the error ratio rose from 0.0013 to
    0.31 over the run); the column showed "-" for the two ratios it does not carry."""
    from vgcore.commands.compare.summary import rests_on
    f = vg.Finding("vanishing", "warning", "vanishing at the start, recovering (trend): ...",
                   {"delta_ratio_first": 0.00129, "delta_ratio_last": 0.31,
                    "delta_ratio_trend": "recovering", "trend_steps": [0, 999]})
    assert rests_on(f) == ("error-signal ratio delta1/delta_out 0.00129 at the start of the run "
                           "(step 0 on), 0.31 at its end (to step 999); alarm below 0.01")


def _table_rows(stdout, names):
    rows = {}
    for line in stdout.splitlines():
        for name in names:
            if line.startswith(name + " "):
                cells = line[len(name):].split()
                rows[name] = cells[:6] + [" ".join(cells[6:])]
    assert set(rows) == set(names), stdout
    return rows


def _ratio(v):
    return "-" if v is None else f"{v:.1e}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def test_printed_table_matches_summary_and_measurements(story):
    out, stdout, _ = story
    summary = load(out, "summary.json")
    meas = load(out, "measurements.json")
    assert meas["summary"] == summary
    printed = _table_rows(stdout, STORY_NAMES)
    runs = {r["config"]: r for r in meas["runs"]}
    for row in summary["configurations"]:
        run = runs[row["name"]]
        rec = run["recorder"]
        # summary.json holds the measured numbers (one seed: exactly those of the run)
        assert row["grad_ratio_first"] == rec["scalars"]["grad_ratio"][0]
        assert row["delta_ratio_first"] == rec["scalars"]["delta_ratio"][0]
        assert row["grad_ratio_last"] == rec["scalars"]["grad_ratio"][-1]
        g = np.asarray(rec["fields"]["grad_norm"][0])
        assert row["grad_ratio_first"] == pytest.approx(g[0] / g[-1], rel=1e-12)
        sat = np.asarray(rec["fields"]["saturated_fraction"], float)[:, :6]
        dead = np.asarray(rec["fields"]["dead_fraction"], float)[:, :6]
        assert row["saturated_fraction"] == pytest.approx(sat.mean(), rel=1e-12, abs=1e-15)
        assert row["dead_fraction"] == pytest.approx(dead.mean(), rel=1e-12, abs=1e-15)
        assert row["loss"] == run["test"]["loss"]
        assert row["accuracy"] == run["test"]["accuracy"]
        assert row["diagnosis"] == run["findings"][0]["kind"]
        assert rec["steps"][0] == 0 and rec["steps"][-1] == 29
        # the printed table shows the same numbers
        cells = printed[row["name"]]
        assert cells[0] == _ratio(row["grad_ratio_first"])
        assert cells[1] == _ratio(row["delta_ratio_first"])
        assert cells[2] == _pct(row["saturated_fraction"])     # one definition: relu's is 0
        assert cells[3] == _pct(row["dead_fraction"])
        assert cells[4] == f"{row['loss']:.3f}"
        assert cells[5] == _pct(row["accuracy"])
        assert cells[6] == row["diagnosis"].replace("_", " ")


def test_measurements_csv_and_recorder_round_trip(story, tmp_path):
    out, _, _ = story
    meas = load(out, "measurements.json")
    with open(os.path.join(out, "measurements.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    layers = 7
    assert len(rows) == sum(len(r["recorder"]["steps"]) * layers for r in meas["runs"])
    run = meas["runs"][2]
    mine = [r for r in rows if r["config"] == run["config"]]
    assert [int(r["step"]) for r in mine[::layers]] == run["recorder"]["steps"]
    assert float(mine[3]["grad_norm"]) == run["recorder"]["fields"]["grad_norm"][0][3]
    assert float(mine[0]["loss"]) == run["loss"][0]
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(run["recorder"]))
    rec = vg.Recorder.from_json(path)
    assert len(rec) == len(run["recorder"]["steps"])
    assert rec.history("grad_ratio")[0] == run["recorder"]["scalars"]["grad_ratio"][0]


# ------------------------------------------------------------------------------ JSON, seeds, modes
def test_json_output_parses_and_equals_summary(tmp_path):
    out = str(tmp_path / "r")
    rc, stdout, _ = cli(["compare", *TINY, "--no-plots", "--json", "--out", out,
                         "--seeds", "0", "1", "--threads", "1"])
    assert rc == 0
    printed = json.loads(stdout)
    assert printed == load(out, "summary.json")
    assert printed["settings"]["seeds"] == [0, 1]
    assert printed["settings"]["threads"] == 1
    for row in printed["configurations"]:
        per = row["per_seed"]
        assert [p["seed"] for p in per] == [0, 1]
        gm = math.exp(np.mean([math.log(p["grad_ratio_first"]) for p in per]))
        assert row["grad_ratio_first"] == pytest.approx(gm, rel=1e-12)
        assert row["accuracy"] == pytest.approx(np.mean([p["accuracy"] for p in per]))
        assert row["loss"] == pytest.approx(np.mean([p["loss"] for p in per]))
    assert printed["skipped_plots"] == list(PLOTS)          # --no-plots
    assert not any(f.endswith(".png") for f in os.listdir(out))


def test_grid_of_activations_and_inits(tmp_path):
    out = str(tmp_path / "r")
    rc, stdout, _ = cli(["compare", *TINY, "--no-plots", "--json", "--out", out,
                         "--activations", "relu", "tanh", "--inits", "standard", "he_normal",
                         "--optimizer", "adam", "--lr", "0.003", "--norm", "layer"])
    assert rc == 0
    s = json.loads(stdout)
    assert s["settings"]["mode"] == "grid"
    got = [(r["activation"], r["init"], r["norm"], r["optimizer"], r["lr"])
           for r in s["configurations"]]
    assert got == [(a, i, "layer", "adam", 0.003) for a in ("relu", "tanh")
                   for i in ("standard", "he_normal")]


def test_no_command_runs_compare(tmp_path):
    out = str(tmp_path / "r")
    rc, stdout, _ = cli([*TINY, "--no-plots", "--json", "--out", out])
    assert rc == 0
    assert [r["name"] for r in json.loads(stdout)["configurations"]] == STORY_NAMES


def test_divergence_is_reported_not_raised(tmp_path):
    out = str(tmp_path / "r")
    rc, stdout, _ = cli(["compare", *TINY, "--no-plots", "--out", out, "--activations",
                         "relu", "--inits", "he_normal", "--lr", "1000"])
    assert rc == 0
    row = load(out, "summary.json")["configurations"][0]
    assert row["diverged"] and row["diagnosis"] == "nonfinite"
    assert row["loss"] is None and row["accuracy"] is None
    assert "diverged" in stdout


# ------------------------------------------------------------------------------ config files
CONFIG = """
depth = 3
width = 8
steps = 100
seeds = [0]
plots = false
batch-size = 32
[[config]]
name = "plain sigmoid"
activation = "sigmoid"
[[config]]
name = "normalised sigmoid"
activation = "sigmoid"
norm = "batch"
optimizer = "adam"
lr = 0.005
[[config]]
activation = "relu"
init = "he_uniform"
residual = "auto"
"""


def test_toml_config_is_honoured(tmp_path):
    cfg = tmp_path / "runs.toml"
    cfg.write_text(CONFIG)
    out = str(tmp_path / "r")
    rc, stdout, _ = cli(["compare", "--config", str(cfg), "--steps", "12", "--json",
                         "--quiet", "--out", out])
    assert rc == 0
    s = json.loads(stdout)
    assert s["settings"]["mode"] == "config"
    assert (s["settings"]["depth"], s["settings"]["width"], s["settings"]["batch_size"]) \
        == (3, 8, 32)
    assert s["settings"]["steps"] == 12                 # the command line wins
    rows = s["configurations"]
    assert [r["name"] for r in rows] == ["plain sigmoid", "normalised sigmoid",
                                         "relu, he_uniform + residual"]
    assert (rows[1]["norm"], rows[1]["optimizer"], rows[1]["lr"]) == ("batch", "adam", 0.005)
    assert (rows[0]["init"], rows[0]["optimizer"], rows[0]["lr"]) == ("standard", "sgd", 0.02)
    assert rows[2]["residual"] == "auto"
    assert s["files"] == ["report.html", "summary.json", "measurements.json",
                          "measurements.csv"]          # plots = false
    meas = load(out, "measurements.json")
    assert all(len(r["loss"]) == 12 for r in meas["runs"])
    assert meas["runs"][0]["recorder"]["sizes"] == [64, 8, 8, 8, 10]


@pytest.mark.parametrize("text, expect", [
    ("depth = 3\nwidth = \n", "not valid TOML"),
    ("[[config]\nactivation = 'relu'\n", "not valid TOML"),
    ("depht = 3\n", "unknown key 'depht'"),
    ("depth = -2\n", "depth"),
    ("depth = 'deep'\n", "depth"),
    ("activations = ['sigmoid', 'swishy']\n", "swishy"),
    ("[[config]]\nname = 'a'\ninit = 'he_normal'\n", "'activation' is required"),
    ("[[config]]\nactivation = 'relu'\ncolour = 'red'\n", "unknown key 'colour'"),
    ("[[config]]\nname = 'x'\nactivation = 'relu'\n[[config]]\nname = 'x'\nactivation = 'tanh'\n",
     "named 'x'"),
    ("dataset = 'mnist'\n", "mnist"),
])
def test_broken_config_is_rejected(tmp_path, text, expect):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    rc, stdout, stderr = cli(["compare", "--config", str(cfg), "--quiet",
                              "--out", str(tmp_path / "r")])
    assert rc == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and expect in stderr, stderr
    assert not (tmp_path / "r" / "summary.json").exists()


# ------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("args, expect", [
    (["--activations", "sigmoid", "swish2"], "swish2"),
    (["--depth", "-3"], "--depth"),
    (["--depth", "0"], "--depth"),
    (["--width", "wide"], "--width"),
    (["--inits", "normal"], "sigma_w"),
    (["--inits", "kaiming"], "kaiming"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--optimizer", "lbfgs"], "lbfgs"),
    (["--lr", "-0.1"], "--lr"),
    (["--residual", "sometimes"], "residual"),
    (["--norm", "group"], "group"),
    (["--seeds", "-1"], "--seeds"),
    (["--config", "/nonexistent/runs.toml"], "no such file"),
    (["--steps", "3", "--unknown-flag"], "unrecognized"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, expect):
    rc, stdout, stderr = cli(["compare", *args, "--out", str(tmp_path / "r")])
    assert rc == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and expect in stderr, stderr
    assert "Traceback" not in stderr


def test_out_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, stderr = cli(["compare", *TINY, "--out", str(f)])
    assert rc == 2 and stderr.count("\n") == 1 and "--out" in stderr


def test_real_process_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("depth = = 3\n")
    for args in (["--activations", "nope"], ["--config", str(bad)]):
        p = subprocess.run([sys.executable, "-m", "vgcore", "compare", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "vgcore", "compare", "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert "examples:" in p.stdout and "vgcore compare --config runs.toml" in p.stdout
    for opt in ("--depth", "--width", "--activations", "--inits", "--norm", "--optimizer",
                "--lr", "--dataset", "--steps", "--batch-size", "--seeds", "--threads",
                "--config", "--out", "--json", "--quiet", "--no-plots"):
        assert opt in p.stdout


# ------------------------------------------------------------------------------ no matplotlib
def test_runs_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # `import matplotlib` fails
    out = str(tmp_path / "r")
    rc, stdout, stderr = cli(["compare", *TINY, "--out", out])
    assert rc == 0
    assert "skipped plots" in stderr and "matplotlib" in stderr
    for name in PLOTS:
        assert name in stderr
        assert not os.path.exists(os.path.join(out, name))
    for name in ("report.html", "summary.json", "measurements.json", "measurements.csv"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert "Not drawn" in page and "matplotlib" in page and "<table" in page
    assert "[ERROR] vanishing" in page and "src=" not in page
    assert load(out, "summary.json")["skipped_plots"] == list(PLOTS)
    assert "sigmoid, standard init" in stdout


# ------------------------------------------------------------------------------ the story
def test_default_story_vanishing_and_its_remedies(tmp_path):
    """The issue's "done when": on the default settings the standard-init sigmoid network's
    first/last gradient ratio is orders of magnitude below ReLU + He's, and batch
    normalisation lifts the sigmoid network's accuracy well above chance."""
    out = str(tmp_path / "r")
    rc, stdout, _ = cli(["compare", "--out", out, "--quiet", "--no-plots", "--json"])
    assert rc == 0
    s = json.loads(stdout)
    assert (s["settings"]["depth"], s["settings"]["width"]) == (20, 64)
    rows = {r["name"]: r for r in s["configurations"]}
    chance = s["settings"]["chance_accuracy"]
    sigmoid, relu = rows["sigmoid, standard init"], rows["relu, He init"]
    assert sigmoid["grad_ratio_first"] < 1e-6 * relu["grad_ratio_first"]
    assert sigmoid["grad_ratio_first"] < 1e-10
    assert 0.1 < relu["grad_ratio_first"] < 10
    assert sigmoid["diagnosis"] == "vanishing" and sigmoid["accuracy"] < chance + 0.1
    assert rows["sigmoid + batch norm"]["accuracy"] > 0.9
    assert rows["tanh, standard init"]["delta_ratio_first"] < 1e-3
    for name in ("relu, He init", "tanh, orthogonal init", "tanh + residual"):
        assert rows[name]["accuracy"] > 0.9, name


# ------------------------------------------------------------------------------ the verdict
def _row(name, diagnosis, accuracy, severity=None, diverged=False, loss=0.1):
    return {"name": name, "diagnosis": diagnosis, "accuracy": accuracy, "loss": loss,
            "severity": severity or ("info" if diagnosis == "healthy" else "error"),
            "diverged": [{"seed": 0, "step": 3}] if diverged else []}


def test_verdict_counts_problems_and_how_far_the_others_get():
    from vgcore.commands.compare.summary import verdict
    rows = [_row("a", "vanishing", 0.082), _row("b", "vanishing", 0.11),
            _row("c", "healthy", 0.994), _row("d", "healthy", 1.0)]
    assert verdict(rows, 0.1) == ("2 of 4 configurations vanish and stay near chance (≤ 11.0% "
                                  "held-out accuracy; chance 10%); the other 2 keep the "
                                  "gradient flowing and reach ≥ 99.4% held-out accuracy.")
    rows = [_row("a", "healthy", 0.99), _row("b", "healthy", 0.97)]
    assert verdict(rows, 0.1) == ("all 2 configurations keep the gradient flowing and reach "
                                  "≥ 97.0% held-out accuracy.")
    rows = [_row("a", "exploding", None, diverged=True, loss=math.nan),
            _row("b", "saturation", 0.9, severity="warning"), _row("c", "healthy", 0.3)]
    assert verdict(rows, 0.1) == ("1 of 3 configurations diverges; 1 saturates yet reaches "
                                  "≥ 90.0%; the other one keeps the gradient flowing but does "
                                  "not learn (≤ 30.0% held-out accuracy).")
    # regression: no accuracy, the held-out loss instead
    rows = [_row("a", "healthy", None, loss=0.25), _row("b", "healthy", None, loss=0.5)]
    assert verdict(rows, None) == ("all 2 configurations keep the gradient flowing and reach "
                                   "a held-out loss ≤ 0.5.")


# ------------------------------------------------------------------------------ interrupted runs
LONG = ["compare", "--depth", "4", "--width", "8", "--steps", "1000000", "--quiet",
        "--threads", "1"]


def _staging(folder):
    return [n for n in os.listdir(folder) if n.startswith(".vgcore-compare-partial-")] \
        if os.path.isdir(folder) else []


def _interrupt(out, tmp_path, sig):
    """Start a long `vgcore compare` in a real process, stop it with ``sig`` once it is
    training, and return (exit code, stderr)."""
    import signal
    import time
    p = subprocess.Popen(vgcore_command(*LONG, "--out", out), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _staging(out):                      # it is set up and training
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the compare never started"
            time.sleep(0.05)
        time.sleep(0.5)
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, err


def _snapshot(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def test_interrupted_compare_leaves_no_report_or_the_previous_one_whole(tmp_path):
    out = tmp_path / "report"
    # a fresh folder: Ctrl-C leaves nothing behind, and says so
    rc, err = _interrupt(out, tmp_path, "SIGINT")
    assert rc == 130, err
    assert "interrupted after 0 of 8 runs; nothing was written" in err, err
    assert "Traceback" not in err and not out.exists()
    # a complete report, then an interrupted run into the same folder: it stays as it was
    rc, _, stderr = cli(["compare", *TINY, "--out", str(out)])
    assert rc == 0, stderr
    before = _snapshot(out)
    assert set(before) == {"report.html", "summary.json", "measurements.json",
                           "measurements.csv", *PLOTS}
    for sig in ("SIGINT", "SIGTERM"):
        rc, err = _interrupt(out, tmp_path, sig)
        assert rc == 130, err
        assert f"the report already in {out} is unchanged" in err, err
        assert _snapshot(out) == before and not _staging(out)


def test_a_report_interrupted_while_writing_its_plots_is_not_half_written(tmp_path,
                                                                         monkeypatch):
    from vgcore.experiments import report
    out = tmp_path / "r"
    rc, _, _ = cli(["compare", *TINY, "--no-plots", "--out", str(out)])
    before = _snapshot(out)
    real = report.make_plots

    def plots_then_ctrl_c(series, folder, enabled=True):
        real(series, folder, enabled=enabled)          # some PNGs are on disk...
        assert any(n.endswith(".png") for n in os.listdir(folder))
        raise KeyboardInterrupt                        # ...when the user gives up

    monkeypatch.setattr(report, "make_plots", plots_then_ctrl_c)
    rc, stdout, stderr = cli(["compare", *TINY, "--out", str(out)])
    assert rc == 130 and stdout == ""
    assert "interrupted after 8 of 8 runs; the report already in" in stderr
    assert _snapshot(out) == before and not _staging(out)


def test_a_new_report_replaces_every_file_of_the_old_one(tmp_path):
    out = tmp_path / "r"
    (tmp_path / "r").mkdir()
    (out / "notes.txt").write_text("mine")                   # not a report file: kept
    stale = out / f".vgcore-compare-partial-{2 ** 22 + 12345}-x"   # a killed run's folder
    stale.mkdir()
    (stale / "report.html").write_text("half")
    assert cli(["compare", *TINY, "--out", str(out)])[0] == 0
    assert all((out / n).exists() for n in PLOTS)
    assert cli(["compare", *TINY, "--no-plots", "--out", str(out)])[0] == 0
    names = set(os.listdir(out))
    assert names == {"report.html", "summary.json", "measurements.json", "measurements.csv",
                     "notes.txt"}
    assert set(load(out, "summary.json")["files"]) == names - {"notes.txt"}

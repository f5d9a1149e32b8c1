"""vgcore.sweep and `vgcore sweep`: expansion, one run's numbers, failures, resuming, executors
(serial, local processes, a Dask LocalCluster) giving identical results, tables, histories,
phase diagrams and the command line."""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import vgcore as vg
from vgcore.experiments import run as experiment_run
from vgcore.experiments import sweep as S
from vgcore.experiments.sweep import executors, store
from vgcore.__main__ import main
from _vgtest import vgcore_command

SMALL = {"n_samples": 400, "width": 12, "steps": 12, "batch_size": 16, "records": 4,
         "lr": 0.05}


def small_sweep(**grid):
    grid = grid or {"activation": ["tanh", "relu"], "depth": [2, 4], "seed": [0, 1]}
    return S.Sweep(base=dict(SMALL), grid=grid, name="small")


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "worker")} for r in rows]


def same_rows(a, b):
    """Exact equality of two lists of rows, NaN equal to NaN."""
    assert len(a) == len(b)
    for ra, rb in zip(without_timing(a), without_timing(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and isinstance(vb, float) and math.isnan(va):
                assert math.isnan(vb), (k, va, vb)
            else:
                assert va == vb, (ra["run_id"], k, va, vb)


# ------------------------------------------------------------------------------ expansion
def test_grid_times_runs_expands_in_order_with_defaults_filled_in():
    s = S.Sweep(base={"steps": 5}, grid={"depth": [2, 3], "seed": [0, 1]},
                runs=[{"activation": "relu"}, {"activation": "tanh", "norm": "batch"}])
    cfgs = s.configs
    assert len(s) == 8
    assert [(c["activation"], c["depth"], c["seed"]) for c in cfgs[:4]] == \
        [("relu", 2, 0), ("relu", 2, 1), ("relu", 3, 0), ("relu", 3, 1)]
    assert all(c["norm"] == "batch" for c in cfgs[4:])
    c = cfgs[0]
    assert set(c) == set(S.PARAMS)
    assert c["steps"] == 5 and c["width"] == S.PARAMS["width"][0]
    assert c["init"] == "standard" and c["lr"] == experiment_run.OPTIMIZERS["sgd"]
    assert s.varying() == ["depth", "activation", "norm", "seed"]


def test_sigma_w2_selects_the_normal_initialiser_and_lr_defaults_per_optimizer():
    c = S.Sweep(base={"sigma_w2": 1.5, "optimizer": "adam"}).configs[0]
    assert c["init"] == "normal" and c["lr"] == 0.001


def test_run_id_depends_only_on_the_complete_configuration():
    a = S.Sweep(base={"depth": 3, "activation": "relu"}).run_ids[0]
    b = S.Sweep(base={"activation": "relu", "depth": 3, "width": 64, "lr": 0.02}).run_ids[0]
    c = S.Sweep(base={"activation": "ReLU", "depth": 3, "sigma_b2": 0}).run_ids[0]
    d = S.Sweep(base={"activation": "relu", "depth": 4}).run_ids[0]
    assert a == b == c != d
    assert len(a) == 12 and int(a, 16) >= 0


def test_the_same_configuration_twice_is_one_run():
    s = S.Sweep(grid={"depth": [2, 2, 3]}, runs=[{"seed": 0}, {"seed": 0}])
    assert len(s) == 2


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"grid": {"depht": [2]}}, ValueError, "unknown parameter 'depht'"),
    ({"grid": {"activation": ["tanh", "tanhh"]}}, ValueError, "grid: activation[1]"),
    ({"grid": {"depth": []}}, ValueError, "grid: depth: expected a non-empty list"),
    ({"grid": {"depth": [2.5]}}, TypeError, "whole number"),
    ({"base": {"lr": -1}}, ValueError, "base: lr"),
    ({"base": {"steps": True}}, TypeError, "steps"),
    ({"base": {"sigma_w2": float("nan")}}, ValueError, "sigma_w2"),
    ({"base": {"optimizer": "lbfgs"}}, ValueError, "optimizer"),
    ({"base": {"dataset": "mnist"}}, ValueError, "dataset"),
    ({"base": {"residual": "sometimes"}}, ValueError, "residual"),
    ({"runs": [{"depth": 2}], "grid": {"depth": [3]}}, ValueError, "both here and in the grid"),
    ({"runs": {"depth": 2}}, TypeError, "runs"),
    ({"runs": [3]}, TypeError, "runs[0]"),
    ({"plot": {"z": 1}}, ValueError, "plot: unknown key 'z'"),
    ({"plot": {"metrics": ["accuracy"]}}, ValueError, "plot: metrics"),
    ({"name": ""}, TypeError, "name"),
])
def test_bad_sweeps_are_refused_with_the_entry_named(kwargs, exc, words):
    with pytest.raises(exc) as e:
        S.Sweep(**kwargs)
    assert words in str(e.value)


def test_from_toml_reads_base_grid_runs_and_plot(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "t"\nsteps = 7\n[grid]\ndepth = [2, 3]\n[[runs]]\nactivation = "relu"'
                 '\n[[runs]]\nactivation = "tanh"\n[plot]\nmetrics = "test_loss"\n')
    s = S.Sweep.from_toml(p)
    assert s.name == "t" and len(s) == 4 and all(c["steps"] == 7 for c in s.configs)
    assert s.plot["metrics"] == ["test_loss"]
    p.write_text("steps = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        S.Sweep.from_toml(p)
    p.write_text("[grid]\nwidth = [0]\n")
    with pytest.raises(ValueError, match=r"s.toml: grid: width\[0\]"):
        S.Sweep.from_toml(p)
    with pytest.raises(FileNotFoundError, match="no such sweep file"):
        S.Sweep.from_toml(tmp_path / "missing.toml")


def test_the_example_file_is_a_valid_sweep(tmp_path):
    from vgcore.commands.sweep import EXAMPLE
    p = tmp_path / "edge.toml"
    p.write_text(EXAMPLE)
    s = S.Sweep.from_toml(p)
    assert len(s) == 120 and s.varying() == ["depth", "activation", "sigma_w2", "seed"]


# ------------------------------------------------------------------------------ one run
def test_a_run_reports_what_training_by_hand_measures():
    """final loss, held-out loss, first-step gradient ratio and n_params against a plain
    vg.MLP + SGD loop written here."""
    cfg = S.Sweep(base={**SMALL, "depth": 3, "activation": "tanh", "sigma_w2": 1.5,
                        "sigma_b2": 0.04, "seed": 3, "steps": 20, "records": 20}).configs[0]
    res = S.execute(cfg)
    assert res["status"] == "ok" and res["error"] == ""
    m = res["metrics"]

    X, y = vg.datasets.gaussian_mixture(400, 64, 10, seed=0)
    Xtr, ytr, Xte, yte = vg.datasets.train_val_split(X, y, 0.2, seed=0)
    net = vg.MLP([64, 12, 12, 12, 10], activation="tanh", init="normal", sigma_w=1.5 ** 0.5,
                 sigma_b=0.2, seed=3)
    opt = vg.optim.SGD(net, lr=0.05)
    rng = np.random.default_rng([3, 1])
    losses, ratios = [], []
    for _ in range(20):
        idx = rng.integers(0, len(Xtr), 16)
        losses.append(net.train_step(Xtr[idx], ytr[idx], "cross_entropy", opt))
        ratios.append(net.gradient_flow().grad_ratio)
    assert m["final_loss"] == pytest.approx(np.mean(losses[-2:]), rel=1e-12)
    assert m["grad_ratio_init"] == pytest.approx(ratios[0], rel=1e-12)
    assert m["grad_ratio_final"] == pytest.approx(ratios[-1], rel=1e-12)
    ev = vg.evaluate(net, Xte, yte)
    assert m["test_loss"] == pytest.approx(ev["loss"], rel=1e-12)
    assert m["test_accuracy"] == pytest.approx(ev["accuracy"])
    assert m["n_params"] == net.n_params and m["steps_done"] == 20
    assert m["sigma_w2_eff"] == pytest.approx(1.5)
    assert m["chi1"] == pytest.approx(vg.theory.chi1("tanh", 1.5, 0.04))
    assert res["history"]["loss"] == pytest.approx(losses, rel=1e-12)


def test_a_refused_configuration_is_a_failed_run_not_an_exception():
    cfg = S.Sweep(base={**SMALL, "init": "he_normal", "sigma_w2": 2.0}).configs[0]
    res = S.execute(cfg)
    assert res["status"] == "failed" and res["history"] is None
    assert res["error"].startswith("ValueError:") and "sigma_w" in res["error"]
    assert all(math.isnan(res["metrics"][k]) for k in ("final_loss", "grad_ratio_init"))


def test_a_diverging_run_is_recorded_with_its_step():
    cfg = S.Sweep(base={**SMALL, "depth": 3, "activation": "relu", "lr": 1e6,
                        "steps": 30}).configs[0]
    res = S.execute(cfg)
    assert res["status"] == "diverged"
    m = res["metrics"]
    assert 0 <= m["diverged_at"] < 30 and m["steps_done"] == m["diverged_at"]
    assert math.isnan(m["final_loss"]) and math.isnan(m["test_loss"])
    assert m["finding"] == "nonfinite"
    assert math.isfinite(m["grad_ratio_init"])        # the first step was measured


def test_float64_runs_and_norm_runs_work():
    s = S.Sweep(base=dict(SMALL), runs=[{"dtype": "float64"}, {"norm": "batch"},
                                        {"residual": "auto", "depth": 4},
                                        {"dataset": "teacher_student"},
                                        {"optimizer": "adamw", "clip_norm": 1.0}])
    for cfg in s.configs:
        res = S.execute(cfg)
        assert res["status"] == "ok", res["error"]
    assert math.isnan(S.execute(s.configs[1])["metrics"]["chi1"])   # no mean field with norm


# ------------------------------------------------------------------------------ folder
def test_serial_sweep_writes_journal_tables_and_histories(tmp_path):
    s = small_sweep()
    r = S.run(s, tmp_path / "out", executor="serial", plots=False)
    assert (r.executed, r.skipped, len(r.rows), r.missing) == (8, 0, 8, [])
    assert list(r.rows[0]) == list(S.COLUMNS) and r.rows[0]["threads"] == 1
    assert [row["run_id"] for row in r.rows] == s.run_ids
    assert all(row["status"] == "ok" for row in r.rows)
    out = tmp_path / "out"
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {json.loads(x)["run_id"] for x in lines} == set(s.run_ids)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["run_id"] for t in table] == s.run_ids
    assert list(table[0]) == list(S.COLUMNS)
    for t, row in zip(table, r.rows):
        assert float(t["final_loss"]) == row["final_loss"]            # repr: exact
        assert int(t["depth"]) == row["depth"] and t["activation"] == row["activation"]
        assert t["norm"] == "" and t["diverged_at"] == ""
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["format"] == "vgcore.sweep" and len(meta["configs"]) == 8
    h = r.history(r.rows[0]["run_id"])
    assert h["loss"].shape == (12,) and h["config"] == s.configs[0]
    assert list(h["recorder"].steps) == [0, 4, 8, 11]
    assert h["recorder"].history("grad_ratio")[0] == r.rows[0]["grad_ratio_init"]
    assert (out / "histories" / f"{r.rows[0]['run_id']}.json.gz").stat().st_size < 20_000
    assert S.load(out, s).rows == r.rows


def test_parquet_table_equals_the_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    s = S.Sweep(base=dict(SMALL), runs=[{"depth": 2}, {"depth": 2, "init": "he_normal",
                                                        "sigma_w2": 2.0},
                                        {"residual": 0.5}, {"residual": "auto"}])
    r = S.run(s, tmp_path, executor="serial", plots=False)
    t = pq.read_table(tmp_path / "results.parquet")
    assert t.column("residual").to_pylist() == [None, None, "0.5", "auto"]
    for row in r.rows:
        if row["residual"] is not None:
            row["residual"] = store.format_value(row["residual"])
    assert t.column_names == list(S.COLUMNS)
    cols = t.to_pydict()
    for i, row in enumerate(r.rows):
        for c in S.COLUMNS:
            a, b = cols[c][i], row[c]
            if isinstance(b, float) and math.isnan(b):
                assert a is None or math.isnan(a)
            else:
                assert a == b, (c, a, b)
    assert cols["status"] == ["ok", "failed", "ok", "ok"]
    assert str(t.schema.field("depth").type) == "int64"
    assert str(t.schema.field("final_loss").type) == "double"


def test_failures_do_not_stop_the_sweep_and_are_summarised(tmp_path):
    s = S.Sweep(base=dict(SMALL), runs=[{"init": "he_normal", "sigma_w2": 2.0},
                                        {"activation": "relu", "lr": 1e6, "steps": 30},
                                        {"depth": 2}])
    r = S.run(s, tmp_path, executor="serial", plots=False)
    assert [row["status"] for row in r.rows] == ["failed", "diverged", "ok"]
    text = r.summary()
    assert "1 ok, 1 diverged, 1 failed" in text and "failed: " in text and "sigma_w" in text
    with pytest.raises(KeyError, match="no history"):
        r.history(r.rows[0]["run_id"])


def test_a_second_call_skips_everything_and_retry_failed_reruns_only_failures(tmp_path):
    s = S.Sweep(base=dict(SMALL), runs=[{"init": "he_normal", "sigma_w2": 2.0},
                                        {"activation": "relu", "lr": 1e6, "steps": 30},
                                        {"depth": 2}])
    first = S.run(s, tmp_path, executor="serial", plots=False)
    again = S.run(s, tmp_path, executor="serial", plots=False)
    assert (again.executed, again.skipped) == (0, 3)
    same_rows(first.rows, again.rows)
    retry = S.run(s, tmp_path, executor="serial", plots=False, retry_failed=True)
    assert (retry.executed, retry.skipped) == (1, 2)
    rerun = S.run(s, tmp_path, executor="serial", plots=False, resume=False)
    assert rerun.executed == 3
    same_rows(first.rows, rerun.rows)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 7


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    s = small_sweep()
    seen = []

    def stop_after_three(row):
        seen.append(row["run_id"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        S.run(s, tmp_path / "a", executor="serial", plots=False, on_result=stop_after_three)
    partial = S.load(tmp_path / "a", s)
    assert [r["run_id"] for r in partial.rows] == seen and len(partial.missing) == 5
    with open(tmp_path / "a" / "results.csv", newline="") as f:      # tables written anyway
        assert len(list(csv.DictReader(f))) == 3
    resumed = S.run(s, tmp_path / "a", executor="serial", plots=False)
    assert (resumed.executed, resumed.skipped) == (5, 3)
    fresh = S.run(s, tmp_path / "b", executor="serial", plots=False)
    same_rows(resumed.rows, fresh.rows)


def test_a_torn_last_journal_line_is_dropped_and_that_run_runs_again(tmp_path):
    s = small_sweep(depth=[2, 3])
    S.run(s, tmp_path, executor="serial", plots=False)
    j = tmp_path / "results.jsonl"
    lines = j.read_text().splitlines(keepends=True)
    j.write_text(lines[0] + lines[1][: len(lines[1]) // 2])        # killed while writing
    r = S.run(s, tmp_path, executor="serial", plots=False)
    assert (r.executed, r.skipped) == (1, 1)
    assert any("incomplete last line" in n for n in r.notes)
    assert len(j.read_text().splitlines()) == 2


def test_a_corrupt_journal_is_refused_with_the_line(tmp_path):
    s = small_sweep(depth=[2, 3])
    S.run(s, tmp_path, executor="serial", plots=False)
    j = tmp_path / "results.jsonl"
    lines = j.read_text().splitlines(keepends=True)
    j.write_text("garbage\n" + "".join(lines))
    with pytest.raises(ValueError, match=r"results.jsonl, line 1: not a vgcore sweep record"):
        S.run(s, tmp_path, executor="serial", plots=False)
    assert j.read_text().startswith("garbage\n")                  # nothing lost


def test_a_folder_in_use_by_another_sweep_is_refused(tmp_path):
    held = store._Folder(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="another sweep is writing"):
            S.run(small_sweep(depth=[2]), tmp_path, executor="serial")
    finally:
        held.close()
    S.run(small_sweep(depth=[2]), tmp_path, executor="serial", plots=False)


def test_results_of_other_sweeps_in_the_folder_are_kept_but_not_tabulated(tmp_path):
    S.run(small_sweep(depth=[2], seed=[0, 1]), tmp_path, executor="serial", plots=False)
    r = S.run(small_sweep(depth=[3], seed=[0, 1]), tmp_path, executor="serial", plots=False)
    assert len(r.rows) == 2 and all(row["depth"] == 3 for row in r.rows)
    assert any("2 results" in n and "not in this sweep" in n for n in r.notes)
    assert len(S.load(tmp_path).rows) == 4


def test_a_folder_loaded_without_its_sweep_keeps_the_runs_ids_and_order(tmp_path):
    s = small_sweep(depth=[2, 3], seed=[0])
    r = S.run(s, tmp_path, executor="serial", plots=False)
    loaded = S.load(tmp_path)
    assert loaded.sweep.run_ids == s.run_ids and loaded.sweep.name == s.name
    same_rows(loaded.rows, r.rows)
    again = S.Sweep.from_configs(s.configs, name="again")
    assert again.configs == s.configs and len(again) == 2 and again.grid == {}
    with pytest.raises(TypeError, match=r"configs\[1\]: expected a table of parameters"):
        S.Sweep.from_configs([s.configs[0], 3])
    with pytest.raises(TypeError, match="configs: expected a list"):
        S.Sweep.from_configs(s.configs[0])


def test_bad_run_arguments_are_refused(tmp_path):
    s = small_sweep(depth=[2])
    with pytest.raises(ValueError, match="executor"):
        S.run(s, tmp_path, executor="threads")
    with pytest.raises(ValueError, match="client / scheduler"):
        S.run(s, tmp_path, executor="serial", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="workers"):
        S.run(s, tmp_path, workers=0)
    with pytest.raises(ValueError, match="workers: sets the size"):
        S.run(s, tmp_path, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="sweep"):
        S.run({"depth": 2}, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        S.run(s, tmp_path / "file", executor="serial")


def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    S.run(small_sweep(activation=["tanh", "relu"], depth=[2, 3]), tmp_path,
          executor="serial", plots=False, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("vgcore sweep: 4 runs to do (0 done already) on serial x1")
    assert len(err) == 5 and err[-1].startswith("[4/4 ")
    assert "depth=3 activation=relu: final loss" in err[-1]


# ------------------------------------------------------------------------------ executors
def test_local_processes_give_exactly_the_serial_results(tmp_path):
    s = small_sweep()
    serial = S.run(s, tmp_path / "serial", executor="serial", plots=False)
    procs = S.run(s, tmp_path / "procs", executor="processes", workers=2, plots=False)
    assert procs.executed == 8 and procs.workers == 2
    same_rows(serial.rows, procs.rows)
    assert all(r["worker"] != f"{os.uname().nodename}:{os.getpid()}" for r in procs.rows)


def test_a_worker_process_that_dies_fails_its_runs_and_the_sweep_goes_on():
    """A run that kills its worker process (os._exit in the spawned worker) is recorded as
    failed, as is any run in flight beside it; a new pool runs the rest."""
    import _vgtest
    cfgs = [dict(c) for c in small_sweep(seed=[0, 1, 2, 3, 4]).configs]
    cfgs[1]["seed"] = 99                               # _vgtest.execute_or_crash: exit
    results = []
    executors._run_processes(cfgs, 1, 1, results.append, target=_vgtest.execute_or_crash)
    by_seed = {r["config"]["seed"]: r for r in results}
    assert sorted(by_seed) == [0, 2, 3, 4, 99]
    assert by_seed[99]["status"] == "failed"
    assert "a worker process died while this run was in flight" in by_seed[99]["error"]
    assert by_seed[0]["status"] == "ok"
    assert by_seed[4]["status"] == "ok" and by_seed[3]["status"] == "ok"


def test_dask_local_cluster_gives_exactly_the_serial_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    s = small_sweep()
    serial = S.run(s, tmp_path / "serial", executor="serial", plots=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        viaclient = S.run(s, tmp_path / "client", client=client, plots=False)
        assert viaclient.executor == "dask" and viaclient.workers == 2
        half = small_sweep(activation=["tanh"], depth=[2, 4], seed=[0, 1])
        viaaddr = S.run(half, tmp_path / "addr", scheduler=cluster.scheduler_address,
                        plots=False)
        assert client.status == "running"          # the user's client is left open
    same_rows(serial.rows, viaclient.rows)
    same_rows([r for r in serial.rows if r["activation"] == "tanh"], viaaddr.rows)
    assert all(r["worker"].split(":")[1] != str(os.getpid()) for r in viaclient.rows)


def test_dask_without_a_client_starts_and_stops_its_own_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    s = small_sweep(activation=["relu"], depth=[2, 3])
    serial = S.run(s, tmp_path / "serial", executor="serial", plots=False)
    own = S.run(s, tmp_path / "own", executor="dask", workers=1, plots=False)
    assert own.executor == "dask" and own.workers == 1
    same_rows(serial.rows, own.rows)
    with pytest.raises(ValueError):                     # no default client left behind
        distributed.get_client()


def test_dask_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    import socket
    with socket.socket() as sock:          # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot reach the Dask scheduler at "
                                              f"tcp://127.0.0.1:{port}"):
        S.run(small_sweep(depth=[2]), tmp_path, scheduler=f"tcp://127.0.0.1:{port}",
              plots=False, scheduler_timeout=2)


# ------------------------------------------------------------------------------ phase diagrams
def _row(act, depth, sw, seed, value, status="ok", **extra):
    r = {k: d for k, (d, _, _) in S.PARAMS.items()}
    r.update(run_id=f"{act}{depth}{sw}{seed}", status=status, activation=act, depth=depth,
             sigma_w2=sw, init="normal", seed=seed, sigma_w2_eff=sw, final_loss=value,
             grad_ratio_init=value, **extra)
    return r


def test_phase_grid_places_medians_marks_failures_and_draws_the_critical_line():
    rows = []
    for act in ("tanh", "relu"):
        for depth in (2, 8):
            for sw in (1.0, 2.0, 3.0):
                for seed in (0, 1, 2):
                    rows.append(_row(act, depth, sw, seed, depth * 10 + sw + seed / 10))
    rows[0] = dict(rows[0], status="diverged", final_loss=math.nan)     # tanh 2 1.0 seed 0
    rows[1] = dict(rows[1], status="failed", final_loss=math.nan, grad_ratio_init=math.nan)
    panels = S.phase_grid(rows, "final_loss")
    assert [p.title for p in panels] == ["activation=tanh", "activation=relu"]
    tanh = panels[0]
    np.testing.assert_array_equal(tanh.xs, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(tanh.ys, [2, 8])
    assert tanh.values[0, 0] == pytest.approx(21.2)             # only seed 2 is left
    assert tanh.values[1, 2] == pytest.approx(83.1)             # median of 83.0, 83.1, 83.2
    assert tanh.not_ok[0, 0] == 2 and tanh.not_ok.sum() == 2 and tanh.runs.sum() == 18
    assert tanh.critical_x == pytest.approx(1.0)                # tanh at sigma_b2 = 0
    assert panels[1].critical_x == pytest.approx(2.0)           # relu
    gx, gd = tanh.depth_scale
    assert gx[0] == 1.0 and gx[-1] == 3.0 and np.any(np.isfinite(gd))
    log = S.phase_grid(rows, "grad_ratio_init")[0]
    # the diverged run's first-step measurement counts, the failed run's does not
    assert log.values[0, 0] == pytest.approx(np.median(np.log10([21.0, 21.2])))
    rows[0]["grad_ratio_init"] = 1000.0
    assert S.phase_grid(rows, "grad_ratio_init")[0].values[0, 0] == \
        pytest.approx(np.median([3.0, math.log10(21.2)]))


def test_phase_grid_theory_lines_follow_sigma_b2_and_skip_normalised_networks():
    rows = [_row("tanh", d, sw, 0, 1.0, sigma_b2=0.05) for d in (2, 4) for sw in (1.0, 2.5)]
    p = S.phase_grid(rows)[0]
    assert p.critical_x == pytest.approx(vg.theory.critical_sigma_w2("tanh", 0.05))
    rows = [dict(r, norm="batch") for r in rows]
    p = S.phase_grid(rows)[0]
    assert p.critical_x is None and p.depth_scale is None


def test_phase_grid_refuses_unknown_metric_and_axis():
    with pytest.raises(ValueError, match="metric"):
        S.phase_grid([], "accuracy")
    with pytest.raises(ValueError, match="x: expected"):
        S.phase_grid([], "final_loss", x="colour")


def test_a_sweep_over_depth_and_sigma_w2_draws_its_phase_diagrams(tmp_path):
    pytest.importorskip("matplotlib")
    s = S.Sweep(base=dict(SMALL), grid={"activation": ["tanh"], "depth": [2, 3],
                                        "sigma_w2": [0.8, 1.6]})
    r = S.run(s, tmp_path, executor="serial")
    names = sorted(os.path.basename(f) for f in r.files)
    assert names == ["phase_final_loss.png", "phase_grad_ratio_init.png", "results.csv",
                     "results.parquet"] or "results.parquet" not in names
    png = (tmp_path / "phase_final_loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    panels = S.plot_phase_diagram(r, tmp_path / "acc.png", metric="test_accuracy")
    assert len(panels) == 1 and (tmp_path / "acc.png").exists()


# ------------------------------------------------------------------------------ command line
def write_config(path, extra=""):
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in SMALL.items())
                    + "\n[grid]\ndepth = [2, 3]\nsigma_w2 = [0.9, 1.8]\n" + extra)
    return path


def test_cli_runs_a_sweep_and_summarises(tmp_path, capsys):
    cfg = write_config(tmp_path / "grid.toml")
    out = tmp_path / "res"
    assert main(["sweep", str(cfg), "--out", str(out), "--executor", "serial"]) == 0
    text = capsys.readouterr().out
    assert "grid: 4/4 runs done (4 ok, 0 diverged, 0 failed); 4 run now" in text
    assert "phase_final_loss.png" in text
    assert (out / "results.csv").exists() and len(os.listdir(out / "histories")) == 4
    assert main(["sweep", str(cfg), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["executed"] == 0 and summary["skipped"] == 4 and summary["ok"] == 4


def test_cli_dry_run_lists_runs_and_their_state(tmp_path, capsys):
    cfg = write_config(tmp_path / "grid.toml")
    assert main(["sweep", str(cfg), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "4 runs; varying: depth, sigma_w2" in out and out.count("to do") == 4
    assert "0 of 4 done" in out and not (tmp_path / "o").exists()


def test_cli_example_and_params(capsys):
    assert main(["sweep", "--example"]) == 0
    assert "[grid]" in capsys.readouterr().out
    assert main(["sweep", "--params"]) == 0
    out = capsys.readouterr().out
    assert all(p in out for p in S.PARAMS) and "final_loss" in out


@pytest.mark.parametrize("args, words", [
    ([], "expected a sweep file"),
    (["missing.toml"], "no such sweep file: missing.toml"),
    (["BAD"], "unknown parameter 'colour'"),
    (["GOOD", "--scheduler", "tcp://x:1", "--executor", "serial"], "--scheduler needs the dask"),
    (["GOOD", "--rerun", "--retry-failed"], "--rerun runs everything again"),
])
def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD").write_text('colour = "red"\n')
    write_config(tmp_path / "GOOD")
    assert main(["sweep"] + args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and err.startswith("vgcore sweep: error:")


def test_cli_workers_must_be_positive(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "x.toml", "--workers", "0"])
    assert e.value.code == 2


def _wait_for_lines(path, n, proc, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_cli_interrupted_by_ctrl_c_continues_when_run_again(tmp_path, executor):
    cfg = tmp_path / "long.toml"
    settings = {**SMALL, "steps": 1500}
    cfg.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
                   + "\n[grid]\nseed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n")
    out = tmp_path / "res"
    cmd = vgcore_command("sweep", cfg, "--out", out, "--executor", executor, "--workers", "2",
                         "--no-plots")
    if executor == "serial":
        cmd.remove("--workers")
        cmd.remove("2")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert _wait_for_lines(out / "results.jsonl", 2, proc), proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = len((out / "results.jsonl").read_text().splitlines())
    if proc.returncode == 0:                 # it finished before the signal arrived
        assert done == 12
        return
    assert proc.returncode == 130, stderr
    assert "interrupted;" in stderr and "run the same command again to continue" in stderr
    assert 2 <= done < 12
    again = subprocess.run(cmd + ["--json"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] == done and summary["executed"] == 12 - done
    assert summary["ok"] == 12
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12 and len({json.loads(x)["run_id"] for x in lines}) == 12
    with gzip.open(out / "histories" / f"{json.loads(lines[0])['run_id']}.json.gz") as f:
        assert len(json.load(f)["loss"]) == 1500


# ------------------------------------------------------------------ durability
def test_every_journal_line_and_history_is_fsynced_before_the_next_run(tmp_path, monkeypatch):
    """A line in results.jsonl means the run is on disk: its history file was written and
    fsynced (and renamed into place) before the line, and the line is fsynced before the next
    run starts."""
    events = []
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        journal = tmp_path / "results.jsonl"
        lines = len(journal.read_bytes().splitlines()) if journal.exists() else 0
        events.append((os.path.basename(path), lines))
        return real_fsync(fd)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd (Linux)")
    monkeypatch.setattr(os, "fsync", fsync)
    r = S.run(small_sweep(depth=[2], seed=[0, 1, 2]), tmp_path, executor="serial",
              plots=False)
    assert r.count("ok") == 3
    journal = [e for e in events if e[0] == "results.jsonl"]
    assert [n for _, n in journal] == [1, 2, 3]              # one fsync per line, as written
    for row in r.rows:                                         # each history before its line
        name = f"{row['run_id']}.json.gz"
        i = next(k for k, e in enumerate(events) if e[0].startswith(f".{name}."))
        line = next(k for k, e in enumerate(events) if e[0] == "results.jsonl"
                    and e[1] == r.rows.index(row) + 1)
        assert i < line, events
    # the folder is fsynced after each rename (atomic_write), so the new name is durable too
    assert sum(1 for e in events if e[0] == "histories") == 3


def test_a_sweep_killed_with_sigkill_resumes_without_losing_or_repeating_a_run(tmp_path):
    """SIGKILL gives no chance to clean up: whatever the journal holds must be complete runs
    (a torn last line is cut and run again), and the second call runs exactly the others."""
    cfg = tmp_path / "kill.toml"
    settings = {**SMALL, "steps": 800}
    cfg.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
                   + "\n[grid]\nseed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n")
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "vgcore", "sweep", str(cfg), "--out", str(out),
           "--executor", "serial", "--no-plots"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert _wait_for_lines(out / "results.jsonl", 3, proc), proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    raw = (out / "results.jsonl").read_bytes()
    complete = raw.count(b"\n")
    before = [json.loads(x)["run_id"] for x in raw.split(b"\n")[:complete]]
    assert 3 <= len(before) <= 10 and len(set(before)) == len(before)
    for rid in before:                                         # a complete line: its history
        assert (out / "histories" / f"{rid}.json.gz").stat().st_size > 0
    again = subprocess.run(cmd + ["--json"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] == len(before)
    assert summary["executed"] == 10 - len(before) and summary["ok"] == 10
    lines = (out / "results.jsonl").read_text().splitlines()
    ids = [json.loads(x)["run_id"] for x in lines]
    assert len(ids) == 10 and len(set(ids)) == 10 and ids[:len(before)] == before
    assert not list((out / "histories").glob(".*.tmp"))       # no temporary file left behind


def test_to_pandas_has_every_column_in_order_and_the_rows(tmp_path):
    pd = pytest.importorskip("pandas")
    s = S.Sweep(base=dict(SMALL), runs=[{"depth": 2}, {"init": "he_normal", "sigma_w2": 2.0}])
    r = S.run(s, tmp_path, executor="serial", plots=False)
    df = r.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(S.COLUMNS) and len(df) == 2
    assert list(df["status"]) == ["ok", "failed"]
    assert list(df["run_id"]) == [row["run_id"] for row in r.rows]
    assert df.loc[0, "final_loss"] == r.rows[0]["final_loss"]
    assert math.isnan(df.loc[1, "final_loss"]) and "sigma_w" in df.loc[1, "error"]


# ------------------------------------------------------------------------------ report.html
REPORT_RUNS = '[[runs]]\nlr = 0.05\n[[runs]]\nlr = 100.0\nactivation = "relu"\n' \
              '[[runs]]\ninit = "he_normal"\n'


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    text = "\n".join(f"{k} = {json.dumps(v)}" for k, v in SMALL.items() if k != "lr") + \
        "\n[grid]\ndepth = [2, 3]\nsigma_w2 = [0.9, 1.8]\n" + REPORT_RUNS
    cfg = tmp / "grid.toml"
    cfg.write_text(text)
    out = tmp / "res"
    rc = main(["sweep", str(cfg), "--out", str(out), "--executor", "serial", "--quiet"])
    assert rc == 0
    return cfg, out, (out / "report.html").read_text(encoding="utf-8")


def test_cli_sweep_writes_a_report_page_with_verdict_and_record(swept, capsys):
    import hashlib
    import re
    cfg, out, page = swept
    rows = S.load(out).rows
    n = {k: sum(r["status"] == k for r in rows) for k in ("ok", "diverged", "failed")}
    assert n["failed"] == 4 and n["diverged"] >= 1 and n["ok"] >= 4      # he_normal, lr 100
    body = page[page.index("<body>"):]
    assert re.findall(r"<(h1|p|nav|section)\b[^>]*>", body)[:2] == ["h1", "p"]
    assert (f'<p class="verdict" id="verdict">12 runs ({n["ok"]} ok, {n["diverged"]} diverged, '
            f'4 failed)') in body
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # self-contained: no external reference, the plots embedded, the script inline
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<script>" in page and "<script src" not in page
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    for h in re.findall(r'\bhref="([^"]*)"', page):
        assert h[1:] in ids if h.startswith("#") else (out / h).exists(), h
    for ident in ("phase", "results", "failures", "record", "files"):
        assert f'<a href="#{ident}">' in page and f'<section id="{ident}">' in page
    # the run record: the command and the config file it read, with its SHA-256
    record = page[page.index('<section id="record">'):page.index('<section id="files">')]
    assert f"vgcore sweep {cfg} --out {out} --executor serial --quiet" in record
    assert hashlib.sha256(cfg.read_bytes()).hexdigest() in record
    assert "[[runs]]" in record and vg.__version__ in record and "BLAS" in record
    assert "serial, 1 worker, 1 thread per run" in record


def test_sweep_report_table_sorts_and_lists_the_failures_with_their_errors(swept):
    import html
    import re
    _, out, page = swept
    rows = S.load(out).rows
    table = page[page.index('<table class="cards sortable">'):]
    table = table[:table.index("</table>")]
    heads = re.findall(r'<th scope="col"><button type="button">([^<]*)</button></th>', table)
    assert heads[:4] == ["run_id", "status", "depth", "activation"] and "final loss" in heads
    body_rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table[table.index("<tbody>"):])
    assert len(body_rows) == len(rows)
    col = heads.index("final loss")
    for r, tr in zip(rows, body_rows):
        assert r["run_id"] in tr
        cell = re.findall(r'<td ([^>]*)>', tr)[col]
        v = re.search(r'data-v="([^"]*)"', cell).group(1)
        # the sort key is the exact number; runs without one sort last
        assert (float(v) == r["final_loss"]) if r["status"] == "ok" else v == ""
    failures = page[page.index('<section id="failures">'):page.index('<section id="record">')]
    error = next(r["error"] for r in rows if r["status"] == "failed")
    assert "4 failed runs" in failures and html.escape(error) in failures
    n = sum(r["status"] == "diverged" for r in rows)
    assert f"{n} diverged run{'s' if n > 1 else ''}</h3>" in failures
    for r in rows:
        if r["status"] != "ok":
            assert r["run_id"] in failures


def test_sweep_report_says_when_runs_are_left_out(swept, monkeypatch):
    from vgcore.experiments.sweep import page as sweep_page
    _, out, _ = swept
    monkeypatch.setattr(sweep_page, "MAX_ROWS", 5)
    monkeypatch.setattr(sweep_page, "MAX_FAILURES", 3)
    result = S.load(out)
    page = S.report_html(result)
    assert "5 of 12 runs shown (the first, in the sweep&#x27;s order); results.csv has them " \
           "all." in page
    bad = sum(r["status"] != "ok" for r in result.rows)
    assert f"3 of {bad} runs listed; results.csv lists every run" in page
    with pytest.raises(TypeError, match="result: expected a vgcore.sweep.SweepResult"):
        S.report_html(result.rows)

"""vgcore.recorder.Recorder: schedules, bounded memory by thinning, epoch dead units, exports."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure.flow import FIELDS
from vgcore.measure.recorder import SCALARS, Recorder, log_schedule

SIZES = [8, 12, 12, 12, 3]


def _net(seed=0, activation="tanh", init="glorot_normal", sizes=SIZES):
    return vg.MLP(list(sizes), activation=activation, init=init, dtype="float64", seed=seed)


def _batch(seed=0, n=32, d=SIZES[0], classes=SIZES[-1]):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


@pytest.fixture(scope="module")
def flow():
    """One real GradientFlow, reused where only the schedule or storage matters."""
    net = _net()
    X, y = _batch()
    net.train_step(X, y)
    return net.gradient_flow()


def _steps_recorded(rec, steps, flow):
    return [s for s in steps if rec.record(flow, step=s)]


# ------------------------------------------------------------------------ schedules
def test_every_schedule_records_the_multiples_of_every(flow):
    rec = Recorder("every", every=3)
    assert _steps_recorded(rec, range(20), flow) == [0, 3, 6, 9, 12, 15, 18]
    np.testing.assert_array_equal(rec.steps, [0, 3, 6, 9, 12, 15, 18])


def test_log_schedule_records_about_ten_steps_per_decade(flow):
    rec = Recorder("log")
    got = _steps_recorded(rec, range(1001), flow)
    assert got[:19] == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100]
    assert got == log_schedule(1001).tolist()
    for lo in (1, 10, 100):                 # 10 per decade from 10 on
        n = sum(lo <= s < 10 * lo for s in got)
        assert (lo == 1 and 7 <= n <= 10) or n == 10, (lo, n)
    assert got[-1] == 1000


def test_log_schedule_is_deterministic_far_out():
    a, b = log_schedule(10**7), log_schedule(10**7)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) > 0)
    # 0; 1, 2, 3, 4, 5, 6, 8 (the distinct round(10^(j/10)), j < 10); then 10 a decade
    assert a.size == 1 + 7 + 10 * 6


def test_explicit_schedule_records_exactly_the_listed_steps(flow):
    rec = Recorder([2, 5, 6, 40])
    assert _steps_recorded(rec, range(50), flow) == [2, 5, 6, 40]


def test_wants_agrees_with_record_and_reads_nothing(flow):
    rec = Recorder("every", every=4, max_records=4)
    for s in range(60):
        w = rec.wants(s)
        assert rec.record(flow, step=s) is w, s


def test_record_does_not_read_the_network_when_the_step_is_not_due():
    net = _net()
    X, y = _batch()
    net.measure = False                      # gradient_flow() would raise
    net.train_step(X, y)
    rec = Recorder("every", every=10)
    assert rec.wants(3) is False
    assert rec.record(net, step=3) is False
    with pytest.raises(RuntimeError, match="measurements are off"):
        rec.record(net, step=10)


def test_default_step_counter_counts_calls_and_continues_after_an_explicit_step(flow):
    rec = Recorder("every", every=1)
    rec.record(flow)
    rec.record(flow)
    rec.record(flow, step=10)
    rec.record(flow)
    np.testing.assert_array_equal(rec.steps, [0, 1, 10, 11])


def test_steps_must_increase_from_call_to_call(flow):
    rec = Recorder()
    rec.record(flow, step=5)
    with pytest.raises(ValueError, match=r"step: expected an integer >= 6.*got 5"):
        rec.record(flow, step=5)
    with pytest.raises(ValueError, match=r"step: expected an integer >= 6.*got 2"):
        rec.wants(2)


# ------------------------------------------------------------------------ thinning
def test_thinning_keeps_every_other_record_then_records_half_as_often(flow):
    rec = Recorder(max_records=8)
    _steps_recorded(rec, range(8), flow)
    assert rec.steps.tolist() == list(range(8)) and rec.stride == 1
    assert rec.record(flow, step=8)           # full: thin to 0,2,4,6, then 8 is due
    assert rec.steps.tolist() == [0, 2, 4, 6, 8] and rec.stride == 2
    assert not rec.record(flow, step=9)
    assert rec.record(flow, step=10)
    assert rec.steps.tolist() == [0, 2, 4, 6, 8, 10]


def test_thinning_keeps_the_bound_the_order_and_spans_the_run(flow):
    rec = Recorder(max_records=16)
    n_steps = 5000
    for s in range(n_steps):
        rec.record(flow, step=s)
        assert len(rec) <= 16
    steps = rec.steps
    assert 8 <= len(steps) <= 16
    assert steps[0] == 0
    assert np.all(np.diff(steps) == rec.stride)         # evenly spread, in order
    assert steps[-1] > n_steps - 1 - rec.stride          # reaches the end of the run
    for name in FIELDS:                                  # storage moved with the steps
        assert rec.history(name).shape == (len(steps), flow.n_layers)


def test_thinning_spans_the_run_when_only_odd_steps_are_passed(flow):
    rec = Recorder(max_records=10)
    for s in range(1, 4001, 2):
        rec.record(flow, step=s)
    steps = rec.steps
    assert 5 <= len(steps) <= 10
    assert steps[0] == 1 and steps[-1] > 4000 - 2 * 2 * rec.stride
    assert np.all(np.diff(steps) > 0)


def test_thinning_moves_each_row_with_its_step():
    rec = Recorder(max_records=4)
    net = _net()
    flows = {}
    for s in range(9):
        X, y = _batch(seed=s)
        net.train_step(X, y)
        flows[s] = net.gradient_flow()
        rec.record(net, step=s)
    arr = rec.to_arrays()
    assert len(arr["step"]) <= 4
    for i, s in enumerate(arr["step"]):
        np.testing.assert_array_equal(arr["grad_norm"][i], flows[int(s)].grad_norm)


# ------------------------------------------------------------------------ values
def test_recorded_values_equal_gradient_flow_at_the_recorded_steps():
    net = _net(activation="relu", init="he_normal")
    opt = vg.optim.SGD(net, lr=0.05)
    rec = Recorder([1, 3, 4])
    kept = {}
    for s in range(6):
        X, y = _batch(seed=s)
        net.train_step(X, y, "cross_entropy", opt)
        if rec.record(net):
            kept[s] = net.gradient_flow()
    arr = rec.to_arrays()
    assert arr["step"].tolist() == [1, 3, 4] == sorted(kept)
    for i, s in enumerate(arr["step"]):
        f = kept[int(s)]
        for name in FIELDS:
            np.testing.assert_array_equal(arr[name][i], getattr(f, name), err_msg=name)
        assert arr["grad_ratio"][i] == f.grad_ratio
        assert arr["delta_ratio"][i] == f.delta_ratio
        assert arr["nonfinite_forward_layer"][i] == 0 == arr["nonfinite_backward_layer"][i]
    # update_to_weight of a step with an SGD update after its backward is finite
    assert np.all(np.isfinite(arr["update_to_weight"]))


def test_nonfinite_layers_are_recorded_as_1_based_layer_numbers():
    net = _net(activation="relu", init="he_normal")
    net.weights[2][0, 0] = np.nan
    out = net.forward(_batch()[0])            # NaN logits: the loss would refuse them
    net.backward(np.full(out.shape, 0.01, out.dtype))
    flow = net.gradient_flow()
    rec = Recorder()
    rec.record(net)
    assert rec.history("nonfinite_forward_layer")[0] == flow.nonfinite_forward_layer == 3
    assert rec.history("nonfinite_backward_layer")[0] == flow.nonfinite_backward_layer


def test_record_copies_the_measurements(flow):
    rec = Recorder()
    f = dataclasses.replace(flow, grad_norm=flow.grad_norm.copy())
    rec.record(f)
    f.grad_norm[:] = -1
    np.testing.assert_array_equal(rec.history("grad_norm")[0], flow.grad_norm)


# ------------------------------------------------------------------------ epochs
def test_epoch_dead_fraction_of_a_layer_with_huge_negative_biases_is_one():
    net = vg.MLP([8, 16, 16, 16, 16, 3], activation="relu", init="he_normal", dtype="float64",
                 seed=0)
    rec = Recorder("every", every=1000)       # rows are not due: epochs still see every step
    for epoch in range(2):
        if epoch == 1:
            net.biases[3][...] = -10.0        # hidden layer 4: pre-activations < 0 always
        rec.start_epoch()
        for s in range(4):
            net.train_step(*_batch(seed=10 * epoch + s))
            rec.record(net)
        fr = rec.end_epoch()
    edf = rec.epoch_dead_fraction
    assert edf.shape == (2, 4)
    np.testing.assert_array_equal(edf[-1], fr)
    assert edf[0].max() < 0.2, edf[0]                   # healthy
    assert edf[1, 3] == 1.0                             # all dead
    assert edf[1, :3].max() < 0.2, edf[1]                # layers below stay healthy
    assert rec.epoch_steps.tolist() == [[0, 3], [4, 7]]


def test_epoch_dead_units_are_those_dead_on_every_step_of_the_epoch(flow):
    masks = [np.zeros(12, bool) for _ in range(flow.n_layers - 1)]
    a = [m.copy() for m in masks]
    b = [m.copy() for m in masks]
    a[0][:6] = True          # layer 1: units 0-5 dead in batch a, 3-8 in batch b: 3-5 in both
    b[0][3:9] = True
    a[2][:] = True           # layer 3: all dead in a only
    rec = Recorder()
    rec.start_epoch()
    rec.record(dataclasses.replace(flow, dead_unit_mask=np.concatenate(a)))
    rec.record(dataclasses.replace(flow, dead_unit_mask=np.concatenate(b)))
    fr = rec.end_epoch()
    np.testing.assert_allclose(fr, [3 / 12, 0.0, 0.0])


def test_wants_is_true_at_every_step_while_an_epoch_is_open(flow):
    rec = Recorder("every", every=100)
    assert not rec.wants(1)
    rec.record(flow, step=0)
    rec.start_epoch()
    assert rec.wants(1)
    assert rec.record(flow, step=1) is False            # no row, but the epoch saw it
    rec.end_epoch()
    assert rec.epoch_steps.tolist() == [[1, 1]]
    assert not rec.wants(2)


def test_epoch_calls_in_the_wrong_order_raise(flow):
    rec = Recorder()
    with pytest.raises(RuntimeError, match="end_epoch: no epoch is open"):
        rec.end_epoch()
    rec.start_epoch()
    with pytest.raises(RuntimeError, match="start_epoch: an epoch is already open"):
        rec.start_epoch()
    with pytest.raises(RuntimeError, match="record\\(net\\) was not called"):
        rec.end_epoch()


# ------------------------------------------------------------------------ exports
@pytest.fixture(scope="module")
def recorded():
    """A recorder over a few training steps, with a NaN in one record and two epochs."""
    net = _net(activation="relu", init="he_normal")
    opt = vg.optim.SGD(net, lr=0.05)
    rec = Recorder("every", every=2)
    for epoch in range(2):
        rec.start_epoch()
        for s in range(4):
            step = 4 * epoch + s
            net.train_step(*_batch(seed=step), "cross_entropy", opt)
            if step in (2, 4):              # a NaN and an Inf to round-trip, in rows 1 and 2
                flow = net.gradient_flow()
                name, layer, value = ("gsnr", 0, np.nan) if step == 2 else ("gain", 1, np.inf)
                bad = getattr(flow, name).copy()
                bad[layer] = value
                rec.record(dataclasses.replace(flow, **{name: bad}))
            else:
                rec.record(net)
        rec.end_epoch()
    assert np.isnan(rec.history("gsnr")[1, 0]) and np.isinf(rec.history("gain")[2, 1])
    return rec


def test_to_arrays_has_steps_fields_and_scalars_with_documented_shapes(recorded):
    arr = recorded.to_arrays()
    n, L = len(recorded), recorded.n_layers
    assert set(arr) == {"step", *FIELDS, *SCALARS}
    assert arr["step"].shape == (n,) and arr["step"].dtype == np.int64
    for name in FIELDS:
        assert arr[name].shape == (n, L) and arr[name].dtype == np.float64, name
    assert arr["grad_ratio"].dtype == np.float64
    assert arr["nonfinite_forward_layer"].dtype == np.int64
    arr["grad_norm"][:] = 0                         # a copy
    assert np.all(recorded.history("grad_norm") > 0)


def test_to_dict_is_tidy_one_row_per_step_and_layer(recorded):
    d = recorded.to_dict()
    n, L = len(recorded), recorded.n_layers
    assert list(d)[:4] == ["step", "layer", "width", "activation"]
    assert {len(v) for v in d.values()} == {n * L}
    assert all(np.ndim(v) == 1 for v in d.values())
    assert d["layer"][:L].tolist() == list(range(1, L + 1))
    assert d["step"].tolist() == np.repeat(recorded.steps, L).tolist()
    np.testing.assert_array_equal(d["grad_norm"].reshape(n, L), recorded.history("grad_norm"))
    np.testing.assert_array_equal(d["grad_ratio"][::L], recorded.history("grad_ratio"))


def test_to_dict_makes_a_pandas_dataframe(recorded):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(recorded.to_dict())
    assert df.shape[0] == len(recorded) * recorded.n_layers


def test_to_csv_writes_a_header_and_one_row_per_step_and_layer(recorded, tmp_path):
    path = tmp_path / "flow.csv"
    recorded.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    d = recorded.to_dict()
    assert rows[0] == list(d)
    assert len(rows) == 1 + len(recorded) * recorded.n_layers
    col = rows[0].index("gsnr")
    got = np.array([float(r[col]) for r in rows[1:]])
    np.testing.assert_array_equal(got, d["gsnr"])        # exact, NaN included
    assert math.isnan(got[1 * recorded.n_layers])
    assert [os.path.basename(p) for p in os.listdir(tmp_path)] == ["flow.csv"]


def test_to_json_writes_strict_json_in_the_documented_format(recorded, tmp_path):
    path = tmp_path / "flow.json"
    recorded.to_json(path)

    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    obj = json.loads(path.read_text(), parse_constant=no_constants)
    assert obj["format"] == "vgcore.recorder" and obj["version"] == 2
    assert obj["sizes"] == list(SIZES)
    assert obj["activations"] == ["relu"] * 3 + ["identity"]
    assert obj["steps"] == recorded.steps.tolist()
    assert set(obj["fields"]) == set(FIELDS)
    assert len(obj["fields"]["grad_norm"]) == len(recorded)
    assert len(obj["fields"]["grad_norm"][0]) == recorded.n_layers
    assert obj["fields"]["gsnr"][1][0] is None and obj["fields"]["gain"][2][1] is None


def test_json_round_trip_is_equal_including_nan(recorded, tmp_path):
    path = tmp_path / "flow.json"
    recorded.to_json(path)
    back = Recorder.from_json(path)
    a, b = recorded.to_arrays(), back.to_arrays()
    assert set(a) == set(b)
    inf = np.isinf(a["gain"])
    assert inf.sum() == 1                         # Inf comes back as NaN (JSON null)
    a["gain"][inf] = np.nan
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    np.testing.assert_array_equal(back.epoch_dead_fraction, recorded.epoch_dead_fraction)
    np.testing.assert_array_equal(back.epoch_steps, recorded.epoch_steps)
    assert back.sizes == recorded.sizes and back.activations == recorded.activations
    assert back.init == recorded.init == {"name": "he_normal", "sigma_w": None, "sigma_b": None}
    assert (back.schedule, back.every, back.max_records, back.stride) == \
        (recorded.schedule, recorded.every, recorded.max_records, recorded.stride)


@pytest.mark.parametrize("kind", [np.int64, np.float64])
def test_a_flow_whose_sizes_are_numpy_numbers_is_recorded_with_int_sizes(flow, kind, tmp_path):
    """A flow built by hand may carry NumPy numbers as sizes: the recorder keeps Python ints,
    so its JSON is written and read back (a network's own tuple of ints is kept as it is)."""
    odd = dataclasses.replace(flow, sizes=tuple(np.array(flow.sizes, kind)))
    rec = Recorder()
    assert rec.record(odd) and rec.record(odd)
    assert rec.sizes == flow.sizes and all(type(s) is int for s in rec.sizes)
    rec.to_json(tmp_path / "flow.json")
    back = Recorder.from_json(tmp_path / "flow.json")
    assert back.sizes == flow.sizes and len(back) == 2


def test_recorder_read_from_json_goes_on_recording_like_the_original(flow, tmp_path):
    a = Recorder(max_records=6)
    _steps_recorded(a, range(9), flow)
    a.to_json(tmp_path / "a.json")
    b = Recorder.from_json(tmp_path / "a.json")
    for s in range(9, 40):
        assert a.record(flow) == b.record(flow), s
    np.testing.assert_array_equal(a.steps, b.steps)


def test_empty_recorder_round_trips_through_json(tmp_path):
    Recorder("log").to_json(tmp_path / "e.json")
    back = Recorder.from_json(tmp_path / "e.json")
    assert len(back) == 0 and back.schedule == "log" and back.sizes is None


def _edit(text, change):
    obj = json.loads(text)
    change(obj)
    return json.dumps(obj)


@pytest.mark.parametrize("damage, match", [
    (lambda t: t[: len(t) // 2], "corrupt or truncated JSON"),
    (lambda t: "\x00garbage", "corrupt or truncated JSON"),
    (lambda t: "[1, 2, 3]", "expected a JSON object"),
    (lambda t: t.replace('"vgcore.recorder"', '"something.else"'), "format"),
    (lambda t: t.replace('"version":2', '"version":3'), "version"),
    (lambda t: _edit(t, lambda o: o["fields"].pop("underflow_fraction")),
     "missing field 'underflow_fraction'"),
    (lambda t: _edit(t, lambda o: o["fields"].update(grad_norm=[[1.0]])),
     r"fields\.grad_norm.*shape \(4, 4\), got \(1, 1\)"),
    (lambda t: _edit(t, lambda o: o["fields"].pop("gsnr")), "missing field 'gsnr'"),
    (lambda t: _edit(t, lambda o: o.update(steps=o["steps"][::-1])), "increasing"),
])
def test_from_json_rejects_bad_files_naming_the_file(recorded, tmp_path, damage, match):
    path = tmp_path / "bad.json"
    recorded.to_json(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=match) as e:
        Recorder.from_json(path)
    assert "bad.json" in str(e.value) and str(e.value).startswith("path:")


def test_a_version_1_file_reads_with_underflow_fraction_not_measured(recorded, tmp_path):
    """Version 1 had no underflow_fraction: such a file still reads, that field NaN, the
    others exact."""
    obj = recorded.to_json_object()
    obj["version"] = 1
    del obj["fields"]["underflow_fraction"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(obj))
    back = Recorder.from_json(path)
    assert back.history("underflow_fraction").shape == (len(recorded), recorded.n_layers)
    assert np.all(np.isnan(back.history("underflow_fraction")))
    np.testing.assert_array_equal(back.history("grad_norm"), recorded.history("grad_norm"))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(recorded, tmp_path,
                                                                 monkeypatch):
    path = tmp_path / "flow.json"
    recorded.to_json(path)
    before = path.read_bytes()

    def broken_dump(obj, f, **kw):
        f.write('{"format": "vgcore.rec')
        raise OSError("disk full")

    monkeypatch.setattr("vgcore.measure.recorder_io.json.dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        recorded.to_json(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["flow.json"]


# ------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(schedule="linear"), ValueError, r"schedule: expected 'every', 'log'.*got 'linear'"),
    (dict(schedule=[3, 1]), ValueError, r"schedule: expected strictly increasing.*1 after 3"),
    (dict(schedule=[-1, 2]), ValueError, r"schedule: expected non-negative.*got -1"),
    (dict(schedule=[1.5]), TypeError, r"schedule: expected integer step numbers.*float"),
    (dict(schedule=[]), ValueError, r"schedule: expected at least one step.*empty"),
    (dict(schedule=5), TypeError, r"schedule: expected .*got int"),
    (dict(every=0), ValueError, r"every: expected an integer >= 1, got 0"),
    (dict(every=2.0), TypeError, r"every: expected an integer, got float"),
    (dict(schedule="log", every=3), ValueError, r"every: only applies to schedule='every'.*3"),
    (dict(max_records=1), ValueError, r"max_records: expected an integer >= 2, got 1"),
    (dict(max_records=True), TypeError, r"max_records: expected an integer, got bool"),
])
def test_bad_constructor_arguments_raise_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Recorder(**kwargs)


def test_bad_record_arguments_raise_naming_the_argument(flow):
    rec = Recorder()
    with pytest.raises(TypeError, match=r"net: expected a vgcore.MLP or a .*GradientFlow, got "
                                        r"ndarray"):
        rec.record(np.zeros(3))
    with pytest.raises(TypeError, match=r"step: expected an integer, got float"):
        rec.record(flow, step=1.0)
    with pytest.raises(ValueError, match=r"step: expected an integer >= 0, got -1"):
        rec.record(flow, step=-1)
    rec.record(flow)
    other = _net(sizes=[8, 12, 3])
    other.train_step(*_batch())
    with pytest.raises(ValueError, match=r"net: expected a network with sizes \[8, 12, 12, 12, "
                                         r"3\].*got sizes \[8, 12, 3\]"):
        rec.record(other)
    with pytest.raises(ValueError, match=r"name: expected 'step', one of FIELDS.*got 'bogus'"):
        rec.history("bogus")
    with pytest.raises(TypeError, match=r"path: expected a file path.*got int"):
        rec.to_csv(3)
    with pytest.raises(TypeError, match=r"path: expected a file path.*got NoneType"):
        Recorder.from_json(None)


def test_json_object_round_trip_is_what_the_file_holds(tmp_path):
    """to_json_object / from_json_object (sweep histories and compare's measurements embed the
    object) are the file's content, and read back into an identical recorder."""
    net = vg.MLP([4, 6, 6, 3], activation="relu", seed=0)
    rec = Recorder(schedule="log", max_records=8)
    rng = np.random.default_rng(0)
    rec.start_epoch()
    for step in range(20):
        net.train_step(rng.standard_normal((5, 4)).astype(np.float32), np.arange(5) % 3,
                       "cross_entropy", vg.optim.SGD(net, lr=0.1))
        rec.record(net, step)
    rec.end_epoch()
    obj = rec.to_json_object()
    rec.to_json(tmp_path / "r.json")
    with open(tmp_path / "r.json", encoding="utf-8") as f:
        assert json.load(f) == obj
    back = Recorder.from_json_object(obj, "test")
    for name, a in rec.to_arrays().items():
        np.testing.assert_array_equal(back.history(name), a)
    assert back.to_json_object() == obj
    bad = dict(obj, stride=3)
    with pytest.raises(ValueError, match="'test' is not a valid vgcore.recorder JSON file"):
        Recorder.from_json_object(bad, "test")

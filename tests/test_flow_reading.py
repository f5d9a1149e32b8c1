"""Reading the measurements is cheap and safe: net.gradient_flow() is a snapshot (later steps do
not change it) whose fields are derived when first read, and a Recorder stores raw sums and
derives its rows later, to exactly the values the flow gives."""
import dataclasses

import sys

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure.flow import FIELDS

SCALARS = ("grad_ratio", "delta_ratio", "nonfinite_forward_layer", "nonfinite_backward_layer")
EVERYTHING = FIELDS + ("per_sample_grad_norm", "dead_unit_mask") + SCALARS
OPTIONS = {"plain": {}, "options": dict(norm="layer", residual=0.5, dropout=0.1)}


def _net(dtype="float32", **options):
    return vg.MLP([7, 11, 11, 11, 4], activation="tanh", init="glorot_normal", dtype=dtype,
                  seed=3, sigma_b=0.2, **options)


def _data(seed, batch, dtype="float32"):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 7)).astype(dtype), rng.integers(0, 4, batch)


def _read_all(flow):
    return {name: np.array(getattr(flow, name), dtype=object if name.startswith("nonfinite")
                           else None) for name in EVERYTHING}


def _assert_same(a, b):
    for name in EVERYTHING:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_a_flow_taken_at_one_step_does_not_change_when_later_steps_run(kind):
    twin_a, twin_b = _net(**OPTIONS[kind]), _net(**OPTIONS[kind])
    opt_a, opt_b = vg.optim.SGD(twin_a, lr=0.1), vg.optim.SGD(twin_b, lr=0.1)
    X, y = _data(0, 16)
    twin_a.train_step(X, y, "cross_entropy", opt_a)
    twin_b.train_step(X, y, "cross_entropy", opt_b)
    kept = twin_a.gradient_flow()                       # nothing read yet
    expected = _read_all(twin_b.gradient_flow())        # read at once
    for seed, batch in ((1, 16), (2, 9), (3, 16)):      # same batch and another one
        twin_a.train_step(*_data(seed, batch), "cross_entropy", opt_a)
        assert twin_a.gradient_flow().grad_norm.shape == (4,)
    assert not np.array_equal(twin_a.gradient_flow().grad_norm, expected["grad_norm"])
    _assert_same(_read_all(kept), expected)
    assert kept.batch == 16 and kept.per_sample_grad_norm.shape == (4, 16)


@pytest.fixture
def derive_calls(monkeypatch):
    """The number of compiled derivations flows run (``derive_into``, ``derive_flow``)."""
    from vgcore.measure import flow as flow_module
    engine = flow_module._engine
    calls = []
    for name in ("derive_into", "derive_flow"):
        real = getattr(engine, name)

        def counted(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)
        monkeypatch.setattr(engine, name, counted)
    return calls


def test_fields_are_derived_when_first_read_and_kept(derive_calls):
    net = _net()
    net.train_step(*_data(0, 12))
    flow = net.gradient_flow()
    assert flow.batch == 12 and flow.sizes == net.sizes and flow.raw is not None
    assert derive_calls == []                           # nothing derived yet
    assert not {"per_sample_grad_norm", "dead_unit_mask"} & set(vars(flow))
    g = flow.grad_norm
    assert derive_calls == ["derive_into"] and flow.grad_norm is g
    # the first field read derived every per-layer field and scalar (one compiled call), not
    # the per-sample and per-unit arrays
    fields = {name: getattr(flow, name) for name in FIELDS + SCALARS}
    assert derive_calls == ["derive_into"]
    assert all(getattr(flow, name) is fields[name] for name in FIELDS)
    assert not {"per_sample_grad_norm", "dead_unit_mask"} & set(vars(flow))
    assert flow.per_sample_grad_norm.shape == (4, 12)
    assert flow.per_sample_grad_norm is flow.per_sample_grad_norm
    assert "per_sample_grad_norm" in vars(flow) and "dead_unit_mask" not in vars(flow)
    assert flow.dead_unit_mask is flow.dead_unit_mask and derive_calls == ["derive_into"]
    with pytest.raises(AttributeError, match="no_such_field"):
        _ = flow.no_such_field
    with pytest.raises(dataclasses.FrozenInstanceError):
        flow.grad_norm = g
    # a copy of the dataclass with one field replaced derives every other field
    other = dataclasses.replace(flow, grad_ratio=1.5)
    assert other.grad_ratio == 1.5 and other.raw is None
    np.testing.assert_array_equal(other.gsnr, flow.gsnr)
    # the class's own attributes are the fields' descriptors, not values
    assert not isinstance(type(flow).grad_norm, np.ndarray)


def test_gsnr_is_the_per_sample_definition_on_both_passes():
    """gsnr = ||mean_i g_i||^2 / mean_i ||g_i - mean g||^2 = G / (mean_i ||g_i||^2 - G): the
    per-layer mean the backward pass takes agrees with the per-sample norms it keeps."""
    for options in OPTIONS.values():
        net = _net("float64", **options)
        net.train_step(*_data(4, 20, "float64"))
        flow = net.gradient_flow()
        signal = flow.grad_norm ** 2
        mean_sq = np.mean(flow.per_sample_grad_norm ** 2, axis=1)
        np.testing.assert_allclose(flow.gsnr, signal / (mean_sq - signal), rtol=1e-9)
        assert np.all(np.isfinite(flow.gsnr)) and np.all(flow.gsnr > 0)


def test_per_sample_measurements_follow_the_batch_size_of_the_pass():
    """Back at a batch size seen before, the per-sample sums are those of that pass (each
    batch size has its own buffers), equal to a fresh network's."""
    net, fresh = _net("float64"), _net("float64")
    X5, y5 = _data(5, 5, "float64")
    net.train_step(X5, y5)
    assert net.gradient_flow().per_sample_grad_norm.shape == (4, 5)
    net.train_step(*_data(6, 7, "float64"))
    assert net.gradient_flow().per_sample_grad_norm.shape == (4, 7)
    net.measure = False
    net.train_step(*_data(7, 3, "float64"))
    net.measure = True
    net.train_step(X5, y5)
    fresh.train_step(X5, y5)
    _assert_same(_read_all(net.gradient_flow()), _read_all(fresh.gradient_flow()))


def test_recording_a_flow_reads_none_of_its_fields(derive_calls):
    net = _net()
    net.train_step(*_data(0, 12))
    flow = net.gradient_flow()
    rec = vg.Recorder()
    assert rec.record(flow)
    assert derive_calls == [] and not set(EVERYTHING) & set(vars(flow))
    for name in FIELDS:
        np.testing.assert_array_equal(rec.history(name)[0], getattr(flow, name), err_msg=name)


@pytest.mark.parametrize("max_records", [5, 300])
def test_recorded_rows_are_exactly_the_flows_fields(max_records):
    """Rows kept as raw sums and derived many at once (through thinning, mixed batch sizes,
    steps with and without an optimiser, and flows built from their fields) equal what each
    step's gradient_flow() gives."""
    net = _net()
    opt = vg.optim.SGD(net, lr=0.05)
    rec = vg.Recorder("every", max_records=max_records)
    seen = {}
    for step in range(300):
        X, y = _data(step, 12 if step % 3 else 8)
        net.train_step(X, y, "cross_entropy", opt if step % 4 else None)
        flow = net.gradient_flow()
        if step % 50 == 7:                  # a flow built from its fields
            flow = dataclasses.replace(flow, grad_ratio=float(step))
        seen[step] = _read_all(flow)
        rec.record(flow if step % 2 else net, step)
    steps = rec.steps
    assert 0 < len(steps) <= max_records and steps[-1] >= 299 - rec.stride
    for name in FIELDS + SCALARS:
        got = rec.history(name)
        want = np.asarray([seen[s][name] for s in steps])
        if name.startswith("nonfinite"):
            want = np.asarray([w or 0 for w in want], np.int64)
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert any(np.isnan(seen[s]["update_to_weight"]).all() for s in steps) or max_records < 10


def test_epoch_dead_units_from_snapshots_are_anded_over_steps():
    net = vg.MLP([4, 6, 6, 2], activation="relu", init="he_normal", dtype="float64", seed=0)
    net.biases[0][:3] = -10.0               # units 1-3 of layer 1 dead on every sample
    rec = vg.Recorder("every", every=1000)
    rec.start_epoch()
    masks = []
    for step in range(3):
        net.train_step(_data(step, 5, "float64")[0][:, :4].copy(), np.arange(5) % 2)
        masks.append(net.gradient_flow().dead_unit_mask)
        rec.record(net, step)
    fr = rec.end_epoch()
    both = masks[0] & masks[1] & masks[2]
    assert both[:3].all()
    np.testing.assert_array_equal(fr, [both[:6].mean(), both[6:].mean()])


@pytest.mark.parametrize("with_optimiser", [True, False])
def test_flow_sums_into_copies_the_sums_gradient_flow_derives_from(with_optimiser):
    net = _net("float64")
    opt = vg.optim.SGD(net, lr=0.05) if with_optimiser else None
    net.train_step(*_data(0, 12, "float64"), "cross_entropy", opt)
    L = len(net.sizes) - 1
    stats, msq = np.full((L, vg.flow.N_STATS), np.nan), np.full(L, np.nan)
    batch, stepped = net.flow_sums_into(stats, msq)
    assert (batch, stepped) == (12, with_optimiser)
    assert type(batch) is int and type(stepped) is bool      # what a Recorder stores
    raw = net.gradient_flow().raw
    np.testing.assert_array_equal(stats, raw.stats)
    np.testing.assert_array_equal(msq, raw.ps_mean_sq)
    assert (raw.batch, raw.stepped) == (12, with_optimiser)
    assert type(raw.batch) is int and type(raw.stepped) is bool
    # with a plain forward and backward (no train_step) too
    net.forward(_data(1, 5, "float64")[0])
    net.backward(np.ones((5, net.sizes[-1])))
    batch, stepped = net.flow_sums_into(stats, msq)
    assert (batch, stepped) == (5, False) and type(batch) is int and type(stepped) is bool
    flow = net.gradient_flow()
    assert type(flow.batch) is int and type(flow.raw.stepped) is bool


def test_flow_sums_into_refuses_what_it_cannot_write_into():
    net = _net()
    L = len(net.sizes) - 1
    good_stats, good_msq = np.empty((L, vg.flow.N_STATS)), np.empty(L)
    with pytest.raises(RuntimeError, match="no measured step yet"):
        net.flow_sums_into(good_stats, good_msq)
    net.train_step(*_data(0, 12))
    ro = np.empty(L)
    ro.flags.writeable = False
    for stats, msq, what in [
            (np.empty((L, vg.flow.N_STATS + 1)), good_msq, r"stats: expected a writable "
             r"float64 array of shape \(4, \d+\), got a float64 array of shape \(4, \d+\)"),
            (good_stats.astype(np.float32), good_msq, "stats: .*got a float32 array"),
            (good_stats, ro, "ps_mean_sq: .*got a read-only float64 array of shape"),
            (good_stats, [0.0] * L, "ps_mean_sq: .*got list")]:
        with pytest.raises(ValueError, match=what):
            net.flow_sums_into(stats, msq)
    net.measure = False
    with pytest.raises(RuntimeError, match="measurements are off"):
        net.flow_sums_into(good_stats, good_msq)


def test_flow_sums_into_fills_arrays_of_any_layout():
    """Strided and Fortran-ordered arrays (not the compiled copy's contiguous case) get the
    same sums as contiguous ones."""
    net = _net("float64")
    net.train_step(*_data(0, 12, "float64"))
    L = len(net.sizes) - 1
    want_st, want_msq = np.empty((L, vg.flow.N_STATS)), np.empty(L)
    assert net.flow_sums_into(want_st, want_msq) == (12, False)
    big_st, big_msq = np.zeros((L, 2 * vg.flow.N_STATS)), np.zeros(2 * L)
    assert net.flow_sums_into(big_st[:, ::2], big_msq[::2]) == (12, False)
    np.testing.assert_array_equal(big_st[:, ::2], want_st)
    np.testing.assert_array_equal(big_msq[::2], want_msq)
    assert not big_st[:, 1::2].any() and not big_msq[1::2].any()
    fortran = np.asfortranarray(np.zeros((L, vg.flow.N_STATS)))
    net.flow_sums_into(fortran, np.zeros(L))
    np.testing.assert_array_equal(fortran, want_st)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_flow_sums_into_a_row_writes_what_the_rows_views_get():
    """row=i writes stats[i] and ps_mean_sq[i] of a history of rows (the compiled copy when
    the arrays are contiguous, views otherwise), exactly what passing those views writes, and
    nothing else; a bad row or array is named."""
    net = _net("float64")
    net.train_step(*_data(0, 12, "float64"))
    L = len(net.sizes) - 1
    want_st, want_msq = np.empty((L, vg.flow.N_STATS)), np.empty(L)
    assert net.flow_sums_into(want_st, want_msq) == (12, False)
    for layout in ("C", "strided"):
        for row in (0, 2, 4, -1, -5):
            st, msq = np.zeros((5, L, vg.flow.N_STATS)), np.zeros((5, L))
            if layout == "strided":
                st, msq = np.zeros((10, L, vg.flow.N_STATS))[::2], np.zeros((5, 2 * L))[:, ::2]
            assert net.flow_sums_into(st, msq, row=row) == (12, False)
            np.testing.assert_array_equal(st[row], want_st)
            np.testing.assert_array_equal(msq[row], want_msq)
            others = [r for r in range(5) if r != row % 5]
            assert not st[others].any() and not msq[others].any()
    base = np.zeros((10, L, vg.flow.N_STATS))
    st, msq = base[::2], np.zeros((5, L))
    assert net.flow_sums_into(st, msq, row=3) == (12, False)
    assert not base[1::2].any()                     # the rows between the view's untouched
    st, msq = np.zeros((3, L, vg.flow.N_STATS)), np.zeros((3, L))
    for bad, err, what in [(3, IndexError, "row: 3 is outside stats's 3 rows"),
                           (-4, IndexError, "row: -4 is outside"),
                           (2 ** 70, IndexError, "row: 1180591620717411303424 is outside"),
                           (-2 ** 70, IndexError, "is outside stats's 3 rows"),
                           (1.0, TypeError, "row: expected an integer index or None, got "
                                            "float"),
                           (True, TypeError, "got bool"), (np.True_, TypeError, "got bool"),
                           ("0", TypeError, "got str")]:
        with pytest.raises(err, match=what):
            net.flow_sums_into(st, msq, row=bad)
    S = vg.flow.N_STATS
    for stats, ps, what in [
            (st.astype(np.float32), msq, rf"stats: with row=1, expected a writable float64 "
             rf"array of shape \(n, 4, {S}\) \(one row's sums a row\), got a float32 array of "
             rf"shape \(3, 4, {S}\)"),
            (st, np.zeros(L), r"ps_mean_sq: with row=1, .*shape \(n, 4\).*got a float64 array "
             r"of shape \(4,\)"),
            (st[:, :, :-1], msq, r"stats: .*got a float64 array of shape \(3, 4, \d+\)"),
            (st, [0.0] * L, "ps_mean_sq: with row=1, .*got list")]:
        with pytest.raises(ValueError, match=what):
            net.flow_sums_into(stats, ps, row=1)
    assert not st.any() and not msq.any()           # nothing written by a refused call
    assert net.flow_sums_into(st, msq, row=np.int64(2)) == (12, False)
    np.testing.assert_array_equal(st[2], want_st)
    matrix = np.asmatrix(np.zeros((3, L)))          # a subclass: the same row either way
    for row in (1, -2):
        assert net.flow_sums_into(st, matrix, row=row) == (12, False)
        np.testing.assert_array_equal(np.asarray(matrix)[row], want_msq)


def test_a_recorder_writes_its_rows_through_the_compiled_calls(monkeypatch):
    """A recorder's rows of a network it has checked take the compiled copy and bookkeeping
    (the fast path the recording cost depends on), with the same rows as a NumPy copy."""
    calls = {"rows": 0, "meta": 0}
    real_rows, real_meta = vg._engine.copy_f64_rows, vg._engine.put_i64_row

    def rows(*a):
        calls["rows"] += 1
        return real_rows(*a)

    def meta(*a):
        calls["meta"] += 1
        return real_meta(*a)
    monkeypatch.setattr(vg._engine, "copy_f64_rows", rows)
    monkeypatch.setattr(vg._engine, "put_i64_row", meta)
    net = _net("float64")
    rec, rec2 = vg.Recorder(), vg.Recorder()
    for step in range(6):
        net.train_step(*_data(step, 12, "float64"))
        rec.record(net)
        rec2.record(net.gradient_flow())
    assert calls == {"rows": 5, "meta": 12}         # rec's first row checks the network
    for name in FIELDS + SCALARS:
        np.testing.assert_array_equal(rec.history(name), rec2.history(name), err_msg=name)


def test_the_compiled_row_writers_refuse_what_they_cannot_write_whole():
    src, src2 = np.arange(12.0).reshape(3, 4), np.arange(3.0)
    dst, dst2 = np.zeros((5, 3, 4)), np.zeros((5, 3))
    assert vg._engine.copy_f64_rows(dst, src, dst2, src2, 4)
    np.testing.assert_array_equal(dst[4], src)
    np.testing.assert_array_equal(dst2[4], src2)
    assert not dst[:4].any() and not dst2[:4].any()
    ro = np.zeros((5, 3))
    ro.flags.writeable = False
    for args in [(np.zeros((5, 3, 4)), src, ro, src2, 0),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), src2, 5),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), src2, -1),
                 (np.zeros((5, 4, 3)), src, np.zeros((5, 3)), src2, 0),
                 (np.zeros((3, 4)), src, np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4), np.float32), src, np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 8))[:, :, ::2], src, np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4), ">f8"), src, np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4)), src.astype(">f8"), np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4)), src, [[0.0] * 3] * 5, src2, 0),
                 (np.zeros((5, 3, 4)), np.zeros((3, 8))[:, ::2], np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4)), src.astype(np.float32), np.zeros((5, 3)), src2, 0),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 4)), src2, 0),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 1, 3)), src2, 0),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), np.zeros(6)[::2], 0),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), src2, 2 ** 70),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), src2, True),
                 (np.zeros((5, 3, 4)), src, np.zeros((5, 3)), src2, np.int64(0))]:
        before = [np.array(x, copy=True) for x in args[:4]]
        assert not vg._engine.copy_f64_rows(*args)
        for x, was in zip(args[:4], before):
            np.testing.assert_array_equal(x, was)       # nothing copied
    meta = np.zeros((4, 3), np.int64)
    assert vg._engine.put_i64_row(meta, 2, (7, -(2 ** 63), True))
    assert meta[2].tolist() == [7, -(2 ** 63), 1] and not meta[[0, 1, 3]].any()
    ro = np.zeros((4, 3), np.int64)
    ro.flags.writeable = False
    for dst, row, values in [(meta, 4, (1, 2, 3)), (meta, -1, (1, 2, 3)), (meta, 0, (1, 2)),
                             (meta, 0, (1, 2, 2 ** 63)), (meta, 0, (1, 2, 3.0)),
                             (meta, 0, (1, 2, np.int64(3))), (meta.astype(np.int32), 0, (1, 2, 3)),
                             (meta.astype(">i8"), 0, (1, 2, 3)), (ro, 0, (1, 2, 3)),
                             (np.zeros((4, 6), np.int64)[:, ::2], 0, (1, 2, 3)),
                             (np.zeros(3, np.int64), 0, (1, 2, 3)),
                             (meta, 0, [1, 2, 3]),
                             (np.zeros((2, 17), np.int64), 0, tuple(range(17)))]:
        was = np.array(dst, copy=True)
        assert not vg._engine.put_i64_row(dst, row, values)
        np.testing.assert_array_equal(dst, was)


def test_the_compiled_copies_check_every_array_before_copying_any():
    a, b = np.zeros((3, 4)), np.arange(12.0).reshape(3, 4)
    c, d = np.zeros(3), np.arange(3.0)
    assert vg._engine.copy_f64_pairs(a, b, c, d)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, d)
    ro = np.zeros(3)
    ro.flags.writeable = False
    for args in [(np.zeros((3, 4)), b, ro, d), (np.zeros((4, 3)), b, c, d),
                 (np.zeros((3, 4), np.float32), b, c, d), (np.zeros((3, 4)), b, c, [0.0] * 3),
                 (np.zeros((3, 8))[:, ::2], b, c, d), (np.zeros((3, 4), ">f8"), b, c, d),
                 (np.zeros((3, 4)), b.astype(">f8"), c, d)]:
        before = [np.array(x, copy=True) for x in args]
        assert not vg._engine.copy_f64_pairs(*args)
        for x, was in zip(args, before):
            np.testing.assert_array_equal(x, was)       # nothing copied
    x32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    strided = np.arange(10.0)[::2]
    swapped = np.arange(3.0, dtype=">f8")
    days = np.array(["2020-01-01", "2021-06-30"], "datetime64[D]")
    thing = object()
    objs = np.array([thing, "x"], object)
    refs = sys.getrefcount(thing)
    got = vg._engine.snapshot_arrays(x32, strided, swapped, days, objs, np.empty((0, 3)))
    assert sys.getrefcount(thing) == refs + 1           # the copy holds its own reference
    for g, src in zip(got, (x32, strided, swapped, days, objs, np.empty((0, 3)))):
        np.testing.assert_array_equal(g, src)
        assert g.dtype == src.dtype and g.shape == src.shape
        assert g.flags.c_contiguous and not g.flags.writeable and type(g) is np.ndarray
        assert not np.shares_memory(g, src)


def test_a_recorder_copies_a_checked_networks_sums_without_building_a_flow(monkeypatch):
    """After its first row of a network (checked through gradient_flow()), a Recorder copies
    that network's sums into its rows directly: no GradientFlow per row, the same rows as
    recording each step's flow."""
    a, b = _net(), _net()
    opt_a, opt_b = vg.optim.SGD(a, lr=0.05), vg.optim.SGD(b, lr=0.05)
    rec_a, rec_b = vg.Recorder(max_records=50), vg.Recorder(max_records=50)
    calls = []
    real = type(a).gradient_flow
    monkeypatch.setattr(type(a), "gradient_flow", lambda self: calls.append(self) or real(self))
    for step in range(120):
        X, y = _data(step, 12 if step % 3 else 8)
        a.train_step(X, y, "cross_entropy", opt_a if step % 4 else None)
        b.train_step(X, y, "cross_entropy", opt_b if step % 4 else None)
        rec_a.record(a)
        rec_b.record(real(b))
    assert calls == [a]                      # the first row only
    np.testing.assert_array_equal(rec_a.steps, rec_b.steps)
    for name in FIELDS + SCALARS:
        np.testing.assert_array_equal(rec_a.history(name), rec_b.history(name), err_msg=name)
    # another network of the same shape is checked again, a different one refused
    c = _net()
    c.train_step(*_data(0, 12))
    rec_a.record(c)
    assert calls == [a, c]
    d = vg.MLP([7, 11, 11, 11, 4], activation="relu", seed=3)
    d.train_step(*_data(0, 12))
    with pytest.raises(ValueError, match="activations"):
        for _ in range(2 * rec_a.stride):   # thinned: one due step in `stride` is read
            rec_a.record(d)

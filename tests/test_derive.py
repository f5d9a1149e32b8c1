"""The gradient-flow fields are derived in compiled code (src/vg_derive.h) from the measurement
rows; NumPy's vgcore.flow.derive is their definition.  The two give the same numbers bit for
bit, for a flow's fields and for a recorder's history, on ordinary sums and on the edge cases
(zeros, NaN, Inf, a layer whose error vanished, steps without an optimiser)."""
import numpy as np
import pytest

import vgcore as vg
from vgcore import _engine
from vgcore.core import _contract
from vgcore.measure import flow as F
from vgcore.measure.flow import FIELDS, N_STATS, GradientFlow, derive

SCALARS = ("grad_ratio", "delta_ratio", "nonfinite_forward_layer", "nonfinite_backward_layer")


def same_bits(got, want, what):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN where NumPy has none")
    np.testing.assert_array_equal(np.where(nan, 0.0, got).view(np.int64),
                                  np.where(nan, 0.0, want).view(np.int64),
                                  err_msg=f"{what}: not the bits of vgcore.flow.derive")


def random_rows(rng, shape, edge):
    """Measurement rows of the given leading shape + (N_STATS,): sums of squares and counts
    >= 0, sums of activations of either sign, over many magnitudes; with ``edge``, zeros, NaN
    and Inf put in at random."""
    st = np.exp(rng.uniform(-60, 40, shape + (N_STATS,))) * rng.uniform(0.5, 2, shape + (N_STATS,))
    st[..., F._SUM_A] *= rng.choice([-1.0, 1.0], shape)
    counts = (F._N_SAT, F._N_ZERO, F._N_DEAD, F._N_UNDERFLOW)
    st[..., counts] = rng.integers(0, 4096, shape + (len(counts),))
    msq = st[..., F._DW2] * rng.uniform(0.5, 3, shape)           # gsnr's noise may be < 0
    if edge:
        for value in (0.0, np.nan, np.inf, -0.0):
            st[rng.random(st.shape) < 0.05] = value
            msq[rng.random(msq.shape) < 0.05] = value
        # a stack whose error vanished below some layer, and sums equal to the square of the
        # mean (act_std's variance is then 0 or rounds below it)
        st[..., : shape[-1] // 2, F._SUM_D2] = 0.0
        st[..., F._SUM_A2] = np.where(rng.random(shape) < 0.2, st[..., F._SUM_A] ** 2 / 64,
                                      st[..., F._SUM_A2])
    return st, msq


@pytest.mark.parametrize("edge", [False, True], ids=["ordinary", "edge"])
@pytest.mark.parametrize("layers", [1, 2, 7, 51])
def test_a_flow_derives_every_field_as_numpy_does(layers, edge):
    rng = np.random.default_rng(layers + 100 * edge)
    sizes = tuple(int(n) for n in rng.integers(1, 300, layers + 1))
    widths = np.asarray(sizes[1:], np.float64)
    for trial in range(6):
        st, msq = random_rows(rng, (layers,), edge)
        batch, stepped = int(rng.integers(1, 5000)), bool(trial % 2)
        flow = GradientFlow.from_buffers(
            sizes, ("tanh",) * layers, batch, st, np.zeros((layers, batch)),
            np.zeros((layers, batch)), msq, np.zeros(sum(sizes[1:]), np.int64),
            np.cumsum(sizes[1:]), stepped)
        for name in FIELDS + SCALARS:
            want = derive(name, st, msq, widths, batch, stepped)
            got = getattr(flow, name)
            if name.startswith("nonfinite"):
                assert got == (int(want) or None), name
            else:
                same_bits(got, want, f"{name} ({layers} layers, trial {trial})")
        assert not flow.grad_norm.flags.writeable      # a snapshot's fields are read-only


@pytest.mark.parametrize("edge", [False, True], ids=["ordinary", "edge"])
def test_history_rows_derive_as_numpy_does(edge):
    rng = np.random.default_rng(7 + edge)
    R, L = 37, 9
    st, msq = random_rows(rng, (R, L), edge)
    widths = rng.integers(1, 500, L).astype(np.float64)
    meta = np.zeros((R, 5), np.int64)                      # a recorder's columns (strided)
    meta[:, 2] = rng.integers(1, 3000, R)
    meta[:, 3] = rng.integers(0, 2, R)
    for name in FIELDS + SCALARS:
        j = _contract.DERIVED_ID[name]
        out = np.empty((R, L) if name in FIELDS else R)
        _engine.derive_rows(j, st, msq, widths, meta[:, 2], meta[:, 3], out)
        same_bits(out, derive(name, st, msq, widths, meta[:, 2:3], meta[:, 3:4] != 0), name)


def test_a_recorders_history_is_the_flows_fields():
    # the history of a recorder (rows kept as sums, derived when read) against the flows the
    # same steps gave, field by field, bit for bit
    net = vg.MLP([12, 16, 16, 16, 3], activation="tanh", seed=1)
    opt = vg.optim.SGD(net, lr=0.1)
    rec = vg.Recorder()
    rng = np.random.default_rng(0)
    flows = []
    for step in range(5):
        X = rng.standard_normal((8 + step, 12)).astype(np.float32)
        net.train_step(X, rng.integers(0, 3, len(X)), "cross_entropy", opt if step % 2 else None)
        flows.append(net.gradient_flow())
        rec.record(net)
    for name in FIELDS + ("grad_ratio", "delta_ratio"):
        same_bits(rec.history(name), np.array([getattr(f, name) for f in flows]), name)


@pytest.mark.parametrize("stepped", [False, True], ids=["backward", "optimiser step"])
def test_a_networks_flow_derives_as_numpy_does(stepped):
    # a network's flow derives into its measurement set's buffer (derive_into)
    net = vg.MLP([10, 24, 24, 24, 24, 4], activation="tanh", seed=3)
    opt = vg.optim.Adam(net, lr=0.01)
    X = np.random.default_rng(1).standard_normal((20, 10)).astype(np.float32)
    y = np.arange(20) % 4
    for _ in range(3):
        net.train_step(X, y, "cross_entropy", opt if stepped else None)
    flow = net.gradient_flow()
    raw = flow.raw
    for name in FIELDS + SCALARS:
        want = derive(name, raw.stats, raw.ps_mean_sq, np.asarray(net.sizes[1:], np.float64),
                      raw.batch, raw.stepped)
        got = getattr(flow, name)
        if name.startswith("nonfinite"):
            assert got == (int(want) or None), name
        else:
            same_bits(got, want, name)
    assert np.isnan(flow.update_to_weight).all() != stepped


def test_the_compiled_table_lists_the_fields_in_order():
    assert _engine.DERIVED == FIELDS + SCALARS
    assert _engine.N_LAYER_FIELDS == len(FIELDS)


def test_bad_arrays_are_refused_by_name():
    st = np.ones((4, N_STATS))
    msq, w = np.ones(4), np.ones(4)
    cases = [
        ((st.astype(np.float32), msq, w), "stats"),
        ((st[:2], msq, w), "ps_mean_sq"),                    # 2 layers against 4
        ((st[::2], msq[:2], w[:2]), "stats"),                # strided
        ((np.ones((4, N_STATS + 1)), msq, w), "stats"),
        ((st, msq[::-1], w), "ps_mean_sq"),                  # strided
        ((st, msq, np.ones(3)), "widths"),
        ((np.ones((0, N_STATS)), np.ones(0), np.ones(0)), "stats"),
        ((np.ones(N_STATS), msq, w), "stats"),
    ]
    for args, name in cases:
        with pytest.raises(ValueError, match=f"^{name}: expected"):
            _engine.derive_flow(*args, 64, True)
    b = np.ones(2, np.int64)
    out = np.empty((2, 4))
    st2, msq2 = np.ones((2, 4, N_STATS)), np.ones((2, 4))
    with pytest.raises(ValueError, match="^field: expected"):
        _engine.derive_rows(len(_engine.DERIVED), st2, msq2, w, b, b, out)
    with pytest.raises(ValueError, match="^out: expected a writable"):
        ro = out.copy()
        ro.flags.writeable = False
        _engine.derive_rows(0, st2, msq2, w, b, b, ro)
    with pytest.raises(ValueError, match="^out: expected"):
        _engine.derive_rows(0, st2, msq2, w, b, b, np.empty(2))      # a field wants (R, L)
    with pytest.raises(ValueError, match="^batch: expected a 1-D int64 array of 2"):
        _engine.derive_rows(0, st2, msq2, w, b[:1], b, out)
    # a column whose stride is not a whole number of items, a reversed one of that kind,
    # int32, a list: refused by name, nothing read outside the array
    odd = np.ndarray((2,), np.int64, buffer=np.zeros(32, np.uint8), offset=0, strides=(12,))
    for bad in (odd, odd[::-1], b.astype(np.int32), [64, 64], None):
        with pytest.raises(ValueError, match="^stepped: expected a 1-D int64 array"):
            _engine.derive_rows(0, st2, msq2, w, b, bad, out)
    # a reversed column of whole items is read as it is
    got = np.empty((2, 4))
    _engine.derive_rows(0, st2, msq2, w, np.array([64, 32])[::-1], b, got)
    same_bits(got, derive("delta_rms", st2, msq2, w, np.array([[32], [64]]), b[:, None] != 0),
              "reversed batch")
    for fn, args in ((_engine.derive_flow, (None, msq, w, 64, True)),
                     (_engine.derive_into, (st, msq, w, 64, True, None)),
                     (_engine.derive_rows, (0, st2, None, w, b, b, out))):
        with pytest.raises(TypeError):
            fn(*args)
    with pytest.raises(ValueError, match=r"^stats: expected .* shape \('any', 13\), got float64 "
                                         r"contiguous shape \(13, 3\)"):
        _engine.derive_flow(np.ones((13, 3)), msq, w, 64, True)
    with pytest.raises(ValueError, match="^fields: expected a writable"):
        ro = np.zeros(len(FIELDS) * 4)
        ro.flags.writeable = False
        _engine.derive_into(st, msq, w, 64, True, ro)


def test_a_flow_from_buffers_of_another_dtype_derives_from_float64():
    # GradientFlow.from_buffers takes the sums in any float dtype or byte order, as float64
    rng = np.random.default_rng(5)
    st, msq = random_rows(rng, (3,), False)
    sizes = (4, 5, 6, 7)
    for cast in (np.float32, np.dtype(">f8")):
        s32, m32 = st.astype(cast), msq.astype(cast)
        flow = GradientFlow.from_buffers(sizes, ("tanh",) * 3, 8, s32, np.zeros((3, 8)),
                                         np.zeros((3, 8)), m32, np.zeros(18, np.int64),
                                         np.cumsum(sizes[1:]), True)
        want = derive("gsnr", s32.astype(np.float64), m32.astype(np.float64),
                      np.array(sizes[1:], float), 8, True)
        same_bits(flow.gsnr, want, f"gsnr from {cast}")
        with pytest.raises(ValueError, match="WRITEABLE"):     # nor under them
            flow.grad_norm.base.flags.writeable = True

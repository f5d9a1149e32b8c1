"""The gradient-flow measurements of net.gradient_flow() against the same quantities computed
in NumPy from the reference network's buffers (the definitions in vgcore/flow.py)."""
import numpy as np
import pytest

import vgcore as vg
from vgcore.core import reference as R
from vgcore.measure.flow import FIELDS, saturation_threshold

ACTS = list(vg.ACTIVATIONS)


def _step(net, X, y):
    out = net.forward(X)
    _, dout = vg.losses.cross_entropy(out, y)
    net.backward(dout)
    return dout.copy()


def _expected(net, X, y):
    """Every measurement, from first principles, with the NumPy reference in float64."""
    ref = R.ReferenceMLP.from_network(net)
    out = ref.forward(X.astype(np.float64) if net.dtype == np.float64 else X)
    _, dout = R.cross_entropy(out, y)
    ref.backward(dout)
    L = net.n_layers
    B = X.shape[0]
    buf = ref._buf
    e = {k: np.zeros(L) for k in FIELDS}
    deltas, inputs = [], []
    for l in range(L):
        h = buf.h[l].astype(np.float64)
        a = h if l == L - 1 else buf.a[l].astype(np.float64)
        d = (dout if l == L - 1 else buf.d[l]).astype(np.float64)
        x = (X if l == 0 else buf.a[l - 1]).astype(np.float64)
        deltas.append(d)
        inputs.append(x)
        act = net.activations[l]
        dphi = R.activation_derivative(act, h, a) if l < L - 1 else np.ones_like(h)
        W = net.weights[l].astype(np.float64)
        dW = x.T @ d
        e["delta_rms"][l] = np.sqrt(np.mean(d ** 2))
        e["delta_norm"][l] = np.linalg.norm(d)
        e["grad_norm"][l] = np.linalg.norm(dW)
        e["bias_grad_norm"][l] = np.linalg.norm(d.sum(0))
        e["weight_norm"][l] = np.linalg.norm(W)
        e["bias_norm"][l] = np.linalg.norm(net.biases[l])
        e["preact_rms"][l] = np.sqrt(np.mean(h ** 2))
        e["act_mean"][l] = a.mean()
        e["act_std"][l] = a.std()
        thr = saturation_threshold(act)
        e["saturated_fraction"][l] = np.mean(np.abs(dphi) < thr) if l < L - 1 else 0
        e["zero_derivative_fraction"][l] = np.mean(dphi == 0) if l < L - 1 else 0
        e["dead_fraction"][l] = np.mean(np.all(dphi == 0, axis=0)) if l < L - 1 else 0
        if l < L - 1:       # the error arriving from above (read flushed), lost in delta
            g = buf.g[l + 1].astype(np.float64)
            tiny = np.finfo(net.dtype).tiny
            e["underflow_fraction"][l] = np.mean((g != 0) & (dphi != 0) & (np.abs(d) < tiny))
        per_sample = np.stack([B * np.outer(x[i], d[i]) for i in range(B)])
        noise = np.mean(np.sum((per_sample - dW) ** 2, axis=(1, 2)))
        e["gsnr"][l] = np.sum(dW ** 2) / noise
    e["grad_to_weight"] = e["grad_norm"] / e["weight_norm"]
    e["gain"] = np.append(e["delta_norm"][:-1] / e["delta_norm"][1:], np.nan)
    e["update_to_weight"] = np.full(L, np.nan)
    e["per_sample_grad_norm"] = np.stack([
        B * np.linalg.norm(inputs[l], axis=1) * np.linalg.norm(deltas[l], axis=1)
        for l in range(L)])
    return e


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ACTS)
def test_every_measurement_matches_its_definition(act, dtype):
    rng = np.random.default_rng(3)
    net = vg.MLP([9, 17, 13, 11, 5], activation=act, init="he_normal", dtype=dtype, seed=1,
                 sigma_b=0.3)
    X = (2.5 * rng.standard_normal((24, 9))).astype(dtype)
    y = rng.integers(0, 5, 24)
    _step(net, X, y)
    flow = net.gradient_flow()
    exp = _expected(net, X, y)
    rtol = 1e-9 if dtype == "float64" else 2e-4
    for name in FIELDS:
        got = getattr(flow, name)
        if name in ("saturated_fraction", "zero_derivative_fraction", "dead_fraction",
                    "underflow_fraction"):
            # counts: float32 rounding can move an entry across the threshold
            tol = 0 if dtype == "float64" else 2 / (24 * 11)
            np.testing.assert_allclose(got, exp[name], atol=tol, err_msg=name)
        else:
            np.testing.assert_allclose(got, exp[name], rtol=rtol, atol=1e-30, err_msg=name)
    np.testing.assert_allclose(flow.per_sample_grad_norm, exp["per_sample_grad_norm"],
                               rtol=rtol)
    assert flow.grad_ratio == pytest.approx(exp["grad_norm"][0] / exp["grad_norm"][-1],
                                            rel=rtol)
    assert flow.delta_ratio == pytest.approx(exp["delta_norm"][0] / exp["delta_norm"][-1],
                                             rel=rtol)
    assert flow.nonfinite_forward_layer is None and flow.nonfinite_backward_layer is None


@pytest.mark.parametrize("flush", [True, False])
def test_underflow_fraction_matches_its_definition_where_the_error_leaves_float32(flush):
    """On a vanishing float32 network (30 sigmoid layers, weights scaled so that the error
    crosses 1e-38 about layer 5 and is below 1e-44 at layer 1): the engine's fraction against
    the definition on the reference's buffers (the error the layer receives, phi', delta) and
    against the reference's own
    ``underflow_fraction``.  Flushing off (IEEE everywhere) they agree to one entry per layer.
    Flushing on, the engine's matrix products run under FTZ in the calling thread: a product
    below the smallest normal is 0 before the sum, so more of the error arriving at the
    crossing layers is already exactly 0 (lost in the layer above, not counted here); the same
    layers show losses, no more than NumPy's count plus 5 points, and the others none."""
    rng = np.random.default_rng(4)
    net = vg.MLP([32] * 31 + [4], activation="sigmoid", seed=0, flush_subnormals=flush)
    for w in net.weights:
        w *= 0.3                                      # the error shrinks ~20x per layer
    X = rng.standard_normal((40, 32)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    _step(net, X, y)
    got = net.gradient_flow().underflow_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        exp = _expected(net, X, y)["underflow_fraction"]
    ref = R.ReferenceMLP.from_network(net)
    ref.forward(X)
    ref.backward(R.cross_entropy(ref.post_activations[-1], y)[1])
    np.testing.assert_allclose(ref.underflow_fraction(), exp, atol=1e-12)
    assert exp.max() > 0.5 and exp[-1] == 0 and got[-1] == 0
    assert np.all(exp[8:] == 0)                       # the error is normal from layer 9 up
    if flush:
        np.testing.assert_array_equal(got > 0, exp > 0)
        assert np.all(got <= exp + 0.05)
    else:
        np.testing.assert_allclose(got, exp, atol=1 / (40 * 32) + 1e-12)
        assert np.count_nonzero(got > 0.9) >= 4       # subnormal all the way down


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_measuring_does_not_change_outputs_or_gradients(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((33, 12)).astype(dtype)
    y = rng.integers(0, 4, 33)
    results = []
    for measure in (False, True):
        net = vg.MLP([12, 20, 20, 4], activation="tanh", init="glorot_normal", dtype=dtype,
                     seed=5, measure=measure)
        out = net.forward(X).copy()
        _, dout = vg.losses.cross_entropy(out, y)
        dX = net.backward(dout).copy()
        results.append((out, net.grads.copy(), dX))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_update_to_weight_is_the_relative_size_of_the_sgd_step():
    rng = np.random.default_rng(1)
    net = vg.MLP([6, 10, 10, 3], activation="relu", init="he_normal", dtype="float64", seed=2)
    X = rng.standard_normal((16, 6))
    y = rng.integers(0, 3, 16)
    _step(net, X, y)
    assert np.all(np.isnan(net.gradient_flow().update_to_weight))
    before = [w.copy() for w in net.weights]
    vg.optim.SGD(net, lr=0.3).step()
    flow = net.gradient_flow()
    expected = [np.linalg.norm(w - b) / np.linalg.norm(b) for w, b in zip(net.weights, before)]
    np.testing.assert_allclose(flow.update_to_weight, expected, rtol=1e-12)
    # a new backward pass starts a new step: no update measured yet
    _step(net, X, y)
    assert np.all(np.isnan(net.gradient_flow().update_to_weight))


def test_dead_units_and_zero_derivatives_of_a_relu_layer_pushed_negative():
    rng = np.random.default_rng(2)
    net = vg.MLP([8, 16, 16, 4], activation="relu", init="he_normal", dtype="float64", seed=0)
    net.biases[1][:6] = -1e3      # six units of layer 2 can never fire
    X = rng.standard_normal((40, 8))
    _step(net, X, rng.integers(0, 4, 40))
    flow = net.gradient_flow()
    assert flow.dead_units[1][:6].all()
    assert flow.dead_fraction[1] == pytest.approx(flow.dead_units[1].mean())
    assert flow.dead_fraction[1] >= 6 / 16
    assert flow.zero_derivative_fraction[1] >= 6 / 16
    net.biases[1][:6] = 0.0       # revived: only what the data leaves inactive stays dead
    _step(net, X, rng.integers(0, 4, 40))
    assert not net.gradient_flow().dead_units[1][:6].all()


def test_saturation_of_tanh_with_large_weights_and_not_with_small():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 32))
    y = rng.integers(0, 4, 64)
    big = vg.MLP([32] + [32] * 6 + [4], activation="tanh", init="normal", sigma_w=4.0,
                 dtype="float64", seed=0)
    small = vg.MLP([32] + [32] * 6 + [4], activation="tanh", init="normal", sigma_w=0.5,
                   dtype="float64", seed=0)
    _step(big, X, y)
    _step(small, X, y)
    assert np.all(big.gradient_flow().saturated_fraction[1:-1] > 0.5)
    assert np.all(small.gradient_flow().saturated_fraction[:-1] == 0)


def test_vanishing_gradient_of_deep_sigmoid_network_shows_in_ratio_and_gain():
    rng = np.random.default_rng(4)
    net = vg.MLP([32] + [32] * 20 + [10], activation="sigmoid", init="standard",
                 dtype="float64", seed=0)
    _step(net, rng.standard_normal((64, 32)), rng.integers(0, 10, 64))
    flow = net.gradient_flow()
    assert flow.grad_ratio < 1e-8
    assert np.all(flow.gain[:-2] < 0.5)


def test_nonfinite_values_are_located_in_forward_and_backward():
    rng = np.random.default_rng(5)
    net = vg.MLP([6, 8, 8, 8, 3], activation="tanh", dtype="float64", seed=0)
    X = rng.standard_normal((10, 6))
    net.weights[2][0, 0] = np.nan
    out = net.forward(X)
    dout = np.full(out.shape, 0.1)
    net.backward(dout)
    flow = net.gradient_flow()
    assert flow.nonfinite_forward_layer == 3
    # backward runs from the output layer down: layer 4's delta is finite (dout), but its
    # weight gradient uses layer 3's NaN activations
    assert flow.nonfinite_backward_layer == 4


def test_gradient_flow_requires_a_measured_forward_and_backward():
    net = vg.MLP([4, 5, 2], seed=0)
    with pytest.raises(RuntimeError, match="forward"):
        net.gradient_flow()
    X = np.ones((3, 4), np.float32)
    net.forward(X)
    with pytest.raises(RuntimeError, match="backward"):
        net.gradient_flow()
    net.backward(np.ones((3, 2), np.float32))
    net.gradient_flow()
    net.measure = False
    with pytest.raises(RuntimeError, match="measure"):
        net.gradient_flow()
    with pytest.raises(TypeError, match="measure"):
        net.measure = "yes"


def test_flow_exports_per_layer_columns():
    rng = np.random.default_rng(6)
    net = vg.MLP([5, 7, 7, 3], activation="gelu", dtype="float64", seed=0)
    _step(net, rng.standard_normal((8, 5)), rng.integers(0, 3, 8))
    flow = net.gradient_flow()
    d = flow.as_dict()
    assert list(d["layer"]) == [1, 2, 3]
    assert d["activation"] == ["gelu", "gelu", "identity"]
    for name in FIELDS:
        assert len(d[name]) == 3
    assert "first/last" in flow.summary()


def test_measurements_agree_across_thread_counts():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((256, 600))
    y = rng.integers(0, 10, 256)
    old = vg.get_num_threads()
    flows = []
    try:
        for n in (1, 2):
            vg.set_num_threads(n)
            net = vg.MLP([600, 600, 600, 10], activation="tanh", init="glorot_normal",
                         dtype="float64", seed=0)
            _step(net, X, y)
            flows.append(net.gradient_flow())
    finally:
        vg.set_num_threads(old)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(flows[0], name), getattr(flows[1], name),
                                   rtol=1e-12, err_msg=name)


def test_summary_marks_every_gap_and_says_how_to_see_all_rows():
    rng = np.random.default_rng(8)
    net = vg.MLP([6] + [8] * 30 + [3], activation="relu", init="he_normal", dtype="float64",
                 seed=0)
    _step(net, rng.standard_normal((16, 6)), rng.integers(0, 3, 16))
    flow = net.gradient_flow()
    text = flow.summary(max_rows=5)
    rows = [line.split()[0] for line in text.splitlines()[1:-2]]
    shown = [int(r) for r in rows if r != "..."]
    assert shown[0] == 1 and shown[-1] == 31 and len(shown) == 5
    # a "..." row (with the layers it stands for) between every two non-adjacent shown rows
    gaps = [line for line in text.splitlines() if line.lstrip().startswith("...")]
    assert len(gaps) == sum(1 for a, b in zip(shown, shown[1:]) if b > a + 1)
    assert f"(layers 2-{shown[1] - 1} not shown)" in gaps[0]
    assert text.splitlines()[-1] == "5 of 31 layers shown; summary(max_rows=None) shows all 31"
    every = flow.summary(max_rows=None)
    assert [int(line.split()[0]) for line in every.splitlines()[1:-1]] == list(range(1, 32))
    assert "not shown" not in every and "..." not in every
    assert "not shown" not in flow.summary(max_rows=31)
    assert str(flow) == flow.summary()
    # relu: zero derivatives are inactive (their own column), never saturated
    header = text.splitlines()[0].split()
    assert header[-3:] == ["sat", "inact", "dead"]
    # the output layer has no gain (no layer above): '-', where the hidden layers have numbers
    gain = header.index("gain")
    last, first = every.splitlines()[-2].split(), every.splitlines()[1].split()
    assert last[0] == "31" and last[gain] == "-" and float(first[gain]) > 0
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match=r"max_rows: expected an integer >= 2 or None"):
            flow.summary(max_rows=bad)

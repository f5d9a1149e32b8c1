"""vgcore.diagnosis: each rule on networks built to show the problem, and no false alarm on
healthy ones."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import vgcore as vg
from vgcore.measure import diagnosis as D
from vgcore.train.datasets import gaussian_mixture
from vgcore.measure.diagnosis import Finding, diagnose, format_findings
from vgcore.measure.recorder import Recorder

WIDTH = 64
DEPTH = 20


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(128, WIDTH, 10, seed=0, dtype=np.float64)


def _stepped(data, activation, init, depth=DEPTH, seed=0, sigma_w=None, biases=None,
             nan_weight=None):
    """A float64 network after one forward + cross-entropy + backward on the mixture."""
    net = vg.MLP([WIDTH] + [WIDTH] * depth + [10], activation=activation, init=init,
                 sigma_w=sigma_w, dtype="float64", seed=seed)
    for layer, value in (biases or {}).items():
        net.biases[layer][...] = value
    if nan_weight is not None:
        # the logits come out NaN, which the loss refuses: backpropagate a plain gradient
        net.weights[nan_weight][0, 0] = np.nan
        out = net.forward(data[0])
        net.backward(np.full(out.shape, 0.01))
        return net
    net.train_step(*data)
    return net


def _kinds(findings):
    return {f.kind for f in findings}


def _only(findings, kind):
    found = [f for f in findings if f.kind == kind]
    assert len(found) == 1, format_findings(findings)
    return found[0]


# ------------------------------------------------------------------------ problems
def test_sigmoid_with_standard_init_is_an_error_vanishing_gradient(data):
    net = _stepped(data, "sigmoid", "standard")
    findings = diagnose(net)
    f = _only(findings, "vanishing")
    assert f.severity == "error"
    assert f.evidence["grad_ratio"] == net.gradient_flow().grad_ratio < 1e-10
    assert f.message.startswith("vanishing: the gradient reaching layer 1 is ")
    assert "of layer 21's" in f.message and "sigmoid" in f.message
    assert f.evidence["from_layer"] == 21 and f.evidence["to_layer"] == 1
    assert 0.05 < f.evidence["gain_per_layer"] < 0.25        # sigmoid' <= 1/4
    assert "relu" in f.fix and "he" in f.fix.lower()
    assert _kinds(findings) == {"vanishing"}


def test_tanh_with_standard_init_is_vanishing_though_grad_ratio_is_near_one(data):
    # the forward signal shrinks as fast as the error: level but tiny weight gradients
    net = _stepped(data, "tanh", "standard")
    flow = net.gradient_flow()
    assert 0.1 < flow.grad_ratio < 10
    f = _only(diagnose(net), "vanishing")
    assert f.severity == "error" and f.evidence["hidden_delta_ratio"] < 1e-4
    assert "forward signal shrinks too" in f.message
    assert "with init='standard'" in f.message
    assert "this init is below the variance-preserving scale for tanh" in f.message
    assert "glorot" in f.fix and "orthogonal" in f.fix


def test_tanh_with_sigma_w_3_saturates_and_explodes(data):
    net = _stepped(data, "tanh", "normal", sigma_w=3.0)
    findings = diagnose(net)
    sat = _only(findings, "saturation")
    assert sat.severity == "warning"
    assert sat.evidence["layers"] == list(range(1, DEPTH + 1))
    assert 0.3 < sat.evidence["mean_saturated_fraction"] < 0.6
    assert "of tanh units in layers 1-20 are saturated" in sat.message
    exp = _only(findings, "exploding")
    assert exp.evidence["grad_ratio"] > D.EXPLODING_WARNING
    assert "chaotic" in exp.message and "sigma_w=3" in exp.message
    assert "vanishing" not in _kinds(findings)


def test_linear_stack_with_sigma_w_2_explodes_twofold_per_layer(data):
    net = _stepped(data, "identity", "normal", sigma_w=2.0)
    f = _only(diagnose(net), "exploding")
    assert f.severity == "error"
    assert 1.7 < f.evidence["gain_per_layer"] < 2.3
    assert f.evidence["hidden_delta_ratio"] > D.EXPLODING_ERROR
    assert f.evidence["from_layer"] == DEPTH + 1 and f.evidence["to_layer"] == 1
    assert "clip" in f.fix and "learning rate" in f.fix


def test_relu_with_huge_negative_biases_has_dead_units_named_by_layer(data):
    net = _stepped(data, "relu", "he_normal", biases={5: -10.0, 6: -10.0})
    findings = diagnose(net)
    f = _only(findings, "dead_units")
    assert f.severity == "error"
    # layers 6-7 are pushed below zero; above them the input is all zeros, so relu'(0) = 0
    assert f.evidence["layers"] == list(range(6, DEPTH + 1))
    assert f.evidence["dead_fraction"] == [1.0] * (DEPTH - 5)
    assert f.evidence["negative_bias_layers"] == [6, 7]
    assert "no gradient reaches layers 1-20" in f.message
    assert "leaky_relu" in f.fix and "biases of layers 6-7" in f.fix
    assert "vanishing" not in _kinds(findings)      # the dead layers explain it


def test_a_nan_weight_is_nonfinite_naming_the_first_forward_and_backward_layers(data):
    net = _stepped(data, "relu", "he_normal", nan_weight=3)
    findings = diagnose(net)
    f = findings[0]
    assert f.kind == "nonfinite" and f.severity == "error"
    flow = net.gradient_flow()
    assert f.evidence["nonfinite_forward_layer"] == flow.nonfinite_forward_layer == 4
    assert f.evidence["nonfinite_backward_layer"] == flow.nonfinite_backward_layer
    assert f.evidence["nonfinite_parameter_layers"] == [4]
    assert "forward pass at layer 4" in f.message
    assert "learning rate" in f.fix and "clip" in f.fix


def test_hard_tanh_beyond_one_is_inactive_and_a_fully_inactive_layer_blocks_the_gradient(data):
    # hard_tanh is piecewise linear: |h| > 1 gives a zero derivative, which counts as inactive
    # (and dead on the whole batch), never as saturated
    net = _stepped(data, "hard_tanh", "glorot_normal", depth=6, biases={2: 5.0})
    flow = net.gradient_flow()
    assert np.all(flow.saturated_fraction == 0)
    assert flow.zero_derivative_fraction[2] == 1.0 == flow.dead_fraction[2]
    findings = diagnose(net)
    assert findings[0].severity == "error" and "saturation" not in _kinds(findings)
    dead = _only(findings, "dead_units")
    assert dead.evidence["blocked_layers"] == [3]
    assert "no gradient reaches layers 1-3" in dead.message
    assert "|h| > 1" in dead.message and "tanh" in dead.fix
    assert "leaky_relu" not in dead.fix              # relu advice does not fit hard_tanh


# ------------------------------------------------------------------------ healthy
@pytest.mark.parametrize("activation, init, seed", [
    ("relu", "he_normal", 0), ("relu", "he_normal", 1), ("relu", "he_normal", 2),
    ("tanh", "orthogonal", 0), ("tanh", "glorot_normal", 0), ("selu", "lecun_normal", 0),
])
def test_variance_preserving_networks_are_healthy(data, activation, init, seed):
    net = _stepped(data, activation, init, seed=seed)
    findings = diagnose(net)
    assert [f.kind for f in findings] == ["healthy"], format_findings(findings)
    f = findings[0]
    assert f.severity == "info"
    assert f.evidence["grad_ratio"] == net.gradient_flow().grad_ratio
    assert f.message.startswith("healthy: the gradient reaching layer 1 is ")


def test_a_zero_loss_gradient_is_reported_as_no_gradient():
    net = vg.MLP([4, 8, 8, 3], activation="tanh", dtype="float64", seed=0)
    X = np.random.default_rng(0).standard_normal((16, 4))
    out = net.forward(X)
    _, dout = vg.losses.mse(out, out.copy())
    net.backward(dout)
    assert [f.kind for f in diagnose(net)] == ["no_gradient"]


# ------------------------------------------------------------------------ thresholds
def test_the_documented_bands_are_the_code_s_thresholds():
    """The README and the diagnosis docstrings promise these bands; a test that derived its
    inputs from the constants would move with them, so the values are written out here."""
    assert (D.VANISHING_WARNING, D.VANISHING_ERROR) == (1e-2, 1e-4)
    assert (D.EXPLODING_WARNING, D.EXPLODING_ERROR) == (1e2, 1e4)
    assert (D.SATURATION_WARNING, D.SATURATION_ERROR) == (0.3, 0.8)
    assert (D.DEAD_WARNING, D.DEAD_ERROR) == (0.5, 0.9)
    assert (D.TREND_FACTOR, D.TREND_FRACTION, D.RECENT_RECORDS) == (1e2, 0.25, 5)
    assert set(D.SATURATING) == {"sigmoid", "tanh", "softsign", "softplus", "elu", "selu",
                                 "gelu", "silu"}


# Literal values on both sides of every documented band edge (1e-4 | 1e-2 | ... | 1e2 | 1e4)
@pytest.mark.parametrize("ratio, kind, severity", [
    (0.9e-4, "vanishing", "error"),
    (1.1e-4, "vanishing", "warning"),
    (0.9e-2, "vanishing", "warning"),
    (1.1e-2, "healthy", "info"),
    (0.99e2, "healthy", "info"),
    (1.01e2, "exploding", "warning"),
    (0.99e4, "exploding", "warning"),
    (1.01e4, "exploding", "error"),
])
def test_grad_ratio_thresholds_set_the_finding_and_its_severity(data, ratio, kind, severity):
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    findings = diagnose(dataclasses.replace(flow, grad_ratio=ratio))
    assert [(f.kind, f.severity) for f in findings] == [(kind, severity)]


@pytest.mark.parametrize("fraction, severity", [
    (0.29, None), (0.31, "warning"), (0.79, "warning"), (0.81, "error")])
def test_saturation_bands_apply_per_layer(data, fraction, severity):
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    sat = flow.saturated_fraction.copy()
    sat[2] = fraction
    findings = diagnose(dataclasses.replace(flow, saturated_fraction=sat))
    if severity is None:
        assert "saturation" not in _kinds(findings)
    else:
        f = _only(findings, "saturation")
        assert f.evidence["layers"] == [3] and f.severity == severity


@pytest.mark.parametrize("fraction, severity", [
    (0.49, None), (0.51, "warning"), (0.89, "warning"), (0.91, "error")])
def test_dead_unit_bands_apply_per_layer(data, fraction, severity):
    rflow = _stepped(data, "relu", "he_normal", depth=4).gradient_flow()
    dead = np.zeros_like(rflow.dead_fraction)
    dead[1] = fraction
    findings = diagnose(dataclasses.replace(rflow, dead_fraction=dead))
    if severity is None:
        assert "dead_units" not in _kinds(findings)
    else:
        f = _only(findings, "dead_units")
        assert f.evidence["layers"] == [2] and f.severity == severity


# ------------------------------------------------------------------------ sources
def test_a_gradient_flow_alone_names_the_activation_but_no_init(data):
    net = _stepped(data, "tanh", "standard")
    f = _only(diagnose(net.gradient_flow()), "vanishing")
    assert "20 tanh hidden layers" in f.message and "init=" not in f.message
    assert "init" not in f.evidence
    g = _only(diagnose(net.gradient_flow(), net=net), "vanishing")
    assert "init='standard'" in g.message and g.evidence["init"] == "standard"


def test_a_recorder_is_diagnosed_from_its_latest_records_and_last_epoch(data):
    X, y = data
    net = vg.MLP([WIDTH] + [32] * 6 + [10], activation="relu", init="he_normal",
                 dtype="float64", seed=0)
    opt = vg.optim.SGD(net, lr=0.01)
    rec, first_half = Recorder(), Recorder()
    for epoch in range(12):
        if epoch == 6:
            net.biases[2][...] = -10.0        # layer 3 dies mid-run
        rec.start_epoch()
        for i in range(0, 128, 32):
            net.train_step(X[i:i + 32], y[i:i + 32], "cross_entropy", opt)
            rec.record(net)
            if epoch < 6:
                first_half.record(net)
        rec.end_epoch()
    findings = diagnose(rec)
    f = _only(findings, "dead_units")
    assert f.evidence["measured_over"] == "epoch" and 3 in f.evidence["layers"]
    assert "epoch 12 (steps 44-47)" in f.message
    assert 3 in f.evidence["trend_layers"] and f.evidence["dead_fraction_first"][0] < 0.2
    assert "rose over the run" in f.message
    assert rec.init["name"] == "he_normal"
    assert [f.kind for f in diagnose(first_half)] == ["healthy"]


def test_a_recorder_reports_a_gradient_ratio_that_fell_100x_as_a_vanishing_trend(data):
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in np.geomspace(1e2, 2e-2, 12):      # ends above the alarm, but falling fast
        rec.record(dataclasses.replace(flow, grad_ratio=float(r)))
    findings = diagnose(rec)
    f = _only(findings, "vanishing")
    assert f.severity == "warning" and f.message.startswith("vanishing (trend):")
    assert f.evidence["grad_ratio_last"] / f.evidence["grad_ratio_first"] < 1 / D.TREND_FACTOR
    assert f.evidence["trend_steps"] == [0, 11]
    steady = Recorder()
    for _ in range(12):
        steady.record(flow)
    assert [f.kind for f in diagnose(steady)] == ["healthy"]


@pytest.mark.parametrize("start, end, kind", [(1e-4, 0.3, "vanishing"),
                                               (1e-4, 30.0, "vanishing"),
                                               (1e4, 5.0, "exploding"),
                                               (1e4, 0.05, "exploding")])
def test_a_ratio_coming_back_toward_one_is_a_recovery_not_the_opposite_problem(data, start,
                                                                             end, kind):
    """A ratio that started beyond the alarm range and ends inside it recovered: relu with
    LeCun init in compare (the error ratio went 0.0013 -> 0.31) read "exploding (trend)"."""
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in np.geomspace(start, end, 12):
        rec.record(dataclasses.replace(flow, grad_ratio=float(r)))
    findings = diagnose(rec)
    assert ("exploding" if kind == "vanishing" else "vanishing") not in _kinds(findings)
    f = _only(findings, kind)
    assert f.severity == "warning"
    assert f.message.startswith(f"{kind} at the start, recovering (trend):")
    assert f.evidence["grad_ratio_trend"] == "recovering"
    assert f.evidence["trend_steps"] == [0, 11]
    assert f.evidence["grad_ratio_first"] == pytest.approx(np.median(
        np.geomspace(start, end, 12)[:5]))


def test_a_ratio_still_vanishing_but_rising_says_so_in_the_vanishing_finding(data):
    net = _stepped(data, "sigmoid", "standard", depth=8)
    flow = net.gradient_flow()
    rec = Recorder()
    for r in np.geomspace(1e-10, 1e-6, 12):
        rec.record(dataclasses.replace(flow, grad_ratio=float(r)))
    findings = diagnose(rec)
    assert "exploding" not in _kinds(findings)
    f = _only(findings, "vanishing")
    assert "rose from" in f.message and "improving, but still below 0.01" in f.message
    assert f.evidence["grad_ratio_trend"] == "improving"
    healthy = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rising = Recorder()                          # from healthy to above 1, heading up
    for r in np.geomspace(0.05, 80.0, 12):
        rising.record(dataclasses.replace(healthy, grad_ratio=float(r)))
    assert _only(diagnose(rising), "exploding").message.startswith("exploding (trend):")


def test_a_delta_ratio_still_far_below_the_alarm_is_not_called_a_recovery(data):
    """The vanishing rule reads the hidden-layer ratio, not delta_ratio: a delta_ratio that
    rose from 1e-8 to 1e-5 with no vanishing finding on the snapshot is a trend of its own,
    at the error level its last value is at, not a recovery."""
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in np.geomspace(1e-9, 1e-4, 12):
        rec.record(dataclasses.replace(flow, delta_ratio=float(r)))
    findings = diagnose(rec)
    f = _only(findings, "vanishing")
    assert f.severity == "error" and f.message.startswith("vanishing (trend):")
    assert "improving, but still below 0.01" in f.message and "recovering" not in f.message
    assert "exploding" not in _kinds(findings)


@pytest.mark.parametrize("name, start, end, kind, severity, words", [
    ("delta_ratio", 1e-5, 1e-8, "vanishing", "error", "now below 0.01"),
    ("delta_ratio", 0.5, 0.004, "vanishing", "warning", "now below 0.01"),
    ("delta_ratio", 0.005, 500.0, "exploding", "warning", "from vanishing to exploding"),
    ("delta_ratio", 1e4, 1e6, "exploding", "error", "now above 100"),
])
def test_a_ratio_that_left_the_alarm_range_says_where_it_is_now(data, name, start, end, kind,
                                                                severity, words):
    """Not "still within the alarm range" once it is out of it, at the severity of where it
    ended (the hidden-layer ratio the snapshot rule reads stays healthy here)."""
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in [start] * 6 + [end] * 6:
        rec.record(dataclasses.replace(flow, **{name: float(r)}))
    f = _only(diagnose(rec), kind)
    assert f.severity == severity and words in f.message, f.message
    assert "still within the alarm range" not in f.message


@pytest.mark.parametrize("start", [1e-2, 1e2])
def test_a_ratio_that_moved_to_the_middle_of_the_range_is_no_trend(data, start):
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in [start] * 6 + [1.0] * 6:
        rec.record(dataclasses.replace(flow, grad_ratio=float(r)))
    assert _kinds(diagnose(rec)) == {"healthy"}


def test_both_ratios_trends_are_told_when_they_share_a_kind(data):
    """The gradient ratio recovered while the error ratio fell into the vanishing range: one
    vanishing finding says both, at the worse severity."""
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for g, d in [(0.005, 0.5)] * 6 + [(0.6, 1e-5)] * 6:
        rec.record(dataclasses.replace(flow, grad_ratio=g, delta_ratio=d))
    f = _only(diagnose(rec), "vanishing")
    assert "the gradient reaching layer 1" in f.message and "back within" in f.message
    assert "the error signal (delta) reaching layer 1" in f.message
    assert "now below 0.01" in f.message and f.severity == "error"
    assert f.evidence["grad_ratio_trend"] == "recovering"
    assert f.evidence["delta_ratio_trend"] == "beyond"


def test_a_recorder_says_since_when_values_are_nonfinite(data):
    good = _stepped(data, "relu", "he_normal", depth=4).gradient_flow()
    bad = _stepped(data, "relu", "he_normal", depth=4, nan_weight=2).gradient_flow()
    rec = Recorder()
    for s in range(10):
        rec.record(good if s < 7 else bad)
    f = diagnose(rec)[0]
    assert f.kind == "nonfinite" and f.evidence["nonfinite_since_step"] == 7
    assert "non-finite since step 7" in f.message


def test_recent_sets_how_many_latest_records_are_used(data):
    flow = _stepped(data, "tanh", "orthogonal", depth=4).gradient_flow()
    rec = Recorder()
    for r in (1.0, 1.0, 1.0, 1.0, 1e-3):
        rec.record(dataclasses.replace(flow, grad_ratio=r))
    assert "vanishing" not in _kinds(diagnose(rec, recent=5))      # median of 5 is 1.0
    f = _only(diagnose(rec, recent=1), "vanishing")
    assert "(at step 4)" in f.message


# ------------------------------------------------------------------------ output
def test_findings_are_sorted_most_severe_first(data):
    net = _stepped(data, "tanh", "normal", sigma_w=8.0)
    findings = diagnose(net)
    ranks = [D.SEVERITIES.index(f.severity) for f in findings]
    assert ranks == sorted(ranks, reverse=True) and len(findings) >= 2


def test_format_findings_shows_severity_message_evidence_and_fix(data):
    findings = diagnose(_stepped(data, "sigmoid", "standard"))
    text = format_findings(findings)
    assert text.startswith("[ERROR] vanishing: the gradient reaching layer 1 is ")
    assert "\n    evidence: grad_ratio=" in text and "\n    fix: " in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert str(findings[0]) == format_findings(findings[:1])
    assert format_findings([]) == "no findings"


def test_finding_evidence_holds_plain_python_values(data):
    for f in diagnose(_stepped(data, "tanh", "normal", sigma_w=3.0)):
        for v in f.evidence.values():
            assert isinstance(v, (int, float, str, list, type(None))), (f.kind, v)


# ------------------------------------------------------------------------ bad arguments
def test_bad_arguments_raise_naming_the_argument(data):
    net = _stepped(data, "relu", "he_normal", depth=2)
    with pytest.raises(TypeError, match=r"source: expected a vgcore.flow.GradientFlow, a "
                                        r"vgcore.MLP or a vgcore.recorder.Recorder, got int"):
        diagnose(3)
    with pytest.raises(ValueError, match=r"source: expected a Recorder with at least one "
                                         r"record, got an empty one"):
        diagnose(Recorder())
    with pytest.raises(TypeError, match=r"net: expected a vgcore.MLP or None, got str"):
        diagnose(net.gradient_flow(), net="net")
    other = vg.MLP([3, 4, 2], dtype="float64")
    with pytest.raises(ValueError, match=r"net: expected a network with sizes \[64, 64, 64, "
                                         r"10\].*got \[3, 4, 2\]"):
        diagnose(net.gradient_flow(), net=other)
    with pytest.raises(ValueError, match=r"recent: expected an integer >= 1, got 0"):
        diagnose(net, recent=0)
    with pytest.raises(TypeError, match=r"recent: expected an integer, got float"):
        diagnose(net, recent=2.0)
    with pytest.raises(ValueError, match=r"severity: expected one of info, warning, error, "
                                         r"got 'fatal'"):
        Finding("vanishing", "fatal", "m", {}, "f")
    with pytest.raises(TypeError, match=r"findings: expected Finding objects, got str at "
                                        r"position 0"):
        format_findings(["vanishing"])
    with pytest.raises(TypeError, match=r"findings: expected an iterable of Finding, got int"):
        format_findings(3)


def test_an_mlp_without_a_measured_step_raises_runtime_error():
    net = vg.MLP([4, 8, 3], dtype="float64")
    with pytest.raises(RuntimeError, match="gradient_flow: no measured step yet"):
        diagnose(net)


# ---------------------------------------------------------------- one definition of saturated
def test_relu_zero_derivatives_are_inactive_not_saturated_in_flow_and_diagnose(data):
    net = _stepped(data, "relu", "he_normal")
    flow = net.gradient_flow()
    hidden = slice(0, DEPTH)
    # about half of a healthy relu layer's entries have a zero derivative: inactive
    assert np.all(flow.zero_derivative_fraction[hidden] > 0.2)
    assert np.all(flow.saturated_fraction == 0)
    (f,) = diagnose(net)
    assert f.kind == "healthy"
    assert f.evidence["max_saturated_fraction"] == float(flow.saturated_fraction.max()) == 0.0


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "hard_tanh", "identity"])
def test_piecewise_linear_activations_never_count_as_saturated(data, act):
    # leaky_relu's 0.01 slope is below 5% of its maximum, yet it is a constant slope, not a
    # decayed one: the piecewise-linear activations have a saturation threshold of 0
    from vgcore.measure.flow import SATURATING, saturation_threshold
    assert act not in SATURATING and saturation_threshold(act) == 0.0
    net = vg.MLP([WIDTH] + [WIDTH] * 4 + [10], activation=act, init="normal", sigma_w=3.0,
                 sigma_b=1.0, dtype="float64", seed=0)
    net.train_step(*data)
    assert np.all(net.gradient_flow().saturated_fraction == 0)


def test_saturating_activations_share_one_threshold_between_flow_and_diagnose(data):
    from vgcore.measure.flow import SATURATING, SATURATION_THRESHOLD, saturation_threshold
    from vgcore.core.activations import max_derivative
    for act in SATURATING:
        assert saturation_threshold(act) == SATURATION_THRESHOLD * max_derivative(act) > 0
    net = _stepped(data, "tanh", "normal", sigma_w=3.0)
    flow = net.gradient_flow()
    sat = _only(diagnose(net), "saturation")
    np.testing.assert_array_equal(sat.evidence["saturated_fraction"],
                                  flow.saturated_fraction[np.asarray(sat.evidence["layers"]) - 1])
    assert flow.saturated_fraction[:DEPTH].min() > 0.3


# ------------------------------------------------------------------------ advice for this network
def _try_clause(message):
    return message.rpartition("; try ")[2]


def test_adam_run_is_not_told_to_try_adam_and_hears_why_adam_does_not_help(data):
    net = _stepped(data, "sigmoid", "standard")
    f = _only(diagnose(net, optimizer=vg.optim.Adam(net)), "vanishing")
    assert "trained with Adam" in f.message
    clause = _try_clause(f.message)
    assert "or Adam" not in clause and ", Adam" not in clause
    assert "Adam, in use, cannot lift layer 1's gradient entries" in clause
    assert "far below its eps=1e-8" in clause
    rms = f.evidence["first_layer_grad_rms"]
    g = net.gradient_flow().grad_norm[0] / np.sqrt(WIDTH * WIDTH)
    assert rms == pytest.approx(g, rel=1e-12) and rms < 1e-10
    assert "Adam is already in use" in f.fix
    # by name, the same; an SGD run is told Adam would not help either, with the number
    assert "Adam, in use" in _only(diagnose(net, optimizer="adam"), "vanishing").message
    sgd = _only(diagnose(net, optimizer="sgd"), "vanishing")
    assert "Adam" not in _try_clause(sgd.message) and "would not help" in sgd.fix


def test_advice_names_this_networks_depth_and_activation_never_another(data):
    net = _stepped(data, "tanh", "standard", depth=12)
    f = _only(diagnose(net, optimizer=vg.optim.SGD(net, lr=0.1)), "vanishing")
    assert "12 tanh hidden layers" in f.message and "trained with SGD" in f.message
    for text in (f.message, f.fix):
        assert "sigmoid" not in text and "20 " not in text
    # the weight-gradient ratio looks level; the message says why it misleads
    assert f.evidence["grad_ratio"] > D.VANISHING_WARNING
    assert "||dL/dW_l|| ~ ||x_l|| ||delta_l||" in f.message
    # an SGD run whose first-layer gradients are well above Adam's eps may try Adam
    assert _try_clause(f.message).endswith("or Adam")


def test_remedies_the_network_already_uses_are_not_suggested(data):
    plain = _stepped(data, "sigmoid", "standard", depth=6)
    flow = plain.gradient_flow()
    # the same measurements, attributed to a network that has batch norm and residual blocks
    normed = vg.MLP([WIDTH] + [WIDTH] * 6 + [10], activation="sigmoid", norm="batch",
                    residual="auto", dtype="float64", seed=0)
    f = _only(diagnose(flow, net=normed), "vanishing")
    assert "with init='standard', batch norm, residual blocks" in f.message
    clause = _try_clause(f.message)
    assert "batch norm" not in clause and "residual" not in clause
    assert "relu with he init" in clause
    g = _only(diagnose(flow, net=plain), "vanishing")
    assert "batch norm" in _try_clause(g.message) and "residual" in _try_clause(g.message)


def test_an_exploding_run_that_clips_is_told_to_clip_harder(data):
    net = _stepped(data, "tanh", "normal", sigma_w=3.0)
    opt = vg.optim.SGD(net, lr=0.01, clip_norm=1.0)
    f = _only(diagnose(net, optimizer=opt), "exploding")
    assert "gradient clipping" not in _try_clause(f.message)
    assert "clip gradients harder (clip_norm is 1 now)" in f.fix
    g = _only(diagnose(net), "exploding")
    assert "gradient clipping" in _try_clause(g.message)


def test_a_bad_optimizer_argument_is_refused_by_name(data):
    net = _stepped(data, "tanh", "orthogonal", depth=2)
    with pytest.raises(ValueError, match=r"optimizer: expected a vgcore.optim optimiser or one "
                                         r"of sgd, .*adamw, got 'lbfgs'"):
        diagnose(net, optimizer="lbfgs")
    with pytest.raises(TypeError, match=r"optimizer: expected a vgcore.optim optimiser, a name "
                                        r"or None, got int"):
        diagnose(net, optimizer=3)


# ------------------------------------------------------------------ underflow

def _vanishing_float32(dtype="float32", flush=True):
    """Issue #11's vanishing stack: 60 sigmoid layers of 96 under the standard init, one step."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 96)).astype(dtype)
    y = rng.integers(0, 10, 64)
    net = vg.MLP([96] * 61 + [10], activation="sigmoid", seed=0, dtype=dtype,
                 flush_subnormals=flush)
    net.train_step(X, y)
    return net


def test_the_underflow_threshold_is_one_percent():
    assert D.UNDERFLOW_WARNING == 0.01


@pytest.mark.parametrize("flush", [True, False])
def test_an_error_lost_to_underflow_reads_as_vanished_below_float32s_range(flush):
    net = _vanishing_float32(flush=flush)
    flow = net.gradient_flow()
    lost = [l + 1 for l in np.flatnonzero(flow.underflow_fraction[:-1] > 0.01)]
    assert lost
    for source in (net, flow):
        f = diagnose(source)[0]
        assert f.kind == "vanishing" and f.severity == "error"
        assert "below float32's smallest normal (1.2e-38)" in f.message
        assert "the gradient vanished below float32's range" in f.message
        assert "float64 (dtype='float64') shows its size" in f.message
        assert f.evidence["underflow_layers"] == lost
        assert f.evidence["underflow_fraction"] == pytest.approx(
            flow.underflow_fraction[np.asarray(lost) - 1].tolist())
    assert "float64" in diagnose(net)[0].fix
    if flush:      # exactly 0 below the layers that lost it
        assert f"layers 1-{min(lost) - 1} receive an error of exactly 0" in diagnose(net)[0].message


def test_in_float64_the_same_network_is_vanishing_without_underflow():
    f = diagnose(_vanishing_float32("float64"))[0]
    assert f.kind == "vanishing" and f.severity == "error"
    assert "underflow" not in f.message and "underflow_layers" not in f.evidence


def test_underflow_is_judged_against_the_threshold():
    """A flow whose layer lost 1.5% of its entries is reported, 0.5% is not (the threshold is
    documented as 1%); a healthy relu/He network loses none."""
    flow = _vanishing_float32().gradient_flow()
    L = flow.n_layers
    for value, reported in ((0.015, True), (0.005, False)):
        uf = np.zeros(L)
        uf[30] = value
        f = diagnose(dataclasses.replace(flow, underflow_fraction=uf))[0]
        assert f.kind == "vanishing"
        assert ("underflow_layers" in f.evidence) is reported
        if reported:
            assert f.evidence["underflow_layers"] == [31]
    healthy = vg.MLP([96] * 61 + [10], activation="relu", init="he_normal", seed=0)
    rng = np.random.default_rng(1)
    healthy.train_step(rng.standard_normal((64, 96)).astype(np.float32),
                       rng.integers(0, 10, 64))
    assert not np.any(healthy.gradient_flow().underflow_fraction)
    assert all("underflow" not in f.message for f in diagnose(healthy))


def test_an_old_recording_without_underflow_fraction_is_still_diagnosed():
    net = _vanishing_float32()
    rec = Recorder()
    rec.record(net)
    obj = rec.to_json_object()
    obj["version"] = 1
    del obj["fields"]["underflow_fraction"]
    old = Recorder.from_json_object(obj)
    f = diagnose(old)[0]
    assert f.kind == "vanishing" and "underflow_layers" not in f.evidence
    assert "underflow_layers" in diagnose(rec)[0].evidence

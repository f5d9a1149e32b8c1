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


def test_fully_saturated_hard_tanh_blocks_the_gradient(data):
    net = _stepped(data, "hard_tanh", "normal", depth=6, sigma_w=20.0)
    findings = diagnose(net)
    assert findings[0].severity == "error"
    sat = _only(findings, "saturation")
    assert sat.severity == "error" and min(sat.evidence["saturated_fraction"]) > 0.8


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
    assert D.SATURATING == ("sigmoid", "tanh", "softsign", "hard_tanh")


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

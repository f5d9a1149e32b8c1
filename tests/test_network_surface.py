"""The network's public surface for optimisers and tools (updates, normalisation buffers,
memory, non-finite steps) and NonFiniteError; nothing outside a class touches its
underscore names."""
from __future__ import annotations

import ast
import pathlib
import pickle
import re

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import _contract


def _net(**kw):
    kw.setdefault("seed", 0)
    return vg.MLP([4, 6, 3], activation="tanh", dtype="float64", **kw)


def _step(net, seed=0, batch=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.sizes[0])).astype(net.dtype)
    return net.train_step(X, np.arange(batch) % net.sizes[-1], "cross_entropy")


def _hyper(**slots):
    hp = np.zeros(_contract.N_HYPERPARAMETERS)
    hp[_contract.HYPER["gscale"]] = 1.0
    for k, v in slots.items():
        hp[_contract.HYPER[k]] = v
    return hp


# ------------------------------------------------------------------------------ updates
def test_sgd_step_and_the_generic_sgd_update_agree_bit_for_bit():
    a, b = _net(), _net()
    _step(a)
    _step(b)
    a.sgd_step(0.1)
    b.apply_update("sgd", _hyper(lr=0.1))
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_allclose(a.gradient_flow().update_to_weight,       # summed apart
                               b.gradient_flow().update_to_weight, rtol=1e-13)


def test_an_update_is_measured_once_per_backward_pass():
    net = _net()
    _step(net)
    w0 = net.weights[0].copy()
    net.sgd_step(0.1)
    first = net.gradient_flow().update_to_weight.copy()
    net.sgd_step(0.1)                         # a second update: applied, not measured
    assert not np.array_equal(net.weights[0], w0 - 0.1 * net.weight_grads[0])
    np.testing.assert_array_equal(net.gradient_flow().update_to_weight, first)
    expect = np.linalg.norm(0.1 * net.weight_grads[0]) / np.linalg.norm(w0)
    assert first[0] == pytest.approx(expect, rel=1e-12)


def test_adam_update_writes_both_states_and_reads_the_gradient_only():
    net = _net()
    _step(net)
    g = net.grads.copy()
    s1, s2 = np.zeros_like(net.params), np.zeros_like(net.params)
    net.apply_update("adam", _hyper(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, bias_corr1=0.1,
                                    bias_corr2=0.001, first_step=1), s1, s2)
    np.testing.assert_array_equal(net.grads, g)
    np.testing.assert_allclose(s1, 0.1 * g, rtol=1e-13)
    np.testing.assert_allclose(s2, 0.001 * g * g, rtol=1e-13)


@pytest.mark.parametrize("call, match", [
    (lambda n: n.apply_update("lion", _hyper(lr=0.1)), "kind: expected one of sgd"),
    (lambda n: n.apply_update("sgd", [0.1] * 12), "hyper: expected a contiguous float64"),
    (lambda n: n.apply_update("sgd", np.zeros(3)), "hyper: expected a contiguous float64"),
    (lambda n: n.apply_update("adam", _hyper(lr=0.1), np.zeros_like(n.params)),
     "state2: the 'adam' update needs 2 state buffers"),
    (lambda n: n.apply_update("sgd", _hyper(lr=0.1, beta1=0.9)),
     "state1: the 'sgd' update needs 1 state buffer like params, got None"),
    (lambda n: n.apply_update("rmsprop", _hyper(lr=0.1), np.zeros(3)), "state1: expected"),
    (lambda n: n.apply_update("rmsprop", _hyper(lr=0.1), n.grads), "state1: expected"),
    (lambda n: n.apply_update("rmsprop", _hyper(lr=0.1), n.params.astype(np.float32)),
     "state1: expected"),
    (lambda n: n.sgd_step(float("nan")), "lr: expected a finite number"),
])
def test_bad_updates_are_refused_and_change_nothing(call, match):
    net = _net()
    _step(net)
    before = net.params.copy(), net.grads.copy()
    with pytest.raises((TypeError, ValueError), match=match):
        call(net)
    np.testing.assert_array_equal(net.params, before[0])
    np.testing.assert_array_equal(net.grads, before[1])


def test_optimizer_hyperparameters_rebuild_the_same_optimizer():
    net = _net()
    for opt in (vg.optim.SGD(net, lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1),
                vg.optim.RMSprop(net, alpha=0.9, eps=1e-6, clip_norm=2.0),
                vg.optim.Adagrad(net, eps=1e-9, clip_value=0.5),
                vg.optim.Adam(net, betas=(0.8, 0.99)), vg.optim.AdamW(net, weight_decay=0.2)):
        twin = type(opt)(net, lr=opt.lr, **opt.hyperparameters())
        assert twin.hyperparameters() == opt.hyperparameters()
        assert repr(twin) == repr(opt)
        assert opt.memory_usage() == sum(s.nbytes for s in opt.state_dict()["states"]) + \
            8 * _contract.N_HYPERPARAMETERS


# ------------------------------------------------------------------------------ buffers, memory
def test_norm_buffers_are_the_running_averages_every_layer_views():
    net = vg.MLP([4, 6, 6, 3], norm=["batch", None], seed=0)
    mean, var = net.norm_buffers
    assert mean.dtype == var.dtype == np.float64 and mean.shape == (6 + 6 + 3,)
    mean[:6] = 7.0
    var[:6] = 3.0
    assert np.all(net.running_means[0] == 7.0) and np.all(net.running_vars[0] == 3.0)
    assert net.running_means[1] is None


def test_memory_usage_counts_every_buffer_and_the_workspaces_of_batch_sizes_seen():
    net = _net()
    m0 = net.memory_usage()
    assert m0["parameters"] == net.params.nbytes == m0["gradients"]
    assert m0["workspace"] == 0 and m0["normalisation"] == 2 * 8 * (6 + 3)
    assert m0["measurement"] >= 2 * net.n_layers * _contract.N_STATS * 8
    assert m0["total"] == sum(v for k, v in m0.items() if k != "total")
    _step(net, batch=5)
    _step(net, batch=7)
    per = (6 + 3) * 8                      # H, A, D per row (float64): 9 units each
    assert net.memory_usage(5)["workspace"] == 5 * (3 * per + 4 * 8 + 3 * 8)
    assert net.memory_usage()["workspace"] == net.memory_usage(5)["workspace"] + \
        net.memory_usage(7)["workspace"]
    assert net.memory_usage(9)["workspace"] == 0


# ------------------------------------------------------------------------------ non-finite steps
def test_nonfinite_locates_the_first_layer_of_a_forward_overflow_and_train_step_refuses():
    net = vg.MLP([4, 6, 6, 3], activation="relu", seed=0)
    opt = vg.optim.SGD(net, lr=0.1)
    X = np.ones((3, 4), np.float32)
    net.train_step(X, np.array([0, 1, 2]), "cross_entropy", opt)
    assert net.nonfinite() is None
    before = net.params.copy()
    X[1] = 3e37                                 # finite, but overflows layer 1
    with pytest.raises(vg.NonFiniteError) as e:
        net.train_step(X, np.array([0, 1, 2]), "cross_entropy", opt)
    assert isinstance(e.value, FloatingPointError) and not isinstance(e.value, ValueError)
    assert (e.value.where, e.value.layer) == ("forward", 1)
    assert "train_step: the forward pass produced NaN or Inf at layer 1" in str(e.value)
    np.testing.assert_array_equal(net.params, before)
    assert net.nonfinite() == ("forward", 1)


def test_a_backward_overflow_stops_train_step_before_the_optimizer():
    net = vg.MLP([2, 4, 1], activation="identity", seed=0)
    net.weights[1][...] = 1e3
    opt = vg.optim.SGD(net, lr=0.1)
    before = net.params.copy()
    X = np.full((1, 2), 0.5, np.float32)
    # the loss gradient (-1e18) and its square are finite float32, layer 1's error (-1e21) is
    # but its square is not: the backward pass "overflows" first at layer 1 (see vgcore.flow)
    y = np.full((1, 1), 5e17, np.float32)
    with pytest.raises(vg.NonFiniteError) as e:
        net.train_step(X, y, "mse", opt)
    assert (e.value.where, e.value.layer) == ("backward", 1)
    np.testing.assert_array_equal(net.params, before)
    assert opt.step_count == 0


def test_nonfinite_needs_measurements():
    net = _net(measure=False)
    with pytest.raises(RuntimeError, match="measurements are off"):
        net.nonfinite()


def test_nonfinite_error_pickles_with_its_attributes():
    e = vg.NonFiniteError("step 3: boom", where="backward", layer=2, step=3)
    f = pickle.loads(pickle.dumps(e))
    assert (str(f), f.where, f.layer, f.step) == ("step 3: boom", "backward", 2, 3)


def test_fit_raises_nonfinite_error_with_the_step():
    X, y = vg.datasets.gaussian_mixture(64, 16, 4, seed=0)
    net = vg.MLP([16, 32, 4], activation="relu", seed=0)
    with pytest.raises(vg.NonFiniteError) as e:
        vg.fit(net, X, y, optimizer=vg.optim.SGD(net, lr=1e7), epochs=5, batch_size=16,
               verbose=0)
    assert e.value.step is not None and e.value.where in ("forward", "backward")
    assert str(e.value).startswith(f"step {e.value.step}: the {e.value.where} pass")


# ------------------------------------------------------------------------------ encapsulation
_OUTSIDE = re.compile(
    r"\b(?:net|network|self\.net|trainer\.net|opt|optimizer|self\.optimizer|model|twin|rec|"
    r"recorder|self\.recorder)\._[a-z]\w*|\b_engine\._[a-z]\w*|\bvg\._[a-z]\w*\.\w+|"
    r"\b(?:MLP|Recorder|Optimizer|Engine)\._[a-z]\w*")


def test_no_module_touches_the_underscore_names_of_a_network_optimizer_or_the_engine():
    """Only network.py reaches into an MLP (and its compiled Engine), only recorder.py into a
    Recorder (their mixins, core/_updates.py, recorder_epochs.py, recorder_io.RecorderExports,
    use only ``self``); optimisers, the trainer, checkpoints, curvature, the commands and the
    experiments use the public surface."""
    root = pathlib.Path(vg.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in ("network.py", "recorder.py"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for m in _OUTSIDE.finditer(code):
                offenders.append(f"{path.relative_to(root)}:{i}: {m.group(0)}")
    assert offenders == []


def _module_aliases(tree):
    """Names a file binds to modules (``import x as y``, ``from pkg import module``)."""
    import importlib.util
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                try:
                    found = importlib.util.find_spec(f"{node.module}.{a.name}") is not None
                except (ImportError, ValueError):
                    found = False
                if found:
                    names.add(a.asname or a.name)
    return names


def _own_underscore_names(tree):
    """The underscore attributes a file's own classes define (methods, ``self._x = ...``)."""
    own = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == "self":
                own.add(node.attr)
            elif isinstance(node, ast.Assign):
                own.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return own


def test_no_object_s_underscore_attribute_is_read_outside_the_file_of_its_class():
    """The general form of the rule, on the syntax tree: ``obj._name`` (obj not self or cls,
    nor a module) is allowed only where a class of the same file defines ``_name`` (a
    classmethod filling the instance it builds).  Any object: networks, optimisers, recorders,
    sweeps, engines.  Modules' own private helpers (``mean_field._vmap``) are not objects."""
    root = pathlib.Path(vg.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        modules, own = _module_aliases(tree), _own_underscore_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                continue
            base = node.value
            if isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in modules):
                continue
            if node.attr in own:
                continue
            offenders.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []

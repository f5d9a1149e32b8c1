"""The integers the compiled core and Python share are defined once (src/vg_contract.h), read
from the compiled module, and checked when vgcore is imported."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vgcore as vg
from vgcore import _engine
from vgcore.core import _contract
from vgcore.measure import flow
from vgcore.train import optim


def test_the_compiled_module_publishes_named_tables_in_id_order():
    for name in ("ACTIVATIONS", "STATISTICS", "OPTIMIZERS", "HYPERPARAMETERS", "NORMS"):
        table = getattr(_engine, name)
        assert isinstance(table, tuple) and table and len(set(table)) == len(table)
        assert all(isinstance(n, str) and n.isidentifier() for n in table), name
    assert _engine.N_STATS == len(_engine.STATISTICS)
    assert _engine.N_HYPERPARAMETERS == len(_engine.HYPERPARAMETERS)
    assert _engine.NORMS == ("none", "batch", "layer")


def test_python_takes_ids_counts_and_slots_from_the_compiled_module():
    assert {n: vg.Activation(n).kind for n in vg.ACTIVATIONS} == {
        n: i for i, n in enumerate(_engine.ACTIVATIONS)}
    assert flow.N_STATS == _engine.N_STATS
    assert set(flow.STAT_FIELDS) == set(_engine.STATISTICS)
    net = vg.MLP([3, 4, 2], seed=0)
    opt = optim.Adam(net)
    assert opt.state_dict()["states"][0].shape == net.params.shape
    # the measurement arrays the engine writes are sized by the engine's own count
    assert net.memory_usage()["measurement"] >= 2 * net.n_layers * _engine.N_STATS * 8


def test_every_compiled_activation_id_runs_its_own_kernel():
    """Each id the core names computes that name's phi (the NumPy spec), so a mislabelled name
    table in src/vg_contract.h could not pass."""
    h = np.linspace(-3, 3, 13)
    for kind, name in enumerate(_engine.ACTIVATIONS):
        net = vg.MLP([13, 13, 13], activation=name, dtype="float64", seed=0)
        for w, b in zip(net.weights, net.biases):
            w[...] = np.eye(13)
            b[...] = 0
        out = net.forward(h.reshape(1, 13))[0]           # phi(h) @ I + 0
        spec = vg.ACTIVATIONS[name]
        assert spec.kind == kind
        expect = np.empty_like(h)
        spec.forward(h, spec.default, expect, np.empty_like(h))
        np.testing.assert_allclose(out, expect, rtol=1e-12, atol=1e-300)


def test_require_names_what_only_one_side_has():
    _contract.require("things", ("a", "b"), ("b", "a"))          # order does not matter
    with pytest.raises(_contract.ContractError) as e:
        _contract.require("measurement fields", ("a", "b"), ("a", "b", "n_overflow"))
    msg = str(e.value)
    assert "measurement fields" in msg and "n_overflow" in msg and "vg_contract.h" in msg
    with pytest.raises(_contract.ContractError, match="Python expects c"):
        _contract.require("things", ("a", "c"), ("a",))
    assert issubclass(_contract.ContractError, ImportError)


_MISMATCH = textwrap.dedent("""
    import importlib, sys
    import vgcore
    from vgcore import _engine
    _engine.STATISTICS = _engine.STATISTICS + ("n_overflow",)   # a field added in C only
    _engine.N_STATS = _engine.N_STATS + 1
    from vgcore.core import _contract
    importlib.reload(_contract)
    try:
        importlib.reload(sys.modules["vgcore.measure.flow"])
    except ImportError as e:
        print(type(e).__name__, e)
    else:
        print("imported")
""")


def test_a_statistic_added_in_c_only_fails_the_import_loudly(tmp_path):
    # run outside the source tree, so the installed vgcore (with its compiled module) is imported
    out = subprocess.run([sys.executable, "-c", _MISMATCH], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ContractError"), out.stdout
    assert "n_overflow" in out.stdout and "measurement fields" in out.stdout

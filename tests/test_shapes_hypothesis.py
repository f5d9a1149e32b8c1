"""Random architectures (depth, odd and width-1 layers, batch 1), activations, losses and
dtypes: the engine agrees with the NumPy reference."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vgcore as vg
from vgcore.core import reference as R
from _vgtest import (ACTIVATION_NAMES, LOSS_NAMES, compare_passes, engine_pass, make_target,
                     num_threads, reference_pass)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

activations = st.one_of(
    st.sampled_from(ACTIVATION_NAMES).map(vg.Activation),
    st.floats(-1.0, 1.0, allow_nan=False).map(lambda s: vg.Activation("leaky_relu", slope=s)),
    st.floats(0.05, 3.0).map(lambda a: vg.Activation("elu", alpha=a)),
)


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 6))                          # weight layers: len(sizes) 2..7
    sizes = draw(st.lists(st.integers(1, 40), min_size=depth + 1, max_size=depth + 1))
    loss = draw(st.sampled_from(LOSS_NAMES))
    if loss == "cross_entropy" and sizes[-1] == 1 and draw(st.booleans()):
        sizes[-1] = 2
    per_layer = draw(st.booleans())
    if per_layer:
        activation = draw(st.lists(activations, min_size=depth - 1, max_size=depth - 1))
    else:
        activation = draw(activations)
    return dict(
        sizes=sizes,
        activation=activation,
        loss=loss,
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        batch=draw(st.integers(1, 40)),
        seed=draw(st.integers(0, 2**16)),
        init=draw(st.sampled_from(vg.INITIALISERS[:-1])),     # 'normal' needs sigma_w
        scale=draw(st.sampled_from([0.1, 1.0, 4.0])),
        threads=draw(st.sampled_from([1, 2])),
        input_grad=draw(st.booleans()),
    )


@SETTINGS
@given(problems())
def test_engine_matches_reference_on_random_architectures(p):
    dtype = p["dtype"]
    net = vg.MLP(p["sizes"], activation=p["activation"], init=p["init"], dtype=dtype,
                 seed=p["seed"], sigma_b=0.2)
    ref = R.ReferenceMLP.from_network(net)
    rng = np.random.default_rng(p["seed"])
    X = (p["scale"] * rng.standard_normal((p["batch"], p["sizes"][0]))).astype(dtype)
    target = make_target(p["loss"], p["batch"], p["sizes"][-1], dtype, rng)
    with num_threads(p["threads"]):
        eng = engine_pass(net, X, p["loss"], target, input_grad=p["input_grad"])
    want = reference_pass(ref, X, p["loss"], target, input_grad=p["input_grad"])
    assert (eng["dX"] is None) == (not p["input_grad"])
    compare_passes(eng, want, dtype, str(p))


@SETTINGS
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=7),
       batches=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_changing_batch_sizes_matches_reference(sizes, batches, dtype):
    net = vg.MLP(sizes, activation="tanh", dtype=dtype, seed=len(batches), sigma_b=0.3)
    ref = R.ReferenceMLP.from_network(net)
    rng = np.random.default_rng(sum(sizes))
    for b in batches:
        X = rng.standard_normal((b, sizes[0])).astype(dtype)
        dout = rng.standard_normal((b, sizes[-1])).astype(dtype)
        out = net.forward(X).copy()
        dX = net.backward(dout).copy()
        want_out = ref.forward(X).copy()
        want_dX = ref.backward(dout)
        compare_passes(dict(out=out, loss=0.0, dout=dout, grads=net.grads.copy(), dX=dX),
                       dict(out=want_out, loss=0.0, dout=dout, grads=ref.grads.copy(),
                            dX=want_dX), dtype, f"batch {b}")

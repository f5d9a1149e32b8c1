"""Hostile input to the public API, driven by hypothesis.

Property, for every call below: it either works correctly (the result is bit-identical to the
same call on a twin network given a canonical copy of the argument: C-contiguous, aligned,
writable, the network's dtype) or it raises ValueError / TypeError (RuntimeError for call-order
errors) whose message names the argument; nothing crashes the interpreter; and after a rejected
call the network's parameters, gradients, batch-norm running averages and dropout counter (and
the optimiser's state) are exactly what they were.

Hostile values: wrong shapes and ndims, zero-size arrays, integer, bool, object, complex,
float16, long double and byte-swapped dtypes, strided, transposed, read-only and misaligned
arrays (``np.frombuffer`` of a bytearray at offset 1), NaN and +-Inf, labels out of range or of
float type, negative and huge sizes (2**40), unknown names, float64 data for a float32 network
(and the reverse), arrays that alias the network's own output buffers.

Deterministic: ``derandomize=True`` and no example database.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import vgcore as vg
from vgcore.train import checkpoint as ckpt

# no "explain" phase: on a failure it re-runs and re-formats the example many times (minutes)
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    report_multiple_bugs=False)
FEW = settings(SETTINGS, max_examples=4)

REJECT = (TypeError, ValueError)


# =============================================================================== helpers

def misaligned(shape, dtype, values=None):
    """A writable, C-contiguous array whose data pointer is 1 byte off alignment."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    a = np.frombuffer(bytearray(n + 1), np.uint8, count=n, offset=1).view(dt).reshape(shape)
    assert a.flags.c_contiguous and a.flags.writeable and (dt.itemsize == 1 or
                                                           not a.flags.aligned)
    if values is not None:
        a[...] = values
    return a


def canonical(a, dtype=None):
    """The well-behaved copy of ``a`` a twin network receives."""
    return np.array(np.asarray(a), dtype=dtype, order="C", copy=True)


def names(exc, *argnames):
    msg = str(exc)
    return any(re.search(rf"(^|[^A-Za-z_]){re.escape(n)}([^A-Za-z_]|$)", msg) for n in argnames)


def assert_names(exc, *argnames):
    assert names(exc, *argnames), (
        f"{type(exc).__name__} does not name the argument {' / '.join(argnames)}: {exc}")


NET_KINDS = ("plain32", "plain64", "extras32")


def make_net(kind):
    """Small networks: plain float32 / float64, and one with batch norm, a residual block and
    dropout (the general compiled path, with running averages and a dropout counter)."""
    if kind == "plain32":
        return vg.MLP([4, 6, 3], activation="tanh", dtype="float32", seed=0, sigma_b=0.1)
    if kind == "plain64":
        return vg.MLP([4, 6, 3], activation="tanh", dtype="float64", seed=0, sigma_b=0.1)
    return vg.MLP([4, 6, 6, 3], activation="tanh", dtype="float32", seed=0, sigma_b=0.1,
                  norm="batch", residual=0.5, dropout=0.25)


def prime(net, batch=5):
    """One valid training step, so that gradients and running averages are not trivial."""
    rng = np.random.default_rng(99)
    X = rng.standard_normal((batch, net.sizes[0])).astype(net.dtype)
    net.train_step(X, np.arange(batch) % net.sizes[-1], "cross_entropy")
    return net


def state(net, opt=None):
    s = {"params": net.params.copy(), "grads": net.grads.copy(),
         "running_means": [None if m is None else m.copy() for m in net.running_means],
         "running_vars": [None if v is None else v.copy() for v in net.running_vars],
         "training": net.training}
    if any(net.dropouts):        # the counter only matters (draws the masks) with dropout
        s["dropout_counter"] = net.dropout_counter
    if opt is not None:
        s["opt"] = opt.state_dict()
    return s


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k == "opt":
            assert a[k]["step_count"] == b[k]["step_count"], "optimizer step_count"
            for x, y in zip(a[k]["states"], b[k]["states"]):
                np.testing.assert_array_equal(x, y, err_msg="optimizer state")
        elif isinstance(a[k], list):
            for l, (x, y) in enumerate(zip(a[k], b[k])):
                assert (x is None) == (y is None)
                if x is not None:
                    np.testing.assert_array_equal(x, y, err_msg=f"{k}[{l}]")
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def assert_equal_results(got, want, what):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=what)


# ================================================================ hostile float matrices
#
# A variant is (name, verdict): "ok" must be accepted (and give the canonical result),
# "reject" must raise TypeError / ValueError naming the argument.

MATRIX_VARIANTS = [
    ("valid", "ok"), ("read_only", "ok"), ("tiny_values", "ok"), ("huge_finite", "ok"),
    ("one_row_of_strided", "ok"),
    ("misaligned", "reject"), ("transposed", "reject"), ("strided_rows", "reject"),
    ("strided_cols", "reject"), ("nan", "reject"), ("inf", "reject"), ("-inf", "reject"),
    ("ndim0", "reject"), ("ndim1", "reject"), ("ndim3", "reject"), ("zero_rows", "reject"),
    ("zero_cols", "reject"), ("wrong_cols", "reject"), ("list", "reject"), ("none", "reject"),
    ("str", "reject"), ("scalar", "reject"),
    ("int8", "reject"), ("int32", "reject"), ("int64", "reject"), ("uint8", "reject"),
    ("uint64", "reject"), ("bool", "reject"), ("object", "reject"), ("complex64", "reject"),
    ("complex128", "reject"), ("float16", "reject"), ("longdouble", "reject"),
    ("byteswapped", "reject"), ("other_float", "reject"),
]


def hostile_matrix(variant, rows, cols, dtype, seed, pos):
    """``variant`` of a (rows, cols) matrix of ``dtype`` with standard-normal values."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, cols)).astype(dtype)
    if variant == "valid":
        return base
    if variant == "read_only":
        base.flags.writeable = False
        return base
    if variant == "tiny_values":
        return (base * np.finfo(dtype).tiny).astype(dtype)        # subnormals
    if variant == "huge_finite":
        return np.clip(base * np.finfo(dtype).max, np.finfo(dtype).min,
                       np.finfo(dtype).max).astype(dtype)
    if variant == "one_row_of_strided":       # shape (1, cols), C-contiguous by numpy's rules
        big = np.repeat(base[:1], 3, axis=0)
        return big[::2][:1]
    if variant == "misaligned":
        return misaligned((rows, cols), dtype, base)
    if variant == "transposed":
        return np.ascontiguousarray(base.T).T
    if variant == "strided_rows":
        return np.repeat(base, 2, axis=0)[::2] if rows > 1 else np.repeat(base, 2, axis=1)[:, ::2]
    if variant == "strided_cols":
        return np.repeat(base, 2, axis=1)[:, ::2]
    if variant in ("nan", "inf", "-inf"):
        a = base.copy()
        a.flat[pos % a.size] = float(variant)
        return a
    if variant == "ndim0":
        return np.array(base.flat[0])
    if variant == "ndim1":
        return base.ravel()
    if variant == "ndim3":
        return base[None]
    if variant == "zero_rows":
        return np.zeros((0, cols), dtype)
    if variant == "zero_cols":
        return np.zeros((rows, 0), dtype)
    if variant == "wrong_cols":
        return np.zeros((rows, cols + 1), dtype)
    if variant == "list":
        return base.tolist()
    if variant == "none":
        return None
    if variant == "str":
        return "X"
    if variant == "scalar":
        return dtype.type(1.0)
    if variant == "byteswapped":
        return base.astype(dtype.newbyteorder())
    if variant == "other_float":
        return base.astype(np.float64 if dtype == np.float32 else np.float32)
    if variant == "object":
        return base.astype(object)
    return (base * 3).astype(variant)          # the integer, bool, complex and float dtypes


LAYOUT_VARIANTS = ("transposed", "strided_rows", "strided_cols")


def verdict_for(name, verdict, arr, rows=None):
    """A layout variant that came out C-contiguous and aligned (one row or one column) is a
    valid array; an otherwise valid array with the wrong number of rows is not."""
    if (verdict == "reject" and name in LAYOUT_VARIANTS and arr.flags.c_contiguous
            and arr.flags.aligned):
        verdict = "ok"
    if verdict == "ok" and rows is not None and arr.shape[0] != rows:
        verdict = "reject"
    return verdict


# =============================================================================== forward

def check_forward(kind, name, verdict, rows, seed, pos):
    net, twin = prime(make_net(kind)), prime(make_net(kind))
    with np.errstate(all="ignore"):
        X = hostile_matrix(name, rows, net.sizes[0], net.dtype, seed, pos)
    if isinstance(X, np.ndarray) and X.ndim == 2:
        verdict = verdict_for(name, verdict, X)
    before = state(net)
    try:
        with np.errstate(all="ignore"):
            out = net.forward(X).copy()
    except REJECT as e:
        assert verdict == "reject", f"forward rejected a valid X ({name}): {e!r}"
        assert_names(e, "X")
        assert_same_state(state(net), before)
        return
    assert verdict == "ok", f"forward accepted X ({name})"
    with np.errstate(all="ignore"):
        want = twin.forward(canonical(X, net.dtype))
    assert_equal_results(out, want, f"forward({name})")
    assert_same_state(state(net), state(twin))


# Each example runs every variant (hypothesis draws the shapes and values), so that every
# variant is covered whatever hypothesis draws.

@pytest.mark.parametrize("kind", NET_KINDS)
@SETTINGS
@given(rows=st.integers(1, 7), seed=st.integers(0, 2**16), pos=st.integers(0, 10**6))
def test_forward_with_hostile_X(kind, rows, seed, pos):
    for name, verdict in MATRIX_VARIANTS:
        check_forward(kind, name, verdict, rows, seed, pos)


def test_forward_error_advice_works_for_misaligned_X():
    """The error for a misaligned X says "got a strided view ...; pass np.ascontiguousarray(X)",
    but np.ascontiguousarray keeps a misaligned array as it is, so following the advice fails
    again with the same error."""
    net = make_net("plain32")
    X = misaligned((5, 4), np.float32, np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"^X\b") as info:
        net.forward(X)
    if "ascontiguousarray" in str(info.value):
        net.forward(np.ascontiguousarray(X))        # the suggested fix must work


@pytest.mark.parametrize("sizes", [[6, 6], [6, 9, 6]], ids=["one-layer", "two-layers"])
def test_forward_of_its_own_output_view_is_correct(sizes):
    """``net.forward(net.forward(X))`` (a square network applied twice, e.g. an unrolled
    iteration) passes a read-only view of the network's own output buffer as X.  The second
    pass overwrites that buffer while X is read (one layer: the GEMM's input and output alias)
    and keeps X for dW_1, so both the output and the gradients must be those of a copy, or the
    call must be refused naming X."""
    rng = np.random.default_rng(0)
    width = 256 if len(sizes) == 2 else sizes[0]
    sizes = [width] * 2 if len(sizes) == 2 else sizes
    net = vg.MLP(sizes, activation="tanh", dtype="float32", seed=1, sigma_b=0.1)
    twin = vg.MLP(sizes, activation="tanh", dtype="float32", seed=1, sigma_b=0.1)
    X = rng.standard_normal((64, sizes[0])).astype(np.float32)
    dout = rng.standard_normal((64, sizes[-1])).astype(np.float32)
    first = net.forward(X)
    try:
        out = net.forward(first).copy()
    except REJECT as e:
        assert_names(e, "X")
        return
    net.backward(dout)
    want = twin.forward(twin.predict(X)).copy()
    twin.backward(dout)
    assert_equal_results(out, want, "forward(forward(X))")
    assert_equal_results(net.grads, twin.grads, "gradients after forward(forward(X))")


# ============================================================================== backward

def check_backward(kind, name, verdict, rows, seed, pos, wrong_batch, input_grad):
    net, twin = prime(make_net(kind)), prime(make_net(kind))
    X = np.random.default_rng(seed).standard_normal((rows, net.sizes[0])).astype(net.dtype)
    net.forward(X)
    twin.forward(X)
    dout_rows = rows + 1 if wrong_batch else rows
    with np.errstate(all="ignore"):
        dout = hostile_matrix(name, dout_rows, net.sizes[-1], net.dtype, seed + 1, pos)
    if isinstance(dout, np.ndarray) and dout.ndim == 2:
        verdict = verdict_for(name, verdict, dout, rows)
    before = state(net)
    try:
        with np.errstate(all="ignore"):
            dX = net.backward(dout, input_grad=input_grad)
        dX = None if dX is None else dX.copy()
    except REJECT as e:
        assert verdict == "reject", f"backward rejected a valid dout ({name}): {e!r}"
        assert_names(e, "dout")
        assert_same_state(state(net), before)
        return
    assert verdict == "ok", f"backward accepted dout ({name}, wrong_batch={wrong_batch})"
    with np.errstate(all="ignore"):
        want = twin.backward(canonical(dout, net.dtype), input_grad=input_grad)
    if input_grad:
        assert_equal_results(dX, want, f"dX for dout {name}")
    else:
        assert dX is None and want is None
    assert_same_state(state(net), state(twin))


@pytest.mark.parametrize("kind", NET_KINDS)
@SETTINGS
@given(rows=st.integers(1, 7), seed=st.integers(0, 2**16), pos=st.integers(0, 10**6),
       wrong_batch=st.booleans(), input_grad=st.booleans())
def test_backward_with_hostile_dout(kind, rows, seed, pos, wrong_batch, input_grad):
    for name, verdict in MATRIX_VARIANTS:
        check_backward(kind, name, verdict, rows, seed, pos, wrong_batch, input_grad)


def test_backward_before_any_forward_is_a_call_order_error_and_changes_nothing():
    for kind in NET_KINDS:
        net = make_net(kind)
        before = state(net)
        with pytest.raises(RuntimeError, match="forward"):
            net.backward(np.zeros((5, net.sizes[-1]), net.dtype))
        assert_same_state(state(net), before)


def test_backward_of_its_own_input_gradient_view_is_correct():
    """``net.backward(net.backward(d))`` on a square one-layer network passes a read-only view
    of the network's own dX buffer as dout: the pass writes dX = dout W^T into the buffer it
    reads dout from.  The result must be that of a copy (or the call refused naming dout)."""
    rng = np.random.default_rng(0)
    net = vg.MLP([64, 64], dtype="float64", seed=0)
    twin = vg.MLP([64, 64], dtype="float64", seed=0)
    X = rng.standard_normal((32, 64))
    d = rng.standard_normal((32, 64))
    net.forward(X)
    twin.forward(X)
    first = net.backward(d)
    try:
        got = net.backward(first).copy()
    except REJECT as e:
        assert_names(e, "dout")
        return
    want = twin.backward(twin.backward(d).copy()).copy()
    assert_equal_results(got, want, "backward(backward(d))")
    assert_equal_results(net.grads, twin.grads, "gradients of backward(backward(d))")


# ================================================================================ labels

LABEL_VARIANTS = [
    ("valid", "ok"), ("int8", "ok"), ("int16", "ok"), ("int32", "ok"), ("uint8", "ok"),
    ("uint64", "ok"), ("read_only", "ok"), ("strided", "ok"), ("misaligned", "ok"),
    ("byteswapped", "ok"),
    ("negative", "reject"), ("n_classes", "reject"), ("huge", "reject"),
    ("uint64_huge", "reject"), ("float", "reject"), ("float_integral", "reject"),
    ("bool", "reject"), ("object", "reject"), ("complex", "reject"), ("2d", "reject"),
    ("too_short", "reject"), ("too_long", "reject"), ("empty", "reject"), ("list", "reject"),
    ("none", "reject"), ("ndim0", "reject"),
]


def hostile_labels(variant, n, n_classes, seed, pos):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n).astype(np.int64)
    if variant == "valid":
        return y
    if variant in ("int8", "int16", "int32", "uint8", "uint64"):
        return y.astype(variant)
    if variant == "read_only":
        y.flags.writeable = False
        return y
    if variant == "strided":
        return np.repeat(y, 2)[::2]
    if variant == "misaligned":
        return misaligned((n,), np.int64, y)
    if variant == "byteswapped":
        return y.astype(">i8")
    i = pos % n
    if variant == "negative":
        y[i] = -1
        return y
    if variant == "n_classes":
        y[i] = n_classes
        return y
    if variant == "huge":
        y[i] = 2**40
        return y
    if variant == "uint64_huge":
        y = y.astype(np.uint64)
        y[i] = 2**63 + 5
        return y
    if variant == "float":
        return y + 0.5
    if variant == "float_integral":
        return y.astype(np.float64)
    if variant == "bool":
        return y.astype(bool)
    if variant == "object":
        return y.astype(object)
    if variant == "complex":
        return y.astype(np.complex128)
    if variant == "2d":
        return y[:, None]
    if variant == "too_short":
        return y[:-1]
    if variant == "too_long":
        return np.append(y, 0)
    if variant == "empty":
        return np.zeros(0, np.int64)
    if variant == "list":
        return y.tolist()
    if variant == "none":
        return None
    if variant == "ndim0":
        return np.int64(0)
    raise AssertionError(variant)


@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 9), c=st.integers(1, 6),
       seed=st.integers(0, 2**16), pos=st.integers(0, 100), own_grad=st.booleans())
def test_cross_entropy_with_hostile_labels(dtype, n, c, seed, pos, own_grad):
    for name, verdict in LABEL_VARIANTS:
        logits = np.random.default_rng(seed).standard_normal((n, c)).astype(dtype)
        labels = hostile_labels(name, n, c, seed, pos)
        kept = logits.copy()
        grad_out = np.full((n, c), np.nan, dtype) if own_grad else None
        try:
            loss, grad = vg.losses.cross_entropy(logits, labels, grad_out=grad_out)
        except REJECT as e:
            assert verdict == "reject", f"cross_entropy rejected valid labels ({name}): {e!r}"
            assert_names(e, "labels")
            assert_equal_results(logits, kept, "logits after a rejected call")
            continue
        assert verdict == "ok", f"cross_entropy accepted labels ({name})"
        want_loss, want_grad = vg.losses.cross_entropy(kept, canonical(labels, np.int64))
        assert loss == want_loss
        assert_equal_results(grad, want_grad, f"gradient for labels {name}")
        if own_grad:
            assert grad is grad_out


def test_out_of_range_uint64_label_is_reported_with_its_value():
    """A uint64 label >= 2**63 is converted to int64 (wrapping to a negative number) before
    the range check, so the error reports a value the caller never passed."""
    labels = np.array([0, 2**63 + 5], np.uint64)
    with pytest.raises(ValueError, match=r"^labels\b") as info:
        vg.losses.cross_entropy(np.zeros((2, 3)), labels)
    assert str(2**63 + 5) in str(info.value), str(info.value)


# ================================================================================ losses

LOSS_FNS = {"cross_entropy": vg.losses.cross_entropy, "mse": vg.losses.mse,
            "binary_cross_entropy": vg.losses.binary_cross_entropy}
FIRST_ARG = {"cross_entropy": "logits", "mse": "pred", "binary_cross_entropy": "logits"}
SECOND_ARG = {"mse": "target", "binary_cross_entropy": "targets"}

GRAD_OUT_VARIANTS = [
    ("none", "ok"), ("fresh", "ok"), ("nan_filled", "ok"), ("alias_first", "ok"),
    ("alias_second", "ok"), ("read_only", "reject"), ("misaligned", "reject"),
    ("transposed", "reject"), ("other_float", "reject"), ("wrong_shape", "reject"),
    ("int", "reject"), ("list", "reject"),
]


def _loss_inputs(loss, n, m, dtype, rng):
    first = rng.standard_normal((n, m)).astype(dtype)
    if loss == "cross_entropy":
        second = rng.integers(0, m, n)
    elif loss == "mse":
        second = rng.standard_normal((n, m)).astype(dtype)
    else:
        second = rng.random((n, m)).astype(dtype)
    return first, second


def check_loss_input(loss, which, name, verdict, dtype, n, m, seed, pos):
    if name == "one_row_of_strided":
        n = 1
    fn = LOSS_FNS[loss]
    first, second = _loss_inputs(loss, n, m, dtype, np.random.default_rng(seed))
    argnames = (FIRST_ARG[loss],) if which == "first" else (SECOND_ARG[loss],)
    with np.errstate(all="ignore"):
        arr = hostile_matrix(name, n, m, dtype, seed, pos)
    if isinstance(arr, np.ndarray) and arr.ndim == 2:
        verdict = verdict_for(name, verdict, arr)
    if which == "first":
        first = arr
    else:
        second = arr
        if loss == "binary_cross_entropy" and verdict == "ok":
            if name == "huge_finite":
                verdict = "reject"                 # targets outside [0, 1]
            else:
                second = np.clip(np.abs(second), 0, 1)
    if name in ("other_float", "wrong_cols"):
        if loss == "cross_entropy":
            verdict = "ok"      # logits may be float32 or float64, and have more classes
        else:                   # a mismatch between the two: either may be named
            argnames = (FIRST_ARG[loss], SECOND_ARG[loss])
    try:
        with np.errstate(all="ignore"):
            value, grad = fn(first, second)
    except REJECT as e:
        assert verdict == "reject", f"{loss} rejected a valid {argnames[0]} ({name}): {e!r}"
        assert_names(e, *argnames)
        return
    assert verdict == "ok", f"{loss} accepted {argnames[0]} ({name})"
    with np.errstate(all="ignore"):
        want_value, want_grad = fn(canonical(first), canonical(second))
    assert value == want_value or (np.isnan(value) and np.isnan(want_value))
    assert_equal_results(grad, want_grad, f"{loss} gradient")


@pytest.mark.parametrize("loss, which", [("cross_entropy", "first"), ("mse", "first"),
                                         ("mse", "second"), ("binary_cross_entropy", "first"),
                                         ("binary_cross_entropy", "second")])
@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 6),
       m=st.integers(1, 5), seed=st.integers(0, 2**16), pos=st.integers(0, 100))
def test_losses_with_hostile_predictions_and_targets(loss, which, dtype, n, m, seed, pos):
    for name, verdict in MATRIX_VARIANTS:
        check_loss_input(loss, which, name, verdict, dtype, n, m, seed, pos)


def check_grad_out(loss, name, verdict, dtype, n, m, seed):
    fn = LOSS_FNS[loss]
    first, second = _loss_inputs(loss, n, m, dtype, np.random.default_rng(seed))
    want_value, want_grad = fn(first.copy(), np.copy(second))
    want_grad = want_grad.copy()
    if name == "alias_second" and loss == "cross_entropy":
        name, verdict = "int", "reject"          # labels are integers: not a gradient buffer
    other = np.float64 if dtype == np.float32 else np.float32
    g = {"none": lambda: None, "fresh": lambda: np.empty((n, m), dtype),
         "nan_filled": lambda: np.full((n, m), np.nan, dtype), "alias_first": lambda: first,
         "alias_second": lambda: second, "read_only": lambda: np.zeros((n, m), dtype),
         "misaligned": lambda: misaligned((n, m), dtype, 0),
         "transposed": lambda: np.zeros((m, n), dtype).T,
         "other_float": lambda: np.zeros((n, m), other),
         "wrong_shape": lambda: np.zeros((n, m + 1), dtype),
         "int": lambda: np.zeros((n, m), np.int64), "list": lambda: [[0.0] * m] * n}[name]()
    if name == "read_only":
        g.flags.writeable = False
    if name == "transposed" and g.flags.c_contiguous:
        verdict = "ok"                            # a 1-row or 1-column array is both orders
    try:
        value, grad = fn(first, second, grad_out=g)
    except REJECT as e:
        assert verdict == "reject", f"{loss} rejected a valid grad_out ({name}): {e!r}"
        assert_names(e, "grad_out")
        return
    assert verdict == "ok", f"{loss} accepted grad_out ({name})"
    assert value == want_value
    assert_equal_results(grad, want_grad, f"{loss} gradient into grad_out ({name})")
    if g is not None:
        assert grad is g


@pytest.mark.parametrize("loss", sorted(LOSS_FNS))
@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 6),
       m=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_losses_with_hostile_grad_out(loss, dtype, n, m, seed):
    for name, verdict in GRAD_OUT_VARIANTS:
        check_grad_out(loss, name, verdict, dtype, n, m, seed)


# ============================================================================ train_step

Y_KINDS = ["valid", "negative", "n_classes", "float", "2d", "too_long", "list", "none",
           "misaligned", "int8"]
GOOD_X = [v for v in MATRIX_VARIANTS if v[1] == "ok" and v[0] != "huge_finite"]
BAD_X = [v for v in MATRIX_VARIANTS if v[1] == "reject"]


def _train_targets(loss, y_kind, rows, n_out, dtype, seed, pos):
    """Targets for ``loss`` of the given kind, and whether train_step must accept them."""
    if loss == "cross_entropy":
        return (hostile_labels(y_kind, rows, n_out, seed, pos),
                dict(LABEL_VARIANTS)[y_kind] == "ok")
    y = np.random.default_rng(seed + 7).random((rows, n_out)).astype(dtype)
    ok = True
    if y_kind == "float":
        y, ok = y.astype(np.float64 if dtype == np.float32 else np.float32), False
    elif y_kind == "negative":
        y[pos % rows, 0] = -1.0
        ok = loss == "mse"                       # outside [0, 1] only matters for bce
    elif y_kind == "n_classes":
        y[pos % rows, 0] = np.nan
        ok = False
    elif y_kind == "2d":
        y, ok = y[:, :1] if n_out > 1 else y[:, :0], False
    elif y_kind == "too_long":
        y, ok = np.concatenate([y, y[:1]]), False
    elif y_kind == "misaligned":
        y, ok = misaligned(y.shape, y.dtype, y), False
    elif y_kind in ("list", "none"):
        y, ok = (None if y_kind == "none" else y.tolist()), False
    elif y_kind == "int8":
        y, ok = (y * 3).astype(np.int8), False
    return y, ok


def check_train_step(kind, loss, xname, xverdict, y_kind, rows, seed, pos, with_opt):
    net, twin = prime(make_net(kind)), prime(make_net(kind))
    opt = vg.optim.Adam(net, lr=0.01) if with_opt else None
    twin_opt = vg.optim.Adam(twin, lr=0.01) if with_opt else None
    if xname == "one_row_of_strided":
        rows = 1
    X = hostile_matrix(xname, rows, net.sizes[0], net.dtype, seed, pos)
    if isinstance(X, np.ndarray) and X.ndim == 2:
        xverdict = verdict_for(xname, xverdict, X)
    loss_ok = loss in LOSS_FNS
    y, y_ok = _train_targets(loss if loss_ok else "cross_entropy", y_kind, rows, net.sizes[-1],
                             net.dtype, seed, pos)
    y_names = {"cross_entropy": ("labels", "y"), "mse": ("target", "y"),
               "binary_cross_entropy": ("targets", "y")}.get(loss, ())
    what = f"train_step(X {xname}, y {y_kind}, loss={loss!r}) on {kind}"
    before = state(net, opt)
    try:
        value = net.train_step(X, y, loss, opt)
    except REJECT as e:
        assert not (loss_ok and xverdict == "ok" and y_ok), f"{what} rejected: {e!r}"
        if not loss_ok:
            assert_names(e, "loss")
        elif xverdict != "ok":
            assert_names(e, "X")
        else:
            assert_names(e, *y_names)
        assert_same_state(state(net, opt), before)
        return
    assert loss_ok and xverdict == "ok" and y_ok, f"{what} was accepted"
    want = twin.train_step(canonical(X, net.dtype),
                           canonical(y, np.int64 if loss == "cross_entropy" else None),
                           loss, twin_opt)
    assert value == want, what
    assert_same_state(state(net, opt), state(twin, twin_opt))


@pytest.mark.parametrize("kind", NET_KINDS)
@FEW
@given(loss=st.sampled_from(sorted(LOSS_FNS)), good_x=st.sampled_from(GOOD_X),
       rows=st.integers(1, 6), seed=st.integers(0, 2**16), pos=st.integers(0, 100),
       with_opt=st.booleans())
def test_train_step_with_hostile_arguments(kind, loss, good_x, rows, seed, pos, with_opt):
    """One hostile argument at a time: every bad X, every kind of bad target, bad loss names."""
    for xname, xverdict in BAD_X:
        check_train_step(kind, loss, xname, xverdict, "valid", rows, seed, pos, with_opt)
    for y_kind in Y_KINDS:
        check_train_step(kind, loss, *good_x, y_kind, rows, seed, pos, with_opt)
    for bad_loss in ("hinge", None, 3, ""):
        check_train_step(kind, bad_loss, *good_x, "valid", rows, seed, pos, with_opt)


@pytest.mark.parametrize("loss, target, argname", [
    ("cross_entropy", np.array([0, 1, 2, 0, 7]), "labels"),
    ("cross_entropy", np.array([0.0, 1.0, 2.0, 0.0, 1.0]), "labels"),
    ("mse", np.zeros((5, 3), np.float64), "target"),
    ("binary_cross_entropy", np.full((5, 3), 2.0, np.float32), "targets"),
], ids=["label-out-of-range", "float-labels", "mse-float64-target", "bce-target-above-1"])
def test_rejected_train_step_leaves_batch_norm_averages_and_dropout_counter_unchanged(
        loss, target, argname):
    """train_step runs the forward pass before the loss checks its targets: on a network with
    batch norm (training mode) that forward pass updates the running averages, and with dropout
    it advances the dropout counter, so a rejected call changes the network."""
    net = prime(make_net("extras32"))
    X = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    before = state(net)
    with pytest.raises(REJECT, match=rf"^{argname}\b"):
        net.train_step(X, target, loss, vg.optim.SGD(net, lr=0.1))
    assert_same_state(state(net), before)


def test_train_step_refuses_an_optimizer_that_is_not_one_and_changes_nothing():
    """``train_step(X, y, loss, optimizer="sgd")`` runs forward and backward (overwriting the
    gradients) and then fails with AttributeError: 'str' object has no attribute 'step'."""
    net = prime(make_net("plain32"))
    X = np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)
    before = state(net)
    with pytest.raises(TypeError, match="optimizer"):
        net.train_step(X, np.arange(5) % 3, "cross_entropy", "sgd")
    assert_same_state(state(net), before)


def test_train_step_refuses_the_optimizer_of_another_network():
    """An optimiser built on another network steps *that* network (with its own gradients)
    and leaves this one untrained, silently; vg.fit refuses it, train_step does not."""
    a = prime(make_net("plain32"))
    b = prime(vg.MLP([4, 7, 3], seed=5))
    X = np.random.default_rng(5).standard_normal((5, 4)).astype(np.float32)
    before_a, before_b = state(a), state(b)
    try:
        a.train_step(X, np.arange(5) % 3, "cross_entropy", vg.optim.SGD(b, lr=0.1))
    except REJECT as e:
        assert_names(e, "optimizer")
        assert_same_state(state(a), before_a)
        assert_same_state(state(b), before_b)
        return
    mine = not np.array_equal(a.params, before_a["params"])
    other = not np.array_equal(b.params, before_b["params"])
    pytest.fail("train_step accepted an optimiser of another network: this network's "
                f"parameters changed: {mine}, the other network's changed: {other}")


# ======================================================================== MLP constructor

SIZE_ENTRIES = [1, 2, 3, 7, 0, -1, -2**40, 2**31, 2**40, 2.0, 2.5, True, False, None, "3",
                np.int32(3), np.uint64(5), np.int64(-3), np.float64(3.0), 1j]
def GOOD_SIZE(v):
    return (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
            and 1 <= int(v) <= 2**31 - 1)

CTOR_VALUES = {
    "activation": ["relu", "tanh", "RELU", " gelu ", "swish", "", None, 3, ["relu"],
                   ["relu", "tanh", "elu"], vg.Activation("leaky_relu", slope=0.2), b"relu"],
    "init": ["standard", "he_normal", "orthogonal", "normal", "xavier", None, 3, ""],
    "dtype": ["float32", "float64", np.float32, np.dtype(">f4"), "float16", "int32", "complex64",
              object, "nonsense", 3, None],
    "seed": [0, 7, np.int64(3), np.uint64(2**64 - 1), 2**40, -1, 1.5, "1", True],
    "sigma_w": [None, 1.0, 0.0, -1.0, float("nan"), float("inf"), "1", 1e300],
    "sigma_b": [None, 0.1, 0.0, -0.1, float("inf"), "0.1", True, 1e300],
    "measure": [True, False, np.bool_(True), 1, 0, None, "yes"],
    "norm": [None, "batch", "layer", "Batch", "group", 3, ["batch"], ["batch", None]],
    "residual": [None, 0.5, "auto", 0.0, float("nan"), -1.0, "half", True, [0.5, None]],
    "residual_init": [None, "zero", "zeros", 0, True],
    "dropout": [0.0, 0.3, 1.0, -0.1, float("nan"), True, "0.1", [0.1, 0.2]],
    "dropout_seed": [0, 5, -1, 2**63, 2**64, 2**70, 1.5, True, np.uint64(2**63)],
    "norm_momentum": [0.1, 0.0, 1.0, 1.5, -0.1, float("nan"), "0.1", None],
    "norm_eps": [1e-5, 0.0, -1e-5, float("inf"), None, 1e300],
}


def _canonical_kwargs(kw):
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[k] = v
    return out


def check_mlp(sizes, kwargs):
    if isinstance(sizes, list) and sizes and all(GOOD_SIZE(s) for s in sizes):
        # the only large widths are the rejected ones: never allocate a large network here
        assert sum(int(s) for s in sizes) < 100
    try:
        with np.errstate(all="ignore"):
            net = vg.MLP(sizes, **kwargs)
    except REJECT as e:
        candidates = ["sizes"] + list(kwargs)
        # options interact (sigma_w with init, residual_init with residual, ...): any of the
        # given arguments may be the one that is named, but one must be
        assert names(e, *candidates, "slope", "alpha"), (
            f"MLP({sizes!r}, **{kwargs!r}) raised {type(e).__name__} naming none of "
            f"{candidates}: {e}")
        return
    twin = vg.MLP([int(s) for s in sizes], **_canonical_kwargs(kwargs))
    assert net.sizes == twin.sizes and net.dtype == twin.dtype
    assert_equal_results(net.params, twin.params, "initial parameters")
    assert np.all(np.isfinite(net.params)), f"MLP({sizes!r}, **{kwargs!r}) has non-finite weights"
    net.forward(np.ones((2, net.sizes[0]), net.dtype))


@SETTINGS
@given(sizes=st.one_of(
           st.lists(st.sampled_from(SIZE_ENTRIES), min_size=0, max_size=4),
           st.sampled_from([4, "45", None, (4, 3), np.array([4, 3]), np.array([[4, 3]]),
                            np.array([4.0, 3.0]), range(3, 6), [4, 4, 4]])),
       with_dropout=st.booleans())
def test_mlp_constructor_with_hostile_arguments(sizes, with_dropout):
    """Every hostile value of every option, on hypothesis' layer sizes (seed 0)."""
    base = {"seed": 0}
    if with_dropout:
        base["dropout"] = 0.1
    check_mlp(sizes, base)
    for key, values in CTOR_VALUES.items():
        for value in values:
            check_mlp(sizes, {**base, key: value})


@pytest.mark.parametrize("sizes", [[2**31 - 1, 2**31 - 1], [3, 2**31 - 1, 2**31 - 1, 2]],
                         ids=["2-layers", "4-layers"])
def test_mlp_too_many_parameters_is_rejected_naming_sizes(sizes):
    """Each width is below 2**31, but the parameter count (about 2**62) is not allocatable:
    NumPy's own "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum
    possible size" comes out, naming nothing the caller passed."""
    try:
        vg.MLP(sizes)
    except MemoryError:
        return
    except REJECT as e:
        assert_names(e, "sizes")
        return
    pytest.fail("accepted a network of 2**62 parameters")


def test_mlp_negative_seed_error_names_seed():
    """np.random.default_rng(-1) raises "expected non-negative integer"; the message must say
    which argument it is about."""
    with pytest.raises(REJECT) as info:
        vg.MLP([3, 2], seed=-1)
    assert_names(info.value, "seed")


@pytest.mark.parametrize("dropout_seed", [2**64, 2**70])
def test_mlp_dropout_seed_above_uint64_is_rejected_naming_it(dropout_seed):
    """With dropout on, a dropout_seed >= 2**64 passes the Python check (a non-negative int)
    and then overflows the compiled uint64_t: OverflowError("Python int too large to convert to
    C unsigned long")."""
    with pytest.raises(REJECT) as info:
        vg.MLP([4, 5, 3], dropout=0.1, dropout_seed=dropout_seed)
    assert_names(info.value, "dropout_seed")


@pytest.mark.parametrize("kwargs", [dict(init="normal", sigma_w=1e300), dict(sigma_b=1e300)],
                         ids=["sigma_w", "sigma_b"])
def test_mlp_scale_beyond_the_dtype_is_rejected_not_turned_into_inf(kwargs):
    """A finite sigma_w or sigma_b too large for float32 passes validation and the float64
    draws overflow to +-inf when stored: the network starts with infinite parameters."""
    try:
        net = vg.MLP([4, 5, 3], dtype="float32", seed=0, **kwargs)
    except REJECT as e:
        assert_names(e, *kwargs)
        return
    assert np.all(np.isfinite(net.params)), "non-finite initial parameters"


# ============================================================================= optimisers

HYPER_VALUES = [0.1, 1e-3, 0, 0.0, -0.1, 1.0, 2.0, float("nan"), float("inf"), -float("inf"),
                np.float32(0.1), np.float16(0.1), np.int64(1), np.float32("nan"), True, None,
                "0.1", 1j, [0.1], np.array(0.1), 2**40, -2**40, 1e300]
SGD_OPTIONS = ("lr", "momentum", "nesterov", "weight_decay", "clip_norm", "clip_value")
ADAM_OPTIONS = ("lr", "betas", "eps", "weight_decay", "clip_norm", "clip_value")
BETAS = [(0.9, 0.999), (0.0, 0.0), (1.0, 0.999), (0.9, 1.0), (-0.1, 0.9), (float("nan"), 0.9),
         (0.9,), (0.9, 0.99, 0.9), "ab", None, 0.9, (np.float32(0.9), np.float64(0.99)),
         ("0.9", 0.9)]


def _canon_hyper(v):
    if isinstance(v, tuple):
        return tuple(_canon_hyper(x) for x in v)
    if isinstance(v, (np.floating, np.integer)):
        return float(v)
    return v


def check_optimizer(kind, which, kwargs, steps):
    net, twin = prime(make_net(kind)), prime(make_net(kind))
    cls = getattr(vg.optim, which)
    before = state(net)
    try:
        opt = cls(net, **kwargs)
    except REJECT as e:
        assert names(e, *kwargs, "betas[0]", "betas[1]"), (
            f"{which}(**{kwargs!r}) raised {type(e).__name__} naming none of them: {e}")
        assert_same_state(state(net), before)
        return
    twin_opt = cls(twin, **{k: _canon_hyper(v) for k, v in kwargs.items()})
    X = np.random.default_rng(1).standard_normal((6, net.sizes[0])).astype(net.dtype)
    y = np.arange(6) % net.sizes[-1]

    def run(n, o):
        try:
            return n.train_step(X, y, "cross_entropy", o)
        except vg.NonFiniteError as e:   # e.g. lr=1e300: the next forward pass overflows
            return str(e)

    with np.errstate(all="ignore"):
        for _ in range(steps):
            a, b = run(net, opt), run(twin, twin_opt)
            assert a == b or (np.isnan(a) and np.isnan(b)), f"{which}(**{kwargs!r}): {a} {b}"
    assert_same_state(state(net, opt), state(twin, twin_opt))


@FEW
@given(kind=st.sampled_from(NET_KINDS), steps=st.integers(1, 3),
       other=st.sampled_from([{}, {"momentum": 0.9}, {"clip_norm": 0.5}, {"weight_decay": 0.1},
                              {"clip_value": 0.01}]))
def test_optimizers_with_hostile_hyperparameters(kind, steps, other):
    """Every hostile value of every option of SGD, Adam and AdamW (beside one valid option)."""
    for which, options in (("SGD", SGD_OPTIONS), ("Adam", ADAM_OPTIONS),
                           ("AdamW", ADAM_OPTIONS)):
        for key in options:
            values = (BETAS if key == "betas" else
                      [True, False, np.bool_(True)] if key == "nesterov" else HYPER_VALUES)
            for value in values:
                kwargs = {k: v for k, v in other.items() if k in options and k != key}
                kwargs[key] = value
                check_optimizer(kind, which, kwargs, steps)


def test_optimizer_rejects_something_that_is_not_a_network():
    for cls in (vg.optim.SGD, vg.optim.Adam):
        for bad in (None, "net", np.zeros(3), object()):
            with pytest.raises(TypeError, match=r"^net\b"):
                cls(bad)


def test_optimizer_schedule_returning_nan_is_rejected_before_any_update():
    net = prime(make_net("plain32"))
    for lr in (lambda step: float("nan"), lambda step: -1.0, lambda step: "0.1"):
        opt = vg.optim.Adam(net, lr=lr)
        before = state(net, opt)
        with pytest.raises(REJECT, match=r"^lr\b"):
            opt.step()
        assert_same_state(state(net, opt), before)


# ================================================================================ threads

THREAD_VALUES = [1, 2, np.int64(1), np.uint8(2), 0, -1, -2**40, 2**40, np.int64(2**40),
                 4097, 2**31, 1.0, 2.5, "2", b"2", None, True, np.bool_(True), 1j, [2],
                 np.array(2), np.array([2])]


def test_set_num_threads_with_hostile_values():
    before = vg.get_num_threads()
    for value in THREAD_VALUES:
        try:
            vg.set_num_threads(value)
        except REJECT as e:
            assert_names(e, "n")
            assert vg.get_num_threads() == before
            continue
        try:
            assert vg.get_num_threads() == int(value)
            assert 1 <= int(value) <= 4096
        finally:
            vg.set_num_threads(before)


# ==================================================================================== fit

class _StopAfterFirstBatch:
    def on_batch_end(self, step, loss, trainer):
        return True


FIT_VALUES = {
    "batch_size": [4, 1, 0, -1, 2**40, 2.5, True, None, "4", np.int64(3)],
    "epochs": [1, 0, 2**40, -1, 1.0, True, None],
    "validation_split": [0.0, 0.5, -0.1, 1.0, 1.5, float("nan"), True, "0.5", 0.01],
    "seed": [0, None, -1, 2**40, 1.5, "0"],
    "eval_batch_size": [1024, 1, 0, 2**40, -3, 2.0],
    "loss": ["cross_entropy", "mse", "hinge", None, 3],
    "verbose": [0, 3, -1, "1", 2.0],
    "shuffle": [True, False, 1, "yes", None],
    "early_stopping": [None, 2, 0, True, "2", {"patience": 1}, {"bogus": 1}],
}
X_FIT = [("valid", "ok"), ("misaligned", "ok"), ("transposed", "ok"), ("strided_rows", "ok"),
         ("read_only", "ok"), ("nan", "reject"), ("int64", "reject"), ("other_float", "reject"),
         ("float16", "reject"), ("ndim1", "reject"), ("wrong_cols", "reject"),
         ("zero_rows", "reject"), ("list", "reject"), ("object", "reject")]
VAL_KINDS = ["valid", "misaligned", "transposed", "other_float", "triple", "nan_y", "wrong_cols"]


def _fit_y(kind, n, n_out, dtype, seed, pos, loss):
    if loss == "mse":
        return np.random.default_rng(seed).standard_normal((n, n_out)).astype(dtype), "ok"
    return hostile_labels(kind, n, n_out, seed, pos), dict(LABEL_VARIANTS)[kind]


def _validation(kind, loss, seed):
    Xv = hostile_matrix({"triple": "valid", "nan_y": "valid"}.get(kind, kind), 5, 4, np.float32,
                        seed + 1, 0)
    yv = _fit_y("valid", 5, 3, np.float32, seed + 1, 0, loss)[0]
    if kind == "triple":
        return (Xv, yv, None)
    if kind == "nan_y":
        yv = np.full(5, np.nan) if loss != "mse" else np.full((5, 3), np.nan, np.float32)
    return (Xv, yv)


def check_fit(hostile, kwargs, xname, xverdict, y_kind, val, seed, pos):
    kwargs = {"verbose": 0, **kwargs}
    loss = kwargs.get("loss", "cross_entropy")
    n = 12
    net, twin = prime(make_net("plain32")), prime(make_net("plain32"))
    X = hostile_matrix(xname, n, 4, np.float32, seed, pos)
    y, yverdict = _fit_y(y_kind, n, 3, np.float32, seed, pos, loss)
    if val is not None:
        kwargs["validation_data"] = _validation(val, loss, seed)
    what = f"fit(X {xname}, y {y_kind}, validation {val}, {kwargs})"
    before = state(net)
    cb = [_StopAfterFirstBatch()]
    try:
        with np.errstate(all="ignore"):
            hist = vg.fit(net, X, y, callbacks=cb, **kwargs)
    except REJECT as e:
        argnames = {"X": ["X"], "y": ["y"],
                    "validation_data": ["validation_data", "validation_data[0]",
                                        "validation_data[1]"],
                    "none": []}.get(hostile, [hostile, "early_stopping", "patience"])
        assert names(e, *argnames), (
            f"{what} raised {type(e).__name__} naming none of {argnames}: {e}")
        assert_same_state(state(net), before)
        return
    assert xverdict == "ok", f"{what} was accepted"
    if loss != "mse":
        assert yverdict == "ok", f"{what} was accepted"
    canon = dict(kwargs)
    if "validation_data" in canon:
        Xv, yv = canon["validation_data"]
        canon["validation_data"] = (canonical(Xv, np.float32), canonical(yv))
    with np.errstate(all="ignore"):
        want = vg.fit(twin, canonical(X, np.float32), canonical(y), callbacks=cb, **canon)
    assert hist.as_dict().keys() == want.as_dict().keys() and len(hist) == len(want), what
    # the same values at other addresses: BLAS may round the last bit differently
    a, b = state(net), state(twin)
    for k in ("params", "grads"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7, err_msg=f"{what}: {k}")


@FEW
@given(seed=st.integers(0, 2**16), pos=st.integers(0, 100),
       val=st.sampled_from([None, "valid"]))
def test_fit_with_hostile_arguments(seed, pos, val):
    """One hostile argument at a time (training stops after one batch, whatever the epochs)."""
    check_fit("none", {}, "valid", "ok", "valid", val, seed, pos)
    for xname, xverdict in X_FIT[1:]:
        check_fit("X", {}, xname, xverdict, "valid", val, seed, pos)
    for y_kind in Y_KINDS[1:]:
        check_fit("y", {}, "valid", "ok", y_kind, val, seed, pos)
    for v in VAL_KINDS:
        check_fit("validation_data", {}, "valid", "ok", "valid", v, seed, pos)
    for option, values in FIT_VALUES.items():
        for value in values:
            if option == "validation_split":
                check_fit(option, {option: value}, "valid", "ok", "valid", None, seed, pos)
            else:
                check_fit(option, {option: value}, "valid", "ok", "valid", val, seed, pos)


@pytest.mark.parametrize("layout", ["misaligned", "strided"])
def test_fit_takes_validation_data_in_any_layout_as_a_copy(layout):
    """fit (like evaluate) documents that any layout of the data is accepted: a misaligned or
    strided X_val is copied once, and the run is bit-identical, val_loss included, to the same
    run given the canonical copy."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4))
    y = rng.integers(0, 3, 20)
    values = rng.standard_normal((10, 4))
    if layout == "misaligned":
        Xv = misaligned((10, 4), np.float64, values)
    else:
        Xv = np.zeros((10, 8))[:, ::2]
        Xv[...] = values
        assert not Xv.flags.c_contiguous
    yv = rng.integers(0, 3, 10)
    net, twin = prime(make_net("plain64")), prime(make_net("plain64"))
    hist = vg.fit(net, X, y, validation_data=(Xv, yv), epochs=2, verbose=0)
    want = vg.fit(twin, X, y, validation_data=(canonical(Xv), yv), epochs=2, verbose=0)
    assert len(hist["val_loss"]) == 2 and np.all(np.isfinite(hist["val_loss"]))
    assert hist["val_loss"] == want["val_loss"]
    assert hist["val_accuracy"] == want["val_accuracy"]
    np.testing.assert_array_equal(net.params, twin.params)
    assert vg.evaluate(net, Xv, yv) == vg.evaluate(net, canonical(Xv), yv)


def test_fit_rejects_bad_validation_data_before_training_naming_it():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    for Xv, yv, name in ((rng.standard_normal((10, 5)), rng.integers(0, 3, 10),
                          "validation_data[0]"),
                         (rng.standard_normal((10, 4)), rng.integers(0, 3, 9),
                          "validation_data[1]"),
                         (rng.standard_normal((10, 4)), rng.integers(3, 5, 10),
                          "validation_data[1]")):
        net = prime(make_net("plain64"))
        before = state(net)
        with pytest.raises(REJECT) as e:
            vg.fit(net, X, y, validation_data=(Xv, yv), epochs=2, verbose=0)
        assert_names(e.value, name)
        assert_same_state(state(net), before)


# ============================================================================ checkpoints

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    net = prime(make_net("extras32"))
    opt = vg.optim.Adam(net, lr=0.01)
    net.train_step(np.ones((3, 4), np.float32), np.array([0, 1, 2]), "cross_entropy", opt)
    ckpt.save(path, net, opt, history={"loss": [1.0, 0.5]}, extra={"epoch": 2})
    return path.read_bytes(), net.params.copy()


def _load_checked(path, good):
    """A damaged copy of the good checkpoint either raises ValueError naming the file or, when
    the damage missed everything that matters (a zip header field, a byte set to its own value),
    loads exactly the saved checkpoint: its parameters, running averages, optimiser state and
    metadata.  Returns whether it loaded."""
    good_bytes, _ = good
    try:
        loaded = ckpt.load(path)
    except ValueError as e:
        assert str(path) in str(e), f"ValueError without the file's name: {e}"
        assert path.read_bytes() != good_bytes, f"the intact checkpoint was refused: {e}"
        return False
    ref = ckpt.load(_GOOD_COPY[0])
    assert_equal_results(loaded.net.params, ref.net.params, "parameters of a loaded file")
    for a, b in zip(loaded.net.norm_buffers, ref.net.norm_buffers):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.optimizer_state["states"], ref.optimizer_state["states"]):
        np.testing.assert_array_equal(a, b)
    assert loaded.metadata == ref.metadata
    return True


_GOOD_COPY = []


@pytest.fixture(scope="module", autouse=True)
def _good_copy(good_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("goodcopy") / "good.npz"
    path.write_bytes(good_checkpoint[0])
    _GOOD_COPY[:] = [path]
    return path


@SETTINGS
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=300)),
                      st.builds(lambda b: b"\x93NUMPY\x01\x00" + b, st.binary(max_size=300))))
def test_checkpoint_load_of_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("rand") / "random.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError) as e:             # random bytes are never a checkpoint
        ckpt.load(path)
    assert str(path) in str(e.value)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_checkpoint_load_of_corrupted_file(tmp_path_factory, good_checkpoint, edits, cut):
    good, params = good_checkpoint
    data = bytearray(good)
    for where, byte in edits:
        data[where % len(data)] = byte
    if cut is not None:
        data = data[:cut % len(data)]
    path = tmp_path_factory.mktemp("bad") / "corrupt.npz"
    path.write_bytes(bytes(data))
    loaded = _load_checked(path, good_checkpoint)
    if bytes(data) == good:
        assert loaded                               # nothing changed: it must load


def test_a_byte_changed_inside_the_saved_parameters_is_always_refused(tmp_path,
                                                                      good_checkpoint):
    good, params = good_checkpoint
    raw = np.ascontiguousarray(params).tobytes()
    start = good.find(raw)
    assert start > 0                                 # stored, not compressed: find the array
    for offset in (0, len(raw) // 2, len(raw) - 1):
        data = bytearray(good)
        data[start + offset] ^= 0x40
        path = tmp_path / f"flip{offset}.npz"
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            ckpt.load(path)


def _with_metadata(good, tmp_path, edit):
    src = tmp_path / "src.npz"
    src.write_bytes(good)
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["metadata"]))
    text = edit(meta)
    arrays["metadata"] = np.array(text if isinstance(text, str) else json.dumps(meta))
    dst = tmp_path / "crafted.npz"
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


def _set(path, value):
    def edit(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


CRAFTED = [
    pytest.param(lambda m: "[" * 100000, id="deeply-nested-json-array"),
    pytest.param(lambda m: '{"a":' * 50000, id="deeply-nested-json-object"),
    pytest.param(_set(["history"], [1, 2]), id="history-a-list"),
    pytest.param(_set(["history"], {"loss": "abc"}), id="history-a-string"),
    pytest.param(_set(["network", "dropout_counter"], "x"), id="dropout_counter-a-string"),
    pytest.param(_set(["network", "training"], {"a": 1}), id="training-an-object"),
    pytest.param(_set(["network", "sizes"], [4, 6, 2**40, 3]), id="sizes-2**40"),
    pytest.param(_set(["network", "sizes"], [4, -6, 6, 3]), id="sizes-negative"),
    pytest.param(_set(["network", "dtype"], "complex64"), id="dtype-complex"),
    pytest.param(_set(["network", "activations"], "tanh"), id="activations-a-string"),
    pytest.param(_set(["network", "norms"], ["batch", "group", None]), id="norms-unknown"),
    pytest.param(_set(["network", "seed"], -5), id="seed-negative"),
    pytest.param(_set(["checksums"], None), id="checksums-null"),
    pytest.param(_set(["optimizer", "hyperparameters"], []), id="hyperparameters-a-list"),
]


@pytest.mark.parametrize("edit", CRAFTED)
def test_checkpoint_load_of_crafted_metadata_raises_value_error_naming_the_file(
        tmp_path, good_checkpoint, edit):
    """load's documented contract: a corrupt file raises ValueError naming the file and the
    problem (never another exception); a network it does return is the saved one."""
    good, params = good_checkpoint
    path = _with_metadata(good, tmp_path, edit)
    try:
        loaded = ckpt.load(path)
    except ValueError as e:
        assert str(path) in str(e), f"ValueError without the file's name: {e}"
        return
    assert_equal_results(loaded.net.params, params, "parameters")
    loaded.net.forward(np.ones((2, 4), np.float32))


_N_STATES_SCRIPT = r"""
import json, resource, sys
import numpy as np
from vgcore.train import checkpoint
src, dst = sys.argv[1], sys.argv[2]
with np.load(src) as z:
    arrays = {k: z[k] for k in z.files}
meta = json.loads(str(arrays["metadata"]))
meta["optimizer"]["n_states"] = 2**40
arrays["metadata"] = np.array(json.dumps(meta))
with open(dst, "wb") as f:
    np.savez(f, **arrays)
limit = 1024 * 2**20          # 1 GiB of address space: enough for numpy and vgcore
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    checkpoint.load(dst)
except Exception as e:
    print(type(e).__name__, "|", e)
else:
    print("loaded")
"""


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="an address-space limit breaks AddressSanitizer's shadow memory")
def test_checkpoint_load_with_a_huge_state_count_fails_fast(tmp_path, good_checkpoint):
    """The metadata's optimizer.n_states is trusted: load builds the list of names
    ``[f"state_{i}" for i in range(n_states)]`` before it looks for a single one, so a file
    claiming 2**40 state buffers makes load allocate until memory runs out (here, under a
    1 GiB address-space limit: MemoryError after ~2 s; without a limit the OOM killer).
    It must be a ValueError naming the file, found at once."""
    good, _ = good_checkpoint
    (tmp_path / "good.npz").write_bytes(good)
    dst = tmp_path / "n_states.npz"
    res = subprocess.run([sys.executable, "-c", _N_STATES_SCRIPT, str(tmp_path / "good.npz"),
                          str(dst)], capture_output=True, text=True, timeout=120, cwd="/")
    out = res.stdout.strip()
    assert out.startswith("ValueError |") and str(dst) in out, (
        f"load of a file claiming 2**40 optimiser states: {out or res.stderr[-2000:]}")


def test_checkpoint_load_of_a_missing_file_and_of_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "nope.npz")
    with pytest.raises((IsADirectoryError, PermissionError, ValueError)):
        ckpt.load(tmp_path)
    for bad in (None, 3, b"path", ["a"]):
        with pytest.raises(TypeError, match=r"^path\b"):
            ckpt.load(bad)


def test_checkpoint_load_of_a_zip_that_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("params.npy", b"not an npy file")
        z.writestr("../../evil", b"x")
    np.savez(tmp_path / "y.npz", params=np.zeros(3), format=np.array(1))
    for path in (p, tmp_path / "y.npz"):
        with pytest.raises(ValueError) as e:
            ckpt.load(path)
        assert str(path) in str(e.value)

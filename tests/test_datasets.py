"""Datasets made in code: shapes, dtypes, layout, seeding, the structure each one promises,
train/validation splits, the registry, and bad arguments."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import vgcore as vg
from vgcore.train import datasets as D

DTYPES = (np.float32, np.float64)

# one small call per generator (digits needs scikit-learn and is tested on its own)
SMALL = {
    "gaussian_mixture": dict(n=300, n_features=5, n_classes=3),
    "two_spirals": dict(n=301),
    "teacher_student": dict(n=200, n_features=6, n_outputs=2),
}


def _original_gaussian_mixture(n, n_features, n_classes, seed=0, spread=1.0, dtype=np.float32):
    """The helper as it was in vgcore/__main__.py before it moved (results must not change)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features)) * spread
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.standard_normal((n, n_features))
    return X.astype(dtype), y.astype(np.int64)


# ---------------------------------------------------------------- common contract

@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("dtype", DTYPES)
def test_generators_return_contiguous_arrays_of_the_requested_dtype(name, dtype):
    X, y = D.DATASETS[name](**SMALL[name], dtype=dtype)
    n = SMALL[name]["n"]
    assert X.dtype == dtype and X.ndim == 2 and X.shape[0] == n
    assert X.flags.c_contiguous and X.flags.writeable
    assert y.shape[0] == n and y.flags.c_contiguous
    if name == "teacher_student":
        assert y.dtype == dtype and y.shape == (n, 2)
    else:
        assert y.dtype == np.int64 and y.ndim == 1
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_gives_the_same_data_and_another_seed_different_data(name):
    a = D.DATASETS[name](**SMALL[name], seed=7)
    b = D.DATASETS[name](**SMALL[name], seed=7)
    c = D.DATASETS[name](**SMALL[name], seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    g = D.DATASETS[name](**SMALL[name], seed=np.random.default_rng(7))   # a Generator works
    assert all(np.array_equal(p, q) for p, q in zip(a, g))


@pytest.mark.parametrize("name", list(SMALL))
def test_float32_data_is_the_float64_data_rounded(name):
    x32, y32 = D.DATASETS[name](**SMALL[name], dtype=np.float32)
    x64, y64 = D.DATASETS[name](**SMALL[name], dtype=np.float64)
    assert np.array_equal(x32, x64.astype(np.float32))
    if name == "teacher_student":               # computed by a float32 vs a float64 teacher
        np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    else:
        assert np.array_equal(y32, y64)


# ---------------------------------------------------------------- gaussian_mixture

@pytest.mark.parametrize("kwargs", [
    dict(n=4096, n_features=64, n_classes=10, seed=0),
    dict(n=100, n_features=3, n_classes=4, seed=5, spread=2.5),
    dict(n=50, n_features=7, n_classes=2, seed=1, dtype=np.float64),
])
def test_gaussian_mixture_reproduces_the_demo_helper_exactly(kwargs):
    X, y = D.gaussian_mixture(**kwargs)
    Xo, yo = _original_gaussian_mixture(**kwargs)
    assert np.array_equal(X, Xo) and np.array_equal(y, yo) and X.dtype == Xo.dtype
    from vgcore.commands import demo                # the demo uses the same function
    assert demo.gaussian_mixture is D.gaussian_mixture


def test_gaussian_mixture_classes_are_roughly_balanced_and_in_range():
    _, y = D.gaussian_mixture(20000, 2, 10, seed=3)
    counts = np.bincount(y, minlength=10)
    assert y.min() == 0 and y.max() == 9 and counts.size == 10
    assert np.all(np.abs(counts / y.size - 0.1) < 0.015)


def test_gaussian_mixture_points_scatter_with_unit_noise_around_their_class_centre():
    X, y = D.gaussian_mixture(20000, 4, 3, seed=2, spread=5.0, dtype=np.float64)
    for k in range(3):
        resid = X[y == k] - X[y == k].mean(axis=0)
        assert np.all(np.abs(resid.std(axis=0) - 1.0) < 0.05)


# ---------------------------------------------------------------- two_spirals

def test_two_spirals_are_two_balanced_classes_in_the_plane():
    X, y = D.two_spirals(1001)
    assert X.shape == (1001, 2)
    assert np.bincount(y).tolist() == [501, 500]
    assert 0 < y[:20].sum() < 20                   # rows are shuffled, not sorted by class


def test_two_spirals_radius_grows_with_the_angle_one_unit_per_turn():
    turns = 1.5
    X, y = D.two_spirals(2000, noise=0.0, turns=turns, dtype=np.float64)
    r = np.hypot(X[:, 0], X[:, 1])
    angle = np.arctan2(X[:, 1], X[:, 0])
    assert r.min() >= 0 and r.max() <= turns + 1e-12 and r.max() > 0.95 * turns
    # unwrapped angle theta = 2 pi r: class 0 sits at theta, class 1 at theta + pi
    expected = 2 * np.pi * r + np.pi * y
    diff = np.angle(np.exp(1j * (angle - expected)))       # wrapped to (-pi, pi]
    assert np.max(np.abs(diff)) < 1e-9


def test_two_spirals_classes_are_nearly_separable_at_the_default_noise():
    X, y = D.two_spirals(1000, seed=1, dtype=np.float64)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn_error = np.mean(y[d2.argmin(axis=1)] != y)          # leave-one-out 1-NN
    assert nn_error < 0.06
    Xn, yn = D.two_spirals(1000, noise=1.0, seed=1, dtype=np.float64)   # much noisier
    d2 = ((Xn[:, None, :] - Xn[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    assert np.mean(yn[d2.argmin(axis=1)] != yn) > 2 * nn_error


def test_two_spirals_noise_is_gaussian_with_the_given_scale():
    clean, _ = D.two_spirals(5000, noise=0.0, seed=4, dtype=np.float64)
    noisy, _ = D.two_spirals(5000, noise=0.3, seed=4, dtype=np.float64)
    # the same angles and shuffle are drawn first, then the noise
    assert abs((noisy - clean).std() - 0.3) < 0.01


# ---------------------------------------------------------------- teacher_student

@pytest.mark.parametrize("dtype", DTYPES)
def test_teacher_student_targets_equal_the_teachers_forward_pass(dtype):
    X, Y, teacher = D.teacher_student(128, 10, n_outputs=3, depth=3, width=16,
                                      activation="relu", seed=5, dtype=dtype,
                                      return_teacher=True)
    assert isinstance(teacher, vg.MLP)
    assert teacher.sizes == (10, 16, 16, 16, 3) and teacher.init == "lecun_normal"
    assert teacher.dtype == dtype and {a.name for a in teacher.activations[:-1]} == {"relu"}
    assert np.array_equal(Y, teacher.forward(X))
    assert not np.shares_memory(Y, teacher.forward(X))    # a copy, not the engine's buffer
    X2, Y2 = D.teacher_student(128, 10, n_outputs=3, depth=3, width=16, activation="relu",
                               seed=5, dtype=dtype)
    assert np.array_equal(X, X2) and np.array_equal(Y, Y2)


def test_teacher_student_teacher_is_built_as_documented():
    X, Y, teacher = D.teacher_student(64, 5, seed=11, return_teacher=True)
    rng = np.random.default_rng(11)
    teacher_seed = int(rng.integers(0, 2**63 - 1))
    same = vg.MLP([5, 32, 32, 1], activation="tanh", init="lecun_normal", seed=teacher_seed)
    assert np.array_equal(same.params, teacher.params)
    assert np.array_equal(X, rng.standard_normal((64, 5)).astype(np.float32))
    assert np.array_equal(Y, same.predict(X))
    assert all(np.all(b == 0) for b in teacher.biases)


def test_teacher_student_targets_are_neither_constant_nor_exploding():
    _, Y = D.teacher_student(2000, 20, n_outputs=4, seed=0)
    assert np.all((Y.std(axis=0) > 0.05) & (Y.std(axis=0) < 5))


def test_teacher_student_depth_zero_is_a_linear_teacher():
    X, Y, t = D.teacher_student(50, 4, n_outputs=2, depth=0, seed=3, dtype=np.float64,
                                return_teacher=True)
    assert t.sizes == (4, 2)
    np.testing.assert_allclose(Y, X @ t.weights[0], rtol=1e-12, atol=1e-12)


def test_teacher_student_noise_adds_gaussian_noise_to_the_targets_only():
    X0, Y0 = D.teacher_student(4000, 3, seed=9, dtype=np.float64)
    X1, Y1 = D.teacher_student(4000, 3, seed=9, noise=0.5, dtype=np.float64)
    assert np.array_equal(X0, X1)
    assert abs((Y1 - Y0).std() - 0.5) < 0.03 and abs((Y1 - Y0).mean()) < 0.03
    assert Y1.flags.c_contiguous


# ---------------------------------------------------------------- digits

def test_digits_without_scikit_learn_raises_import_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)          # makes the import fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        D.digits()


def test_digits_are_the_bundled_8x8_images_scaled_to_unit_range():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = D.digits()
    ref = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.dtype == np.int64 and set(np.unique(y).tolist()) == set(range(10))
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(X, (ref.data / 16).astype(np.float32))
    assert np.array_equal(y, ref.target)


def test_digits_seed_shuffles_rows_reproducibly():
    pytest.importorskip("sklearn.datasets")
    X, y = D.digits(dtype=np.float64)
    Xs, ys = D.digits(dtype=np.float64, seed=0)
    order = np.random.default_rng(0).permutation(len(y))
    assert np.array_equal(Xs, X[order]) and np.array_equal(ys, y[order])
    assert Xs.dtype == np.float64


# ---------------------------------------------------------------- train_val_split

def test_split_sizes_follow_val_fraction():
    X = np.zeros((103, 2), np.float32)
    y = np.zeros(103, np.int64)
    X_tr, y_tr, X_val, y_val = D.train_val_split(X, y, val_fraction=0.25)
    assert len(X_val) == len(y_val) == round(103 * 0.25) == 26
    assert len(X_tr) == len(y_tr) == 77


def test_split_parts_are_disjoint_cover_everything_and_keep_rows_paired():
    n = 500
    X = np.arange(n * 3, dtype=np.float64).reshape(n, 3)       # row i starts with 3 i
    y = np.arange(n) * 10
    X_tr, y_tr, X_val, y_val = D.train_val_split(X, y, seed=4)
    tr, val = (X_tr[:, 0] // 3).astype(int), (X_val[:, 0] // 3).astype(int)
    assert set(tr).isdisjoint(val)
    assert sorted(np.concatenate([tr, val]).tolist()) == list(range(n))
    assert np.array_equal(y_tr, tr * 10) and np.array_equal(y_val, val * 10)


def test_split_returns_contiguous_copies_with_the_input_dtypes():
    X, Y = D.teacher_student(40, 3, n_outputs=2, seed=0)
    Xf = np.asfortranarray(X)
    parts = D.train_val_split(Xf, Y)
    for part, src in zip(parts, (X, Y, X, Y)):
        assert part.flags.c_contiguous and part.dtype == src.dtype
        assert not np.shares_memory(part, Xf) and not np.shares_memory(part, Y)
    assert parts[1].shape[1] == 2                                  # 2-D targets work


def test_split_is_reproducible_by_seed():
    X, y = D.gaussian_mixture(100, 2, 2)
    a = D.train_val_split(X, y, seed=3)
    b = D.train_val_split(X, y, seed=3)
    c = D.train_val_split(X, y, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[2], c[2])


# ---------------------------------------------------------------- registry

def test_load_by_name_equals_calling_the_function():
    assert set(D.DATASETS) == {"gaussian_mixture", "two_spirals", "teacher_student", "digits"}
    X, y = D.load("two_spirals", n=50, seed=2)
    Xd, yd = D.two_spirals(50, seed=2)
    assert np.array_equal(X, Xd) and np.array_equal(y, yd)
    X, y = D.load("Gaussian-Mixture", n=20, n_features=2, n_classes=2)
    assert X.shape == (20, 2)


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("call, exc, match", [
    (lambda: D.gaussian_mixture(0, 2, 2), ValueError, "n: expected an integer >= 1, got 0"),
    (lambda: D.gaussian_mixture(10.0, 2, 2), TypeError, "n: expected an integer, got float"),
    (lambda: D.gaussian_mixture(10, 0, 2), ValueError, "n_features: expected an integer >= 1"),
    (lambda: D.gaussian_mixture(10, 2, 0), ValueError, "n_classes: expected an integer >= 1"),
    (lambda: D.gaussian_mixture(10, 2, 2, spread=-1), ValueError,
     "spread: expected a number >= 0, got -1.0"),
    (lambda: D.gaussian_mixture(10, 2, 2, dtype=np.int32), TypeError,
     "dtype: expected 'float32' or 'float64', got int32"),
    (lambda: D.gaussian_mixture(10, 2, 2, seed=-1), ValueError, "seed: expected an integer >= 0"),
    (lambda: D.gaussian_mixture(10, 2, 2, seed=1.5), TypeError,
     "seed: expected an integer, None or a numpy.random.Generator, got float"),
    (lambda: D.two_spirals(1), ValueError, "n: expected an integer >= 2, got 1"),
    (lambda: D.two_spirals(10, noise=-0.1), ValueError, "noise: expected a number >= 0"),
    (lambda: D.two_spirals(10, noise=float("inf")), ValueError,
     "noise: expected a finite number"),
    (lambda: D.two_spirals(10, turns=0), ValueError, "turns: expected a number > 0, got 0.0"),
    (lambda: D.two_spirals(10, dtype="float16"), TypeError, "dtype: expected 'float32'"),
    (lambda: D.teacher_student(10, 3, depth=-1), ValueError,
     "depth: expected an integer >= 0, got -1"),
    (lambda: D.teacher_student(10, 3, width=0), ValueError, "width: expected an integer >= 1"),
    (lambda: D.teacher_student(10, 3, n_outputs=0), ValueError, "n_outputs: expected"),
    (lambda: D.teacher_student(10, 3, activation="tanhh"), ValueError, "tanhh"),
    (lambda: D.teacher_student(10, 3, noise=-1), ValueError, "noise: expected a number >= 0"),
    (lambda: D.digits(dtype=np.int64), TypeError, "dtype: expected 'float32' or 'float64'"),
    (lambda: D.train_val_split(np.zeros((10, 2)), np.zeros(9)), ValueError,
     r"y: expected 10 rows \(one per row of X\), got shape \(9,\)"),
    (lambda: D.train_val_split(np.zeros((10, 2)), np.zeros(10), val_fraction=1.0), ValueError,
     r"val_fraction: expected a number in \(0, 1\), got 1.0"),
    (lambda: D.train_val_split(np.zeros((10, 2)), np.zeros(10), val_fraction=0.01), ValueError,
     "val_fraction: 0.01 of 10 rows gives 0 validation and 10 training rows"),
    (lambda: D.train_val_split(np.zeros((2, 2)), np.zeros(2), val_fraction=0.9), ValueError,
     "expected at least one of each"),
    (lambda: D.train_val_split(np.zeros((10, 2)), np.zeros(10), val_fraction="0.2"), TypeError,
     "val_fraction: expected a number, got str"),
    (lambda: D.train_val_split(np.float64(1.0), np.zeros(1)), ValueError,
     "X: expected an array with one row per sample, got a scalar"),
    (lambda: D.load("mnist"), ValueError,
     "name: unknown dataset 'mnist'; expected one of gaussian_mixture"),
    (lambda: D.load(3), TypeError, "name: expected a dataset name \\(str\\), got int"),
    (lambda: D.load("two_spirals", n=10, nois=0.1), TypeError,
     "two_spirals: unexpected argument.*nois"),
])
def test_bad_arguments_raise_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()

"""vg.datasets.load(path): features and labels from .npz, .npy, .csv/.tsv and .parquet files,
every cell checked, errors naming the file, row and column; hostile files refused."""
from __future__ import annotations

import hashlib
import io
import pathlib
import zipfile

import numpy as np
import pytest

import vgcore as vg
from vgcore.interop import files as F


def sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return rng.standard_normal((30, 4)), rng.integers(0, 3, 30)


# ------------------------------------------------------------------------------ .npz / .npy
def test_npz_reads_X_and_y_with_the_file_sha256(tmp_path, arrays):
    X, y = arrays
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y)
    data = vg.datasets.load(p)
    Xl, yl = data
    assert Xl.dtype == np.float32 and Xl.flags.c_contiguous and yl.dtype == np.int64
    np.testing.assert_array_equal(Xl, X.astype(np.float32))
    np.testing.assert_array_equal(yl, y)
    assert data.sha256 == sha(p) and data.size == p.stat().st_size
    d = data.describe()
    assert d["sha256"] == sha(p) and d["samples"] == 30 and d["features"] == 4
    assert d["classes"] == 3 and sum(d["class_counts"]) == 30 and d["label"] == "array 'y'"
    assert data.n_classes == 3 and len(data) == 2


def test_npz_arrays_named_by_options_and_missing_names_listed(tmp_path, arrays):
    X, y = arrays
    p = tmp_path / "d.npz"
    np.savez(p, inputs=X, classes=y)
    data = vg.datasets.load(p, features="inputs", label="classes", dtype="float64")
    np.testing.assert_array_equal(data.X, X)
    with pytest.raises(ValueError, match=r"d.npz: no feature array: expected one named X or x "
                                         r"or features or data.*holds 'inputs', 'classes'"):
        vg.datasets.load(p)
    with pytest.raises(ValueError, match=r"no array named 'Z' \(label=\)"):
        vg.datasets.load(p, features="inputs", label="Z")


def test_a_truncated_npz_is_refused_by_name(tmp_path, arrays):
    X, y = arrays
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"d.npz: not a valid .npz file \(truncated or corrupt"):
        vg.datasets.load(p)


def npy_bytes(header_shape, dtype="<f8", payload=b""):
    """A .npy file whose header claims ``header_shape`` whatever the data that follows."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buf.getvalue() + payload          # magic, header, then what follows


def test_a_header_claiming_more_data_than_the_file_holds_is_refused_before_allocating(tmp_path):
    p = tmp_path / "X.npy"
    p.write_bytes(npy_bytes((10**12, 10**6), payload=b"\0" * 64))
    with pytest.raises(ValueError, match=r"X.npy: the array is truncated: its header says "
                                         r"shape \(1000000000000, 1000000\)"):
        vg.datasets.load(p, label=0)
    z = tmp_path / "d.npz"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("X.npy", npy_bytes((10**9, 10), payload=b"\0" * 80))
        zf.writestr("y.npy", npy_bytes((10,), "<i8", b"\0" * 80))
    with pytest.raises(ValueError, match=r"array 'X' is truncated"):
        vg.datasets.load(z)


def test_pickled_object_arrays_are_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.array([[1.0, "a"]], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match=r"array 'X' holds Python objects .* without pickle"):
        vg.datasets.load(p)


def test_npy_pairs_record_both_files(tmp_path, arrays):
    X, y = arrays
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = vg.datasets.load(tmp_path / "X.npy", label=str(tmp_path / "y.npy"))
    np.testing.assert_array_equal(data.y, y)
    assert data.sha256 == sha(tmp_path / "X.npy")
    assert data.label_file["sha256"] == sha(tmp_path / "y.npy")
    assert data.describe()["label_file"]["path"] == str(tmp_path / "y.npy")
    with pytest.raises(ValueError, match=r"X.npy holds one array \(the features\); pass the "
                                         r"labels' .npy file"):
        vg.datasets.load(tmp_path / "X.npy")
    np.save(tmp_path / "y_short.npy", y[:-1])
    with pytest.raises(ValueError, match=r"30 samples but 29 labels"):
        vg.datasets.load(tmp_path / "X.npy", label=str(tmp_path / "y_short.npy"))


def test_a_label_column_of_an_npy_array(tmp_path, arrays):
    X, y = arrays
    np.save(tmp_path / "all.npy", np.column_stack([X, y]))
    data = vg.datasets.load(tmp_path / "all.npy", label=-1)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_array_equal(data.X, X.astype(np.float32))


def test_fortran_ordered_features_are_copied_once_not_refused(tmp_path, arrays):
    X, y = arrays
    Xf = np.asfortranarray(X)
    np.save(tmp_path / "X.npy", Xf)
    np.save(tmp_path / "y.npy", y)
    with open(tmp_path / "X.npy", "rb") as f:       # stored column-major indeed
        np.lib.format.read_magic(f)
        assert np.lib.format.read_array_header_1_0(f)[1] is True
    data = vg.datasets.load(tmp_path / "X.npy", label=str(tmp_path / "y.npy"),
                            dtype="float64")
    assert data.X.flags.c_contiguous
    np.testing.assert_array_equal(data.X, X)
    assert any("Fortran order" in n for n in data.notes)
    net = vg.MLP([4, 8, 3], dtype="float64", seed=0)
    net.forward(data.X)             # ready for the network as it is


def test_non_2d_features_complex_and_wrong_lengths_are_refused(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros(5), y=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"a.npz: the features have shape \(5,\); expected a "
                                         r"2-D array .*reshape\(-1, 1\)"):
        vg.datasets.load(tmp_path / "a.npz")
    np.savez(tmp_path / "c.npz", X=np.zeros((3, 2), complex), y=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"the features are complex"):
        vg.datasets.load(tmp_path / "c.npz")
    np.savez(tmp_path / "e.npz", X=np.zeros((0, 2)), y=np.zeros(0, int))
    with pytest.raises(ValueError, match=r"no samples or no features"):
        vg.datasets.load(tmp_path / "e.npz")


def test_text_arrays_are_parsed_or_the_cell_named(tmp_path):
    np.savez(tmp_path / "s.npz", X=np.array([["1", "2.5"], ["3", "x"]]), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"s.npz: array 'X', row 1, column 1: 'x' is not a "
                                         r"number"):
        vg.datasets.load(tmp_path / "s.npz")
    np.savez(tmp_path / "t.npz", X=np.array([["1", "2.5"], ["3", "4"]]), y=np.array([0, 1]))
    np.testing.assert_array_equal(vg.datasets.load(tmp_path / "t.npz").X, [[1, 2.5], [3, 4]])
    np.savez(tmp_path / "y3.npz", X=np.zeros((2, 2)), y=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"the labels have shape \(2, 2, 2\)"):
        vg.datasets.load(tmp_path / "y3.npz")


def test_nan_inf_and_float32_overflow_are_located(tmp_path):
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    np.savez(tmp_path / "n.npz", X=X, y=np.zeros(4, int))
    with pytest.raises(ValueError, match=r"n.npz: array 'X', row 2, column 1: nan \(expected "
                                         r"finite"):
        vg.datasets.load(tmp_path / "n.npz")
    X[2, 1] = 1e39
    np.savez(tmp_path / "big.npz", X=X, y=np.zeros(4, int))
    with pytest.raises(ValueError, match=r"row 2, column 1: 1e\+39 overflows float32"):
        vg.datasets.load(tmp_path / "big.npz")
    assert vg.datasets.load(tmp_path / "big.npz", dtype="float64").X[2, 1] == 1e39


# ------------------------------------------------------------------------------ labels
def test_one_hot_labels_are_recognised_and_converted_on_request(tmp_path, arrays):
    X, y = arrays
    np.savez(tmp_path / "oh.npz", X=X, y=np.eye(3)[y])
    with pytest.raises(ValueError, match=r"the labels are one-hot, shape \(30, 3\).*pass "
                                         r"one_hot=True"):
        vg.datasets.load(tmp_path / "oh.npz")
    data = vg.datasets.load(tmp_path / "oh.npz", one_hot=True)
    np.testing.assert_array_equal(data.y, y)
    assert any("one-hot" in n for n in data.notes)
    Y2 = np.eye(3)[y]
    Y2[5, 0] = 1 - Y2[5, 0]
    np.savez(tmp_path / "bad.npz", X=X, y=Y2)
    with pytest.raises(ValueError, match=r"not one-hot \(array 'y', row 5 is not a single 1"):
        vg.datasets.load(tmp_path / "bad.npz", one_hot=True)


def test_labels_that_are_not_integers_are_refused_with_the_row(tmp_path, arrays):
    X, _ = arrays
    y = np.zeros(30)
    y[7] = 1.5
    np.savez(tmp_path / "f.npz", X=X, y=y)
    with pytest.raises(ValueError, match=r"array 'y', row 7: label 1.5 is not an integer class "
                                         r"id; for regression targets pass task='regression'"):
        vg.datasets.load(tmp_path / "f.npz")
    y[7] = -2
    np.savez(tmp_path / "neg.npz", X=X, y=y)
    with pytest.raises(ValueError, match=r"row 7: label -2; class ids must be >= 0"):
        vg.datasets.load(tmp_path / "neg.npz")
    y[7] = 1e300
    np.savez(tmp_path / "huge.npz", X=X, y=y)
    with pytest.raises(ValueError, match=r"row 7: label 1e\+300 is too large for a class id"):
        vg.datasets.load(tmp_path / "huge.npz")
    y[7] = 2.0        # integers written as floats are fine
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    assert vg.datasets.load(tmp_path / "ok.npz").y[7] == 2


def test_regression_targets(tmp_path, arrays):
    X, _ = arrays
    t = np.linspace(-1, 1, 30)
    np.savez(tmp_path / "r.npz", X=X, y=t)
    data = vg.datasets.load(tmp_path / "r.npz", task="regression", dtype="float64")
    assert data.y.shape == (30, 1) and data.y.dtype == np.float64 and data.n_classes is None
    np.testing.assert_array_equal(data.y[:, 0], t)
    assert data.describe()["targets"] == 1


# ------------------------------------------------------------------------------ text tables
CSV = "a,b,species\n1.0,2.0,0\n3,4e0,1\n 5 ,6,2\n\n7,8,1\n"


def test_csv_with_a_header_label_by_name_or_index(tmp_path):
    p = write(tmp_path, "t.csv", CSV)
    for label in ("species", 2, -1, "SPECIES"):
        X, y = vg.datasets.load(p, label=label)
        np.testing.assert_array_equal(X, [[1, 2], [3, 4], [5, 6], [7, 8]])
        np.testing.assert_array_equal(y, [0, 1, 2, 1])
    data = vg.datasets.load(p, label="species")
    assert data.feature_names == ["a", "b"] and data.label == "column 2 ('species')"
    assert data.sha256 == sha(p) and data.format == "csv"


def test_csv_without_a_header_and_text_labels(tmp_path):
    p = write(tmp_path, "t.csv", "1,2,cat\n3,4,dog\n5,6,cat\n")
    with pytest.raises(ValueError, match=r"t.csv: line 1, column 2: label 'cat' is not an "
                                         r"integer class id; pass encode_labels=True"):
        vg.datasets.load(p, label=2)
    data = vg.datasets.load(p, label=2, encode_labels=True)
    np.testing.assert_array_equal(data.y, [0, 1, 0])
    assert data.classes == ["cat", "dog"] and data.feature_names is None
    assert data.describe()["class_names"] == ["cat", "dog"]
    with pytest.raises(ValueError, match=r"label='species': the file has no header row"):
        vg.datasets.load(p, label="species")


def test_a_column_named_label_is_the_default_and_otherwise_it_must_be_named(tmp_path):
    p = write(tmp_path, "t.csv", "x1,x2,label\n1,2,0\n3,4,1\n")
    np.testing.assert_array_equal(vg.datasets.load(p).y, [0, 1])
    q = write(tmp_path, "u.csv", "x1,x2,kind\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"label: name the label column of u.csv .*the columns "
                                         r"are 'x1', 'x2', 'kind'"):
        vg.datasets.load(q)
    with pytest.raises(ValueError, match=r"label='target': no column of that name; the columns "
                                         r"are 'x1', 'x2', 'kind'"):
        vg.datasets.load(q, label="target")
    with pytest.raises(ValueError, match=r"label=5: there are 3 columns"):
        vg.datasets.load(q, label=5)


@pytest.mark.parametrize("text, pattern", [
    ("a,b,y\n1,2,0\n3,abc,1\n", r"line 3, column 1 \('b'\): 'abc' is not a number"),
    ("a,b,y\n1,2,0\n3,,1\n", r"line 3, column 1 \('b'\): an empty cell"),
    ("a,b,y\n1,2,0\nnan,4,1\n", r"line 3, column 0 \('a'\): nan \(expected finite"),
    ("a,b,y\n1,2,0\n1e400,4,1\n", r"line 3, column 0 \('a'\): inf \(expected finite"),
    ("a,b,y\n1,2,0\n1e39,4,1\n", r"line 3, column 0 \('a'\): 1e\+39 overflows float32"),
    ("a,b,y\n1,2,0\n3,4\n", r"line 3 has 2 columns, expected 3 \(as line 1, the header\): "
                            r"ragged rows"),
    ("a,b,y\n1,2,0\n3,4,1,9\n", r"line 3 has 4 columns, expected 3"),
    ("a,b,y\n1,2,0\n3,4,0.5\n", r"line 3, column 2 \('y'\): label 0.5 is not an integer"),
    ("a,b,y\n1,2,0\n3,4,\n", r"line 3, column 2 \('y'\): label an empty cell is not an integer"),
    ("a,b,y\n", r"no data rows \(only a header\)"),
    ("\n\n", r"the file is empty \(no rows\)"),
    ('a,b,y\n1,"2,0\n', r"line \d: not valid CSV"),
])
def test_hostile_csv_files_get_the_line_and_column(tmp_path, text, pattern):
    p = write(tmp_path, "h.csv", text)
    with pytest.raises(ValueError, match=r"^h.csv: .*" + pattern):
        vg.datasets.load(p, label="y")


def test_empty_and_binary_files_are_refused(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"e.csv: the file is empty \(0 bytes\)"):
        vg.datasets.load(tmp_path / "e.csv", label=0)
    (tmp_path / "b.csv").write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(ValueError, match=r"b.csv: holds NUL bytes"):
        vg.datasets.load(tmp_path / "b.csv", label=0)
    (tmp_path / "l.csv").write_bytes(b"\xff\xfe1,2\n")
    with pytest.raises(ValueError, match=r"l.csv: not UTF-8 text"):
        vg.datasets.load(tmp_path / "l.csv", label=0)


def test_tsv_quoted_cells_and_several_label_columns(tmp_path):
    p = write(tmp_path, "t.tsv", 'f1\tf2\tc0\tc1\n"1.5"\t2\t1\t0\n3\t4\t0\t1\n')
    with pytest.raises(ValueError, match=r"the labels are one-hot"):
        vg.datasets.load(p, label=["c0", "c1"])
    data = vg.datasets.load(p, label=["c0", "c1"], one_hot=True)
    np.testing.assert_array_equal(data.y, [0, 1])
    np.testing.assert_array_equal(data.X, [[1.5, 2], [3, 4]])
    reg = vg.datasets.load(p, label=["c0", "c1"], task="regression")
    assert reg.y.shape == (2, 2)
    sub = vg.datasets.load(p, label="c1", features=["f2"])
    assert sub.X.shape == (2, 1) and sub.feature_names == ["f2"]


# ------------------------------------------------------------------------------ standardise
def test_standardisation_is_an_option_and_recorded(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(5.0, 3.0, (200, 3))
    X[:, 2] = 7.0                                   # a constant column
    np.savez(tmp_path / "s.npz", X=X, y=rng.integers(0, 2, 200))
    data = vg.datasets.load(tmp_path / "s.npz", standardize=True, dtype="float64")
    np.testing.assert_allclose(data.X[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.X[:, :2].std(axis=0), 1, rtol=1e-12)
    np.testing.assert_array_equal(data.X[:, 2], 0)
    s = data.standardization
    np.testing.assert_allclose(s["mean"], X.mean(axis=0))
    assert s["constant"] == [2] and data.describe()["standardized"] is True
    np.testing.assert_allclose(data.transform(X), data.X)
    assert any("constant columns [2]" in n for n in data.notes)


# ------------------------------------------------------------------------------ parquet
def test_parquet_columns_nulls_and_types(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = pa.table({"a": [1.0, 2.0, 3.0], "b": pa.array([1, 2, 3], pa.int32()),
                  "kind": ["x", "y", "x"]})
    pq.write_table(t, tmp_path / "d.parquet")
    data = vg.datasets.load(tmp_path / "d.parquet", label="kind", encode_labels=True)
    np.testing.assert_array_equal(data.X, [[1, 1], [2, 2], [3, 3]])
    np.testing.assert_array_equal(data.y, [0, 1, 0])
    assert data.sha256 == sha(tmp_path / "d.parquet") and data.format == "parquet"
    with pytest.raises(ValueError, match=r"row 0, column 2 \('kind'\): label 'x' is not an "
                                         r"integer class id"):
        vg.datasets.load(tmp_path / "d.parquet", label="kind")
    t2 = pa.table({"a": [1.0, None, 3.0], "y": [0, 1, 0]})
    pq.write_table(t2, tmp_path / "n.parquet")
    with pytest.raises(ValueError, match=r"n.parquet: row 1, column 0 \('a'\): an empty "
                                         r"\(null\) cell"):
        vg.datasets.load(tmp_path / "n.parquet")
    t3 = pa.table({"a": ["p", "q"], "y": [0, 1]})
    pq.write_table(t3, tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"row 0, column 0 \('a'\): column of type string "
                                         r"\('p'\); expected numbers"):
        vg.datasets.load(tmp_path / "s.parquet")
    raw = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t.parquet: not a valid Parquet file"):
        vg.datasets.load(tmp_path / "t.parquet", label="kind")


# ------------------------------------------------------------------------------ entry points
def test_names_still_make_generated_datasets_and_paths_read_files(tmp_path, arrays,
                                                                monkeypatch):
    X, y = vg.datasets.load("two_spirals", n=10)
    assert X.shape == (10, 2)
    np.savez(tmp_path / "two_spirals.npz", X=arrays[0], y=arrays[1])
    monkeypatch.chdir(tmp_path)
    assert isinstance(vg.datasets.load("two_spirals.npz"), F.DataFile)
    with pytest.raises(ValueError, match=r"has the extension '.txt'; expected one of .npz"):
        (tmp_path / "d.txt").write_text("1,2\n")
        vg.datasets.load("d.txt")
    with pytest.raises(FileNotFoundError, match=r"path: 'missing.csv' does not exist"):
        vg.datasets.load("missing.csv")
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*or the path of a"):
        vg.datasets.load("mnist")


def test_from_arrays_copies_a_fortran_frame_once_and_names_cells(arrays):
    X, y = arrays
    data = F.from_arrays(np.asfortranarray(X), y, dtype="float64")
    assert data.X.flags.c_contiguous and data.sha256 is None
    np.testing.assert_array_equal(data.X, X)
    bad = X.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"arrays: X\[3, 2\]: inf"):
        F.from_arrays(bad, y)


def test_experiment_data_standardises_with_the_training_part_only(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(3.0, 2.0, (100, 5))
    y = rng.integers(0, 4, 100)
    np.savez(tmp_path / "e.npz", X=X, y=y)
    data, rec = F.experiment_data(tmp_path / "e.npz", held_out=0.2, seed=0)
    assert data.loss == "cross_entropy" and data.n_classes == 4
    assert data.X_train.shape == (80, 5) and data.X_test.shape == (20, 5)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-6)
    assert np.abs(data.X_test.mean(axis=0)).max() > 1e-3    # not fitted on the held-out part
    assert rec["sha256"] == sha(tmp_path / "e.npz") and rec["training_samples"] == 80
    assert "e.npz" in data.description and rec["standardized"].startswith("on the training")

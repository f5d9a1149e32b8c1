"""vgcore.trainer: fit and evaluate (batches, determinism, validation, early stopping, callbacks,
recorder, checkpoints, progress output, argument checks)."""
from __future__ import annotations

import io
import math
import sys
import tracemalloc

import numpy as np
import pytest

import vgcore as vg
from vgcore.core import _ui
from vgcore.train import checkpoint as ckpt
from vgcore.train import trainer
from vgcore.train.trainer import EarlyStopping, History, evaluate, fit


def gaussian_mixture(n=300, k=3, d=2, spread=0.6, seed=0, dtype=np.float32):
    """k well separated Gaussian blobs in d dimensions: (X, integer labels).  The centres sit on
    a circle of radius 3 in the first two coordinates."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(k) / k
    centers = np.zeros((k, d))
    centers[:, 0], centers[:, 1] = 3 * np.cos(angle), 3 * np.sin(angle)
    y = rng.integers(0, k, n)
    X = centers[y] + spread * rng.standard_normal((n, d))
    return X.astype(dtype), y


def _net(seed=0, sizes=(2, 16, 16, 3), dtype="float32", **kw):
    kw.setdefault("activation", "tanh")
    kw.setdefault("init", "glorot_uniform")
    return vg.MLP(list(sizes), dtype=dtype, seed=seed, **kw)


class Counter:
    """A callback that logs every call."""

    def __init__(self, stop_epoch=None, stop_step=None):
        self.calls = []
        self.stop_epoch, self.stop_step = stop_epoch, stop_step

    def on_train_begin(self, tr):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, tr):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, step, loss, tr):
        assert isinstance(loss, float) and tr.step == step + 1
        self.calls.append(("batch_end", step))
        return step == self.stop_step

    def on_epoch_end(self, epoch, logs, tr):
        assert tr.history["loss"][-1] == logs["loss"]
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        return epoch == self.stop_epoch

    def on_train_end(self, tr):
        self.calls.append(("train_end",))

    def count(self, kind):
        return sum(c[0] == kind for c in self.calls)


# ---------------------------------------------------------------------------- learning
def test_loss_decreases_and_accuracy_rises_on_a_gaussian_mixture():
    X, y = gaussian_mixture()
    net = _net()
    hist = fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.1, momentum=0.9), epochs=15,
               batch_size=32, verbose=0)
    assert len(hist) == 15 and list(hist.keys()) == ["loss", "accuracy", "lr", "time"]
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]
    assert hist["accuracy"][-1] > 0.95
    ev = evaluate(net, X, y)
    assert ev["accuracy"] > 0.95 and ev["loss"] < hist["loss"][0]
    assert hist["lr"] == [0.1] * 15 and all(t > 0 for t in hist["time"])


def test_mse_regression_in_float64_learns_and_logs_no_accuracy():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 3))
    y = np.sin(X.sum(axis=1))                     # (n,) targets with one output
    net = _net(sizes=(3, 16, 1), dtype="float64")
    hist = fit(net, X, y, loss="mse", optimizer=vg.optim.Adam(net, lr=0.01), epochs=20,
               batch_size=20, verbose=0, validation_split=0.25)
    assert "accuracy" not in hist and "val_accuracy" not in hist
    assert hist["val_loss"][-1] < 0.2 * hist["val_loss"][0]
    assert set(evaluate(net, X, y, loss="mse")) == {"loss"}


def test_binary_cross_entropy_accuracy_counts_sign_agreement_over_all_outputs():
    X, labels = gaussian_mixture(n=200, k=2)
    y = np.stack([labels, 1 - labels], axis=1).astype(np.float32)
    net = _net(sizes=(2, 8, 2))
    hist = fit(net, X, y, loss="binary_cross_entropy", epochs=10, batch_size=16,
               optimizer=vg.optim.Adam(net, lr=0.05), verbose=0)
    assert hist["accuracy"][-1] > 0.9
    out = net.predict(X)
    expected = np.mean((out > 0) == (y > 0.5))
    assert evaluate(net, X, y, loss="binary_cross_entropy")["accuracy"] == pytest.approx(expected)


def test_same_seed_gives_bit_identical_params_and_another_seed_does_not():
    X, y = gaussian_mixture()

    def run(seed):
        net = _net(seed=3)
        fit(net, X, y, optimizer=vg.optim.Adam(net, lr=0.01), epochs=3, batch_size=25,
            seed=seed, validation_split=0.2, verbose=0)
        return net.params.copy()

    a, b, c = run(7), run(7), run(8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_one_epoch_equals_manual_train_steps_over_the_seeded_permutation():
    X, y = gaussian_mixture(n=50)
    net, ref = _net(seed=1), _net(seed=1)
    fit(net, X, y, epochs=1, batch_size=16, seed=5, verbose=0)
    order = np.arange(50)
    np.random.default_rng(5).shuffle(order)
    opt = vg.optim.SGD(ref, lr=0.01)
    for s in range(0, 50, 16):                         # 16, 16, 16 and the last 2
        idx = order[s:s + 16]
        ref.train_step(np.ascontiguousarray(X[idx]), y[idx], "cross_entropy", opt)
    assert net.params.tobytes() == ref.params.tobytes()


def test_no_shuffle_takes_the_samples_in_order():
    X, y = gaussian_mixture(n=40)
    seen = []
    net = _net()
    real_forward = net.forward

    def spy(Xb):
        seen.append(Xb.copy())
        return real_forward(Xb)

    net.forward = spy
    fit(net, X, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert np.array_equal(np.concatenate(seen), X)


def test_batches_are_preallocated_contiguous_buffers_and_the_last_partial_batch_is_used():
    X, y = gaussian_mixture(n=70)
    X = np.asfortranarray(X)                            # any layout is gathered contiguously
    ids, shapes = set(), []
    net = _net()
    real_forward = net.forward

    def spy(Xb):
        assert Xb.flags.c_contiguous
        ids.add(id(Xb))
        shapes.append(Xb.shape[0])
        return real_forward(Xb)

    net.forward = spy
    fit(net, X, y, epochs=3, batch_size=32, verbose=0)
    assert shapes == [32, 32, 6] * 3
    assert len(ids) == 2                                # one buffer per batch size
    shapes.clear()
    fit(net, X, y, epochs=2, batch_size=32, drop_last=True, verbose=0)
    assert shapes == [32, 32] * 2


def test_steady_state_step_allocates_less_than_one_batch():
    X, y = gaussian_mixture(n=512, d=32, k=10)
    net = _net(sizes=(32, 64, 64, 10))
    peaks = []

    class Peak:
        def on_batch_end(self, step, loss, tr):
            current, peak = tracemalloc.get_traced_memory()
            if step >= 10:                               # after the first epoch's warm-up
                peaks.append(peak - current)
            tracemalloc.reset_peak()

    tracemalloc.start()
    try:
        fit(net, X, y, optimizer=vg.optim.Adam(net), epochs=3, batch_size=64,
            callbacks=[Peak()], verbose=0)
    finally:
        tracemalloc.stop()
    batch_bytes = 64 * 32 * 4
    assert max(peaks) < batch_bytes


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("n, split, n_val", [(100, 0.25, 25), (101, 0.25, 25), (10, 0.5, 5)])
def test_validation_split_holds_out_floor_of_the_fraction(n, split, n_val):
    X, y = gaussian_mixture(n=n)
    sizes = []
    net = _net()
    real_forward = net.forward
    net.forward = lambda Xb: (sizes.append(Xb.shape[0]), real_forward(Xb))[1]
    t = trainer.Trainer(net, X, y, epochs=1, batch_size=1000, validation_split=split,
                        verbose=0)
    assert (t.n_train, t.n_val) == (n - n_val, n_val)
    hist = t.run()
    assert sizes == [n - n_val, n_val]                 # one training batch, one validation pass
    assert {"val_loss", "val_accuracy"} <= set(hist.keys())


def test_validation_data_is_evaluated_each_epoch_as_evaluate_does():
    X, y = gaussian_mixture(n=200, seed=1)
    Xv, yv = gaussian_mixture(n=130, seed=1)
    net = _net()
    hist = fit(net, X, y, epochs=2, validation_data=(Xv, yv), eval_batch_size=50, verbose=0)
    # the same batches as fit's evaluation: BLAS may round a 130-row product differently
    want = evaluate(net, Xv, yv, batch_size=50)
    assert hist["val_loss"][-1] == pytest.approx(want["loss"], rel=1e-12)
    assert hist["val_accuracy"][-1] == want["accuracy"]


def test_evaluate_is_independent_of_batch_size_and_matches_the_full_batch_loss():
    X, y = gaussian_mixture(n=103)
    net = _net(dtype="float64")
    X = X.astype(np.float64)
    out = net.predict(X)
    full, _ = vg.losses.cross_entropy(out, y)
    acc = np.mean(out.argmax(axis=1) == y)
    for b in (1, 10, 103, 1024):
        ev = evaluate(net, X, y, batch_size=b)
        assert ev["loss"] == pytest.approx(full, rel=1e-12)
        assert ev["accuracy"] == acc


def test_evaluate_leaves_measurements_on():
    X, y = gaussian_mixture(n=20)
    net = _net()
    evaluate(net, X, y)
    assert net.measure is True
    net.train_step(X, y, "cross_entropy", vg.optim.SGD(net))
    assert net.gradient_flow().grad_norm.shape == (3,)


# ---------------------------------------------------------------------------- stopping
def test_early_stopping_stops_after_patience_epochs_without_improvement():
    X, y = gaussian_mixture(n=60)
    net = _net()
    frozen = vg.optim.SGD(net, lr=lambda step: 0.0)     # nothing changes: no improvement
    hist = fit(net, X, y, optimizer=frozen, epochs=20, validation_split=0.2,
               early_stopping=2, verbose=0)
    assert len(hist) == 3 and hist.stopped_epoch == 2 and hist.best_epoch == 0
    assert hist.monitor == "val_loss"


def test_early_stopping_on_training_loss_and_min_delta():
    X, y = gaussian_mixture(n=60)
    net = _net()
    hist = fit(net, X, y, optimizer=vg.optim.SGD(net, lr=1e-4), epochs=20,
               early_stopping={"patience": 1, "monitor": "loss", "min_delta": 1.0}, verbose=0)
    assert len(hist) == 2 and hist.monitor == "loss"   # tiny steps never beat min_delta=1


def test_restore_best_restores_the_params_of_the_best_epoch():
    X, y = gaussian_mixture(n=120)
    yv = (y + 1) % 3                  # learning the training labels worsens these validation ones
    snapshots = []

    class Snap:
        def on_epoch_end(self, epoch, logs, tr):
            snapshots.append(tr.net.params.copy())

    net = _net()
    hist = fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.2), epochs=12, batch_size=16,
               validation_data=(X, yv), early_stopping=3, restore_best=True,
               callbacks=[Snap()], verbose=0)
    best = int(np.argmin(hist["val_loss"]))
    assert hist.best_epoch == best and len(hist) == best + 4 < 12
    assert np.array_equal(net.params, snapshots[best])
    assert not np.array_equal(net.params, snapshots[-1])


# ---------------------------------------------------------------------------- callbacks
def test_callbacks_are_called_the_right_number_of_times_in_order():
    X, y = gaussian_mixture(n=50)
    cb = Counter()
    fit(_net(), X, y, epochs=3, batch_size=16, callbacks=[cb, object()], verbose=0,
        validation_split=0.2)                               # 40 training samples: 3 batches
    assert cb.count("epoch_begin") == 3 and cb.count("epoch_end") == 3
    assert [c[1] for c in cb.calls if c[0] == "batch_end"] == list(range(9))
    assert cb.calls[0] == ("train_begin",) and cb.calls[-1] == ("train_end",)
    assert cb.calls[1:6] == [("epoch_begin", 0), ("batch_end", 0), ("batch_end", 1),
                             ("batch_end", 2),
                             ("epoch_end", 0, ["accuracy", "loss", "lr", "time", "val_accuracy",
                                               "val_loss"])]


def test_callback_returning_true_at_epoch_end_stops_training():
    X, y = gaussian_mixture(n=50)
    cb = Counter(stop_epoch=1)
    hist = fit(_net(), X, y, epochs=10, batch_size=25, callbacks=[cb], verbose=0)
    assert len(hist) == 2 and hist.stopped_epoch == 1 and cb.count("batch_end") == 4


def test_callback_returning_true_at_batch_end_stops_after_that_batch():
    X, y = gaussian_mixture(n=50)
    cb = Counter(stop_step=5)
    hist = fit(_net(), X, y, epochs=10, batch_size=10, callbacks=[cb], verbose=0)
    assert cb.count("batch_end") == 6 and len(hist) == 2 and hist.stopped_epoch == 1


def test_plateau_schedule_is_stepped_with_the_validation_loss_each_epoch():
    class Plateau:                                     # duck-typed ReduceOnPlateau
        needs_metric = True

        def __init__(self):
            self.metrics, self.lr = [], 0.05

        def __call__(self, step):
            return self.lr

        def step(self, metric):
            self.metrics.append(metric)
            self.lr /= 2
            return self.lr

    X, y = gaussian_mixture(n=60)
    net = _net()
    sched = Plateau()
    hist = fit(net, X, y, optimizer=vg.optim.SGD(net, lr=sched), epochs=3,
               validation_split=0.5, verbose=0)
    assert sched.metrics == hist["val_loss"]
    assert hist["lr"] == [0.05, 0.025, 0.0125]


# ---------------------------------------------------------------------------- recorder
def test_recorder_gets_every_step_and_the_epochs():
    X, y = gaussian_mixture(n=40)
    rec = vg.Recorder()
    net = _net()
    opt = vg.optim.SGD(net, lr=0.05)
    fit(net, X, y, optimizer=opt, epochs=2, batch_size=10, recorder=rec, verbose=0)
    assert rec.to_arrays()["step"].tolist() == list(range(8))
    assert rec.epoch_steps.tolist() == [[0, 3], [4, 7]]
    assert rec.epoch_dead_fraction.shape == (2, 2)
    fit(net, X, y, optimizer=opt, epochs=1, batch_size=10, recorder=rec, verbose=0)
    assert rec.to_arrays()["step"].tolist() == list(range(12))   # numbering continues


def test_recorder_needs_measurements_and_increasing_steps():
    X, y = gaussian_mixture(n=40)
    net = _net(measure=False)
    with pytest.raises(ValueError, match="recorder: the network does not measure"):
        fit(net, X, y, recorder=vg.Recorder(), verbose=0)
    net = _net()
    rec = vg.Recorder()
    fit(net, X, y, epochs=1, recorder=rec, verbose=0)
    with pytest.raises(ValueError, match="recorder: records steps by the optimiser's step"):
        fit(net, X, y, epochs=1, recorder=rec, verbose=0)      # a fresh optimiser restarts at 0


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_is_written_every_epoch_and_resumes_exactly(tmp_path):
    X, y = gaussian_mixture(n=60)
    path = tmp_path / "run.npz"
    net = _net()
    opt = vg.optim.Adam(net, lr=0.01)
    hist = fit(net, X, y, optimizer=opt, epochs=3, batch_size=16, checkpoint=path,
               validation_split=0.2, verbose=0)
    c = ckpt.load(path)
    assert c.net.params.tobytes() == net.params.tobytes()
    assert c.history == hist.as_dict()
    assert c.extra["kind"] == "last" and c.extra["epoch"] == 3 and c.extra["step"] == 9
    assert c.optimizer_state["step_count"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]

    # resuming from the checkpoint continues exactly like the uninterrupted run
    opt2 = c.make_optimizer()
    fit(net, X, y, optimizer=opt, epochs=1, batch_size=16, seed=1, verbose=0)
    fit(c.net, X, y, optimizer=opt2, epochs=1, batch_size=16, seed=1, verbose=0)
    assert c.net.params.tobytes() == net.params.tobytes()


def test_checkpoint_best_holds_the_best_epoch_while_checkpoint_holds_the_last(tmp_path):
    X, y = gaussian_mixture(n=120)
    snapshots = []

    class Snap:
        def on_epoch_end(self, epoch, logs, tr):
            snapshots.append(tr.net.params.copy())

    net = _net()
    hist = fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.2), epochs=6, batch_size=16,
               validation_data=(X, (y + 1) % 3), restore_best=True, callbacks=[Snap()],
               checkpoint=tmp_path / "last.npz", checkpoint_best=tmp_path / "best.npz",
               verbose=0)
    best = ckpt.load(tmp_path / "best.npz")
    assert best.extra["kind"] == "best" and best.extra["epoch"] == hist.best_epoch + 1
    assert np.array_equal(best.net.params, snapshots[hist.best_epoch])
    assert np.array_equal(ckpt.load(tmp_path / "last.npz").net.params, snapshots[-1])


# ---------------------------------------------------------------------------- output
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_quiet_when_verbose_is_0_even_on_a_terminal(monkeypatch, capfd):
    X, y = gaussian_mixture(n=40)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    fit(_net(), X, y, epochs=2, verbose=0)
    assert sys.stderr.getvalue() == ""
    assert capfd.readouterr() == ("", "")


def test_default_is_quiet_when_stderr_is_not_a_terminal(capfd):
    X, y = gaussian_mixture(n=40)
    fit(_net(), X, y, epochs=2)
    assert capfd.readouterr() == ("", "")


def test_default_on_a_terminal_draws_the_builtin_line_without_tqdm(monkeypatch):
    X, y = gaussian_mixture(n=40)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(_ui, "import_tqdm", lambda: None)
    fit(_net(), X, y, epochs=2, batch_size=10)
    text = sys.stderr.getvalue()
    assert "\r" in text and "[####################] 4/4" in text
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert "epoch 2/2  loss " in lines[1] and "accuracy" in lines[1]


def test_verbose_1_uses_tqdm_when_importable(monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, desc, file, leave, unit):
            self.total, self.desc, self.n, self.post, self.closed = total, desc, 0, "", False
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix_str(self, s, refresh=True):
            self.post = s

        def close(self):
            self.closed = True

    X, y = gaussian_mixture(n=40)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(_ui, "import_tqdm", lambda: FakeTqdm)
    fit(_net(), X, y, epochs=2, batch_size=16, verbose=1)
    assert [(b.desc, b.total, b.n, b.closed) for b in bars] == [
        ("epoch 1/2", 3, 3, True), ("epoch 2/2", 3, 3, True)]
    assert bars[-1].post.startswith("loss ")


def test_verbose_1_off_a_terminal_and_verbose_2_print_one_line_per_epoch(capfd):
    X, y = gaussian_mixture(n=40)
    for verbose in (1, 2):
        fit(_net(), X, y, epochs=3, verbose=verbose)
        out, err = capfd.readouterr()
        assert out == "" and "\r" not in err
        assert [ln.split("  ")[0] for ln in err.splitlines()] == ["epoch 1/3", "epoch 2/3",
                                                                   "epoch 3/3"]


# ---------------------------------------------------------------------------- history
def test_history_as_dict_is_a_copy_and_round_trips():
    h = History()
    h.append({"loss": 1.0, "lr": 0.1})
    h.append({"loss": 0.5, "lr": 0.1, "val_loss": 0.7})
    d = h.as_dict()
    assert d["val_loss"][1] == 0.7 and math.isnan(d["val_loss"][0])
    d["loss"].append(9)
    assert h["loss"] == [1.0, 0.5] and len(h) == 2
    assert History.from_dict(h.as_dict()).as_dict()["loss"] == [1.0, 0.5]


def test_zero_epochs_trains_nothing():
    X, y = gaussian_mixture(n=40)
    net = _net()
    before = net.params.copy()
    assert len(fit(net, X, y, epochs=0, verbose=0)) == 0
    assert np.array_equal(net.params, before)


# ---------------------------------------------------------------------------- bad arguments
X0, Y0 = gaussian_mixture(n=40)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1, got 0"),
    (dict(batch_size=2.0), TypeError, "batch_size: expected an integer"),
    (dict(epochs=-1), ValueError, "epochs: expected an integer >= 0, got -1"),
    (dict(validation_split=1.0), ValueError, r"validation_split: expected a fraction in \[0, 1\)"),
    (dict(validation_split=-0.1), ValueError, "validation_split: expected a fraction"),
    (dict(validation_split=0.01), ValueError, "leaves 0 for validation"),
    (dict(validation_split=0.2, validation_data=(X0, Y0)), ValueError,
     "validation_split: expected 0 when validation_data is given"),
    (dict(validation_data=X0), TypeError, r"validation_data: expected a pair"),
    (dict(validation_data=(X0[:, :1], Y0)), ValueError, r"validation_data\[0\]: expected shape"),
    (dict(X=X0.astype(np.float64)), TypeError,
     "X: expected dtype float32 .the network's dtype., got float64; convert it"),
    (dict(X=X0[:, :1]), ValueError, r"X: expected shape \(samples, 2\)"),
    (dict(X=X0[0]), ValueError, "X: expected a 2-D array"),
    (dict(X=np.where(X0 > 1, np.nan, X0)), ValueError, "X: expected finite values"),
    (dict(X=X0.tolist()), TypeError, "X: expected a numpy.ndarray, got list"),
    (dict(y=Y0.astype(np.float32)), TypeError, "y: expected integer class labels"),
    (dict(y=Y0 + 1), ValueError, r"y: expected class labels in \[0, 2\]"),
    (dict(y=Y0[:-1]), ValueError, "y: expected 40 rows"),
    (dict(loss="mse"), TypeError, "y: expected float targets of dtype float32"),
    (dict(loss="hinge"), ValueError, "loss: unknown loss 'hinge'"),
    (dict(metrics=("loss", "f1")), ValueError, "metrics: unknown metric 'f1'"),
    (dict(metrics="accuracy"), TypeError, "metrics: expected a tuple"),
    (dict(early_stopping="val_loss"), TypeError, "early_stopping: expected None, a patience"),
    (dict(early_stopping=0), ValueError, "early_stopping: patience: expected an integer >= 1"),
    (dict(early_stopping=dict(monitor="val_loss")), ValueError,
     "early_stopping: monitor: expected one of .'loss', 'accuracy'.*validation_split"),
    (dict(early_stopping=dict(wait=3)), ValueError, "early_stopping: unknown keys"),
    (dict(callbacks=object()), TypeError, "callbacks: expected a list or tuple"),
    (dict(recorder="rec"), TypeError, "recorder: expected a vgcore.Recorder"),
    (dict(checkpoint=3), TypeError, "checkpoint: expected a file path"),
    (dict(checkpoint="/no/such/folder/c.npz"), ValueError, "checkpoint: expected a path in an "
                                                           "existing folder"),
    (dict(verbose=3), ValueError, "verbose: expected None"),
    (dict(seed=-1), ValueError, "seed: expected an integer >= 0"),
    (dict(shuffle="yes"), TypeError, "shuffle: expected True or False"),
    (dict(batch_size=64, drop_last=True), ValueError, "drop_last: with 40 training samples"),
    (dict(optimizer="adam"), TypeError, "optimizer: expected a vgcore.optim optimiser"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments_raise_naming_the_argument_before_training(kwargs, exc, match):
    net = _net()
    before = net.params.copy()
    args = dict(X=X0, y=Y0, verbose=0)
    args.update(kwargs)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(exc, match=match):
        fit(net, X, y, **args)
    assert np.array_equal(net.params, before)


def test_optimizer_of_another_network_is_rejected():
    net = _net()
    with pytest.raises(ValueError, match="optimizer: expected an optimiser built on `net`"):
        fit(net, X0, Y0, optimizer=vg.optim.SGD(_net()), verbose=0)


def test_callback_attribute_that_is_not_a_method_is_rejected():
    class Bad:
        on_epoch_end = 3

    with pytest.raises(TypeError, match=r"callbacks\[0\].on_epoch_end: expected a method"):
        fit(_net(), X0, Y0, callbacks=[Bad()], verbose=0)


def test_evaluate_rejects_bad_arguments():
    net = _net()
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        evaluate(net, X0, Y0, batch_size=0)
    with pytest.raises(TypeError, match="net: expected a vgcore.MLP"):
        evaluate("net", X0, Y0)
    with pytest.raises(ValueError, match=r"y: expected targets in \[0, 1\]"):
        evaluate(_net(sizes=(2, 4, 1)), X0, np.full(40, 2, np.float32),
                 loss="binary_cross_entropy")


def test_early_stopping_object_validates_its_arguments():
    with pytest.raises(ValueError, match="min_delta: expected a finite number >= 0"):
        EarlyStopping(min_delta=-1)
    with pytest.raises(ValueError, match="mode: expected 'auto', 'min' or 'max'"):
        EarlyStopping(mode="up")


class _ModalMLP(vg.MLP):
    """An MLP with training and evaluation modes (as networks with batch norm or dropout have);
    it logs the mode of every forward pass."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.training = True
        self.modes = []

    def train_mode(self):
        self.training = True
        return self

    def eval_mode(self):
        self.training = False
        return self

    def forward(self, X):
        self.modes.append(self.training)
        return super().forward(X)


def test_networks_with_modes_train_in_training_mode_and_validate_in_evaluation_mode():
    X, y = gaussian_mixture(n=40)
    net = _ModalMLP([2, 8, 3], seed=0)
    net.eval_mode()
    fit(net, X, y, epochs=2, batch_size=20, validation_split=0.5, verbose=0)
    assert net.modes == [True, False] * 2               # one training batch, one validation pass
    assert net.training is False                        # left in the mode it was in
    net.train_mode()
    net.modes.clear()
    evaluate(net, X, y)
    assert net.modes == [False] and net.training is True


def test_a_network_with_batch_norm_and_dropout_resumes_exactly_from_its_checkpoint(tmp_path):
    X, y = gaussian_mixture(n=60)
    path = tmp_path / "run.npz"
    net = vg.MLP([X.shape[1], 12, 12, 3], activation="tanh", norm="batch", dropout=0.2,
                 residual=0.5, seed=0)
    opt = vg.optim.Adam(net, lr=0.01)
    fit(net, X, y, optimizer=opt, epochs=2, batch_size=16, checkpoint=path, verbose=0)
    c = ckpt.load(path)
    assert c.net.dropout_counter == net.dropout_counter
    np.testing.assert_array_equal(c.net.running_means[0], net.running_means[0])
    opt2 = c.make_optimizer()
    fit(net, X, y, optimizer=opt, epochs=1, batch_size=16, seed=1, verbose=0)
    fit(c.net, X, y, optimizer=opt2, epochs=1, batch_size=16, seed=1, verbose=0)
    assert c.net.params.tobytes() == net.params.tobytes()

"""TensorBoard event files from the Recorder, the vg.fit callback and write_run, read back with
TensorBoard's own reader (EventAccumulator): tags, steps and values equal what vgcore holds."""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from vgcore.interop.tensorboard import DEFAULT_FIELDS, TensorBoardWriter, layer_tag, write_run

try:
    import tensorboardX  # noqa: F401
    from tensorboard.backend.event_processing import event_accumulator
except ImportError:                 # each test is skipped (and fails under VGCORE_NO_SKIPS)
    event_accumulator = None

pytestmark = pytest.mark.skipif(event_accumulator is None,
                                reason="needs tensorboardX and tensorboard (in [test])")


def read(logdir):
    ea = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def scalars(ea, tag):
    ev = ea.Scalars(tag)
    return np.array([e.step for e in ev]), np.array([e.value for e in ev], np.float32)


def assert_rows_written(ea, rec, fields=DEFAULT_FIELDS):
    """Every finite value of every recorded row is in the file at its step, as float32, and
    nothing else is."""
    steps = rec.steps
    L = rec.n_layers
    tags = set(ea.Tags()["scalars"])
    for name in fields:
        hist = rec.history(name)
        for l in range(L):
            tag = layer_tag(name, l + 1, L)
            finite = np.isfinite(hist[:, l])
            if not finite.any():
                assert tag not in tags, tag
                continue
            s, v = scalars(ea, tag)
            np.testing.assert_array_equal(s, steps[finite], err_msg=tag)
            np.testing.assert_array_equal(v, hist[finite, l].astype(np.float32), err_msg=tag)
    for name in ("grad_ratio", "delta_ratio", "nonfinite_forward_layer",
                 "nonfinite_backward_layer"):
        s, v = scalars(ea, f"flow/{name}")
        np.testing.assert_array_equal(s, steps)
        np.testing.assert_array_equal(v, rec.history(name).astype(np.float32))


def small_task(n=256, seed=0):
    return vg.datasets.gaussian_mixture(n, 8, 3, seed=seed)


def test_the_recorder_writes_every_row_it_stores_and_weight_gradient_histograms(tmp_path):
    X, y = small_task()
    net = vg.MLP([8, 16, 16, 16, 3], activation="relu", init="he_normal", seed=0)
    opt = vg.optim.SGD(net, lr=0.1)
    rec = vg.Recorder(every=2, tensorboard=tmp_path / "run",)
    rec.tensorboard.histogram_every = 4
    grads = {}
    for step in range(12):
        b = slice(16 * step, 16 * step + 16)
        net.train_step(X[b], y[b], "cross_entropy", opt)
        rec.record(net, step)
        if step in (0, 4, 8):
            grads[step] = [g.copy() for g in net.weight_grads]
    rec.tensorboard.close()
    ea = read(tmp_path / "run")
    np.testing.assert_array_equal(rec.steps, np.arange(0, 12, 2))
    assert_rows_written(ea, rec)
    assert np.isfinite(rec.history("update_to_weight")).all()     # SGD steps were measured
    for l in range(net.n_layers):
        hs = ea.Histograms(layer_tag("weight_grad", l + 1, net.n_layers))
        assert [h.step for h in hs] == [0, 4, 8]
        for h in hs:
            g = grads[h.step][l]
            hv = h.histogram_value
            assert hv.num == g.size
            np.testing.assert_allclose(hv.sum, g.sum(dtype=np.float64), rtol=1e-5,
                                       atol=1e-7 * np.abs(g).sum())
            np.testing.assert_allclose([hv.min, hv.max], [g.min(), g.max()], rtol=1e-6)


def test_undefined_values_are_not_written(tmp_path):
    X, y = small_task(32)
    net = vg.MLP([8, 16, 3], activation="tanh", seed=0)
    with TensorBoardWriter(tmp_path, fields="all") as w:
        rec = vg.Recorder(tensorboard=w)
        net.train_step(X, y, "cross_entropy")          # no optimiser step: no update ratio
        rec.record(net)
    ea = read(tmp_path)
    tags = set(ea.Tags()["scalars"])
    assert "update_to_weight/layer_1" not in tags and "gain/layer_2" not in tags
    assert "gain/layer_1" in tags and "gsnr/layer_2" in tags
    assert_rows_written(ea, rec, fields=vg.flow.FIELDS)


def test_the_fit_callback_writes_the_flow_losses_and_epochs(tmp_path):
    X, y = small_task(300)
    net = vg.MLP([8, 32, 32, 3], activation="tanh", init="glorot_uniform", seed=1)
    seen = []

    class Losses:
        def on_batch_end(self, step, loss, trainer):
            seen.append((trainer.optimizer.step_count - 1, loss))

    rec = vg.Recorder(every=3)              # the same steps as the callback's every=3
    hist = vg.fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.05), epochs=3, batch_size=32,
                  validation_split=0.2, recorder=rec, verbose=0,
                  callbacks=[vg.TensorBoard(tmp_path, every=3, histogram_every=10), Losses()])
    ea = read(tmp_path)
    assert_rows_written(ea, rec)
    s, v = scalars(ea, "loss/train")
    np.testing.assert_array_equal(s, rec.steps)
    losses = dict(seen)
    np.testing.assert_array_equal(v, np.float32([losses[k] for k in s]))
    per_epoch = len(seen) // 3
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        s, v = scalars(ea, f"epoch/{key}")
        np.testing.assert_array_equal(s, [per_epoch - 1, 2 * per_epoch - 1, 3 * per_epoch - 1])
        np.testing.assert_array_equal(v, np.float32(hist[key]))
    hs = ea.Histograms("weight_grad/layer_1")
    steps = [h.step for h in hs]
    assert steps[0] == 0 and all(b - a >= 10 for a, b in zip(steps, steps[1:]))
    assert "run/network/text_summary" in ea.Tags()["tensors"]


def test_the_callback_needs_measurements_and_checks_its_options(tmp_path):
    X, y = small_task(64)
    net = vg.MLP([8, 8, 3], seed=0, measure=False)
    with pytest.raises(ValueError, match=r"needs net.measure = True"):
        vg.fit(net, X, y, epochs=1, verbose=0, callbacks=[vg.TensorBoard(tmp_path)])
    with pytest.raises(ValueError, match=r"every: expected an integer >= 1, got 0"):
        vg.TensorBoard(tmp_path, every=0)
    with pytest.raises(ValueError, match=r"fields: unknown 'grad'; expected names from"):
        vg.TensorBoard(tmp_path, fields=["grad"])
    with pytest.raises(TypeError, match=r"tensorboard: expected a log folder"):
        vg.Recorder(tensorboard=3)


def test_write_run_writes_a_finished_run(tmp_path):
    X, y = small_task(64)
    net = vg.MLP([8, 16, 16, 3], activation="sigmoid", seed=0)
    opt = vg.optim.SGD(net, lr=0.1)
    rec = vg.Recorder(schedule=[0, 2, 5])
    losses = np.full(8, np.nan)
    for step in range(6):
        losses[step] = net.train_step(X, y, "cross_entropy", opt)
        rec.record(net, step)
    out = write_run(tmp_path / "sigmoid" / "seed0", rec, losses=losses,
                    held_out={"loss": 1.25, "accuracy": 0.5},
                    config={"activation": "sigmoid", "depth": 2})
    ea = read(out)
    assert_rows_written(ea, rec)
    s, v = scalars(ea, "loss/train")
    np.testing.assert_array_equal(s, np.arange(6))         # the NaN tail is not written
    np.testing.assert_array_equal(v, losses[:6].astype(np.float32))
    assert scalars(ea, "loss/held_out")[0].tolist() == [7]
    assert scalars(ea, "accuracy/held_out")[1].tolist() == [0.5]
    assert "run/config/text_summary" in ea.Tags()["tensors"]
